// SPDX-License-Identifier: MIT
/*
 * Queues: in-order streams of binds (GVM_ENGINE_BIND) or of kernels
 * (COMPUTE, COPY) of one VM.
 *
 * Every queue is a scheduler queue on the device's scheduler (jobs run in
 * push order, one at a time; different queues are independent).  Exec
 * queues also have a backend queue (ops->queue_create) that runs the
 * kernels.  q->last is the fence of the latest work pushed (or completed
 * inline), so that a bind with nothing to do still signals in order, and
 * so that a bind knows whether it can run inline.
 *
 * Exec queues of preempt-fence (LR) VMs also carry a preempt fence once
 * they ran work (lr.c); destroying one waits for its kernels as for any
 * queue (the rebind worker may preempt and resume them meanwhile), then
 * retires the preempt fence.
 *
 * Destroying a queue first abandons the waits of its work for the user's
 * wait syncs (bind_job.c, "Abandoned waits"): binds take effect, execs
 * are cancelled; then it drains what is left, which depends only on work
 * gvm itself completes.  Ids (gvm_queue_id) come from a process-wide
 * counter.
 *
 * Locking: q->lock is a leaf around q->last.  Creating and destroying user
 * queues updates vm->nr_queues under vm->lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "vm/bind_job.h"
#include "vm/dev.h"
#include "vm/lr.h"
#include "vm/vm.h"

/* Queue ids, process-wide (so unique per device too). */
static uint32_t next_queue_id;	/* atomic */

int gvm__queue_create(struct gvm_vm *vm, uint32_t engine, bool internal,
		      struct gvm_queue **out)
{
	struct gvm_device *dev = vm->dev;
	struct gvm_queue *q;
	int err;

	q = gvm__calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->vm = vm;
	q->engine = engine;
	/* Unique per device while it lives: 2^32 queues do not coexist. */
	do
		q->id = gvm_fetch_add_relaxed(&next_queue_id, 1u) + 1;
	while (!q->id);
	gvm__mutex_init(&q->lock, "queue.lock", GVM_RANK_LEAF);
	gvm__lr_queue_init(q);
	err = gvm_sched_queue_create(dev->sched,
				     engine == GVM_ENGINE_BIND ? "bind" : "exec",
				     &q->sq);
	if (err)
		goto err_free;
	if (engine != GVM_ENGINE_BIND) {
		err = dev->ops->queue_create(dev, vm->dev_priv, engine,
					     &q->dev_priv);
		if (err)
			goto err_sq;
	}
	if (!internal) {
		gvm__mutex_lock(&vm->lock);
		if (vm->closed) {
			gvm__mutex_unlock(&vm->lock);
			err = -EINVAL;
			goto err_dev;
		}
		vm->nr_queues++;
		gvm__vm_get(vm);
		gvm__mutex_unlock(&vm->lock);
	}
	gvm__put_out(out, q);
	return 0;

err_dev:
	if (q->dev_priv)
		dev->ops->queue_destroy(dev, q->dev_priv);
err_sq:
	gvm_sched_queue_destroy(q->sq);
err_free:
	gvm__mutex_fini(&q->lock);
	gvm__free(q);
	return err;
}

void gvm__queue_destroy(struct gvm_queue *q, bool internal)
{
	struct gvm_vm *vm = q->vm;
	struct gvm_fence *last;

	/* Work stops waiting for wait syncs that may never signal. */
	gvm__queue_abandon_waits(q);
	last = gvm__queue_last(q);
	/* Queued work completes; it is not cancelled. */
	if (last) {
		gvm_fence_wait(last, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(last);
	}
	if (q->engine != GVM_ENGINE_BIND && gvm__vm_preempt_mode(vm))
		gvm__lr_queue_fini(q);
	gvm_sched_queue_destroy(q->sq);
	if (q->dev_priv)
		vm->dev->ops->queue_destroy(vm->dev, q->dev_priv);
	if (q->last)
		gvm_fence_put(q->last);
	gvm__mutex_fini(&q->lock);
	gvm__free(q);
	if (!internal) {
		gvm__mutex_lock(&vm->lock);
		vm->nr_queues--;
		gvm__mutex_unlock(&vm->lock);
		gvm__vm_put(vm);
	}
}

int gvm_queue_create(struct gvm_vm *vm, uint32_t engine,
		     struct gvm_queue **out)
{
	if (!vm || !out)
		return -EINVAL;
	if (engine != GVM_ENGINE_BIND && engine != GVM_ENGINE_COMPUTE &&
	    engine != GVM_ENGINE_COPY)
		return -EINVAL;
	if (gvm__device_unplugged(vm->dev))
		return -ENODEV;
	if (engine != GVM_ENGINE_BIND &&
	    (!vm->dev->ops->run ||
	     !(engine == GVM_ENGINE_COMPUTE ? vm->dev->desc.nr_compute
					    : vm->dev->desc.nr_copy)))
		return -EOPNOTSUPP;
	/* Preempt-fence mode needs queues that can be preempted. */
	if (engine != GVM_ENGINE_BIND && gvm__vm_preempt_mode(vm) &&
	    (!vm->dev->ops->queue_suspend || !vm->dev->ops->queue_resume))
		return -EOPNOTSUPP;
	return gvm__queue_create(vm, engine, false, out);
}

void gvm_queue_destroy(struct gvm_queue *q)
{
	if (q)
		gvm__queue_destroy(q, false);
}

uint32_t gvm_queue_id(const struct gvm_queue *q)
{
	return q ? q->id : 0;
}

int gvm_queue_error(const struct gvm_queue *q)
{
	return q ? gvm_load_acquire(&q->error) : -EINVAL;
}

struct gvm_fence *gvm__queue_last(struct gvm_queue *q)
{
	struct gvm_fence *f;

	gvm__mutex_lock(&q->lock);
	f = q->last ? gvm_fence_get(q->last) : NULL;
	gvm__mutex_unlock(&q->lock);
	return f;
}

bool gvm__bind_queue_idle_locked(struct gvm_queue *q)
{
	gvm_lockdep_assert_held(&q->vm->lock);
	gvm_assert(q->engine == GVM_ENGINE_BIND);
	return !q->last || gvm_fence_is_signaled(q->last);
}

void gvm__queue_set_last(struct gvm_queue *q, struct gvm_fence *f)
{
	struct gvm_fence *old;

	gvm__mutex_lock(&q->lock);
	old = q->last;
	q->last = gvm_fence_get(f);
	gvm__mutex_unlock(&q->lock);
	if (old)
		gvm_fence_put(old);
}
