// SPDX-License-Identifier: MIT
/*
 * Stress tests of the job scheduler: random dependency graphs over several
 * queues, submitted by several threads, with asynchronous hardware fences
 * and external "gate" fences signalled by helper threads in random order,
 * and failures injected at every level.
 *
 * Every job records, with a global atomic counter ("tick") and the monotonic
 * clock:
 *   run_tick/run_ns   when run() started;
 *   end_tick          when run() returned (its work is done unless a hw
 *                     fence follows);
 *   hw_tick           just before its hw fence was signalled;
 *   done_tick         when its finished fence's callback ran;
 * and counts runs, frees and finished callbacks.  The checks:
 *   - every job completes exactly once and is freed exactly once;
 *   - a job runs only after each dependency and its queue predecessor have
 *     completed: run_tick > their end_tick and hw_tick, and run_ns >= their
 *     finished fences' timestamps (ticks for the work, timestamps for the
 *     fences: a fence's SIGNALED bit is visible before its callbacks run, so
 *     a callback tick could come after a dependent's start);
 *   - a job completes only after its dependencies and its predecessor;
 *   - finished fences of a queue complete in seqno order;
 *   - outcomes: a model computed at submission (which jobs fail, and why)
 *     must match exactly; a job failing through its dependencies carries the
 *     error of the kept dependency that failed first in time;
 *   - the global counters (runs, frees, completions) come out exact.
 *
 * The seed (GVM_TEST_SEED) fixes every random choice of each submitter and
 * helper; thread interleavings still vary from run to run.
 */
#include <pthread.h>
#include <time.h>

#include <gvm/fence.h>
#include <gvm/sched.h>

#include "core/debug.h"
#include "harness.h"

#define MAX_DEPS 6
#define MAX_SUBMITTERS 4
#define ERR_RUN (-EIO)
#define ERR_HW (-ENXIO)
#define ERR_GATE (-ENOLINK)
#define EXPECT_DEP_FAIL 1	/* model: fails through a dependency */
#define WAIT_NS (120ll * 1000 * 1000 * 1000)

enum kind { K_OK, K_FAIL_RUN, K_HW_OK, K_HW_FAIL };

static uint64_t tick;

static uint64_t next_tick(void)
{
	return __atomic_add_fetch(&tick, 1, __ATOMIC_SEQ_CST);
}

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define INC(p) __atomic_add_fetch((p), 1, __ATOMIC_SEQ_CST)

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };

	if (ns > 0)
		nanosleep(&ts, NULL);
}

/* ---- helpers: signal fences later, in random order ---------------------- */

struct pending_signal {
	struct gvm_fence *fence;	/* reference */
	int error;
	int64_t due_ns;
	uint64_t *tick_slot;		/* gets a tick just before signalling */
};

struct helpers {
	pthread_mutex_t m;
	pthread_cond_t c;
	struct pending_signal *items;	/* under m */
	size_t n, cap;			/* under m */
	bool stop;			/* under m */
	unsigned int nr;
	pthread_t thread[4];
	uint64_t seed;
};

static void helpers_add(struct helpers *h, struct gvm_fence *f, int error,
			int64_t delay_ns, uint64_t *tick_slot)
{
	pthread_mutex_lock(&h->m);
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 256;
		h->items = realloc(h->items, h->cap * sizeof(*h->items));
		ASSERT_TRUE(h->items != NULL);
	}
	h->items[h->n++] = (struct pending_signal){
		gvm_fence_get(f), error, gvm_test_now_ns() + delay_ns,
		tick_slot };
	pthread_cond_signal(&h->c);
	pthread_mutex_unlock(&h->m);
}

struct helper_arg {
	struct helpers *h;
	unsigned int idx;
};

static struct helper_arg helper_args[4];

static void *helper_main(void *arg)
{
	struct helper_arg *a = arg;
	struct helpers *h = a->h;
	struct gvm_rng rng = { h->seed ^ (0x51ed2701u * (a->idx + 1)) };

	pthread_mutex_lock(&h->m);
	for (;;) {
		struct pending_signal p;
		size_t i;

		while (!h->n && !h->stop)
			pthread_cond_wait(&h->c, &h->m);
		if (!h->n)
			break;
		i = gvm_rng_below(&rng, h->n);
		p = h->items[i];
		h->items[i] = h->items[--h->n];
		pthread_mutex_unlock(&h->m);

		sleep_ns(p.due_ns - gvm_test_now_ns());
		if (p.tick_slot)
			STORE(p.tick_slot, next_tick());
		ASSERT_OK(gvm_fence_signal_error(p.fence, p.error));
		gvm_fence_put(p.fence);

		pthread_mutex_lock(&h->m);
	}
	pthread_mutex_unlock(&h->m);
	return NULL;
}

static void helpers_start(struct helpers *h, unsigned int nr, uint64_t seed)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->m, NULL);
	pthread_cond_init(&h->c, NULL);
	h->nr = nr;
	h->seed = seed;
	for (unsigned int i = 0; i < nr; i++) {
		helper_args[i] = (struct helper_arg){ h, i };
		ASSERT_OK(pthread_create(&h->thread[i], NULL, helper_main,
					 &helper_args[i]));
	}
}

/* Signals everything still pending, then joins. */
static void helpers_stop(struct helpers *h)
{
	pthread_mutex_lock(&h->m);
	h->stop = true;
	pthread_cond_broadcast(&h->c);
	pthread_mutex_unlock(&h->m);
	for (unsigned int i = 0; i < h->nr; i++)
		pthread_join(h->thread[i], NULL);
	free(h->items);
}

/* ---- the world ------------------------------------------------------------- */

struct world;

struct gate {
	struct gvm_fence *fence;	/* reference */
	int error;
	bool late;			/* signalled only at the very end */
};

struct dep {
	struct gvm_fence *fence;	/* borrowed from the job or gate */
	int32_t job;			/* job id, or -1 for a gate */
	uint64_t context;
	uint64_t key;			/* seqno order within the context */
	int expect;			/* the model's outcome of the fence */
};

struct sjob {
	struct gvm_job base;
	struct world *w;
	uint32_t id, queue, pos;
	int32_t prev;			/* predecessor on the queue, or -1 */
	enum kind kind;
	int expect;			/* 0, ERR_*, or EXPECT_DEP_FAIL */
	int run_sleep_us;
	struct gvm_fence *finished;	/* reference */
	struct gvm_fence_cb done_cb;
	uint32_t nr_deps;
	struct dep deps[MAX_DEPS];

	/* recorded, atomic */
	uint64_t run_tick, end_tick, hw_tick, done_tick, free_tick;
	int64_t run_ns;
	uint32_t runs, frees, dones;
};

struct world {
	const char *name;
	unsigned int nr_queues, nr_submitters, nr_workers;
	uint32_t nr_jobs, per;		/* per submitter */
	uint64_t seed;
	bool destroy_in_flight;		/* test 2: cancel instead of wait */

	struct gvm_sched *sched;
	struct gvm_sched_queue **queues;
	uint32_t *queue_len;		/* owned by the queue's submitter */
	uint64_t *destroy_tick;		/* atomic: destroy of a queue returned */
	struct sjob *jobs;
	uint32_t pub[MAX_SUBMITTERS];	/* atomic: published jobs */
	struct gate *gates;
	uint32_t nr_gates;		/* atomic */
	uint32_t max_gates;
	struct helpers h;

	uint64_t runs, frees, dones;	/* atomic */
};

static int sjob_run(struct gvm_job *job, struct gvm_fence **hw)
{
	struct sjob *j = gvm_container_of(job, struct sjob, base);
	struct world *w = j->w;
	struct gvm_fence *f;

	STORE(&j->run_ns, gvm_test_now_ns());
	STORE(&j->run_tick, next_tick());
	INC(&j->runs);
	INC(&w->runs);
	if (j->run_sleep_us)
		sleep_ns((int64_t)j->run_sleep_us * 1000);

	switch (j->kind) {
	case K_FAIL_RUN:
		STORE(&j->end_tick, next_tick());
		return ERR_RUN;
	case K_HW_OK:
	case K_HW_FAIL:
		ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &f));
		STORE(&j->end_tick, next_tick());
		helpers_add(&w->h, f, j->kind == K_HW_FAIL ? ERR_HW : 0,
			    (int64_t)(j->id % 7) * 15000, &j->hw_tick);
		*hw = f;
		return 0;
	default:
		STORE(&j->end_tick, next_tick());
		return 0;
	}
}

static void sjob_free(struct gvm_job *job)
{
	struct sjob *j = gvm_container_of(job, struct sjob, base);

	STORE(&j->free_tick, next_tick());
	INC(&j->frees);
	INC(&j->w->frees);
}

static const struct gvm_job_ops sjob_ops = {
	.run = sjob_run,
	.free = sjob_free,
};

static void sjob_done(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct sjob *j = gvm_container_of(cb, struct sjob, done_cb);

	STORE(&j->done_tick, next_tick());
	INC(&j->dones);
	INC(&j->w->dones);
}

/* Whether dep i of @j is the one kept for its context (the latest). */
static bool dep_kept(const struct sjob *j, uint32_t i)
{
	for (uint32_t k = 0; k < j->nr_deps; k++) {
		if (k == i || j->deps[k].context != j->deps[i].context)
			continue;
		if (j->deps[k].key > j->deps[i].key ||
		    (j->deps[k].key == j->deps[i].key && k < i))
			return false;
	}
	return true;
}

static int dep_cmp(const void *a, const void *b)
{
	const struct dep *x = a, *y = b;

	if (x->context != y->context)
		return x->context < y->context ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* Creates a gate fence: signalled by a helper soon, or at the end if late. */
static struct dep new_gate(struct world *w, struct gvm_rng *rng, bool may_be_late)
{
	uint32_t idx = INC(&w->nr_gates) - 1;
	struct gate *g;

	ASSERT_LT(idx, w->max_gates);
	g = &w->gates[idx];
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &g->fence));
	g->error = gvm_rng_below(rng, 6) == 0 ? ERR_GATE : 0;
	g->late = may_be_late && gvm_rng_below(rng, 4) == 0;
	if (!g->late)
		helpers_add(&w->h, g->fence, g->error,
			    (int64_t)gvm_rng_below(rng, 300) * 1000, NULL);
	return (struct dep){ g->fence, -1, g->fence->context, 0,
			     g->late ? EXPECT_DEP_FAIL : g->error };
}

struct submitter {
	pthread_t thread;
	struct world *w;
	unsigned int idx;
};

static void *submitter_main(void *arg)
{
	struct submitter *sub = arg;
	struct world *w = sub->w;
	unsigned int t = sub->idx, nr_own = 0, own[16];
	struct gvm_rng rng = { w->seed ^ (0x9e3779b1u * (t + 1)) };
	int32_t last[16];

	for (unsigned int q = t; q < w->nr_queues; q += w->nr_submitters) {
		last[nr_own] = -1;
		own[nr_own++] = q;
	}
	ASSERT_GT(nr_own, 0);

	for (uint32_t k = 0; k < w->per; k++) {
		uint32_t id = t * w->per + k, nd, r, oq;
		struct sjob *j = &w->jobs[id];
		bool dep_fail = false;

		oq = (uint32_t)gvm_rng_below(&rng, nr_own);
		j->w = w;
		j->id = id;
		j->queue = own[oq];
		j->pos = w->queue_len[j->queue]++;
		j->prev = last[oq];
		last[oq] = (int32_t)id;
		r = (uint32_t)gvm_rng_below(&rng, 100);
		j->kind = r < 3 ? K_FAIL_RUN : r < 25 ? K_HW_OK :
			  r < 28 ? K_HW_FAIL : K_OK;
		if (w->destroy_in_flight && gvm_rng_below(&rng, 20) == 0)
			j->run_sleep_us = 1 + (int)gvm_rng_below(&rng, 200);

		/* Mostly 0 or 1 dependencies, so failures do not swamp it. */
		r = (uint32_t)gvm_rng_below(&rng, 100);
		nd = r < 40 ? 0 : r < 75 ? 1 : r < 92 ? 2 : 3 + r % 3;
		for (uint32_t i = 0; i < nd && j->nr_deps < MAX_DEPS; i++) {
			struct dep d;

			if (gvm_rng_below(&rng, 10) == 0) {
				/* Late gates block the last third. */
				d = new_gate(w, &rng, w->destroy_in_flight &&
							      k >= 2 * w->per / 3);
			} else {
				uint32_t u = (uint32_t)gvm_rng_below(
					&rng, w->nr_submitters);
				uint32_t n = __atomic_load_n(&w->pub[u],
							     __ATOMIC_ACQUIRE);
				uint32_t win = n < 48 ? n : 48, di;
				struct sjob *dj;

				if (!n)
					continue;
				di = gvm_rng_below(&rng, 8) == 0 ?
					     (uint32_t)gvm_rng_below(&rng, n) :
					     n - 1 - (uint32_t)gvm_rng_below(&rng, win);
				dj = &w->jobs[u * w->per + di];
				d = (struct dep){ dj->finished, (int32_t)dj->id,
						  gvm_sched_queue_context(
							  w->queues[dj->queue]),
						  dj->pos, dj->expect };
			}
			j->deps[j->nr_deps++] = d;
			/* Sometimes the very same fence twice. */
			if (j->nr_deps < MAX_DEPS && gvm_rng_below(&rng, 10) == 0)
				j->deps[j->nr_deps++] = d;
		}
		/* Oldest first within a context (see gvm_job_add_dependency). */
		qsort(j->deps, j->nr_deps, sizeof(j->deps[0]), dep_cmp);
		for (uint32_t i = 0; i < j->nr_deps; i++)
			if (dep_kept(j, i) && j->deps[i].expect)
				dep_fail = true;
		if (dep_fail)
			j->expect = EXPECT_DEP_FAIL;
		else if (j->kind == K_FAIL_RUN)
			j->expect = ERR_RUN;
		else if (j->kind == K_HW_FAIL)
			j->expect = ERR_HW;

		ASSERT_OK(gvm_job_init(&j->base, w->queues[j->queue], &sjob_ops));
		for (uint32_t i = 0; i < j->nr_deps; i++)
			ASSERT_OK(gvm_job_add_dependency(&j->base,
							 j->deps[i].fence));
		gvm_job_arm(&j->base);
		j->finished = gvm_fence_get(gvm_job_finished(&j->base));
		ASSERT_OK(gvm_fence_add_callback(j->finished, &j->done_cb,
						 sjob_done));
		gvm_job_push(&j->base);
		__atomic_store_n(&w->pub[t], k + 1, __ATOMIC_RELEASE);

		/* Now and then, let the machine catch up a little. */
		if (gvm_rng_below(&rng, 200) == 0)
			sleep_ns(50000);
	}
	return NULL;
}

static void world_start(struct world *w)
{
	struct submitter sub[MAX_SUBMITTERS];

	w->seed = gvm_test_seed();
	w->per = w->nr_jobs / w->nr_submitters;
	w->nr_jobs = w->per * w->nr_submitters;
	w->max_gates = w->nr_jobs * MAX_DEPS;
	printf("%s: %u jobs, %u queues, %u submitters, %u workers\n", w->name,
	       w->nr_jobs, w->nr_queues, w->nr_submitters, w->nr_workers);

	w->queues = calloc(w->nr_queues, sizeof(*w->queues));
	w->queue_len = calloc(w->nr_queues, sizeof(*w->queue_len));
	w->destroy_tick = calloc(w->nr_queues, sizeof(*w->destroy_tick));
	w->jobs = calloc(w->nr_jobs, sizeof(*w->jobs));
	w->gates = calloc(w->max_gates, sizeof(*w->gates));
	ASSERT_TRUE(w->queues && w->queue_len && w->destroy_tick && w->jobs &&
		    w->gates);

	helpers_start(&w->h, 3, w->seed);
	ASSERT_OK(gvm_sched_create("stress", w->nr_workers, &w->sched));
	for (unsigned int q = 0; q < w->nr_queues; q++)
		ASSERT_OK(gvm_sched_queue_create(w->sched, "q", &w->queues[q]));

	for (unsigned int t = 0; t < w->nr_submitters; t++) {
		sub[t] = (struct submitter){ .w = w, .idx = t };
		ASSERT_OK(pthread_create(&sub[t].thread, NULL, submitter_main,
					 &sub[t]));
	}
	for (unsigned int t = 0; t < w->nr_submitters; t++)
		pthread_join(sub[t].thread, NULL);
}

/* The error of the kept dependency that failed first in time, or 0. */
static int first_dep_error(const struct sjob *j, int64_t *ts_out)
{
	int64_t best = INT64_MAX;
	int error = 0;

	for (uint32_t i = 0; i < j->nr_deps; i++) {
		int st = gvm_fence_get_status(j->deps[i].fence);
		int64_t ts = gvm_fence_timestamp(j->deps[i].fence);

		if (!dep_kept(j, i) || st >= 0)
			continue;
		if (ts < best) {
			best = ts;
			error = st;
		}
	}
	*ts_out = best;
	return error;
}

/* Whether @j's status is the error of one of its earliest failed deps. */
static bool is_first_dep_error(const struct sjob *j, int status)
{
	int64_t best;

	if (!first_dep_error(j, &best))
		return false;
	for (uint32_t i = 0; i < j->nr_deps; i++)
		if (dep_kept(j, i) &&
		    gvm_fence_get_status(j->deps[i].fence) == status &&
		    gvm_fence_timestamp(j->deps[i].fence) == best)
			return true;
	return false;
}

/* Work of @d (a job) completed before tick @t / time @ns. */
static void check_before(const struct sjob *d, uint64_t t, int64_t ns)
{
	if (LOAD(&d->runs)) {
		ASSERT_GT(t, LOAD(&d->end_tick));
		if (d->kind == K_HW_OK || d->kind == K_HW_FAIL)
			ASSERT_GT(t, LOAD(&d->hw_tick));
	}
	ASSERT_GE(ns, gvm_fence_timestamp(d->finished));
}

static void check_job_common(struct world *w, struct sjob *j)
{
	int status = gvm_fence_get_status(j->finished);
	bool ran = LOAD(&j->runs) != 0;

	ASSERT_NE(status, 0);			/* signalled */
	ASSERT_EQ(LOAD(&j->dones), 1);
	ASSERT_EQ(LOAD(&j->frees), 1);
	ASSERT_LE(LOAD(&j->runs), 1);
	ASSERT_LT(LOAD(&j->done_tick), LOAD(&j->free_tick));

	/* Seqno order within the queue. */
	if (j->prev >= 0) {
		struct sjob *p = &w->jobs[j->prev];

		ASSERT_GT(LOAD(&j->done_tick), LOAD(&p->done_tick));
		ASSERT_GE(gvm_fence_timestamp(j->finished),
			  gvm_fence_timestamp(p->finished));
		ASSERT_TRUE(gvm_fence_is_later(j->finished, p->finished));
	}
	if (!ran)
		return;

	/* Ran after its dependencies and its predecessor completed. */
	for (uint32_t i = 0; i < j->nr_deps; i++) {
		ASSERT_NE(gvm_fence_get_status(j->deps[i].fence), 0);
		ASSERT_GE(LOAD(&j->run_ns),
			  gvm_fence_timestamp(j->deps[i].fence));
		if (j->deps[i].job >= 0)
			check_before(&w->jobs[j->deps[i].job],
				     LOAD(&j->run_tick), LOAD(&j->run_ns));
		/* A job that ran had no failed kept dependency. */
		if (dep_kept(j, i))
			ASSERT_GT(gvm_fence_get_status(j->deps[i].fence), 0);
	}
	if (j->prev >= 0)
		check_before(&w->jobs[j->prev], LOAD(&j->run_tick),
			     LOAD(&j->run_ns));
	ASSERT_GT(LOAD(&j->done_tick), LOAD(&j->end_tick));
	if (j->kind == K_HW_OK || j->kind == K_HW_FAIL)
		ASSERT_GT(LOAD(&j->done_tick), LOAD(&j->hw_tick));

	/* Work that ran completes normally, even on a destroyed queue. */
	ASSERT_EQ(status, j->kind == K_FAIL_RUN ? ERR_RUN :
			  j->kind == K_HW_FAIL ? ERR_HW : 1);
}

static void world_finish(struct world *w)
{
	for (uint32_t i = 0; i < w->max_gates; i++)
		if (w->gates[i].late)
			ASSERT_OK(gvm_fence_signal_error(w->gates[i].fence,
							 w->gates[i].error));
	helpers_stop(&w->h);
	ASSERT_OK(gvm_sched_destroy(w->sched));
	for (uint32_t i = 0; i < w->nr_jobs; i++)
		gvm_fence_put(w->jobs[i].finished);
	for (uint32_t i = 0; i < w->max_gates; i++)
		gvm_fence_put(w->gates[i].fence);
	free(w->queues);
	free(w->queue_len);
	free(w->destroy_tick);
	free(w->jobs);
	free(w->gates);
}

/*
 * Random graphs, every job completes: outcomes must match the model exactly.
 */
TEST(random_graphs)
{
	struct world w = {
		.name = "random_graphs",
		.nr_queues = 7,
		.nr_submitters = 3,
		.nr_workers = 4,
		.nr_jobs = (uint32_t)gvm_test_scale(9000),
	};
	uint64_t expect_runs = 0, ok = 0, dep_failed = 0, own_failed = 0;

	if (w.nr_jobs < 30)
		w.nr_jobs = 30;
	world_start(&w);

	for (uint32_t i = 0; i < w.nr_jobs; i++)
		ASSERT_OK(gvm_fence_wait(w.jobs[i].finished, WAIT_NS));
	for (unsigned int q = 0; q < w.nr_queues; q++)
		gvm_sched_queue_destroy(w.queues[q]);

	for (uint32_t i = 0; i < w.nr_jobs; i++) {
		struct sjob *j = &w.jobs[i];
		int status = gvm_fence_get_status(j->finished);

		check_job_common(&w, j);
		/* The model, exactly. */
		if (j->expect == EXPECT_DEP_FAIL) {
			ASSERT_EQ(LOAD(&j->runs), 0);
			ASSERT_TRUE(is_first_dep_error(j, status));
			/* Completed only after all its dependencies. */
			for (uint32_t k = 0; k < j->nr_deps; k++)
				ASSERT_GE(gvm_fence_timestamp(j->finished),
					  gvm_fence_timestamp(j->deps[k].fence));
			dep_failed++;
		} else {
			ASSERT_EQ(LOAD(&j->runs), 1);
			ASSERT_EQ(status, j->expect ? j->expect : 1);
			expect_runs++;
			if (j->expect)
				own_failed++;
			else
				ok++;
		}
	}
	ASSERT_EQ(LOAD(&w.runs), expect_runs);
	ASSERT_EQ(LOAD(&w.frees), w.nr_jobs);
	ASSERT_EQ(LOAD(&w.dones), w.nr_jobs);
	printf("random_graphs: %" PRIu64 " ok, %" PRIu64 " failed in run/hw, %"
	       PRIu64 " failed through dependencies, %u gates\n",
	       ok, own_failed, dep_failed, LOAD(&w.nr_gates));
	world_finish(&w);
}

struct destroyer {
	pthread_t thread;
	struct world *w;
	unsigned int q;
	int64_t delay_ns;
};

static void *destroyer_main(void *arg)
{
	struct destroyer *d = arg;
	struct world *w = d->w;

	sleep_ns(d->delay_ns);
	gvm_sched_queue_destroy(w->queues[d->q]);
	STORE(&w->destroy_tick[d->q], next_tick());
	/* Everything of the queue is done by now. */
	for (uint32_t i = 0; i < w->nr_jobs; i++) {
		struct sjob *j = &w->jobs[i];

		if (j->queue != d->q)
			continue;
		ASSERT_EQ(LOAD(&j->frees), 1);
		ASSERT_EQ(LOAD(&j->dones), 1);
		ASSERT_NE(gvm_fence_get_status(j->finished), 0);
	}
	return NULL;
}

/*
 * Queues destroyed, concurrently, while jobs are waiting, running and waiting
 * for hw fences; some gates are signalled only after all queues are gone.
 */
TEST(destroy_queues_in_flight)
{
	struct world w = {
		.name = "destroy_queues_in_flight",
		.nr_queues = 6,
		.nr_submitters = 2,
		.nr_workers = 3,
		.nr_jobs = (uint32_t)gvm_test_scale(6000),
		.destroy_in_flight = true,
	};
	struct destroyer d[8];
	uint64_t ran = 0, cancelled = 0, dep_failed = 0;
	struct gvm_rng rng;

	if (w.nr_jobs < 30)
		w.nr_jobs = 30;
	world_start(&w);
	rng.s = w.seed ^ 0xdead;

	for (unsigned int q = 0; q < w.nr_queues; q++) {
		d[q] = (struct destroyer){ .w = &w, .q = q,
			.delay_ns = (int64_t)gvm_rng_below(&rng, 40000) * 1000 };
		ASSERT_OK(pthread_create(&d[q].thread, NULL, destroyer_main,
					 &d[q]));
	}
	for (unsigned int q = 0; q < w.nr_queues; q++)
		pthread_join(d[q].thread, NULL);

	for (uint32_t i = 0; i < w.nr_jobs; i++) {
		struct sjob *j = &w.jobs[i];
		int status = gvm_fence_get_status(j->finished);
		uint64_t gone = LOAD(&w.destroy_tick[j->queue]);
		int64_t ts;

		check_job_common(&w, j);
		/* Nothing of a queue runs after its destroy returned. */
		ASSERT_LT(LOAD(&j->free_tick), gone);
		ASSERT_LT(LOAD(&j->done_tick), gone);
		if (LOAD(&j->runs)) {
			ASSERT_LT(LOAD(&j->run_tick), gone);
			ran++;
			continue;
		}
		/* Not run: cancelled, or failed through a dependency. */
		if (status == -ECANCELED &&
		    first_dep_error(j, &ts) != -ECANCELED) {
			cancelled++;
		} else {
			ASSERT_TRUE(is_first_dep_error(j, status));
			dep_failed++;
		}
	}
	ASSERT_EQ(LOAD(&w.runs), ran);
	ASSERT_EQ(LOAD(&w.frees), w.nr_jobs);
	ASSERT_EQ(LOAD(&w.dones), w.nr_jobs);
	printf("destroy_queues_in_flight: %" PRIu64 " ran, %" PRIu64
	       " cancelled, %" PRIu64 " failed through dependencies\n",
	       ran, cancelled, dep_failed);
	world_finish(&w);
}
