// SPDX-License-Identifier: MIT
/*
 * Timelines: a fence producer whose fences signal in seqno order (API in
 * <gvm/fence.h>).
 *
 * Locking: tl->lock (rank GVM_RANK_TIMELINE) protects next_seqno, the pending
 * list and destroyed; signaled_seqno is written under it and read lock-free.
 * Fences are signalled under tl->lock, oldest first, so anybody who sees fence
 * N signalled also sees every earlier fence signalled.  The order is
 * timeline lock -> fence lock; no fence callback takes a timeline lock.
 *
 * Lifetime: the pending list holds a reference on each pending fence; each
 * fence holds a reference on its timeline; the creator holds one more, which
 * gvm_timeline_destroy() drops after cancelling the pending fences.
 */
#include <errno.h>
#include <stdlib.h>

#include <gvm/fence.h>

#include "core/fence_internal.h"
#include "core/list.h"
#include "core/sync.h"

struct gvm_timeline {
	struct gvm_mutex lock;
	const char *name;		/* immutable */
	uint64_t context;		/* immutable */
	uint64_t next_seqno;		/* under lock */
	uint64_t signaled_seqno;	/* written under lock, read atomically */
	struct gvm_list pending;	/* timeline_fence.link, under lock */
	bool destroyed;			/* under lock */
	uint32_t refcount;		/* atomic */
};

struct timeline_fence {
	struct gvm_fence base;
	struct gvm_timeline *tl;	/* immutable, reference held */
	struct gvm_list link;		/* in tl->pending, under tl->lock */
};

static void timeline_put(struct gvm_timeline *tl)
{
	if (!gvm__ref_put(&tl->refcount))
		return;
	gvm__mutex_fini(&tl->lock);
	free(tl);
}

static void timeline_fence_release(struct gvm_fence *fence)
{
	struct timeline_fence *tf =
		gvm_container_of(fence, struct timeline_fence, base);

	timeline_put(tf->tl);
	free(tf);
}

static const struct gvm_fence_ops timeline_fence_ops = {
	.name = "timeline",
	.release = timeline_fence_release,
};

int gvm_timeline_create(const char *name, struct gvm_timeline **out)
{
	struct gvm_timeline *tl;

	if (!out)
		return -EINVAL;
	tl = calloc(1, sizeof(*tl));
	if (!tl)
		return -ENOMEM;
	gvm__mutex_init(&tl->lock, "timeline", GVM_RANK_TIMELINE);
	tl->name = name ? name : "timeline";
	tl->context = gvm_fence_context_alloc(1);
	tl->next_seqno = 1;
	gvm_list_init(&tl->pending);
	gvm__ref_init(&tl->refcount);
	*out = tl;
	return 0;
}

/* Signals pending fences up to @seqno; returns them to be put unlocked. */
static void timeline_signal_locked(struct gvm_timeline *tl, uint64_t seqno,
				   int error, struct gvm_list *done)
{
	gvm_lockdep_assert_held(&tl->lock);
	while (!gvm_list_empty(&tl->pending)) {
		struct timeline_fence *tf = gvm_list_first_entry(
			&tl->pending, struct timeline_fence, link);

		if (tf->base.seqno > seqno)
			break;
		gvm__fence_signal(&tf->base, tf->base.seqno == seqno ? error : 0);
		gvm_list_del(&tf->link);
		gvm_list_add_tail(&tf->link, done);
	}
	gvm_store_release(&tl->signaled_seqno, seqno);
}

static void timeline_put_done(struct gvm_list *done)
{
	struct gvm_list *pos, *tmp;

	gvm_list_for_each_safe(pos, tmp, done) {
		struct timeline_fence *tf =
			gvm_list_entry(pos, struct timeline_fence, link);

		gvm_list_del(&tf->link);
		gvm_fence_put(&tf->base);
	}
}

void gvm_timeline_destroy(struct gvm_timeline *tl)
{
	struct gvm_list done;

	if (!tl)
		return;
	gvm_list_init(&done);
	gvm__mutex_lock(&tl->lock);
	tl->destroyed = true;
	while (!gvm_list_empty(&tl->pending)) {
		struct timeline_fence *tf = gvm_list_first_entry(
			&tl->pending, struct timeline_fence, link);

		gvm__fence_signal(&tf->base, -ECANCELED);
		gvm_list_del(&tf->link);
		gvm_list_add_tail(&tf->link, &done);
	}
	gvm__mutex_unlock(&tl->lock);
	timeline_put_done(&done);
	timeline_put(tl);
}

int gvm_timeline_fence_create(struct gvm_timeline *tl, struct gvm_fence **out)
{
	struct timeline_fence *tf;

	if (!tl || !out)
		return -EINVAL;
	tf = malloc(sizeof(*tf));
	if (!tf)
		return -ENOMEM;

	gvm__mutex_lock(&tl->lock);
	if (tl->destroyed) {
		gvm__mutex_unlock(&tl->lock);
		free(tf);
		return -ENODEV;
	}
	gvm_fence_init(&tf->base, &timeline_fence_ops, tl->context,
		       tl->next_seqno++);
	tf->base.flags = GVM_FENCE_F_TIMELINE;
	tf->tl = tl;
	gvm__ref_get(&tl->refcount);
	gvm_fence_get(&tf->base);	/* the pending list's reference */
	gvm_list_add_tail(&tf->link, &tl->pending);
	gvm__mutex_unlock(&tl->lock);

	*out = &tf->base;
	return 0;
}

int gvm_timeline_signal(struct gvm_timeline *tl, uint64_t seqno, int error)
{
	struct gvm_list done;

	if (!tl || error > 0)
		return -EINVAL;
	gvm_list_init(&done);
	gvm__mutex_lock(&tl->lock);
	if (seqno <= tl->signaled_seqno || seqno >= tl->next_seqno) {
		gvm__mutex_unlock(&tl->lock);
		return -EINVAL;
	}
	timeline_signal_locked(tl, seqno, error, &done);
	gvm__mutex_unlock(&tl->lock);
	timeline_put_done(&done);
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
