// SPDX-License-Identifier: MIT
/*
 * SVM cases in the spirit of IGT's xe_exec_system_allocator and the
 * kernel's hmm-tests (issue 12), on top of test_svm.c and test_migrate.c:
 * GPU atomics on malloc'd, device-resident and shared memory (exact
 * counts, unique tickets), huge-page memory, memory the CPU never touched,
 * a range of sizes, one job faulting on many ranges and mappings, a long
 * GPU/CPU ping-pong, and MADV_FREE.  Every step checks the data, and the
 * statistics where they say something definite (docs/svm.md,
 * "Statistics").
 *
 * Nothing here waits for time: jobs end with user fences, and a test that
 * needs two jobs to run at once uses kernels that wait for each other.
 */
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "svmtest.h"
#include "mmhold.h"
#include "core/atomic.h"
#include "mm/mm.h"
#include "vm/policy.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M1 (1ull << 20)
#define M2 (2ull << 20)
#define M8 (8ull << 20)
#define M64 (64ull << 20)
#define MIRROR_END (1ull << 47)

/* The 64-bit word a fill with the 32-bit pattern @v leaves. */
#define W(v) ((uint64_t)(v) * 0x100000001ull)

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q, *q2;	/* on the two compute engines */
	uint64_t *out;			/* a shared page for checksums */
};

static uint64_t cpu_faults(struct gvm_mm *mm)
{
	struct gvm_mm_self_stats ms;

	gvm__mm_self_stats(mm, &ms);
	return ms.cpu_faults;
}

/*
 * The GPU's checksum of [va, va + size).  The result lands in a shared
 * page, which is mirrored in place and never moves; setup() faults it in
 * once, so later checksums count no fault or migration of their own.
 */
static uint64_t gpu_sum(struct ctx *c, const void *va, uint64_t size)
{
	struct gvm_kernel k;

	*c->out = 0;
	ASSERT_OK(gvm_kernel_checksum(&k, svmt_u64(va), size,
				      svmt_u64(c->out)));
	svmt_run(c->q, &k);
	return *c->out;
}

static void gpu_fill(struct ctx *c, const void *va, uint64_t size,
		     uint32_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_fill(&k, svmt_u64(va), size, v));
	svmt_run(c->q, &k);
}

static void gpu_copy(struct ctx *c, void *dst, const void *src,
		     uint64_t size)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_copy(&k, svmt_u64(dst), svmt_u64(src), size));
	svmt_run(c->q, &k);
}

static void setup_cfg(struct ctx *c, const struct gvm_sim_config *cfg)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	struct gvm_vm_stats st;

	/*
	 * These tests count migrations exactly, and several move ranges back
	 * and forth on purpose: thrashing detection would pin them to system
	 * memory (test_svm_oversub.c tests it).  Each test is its own
	 * process, so this holds for the test.
	 */
	gvm__svm_policy.thrash_migrations = 0;
	ASSERT_OK(gvm_mm_self(&c->mm));
	ASSERT_OK(gvm_sim_device_create(cfg, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, c->mm,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q2));
	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0));
	c->out = mmap(NULL, K4, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(c->out != MAP_FAILED);
	ASSERT_EQ(gpu_sum(c, c->out, 8), 0);	/* its one fault */
	st = svmt_stats(c->vm);
	ASSERT_EQ(st.svm_ranges_created, 1);
	ASSERT_EQ(st.svm_migrations, 0);	/* shared: stays */
}

static void setup(struct ctx *c)
{
	setup_cfg(c, NULL);
}

static void teardown(struct ctx *c)
{
	ASSERT_EQ(svmt_logged(c->vm, NULL), 0);
	ASSERT_FALSE(svmt_stats(c->vm).banned);
	gvm_queue_destroy(c->q2);
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
	gvm_mm_put(c->mm);
	munmap(c->out, K4);
}

/* Every word of [p, p + bytes) is @v. */
static bool all_are(const uint64_t *p, uint64_t bytes, uint64_t v)
{
	for (uint64_t i = 0; i < bytes / 8; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* The data the CPU writes: distinct per word and per round. */
static uint64_t cpu_word(uint64_t i, uint64_t seed)
{
	return (i + 1) * 0x9e3779b97f4a7c15ull ^ seed;
}

/* ---- 1. atomics ---------------------------------------------------------- */

#define NCOUNT 13

/*
 * What the counting kernel updates.  Lane i of every job adds 1 to
 * c[i % NCOUNT], i to ids, 1 to c32 (a 4-byte atomic), and takes a ticket
 * (the old value of @ticket, which it increments): seen[ticket] gets 1.
 * Tickets prove the atomics atomic, not just the sum: a lost or doubled
 * update leaves a seen[] slot at 0 or 2.
 */
struct counters {
	uint64_t c[NCOUNT];
	uint64_t ids;
	uint64_t ticket;
	uint32_t c32;
	uint32_t pad;
};

struct count_args {
	uint64_t counters;		/* GPU VA of a struct counters */
	uint64_t seen;			/* GPU VA of uint32_t[tickets] */
	uint64_t *started;		/* host: lane 0 sets it, then ... */
	const uint64_t *go;		/* ... waits for this (NULL: no) */
};

static void count_fn(struct gvm_lane *l, const void *args)
{
	const struct count_args *a = args;
	uint64_t i = gvm_lane_id(l), t;

	if (i == 0 && a->started) {
		__atomic_store_n(a->started, 1, __ATOMIC_RELEASE);
		while (!__atomic_load_n(a->go, __ATOMIC_ACQUIRE))
			gvm_cpu_relax();
	}
	gvm_lane_atomic_add(l, a->counters + offsetof(struct counters, c) +
				       (i % NCOUNT) * 8, 1, 8);
	gvm_lane_atomic_add(l, a->counters + offsetof(struct counters, ids),
			    i, 8);
	gvm_lane_atomic_add(l, a->counters + offsetof(struct counters, c32),
			    1, 4);
	t = gvm_lane_atomic_add(l, a->counters +
					   offsetof(struct counters, ticket),
				1, 8);
	if (!gvm_lane_faulted(l))
		gvm_lane_atomic_add(l, a->seen + t * 4, 1, 4);
}

static void count_kernel(struct gvm_kernel *k, struct counters *cn,
			 uint32_t *seen, uint64_t lanes)
{
	struct count_args a = { svmt_u64(cn), svmt_u64(seen), NULL, NULL };

	ASSERT_OK(gvm_kernel_init(k, "count", count_fn, lanes, &a,
				  sizeof(a)));
}

/* Initial values the CPU writes, so that the data moving matters. */
static void counters_init(struct counters *cn, uint32_t *seen,
			  uint64_t tickets)
{
	for (int k = 0; k < NCOUNT; k++)
		cn->c[k] = 1000 * (uint64_t)k;
	cn->ids = 7;
	cn->ticket = 0;
	cn->c32 = 0xfffffff0u;		/* wraps */
	memset(seen, 0, tickets * 4);
}

/*
 * After @jobs jobs of @lanes lanes, plus @cpu_incs tickets the CPU took
 * (adding 1 to c[0] with each), every count is exact and every ticket
 * below the total was taken exactly once.
 */
static void counters_check(const struct counters *cn, const uint32_t *seen,
			   uint64_t jobs, uint64_t lanes, uint64_t cpu_incs)
{
	uint64_t total = jobs * lanes + cpu_incs;

	for (uint64_t k = 0; k < NCOUNT; k++) {
		uint64_t per_job = lanes / NCOUNT + (k < lanes % NCOUNT);

		ASSERT_EQ(cn->c[k], 1000 * k + jobs * per_job +
					    (k == 0 ? cpu_incs : 0));
	}
	ASSERT_EQ(cn->ids, 7 + jobs * (lanes * (lanes - 1) / 2));
	ASSERT_EQ(cn->c32, (uint32_t)(0xfffffff0u + jobs * lanes));
	ASSERT_EQ(cn->ticket, total);
	for (uint64_t t = 0; t < total; t++)
		if (seen[t] != 1)
			ASSERT_EQ(seen[t], 1);	/* prints which value */
}

/* Submits @n counting jobs alternately on both queues, then waits. */
static void count_jobs(struct ctx *c, struct counters *cn, uint32_t *seen,
		       unsigned int n, uint64_t lanes)
{
	uint64_t uf[2] = { 0, 0 };
	struct gvm_kernel k;

	count_kernel(&k, cn, seen, lanes);
	for (unsigned int j = 0; j < n; j++) {
		struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
				      .flags = GVM_SYNC_SIGNAL,
				      .addr = &uf[j % 2], .value = j + 1 };

		ASSERT_OK(gvm_exec(j % 2 ? c->q2 : c->q, &k, &s, 1));
	}
	/* each queue completes in order: its last job's value is enough */
	for (unsigned int e = 0; e < 2 && e < n; e++) {
		unsigned int last = (n - 1) % 2 == e ? n - 1 : n - 2;

		ASSERT_OK(gvm_user_fence_wait(&uf[e], last + 1,
					      GVM_TIMEOUT_INFINITE));
	}
}

/*
 * Counters in malloc'd memory: a small block (the brk heap, next to the
 * allocator's own data) and the tickets in a large one (its own mmap).
 * Several jobs on both engines at once, then one job at a time with the
 * CPU reading the counts after each (which brings the memory back when
 * it moved); malloc and free work meanwhile.
 */
TEST(atomics_on_malloc_memory_count_exactly)
{
	const uint64_t lanes = 512, jobs = 8, rounds = 6;
	uint64_t tickets = (jobs + rounds) * lanes;
	struct counters *cn = malloc(sizeof(*cn));
	uint32_t *seen = malloc(tickets * 4 + M2);
	struct ctx c;

	ASSERT_TRUE(cn && seen);
	setup(&c);
	counters_init(cn, seen, tickets);
	count_jobs(&c, cn, seen, jobs, lanes);
	counters_check(cn, seen, jobs, lanes, 0);
	for (uint64_t r = 1; r <= rounds; r++) {
		struct gvm_kernel k;
		void *tmp;

		count_kernel(&k, cn, seen, lanes);
		svmt_run(r % 2 ? c.q2 : c.q, &k);
		tmp = malloc(100);		/* the heap may be resident */
		ASSERT_TRUE(tmp != NULL);
		free(tmp);
		counters_check(cn, seen, jobs + r, lanes, 0);
	}
	ASSERT_EQ(svmt_stats(c.vm).svm_migration_failures, 0);
	teardown(&c);
	free(seen);
	free(cn);
}

/*
 * Counters in private anonymous memory: the first job's fault moves the
 * range to device memory, later jobs count there without faulting, the
 * CPU's read brings it back; every round moves it once each way.
 */
TEST(atomics_on_device_resident_memory)
{
	const uint64_t lanes = 1000, jobs = 6, rounds = 5;
	uint64_t tickets = (jobs + rounds) * lanes;
	struct gvm_vm_stats st0, st;
	struct counters *cn;
	uint32_t *seen;
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(M2, M2);
	cn = (struct counters *)p;
	seen = (uint32_t *)(p + K4);
	counters_init(cn, seen, tickets);
	st0 = svmt_stats(c.vm);
	count_jobs(&c, cn, seen, jobs, lanes);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_migrations - st0.svm_migrations, 1);
	ASSERT_EQ(st.svm_ranges_created - st0.svm_ranges_created, 1);
	/* one fault per engine at most: both may fault on it at once */
	ASSERT_GE(st.svm_faults_by_size[2] - st0.svm_faults_by_size[2], 1);
	ASSERT_LE(st.svm_faults_by_size[2] - st0.svm_faults_by_size[2], 2);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_EQ(st.dev_svm_to_system, st0.dev_svm_to_system);
	counters_check(cn, seen, jobs, lanes, 0);	/* the CPU: back */
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(svmt_stats(c.vm).dev_svm_to_system -
		  st0.dev_svm_to_system, 1);
	for (uint64_t r = 1; r <= rounds; r++) {
		struct gvm_kernel k;

		count_kernel(&k, cn, seen, lanes);
		svmt_run(r % 2 ? c.q2 : c.q, &k);
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
		counters_check(cn, seen, jobs + r, lanes, 0);
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
		st = svmt_stats(c.vm);
		ASSERT_EQ(st.svm_migrations - st0.svm_migrations, 1 + r);
		ASSERT_EQ(st.dev_svm_to_system - st0.dev_svm_to_system,
			  1 + r);
	}
	ASSERT_EQ(svmt_stats(c.vm).svm_migration_failures, 0);
	teardown(&c);
	svmt_unmap(p, M2);
}

/* A CPU thread taking tickets with host atomics. */
struct cpu_counter {
	struct counters *cn;
	uint32_t *seen;
	uint64_t n;
	const uint64_t *go;
};

static void *cpu_counter_fn(void *arg)
{
	struct cpu_counter *cc = arg;

	while (!__atomic_load_n(cc->go, __ATOMIC_ACQUIRE))
		gvm_cpu_relax();
	for (uint64_t i = 0; i < cc->n; i++) {
		uint64_t t = __atomic_fetch_add(&cc->cn->ticket, 1,
						__ATOMIC_SEQ_CST);

		__atomic_fetch_add(&cc->cn->c[0], 1, __ATOMIC_SEQ_CST);
		__atomic_fetch_add(&cc->seen[t], 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

/*
 * Shared memory is mirrored in place: the GPU's atomics and the CPU's act
 * on the same pages at the same time, and the count is exact.  Nothing
 * moves.
 */
TEST(atomics_on_shared_memory_in_place)
{
	const uint64_t lanes = 500, jobs = 8, rounds = 4;
	uint64_t cpu_n = gvm_test_scale(20000);
	uint64_t tickets = (jobs + rounds) * lanes + cpu_n;
	struct cpu_counter cc;
	uint64_t go = 0;
	pthread_t t;
	struct counters *cn;
	uint32_t *seen;
	struct ctx c;
	uint8_t *p;
	uint64_t len = K4 + ((tickets * 4 + K4 - 1) & ~(K4 - 1));

	setup(&c);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	cn = (struct counters *)p;
	seen = (uint32_t *)(p + K4);
	counters_init(cn, seen, tickets);
	cc = (struct cpu_counter){ cn, seen, cpu_n, &go };
	ASSERT_OK(pthread_create(&t, NULL, cpu_counter_fn, &cc));
	/* the CPU thread starts counting with the first job */
	{
		uint64_t uf[2] = { 0, 0 };
		struct gvm_kernel k;

		count_kernel(&k, cn, seen, lanes);
		for (unsigned int j = 0; j < jobs; j++) {
			struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
					      .flags = GVM_SYNC_SIGNAL,
					      .addr = &uf[j % 2],
					      .value = j + 1 };

			ASSERT_OK(gvm_exec(j % 2 ? c.q2 : c.q, &k, &s, 1));
			if (j == 0)
				__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
		}
		ASSERT_OK(gvm_user_fence_wait(&uf[0], jobs - 1,
					      GVM_TIMEOUT_INFINITE));
		ASSERT_OK(gvm_user_fence_wait(&uf[1], jobs,
					      GVM_TIMEOUT_INFINITE));
	}
	pthread_join(t, NULL);
	counters_check(cn, seen, jobs, lanes, cpu_n);
	for (uint64_t r = 1; r <= rounds; r++) {
		struct gvm_kernel k;

		count_kernel(&k, cn, seen, lanes);
		svmt_run(c.q, &k);
		counters_check(cn, seen, jobs + r, lanes, cpu_n);
	}
	ASSERT_EQ(svmt_stats(c.vm).svm_migrations, 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(svmt_stats(c.vm).dev_svm_to_system, 0);
	teardown(&c);
	munmap(p, len);
}

/*
 * Lock-step: lane i of the GPU counts, then publishes step i + 1 in a
 * shared page and waits (with lane loads: boundaries, where its engine
 * acknowledges the fault-back's TLB invalidations) until the CPU thread
 * has counted step i + 1 too.  The counters live in private memory, so
 * every GPU step moves the range to device memory and every CPU step
 * brings it back.
 */
struct step_args {
	struct count_args count;
	uint64_t sync;			/* GPU VA: [0] GPU step, [1] CPU step */
	uint64_t first;			/* step of lane 0 */
};

static void step_fn(struct gvm_lane *l, const void *args)
{
	const struct step_args *a = args;
	uint64_t step = a->first + gvm_lane_id(l) + 1;

	count_fn(l, &a->count);
	gvm_lane_store(l, a->sync, step, 8);
	while (gvm_lane_load(l, a->sync + 8, 8) < step &&
	       !gvm_lane_faulted(l))
		;
}

struct cpu_stepper {
	struct counters *cn;
	uint32_t *seen;
	uint64_t *sync;			/* shared page */
	uint64_t steps;
};

static void *cpu_stepper_fn(void *arg)
{
	struct cpu_stepper *cs = arg;

	for (uint64_t step = 1; step <= cs->steps; step++) {
		uint64_t t;

		while (__atomic_load_n(&cs->sync[0], __ATOMIC_ACQUIRE) < step)
			sched_yield();
		t = __atomic_fetch_add(&cs->cn->ticket, 1, __ATOMIC_SEQ_CST);
		__atomic_fetch_add(&cs->cn->c[0], 1, __ATOMIC_SEQ_CST);
		__atomic_fetch_add(&cs->seen[t], 1, __ATOMIC_SEQ_CST);
		__atomic_store_n(&cs->sync[1], step, __ATOMIC_RELEASE);
	}
	return NULL;
}

TEST(cpu_and_gpu_atomics_in_lock_step_on_migrating_memory)
{
	const uint64_t lanes = 50, jobs = 2;
	uint64_t tickets = 2 * jobs * lanes, faults0;
	struct gvm_vm_stats st0, st;
	struct cpu_stepper cs;
	struct step_args sa;
	struct gvm_kernel k;
	uint64_t *sync;
	pthread_t t;
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(K64, K64);
	sync = mmap(NULL, K4, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(sync != MAP_FAILED);
	counters_init((struct counters *)p, (uint32_t *)(p + K4), tickets);
	cs = (struct cpu_stepper){ (struct counters *)p,
				   (uint32_t *)(p + K4), sync, jobs * lanes };
	st0 = svmt_stats(c.vm);
	faults0 = cpu_faults(c.mm);
	ASSERT_OK(pthread_create(&t, NULL, cpu_stepper_fn, &cs));
	for (uint64_t j = 0; j < jobs; j++) {
		sa = (struct step_args){ { svmt_u64(p), svmt_u64(p + K4),
					   NULL, NULL },
					 svmt_u64(sync), j * lanes };
		ASSERT_OK(gvm_kernel_init(&k, "step", step_fn, lanes, &sa,
					  sizeof(sa)));
		svmt_run(j % 2 ? c.q2 : c.q, &k);
	}
	pthread_join(t, NULL);
	counters_check((struct counters *)p, (uint32_t *)(p + K4), jobs,
		       lanes, jobs * lanes);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_migrations - st0.svm_migrations, jobs * lanes);
	ASSERT_EQ(st.dev_svm_to_system - st0.dev_svm_to_system, jobs * lanes);
	ASSERT_EQ(cpu_faults(c.mm) - faults0, jobs * lanes);
	ASSERT_EQ(st.svm_migration_failures, 0);
	teardown(&c);
	munmap(sync, K4);
	svmt_unmap(p, K64);
}

/*
 * Free-running: a CPU thread takes tickets while GPU jobs on both engines
 * do, on private memory; however their accesses interleave (each CPU
 * touch of device-resident memory brings it back, each GPU touch of
 * system memory moves it out), no update is lost or doubled.
 */
TEST(cpu_and_gpu_atomics_on_migrating_memory)
{
	const uint64_t lanes = 300, jobs = 6;
	uint64_t cpu_n = gvm_test_scale(2000);
	uint64_t tickets = jobs * lanes + cpu_n;
	struct cpu_counter cc;
	uint64_t go = 0, uf[2] = { 0, 0 };
	struct gvm_kernel k;
	pthread_t t;
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(K64, K64);
	ASSERT_LE(K4 + tickets * 4, K64);
	counters_init((struct counters *)p, (uint32_t *)(p + K4), tickets);
	cc = (struct cpu_counter){ (struct counters *)p,
				   (uint32_t *)(p + K4), cpu_n, &go };
	ASSERT_OK(pthread_create(&t, NULL, cpu_counter_fn, &cc));
	count_kernel(&k, (struct counters *)p, (uint32_t *)(p + K4), lanes);
	for (unsigned int j = 0; j < jobs; j++) {
		struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
				      .flags = GVM_SYNC_SIGNAL,
				      .addr = &uf[j % 2], .value = j + 1 };

		ASSERT_OK(gvm_exec(j % 2 ? c.q2 : c.q, &k, &s, 1));
		if (j == 0)
			__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	}
	ASSERT_OK(gvm_user_fence_wait(&uf[0], jobs - 1, GVM_TIMEOUT_INFINITE));
	ASSERT_OK(gvm_user_fence_wait(&uf[1], jobs, GVM_TIMEOUT_INFINITE));
	pthread_join(t, NULL);
	counters_check((struct counters *)p, (uint32_t *)(p + K4), jobs,
		       lanes, cpu_n);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	printf("%llu migrations, %llu back, %llu failed\n",
	       (unsigned long long)svmt_stats(c.vm).svm_migrations,
	       (unsigned long long)svmt_stats(c.vm).dev_svm_to_system,
	       (unsigned long long)svmt_stats(c.vm).svm_migration_failures);
	teardown(&c);
	svmt_unmap(p, K64);
}

/*
 * Two devices count in turn on one range: lane i of device A's job waits
 * (lane loads: boundaries) for device B to finish step i, counts, and
 * publishes step i + 1, which B's lane i waits for.  Every step takes the
 * range out of the other device's memory into this one's.
 */
struct turn_args {
	struct count_args count;
	uint64_t sync;			/* GPU VA: [0] A's step, [1] B's */
	uint64_t me;			/* 0: A, 1: B */
};

static void turn_fn(struct gvm_lane *l, const void *args)
{
	const struct turn_args *a = args;
	uint64_t step = gvm_lane_id(l) + 1;
	uint64_t wait_va = a->sync + (a->me ? 0 : 8);
	uint64_t wait_for = a->me ? step : step - 1;

	while (gvm_lane_load(l, wait_va, 8) < wait_for &&
	       !gvm_lane_faulted(l))
		;
	count_fn(l, &a->count);
	gvm_lane_store(l, a->sync + 8 * a->me, step, 8);
}

/*
 * Two VMs of one mm, on two devices (@other_device) or on one, count in
 * turn.  Across devices every step moves the range out of one device's
 * memory into the other's (counted exactly); two VMs of one device share
 * whatever placement it gets.  The counts are exact either way.
 */
static void take_turns(bool other_device)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	const uint64_t steps = 40;
	struct gvm_vm_stats sta, stb;
	struct gvm_device *devb;
	struct gvm_queue *qb;
	struct gvm_vm *vmb;
	struct turn_args ta, tb;
	struct gvm_kernel ka, kb;
	uint64_t ufa = 0, ufb = 0, *sync;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .value = 1 };
	struct ctx c;
	uint8_t *p;

	setup(&c);
	if (other_device)
		ASSERT_OK(gvm_sim_device_create(NULL, &devb));
	else
		devb = gvm_device_get(c.dev);
	ASSERT_OK(gvm_vm_create(devb, c.mm, GVM_VM_LR_MODE |
				GVM_VM_FAULT_MODE, &vmb));
	ASSERT_OK(gvm_queue_create(vmb, GVM_ENGINE_COMPUTE, &qb));
	ASSERT_OK(gvm_vm_bind(vmb, NULL, &op, 1, NULL, 0));
	p = svmt_map(K64, K64);
	sync = mmap(NULL, K4, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(sync != MAP_FAILED);
	counters_init((struct counters *)p, (uint32_t *)(p + K4), 2 * steps);
	ta = (struct turn_args){ { svmt_u64(p), svmt_u64(p + K4), NULL, NULL },
				 svmt_u64(sync), 0 };
	tb = ta;
	tb.me = 1;
	ASSERT_OK(gvm_kernel_init(&ka, "turn", turn_fn, steps, &ta,
				  sizeof(ta)));
	ASSERT_OK(gvm_kernel_init(&kb, "turn", turn_fn, steps, &tb,
				  sizeof(tb)));
	/* c.q2 and qb are on different engines even on one device (the
	   third queue goes to the first engine again): they wait for each
	   other */
	s.addr = &ufa;
	ASSERT_OK(gvm_exec(c.q2, &ka, &s, 1));
	s.addr = &ufb;
	ASSERT_OK(gvm_exec(qb, &kb, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&ufa, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_OK(gvm_user_fence_wait(&ufb, 1, GVM_TIMEOUT_INFINITE));
	sta = svmt_stats(c.vm);
	stb = svmt_stats(vmb);
	printf("A: %llu moves in, %llu out; B: %llu in, %llu out\n",
	       (unsigned long long)sta.svm_migrations,
	       (unsigned long long)sta.dev_svm_to_system,
	       (unsigned long long)stb.svm_migrations,
	       (unsigned long long)stb.dev_svm_to_system);
	if (other_device) {
		ASSERT_EQ(sta.svm_migrations, steps);
		ASSERT_EQ(stb.svm_migrations, steps);
		ASSERT_EQ(sta.dev_svm_to_system, steps);
		ASSERT_EQ(stb.dev_svm_to_system, steps - 1);
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), K64);	/* B has it */
	} else {
		/* one move: B maps the device memory A's fault filled */
		ASSERT_EQ(sta.svm_migrations + stb.svm_migrations, 1);
		ASSERT_EQ(sta.dev_svm_to_system, 0);
	}
	counters_check((struct counters *)p, (uint32_t *)(p + K4), 2, steps,
		       0);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	if (other_device)
		ASSERT_EQ(svmt_stats(vmb).dev_svm_to_system, steps);
	ASSERT_EQ(svmt_stats(c.vm).svm_migration_failures, 0);
	ASSERT_EQ(svmt_stats(vmb).svm_migration_failures, 0);
	ASSERT_EQ(svmt_logged(vmb, NULL), 0);
	gvm_queue_destroy(qb);
	ASSERT_OK(gvm_vm_destroy(vmb));
	gvm_device_put(devb);
	teardown(&c);
	munmap(sync, K4);
	svmt_unmap(p, K64);
}

TEST(two_devices_take_turns_counting)
{
	take_turns(true);
}

TEST(two_vms_of_one_device_take_turns_counting)
{
	take_turns(false);
}

/*
 * Counters on the test thread's own stack: the range moves to device
 * memory with the frames around it, and the thread's next touch of its
 * stack (its very next call) brings it back.  User fences sit on the
 * same stack.
 */
TEST(atomics_on_the_stack)
{
	const uint64_t lanes = 256, rounds = 4;
	struct counters cn;
	uint32_t seen[(2 + 4) * 256];
	struct ctx c;

	setup(&c);
	counters_init(&cn, seen, (2 + rounds) * lanes);
	count_jobs(&c, &cn, seen, 2, lanes);
	counters_check(&cn, seen, 2, lanes, 0);
	for (uint64_t r = 1; r <= rounds; r++) {
		struct gvm_kernel k;

		count_kernel(&k, &cn, seen, lanes);
		svmt_run(c.q, &k);
		counters_check(&cn, seen, 2 + r, lanes, 0);
	}
	printf("%llu migrations, %llu back, %llu failed\n",
	       (unsigned long long)svmt_stats(c.vm).svm_migrations,
	       (unsigned long long)svmt_stats(c.vm).dev_svm_to_system,
	       (unsigned long long)svmt_stats(c.vm).svm_migration_failures);
	teardown(&c);
}

/* Atomics are writes: on read-only memory they fault and change nothing. */
TEST(atomics_on_read_only_memory_fault)
{
	struct counters *cn;
	struct gvm_kernel k;
	uint32_t *seen;
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(K64, K64);
	cn = (struct counters *)p;
	seen = (uint32_t *)(p + K4);
	counters_init(cn, seen, 64);
	ASSERT_OK(mprotect(p, K64, PROT_READ));
	count_kernel(&k, cn, seen, 64);
	svmt_run(c.q, &k);
	ASSERT_GE(svmt_logged(c.vm, NULL), 1);
	counters_check(cn, seen, 0, 64, 0);
	ASSERT_EQ(svmt_stats(c.vm).svm_migrations, 0);
	ASSERT_OK(mprotect(p, K64, PROT_READ | PROT_WRITE));
	svmt_run(c.q, &k);			/* writable again: counts */
	counters_check(cn, seen, 1, 64, 0);
	teardown(&c);
	svmt_unmap(p, K64);
}

/*
 * Two jobs on the two compute engines provably at the same time (each
 * one's first lane waits until the other's has started; queues go to
 * engines round-robin, docs/sim.md) count on one device-resident range.
 */
TEST(atomics_from_two_engines_at_once)
{
	const uint64_t lanes = 2000;
	uint64_t sa = 0, sb = 0, ufa = 0, ufb = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .value = 1 };
	struct count_args a;
	struct gvm_kernel k;
	struct counters *cn;
	uint32_t *seen;
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(M2, M2);
	cn = (struct counters *)p;
	seen = (uint32_t *)(p + K4);
	counters_init(cn, seen, 2 * lanes);
	a = (struct count_args){ svmt_u64(cn), svmt_u64(seen), &sa, &sb };
	ASSERT_OK(gvm_kernel_init(&k, "count", count_fn, lanes, &a,
				  sizeof(a)));
	s.addr = &ufa;
	ASSERT_OK(gvm_exec(c.q, &k, &s, 1));
	a = (struct count_args){ svmt_u64(cn), svmt_u64(seen), &sb, &sa };
	ASSERT_OK(gvm_kernel_init(&k, "count", count_fn, lanes, &a,
				  sizeof(a)));
	s.addr = &ufb;
	ASSERT_OK(gvm_exec(c.q2, &k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&ufa, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_OK(gvm_user_fence_wait(&ufb, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(svmt_stats(c.vm).svm_migrations, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	counters_check(cn, seen, 2, lanes, 0);
	ASSERT_EQ(svmt_stats(c.vm).dev_svm_to_system, 1);
	teardown(&c);
	svmt_unmap(p, M2);
}

/* ---- 2. huge pages ------------------------------------------------------- */

/* AnonHugePages of the whole process, in KiB (information only). */
static long anon_huge_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/*
 * A 2 MiB-aligned mapping the CPU asked to back with transparent huge
 * pages and filled: the GPU runs a triad over three 2 MiB arrays in it
 * (each moves to device memory as one 2 MiB range), the CPU reads the
 * result back, writes an input, and the triad runs again.  Whether the
 * kernel granted huge pages does not matter; it is printed.
 */
TEST(huge_page_memory_triad_and_fault_back)
{
	const uint64_t n = M2 / 8;
	struct gvm_vm_stats st0, st;
	struct gvm_kernel k;
	double *a, *b, *cc;
	uint8_t *p;
	struct ctx c;
	int err;

	setup(&c);
	p = svmt_map(3 * M2, M2);
	err = madvise(p, 3 * M2, MADV_HUGEPAGE);
	a = (double *)p;
	b = (double *)(p + M2);
	cc = (double *)(p + 2 * M2);
	for (uint64_t i = 0; i < n; i++) {
		a[i] = -1;
		b[i] = (double)i;
		cc[i] = (double)(i % 1000);
	}
	printf("MADV_HUGEPAGE: %d, AnonHugePages: %ld kB\n", err,
	       anon_huge_kb());
	st0 = svmt_stats(c.vm);
	ASSERT_OK(gvm_kernel_triad(&k, svmt_u64(a), svmt_u64(b),
				   svmt_u64(cc), n, 3.0));
	svmt_run(c.q, &k);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_migrations - st0.svm_migrations, 3);
	ASSERT_EQ(st.bytes_to_vram - st0.bytes_to_vram, 3 * M2);
	ASSERT_EQ(st.svm_faults_by_size[2] - st0.svm_faults_by_size[2], 3);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 3 * M2);
	for (uint64_t i = 0; i < n; i++)	/* brings back a only */
		if (a[i] != (double)i + 3.0 * (double)(i % 1000))
			ASSERT_EQ(a[i], (double)i + 3.0 * (double)(i % 1000));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 2 * M2);
	ASSERT_EQ(svmt_stats(c.vm).dev_svm_to_system -
		  st0.dev_svm_to_system, 1);
	for (uint64_t i = 0; i < n; i++)	/* b comes back too */
		b[i] = (double)(2 * i);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	svmt_run(c.q2, &k);			/* a and b move again */
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_migrations - st0.svm_migrations, 5);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 3 * M2);
	for (uint64_t i = 0; i < n; i++) {
		if (a[i] != (double)(2 * i) + 3.0 * (double)(i % 1000))
			ASSERT_EQ(a[i],
				  (double)(2 * i) + 3.0 * (double)(i % 1000));
		if (cc[i] != (double)(i % 1000))
			ASSERT_EQ(cc[i], (double)(i % 1000));
		if (b[i] != (double)(2 * i))
			ASSERT_EQ(b[i], (double)(2 * i));
	}
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(svmt_stats(c.vm).dev_svm_to_system -
		  st0.dev_svm_to_system, 5);
	/* a store over the huge mapping, across a 2 MiB boundary */
	gpu_fill(&c, p + M2 - K64, 2 * K64, 0x11223344);
	ASSERT_TRUE(all_are((uint64_t *)(p + M2 - K64), 2 * K64,
			    W(0x11223344)));
	/* and only there: the word before it is the triad's */
	ASSERT_TRUE(((double *)(p + M2 - K64))[-1] ==
		    (double)(2 * (n - K64 / 8 - 1)) +
			    3.0 * (double)((n - K64 / 8 - 1) % 1000));
	ASSERT_EQ(svmt_stats(c.vm).svm_migration_failures, 0);
	teardown(&c);
	svmt_unmap(p, 3 * M2);
}

/*
 * A 64 KiB range inside a huge page: a BO bound over the first 64 KiB of
 * a 2 MiB huge-page block keeps ranges there from being 2 MiB, so the
 * migration takes 64 KiB out of the middle of the (maybe) huge page.
 */
TEST(huge_page_split_by_a_smaller_range)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .range = K64 };
	struct gvm_vm_stats st0, st;
	struct gvm_bo *bo;
	uint64_t *p;
	struct ctx c;
	int err;

	setup(&c);
	p = svmt_map(M2, M2);
	err = madvise(p, M2, MADV_HUGEPAGE);
	for (uint64_t i = 0; i < M2 / 8; i++)
		p[i] = cpu_word(i, 81);
	printf("MADV_HUGEPAGE: %d, AnonHugePages: %ld kB\n", err,
	       anon_huge_kb());
	ASSERT_OK(gvm_bo_create(c.dev, K64, GVM_MEM_VRAM, c.vm, &bo));
	op.addr = svmt_u64(p);
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	st0 = svmt_stats(c.vm);
	gpu_fill(&c, p + M1 / 8, K4, 82);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_faults_by_size[1] - st0.svm_faults_by_size[1], 1);
	ASSERT_EQ(st.svm_migrations - st0.svm_migrations, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), K64);
	for (uint64_t i = 0; i < M2 / 8; i++) {
		uint64_t want = i >= M1 / 8 && i < (M1 + K4) / 8 ?
					W(82) : cpu_word(i, 81);

		if (p[i] != want)
			ASSERT_EQ(p[i], want);
	}
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	/* the GPU reads through the BO at the start, the CPU's memory after */
	ASSERT_EQ(gpu_sum(&c, p, K64), 0);
	{
		uint64_t sum = 0;

		for (uint64_t i = K64 / 8; i < (K64 + K4) / 8; i++)
			sum += cpu_word(i, 81);
		ASSERT_EQ(gpu_sum(&c, p + K64 / 8, K4), sum);
	}
	gvm_bo_put(bo);
	teardown(&c);
	svmt_unmap(p, M2);
}

/* ---- 3. memory the CPU never touched ------------------------------------- */

/*
 * Anonymous memory the CPU never touched: the GPU reads zeros, writes
 * a window across two ranges, and the CPU reads exactly that window and
 * zeros around it.
 */
TEST(never_touched_memory_reads_zero)
{
	struct gvm_vm_stats st0, st;
	uint64_t *p, *q, *r;
	struct ctx c;

	setup(&c);
	p = svmt_map(2 * M2, M2);
	st0 = svmt_stats(c.vm);
	ASSERT_EQ(gpu_sum(&c, p, 2 * M2), 0);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_ranges_created - st0.svm_ranges_created, 2);
	ASSERT_EQ(st.svm_faults_by_size[2] - st0.svm_faults_by_size[2], 2);
	printf("a GPU read of untouched memory: %llu migrations\n",
	       (unsigned long long)(st.svm_migrations - st0.svm_migrations));
	gpu_fill(&c, (uint8_t *)p + M2 - K4, 2 * K4, 0xabcd);
	ASSERT_TRUE(all_are(p, M2 - K4, 0));
	ASSERT_TRUE(all_are(p + (M2 - K4) / 8, 2 * K4, W(0xabcd)));
	ASSERT_TRUE(all_are(p + (M2 + K4) / 8, M2 - K4, 0));

	/* written first by the GPU, never read by it */
	q = svmt_map(3 * K4, K4);		/* three 4K ranges */
	st0 = svmt_stats(c.vm);
	gpu_fill(&c, q, 3 * K4, 0x5a5a5a5a);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_faults_by_size[0] - st0.svm_faults_by_size[0], 3);
	ASSERT_EQ(st.svm_migrations - st0.svm_migrations, 3);
	ASSERT_TRUE(all_are(q, 3 * K4, W(0x5a5a5a5a)));

	/* calloc of a large block: its own mmap, untouched by calloc */
	r = calloc(1, M8);
	ASSERT_TRUE(r != NULL);
	ASSERT_EQ(gpu_sum(&c, r, M8), 0);
	gpu_fill(&c, r + K64 / 8, K4, 7);
	ASSERT_TRUE(all_are(r, K64, 0));
	ASSERT_TRUE(all_are(r + K64 / 8, K4, W(7)));
	ASSERT_TRUE(all_are(r + (K64 + K4) / 8, M8 - K64 - K4, 0));
	free(r);
	teardown(&c);
	svmt_unmap(q, 3 * K4);
	svmt_unmap(p, 2 * M2);
}

/* ---- 4. sizes -------------------------------------------------------------- */

/*
 * For one buffer pair of @size bytes: the GPU fills src, the CPU checks
 * every byte (which brings it back); the CPU writes src and the GPU's
 * checksum matches; the GPU copies src to dst, and the CPU compares both
 * word for word.  With @nranges (mmap'd, guarded buffers), the fill's
 * faults, ranges and moves are counted exactly.
 */
static void sizes_round(struct ctx *c, uint64_t *src, uint64_t *dst,
			uint64_t size, uint64_t seed, uint64_t nranges)
{
	unsigned int bucket = size >= M2 ? 2 : size >= K64 ? 1 : 0;
	struct gvm_vm_stats st0 = svmt_stats(c->vm), st;
	uint64_t sum = 0;

	gpu_fill(c, src, size, (uint32_t)seed);
	if (nranges) {
		st = svmt_stats(c->vm);
		ASSERT_EQ(st.svm_ranges_created - st0.svm_ranges_created,
			  nranges);
		ASSERT_EQ(st.svm_faults_by_size[bucket] -
				  st0.svm_faults_by_size[bucket], nranges);
		ASSERT_EQ(st.svm_migrations - st0.svm_migrations, nranges);
		ASSERT_EQ(st.bytes_to_vram - st0.bytes_to_vram, size);
		ASSERT_EQ(gvm__mm_devmem_bytes(c->mm), size);
	}
	ASSERT_TRUE(all_are(src, size, W((uint32_t)seed)));
	if (nranges) {
		st = svmt_stats(c->vm);
		ASSERT_EQ(st.dev_svm_to_system - st0.dev_svm_to_system,
			  nranges);
		ASSERT_EQ(st.dev_svm_bytes_to_system -
				  st0.dev_svm_bytes_to_system, size);
		ASSERT_EQ(gvm__mm_devmem_bytes(c->mm), 0);
	}
	for (uint64_t i = 0; i < size / 8; i++) {
		src[i] = cpu_word(i, seed);
		sum += src[i];
	}
	ASSERT_EQ(gpu_sum(c, src, size), sum);
	gpu_copy(c, dst, src, size);
	if (nranges) {
		st = svmt_stats(c->vm);
		ASSERT_EQ(st.svm_ranges_created - st0.svm_ranges_created,
			  2 * nranges);
		ASSERT_EQ(st.svm_migrations - st0.svm_migrations,
			  3 * nranges);
		ASSERT_EQ(gvm__mm_devmem_bytes(c->mm), 2 * size);
	}
	for (uint64_t i = 0; i < size / 8; i++) {
		if (dst[i] != cpu_word(i, seed))
			ASSERT_EQ(dst[i], cpu_word(i, seed));
		if (src[i] != cpu_word(i, seed))
			ASSERT_EQ(src[i], cpu_word(i, seed));
	}
	ASSERT_EQ(gvm__mm_devmem_bytes(c->mm), 0);	/* all back */
	ASSERT_EQ(svmt_stats(c->vm).svm_migration_failures, 0);
}

/* mmap'd (guarded: the ranges are known exactly) and/or malloc'd. */
static void sizes_case(uint64_t size, bool mmapped, bool malloced)
{
	uint64_t align = size < M2 ? size : M2;
	uint64_t *src, *dst;
	struct ctx c;

	setup(&c);
	if (mmapped) {
		src = svmt_map(size, align);
		dst = svmt_map(size, align);
		sizes_round(&c, src, dst, size, 0x1234,
			    size < M2 ? 1 : size / M2);
		svmt_unmap(src, size);
		svmt_unmap(dst, size);
	}
	if (malloced) {
		src = malloc(size);
		dst = malloc(size);
		ASSERT_TRUE(src && dst);
		memset(src, 0, size);
		sizes_round(&c, src, dst, size, 0x5678, 0);
		free(src);
		free(dst);
	}
	teardown(&c);
}

TEST(size_4k)
{
	sizes_case(K4, true, true);
}

TEST(size_64k)
{
	sizes_case(K64, true, true);
}

TEST(size_2m)
{
	sizes_case(M2, true, true);
}

TEST(size_8m)
{
	sizes_case(M8, true, true);
}

/* (two tests, so that CTest can run the halves in parallel) */
TEST(size_64m_mmap)
{
	sizes_case(M64, true, false);
}

TEST(size_64m_malloc)
{
	sizes_case(M64, false, true);
}

/* ---- 5. many faults in one job ------------------------------------------- */

/*
 * Lane i reads the word at (a page of) i MiB into a 64 MiB mapping and
 * writes back 2 * v + 1: 64 pages two to a 2 MiB block, one job.
 */
static uint64_t scatter_off(uint64_t i)
{
	return i * M1 + ((i * 37) % 256) * K4 + (i % 512) * 8;
}

struct scatter_args {
	uint64_t base;
};

static void scatter_fn(struct gvm_lane *l, const void *args)
{
	const struct scatter_args *a = args;
	uint64_t va = a->base + scatter_off(gvm_lane_id(l));
	uint64_t v = gvm_lane_load(l, va, 8);

	gvm_lane_store(l, va, 2 * v + 1, 8);
}

TEST(one_job_faults_on_64_scattered_pages)
{
	struct scatter_args a;
	struct gvm_vm_stats st0, st;
	struct gvm_kernel k;
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(M64, M2);
	for (uint64_t i = 0; i < 64; i++)
		*(uint64_t *)(p + scatter_off(i)) = i + 100;
	a.base = svmt_u64(p);
	ASSERT_OK(gvm_kernel_init(&k, "scatter", scatter_fn, 64, &a,
				  sizeof(a)));
	st0 = svmt_stats(c.vm);
	svmt_run(c.q, &k);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_ranges_created - st0.svm_ranges_created, 32);
	ASSERT_EQ(st.svm_faults_by_size[2] - st0.svm_faults_by_size[2], 32);
	ASSERT_EQ(st.svm_migrations - st0.svm_migrations, 32);
	ASSERT_GE(st.faults_serviced - st0.faults_serviced, 32);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M64);
	for (uint64_t off = 0; off < M64; off += 8) {
		uint64_t v = *(uint64_t *)(p + off), want = 0;

		if (off % M1 == scatter_off(off / M1) % M1)
			want = 2 * (off / M1 + 100) + 1;
		if (v != want)
			ASSERT_EQ(v, want);
	}
	ASSERT_EQ(svmt_stats(c.vm).dev_svm_to_system -
		  st0.dev_svm_to_system, 32);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	teardown(&c);
	svmt_unmap(p, M64);
}

#define NMAPS 10
#define WORDS_PER_MAP 30

struct multi_args {
	uint64_t n;
	uint64_t base[NMAPS];
};

/* Lane i adds i + 1 to word i / n of mapping i % n. */
static void multi_fn(struct gvm_lane *l, const void *args)
{
	const struct multi_args *a = args;
	uint64_t i = gvm_lane_id(l);
	uint64_t va = a->base[i % a->n] + (i / a->n) * 8;
	uint64_t v = gvm_lane_load(l, va, 8);

	gvm_lane_store(l, va, v + i + 1, 8);
}

/*
 * One job over ten different mappings: private anonymous of several
 * sizes and alignments, shared anonymous, a shared and a private file
 * mapping, the brk heap and a large malloc.  The private anonymous ones
 * move; the others are mirrored in place.
 */
TEST(one_job_faults_on_many_mappings)
{
	struct multi_args a = { .n = NMAPS };
	struct gvm_vm_stats st0, st;
	uint64_t *m[NMAPS];
	struct gvm_kernel k;
	struct ctx c;
	int fd;

	setup(&c);
	fd = memfd_create("gvm-svm-cases", 0);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(ftruncate(fd, 2 * K64));
	m[0] = svmt_map(K4, K4);
	m[1] = svmt_map(3 * K4, K4);
	m[2] = svmt_map(K64, K64);
	m[3] = svmt_map(M2, M2);
	m[4] = (uint64_t *)((uint8_t *)svmt_map(4 * M2, M2) + 3 * K4);
	m[5] = malloc(M1);			/* its own mmap */
	m[6] = malloc(WORDS_PER_MAP * 8);	/* the brk heap */
	m[7] = mmap(NULL, K64, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	m[8] = mmap(NULL, K64, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	m[9] = mmap(NULL, K64, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, K64);
	for (int j = 0; j < NMAPS; j++) {
		ASSERT_TRUE(m[j] != NULL && m[j] != MAP_FAILED);
		for (int w = 0; w < WORDS_PER_MAP; w++)
			m[j][w] = 1000 * (uint64_t)j + (uint64_t)w;
		a.base[j] = svmt_u64(m[j]);
	}
	ASSERT_OK(gvm_kernel_init(&k, "multi", multi_fn, NMAPS * WORDS_PER_MAP,
				  &a, sizeof(a)));
	st0 = svmt_stats(c.vm);
	svmt_run(c.q, &k);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_ranges_created - st0.svm_ranges_created, NMAPS);
	ASSERT_EQ(st.faults_serviced - st0.faults_serviced, NMAPS);
	ASSERT_EQ(st.svm_migrations - st0.svm_migrations, 7);
	ASSERT_GE(st.svm_faults_by_size[0] - st0.svm_faults_by_size[0], 2);
	for (uint64_t i = 0; i < NMAPS * WORDS_PER_MAP; i++) {
		uint64_t j = i % NMAPS, w = i / NMAPS;

		ASSERT_EQ(m[j][w], 1000 * j + w + i + 1);
	}
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	teardown(&c);
	svmt_unmap(m[0], K4);
	svmt_unmap(m[1], 3 * K4);
	svmt_unmap(m[2], K64);
	svmt_unmap(m[3], M2);
	svmt_unmap((uint8_t *)m[4] - 3 * K4, 4 * M2);
	free(m[5]);
	free(m[6]);
	munmap(m[7], K64);
	munmap(m[8], K64);
	munmap(m[9], K64);
	close(fd);
}

/* ---- 6. many execs: GPU/CPU ping-pong ------------------------------------ */

/*
 * 200 execs on one 2 MiB buffer, the CPU touching it after each: even
 * execs fill its first 64 KiB (the CPU then compares all of it with a
 * shadow copy), odd ones checksum all of it; the CPU then changes a word.
 * Every exec moves the range to device memory and every CPU touch brings
 * it back: 200 moves each way, exactly.
 */
TEST(two_hundred_execs_ping_pong)
{
	const unsigned int execs = 200;
	struct gvm_vm_stats st0, st;
	uint64_t *p, *shadow, faults0;
	struct ctx c;

	setup(&c);
	p = svmt_map(M2, M2);
	shadow = malloc(M2);
	ASSERT_TRUE(shadow != NULL);
	for (uint64_t i = 0; i < M2 / 8; i++)
		p[i] = shadow[i] = cpu_word(i, 0);
	st0 = svmt_stats(c.vm);
	faults0 = cpu_faults(c.mm);
	for (unsigned int it = 0; it < execs; it++) {
		uint64_t idx = K64 / 8 + (it * 7919ull) % ((M2 - K64) / 8);

		if (it % 2 == 0) {
			gpu_fill(&c, p, K64, it + 1);
			for (uint64_t i = 0; i < K64 / 8; i++)
				shadow[i] = W(it + 1);
			ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
			ASSERT_TRUE(memcmp(p, shadow, M2) == 0);
		} else {
			uint64_t sum = 0;

			for (uint64_t i = 0; i < M2 / 8; i++)
				sum += shadow[i];
			ASSERT_EQ(gpu_sum(&c, p, M2), sum);
			ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
		}
		p[idx] += it;			/* back, if not yet */
		shadow[idx] += it;
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
		st = svmt_stats(c.vm);
		ASSERT_EQ(st.svm_migrations - st0.svm_migrations, it + 1);
		ASSERT_EQ(st.dev_svm_to_system - st0.dev_svm_to_system,
			  it + 1);
	}
	ASSERT_TRUE(memcmp(p, shadow, M2) == 0);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.faults_serviced - st0.faults_serviced, execs);
	ASSERT_EQ(st.svm_faults_by_size[2] - st0.svm_faults_by_size[2],
		  execs);
	ASSERT_EQ(st.svm_ranges_created - st0.svm_ranges_created, 1);
	ASSERT_EQ(st.dev_svm_bytes_to_system - st0.dev_svm_bytes_to_system,
		  execs * M2);
	ASSERT_EQ(st.svm_migration_failures, 0);
	ASSERT_EQ(cpu_faults(c.mm) - faults0, execs);
	teardown(&c);
	free(shadow);
	svmt_unmap(p, M2);
}

/* ---- 7. MADV_FREE ---------------------------------------------------------- */

/* The GPU fills @p's 2 MiB, which moves it to device memory. */
static void make_resident(struct ctx *c, uint64_t *p, uint32_t v)
{
	uint64_t before = svmt_stats(c->vm).svm_migrations;
	uint64_t bytes = gvm__mm_devmem_bytes(c->mm);

	gpu_fill(c, p, M2, v);
	ASSERT_EQ(svmt_stats(c->vm).svm_migrations, before + 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c->mm), bytes + M2);
}

/*
 * docs/svm.md: MADV_DONTNEED, _FREE and _REMOVE on device-resident memory
 * drop those pages' device data, "those pages read as zero afterwards, on
 * the CPU and the GPU" (unlike MADV_FREE on system memory, below).  The
 * GPU reads first in one buffer, the CPU in the other; then the GPU
 * writes the freed pages and the CPU sees the writes.
 */
TEST(madvise_free_on_device_resident_memory_reads_zero)
{
	uint64_t *a, *b;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	b = svmt_map(M2, M2);
	make_resident(&c, a, 31);
	make_resident(&c, b, 32);
	ASSERT_OK(madvise(a, K64, MADV_FREE));
	ASSERT_OK(madvise((uint8_t *)b + M2 - K64, K64, MADV_FREE));
	/* the GPU first (exec applies the change first: docs/mm.md) */
	ASSERT_EQ(gpu_sum(&c, a, M2), W(31) * ((M2 - K64) / 8));
	ASSERT_TRUE(all_are(a, K64, 0));
	ASSERT_TRUE(all_are(a + K64 / 8, M2 - K64, W(31)));
	/* the CPU first */
	ASSERT_TRUE(all_are(b + (M2 - K64) / 8, K64, 0));
	ASSERT_TRUE(all_are(b, M2 - K64, W(32)));
	ASSERT_EQ(gpu_sum(&c, b, M2), W(32) * ((M2 - K64) / 8));
	/* written again after the free: kept, wherever it lives */
	gpu_fill(&c, a, K4, 33);
	gpu_fill(&c, (uint8_t *)b + M2 - K4, K4, 34);
	ASSERT_TRUE(all_are(a, K4, W(33)));
	ASSERT_TRUE(all_are(a + K4 / 8, K64 - K4, 0));
	ASSERT_TRUE(all_are(b + (M2 - K4) / 8, K4, W(34)));
	ASSERT_TRUE(all_are(b + (M2 - K64) / 8, K64 - K4, 0));
	ASSERT_TRUE(all_are(b, M2 - K64, W(32)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(svmt_stats(c.vm).svm_migration_failures, 0);
	teardown(&c);
	svmt_unmap(a, M2);
	svmt_unmap(b, M2);
}

/*
 * MADV_FREE on private memory that is in system memory and bound there
 * (a prefetch to system memory binds it in place): Linux keeps the data
 * until reclaim takes the pages, so each word reads as its old value or
 * zero, on the CPU and the GPU, never anything else (docs/mm.md, "Limits":
 * no event when reclaim frees them; docs/svm.md documents only the
 * device-resident case).  Written again, a page keeps what was written.
 */
TEST(madvise_free_on_system_memory_keeps_old_data_or_zero)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH, .range = M2,
				  .prefetch_mem = GVM_MEM_SYSTEM };
	uint64_t *p, *copy, zeros = 0;
	struct ctx c;

	setup(&c);
	p = svmt_map(M2, M2);
	copy = mmap(NULL, K64, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(copy != MAP_FAILED);
	for (uint64_t i = 0; i < M2 / 8; i++)
		p[i] = cpu_word(i, 41);
	op.addr = svmt_u64(p);
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	ASSERT_EQ(svmt_stats(c.vm).svm_migrations, 0);
	ASSERT_OK(madvise(p, K64, MADV_FREE));
	gpu_copy(&c, copy, p, K64);		/* the GPU's view */
	for (uint64_t i = 0; i < K64 / 8; i++) {
		ASSERT_TRUE(copy[i] == cpu_word(i, 41) || copy[i] == 0);
		ASSERT_TRUE(p[i] == cpu_word(i, 41) || p[i] == 0);
		zeros += p[i] == 0;
	}
	printf("MADV_FREE: %llu of %llu words read zero\n",
	       (unsigned long long)zeros, (unsigned long long)(K64 / 8));
	for (uint64_t i = K64 / 8; i < M2 / 8; i++)
		if (p[i] != cpu_word(i, 41))
			ASSERT_EQ(p[i], cpu_word(i, 41));
	/* freed and then reclaimed at once (MADV_PAGEOUT discards clean
	   lazily-freed pages, with no event): still old data or zeros */
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	ASSERT_OK(madvise(p + K64 / 8, K64, MADV_FREE));
	if (madvise(p + K64 / 8, K64, MADV_PAGEOUT))
		printf("MADV_PAGEOUT: %s\n", strerror(errno));
	gpu_copy(&c, copy, p + K64 / 8, K64);
	zeros = 0;
	for (uint64_t i = 0; i < K64 / 8; i++) {
		uint64_t old = cpu_word(K64 / 8 + i, 41);

		ASSERT_TRUE(copy[i] == old || copy[i] == 0);
		ASSERT_TRUE(p[K64 / 8 + i] == old || p[K64 / 8 + i] == 0);
		zeros += p[K64 / 8 + i] == 0;
	}
	printf("MADV_FREE + MADV_PAGEOUT: %llu of %llu words read zero\n",
	       (unsigned long long)zeros, (unsigned long long)(K64 / 8));
	/* freed again, then written by the GPU: the writes stay */
	ASSERT_OK(madvise(p, K64, MADV_FREE));
	gpu_fill(&c, p, K64, 42);
	ASSERT_TRUE(all_are(p, K64, W(42)));
	ASSERT_EQ(gpu_sum(&c, p, K64), W(42) * (K64 / 8));
	teardown(&c);
	munmap(copy, K64);
	svmt_unmap(p, M2);
}

/* ---- the kernel, and mprotect, on device-resident memory ----------------- */

/*
 * docs/mm.md: a kernel access on the process's behalf (read() into it,
 * write() from it, process_vm_readv, MADV_POPULATE) faults the data back
 * as a CPU access does.
 */
TEST(system_calls_on_device_resident_memory)
{
	uint64_t *a, *b, *d, buf[K4 / 8];
	struct iovec local = { buf, K4 }, remote;
	struct ctx c;
	int fds[2];

	setup(&c);
	a = svmt_map(M2, M2);
	b = svmt_map(M2, M2);
	d = svmt_map(M2, M2);
	make_resident(&c, a, 51);
	make_resident(&c, b, 52);
	make_resident(&c, d, 53);
	ASSERT_OK(pipe(fds));
	/* write() reads a: back, with its data */
	ASSERT_EQ(write(fds[1], (uint8_t *)a + K64, K4), (ssize_t)K4);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 2 * M2);
	/* read() writes b: back, then overwritten in part */
	ASSERT_EQ(read(fds[0], (uint8_t *)b + K4, K4), (ssize_t)K4);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_TRUE(all_are(b, K4, W(52)));
	ASSERT_TRUE(all_are(b + K4 / 8, K4, W(51)));
	ASSERT_TRUE(all_are(b + 2 * K4 / 8, M2 - 2 * K4, W(52)));
	/* process_vm_readv of d */
	remote = (struct iovec){ (uint8_t *)d + M2 - K4, K4 };
	ASSERT_EQ(process_vm_readv(getpid(), &local, 1, &remote, 1, 0),
		  (ssize_t)K4);
	ASSERT_TRUE(all_are(buf, K4, W(53)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_TRUE(all_are(a, M2, W(51)));
	ASSERT_TRUE(all_are(d, M2, W(53)));
	/* MADV_POPULATE_WRITE of resident memory */
	make_resident(&c, d, 54);
	ASSERT_OK(madvise(d, M2, MADV_POPULATE_WRITE));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_TRUE(all_are(d, M2, W(54)));
	ASSERT_EQ(svmt_stats(c.vm).dev_svm_to_system, 4);
	close(fds[0]);
	close(fds[1]);
	teardown(&c);
	svmt_unmap(a, M2);
	svmt_unmap(b, M2);
	svmt_unmap(d, M2);
}

/*
 * mprotect raises no event (docs/mm.md, "Invisible changes"): device-
 * resident memory made read-only, or inaccessible and then accessible
 * again, must still give its data back to the CPU's next access.
 */
TEST(mprotect_none_and_back_on_device_resident_memory)
{
	uint64_t *a;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	make_resident(&c, a, 61);
	ASSERT_OK(mprotect(a, M2, PROT_NONE));
	ASSERT_OK(mprotect(a, M2, PROT_READ | PROT_WRITE));
	ASSERT_TRUE(all_are(a, M2, W(61)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	teardown(&c);
	svmt_unmap(a, M2);
}

/*
 * PROT_NONE on memory the GPU has mapped: in system memory (bound in
 * place, the preferred location keeps it there) or in device memory.  A
 * GPU store and a GPU read there each fail their job (-EIO, exactly one
 * fault logged); the data is unchanged once the CPU may read it again;
 * the VM goes on (a job on other memory, and then on this memory, works).
 *
 * System memory: the GPU reaches it through the CPU's page tables
 * (guarded accesses), which refuse at once.  Device memory: mprotect
 * raises no event a process can see (docs/mm.md, "Invisible changes"),
 * so unless the application says so (gvm_mm_invalidate(), TOLD), the
 * device keeps its mapping of the data until the range's next
 * invalidation (docs/svm.md, "What the application may do to
 * device-resident memory"): a read still sees the data.  Any
 * invalidation ends that; here an attribute change drops the range, and
 * the fault that remakes it finds the CPU mapping PROT_NONE.  Told, the
 * range stays and its next fault finds the protection.
 */
enum prot_case { IN_SYSTEM, RESIDENT, RESIDENT_TOLD };

static void prot_none_case(enum prot_case how)
{
	uint64_t *a, *b;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	b = svmt_map(K64, K64);
	if (how != IN_SYSTEM) {
		make_resident(&c, a, 73);
	} else {
		svmt_keep_in_system(c.vm, a, M2);
		for (uint64_t i = 0; i < M2 / 8; i++)
			a[i] = W(73);
		ASSERT_EQ(gpu_sum(&c, a, M2), W(73) * (M2 / 8));
		ASSERT_EQ(svmt_stats(c.vm).svm_migrations, 0);
	}
	ASSERT_OK(mprotect(a, M2, PROT_NONE));
	if (how == RESIDENT) {
		struct gvm_madvise adv = { .set = GVM_MADV_PAT,
					   .attrs.pat = 1 };

		ASSERT_EQ(gpu_sum(&c, a, M2), W(73) * (M2 / 8));
		ASSERT_OK(gvm_vm_madvise(c.vm, svmt_u64(a), M2, &adv));
	} else if (how == RESIDENT_TOLD) {
		uint64_t dropped = svmt_stats(c.vm).svm_ranges_dropped;

		ASSERT_OK(gvm_mm_invalidate(c.mm, svmt_u64(a), M2));
		ASSERT_EQ(svmt_stats(c.vm).svm_ranges_dropped, dropped);
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	}
	svmt_store_refused(c.vm, c.q, a + 5, 1);
	svmt_sum_refused(c.vm, c.q, a, M2, c.out);
	gpu_fill(&c, b, K64, 74);			/* other memory */
	ASSERT_TRUE(all_are(b, K64, W(74)));
	ASSERT_OK(mprotect(a, M2, PROT_READ | PROT_WRITE));
	ASSERT_TRUE(all_are(a, M2, W(73)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(gpu_sum(&c, a, M2), W(73) * (M2 / 8));
	ASSERT_FALSE(svmt_stats(c.vm).banned);
	teardown(&c);
	svmt_unmap(a, M2);
	svmt_unmap(b, K64);
}

TEST(prot_none_on_memory_bound_in_system_memory)
{
	prot_none_case(IN_SYSTEM);
}

TEST(prot_none_on_device_resident_memory)
{
	prot_none_case(RESIDENT);
}

TEST(prot_none_on_device_resident_memory_told)
{
	prot_none_case(RESIDENT_TOLD);
}

/*
 * Made read-only while in device memory, and told (gvm_mm_invalidate()):
 * a GPU store fails its job at once, the data stays in device memory,
 * and a GPU read gets it.
 */
TEST(read_only_on_device_resident_memory_told)
{
	uint64_t *a;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	make_resident(&c, a, 75);
	ASSERT_OK(mprotect(a, M2, PROT_READ));
	ASSERT_OK(gvm_mm_invalidate(c.mm, svmt_u64(a), M2));
	svmt_store_refused(c.vm, c.q, a + 5, 1);
	ASSERT_EQ(gpu_sum(&c, a, M2), W(75) * (M2 / 8));
	ASSERT_TRUE(all_are(a, M2, W(75)));
	ASSERT_OK(mprotect(a, M2, PROT_READ | PROT_WRITE));
	teardown(&c);
	svmt_unmap(a, M2);
}

/*
 * Made read-only while in device memory: the CPU's read gets the data
 * (the copy back could not move pages into a read-only mapping and read
 * zeros before mm/self.c's give_page), and so does a GPU read after.
 */
TEST(mprotect_read_only_on_device_resident_memory)
{
	uint64_t *a;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	make_resident(&c, a, 62);
	ASSERT_OK(mprotect(a, M2, PROT_READ));
	ASSERT_TRUE(all_are(a, M2, W(62)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(gpu_sum(&c, a, M2), W(62) * (M2 / 8));
	ASSERT_OK(mprotect(a, M2, PROT_READ | PROT_WRITE));
	ASSERT_TRUE(all_are(a, M2, W(62)));
	a[5] = 5;				/* writable again */
	ASSERT_EQ(gpu_sum(&c, a, M2), W(62) * (M2 / 8 - 1) + 5);
	teardown(&c);
	svmt_unmap(a, M2);
}

/*
 * A madvise that only splits the mapping (MADV_DONTFORK on a page in the
 * middle) under device-resident data: the copy back meets three mappings
 * (the first page of the extent was lost when the move over all of them
 * failed, before mm/self.c's give_page).
 */
TEST(split_mapping_of_device_resident_memory)
{
	uint64_t *a;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	make_resident(&c, a, 66);
	ASSERT_OK(madvise((uint8_t *)a + M1, K4, MADV_DONTFORK));
	ASSERT_TRUE(all_are(a, M2, W(66)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_OK(madvise((uint8_t *)a + M1, K4, MADV_DOFORK));
	gpu_fill(&c, a, M2, 67);		/* and once more */
	ASSERT_OK(madvise((uint8_t *)a + M1, K4, MADV_DONTFORK));
	ASSERT_TRUE(all_are(a, M2, W(67)));
	teardown(&c);
	svmt_unmap(a, M2);
}

/*
 * The same for part of a range (the copy back meets a mapping split in
 * three) and for a change of PROT_EXEC only.
 */
TEST(mprotect_part_or_exec_on_device_resident_memory)
{
	uint64_t *a, *b;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	b = svmt_map(M2, M2);
	make_resident(&c, a, 64);
	make_resident(&c, b, 65);
	ASSERT_OK(mprotect((uint8_t *)a + K64, 3 * K4, PROT_READ));
	ASSERT_OK(mprotect(b, M2, PROT_READ | PROT_WRITE | PROT_EXEC));
	ASSERT_EQ(a[0], W(64));			/* all of it comes back */
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_TRUE(all_are(a, M2, W(64)));
	ASSERT_TRUE(all_are(b, M2, W(65)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_OK(mprotect((uint8_t *)a + K64, 3 * K4,
			   PROT_READ | PROT_WRITE));
	teardown(&c);
	svmt_unmap(a, M2);
	svmt_unmap(b, M2);
}

/*
 * mlock of device-resident memory faults it in, with its data (the same
 * bug: a move into an mlocked mapping is refused too).
 */
TEST(mlock_of_device_resident_memory)
{
	uint64_t *a;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	make_resident(&c, a, 63);
	/* the system call: the sanitizers make mlock() a no-op */
	if (syscall(SYS_mlock, a, M2)) {
		printf("SKIP: mlock: no permission\n");
		ASSERT_TRUE(all_are(a, M2, W(63)));
	} else {
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
		ASSERT_TRUE(all_are(a, M2, W(63)));
		ASSERT_OK(syscall(SYS_munlock, a, M2));
	}
	teardown(&c);
	svmt_unmap(a, M2);
}

/* ---- more than VRAM holds ------------------------------------------------ */

static uint64_t vram_free(struct gvm_device *dev)
{
	struct gvm_device_info info;

	ASSERT_OK(gvm_device_query(dev, &info));
	return info.vram_free;
}

/*
 * 32 MiB of memory on a device with 8 MiB of VRAM: every range moves in
 * turn, evicting the least recently used ones (docs/svm.md,
 * "Oversubscription"); none fails; the data is right wherever it is, and
 * all VRAM comes back with the data.
 */
TEST(more_memory_than_vram)
{
	struct gvm_sim_config cfg = { .vram_size = M8 };
	const uint64_t size = 4 * M8, nranges = size / M2;
	uint64_t *p, sum = 0, free0, resident;
	struct gvm_vm_stats st;
	struct ctx c;

	setup_cfg(&c, &cfg);
	p = svmt_map(size, M2);
	free0 = vram_free(c.dev);
	gpu_fill(&c, p, size, 71);
	st = svmt_stats(c.vm);
	resident = gvm__mm_devmem_bytes(c.mm) / M2;
	printf("%llu of %llu ranges moved, %llu evicted, %llu resident\n",
	       (unsigned long long)st.svm_migrations,
	       (unsigned long long)nranges,
	       (unsigned long long)st.svm_evictions,
	       (unsigned long long)resident);
	ASSERT_EQ(st.svm_ranges_created, 1 + nranges);
	ASSERT_EQ(st.svm_migrations, nranges);
	ASSERT_EQ(st.svm_migration_failures, 0);
	ASSERT_GT(resident, 0);
	ASSERT_LE(resident * M2, M8);
	ASSERT_EQ(st.svm_evictions, nranges - resident);
	ASSERT_EQ(st.svm_bytes_evicted, (nranges - resident) * M2);
	ASSERT_EQ(st.dev_svm_evictions, st.svm_evictions);
	ASSERT_EQ(gpu_sum(&c, p, size), W(71) * (size / 8));
	ASSERT_TRUE(all_are(p, size, W(71)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	/* all of it back, but the page tables the ranges needed */
	ASSERT_LE(vram_free(c.dev), free0);
	ASSERT_GE(vram_free(c.dev), free0 - 4 * K4);
	free0 = vram_free(c.dev);
	for (uint64_t i = 0; i < size / 8; i++) {
		p[i] = cpu_word(i, 72);
		sum += p[i];
	}
	ASSERT_EQ(gpu_sum(&c, p, size), sum);
	gpu_fill(&c, p + 3 * M8 / 8, M8, 73);	/* the last quarter */
	for (uint64_t i = 0; i < 3 * M8 / 8; i++)
		if (p[i] != cpu_word(i, 72))
			ASSERT_EQ(p[i], cpu_word(i, 72));
	ASSERT_TRUE(all_are(p + 3 * M8 / 8, M8, W(73)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(vram_free(c.dev), free0);
	teardown(&c);
	svmt_unmap(p, size);
}

/*
 * A migration that finds VRAM full of an idle BO evicts it (docs/svm.md:
 * "no VRAM even after evicting idle BOs"); the BO keeps its data.
 */
TEST(migration_evicts_an_idle_bo)
{
	struct gvm_sim_config cfg = { .vram_size = M8 };
	struct gvm_bo *bo;
	uint32_t *b;
	uint64_t *p;
	struct ctx c;

	setup_cfg(&c, &cfg);
	ASSERT_OK(gvm_bo_create(c.dev, 6 * M1, GVM_MEM_VRAM, c.vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&b));
	for (uint64_t i = 0; i < 6 * M1 / 4; i++)
		b[i] = (uint32_t)i * 3;
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);
	/* bound (over the mirror, where the CPU maps nothing): counted */
	ASSERT_OK(gvm_vm_bind(c.vm, NULL,
			      &(struct gvm_bind_op){ .op = GVM_BIND_MAP,
						     .addr = 1ull << 32,
						     .range = 6 * M1,
						     .bo = bo }, 1, NULL, 0));
	p = svmt_map(2 * M2, M2);
	gpu_fill(&c, p, 2 * M2, 74);
	printf("migrations %llu, failures %llu, BO in %s\n",
	       (unsigned long long)svmt_stats(c.vm).svm_migrations,
	       (unsigned long long)svmt_stats(c.vm).svm_migration_failures,
	       gvm_bo_region(bo) == GVM_MEM_VRAM ? "VRAM" : "system");
	ASSERT_EQ(svmt_stats(c.vm).svm_migrations, 2);
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	ASSERT_EQ(svmt_stats(c.vm).evictions, 1);
	ASSERT_TRUE(all_are(p, 2 * M2, W(74)));
	ASSERT_OK(gvm_bo_map(bo, (void **)&b));
	for (uint64_t i = 0; i < 6 * M1 / 4; i++)
		if (b[i] != (uint32_t)i * 3)
			ASSERT_EQ(b[i], (uint32_t)i * 3);
	gvm_bo_put(bo);
	teardown(&c);
	svmt_unmap(p, 2 * M2);
}

/* ---- mremap of part of an extent, and growing ---------------------------- */

/*
 * docs/svm.md: mremap moves the device data with the pages.  Here only
 * 64 KiB of a 2 MiB device-resident range move, and another range grows
 * as it moves; the rest stays where it was.
 */
TEST(mremap_part_and_grow_of_device_resident_memory)
{
	uint64_t *a, *b, *dst, *big, *n;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	b = svmt_map(M2, M2);
	dst = svmt_map(K64, K64);
	big = svmt_map(2 * M2, M2);
	make_resident(&c, a, 91);
	make_resident(&c, b, 92);
	n = mremap((uint8_t *)a + M1, K64, K64, MREMAP_MAYMOVE | MREMAP_FIXED,
		   dst);
	ASSERT_TRUE(n == dst);
	n = mremap(b, M2, 2 * M2, MREMAP_MAYMOVE | MREMAP_FIXED, big);
	ASSERT_TRUE(n == big);
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_TRUE(all_are(dst, K64, W(91)));
	ASSERT_TRUE(all_are(a, M1, W(91)));
	ASSERT_TRUE(all_are(a + (M1 + K64) / 8, M1 - K64, W(91)));
	ASSERT_TRUE(all_are(big, M2, W(92)));
	ASSERT_TRUE(all_are(big + M2 / 8, M2, 0));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	/* the GPU sees the same */
	ASSERT_EQ(gpu_sum(&c, dst, K64), W(91) * (K64 / 8));
	ASSERT_EQ(gpu_sum(&c, big, 2 * M2), W(92) * (M2 / 8));
	ASSERT_EQ(gpu_sum(&c, a, M1), W(91) * (M1 / 8));
	teardown(&c);
	munmap(a, M1);
	munmap((uint8_t *)a + M1 + K64, M1 - K64);
	svmt_unmap(dst, K64);
	svmt_unmap(big, 2 * M2);
	munmap((uint8_t *)a - K4, K4);
	munmap((uint8_t *)a + M2, K4);
	munmap((uint8_t *)b - K4, K4);
	munmap((uint8_t *)b + M2, K4);
}

/* ---- many CPU threads fault on one extent at once ------------------------ */

#define READERS 4

struct reader {
	pthread_barrier_t *start, *done;
	const uint64_t *p;
	unsigned int id, rounds;
	uint64_t bad;
};

/* Each round: wait, read every word of its own quarter, report. */
static void *reader_fn(void *arg)
{
	struct reader *r = arg;

	for (unsigned int round = 1; round <= r->rounds; round++) {
		const uint64_t *q = r->p + r->id * (M2 / READERS / 8);

		pthread_barrier_wait(r->start);
		for (uint64_t i = 0; i < M2 / READERS / 8; i++)
			if (q[i] != W(round))
				r->bad++;
		pthread_barrier_wait(r->done);
	}
	return NULL;
}

/*
 * Four threads touch a device-resident range at once, each its own part:
 * one fault brings the whole range back, the others' faults find it
 * there; every thread reads the GPU's data.  20 rounds.
 */
TEST(cpu_threads_fault_on_one_extent_at_once)
{
	const unsigned int rounds = 20;
	pthread_barrier_t start, done;
	struct reader r[READERS];
	pthread_t t[READERS];
	uint64_t *p, faults0;
	struct ctx c;

	setup(&c);
	p = svmt_map(M2, M2);
	ASSERT_OK(pthread_barrier_init(&start, NULL, READERS + 1));
	ASSERT_OK(pthread_barrier_init(&done, NULL, READERS + 1));
	for (unsigned int i = 0; i < READERS; i++) {
		r[i] = (struct reader){ &start, &done, p, i, rounds, 0 };
		ASSERT_OK(pthread_create(&t[i], NULL, reader_fn, &r[i]));
	}
	faults0 = cpu_faults(c.mm);
	for (unsigned int round = 1; round <= rounds; round++) {
		make_resident(&c, p, round);
		pthread_barrier_wait(&start);
		pthread_barrier_wait(&done);
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	}
	for (unsigned int i = 0; i < READERS; i++) {
		pthread_join(t[i], NULL);
		ASSERT_EQ(r[i].bad, 0);
	}
	ASSERT_EQ(svmt_stats(c.vm).dev_svm_to_system, rounds);
	ASSERT_GE(cpu_faults(c.mm) - faults0, rounds);
	printf("%llu CPU faults for %u fault-backs\n",
	       (unsigned long long)(cpu_faults(c.mm) - faults0), rounds);
	pthread_barrier_destroy(&start);
	pthread_barrier_destroy(&done);
	teardown(&c);
	svmt_unmap(p, M2);
}

/* ---- a migration back while another event is queued ------------------ */

struct toucher {
	uint64_t *p;
	uint64_t val;
	pid_t tid;			/* atomic */
};

static void *toucher_read(void *arg)
{
	struct toucher *t = arg;

	t->val = *(volatile uint64_t *)t->p;
	return NULL;
}

static void *toucher_dontneed(void *arg)
{
	struct toucher *t = arg;

	__atomic_store_n(&t->tid, (pid_t)syscall(SYS_gettid),
			 __ATOMIC_RELEASE);
	ASSERT_OK(madvise(t->p, K64, MADV_DONTNEED));
	return NULL;
}

/* 1: @tid sleeps in a userfaultfd wait, 0: not, -1: cannot tell. */
static int in_userfaultfd(pid_t tid)
{
	char path[64], buf[128] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	if (!buf[0] || !strcmp(buf, "0"))
		return -1;
	return strstr(buf, "userfaultfd") != NULL;
}

/* Waits until thread @tid sleeps in a userfaultfd wait (if it can tell). */
static bool wait_in_userfaultfd(pid_t tid)
{
	int in;

	while (!(in = in_userfaultfd(tid)))
		sched_yield();
	if (in < 0)
		printf("cannot read wchan: the interleaving may not be forced\n");
	return in > 0;
}

/* A thread calls madvise(DONTNEED) on @b; returns its tid once it runs. */
static pid_t start_dontneed(struct toucher *d, uint64_t *b, pthread_t *t)
{
	d->p = b;
	ASSERT_OK(pthread_create(t, NULL, toucher_dontneed, d));
	while (!__atomic_load_n(&d->tid, __ATOMIC_ACQUIRE))
		sched_yield();
	return d->tid;
}

/*
 * The event thread has read a CPU fault on device-resident memory A (held
 * there by mmhold) when another thread's madvise on other registered
 * memory B queues a REMOVE.  Until that event is read, the kernel fails
 * every UFFDIO_MOVE/COPY/ZEROPAGE/POISON on the userfaultfd with EAGAIN.
 * The fault-back then gives what it can, keeps the rest device-resident
 * and defers the fault (its thread not woken: it would fault again before
 * the event could be read), and retries it after the next message.  It
 * used to treat EAGAIN as "page gone": A read as zeros (or the thread was
 * never woken).  In a real program: any munmap/madvise/mremap of
 * registered memory by one thread while another's fault is served.
 */
TEST(fault_back_while_an_event_is_queued_keeps_the_data)
{
	struct gvm_mm_self_stats ms;
	struct toucher r = { 0 }, d = { 0 };
	pthread_t tr, td;
	uint64_t *a, *b;
	struct ctx c;
	bool forced;

	setup(&c);
	a = svmt_map(M2, M2);
	b = svmt_map(K64, K64);
	make_resident(&c, a, 95);
	gpu_fill(&c, b, K64, 96);		/* b registered too */
	ASSERT_TRUE(all_are(b, K64, W(96)));
	mmhold_install();
	mmhold_arm();
	r.p = a;
	ASSERT_OK(pthread_create(&tr, NULL, toucher_read, &r));
	ASSERT_EQ(mmhold_wait_held(), UFFD_EVENT_PAGEFAULT);
	/* until the REMOVE is queued: madvise then waits for its read */
	forced = wait_in_userfaultfd(start_dontneed(&d, b, &td));
	mmhold_release();
	pthread_join(tr, NULL);
	pthread_join(td, NULL);
	mmhold_uninstall();
	ASSERT_EQ(r.val, W(95));
	ASSERT_TRUE(all_are(a, M2, W(95)));
	ASSERT_TRUE(all_are(b, K64, 0));
	gvm__mm_self_stats(c.mm, &ms);
	if (forced)
		ASSERT_GE(ms.cpu_faults_deferred, 1);
	teardown(&c);
	svmt_unmap(a, M2);
	svmt_unmap(b, K64);
}

struct migrator {
	struct gvm_mm *mm;
	uint64_t *p;
	int err;
};

static void *migrate_back(void *arg)
{
	struct migrator *m = arg;

	m->err = gvm__mm_migrate_to_ram(m->mm, svmt_u64(m->p), M2);
	return NULL;
}

/*
 * The same from another thread than the event reader, as the fault
 * servicing thread or a fetch does it (gvm__mm_migrate_to_ram, which does
 * not flush the mm first, unlike the public calls): A comes back while
 * the event thread is held on one event (a REMOVE of C) and another (B's)
 * is queued.  The give gets EAGAIN; the migration drops devmem_lock and
 * waits for the queued events to be read (gvm__mm_sync: its own event
 * goes behind them), then gives the rest.
 */
TEST(migration_back_while_an_event_is_queued_waits_for_it)
{
	struct toucher d = { 0 }, e = { 0 };
	struct migrator m = { 0 };
	pthread_t td, te, tm;
	uint64_t *a, *b, *cc;
	struct ctx c;

	setup(&c);
	a = svmt_map(M2, M2);
	b = svmt_map(K64, K64);
	cc = svmt_map(K64, K64);
	make_resident(&c, a, 97);
	gpu_fill(&c, b, K64, 98);
	gpu_fill(&c, cc, K64, 99);
	ASSERT_TRUE(all_are(b, K64, W(98)));
	ASSERT_TRUE(all_are(cc, K64, W(99)));
	mmhold_install();
	mmhold_arm();
	start_dontneed(&e, cc, &te);		/* read, then held */
	ASSERT_EQ(mmhold_wait_held(), UFFD_EVENT_REMOVE);
	pthread_join(te, NULL);
	if (wait_in_userfaultfd(start_dontneed(&d, b, &td))) {
		m.mm = c.mm;
		m.p = a;
		ASSERT_OK(pthread_create(&tm, NULL, migrate_back, &m));
		/* the give met B's pending event and waits for it */
		while (gvm__mm_devmem_waits(c.mm) < 1)
			sched_yield();
		mmhold_release();
		pthread_join(tm, NULL);
		ASSERT_OK(m.err);
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	} else {
		mmhold_release();
	}
	pthread_join(td, NULL);
	mmhold_uninstall();
	ASSERT_TRUE(all_are(a, M2, W(97)));
	ASSERT_TRUE(all_are(b, K64, 0));
	ASSERT_TRUE(all_are(cc, K64, 0));
	teardown(&c);
	svmt_unmap(a, M2);
	svmt_unmap(b, K64);
	svmt_unmap(cc, K64);
}
