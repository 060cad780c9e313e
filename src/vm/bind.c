// SPDX-License-Identifier: MIT
/*
 * VM_BIND: an array of map / unmap operations applied to a VM as one atomic
 * operation.
 *
 * The flow of gvm_vm_bind() (docs/vm.md has the long version):
 *
 *   1. check    every op and sync on its own (nothing locked)      -EINVAL
 *   2. parse    under vm->lock: each op becomes a VA op list
 *               (va.c: UNMAP / REMAP / MAP steps) that is applied
 *               to the VA tree at once, so the next op sees it;
 *               the -EBUSY rule (unsignalled user fence)
 *      limit    the VM's mapping limit (limits.c) on the result  -ENOSPC
 *   3. userptr  every new userptr VMA gets its notifier and its
 *               pages (userptr.c; may block on the mm, so before
 *               any reservation)                          -EFAULT -EPERM
 *   4. lock     the VM's reservation and every external BO the
 *               array maps or unmaps (lockset: ww back-off; fence
 *               slots only for a queued bind, at prepare); BOs
 *               in PREFETCH ranges are moved (move.c)
 *   5. plan     the net effect on the page tables: the touched
 *               ranges, and in them the final VMAs -> one page-table
 *               update (pt_update.c: one segment per VMA or hole)
 *   6. deps     in-syncs, pending binds of other queues on
 *               overlapping ranges, kernels still using mappings
 *               that go away, moves of mapped external BOs
 *   7. prepare  all deps signalled and the queue idle: the update is
 *               prepared now, under pt_lock (inline bind); otherwise
 *               everything its job's prepare can need is reserved
 *               and the job is set up (bind_job.c)
 *   --- point of no return -------------------------------------------
 *   8. commit   inline: the pipeline's commit section (userptr
 *               recheck, page tables, userptrs live/retired, one
 *               notifier_lock section); both: link new VMAs to their
 *               BOs, publish the fence (VM resv, queue, range fences),
 *               push the job
 *   9. finish   inline: TLB invalidation, then free unlinked page
 *               tables and the VMAs that went away (removing their
 *               notifiers, no lock held); out-syncs
 *
 * Any failure in 2-7 unwinds every applied VA op in reverse and leaves the
 * VM exactly as it was (a PREFETCH move already done is kept: contents and
 * mappings are the same, only the placement changed).  A queued job cannot
 * fail for memory (its prepare draws on the reserve); an injected failure
 * in it (tests) bans the VM: every later bind and exec fails with -EIO.
 *
 * Failed dependencies.  A bind's VA state is decided in the call, so its job
 * writes the page tables whatever happened to what it waited for (like xe,
 * whose bind jobs run once their dependencies signalled, with errors or
 * not); skipping it would leave the VA tree and the page tables disagreeing,
 * and an unmap would drop its BO references while the GPU still reaches the
 * BO.  The scheduler does not call run() after a failed dependency, so the
 * job waits on proxies (struct dep_proxy, signalled without error when their
 * dependency signals), and its fence signals without error: it did what it
 * was asked (a failed kernel before an unmap, or a failed in-sync, is the
 * business of whoever waits on those).  The VM is not banned.  An error in
 * the bind fence would also reach every later exec of the VM (bind fences
 * are KERNEL fences of its reservation) and keep it from running.
 *
 * Ordering.  Jobs of one queue run in order (the scheduler).  Binds of
 * different queues are independent unless their ranges overlap: a queued
 * bind leaves a range fence, and a later bind on another queue whose
 * touched range overlaps depends on it.  Bind fences go in the VM
 * reservation at KERNEL usage, so execs wait for the binds submitted
 * before them.  A bind that removes mappings waits for the VM's kernels
 * (BOOKKEEP fences that are not pending binds).
 *
 * Locking: vm->lock is held from parse to commit (not by bind jobs); the
 * reservations from lock to commit; pt_lock from prepare to commit (inline
 * binds; the job takes it alone); notifier_lock inside the commit.  The
 * inline TLB wait is done after dropping vm->lock.  Allocation happens
 * only before the point of no return.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/lockset.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/debug.h"
#include "core/fence_internal.h"
#include "core/lockrank.h"
#include "core/page.h"
#include "core/sort.h"
#include "core/sync.h"
#include "core/trace.h"
#include "mm/mm.h"
#include "vm/bind.h"
#include "vm/bind_job.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/pt_update.h"
#include "vm/svm.h"
#include "vm/sync.h"
#include "vm/userptr.h"
#include "vm/vm.h"
#include "vm/vm_bo.h"

struct gvm_bind_inject gvm__bind_inject;
void (*gvm__bind_before_commit)(struct gvm_vm *vm);

/* A BO mapped in a PREFETCH range where that op stands in the array. */
struct bind_prefetch {
	struct gvm_bo *bo;		/* its VMA lives until the bind ends */
	uint32_t mem;			/* GVM_MEM_VRAM or _SYSTEM */
};

struct bind {
	struct gvm_vm *vm;
	struct gvm_queue *q;
	const struct gvm_bind_op *ops;
	uint32_t n;
	struct gvm_sync_set syncs;

	struct gvm_va_ops *lists;	/* one or more per op, applied */
	size_t nr_lists, cap_lists;
	bool removes;			/* some list takes mappings away */
	struct gvm_vma **up;		/* new userptr VMAs (attached) */
	size_t nr_up, cap_up;
	struct bind_prefetch *pf;	/* BOs to move, in array order */
	size_t nr_pf, cap_pf;

	struct gvm_addr_range *touched;		/* sorted, merged */
	size_t nr_touched, cap_touched;

	struct gvm_bo **bos;		/* distinct BOs involved, sorted */
	size_t nr_bos, cap_bos;
	struct gvm_vm_bo **new_vbs;	/* [nr_bos], preallocated handles */
	struct gvm_lockset ls;
	bool ls_init;

	struct gvm_fence **deps;	/* references */
	size_t nr_deps, cap_deps;
	size_t nr_user_deps;		/* deps[0..nr_user_deps): wait syncs */

	struct gvm_vma **dead;
	size_t nr_dead, cap_dead;

	/*
	 * Inline storage the arrays above start in (a bind of a few ops
	 * allocates none of them); they move to the heap when they grow.
	 * None of them outlives the call.
	 */
	struct gvm_va_ops lists_inl[2];
	struct gvm_addr_range touched_inl[4];
	struct gvm_bo *bos_inl[4];
	struct gvm_fence *deps_inl[4];
	struct gvm_vm_bo *new_vbs_inl[4];	/* as bos_inl */
	struct gvm_vma *dead_inl[2];	/* a queued bind's job takes dead
					   over: prepare moves it to the heap */

	bool inline_bind;
	bool pt_locked;			/* inline: pt_lock from prepare to
					   commit */
	struct gvm_bind_job *bj;
	struct gvm_range_fence *rf;
	struct gvm_fence *done;		/* the out-fence, reference */

	/* Last: gvm_vm_bind() zeroes what comes before, update_init() it. */
	struct gvm_vm_update upd;	/* the page-table update */
};

int gvm__bind_inject_check(enum gvm_bind_stage stage)
{
	if (gvm_load_relaxed(&gvm__bind_inject.stage) != (int)stage)
		return 0;
	if (gvm_fetch_sub_release(&gvm__bind_inject.countdown, 1) > 0)
		return 0;
	gvm_store_relaxed(&gvm__bind_inject.stage, GVM_BIND_STAGE_NONE);
	return gvm__bind_inject.error ? gvm__bind_inject.error : -ENOMEM;
}

#define inject gvm__bind_inject_check

/* ---- 1. check ------------------------------------------------------------ */

static int check_bo(struct gvm_vm *vm, struct gvm_bo *bo)
{
	if (!bo || bo->dev != vm->dev || (bo->vm && bo->vm != vm))
		return -EINVAL;
	return 0;
}

/*
 * The GPU address of @op in the VM's VA space [0, 2^va_bits): canonical
 * high addresses (bits va_bits - 1 .. 63 all set, as CPUs and GPUs write
 * the upper half) lose their sign extension.
 */
static uint64_t op_addr(const struct gvm_vm *vm, const struct gvm_bind_op *op)
{
	unsigned int bits = vm->dev->desc.va_bits;
	uint64_t high = ~0ull << (bits - 1);

	if ((op->addr & high) == high)
		return op->addr & ~(~0ull << bits);
	return op->addr;
}

static int check_op(struct gvm_vm *vm, const struct gvm_bind_op *op)
{
	uint64_t va_end = 1ull << vm->dev->desc.va_bits;
	uint64_t addr = op_addr(vm, op);
	uint32_t f = op->flags;

	if (f & ~GVM_BIND_FLAGS_ALL || op->pat > GVM_PAT_MAX)
		return -EINVAL;
	if (op->op == GVM_BIND_UNMAP_ALL) {
		if (f || op->addr || op->range)
			return -EINVAL;
		return check_bo(vm, op->bo);
	}
	if (!op->range || !gvm__page_aligned(addr | op->range) ||
	    addr + op->range < addr || addr + op->range > va_end)
		return -EINVAL;
	switch (op->op) {
	case GVM_BIND_MAP:
		if (f & GVM_BIND_CPU_ADDR_MIRROR) {
			/* GPU address == CPU address: in the CPU's range */
			if (op->bo || op->bo_offset || (f & GVM_BIND_NULL) ||
			    !(vm->flags & GVM_VM_FAULT_MODE) || !vm->mm ||
			    op->addr != addr)
				return -EINVAL;
			return 0;
		}
		if (f & GVM_BIND_NULL)
			return op->bo || op->bo_offset ? -EINVAL : 0;
		if (check_bo(vm, op->bo) || !gvm__page_aligned(op->bo_offset) ||
		    op->bo_offset > op->bo->size ||
		    op->range > op->bo->size - op->bo_offset)
			return -EINVAL;
		return 0;
	case GVM_BIND_UNMAP:
		return f || op->bo ? -EINVAL : 0;
	case GVM_BIND_MAP_USERPTR:
		if (f & ~(GVM_BIND_READONLY | GVM_BIND_IMMEDIATE) || op->bo ||
		    !vm->mm || !gvm__page_aligned(op->userptr) ||
		    op->userptr + op->range < op->userptr)
			return -EINVAL;
		return 0;
	case GVM_BIND_PREFETCH:
		if (f || op->bo || (op->prefetch_mem != GVM_MEM_SYSTEM &&
				    op->prefetch_mem != GVM_MEM_VRAM))
			return -EINVAL;
		return 0;
	default:
		return -EINVAL;
	}
}

/* ---- 2. parse ------------------------------------------------------------ */

/* Checks the -EBUSY rule, then applies list @l and notes its ranges. */
static int apply_list(struct bind *b, struct gvm_va_ops *l)
{
	size_t i;
	int err;

	for (i = 0; i < l->nr; i++)
		if (l->op[i].old &&
		    !gvm__ufence_written(to_vma(l->op[i].old)->ufence))
			return -EBUSY;
	err = GVM_GROW_INL(b->touched, b->cap_touched, b->nr_touched + l->nr,
			   b->touched_inl);
	if (err)
		return err;
	gvm__va_ops_apply(l);
	for (i = 0; i < l->nr; i++) {
		struct gvm_va_op *op = &l->op[i];
		uint64_t lo, hi;

		switch (op->kind) {
		case GVM_VA_OP_MAP:
			lo = op->map->addr;
			hi = lo + op->map->range;
			break;
		case GVM_VA_OP_REMAP:
			lo = op->prev ? op->prev->addr + op->prev->range
				      : op->old->addr;
			hi = op->next ? op->next->addr
				      : op->old->addr + op->old->range;
			/* userptr pieces always rebind (new notifiers) */
			if (gvm__va_kind(op->old) == GVM_VA_KIND_USERPTR) {
				lo = op->old->addr;
				hi = lo + op->old->range;
			}
			b->removes = true;
			break;
		default:
			lo = op->old->addr;
			hi = lo + op->old->range;
			b->removes = true;
			break;
		}
		b->touched[b->nr_touched].lo = lo;
		b->touched[b->nr_touched++].hi = hi;
	}
	return 0;
}

/*
 * Fault mode: a MAP without IMMEDIATE writes no PTEs, its first GPU fault
 * binds it (fault.c); pieces of a split mapping keep its state.
 */
static void mark_fault_pending(struct gvm_va_ops *l, bool lazy)
{
	size_t i;

	for (i = 0; i < l->nr; i++) {
		struct gvm_va_op *op = &l->op[i];
		bool old = op->old && to_vma(op->old)->fault_pending;

		if (op->map)
			to_vma(op->map)->fault_pending = lazy;
		if (op->prev)
			to_vma(op->prev)->fault_pending = old;
		if (op->next)
			to_vma(op->next)->fault_pending = old;
	}
}

static int add_list(struct bind *b, struct gvm_va_ops *l, bool lazy);

/*
 * The SVM ranges under the parts of mirror mappings that list @li removes
 * go with them, whole (svm.c): their unmap ops join the bind's lists, so
 * their PTEs are in the same page-table update and they unwind with it.
 * By index: add_list() may move b->lists.
 */
static int remove_svm_ranges(struct bind *b, size_t li)
{
	size_t i, nr = b->lists[li].nr;
	int err;

	for (i = 0; i < nr; i++) {
		const struct gvm_va_op *op = &b->lists[li].op[i];
		struct gvm_va_ops sl;
		uint64_t lo, hi;

		if (!op->old || gvm__va_kind(op->old) != GVM_VA_KIND_MIRROR)
			continue;
		lo = op->prev ? op->prev->addr + op->prev->range
			      : op->old->addr;
		hi = op->next ? op->next->addr
			      : op->old->addr + op->old->range;
		err = gvm__svm_unmap_ops(b->vm, lo, hi, &sl);
		if (!err && sl.nr)
			err = add_list(b, &sl, false);
		else if (!err)
			gvm__va_ops_fini(&sl);
		if (err)
			return err;
	}
	return 0;
}

static int add_list(struct bind *b, struct gvm_va_ops *l, bool lazy)
{
	size_t cap = b->cap_lists;
	int err = GVM_GROW_INL(b->lists, b->cap_lists, b->nr_lists + 1,
			       b->lists_inl);

	if (!err && b->cap_lists != cap)	/* moved byte for byte */
		for (size_t i = 0; i < b->nr_lists; i++)
			gvm__va_ops_relink(&b->lists[i]);
	if (!err)
		err = apply_list(b, l);
	if (err) {
		gvm__va_ops_fini(l);
		return err;
	}
	mark_fault_pending(l, lazy);
	gvm__va_ops_move(&b->lists[b->nr_lists++], l);
	return remove_svm_ranges(b, b->nr_lists - 1);
}

static uint32_t va_flags(const struct gvm_bind_op *op)
{
	uint32_t f = op->flags & GVM_BIND_NULL ? GVM_VA_KIND_NULL
					       : GVM_VA_KIND_BO;

	if (op->flags & GVM_BIND_CPU_ADDR_MIRROR)
		f = GVM_VA_KIND_MIRROR;

	if (op->flags & GVM_BIND_READONLY)
		f |= GVM_VA_READONLY;
	return f | GVM_VA_PAT(op->pat);
}

/*
 * Mirrors over BOs (svm.c): a mapping made where only mirror mappings
 * were (or mappings that were themselves made over them) is marked
 * GVM_VA_OVER_MIRROR, and unmapping it mirrors the hole again, as the
 * mirror would have been had the mapping never been made.  A mapping
 * that covers any unmirrored address leaves a hole when it goes.
 */
static uint32_t over_mirror(struct bind *b, uint64_t addr, uint64_t range)
{
	struct gvm_va_iter it;
	struct gvm_va *va;
	uint64_t at = addr;

	gvm_va_for_each_in_range(va, &b->vm->va, addr, range, &it) {
		if (va->addr > at || (gvm__va_kind(va) != GVM_VA_KIND_MIRROR &&
				      !(va->flags & GVM_VA_OVER_MIRROR)))
			return 0;
		at = va->addr + va->range;
	}
	return at >= addr + range ? GVM_VA_OVER_MIRROR : 0;
}

/* After unmap list @i: mirrors again what it took of OVER_MIRROR VMAs. */
static int restore_mirror(struct bind *b, size_t i)
{
	size_t nr = b->lists[i].nr;

	for (size_t j = 0; j < nr; j++) {
		const struct gvm_va_op *op = &b->lists[i].op[j];
		struct gvm_va_ops l;
		uint64_t lo, hi;
		int err;

		if (!op->old || !(op->old->flags & GVM_VA_OVER_MIRROR))
			continue;
		lo = op->prev ? op->prev->addr + op->prev->range
			      : op->old->addr;
		hi = op->next ? op->next->addr
			      : op->old->addr + op->old->range;
		err = gvm__va_map_ops_create(&b->vm->va, lo, hi - lo, NULL, 0,
					     GVM_VA_KIND_MIRROR, &l);
		if (!err)
			err = add_list(b, &l, true);
		if (err)
			return err;
	}
	return 0;
}

static int parse_unmap_all(struct bind *b, struct gvm_bo *bo)
{
	struct gvm_va_space *space = &b->vm->va;
	struct gvm_addr_range *r = NULL;
	size_t nr = 0, cap = 0, i;
	struct gvm_va_iter it;
	struct gvm_va *va;
	int err = 0;

	gvm_va_for_each_in_range(va, space, space->start, space->range, &it) {
		if (va->obj != bo)
			continue;
		err = GVM_GROW(r, cap, nr + 1);
		if (err)
			goto out;
		r[nr].lo = va->addr;
		r[nr++].hi = va->addr + va->range;
	}
	for (i = 0; i < nr && !err; i++) {
		struct gvm_va_ops l;

		err = gvm__va_unmap_ops_create(space, r[i].lo,
					       r[i].hi - r[i].lo, &l);
		if (!err)
			err = add_list(b, &l, false);
		if (!err)
			err = restore_mirror(b, b->nr_lists - 1);
	}
out:
	gvm__free(r);
	return err;
}

/*
 * PREFETCH: like every op, it sees the VA state the earlier ops of the
 * array left (parse applies each op before the next): the BOs mapped in
 * the range now are the ones move_prefetched() moves, whatever later ops
 * map or unmap there.  Their VMAs, even if a later op removes them, live
 * until the bind ends (on the dead list or for the unwind), and so do the
 * BOs.  Their part of the range is rewritten from the final VA state
 * (after the BOs moved), so it counts as touched; the rest is not: a
 * prefetch moves no userptr pages (nor SVM ranges' pages: svm_prefetch,
 * in the call), so it has nothing to write there, and a bind job that
 * did would write pages copied at the call, maybe stale or freed by the
 * time it runs (an SVM range may be dropped meanwhile: no bind orders
 * that).
 */
static int parse_prefetch(struct bind *b, const struct gvm_bind_op *op)
{
	uint64_t addr = op_addr(b->vm, op), end = addr + op->range;
	struct gvm_va_iter it;
	struct gvm_va *va;
	int err;

	gvm_va_for_each_in_range(va, &b->vm->va, addr, op->range, &it) {
		if (gvm__va_kind(va) != GVM_VA_KIND_BO)
			continue;
		/* Before anything moved: the failed call changes nothing. */
		if (!(((struct gvm_bo *)va->obj)->placement &
		      op->prefetch_mem))
			return -EINVAL;
		err = GVM_GROW(b->pf, b->cap_pf, b->nr_pf + 1);
		if (!err)
			err = GVM_GROW_INL(b->touched, b->cap_touched,
					   b->nr_touched + 1, b->touched_inl);
		if (err)
			return err;
		b->pf[b->nr_pf].bo = va->obj;
		b->pf[b->nr_pf++].mem = op->prefetch_mem;
		b->touched[b->nr_touched].lo = va->addr > addr ? va->addr : addr;
		b->touched[b->nr_touched++].hi =
			va->addr + va->range < end ? va->addr + va->range : end;
	}
	return 0;
}

/*
 * PREFETCH over mirror mappings (svm.c): after the bind, in the call
 * (queued binds too: it needs vm->lock, which bind jobs never take), so
 * that kernels submitted once the call returned take no fault there.  A
 * hint, done on the VA state it finds then; it cannot fail the bind.
 */
static void svm_prefetch(struct bind *b)
{
	struct gvm_vm *vm = b->vm;
	bool locked = false;

	if (!(vm->flags & GVM_VM_FAULT_MODE) || !vm->mm)
		return;
	gvm__might_fault();	/* the caller's ops, under vm->lock only */
	for (uint32_t i = 0; i < b->n; i++) {
		const struct gvm_bind_op *op = &b->ops[i];
		uint64_t addr = op_addr(vm, op);

		if (op->op != GVM_BIND_PREFETCH)
			continue;
		if (!locked) {
			gvm__mutex_lock(&vm->lock);
			locked = true;
		}
		if (!vm->closed)
			gvm__svm_prefetch(vm, addr, addr + op->range,
					  op->prefetch_mem == GVM_MEM_SYSTEM);
	}
	if (locked)
		gvm__mutex_unlock(&vm->lock);
}

static int parse(struct bind *b)
{
	struct gvm_va_space *space = &b->vm->va;
	uint32_t i;
	int err = 0;

	gvm__might_fault();	/* the caller's ops, under vm->lock only */
	for (i = 0; i < b->n && !err; i++) {
		const struct gvm_bind_op *op = &b->ops[i];
		struct gvm_va_ops l;
		uint32_t f;

		switch (op->op) {
		case GVM_BIND_MAP:
			f = va_flags(op);
			if ((f & GVM_VA_KIND_MASK) != GVM_VA_KIND_MIRROR)
				f |= over_mirror(b, op_addr(b->vm, op),
						 op->range);
			err = gvm__va_map_ops_create(space, op_addr(b->vm, op),
						     op->range, op->bo,
						     op->bo_offset, f, &l);
			break;
		case GVM_BIND_MAP_USERPTR:
			err = gvm__va_map_ops_create(space, op_addr(b->vm, op),
						     op->range, NULL,
						     op->userptr,
						     va_flags(op) |
						     GVM_VA_KIND_USERPTR |
						     over_mirror(b,
							op_addr(b->vm, op),
							op->range), &l);
			break;
		case GVM_BIND_UNMAP:
			err = gvm__va_unmap_ops_create(space,
						       op_addr(b->vm, op),
						       op->range, &l);
			if (!err)
				err = add_list(b, &l, false);
			if (!err)
				err = restore_mirror(b, b->nr_lists - 1);
			continue;
		case GVM_BIND_UNMAP_ALL:
			err = parse_unmap_all(b, op->bo);
			continue;
		case GVM_BIND_PREFETCH:
			err = parse_prefetch(b, op);
			continue;
		default:
			GVM_BUG_ON(1);
		}
		if (!err)
			err = add_list(b, &l, (b->vm->flags & GVM_VM_FAULT_MODE) &&
						   !(op->flags &
						     GVM_BIND_IMMEDIATE));
	}
	return err;
}

/*
 * Gives every new userptr VMA (a MAP_USERPTR's, and the pieces of a split
 * userptr) its notifier and fetches its pages: vm->lock held, no
 * reservation yet (fetching may block on the mm).
 */
/* The VM's mapping limit (limits.c), on the VA tree the ops made. */
static int check_mappings(struct bind *b)
{
	uint64_t max = gvm__limit_mappings();

	return max && gvm__va_count(&b->vm->va) > max ? -ENOSPC : 0;
}

static int attach_userptrs(struct bind *b)
{
	size_t i, j, k;
	int err;

	for (i = 0; i < b->nr_lists; i++) {
		struct gvm_va_ops *l = &b->lists[i];

		for (j = 0; j < l->nr; j++) {
			struct gvm_va *nv[3] = { l->op[j].map, l->op[j].prev,
						 l->op[j].next };

			for (k = 0; k < 3; k++) {
				if (!nv[k] ||
				    gvm__va_kind(nv[k]) != GVM_VA_KIND_USERPTR)
					continue;
				err = GVM_GROW(b->up, b->cap_up, b->nr_up + 1);
				if (err)
					return err;
				b->up[b->nr_up++] = to_vma(nv[k]);
				err = gvm__userptr_attach(b->vm, to_vma(nv[k]),
							  NULL);
				/*
				 * A piece of a split userptr whose memory is
				 * gone is kept without PTEs: only the op that
				 * named the memory fails for it.
				 */
				if (k && (err == -EFAULT || err == -EPERM)) {
					gvm__userptr_set_gone(to_vma(nv[k]));
					err = 0;
				}
				if (err)
					return err;
			}
		}
	}
	return 0;
}

/* Error path, no lock held: removes the notifiers attach_userptrs made. */
static void detach_userptrs(struct bind *b)
{
	size_t i;

	for (i = 0; i < b->nr_up; i++)
		gvm__userptr_detach(b->up[i]);
	b->nr_up = 0;
}

static void unwind(struct bind *b)
{
	size_t i = b->nr_lists;

	while (i--)
		gvm__va_ops_unapply(&b->lists[i]);
}

/* ---- 3. lock --------------------------------------------------------------- */

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a;
	uintptr_t y = (uintptr_t)*(void *const *)b;

	return x < y ? -1 : x > y;
}

static int add_bo(struct bind *b, struct gvm_va *va)
{
	int err;

	if (!va || gvm__va_kind(va) != GVM_VA_KIND_BO)
		return 0;
	err = GVM_GROW_INL(b->bos, b->cap_bos, b->nr_bos + 1, b->bos_inl);
	if (!err)
		b->bos[b->nr_bos++] = va->obj;
	return err;
}

/* The distinct BOs of every mapping the array adds or takes away. */
static int collect_bos(struct bind *b)
{
	size_t i, j, k;
	int err = 0;

	for (i = 0; i < b->nr_lists && !err; i++) {
		struct gvm_va_ops *l = &b->lists[i];

		for (j = 0; j < l->nr && !err; j++) {
			err = add_bo(b, l->op[j].old);
			if (!err)
				err = add_bo(b, l->op[j].map);
		}
	}
	/* The BOs PREFETCH ops found (their mappings may be gone by now). */
	for (i = 0; i < b->nr_pf && !err; i++) {
		err = GVM_GROW_INL(b->bos, b->cap_bos, b->nr_bos + 1, b->bos_inl);
		if (!err)
			b->bos[b->nr_bos++] = b->pf[i].bo;
	}
	if (err)
		return err;
	gvm__sort(b->bos, b->nr_bos, sizeof(*b->bos), cmp_ptr);
	for (i = 0, k = 0; i < b->nr_bos; i++)
		if (!k || b->bos[k - 1] != b->bos[i])
			b->bos[k++] = b->bos[i];
	b->nr_bos = k;
	return 0;
}

static int lock_all(struct bind *b)
{
	struct gvm_lockset *ls = &b->ls;
	size_t i;
	int err = 0;

	gvm_lockset_init(ls, GVM_LOCKSET_IGNORE_DUPLICATES);
	b->ls_init = true;
	gvm_lockset_until_all_locked(ls) {
		/* No fence slots yet: only a queued bind publishes a fence
		   (reserve_slots). */
		err = gvm_lockset_lock(ls, &b->vm->resv);
		gvm_lockset_retry_on_contention(ls);
		if (err)
			return err;
		for (i = 0; i < b->nr_bos && !err; i++)
			if (b->bos[i]->resv != &b->vm->resv)
				err = gvm_lockset_lock(ls, b->bos[i]->resv);
		gvm_lockset_retry_on_contention(ls);
		if (err)
			return err;
	}
	return inject(GVM_BIND_STAGE_LOCK);
}

/* A queued bind's fence slot in every reservation publish() writes. */
static int reserve_slots(struct bind *b)
{
	int err = gvm_resv_reserve_fences(&b->vm->resv, 1);

	for (size_t i = 0; i < b->nr_bos && !err; i++)
		if (b->bos[i]->resv != &b->vm->resv)
			err = gvm_resv_reserve_fences(b->bos[i]->resv, 1);
	return err;
}

/* A handle for every BO that has none in this VM yet (used or not). */
static int prealloc_vm_bos(struct bind *b)
{
	size_t i;

	if (!b->nr_bos)
		return 0;
	if (b->nr_bos <= GVM_ARRAY_SIZE(b->new_vbs_inl))
		b->new_vbs = b->new_vbs_inl;	/* zeroed by the memset */
	else
		b->new_vbs = gvm__calloc(b->nr_bos, sizeof(*b->new_vbs));
	if (!b->new_vbs)
		return -ENOMEM;
	for (i = 0; i < b->nr_bos; i++) {
		if (gvm__vm_bo_find(b->vm, b->bos[i]))
			continue;
		b->new_vbs[i] = gvm__calloc(1, sizeof(**b->new_vbs));
		if (!b->new_vbs[i])
			return -ENOMEM;
	}
	return 0;
}

/*
 * Moves the BOs that were mapped in PREFETCH ranges where those ops stand
 * in the array (parse_prefetch, which checked their placements), in array
 * order.  A move is not undone if the bind fails later: the BO's contents
 * and mappings are the same, only its placement changed.  A prefetch is a
 * hint: a BO that is busy, or finds no room in VRAM, stays where it is.
 */
static int move_prefetched(struct bind *b)
{
	size_t i;
	int err = 0;

	for (i = 0; i < b->nr_pf && !err; i++) {
		err = gvm__bo_move(b->pf[i].bo, b->pf[i].mem, GVM_EVICT_IDLE);
		/*
		 * Busy: waiting here could wait for our own bind jobs.  No
		 * room: holding reservations, the move may evict idle BOs
		 * only, never SVM memory (docs/svm.md, "Who evicts what"),
		 * so VRAM full of it made the whole bind fail; the next
		 * exec moves the BO if its placement wants VRAM.
		 */
		if (err == -EBUSY || err == -ENOSPC)
			err = 0;
	}
	return err;
}

/* ---- 4. plan ----------------------------------------------------------------- */

static int cmp_range(const void *a, const void *b)
{
	const struct gvm_addr_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void merge_touched(struct bind *b)
{
	size_t i, k = 0;

	gvm__sort(b->touched, b->nr_touched, sizeof(*b->touched), cmp_range);
	for (i = 0; i < b->nr_touched; i++) {
		struct gvm_addr_range r = b->touched[i];

		if (r.hi <= r.lo)
			continue;
		if (k && r.lo <= b->touched[k - 1].hi) {
			if (r.hi > b->touched[k - 1].hi)
				b->touched[k - 1].hi = r.hi;
			continue;
		}
		b->touched[k++] = r;
	}
	b->nr_touched = k;
}

/*
 * [lo, hi) of a mirror mapping: its SVM ranges there keep their PTEs
 * (rewritten from their pages, with the userptr recheck), the rest has
 * none.  Ranges that go away were taken out of the range space already.
 */
static int plan_mirror(struct bind *b, uint64_t lo, uint64_t hi)
{
	struct gvm_vm_update *u = &b->upd;
	struct gvm_va_iter it;
	struct gvm_va *r;
	uint64_t cur = lo;
	int err = 0;

	gvm_va_for_each_in_range(r, &b->vm->svm, lo, hi - lo, &it) {
		uint64_t s = r->addr > cur ? r->addr : cur;
		uint64_t e = r->addr + r->range < hi ? r->addr + r->range : hi;

		if (s > cur)
			err = gvm__vm_update_add(u, cur, s, NULL);
		if (!err)
			err = gvm__vm_update_add(u, s, e, to_vma(r));
		if (err)
			return err;
		cur = e;
	}
	return cur < hi ? gvm__vm_update_add(u, cur, hi, NULL) : 0;
}

/* The page-table segments of the final VA state in the touched ranges. */
static int plan(struct bind *b)
{
	struct gvm_vm_update *u = &b->upd;
	size_t i;
	int err = 0;

	merge_touched(b);
	for (i = 0; i < b->nr_touched && !err; i++) {
		uint64_t cur = b->touched[i].lo, hi = b->touched[i].hi;
		struct gvm_va_iter it;
		struct gvm_va *va;

		gvm_va_for_each_in_range(va, &b->vm->va, cur, hi - cur, &it) {
			uint64_t s = va->addr > cur ? va->addr : cur;
			uint64_t e = va->addr + va->range < hi ?
					     va->addr + va->range : hi;

			if (s > cur)
				err = gvm__vm_update_add(u, cur, s, NULL);
			/* Not bound until its first fault (fault mode);
			   mirrors have PTEs only in their SVM ranges. */
			if (err)
				break;
			if (gvm__va_kind(va) == GVM_VA_KIND_MIRROR)
				err = plan_mirror(b, s, e);
			else
				err = gvm__vm_update_add(u, s, e,
					to_vma(va)->fault_pending ? NULL
								  : to_vma(va));
			if (err)
				break;
			cur = e;
		}
		if (!err && cur < hi)
			err = gvm__vm_update_add(u, cur, hi, NULL);
	}
	return err;
}

/* ---- 5. deps ----------------------------------------------------------------- */

static int add_dep(struct bind *b, struct gvm_fence *f)
{
	int err;

	if (gvm_fence_is_signaled(f))
		return 0;	/* with an error too: see "Failed dependencies" */
	err = GVM_GROW_INL(b->deps, b->cap_deps, b->nr_deps + 1, b->deps_inl);
	if (err)
		return err;
	b->deps[b->nr_deps++] = gvm_fence_get(f);
	return 0;
}

static int add_dep_cb(void *arg, struct gvm_fence *f)
{
	return add_dep(arg, f);
}

static int gather_deps(struct bind *b)
{
	struct gvm_vm *vm = b->vm;
	struct gvm_resv_iter it;
	struct gvm_fence *f;
	size_t i;
	int err = 0;

	for (i = 0; i < b->syncs.nr_in && !err; i++)
		err = add_dep(b, b->syncs.in[i]);
	b->nr_user_deps = b->nr_deps;	/* the first, abandonable ones */
	gvm__range_fences_prune(vm);
	if (!err)
		err = gvm__range_fences_overlapping(vm, b->q, b->touched,
						    b->nr_touched, add_dep_cb,
						    b);
	if (err)
		return err;
	/* The reservations are locked (lock_all): iterate in place. */
	if (b->removes) {
		/* Kernels may still use what goes away. */
		gvm_resv_for_each_fence(&it, &vm->resv,
					GVM_RESV_USAGE_BOOKKEEP, f)
			if (!gvm__range_fence_is(vm, f)) {
				err = add_dep(b, f);
				if (err)
					return err;
			}
	}
	for (i = 0; i < b->nr_bos; i++) {
		if (b->bos[i]->resv == &vm->resv)
			continue;
		gvm_resv_for_each_fence(&it, b->bos[i]->resv,
					GVM_RESV_USAGE_KERNEL, f) {
			err = add_dep(b, f);
			if (err)
				return err;
		}
	}
	b->inline_bind = !b->nr_deps && gvm__bind_queue_idle_locked(b->q);
	return 0;
}

/* ---- 6. prepare ---------------------------------------------------------------- */

static int prepare(struct bind *b)
{
	size_t i;
	int err;

	err = inject(GVM_BIND_STAGE_PREPARE);
	if (err)
		return err;
	if (b->inline_bind) {
		/* Done when the call returns: no fence of its own (out-syncs
		   get the signalled stub at the end; not taken here, its
		   count is a cache line every binder of the process would
		   share). */
		gvm__mutex_lock(&b->vm->pt_lock);
		b->pt_locked = true;
		err = gvm__vm_update_prepare(&b->upd);
		/* The inline path's "run" is the commit, still ahead. */
		return err ? err : inject(GVM_BIND_STAGE_RUN);
	}
	err = reserve_slots(b);
	if (!err)
		err = gvm__range_fence_prepare(b->vm, b->q, &b->rf);
	if (err)
		return err;
	if (b->dead == b->dead_inl && b->nr_dead) {
		/* The job will own it: to the heap. */
		struct gvm_vma **d = gvm__malloc(b->nr_dead * sizeof(*d));

		if (!d)
			return -ENOMEM;
		memcpy(d, b->dead, b->nr_dead * sizeof(*d));
		b->dead = d;
		b->cap_dead = b->nr_dead;
	}
	/* The job's prepare must not fail for memory (issue 10, #8). */
	err = gvm__vm_update_reserve(&b->upd);
	if (!err)
		err = gvm__bind_job_create(b->q, &b->bj);
	for (i = 0; i < b->nr_deps && !err; i++)
		err = gvm__bind_job_add_dep(b->bj, b->deps[i],
					    i < b->nr_user_deps);
	return err;
}

/* ---- 7/8. commit and finish ------------------------------------------------- */

/* Collects the VMAs that went away and links the new ones. */
static int collect_dead(struct bind *b)
{
	size_t i, j;
	int err;

	for (i = 0; i < b->nr_lists; i++) {
		struct gvm_va_ops *l = &b->lists[i];

		for (j = 0; j < l->nr; j++) {
			if (!l->op[j].old)
				continue;
			err = GVM_GROW_INL(b->dead, b->cap_dead, b->nr_dead + 1,
					   b->dead_inl);
			if (err)
				return err;
			b->dead[b->nr_dead++] = to_vma(l->op[j].old);
			if (to_vma(l->op[j].old)->userptr) {
				err = gvm__vm_update_retire(&b->upd,
							    b->dead[b->nr_dead - 1]);
				if (err)
					return err;
			}
		}
	}
	return 0;
}

static void link_vma(struct bind *b, struct gvm_va *va,
		     const struct gvm_vma *from, struct gvm_ufence *uf)
{
	struct gvm_vma *vma = to_vma(va);
	size_t i;

	if (!va)
		return;
	vma->ufence = gvm__ufence_get(from ? from->ufence : uf);
	if (from && gvm__va_kind(va) != GVM_VA_KIND_USERPTR) {
		/* A piece of a split mapping keeps its PTEs: whatever was
		   to write them still is (a rebind after a move skips the
		   VMAs of a pending bind job, as their job writes them). */
		if (from->bind_fence)
			vma->bind_fence = gvm_fence_get(from->bind_fence);
	} else if (!b->inline_bind) {
		/* New, or a userptr piece (new notifier, rebound): its PTEs
		   are the job's to write. */
		vma->bind_fence = gvm_fence_get(b->done);
	}
	if (gvm__va_kind(va) != GVM_VA_KIND_BO)
		return;
	for (i = 0; b->bos[i] != va->obj; i++)
		;
	gvm__vm_bo_link(b->vm, vma, &b->new_vbs[i]);
}

/* Point of no return passed: make the new VA state the VM's. */
static void commit_vmas(struct bind *b)
{
	size_t i, j;

	for (i = 0; i < b->nr_lists; i++) {
		struct gvm_va_ops *l = &b->lists[i];

		for (j = 0; j < l->nr; j++) {
			struct gvm_va_op *op = &l->op[j];
			const struct gvm_vma *old = op->old ? to_vma(op->old)
							    : NULL;

			link_vma(b, op->prev, old, NULL);
			link_vma(b, op->next, old, NULL);
			link_vma(b, op->map, NULL, b->syncs.ufence);
		}
	}
	for (i = 0; i < b->nr_dead; i++)
		gvm__vm_bo_unlink(b->dead[i]);
}

/* Finishes the op lists: they release tree reservations (vm->lock). */
static void fini_lists(struct bind *b)
{
	size_t i;

	for (i = 0; i < b->nr_lists; i++)
		gvm__va_ops_fini(&b->lists[i]);
	b->nr_lists = 0;
}

static void bind_fini(struct bind *b)
{
	size_t i;

	for (i = 0; i < b->nr_lists; i++)
		gvm__va_ops_fini(&b->lists[i]);
	GVM_FREE_INL(b->lists, b->lists_inl);
	if (b->ls_init)
		gvm_lockset_fini(&b->ls);
	for (i = 0; b->new_vbs && i < b->nr_bos; i++)
		gvm__free(b->new_vbs[i]);
	if (b->new_vbs != b->new_vbs_inl)
		gvm__free(b->new_vbs);
	GVM_FREE_INL(b->bos, b->bos_inl);
	gvm__free(b->pf);
	GVM_FREE_INL(b->touched, b->touched_inl);
	gvm__vm_update_fini(&b->upd);
	for (i = 0; i < b->nr_deps; i++)
		gvm_fence_put(b->deps[i]);
	GVM_FREE_INL(b->deps, b->deps_inl);
	GVM_FREE_INL(b->dead, b->dead_inl);
	gvm__free(b->up);
	gvm__range_fence_free(b->rf);
	if (b->done)
		gvm_fence_put(b->done);
	gvm__syncs_fini(&b->syncs);
	/* No lock held: BOs eviction let go of under locks (evict.c). */
	gvm__dev_reap(b->vm->dev);
}

static int publish(struct bind *b, struct gvm_fence *f)
{
	size_t i;
	int err;

	if (gvm_fence_is_signaled(f))
		return 0;
	err = gvm_resv_add_fence(&b->vm->resv, f, GVM_RESV_USAGE_KERNEL);
	for (i = 0; !err && i < b->nr_bos; i++)
		if (b->bos[i]->resv != &b->vm->resv)
			err = gvm_resv_add_fence(b->bos[i]->resv, f,
						 GVM_RESV_USAGE_BOOKKEEP);
	return err;
}

int gvm_vm_bind(struct gvm_vm *vm, struct gvm_queue *q,
		const struct gvm_bind_op *ops, uint32_t n,
		const struct gvm_sync *syncs, uint32_t ns)
{
	struct bind b;
	uint32_t i;
	int err;

	if (!vm || (n && !ops))
		return -EINVAL;
	if (q && (q->vm != vm || q->engine != GVM_ENGINE_BIND))
		return q->vm != vm ? -ENODEV : -EINVAL;
	gvm__vm_reap(vm);
	for (i = 0; i < n; i++) {
		err = check_op(vm, &ops[i]);
		if (err)
			return err;
	}
	memset(&b, 0, offsetof(struct bind, upd));
	b.vm = vm;
	b.lists = b.lists_inl;
	b.cap_lists = GVM_ARRAY_SIZE(b.lists_inl);
	b.touched = b.touched_inl;
	b.cap_touched = GVM_ARRAY_SIZE(b.touched_inl);
	b.bos = b.bos_inl;
	b.cap_bos = GVM_ARRAY_SIZE(b.bos_inl);
	b.deps = b.deps_inl;
	b.cap_deps = GVM_ARRAY_SIZE(b.deps_inl);
	b.dead = b.dead_inl;
	b.cap_dead = GVM_ARRAY_SIZE(b.dead_inl);
	gvm__vm_update_init(&b.upd, vm);
	b.q = q ? q : vm->bind_q;
	b.ops = ops;
	b.n = n;
	GVM_TRACE_BIND(vm->dev, vm->dev->name, b.q->sq, n);
	err = gvm__syncs_parse(&b.syncs, vm, syncs, ns);
	if (err)
		return err;

	/* CPU changes made before this call first, no lock held (mm/mm.h). */
	if (vm->mm)
		gvm__mm_flush(vm->mm);
	gvm__mutex_lock(&vm->lock);
	if (vm->closed || gvm__vm_banned(vm)) {
		err = vm->closed ? -EINVAL : -EIO;
		goto out_unlock;
	}
	err = parse(&b);
	if (!err)
		err = check_mappings(&b);
	if (!err)
		err = attach_userptrs(&b);
	if (!err)
		err = collect_bos(&b);
	if (!err)
		err = lock_all(&b);
	if (!err)
		err = prealloc_vm_bos(&b);
	if (!err)
		err = move_prefetched(&b);
	if (!err)
		err = plan(&b);
	if (!err)
		err = gather_deps(&b);
	if (!err)
		err = collect_dead(&b);
	if (!err)
		err = prepare(&b);
	if (err)
		goto out_unwind;

	/* ---- point of no return ---- */
	if (b.inline_bind) {
		if (gvm__bind_before_commit)
			gvm__bind_before_commit(vm);
		gvm__vm_update_commit(&b.upd, GVM_UPDATE_STALE_ZAP);
		gvm__mutex_unlock(&vm->pt_lock);
		b.pt_locked = false;
	} else {
		b.done = gvm__bind_job_arm(b.bj);
	}
	commit_vmas(&b);
	if (!b.inline_bind) {
		publish(&b, b.done);
		gvm__range_fence_add(vm, b.rf,
				     b.nr_touched ? b.touched[0].lo : 0,
				     b.nr_touched ?
					     b.touched[b.nr_touched - 1].hi : 0,
				     b.done);
		b.rf = NULL;
		gvm__queue_set_last(b.q, b.done);
		/* prepare moved a non-empty dead to the heap */
		gvm__bind_job_push(b.bj, vm, &b.upd,
				   b.nr_dead ? b.dead : NULL, b.nr_dead);
		b.bj = NULL;
		b.dead = NULL;
		b.nr_dead = 0;
		gvm__vm_stat_add_locked(vm, bind_jobs, 1);
	}
	gvm__vm_stat_add_locked(vm, binds, 1);
	gvm__vm_stat_add_locked(vm, bind_ops, n);
	if (b.inline_bind) {
		/*
		 * The TLB invalidation before the reservations go: until it
		 * is acknowledged an engine may still reach the memory of a
		 * BO this bind unmapped, and with the BO unlocked and idle a
		 * move could free that memory meanwhile (review finding).
		 * A TLB fence depends on no bind job: vm->lock and the
		 * reservations may be held while waiting for it.
		 */
		struct gvm_fence *tlb = gvm__vm_update_tlb_submit(&b.upd);

		if (tlb) {
			gvm_fence_wait(tlb, GVM_TIMEOUT_INFINITE);
			gvm_fence_put(tlb);
		}
	}
	gvm_lockset_fini(&b.ls);
	b.ls_init = false;
	fini_lists(&b);
	if (b.inline_bind) {
		gvm__mutex_unlock(&vm->lock);
		/* tables are freed under pt_lock */
		gvm__vm_update_free_tables(&b.upd, false);
		for (i = 0; i < b.nr_dead; i++)
			gvm__vma_free(b.dead[i], vm);
	} else {
		gvm__mutex_unlock(&vm->lock);
	}
	svm_prefetch(&b);
	if (b.syncs.nr) {
		if (!b.done)	/* inline */
			b.done = gvm__fence_get_stub();
		gvm__syncs_signal(&b.syncs, b.done);
	}
	bind_fini(&b);
	return 0;

out_unwind:
	gvm__vm_update_fini(&b.upd);	/* aborts a prepared update */
	if (b.pt_locked)
		gvm__mutex_unlock(&vm->pt_lock);
	if (b.bj)
		gvm__bind_job_abort(b.bj);
	unwind(&b);
	gvm__vm_stat_add_locked(vm, bind_errors, 1);
	if (b.nr_up) {
		/* Notifiers are removed with no lock held; the VMAs are still
		 * the lists' (fini frees them). */
		if (b.ls_init) {
			gvm_lockset_fini(&b.ls);
			b.ls_init = false;
		}
		gvm__mutex_unlock(&vm->lock);
		detach_userptrs(&b);
		gvm__mutex_lock(&vm->lock);
	}
out_unlock:
	fini_lists(&b);
	gvm__mutex_unlock(&vm->lock);
	bind_fini(&b);
	return err;
}
