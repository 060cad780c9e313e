/* SPDX-License-Identifier: MIT */
/*
 * Wound-wait mutexes: locks that a thread may take in any order together
 * with others of the same class, without deadlock.
 *
 * Every multi-lock transaction runs under an acquire context, which gets a
 * stamp (a ticket: lower = older) from its class.  When a transaction must
 * wait for a lock owned by a younger one, it "wounds" the owner; a wounded
 * transaction that then has to wait for any lock while holding others gets
 * -EDEADLK, must drop everything it holds and start again, first taking the
 * contended lock with gvm_ww_mutex_lock_slow().  The oldest transaction is
 * never wounded, so the system always makes progress.  Younger transactions
 * simply wait for older ones.
 *
 * Most users want struct gvm_lockset (<gvm/lockset.h>), which runs this
 * protocol for reservation objects, rather than these calls directly.
 *
 *	gvm_ww_acquire_init(&ctx, &class);
 * retry:
 *	for each lock m:
 *		err = gvm_ww_mutex_lock(m, &ctx);
 *		if (err == -EDEADLK) {
 *			unlock everything taken so far;
 *			gvm_ww_mutex_lock_slow(m, &ctx);   (now holds only m)
 *			goto retry (skipping m);
 *		}
 *	gvm_ww_acquire_done(&ctx);
 *	... work ...
 *	unlock all; gvm_ww_acquire_fini(&ctx);
 *
 * A mutex may also be locked without a context (ctx NULL): it then behaves
 * like a plain mutex (never wounded, never -EDEADLK), and the caller must not
 * hold other locks of the class.
 *
 * Errors: -EINVAL (NULL mutex), -EALREADY (the context already holds it),
 * -EDEADLK (wounded: back off), -EINTR (interruptible variants, a signal
 * handler ran while waiting).
 */
#ifndef GVM_WW_H
#define GVM_WW_H

#include <gvm/types.h>

GVM_BEGIN_DECLS

/*
 * A class of mutexes that may be locked together; shared by all of them.
 * Static, or at least alive and at the same address for as long as any
 * thread uses it: threads keep blocks of its stamps (ww.c).
 */
struct gvm_ww_class {
	uint64_t next_stamp;	/* atomic */
	const char *name;	/* immutable; used by the lock-rank checker */
};

#define GVM_WW_CLASS_INIT(n) { .next_stamp = 1, .name = (n) }

/* One multi-lock transaction; lives on the stack of its thread. */
struct gvm_ww_acquire_ctx {
	struct gvm_ww_class *ww_class;	/* immutable */
	uint64_t stamp;			/* immutable: lower = older */
	unsigned int acquired;		/* locks held; owner thread only */
	uint32_t wounded;		/* atomic: set by older transactions */
	uint32_t wake_seq;		/* atomic futex word: bumped to wake */
	bool done;			/* acquire_done() called; owner only */
};

/* Fields are private. */
struct gvm_ww_mutex {
	uintptr_t owner;		/* atomic: owning ctx | flag bits */
	struct gvm_mutex wait_lock;	/* protects waiters; slow paths */
	struct gvm_list waiters;	/* oldest first, under wait_lock */
	struct gvm_ww_class *ww_class;	/* immutable */
};

GVM_API void gvm_ww_mutex_init(struct gvm_ww_mutex *m,
			       struct gvm_ww_class *ww_class);

/* Returns 0, or -EBUSY (nothing done) if @m is locked. */
GVM_API int gvm_ww_mutex_fini(struct gvm_ww_mutex *m);

GVM_API void gvm_ww_acquire_init(struct gvm_ww_acquire_ctx *ctx,
				 struct gvm_ww_class *ww_class);

/* Marks the end of the locking phase (debug builds check no more locking). */
GVM_API void gvm_ww_acquire_done(struct gvm_ww_acquire_ctx *ctx);

/* Returns 0, or -EBUSY if the context still holds locks. */
GVM_API int gvm_ww_acquire_fini(struct gvm_ww_acquire_ctx *ctx);

/* May block.  0, -EINVAL, -EALREADY, -EDEADLK. */
GVM_API int gvm_ww_mutex_lock(struct gvm_ww_mutex *m,
			      struct gvm_ww_acquire_ctx *ctx);

/* Same, and -EINTR if a signal handler ran while waiting. */
GVM_API int gvm_ww_mutex_lock_interruptible(struct gvm_ww_mutex *m,
					    struct gvm_ww_acquire_ctx *ctx);

/*
 * After -EDEADLK and dropping every lock: waits for @m, cannot return
 * -EDEADLK.  Returns 0 or -EINVAL (context still holds locks).
 */
GVM_API int gvm_ww_mutex_lock_slow(struct gvm_ww_mutex *m,
				   struct gvm_ww_acquire_ctx *ctx);

/* Same, and -EINTR if a signal handler ran while waiting. */
GVM_API int gvm_ww_mutex_lock_slow_interruptible(struct gvm_ww_mutex *m,
						 struct gvm_ww_acquire_ctx *ctx);

/* Never blocks.  @ctx may be NULL.  True if locked. */
GVM_API bool gvm_ww_mutex_trylock(struct gvm_ww_mutex *m,
				  struct gvm_ww_acquire_ctx *ctx);

/*
 * Must be called by the thread that holds @m.  Unlocking a NULL or unlocked
 * mutex is reported (debug builds) and ignored.
 */
GVM_API void gvm_ww_mutex_unlock(struct gvm_ww_mutex *m);

GVM_API bool gvm_ww_mutex_is_locked(const struct gvm_ww_mutex *m);

/* True if @m is held by the transaction @ctx. */
GVM_API bool gvm_ww_mutex_is_owned_by(const struct gvm_ww_mutex *m,
				      const struct gvm_ww_acquire_ctx *ctx);

GVM_END_DECLS

#endif
