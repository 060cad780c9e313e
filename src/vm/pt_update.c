// SPDX-License-Identifier: MIT
/*
 * The page-table update pipeline: builds the segments of a VM's final VA
 * state, stages them in the page-table engine (pt.c), commits them with the
 * userptr sequence recheck, invalidates the TLB and frees what the commit
 * unlinked.  Every writer of a VM's page tables goes through it (the role
 * xe_pt.c plays next to the generic engine): inline binds and bind jobs
 * (bind.c, bind_job.c), exec's rebind of moved BOs (vm_bo.c), userptr
 * revalidation (userptr.c), fault binds and SVM ranges (fault.c, svm.c).
 * Zaps (invalidations, moves) are the only other writers; they only
 * invalidate leaves, under notifier_lock.
 *
 * The commit section.  Under notifier_lock, in this order:
 *   1. recheck: for every userptr whose PTEs the update writes, has its
 *      notifier sequence moved since its pages were fetched?  RETRY: abort,
 *      -EAGAIN.  ZAP: go on;
 *   2. transitions (userptr.c): written userptrs become live (an
 *      invalidation from now on zaps them), retired ones stop being live;
 *      a stale one (ZAP) has its staged leaves zapped in the prepared
 *      update (gvm__pt_update_zap) and its committed ones zapped, and goes
 *      on the invalidated list;
 *   3. commit the staged update (pt.c: never fails, never allocates).
 * Doing all three in one section is what makes an invalidation either see
 * the userptr live (and zap what the commit wrote) or move the sequence
 * before the section (and the recheck sees it).  Two sections leave a
 * window where neither happens (issue 10, defect 1).  Zapping before the
 * commit, in the staged update, is what keeps a stale userptr's PTEs from
 * ever being valid: the device walks the tables without any lock, so a
 * PTE published and zapped a moment later in the same section could be
 * loaded into a TLB in between and used after the invalidation that
 * retired its page returned (it found the userptr not live and waited
 * for nothing; issue 15, test_model_mm.stale_userptr_*).
 *
 * Locking: vm->pt_lock (rank PT) around prepare and commit, and around
 * freeing tables; notifier_lock (rank NOTIFIER) taken inside commit.  The
 * TLB invalidation is submitted and waited for with no lock of this file
 * held: TLB fences depend on no bind job, so a caller may hold vm->lock
 * across the wait (docs/locking.md).
 */
#include "vm/pt_update.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/fence.h>

#include "core/alloc.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "vm/bo.h"
#include "vm/userptr.h"
#include "vm/vm.h"

void (*gvm__vm_update_hook)(struct gvm_vm *vm, enum gvm_vm_update_point point);

void gvm__vm_update_init(struct gvm_vm_update *u, struct gvm_vm *vm)
{
	memset(u, 0, sizeof(*u));
	u->vm = vm;
	u->segs = u->segs_inl;
	u->cap_segs = GVM_ARRAY_SIZE(u->segs_inl);
	u->ext = u->ext_inl;
	u->cap_ext = GVM_ARRAY_SIZE(u->ext_inl);
}

void gvm__vm_update_move(struct gvm_vm_update *dst, struct gvm_vm_update *src)
{
	*dst = *src;
	if (src->segs == src->segs_inl)
		dst->segs = dst->segs_inl;
	if (src->ext == src->ext_inl)
		dst->ext = dst->ext_inl;
	gvm__vm_update_init(src, src->vm);
}

/* @vma's extents were just copied: the sequence they were fetched at. */
static int add_live(struct gvm_vm_update *u, struct gvm_vma *vma)
{
	int err;

	/* A VMA's segments are consecutive: one entry is enough. */
	if (u->nr_live && u->live[u->nr_live - 1].vma == vma)
		return 0;
	err = GVM_GROW(u->live, u->cap_live, u->nr_live + 1);
	if (!err)
		u->live[u->nr_live++] = (struct gvm_vm_update_live){
			.vma = vma, .seq = gvm__userptr_seq(vma) };
	return err;
}

int gvm__vm_update_add(struct gvm_vm_update *u, uint64_t lo, uint64_t hi,
		       struct gvm_vma *vma)
{
	size_t first = u->nr_ext;
	struct gvm_pt_seg *s;
	int err;

	gvm_assert(lo < hi && (!u->nr_segs || u->segs[u->nr_segs - 1].end <= lo));
	err = GVM_GROW_INL(u->segs, u->cap_segs, u->nr_segs + 1, u->segs_inl);
	if (err)
		return err;
	s = &u->segs[u->nr_segs];
	s->va = lo;
	s->end = hi;
	s->ext = NULL;
	s->n = 0;
	if (!vma || (gvm__va_kind(&vma->va) == GVM_VA_KIND_USERPTR &&
		     gvm__userptr_gone(vma))) {
		s->flags = GVM_PT_UNBIND;
		u->nr_segs++;
		return 0;
	}
	s->flags = gvm__vma_pt_flags(vma);
	switch (gvm__va_kind(&vma->va)) {
	case GVM_VA_KIND_BO:
		err = gvm__bo_extents(vma->va.obj,
				      vma->va.obj_offset + (lo - vma->va.addr),
				      hi - lo, u->ext_inl, &u->ext, &u->nr_ext,
				      &u->cap_ext);
		break;
	case GVM_VA_KIND_USERPTR:
		err = gvm__userptr_extents(vma, lo - vma->va.addr, hi - lo,
					   u->ext_inl, &u->ext, &u->nr_ext,
					   &u->cap_ext);
		if (!err)
			err = add_live(u, vma);
		break;
	default:
		break;
	}
	if (err) {
		u->nr_ext = first;
		return err;
	}
	s->n = u->nr_ext - first;
	u->nr_segs++;
	return 0;
}

int gvm__vm_update_retire(struct gvm_vm_update *u, struct gvm_vma *vma)
{
	int err;

	if (u->nr_retire && u->retire[u->nr_retire - 1] == vma)
		return 0;
	err = GVM_GROW(u->retire, u->cap_retire, u->nr_retire + 1);
	if (!err)
		u->retire[u->nr_retire++] = vma;
	return err;
}

/* ext[] is final (no more add()): the segments get their pointers. */
static void fix_ext(struct gvm_vm_update *u)
{
	size_t i, first = 0;

	for (i = 0; i < u->nr_segs; i++) {
		u->segs[i].ext = u->segs[i].n ? u->ext + first : NULL;
		first += u->segs[i].n;
	}
}

int gvm__vm_update_reserve(struct gvm_vm_update *u)
{
	int err;

	gvm_assert(!u->reserved && !u->prepared);
	if (!u->nr_segs)
		return 0;
	fix_ext(u);
	err = gvm__pt_reserve(&u->vm->pt, u->segs, u->nr_segs, &u->res);
	if (!err)
		u->reserved = true;
	return err;
}

int gvm__vm_update_prepare(struct gvm_vm_update *u)
{
	struct gvm_vm *vm = u->vm;
	int err;

	gvm_lockdep_assert_held(&vm->pt_lock);
	gvm_assert(!u->prepared);
	if (!u->nr_segs)
		return 0;
	fix_ext(u);
	err = gvm__pt_update_prepare_reserved(&vm->pt, u->segs, u->nr_segs,
					      u->reserved ? &u->res : NULL,
					      &u->pt);
	if (!err)
		u->prepared = true;
	return err;
}

static void tlb_all(struct gvm_pt_tlb *tlb)
{
	tlb->full = true;
	tlb->start = tlb->size = 0;
}

int gvm__vm_update_commit(struct gvm_vm_update *u,
			  enum gvm_vm_update_stale stale)
{
	struct gvm_vm *vm = u->vm;
	size_t i;

	gvm_lockdep_assert_held(&vm->pt_lock);
	u->tlb.full = false;
	u->tlb.start = u->tlb.size = 0;
	if (gvm__vm_update_hook)
		gvm__vm_update_hook(vm, GVM_UPDATE_BEFORE_COMMIT);
	gvm__mutex_lock(&vm->notifier_lock);
	if (stale == GVM_UPDATE_STALE_RETRY) {
		for (i = 0; i < u->nr_live; i++) {
			if (!gvm__userptr_stale_locked(u->live[i].vma,
						       u->live[i].seq))
				continue;
			gvm__mutex_unlock(&vm->notifier_lock);
			if (u->prepared)
				gvm__pt_update_abort(&u->pt);
			u->prepared = false;
			return -EAGAIN;
		}
	}
	/* Before the commit: a stale userptr's PTEs are staged zapped. */
	for (i = 0; i < u->nr_live; i++)
		if (gvm__userptr_commit(u->live[i].vma, true, u->live[i].seq,
					u->prepared ? &u->pt : NULL))
			u->zapped = true;
	for (i = 0; i < u->nr_retire; i++)
		gvm__userptr_commit(u->retire[i], false, 0, NULL);
	if (u->prepared)
		gvm__pt_update_commit(&u->pt, &u->tlb, &u->dead);
	u->prepared = false;
	if (gvm__vm_update_hook)
		gvm__vm_update_hook(vm, GVM_UPDATE_COMMITTED);
	gvm__mutex_unlock(&vm->notifier_lock);
	if (u->zapped)
		tlb_all(&u->tlb);
	if (gvm__vm_update_hook)
		gvm__vm_update_hook(vm, GVM_UPDATE_AFTER_COMMIT);
	return 0;
}

struct gvm_fence *gvm__vm_update_tlb_submit(struct gvm_vm_update *u)
{
	return gvm__vm_tlb_submit(u->vm, &u->tlb);
}

void gvm__vm_update_free_tables(struct gvm_vm_update *u, bool locked)
{
	struct gvm_vm *vm = u->vm;

	if (!u->dead.nr)
		return;
	if (!locked)
		gvm__mutex_lock(&vm->pt_lock);
	gvm_lockdep_assert_held(&vm->pt_lock);
	gvm__pt_free_deferred(&vm->pt, &u->dead);
	if (!locked)
		gvm__mutex_unlock(&vm->pt_lock);
}

void gvm__vm_update_fini(struct gvm_vm_update *u)
{
	if (u->prepared) {
		gvm_lockdep_assert_held(&u->vm->pt_lock);
		gvm__pt_update_abort(&u->pt);
		u->prepared = false;
	}
	gvm_assert(!u->dead.nr);
	if (u->reserved)
		gvm__pt_reserve_fini(&u->vm->pt, &u->res);
	u->reserved = false;
	GVM_FREE_INL(u->segs, u->segs_inl);
	GVM_FREE_INL(u->ext, u->ext_inl);
	gvm__free(u->live);
	gvm__free(u->retire);
	u->segs = u->segs_inl;
	u->cap_segs = GVM_ARRAY_SIZE(u->segs_inl);
	u->ext = u->ext_inl;
	u->cap_ext = GVM_ARRAY_SIZE(u->ext_inl);
	u->live = NULL;
	u->retire = NULL;
	u->nr_segs = u->nr_ext = 0;
	u->nr_live = u->cap_live = u->nr_retire = u->cap_retire = 0;
}

int gvm__vm_update_run(struct gvm_vm_update *u,
		       enum gvm_vm_update_stale stale)
{
	struct gvm_vm *vm = u->vm;
	struct gvm_fence *f;
	int err;

	gvm__mutex_lock(&vm->pt_lock);
	err = gvm__vm_update_prepare(u);
	if (!err)
		err = gvm__vm_update_commit(u, stale);
	gvm__mutex_unlock(&vm->pt_lock);
	if (err)
		return err;
	f = gvm__vm_update_tlb_submit(u);
	if (f) {
		gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(f);
	}
	gvm__vm_update_free_tables(u, false);
	return 0;
}
