// SPDX-License-Identifier: MIT
/*
 * Shared virtual memory: GPU mappings of the process's own address space,
 * made on GPU fault (the "system allocator" of seed 002 as drm_gpusvm
 * shapes it).
 *
 * A GVM_BIND_CPU_ADDR_MIRROR mapping (fault mode) says: GPU address X is
 * CPU address X, for X in the mapping.  It writes no PTEs.  When the GPU
 * faults at X inside it, a *range* is created around X and bound:
 *
 *   size  the largest of 2M, 64K, 4K whose aligned block around X lies
 *         inside the CPU mapping of X (gvm__mm_lookup: PROCMAP_QUERY),
 *         inside the mirror VMA, and overlaps no other range and no
 *         other GPU mapping (a BO bound inside a mirror overrides it)
 *   pages a range is a userptr VMA of the VM's range space (vm->svm) at
 *         CPU address == GPU address: watched by its chunk's notifier
 *         (userptr.c, "SVM chunks"), its pages fetched without
 *         pinning, READONLY if the CPU mapping is,
 *         bound through the page-table pipeline with the sequence recheck
 *         (fault.c) and zapped by invalidations like any userptr
 *
 * A fault in an existing range refetches and rebinds it (an invalidation
 * zapped it); if its memory is gone (munmap), the range is dropped and a
 * new one made at the address, if the CPU maps something there now.
 * Ranges an UNMAP hit are collected (dropped; split if the CPU still maps
 * part of them) by the device's collector thread and at every fault.
 * Unbinding or overriding part of a mirror removes every range that
 * intersects the removed part, whole, in the same bind (bind.c: the range
 * space's unmap ops join the bind's op lists, so they unwind with it and
 * the ranges' PTEs go in the same page-table update).
 *
 * Placement and migration are range_place() and migrate.c; docs/svm.md
 * has the whole fault path.  (Faults reach gvm__svm_fault() from the
 * device's fault-servicing thread, or from the faulting engine's thread
 * for a lone fault: fault_queue.c.)
 *
 * Locking: vm->lock protects the range space (like the VA tree); ranges'
 * userptr state follows userptr.c; range VMAs that go away are freed with
 * no lock held (bind) or handed to gvm__vm_reap (fault handler, which
 * holds vm->lock).
 */
#include "vm/svm.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "core/trace.h"
#include "mm/mm.h"
#include "vm/attr.h"
#include "vm/dev.h"
#include "vm/fault.h"
#include "vm/policy.h"
#include "vm/pt_update.h"
#include "vm/userptr.h"
#include "vm/vm.h"

#define K4 (4ull << 10)
#define K64 (64ull << 10)
#define M2 (2ull << 20)

/* Placements an atomic fault retries when another device takes the
   pages in between (gvm__svm_fault). */
#define ATOMIC_RETRIES 4

bool gvm__svm_no_migration;
void (*gvm__svm_place_hook)(struct gvm_vm *vm, uint64_t addr, uint64_t len);

int gvm__svm_unmap_ops(struct gvm_vm *vm, uint64_t lo, uint64_t hi,
		       struct gvm_va_ops *l)
{
	struct gvm_va_iter it;
	struct gvm_va *va;
	uint64_t a = hi, b = lo;

	gvm_lockdep_assert_held(&vm->lock);
	gvm_va_for_each_in_range(va, &vm->svm, lo, hi - lo, &it) {
		if (va->addr < a)
			a = va->addr;
		if (va->addr + va->range > b)
			b = va->addr + va->range;
	}
	if (a >= b) {
		l->space = NULL;
		l->op = NULL;
		l->nr = 0;
		return 0;
	}
	/* The hull of whole ranges: only UNMAP ops, no piece survives. */
	return gvm__va_unmap_ops_create(&vm->svm, a, b - a, l);
}

/* Is [a, a + size) free of ranges and of every mapping but @mirror? */
static bool block_free(struct gvm_vm *vm, const struct gvm_vma *mirror,
		       uint64_t a, uint64_t size)
{
	struct gvm_va_iter it;
	struct gvm_va *va;

	if (a < mirror->va.addr ||
	    a + size > mirror->va.addr + mirror->va.range)
		return false;
	gvm_va_for_each_in_range(va, &vm->svm, a, size, &it)
		return false;
	gvm_va_for_each_in_range(va, &vm->va, a, size, &it)
		if (va != &mirror->va)
			return false;
	return true;
}

/*
 * Takes the ranges intersecting [lo, hi) out of the range space, their
 * PTEs with them, in one page-table update.  0 or -ENOMEM (nothing
 * changed).
 */
static int ranges_drop(struct gvm_vm *vm, uint64_t lo, uint64_t hi)
{
	struct gvm_vm_update upd;
	struct gvm_va_ops l;
	size_t i;
	int err;

	err = gvm__svm_unmap_ops(vm, lo, hi, &l);
	if (err || !l.nr)
		return err;
	gvm__vm_update_init(&upd, vm);
	for (i = 0; !err && i < l.nr; i++) {
		struct gvm_va *va = l.op[i].old;

		err = gvm__vm_update_add(&upd, va->addr, va->addr + va->range,
					 NULL);
		if (!err)
			err = gvm__vm_update_retire(&upd, to_vma(va));
	}
	if (!err)
		err = gvm__vm_update_run(&upd, GVM_UPDATE_STALE_ZAP);
	gvm__vm_update_fini(&upd);
	if (!err) {
		gvm__va_ops_apply(&l);
		for (i = 0; i < l.nr; i++)	/* their notifiers: no lock */
			gvm__vma_free_deferred(vm, to_vma(l.op[i].old));
		gvm__vm_stat_add(vm, svm_ranges_dropped, l.nr);
	}
	gvm__va_ops_fini(&l);
	return err;
}

static int range_drop(struct gvm_vm *vm, struct gvm_vma *r)
{
	return ranges_drop(vm, r->va.addr, r->va.addr + r->va.range);
}

int gvm__svm_attrs_changed(struct gvm_vm *vm, uint64_t lo, uint64_t hi)
{
	gvm_lockdep_assert_held(&vm->lock);
	return ranges_drop(vm, lo, hi);
}

/*
 * Can @vm's device map @dev's memory (itself or linked, not unplugged)?
 * The device itself, the common case, takes no process-wide link lock.
 */
static bool reachable(struct gvm_vm *vm, struct gvm_device *dev)
{
	return dev && !gvm__device_unplugged(dev) &&
	       (dev == vm->dev || gvm_device_linked(vm->dev, dev));
}

/*
 * May range @r's pages move to @to's memory at all: memory that may move
 * (gvm__userptr_no_migrate), a device with VRAM, an mm that can, and
 * migration not switched off.
 */
static bool may_move(struct gvm_vm *vm, struct gvm_vma *r,
		     const struct gvm_device *to)
{
	return !gvm__userptr_no_migrate(r) && to->desc.vram_size &&
	       gvm__mm_devmem_supported(vm->mm) &&
	       !gvm_load_relaxed(&gvm__svm_no_migration);
}

/*
 * Placement (docs/policy.md): the memory a fault wants range @r's pages
 * in, given its attributes, the access and @where they are now (a
 * device's memory, or NULL: system memory).  NULL: system memory.  The
 * attributes decide when they say something; the policy in force decides
 * the rest (policy.h).
 * A device the VM's device is not linked to, or an unplugged one, is never
 * chosen: it could not map the pages there.
 */
static struct gvm_device *placement(struct gvm_vm *vm, struct gvm_vma *r,
				    uint32_t access, struct gvm_device *where)
{
	struct gvm_device *reach = reachable(vm, where) ? where : NULL;
	struct gvm_device *own = reachable(vm, vm->dev) ? vm->dev : NULL;
	struct gvm_mem_attrs at;
	bool pref;

	gvm__attrs_get(vm, r->va.addr, &at);
	pref = at.preferred_loc == GVM_LOC_DEVICE && reachable(vm, at.dev);
	/* Atomics under the DEVICE policy need device memory. */
	if (access == GVM_ACCESS_ATOMIC && at.atomic == GVM_ATOMIC_DEVICE)
		return reach ? reach : pref ? at.dev : own;
	switch (at.preferred_loc) {
	case GVM_LOC_SYSTEM:
		return NULL;
	case GVM_LOC_DEVICE:
		return pref ? at.dev : NULL;
	default:
		return gvm__svm_policy_ops()->place(own, reach);
	}
}

/*
 * Puts range @r's pages where placement() says, if they may move: only
 * private anonymous memory that is not the library's own moves to device
 * memory (gvm__userptr_no_migrate), and only to a device with memory, on
 * an mm that supports it.  Pages whole in a linked device's memory move
 * from there directly, over the link (migrate.c, mm/devmem.c
 * gvm__mm_devmem_move); pages elsewhere in device memory, or whose direct
 * move failed (its data is then still where it was), come back through
 * system memory first (a range never mixes the two); a range the
 * thrashing policy pins stays where it is (policy.h).  A failed migration
 * is retried once, then the range stays in system memory for good, its
 * data intact (nothing moved); no VRAM even after eviction (-ENOSPC) is
 * no failure of the range: this fault is served in system memory, the
 * next may migrate; nor are pages another VM's fault placed meanwhile,
 * nor a shortage of memory or a fork under way (-ENOMEM, -EAGAIN).
 * Pages left in a device's memory its device cannot reach are brought
 * back by the fetch.
 */
static void range_place(struct gvm_vm *vm, struct gvm_vma *r, uint32_t access,
			bool near)
{
	uint64_t a = r->va.addr, len = r->va.range, off;
	struct gvm_device *where = NULL, *to;
	struct gvm_mm_devmem *dm;
	bool partial = false;
	int err, tries;

	if (!gvm__mm_devmem_supported(vm->mm))
		return;
	dm = gvm__mm_devmem_lookup(vm->mm, a, len, NULL, &off, &partial);
	if (dm)
		where = gvm__svm_devmem_device(dm);
	/* near (access counters): from a peer's memory into the VM's own */
	to = near ? vm->dev : placement(vm, r, access, where);
	if (dm && to == where)
		gvm__svm_devmem_touch(dm);	/* a use: the LRU */
	if (dm)
		gvm__mm_devmem_put(dm);
	if (to == where && !partial)
		return;
	if (!to) {
		gvm__mm_migrate_to_ram(vm->mm, a, len);	/* fetch: errors */
		return;
	}
	if (!may_move(vm, r, to) || !gvm__svm_policy_may_migrate(vm, a, len))
		return;
	if (gvm__svm_place_hook)
		gvm__svm_place_hook(vm, a, len);
	for (tries = 0; tries < 2; tries++) {
		if (tries)
			gvm__vm_stat_add(vm, svm_migration_retries, 1);
		/* From a peer's memory: directly over the link if there is
		   one (-EXDEV if not), else, or if that failed, through
		   system memory. */
		err = where && !partial ?
		      gvm__svm_migrate_to_vram(vm, to, a, len) : -EXDEV;
		if (err && err != -EEXIST && err != -ENOSPC) {
			err = where || partial ?
			      gvm__mm_migrate_to_ram(vm->mm, a, len) : 0;
			if (!err) {
				where = NULL;
				partial = false;
				err = gvm__svm_migrate_to_vram(vm, to, a,
							       len);
			}
		}
		/*
		 * Placed by someone else meanwhile: -EEXIST, or -EXDEV, in
		 * the memory of a device ours cannot reach (another VM's
		 * fault took them after the lookup).  No failure of the
		 * range, which may migrate next time: the fetch decides.
		 */
		if (!err || err == -EEXIST || err == -EXDEV)
			return;
		if (err == -ENOSPC) {
			gvm__vm_stat_add(vm, svm_capacity_fallbacks, 1);
			return;
		}
		/* Short of memory, a fork under way (frozen), or the
		   target device unplugged meanwhile: no failure of the range
		   either; this fault is served where it is. */
		if (err == -ENOMEM || err == -EAGAIN || err == -ENODEV)
			return;
	}
	gvm__userptr_set_no_migrate(r);
	gvm__vm_stat_add(vm, svm_migration_failures, 1);
}

/* Counts a serviced fault in range @r by its size. */
static void count_fault(struct gvm_vm *vm, const struct gvm_va *r)
{
	unsigned int i = r->range >= M2 ? 2 : r->range >= K64 ? 1 : 0;

	gvm__vm_stat_add(vm, svm_faults_by_size[i], 1);
	gvm_fetch_add_relaxed(&vm->dev->svm_faults, 1u);
}

/* Where range_bind() puts a range's pages before it binds them. */
enum place {
	PLACE_POLICY,		/* a fault: where placement says */
	PLACE_SYSTEM,		/* a PREFETCH to system memory */
	PLACE_KEEP,		/* a split: where they are */
	PLACE_NEAR,		/* access counters: from a linked peer's
				   memory into the VM's own device's */
};

static int range_bind(struct gvm_vm *vm, struct gvm_vma *r, enum place p,
		      uint32_t access)
{
	if (p == PLACE_POLICY || p == PLACE_NEAR)
		range_place(vm, r, access, p == PLACE_NEAR);
	else if (p == PLACE_SYSTEM &&
		 gvm__mm_migrate_to_ram(vm->mm, r->va.addr, r->va.range))
		return -EIO;		/* poisoned: not bound */
	return gvm__fault_bind_vma(vm, r);
}

/* Makes the range around @addr and binds it. */
static int range_create(struct gvm_vm *vm, struct gvm_vma *mirror,
			uint64_t addr, uint32_t access, enum place p,
			struct gvm_vma **out)
{
	static const uint64_t sizes[] = { M2, K64, K4 };
	struct gvm_mem_attrs at;
	struct gvm_mm_vma m;
	struct gvm_va_ops l;
	struct gvm_vma *r;
	uint64_t a = 0, size = 0;
	uint32_t flags = GVM_VA_KIND_USERPTR;
	unsigned int i;
	int err;

	gvm__attrs_get(vm, addr, &at);
	flags |= GVM_VA_PAT(at.pat);
	if (gvm__mm_lookup(vm->mm, addr, 0, &m) ||
	    !(m.prot & (PROT_READ | PROT_WRITE)))
		return -EFAULT;
	if (!(m.prot & PROT_WRITE)) {
		if (access != GVM_ACCESS_READ)
			return -EACCES;
		flags |= GVM_VA_READONLY;
	}
	/* The largest that fits, no larger than the granularity, inside
	   one attribute stretch. */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		a = addr & ~(sizes[i] - 1);
		if ((!at.granularity || sizes[i] <= at.granularity) &&
		    a >= m.start && a + sizes[i] <= m.end &&
		    block_free(vm, mirror, a, sizes[i]) &&
		    gvm__attrs_uniform(vm, a, sizes[i])) {
			size = sizes[i];
			break;
		}
	}
	if (!size)
		return -EFAULT;
	err = gvm__va_map_ops_create(&vm->svm, a, size, NULL, a, flags, &l);
	if (err)
		return err;
	gvm__va_ops_apply(&l);
	r = to_vma(l.op[0].map);
	gvm__va_ops_fini(&l);
	err = gvm__userptr_attach(vm, r, &at);
	if (!err) {
		/* Only private anonymous memory moves (the kernel's rule for
		   device-private pages); read-only memory is never written
		   by the GPU, so it stays too; and so does the library's own
		   memory (core/alloc.c says why). */
		if ((m.flags & (GVM_MM_VMA_SHARED | GVM_MM_VMA_FILE)) ||
		    (flags & GVM_VA_READONLY) || gvm__alloc_owns(a, size))
			gvm__userptr_set_no_migrate(r);
		err = range_bind(vm, r, p, access);
	}
	if (!err) {
		gvm__vm_stat_add(vm, svm_ranges_created, 1);
		*out = r;
		return 0;
	}
	/* Not bound: out of the space (one whole mapping: cannot fail,
	   va.h), freed later with no lock held. */
	GVM_BUG_ON(gvm__va_unmap_ops_create(&vm->svm, a, size, &l) != 0);
	gvm__va_ops_apply(&l);
	gvm__va_ops_fini(&l);
	gvm__vma_free_deferred(vm, r);
	return err;
}

/*
 * What the CPU still maps of [lo, hi), the span of a range dropped because
 * part of it was unmapped, is covered again at once by smaller ranges (the
 * largest that fit, as faults would make them), bound where the pages are
 * (device memory stays): a kernel using the rest faults only if it touched
 * it in the moment between the drop and the rebind.  Nothing is done if
 * the CPU maps none of it, or all of it (a new mapping replaced the
 * unmapped part: its own faults make its ranges and place them).  A range
 * that cannot be made is left to a fault.  True if it split (counted).
 */
static bool split(struct gvm_vm *vm, uint64_t lo, uint64_t hi)
{
	struct gvm_va *mv = gvm__va_find(&vm->va, lo);
	struct gvm_mm_vma m;
	uint64_t a, mapped = 0;
	struct gvm_vma *r;

	for (a = lo; a < hi && !gvm__mm_lookup(vm->mm, a, GVM_MM_LOOKUP_NEXT,
					       &m) && m.start < hi;
	     a = m.end)
		mapped += (m.end < hi ? m.end : hi) - (m.start > a ? m.start : a);
	if (!mapped || mapped == hi - lo || !mv ||
	    gvm__va_kind(mv) != GVM_VA_KIND_MIRROR)
		return false;
	gvm__vm_stat_add(vm, svm_ranges_split, 1);
	for (a = lo; a < hi;) {
		if (!range_create(vm, to_vma(mv), a, GVM_ACCESS_READ,
				  PLACE_KEEP, &r))
			a = r->va.addr + r->va.range;
		else if (!gvm__mm_lookup(vm->mm, a + K4, GVM_MM_LOOKUP_NEXT,
					 &m))
			a = m.start > a + K4 ? m.start : a + K4;
		else
			break;
	}
	return true;
}

/*
 * Garbage collection: the ranges whose CPU memory was unmapped, all or
 * part (the notifier queued them on vm->svm_gc), leave the range space
 * with their PTEs; what the CPU still maps of one is split off into new
 * ranges.  A range already gone from the space (the mirror was unbound)
 * is skipped.  A failure leaves the range for its own next fault, which
 * drops it too.  Runs at the start of every fault and in the device's
 * collector (gvm__svm_collect), so it happens without a fault too.
 * Traced as "svm_gc" when it dropped something.
 */
static void collect(struct gvm_vm *vm)
{
	int64_t t0 = gvm__trace_start_ns();
	uint64_t dropped = 0, splits = 0, bytes = 0;
	struct gvm_vma *r;

	gvm__attrs_reset_unmapped(vm);
	while ((r = gvm__userptr_gc_pop(vm))) {
		uint64_t lo = r->va.addr, hi = lo + r->va.range;

		if (gvm__va_find(&vm->svm, lo) == &r->va && !range_drop(vm, r)) {
			dropped++;
			bytes += hi - lo;
			splits += split(vm, lo, hi);
		}
	}
	gvm__trace_svm_gc(vm->dev, vm->dev->name, t0, dropped, splits, bytes);
}

void gvm__svm_collect(struct gvm_vm *vm)
{
	gvm_lockdep_assert_none_held();
	gvm__mutex_lock(&vm->lock);
	if (!vm->closed && vm->mm)
		collect(vm);
	gvm__mutex_unlock(&vm->lock);
	gvm__vm_reap(vm);	/* the dropped ranges, with no lock held */
}

/*
 * Makes and binds the ranges of the mirrors in [lo, hi), pages put as @p
 * says; ranges that exist are placed and bound again, or, with
 * @only_new, left as they are.
 */
static void prefetch(struct gvm_vm *vm, uint64_t lo, uint64_t hi,
		     enum place p, bool only_new)
{
	uint64_t a = lo;

	while (a < hi) {
		struct gvm_va *mv = gvm__va_find(&vm->va, a), *va;
		struct gvm_vma *r;
		struct gvm_mm_vma m;

		if (!mv || gvm__va_kind(mv) != GVM_VA_KIND_MIRROR) {
			a = mv ? mv->addr + mv->range : a + K4;
			continue;
		}
		va = gvm__va_find(&vm->svm, a);
		if (va) {
			if (!only_new)
				range_bind(vm, to_vma(va), p, GVM_ACCESS_READ);
			a = va->addr + va->range;
		} else if (!range_create(vm, to_vma(mv), a, GVM_ACCESS_READ, p,
					 &r)) {
			if (only_new)
				gvm__vm_stat_add(vm, svm_ranges_prefetched, 1);
			a = r->va.addr + r->va.range;
		} else if (!gvm__mm_lookup(vm->mm, a + K4, GVM_MM_LOOKUP_NEXT,
					   &m)) {
			/* not mapped (or not possible) here: go on after */
			a = m.start > a + K4 ? m.start : a + K4;
		} else {
			break;			/* nothing mapped above */
		}
	}
}

/* Can range @r get device memory for an atomic (the DEVICE policy)? */
static bool atomic_may_move(struct gvm_vm *vm, struct gvm_vma *r)
{
	return gvm__userptr_atomic_policy(r) == GVM_ATOMIC_DEVICE &&
	       may_move(vm, r, vm->dev);
}

int gvm__svm_fault(struct gvm_vm *vm, struct gvm_vma *mirror,
		   const struct gvm_fault_info *f, uint64_t *range_end)
{
	struct gvm_vma *r = NULL;
	uint64_t lo, hi;
	struct gvm_va *va;
	int err, tries;

	gvm_lockdep_assert_held(&vm->lock);
	if (!vm->mm)
		return -EFAULT;
	collect(vm);
	va = gvm__va_find(&vm->svm, f->addr);
	if (va && f->access != GVM_ACCESS_READ &&
	    (va->flags & GVM_VA_READONLY)) {
		/* Made while the CPU mapping was read-only: if it is
		   writable now (mprotect), a new range, else no write. */
		struct gvm_mm_vma m;

		if (gvm__mm_lookup(vm->mm, f->addr, 0, &m) ||
		    !(m.prot & PROT_WRITE))
			return -EACCES;
		err = range_drop(vm, to_vma(va));
		if (err)
			return err;
		va = NULL;
	}
	if (va) {
		r = to_vma(va);
		err = range_bind(vm, r, PLACE_POLICY, f->access);
		if (err == -EFAULT || err == -EPERM) {
			/* Its memory went away: a new range, if mapped
			   again.  Garbage no collection saw yet: traced
			   like one. */
			int64_t t0 = gvm__trace_start_ns();
			uint64_t size = va->range;

			err = range_drop(vm, r);
			if (!err)
				gvm__trace_svm_gc(vm->dev, vm->dev->name, t0,
						  1, 0, size);
			r = NULL;
		}
		if (err)
			return err;
	}
	if (!r) {
		err = range_create(vm, mirror, f->addr, f->access,
				   PLACE_POLICY, &r);
		if (err)
			return err;
	}
	/*
	 * An atomic the PTEs do not allow: under the CPU policy, or where
	 * the range cannot move to device memory, replaying it would fault
	 * forever, so it fails.  Under the DEVICE policy a device we cannot
	 * reach may have taken the pages between placement and fetch (its
	 * own atomic), or the thrashing policy pins the range to system
	 * memory: place again, a few times, then let the atomics happen
	 * where the pages are (the simulated GPU's system-memory atomics are
	 * coherent), until the range is in device memory again.  Progress
	 * is guaranteed: refaulting instead could exhaust the lane's
	 * replays under contention and fail the job.
	 */
	for (tries = 0; f->access == GVM_ACCESS_ATOMIC &&
			!gvm__userptr_atomic(r); tries++) {
		if (!atomic_may_move(vm, r))
			return -EACCES;
		if (tries == ATOMIC_RETRIES) {
			gvm__userptr_set_atomic_anywhere(r);
			gvm__vm_stat_add(vm, svm_atomic_fallbacks, 1);
		} else {
			gvm__vm_stat_add(vm, svm_migration_retries, 1);
		}
		err = range_bind(vm, r, PLACE_POLICY, f->access);
		if (err)
			return err;
	}
	count_fault(vm, &r->va);
	*range_end = r->va.addr + r->va.range;
	/* What the policy wants placed with it: best effort. */
	gvm__svm_policy_ops()->prefetch(vm, r->va.addr, r->va.range, &lo, &hi);
	prefetch(vm, lo, hi, PLACE_POLICY, true);
	return 0;
}

/*
 * Access counters (docs/policy.md): @vm's device reached the SVM ranges
 * of [a->addr, a->addr + a->size) in a linked peer's memory often.  Each
 * such range whose attributes leave placement to the policy, and that
 * the policy wants near (ops->accessed), moves into the device's memory
 * and is bound again, as a fault would place it.  Best effort: a range
 * that may not move, or finds no memory, stays where it is.
 */
void gvm__svm_accessed(struct gvm_vm *vm, const struct gvm_access_info *a)
{
	uint64_t addr = a->addr, end = a->addr + a->size;

	gvm_lockdep_assert_none_held();
	gvm__mutex_lock(&vm->lock);
	if (vm->closed || !vm->mm || !gvm__mm_devmem_supported(vm->mm))
		goto out;
	collect(vm);
	while (addr < end) {
		struct gvm_device *where = NULL;
		struct gvm_mm_devmem *dm;
		struct gvm_mem_attrs at;
		struct gvm_va_iter it;
		struct gvm_va *va;
		struct gvm_vma *r;
		bool partial;
		uint64_t off;

		/* The next range (a fresh descent: binding may change the
		   tree), not the next page: the region may be huge. */
		va = gvm__va_first(&vm->svm, addr, end - addr, &it);
		if (!va)
			break;
		r = to_vma(va);
		addr = va->addr + va->range;
		gvm__attrs_get(vm, va->addr, &at);
		if (at.preferred_loc != GVM_LOC_DEFAULT)
			continue;
		dm = gvm__mm_devmem_lookup(vm->mm, va->addr, va->range, NULL,
					   &off, &partial);
		/* Whether the device is reachable, while dm (which may hold
		   the last reference to it) is ours. */
		if (dm) {
			where = gvm__svm_devmem_device(dm);
			if (where && (where == vm->dev || !reachable(vm, where)))
				where = NULL;
			gvm__mm_devmem_put(dm);
		}
		if (!where || !reachable(vm, vm->dev) ||
		    !gvm__svm_policy_ops()->accessed(vm, va->addr, va->range))
			continue;
		if (range_bind(vm, r, PLACE_NEAR, GVM_ACCESS_READ))
			continue;
		dm = gvm__mm_devmem_lookup(vm->mm, va->addr, va->range,
					   vm->dev, &off, &partial);
		if (dm) {
			gvm_fetch_add_relaxed(&vm->dev->access_migrations, 1u);
			gvm__mm_devmem_put(dm);
		}
	}
out:
	gvm__mutex_unlock(&vm->lock);
	gvm__vm_reap(vm);
}

void gvm__svm_prefetch(struct gvm_vm *vm, uint64_t lo, uint64_t hi,
		       bool to_system)
{
	gvm_lockdep_assert_held(&vm->lock);
	if (!vm->mm)
		return;
	collect(vm);
	prefetch(vm, lo, hi, to_system ? PLACE_SYSTEM : PLACE_POLICY, false);
}
