// SPDX-License-Identifier: MIT
/*
 * The library's own heap (core/alloc.c): sizes and alignment, realloc
 * keeping data, calloc zeroing reused blocks, the live count, ownership
 * (what SVM must never migrate), and concurrent use.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "harness.h"

static int static_word;

TEST(sizes_alignment_and_ownership)
{
	uint64_t live = gvm__alloc_live();
	static const size_t sizes[] = { 1, 15, 16, 17, 100, 128, 129, 4000,
					4096, 70000, 3 << 20 };
	void *p[sizeof(sizes) / sizeof(sizes[0])];
	int on_stack;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		p[i] = gvm__malloc(sizes[i]);
		ASSERT_TRUE(p[i] != NULL);
		ASSERT_EQ((uintptr_t)p[i] % 16, 0);
		memset(p[i], 0xa5, sizes[i]);
		ASSERT_TRUE(gvm__alloc_owns((uintptr_t)p[i], sizes[i]));
	}
	ASSERT_EQ(gvm__alloc_live(), live + sizeof(sizes) / sizeof(sizes[0]));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		gvm__free(p[i]);
	ASSERT_EQ(gvm__alloc_live(), live);
	gvm__free(NULL);
	/* the library's static data is its own too; the stack is not */
	ASSERT_TRUE(gvm__alloc_owns((uintptr_t)&static_word, 4));
	ASSERT_FALSE(gvm__alloc_owns((uintptr_t)&on_stack, 4));
}

TEST(aligned_realloc_and_calloc)
{
	uint8_t *a = gvm__aligned_alloc(65536, 65536), *r;
	uint64_t *c;

	ASSERT_TRUE(a != NULL);
	ASSERT_EQ((uintptr_t)a % 65536, 0);
	memset(a, 1, 65536);
	gvm__free(a);

	r = gvm__malloc(10);
	ASSERT_TRUE(r != NULL);
	memcpy(r, "0123456789", 10);
	r = gvm__realloc(r, 5000);		/* moves */
	ASSERT_TRUE(r != NULL);
	ASSERT_TRUE(!memcmp(r, "0123456789", 10));
	r = gvm__realloc(r, 3);			/* shrinks in place */
	ASSERT_TRUE(!memcmp(r, "012", 3));
	gvm__free(r);

	/* a reused block comes back zeroed from calloc */
	c = gvm__malloc(64);
	memset(c, 0xff, 64);
	gvm__free(c);
	c = gvm__calloc(8, 8);
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(c[i], 0);
	gvm__free(c);
	ASSERT_TRUE(gvm__calloc(SIZE_MAX / 2, 4) == NULL);	/* overflow */
}

static void *churn(void *arg)
{
	void *slots[64] = { 0 };
	unsigned int seed = (unsigned int)(uintptr_t)arg;

	for (int i = 0; i < 20000; i++) {
		unsigned int k = rand_r(&seed) % 64;

		gvm__free(slots[k]);
		slots[k] = gvm__malloc(1 + rand_r(&seed) % 600);
		if (slots[k])
			memset(slots[k], (int)k, 1);
	}
	for (int k = 0; k < 64; k++)
		gvm__free(slots[k]);
	return NULL;
}

TEST(threads_churn)
{
	uint64_t live = gvm__alloc_live();
	pthread_t t[4];

	for (uintptr_t i = 0; i < 4; i++)
		ASSERT_OK(pthread_create(&t[i], NULL, churn, (void *)(i + 1)));
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ASSERT_EQ(gvm__alloc_live(), live);
}
