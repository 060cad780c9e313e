/* SPDX-License-Identifier: MIT */
/*
 * Buffer objects (internal).  See bo.c.
 *
 * Locking: placement state (region, backing, extents) is written only with
 * the BO's reservation held, and while the BO is idle; page-table code
 * reads it under the reservation too (binds lock every BO they map).
 * vm_bos (the VMs mapping the BO) is protected by the reservation, and
 * so is the purgeable state (madv, purged: gvm_bo_madvise() and a purge
 * both hold it, so an advice and a purge are ordered).
 * view is protected by view_lock.
 */
#ifndef GVM_VM_BO_H
#define GVM_VM_BO_H

#include <gvm/resv.h>
#include <gvm/vm.h>

#include "core/list.h"
#include "pt/pt.h"
#include "vm/dev.h"

/* Memory backing a BO. */
struct gvm_bo_mem {
	uint32_t region;		/* GVM_MEM_SYSTEM or GVM_MEM_VRAM */
	void *sys;			/* system pages (shared mmap), or NULL */
	struct gvm_list vram_blocks;	/* buddy blocks, in BO order */
	struct gvm_pt_extent *ext;	/* the backing as the device sees it */
	size_t nr_ext;
};

struct gvm_bo {
	struct gvm_device *dev;		/* immutable; holds a reference */
	struct gvm_vm *vm;		/* immutable; VM-local: the owner
					   (holds a reference), else NULL */
	struct gvm_resv *resv;		/* immutable: &own_resv or the VM's */
	uint64_t size;			/* immutable */
	uint32_t placement;		/* immutable: GVM_MEM_* */
	uint32_t refcount;		/* atomic */

	struct gvm_bo_mem mem;		/* the backing; resv */
	void *spare_sys;		/* resv: system pages (shared mmap of
					   size bytes, faulted in) of a BO moved
					   to VRAM, kept for its next eviction,
					   or NULL; contents meaningless */

	uint32_t madv;			/* GVM_BO_WILLNEED / _DONTNEED:
					   written under resv (relaxed store),
					   read under resv, or without it
					   (relaxed load) as a hint only by
					   the victim scan (evict.c), which
					   rechecks it under resv */
	bool purged;			/* resv: evicted while DONTNEED, its
					   contents dropped (now zeros), and
					   no WILLNEED since (gvm_bo_madvise()
					   reports it, once) */

	struct gvm_list vm_bos;		/* struct gvm_vm_bo::bo_link; resv */
	struct gvm_list lru_link;	/* dev->lru while in VRAM (else
					   empty), dev->dead_bos once dead
					   (gvm__bo_put_deferred());
					   dev->vram_lock */
	uint64_t lru_stamp;		/* dev->vram_lock: dev->lru_clock at
					   its last use (0: a purgeable BO at
					   the head; evict.c) */
	uint64_t evict_failed;		/* dev->vram_lock: dev->evict_round
					   when its eviction last failed */
	struct gvm_vram_claim *claim;	/* dev->vram_lock: the claim whose
					   owner waits to evict this BO, or
					   NULL (evict.c) */

	struct gvm_mutex view_lock;	/* leaf: view */
	void *view;			/* CPU view, or NULL */
	size_t view_len;		/* bytes gvm_bo_map() mmapped at view
				   (0: view is the backing itself) */

	struct gvm_resv own_resv;	/* external BOs */
};

/*
 * The device extents backing [offset, offset + len) of @bo, appended to
 * @out (capacity *@cap, grown on the heap; it may start in inline storage
 * @inl, NULL if none); *@n counts them.  The caller holds the BO's
 * reservation.  0 or -ENOMEM.
 */
int gvm__bo_extents(const struct gvm_bo *bo, uint64_t offset, uint64_t len,
		    const struct gvm_pt_extent *inl,
		    struct gvm_pt_extent **out, size_t *n, size_t *cap);

/* GVM_PT_DEVMEM if @bo is in VRAM now, else 0.  Under the reservation. */
unsigned int gvm__bo_pt_flags(const struct gvm_bo *bo);

/*
 * Gives @m backing of @size bytes in @region (zeroed if @zero).  0,
 * -ENOSPC (VRAM full), -ENOMEM.  Nothing allocated on failure.
 */
int gvm__bo_mem_alloc(struct gvm_device *dev, uint64_t size, uint32_t region,
		      bool zero, enum gvm_evict_mode evict,
		      struct gvm_bo_mem *m);
void gvm__bo_mem_free(struct gvm_device *dev, uint64_t size,
		      struct gvm_bo_mem *m);

/*
 * Gives @m the system pages @sys (a shared mapping of @size bytes, e.g. a
 * BO's spare_sys) as its backing.  0 or -ENOMEM (then @sys is still the
 * caller's).
 */
int gvm__bo_mem_adopt_sys(struct gvm_device *dev, uint64_t size, void *sys,
			  struct gvm_bo_mem *m);

/*
 * Moves @bo to @region (move.c): waits for the BO to be idle, allocates
 * the new backing, zaps every GPU mapping of the BO in every VM (with TLB
 * invalidation) and marks their handles evicted (the next exec, or the
 * bind that asked, rebinds them), copies with the device's copy engine,
 * frees the old backing, moves the CPU view.  The caller holds the BO's
 * reservation (and may hold vm->lock of any VM).  @evict: how VRAM may be
 * found (dev.h), and whether the call may wait for the BO to be idle
 * (not with GVM_EVICT_IDLE: a caller holding locks gets -EBUSY for a busy
 * BO).  System memory is always allowed (eviction of a VRAM-only BO: it
 * goes back at its next exec).  0 (also when already there), -EINVAL
 * (VRAM not in the placement), -EBUSY, -ENOSPC, -ENOMEM, -EIO (the copy
 * failed: the BO stays where it was, its mappings zapped).
 */
int gvm__bo_move(struct gvm_bo *bo, uint32_t region,
		 enum gvm_evict_mode evict);
/* Test hook: a move copied the contents and did not switch yet (resv). */
extern void (*gvm__move_after_copy)(struct gvm_bo *bo);
/* Test hook: gvm_bo_create() has the memory, the BO is not on the LRU. */
extern void (*gvm__bo_before_lru)(struct gvm_bo *bo);

/*
 * Purges @bo (a DONTNEED BO in VRAM, idle or busy only with LR preempt
 * fences, its reservation held): gvm__bo_move() to system memory with the
 * contents dropped instead of copied.  The steps are the move's (wait,
 * zap every mapping with its TLB invalidation, mark the handles evicted,
 * switch the backing and the CPU view, free the VRAM), except that the
 * new backing is fresh zeroed system pages (a shared anonymous mapping,
 * populated only when touched), no copy is made, and the spare system
 * pages (stale contents) are freed too.  Sets bo->purged, counts the
 * purge (each mapping VM's purges/bytes_purged, and the device's).  0,
 * -EBUSY, -ENOMEM (nothing purged).  move.c.
 */
int gvm__bo_purge(struct gvm_bo *bo);

/* The device's LRU (evict.c); dev->vram_lock taken inside. */
/*
 * gvm__bo_free(): frees a BO whose last reference went (gvm_bo_put()).
 * A VM-local BO then drops its VM reference, and the VM's teardown needs
 * no lock held.  gvm__bo_put_deferred(): gvm_bo_put() for a caller that
 * may hold locks (eviction, which references BOs it does not own): the
 * last reference queues the BO on its device's dead list instead, freed
 * by gvm__dev_reap() once the locks are dropped.
 */
void gvm__bo_free(struct gvm_bo *bo);
void gvm__bo_put_deferred(struct gvm_bo *bo);
void gvm__bo_lru_update(struct gvm_bo *bo);	/* add/bump/remove by region */
void gvm__bo_lru_del(struct gvm_bo *bo);

/*
 * Re-points the CPU view at the current backing (bo.c).  On failure
 * (-ENOMEM) it shows @old again, the backing the caller keeps.  @wp: the
 * caller write-protected the view (gvm__mm_wp_begin), and each piece
 * mapped is protected again, until the caller's gvm__mm_wp_end().
 */
int gvm__bo_view_update(struct gvm_bo *bo, struct gvm_bo_mem *old, bool wp);
/* Test hook, NULL outside tests: piece @k of @bo's view was re-pointed
   (a VRAM extent's mapping; view_lock and the reservation held). */
extern void (*gvm__view_piece_hook)(struct gvm_bo *bo, size_t k);

#endif
