/* SPDX-License-Identifier: MIT */
/*
 * Job scheduler: in-order queues of jobs with dependency fences, run by a pool
 * of worker threads.
 *
 * A scheduler (struct gvm_sched) is a pool of worker threads.  A queue
 * (struct gvm_sched_queue) is an ordered stream of jobs on one scheduler; jobs
 * of one queue run one at a time, in the order they were pushed, and finish in
 * that order.  Different queues progress independently.  A job (struct
 * gvm_job, embedded in the user's own job structure) has a set of dependency
 * fences and runs, on a worker, once all of them have signalled.  Its
 * `finished` fence signals when the job is done: after run() returned and, if
 * run() handed back a hardware fence, after that fence signalled.
 *
 * Submitting a job:
 *
 *	err = gvm_job_init(&my->job, q, &my_ops);	may fail
 *	err = gvm_job_add_dependency(&my->job, f);	may fail, any number
 *	...point of no return: nothing below fails...
 *	gvm_job_arm(&my->job);				seqno assigned
 *	done = gvm_fence_get(gvm_job_finished(&my->job));
 *	gvm_job_push(&my->job);				the scheduler owns it
 *
 * On an error before arm, gvm_job_fini() abandons the job.  Dependencies can
 * only be added before arm; since a fence must exist to be added, this also
 * rules out dependency cycles among jobs.
 *
 * Finished fences.  All finished fences of a queue share one fence context
 * (gvm_sched_queue_context()); seqnos increase in arm order and the fences
 * signal in seqno order, so a later finished fence implies the earlier ones
 * (gvm_job_add_dependency() and reservation objects rely on this).  They are
 * signalled only by the scheduler: gvm_fence_signal() on one returns -EPERM.
 *
 * Errors.  A job's finished fence carries the first that applies of:
 *  - -ECANCELED if the queue was destroyed before the job started; such a
 *    job does not wait for its dependencies;
 *  - the error of its dependency that failed first (earliest signal
 *    timestamp, as for fence arrays; ties go to the dependency whose context
 *    was added first), in which case run() is not called; the job still
 *    completes only once all its dependencies have signalled;
 *  - run()'s negative return value;
 *  - the error of the hardware fence run() returned.
 * A failed job does not affect the later jobs of its queue.
 *
 * Context.  Unless a function says otherwise: callable from any thread that
 * holds no gvm lock of rank GVM_RANK_SCHED_QUEUE or above (vm->lock and
 * reservations are fine); in particular not from a fence callback, which runs
 * under a fence lock.  Only the destroy functions block; the others take
 * short internal locks.  run() executes on a worker with no gvm lock held and
 * may itself create, arm and push jobs.
 *
 * Errors of the calls: 0 or a negative errno, nothing changed on failure;
 * -EINVAL for NULL or otherwise bad arguments.
 */
#ifndef GVM_SCHED_H
#define GVM_SCHED_H

#include <gvm/fence.h>
#include <gvm/types.h>

GVM_BEGIN_DECLS

struct gvm_sched;	/* a pool of worker threads */
struct gvm_sched_queue;	/* an in-order queue of jobs */
struct gvm_job;

struct gvm_job_ops {
	/*
	 * Runs the job.  Called on a worker thread with no gvm lock held, once
	 * every dependency has signalled without error; may block (but a
	 * blocked run() holds its worker).  Returns 0 on success, setting
	 * *hw_fence (initially NULL) to a fence, whose reference it hands over,
	 * if the work completes asynchronously; or a negative errno, which
	 * fails the job (*hw_fence must then stay NULL).  Mandatory.
	 */
	int (*run)(struct gvm_job *job, struct gvm_fence **hw_fence);
	/*
	 * Called exactly once for every pushed job when the scheduler is done
	 * with it: after its finished fence has signalled (whether the job ran,
	 * failed or was cancelled).  Called on a worker thread with no gvm lock
	 * held; the job's memory belongs to the caller again.  Mandatory.
	 */
	void (*free)(struct gvm_job *job);
	/*
	 * If true, the finished fence signals from the hw fence's callback,
	 * in the thread that signals the hw fence, instead of on a worker
	 * after it: one thread hand-off less between the work's end and
	 * whoever waits for it.  The queue still starts its next job only
	 * after this one is completed, and free() still comes after; with
	 * no job behind it, completion waits for the queue's next push or
	 * run, or its destruction.  For jobs whose free() does nothing a
	 * waiter could observe.
	 */
	bool signal_from_hw;
};

/*
 * A job, embedded in the user's job structure.  Fields are private; each
 * says who may touch it: "owner" is the submitting thread until
 * gvm_job_push(), "worker" the one worker processing the job's queue after
 * it (workers hand a queue over under the scheduler's lock).
 */
struct gvm_job {
	struct gvm_list link;		/* in queue->jobs, under queue->lock */
	struct gvm_sched_queue *queue;	/* immutable after init */
	const struct gvm_job_ops *ops;	/* immutable after init */
	struct gvm_fence *finished;	/* storage from init, fence from arm;
					 * the job's reference; owner, worker */
	struct gvm_fence **deps;	/* references; owner, then worker */
	uint32_t nr_deps;		/* owner, then worker */
	uint32_t max_deps;		/* capacity of deps; owner */
	uint32_t next_dep;		/* first dep not yet seen signalled; worker */
	uint32_t state;			/* owner, then worker */
	struct gvm_fence *cb_fence;	/* fence cb is added to, or NULL; worker */
	struct gvm_fence_cb cb;		/* kicks the queue; on cb_fence */
	struct gvm_fence *hw_fence;	/* from run(), reference; worker */
	int error;			/* the finished fence's error; worker */
	int64_t dep_error_ns;		/* when the dependency whose error is
					 * in error signalled; worker */
	struct gvm_fence *deps_inl[2];	/* where deps starts (a job with
					 * one or two dependencies allocates
					 * no array, and deps may point
					 * here: never copy a job); as deps */
};

/*
 * Creates a scheduler with @nr_workers worker threads (1..1024) named after
 * @name (copied; NULL gives "sched").  Returns 0, -EINVAL, -ENOMEM, or the
 * negated error of pthread_create() (-EAGAIN).
 */
GVM_API int gvm_sched_create(const char *name, unsigned int nr_workers,
			     struct gvm_sched **out);

/*
 * Stops and joins the workers and frees @s.  Returns 0, -EINVAL (NULL), or
 * -EBUSY (nothing done) while @s has queues.  May block; must not be called
 * from a worker (run() or free()).
 */
GVM_API int gvm_sched_destroy(struct gvm_sched *s);

/*
 * Creates an empty queue on @s with a fresh fence context; @name (copied;
 * NULL gives "queue") is for diagnostics.  Returns 0, -EINVAL, -ENOMEM.
 */
GVM_API int gvm_sched_queue_create(struct gvm_sched *s, const char *name,
				   struct gvm_sched_queue **out);

/*
 * Destroys @q (NULL: no-op).  Jobs that have not started are cancelled in
 * order: their finished fences signal -ECANCELED (without waiting for their
 * dependencies) and free() is called; a job whose run() is executing, or
 * whose hardware fence is outstanding, is waited for and completes normally.
 * When this returns, no run(), free() or fence callback of @q is executing or
 * will run.  Every job initialised on @q must have been pushed or finied, and
 * nobody may use @q concurrently or afterwards (including a
 * gvm_job_push() still returning: a job's finished fence may signal
 * before its push returns).  Blocks; must not be called
 * from run(), free() or a fence callback.
 */
GVM_API void gvm_sched_queue_destroy(struct gvm_sched_queue *q);

/* The fence context of @q's finished fences (0 for NULL). */
GVM_API uint64_t gvm_sched_queue_context(const struct gvm_sched_queue *q);

/*
 * Initialises @job for @q with @ops (both callbacks mandatory; @ops must
 * outlive the job).  Allocates the finished fence.  Returns 0, -EINVAL,
 * -ENOMEM.  The job must then be pushed or finied.
 */
GVM_API int gvm_job_init(struct gvm_job *job, struct gvm_sched_queue *q,
			 const struct gvm_job_ops *ops);

/*
 * Makes @job wait for @fence; allowed only between init and arm.  Takes its
 * own reference.  Keeps one fence per context, the later one (fences of a
 * context signal in seqno order, so it implies the earlier one, whose error
 * is then not seen).  A fence that has already signalled without error and
 * has no other fence of its context to replace is not kept.  A fence that
 * signalled with an error is kept, so the error reaches the job.  (So add the
 * fences of one context oldest first, or an already-signalled later fence
 * cannot stand in for an earlier one added after it.)  Returns 0, -EINVAL
 * (NULL, or @job armed), -ENOMEM.
 */
GVM_API int gvm_job_add_dependency(struct gvm_job *job,
				   struct gvm_fence *fence);

/*
 * Abandons a job that was initialised but never armed: drops its
 * dependencies and its finished fence.  Does not call ops->free (the caller
 * owns @job throughout).  NULL: no-op.
 */
GVM_API void gvm_job_fini(struct gvm_job *job);

/*
 * Assigns @job the queue's next seqno and initialises its finished fence.
 * Cannot fail.  gvm_job_arm() and gvm_job_push() of one job come in pairs
 * that the caller serialises per queue (arm A, push A, arm B, push B; never
 * arm A, arm B); debug builds assert it.
 */
GVM_API void gvm_job_arm(struct gvm_job *job);

/*
 * The finished fence of an armed job, borrowed: valid from arm until push;
 * take a reference (gvm_fence_get()) to keep it.  NULL if not armed.
 */
GVM_API struct gvm_fence *gvm_job_finished(struct gvm_job *job);

/*
 * Queues an armed job.  Cannot fail.  The scheduler owns @job from here: the
 * caller must not touch it again; ops->free() gives it back.
 */
GVM_API void gvm_job_push(struct gvm_job *job);

/*
 * Direct submission, for callers that push under their own locks and want
 * the job started without a hand-off to a worker: gvm_job_push_deferred()
 * queues @job like gvm_job_push() but wakes no worker; the caller must then
 * call gvm_sched_queue_run() on its queue, holding no gvm lock, soon (the
 * job may not start before).  gvm_sched_queue_run() advances the queue on
 * the calling thread if no worker is processing it (dependencies seen,
 * ops->run(), completions and ops->free() of jobs before it, at most one
 * budget of jobs), else makes sure the worker looks again.  ops->run and
 * ops->free of the queue's jobs may therefore run on that thread.
 */
GVM_API void gvm_job_push_deferred(struct gvm_job *job);
GVM_API void gvm_sched_queue_run(struct gvm_sched_queue *q);

GVM_END_DECLS

#endif
