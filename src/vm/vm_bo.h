/* SPDX-License-Identifier: MIT */
/*
 * The link between a VM and the BOs it maps (vm_bo.c): a VM's handle on a
 * BO (struct gvm_vm_bo, vm/vm.h), the VMAs on it, and what exec and the
 * rebind worker do with them before a kernel runs: lock every reservation,
 * bring BOs back, rebind what a move zapped.
 */
#ifndef GVM_VM_VM_BO_H
#define GVM_VM_VM_BO_H

#include <stdbool.h>
#include <stdint.h>

struct gvm_bo;
struct gvm_lockset;
struct gvm_vm;
struct gvm_vm_bo;
struct gvm_vma;

/* The VM's handle on @bo, or NULL.  vm->lock or the BO's reservation. */
struct gvm_vm_bo *gvm__vm_bo_find(struct gvm_vm *vm, struct gvm_bo *bo);

/*
 * Links a new BO VMA to its handle, creating the handle from *@spare
 * (preallocated; taken and set to NULL if used).  Takes a BO reference.
 * vm->lock and the BO's reservation held.
 */
void gvm__vm_bo_link(struct gvm_vm *vm, struct gvm_vma *vma,
		     struct gvm_vm_bo **spare);
/* Unlinks a VMA that went away; frees the handle with its last VMA. */
void gvm__vm_bo_unlink(struct gvm_vma *vma);

/*
 * Writes the PTEs of the VMAs of @vb again after a move zapped them
 * (vm->lock and the BO's reservation held).  VMAs whose queued bind has not
 * run are skipped: their job writes them.  0, or -ENOMEM / -ENOSPC with
 * nothing changed (still evicted).
 */
int gvm__vm_bo_rebind(struct gvm_vm *vm, struct gvm_vm_bo *vb);

/*
 * Locks the VM's reservation and its external BOs', @nr_fences slots each
 * (vm->lock held).  0, -ENOMEM, -EINTR... (the lockset's errors).
 */
int gvm__vm_lock_all(struct gvm_lockset *ls, struct gvm_vm *vm,
		     unsigned int nr_fences);
/*
 * Everything locked: moves BOs back, rebinds evicted handles, bumps the
 * LRU.  0, -ENOSPC, -ENOMEM.
 */
int gvm__vm_revalidate(struct gvm_vm *vm);
/*
 * Bytes of the VM's VRAM-only BOs (its working set that no system memory
 * can stand in for): all of them, or with @missing only those not in VRAM
 * now (their reservations held then).  vm->lock held.
 */
uint64_t gvm__vm_vram_only_bytes(struct gvm_vm *vm, bool missing);

#endif
