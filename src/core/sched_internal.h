/* SPDX-License-Identifier: MIT */
/*
 * Scheduler internals that tests observe (sched.c): lets a test wait for
 * a state instead of sleeping and hoping.
 */
#ifndef GVM_CORE_SCHED_INTERNAL_H
#define GVM_CORE_SCHED_INTERNAL_H

#include <stdbool.h>

#include <gvm/sched.h>

/* A snapshot of @q's state, taken under sched->lock. */
struct gvm_sched_queue_state {
	bool closing;	/* gvm_sched_queue_destroy(@q) has marked it dying
			   and kicked it: a hw fence signalling from now on
			   kicks the queue too */
	bool waits;	/* no worker processes it or is due to (it waits
			   for a callback, or is idle or parked) */
	bool parked;	/* its head job is done and PARKED (sched.c) */
};

struct gvm_sched_queue_state gvm__sched_queue_state(struct gvm_sched_queue *q);

/*
 * Test hook, NULL outside tests (set before the scheduler's first push,
 * cleared after it is destroyed): a worker begins to spin for the next
 * kick (Hand-offs, sched.c), no lock held.  It may block to hold the
 * worker in that state.
 */
extern void (*gvm__sched_spin_hook)(struct gvm_sched *s);

#endif
