// SPDX-License-Identifier: MIT
/*
 * Job scheduler: queues of jobs with dependency fences, run in order by a
 * pool of worker threads (API and error semantics in <gvm/sched.h>).
 *
 * Model.  A scheduler owns nr_workers threads and a "ready list" of queues
 * that have something to do.  A queue holds its pushed jobs in seqno order;
 * only the head job makes progress: it waits for its dependencies one at a
 * time, runs, waits for its hardware fence, completes (finished fence
 * signalled, ops->free()), and then the next job becomes the head.  So jobs of
 * one queue start only after the previous one finished, and finished fences
 * signal in seqno order.
 *
 * Who does what.  Every state transition of a pushed job happens on a worker
 * that is processing the job's queue, and at most one worker processes a
 * queue at a time.  Fence callbacks do nothing but "kick" the queue: put it on
 * the ready list (or, if a worker is processing it right now, set rekick so
 * that worker puts it back when it is done).  Queue destruction only marks
 * the queue dying and kicks it; the worker cancels the jobs, in order, and
 * finally marks the queue dead, which is what the destroyer waits for.
 *
 * Job life cycle (job->state):
 *
 *   gvm_job_init()
 *        |
 *      INIT ---------- gvm_job_fini() ----------> abandoned (caller's again)
 *        | gvm_job_arm(): seqno, finished fence
 *      ARMED
 *        | gvm_job_push(): on queue->jobs
 *      QUEUED: once at the head, waits for each dependency in turn
 *        |        (one callback at a time on job->cb; a dependency seen
 *        |        signalled is dropped at once)
 *        |------------- queue dying: -ECANCELED --------------------+
 *        |------------- all signalled, some failed: first error ----+
 *        | all signalled without error                              |
 *      RUNNING: ops->run() on the worker, no lock held              |
 *        |------------- run() < 0, or no hw fence ------------------+
 *        | run() returned a hw fence                                |
 *      HW_WAIT: callback on the hw fence (a dying queue waits too)  |
 *        | hw fence signalled: its error, if any (ops->signal_from_hw:
 *        | the callback signals the finished fence with it, then kicks)
 *        v                                                          v
 *      DONE: finished fence signalled with job->error (unless the hw
 *            callback did), job unlinked, references dropped,
 *            ops->free(job)
 *
 * Queue processing (fields under sched->lock):
 *
 *   idle --kick--> on_ready --a worker takes it--> busy --done--> idle
 *                                                   |  kick while busy:
 *                                                   |  rekick, back on the
 *                                                   |  ready list when done
 *                                                   +--dying, no jobs--> dead
 *
 * Lost wake-ups cannot happen: a callback either finds the queue busy (and the
 * worker re-reads the state after it clears busy) or puts it on the list.
 *
 *   worker (q busy)                      signaller of dependency f
 *   ---------------                      -------------------------
 *   add_callback(f, job->cb)
 *   f signalled?  no: stop processing
 *                                        lock f->lock, set SIGNALED, run cb:
 *                                          lock s->lock; q busy: rekick
 *                                          unlock s->lock
 *   lock s->lock; busy = false
 *   rekick: q back on the ready list
 *   ... a worker processes q again: f signalled: remove_callback(f, job->cb)
 *       (a barrier: the callback has returned) and go on
 *
 * Hand-offs.  A worker that just processed a queue polls sched->kicks for
 * GVM_HANDOFF_SPIN_NS (one worker at a time) before it sleeps on
 * work_cond, so the kick of a job's hw fence or of the next push is picked
 * up without a wake-up; idle workers never spin.  A kick while a worker
 * spins wakes nobody (the spinner looks at the ready list under the lock
 * before it sleeps); so a worker that takes a queue and leaves others on
 * the ready list wakes another worker (several kicks during one spin would
 * otherwise wait for the spinner, however long its queue takes, while
 * another worker sleeps: a queue whose run() waited for another's job
 * would hang).  Jobs with ops->signal_from_hw (execs) have their
 * finished fence signalled by the hw fence's callback, in the thread that
 * signals it: their waiters do not wait for a worker.  And a pusher may
 * be its own worker: gvm_job_push_deferred() + gvm_sched_queue_run() (no
 * lock held) processes the queue on the calling thread when no worker
 * does (it takes the queue off the ready list, as a worker would).
 *
 * PARKED.  When a signal_from_hw job's hw fence signals and no job waits
 * behind it, nothing is left to do but free it, and nobody is kicked for
 * that: the job stays the queue's head, done (q->parked), and whoever
 * processes the queue next completes it first (the next push or run, or
 * destruction).  Waking a worker there cost each exec a wake-up of a
 * worker that then competed for the CPUs with the engine and the caller,
 * and held the queue busy when the caller's next exec came, so that exec
 * went through the worker too (exec_latency, docs/performance.md).
 * No lost wake-up: the callback decides under sched->lock from nr_jobs
 * and closing, and destroy sets closing there.  A push counts its job
 * (under queue->lock), then reads parked without the lock; the callback
 * stores parked, then reads nr_jobs again (all four seq_cst).  Of two
 * threads that each store one word and then load the other's, at least
 * one sees the other's store: either the callback sees the new job and
 * kicks, or the pusher sees parked and kicks (or both: kicking twice is
 * harmless).  So a push onto a busy queue takes no sched->lock.
 *
 * Locking.
 *   sched->lock (GVM_RANK_SCHED, 700): the ready list, the queue list count
 *     and stopping; each queue's on_ready, busy, rekick, parked, closing
 *     and dead.  Taken by
 *     fence callbacks, under a fence lock; nothing else is called under it
 *     (no fence function, no user callback), and no other lock nests inside.
 *   queue->lock (GVM_RANK_SCHED_QUEUE, 500): the job list, last_seqno, armed
 *     and dying (the worker reads the head and dying without it: HEAD,
 *     at queue_process()).  Held only for list and field updates; nothing
 *     nests inside.
 *   Order: queue->lock -> fence locks -> sched->lock, although sched.c itself
 *   never holds two of its own locks at once.  Workers call fence functions
 *   (add/remove callbacks, signal, put) and ops->run/free with no lock held.
 *
 * Lifetimes.
 *   - The scheduler outlives its queues: gvm_sched_destroy() is -EBUSY while
 *     any exists.
 *   - A queue is freed by gvm_sched_queue_destroy() once the worker marked it
 *     dead, which needs an empty job list; by then every callback the queue
 *     ever added has been removed or has returned (below), so nothing can
 *     reach it any more.
 *   - A job is the scheduler's from push until ops->free().  Its one callback
 *     slot job->cb is reused (dependency after dependency, then the hw
 *     fence); every gvm_fence_add_callback() on it is paired, on the worker,
 *     with a gvm_fence_remove_callback() before the slot is reused or the job
 *     freed.  That call is the barrier: when it returns, the callback is
 *     either unlinked or has returned.
 *   - Fences: the job holds a reference on each dependency until it has been
 *     seen signalled (or the job completes), on the hw fence until the job
 *     completes, and on its finished fence from init until it completes.
 *
 * Example:
 *
 *	struct my_job { struct gvm_job base; ... };
 *	#define to_my_job(j) container_of(j, struct my_job, base)
 *
 *	static int my_run(struct gvm_job *job, struct gvm_fence **hw)
 *	{
 *		return do_the_work(to_my_job(job));	// 0 or -errno
 *	}
 *	static void my_free(struct gvm_job *job) { free(to_my_job(job)); }
 *	static const struct gvm_job_ops my_ops = { my_run, my_free };
 *
 *	gvm_sched_create("binds", 4, &s);
 *	gvm_sched_queue_create(s, "vm0", &q);
 *	gvm_job_init(&j->base, q, &my_ops);
 *	gvm_job_add_dependency(&j->base, in_fence);
 *	gvm_job_arm(&j->base);
 *	out_fence = gvm_fence_get(gvm_job_finished(&j->base));
 *	gvm_job_push(&j->base);
 *	gvm_fence_wait(out_fence, GVM_TIMEOUT_INFINITE);
 *	gvm_sched_queue_destroy(q);
 *	gvm_sched_destroy(s);
 *
 * What it does not do: no priorities and no fairness beyond round-robin of
 * ready queues (a queue yields its worker after SCHED_BUDGET jobs); no
 * timeouts or hang detection, no job recovery or resubmission; no pipelining
 * (job N+1 of a queue starts after job N's hw fence, not after its
 * submission); head-of-line blocking within a queue (a later job whose
 * dependencies are ready still waits for the head); no detection of
 * dependency cycles through foreign fences (a job waiting on a fence that
 * never signals waits until its queue is destroyed).  A run() that blocks
 * holds its worker: with all workers blocked on each other nothing advances.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/sched.h>

#include "core/alloc.h"
#include "core/fence_internal.h"
#include "core/list.h"
#include "core/sched_internal.h"
#include "core/sync.h"

#define SCHED_MAX_WORKERS 1024u

/* Jobs a worker completes on one queue before giving other queues a turn. */
#define SCHED_BUDGET 32u

enum job_state {
	JOB_INIT = 1,
	JOB_ARMED,
	JOB_QUEUED,
	JOB_RUNNING,
	JOB_HW_WAIT,
	JOB_DONE,
};

struct gvm_sched {
	struct gvm_mutex lock;
	pthread_cond_t work_cond;	/* ready non-empty or stopping; lock */
	uint32_t kicks;			/* bumped under lock when a queue goes
					   on the ready list (release); an idle
					   worker spins on it lock-free */
	bool spinning;			/* under lock: a worker spins on kicks
					   (one at a time) */
	pthread_cond_t dead_cond;	/* some queue became dead; lock */
	struct gvm_list ready;		/* queue.ready_link, under lock */
	unsigned int nr_queues;		/* under lock */
	bool stopping;			/* under lock */
	unsigned int nr_workers;	/* immutable */
	pthread_t *workers;		/* immutable */
	char name[];			/* immutable */
};

/*
 * Invariants: under sched->lock, on_ready == (ready_link is on sched->ready);
 * on_ready and busy are never both true; dead implies neither, and is final.
 * Under lock, jobs holds every pushed, not yet completed job in seqno order,
 * and last_seqno is the seqno of the last armed job (queue_validate_locked()).
 */
struct gvm_sched_queue {
	struct gvm_sched *sched;	/* immutable */
	uint64_t context;		/* immutable */

	struct gvm_mutex lock;
	struct gvm_list jobs;		/* gvm_job.link, under lock */
	uint64_t last_seqno;		/* under lock */
	struct gvm_job *armed;		/* armed, not yet pushed; under lock */
	bool dying;			/* set once by destroy under lock
					   (release); the worker reads it
					   without (HEAD) */

	uint32_t nr_unpushed;		/* atomic: initialised, not pushed or
					 * finied (destroy asserts it is 0) */
	uint32_t nr_jobs;		/* atomic: pushed, not yet completed
					   (changed under lock; see PARKED) */
	uint64_t last_done_seqno;	/* worker processing the queue */

	struct gvm_list ready_link;	/* in sched->ready, under sched->lock */
	bool on_ready;			/* under sched->lock */
	bool busy;			/* a worker processes it; sched->lock */
	bool rekick;			/* kicked while busy; sched->lock */
	uint32_t parked;		/* a signal_from_hw head job is done
					   and nobody was kicked to complete
					   it (PARKED): written under
					   sched->lock, read by pushers
					   without it (seq_cst) */
	bool closing;			/* sched->lock: destroy has begun */
	bool dead;			/* all done after dying; sched->lock */
	char name[];			/* immutable */
};

static const struct gvm_fence_ops sched_fence_ops = {
	.name = "sched",
};

/*
 * The queue invariants that can be read under queue->lock alone (the head
 * job's state belongs to the worker): pushed jobs in strictly increasing
 * seqno order, none after last_seqno, all but the head still QUEUED; an
 * armed job is ARMED and has seqno last_seqno.  Debug tier 2.
 */
static __attribute__((unused)) bool
queue_validate_locked(struct gvm_sched_queue *q)
{
	struct gvm_list *pos;
	uint64_t prev = 0;

	gvm_lockdep_assert_held(&q->lock);
	gvm_list_for_each(pos, &q->jobs) {
		struct gvm_job *job = gvm_list_entry(pos, struct gvm_job, link);

		if (job->queue != q || job->finished->seqno <= prev ||
		    job->finished->seqno > q->last_seqno)
			return false;
		if (pos != q->jobs.next && job->state != JOB_QUEUED)
			return false;
		prev = job->finished->seqno;
	}
	if (q->armed && (q->armed->state != JOB_ARMED ||
			 q->armed->finished->seqno != q->last_seqno))
		return false;
	return true;
}

/* ---- kicking ------------------------------------------------------------ */

/*
 * Makes sure a worker will look at @q.  Context: any, including fence
 * callbacks (fence locks held); sched->lock held (queue_kick() takes it).
 */
static void queue_kick_locked(struct gvm_sched *s, struct gvm_sched_queue *q)
{
	gvm_lockdep_assert_held(&s->lock);
	if (q->busy) {
		q->rekick = true;
	} else if (!q->on_ready && !q->dead) {
		gvm_list_add_tail(&q->ready_link, &s->ready);
		q->on_ready = true;
		gvm_fetch_add_release(&s->kicks, 1u);
		/* A spinning worker sees the kick, and looks at the ready
		   list under the lock before it sleeps: no wake-up. */
		if (!s->spinning)
			gvm__cond_signal(&s->work_cond);
	}
}

static void queue_kick(struct gvm_sched_queue *q)
{
	struct gvm_sched *s = q->sched;

	gvm__mutex_lock(&s->lock);
	queue_kick_locked(s, q);
	gvm__mutex_unlock(&s->lock);
}

/* Fence callback: runs with the fence's lock held; touches only the queue. */
static void job_kick_cb(struct gvm_fence *fence, struct gvm_fence_cb *cb)
{
	struct gvm_job *job = gvm_container_of(cb, struct gvm_job, cb);

	queue_kick(job->queue);
}

/*
 * Hw fence callback of a signal_from_hw job in HW_WAIT: signals its
 * finished fence with the hw fence's error (fence locks nest along
 * dependencies, fence.c).  The job is the queue's head until it is
 * completed: finished fences still signal in seqno order.  If a job waits
 * behind it, or the queue is being destroyed, the queue is kicked so that
 * a worker completes it and goes on; else it is PARKED.
 */
static void job_hw_done_cb(struct gvm_fence *fence, struct gvm_fence_cb *cb)
{
	struct gvm_job *job = gvm_container_of(cb, struct gvm_job, cb);
	struct gvm_sched_queue *q = job->queue;
	struct gvm_sched *s = q->sched;

	gvm__fence_signal(job->finished, fence->error);
	gvm__mutex_lock(&s->lock);
	if (gvm_load_relaxed(&q->nr_jobs) > 1 || q->closing) {
		queue_kick_locked(s, q);
	} else {
		/* Then look again: a push that counted its job before our
		   store may have read parked before it (PARKED). */
		gvm_store_seq_cst(&q->parked, 1u);
		if (gvm_load_seq_cst(&q->nr_jobs) > 1) {
			gvm_store_relaxed(&q->parked, 0u);
			queue_kick_locked(s, q);
		}
	}
	gvm__mutex_unlock(&s->lock);
}

/* ---- the worker side ------------------------------------------------------ */

/*
 * True once @f has signalled and job->cb is free again; false if callback
 * @func on @f is installed and will kick the queue.  Context: worker, no
 * lock held.
 */
static bool job_fence_done(struct gvm_job *job, struct gvm_fence *f,
			   gvm_fence_func_t func)
{
	if (job->cb_fence != f) {
		gvm_assert(!job->cb_fence);
		if (gvm_fence_is_signaled(f))
			return true;
		job->cb_fence = f;
		/* Runs the callback at once if f signalled meanwhile: rekick. */
		gvm_fence_add_callback(f, &job->cb, func);
	}
	if (!gvm_fence_is_signaled(f))
		return false;
	/* The barrier: afterwards the callback is unlinked or has returned. */
	gvm_fence_remove_callback(f, &job->cb);
	job->cb_fence = NULL;
	return true;
}

/* Drops the callback of a job that will not wait any longer. */
static void job_drop_callback(struct gvm_job *job)
{
	if (job->cb_fence) {
		gvm_fence_remove_callback(job->cb_fence, &job->cb);
		job->cb_fence = NULL;
	}
}

/*
 * Moves the head job of its queue as far as it goes.  Returns true when the
 * job is complete (job->error final), false when it waits for a callback.
 * Context: worker processing the queue, no lock held.
 */
static bool job_advance(struct gvm_job *job, bool dying)
{
	struct gvm_fence *hw = NULL;
	int status, err;

	switch (job->state) {
	case JOB_QUEUED:
		if (dying) {
			job_drop_callback(job);
			job->error = -ECANCELED;
			return true;
		}
		while (job->next_dep < job->nr_deps) {
			struct gvm_fence *f = job->deps[job->next_dep];

			if (!job_fence_done(job, f, job_kick_cb))
				return false;
			/* The first dependency to fail, in time, gives the error. */
			status = gvm_fence_get_status(f);
			if (status < 0 && (!job->error ||
					   f->timestamp_ns < job->dep_error_ns)) {
				job->error = status;
				job->dep_error_ns = f->timestamp_ns;
			}
			job->deps[job->next_dep++] = NULL;
			gvm_fence_put(f);
		}
		if (job->error)
			return true;

		job->state = JOB_RUNNING;
		gvm_assert(gvm__lockrank_max_held() == 0);
		err = job->ops->run(job, &hw);
		gvm_assert(gvm__lockrank_max_held() == 0);
		if (GVM_WARN_ON(err > 0))
			err = -EINVAL;
		if (err || !hw) {
			if (GVM_WARN_ON(hw))	/* run() broke its contract */
				gvm_fence_put(hw);
			job->error = err;
			return true;
		}
		job->hw_fence = hw;
		job->state = JOB_HW_WAIT;
		/* fall through */
	case JOB_HW_WAIT:
		/* Even a dying queue waits: the work is in flight. */
		if (!job_fence_done(job, job->hw_fence,
				    job->ops->signal_from_hw ? job_hw_done_cb
							     : job_kick_cb))
			return false;
		status = gvm_fence_get_status(job->hw_fence);
		if (status < 0)
			job->error = status;
		return true;
	default:
		GVM_BUG_ON(1);
		return true;
	}
}

/*
 * Signals the head job's finished fence, unlinks it and gives it back.
 * Context: worker processing @q, no lock held.
 */
static void job_complete(struct gvm_sched_queue *q, struct gvm_job *job)
{
	struct gvm_fence *finished = job->finished;

	gvm_assert(!job->cb_fence);
	gvm_assert(finished->seqno > q->last_done_seqno);
	q->last_done_seqno = finished->seqno;

	/* Unless job_hw_done_cb did (it has returned: job_fence_done). */
	if (!gvm_fence_is_signaled(finished))
		gvm__fence_signal(finished, job->error);

	gvm__mutex_lock(&q->lock);
	gvm_assert(q->jobs.next == &job->link);
	gvm_list_del(&job->link);
	gvm_store_relaxed(&q->nr_jobs, gvm_load_relaxed(&q->nr_jobs) - 1);
	gvm_assert_slow(queue_validate_locked(q));
	gvm__mutex_unlock(&q->lock);

	for (uint32_t i = job->next_dep; i < job->nr_deps; i++)
		gvm_fence_put(job->deps[i]);
	if (job->deps != job->deps_inl)
		gvm__free(job->deps);
	job->deps = NULL;
	job->nr_deps = 0;
	gvm_fence_put(job->hw_fence);
	job->hw_fence = NULL;
	job->finished = NULL;
	job->state = JOB_DONE;
	gvm_fence_put(finished);
	job->ops->free(job);	/* the job is the caller's again */
}

enum queue_verdict {
	QUEUE_IDLE,	/* empty, or the head waits for a callback */
	QUEUE_MORE,	/* budget used up, work left */
	QUEUE_DEAD,	/* dying and empty: destroy may free it */
};

/*
 * Context: the one worker processing @q (q->busy), no lock held.
 *
 * HEAD.  The head job is read without q->lock: only this worker removes
 * jobs (job_complete(), which also counts them out of nr_jobs), and a push
 * links its job before it counts it in (nr_jobs, seq_cst, so a release),
 * so nr_jobs read with acquire > 0 means q->jobs.next is a pushed job
 * (or, if the count read is this worker's own decrement, q->lock in
 * job_complete() ordered the pushes it counted), stable until this worker
 * unlinks it (a push onto a non-empty list writes only the tail's link).
 * dying is read first: no job is pushed once it is set, so dying and no
 * job is final.  A worker that misses a dying being set meanwhile
 * finishes as if it had come later: destroy kicks the queue after setting
 * it, so the rekick brings the worker back, and it takes sched->lock,
 * after destroy's, before it looks again.
 */
static enum queue_verdict queue_process(struct gvm_sched_queue *q)
{
	for (unsigned int n = 0;; n++) {
		bool dying = gvm_load_acquire(&q->dying);
		struct gvm_job *job;

		if (!gvm_load_acquire(&q->nr_jobs))
			return dying ? QUEUE_DEAD : QUEUE_IDLE;
		job = gvm_list_first_entry(&q->jobs, struct gvm_job, link);
		if (n == SCHED_BUDGET)
			return QUEUE_MORE;
		if (!job_advance(job, dying))
			return QUEUE_IDLE;
		job_complete(q, job);
	}
}

/*
 * The end of processing @q (worker or gvm_sched_queue_run()) with verdict
 * @v: dead, or back on the ready list if work is left or it was kicked
 * meanwhile.  sched->lock held.
 */
static void queue_release_locked(struct gvm_sched *s,
				 struct gvm_sched_queue *q,
				 enum queue_verdict v)
{
	gvm_lockdep_assert_held(&s->lock);
	q->busy = false;
	/* A hw callback may have parked a head job that this worker then
	   completed: nothing is parked in an empty queue (a push onto it
	   kicks anyway). */
	if (!gvm_load_relaxed(&q->nr_jobs))
		gvm_store_relaxed(&q->parked, 0u);
	if (v == QUEUE_DEAD) {
		q->dead = true;
		gvm__cond_broadcast(&s->dead_cond);
		/* The destroyer may free q once we drop the lock. */
	} else if (v == QUEUE_MORE || q->rekick) {
		q->rekick = false;
		gvm_list_add_tail(&q->ready_link, &s->ready);
		q->on_ready = true;
		gvm_fetch_add_release(&s->kicks, 1u);
		if (!s->spinning)
			gvm__cond_signal(&s->work_cond);
	}
}

/*
 * Processes @q (a worker's pick, or gvm_sched_queue_run()'s caller): takes
 * it off the ready list and marks it busy, runs it with sched->lock
 * dropped, then releases it.  sched->lock held on entry and on return.
 */
static void queue_run_locked(struct gvm_sched *s, struct gvm_sched_queue *q)
{
	enum queue_verdict v;

	if (q->on_ready) {
		gvm_list_del(&q->ready_link);
		q->on_ready = false;
	}
	q->busy = true;
	q->rekick = false;
	gvm_store_relaxed(&q->parked, 0u); /* queue_process() completes it */
	gvm__mutex_unlock(&s->lock);

	v = queue_process(q);

	gvm__mutex_lock(&s->lock);
	queue_release_locked(s, q, v);
}

void (*gvm__sched_spin_hook)(struct gvm_sched *s);

static void *sched_worker(void *arg)
{
	struct gvm_sched *s = arg;
	struct gvm_sched_queue *q;
	bool worked = false;

	gvm__mutex_lock(&s->lock);
	for (;;) {
		while (gvm_list_empty(&s->ready) && !s->stopping) {
			/*
			 * Right after processing a queue, one worker at a
			 * time polls briefly for the next kick before it
			 * sleeps (a job's hw fence, the next push).
			 */
			if (worked && !s->spinning) {
				uint32_t k = gvm_load_relaxed(&s->kicks);

				worked = false;
				s->spinning = true;
				gvm__mutex_unlock(&s->lock);
				if (gvm__sched_spin_hook)
					gvm__sched_spin_hook(s);
				gvm__spin_while_eq(&s->kicks, k,
						   GVM_HANDOFF_SPIN_NS);
				gvm__mutex_lock(&s->lock);
				s->spinning = false;
				continue;
			}
			gvm__cond_wait(&s->work_cond, &s->lock);
		}
		worked = true;
		if (gvm_list_empty(&s->ready))
			break;	/* stopping, and no queue exists any more */

		q = gvm_list_first_entry(&s->ready, struct gvm_sched_queue,
					 ready_link);
		/* More ready than this worker takes: another (Hand-offs). */
		if (q->ready_link.next != &s->ready && !s->spinning)
			gvm__cond_signal(&s->work_cond);
		queue_run_locked(s, q);
	}
	gvm__mutex_unlock(&s->lock);
	return NULL;
}

/* ---- schedulers -------------------------------------------------------- */

static void sched_stop_workers(struct gvm_sched *s, unsigned int nr)
{
	gvm__mutex_lock(&s->lock);
	s->stopping = true;
	gvm__cond_broadcast(&s->work_cond);
	gvm__mutex_unlock(&s->lock);
	for (unsigned int i = 0; i < nr; i++)
		gvm__thread_join(s->workers[i]);
}

static void sched_free(struct gvm_sched *s)
{
	pthread_cond_destroy(&s->work_cond);
	pthread_cond_destroy(&s->dead_cond);
	gvm__mutex_fini(&s->lock);
	gvm__free(s->workers);
	gvm__free(s);
}

int gvm_sched_create(const char *name, unsigned int nr_workers,
		     struct gvm_sched **out)
{
	sigset_t all, old;
	struct gvm_sched *s;
	size_t len;
	int err = 0;

	if (!out || nr_workers == 0 || nr_workers > SCHED_MAX_WORKERS)
		return -EINVAL;
	name = name ? name : "sched";
	len = strlen(name);
	s = gvm__calloc(1, sizeof(*s) + len + 1);
	if (!s)
		return -ENOMEM;
	s->workers = gvm__calloc(nr_workers, sizeof(*s->workers));
	if (!s->workers) {
		gvm__free(s);
		return -ENOMEM;
	}
	memcpy(s->name, name, len + 1);
	gvm__mutex_init(&s->lock, "sched", GVM_RANK_SCHED);
	gvm__cond_init(&s->work_cond);
	gvm__cond_init(&s->dead_cond);
	gvm_list_init(&s->ready);
	s->nr_workers = nr_workers;

	/* Library threads take no signals: they belong to the application. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned int i = 0; i < nr_workers; i++) {
		char tname[32];

		err = gvm__thread_create(&s->workers[i], sched_worker, s);
		if (err) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			sched_stop_workers(s, i);
			sched_free(s);
			return err;
		}
		snprintf(tname, sizeof(tname), "%.10s/%u", s->name, i);
		tname[15] = 0;	/* the kernel's limit */
		pthread_setname_np(s->workers[i], tname);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	*out = s;
	return 0;
}

int gvm_sched_destroy(struct gvm_sched *s)
{
	if (!s)
		return -EINVAL;
	gvm_might_block();
	for (unsigned int i = 0; i < s->nr_workers; i++)
		gvm_assert(!pthread_equal(s->workers[i], pthread_self()));

	gvm__mutex_lock(&s->lock);
	if (s->nr_queues) {
		gvm__mutex_unlock(&s->lock);
		return -EBUSY;
	}
	gvm__mutex_unlock(&s->lock);
	sched_stop_workers(s, s->nr_workers);
	gvm_assert(gvm_list_empty(&s->ready));
	sched_free(s);
	return 0;
}

/* ---- queues -------------------------------------------------------------- */

int gvm_sched_queue_create(struct gvm_sched *s, const char *name,
			   struct gvm_sched_queue **out)
{
	struct gvm_sched_queue *q;
	size_t len;

	if (!s || !out)
		return -EINVAL;
	name = name ? name : "queue";
	len = strlen(name);
	q = gvm__calloc(1, sizeof(*q) + len + 1);
	if (!q)
		return -ENOMEM;
	memcpy(q->name, name, len + 1);
	q->sched = s;
	q->context = gvm_fence_context_alloc(1);
	gvm__mutex_init(&q->lock, "sched_queue", GVM_RANK_SCHED_QUEUE);
	gvm_list_init(&q->jobs);
	gvm_list_init(&q->ready_link);

	gvm__mutex_lock(&s->lock);
	gvm_assert(!s->stopping);
	s->nr_queues++;
	gvm__mutex_unlock(&s->lock);
	*out = q;
	return 0;
}

struct gvm_sched_queue_state gvm__sched_queue_state(struct gvm_sched_queue *q)
{
	struct gvm_sched_queue_state st;

	gvm__mutex_lock(&q->sched->lock);
	st.closing = q->closing;
	st.waits = !q->busy && !q->on_ready && !q->dead;
	st.parked = gvm_load_relaxed(&q->parked);
	gvm__mutex_unlock(&q->sched->lock);
	return st;
}

void gvm_sched_queue_destroy(struct gvm_sched_queue *q)
{
	struct gvm_sched *s;

	if (!q)
		return;
	gvm_might_block();
	s = q->sched;
	gvm_assert(gvm_load_relaxed(&q->nr_unpushed) == 0);

	gvm__mutex_lock(&q->lock);
	gvm_assert(!q->armed && !q->dying);
	gvm_store_release(&q->dying, true);
	gvm__mutex_unlock(&q->lock);

	/* The worker cancels what has not started, then marks q dead; a
	   head job's hw fence that signals from now on kicks the queue. */
	gvm__mutex_lock(&s->lock);
	q->closing = true;
	queue_kick_locked(s, q);
	while (!q->dead)
		gvm__cond_wait(&s->dead_cond, &s->lock);
	gvm_assert(!q->busy && !q->on_ready);
	s->nr_queues--;
	gvm__mutex_unlock(&s->lock);

	gvm_assert(gvm_list_empty(&q->jobs));
	gvm__mutex_fini(&q->lock);
	gvm__free(q);
}

uint64_t gvm_sched_queue_context(const struct gvm_sched_queue *q)
{
	return q ? q->context : 0;
}

/* ---- jobs ------------------------------------------------------------------- */

int gvm_job_init(struct gvm_job *job, struct gvm_sched_queue *q,
		 const struct gvm_job_ops *ops)
{
	struct gvm_fence *finished;

	if (!job || !q || !ops || !ops->run || !ops->free)
		return -EINVAL;
	/* Storage only; gvm_job_arm() makes it a fence. */
	finished = gvm__malloc(sizeof(*finished));
	if (!finished)
		return -ENOMEM;
	memset(job, 0, sizeof(*job));
	gvm_list_init(&job->link);
	job->queue = q;
	job->ops = ops;
	job->finished = finished;
	job->state = JOB_INIT;
	gvm_fetch_add_relaxed(&q->nr_unpushed, 1u);
	return 0;
}

int gvm_job_add_dependency(struct gvm_job *job, struct gvm_fence *fence)
{
	if (!job || !fence || job->state != JOB_INIT)
		return -EINVAL;

	for (uint32_t i = 0; i < job->nr_deps; i++) {
		struct gvm_fence *old = job->deps[i];

		if (old->context != fence->context)
			continue;
		/*
		 * One context signals in seqno order: the later fence stands
		 * for both, even if it has signalled already (it then also
		 * stands for the earlier one's outcome: done).
		 */
		if (gvm_fence_is_later(fence, old)) {
			job->deps[i] = gvm_fence_get(fence);
			gvm_fence_put(old);
		}
		return 0;
	}
	if (gvm_fence_get_status(fence) == 1)
		return 0;	/* signalled without error: nothing to wait for */

	if (!job->max_deps) {
		job->deps = job->deps_inl;
		job->max_deps = GVM_ARRAY_SIZE(job->deps_inl);
	}
	if (job->nr_deps == job->max_deps) {
		uint32_t max = 2 * job->max_deps;
		struct gvm_fence **deps;

		if (max < job->max_deps)
			return -ENOMEM;
		if (job->deps == job->deps_inl) {
			deps = gvm__malloc((size_t)max * sizeof(*deps));
			if (deps)
				memcpy(deps, job->deps_inl,
				       sizeof(job->deps_inl));
		} else {
			deps = gvm__realloc(job->deps,
					    (size_t)max * sizeof(*deps));
		}
		if (!deps)
			return -ENOMEM;
		job->deps = deps;
		job->max_deps = max;
	}
	job->deps[job->nr_deps++] = gvm_fence_get(fence);
	return 0;
}

void gvm_job_fini(struct gvm_job *job)
{
	struct gvm_sched_queue *q;

	if (!job)
		return;
	q = job->queue;
	gvm_assert(job->state == JOB_INIT);
	if (job->state == JOB_ARMED) {
		/* A broken contract (release builds): cancel the fence. */
		gvm__mutex_lock(&q->lock);
		if (q->armed == job)
			q->armed = NULL;
		gvm__mutex_unlock(&q->lock);
		gvm__fence_signal(job->finished, -ECANCELED);
		gvm_fence_put(job->finished);
	} else {
		gvm__free(job->finished);	/* never initialised as a fence */
	}
	for (uint32_t i = 0; i < job->nr_deps; i++)
		gvm_fence_put(job->deps[i]);
	if (job->deps != job->deps_inl)
		gvm__free(job->deps);
	job->deps = NULL;
	job->nr_deps = 0;
	job->max_deps = 0;
	job->finished = NULL;
	job->state = 0;
	gvm_fetch_sub_release(&q->nr_unpushed, 1u);
}

void gvm_job_arm(struct gvm_job *job)
{
	struct gvm_sched_queue *q;

	GVM_BUG_ON(!job);
	gvm_assert(job->state == JOB_INIT);
	q = job->queue;

	gvm__mutex_lock(&q->lock);
	/* Arm/push pairs of one queue are serialised by the caller. */
	gvm_assert(!q->armed);
	gvm_assert(!q->dying);
	gvm_fence_init(job->finished, &sched_fence_ops, q->context,
		       ++q->last_seqno);
	/* Signalled only by the scheduler: gvm_fence_signal() says -EPERM. */
	job->finished->flags = GVM_FENCE_F_PRODUCER_ONLY;
	job->state = JOB_ARMED;
	q->armed = job;
	gvm__mutex_unlock(&q->lock);
}

struct gvm_fence *gvm_job_finished(struct gvm_job *job)
{
	if (!job || job->state != JOB_ARMED)
		return NULL;
	return job->finished;
}

/* Queues @job; true if the queue was empty (no job ahead of it whose
   completion leads a worker on to it: the queue needs a kick). */
static bool job_queue(struct gvm_job *job)
{
	struct gvm_sched_queue *q;
	bool was_empty;

	GVM_BUG_ON(!job);
	gvm_assert(job->state == JOB_ARMED);
	q = job->queue;
	gvm_fetch_sub_release(&q->nr_unpushed, 1u);

	gvm__mutex_lock(&q->lock);
	gvm_assert(q->armed == job);
	gvm_assert(!q->dying);
	q->armed = NULL;
	job->state = JOB_QUEUED;
	was_empty = gvm_list_empty(&q->jobs);
	gvm_list_add_tail(&job->link, &q->jobs);
	gvm_fetch_add_seq_cst(&q->nr_jobs, 1u);	/* PARKED: before parked */
	gvm_assert_slow(queue_validate_locked(q));
	gvm__mutex_unlock(&q->lock);
	/* From here the job may already be freed. */
	return was_empty;
}

void gvm_job_push(struct gvm_job *job)
{
	struct gvm_sched_queue *q = job ? job->queue : NULL;
	struct gvm_sched *s;
	bool was_empty = job_queue(job);

	/*
	 * A non-empty list has a head job that is being processed or waits
	 * for a callback, whose worker reaches this job after completing it;
	 * or a PARKED head, which nobody will complete unless kicked.  Only
	 * then is sched->lock needed: job_queue() counted the job (nr_jobs,
	 * seq_cst) before this load, and the hw callback stores parked
	 * before it rereads nr_jobs, so one of the two sees the other (both
	 * may: a kick more).
	 */
	if (!was_empty && !gvm_load_seq_cst(&q->parked))
		return;
	s = q->sched;
	gvm__mutex_lock(&s->lock);
	if (was_empty || gvm_load_relaxed(&q->parked))
		queue_kick_locked(s, q);
	gvm__mutex_unlock(&s->lock);
}

void gvm_job_push_deferred(struct gvm_job *job)
{
	job_queue(job);
}

void gvm_sched_queue_run(struct gvm_sched_queue *q)
{
	struct gvm_sched *s = q->sched;

	gvm_assert(gvm__lockrank_max_held() == 0);
	gvm__mutex_lock(&s->lock);
	if (q->busy || q->dead) {
		q->rekick = q->busy;	/* its worker looks again */
		gvm__mutex_unlock(&s->lock);
		return;
	}
	/* on the ready list: ours, before a worker takes it */
	queue_run_locked(s, q);
	gvm__mutex_unlock(&s->lock);
}
