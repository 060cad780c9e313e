// SPDX-License-Identifier: MIT
/*
 * Buddy allocator benchmarks.
 *
 *   buddy_frag_4g    the drm_buddy fragmentation scenario: a 4 GiB pool of
 *                    4 KiB chunks, n = 65,536 slots of 64 KiB.
 *                      A  n allocations of 8 KiB, the i-th restricted to
 *                         slot i (so 64 KiB-aligned; each slot's other
 *                         56 KiB stays free as 8K + 16K + 32K blocks)
 *                      B  free every other one (even slots merge to 64K)
 *                      C  n/2 allocations of 64 KiB (fill those holes)
 *                      D  free the other 8 KiB blocks
 *                      E  n/2 allocations of 64 KiB (fill those)
 *                      F  free all n 64 KiB blocks in a scattered order
 *                         (merges back to one 4 GiB block)
 *                    Time per operation over the 4n operations, against
 *                    glibc tsearch (alloc) / tdelete (free) of the same
 *                    keys (block offsets) in the same order.
 *   buddy_alloc_64k  random churn in a 4 GiB pool kept 50% full (32,768
 *                    live 64 KiB blocks): each op frees a random live
 *                    block and allocates a new 64 KiB block, against
 *                    glibc tdelete + tsearch replaying the same offsets on
 *                    a tree of the live blocks.
 *
 * Protocol: one unmeasured warm-up pass, then GVM_BENCH_REPS alternating
 * passes of the allocator and the baseline; medians.  The allocator is
 * reused across passes (a long-lived device allocator has warm metadata
 * slabs).  Quick mode uses a 64 MiB pool.
 */
#include <errno.h>
#include <inttypes.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "core/buddy.h"
#include "core/list.h"

#define K4 4096ull
#define K8 8192ull
#define K64 65536ull

static int cmp_key(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;

	return x < y ? -1 : x > y;
}

static void free_nothing(void *p)
{
	(void)p;
}

static inline void *key_of(uint64_t offset)
{
	return (void *)(uintptr_t)(offset / K4 + 1);
}

/* One allocation of a single block; NULL on error (*err set). */
static struct gvm_buddy_block *alloc1(struct gvm_buddy *mm, uint64_t start,
				      uint64_t end, uint64_t size,
				      uint64_t min, int *err)
{
	struct gvm_list l;
	struct gvm_buddy_block *b;
	int e;

	gvm_list_init(&l);
	e = gvm__buddy_alloc(mm, start, end, size, min, 0, &l);
	if (e) {
		*err = e;
		return NULL;
	}
	b = gvm_list_first_entry(&l, struct gvm_buddy_block, link);
	if (l.next->next != &l) {	/* more than one block: unexpected */
		*err = -EIO;
		gvm__buddy_free_list(mm, &l);
		return NULL;
	}
	gvm_list_del(&b->link);
	return b;
}

/* ---- fragmentation scenario ---------------------------------------------- */

/* Op log for the baseline: key | (1 << 63) for an alloc. */
#define OP_ALLOC (1ull << 63)

struct frag {
	struct gvm_buddy mm;
	size_t n;				/* 64K slots */
	struct gvm_buddy_block **b8, **b64;	/* [n] */
	uint64_t *log;				/* [4n] */
	size_t nlog;
};

static double frag_run(struct frag *f, bool record, int *err)
{
	struct gvm_buddy *mm = &f->mm;
	const size_t n = f->n;
	size_t j = 0;
	int64_t t0 = gvm_bench_now_ns();

#define LOG(x)                                  \
	do {                                    \
		if (record)                     \
			f->log[f->nlog++] = (x);  \
	} while (0)

	for (size_t i = 0; i < n; i++) {				/* A */
		f->b8[i] = alloc1(mm, i * K64, (i + 1) * K64, K8, 0, err);
		if (!f->b8[i])
			return 0;
		LOG(f->b8[i]->offset | OP_ALLOC);
	}
	for (size_t i = 0; i < n; i += 2) {				/* B */
		LOG(f->b8[i]->offset);
		gvm__buddy_free_block(mm, f->b8[i]);
	}
	for (j = 0; j < n / 2; j++) {					/* C */
		f->b64[j] = alloc1(mm, 0, mm->size, K64, K64, err);
		if (!f->b64[j])
			return 0;
		LOG(f->b64[j]->offset | OP_ALLOC);
	}
	for (size_t i = 1; i < n; i += 2) {				/* D */
		LOG(f->b8[i]->offset);
		gvm__buddy_free_block(mm, f->b8[i]);
	}
	for (; j < n; j++) {						/* E */
		f->b64[j] = alloc1(mm, 0, mm->size, K64, K64, err);
		if (!f->b64[j])
			return 0;
		LOG(f->b64[j]->offset | OP_ALLOC);
	}
	for (size_t i = 0; i < n; i++) {				/* F */
		size_t k = (i * 40503u) & (n - 1);	/* odd stride: a permutation */

		LOG(f->b64[k]->offset);
		gvm__buddy_free_block(mm, f->b64[k]);
	}
#undef LOG
	return (double)(gvm_bench_now_ns() - t0) / (double)(4 * n);
}

static double tsearch_replay(const uint64_t *log, size_t m, int *err)
{
	void *root = NULL;
	int64_t t0 = gvm_bench_now_ns();

	for (size_t i = 0; i < m; i++) {
		void *k = key_of(log[i] & ~OP_ALLOC);

		if (log[i] & OP_ALLOC) {
			if (!tsearch(k, &root, cmp_key))
				*err = -ENOMEM;
		} else if (!tdelete(k, &root, cmp_key)) {
			*err = -ENOENT;
		}
	}
	double t = (double)(gvm_bench_now_ns() - t0) / (double)m;

	if (root) {
		*err = -EIO;	/* everything allocated was freed */
		tdestroy(root, free_nothing);
	}
	return t;
}

GVM_BENCH(buddy_frag_4g, "buddy: drm_buddy fragmentation scenario, 4 GiB")
{
	const uint64_t size = ctx->quick ? (64ull << 20) : (4ull << 30);
	double tv[GVM_BENCH_REPS], bv[GVM_BENCH_REPS];
	struct frag f = { .n = size / K64 };
	int err;

	f.b8 = malloc(f.n * sizeof(*f.b8));
	f.b64 = malloc(f.n * sizeof(*f.b64));
	f.log = malloc(4 * f.n * sizeof(*f.log));
	if (!f.b8 || !f.b64 || !f.log) {
		free(f.b8);
		free(f.b64);
		free(f.log);
		return -ENOMEM;
	}
	err = gvm__buddy_init(&f.mm, size, K4);
	if (err)
		goto out_free;

	gvm_bench_pin();
	for (int p = 0; p <= GVM_BENCH_REPS; p++) {
		double a = frag_run(&f, p == 0, &err);
		double b;

		if (err)
			goto out;
		b = tsearch_replay(f.log, f.nlog, &err);
		if (err)
			goto out;
		if (p > 0) {
			tv[p - 1] = a;
			bv[p - 1] = b;
		}
	}
	if (f.mm.free_bytes != size || gvm__buddy_validate(&f.mm)) {
		err = -EIO;
		goto out;
	}
	res->value = gvm_bench_median(tv, GVM_BENCH_REPS);
	res->unit = "ns/op";
	res->baseline = "glibc tsearch/tdelete, same keys";
	res->baseline_value = gvm_bench_median(bv, GVM_BENCH_REPS);
	res->goal = 0.5;
	snprintf(res->note, sizeof(res->note),
		 "%zu ops per pass (%.1f ms), %.1f MiB of block metadata",
		 4 * f.n, res->value * 4.0 * (double)f.n / 1e6,
		 (double)(f.mm.map_bytes + f.mm.nr_handles *
			  sizeof(struct gvm_buddy_block)) / 1048576.0);
out:
	gvm__buddy_fini(&f.mm);
out_free:
	free(f.b8);
	free(f.b64);
	free(f.log);
	return err;
}

/* ---- steady state -------------------------------------------------------- */

/*
 * Random churn at 50% occupancy: the pool starts with a random half of its
 * 64 KiB slots allocated; every step frees a randomly chosen live block and
 * allocates a new 64 KiB block (wherever the allocator puts it), so the
 * live count stays n/2 while the free space fragments and merges at
 * random.  The victims are drawn before the timed loop.  The baseline
 * replays the same churn on a glibc tsearch tree holding the live offsets:
 * tdelete of the freed offset, tsearch of the allocated one.
 */
static uint64_t churn_rand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

GVM_BENCH(buddy_alloc_64k,
	  "buddy: random 64 KiB free+alloc churn, 4 GiB pool 50% full")
{
	const uint64_t size = ctx->quick ? (64ull << 20) : (4ull << 30);
	const size_t n = size / K64, live = n / 2;
	const size_t m = ctx->quick ? 20000 : 1000000;	/* steps per pass */
	double tv[GVM_BENCH_REPS], bv[GVM_BENCH_REPS];
	struct gvm_buddy_block **held = calloc(n, sizeof(*held));
	uint32_t *victim = malloc(m * sizeof(*victim));
	uint64_t *log = malloc(2 * m * sizeof(*log));	/* freed, allocated */
	void *troot = NULL;
	struct gvm_buddy mm;
	uint64_t seed = 0x5eed;
	int err = 0;

	if (!held || !victim || !log) {
		err = -ENOMEM;
		goto out_free;
	}
	err = gvm__buddy_init(&mm, size, K4);
	if (err)
		goto out_free;
	/* Every 64K slot allocated, then a random half freed (a partial
	 * Fisher-Yates shuffle picks which survive in held[0, live)). */
	for (size_t i = 0; i < n; i++) {
		held[i] = alloc1(&mm, 0, size, K64, K64, &err);
		if (!held[i])
			goto out;
	}
	for (size_t i = 0; i < live; i++) {
		size_t j = i + churn_rand(&seed) % (n - i);
		struct gvm_buddy_block *t = held[i];

		held[i] = held[j];
		held[j] = t;
	}
	for (size_t i = live; i < n; i++) {
		gvm__buddy_free_block(&mm, held[i]);
		held[i] = NULL;
	}
	for (size_t i = 0; i < live; i++)
		if (!tsearch(key_of(held[i]->offset), &troot, cmp_key)) {
			err = -ENOMEM;
			goto out;
		}

	gvm_bench_pin();
	for (int p = 0; p <= GVM_BENCH_REPS; p++) {
		for (size_t i = 0; i < m; i++)
			victim[i] = (uint32_t)(churn_rand(&seed) % live);

		int64_t t0 = gvm_bench_now_ns();

		for (size_t i = 0; i < m; i++) {
			struct gvm_buddy_block **h = &held[victim[i]];

			log[2 * i] = (*h)->offset;
			gvm__buddy_free_block(&mm, *h);
			*h = alloc1(&mm, 0, size, K64, K64, &err);
			if (!*h)
				goto out;
			log[2 * i + 1] = (*h)->offset;
		}
		double a = (double)(gvm_bench_now_ns() - t0) / (double)m;

		t0 = gvm_bench_now_ns();
		for (size_t i = 0; i < m; i++) {
			if (!tdelete(key_of(log[2 * i]), &troot, cmp_key))
				err = -ENOENT;
			if (!tsearch(key_of(log[2 * i + 1]), &troot, cmp_key))
				err = -ENOMEM;
		}
		double b = (double)(gvm_bench_now_ns() - t0) / (double)m;

		if (err)
			goto out;
		if (p > 0) {
			tv[p - 1] = a;
			bv[p - 1] = b;
		}
	}
	if (mm.nr_allocated != live || gvm__buddy_validate(&mm)) {
		err = -EIO;
		goto out;
	}
	res->value = gvm_bench_median(tv, GVM_BENCH_REPS);
	res->unit = "ns/op";
	res->baseline = "glibc tdelete+tsearch, same churn";
	res->baseline_value = gvm_bench_median(bv, GVM_BENCH_REPS);
	res->goal = 0.2;
	snprintf(res->note, sizeof(res->note),
		 "op = free a random live block + alloc 64 KiB; %zu live blocks",
		 live);
out:
	for (size_t i = 0; i < n; i++)
		if (held[i])
			gvm__buddy_free_block(&mm, held[i]);
	gvm__buddy_fini(&mm);
out_free:
	if (troot)
		tdestroy(troot, free_nothing);
	free(held);
	free(victim);
	free(log);
	return err;
}
