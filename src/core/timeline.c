// SPDX-License-Identifier: MIT
/*
 * Timelines: a fence producer whose fences signal in seqno order (API in
 * <gvm/fence.h>).
 *
 * Signalling is done in two steps.  gvm_timeline_signal(tl, s) *claims*, under
 * tl->lock, every pending fence with seqno <= s (takes it off the pending
 * list, records the error it will carry) and publishes s as signaled_seqno;
 * then, with tl->lock dropped, it signals the fences it claimed, oldest first.
 * Timeline fences poll (ops->signaled): a fence whose seqno is <= the
 * published signaled_seqno reports itself signalled, and signals itself with
 * the recorded error, even before its claimer got to it.  So
 *
 *	seqno <= gvm_timeline_signaled_seqno(tl)  <=>  gvm_fence_is_signaled()
 *
 * from the moment the claim is published, whoever looks and whatever other
 * signallers are doing.  Claims record the error and the time (taken under
 * tl->lock), so whoever signals a fence, claimer or poll, gives it the same
 * status and timestamp, and timestamps follow seqnos.  Callbacks of one call
 * run oldest first; a nested or concurrent call, or a poll, may run a later
 * fence's callbacks before an earlier fence's claimer has run its callbacks.
 *
 *   signal(tl, 3)                      other thread
 *   -------------                      ------------
 *   lock; claim 1..3; signaled = 3
 *   unlock
 *   signal f1 (callbacks)              is_signaled(f3): 3 <= signaled ->
 *                                        signal f3 with its error; true
 *   signal f2 (callbacks)
 *   signal f3: -EALREADY, fine
 *
 * Locking: tl->lock protects next_seqno, the pending list, each pending
 * fence's error and destroyed; signaled_seqno is written under it (release)
 * and read lock-free (acquire).  tl->lock is a leaf: nothing is acquired under
 * it, fences are signalled (and their callbacks run) without it.  That is what
 * lets fence callbacks call every timeline function, including on the
 * timeline whose fence they run for, and two timelines signal each other from
 * callbacks without lock-order cycles: a call only ever takes the locks of the
 * fences it claimed itself, which depend on the caller's fence (fence.c).  A
 * poll takes the lock of the fence polled, as any ops->signaled that reports
 * completion does (gvm_fence_is_signaled() signals it).
 *
 * Lifetime: a claimed or pending fence is held by a reference (the pending
 * list's, handed to the claimer); each fence holds a reference on its
 * timeline; the creator holds one more, which gvm_timeline_destroy() drops
 * after cancelling the pending fences.  A timeline therefore stays readable
 * (and answers -ENODEV) while any of its fences lives.
 *
 * What it does not do: no per-call ordering of callbacks across concurrent
 * signallers (above), no waiting for a seqno (wait on its fence).
 */
#include <errno.h>
#include <stdlib.h>

#include <gvm/fence.h>

#include "core/alloc.h"
#include "core/fence_internal.h"
#include "core/list.h"
#include "core/sync.h"

struct gvm_timeline {
	struct gvm_mutex lock;		/* a leaf: see above */
	const char *name;		/* immutable */
	uint64_t context;		/* immutable */
	uint64_t next_seqno;		/* under lock */
	uint64_t signaled_seqno;	/* written under lock (release), read
					 * with acquire; never decreases */
	struct gvm_list pending;	/* timeline_fence.link, under lock */
	bool destroyed;			/* under lock */
	uint32_t refcount;		/* atomic */
};

/*
 * Invariant, under tl->lock: a fence is on tl->pending iff it is not claimed,
 * iff its seqno > signaled_seqno and the timeline is not destroyed.
 */
struct timeline_fence {
	struct gvm_fence base;
	struct gvm_timeline *tl;	/* immutable, reference held */
	struct gvm_list link;		/* in tl->pending or a claimer's list;
					 * under tl->lock while pending */
	int error;			/* to signal with, and */
	int64_t timestamp_ns;		/* when: both written under tl->lock
					 * when claimed, before signaled_seqno
					 * covers it; read-only afterwards */
};

static struct timeline_fence *to_timeline_fence(struct gvm_fence *fence)
{
	return gvm_container_of(fence, struct timeline_fence, base);
}

static void timeline_put(struct gvm_timeline *tl)
{
	if (!gvm__ref_put(&tl->refcount))
		return;
	gvm__mutex_fini(&tl->lock);
	gvm__free(tl);
}

static void timeline_fence_release(struct gvm_fence *fence)
{
	struct timeline_fence *tf = to_timeline_fence(fence);

	timeline_put(tf->tl);
	gvm__free(tf);
}

/*
 * Claimed (seqno covered by signaled_seqno) but maybe not signalled yet by
 * its claimer: signal it here, with its error, so that a later seqno being
 * signalled always implies the earlier ones.  Lock-free unless it signals.
 */
static bool timeline_fence_signaled(struct gvm_fence *fence)
{
	struct timeline_fence *tf = to_timeline_fence(fence);

	if (fence->seqno > gvm_load_acquire(&tf->tl->signaled_seqno))
		return false;
	/* -EALREADY if its claimer or another poll got there first. */
	gvm__fence_signal_at(fence, tf->error, tf->timestamp_ns);
	return true;
}

static const struct gvm_fence_ops timeline_fence_ops = {
	.name = "timeline",
	.signaled = timeline_fence_signaled,
	.release = timeline_fence_release,
};

int gvm_timeline_create(const char *name, struct gvm_timeline **out)
{
	struct gvm_timeline *tl;

	if (!out)
		return -EINVAL;
	tl = gvm__calloc(1, sizeof(*tl));
	if (!tl)
		return -ENOMEM;
	gvm__mutex_init(&tl->lock, "timeline", GVM_RANK_LEAF);
	tl->name = name ? name : "timeline";
	tl->context = gvm_fence_context_alloc(1);
	tl->next_seqno = 1;
	gvm_list_init(&tl->pending);
	gvm__ref_init(&tl->refcount);
	*out = tl;
	return 0;
}

/*
 * Claims the pending fences with seqno <= @seqno (all of them if @seqno is
 * UINT64_MAX) onto @claimed, the one with exactly @seqno getting @error and
 * the others @others_error.  The pending list's references move along.
 */
static void timeline_claim_locked(struct gvm_timeline *tl, uint64_t seqno,
				  int error, int others_error,
				  struct gvm_list *claimed)
{
	int64_t now = gvm__now_ns();	/* under the lock: claims are ordered */

	gvm_lockdep_assert_held(&tl->lock);
	while (!gvm_list_empty(&tl->pending)) {
		struct timeline_fence *tf = gvm_list_first_entry(
			&tl->pending, struct timeline_fence, link);

		if (tf->base.seqno > seqno)
			break;
		tf->error = tf->base.seqno == seqno ? error : others_error;
		tf->timestamp_ns = now;
		gvm_list_del(&tf->link);
		gvm_list_add_tail(&tf->link, claimed);
	}
}

/*
 * Signals the fences claimed onto @claimed, oldest first, and drops their
 * references.  Context: without tl->lock; may run callbacks.
 */
static void timeline_signal_claimed(struct gvm_list *claimed)
{
	struct gvm_list *pos, *tmp;

	gvm_list_for_each_safe(pos, tmp, claimed) {
		struct timeline_fence *tf =
			gvm_list_entry(pos, struct timeline_fence, link);

		gvm_list_del(&tf->link);
		/* -EALREADY if a poll got there first: same error and time. */
		gvm__fence_signal_at(&tf->base, tf->error, tf->timestamp_ns);
		gvm_fence_put(&tf->base);
	}
}

void gvm_timeline_destroy(struct gvm_timeline *tl)
{
	struct gvm_list claimed;

	if (!tl)
		return;
	gvm_list_init(&claimed);
	gvm__mutex_lock(&tl->lock);
	tl->destroyed = true;
	/* Past signaled_seqno, which stays put: polls never claim these. */
	timeline_claim_locked(tl, UINT64_MAX, -ECANCELED, -ECANCELED, &claimed);
	gvm__mutex_unlock(&tl->lock);
	timeline_signal_claimed(&claimed);
	timeline_put(tl);
}

int gvm_timeline_fence_create(struct gvm_timeline *tl, struct gvm_fence **out)
{
	struct timeline_fence *tf;

	if (!tl || !out)
		return -EINVAL;
	tf = gvm__malloc(sizeof(*tf));
	if (!tf)
		return -ENOMEM;

	gvm__mutex_lock(&tl->lock);
	if (tl->destroyed) {
		gvm__mutex_unlock(&tl->lock);
		gvm__free(tf);
		return -ENODEV;
	}
	gvm_fence_init(&tf->base, &timeline_fence_ops, tl->context,
		       tl->next_seqno++);
	tf->base.flags = GVM_FENCE_F_PRODUCER_ONLY;
	tf->tl = tl;
	tf->error = 0;
	tf->timestamp_ns = -1;
	gvm__ref_get(&tl->refcount);
	gvm_fence_get(&tf->base);	/* the pending list's reference */
	gvm_list_add_tail(&tf->link, &tl->pending);
	gvm__mutex_unlock(&tl->lock);

	*out = &tf->base;
	return 0;
}

int gvm_timeline_signal(struct gvm_timeline *tl, uint64_t seqno, int error)
{
	struct gvm_list claimed;

	if (!tl || error > 0)
		return -EINVAL;
	gvm_list_init(&claimed);
	gvm__mutex_lock(&tl->lock);
	if (tl->destroyed) {
		gvm__mutex_unlock(&tl->lock);
		return -ENODEV;
	}
	if (seqno <= tl->signaled_seqno || seqno >= tl->next_seqno) {
		gvm__mutex_unlock(&tl->lock);
		return -EINVAL;
	}
	timeline_claim_locked(tl, seqno, error, 0, &claimed);
	/* Publishes the claimed fences' errors to polls (see above). */
	gvm_store_release(&tl->signaled_seqno, seqno);
	gvm__mutex_unlock(&tl->lock);
	timeline_signal_claimed(&claimed);
	return 0;
}

uint64_t gvm_timeline_signaled_seqno(struct gvm_timeline *tl)
{
	return tl ? gvm_load_acquire(&tl->signaled_seqno) : 0;
}

uint64_t gvm_timeline_context(const struct gvm_timeline *tl)
{
	return tl ? tl->context : 0;
}
