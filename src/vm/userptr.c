// SPDX-License-Identifier: MIT
/*
 * Userptr: GPU mappings of ordinary process memory, never pinned; and the
 * same machinery for SVM ranges (svm.c), whose notifiers are children of
 * one per 512 MiB chunk (below, "SVM chunks").
 *
 * A userptr VMA (GVM_BIND_MAP_USERPTR) maps GPU [addr, addr + range) to
 * the CPU range [cpu, cpu + range) of the VM's mm.  Each one has an
 * interval notifier on its CPU range (mm/notifier.h) and the device
 * addresses of its pages, fetched with the notifier's sequence protocol:
 *
 *   attach (bind, before the point of no return, vm->lock held, no
 *   reservation): insert the notifier, register the range with the mm,
 *   read_begin, fetch the pages (-EFAULT unmapped, -EPERM writable mapping
 *   of read-only memory);
 *   commit (pt_update.c, the commit section under notifier_lock that also
 *   rechecks the sequence and commits the page tables): a userptr whose
 *   PTEs the update writes becomes live and leaves the invalidated list,
 *   unless its sequence moved since the fetch: then its PTEs are zapped in
 *   the staged update before the commit (written invalid, never visible
 *   valid) and it goes (or stays) on the list; one the update retires
 *   stops being live.  Userptrs rewritten by a bind that does not create them (a
 *   PREFETCH, a split) go through the same recheck;
 *   invalidation, pass 1 (mm event thread): under notifier_lock, bump the
 *   sequence; if live, put the VMA on the invalidated list and either zap
 *   the PTEs and submit the TLB invalidation now, or, if the zap must wait
 *   (below), snapshot those fences and enable their signalling; pass 2:
 *   wait for them and zap (if it had to wait), then wait for the TLB;
 *   exec (gvm__userptr_revalidate, vm->lock held, before any reservation):
 *   only the VMAs on the invalidated list are refetched and rebound through
 *   the pipeline (RETRY: a collision refetches, 16 rounds); a VMA whose
 *   memory is gone is dropped from the list and stays zapped (the GPU
 *   faults there) instead of failing the exec.  Exec checks the list once
 *   more in the section that publishes its job (exec.c).
 *
 * What the zap waits for (snapshot_waits):
 *  - preempt-fence (LR) VMs: the queues' preempt fences (they stop at a
 *    lane boundary, parked, not failed); the rebind worker repins and
 *    resumes them (lr.c, with the interleaving against its resume);
 *  - other VMs, for a change not made yet (REMOVE from madvise: the kernel
 *    zaps the pages once the event has been read; MIGRATE: gvm's own): the
 *    VM's BOOKKEEP fences, so a kernel running on the userptr finishes on
 *    the old pages instead of faulting, as xe's notifier waits;
 *  - nothing for a change already made (UNMAP, REMAP, FORK: userfaultfd
 *    reports them after the fact): the old pages are gone, a kernel still
 *    using the mapping faults (its job fails with -EIO).
 * Waiting for bind jobs is safe: they take no vm->lock (a thread in
 * read_begin may hold it), only pt_lock, whose holders never wait.  It does
 * make a job held back by a fence the application has not signalled yet
 * hold back the invalidation, and with it the application's next bind or
 * exec on that mm (they flush the mm first, docs/mm.md).
 *
 * Locking: u->live, u->inval_link and vm->userptr_invalidated are protected
 * by vm->notifier_lock; u->seq, u->ext by vm->lock (a bind job writes from
 * the copies, and the sequence, its plan took: pt_update.h); u->wait, u->tlb_fence by the
 * invalidation holding u->finish; the notifier is removed (which waits for
 * a running invalidation) with no lock held.
 */
#include <errno.h>
#include <sys/mman.h>
#include <string.h>

#include "core/alloc.h"
#include "core/debug.h"
#include "core/itree.h"
#include "core/list.h"
#include "core/lockrank.h"
#include "core/sort.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/dev.h"
#include "vm/fault_queue.h"
#include "vm/lr.h"
#include "vm/pt_update.h"
#include "vm/svm.h"
#include "vm/userptr.h"
#include "vm/vm.h"

struct gvm_userptr {
	struct gvm_notifier notifier;
	struct gvm_notifier_finish finish;	/* in_use: notifier_lock */
	struct gvm_vm *vm;			/* immutable */
	struct gvm_vma *vma;			/* immutable */
	bool inserted;				/* notifier inserted (a plain
						   userptr; an SVM range's is a
						   child of its chunk's) */
	struct svm_chunk *chunk;		/* SVM ranges: immutable */
	bool gone;				/* vm->lock: no pages (the
						   CPU memory went away) */
	bool live;				/* notifier_lock */
	struct gvm_list inval_link;		/* notifier_lock: on
						   vm->userptr_invalidated, or
						   (SVM ranges) vm->svm_gc */
	/* pass 1 -> pass 2 (owned by the invalidation holding finish): */
	struct gvm_fence **wait;		/* fences to wait before the zap */
	unsigned int nr_wait;
	struct gvm_fence *tlb_fence;		/* the zap's TLB invalidation */
	uint64_t seq;				/* vm->lock */
	struct gvm_pt_extent *ext;		/* vm->lock */
	size_t nr_ext;
	/* SVM ranges (svm.c), constant after gvm__userptr_attach(): the
	   range is refetched on GPU faults only (where placement is
	   decided), never by exec's repin; pages in the device memory of
	   the VM's device or of a device linked to it are mapped there */
	bool svm;
	uint32_t atomic_policy;			/* GVM_ATOMIC_* */
	bool in_devmem;				/* vm->lock: ext points into
						   the VM's device's memory */
	bool in_peer;				/* vm->lock: ext points into a
						   linked device's memory,
						   through its window */
	bool atomic_anywhere;			/* vm->lock: DEVICE policy
						   relaxed (contention, svm.c)
						   until it is in device
						   memory again */
	bool no_migrate;			/* vm->lock: SVM: stays in
						   system memory */
};

static uint64_t cpu_start(const struct gvm_vma *vma)
{
	return vma->va.obj_offset;
}

static void mark_invalidated(struct gvm_userptr *u)
{
	if (!u->svm && gvm_list_empty(&u->inval_link))
		gvm_list_add_tail(&u->inval_link, &u->vm->userptr_invalidated);
}

/*
 * notifier_lock held: zaps a live userptr's PTEs for invalidation @r and
 * submits the TLB invalidation; its fence or NULL.  All of them, except
 * for an SVM range partly unmapped: only the unmapped part (a 2 MiB leaf
 * over it goes whole), so the rest stays mapped until the collector
 * splits the range (svm.c).
 */
static void zap_span_locked(struct gvm_userptr *u,
			    const struct gvm_notifier_range *r,
			    struct gvm_pt_tlb *tlb)
{
	uint64_t lo = u->vma->va.addr, hi = lo + u->vma->va.range;

	if (u->svm && r->event == GVM_MM_EVENT_UNMAP) {
		/* CPU address == GPU address for a range */
		if (r->start > lo)
			lo = r->start & ~(uint64_t)(GVM_MM_PAGE_SIZE - 1);
		if (r->last + 1 < hi)
			hi = r->last + 1;
	}
	gvm__pt_zap(&u->vm->pt, lo, hi - lo, tlb);
	/*
	 * Nothing left to zap: a concurrent invalidation zapped it and may
	 * not have finished its TLB invalidation.  Ours must not return
	 * before the TLBs are clean either (a migration copies the pages
	 * once it returns), so it flushes the span anyway
	 * (verification/models/two_pass.pml, finding 1).
	 */
	if (!tlb->full && !tlb->size)
		gvm__pt_tlb_span(&u->vm->pt, lo, hi, tlb);
}

static struct gvm_fence *zap_locked(struct gvm_userptr *u,
				    const struct gvm_notifier_range *r)
{
	struct gvm_pt_tlb tlb;

	gvm_lockdep_assert_held(&u->vm->notifier_lock);
	if (!u->live)
		return NULL;
	zap_span_locked(u, r, &tlb);
	return gvm__vm_tlb_submit(u->vm, &tlb);
}

static void wait_put(struct gvm_fence **f, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		gvm_fence_wait(f[i], GVM_TIMEOUT_INFINITE);
		gvm_fence_put(f[i]);
	}
	gvm__free(f);
}

/*
 * notifier_lock held: the fences the zap must wait for, signalling
 * enabled (references; *@f NULL if none, or out of memory: then a kernel
 * still running there faults instead).
 *  - preempt-fence (LR) VMs: the queues' preempt fences: they stop at a
 *    lane boundary, parked, and the rebind worker resumes them (lr.c);
 *  - other VMs, for a change that has not happened yet (REMOVE, MIGRATE):
 *    the VM's BOOKKEEP fences, so that a running kernel finishes on the
 *    old pages instead of faulting, as xe's notifier does.  A change
 *    already made (UNMAP, REMAP, FORK: userfaultfd reports them after
 *    the fact; PROTECT: the application reports its mprotect) gains
 *    nothing from waiting: the memory is gone or already protected.
 */
static void snapshot_waits(struct gvm_userptr *u,
			   const struct gvm_notifier_range *r,
			   struct gvm_fence ***f, unsigned int *n)
{
	struct gvm_vm *vm = u->vm;

	*f = NULL;
	*n = 0;
	if (gvm__vm_preempt_mode(vm)) {
		gvm__lr_snapshot_locked(vm, f, n);
	} else if (!(vm->flags & GVM_VM_LR_MODE) &&
		   (r->event == GVM_MM_EVENT_REMOVE ||
		    r->event == GVM_MM_EVENT_MIGRATE)) {
		if (gvm_resv_get_fences(&vm->resv, GVM_RESV_USAGE_BOOKKEEP,
					f, n)) {
			*f = NULL;
			*n = 0;
		}
	}
	for (unsigned int i = 0; i < *n; i++)	/* all stop in parallel */
		gvm_fence_enable_signaling((*f)[i]);
}

/*
 * Pass 1: the sequence moves, the userptr goes on the invalidated list (so
 * an exec from now on repins it, and one that passed its check before has
 * its fence in the reservation), and device access is stopped or started
 * being stopped: zap + TLB submit at once, or, when the zap must wait for
 * fences (see snapshot_waits), their signalling is enabled and pass 2
 * waits, zaps and invalidates.  N devices' userptrs all start before any
 * waits (the two-pass rule, seed 004).
 */
static struct gvm_notifier_finish *
inval_start(struct gvm_notifier *n, const struct gvm_notifier_range *r,
	    uint64_t cur_seq)
{
	struct gvm_userptr *u = gvm_container_of(n, struct gvm_userptr,
						 notifier);
	struct gvm_vm *vm = u->vm;
	struct gvm_fence *tlb = NULL, **wait;
	unsigned int nr_wait;

	gvm__mutex_lock(&vm->notifier_lock);
	gvm__notifier_set_seq(n, cur_seq);
	if (!u->live) {
		gvm__mutex_unlock(&vm->notifier_lock);
		return NULL;
	}
	mark_invalidated(u);
	gvm__vm_stat_add(vm, userptr_invalidations, 1);
	snapshot_waits(u, r, &wait, &nr_wait);
	if (!nr_wait)
		tlb = zap_locked(u, r);
	if ((nr_wait || tlb) && gvm__notifier_finish_claim(&u->finish)) {
		u->wait = wait;
		u->nr_wait = nr_wait;
		u->tlb_fence = tlb;
		gvm__mutex_unlock(&vm->notifier_lock);
		return &u->finish;
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	/* Nothing to wait for, or the finish state is busy: both passes. */
	if (nr_wait) {
		wait_put(wait, nr_wait);
		gvm__mutex_lock(&vm->notifier_lock);
		tlb = zap_locked(u, r);
		gvm__mutex_unlock(&vm->notifier_lock);
	}
	if (tlb) {
		gvm_fence_wait(tlb, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(tlb);
	}
	return NULL;
}

/* Pass 2: wait for what pass 1 started; zap now if it waited for fences. */
static void inval_finish(struct gvm_notifier *n, struct gvm_notifier_finish *f,
			 const struct gvm_notifier_range *r)
{
	struct gvm_userptr *u = gvm_container_of(n, struct gvm_userptr,
						 notifier);
	struct gvm_vm *vm = u->vm;
	struct gvm_fence *tlb = u->tlb_fence;

	(void)f;
	if (u->nr_wait) {
		wait_put(u->wait, u->nr_wait);
		gvm__mutex_lock(&vm->notifier_lock);
		tlb = zap_locked(u, r);	/* not if unbound meanwhile */
		gvm__mutex_unlock(&vm->notifier_lock);
	}
	u->wait = NULL;
	u->nr_wait = 0;
	u->tlb_fence = NULL;
	if (tlb) {
		gvm_fence_wait(tlb, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(tlb);
	}
	gvm__mutex_lock(&vm->notifier_lock);
	gvm__notifier_finish_release(&u->finish);
	gvm__mutex_unlock(&vm->notifier_lock);
}

static const struct gvm_notifier_ops userptr_notifier_ops = {
	.invalidate_start = inval_start,
	.invalidate_finish = inval_finish,
};

/* ---- SVM chunks: one notifier for many ranges ---------------------------- */

/*
 * An SVM range does not insert a notifier of its own: the VM inserts one
 * per 512 MiB-aligned chunk of address space, the first time a range is
 * made in it (drm_gpusvm's notifier granularity), and the chunk's callback
 * invalidates the ranges inside it that the invalidation hits.  Each
 * range's notifier is a child (notifier.h): the callback moves the
 * sequences of the ranges it hits only, so a collision in one range does
 * not make its neighbours refetch, and a range made after an event was
 * read is skipped by it, as an inserted notifier would be.
 *
 * SVM ranges live in fault-mode VMs only, whose invalidations never wait
 * for fences (no preempt fences, no job fences in fault mode): pass 1
 * zaps every hit range and submits one TLB invalidation for all of them;
 * pass 2 waits for it.
 *
 * Locking: vm->svm_chunks (the list) is protected by vm->lock; a chunk's
 * range tree, and its finish state, by vm->notifier_lock.  Chunks stay
 * until the VM is destroyed (their notifiers are removed with no lock
 * held, after every range is gone).
 */
#define SVM_CHUNK (512ull << 20)

struct svm_chunk {
	struct gvm_notifier notifier;
	struct gvm_notifier_finish finish;	/* in_use: notifier_lock */
	struct gvm_vm *vm;			/* immutable */
	struct gvm_list link;			/* vm->lock: vm->svm_chunks */
	struct gvm_itree ranges;		/* notifier_lock: its userptrs */
	struct gvm_fence *tlb_fence;		/* the invalidation holding
						   finish */
};

static struct gvm_notifier_finish *
chunk_inval_start(struct gvm_notifier *n, const struct gvm_notifier_range *r,
		  uint64_t cur_seq)
{
	struct svm_chunk *c = gvm_container_of(n, struct svm_chunk, notifier);
	struct gvm_vm *vm = c->vm;
	struct gvm_pt_tlb tlb = { 0 }, t;
	struct gvm_itree_iter it;
	struct gvm_userptr *u;
	struct gvm_fence *fence;
	bool unmapped = false;

	gvm__mutex_lock(&vm->notifier_lock);
	gvm__notifier_set_seq(n, cur_seq);
	for (u = gvm__itree_iter_first(&c->ranges, &it, r->start, r->last); u;
	     u = gvm__itree_iter_next(&it)) {
		if (gvm__notifier_skips(r, &u->notifier))
			continue;
		gvm__notifier_set_seq(&u->notifier, cur_seq);
		/* Its memory went (all or part): collect it. */
		if (r->event == GVM_MM_EVENT_UNMAP &&
		    gvm_list_empty(&u->inval_link)) {
			gvm_list_add_tail(&u->inval_link, &vm->svm_gc);
			unmapped = true;
		}
		if (!u->live)
			continue;
		gvm__vm_stat_add(vm, userptr_invalidations, 1);
		zap_span_locked(u, r, &t);
		gvm__pt_tlb_add(&vm->pt, &tlb, &t);
	}
	/* Its attributes go back to the defaults (attr.c). */
	if (r->event == GVM_MM_EVENT_UNMAP &&
	    gvm__attrs_note_unmap(vm, r->start, r->last + 1))
		unmapped = true;
	if (unmapped)
		gvm__fault_queue_collect(vm);
	fence = gvm__vm_tlb_submit(vm, &tlb);
	if (fence && gvm__notifier_finish_claim(&c->finish)) {
		c->tlb_fence = fence;
		gvm__mutex_unlock(&vm->notifier_lock);
		return &c->finish;
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	/* Nothing to wait for, or the finish state is busy: both passes. */
	if (fence) {
		gvm_fence_wait(fence, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(fence);
	}
	return NULL;
}

static void chunk_inval_finish(struct gvm_notifier *n,
			       struct gvm_notifier_finish *f,
			       const struct gvm_notifier_range *r)
{
	struct svm_chunk *c = gvm_container_of(n, struct svm_chunk, notifier);
	struct gvm_fence *fence = c->tlb_fence;

	(void)f;
	(void)r;
	c->tlb_fence = NULL;
	gvm_fence_wait(fence, GVM_TIMEOUT_INFINITE);
	gvm_fence_put(fence);
	gvm__mutex_lock(&c->vm->notifier_lock);
	gvm__notifier_finish_release(&c->finish);
	gvm__mutex_unlock(&c->vm->notifier_lock);
}

static const struct gvm_notifier_ops chunk_notifier_ops = {
	.invalidate_start = chunk_inval_start,
	.invalidate_finish = chunk_inval_finish,
};

/* vm->lock held: the chunk around @addr, inserted if it was not. */
static struct svm_chunk *chunk_get(struct gvm_vm *vm, uint64_t addr)
{
	uint64_t base = addr & ~(SVM_CHUNK - 1);
	struct gvm_list *pos;
	struct svm_chunk *c;

	gvm_list_for_each(pos, &vm->svm_chunks) {
		c = gvm_list_entry(pos, struct svm_chunk, link);
		if (c->notifier.start == base)
			return c;
	}
	c = gvm__calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->vm = vm;
	gvm__itree_init(&c->ranges);
	if (gvm__notifier_insert(vm->mm, &c->notifier, base, SVM_CHUNK,
				 &chunk_notifier_ops)) {
		gvm__itree_fini(&c->ranges);
		gvm__free(c);
		return NULL;
	}
	gvm_list_add_tail(&c->link, &vm->svm_chunks);
	return c;
}

int gvm__userptr_chunks_watch(struct gvm_vm *vm, uint64_t start,
			      uint64_t end)
{
	uint64_t a;

	gvm_lockdep_assert_held(&vm->lock);
	for (a = start & ~(SVM_CHUNK - 1); a < end; a += SVM_CHUNK)
		if (!chunk_get(vm, a))
			return -ENOMEM;
	return 0;
}

/* vm->lock held: range @u joins its chunk, its child notifier made. */
static int chunk_add(struct gvm_userptr *u)
{
	struct gvm_vm *vm = u->vm;
	const struct gvm_vma *vma = u->vma;
	struct svm_chunk *c = chunk_get(vm, cpu_start(vma));
	uint64_t stamp;
	int err;

	if (!c)
		return -ENOMEM;
	stamp = gvm__notifier_stamp_read(vm->mm);
	gvm__mutex_lock(&vm->notifier_lock);
	err = gvm__itree_insert(&c->ranges, cpu_start(vma),
				cpu_start(vma) + vma->va.range - 1, u);
	if (!err) {
		gvm__notifier_init_child(vm->mm, &u->notifier, cpu_start(vma),
					 vma->va.range, stamp);
		u->chunk = c;
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	return err;
}

void gvm__userptr_chunks_fini(struct gvm_vm *vm)
{
	struct gvm_list *pos, *tmp;

	gvm_lockdep_assert_none_held();	/* removing a notifier waits */
	gvm_list_for_each_safe(pos, tmp, &vm->svm_chunks) {
		struct svm_chunk *c = gvm_list_entry(pos, struct svm_chunk,
						     link);

		GVM_WARN_ON(!gvm__itree_empty(&c->ranges));
		gvm__notifier_remove(&c->notifier);
		gvm_list_del(&c->link);
		gvm__itree_fini(&c->ranges);
		gvm__free(c);
	}
}

/*
 * The new pages' extents replace the old ones, and @seq, the sequence
 * read before they were fetched, replaces theirs: the two change together
 * and only here.  A fetch that fails leaves both as they were, so every
 * later writer of the PTEs from u->ext (the fault's retry, a bind that
 * rewrites the range: bind.c plan_mirror) rechecks against the sequence
 * those pages were fetched at and sees every invalidation since; a fresh
 * sequence next to the old pages would pass the recheck and map pages an
 * invalidation took away (the SVM fuzzer's store to read-only memory and
 * GPU writes to freed frames, docs/verification.md).
 * Extents in device memory hold no reference on it: the mm frees a block
 * only inside an invalidation of its range, after every notifier's second
 * pass (PTEs gone, TLBs flushed), and a fetch that raced with it fails the
 * sequence check at commit, so its extents are never written.
 */
static void set_pages(struct gvm_userptr *u, struct gvm_pt_extent *ext,
		      size_t n, uint64_t seq, bool in_devmem, bool in_peer)
{
	u->seq = seq;
	u->in_devmem = in_devmem;
	u->in_peer = in_peer;
	if (in_devmem || in_peer)
		u->atomic_anywhere = false;
	gvm__free(u->ext);
	u->ext = ext;
	u->nr_ext = n;
}

/*
 * Does the CPU still map all of @u's range with the access its mapping
 * needs?  Device-resident pages keep the CPU's protection, as Linux keeps
 * it in their device-private entries: a writable range whose memory was
 * made read-only (mprotect: the model mm reports it, invalidating first)
 * must not be mapped writable from device memory, and no range whose
 * memory was made PROT_NONE may be mapped from it at all (a read-only
 * range used to be, whatever the protection: the SVM fuzzer's read of
 * PROT_NONE memory, docs/verification.md).
 */
static bool cpu_allows(struct gvm_userptr *u)
{
	struct gvm_mm_vma m;
	uint64_t a = cpu_start(u->vma), end = a + u->vma->va.range;
	unsigned int need = u->vma->va.flags & GVM_VA_READONLY ?
			    PROT_READ | PROT_WRITE : PROT_WRITE;

	return !gvm__mm_lookup(u->vm->mm, a, 0, &m) && m.end >= end &&
	       (m.prot & need);
}

/*
 * An SVM range whose pages are all in one device memory its device can
 * reach (its own, or a linked device's: peer to peer) maps them there: 1
 * (fetched), 0 (not there: fetch system pages; any page in device memory
 * was brought back), or a negative errno.
 */
static int fetch_devmem(struct gvm_userptr *u, uint64_t seq)
{
	const struct gvm_vma *vma = u->vma;
	struct gvm_mm *mm = u->vm->mm;
	struct gvm_mm_devmem *dm;
	struct gvm_pt_extent *ext;
	uint64_t off;
	size_t n;
	bool other, local;
	int err;

	if (!u->svm)
		return 0;
	dm = gvm__mm_devmem_lookup(mm, cpu_start(vma), vma->va.range, NULL,
				   &off, &other);
	if (dm && !cpu_allows(u)) {
		/* Fetched from system memory, which says why it cannot. */
		gvm__mm_devmem_put(dm);
		return 0;
	}
	if (!dm) {
		/* A range never mixes system and device pages. */
		return other ? gvm__mm_migrate_to_ram(mm, cpu_start(vma),
						      vma->va.range) : 0;
	}
	if (!gvm__svm_devmem_device(dm)) {
		/* No device's memory: data a failed migration left in a
		   stage (mm/devmem.c, give_back).  Back to system memory. */
		gvm__mm_devmem_put(dm);
		return gvm__mm_migrate_to_ram(mm, cpu_start(vma),
					      vma->va.range);
	}
	err = gvm__svm_devmem_extents(dm, u->vm->dev, off, vma->va.range,
				      &ext, &n, &local);
	gvm__mm_devmem_put(dm);
	if (err == -EXDEV)	/* a device we are not linked to */
		return gvm__mm_migrate_to_ram(mm, cpu_start(vma),
					      vma->va.range);
	if (err)
		return err;
	set_pages(u, ext, n, seq, local, !local);
	if (!local)
		gvm__vm_stat_add(u->vm, svm_p2p_binds, 1);
	return 1;
}

/*
 * Injection site INVAL (gvm__mm_inject_inval): the range is invalidated
 * between its fetch and its commit, as a fork() or a reclaim on another
 * thread could; the commit's sequence recheck must catch it.
 */
static void inject_inval(struct gvm_userptr *u)
{
	gvm__mm_inject_inval(u->vm->mm, cpu_start(u->vma), u->vma->va.range);
}

/* Device addresses of the pages, as extents (contiguous runs merged). */
static int fetch(struct gvm_userptr *u)
{
	const struct gvm_vma *vma = u->vma;
	struct gvm_vm *vm = u->vm;
	struct gvm_mm_extent *mext;
	struct gvm_pt_extent *ext;
	size_t i, n;
	uint64_t seq;
	int err;

	/* Before the lookup: a migration back moves the sequence. */
	seq = gvm__notifier_read_begin(&u->notifier);
	err = fetch_devmem(u, seq);
	if (err > 0)
		inject_inval(u);
	if (err)
		return err < 0 ? err : 0;
	err = gvm__mm_register(vm->mm, cpu_start(vma), vma->va.range);
	if (err)
		return err;
	seq = gvm__notifier_read_begin(&u->notifier);
	err = gvm__mm_fetch(vm->mm, cpu_start(vma), vma->va.range,
			    !(vma->va.flags & GVM_VA_READONLY), &mext, &n);
	if (err)
		return err;
	inject_inval(u);
	ext = gvm__malloc(n * sizeof(*ext));
	if (!ext) {
		gvm__free(mext);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		ext[i] = (struct gvm_pt_extent){ mext[i].addr, mext[i].len };
	gvm__free(mext);
	set_pages(u, ext, n, seq, false, false);
	return 0;
}

int gvm__userptr_attach(struct gvm_vm *vm, struct gvm_vma *vma,
			const struct gvm_mem_attrs *svm)
{
	struct gvm_userptr *u;
	int err;

	gvm_lockdep_assert_held(&vm->lock);
	if (!vm->mm)
		return -EINVAL;
	u = gvm__calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->vm = vm;
	u->vma = vma;
	/* Before the notifier is in: its callbacks read them. */
	u->svm = svm != NULL;
	u->atomic_policy = svm ? svm->atomic : GVM_ATOMIC_UNDEFINED;
	gvm_list_init(&u->inval_link);
	if (u->svm) {
		err = chunk_add(u);
	} else {
		err = gvm__notifier_insert(vm->mm, &u->notifier,
					   cpu_start(vma), vma->va.range,
					   &userptr_notifier_ops);
		u->inserted = !err;
	}
	if (err) {
		gvm__free(u);
		return err;
	}
	vma->userptr = u;
	/* An SVM range is fetched by the fault that binds it, once placed. */
	return u->svm ? 0 : fetch(u);
}

void gvm__userptr_detach(struct gvm_vma *vma)
{
	struct gvm_userptr *u = vma->userptr;

	if (!u)
		return;
	gvm_lockdep_assert_none_held();	/* removing the notifier waits */
	/* Live only if a failed bind job never took it down (banned VM). */
	gvm__mutex_lock(&u->vm->notifier_lock);
	u->live = false;
	gvm_list_del(&u->inval_link);
	/* Out of its chunk: no invalidation finds it any more. */
	if (u->chunk)
		gvm__itree_remove(&u->chunk->ranges, cpu_start(u->vma), u);
	gvm__mutex_unlock(&u->vm->notifier_lock);
	if (u->inserted)
		gvm__notifier_remove(&u->notifier);
	set_pages(u, NULL, 0, u->seq, false, false);
	gvm__free(u);
	vma->userptr = NULL;
}

struct gvm_vma *gvm__userptr_gc_pop(struct gvm_vm *vm)
{
	struct gvm_userptr *u = NULL;

	gvm_lockdep_assert_held(&vm->lock);
	gvm__mutex_lock(&vm->notifier_lock);
	while (!gvm_list_empty(&vm->svm_gc)) {
		u = gvm_list_first_entry(&vm->svm_gc, struct gvm_userptr,
					 inval_link);
		gvm_list_del(&u->inval_link);
		/*
		 * Alive while listed (detach unlinks it first); once out of
		 * the range space it may be freed with no lock held, so only
		 * one still inserted (vm->lock keeps it so) is handed out.
		 */
		if (u->vma->va.inserted)
			break;
		u = NULL;
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	return u ? u->vma : NULL;
}

bool gvm__userptr_in_devmem(const struct gvm_vma *vma)
{
	return vma->userptr->in_devmem;
}

bool gvm__userptr_atomic(const struct gvm_vma *vma)
{
	const struct gvm_userptr *u = vma->userptr;

	switch (u->atomic_policy) {
	case GVM_ATOMIC_DEVICE:
		return u->in_devmem || u->in_peer || u->atomic_anywhere;
	case GVM_ATOMIC_CPU:
		return false;
	default:
		return true;
	}
}

void gvm__userptr_set_atomic_anywhere(struct gvm_vma *vma)
{
	vma->userptr->atomic_anywhere = true;
}

uint32_t gvm__userptr_atomic_policy(const struct gvm_vma *vma)
{
	return vma->userptr->atomic_policy;
}

bool gvm__userptr_in_peer(const struct gvm_vma *vma)
{
	return vma->userptr->in_peer;
}

bool gvm__userptr_no_migrate(const struct gvm_vma *vma)
{
	return vma->userptr->no_migrate;
}

void gvm__userptr_set_no_migrate(struct gvm_vma *vma)
{
	vma->userptr->no_migrate = true;
}

int gvm__userptr_refresh(struct gvm_vma *vma)
{
	struct gvm_userptr *u = vma->userptr;

	gvm_lockdep_assert_held(&u->vm->lock);
	if (u->gone)
		return -EFAULT;
	return fetch(u);
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
			 uint64_t len, const struct gvm_pt_extent *inl,
			 struct gvm_pt_extent **out, size_t *n, size_t *cap)
{
	const struct gvm_userptr *u = vma->userptr;

	return gvm__extents_slice(u->ext, u->nr_ext, offset, len, inl, out, n,
				  cap);
}

bool gvm__svm_mutant_no_seq_recheck;

/*
 * Has an invalidation of @u run since sequence @seq (pages fetched then
 * are stale)?  The recheck; the test-only mutant skips it for SVM ranges.
 */
static bool seq_moved(struct gvm_userptr *u, uint64_t seq)
{
	if (u->svm && gvm__svm_mutant_no_seq_recheck)
		return false;
	return gvm__notifier_read_retry(&u->notifier, seq);
}

uint64_t gvm__userptr_seq(const struct gvm_vma *vma)
{
	gvm_lockdep_assert_held(&vma->userptr->vm->lock);
	return vma->userptr->seq;
}

bool gvm__userptr_stale_locked(struct gvm_vma *vma, uint64_t seq)
{
	struct gvm_userptr *u = vma->userptr;

	gvm_lockdep_assert_held(&u->vm->notifier_lock);
	return !u->gone && seq_moved(u, seq);
}

bool gvm__userptr_commit(struct gvm_vma *vma, bool live, uint64_t seq,
			 struct gvm_pt_update *staged)
{
	struct gvm_userptr *u = vma->userptr;
	struct gvm_vm *vm = u->vm;
	struct gvm_pt_tlb tlb;

	gvm_lockdep_assert_held(&vm->notifier_lock);
	u->live = live && !u->gone;
	if (!u->live || !seq_moved(u, seq)) {
		/* Fresh PTEs, or none any more. */
		gvm_list_del(&u->inval_link);
		return false;
	}
	/*
	 * Invalidated since the fetch: the pages may be gone already (the
	 * invalidation returned; it found nothing live to wait for).  The
	 * update, not committed yet, writes its PTEs zapped, so the GPU
	 * never sees a valid one (issue 15), and whatever of the VMA is
	 * committed is zapped too.
	 */
	if (staged)
		gvm__pt_update_zap(staged, vma->va.addr, vma->va.range);
	gvm__pt_zap(&vm->pt, vma->va.addr, vma->va.range, &tlb);
	mark_invalidated(u);
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

/*
 * The VMAs on the invalidated list that are still in the VA tree, with
 * their pages fetched again (no reservation is held: fetching may block on
 * the mm).  One whose memory is gone leaves the list and stays zapped: the
 * GPU faults there.  vm->lock held.
 */
static int refetch(struct gvm_vm *vm, struct gvm_vma ***out, size_t *nr_out)
{
	struct gvm_vma **v = NULL;
	struct gvm_list *pos;
	size_t nr = 0, cap = 0, i, k;
	int err = 0;

	gvm_lockdep_assert_held(&vm->lock);
	gvm__mutex_lock(&vm->notifier_lock);
	gvm_list_for_each(pos, &vm->userptr_invalidated) {
		struct gvm_userptr *u = gvm_list_entry(pos, struct gvm_userptr,
						       inval_link);

		if (!u->vma->va.inserted)
			continue;
		err = GVM_GROW(v, cap, nr + 1);
		if (err)
			break;
		v[nr++] = u->vma;
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	/* The list only changes under notifier_lock; vm->lock keeps VMAs. */
	for (i = 0, k = 0; i < nr && !err; i++) {
		err = fetch(v[i]->userptr);
		if (err == -EFAULT || err == -EPERM) {
			gvm__mutex_lock(&vm->notifier_lock);
			gvm_list_del(&v[i]->userptr->inval_link);
			gvm__mutex_unlock(&vm->notifier_lock);
			err = 0;
			continue;
		}
		v[k++] = v[i];
	}
	if (err) {
		gvm__free(v);
		return err;
	}
	*out = v;
	*nr_out = k;
	return 0;
}

int gvm__userptr_revalidate(struct gvm_vm *vm)
{
	struct gvm_vm_update upd;
	struct gvm_vma **v;
	int tries, err;
	size_t nr, i;

	gvm_lockdep_assert_held(&vm->lock);
	for (tries = 0; tries < REPIN_RETRIES; tries++) {
		err = refetch(vm, &v, &nr);
		if (err)
			return err;
		if (!nr) {
			gvm__free(v);
			return 0;
		}
		/* One page-table update for all of them, in address order. */
		gvm__sort(v, nr, sizeof(*v), gvm__vma_cmp_addr);
		gvm__vm_update_init(&upd, vm);
		for (i = 0; i < nr && !err; i++)
			err = gvm__vm_update_add(&upd, v[i]->va.addr,
						 v[i]->va.addr + v[i]->va.range,
						 v[i]);
		if (!err)
			err = gvm__vm_update_run(&upd, GVM_UPDATE_STALE_RETRY);
		gvm__vm_update_fini(&upd);
		gvm__free(v);
		if (!err)
			gvm__vm_stat_add(vm, userptr_repins, nr);
		if (err != -EAGAIN)
			return err;
	}
	return -EAGAIN;
}
