// SPDX-License-Identifier: MIT
/*
 * Stress: threads lock random sets of reservations in random orders through
 * lock sets for a fixed number of rounds.  Must finish (no deadlock, no
 * livelock), with exact counters and mutual exclusion checked inside every
 * critical section.  A second test races lock-free resv readers against
 * writers adding fences and threads signalling them.
 */
#include <pthread.h>

#include <gvm/lockset.h>

#include "harness.h"

#define NR_RESV 16
#define NR_THREADS 4
#define MAX_SET 8

struct object {
	struct gvm_resv resv;
	uint64_t counter;	/* protected by resv */
	uint32_t holder;	/* atomic: 0, or the thread inside */
};

struct shared {
	struct object obj[NR_RESV];
	uint64_t rounds;
	uint64_t seed;
	uint64_t expected[NR_RESV];	/* per-thread sums are added at exit */
	uint64_t retries;		/* atomic */
	struct gvm_fence *fence;	/* added to locked objects sometimes */
};

struct worker {
	struct shared *s;
	unsigned int id;
	uint64_t expected[NR_RESV];
};

static void *lock_worker(void *p)
{
	struct worker *w = p;
	struct shared *s = w->s;
	struct gvm_rng rng = { s->seed ^ (0x1234567ull * (w->id + 1)) };

	for (uint64_t round = 0; round < s->rounds; round++) {
		unsigned int pick[MAX_SET], n = 1 + (unsigned int)gvm_rng_below(&rng, MAX_SET);
		bool dups = gvm_rng_below(&rng, 4) == 0;
		bool fence = gvm_rng_below(&rng, 8) == 0;
		struct gvm_lockset ls;
		unsigned int runs = 0;
		bool seen[NR_RESV] = { false };

		for (unsigned int i = 0; i < n; i++) {
			pick[i] = (unsigned int)gvm_rng_below(&rng, NR_RESV);
			if (!dups)
				while (seen[pick[i]])
					pick[i] = (pick[i] + 1) % NR_RESV;
			seen[pick[i]] = true;
		}

		/* A lone lock now and then, outside any set. */
		if (gvm_rng_below(&rng, 16) == 0) {
			struct object *o = &s->obj[pick[0]];

			ASSERT_OK(gvm_resv_lock(&o->resv, NULL));
			ASSERT_EQ(__atomic_exchange_n(&o->holder, w->id + 1,
						      __ATOMIC_ACQ_REL), 0);
			o->counter++;
			w->expected[pick[0]]++;
			__atomic_store_n(&o->holder, 0, __ATOMIC_RELEASE);
			gvm_resv_unlock(&o->resv);
			continue;
		}

		ASSERT_OK(gvm_lockset_init(&ls, dups ? GVM_LOCKSET_IGNORE_DUPLICATES
						     : 0));
		gvm_lockset_until_all_locked(&ls) {
			int err = 0;

			runs++;
			for (unsigned int i = 0; i < n && !err; i++)
				err = gvm_lockset_prepare(&ls, &s->obj[pick[i]].resv,
							  fence ? 1 : 0);
			gvm_lockset_retry_on_contention(&ls);
			ASSERT_OK(err);
		}
		__atomic_fetch_add(&s->retries, runs - 1, __ATOMIC_RELAXED);

		/* Everything picked is locked, each object once. */
		for (unsigned int i = 0; i < NR_RESV; i++) {
			struct object *o = &s->obj[i];

			if (!seen[i])
				continue;
			ASSERT_EQ(__atomic_exchange_n(&o->holder, w->id + 1,
						      __ATOMIC_ACQ_REL), 0);
			o->counter++;
			w->expected[i]++;
			if (fence)
				ASSERT_OK(gvm_resv_add_fence(&o->resv, s->fence,
							     GVM_RESV_USAGE_BOOKKEEP));
		}
		for (unsigned int i = 0; i < NR_RESV; i++)
			if (seen[i])
				__atomic_store_n(&s->obj[i].holder, 0,
						 __ATOMIC_RELEASE);
		gvm_lockset_fini(&ls);
	}
	return NULL;
}

TEST(random_sets_exact_counters)
{
	static struct shared s;
	struct worker w[NR_THREADS];
	pthread_t t[NR_THREADS];
	int64_t t0 = gvm_test_now_ns();

	s.seed = gvm_test_seed();
	s.rounds = gvm_test_scale(200000);
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &s.fence));
	for (int i = 0; i < NR_RESV; i++)
		gvm_resv_init(&s.obj[i].resv);
	for (unsigned int i = 0; i < NR_THREADS; i++) {
		w[i] = (struct worker){ .s = &s, .id = i };
		pthread_create(&t[i], NULL, lock_worker, &w[i]);
	}
	for (unsigned int i = 0; i < NR_THREADS; i++)
		pthread_join(t[i], NULL);
	for (int r = 0; r < NR_RESV; r++) {
		uint64_t sum = 0;

		for (unsigned int i = 0; i < NR_THREADS; i++)
			sum += w[i].expected[r];
		ASSERT_EQ(s.obj[r].counter, sum);
		ASSERT_FALSE(gvm_resv_is_locked(&s.obj[r].resv));
	}
	printf("%u threads x %" PRIu64 " rounds: %" PRIu64
	       " back-offs, %.0f ms\n", NR_THREADS, s.rounds, s.retries,
	       (double)(gvm_test_now_ns() - t0) / 1e6);
	gvm_fence_signal(s.fence);
	for (int i = 0; i < NR_RESV; i++) {
		ASSERT_TRUE(gvm_resv_test_signaled(&s.obj[i].resv,
						   GVM_RESV_USAGE_BOOKKEEP));
		ASSERT_OK(gvm_resv_fini(&s.obj[i].resv));
	}
	gvm_fence_put(s.fence);
}

/* ---- lock-free readers against writers ------------------------------- */

#define NR_CTX 8

struct rw_shared {
	struct gvm_resv resv;
	uint64_t rounds;
	uint64_t seed;
	uint32_t stop;				/* atomic */
	struct gvm_fence *pending[64];		/* under resv lock */
	unsigned int nr_pending;		/* under resv lock */
	uint64_t reads;				/* atomic */
};

static void *rw_writer(void *p)
{
	struct rw_shared *s = p;
	struct gvm_rng rng = { s->seed };
	uint64_t seq[NR_CTX] = { 0 };
	uint64_t ctx = gvm_fence_context_alloc(NR_CTX);

	for (uint64_t i = 0; i < s->rounds; i++) {
		unsigned int c = (unsigned int)gvm_rng_below(&rng, NR_CTX);
		struct gvm_fence *f, *done = NULL;

		ASSERT_OK(gvm_fence_create(ctx + c, ++seq[c], &f));
		ASSERT_OK(gvm_resv_lock(&s->resv, NULL));
		ASSERT_OK(gvm_resv_reserve_fences(&s->resv, 1));
		ASSERT_OK(gvm_resv_add_fence(&s->resv, f,
					     (enum gvm_resv_usage)gvm_rng_below(&rng, 4)));
		if (s->nr_pending == 64 || gvm_rng_below(&rng, 2)) {
			unsigned int k = (unsigned int)gvm_rng_below(
				&rng, s->nr_pending ? s->nr_pending : 1);

			if (s->nr_pending) {
				done = s->pending[k];
				s->pending[k] = s->pending[--s->nr_pending];
			}
		}
		s->pending[s->nr_pending++] = f;
		gvm_resv_unlock(&s->resv);
		if (done) {
			gvm_fence_signal(done);
			gvm_fence_put(done);
		}
	}
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *rw_reader(void *p)
{
	struct rw_shared *s = p;
	unsigned int u = 0;

	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		struct gvm_fence **fences;
		unsigned int n;

		gvm_resv_test_signaled(&s->resv, (enum gvm_resv_usage)(u++ % 4));
		ASSERT_OK(gvm_resv_get_fences(&s->resv, GVM_RESV_USAGE_BOOKKEEP,
					      &fences, &n));
		for (unsigned int i = 0; i < n; i++)
			ASSERT_GT(__atomic_load_n(&fences[i]->refcount,
						  __ATOMIC_RELAXED), 0);
		gvm_resv_put_fences(fences, n);
		__atomic_fetch_add(&s->reads, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

TEST(lockfree_readers_vs_writer)
{
	static struct rw_shared s;
	pthread_t w, r[2];

	s.seed = gvm_test_seed();
	s.rounds = gvm_test_scale(50000);
	gvm_resv_init(&s.resv);
	pthread_create(&w, NULL, rw_writer, &s);
	for (int i = 0; i < 2; i++)
		pthread_create(&r[i], NULL, rw_reader, &s);
	pthread_join(w, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	printf("%" PRIu64 " writes, %" PRIu64 " lock-free reads\n", s.rounds,
	       s.reads);
	for (unsigned int i = 0; i < s.nr_pending; i++) {
		gvm_fence_signal(s.pending[i]);
		gvm_fence_put(s.pending[i]);
	}
	ASSERT_TRUE(gvm_resv_test_signaled(&s.resv, GVM_RESV_USAGE_BOOKKEEP));
	ASSERT_OK(gvm_resv_fini(&s.resv));
}
