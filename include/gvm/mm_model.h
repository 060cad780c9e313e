/* SPDX-License-Identifier: MIT */
/*
 * The model mm: a simulated process address space, driven by API calls
 * instead of the kernel, for deterministic tests and replay.  Semantics:
 * docs/mm.md, "The model mm".
 *
 * A model mm is an address range [base, base + size) of 4 KiB pages over
 * a pool of simulated physical pages ("frames", host memory the simulated
 * GPU reaches directly).  The application maps private anonymous memory
 * in it (gvm_mm_model_mmap), unmaps, moves, protects, discards and forks
 * it, and reads and writes it with the CPU through the model
 * (gvm_mm_model_read/_write).  A userptr or SVM VM created on it
 * (gvm_vm_create(dev, mm, ...)) mirrors that memory exactly as it mirrors
 * the process's own with gvm_mm_self(); GPU addresses of SVM are model
 * addresses.
 *
 * What differs from gvm_mm_self(), on purpose:
 *  - every change is delivered to the GPU side *before* it happens, as
 *    the kernel's MMU notifiers do: both passes of the invalidation of
 *    the range end before the pages go, inside the call that changes
 *    them.  When a call that takes pages away returns, no engine can
 *    reach them; frames freed are filled with a poison byte, and
 *    a frame reused is checked to still hold it (stats.poison_violations
 *    counts the frames some engine wrote after their invalidation);
 *  - it is exact and deterministic: frames are handed out in a fixed
 *    (FIFO) order, addresses by first fit, and nothing happens but what
 *    the calls ask (reclaim included: gvm_mm_model_reclaim);
 *  - mprotect and copy-on-write breaks are seen (the self backend cannot).
 *
 * Only private anonymous memory is modelled.  Pages are allocated on
 * first touch (zero-filled) by a CPU access or a GPU fetch.  A CPU access
 * to a page SVM moved to device memory brings it back first, as a CPU
 * fault does on real memory.
 *
 * Errors: 0 or a negative errno, nothing changed on failure (mmap with
 * GVM_MM_MODEL_FIXED over existing pages excepted, as in Linux: the old
 * pages may be gone).  Addresses and lengths must be page multiples
 * inside [base, base + size) (-EINVAL).  -EINVAL also for a NULL or
 * non-model mm.
 *
 * Threads: any thread may call these, on any mm of a family (an mm and
 * its fork children share the frame pool).  Calls that change an mm, and
 * CPU accesses, are serialised per mm, as the kernel's mmap lock would;
 * GPU fetches run beside them.  Do not call them from a notifier
 * callback, a fence callback or a kernel; hold no gvm lock.
 */
#ifndef GVM_MM_MODEL_H
#define GVM_MM_MODEL_H

#include <gvm/types.h>

GVM_BEGIN_DECLS

struct gvm_mm;

struct gvm_mm_model_config {
	/* first address of the model range; 0: GVM_MM_MODEL_BASE.  Must be
	   2 MiB aligned and, for SVM, inside the device's mirror */
	uint64_t base;
	/* bytes of address range; 0: 256 MiB; a multiple of 2 MiB */
	uint64_t size;
	/* frames in the pool, shared with fork children; 0: twice the
	   pages of the range */
	uint64_t frames;
	/* the byte freed frames are filled with (default 0: 0xa5) */
	uint8_t poison;
	uint8_t pad[7];
};

#define GVM_MM_MODEL_BASE (1ull << 44)

/* Flags of gvm_mm_model_mmap and gvm_mm_model_mremap. */
#define GVM_MM_MODEL_FIXED (1u << 0)	/* exactly at addr, replacing */
#define GVM_MM_MODEL_MAYMOVE (1u << 1)	/* mremap: may move */

/* gvm_mm_model_madvise advice. */
#define GVM_MM_MODEL_DONTNEED 4		/* MADV_DONTNEED */

/*
 * Creates a model mm with one reference (gvm_mm_put drops it).  0,
 * -EINVAL (bad config), -ENOMEM.
 */
GVM_API int gvm_mm_model_create(const struct gvm_mm_model_config *cfg,
				struct gvm_mm **out);

/*
 * Maps @len bytes of zero-filled private anonymous memory with @prot
 * (PROT_NONE/READ/WRITE of mmap(2)).  Without GVM_MM_MODEL_FIXED, @addr
 * is ignored and the lowest free range is taken (2 MiB aligned if @len is
 * at least 2 MiB); with it, exactly [addr, addr + len), unmapping
 * (GVM_MM_EVENT_UNMAP invalidation first) what was there.  *@out: the
 * address.  -ENOMEM: no room.
 */
GVM_API int gvm_mm_model_mmap(struct gvm_mm *mm, uint64_t addr, uint64_t len,
			      unsigned int prot, unsigned int flags,
			      uint64_t *out);

/* Unmaps [addr, addr + len) (holes allowed), invalidating it first. */
GVM_API int gvm_mm_model_munmap(struct gvm_mm *mm, uint64_t addr,
				uint64_t len);

/*
 * mremap(2): resizes the mapping [old, old + old_len) (one mapping) to
 * @new_len.  Shrinking unmaps the tail; growing extends in place if the
 * addresses after it are free, else moves it if GVM_MM_MODEL_MAYMOVE
 * (-ENOMEM otherwise); GVM_MM_MODEL_FIXED (with MAYMOVE) moves it to
 * @new_addr, unmapping what was there.  A move invalidates the old range
 * first (GVM_MM_EVENT_REMAP); pages SVM moved to device memory move along
 * in it.  *@out: where it is now.  -EFAULT: the old range is not one
 * mapping.
 */
GVM_API int gvm_mm_model_mremap(struct gvm_mm *mm, uint64_t old,
				uint64_t old_len, uint64_t new_len,
				unsigned int flags, uint64_t new_addr,
				uint64_t *out);

/* Changes the protection of [addr, addr + len), invalidating it first.
   -ENOMEM: part of it is not mapped. */
GVM_API int gvm_mm_model_mprotect(struct gvm_mm *mm, uint64_t addr,
				  uint64_t len, unsigned int prot);

/* GVM_MM_MODEL_DONTNEED: the pages of [addr, addr + len) are dropped
   (they read as zeros again), invalidated first (GVM_MM_EVENT_REMOVE);
   device-resident data too.  -ENOMEM: part of it is not mapped. */
GVM_API int gvm_mm_model_madvise(struct gvm_mm *mm, uint64_t addr,
				 uint64_t len, int advice);

/*
 * fork(): *@child is a new model mm (one reference) with a copy of every
 * mapping, sharing the pages copy-on-write: the first write, by either
 * side (CPU or a GPU fetch for writing), copies the page, invalidating
 * that side's mirrors of it first.  The parent's writable mappings are
 * invalidated first (GVM_MM_EVENT_FORK) and its device-resident pages
 * come back to system memory.  -ENOMEM.
 */
GVM_API int gvm_mm_model_fork(struct gvm_mm *mm, struct gvm_mm **child);

/*
 * CPU accesses through the model, honouring protection: -EFAULT (not
 * mapped, PROT_NONE), -EPERM (write to read-only), -EHWPOISON (a page
 * whose device copy could not be brought back), -ENOMEM (no frame).  A
 * page in device memory is brought back first.  An access failing part
 * way may have copied the pages before the failing one.
 */
GVM_API int gvm_mm_model_read(struct gvm_mm *mm, uint64_t addr, void *buf,
			      uint64_t len);
GVM_API int gvm_mm_model_write(struct gvm_mm *mm, uint64_t addr,
			       const void *buf, uint64_t len);

/*
 * Reclaim, injected: every present page of [addr, addr + len) that is
 * not shared with a fork relative moves to another frame (as swap-out and
 * back would), its mirrors invalidated first (GVM_MM_EVENT_MIGRATE); the
 * old frames are freed (poisoned).  Holes are skipped.  Returns the
 * number of pages moved, or -errno.
 */
GVM_API int gvm_mm_model_reclaim(struct gvm_mm *mm, uint64_t addr,
				 uint64_t len);

struct gvm_mm_model_stats {
	uint64_t frames;		/* in the pool (the family's) */
	uint64_t frames_used;		/* mapped by some mm of the family */
	uint64_t invalidations;		/* of this mm, any event */
	uint64_t cow_copies;		/* of this mm */
	uint64_t reclaimed;		/* pages, this mm */
	uint64_t devmem_faults;		/* CPU accesses and fetches that
					   brought device pages back */
	uint64_t poison_violations;	/* frames written after being freed
					   (family; must stay 0) */
};

GVM_API int gvm_mm_model_stats(struct gvm_mm *mm,
			       struct gvm_mm_model_stats *out);

GVM_END_DECLS

#endif
