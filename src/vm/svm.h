/* SPDX-License-Identifier: MIT */
/*
 * Shared virtual memory (svm.c): CPU_ADDR_MIRROR mappings and the ranges a
 * GPU fault makes in them.
 */
#ifndef GVM_VM_SVM_H
#define GVM_VM_SVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gvm_access_info;
struct gvm_fault_info;
struct gvm_va_ops;
struct gvm_vm;
struct gvm_vma;

/*
 * A GPU fault at an address of mirror VMA @mirror: binds the range there,
 * making it first if needed; *@range_end: the end of that range.
 * vm->lock held.  0 (replay), -EFAULT (nothing mapped by the CPU there,
 * or no room for a range), -EACCES (a write to read-only memory),
 * -ENOMEM, -ENOSPC, -EAGAIN.
 */
int gvm__svm_fault(struct gvm_vm *vm, struct gvm_vma *mirror,
		   const struct gvm_fault_info *f, uint64_t *range_end);

/*
 * GVM_BIND_PREFETCH over mirror mappings in [lo, hi): makes and binds the
 * ranges there as GPU faults would, in VRAM (the placement policy) or,
 * with @to_system, in system memory, so that kernels then take no fault.
 * A hint: addresses the CPU has not mapped, and ranges that fail, are
 * skipped.  vm->lock held, no reservation.
 */
/*
 * The device's collector (fault_queue.c): drops @vm's ranges whose CPU
 * memory was unmapped and splits the partly unmapped, without waiting for
 * a fault.  Takes vm->lock: no lock held.
 */
void gvm__svm_collect(struct gvm_vm *vm);

/*
 * Access counters (fault_queue.c, from gvm_vm_access_notify): moves the
 * SVM ranges of the notified region that live in a linked peer's memory
 * into @vm's device's, if the policy wants them near.  Takes vm->lock:
 * no lock held.
 */
void gvm__svm_accessed(struct gvm_vm *vm, const struct gvm_access_info *a);

void gvm__svm_prefetch(struct gvm_vm *vm, uint64_t lo, uint64_t hi,
		       bool to_system);

/*
 * Bind: unmap ops on the range space removing, whole, every range that
 * intersects [lo, hi) (an empty list if none).  vm->lock held.  0 or
 * -ENOMEM.
 */
int gvm__svm_unmap_ops(struct gvm_vm *vm, uint64_t lo, uint64_t hi,
		       struct gvm_va_ops *l);

/* Test and benchmark knob: SVM ranges stay in system memory (atomic). */
extern bool gvm__svm_no_migration;

/*
 * Test hook, NULL outside tests (set and cleared while no fault is being
 * serviced): a fault decided to move range [addr, addr + len) of @vm to
 * another memory and is about to.  Called with @vm->lock held; it may make
 * another VM move the pages first (from another thread: it must not take
 * @vm->lock itself).
 */
extern void (*gvm__svm_place_hook)(struct gvm_vm *vm, uint64_t addr,
				   uint64_t len);

/*
 * migrate.c.  Moves the CPU pages of [start, start + size) (an SVM range
 * of @vm) to the memory of @dev (the VM's device, or a peer)
 * (mm/devmem.c): from system memory, or, if they are all in the memory
 * of a device linked to @dev, from there directly (one copy over the
 * link, gvm__mm_devmem_move).  vm->lock held, no reservation.
 * A range resident on @dev already counts as used (the device's SVM LRU).
 * 0, -EEXIST (already in @dev's memory, or partly in device memory, or
 * in memory that is no device's), -EXDEV (in the memory of a device
 * @dev is not linked to, or not as one whole migration: bring it back
 * to system memory first), -ENOSPC (no VRAM, even after
 * evicting idle BOs and SVM allocations), -ENOMEM, -EOPNOTSUPP / -EBUSY /
 * -EINVAL (the mm cannot take these pages), -EIO (the copy failed); on failure nothing
 * moved.
 */
struct gvm_device;
int gvm__svm_migrate_to_vram(struct gvm_vm *vm, struct gvm_device *dev,
			     uint64_t start, uint64_t size);

/*
 * migrate.c.  Makes room in @dev's VRAM by moving SVM allocations back
 * to system memory, least recently used first (those migrated within the
 * policy's timeslice only when no other is left), until at least @bytes
 * were freed or none is left; counted for @vm if not NULL.  Returns the
 * bytes freed.  Context: vm->lock allowed (or no lock at all); no
 * reservation, no mm's devmem_lock (each victim's mm takes its own).
 */
uint64_t gvm__svm_evict(struct gvm_device *dev, uint64_t bytes,
			struct gvm_vm *vm);

/*
 * The addresses at which @dev reaches [off, off + len) of SVM device
 * memory @dm, in a new array *@out of *@n extents: device addresses if it
 * is @dev's own memory (*@local), else, for a device linked to @dev, the
 * addresses of that device's window over it (system-memory PTEs: peer to
 * peer).  0, -EXDEV (another device's memory @dev is not linked to),
 * -EINVAL (not SVM's), -ENOMEM.
 */
struct gvm_mm_devmem;
struct gvm_pt_extent;
int gvm__svm_devmem_extents(struct gvm_mm_devmem *dm, struct gvm_device *dev,
			    uint64_t off, uint64_t len,
			    struct gvm_pt_extent **out, size_t *n, bool *local);

/* A use of SVM device memory @dm: to its device's LRU tail. */
void gvm__svm_devmem_touch(struct gvm_mm_devmem *dm);

/* The device whose memory SVM device memory @dm is (NULL: not SVM's). */
struct gvm_device *gvm__svm_devmem_device(const struct gvm_mm_devmem *dm);

/*
 * migrate.c: a VM's counters of SVM data moving back (vm.h, struct
 * gvm_svm_back), zeroed, one reference; NULL if out of memory.  Put drops
 * a reference (NULL is fine).  Any context.
 */
struct gvm_svm_back *gvm__svm_back_create(void);
void gvm__svm_back_put(struct gvm_svm_back *b);

/*
 * attr.c: the attributes of [lo, hi) are about to change; the SVM ranges
 * intersecting it are dropped (their next fault remakes them).  vm->lock.
 * 0 or -ENOMEM.
 */
int gvm__svm_attrs_changed(struct gvm_vm *vm, uint64_t lo, uint64_t hi);

#endif
