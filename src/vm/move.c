// SPDX-License-Identifier: MIT
/*
 * BO moves: migrating a buffer object between VRAM and system memory.
 * Callers: PREFETCH binds (bind.c), eviction of VRAM victims to system
 * memory (evict.c) and exec's revalidation, which brings evicted BOs
 * back to VRAM (exec.c).
 *
 * A move, with the BO's reservation held (nothing to do if the BO is
 * already in @region; -EINVAL if @region is VRAM and not in its
 * placement, -EBUSY while its CPU view goes through the VRAM window):
 *   1. wait until the BO is idle (every fence of its reservation); a
 *      caller that must not wait (GVM_EVICT_IDLE: it holds vm->lock or
 *      reservations) gets -EBUSY for a busy BO instead;
 *   2. allocate the new backing, evicting other BOs as @evict allows
 *      (may fail: nothing changed); system memory is the BO's spare pages
 *      if it kept them (bo.c), already faulted in;
 *   3. zap every GPU mapping of the BO, in every VM that maps it, under
 *      that VM's notifier_lock, invalidate the TLB ranges and wait; mark
 *      the VM's handle on the BO evicted: the next exec of that VM (or the
 *      bind that asked for the move) writes the PTEs again;
 *   4. write-protect the CPU view if the BO has one (gvm__mm_wp_begin):
 *      a CPU store through it sleeps from now until step 5 moved the
 *      view, then lands in the new backing, never in the old one after
 *      the copy read it; copy the contents with the device's copy
 *      engine, waiting for each copy;
 *   5. switch the backing, move the CPU view, let the stores go
 *      (gvm__mm_wp_end), free the old backing (old
 *      system pages are kept as the BO's spare), put
 *      the BO on (or off) the device's LRU and count the bytes moved in
 *      each VM's stats.
 * Zapping before the copy means no device access can reach either copy
 * while they differ; the old backing is freed only after the TLB
 * invalidation, so no stale translation reaches freed memory.  A failed
 * copy (-EIO, or the copy op's error) or CPU-view update frees the new
 * backing and leaves the BO where it was, its mappings zapped and their
 * handles marked evicted.
 *
 * Locking: the BO's reservation (which protects its backing, bo->vm_bos
 * and each handle's VMA list and evicted flag); each VM's notifier_lock
 * (rank 400) around its zap; no vm->lock is needed (the caller may hold
 * one).  Waits happen with the reservation held, as in TTM.
 *
 * A purge (gvm__bo_purge(): eviction of a DONTNEED BO, evict.c) is this
 * same sequence with step 2 giving fresh zeroed system pages (populated
 * only when touched; never the spare pages, whose contents are stale) and
 * step 4 skipped: the GPU and the CPU view see zeros from then on, never
 * the freed VRAM, by the same zap -> TLB wait -> free order.  The spare
 * pages are freed with the VRAM; bo->purged records the loss for
 * gvm_bo_madvise().
 *
 * Without userfaultfd write-protection of shared memory (-EOPNOTSUPP) or
 * with the view's range registered by another userfaultfd, the view is
 * not protected, and a store racing the copy can be lost (gvm_bo_map()
 * says so).
 *
 * Not done here: no pipelined moves (every step waits), no partial
 * moves, no move between two devices' VRAM.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/vm.h"

/* Step 3 for one VM. */
static void zap_vm_bo(struct gvm_vm_bo *vb)
{
	struct gvm_vm *vm = vb->vm;
	struct gvm_pt_tlb tlb, all = { 0 };
	struct gvm_list *pos;
	int nr = 0;

	gvm__mutex_lock(&vm->notifier_lock);
	gvm_list_for_each(pos, &vb->vmas) {
		struct gvm_vma *vma =
			gvm_list_entry(pos, struct gvm_vma, vm_bo_link);

		gvm__pt_zap(&vm->pt, vma->va.addr, vma->va.range, &tlb);
		if (tlb.full || tlb.size) {
			all = tlb;
			nr++;
		}
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	if (nr > 1) {
		all.full = true;
		all.start = all.size = 0;
	}
	gvm__vm_tlb_flush(vm, &all);
	vb->evicted = true;
}

/* Step 4: copies the BO from @from to @to, extent by extent. */
static int copy(struct gvm_bo *bo, const struct gvm_bo_mem *to,
		const struct gvm_bo_mem *from)
{
	struct gvm_copy_side dst = { .ext = to->ext, .nr = to->nr_ext,
				     .region = to->region };
	struct gvm_copy_side src = { .ext = from->ext, .nr = from->nr_ext,
				     .region = from->region };

	return gvm__dev_copy(bo->dev, &dst, &src, bo->size, NULL);
}

/* Swaps two backings (the block lists' heads cannot be copied). */
static void mem_swap(struct gvm_bo_mem *a, struct gvm_bo_mem *b)
{
	struct gvm_list la, lb;
	struct gvm_bo_mem t;

	gvm_list_init(&la);
	gvm_list_init(&lb);
	gvm_list_splice_tail(&a->vram_blocks, &la);
	gvm_list_splice_tail(&b->vram_blocks, &lb);
	t = *a;
	*a = *b;
	*b = t;
	gvm_list_init(&a->vram_blocks);
	gvm_list_init(&b->vram_blocks);
	gvm_list_splice_tail(&lb, &a->vram_blocks);
	gvm_list_splice_tail(&la, &b->vram_blocks);
}

/*
 * The move, or with @purge the purge (gvm__bo_purge()): the same steps,
 * except that a purge's new backing is fresh zeroed system pages and
 * nothing is copied.
 */
static int move(struct gvm_bo *bo, uint32_t region, enum gvm_evict_mode evict,
		bool purge)
{
	struct gvm_device *dev = bo->dev;
	struct gvm_bo_mem new;
	struct gvm_list *pos;
	uint64_t moved;
	bool wp;
	int err;

	if (bo->mem.region == region)
		return 0;
	if (!(bo->placement & region) && region != GVM_MEM_SYSTEM)
		return -EINVAL;
	if (bo->view && !bo->view_len)
		return -EBUSY;		/* mapped through the VRAM window */
	/*
	 * A caller holding vm->lock or reservations (GVM_EVICT_IDLE) must
	 * not wait: a pending bind job of its VM needs that vm->lock to
	 * signal.  Such callers move idle BOs only.
	 */
	if (evict == GVM_EVICT_IDLE &&
	    !gvm_resv_test_signaled(bo->resv, GVM_RESV_USAGE_BOOKKEEP))
		return -EBUSY;
	err = gvm_resv_wait(bo->resv, GVM_RESV_USAGE_BOOKKEEP, false,
			    GVM_TIMEOUT_INFINITE);
	if (err)
		return err;
	if (region == GVM_MEM_SYSTEM && bo->spare_sys && !purge) {
		err = gvm__bo_mem_adopt_sys(dev, bo->size, bo->spare_sys, &new);
		if (!err)
			bo->spare_sys = NULL;
	} else {
		err = gvm__bo_mem_alloc(dev, bo->size, region, false, evict,
					&new);
	}
	if (err)
		return err;
	gvm_list_for_each(pos, &bo->vm_bos)
		zap_vm_bo(gvm_list_entry(pos, struct gvm_vm_bo, bo_link));
	/* The view (under the reservation we hold) takes no store now. */
	wp = !purge && bo->view_len &&
	     !gvm__mm_wp_begin(bo->view, bo->view_len);
	err = purge ? 0 : copy(bo, &new, &bo->mem);
	if (!err && gvm__move_after_copy)
		gvm__move_after_copy(bo);
	if (!err) {
		mem_swap(&bo->mem, &new);	/* new: the old backing */
		err = gvm__bo_view_update(bo, &new, wp);
		if (err)	/* the view shows the old pages again */
			mem_swap(&bo->mem, &new);
	}
	if (wp)
		gvm__mm_wp_end(bo->view, bo->view_len);
	/* Old system pages: kept for the next eviction (bo.c).  On failure
	   new is the new backing, the BO stays where it was. */
	if (!err && new.region == GVM_MEM_SYSTEM && !bo->spare_sys) {
		bo->spare_sys = new.sys;
		new.sys = NULL;
	}
	gvm__bo_mem_free(dev, bo->size, &new);
	if (err)
		return err;
	if (purge) {
		/* The spare pages hold stale contents: released too. */
		if (bo->spare_sys)
			munmap(bo->spare_sys, bo->size);
		bo->spare_sys = NULL;
		bo->purged = true;
		gvm_fetch_add_relaxed(&dev->bos_purged, 1);
		gvm_fetch_add_relaxed(&dev->bytes_purged, bo->size);
	}
	gvm__bo_lru_update(bo);
	moved = bo->size;
	gvm_list_for_each(pos, &bo->vm_bos) {
		struct gvm_vm *vm =
			gvm_list_entry(pos, struct gvm_vm_bo, bo_link)->vm;

		if (purge) {
			gvm__vm_stat_add(vm, purges, 1);
			gvm__vm_stat_add(vm, bytes_purged, moved);
		} else if (region == GVM_MEM_VRAM)
			gvm__vm_stat_add(vm, bytes_to_vram, moved);
		else
			gvm__vm_stat_add(vm, bytes_to_system, moved);
	}
	return 0;
}

void (*gvm__move_after_copy)(struct gvm_bo *bo);

int gvm__bo_move(struct gvm_bo *bo, uint32_t region,
		 enum gvm_evict_mode evict)
{
	return move(bo, region, evict, false);
}

int gvm__bo_purge(struct gvm_bo *bo)
{
	gvm_lockdep_assert_held(&bo->resv->lock);
	GVM_BUG_ON(gvm_load_relaxed(&bo->madv) != GVM_BO_DONTNEED);
	return move(bo, GVM_MEM_SYSTEM, GVM_EVICT_NONE, true);
}
