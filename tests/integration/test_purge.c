// SPDX-License-Identifier: MIT
/*
 * Purgeable buffer objects through the public API (gvm_bo_madvise(),
 * docs/vm.md "Purgeable buffer objects") on the simulated GPU.
 *
 * Pressure is made the simplest way: unbound 2 MiB VRAM-only "filler" BOs
 * are created on a 16 MiB device until the BO under test leaves VRAM
 * (gvm_bo_create() evicts idle BOs for a VRAM-only BO).  A busy BO is
 * made busy with a kernel queued behind a gate fence the test signals,
 * never with a sleep.  Contents are checked from the CPU (the BO's view)
 * and from the GPU (a checksum kernel), counters from gvm_vm_stats().
 *
 * Each test has its own device; nothing is shared between tests.
 */
#include <pthread.h>
#include <sched.h>

#include <gvm/gvm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "core/alloc.h"
#include "harness.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define VA 0x40000000ull
#define SUMS (VA - M2)			/* checksum results, system memory */
#define MAX_FILL 10

struct ctx {
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_bo *bo;		/* the BO under test, mapped at VA */
	struct gvm_bo *res;		/* SUMS */
	uint64_t *sums;
	uint32_t *view;			/* bo's CPU view */
	struct gvm_bo *fill[MAX_FILL];
	int nr_fill;
};

static uint64_t expect_sum(uint32_t pattern)
{
	uint64_t w = ((uint64_t)pattern << 32) | pattern;

	return w * (M2 / 8);
}

/* Runs @k on the context's queue and waits: 0 or the fence's error. */
static int run(struct ctx *c, const struct gvm_kernel *k)
{
	return gvm_test_run(c->q, k);
}

static void gpu_fill(struct ctx *c, uint32_t pattern)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_fill(&k, VA, M2, pattern));
	ASSERT_OK(run(c, &k));
}

static uint64_t gpu_sum(struct ctx *c)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_checksum(&k, VA, M2, SUMS));
	ASSERT_OK(run(c, &k));
	return c->sums[0];
}

/* A 16 MiB device, a VM, and a 2 MiB VRAM-only BO (@local: VM-local). */
static void setup(struct ctx *c, bool local)
{
	struct gvm_sim_config cfg = { .vram_size = 16ull << 20 };
	struct gvm_bind_op ops[2];

	memset(c, 0, sizeof(*c));
	ASSERT_OK(gvm_sim_device_create(&cfg, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, NULL, 0, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
	ASSERT_OK(gvm_bo_create(c->dev, M2, GVM_MEM_VRAM, local ? c->vm : NULL,
				&c->bo));
	ASSERT_OK(gvm_bo_create(c->dev, K4, GVM_MEM_SYSTEM, c->vm, &c->res));
	ASSERT_OK(gvm_bo_map(c->res, (void **)&c->sums));
	ASSERT_OK(gvm_bo_map(c->bo, (void **)&c->view));
	memset(ops, 0, sizeof(ops));
	ops[0] = (struct gvm_bind_op){ .op = GVM_BIND_MAP, .addr = VA,
				       .range = M2, .bo = c->bo };
	ops[1] = (struct gvm_bind_op){ .op = GVM_BIND_MAP, .addr = SUMS,
				       .range = K4, .bo = c->res };
	ASSERT_OK(gvm_vm_bind(c->vm, NULL, ops, 2, NULL, 0));
}

static void teardown(struct ctx *c)
{
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_bo_put(c->bo);
	gvm_bo_put(c->res);
	for (int i = 0; i < c->nr_fill; i++)
		gvm_bo_put(c->fill[i]);
	gvm_device_put(c->dev);
}

/* One more unbound 2 MiB VRAM-only BO (may evict): its create's result. */
static int add_filler(struct ctx *c)
{
	struct gvm_bo *b;
	int err;

	ASSERT_LT(c->nr_fill, MAX_FILL);
	err = gvm_bo_create(c->dev, M2, GVM_MEM_VRAM, NULL, &b);
	if (!err)
		c->fill[c->nr_fill++] = b;
	return err;
}

/* Fillers until the BO under test left VRAM (fails if it never does). */
static void press_until_out(struct ctx *c)
{
	while (gvm_bo_region(c->bo) == GVM_MEM_VRAM)
		ASSERT_OK(add_filler(c));
}

static int fillers_in_vram(struct ctx *c)
{
	int n = 0;

	for (int i = 0; i < c->nr_fill; i++)
		n += gvm_bo_region(c->fill[i]) == GVM_MEM_VRAM;
	return n;
}

/* Fillers until creating one evicted another (VRAM is full). */
static void press_until_filler_out(struct ctx *c)
{
	int before;

	do {
		before = fillers_in_vram(c);
		ASSERT_OK(add_filler(c));
	} while (fillers_in_vram(c) > before);
}

/*
 * A DONTNEED BO evicted under pressure is purged: nothing copied (no
 * bytes_to_system, one purge counted), chosen before older idle BOs; the
 * next WILLNEED says retained=false once, the contents are zeros from the
 * CPU and the GPU, and the BO is usable again (exec moves it back).
 */
TEST(dontneed_bo_is_purged_not_copied)
{
	struct gvm_vm_stats st;
	bool retained = false;
	struct ctx c;

	setup(&c, false);
	/* Two older idle BOs: without the advice they would go first. */
	ASSERT_OK(add_filler(&c));
	ASSERT_OK(add_filler(&c));
	gpu_fill(&c, 0x5a5a5a5a);	/* the BO is now the most recent */
	ASSERT_EQ(c.view[0], 0x5a5a5a5a);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, &retained));
	ASSERT_TRUE(retained);

	press_until_out(&c);
	ASSERT_EQ(fillers_in_vram(&c), c.nr_fill);	/* it went first */
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.purges, 1);
	ASSERT_EQ(st.bytes_purged, M2);
	ASSERT_EQ(st.evictions, 1);
	ASSERT_EQ(st.bytes_to_system, 0);		/* nothing copied */
	ASSERT_EQ(st.dev_purges, 1);
	ASSERT_EQ(st.dev_bytes_purged, M2);
	/* The view follows it to its new, zeroed pages. */
	ASSERT_EQ(c.view[0], 0);
	ASSERT_EQ(c.view[M2 / 4 - 1], 0);

	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_FALSE(retained);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_TRUE(retained);				/* once per purge */
	/* Usable again: exec brings it back to VRAM, with zeros. */
	ASSERT_EQ(gpu_sum(&c), 0);
	ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_VRAM);
	gpu_fill(&c, 7);
	ASSERT_EQ(gpu_sum(&c), expect_sum(7));
	ASSERT_EQ(c.view[M2 / 4 - 1], 7);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.purges, 1);
	teardown(&c);
}

/* Advice without pressure changes nothing: contents intact, retained. */
TEST(willneed_without_pressure_retains)
{
	bool retained = false;
	struct gvm_vm_stats st;
	struct ctx c;

	setup(&c, true);
	gpu_fill(&c, 0x1234);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, &retained));
	ASSERT_TRUE(retained);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, NULL));	/* twice */
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_TRUE(retained);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_TRUE(retained);
	ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_VRAM);
	ASSERT_EQ(c.view[0], 0x1234);
	ASSERT_EQ(gpu_sum(&c), expect_sum(0x1234));
	/* WILLNEED again: pressure evicts others (copied), purges none. */
	press_until_filler_out(&c);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.dev_purges, 0);
	ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_VRAM);
	ASSERT_EQ(c.view[M2 / 4 - 1], 0x1234);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_TRUE(retained);
	teardown(&c);
}

/*
 * A purged BO still DONTNEED stays mapped and usable, and its GPU mapping
 * never reaches the VRAM it had: that VRAM now belongs to a filler the
 * CPU fills with 0xff, and the GPU reads zeros through the BO's mapping.
 * Exec does not bring it back to VRAM while DONTNEED.  DONTNEED again
 * reports the loss and keeps it; the first WILLNEED reports it once.
 */
TEST(gpu_mapping_of_purged_bo_reads_no_stale_memory)
{
	bool retained = true;
	struct gvm_vm_stats st;
	struct ctx c;

	setup(&c, true);
	gpu_fill(&c, 0xabcdabcd);
	ASSERT_EQ(gpu_sum(&c), expect_sum(0xabcdabcd));	/* TLB warm */
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, NULL));
	press_until_out(&c);
	for (int i = 0; i < c.nr_fill; i++) {
		uint8_t *p;

		ASSERT_OK(gvm_bo_map(c.fill[i], (void **)&p));
		memset(p, 0xff, M2);
	}
	ASSERT_EQ(gpu_sum(&c), 0);
	ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_SYSTEM);	/* not brought back */
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.faults, 0);
	ASSERT_EQ(st.bytes_to_vram, 0);
	/* Written while purged: it is ordinary system memory now. */
	gpu_fill(&c, 3);
	ASSERT_EQ(c.view[0], 3);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, &retained));
	ASSERT_FALSE(retained);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_FALSE(retained);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_TRUE(retained);
	ASSERT_EQ(gpu_sum(&c), expect_sum(3));
	ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_VRAM);
	teardown(&c);
}

/*
 * A DONTNEED BO busy with a kernel (held by a gate) is not purged under
 * it: eviction takes idle BOs instead (copied), and the BO is purged only
 * by an eviction after its kernel completed.  The kernel's writes land in
 * the BO (it stayed in VRAM); the advice itself does not wait for it.
 */
TEST(busy_dontneed_bo_is_purged_only_after_its_job)
{
	struct gvm_fence *gate, *done = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL, .out = &done },
	};
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	bool retained;
	struct ctx c;
	int before;

	setup(&c, false);
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &gate));
	s[0].fence = gate;
	ASSERT_OK(gvm_kernel_fill(&k, VA, M2, 0x77));
	ASSERT_OK(gvm_exec(c.q, &k, s, 2));
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, &retained));
	ASSERT_TRUE(retained);

	/* Fill VRAM until an idle filler had to go: the busy BO stayed. */
	press_until_filler_out(&c);
	ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_VRAM);
	ASSERT_FALSE(gvm_fence_is_signaled(done));
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.dev_purges, 0);

	gvm_fence_signal(gate);
	ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(done), 1);
	ASSERT_EQ(c.view[0], 0x77);	/* the job ran on its contents */
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, &retained));
	ASSERT_TRUE(retained);

	/* Idle now: the next eviction purges it, ahead of the fillers. */
	before = fillers_in_vram(&c);
	ASSERT_OK(add_filler(&c));
	ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_SYSTEM);
	ASSERT_EQ(fillers_in_vram(&c), before + 1);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.purges, 1);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_FALSE(retained);
	ASSERT_EQ(c.view[0], 0);
	gvm_fence_put(done);
	gvm_fence_put(gate);
	teardown(&c);
}

/* Bad input: -EINVAL and nothing changed (the advice stays DONTNEED). */
TEST(bad_input)
{
	bool retained = true;
	struct gvm_vm_stats st;
	struct ctx c;

	setup(&c, false);
	ASSERT_EQ(gvm_bo_madvise(NULL, GVM_BO_DONTNEED, &retained), -EINVAL);
	ASSERT_EQ(gvm_bo_madvise(NULL, GVM_BO_WILLNEED, &retained), -EINVAL);
	ASSERT_EQ(gvm_bo_madvise(c.bo, 2, &retained), -EINVAL);
	ASSERT_EQ(gvm_bo_madvise(c.bo, ~0u, &retained), -EINVAL);
	ASSERT_TRUE(retained);		/* not written on failure */
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, NULL));
	ASSERT_EQ(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, NULL), -EINVAL);
	ASSERT_EQ(gvm_bo_madvise(c.bo, 2, NULL), -EINVAL);
	/* Still DONTNEED: purged under pressure. */
	press_until_out(&c);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.purges, 1);
	ASSERT_EQ(st.bytes_to_system, 0);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_FALSE(retained);
	teardown(&c);
}

/*
 * Allocation failures in the eviction that purges (the purge's new
 * backing, the evicting create itself): every N-th allocation is failed
 * in turn; the create succeeds or fails cleanly, and the BO is either
 * retained with its contents or purged with zeros, never anything else;
 * a failed purge leaves it in VRAM with its contents.
 */
TEST(purge_under_allocation_failures)
{
	int need = 0;
	long nth;

	/* How many fillers make the BO leave VRAM, on a fresh device. */
	{
		struct ctx c;

		setup(&c, false);
		ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, NULL));
		press_until_out(&c);
		need = c.nr_fill;
		teardown(&c);
	}
	for (nth = 1;; nth++) {
		bool retained, fired;
		uint32_t expect;
		struct ctx c;
		int err;

		setup(&c, nth & 1);
		memset(c.view, 0x3c, M2);
		ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, NULL));
		for (int i = 0; i < need - 1; i++)
			ASSERT_OK(add_filler(&c));
		gvm__inject_arm(GVM_INJECT_ALLOC, nth, 0);
		err = add_filler(&c);
		fired = gvm__inject_pending(GVM_INJECT_ALLOC) == 0;
		gvm__inject_arm(GVM_INJECT_ALLOC, 0, 0);
		ASSERT_TRUE(err == 0 || err == -ENOMEM || err == -ENOSPC);
		if (!fired)
			ASSERT_OK(err);
		ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
		if (!fired)
			ASSERT_FALSE(retained);
		if (retained)	/* not purged: where it was, contents kept */
			ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_VRAM);
		expect = retained ? 0x3c3c3c3c : 0;
		ASSERT_EQ(c.view[0], expect);
		ASSERT_EQ(c.view[M2 / 4 - 1], expect);
		ASSERT_EQ(gpu_sum(&c), expect_sum(expect));
		teardown(&c);
		if (!fired)
			break;
		ASSERT_LT(nth, 1000);
	}
	ASSERT_GT(nth, 1);		/* at least one failure was injected */
}

/*
 * Advice racing eviction, self-checking: one thread flips the BO between
 * DONTNEED and WILLNEED and checks it after each WILLNEED (retained: the
 * pattern, whole; not retained: zeros, then a new pattern written by the
 * GPU, which holds the reservation, so no move races the writes), while
 * another keeps VRAM over-full by creating fillers (each create evicts;
 * the BO, when DONTNEED and idle, first).  Every purge must be reported
 * exactly once: the WILLNEEDs that said "not retained" equal the device's
 * purge count at the end.
 */
static struct {
	struct ctx *c;
	bool stop;			/* atomic */
	uint64_t creates;		/* atomic */
} race;

static void *race_filler(void *arg)
{
	struct gvm_bo *ring[8] = { 0 };
	unsigned int i = 0;

	(void)arg;
	while (!__atomic_load_n(&race.stop, __ATOMIC_ACQUIRE)) {
		gvm_bo_put(ring[i % 8]);
		ASSERT_OK(gvm_bo_create(race.c->dev, M2, GVM_MEM_VRAM, NULL,
					&ring[i % 8]));
		i++;
		__atomic_fetch_add(&race.creates, 1, __ATOMIC_RELEASE);
	}
	for (i = 0; i < 8; i++)
		gvm_bo_put(ring[i]);
	return NULL;
}

TEST(advice_races_eviction)
{
	uint64_t rounds = gvm_test_scale(200), lost = 0, r;
	struct gvm_vm_stats st;
	uint32_t pattern = 1;
	pthread_t t;
	struct ctx c;

	setup(&c, false);
	gpu_fill(&c, pattern);
	race.c = &c;
	race.stop = false;
	race.creates = 0;
	ASSERT_OK(pthread_create(&t, NULL, race_filler, NULL));
	for (r = 0; r < rounds; r++) {
		bool retained;
		uint32_t expect;

		ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, NULL));
		/* Every other round, one create while DONTNEED for sure. */
		if (r & 1) {
			uint64_t n = __atomic_load_n(&race.creates,
						     __ATOMIC_ACQUIRE);

			while (__atomic_load_n(&race.creates,
					       __ATOMIC_ACQUIRE) < n + 2)
				sched_yield();
		}
		ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
		expect = retained ? pattern : 0;
		ASSERT_EQ(c.view[0], expect);
		ASSERT_EQ(c.view[M2 / 4 - 1], expect);
		if (retained)
			continue;
		lost++;
		ASSERT_EQ(gpu_sum(&c), 0);
		pattern++;
		gpu_fill(&c, pattern);
		ASSERT_EQ(gpu_sum(&c), expect_sum(pattern));
	}
	__atomic_store_n(&race.stop, true, __ATOMIC_RELEASE);
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.dev_purges, lost);
	ASSERT_EQ(st.purges, lost);
	printf("%" PRIu64 " rounds, %" PRIu64 " creates, %" PRIu64
	       " purges\n", rounds, race.creates, lost);
	ASSERT_GT(lost, 0);
	teardown(&c);
}

/*
 * Page-table memory comes from VRAM too (gvm__vram_make_room(), under
 * the bind's locks): with VRAM full, a bind that needs new tables purges
 * the idle DONTNEED BO (an external one, not locked by the bind), first
 * among idle BOs, and the bind succeeds.
 */
TEST(page_table_allocation_purges_dontneed_bo)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .range = K4 };
	struct gvm_device_info info;
	struct gvm_vm_stats st;
	bool retained;
	struct ctx c;
	int before;

	/* External: a VM-local BO shares the reservation the bind holds,
	   and eviction never takes its caller's own BOs. */
	setup(&c, false);
	gpu_fill(&c, 0x42);
	press_until_filler_out(&c);
	ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_VRAM);
	ASSERT_OK(gvm_device_query(c.dev, &info));
	if (info.vram_free) {		/* the rest, to the last page */
		ASSERT_LT(c.nr_fill, MAX_FILL);
		ASSERT_OK(gvm_bo_create(c.dev, info.vram_free, GVM_MEM_VRAM,
					NULL, &c.fill[c.nr_fill]));
		c.nr_fill++;
	}
	ASSERT_OK(gvm_device_query(c.dev, &info));
	ASSERT_EQ(info.vram_free, 0);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_DONTNEED, NULL));
	before = fillers_in_vram(&c);

	op.addr = 0x7000000000ull;	/* new tables at every level */
	op.bo = c.res;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	ASSERT_EQ(gvm_bo_region(c.bo), GVM_MEM_SYSTEM);
	ASSERT_EQ(fillers_in_vram(&c), before);	/* it went first */
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.dev_purges, 1);
	ASSERT_EQ(st.purges, 1);
	ASSERT_OK(gvm_bo_madvise(c.bo, GVM_BO_WILLNEED, &retained));
	ASSERT_FALSE(retained);
	ASSERT_EQ(c.view[0], 0);
	teardown(&c);
}
