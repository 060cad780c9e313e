// SPDX-License-Identifier: MIT
/*
 * Page-table reclaim: when VRAM is needed (a BO created or moved in, a page
 * table of another VM) and no idle BO is left to evict, the page tables of
 * an idle VM are cleared, all but the root, and rebuilt when the VM is used
 * again (issue 11, item 3: one VM mapping lots of sparse memory no longer
 * keeps its tables in VRAM while others starve).
 *
 * Reclaim (gvm__pt_reclaim(), called by evict.c once eviction found no
 * victim).  Candidates are the device's VMs (dev->pt_vms), the ones holding
 * the most table pages first.  A VM is reclaimed only if
 *   - its reservation can be trylocked (so no bind or exec of it is between
 *     locking and publishing: they hold it from revalidation to submission),
 *   - it is idle: no exec in flight (vm->execs_inflight, counted from exec's
 *     publication to its fence's signal, so a kernel of an LR or fault-mode
 *     VM, whose fences are in no reservation, counts too) and no fence in
 *     its reservation unsignalled but LR preempt fences (pending bind jobs
 *     are there at KERNEL, execs at BOOKKEEP; a preempt fence of a queue
 *     with nothing running stands for no work),
 *   - its pt_lock can be trylocked (no page-table update of it under way:
 *     a userptr revalidation, an SVM collection, a fault bind).
 * Trylocks only, never against the lock order: the caller may hold another
 * VM's vm->lock, reservations and pt_lock (a table allocation under it).
 * The tables are cleared through the update pipeline (pt_update.c) as one
 * UNBIND segment over the whole VA space: prepare, commit in the
 * notifier_lock section (so invalidations and moves, which zap under
 * notifier_lock only, see either the old tables or none), the TLB
 * invalidation through the device contract, waited for with pt_lock still
 * held (a TLB fence depends on no lock; dropping pt_lock and taking it back
 * to free would be a blocking pt_lock under the caller's), then the freed
 * tables.  Nothing of the VA state changes.
 *
 * Rebuild.  A VM not in fault mode is marked (vm->pt_reclaimed, under its
 * reservation): its next revalidation (gvm__vm_revalidate(): exec, the LR
 * rebind worker), with every reservation of the VM held, rebuilds every
 * mapping in one pipeline update (gvm__pt_rebuild()), like the rebind of
 * BOs a move zapped; a mapping whose queued bind has not run is left to
 * its job.  A userptr whose pages went stale meanwhile is zapped by that
 * commit and goes on the invalidated list (STALE_ZAP), so exec's last
 * check repins it.  In fault mode nothing is marked: the next GPU fault on
 * a mapping rebinds it (fault.c binds the whole VMA; an SVM range is bound
 * again by its fault, svm.c).  A rebuild that fails (-ENOMEM, -ENOSPC)
 * changes nothing and leaves the mark: the exec fails or waits for VRAM
 * as for a BO it cannot move, and the VM stays usable.
 *
 *   reclaimer (VRAM for VM B)            VM A
 *   ------------------------------       ------------------------------
 *   trylock A.resv, idle?, trylock       (exec: takes A.resv; blocks or
 *     A.pt_lock                           backs off until released)
 *   clear [0, 2^va_bits), commit under
 *     A.notifier_lock, TLB, free
 *   A.pt_reclaimed = true; unlock
 *                                        exec: lock A.resv, revalidate:
 *                                          pt_reclaimed: rebuild, clear
 *                                        publish under notifier_lock
 *
 * A bind of A that holds A's reservation makes the trylock fail (A is
 * skipped); one that comes after waits for the reservation (ww back-off
 * if it holds others) and then finds cleared tables: it writes its own
 * segments, and the mark makes the next exec rebuild the rest.
 *
 * Lifetime.  A VM is on dev->pt_vms from the end of gvm_vm_create() to the
 * start of gvm_vm_destroy().  A reclaimer picks candidates under vram_lock
 * and marks them pt_reclaiming (no reference is taken: dropping a VM's last
 * one needs no lock held); destroy unlists the VM and waits, holding no
 * lock, until no reclaimer is at it (claims_cond).
 *
 * Locking: dev->vram_lock (leaf) protects dev->pt_vms and each VM's
 * pt_link, pt_listed and pt_reclaiming.  vm->pt_reclaimed is protected by
 * the VM's reservation.  The reclaimer takes, in this order: the victim's
 * reservation (trylock), its pt_lock (trylock), its notifier_lock (the
 * commit section); it holds no vram_lock meanwhile.
 *
 * Spares first (gvm__pt_spares_reclaim()): the spare tables a VM keeps for
 * its queued binds' reserves (pt.c SPARES) that no reserve counts on go
 * back to VRAM before an idle BO is evicted or a VM's tables cleared.
 * Under vram_lock (every VM's mem.lock), for each VM on dev->pt_vms; the
 * shadows are freed after it is dropped.
 *
 * Not done: a busy VM (a kernel running, even a long-running one) is never
 * reclaimed, and tables are reclaimed whole, not the least recently used
 * part of a VM's.
 */
#include <errno.h>

#include <gvm/fence.h>

#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "vm/dev.h"
#include "vm/lr.h"
#include "vm/pt_update.h"
#include "vm/vm.h"

void (*gvm__pt_reclaim_hook)(struct gvm_vm *vm);

/* VMs a reclaim tries, most table pages first. */
#define RECLAIM_WINDOW 8

void gvm__pt_reclaim_add(struct gvm_vm *vm)
{
	struct gvm_device *dev = vm->dev;

	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_add_tail(&vm->pt_link, &dev->pt_vms);
	vm->pt_listed = true;
	gvm__mutex_unlock(&dev->vram_lock);
}

void gvm__pt_reclaim_del(struct gvm_vm *vm)
{
	struct gvm_device *dev = vm->dev;

	gvm_lockdep_assert_none_held();
	gvm__mutex_lock(&dev->vram_lock);
	if (vm->pt_listed)
		gvm_list_del(&vm->pt_link);
	vm->pt_listed = false;
	while (vm->pt_reclaiming)
		gvm__cond_wait(&dev->claims_cond, &dev->vram_lock);
	gvm__mutex_unlock(&dev->vram_lock);
}

/*
 * Whether @vm runs nothing: no exec in flight, no unsignalled fence in its
 * reservation (held) but preempt fences of LR queues.
 */
static bool idle(struct gvm_vm *vm)
{
	struct gvm_fence **f;
	unsigned int n, i;
	bool ok = true;

	if (gvm_load_acquire(&vm->execs_inflight))
		return false;
	if (gvm_resv_test_signaled(&vm->resv, GVM_RESV_USAGE_BOOKKEEP))
		return true;
	if (!gvm__vm_preempt_mode(vm) ||
	    gvm_resv_get_fences(&vm->resv, GVM_RESV_USAGE_BOOKKEEP, &f, &n))
		return false;
	for (i = 0; i < n; i++)
		ok &= gvm_fence_is_signaled(f[i]) ||
		      gvm__lr_is_preempt_fence(f[i]);
	gvm_resv_put_fences(f, n);
	return ok && !gvm_load_acquire(&vm->execs_inflight);
}

/* Clears @vm's tables if it is idle: the table pages freed (0: none). */
static uint64_t reclaim_vm(struct gvm_vm *vm)
{
	struct gvm_device *dev = vm->dev;
	struct gvm_vm_update u;
	struct gvm_fence *tlb;
	uint64_t freed = 0;
	int err;

	if (!gvm_resv_trylock(&vm->resv))
		return 0;
	if (!idle(vm) || !gvm__mutex_trylock(&vm->pt_lock)) {
		gvm_resv_unlock(&vm->resv);
		return 0;
	}
	if (gvm__pt_reclaim_hook)
		gvm__pt_reclaim_hook(vm);
	gvm__vm_update_init(&u, vm);
	/* One inline segment: cannot fail. */
	err = gvm__vm_update_add(&u, 0, 1ull << vm->pt.va_bits, NULL);
	if (!err)
		err = gvm__vm_update_prepare(&u);
	if (!err)
		err = gvm__vm_update_commit(&u, GVM_UPDATE_STALE_ZAP);
	if (!err) {
		tlb = gvm__vm_update_tlb_submit(&u);
		if (tlb) {
			gvm_fence_wait(tlb, GVM_TIMEOUT_INFINITE);
			gvm_fence_put(tlb);
		}
		freed = u.dead.nr;
		gvm__vm_update_free_tables(&u, true);
		if (!(vm->flags & GVM_VM_FAULT_MODE))
			vm->pt_reclaimed = true;
		gvm__vm_stat_add(vm, pt_reclaims, 1);
		gvm__vm_stat_add(vm, pt_bytes_reclaimed,
				 freed * GVM_PAGE_SIZE);
		gvm_fetch_add_relaxed(&dev->pt_reclaims, 1);
		gvm_fetch_add_relaxed(&dev->pt_bytes_reclaimed,
				      freed * GVM_PAGE_SIZE);
	}
	gvm__vm_update_fini(&u);
	gvm__mutex_unlock(&vm->pt_lock);
	gvm_resv_unlock(&vm->resv);
	return freed;
}

int gvm__pt_spares_reclaim(struct gvm_device *dev)
{
	struct gvm_pt *shadows = NULL;
	struct gvm_list *pos;
	uint64_t n = 0;

	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_for_each(pos, &dev->pt_vms) {
		struct gvm_vm *vm = gvm_list_entry(pos, struct gvm_vm,
						   pt_link);

		/* The VM's mem.lock is vram_lock: held. */
		n += gvm__pt_spares_drop_locked(&vm->pt, &shadows);
	}
	gvm__mutex_unlock(&dev->vram_lock);
	gvm__pt_spares_free_shadows(shadows);
	return n ? 0 : -ENOSPC;
}

int gvm__pt_reclaim(struct gvm_device *dev)
{
	struct gvm_vm *cand[RECLAIM_WINDOW];
	uint64_t pages[RECLAIM_WINDOW], freed = 0;
	unsigned int nr = 0, i, j;
	struct gvm_list *pos;

	gvm__signalling_no_alloc();
	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_for_each(pos, &dev->pt_vms) {
		struct gvm_vm *vm = gvm_list_entry(pos, struct gvm_vm,
						   pt_link);
		uint64_t p = gvm_load_relaxed(&vm->pt.nr_pages);

		/* The root only, busy, or another reclaimer's. */
		if (p <= 1 || vm->pt_reclaiming ||
		    gvm_load_relaxed(&vm->execs_inflight))
			continue;
		/* Keep the RECLAIM_WINDOW with the most pages, sorted. */
		if (nr == RECLAIM_WINDOW && p <= pages[nr - 1])
			continue;
		if (nr < RECLAIM_WINDOW)
			nr++;
		for (j = nr - 1; j && pages[j - 1] < p; j--) {
			cand[j] = cand[j - 1];
			pages[j] = pages[j - 1];
		}
		cand[j] = vm;
		pages[j] = p;
	}
	for (i = 0; i < nr; i++)
		cand[i]->pt_reclaiming = true;
	gvm__mutex_unlock(&dev->vram_lock);

	for (i = 0; i < nr && !freed; i++)
		freed = reclaim_vm(cand[i]);

	if (nr) {
		gvm__mutex_lock(&dev->vram_lock);
		for (i = 0; i < nr; i++)
			cand[i]->pt_reclaiming = false;
		pthread_cond_broadcast(&dev->claims_cond);
		gvm__mutex_unlock(&dev->vram_lock);
	}
	return freed ? 0 : -ENOSPC;
}

int gvm__pt_rebuild(struct gvm_vm *vm)
{
	struct gvm_vm_update u;
	struct gvm_va_iter it;
	struct gvm_va *va;
	int err = 0;

	gvm_lockdep_assert_held(&vm->lock);
	gvm_assert(vm->pt_reclaimed);
	gvm__vm_update_init(&u, vm);
	gvm_va_for_each_in_range(va, &vm->va, vm->va.start, vm->va.range,
				 &it) {
		struct gvm_vma *vma = to_vma(va);

		/* No PTEs of its own (SVM), or never bound (fault mode). */
		if (gvm__va_kind(va) == GVM_VA_KIND_MIRROR ||
		    vma->fault_pending)
			continue;
		/* Not written yet: its bind job writes it (as vm_bo.c). */
		if (vma->bind_fence && !gvm_fence_is_signaled(vma->bind_fence))
			continue;
		err = gvm__vm_update_add(&u, va->addr, va->addr + va->range,
					 vma);
		if (err)
			break;
	}
	if (!err)
		err = gvm__vm_update_run(&u, GVM_UPDATE_STALE_ZAP);
	gvm__vm_update_fini(&u);
	if (err)
		return err;
	vm->pt_reclaimed = false;
	gvm__vm_stat_add(vm, pt_rebuilds, 1);
	return 0;
}
