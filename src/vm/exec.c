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
 *      later unbind waits for the kernel), push, signal the out-syncs
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
 * (-EIO after an unrecoverable GPU fault).
 *
 * Locking: vm->lock, then reservations (lockset); no lock while the kernel
 * runs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/lockset.h>
#include <gvm/sim.h>

#include "core/alloc.h"
#include "core/sync.h"
#include "core/trace.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/sync.h"
#include "vm/vm.h"

struct exec_job {
	struct gvm_job job;
	struct gvm_queue *q;		/* the user keeps it alive: destroying
					   a queue drains it */
	struct gvm_kernel k;
};

static int exec_run(struct gvm_job *job, struct gvm_fence **hw_fence)
{
	struct exec_job *ej = gvm_container_of(job, struct exec_job, job);
	struct gvm_device *dev = ej->q->vm->dev;

	gvm__trace_exec(dev, dev->name, job->queue, ej->q->engine, &ej->k, job->finished);
	return dev->ops->run(dev, ej->q->dev_priv, &ej->k, hw_fence);
}

static void exec_free(struct gvm_job *job)
{
	free(gvm_container_of(job, struct exec_job, job));
}

static const struct gvm_job_ops exec_ops = {
	.run = exec_run,
	.free = exec_free,
};

static int add_deps(struct gvm_job *job, struct gvm_resv *resv,
		    enum gvm_resv_usage usage)
{
	struct gvm_fence **f;
	unsigned int n, i;
	int err = gvm_resv_get_fences(resv, usage, &f, &n);

	for (i = 0; !err && i < n; i++)
		err = gvm_job_add_dependency(job, f[i]);
	if (n)
		gvm_resv_put_fences(f, n);
	return err;
}

int gvm__vm_lock_all(struct gvm_lockset *ls, struct gvm_vm *vm,
		     unsigned int nr_fences)
{
	struct gvm_list *pos;
	int err = 0;

	gvm_lockset_until_all_locked(ls) {
		err = gvm_lockset_prepare(ls, &vm->resv, nr_fences);
		gvm_lockset_retry_on_contention(ls);
		if (err)
			return err;
		gvm_list_for_each(pos, &vm->vm_bos) {
			struct gvm_vm_bo *vb =
				gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

			if (vb->bo->resv == &vm->resv)
				continue;
			err = gvm_lockset_prepare(ls, vb->bo->resv,
						  nr_fences);
			if (err)
				break;
		}
		gvm_lockset_retry_on_contention(ls);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Brings the VM's BOs back where they belong (VRAM if preferred: a
 * VRAM-only BO must get there, -ENOSPC otherwise; one that may also live
 * in system memory stays there when VRAM is short), rebinds the mappings
 * moves zapped, and marks the BOs in VRAM as recently used.  Everything
 * locked by the caller; only idle BOs of others are evicted.
 */
int gvm__vm_revalidate(struct gvm_vm *vm)
{
	struct gvm_list *pos;
	int err = 0;

	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_bo *bo =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link)->bo;

		if (bo->mem.region != GVM_MEM_SYSTEM ||
		    !(bo->placement & GVM_MEM_VRAM))
			continue;
		err = gvm__bo_move(bo, GVM_MEM_VRAM, GVM_EVICT_IDLE);
		/* Busy (a pending bind, a kernel): it runs from system
		 * memory this time.  Short of VRAM: fine if allowed. */
		if (err == -EBUSY ||
		    (err == -ENOSPC && (bo->placement & GVM_MEM_SYSTEM)))
			err = 0;
		if (err)
			return err;
	}
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_vm_bo *vb =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

		if (vb->evicted) {
			err = gvm__vm_bo_rebind(vm, vb);
			if (err)
				return err;
		}
		if (vb->bo->mem.region == GVM_MEM_VRAM)
			gvm__bo_lru_update(vb->bo);
	}
	return 0;
}

int gvm_exec(struct gvm_queue *q, const struct gvm_kernel *k,
	     const struct gvm_sync *syncs, uint32_t ns)
{
	struct gvm_fence *pf = NULL;
	struct gvm_sync_set set;
	struct gvm_lockset ls;
	struct gvm_fence *done;
	struct exec_job *ej;
	struct gvm_list *pos;
	struct gvm_vm *vm;
	uint32_t i;
	int err;

	if (!q || !k || !k->fn || !k->grid || k->args_size > sizeof(k->args))
		return -EINVAL;
	if (q->engine == GVM_ENGINE_BIND)
		return -EINVAL;
	vm = q->vm;
	/* LR: no completion promise, so no fence out-syncs (xe). */
	for (i = 0; (vm->flags & GVM_VM_LR_MODE) && syncs && i < ns; i++)
		if ((syncs[i].flags & GVM_SYNC_SIGNAL) &&
		    syncs[i].type != GVM_SYNC_USER_FENCE)
			return -EINVAL;
	err = gvm__syncs_parse(&set, syncs, ns);
	if (err)
		return err;
	ej = gvm__calloc(1, sizeof(*ej));
	if (!ej) {
		gvm__syncs_fini(&set);
		return -ENOMEM;
	}
	ej->q = q;
	ej->k = *k;
	err = gvm_job_init(&ej->job, q->sq, &exec_ops);
	if (err) {
		free(ej);
		gvm__syncs_fini(&set);
		return err;
	}

	/* CPU changes made before this call first, no lock held (mm/mm.h). */
	if (vm->mm) gvm__mm_flush(vm->mm);
	gvm__mutex_lock(&vm->lock);
	gvm_lockset_init(&ls, GVM_LOCKSET_IGNORE_DUPLICATES);
	if (vm->closed || gvm__vm_banned(vm)) {
		err = vm->closed ? -EINVAL : -EIO;
		goto err;
	}
	/* Userptrs are refetched before any reservation is taken. */
	err = gvm__userptr_revalidate(vm);
	if (!err)
		err = gvm__vm_lock_all(&ls, vm, 1);
	if (!err)
		err = gvm__vm_revalidate(vm);
	if (!err && gvm__vm_preempt_mode(vm))
		err = gvm__lr_exec_prepare(q, &pf);
	for (i = 0; !err && i < set.nr_in; i++)
		err = gvm_job_add_dependency(&ej->job, set.in[i]);
	if (!err)
		err = add_deps(&ej->job, &vm->resv, GVM_RESV_USAGE_KERNEL);
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_vm_bo *vb =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

		if (err)
			break;
		if (vb->bo->resv != &vm->resv)
			err = add_deps(&ej->job, vb->bo->resv,
				       GVM_RESV_USAGE_KERNEL);
	}
	if (err)
		goto err;

	/* ---- point of no return ---- */
	gvm_job_arm(&ej->job);
	done = gvm_fence_get(gvm_job_finished(&ej->job));
	if (gvm__vm_preempt_mode(vm)) {
		gvm__lr_exec_commit(q, pf);	/* preempt fence instead */
	} else if (!(vm->flags & GVM_VM_LR_MODE)) {
		gvm_resv_add_fence(&vm->resv, done, GVM_RESV_USAGE_BOOKKEEP);
		gvm_list_for_each(pos, &vm->vm_bos) {
			struct gvm_vm_bo *vb =
				gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

			if (vb->bo->resv != &vm->resv)
				gvm_resv_add_fence(vb->bo->resv, done,
						   GVM_RESV_USAGE_BOOKKEEP);
		}
	}
	gvm__queue_set_last(q, done);
	gvm_job_push(&ej->job);
	gvm_lockset_fini(&ls);
	gvm__mutex_unlock(&vm->lock);
	gvm__vm_stat_add(vm, execs, 1);
	gvm__syncs_signal(&set, done);
	gvm_fence_put(done);
	gvm__syncs_fini(&set);
	return 0;

err:
	gvm_fence_put(pf);		/* never published */
	gvm_lockset_fini(&ls);
	gvm__mutex_unlock(&vm->lock);
	gvm_job_fini(&ej->job);
	free(ej);
	gvm__syncs_fini(&set);
	return err;
}
