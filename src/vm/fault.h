/* SPDX-License-Identifier: MIT */
/*
 * GPU fault servicing (fault.c), shared with SVM (svm.c) and the fault
 * queue (fault_queue.c).
 */
#ifndef GVM_VM_FAULT_H
#define GVM_VM_FAULT_H

struct gvm_fault_info;
struct gvm_vm;
struct gvm_vma;

/*
 * Services fault @f of fault-mode VM @vm (fault.c, the one place faults
 * are serviced): binds what the fault needs (the VMA, or an SVM range).
 * Called by the servicer of a batch (fault_queue.c: the device's
 * fault-servicing thread, or the faulting engine's thread for a lone
 * fault) with no gvm lock held; may block.  0: resolved (the access may be replayed);
 * -EFAULT (no mapping, the VM closed, memory gone), -EACCES (a write or
 * atomic to a read-only mapping), or the bind's error.  *@range_end: the
 * end of the SVM range it bound around f->addr, 0 if none (not a mirror,
 * or it failed).
 */
int gvm__fault_service(struct gvm_vm *vm, const struct gvm_fault_info *f,
		       uint64_t *range_end);

/*
 * Does @vm's committed page table (what the GPU sees) map the page of
 * fault @f now, allowing its access?  Then the fault needs no service
 * (fault_queue.c: a fault in a range its batch just bound).  No gvm lock
 * held; takes vm->lock and pt_lock.
 */
bool gvm__fault_resolved(struct gvm_vm *vm, const struct gvm_fault_info *f);

/*
 * Binds all of @vma (a BO's: its reservation is taken; a userptr's or SVM
 * range's: its pages are fetched again) through the pipeline, retrying
 * while its pages go stale.  vm->lock held.  0 or a negative errno.
 */
int gvm__fault_bind_vma(struct gvm_vm *vm, struct gvm_vma *vma);

#endif
