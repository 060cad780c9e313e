// SPDX-License-Identifier: MIT
/*
 * The CPU side: gvm_mm_self, the userfaultfd event thread, interval
 * notifiers (sequence protocol, two passes, concurrent insert/remove),
 * mapping lookup (PROCMAP_QUERY against the parsed text) and page fetching.
 *
 * Event tests use real mmap() memory: a recording notifier collects the
 * ranges it is invalidated with, gvm__mm_sync() waits for the event thread,
 * and the test compares with what the kernel must have reported.
 *
 * Ordering tests (gvm_mm_flush, stamps) hold the event thread between
 * reading an event and processing it (tests/mmhold.h), which is the window
 * in which the application has returned from munmap/madvise and gvm has not
 * applied the change yet; no test depends on timing.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "mmhold.h"

#include <gvm/gvm.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/itree.h"
#include "mm/notifier.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "mm/uffd_compat.h"

#define PG 4096ul

static struct gvm_mm *mm_self(void)
{
	struct gvm_mm *mm = NULL;

	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_TRUE(mm != NULL);
	return mm;
}

static char *map_anon(size_t pages, int prot, int flags)
{
	void *p = mmap(NULL, pages * PG, prot, flags | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(p != MAP_FAILED);
	return p;
}

static uint64_t u(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/* ---- a notifier that records what it is told ------------------------------ */

#define REC_MAX 64

struct rec {
	struct gvm_notifier n;
	pthread_mutex_t lock;
	struct gvm_notifier_range got[REC_MAX];
	unsigned int nr;
	uint64_t last_seq;
};

static struct gvm_notifier_finish *rec_start(struct gvm_notifier *n,
					     const struct gvm_notifier_range *r,
					     uint64_t cur_seq)
{
	struct rec *rc = gvm_container_of(n, struct rec, n);

	pthread_mutex_lock(&rc->lock);
	gvm__notifier_set_seq(n, cur_seq);
	if (rc->nr < REC_MAX)
		rc->got[rc->nr] = *r;
	rc->nr++;
	rc->last_seq = cur_seq;
	pthread_mutex_unlock(&rc->lock);
	return NULL;
}

static const struct gvm_notifier_ops rec_ops = {
	.invalidate_start = rec_start,
};

static void rec_insert(struct gvm_mm *mm, struct rec *rc, const void *p,
		       size_t len)
{
	memset(rc, 0, sizeof(*rc));
	pthread_mutex_init(&rc->lock, NULL);
	ASSERT_OK(gvm__notifier_insert(mm, &rc->n, u(p), len, &rec_ops));
	ASSERT_OK(gvm__mm_register(mm, u(p), len));
}

static unsigned int rec_count(struct rec *rc)
{
	unsigned int n;

	pthread_mutex_lock(&rc->lock);
	n = rc->nr;
	pthread_mutex_unlock(&rc->lock);
	return n;
}

/* Asserts that the i-th recorded invalidation is exactly this. */
static void rec_expect(struct rec *rc, unsigned int i, enum gvm_mm_event ev,
		       const void *start, size_t len)
{
	pthread_mutex_lock(&rc->lock);
	ASSERT_LT(i, rc->nr);
	ASSERT_EQ(rc->got[i].event, ev);
	ASSERT_EQ(rc->got[i].start, u(start));
	ASSERT_EQ(rc->got[i].last, u(start) + len - 1);
	pthread_mutex_unlock(&rc->lock);
}

static void rec_remove(struct rec *rc)
{
	gvm__notifier_remove(&rc->n);
	pthread_mutex_destroy(&rc->lock);
}

/* ---- constants, features, the singleton ----------------------------------- */

TEST(constants_match_kernel)
{
	/* Values of the kernel uAPI, whatever the installed headers say. */
	ASSERT_EQ(UFFD_FEATURE_EVENT_FORK, 1 << 1);
	ASSERT_EQ(UFFD_FEATURE_EVENT_REMAP, 1 << 2);
	ASSERT_EQ(UFFD_FEATURE_EVENT_REMOVE, 1 << 3);
	ASSERT_EQ(UFFD_FEATURE_EVENT_UNMAP, 1 << 6);
	ASSERT_EQ(UFFD_FEATURE_WP_ASYNC, 1 << 15);
	ASSERT_EQ(UFFD_FEATURE_MOVE, 1 << 16);
	ASSERT_EQ(UFFDIO_MOVE, 0xc028aa05);
	ASSERT_EQ(PROCMAP_QUERY, 0xc0686611);
	ASSERT_EQ(MADV_POPULATE_READ, 22);
	ASSERT_EQ(MADV_POPULATE_WRITE, 23);
	ASSERT_EQ(sizeof(struct procmap_query), 104);
	ASSERT_EQ(sizeof(struct uffdio_move), 40);
}

TEST(self_features_detected)
{
	struct gvm_mm *mm = mm_self();
	uint64_t f = gvm__mm_self_features(mm);

	ASSERT_TRUE(f & UFFD_FEATURE_EVENT_UNMAP);
	ASSERT_TRUE(f & UFFD_FEATURE_EVENT_REMOVE);
	ASSERT_TRUE(f & UFFD_FEATURE_EVENT_REMAP);
	ASSERT_TRUE(f & UFFD_FEATURE_EVENT_FORK);
	printf("granted features 0x%llx (WP_ASYNC %s)\n",
	       (unsigned long long)f,
	       (f & UFFD_FEATURE_WP_ASYNC) ? "yes" : "no");
	gvm_mm_put(mm);
	ASSERT_EQ(gvm_mm_self(NULL), -EINVAL);
}

TEST(self_is_one_refcounted_object)
{
	struct gvm_mm *a = mm_self(), *b = mm_self();
	struct rec rc;
	char *p;

	ASSERT_TRUE(a == b);
	ASSERT_TRUE(gvm_mm_get(a) == a);
	gvm_mm_put(a);
	gvm_mm_put(b);
	gvm_mm_put(a);
	gvm_mm_put(NULL);

	/* A new one after the last put works: the old userfaultfd let go. */
	for (int round = 0; round < 3; round++) {
		a = mm_self();
		p = map_anon(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
		rec_insert(a, &rc, p, 4 * PG);
		ASSERT_OK(munmap(p, 4 * PG));
		ASSERT_OK(gvm__mm_sync(a));
		ASSERT_EQ(rec_count(&rc), 1);
		rec_expect(&rc, 0, GVM_MM_EVENT_UNMAP, p, 4 * PG);
		rec_remove(&rc);
		gvm_mm_put(a);
	}
}

/* ---- notifier core (invalidations raised directly) ----------------------- */

TEST(notifier_insert_rejects_bad_ranges)
{
	struct gvm_mm *mm = mm_self();
	struct gvm_notifier n;
	const struct gvm_notifier_ops none = { 0 };

	ASSERT_EQ(gvm__notifier_insert(mm, &n, 0x1000, 0, &rec_ops), -EINVAL);
	ASSERT_EQ(gvm__notifier_insert(mm, &n, UINT64_MAX - 10, 20, &rec_ops),
		  -EINVAL);
	ASSERT_EQ(gvm__notifier_insert(mm, &n, 0x1000, 0x1000, &none), -EINVAL);
	ASSERT_EQ(gvm__notifier_insert(mm, &n, 0x1000, 0x1000, NULL), -EINVAL);
	ASSERT_EQ(gvm__notifier_count(mm), 0);

	gvm__itree_fail_alloc_after = 0;
	ASSERT_EQ(gvm__notifier_insert(mm, &n, 0x1000, 0x1000, &rec_ops),
		  -ENOMEM);
	gvm__itree_fail_alloc_after = -1;
	ASSERT_EQ(gvm__notifier_count(mm), 0);
	gvm_mm_put(mm);
}

/* Random notifiers and ranges against a brute-force overlap check. */
TEST(notifier_invalidate_hits_exactly_the_overlaps)
{
	struct gvm_mm *mm = mm_self();
	struct gvm_rng rng = { gvm_test_seed() };
	enum { N = 200 };
	static struct rec rc[N];

	for (int i = 0; i < N; i++) {
		uint64_t s = (1 + gvm_rng_below(&rng, 1000)) * PG;
		uint64_t len = (1 + gvm_rng_below(&rng, 50)) * PG;

		memset(&rc[i], 0, sizeof(rc[i]));
		pthread_mutex_init(&rc[i].lock, NULL);
		ASSERT_OK(gvm__notifier_insert(mm, &rc[i].n, s, len, &rec_ops));
	}
	ASSERT_EQ(gvm__notifier_count(mm), N);
	for (int q = 0; q < 300; q++) {
		uint64_t s = gvm_rng_below(&rng, 1100) * PG;
		uint64_t len = (1 + gvm_rng_below(&rng, 30)) * PG;
		unsigned int before[N], expect = 0, hits;

		for (int i = 0; i < N; i++)
			before[i] = rec_count(&rc[i]);
		hits = gvm__mm_invalidate(mm, s, len, GVM_MM_EVENT_MIGRATE);
		for (int i = 0; i < N; i++) {
			bool overlap = rc[i].n.start <= s + len - 1 &&
				       rc[i].n.last >= s;

			expect += overlap;
			ASSERT_EQ(rec_count(&rc[i]) - before[i], overlap);
			if (overlap) {
				struct gvm_notifier_range *g =
					&rc[i].got[(rc[i].nr - 1) % REC_MAX];

				ASSERT_EQ(g->start, s);
				ASSERT_EQ(g->last, s + len - 1);
				ASSERT_EQ(g->event, GVM_MM_EVENT_MIGRATE);
			}
		}
		ASSERT_EQ(hits, expect);
	}
	for (int i = 0; i < N; i++)
		rec_remove(&rc[i]);
	ASSERT_EQ(gvm__notifier_count(mm), 0);
	gvm_mm_put(mm);
}

/*
 * Stamps: an invalidation carrying a stamp skips the notifiers inserted
 * after the stamp was taken; stamp 0 hits every overlap.  Random notifiers,
 * stamps taken between their inserts, random ranges and stamps, against a
 * brute-force model.
 */
static void stub_destroy(struct gvm_mm *mm)
{
	(void)mm;
}

/* An mm with no backend: stamps are brought by the test, not a thread. */
static const struct gvm_mm_ops stub_ops = {
	.name = "test-stub",
	.destroy = stub_destroy,
};

TEST(notifier_stamps_skip_notifiers_inserted_later)
{
	struct gvm_mm stub, *mm = &stub;
	struct gvm_rng rng = { gvm_test_seed() };
	enum { N = 100 };
	static struct rec rc[N];
	uint64_t stamp_before[N + 1];	/* stamp taken before insert i */

	gvm__mm_init(mm, &stub_ops);

	for (int i = 0; i < N; i++) {
		uint64_t s = (1 + gvm_rng_below(&rng, 500)) * PG;
		uint64_t len = (1 + gvm_rng_below(&rng, 50)) * PG;

		gvm__notifier_stamp_begin(mm);
		stamp_before[i] = gvm__notifier_stamp_end(mm, true);
		if (i)
			ASSERT_GT(stamp_before[i], stamp_before[i - 1]);
		memset(&rc[i], 0, sizeof(rc[i]));
		pthread_mutex_init(&rc[i].lock, NULL);
		ASSERT_OK(gvm__notifier_insert(mm, &rc[i].n, s, len, &rec_ops));
	}
	gvm__notifier_stamp_begin(mm);
	ASSERT_EQ(gvm__notifier_stamp_end(mm, false), 0);	/* no stamp */
	gvm__notifier_stamp_begin(mm);
	stamp_before[N] = gvm__notifier_stamp_end(mm, true);
	for (int q = 0; q < 300; q++) {
		uint64_t s = gvm_rng_below(&rng, 600) * PG;
		uint64_t len = (1 + gvm_rng_below(&rng, 30)) * PG;
		/* stamp 0, or the one taken before notifier k's insert */
		unsigned int k = (unsigned int)gvm_rng_below(&rng, N + 2);
		struct gvm_notifier_range r = {
			.start = s,
			.last = s + len - 1,
			.event = GVM_MM_EVENT_UNMAP,
			.stamp = k <= N ? stamp_before[k] : 0,
		};
		unsigned int before[N], expect = 0, hits;

		for (int i = 0; i < N; i++)
			before[i] = rec_count(&rc[i]);
		hits = gvm__notifier_invalidate(mm, &r);
		for (int i = 0; i < N; i++) {
			bool hit = rc[i].n.start <= r.last && rc[i].n.last >= s &&
				   (!r.stamp || (unsigned int)i < k);

			expect += hit;
			ASSERT_EQ(rec_count(&rc[i]) - before[i], hit);
		}
		ASSERT_EQ(hits, expect);
	}
	for (int i = 0; i < N; i++)
		rec_remove(&rc[i]);
	gvm__mm_fini(mm);
}

TEST(notifier_sequence_protocol)
{
	struct gvm_mm *mm = mm_self();
	struct rec rc;
	uint64_t seq, seq2;

	memset(&rc, 0, sizeof(rc));
	pthread_mutex_init(&rc.lock, NULL);
	ASSERT_OK(gvm__notifier_insert(mm, &rc.n, 0x10000, 0x4000, &rec_ops));
	seq = gvm__notifier_read_begin(&rc.n);
	ASSERT_FALSE(gvm__notifier_read_retry(&rc.n, seq));
	/* A range next to it changes nothing. */
	ASSERT_EQ(gvm__mm_invalidate(mm, 0x14000, 0x1000, GVM_MM_EVENT_UNMAP),
		  0);
	ASSERT_FALSE(gvm__notifier_read_retry(&rc.n, seq));
	ASSERT_EQ(gvm__mm_invalidate(mm, 0x13000, 0x1000, GVM_MM_EVENT_UNMAP),
		  1);
	ASSERT_TRUE(gvm__notifier_read_retry(&rc.n, seq));
	seq2 = gvm__notifier_read_begin(&rc.n);
	ASSERT_NE(seq2, seq);
	ASSERT_EQ(seq2, rc.last_seq);
	ASSERT_TRUE(seq2 & 1);		/* the odd value of its invalidation */
	ASSERT_FALSE(gvm__notifier_read_retry(&rc.n, seq2));
	rec_remove(&rc);
	gvm_mm_put(mm);
}

/* -- two passes -- */

struct tp {
	struct gvm_notifier n;
	struct gvm_notifier_finish finish;
	pthread_mutex_t lock;		/* the "notifier_lock" */
	bool defer;
	unsigned int id;
};

static uint32_t tp_clock;		/* global order of callbacks */
static uint32_t tp_start_at[8], tp_finish_at[8];

static struct gvm_notifier_finish *tp_start(struct gvm_notifier *n,
					    const struct gvm_notifier_range *r,
					    uint64_t cur_seq)
{
	struct tp *t = gvm_container_of(n, struct tp, n);
	struct gvm_notifier_finish *f = NULL;

	pthread_mutex_lock(&t->lock);
	gvm__notifier_set_seq(n, cur_seq);
	tp_start_at[t->id] = 1 + gvm_fetch_add_relaxed(&tp_clock, 1);
	if (t->defer && gvm__notifier_finish_claim(&t->finish))
		f = &t->finish;
	pthread_mutex_unlock(&t->lock);
	return f;
}

static void tp_finish(struct gvm_notifier *n, struct gvm_notifier_finish *f,
		      const struct gvm_notifier_range *r)
{
	struct tp *t = gvm_container_of(n, struct tp, n);

	ASSERT_TRUE(f == &t->finish);
	ASSERT_TRUE(f->notifier == n);
	pthread_mutex_lock(&t->lock);
	tp_finish_at[t->id] = 1 + gvm_fetch_add_relaxed(&tp_clock, 1);
	gvm__notifier_finish_release(f);
	pthread_mutex_unlock(&t->lock);
}

static const struct gvm_notifier_ops tp_ops = {
	.invalidate_start = tp_start,
	.invalidate_finish = tp_finish,
};

TEST(notifier_two_pass_starts_all_before_any_finish)
{
	struct gvm_mm *mm = mm_self();
	struct tp t[6];

	for (unsigned int i = 0; i < 6; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		pthread_mutex_init(&t[i].lock, NULL);
		t[i].id = i;
		t[i].defer = i != 3;	/* one does everything in pass 1 */
		/* Same range for some, overlapping for others. */
		ASSERT_OK(gvm__notifier_insert(mm, &t[i].n, 0x100000 + i * PG,
					       16 * PG, &tp_ops));
	}
	ASSERT_EQ(gvm__mm_invalidate(mm, 0x100000, 64 * PG,
				     GVM_MM_EVENT_UNMAP), 6);
	for (unsigned int i = 0; i < 6; i++) {
		ASSERT_GE(tp_start_at[i], 1);
		ASSERT_LE(tp_start_at[i], 6);	/* every start came first */
		if (i == 3) {
			ASSERT_EQ(tp_finish_at[i], 0);
		} else {
			ASSERT_GT(tp_finish_at[i], 6);
			ASSERT_FALSE(t[i].finish.in_use);
		}
	}
	/* Finishes run in the order of the starts. */
	for (unsigned int i = 0; i + 1 < 6; i++)
		if (i != 3 && i + 1 != 3)
			ASSERT_LT(tp_finish_at[i], tp_finish_at[i + 1]);
	for (unsigned int i = 0; i < 6; i++)
		gvm__notifier_remove(&t[i].n);
	gvm_mm_put(mm);
}

/*
 * A notifier whose pass 1 or pass 2 blocks until told to go, to hold an
 * invalidation open while another thread acts.
 */
struct gate {
	struct gvm_notifier n;
	struct gvm_notifier_finish finish;
	pthread_mutex_t lock;
	uint32_t entered_start, entered_finish;	/* set by the callbacks */
	uint32_t go;				/* set by the test */
	uint32_t starts, finishes, one_pass;
	bool block_in_finish;
};

static void wait_go(struct gate *g)
{
	while (!gvm_load_acquire(&g->go))
		gvm_test_sleep_ns(100000);
}

static struct gvm_notifier_finish *gate_start(struct gvm_notifier *n,
					      const struct gvm_notifier_range *r,
					      uint64_t cur_seq)
{
	struct gate *g = gvm_container_of(n, struct gate, n);
	struct gvm_notifier_finish *f = NULL;

	pthread_mutex_lock(&g->lock);
	gvm__notifier_set_seq(n, cur_seq);
	gvm_fetch_add_relaxed(&g->starts, 1);
	if (g->block_in_finish) {
		if (gvm__notifier_finish_claim(&g->finish))
			f = &g->finish;
		else
			gvm_fetch_add_relaxed(&g->one_pass, 1);
	}
	pthread_mutex_unlock(&g->lock);
	if (!g->block_in_finish) {
		gvm_store_release(&g->entered_start, 1u);
		wait_go(g);
	}
	return f;
}

static void gate_finish(struct gvm_notifier *n, struct gvm_notifier_finish *f,
			const struct gvm_notifier_range *r)
{
	struct gate *g = gvm_container_of(n, struct gate, n);

	gvm_store_release(&g->entered_finish, 1u);
	wait_go(g);
	pthread_mutex_lock(&g->lock);
	gvm_fetch_add_relaxed(&g->finishes, 1);
	gvm__notifier_finish_release(f);
	pthread_mutex_unlock(&g->lock);
}

static const struct gvm_notifier_ops gate_ops = {
	.invalidate_start = gate_start,
	.invalidate_finish = gate_finish,
};

struct inval_arg {
	struct gvm_mm *mm;
	uint64_t start, len;
	uint32_t done;
};

static void *inval_thread(void *p)
{
	struct inval_arg *a = p;

	gvm__mm_invalidate(a->mm, a->start, a->len, GVM_MM_EVENT_MIGRATE);
	gvm_store_release(&a->done, 1u);
	return NULL;
}

static void gate_init(struct gvm_mm *mm, struct gate *g, uint64_t start,
		      uint64_t len, bool in_finish)
{
	memset(g, 0, sizeof(*g));
	pthread_mutex_init(&g->lock, NULL);
	g->block_in_finish = in_finish;
	ASSERT_OK(gvm__notifier_insert(mm, &g->n, start, len, &gate_ops));
}

TEST(notifier_finish_in_use_falls_back_to_one_pass)
{
	struct gvm_mm *mm = mm_self();
	struct inval_arg a1 = { mm, 0x200000, PG, 0 };
	struct inval_arg a2 = { mm, 0x200000, PG, 0 };
	struct gate g;
	pthread_t t1, t2;

	gate_init(mm, &g, 0x200000, 4 * PG, true);
	/* First invalidation claims the finish state and parks in pass 2. */
	ASSERT_OK(pthread_create(&t1, NULL, inval_thread, &a1));
	gvm_test_wait_flag(&g.entered_finish);
	/* A second one over the same notifier: in use, so one pass. */
	ASSERT_OK(pthread_create(&t2, NULL, inval_thread, &a2));
	ASSERT_OK(pthread_join(t2, NULL));
	ASSERT_EQ(gvm_load_relaxed(&g.starts), 2);
	ASSERT_EQ(gvm_load_relaxed(&g.one_pass), 1);
	ASSERT_EQ(gvm_load_relaxed(&g.finishes), 0);
	ASSERT_FALSE(gvm_load_acquire(&a1.done));
	gvm_store_release(&g.go, 1u);
	ASSERT_OK(pthread_join(t1, NULL));
	ASSERT_EQ(gvm_load_relaxed(&g.finishes), 1);
	ASSERT_FALSE(g.finish.in_use);
	gvm__notifier_remove(&g.n);
	gvm_mm_put(mm);
}

struct reader_arg {
	struct gvm_notifier *n;
	uint64_t seq;
	uint32_t done;
};

static void *read_begin_thread(void *p)
{
	struct reader_arg *a = p;

	a->seq = gvm__notifier_read_begin(a->n);
	gvm_store_release(&a->done, 1u);
	return NULL;
}

TEST(notifier_read_begin_waits_for_running_invalidation)
{
	struct gvm_mm *mm = mm_self();
	struct inval_arg ia = { mm, 0x300000, PG, 0 };
	struct reader_arg ra;
	struct gate g;
	uint64_t before;
	pthread_t ti, tr;

	gate_init(mm, &g, 0x300000, 4 * PG, false);
	before = gvm__notifier_read_begin(&g.n);
	ASSERT_OK(pthread_create(&ti, NULL, inval_thread, &ia));
	gvm_test_wait_flag(&g.entered_start);	/* pass 1 has set_seq'd */
	ASSERT_TRUE(gvm__notifier_read_retry(&g.n, before));

	ra = (struct reader_arg){ .n = &g.n };
	ASSERT_OK(pthread_create(&tr, NULL, read_begin_thread, &ra));
	gvm_test_sleep_ns(20 * 1000 * 1000);
	ASSERT_FALSE(gvm_load_acquire(&ra.done));	/* still waiting */
	gvm_store_release(&g.go, 1u);
	ASSERT_OK(pthread_join(ti, NULL));
	ASSERT_OK(pthread_join(tr, NULL));
	ASSERT_NE(ra.seq, before);
	ASSERT_FALSE(gvm__notifier_read_retry(&g.n, ra.seq));
	gvm__notifier_remove(&g.n);
	gvm_mm_put(mm);
}

struct remove_arg {
	struct gvm_notifier *n;
	uint32_t done;
};

static void *remove_thread(void *p)
{
	struct remove_arg *a = p;

	gvm__notifier_remove(a->n);
	gvm_store_release(&a->done, 1u);
	return NULL;
}

TEST(notifier_remove_waits_for_running_invalidation)
{
	struct gvm_mm *mm = mm_self();
	struct inval_arg ia = { mm, 0x400000, 8 * PG, 0 };
	struct remove_arg ra;
	struct gate g;
	struct rec rc;
	pthread_t ti, tr;

	/* g comes first in the walk and holds the invalidation open. */
	gate_init(mm, &g, 0x400000, PG, false);
	memset(&rc, 0, sizeof(rc));
	pthread_mutex_init(&rc.lock, NULL);
	ASSERT_OK(gvm__notifier_insert(mm, &rc.n, 0x404000, PG, &rec_ops));

	ASSERT_OK(pthread_create(&ti, NULL, inval_thread, &ia));
	gvm_test_wait_flag(&g.entered_start);
	ra = (struct remove_arg){ .n = &rc.n };
	ASSERT_OK(pthread_create(&tr, NULL, remove_thread, &ra));
	gvm_test_sleep_ns(20 * 1000 * 1000);
	ASSERT_FALSE(gvm_load_acquire(&ra.done));	/* waits for it */
	gvm_store_release(&g.go, 1u);
	ASSERT_OK(pthread_join(tr, NULL));
	ASSERT_OK(pthread_join(ti, NULL));
	/* It was in the tree when the walk began, so it was called. */
	ASSERT_EQ(rec_count(&rc), 1);
	/* Removed: later invalidations do not reach it. */
	gvm_store_release(&g.go, 1u);
	gvm__mm_invalidate(mm, 0x400000, 8 * PG, GVM_MM_EVENT_MIGRATE);
	ASSERT_EQ(rec_count(&rc), 1);
	ASSERT_EQ(gvm__notifier_count(mm), 1);
	gvm__notifier_remove(&g.n);
	ASSERT_EQ(gvm__notifier_count(mm), 0);
	gvm_mm_put(mm);
}

TEST(notifier_insert_during_invalidation_is_deferred)
{
	struct gvm_mm *mm = mm_self();
	struct inval_arg ia = { mm, 0x500000, 8 * PG, 0 };
	struct reader_arg ra;
	struct gate g;
	struct rec a, b;
	pthread_t ti, tr;

	gate_init(mm, &g, 0x500000, PG, false);
	ASSERT_OK(pthread_create(&ti, NULL, inval_thread, &ia));
	gvm_test_wait_flag(&g.entered_start);

	/* Inserted while it runs: not called, but read_begin waits. */
	memset(&a, 0, sizeof(a));
	pthread_mutex_init(&a.lock, NULL);
	ASSERT_OK(gvm__notifier_insert(mm, &a.n, 0x502000, PG, &rec_ops));
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.lock, NULL);
	ASSERT_OK(gvm__notifier_insert(mm, &b.n, 0x503000, PG, &rec_ops));
	ASSERT_EQ(gvm__notifier_count(mm), 3);
	gvm__notifier_remove(&b.n);		/* never reached the tree */
	ASSERT_EQ(gvm__notifier_count(mm), 2);

	ra = (struct reader_arg){ .n = &a.n };
	ASSERT_OK(pthread_create(&tr, NULL, read_begin_thread, &ra));
	gvm_test_sleep_ns(20 * 1000 * 1000);
	ASSERT_FALSE(gvm_load_acquire(&ra.done));
	gvm_store_release(&g.go, 1u);
	ASSERT_OK(pthread_join(ti, NULL));
	ASSERT_OK(pthread_join(tr, NULL));
	ASSERT_EQ(rec_count(&a), 0);
	ASSERT_FALSE(gvm__notifier_read_retry(&a.n, ra.seq));

	/* Now in the tree. */
	gvm__mm_invalidate(mm, 0x502000, PG, GVM_MM_EVENT_MIGRATE);
	ASSERT_EQ(rec_count(&a), 1);
	ASSERT_EQ(rec_count(&b), 0);
	ASSERT_TRUE(gvm__notifier_read_retry(&a.n, ra.seq));
	rec_remove(&a);
	gvm__notifier_remove(&g.n);
	ASSERT_EQ(gvm__notifier_count(mm), 0);
	gvm_mm_put(mm);
}

struct sync_arg {
	struct gvm_mm *mm;
	int err;
	uint32_t done;
};

static void *sync_thread(void *p)
{
	struct sync_arg *a = p;

	a->err = gvm__mm_sync(a->mm);
	gvm_store_release(&a->done, 1u);
	return NULL;
}

/*
 * gvm__mm_sync() while another thread holds an invalidation open (as a
 * migration does): inserts are deferred then, so a sync that waited for a
 * notifier of its own to be hit missed its event and never returned
 * (seen under TSan in `gvm run svm-multi`).  It must return while the
 * other invalidation is still held.
 */
TEST(sync_returns_while_another_invalidation_runs)
{
	struct gvm_mm *mm = mm_self();
	struct inval_arg ia = { mm, 0x600000, PG, 0 };
	struct sync_arg sa = { mm, -1, 0 };
	struct gate g;
	pthread_t ti, ts;

	gate_init(mm, &g, 0x600000, PG, false);
	ASSERT_OK(pthread_create(&ti, NULL, inval_thread, &ia));
	gvm_test_wait_flag(&g.entered_start);

	ASSERT_OK(pthread_create(&ts, NULL, sync_thread, &sa));
	gvm_test_wait_flag(&sa.done);
	ASSERT_OK(sa.err);
	ASSERT_FALSE(gvm_load_acquire(&ia.done));	/* still held */

	gvm_store_release(&g.go, 1u);
	ASSERT_OK(pthread_join(ti, NULL));
	ASSERT_OK(pthread_join(ts, NULL));
	gvm__notifier_remove(&g.n);
	ASSERT_EQ(gvm__notifier_count(mm), 0);
	gvm_mm_put(mm);
}

/*
 * The protocol under a real race: a "driver" commits what it fetched only if
 * read_retry says no invalidation came in between, under its lock; an
 * "mm" changes the backing (gen++) and then invalidates, like an UNMAP
 * event (after the fact).  After each invalidation returns, the committed
 * mapping must be either zapped or current.
 */
struct race {
	struct gvm_notifier n;
	pthread_mutex_t lock;		/* notifier_lock */
	uint64_t gen;			/* the backing; atomic */
	int64_t committed;		/* -1 zapped, else the gen fetched */
	uint32_t stop;
	uint64_t commits, retries;
};

static struct gvm_notifier_finish *race_start(struct gvm_notifier *n,
					      const struct gvm_notifier_range *r,
					      uint64_t cur_seq)
{
	struct race *x = gvm_container_of(n, struct race, n);

	pthread_mutex_lock(&x->lock);
	gvm__notifier_set_seq(n, cur_seq);
	x->committed = -1;
	pthread_mutex_unlock(&x->lock);
	return NULL;
}

static const struct gvm_notifier_ops race_ops = {
	.invalidate_start = race_start,
};

static void *race_driver(void *p)
{
	struct race *x = p;

	while (!gvm_load_acquire(&x->stop)) {
		uint64_t seq = gvm__notifier_read_begin(&x->n);
		int64_t fetched = (int64_t)gvm_load_acquire(&x->gen);

		pthread_mutex_lock(&x->lock);
		if (gvm__notifier_read_retry(&x->n, seq)) {
			x->retries++;
		} else {
			x->committed = fetched;
			x->commits++;
		}
		pthread_mutex_unlock(&x->lock);
	}
	return NULL;
}

TEST(notifier_read_retry_protocol_under_concurrent_invalidation)
{
	struct gvm_mm *mm = mm_self();
	const uint64_t rounds = gvm_test_scale(20000);
	struct race x;
	pthread_t t[2];

	memset(&x, 0, sizeof(x));
	pthread_mutex_init(&x.lock, NULL);
	x.committed = -1;
	ASSERT_OK(gvm__notifier_insert(mm, &x.n, 0x600000, 16 * PG,
				       &race_ops));
	for (int i = 0; i < 2; i++)
		ASSERT_OK(pthread_create(&t[i], NULL, race_driver, &x));
	for (uint64_t r = 0; r < rounds; r++) {
		if (r % 64 == 0) {
			/* Let a commit through now and then (the drivers
			   cannot win while invalidations come back to back). */
			uint64_t c;

			pthread_mutex_lock(&x.lock);
			c = x.commits;
			pthread_mutex_unlock(&x.lock);
			for (;;) {
				pthread_mutex_lock(&x.lock);
				bool moved = x.commits != c;
				pthread_mutex_unlock(&x.lock);
				if (moved)
					break;
				sched_yield();
			}
		}
		gvm_fetch_add_acq_rel(&x.gen, 1);
		gvm__mm_invalidate(mm, 0x600000 + (r % 16) * PG, PG,
				   GVM_MM_EVENT_UNMAP);
		pthread_mutex_lock(&x.lock);
		ASSERT_TRUE(x.committed == -1 ||
			    x.committed == (int64_t)gvm_load_relaxed(&x.gen));
		pthread_mutex_unlock(&x.lock);
	}
	gvm_store_release(&x.stop, 1u);
	for (int i = 0; i < 2; i++)
		ASSERT_OK(pthread_join(t[i], NULL));
	printf("%" PRIu64 " invalidations, %" PRIu64 " commits, %" PRIu64
	       " retries\n", rounds, x.commits, x.retries);
	ASSERT_GT(x.commits, 0);
	gvm__notifier_remove(&x.n);
	gvm_mm_put(mm);
}

/*
 * Inserts and removes racing with invalidations from two threads, on real
 * threads or (@det) on the deterministic scheduler seeded with the test's
 * seed: its threads are then gvm threads (gvm__thread_create), the mm
 * made before the run (its event thread, idle here, is not the run's),
 * and a failure writes a replay file (GVM_TEST_REPLAY=FILE).
 */
struct churn {
	struct gvm_mm *mm;
	uint32_t stop;
	uint64_t seed;
};

static void *churn_inval(void *p)
{
	struct churn *c = p;
	struct gvm_rng rng = { c->seed };

	while (!gvm_load_acquire(&c->stop))
		gvm__mm_invalidate(c->mm, gvm_rng_below(&rng, 64) * PG,
				   (1 + gvm_rng_below(&rng, 8)) * PG,
				   GVM_MM_EVENT_MIGRATE);
	return NULL;
}

static void notifier_churn(bool det, uint64_t rounds)
{
	struct gvm_mm *mm = mm_self();
	struct churn c = { mm, 0, gvm_test_seed() };
	struct gvm_rng rng = { gvm_test_seed() ^ 1 };
	enum { N = 32 };
	static struct rec rc[N];
	bool live[N] = { false };
	pthread_t t[2];

	if (det)
		gvm_test_det_begin();
	for (int i = 0; i < 2; i++)
		ASSERT_OK(gvm__thread_create(&t[i], churn_inval, &c));
	for (uint64_t r = 0; r < rounds; r++) {
		int i = (int)gvm_rng_below(&rng, N);

		if (live[i]) {
			rec_remove(&rc[i]);
		} else {
			memset(&rc[i], 0, sizeof(rc[i]));
			pthread_mutex_init(&rc[i].lock, NULL);
			ASSERT_OK(gvm__notifier_insert(
				mm, &rc[i].n, gvm_rng_below(&rng, 64) * PG,
				(1 + gvm_rng_below(&rng, 8)) * PG, &rec_ops));
			/* Not being invalidated once read_begin returns. */
			(void)gvm__notifier_read_begin(&rc[i].n);
		}
		live[i] = !live[i];
	}
	gvm_store_release(&c.stop, 1u);
	for (int i = 0; i < 2; i++)
		ASSERT_OK(gvm__thread_join(t[i]));
	for (int i = 0; i < N; i++)
		if (live[i])
			rec_remove(&rc[i]);
	ASSERT_EQ(gvm__notifier_count(mm), 0);
	ASSERT_OK(gvm__itree_validate(&mm->subs.tree));
	if (det)
		gvm_test_det_end();
	gvm_mm_put(mm);
}

TEST(notifier_insert_remove_race_with_invalidations)
{
	notifier_churn(false, gvm_test_scale(20000));
}

TEST(notifier_insert_remove_race_with_invalidations_det)
{
	notifier_churn(true, gvm_test_scale(5000));
}

/* ---- events from real CPU mapping changes --------------------------------- */

TEST(event_munmap_whole_and_part)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(20, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct rec rc;

	rec_insert(mm, &rc, p, 16 * PG);
	ASSERT_OK(gvm__mm_register(mm, u(p), 20 * PG));
	memset(p, 1, 16 * PG);
	ASSERT_OK(munmap(p + 4 * PG, 2 * PG));		/* a hole inside */
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 1);
	rec_expect(&rc, 0, GVM_MM_EVENT_UNMAP, p + 4 * PG, 2 * PG);

	ASSERT_OK(munmap(p + 14 * PG, 4 * PG));	/* tail, past the end */
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 2);
	rec_expect(&rc, 1, GVM_MM_EVENT_UNMAP, p + 14 * PG, 4 * PG);

	ASSERT_OK(munmap(p, 20 * PG));			/* the rest, holes too */
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 3);
	rec_expect(&rc, 2, GVM_MM_EVENT_UNMAP, p, 20 * PG);
	rec_remove(&rc);
	gvm_mm_put(mm);
}

/* Unmapping memory next to (but outside) a notifier does not reach it. */
TEST(event_outside_the_notifier_is_not_seen)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(8, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct rec rc;

	rec_insert(mm, &rc, p + 2 * PG, 2 * PG);
	ASSERT_OK(gvm__mm_register(mm, u(p), 8 * PG));
	ASSERT_OK(munmap(p + 6 * PG, 2 * PG));
	ASSERT_OK(munmap(p, 2 * PG));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 0);
	ASSERT_OK(munmap(p + 2 * PG, 4 * PG));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 1);
	rec_expect(&rc, 0, GVM_MM_EVENT_UNMAP, p + 2 * PG, 4 * PG);
	rec_remove(&rc);
	gvm_mm_put(mm);
}

/* UNMAP comes after the fact: the callback finds the memory gone. */
static struct gvm_notifier_finish *
gone_start(struct gvm_notifier *n, const struct gvm_notifier_range *r,
	   uint64_t cur_seq)
{
	unsigned char v;
	uint32_t *seen_unmapped = (uint32_t *)((char *)n + sizeof(*n));

	/* The old page, which was resident, is gone already. */
	if (!mincore((void *)(uintptr_t)r->start, PG, &v) && !(v & 1))
		gvm_store_release(seen_unmapped, 1u);
	gvm_store_release(seen_unmapped + 1, 1u);	/* called */
	return NULL;
}

TEST(event_unmap_arrives_after_the_fact)
{
	static const struct gvm_notifier_ops ops = {
		.invalidate_start = gone_start };
	struct {
		struct gvm_notifier n;
		uint32_t seen_unmapped;
		uint32_t called;
	} g = { .seen_unmapped = 0, .called = 0 };
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);

	ASSERT_EQ(offsetof(__typeof__(g), seen_unmapped), sizeof(g.n));
	ASSERT_OK(gvm__notifier_insert(mm, &g.n, u(p), 4 * PG, &ops));
	ASSERT_OK(gvm__mm_register(mm, u(p), 4 * PG));
	memset(p, 7, 4 * PG);
	/* Replaced rather than unmapped (an UNMAP event all the same), so
	   that no other mapping can take the address meanwhile. */
	ASSERT_TRUE(mmap(p, 4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
			 MAP_FIXED, -1, 0) == p);
	gvm_test_wait_flag(&g.called);
	ASSERT_EQ(gvm_load_acquire(&g.seen_unmapped), 1);
	ASSERT_OK(munmap(p, 4 * PG));
	gvm__notifier_remove(&g.n);
	gvm_mm_put(mm);
}

TEST(event_madvise_dontneed_and_free)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(8, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct gvm_mm_self_stats st;
	struct rec rc;

	rec_insert(mm, &rc, p, 8 * PG);
	memset(p, 3, 8 * PG);
	ASSERT_OK(madvise(p + PG, 2 * PG, MADV_DONTNEED));
	ASSERT_EQ(p[PG], 0);			/* zapped: zero-fill again */
	ASSERT_EQ(p[0], 3);
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 1);
	rec_expect(&rc, 0, GVM_MM_EVENT_REMOVE, p + PG, 2 * PG);

	ASSERT_OK(madvise(p + 4 * PG, 4 * PG, MADV_FREE));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 2);
	rec_expect(&rc, 1, GVM_MM_EVENT_REMOVE, p + 4 * PG, 4 * PG);
	gvm__mm_self_stats(mm, &st);
	ASSERT_GE(st.remove, 2);
	rec_remove(&rc);
	ASSERT_OK(munmap(p, 8 * PG));
	gvm_mm_put(mm);
}

TEST(event_madvise_remove_on_shared_memory)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(4, PROT_READ | PROT_WRITE, MAP_SHARED);
	struct rec rc;

	rec_insert(mm, &rc, p, 4 * PG);
	memset(p, 3, 4 * PG);
	ASSERT_OK(madvise(p, 2 * PG, MADV_REMOVE));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 1);
	rec_expect(&rc, 0, GVM_MM_EVENT_REMOVE, p, 2 * PG);
	rec_remove(&rc);
	ASSERT_OK(munmap(p, 4 * PG));
	gvm_mm_put(mm);
}

TEST(event_mremap_move_invalidates_the_old_range)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(8, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	char *dst = map_anon(8, PROT_NONE, MAP_PRIVATE);	/* a free spot */
	struct rec rc, rd;
	char *q;

	rec_insert(mm, &rc, p, 8 * PG);
	ASSERT_OK(munmap(dst, 8 * PG));
	memset(p, 5, 8 * PG);
	q = mremap(p + 2 * PG, 4 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_FIXED,
		   dst);
	ASSERT_TRUE(q == dst);
	ASSERT_EQ(q[0], 5);
	ASSERT_OK(gvm__mm_sync(mm));
	/* The kernel reports REMAP (from, to, len), then the old range's
	   UNMAP: both invalidate the old range, nothing else. */
	ASSERT_EQ(rec_count(&rc), 2);
	rec_expect(&rc, 0, GVM_MM_EVENT_REMAP, p + 2 * PG, 4 * PG);
	rec_expect(&rc, 1, GVM_MM_EVENT_UNMAP, p + 2 * PG, 4 * PG);

	/* The moved pages stay registered: a notifier there sees changes. */
	rec_insert(mm, &rd, q, 4 * PG);
	ASSERT_OK(munmap(q, 4 * PG));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rd), 1);
	rec_expect(&rd, 0, GVM_MM_EVENT_UNMAP, q, 4 * PG);
	ASSERT_EQ(rec_count(&rc), 2);
	rec_remove(&rd);
	rec_remove(&rc);
	ASSERT_OK(munmap(p, 8 * PG));
	gvm_mm_put(mm);
}

TEST(event_mremap_shrink_unmaps_the_tail)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(8, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct rec rc;

	rec_insert(mm, &rc, p, 8 * PG);
	ASSERT_TRUE(mremap(p, 8 * PG, 3 * PG, 0) == p);
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 1);
	rec_expect(&rc, 0, GVM_MM_EVENT_UNMAP, p + 3 * PG, 5 * PG);
	/* Growing back in place maps new memory: no event. */
	ASSERT_TRUE(mremap(p, 3 * PG, 8 * PG, 0) == p);
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 1);
	rec_remove(&rc);
	ASSERT_OK(munmap(p, 8 * PG));
	gvm_mm_put(mm);
}

TEST(event_mmap_fixed_over_a_registered_range)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(8, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct rec rc;
	void *q;

	rec_insert(mm, &rc, p, 8 * PG);
	q = mmap(p + 2 * PG, 2 * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS |
		 MAP_FIXED, -1, 0);
	ASSERT_TRUE(q == p + 2 * PG);
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 1);
	rec_expect(&rc, 0, GVM_MM_EVENT_UNMAP, p + 2 * PG, 2 * PG);

	/* The new mapping is not registered until someone registers it:
	   replacing it (one mmap(MAP_FIXED): a munmap() first would open a
	   hole another thread's mapping could take) raises nothing. */
	q = mmap(q, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE |
		 MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_TRUE(q == p + 2 * PG);
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 1);
	ASSERT_OK(gvm__mm_register(mm, u(q), 2 * PG));
	ASSERT_OK(munmap(q, 2 * PG));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 2);
	rec_expect(&rc, 1, GVM_MM_EVENT_UNMAP, q, 2 * PG);
	rec_remove(&rc);
	/* Around q's hole only: something else may be mapped there now. */
	ASSERT_OK(munmap(p, 2 * PG));
	ASSERT_OK(munmap(p + 4 * PG, 4 * PG));
	gvm_mm_put(mm);
}

TEST(event_free_of_malloc_memory)
{
	struct gvm_mm *mm = mm_self();
	size_t len = 1 << 20;	/* above glibc's mmap threshold */
	char *p = malloc(len + PG);
	uint64_t start, end;
	struct rec rc;

	if (UNDER_ASAN) {
		/* ASan's allocator keeps freed memory mapped (quarantine). */
		printf("skipped under AddressSanitizer\n");
		free(p);
		gvm_mm_put(mm);
		return;
	}
	ASSERT_TRUE(p != NULL);
	memset(p, 1, len);
	start = (u(p) + PG - 1) & ~(PG - 1);
	end = (u(p) + len) & ~(PG - 1);
	rec_insert(mm, &rc, (void *)(uintptr_t)start, end - start);
	free(p);
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_GE(rec_count(&rc), 1);	/* munmap (or trim) reached it */
	pthread_mutex_lock(&rc.lock);
	ASSERT_TRUE(rc.got[0].event == GVM_MM_EVENT_UNMAP ||
		    rc.got[0].event == GVM_MM_EVENT_REMOVE);
	ASSERT_LE(rc.got[0].start, end - 1);
	ASSERT_GE(rc.got[0].last, start);
	pthread_mutex_unlock(&rc.lock);
	rec_remove(&rc);
	gvm_mm_put(mm);
}

/*
 * fork: the parent's private memory becomes copy-on-write, so its notifier
 * is invalidated (FORK); shared memory is not.  The child's copy of the
 * registration is dropped, the parent's stays.
 */
TEST(event_fork_invalidates_private_memory)
{
	struct gvm_mm *mm;
	char *p, *sh;
	struct rec rp, rs;
	struct gvm_mm_self_stats st;
	int status;
	pid_t pid;

	if (UNDER_TSAN) {
		/* TSan does not support fork() in a multithreaded process. */
		printf("skipped under ThreadSanitizer\n");
		return;
	}
	if (UNDER_ASAN) {
		/*
		 * Under ASan the child's munmap sometimes never returns: it
		 * waits in userfaultfd_event_wait_completion for the UNMAP
		 * event of the uffd context the kernel made for it at fork,
		 * although the parent read the FORK event and closed that
		 * context's fd (seen 3 times in 6 on Linux 6.18, on the
		 * previous main too; never without ASan).  Not understood
		 * yet: skipped rather than flaky.
		 */
		printf("skipped under AddressSanitizer\n");
		return;
	}
	mm = mm_self();
	p = map_anon(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	sh = map_anon(4, PROT_READ | PROT_WRITE, MAP_SHARED);
	rec_insert(mm, &rp, p, 4 * PG);
	rec_insert(mm, &rs, sh, 4 * PG);
	memset(p, 1, 4 * PG);
	memset(sh, 1, 4 * PG);

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct gvm_mm *cm;

		/* The child's registration is gone: munmap cannot block. */
		p[0] = 2;
		sh[0] = 2;
		munmap(p, 4 * PG);
		/* And the child can have its own. */
		if (gvm_mm_self(&cm))
			_exit(3);
		gvm_mm_put(cm);
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	ASSERT_OK(gvm__mm_sync(mm));
	gvm__mm_self_stats(mm, &st);
	ASSERT_EQ(st.fork, 1);
	ASSERT_EQ(rec_count(&rp), 1);
	pthread_mutex_lock(&rp.lock);
	ASSERT_EQ(rp.got[0].event, GVM_MM_EVENT_FORK);
	ASSERT_LE(rp.got[0].start, u(p));
	ASSERT_GE(rp.got[0].last, u(p) + 4 * PG - 1);
	pthread_mutex_unlock(&rp.lock);
	ASSERT_EQ(rec_count(&rs), 0);

	/* The parent is unaffected: its memory and its events. */
	ASSERT_EQ(p[0], 1);
	ASSERT_EQ(sh[0], 2);
	p[1] = 9;
	ASSERT_OK(munmap(p, 4 * PG));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rp), 2);
	rec_expect(&rp, 1, GVM_MM_EVENT_UNMAP, p, 4 * PG);
	rec_remove(&rp);
	rec_remove(&rs);
	ASSERT_OK(munmap(sh, 4 * PG));
	gvm_mm_put(mm);
}

/*
 * Without CAP_SYS_PTRACE the kernel refuses EVENT_FORK (simulated with
 * gvm__mm_self_refuse_fork): gvm_mm_self() still works, without FORK.
 * The other events are still seen; a fork() is not (the documented loss),
 * and the child is not held up by the parent's registrations.
 */
TEST(self_without_fork_feature)
{
	struct gvm_mm_self_stats st;
	struct gvm_mm *mm;
	struct rec rp;
	uint64_t f;
	int status;
	pid_t pid;
	char *p;

	gvm__mm_self_refuse_fork = true;
	mm = mm_self();
	f = gvm__mm_self_features(mm);
	ASSERT_FALSE(f & UFFD_FEATURE_EVENT_FORK);
	ASSERT_TRUE(f & UFFD_FEATURE_EVENT_UNMAP);
	ASSERT_TRUE(f & UFFD_FEATURE_EVENT_REMAP);

	p = map_anon(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	rec_insert(mm, &rp, p, 4 * PG);
	memset(p, 1, 4 * PG);
	if (!UNDER_TSAN) {
		pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0) {
			p[0] = 2;
			munmap(p, 4 * PG);
			_exit(0);
		}
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(WEXITSTATUS(status), 0);
		ASSERT_OK(gvm__mm_sync(mm));
		gvm__mm_self_stats(mm, &st);
		ASSERT_EQ(st.fork, 0);
		ASSERT_EQ(rec_count(&rp), 0);	/* not invalidated */
	}
	ASSERT_OK(munmap(p + PG, PG));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rp), 1);
	rec_expect(&rp, 0, GVM_MM_EVENT_UNMAP, p + PG, PG);
	rec_remove(&rp);
	ASSERT_OK(munmap(p, 4 * PG));
	gvm_mm_put(mm);
	gvm__mm_self_refuse_fork = false;
}

/* ---- ordering: when the kernel reports, flush, stamps ---------------------- */

struct causer {
	char *p;
	int advice;			/* 0: munmap */
	uint32_t returned;		/* atomic */
};

static void *causer_thread(void *arg)
{
	struct causer *c = arg;

	if (c->advice)
		ASSERT_OK(madvise(c->p, PG, c->advice));
	else
		ASSERT_OK(munmap(c->p, PG));
	gvm_store_release(&c->returned, 1u);
	return NULL;
}

/*
 * What gvm_mm_flush() relies on, checked on a userfaultfd of the test's own,
 * read by hand: munmap and madvise(MADV_DONTNEED) return only after their
 * event was read.  Once the event is queued (poll) the call has not
 * returned; after the read it returns with nothing else done.  munmap's
 * page is already gone when its UNMAP is queued (after the fact);
 * madvise's page is still mapped with its data when its REMOVE is queued
 * (before the zap) and reads zero once madvise has returned.  (If the
 * kernel did not wait, the "not returned" checks could pass by luck, but
 * never fail wrongly.)
 */
TEST(kernel_returns_from_munmap_and_madvise_after_the_read)
{
	static const int advice[] = { 0, MADV_DONTNEED };
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE,
	};
	int fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	ASSERT_GE(fd, 0);
	ASSERT_OK(ioctl(fd, UFFDIO_API, &api));
	for (int i = 0; i < 2; i++) {
		struct causer c = { .advice = advice[i], .returned = 0 };
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		struct uffdio_register r = { .mode = UFFDIO_REGISTER_MODE_WP };
		struct uffd_msg msg;
		unsigned char v;
		pthread_t t;

		c.p = map_anon(1, PROT_READ | PROT_WRITE, MAP_PRIVATE);
		memset(c.p, 0x5a, PG);
		r.range.start = u(c.p);
		r.range.len = PG;
		ASSERT_OK(ioctl(fd, UFFDIO_REGISTER, &r));
		ASSERT_OK(pthread_create(&t, NULL, causer_thread, &c));
		ASSERT_EQ(poll(&pfd, 1, -1), 1);	/* the event is queued */
		ASSERT_EQ(gvm_load_acquire(&c.returned), 0);
		if (c.advice) {
			ASSERT_OK(mincore(c.p, PG, &v));
			ASSERT_TRUE(v & 1);
			ASSERT_EQ(c.p[0], 0x5a);
		} else {
			ASSERT_EQ(mincore(c.p, PG, &v), -1);
			ASSERT_EQ(errno, ENOMEM);
		}
		ASSERT_EQ(gvm_load_acquire(&c.returned), 0);
		ASSERT_EQ(read(fd, &msg, sizeof(msg)), (ssize_t)sizeof(msg));
		ASSERT_EQ(msg.event, c.advice ? UFFD_EVENT_REMOVE :
						UFFD_EVENT_UNMAP);
		ASSERT_EQ(msg.arg.remove.start, u(c.p));
		ASSERT_EQ(msg.arg.remove.end, u(c.p) + PG);
		ASSERT_OK(pthread_join(t, NULL));	/* the read let it go */
		ASSERT_EQ(gvm_load_acquire(&c.returned), 1);
		if (c.advice) {
			ASSERT_EQ(c.p[0], 0);		/* zapped after the read */
			ASSERT_OK(ioctl(fd, UFFDIO_UNREGISTER, &r.range));
			ASSERT_OK(munmap(c.p, PG));
		}
	}
	close(fd);
}

/* Logs 'I' into the mmhold log when invalidated. */
static struct gvm_notifier_finish *order_start(struct gvm_notifier *n,
					       const struct gvm_notifier_range *r,
					       uint64_t cur_seq)
{
	(void)r;
	gvm__notifier_set_seq(n, cur_seq);
	mmhold_log('I');
	return NULL;
}

static const struct gvm_notifier_ops order_ops = {
	.invalidate_start = order_start,
};

/*
 * gvm_mm_invalidate(): bad input changes nothing; a good call invalidates
 * exactly the range given, once, as a PROTECT event, before it returns,
 * whatever is mapped there (an unmapped hole too).
 */
TEST(invalidate_reports_exactly_the_range_given)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(8, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct rec rc;

	rec_insert(mm, &rc, p, 8 * PG);
	ASSERT_EQ(gvm_mm_invalidate(NULL, u(p), PG), -EINVAL);
	ASSERT_EQ(gvm_mm_invalidate(mm, u(p), 0), -EINVAL);
	ASSERT_EQ(gvm_mm_invalidate(mm, u(p) + 1, PG), -EINVAL);
	ASSERT_EQ(gvm_mm_invalidate(mm, u(p), PG + 1), -EINVAL);
	ASSERT_EQ(gvm_mm_invalidate(mm, UINT64_MAX - PG + 1, 2 * PG), -EINVAL);
	ASSERT_EQ(rec_count(&rc), 0);
	ASSERT_OK(mprotect(p + 2 * PG, 3 * PG, PROT_NONE));
	ASSERT_OK(gvm_mm_invalidate(mm, u(p) + 2 * PG, 3 * PG));
	ASSERT_EQ(rec_count(&rc), 1);
	rec_expect(&rc, 0, GVM_MM_EVENT_PROTECT, p + 2 * PG, 3 * PG);
	ASSERT_OK(gvm_mm_invalidate(mm, u(p) + 16 * PG, PG));	/* not ours */
	ASSERT_EQ(rec_count(&rc), 1);
	ASSERT_OK(munmap(p + 6 * PG, 2 * PG));
	ASSERT_OK(gvm_mm_flush(mm));
	ASSERT_EQ(rec_count(&rc), 2);			/* the UNMAP */
	ASSERT_OK(gvm_mm_invalidate(mm, u(p) + 6 * PG, 2 * PG));
	ASSERT_EQ(rec_count(&rc), 3);
	rec_expect(&rc, 2, GVM_MM_EVENT_PROTECT, p + 6 * PG, 2 * PG);
	rec_remove(&rc);
	munmap(p, 6 * PG);
	gvm_mm_put(mm);
}

/*
 * The call returned, so its event was read; the event thread is held before
 * processing it.  gvm_mm_flush must find the thread busy ('W': the hook,
 * which also releases it), and return only after the invalidation ('I'):
 * each round must add "WIF".  A flush that does not wait gives "F" then "I"
 * (the test releases the thread itself after the flush).  Three kinds of
 * change: mmap(MAP_FIXED) over the range (UNMAP; the address stays ours),
 * madvise(MADV_DONTNEED) (REMOVE), munmap (UNMAP).
 */
TEST(flush_waits_for_the_event_being_processed)
{
	static const uint8_t expect[] = { UFFD_EVENT_UNMAP, UFFD_EVENT_REMOVE,
					  UFFD_EVENT_UNMAP };
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct gvm_notifier n;
	char log[16];

	ASSERT_EQ(gvm_mm_flush(NULL), -EINVAL);
	ASSERT_OK(gvm__notifier_insert(mm, &n, u(p), 4 * PG, &order_ops));
	ASSERT_OK(gvm__mm_register(mm, u(p), 4 * PG));
	mmhold_install();
	for (int round = 0; round < 3; round++) {
		mmhold_arm();
		if (round == 0)
			ASSERT_TRUE(mmap(p, 4 * PG, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
					 -1, 0) == p);
		else if (round == 1)
			ASSERT_OK(madvise(p, 4 * PG, MADV_DONTNEED));
		else
			ASSERT_OK(munmap(p, 4 * PG));
		ASSERT_EQ(mmhold_wait_held(), expect[round]);
		ASSERT_OK(gvm_mm_flush(mm));
		mmhold_log('F');
		mmhold_release();	/* had the flush not done it */
		ASSERT_OK(gvm__mm_sync(mm));
		mmhold_log_get(log, sizeof(log));
		printf("round %d: %s\n", round, log);
		ASSERT_EQ(strcmp(log, round == 0 ? "WIF" : round == 1 ?
				 "WIFWIF" : "WIFWIFWIF"), 0);
		ASSERT_EQ(mmhold_flush_waits(), (unsigned int)round + 1);
		if (round == 0)		/* the new mapping is not registered */
			ASSERT_OK(gvm__mm_register(mm, u(p), 4 * PG));
	}
	mmhold_uninstall();
	gvm__notifier_remove(&n);
	gvm_mm_put(mm);
}

struct flush_in_cb {
	struct gvm_notifier n;
	struct gvm_mm *mm;
	int ret;
	uint32_t called;		/* atomic */
};

static struct gvm_notifier_finish *flush_cb_start(struct gvm_notifier *n,
						  const struct gvm_notifier_range *r,
						  uint64_t cur_seq)
{
	struct flush_in_cb *f = gvm_container_of(n, struct flush_in_cb, n);

	(void)r;
	gvm__notifier_set_seq(n, cur_seq);
	f->ret = gvm_mm_flush(f->mm);	/* on the event thread: at once */
	gvm_store_release(&f->called, 1u);
	return NULL;
}

/* A flush from a callback on the event thread must not wait for itself. */
TEST(flush_from_a_notifier_callback_returns_at_once)
{
	static const struct gvm_notifier_ops ops = {
		.invalidate_start = flush_cb_start,
	};
	struct flush_in_cb f = { .ret = -1, .called = 0 };
	char *p = map_anon(2, PROT_READ | PROT_WRITE, MAP_PRIVATE);

	f.mm = mm_self();
	ASSERT_OK(gvm__notifier_insert(f.mm, &f.n, u(p), 2 * PG, &ops));
	ASSERT_OK(gvm__mm_register(f.mm, u(p), 2 * PG));
	ASSERT_OK(munmap(p, 2 * PG));
	ASSERT_OK(gvm_mm_flush(f.mm));
	ASSERT_EQ(gvm_load_acquire(&f.called), 1);
	ASSERT_EQ(f.ret, 0);
	gvm__notifier_remove(&f.n);
	gvm_mm_put(f.mm);
}

/*
 * The late UNMAP of a previous mapping, read before a notifier on a new
 * mapping at the same address was inserted and processed after: it hits
 * the old notifier and not the new one (the event's stamp is older), and
 * the new notifier's read is not disturbed.  The new mapping's own unmap
 * reaches it.  The old mapping is replaced with mmap(MAP_FIXED), which
 * raises the same UNMAP as munmap and leaves no hole another thread could
 * map meanwhile.
 */
TEST(stamp_unmap_read_before_insert_does_not_hit_it)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct rec old, neu;
	uint64_t seq;

	rec_insert(mm, &old, p, 4 * PG);
	mmhold_install();
	mmhold_arm();
	ASSERT_TRUE(mmap(p, 4 * PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == p);
	ASSERT_EQ(mmhold_wait_held(), UFFD_EVENT_UNMAP);
	rec_insert(mm, &neu, p, 4 * PG);
	seq = gvm__notifier_read_begin(&neu.n);
	mmhold_release();
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&old), 1);
	rec_expect(&old, 0, GVM_MM_EVENT_UNMAP, p, 4 * PG);
	ASSERT_EQ(rec_count(&neu), 0);
	ASSERT_FALSE(gvm__notifier_read_retry(&neu.n, seq));

	ASSERT_OK(munmap(p, 4 * PG));
	ASSERT_OK(gvm_mm_flush(mm));
	ASSERT_EQ(rec_count(&neu), 1);
	rec_expect(&neu, 0, GVM_MM_EVENT_UNMAP, p, 4 * PG);
	ASSERT_TRUE(gvm__notifier_read_retry(&neu.n, seq));
	ASSERT_EQ(rec_count(&old), 2);
	mmhold_uninstall();
	rec_remove(&neu);
	rec_remove(&old);
	gvm_mm_put(mm);
}

/*
 * A REMOVE is read before the zap it announces, which may still run after
 * a notifier inserted meanwhile has fetched its pages: so it carries no
 * stamp, and hits that notifier too.
 */
TEST(stamp_remove_read_before_insert_still_hits_it)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct rec old, neu;

	rec_insert(mm, &old, p, 4 * PG);
	memset(p, 1, 4 * PG);
	mmhold_install();
	mmhold_arm();
	ASSERT_OK(madvise(p, 4 * PG, MADV_DONTNEED));
	ASSERT_EQ(mmhold_wait_held(), UFFD_EVENT_REMOVE);
	rec_insert(mm, &neu, p, 4 * PG);
	mmhold_release();
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&old), 1);
	ASSERT_EQ(rec_count(&neu), 1);
	rec_expect(&neu, 0, GVM_MM_EVENT_REMOVE, p, 4 * PG);
	mmhold_uninstall();
	rec_remove(&neu);
	rec_remove(&old);
	ASSERT_OK(munmap(p, 4 * PG));
	gvm_mm_put(mm);
}

/*
 * Threads changing their own memory and flushing: after its flush, each
 * thread's notifier has seen its own madvise and munmap, exactly once each,
 * however the events of the threads interleave (self-checking; for TSan
 * too).  A notifier may also see other threads' events once its memory is
 * unmapped and another thread maps the address (a late UNMAP of an earlier
 * mapping there, or the other thread's own changes before the notifier is
 * removed): unordered with this thread, so allowed.  Each thread maps its
 * own size, so that such events cannot pass for its own.
 */
struct own {
	struct gvm_notifier n;
	uint64_t start, last;		/* constant */
	uint32_t unmaps, removes;	/* atomic: exact matches seen */
};

static struct gvm_notifier_finish *own_start(struct gvm_notifier *n,
					     const struct gvm_notifier_range *r,
					     uint64_t cur_seq)
{
	struct own *o = gvm_container_of(n, struct own, n);

	gvm__notifier_set_seq(n, cur_seq);
	if (r->start != o->start || r->last != o->last)
		return NULL;
	if (r->event == GVM_MM_EVENT_UNMAP)
		gvm_fetch_add_relaxed(&o->unmaps, 1u);
	else if (r->event == GVM_MM_EVENT_REMOVE)
		gvm_fetch_add_relaxed(&o->removes, 1u);
	return NULL;
}

struct flusher {
	struct gvm_mm *mm;
	unsigned int iters;
	size_t pages;			/* this thread's mapping size */
};

static void *flusher_thread(void *arg)
{
	static const struct gvm_notifier_ops own_ops = {
		.invalidate_start = own_start,
	};
	struct flusher *f = arg;
	size_t len = f->pages * PG;

	for (unsigned int i = 0; i < f->iters; i++) {
		char *p = map_anon(f->pages, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE);
		struct own o = { .start = u(p), .last = u(p) + len - 1 };

		ASSERT_OK(gvm__notifier_insert(f->mm, &o.n, u(p), len,
					       &own_ops));
		ASSERT_OK(gvm__mm_register(f->mm, u(p), len));
		if (i & 1) {
			ASSERT_OK(madvise(p, len, MADV_DONTNEED));
			ASSERT_OK(gvm_mm_flush(f->mm));
			ASSERT_EQ(gvm_load_relaxed(&o.removes), 1);
		}
		ASSERT_OK(munmap(p, len));
		ASSERT_OK(gvm_mm_flush(f->mm));
		ASSERT_EQ(gvm_load_relaxed(&o.unmaps), 1);
		ASSERT_EQ(gvm_load_relaxed(&o.removes), i & 1);
		gvm__notifier_remove(&o.n);
	}
	return NULL;
}

TEST(flush_sees_every_thread_s_own_changes)
{
	enum { T = 4 };
	struct gvm_mm *mm = mm_self();
	struct flusher f[T];
	pthread_t t[T];

	for (int i = 0; i < T; i++) {
		f[i].mm = mm;
		f[i].iters = (unsigned int)gvm_test_scale(200);
		f[i].pages = 2 + (size_t)i;
		ASSERT_OK(pthread_create(&t[i], NULL, flusher_thread, &f[i]));
	}
	for (int i = 0; i < T; i++)
		ASSERT_OK(pthread_join(t[i], NULL));
	gvm_mm_put(mm);
}

/* ---- registration ---------------------------------------------------------- */

struct toucher {
	char *p;
	size_t pages;
	uint64_t sum;
};

static void *touch_thread(void *arg)
{
	struct toucher *t = arg;

	for (size_t i = 0; i < t->pages; i++) {
		t->p[i * PG + 1] = (char)i;
		t->sum += (unsigned char)t->p[i * PG];
	}
	return NULL;
}

TEST(registration_does_not_intercept_page_faults)
{
	struct gvm_mm *mm = mm_self();
	const size_t pages = 256;
	char *p = map_anon(pages, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct toucher a = { p, pages / 2, 0 };
	struct toucher b = { p + pages / 2 * PG, pages / 2, 0 };
	struct gvm_mm_self_stats st;
	pthread_t t;

	ASSERT_OK(gvm__mm_register(mm, u(p), pages * PG));
	/* Fresh pages, first touched after registration, from two threads
	   (reads of never-written pages, then writes). */
	ASSERT_OK(pthread_create(&t, NULL, touch_thread, &b));
	touch_thread(&a);
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_EQ(a.sum + b.sum, 0);
	for (size_t i = 0; i < pages; i++)
		ASSERT_EQ(p[i * PG + 1], (char)(i % (pages / 2)));
	/* Copy-on-write of a file-less private page after fork is not
	   tested here; populate through madvise too: */
	ASSERT_OK(madvise(p, pages * PG, MADV_POPULATE_WRITE));
	ASSERT_OK(gvm__mm_sync(mm));
	gvm__mm_self_stats(mm, &st);
	ASSERT_EQ(st.pagefault, 0);
	ASSERT_OK(munmap(p, pages * PG));
	gvm_mm_put(mm);
}

TEST(registration_spans_vmas_and_repeats)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(12, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct rec rc;
	int fd = -1;

	ASSERT_EQ(gvm__mm_register(mm, u(p) + 1, PG), -EINVAL);
	ASSERT_EQ(gvm__mm_register(mm, u(p), PG + 1), -EINVAL);
	ASSERT_EQ(gvm__mm_register(mm, u(p), 0), -EINVAL);
	/* Several VMAs (different protections), a hole, twice. */
	ASSERT_OK(mprotect(p + 4 * PG, 2 * PG, PROT_READ));
	ASSERT_OK(munmap(p + 8 * PG, PG));
	rec_insert(mm, &rc, p, 12 * PG);
	ASSERT_OK(gvm__mm_register(mm, u(p), 12 * PG));
	ASSERT_OK(gvm__mm_register(mm, u(p) + 2 * PG, 4 * PG));
	/* Nothing mapped at all: nothing to do. */
	ASSERT_OK(gvm__mm_register(mm, u(p) + 8 * PG, PG));
	ASSERT_OK(munmap(p + 4 * PG, 2 * PG));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 1);
	rec_expect(&rc, 0, GVM_MM_EVENT_UNMAP, p + 4 * PG, 2 * PG);
	ASSERT_OK(munmap(p, 12 * PG));
	ASSERT_OK(gvm__mm_sync(mm));
	ASSERT_EQ(rec_count(&rc), 2);
	rec_remove(&rc);

	/* A file mapping (needs UFFD_FEATURE_WP_ASYNC). */
	if (gvm__mm_self_features(mm) & UFFD_FEATURE_WP_ASYNC) {
		char path[] = "/tmp/gvm_test_mm_XXXXXX";
		char *f;

		fd = mkstemp(path);
		ASSERT_GE(fd, 0);
		unlink(path);
		ASSERT_OK(ftruncate(fd, 4 * PG));
		f = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			 0);
		ASSERT_TRUE(f != MAP_FAILED);
		rec_insert(mm, &rc, f, 4 * PG);
		f[0] = 1;
		ASSERT_OK(munmap(f, 4 * PG));
		ASSERT_OK(gvm__mm_sync(mm));
		ASSERT_EQ(rec_count(&rc), 1);
		rec_expect(&rc, 0, GVM_MM_EVENT_UNMAP, f, 4 * PG);
		rec_remove(&rc);
		close(fd);
	}
	gvm_mm_put(mm);
}

TEST(registration_of_memory_watched_by_another_userfaultfd)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register r = {
		.range = { .start = u(p), .len = 4 * PG },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	struct uffdio_zeropage z = { .range = { .start = u(p), .len = PG } };
	int fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	char *q = map_anon(1, PROT_READ | PROT_WRITE, MAP_PRIVATE);

	ASSERT_GE(fd, 0);
	ASSERT_OK(ioctl(fd, UFFDIO_API, &api));
	ASSERT_OK(ioctl(fd, UFFDIO_REGISTER, &r));
	ASSERT_EQ(gvm__mm_register(mm, u(p), 4 * PG), -EBUSY);
	/* gvm's teardown leaves the other's registration alone */
	ASSERT_OK(gvm__mm_register(mm, u(q), PG));
	gvm_mm_put(mm);
	ASSERT_OK(ioctl(fd, UFFDIO_ZEROPAGE, &z));	/* still registered */
	ASSERT_EQ(p[0], 0);
	close(fd);
	mm = mm_self();
	ASSERT_OK(gvm__mm_register(mm, u(p), 4 * PG));
	ASSERT_OK(munmap(p, 4 * PG));
	ASSERT_OK(munmap(q, PG));
	gvm_mm_put(mm);
}

/* ---- mapping lookup -------------------------------------------------------- */

static void vma_eq(const struct gvm_mm_vma *a, const struct gvm_mm_vma *b)
{
	ASSERT_EQ(a->start, b->start);
	ASSERT_EQ(a->end, b->end);
	ASSERT_EQ(a->prot, b->prot);
	ASSERT_EQ(a->flags, b->flags);
	ASSERT_EQ(a->offset, b->offset);
	ASSERT_EQ(a->inode, b->inode);
	ASSERT_EQ(a->dev_major, b->dev_major);
	ASSERT_EQ(a->dev_minor, b->dev_minor);
}

/*
 * Both lookups of @addr, read again (up to 3 times) while they differ:
 * the process may map memory between the two reads (the parse's buffer,
 * under a sanitizer, comes from an allocator that maps as it grows).
 */
static void both(struct gvm_mm_maps *maps, uint64_t addr, unsigned int flags,
		 int *ra, struct gvm_mm_vma *a, int *rb, struct gvm_mm_vma *b)
{
	for (int i = 0; i < 3; i++) {
		*ra = gvm__mm_maps_query(maps, addr, flags, a);
		*rb = gvm__mm_maps_parse(addr, flags, b);
		if (*ra == *rb &&
		    (*ra || (a->start == b->start && a->end == b->end &&
			     a->prot == b->prot && a->flags == b->flags &&
			     a->offset == b->offset && a->inode == b->inode)))
			return;
	}
}

/*
 * The parser keeps only the start of each line (mm/maps.c): a mapping
 * whose file name is far longer is still read right, and so is the one
 * after it.
 */
TEST(maps_parse_reads_lines_longer_than_it_keeps)
{
	char dir[] = "/tmp/gvm-maps-XXXXXX", sub[512], path[1024];
	struct gvm_mm_vma a, b;
	struct gvm_mm_maps maps;
	char *m;
	int fd, ra, rb;

	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(sub, sizeof(sub), "%s/%0200d", dir, 1);	/* 2 x 200 */
	ASSERT_OK(mkdir(sub, 0700));
	snprintf(path, sizeof(path), "%s/%0200d", sub, 2);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(ftruncate(fd, 3 * 4096));
	/* file page, anonymous page, file page: three lines */
	m = mmap(NULL, 3 * 4096, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_TRUE(m != MAP_FAILED);
	ASSERT_TRUE(mmap(m + 4096, 4096, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    m + 4096);
	ASSERT_OK(gvm__mm_maps_init(&maps));
	for (int i = 0; i < 3; i++) {
		both(&maps, (uintptr_t)m + (uint64_t)i * 4096, 0, &ra, &a, &rb,
		     &b);
		ASSERT_OK(ra);
		ASSERT_OK(rb);
		ASSERT_EQ(b.start, (uintptr_t)m + (uint64_t)i * 4096);
		ASSERT_EQ(b.end, b.start + 4096);
		ASSERT_EQ(a.start, b.start);
		ASSERT_EQ(a.flags, b.flags);
		ASSERT_EQ(a.inode, b.inode);
		ASSERT_EQ(a.offset, b.offset);
		ASSERT_EQ(!!(b.flags & GVM_MM_VMA_FILE), i != 1);
	}
	gvm__mm_maps_fini(&maps);
	munmap(m, 3 * 4096);
	close(fd);
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}

TEST(lookup_procmap_query_equals_maps_parse)
{
	struct gvm_mm_maps maps;
	struct gvm_rng rng = { gvm_test_seed() };
	enum { N = 64 };
	char *m[N];
	size_t len[N];
	char path[] = "/tmp/gvm_test_maps_XXXXXX";
	int fd = mkstemp(path);
	uint64_t checked = 0;

	ASSERT_GE(fd, 0);
	unlink(path);
	ASSERT_OK(ftruncate(fd, 64 * PG));
	ASSERT_OK(gvm__mm_maps_init(&maps));
	if (!maps.have_query) {
		printf("PROCMAP_QUERY not supported by this kernel: skipped\n");
		gvm__mm_maps_fini(&maps);
		close(fd);
		return;
	}
	for (int i = 0; i < N; i++) {
		static const int prots[] = { PROT_NONE, PROT_READ,
					     PROT_READ | PROT_WRITE,
					     PROT_READ | PROT_EXEC };
		int prot = prots[gvm_rng_below(&rng, 4)];
		int kind = (int)gvm_rng_below(&rng, 4);

		len[i] = (1 + gvm_rng_below(&rng, 8)) * PG;
		if (kind == 0)
			m[i] = mmap(NULL, len[i], prot,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		else if (kind == 1)
			m[i] = mmap(NULL, len[i], prot,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		else
			m[i] = mmap(NULL, len[i], prot,
				    kind == 2 ? MAP_SHARED : MAP_PRIVATE, fd,
				    (off_t)(gvm_rng_below(&rng, 8) * PG));
		ASSERT_TRUE(m[i] != MAP_FAILED);
	}
	/* Every VMA of the process, from both sides: starts, middles, ends,
	   holes, with and without "or next". */
	for (uint64_t addr = 0;;) {
		struct gvm_mm_vma a, b;
		int ra, rb;

		both(&maps, addr, GVM_MM_LOOKUP_NEXT, &ra, &a, &rb, &b);
		ASSERT_EQ(ra, rb);
		if (ra == -ENOENT)
			break;
		ASSERT_OK(ra);
		vma_eq(&a, &b);
		uint64_t probes[] = { a.start, a.start + (a.end - a.start) / 2,
				      a.end - 1, a.end };
		for (int k = 0; k < 4; k++) {
			both(&maps, probes[k], 0, &ra, &a, &rb, &b);
			ASSERT_EQ(ra, rb);
			if (!ra)
				vma_eq(&a, &b);
			checked++;
		}
		addr = b.end;
	}
	printf("%" PRIu64 " lookups compared\n", checked);
	ASSERT_GT(checked, 40);		/* neighbours may have merged */
	/* Our mappings, as created. */
	for (int i = 0; i < N; i++) {
		struct gvm_mm_vma v;

		ASSERT_OK(gvm__mm_maps_lookup(&maps, u(m[i]), 0, &v));
		ASSERT_LE(v.start, u(m[i]));
		ASSERT_GE(v.end, u(m[i]) + len[i]);
	}
	gvm__mm_maps_force_parse = true;
	{
		struct gvm_mm_vma v;

		ASSERT_OK(gvm__mm_maps_lookup(&maps, u(m[0]), 0, &v));
		ASSERT_LE(v.start, u(m[0]));
	}
	gvm__mm_maps_force_parse = false;
	for (int i = 0; i < N; i++)
		ASSERT_OK(munmap(m[i], len[i]));
	gvm__mm_maps_fini(&maps);
	close(fd);
}

TEST(lookup_reports_kind_and_protection)
{
	struct gvm_mm *mm = mm_self();
	char *a = map_anon(2, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	char *s = map_anon(2, PROT_READ, MAP_SHARED);
	char *n = map_anon(2, PROT_NONE, MAP_PRIVATE);
	struct gvm_mm_vma v;

	for (int parse = 0; parse < 2; parse++) {
		gvm__mm_maps_force_parse = parse;
		/* (it may have merged with a neighbour of the same kind) */
		ASSERT_OK(gvm__mm_lookup(mm, u(a) + 10, 0, &v));
		ASSERT_LE(v.start, u(a));
		ASSERT_GE(v.end, u(a) + 2 * PG);
		ASSERT_EQ(v.prot, PROT_READ | PROT_WRITE);
		ASSERT_EQ(v.flags, 0);
		ASSERT_OK(gvm__mm_lookup(mm, u(s), 0, &v));
		ASSERT_EQ(v.prot, PROT_READ);
		ASSERT_EQ(v.flags, GVM_MM_VMA_SHARED | GVM_MM_VMA_FILE);
		ASSERT_OK(gvm__mm_lookup(mm, u(n) + PG, 0, &v));
		ASSERT_EQ(v.prot, 0);
	}
	gvm__mm_maps_force_parse = false;
	ASSERT_OK(munmap(n, 2 * PG));
	ASSERT_EQ(gvm__mm_lookup(mm, u(n), 0, &v), -ENOENT);
	ASSERT_OK(munmap(a, 2 * PG));
	ASSERT_OK(munmap(s, 2 * PG));
	gvm_mm_put(mm);
}

/* ---- fetching -------------------------------------------------------------- */

/*
 * gvm__mm_fetch() of [start, start + len): on success the answer must be
 * the one extent of the CPU addresses (gvm_mm_self).  Returns its result.
 */
static int fetch_one(struct gvm_mm *mm, uint64_t start, uint64_t len,
		     bool write)
{
	struct gvm_mm_extent *ext = NULL;
	size_t n = 0;
	int rc = gvm__mm_fetch(mm, start, len, write, &ext, &n);

	if (!rc) {
		ASSERT_EQ(n, 1);
		ASSERT_EQ(ext[0].addr, start);
		ASSERT_EQ(ext[0].len, len);
		gvm__free(ext);
	} else {
		ASSERT_TRUE(ext == NULL);
	}
	return rc;
}

static void fetch_populates(enum gvm_mm_fetch_mode mode)
{
	struct gvm_mm *mm = mm_self();
	const size_t pages = 32;
	char *p = map_anon(pages, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	unsigned char vec[32];

	gvm__mm_fetch_mode = mode;
	ASSERT_OK(gvm__mm_register(mm, u(p), pages * PG));
	ASSERT_OK(fetch_one(mm, u(p), pages * PG, false));
	ASSERT_OK(fetch_one(mm, u(p) + PG, 4 * PG, true));
	ASSERT_OK(mincore(p, pages * PG, vec));
	for (size_t i = 0; i < pages; i++)
		ASSERT_TRUE(vec[i] & 1);
	gvm__mm_fetch_mode = GVM_MM_FETCH_AUTO;
	ASSERT_OK(munmap(p, pages * PG));
	gvm_mm_put(mm);
}

TEST(fetch_returns_one_extent_and_populates)
{
	fetch_populates(GVM_MM_FETCH_POPULATE);
}

TEST(fetch_returns_one_extent_and_populates_scanning)
{
	fetch_populates(GVM_MM_FETCH_SCAN);
}

static void fetch_protection(enum gvm_mm_fetch_mode mode)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(8, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	struct gvm_mm_extent *ext;
	size_t n;
	char path[] = "/tmp/gvm_test_fetch_XXXXXX";
	int fd;
	char *f;

	gvm__mm_fetch_mode = mode;
	ASSERT_EQ(fetch_one(mm, u(p) + 1, PG, false), -EINVAL);
	ASSERT_EQ(fetch_one(mm, u(p), 0, false), -EINVAL);
	ASSERT_EQ(gvm__mm_fetch(mm, u(p), PG, false, NULL, &n), -EINVAL);
	ASSERT_EQ(gvm__mm_fetch(mm, u(p), PG, false, &ext, NULL), -EINVAL);

	memset(p, 1, 8 * PG);	/* present: the scan must not skip checks */
	ASSERT_OK(mprotect(p + 2 * PG, 2 * PG, PROT_READ));
	ASSERT_OK(mprotect(p + 4 * PG, PG, PROT_NONE));
	ASSERT_OK(munmap(p + 6 * PG, PG));
	/* read-only: reads fine, writes -EPERM (also when only part is) */
	ASSERT_OK(fetch_one(mm, u(p) + 2 * PG, 2 * PG, false));
	ASSERT_EQ(fetch_one(mm, u(p) + 2 * PG, 2 * PG, true), -EPERM);
	ASSERT_EQ(fetch_one(mm, u(p), 4 * PG, true), -EPERM);
	ASSERT_OK(fetch_one(mm, u(p), 2 * PG, true));
	/* PROT_NONE: -EFAULT either way */
	ASSERT_EQ(fetch_one(mm, u(p) + 4 * PG, PG, false), -EFAULT);
	ASSERT_EQ(fetch_one(mm, u(p) + 4 * PG, PG, true), -EFAULT);
	ASSERT_EQ(fetch_one(mm, u(p) + 3 * PG, 2 * PG, false), -EFAULT);
	/* a hole: -EFAULT, for reads and writes */
	ASSERT_EQ(fetch_one(mm, u(p) + 5 * PG, 3 * PG, false), -EFAULT);
	ASSERT_EQ(fetch_one(mm, u(p) + 6 * PG, PG, true), -EFAULT);
	ASSERT_OK(munmap(p, 8 * PG));

	/* A file mapping past the end of the file: SIGBUS -> -EFAULT. */
	fd = mkstemp(path);
	ASSERT_GE(fd, 0);
	unlink(path);
	ASSERT_OK(ftruncate(fd, PG));
	f = mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_TRUE(f != MAP_FAILED);
	ASSERT_OK(fetch_one(mm, u(f), PG, false));
	ASSERT_EQ(fetch_one(mm, u(f), 4 * PG, false), -EFAULT);
	ASSERT_OK(munmap(f, 4 * PG));
	close(fd);
	gvm__mm_fetch_mode = GVM_MM_FETCH_AUTO;
	gvm_mm_put(mm);
}

TEST(fetch_honours_cpu_protection)
{
	fetch_protection(GVM_MM_FETCH_POPULATE);
}

TEST(fetch_honours_cpu_protection_scanning)
{
	fetch_protection(GVM_MM_FETCH_SCAN);
}

/* Pages of [p, p + pages) that PAGEMAP_SCAN calls @cat; -1: no scan. */
static long pages_with(char *p, size_t pages, uint64_t cat)
{
	struct page_region v[64];
	struct pm_scan_arg a = {
		.size = sizeof(a), .start = u(p), .end = u(p) + pages * PG,
		.vec = u(v), .vec_len = 64, .category_mask = cat,
		.return_mask = cat,
	};
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	long n, sum = 0;

	ASSERT_GE(fd, 0);
	n = ioctl(fd, PAGEMAP_SCAN, &a);
	close(fd);
	if (n < 0)
		return -1;
	for (long i = 0; i < n; i++)
		sum += (long)((v[i].end - v[i].start) / PG);
	return sum;
}

/*
 * The scan and the populate fallback give the same answer and leave the
 * same state: 64 pages, of which some written (present, nothing to do),
 * some never touched, some read (the shared zero page: a write fetch must
 * replace it), some written then dropped.  A write fetch leaves every page
 * present and none the zero page either way; the scan populates only the
 * runs that need it (none once everything is written).
 */
static void mixed_pages(char *p)
{
	ASSERT_OK(madvise(p, 64 * PG, MADV_DONTNEED));
	for (size_t i = 0; i < 64; i++) {
		switch (i % 8) {
		case 0: case 1: case 2:
			p[i * PG] = 1;
			break;
		case 3:
			(void)((volatile char *)p)[i * PG];
			break;
		default:
			break;
		}
	}
}

TEST(fetch_scan_and_populate_agree)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(64, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	enum gvm_mm_fetch_mode modes[2] = { GVM_MM_FETCH_POPULATE,
					    GVM_MM_FETCH_SCAN };
	uint64_t pop0, scan0;
	unsigned char vec[64];

	for (int m = 0; m < 2; m++) {
		gvm__mm_fetch_mode = modes[m];
		mixed_pages(p);
		ASSERT_OK(fetch_one(mm, u(p), 64 * PG, false));
		mixed_pages(p);
		ASSERT_OK(fetch_one(mm, u(p), 64 * PG, true));
		ASSERT_OK(mincore(p, 64 * PG, vec));
		for (size_t i = 0; i < 64; i++)
			ASSERT_TRUE(vec[i] & 1);
		if (pages_with(p, 64, PAGE_IS_PRESENT) >= 0) {
			ASSERT_EQ(pages_with(p, 64, PAGE_IS_PRESENT), 64);
			ASSERT_EQ(pages_with(p, 64, PAGE_IS_PFNZERO), 0);
		}
		for (size_t i = 0; i < 64; i++)
			ASSERT_EQ(p[i * PG], i % 8 < 3 ? 1 : 0);
	}

	/* The scan's work: 8 runs of 5 pages to populate, then none. */
	if (pages_with(p, 64, PAGE_IS_PRESENT) >= 0) {
		mixed_pages(p);
		pop0 = gvm_load_relaxed(&gvm__mm_fetch_populates);
		scan0 = gvm_load_relaxed(&gvm__mm_fetch_scans);
		ASSERT_OK(fetch_one(mm, u(p), 64 * PG, true));
		ASSERT_EQ(gvm_load_relaxed(&gvm__mm_fetch_populates) - pop0, 8);
		ASSERT_EQ(gvm_load_relaxed(&gvm__mm_fetch_scans) - scan0, 1);
		pop0 = gvm_load_relaxed(&gvm__mm_fetch_populates);
		ASSERT_OK(fetch_one(mm, u(p), 64 * PG, true));
		ASSERT_OK(fetch_one(mm, u(p), 64 * PG, false));
		ASSERT_EQ(gvm_load_relaxed(&gvm__mm_fetch_populates), pop0);
	}
	gvm__mm_fetch_mode = GVM_MM_FETCH_AUTO;
	ASSERT_OK(munmap(p, 64 * PG));
	gvm_mm_put(mm);
}

/*
 * After a fork() the process's private pages may be shared copy-on-write
 * with the child, which the scan cannot see: write fetches then populate
 * the whole range (reads may still scan).
 */
TEST(fetch_after_fork_populates_writes)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(64, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	uint64_t pop0;
	pid_t pid;
	int st;

	memset(p, 1, 64 * PG);
	gvm__mm_fetch_mode = GVM_MM_FETCH_SCAN;
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid)
		_exit(0);
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	pop0 = gvm_load_relaxed(&gvm__mm_fetch_populates);
	ASSERT_OK(fetch_one(mm, u(p), 64 * PG, true));
	ASSERT_EQ(gvm_load_relaxed(&gvm__mm_fetch_populates) - pop0, 1);
	if (pages_with(p, 64, PAGE_IS_PRESENT) >= 0) {
		pop0 = gvm_load_relaxed(&gvm__mm_fetch_populates);
		ASSERT_OK(fetch_one(mm, u(p), 64 * PG, false));
		ASSERT_EQ(gvm_load_relaxed(&gvm__mm_fetch_populates), pop0);
	}
	gvm__mm_fetch_mode = GVM_MM_FETCH_AUTO;
	ASSERT_OK(munmap(p, 64 * PG));
	gvm_mm_put(mm);
}

/*
 * The whole user protocol on real memory: fetch, commit under the lock,
 * munmap by another thread, refetch fails with -EFAULT.
 */
TEST(fetch_then_unmap_invalidates)
{
	struct gvm_mm *mm = mm_self();
	char *p = map_anon(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	uint64_t seq;
	struct rec rc;

	rec_insert(mm, &rc, p, 4 * PG);
	seq = gvm__notifier_read_begin(&rc.n);
	ASSERT_OK(fetch_one(mm, u(p), 4 * PG, true));
	pthread_mutex_lock(&rc.lock);
	ASSERT_FALSE(gvm__notifier_read_retry(&rc.n, seq));
	pthread_mutex_unlock(&rc.lock);
	/* Another mapping replaces it (PROT_NONE, so that the address
	   stays ours and the refetch must fail). */
	ASSERT_TRUE(mmap(p, 4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
			 MAP_FIXED, -1, 0) == p);
	ASSERT_OK(gvm__mm_sync(mm));
	pthread_mutex_lock(&rc.lock);
	ASSERT_TRUE(gvm__notifier_read_retry(&rc.n, seq));
	pthread_mutex_unlock(&rc.lock);
	seq = gvm__notifier_read_begin(&rc.n);
	ASSERT_OK(gvm__mm_register(mm, u(p), 4 * PG));
	ASSERT_EQ(fetch_one(mm, u(p), 4 * PG, false), -EFAULT);
	ASSERT_OK(munmap(p, 4 * PG));
	rec_remove(&rc);
	gvm_mm_put(mm);
}
