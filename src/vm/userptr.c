// SPDX-License-Identifier: MIT
/*
 * Userptr: GPU mappings of ordinary process memory, never pinned.
 *
 * A userptr VMA (GVM_BIND_MAP_USERPTR) maps GPU [addr, addr + range) to
 * the CPU range [cpu, cpu + range) of the VM's mm.  Each one has an
 * interval notifier on its CPU range (core/notifier.h) and the device
 * addresses of its pages, fetched with the notifier's sequence protocol:
 *
 *   attach (bind, before the point of no return, vm->lock held, no
 *   reservation): insert the notifier, register the range with the mm,
 *   read_begin, fetch the pages (-EFAULT unmapped, -EPERM writable mapping
 *   of read-only memory);
 *   commit (under notifier_lock, in the same critical section as the
 *   page-table commit that wrote its PTEs): the VMA becomes live; if the
 *   sequence moved since the fetch, its PTEs are zapped at once and it goes
 *   on the VM's invalidated list;
 *   invalidation, pass 1 (mm event thread): under notifier_lock, bump the
 *   sequence; if live, zap the PTEs, put the VMA on the invalidated list and
 *   submit the TLB invalidation; pass 2: wait for it;
 *   exec (gvm__userptr_revalidate, vm->lock held, before any reservation):
 *   only the VMAs on the invalidated list are refetched and rebound, the
 *   sequence rechecked under notifier_lock before the commit (retry on
 *   collision); a VMA whose memory is gone is dropped from the list and
 *   stays zapped (the GPU faults there) instead of failing the exec.
 *
 * Preempt-fence (LR) VMs: pass 1 first puts the VMA on the invalidated
 * list and takes the VM's current preempt fences under notifier_lock,
 * then (unlocked) enables and waits for them - the queues stop at a lane
 * boundary, parked, not failed - before it zaps; the rebind worker repins
 * and resumes them (lr.c, with the interleaving against its resume).
 *
 * Pass 2 waits for the TLB invalidation only, not for the VM's jobs: after
 * the zap and the invalidation no device access can reach the old pages,
 * and waiting for jobs could wait for a bind job that needs vm->lock, which
 * a thread in read_begin may hold.  A kernel still running on the old
 * mapping therefore faults (its job fails with -EIO) instead of delaying the
 * CPU's munmap.
 *
 * Locking: u->live, u->inval_link and vm->userptr_invalidated are protected
 * by vm->notifier_lock; u->seq, u->ext by vm->lock; the notifier is
 * removed (which waits for a running invalidation) with no lock held.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/list.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/dev.h"
#include "vm/vm.h"

struct gvm_userptr {
	struct gvm_notifier notifier;
	struct gvm_notifier_finish finish;	/* in_use: notifier_lock */
	struct gvm_vm *vm;			/* immutable */
	struct gvm_vma *vma;			/* immutable */
	bool inserted;				/* notifier inserted */
	bool gone;				/* vm->lock: no pages (the
						   CPU memory went away) */
	bool live;				/* notifier_lock */
	struct gvm_list inval_link;		/* notifier_lock */
	struct gvm_fence *tlb_fence;		/* pass 1 -> pass 2 */
	uint64_t seq;				/* vm->lock */
	struct gvm_pt_extent *ext;		/* vm->lock */
	size_t nr_ext;
};

static uint64_t cpu_start(const struct gvm_vma *vma)
{
	return vma->va.obj_offset;
}

/* Pass 1: stop device access to the VMA's pages. */
static struct gvm_notifier_finish *
inval_start(struct gvm_notifier *n, const struct gvm_notifier_range *r,
	    uint64_t cur_seq)
{
	struct gvm_userptr *u = gvm_container_of(n, struct gvm_userptr,
						 notifier);
	struct gvm_vm *vm = u->vm;
	struct gvm_notifier_finish *f = NULL;
	struct gvm_fence *fence = NULL;
	struct gvm_pt_tlb tlb;

	(void)r;
	gvm__mutex_lock(&vm->notifier_lock);
	gvm__notifier_set_seq(n, cur_seq);
	if (u->live && gvm__vm_preempt_mode(vm)) {
		/* LR: stop the queues before the zap (lr.c). */
		struct gvm_fence **pf;
		unsigned int npf;

		if (gvm_list_empty(&u->inval_link))
			gvm_list_add_tail(&u->inval_link,
					  &vm->userptr_invalidated);
		gvm__lr_snapshot_locked(vm, &pf, &npf);
		if (npf) {
			gvm__mutex_unlock(&vm->notifier_lock);
			gvm__lr_preempt_wait(pf, npf);
			gvm__mutex_lock(&vm->notifier_lock);
		} else {
			free(pf);
		}
	}
	if (u->live) {
		gvm__pt_zap(&vm->pt, u->vma->va.addr, u->vma->va.range, &tlb);
		if (gvm_list_empty(&u->inval_link))
			gvm_list_add_tail(&u->inval_link,
					  &vm->userptr_invalidated);
		gvm__vm_stat_add(vm, userptr_invalidations, 1);
		if (tlb.full || tlb.size)
			fence = gvm__vm_tlb_submit(vm, &tlb);
		if (fence && gvm__notifier_finish_claim(&u->finish)) {
			u->tlb_fence = fence;
			f = &u->finish;
			fence = NULL;
		}
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	if (fence) {		/* finish state busy: both passes now */
		gvm_fence_wait(fence, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(fence);
	}
	return f;
}

/* Pass 2: wait for the TLB invalidation started in pass 1. */
static void inval_finish(struct gvm_notifier *n, struct gvm_notifier_finish *f,
			 const struct gvm_notifier_range *r)
{
	struct gvm_userptr *u = gvm_container_of(n, struct gvm_userptr,
						 notifier);
	struct gvm_fence *fence = u->tlb_fence;

	(void)f;
	(void)r;
	u->tlb_fence = NULL;
	gvm_fence_wait(fence, GVM_TIMEOUT_INFINITE);
	gvm_fence_put(fence);
	gvm__mutex_lock(&u->vm->notifier_lock);
	gvm__notifier_finish_release(&u->finish);
	gvm__mutex_unlock(&u->vm->notifier_lock);
}

static const struct gvm_notifier_ops userptr_notifier_ops = {
	.invalidate_start = inval_start,
	.invalidate_finish = inval_finish,
};

/* Device addresses of the pages, as extents (contiguous runs merged). */
static int fetch(struct gvm_userptr *u)
{
	const struct gvm_vma *vma = u->vma;
	struct gvm_vm *vm = u->vm;
	uint64_t npages = vma->va.range >> GVM_MM_PAGE_SHIFT, i;
	struct gvm_pt_extent *ext;
	uint64_t *addrs;
	size_t n = 0;
	int err;

	err = gvm__mm_register(vm->mm, cpu_start(vma), vma->va.range);
	if (err)
		return err;
	addrs = gvm__malloc(npages * sizeof(*addrs));
	if (!addrs)
		return -ENOMEM;
	u->seq = gvm__notifier_read_begin(&u->notifier);
	err = gvm__mm_fetch(vm->mm, cpu_start(vma), vma->va.range,
			    !(vma->va.flags & GVM_VA_READONLY), addrs);
	if (err)
		goto out;
	for (i = 0; i < npages; i++)
		if (!i || addrs[i] != addrs[i - 1] + GVM_MM_PAGE_SIZE)
			n++;
	ext = gvm__malloc(n * sizeof(*ext));
	if (!ext) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0, n = 0; i < npages; i++) {
		if (i && addrs[i] == addrs[i - 1] + GVM_MM_PAGE_SIZE) {
			ext[n - 1].len += GVM_MM_PAGE_SIZE;
			continue;
		}
		ext[n].addr = addrs[i];
		ext[n++].len = GVM_MM_PAGE_SIZE;
	}
	free(u->ext);
	u->ext = ext;
	u->nr_ext = n;
out:
	free(addrs);
	return err;
}

int gvm__userptr_attach(struct gvm_vm *vm, struct gvm_vma *vma)
{
	struct gvm_userptr *u;
	int err;

	if (!vm->mm)
		return -EINVAL;
	u = gvm__calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->vm = vm;
	u->vma = vma;
	gvm_list_init(&u->inval_link);
	err = gvm__notifier_insert(vm->mm, &u->notifier, cpu_start(vma),
				   vma->va.range, &userptr_notifier_ops);
	if (err) {
		free(u);
		return err;
	}
	u->inserted = true;
	vma->userptr = u;
	return fetch(u);
}

void gvm__userptr_detach(struct gvm_vma *vma)
{
	struct gvm_userptr *u = vma->userptr;

	if (!u)
		return;
	/* Live only if a failed bind job never took it down (banned VM). */
	gvm__mutex_lock(&u->vm->notifier_lock);
	u->live = false;
	gvm_list_del(&u->inval_link);
	gvm__mutex_unlock(&u->vm->notifier_lock);
	if (u->inserted)
		gvm__notifier_remove(&u->notifier);
	free(u->ext);
	free(u);
	vma->userptr = NULL;
}

bool gvm__userptr_gone(const struct gvm_vma *vma)
{
	return vma->userptr->gone;
}

void gvm__userptr_set_gone(struct gvm_vma *vma)
{
	vma->userptr->gone = true;
}

int gvm__userptr_extents(const struct gvm_vma *vma, uint64_t offset,
			 uint64_t len, struct gvm_pt_extent **out, size_t *n,
			 size_t *cap)
{
	const struct gvm_userptr *u = vma->userptr;

	return gvm__extents_slice(u->ext, u->nr_ext, offset, len, out, n, cap);
}

bool gvm__userptr_commit(struct gvm_vma *vma, bool live)
{
	struct gvm_userptr *u = vma->userptr;
	struct gvm_vm *vm = u->vm;
	struct gvm_pt_tlb tlb;

	u->live = live && !u->gone;
	if (!u->live) {
		gvm_list_del(&u->inval_link);
		return false;
	}
	if (!gvm__notifier_read_retry(&u->notifier, u->seq))
		return false;
	/* Invalidated since the fetch: the PTEs just written may be stale. */
	gvm__pt_zap(&vm->pt, vma->va.addr, vma->va.range, &tlb);
	if (gvm_list_empty(&u->inval_link))
		gvm_list_add_tail(&u->inval_link, &vm->userptr_invalidated);
	return true;
}

bool gvm__userptr_pending_locked(struct gvm_vm *vm)
{
	struct gvm_list *pos;

	gvm_lockdep_assert_held(&vm->notifier_lock);
	gvm_list_for_each(pos, &vm->userptr_invalidated)
		if (gvm_list_entry(pos, struct gvm_userptr,
				   inval_link)->vma->va.inserted)
			return true;
	return false;
}

/* ---- exec: repin and rebind the invalidated ---------------------------- */

#define REPIN_RETRIES 16

int gvm__userptr_revalidate(struct gvm_vm *vm)
{
	struct gvm_vma **v = NULL;
	struct gvm_pt_seg *segs = NULL;
	struct gvm_pt_extent *ext = NULL;
	size_t nr, k, nr_segs, nr_ext, cap_ext, i;
	int tries = 0, err = 0;
	struct gvm_list *pos;

again:
	nr = 0;
	gvm__mutex_lock(&vm->notifier_lock);
	gvm_list_for_each(pos, &vm->userptr_invalidated)
		nr++;
	gvm__mutex_unlock(&vm->notifier_lock);
	if (!nr)
		return 0;
	free(v);
	free(segs);
	v = gvm__calloc(nr, sizeof(*v));
	segs = gvm__calloc(nr, sizeof(*segs));
	if (!v || !segs) {
		err = -ENOMEM;
		goto out;
	}
	/* The list only grows under notifier_lock; vm->lock keeps VMAs. */
	k = 0;
	gvm__mutex_lock(&vm->notifier_lock);
	gvm_list_for_each(pos, &vm->userptr_invalidated) {
		struct gvm_userptr *u = gvm_list_entry(pos, struct gvm_userptr,
						       inval_link);
		if (k < nr && u->vma->va.inserted)
			v[k++] = u->vma;
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	nr = k;

	/* Refetch (may block on the mm; no reservation is held). */
	for (i = 0, k = 0; i < nr; i++) {
		err = fetch(v[i]->userptr);
		if (err == -EFAULT || err == -EPERM) {
			/* Gone: stays zapped, the GPU faults there. */
			gvm__mutex_lock(&vm->notifier_lock);
			gvm_list_del(&v[i]->userptr->inval_link);
			gvm__mutex_unlock(&vm->notifier_lock);
			err = 0;
			continue;
		}
		if (err)
			goto out;
		v[k++] = v[i];
	}
	nr = k;

	/* One page-table update for all of them, in address order. */
	free(ext);
	ext = NULL;
	nr_ext = cap_ext = 0;
	qsort(v, nr, sizeof(*v), gvm__vma_cmp_addr);
	for (i = 0, nr_segs = 0; i < nr; i++) {
		size_t first = nr_ext;

		err = gvm__userptr_extents(v[i], 0, v[i]->va.range, &ext,
					   &nr_ext, &cap_ext);
		if (err)
			goto out;
		segs[nr_segs].va = v[i]->va.addr;
		segs[nr_segs].end = v[i]->va.addr + v[i]->va.range;
		segs[nr_segs].flags = gvm__vma_pt_flags(v[i]);
		segs[nr_segs].ext = (const struct gvm_pt_extent *)first;
		segs[nr_segs++].n = nr_ext - first;
	}
	for (i = 0; i < nr_segs; i++)
		segs[i].ext = ext + (uintptr_t)segs[i].ext;
	if (nr_segs) {
		struct gvm_pt_free_list dead = { 0 };
		struct gvm_pt_update upd;
		struct gvm_pt_tlb tlb;
		bool moved = false;

		err = gvm__pt_update_prepare(&vm->pt, segs, nr_segs, &upd);
		if (err)
			goto out;
		gvm__mutex_lock(&vm->notifier_lock);
		for (i = 0; i < nr && !moved; i++)
			moved = gvm__notifier_read_retry(&v[i]->userptr->notifier,
							 v[i]->userptr->seq);
		if (moved) {
			gvm__mutex_unlock(&vm->notifier_lock);
			gvm__pt_update_abort(&upd);
			if (++tries > REPIN_RETRIES) {
				err = -EAGAIN;
				goto out;
			}
			goto again;
		}
		gvm__pt_update_commit(&upd, &tlb, &dead);
		for (i = 0; i < nr; i++)
			gvm_list_del(&v[i]->userptr->inval_link);
		gvm__mutex_unlock(&vm->notifier_lock);
		gvm__vm_tlb_flush(vm, &tlb);
		gvm__pt_free_deferred(&vm->pt, &dead);
		gvm__vm_stat_add(vm, userptr_repins, nr);
	}
out:
	free(v);
	free(segs);
	free(ext);
	return err;
}
