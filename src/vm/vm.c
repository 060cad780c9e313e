// SPDX-License-Identifier: MIT
/*
 * VMs: creation, teardown, the fault log, statistics, VMAs' lifetime.
 *
 * A VM is a GPU VA space on one device: a VA tree of VMAs (va.c), the page
 * tables (pt.c) in the device's VRAM, a reservation object shared by its
 * VM-local BOs, the list of BOs it maps, and a default bind queue.  Binds
 * are in bind.c, exec in exec.c.
 *
 * Lifetime.  The user's reference, each VM-local BO and each user-created
 * queue hold a reference.  gvm_vm_destroy() tears the VM down (waits for
 * its work, unbinds everything, detaches from the device) and drops the
 * user's reference; the memory goes with the last reference (a VM-local BO
 * may outlive the VM's teardown: its reservation lives here).
 *
 * Locking (docs/locking.md): vm->lock (rank VM) is the outer lock of every
 * bind and exec; notifier_lock (rank NOTIFIER) is taken inside it around
 * page-table commits (and alone by invalidations, later); fault_lock is a
 * leaf.  Statistics are relaxed atomics.
 */
#include "vm/fault_queue.h"
#include "vm/lr.h"
#include "vm/vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/debug.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "core/trace.h"
#include "mm/mm.h"
#include "vm/bind_job.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/sync.h"
#include "vm/policy.h"
#include "vm/svm.h"
#include "vm/userptr.h"

/* Frees what gvm_vm_create() set up first (not the device reference). */
static void vm_free_struct(struct gvm_vm *vm)
{
	gvm_resv_fini(&vm->resv);
	gvm__mutex_fini(&vm->fault_lock);
	gvm__mutex_fini(&vm->dead_lock);
	gvm__mutex_fini(&vm->notifier_lock);
	gvm__mutex_fini(&vm->pt_lock);
	gvm__mutex_fini(&vm->lock);
	gvm__svm_policy_vm_fini(vm);
	gvm__ufence_writer_put_vm(vm);
	gvm__svm_back_put(vm->svm_back);
	gvm_mm_put(vm->mm);
	gvm__free(vm);
}

static void vm_free(struct gvm_vm *vm)
{
	struct gvm_device *dev = vm->dev;

	gvm__vm_reap(vm);	/* a bind job may drop the last reference */
	vm_free_struct(vm);
	gvm_device_put(dev);
}

struct gvm_vm *gvm__vm_get(struct gvm_vm *vm)
{
	gvm__ref_get(&vm->refcount);
	return vm;
}

void gvm__vm_put(struct gvm_vm *vm)
{
	if (gvm__ref_put(&vm->refcount))
		vm_free(vm);
}

void gvm__vm_ban(struct gvm_vm *vm, int err)
{
	if (!gvm_fetch_or_acq_rel(&vm->banned, 1u))
		fprintf(stderr, "gvm: VM %p banned: a bind failed after its "
			"point of no return (%d)\n", (void *)vm, err);
}

int gvm_vm_create(struct gvm_device *dev, struct gvm_mm *mm, uint32_t flags,
		  struct gvm_vm **out)
{
	struct gvm_pt_mem mem;
	struct gvm_vm *vm;
	int err;

	if (!dev || !out || (flags & ~GVM_VM_FLAGS_ALL))
		return -EINVAL;
	if ((flags & GVM_VM_FAULT_MODE) && !(flags & GVM_VM_LR_MODE))
		return -EINVAL;
	if ((flags & GVM_VM_FAULT_MODE) && (flags & GVM_VM_SCRATCH_PAGE))
		return -EINVAL;
	if (gvm__device_unplugged(dev))
		return -ENODEV;
	err = gvm__limit_vm_get();
	if (err)
		return err;
	vm = gvm__calloc(1, sizeof(*vm));
	if (!vm) {
		gvm__limit_vm_put();
		return -ENOMEM;
	}
	vm->dev = dev;
	vm->mm = mm ? gvm_mm_get(mm) : NULL;
	vm->flags = flags;
	gvm__ref_init(&vm->refcount);
	gvm__mutex_init(&vm->lock, "vm.lock", GVM_RANK_VM);
	gvm__mutex_init(&vm->pt_lock, "vm.pt_lock", GVM_RANK_PT);
	gvm__mutex_init(&vm->notifier_lock, "vm.notifier_lock",
			GVM_RANK_NOTIFIER);
	gvm__mutex_init(&vm->fault_lock, "vm.fault_lock", GVM_RANK_LEAF);
	gvm__mutex_init(&vm->dead_lock, "vm.dead_lock", GVM_RANK_LEAF);
	gvm_list_init(&vm->dead_vmas);
	gvm_resv_init(&vm->resv);
	gvm_list_init(&vm->vm_bos);
	gvm_list_init(&vm->userptr_invalidated);
	gvm_list_init(&vm->svm_gc);
	gvm_list_init(&vm->gc_link);
	gvm_list_init(&vm->svm_chunks);
	gvm__attrs_init(vm);
	gvm_list_init(&vm->lr_queues);
	gvm_list_init(&vm->lr_link);
	err = gvm__lr_vm_init(vm);
	if (err)
		goto err_free;
	if (mm) {
		vm->svm_back = gvm__svm_back_create();
		if (!vm->svm_back) {
			err = -ENOMEM;
			goto err_lr;
		}
	}
	err = gvm__va_space_init(&vm->va, 0, 1ull << dev->desc.va_bits,
				 sizeof(struct gvm_vma));
	if (err)
		goto err_lr;
	err = gvm__va_space_init(&vm->svm, 0, 1ull << dev->desc.va_bits,
				 sizeof(struct gvm_vma));
	if (err)
		goto err_va_main;
	mem.buddy = &dev->vram;
	mem.cpu_base = dev->desc.vram_cpu;
	mem.dev_base = dev->desc.vram_base;
	mem.lock = &dev->vram_lock;
	mem.make_room = gvm__vram_make_room;	/* evict.c: idle BOs */
	mem.freed = gvm__vram_pt_freed;		/* evict.c: wake waiters */
	mem.priv = dev;
	mem.max_pages = gvm__limit_pt_pages();
	err = gvm__pt_vm_init(&vm->pt, &mem, dev->desc.va_bits,
			      dev->desc.page_sizes);
	if (err)
		goto err_va;
	err = dev->ops->vm_attach(dev, vm, vm->pt.root->dev_addr,
				  vm->pt.levels,
				  flags & GVM_VM_SCRATCH_PAGE ? GVM_ATTACH_SCRATCH : 0,
				  &vm->dev_priv);
	if (err)
		goto err_pt;
	gvm_device_get(dev);
	err = gvm__queue_create(vm, GVM_ENGINE_BIND, true, &vm->bind_q);
	if (err)
		goto err_detach;
	/* The device's fault-servicing thread, at its first fault-mode VM;
	   it runs until the device goes (fault_queue.c). */
	if (flags & GVM_VM_FAULT_MODE) {
		err = gvm__fault_queue_start(dev);
		if (err)
			goto err_queue;
	}
	gvm__pt_reclaim_add(vm);	/* its tables may give way now */
	gvm__put_out(out, vm);
	return 0;

err_queue:
	gvm__queue_destroy(vm->bind_q, true);
err_detach:
	dev->ops->vm_detach(dev, vm->dev_priv);
	gvm_device_put(dev);
err_pt:
	gvm__pt_vm_fini(&vm->pt);
err_va:
	gvm__va_space_fini(&vm->svm, NULL, NULL);
err_va_main:
	gvm__va_space_fini(&vm->va, NULL, NULL);
err_lr:
	gvm__lr_vm_fini(vm);
err_free:
	vm_free_struct(vm);
	gvm__limit_vm_put();
	return err;
}

void gvm__vma_free(struct gvm_vma *vma, struct gvm_vm *vm)
{
	gvm__userptr_detach(vma);
	if (vma->bo_ref)
		gvm_bo_put(gvm__vma_bo(vma));
	gvm__ufence_put(vma->ufence);
	if (vma->bind_fence)
		gvm_fence_put(vma->bind_fence);
	if (vm)
		gvm__va_free(&vm->va, &vma->va);
	else
		gvm__free(vma);
}

void gvm__vma_free_deferred(struct gvm_vm *vm, struct gvm_vma *vma)
{
	if (!vma->userptr) {
		gvm__vma_free(vma, NULL);
		return;
	}
	gvm__mutex_lock(&vm->dead_lock);
	gvm_list_add_tail(&vma->vm_bo_link, &vm->dead_vmas);
	gvm_store_release(&vm->nr_dead, vm->nr_dead + 1);
	gvm__mutex_unlock(&vm->dead_lock);
}

void gvm__vm_reap(struct gvm_vm *vm)
{
	struct gvm_list dead, *pos, *tmp;

	gvm_lockdep_assert_none_held();
	gvm__dev_reap(vm->dev);		/* BOs eviction dropped under locks */
	if (!gvm_load_acquire(&vm->nr_dead))
		return;
	gvm_list_init(&dead);
	gvm__mutex_lock(&vm->dead_lock);
	gvm_list_splice_tail(&vm->dead_vmas, &dead);
	gvm_store_release(&vm->nr_dead, 0);
	gvm__mutex_unlock(&vm->dead_lock);
	gvm_list_for_each_safe(pos, tmp, &dead)
		gvm__vma_free(gvm_list_entry(pos, struct gvm_vma,
					     vm_bo_link), NULL);
}

/* Collects the VMAs left at teardown, to free once vm->lock is dropped. */
static void release_vma(struct gvm_va *va, void *arg)
{
	struct gvm_vma *vma = to_vma(va);

	/* Its handle goes with the VM: reuse the link. */
	gvm_list_add_tail(&vma->vm_bo_link, arg);
}

struct gvm_fence *gvm__vm_tlb_submit(struct gvm_vm *vm,
				     const struct gvm_pt_tlb *tlb)
{
	struct gvm_device *dev = vm->dev;
	struct gvm_fence *done = NULL;
	int err;

	if (!tlb->full && !tlb->size)
		return NULL;
	GVM_TRACE_TLB_INVAL(vm->dev, vm->dev->name, tlb->start, tlb->full ? 0 : tlb->size);
	gvm__vm_stat_add(vm, tlb_invals, 1);
	if (tlb->full)
		gvm__vm_stat_add(vm, tlb_full_flushes, 1);
	err = gvm__inject(GVM_INJECT_TLB_INVAL);
	if (!err)
		err = dev->ops->tlb_inval(dev, vm->dev_priv,
					  tlb->full ? 0 : tlb->start,
					  tlb->full ? 0 : tlb->size, &done);
	if (err) {
		/*
		 * Callers are past their point of no return: a transient
		 * failure (the backend's fence allocation) must not cost the
		 * VM.  Try once more, flushing everything.
		 */
		gvm__vm_stat_add(vm, tlb_full_flushes, 1);
		err = gvm__inject(GVM_INJECT_TLB_INVAL);
		if (!err)
			err = dev->ops->tlb_inval(dev, vm->dev_priv, 0, 0,
						  &done);
	}
	if (err) {
		/*
		 * The VM is stopped (its next binds and execs fail), but the
		 * caller frees what the engines may still reach once this
		 * returns (pages, tables, a BO's memory): no return without
		 * an invalidation.  Retried every millisecond until the
		 * backend takes it, or is gone (-ENODEV: no engine runs).
		 */
		gvm__vm_ban(vm, err);
		while (err && err != -ENODEV) {
			gvm__sleep_ns(1000000);
			err = gvm__inject(GVM_INJECT_TLB_INVAL);
			if (!err)
				err = dev->ops->tlb_inval(dev, vm->dev_priv, 0,
							  0, &done);
		}
		if (err)
			return NULL;
	}
	return done;
}

void gvm__vm_tlb_flush(struct gvm_vm *vm, const struct gvm_pt_tlb *tlb)
{
	struct gvm_fence *done = gvm__vm_tlb_submit(vm, tlb);

	if (done) {
		gvm_fence_wait(done, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(done);
	}
}

int gvm__vma_cmp_addr(const void *a, const void *b)
{
	const struct gvm_vma *x = *(struct gvm_vma *const *)a;
	const struct gvm_vma *y = *(struct gvm_vma *const *)b;

	return x->va.addr < y->va.addr ? -1 : x->va.addr > y->va.addr;
}

/*
 * The PAT index is GVM_PAT_MAX wide everywhere: in a VMA's flags (va.h),
 * in the page-table engine's flags (pt.h) and in the PTE format.
 */
_Static_assert((GVM_PT_FLAGS_ALL >> GVM_PT_PAT_SHIFT) == GVM_PAT_MAX,
	       "pt.h's PAT field holds 0..GVM_PAT_MAX");
_Static_assert((GVM_PTF_PAT_MASK >> GVM_PTF_PAT_SHIFT) == GVM_PAT_MAX,
	       "the PTE's PAT field holds 0..GVM_PAT_MAX");

unsigned int gvm__vma_pt_flags(const struct gvm_vma *vma)
{
	const struct gvm_va *va = &vma->va;
	unsigned int f = GVM_PT_PAT((va->flags & GVM_VA_PAT_MASK) >>
				    GVM_VA_PAT_SHIFT);

	if (!(va->flags & GVM_VA_READONLY))
		f |= GVM_PT_WRITE;
	switch (gvm__va_kind(va)) {
	case GVM_VA_KIND_NULL:
		return f | GVM_PT_NULL;
	case GVM_VA_KIND_BO:
		return f | GVM_PT_ATOMIC | gvm__bo_pt_flags(va->obj);
	case GVM_VA_KIND_USERPTR:
		return f | (gvm__userptr_atomic(vma) ? GVM_PT_ATOMIC : 0) |
		       (gvm__userptr_in_devmem(vma) ? GVM_PT_DEVMEM : 0);
	default:
		return f | GVM_PT_ATOMIC;
	}
}

int gvm_vm_destroy(struct gvm_vm *vm)
{
	struct gvm_device *dev;
	struct gvm_pt_tlb tlb = { .full = true };
	struct gvm_list *pos, *tmp, dead;
	struct gvm_va_iter it;
	struct gvm_va *va;

	if (!vm)
		return -EINVAL;
	dev = vm->dev;
	gvm_list_init(&dead);
	gvm__mutex_lock(&vm->lock);
	if (vm->closed || vm->nr_queues) {
		gvm__mutex_unlock(&vm->lock);
		return vm->closed ? -EINVAL : -EBUSY;
	}
	vm->closed = true;
	gvm__mutex_unlock(&vm->lock);
	/* No reclaimer touches its tables from now on (pt_reclaim.c). */
	gvm__pt_reclaim_del(vm);
	/* The device's collector leaves the VM alone from now on. */
	gvm__fault_queue_forget(vm);
	/* No user queue is left, so no preempt fence is pending. */
	gvm__lr_vm_fini(vm);

	/* Drains the default queue; user queues hold references. */
	gvm__queue_destroy(vm->bind_q, true);
	vm->bind_q = NULL;
	gvm_resv_wait(&vm->resv, GVM_RESV_USAGE_BOOKKEEP, false,
		      GVM_TIMEOUT_INFINITE);

	gvm__mutex_lock(&vm->lock);
	/* Moves find the VM through its handles: take them off the BOs. */
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_vm_bo *vb =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

		gvm_resv_lock(vb->bo->resv, NULL);
		gvm_list_del(&vb->bo_link);
		gvm_resv_unlock(vb->bo->resv);
	}
	gvm__mutex_lock(&vm->pt_lock);
	gvm__mutex_lock(&vm->notifier_lock);
	/* Invalidations must not zap tables that are going away. */
	gvm_va_for_each_in_range(va, &vm->va, vm->va.start, vm->va.range, &it)
		if (gvm__va_kind(va) == GVM_VA_KIND_USERPTR)
			gvm__userptr_commit(to_vma(va), false, 0, NULL);
	gvm_va_for_each_in_range(va, &vm->svm, vm->svm.start, vm->svm.range,
				 &it)
		gvm__userptr_commit(to_vma(va), false, 0, NULL);
	gvm__pt_vm_fini(&vm->pt);
	gvm__mutex_unlock(&vm->notifier_lock);
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__vm_tlb_flush(vm, &tlb);
	gvm__va_space_fini(&vm->va, release_vma, &dead);
	gvm__va_space_fini(&vm->svm, release_vma, &dead);
	gvm_list_for_each_safe(pos, tmp, &vm->vm_bos) {
		gvm_list_del(pos);
		gvm__free(gvm_list_entry(pos, struct gvm_vm_bo, vm_link));
	}
	gvm__range_fences_fini(vm);
	gvm__mutex_unlock(&vm->lock);
	gvm__vm_reap(vm);		/* the bind jobs are done */
	/* Userptr notifiers are removed with no lock held. */
	gvm_list_for_each_safe(pos, tmp, &dead)
		gvm__vma_free(gvm_list_entry(pos, struct gvm_vma,
					     vm_bo_link), NULL);
	gvm__userptr_chunks_fini(vm);	/* every range is gone */
	gvm__attrs_fini(vm);		/* no chunk notes unmaps any more */
	dev->ops->vm_detach(dev, vm->dev_priv);
	gvm__limit_vm_put();
	gvm__vm_put(vm);
	return 0;
}

void gvm__vm_fault_log(struct gvm_vm *vm, const struct gvm_fault_info *f)
{
	uint32_t slot;

	gvm__mutex_lock(&vm->fault_lock);
	slot = (vm->fault_head + vm->fault_count) % GVM_VM_FAULT_LOG;
	vm->faults[slot] = *f;
	if (vm->fault_count < GVM_VM_FAULT_LOG)
		vm->fault_count++;
	else
		vm->fault_head = (vm->fault_head + 1) % GVM_VM_FAULT_LOG;
	gvm__mutex_unlock(&vm->fault_lock);
}

int gvm_vm_query_faults(struct gvm_vm *vm, struct gvm_fault_info *buf,
			uint32_t cap, uint32_t *count)
{
	struct gvm_fault_info got[GVM_VM_FAULT_LOG];
	uint32_t n = 0;

	if (!vm || !count || (cap && !buf))
		return -EINVAL;
	/* Popped into the stack, copied out with fault_lock dropped: @buf is
	   application memory (docs/locking.md, "Touching application
	   memory"). */
	gvm__mutex_lock(&vm->fault_lock);
	while (n < cap && vm->fault_count) {
		got[n++] = vm->faults[vm->fault_head];
		vm->fault_head = (vm->fault_head + 1) % GVM_VM_FAULT_LOG;
		vm->fault_count--;
	}
	gvm__mutex_unlock(&vm->fault_lock);
	gvm__might_fault();
	if (n)
		memcpy(buf, got, n * sizeof(*got));
	*count = n;
	return 0;
}

int gvm_vm_stats(struct gvm_vm *vm, struct gvm_vm_stats *st)
{
	uint64_t pt_pages = 0, pte_writes[5] = { 0 };
	unsigned int i;

	if (!vm || !st)
		return -EINVAL;
	gvm__might_fault();
	memset(st, 0, sizeof(*st));
#define C(f) st->f = gvm_load_relaxed(&vm->stats.f)
	C(binds);
	C(bind_ops);
	C(bind_jobs);
	C(bind_errors);
	C(tlb_invals);
	C(tlb_full_flushes);
	C(faults);
	C(faults_serviced);
	C(fault_batches);
	C(faults_deduplicated);
	C(fault_batch_max);
	C(fault_retries);
	C(svm_migration_retries);
	C(svm_atomic_fallbacks);
	C(svm_p2p_binds);
	C(svm_d2d_migrations);
	C(svm_bytes_d2d);
	C(svm_ranges_created);
	C(svm_migrations);
	C(svm_migration_failures);
	C(svm_capacity_fallbacks);
	C(svm_evictions);
	C(svm_bytes_evicted);
	C(svm_thrash_pins);
	C(svm_ranges_prefetched);
	C(svm_ranges_dropped);
	C(svm_ranges_split);
	C(svm_faults_by_size[0]);
	C(svm_faults_by_size[1]);
	C(svm_faults_by_size[2]);
	C(execs);
	C(evictions);
	C(purges);
	C(bytes_purged);
	C(evict_waits);
	C(bytes_to_vram);
	C(bytes_to_system);
	C(userptr_invalidations);
	C(userptr_repins);
	C(preemptions);
	C(lr_rebinds);
	C(pt_reclaims);
	C(pt_bytes_reclaimed);
	C(pt_rebuilds);
	C(svm_bytes_to_vram);
#undef C
	if (vm->svm_back) {
		st->svm_to_system = gvm_load_relaxed(&vm->svm_back->to_system);
		st->svm_bytes_to_system =
			gvm_load_relaxed(&vm->svm_back->bytes_to_system);
		st->svm_cpu_faultbacks =
			gvm_load_relaxed(&vm->svm_back->cpu_faultbacks);
	}
	st->dev_pt_reclaims = gvm_load_relaxed(&vm->dev->pt_reclaims);
	st->dev_pt_bytes_reclaimed =
		gvm_load_relaxed(&vm->dev->pt_bytes_reclaimed);
	st->dev_svm_to_system = gvm_load_relaxed(&vm->dev->svm_to_ram);
	st->dev_svm_bytes_to_system =
		gvm_load_relaxed(&vm->dev->svm_bytes_to_ram);
	st->dev_purges = gvm_load_relaxed(&vm->dev->bos_purged);
	st->dev_bytes_purged = gvm_load_relaxed(&vm->dev->bytes_purged);
	st->dev_svm_evictions = gvm_load_relaxed(&vm->dev->svm_evictions);
	st->dev_svm_bytes_evicted =
		gvm_load_relaxed(&vm->dev->svm_bytes_evicted);
	gvm__mutex_lock(&vm->lock);
	st->vmas = gvm__va_count(&vm->va);
	st->local_bos = gvm_load_relaxed(&vm->nr_local_bos);
	if (!vm->closed) {
		/* read into locals: @st is application memory, not to be
		   touched under pt_lock (vm->lock is allowed) */
		gvm__mutex_lock(&vm->pt_lock);
		/* in use: not those unlinked, freed after their TLB flush */
		pt_pages = vm->pt.nr_tables - vm->pt.nr_deferred;
		for (i = 0; i < 5 && i < GVM_PTF_MAX_LEVELS; i++)
			pte_writes[i] = vm->pt.pte_writes[i];
		gvm__mutex_unlock(&vm->pt_lock);
	}
	gvm__might_fault();
	st->pt_pages = pt_pages;
	for (i = 0; i < 5; i++)
		st->pte_writes[i] = pte_writes[i];
	gvm__mutex_unlock(&vm->lock);
	st->banned = gvm__vm_banned(vm);
	return 0;
}
