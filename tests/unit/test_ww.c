// SPDX-License-Identifier: MIT
/*
 * Wound-wait mutexes: ownership, wounding, back-off, cross-mutex wake-up,
 * interruptible waits, bad input, and the lock-rank checker.
 */
#include <pthread.h>
#include <signal.h>

#include <gvm/resv.h>
#include <gvm/ww.h>

#include "core/sync.h"
#include "harness.h"


static struct gvm_ww_class test_class = GVM_WW_CLASS_INIT("test_ww");


/* True once some thread sleeps in @m's slow path. */
static bool has_waiter(struct gvm_ww_mutex *m)
{
	bool waiting;

	gvm__mutex_lock(&m->wait_lock);
	waiting = m->waiters.next != &m->waiters;
	gvm__mutex_unlock(&m->wait_lock);
	return waiting;
}

static void wait_for_waiter(struct gvm_ww_mutex *m)
{
	int64_t end = gvm_test_now_ns() + 10ll * 1000000000;

	while (!has_waiter(m)) {
		if (gvm_test_now_ns() > end)
			gvm_test_fail(__FILE__, __LINE__, "no waiter appeared");
		usleep(100);
	}
}

TEST(lock_unlock_counts)
{
	struct gvm_ww_acquire_ctx ctx;
	struct gvm_ww_mutex a, b;

	gvm_ww_mutex_init(&a, &test_class);
	gvm_ww_mutex_init(&b, &test_class);
	gvm_ww_acquire_init(&ctx, &test_class);
	ASSERT_OK(gvm_ww_mutex_lock(&a, &ctx));
	ASSERT_OK(gvm_ww_mutex_lock(&b, &ctx));
	ASSERT_EQ(ctx.acquired, 2);
	ASSERT_TRUE(gvm_ww_mutex_is_owned_by(&a, &ctx));
	ASSERT_EQ(gvm_ww_mutex_lock(&a, &ctx), -EALREADY);
	ASSERT_EQ(gvm_ww_acquire_fini(&ctx), -EBUSY);
	ASSERT_EQ(gvm_ww_mutex_fini(&a), -EBUSY);
	gvm_ww_mutex_unlock(&a);
	gvm_ww_mutex_unlock(&b);
	gvm_ww_acquire_done(&ctx);
	ASSERT_OK(gvm_ww_acquire_fini(&ctx));
	ASSERT_FALSE(gvm_ww_mutex_is_locked(&a));
	ASSERT_OK(gvm_ww_mutex_fini(&a));
	ASSERT_OK(gvm_ww_mutex_fini(&b));
}

TEST(trylock_and_no_ctx)
{
	struct gvm_ww_acquire_ctx ctx;
	struct gvm_ww_mutex m;

	gvm_ww_mutex_init(&m, &test_class);
	ASSERT_TRUE(gvm_ww_mutex_trylock(&m, NULL));
	ASSERT_FALSE(gvm_ww_mutex_trylock(&m, NULL));
	ASSERT_TRUE(gvm_ww_mutex_is_locked(&m));
	gvm_ww_mutex_unlock(&m);
	gvm_ww_acquire_init(&ctx, &test_class);
	ASSERT_TRUE(gvm_ww_mutex_trylock(&m, &ctx));
	ASSERT_EQ(ctx.acquired, 1);
	gvm_ww_mutex_unlock(&m);
	ASSERT_EQ(ctx.acquired, 0);
	ASSERT_OK(gvm_ww_mutex_lock(&m, NULL));
	gvm_ww_mutex_unlock(&m);
	ASSERT_OK(gvm_ww_mutex_fini(&m));
}

TEST(bad_input)
{
	struct gvm_ww_acquire_ctx ctx;
	struct gvm_ww_mutex m;

	ASSERT_EQ(gvm_ww_mutex_lock(NULL, NULL), -EINVAL);
	ASSERT_EQ(gvm_ww_mutex_fini(NULL), -EINVAL);
	ASSERT_EQ(gvm_ww_acquire_fini(NULL), -EINVAL);
	ASSERT_FALSE(gvm_ww_mutex_trylock(NULL, NULL));
	ASSERT_FALSE(gvm_ww_mutex_is_locked(NULL));
	gvm_ww_mutex_init(&m, &test_class);
	gvm_ww_acquire_init(&ctx, &test_class);
	ASSERT_EQ(gvm_ww_mutex_lock_slow(&m, NULL), -EINVAL);
	ASSERT_OK(gvm_ww_mutex_lock(&m, &ctx));
	/* lock_slow with locks held is a caller bug, reported not obeyed */
	ASSERT_EQ(gvm_ww_mutex_lock_slow(&m, &ctx), -EINVAL);
	gvm_ww_mutex_unlock(&m);
	ASSERT_OK(gvm_ww_acquire_fini(&ctx));
	/* Unlocking an unlocked mutex is reported and ignored, not a crash. */
	gvm_ww_mutex_unlock(&m);
	gvm_ww_mutex_unlock(NULL);
	ASSERT_FALSE(gvm_ww_mutex_is_locked(&m));
	ASSERT_TRUE(gvm_ww_mutex_trylock(&m, NULL));
	gvm_ww_mutex_unlock(&m);
	ASSERT_OK(gvm_ww_mutex_fini(&m));
}

TEST(stamps_age)
{
	struct gvm_ww_acquire_ctx a, b;

	gvm_ww_acquire_init(&a, &test_class);
	gvm_ww_acquire_init(&b, &test_class);
	ASSERT_LT(a.stamp, b.stamp);
}

/*
 * The older transaction waits for a lock the younger holds: it wounds the
 * younger, whose next contended lock fails with -EDEADLK; after backing off
 * the younger gets its lock with lock_slow once the older is done.
 */
struct wound_args {
	struct gvm_ww_mutex *m1, *m2;
	struct gvm_ww_acquire_ctx *ctx;
	uint32_t got_m1, release;
};

static void *older_thread(void *p)
{
	struct wound_args *a = p;

	ASSERT_OK(gvm_ww_mutex_lock(a->m2, a->ctx));
	ASSERT_OK(gvm_ww_mutex_lock(a->m1, a->ctx)); /* waits for younger */
	__atomic_store_n(&a->got_m1, 1, __ATOMIC_RELEASE);
	gvm_test_wait_flag(&a->release);
	gvm_ww_mutex_unlock(a->m1);
	gvm_ww_mutex_unlock(a->m2);
	ASSERT_OK(gvm_ww_acquire_fini(a->ctx));
	return NULL;
}

TEST(older_wounds_younger)
{
	struct gvm_ww_acquire_ctx old_ctx, young_ctx;
	struct gvm_ww_mutex m1, m2;
	struct wound_args a = { &m1, &m2, &old_ctx, 0, 0 };
	pthread_t t;

	gvm_ww_mutex_init(&m1, &test_class);
	gvm_ww_mutex_init(&m2, &test_class);
	gvm_ww_acquire_init(&old_ctx, &test_class);
	gvm_ww_acquire_init(&young_ctx, &test_class);

	ASSERT_OK(gvm_ww_mutex_lock(&m1, &young_ctx));
	pthread_create(&t, NULL, older_thread, &a);
	gvm_test_wait_flag(&young_ctx.wounded);
	ASSERT_FALSE(__atomic_load_n(&a.got_m1, __ATOMIC_ACQUIRE));

	/* Wounded and holding a lock: a contended lock must back off. */
	ASSERT_EQ(gvm_ww_mutex_lock(&m2, &young_ctx), -EDEADLK);
	gvm_ww_mutex_unlock(&m1);
	gvm_test_wait_flag(&a.got_m1);
	__atomic_store_n(&a.release, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_ww_mutex_lock_slow(&m2, &young_ctx));
	ASSERT_OK(gvm_ww_mutex_lock(&m1, &young_ctx));
	pthread_join(t, NULL);
	gvm_ww_mutex_unlock(&m1);
	gvm_ww_mutex_unlock(&m2);
	ASSERT_OK(gvm_ww_acquire_fini(&young_ctx));
}

/* A younger transaction just waits; the older one is not wounded. */
struct waiter_args {
	struct gvm_ww_mutex *m;
	struct gvm_ww_acquire_ctx *ctx;
	int result;
	uint32_t done;
};

static void *lock_thread(void *p)
{
	struct waiter_args *a = p;

	a->result = gvm_ww_mutex_lock(a->m, a->ctx);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	if (!a->result)
		gvm_ww_mutex_unlock(a->m);
	return NULL;
}

TEST(younger_waits)
{
	struct gvm_ww_acquire_ctx old_ctx, young_ctx;
	struct gvm_ww_mutex m, other;
	struct waiter_args a = { &m, &young_ctx, -1, 0 };
	pthread_t t;

	gvm_ww_mutex_init(&m, &test_class);
	gvm_ww_mutex_init(&other, &test_class);
	gvm_ww_acquire_init(&old_ctx, &test_class);
	gvm_ww_acquire_init(&young_ctx, &test_class);
	ASSERT_OK(gvm_ww_mutex_lock(&m, &old_ctx));
	pthread_create(&t, NULL, lock_thread, &a);
	wait_for_waiter(&m);
	ASSERT_EQ(old_ctx.wounded, 0);
	/* The older one can still take more locks freely. */
	ASSERT_OK(gvm_ww_mutex_lock(&other, &old_ctx));
	gvm_ww_mutex_unlock(&other);
	ASSERT_FALSE(__atomic_load_n(&a.done, __ATOMIC_ACQUIRE));
	gvm_ww_mutex_unlock(&m);
	pthread_join(t, NULL);
	ASSERT_EQ(a.result, 0);
}

/*
 * A wounded transaction asleep on a *different* mutex is woken by the wound
 * and backs off with -EDEADLK instead of sleeping on.
 */
TEST(wound_wakes_sleeper_elsewhere)
{
	struct gvm_ww_acquire_ctx old_ctx, young_ctx;
	struct gvm_ww_mutex m1, m3;
	struct waiter_args young = { &m3, &young_ctx, -1, 0 };
	struct waiter_args old = { &m1, &old_ctx, -1, 0 };
	pthread_t ty, to;

	gvm_ww_mutex_init(&m1, &test_class);
	gvm_ww_mutex_init(&m3, &test_class);
	gvm_ww_acquire_init(&old_ctx, &test_class);
	gvm_ww_acquire_init(&young_ctx, &test_class);

	ASSERT_OK(gvm_ww_mutex_lock(&m3, NULL));	/* a plain owner */
	ASSERT_OK(gvm_ww_mutex_lock(&m1, &young_ctx));	/* main acts as young */
	/* The young transaction then sleeps on m3 (from another thread, as
	 * the same context: the owner bookkeeping allows it for the test). */
	pthread_create(&ty, NULL, lock_thread, &young);
	wait_for_waiter(&m3);
	pthread_create(&to, NULL, lock_thread, &old);
	gvm_test_wait_flag(&young.done);
	ASSERT_EQ(young.result, -EDEADLK);
	ASSERT_FALSE(__atomic_load_n(&old.done, __ATOMIC_ACQUIRE));
	gvm_ww_mutex_unlock(&m1);
	pthread_join(to, NULL);
	ASSERT_EQ(old.result, 0);
	pthread_join(ty, NULL);
	gvm_ww_mutex_unlock(&m3);
}

static void on_sigusr1(int sig)
{
	(void)sig;
}

struct intr_args {
	struct gvm_ww_mutex *m;
	int result;
	uint32_t done;
};

static void *intr_thread(void *p)
{
	struct intr_args *a = p;
	struct gvm_ww_acquire_ctx ctx;

	gvm_ww_acquire_init(&ctx, &test_class);
	a->result = gvm_ww_mutex_lock_interruptible(a->m, &ctx);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

TEST(interruptible_lock)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	struct gvm_ww_mutex m;
	struct intr_args a = { &m, 1, 0 };
	pthread_t t;

	sigaction(SIGUSR1, &sa, NULL);	/* no SA_RESTART */
	gvm_ww_mutex_init(&m, &test_class);
	ASSERT_OK(gvm_ww_mutex_lock(&m, NULL));
	pthread_create(&t, NULL, intr_thread, &a);
	wait_for_waiter(&m);
	while (!__atomic_load_n(&a.done, __ATOMIC_ACQUIRE)) {
		pthread_kill(t, SIGUSR1);
		usleep(1000);
	}
	pthread_join(t, NULL);
	ASSERT_EQ(a.result, -EINTR);
	ASSERT_FALSE(has_waiter(&m));
	gvm_ww_mutex_unlock(&m);
	ASSERT_OK(gvm_ww_mutex_fini(&m));
}

/*
 * A waiter that leaves without the lock must pass the duty to re-evaluate the
 * owner on to the next waiter, even while the mutex is held.  Here the oldest
 * waiter (head) is stalled in a signal handler while the owner unlocks and a
 * younger transaction B steals the mutex; the head then leaves with -EINTR
 * without looking at B.  The second waiter, A2, is older than B but went to
 * sleep under a context-less owner, so it has not wounded B.  Now B waits for
 * a lock A2 holds: unless A2 is woken to re-evaluate (and wound B), A2 waits
 * for B and B for A2 forever.
 */
static uint32_t stall_in_handler, stall_release;

static void stall_handler(int sig)
{
	(void)sig;
	__atomic_store_n(&stall_in_handler, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&stall_release, __ATOMIC_ACQUIRE))
		;
}

static size_t count_waiters(struct gvm_ww_mutex *m)
{
	struct gvm_list *pos;
	size_t n = 0;

	gvm__mutex_lock(&m->wait_lock);
	for (pos = m->waiters.next; pos != &m->waiters; pos = pos->next)
		n++;
	gvm__mutex_unlock(&m->wait_lock);
	return n;
}

static void wait_for_waiters(struct gvm_ww_mutex *m, size_t n)
{
	int64_t end = gvm_test_now_ns() + 10ll * 1000000000;

	while (count_waiters(m) < n) {
		if (gvm_test_now_ns() > end)
			gvm_test_fail(__FILE__, __LINE__, "no waiter appeared");
		usleep(100);
	}
}

struct pair_args {
	struct gvm_ww_mutex *first, *second;
	struct gvm_ww_acquire_ctx *ctx;
	int result;
	uint32_t got_first, done;
};

/* Locks first, then second; reports; unlocks what it got. */
static void *pair_thread(void *p)
{
	struct pair_args *a = p;

	if (gvm_ww_mutex_lock(a->first, a->ctx))
		gvm_test_fail(__FILE__, __LINE__, "first lock failed");
	__atomic_store_n(&a->got_first, 1, __ATOMIC_RELEASE);
	a->result = gvm_ww_mutex_lock(a->second, a->ctx);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	if (!a->result)
		gvm_ww_mutex_unlock(a->second);
	gvm_ww_mutex_unlock(a->first);
	return NULL;
}

static void *intr_ctx_thread(void *p)
{
	struct waiter_args *a = p;

	a->result = gvm_ww_mutex_lock_interruptible(a->m, a->ctx);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	if (!a->result)
		gvm_ww_mutex_unlock(a->m);
	return NULL;
}

TEST(leaving_head_hands_over_to_next_waiter)
{
	struct sigaction sa = { .sa_handler = stall_handler };
	struct gvm_ww_acquire_ctx a1, a2, b;
	struct gvm_ww_mutex m, m2;
	struct waiter_args head = { &m, &a1, 1, 0 };
	struct pair_args older = { &m2, &m, &a2, 1, 0, 0 };
	struct pair_args young = { &m, &m2, &b, 1, 0, 0 };
	pthread_t t1, t2, tb;

	/*
	 * TSan defers a signal to its next interceptor, e.g. to after the
	 * waiter took m's wait_lock: the stalled handler would then hold it.
	 */
	if (UNDER_TSAN)
		return;
	sigaction(SIGUSR1, &sa, NULL);	/* no SA_RESTART */
	gvm_ww_mutex_init(&m, &test_class);
	gvm_ww_mutex_init(&m2, &test_class);
	gvm_ww_acquire_init(&a1, &test_class);	/* oldest */
	gvm_ww_acquire_init(&a2, &test_class);
	gvm_ww_acquire_init(&b, &test_class);	/* youngest */

	ASSERT_OK(gvm_ww_mutex_lock(&m, NULL));	/* a plain owner: no wounds */
	pthread_create(&t2, NULL, pair_thread, &older);	/* A2: m2, then m */
	wait_for_waiters(&m, 1);
	pthread_create(&t1, NULL, intr_ctx_thread, &head); /* A1: head of m */
	wait_for_waiters(&m, 2);
	gvm_test_sleep_ns(20 * 1000000);	/* let A1 enter the futex wait */
	pthread_kill(t1, SIGUSR1);
	gvm_test_wait_flag(&stall_in_handler);

	gvm_ww_mutex_unlock(&m);		/* wakes A1, which is stalled */
	pthread_create(&tb, NULL, pair_thread, &young);	/* B: m, then m2 */
	gvm_test_wait_flag(&young.got_first);	/* B stole m from the queue */
	__atomic_store_n(&stall_release, 1, __ATOMIC_RELEASE);
	gvm_test_wait_flag(&head.done);

	/* A2 must have been woken, found B, wounded it: B backs off. */
	gvm_test_wait_flag(&young.done);
	ASSERT_EQ(young.result, -EDEADLK);
	pthread_join(tb, NULL);
	pthread_join(t2, NULL);
	ASSERT_EQ(older.result, 0);
	pthread_join(t1, NULL);
	ASSERT_TRUE(head.result == -EINTR || head.result == 0);
	ASSERT_OK(gvm_ww_mutex_fini(&m));
	ASSERT_OK(gvm_ww_mutex_fini(&m2));
}

TEST(lock_order_violation_aborts)
{
#if GVM_DEBUG >= 1
	struct gvm_mutex notifier;
	struct gvm_resv resv;

	gvm__mutex_init(&notifier, "notifier_lock", GVM_RANK_NOTIFIER);
	gvm_resv_init(&resv);
	ASSERT_DEATH(
		{
			gvm__mutex_lock(&notifier);
			gvm_resv_lock(&resv, NULL);
		},
		"acquiring \"reservation\" (rank 300) while holding "
		"\"notifier_lock\" (rank 400)");
	/* The documented order is fine. */
	gvm_resv_lock(&resv, NULL);
	gvm__mutex_lock(&notifier);
	gvm__mutex_unlock(&notifier);
	gvm_resv_unlock(&resv);
	ASSERT_OK(gvm_resv_fini(&resv));
#else
	printf("lock-rank checker is compiled out of release builds\n");
#endif
}

TEST(recursive_lock_aborts)
{
#if GVM_DEBUG >= 1
	struct gvm_mutex m;

	gvm__mutex_init(&m, "vm->lock", GVM_RANK_VM);
	ASSERT_DEATH(
		{
			gvm__mutex_lock(&m);
			gvm__mutex_lock(&m);
		},
		"recursive locking of \"vm->lock\"");
#else
	printf("lock-rank checker is compiled out of release builds\n");
#endif
}

/*
 * A wound is about the locks a context holds: once it has backed off and
 * holds nothing, the wound is stale and must be forgotten when it locks
 * again (fast path or, here, slow path), or the rerun would back off again
 * at every wait.
 */
struct hold_args {
	struct gvm_ww_mutex *m;
	uint32_t locked;
};

/* Holds @m (no context) until someone waits for it, then unlocks. */
static void *hold_until_waited(void *p)
{
	struct hold_args *a = p;

	ASSERT_OK(gvm_ww_mutex_lock(a->m, NULL));
	__atomic_store_n(&a->locked, 1, __ATOMIC_RELEASE);
	wait_for_waiter(a->m);
	gvm_ww_mutex_unlock(a->m);
	return NULL;
}

TEST(stale_wound_is_forgotten)
{
	struct gvm_ww_acquire_ctx ctx;
	struct gvm_ww_mutex m1, m2, m3;
	struct hold_args h2 = { &m2, 0 }, h3 = { &m3, 0 };
	pthread_t t2, t3;

	gvm_ww_mutex_init(&m1, &test_class);
	gvm_ww_mutex_init(&m2, &test_class);
	gvm_ww_mutex_init(&m3, &test_class);
	gvm_ww_acquire_init(&ctx, &test_class);
	ASSERT_OK(gvm_ww_mutex_lock(&m1, &ctx));
	__atomic_store_n(&ctx.wounded, 1, __ATOMIC_RELAXED); /* as if wounded */
	gvm_ww_mutex_unlock(&m1);			/* backed off */

	pthread_create(&t2, NULL, hold_until_waited, &h2);
	gvm_test_wait_flag(&h2.locked);
	ASSERT_OK(gvm_ww_mutex_lock_slow(&m2, &ctx));	/* through the slow path */
	pthread_join(t2, NULL);
	ASSERT_EQ(__atomic_load_n(&ctx.wounded, __ATOMIC_RELAXED), 0);

	/* Holding m2, it may now wait for m3 instead of backing off. */
	pthread_create(&t3, NULL, hold_until_waited, &h3);
	gvm_test_wait_flag(&h3.locked);
	ASSERT_OK(gvm_ww_mutex_lock(&m3, &ctx));
	pthread_join(t3, NULL);
	gvm_ww_mutex_unlock(&m3);
	gvm_ww_mutex_unlock(&m2);
	ASSERT_OK(gvm_ww_acquire_fini(&ctx));
}
