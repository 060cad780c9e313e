/* SPDX-License-Identifier: MIT */
/*
 * The mm contract: what the GPU side (userptr, SVM) needs from a CPU address
 * space, and what every backend provides (internal API).
 *
 * Backends: "self" (src/mm/self.c, the calling process, watched through a
 * userfaultfd) and, later, "model" (a simulated address space driven by API
 * calls).  Each embeds struct gvm_mm first and implements struct gvm_mm_ops.
 *
 * Conventions, for every function here:
 *  - addresses are CPU virtual addresses; ranges are (start, len) with
 *    start and len multiples of GVM_MM_PAGE_SIZE, len > 0 and no overflow,
 *    else -EINVAL;
 *  - 0 or a negative errno; on failure nothing changed;
 *  - -EFAULT: (part of) the range is not mapped, or mapped PROT_NONE;
 *    -EPERM: write access asked of memory the CPU may only read;
 *    -EAGAIN: a concurrent change, try again.
 *
 * How a user mirrors a range (a userptr bind, an SVM fault), in this order:
 *
 *	gvm__notifier_insert(mm, &n, start, len, &ops);  // once
 *	again:
 *	gvm__mm_register(mm, start, len);   // every time, see below
 *	seq = gvm__notifier_read_begin(&n);
 *	gvm__mm_fetch(mm, start, len, write, addrs);
 *	lock(notifier_lock);
 *	if (gvm__notifier_read_retry(&n, seq)) { unlock; goto again; }
 *	commit PTEs from addrs[];
 *	unlock(notifier_lock);
 *
 * Insert before registering: a mapping change that happens after the
 * registration then always reaches the notifier.  Register again on every
 * (re)fetch: a CPU mapping that replaced an unmapped one is a new mapping,
 * not registered yet, and the invalidation that told us about the unmap is
 * what sends the user back here.  Registering an already registered range
 * costs one system call and changes nothing.
 *
 * Context: gvm__mm_register, gvm__mm_fetch and gvm__mm_sync may block (they
 * fault pages in, take the kernel's mmap lock); call them without holding a
 * reservation or notifier_lock (vm->lock is allowed).  gvm__mm_lookup takes
 * only a leaf lock.
 */
#ifndef GVM_MM_MM_H
#define GVM_MM_MM_H

#include <stdbool.h>
#include <stdint.h>

#include <gvm/mm.h>

#include "mm/notifier.h"

#define GVM_MM_PAGE_SHIFT 12
#define GVM_MM_PAGE_SIZE (1ull << GVM_MM_PAGE_SHIFT)

/* A CPU mapping (a VMA), as gvm__mm_lookup() reports it. */
struct gvm_mm_vma {
	uint64_t start;		/* first byte */
	uint64_t end;		/* one past the last byte */
	unsigned int prot;	/* PROT_READ | PROT_WRITE | PROT_EXEC */
	unsigned int flags;	/* GVM_MM_VMA_* */
	uint64_t offset;	/* file offset of start (0 if anonymous) */
	uint64_t inode;		/* 0 if anonymous */
	uint32_t dev_major, dev_minor;
};

#define GVM_MM_VMA_SHARED (1u << 0)	/* MAP_SHARED (may share) */
#define GVM_MM_VMA_FILE (1u << 1)	/* backed by a file (incl. shmem) */

/* gvm__mm_lookup() flags */
#define GVM_MM_LOOKUP_NEXT (1u << 0)	/* no mapping at addr: the next one */

struct gvm_mm_ops {
	const char *name;
	int (*register_range)(struct gvm_mm *mm, uint64_t start, uint64_t len);
	int (*lookup)(struct gvm_mm *mm, uint64_t addr, unsigned int flags,
		      struct gvm_mm_vma *out);
	int (*fetch)(struct gvm_mm *mm, uint64_t start, uint64_t len,
		     bool write, uint64_t *addrs);
	int (*sync)(struct gvm_mm *mm);
	/* The last reference is gone; the notifier tree is empty. */
	void (*destroy)(struct gvm_mm *mm);
};

/*
 * The common part of every mm.
 *
 * Invariants: ref > 0 while reachable; subs holds the notifiers of live
 * users, each of which holds a reference, so subs is empty at destroy.
 */
struct gvm_mm {
	uint32_t ref;				/* atomic (core/sync.h refs) */
	const struct gvm_mm_ops *ops;		/* constant */
	struct gvm_notifier_subs subs;		/* its own lock */
};

/* Common initialisation and teardown for backends. */
void gvm__mm_init(struct gvm_mm *mm, const struct gvm_mm_ops *ops);
void gvm__mm_fini(struct gvm_mm *mm);

static inline bool gvm__mm_range_ok(uint64_t start, uint64_t len)
{
	return len && !(start & (GVM_MM_PAGE_SIZE - 1)) &&
	       !(len & (GVM_MM_PAGE_SIZE - 1)) && start + len > start;
}

/*
 * Makes sure every change to the CPU mappings of [start, start + len) is
 * turned into notifier invalidations from now on.  Parts of the range that
 * are not mapped are skipped (fetch reports them).  Returns 0, -EINVAL,
 * -EBUSY (the memory is watched by another userfaultfd, e.g. the
 * application's own), -EOPNOTSUPP (a kind of mapping the kernel cannot
 * watch, e.g. VM_PFNMAP or hugetlbfs without support), -ENOMEM.
 */
static inline int gvm__mm_register(struct gvm_mm *mm, uint64_t start,
				   uint64_t len)
{
	return mm->ops->register_range(mm, start, len);
}

/*
 * The CPU mapping containing @addr (or, with GVM_MM_LOOKUP_NEXT, the first
 * one above it).  Returns 0 or -ENOENT.  A snapshot: the mapping may change
 * right after.
 */
static inline int gvm__mm_lookup(struct gvm_mm *mm, uint64_t addr,
				 unsigned int flags, struct gvm_mm_vma *out)
{
	return mm->ops->lookup(mm, addr, flags, out);
}

/*
 * Faults [start, start + len) in, for writing if @write, honouring the CPU
 * protection, without pinning anything, and writes the device address of
 * each 4 KiB page to addrs[0 .. len / 4K - 1].  For gvm_mm_self the device
 * address of system memory is the CPU virtual address itself (the simulated
 * device reaches system memory through it); a backend with real DMA would
 * put DMA addresses here.  Nothing is pinned: the pages stay valid only
 * while the notifier sequence does not move (see the protocol above).
 * Returns 0, -EINVAL, -EFAULT (not fully mapped, PROT_NONE, or the pages
 * could not be faulted in: SIGBUS), -EPERM (write to read-only memory),
 * -ENOMEM, -EHWPOISON, -EINTR.
 */
static inline int gvm__mm_fetch(struct gvm_mm *mm, uint64_t start,
				uint64_t len, bool write, uint64_t *addrs)
{
	return mm->ops->fetch(mm, start, len, write, addrs);
}

/*
 * Waits until every CPU mapping change that completed before this call has
 * been turned into invalidations (for self: the event thread has processed
 * them).  Returns 0 or a negative errno.
 */
static inline int gvm__mm_sync(struct gvm_mm *mm)
{
	return mm->ops->sync(mm);
}

/* Invalidates [start, start + len) with @event (gvm__notifier_invalidate). */
unsigned int gvm__mm_invalidate(struct gvm_mm *mm, uint64_t start,
				uint64_t len, enum gvm_mm_event event);

/* ---- helpers shared by the backends (maps.c, fetch.c) ------------------ */

/*
 * /proc/self/maps, queried with the PROCMAP_QUERY ioctl (Linux >= 6.11) or
 * parsed.  Thread-safe (queries on the shared file are serialised).
 */
struct gvm_mm_maps {
	int fd;			/* /proc/self/maps, O_CLOEXEC */
	bool have_query;	/* PROCMAP_QUERY works on this kernel */
	struct gvm_mutex lock;	/* serialises ioctls on fd (leaf) */
};

/*
 * Test knob: when true (also when the environment has GVM_MM_MAPS=parse at
 * init), lookups parse the text instead of using PROCMAP_QUERY.
 */
extern bool gvm__mm_maps_force_parse;

int gvm__mm_maps_init(struct gvm_mm_maps *maps);
void gvm__mm_maps_fini(struct gvm_mm_maps *maps);
int gvm__mm_maps_lookup(struct gvm_mm_maps *maps, uint64_t addr,
			unsigned int flags, struct gvm_mm_vma *out);
/* The two methods, for tests comparing them; -EOPNOTSUPP if no ioctl. */
int gvm__mm_maps_query(struct gvm_mm_maps *maps, uint64_t addr,
		       unsigned int flags, struct gvm_mm_vma *out);
int gvm__mm_maps_parse(uint64_t addr, unsigned int flags,
		       struct gvm_mm_vma *out);

/* Page fetching of the calling process's memory (fetch.c). */
int gvm__mm_fetch_self(struct gvm_mm_maps *maps, uint64_t start, uint64_t len,
		       bool write, uint64_t *addrs);

/* ---- self backend (self.c), for tests ---------------------------------- */

struct gvm_mm_self_stats {
	uint64_t unmap, remove, remap, fork, pagefault;	/* events read */
	uint64_t invalidations;				/* ranges invalidated */
};

/* Counters of @mm, which must come from gvm_mm_self(). */
void gvm__mm_self_stats(struct gvm_mm *mm, struct gvm_mm_self_stats *out);

/* The features UFFDIO_API granted (0 if @mm is not self). */
uint64_t gvm__mm_self_features(struct gvm_mm *mm);

#endif
