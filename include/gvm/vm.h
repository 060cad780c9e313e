/* SPDX-License-Identifier: MIT */
/*
 * GPU VMs, buffer objects, VM_BIND, queues, syncs and exec.
 *
 * The shapes follow the Linux xe uAPI (DRM_IOCTL_XE_VM_CREATE, _VM_BIND,
 * _EXEC_QUEUE_CREATE, _EXEC, syncobjs and user fences) with C handles
 * instead of ioctls.  Semantics: docs/vm.md.
 *
 * A VM is one GPU virtual address space on one device.  Clients change it
 * with gvm_vm_bind(): an array of operations applied as one atomic
 * operation (all or nothing) on a bind queue; it returns once the new
 * mappings are decided, and the page tables are written either at once
 * (when nothing must be waited for) or by a job when the in-syncs signal.
 * Kernels run with gvm_exec() on exec queues; they see every bind that
 * completed on any queue of the VM before the exec was called.
 *
 * Threads: every call may be made from any thread, concurrently with any
 * other on the same objects, except that an object may not be used during
 * or after its destroy/put.  No call may be made from a fence callback.
 *
 * Errors: 0 or a negative errno, nothing changed on failure.  -EINVAL bad
 * arguments (see each call), -ENOMEM host memory, -ENOSPC device memory,
 * -EIO the VM is banned (a bind failed after its point of no return),
 * -EBUSY see gvm_vm_bind(), -ENODEV a queue of another VM or device.
 */
#ifndef GVM_VM_H
#define GVM_VM_H

#include <gvm/device.h>
#include <gvm/fence.h>
#include <gvm/types.h>

GVM_BEGIN_DECLS

struct gvm_vm;
struct gvm_bo;
struct gvm_queue;
struct gvm_syncobj;
struct gvm_mm;
struct gvm_kernel;

/* ---- VMs ---------------------------------------------------------------- */

#define GVM_VM_LR_MODE		(1u << 0)  /* long-running: no dma-fences */
#define GVM_VM_FAULT_MODE	(1u << 1)  /* recoverable faults; needs LR:
					      mappings are bound on their
					      first GPU fault unless
					      GVM_BIND_IMMEDIATE */
#define GVM_VM_SCRATCH_PAGE	(1u << 2)  /* unmapped reads return zero */
#define GVM_VM_FLAGS_ALL	(GVM_VM_LR_MODE | GVM_VM_FAULT_MODE | \
				 GVM_VM_SCRATCH_PAGE)

/*
 * Creates a VM on @dev with the device's VA size.  @mm is the CPU address
 * space userptr and SVM mappings refer to (NULL if none are used).
 * -EINVAL: unknown flags, FAULT_MODE without LR_MODE, SCRATCH_PAGE with
 * FAULT_MODE.
 */
GVM_API int gvm_vm_create(struct gvm_device *dev, struct gvm_mm *mm,
			  uint32_t flags, struct gvm_vm **out);
/*
 * Waits for the VM's queues to drain, unbinds everything and frees the VM.
 * Queues of the VM must have been destroyed (-EBUSY otherwise).  Binds on
 * the default bind queue do not wait any longer for wait syncs that have
 * not signalled (as in gvm_queue_destroy()), so this never waits for a
 * fence nobody signals.
 */
GVM_API int gvm_vm_destroy(struct gvm_vm *vm);

/*
 * Copies up to @cap fault-log entries, oldest first, to @buf and removes
 * them from the log; *@count receives the number copied.  The log keeps
 * the last GVM_VM_FAULT_LOG entries.
 */
#define GVM_VM_FAULT_LOG 64
GVM_API int gvm_vm_query_faults(struct gvm_vm *vm, struct gvm_fault_info *buf,
				uint32_t cap, uint32_t *count);

/*
 * Debug access, a debugger's peek and poke: copies @size bytes (any
 * alignment) from the VM's GPU addresses [@addr, @addr + @size) to @buf
 * (peek), or from @buf to them (poke), from the CPU, through the VM's
 * mappings as gvm_vm_bind() decided them (queued binds count as done;
 * fault-mode mappings need not be faulted in).  BO mappings reach the BO
 * wherever it is now, NULL mappings read zeros and drop writes, userptr
 * mappings reach the CPU memory they mirror, CPU_ADDR_MIRROR mappings the
 * CPU memory at the same address (which may bring pages SVM moved to VRAM
 * back, as a CPU access does).  READONLY mappings can be poked.  Not
 * ordered with GPU work: wait for the fences of kernels using the bytes
 * first.  Canonical high addresses are accepted as in gvm_vm_bind().
 * @buf may be anywhere, in memory SVM moved to VRAM too: it is touched
 * with no lock held.  Accesses above 1 MiB go in chunks, each under its
 * own locks, so binds made meanwhile are seen by the later chunks.
 * -EINVAL: NULL @vm or @buf, @size 0, a range overflowing or beyond the
 * VA size, a destroyed VM; -EFAULT: part of the range is not mapped when
 * the call starts (nothing copied), or a later chunk finds a hole, or the
 * CPU memory of a userptr or mirror mapping cannot be read / written,
 * or @buf cannot be (as read(2) and write(2), no crash); -ENOMEM.  When a chunk fails, the chunks before it are done: a poke has
 * written them (and the bytes of the failing chunk before a failing CPU
 * page), a peek has filled @buf for them (the rest of @buf untouched),
 * as a failed write(2) or read(2) may.
 */
GVM_API int gvm_vm_peek(struct gvm_vm *vm, uint64_t addr, void *buf,
			uint64_t size);
GVM_API int gvm_vm_poke(struct gvm_vm *vm, uint64_t addr, const void *buf,
			uint64_t size);

struct gvm_vm_stats {
	uint64_t binds;			/* gvm_vm_bind() calls that succeeded */
	uint64_t bind_ops;		/* their operations */
	uint64_t bind_jobs;		/* binds that had to wait (queued) */
	uint64_t bind_errors;		/* binds that failed and unwound */
	uint64_t vmas;			/* mappings now */
	uint64_t local_bos;		/* VM-local BOs alive now */
	uint64_t pt_pages;		/* page-table pages in use now (not
					   counting unlinked ones awaiting
					   their TLB flush) */
	uint64_t pte_writes[5];		/* entries written, by level */
	uint64_t tlb_invals;		/* range invalidations submitted */
	uint64_t tlb_full_flushes;	/* of which full flushes */
	uint64_t faults;		/* GPU faults reported */
	uint64_t faults_serviced;	/* fault mode: of them resolved by
					   binding the mapping (replayed) */
	uint64_t fault_batches;		/* fault mode: batches serviced (by
					   the device's fault-servicing
					   thread, or a lone fault by its
					   engine's thread) that held faults
					   of this VM */
	uint64_t faults_deduplicated;	/* fault mode: faults completed with
					   the result of another fault on the
					   same page in their batch, or on
					   another page of the SVM range it
					   bound, found mapped for their
					   access (not serviced again;
					   counted in faults_serviced if
					   resolved) */
	uint64_t fault_batch_max;	/* fault mode: most faults of this VM
					   in one batch */
	uint64_t fault_retries;		/* fault mode: binds redone because
					   the CPU side changed the pages
					   while they were fetched */
	uint64_t svm_ranges_created;	/* SVM: ranges made on GPU faults */
	uint64_t svm_ranges_dropped;	/* of them dropped (memory gone) */
	uint64_t svm_ranges_split;	/* of the dropped, those partly
					   unmapped: the rest was covered by
					   smaller ranges at once, mapped */
	uint64_t svm_faults_by_size[3];	/* SVM faults serviced, by the
					   size of their range: [0] 4 KiB,
					   [1] 64 KiB, [2] 2 MiB */
	uint64_t svm_migrations;	/* SVM ranges this VM's faults moved
					   to its device's memory (bytes in
					   bytes_to_vram) */
	uint64_t svm_migration_failures; /* ranges left in system memory
					   after a migration failed twice */
	uint64_t svm_migration_retries;	/* migrations retried after a
					   first failure */
	uint64_t svm_atomic_fallbacks;	/* DEVICE-policy atomics let happen
					   in system memory (contention) */
	uint64_t svm_p2p_binds;		/* SVM ranges bound to a linked
					   device's memory, peer to peer */
	uint64_t svm_d2d_migrations;	/* of svm_migrations: ranges moved
					   from one device's memory into a
					   linked device's directly, with
					   one copy over the link (no
					   system memory) */
	uint64_t svm_bytes_d2d;		/* their bytes */
	uint64_t dev_svm_to_system;	/* device-wide: SVM ranges moved
					   back to system memory (CPU
					   access, another user, fork),
					   for any VM of the device */
	uint64_t dev_svm_bytes_to_system; /* device-wide: their bytes */
	uint64_t svm_capacity_fallbacks; /* SVM faults serviced in system
					   memory because VRAM was full of
					   memory that could not be evicted
					   (the range may migrate later) */
	uint64_t svm_evictions;		/* SVM allocations (of any VM of the
					   device) this VM's migrations moved
					   back to system memory to make room */
	uint64_t svm_bytes_evicted;	/* their bytes */
	uint64_t svm_thrash_pins;	/* ranges pinned to system memory for
					   a cool-down because they moved back
					   and forth too often */
	uint64_t svm_ranges_prefetched;	/* SVM ranges made and placed ahead
					   of faults by the policy's prefetch
					   (gvm_svm_policy_select) */
	uint64_t dev_svm_evictions;	/* device-wide: SVM allocations
					   evicted (for SVM, BOs or page
					   tables), included in
					   dev_svm_to_system */
	uint64_t dev_svm_bytes_evicted;	/* device-wide: their bytes */
	uint64_t execs;			/* gvm_exec() calls that succeeded */
	uint64_t evictions;		/* BOs of this VM moved out of VRAM
					   (purges included) */
	uint64_t purges;		/* of them purged: DONTNEED BOs whose
					   VRAM was freed, nothing copied */
	uint64_t bytes_purged;		/* their bytes (not in
					   bytes_to_system) */
	uint64_t dev_purges;		/* device-wide: BOs purged, mapped in
					   any VM or none */
	uint64_t dev_bytes_purged;	/* device-wide: their bytes */
	uint64_t evict_waits;		/* times an exec of this VM waited,
					   holding no lock, for VRAM: for
					   busy BOs of others to become idle
					   or for older waiters to be served */
	uint64_t bytes_to_vram, bytes_to_system;
	uint64_t userptr_invalidations;	/* userptr VMAs zapped by the CPU
					   side (munmap, madvise, ...) */
	uint64_t userptr_repins;	/* of them refetched and rebound */
	uint64_t preemptions;		/* LR: queues suspended by their
					   preempt fence */
	uint64_t lr_rebinds;		/* LR: rebind-worker passes that
					   resumed the queues */
	uint64_t pt_reclaims;		/* times this VM's page tables were
					   reclaimed (cleared but the root,
					   while it was idle) for VRAM others
					   needed */
	uint64_t pt_bytes_reclaimed;	/* the page-table bytes they freed */
	uint64_t pt_rebuilds;		/* revalidations (exec, LR rebind
					   worker) that rebuilt its mappings
					   after a reclaim (fault mode: its
					   faults rebind instead) */
	uint64_t dev_pt_reclaims;	/* device-wide: page-table reclaims */
	uint64_t dev_pt_bytes_reclaimed; /* device-wide: their bytes */
	bool banned;
	/* Appended (the fields above keep their offsets). */
	uint64_t svm_bytes_to_vram;	/* of bytes_to_vram: SVM's, the bytes
					   of svm_migrations */
	uint64_t svm_to_system;		/* SVM data this VM's migrations put
					   in device memory that went back
					   to system memory (CPU access,
					   another user or device, fork,
					   eviction by anyone), in moves; if
					   several VMs mirror the memory, it
					   counts for the one that migrated
					   it (docs/svm.md) */
	uint64_t svm_bytes_to_system;	/* their bytes */
	uint64_t svm_cpu_faultbacks;	/* of svm_to_system: those a CPU
					   access to the memory caused */
};
GVM_API int gvm_vm_stats(struct gvm_vm *vm, struct gvm_vm_stats *st);

/* ---- limits ------------------------------------------------------------ */

/*
 * Process-wide resource limits; 0 means no limit (the default).  So that
 * one client cannot take a whole device: a VM's page tables live in its
 * device's VRAM and are not evicted.
 *  max_vms              VMs alive (created, not destroyed):
 *                       gvm_vm_create() fails with -EMFILE
 *  max_bos_per_vm       VM-local BOs of one VM: gvm_bo_create() -EMFILE
 *  max_mappings_per_vm  mappings of one VM (stats.vmas): a bind that would
 *                       leave more fails with -ENOSPC, changing nothing
 *  max_pt_bytes_per_vm  page-table memory of one VM (4 KiB multiple;
 *                       stats.pt_pages): a bind that needs more fails with
 *                       -ENOSPC; taken when the VM is created
 * Lowering a limit below what is in use stops growth, takes nothing away.
 * gvm_limits_get() also reports nr_vms, the VMs alive now (ignored by set).
 * Returns 0, -EINVAL (NULL, max_pt_bytes_per_vm not a 4 KiB multiple).
 */
struct gvm_limits {
	uint32_t max_vms;
	uint32_t max_bos_per_vm;
	uint64_t max_mappings_per_vm;
	uint64_t max_pt_bytes_per_vm;
	uint32_t nr_vms;
};

GVM_API int gvm_limits_set(const struct gvm_limits *l);
GVM_API int gvm_limits_get(struct gvm_limits *l);

/* ---- buffer objects -------------------------------------------------- */

/*
 * Creates a buffer object of @size bytes (multiple of 4 KiB) on @dev.
 * @placement: GVM_MEM_SYSTEM and/or GVM_MEM_VRAM; with both, VRAM is
 * preferred and system memory is where it goes when VRAM is short.  A
 * VRAM-only BO may still be evicted to system memory and moved back before
 * the GPU uses it.  @vm non-NULL: a VM-local BO, sharing @vm's reservation,
 * bindable only in @vm; NULL: an external BO with its own reservation,
 * bindable in any VM of the device.  The contents start zeroed.  Returns
 * the first reference.  -EINVAL: size 0 or unaligned, bad placement, a VM
 * of another device; -ENOSPC: VRAM-only and no VRAM can be freed (it
 * waits, in bounded rounds, for busy BOs in VRAM to become idle first).
 */
GVM_API int gvm_bo_create(struct gvm_device *dev, uint64_t size,
			  uint32_t placement, struct gvm_vm *vm,
			  struct gvm_bo **out);
/*
 * A CPU view of the whole BO, valid until the last reference goes; it
 * follows the BO when gvm moves it.  CPU and GPU accesses are coherent
 * once the GPU work that uses the BO has completed (wait for its fences).
 * gvm may move the BO meanwhile (evictions by other threads): a CPU store
 * through the view then sleeps while the move copies, and lands in the
 * new backing; reads go on.  Where the kernel lacks userfaultfd
 * write-protection of shared memory (Linux < 5.19), or the view's range
 * is registered with another userfaultfd, such a store can be lost.
 * -EOPNOTSUPP: a BO in scattered VRAM on a device without vram_fd.
 */
GVM_API int gvm_bo_map(struct gvm_bo *bo, void **cpu);
GVM_API uint64_t gvm_bo_size(const struct gvm_bo *bo);
/* Where the BO is now: GVM_MEM_SYSTEM or GVM_MEM_VRAM. */
GVM_API uint32_t gvm_bo_region(struct gvm_bo *bo);
GVM_API struct gvm_bo *gvm_bo_get(struct gvm_bo *bo);
/* Drops a reference; a BO stays alive while it is bound. */
GVM_API void gvm_bo_put(struct gvm_bo *bo);

/*
 * Purgeable BOs (docs/vm.md, "Purgeable buffer objects").  @advice:
 *  GVM_BO_DONTNEED  the contents may be dropped under VRAM pressure: an
 *                   eviction of the BO, when idle, frees its VRAM and
 *                   copies nothing (it is "purged"); purgeable BOs are
 *                   evicted before all others.  A purged BO reads as zeros
 *                   from the GPU and the CPU (it is backed by fresh zeroed
 *                   system pages, populated only when touched), is never
 *                   brought back to VRAM by exec while DONTNEED, and can
 *                   still be bound, mapped and used: nothing reaches the
 *                   memory it had.
 *  GVM_BO_WILLNEED  the contents are needed again (the default): the BO
 *                   is no longer purgeable; a purged one is used from then
 *                   on like any BO (exec moves it back to VRAM, with the
 *                   zeros it holds).
 * *@retained (may be NULL for DONTNEED): false if the BO was purged since
 * the last WILLNEED, i.e. its contents are lost (zeros); true otherwise.
 * WILLNEED reports a purge once: it makes the BO "not purged" again.
 * Marking a BO twice is fine.  Takes the BO's reservation (a VM-local
 * BO's is its VM's), so it waits for a bind or exec holding it, never for
 * GPU work.  A busy BO is purged only once its work completed.
 * -EINVAL: NULL @bo, unknown @advice, NULL @retained with WILLNEED;
 * nothing changed then.
 */
#define GVM_BO_WILLNEED		0u
#define GVM_BO_DONTNEED		1u
GVM_API int gvm_bo_madvise(struct gvm_bo *bo, uint32_t advice,
			   bool *retained);

/* ---- syncs -------------------------------------------------------------- */

/* A handle that holds the latest fence of something, across calls. */
GVM_API int gvm_syncobj_create(struct gvm_syncobj **out);
GVM_API void gvm_syncobj_destroy(struct gvm_syncobj *s);
/* A reference to the current fence; -ENOENT if it has none yet. */
GVM_API int gvm_syncobj_fence(struct gvm_syncobj *s, struct gvm_fence **out);
/*
 * Waits for the current fence: 0 once it signalled without error, its
 * (negative) error, -ENOENT if none, -ETIME.
 */
GVM_API int gvm_syncobj_wait(struct gvm_syncobj *s, int64_t timeout_ns);

#define GVM_SYNC_FENCE		1u	/* fence / *out */
#define GVM_SYNC_SYNCOBJ	2u	/* syncobj */
#define GVM_SYNC_USER_FENCE	3u	/* addr, value */

#define GVM_SYNC_SIGNAL		(1u << 0)	/* an out-sync (else: wait) */

/*
 * One sync of a bind or exec.  Wait syncs: FENCE (@fence) and SYNCOBJ (its
 * current fence; none = nothing to wait for).  Signal syncs: FENCE (*@out
 * receives a reference to the operation's fence), SYNCOBJ (its fence is
 * replaced), USER_FENCE (@value is stored to the 8-byte aligned CPU address
 * @addr when the operation completes).  A user fence cannot be waited on
 * (-EINVAL); use gvm_user_fence_wait().
 *
 * A user fence's @addr must be writable when the bind or exec is submitted
 * (else the call fails with -EFAULT) and stay so until the operation
 * completes.  If it is no longer writable then, the value is not stored
 * (no signal is raised) and gvm_user_fence_wait() on @addr returns -EFAULT.
 *
 * On a VM of a model mm (<gvm/mm_model.h>), an @addr inside the model's
 * range (cast to a pointer) is model memory: it must be mapped writable
 * there (else -EFAULT), the value is stored through the model
 * (gvm_mm_model_write), and waited for with gvm_user_fence_wait_mm().
 */
struct gvm_sync {
	uint32_t type;			/* GVM_SYNC_* */
	uint32_t flags;			/* GVM_SYNC_SIGNAL */
	struct gvm_fence *fence;	/* FENCE, wait */
	struct gvm_fence **out;		/* FENCE, signal */
	struct gvm_syncobj *syncobj;	/* SYNCOBJ */
	uint64_t *addr;			/* USER_FENCE */
	uint64_t value;			/* USER_FENCE */
};

/*
 * Waits until *@addr == @value (written by a user fence).  Returns 0,
 * -ETIME, -EINVAL (unaligned address), -EFAULT (the latest user fence
 * submitted at @addr found it unwritable at completion and was not
 * stored, or @addr cannot be read: it is read without faulting).
 */
GVM_API int gvm_user_fence_wait(const uint64_t *addr, uint64_t value,
				int64_t timeout_ns);
/*
 * The same for a user fence in @mm's memory: an address @addr of a model
 * mm's range, read through the model (a page in device memory comes
 * back).  @mm NULL, an mm whose memory is the process's (gvm_mm_self), or
 * an address outside the model's range: @addr is a process address, as
 * gvm_user_fence_wait().
 */
GVM_API int gvm_user_fence_wait_mm(struct gvm_mm *mm, uint64_t addr,
				   uint64_t value, int64_t timeout_ns);

/* ---- queues --------------------------------------------------------------- */

/*
 * A queue of @engine (one GVM_ENGINE_* class) for @vm.  Work on one queue
 * completes in order; different queues progress independently.  Every VM
 * has a default bind queue (NULL in gvm_vm_bind()).  -EINVAL: unknown or
 * several classes; -EOPNOTSUPP: the device has no such engine.
 */
GVM_API int gvm_queue_create(struct gvm_vm *vm, uint32_t engine,
			     struct gvm_queue **out);
/*
 * The queue's id: unique among the queues of its device (while they
 * exist), never 0; fault-log entries of its execs carry it (struct
 * gvm_fault_info).
 */
GVM_API uint32_t gvm_queue_id(const struct gvm_queue *q);
/*
 * 0, or the error of the first exec of @q whose kernel the device could
 * not start (ops->run failed, e.g. -ENOMEM): its fence signalled with
 * that error and its signal syncs were signalled, user fences included,
 * without the kernel having run.  A long-running VM's execs signal only
 * user fences, which carry no error: check here after waiting for one.
 * Kernels that started and faulted are reported by their fences (-EIO)
 * and, in fault mode, by the fault log (gvm_vm_query_faults()).
 * -EINVAL for a NULL queue.
 */
GVM_API int gvm_queue_error(const struct gvm_queue *q);
/*
 * Waits for the queue's work to complete, then frees it.  A bind queue's
 * pending binds first stop waiting for their wait syncs: they take effect
 * (their VA state was decided in gvm_vm_bind()) once their internal
 * dependencies allow, and their fences signal without error.  An exec
 * queue's execs still waiting for a wait sync, or for a bind or move of
 * the VM (a bind may wait for a wait sync of its own), are cancelled:
 * their kernels do not run and their fences signal -ECANCELED (as for a
 * wait sync that failed, gvm_exec()).  So a wait sync that never signals
 * cannot hang the destroy.
 */
GVM_API void gvm_queue_destroy(struct gvm_queue *q);

/* ---- VM_BIND --------------------------------------------------------------- */

#define GVM_BIND_MAP		1u
#define GVM_BIND_UNMAP		2u
#define GVM_BIND_MAP_USERPTR	3u
#define GVM_BIND_UNMAP_ALL	4u	/* every mapping of @bo in the VM */
#define GVM_BIND_PREFETCH	5u	/* move the BOs of the range */

#define GVM_BIND_READONLY	(1u << 0)
#define GVM_BIND_IMMEDIATE	(1u << 1)	/* fault mode: bind now, not on
						   the first GPU fault */
#define GVM_BIND_NULL		(1u << 2)	/* sparse: no backing */
#define GVM_BIND_CPU_ADDR_MIRROR (1u << 3)	/* fault mode, VM with an mm:
						   GPU address == CPU address,
						   bound on GPU fault; a
						   mapping made over it and
						   unmapped gives it back
						   (docs/svm.md) */
#define GVM_BIND_FLAGS_ALL	(GVM_BIND_READONLY | GVM_BIND_IMMEDIATE | \
				 GVM_BIND_NULL | GVM_BIND_CPU_ADDR_MIRROR)

struct gvm_bind_op {
	uint32_t op;			/* GVM_BIND_MAP ... */
	uint32_t flags;			/* GVM_BIND_READONLY ... */
	uint64_t addr;			/* GPU VA, 4 KiB aligned; canonical
					   high addresses (sign-extended from
					   bit va_bits - 1) are accepted */
	uint64_t range;			/* bytes, 4 KiB aligned, > 0 */
	struct gvm_bo *bo;		/* MAP, UNMAP_ALL */
	uint64_t bo_offset;		/* MAP: 4 KiB aligned */
	uint64_t userptr;		/* MAP_USERPTR: CPU address */
	uint32_t prefetch_mem;		/* PREFETCH: GVM_MEM_* region */
	uint32_t pat;			/* PAT index 0..GVM_PAT_MAX */
};

/*
 * Applies @ops[0..@n) to @vm as one atomic operation on @q (NULL: the VM's
 * default bind queue), after the wait syncs of @syncs[0..@ns) signalled;
 * the signal syncs signal when the page tables (and TLBs) are updated.
 * Later ops see the effect of earlier ones (MAP then UNMAP of part of it
 * is fine).  A MAP over existing mappings replaces them (splitting what
 * it partly covers).  With @n == 0 the out-syncs signal once the queue's
 * earlier work completed.
 *
 * MAP_USERPTR maps the CPU range [userptr, userptr + range) of the VM's
 * mm (which it needs); nothing is pinned, the mapping follows the CPU
 * side through notifiers (docs/vm.md).
 *
 * PREFETCH moves the BOs mapped in [addr, addr + range) to @prefetch_mem
 * (GVM_MEM_VRAM or _SYSTEM), the BOs mapped there at its position in the
 * array: [MAP bo at R, PREFETCH R] moves bo, [PREFETCH R, UNMAP R] still
 * moves what R mapped before, [PREFETCH R, MAP bo at R] does not move bo.
 * A BO that is busy, or finds no room in VRAM (idle BOs are evicted for
 * it, SVM memory is not), stays where it is (a prefetch is a hint; the
 * next exec moves a BO whose placement prefers VRAM).  Userptr and
 * NULL mappings in the range are left alone.  Over CPU_ADDR_MIRROR
 * mappings it makes and binds the SVM ranges there (in VRAM, or moves them
 * back to system memory), in the call, so that later kernels take no fault
 * (docs/svm.md).
 *
 * -EINVAL: unknown op or flags, addr/range/bo_offset/userptr not 4 KiB
 * aligned, range 0 (UNMAP_ALL instead needs addr and range both 0, and no
 * flags), addr + range overflowing or beyond the VA size,
 * bo_offset + range beyond the BO, a BO of another device or VM-local to
 * another VM, NULL with a BO, MAP_USERPTR in a VM without an mm, MIRROR
 * outside fault mode, in a VM without an mm, with a BO or bo_offset or at
 * a canonical high address, a queue not of class BIND, pat > GVM_PAT_MAX,
 * prefetch_mem neither VRAM nor SYSTEM, a PREFETCH whose range maps (at its
 * position) a BO whose placement does not include prefetch_mem, a bad
 * sync.  -EFAULT: a MAP_USERPTR range not mapped in the mm, a user fence
 * address that is not writable (struct gvm_sync); -EPERM: a
 * writable MAP_USERPTR of read-only memory.  -EBUSY: an UNMAP (or a MAP
 * that replaces all or part of a mapping) hits a mapping whose bind user
 * fence has not been written yet.
 *
 * A wait sync that signals with an error does not cancel the bind: it takes
 * effect once every wait sync signalled, and its fence signals without
 * error (as xe's bind jobs do).
 */
GVM_API int gvm_vm_bind(struct gvm_vm *vm, struct gvm_queue *q,
			const struct gvm_bind_op *ops, uint32_t n,
			const struct gvm_sync *syncs, uint32_t ns);

/* ---- exec ------------------------------------------------------------------- */

/*
 * Runs kernel @k (<gvm/kernel.h>; copied) on exec queue @q after the wait
 * syncs and every bind of the VM submitted before it; signal syncs signal
 * when it completes (fence error -EIO if it faulted).  Unlike a bind's, a
 * wait sync that signals with an error cancels the exec: the kernel does
 * not run, and the exec's fence signals (once every wait sync signalled)
 * with the error of the wait sync that failed first; later work on @q is
 * not affected.  Destroying @q cancels it the same way (-ECANCELED) if a
 * wait sync has not signalled by then.  -EINVAL: a bind
 * queue, bad syncs; -EFAULT: a user fence address that is not writable;
 * -EOPNOTSUPP: the device cannot run kernels.  When the VM's VRAM-only
 * BOs must come back to VRAM and VRAM holds other VMs' busy BOs, it waits
 * (holding no lock) for their work, older waiters served first; -ENOSPC
 * at once if those BOs add up to more than the device's VRAM, or after a
 * bounded number of such waits.  -EAGAIN: the CPU kept changing the
 * memory of the VM's userptrs while the exec revalidated them (16 rounds);
 * nothing was submitted, call again.  -ENODEV: the device was unplugged.
 */
GVM_API int gvm_exec(struct gvm_queue *q, const struct gvm_kernel *k,
		     const struct gvm_sync *syncs, uint32_t ns);

GVM_END_DECLS

#endif
