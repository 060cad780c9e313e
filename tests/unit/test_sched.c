// SPDX-License-Identifier: MIT
/*
 * Unit tests of the job scheduler (<gvm/sched.h>): ordering, concurrency of
 * queues, dependencies and their errors, run() and hardware-fence errors,
 * dependency de-duplication, queue destruction, bad input.
 *
 * Test jobs (struct tjob) live in the test's own memory, so their counters
 * can be read after the scheduler gave them back; ops->free only counts.
 * "Not happened yet" checks sleep a little and look: they can only pass
 * wrongly, never fail wrongly.
 */
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <gvm/fence.h>
#include <gvm/sched.h>

#include "core/debug.h"
#include "core/list.h"
#include "core/sched_internal.h"
#include "core/sync.h"
#include "harness.h"

#define WAIT_NS (10ll * 1000 * 1000 * 1000)

static uint64_t tick;	/* global order counter (atomic) */

static uint64_t next_tick(void)
{
	return __atomic_add_fetch(&tick, 1, __ATOMIC_SEQ_CST);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* ---- a one-shot event with a timed wait ------------------------------------ */

struct event {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool set;
};

#define EVENT_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false }

static void event_set(struct event *e)
{
	pthread_mutex_lock(&e->m);
	e->set = true;
	pthread_cond_broadcast(&e->c);
	pthread_mutex_unlock(&e->m);
}

/* True if set within 10 s. */
static bool event_wait(struct event *e)
{
	struct timespec ts;
	bool set;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&e->m);
	while (!e->set)
		if (pthread_cond_timedwait(&e->c, &e->m, &ts))
			break;
	set = e->set;
	pthread_mutex_unlock(&e->m);
	return set;
}

static bool event_is_set(struct event *e)
{
	bool set;

	pthread_mutex_lock(&e->m);
	set = e->set;
	pthread_mutex_unlock(&e->m);
	return set;
}

/* ---- test jobs --------------------------------------------------------------- */

struct tjob {
	struct gvm_job base;
	int run_ret;			/* what run() returns */
	struct gvm_fence *hw;		/* run() hands out a reference to it */
	struct gvm_fence *must_be_done;	/* run() checks it has signalled */
	void (*hook)(struct tjob *);	/* called from run() */
	void *arg;
	uint32_t ran;			/* atomic */
	uint32_t freed;			/* atomic */
	uint32_t order_ok;		/* atomic: must_be_done held at run */
	uint64_t run_tick;		/* atomic */
	struct event freed_ev;
};

static void tjob_setup(struct tjob *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->freed_ev.m, NULL);
	pthread_cond_init(&t->freed_ev.c, NULL);
}

static int tjob_run(struct gvm_job *job, struct gvm_fence **hw)
{
	struct tjob *t = gvm_container_of(job, struct tjob, base);

	__atomic_store_n(&t->run_tick, next_tick(), __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&t->ran, 1, __ATOMIC_SEQ_CST);
	if (!t->must_be_done || gvm_fence_is_signaled(t->must_be_done))
		__atomic_store_n(&t->order_ok, 1, __ATOMIC_SEQ_CST);
	if (t->hook)
		t->hook(t);
	if (t->hw)
		*hw = gvm_fence_get(t->hw);
	return t->run_ret;
}

static void tjob_free(struct gvm_job *job)
{
	struct tjob *t = gvm_container_of(job, struct tjob, base);

	__atomic_add_fetch(&t->freed, 1, __ATOMIC_SEQ_CST);
	event_set(&t->freed_ev);
}

static const struct gvm_job_ops tjob_ops = {
	.run = tjob_run,
	.free = tjob_free,
};

static uint32_t ran(struct tjob *t)
{
	return __atomic_load_n(&t->ran, __ATOMIC_SEQ_CST);
}

static uint32_t freed(struct tjob *t)
{
	return __atomic_load_n(&t->freed, __ATOMIC_SEQ_CST);
}

/* Initialises, adds @n dependencies, arms and pushes; returns finished. */
static struct gvm_fence *submit(struct gvm_sched_queue *q, struct tjob *t,
				struct gvm_fence **deps, unsigned int n)
{
	struct gvm_fence *f;

	ASSERT_OK(gvm_job_init(&t->base, q, &tjob_ops));
	for (unsigned int i = 0; i < n; i++)
		ASSERT_OK(gvm_job_add_dependency(&t->base, deps[i]));
	gvm_job_arm(&t->base);
	f = gvm_fence_get(gvm_job_finished(&t->base));
	ASSERT_TRUE(f != NULL);
	gvm_job_push(&t->base);
	return f;
}

static void wait_done(struct gvm_fence *f)
{
	ASSERT_OK(gvm_fence_wait(f, WAIT_NS));
}

static struct gvm_fence *sw_fence(void)
{
	struct gvm_fence *f;

	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &f));
	return f;
}

/* ---- a thread that signals a fence later ----------------------------------- */

struct later {
	pthread_t thread;
	struct gvm_fence *fence;	/* reference held */
	int error;
	int delay_ms;
};

static void *later_main(void *arg)
{
	struct later *l = arg;

	sleep_ms(l->delay_ms);
	gvm_fence_signal_error(l->fence, l->error);
	gvm_fence_put(l->fence);
	return NULL;
}

static void signal_later(struct later *l, struct gvm_fence *f, int error,
			 int delay_ms)
{
	l->fence = gvm_fence_get(f);
	l->error = error;
	l->delay_ms = delay_ms;
	ASSERT_OK(pthread_create(&l->thread, NULL, later_main, l));
}

/* ---- fences that count their releases --------------------------------------- */

static uint32_t releases;

static void counted_release(struct gvm_fence *f)
{
	__atomic_add_fetch(&releases, 1, __ATOMIC_SEQ_CST);
	free(f);
}

static const struct gvm_fence_ops counted_ops = {
	.name = "counted",
	.release = counted_release,
};

static struct gvm_fence *counted_fence(uint64_t context, uint64_t seqno)
{
	struct gvm_fence *f = malloc(sizeof(*f));

	ASSERT_TRUE(f != NULL);
	gvm_fence_init(f, &counted_ops, context, seqno);
	return f;
}

static uint32_t nr_releases(void)
{
	return __atomic_load_n(&releases, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------------ */

TEST(single_job)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *f;
	struct tjob t;

	ASSERT_OK(gvm_sched_create("t", 2, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	tjob_setup(&t);
	f = submit(q, &t, NULL, 0);
	wait_done(f);
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	ASSERT_TRUE(event_wait(&t.freed_ev));
	ASSERT_EQ(ran(&t), 1);
	ASSERT_EQ(freed(&t), 1);
	ASSERT_TRUE(gvm_fence_timestamp(f) > 0);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(freed(&t), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(f);
}

TEST(finished_fences_share_context_and_order)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *f[3];
	struct tjob t[3];

	ASSERT_OK(gvm_sched_create(NULL, 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, NULL, &q));
	ASSERT_NE(gvm_sched_queue_context(q), 0);
	for (int i = 0; i < 3; i++) {
		tjob_setup(&t[i]);
		ASSERT_OK(gvm_job_init(&t[i].base, q, &tjob_ops));
		ASSERT_TRUE(gvm_job_finished(&t[i].base) == NULL);
		gvm_job_arm(&t[i].base);
		f[i] = gvm_fence_get(gvm_job_finished(&t[i].base));
		/* Only the scheduler signals them. */
		ASSERT_EQ(gvm_fence_signal(f[i]), -EPERM);
		ASSERT_TRUE(strcmp(gvm_fence_producer(f[i]), "sched") == 0);
		gvm_job_push(&t[i].base);
	}
	for (int i = 0; i < 3; i++)
		wait_done(f[i]);
	ASSERT_TRUE(gvm_fence_is_later(f[1], f[0]));
	ASSERT_TRUE(gvm_fence_is_later(f[2], f[1]));
	ASSERT_FALSE(gvm_fence_is_later(f[0], f[2]));
	ASSERT_LE(gvm_fence_timestamp(f[0]), gvm_fence_timestamp(f[1]));
	ASSERT_LE(gvm_fence_timestamp(f[1]), gvm_fence_timestamp(f[2]));
	gvm_sched_queue_destroy(q);
	ASSERT_OK(gvm_sched_destroy(s));
	for (int i = 0; i < 3; i++)
		gvm_fence_put(f[i]);
}

/* Job N+1 starts only after job N finished, hw fences included. */
static void order_hook(struct tjob *t)
{
	/* A little work so that a wrongly started successor would show. */
	if (t->arg)
		sleep_ms(1);
}

TEST(ordering_within_queue)
{
	enum { N = 64 };
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *f[N];
	struct later l[N];
	static struct tjob t[N];
	int nr_later = 0;

	ASSERT_OK(gvm_sched_create("t", 4, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	for (int i = 0; i < N; i++) {
		tjob_setup(&t[i]);
		t[i].must_be_done = i ? f[i - 1] : NULL;
		t[i].hook = order_hook;
		t[i].arg = (i % 5 == 0) ? &t[i] : NULL;
		if (i % 3 == 0) {
			/* Async completion a bit later. */
			t[i].hw = sw_fence();
			signal_later(&l[nr_later++], t[i].hw, 0, 2);
		}
		f[i] = submit(q, &t[i], NULL, 0);
	}
	wait_done(f[N - 1]);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(gvm_fence_get_status(f[i]), 1);
		ASSERT_EQ(ran(&t[i]), 1);
		ASSERT_EQ(__atomic_load_n(&t[i].order_ok, __ATOMIC_SEQ_CST), 1);
		if (i)
			ASSERT_LT(t[i - 1].run_tick, t[i].run_tick);
		if (t[i].hw)
			ASSERT_LE(gvm_fence_timestamp(t[i].hw),
				  gvm_fence_timestamp(f[i]));
	}
	gvm_sched_queue_destroy(q);
	for (int i = 0; i < N; i++)
		ASSERT_EQ(freed(&t[i]), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	for (int i = 0; i < nr_later; i++)
		pthread_join(l[i].thread, NULL);
	for (int i = 0; i < N; i++) {
		gvm_fence_put(t[i].hw);
		gvm_fence_put(f[i]);
	}
}

/* Two jobs that each wait for the other to have started. */
struct rendezvous {
	struct event started[2];
	uint32_t saw_other[2];
};

static struct rendezvous rv = {
	{ EVENT_INIT, EVENT_INIT },
	{ 0, 0 },
};

static void rendezvous_hook(struct tjob *t)
{
	int me = (int)(intptr_t)t->arg, other = !me;

	event_set(&rv.started[me]);
	if (event_wait(&rv.started[other]))
		__atomic_store_n(&rv.saw_other[me], 1, __ATOMIC_SEQ_CST);
}

TEST(queues_run_concurrently)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q[2];
	struct gvm_fence *f[2];
	struct tjob t[2];

	ASSERT_OK(gvm_sched_create("t", 2, &s));
	for (int i = 0; i < 2; i++) {
		ASSERT_OK(gvm_sched_queue_create(s, "q", &q[i]));
		tjob_setup(&t[i]);
		t[i].hook = rendezvous_hook;
		t[i].arg = (void *)(intptr_t)i;
	}
	for (int i = 0; i < 2; i++)
		f[i] = submit(q[i], &t[i], NULL, 0);
	for (int i = 0; i < 2; i++) {
		wait_done(f[i]);
		ASSERT_EQ(__atomic_load_n(&rv.saw_other[i], __ATOMIC_SEQ_CST), 1);
		gvm_sched_queue_destroy(q[i]);
		gvm_fence_put(f[i]);
	}
	ASSERT_OK(gvm_sched_destroy(s));
}

TEST(dependencies_across_queues)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q1, *q2, *q3;
	struct gvm_fence *gate, *fa, *fb, *fc, *fd;
	struct tjob a, b, c, d;

	ASSERT_OK(gvm_sched_create("t", 3, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q1", &q1));
	ASSERT_OK(gvm_sched_queue_create(s, "q2", &q2));
	ASSERT_OK(gvm_sched_queue_create(s, "q3", &q3));
	tjob_setup(&a);
	tjob_setup(&b);
	tjob_setup(&c);
	tjob_setup(&d);

	gate = sw_fence();
	fa = submit(q1, &a, &gate, 1);		/* q1: a waits for the gate */
	b.must_be_done = fa;
	fb = submit(q2, &b, &fa, 1);		/* q2: b waits for a */
	c.must_be_done = fb;
	fc = submit(q2, &c, NULL, 0);		/* q2: c behind b */
	fd = submit(q3, &d, NULL, 0);		/* q3: independent */

	wait_done(fd);	/* q3 progresses while the others wait */
	sleep_ms(20);
	ASSERT_EQ(ran(&a), 0);
	ASSERT_EQ(ran(&b), 0);
	ASSERT_EQ(ran(&c), 0);
	ASSERT_EQ(gvm_fence_get_status(fc), 0);

	ASSERT_OK(gvm_fence_signal(gate));
	wait_done(fc);
	ASSERT_EQ(gvm_fence_get_status(fa), 1);
	ASSERT_EQ(gvm_fence_get_status(fb), 1);
	ASSERT_EQ(gvm_fence_get_status(fc), 1);
	ASSERT_EQ(__atomic_load_n(&b.order_ok, __ATOMIC_SEQ_CST), 1);
	ASSERT_EQ(__atomic_load_n(&c.order_ok, __ATOMIC_SEQ_CST), 1);
	ASSERT_LT(a.run_tick, b.run_tick);
	ASSERT_LT(b.run_tick, c.run_tick);

	gvm_sched_queue_destroy(q1);
	gvm_sched_queue_destroy(q2);
	gvm_sched_queue_destroy(q3);
	ASSERT_EQ(freed(&a) + freed(&b) + freed(&c) + freed(&d), 4);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(gate);
	gvm_fence_put(fa);
	gvm_fence_put(fb);
	gvm_fence_put(fc);
	gvm_fence_put(fd);
}

TEST(dependency_error_propagates_and_skips_run)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q1, *q2;
	struct gvm_fence *gate, *fa, *fb, *fc;
	struct tjob a, b, c;

	ASSERT_OK(gvm_sched_create("t", 2, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q1", &q1));
	ASSERT_OK(gvm_sched_queue_create(s, "q2", &q2));
	tjob_setup(&a);
	tjob_setup(&b);
	tjob_setup(&c);
	gate = sw_fence();
	fa = submit(q1, &a, &gate, 1);
	fb = submit(q1, &b, NULL, 0);	/* same queue, no dependency */
	fc = submit(q2, &c, &fa, 1);	/* depends on the failing job */

	ASSERT_OK(gvm_fence_signal_error(gate, -EIO));
	wait_done(fa);
	wait_done(fb);
	wait_done(fc);
	ASSERT_EQ(gvm_fence_get_status(fa), -EIO);
	ASSERT_EQ(ran(&a), 0);
	ASSERT_EQ(gvm_fence_get_status(fb), 1);	/* later jobs run normally */
	ASSERT_EQ(ran(&b), 1);
	ASSERT_EQ(gvm_fence_get_status(fc), -EIO); /* transitively */
	ASSERT_EQ(ran(&c), 0);
	gvm_sched_queue_destroy(q1);
	gvm_sched_queue_destroy(q2);
	ASSERT_EQ(freed(&a), 1);
	ASSERT_EQ(freed(&b), 1);
	ASSERT_EQ(freed(&c), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(gate);
	gvm_fence_put(fa);
	gvm_fence_put(fb);
	gvm_fence_put(fc);
}

/* A dependency that has already failed when added still fails the job. */
TEST(dependency_already_failed)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *bad, *f;
	struct tjob t;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	ASSERT_OK(gvm_fence_create_signaled(-ENOLINK, &bad));
	tjob_setup(&t);
	f = submit(q, &t, &bad, 1);
	wait_done(f);
	ASSERT_EQ(gvm_fence_get_status(f), -ENOLINK);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(ran(&t), 0);
	ASSERT_EQ(freed(&t), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(bad);
	gvm_fence_put(f);
}

/*
 * Several failed dependencies: the error of the one that failed first in time
 * wins, whatever the order of adding; and the job completes only once all of
 * them have signalled.
 */
TEST(dependency_error_first_in_time_wins)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *x, *y, *z, *f;
	struct tjob t;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	x = sw_fence();
	y = sw_fence();
	z = sw_fence();
	tjob_setup(&t);
	f = submit(q, &t, (struct gvm_fence *[]){ x, y, z }, 3);
	ASSERT_OK(gvm_fence_signal_error(y, -ENOENT));
	sleep_ms(1);
	ASSERT_OK(gvm_fence_signal_error(x, -EIO));
	ASSERT_LT(gvm_fence_timestamp(y), gvm_fence_timestamp(x));
	sleep_ms(20);
	ASSERT_EQ(gvm_fence_get_status(f), 0);	/* z still pending */
	ASSERT_OK(gvm_fence_signal(z));
	wait_done(f);
	ASSERT_EQ(gvm_fence_get_status(f), -ENOENT);
	ASSERT_GE(gvm_fence_timestamp(f), gvm_fence_timestamp(z));
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(ran(&t), 0);
	ASSERT_EQ(freed(&t), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(x);
	gvm_fence_put(y);
	gvm_fence_put(z);
	gvm_fence_put(f);
}

TEST(run_error)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *f1, *f2;
	struct tjob t1, t2;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	tjob_setup(&t1);
	tjob_setup(&t2);
	t1.run_ret = -ENOMEM;
	f1 = submit(q, &t1, NULL, 0);
	f2 = submit(q, &t2, NULL, 0);
	wait_done(f2);
	ASSERT_EQ(gvm_fence_get_status(f1), -ENOMEM);
	ASSERT_EQ(gvm_fence_get_status(f2), 1);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(ran(&t1), 1);
	ASSERT_EQ(ran(&t2), 1);
	ASSERT_EQ(freed(&t1), 1);
	ASSERT_EQ(freed(&t2), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(f1);
	gvm_fence_put(f2);
}

static uint32_t enable_calls;

static bool hw_enable_signaling(struct gvm_fence *f)
{
	__atomic_add_fetch(&enable_calls, 1, __ATOMIC_SEQ_CST);
	return true;
}

static const struct gvm_fence_ops hw_ops = {
	.name = "test-hw",
	.enable_signaling = hw_enable_signaling,
};

TEST(async_hw_fence)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *f1, *f2, *f3, *hw1, *hw2;
	struct tjob t1, t2, t3;
	struct later l1, l2;

	ASSERT_OK(gvm_sched_create("t", 2, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	hw1 = malloc(sizeof(*hw1));
	ASSERT_TRUE(hw1 != NULL);
	gvm_fence_init(hw1, &hw_ops, gvm_fence_context_alloc(1), 1);
	hw2 = sw_fence();
	tjob_setup(&t1);
	tjob_setup(&t2);
	tjob_setup(&t3);
	t1.hw = hw1;
	t2.hw = hw2;
	f1 = submit(q, &t1, NULL, 0);
	t2.must_be_done = f1;
	f2 = submit(q, &t2, NULL, 0);
	t3.must_be_done = f2;
	f3 = submit(q, &t3, NULL, 0);

	/* t1 runs, then waits for its hw fence; nothing else moves. */
	while (!ran(&t1))
		sched_yield();
	sleep_ms(20);			/* would t2 start? (it must not) */
	ASSERT_EQ(ran(&t1), 1);
	ASSERT_EQ(ran(&t2), 0);
	ASSERT_EQ(gvm_fence_get_status(f1), 0);
	ASSERT_EQ(__atomic_load_n(&enable_calls, __ATOMIC_SEQ_CST), 1);

	signal_later(&l1, hw1, 0, 10);
	signal_later(&l2, hw2, -ETIMEDOUT, 30);	/* hw error */
	wait_done(f3);
	ASSERT_EQ(gvm_fence_get_status(f1), 1);
	ASSERT_EQ(gvm_fence_get_status(f2), -ETIMEDOUT);
	ASSERT_EQ(gvm_fence_get_status(f3), 1);
	ASSERT_LE(gvm_fence_timestamp(hw1), gvm_fence_timestamp(f1));
	ASSERT_LE(gvm_fence_timestamp(hw2), gvm_fence_timestamp(f2));
	ASSERT_EQ(__atomic_load_n(&t2.order_ok, __ATOMIC_SEQ_CST), 1);
	ASSERT_EQ(__atomic_load_n(&t3.order_ok, __ATOMIC_SEQ_CST), 1);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(freed(&t1) + freed(&t2) + freed(&t3), 3);
	ASSERT_OK(gvm_sched_destroy(s));
	pthread_join(l1.thread, NULL);
	pthread_join(l2.thread, NULL);
	gvm_fence_put(hw1);
	gvm_fence_put(hw2);
	gvm_fence_put(f1);
	gvm_fence_put(f2);
	gvm_fence_put(f3);
}

/*
 * signal_from_hw: the finished fence signals in the thread that signals
 * the hw fence, with its error, before the call returns; the next job of
 * the queue still runs only after a worker completed this one.
 */
static const struct gvm_job_ops tjob_hw_ops = {
	.run = tjob_run,
	.free = tjob_free,
	.signal_from_hw = true,
};

static bool has_callback(struct gvm_fence *f)
{
	bool linked;

	gvm__mutex_lock(&f->lock);
	linked = !gvm_list_empty(&f->cb_list);
	gvm__mutex_unlock(&f->lock);
	return linked;
}

TEST(finished_signals_from_the_hw_fence_signaller)
{
	struct gvm_fence *f1, *f2, *hw;
	struct gvm_sched_queue *q;
	struct gvm_sched *s;
	struct tjob t1, t2;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	hw = sw_fence();
	tjob_setup(&t1);
	tjob_setup(&t2);
	t1.hw = hw;
	ASSERT_OK(gvm_job_init(&t1.base, q, &tjob_hw_ops));
	gvm_job_arm(&t1.base);
	f1 = gvm_fence_get(gvm_job_finished(&t1.base));
	gvm_job_push(&t1.base);
	t2.must_be_done = f1;
	f2 = submit(q, &t2, NULL, 0);

	/* t1 ran and its worker waits on hw through the callback */
	while (!has_callback(hw))
		sched_yield();
	ASSERT_EQ(gvm_fence_get_status(f1), 0);
	ASSERT_OK(gvm_fence_signal_error(hw, -EIO));
	ASSERT_EQ(gvm_fence_get_status(f1), -EIO);	/* already */
	wait_done(f2);
	ASSERT_EQ(gvm_fence_get_status(f2), 1);
	ASSERT_EQ(__atomic_load_n(&t2.order_ok, __ATOMIC_SEQ_CST), 1);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(freed(&t1) + freed(&t2), 2);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(hw);
	gvm_fence_put(f1);
	gvm_fence_put(f2);
}

/*
 * Direct submission: a job pushed with gvm_job_push_deferred() runs, and
 * (no hw fence) completes, in gvm_sched_queue_run() on the calling thread
 * when no worker is at the queue; one waiting for a dependency is left to
 * the dependency's callback and a worker.
 */
static void record_thread_hook(struct tjob *t)
{
	*(pthread_t *)t->arg = pthread_self();
}

TEST(queue_run_starts_a_deferred_push_on_the_calling_thread)
{
	struct gvm_fence *f1, *f2, *dep;
	struct gvm_sched_queue *q;
	struct gvm_sched *s;
	pthread_t ran_on;
	struct tjob t1, t2;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	tjob_setup(&t1);
	t1.hook = record_thread_hook;
	t1.arg = &ran_on;
	ASSERT_OK(gvm_job_init(&t1.base, q, &tjob_ops));
	gvm_job_arm(&t1.base);
	f1 = gvm_fence_get(gvm_job_finished(&t1.base));
	gvm_job_push_deferred(&t1.base);
	gvm_sched_queue_run(q);
	ASSERT_EQ(ran(&t1), 1);
	ASSERT_TRUE(pthread_equal(ran_on, pthread_self()));
	ASSERT_EQ(gvm_fence_get_status(f1), 1);
	ASSERT_EQ(freed(&t1), 1);

	/* Waiting for a dependency: not run here; its signal starts it. */
	dep = sw_fence();
	tjob_setup(&t2);
	ASSERT_OK(gvm_job_init(&t2.base, q, &tjob_ops));
	ASSERT_OK(gvm_job_add_dependency(&t2.base, dep));
	gvm_job_arm(&t2.base);
	f2 = gvm_fence_get(gvm_job_finished(&t2.base));
	gvm_job_push_deferred(&t2.base);
	gvm_sched_queue_run(q);
	ASSERT_EQ(ran(&t2), 0);
	ASSERT_OK(gvm_fence_signal(dep));
	wait_done(f2);
	ASSERT_EQ(ran(&t2), 1);
	gvm_sched_queue_destroy(q);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(dep);
	gvm_fence_put(f1);
	gvm_fence_put(f2);
}

/* A hw fence that is already signalled when run() returns it. */
TEST(hw_fence_already_signalled)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *f;
	struct tjob t;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	tjob_setup(&t);
	ASSERT_OK(gvm_fence_create_signaled(-EREMOTEIO, &t.hw));
	f = submit(q, &t, NULL, 0);
	wait_done(f);
	ASSERT_EQ(gvm_fence_get_status(f), -EREMOTEIO);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(freed(&t), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(t.hw);
	gvm_fence_put(f);
}

/*
 * One fence per context is kept, the later one; fences signalled without
 * error are not kept at all.  Shown with fences that count their releases,
 * and by signalling only the kept fence of a context.
 */
TEST(dependency_dedup_per_context)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *a1, *a2, *b1, *b2, *e1, *e2, *g1, *g2, *ok, *f;
	uint64_t ca = gvm_fence_context_alloc(4), cb = ca + 1, ce = ca + 2;
	uint64_t cg = ca + 3;
	struct tjob t;
	uint32_t base;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	a1 = counted_fence(ca, 1);
	a2 = counted_fence(ca, 2);
	b1 = counted_fence(cb, 1);
	b2 = counted_fence(cb, 2);
	e1 = counted_fence(ce, 1);
	e2 = counted_fence(ce, 2);
	g1 = counted_fence(cg, 1);
	g2 = counted_fence(cg, 2);
	ok = counted_fence(gvm_fence_context_alloc(1), 1);
	ASSERT_OK(gvm_fence_signal(ok));
	ASSERT_OK(gvm_fence_signal(g2));

	tjob_setup(&t);
	ASSERT_OK(gvm_job_init(&t.base, q, &tjob_ops));
	ASSERT_OK(gvm_job_add_dependency(&t.base, a2));
	ASSERT_OK(gvm_job_add_dependency(&t.base, a1));	/* older: ignored */
	ASSERT_OK(gvm_job_add_dependency(&t.base, a2));	/* same: ignored */
	ASSERT_OK(gvm_job_add_dependency(&t.base, b1));
	ASSERT_OK(gvm_job_add_dependency(&t.base, b2));	/* replaces b1 */
	ASSERT_OK(gvm_job_add_dependency(&t.base, ok));	/* done: dropped */
	ASSERT_OK(gvm_job_add_dependency(&t.base, e1));
	ASSERT_OK(gvm_job_add_dependency(&t.base, e2));	/* replaces e1 */
	ASSERT_OK(gvm_job_add_dependency(&t.base, g1));
	ASSERT_OK(gvm_job_add_dependency(&t.base, g2));	/* done: replaces g1 */

	/* The job holds no reference on a1, b1, g1 or ok any more. */
	base = nr_releases();
	gvm_fence_put(a1);
	gvm_fence_put(b1);
	gvm_fence_put(g1);	/* never signalled, and not waited for */
	gvm_fence_put(ok);
	ASSERT_EQ(nr_releases(), base + 4);

	gvm_job_arm(&t.base);
	f = gvm_fence_get(gvm_job_finished(&t.base));
	gvm_job_push(&t.base);

	/* e1 fails, but e2 was kept in its place: no effect. */
	ASSERT_OK(gvm_fence_signal_error(e1, -EIO));
	gvm_fence_put(e1);
	ASSERT_EQ(nr_releases(), base + 5);
	ASSERT_OK(gvm_fence_signal(a2));
	ASSERT_OK(gvm_fence_signal(b2));
	sleep_ms(20);
	ASSERT_EQ(ran(&t), 0);	/* e2 still pending */
	ASSERT_OK(gvm_fence_signal(e2));
	wait_done(f);
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(ran(&t), 1);
	ASSERT_EQ(freed(&t), 1);
	/* The job dropped its references when it was done. */
	gvm_fence_put(a2);
	gvm_fence_put(b2);
	gvm_fence_put(e2);
	gvm_fence_put(g2);
	ASSERT_EQ(nr_releases(), base + 9);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(f);
}

/* An abandoned job drops its dependencies and is not given to free(). */
TEST(job_fini_abandons)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *d;
	struct tjob t;
	uint32_t base;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	d = counted_fence(gvm_fence_context_alloc(1), 1);
	tjob_setup(&t);
	ASSERT_OK(gvm_job_init(&t.base, q, &tjob_ops));
	ASSERT_OK(gvm_job_add_dependency(&t.base, d));
	gvm_job_fini(&t.base);
	base = nr_releases();
	gvm_fence_put(d);
	ASSERT_EQ(nr_releases(), base + 1);
	gvm_job_fini(NULL);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(ran(&t), 0);
	ASSERT_EQ(freed(&t), 0);
	ASSERT_OK(gvm_sched_destroy(s));
}

/* ---- queue destruction ------------------------------------------------------ */

struct blocker {
	struct event started;
	struct event release;
};

static void block_hook(struct tjob *t)
{
	struct blocker *b = t->arg;

	event_set(&b->started);
	event_wait(&b->release);
}

struct destroyer {
	pthread_t thread;
	struct gvm_sched_queue *q;
	struct event done;
};

static void *destroyer_main(void *arg)
{
	struct destroyer *d = arg;

	gvm_sched_queue_destroy(d->q);
	event_set(&d->done);
	return NULL;
}

static void destroy_async(struct destroyer *d, struct gvm_sched_queue *q)
{
	d->q = q;
	pthread_mutex_init(&d->done.m, NULL);
	pthread_cond_init(&d->done.c, NULL);
	d->done.set = false;
	ASSERT_OK(pthread_create(&d->thread, NULL, destroyer_main, d));
}

TEST(queue_destroy_cancels_pending_and_waits_for_running)
{
	enum { N = 8 };
	struct blocker blk = { EVENT_INIT, EVENT_INIT };
	struct gvm_sched *s;
	struct gvm_sched_queue *q, *q2;
	struct gvm_fence *f[N], *never, *f2;
	struct tjob t[N], t2;
	struct destroyer d;

	ASSERT_OK(gvm_sched_create("t", 2, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	ASSERT_OK(gvm_sched_queue_create(s, "q2", &q2));
	never = sw_fence();
	for (int i = 0; i < N; i++)
		tjob_setup(&t[i]);
	t[0].hook = block_hook;
	t[0].arg = &blk;
	f[0] = submit(q, &t[0], NULL, 0);
	for (int i = 1; i < N; i++)	/* some wait for a fence, some not */
		f[i] = submit(q, &t[i], (i & 1) ? &never : NULL, (i & 1));
	/* A job on another queue that depends on a cancelled one. */
	tjob_setup(&t2);
	f2 = submit(q2, &t2, &f[N - 1], 1);

	ASSERT_TRUE(event_wait(&blk.started));
	destroy_async(&d, q);
	while (!gvm__sched_queue_state(q).closing)
		sched_yield();
	ASSERT_FALSE(event_is_set(&d.done));	/* t[0] still running */
	event_set(&blk.release);
	ASSERT_TRUE(event_wait(&d.done));
	pthread_join(d.thread, NULL);

	/* Everything of q is done, and nothing runs any more. */
	ASSERT_EQ(gvm_fence_get_status(f[0]), 1);
	ASSERT_EQ(ran(&t[0]), 1);
	ASSERT_EQ(freed(&t[0]), 1);
	for (int i = 1; i < N; i++) {
		ASSERT_EQ(gvm_fence_get_status(f[i]), -ECANCELED);
		ASSERT_EQ(ran(&t[i]), 0);
		ASSERT_EQ(freed(&t[i]), 1);
		ASSERT_LE(gvm_fence_timestamp(f[i - 1]),
			  gvm_fence_timestamp(f[i]));
	}
	/* The cancelled jobs' callbacks on `never` are gone. */
	ASSERT_TRUE(gvm_list_empty(&never->cb_list));
	ASSERT_OK(gvm_fence_signal(never));

	wait_done(f2);
	ASSERT_EQ(gvm_fence_get_status(f2), -ECANCELED);
	gvm_sched_queue_destroy(q2);
	ASSERT_EQ(ran(&t2), 0);
	ASSERT_EQ(freed(&t2), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	for (int i = 0; i < N; i++)
		gvm_fence_put(f[i]);
	gvm_fence_put(f2);
	gvm_fence_put(never);
}

TEST(queue_destroy_waits_for_hw_fence)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *f1, *f2, *hw;
	struct tjob t1, t2;
	struct destroyer d;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	hw = sw_fence();
	tjob_setup(&t1);
	tjob_setup(&t2);
	t1.hw = hw;
	f1 = submit(q, &t1, NULL, 0);
	f2 = submit(q, &t2, NULL, 0);
	while (!ran(&t1))		/* t1 waits for hw now */
		sched_yield();
	destroy_async(&d, q);
	while (!gvm__sched_queue_state(q).closing)
		sched_yield();
	ASSERT_FALSE(event_is_set(&d.done));
	ASSERT_EQ(ran(&t1), 1);
	ASSERT_OK(gvm_fence_signal_error(hw, -EIO));
	ASSERT_TRUE(event_wait(&d.done));
	pthread_join(d.thread, NULL);
	ASSERT_EQ(gvm_fence_get_status(f1), -EIO);
	ASSERT_EQ(gvm_fence_get_status(f2), -ECANCELED);
	ASSERT_EQ(ran(&t2), 0);
	ASSERT_EQ(freed(&t1), 1);
	ASSERT_EQ(freed(&t2), 1);
	ASSERT_TRUE(gvm_list_empty(&hw->cb_list));
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(hw);
	gvm_fence_put(f1);
	gvm_fence_put(f2);
}

/* ---- PARKED (sched.c): a lone signal_from_hw job's completion waits ---- */

/* t, with the signal_from_hw ops, pushed; returns once it waits for hw. */
/* Pushes @t, a signal_from_hw job whose run() hands out @hw; finished. */
static struct gvm_fence *push_hw(struct gvm_sched_queue *q, struct tjob *t,
				 struct gvm_fence *hw)
{
	struct gvm_fence *f;

	tjob_setup(t);
	t->hw = hw;
	ASSERT_OK(gvm_job_init(&t->base, q, &tjob_hw_ops));
	gvm_job_arm(&t->base);
	f = gvm_fence_get(gvm_job_finished(&t->base));
	gvm_job_push(&t->base);
	return f;
}

/* push_hw, then waits until the job waits for @hw (its callback). */
static struct gvm_fence *submit_hw(struct gvm_sched_queue *q, struct tjob *t,
				   struct gvm_fence *hw)
{
	struct gvm_fence *f = push_hw(q, t, hw);

	while (!has_callback(hw))
		sched_yield();
	return f;
}

/*
 * The hw fence of a job with nothing behind it signals: its finished
 * fence is signalled at once, nobody is woken to complete it (the queue
 * is PARKED, so it is on no ready list and no worker can take it), and
 * the next push completes it before its own job runs.
 */
TEST(a_lone_hw_job_is_completed_by_the_next_push)
{
	struct gvm_fence *f1, *f2, *hw = sw_fence();
	struct gvm_sched_queue *q;
	struct gvm_sched *s;
	struct tjob t1, t2;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	f1 = submit_hw(q, &t1, hw);
	ASSERT_FALSE(gvm__sched_queue_state(q).parked);
	ASSERT_OK(gvm_fence_signal(hw));
	ASSERT_EQ(gvm_fence_get_status(f1), 1);
	ASSERT_TRUE(gvm__sched_queue_state(q).parked);
	ASSERT_EQ(freed(&t1), 0);
	tjob_setup(&t2);
	t2.must_be_done = f1;
	f2 = submit(q, &t2, NULL, 0);
	wait_done(f2);
	ASSERT_EQ(freed(&t1), 1);
	ASSERT_EQ(__atomic_load_n(&t2.order_ok, __ATOMIC_SEQ_CST), 1);
	ASSERT_FALSE(gvm__sched_queue_state(q).parked);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(freed(&t2), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(f1);
	gvm_fence_put(f2);
	gvm_fence_put(hw);
}

/*
 * The hw fence signals as the worker adds its callback (here from its
 * enable_signaling, so the callback runs inside gvm_fence_add_callback):
 * the callback parks the queue, then the worker sees the fence signalled
 * and completes the job itself.  An empty queue is not left parked.
 */
static bool signal_on_enable(struct gvm_fence *f)
{
	gvm_fence_signal(f);
	return true;
}

static const struct gvm_fence_ops self_signalling_ops = {
	.name = "test-hw-self",
	.enable_signaling = signal_on_enable,
};

TEST(a_hw_job_the_worker_completes_leaves_nothing_parked)
{
	struct gvm_sched_queue *q;
	struct gvm_fence *f1, *hw;
	struct gvm_sched *s;
	struct tjob t1;

	hw = malloc(sizeof(*hw));
	ASSERT_TRUE(hw != NULL);
	gvm_fence_init(hw, &self_signalling_ops, gvm_fence_context_alloc(1), 1);
	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	f1 = push_hw(q, &t1, hw);
	ASSERT_TRUE(event_wait(&t1.freed_ev));	/* the worker completed it */
	while (!gvm__sched_queue_state(q).waits)	/* and let it go */
		sched_yield();
	ASSERT_FALSE(gvm__sched_queue_state(q).parked);
	gvm_sched_queue_destroy(q);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(f1);
	gvm_fence_put(hw);
}

/* A parked job is completed by the queue's destruction. */
TEST(a_parked_hw_job_is_completed_by_queue_destroy)
{
	struct gvm_fence *f1, *hw = sw_fence();
	struct gvm_sched_queue *q;
	struct gvm_sched *s;
	struct tjob t1;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	f1 = submit_hw(q, &t1, hw);
	ASSERT_OK(gvm_fence_signal_error(hw, -EIO));
	ASSERT_TRUE(gvm__sched_queue_state(q).parked);
	gvm_sched_queue_destroy(q);
	ASSERT_EQ(freed(&t1), 1);
	ASSERT_EQ(gvm_fence_get_status(f1), -EIO);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(f1);
	gvm_fence_put(hw);
}

/*
 * The hw fence signals while the queue's destruction waits for it: the
 * callback must kick the queue rather than park it, or the destruction
 * would wait forever.
 */
TEST(a_hw_fence_signalled_during_queue_destroy_is_not_parked)
{
	struct gvm_fence *f1, *hw = sw_fence();
	struct gvm_sched_queue *q;
	struct gvm_sched *s;
	struct destroyer d;
	struct tjob t1;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	f1 = submit_hw(q, &t1, hw);
	destroy_async(&d, q);
	while (!gvm__sched_queue_state(q).closing)	/* kicked ... */
		sched_yield();
	while (!gvm__sched_queue_state(q).waits)	/* ... and looked at */
		sched_yield();
	ASSERT_FALSE(event_is_set(&d.done));
	ASSERT_OK(gvm_fence_signal(hw));
	ASSERT_TRUE(event_wait(&d.done));
	pthread_join(d.thread, NULL);
	ASSERT_EQ(freed(&t1), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(f1);
	gvm_fence_put(hw);
}

/*
 * A push racing with the hw fence of the job ahead: whichever comes
 * first, the pushed job runs (the callback sees it, or the push sees the
 * parked head).  Every interleaving must pass; the loop makes many.
 */
struct hw_signaller {
	pthread_t thread;
	struct gvm_fence *hw;
	uint32_t go;			/* atomic */
};

static void *hw_signaller_main(void *arg)
{
	struct hw_signaller *h = arg;

	while (!__atomic_load_n(&h->go, __ATOMIC_ACQUIRE))
		;
	gvm_fence_signal(h->hw);
	return NULL;
}

TEST(a_push_racing_with_the_hw_fence_ahead_is_never_lost)
{
	struct gvm_sched_queue *q;
	struct gvm_sched *s;

	ASSERT_OK(gvm_sched_create("t", 2, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	for (int i = 0; i < 500; i++) {
		struct hw_signaller h = { .hw = sw_fence() };
		struct gvm_fence *f1, *f2;
		struct tjob t1, t2;

		f1 = submit_hw(q, &t1, h.hw);
		ASSERT_OK(pthread_create(&h.thread, NULL, hw_signaller_main,
					 &h));
		tjob_setup(&t2);
		ASSERT_OK(gvm_job_init(&t2.base, q, &tjob_ops));
		gvm_job_arm(&t2.base);
		f2 = gvm_fence_get(gvm_job_finished(&t2.base));
		__atomic_store_n(&h.go, 1, __ATOMIC_RELEASE);
		gvm_job_push(&t2.base);
		wait_done(f2);
		ASSERT_TRUE(event_wait(&t2.freed_ev));	/* t2 is on our stack */
		pthread_join(h.thread, NULL);
		ASSERT_EQ(freed(&t1), 1);
		ASSERT_EQ(ran(&t2), 1);
		gvm_fence_put(f1);
		gvm_fence_put(f2);
		gvm_fence_put(h.hw);
	}
	gvm_sched_queue_destroy(q);
	ASSERT_OK(gvm_sched_destroy(s));
}

/*
 * Two queues kicked while a worker spins (Hand-offs, sched.c): the spinner
 * takes the first, and the other worker, asleep, must be woken for the
 * second.  Here the first queue's job waits for the second's: had nobody
 * woken the sleeper, it would wait until its 10 s ran out.  The spin hook
 * holds the spinner until both kicks are made.
 */
static struct event spinning = EVENT_INIT, kicked = EVENT_INIT;
static struct event b_ran = EVENT_INIT;
static uint32_t spins;	/* atomic */
static bool a_saw_b;

static void hold_first_spin(struct gvm_sched *s)
{
	(void)s;
	if (__atomic_fetch_add(&spins, 1, __ATOMIC_SEQ_CST))
		return;
	event_set(&spinning);
	event_wait(&kicked);
}

static void wait_for_b(struct tjob *t)
{
	(void)t;
	a_saw_b = event_wait(&b_ran);
}

static void set_b_ran(struct tjob *t)
{
	(void)t;
	event_set(&b_ran);
}

TEST(kicks_during_a_spin_wake_a_sleeping_worker)
{
	struct gvm_sched_queue *z, *a, *b;
	struct gvm_fence *fz, *fa, *fb;
	struct tjob jz, ja, jb;
	struct gvm_sched *s;

	gvm__sched_spin_hook = hold_first_spin;
	ASSERT_OK(gvm_sched_create("t", 2, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "z", &z));
	ASSERT_OK(gvm_sched_queue_create(s, "a", &a));
	ASSERT_OK(gvm_sched_queue_create(s, "b", &b));
	tjob_setup(&jz);
	tjob_setup(&ja);
	tjob_setup(&jb);
	ja.hook = wait_for_b;
	jb.hook = set_b_ran;
	/* One worker runs z's job and then spins (held); the other never
	   worked, so it sleeps. */
	fz = submit(z, &jz, NULL, 0);
	ASSERT_TRUE(event_wait(&spinning));
	fa = submit(a, &ja, NULL, 0);	/* both kicks see the spinner */
	fb = submit(b, &jb, NULL, 0);
	event_set(&kicked);
	wait_done(fa);
	wait_done(fb);
	ASSERT_TRUE(a_saw_b);
	wait_done(fz);
	gvm_fence_put(fz);
	gvm_fence_put(fa);
	gvm_fence_put(fb);
	gvm_sched_queue_destroy(z);
	gvm_sched_queue_destroy(a);
	gvm_sched_queue_destroy(b);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm__sched_spin_hook = NULL;
}

TEST(queue_destroy_empty_and_idle)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q[16];

	ASSERT_OK(gvm_sched_create("t", 3, &s));
	for (int i = 0; i < 16; i++)
		ASSERT_OK(gvm_sched_queue_create(s, "q", &q[i]));
	for (int i = 15; i >= 0; i--)
		gvm_sched_queue_destroy(q[i]);
	gvm_sched_queue_destroy(NULL);
	ASSERT_OK(gvm_sched_destroy(s));
}

TEST(sched_destroy_busy)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;

	ASSERT_OK(gvm_sched_create("t", 2, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	ASSERT_EQ(gvm_sched_destroy(s), -EBUSY);
	gvm_sched_queue_destroy(q);
	ASSERT_OK(gvm_sched_destroy(s));
}

/* ---- jobs pushing jobs; many queues on one worker ---------------------------- */

static struct gvm_sched_queue *chain_q;
static struct tjob chain_child;
static struct gvm_fence *chain_child_f;

static void chain_hook(struct tjob *t)
{
	tjob_setup(&chain_child);
	chain_child_f = submit(chain_q, &chain_child, NULL, 0);
}

TEST(push_from_run)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_fence *f;
	struct tjob t;

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	ASSERT_OK(gvm_sched_queue_create(s, "chain", &chain_q));
	tjob_setup(&t);
	t.hook = chain_hook;
	f = submit(q, &t, NULL, 0);
	wait_done(f);
	wait_done(chain_child_f);	/* published before f signalled */
	ASSERT_EQ(gvm_fence_get_status(chain_child_f), 1);
	gvm_sched_queue_destroy(q);
	gvm_sched_queue_destroy(chain_q);
	ASSERT_EQ(freed(&chain_child), 1);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(f);
	gvm_fence_put(chain_child_f);
}

TEST(many_queues_one_worker)
{
	enum { Q = 8, N = 100 };
	static struct tjob t[Q][N];
	static struct gvm_fence *f[Q][N];
	struct gvm_sched *s;
	struct gvm_sched_queue *q[Q];

	ASSERT_OK(gvm_sched_create("t", 1, &s));
	for (int i = 0; i < Q; i++)
		ASSERT_OK(gvm_sched_queue_create(s, "q", &q[i]));
	for (int j = 0; j < N; j++) {
		for (int i = 0; i < Q; i++) {
			tjob_setup(&t[i][j]);
			t[i][j].must_be_done = j ? f[i][j - 1] : NULL;
			/* and on the previous queue's job of this round */
			f[i][j] = submit(q[i], &t[i][j], i ? &f[i - 1][j] : NULL,
					 i ? 1 : 0);
		}
	}
	for (int i = 0; i < Q; i++)
		wait_done(f[i][N - 1]);
	for (int i = 0; i < Q; i++) {
		gvm_sched_queue_destroy(q[i]);
		for (int j = 0; j < N; j++) {
			ASSERT_EQ(gvm_fence_get_status(f[i][j]), 1);
			ASSERT_EQ(t[i][j].order_ok, 1);
			ASSERT_EQ(freed(&t[i][j]), 1);
			if (i)
				ASSERT_LT(t[i - 1][j].run_tick,
					  t[i][j].run_tick);
			gvm_fence_put(f[i][j]);
		}
	}
	ASSERT_OK(gvm_sched_destroy(s));
}

/* ---- bad input ------------------------------------------------------------------ */

static int noop_run(struct gvm_job *job, struct gvm_fence **hw)
{
	return 0;
}

static void noop_free(struct gvm_job *job)
{
}

static const struct gvm_job_ops noop_ops = {
	.run = noop_run,
	.free = noop_free,
};

TEST(bad_input)
{
	static const struct gvm_job_ops no_run = { .free = noop_free };
	static const struct gvm_job_ops no_free = { .run = noop_run };
	struct gvm_sched *s = (void *)1;
	struct gvm_sched_queue *q = (void *)1;
	struct gvm_job job, pattern;
	struct gvm_fence *dep;

	ASSERT_EQ(gvm_sched_create("t", 0, &s), -EINVAL);
	ASSERT_EQ(gvm_sched_create("t", 1025, &s), -EINVAL);
	ASSERT_EQ(gvm_sched_create("t", 1, NULL), -EINVAL);
	ASSERT_TRUE(s == (void *)1);
	ASSERT_EQ(gvm_sched_destroy(NULL), -EINVAL);

	ASSERT_OK(gvm_sched_create("a-rather-long-scheduler-name", 1, &s));
	ASSERT_EQ(gvm_sched_queue_create(NULL, "q", &q), -EINVAL);
	ASSERT_EQ(gvm_sched_queue_create(s, "q", NULL), -EINVAL);
	ASSERT_TRUE(q == (void *)1);
	ASSERT_OK(gvm_sched_queue_create(s, "q", &q));
	ASSERT_EQ(gvm_sched_queue_context(NULL), 0);

	memset(&pattern, 0xa5, sizeof(pattern));
	job = pattern;
	ASSERT_EQ(gvm_job_init(NULL, q, &tjob_ops), -EINVAL);
	ASSERT_EQ(gvm_job_init(&job, NULL, &tjob_ops), -EINVAL);
	ASSERT_EQ(gvm_job_init(&job, q, NULL), -EINVAL);
	ASSERT_EQ(gvm_job_init(&job, q, &no_run), -EINVAL);
	ASSERT_EQ(gvm_job_init(&job, q, &no_free), -EINVAL);
	ASSERT_TRUE(memcmp(&job, &pattern, sizeof(job)) == 0);

	dep = sw_fence();
	ASSERT_OK(gvm_job_init(&job, q, &noop_ops));
	ASSERT_TRUE(gvm_job_finished(&job) == NULL);
	ASSERT_TRUE(gvm_job_finished(NULL) == NULL);
	ASSERT_EQ(gvm_job_add_dependency(NULL, dep), -EINVAL);
	ASSERT_EQ(gvm_job_add_dependency(&job, NULL), -EINVAL);
	gvm_job_arm(&job);
	/* Too late once armed. */
	ASSERT_EQ(gvm_job_add_dependency(&job, dep), -EINVAL);
	gvm_job_push(&job);	/* done, one way or the other, by destroy */

	gvm_sched_queue_destroy(q);
	ASSERT_OK(gvm_sched_destroy(s));
	gvm_fence_put(dep);
}

static void arm_twice(void)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_job a, b;

	gvm_sched_create("t", 1, &s);
	gvm_sched_queue_create(s, "q", &q);
	gvm_job_init(&a, q, &noop_ops);
	gvm_job_init(&b, q, &noop_ops);
	gvm_job_arm(&a);
	gvm_job_arm(&b);
}

/* Arm A, arm B without pushing A: the pairing is asserted (debug builds). */
TEST(arm_push_pairs_asserted)
{
	if (GVM_DEBUG < 1)
		return;
	ASSERT_DEATH(arm_twice(), "assertion failed");
}

static void destroy_with_unpushed(void)
{
	struct gvm_sched *s;
	struct gvm_sched_queue *q;
	struct gvm_job a;

	gvm_sched_create("t", 1, &s);
	gvm_sched_queue_create(s, "q", &q);
	gvm_job_init(&a, q, &noop_ops);
	gvm_sched_queue_destroy(q);
}

/* Destroying a queue with an unpushed job is asserted (debug builds). */
TEST(destroy_with_unpushed_job_asserted)
{
	if (GVM_DEBUG < 1)
		return;
	ASSERT_DEATH(destroy_with_unpushed(), "assertion failed");
}
