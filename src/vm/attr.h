/* SPDX-License-Identifier: MIT */
/*
 * Memory attributes of a VM's address range (attr.c; <gvm/svm.h>).
 */
#ifndef GVM_VM_ATTR_H
#define GVM_VM_ATTR_H

#include <stdbool.h>
#include <stdint.h>

#include <gvm/svm.h>

struct gvm_vm;

/* Spans a VM logs as unmapped, awaiting an attribute reset. */
#define GVM_ATTR_UNMAP_LOG 16

struct gvm_attr_unmap_log {
	struct {
		uint64_t start, end;
	} span[GVM_ATTR_UNMAP_LOG];
	uint32_t nr;
	bool overflow;		/* spans were lost: check every range */
};

void gvm__attrs_init(struct gvm_vm *vm);
/* Frees the store (gvm_vm_destroy, no lock needed: the VM is private). */
void gvm__attrs_fini(struct gvm_vm *vm);

/* The attributes at @addr (the defaults if none were set).  vm->lock. */
void gvm__attrs_get(struct gvm_vm *vm, uint64_t addr,
		    struct gvm_mem_attrs *out);

/* Do the attributes stay the same over [addr, addr + size)?  vm->lock. */
bool gvm__attrs_uniform(struct gvm_vm *vm, uint64_t addr, uint64_t size);

/*
 * notifier_lock held (an SVM chunk's UNMAP invalidation): [start, end) was
 * unmapped by the CPU; its attributes go back to the defaults at the next
 * gvm__attrs_reset_unmapped().  True if the VM has attributes at all (the
 * caller then asks the collector to run).
 */
bool gvm__attrs_note_unmap(struct gvm_vm *vm, uint64_t start, uint64_t end);

/* Resets the attributes of the spans noted unmapped.  vm->lock held. */
void gvm__attrs_reset_unmapped(struct gvm_vm *vm);

#endif
