// SPDX-License-Identifier: MIT
/*
 * Exec: run a kernel on an exec queue of a VM.
 *
 * The shape of the xe exec ioctl (seed 001's locking document):
 *
 *   1. check the queue, the kernel and the syncs             -EINVAL
 *   2. vm->lock, then lock the VM's reservation and every external BO
 *      mapped in the VM with the lockset (ww back-off), one fence slot each
 *   3. revalidate: move evicted BOs back to VRAM (evicting idle BOs of
 *      others if needed), rebind the VMAs of BOs that moved since the last
 *      exec (their PTEs were zapped by the move), bump the LRU; before
 *      the reservations are taken: refetch and rebind the userptrs on the
 *      VM's invalidated list (userptr.c)
 *   4. a job on the queue: dependencies are the in-syncs, the VM's KERNEL
 *      fences (binds and moves submitted before) and the external BOs'
 *      KERNEL fences (their moves)
 *   5. arm, add the job's fence to every reservation at BOOKKEEP (so a
 *      later unbind waits for the kernel), push (deferred: no worker
 *      woken), unlock, and start the job here if no scheduler worker is
 *      at the queue (gvm_sched_queue_run(): direct submission, no thread
 *      hand-off); signal the out-syncs.  The engine signals the job's
 *      fence itself (signal_from_hw), so an exec on an idle queue reaches
 *      its waiter through the engine thread alone
 *
 * Long-running VMs (GVM_VM_LR_MODE): a kernel may never end, so its fence
 * goes in no reservation and the out-syncs may only be user fences
 * (-EINVAL otherwise, as in xe).  In preempt-fence mode (LR without
 * FAULT) the queue's preempt fence stands in for it (lr.c): installed at
 * the queue's first exec, re-added to the external BOs at each.
 * gvm__vm_lock_all() and gvm__vm_revalidate() are shared with the rebind
 * worker.
 *
 * The job's run() hands the kernel to the backend (ops->run), whose fence
 * is the hardware fence: the job's finished fence signals with its error
 * (-EIO after an unrecoverable GPU fault).  If ops->run fails, the
 * job's fence carries its error and the queue keeps the first one
 * (q->error, gvm_queue_error()): the user fences of a long-running VM,
 * its only out-syncs, are written all the same and carry no error.
 *
 * Waiting for VRAM: when revalidation finds VRAM full of BOs it may not
 * evict now (busy with other VMs' kernels, or held), or an older waiter
 * has marked one of this VM's BOs for eviction, the exec drops every lock,
 * waits for room under a claim (evict.c: the older waiters' claims, else
 * the victim, else, with only its own BOs in VRAM, for VRAM in flight to
 * be freed or to reach the LRU), and starts over: at most EXEC_VRAM_WAITS
 * rounds, then -ENOSPC; also -ENOSPC when nothing changed in a round's
 * bound (VRAM held by what nobody frees: page tables, kernels that do not
 * end).  Its own VRAM-only BOs exceeding VRAM fail at once.  A round for
 * page tables (no VRAM-only BO missing) asks for their headroom, which
 * SVM memory gives back (wait_for_vram()).
 *
 * Locking: vm->lock, then reservations (lockset); no lock while waiting
 * for VRAM or while the kernel runs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/lockset.h>
#include <gvm/kernel.h>

#include "core/alloc.h"
#include "core/sync.h"
#include "core/trace.h"
#include "mm/mm.h"
#include "vm/bind.h"
#include "vm/bind_job.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/lr.h"
#include "vm/policy.h"
#include "vm/sync.h"
#include "vm/userptr.h"
#include "vm/vm.h"
#include "vm/vm_bo.h"

void (*gvm__exec_before_check)(struct gvm_vm *vm);

struct exec_job {
	struct gvm_job job;
	struct gvm_queue *q;		/* the user keeps it alive: destroying
					   a queue drains it */
	struct gvm_kernel k;
	struct gvm_fence_cb idle_cb;	/* on the job's fence: ends its count
					   in vm->execs_inflight */
};

/*
 * The job's fence signalled: one exec fewer in flight (page-table reclaim
 * takes only idle VMs, pt_reclaim.c).  Added before anyone else can wait
 * for the fence, so a waiter woken by it sees the count already dropped.
 */
static void exec_idle(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct exec_job *ej = gvm_container_of(cb, struct exec_job, idle_cb);

	(void)f;
	gvm_fetch_sub_release(&ej->q->vm->execs_inflight, 1u);
}

static int exec_run(struct gvm_job *job, struct gvm_fence **hw_fence)
{
	struct exec_job *ej = gvm_container_of(job, struct exec_job, job);
	struct gvm_device *dev = ej->q->vm->dev;
	int err, none = 0;

	gvm__trace_exec(dev, dev->name, job->queue,
			gvm__queue_name(ej->q->engine), ej->k.name, ej->k.grid,
			job->finished);
	err = dev->ops->run(dev, ej->q->dev_priv, &ej->k, hw_fence);
	/* Its user fences signal all the same: say so (gvm_queue_error). */
	if (err)
		gvm_cmpxchg_release(&ej->q->error, &none, err);
	return err;
}

static void exec_free(struct gvm_job *job)
{
	gvm__free(gvm_container_of(job, struct exec_job, job));
}

static const struct gvm_job_ops exec_ops = {
	.run = exec_run,
	.free = exec_free,
	.signal_from_hw = true,	/* free() only frees the job's memory */
};

/*
 * @resv's fences at @usage (binds, moves): pending ones through proxies
 * that destroying the queue cancels, as for wait syncs, since a bind may
 * itself wait for a wait sync that never signals (of another queue,
 * which the destroy does not abandon).
 */
static int add_deps(struct exec_job *ej, struct gvm_resv *resv,
		    enum gvm_resv_usage usage)
{
	struct gvm_fence **f, *p;
	unsigned int n, i;
	int err = gvm_resv_get_fences(resv, usage, &f, &n);

	if (err)	/* f and n are not set */
		return err;
	for (i = 0; !err && i < n; i++) {
		if (gvm_fence_is_signaled(f[i])) {	/* its error counts */
			err = gvm_job_add_dependency(&ej->job, f[i]);
			continue;
		}
		err = gvm__queue_wait_proxy(ej->q, f[i], &p);
		if (!err) {
			err = gvm_job_add_dependency(&ej->job, p);
			gvm_fence_put(p);
		}
	}
	if (n)
		gvm_resv_put_fences(f, n);
	return err;
}

/* The job's dependencies: in-syncs, binds and moves before it. */
static int add_job_deps(struct exec_job *ej, struct gvm_vm *vm,
			const struct gvm_sync_set *set)
{
	struct gvm_list *pos;
	uint32_t i;
	int err = 0;

	for (i = 0; !err && i < set->nr_in; i++)
		err = gvm_job_add_dependency(&ej->job, set->in[i]);
	if (!err)
		err = add_deps(ej, &vm->resv, GVM_RESV_USAGE_KERNEL);
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_vm_bo *vb =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

		if (err)
			break;
		if (vb->bo->resv != &vm->resv)
			err = add_deps(ej, vb->bo->resv,
				       GVM_RESV_USAGE_KERNEL);
	}
	return err;
}

/*
 * Publishes the job's fence where later binds, moves and invalidations look
 * for it: every reservation at BOOKKEEP, or, for a preempt-fence VM, the
 * queue's preempt fence instead.  Reservations and notifier_lock held.
 */
static void publish_locked(struct gvm_queue *q, struct gvm_fence *done,
			   struct gvm_fence *pf)
{
	struct gvm_vm *vm = q->vm;
	struct gvm_list *pos;

	gvm_lockdep_assert_held(&vm->notifier_lock);
	if (gvm__vm_preempt_mode(vm)) {
		gvm__lr_exec_commit_locked(q, pf);
		return;
	}
	if (vm->flags & GVM_VM_LR_MODE)
		return;		/* no completion promise */
	gvm_resv_add_fence(&vm->resv, done, GVM_RESV_USAGE_BOOKKEEP);
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_vm_bo *vb =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

		if (vb->bo->resv != &vm->resv)
			gvm_resv_add_fence(vb->bo->resv, done,
					   GVM_RESV_USAGE_BOOKKEEP);
	}
}

/* Rounds of "revalidate, lock, recheck" before -EAGAIN. */
#define EXEC_RETRIES 16

/* Rounds of waiting for VRAM (for others' busy BOs) before -ENOSPC. */
#define EXEC_VRAM_WAITS 32

/* The least a round asks for when only page tables ran short. */
#define EXEC_PT_ROOM (64ull << 10)

/*
 * Revalidation found VRAM full of BOs it cannot evict now (busy, or
 * locked by others): drops every lock, waits for room (evict.c: for the
 * least recently used busy BO of another VM, or for older waiters to be
 * served first, under a claim on the space that frees), and takes
 * vm->lock again.  The job and the lock set are reset for the next round.
 * 0, -ENOSPC if there was nothing to wait for, or -EINVAL / -EIO if the
 * VM was closed or banned meanwhile.
 *
 * With none of its VRAM-only BOs missing, what ran short is page tables
 * (the rebind of moved BOs' mappings, a rebuild of reclaimed tables):
 * they may evict idle BOs and idle VMs' tables only, never SVM memory
 * (reservations are held), and BOs with a system fallback may have taken
 * the headroom SVM leaves them.  The round then asks for that headroom
 * (at least EXEC_PT_ROOM), so that it moves as much SVM memory back,
 * holding no lock, instead of waiting for nothing.
 */
static int wait_for_vram(struct exec_job *ej, struct gvm_lockset *ls,
			 struct gvm_vram_claim *claim)
{
	struct gvm_vm *vm = ej->q->vm;
	uint64_t need = gvm__vm_vram_only_bytes(vm, true);
	struct gvm_bo *victim = gvm__vram_busy_victim(vm->dev, ls);
	bool waited;

	if (!need) {
		need = gvm__svm_policy_headroom(vm->dev);
		if (need < EXEC_PT_ROOM)
			need = EXEC_PT_ROOM;
	}

	gvm_job_fini(&ej->job);
	gvm_lockset_fini(ls);
	gvm_lockset_init(ls, GVM_LOCKSET_IGNORE_DUPLICATES);
	gvm__mutex_unlock(&vm->lock);
	gvm__vm_stat_add(vm, evict_waits, 1);
	waited = gvm__vram_wait_room(vm->dev, claim, need, victim);
	gvm__mutex_lock(&vm->lock);
	if (vm->closed || gvm__vm_banned(vm))
		return vm->closed ? -EINVAL : -EIO;
	return waited ? 0 : -ENOSPC;
}

int gvm_exec(struct gvm_queue *q, const struct gvm_kernel *k,
	     const struct gvm_sync *syncs, uint32_t ns)
{
	struct gvm_vram_claim claim = { 0 };
	struct gvm_fence *pf = NULL;
	unsigned int vram_waits = 0;
	struct gvm_sync_set set;
	struct gvm_lockset ls;
	struct gvm_fence *done;
	struct exec_job *ej;
	struct gvm_vm *vm;
	int tries, err;
	uint32_t i;

	if (!q || !k || !k->fn || !k->grid || k->args_size > sizeof(k->args))
		return -EINVAL;
	if (q->engine == GVM_ENGINE_BIND)
		return -EINVAL;
	vm = q->vm;
	if (gvm__device_unplugged(vm->dev))
		return -ENODEV;
	/* LR: no completion promise, so no fence out-syncs (xe). */
	for (i = 0; (vm->flags & GVM_VM_LR_MODE) && syncs && i < ns; i++)
		if ((syncs[i].flags & GVM_SYNC_SIGNAL) &&
		    syncs[i].type != GVM_SYNC_USER_FENCE)
			return -EINVAL;
	gvm__vm_reap(vm);
	err = gvm__syncs_parse(&set, vm, syncs, ns);
	if (err)
		return err;
	/* Wait syncs that may never signal: cancelled by queue destroy. */
	for (i = 0; i < set.nr_in; i++) {
		struct gvm_fence *p;

		if (gvm_fence_is_signaled(set.in[i]))
			continue;
		err = gvm__queue_wait_proxy(q, set.in[i], &p);
		if (err) {
			gvm__syncs_fini(&set);
			return err;
		}
		gvm_fence_put(set.in[i]);
		set.in[i] = p;
	}
	ej = gvm__calloc(1, sizeof(*ej));
	if (!ej) {
		gvm__syncs_fini(&set);
		return -ENOMEM;
	}
	ej->q = q;
	gvm__might_fault();	/* the caller's kernel, copied before locking */
	ej->k = *k;
	ej->k.queue_id = 0;	/* set at arm */
	ej->k.seqno = 0;

	/* CPU changes made before this call first, no lock held (mm/mm.h). */
	if (vm->mm)
		gvm__mm_flush(vm->mm);
	gvm__mutex_lock(&vm->lock);
	gvm_lockset_init(&ls, GVM_LOCKSET_IGNORE_DUPLICATES);
	if (vm->closed || gvm__vm_banned(vm)) {
		err = vm->closed ? -EINVAL : -EIO;
		goto err;
	}
	/* Its own VRAM-only BOs cannot fit at all: no wait helps. */
	if (gvm__vm_vram_only_bytes(vm, false) > vm->dev->vram.size) {
		err = -ENOSPC;
		goto err;
	}
	for (tries = 0;;) {
		err = gvm_job_init(&ej->job, q->sq, &exec_ops);
		if (err)
			goto err;
		/* Userptrs are refetched before any reservation is taken. */
		err = gvm__userptr_revalidate(vm);
		if (!err)
			err = gvm__vm_lock_all(&ls, vm, 1);
		if (!err)
			err = gvm__vm_revalidate(vm);
		if (!err && gvm__vm_preempt_mode(vm))
			err = gvm__lr_exec_prepare(q, &pf);
		if (!err)
			err = add_job_deps(ej, vm, &set);
		/* An older waiter waits to evict one of our BOs: after it. */
		if (!err && gvm__vram_claimed_by_older(vm))
			err = -ENOSPC;
		if (err == -ENOSPC && vram_waits++ < EXEC_VRAM_WAITS) {
			gvm_fence_put(pf);	/* not published */
			pf = NULL;
			err = wait_for_vram(ej, &ls, &claim);
			if (err)
				goto err;
			continue;
		}
		if (err)
			goto err_job;
		/*
		 * The last check, in the section that publishes the job: an
		 * invalidation either came before (the userptr is on the
		 * invalidated list: revalidate again) or comes after and finds
		 * the job's fence (or, LR, the queue's preempt fence) to wait
		 * for (issue 10, defect 2; xe's exec does the same).
		 */
		if (gvm__exec_before_check)
			gvm__exec_before_check(vm);
		gvm__mutex_lock(&vm->notifier_lock);
		if (!gvm__userptr_pending_locked(vm))
			break;
		gvm__mutex_unlock(&vm->notifier_lock);
		gvm_fence_put(pf);
		pf = NULL;
		gvm_lockset_fini(&ls);
		gvm_lockset_init(&ls, GVM_LOCKSET_IGNORE_DUPLICATES);
		gvm_job_fini(&ej->job);
		if (++tries == EXEC_RETRIES) {
			err = -EAGAIN;
			goto err;
		}
	}

	/* ---- point of no return ---- */
	gvm_job_arm(&ej->job);
	done = gvm_fence_get(gvm_job_finished(&ej->job));
	gvm_fetch_add_relaxed(&vm->execs_inflight, 1u);
	gvm_fence_add_callback(done, &ej->idle_cb, exec_idle);
	/* Who it is, for the backend's fault reports (kernel.h). */
	ej->k.queue_id = q->id;
	ej->k.seqno = done->seqno;
	publish_locked(q, done, pf);
	gvm__queue_set_last(q, done);
	gvm_job_push_deferred(&ej->job);
	gvm__mutex_unlock(&vm->notifier_lock);
	gvm_lockset_fini(&ls);
	gvm__mutex_unlock(&vm->lock);
	/* Started here if no worker is at the queue: no hand-off. */
	gvm_sched_queue_run(q->sq);
	gvm__vram_claim_end(&claim);
	gvm__dev_reap(vm->dev);
	gvm__vm_stat_add(vm, execs, 1);
	gvm__syncs_signal(&set, done);
	gvm_fence_put(done);
	gvm__syncs_fini(&set);
	return 0;

err_job:
	gvm_job_fini(&ej->job);
err:
	gvm_fence_put(pf);		/* never published */
	gvm_lockset_fini(&ls);
	gvm__mutex_unlock(&vm->lock);
	gvm__vram_claim_end(&claim);
	gvm__dev_reap(vm->dev);
	gvm__free(ej);
	gvm__syncs_fini(&set);
	return err;
}
