// SPDX-License-Identifier: MIT
/*
 * gvm__sort (core/sort.c) against qsort() on random arrays (seed printed),
 * and the reason it exists: it takes nothing from the C library's heap,
 * which is the application's (core/alloc.c), where glibc's qsort() does;
 * so does the parser of /proc/self/maps (mm/maps.c), which runs on the
 * fault-servicing thread.  Counted by a malloc() of this executable's
 * own in front of glibc's (not under a sanitizer, which has its own).
 */
#include "core/sort.h"
#include "mm/mm.h"

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
