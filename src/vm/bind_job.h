/* SPDX-License-Identifier: MIT */
/*
 * Queued binds (bind_job.c): the job that writes a bind's page tables once
 * its dependencies signalled, the proxies it waits on, and the range
 * fences that order binds of different queues.
 */
#ifndef GVM_VM_BIND_JOB_H
#define GVM_VM_BIND_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gvm_fence;
struct gvm_queue;
struct gvm_vm;
struct gvm_vm_update;
struct gvm_vma;

struct gvm_bind_job;

/* Before the point of no return (vm->lock held): 0 or -ENOMEM. */
int gvm__bind_job_create(struct gvm_queue *q, struct gvm_bind_job **out);
/*
 * The job runs after @dep signalled, with an error or not (see "Failed
 * dependencies" in bind.c), or, for a wait sync of the user (@user), once
 * its queue is destroyed (gvm__bind_queue_abandon).  0 or -ENOMEM.
 */
int gvm__bind_job_add_dep(struct gvm_bind_job *bj, struct gvm_fence *dep,
			  bool user);
/* Error path: the job was never armed. */
void gvm__bind_job_abort(struct gvm_bind_job *bj);

/* Point of no return: arms the job; returns a reference to its fence. */
struct gvm_fence *gvm__bind_job_arm(struct gvm_bind_job *bj);
/*
 * Hands the job its work and pushes it (vm->lock held, after arm): @upd
 * (moved into the job, re-initialised), the VMAs that went away (@dead,
 * the array becomes the job's; freed after its TLB invalidation).
 */
void gvm__bind_job_push(struct gvm_bind_job *bj, struct gvm_vm *vm,
			struct gvm_vm_update *upd, struct gvm_vma **dead,
			size_t nr_dead);

/*
 * Stops @q's pushed work from waiting for its wait syncs ("Abandoned
 * waits" in bind_job.c): binds take effect once their internal
 * dependencies signalled, execs are cancelled (-ECANCELED).  For a queue
 * being destroyed, before it is drained.  May block; no lock of a
 * non-blocking rank held.
 */
void gvm__queue_abandon_waits(struct gvm_queue *q);
/*
 * Exec: *@out receives a fence that signals when @dep does, with its
 * error, or with -ECANCELED when @q is destroyed first.  0 or -ENOMEM.
 */
int gvm__queue_wait_proxy(struct gvm_queue *q, struct gvm_fence *dep,
			  struct gvm_fence **out);

/* ---- range fences (vm->lock) ------------------------------------------- */

/*
 * A pending asynchronous bind's range, for ordering across queues.
 * Prepared before the point of no return (it may allocate), published
 * after it (it may not).  Between the two the caller holds vm->lock.
 */
struct gvm_range_fence;
struct gvm_rf_queue;

/* An unpublished range fence for a bind on queue @q; 0 or -ENOMEM. */
int gvm__range_fence_prepare(struct gvm_vm *vm, struct gvm_queue *q,
			     struct gvm_range_fence **out);
/* Frees an unpublished one (NULL: nothing); any lock or none. */
void gvm__range_fence_free(struct gvm_range_fence *rf);
/* Publishes @rf for [lo, hi), signalled by @f (@rf's queue's next
   finished fence); cannot fail. */
void gvm__range_fence_add(struct gvm_vm *vm, struct gvm_range_fence *rf,
			  uint64_t lo, uint64_t hi, struct gvm_fence *f);
/* Drops the signalled ones. */
void gvm__range_fences_prune(struct gvm_vm *vm);
/* Frees them all (VM teardown). */
void gvm__range_fences_fini(struct gvm_vm *vm);
/* A VA range [lo, hi). */
struct gvm_addr_range {
	uint64_t lo, hi;
};

/*
 * Calls @fn on the fence of every pending bind of a queue other than @q
 * whose range overlaps one of @r[0..n); stops at the first error.
 */
int gvm__range_fences_overlapping(struct gvm_vm *vm, struct gvm_queue *q,
				  const struct gvm_addr_range *r, size_t n,
				  int (*fn)(void *arg, struct gvm_fence *f),
				  void *arg);
/*
 * Is @f the fence of a bind of this VM (queued on one of its bind queues
 * that has range fences)?  Exact for unsignalled fences; a signalled one
 * may be answered either way.
 */
bool gvm__range_fence_is(struct gvm_vm *vm, const struct gvm_fence *f);

#endif
