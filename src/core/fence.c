// SPDX-License-Identifier: MIT
/*
 * Fences: signalling, callbacks, waits, references (API in <gvm/fence.h>).
 *
 * State machine.  A fence is pending until gvm__fence_signal() sets
 * GVM_FENCE_F_SIGNALED; it never goes back.  error and timestamp_ns are
 * written before that bit is set with release semantics, so a reader that
 * sees the bit (acquire) sees them.
 *
 * Locking.  fence->lock (rank GVM_RANK_FENCE) protects cb_list and makes
 * "test SIGNALED, then link a callback" atomic against "set SIGNALED, then run
 * the callbacks".  Callbacks run under the lock, which is what makes
 * gvm_fence_remove_callback() a barrier: once it has taken the lock, the
 * callback is either still linked or has returned.  A callback may signal
 * other fences, so fence locks nest; that cannot deadlock because callbacks
 * only run from a fence to the fences that depend on it, and fence
 * dependencies form a DAG.  ops->enable_signaling is called without the lock
 * precisely so that a producer may add callbacks to other fences from it
 * (fence arrays do) without ordering those locks against ours.
 *
 *   signaller                          waiter
 *   ---------                          ------
 *                                      add_callback: lock
 *                                        SIGNALED? no -> link cb
 *                                      unlock; futex_wait(done == 0)
 *   lock
 *   error, timestamp; set SIGNALED
 *   for each cb: unlink, cb->func()  -> done = 1, futex_wake
 *   unlock                             returns 0
 *
 * Waits use a futex on a word in the waiter's stack frame; every waiter passes
 * gvm_fence_remove_callback() (a barrier, above) before its frame goes away,
 * whether it timed out or was woken, so the callback's futex_wake() never
 * touches a dead frame.
 *
 * What it does not do: no deadlock detection between fences (a fence that is
 * never signalled makes its waiters wait forever, or until their timeout).
 */
#include <errno.h>
#include <stdlib.h>

#include <gvm/fence.h>

#include "core/alloc.h"
#include "core/fence_internal.h"
#include "core/list.h"
#include "core/sync.h"

/* How long a waiter polls before it sleeps (the engines and the
   scheduler's workers spin as long after work: core/sync.h). */
#define FENCE_SPIN_NS GVM_HANDOFF_SPIN_NS

static uint64_t next_context = 1;

uint64_t gvm_fence_context_alloc(unsigned int n)
{
	return gvm_fetch_add_relaxed(&next_context, (uint64_t)(n ? n : 1));
}

static const struct gvm_fence_ops software_ops = {
	.name = "software",
};

void gvm_fence_init(struct gvm_fence *fence, const struct gvm_fence_ops *ops,
		    uint64_t context, uint64_t seqno)
{
	gvm__mutex_init(&fence->lock, "fence", GVM_RANK_FENCE);
	fence->ops = ops ? ops : &software_ops;
	gvm_list_init(&fence->cb_list);
	fence->context = context;
	fence->seqno = seqno;
	fence->timestamp_ns = -1;
	fence->error = 0;
	fence->flags = 0;
	gvm__ref_init(&fence->refcount);
}

int gvm_fence_create(uint64_t context, uint64_t seqno, struct gvm_fence **out)
{
	struct gvm_fence *fence;

	if (!out)
		return -EINVAL;
	fence = gvm__malloc(sizeof(*fence));
	if (!fence)
		return -ENOMEM;
	gvm_fence_init(fence, NULL, context, seqno);
	*out = fence;
	return 0;
}

int gvm_fence_create_signaled(int error, struct gvm_fence **out)
{
	int err;

	if (error > 0)
		return -EINVAL;
	err = gvm_fence_create(gvm_fence_context_alloc(1), 1, out);
	if (err)
		return err;
	gvm__fence_signal(*out, error);
	return 0;
}

static const struct gvm_fence_ops stub_ops = {
	.name = "stub",
	.release = NULL,	/* never called: the library keeps a reference */
};
static struct gvm_fence stub;
static pthread_once_t stub_once = PTHREAD_ONCE_INIT;

/*
 * Born signalled (at time 0), the initial reference kept.  Not through
 * gvm__fence_signal(): nobody sees the stub before pthread_once returns,
 * so there is no callback to run and no lock to take, and taking it would
 * make the first use in a process differ from every later one by a
 * scheduling point (a deterministic run, core/det.h, would then depend on
 * what the process had done before it).
 */
static void stub_init(void)
{
	gvm_fence_init(&stub, &stub_ops, gvm_fence_context_alloc(1), 1);
	stub.timestamp_ns = 0;
	gvm_fetch_or_acq_rel(&stub.flags, GVM_FENCE_F_SIGNALED);
}

struct gvm_fence *gvm__fence_get_stub(void)
{
	pthread_once(&stub_once, stub_init);
	return gvm_fence_get(&stub);
}

struct gvm_fence *gvm_fence_get(struct gvm_fence *fence)
{
	if (fence)
		gvm__ref_get(&fence->refcount);
	return fence;
}

void gvm_fence_put(struct gvm_fence *fence)
{
	if (!fence || !gvm__ref_put(&fence->refcount))
		return;
	/* Callbacks on a fence nobody references would never run. */
	GVM_WARN_ON(!gvm_list_empty(&fence->cb_list));
	gvm__mutex_fini(&fence->lock);
	if (fence->ops->release)
		fence->ops->release(fence);
	else if (gvm__heap_owns(fence))
		gvm__free(fence);	/* the library's own fences */
	else
		free(fence);		/* the caller's, as fence.h says */
}

static int fence_signal(struct gvm_fence *fence, int error,
			int64_t timestamp_ns)
{
	struct gvm_list *pos, *tmp;

	gvm__mutex_lock(&fence->lock);
	if (gvm_load_relaxed(&fence->flags) & GVM_FENCE_F_SIGNALED) {
		gvm__mutex_unlock(&fence->lock);
		return -EALREADY;
	}
	fence->error = error;
	fence->timestamp_ns = timestamp_ns < 0 ? gvm__now_ns() : timestamp_ns;
	gvm_fetch_or_acq_rel(&fence->flags, GVM_FENCE_F_SIGNALED);

	gvm_list_for_each_safe(pos, tmp, &fence->cb_list) {
		struct gvm_fence_cb *cb =
			gvm_list_entry(pos, struct gvm_fence_cb, node);

		gvm_list_del(&cb->node);
		cb->func(fence, cb);	/* may free cb: don't touch it again */
	}
	gvm__mutex_unlock(&fence->lock);
	return 0;
}

int gvm__fence_signal(struct gvm_fence *fence, int error)
{
	return fence_signal(fence, error, -1);
}

int gvm__fence_signal_at(struct gvm_fence *fence, int error,
			 int64_t timestamp_ns)
{
	return fence_signal(fence, error, timestamp_ns);
}

int gvm_fence_signal_error(struct gvm_fence *fence, int error)
{
	if (!fence || error > 0)
		return -EINVAL;
	if (gvm_load_relaxed(&fence->flags) & GVM_FENCE_F_PRODUCER_ONLY)
		return -EPERM;
	return gvm__fence_signal(fence, error);
}

int gvm_fence_signal(struct gvm_fence *fence)
{
	return gvm_fence_signal_error(fence, 0);
}

bool gvm_fence_is_signaled(struct gvm_fence *fence)
{
	if (!fence)
		return false;
	if (gvm_load_acquire(&fence->flags) & GVM_FENCE_F_SIGNALED)
		return true;
	if (fence->ops->signaled && fence->ops->signaled(fence)) {
		gvm__fence_signal(fence, 0);
		return true;
	}
	return false;
}

int gvm_fence_get_status(struct gvm_fence *fence)
{
	if (!fence)
		return -EINVAL;
	if (!gvm_fence_is_signaled(fence))
		return 0;
	return fence->error ? fence->error : 1;
}

int64_t gvm_fence_timestamp(struct gvm_fence *fence)
{
	if (!fence || !gvm_fence_is_signaled(fence))
		return -1;
	return fence->timestamp_ns;
}

void gvm_fence_enable_signaling(struct gvm_fence *fence)
{
	uint32_t old;

	if (!fence)
		return;
	old = gvm_fetch_or_acq_rel(&fence->flags, GVM_FENCE_F_ENABLE_SIGNAL);
	if (old & (GVM_FENCE_F_ENABLE_SIGNAL | GVM_FENCE_F_SIGNALED))
		return;
	if (fence->ops->enable_signaling &&
	    !fence->ops->enable_signaling(fence))
		gvm__fence_signal(fence, 0);
}

int gvm_fence_add_callback(struct gvm_fence *fence, struct gvm_fence_cb *cb,
			   gvm_fence_func_t func)
{
	if (!fence || !cb || !func)
		return -EINVAL;
	cb->func = func;
	gvm_fence_enable_signaling(fence);

	gvm__mutex_lock(&fence->lock);
	if (gvm_load_relaxed(&fence->flags) & GVM_FENCE_F_SIGNALED) {
		gvm__mutex_unlock(&fence->lock);
		gvm_list_init(&cb->node);
		func(fence, cb);
		return 0;
	}
	gvm_list_add_tail(&cb->node, &fence->cb_list);
	gvm__mutex_unlock(&fence->lock);
	return 0;
}

bool gvm_fence_remove_callback(struct gvm_fence *fence, struct gvm_fence_cb *cb)
{
	bool removed;

	if (!fence || !cb)
		return false;
	gvm__mutex_lock(&fence->lock);
	removed = !gvm_list_empty(&cb->node);
	if (removed)
		gvm_list_del(&cb->node);
	gvm__mutex_unlock(&fence->lock);
	return removed;
}

/*
 * A waiter, on the waiting thread's stack.  The callback wakes it with a
 * futex only if it went to sleep (a waiter still spinning needs no system
 * call), and says when it no longer touches the waiter (gone), so that a
 * waiter that saw done leaves without taking the fence's lock, which the
 * signaller holds while it runs the callbacks: a waiter blocking on it
 * slept, and the signaller's unlock had to wake it (tlb_inval_range,
 * docs/performance.md).  sleeping and done are a Dekker pair: the waiter
 * sets sleeping before it looks at done for the last time, the callback
 * sets done before it looks at sleeping, both seq_cst, so one of them
 * sees the other.
 */
struct fence_waiter {
	struct gvm_fence_cb cb;
	uint32_t done;		/* the fence signalled */
	uint32_t sleeping;	/* the waiter may be in futex_wait */
	uint32_t gone;		/* the callback no longer touches *w */
};

static void fence_waiter_wake(struct gvm_fence *fence, struct gvm_fence_cb *cb)
{
	struct fence_waiter *w = gvm_container_of(cb, struct fence_waiter, cb);

	gvm_store_seq_cst(&w->done, 1u);
	if (gvm_load_seq_cst(&w->sleeping))
		gvm__futex_wake(&w->done, 1);
	gvm_store_release(&w->gone, 1u);
}

/*
 * Returns once the callback no longer touches @w: it is about to say so,
 * or has not finished running; in the second case the fence's lock,
 * held while callbacks run, is the barrier.
 */
static void fence_waiter_leave(struct gvm_fence *fence,
			       struct fence_waiter *w)
{
	for (int i = 0; i < 256; i++) {
		if (gvm_load_acquire(&w->gone))
			return;
		gvm_cpu_relax();
	}
	gvm_fence_remove_callback(fence, &w->cb);
}

static int fence_wait(struct gvm_fence *fence, int64_t timeout_ns,
		      bool interruptible)
{
	struct fence_waiter w = { .done = 0, .sleeping = 0, .gone = 0 };
	int64_t deadline;
	int err;

	if (!fence)
		return -EINVAL;
	if (gvm_fence_is_signaled(fence))
		return 0;
	if (timeout_ns == 0)
		return -ETIME;
	gvm_might_block();

	deadline = gvm__deadline(timeout_ns);
	/*
	 * Many waits are short (a TLB invalidation, a small copy) and a futex
	 * sleep + wakeup costs tens of microseconds: poll first, on the
	 * fence's flags alone, with no callback to add and remove (each a
	 * round of the fence's lock, which the signaller takes too).  The
	 * poll asks the producer too (ops->signaled), so a fence that is
	 * complete but not yet signalled (a deadline that passed) is
	 * signalled here rather than by a thread that must wake up first.
	 * A fence that cannot be polled (no ops->signaled) has signalling
	 * enabled first: some producers only start then (a preempt fence,
	 * lr.c).  One that can is not: enabling may cost the producer work
	 * a poll makes useless (the simulated TLB's fences arm a timer
	 * thread, whose wake-ups competed with this very poll:
	 * inval_2pass_4dev, docs/performance.md).
	 */
	if (!fence->ops->signaled)
		gvm_fence_enable_signaling(fence);
	{
		int64_t until = gvm__now_ns() + FENCE_SPIN_NS;

		if (deadline >= 0 && until > deadline)
			until = deadline;
		/* One pause (~13 ns here) between looks, not 32: the
		   signal is seen ~0.2 us sooner on average (tlb_inval_range,
		   docs/performance.md); the clock is read every 32 looks. */
		do {
			for (int i = 0; i < 32; i++) {
				if (gvm_fence_is_signaled(fence))
					return 0;
				gvm_cpu_relax();
			}
		} while (gvm__now_ns() < until);
	}
	gvm_fence_add_callback(fence, &w.cb, fence_waiter_wake);
	if (!gvm_load_acquire(&w.done)) {
		gvm_store_seq_cst(&w.sleeping, 1u);
		while (!gvm_load_seq_cst(&w.done)) {
			err = gvm__futex_wait(&w.done, 0, deadline);
			if (err == -ETIME ||
			    (err == -EINTR && interruptible)) {
				/* Signalled meanwhile if the callback ran. */
				return gvm_fence_remove_callback(fence, &w.cb) ?
					       err : 0;
			}
		}
	}
	/* Let the callback finish with our frame before it goes away. */
	fence_waiter_leave(fence, &w);
	return 0;
}

int gvm_fence_wait(struct gvm_fence *fence, int64_t timeout_ns)
{
	return fence_wait(fence, timeout_ns, false);
}

int gvm_fence_wait_interruptible(struct gvm_fence *fence, int64_t timeout_ns)
{
	return fence_wait(fence, timeout_ns, true);
}

bool gvm_fence_is_later(const struct gvm_fence *a, const struct gvm_fence *b)
{
	return a && b && a->context == b->context && a->seqno > b->seqno;
}

const char *gvm_fence_producer(const struct gvm_fence *fence)
{
	return fence ? fence->ops->name : "(null)";
}
