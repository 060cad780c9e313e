/* SPDX-License-Identifier: MIT */
/*
 * GPU fault servicing (fault.c), shared with SVM (svm.c).
 */
#ifndef GVM_VM_FAULT_H
#define GVM_VM_FAULT_H

struct gvm_vm;
struct gvm_vma;

/*
 * Binds all of @vma (a BO's: its reservation is taken; a userptr's or SVM
 * range's: its pages are fetched again) through the pipeline, retrying
 * while its pages go stale.  vm->lock held.  0 or a negative errno.
 */
int gvm__fault_bind_vma(struct gvm_vm *vm, struct gvm_vma *vma);

#endif
