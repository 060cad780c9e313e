// SPDX-License-Identifier: MIT
/*
 * Lock sets: locking and unlocking, duplicates, fence slots, transparent
 * back-off and retry under contention, interruptible waits, bad input.
 */
#include <pthread.h>
#include <signal.h>

#include <gvm/lockset.h>

#include "harness.h"


TEST(lock_many_and_fini_unlocks)
{
	struct gvm_resv r[20];
	struct gvm_lockset ls;
	struct gvm_resv *it;
	unsigned int i, runs = 0;

	for (i = 0; i < 20; i++)
		gvm_resv_init(&r[i]);
	ASSERT_OK(gvm_lockset_init(&ls, 0));
	gvm_lockset_until_all_locked(&ls) {
		int err = 0;

		runs++;
		for (i = 0; i < 20 && !err; i++)
			err = gvm_lockset_lock(&ls, &r[19 - i]);
		gvm_lockset_retry_on_contention(&ls);
		ASSERT_OK(err);
	}
	ASSERT_EQ(runs, 1);
	ASSERT_EQ(gvm_lockset_count(&ls), 20);	/* grew past the inline array */
	gvm_lockset_for_each(&ls, i, it)
		ASSERT_TRUE(it == &r[19 - i] && gvm_resv_is_locked(it));
	ASSERT_OK(gvm_lockset_unlock(&ls, &r[5]));
	ASSERT_FALSE(gvm_resv_is_locked(&r[5]));
	ASSERT_EQ(gvm_lockset_unlock(&ls, &r[5]), -ENOENT);
	gvm_lockset_fini(&ls);
	for (i = 0; i < 20; i++) {
		ASSERT_FALSE(gvm_resv_is_locked(&r[i]));
		ASSERT_OK(gvm_resv_fini(&r[i]));
	}
}

TEST(duplicates)
{
	struct gvm_resv r;
	struct gvm_lockset ls;

	gvm_resv_init(&r);
	ASSERT_OK(gvm_lockset_init(&ls, 0));
	gvm_lockset_until_all_locked(&ls) {
		ASSERT_OK(gvm_lockset_lock(&ls, &r));
		ASSERT_EQ(gvm_lockset_lock(&ls, &r), -EALREADY);
	}
	gvm_lockset_fini(&ls);

	ASSERT_OK(gvm_lockset_init(&ls, GVM_LOCKSET_IGNORE_DUPLICATES));
	gvm_lockset_until_all_locked(&ls) {
		ASSERT_OK(gvm_lockset_prepare(&ls, &r, 1));
		ASSERT_OK(gvm_lockset_prepare(&ls, &r, 1));
	}
	ASSERT_EQ(gvm_lockset_count(&ls), 1);
	gvm_lockset_fini(&ls);
	ASSERT_FALSE(gvm_resv_is_locked(&r));
	ASSERT_OK(gvm_resv_fini(&r));
}

TEST(prepare_reserves_fence_slots)
{
	struct gvm_resv *rs[3], r[3];
	struct gvm_lockset ls;
	struct gvm_fence *f;

	for (int i = 0; i < 3; i++) {
		gvm_resv_init(&r[i]);
		rs[i] = &r[i];
	}
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &f));
	ASSERT_OK(gvm_lockset_init(&ls, 0));
	gvm_lockset_until_all_locked(&ls) {
		int err = gvm_lockset_prepare_array(&ls, rs, 3, 2);

		gvm_lockset_retry_on_contention(&ls);
		ASSERT_OK(err);
	}
	for (int i = 0; i < 3; i++) {
		ASSERT_OK(gvm_resv_add_fence(&r[i], f, GVM_RESV_USAGE_WRITE));
		ASSERT_OK(gvm_resv_add_fence(&r[i], f, GVM_RESV_USAGE_READ));
		ASSERT_EQ(gvm_resv_add_fence(&r[i], f, GVM_RESV_USAGE_READ),
			  -ENOSPC);
	}
	gvm_lockset_fini(&ls);
	for (int i = 0; i < 3; i++)
		ASSERT_FALSE(gvm_resv_test_signaled(&r[i], GVM_RESV_USAGE_WRITE));
	gvm_fence_signal(f);
	gvm_fence_put(f);
	for (int i = 0; i < 3; i++)
		ASSERT_OK(gvm_resv_fini(&r[i]));
}

TEST(bad_input)
{
	struct gvm_lockset ls;
	struct gvm_resv r;

	ASSERT_EQ(gvm_lockset_init(NULL, 0), -EINVAL);
	ASSERT_EQ(gvm_lockset_init(&ls, 1u << 7), -EINVAL);
	gvm_resv_init(&r);
	ASSERT_OK(gvm_lockset_init(&ls, 0));
	gvm_lockset_until_all_locked(&ls) {
		ASSERT_EQ(gvm_lockset_lock(&ls, NULL), -EINVAL);
		ASSERT_EQ(gvm_lockset_prepare_array(&ls, NULL, 2, 0), -EINVAL);
	}
	ASSERT_EQ(gvm_lockset_unlock(&ls, &r), -ENOENT);
	gvm_lockset_fini(&ls);
	gvm_lockset_fini(NULL);
	ASSERT_OK(gvm_resv_fini(&r));
}

/*
 * Deterministic contention: the younger set holds A and is wounded by the
 * older set waiting for A while holding B.  The younger's lock of B returns
 * -EDEADLK, the loop backs off (releasing A), sleeps until it owns B, and
 * reruns the block, which then completes.
 */
struct contention {
	struct gvm_resv a, b;
	struct gvm_lockset older;
	uint32_t young_holds_a, older_done;
};

static void *older_thread(void *p)
{
	struct contention *c = p;

	gvm_test_wait_flag(&c->young_holds_a);
	gvm_lockset_until_all_locked(&c->older) {
		int err = gvm_lockset_lock(&c->older, &c->b);

		if (!err)
			err = gvm_lockset_lock(&c->older, &c->a);
		gvm_lockset_retry_on_contention(&c->older);
		ASSERT_OK(err);
	}
	ASSERT_TRUE(gvm_resv_is_locked(&c->a) && gvm_resv_is_locked(&c->b));
	__atomic_store_n(&c->older_done, 1, __ATOMIC_RELEASE);
	gvm_lockset_fini(&c->older);
	return NULL;
}

TEST(contention_retries_transparently)
{
	struct contention c = { .young_holds_a = 0 };
	struct gvm_lockset young;
	unsigned int runs = 0;
	pthread_t t;

	gvm_resv_init(&c.a);
	gvm_resv_init(&c.b);
	ASSERT_OK(gvm_lockset_init(&c.older, 0));	/* older: first stamp */
	ASSERT_OK(gvm_lockset_init(&young, 0));
	pthread_create(&t, NULL, older_thread, &c);

	gvm_lockset_until_all_locked(&young) {
		int err;

		runs++;
		if (runs == 2) {
			/*
			 * b is prelocked; dropping it must end that state so
			 * that locking it again really locks it.
			 */
			ASSERT_OK(gvm_lockset_unlock(&young, &c.b));
			ASSERT_FALSE(gvm_resv_is_locked(&c.b));
		}
		err = gvm_lockset_lock(&young, &c.a);
		if (runs == 1) {
			ASSERT_OK(err);
			__atomic_store_n(&c.young_holds_a, 1, __ATOMIC_RELEASE);
			gvm_test_wait_flag(&young.ctx.wounded);
		}
		if (!err)
			err = gvm_lockset_lock(&young, &c.b);
		if (runs == 1)
			ASSERT_EQ(err, -EDEADLK);
		/* sticky: later calls of a contended run fail fast */
		if (runs == 1)
			ASSERT_EQ(gvm_lockset_lock(&young, &c.a), -EDEADLK);
		gvm_lockset_retry_on_contention(&young);
		ASSERT_OK(err);
		/* b was prelocked and is now accounted: no duplicate allowed */
		ASSERT_EQ(gvm_lockset_lock(&young, &c.b), -EALREADY);
	}
	ASSERT_EQ(runs, 2);
	/* The older transaction finished before the younger got both. */
	ASSERT_TRUE(__atomic_load_n(&c.older_done, __ATOMIC_ACQUIRE));
	ASSERT_EQ(gvm_lockset_count(&young), 2);
	ASSERT_TRUE(gvm_resv_is_locked(&c.b));
	gvm_lockset_fini(&young);
	pthread_join(t, NULL);
	ASSERT_OK(gvm_resv_fini(&c.a));
	ASSERT_OK(gvm_resv_fini(&c.b));
}

static void on_sigusr1(int sig)
{
	(void)sig;
}

struct intr {
	struct gvm_resv *r;
	int err;
	uint32_t started, done;
};

static void *intr_thread(void *p)
{
	struct intr *x = p;
	struct gvm_lockset ls;

	ASSERT_OK(gvm_lockset_init(&ls, GVM_LOCKSET_INTERRUPTIBLE));
	__atomic_store_n(&x->started, 1, __ATOMIC_RELEASE);
	gvm_lockset_until_all_locked(&ls) {
		x->err = gvm_lockset_lock(&ls, x->r);
		gvm_lockset_retry_on_contention(&ls);
	}
	gvm_lockset_fini(&ls);
	__atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

TEST(interruptible)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	struct gvm_resv r;
	struct intr x = { &r, 1, 0, 0 };
	pthread_t t;

	sigaction(SIGUSR1, &sa, NULL);
	gvm_resv_init(&r);
	ASSERT_OK(gvm_resv_lock(&r, NULL));
	pthread_create(&t, NULL, intr_thread, &x);
	gvm_test_wait_flag(&x.started);
	while (!__atomic_load_n(&x.done, __ATOMIC_ACQUIRE)) {
		pthread_kill(t, SIGUSR1);
		usleep(1000);
	}
	pthread_join(t, NULL);
	ASSERT_EQ(x.err, -EINTR);
	gvm_resv_unlock(&r);
	ASSERT_OK(gvm_resv_fini(&r));
}

/*
 * -EINTR while the back-off sleeps on the contended object: the set holds
 * nothing, and the error is sticky for the rerun, so every lock call of the
 * rerun fails with it (even of a free object) and the block can bail out.
 */
struct slow_intr {
	struct gvm_resv a, b, c;
	uint32_t older_holds_b, young_holds_a, release, young_done;
	int rerun_err, rerun_err2;
	unsigned int runs, count_after;
};

static void *slow_intr_older(void *p)
{
	struct slow_intr *s = p;
	struct gvm_ww_acquire_ctx ctx;

	gvm_ww_acquire_init(&ctx, &gvm_resv_ww_class);	/* older stamp */
	ASSERT_OK(gvm_resv_lock(&s->b, &ctx));
	__atomic_store_n(&s->older_holds_b, 1, __ATOMIC_RELEASE);
	gvm_test_wait_flag(&s->young_holds_a);
	ASSERT_OK(gvm_resv_lock(&s->a, &ctx));	/* wounds the young set */
	gvm_test_wait_flag(&s->release);
	gvm_resv_unlock(&s->a);
	gvm_resv_unlock(&s->b);
	ASSERT_OK(gvm_ww_acquire_fini(&ctx));
	return NULL;
}

static void *slow_intr_young(void *p)
{
	struct slow_intr *s = p;
	struct gvm_lockset ls;

	ASSERT_OK(gvm_lockset_init(&ls, GVM_LOCKSET_INTERRUPTIBLE));
	gvm_lockset_until_all_locked(&ls) {
		if (++s->runs == 1) {
			ASSERT_OK(gvm_lockset_lock(&ls, &s->a));
			__atomic_store_n(&s->young_holds_a, 1, __ATOMIC_RELEASE);
			gvm_test_wait_flag(&ls.ctx.wounded);
			ASSERT_EQ(gvm_lockset_lock(&ls, &s->b), -EDEADLK);
			/* the back-off now sleeps on b until interrupted */
		} else {
			s->rerun_err = gvm_lockset_lock(&ls, &s->c);
			s->rerun_err2 = gvm_lockset_prepare(&ls, &s->b, 1);
			s->count_after = gvm_lockset_count(&ls);
		}
		gvm_lockset_retry_on_contention(&ls);
	}
	gvm_lockset_fini(&ls);
	__atomic_store_n(&s->young_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

TEST(interrupted_back_off_is_sticky)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	static struct slow_intr s;
	pthread_t to, ty;

	sigaction(SIGUSR1, &sa, NULL);	/* no SA_RESTART */
	gvm_resv_init(&s.a);
	gvm_resv_init(&s.b);
	gvm_resv_init(&s.c);
	pthread_create(&to, NULL, slow_intr_older, &s);
	gvm_test_wait_flag(&s.older_holds_b);
	pthread_create(&ty, NULL, slow_intr_young, &s);
	while (!__atomic_load_n(&s.young_done, __ATOMIC_ACQUIRE)) {
		pthread_kill(ty, SIGUSR1);
		usleep(1000);
	}
	pthread_join(ty, NULL);
	ASSERT_EQ(s.runs, 2);
	ASSERT_EQ(s.rerun_err, -EINTR);
	ASSERT_EQ(s.rerun_err2, -EINTR);
	ASSERT_EQ(s.count_after, 0);
	ASSERT_FALSE(gvm_resv_is_locked(&s.c));
	__atomic_store_n(&s.release, 1, __ATOMIC_RELEASE);
	pthread_join(to, NULL);
	ASSERT_OK(gvm_resv_fini(&s.a));
	ASSERT_OK(gvm_resv_fini(&s.b));
	ASSERT_OK(gvm_resv_fini(&s.c));
}
