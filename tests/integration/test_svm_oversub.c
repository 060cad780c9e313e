// SPDX-License-Identifier: MIT
/*
 * Oversubscribed SVM (docs/svm.md, "Oversubscription"; docs/policy.md):
 * working sets larger than VRAM, from two VMs in two threads on one
 * device, checked byte for byte on the GPU and the CPU; SVM memory and
 * BOs competing for VRAM; the anti-ping-pong timeslice; thrashing
 * detection pinning a range to system memory and letting it go after its
 * cool-down; a capacity failure that is not permanent.
 *
 * Nothing here depends on time or load: the policy's clock is moved with
 * its test knob (clock_skew_ns), and the assertions of the threaded tests
 * hold whatever the interleaving (every range serviced, no byte lost, no
 * migration failure).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "svmtest.h"
#include "core/atomic.h"
#include "core/list.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/dev.h"
#include "vm/policy.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M1 (1ull << 20)
#define M2 (2ull << 20)
#define M8 (8ull << 20)
#define M16 (16ull << 20)
#define MIRROR_END (1ull << 47)
#define SEC 1000000000ll

/* The 64-bit word a fill with the 32-bit pattern @v leaves. */
#define W(v) ((uint64_t)(v) * 0x100000001ull)

/* One VM of the device, with its queue and a shared page for results. */
struct vmctx {
	struct gvm_vm *vm;
	struct gvm_queue *q;
	uint64_t *out;
};

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct vmctx v[2];
};

static uint64_t gpu_sum(struct vmctx *v, const void *va, uint64_t size)
{
	struct gvm_kernel k;

	*v->out = 0;
	ASSERT_OK(gvm_kernel_checksum(&k, svmt_u64(va), size,
				      svmt_u64(v->out)));
	svmt_run(v->q, &k);
	return *v->out;
}

static void gpu_fill(struct vmctx *v, const void *va, uint64_t size,
		     uint32_t val)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_fill(&k, svmt_u64(va), size, val));
	svmt_run(v->q, &k);
}

static void prefetch(struct vmctx *v, const void *va, uint64_t size)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH, .addr = svmt_u64(va),
				  .range = size,
				  .prefetch_mem = GVM_MEM_VRAM };

	ASSERT_OK(gvm_vm_bind(v->vm, NULL, &op, 1, NULL, 0));
}

static void vm_setup(struct ctx *c, struct vmctx *v)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };

	ASSERT_OK(gvm_vm_create(c->dev, c->mm,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &v->vm));
	ASSERT_OK(gvm_queue_create(v->vm, GVM_ENGINE_COMPUTE, &v->q));
	ASSERT_OK(gvm_vm_bind(v->vm, NULL, &op, 1, NULL, 0));
	/* shared: mirrored in place, never migrated, never evicted */
	v->out = mmap(NULL, K4, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(v->out != MAP_FAILED);
	ASSERT_EQ(gpu_sum(v, v->out, 8), 0);
}

static void vm_teardown(struct vmctx *v)
{
	struct gvm_vm_stats st = svmt_stats(v->vm);

	/* every fault serviced */
	ASSERT_EQ(svmt_logged(v->vm, NULL), 0);
	ASSERT_FALSE(st.banned);
	ASSERT_EQ(st.svm_migration_failures, 0);
	gvm_queue_destroy(v->q);
	ASSERT_OK(gvm_vm_destroy(v->vm));
	munmap(v->out, K4);
}

/* A device with @vram bytes of VRAM and @nvms VMs on it. */
static void setup(struct ctx *c, uint64_t vram, unsigned int nvms)
{
	struct gvm_sim_config cfg = { .vram_size = vram };

	memset(c, 0, sizeof(*c));
	gvm__svm_policy_reset();
	ASSERT_OK(gvm_mm_self(&c->mm));
	ASSERT_TRUE(gvm__mm_devmem_supported(c->mm));
	ASSERT_OK(gvm_sim_device_create(&cfg, &c->dev));
	for (unsigned int i = 0; i < nvms; i++)
		vm_setup(c, &c->v[i]);
}

static void teardown(struct ctx *c, unsigned int nvms)
{
	for (unsigned int i = 0; i < nvms; i++)
		vm_teardown(&c->v[i]);
	gvm_device_put(c->dev);
	gvm_mm_put(c->mm);
	gvm__svm_policy_reset();
}

static uint64_t vram_free(struct gvm_device *dev)
{
	struct gvm_device_info info;

	ASSERT_OK(gvm_device_query(dev, &info));
	return info.vram_free;
}

static bool resident(struct ctx *c, const void *p, uint64_t size)
{
	struct gvm_mm_devmem *dm;
	uint64_t off;
	bool other;

	dm = gvm__mm_devmem_lookup(c->mm, svmt_u64(p), size, c->dev, &off,
				   &other);
	gvm__mm_devmem_put(dm);
	return dm != NULL;
}

/* A word no fill makes: position and round mixed. */
static uint64_t cpu_word(uint64_t i, uint64_t round)
{
	return (i + 1) * 0x9e3779b97f4a7c15ull ^ (round << 56);
}

/* ---- working sets larger than VRAM, two VMs, two threads ------------- */

/*
 * A thread's working set: @n mappings of @each bytes.  2 MiB-aligned
 * mappings of whole 2 MiB blocks make 2 MiB ranges; 960 KiB ones (no 2 MiB
 * block fits) make 64 KiB ranges.
 */
struct wset {
	pthread_barrier_t *bar;		/* both threads' phases in step */
	struct ctx *c;
	struct vmctx *v;
	uint8_t *map[64];
	unsigned int n;
	uint64_t each;
	unsigned int seed;
};

static void wset_make(struct wset *w, uint64_t bytes, uint64_t each,
		      uint64_t align)
{
	w->each = each;
	w->n = (unsigned int)((bytes + each - 1) / each);
	ASSERT_LE(w->n, 64);
	for (unsigned int i = 0; i < w->n; i++)
		w->map[i] = svmt_map(each, align);
}

static void wset_free(struct wset *w)
{
	for (unsigned int i = 0; i < w->n; i++)
		svmt_unmap(w->map[i], w->each);
}

/*
 * Rounds of: the CPU writes every word (brings resident data back), the
 * GPU checksums it all (faults, migrations, evictions), the GPU fills it
 * all, the GPU and the CPU check the fill.  Exact sums: no byte lost.
 * The two threads do each phase together (a barrier between phases), so
 * both working sets go through the GPU between two CPU phases: more than
 * VRAM holds, whatever the interleaving, so something is evicted.
 */
static void *wset_run(void *arg)
{
	struct wset *w = arg;
	const uint64_t words = w->each / 8;

	for (unsigned int round = 0; round < 3; round++) {
		uint32_t val = w->seed * 100 + round + 1;
		uint64_t sum = 0, gsum = 0;

		pthread_barrier_wait(w->bar);
		for (unsigned int m = 0; m < w->n; m++) {
			uint64_t *p = (uint64_t *)w->map[m];

			for (uint64_t i = 0; i < words; i++) {
				p[i] = cpu_word(i + m * words,
						round + w->seed * 8);
				sum += p[i];
			}
		}
		for (unsigned int m = 0; m < w->n; m++)
			gsum += gpu_sum(w->v, w->map[m], w->each);
		ASSERT_EQ(gsum, sum);
		pthread_barrier_wait(w->bar);
		for (unsigned int m = 0; m < w->n; m++)
			gpu_fill(w->v, w->map[m], w->each, val);
		gsum = 0;
		for (unsigned int m = 0; m < w->n; m++)
			gsum += gpu_sum(w->v, w->map[m], w->each);
		ASSERT_EQ(gsum, W(val) * words * w->n);
		pthread_barrier_wait(w->bar);
		for (unsigned int m = 0; m < w->n; m++) {
			const uint64_t *p = (const uint64_t *)w->map[m];

			for (uint64_t i = 0; i < words; i++)
				if (p[i] != W(val))
					ASSERT_EQ(p[i], W(val));
		}
	}
	return NULL;
}

/*
 * @percent of a 16 MiB VRAM, split between two VMs in two threads: one
 * with 2 MiB ranges, the other with 64 KiB ranges.
 */
static void working_set(unsigned int percent)
{
	const uint64_t total = M16 * percent / 100;
	struct wset w[2] = { 0 };
	struct gvm_vm_stats st[2];
	pthread_barrier_t bar;
	pthread_t t[2];
	uint64_t free0;
	struct ctx c;

	setup(&c, M16, 2);
	free0 = vram_free(c.dev);
	ASSERT_OK(pthread_barrier_init(&bar, NULL, 2));
	w[0] = (struct wset){ .bar = &bar, .c = &c, .v = &c.v[0], .seed = 1 };
	w[1] = (struct wset){ .bar = &bar, .c = &c, .v = &c.v[1], .seed = 2 };
	wset_make(&w[0], total / 2, M2, M2);
	wset_make(&w[1], total / 2, 960 << 10, K64);
	for (unsigned int i = 0; i < 2; i++)
		ASSERT_OK(pthread_create(&t[i], NULL, wset_run, &w[i]));
	for (unsigned int i = 0; i < 2; i++)
		ASSERT_OK(pthread_join(t[i], NULL));
	for (unsigned int i = 0; i < 2; i++)
		st[i] = svmt_stats(c.v[i].vm);
	printf("%u%%: VM0 %llu migrations, %llu evictions, %llu fallbacks, "
	       "%llu pins; VM1 %llu migrations, %llu evictions, %llu "
	       "fallbacks, %llu pins; device %llu evictions (%llu MiB)\n",
	       percent, (unsigned long long)st[0].svm_migrations,
	       (unsigned long long)st[0].svm_evictions,
	       (unsigned long long)st[0].svm_capacity_fallbacks,
	       (unsigned long long)st[0].svm_thrash_pins,
	       (unsigned long long)st[1].svm_migrations,
	       (unsigned long long)st[1].svm_evictions,
	       (unsigned long long)st[1].svm_capacity_fallbacks,
	       (unsigned long long)st[1].svm_thrash_pins,
	       (unsigned long long)st[0].dev_svm_evictions,
	       (unsigned long long)(st[0].dev_svm_bytes_evicted >> 20));
	for (unsigned int i = 0; i < 2; i++) {
		ASSERT_GT(st[i].svm_migrations, 0);
		ASSERT_EQ(st[i].svm_migration_failures, 0);
	}
	/* more than fits: something was evicted */
	ASSERT_GT(st[0].dev_svm_evictions, 0);
	ASSERT_EQ(st[0].dev_svm_evictions,
		  st[0].svm_evictions + st[1].svm_evictions);
	ASSERT_GE(st[0].dev_svm_to_system, st[0].dev_svm_evictions);
	/* the last CPU check brought everything back */
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_LE(vram_free(c.dev), free0);
	wset_free(&w[0]);
	wset_free(&w[1]);
	pthread_barrier_destroy(&bar);
	teardown(&c, 2);
}

TEST(working_set_112_percent_two_vms_two_threads)
{
	working_set(112);
}

TEST(working_set_150_percent_two_vms_two_threads)
{
	working_set(150);
}

TEST(working_set_200_percent_two_vms_two_threads)
{
	working_set(200);
}

/* ---- SVM memory and BOs competing --------------------------------------- */

/*
 * VRAM full of SVM memory: a BO with no system fallback gets its VRAM by
 * evicting SVM memory (it holds no lock, evict.c); SVM then gets VRAM back
 * by evicting the idle BO; no data lost on either side.
 */
TEST(svm_memory_and_bos_compete)
{
	const uint64_t size = 12 * M1;
	struct vmctx *v;
	struct gvm_bo *bo;
	uint64_t evictions;
	uint32_t *b;
	uint8_t *p;
	struct ctx c;

	setup(&c, M16, 1);
	v = &c.v[0];
	p = svmt_map(size, M2);
	gpu_fill(v, p, size, 5);
	ASSERT_EQ(svmt_stats(v->vm).svm_migrations, size / M2);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), size);

	ASSERT_OK(gvm_bo_create(c.dev, 8 * M1, GVM_MEM_VRAM, v->vm, &bo));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);
	evictions = svmt_stats(v->vm).dev_svm_evictions;
	printf("the BO evicted %llu SVM allocations\n",
	       (unsigned long long)evictions);
	ASSERT_GE(evictions, 2);
	/* not this VM's faults */
	ASSERT_EQ(svmt_stats(v->vm).svm_evictions, 0);
	ASSERT_LE(gvm__mm_devmem_bytes(c.mm), size - 2 * M2);
	ASSERT_OK(gvm_bo_map(bo, (void **)&b));
	for (uint64_t i = 0; i < 8 * M1 / 4; i++)
		b[i] = (uint32_t)i * 7;

	/* The whole working set through the GPU again: the idle BO goes. */
	ASSERT_EQ(gpu_sum(v, p, size), W(5) * (size / 8));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	for (uint64_t i = 0; i < size / 8; i++)
		if (((uint64_t *)p)[i] != W(5))
			ASSERT_EQ(((uint64_t *)p)[i], W(5));
	ASSERT_OK(gvm_bo_map(bo, (void **)&b));
	for (uint64_t i = 0; i < 8 * M1 / 4; i++)
		if (b[i] != (uint32_t)i * 7)
			ASSERT_EQ(b[i], (uint32_t)i * 7);
	gvm_bo_put(bo);
	svmt_unmap(p, size);
	teardown(&c, 1);
}

/*
 * One LRU order for BOs and SVM memory (evict.c, migrate.c: LRU stamps).
 * A 2 MiB VRAM-only BO, used by an exec of an ordinary VM, then SVM ranges
 * A..F (12 MiB) fill a 16 MiB VRAM.  G's migration needs room: the BO,
 * used before A, goes first (A stays).  An exec of the BO takes it back,
 * making SVM memory give way (A, the oldest), and the BO is now the most
 * recently used: A's migration back evicts B, not the BO.
 */
TEST(bos_and_svm_memory_go_in_one_lru_order)
{
	const uint64_t va = 1ull << 40;
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = va, .range = M2 };
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	struct gvm_kernel k;
	struct gvm_queue *q;
	struct gvm_vm *bvm;
	struct gvm_bo *bo;
	struct vmctx *v;
	uint8_t *p, *r[7];
	struct ctx c;

	setup(&c, M16, 1);
	v = &c.v[0];
	gvm__svm_policy.evict_timeslice_ns = 0;	/* no young allocation */
	ASSERT_OK(gvm_vm_create(c.dev, NULL, 0, &bvm));
	ASSERT_OK(gvm_queue_create(bvm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_bo_create(c.dev, M2, GVM_MEM_VRAM, NULL, &bo));
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(bvm, NULL, &op, 1, NULL, 0));
	ASSERT_OK(gvm_kernel_fill(&k, va, M2, 3));
	ASSERT_OK(gvm_exec(q, &k, &s, 1));		/* the BO's use */
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	gvm_fence_put(f);

	p = svmt_map(7 * M2, M2);
	for (unsigned int i = 0; i < 7; i++)
		r[i] = p + i * M2;
	gpu_fill(v, p, 6 * M2, 5);			/* A..F */
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);
	gpu_fill(v, r[6], M2, 5);			/* G */
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	ASSERT_TRUE(resident(&c, r[0], M2));
	ASSERT_EQ(svmt_stats(v->vm).dev_svm_evictions, 0);

	/* The BO back (its exec waits, SVM gives way): A goes. */
	ASSERT_OK(gvm_exec(q, &k, &s, 1));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);		/* no error */
	gvm_fence_put(f);
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);
	ASSERT_FALSE(resident(&c, r[0], M2));
	ASSERT_EQ(svmt_stats(v->vm).dev_svm_evictions, 1);

	/* A again: B, used before the BO, goes; the BO stays. */
	ASSERT_EQ(gpu_sum(v, r[0], M2), W(5) * (M2 / 8));
	ASSERT_TRUE(resident(&c, r[0], M2));
	ASSERT_FALSE(resident(&c, r[1], M2));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);
	ASSERT_EQ(svmt_stats(v->vm).dev_svm_evictions, 2);
	ASSERT_EQ(gpu_sum(v, p, 7 * M2), W(5) * (7 * M2 / 8));

	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(bvm));
	gvm_bo_put(bo);
	svmt_unmap(p, 7 * M2);
	teardown(&c, 1);
}

/* ---- the anti-ping-pong timeslice ---------------------------------------- */

/*
 * Ranges A, B, C fill an 8 MiB VRAM; A and B are old, C young (migrated
 * within the timeslice), and A and B were used after C, so C heads the
 * LRU.  D's migration evicts A, the least recently used old one, not C;
 * with a timeslice of 0, plain LRU order evicts C.
 */
static void timeslice(bool spare_young)
{
	struct vmctx *v;
	uint8_t *p, *a, *b, *cc, *d;
	struct ctx c;

	setup(&c, M8, 1);
	v = &c.v[0];
	gvm__svm_policy.evict_timeslice_ns = spare_young ? SEC : 0;
	p = svmt_map(4 * M2, M2);
	a = p;
	b = p + M2;
	cc = p + 2 * M2;
	d = p + 3 * M2;
	gpu_fill(v, a, M2, 1);
	gpu_fill(v, b, M2, 2);
	gvm__svm_policy.clock_skew_ns += 2 * SEC;	/* A, B grow old */
	gpu_fill(v, cc, M2, 3);
	prefetch(v, a, 2 * M2);		/* a use of A and B: LRU C, A, B */
	ASSERT_TRUE(resident(&c, a, M2) && resident(&c, b, M2) &&
		    resident(&c, cc, M2));
	ASSERT_EQ(svmt_stats(v->vm).svm_evictions, 0);
	gpu_fill(v, d, M2, 4);
	ASSERT_EQ(svmt_stats(v->vm).svm_evictions, 1);
	ASSERT_EQ(svmt_stats(v->vm).svm_bytes_evicted, M2);
	ASSERT_TRUE(resident(&c, d, M2));
	ASSERT_TRUE(resident(&c, b, M2));
	ASSERT_EQ(resident(&c, a, M2), !spare_young);
	ASSERT_EQ(resident(&c, cc, M2), spare_young);
	ASSERT_EQ(gpu_sum(v, p, 4 * M2), (W(1) + W(2) + W(3) + W(4)) *
					 (M2 / 8));
	svmt_unmap(p, 4 * M2);
	teardown(&c, 1);
}

TEST(timeslice_spares_the_young_allocation)
{
	timeslice(true);
}

TEST(timeslice_zero_is_plain_lru)
{
	timeslice(false);
}

/*
 * Every allocation in VRAM is young: the timeslice spares none of them
 * when nothing else can be evicted (the migration succeeds).
 */
TEST(young_allocations_go_when_nothing_else_can)
{
	struct vmctx *v;
	uint8_t *p;
	struct ctx c;

	setup(&c, M8, 1);
	v = &c.v[0];
	gvm__svm_policy.evict_timeslice_ns = 3600 * SEC;
	p = svmt_map(5 * M2, M2);
	gpu_fill(v, p, 5 * M2, 9);
	ASSERT_EQ(svmt_stats(v->vm).svm_migrations, 5);
	ASSERT_EQ(svmt_stats(v->vm).svm_capacity_fallbacks, 0);
	ASSERT_GE(svmt_stats(v->vm).svm_evictions, 2);
	ASSERT_EQ(gpu_sum(v, p, 5 * M2), W(9) * (5 * M2 / 8));
	svmt_unmap(p, 5 * M2);
	teardown(&c, 1);
}

/* ---- thrashing ------------------------------------------------------------ */

/*
 * Two ranges touched in turn by the CPU and the GPU, 20 times each: each
 * GPU touch after a CPU touch migrates the range again, until it has moved
 * more than thrash_migrations (3) times within the window: then it is
 * pinned to system memory and the GPU reaches it there.  The number of
 * migrations is bounded (4 per range) and the data right at every step;
 * once the cool-down passed (the policy clock moved on), it migrates again.
 */
TEST(thrashing_ranges_are_pinned_then_let_go)
{
	const unsigned int steps = 20;
	struct gvm_vm_stats st;
	struct vmctx *v;
	uint64_t *r[2];
	uint8_t *p;
	struct ctx c;

	setup(&c, M16, 1);
	v = &c.v[0];
	gvm__svm_policy.thrash_migrations = 3;
	gvm__svm_policy.thrash_window_ns = 3600 * SEC;
	gvm__svm_policy.thrash_cooldown_ns = 3600 * SEC;
	p = svmt_map(2 * M2, M2);
	r[0] = (uint64_t *)p;
	r[1] = (uint64_t *)(p + M2);
	for (unsigned int s = 0; s < steps; s++) {
		for (unsigned int k = 0; k < 2; k++) {
			uint64_t sum = 0;

			for (uint64_t i = 0; i < M2 / 8; i++) {
				r[k][i] = cpu_word(i, s * 2 + k);
				sum += r[k][i];
			}
			ASSERT_EQ(gpu_sum(v, r[k], M2), sum);
		}
	}
	st = svmt_stats(v->vm);
	printf("%llu migrations, %llu pins, %llu back\n",
	       (unsigned long long)st.svm_migrations,
	       (unsigned long long)st.svm_thrash_pins,
	       (unsigned long long)st.dev_svm_to_system);
	ASSERT_EQ(st.svm_thrash_pins, 2);
	ASSERT_EQ(st.svm_migrations, 2 * 4);
	ASSERT_FALSE(resident(&c, r[0], M2));
	ASSERT_FALSE(resident(&c, r[1], M2));

	/* The cool-down passes: allowed again (at the next placement: a
	   prefetch here, the ranges are bound in system memory and do not
	   fault), with a fresh count. */
	gvm__svm_policy.clock_skew_ns += 3601 * SEC;
	prefetch(v, p, 2 * M2);
	gpu_fill(v, p, 2 * M2, 6);
	ASSERT_EQ(svmt_stats(v->vm).svm_migrations, 2 * 4 + 2);
	ASSERT_TRUE(resident(&c, r[0], M2));
	ASSERT_EQ(svmt_stats(v->vm).svm_thrash_pins, 2);
	for (uint64_t i = 0; i < 2 * M2 / 8; i++)
		if (((uint64_t *)p)[i] != W(6))
			ASSERT_EQ(((uint64_t *)p)[i], W(6));
	svmt_unmap(p, 2 * M2);
	teardown(&c, 1);
}

/* A window shorter than the ping-pong: no pin, every touch migrates. */
TEST(migrations_spread_over_windows_are_not_thrashing)
{
	struct vmctx *v;
	uint64_t *r;
	struct ctx c;

	setup(&c, M16, 1);
	v = &c.v[0];
	gvm__svm_policy.thrash_migrations = 3;
	gvm__svm_policy.thrash_window_ns = SEC;
	r = svmt_map(M2, M2);
	for (unsigned int s = 0; s < 10; s++) {
		r[0] = s;
		ASSERT_EQ(gpu_sum(v, r, 8), s);
		gvm__svm_policy.clock_skew_ns += 2 * SEC;
	}
	ASSERT_EQ(svmt_stats(v->vm).svm_migrations, 10);
	ASSERT_EQ(svmt_stats(v->vm).svm_thrash_pins, 0);
	svmt_unmap(r, M2);
	teardown(&c, 1);
}

/* ---- capacity is not a failure -------------------------------------------- */

/*
 * No VRAM for SVM at all (the headroom knob takes it all): the fault is
 * serviced in system memory and counted as a capacity fallback, not a
 * failure; once VRAM is available the range migrates (a prefetch here).
 */
TEST(capacity_fallback_is_not_permanent)
{
	struct vmctx *v;
	uint8_t *p;
	struct ctx c;

	setup(&c, M8, 1);
	v = &c.v[0];
	gvm__svm_policy.vram_headroom_div = 1;
	p = svmt_map(M2, M2);
	gpu_fill(v, p, M2, 8);
	ASSERT_EQ(svmt_stats(v->vm).svm_migrations, 0);
	ASSERT_EQ(svmt_stats(v->vm).svm_capacity_fallbacks, 1);
	ASSERT_EQ(svmt_stats(v->vm).svm_migration_failures, 0);
	ASSERT_FALSE(resident(&c, p, M2));
	gvm__svm_policy.vram_headroom_div = GVM_SVM_VRAM_HEADROOM_DIV;
	prefetch(v, p, M2);
	ASSERT_EQ(svmt_stats(v->vm).svm_migrations, 1);
	ASSERT_TRUE(resident(&c, p, M2));
	ASSERT_EQ(gpu_sum(v, p, M2), W(8) * (M2 / 8));
	svmt_unmap(p, M2);
	teardown(&c, 1);
}

/*
 * A VM goes while its ranges are resident and on the LRU; another VM's
 * migrations then evict them (the mm still holds the data) and the data
 * comes back right.
 */
TEST(eviction_of_a_destroyed_vms_memory)
{
	struct gvm_vm_stats st;
	uint8_t *p, *q;
	struct ctx c;

	setup(&c, M8, 2);
	p = svmt_map(3 * M2, M2);
	q = svmt_map(3 * M2, M2);
	gpu_fill(&c.v[0], p, 3 * M2, 11);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 3 * M2);
	vm_teardown(&c.v[0]);
	gpu_fill(&c.v[1], q, 3 * M2, 12);
	st = svmt_stats(c.v[1].vm);
	ASSERT_EQ(st.svm_migrations, 3);
	ASSERT_EQ(st.svm_evictions, 3);
	for (uint64_t i = 0; i < 3 * M2 / 8; i++)
		if (((uint64_t *)p)[i] != W(11))
			ASSERT_EQ(((uint64_t *)p)[i], W(11));
	ASSERT_EQ(gpu_sum(&c.v[1], q, 3 * M2), W(12) * (3 * M2 / 8));
	svmt_unmap(p, 3 * M2);
	svmt_unmap(q, 3 * M2);
	vm_teardown(&c.v[1]);
	gvm_device_put(c.dev);
	gvm_mm_put(c.mm);
	gvm__svm_policy_reset();
}

/*
 * The mm goes (its last reference) while SVM memory of it is on the
 * device's LRU: its teardown takes every such allocation off the LRU
 * (devmem op unused) and the VRAM comes back; the device, which outlives
 * the mm here, is left with an empty SVM LRU.
 */
TEST(mm_teardown_takes_its_memory_off_the_lru)
{
	uint64_t free0;
	uint8_t *p;
	struct ctx c;

	setup(&c, M8, 1);
	free0 = vram_free(c.dev);
	p = svmt_map(2 * M2, M2);
	gpu_fill(&c.v[0], p, 2 * M2, 13);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 2 * M2);
	gvm__mutex_lock(&c.dev->vram_lock);
	ASSERT_FALSE(gvm_list_empty(&c.dev->svm_lru));
	gvm__mutex_unlock(&c.dev->vram_lock);
	vm_teardown(&c.v[0]);
	gvm_mm_put(c.mm);		/* the last reference: data dropped */
	gvm__mutex_lock(&c.dev->vram_lock);
	ASSERT_TRUE(gvm_list_empty(&c.dev->svm_lru));
	gvm__mutex_unlock(&c.dev->vram_lock);
	ASSERT_GE(vram_free(c.dev), free0);
	svmt_unmap(p, 2 * M2);
	gvm_device_put(c.dev);
	gvm__svm_policy_reset();
}
