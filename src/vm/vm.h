/* SPDX-License-Identifier: MIT */
/*
 * VMs, VMAs and queues (internal).  The semantics are in docs/vm.md, the
 * locks in docs/locking.md; each field says what protects it.
 */
#ifndef GVM_VM_VM_H
#define GVM_VM_VM_H

#include <pthread.h>
#include <stddef.h>

#include <gvm/resv.h>
#include <gvm/sched.h>
#include <gvm/vm.h>

#include "core/itree.h"
#include "core/list.h"
#include "pt/pt.h"
#include "vm/attr.h"
#include "vm/va.h"

struct gvm_ufence;

/* One BO mapped in one VM: the VM's handle on it. */
struct gvm_vm_bo {
	struct gvm_vm *vm;		/* immutable */
	struct gvm_bo *bo;		/* immutable */
	struct gvm_list vm_link;	/* vm->vm_bos; vm->lock */
	struct gvm_list bo_link;	/* bo->vm_bos; bo->resv */
	struct gvm_list vmas;		/* gvm_vma::vm_bo_link; written with
					   vm->lock and bo->resv held, read
					   with either */
	bool evicted;			/* bo->resv: the BO moved, the VMAs'
					   PTEs are zapped: rebind before the
					   GPU uses them */
};

/* A mapping: struct gvm_va plus the VM layer's state.  vm->lock unless
   a field says otherwise. */
struct gvm_vma {
	struct gvm_va va;		/* must be first */
	struct gvm_vm_bo *vm_bo;	/* KIND_BO: the BO's handle */
	struct gvm_list vm_bo_link;	/* in vm_bo->vmas */
	struct gvm_ufence *ufence;	/* user fence of the bind that made
					   it (reference), or NULL */
	bool bo_ref;			/* holds a reference on the BO */
	struct gvm_fence *bind_fence;	/* the queued bind that writes its
					   PTEs (reference), or NULL: until it
					   signals, nothing else may */
	struct gvm_userptr *userptr;	/* KIND_USERPTR: its CPU side
					   (userptr.c) */
	bool fault_pending;		/* fault mode: mapped without
					   IMMEDIATE and not bound yet; its
					   first GPU fault binds it (fault.c) */
};

_Static_assert(offsetof(struct gvm_vma, va) == 0,
	       "to_vma() casts a struct gvm_va to its gvm_vma");

static inline struct gvm_vma *to_vma(struct gvm_va *va)
{
	return (struct gvm_vma *)va;
}

static inline struct gvm_bo *gvm__vma_bo(const struct gvm_vma *vma)
{
	return (struct gvm_bo *)vma->va.obj;
}

struct gvm_queue {
	struct gvm_vm *vm;		/* immutable; holds a reference */
	uint32_t engine;		/* immutable: GVM_ENGINE_* */
	uint32_t id;			/* immutable: gvm_queue_id() */
	struct gvm_sched_queue *sq;	/* immutable */
	void *dev_priv;			/* immutable: backend queue */
	struct gvm_mutex lock;		/* leaf: last */
	struct gvm_fence *last;		/* latest work's fence, or NULL;
					   q->lock (a bind queue's is set
					   with vm->lock held too, and read
					   under either) */
	int error;			/* atomic, set once (cmpxchg from 0):
					   gvm_queue_error() */

	/* Exec queues of preempt-fence (LR) VMs (lr.c). */
	struct gvm_list lr_link;	/* vm->lr_queues once it ran work;
					   vm->lock + notifier_lock to change,
					   either to read */
	uint64_t lr_context;		/* immutable: its preempt fences */
	uint64_t lr_seqno;		/* vm->lock */
	struct gvm_fence *pfence;	/* current preempt fence (reference)
					   or NULL; vm->lock + notifier_lock
					   to change, either to read */
	uint32_t lr_resumes;		/* vm->lock + notifier_lock to change,
					   either to read: suspends of retired
					   preempt fences not yet resumed */
};

struct gvm_vm_counters {		/* relaxed atomics */
	uint64_t binds, bind_ops, bind_jobs, bind_errors;
	uint64_t tlb_invals, tlb_full_flushes;
	uint64_t faults, execs, evictions;
	uint64_t purges, bytes_purged;	/* move.c: evictions that purged */
	uint64_t faults_serviced;	/* fault mode: resolved by a bind */
	uint64_t fault_batches;		/* fault_queue.c: batches with faults
					   of this VM */
	uint64_t fault_batch_max;	/* fault_queue.c: most faults of this
					   VM in one batch (written by the
					   servicer of a batch: one at a time
					   per device, fq->servicing) */
	uint64_t fault_retries;		/* fault.c: binds redone because the
					   pages changed while fetched */
	uint64_t svm_migration_retries;	/* svm.c: failed migrations retried */
	uint64_t svm_atomic_fallbacks;	/* svm.c: DEVICE atomics relaxed */
	uint64_t svm_p2p_binds;		/* userptr.c: ranges mapped in a
					   linked device's memory */
	uint64_t svm_d2d_migrations;	/* migrate.c: migrations copied
					   directly from a linked device's
					   memory */
	uint64_t svm_bytes_d2d;		/* their bytes */
	uint64_t faults_deduplicated;	/* fault_queue.c: completed with the
					   result of a fault on the same page,
					   or in the SVM range it bound */
	uint64_t svm_ranges_created, svm_ranges_dropped, svm_ranges_split;
	uint64_t svm_migrations, svm_migration_failures;
	uint64_t svm_capacity_fallbacks; /* svm.c: no VRAM, this fault only */
	uint64_t svm_evictions;		/* migrate.c: SVM allocations this
					   VM's migrations evicted */
	uint64_t svm_bytes_evicted;	/* their bytes */
	uint64_t svm_thrash_pins;	/* policy.c: ranges pinned to system
					   memory for thrashing */
	uint64_t svm_ranges_prefetched;	/* svm.c: made ahead of faults by
					   the policy's prefetch */
	uint64_t svm_faults_by_size[3];	/* 4K, 64K, 2M ranges */
	uint64_t bytes_to_vram, bytes_to_system;
	uint64_t userptr_invalidations, userptr_repins;
	uint64_t preemptions;		/* preempt fences that suspended */
	uint64_t lr_rebinds;		/* rebind-worker passes that resumed */
	uint64_t evict_waits;		/* exec waits for VRAM (evict.c) */
	uint64_t pt_reclaims;		/* pt_reclaim.c: its tables reclaimed */
	uint64_t pt_bytes_reclaimed;	/* their bytes */
	uint64_t pt_rebuilds;		/* revalidations that rebuilt them */
	uint64_t svm_bytes_to_vram;	/* migrate.c: of bytes_to_vram, SVM's */
};

/*
 * The per-VM counters of SVM data moving back to system memory
 * (migrate.c): bumped by the device memory the VM's migrations filled,
 * which holds a reference, as it may outlive the VM (its data stays there
 * until the CPU, another user or an eviction wants it).
 */
struct gvm_svm_back {
	uint32_t ref;			/* atomic: the VM, its devmems */
	uint64_t to_system;		/* relaxed atomics */
	uint64_t bytes_to_system;
	uint64_t cpu_faultbacks;
};

struct gvm_vm {
	struct gvm_device *dev;		/* immutable; holds a reference */
	struct gvm_mm *mm;		/* immutable */
	struct gvm_svm_back *svm_back;	/* immutable, reference; NULL
					   without an mm (migrate.c) */
	uint32_t flags;			/* immutable: GVM_VM_* */
	uint32_t refcount;		/* atomic: the user, VM-local BOs,
					   queues */
	void *dev_priv;			/* immutable after create */

	/*
	 * vm->lock: the VA tree, vm_bos, rf_queues, closed.  Held across
	 * a whole bind or exec; its holder never waits for a fence that may
	 * depend on a bind job.
	 */
	struct gvm_mutex lock;
	/*
	 * pt_lock: the page tables (vm->pt); held around a page-table
	 * update's prepare and commit (pt_update.c), by bind jobs too, which
	 * take no vm->lock.  Never held while waiting for a fence.
	 */
	struct gvm_mutex pt_lock;
	struct gvm_mutex notifier_lock;	/* page-table commits and zaps,
					   userptr live state */
	struct gvm_resv resv;		/* shared by VM-local BOs; bind
					   fences (KERNEL), exec fences
					   (BOOKKEEP) */
	struct gvm_va_space va;		/* vm->lock */
	struct gvm_va_space svm;	/* vm->lock: SVM ranges (svm.c) */
	struct gvm_pt_vm pt;		/* pt_lock (+ notifier_lock to commit
					   or zap) */
	struct gvm_list vm_bos;		/* vm->lock */
	struct gvm_rf_queue **rf_queues; /* vm->lock: pending binds' range
					   fences, per bind queue (bind_job.c) */
	size_t nr_rf_queues, cap_rf_queues;	/* vm->lock */
	struct gvm_list svm_gc;		/* notifier_lock: SVM ranges whose
					   CPU memory was unmapped, dropped
					   by the device's collector or the
					   next fault (svm.c) */
	uint32_t nr_local_bos;		/* atomic: VM-local BOs (limits.c) */
	struct gvm_list svm_chunks;	/* vm->lock: the SVM ranges' notifier
					   chunks (userptr.c) */
	struct gvm_itree attrs;		/* vm->lock: memory attributes
					   (attr.c) */
	struct gvm_attr_unmap_log attr_unmapped; /* notifier_lock: spans
					   the CPU unmapped, whose attributes
					   go back to the defaults (attr.c) */
	bool attrs_present;		/* written under vm->lock and
					   notifier_lock: attrs not empty */
	struct gvm_list gc_link;	/* dev->fq.lock: on the device's
					   collect list (fault_queue.c) */
	bool gc_closed;			/* dev->fq.lock: destroy began, never
					   listed again */
	struct gvm_list userptr_invalidated; /* notifier_lock: userptrs whose
					   PTEs were zapped (userptr.c) */
	struct gvm_queue *bind_q;	/* default bind queue; immutable */
	uint32_t ufence_writer;		/* atomic: set once, by its first user
					   fence: it keeps the user-fence
					   writer until freed (vm/sync.c) */
	uint32_t banned;		/* atomic: a bind failed after its
					   point of no return */
	bool closed;			/* vm->lock: gvm_vm_destroy() ran */
	uint32_t nr_queues;		/* vm->lock: user-created queues */

	/*
	 * Preempt-fence mode (LR without FAULT, lr.c): exec queues with a
	 * preempt fence, and the VM's place in its device's rebind worker,
	 * kicked from preempt fences' callbacks.
	 */
	struct gvm_list lr_queues;	/* gvm_queue.lr_link; see there */
	struct gvm_list lr_link;	/* dev->lr.lock: on dev->lr.kicked
					   iff lr_kicked */
	bool lr_kicked;			/* dev->lr.lock */
	bool lr_dead;			/* dev->lr.lock: destroyed, no kick */

	/*
	 * Userptr VMAs bind jobs retired: freeing one removes its notifier,
	 * which may wait for an invalidation that waits for kernels, which
	 * may need the scheduler worker the job frees on.  So the job hands
	 * them over and the next bind, exec or destroy frees them, with no
	 * lock held (gvm__vm_reap).
	 */
	struct gvm_mutex dead_lock;	/* leaf: dead_vmas */
	struct gvm_list dead_vmas;	/* gvm_vma.vm_bo_link */
	uint32_t nr_dead;		/* atomic, written under dead_lock:
					   reap skips the lock at 0 */

	struct gvm_mutex fault_lock;	/* leaf: the fault log */
	struct gvm_fault_info faults[GVM_VM_FAULT_LOG];
	uint32_t fault_head, fault_count;

	/*
	 * Page-table reclaim (pt_reclaim.c): when VRAM is short and no idle
	 * BO is left to evict, an idle VM's tables are cleared (all but the
	 * root) and rebuilt by its next revalidation or GPU fault.
	 */
	struct gvm_list pt_link;	/* vram_lock: on dev->pt_vms iff
					   pt_listed */
	bool pt_listed;			/* vram_lock: create .. destroy */
	bool pt_reclaiming;		/* vram_lock: a reclaimer looks at it;
					   destroy waits until it stops */
	bool pt_reclaimed;		/* vm->resv (set with pt_lock held
					   too): the tables were reclaimed and
					   the mappings not rebuilt yet
					   (never set in fault mode: faults
					   rebuild there) */
	uint32_t execs_inflight;	/* atomic: execs published whose
					   fence has not signalled (exec.c) */

	struct gvm_vm_counters stats;
	struct gvm_svm_policy_state *svm_policy; /* vm->lock: placement
					   history (policy.c), or NULL */
};

struct gvm_vm *gvm__vm_get(struct gvm_vm *vm);
void gvm__vm_put(struct gvm_vm *vm);

/* Appends @f to the VM's fault log (fault_lock). */
void gvm__vm_fault_log(struct gvm_vm *vm, const struct gvm_fault_info *f);

/* Sets the ban (after a failure past a point of no return). */
void gvm__vm_ban(struct gvm_vm *vm, int err);

static inline bool gvm__vm_banned(struct gvm_vm *vm)
{
	return __atomic_load_n(&vm->banned, __ATOMIC_ACQUIRE);
}

#define gvm__vm_stat_add(vm, field, n) \
	__atomic_fetch_add(&(vm)->stats.field, (n), __ATOMIC_RELAXED)
/*
 * The same for a counter whose every writer holds vm->lock (binds,
 * bind_ops, bind_jobs, bind_errors): a relaxed load and store, no locked
 * instruction; readers still load it atomically.
 */
#define gvm__vm_stat_add_locked(vm, field, n)                                \
	__atomic_store_n(&(vm)->stats.field,                                 \
			 __atomic_load_n(&(vm)->stats.field, __ATOMIC_RELAXED) + \
				 (n), __ATOMIC_RELAXED)

/* Limits (limits.c): 0 or -EMFILE; the counts they keep. */
int gvm__limit_vm_get(void);
void gvm__limit_vm_put(void);
int gvm__limit_bo_get(struct gvm_vm *vm);
void gvm__limit_bo_put(struct gvm_vm *vm);
/* 0: no limit. */
uint64_t gvm__limit_mappings(void);
uint64_t gvm__limit_pt_pages(void);

/*
 * Page-table reclaim (pt_reclaim.c).  _add: the VM may be reclaimed from
 * now on (end of create).  _del: never again, and no reclaimer is at it
 * when it returns (destroy; no lock held).
 */
void gvm__pt_reclaim_add(struct gvm_vm *vm);
void gvm__pt_reclaim_del(struct gvm_vm *vm);
/*
 * Clears the page tables of one idle VM of @dev other than the caller's
 * (trylocks only: any context that may allocate page tables).  0 if some
 * were freed, -ENOSPC if no VM could be reclaimed.
 */
int gvm__pt_reclaim(struct gvm_device *dev);
/*
 * Gives the spare page tables no reserve counts on (pt.c SPARES), of every
 * VM of @dev, back to VRAM: 0 if there were some, else -ENOSPC.  No lock
 * needed (takes vram_lock); for allocations that find VRAM full, before
 * they evict.
 */
int gvm__pt_spares_reclaim(struct gvm_device *dev);
/*
 * Rebuilds every mapping of a reclaimed VM in one page-table update
 * (vm->lock and vm->resv held; revalidation).  0 (vm->pt_reclaimed
 * cleared), or -ENOMEM / -ENOSPC with nothing changed (still reclaimed).
 */
int gvm__pt_rebuild(struct gvm_vm *vm);
/* Test hook: a reclaimer holds @vm's reservation and pt_lock, about to
   clear its tables. */
extern void (*gvm__pt_reclaim_hook)(struct gvm_vm *vm);

/* Queues (queue.c). */
int gvm__queue_create(struct gvm_vm *vm, uint32_t engine, bool internal,
		      struct gvm_queue **out);
void gvm__queue_destroy(struct gvm_queue *q, bool internal);
/* A reference to the queue's latest fence, or NULL. */
struct gvm_fence *gvm__queue_last(struct gvm_queue *q);
/*
 * Whether bind queue @q has no work left (no fence yet, or the latest
 * signalled).  vm->lock held: only binds, under it, change a bind queue's
 * last, so no q->lock and no reference are needed.
 */
bool gvm__bind_queue_idle_locked(struct gvm_queue *q);
void gvm__queue_set_last(struct gvm_queue *q, struct gvm_fence *f);

/*
 * Frees a VMA taken out of the tree: drops its BO and user-fence
 * references, removes a userptr's notifier.  No lock held (the VMA is
 * private by then).  With @vm (from a call on it, so not during its
 * destruction) the memory goes to vm->va's spares for the next VMA
 * (gvm__va_free); with NULL, to the heap.
 */
void gvm__vma_free(struct gvm_vma *vma, struct gvm_vm *vm);
/* Frees it later (gvm__vm_reap) if it has a notifier: from bind jobs. */
void gvm__vma_free_deferred(struct gvm_vm *vm, struct gvm_vma *vma);
/* Frees the VMAs deferred so far.  No lock held. */
void gvm__vm_reap(struct gvm_vm *vm);

/* LR without FAULT: queues are preempted, not waited for. */
static inline bool gvm__vm_preempt_mode(const struct gvm_vm *vm)
{
	return (vm->flags & (GVM_VM_LR_MODE | GVM_VM_FAULT_MODE)) ==
	       GVM_VM_LR_MODE;
}

/* gvm__sort() comparator of struct gvm_vma pointers by address. */
int gvm__vma_cmp_addr(const void *a, const void *b);
/* The page-table flags of a VMA's PTEs (backing lock held for BOs). */
unsigned int gvm__vma_pt_flags(const struct gvm_vma *vma);

/*
 * Slices [offset, offset + len) out of the extent list @x[0..nr),
 * appending to *@out (bo.c), which may start in inline storage @inl
 * (GVM_GROW_INL rules; NULL: none).  0 or -ENOMEM.
 */
int gvm__extents_slice(const struct gvm_pt_extent *x, size_t nr,
		       uint64_t offset, uint64_t len,
		       const struct gvm_pt_extent *inl,
		       struct gvm_pt_extent **out, size_t *n, size_t *cap);

/* Submits a TLB invalidation of @tlb: its fence, or NULL if none needed. */
struct gvm_fence *gvm__vm_tlb_submit(struct gvm_vm *vm,
				     const struct gvm_pt_tlb *tlb);

/*
 * Submits a TLB invalidation of @tlb and waits for it.  No lock needed
 * (callers may hold vm->lock).
 */
void gvm__vm_tlb_flush(struct gvm_vm *vm, const struct gvm_pt_tlb *tlb);

/*
 * gvm_vm_peek() / gvm_vm_poke() (peek.c) copy through a bounce buffer of
 * the library's heap, in chunks of at most this many bytes and this many
 * userptr or mirror pieces, each chunk under its own locks.
 */
#define GVM_VM_PEEK_CHUNK (1ull << 20)
#define GVM_VM_PEEK_CPU_PIECES 64

#endif
