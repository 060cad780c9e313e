/* SPDX-License-Identifier: MIT */
/*
 * Shared virtual memory (svm.c): CPU_ADDR_MIRROR mappings and the ranges a
 * GPU fault makes in them.
 */
#ifndef GVM_VM_SVM_H
#define GVM_VM_SVM_H

#include <stdint.h>

struct gvm_fault_info;
struct gvm_va_ops;
struct gvm_vm;
struct gvm_vma;

/*
 * A GPU fault at an address of mirror VMA @mirror: binds the range there,
 * making it first if needed.  vm->lock held.  0 (replay), -EFAULT (nothing
 * mapped by the CPU there, or no room for a range), -EACCES (a write to
 * read-only memory), -ENOMEM, -ENOSPC, -EAGAIN.
 */
int gvm__svm_fault(struct gvm_vm *vm, struct gvm_vma *mirror,
		   const struct gvm_fault_info *f);

/*
 * Bind: unmap ops on the range space removing, whole, every range that
 * intersects [lo, hi) (an empty list if none).  vm->lock held.  0 or
 * -ENOMEM.
 */
int gvm__svm_unmap_ops(struct gvm_vm *vm, uint64_t lo, uint64_t hi,
		       struct gvm_va_ops *l);

#endif
