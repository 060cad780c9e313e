// SPDX-License-Identifier: MIT
/*
 * Buffer objects: memory the GPU maps through VM_BIND.
 *
 * A BO is placed in VRAM (buddy blocks of its device) or in system memory
 * (an anonymous shared mapping of this process); the device sees the
 * backing as a list of extents (device addresses of VRAM blocks, or the
 * host address of the system pages), which the bind path slices into the
 * page tables.  Contents start zeroed.
 *
 * Reservation.  A VM-local BO (created with a VM) shares the VM's
 * reservation, so locking the VM locks all of its local BOs at once; it
 * holds a reference on the VM (the reservation lives in it) and can only be
 * bound in that VM.  An external BO has its own reservation and can be
 * bound in any VM of the device; each VM that maps it keeps it on its
 * external-object list (struct gvm_vm_bo, vm.c).
 *
 * Lifetime.  Users hold references (create, get, put); every VMA mapping
 * the BO holds one too, dropped only after the unbind's TLB invalidation
 * completed, so the GPU never sees the memory freed.
 *
 * Spare system pages.  A BO moved from system memory to VRAM keeps its
 * system pages (bo->spare_sys) for its next eviction instead of unmapping
 * them: an eviction then copies into memory that is already faulted in
 * rather than into a fresh mapping whose every page faults (the page
 * faults were more than half the cost of an eviction).  The price is
 * that an evicted-then-restored BO keeps its size in system memory too,
 * until it is freed.
 *
 * Purgeable BOs.  gvm_bo_madvise(DONTNEED) lets eviction drop the
 * contents instead of copying them (gvm__bo_purge(), move.c; evict.c
 * picks such BOs first); WILLNEED makes the BO ordinary again and reports
 * whether a purge happened meanwhile.  A purged BO is backed by fresh
 * zeroed system pages, so every path (binds, exec, the CPU view, peek)
 * keeps working on it and sees zeros.  madv and purged: the reservation.
 *
 * CPU view.  gvm_bo_map() returns the system pages themselves, the VRAM
 * window for contiguous VRAM, or one mapping of the device's vram_fd per
 * block placed side by side in a reserved address range.
 *
 * Locking: see bo.h.  Creation and the last put touch nothing shared.
 */
#include "vm/bo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/debug.h"
#include "core/inject.h"
#include "core/lockrank.h"
#include "core/page.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/dev.h"
#include "vm/vm.h"

static int build_extents(struct gvm_device *dev, uint64_t size,
			 struct gvm_bo_mem *m)
{
	struct gvm_pt_extent *ext = NULL;
	size_t n = 0, cap = 0;
	struct gvm_list *pos;

	if (m->region == GVM_MEM_SYSTEM) {
		ext = gvm__malloc(sizeof(*ext));
		if (!ext)
			return -ENOMEM;
		ext[0].addr = (uint64_t)(uintptr_t)m->sys;
		ext[0].len = size;
		n = 1;
		goto out;
	}
	gvm_list_for_each(pos, &m->vram_blocks) {
		struct gvm_buddy_block *b =
			gvm_list_entry(pos, struct gvm_buddy_block, link);
		uint64_t a = gvm__vram_block_addr(dev, b);
		uint64_t l = gvm__buddy_block_size(&dev->vram, b);

		if (n && ext[n - 1].addr + ext[n - 1].len == a) {
			ext[n - 1].len += l;
			continue;
		}
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 4;
			struct gvm_pt_extent *p =
				gvm__realloc(ext, ncap * sizeof(*ext));

			if (!p) {
				gvm__free(ext);
				return -ENOMEM;
			}
			ext = p;
			cap = ncap;
		}
		ext[n].addr = a;
		ext[n].len = l;
		n++;
	}
out:
	m->ext = ext;
	m->nr_ext = n;
	return 0;
}

void (*gvm__bo_before_lru)(struct gvm_bo *bo);

int gvm__bo_mem_alloc(struct gvm_device *dev, uint64_t size, uint32_t region,
		      bool zero, enum gvm_evict_mode evict,
		      struct gvm_bo_mem *m)
{
	size_t k;
	int err;

	memset(m, 0, sizeof(*m));
	gvm_list_init(&m->vram_blocks);
	m->region = region;
	if (region == GVM_MEM_VRAM) {
		err = gvm__vram_alloc_evict(dev, size, evict, &m->vram_blocks);
		if (err)
			return err;
	} else {
		m->sys = mmap(NULL, size, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (m->sys == MAP_FAILED) {
			m->sys = NULL;
			return -ENOMEM;
		}
	}
	err = build_extents(dev, size, m);
	if (err) {
		gvm__bo_mem_free(dev, size, m);
		return err;
	}
	for (k = 0; zero && region == GVM_MEM_VRAM && k < m->nr_ext; k++)
		memset((uint8_t *)dev->desc.vram_cpu +
			       (m->ext[k].addr - dev->desc.vram_base),
		       0, m->ext[k].len);
	return 0;
}

int gvm__bo_mem_adopt_sys(struct gvm_device *dev, uint64_t size, void *sys,
			  struct gvm_bo_mem *m)
{
	int err;

	memset(m, 0, sizeof(*m));
	gvm_list_init(&m->vram_blocks);
	m->region = GVM_MEM_SYSTEM;
	m->sys = sys;
	err = build_extents(dev, size, m);
	if (err)
		m->sys = NULL;
	return err;
}

void gvm__bo_mem_free(struct gvm_device *dev, uint64_t size,
		      struct gvm_bo_mem *m)
{
	if (m->region == GVM_MEM_VRAM)
		gvm__vram_free(dev, &m->vram_blocks);
	else if (m->sys)
		munmap(m->sys, size);
	gvm__free(m->ext);
	memset(m, 0, sizeof(*m));
	gvm_list_init(&m->vram_blocks);
}

int gvm_bo_create(struct gvm_device *dev, uint64_t size, uint32_t placement,
		  struct gvm_vm *vm, struct gvm_bo **out)
{
	struct gvm_bo *bo;
	int err;

	if (!dev || !out || !size || !gvm__page_aligned(size) ||
	    size > (1ull << 47))
		return -EINVAL;
	if (!placement || (placement & ~(GVM_MEM_SYSTEM | GVM_MEM_VRAM)))
		return -EINVAL;
	if (vm && vm->dev != dev)
		return -EINVAL;
	if (gvm__device_unplugged(dev))
		return -ENODEV;
	if (vm) {
		err = gvm__limit_bo_get(vm);
		if (err)
			return err;
	}
	bo = gvm__calloc(1, sizeof(*bo));
	if (!bo) {
		if (vm)
			gvm__limit_bo_put(vm);
		return -ENOMEM;
	}
	bo->dev = dev;
	bo->size = size;
	bo->placement = placement;
	gvm__ref_init(&bo->refcount);
	gvm_list_init(&bo->vm_bos);
	gvm_list_init(&bo->lru_link);
	gvm__mutex_init(&bo->view_lock, "bo.view_lock", GVM_RANK_LEAF);

	/* VRAM first; with a system fallback, do not evict for it. */
	err = -ENOSPC;
	if (placement & GVM_MEM_VRAM)
		err = gvm__bo_mem_alloc(dev, size, GVM_MEM_VRAM, true,
					placement & GVM_MEM_SYSTEM ?
						GVM_EVICT_NONE : GVM_EVICT_WAIT,
					&bo->mem);
	if (err == -ENOSPC && (placement & GVM_MEM_SYSTEM))
		err = gvm__bo_mem_alloc(dev, size, GVM_MEM_SYSTEM, true,
					GVM_EVICT_NONE, &bo->mem);
	if (err) {
		gvm__vram_claim_end_wait();
		gvm__mutex_fini(&bo->view_lock);
		gvm__free(bo);
		if (vm)
			gvm__limit_bo_put(vm);
		gvm__dev_reap(dev);
		return err;
	}
	if (vm) {
		bo->vm = gvm__vm_get(vm);
		bo->resv = &vm->resv;
	} else {
		gvm_resv_init(&bo->own_resv);
		bo->resv = &bo->own_resv;
	}
	gvm_device_get(dev);
	if (gvm__bo_before_lru)
		gvm__bo_before_lru(bo);
	gvm__bo_lru_update(bo);
	gvm__vram_claim_end_wait();	/* on the LRU: a waiter may take it */
	gvm__dev_reap(dev);		/* eviction's deferred puts */
	gvm__put_out(out, bo);
	return 0;
}

struct gvm_bo *gvm_bo_get(struct gvm_bo *bo)
{
	if (bo)
		gvm__ref_get(&bo->refcount);
	return bo;
}

void gvm__bo_free(struct gvm_bo *bo)
{
	struct gvm_device *dev;

	GVM_BUG_ON(!gvm_list_empty(&bo->vm_bos));
	dev = bo->dev;
	gvm__bo_lru_del(bo);
	if (bo->view_len)
		munmap(bo->view, bo->view_len);
	gvm__bo_mem_free(dev, bo->size, &bo->mem);
	if (bo->spare_sys)
		munmap(bo->spare_sys, bo->size);
	if (bo->vm) {
		gvm__limit_bo_put(bo->vm);
		gvm__vm_put(bo->vm);
	} else
		gvm_resv_fini(&bo->own_resv);
	gvm__mutex_fini(&bo->view_lock);
	gvm__free(bo);
	gvm_device_put(dev);
}

void gvm_bo_put(struct gvm_bo *bo)
{
	if (bo && gvm__ref_put(&bo->refcount))
		gvm__bo_free(bo);
}

void gvm__bo_put_deferred(struct gvm_bo *bo)
{
	struct gvm_device *dev = bo->dev;

	if (!gvm__ref_put(&bo->refcount))
		return;
	/* Off the LRU (get_unless_zero() skipped it already), onto the
	 * device's dead list: lru_link is free from now on. */
	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_del(&bo->lru_link);
	gvm_list_add_tail(&bo->lru_link, &dev->dead_bos);
	gvm_store_release(&dev->nr_dead_bos, dev->nr_dead_bos + 1);
	gvm__mutex_unlock(&dev->vram_lock);
}

/*
 * The advice and the purge are both made with the reservation held, so
 * they are ordered: a purge that got the reservation first is reported by
 * this WILLNEED (retained false); one that comes after this WILLNEED finds
 * the BO not purgeable any more (evict.c rechecks madv under the
 * reservation) and copies it like any BO.  The LRU position changes with
 * the advice (gvm__bo_lru_update(): DONTNEED BOs go first).
 */
int gvm_bo_madvise(struct gvm_bo *bo, uint32_t advice, bool *retained)
{
	bool kept;

	if (!bo || (advice != GVM_BO_WILLNEED && advice != GVM_BO_DONTNEED))
		return -EINVAL;
	if (advice == GVM_BO_WILLNEED && !retained)
		return -EINVAL;
	gvm_resv_lock(bo->resv, NULL);
	kept = !bo->purged;
	if (advice == GVM_BO_WILLNEED)
		bo->purged = false;
	if (bo->madv != advice) {
		gvm_store_relaxed(&bo->madv, advice);
		gvm__bo_lru_update(bo);
	}
	gvm_resv_unlock(bo->resv);
	if (retained)
		gvm__put_out(retained, kept);
	return 0;
}

uint64_t gvm_bo_size(const struct gvm_bo *bo)
{
	return bo ? bo->size : 0;
}

uint32_t gvm_bo_region(struct gvm_bo *bo)
{
	uint32_t region;

	if (!bo)
		return 0;
	gvm_resv_lock(bo->resv, NULL);
	region = bo->mem.region;
	gvm_resv_unlock(bo->resv);
	return region;
}

/*
 * Maps the current backing at @at (MAP_FIXED over the view's reservation):
 * a second mapping of the shared system pages, or one mapping of the
 * device's VRAM file per extent, side by side.
 */
void (*gvm__view_piece_hook)(struct gvm_bo *bo, size_t k);

/*
 * Maps bo->mem at @at: one mapping (system memory) or one per VRAM
 * extent.  @wp: a move has the view write-protected (gvm__mm_wp_begin);
 * a new mapping does not inherit that, so each piece is protected again
 * as soon as it is mapped: a store to it then sleeps until the move's
 * end, and goes where the view is then, also if a later piece fails and
 * the view goes back to the old backing (the store would be lost in the
 * new one, which the failed move frees).
 */
static int view_map(struct gvm_bo *bo, uint8_t *at, bool wp)
{
	const struct gvm_device_desc *d = &bo->dev->desc;
	size_t k;

	if (bo->mem.region == GVM_MEM_SYSTEM) {
		if (gvm__inject(GVM_INJECT_VIEW_MAP) ||
		    mremap(bo->mem.sys, 0, bo->size, MREMAP_MAYMOVE | MREMAP_FIXED,
			   at) == MAP_FAILED)
			return -ENOMEM;
		if (wp)
			gvm__mm_wp_begin(at, bo->size);
		return 0;
	}
	for (k = 0; k < bo->mem.nr_ext; at += bo->mem.ext[k].len, k++) {
		off_t off = (off_t)(bo->mem.ext[k].addr - d->vram_base);

		if (gvm__inject(GVM_INJECT_VIEW_MAP) ||
		    mmap(at, bo->mem.ext[k].len, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, d->vram_fd, off) == MAP_FAILED)
			return -ENOMEM;
		if (wp)
			gvm__mm_wp_begin(at, bo->mem.ext[k].len);
		if (gvm__view_piece_hook)
			gvm__view_piece_hook(bo, k);
	}
	return 0;
}

/*
 * The view onto bo->mem.  A failure part way (one mapping per VRAM
 * extent) leaves some pieces on the new backing: the view is then put
 * back on @old, the backing the caller keeps, or, if even that fails,
 * made inaccessible (an access gets SIGSEGV), never left on memory the
 * caller frees next.
 */
int gvm__bo_view_update(struct gvm_bo *bo, struct gvm_bo_mem *old, bool wp)
{
	int err = 0;

	gvm__mutex_lock(&bo->view_lock);
	if (bo->view_len)
		err = view_map(bo, bo->view, wp);
	if (err) {
		struct gvm_bo_mem cur = bo->mem;

		bo->mem = *old;
		if (view_map(bo, bo->view, wp)) {
			fprintf(stderr, "gvm: BO %p: CPU view lost after a "
				"failed move\n", (void *)bo);
			if (mmap(bo->view, bo->view_len, PROT_NONE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
				 0) == MAP_FAILED)
				GVM_BUG_ON(1);
		}
		bo->mem = cur;
	}
	gvm__mutex_unlock(&bo->view_lock);
	return err;
}

int gvm_bo_map(struct gvm_bo *bo, void **cpu)
{
	const struct gvm_device_desc *d;
	uint8_t *base, *view;
	int err = 0;

	if (!bo || !cpu)
		return -EINVAL;
	d = &bo->dev->desc;
	gvm_resv_lock(bo->resv, NULL);
	gvm__mutex_lock(&bo->view_lock);
	if (bo->view)
		goto out;
	if (bo->mem.region == GVM_MEM_VRAM && d->vram_fd < 0) {
		/* No file to map: only the window, which cannot follow a
		 * move (gvm__bo_move() then refuses). */
		if (bo->mem.nr_ext != 1) {
			err = -EOPNOTSUPP;
			goto out;
		}
		bo->view = (uint8_t *)d->vram_cpu +
			   (bo->mem.ext[0].addr - d->vram_base);
		goto out;
	}
	/* A reserved range the backing is mapped over, so that a move can
	 * replace the mapping in place. */
	base = mmap(NULL, bo->size, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		err = -ENOMEM;
		goto out;
	}
	err = view_map(bo, base, false);
	if (err) {
		munmap(base, bo->size);
		goto out;
	}
	bo->view = base;
	bo->view_len = bo->size;
out:
	view = bo->view;
	gvm__mutex_unlock(&bo->view_lock);
	gvm_resv_unlock(bo->resv);
	/* after the locks: @cpu is application memory */
	if (!err)
		gvm__put_out(cpu, (void *)view);
	return err;
}

int gvm__bo_extents(const struct gvm_bo *bo, uint64_t offset, uint64_t len,
		    const struct gvm_pt_extent *inl,
		    struct gvm_pt_extent **out, size_t *n, size_t *cap)
{
	return gvm__extents_slice(bo->mem.ext, bo->mem.nr_ext, offset, len,
				  inl, out, n, cap);
}

int gvm__extents_slice(const struct gvm_pt_extent *ext, size_t nr,
		       uint64_t offset, uint64_t len,
		       const struct gvm_pt_extent *inl,
		       struct gvm_pt_extent **out, size_t *n, size_t *cap)
{
	uint64_t pos = 0;
	size_t k;

	for (k = 0; k < nr && len; k++) {
		const struct gvm_pt_extent *x = &ext[k];
		uint64_t skip, take;

		if (pos + x->len <= offset) {
			pos += x->len;
			continue;
		}
		skip = offset > pos ? offset - pos : 0;
		take = x->len - skip < len ? x->len - skip : len;
		if (inl ? GVM_GROW_INL(*out, *cap, *n + 1, inl)
			: GVM_GROW(*out, *cap, *n + 1))
			return -ENOMEM;
		(*out)[*n].addr = x->addr + skip;
		(*out)[*n].len = take;
		(*n)++;
		len -= take;
		offset += take;
		pos += x->len;
	}
	GVM_BUG_ON(len);
	return 0;
}

unsigned int gvm__bo_pt_flags(const struct gvm_bo *bo)
{
	return bo->mem.region == GVM_MEM_VRAM ? GVM_PT_DEVMEM : 0;
}
