// SPDX-License-Identifier: MIT
/*
 * Fence and job-scheduler benchmarks (<gvm/fence.h>, <gvm/sched.h>),
 * through the public API only.
 *
 *   fence_signal_wake  a thread blocked in gvm_fence_wait() (asleep: its
 *                      spin is over, /proc says state S), another stamps
 *                      the time and calls gvm_fence_signal(); the waiter
 *                      stamps the time when the wait returns.  Against the
 *                      same with a raw futex: the waiter asleep in
 *                      FUTEX_WAIT, the signaller stamps, stores the word
 *                      and calls FUTEX_WAKE.  Signaller on CPU 0, waiter on
 *                      CPU 1 on both sides (one CPU: not pinned).  Each
 *                      wake-up is timed: p50 and p99 of 5 x 1000, the two
 *                      sides alternating in blocks of 1000.  This is the
 *                      blocked case: a waiter still in gvm's 5 us spin
 *                      wakes far sooner, and a raw futex has no such spin.
 *   sched_chain_1k     1000 no-op jobs in 4 dependency chains of 250
 *                      (job j of chain c waits for job j - 1 of chain c),
 *                      spread over 4 scheduler queues (job j of chain c on
 *                      queue (c + j) % 4, so every dependency crosses
 *                      queues) of a scheduler with 2 workers, pushed in
 *                      round-robin order of the chains; timed from the
 *                      first gvm_job_init() until every job's free() ran.
 *                      Against a plain work queue: one FIFO under a pthread
 *                      mutex, 2 worker threads sleeping on a condition
 *                      variable, the same jobs pushed in the same order, a
 *                      worker taking the head job once its predecessor in
 *                      the chain is done; timed from the first push until
 *                      the last job is done.  Both sides check that every
 *                      job ran after its predecessor.  Value: ns per job.
 *
 * Protocol: warm-up, then GVM_BENCH_REPS alternating passes; medians.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gvm/fence.h>
#include <gvm/sched.h>

#include "bench.h"
#include "core/sync.h"

static long futex(uint32_t *word, int op, uint32_t val)
{
	return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

/* ---- fence_signal_wake ------------------------------------------------ */

/*
 * One waiter thread serves both sides.  The signaller publishes what to
 * wait for (fence, or futex word) and bumps round; the waiter waits,
 * stamps t1 and stores done = round.
 */
struct waker {
	struct gvm_fence *fence;	/* this round's, or NULL: futex */
	uint32_t word;			/* futex side: 0 until woken */
	uint32_t round;			/* atomic; UINT32_MAX: stop */
	uint32_t done;			/* atomic */
	int tid;			/* atomic, set by the waiter */
	int64_t t1;			/* written before done */
	bool pinned;
};

static void *waiter_main(void *arg)
{
	struct waker *w = arg;
	uint32_t seen = 0, r;

	if (w->pinned)
		gvm_bench_run_on_cpu(1);
	__atomic_store_n(&w->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
	for (;;) {
		while ((r = __atomic_load_n(&w->round, __ATOMIC_ACQUIRE)) ==
		       seen) {
			if (!w->pinned)
				sched_yield();	/* one CPU: let it run */
			__builtin_ia32_pause();
		}
		if (r == UINT32_MAX)
			break;
		seen = r;
		if (w->fence) {
			gvm_fence_wait(w->fence, GVM_TIMEOUT_INFINITE);
		} else {
			while (!__atomic_load_n(&w->word, __ATOMIC_ACQUIRE))
				futex(&w->word, FUTEX_WAIT_PRIVATE, 0);
		}
		w->t1 = gvm_bench_now_ns();
		__atomic_store_n(&w->done, seen, __ATOMIC_RELEASE);
	}
	return NULL;
}

/*
 * @n wake-ups, each timed into @ns[]: with a gvm fence if @ctx_id, else
 * with the raw futex.  0, -ENOMEM, or -EIO if the waiter cannot be seen
 * asleep.
 */
static int wakeups(struct waker *w, uint64_t ctx_id, double *ns, int n)
{
	static uint64_t seqno;
	int tid = __atomic_load_n(&w->tid, __ATOMIC_ACQUIRE);

	for (int i = 0; i < n; i++) {
		uint32_t r = __atomic_load_n(&w->round, __ATOMIC_RELAXED) + 1;
		int64_t t0;

		w->fence = NULL;
		w->word = 0;
		if (ctx_id && gvm_fence_create(ctx_id, ++seqno, &w->fence))
			return -ENOMEM;
		__atomic_store_n(&w->round, r, __ATOMIC_RELEASE);
		if (!gvm_bench_wait_asleep(tid))
			return -EIO;
		t0 = gvm_bench_now_ns();
		if (w->fence) {
			gvm_fence_signal(w->fence);
		} else {
			__atomic_store_n(&w->word, 1, __ATOMIC_RELEASE);
			futex(&w->word, FUTEX_WAKE_PRIVATE, 1);
		}
		while (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) != r)
			__builtin_ia32_pause();
		ns[i] = (double)(w->t1 - t0);
		gvm_fence_put(w->fence);
	}
	return 0;
}

GVM_BENCH(fence_signal_wake, "gvm_fence_signal to a blocked waiter running")
{
	const int inner = ctx->quick ? 20 : 1000;
	const int total = inner * GVM_BENCH_REPS;
	uint64_t ctx_id = gvm_fence_context_alloc(1);
	struct waker w = { 0 };
	pthread_t th;
	double *v, *b;
	int r, err;

	if (gvm_bench_samples((size_t)total, &v, &b))
		return -ENOMEM;
	w.pinned = gvm_bench_run_on_cpu(1) && gvm_bench_run_on_cpu(0);
	if (!w.pinned)
		gvm_bench_run_on_cpu(-1);
	err = -pthread_create(&th, NULL, waiter_main, &w);
	if (err)
		goto out;
	while (!__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE))
		sched_yield();
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int at = (r < 0 ? 0 : r) * inner;

		err = wakeups(&w, ctx_id, v + at, inner);
		if (!err)
			err = wakeups(&w, 0, b + at, inner);
	}
	__atomic_store_n(&w.round, UINT32_MAX, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	if (!err) {
		gvm_bench_set_pct(res, v, (size_t)total, b, (size_t)total,
				  1000.0);
		res->unit = "us/wake";
		res->baseline = "FUTEX_WAKE of a FUTEX_WAIT sleeper";
		res->goal = 1.2;
		snprintf(res->note, sizeof(res->note),
			 "p50 of %d; waiter asleep (past its spin) on both "
			 "sides; %s", total,
			 w.pinned ? "signaller CPU 0, waiter CPU 1"
				  : "one CPU: not pinned");
	}
out:
	gvm_bench_run_on_cpu(-1);
	gvm_bench_samples_free(v, b);
	return err;
}

/* ---- sched_chain_1k --------------------------------------------------- */

#define CHAINS 4
#define CHAIN_JOBS 250
#define CHAIN_TOTAL (CHAINS * CHAIN_JOBS)	/* job i: chain i % CHAINS */
#define CHAIN_WORKERS 2

/* Run order stamps, to check each job ran after its predecessor. */
static uint64_t ticket;

static bool chain_order_ok(const uint64_t *ran)
{
	for (int i = CHAINS; i < CHAIN_TOTAL; i++)
		if (ran[i] <= ran[i - CHAINS])
			return false;
	return true;
}

struct cjob {
	struct gvm_job job;
	uint64_t *ran;		/* this job's run stamp */
	uint32_t *freed;	/* atomic count of free() calls */
};

static int cjob_run(struct gvm_job *job, struct gvm_fence **hw)
{
	struct cjob *c = (struct cjob *)job;

	(void)hw;
	*c->ran = __atomic_add_fetch(&ticket, 1, __ATOMIC_RELAXED);
	return 0;
}

static void cjob_free(struct gvm_job *job)
{
	struct cjob *c = (struct cjob *)job;

	__atomic_add_fetch(c->freed, 1, __ATOMIC_RELEASE);
}

static const struct gvm_job_ops cjob_ops = { .run = cjob_run,
					     .free = cjob_free };

struct sched_side {
	struct gvm_sched *s;
	struct gvm_sched_queue *q[CHAINS];
	struct cjob jobs[CHAIN_TOTAL];
	struct gvm_fence *fin[CHAIN_TOTAL];
	uint64_t ran[CHAIN_TOTAL];
	uint32_t freed;
};

/* One round of the 1000 jobs through the scheduler; the ns it took. */
static int sched_round(struct sched_side *sd, double *ns)
{
	int64_t t0 = gvm_bench_now_ns();
	int i, err = 0, pushed = 0;

	sd->freed = 0;
	for (i = 0; i < CHAIN_TOTAL && !err; i++) {
		struct cjob *c = &sd->jobs[i];
		int j = i / CHAINS;

		c->ran = &sd->ran[i];
		c->freed = &sd->freed;
		err = gvm_job_init(&c->job, sd->q[(i % CHAINS + j) % CHAINS],
				   &cjob_ops);
		if (err)
			break;
		if (j)
			err = gvm_job_add_dependency(&c->job,
						     sd->fin[i - CHAINS]);
		if (err) {
			gvm_job_fini(&c->job);
			break;
		}
		gvm_job_arm(&c->job);
		sd->fin[i] = gvm_fence_get(gvm_job_finished(&c->job));
		gvm_job_push(&c->job);
		pushed++;
	}
	for (i = pushed - 1; i >= 0 && i >= pushed - CHAINS; i--)
		gvm_fence_wait(sd->fin[i], GVM_TIMEOUT_INFINITE);
	while (__atomic_load_n(&sd->freed, __ATOMIC_ACQUIRE) !=
	       (uint32_t)pushed)
		sched_yield();
	*ns = (double)(gvm_bench_now_ns() - t0);
	for (i = 0; i < pushed; i++) {
		if (gvm_fence_get_status(sd->fin[i]) != 1)
			err = err ? err : -EIO;
		gvm_fence_put(sd->fin[i]);
	}
	if (!err && !chain_order_ok(sd->ran))
		err = -EIO;
	return err;
}

/* The plain work queue: a FIFO of job indices under one mutex. */
struct wq {
	pthread_mutex_t lock;
	pthread_cond_t work;		/* head job runnable, or stop */
	pthread_cond_t idle;		/* all jobs done */
	int head, tail, done;		/* under lock */
	bool finished[CHAIN_TOTAL];	/* under lock */
	uint64_t ran[CHAIN_TOTAL];
	bool stop;
};

/* Under lock: the head job exists and its predecessor is done. */
static bool wq_runnable(const struct wq *q)
{
	return q->head < q->tail &&
	       (q->head < CHAINS || q->finished[q->head - CHAINS]);
}

static void *wq_worker(void *arg)
{
	struct wq *q = arg;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		int i;

		while (!q->stop && !wq_runnable(q))
			pthread_cond_wait(&q->work, &q->lock);
		if (q->stop)
			break;
		i = q->head++;
		pthread_mutex_unlock(&q->lock);
		q->ran[i] = __atomic_add_fetch(&ticket, 1, __ATOMIC_RELAXED);
		pthread_mutex_lock(&q->lock);
		q->finished[i] = true;
		if (++q->done == CHAIN_TOTAL)
			pthread_cond_signal(&q->idle);
		pthread_cond_broadcast(&q->work);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* One round of the same jobs through the work queue; the ns it took. */
static int wq_round(struct wq *q, double *ns)
{
	int64_t t0;

	pthread_mutex_lock(&q->lock);
	q->head = q->tail = q->done = 0;
	memset(q->finished, 0, sizeof(q->finished));
	pthread_mutex_unlock(&q->lock);
	t0 = gvm_bench_now_ns();
	for (int i = 0; i < CHAIN_TOTAL; i++) {
		pthread_mutex_lock(&q->lock);
		q->tail++;
		pthread_cond_signal(&q->work);
		pthread_mutex_unlock(&q->lock);
	}
	pthread_mutex_lock(&q->lock);
	while (q->done != CHAIN_TOTAL)
		pthread_cond_wait(&q->idle, &q->lock);
	pthread_mutex_unlock(&q->lock);
	*ns = (double)(gvm_bench_now_ns() - t0);
	return chain_order_ok(q->ran) ? 0 : -EIO;
}

GVM_BENCH(sched_chain_1k, "1000 no-op jobs in 4 dependency chains, 2 workers")
{
	const int rounds = ctx->quick ? 1 : 20;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	struct sched_side *sd = calloc(1, sizeof(*sd));
	struct wq *q = calloc(1, sizeof(*q));
	pthread_t workers[CHAIN_WORKERS];
	int i, r, k, started = 0, err;

	if (!sd || !q) {
		err = -ENOMEM;
		goto out_free;
	}
	err = gvm_sched_create("bench", CHAIN_WORKERS, &sd->s);
	for (i = 0; i < CHAINS && !err; i++)
		err = gvm_sched_queue_create(sd->s, "chain", &sd->q[i]);
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->work, NULL);
	pthread_cond_init(&q->idle, NULL);
	for (; started < CHAIN_WORKERS && !err; started++)
		err = -pthread_create(&workers[started], NULL, wq_worker, q);
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		double sv = 0, sb = 0, ns;

		for (k = 0; k < rounds && !err; k++) {
			err = sched_round(sd, &ns);
			sv += ns;
			if (!err)
				err = wq_round(q, &ns);
			sb += ns;
		}
		if (r >= 0) {
			v[r] = sv / rounds / CHAIN_TOTAL;
			b[r] = sb / rounds / CHAIN_TOTAL;
		}
	}
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_broadcast(&q->work);
	pthread_mutex_unlock(&q->lock);
	while (started)
		pthread_join(workers[--started], NULL);
	if (!err) {
		gvm_bench_set_median(res, v, b);
		res->unit = "ns/job";
		res->baseline = "mutex+cond FIFO, 2 workers, same order";
		res->goal = 1.5;
		snprintf(res->note, sizeof(res->note),
			 "%.0f vs %.0f jobs/s; 4 chains x 250 over 4 queues, "
			 "deps cross queues; gvm workers spin %d us, the "
			 "baseline's sleep", 1e9 / res->value,
			 1e9 / res->baseline_value,
			 (int)(GVM_HANDOFF_SPIN_NS / 1000));
	}
	for (i = 0; sd && i < CHAINS; i++)
		gvm_sched_queue_destroy(sd->q[i]);
	if (sd && sd->s)
		gvm_sched_destroy(sd->s);
	pthread_cond_destroy(&q->idle);
	pthread_cond_destroy(&q->work);
	pthread_mutex_destroy(&q->lock);
out_free:
	free(sd);
	free(q);
	return err;
}
