// SPDX-License-Identifier: MIT
/*
 * Fence arrays: one fence standing for several (API in <gvm/fence.h>).
 *
 * The array signals when its last member does, with the error of the member
 * that failed first in time (smallest signal timestamp among members with an
 * error; ties go to the lower index).  Deciding by timestamps rather than by
 * callback order gives the same answer whether the array is driven by member
 * callbacks or discovered by polling.
 *
 * Member callbacks are installed on demand, from enable_signaling; until then
 * gvm_fence_is_signaled() on the array polls the members.  Each installed
 * callback holds a reference on the array, dropped when it has run, so the
 * array outlives its pending callbacks.
 *
 * Locking: no lock of its own.  `pending` is atomic; the member callback that
 * takes it to zero signals the array (under that member's lock: fence locks
 * nest along dependencies, see fence.c).
 */
#include <errno.h>
#include <stdlib.h>

#include <gvm/fence.h>

#include "core/alloc.h"
#include "core/fence_internal.h"
#include "core/sync.h"

struct fence_array;

struct fence_array_cb {
	struct gvm_fence_cb cb;
	struct fence_array *array;
};

struct fence_array {
	struct gvm_fence base;
	unsigned int n;			/* immutable */
	uint32_t pending;		/* atomic: members not yet signalled */
	struct gvm_fence **fences;	/* immutable, references held */
	struct fence_array_cb cbs[];	/* used from enable_signaling on */
};

static const struct gvm_fence_ops fence_array_ops;

static struct fence_array *to_array(struct gvm_fence *fence)
{
	return gvm_container_of(fence, struct fence_array, base);
}

/* Every member is signalled: the error of the first one to fail. */
static int fence_array_error(const struct fence_array *a)
{
	int64_t first = INT64_MAX;
	int error = 0;

	for (unsigned int i = 0; i < a->n; i++) {
		const struct gvm_fence *f = a->fences[i];

		if (f->error && f->timestamp_ns < first) {
			first = f->timestamp_ns;
			error = f->error;
		}
	}
	return error;
}

static void fence_array_member_done(struct gvm_fence *member,
				    struct gvm_fence_cb *cb)
{
	struct fence_array *a =
		gvm_container_of(cb, struct fence_array_cb, cb)->array;

	if (gvm_fetch_sub_acq_rel(&a->pending, 1u) == 1)
		gvm__fence_signal(&a->base, fence_array_error(a));
	gvm_fence_put(&a->base);
}

static bool fence_array_enable_signaling(struct gvm_fence *fence)
{
	struct fence_array *a = to_array(fence);

	for (unsigned int i = 0; i < a->n; i++) {
		a->cbs[i].array = a;
		gvm_fence_get(&a->base);
		gvm_fence_add_callback(a->fences[i], &a->cbs[i].cb,
				       fence_array_member_done);
	}
	return true;
}

static bool fence_array_signaled(struct gvm_fence *fence)
{
	struct fence_array *a = to_array(fence);

	if (gvm_load_acquire(&a->base.flags) & GVM_FENCE_F_ENABLE_SIGNAL)
		return false; /* the callbacks will signal it */
	for (unsigned int i = 0; i < a->n; i++)
		if (!gvm_fence_is_signaled(a->fences[i]))
			return false;
	/* gvm signals with error 0 on true: do it ourselves with the error. */
	gvm__fence_signal(&a->base, fence_array_error(a));
	return true;
}

static void fence_array_release(struct gvm_fence *fence)
{
	struct fence_array *a = to_array(fence);

	for (unsigned int i = 0; i < a->n; i++)
		gvm_fence_put(a->fences[i]);
	gvm__free(a->fences);
	gvm__free(a);
}

static const struct gvm_fence_ops fence_array_ops = {
	.name = "array",
	.enable_signaling = fence_array_enable_signaling,
	.signaled = fence_array_signaled,
	.release = fence_array_release,
};

int gvm_fence_array_create(struct gvm_fence *const *fences, unsigned int n,
			   uint64_t context, uint64_t seqno,
			   struct gvm_fence **out)
{
	struct fence_array *a;

	if (!out || (n && !fences))
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++)
		if (!fences[i])
			return -EINVAL;

	a = gvm__calloc(1, sizeof(*a) + (size_t)n * sizeof(a->cbs[0]));
	if (!a)
		return -ENOMEM;
	a->fences = gvm__calloc(n ? n : 1, sizeof(*a->fences));
	if (!a->fences) {
		gvm__free(a);
		return -ENOMEM;
	}
	gvm_fence_init(&a->base, &fence_array_ops, context, seqno);
	a->n = n;
	a->pending = n;
	for (unsigned int i = 0; i < n; i++)
		a->fences[i] = gvm_fence_get(fences[i]);
	if (n == 0)
		gvm__fence_signal(&a->base, 0);
	*out = &a->base;
	return 0;
}

bool gvm_fence_is_array(const struct gvm_fence *fence)
{
	return fence && fence->ops == &fence_array_ops;
}
