// SPDX-License-Identifier: MIT
/*
 * Unit tests for fences, fence arrays and timelines (<gvm/fence.h>).
 *
 * Each TEST runs in its own process.  Tests that involve other threads only
 * ever assert lower bounds on time (a wait took at least its timeout) and
 * use generous timeouts (10 s) where a hang would otherwise be the symptom.
 *
 * "struct test_fence" is a producer built on gvm_fence_init() that counts
 * the calls gvm makes into its ops, so the on-demand signalling rules and
 * reference counting can be checked exactly.  Its release only counts: the
 * fences live in the test's stack frame or in static storage.
 */
#include <pthread.h>
#include <stddef.h>
#include <signal.h>
#include <time.h>

#include <gvm/fence.h>

#include "harness.h"

#define LONG_NS (10ll * 1000 * 1000 * 1000) /* "forever", but catches hangs */
#define MS_NS (1000ll * 1000)


#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define ASSERT_STR_PRODUCER(f, name) \
	ASSERT_TRUE(strcmp(gvm_fence_producer(f), (name)) == 0)


static unsigned int load(const unsigned int *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void inc(unsigned int *p)
{
	__atomic_fetch_add(p, 1u, __ATOMIC_ACQ_REL);
}

static struct gvm_fence *new_fence(void)
{
	struct gvm_fence *f;

	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &f));
	return f;
}

/* White box: no callback left linked (e.g. by a waiter that gave up). */
static bool no_callbacks(const struct gvm_fence *f)
{
	return f->cb_list.next == &f->cb_list;
}

/* ---- a counting callback ------------------------------------------------ */

struct count_cb {
	struct gvm_fence_cb cb;
	unsigned int runs;	/* atomic */
	int status_seen;	/* gvm_fence_get_status() inside the callback */
	pthread_t thread;	/* who ran it */
};

static void count_cb_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct count_cb *c = gvm_container_of(cb, struct count_cb, cb);

	c->status_seen = gvm_fence_get_status(f);
	c->thread = pthread_self();
	inc(&c->runs);
}

/* ---- a producer that counts what gvm asks of it ---------------------- */

struct test_fence {
	struct gvm_fence base;
	unsigned int enable_calls;	/* atomic */
	unsigned int signaled_calls;	/* atomic */
	unsigned int release_calls;	/* atomic */
	bool enable_ret;		/* what enable_signaling returns */
	bool done;			/* atomic: what ops->signaled reports */
	int64_t enable_delay_ns;	/* widens the enable window */
};

static struct test_fence *to_tf(struct gvm_fence *f)
{
	return gvm_container_of(f, struct test_fence, base);
}

static bool tf_enable(struct gvm_fence *f)
{
	struct test_fence *t = to_tf(f);

	inc(&t->enable_calls);
	if (t->enable_delay_ns)
		gvm_test_sleep_ns(t->enable_delay_ns);
	return t->enable_ret;
}

static bool tf_signaled(struct gvm_fence *f)
{
	struct test_fence *t = to_tf(f);

	inc(&t->signaled_calls);
	return __atomic_load_n(&t->done, __ATOMIC_ACQUIRE);
}

static void tf_release(struct gvm_fence *f)
{
	inc(&to_tf(f)->release_calls);
}

static const struct gvm_fence_ops tf_ops = {
	.name = "test",
	.enable_signaling = tf_enable,
	.signaled = tf_signaled,
	.release = tf_release,
};

/* Same producer without a ->signaled poll. */
static const struct gvm_fence_ops tf_ops_nopoll = {
	.name = "test-nopoll",
	.enable_signaling = tf_enable,
	.release = tf_release,
};

static void tf_init(struct test_fence *t, const struct gvm_fence_ops *ops)
{
	memset(t, 0, sizeof(*t));
	t->enable_ret = true;
	gvm_fence_init(&t->base, ops, gvm_fence_context_alloc(1), 1);
}

/* ---- threads ------------------------------------------------------------- */

struct delayed_signal {
	struct gvm_fence *f;
	int64_t delay_ns;
	int error;
	int ret;
	pthread_t thread;
};

static void *delayed_signal_main(void *arg)
{
	struct delayed_signal *d = arg;

	gvm_test_sleep_ns(d->delay_ns);
	d->ret = gvm_fence_signal_error(d->f, d->error);
	return NULL;
}

static void delayed_signal_start(struct delayed_signal *d, struct gvm_fence *f,
				 int64_t delay_ns, int error)
{
	d->f = f;
	d->delay_ns = delay_ns;
	d->error = error;
	d->ret = 1;
	ASSERT_OK(pthread_create(&d->thread, NULL, delayed_signal_main, d));
}

static void delayed_signal_join(struct delayed_signal *d)
{
	ASSERT_OK(pthread_join(d->thread, NULL));
	ASSERT_OK(d->ret);
}

/* ===== signalling ======================================================== */

TEST(signal_once)
{
	struct gvm_fence *f = new_fence();

	ASSERT_FALSE(gvm_fence_is_signaled(f));
	ASSERT_EQ(gvm_fence_get_status(f), 0);
	ASSERT_STR_PRODUCER(f, "software");
	ASSERT_OK(gvm_fence_signal(f));
	ASSERT_TRUE(gvm_fence_is_signaled(f));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
}

TEST(double_signal_keeps_first_error)
{
	struct gvm_fence *f = new_fence();

	ASSERT_OK(gvm_fence_signal_error(f, -EIO));
	ASSERT_EQ(gvm_fence_signal_error(f, -ENOMEM), -EALREADY);
	ASSERT_EQ(gvm_fence_signal(f), -EALREADY);
	ASSERT_EQ(gvm_fence_get_status(f), -EIO);
	gvm_fence_put(f);

	/* A clean first signal is kept too. */
	f = new_fence();
	ASSERT_OK(gvm_fence_signal(f));
	ASSERT_EQ(gvm_fence_signal_error(f, -EIO), -EALREADY);
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
}

TEST(signal_error_positive_is_einval)
{
	struct gvm_fence *f = new_fence();

	ASSERT_EQ(gvm_fence_signal_error(f, EIO), -EINVAL);
	ASSERT_FALSE(gvm_fence_is_signaled(f));	/* nothing changed */
	ASSERT_OK(gvm_fence_signal_error(f, 0));	/* 0 = no error */
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
}

TEST(timestamp)
{
	struct gvm_fence *a = new_fence(), *b = new_fence();
	int64_t before, after;

	ASSERT_EQ(gvm_fence_timestamp(a), -1);
	before = gvm_test_now_ns();
	ASSERT_OK(gvm_fence_signal(a));
	after = gvm_test_now_ns();
	ASSERT_GE(gvm_fence_timestamp(a), before);
	ASSERT_LE(gvm_fence_timestamp(a), after);
	/* Failed signals do not move it. */
	ASSERT_EQ(gvm_fence_signal(a), -EALREADY);
	ASSERT_LE(gvm_fence_timestamp(a), after);

	ASSERT_EQ(gvm_fence_timestamp(b), -1);
	ASSERT_OK(gvm_fence_signal(b));
	ASSERT_GE(gvm_fence_timestamp(b), gvm_fence_timestamp(a));
	gvm_fence_put(a);
	gvm_fence_put(b);
}

TEST(create_signaled)
{
	struct gvm_fence *f = NULL;

	ASSERT_OK(gvm_fence_create_signaled(0, &f));
	ASSERT_TRUE(gvm_fence_is_signaled(f));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	ASSERT_GE(gvm_fence_timestamp(f), 0);
	ASSERT_EQ(gvm_fence_signal(f), -EALREADY);
	ASSERT_OK(gvm_fence_wait(f, 0));
	gvm_fence_put(f);

	ASSERT_OK(gvm_fence_create_signaled(-EIO, &f));
	ASSERT_EQ(gvm_fence_get_status(f), -EIO);
	ASSERT_EQ(gvm_fence_signal(f), -EALREADY);
	ASSERT_EQ(gvm_fence_get_status(f), -EIO);
	gvm_fence_put(f);

	f = NULL;
	ASSERT_EQ(gvm_fence_create_signaled(EIO, &f), -EINVAL);
	ASSERT_TRUE(f == NULL);
	ASSERT_EQ(gvm_fence_create_signaled(0, NULL), -EINVAL);
}

/* ===== callbacks ========================================================= */

TEST(callback_runs_once_in_signalling_thread)
{
	struct gvm_fence *f = new_fence();
	struct count_cb c = { 0 };
	struct delayed_signal d;

	ASSERT_OK(gvm_fence_add_callback(f, &c.cb, count_cb_func));
	ASSERT_EQ(load(&c.runs), 0);
	delayed_signal_start(&d, f, 0, -EIO);
	delayed_signal_join(&d);
	ASSERT_EQ(load(&c.runs), 1);
	ASSERT_TRUE(pthread_equal(c.thread, d.thread));
	ASSERT_EQ(c.status_seen, -EIO);	/* signalled before it runs */
	ASSERT_EQ(gvm_fence_signal(f), -EALREADY);
	ASSERT_EQ(load(&c.runs), 1);
	gvm_fence_put(f);
}

static struct count_cb nested_cb;

/* Adds another callback to the (signalled) fence it runs on. */
static void add_nested_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	count_cb_func(f, cb);
	ASSERT_OK(gvm_fence_add_callback(f, &nested_cb.cb, count_cb_func));
	ASSERT_EQ(load(&nested_cb.runs), 1);
}

TEST(callback_on_signalled_fence_runs_at_once_in_caller)
{
	struct gvm_fence *f = new_fence();
	struct count_cb c = { 0 };

	ASSERT_OK(gvm_fence_signal_error(f, -ENOENT));
	ASSERT_OK(gvm_fence_add_callback(f, &c.cb, count_cb_func));
	ASSERT_EQ(load(&c.runs), 1);
	ASSERT_TRUE(pthread_equal(c.thread, pthread_self()));
	ASSERT_EQ(c.status_seen, -ENOENT);
	ASSERT_FALSE(gvm_fence_remove_callback(f, &c.cb));
	ASSERT_EQ(load(&c.runs), 1);

	/*
	 * It runs without the fence's lock: it may even add a callback to
	 * the same fence (the lock-rank checker would catch a recursive lock).
	 */
	memset(&c, 0, sizeof(c));
	ASSERT_OK(gvm_fence_add_callback(f, &c.cb, add_nested_func));
	ASSERT_EQ(load(&c.runs), 1);
	ASSERT_EQ(load(&nested_cb.runs), 1);
	gvm_fence_put(f);
}

TEST(several_callbacks_all_run)
{
	struct gvm_fence *f = new_fence();
	struct count_cb c[16] = { 0 };

	for (unsigned int i = 0; i < ARRAY_SIZE(c); i++)
		ASSERT_OK(gvm_fence_add_callback(f, &c[i].cb, count_cb_func));
	/* Remove one from the middle: the others must be unaffected. */
	ASSERT_TRUE(gvm_fence_remove_callback(f, &c[7].cb));
	ASSERT_OK(gvm_fence_signal(f));
	for (unsigned int i = 0; i < ARRAY_SIZE(c); i++)
		ASSERT_EQ(load(&c[i].runs), i == 7 ? 0u : 1u);
	ASSERT_TRUE(no_callbacks(f));
	gvm_fence_put(f);
}

TEST(remove_callback_before_and_after_signal)
{
	struct gvm_fence *f = new_fence();
	struct count_cb a = { 0 }, b = { 0 };

	ASSERT_OK(gvm_fence_add_callback(f, &a.cb, count_cb_func));
	ASSERT_OK(gvm_fence_add_callback(f, &b.cb, count_cb_func));
	ASSERT_TRUE(gvm_fence_remove_callback(f, &a.cb));
	ASSERT_FALSE(gvm_fence_remove_callback(f, &a.cb)); /* once only */
	ASSERT_OK(gvm_fence_signal(f));
	ASSERT_EQ(load(&a.runs), 0);		/* removed: never runs */
	ASSERT_EQ(load(&b.runs), 1);
	ASSERT_FALSE(gvm_fence_remove_callback(f, &b.cb)); /* already ran */
	ASSERT_EQ(load(&b.runs), 1);

	/* Re-adding a removed callback works. */
	ASSERT_OK(gvm_fence_add_callback(f, &a.cb, count_cb_func));
	ASSERT_EQ(load(&a.runs), 1);
	gvm_fence_put(f);
}

/* Callback barrier: remove_callback waits for a running callback. */
struct slow_cb {
	struct gvm_fence_cb cb;
	unsigned int started, go, finished;	/* atomics */
};

static void slow_cb_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct slow_cb *s = gvm_container_of(cb, struct slow_cb, cb);

	inc(&s->started);
	while (!load(&s->go))
		gvm_test_sleep_ns(100 * 1000);
	inc(&s->finished);
}

struct remover {
	struct gvm_fence *f;
	struct slow_cb *s;
	bool removed;
	unsigned int finished_at_return;
	unsigned int returned;	/* atomic */
};

static void *remover_main(void *arg)
{
	struct remover *r = arg;

	r->removed = gvm_fence_remove_callback(r->f, &r->s->cb);
	r->finished_at_return = load(&r->s->finished);
	inc(&r->returned);
	return NULL;
}

TEST(remove_callback_waits_for_running_callback)
{
	struct gvm_fence *f = new_fence();
	struct slow_cb s = { 0 };
	struct remover r = { .f = f, .s = &s };
	struct delayed_signal d;
	pthread_t t;

	ASSERT_OK(gvm_fence_add_callback(f, &s.cb, slow_cb_func));
	delayed_signal_start(&d, f, 0, 0);
	while (!load(&s.started))
		gvm_test_sleep_ns(100 * 1000);
	ASSERT_OK(pthread_create(&t, NULL, remover_main, &r));
	gvm_test_sleep_ns(20 * MS_NS);
	ASSERT_EQ(load(&r.returned), 0);	/* still inside the callback */
	__atomic_store_n(&s.go, 1u, __ATOMIC_RELEASE);
	ASSERT_OK(pthread_join(t, NULL));
	delayed_signal_join(&d);
	ASSERT_FALSE(r.removed);
	ASSERT_EQ(r.finished_at_return, 1);
	gvm_fence_put(f);
}

/* A chain: a's callback signals b, b's signals c (fence locks nest). */
struct chain_cb {
	struct gvm_fence_cb cb;
	struct gvm_fence *next;
	int ret;
};

static void chain_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct chain_cb *c = gvm_container_of(cb, struct chain_cb, cb);

	c->ret = gvm_fence_signal_error(c->next, gvm_fence_get_status(f) - 1);
}

TEST(callback_signals_another_fence)
{
	struct gvm_fence *a = new_fence(), *b = new_fence(), *c = new_fence();
	struct chain_cb ab = { .next = b, .ret = 1 }, bc = { .next = c, .ret = 1 };
	struct count_cb last = { 0 };

	ASSERT_OK(gvm_fence_add_callback(a, &ab.cb, chain_func));
	ASSERT_OK(gvm_fence_add_callback(b, &bc.cb, chain_func));
	ASSERT_OK(gvm_fence_add_callback(c, &last.cb, count_cb_func));
	ASSERT_OK(gvm_fence_signal_error(a, -1));
	ASSERT_OK(ab.ret);
	ASSERT_OK(bc.ret);
	ASSERT_EQ(gvm_fence_get_status(b), -2);
	ASSERT_EQ(gvm_fence_get_status(c), -3);
	ASSERT_EQ(load(&last.runs), 1);
	ASSERT_EQ(last.status_seen, -3);
	gvm_fence_put(a);
	gvm_fence_put(b);
	gvm_fence_put(c);
}

/* ===== signalling on demand ============================================ */

TEST(is_signaled_never_enables)
{
	struct test_fence t;

	tf_init(&t, &tf_ops);
	ASSERT_FALSE(gvm_fence_is_signaled(&t.base));
	ASSERT_FALSE(gvm_fence_is_signaled(&t.base));
	ASSERT_EQ(gvm_fence_get_status(&t.base), 0);
	ASSERT_EQ(gvm_fence_timestamp(&t.base), -1);
	ASSERT_GE(load(&t.signaled_calls), 2);	/* it did poll */
	ASSERT_EQ(load(&t.enable_calls), 0);
	ASSERT_STR_PRODUCER(&t.base, "test");
	gvm_fence_put(&t.base);
	ASSERT_EQ(load(&t.release_calls), 1);
}

TEST(add_callback_and_wait_enable_once)
{
	struct test_fence t;
	struct count_cb a = { 0 }, b = { 0 };

	tf_init(&t, &tf_ops_nopoll);
	ASSERT_OK(gvm_fence_add_callback(&t.base, &a.cb, count_cb_func));
	ASSERT_EQ(load(&t.enable_calls), 1);
	ASSERT_OK(gvm_fence_add_callback(&t.base, &b.cb, count_cb_func));
	ASSERT_EQ(gvm_fence_wait(&t.base, MS_NS), -ETIME);
	gvm_fence_enable_signaling(&t.base);
	ASSERT_EQ(load(&t.enable_calls), 1);
	ASSERT_EQ(load(&a.runs) + load(&b.runs), 0);
	ASSERT_OK(gvm_fence_signal(&t.base));
	ASSERT_EQ(load(&a.runs) + load(&b.runs), 2);
	gvm_fence_put(&t.base);

	/* A wait alone enables. */
	tf_init(&t, &tf_ops_nopoll);
	ASSERT_EQ(gvm_fence_wait_interruptible(&t.base, MS_NS), -ETIME);
	ASSERT_EQ(load(&t.enable_calls), 1);
	ASSERT_EQ(gvm_fence_wait(&t.base, MS_NS), -ETIME);
	ASSERT_EQ(load(&t.enable_calls), 1);
	ASSERT_TRUE(no_callbacks(&t.base));
	gvm_fence_put(&t.base);

	/* Never enabled for a fence that is already signalled. */
	tf_init(&t, &tf_ops_nopoll);
	ASSERT_OK(gvm_fence_signal(&t.base));
	memset(&a, 0, sizeof(a));
	ASSERT_OK(gvm_fence_add_callback(&t.base, &a.cb, count_cb_func));
	ASSERT_OK(gvm_fence_wait(&t.base, -1));
	ASSERT_EQ(load(&a.runs), 1);
	ASSERT_EQ(load(&t.enable_calls), 0);
	gvm_fence_put(&t.base);
	ASSERT_EQ(load(&t.release_calls), 1);
}

#define RACERS 8

struct racer {
	struct gvm_fence *f;
	pthread_barrier_t *barrier;
	struct count_cb c;
	int kind;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->barrier);
	switch (r->kind % 3) {
	case 0:
		ASSERT_OK(gvm_fence_add_callback(r->f, &r->c.cb, count_cb_func));
		break;
	case 1:
		ASSERT_EQ(gvm_fence_wait(r->f, MS_NS), -ETIME);
		break;
	default:
		gvm_fence_enable_signaling(r->f);
		break;
	}
	return NULL;
}

TEST(enable_signaling_once_under_concurrent_callers)
{
	struct test_fence t;
	struct racer r[RACERS];
	pthread_t thr[RACERS];
	pthread_barrier_t barrier;

	tf_init(&t, &tf_ops_nopoll);
	t.enable_delay_ns = 5 * MS_NS;	/* others arrive while it runs */
	ASSERT_OK(pthread_barrier_init(&barrier, NULL, RACERS));
	for (int i = 0; i < RACERS; i++) {
		r[i] = (struct racer){ .f = &t.base, .barrier = &barrier,
				       .kind = i };
		ASSERT_OK(pthread_create(&thr[i], NULL, racer_main, &r[i]));
	}
	for (int i = 0; i < RACERS; i++)
		ASSERT_OK(pthread_join(thr[i], NULL));
	ASSERT_EQ(load(&t.enable_calls), 1);
	ASSERT_OK(gvm_fence_signal(&t.base));
	for (int i = 0; i < RACERS; i++)
		ASSERT_EQ(load(&r[i].c.runs), i % 3 == 0 ? 1u : 0u);
	ASSERT_EQ(load(&t.enable_calls), 1);
	pthread_barrier_destroy(&barrier);
	gvm_fence_put(&t.base);
}

TEST(enable_signaling_false_signals)
{
	struct test_fence t;
	struct count_cb c = { 0 };

	tf_init(&t, &tf_ops_nopoll);
	t.enable_ret = false;
	ASSERT_OK(gvm_fence_add_callback(&t.base, &c.cb, count_cb_func));
	ASSERT_EQ(load(&t.enable_calls), 1);
	ASSERT_EQ(load(&c.runs), 1);
	ASSERT_EQ(c.status_seen, 1);
	ASSERT_EQ(gvm_fence_get_status(&t.base), 1);
	gvm_fence_put(&t.base);

	tf_init(&t, &tf_ops_nopoll);
	t.enable_ret = false;
	ASSERT_OK(gvm_fence_wait(&t.base, LONG_NS));
	ASSERT_TRUE(gvm_fence_is_signaled(&t.base));
	ASSERT_EQ(load(&t.enable_calls), 1);
	gvm_fence_put(&t.base);
}

TEST(signaled_poll_signals)
{
	struct test_fence t;
	struct count_cb c = { 0 };
	unsigned int polls;

	tf_init(&t, &tf_ops);
	ASSERT_OK(gvm_fence_add_callback(&t.base, &c.cb, count_cb_func));
	ASSERT_FALSE(gvm_fence_is_signaled(&t.base));
	ASSERT_EQ(gvm_fence_wait(&t.base, 0), -ETIME);
	__atomic_store_n(&t.done, true, __ATOMIC_RELEASE);
	ASSERT_TRUE(gvm_fence_is_signaled(&t.base));
	/* Polling signalled it for real: callbacks ran, status is final. */
	ASSERT_EQ(load(&c.runs), 1);
	ASSERT_EQ(gvm_fence_get_status(&t.base), 1);
	ASSERT_GE(gvm_fence_timestamp(&t.base), 0);
	ASSERT_EQ(gvm_fence_signal(&t.base), -EALREADY);
	/* Once signalled the producer is not asked again. */
	polls = load(&t.signaled_calls);
	ASSERT_TRUE(gvm_fence_is_signaled(&t.base));
	ASSERT_OK(gvm_fence_wait(&t.base, 0));
	ASSERT_EQ(load(&t.signaled_calls), polls);
	gvm_fence_put(&t.base);

	/* A poll with timeout 0 sees it too. */
	tf_init(&t, &tf_ops);
	__atomic_store_n(&t.done, true, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_fence_wait(&t.base, 0));
	ASSERT_EQ(gvm_fence_get_status(&t.base), 1);
	gvm_fence_put(&t.base);
}

TEST(custom_release_once_on_last_put)
{
	struct test_fence t;

	tf_init(&t, &tf_ops);
	ASSERT_TRUE(gvm_fence_get(&t.base) == &t.base);
	ASSERT_TRUE(gvm_fence_get(&t.base) == &t.base);
	gvm_fence_put(&t.base);
	gvm_fence_put(&t.base);
	ASSERT_EQ(load(&t.release_calls), 0);
	gvm_fence_put(&t.base);
	ASSERT_EQ(load(&t.release_calls), 1);

	/* Signalled or not makes no difference. */
	tf_init(&t, &tf_ops);
	gvm_fence_get(&t.base);
	ASSERT_OK(gvm_fence_signal(&t.base));
	gvm_fence_put(&t.base);
	ASSERT_EQ(load(&t.release_calls), 0);
	gvm_fence_put(&t.base);
	ASSERT_EQ(load(&t.release_calls), 1);
}

/* ===== waits ============================================================= */

TEST(wait_on_signalled_fence)
{
	struct gvm_fence *f = new_fence();

	ASSERT_OK(gvm_fence_signal_error(f, -EIO));
	/* 0 whatever the error. */
	ASSERT_OK(gvm_fence_wait(f, 0));
	ASSERT_OK(gvm_fence_wait(f, -1));
	ASSERT_OK(gvm_fence_wait(f, LONG_NS));
	ASSERT_OK(gvm_fence_wait_interruptible(f, 0));
	ASSERT_OK(gvm_fence_wait_interruptible(f, -1));
	ASSERT_TRUE(no_callbacks(f));
	gvm_fence_put(f);
}

TEST(wait_timeout_zero_polls)
{
	struct gvm_fence *f = new_fence();

	ASSERT_EQ(gvm_fence_wait(f, 0), -ETIME);
	ASSERT_EQ(gvm_fence_wait_interruptible(f, 0), -ETIME);
	ASSERT_TRUE(no_callbacks(f));
	ASSERT_OK(gvm_fence_signal(f));
	gvm_fence_put(f);
}

TEST(wait_times_out)
{
	struct gvm_fence *f = new_fence();
	int64_t t0;

	for (int i = 0; i < 2; i++) {
		t0 = gvm_test_now_ns();
		ASSERT_EQ(i ? gvm_fence_wait_interruptible(f, 20 * MS_NS)
			    : gvm_fence_wait(f, 20 * MS_NS), -ETIME);
		ASSERT_GE(gvm_test_now_ns() - t0, 20 * MS_NS);
		ASSERT_FALSE(gvm_fence_is_signaled(f));
		/* The waiter's callback went with it. */
		ASSERT_TRUE(no_callbacks(f));
	}
	/* Signalling afterwards touches no dead waiter (ASan). */
	ASSERT_OK(gvm_fence_signal(f));
	gvm_fence_put(f);
}

TEST(wait_woken_by_another_thread)
{
	for (int i = 0; i < 4; i++) {
		struct gvm_fence *f = new_fence();
		struct delayed_signal d;
		int64_t timeout = i & 1 ? -1 : LONG_NS;

		delayed_signal_start(&d, f, 10 * MS_NS, -EIO);
		ASSERT_OK(i & 2 ? gvm_fence_wait_interruptible(f, timeout)
				: gvm_fence_wait(f, timeout));
		ASSERT_EQ(gvm_fence_get_status(f), -EIO);
		delayed_signal_join(&d);
		ASSERT_TRUE(no_callbacks(f));
		gvm_fence_put(f);
	}
}

static unsigned int sigusr1_count;

static void sigusr1_handler(int sig)
{
	(void)sig;
	__atomic_fetch_add(&sigusr1_count, 1u, __ATOMIC_RELAXED);
}

struct sig_waiter {
	struct gvm_fence *f;
	bool interruptible;
	int ret;
	unsigned int returned;	/* atomic */
	pthread_t thread;
};

static void *sig_waiter_main(void *arg)
{
	struct sig_waiter *w = arg;

	w->ret = w->interruptible ? gvm_fence_wait_interruptible(w->f, LONG_NS)
				  : gvm_fence_wait(w->f, LONG_NS);
	inc(&w->returned);
	return NULL;
}

TEST(wait_interruptible_eintr)
{
	struct sigaction sa = { .sa_handler = sigusr1_handler };
	struct gvm_fence *f = new_fence();
	struct sig_waiter w = { .f = f, .interruptible = true };
	int64_t t0;

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART */
	ASSERT_OK(sigaction(SIGUSR1, &sa, NULL));

	/* Keep kicking until the waiter gives up (it may not be waiting yet). */
	ASSERT_OK(pthread_create(&w.thread, NULL, sig_waiter_main, &w));
	t0 = gvm_test_now_ns();
	while (!load(&w.returned)) {
		ASSERT_LT(gvm_test_now_ns() - t0, LONG_NS / 2);
		ASSERT_OK(pthread_kill(w.thread, SIGUSR1));
		gvm_test_sleep_ns(MS_NS);
	}
	ASSERT_OK(pthread_join(w.thread, NULL));
	ASSERT_EQ(w.ret, -EINTR);
	ASSERT_FALSE(gvm_fence_is_signaled(f));
	ASSERT_TRUE(no_callbacks(f));

	/* The plain wait shrugs signals off and waits for the fence. */
	w = (struct sig_waiter){ .f = f, .interruptible = false };
	__atomic_store_n(&sigusr1_count, 0u, __ATOMIC_RELAXED);
	ASSERT_OK(pthread_create(&w.thread, NULL, sig_waiter_main, &w));
	for (int i = 0; i < 50; i++) {
		ASSERT_OK(pthread_kill(w.thread, SIGUSR1));
		gvm_test_sleep_ns(MS_NS);
	}
	ASSERT_EQ(load(&w.returned), 0);
	/* TSan defers handlers to its next interceptor: none in a futex loop. */
	if (!UNDER_TSAN)
		ASSERT_GT(load(&sigusr1_count), 0);
	ASSERT_OK(gvm_fence_signal(f));
	ASSERT_OK(pthread_join(w.thread, NULL));
	ASSERT_OK(w.ret);
	gvm_fence_put(f);
}

/* ===== contexts ========================================================= */

#define CTX_THREADS 4
#define CTX_PER_THREAD 20000

static pthread_barrier_t ctx_barrier;

static void *ctx_alloc_main(void *arg)
{
	uint64_t *out = arg;

	pthread_barrier_wait(&ctx_barrier);	/* all at once */
	for (int i = 0; i < CTX_PER_THREAD; i++)
		out[i] = gvm_fence_context_alloc(1 + (unsigned int)(i % 3));
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

TEST(context_alloc_distinct_ranges)
{
	static uint64_t got[CTX_THREADS * CTX_PER_THREAD];
	pthread_t t[CTX_THREADS];
	uint64_t a, b, c;

	a = gvm_fence_context_alloc(1);
	b = gvm_fence_context_alloc(4);
	c = gvm_fence_context_alloc(1);
	ASSERT_TRUE(b >= a + 1 || b + 4 <= a);
	ASSERT_TRUE(c >= b + 4 || c + 1 <= b);
	ASSERT_TRUE(c >= a + 1 || c + 1 <= a);

	/*
	 * Concurrently: no two ranges [x, x + n) overlap.  A few rounds, as
	 * on a small machine the threads do not always overlap.
	 */
	for (int round = 0; round < 8; round++) {
		ASSERT_OK(pthread_barrier_init(&ctx_barrier, NULL, CTX_THREADS));
		for (int i = 0; i < CTX_THREADS; i++)
			ASSERT_OK(pthread_create(&t[i], NULL, ctx_alloc_main,
						 &got[i * CTX_PER_THREAD]));
		for (int i = 0; i < CTX_THREADS; i++)
			ASSERT_OK(pthread_join(t[i], NULL));
		pthread_barrier_destroy(&ctx_barrier);
		/* Encode the range length so overlaps can be checked. */
		for (size_t i = 0; i < ARRAY_SIZE(got); i++)
			got[i] = got[i] << 2 | ((i % CTX_PER_THREAD) % 3 + 1);
		qsort(got, ARRAY_SIZE(got), sizeof(got[0]), cmp_u64);
		for (size_t i = 1; i < ARRAY_SIZE(got); i++)
			ASSERT_GE(got[i] >> 2,
				  (got[i - 1] >> 2) + (got[i - 1] & 3));
	}
}

TEST(is_later)
{
	uint64_t ctx = gvm_fence_context_alloc(2);
	struct gvm_fence *a1, *a2, *b3;

	ASSERT_OK(gvm_fence_create(ctx, 1, &a1));
	ASSERT_OK(gvm_fence_create(ctx, 2, &a2));
	ASSERT_OK(gvm_fence_create(ctx + 1, 3, &b3));
	ASSERT_TRUE(gvm_fence_is_later(a2, a1));
	ASSERT_FALSE(gvm_fence_is_later(a1, a2));
	ASSERT_FALSE(gvm_fence_is_later(a1, a1));
	ASSERT_FALSE(gvm_fence_is_later(b3, a1));	/* other context */
	ASSERT_FALSE(gvm_fence_is_later(a1, b3));
	ASSERT_FALSE(gvm_fence_is_later(NULL, a1));
	ASSERT_FALSE(gvm_fence_is_later(a1, NULL));
	gvm_fence_put(a1);
	gvm_fence_put(a2);
	gvm_fence_put(b3);
}

/* ===== arrays ============================================================= */

static struct gvm_fence *new_array(struct gvm_fence **fences, unsigned int n)
{
	struct gvm_fence *a = NULL;

	ASSERT_OK(gvm_fence_array_create(fences, n, gvm_fence_context_alloc(1),
					 1, &a));
	ASSERT_TRUE(gvm_fence_is_array(a));
	return a;
}

/* Makes sure the next signal gets a strictly later timestamp than @f's. */
static void after(struct gvm_fence *f)
{
	int64_t ts = gvm_fence_timestamp(f);

	ASSERT_GE(ts, 0);
	while (gvm_test_now_ns() <= ts)
		;
}

TEST(array_signals_when_all_members_did)
{
	struct gvm_fence *m[3] = { new_fence(), new_fence(), new_fence() };
	struct gvm_fence *a = new_array(m, 3);
	struct count_cb c = { 0 };

	ASSERT_STR_PRODUCER(a, "array");
	ASSERT_FALSE(gvm_fence_is_array(m[0]));
	ASSERT_EQ(gvm_fence_wait(a, 0), -ETIME);
	ASSERT_OK(gvm_fence_add_callback(a, &c.cb, count_cb_func));
	ASSERT_OK(gvm_fence_signal(m[2]));
	ASSERT_OK(gvm_fence_signal(m[0]));
	ASSERT_FALSE(gvm_fence_is_signaled(a));
	ASSERT_EQ(load(&c.runs), 0);
	ASSERT_OK(gvm_fence_signal(m[1]));
	ASSERT_TRUE(gvm_fence_is_signaled(a));
	ASSERT_EQ(load(&c.runs), 1);
	ASSERT_EQ(c.status_seen, 1);
	ASSERT_GE(gvm_fence_timestamp(a), gvm_fence_timestamp(m[1]));
	for (int i = 0; i < 3; i++)
		gvm_fence_put(m[i]);
	gvm_fence_put(a);
}

/* First error in time, not by index; both when enabled and when polled. */
TEST(array_error_is_first_in_time)
{
	for (int enabled = 0; enabled < 2; enabled++) {
		struct gvm_fence *m[4] = { new_fence(), new_fence(),
					   new_fence(), new_fence() };
		struct gvm_fence *a = new_array(m, 4);
		struct count_cb c = { 0 };

		if (enabled)
			ASSERT_OK(gvm_fence_add_callback(a, &c.cb,
							 count_cb_func));
		ASSERT_OK(gvm_fence_signal(m[3]));
		after(m[3]);
		ASSERT_OK(gvm_fence_signal_error(m[2], -EIO));
		after(m[2]);
		ASSERT_OK(gvm_fence_signal_error(m[0], -ENOMEM));
		ASSERT_FALSE(gvm_fence_is_signaled(a));
		ASSERT_OK(gvm_fence_signal_error(m[1], -ENOENT));
		ASSERT_EQ(gvm_fence_get_status(a), -EIO);
		ASSERT_EQ(load(&c.runs), (unsigned int)enabled);
		for (int i = 0; i < 4; i++)
			gvm_fence_put(m[i]);
		gvm_fence_put(a);
	}
}

TEST(array_empty_is_signalled)
{
	struct gvm_fence *a = new_array(NULL, 0);
	struct count_cb c = { 0 };

	ASSERT_TRUE(gvm_fence_is_signaled(a));
	ASSERT_EQ(gvm_fence_get_status(a), 1);
	ASSERT_OK(gvm_fence_wait(a, 0));
	ASSERT_OK(gvm_fence_add_callback(a, &c.cb, count_cb_func));
	ASSERT_EQ(load(&c.runs), 1);
	gvm_fence_put(a);
}

TEST(array_enables_members_lazily)
{
	struct test_fence t[3];
	struct gvm_fence *m[3], *a;
	struct count_cb c = { 0 };

	for (int i = 0; i < 3; i++) {
		tf_init(&t[i], &tf_ops_nopoll);
		m[i] = &t[i].base;
	}
	a = new_array(m, 3);
	ASSERT_FALSE(gvm_fence_is_signaled(a));
	ASSERT_EQ(gvm_fence_get_status(a), 0);
	ASSERT_EQ(gvm_fence_wait(a, 0), -ETIME);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(load(&t[i].enable_calls), 0);

	/* Polling sees completion without enabling anything. */
	ASSERT_OK(gvm_fence_signal(m[0]));
	ASSERT_OK(gvm_fence_signal(m[1]));
	ASSERT_FALSE(gvm_fence_is_signaled(a));
	ASSERT_OK(gvm_fence_signal_error(m[2], -EIO));
	ASSERT_TRUE(gvm_fence_is_signaled(a));
	ASSERT_EQ(gvm_fence_get_status(a), -EIO);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(load(&t[i].enable_calls), 0);
	gvm_fence_put(a);

	/* A callback on the array enables every (pending) member once. */
	for (int i = 0; i < 3; i++) {
		gvm_fence_put(m[i]);
		ASSERT_EQ(load(&t[i].release_calls), 1);
		tf_init(&t[i], &tf_ops_nopoll);
	}
	a = new_array(m, 3);
	ASSERT_OK(gvm_fence_add_callback(a, &c.cb, count_cb_func));
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(load(&t[i].enable_calls), 1);
	ASSERT_EQ(gvm_fence_wait(a, MS_NS), -ETIME);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(load(&t[i].enable_calls), 1);
		ASSERT_EQ(load(&c.runs), 0);
		ASSERT_OK(gvm_fence_signal(m[i]));
	}
	ASSERT_EQ(load(&c.runs), 1);
	gvm_fence_put(a);
	for (int i = 0; i < 3; i++)
		gvm_fence_put(m[i]);

	/* So does a wait. */
	for (int i = 0; i < 3; i++)
		tf_init(&t[i], &tf_ops_nopoll);
	a = new_array(m, 3);
	ASSERT_EQ(gvm_fence_wait(a, MS_NS), -ETIME);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(load(&t[i].enable_calls), 1);
	for (int i = 0; i < 3; i++)
		ASSERT_OK(gvm_fence_signal(m[i]));
	ASSERT_OK(gvm_fence_wait(a, 0));
	gvm_fence_put(a);
	for (int i = 0; i < 3; i++)
		gvm_fence_put(m[i]);
}

TEST(array_with_polled_members)
{
	struct test_fence t[2];
	struct gvm_fence *m[2], *a;

	for (int i = 0; i < 2; i++) {
		tf_init(&t[i], &tf_ops);
		m[i] = &t[i].base;
	}
	a = new_array(m, 2);
	ASSERT_FALSE(gvm_fence_is_signaled(a));
	__atomic_store_n(&t[0].done, true, __ATOMIC_RELEASE);
	ASSERT_FALSE(gvm_fence_is_signaled(a));
	__atomic_store_n(&t[1].done, true, __ATOMIC_RELEASE);
	ASSERT_TRUE(gvm_fence_is_signaled(a));
	ASSERT_TRUE(gvm_fence_is_signaled(m[0]));
	ASSERT_EQ(gvm_fence_get_status(a), 1);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(load(&t[i].enable_calls), 0);
	gvm_fence_put(a);
	for (int i = 0; i < 2; i++)
		gvm_fence_put(m[i]);
}

TEST(array_enabled_after_members_signalled)
{
	struct gvm_fence *m[2] = { new_fence(), new_fence() };
	struct gvm_fence *a = new_array(m, 2);
	struct count_cb c = { 0 };

	ASSERT_OK(gvm_fence_signal(m[0]));
	ASSERT_OK(gvm_fence_signal_error(m[1], -EIO));
	/* Enabling now completes it at once, from the caller. */
	ASSERT_OK(gvm_fence_add_callback(a, &c.cb, count_cb_func));
	ASSERT_EQ(load(&c.runs), 1);
	ASSERT_EQ(c.status_seen, -EIO);
	ASSERT_OK(gvm_fence_wait(a, 0));
	gvm_fence_put(m[0]);
	gvm_fence_put(m[1]);
	gvm_fence_put(a);
}

TEST(nested_arrays)
{
	for (int enabled = 0; enabled < 2; enabled++) {
		struct gvm_fence *l[4] = { new_fence(), new_fence(),
					   new_fence(), new_fence() };
		struct gvm_fence *in0 = new_array(&l[0], 2);
		struct gvm_fence *in1 = new_array(&l[2], 1);
		struct gvm_fence *mid[3] = { in0, in1, l[3] };
		struct gvm_fence *top = new_array(mid, 3);
		struct count_cb c = { 0 };

		if (enabled)
			ASSERT_OK(gvm_fence_add_callback(top, &c.cb,
							 count_cb_func));
		ASSERT_OK(gvm_fence_signal(l[3]));
		ASSERT_OK(gvm_fence_signal(l[0]));
		ASSERT_OK(gvm_fence_signal_error(l[2], -EIO)); /* in1 fails */
		ASSERT_EQ(gvm_fence_get_status(in1), -EIO);
		ASSERT_FALSE(gvm_fence_is_signaled(top));
		after(in1);
		ASSERT_OK(gvm_fence_signal(l[1]));
		ASSERT_EQ(gvm_fence_get_status(in0), 1);
		ASSERT_EQ(gvm_fence_get_status(top), -EIO);
		ASSERT_EQ(load(&c.runs), (unsigned int)enabled);
		/* Only the top was handed to the caller. */
		gvm_fence_put(in0);
		gvm_fence_put(in1);
		for (int i = 0; i < 4; i++)
			gvm_fence_put(l[i]);
		ASSERT_OK(gvm_fence_wait(top, 0));
		gvm_fence_put(top);
	}
}

TEST(array_bad_input)
{
	struct test_fence t;
	struct gvm_fence *m[3], *a = NULL;

	tf_init(&t, &tf_ops);
	m[0] = &t.base;
	m[1] = NULL;
	m[2] = &t.base;
	ASSERT_EQ(gvm_fence_array_create(m, 3, 1, 1, &a), -EINVAL);
	ASSERT_TRUE(a == NULL);
	ASSERT_EQ(gvm_fence_array_create(NULL, 2, 1, 1, &a), -EINVAL);
	ASSERT_EQ(gvm_fence_array_create(m, 1, 1, 1, NULL), -EINVAL);
	ASSERT_TRUE(a == NULL);
	/* No reference was leaked by the failures. */
	gvm_fence_put(&t.base);
	ASSERT_EQ(load(&t.release_calls), 1);
	ASSERT_FALSE(gvm_fence_is_array(NULL));
}

TEST(array_keeps_members_alive)
{
	struct test_fence t[3];
	struct gvm_fence *m[3], *a;
	struct count_cb c = { 0 };

	/* Lazy: the array's references alone keep the members. */
	for (int i = 0; i < 3; i++) {
		tf_init(&t[i], &tf_ops);
		m[i] = &t[i].base;
	}
	a = new_array(m, 3);
	for (int i = 0; i < 3; i++)
		gvm_fence_put(m[i]);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(load(&t[i].release_calls), 0);
		__atomic_store_n(&t[i].done, true, __ATOMIC_RELEASE);
	}
	ASSERT_TRUE(gvm_fence_is_signaled(a));
	gvm_fence_put(a);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(load(&t[i].release_calls), 1);

	/*
	 * Enabled: the installed callbacks keep the array, which keeps the
	 * members, after every outside reference has gone.
	 */
	for (int i = 0; i < 3; i++) {
		tf_init(&t[i], &tf_ops_nopoll);
		m[i] = &t[i].base;
	}
	a = new_array(m, 3);
	ASSERT_OK(gvm_fence_add_callback(a, &c.cb, count_cb_func));
	gvm_fence_put(a);
	ASSERT_OK(gvm_fence_signal(m[0]));
	ASSERT_OK(gvm_fence_signal(m[1]));
	for (int i = 0; i < 3; i++)
		gvm_fence_put(m[i]);	/* m[2] now lives through the array */
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(load(&t[i].release_calls), 0);
	gvm_fence_get(m[2]);	/* the test still owns the storage */
	ASSERT_OK(gvm_fence_signal(m[2]));
	ASSERT_EQ(load(&c.runs), 1);
	/* The last callback dropped the array, which dropped the members. */
	ASSERT_EQ(load(&t[0].release_calls), 1);
	ASSERT_EQ(load(&t[1].release_calls), 1);
	ASSERT_EQ(load(&t[2].release_calls), 0);
	gvm_fence_put(m[2]);
	ASSERT_EQ(load(&t[2].release_calls), 1);
}

TEST(array_wait_woken_by_other_threads)
{
	struct gvm_fence *m[4];
	struct delayed_signal d[4];
	struct gvm_fence *a;

	for (int i = 0; i < 4; i++)
		m[i] = new_fence();
	a = new_array(m, 4);
	for (int i = 0; i < 4; i++)
		delayed_signal_start(&d[i], m[i], (i + 1) * 5 * MS_NS,
				     i == 1 ? -EIO : 0);
	ASSERT_OK(gvm_fence_wait(a, LONG_NS));
	for (int i = 0; i < 4; i++) {
		delayed_signal_join(&d[i]);
		ASSERT_TRUE(gvm_fence_is_signaled(m[i]));
		gvm_fence_put(m[i]);
	}
	ASSERT_EQ(gvm_fence_get_status(a), -EIO);
	gvm_fence_put(a);
}

/* ===== timelines ======================================================== */

struct order_log {
	uint64_t seq[16];
	int status[16];
	unsigned int n;
};

struct order_cb {
	struct gvm_fence_cb cb;
	struct order_log *log;
	uint64_t seqno;
};

static void order_cb_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct order_cb *o = gvm_container_of(cb, struct order_cb, cb);

	o->log->status[o->log->n] = gvm_fence_get_status(f);
	o->log->seq[o->log->n++] = o->seqno;
}

TEST(timeline_seqnos)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f[3];

	ASSERT_OK(gvm_timeline_create("tl", &tl));
	ASSERT_NE(gvm_timeline_context(tl), 0);
	ASSERT_EQ(gvm_timeline_signaled_seqno(tl), 0);
	for (int i = 0; i < 3; i++) {
		ASSERT_OK(gvm_timeline_fence_create(tl, &f[i]));
		/* White box: the seqno and context fields. */
		ASSERT_EQ(f[i]->seqno, i + 1);
		ASSERT_EQ(f[i]->context, gvm_timeline_context(tl));
		ASSERT_STR_PRODUCER(f[i], "timeline");
		if (i)
			ASSERT_TRUE(gvm_fence_is_later(f[i], f[i - 1]));
	}
	ASSERT_FALSE(gvm_fence_is_later(f[0], f[1]));
	/* Distinct timelines get distinct contexts. */
	{
		struct gvm_timeline *tl2;
		struct gvm_fence *g;

		ASSERT_OK(gvm_timeline_create(NULL, &tl2));
		ASSERT_NE(gvm_timeline_context(tl2), gvm_timeline_context(tl));
		ASSERT_OK(gvm_timeline_fence_create(tl2, &g));
		ASSERT_FALSE(gvm_fence_is_later(g, f[0]));
		ASSERT_FALSE(gvm_fence_is_later(f[1], g));
		gvm_fence_put(g);
		gvm_timeline_destroy(tl2);
	}
	for (int i = 0; i < 3; i++)
		gvm_fence_put(f[i]);
	gvm_timeline_destroy(tl);
}

TEST(timeline_signals_in_order)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f[5];
	struct order_cb o[5];
	struct order_log log = { .n = 0 };

	ASSERT_OK(gvm_timeline_create("tl", &tl));
	for (int i = 0; i < 5; i++) {
		ASSERT_OK(gvm_timeline_fence_create(tl, &f[i]));
		o[i] = (struct order_cb){ .log = &log, .seqno = (uint64_t)i + 1 };
	}
	/* Added newest first: the order comes from signalling. */
	for (int i = 4; i >= 0; i--)
		ASSERT_OK(gvm_fence_add_callback(f[i], &o[i].cb, order_cb_func));

	ASSERT_OK(gvm_timeline_signal(tl, 3, -EIO));
	ASSERT_EQ(log.n, 3);
	for (unsigned int i = 0; i < 3; i++)
		ASSERT_EQ(log.seq[i], i + 1);
	ASSERT_EQ(log.status[0], 1);
	ASSERT_EQ(log.status[1], 1);
	ASSERT_EQ(log.status[2], -EIO);	/* only the exact seqno fails */
	ASSERT_EQ(gvm_timeline_signaled_seqno(tl), 3);
	ASSERT_FALSE(gvm_fence_is_signaled(f[3]));
	ASSERT_FALSE(gvm_fence_is_signaled(f[4]));
	ASSERT_LE(gvm_fence_timestamp(f[0]), gvm_fence_timestamp(f[1]));
	ASSERT_LE(gvm_fence_timestamp(f[1]), gvm_fence_timestamp(f[2]));

	ASSERT_OK(gvm_timeline_signal(tl, 5, 0));
	ASSERT_EQ(log.n, 5);
	ASSERT_EQ(log.seq[3], 4);
	ASSERT_EQ(log.seq[4], 5);
	ASSERT_EQ(log.status[3], 1);
	ASSERT_EQ(log.status[4], 1);
	ASSERT_EQ(gvm_timeline_signaled_seqno(tl), 5);

	for (int i = 0; i < 5; i++)
		gvm_fence_put(f[i]);
	gvm_timeline_destroy(tl);
}

TEST(timeline_fences_outlive_caller_references)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f;
	struct count_cb c = { 0 };

	/* The timeline keeps a pending fence (and its callbacks) alive. */
	ASSERT_OK(gvm_timeline_create("tl", &tl));
	ASSERT_OK(gvm_timeline_fence_create(tl, &f));
	ASSERT_OK(gvm_fence_add_callback(f, &c.cb, count_cb_func));
	gvm_fence_put(f);
	ASSERT_OK(gvm_timeline_signal(tl, 1, -EIO));
	ASSERT_EQ(load(&c.runs), 1);
	ASSERT_EQ(c.status_seen, -EIO);
	gvm_timeline_destroy(tl);
}

TEST(timeline_signal_bad_seqno)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f[2];

	ASSERT_OK(gvm_timeline_create("tl", &tl));
	ASSERT_EQ(gvm_timeline_signal(tl, 1, 0), -EINVAL); /* none issued */
	ASSERT_EQ(gvm_timeline_signal(tl, 0, 0), -EINVAL);
	ASSERT_OK(gvm_timeline_fence_create(tl, &f[0]));
	ASSERT_OK(gvm_timeline_fence_create(tl, &f[1]));
	ASSERT_EQ(gvm_timeline_signal(tl, 3, 0), -EINVAL);
	ASSERT_EQ(gvm_timeline_signal(tl, UINT64_MAX, 0), -EINVAL);
	ASSERT_EQ(gvm_timeline_signal(tl, 1, EIO), -EINVAL);
	ASSERT_FALSE(gvm_fence_is_signaled(f[0]));
	ASSERT_EQ(gvm_timeline_signaled_seqno(tl), 0);
	ASSERT_OK(gvm_timeline_signal(tl, 1, 0));
	ASSERT_EQ(gvm_timeline_signal(tl, 1, 0), -EINVAL); /* already */
	ASSERT_EQ(gvm_timeline_signal(tl, 0, 0), -EINVAL);
	ASSERT_OK(gvm_timeline_signal(tl, 2, -EIO));
	ASSERT_EQ(gvm_timeline_signal(tl, 2, 0), -EINVAL);
	ASSERT_EQ(gvm_fence_get_status(f[1]), -EIO);	/* unchanged */
	for (int i = 0; i < 2; i++)
		gvm_fence_put(f[i]);
	gvm_timeline_destroy(tl);
}

TEST(timeline_fence_signal_is_eperm)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f;

	ASSERT_OK(gvm_timeline_create("tl", &tl));
	ASSERT_OK(gvm_timeline_fence_create(tl, &f));
	ASSERT_EQ(gvm_fence_signal(f), -EPERM);
	ASSERT_EQ(gvm_fence_signal_error(f, -EIO), -EPERM);
	ASSERT_FALSE(gvm_fence_is_signaled(f));
	ASSERT_OK(gvm_timeline_signal(tl, 1, 0));
	ASSERT_EQ(gvm_fence_signal(f), -EPERM);	/* still not ours */
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
	gvm_timeline_destroy(tl);
}

TEST(timeline_destroy_cancels)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f[3], *g = NULL;
	struct count_cb c[3] = { 0 };

	ASSERT_OK(gvm_timeline_create("tl", &tl));
	for (int i = 0; i < 3; i++) {
		ASSERT_OK(gvm_timeline_fence_create(tl, &f[i]));
		ASSERT_OK(gvm_fence_add_callback(f[i], &c[i].cb, count_cb_func));
	}
	ASSERT_OK(gvm_timeline_signal(tl, 1, 0));
	gvm_timeline_destroy(tl);

	ASSERT_EQ(c[0].status_seen, 1);
	for (int i = 1; i < 3; i++) {
		ASSERT_EQ(load(&c[i].runs), 1);
		ASSERT_EQ(c[i].status_seen, -ECANCELED);
		ASSERT_EQ(gvm_fence_get_status(f[i]), -ECANCELED);
	}
	/* The fences are still whole; they keep the timeline for -ENODEV. */
	for (int i = 0; i < 3; i++) {
		struct count_cb late = { 0 };

		ASSERT_OK(gvm_fence_wait(f[i], LONG_NS));
		ASSERT_OK(gvm_fence_add_callback(f[i], &late.cb, count_cb_func));
		ASSERT_EQ(load(&late.runs), 1);
		ASSERT_STR_PRODUCER(f[i], "timeline");
	}
	ASSERT_EQ(gvm_timeline_fence_create(tl, &g), -ENODEV);
	ASSERT_TRUE(g == NULL);
	ASSERT_EQ(gvm_timeline_signal(tl, 2, 0), -ENODEV);
	ASSERT_EQ(gvm_timeline_signaled_seqno(tl), 1);
	ASSERT_EQ(gvm_fence_get_status(f[1]), -ECANCELED);
	for (int i = 0; i < 3; i++)
		gvm_fence_put(f[i]);	/* the last one frees the timeline */
}

TEST(timeline_destroy_without_fences)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f;

	ASSERT_OK(gvm_timeline_create(NULL, &tl));
	gvm_timeline_destroy(tl);

	/* A pending fence nobody else holds is cancelled and freed (ASan). */
	ASSERT_OK(gvm_timeline_create(NULL, &tl));
	ASSERT_OK(gvm_timeline_fence_create(tl, &f));
	gvm_fence_put(f);
	gvm_timeline_destroy(tl);
}

/* ===== bad input ========================================================== */

static void noop_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	(void)f;
	(void)cb;
}

TEST(null_arguments)
{
	struct gvm_fence *f = new_fence();
	struct gvm_fence_cb cb;
	struct gvm_timeline *tl = NULL;

	ASSERT_TRUE(gvm_fence_get(NULL) == NULL);
	gvm_fence_put(NULL);
	ASSERT_EQ(gvm_fence_signal(NULL), -EINVAL);
	ASSERT_EQ(gvm_fence_signal_error(NULL, -EIO), -EINVAL);
	ASSERT_FALSE(gvm_fence_is_signaled(NULL));
	ASSERT_EQ(gvm_fence_get_status(NULL), -EINVAL);
	ASSERT_EQ(gvm_fence_timestamp(NULL), -1);
	gvm_fence_enable_signaling(NULL);
	ASSERT_EQ(gvm_fence_add_callback(NULL, &cb, noop_func), -EINVAL);
	ASSERT_EQ(gvm_fence_add_callback(f, NULL, noop_func), -EINVAL);
	ASSERT_EQ(gvm_fence_add_callback(f, &cb, NULL), -EINVAL);
	ASSERT_FALSE(gvm_fence_remove_callback(NULL, &cb));
	ASSERT_FALSE(gvm_fence_remove_callback(f, NULL));
	ASSERT_EQ(gvm_fence_wait(NULL, 0), -EINVAL);
	ASSERT_EQ(gvm_fence_wait(NULL, -1), -EINVAL);
	ASSERT_EQ(gvm_fence_wait_interruptible(NULL, -1), -EINVAL);
	ASSERT_FALSE(gvm_fence_is_later(NULL, NULL));
	ASSERT_TRUE(gvm_fence_producer(NULL) != NULL);
	ASSERT_EQ(gvm_fence_create(1, 1, NULL), -EINVAL);
	ASSERT_TRUE(no_callbacks(f));	/* the failed adds added nothing */

	ASSERT_EQ(gvm_timeline_create("x", NULL), -EINVAL);
	gvm_timeline_destroy(NULL);
	ASSERT_EQ(gvm_timeline_fence_create(NULL, &f), -EINVAL);
	ASSERT_OK(gvm_timeline_create("x", &tl));
	ASSERT_EQ(gvm_timeline_fence_create(tl, NULL), -EINVAL);
	ASSERT_EQ(gvm_timeline_signal(NULL, 1, 0), -EINVAL);
	ASSERT_EQ(gvm_timeline_signaled_seqno(NULL), 0);
	ASSERT_EQ(gvm_timeline_context(NULL), 0);
	gvm_timeline_destroy(tl);

	ASSERT_OK(gvm_fence_signal(f));
	gvm_fence_put(f);
}

/* ===== timelines driven from callbacks ================================= */

/*
 * The contract lets a callback signal other fences, and a timeline fence can
 * only be signalled through gvm_timeline_signal(): so that must work from a
 * callback, i.e. under another fence's lock.
 */
struct tl_signal_cb {
	struct gvm_fence_cb cb;
	struct gvm_timeline *tl;
	uint64_t seqno;
	int ret;
};

static void tl_signal_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct tl_signal_cb *t = gvm_container_of(cb, struct tl_signal_cb, cb);

	t->ret = gvm_timeline_signal(t->tl, t->seqno, gvm_fence_get_status(f) < 0
				     ? gvm_fence_get_status(f) : 0);
}

TEST(timeline_signalled_from_callback)
{
	struct gvm_fence *src = new_fence();
	struct gvm_timeline *tl;
	struct gvm_fence *f;
	struct tl_signal_cb t = { .seqno = 1, .ret = 1 };

	ASSERT_OK(gvm_timeline_create("tl", &tl));
	ASSERT_OK(gvm_timeline_fence_create(tl, &f));
	t.tl = tl;
	ASSERT_OK(gvm_fence_add_callback(src, &t.cb, tl_signal_func));
	ASSERT_OK(gvm_fence_signal_error(src, -EIO));
	ASSERT_OK(t.ret);
	ASSERT_EQ(gvm_fence_get_status(f), -EIO);
	gvm_fence_put(f);
	gvm_fence_put(src);
	gvm_timeline_destroy(tl);
}

/* Two timelines whose fences' callbacks signal each other (ping-pong). */
TEST(timelines_signal_each_other_from_callbacks)
{
	struct gvm_timeline *a, *b;
	struct gvm_fence *fa[2], *fb;
	struct tl_signal_cb a1 = { .seqno = 1, .ret = 1 };
	struct tl_signal_cb b1 = { .seqno = 2, .ret = 1 };

	ASSERT_OK(gvm_timeline_create("a", &a));
	ASSERT_OK(gvm_timeline_create("b", &b));
	ASSERT_OK(gvm_timeline_fence_create(a, &fa[0]));
	ASSERT_OK(gvm_timeline_fence_create(a, &fa[1]));
	ASSERT_OK(gvm_timeline_fence_create(b, &fb));
	a1.tl = b;	/* a:1 done -> signal b:1 */
	b1.tl = a;	/* b:1 done -> signal a:2 */
	ASSERT_OK(gvm_fence_add_callback(fa[0], &a1.cb, tl_signal_func));
	ASSERT_OK(gvm_fence_add_callback(fb, &b1.cb, tl_signal_func));
	ASSERT_OK(gvm_timeline_signal(a, 1, 0));
	ASSERT_OK(a1.ret);
	ASSERT_OK(b1.ret);
	ASSERT_TRUE(gvm_fence_is_signaled(fb));
	ASSERT_TRUE(gvm_fence_is_signaled(fa[1]));
	ASSERT_EQ(gvm_timeline_signaled_seqno(a), 2);
	gvm_fence_put(fa[0]);
	gvm_fence_put(fa[1]);
	gvm_fence_put(fb);
	gvm_timeline_destroy(a);
	gvm_timeline_destroy(b);
}

/* A timeline fence's callback queues more work on the same timeline. */
struct tl_create_cb {
	struct gvm_fence_cb cb;
	struct gvm_timeline *tl;
	struct gvm_fence *made;
	int ret;
};

static void tl_create_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct tl_create_cb *t = gvm_container_of(cb, struct tl_create_cb, cb);

	(void)f;
	t->ret = gvm_timeline_fence_create(t->tl, &t->made);
}

TEST(timeline_fence_created_from_its_callback)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f;
	struct tl_create_cb t = { .ret = 1 };

	ASSERT_OK(gvm_timeline_create("tl", &tl));
	ASSERT_OK(gvm_timeline_fence_create(tl, &f));
	t.tl = tl;
	ASSERT_OK(gvm_fence_add_callback(f, &t.cb, tl_create_func));
	ASSERT_OK(gvm_timeline_signal(tl, 1, 0));
	ASSERT_OK(t.ret);
	ASSERT_EQ(t.made->seqno, 2);
	ASSERT_FALSE(gvm_fence_is_signaled(t.made));
	ASSERT_OK(gvm_timeline_signal(tl, 2, 0));
	ASSERT_TRUE(gvm_fence_is_signaled(t.made));
	gvm_fence_put(t.made);
	gvm_fence_put(f);
	gvm_timeline_destroy(tl);
}

/*
 * signal(tl, 2) claims f1 and f2; f1's callback signals 3 before the outer
 * call got to f2.  A later seqno must still imply the earlier ones, with the
 * right error, as seen from f3's callback and right after the nested call.
 */
struct nested_cb {
	struct gvm_fence_cb cb;
	struct gvm_timeline *tl;
	struct gvm_fence *f2;
	int ret, f2_status;
};

static void nested_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct nested_cb *n = gvm_container_of(cb, struct nested_cb, cb);

	(void)f;
	n->ret = gvm_timeline_signal(n->tl, 3, -ENOENT);
	n->f2_status = gvm_fence_get_status(n->f2);
}

static struct gvm_fence *seen_f2;
static int f2_status_from_f3;

static void check_f2_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	(void)cb;
	f2_status_from_f3 = gvm_fence_is_signaled(seen_f2)
				    ? gvm_fence_get_status(seen_f2)
				    : 0;
	ASSERT_EQ(gvm_fence_get_status(f), -ENOENT);
}

TEST(timeline_nested_signal_keeps_seqno_order)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f[3];
	struct nested_cb n = { .ret = 1 };
	struct gvm_fence_cb c3;
	struct order_cb o[3];
	struct order_log log = { .n = 0 };

	ASSERT_OK(gvm_timeline_create("tl", &tl));
	for (int i = 0; i < 3; i++) {
		ASSERT_OK(gvm_timeline_fence_create(tl, &f[i]));
		o[i] = (struct order_cb){ .log = &log, .seqno = (uint64_t)i + 1 };
	}
	n.tl = tl;
	n.f2 = f[1];
	seen_f2 = f[1];
	ASSERT_OK(gvm_fence_add_callback(f[0], &n.cb, nested_func));
	ASSERT_OK(gvm_fence_add_callback(f[2], &c3, check_f2_func));
	for (int i = 0; i < 3; i++)
		ASSERT_OK(gvm_fence_add_callback(f[i], &o[i].cb, order_cb_func));
	ASSERT_OK(gvm_timeline_signal(tl, 2, -EIO));
	ASSERT_OK(n.ret);
	ASSERT_EQ(f2_status_from_f3, -EIO);
	ASSERT_EQ(n.f2_status, -EIO);
	ASSERT_EQ(gvm_timeline_signaled_seqno(tl), 3);
	ASSERT_EQ(gvm_fence_get_status(f[0]), 1);
	ASSERT_EQ(gvm_fence_get_status(f[1]), -EIO);
	ASSERT_EQ(gvm_fence_get_status(f[2]), -ENOENT);
	/* Every callback ran once; timestamps follow seqnos. */
	ASSERT_EQ(log.n, 3);
	ASSERT_LE(gvm_fence_timestamp(f[0]), gvm_fence_timestamp(f[1]));
	ASSERT_LE(gvm_fence_timestamp(f[1]), gvm_fence_timestamp(f[2]));
	for (int i = 0; i < 3; i++)
		gvm_fence_put(f[i]);
	gvm_timeline_destroy(tl);
}

/* A timeline destroyed from one of its own fences' callbacks. */
struct destroy_cb {
	struct gvm_fence_cb cb;
	struct gvm_timeline *tl;
};

static void destroy_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	(void)f;
	gvm_timeline_destroy(gvm_container_of(cb, struct destroy_cb, cb)->tl);
}

TEST(timeline_destroyed_from_its_callback)
{
	struct gvm_timeline *tl;
	struct gvm_fence *f[2];
	struct destroy_cb d;

	ASSERT_OK(gvm_timeline_create("tl", &tl));
	ASSERT_OK(gvm_timeline_fence_create(tl, &f[0]));
	ASSERT_OK(gvm_timeline_fence_create(tl, &f[1]));
	d.tl = tl;
	ASSERT_OK(gvm_fence_add_callback(f[0], &d.cb, destroy_func));
	ASSERT_OK(gvm_timeline_signal(tl, 1, 0));
	ASSERT_EQ(gvm_fence_get_status(f[0]), 1);
	ASSERT_EQ(gvm_fence_get_status(f[1]), -ECANCELED);
	gvm_fence_put(f[0]);
	gvm_fence_put(f[1]);
}
