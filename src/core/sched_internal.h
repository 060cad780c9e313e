/* SPDX-License-Identifier: MIT */
/*
 * Scheduler internals that tests observe (sched.c): lets a test wait for
 * a state instead of sleeping and hoping.
 */
#ifndef GVM_CORE_SCHED_INTERNAL_H
#define GVM_CORE_SCHED_INTERNAL_H

#include <stdbool.h>

#include <gvm/sched.h>

/* True once gvm_sched_queue_destroy(@q) has marked @q dying (q->lock). */
bool gvm__sched_queue_dying(struct gvm_sched_queue *q);

#endif
