/* SPDX-License-Identifier: MIT */
/*
 * Buffer objects (internal).  See bo.c.
 *
 * Locking: placement state (region, backing, extents) is written only with
 * the BO's reservation held, and while the BO is idle; page-table code
 * reads it under the reservation too (binds lock every BO they map).
 * vm_bos (the VMs mapping the BO) is protected by the reservation.
 * view is protected by view_lock.
 */
#ifndef GVM_VM_BO_H
#define GVM_VM_BO_H

#include <gvm/resv.h>
#include <gvm/vm.h>

#include "core/list.h"
#include "pt/pt.h"

struct gvm_bo {
	struct gvm_device *dev;		/* immutable; holds a reference */
	struct gvm_vm *vm;		/* immutable; VM-local: the owner
					   (holds a reference), else NULL */
	struct gvm_resv *resv;		/* immutable: &own_resv or the VM's */
	uint64_t size;			/* immutable */
	uint32_t placement;		/* immutable: GVM_MEM_* */
	uint32_t refcount;		/* atomic */

	/* Backing: resv. */
	uint32_t region;		/* GVM_MEM_SYSTEM or GVM_MEM_VRAM */
	void *sys;			/* system pages (mmap), or NULL */
	struct gvm_list vram_blocks;	/* buddy blocks, in BO order */
	struct gvm_pt_extent *ext;	/* the backing as the device sees it */
	size_t nr_ext;

	struct gvm_list vm_bos;		/* struct gvm_vm_bo::bo_link; resv */

	struct gvm_mutex view_lock;	/* leaf: view */
	void *view;			/* CPU view, or NULL */
	size_t view_len;		/* bytes gvm_bo_map() mmapped at view
				   (0: view is the backing itself) */

	struct gvm_resv own_resv;	/* external BOs */
};

/*
 * The device extents backing [offset, offset + len) of @bo, appended to
 * @out (capacity *@cap, grown with gvm__realloc); *@n counts them.  The
 * caller holds the BO's reservation.  0 or -ENOMEM.
 */
int gvm__bo_extents(const struct gvm_bo *bo, uint64_t offset, uint64_t len,
		    struct gvm_pt_extent **out, size_t *n, size_t *cap);

/* GVM_PT_DEVMEM if @bo is in VRAM now, else 0.  Under the reservation. */
unsigned int gvm__bo_pt_flags(const struct gvm_bo *bo);

#endif
