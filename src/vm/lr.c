// SPDX-License-Identifier: MIT
/*
 * Long-running (LR) VMs: preempt fences and the rebind worker.
 *
 * A kernel of an LR VM may run for as long as it likes, so its job fence
 * is no promise of completion and goes in no reservation (exec.c; its
 * out-syncs may only be user fences).  What the reservations hold instead,
 * in preempt-fence mode (GVM_VM_LR_MODE without GVM_VM_FAULT_MODE), is one
 * *preempt fence* per exec queue that ever ran work: in the VM's
 * reservation and in the external BOs' it maps, at BOOKKEEP.  Nobody
 * signals a preempt fence until somebody waits for it: its
 * enable_signaling asks the backend to suspend the queue
 * (ops->queue_suspend), and the fence signals when the suspend's fence
 * does - when nothing of the queue runs any more.  So whoever waits for
 * the VM's fences (a BO move: eviction, gvm__bo_move's reservation wait;
 * a bind that removes mappings; a userptr invalidation, below) preempts
 * the queues instead of waiting for their kernels to end.
 *
 * The rebind worker (one thread per device for all its preempt-mode VMs,
 * kicked for a VM by every preempt fence of it that signals; a VM kicked
 * again while the thread works on it gets another pass after the VMs
 * kicked before) then restores the VM and resumes the queues:
 *
 *   vm->lock
 *   1. every current preempt fence: enable signalling, wait (all queues
 *      are stopped; most already were)
 *   2. repin and rebind invalidated userptrs (gvm__userptr_revalidate)
 *   3. fresh preempt fences (same context per queue, next seqno)
 *   4. lock the reservations (gvm__vm_lock_all), revalidate: BOs back,
 *      evicted handles rebound (gvm__vm_revalidate, shared with exec)
 *   5. add the fresh fences to the reservations (they replace the old
 *      ones: same context)
 *   6. notifier_lock: the fresh fences become current; the retired ones'
 *      suspends are counted in q->lr_resumes; unless a userptr was
 *      invalidated meanwhile, call queue_resume that many times
 *   -EAGAIN (an invalidation during the pass): again from 1; -ENOMEM,
 *   -ENOSPC: again after 1 ms, for up to a second; anything else, or
 *   running out of time: the VM is banned and the queues resumed (their
 *   kernels then fault on the zapped mappings and fail with -EIO).
 *
 * A banned VM (banned by a pass, or by a failed bind job or TLB
 * invalidation at any time, without vm->lock) gets no more passes, but
 * its kicks still reach the worker: every one of them stops the queues,
 * lets the reservations' holders (a move that preempted them) finish and
 * resumes them, leaving the signalled fences current (release_all()).
 * Otherwise a preempt fence still unsignalled at the ban, enabled later
 * by an eviction or an invalidation, would park its kernel for good.
 *
 * Suspends nest in the backend (a queue runs when every suspend was
 * resumed), and every preempt fence suspends at most once (on enable) and
 * is resumed at most once (when the worker retires it, step 6, or
 * releases it in a banned VM), so a preempt fence enabled at any time -
 * even one that became current a moment ago - keeps its queue stopped
 * until a worker pass replaced or released it.
 *
 * Userptr invalidations (userptr.c, preempt mode): pass 1, under
 * notifier_lock, puts the VMA on the invalidated list and references the
 * current preempt fences (gvm__lr_snapshot_locked), then enables them with
 * no lock held and returns, so that every VM the range hits starts
 * stopping its queues before any waits (the two-pass rule); pass 2 waits
 * for them, then zaps and invalidates the TLB as in any VM.  The worker's
 * step 6 and that snapshot are both under notifier_lock:
 *
 *   invalidation                        worker, step 6
 *   ------------                        --------------
 *   lock notifier_lock                  lock notifier_lock
 *   put on the invalidated list         current = fresh fences
 *   refs to the current fences          list empty? resume : -EAGAIN
 *   unlock; enable them                 unlock
 *   (pass 2) wait them; zap
 *
 * If the invalidation comes first, the worker sees the list and does not
 * resume (the invalidation's fences are the retired ones, signalled, and
 * the queues stay stopped); if the worker comes first, the invalidation
 * gets the fresh fences and preempts the resumed queues before its zap.
 * BO moves need the BO's reservation, which the worker holds from step 4
 * to step 6, so a move either precedes the pass (and step 4 restores the
 * BO) or waits for the fresh fences.
 *
 * Locking: enable_signaling may run under vm->lock, reservations,
 * notifier_lock or a fence lock (whoever waits): it takes no gvm lock but
 * the backend's leaves and q->lock, and never blocks.  The suspend fence's
 * callback kicks the worker under dev->lr.lock (a leaf) and then signals
 * the preempt fence.  One thread for the device's VMs: a pass waits only
 * for its own VM's preempt fences (the backend), its locks and its BOs'
 * moves, never for another VM's pass, so passes in turn cannot deadlock;
 * a VM whose pass retries for memory (up to RETRY_NS) delays the others.  The worker holds vm->lock while it waits for preempt
 * fences (they depend on nothing but the backend).  See docs/locking.md.
 *
 * Lifetime: a preempt fence points at its queue and VM without a
 * reference.  It is safe because every preempt fence signals before its
 * queue goes: retired ones were waited for in step 1, and queue destroy
 * (after the queue's work completed) takes the current one off the queue
 * and enables and waits for it.  The worker is kicked before the preempt
 * fence signals, so the VM (which the queue holds) is alive for the kick.
 *
 * Not done: a preempt fence is installed at a queue's first exec and stays
 * until the queue goes (xe installs it at queue creation); an external BO
 * bound after that gets the queue's fence at its next exec or worker pass
 * only.  Queue destroy waits for the queue's kernels (it does not kill
 * them).  A suspend that fails (ops->queue_suspend: -ENOMEM only) makes
 * the preempt fence wait for the queue's last job instead, which a
 * long-running kernel may never end: its waiters, the worker's step 1
 * and a banned VM's release_all() too (holding vm->lock; the worker is
 * the device's), wait as long; retrying the suspend needs a
 * thread that may sleep and a way to wake the fence's waiters, not done.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include <gvm/lockset.h>

#include "core/alloc.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/lr.h"
#include "vm/userptr.h"
#include "vm/vm.h"
#include "vm/vm_bo.h"

struct pfence {
	struct gvm_fence base;		/* must be first */
	struct gvm_queue *q;		/* not a reference: see Lifetime */
	struct gvm_vm *vm;		/* same */
	struct gvm_fence_cb cb;		/* on the suspend's fence */
	bool suspended;			/* set before the fence signals: its
					   enable suspended the queue; cleared
					   under vm->lock and notifier_lock
					   once resumed (release_all()) */
	uint32_t enabled;		/* atomic: enable_signaling ran (set
					   before the worker is kicked) */
};

_Static_assert(offsetof(struct pfence, base) == 0,
	       "to_pfence() casts a gvm_fence to its pfence");

static struct pfence *to_pfence(struct gvm_fence *f)
{
	return (struct pfence *)f;
}

/* Queues @vm for a pass of its device's worker (once until it starts). */
static void lr_kick(struct gvm_vm *vm)
{
	struct gvm_lr_worker *w = &vm->dev->lr;

	gvm__mutex_lock(&w->lock);
	if (!vm->lr_kicked && !vm->lr_dead) {
		vm->lr_kicked = true;
		gvm_list_add_tail(&vm->lr_link, &w->kicked);
		gvm__cond_signal(&w->cond);
	}
	gvm__mutex_unlock(&w->lock);
}

/* The queue stopped: kick the worker, then signal (see Lifetime). */
static void pfence_stopped(struct gvm_fence *done, struct gvm_fence_cb *cb)
{
	struct pfence *pf = gvm_container_of(cb, struct pfence, cb);

	(void)done;
	lr_kick(pf->vm);
	gvm_fence_signal(&pf->base);
	gvm_fence_put(&pf->base);
}

static bool pfence_enable(struct gvm_fence *f)
{
	struct pfence *pf = to_pfence(f);
	struct gvm_queue *q = pf->q;
	struct gvm_device *dev = pf->vm->dev;
	struct gvm_fence *done;

	gvm_store_release(&pf->enabled, 1u);
	if (!dev->ops->queue_suspend(dev, q->dev_priv, &done)) {
		pf->suspended = true;
		gvm__vm_stat_add(pf->vm, preemptions, 1);
	} else {
		/* Out of memory: fall back to the queue's work so far
		   (which may never end: see Not done above). */
		done = gvm__queue_last(q);
		if (!done) {
			lr_kick(pf->vm);
			return false;
		}
	}
	gvm_fence_get(&pf->base);
	gvm_fence_add_callback(done, &pf->cb, pfence_stopped);
	gvm_fence_put(done);
	return true;
}

static void pfence_release(struct gvm_fence *f)
{
	gvm__free(to_pfence(f));
}

static const struct gvm_fence_ops pfence_ops = {
	.name = "preempt",
	.enable_signaling = pfence_enable,
	.release = pfence_release,
};

bool gvm__lr_is_preempt_fence(const struct gvm_fence *f)
{
	return f->ops == &pfence_ops;
}

/* vm->lock held. */
static int pfence_create(struct gvm_queue *q, struct gvm_fence **out)
{
	struct pfence *pf;

	gvm_lockdep_assert_held(&q->vm->lock);
	pf = gvm__calloc(1, sizeof(*pf));
	if (!pf)
		return -ENOMEM;
	gvm_fence_init(&pf->base, &pfence_ops, q->lr_context, ++q->lr_seqno);
	pf->q = q;
	pf->vm = q->vm;
	*out = &pf->base;
	return 0;
}

/* Reservations locked with a slot each: @f in the VM's and external BOs'. */
static void pfence_install(struct gvm_vm *vm, struct gvm_fence *f)
{
	struct gvm_list *pos;

	gvm_resv_add_fence(&vm->resv, f, GVM_RESV_USAGE_BOOKKEEP);
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_vm_bo *vb =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

		if (vb->bo->resv != &vm->resv)
			gvm_resv_add_fence(vb->bo->resv, f,
					   GVM_RESV_USAGE_BOOKKEEP);
	}
}

/* ---- queues and exec ---------------------------------------------------- */

void gvm__lr_queue_init(struct gvm_queue *q)
{
	gvm_list_init(&q->lr_link);
	q->lr_context = gvm_fence_context_alloc(1);
}

void gvm__lr_queue_fini(struct gvm_queue *q)
{
	struct gvm_vm *vm = q->vm;
	struct gvm_fence *pf;

	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->notifier_lock);
	gvm_list_del(&q->lr_link);
	pf = q->pfence;
	q->pfence = NULL;
	gvm__mutex_unlock(&vm->notifier_lock);
	gvm__mutex_unlock(&vm->lock);
	if (pf) {
		/* Nobody may enable it once the queue is gone. */
		gvm_fence_enable_signaling(pf);
		gvm_fence_wait(pf, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(pf);
	}
}

int gvm__lr_exec_prepare(struct gvm_queue *q, struct gvm_fence **pf)
{
	gvm_lockdep_assert_held(&q->vm->lock);
	*pf = NULL;
	return q->pfence ? 0 : pfence_create(q, pf);
}

void gvm__lr_exec_commit_locked(struct gvm_queue *q, struct gvm_fence *pf)
{
	struct gvm_vm *vm = q->vm;

	gvm_lockdep_assert_held(&vm->notifier_lock);
	if (!pf) {
		/* External BOs bound since it was installed get it too. */
		pfence_install(vm, q->pfence);
		return;
	}
	pfence_install(vm, pf);
	q->pfence = pf;
	gvm_list_add_tail(&q->lr_link, &vm->lr_queues);
}

/* ---- userptr invalidation ---------------------------------------------- */

void gvm__lr_snapshot_locked(struct gvm_vm *vm, struct gvm_fence ***f,
			     unsigned int *n)
{
	struct gvm_list *pos;
	unsigned int k = 0;

	gvm_lockdep_assert_held(&vm->notifier_lock);
	*f = NULL;
	*n = 0;
	gvm_list_for_each(pos, &vm->lr_queues)
		k++;
	if (!k)
		return;
	*f = gvm__calloc(k, sizeof(**f));
	if (!*f)
		return;		/* the kernels fault instead (-EIO) */
	gvm_list_for_each(pos, &vm->lr_queues) {
		struct gvm_queue *q =
			gvm_list_entry(pos, struct gvm_queue, lr_link);

		(*f)[(*n)++] = gvm_fence_get(q->pfence);
	}
}

/* ---- the rebind worker ------------------------------------------------- */

#define RETRY_NS	1000000000ll	/* -ENOMEM / -ENOSPC: keep trying */
#define EAGAIN_MAX	64

static unsigned int nr_lr_queues(struct gvm_vm *vm)
{
	struct gvm_list *pos;
	unsigned int n = 0;

	gvm_list_for_each(pos, &vm->lr_queues)
		n++;
	return n;
}

#define for_each_lr_queue(q, pos, vm)					\
	for ((pos) = (vm)->lr_queues.next;				\
	     (pos) != &(vm)->lr_queues &&				\
	     ((q) = gvm_list_entry((pos), struct gvm_queue, lr_link));	\
	     (pos) = (pos)->next)

/* One pass, vm->lock held: 0, -EAGAIN (again), or an error. */
static int worker_pass(struct gvm_vm *vm)
{
	struct gvm_device *dev = vm->dev;
	struct gvm_fence **fresh = NULL;
	struct gvm_lockset ls;
	struct gvm_queue *q;
	struct gvm_list *pos;
	unsigned int n, i;
	bool again;
	int err;

	gvm_lockdep_assert_held(&vm->lock);
	/* 1. Stop every queue. */
	for_each_lr_queue(q, pos, vm)
		gvm_fence_enable_signaling(q->pfence);
	for_each_lr_queue(q, pos, vm)
		gvm_fence_wait(q->pfence, GVM_TIMEOUT_INFINITE);
	/* 2. Userptrs (no reservation held). */
	err = gvm__userptr_revalidate(vm);
	if (err)
		return err;
	/* 3. Fresh fences. */
	n = nr_lr_queues(vm);
	fresh = gvm__calloc(n ? n : 1, sizeof(*fresh));
	if (!fresh)
		return -ENOMEM;
	i = 0;
	for_each_lr_queue(q, pos, vm) {
		err = pfence_create(q, &fresh[i]);
		if (err)
			goto out;
		i++;
	}
	/* 4. Lock and revalidate. */
	gvm_lockset_init(&ls, GVM_LOCKSET_IGNORE_DUPLICATES);
	err = gvm__vm_lock_all(&ls, vm, n);
	if (!err)
		err = gvm__vm_revalidate(vm);
	if (err) {
		gvm_lockset_fini(&ls);
		goto out;
	}
	/* 5. Install; 6. make current and resume. */
	for (i = 0; i < n; i++)
		pfence_install(vm, fresh[i]);
	gvm__mutex_lock(&vm->notifier_lock);
	i = 0;
	for_each_lr_queue(q, pos, vm) {
		struct gvm_fence *old = q->pfence;

		if (to_pfence(old)->suspended)
			q->lr_resumes++;
		q->pfence = fresh[i];
		fresh[i++] = old;	/* dropped below */
	}
	again = gvm__userptr_pending_locked(vm);
	if (!again) {
		/* Counted before the kernels run again: one that ends at
		   once is never seen without its rebind. */
		gvm__vm_stat_add(vm, lr_rebinds, 1);
		for_each_lr_queue(q, pos, vm)
			for (; q->lr_resumes; q->lr_resumes--)
				dev->ops->queue_resume(dev, q->dev_priv);
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	gvm_lockset_fini(&ls);
	err = again ? -EAGAIN : 0;
	i = n;
out:
	while (i--)
		gvm_fence_put(fresh[i]);
	gvm__free(fresh);
	return err;
}

/* Waits for whoever holds @resv (alone: no other reservation is held). */
static void resv_barrier(struct gvm_resv *resv)
{
	gvm_resv_lock(resv, NULL);
	gvm_resv_unlock(resv);
}

/*
 * The pass of a banned VM, vm->lock held.  No pass restores a banned VM,
 * so its queues are let run (into faults: its kernels fail with -EIO on
 * the zapped mappings) and nothing waits for them forever:
 *   1. as in step 1, every current preempt fence is enabled and waited
 *      for: each has signalled and says whether it suspended its queue;
 *   2. each of the VM's reservations is locked and unlocked in turn: a
 *      BO move that preempted the queues holds its BO's from before its
 *      wait to its end, so it ends before the kernels run again (as a
 *      pass's step 4 orders it);
 *   3. under notifier_lock, each queue is resumed as often as it was
 *      suspended (step 6 without fresh fences).
 * The signalled fences stay current, so whoever waits for the VM's
 * fences later finds them signalled and preempts nothing; a move then
 * zaps the running kernel's mappings before it copies (move.c), and a
 * userptr invalidation zaps before the memory changes, so the kernel
 * faults and never reaches memory it lost.  Exec installs no fence in a
 * banned VM, but one that checked the ban before a bind job set it
 * (bind_job.c, without vm->lock) may have; its first waiter enables it,
 * which kicks the worker, and needs_pass() brings it here again.
 * pf->suspended is cleared so that such a later pass does not resume the
 * same suspend twice.
 */
static void release_all(struct gvm_vm *vm)
{
	struct gvm_device *dev = vm->dev;
	struct gvm_queue *q;
	struct gvm_list *pos;

	gvm_lockdep_assert_held(&vm->lock);
	for_each_lr_queue(q, pos, vm)
		gvm_fence_enable_signaling(q->pfence);
	for_each_lr_queue(q, pos, vm)
		gvm_fence_wait(q->pfence, GVM_TIMEOUT_INFINITE);
	resv_barrier(&vm->resv);
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_resv *resv =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link)->bo->resv;

		if (resv != &vm->resv)
			resv_barrier(resv);
	}
	gvm__mutex_lock(&vm->notifier_lock);
	for_each_lr_queue(q, pos, vm) {
		struct pfence *pf = to_pfence(q->pfence);

		if (pf->suspended) {
			pf->suspended = false;
			q->lr_resumes++;
		}
		for (; q->lr_resumes; q->lr_resumes--)
			dev->ops->queue_resume(dev, q->dev_priv);
	}
	gvm__mutex_unlock(&vm->notifier_lock);
}

/*
 * vm->lock held: some queue is being preempted.  Not "signalled": the
 * worker is kicked just before the preempt fence signals (step 1 waits).
 * A banned VM too: its queues must be resumed (release_all()), whoever
 * banned it (a failed bind job or TLB invalidation, not only a pass) and
 * however long after.
 */
static bool needs_pass(struct gvm_vm *vm)
{
	struct gvm_queue *q;
	struct gvm_list *pos;

	gvm_lockdep_assert_held(&vm->lock);
	if (vm->closed)
		return false;
	for_each_lr_queue(q, pos, vm)
		if (gvm_load_acquire(&to_pfence(q->pfence)->enabled) ||
		    q->lr_resumes)
			return true;
	return false;
}

static void worker_run(struct gvm_vm *vm)
{
	int64_t start = gvm__now_ns();
	unsigned int eagain = 0;
	int err;

	gvm__mutex_lock(&vm->lock);
	while (needs_pass(vm)) {
		if (gvm__vm_banned(vm)) {
			release_all(vm);
			break;
		}
		err = worker_pass(vm);
		if (!err)
			break;
		if (err == -EAGAIN && ++eagain < EAGAIN_MAX)
			continue;
		if ((err == -EAGAIN || err == -ENOMEM || err == -ENOSPC) &&
		    gvm__now_ns() - start < RETRY_NS) {
			gvm__mutex_unlock(&vm->lock);
			gvm__sleep_ns(1000000);
			gvm__mutex_lock(&vm->lock);
			continue;
		}
		gvm__vm_ban(vm, err);
		release_all(vm);
		break;
	}
	gvm__mutex_unlock(&vm->lock);
	gvm__dev_reap(vm->dev);		/* eviction's deferred puts */
}

static void *worker_main(void *arg)
{
	struct gvm_lr_worker *w = arg;

	pthread_setname_np(pthread_self(), "gvm-rebind");
	gvm__mutex_lock(&w->lock);
	while (!w->stop) {
		struct gvm_vm *vm;

		if (gvm_list_empty(&w->kicked)) {
			gvm__cond_wait(&w->cond, &w->lock);
			continue;
		}
		vm = gvm_list_first_entry(&w->kicked, struct gvm_vm, lr_link);
		gvm_list_del(&vm->lr_link);
		vm->lr_kicked = false;
		w->running = vm;
		gvm__mutex_unlock(&w->lock);
		worker_run(vm);
		gvm__mutex_lock(&w->lock);
		w->running = NULL;
		gvm__cond_broadcast(&w->cond);	/* gvm__lr_vm_fini */
	}
	gvm__mutex_unlock(&w->lock);
	return NULL;
}

void gvm__lr_dev_init(struct gvm_device *dev)
{
	struct gvm_lr_worker *w = &dev->lr;

	gvm__mutex_init(&w->start_lock, "device.lr.start", GVM_RANK_NONE);
	gvm__mutex_init(&w->lock, "device.lr.lock", GVM_RANK_LEAF);
	gvm__cond_init(&w->cond);
	gvm_list_init(&w->kicked);
}

void gvm__lr_dev_fini(struct gvm_device *dev)
{
	struct gvm_lr_worker *w = &dev->lr;

	gvm__mutex_lock(&w->lock);
	GVM_BUG_ON(!gvm_list_empty(&w->kicked));
	w->stop = true;
	gvm__cond_signal(&w->cond);
	gvm__mutex_unlock(&w->lock);
	if (w->started)
		gvm__thread_join(w->thread);
	pthread_cond_destroy(&w->cond);
	gvm__mutex_fini(&w->lock);
	gvm__mutex_fini(&w->start_lock);
}

int gvm__lr_vm_init(struct gvm_vm *vm)
{
	struct gvm_lr_worker *w = &vm->dev->lr;
	int err = 0;

	if (!gvm__vm_preempt_mode(vm))
		return 0;
	/*
	 * Not under w->lock: pthread_create() allocates from glibc's heap,
	 * the application's memory, and touching a page of it SVM moved
	 * blocks until the fault-back ends, which may wait for a preempt
	 * fence whose suspend callback takes w->lock (docs/locking.md,
	 * "Touching application memory").
	 */
	gvm__mutex_lock(&w->start_lock);
	if (!w->started) {
		pthread_t t;

		err = gvm__thread_create(&t, worker_main, w);
		if (!err) {
			gvm__mutex_lock(&w->lock);
			w->thread = t;
			w->started = true;
			gvm__mutex_unlock(&w->lock);
		}
	}
	gvm__mutex_unlock(&w->start_lock);
	return err;
}

void gvm__lr_vm_fini(struct gvm_vm *vm)
{
	struct gvm_lr_worker *w = &vm->dev->lr;

	if (!gvm__vm_preempt_mode(vm))
		return;
	gvm__mutex_lock(&w->lock);
	vm->lr_dead = true;
	if (vm->lr_kicked) {
		gvm_list_del(&vm->lr_link);
		vm->lr_kicked = false;
	}
	while (w->running == vm)
		gvm__cond_wait(&w->cond, &w->lock);
	gvm__mutex_unlock(&w->lock);
}
