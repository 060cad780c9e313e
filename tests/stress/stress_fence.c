// SPDX-License-Identifier: MIT
/*
 * Stress: fences, fence arrays and timelines under many threads.
 *
 * Every test is self-checking with exact counters: each callback ran exactly
 * once unless it was removed, each fence was signalled exactly once with the
 * error of whoever won, no waiter missed a wake-up (waits use a 10 s timeout
 * and a timeout fails the test), enable_signaling ran exactly once.  Sizes go
 * through gvm_test_scale(), randomness through gvm_test_seed().
 */
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <time.h>

#include <gvm/fence.h>

#include "harness.h"

#define LONG_NS (10ll * 1000 * 1000 * 1000)
#define US_NS 1000ll



static unsigned int load(const unsigned int *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void inc(unsigned int *p)
{
	__atomic_fetch_add(p, 1u, __ATOMIC_ACQ_REL);
}

static uint64_t seed;	/* set by setup(), before any thread starts */

static void setup(void)
{
	seed = gvm_test_seed();	/* not thread-safe: read it once, here */
}

static struct gvm_rng thread_rng(unsigned int id)
{
	return (struct gvm_rng){ seed ^ (0x9e3779b97f4a7c15ull * (id + 1)) };
}

/* A random error or 0, recognisable per fence. */
static int random_error(struct gvm_rng *r)
{
	return gvm_rng_below(r, 3) ? 0 : -(int)(1 + gvm_rng_below(r, 120));
}

static void start_threads(pthread_t *t, unsigned int n, void *(*fn)(void *),
			  void *args, size_t arg_size)
{
	for (unsigned int i = 0; i < n; i++)
		ASSERT_OK(pthread_create(&t[i], NULL, fn,
					 (char *)args + i * arg_size));
}

static void join_threads(pthread_t *t, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		ASSERT_OK(pthread_join(t[i], NULL));
}

/* ===== add / remove / signal / wait on shared fences ==================== */

#define CB_THREADS 4
#define CB_FENCES 32

struct cb_slot {
	struct gvm_fence_cb cb;
	unsigned int runs;	/* atomic */
	int status_seen;	/* written by the callback */
	bool added, removed;	/* the worker's own view */
};

struct cb_shared {
	struct gvm_fence *f[CB_FENCES];
	unsigned int wins[CB_FENCES];	/* atomic: successful signals */
	int won_with[CB_FENCES];	/* the winner's error */
	struct cb_slot slot[CB_THREADS][CB_FENCES];
	pthread_barrier_t start, end;
	uint64_t rounds;
};

struct cb_worker {
	struct cb_shared *s;
	unsigned int id;	/* CB_THREADS is the dedicated signaller */
};

static void cb_slot_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct cb_slot *slot = gvm_container_of(cb, struct cb_slot, cb);

	slot->status_seen = gvm_fence_get_status(f);
	inc(&slot->runs);
}

static void cb_signal(struct cb_shared *s, unsigned int i, int error)
{
	int ret = gvm_fence_signal_error(s->f[i], error);

	if (ret == 0) {
		s->won_with[i] = error;	/* exactly one winner writes */
		inc(&s->wins[i]);
	} else {
		ASSERT_EQ(ret, -EALREADY);
	}
}

static void cb_check_signalled(struct gvm_fence *f)
{
	int status = gvm_fence_get_status(f);

	ASSERT_TRUE(gvm_fence_is_signaled(f));
	ASSERT_NE(status, 0);
	ASSERT_GE(gvm_fence_timestamp(f), 0);
}

static void *cb_worker_main(void *p)
{
	struct cb_worker *w = p;
	struct cb_shared *s = w->s;
	struct gvm_rng rng = thread_rng(w->id);

	for (uint64_t round = 0; round < s->rounds; round++) {
		unsigned int order[CB_FENCES];

		for (unsigned int i = 0; i < CB_FENCES; i++)
			order[i] = i;
		for (unsigned int i = CB_FENCES - 1; i > 0; i--) {
			unsigned int j = (unsigned int)gvm_rng_below(&rng, i + 1);
			unsigned int t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
		pthread_barrier_wait(&s->start);

		if (w->id == CB_THREADS) {
			/* Signals everything, in random order, never waits. */
			for (unsigned int k = 0; k < CB_FENCES; k++) {
				cb_signal(s, order[k], random_error(&rng));
				if (gvm_rng_below(&rng, 4) == 0)
					sched_yield();
			}
			pthread_barrier_wait(&s->end);
			continue;
		}

		for (unsigned int k = 0; k < CB_FENCES; k++) {
			unsigned int i = order[k];
			struct gvm_fence *f = s->f[i];
			struct cb_slot *slot = &s->slot[w->id][i];
			int ret;

			switch (gvm_rng_below(&rng, 6)) {
			case 0:
			case 1:	/* add, and maybe remove at once */
				ASSERT_OK(gvm_fence_add_callback(f, &slot->cb,
								 cb_slot_func));
				slot->added = true;
				if (gvm_rng_below(&rng, 2))
					break;
				slot->removed = gvm_fence_remove_callback(f, &slot->cb);
				/* Removed: never ran.  Not: ran, and returned. */
				ASSERT_EQ(load(&slot->runs), slot->removed ? 0u : 1u);
				break;
			case 2:	/* wait for real */
				ret = gvm_rng_below(&rng, 2)
					      ? gvm_fence_wait(f, LONG_NS)
					      : gvm_fence_wait_interruptible(f, LONG_NS);
				ASSERT_OK(ret);
				cb_check_signalled(f);
				break;
			case 3:	/* short waits race the signaller */
				ret = gvm_fence_wait(f, (int64_t)gvm_rng_below(&rng, 50) * US_NS);
				if (ret == 0)
					cb_check_signalled(f);
				else
					ASSERT_EQ(ret, -ETIME);
				break;
			case 4:	/* race the signaller */
				cb_signal(s, i, random_error(&rng));
				break;
			default: /* status and predicate agree */
				ret = gvm_fence_get_status(f);
				if (ret)
					ASSERT_TRUE(gvm_fence_is_signaled(f));
				break;
			}
		}
		pthread_barrier_wait(&s->end);
	}
	return NULL;
}

TEST(callbacks_race_signal_and_waits)
{
	static struct cb_shared s;
	struct cb_worker w[CB_THREADS + 1];
	pthread_t t[CB_THREADS + 1];
	uint64_t runs = 0, removed = 0;

	setup();
	s.rounds = gvm_test_scale(6000);
	ASSERT_OK(pthread_barrier_init(&s.start, NULL, CB_THREADS + 2));
	ASSERT_OK(pthread_barrier_init(&s.end, NULL, CB_THREADS + 2));
	for (unsigned int i = 0; i <= CB_THREADS; i++)
		w[i] = (struct cb_worker){ .s = &s, .id = i };
	start_threads(t, CB_THREADS + 1, cb_worker_main, w, sizeof(w[0]));

	for (uint64_t round = 0; round < s.rounds; round++) {
		memset(s.slot, 0, sizeof(s.slot));
		memset(s.wins, 0, sizeof(s.wins));
		for (unsigned int i = 0; i < CB_FENCES; i++)
			ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1,
						   &s.f[i]));
		pthread_barrier_wait(&s.start);
		pthread_barrier_wait(&s.end);

		for (unsigned int i = 0; i < CB_FENCES; i++) {
			int status = s.won_with[i] ? s.won_with[i] : 1;

			ASSERT_EQ(load(&s.wins[i]), 1);
			ASSERT_EQ(gvm_fence_get_status(s.f[i]), status);
			for (unsigned int k = 0; k < CB_THREADS; k++) {
				struct cb_slot *slot = &s.slot[k][i];

				if (!slot->added)
					continue;
				if (slot->removed) {
					ASSERT_EQ(load(&slot->runs), 0);
					removed++;
					continue;
				}
				ASSERT_EQ(load(&slot->runs), 1);
				ASSERT_EQ(slot->status_seen, status);
				runs++;
			}
			gvm_fence_put(s.f[i]);
		}
	}
	join_threads(t, CB_THREADS + 1);
	pthread_barrier_destroy(&s.start);
	pthread_barrier_destroy(&s.end);
	printf("callbacks: %" PRIu64 " ran, %" PRIu64 " removed\n", runs, removed);
	ASSERT_GT(runs, 0);
	ASSERT_GT(removed, 0);
}

/* ===== enable_signaling exactly once ==================================== */

#define EN_THREADS 4

struct en_fence {
	struct gvm_fence base;
	unsigned int enable_calls;	/* atomic */
	unsigned int release_calls;	/* atomic */
	bool enable_ret;
};

static bool en_enable(struct gvm_fence *f)
{
	struct en_fence *e = gvm_container_of(f, struct en_fence, base);

	inc(&e->enable_calls);
	sched_yield();	/* let the others pile up behind it */
	return e->enable_ret;
}

static void en_release(struct gvm_fence *f)
{
	inc(&gvm_container_of(f, struct en_fence, base)->release_calls);
}

static const struct gvm_fence_ops en_ops = {
	.name = "stress-enable",
	.enable_signaling = en_enable,
	.release = en_release,
};

struct en_shared {
	struct en_fence f;
	struct cb_slot slot[EN_THREADS];
	bool poll_only;		/* this round nobody asks for an event */
	pthread_barrier_t start, end;
	uint64_t rounds;
};

struct en_worker {
	struct en_shared *s;
	unsigned int id;
};

static void *en_worker_main(void *p)
{
	struct en_worker *w = p;
	struct en_shared *s = w->s;
	struct gvm_rng rng = thread_rng(100 + w->id);

	for (uint64_t round = 0; round < s->rounds; round++) {
		struct gvm_fence *f = &s->f.base;
		struct cb_slot *slot = &s->slot[w->id];
		int ret;

		pthread_barrier_wait(&s->start);
		(void)gvm_fence_is_signaled(f);
		(void)gvm_fence_get_status(f);
		if (s->poll_only) {
			ASSERT_EQ(gvm_fence_wait(f, 0), -ETIME);
			pthread_barrier_wait(&s->end);
			continue;
		}
		switch (gvm_rng_below(&rng, 3)) {
		case 0:
			ASSERT_OK(gvm_fence_add_callback(f, &slot->cb,
							 cb_slot_func));
			slot->added = true;
			break;
		case 1:
			ret = gvm_fence_wait(f, (int64_t)gvm_rng_below(&rng, 20) * US_NS + 1);
			ASSERT_TRUE(ret == 0 || ret == -ETIME);
			break;
		default:
			gvm_fence_enable_signaling(f);
			break;
		}
		pthread_barrier_wait(&s->end);
	}
	return NULL;
}

TEST(enable_signaling_exactly_once)
{
	static struct en_shared s;
	struct en_worker w[EN_THREADS];
	pthread_t t[EN_THREADS];
	struct gvm_rng rng;

	setup();
	rng = thread_rng(99);
	s.rounds = gvm_test_scale(20000);
	ASSERT_OK(pthread_barrier_init(&s.start, NULL, EN_THREADS + 1));
	ASSERT_OK(pthread_barrier_init(&s.end, NULL, EN_THREADS + 1));
	for (unsigned int i = 0; i < EN_THREADS; i++)
		w[i] = (struct en_worker){ .s = &s, .id = i };
	start_threads(t, EN_THREADS, en_worker_main, w, sizeof(w[0]));

	for (uint64_t round = 0; round < s.rounds; round++) {
		memset(&s.f, 0, sizeof(s.f));
		memset(s.slot, 0, sizeof(s.slot));
		s.f.enable_ret = gvm_rng_below(&rng, 4) != 0;
		s.poll_only = gvm_rng_below(&rng, 8) == 0;
		gvm_fence_init(&s.f.base, &en_ops, gvm_fence_context_alloc(1), 1);
		pthread_barrier_wait(&s.start);
		pthread_barrier_wait(&s.end);

		if (s.poll_only) {
			ASSERT_EQ(load(&s.f.enable_calls), 0);
			gvm_fence_enable_signaling(&s.f.base);
		}
		ASSERT_EQ(load(&s.f.enable_calls), 1);
		ASSERT_EQ(gvm_fence_is_signaled(&s.f.base), !s.f.enable_ret);
		if (s.f.enable_ret)
			ASSERT_OK(gvm_fence_signal(&s.f.base));
		for (unsigned int i = 0; i < EN_THREADS; i++)
			ASSERT_EQ(load(&s.slot[i].runs), s.slot[i].added ? 1u : 0u);
		ASSERT_EQ(load(&s.f.enable_calls), 1);
		gvm_fence_put(&s.f.base);
		ASSERT_EQ(load(&s.f.release_calls), 1);
	}
	join_threads(t, EN_THREADS);
	pthread_barrier_destroy(&s.start);
	pthread_barrier_destroy(&s.end);
}

/* ===== arrays of arrays ================================================== */

#define AR_THREADS 4
#define AR_LEAVES 24
#define AR_INNER 6
#define AR_MID 3
#define AR_MAX_MEMBERS 8

struct ar_node {
	struct gvm_fence *f;
	unsigned int n;
	unsigned int member[AR_MAX_MEMBERS];	/* indices one level down */
};

struct ar_shared {
	struct gvm_fence *leaf[AR_LEAVES];
	struct ar_node inner[AR_INNER], mid[AR_MID], top;
	unsigned int next_leaf;		/* atomic: work queue of leaves */
	unsigned int order[AR_LEAVES];	/* random leaf order this round */
	int leaf_error[AR_LEAVES];
	unsigned int leaf_wins[AR_LEAVES];	/* atomic */
	unsigned int mode;		/* 0 enabled, 1 polled, 2 enabled late */
	struct cb_slot top_cb;
	unsigned int top_cb_bad;	/* atomic: ran before a leaf was done */
	pthread_barrier_t start, end;
	uint64_t rounds;
};

struct ar_worker {
	struct ar_shared *s;
	unsigned int id;
};

static struct ar_shared *ar_current;	/* for the top callback */

static void ar_top_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct ar_shared *s = ar_current;

	for (unsigned int i = 0; i < AR_LEAVES; i++)
		if (!gvm_fence_is_signaled(s->leaf[i]))
			inc(&s->top_cb_bad);
	cb_slot_func(f, cb);
}

static void *ar_worker_main(void *p)
{
	struct ar_worker *w = p;
	struct ar_shared *s = w->s;
	struct gvm_rng rng = thread_rng(200 + w->id);

	for (uint64_t round = 0; round < s->rounds; round++) {
		unsigned int k;

		pthread_barrier_wait(&s->start);
		if (w->id == 0 && s->mode == 0)
			/* One thread waits on the top from the start. */
			ASSERT_OK(gvm_fence_wait(s->top.f, LONG_NS));
		while ((k = __atomic_fetch_add(&s->next_leaf, 1u,
					       __ATOMIC_RELAXED)) < AR_LEAVES) {
			unsigned int i = s->order[k];
			int ret = gvm_fence_signal_error(s->leaf[i],
							 s->leaf_error[i]);

			if (ret == 0)
				inc(&s->leaf_wins[i]);
			/* A second signal now and then: it must lose. */
			if (gvm_rng_below(&rng, 8) == 0)
				ASSERT_EQ(gvm_fence_signal(s->leaf[i]), -EALREADY);
			if (s->mode == 2 && k == AR_LEAVES / 2)
				ASSERT_OK(gvm_fence_add_callback(s->top.f,
						&s->top_cb.cb, ar_top_func));
			if (w->id == 2 && gvm_rng_below(&rng, 2))
				(void)gvm_fence_is_signaled(s->top.f);
		}
		if (s->mode == 1) {
			/* Polled only: is_signaled must get there by itself. */
			int64_t t0 = gvm_test_now_ns();

			while (!gvm_fence_is_signaled(s->top.f)) {
				ASSERT_LT(gvm_test_now_ns() - t0, LONG_NS);
				sched_yield();
			}
		}
		ASSERT_OK(gvm_fence_wait(s->top.f, LONG_NS));
		pthread_barrier_wait(&s->end);
	}
	return NULL;
}

/* The array's error: first in time among failed members, ties by index. */
static int ar_expected(struct gvm_fence **members, unsigned int n)
{
	int64_t first = INT64_MAX;
	int error = 0;

	for (unsigned int i = 0; i < n; i++) {
		int st = gvm_fence_get_status(members[i]);
		int64_t ts = gvm_fence_timestamp(members[i]);

		ASSERT_NE(st, 0);
		if (st < 0 && ts < first) {
			first = ts;
			error = st;
		}
	}
	return error ? error : 1;
}

static void ar_build(struct ar_shared *s, struct gvm_rng *rng)
{
	struct gvm_fence *m[AR_MAX_MEMBERS + 1];

	for (unsigned int i = 0; i < AR_LEAVES; i++) {
		ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1,
					   &s->leaf[i]));
		s->leaf_error[i] = random_error(rng);
		s->order[i] = i;
	}
	for (unsigned int i = AR_LEAVES - 1; i > 0; i--) {
		unsigned int j = (unsigned int)gvm_rng_below(rng, i + 1);
		unsigned int t = s->order[i];

		s->order[i] = s->order[j];
		s->order[j] = t;
	}
	/* Inner arrays over random leaves (repeats allowed)... */
	for (unsigned int i = 0; i < AR_INNER; i++) {
		struct ar_node *a = &s->inner[i];

		a->n = 1 + (unsigned int)gvm_rng_below(rng, AR_MAX_MEMBERS);
		for (unsigned int j = 0; j < a->n; j++) {
			a->member[j] = (unsigned int)gvm_rng_below(rng, AR_LEAVES);
			m[j] = s->leaf[a->member[j]];
		}
		ASSERT_OK(gvm_fence_array_create(m, a->n, 1, i, &a->f));
	}
	/* ...mid arrays over random inner ones... */
	for (unsigned int i = 0; i < AR_MID; i++) {
		struct ar_node *a = &s->mid[i];

		a->n = 1 + (unsigned int)gvm_rng_below(rng, AR_INNER);
		for (unsigned int j = 0; j < a->n; j++) {
			a->member[j] = (unsigned int)gvm_rng_below(rng, AR_INNER);
			m[j] = s->inner[a->member[j]].f;
		}
		ASSERT_OK(gvm_fence_array_create(m, a->n, 2, i, &a->f));
	}
	/* ...and the top over every mid one plus every leaf: it needs all. */
	s->top.n = AR_MID;
	for (unsigned int i = 0; i < AR_MID; i++)
		m[i] = s->mid[i].f;
	{
		struct gvm_fence *all[AR_MID + AR_LEAVES];

		memcpy(all, m, AR_MID * sizeof(m[0]));
		memcpy(all + AR_MID, s->leaf, sizeof(s->leaf));
		ASSERT_OK(gvm_fence_array_create(all, AR_MID + AR_LEAVES, 3, 0,
						 &s->top.f));
	}
}

static void ar_check(struct ar_shared *s)
{
	struct gvm_fence *m[AR_MID + AR_LEAVES];

	for (unsigned int i = 0; i < AR_LEAVES; i++) {
		ASSERT_EQ(load(&s->leaf_wins[i]), 1);
		ASSERT_EQ(gvm_fence_get_status(s->leaf[i]),
			  s->leaf_error[i] ? s->leaf_error[i] : 1);
	}
	for (unsigned int i = 0; i < AR_INNER; i++) {
		struct ar_node *a = &s->inner[i];

		for (unsigned int j = 0; j < a->n; j++)
			m[j] = s->leaf[a->member[j]];
		ASSERT_EQ(gvm_fence_get_status(a->f), ar_expected(m, a->n));
	}
	for (unsigned int i = 0; i < AR_MID; i++) {
		struct ar_node *a = &s->mid[i];

		for (unsigned int j = 0; j < a->n; j++)
			m[j] = s->inner[a->member[j]].f;
		ASSERT_EQ(gvm_fence_get_status(a->f), ar_expected(m, a->n));
	}
	for (unsigned int i = 0; i < AR_MID; i++)
		m[i] = s->mid[i].f;
	memcpy(m + AR_MID, s->leaf, sizeof(s->leaf));
	ASSERT_EQ(gvm_fence_get_status(s->top.f),
		  ar_expected(m, AR_MID + AR_LEAVES));
	for (unsigned int i = 0; i < AR_MID + AR_LEAVES; i++)
		ASSERT_GE(gvm_fence_timestamp(s->top.f), gvm_fence_timestamp(m[i]));

	if (s->mode != 1) {
		ASSERT_EQ(load(&s->top_cb.runs), 1);
		ASSERT_EQ(s->top_cb.status_seen, gvm_fence_get_status(s->top.f));
	}
	ASSERT_EQ(load(&s->top_cb_bad), 0);
}

TEST(arrays_of_arrays)
{
	static struct ar_shared s;
	struct ar_worker w[AR_THREADS];
	pthread_t t[AR_THREADS];
	struct gvm_rng rng;
	unsigned int modes[3] = { 0 };

	setup();
	rng = thread_rng(199);
	s.rounds = gvm_test_scale(20000);
	ar_current = &s;
	ASSERT_OK(pthread_barrier_init(&s.start, NULL, AR_THREADS + 1));
	ASSERT_OK(pthread_barrier_init(&s.end, NULL, AR_THREADS + 1));
	for (unsigned int i = 0; i < AR_THREADS; i++)
		w[i] = (struct ar_worker){ .s = &s, .id = i };
	start_threads(t, AR_THREADS, ar_worker_main, w, sizeof(w[0]));

	for (uint64_t round = 0; round < s.rounds; round++) {
		memset(s.leaf_wins, 0, sizeof(s.leaf_wins));
		memset(&s.top_cb, 0, sizeof(s.top_cb));
		s.top_cb_bad = 0;
		s.next_leaf = 0;
		s.mode = (unsigned int)gvm_rng_below(&rng, 3);
		modes[s.mode]++;
		ar_build(&s, &rng);
		if (s.mode == 0)
			ASSERT_OK(gvm_fence_add_callback(s.top.f, &s.top_cb.cb,
							 ar_top_func));
		pthread_barrier_wait(&s.start);
		pthread_barrier_wait(&s.end);
		ar_check(&s);

		/* Drop in an arbitrary order: arrays hold what they need. */
		gvm_fence_put(s.mid[1].f);
		for (unsigned int i = 0; i < AR_LEAVES; i++)
			gvm_fence_put(s.leaf[i]);
		for (unsigned int i = 0; i < AR_INNER; i++)
			gvm_fence_put(s.inner[i].f);
		gvm_fence_put(s.top.f);
		gvm_fence_put(s.mid[0].f);
		gvm_fence_put(s.mid[2].f);
	}
	join_threads(t, AR_THREADS);
	pthread_barrier_destroy(&s.start);
	pthread_barrier_destroy(&s.end);
	printf("rounds: %u enabled, %u polled, %u enabled midway\n", modes[0],
	       modes[1], modes[2]);
}

/* ===== a timeline signalled from one thread, waited on by others ========= */

#define TL_WAITERS 3
#define TL_CB_PER_WAITER 64

struct tl_shared {
	struct gvm_timeline *tl;
	struct gvm_fence **f;		/* f[i] has seqno i + 1 */
	unsigned int n;
	int *target_error;		/* atomic; set before signalling */
	unsigned char *is_target;	/* atomic */
	unsigned int done;		/* atomic: signaller finished */
};

struct tl_worker {
	struct tl_shared *s;
	unsigned int id;
	struct cb_slot cb[TL_CB_PER_WAITER];
	unsigned int cb_fence[TL_CB_PER_WAITER];
	unsigned int waits, seen, cbs;	/* statistics */
};

static int tl_expected_status(struct tl_shared *s, unsigned int i)
{
	if (!__atomic_load_n(&s->is_target[i], __ATOMIC_ACQUIRE))
		return 1;
	int err = __atomic_load_n(&s->target_error[i], __ATOMIC_ACQUIRE);

	return err ? err : 1;
}

static void *tl_signaller_main(void *p)
{
	struct tl_worker *w = p;
	struct tl_shared *s = w->s;
	struct gvm_rng rng = thread_rng(300);
	uint64_t seqno = 0;

	while (seqno < s->n) {
		uint64_t step = 1 + gvm_rng_below(&rng, 8);
		int err = random_error(&rng);

		seqno = seqno + step > s->n ? s->n : seqno + step;
		__atomic_store_n(&s->target_error[seqno - 1], err, __ATOMIC_RELEASE);
		__atomic_store_n(&s->is_target[seqno - 1], 1, __ATOMIC_RELEASE);
		ASSERT_OK(gvm_timeline_signal(s->tl, seqno, err));
		ASSERT_EQ(gvm_timeline_signaled_seqno(s->tl), seqno);
		/* Give the waiters time to pile up on pending fences. */
		if (gvm_rng_below(&rng, 2))
			gvm_test_sleep_ns((int64_t)gvm_rng_below(&rng, 20) * US_NS);
		else
			sched_yield();
	}
	__atomic_store_n(&s->done, 1u, __ATOMIC_RELEASE);
	return NULL;
}

static void *tl_waiter_main(void *p)
{
	struct tl_worker *w = p;
	struct tl_shared *s = w->s;
	struct gvm_rng rng = thread_rng(301 + w->id);
	unsigned int nr_cb = 0;

	while (!load(&s->done)) {
		/* Mostly near the signalling front, where the races are. */
		uint64_t front = gvm_timeline_signaled_seqno(s->tl);
		unsigned int i = gvm_rng_below(&rng, 4)
			? (unsigned int)((front + gvm_rng_below(&rng, 32)) % s->n)
			: (unsigned int)gvm_rng_below(&rng, s->n);
		struct gvm_fence *f = s->f[i];
		unsigned int j;
		int ret;

		switch (gvm_rng_below(&rng, 4)) {
		case 0:
			if (nr_cb == TL_CB_PER_WAITER)
				break;
			w->cb_fence[nr_cb] = i;
			ASSERT_OK(gvm_fence_add_callback(f, &w->cb[nr_cb].cb,
							 cb_slot_func));
			nr_cb++;
			break;
		case 1:
			ret = gvm_fence_wait(f, (int64_t)gvm_rng_below(&rng, 100) * US_NS);
			if (ret)
				ASSERT_EQ(ret, -ETIME);
			break;
		default:
			ASSERT_OK(gvm_fence_wait(f, LONG_NS));
			w->waits++;
			break;
		}
		if (!gvm_fence_is_signaled(f))
			continue;
		/* Signalled: its status is final, and every earlier one is. */
		w->seen++;
		ASSERT_EQ(gvm_fence_get_status(f), tl_expected_status(s, i));
		ASSERT_GE(gvm_timeline_signaled_seqno(s->tl), i + 1);
		j = (unsigned int)gvm_rng_below(&rng, i + 1);
		ASSERT_TRUE(gvm_fence_is_signaled(s->f[j]));
		ASSERT_EQ(gvm_fence_get_status(s->f[j]), tl_expected_status(s, j));
	}
	/* The signaller is done: every callback ran exactly once. */
	w->cbs = nr_cb;
	for (unsigned int k = 0; k < nr_cb; k++) {
		ASSERT_EQ(load(&w->cb[k].runs), 1);
		ASSERT_EQ(w->cb[k].status_seen,
			  tl_expected_status(s, w->cb_fence[k]));
	}
	return NULL;
}

TEST(timeline_signalled_while_others_wait)
{
	struct tl_shared s = { .n = (unsigned int)gvm_test_scale(40000) };
	static struct tl_worker w[TL_WAITERS + 1];
	pthread_t t[TL_WAITERS + 1];

	setup();
	if (s.n < 16)
		s.n = 16;
	s.f = calloc(s.n, sizeof(*s.f));
	s.target_error = calloc(s.n, sizeof(*s.target_error));
	s.is_target = calloc(s.n, sizeof(*s.is_target));
	ASSERT_TRUE(s.f && s.target_error && s.is_target);
	ASSERT_OK(gvm_timeline_create("stress", &s.tl));
	for (unsigned int i = 0; i < s.n; i++)
		ASSERT_OK(gvm_timeline_fence_create(s.tl, &s.f[i]));
	for (unsigned int i = 0; i <= TL_WAITERS; i++)
		w[i] = (struct tl_worker){ .s = &s, .id = i };
	ASSERT_OK(pthread_create(&t[0], NULL, tl_signaller_main, &w[0]));
	for (unsigned int i = 1; i <= TL_WAITERS; i++)
		ASSERT_OK(pthread_create(&t[i], NULL, tl_waiter_main, &w[i]));
	join_threads(t, TL_WAITERS + 1);
	for (unsigned int i = 1; i <= TL_WAITERS; i++) {
		printf("waiter %u: %u waits, %u seen signalled, %u callbacks\n",
		       i, w[i].waits, w[i].seen, w[i].cbs);
		ASSERT_GT(w[i].waits, 0);
	}

	for (unsigned int i = 0; i < s.n; i++) {
		ASSERT_EQ(gvm_fence_get_status(s.f[i]), tl_expected_status(&s, i));
		/* Timestamps follow seqnos, whoever signalled (polls too). */
		if (i)
			ASSERT_LE(gvm_fence_timestamp(s.f[i - 1]),
				  gvm_fence_timestamp(s.f[i]));
	}
	for (unsigned int i = 0; i < s.n; i++)
		gvm_fence_put(s.f[i]);
	gvm_timeline_destroy(s.tl);
	free(s.f);
	free(s.target_error);
	free(s.is_target);
}

/* ===== a timeline signalled by several threads at once ================== */

#define MT_THREADS 4

struct mt_shared {
	struct gvm_timeline *tl;
	struct gvm_fence **f;
	unsigned int n;
	int *won_error;			/* per seqno: error of the winning call */
	unsigned char *won;		/* atomic */
};

struct mt_worker {
	struct mt_shared *s;
	unsigned int id;
	unsigned int wins, checks;	/* statistics */
};

static void *mt_main(void *p)
{
	struct mt_worker *w = p;
	struct mt_shared *s = w->s;
	struct gvm_rng rng = thread_rng(400 + w->id);

	while (gvm_timeline_signaled_seqno(s->tl) < s->n) {
		uint64_t cur = gvm_timeline_signaled_seqno(s->tl);
		uint64_t seqno = cur + 1 + gvm_rng_below(&rng, 6);
		unsigned int i = (unsigned int)((cur + gvm_rng_below(&rng, 16)) % s->n), j;
		int err = random_error(&rng), ret;

		if (seqno > s->n)
			seqno = s->n;
		if (w->id & 1) {
			ret = gvm_timeline_signal(s->tl, seqno, err);
			if (ret == 0) {
				w->wins++;
				s->won_error[seqno - 1] = err;
				__atomic_store_n(&s->won[seqno - 1], 1,
						 __ATOMIC_RELEASE);
			} else {
				ASSERT_EQ(ret, -EINVAL);
			}
		}
		/*
		 * Whoever is signalling: a signalled fence implies every
		 * earlier one, and signaled_seqno implies the fence.
		 */
		if (gvm_fence_is_signaled(s->f[i])) {
			w->checks++;
			j = (unsigned int)gvm_rng_below(&rng, i + 1);
			ASSERT_TRUE(gvm_fence_is_signaled(s->f[j]));
			ASSERT_NE(gvm_fence_get_status(s->f[j]), 0);
		}
		cur = gvm_timeline_signaled_seqno(s->tl);
		if (cur) {
			j = (unsigned int)gvm_rng_below(&rng, cur);
			ASSERT_TRUE(gvm_fence_is_signaled(s->f[j]));
		}
	}
	return NULL;
}

static void mt_round(unsigned int n, uint64_t round, unsigned int *wins,
		     unsigned int *checks)
{
	struct mt_shared s = { .n = n };
	struct mt_worker w[MT_THREADS];
	pthread_t t[MT_THREADS];

	s.f = calloc(s.n, sizeof(*s.f));
	s.won_error = calloc(s.n, sizeof(*s.won_error));
	s.won = calloc(s.n, 1);
	ASSERT_TRUE(s.f && s.won_error && s.won);
	ASSERT_OK(gvm_timeline_create("mt", &s.tl));
	for (unsigned int i = 0; i < s.n; i++)
		ASSERT_OK(gvm_timeline_fence_create(s.tl, &s.f[i]));
	for (unsigned int i = 0; i < MT_THREADS; i++)
		w[i] = (struct mt_worker){ .s = &s,
					   .id = i + MT_THREADS * (unsigned int)round };
	start_threads(t, MT_THREADS, mt_main, w, sizeof(w[0]));
	join_threads(t, MT_THREADS);
	for (unsigned int i = 0; i < MT_THREADS; i++) {
		*wins += w[i].wins;
		*checks += w[i].checks;
	}

	for (unsigned int i = 0; i < s.n; i++) {
		int st = s.won[i] && s.won_error[i] ? s.won_error[i] : 1;

		ASSERT_EQ(gvm_fence_get_status(s.f[i]), st);
		gvm_fence_put(s.f[i]);
	}
	ASSERT_EQ(s.won[s.n - 1], 1);
	gvm_timeline_destroy(s.tl);
	free(s.f);
	free(s.won_error);
	free(s.won);
}

TEST(timeline_signalled_from_many_threads)
{
	uint64_t rounds = gvm_test_scale(200);
	unsigned int wins = 0, checks = 0;

	setup();
	for (uint64_t round = 0; round < rounds; round++)
		mt_round(2000, round, &wins, &checks);
	printf("%u signals won, %u checks\n", wins, checks);
	ASSERT_GT(checks, 0);
}

/* ===== two timelines driving each other from callbacks =================== */

struct pp_cb {
	struct gvm_fence_cb cb;
	struct gvm_timeline *other;
	uint64_t seqno;		/* signal the other timeline up to this */
	unsigned int runs;	/* atomic */
};

static void pp_func(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct pp_cb *p = gvm_container_of(cb, struct pp_cb, cb);
	int ret = gvm_timeline_signal(p->other, p->seqno, 0);

	(void)f;
	/* The other side may have got there first. */
	if (ret)
		ASSERT_EQ(ret, -EINVAL);
	ASSERT_GE(gvm_timeline_signaled_seqno(p->other), p->seqno);
	inc(&p->runs);
}

struct pp_side {
	struct gvm_timeline *tl;
	struct gvm_fence **f;
	struct pp_cb *cb;
	unsigned int n;
	unsigned int id;
};

static void *pp_main(void *p)
{
	struct pp_side *side = p;
	struct gvm_rng rng = thread_rng(500 + side->id);

	/* Push our own timeline forward; callbacks push the other one. */
	while (gvm_timeline_signaled_seqno(side->tl) < side->n) {
		uint64_t s = gvm_timeline_signaled_seqno(side->tl) + 1 +
			     gvm_rng_below(&rng, 4);
		int ret;

		if (s > side->n)
			s = side->n;
		ret = gvm_timeline_signal(side->tl, s, 0);
		if (ret)
			ASSERT_EQ(ret, -EINVAL);
		if (gvm_rng_below(&rng, 8) == 0)
			sched_yield();
	}
	return NULL;
}

static void pp_round(unsigned int n, uint64_t round)
{
	struct pp_side side[2];
	pthread_t t[2];

	for (int k = 0; k < 2; k++) {
		side[k] = (struct pp_side){ .n = n,
					  .id = (unsigned int)(2 * round) + (unsigned int)k };
		ASSERT_OK(gvm_timeline_create(k ? "b" : "a", &side[k].tl));
		side[k].f = calloc(n, sizeof(*side[k].f));
		side[k].cb = calloc(n, sizeof(*side[k].cb));
		ASSERT_TRUE(side[k].f && side[k].cb);
		for (unsigned int i = 0; i < n; i++)
			ASSERT_OK(gvm_timeline_fence_create(side[k].tl,
							    &side[k].f[i]));
	}
	/*
	 * Fence i of one timeline done -> the other timeline up to i, or every
	 * 8th one a step further (so callbacks nest a few levels deep, and
	 * each thread's signals run into the other thread's callbacks).
	 */
	for (int k = 0; k < 2; k++) {
		for (unsigned int i = 0; i < n; i++) {
			struct pp_cb *c = &side[k].cb[i];

			c->other = side[!k].tl;
			c->seqno = i + 1 + (i % 8 == (unsigned int)k * 4);
			if (c->seqno > n)
				c->seqno = n;
			ASSERT_OK(gvm_fence_add_callback(side[k].f[i], &c->cb,
							 pp_func));
		}
	}
	for (int k = 0; k < 2; k++)
		ASSERT_OK(pthread_create(&t[k], NULL, pp_main, &side[k]));
	for (int k = 0; k < 2; k++)
		ASSERT_OK(gvm_fence_wait(side[k].f[n - 1], LONG_NS));
	join_threads(t, 2);
	for (int k = 0; k < 2; k++) {
		for (unsigned int i = 0; i < n; i++) {
			ASSERT_EQ(load(&side[k].cb[i].runs), 1);
			ASSERT_EQ(gvm_fence_get_status(side[k].f[i]), 1);
			gvm_fence_put(side[k].f[i]);
		}
		gvm_timeline_destroy(side[k].tl);
		free(side[k].f);
		free(side[k].cb);
	}
}

TEST(timelines_drive_each_other_from_callbacks)
{
	uint64_t rounds = gvm_test_scale(200);

	setup();
	for (uint64_t round = 0; round < rounds; round++)
		pp_round(2000, round);
}
