// SPDX-License-Identifier: MIT
/*
 * gvm__sort (core/sort.c) against qsort() on random arrays (seed printed),
 * and the reason it exists: it takes nothing from the C library's heap,
 * which is the application's (core/alloc.c), where glibc's qsort() does;
 * so does the parser of /proc/self/maps (mm/maps.c), which runs on the
 * fault-servicing thread, and so do the sorts of an exec's revalidation
 * (a BO's mappings rebound, userptrs repinned; the LR rebind worker runs
 * the same code on its thread).  Counted by a malloc() of this
 * executable's own in front of glibc's (not under a sanitizer, which has
 * its own).
 */
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "core/sort.h"
#include "mm/mm.h"
#include "vm/bo.h"

#include "harness.h"

#if !UNDER_ASAN && !UNDER_TSAN
#define COUNT_MALLOC 1
extern void *__libc_malloc(size_t n);
static unsigned long mallocs;		/* atomic: calls so far */

__attribute__((visibility("default"))) void *malloc(size_t n)
{
	__atomic_fetch_add(&mallocs, 1, __ATOMIC_RELAXED);
	return __libc_malloc(n);
}
#endif

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct wide {
	uint64_t key;
	uint32_t tag;		/* which element it was: a permutation */
	uint8_t pad[5];		/* 17 bytes: words, then bytes swapped */
} __attribute__((packed));

static int cmp_wide(const void *a, const void *b)
{
	const struct wide *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

TEST(sorts_as_qsort_does)
{
	struct gvm_rng rng = { gvm_test_seed() };
	static uint64_t a[1100], b[1100];

	for (int round = 0; round < 300; round++) {
		size_t n = (size_t)gvm_rng_below(&rng, round < 100 ? 8 : 1100);
		uint64_t range = 1 + gvm_rng_below(&rng, 2000);

		for (size_t i = 0; i < n; i++)
			a[i] = b[i] = gvm_rng_below(&rng, range); /* dups too */
		gvm__sort(a, n, sizeof(a[0]), cmp_u64);
		qsort(b, n, sizeof(b[0]), cmp_u64);
		ASSERT_TRUE(!n || !memcmp(a, b, n * sizeof(a[0])));
	}
}

/*
 * Inputs a quicksort gets wrong or slow when it is wrong: in order (the
 * one-pass check), reversed, all equal, organ pipe, sawtooth, in order
 * but one, median-of-three killers; each against qsort() at sizes around
 * the insertion-sort cut-off and larger.
 */
TEST(sorts_patterned_inputs_as_qsort_does)
{
	static const size_t sizes[] = { 2, 3, 11, 12, 13, 25, 256, 1000, 4097 };
	static uint64_t a[4097], b[4097];

	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		size_t n = sizes[si];

		for (int kind = 0; kind < 7; kind++) {
			for (size_t i = 0; i < n; i++) {
				uint64_t v;

				switch (kind) {
				case 0: v = i; break;
				case 1: v = n - i; break;
				case 2: v = 7; break;
				case 3: v = i < n / 2 ? i : n - i; break;
				case 4: v = i % 5; break;
				case 5: v = i == n / 3 ? n : i; break;
				default: v = i % 2 ? i : n + i; break;
				}
				a[i] = b[i] = v;
			}
			gvm__sort(a, n, sizeof(a[0]), cmp_u64);
			qsort(b, n, sizeof(b[0]), cmp_u64);
			ASSERT_TRUE(!memcmp(a, b, n * sizeof(a[0])));
		}
	}
}

TEST(sorts_elements_of_any_size)
{
	struct gvm_rng rng = { gvm_test_seed() };
	static struct wide w[700];
	static bool seen[700];

	for (int round = 0; round < 50; round++) {
		size_t n = (size_t)gvm_rng_below(&rng, 700);

		for (size_t i = 0; i < n; i++) {
			w[i].key = gvm_rng_below(&rng, 100);
			w[i].tag = (uint32_t)i;
			memset(w[i].pad, (int)(w[i].key & 0xff), sizeof(w[i].pad));
			seen[i] = false;
		}
		gvm__sort(w, n, sizeof(w[0]), cmp_wide);
		for (size_t i = 0; i < n; i++) {
			ASSERT_TRUE(!i || w[i - 1].key <= w[i].key);
			ASSERT_TRUE(w[i].tag < n && !seen[w[i].tag]);
			seen[w[i].tag] = true;
			for (size_t j = 0; j < sizeof(w[i].pad); j++)
				ASSERT_EQ(w[i].pad[j], w[i].key & 0xff);
		}
	}
}

TEST(sort_and_maps_parse_take_nothing_from_the_libc_heap)
{
#ifdef COUNT_MALLOC
	static uint64_t a[512];
	struct gvm_mm_vma v;
	unsigned long before;

	for (size_t i = 0; i < 512; i++)
		a[i] = (i * 7919) % 512;
	before = mallocs;
	free(strdup("the counter works"));	/* libc's own call counts */
	ASSERT_TRUE(mallocs > before);
	before = mallocs;
	qsort(a, 512, sizeof(a[0]), cmp_u64);
	printf("glibc's qsort() of 4 KiB: %lu malloc() calls\n",
	       mallocs - before);
	for (size_t i = 0; i < 512; i++)
		a[i] = (i * 7919) % 512;
	before = mallocs;
	gvm__sort(a, 512, sizeof(a[0]), cmp_u64);
	ASSERT_OK(gvm__mm_maps_parse((uintptr_t)a, 0, &v));
	ASSERT_EQ(mallocs, before);
	ASSERT_TRUE(v.start <= (uintptr_t)a && (uintptr_t)a < v.end);
#else
	printf("malloc is the sanitizer's here: not counted\n");
#endif
}

/*
 * The sorts of a rebind (gvm__vm_bo_rebind: the mappings of a moved BO,
 * in address order) and of a userptr revalidation (gvm__userptr_revalidate)
 * run under vm->lock, on the application's thread in an exec and on the
 * LR rebind worker otherwise.  They used glibc's qsort(), which takes a
 * buffer from malloc() for more than 1 KiB: 128 VMAs.  NR_VMAS VMAs of
 * one BO, moved away and back by an exec, and as many userptrs,
 * invalidated and repinned by an exec, take nothing from it.  The exec
 * is run once before, so that what its first run sets up is not counted.
 */
#ifdef COUNT_MALLOC
#define NR_VMAS 256
#define SVA 0x100000000ull
#define SK4 4096ull

static void bind_many(struct gvm_vm *vm, struct gvm_bo *bo, void *cpu)
{
	static struct gvm_bind_op ops[NR_VMAS];

	for (uint64_t i = 0; i < NR_VMAS; i++) {
		/* Every other page: no two VMAs adjacent. */
		ops[i] = (struct gvm_bind_op){ .addr = SVA + 2 * i * SK4,
					       .range = SK4 };
		if (bo) {
			ops[i].op = GVM_BIND_MAP;
			ops[i].bo = bo;
			ops[i].bo_offset = i * SK4;
		} else {
			ops[i].op = GVM_BIND_MAP_USERPTR;
			ops[i].userptr = (uint64_t)(uintptr_t)cpu + i * SK4;
		}
	}
	ASSERT_OK(gvm_vm_bind(vm, NULL, ops, NR_VMAS, NULL, 0));
}
#endif

TEST(rebind_and_userptr_revalidation_take_nothing_from_the_libc_heap)
{
#ifdef COUNT_MALLOC
	struct gvm_vm_stats st;
	struct gvm_device *dev;
	struct gvm_queue *q;
	struct gvm_kernel k;
	struct gvm_vm *vm;
	struct gvm_bo *bo;
	struct gvm_mm *mm;
	unsigned long before;
	uint64_t *cpu;

	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, mm, 0, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_bo_create(dev, NR_VMAS * SK4,
				GVM_MEM_VRAM | GVM_MEM_SYSTEM, vm, &bo));
	cpu = mmap(NULL, NR_VMAS * SK4, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(cpu != MAP_FAILED);
	bind_many(vm, bo, NULL);
	ASSERT_OK(gvm_kernel_store_dword(&k, SVA + 2 * (NR_VMAS - 1) * SK4,
					 7, 64));
	ASSERT_OK(gvm_test_run(q, &k));

	/* The BO: to system memory and, by the exec, back and rebound. */
	gvm_resv_lock(bo->resv, NULL);
	ASSERT_OK(gvm__bo_move(bo, GVM_MEM_SYSTEM, GVM_EVICT_NONE));
	gvm_resv_unlock(bo->resv);
	before = mallocs;
	ASSERT_OK(gvm_test_run(q, &k));
	ASSERT_EQ(mallocs, before);
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);

	/* The userptrs: invalidated, and repinned by the exec. */
	ASSERT_OK(gvm_vm_bind(vm, NULL, &(struct gvm_bind_op){
		.op = GVM_BIND_UNMAP, .addr = SVA,
		.range = 2 * NR_VMAS * SK4 }, 1, NULL, 0));
	bind_many(vm, NULL, cpu);
	ASSERT_OK(gvm_test_run(q, &k));
	ASSERT_EQ(cpu[(NR_VMAS - 1) * SK4 / 8], 7);
	ASSERT_OK(gvm_mm_invalidate(mm, (uint64_t)(uintptr_t)cpu,
				    NR_VMAS * SK4));
	before = mallocs;
	ASSERT_OK(gvm_test_run(q, &k));
	ASSERT_EQ(mallocs, before);
	ASSERT_OK(gvm_vm_stats(vm, &st));
	ASSERT_EQ(st.userptr_repins, NR_VMAS);

	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_bo_put(bo);
	gvm_device_put(dev);
	gvm_mm_put(mm);
	munmap(cpu, NR_VMAS * SK4);
#else
	printf("malloc is the sanitizer's here: not counted\n");
#endif
}
