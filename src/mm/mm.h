/* SPDX-License-Identifier: MIT */
/*
 * The mm contract: what the GPU side (userptr, SVM) needs from a CPU address
 * space, and what every backend provides (internal API).
 *
 * Backends: "self" (src/mm/self.c, the calling process, watched through a
 * userfaultfd) and "model" (a simulated address space driven by API
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
 *	gvm__mm_fetch(mm, start, len, write, &ext, &n);
 *	lock(notifier_lock);
 *	if (gvm__notifier_read_retry(&n, seq)) { unlock; goto again; }
 *	commit PTEs from ext[0 .. n - 1];
 *	unlock(notifier_lock);
 *
 * Insert before registering: a mapping change that happens after the
 * registration then always reaches the notifier.  Register again on every
 * (re)fetch: a CPU mapping that replaced an unmapped one is a new mapping,
 * not registered yet, and the invalidation that told us about the unmap is
 * what sends the user back here.  Registering an already registered range
 * costs one system call and changes nothing.
 *
 * Ordering against the application.  A backend may learn of a CPU change
 * after the call that made it returned (self: the event thread processes
 * the event after munmap/madvise returned).  Two rules keep that invisible
 * to an application that orders its own calls:
 *  - gvm__mm_flush(): every gvm call that acts on mirrored memory (bind,
 *    exec, and later the SVM fault path) flushes first, with no lock held,
 *    so that a change made before the call has been applied to every
 *    notifier before the call looks at its mappings;
 *  - stamps (notifier.h): an invalidation of a change that was complete
 *    before a notifier was inserted does not hit that notifier, so a late
 *    event about a previous mapping never tears down a new one, flush or
 *    not.
 *
 * Context: gvm__mm_register, gvm__mm_fetch and gvm__mm_sync may block (they
 * fault pages in, take the kernel's mmap lock); call them without holding a
 * reservation or notifier_lock (vm->lock is allowed).  gvm__mm_lookup takes
 * only a leaf lock.  gvm__mm_flush may block and needs stricter: no lock at
 * all (see there).
 */
#ifndef GVM_MM_MM_H
#define GVM_MM_MM_H

#include <stdbool.h>
#include <stdint.h>

#include <gvm/mm.h>

#include "core/inject.h"

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

/* A run of pages contiguous in device addresses: [addr, addr + len). */
struct gvm_mm_extent {
	uint64_t addr;
	uint64_t len;
};

/* What a stage must hold (gvm_mm_ops.stage_get). */
enum gvm_mm_stage_kind {
	GVM_MM_STAGE_EMPTY,
	GVM_MM_STAGE_FULL,
	GVM_MM_STAGE_HUGE,
};

struct gvm_mm_ops {
	const char *name;
	/* @missing: CPU accesses to absent pages fault to the backend,
	   which hands them to gvm__mm_devmem_fault() (devmem.c) */
	int (*register_range)(struct gvm_mm *mm, uint64_t start, uint64_t len,
			      bool missing);
	/* The CPU owns [start, start + len) again: its absent pages no
	   longer fault to the backend (registering without @missing may
	   not drop it).  Called only inside a migration's invalidation,
	   the range's device data gone.  NULL: register_range(false). */
	int (*unmiss)(struct gvm_mm *mm, uint64_t start, uint64_t len);
	int (*lookup)(struct gvm_mm *mm, uint64_t addr, unsigned int flags,
		      struct gvm_mm_vma *out);
	int (*fetch)(struct gvm_mm *mm, uint64_t start, uint64_t len,
		     bool write, struct gvm_mm_extent **ext, size_t *nr);
	int (*sync)(struct gvm_mm *mm);
	/* NULL for a backend that applies every change before it returns. */
	int (*flush)(struct gvm_mm *mm);
	/* The last reference is gone; the notifier tree is empty. */
	void (*destroy)(struct gvm_mm *mm);

	/*
	 * Device-private emulation (devmem.c); all NULL if the backend
	 * cannot take pages away from the CPU.  A stage is a
	 * GVM_MM_STAGE_MAX-byte area of system memory owned by the backend
	 * that holds a range's contents on their way between the CPU
	 * mapping and device memory.  Called with the mm's devmem_lock.
	 *  - stage_get: a stage of @kind: EMPTY, with no page in it (take
	 *    moves pages in); FULL, preferably one with its pages still
	 *    allocated (the copy back to the CPU then writes without page
	 *    faults); HUGE, one with a huge page in it or none (a write
	 *    then faults in a huge page, if the system can), for the way
	 *    back of a huge page (take's @huge);
	 *  - stage_put: returns it; @empty: no page left in it;
	 *  - take: moves the CPU pages of [start, start + len) to the
	 *    stage (an absent page becomes a zero page there); the CPU
	 *    mapping is left with no page, registered @missing, so that a
	 *    CPU access faults to the backend.  *@huge: the pages were one
	 *    huge (PMD-mapped) page, moved whole, so the CPU mapping takes
	 *    huge pages and a give of one from a stage filled by the CPU
	 *    (stage_get @empty, which then faults in a huge page if it can)
	 *    restores it as one: one new page-table entry instead of 512.
	 *    0, -EBUSY (a page is shared
	 *    with another process, e.g. after fork(), or is memory the
	 *    library runs on: gvm__alloc_owns()), -EINVAL (a mapping
	 *    that cannot give its pages away: mlocked, ...), -ENOMEM;
	 *    nothing changed on failure, except -EINPROGRESS: it stopped
	 *    part way and could not put what it moved back now (an event
	 *    pending, as for give): the caller gives the stage back, as
	 *    after a failed copy;
	 *  - give: moves the stage's pages into the absent CPU pages of
	 *    [start, start + len) and wakes the CPU threads waiting there.
	 *    Pages the CPU no longer maps are skipped; a page whose mapping
	 *    the CPU made read-only or mlocked since the take (no event
	 *    says so) still gets its data.  0, or -EAGAIN: the CPU side is
	 *    changing (an event of the backend's is not read yet: the
	 *    kernel refuses to fill pages then) and only [start, start +
	 *    *@done) was given; nothing at or after it was touched.  Retry
	 *    once the pending events are read (gvm__mm_sync), from a thread
	 *    that is not the backend's event reader, holding no
	 *    devmem_lock while it waits (the reader may need it).  Another
	 *    -errno: the page at *@done could be neither moved nor copied
	 *    (-ENOMEM, ...); what follows it was not touched either (the
	 *    caller poisons them).
	 *  - give_copy (optional): fills the absent CPU pages of
	 *    [start, start + len) with copies of the bytes at CPU address
	 *    @src (any readable memory of ours, e.g. a VRAM window) and wakes
	 *    the CPU threads waiting there; pages the CPU no longer maps, or
	 *    that are present, are skipped.  0, or -errno if the page at
	 *    *@done could not be filled (-ENOMEM, or -EAGAIN as for give):
	 *    [start, start + *@done) was filled or skipped, nothing at or
	 *    after it was touched, and the caller gives the rest another
	 *    way.
	 *  - stage_tidy (optional): prepares an EMPTY stage for a later
	 *    take (empties one a take filled), if few are ready; called
	 *    while a migration's copy runs (devmem ops copy's meanwhile),
	 *    so that this work overlaps the copy instead of delaying the
	 *    next take.
	 */
	int (*stage_get)(struct gvm_mm *mm, enum gvm_mm_stage_kind kind,
			 uint64_t *stage);
	void (*stage_put)(struct gvm_mm *mm, uint64_t stage, bool empty);
	int (*take)(struct gvm_mm *mm, uint64_t start, uint64_t len,
		    uint64_t stage, bool *huge);
	int (*give)(struct gvm_mm *mm, uint64_t start, uint64_t len,
		    uint64_t stage, uint64_t *done);
	int (*give_copy)(struct gvm_mm *mm, uint64_t start, uint64_t len,
			 uint64_t src, uint64_t *done);
	void (*stage_tidy)(struct gvm_mm *mm);
	/* The absent CPU pages of the range get SIGBUS on access. */
	int (*poison)(struct gvm_mm *mm, uint64_t start, uint64_t len);

	/*
	 * The CPU's read (@write false) or write of [addr, addr + len), for
	 * a backend whose memory the process does not reach at those
	 * addresses (the model: gvm_mm_model_read/_write); NULL: the
	 * process's own memory (gvm__mm_access does it).  0, -EFAULT (not
	 * all mapped, or not writable), -ENOMEM.  With @len 0: 0 if @addr
	 * is in the backend's address range (mapped or not), else -ERANGE
	 * (gvm__mm_owns).  Called with no lock held.
	 */
	int (*access)(struct gvm_mm *mm, uint64_t addr, void *buf,
		      uint64_t len, bool write);

	/*
	 * Optional, tests: the invalidation injection site INVAL makes
	 * (gvm__mm_inject_inval) when it fires on [start, start + len): a
	 * change of the backend's own, run inside its invalidation (the
	 * model: a reclaim, which moves the present pages to new frames and
	 * poisons the old, so a commit that missed it maps poison).  NULL:
	 * an invalidation that changes nothing.  Called with at most
	 * vm->lock, devmem_lock or the backend's own CPU-access lock held,
	 * so it takes none of them.
	 */
	void (*inject_inval)(struct gvm_mm *mm, uint64_t start, uint64_t len);
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
	/* device-private emulation (devmem.c) */
	struct gvm_mutex devmem_lock;		/* GVM_RANK_MM */
	struct gvm_itree devmem;		/* devmem_lock: the ranges
						   whose data is in device
						   memory (struct devmem_ext) */
	bool devmem_frozen;			/* devmem_lock: a fork() is
						   under way */
	uint32_t devmem_nr;			/* atomic, written under
						   devmem_lock: extents */
	uint64_t devmem_waits;			/* devmem_lock: migrations
						   back that waited for a
						   pending event (-EAGAIN) */
	bool devmem_ok;				/* constant: the backend can
						   take pages (set at
						   creation) */
};

/* Common initialisation and teardown for backends. */
void gvm__mm_init(struct gvm_mm *mm, const struct gvm_mm_ops *ops);
void gvm__mm_fini(struct gvm_mm *mm);
/* devmem.c's part of gvm__mm_fini: drops what is left in device memory. */
void gvm__mm_devmem_fini(struct gvm_mm *mm);

/*
 * A private anonymous mapping of @len bytes of the library's own (for a
 * backend's stages and frames) at an address aligned to @align (a power
 * of two, a multiple of the page size); MAP_FAILED with errno set.
 * @flags are added to MAP_PRIVATE | MAP_ANONYMOUS.  Free with munmap.
 */
void *gvm__mm_map_aligned(uint64_t len, uint64_t align, int flags);

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
 * Device-resident parts stay registered for CPU faults (devmem.c).
 */
int gvm__mm_register(struct gvm_mm *mm, uint64_t start, uint64_t len);

/*
 * A CPU access to @mm's memory from the library (a debugger's peek and
 * poke, a user fence's store): [addr, addr + len) read into @buf, or
 * written from it.  Through the backend's access op (the model), or, for
 * the process's own memory (@mm NULL or without the op), with
 * process_vm_readv/writev on this process, so that an unmapped or
 * unwritable page is -EFAULT, not a crash.  A page SVM moved to device
 * memory comes back first, as a CPU access brings it.  0, -EFAULT,
 * -ENOMEM; a write failing part way may have written the bytes before the
 * failing page.  May block: no lock held, not from a fence callback.
 */
int gvm__mm_access(struct gvm_mm *mm, uint64_t addr, void *buf, uint64_t len,
		   bool write);

/*
 * Is @addr an address of @mm's own memory, which the process does not
 * reach by address (a model mm's range, mapped or not)?  False for
 * gvm_mm_self and NULL: their addresses are the process's.
 */
static inline bool gvm__mm_owns(struct gvm_mm *mm, uint64_t addr)
{
	return mm && mm->ops->access &&
	       !mm->ops->access(mm, addr, NULL, 0, false);
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
 * protection, without pinning anything, and returns the device addresses
 * of its pages as extents in page order: *@ext (allocated with
 * gvm__malloc, the caller frees it with gvm__free), *@nr >= 1 of them,
 * adjacent extents not contiguous.  For gvm_mm_self the device address of
 * system memory is the CPU virtual address itself (the simulated device
 * reaches system memory through it), so the answer is always one extent;
 * a backend with real DMA would put DMA addresses here.  Nothing is
 * pinned: the pages stay valid only while the notifier sequence does not
 * move (see the protocol above).  Returns 0, -EINVAL, -EFAULT (not fully
 * mapped, PROT_NONE, or the pages could not be faulted in: SIGBUS), -EPERM
 * (write to read-only memory), -ENOMEM, -EHWPOISON, -EINTR; on error
 * *@ext and *@nr are left alone.
 */
static inline int gvm__mm_fetch(struct gvm_mm *mm, uint64_t start,
				uint64_t len, bool write,
				struct gvm_mm_extent **ext, size_t *nr)
{
	int err = gvm__inject(GVM_INJECT_FETCH);

	return err ? err : mm->ops->fetch(mm, start, len, write, ext, nr);
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

/*
 * Waits until every change to the CPU mappings made before this call has
 * been applied to every notifier (both passes of its invalidation done).
 * "Made before" means: the system call that made it (munmap, madvise,
 * mremap, fork) returned before gvm__mm_flush was called, in any thread.
 * For self: Linux returns from those calls only once the event thread has
 * *read* their event, so it is enough to wait for the event the thread is
 * processing now, if any; an idle thread costs one atomic load.  Returns
 * 0 (the self backend cannot fail).
 *
 * Context: may block, for as long as one invalidation takes.  Call it with
 * no lock held at all (asserted in debug builds), which is why bind and
 * exec flush before they take vm->lock.  The argument: the flush waits for
 * the callbacks of the invalidation in progress.  Today those of userptr
 * (vm/userptr.c) take only notifier_lock and wait only for TLB
 * invalidations and LR preempt fences, which engines signal at a lane
 * boundary holding no gvm lock, so a flush under vm->lock would not hang
 * today; but the first callback to wait for the VM's jobs (as Linux
 * drivers do) would wait for a bind job, a bind job takes vm->lock, and a
 * flusher holding vm->lock would close the cycle.  Flushing with nothing
 * held keeps every callback free to wait for anything that takes no more
 * than notifier_lock, in any thread but the flusher's.  For the same
 * reason a thread those callbacks may wait for (an engine thread, a fence
 * callback) must not flush.  A flush from a notifier callback running on
 * the event thread returns 0 at once: the events before the one being
 * processed are done, and waiting for that one would wait for itself.
 */
static inline int gvm__mm_flush(struct gvm_mm *mm)
{
	return mm->ops->flush ? mm->ops->flush(mm) : 0;
}

/* ---- device-private emulation (devmem.c) -------------------------------- */

/*
 * At most this many bytes move between a CPU mapping and device memory in
 * one migration (an SVM range is at most 2 MiB).
 */
#define GVM_MM_STAGE_MAX (2ull << 20)

struct gvm_mm_devmem;

/* What device memory does for the mm (implemented by its owner). */
struct gvm_mm_devmem_ops {
	/*
	 * Copies @len bytes between the device memory at offset @off and
	 * the system memory at CPU address @sys (a stage): to the device, or
	 * back if @to_ram.  @meanwhile, if not NULL, is called with @arg at
	 * most once, while the copy runs (the caller's work that overlaps
	 * it); a copy done in the calling thread may call it before or
	 * after.  May block; called with the mm's devmem_lock held and
	 * nothing above it.  0 or a negative errno.
	 */
	int (*copy)(struct gvm_mm_devmem *dm, uint64_t off, uint64_t sys,
		    uint64_t len, bool to_ram, void (*meanwhile)(void *arg),
		    void *arg);
	/*
	 * Optional: a CPU address where [off, off + len) of the device
	 * memory can be read (the device's CPU window over VRAM), or 0 if it
	 * has none for that range.  Called, like copy(to_ram), when the
	 * caller is about to bring those bytes back to system memory, which
	 * it then reads from there with the CPU; same context as copy.
	 */
	uint64_t (*cpu_addr)(struct gvm_mm_devmem *dm, uint64_t off,
			     uint64_t len);
	/*
	 * Optional: copies @len bytes from device memory @src at @src_off
	 * into this device memory at @off, directly (a device-to-device
	 * copy, no system memory), for gvm__mm_devmem_move.  -EXDEV if it
	 * cannot reach @src that way (another owner's kind of memory, no
	 * link); else 0 or the copy's error.  Either way @src is unchanged.
	 * Same context as copy.
	 */
	int (*copy_from)(struct gvm_mm_devmem *dm, uint64_t off,
			 struct gvm_mm_devmem *src, uint64_t src_off,
			 uint64_t len);
	/* The last reference went: free the device memory.  May take a
	   leaf lock; called with any lock below GVM_RANK_LEAF held. */
	void (*release)(struct gvm_mm_devmem *dm);
	/*
	 * Optional: no CPU page of the mm lives in @dm any more (its last
	 * extent went: data back, discarded, or the mm's end), so the owner
	 * can stop offering it for eviction (gvm__mm_devmem_evict).  Called
	 * once per migration that succeeded, with the mm's devmem_lock held
	 * (the mm may be in its teardown); may take a leaf lock only.
	 */
	void (*unused)(struct gvm_mm_devmem *dm);
	/*
	 * Optional: a CPU access is about to bring this device memory's
	 * data back (gvm__mm_devmem_fault, before the move, which goes
	 * through copy or cpu_addr; once per extent of the mm, even if the
	 * move takes several attempts).  Same context as copy.
	 */
	void (*faulted)(struct gvm_mm_devmem *dm);
	/*
	 * Optional: the data of an extent of @len bytes in this device
	 * memory is going back to system memory (not discarded): called
	 * once per extent, before its first attempt, and so before any CPU
	 * thread waiting for it is woken, whichever way (copy, cpu_addr) and
	 * in however many attempts it goes.  Same context as copy.
	 */
	void (*to_ram)(struct gvm_mm_devmem *dm, uint64_t len);
};

/*
 * Device memory that holds (or held) the data of CPU pages, like the
 * kernel's device-private pages: one per migration, made by its owner
 * (e.g. an SVM range's VRAM, vm/migrate.c) and referenced by the mm for as
 * long as CPU pages live in it and by each user that maps it.
 */
struct gvm_mm_devmem {
	uint32_t ref;				/* atomic */
	const struct gvm_mm_devmem_ops *ops;	/* constant */
	const void *owner;			/* constant: whose memory (a
						   device), compared only */
	uint64_t size;				/* constant, bytes */
	uint32_t extents;			/* the mm's devmem_lock: extents
						   of the mm referring to it */
};

/* Sets up @dm with one reference (its maker's). */
void gvm__mm_devmem_init(struct gvm_mm_devmem *dm,
			 const struct gvm_mm_devmem_ops *ops,
			 const void *owner, uint64_t size);
void gvm__mm_devmem_get(struct gvm_mm_devmem *dm);
void gvm__mm_devmem_put(struct gvm_mm_devmem *dm);

/* Can this mm move pages to device memory at all? */
static inline bool gvm__mm_devmem_supported(const struct gvm_mm *mm)
{
	return mm->devmem_ok && mm->ops->take != NULL;
}

/*
 * Migrates [start, start + len) (at most GVM_MM_STAGE_MAX, len <= dm's
 * size) into @dm at offset 0: every notifier over it is invalidated
 * (GVM_MM_EVENT_MIGRATE), the CPU pages are taken away and copied to @dm,
 * and from then on a CPU access to the range migrates it back
 * (gvm__mm_devmem_fault).  Context: vm->lock allowed, nothing above it.
 * 0, -EEXIST (part of the range is in device memory already),
 * -EOPNOTSUPP (the mm cannot), -EBUSY / -EINVAL (the pages cannot be
 * taken: shared with a fork child, mlocked...), -ENOMEM, or @dm's copy
 * error; on failure the CPU pages are as they were.
 */
int gvm__mm_migrate_to_devmem(struct gvm_mm *mm, uint64_t start, uint64_t len,
			      struct gvm_mm_devmem *dm);

/*
 * Moves [start, start + len), which lives whole in one other owner's
 * device memory (exactly one extent, every page valid), into @dm at
 * offset 0 directly: every notifier over it is invalidated
 * (GVM_MM_EVENT_MIGRATE), @dm's copy_from copies the data from the old
 * device memory, and the extent then refers to @dm; the old device memory
 * is let go (its owner's unused op if that was its last extent).  The CPU
 * pages stay absent throughout, so a CPU access waits for the move and
 * then brings the data back from @dm.  Context as
 * gvm__mm_migrate_to_devmem.  0, -ENOENT (no page of the range is in
 * device memory: migrate it from system memory), -EEXIST (it is in @dm's
 * owner's memory already), -EXDEV (not whole in one extent, or @dm
 * cannot copy from there: move it through system memory), -EAGAIN (a
 * fork() is under way), or the copy's error; on failure nothing changed
 * and the data is where it was.
 */
int gvm__mm_devmem_move(struct gvm_mm *mm, uint64_t start, uint64_t len,
			struct gvm_mm_devmem *dm);

/*
 * Brings every device-resident page of [start, start + len) back to system
 * memory, each migration whole (notifiers invalidated first).  Same
 * context.  0, or the copy's error (the pages that could not be copied
 * back are then poisoned: a CPU access gets SIGBUS, as with a memory
 * error; never stale data).
 */
int gvm__mm_migrate_to_ram(struct gvm_mm *mm, uint64_t start, uint64_t len);

/*
 * Test hook, NULL outside tests: a migration back (gvm__mm_migrate_to_ram,
 * gvm__mm_devmem_evict) stopped part way on give's -EAGAIN and is about
 * to wait for the pending events, then go on.  Called on the migrating
 * thread with no lock held.
 */
extern void (*gvm__mm_back_wait_hook)(struct gvm_mm *mm);

/*
 * Eviction: brings every CPU page whose data lives in @dm back to system
 * memory, wherever the CPU maps it now (an mremap may have moved or split
 * it; the devmem does not know the CPU address, the extents do), each
 * extent whole, notifiers invalidated first, as gvm__mm_migrate_to_ram.
 * Context: as gvm__mm_migrate_to_ram (vm->lock allowed; no reservation,
 * no devmem_lock of any mm).  0, -ENOENT (no page of the mm lives in @dm
 * now), or the copy's error (pages poisoned, as there).  Costs a walk of
 * the mm's extents.
 */
int gvm__mm_devmem_evict(struct gvm_mm *mm, struct gvm_mm_devmem *dm);

/*
 * If all of [start, start + len) lives in one device memory of @owner
 * (NULL: of anyone), returns it with a reference and its offset there;
 * else NULL.  *@other: some page of the range is in device memory (it
 * must be migrated back before the range can be fetched).  devmem_lock
 * inside.
 */
struct gvm_mm_devmem *gvm__mm_devmem_lookup(struct gvm_mm *mm, uint64_t start,
					    uint64_t len, const void *owner,
					    uint64_t *off, bool *other);

/*
 * For backends.  A CPU access faulted at @addr (a page registered
 * missing): migrates its range back.  If the page is not device-resident,
 * @absent (if not NULL) fills it, under devmem_lock, so that no
 * migration takes the range in between (a zero page filled after one
 * did would hide the data it moved, for good), and its result is
 * returned; with @absent NULL, -ENOENT.  -EAGAIN: an event of the backend
 * is pending and must be read first (give's -EAGAIN; the part given is
 * back, the rest still device-resident): call again after reading it,
 * without waking the faulting thread meanwhile; else as
 * gvm__mm_migrate_to_ram.
 */
int gvm__mm_devmem_fault(struct gvm_mm *mm, uint64_t addr,
			 int (*absent)(struct gvm_mm *mm, uint64_t page));

/*
 * Extents of at most this many bytes come back by a CPU copy from the
 * device's CPU window straight into the CPU pages (devmem ops cpu_addr and
 * mm ops give_copy, if both exist); larger ones through a copy-engine copy
 * into a stage whose pages are then moved in.  Default
 * GVM_MM_CPU_BACK_MAX; tests and benchmarks may change it (relaxed).
 */
#define GVM_MM_CPU_BACK_MAX GVM_MM_STAGE_MAX
extern uint64_t gvm__mm_devmem_cpu_back_max;
/* The CPU pages of [start, start + len) were discarded or unmapped:
   their data in device memory is dropped. */
void gvm__mm_devmem_discard(struct gvm_mm *mm, uint64_t start, uint64_t len);

/*
 * The same in two steps, around the invalidation of an event that
 * discards (UNMAP, REMOVE): _begin drops the range's data from the mm at
 * once (no eviction, fault-back or fetch finds it any more: the CPU pages
 * are what the event made them) but keeps the device memory of up to
 * GVM_MM_DISCARD_HELD extents it empties allocated (a GPU may still reach
 * it until the invalidation's passes); gvm__mm_devmem_discard in the
 * invalidation's change drops what did not fit; _end lets the held
 * memory go.  Context: as gvm__mm_devmem_discard.
 */
#define GVM_MM_DISCARD_HELD 8
struct gvm_mm_discard {
	struct gvm_mm_devmem *held[GVM_MM_DISCARD_HELD];
	unsigned int nr;
};
void gvm__mm_devmem_discard_begin(struct gvm_mm *mm, uint64_t start,
				  uint64_t len, struct gvm_mm_discard *d);
void gvm__mm_devmem_discard_end(struct gvm_mm_discard *d);
/* mremap moved [from, from + len) to @to: so does their device data. */
void gvm__mm_devmem_remap(struct gvm_mm *mm, uint64_t from, uint64_t to,
			  uint64_t len);
/* Before fork(): everything back to system memory, and no migration to
   device memory until gvm__mm_devmem_fork_done() (the child must see the
   data in its copy of the pages). */
void gvm__mm_devmem_fork_prepare(struct gvm_mm *mm);
void gvm__mm_devmem_fork_done(struct gvm_mm *mm);
/* Device-resident bytes (statistics, tests). */
uint64_t gvm__mm_devmem_bytes(struct gvm_mm *mm);
/* Times a migration back waited for the backend's pending events. */
uint64_t gvm__mm_devmem_waits(struct gvm_mm *mm);

/* Invalidates [start, start + len) with @event (gvm__notifier_invalidate). */
unsigned int gvm__mm_invalidate(struct gvm_mm *mm, uint64_t start,
				uint64_t len, enum gvm_mm_event event);

/*
 * Injection site INVAL (core/inject.h): if it fires, [start, start + len)
 * is invalidated right here, as a fork() on another thread could (a FORK
 * event), or, if the backend has one, by its inject_inval change (the
 * model mm: a reclaim, the pages moved to new frames).  Placed where data
 * was fetched or copied and its new place is not yet published: a
 * userptr's or SVM range's fetch before its commit (vm/userptr.c), a
 * migration's copy before its extent is recorded or given back
 * (mm/devmem.c).  Context: as gvm__notifier_invalidate (at most
 * devmem_lock held; inside a migration's own invalidation is allowed).
 */
static inline void gvm__mm_inject_inval(struct gvm_mm *mm, uint64_t start,
					uint64_t len)
{
	if (!gvm__inject(GVM_INJECT_INVAL))
		return;
	if (mm->ops->inject_inval)
		mm->ops->inject_inval(mm, start, len);
	else
		gvm__mm_invalidate(mm, start, len, GVM_MM_EVENT_FORK);
}

/* ---- helpers shared by the backends (maps.c, fetch.c) ------------------ */

/*
 * /proc/self/maps, queried with the PROCMAP_QUERY ioctl (Linux >= 6.11) or
 * parsed.  Thread-safe (queries on the shared file are serialised).
 */
struct gvm_mm_maps {
	int fd;			/* /proc/self/maps, O_CLOEXEC */
	bool have_query;	/* PROCMAP_QUERY works on this kernel */
	struct gvm_mutex lock;	/* serialises ioctls on fd (leaf) */
	/* fetch.c: /proc/self/pagemap (O_CLOEXEC) for PAGEMAP_SCAN, -1 if it
	   cannot be opened; constant.  Its ioctls need no lock. */
	int pagemap_fd;
	/* relaxed atomic: PAGEMAP_SCAN may work (cleared for good when it
	   answers EINVAL or ENOTTY: a kernel before 6.7) */
	bool have_scan;
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
		       bool write, struct gvm_mm_extent **ext, size_t *nr);
/*
 * True if [start, start + len) is mapped by huge (PMD) pages only
 * (PAGEMAP_SCAN); false if not, or if the kernel cannot say.
 */
bool gvm__mm_maps_huge(struct gvm_mm_maps *maps, uint64_t start,
		       uint64_t len);
/* fetch.c, from gvm__mm_maps_init: opens the pagemap, counts forks. */
void gvm__mm_fetch_init(struct gvm_mm_maps *maps);

/*
 * Test knob: how gvm__mm_fetch_self() faults pages in.  AUTO: ranges of
 * GVM_MM_SCAN_MIN_BYTES or more are scanned first (PAGEMAP_SCAN) and
 * only what needs a fault is populated, smaller ones populated whole;
 * SCAN: scan every range; POPULATE: never scan (what a kernel before 6.7
 * gets).  The environment sets it at init: GVM_MM_FETCH=scan|populate.
 */
enum gvm_mm_fetch_mode {
	GVM_MM_FETCH_AUTO,
	GVM_MM_FETCH_SCAN,
	GVM_MM_FETCH_POPULATE,
};
extern enum gvm_mm_fetch_mode gvm__mm_fetch_mode;
/*
 * Where the scan starts to pay: one PAGEMAP_SCAN plus the mappings check
 * cost ~0.9 us whatever the size, a populate of present pages ~0.35 us
 * plus ~80-150 ns a page (docs/mm.md, "Page fetching"): even at
 * 8 pages, a clear gain at 16 (svm_fault_64k -0.3 to -0.5 us).
 */
#define GVM_MM_SCAN_MIN_BYTES (32u << 10)
/* Counters of the fetch methods (relaxed atomics; tests read them). */
extern uint64_t gvm__mm_fetch_scans, gvm__mm_fetch_populates;

/*
 * Faults the page of the calling process at @addr in for writing, as a
 * store would: a page SVM moved to device memory comes back (the fault
 * waits for the mm's event thread).  0, or -EFAULT (not writable, not
 * mapped).  May block: no lock held, not from a fence callback or the
 * event thread.
 */
int gvm__mm_populate_write(uint64_t addr);

/*
 * Write-protection of shared memory the library owns while it moves what
 * is behind it (a BO's CPU view: vm/move.c), so that no CPU store lands
 * in the old copy after the data was copied.  gvm__mm_wp_begin() makes
 * stores to [addr, addr + len) sleep (reads go on): 0, or -errno and
 * nothing protected (-EOPNOTSUPP: no userfaultfd write-protection of
 * shared memory here; -EBUSY: the range is another userfaultfd's).
 * gvm__mm_wp_end() lets them go, after the caller replaced the range's
 * mapping (they retry on the new one) or not (they go on on the old).
 * A thread whose store sleeps holds whatever it held: the range is
 * protected only for a copy, which waits for nothing a CPU thread holds.
 * No lock held; self.c.
 */
int gvm__mm_wp_begin(void *addr, size_t len);
void gvm__mm_wp_end(void *addr, size_t len);

/* ---- self backend (self.c), for tests ---------------------------------- */

struct gvm_mm_self_stats {
	uint64_t unmap, remove, remap, fork, pagefault;	/* events read */
	uint64_t cpu_faults;		/* faults on device-resident ranges */
	uint64_t cpu_faults_deferred;	/* of them held back behind a pending
					   event (each time) */
	uint64_t invalidations;				/* ranges invalidated */
	uint64_t stages_tidied;		/* stages emptied during a copy */
};

/* Counters of @mm, which must come from gvm_mm_self(). */
void gvm__mm_self_stats(struct gvm_mm *mm, struct gvm_mm_self_stats *out);

/* The features UFFDIO_API granted (0 if @mm is not self). */
uint64_t gvm__mm_self_features(struct gvm_mm *mm);

/*
 * Test knob, set before the first gvm_mm_self(): the handshake behaves as
 * for a process without CAP_SYS_PTRACE, whose request for EVENT_FORK the
 * kernel refuses with EPERM (gvm_mm_self then goes on without FORK).
 */
extern bool gvm__mm_self_refuse_fork;

/*
 * Test hooks, NULL outside tests (set and cleared by a test while no event
 * is pending; read with acquire):
 *  - gvm__mm_self_before_event: the event thread has read an event of type
 *    @uffd_event (UFFD_EVENT_*) and taken its stamp (the read bracket is
 *    closed: inserts do not wait), and has not processed it; the hook may
 *    block to hold the thread there (flushes then wait).
 *  - gvm__mm_flush_before_wait: a flush found the event thread processing
 *    an event and is about to wait for it (not called when a flush returns
 *    at once).
 */
extern void (*gvm__mm_self_before_event)(struct gvm_mm *mm,
					 uint8_t uffd_event);
extern void (*gvm__mm_flush_before_wait)(struct gvm_mm *mm);

#endif
