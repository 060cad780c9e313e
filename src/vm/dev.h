/* SPDX-License-Identifier: MIT */
/*
 * The library side of a device (internal): what gvm keeps per device
 * behind the backend contract of <gvm/device.h>.
 *
 * Locking: vram_lock (leaf) serialises the VRAM buddy, the LRUs (BOs and
 * SVM memory), the VRAM claims and the dead BOs; the fault queue has its own leaf lock
 * (fault_queue.h); everything else is immutable after
 * gvm_device_create() or atomic (refcount, counters).
 */
#ifndef GVM_VM_DEV_H
#define GVM_VM_DEV_H

#include <pthread.h>
#include <stdbool.h>

#include <gvm/device.h>
#include <gvm/sched.h>

#include "core/buddy.h"
#include "core/list.h"
#include "vm/fault_queue.h"

struct gvm_lockset;
struct gvm_vm;

/*
 * The rebind worker of a device's preempt-fence-mode VMs (lr.c): one
 * thread, started with the first such VM, serving every VM of the device
 * in the order they were kicked.
 */
struct gvm_lr_worker {
	struct gvm_mutex start_lock;	/* unranked: serialises starting the
					   thread, held across its creation
					   (lr.c, gvm__lr_vm_init) */
	struct gvm_mutex lock;		/* leaf: everything below, and each
					   VM's lr_link, lr_kicked, lr_dead */
	pthread_cond_t cond;		/* with lock: a kick, stop, a pass
					   ended */
	struct gvm_list kicked;		/* gvm_vm.lr_link, oldest kick first */
	struct gvm_vm *running;		/* the VM the thread works on, or
					   NULL */
	bool started;			/* written under start_lock and lock,
					   read under either */
	bool stop;
	pthread_t thread;		/* if started; written with it */
};

struct gvm_device {
	char name[32];			/* immutable */
	struct gvm_device_desc desc;	/* immutable; desc.name -> name */
	const struct gvm_device_ops *ops; /* immutable */
	void *priv;			/* immutable */
	uint32_t refcount;		/* atomic */
	struct gvm_mutex vram_lock;	/* leaf: protects vram and lru */
	struct gvm_buddy vram;		/* offsets from desc.vram_base */
	struct gvm_list lru;		/* BOs in VRAM, least recently used
					   first (gvm_bo::lru_link) */
	struct gvm_sched *sched;	/* runs bind and exec jobs; immutable */
	uint32_t id;			/* immutable, unique, from 1 */
	uint32_t unplugged;		/* atomic: gvm_device_unplug() ran */
	struct gvm_list links;		/* struct gvm_link::node[]; the
					   process-wide link lock */
	uint64_t svm_to_ram;		/* atomic: SVM migrations back to
					   system memory (migrate.c) */
	uint64_t svm_bytes_to_ram;	/* atomic: their bytes */
	uint64_t svm_to_vram;		/* atomic: SVM migrations into this
					   device's memory (migrate.c) */
	uint64_t svm_bytes_to_vram;	/* atomic: their bytes */
	uint64_t svm_d2d_in;		/* atomic: SVM migrations into this
					   device's memory copied directly
					   from a linked device's (counted
					   in svm_to_vram too; migrate.c) */
	uint64_t svm_d2d_out;		/* atomic: SVM migrations out of this
					   device's memory directly into a
					   linked device's (not in
					   svm_to_ram: no system memory) */
	uint64_t svm_bytes_d2d_out;	/* atomic: their bytes */
	uint64_t svm_faults;		/* atomic: SVM faults serviced on
					   this device (svm.c) */
	uint64_t access_notified;	/* atomic: access-counter
					   notifications of its engines
					   (fault_queue.c) */
	uint64_t access_dropped;	/* atomic: of them, dropped */
	uint64_t access_migrations;	/* atomic: SVM ranges they moved
					   into its memory (svm.c) */
	uint64_t svm_copy_ns;		/* atomic: time SVM migrations spent
					   in copies, both ways (benches) */
	uint64_t bos_purged;		/* atomic: DONTNEED BOs purged by
					   eviction (move.c) */
	uint64_t bytes_purged;		/* atomic: their bytes */
	struct gvm_list svm_lru;	/* vram_lock: SVM device memory
					   holding CPU pages, least recently
					   used first (migrate.c) */
	uint64_t lru_clock;		/* vram_lock: stamps each use of a
					   BO (lru) and of SVM memory
					   (svm_lru), so the two lists read
					   as one LRU (gvm__vram_lru_stamp) */
	uint64_t evict_round;		/* vram_lock: the last round of a
					   search for room begun (evict.c) */
	uint64_t svm_evictions;		/* atomic: SVM allocations evicted */
	uint64_t svm_bytes_evicted;	/* atomic: their bytes */
	struct gvm_fault_queue fq;	/* GPU faults of fault-mode VMs and
					   their servicing thread; fq.lock */
	struct gvm_lr_worker lr;	/* rebind worker of LR VMs; lr.lock */
	struct gvm_list claims;		/* vram_lock: struct gvm_vram_claim,
					   oldest first (evict.c) */
	pthread_cond_t claims_cond;	/* with vram_lock: a claim ended,
					   VRAM was freed or a BO joined the
					   LRU (gvm__vram_changed_locked()) */
	uint64_t lru_joins;		/* vram_lock: BOs that joined the
					   LRU (moved or created in VRAM),
					   for waiters with no BO to wait
					   for (evict.c) */
	struct gvm_list dead_bos;	/* vram_lock: BOs whose last reference
					   went with locks held, to free
					   (gvm_bo::lru_link; evict.c) */
	uint32_t nr_dead_bos;		/* written under vram_lock, read with
					   acquire: dead_bos is not empty */
	uint32_t nr_claims;		/* written under vram_lock, read with
					   acquire: claims is not empty */
	struct gvm_list pt_vms;		/* vram_lock: VMs whose page tables
					   may be reclaimed (gvm_vm::pt_link,
					   pt_reclaim.c) */
	uint64_t pt_reclaims;		/* atomic: VMs' page tables reclaimed */
	uint64_t pt_bytes_reclaimed;	/* atomic: the table bytes freed */
};

/*
 * A claim on VRAM that is about to be freed (evict.c): registered by a
 * caller that must wait for busy BOs to leave VRAM, so that the space
 * their eviction frees goes to it and not to whoever allocates next.
 * While claims are registered, an allocation succeeds only if it leaves
 * the bytes of the claims older than its own (all of them, for a caller
 * with no claim) free, and a slack for page tables (evict.c):
 *
 *     free_bytes - size >= sum(bytes of the claims ahead of the caller's)
 *                          + slack     (if there are claims ahead)
 *
 * A claimant's allocations are charged to its claim (bytes shrinks to 0).
 * The busy BO a claimant waits for is marked with its claim: an exec whose
 * VM uses a BO marked by an older claim backs off until that claim ends
 * (gvm__vram_claimed_by_older()), so a VM that submits again at once
 * cannot keep its BOs busy forever against a waiter.
 */
struct gvm_vram_claim {
	struct gvm_device *dev;		/* immutable */
	struct gvm_list link;		/* on dev->claims; vram_lock */
	uint64_t bytes;			/* still claimed; vram_lock */
	struct gvm_bo *victim;		/* vram_lock: the busy BO its owner
					   waits for (referenced, marked:
					   victim->claim == this), or NULL */
};

/* A link between two devices; on both devices' lists.  Link lock. */
struct gvm_link {
	struct gvm_device *dev[2];	/* not references: a device takes its
					   links down when it goes */
	struct gvm_list node[2];	/* on dev[i]->links */
	struct gvm_link_props props;
};

static inline bool gvm__device_unplugged(const struct gvm_device *dev)
{
	return __atomic_load_n(&dev->unplugged, __ATOMIC_ACQUIRE);
}

/*
 * Allocates @size bytes of VRAM (4 KiB multiple) as buddy blocks appended
 * to @blocks.  @flags: GVM_BUDDY_TOPDOWN / _CONTIGUOUS.  0 or -ENOSPC,
 * -ENOMEM, -ENODEV (unplugged).  Honours the registered claims (struct gvm_vram_claim): -ENOSPC
 * if the allocation would take space claimed ahead of the calling thread.
 */
int gvm__vram_alloc(struct gvm_device *dev, uint64_t size, unsigned int flags,
		    struct gvm_list *blocks);
void gvm__vram_free(struct gvm_device *dev, struct gvm_list *blocks);

/*
 * One side of a copy by a device's copy engine: memory as a list of
 * extents (struct gvm_pt_extent) of one region, from byte @off of the
 * list on, each extent seen by the copying device at its address +
 * @bias.  A linked peer's VRAM is its extents moved into the peer's CPU
 * window (@bias) with @peer set: what peer-to-peer DMA reaches
 * (<gvm/device.h>, struct gvm_mem_addr).  The caller's, on its stack.
 */
struct gvm_pt_extent;
struct gvm_copy_side {
	const struct gvm_pt_extent *ext;
	size_t nr;
	uint64_t off;
	uint32_t region;		/* GVM_MEM_* */
	uint64_t bias;
	struct gvm_device *peer;	/* NULL, or whose VRAM window */
};

/* What gvm__dev_copy's caller does while the copies run, and their time. */
struct gvm_copy_wait {
	void (*meanwhile)(void *arg);	/* NULL, or called at most once:
					   when the first copy has started,
					   before it is waited for */
	void *arg;
	int64_t copy_ns;		/* out: the copies' time, waits
					   included, less what meanwhile ran
					   on after the copy had ended */
};

/*
 * Copies @len bytes from @src to @dst with @dev's copy engine (ops->copy),
 * one copy per piece where both sides are contiguous, waiting for each;
 * @w (may be NULL) as above.  0, -EINVAL (a side is shorter than @len), or
 * the first error (the op's, or -EIO if a copy's fence failed).  No gvm
 * lock needed; may block for the copies (callers hold reservations, or the
 * mm's devmem_lock).
 */
int gvm__dev_copy(struct gvm_device *dev, const struct gvm_copy_side *dst,
		  const struct gvm_copy_side *src, uint64_t len,
		  struct gvm_copy_wait *w);

/* How far an allocation may go to find VRAM (evict.c). */
enum gvm_evict_mode {
	GVM_EVICT_NONE,		/* fail with -ENOSPC */
	GVM_EVICT_IDLE,		/* move idle BOs out (callers holding vm->lock
				   or reservations: waiting could deadlock) */
	GVM_EVICT_WAIT,		/* also wait for busy BOs (no lock held) */
};

/*
 * The next stamp of @dev's LRU clock, for a use of a BO or of SVM memory
 * now (vram_lock held): larger stamps are more recent uses, whatever the
 * kind, so eviction can take the least recently used of both lists.
 */
static inline uint64_t gvm__vram_lru_stamp(struct gvm_device *dev)
{
	return ++dev->lru_clock;
}

/*
 * gvm__vram_alloc(), evicting BOs to system memory (least recently used
 * first) while it does not fit.  BOs whose reservation cannot be taken
 * with a trylock (held by the caller or someone else) are skipped.  With
 * GVM_EVICT_WAIT (no lock held) it waits for busy BOs in bounded rounds
 * under a claim, which a success leaves to gvm__vram_claim_end_wait().
 */
/*
 * Unplug (gvm_device_unplug): moves every BO it can to system memory
 * (idle ones, and those busy only with LR preempt fences, as
 * GVM_EVICT_WAIT would).  No lock held.
 */
void gvm__vram_evacuate(struct gvm_device *dev);

int gvm__vram_alloc_evict(struct gvm_device *dev, uint64_t size,
			  enum gvm_evict_mode mode, struct gvm_list *blocks);
/*
 * The same with GVM_EVICT_IDLE, evicting only BOs last used before LRU
 * stamp @older_than (UINT64_MAX: any): SVM's migration passes the stamp
 * of the SVM memory it would evict next, so that BOs and SVM memory go in
 * one least-recently-used order (migrate.c).
 */
int gvm__vram_alloc_evict_older(struct gvm_device *dev, uint64_t size,
				uint64_t older_than, struct gvm_list *blocks);

/*
 * struct gvm_pt_mem's make_room for the device's VRAM (@priv: the device):
 * moves one idle BO that can be trylocked to system memory, for a
 * page-table allocation made with vm->lock, reservations or pt_lock held
 * (it waits only for the copy and the TLB invalidation, which depend on no
 * lock).  0 if it moved one, -ENOSPC if none could be.
 */
int gvm__vram_make_room(void *priv, uint64_t bytes);

/*
 * Claims (struct gvm_vram_claim).  gvm__vram_claim_begin() registers @c
 * for @bytes at the tail of the device's claims and makes it the calling
 * thread's current claim (charged by its allocations on that device);
 * gvm__vram_claim_end() removes it (nothing if it was never begun: @c
 * zeroed).  No lock needed (vram_lock inside).  Under vram_lock:
 * gvm__vram_claims_allow_locked() says whether the calling thread may
 * take @size bytes now, gvm__vram_claims_charge_locked() charges them.
 */
void gvm__vram_claim_begin(struct gvm_device *dev, struct gvm_vram_claim *c,
			   uint64_t bytes);
void gvm__vram_claim_end(struct gvm_vram_claim *c);
/*
 * Ends the claim a successful GVM_EVICT_WAIT gvm__vram_alloc_evict() may
 * have left registered, once the caller has put the new BO on the LRU
 * (nothing if there is none).  No lock needed.
 */
void gvm__vram_claim_end_wait(void);
bool gvm__vram_claims_allow_locked(struct gvm_device *dev, uint64_t size);
/*
 * Whether a BO of @vm is marked by a claim older than the calling thread's
 * (any claim, if it has none): its owner waits to evict it, so the caller
 * should let it (drop its locks, gvm__vram_wait_room()).  vm->lock held.
 */
bool gvm__vram_claimed_by_older(struct gvm_vm *vm);
void gvm__vram_claims_charge_locked(struct gvm_device *dev, uint64_t size);

/*
 * For a caller that found no idle victim: a BO in VRAM to wait for,
 * referenced, or NULL.  The least recently used BO whose reservation is
 * not locked and that is busy; failing that, the least recently used one
 * that is not the caller's (@own: its lock set, whose reservations are
 * skipped; NULL: the caller holds nothing), which someone holds or has
 * just held (the caller's trylock lost).  May be called with vm->lock and
 * reservations held.
 */
struct gvm_bo *gvm__vram_busy_victim(struct gvm_device *dev,
				     const struct gvm_lockset *own);

/*
 * One round of waiting for VRAM, with no lock held, for a caller whose
 * allocation of @bytes found no idle victim: registers @c (zeroed the
 * first time) for @bytes, then waits until the claims older than @c are
 * gone if there are any, else until @victim (referenced, from the
 * calling thread's gvm__vram_busy_victim() just before: NULL if it found
 * none) is idle (and unlocked, if someone held it).
 * With no @victim (none but the caller's own BOs in VRAM: the rest is in
 * flight, e.g. a BO allocated and not yet on the LRU, or being moved), it
 * waits, bounded, for the room, or for a BO to join the LRU since that
 * search.  Drops @victim's reference.  true if it waited for something
 * (try again), false if nothing changed within the bound.  The caller ends @c
 * (gvm__vram_claim_end()) when it is done, successful or not.
 */
bool gvm__vram_wait_room(struct gvm_device *dev, struct gvm_vram_claim *c,
			 uint64_t bytes, struct gvm_bo *victim);

/*
 * VRAM was freed or a BO joined the LRU: wakes the waiters that had no BO
 * to wait for (gvm__vram_wait_room()) to look again.  vram_lock held.
 */
void gvm__vram_changed_locked(struct gvm_device *dev);
/* The same as a page-table engine callback (struct gvm_pt_mem::freed). */
void gvm__vram_pt_freed(void *priv);

/*
 * Frees the BOs whose last reference was dropped with locks held
 * (gvm__bo_put_deferred()).  No lock held.  Every public call that may
 * evict calls it before it returns (through gvm__vm_reap() or directly).
 */
void gvm__dev_reap(struct gvm_device *dev);

/* Test hooks (evict.c), NULL in production. */
extern void (*gvm__evict_before_wait)(struct gvm_device *dev);	/* no lock */
extern void (*gvm__evict_before_put)(struct gvm_bo *victim);	/* locked */
/* no lock: gvm__vram_wait_room() with no victim is about to sleep */
extern void (*gvm__evict_before_idle_wait)(struct gvm_device *dev);

static inline uint64_t gvm__vram_block_addr(const struct gvm_device *dev,
					    const struct gvm_buddy_block *b)
{
	return dev->desc.vram_base + gvm__buddy_block_offset(b);
}

/*
 * Names of the device contract's values, static strings for traces
 * (core/trace.h knows nothing of devices): the queues and the engines of
 * a GVM_ENGINE_* class, GVM_ACCESS_* and enum gvm_fault_reason.
 */
static inline const char *gvm__queue_name(uint32_t engine)
{
	switch (engine) {
	case GVM_ENGINE_BIND:
		return "bind queue";
	case GVM_ENGINE_COPY:
		return "copy queue";
	default:
		return "compute queue";
	}
}

static inline const char *gvm__engine_name(uint32_t engine)
{
	switch (engine) {
	case GVM_ENGINE_BIND:
		return "bind engine";
	case GVM_ENGINE_COMPUTE:
		return "compute engine";
	case GVM_ENGINE_COPY:
		return "copy engine";
	default:
		return "engine";
	}
}

static inline const char *gvm__access_name(uint32_t access)
{
	switch (access) {
	case GVM_ACCESS_READ:
		return "read";
	case GVM_ACCESS_WRITE:
		return "write";
	case GVM_ACCESS_ATOMIC:
		return "atomic";
	default:
		return "?";
	}
}

static inline const char *gvm__fault_reason_name(uint32_t reason)
{
	switch (reason) {
	case GVM_FAULT_NOT_PRESENT:
		return "not present";
	case GVM_FAULT_WRITE_PROTECT:
		return "write protect";
	case GVM_FAULT_ATOMIC:
		return "atomic";
	case GVM_FAULT_SYSMEM_GONE:
		return "system memory gone";
	case GVM_FAULT_REPLAY_LIMIT:
		return "replay limit";
	default:
		return "?";
	}
}

#endif
