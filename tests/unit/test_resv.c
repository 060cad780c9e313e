// SPDX-License-Identifier: MIT
/*
 * Reservation objects: locking rules for adding fences, usage classes,
 * replacement per context, pruning, lock-free queries, waits, iteration,
 * singletons, lifetimes, and a reference-model test.
 */
#include <pthread.h>

#include <gvm/resv.h>

#include "harness.h"

static struct gvm_fence *mkfence(uint64_t ctx, uint64_t seqno)
{
	struct gvm_fence *f;

	ASSERT_OK(gvm_fence_create(ctx, seqno, &f));
	return f;
}

static unsigned int count_at(struct gvm_resv *r, enum gvm_resv_usage u)
{
	struct gvm_fence **fences;
	unsigned int n;

	ASSERT_OK(gvm_resv_get_fences(r, u, &fences, &n));
	gvm_resv_put_fences(fences, n);
	return n;
}

static void add(struct gvm_resv *r, struct gvm_fence *f, enum gvm_resv_usage u)
{
	ASSERT_OK(gvm_resv_lock(r, NULL));
	ASSERT_OK(gvm_resv_reserve_fences(r, 1));
	ASSERT_OK(gvm_resv_add_fence(r, f, u));
	ASSERT_OK(gvm_resv_validate(r));
	gvm_resv_unlock(r);
}

TEST(add_requires_lock_and_slot)
{
	struct gvm_resv r;
	struct gvm_fence *f = mkfence(gvm_fence_context_alloc(1), 1);

	gvm_resv_init(&r);
	ASSERT_EQ(gvm_resv_add_fence(&r, f, GVM_RESV_USAGE_READ), -EPERM);
	ASSERT_EQ(gvm_resv_reserve_fences(&r, 1), -EPERM);
	ASSERT_OK(gvm_resv_lock(&r, NULL));
	ASSERT_EQ(gvm_resv_add_fence(&r, f, GVM_RESV_USAGE_READ), -ENOSPC);
	ASSERT_OK(gvm_resv_reserve_fences(&r, 1));
	ASSERT_EQ(gvm_resv_add_fence(&r, f, (enum gvm_resv_usage)7), -EINVAL);
	ASSERT_EQ(gvm_resv_add_fence(&r, NULL, GVM_RESV_USAGE_READ), -EINVAL);
	ASSERT_OK(gvm_resv_add_fence(&r, f, GVM_RESV_USAGE_READ));
	/* the slot is used up */
	ASSERT_EQ(gvm_resv_add_fence(&r, f, GVM_RESV_USAGE_READ), -ENOSPC);
	ASSERT_OK(gvm_resv_reserve_fences(&r, 2));
	gvm_resv_unlock(&r);
	/* unlocking drops unused reservations */
	ASSERT_OK(gvm_resv_lock(&r, NULL));
	ASSERT_EQ(gvm_resv_add_fence(&r, f, GVM_RESV_USAGE_READ), -ENOSPC);
	gvm_resv_unlock(&r);
	ASSERT_EQ(count_at(&r, GVM_RESV_USAGE_BOOKKEEP), 1);
	gvm_fence_signal(f);
	gvm_fence_put(f);
	ASSERT_OK(gvm_resv_fini(&r));
}

TEST(usage_classes)
{
	struct gvm_fence *f[4];
	struct gvm_resv r;
	uint64_t ctx = gvm_fence_context_alloc(4);

	gvm_resv_init(&r);
	for (int u = 0; u < 4; u++) {
		f[u] = mkfence(ctx + (uint64_t)u, 1);
		add(&r, f[u], (enum gvm_resv_usage)u);
	}
	for (int u = 0; u < 4; u++)
		ASSERT_EQ(count_at(&r, (enum gvm_resv_usage)u), u + 1);

	/* Signal the strongest classes first: weaker queries change last. */
	for (int u = 0; u < 4; u++) {
		ASSERT_FALSE(gvm_resv_test_signaled(&r, (enum gvm_resv_usage)u));
		gvm_fence_signal(f[u]);
		ASSERT_TRUE(gvm_resv_test_signaled(&r, (enum gvm_resv_usage)u));
		if (u < 3)
			ASSERT_FALSE(gvm_resv_test_signaled(
				&r, (enum gvm_resv_usage)(u + 1)));
	}
	for (int u = 0; u < 4; u++)
		gvm_fence_put(f[u]);
	ASSERT_OK(gvm_resv_fini(&r));
}

TEST(same_context_replaces)
{
	uint64_t ctx = gvm_fence_context_alloc(1);
	struct gvm_fence *f1 = mkfence(ctx, 1), *f2 = mkfence(ctx, 2);
	struct gvm_fence **fences;
	struct gvm_resv r;
	unsigned int n;

	gvm_resv_init(&r);
	add(&r, f1, GVM_RESV_USAGE_WRITE);
	add(&r, f2, GVM_RESV_USAGE_WRITE);
	ASSERT_OK(gvm_resv_get_fences(&r, GVM_RESV_USAGE_BOOKKEEP, &fences, &n));
	ASSERT_EQ(n, 1);
	ASSERT_TRUE(fences[0] == f2);
	gvm_resv_put_fences(fences, n);
	/* f1 was dropped by the set: only our reference is left */
	ASSERT_EQ(f1->refcount, 1);
	gvm_fence_signal(f1);
	gvm_fence_signal(f2);
	gvm_fence_put(f1);
	gvm_fence_put(f2);
	ASSERT_OK(gvm_resv_fini(&r));
}

TEST(weaker_or_older_does_not_replace)
{
	uint64_t ctx = gvm_fence_context_alloc(1);
	struct gvm_fence *k1 = mkfence(ctx, 1), *b2 = mkfence(ctx, 2);
	struct gvm_fence *o5 = mkfence(ctx, 5), *o3 = mkfence(ctx, 3);
	struct gvm_resv r;

	gvm_resv_init(&r);
	/* A later fence of a weaker class must not hide a KERNEL fence. */
	add(&r, k1, GVM_RESV_USAGE_KERNEL);
	add(&r, b2, GVM_RESV_USAGE_BOOKKEEP);
	ASSERT_EQ(count_at(&r, GVM_RESV_USAGE_KERNEL), 1);
	ASSERT_EQ(count_at(&r, GVM_RESV_USAGE_BOOKKEEP), 2);
	/* An older fence added after a newer one replaces nothing. */
	add(&r, o5, GVM_RESV_USAGE_READ);
	add(&r, o3, GVM_RESV_USAGE_READ);
	ASSERT_EQ(count_at(&r, GVM_RESV_USAGE_READ), 3);
	ASSERT_EQ(count_at(&r, GVM_RESV_USAGE_BOOKKEEP), 3); /* b2 replaced by o5 */
	gvm_fence_signal(k1);
	gvm_fence_signal(b2);
	gvm_fence_signal(o3);
	gvm_fence_signal(o5);
	gvm_fence_put(k1);
	gvm_fence_put(b2);
	gvm_fence_put(o3);
	gvm_fence_put(o5);
	ASSERT_OK(gvm_resv_fini(&r));
}

TEST(signalled_fences_are_pruned)
{
	uint64_t ctx = gvm_fence_context_alloc(8);
	struct gvm_fence *f[8];
	struct gvm_resv r;

	gvm_resv_init(&r);
	for (int i = 0; i < 8; i++) {
		f[i] = mkfence(ctx + (uint64_t)i, 1);
		add(&r, f[i], GVM_RESV_USAGE_READ);
	}
	for (int i = 0; i < 7; i++)
		gvm_fence_signal(f[i]);
	/* The next rewrite drops them. */
	ASSERT_OK(gvm_resv_lock(&r, NULL));
	ASSERT_OK(gvm_resv_reserve_fences(&r, 1));
	ASSERT_OK(gvm_resv_add_fence(&r, f[7], GVM_RESV_USAGE_READ));
	gvm_resv_unlock(&r);
	ASSERT_EQ(count_at(&r, GVM_RESV_USAGE_BOOKKEEP), 1);
	gvm_fence_signal(f[7]);
	for (int i = 0; i < 8; i++)
		gvm_fence_put(f[i]);
	ASSERT_OK(gvm_resv_fini(&r));
}

static void *signal_later(void *p)
{
	usleep(20000);
	gvm_fence_signal(p);
	return NULL;
}

TEST(wait)
{
	struct gvm_fence *f = mkfence(gvm_fence_context_alloc(1), 1);
	int64_t t0;
	struct gvm_resv r;
	pthread_t t;

	gvm_resv_init(&r);
	ASSERT_OK(gvm_resv_wait(&r, GVM_RESV_USAGE_BOOKKEEP, false, 0));
	add(&r, f, GVM_RESV_USAGE_BOOKKEEP);
	/* BOOKKEEP fences are not waited for at READ */
	ASSERT_OK(gvm_resv_wait(&r, GVM_RESV_USAGE_READ, false, 0));
	ASSERT_EQ(gvm_resv_wait(&r, GVM_RESV_USAGE_BOOKKEEP, false, 0), -ETIME);
	t0 = gvm_test_now_ns();
	ASSERT_EQ(gvm_resv_wait(&r, GVM_RESV_USAGE_BOOKKEEP, true, 10000000),
		  -ETIME);
	ASSERT_GE(gvm_test_now_ns() - t0, 10000000);
	pthread_create(&t, NULL, signal_later, f);
	ASSERT_OK(gvm_resv_wait(&r, GVM_RESV_USAGE_BOOKKEEP, false, -1));
	ASSERT_TRUE(gvm_fence_is_signaled(f));
	pthread_join(t, NULL);
	gvm_fence_put(f);
	ASSERT_OK(gvm_resv_fini(&r));
}

TEST(iterate_under_lock)
{
	uint64_t ctx = gvm_fence_context_alloc(3);
	struct gvm_fence *f[3], *it_f;
	struct gvm_resv_iter it;
	struct gvm_resv r;
	int seen = 0;

	gvm_resv_init(&r);
	for (int i = 0; i < 3; i++) {
		f[i] = mkfence(ctx + (uint64_t)i, 1);
		add(&r, f[i], (enum gvm_resv_usage)(i + 1));
	}
	/* without the lock there is nothing to iterate */
	ASSERT_TRUE(gvm_resv_iter_first(&it, &r, GVM_RESV_USAGE_BOOKKEEP) == NULL);
	ASSERT_OK(gvm_resv_lock(&r, NULL));
	gvm_resv_for_each_fence(&it, &r, GVM_RESV_USAGE_READ, it_f) {
		ASSERT_LE(gvm_resv_iter_usage(&it), GVM_RESV_USAGE_READ);
		ASSERT_TRUE(it_f == f[0] || it_f == f[1]);
		seen++;
	}
	gvm_resv_unlock(&r);
	ASSERT_EQ(seen, 2);
	for (int i = 0; i < 3; i++) {
		gvm_fence_signal(f[i]);
		gvm_fence_put(f[i]);
	}
	ASSERT_OK(gvm_resv_fini(&r));
}

TEST(singleton)
{
	uint64_t ctx = gvm_fence_context_alloc(2);
	struct gvm_fence *a = mkfence(ctx, 1), *b = mkfence(ctx + 1, 1), *s;
	struct gvm_resv r;

	gvm_resv_init(&r);
	ASSERT_OK(gvm_resv_get_singleton(&r, GVM_RESV_USAGE_BOOKKEEP, &s));
	ASSERT_TRUE(s == NULL);
	add(&r, a, GVM_RESV_USAGE_WRITE);
	ASSERT_OK(gvm_resv_get_singleton(&r, GVM_RESV_USAGE_BOOKKEEP, &s));
	ASSERT_TRUE(s == a);
	gvm_fence_put(s);
	add(&r, b, GVM_RESV_USAGE_READ);
	ASSERT_OK(gvm_resv_get_singleton(&r, GVM_RESV_USAGE_READ, &s));
	ASSERT_TRUE(gvm_fence_is_array(s));
	gvm_fence_signal(a);
	ASSERT_EQ(gvm_fence_wait(s, 0), -ETIME);
	gvm_fence_signal_error(b, -EIO);
	ASSERT_OK(gvm_fence_wait(s, -1));
	ASSERT_EQ(gvm_fence_get_status(s), -EIO);
	gvm_fence_put(s);
	gvm_fence_put(a);
	gvm_fence_put(b);
	ASSERT_OK(gvm_resv_fini(&r));
}

static int released;

static void count_release(struct gvm_fence *f)
{
	released++;
	free(f);
}

static const struct gvm_fence_ops counted_ops = {
	.name = "counted",
	.release = count_release,
};

TEST(fini_locked_and_references)
{
	struct gvm_fence *f = malloc(sizeof(*f));
	struct gvm_resv r;

	gvm_fence_init(f, &counted_ops, gvm_fence_context_alloc(1), 1);
	gvm_resv_init(&r);
	add(&r, f, GVM_RESV_USAGE_READ);
	gvm_fence_put(f);
	ASSERT_EQ(released, 0);		/* the resv keeps it alive */
	ASSERT_OK(gvm_resv_lock(&r, NULL));
	ASSERT_EQ(gvm_resv_fini(&r), -EBUSY);
	ASSERT_EQ(count_at(&r, GVM_RESV_USAGE_READ), 1); /* nothing changed */
	gvm_resv_unlock(&r);
	ASSERT_OK(gvm_resv_fini(&r));
	ASSERT_EQ(released, 1);
}

TEST(bad_input)
{
	struct gvm_fence **fences;
	unsigned int n;

	ASSERT_EQ(gvm_resv_lock(NULL, NULL), -EINVAL);
	ASSERT_EQ(gvm_resv_fini(NULL), -EINVAL);
	ASSERT_EQ(gvm_resv_reserve_fences(NULL, 1), -EINVAL);
	ASSERT_EQ(gvm_resv_get_fences(NULL, GVM_RESV_USAGE_READ, &fences, &n),
		  -EINVAL);
	ASSERT_EQ(gvm_resv_wait(NULL, GVM_RESV_USAGE_READ, false, 0), -EINVAL);
	ASSERT_FALSE(gvm_resv_trylock(NULL));
	ASSERT_FALSE(gvm_resv_is_locked(NULL));
}

/*
 * Reference model: random adds (contexts, seqnos, usages) and signals.  The
 * model keeps, per the documented rule, every fence not replaced by a later
 * one of its context with an equal or stronger usage.  After each step the
 * unsignalled fences the resv reports at each usage must be exactly the
 * model's unsignalled fences at that usage.
 */
#define MODEL_MAX 4096

struct model_entry {
	struct gvm_fence *fence;
	enum gvm_resv_usage usage;
};

TEST(reference_model)
{
	struct gvm_rng rng = { gvm_test_seed() };
	static struct model_entry model[MODEL_MAX];
	static struct gvm_fence *all[MODEL_MAX];
	uint64_t ctx = gvm_fence_context_alloc(6);
	uint64_t seq[6] = { 0 };
	unsigned int nm = 0, nall = 0;
	int steps = (int)gvm_test_scale(3000);
	struct gvm_resv r;

	gvm_resv_init(&r);
	for (int step = 0; step < steps && nall < MODEL_MAX; step++) {
		if (gvm_rng_below(&rng, 3)) {
			unsigned int c = (unsigned int)gvm_rng_below(&rng, 6);
			enum gvm_resv_usage u =
				(enum gvm_resv_usage)gvm_rng_below(&rng, 4);
			/* mostly increasing seqnos, sometimes an older one */
			uint64_t s = gvm_rng_below(&rng, 5) ? ++seq[c] + 2
							    : seq[c];
			struct gvm_fence *f = mkfence(ctx + c, s);
			unsigned int k = 0;

			add(&r, f, u);
			all[nall++] = f;
			for (unsigned int i = 0; i < nm; i++) {
				struct gvm_fence *o = model[i].fence;

				if (o->context == f->context &&
				    o->seqno <= f->seqno && u <= model[i].usage)
					continue;
				model[k++] = model[i];
			}
			nm = k;
			model[nm].fence = f;
			model[nm].usage = u;
			nm++;
		} else if (nall) {
			gvm_fence_signal(all[gvm_rng_below(&rng, nall)]);
		}

		for (int u = 0; u < 4; u++) {
			struct gvm_fence **fences;
			unsigned int n, want = 0, got = 0;

			ASSERT_OK(gvm_resv_get_fences(&r, (enum gvm_resv_usage)u,
						      &fences, &n));
			for (unsigned int i = 0; i < nm; i++) {
				bool found = false;

				if ((int)model[i].usage > u ||
				    gvm_fence_is_signaled(model[i].fence))
					continue;
				want++;
				for (unsigned int j = 0; j < n; j++)
					found |= fences[j] == model[i].fence;
				ASSERT_TRUE(found);
			}
			for (unsigned int j = 0; j < n; j++)
				got += !gvm_fence_is_signaled(fences[j]);
			ASSERT_EQ(got, want);
			ASSERT_EQ(gvm_resv_test_signaled(&r, (enum gvm_resv_usage)u),
				  want == 0);
			gvm_resv_put_fences(fences, n);
		}
		ASSERT_OK(gvm_resv_validate(&r));
	}
	for (unsigned int i = 0; i < nall; i++) {
		gvm_fence_signal(all[i]);
		gvm_fence_put(all[i]);
	}
	ASSERT_OK(gvm_resv_fini(&r));
}

/*
 * Reserving many slots at once must grow both copies, including the one
 * readers use now: every add rewrites the other copy, so consecutive adds
 * alternate between them.
 */
TEST(reserve_many_grows_both_copies)
{
	uint64_t ctx = gvm_fence_context_alloc(9);
	struct gvm_fence *f[9];
	struct gvm_resv r;

	gvm_resv_init(&r);
	for (unsigned int i = 0; i < 9; i++)
		f[i] = mkfence(ctx + i, 1);
	add(&r, f[0], GVM_RESV_USAGE_READ);	/* both copies small now */
	ASSERT_OK(gvm_resv_lock(&r, NULL));
	ASSERT_OK(gvm_resv_reserve_fences(&r, 8));
	ASSERT_OK(gvm_resv_validate(&r));
	for (unsigned int i = 1; i < 9; i++) {
		ASSERT_OK(gvm_resv_add_fence(&r, f[i], GVM_RESV_USAGE_WRITE));
		ASSERT_OK(gvm_resv_validate(&r));
	}
	gvm_resv_unlock(&r);
	ASSERT_EQ(count_at(&r, GVM_RESV_USAGE_BOOKKEEP), 9);
	for (unsigned int i = 0; i < 9; i++) {
		gvm_fence_signal(f[i]);
		gvm_fence_put(f[i]);
	}
	ASSERT_OK(gvm_resv_fini(&r));
}

/*
 * A writer must not rewrite a copy while a lock-free reader is still inside
 * it.  The reader is held inside tables[cur] by a fence whose ->signaled()
 * poll stalls (in the reader's thread only; a test-only breach of "must not
 * block").  The writer then adds twice under one reservation: the first add
 * flips to the other copy, the second must wait for the reader to leave the
 * copy it is about to rewrite.
 */
static _Thread_local bool stall_here;
static uint32_t stall_inside, stall_go;

static bool stall_signaled(struct gvm_fence *f)
{
	(void)f;
	if (stall_here) {
		__atomic_store_n(&stall_inside, 1, __ATOMIC_RELEASE);
		while (!__atomic_load_n(&stall_go, __ATOMIC_ACQUIRE))
			gvm_test_sleep_ns(100000);
		return true;	/* the reader reads on: the next entry, count */
	}
	return false;
}

static void stall_release(struct gvm_fence *f)
{
	(void)f;	/* embedded */
}

static const struct gvm_fence_ops stall_ops = {
	.name = "stall",
	.signaled = stall_signaled,
	.release = stall_release,
};

struct stall_rw {
	struct gvm_resv *r;
	struct gvm_fence *f1, *f2;
	uint32_t added;
	bool grow;	/* then reserve many instead of adding f2 */
};

static void *stalled_reader(void *p)
{
	struct stall_rw *s = p;

	stall_here = true;
	ASSERT_TRUE(gvm_resv_test_signaled(s->r, GVM_RESV_USAGE_BOOKKEEP));
	return NULL;
}

static void *two_adds_writer(void *p)
{
	struct stall_rw *s = p;

	ASSERT_OK(gvm_resv_lock(s->r, NULL));
	ASSERT_OK(gvm_resv_reserve_fences(s->r, 2));
	ASSERT_OK(gvm_resv_add_fence(s->r, s->f1, GVM_RESV_USAGE_WRITE));
	if (s->grow)	/* reallocates the copy the reader is in */
		ASSERT_OK(gvm_resv_reserve_fences(s->r, 64));
	else
		ASSERT_OK(gvm_resv_add_fence(s->r, s->f2, GVM_RESV_USAGE_WRITE));
	__atomic_store_n(&s->added, 1, __ATOMIC_RELEASE);
	gvm_resv_unlock(s->r);
	return NULL;
}

static void writer_waits_for_reader(bool grow)
{
	uint64_t ctx = gvm_fence_context_alloc(3);
	struct gvm_fence stalling;
	struct gvm_resv r;
	struct stall_rw s = { &r, mkfence(ctx + 1, 1), mkfence(ctx + 2, 1), 0,
			      grow };
	pthread_t tr, tw;

	gvm_resv_init(&r);
	gvm_fence_init(&stalling, &stall_ops, ctx, 1);
	add(&r, &stalling, GVM_RESV_USAGE_READ);
	pthread_create(&tr, NULL, stalled_reader, &s);
	gvm_test_wait_flag(&stall_inside);
	pthread_create(&tw, NULL, two_adds_writer, &s);
	gvm_test_sleep_ns(50 * 1000000);
	ASSERT_FALSE(__atomic_load_n(&s.added, __ATOMIC_ACQUIRE));
	__atomic_store_n(&stall_go, 1, __ATOMIC_RELEASE);
	pthread_join(tr, NULL);
	pthread_join(tw, NULL);
	/* the reader signalled the stalling fence; the rewrite pruned it */
	ASSERT_EQ(count_at(&r, GVM_RESV_USAGE_BOOKKEEP), grow ? 1 : 2);
	gvm_fence_signal(s.f1);
	gvm_fence_signal(s.f2);
	gvm_fence_signal(&stalling);
	ASSERT_OK(gvm_resv_fini(&r));
	gvm_fence_put(s.f1);
	gvm_fence_put(s.f2);
	gvm_fence_put(&stalling);
}

TEST(writer_waits_for_reader_in_old_copy)
{
	writer_waits_for_reader(false);
}

/*
 * Same for growing: reserving many slots reallocates the copy the stalled
 * reader is in, and must wait for it first (else ASan sees the reader use
 * the freed copy).
 */
TEST(reserve_waits_for_reader_in_old_copy)
{
	writer_waits_for_reader(true);
}
