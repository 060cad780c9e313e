/* SPDX-License-Identifier: MIT */
/*
 * The library side of a device (internal): what gvm keeps per device
 * behind the backend contract of <gvm/device.h>.
 *
 * Locking: vram_lock (leaf) serialises the VRAM buddy; everything else is
 * immutable after gvm_device_create() or atomic (refcount).
 */
#ifndef GVM_VM_DEV_H
#define GVM_VM_DEV_H

#include <gvm/device.h>
#include <gvm/sched.h>

#include "core/buddy.h"
#include "core/list.h"

struct gvm_device {
	char name[32];			/* immutable */
	struct gvm_device_desc desc;	/* immutable; desc.name -> name */
	const struct gvm_device_ops *ops; /* immutable */
	void *priv;			/* immutable */
	uint32_t refcount;		/* atomic */
	struct gvm_mutex vram_lock;	/* leaf: protects vram */
	struct gvm_buddy vram;		/* offsets from desc.vram_base */
	struct gvm_sched *sched;	/* runs bind and exec jobs; immutable */
};

/*
 * Allocates @size bytes of VRAM (4 KiB multiple) as buddy blocks appended
 * to @blocks.  @flags: GVM_BUDDY_TOPDOWN / _CONTIGUOUS.  0 or -ENOSPC,
 * -ENOMEM.
 */
int gvm__vram_alloc(struct gvm_device *dev, uint64_t size, unsigned int flags,
		    struct gvm_list *blocks);
void gvm__vram_free(struct gvm_device *dev, struct gvm_list *blocks);

static inline uint64_t gvm__vram_block_addr(const struct gvm_device *dev,
					    const struct gvm_buddy_block *b)
{
	return dev->desc.vram_base + gvm__buddy_block_offset(b);
}

#endif
