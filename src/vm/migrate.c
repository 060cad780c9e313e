// SPDX-License-Identifier: MIT
/*
 * SVM migration to device memory: the VRAM side of the device-private
 * emulation (mm/devmem.c has the CPU side and the protocol).
 *
 * A migration of an SVM range [start, start + size) (size 4K, 64K or 2M,
 * aligned to it) allocates VRAM of the target device (the faulting one,
 * or a device linked to it that placement chose: svm.c), usually one
 * naturally aligned buddy block, wraps it in a struct svm_devmem (a
 * struct gvm_mm_devmem whose owner is that device) and asks the mm to
 * move the range's CPU pages into it.  From then on:
 *   - a range's fetch (userptr.c) finds the pages there
 *     (gvm__mm_devmem_lookup) and maps the VRAM block: with GVM_PT_DEVMEM
 *     PTEs (2M leaves when the block allows) from the owner, through the
 *     owner's VRAM window from a linked device (gvm__svm_devmem_extents);
 *   - a CPU access, a userptr or an unlinked device fetching the pages, or
 *     fork() migrates the data back through the copy op below, with the
 *     range invalidated first (its next GPU fault refetches: system
 *     pages, and a new migration if the policy still wants one);
 *   - the block is freed when the mm lets it go (data back in system
 *     memory, or discarded by munmap/madvise), always inside an
 *     invalidation of its range (its change), so no PTE maps it any more,
 *     a fetch that saw it fails its sequence check and one that begins
 *     meanwhile waits (the ranges hold no reference).
 *
 * Device to device: a range whose pages are all in the memory of a device
 * linked to the target moves directly (gvm__mm_devmem_move; mm/devmem.c
 * has the protocol): the new devmem's copy_from has the target's copy
 * engine read the peer's blocks through the peer's VRAM window (the
 * addresses its p2p mappings use, with the peer named in the copy so
 * that a backend charges the link) into the new blocks.  The old devmem
 * leaves its device's LRU and is freed when the extent lets it go.
 *
 * Copies go through the device contract (ops->copy, the copy engine,
 * gvm__dev_copy), between the block and the mm's stage, waiting for each; except that the
 * way back is by default read by the CPU through the device's CPU window
 * over VRAM (devmem_cpu_addr; mm/devmem.c decides), which a device
 * without desc.vram_cpu does not offer.
 *
 * Oversubscription (docs/svm.md, "Oversubscription").  Every devmem that
 * holds CPU pages is on its device's SVM LRU (dev->svm_lru), least
 * recently used first; a fault on a range that is resident already moves
 * it to the tail.  A migration that finds no VRAM after evicting idle BOs
 * evicts SVM allocations from the LRU's head (svm_evict_one: the mm moves
 * every page living in the devmem back, gvm__mm_devmem_evict), sparing
 * those migrated less than the policy's timeslice ago unless nothing else
 * is left (policy.h), and tries again.  A BO allocation that may wait
 * (it holds no lock) makes SVM memory give way the same way, from
 * evict.c (gvm__svm_evict); one that holds reservations cannot (the mm's
 * devmem_lock ranks below them) and evicts only BOs.
 *
 *   on the LRU            d->mm set, from just before the migration
 *                         (removed again if it fails) until the mm's last
 *                         extent of d goes (ops unused, under the mm's
 *                         devmem_lock: data back, discarded, mm teardown)
 *   the evictor           under vram_lock picks d with d->mm set and takes
 *                         a reference on the mm unless it is already
 *                         dying (then skips d: the mm's teardown frees
 *                         it), and on d; marks it evicting; drops
 *                         vram_lock; gvm__mm_devmem_evict(mm, d); puts
 *
 * Why the references are safe to take: while d->mm is set (read under
 * vram_lock), either its migration is under way (the migrating VM holds
 * the mm, the maker holds d) or an extent of the mm refers to d (and
 * holds d); the mm's teardown frees its extents, calling unused, which
 * takes vram_lock, before the mm's memory goes.  So under vram_lock the mm
 * is readable and d is referenced: a plain get on d, get-unless-zero on
 * the mm.
 *
 * Counting: a move back is counted for the device and for the VM whose
 * migration filled the devmem (its struct gvm_svm_back, referenced by the
 * devmem, which may outlive the VM), a CPU fault-back also as such
 * (devmem_faulted); docs/svm.md "Whose move back".
 *
 * Locking: a devmem's buddy blocks and extents are immutable after
 * creation; its reference count is atomic; its LRU fields are protected
 * by dev->vram_lock (leaf).  Copies run under the mm's devmem_lock
 * (mm/devmem.c); a direct copy also takes link_lock (leaf, through
 * gvm_device_linked, and the backend's gvm_device_link_query); release
 * takes vram_lock.  Allocation happens with
 * vm->lock held (rank 100), which allows the mm's devmem_lock (200) of
 * any mm: SVM eviction runs there, after idle BOs (GVM_EVICT_IDLE).
 */
#include <errno.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/buddy.h"
#include "core/list.h"
#include "core/sync.h"
#include "core/trace.h"
#include "mm/mm.h"
#include "vm/dev.h"
#include "vm/policy.h"
#include "vm/svm.h"
#include "vm/vm.h"

struct svm_devmem {
	struct gvm_mm_devmem base;		/* owner: the device */
	struct gvm_device *dev;			/* reference */
	struct gvm_svm_back *back;		/* reference: the counters of
						   the VM that migrated */
	struct gvm_list blocks;			/* VRAM buddy blocks */
	struct gvm_pt_extent *ext;		/* their device addresses, in
						   offset order */
	size_t nr_ext;
	/* eviction, all protected by dev->vram_lock */
	struct gvm_list lru_link;		/* on dev->svm_lru iff mm */
	struct gvm_mm *mm;			/* whose pages live here, not
						   a reference (the top of
						   the file); NULL: none */
	int64_t migrated_ns;			/* when it was filled */
	uint64_t lru_stamp;			/* dev->lru_clock at its last
						   use (dev.h) */
	bool evicting;				/* an evictor works on it */
};

static struct svm_devmem *to_svm_devmem(struct gvm_mm_devmem *dm)
{
	return gvm_container_of(dm, struct svm_devmem, base);
}

/* @d's memory from byte @off on, as its own device sees it. */
static struct gvm_copy_side vram_side(const struct svm_devmem *d, uint64_t off)
{
	return (struct gvm_copy_side){ .ext = d->ext, .nr = d->nr_ext,
				       .off = off, .region = GVM_MEM_VRAM };
}

struct gvm_svm_back *gvm__svm_back_create(void)
{
	struct gvm_svm_back *b = gvm__calloc(1, sizeof(*b));

	if (b)
		gvm__ref_init(&b->ref);
	return b;
}

void gvm__svm_back_put(struct gvm_svm_back *b)
{
	if (b && gvm__ref_put(&b->ref))
		gvm__free(b);
}

/* @len bytes of @d are going back to system memory: counted for its
   device and for the VM that migrated them. */
static void devmem_to_ram(struct gvm_mm_devmem *dm, uint64_t len)
{
	struct svm_devmem *d = to_svm_devmem(dm);

	gvm_fetch_add_relaxed(&d->dev->svm_to_ram, 1u);
	gvm_fetch_add_relaxed(&d->dev->svm_bytes_to_ram, len);
	gvm_fetch_add_relaxed(&d->back->to_system, 1u);
	gvm_fetch_add_relaxed(&d->back->bytes_to_system, len);
}

/* Copies [off, off + len) of the device memory to or from @sys. */
static int devmem_copy(struct gvm_mm_devmem *dm, uint64_t off, uint64_t sys,
		       uint64_t len, bool to_ram, void (*meanwhile)(void *),
		       void *arg)
{
	struct svm_devmem *d = to_svm_devmem(dm);
	struct gvm_device *dev = d->dev;
	const struct gvm_pt_extent x = { .addr = sys, .len = len };
	struct gvm_copy_side vram = vram_side(d, off);
	struct gvm_copy_side ram = { .ext = &x, .nr = 1,
				     .region = GVM_MEM_SYSTEM };
	struct gvm_copy_wait w = { .meanwhile = meanwhile, .arg = arg };
	int err;

	/* Back, the copy is this side's part of the move (mm/devmem.c). */
	GVM_TRACE_MIGRATE(dev, dev->name, to_ram ? "to_system" : "copy",
			  sys, len);
	err = to_ram ? gvm__dev_copy(dev, &ram, &vram, len, &w) :
		       gvm__dev_copy(dev, &vram, &ram, len, &w);
	gvm_fetch_add_relaxed(&dev->svm_copy_ns, (uint64_t)w.copy_ns);
	return err;
}

static const struct gvm_mm_devmem_ops svm_devmem_ops;

/*
 * Device to device (gvm__mm_devmem_move): [src_off, src_off + len) of
 * @src, another device's SVM memory, into [off, off + len) of @dm, by
 * @dm's device pulling it over the link from the peer's VRAM window, as
 * its p2p mappings reach it (gvm__svm_devmem_extents).  -EXDEV if @src
 * is not a linked device's SVM memory.  Counted as a move out of the
 * peer (its svm_d2d_out, not its moves to system memory).
 */
static int devmem_copy_from(struct gvm_mm_devmem *dm, uint64_t off,
			    struct gvm_mm_devmem *src, uint64_t src_off,
			    uint64_t len)
{
	struct svm_devmem *d = to_svm_devmem(dm), *s;
	struct gvm_device *dev = d->dev, *peer;
	struct gvm_copy_side to = vram_side(d, off), from;
	struct gvm_copy_wait w = { 0 };
	int err;

	if (src->ops != &svm_devmem_ops)
		return -EXDEV;
	s = to_svm_devmem(src);
	peer = s->dev;
	if (peer == dev || !peer->desc.vram_cpu ||
	    !gvm_device_linked(dev, peer))
		return -EXDEV;
	/* The peer's VRAM through its window: what p2p DMA addresses. */
	from = (struct gvm_copy_side){ .ext = s->ext, .nr = s->nr_ext,
				       .off = src_off,
				       .region = GVM_MEM_SYSTEM,
				       .bias = (uintptr_t)peer->desc.vram_cpu -
					       peer->desc.vram_base,
				       .peer = peer };
	GVM_TRACE_MIGRATE(dev, dev->name, "from_peer", src_off, len);
	err = gvm__dev_copy(dev, &to, &from, len, &w);
	gvm_fetch_add_relaxed(&dev->svm_copy_ns, (uint64_t)w.copy_ns);
	if (!err) {
		gvm_fetch_add_relaxed(&peer->svm_d2d_out, 1u);
		gvm_fetch_add_relaxed(&peer->svm_bytes_d2d_out, len);
	}
	return err;
}

/*
 * The CPU window (desc.vram_cpu) over [off, off + len) of the device
 * memory, if it lies in one extent; the caller reads it back with the CPU
 * (mm/devmem.c: small extents, where a copy-engine job's round trip costs
 * more than the copy).
 */
static uint64_t devmem_cpu_addr(struct gvm_mm_devmem *dm, uint64_t off,
				uint64_t len)
{
	struct svm_devmem *d = to_svm_devmem(dm);
	struct gvm_device *dev = d->dev;
	uint64_t pos = 0;

	if (!dev->desc.vram_cpu)
		return 0;
	for (size_t i = 0; i < d->nr_ext; i++) {
		const struct gvm_pt_extent *x = &d->ext[i];

		if (off >= pos && off + len <= pos + x->len) {
			GVM_TRACE_MIGRATE(dev, dev->name, "to_system",
					  off, len);
			return (uintptr_t)dev->desc.vram_cpu +
			       (x->addr - dev->desc.vram_base) + (off - pos);
		}
		pos += x->len;
	}
	return 0;
}

/* A CPU access is bringing @dm's data back (the move: to_ram). */
static void devmem_faulted(struct gvm_mm_devmem *dm)
{
	gvm_fetch_add_relaxed(&to_svm_devmem(dm)->back->cpu_faultbacks, 1u);
}

/* Off the LRU: no page of the mm lives in @d any more. */
static void lru_del(struct svm_devmem *d)
{
	struct gvm_device *dev = d->dev;

	gvm__mutex_lock(&dev->vram_lock);
	if (d->mm)
		gvm_list_del(&d->lru_link);
	d->mm = NULL;
	gvm__mutex_unlock(&dev->vram_lock);
}

/* The mm's last extent of @dm went (devmem_lock held). */
static void devmem_unused(struct gvm_mm_devmem *dm)
{
	lru_del(to_svm_devmem(dm));
}

static void devmem_release(struct gvm_mm_devmem *dm)
{
	struct svm_devmem *d = to_svm_devmem(dm);

	GVM_BUG_ON(d->mm);		/* the LRU holds no reference */
	gvm__vram_free(d->dev, &d->blocks);
	gvm__svm_back_put(d->back);
	gvm_device_put(d->dev);
	gvm__free(d->ext);
	gvm__free(d);
}

static const struct gvm_mm_devmem_ops svm_devmem_ops = {
	.copy = devmem_copy,
	.cpu_addr = devmem_cpu_addr,
	.copy_from = devmem_copy_from,
	.release = devmem_release,
	.unused = devmem_unused,
	.faulted = devmem_faulted,
	.to_ram = devmem_to_ram,
};

/* The device addresses of @d's blocks, contiguous runs merged. */
static int devmem_extents(struct svm_devmem *d)
{
	struct gvm_device *dev = d->dev;
	struct gvm_list *pos;
	size_t cap = 0;

	gvm_list_for_each(pos, &d->blocks) {
		struct gvm_buddy_block *b =
			gvm_list_entry(pos, struct gvm_buddy_block, link);
		uint64_t a = gvm__vram_block_addr(dev, b);
		uint64_t n = gvm__buddy_block_size(&dev->vram, b);

		if (d->nr_ext && d->ext[d->nr_ext - 1].addr +
					 d->ext[d->nr_ext - 1].len == a) {
			d->ext[d->nr_ext - 1].len += n;
			continue;
		}
		if (GVM_GROW(d->ext, cap, d->nr_ext + 1))
			return -ENOMEM;
		d->ext[d->nr_ext].addr = a;
		d->ext[d->nr_ext++].len = n;
	}
	return 0;
}

/* ---- the SVM LRU and eviction ---------------------------------------- */

/* A reference on @mm unless it is already dying. */
static bool mm_get_unless_zero(struct gvm_mm *mm)
{
	uint32_t c = gvm_load_relaxed(&mm->ref);

	while (c)
		if (gvm_cmpxchg_acq_rel(&mm->ref, &c, c + 1))
			return true;
	return false;
}

/* A use of resident @d: to the LRU's tail (cheap: one leaf lock). */
static void lru_touch(struct svm_devmem *d)
{
	struct gvm_device *dev = d->dev;

	gvm__mutex_lock(&dev->vram_lock);
	if (d->mm && !d->evicting) {
		d->lru_stamp = gvm__vram_lru_stamp(dev);
		gvm_list_del(&d->lru_link);
		gvm_list_add_tail(&d->lru_link, &dev->svm_lru);
	}
	gvm__mutex_unlock(&dev->vram_lock);
}

void gvm__svm_devmem_touch(struct gvm_mm_devmem *dm)
{
	if (dm->ops == &svm_devmem_ops)
		lru_touch(to_svm_devmem(dm));
}

/*
 * Whether SVM allocation @x may be evicted by a pass that spares young
 * allocations unless @young (vram_lock held).
 */
static bool evict_candidate(const struct svm_devmem *x, bool young,
			    int64_t now)
{
	return !x->evicting &&
	       (young || gvm__svm_policy_evictable(x->migrated_ns, now));
}

/*
 * The LRU stamp of the SVM allocation svm_evict_one(@dev, @young) would
 * take, UINT64_MAX if none.
 */
static uint64_t svm_next_victim_stamp(struct gvm_device *dev, bool young)
{
	int64_t now = gvm__svm_policy_now();
	uint64_t stamp = UINT64_MAX;
	struct gvm_list *pos;

	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_for_each(pos, &dev->svm_lru) {
		struct svm_devmem *x = gvm_list_entry(pos, struct svm_devmem,
						      lru_link);

		if (evict_candidate(x, young, now)) {
			stamp = x->lru_stamp;
			break;
		}
	}
	gvm__mutex_unlock(&dev->vram_lock);
	return stamp;
}

/*
 * Moves the least recently used SVM allocation of @dev back to system
 * memory; @young: also one migrated within the policy's timeslice.
 * Counted for @vm if not NULL.  The bytes freed (0: none could be).
 * Context: vm->lock allowed, no reservation, no mm's devmem_lock.
 */
static uint64_t svm_evict_one(struct gvm_device *dev, bool young,
			      struct gvm_vm *vm)
{
	int64_t now = gvm__svm_policy_now();
	struct svm_devmem *d = NULL;
	struct gvm_mm *mm = NULL;
	struct gvm_list *pos;
	uint64_t bytes;
	int err;

	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_for_each(pos, &dev->svm_lru) {
		struct svm_devmem *x = gvm_list_entry(pos, struct svm_devmem,
						      lru_link);

		if (!evict_candidate(x, young, now))
			continue;
		if (!mm_get_unless_zero(x->mm))
			continue;	/* its teardown frees x */
		gvm__mm_devmem_get(&x->base);	/* see the top of the file */
		x->evicting = true;
		mm = x->mm;	/* x->mm may go once vram_lock is dropped */
		d = x;
		break;
	}
	gvm__mutex_unlock(&dev->vram_lock);
	if (!d)
		return 0;
	bytes = d->base.size;
	err = gvm__mm_devmem_evict(mm, &d->base);
	gvm__mutex_lock(&dev->vram_lock);
	d->evicting = false;
	gvm__mutex_unlock(&dev->vram_lock);
	/* -ENOENT: it left meanwhile (the LRU lost it too): room all the
	   same.  A copy error poisoned the pages (mm.h): the VRAM is free. */
	if (err != -ENOENT) {
		gvm_fetch_add_relaxed(&dev->svm_evictions, 1u);
		gvm_fetch_add_relaxed(&dev->svm_bytes_evicted, bytes);
		if (vm) {
			gvm__vm_stat_add(vm, svm_evictions, 1);
			gvm__vm_stat_add(vm, svm_bytes_evicted, bytes);
		}
	}
	gvm__mm_devmem_put(&d->base);
	gvm_mm_put(mm);
	return bytes;
}

uint64_t gvm__svm_evict(struct gvm_device *dev, uint64_t bytes,
			struct gvm_vm *vm)
{
	uint64_t freed = 0, n;
	bool young = false;

	while (freed < bytes) {
		n = svm_evict_one(dev, young, vm);
		if (!n && young)
			break;
		if (!n)
			young = true;	/* nothing older: the young ones */
		freed += n;
	}
	return freed;
}

/* Whether VRAM keeps SVM's headroom free (policy.h). */
static bool headroom_left(struct gvm_device *dev)
{
	uint64_t want = gvm__svm_policy_headroom(dev);
	bool ok;

	if (!want)
		return true;
	gvm__mutex_lock(&dev->vram_lock);
	ok = dev->vram.free_bytes >= want;
	gvm__mutex_unlock(&dev->vram_lock);
	return ok;
}

/*
 * VRAM for an SVM migration of @size bytes: idle BOs and SVM allocations
 * make room in one least-recently-used order (their LRU stamps, dev.h),
 * except that SVM allocations younger than the policy's timeslice go only
 * when nothing else can, until it fits with the policy's headroom left.
 * Each round evicts the idle BOs used before the SVM allocation that would
 * go next, then that allocation.  Bounded: an allocation cannot be starved
 * forever by others that take the room it made, it gives up (-ENOSPC, the
 * fault is serviced in system memory).  vm->lock held.
 */
static int svm_vram_alloc(struct gvm_vm *vm, struct gvm_device *dev,
			  uint64_t size, struct gvm_list *blocks)
{
	unsigned int rounds = 2 * (unsigned int)(size >> 12) + 8;
	bool young = false;
	int err;

	if (size + gvm__svm_policy_headroom(dev) > dev->desc.vram_size)
		return -ENOSPC;
	while (rounds--) {
		err = gvm__vram_alloc_evict_older(dev, size,
				svm_next_victim_stamp(dev, young), blocks);
		if (!err && headroom_left(dev))
			return 0;
		if (!err) {
			gvm__vram_free(dev, blocks);
			err = -ENOSPC;
		}
		if (err != -ENOSPC)
			return err;
		if (svm_evict_one(dev, young, vm))
			continue;
		if (young)
			return -ENOSPC;
		young = true;	/* nothing older: the young ones */
	}
	return -ENOSPC;
}

int gvm__svm_migrate_to_vram(struct gvm_vm *vm, struct gvm_device *dev,
			     uint64_t start, uint64_t size)
{
	struct gvm_device *from = NULL;
	struct gvm_mm_devmem *dm;
	struct svm_devmem *d;
	uint64_t off;
	bool other;
	int err;

	gvm_lockdep_assert_held(&vm->lock);
	dm = gvm__mm_devmem_lookup(vm->mm, start, size, NULL, &off, &other);
	if (dm && dm->owner == dev) {
		/* Resident already: a use (the LRU), nothing to allocate. */
		gvm__svm_devmem_touch(dm);
		gvm__mm_devmem_put(dm);
		return -EEXIST;
	}
	if (dm) {
		from = gvm__svm_devmem_device(dm);
		gvm__mm_devmem_put(dm);
		if (!from)
			return -EEXIST;	/* no device's: the fetch's business */
		if (!gvm_device_linked(dev, from))
			return -EXDEV;
	} else if (other) {
		return -EEXIST;
	}
	GVM_TRACE_MIGRATE(dev, dev->name, from ? "d2d" : "to_vram", start,
			  size);
	d = gvm__calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	gvm_list_init(&d->blocks);
	gvm_list_init(&d->lru_link);
	d->dev = gvm_device_get(dev);
	d->back = vm->svm_back;		/* an mm: the VM has them */
	gvm__ref_get(&d->back->ref);
	gvm__mm_devmem_init(&d->base, &svm_devmem_ops, dev, size);
	err = svm_vram_alloc(vm, dev, size, &d->blocks);
	if (!err)
		err = devmem_extents(d);
	if (!err) {
		/* On the LRU first: once migrated, the mm's unused() may
		   take it off at any time. */
		gvm__mutex_lock(&dev->vram_lock);
		d->mm = vm->mm;
		d->migrated_ns = gvm__svm_policy_now();
		d->lru_stamp = gvm__vram_lru_stamp(dev);
		gvm_list_add_tail(&d->lru_link, &dev->svm_lru);
		gvm__mutex_unlock(&dev->vram_lock);
		/* From the peer directly; from system memory if the pages
		   went back there meanwhile. */
		err = from ? gvm__mm_devmem_move(vm->mm, start, size,
						 &d->base) : -ENOENT;
		if (err == -ENOENT) {
			from = NULL;
			err = gvm__mm_migrate_to_devmem(vm->mm, start, size,
							&d->base);
		}
		if (err)
			lru_del(d);	/* no extent refers to d: ours */
	}
	if (!err) {
		gvm__vm_stat_add(vm, svm_migrations, 1);
		gvm__vm_stat_add(vm, bytes_to_vram, size);
		gvm__vm_stat_add(vm, svm_bytes_to_vram, size);
		gvm_fetch_add_relaxed(&dev->svm_to_vram, 1u);
		gvm_fetch_add_relaxed(&dev->svm_bytes_to_vram, size);
		if (from) {
			gvm__vm_stat_add(vm, svm_d2d_migrations, 1);
			gvm__vm_stat_add(vm, svm_bytes_d2d, size);
			gvm_fetch_add_relaxed(&dev->svm_d2d_in, 1u);
		}
		gvm__svm_policy_migrated(vm, start, size);
	}
	gvm__mm_devmem_put(&d->base);	/* the mm holds its own */
	return err;
}

int gvm__svm_devmem_extents(struct gvm_mm_devmem *dm, struct gvm_device *dev,
			    uint64_t off, uint64_t len,
			    struct gvm_pt_extent **out, size_t *n, bool *local)
{
	struct svm_devmem *d = to_svm_devmem(dm);
	struct gvm_device *owner = d->dev;
	size_t cap = 0, i;
	int err;

	if (dm->ops != &svm_devmem_ops || off + len > dm->size)
		return -EINVAL;
	*local = owner == dev;
	if (!*local && !gvm_device_linked(dev, owner))
		return -EXDEV;
	*out = NULL;
	*n = 0;
	err = gvm__extents_slice(d->ext, d->nr_ext, off, len, NULL, out, n,
				 &cap);
	/* A peer's memory, through its window: what p2p DMA addresses. */
	for (i = 0; !err && !*local && i < *n; i++)
		(*out)[i].addr = (uintptr_t)owner->desc.vram_cpu +
				 ((*out)[i].addr - owner->desc.vram_base);
	return err;
}

struct gvm_device *gvm__svm_devmem_device(const struct gvm_mm_devmem *dm)
{
	return dm->ops == &svm_devmem_ops ?
	       gvm_container_of(dm, struct svm_devmem, base)->dev : NULL;
}
