// SPDX-License-Identifier: MIT
/*
 * Allocation-failure injection across the core API: every allocation a call
 * makes is failed in turn (GVM_INJECT_ALLOC, core/inject.h); the call must return
 * -ENOMEM and change nothing, and the next attempt must work.  Under ASan
 * the leak checker also proves the error paths free what they allocated.
 *
 * VM-layer paths whose failures are absorbed rather than returned are
 * injected in their own suites with the same counter: e.g. a purge that
 * cannot get its zeroed pages leaves the BO in VRAM and eviction takes
 * another victim (test_purge.purge_under_allocation_failures).
 */
#include <gvm/gvm.h>

#include <sys/mman.h>

#include "core/alloc.h"
#include "pt/pt.h"
#include "harness.h"

/* Arms the N-th allocation to fail; returns whether it fired. */
static void arm(long nth)
{
	gvm__inject_arm(GVM_INJECT_ALLOC, nth, 0);
}

static bool fired(void)
{
	bool f = gvm__inject_pending(GVM_INJECT_ALLOC) == 0;

	arm(0);
	return f;
}

/*
 * Runs the statement `err = CALL` with its 1st, 2nd, ... allocation failing
 * until a run allocates fewer than that and succeeds (err == 0).  Each
 * failed run must give -ENOMEM, then runs AFTER (checks that nothing
 * changed).  Counts the failed runs in *FAILURES.
 */
#define FAIL_EACH_ALLOCATION(failures, err, call, after)                \
	for (long k_ = 1;; k_++) {                                      \
		arm(k_);                                                \
		(err) = (call);                                         \
		if (!fired()) {                                         \
			ASSERT_OK(err);                                 \
			break;                                          \
		}                                                       \
		ASSERT_EQ((err), -ENOMEM);                              \
		(*(failures))++;                                        \
		after;                                                  \
	}

TEST(fence_create)
{
	long failures = 0;
	int err;
	struct gvm_fence *f = (struct gvm_fence *)0x1;

	FAIL_EACH_ALLOCATION(&failures, err,
			     gvm_fence_create(gvm_fence_context_alloc(1), 1, &f),
			     ASSERT_TRUE(f == (struct gvm_fence *)0x1));
	gvm_fence_put(f);
}

TEST(fence_array_create)
{
	struct gvm_fence *m[3], *a = NULL;
	uint64_t ctx = gvm_fence_context_alloc(3);
	long failures = 0;
	int err;

	for (int i = 0; i < 3; i++)
		ASSERT_OK(gvm_fence_create(ctx + (uint64_t)i, 1, &m[i]));
	FAIL_EACH_ALLOCATION(&failures, err,
			     gvm_fence_array_create(m, 3,
						    gvm_fence_context_alloc(1),
						    1, &a),
			     for (int i = 0; i < 3; i++) /* no ref leaked */
				     ASSERT_EQ(m[i]->refcount, 1));
	ASSERT_GT(failures, 0);	/* the array does allocate */
	for (int i = 0; i < 3; i++)
		gvm_fence_signal(m[i]);
	ASSERT_EQ(gvm_fence_get_status(a), 1);
	gvm_fence_put(a);
	for (int i = 0; i < 3; i++)
		gvm_fence_put(m[i]);
}

TEST(timeline)
{
	long failures = 0;
	int err;
	struct gvm_timeline *tl = NULL;
	struct gvm_fence *f = NULL;

	FAIL_EACH_ALLOCATION(&failures, err, gvm_timeline_create("t", &tl), );
	FAIL_EACH_ALLOCATION(&failures, err, gvm_timeline_fence_create(tl, &f), );
	ASSERT_EQ(f->seqno, 1);		/* failures consumed no seqno */
	ASSERT_OK(gvm_timeline_signal(tl, 1, 0));
	ASSERT_TRUE(gvm_fence_is_signaled(f));
	gvm_fence_put(f);
	gvm_timeline_destroy(tl);
}

static int job_run(struct gvm_job *job, struct gvm_fence **hw)
{
	(void)job;
	(void)hw;
	return 0;
}

static void job_free(struct gvm_job *job)
{
	(void)job;
}

static const struct gvm_job_ops job_ops = { .run = job_run, .free = job_free };

TEST(scheduler)
{
	long failures = 0;
	int err;
	struct gvm_sched *s = NULL;
	struct gvm_sched_queue *q = NULL;
	struct gvm_fence *deps[4], *done;
	struct gvm_job job;
	uint64_t ctx = gvm_fence_context_alloc(4);

	FAIL_EACH_ALLOCATION(&failures, err, gvm_sched_create("s", 2, &s), );
	FAIL_EACH_ALLOCATION(&failures, err, gvm_sched_queue_create(s, "q", &q), );
	FAIL_EACH_ALLOCATION(&failures, err, gvm_job_init(&job, q, &job_ops), );
	/* Adding dependencies grows an array: a failure leaves the job as is. */
	for (int i = 0; i < 4; i++) {
		ASSERT_OK(gvm_fence_create(ctx + (uint64_t)i, 1, &deps[i]));
		FAIL_EACH_ALLOCATION(&failures, err,
				     gvm_job_add_dependency(&job, deps[i]),
				     ASSERT_EQ(deps[i]->refcount, 1));
	}
	gvm_job_arm(&job);
	done = gvm_fence_get(gvm_job_finished(&job));
	gvm_job_push(&job);
	ASSERT_EQ(gvm_fence_wait(done, 0), -ETIME);	/* waits for all four */
	for (int i = 0; i < 4; i++)
		gvm_fence_signal(deps[i]);
	ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(done), 1);
	gvm_fence_put(done);
	for (int i = 0; i < 4; i++)
		gvm_fence_put(deps[i]);
	gvm_sched_queue_destroy(q);
	ASSERT_OK(gvm_sched_destroy(s));
}

static unsigned int count_fences(struct gvm_resv *r)
{
	struct gvm_fence **fences;
	unsigned int n;

	ASSERT_OK(gvm_resv_get_fences(r, GVM_RESV_USAGE_BOOKKEEP, &fences, &n));
	gvm_resv_put_fences(fences, n);
	return n;
}

TEST(resv)
{
	long failures = 0;
	int err;
	uint64_t ctx = gvm_fence_context_alloc(64);
	struct gvm_fence *f[64], **snap;
	unsigned int n;
	struct gvm_resv r;

	gvm_resv_init(&r);
	/* Grow the fence set step by step, failing each growth once. */
	for (int i = 0; i < 64; i++) {
		ASSERT_OK(gvm_fence_create(ctx + (uint64_t)i, 1, &f[i]));
		ASSERT_OK(gvm_resv_lock(&r, NULL));
		/* a failure reserves nothing and loses nothing */
		FAIL_EACH_ALLOCATION(&failures, err,
				     gvm_resv_reserve_fences(&r, 1), {
			ASSERT_EQ(gvm_resv_add_fence(&r, f[i],
						     GVM_RESV_USAGE_READ),
				  -ENOSPC);
			ASSERT_EQ(count_fences(&r), i);
			ASSERT_OK(gvm_resv_validate(&r));
		});
		ASSERT_OK(gvm_resv_add_fence(&r, f[i], GVM_RESV_USAGE_READ));
		gvm_resv_unlock(&r);
	}
	/* Lock-free snapshots allocate too. */
	arm(1);
	ASSERT_EQ(gvm_resv_get_fences(&r, GVM_RESV_USAGE_READ, &snap, &n),
		  -ENOMEM);
	ASSERT_TRUE(fired());
	for (int i = 0; i < 64; i++)
		ASSERT_EQ(f[i]->refcount, 2);	/* ours + the set's */
	ASSERT_EQ(count_fences(&r), 64);
	for (int i = 0; i < 64; i++) {
		gvm_fence_signal(f[i]);
		gvm_fence_put(f[i]);
	}
	ASSERT_OK(gvm_resv_fini(&r));
}

TEST(lockset)
{
	struct gvm_resv r[20], *rs[20];
	struct gvm_lockset ls;

	for (int i = 0; i < 20; i++) {
		gvm_resv_init(&r[i]);
		rs[i] = &r[i];
	}
	for (long k = 1;; k++) {
		bool failed = false;
		int err = 0;

		ASSERT_OK(gvm_lockset_init(&ls, 0));
		arm(k);
		gvm_lockset_until_all_locked(&ls) {
			err = gvm_lockset_prepare_array(&ls, rs, 20, 1);
			gvm_lockset_retry_on_contention(&ls);
		}
		failed = fired();
		if (failed)
			ASSERT_EQ(err, -ENOMEM);
		else
			ASSERT_OK(err);
		gvm_lockset_fini(&ls);
		for (int i = 0; i < 20; i++)	/* fini unlocked everything */
			ASSERT_FALSE(gvm_resv_is_locked(&r[i]));
		if (!failed)
			break;
	}
	for (int i = 0; i < 20; i++)
		ASSERT_OK(gvm_resv_fini(&r[i]));
}

/*
 * One page-table update of many segments (more than the walk keeps on its
 * stack): splits a 2M leaf, rewrites a 4K table, builds new tables, clears
 * some.  Each failed prepare leaves the tables as they were.
 */
TEST(pt_update_prepare)
{
	enum { N = 24 };
	const uint64_t k4 = 4096, m2 = 2ull << 20, g1 = 1ull << 30;
	uint64_t arena_size = 16ull << 20, tables;
	struct gvm_pt_extent big = { 10 * g1, m2 }, small = { 11 * g1 + k4, m2 };
	struct gvm_pt_extent x[N];
	struct gvm_pt_seg s[N];
	struct gvm_pt_update upd;
	struct gvm_pt_xlate xl;
	struct gvm_buddy buddy;
	struct gvm_pt_mem mem = { 0 };
	struct gvm_pt_vm vm;
	long failures = 0;
	uint8_t *arena;
	int err, i;

	arena = mmap(NULL, arena_size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(arena != MAP_FAILED);
	ASSERT_OK(gvm__buddy_init(&buddy, arena_size, 0));
	mem.buddy = &buddy;
	mem.cpu_base = arena;
	ASSERT_OK(gvm__pt_vm_init(&vm, &mem, 48, 0));
	ASSERT_OK(gvm__pt_bind(&vm, 0, m2, &big, 1, 0, NULL));
	ASSERT_OK(gvm__pt_bind(&vm, m2, m2, &small, 1, 0, NULL));
	tables = vm.nr_tables;
	/* 8 segments in each of [0, 2M), [2M, 4M) and [1G, 1G + 2M). */
	for (i = 0; i < N; i++) {
		uint64_t va = (uint64_t)(i / 8) * m2 + (uint64_t)(i % 8) * 64 * k4;

		if (i >= 16)
			va += g1 - 2 * m2;
		x[i] = (struct gvm_pt_extent){ 12 * g1 + va, 16 * k4 };
		s[i] = (struct gvm_pt_seg){ va, va + 16 * k4, GVM_PT_WRITE,
					    &x[i], 1 };
		if (i % 3 == 1)
			s[i] = (struct gvm_pt_seg){ va, va + 16 * k4,
						    GVM_PT_UNBIND, NULL, 0 };
	}
	gvm__pt_trim(&vm);	/* no spare records: every one is allocated */
	FAIL_EACH_ALLOCATION(&failures, err,
			     gvm__pt_update_prepare(&vm, s, N, &upd), {
		ASSERT_TRUE(!vm.pending);
		ASSERT_EQ(vm.nr_tables, tables);
		ASSERT_EQ(buddy.nr_allocated, tables);
		ASSERT_OK(gvm__pt_validate(&vm));
		ASSERT_OK(gvm__pt_translate(&vm, 0, GVM_PT_VIEW_COMMITTED,
					    &xl));
		ASSERT_EQ(xl.page_size, m2);
	});
	ASSERT_GT(failures, 5);	/* segment copy, runs, records, tables */
	gvm__pt_update_commit(&upd, NULL, NULL);
	ASSERT_OK(gvm__pt_validate(&vm));
	ASSERT_OK(gvm__pt_translate(&vm, g1 + 64 * k4, GVM_PT_VIEW_COMMITTED,
				    &xl));		/* s[17] */
	ASSERT_EQ(xl.addr, 12 * g1 + g1 + 64 * k4);
	ASSERT_EQ(gvm__pt_translate(&vm, 64 * k4, GVM_PT_VIEW_COMMITTED, &xl),
		  -ENOENT);
	ASSERT_OK(gvm__pt_unbind(&vm, 0, 2 * g1, NULL));
	ASSERT_EQ(vm.nr_tables, 1);
	gvm__pt_vm_fini(&vm);
	ASSERT_EQ(buddy.nr_allocated, 0);
	gvm__buddy_fini(&buddy);
	munmap(arena, arena_size);
}
