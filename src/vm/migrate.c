// SPDX-License-Identifier: MIT
/*
 * SVM migration to device memory: the VRAM side of the device-private
 * emulation (mm/devmem.c has the CPU side and the protocol).
 *
 * A migration of an SVM range [start, start + size) (size 4K, 64K or 2M,
 * aligned to it) allocates VRAM of the faulting device (buddy blocks,
 * usually one naturally aligned block), wraps it in a struct svm_devmem (a struct
 * gvm_mm_devmem whose owner is the device) and asks the mm to move the
 * range's CPU pages into it.  From then on:
 *   - the range's fetch (userptr.c) finds the pages in this device's
 *     memory (gvm__mm_devmem_lookup) and maps the VRAM block (PTEs with
 *     GVM_PT_DEVMEM; 2M leaves when the block allows);
 *   - a CPU access, a userptr or another device fetching the pages, or
 *     fork() migrates the data back through the copy op below, with the
 *     range invalidated first (its next GPU fault refetches: system
 *     pages, and a new migration if the policy still wants one);
 *   - the block is freed when the mm lets it go (data back in system
 *     memory, or discarded by munmap/madvise), always inside or after an
 *     invalidation of its range, so no PTE maps it any more and a fetch
 *     that saw it fails its sequence check (the ranges hold no
 *     reference).
 *
 * Copies go through the device contract (ops->copy, the copy engine),
 * between the block and the mm's stage, waiting for each; except that the
 * way back is by default read by the CPU through the device's CPU window
 * over VRAM (devmem_cpu_addr; mm/devmem.c decides), which a device
 * without desc.vram_cpu does not offer.
 *
 * Locking: a devmem is immutable after creation but for its reference
 * count (atomic); copies run under the mm's devmem_lock (mm/devmem.c);
 * release takes the device's vram_lock (leaf).  Allocation happens with
 * vm->lock held, so eviction is limited to idle BOs (GVM_EVICT_IDLE).
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
#include "vm/svm.h"
#include "vm/vm.h"

struct svm_devmem {
	struct gvm_mm_devmem base;		/* owner: the device */
	struct gvm_device *dev;			/* reference */
	struct gvm_list blocks;			/* VRAM buddy blocks */
	struct gvm_pt_extent *ext;		/* their device addresses, in
						   offset order */
	size_t nr_ext;
};

static struct svm_devmem *to_svm_devmem(struct gvm_mm_devmem *dm)
{
	return gvm_container_of(dm, struct svm_devmem, base);
}

/* Copies [off, off + len) of the device memory to or from @sys. */
static int devmem_copy(struct gvm_mm_devmem *dm, uint64_t off, uint64_t sys,
		       uint64_t len, bool to_ram)
{
	struct svm_devmem *d = to_svm_devmem(dm);
	struct gvm_device *dev = d->dev;
	uint64_t pos = 0, done_bytes = 0;
	int64_t t0 = gvm__now_ns();
	int err = 0;

	/* Back, the copy is this side's part of the move (mm/devmem.c). */
	GVM_TRACE_MIGRATE(dev, dev->name, to_ram ? "to_system" : "copy",
			  sys, len);

	for (size_t i = 0; i < d->nr_ext && done_bytes < len && !err; i++) {
		const struct gvm_pt_extent *x = &d->ext[i];
		uint64_t a, n;

		if (pos + x->len <= off) {
			pos += x->len;
			continue;
		}
		a = off + done_bytes - pos;	/* into this extent */
		n = x->len - a < len - done_bytes ? x->len - a :
						    len - done_bytes;
		{
			struct gvm_mem_addr vram = { GVM_MEM_VRAM,
						     x->addr + a };
			struct gvm_mem_addr ram = { GVM_MEM_SYSTEM,
						    sys + done_bytes };
			struct gvm_fence *f;

			err = dev->ops->copy(dev, to_ram ? ram : vram,
					     to_ram ? vram : ram, n, &f);
			if (err)
				break;
			gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
			err = gvm_fence_get_status(f) < 0 ? -EIO : 0;
			gvm_fence_put(f);
		}
		done_bytes += n;
		pos += x->len;
	}
	gvm_fetch_add_relaxed(&dev->svm_copy_ns,
			      (uint64_t)(gvm__now_ns() - t0));
	if (!err && to_ram) {
		gvm_fetch_add_relaxed(&dev->svm_to_ram, 1u);
		gvm_fetch_add_relaxed(&dev->svm_bytes_to_ram, len);
	}
	return err;
}

/*
 * The CPU window (desc.vram_cpu) over [off, off + len) of the device
 * memory, if it lies in one extent; the caller reads it back with the CPU
 * (mm/devmem.c: small extents, where a copy-engine job's round trip costs
 * more than the copy).  Counted as a move back, like devmem_copy.
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
			gvm_fetch_add_relaxed(&dev->svm_to_ram, 1u);
			gvm_fetch_add_relaxed(&dev->svm_bytes_to_ram, len);
			return (uintptr_t)dev->desc.vram_cpu +
			       (x->addr - dev->desc.vram_base) + (off - pos);
		}
		pos += x->len;
	}
	return 0;
}

static void devmem_release(struct gvm_mm_devmem *dm)
{
	struct svm_devmem *d = to_svm_devmem(dm);

	gvm__vram_free(d->dev, &d->blocks);
	gvm_device_put(d->dev);
	gvm__free(d->ext);
	gvm__free(d);
}

static const struct gvm_mm_devmem_ops svm_devmem_ops = {
	.copy = devmem_copy,
	.cpu_addr = devmem_cpu_addr,
	.release = devmem_release,
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

int gvm__svm_migrate_to_vram(struct gvm_vm *vm, struct gvm_device *dev,
			     uint64_t start, uint64_t size)
{
	struct svm_devmem *d;
	int err;

	gvm_lockdep_assert_held(&vm->lock);
	GVM_TRACE_MIGRATE(dev, dev->name, "to_vram", start, size);
	d = gvm__calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	gvm_list_init(&d->blocks);
	d->dev = gvm_device_get(dev);
	gvm__mm_devmem_init(&d->base, &svm_devmem_ops, dev, size);
	err = gvm__vram_alloc_evict(dev, size, GVM_EVICT_IDLE, &d->blocks);
	if (!err)
		err = devmem_extents(d);
	if (!err)
		err = gvm__mm_migrate_to_devmem(vm->mm, start, size, &d->base);
	if (!err) {
		gvm__vm_stat_add(vm, svm_migrations, 1);
		gvm__vm_stat_add(vm, bytes_to_vram, size);
		gvm_fetch_add_relaxed(&dev->svm_to_vram, 1u);
		gvm_fetch_add_relaxed(&dev->svm_bytes_to_vram, size);
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
	err = gvm__extents_slice(d->ext, d->nr_ext, off, len, out, n, &cap);
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
