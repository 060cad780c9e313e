// SPDX-License-Identifier: MIT
/*
 * The library's own heap (core/alloc.c): sizes and alignment, realloc
 * keeping data, calloc zeroing reused blocks, the live count, ownership
 * (what SVM must never migrate), concurrent use, and the per-thread
 * caches: blocks freed by another thread, caches given back at thread
 * exit.
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
	/* the library's static data is its own too */
	ASSERT_TRUE(gvm__alloc_owns((uintptr_t)&static_word, 4));
	/* This thread ran library code: its stack is kept in place too
	   (core/stack.c; test_migrate shows a stack before and after). */
	ASSERT_TRUE(gvm__alloc_owns((uintptr_t)&on_stack, 4));
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

/* Allocates and frees a burst of small blocks: fills the thread's cache. */
static void *burst(void *arg)
{
	void *p[200];

	(void)arg;
	for (int i = 0; i < 200; i++) {
		p[i] = gvm__malloc(16 + (size_t)(i % 4) * 48);
		if (!p[i])
			return (void *)1;
	}
	for (int i = 0; i < 200; i++)
		gvm__free(p[i]);
	return NULL;
}

TEST(thread_exit_gives_its_cache_back)
{
	uint64_t live = gvm__alloc_live(), carved;
	pthread_t t;
	void *ret;

	/* Warm up: the shared lists get what one burst needs. */
	for (int i = 0; i < 3; i++) {
		ASSERT_OK(pthread_create(&t, NULL, burst, NULL));
		pthread_join(t, &ret);
		ASSERT_TRUE(ret == NULL);
	}
	carved = gvm__alloc_carved();
	/* Without the exit hand-back each thread would strand its cache. */
	for (int i = 0; i < 300; i++) {
		ASSERT_OK(pthread_create(&t, NULL, burst, NULL));
		pthread_join(t, &ret);
		ASSERT_TRUE(ret == NULL);
	}
	ASSERT_EQ(gvm__alloc_carved(), carved);
	ASSERT_EQ(gvm__alloc_live(), live);
}

struct handoff {
	void *p[100];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stage;		/* 1: allocated; 2: freed */
};

static void *allocator(void *arg)
{
	struct handoff *h = arg;

	for (int i = 0; i < 100; i++)
		h->p[i] = gvm__malloc(64);
	pthread_mutex_lock(&h->lock);
	h->stage = 1;
	pthread_cond_broadcast(&h->cond);
	while (h->stage != 2)	/* stay alive: its count is live */
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

TEST(blocks_freed_by_another_thread)
{
	struct handoff h = { .lock = PTHREAD_MUTEX_INITIALIZER,
			     .cond = PTHREAD_COND_INITIALIZER };
	uint64_t live = gvm__alloc_live();
	pthread_t t;

	ASSERT_OK(pthread_create(&t, NULL, allocator, &h));
	pthread_mutex_lock(&h.lock);
	while (h.stage != 1)
		pthread_cond_wait(&h.cond, &h.lock);
	pthread_mutex_unlock(&h.lock);
	for (int i = 0; i < 100; i++)
		ASSERT_TRUE(h.p[i] != NULL);
	ASSERT_EQ(gvm__alloc_live(), live + 100);
	for (int i = 0; i < 100; i++)
		gvm__free(h.p[i]);	/* into this thread's cache */
	/* the allocator's count is +100, this thread's -100 */
	ASSERT_EQ(gvm__alloc_live(), live);
	pthread_mutex_lock(&h.lock);
	h.stage = 2;
	pthread_cond_broadcast(&h.cond);
	pthread_mutex_unlock(&h.lock);
	pthread_join(t, NULL);
	ASSERT_EQ(gvm__alloc_live(), live);
}

/*
 * One thread allocates what another frees (a bind queue's submitter and
 * its workers): the freeing thread's cache gives the blocks back in
 * batches, up to the slots a class has and then one by one, and the
 * allocating thread refills from both.  Every block is reused (the heap
 * does not grow after the first round), none twice at once.
 */
#define PC_BLOCKS 5000	/* 64-byte blocks: ~150 batches, past the slots */

static void *free_all(void *arg)
{
	void **p = arg;

	for (int i = 0; i < PC_BLOCKS; i++)
		gvm__free(p[i]);
	return NULL;
}

TEST(blocks_one_thread_frees_go_back_to_the_one_allocating)
{
	static void *p[PC_BLOCKS];
	uint64_t live = gvm__alloc_live(), carved = 0;
	pthread_t t;

	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < PC_BLOCKS; i++) {
			p[i] = gvm__malloc(40);
			ASSERT_TRUE(p[i] != NULL);
			memset(p[i], i & 0xff, 40);
		}
		for (int i = 0; i < PC_BLOCKS; i++) {
			uint8_t *b = p[i];

			ASSERT_TRUE(b[0] == (i & 0xff) && b[39] == (i & 0xff));
		}
		/* (round 0's freeing thread carves its cache's record,
		   which the next threads reuse) */
		if (round == 1)
			carved = gvm__alloc_carved();
		ASSERT_TRUE(round < 1 || gvm__alloc_carved() == carved);
		ASSERT_OK(pthread_create(&t, NULL, free_all, p));
		pthread_join(t, NULL);
		ASSERT_EQ(gvm__alloc_live(), live);
	}
}
