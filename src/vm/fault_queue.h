/* SPDX-License-Identifier: MIT */
/*
 * The per-device GPU fault queue and its servicing thread (internal; the
 * design, locking and deadlock analysis are at the top of fault_queue.c).
 *
 * A fault is a struct gvm_fault_req owned by its submitter (on the stack
 * of the engine thread in gvm_vm_fault()): submit puts a pointer to it in
 * the device's bounded queue, waiting for room when the queue is full,
 * and wait returns its result once the servicing thread completed it.  A
 * lone fault (nothing queued, no batch being serviced) skips the queue:
 * gvm__fault_queue_service() services it in the calling thread.
 */
#ifndef GVM_VM_FAULT_QUEUE_H
#define GVM_VM_FAULT_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <gvm/device.h>

#include "core/list.h"
#include "core/sync.h"

struct gvm_device;
struct gvm_vm;

/* Access-counter notifications queued at most (more are dropped). */
#define GVM_ACCESS_NOTES 64u

/* A queued notification; @vm holds no reference (see "NOTIFICATIONS"). */
struct gvm_access_note {
	struct gvm_vm *vm;
	struct gvm_access_info info;
};

/* Faults the servicing thread takes at most per batch. */
#define GVM_FAULT_BATCH_MAX 256u
/* Queue depth when the device description leaves it 0, and the largest. */
#define GVM_FAULT_QUEUE_DEFAULT 1024u
#define GVM_FAULT_QUEUE_MAX (1u << 16)

/*
 * One queued fault.  @info and @vm are immutable from submit to completion;
 * @result is written by the servicing thread before @done becomes
 * FQ_DONE (release), and read by the submitter after it saw FQ_DONE
 * (acquire).
 */
struct gvm_fault_req {
	struct gvm_fault_info info;
	struct gvm_vm *vm;		/* a reference from submit to wait */
	int result;			/* 0: resolved, else -errno */
	uint32_t done;			/* atomic, futex word: FQ_PENDING,
					   FQ_SLEEPING (the submitter sleeps
					   on it), FQ_DONE */
	bool deduplicated;		/* completed with another's result;
					   written with @result */
	uint64_t seq;			/* arrival order; set under fq->lock */
};

/*
 * Embedded in struct gvm_device.  `lock` (a leaf) protects every field
 * below it but `batch`, which only the thread touches.
 *
 * Invariants (under lock): count <= depth; the queued faults are
 * ring[(head + i) % depth] for i < count; count == 0 once stop is set and
 * no VM of the device is left (each queued fault holds a VM reference,
 * which holds a device reference).
 */
struct gvm_fault_queue {
	struct gvm_mutex start_lock;	/* unranked: serialises starting the
					   thread, held across its creation
					   (gvm__fault_queue_start) */
	struct gvm_mutex lock;		/* leaf */
	pthread_cond_t work_cond;	/* the thread: faults, stop, hold */
	pthread_cond_t room_cond;	/* submitters waiting for room */
	pthread_cond_t state_cond;	/* gvm__fault_queue_wait_for() */
	struct gvm_fault_req **ring;	/* depth slots; immutable pointer */
	uint32_t depth;			/* immutable */
	uint32_t head, count;		/* lock */
	uint32_t blocked;		/* lock: submitters waiting for room */
	uint32_t watchers;		/* lock: threads in wait_for() */
	uint64_t next_seq;		/* lock: arrival numbers */
	bool hold;			/* lock: test hook, take no batch
					   and service nothing inline */
	bool servicing;			/* lock: a batch (the thread's or
					   an inline one) is being serviced */
	bool stop;			/* lock: device teardown */
	bool started;			/* the thread runs (joined at
					   teardown): written under start_lock
					   and lock, read under either */
	pthread_t thread;		/* written once, with started */
	struct gvm_device *dev;		/* immutable; no reference (the
					   queue is part of the device) */
	uint64_t batches;		/* batches done: incremented (acq_rel)
					   by their servicer (the thread or
					   an inline one) after completing one,
					   read with acquire (bench, tests) */
	int64_t last_batch_ns;		/* the last batch's time from taking
					   it to its last completion; written
					   (relaxed) before batches moves */
	struct gvm_fault_req *batch[GVM_FAULT_BATCH_MAX]; /* the thread's */
	/* SVM garbage collection (fault_queue.c, "COLLECTING"): */
	struct gvm_list collect;	/* lock: VMs with unmapped ranges
					   (vm->gc_link) */
	struct gvm_vm *collecting;	/* lock: the VM being collected */
	/* Access-counter notifications (fault_queue.c, "NOTIFICATIONS"): */
	struct gvm_access_note notes[GVM_ACCESS_NOTES];	/* lock: a ring */
	uint32_t notes_head, notes_count;	/* lock */
	struct gvm_vm *noting;		/* lock: the VM being acted on */
};

/* Device creation / last reference (device.c).  0, -EINVAL, -ENOMEM. */
int gvm__fault_queue_init(struct gvm_fault_queue *fq, struct gvm_device *dev,
			  uint32_t depth);
/* Stops and joins the thread if it runs.  No VM of the device is left. */
void gvm__fault_queue_fini(struct gvm_fault_queue *fq);

/*
 * Starts the device's servicing thread unless it runs (gvm_vm_create() of
 * a FAULT_MODE VM).  No lock held.  0 or -EAGAIN / -ENOMEM (nothing
 * started).
 */
int gvm__fault_queue_start(struct gvm_device *dev);

/*
 * Services fault @f of @vm (a fault-mode VM of the device, whose servicing
 * thread was started) and returns its result: in the calling thread when
 * the device services nothing and has nothing queued (fault_queue.c,
 * "INLINE"), else through the queue (submit, then wait).  No lock held
 * (may block).
 */
int gvm__fault_queue_service(struct gvm_vm *vm, const struct gvm_fault_info *f);

/*
 * Queues @req for @vm (as above): takes a reference on @vm, fills
 * req->vm, waits for room while the queue is full.  No lock held (may
 * block).  The caller must then gvm__fault_req_wait(@req) before @req
 * goes away.
 */
void gvm__fault_queue_submit(struct gvm_vm *vm, const struct gvm_fault_info *f,
			     struct gvm_fault_req *req);

/* Waits for @req's completion, drops its VM reference: its result. */
int gvm__fault_req_wait(struct gvm_fault_req *req);

/* True once @req completed (no wait; gvm__fault_req_wait is still due). */
bool gvm__fault_req_done(struct gvm_fault_req *req);

/*
 * SVM garbage collection without a fault.  gvm__fault_queue_collect():
 * @vm has ranges on vm->svm_gc; the servicing thread collects them soon
 * (gvm__svm_collect).  Called from a notifier callback, notifier_lock
 * held; does nothing once gvm__fault_queue_forget() ran.  forget: the VM
 * is being destroyed (no lock held): takes it off the list and waits for
 * a collection of it in progress.
 */
void gvm__fault_queue_collect(struct gvm_vm *vm);
void gvm__fault_queue_forget(struct gvm_vm *vm);

/*
 * Test hooks.  hold: while set, the thread takes no new batch (faults
 * pile up; submitters block once the queue is full).  wait_for: waits
 * until at least @queued faults are queued and at least @blocked
 * submitters wait for room.
 */
void gvm__fault_queue_hold(struct gvm_device *dev, bool hold);
/* Waits until no access-counter notification is queued or acted on. */
void gvm__fault_queue_notes_wait(struct gvm_device *dev);
/* Waits until @vm is neither listed for collection nor being collected. */
void gvm__fault_queue_collect_wait(struct gvm_vm *vm);
void gvm__fault_queue_wait_for(struct gvm_device *dev, uint32_t queued,
			       uint32_t blocked);

/* Servicing threads running in the process (relaxed atomic; tests). */
extern uint32_t gvm__fault_queue_threads;

#endif
