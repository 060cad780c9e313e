/* SPDX-License-Identifier: MIT */
/*
 * Reservation objects: a wound-wait lock plus the fences of the work that
 * uses an object (a VM, a buffer object).
 *
 * Each fence is held with a usage class, strongest first:
 *
 *   KERNEL    memory management work (moves, clears, page-table binds) that
 *             every user must wait for;
 *   WRITE     work that writes the object (implicit-sync writers);
 *   READ      work that reads it;
 *   BOOKKEEP  work that must be tracked (eviction must wait for it) but that
 *             implicit synchronisation ignores.
 *
 * Operating "at usage U" covers every fence whose class is U or stronger:
 * waiting at READ waits for KERNEL, WRITE and READ fences; at BOOKKEEP, all.
 *
 * Adding fences requires the lock and a reserved slot:
 *
 *	gvm_resv_lock(resv, ctx);
 *	err = gvm_resv_reserve_fences(resv, 1);	   may fail, -ENOMEM
 *	...point of no return...
 *	gvm_resv_add_fence(resv, job_fence, GVM_RESV_USAGE_WRITE); cannot fail
 *	gvm_resv_unlock(resv);
 *
 * A fence replaces an older fence of the same context when its usage is at
 * least as strong (the new one implies the old); signalled fences are pruned
 * when the set is rewritten.  Reservations are dropped when unlocking.
 *
 * Readers need no lock: gvm_resv_test_signaled(), gvm_resv_wait() and
 * gvm_resv_get_fences() run concurrently with writers (left-right scheme: a
 * writer updates the copy no reader uses, publishes it, and waits for readers
 * to leave the old one before touching it; readers never wait).
 *
 * Lock order: reservations rank after vm->lock and the mm lock and before
 * notifier locks (docs/locking.md); lock several with struct gvm_lockset.
 */
#ifndef GVM_RESV_H
#define GVM_RESV_H

#include <gvm/fence.h>
#include <gvm/types.h>
#include <gvm/ww.h>

GVM_BEGIN_DECLS

enum gvm_resv_usage {
	GVM_RESV_USAGE_KERNEL = 0,
	GVM_RESV_USAGE_WRITE = 1,
	GVM_RESV_USAGE_READ = 2,
	GVM_RESV_USAGE_BOOKKEEP = 3,
};

struct gvm_resv_table;

/* Fields are private. */
struct gvm_resv {
	struct gvm_ww_mutex lock;
	/*
	 * Two copies of the fence set: readers use tables[cur]; writers, under
	 * lock, rewrite the other one and flip cur.  readers[i] counts readers
	 * inside tables[i] (atomic).
	 */
	struct gvm_resv_table *tables[2];	/* under lock (see above) */
	uint32_t cur;				/* atomic, written under lock */
	uint32_t readers[2];			/* atomic */
	uint32_t reserved;			/* slots reserved; under lock */
};

/* The class shared by every reservation object. */
GVM_API extern struct gvm_ww_class gvm_resv_ww_class;

GVM_API void gvm_resv_init(struct gvm_resv *resv);

/* Drops every fence.  Returns 0, or -EBUSY (nothing done) while locked. */
GVM_API int gvm_resv_fini(struct gvm_resv *resv);

/*
 * Locks @resv as part of transaction @ctx (NULL: a lone lock).  May block.
 * 0, -EINVAL, -EALREADY (ctx holds it), -EDEADLK (back off, see <gvm/ww.h>).
 */
GVM_API int gvm_resv_lock(struct gvm_resv *resv, struct gvm_ww_acquire_ctx *ctx);
/* Same, plus -EINTR if a signal handler ran while waiting. */
GVM_API int gvm_resv_lock_interruptible(struct gvm_resv *resv,
					struct gvm_ww_acquire_ctx *ctx);
/* After -EDEADLK with nothing held.  0, -EINVAL. */
GVM_API int gvm_resv_lock_slow(struct gvm_resv *resv,
			       struct gvm_ww_acquire_ctx *ctx);
GVM_API int gvm_resv_lock_slow_interruptible(struct gvm_resv *resv,
					     struct gvm_ww_acquire_ctx *ctx);
GVM_API bool gvm_resv_trylock(struct gvm_resv *resv);
/* Drops the lock and any unused fence reservations. */
GVM_API void gvm_resv_unlock(struct gvm_resv *resv);
GVM_API bool gvm_resv_is_locked(const struct gvm_resv *resv);

/*
 * Reserves @n more fence slots (lock held).  0, -EINVAL, -EPERM (not locked),
 * -ENOMEM (nothing changed).
 */
GVM_API int gvm_resv_reserve_fences(struct gvm_resv *resv, unsigned int n);

/*
 * Adds @fence at @usage, using one reserved slot (lock held).  Cannot fail
 * for correct callers; returns -EINVAL (bad argument), -EPERM (not locked),
 * -ENOSPC (no slot reserved), each with nothing changed.
 */
GVM_API int gvm_resv_add_fence(struct gvm_resv *resv, struct gvm_fence *fence,
			       enum gvm_resv_usage usage);

/* Lock-free: true if every fence at @usage has signalled. */
GVM_API bool gvm_resv_test_signaled(struct gvm_resv *resv,
				    enum gvm_resv_usage usage);

/*
 * Lock-free: waits for every fence at @usage.  0, -ETIME (timeout), -EINTR
 * (interruptible and a signal handler ran), -EINVAL, -ENOMEM.
 */
GVM_API int gvm_resv_wait(struct gvm_resv *resv, enum gvm_resv_usage usage,
			  bool interruptible, int64_t timeout_ns);

/*
 * Lock-free snapshot of the fences at @usage, with a reference on each;
 * *fences is a malloc()ed array (NULL when *count is 0).  Release with
 * gvm_resv_put_fences().  0, -EINVAL, -ENOMEM.
 */
GVM_API int gvm_resv_get_fences(struct gvm_resv *resv,
				enum gvm_resv_usage usage,
				struct gvm_fence ***fences, unsigned int *count);
GVM_API void gvm_resv_put_fences(struct gvm_fence **fences, unsigned int count);

/*
 * One fence standing for all fences at @usage: NULL when there are none,
 * the fence itself when there is one, else a fence array.  Reference
 * returned.  0, -EINVAL, -ENOMEM.
 */
GVM_API int gvm_resv_get_singleton(struct gvm_resv *resv,
				   enum gvm_resv_usage usage,
				   struct gvm_fence **out);

/*
 * Iteration with the lock held (the set cannot change under it):
 *
 *	struct gvm_resv_iter it;
 *	struct gvm_fence *f;
 *	gvm_resv_for_each_fence(&it, resv, GVM_RESV_USAGE_READ, f)
 *		... gvm_resv_iter_usage(&it) ...
 */
struct gvm_resv_iter {
	struct gvm_resv *resv;
	enum gvm_resv_usage usage;
	unsigned int index;
	enum gvm_resv_usage cur_usage;
};

GVM_API struct gvm_fence *gvm_resv_iter_first(struct gvm_resv_iter *it,
					      struct gvm_resv *resv,
					      enum gvm_resv_usage usage);
GVM_API struct gvm_fence *gvm_resv_iter_next(struct gvm_resv_iter *it);

static inline enum gvm_resv_usage
gvm_resv_iter_usage(const struct gvm_resv_iter *it)
{
	return it->cur_usage;
}

#define gvm_resv_for_each_fence(it, resv, usage, fence)                   \
	for ((fence) = gvm_resv_iter_first((it), (resv), (usage)); (fence); \
	     (fence) = gvm_resv_iter_next(it))

/* Debug: checks internal invariants.  0 or -EINVAL (details on stderr). */
GVM_API int gvm_resv_validate(struct gvm_resv *resv);

GVM_END_DECLS

#endif
