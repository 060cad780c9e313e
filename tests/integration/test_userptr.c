// SPDX-License-Identifier: MIT
/*
 * Userptr on real process memory, in the style of IGT's xe_exec_*
 * userptr / userptr-invalidate tests: the GPU maps ordinary mmap() memory,
 * the application unmaps, remaps, madvises and forks behind its back, and
 * the GPU's results must always match the CPU's view of memory.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "mmhold.h"
#include "core/inject.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/bind.h"
#include "vm/pt_update.h"
#include "vm/vm.h"

#define K4 4096ull
#define VA 0x20000000ull

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static void setup(struct ctx *c)
{
	ASSERT_OK(gvm_mm_self(&c->mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, c->mm, 0, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
}

static void teardown(struct ctx *c)
{
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
	gvm_mm_put(c->mm);
}

static int bind_userptr(struct ctx *c, uint64_t va, void *cpu, uint64_t len,
			uint32_t flags)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .flags = flags,
				  .addr = va, .range = len,
				  .userptr = (uint64_t)(uintptr_t)cpu };

	return gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0);
}

static int run(struct ctx *c, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	int st = gvm_exec(c->q, k, &s, 1);

	if (st)
		return st;
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return st < 0 ? st : 0;
}

static int store(struct ctx *c, uint64_t va, uint64_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_store_dword(&k, va, v, 64));
	return run(c, &k);
}

static void *map_pages(size_t n)
{
	void *p = mmap(NULL, n * K4, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(p != MAP_FAILED);
	return p;
}

TEST(store_to_malloc_memory)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(4);
	p[0] = 1;
	ASSERT_OK(bind_userptr(&c, VA, p, 4 * K4, 0));
	for (uint64_t i = 0; i < 4; i++)
		ASSERT_OK(store(&c, VA + i * K4 + 8, 100 + i));
	for (uint64_t i = 0; i < 4; i++)
		ASSERT_EQ(p[i * K4 / 8 + 1], 100 + i);
	ASSERT_EQ(p[0], 1);
	teardown(&c);
	munmap(p, 4 * K4);
}

static void bind_op(struct ctx *c, uint32_t op, uint32_t flags, uint64_t va,
		    uint64_t range, struct gvm_bo *bo)
{
	struct gvm_bind_op b = { .op = op, .flags = flags, .addr = va,
				 .range = range, .bo = bo };

	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &b, 1, NULL, 0));
}

/*
 * gvm_vm_peek / gvm_vm_poke through every kind of mapping: a userptr, a
 * VRAM BO (also at a canonical high address), a NULL range and a system
 * BO, side by side; unaligned spans across their borders; holes and an
 * unmapped userptr page are -EFAULT.
 */
TEST(peek_poke_through_mappings)
{
	const uint64_t high = 0xffffc00000000000ull;
	uint8_t want[12 * K4], got[12 * K4], zero[16] = { 0 };
	struct gvm_bo *a, *b;
	uint8_t *pa, *pb, *p;
	struct ctx c;
	size_t i;

	setup(&c);
	p = map_pages(4);
	ASSERT_OK(gvm_bo_create(c.dev, 4 * K4, GVM_MEM_VRAM, NULL, &a));
	ASSERT_OK(gvm_bo_create(c.dev, 2 * K4, GVM_MEM_SYSTEM, NULL, &b));
	ASSERT_OK(gvm_bo_map(a, (void **)&pa));
	ASSERT_OK(gvm_bo_map(b, (void **)&pb));
	ASSERT_EQ(gvm_bo_region(a), GVM_MEM_VRAM);
	ASSERT_OK(bind_userptr(&c, VA, p, 4 * K4, 0));
	bind_op(&c, GVM_BIND_MAP, 0, VA + 4 * K4, 4 * K4, a);
	bind_op(&c, GVM_BIND_MAP, GVM_BIND_NULL, VA + 8 * K4, 2 * K4, NULL);
	bind_op(&c, GVM_BIND_MAP, GVM_BIND_READONLY, VA + 10 * K4, 2 * K4, b);
	bind_op(&c, GVM_BIND_MAP, 0, high, 4 * K4, a);
	for (i = 0; i < 4 * K4; i++)
		p[i] = (uint8_t)(i * 7 + 1);
	for (i = 0; i < 2 * K4; i++)
		pb[i] = (uint8_t)(i * 5 + 3);
	/* What the GPU wrote is what peek reads. */
	ASSERT_OK(store(&c, VA + 8, 0x1111));
	ASSERT_OK(store(&c, VA + 5 * K4 + 16, 0x2222));
	ASSERT_OK(store(&c, high + 24, 0x3333));

	memcpy(want, p, 4 * K4);
	memcpy(want + 4 * K4, pa, 4 * K4);
	memset(want + 8 * K4, 0, 2 * K4);
	memcpy(want + 10 * K4, pb, 2 * K4);
	ASSERT_OK(gvm_vm_peek(c.vm, VA, got, sizeof(got)));
	ASSERT_OK(memcmp(got, want, sizeof(got)));
	ASSERT_EQ(((uint64_t *)got)[1], 0x1111);
	ASSERT_EQ(((uint64_t *)got)[(5 * K4 + 16) / 8], 0x2222);
	ASSERT_OK(gvm_vm_peek(c.vm, high + 24, got, 8));
	ASSERT_EQ(*(uint64_t *)got, 0x3333);
	ASSERT_EQ(((uint64_t *)pa)[3], 0x3333);

	/* Unaligned pokes across borders; the NULL range drops writes. */
	ASSERT_OK(gvm_vm_poke(c.vm, VA + 4 * K4 - 3, "abcdefghij", 10));
	ASSERT_OK(memcmp(p + 4 * K4 - 3, "abc", 3));
	ASSERT_OK(memcmp(pa, "defghij", 7));
	ASSERT_OK(gvm_vm_poke(c.vm, VA + 10 * K4 - 2, "WXYZ", 4));
	ASSERT_OK(memcmp(pb, "YZ", 2));	/* READONLY: a debugger writes */
	ASSERT_OK(gvm_vm_peek(c.vm, VA + 10 * K4 - 4, got, 6));
	ASSERT_OK(memcmp(got, "\0\0\0\0YZ", 6));
	ASSERT_OK(gvm_vm_peek(c.vm, high, got, 4));
	ASSERT_OK(memcmp(got, "defg", 4));

	/* Holes: nothing copied, nothing written. */
	memcpy(want, pb + 2 * K4 - 8, 8);
	ASSERT_EQ(gvm_vm_peek(c.vm, VA + 12 * K4 - 8, got, 16), -EFAULT);
	ASSERT_EQ(gvm_vm_poke(c.vm, VA + 12 * K4 - 8, zero, 16), -EFAULT);
	ASSERT_OK(memcmp(pb + 2 * K4 - 8, want, 8));
	ASSERT_EQ(gvm_vm_poke(c.vm, VA - 8, zero, 16), -EFAULT);
	ASSERT_EQ(gvm_vm_peek(c.vm, 0, got, 8), -EFAULT);
	ASSERT_OK(memcmp(pa, "defghij", 7));

	/* Bad arguments. */
	ASSERT_EQ(gvm_vm_peek(c.vm, VA, got, 0), -EINVAL);
	ASSERT_EQ(gvm_vm_peek(c.vm, VA, NULL, 8), -EINVAL);
	ASSERT_EQ(gvm_vm_peek(NULL, VA, got, 8), -EINVAL);
	ASSERT_EQ(gvm_vm_peek(c.vm, ~0ull - 3, got, 8), -EINVAL);
	ASSERT_EQ(gvm_vm_peek(c.vm, 1ull << 48, got, 8), -EINVAL);
	/* A buffer the CPU cannot reach: -EFAULT, as read(2), no crash. */
	{
		uint8_t *none = mmap(NULL, K4, PROT_NONE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		ASSERT_TRUE(none != MAP_FAILED);
		ASSERT_EQ(gvm_vm_peek(c.vm, VA + 4 * K4, none, 8), -EFAULT);
		ASSERT_EQ(gvm_vm_poke(c.vm, VA + 4 * K4, none, 8), -EFAULT);
		ASSERT_OK(memcmp(pa, "defghij", 7));	/* nothing written */
		munmap(none, K4);
	}

	/* A userptr page the CPU unmapped: -EFAULT, not a crash. */
	ASSERT_EQ(munmap(p + 3 * K4, K4), 0);
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_EQ(gvm_vm_peek(c.vm, VA + 3 * K4, got, 8), -EFAULT);
	ASSERT_EQ(gvm_vm_poke(c.vm, VA + 3 * K4, zero, 8), -EFAULT);
	ASSERT_OK(gvm_vm_peek(c.vm, VA + 2 * K4, got, 8));
	ASSERT_OK(memcmp(got, p + 2 * K4, 8));

	teardown(&c);
	gvm_bo_put(a);
	gvm_bo_put(b);
	munmap(p, 3 * K4);
}

/*
 * The peek/poke layout across several bounce chunks (peek.c): a VRAM BO
 * of 1.25 MiB, a NULL range, GVM_VM_PEEK_CPU_PIECES + 36 one-page
 * userptrs (the CPU pages in reverse order), a 1 MiB userptr and a system
 * BO; about 3.4 MiB in all, so chunks end at GVM_VM_PEEK_CHUNK bytes and
 * at the CPU-piece limit.
 */
#define CH_BO_A (1280ull << 10)
#define CH_NULL (256ull << 10)
#define CH_PAGES (GVM_VM_PEEK_CPU_PIECES + 36)
#define CH_U (1ull << 20)
#define CH_BO_B (512ull << 10)
#define CH_SIZE (CH_BO_A + CH_NULL + CH_PAGES * K4 + CH_U + CH_BO_B)

struct chunked {
	struct gvm_bo *a, *b;
	uint8_t *pa, *pb;	/* the BOs' CPU views */
	uint8_t *pages;		/* CH_PAGES pages, mapped backwards */
	uint8_t *u;		/* CH_U bytes */
};

static void chunked_setup(struct ctx *c, struct chunked *m)
{
	uint64_t va = VA;

	ASSERT_OK(gvm_bo_create(c->dev, CH_BO_A, GVM_MEM_VRAM, NULL, &m->a));
	ASSERT_OK(gvm_bo_create(c->dev, CH_BO_B, GVM_MEM_SYSTEM, NULL, &m->b));
	ASSERT_OK(gvm_bo_map(m->a, (void **)&m->pa));
	ASSERT_OK(gvm_bo_map(m->b, (void **)&m->pb));
	m->pages = map_pages(CH_PAGES);
	m->u = map_pages(CH_U / K4);
	bind_op(c, GVM_BIND_MAP, 0, va, CH_BO_A, m->a);
	va += CH_BO_A;
	bind_op(c, GVM_BIND_MAP, GVM_BIND_NULL, va, CH_NULL, NULL);
	va += CH_NULL;
	for (uint64_t i = 0; i < CH_PAGES; i++, va += K4)
		ASSERT_OK(bind_userptr(c, va,
				       m->pages + (CH_PAGES - 1 - i) * K4, K4,
				       0));
	ASSERT_OK(bind_userptr(c, va, m->u, CH_U, 0));
	va += CH_U;
	bind_op(c, GVM_BIND_MAP, 0, va, CH_BO_B, m->b);
}

static void chunked_teardown(struct chunked *m)
{
	gvm_bo_put(m->a);
	gvm_bo_put(m->b);
	munmap(m->pages, CH_PAGES * K4);
	munmap(m->u, CH_U);
}

/* What [VA, VA + CH_SIZE) holds, read from the CPU side, into @ref. */
static void chunked_read(const struct chunked *m, uint8_t *ref)
{
	memcpy(ref, m->pa, CH_BO_A);
	ref += CH_BO_A;
	memset(ref, 0, CH_NULL);
	ref += CH_NULL;
	for (uint64_t i = 0; i < CH_PAGES; i++, ref += K4)
		memcpy(ref, m->pages + (CH_PAGES - 1 - i) * K4, K4);
	memcpy(ref, m->u, CH_U);
	ref += CH_U;
	memcpy(ref, m->pb, CH_BO_B);
}

static void fill_random(struct gvm_rng *r, uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		p[i] = (uint8_t)gvm_rng_next(r);
}

/*
 * An access spanning several chunks, with BO, NULL and userptr pieces,
 * against a reference read from the CPU side: unaligned peeks and pokes
 * of the whole layout and of spans around every chunk boundary (seeded:
 * GVM_TEST_SEED).
 */
TEST(peek_poke_across_chunks)
{
	uint8_t *ref = malloc(CH_SIZE), *got = malloc(CH_SIZE);
	uint8_t *src = malloc(CH_SIZE);
	struct gvm_rng r = { gvm_test_seed() };
	struct chunked m;
	struct ctx c;

	ASSERT_TRUE(ref && got && src);
	ASSERT_TRUE(CH_SIZE > 3 * GVM_VM_PEEK_CHUNK);
	setup(&c);
	chunked_setup(&c, &m);
	fill_random(&r, m.pa, CH_BO_A);
	fill_random(&r, m.pb, CH_BO_B);
	fill_random(&r, m.pages, CH_PAGES * K4);
	fill_random(&r, m.u, CH_U);

	/* The whole layout, and unaligned ends. */
	chunked_read(&m, ref);
	ASSERT_OK(gvm_vm_peek(c.vm, VA, got, CH_SIZE));
	ASSERT_OK(memcmp(got, ref, CH_SIZE));
	memset(got, 0xee, CH_SIZE);
	ASSERT_OK(gvm_vm_peek(c.vm, VA + 5, got, CH_SIZE - 12));
	ASSERT_OK(memcmp(got, ref + 5, CH_SIZE - 12));
	ASSERT_EQ(got[CH_SIZE - 12], 0xee);

	fill_random(&r, src, CH_SIZE);
	ASSERT_OK(gvm_vm_poke(c.vm, VA + 3, src + 3, CH_SIZE - 10));
	memcpy(ref + 3, src + 3, CH_SIZE - 10);
	memset(ref + CH_BO_A, 0, CH_NULL);	/* dropped */
	chunked_read(&m, got);
	ASSERT_OK(memcmp(got, ref, CH_SIZE));
	ASSERT_OK(gvm_vm_peek(c.vm, VA, got, CH_SIZE));
	ASSERT_OK(memcmp(got, ref, CH_SIZE));

	/* Spans of 1..3 chunks from random offsets. */
	for (int i = 0; i < 16; i++) {
		uint64_t off = gvm_rng_below(&r, CH_SIZE - 1);
		uint64_t len = 1 + gvm_rng_below(&r, 3 * GVM_VM_PEEK_CHUNK);

		if (len > CH_SIZE - off)
			len = CH_SIZE - off;
		fill_random(&r, src, len);
		ASSERT_OK(gvm_vm_poke(c.vm, VA + off, src, len));
		memcpy(ref + off, src, len);
		memset(ref + CH_BO_A, 0, CH_NULL);
		off = gvm_rng_below(&r, CH_SIZE - 1);
		len = 1 + gvm_rng_below(&r, 3 * GVM_VM_PEEK_CHUNK);
		if (len > CH_SIZE - off)
			len = CH_SIZE - off;
		ASSERT_OK(gvm_vm_peek(c.vm, VA + off, got, len));
		ASSERT_OK(memcmp(got, ref + off, len));
	}
	chunked_read(&m, got);
	ASSERT_OK(memcmp(got, ref, CH_SIZE));

	/* A hole past the first chunk: -EFAULT, nothing copied or written. */
	bind_op(&c, GVM_BIND_UNMAP, 0, VA + CH_SIZE - K4, K4, NULL);
	memset(got, 0xee, CH_SIZE);
	ASSERT_EQ(gvm_vm_peek(c.vm, VA, got, CH_SIZE), -EFAULT);
	ASSERT_EQ(got[0], 0xee);
	ASSERT_EQ(got[CH_SIZE / 2], 0xee);
	fill_random(&r, src, CH_SIZE);
	ASSERT_EQ(gvm_vm_poke(c.vm, VA, src, CH_SIZE), -EFAULT);
	chunked_read(&m, got);
	ASSERT_OK(memcmp(got, ref, CH_SIZE - K4));

	teardown(&c);
	chunked_teardown(&m);
	free(ref);
	free(got);
	free(src);
}

/*
 * A failed allocation in peek or poke (the bounce buffer, from the
 * library's heap, so fault injection reaches it): every allocation of
 * each call failed in turn.  -ENOMEM leaves a peek's buffer untouched; a
 * poke has then written a prefix of the range at most (the chunks before
 * the failing one; with the bounce, the first allocation, nothing).
 */
TEST(peek_poke_allocation_failures)
{
	uint8_t *ref = malloc(CH_SIZE), *got = malloc(CH_SIZE);
	uint8_t *src = malloc(CH_SIZE);
	struct gvm_rng r = { gvm_test_seed() };
	unsigned long calls[2];
	unsigned int failed = 0;
	struct chunked m;
	struct ctx c;

	ASSERT_TRUE(ref && got && src);
	setup(&c);
	chunked_setup(&c, &m);
	fill_random(&r, m.pa, CH_BO_A);
	fill_random(&r, m.pb, CH_BO_B);
	fill_random(&r, m.pages, CH_PAGES * K4);
	fill_random(&r, m.u, CH_U);
	fill_random(&r, src, CH_SIZE);
	ASSERT_OK(gvm_mm_flush(c.mm));

	for (int w = 0; w < 2; w++) {
		gvm__inject_count(true);
		ASSERT_OK(w ? gvm_vm_poke(c.vm, VA, src, CH_SIZE)
			    : gvm_vm_peek(c.vm, VA, got, CH_SIZE));
		gvm__inject_count(false);
		calls[w] = gvm__inject_calls(GVM_INJECT_ALLOC);
		printf("%s: %lu allocations\n", w ? "poke" : "peek",
		       calls[w]);
		ASSERT_GE(calls[w], 1);
	}
	for (unsigned long n = 1; n <= calls[0]; n++) {
		int err;

		chunked_read(&m, ref);
		memset(got, 0xee, CH_SIZE);
		gvm__inject_arm(GVM_INJECT_ALLOC, (long)n, 0);
		err = gvm_vm_peek(c.vm, VA, got, CH_SIZE);
		gvm__inject_disarm(GVM_INJECT_ALLOC);
		if (err) {
			ASSERT_EQ(err, -ENOMEM);
			failed++;
			for (uint64_t i = 0; i < CH_SIZE; i++)
				ASSERT_EQ(got[i], 0xee);
		} else {
			ASSERT_OK(memcmp(got, ref, CH_SIZE));
		}
	}
	for (unsigned long n = 1; n <= calls[1]; n++) {
		uint64_t i = 0;
		int err;

		chunked_read(&m, ref);
		fill_random(&r, src, CH_SIZE);
		memset(src + CH_BO_A, 0, CH_NULL);	/* reads as zeros */
		gvm__inject_arm(GVM_INJECT_ALLOC, (long)n, 0);
		err = gvm_vm_poke(c.vm, VA, src, CH_SIZE);
		gvm__inject_disarm(GVM_INJECT_ALLOC);
		chunked_read(&m, got);
		if (!err) {
			ASSERT_OK(memcmp(got, src, CH_SIZE));
			continue;
		}
		ASSERT_EQ(err, -ENOMEM);
		failed++;
		/* a prefix of the new bytes, then the old ones */
		while (i < CH_SIZE && got[i] == src[i])
			i++;
		ASSERT_OK(memcmp(got + i, ref + i, CH_SIZE - i));
		if (n == 1)
			ASSERT_OK(memcmp(got, ref, CH_SIZE));
	}
	ASSERT_GE(failed, 2);

	teardown(&c);
	chunked_teardown(&m);
	free(ref);
	free(got);
	free(src);
}

TEST(bind_errors)
{
	struct ctx c;
	uint8_t *p, *ro;

	setup(&c);
	p = map_pages(4);
	munmap(p + 2 * K4, K4);			/* a hole */
	ASSERT_EQ(bind_userptr(&c, VA, p, 4 * K4, 0), -EFAULT);
	ASSERT_EQ(bind_userptr(&c, VA, p + 1, K4, 0), -EINVAL);
	ro = mmap(NULL, K4, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(ro != MAP_FAILED);
	ASSERT_EQ(bind_userptr(&c, VA, ro, K4, 0), -EPERM);
	ASSERT_OK(bind_userptr(&c, VA, ro, K4, GVM_BIND_READONLY));
	ASSERT_EQ(store(&c, VA, 1), -EIO);	/* read-only mapping */
	{
		struct gvm_vm_stats st;

		ASSERT_OK(gvm_vm_stats(c.vm, &st));
		ASSERT_EQ(st.vmas, 1);		/* the failed binds left none */
	}
	teardown(&c);
	munmap(p, 2 * K4);
	munmap(p + 3 * K4, K4);
	munmap(ro, K4);
}

TEST(munmap_invalidates)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(4);
	ASSERT_OK(bind_userptr(&c, VA, p, 4 * K4, 0));
	ASSERT_OK(store(&c, VA, 1));
	ASSERT_EQ(p[0], 1);
	munmap(p + K4 / 8 * 2, K4);		/* part of it */
	ASSERT_OK(gvm__mm_sync(c.mm));
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.userptr_invalidations, 1);
	/* The memory is gone: the mapping stays invalid, the GPU faults
	 * (the exec itself does not fail). */
	ASSERT_EQ(store(&c, VA, 2), -EIO);
	ASSERT_EQ(p[0], 1);
	/* Rebinding what is still mapped works (the piece left over the
	 * hole stays invalid). */
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(store(&c, VA + 8, 3));
	ASSERT_EQ(p[1], 3);
	teardown(&c);
	munmap(p, 2 * K4);
	munmap(p + 3 * K4 / 8, K4);
}

TEST(map_fixed_over_is_seen)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p, *q;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(store(&c, VA, 7));
	ASSERT_EQ(p[0], 7);
	q = mmap(p, 2 * K4, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_TRUE(q == p);
	ASSERT_EQ(p[0], 0);			/* new memory */
	ASSERT_OK(gvm__mm_sync(c.mm));
	/* The exec repins the new pages: the GPU writes what the CPU sees. */
	ASSERT_OK(store(&c, VA + 8, 8));
	ASSERT_EQ(p[1], 8);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_GE(st.userptr_invalidations, 1);
	ASSERT_GE(st.userptr_repins, 1);
	teardown(&c);
	munmap(p, 2 * K4);
}

TEST(madvise_dontneed_is_seen)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(store(&c, VA, 5));
	ASSERT_OK(madvise(p, 2 * K4, MADV_DONTNEED));
	ASSERT_EQ(p[0], 0);
	ASSERT_OK(gvm__mm_sync(c.mm));
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.userptr_invalidations, 1);
	ASSERT_OK(store(&c, VA + K4, 6));
	ASSERT_EQ(p[K4 / 8], 6);
	teardown(&c);
	munmap(p, 2 * K4);
}

TEST(mremap_part_is_seen)
{
	struct ctx c;
	uint64_t *p, *q;

	setup(&c);
	p = map_pages(4);
	ASSERT_OK(bind_userptr(&c, VA, p, 4 * K4, 0));
	ASSERT_OK(store(&c, VA, 1));
	q = mremap(p + 3 * K4 / 8, K4, K4, MREMAP_MAYMOVE | MREMAP_FIXED,
		   map_pages(1));
	ASSERT_TRUE(q != MAP_FAILED);
	ASSERT_OK(gvm__mm_sync(c.mm));
	/* The last page moved away: the mapping cannot be repinned. */
	ASSERT_EQ(store(&c, VA, 2), -EIO);
	ASSERT_EQ(p[0], 1);
	teardown(&c);
	munmap(p, 3 * K4);
	munmap(q, K4);
}

TEST(fork_parent_keeps_working)
{
	struct ctx c;
	uint64_t *p;
	pid_t pid;
	int status;

	setup(&c);
	p = map_pages(2);
	p[0] = 10;
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(store(&c, VA + 8, 11));
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		/* The child sees the memory as it was at fork. */
		_exit(p[0] == 10 && p[1] == 11 ? 0 : 1);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_OK(gvm__mm_sync(c.mm));
	ASSERT_OK(store(&c, VA + 16, 12));
	ASSERT_EQ(p[2], 12);
	p[3] = 13;				/* the CPU writes too */
	{
		struct gvm_kernel k;

		ASSERT_OK(gvm_kernel_copy(&k, VA + K4, VA, 64));
		ASSERT_OK(run(&c, &k));
	}
	ASSERT_EQ(p[K4 / 8 + 3], 13);
	teardown(&c);
	munmap(p, 2 * K4);
}

/* Several devices mirror the same memory: an invalidation reaches all. */
static void multi_device(int n)
{
	struct ctx c[4];
	uint64_t *p;

	p = map_pages(2);
	for (int i = 0; i < n; i++) {
		setup(&c[i]);
		ASSERT_OK(bind_userptr(&c[i], VA, p, 2 * K4, 0));
		ASSERT_OK(store(&c[i], VA + 8 * (uint64_t)i, 1 + (uint64_t)i));
	}
	for (int i = 0; i < n; i++)
		ASSERT_EQ(p[i], 1 + (uint64_t)i);
	ASSERT_OK(madvise(p, 2 * K4, MADV_DONTNEED));
	ASSERT_OK(gvm__mm_sync(c[0].mm));
	for (int i = 0; i < n; i++) {
		struct gvm_vm_stats st;

		ASSERT_OK(gvm_vm_stats(c[i].vm, &st));
		ASSERT_EQ(st.userptr_invalidations, 1);
	}
	ASSERT_EQ(p[0], 0);
	for (int i = 0; i < n; i++)
		ASSERT_OK(store(&c[i], VA + 64 + 8 * (uint64_t)i, 50 + (uint64_t)i));
	for (int i = 0; i < n; i++) {
		ASSERT_EQ(p[8 + i], 50 + (uint64_t)i);
		teardown(&c[i]);
	}
	munmap(p, 2 * K4);
}

TEST(two_devices)
{
	multi_device(2);
}

TEST(four_devices)
{
	multi_device(4);
}

/*
 * userptr-invalidate-race: kernels keep writing the userptr while the
 * application replaces its memory under them.  Every job either completes
 * or faults (-EIO, never a crash or a write into freed memory); once the
 * CPU side settles, the GPU writes what the CPU sees.
 */
struct race {
	struct ctx *c;
	uint64_t *p;
	int stop;
	int ok, faulted;
};

static void *race_gpu(void *arg)
{
	struct race *r = arg;
	struct gvm_kernel k;

	/* At least one run, however late the thread starts (a loaded
	   machine may finish the remaps first: no timing dependency). */
	do {
		int st;

		ASSERT_OK(gvm_kernel_fill(&k, VA, 8 * K4, 0x77));
		st = run(r->c, &k);
		/* -EAGAIN: the remaps kept invalidating the userptr while the
		   exec revalidated it (gvm_exec's bounded retry): no job */
		ASSERT_TRUE(st == 0 || st == -EIO || st == -EAGAIN);
		if (st)
			r->faulted++;
		else
			r->ok++;
	} while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE));
	return NULL;
}

TEST(invalidate_race_map_fixed)
{
	struct race r = { 0 };
	pthread_t t;
	struct ctx c;
	uint64_t *p;

	/*
	 * The simulated device reaches system memory through CPU virtual
	 * addresses, so a write in flight while the application maps new
	 * memory over the range is, to TSan, a race with mmap (a real device
	 * would DMA to the old physical pages).  The zap + TLB invalidation
	 * ordering is what this test checks; TSan cannot judge it.
	 */
	if (UNDER_TSAN) {
		printf("skipped under ThreadSanitizer\n");
		return;
	}
	setup(&c);
	p = map_pages(8);
	r.c = &c;
	r.p = p;
	ASSERT_OK(bind_userptr(&c, VA, p, 8 * K4, 0));
	ASSERT_OK(pthread_create(&t, NULL, race_gpu, &r));
	for (int i = 0; i < 200; i++) {
		void *q = mmap(p, 8 * K4, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

		ASSERT_TRUE(q == p);
		if (i % 50 == 0)
			gvm_test_sleep_ns(1000000);
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_GT(r.ok + r.faulted, 0);
	ASSERT_OK(gvm__mm_sync(c.mm));
	ASSERT_OK(store(&c, VA + 8, 99));
	ASSERT_EQ(p[1], 99);
	teardown(&c);
	munmap(p, 8 * K4);
}

/*
 * Seed 000: an invalidation zaps a userptr's PTEs (walking the committed
 * view) while a bind of a neighbour in the same page table has been
 * prepared (staged) but not committed.  Both views must stay consistent:
 * the committed view shows the zap at once, the staging view shows the
 * bind and keeps the zap, and the commit publishes the bind without
 * resurrecting the zapped neighbour.
 */
static struct {
	struct ctx *c;
	void *cpu;
	int ran;
} s000;

static uint64_t pte_of(struct gvm_vm *vm, uint64_t va, enum gvm_pt_view view)
{
	struct gvm_pt_xlate x;

	/* The hook runs with vm->lock and pt_lock held: no locking here. */
	return gvm__pt_translate(&vm->pt, va, view, &x) ? 0 : x.addr;
}

/* The invalidation comes from another thread (it must hold no lock). */
static void *seed000_invalidate(void *arg)
{
	(void)arg;
	gvm__mm_invalidate(s000.c->mm, (uint64_t)(uintptr_t)s000.cpu, 2 * K4,
			   GVM_MM_EVENT_MIGRATE);
	return NULL;
}

static void seed000_hook(struct gvm_vm *vm)
{
	uint64_t up = (uint64_t)(uintptr_t)s000.cpu;
	pthread_t t;

	/* before: the userptr is mapped in both views */
	ASSERT_EQ(pte_of(vm, VA, GVM_PT_VIEW_COMMITTED), up);
	ASSERT_EQ(pte_of(vm, VA, GVM_PT_VIEW_STAGING), up);
	ASSERT_EQ(pte_of(vm, VA + 4 * K4, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_NE(pte_of(vm, VA + 4 * K4, GVM_PT_VIEW_STAGING), 0);
	/* the invalidation, exactly in the window */
	ASSERT_OK(pthread_create(&t, NULL, seed000_invalidate, NULL));
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_EQ(pte_of(vm, VA, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(pte_of(vm, VA + K4, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(pte_of(vm, VA, GVM_PT_VIEW_STAGING), 0);
	ASSERT_NE(pte_of(vm, VA + 4 * K4, GVM_PT_VIEW_STAGING), 0);
	ASSERT_EQ(gvm__pt_validate(&vm->pt), 0);
	s000.ran++;
}

TEST(seed000_zap_while_bind_is_staged)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA + 4 * K4,
				  .range = 4 * K4 };
	struct gvm_bo *bo;
	struct ctx c;
	uint64_t *p, *b;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(gvm_bo_create(c.dev, 4 * K4, GVM_MEM_SYSTEM, NULL, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&b));
	op.bo = bo;
	s000.c = &c;
	s000.cpu = p;
	gvm__bind_before_commit = seed000_hook;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	gvm__bind_before_commit = NULL;
	ASSERT_EQ(s000.ran, 1);
	gvm__mutex_lock(&c.vm->lock);
	gvm__mutex_lock(&c.vm->pt_lock);
	/* the bind is published, the zapped neighbour is not resurrected */
	ASSERT_NE(pte_of(c.vm, VA + 4 * K4, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(pte_of(c.vm, VA, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(gvm__pt_validate(&c.vm->pt), 0);
	gvm__mutex_unlock(&c.vm->pt_lock);
	gvm__mutex_unlock(&c.vm->lock);
	/* the next exec repins the userptr; both mappings work */
	ASSERT_OK(store(&c, VA + 8, 31));
	ASSERT_OK(store(&c, VA + 4 * K4 + 8, 32));
	ASSERT_EQ(p[1], 31);
	ASSERT_EQ(b[1], 32);
	gvm_bo_put(bo);
	teardown(&c);
	munmap(p, 2 * K4);
}

/* ---- the page-table update pipeline's windows (issue 10) --------------- */

static struct win {
	struct ctx *c;
	void *cpu;
	uint64_t len;
	enum gvm_vm_update_point point;
	enum gvm_mm_event event;
	int ran;
} win;

static void *win_invalidate(void *arg)
{
	(void)arg;
	gvm__mm_invalidate(win.c->mm, (uint64_t)(uintptr_t)win.cpu, win.len,
			   win.event);
	return NULL;
}

/* An invalidation from another thread, run to completion, now. */
static void invalidate_now(void)
{
	pthread_t t;

	ASSERT_OK(pthread_create(&t, NULL, win_invalidate, NULL));
	ASSERT_OK(pthread_join(t, NULL));
	win.ran++;
}

static void win_update_hook(struct gvm_vm *vm, enum gvm_vm_update_point p)
{
	if (vm != win.c->vm || p != win.point || win.ran)
		return;
	invalidate_now();
	/* pt_lock held: the invalidation returned, nothing may reach the
	   pages it invalidated (the old ones, to the GPU) */
	ASSERT_EQ(pte_of(vm, VA, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(pte_of(vm, VA + K4, GVM_PT_VIEW_COMMITTED), 0);
}

/*
 * Defect 1: a queued bind of a userptr commits its page tables in the
 * job; an invalidation right after that commit (the event thread finds the
 * userptr live or not, and returns) must leave no valid PTE to the old
 * pages once it has returned.  With the commit and the userptr's live
 * transition in two notifier_lock sections, the invalidation fell between
 * them, skipped the zap and returned with the stale PTEs committed.
 * Invalidations before the commit section must be caught by its recheck.
 */
static void queued_userptr_bind_vs_invalidation(enum gvm_vm_update_point p)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .addr = VA,
				  .range = 2 * K4 };
	struct gvm_fence *in, *out = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL },
	};
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p64;

	setup(&c);
	p64 = map_pages(2);
	op.userptr = (uint64_t)(uintptr_t)p64;
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &in));
	s[0].fence = in;
	s[1].out = &out;
	win = (struct win){ .c = &c, .cpu = p64, .len = 2 * K4, .point = p,
			     .event = GVM_MM_EVENT_UNMAP };
	gvm__vm_update_hook = win_update_hook;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, s, 2));	/* queued */
	ASSERT_EQ(win.ran, 0);
	ASSERT_OK(gvm_fence_signal(in));
	ASSERT_OK(gvm_fence_wait(out, GVM_TIMEOUT_INFINITE));
	gvm__vm_update_hook = NULL;
	ASSERT_EQ(win.ran, 1);
	ASSERT_EQ(gvm_fence_get_status(out), 1);
	/* the invalidation returned: nothing reaches the old pages */
	gvm__mutex_lock(&c.vm->pt_lock);
	ASSERT_EQ(pte_of(c.vm, VA, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(pte_of(c.vm, VA + K4, GVM_PT_VIEW_COMMITTED), 0);
	gvm__mutex_unlock(&c.vm->pt_lock);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_FALSE(st.banned);
	/* the next exec repins; the store lands where the CPU looks */
	ASSERT_OK(store(&c, VA + K4 + 8, 77));
	ASSERT_EQ(p64[K4 / 8 + 1], 77);
	gvm_fence_put(out);
	gvm_fence_put(in);
	teardown(&c);
	munmap(p64, 2 * K4);
}

TEST(queued_bind_invalidated_after_commit)
{
	queued_userptr_bind_vs_invalidation(GVM_UPDATE_AFTER_COMMIT);
}

TEST(queued_bind_invalidated_before_commit)
{
	queued_userptr_bind_vs_invalidation(GVM_UPDATE_BEFORE_COMMIT);
}

static void win_exec_hook(struct gvm_vm *vm)
{
	if (vm == win.c->vm && !win.ran)
		invalidate_now();
}

/*
 * Defect 2: an invalidation between exec's revalidation and its submit.
 * Exec must see it in its last check (under notifier_lock, in the section
 * that publishes the job) and revalidate again, so the kernel runs on
 * fresh PTEs instead of faulting.
 */
TEST(exec_rechecks_userptrs_before_submit)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	win = (struct win){ .c = &c, .cpu = p, .len = 2 * K4,
			     .event = GVM_MM_EVENT_UNMAP };
	gvm__exec_before_check = win_exec_hook;
	ASSERT_OK(store(&c, VA + 8, 55));	/* no -EIO */
	gvm__exec_before_check = NULL;
	ASSERT_EQ(win.ran, 1);
	ASSERT_EQ(p[1], 55);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.userptr_invalidations, 1);
	ASSERT_GE(st.userptr_repins, 1);
	ASSERT_EQ(st.faults, 0);
	teardown(&c);
	munmap(p, 2 * K4);
}

static void win_bind_hook(struct gvm_vm *vm)
{
	if (vm == win.c->vm && !win.ran)
		invalidate_now();
}

/*
 * Defect 3: a PREFETCH over a userptr rewrites its PTEs from the pages
 * fetched at its bind.  An invalidation while that rewrite is staged must
 * win: the commit's recheck zaps the rewritten PTEs again.
 */
TEST(prefetch_over_userptr_keeps_a_zap)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH, .addr = VA,
				  .range = 2 * K4,
				  .prefetch_mem = GVM_MEM_SYSTEM };
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	win = (struct win){ .c = &c, .cpu = p, .len = 2 * K4,
			     .event = GVM_MM_EVENT_UNMAP };
	gvm__bind_before_commit = win_bind_hook;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	gvm__bind_before_commit = NULL;
	ASSERT_EQ(win.ran, 1);
	gvm__mutex_lock(&c.vm->pt_lock);
	ASSERT_EQ(pte_of(c.vm, VA, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(pte_of(c.vm, VA + K4, GVM_PT_VIEW_COMMITTED), 0);
	gvm__mutex_unlock(&c.vm->pt_lock);
	ASSERT_OK(store(&c, VA + 8, 66));
	ASSERT_EQ(p[1], 66);
	teardown(&c);
	munmap(p, 2 * K4);
}

/*
 * Defect 5: an invalidation of a change that has not happened yet
 * (madvise's REMOVE, a migration) lets a kernel running on the userptr
 * finish instead of zapping under it.  The kernel's one lane waits until
 * the invalidation started (its pass 1 counted it), then stores: with the
 * zap in pass 1 it faulted (its first access to the page, so no TLB entry
 * could hide the zap); now the zap waits for the kernel.
 */
struct after_inval_args {
	const uint64_t *count;		/* vm->stats.userptr_invalidations */
	uint64_t va;
};

static void after_inval_fn(struct gvm_lane *l, const void *args)
{
	const struct after_inval_args *a = args;

	while (!__atomic_load_n(a->count, __ATOMIC_ACQUIRE))
		gvm_cpu_relax();
	gvm_lane_store(l, a->va, 88, 8);
}

TEST(remove_event_waits_for_running_kernel)
{
	struct after_inval_args a;
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	struct gvm_kernel k;
	struct ctx c;
	pthread_t t;
	uint64_t *p;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	a.count = &c.vm->stats.userptr_invalidations;
	a.va = VA + 8;
	ASSERT_OK(gvm_kernel_init(&k, "after_inval", after_inval_fn, 1, &a,
				  sizeof(a)));
	ASSERT_OK(gvm_exec(c.q, &k, &s, 1));
	win = (struct win){ .c = &c, .cpu = p, .len = 2 * K4,
			     .event = GVM_MM_EVENT_REMOVE };
	ASSERT_OK(pthread_create(&t, NULL, win_invalidate, NULL));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);		/* no fault */
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_EQ(p[1], 88);
	/* after the invalidation, the PTEs are gone until the next exec */
	gvm__mutex_lock(&c.vm->pt_lock);
	ASSERT_EQ(pte_of(c.vm, VA, GVM_PT_VIEW_COMMITTED), 0);
	gvm__mutex_unlock(&c.vm->pt_lock);
	gvm_fence_put(f);
	teardown(&c);
	munmap(p, 2 * K4);
}

/*
 * The application's order is gvm's (docs/mm.md, "Ordering"): a change made
 * before gvm_vm_bind() or gvm_exec() is applied before they act, and the
 * late event of a previous mapping never tears down a new one.
 *
 * The "_forced" variants hold the event thread between reading each event
 * and processing it (tests/mmhold.h): the window in which the application
 * has returned from munmap/madvise and gvm has not applied the change.  The
 * kernel ("racer") then first lets the event go, waits until its
 * invalidation has gone past the userptr (pass 1 reached a probe notifier
 * that starts one page later, so comes after the userptr in the walk), and
 * only then loads and stores through the userptr.  Without the flush in
 * exec (or, for the unmap loop, without both the flush in bind and the
 * stamps) the load faults and the job fails with -EIO, every time.  With
 * it, the flush found the thread busy, released it and waited for it, so
 * the call saw the change first and the kernel's wait is over at once.  The
 * plain variants run the same loops holding nothing.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool probed;		/* the held event's pass 1 reached the probe */
} race = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, true };

static struct gvm_notifier_finish *
probe_start(struct gvm_notifier *n, const struct gvm_notifier_range *r,
	    uint64_t cur_seq)
{
	(void)r;
	gvm__notifier_set_seq(n, cur_seq);
	pthread_mutex_lock(&race.lock);
	race.probed = true;
	pthread_cond_broadcast(&race.cond);
	pthread_mutex_unlock(&race.lock);
	return NULL;
}

static const struct gvm_notifier_ops probe_ops = {
	.invalidate_start = probe_start,
};

/* The next event is held, and the racer waits for its invalidation. */
static void race_hold_next_event(void)
{
	pthread_mutex_lock(&race.lock);
	race.probed = false;
	pthread_mutex_unlock(&race.lock);
	mmhold_arm();
}

struct racer_args {
	uint64_t src, dst, add;
};

/* One lane: dst = src + add, once the held event's pass 1 is past. */
static void racer_fn(struct gvm_lane *lane, const void *args)
{
	const struct racer_args *a = args;
	uint64_t v;

	mmhold_release();
	pthread_mutex_lock(&race.lock);
	while (!race.probed)
		pthread_cond_wait(&race.cond, &race.lock);
	pthread_mutex_unlock(&race.lock);
	v = gvm_lane_load(lane, a->src, 8);
	if (gvm_lane_faulted(lane))
		return;
	gvm_lane_store(lane, a->dst, v + a->add, 8);
}

static int racer(struct ctx *c, uint64_t src, uint64_t dst, uint64_t add)
{
	struct racer_args a = { .src = src, .dst = dst, .add = add };
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_init(&k, "racer", racer_fn, 1, &a, sizeof(a)));
	return run(c, &k);
}

static uint64_t u64(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/*
 * madvise(MADV_DONTNEED) on a bound userptr, the CPU writes the new page,
 * then an exec reads and writes through the userptr: 100 times in a row
 * the job succeeds and sees the CPU's value (the exec revalidated).
 */
static void madvise_then_exec(bool forced)
{
	struct gvm_notifier probe;
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(gvm__notifier_insert(c.mm, &probe, u64(p) + K4, K4,
				       &probe_ops));
	if (forced)
		mmhold_install();
	for (uint64_t i = 0; i < 100; i++) {
		p[0] = 1;
		if (forced)
			race_hold_next_event();
		ASSERT_OK(madvise(p, 2 * K4, MADV_DONTNEED));
		ASSERT_EQ(p[0], 0);
		p[0] = 1000 + i;		/* a new page */
		ASSERT_OK(racer(&c, VA, VA + K4 + 8, 7));
		ASSERT_EQ(p[K4 / 8 + 1], 1007 + i);
	}
	if (forced) {
		/* every exec's flush found the event thread holding */
		ASSERT_EQ(mmhold_flush_waits(), 100);
		mmhold_uninstall();
	}
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.userptr_invalidations, 100);
	ASSERT_EQ(st.userptr_repins, 100);
	gvm__notifier_remove(&probe);
	teardown(&c);
	munmap(p, 2 * K4);
}

TEST(exec_after_madvise_sees_the_change)
{
	madvise_then_exec(false);
}

TEST(exec_after_madvise_sees_the_change_forced)
{
	madvise_then_exec(true);
}

/*
 * mmap -> bind userptr -> exec store -> unbind -> munmap, 200 times: every
 * store succeeds and lands, and the late UNMAP of a previous mapping never
 * invalidates the next one's userptr (no invalidation at all: each userptr
 * is unbound before its memory is unmapped).  The plain variant asks for
 * the previous address and Linux usually gives it back (not always: other
 * threads map memory too, sanitizer runtimes for one); the forced variant
 * unmaps with mmap(MAP_FIXED, PROT_NONE) over the range, which raises the
 * same UNMAP event and keeps the address for the next mapping.
 */
static void remap_loop(bool forced)
{
	struct gvm_bind_op unbind = { .op = GVM_BIND_UNMAP, .addr = VA,
				      .range = 2 * K4 };
	struct gvm_notifier probe;
	struct gvm_vm_stats st;
	uint64_t *p = NULL, *prev = NULL;
	unsigned int same = 0;
	struct ctx c;

	setup(&c);
	if (forced)
		mmhold_install();
	for (uint64_t i = 0; i < 200; i++) {
		if (forced && i) {
			/* over the placeholder of the previous round */
			ASSERT_TRUE(mmap(p, 2 * K4, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
					 -1, 0) == p);
		} else {
			p = mmap(prev, 2 * K4, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			ASSERT_TRUE(p != MAP_FAILED);
			same += p == prev;
		}
		if (forced && !i)
			ASSERT_OK(gvm__notifier_insert(c.mm, &probe,
						       u64(p) + K4, K4,
						       &probe_ops));
		ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
		p[0] = i;
		ASSERT_OK(racer(&c, VA, VA + K4, 1));
		ASSERT_EQ(p[K4 / 8], i + 1);
		ASSERT_OK(gvm_vm_bind(c.vm, NULL, &unbind, 1, NULL, 0));
		if (forced) {
			race_hold_next_event();
			ASSERT_TRUE(mmap(p, 2 * K4, PROT_NONE,
					 MAP_PRIVATE | MAP_ANONYMOUS |
						 MAP_FIXED | MAP_NORESERVE,
					 -1, 0) == p);
		} else {
			ASSERT_OK(munmap(p, 2 * K4));
		}
		prev = p;
	}
	ASSERT_OK(gvm_mm_flush(c.mm));		/* the last one's event */
	if (forced) {
		/* the flush of binds 1..199, and the one above; one more
		   wait shows up in ~2% of runs (not pinned down: some other
		   flush found an event pending), which is no ordering fault */
		ASSERT_GE(mmhold_flush_waits(), 200);
		mmhold_uninstall();
		gvm__notifier_remove(&probe);
		munmap(p, 2 * K4);		/* the placeholder */
	} else {
		printf("the same address again %u times out of 199\n", same);
	}
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.userptr_invalidations, 0);
	teardown(&c);
}

TEST(remap_loop_at_the_same_address)
{
	remap_loop(false);
}

TEST(remap_loop_at_the_same_address_forced)
{
	remap_loop(true);
}
