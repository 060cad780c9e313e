/* SPDX-License-Identifier: MIT */
/*
 * Fence internals shared by fence.c, fence_array.c and timeline.c (and the
 * stub fence, which binds use too).
 */
#ifndef GVM_CORE_FENCE_INTERNAL_H
#define GVM_CORE_FENCE_INTERNAL_H

#include <gvm/fence.h>

/*
 * Internal flag: only the fence's producer may signal it (timelines, scheduler
 * finished fences), through gvm__fence_signal*(); gvm_fence_signal() says
 * -EPERM.  That keeps producers' seqno order true.
 */
#define GVM_FENCE_F_PRODUCER_ONLY (1u << 2)

/*
 * Signals @fence with @error (0 or -errno) whatever kind of fence it is.
 * Returns 0 or -EALREADY.  Context: may be called with other fences' locks
 * held (from callbacks), never with this fence's.
 */
int gvm__fence_signal(struct gvm_fence *fence, int error);

/*
 * A reference to the process-wide stub fence: signalled without error from
 * the start, never freed (like the kernel's dma_fence_get_stub()).  For work
 * that completed inline and must still hand out a fence: no allocation.
 * Never fails.
 */
struct gvm_fence *gvm__fence_get_stub(void);

/*
 * Same, recording @timestamp_ns (a gvm__now_ns() value from the producer's
 * point of completion) instead of the current time.  For producers that
 * decide completion in one place and signal elsewhere (timelines), so that
 * timestamps follow the order of the decisions.
 */
int gvm__fence_signal_at(struct gvm_fence *fence, int error,
			 int64_t timestamp_ns);

#endif
