/* SPDX-License-Identifier: MIT */
/*
 * Scheduler internals that tests observe (sched.c): lets a test wait for
 * a state instead of sleeping and hoping.
 */
#ifndef GVM_CORE_SCHED_INTERNAL_H
#define GVM_CORE_SCHED_INTERNAL_H

#include <stdbool.h>

#include <gvm/sched.h>

/* True once gvm_sched_queue_destroy(@q) has marked @q dying and kicked
   it: a hw fence signalling from now on kicks the queue too. */
bool gvm__sched_queue_dying(struct gvm_sched_queue *q);
/* True while no worker processes @q or is due to (it waits for a
   callback, or is idle or parked). */
bool gvm__sched_queue_waits(struct gvm_sched_queue *q);
/* True while @q's head job is done and PARKED (sched.c). */
bool gvm__sched_queue_parked(struct gvm_sched_queue *q);

#endif
