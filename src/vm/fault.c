// SPDX-License-Identifier: MIT
/*
 * GPU faults: what gvm_vm_fault() does with a fault a backend reports.
 *
 * Outside fault mode every fault is fatal to its job: it is logged
 * (gvm_vm_query_faults()) and -EFAULT tells the backend to fail the job.
 *
 * In fault mode (GVM_VM_FAULT_MODE, which needs LR mode) faults are
 * recoverable, as with xe's page-fault handler: a mapping made without
 * GVM_BIND_IMMEDIATE has no PTEs until the GPU first touches it, and a
 * userptr whose pages an invalidation zapped is repinned on its next
 * fault.  Servicing a fault at address A:
 *
 *   vm->lock
 *   the VMA at A: none -> -EFAULT; a write or atomic to a READONLY VMA,
 *   a userptr whose memory is gone, a VMA whose queued bind has not run
 *   yet -> -EACCES / -EFAULT (logged, the job fails, the VM stays usable)
 *   userptr: pages refetched if stale (no reservation held)
 *   BO: its reservation (extents and placement stable)
 *   one page-table update of the whole VMA through the pipeline
 *   (pt_update.c, RETRY: a userptr that went stale refetches, bounded)
 *   0: the backend replays the access
 *
 * Binding the whole VMA (not just the page) follows xe: one fault per
 * mapping, not per page.  A fault in a CPU_ADDR_MIRROR VMA goes to SVM
 * (svm.c), which makes and binds a range there.
 *
 * Where it runs: gvm_vm_fault() (the backend's call, from the stalled
 * engine's thread) hands a fault-mode VM's fault to the device's fault
 * queue (fault_queue.c, gvm__fault_queue_service): a lone fault (nothing
 * queued, no batch being serviced) is serviced right there, in the
 * engine's thread, as a batch of one; otherwise it is queued and the
 * engine waits while the device's servicing thread sorts and deduplicates
 * a batch.  Either way gvm__fault_service() is called for each fault left,
 * with no gvm lock held, one batch at a time per device.  That is the only
 * way a fault is serviced.
 * Faults that are not serviced (a VM outside fault mode, a
 * GVM_FAULT_SYSMEM_GONE fault, a backend's GVM_FAULT_REPLAY_LIMIT report
 * that it gave up on an access it replayed after each resolved fault)
 * are failed on the engine's thread without going through the queue.  A fault that is not resolved (serviced or not)
 * is logged by gvm_vm_fault(), once per faulting access.
 *
 * Locking and why it cannot deadlock (the whole analysis is at the top of
 * fault_queue.c): the servicer holds no gvm lock when it calls;
 * the faulting engine is stalled and quiesced (it acknowledges TLB
 * invalidations at once, so the update's TLB wait completes).  In fault
 * mode no job fence sits in a reservation (LR mode) and no preempt fence
 * exists, so a holder of vm->lock or of the BO's reservation waits for
 * nothing a stalled engine must do: binds do not wait for kernels, a
 * move waits for bind and copy fences only, and copies run on engines
 * that run no kernels.
 */
#include <errno.h>
#include <stdlib.h>

#include <gvm/resv.h>

#include "core/lockrank.h"
#include "core/sync.h"
#include "core/trace.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/fault.h"
#include "vm/fault_queue.h"
#include "vm/pt_update.h"
#include "vm/svm.h"
#include "vm/userptr.h"
#include "vm/vm.h"

/*
 * Tries of a bind whose pages an invalidation changed while they were
 * fetched.  No timed backoff between them: the next fetch's read_begin
 * sleeps until the invalidations over the range have ended, and a sleep
 * here would hold vm->lock (docs/svm.md, "Retry on collision").
 */
#define FAULT_RETRIES 16

int gvm__fault_bind_vma(struct gvm_vm *vm, struct gvm_vma *vma)
{
	struct gvm_resv *resv = NULL;
	struct gvm_vm_update upd;
	int tries, err = 0;

	gvm_lockdep_assert_held(&vm->lock);
	for (tries = 0; tries < FAULT_RETRIES; tries++) {
		if (vma->userptr) {
			err = gvm__userptr_refresh(vma);
			if (err)
				return err;
		} else if (gvm__va_kind(&vma->va) == GVM_VA_KIND_BO) {
			resv = gvm__vma_bo(vma)->resv;
			gvm_resv_lock(resv, NULL);
		}
		gvm__vm_update_init(&upd, vm);
		err = gvm__vm_update_add(&upd, vma->va.addr,
					 vma->va.addr + vma->va.range, vma);
		if (!err)
			err = gvm__vm_update_run(&upd, GVM_UPDATE_STALE_RETRY);
		gvm__vm_update_fini(&upd);
		if (resv)
			gvm_resv_unlock(resv);
		resv = NULL;
		if (err != -EAGAIN)
			return err;
		gvm__vm_stat_add(vm, fault_retries, 1);
	}
	return -EAGAIN;
}

int gvm__fault_service(struct gvm_vm *vm, const struct gvm_fault_info *f,
		       uint64_t *range_end)
{
	struct gvm_vma *vma;
	struct gvm_va *va;
	int err;

	gvm_lockdep_assert_none_held();
	*range_end = 0;
	gvm__mutex_lock(&vm->lock);
	/*
	 * A destroyed VM's tree is gone: its pending faults fail.  So do a
	 * banned VM's (as xe refuses them): its page tables may disagree
	 * with its VA tree (a bind job that could not commit), and what it
	 * runs is to end, not to grow.
	 */
	va = vm->closed || gvm__vm_banned(vm) ? NULL :
						 gvm__va_find(&vm->va, f->addr);
	if (!va) {
		err = -EFAULT;
		goto out;
	}
	vma = to_vma(va);
	if (f->access != GVM_ACCESS_READ && (va->flags & GVM_VA_READONLY)) {
		err = -EACCES;
		goto out;
	}
	/*
	 * A queued bind's job writes this VMA (from the pages it fetched):
	 * a kernel touching it before that bind completed is not served
	 * (binding it here would race the job, which takes no vm->lock).
	 */
	if (vma->bind_fence && !gvm_fence_is_signaled(vma->bind_fence)) {
		err = -EFAULT;
		goto out;
	}
	if (gvm__va_kind(va) == GVM_VA_KIND_MIRROR) {
		err = gvm__svm_fault(vm, vma, f, range_end);
		goto out;
	}
	err = gvm__fault_bind_vma(vm, vma);
	if (!err)
		vma->fault_pending = false;
out:
	gvm__mutex_unlock(&vm->lock);
	return err;
}

bool gvm__fault_resolved(struct gvm_vm *vm, const struct gvm_fault_info *f)
{
	struct gvm_pt_xlate x;
	bool ok;

	gvm_lockdep_assert_none_held();
	gvm__mutex_lock(&vm->lock);
	ok = !vm->closed;	/* else its tables are gone */
	if (ok) {
		gvm__mutex_lock(&vm->pt_lock);
		ok = !gvm__pt_translate(&vm->pt, f->addr,
					GVM_PT_VIEW_COMMITTED, &x) &&
		     gvm__ptf_allows(x.pte, f->access != GVM_ACCESS_READ,
				     f->access == GVM_ACCESS_ATOMIC);
		gvm__mutex_unlock(&vm->pt_lock);
	}
	gvm__mutex_unlock(&vm->lock);
	return ok;
}

int gvm_vm_fault(struct gvm_vm *vm, const struct gvm_fault_info *f)
{
	int err = -EFAULT;

	if (!vm || !f)
		return -EINVAL;
	gvm_lockdep_assert_none_held();
	gvm__vm_stat_add(vm, faults, 1);
	gvm__trace_fault(vm->dev, vm->dev->name, gvm__engine_name(f->engine),
			 f->engine_instance, f->addr,
			 gvm__access_name(f->access),
			 gvm__fault_reason_name(f->reason));
	if ((vm->flags & GVM_VM_FAULT_MODE) &&
	    f->reason != GVM_FAULT_SYSMEM_GONE &&
	    f->reason != GVM_FAULT_REPLAY_LIMIT)
		err = gvm__fault_queue_service(vm, f);
	gvm__dev_reap(vm->dev);		/* eviction's deferred puts */
	if (!err) {
		gvm__vm_stat_add(vm, faults_serviced, 1);
		return 0;
	}
	gvm__vm_fault_log(vm, f);
	return -EFAULT;
}
