/* SPDX-License-Identifier: MIT */
/*
 * The library side of a device (internal): what gvm keeps per device
 * behind the backend contract of <gvm/device.h>.
 *
 * Locking: vram_lock (leaf) serialises the VRAM buddy; the fault queue has
 * its own leaf lock (fault_queue.h); everything else is immutable after
 * gvm_device_create() or atomic (refcount, counters).
 */
#ifndef GVM_VM_DEV_H
#define GVM_VM_DEV_H

#include <gvm/device.h>
#include <gvm/sched.h>

#include "core/buddy.h"
#include "core/list.h"
#include "vm/fault_queue.h"

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
	struct gvm_list links;		/* struct gvm_link::node[]; the
					   process-wide link lock */
	uint64_t svm_to_ram;		/* atomic: SVM migrations back to
					   system memory (migrate.c) */
	uint64_t svm_bytes_to_ram;	/* atomic: their bytes */
	uint64_t svm_copy_ns;		/* atomic: time SVM migrations spent
					   in copies, both ways (benches) */
	struct gvm_fault_queue fq;	/* GPU faults of fault-mode VMs and
					   their servicing thread; fq.lock */
};

/* A link between two devices; on both devices' lists.  Link lock. */
struct gvm_link {
	struct gvm_device *dev[2];	/* not references: a device takes its
					   links down when it goes */
	struct gvm_list node[2];	/* on dev[i]->links */
	struct gvm_link_props props;
};

/*
 * Allocates @size bytes of VRAM (4 KiB multiple) as buddy blocks appended
 * to @blocks.  @flags: GVM_BUDDY_TOPDOWN / _CONTIGUOUS.  0 or -ENOSPC,
 * -ENOMEM.
 */
int gvm__vram_alloc(struct gvm_device *dev, uint64_t size, unsigned int flags,
		    struct gvm_list *blocks);
void gvm__vram_free(struct gvm_device *dev, struct gvm_list *blocks);

/* How far an allocation may go to find VRAM (evict.c). */
enum gvm_evict_mode {
	GVM_EVICT_NONE,		/* fail with -ENOSPC */
	GVM_EVICT_IDLE,		/* move idle BOs out (callers holding vm->lock
				   or reservations: waiting could deadlock) */
	GVM_EVICT_WAIT,		/* also wait for busy BOs (no lock held) */
};

/*
 * gvm__vram_alloc(), evicting BOs to system memory (least recently used
 * first) while it does not fit.  BOs whose reservation cannot be taken
 * with a trylock (held by the caller or someone else) are skipped.
 */
int gvm__vram_alloc_evict(struct gvm_device *dev, uint64_t size,
			  enum gvm_evict_mode mode, struct gvm_list *blocks);

/*
 * struct gvm_pt_mem's make_room for the device's VRAM (@priv: the device):
 * moves one idle BO that can be trylocked to system memory, for a
 * page-table allocation made with vm->lock, reservations or pt_lock held
 * (it waits only for the copy and the TLB invalidation, which depend on no
 * lock).  0 if it moved one, -ENOSPC if none could be.
 */
int gvm__vram_make_room(void *priv, uint64_t bytes);

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
	default:
		return "?";
	}
}

#endif
