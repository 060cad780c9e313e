// SPDX-License-Identifier: MIT
/*
 * Interval notifiers: the tree of an mm's notifiers, the sequence protocol
 * and the two-pass invalidation (API and the user's side in notifier.h).
 *
 * What it does.  Each mm embeds a struct gvm_notifier_subs: an interval tree
 * of notifiers and an mm-wide sequence, invalidate_seq, which is odd while
 * at least one invalidation that hit a notifier is running.  An invalidation
 * (gvm__notifier_invalidate) makes the sequence odd, calls every hit
 * notifier's invalidate_start with that odd value (cur_seq), then the
 * invalidate_finish of those that asked, then, when the last running
 * invalidation ends, makes the sequence even again and wakes the waiters.
 * A notifier's own sequence is written by its callback (set_seq) to cur_seq,
 * so "n->invalidate_seq == subs->invalidate_seq" means "n is being
 * invalidated right now": read_begin waits while that holds, and returns
 * n's sequence; read_retry compares it later.  Sequences only grow (64 bits
 * do not wrap), and a notifier's sequence is never equal to a later odd
 * mm sequence unless a callback set it so.
 *
 *	subs->invalidate_seq:   2 ------ 3 (A, B running) ------- 4 ---- 5 ...
 *	n->invalidate_seq:      1   A: set_seq(n, 3) -> 3   (still 3)
 *	read_begin(n):          -> 1     waits ................ -> 3
 *	read_retry(n, 1):                true (moved)
 *	read_retry(n, 3):                                false, until the next
 *
 * A notifier inserted while invalidations run might be inside a range being
 * invalidated, so it starts with the current odd sequence: its read_begin
 * waits for them, exactly as if it had been hit.  One inserted while idle
 * starts at subs->invalidate_seq - 1, which no invalidation will ever use.
 *
 * The walk.  An invalidation finds its first hit under subs->lock, then walks
 * the rest of the tree with the lock dropped (callbacks block).  This is safe
 * because the tree is not modified while invalidate_seq is odd: inserts and
 * removes that arrive meanwhile go on subs->deferred and are applied by the
 * last invalidation to end.  A deferred insert reserves its tree nodes when
 * it is queued (gvm__itree_reserve, which fills the tree's spare-node pool
 * and touches nothing the walkers read), so applying it cannot fail.  An
 * invalidation that hits nothing leaves the sequence even and walks nothing,
 * so inserts and removes go straight to the tree then (an insert still makes
 * the sequence odd, because the running invalidations may cover it).
 *
 * Removal waits, if the sequence is odd, until it changes: by then every
 * invalidation that could have seen the notifier has ended.
 *
 * Stamps (notifier.h, "Changes older than the notifier").  subs->stamp is a
 * counter: stamp_end() increments it (acq_rel), insert reads it (acquire)
 * into n->stamp, and an invalidation with a non-zero stamp skips the
 * notifiers with n->stamp >= range->stamp, both when it looks for its first
 * hit and during the walk.  A skipped notifier is not a hit: it is not
 * counted, and an invalidation that skips every overlapping notifier leaves
 * the sequence even.  subs->reading is a generation, odd between
 * stamp_begin and stamp_end; an insert that loads it odd waits (futex)
 * until it moves, so it reads the stamp of the event being read.  Lost
 * wake-ups: stamp_end stores reading, then loads reading_waiters; the
 * insert increments reading_waiters, then loads reading; all seq_cst.
 *
 * Locking: subs->lock (GVM_RANK_NOTIFIER_TREE) is held for tree and list
 * operations only; no callback runs under it and nothing else is taken
 * under it.  Waits release it (condition variable).
 *
 * What it does not do: it does not know what an event means to a user (that
 * is the callbacks'), it never allocates during an invalidation, and it does
 * not order invalidations against each other: two may run at once on the
 * same notifier (the finish structure's in_use flag handles that).
 */
#include "mm/notifier.h"

#include <errno.h>
#include <limits.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/debug.h"
#include "core/list.h"
#include "core/sync.h"
#include "mm/mm.h"

enum deferred_op {
	DEFERRED_NONE = 0,
	DEFERRED_INSERT,
	DEFERRED_REMOVE,
};

static inline bool subs_invalidating(const struct gvm_notifier_subs *subs)
{
	return subs->invalidate_seq & 1;
}

void gvm__notifier_subs_init(struct gvm_notifier_subs *subs)
{
	gvm__mutex_init(&subs->lock, "notifier_tree", GVM_RANK_NOTIFIER_TREE);
	gvm__cond_init(&subs->wq);
	gvm__itree_init(&subs->tree);
	subs->invalidate_seq = 2;
	subs->active = 0;
	subs->nr_deferred_inserts = 0;
	gvm_list_init(&subs->deferred);
	subs->stamp = 0;
	subs->reading = 0;
	subs->reading_waiters = 0;
}

void gvm__notifier_subs_fini(struct gvm_notifier_subs *subs)
{
	GVM_WARN_ON(!gvm__itree_empty(&subs->tree));
	GVM_WARN_ON(subs->active);
	GVM_WARN_ON(!gvm_list_empty(&subs->deferred));
	gvm__itree_fini(&subs->tree);
	pthread_cond_destroy(&subs->wq);
	gvm__mutex_fini(&subs->lock);
}

void gvm__notifier_stamp_begin(struct gvm_mm *mm)
{
	struct gvm_notifier_subs *subs = &mm->subs;

	gvm_store_seq_cst(&subs->reading, gvm_load_relaxed(&subs->reading) + 1);
}

uint64_t gvm__notifier_stamp_end(struct gvm_mm *mm, bool complete)
{
	struct gvm_notifier_subs *subs = &mm->subs;
	uint64_t stamp = 0;

	if (complete)
		stamp = gvm_fetch_add_acq_rel(&subs->stamp, 1) + 1;
	gvm_store_seq_cst(&subs->reading, gvm_load_relaxed(&subs->reading) + 1);
	if (gvm_load_seq_cst(&subs->reading_waiters))
		gvm__futex_wake(&subs->reading, INT_MAX);
	return stamp;
}

/* An event is being read: wait until its stamp, if any, is taken. */
static void wait_for_read(struct gvm_notifier_subs *subs)
{
	uint32_t gen = gvm_load_seq_cst(&subs->reading);

	if (!(gen & 1))
		return;
	gvm_fetch_add_seq_cst(&subs->reading_waiters, 1u);
	while (gvm_load_seq_cst(&subs->reading) == gen)
		gvm__futex_wait(&subs->reading, gen, -1);
	gvm_fetch_sub_release(&subs->reading_waiters, 1u);
}

uint64_t gvm__notifier_stamp_read(struct gvm_mm *mm)
{
	wait_for_read(&mm->subs);
	return gvm_load_acquire(&mm->subs.stamp);
}

/*
 * subs->lock held, not during a walk: the sequence a notifier starts with.
 * Running invalidations may cover it: then it starts "being invalidated"
 * (odd, its read_begin waits for them); else at a value none will use.
 */
static uint64_t initial_seq_locked(struct gvm_notifier_subs *subs)
{
	if (subs->active) {
		subs->invalidate_seq |= 1;
		return subs->invalidate_seq;
	}
	return subs->invalidate_seq - 1;
}

void gvm__notifier_init_child(struct gvm_mm *mm, struct gvm_notifier *n,
			      uint64_t start, uint64_t len, uint64_t stamp)
{
	struct gvm_notifier_subs *subs = &mm->subs;
	uint64_t seq;

	n->start = start;
	n->last = start + (len - 1);
	n->ops = NULL;
	n->mm = mm;
	n->stamp = stamp;
	n->deferred = DEFERRED_NONE;
	n->in_tree = false;
	gvm_list_init(&n->deferred_link);
	gvm__mutex_lock(&subs->lock);
	seq = initial_seq_locked(subs);
	__atomic_store_n(&n->invalidate_seq, seq, __ATOMIC_RELEASE);
	gvm__mutex_unlock(&subs->lock);
}

int gvm__notifier_insert(struct gvm_mm *mm, struct gvm_notifier *n,
			 uint64_t start, uint64_t len,
			 const struct gvm_notifier_ops *ops)
{
	struct gvm_notifier_subs *subs = &mm->subs;
	uint64_t seq;
	int err = 0;

	gvm_might_block();
	if (!len || start + (len - 1) < start || !ops ||
	    !ops->invalidate_start)
		return -EINVAL;

	n->start = start;
	n->last = start + (len - 1);
	n->ops = ops;
	n->mm = mm;
	n->deferred = DEFERRED_NONE;
	n->in_tree = false;
	gvm_list_init(&n->deferred_link);
	/* Before the tree insert that makes it visible to invalidations. */
	n->stamp = gvm__notifier_stamp_read(mm);

	gvm__mutex_lock(&subs->lock);
	if (subs->active && subs_invalidating(subs)) {
		/* Walkers are in the tree: queue it, with its nodes. */
		err = gvm__itree_reserve(&subs->tree,
					 subs->nr_deferred_inserts + 1);
		if (err)
			goto out_unlock;
		subs->nr_deferred_inserts++;
		n->deferred = DEFERRED_INSERT;
		gvm_list_add_tail(&n->deferred_link, &subs->deferred);
		seq = subs->invalidate_seq;
	} else {
		err = gvm__itree_insert(&subs->tree, n->start, n->last, n);
		if (err)
			goto out_unlock;
		n->in_tree = true;
		seq = initial_seq_locked(subs);
	}
	__atomic_store_n(&n->invalidate_seq, seq, __ATOMIC_RELEASE);
out_unlock:
	gvm__mutex_unlock(&subs->lock);
	return err;
}

void gvm__notifier_remove(struct gvm_notifier *n)
{
	struct gvm_notifier_subs *subs = &n->mm->subs;
	uint64_t seq = 0;

	gvm_might_block();
	gvm__mutex_lock(&subs->lock);
	if (n->deferred == DEFERRED_INSERT) {
		/* Never reached the tree: nobody can have called it. */
		gvm_list_del(&n->deferred_link);
		n->deferred = DEFERRED_NONE;
		subs->nr_deferred_inserts--;
	} else if (subs_invalidating(subs)) {
		GVM_BUG_ON(!n->in_tree || n->deferred != DEFERRED_NONE);
		n->deferred = DEFERRED_REMOVE;
		gvm_list_add_tail(&n->deferred_link, &subs->deferred);
		seq = subs->invalidate_seq;
	} else {
		GVM_BUG_ON(!n->in_tree);
		GVM_BUG_ON(gvm__itree_remove(&subs->tree, n->start, n) != 0);
		n->in_tree = false;
	}
	/* Every invalidation that may walk over @n ends before seq moves. */
	while (seq && subs->invalidate_seq == seq)
		gvm__cond_wait(&subs->wq, &subs->lock);
	GVM_BUG_ON(n->in_tree || n->deferred != DEFERRED_NONE);
	gvm__mutex_unlock(&subs->lock);
}

uint64_t gvm__notifier_read_begin(struct gvm_notifier *n)
{
	struct gvm_notifier_subs *subs = &n->mm->subs;
	uint64_t seq;

	gvm_might_block();
	gvm__mutex_lock(&subs->lock);
	seq = __atomic_load_n(&n->invalidate_seq, __ATOMIC_ACQUIRE);
	/*
	 * seq == the odd mm sequence: a running invalidation hit @n (or @n
	 * was inserted during one).  Its pass 1 already moved the sequence,
	 * so what the caller fetches after the wait is newer than the zap.
	 */
	while (seq == subs->invalidate_seq)
		gvm__cond_wait(&subs->wq, &subs->lock);
	gvm__mutex_unlock(&subs->lock);
	return seq;
}


/* Applies the deferred inserts and removes; the last invalidation ended. */
static void apply_deferred_locked(struct gvm_notifier_subs *subs)
{
	while (!gvm_list_empty(&subs->deferred)) {
		struct gvm_notifier *n =
			gvm_list_entry(subs->deferred.next,
				       struct gvm_notifier, deferred_link);

		gvm_list_del(&n->deferred_link);
		if (n->deferred == DEFERRED_REMOVE) {
			GVM_BUG_ON(gvm__itree_remove(&subs->tree, n->start,
						     n) != 0);
			n->in_tree = false;
		} else {
			/* Cannot fail: reserved when it was queued. */
			GVM_BUG_ON(gvm__itree_insert(&subs->tree, n->start,
						     n->last, n) != 0);
			n->in_tree = true;
			subs->nr_deferred_inserts--;
		}
		n->deferred = DEFERRED_NONE;
	}
	GVM_BUG_ON(subs->nr_deferred_inserts);
	if (subs->tree.reserved)
		gvm__itree_unreserve(&subs->tree);
}

/*
 * The two passes over @range, then @change(@arg) if not NULL, all with
 * the invalidation counted as running; the number of notifiers hit.
 */
static unsigned int invalidate(struct gvm_mm *mm,
			       const struct gvm_notifier_range *range,
			       int (*change)(void *arg), void *arg, int *ret)
{
	struct gvm_notifier_subs *subs = &mm->subs;
	struct gvm_notifier_finish *head = NULL, **tail = &head;
	struct gvm_itree_iter it;
	struct gvm_notifier *n;
	unsigned int hits = 0;
	uint64_t cur_seq;

	gvm_assert(gvm__lockrank_max_held() <= GVM_RANK_MM);

	gvm__mutex_lock(&subs->lock);
	subs->active++;
	for (n = gvm__itree_iter_first(&subs->tree, &it, range->start,
				       range->last);
	     n && gvm__notifier_skips(range, n); n = gvm__itree_iter_next(&it))
		;
	/*
	 * Odd if it hits a notifier; also for a change, so that a notifier
	 * inserted before the change is made waits for it in read_begin.
	 */
	if (n || change)
		subs->invalidate_seq |= 1;
	cur_seq = subs->invalidate_seq;
	gvm__mutex_unlock(&subs->lock);

	/*
	 * Pass 1, with the lock dropped: the tree cannot change while the
	 * sequence is odd, which it stays until this invalidation ends.
	 */
	for (; n; n = gvm__itree_iter_next(&it)) {
		struct gvm_notifier_finish *f;

		if (gvm__notifier_skips(range, n))
			continue;
		hits++;
		f = n->ops->invalidate_start(n, range, cur_seq);
		if (!f)
			continue;
		GVM_BUG_ON(!n->ops->invalidate_finish);
		f->notifier = n;
		f->next = NULL;
		*tail = f;
		tail = &f->next;
	}

	/* Pass 2: wait for what pass 1 started, in the same order. */
	while (head) {
		struct gvm_notifier_finish *f = head;

		/* Read next first: the callback releases f to its owner. */
		head = f->next;
		f->notifier->ops->invalidate_finish(f->notifier, f, range);
	}

	/* No device reaches the range; readers wait until the end. */
	if (change)
		*ret = change(arg);

	gvm__mutex_lock(&subs->lock);
	GVM_BUG_ON(!subs->active);
	if (--subs->active == 0 && subs_invalidating(subs)) {
		subs->invalidate_seq++;		/* even: idle */
		apply_deferred_locked(subs);
		gvm__cond_broadcast(&subs->wq);
	}
	gvm__mutex_unlock(&subs->lock);
	return hits;
}

unsigned int gvm__notifier_invalidate(struct gvm_mm *mm,
				      const struct gvm_notifier_range *range)
{
	if (range->start > range->last)
		return 0;
	return invalidate(mm, range, NULL, NULL, NULL);
}

int gvm__notifier_invalidate_change(struct gvm_mm *mm,
				    const struct gvm_notifier_range *range,
				    int (*change)(void *arg), void *arg)
{
	int ret = 0;

	if (range->start > range->last || !change)
		return -EINVAL;
	invalidate(mm, range, change, arg, &ret);
	return ret;
}

bool gvm__notifier_find_first(struct gvm_mm *mm, uint64_t start, uint64_t last,
			      uint64_t *n_start, uint64_t *n_last)
{
	struct gvm_notifier_subs *subs = &mm->subs;
	void *item;

	gvm__mutex_lock(&subs->lock);
	item = gvm__itree_find_first(&subs->tree, start, last, n_start,
				     n_last);
	gvm__mutex_unlock(&subs->lock);
	return item != NULL;
}

size_t gvm__notifier_count(struct gvm_mm *mm)
{
	struct gvm_notifier_subs *subs = &mm->subs;
	size_t n;

	gvm__mutex_lock(&subs->lock);
	n = gvm__itree_count(&subs->tree) + subs->nr_deferred_inserts;
	gvm__mutex_unlock(&subs->lock);
	return n;
}
