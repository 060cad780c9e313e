// SPDX-License-Identifier: MIT
/*
 * A VM's BOs: the handle (struct gvm_vm_bo) that links a BO to each VM
 * mapping it, with the VMAs on it; and what exec and the rebind worker do
 * with a VM's BOs before a kernel may run: lock every reservation (ww
 * back-off through a lock set), move BOs back where they belong, rebind the
 * VMAs a move zapped (through the page-table update pipeline, pt_update.c),
 * mark the BOs used.
 *
 * Locking: a handle is on vm->vm_bos (vm->lock) and bo->vm_bos (the BO's
 * reservation); its VMA list is written with both held.  Rebinds take
 * pt_lock (and notifier_lock inside) through the pipeline.
 */
#include "vm/vm_bo.h"

#include <errno.h>

#include <gvm/lockset.h>

#include "core/alloc.h"
#include "core/lockrank.h"
#include "core/sort.h"
#include "vm/bo.h"
#include "vm/pt_update.h"
#include "vm/vm.h"

struct gvm_vm_bo *gvm__vm_bo_find(struct gvm_vm *vm, struct gvm_bo *bo)
{
	struct gvm_list *pos;

	gvm_list_for_each(pos, &bo->vm_bos) {
		struct gvm_vm_bo *vb =
			gvm_list_entry(pos, struct gvm_vm_bo, bo_link);

		if (vb->vm == vm)
			return vb;
	}
	return NULL;
}

void gvm__vm_bo_link(struct gvm_vm *vm, struct gvm_vma *vma,
		     struct gvm_vm_bo **spare)
{
	struct gvm_bo *bo = gvm__vma_bo(vma);
	struct gvm_vm_bo *vb = gvm__vm_bo_find(vm, bo);

	gvm_lockdep_assert_held(&vm->lock);
	if (!vb) {
		vb = *spare;
		*spare = NULL;
		vb->vm = vm;
		vb->bo = bo;
		gvm_list_init(&vb->vmas);
		gvm_list_add_tail(&vb->bo_link, &bo->vm_bos);
		gvm_list_add_tail(&vb->vm_link, &vm->vm_bos);
	}
	vma->vm_bo = vb;
	gvm_list_add_tail(&vma->vm_bo_link, &vb->vmas);
	vma->bo_ref = true;
	gvm_bo_get(bo);
}

void gvm__vm_bo_unlink(struct gvm_vma *vma)
{
	struct gvm_vm_bo *vb = vma->vm_bo;

	if (!vb)
		return;
	gvm_list_del(&vma->vm_bo_link);
	vma->vm_bo = NULL;
	if (!gvm_list_empty(&vb->vmas))
		return;
	gvm_list_del(&vb->bo_link);
	gvm_list_del(&vb->vm_link);
	gvm__free(vb);
}

int gvm__vm_bo_rebind(struct gvm_vm *vm, struct gvm_vm_bo *vb)
{
	struct gvm_vm_update upd;
	struct gvm_vma **v = NULL;
	size_t nr = 0, cap = 0, i;
	struct gvm_list *pos;
	int err = 0;

	gvm_lockdep_assert_held(&vm->lock);
	gvm_list_for_each(pos, &vb->vmas) {
		struct gvm_vma *vma =
			gvm_list_entry(pos, struct gvm_vma, vm_bo_link);

		/* Not written yet: its bind job writes it (issue 10, #6). */
		if (vma->bind_fence && !gvm_fence_is_signaled(vma->bind_fence))
			continue;
		err = GVM_GROW(v, cap, nr + 1);
		if (err)
			goto out;
		v[nr++] = vma;
	}
	if (nr)
		gvm__sort(v, nr, sizeof(*v), gvm__vma_cmp_addr);
	gvm__vm_update_init(&upd, vm);
	for (i = 0; i < nr && !err; i++)
		err = gvm__vm_update_add(&upd, v[i]->va.addr,
					 v[i]->va.addr + v[i]->va.range, v[i]);
	if (!err)
		err = gvm__vm_update_run(&upd, GVM_UPDATE_STALE_ZAP);
	gvm__vm_update_fini(&upd);
	if (!err)
		vb->evicted = false;
out:
	gvm__free(v);
	return err;
}

int gvm__vm_lock_all(struct gvm_lockset *ls, struct gvm_vm *vm,
		     unsigned int nr_fences)
{
	struct gvm_list *pos;
	int err = 0;

	gvm_lockdep_assert_held(&vm->lock);
	gvm_lockset_until_all_locked(ls) {
		err = gvm_lockset_prepare(ls, &vm->resv, nr_fences);
		gvm_lockset_retry_on_contention(ls);
		if (err)
			return err;
		gvm_list_for_each(pos, &vm->vm_bos) {
			struct gvm_vm_bo *vb =
				gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

			if (vb->bo->resv == &vm->resv)
				continue;
			err = gvm_lockset_prepare(ls, vb->bo->resv,
						  nr_fences);
			if (err)
				break;
		}
		gvm_lockset_retry_on_contention(ls);
		if (err)
			return err;
	}
	return 0;
}

/*
 * A purged BO still DONTNEED holds zeros its owner said it does not need:
 * revalidation leaves it in system memory (copying it back would evict
 * others for nothing).  Under the BO's reservation.
 */
static bool purged_dontneed(const struct gvm_bo *bo)
{
	return bo->purged && bo->madv == GVM_BO_DONTNEED;
}

uint64_t gvm__vm_vram_only_bytes(struct gvm_vm *vm, bool missing)
{
	struct gvm_list *pos;
	uint64_t bytes = 0;

	gvm_lockdep_assert_held(&vm->lock);
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_bo *bo =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link)->bo;

		if (bo->placement != GVM_MEM_VRAM ||
		    (missing && (bo->mem.region == GVM_MEM_VRAM ||
				 purged_dontneed(bo))))
			continue;
		bytes += bo->size;
	}
	return bytes;
}

/*
 * Brings the VM's BOs back where they belong (VRAM if preferred: a
 * VRAM-only BO must get there, -ENOSPC otherwise; one that may also live
 * in system memory stays there when VRAM is short; a purged BO still
 * DONTNEED stays in system memory, zeros; on an unplugged device every
 * BO stays in system memory, VRAM-only ones too), rebinds the mappings
 * moves zapped (all of them if its page tables were reclaimed,
 * pt_reclaim.c), and marks the BOs in VRAM as recently used.  Everything
 * locked by the caller; only idle BOs of others are evicted.
 */
int gvm__vm_revalidate(struct gvm_vm *vm)
{
	struct gvm_list *pos;
	int err = 0;

	gvm_lockdep_assert_held(&vm->lock);
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_bo *bo =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link)->bo;

		if (bo->mem.region != GVM_MEM_SYSTEM ||
		    !(bo->placement & GVM_MEM_VRAM) || purged_dontneed(bo))
			continue;
		err = gvm__bo_move(bo, GVM_MEM_VRAM, GVM_EVICT_IDLE);
		/*
		 * Busy (a pending bind, a kernel): it runs from system
		 * memory this time.  Short of VRAM: fine if allowed.
		 * Unplugged (-ENODEV): the device has no VRAM to give any
		 * more, and the unplug moved the BO out so that the work
		 * already running ends normally (docs/multidevice.md), so
		 * it stays in system memory whatever its placement: exec
		 * takes no new work on the device, and failing here would
		 * make the LR rebind worker ban the VM and fault its
		 * kernels.
		 */
		if (err == -EBUSY || err == -ENODEV ||
		    (err == -ENOSPC && (bo->placement & GVM_MEM_SYSTEM)))
			err = 0;
		if (err)
			return err;
	}
	/* Its tables were reclaimed: every mapping at once, moved BOs' too. */
	if (vm->pt_reclaimed) {
		err = gvm__pt_rebuild(vm);
		if (err)
			return err;
		gvm_list_for_each(pos, &vm->vm_bos)
			gvm_list_entry(pos, struct gvm_vm_bo,
				       vm_link)->evicted = false;
	}
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_vm_bo *vb =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link);

		if (vb->evicted) {
			err = gvm__vm_bo_rebind(vm, vb);
			if (err)
				return err;
		}
		if (vb->bo->mem.region == GVM_MEM_VRAM)
			gvm__bo_lru_update(vb->bo);
	}
	return 0;
}

