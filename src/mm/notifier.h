/* SPDX-License-Identifier: MIT */
/*
 * Interval notifiers on a CPU address space (internal API).
 *
 * A notifier watches [start, start + len) of an mm (struct gvm_mm, see
 * src/mm/mm.h) and carries an invalidation sequence number, as Linux's
 * mmu_interval_notifier does.  Whenever something changes what backs part
 * of that range (munmap, madvise(DONTNEED), mremap, fork's copy-on-write, a
 * migration), every notifier overlapping it is invalidated: its callbacks
 * run and its sequence moves.  A user that mirrors the range (a userptr, an
 * SVM range) fetches the pages between gvm__notifier_read_begin() and
 * gvm__notifier_read_retry() and commits its device mapping only if the
 * sequence did not move, deciding that under its own lock, the same lock
 * its invalidate callback takes to call gvm__notifier_set_seq():
 *
 *	user (bind, repin)                      invalidation (mm event thread)
 *
 *	again:
 *	seq = gvm__notifier_read_begin(n)        (waits while n is being
 *	                                          invalidated)
 *	gvm__mm_fetch(mm, ...)                  invalidate_start(n, range, cur):
 *	lock(notifier_lock)                       lock(notifier_lock)
 *	if (gvm__notifier_read_retry(n, seq)) {   gvm__notifier_set_seq(n, cur)
 *		unlock(notifier_lock)             zap the device PTEs,
 *		goto again                        submit TLB invalidations
 *	}                                         unlock(notifier_lock)
 *	commit the device PTEs                    return finish or NULL
 *	unlock(notifier_lock)                   invalidate_finish(n, f, range):
 *	                                          wait for the TLB invalidations
 *
 * Because set_seq and the retry check happen under the same lock, either the
 * commit comes first and the invalidation zaps what it committed, or the
 * invalidation comes first and the commit sees the moved sequence and
 * retries.  Page fetching itself takes no lock of the user's.
 *
 * Two passes.  An invalidation calls ops->invalidate_start() for EVERY
 * notifier the range hits before it calls ops->invalidate_finish() for any of
 * them.  invalidate_start must bump the sequence and stop device access or
 * start stopping it (zap PTEs and submit the TLB invalidation; or, when the
 * zap must wait for running work, enable signalling on the fences it waits
 * for), and may leave the waiting to the second pass: it returns a struct
 * gvm_notifier_finish that the invalidation links into its list;
 * invalidate_finish() then waits (and zaps, if it had to wait first).
 * When the invalidation returns, no device access reaches the range.  With N
 * devices, all N start their work before anyone waits, so the invalidation
 * costs about one device's latency instead of N.
 *
 * The finish structure is the user's, embedded in its object, so that an
 * invalidation never allocates.  Two invalidations can hit the same notifier
 * at once (the event thread and a migration, say), and the embedded
 * structure can only be on one list: so the user guards it with an in-use
 * flag under its own lock, and the second invalidation, finding it in use,
 * does both passes at once inside invalidate_start and returns NULL.  For
 * example (the VM layer's userptr):
 *
 *	struct userptr {
 *		struct gvm_notifier notifier;
 *		struct gvm_notifier_finish finish;  // in_use under notifier_lock
 *		...
 *	};
 *
 *	static struct gvm_notifier_finish *
 *	userptr_invalidate_start(struct gvm_notifier *n,
 *				 const struct gvm_notifier_range *r, uint64_t cur)
 *	{
 *		struct userptr *u = gvm_container_of(n, struct userptr, notifier);
 *		struct gvm_notifier_finish *f = NULL;
 *
 *		gvm__mutex_lock(&vm->notifier_lock);
 *		gvm__notifier_set_seq(n, cur);
 *		mark u invalidated; zap its PTEs; submit the TLB invalidation;
 *		if (gvm__notifier_finish_claim(&u->finish))
 *			f = &u->finish;          // wait in pass 2
 *		else
 *			wait for the TLB invalidation now;   // one pass
 *		gvm__mutex_unlock(&vm->notifier_lock);
 *		return f;
 *	}
 *
 *	static void userptr_invalidate_finish(struct gvm_notifier *n,
 *					      struct gvm_notifier_finish *f,
 *					      const struct gvm_notifier_range *r)
 *	{
 *		wait for the TLB invalidation and the VM's fences;
 *		gvm__mutex_lock(&vm->notifier_lock);
 *		gvm__notifier_finish_release(f);
 *		gvm__mutex_unlock(&vm->notifier_lock);
 *	}
 *
 * Callbacks run in the invalidating thread with no lock of the notifier core
 * held, and that thread holds no vm->lock, no reservation and no
 * notifier_lock: a callback takes only its notifier_lock (rank 400) and must
 * never take vm->lock or a reservation, nor wait for anything that needs
 * them.  A callback may not insert or remove notifiers of the same mm
 * (removal waits for the invalidation the callback is part of).
 *
 * Locking inside: the mm's notifier tree (an interval tree, src/core/itree.h)
 * is protected by subs->lock, rank GVM_RANK_NOTIFIER_TREE, which is held only
 * for a few tree operations and never across a callback or a wait (it is
 * released by the condition-variable waits).  While invalidations are
 * active, the invalidating threads walk the tree without the lock; inserts
 * and removes are then deferred until the last one ends (see notifier.c).
 *
 * Changes older than the notifier.  A backend that learns of CPU changes
 * from a queue (gvm_mm_self's event thread) may process a change after a
 * notifier over its range was inserted although the change was complete
 * before: typically the late UNMAP of a previous mapping at the same
 * address.  Such an invalidation must not hit the new notifier, whose pages
 * are fetched after the change (it would tear down a mapping that was
 * never stale, under a running job).  So the backend brackets every read
 * of an event with gvm__notifier_stamp_begin() and _end(); _end() of an
 * event that reports a complete change hands out a stamp, which goes in
 * the invalidation's range; insert records in the notifier the last stamp
 * handed out, and an invalidation skips the notifiers holding its stamp or
 * a later one.  An insert that finds a read bracketed waits for its end (a
 * system call's time, never an invalidation's):
 *
 *	event thread                       user
 *
 *	stamp_begin(mm)
 *	read(): UNMAP [a, b)  ---------->  munmap() returns: the event is read
 *	st = stamp_end(mm, true)           insert(n over [a, b)): waits until
 *	                                     stamp_end if it comes first, then
 *	                                     n->stamp = last stamp >= st
 *	                                   register, read_begin, fetch: the
 *	                                   memory as it is after the unmap
 *	invalidate([a, b), .stamp = st):
 *	  skips n (st <= n->stamp), hits
 *	  the notifiers inserted before
 *
 * Exact: an event whose read returned before gvm__notifier_insert() was
 * called never hits that notifier.  The odd store of stamp_begin precedes
 * read(), read() precedes the return of the call that caused the event,
 * which precedes the insert; so the insert finds the bracket open (and
 * waits) or closed after the stamp was taken (and reads it).  Safe: a stamp
 * is taken after the read, so after the change; a notifier that skips it
 * read the stamp later, and fetches later still, so what it fetches
 * reflects the change.  An event whose change may still be in progress
 * when it is read (madvise's REMOVE, whose zap starts after the read) gets
 * no stamp, nor does an invalidation raised by gvm itself (a migration):
 * stamp 0 hits every notifier the range overlaps.

 * Lifetime: the notifier is the user's memory.  After gvm__notifier_remove()
 * returns no callback is running or will run on it, and it may be freed.
 */
#ifndef GVM_MM_NOTIFIER_H
#define GVM_MM_NOTIFIER_H

#include <stdbool.h>
#include <stdint.h>

#include <gvm/types.h>

#include "core/itree.h"

struct gvm_mm;
struct gvm_notifier;

/* Why a range is invalidated. */
enum gvm_mm_event {
	/* munmap, mmap(MAP_FIXED) over it, brk or mremap shrinking, the old
	   range of an mremap move: delivered after the fact */
	GVM_MM_EVENT_UNMAP = 1,
	/* madvise(MADV_DONTNEED / MADV_FREE / MADV_REMOVE): delivered before
	   the pages are zapped, which starts once the event has been read */
	GVM_MM_EVENT_REMOVE,
	/* mremap moved the pages away from this (old) range: after the fact */
	GVM_MM_EVENT_REMAP,
	/* fork made this private memory copy-on-write: after the fact (the
	   model mm: before, and for a copy-on-write break of one page) */
	GVM_MM_EVENT_FORK,
	/* raised by gvm itself (migration, tests) or the model mm (mprotect,
	   reclaim): before the change */
	GVM_MM_EVENT_MIGRATE,
	/* the application said the CPU's protection of the range changed
	   (gvm_mm_invalidate(): mprotect raises no userfaultfd event):
	   after the fact */
	GVM_MM_EVENT_PROTECT,
};

/* An invalidation: the bytes [start, last] changed or are about to. */
struct gvm_notifier_range {
	uint64_t start;		/* first byte */
	uint64_t last;		/* last byte, inclusive */
	enum gvm_mm_event event;
	/* 0, or the stamp of the event that reported the change (from
	   gvm__notifier_stamp_end): notifiers inserted after the event was
	   read are not invalidated (see above) */
	uint64_t stamp;
};

/*
 * Second-pass state, embedded in the user's object (see above).  `next` and
 * `notifier` belong to the invalidation that holds it; `in_use` belongs to
 * the user and is protected by the user's lock (its notifier_lock).
 */
struct gvm_notifier_finish {
	struct gvm_notifier_finish *next;	/* the invalidation's list */
	struct gvm_notifier *notifier;		/* set by the invalidation */
	bool in_use;				/* under the user's lock */
};

/* Claims @f for a two-pass invalidation; false if another one holds it. */
static inline bool gvm__notifier_finish_claim(struct gvm_notifier_finish *f)
{
	if (f->in_use)
		return false;
	f->in_use = true;
	return true;
}

/* Releases @f; called by invalidate_finish under the user's lock. */
static inline void gvm__notifier_finish_release(struct gvm_notifier_finish *f)
{
	f->in_use = false;
}

struct gvm_notifier_ops {
	/*
	 * Pass 1.  Under the user's lock: gvm__notifier_set_seq(n, cur_seq);
	 * then stop device access to the range, or start stopping it and
	 * finish in pass 2 (see "Two passes").  Must not wait for anything
	 * another notifier's pass 1 could be needed for.  Returns the finish
	 * structure to be handed to invalidate_finish, or NULL when
	 * everything is done already.  May block (briefly: every
	 * other notifier's pass 1 waits behind it).
	 */
	struct gvm_notifier_finish *(*invalidate_start)(
		struct gvm_notifier *n, const struct gvm_notifier_range *range,
		uint64_t cur_seq);
	/*
	 * Pass 2, only for notifiers whose invalidate_start returned a finish:
	 * wait for the work started in pass 1 and release @finish.  May be
	 * NULL when invalidate_start never defers.
	 */
	void (*invalidate_finish)(struct gvm_notifier *n,
				  struct gvm_notifier_finish *finish,
				  const struct gvm_notifier_range *range);
};

/*
 * A notifier.  Fields are private; start/last/ops/mm are constant between
 * insert and remove.
 */
struct gvm_notifier {
	uint64_t start;			/* first byte watched */
	uint64_t last;			/* last byte watched, inclusive */
	const struct gvm_notifier_ops *ops;
	struct gvm_mm *mm;
	/* written with release by set_seq (under the user's lock) and at
	   insert (under subs->lock); read with acquire */
	uint64_t invalidate_seq;
	uint64_t stamp;			/* constant: subs->stamp at insert */
	/* under subs->lock: */
	struct gvm_list deferred_link;	/* on subs->deferred */
	uint8_t deferred;		/* enum deferred_op (notifier.c) */
	bool in_tree;
};

/*
 * The notifiers of one mm, embedded in struct gvm_mm.
 *
 * Invariants (under lock):
 *	active == 0  =>  invalidate_seq is even and deferred is empty
 *	invalidate_seq is odd  <=>  some active invalidation hit a notifier
 *	a notifier is in the tree  <=>  in_tree
 *	deferred holds inserts (in_tree false) and removes (in_tree true)
 */
struct gvm_notifier_subs {
	struct gvm_mutex lock;		/* rank GVM_RANK_NOTIFIER_TREE */
	pthread_cond_t wq;		/* invalidate_seq moved (with lock) */
	struct gvm_itree tree;		/* notifiers; under lock, or read
					   unlocked by invalidations while
					   invalidate_seq is odd */
	uint64_t invalidate_seq;	/* under lock; odd while invalidating */
	unsigned int active;		/* running invalidations, under lock */
	size_t nr_deferred_inserts;	/* under lock */
	struct gvm_list deferred;	/* under lock */
	uint64_t stamp;			/* atomic: the last stamp handed out */
	uint32_t reading;		/* atomic, futex word: odd between
					   stamp_begin and stamp_end */
	uint32_t reading_waiters;	/* atomic: inserts waiting on it */
};

void gvm__notifier_subs_init(struct gvm_notifier_subs *subs);
/* The tree must be empty (every notifier removed). */
void gvm__notifier_subs_fini(struct gvm_notifier_subs *subs);

/*
 * Starts watching [start, start + len) of @mm with @ops.  Never blocks on
 * an invalidation: one that is running when the notifier is inserted counts
 * as running on it (read_begin waits for it).  An event whose read
 * returned before this call does not hit it, even if it is processed later
 * (stamps, above; this may wait for a read in progress to end).  It does
 * not flush the mm (gvm__mm_flush): the stamps make that unnecessary, and
 * its callers hold vm->lock, under which a flush must not wait.  Context:
 * may block briefly; may be called with any lock below rank
 * GVM_RANK_SCHED_QUEUE held (vm->lock, reservations, notifier_lock), never
 * from a notifier callback.  Returns 0, -EINVAL (len 0, overflow, no
 * invalidate_start), -ENOMEM.
 */
int gvm__notifier_insert(struct gvm_mm *mm, struct gvm_notifier *n,
			 uint64_t start, uint64_t len,
			 const struct gvm_notifier_ops *ops);

/*
 * A backend that reads events brackets each read (one thread per mm, which
 * waits for nothing in between): gvm__notifier_stamp_begin() before the
 * read, gvm__notifier_stamp_end() after it, with @complete true if it read
 * an event reporting a change that is complete.  _end() then returns the
 * stamp for the invalidation's range (stamps grow from 1), otherwise 0.
 * See "Changes older than the notifier" above.
 */
void gvm__notifier_stamp_begin(struct gvm_mm *mm);
uint64_t gvm__notifier_stamp_end(struct gvm_mm *mm, bool complete);

/*
 * The stamp a notifier made now records (after waiting for an event read
 * in progress, see "Changes older than the notifier").
 */
uint64_t gvm__notifier_stamp_read(struct gvm_mm *mm);

/*
 * True if invalidation @r must skip @n: @n was made after @r's change was
 * complete (its stamp is not older than the change's).
 */
static inline bool gvm__notifier_skips(const struct gvm_notifier_range *r,
				       const struct gvm_notifier *n)
{
	return r->stamp && r->stamp <= n->stamp;
}

/*
 * Child notifiers.  A user that watches many small ranges inside a large
 * one (SVM: ranges inside a 512 MiB chunk, vm/userptr.c) inserts one
 * notifier over the large range and gives each small one a child: a
 * notifier that is not in the mm's tree, whose sequence the parent's
 * invalidate_start drives: under the user's lock, for each child the
 * invalidation hits and does not skip (gvm__notifier_skips), it calls
 * gvm__notifier_set_seq(child, cur_seq).  read_begin and read_retry then
 * work on the child as on any notifier, so a collision in one small range
 * does not make its neighbours retry.
 *
 * gvm__notifier_init_child() must run under the user's lock, in the same
 * critical section that makes the child visible to the parent's callback,
 * with @stamp from gvm__notifier_stamp_read() taken before (the lock need
 * not be held for that): then an invalidation either finds the child, or
 * was running when it was made and its read_begin waits for it, exactly
 * as for an insert.  There is nothing to remove: the child is gone once
 * the parent's callback can no longer find it (taken away under the same
 * lock).  Context: takes the mm's tree lock (rank below notifier_lock's
 * users, as for insert); never blocks on an invalidation.
 */
void gvm__notifier_init_child(struct gvm_mm *mm, struct gvm_notifier *n,
			      uint64_t start, uint64_t len, uint64_t stamp);

/*
 * Stops watching.  If an invalidation is running, waits until every running
 * invalidation has ended, so that when it returns no callback runs on @n.
 * Context: may block; the caller must hold nothing a callback or what it
 * waits for needs: no notifier_lock, no reservation, no vm->lock.
 */
void gvm__notifier_remove(struct gvm_notifier *n);

/*
 * Begins a read of the range: waits while an invalidation of @n is running
 * and returns the sequence to pass to gvm__notifier_read_retry().
 * Context: may block, same rule as gvm__notifier_remove().
 */
uint64_t gvm__notifier_read_begin(struct gvm_notifier *n);

/*
 * True if @n was invalidated since the gvm__notifier_read_begin() that
 * returned @seq.  Call it under the lock the invalidate callback holds for
 * gvm__notifier_set_seq() to make "check, then commit" atomic against
 * invalidation; without it, it is only a hint.
 */
static inline bool gvm__notifier_read_retry(struct gvm_notifier *n,
					    uint64_t seq)
{
	return __atomic_load_n(&n->invalidate_seq, __ATOMIC_ACQUIRE) != seq;
}

/*
 * Records, from invalidate_start and under the user's lock, that @n is being
 * invalidated (@cur_seq is the argument the callback got).
 */
static inline void gvm__notifier_set_seq(struct gvm_notifier *n,
					 uint64_t cur_seq)
{
	__atomic_store_n(&n->invalidate_seq, cur_seq, __ATOMIC_RELEASE);
}

/*
 * Invalidates @range: the two passes over every notifier overlapping it,
 * except, if range->stamp is not 0, those inserted after that stamp was
 * taken.  Returns the number of notifiers hit.  Context: may block;
 * callbacks take notifier_lock and wait for devices, so the caller holds
 * nothing above the mm's lock (GVM_RANK_MM): the mm event thread holds no
 * lock; gvm's own migrations hold vm->lock and the mm's devmem lock, which
 * no callback takes and nothing a callback waits for needs.
 */
unsigned int gvm__notifier_invalidate(struct gvm_mm *mm,
				      const struct gvm_notifier_range *range);

/*
 * A change gvm makes itself (a migration): invalidates @range as above,
 * then, with no device access left to the range, calls @change(@arg) and
 * only then ends the invalidation.  The mm's sequence stays odd until
 * the end even if no notifier was hit, so a reader that began before the
 * change retries and one that begins during it (an insert included)
 * waits in read_begin until the change is made: nobody can fetch a page
 * the change takes away and commit it.  Returns @change's result
 * (-EINVAL for an empty range or no @change, nothing done).
 */
int gvm__notifier_invalidate_change(struct gvm_mm *mm,
				    const struct gvm_notifier_range *range,
				    int (*change)(void *arg), void *arg);

/*
 * The first notifier overlapping [start, last] in start order, or NULL; its
 * range goes to *n_start / *n_last.  A snapshot: the notifier may be removed
 * as soon as this returns, so only its range may be used.
 */
bool gvm__notifier_find_first(struct gvm_mm *mm, uint64_t start, uint64_t last,
			      uint64_t *n_start, uint64_t *n_last);

/* Number of notifiers of @mm (in the tree or waiting to be inserted). */
size_t gvm__notifier_count(struct gvm_mm *mm);

#endif
