/* SPDX-License-Identifier: MIT */
/*
 * Lock sets: lock any number of reservation objects, in any order, without
 * deadlock, with the wound-wait back-off handled for the caller.
 *
 *	struct gvm_lockset ls;
 *
 *	gvm_lockset_init(&ls, GVM_LOCKSET_IGNORE_DUPLICATES);
 *	gvm_lockset_until_all_locked(&ls) {
 *		err = gvm_lockset_prepare(&ls, vm_resv, 1);
 *		gvm_lockset_retry_on_contention(&ls);
 *		if (err)
 *			goto out;
 *		for (i = 0; i < nr_bos; i++) {
 *			err = gvm_lockset_prepare(&ls, bo_resv[i], 1);
 *			if (err)
 *				break;
 *		}
 *		gvm_lockset_retry_on_contention(&ls);
 *		if (err)
 *			goto out;
 *	}
 *	... everything is locked, one fence slot reserved on each ...
 * out:
 *	gvm_lockset_fini(&ls);				unlocks everything
 *
 * The block runs again from the top whenever locking hit contention: before
 * the rerun every lock is dropped and the contended object is locked first
 * (sleeping until it is free), so the rerun makes progress.  Contention is
 * sticky within one run: after a call returned -EDEADLK, every later
 * lock/prepare call of that run returns -EDEADLK at once without locking, so
 * inner loops may simply break out (or even carry on) and a single
 * gvm_lockset_retry_on_contention() at the top level of the block restarts it.
 * That macro uses `continue`: it must be at the top level of the block, not
 * inside an inner loop.
 *
 * The caller keeps the objects alive until gvm_lockset_fini(), and locks
 * nothing more into the set once the loop has completed.
 *
 * All objects of one set are locked by one thread; a lock set is not shared
 * between threads.
 *
 * Errors of lock/prepare: -EINVAL (NULL), -EALREADY (already in the set,
 * without GVM_LOCKSET_IGNORE_DUPLICATES), -EDEADLK (contention: retry),
 * -EINTR (GVM_LOCKSET_INTERRUPTIBLE and a signal handler ran), -ENOMEM.
 */
#ifndef GVM_LOCKSET_H
#define GVM_LOCKSET_H

#include <gvm/resv.h>
#include <gvm/types.h>
#include <gvm/ww.h>

GVM_BEGIN_DECLS

/* Waits for contended locks can be interrupted by signal handlers (-EINTR). */
#define GVM_LOCKSET_INTERRUPTIBLE (1u << 0)
/* Locking an object already in the set succeeds instead of -EALREADY. */
#define GVM_LOCKSET_IGNORE_DUPLICATES (1u << 1)

/* Fields are private. */
struct gvm_lockset {
	uint32_t flags;			/* immutable */
	unsigned int state;		/* first run, running, done */
	int error;			/* sticky error of this run */
	struct gvm_ww_acquire_ctx ctx;
	struct gvm_resv **objs;		/* locked objects, in locking order */
	unsigned int nr_objs, max_objs;
	struct gvm_resv *contended;	/* -EDEADLK seen on it this run */
	struct gvm_resv *prelocked;	/* locked before the rerun started */
	struct gvm_resv *inline_objs[8]; /* avoids allocating for small sets */
};

/* Flags: GVM_LOCKSET_*.  Allocates nothing.  0, or -EINVAL (bad flags). */
GVM_API int gvm_lockset_init(struct gvm_lockset *ls, uint32_t flags);

/* Unlocks every object and releases memory. */
GVM_API void gvm_lockset_fini(struct gvm_lockset *ls);

/*
 * Loop condition of gvm_lockset_until_all_locked(): true to run the block
 * (the first time, and again after contention), false once it completed.
 */
GVM_API bool gvm_lockset_cleanup(struct gvm_lockset *ls);

#define gvm_lockset_until_all_locked(ls) while (gvm_lockset_cleanup(ls))

GVM_API bool gvm_lockset_is_contended(const struct gvm_lockset *ls);

/* (Written so that a following `else` cannot attach to it.) */
#define gvm_lockset_retry_on_contention(ls)          \
	if (!gvm_lockset_is_contended(ls)) {         \
	} else                                       \
		continue

/* Locks @resv into the set. */
GVM_API int gvm_lockset_lock(struct gvm_lockset *ls, struct gvm_resv *resv);

/*
 * Locks @resv into the set and reserves @num_fences fence slots on it.  If
 * the lock succeeds but the reservation fails (-ENOMEM), @resv stays locked
 * in the set (gvm_lockset_fini() unlocks it), with no slot reserved.
 */
GVM_API int gvm_lockset_prepare(struct gvm_lockset *ls, struct gvm_resv *resv,
				unsigned int num_fences);

/* gvm_lockset_prepare() on each of @n objects. */
GVM_API int gvm_lockset_prepare_array(struct gvm_lockset *ls,
				      struct gvm_resv *const *resvs,
				      unsigned int n, unsigned int num_fences);

/* Unlocks one object and removes it from the set.  0 or -ENOENT. */
GVM_API int gvm_lockset_unlock(struct gvm_lockset *ls, struct gvm_resv *resv);

static inline unsigned int gvm_lockset_count(const struct gvm_lockset *ls)
{
	return ls->nr_objs;
}

static inline struct gvm_resv *gvm_lockset_obj(const struct gvm_lockset *ls,
					       unsigned int i)
{
	return i < ls->nr_objs ? ls->objs[i] : NULL;
}

/* Iterates over the locked objects in locking order. */
#define gvm_lockset_for_each(ls, i, resv)                                  \
	for ((i) = 0; ((resv) = gvm_lockset_obj((ls), (i))) != NULL; (i)++)

GVM_END_DECLS

#endif
