/* SPDX-License-Identifier: MIT */
/*
 * Fence internals shared by fence.c, fence_array.c and timeline.c.
 */
#ifndef GVM_CORE_FENCE_INTERNAL_H
#define GVM_CORE_FENCE_INTERNAL_H

#include <gvm/fence.h>

/* Internal flag: signalled only through its timeline. */
#define GVM_FENCE_F_TIMELINE (1u << 2)

/*
 * Signals @fence with @error (0 or -errno) whatever kind of fence it is.
 * Returns 0 or -EALREADY.  Context: may be called with other fences' locks
 * held (from callbacks), never with this fence's.
 */
int gvm__fence_signal(struct gvm_fence *fence, int error);

#endif
