// SPDX-License-Identifier: MIT
/*
 * Interval tree benchmarks (goals G13/G14 of shared/research/perf-anchors.md).
 *
 *   itree_lookup_1m   random point lookups among 1M disjoint ranges, against
 *                     a binary search over a sorted array of the same ranges
 *                     (the pointer-free lower bound); same points for both.
 *   itree_insert_1m   insert one new range and remove one existing range per
 *                     op with 1M ranges live, against glibc tsearch+tdelete
 *                     of the same keys on a tree holding the same 1M keys.
 *
 * Protocol: build both structures, one unmeasured warm-up pass each, then
 * GVM_BENCH_REPS alternating measured passes; medians.  Quick mode uses
 * 10,000 ranges (its figures mean nothing).
 */
#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "core/itree.h"

struct range {
	uint64_t start, last;
};

/* splitmix64, as the tests use. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void shuffle(uint64_t *v, size_t n, uint64_t *seed)
{
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = rng_next(seed) % (i + 1);
		uint64_t x = v[i];

		v[i] = v[j];
		v[j] = x;
	}
}

/* ---- lookup ------------------------------------------------------------- */

/* The range containing @p, or NULL: last range with start <= p, checked. */
static const struct range *array_find(const struct range *r, size_t n,
				      uint64_t p)
{
	size_t lo = 0, len = n;

	if (!n || r[0].start > p)
		return NULL;
	/* Invariant: r[lo].start <= p; the answer is in [lo, lo + len). */
	while (len > 1) {
		size_t half = len / 2;

		if (r[lo + half].start <= p)
			lo += half;
		len -= half;
	}
	return r[lo].last >= p ? &r[lo] : NULL;
}

static double time_tree_lookups(const struct gvm_itree *t, const uint64_t *pts,
				size_t q, uintptr_t *sum)
{
	int64_t t0 = gvm_bench_now_ns();
	uintptr_t s = 0;

	for (size_t i = 0; i < q; i++)
		s += (uintptr_t)gvm__itree_find(t, pts[i]);
	gvm_bench_keep(s);
	*sum = s;
	return (double)(gvm_bench_now_ns() - t0) / (double)q;
}

static double time_array_lookups(const struct range *r, size_t n,
				 const uint64_t *pts, size_t q, uintptr_t *sum)
{
	int64_t t0 = gvm_bench_now_ns();
	uintptr_t s = 0;

	for (size_t i = 0; i < q; i++)
		s += (uintptr_t)array_find(r, n, pts[i]);
	gvm_bench_keep(s);
	*sum = s;
	return (double)(gvm_bench_now_ns() - t0) / (double)q;
}

GVM_BENCH(itree_lookup_1m, "interval tree point lookup among 1M ranges")
{
	const size_t n = ctx->quick ? 10000 : 1000000;
	const size_t q = ctx->quick ? 10000 : 1000000;
	double tv[GVM_BENCH_REPS], bv[GVM_BENCH_REPS];
	struct range *r = malloc(n * sizeof(*r));
	uint64_t *order = malloc(n * sizeof(*order));
	uint64_t *pts = malloc(q * sizeof(*pts));
	uint64_t seed = 0x17ee, cursor = 0;
	struct gvm_itree t;
	size_t hits = 0, huge;
	int err = 0;

	gvm__itree_init(&t);
	if (!r || !order || !pts) {
		err = -ENOMEM;
		goto out;
	}
	/* 4K..64K mappings separated by 0..3 unmapped pages, ascending. */
	for (size_t i = 0; i < n; i++) {
		uint64_t gap = (rng_next(&seed) % 4) * 4096;
		uint64_t size = (1 + rng_next(&seed) % 16) * 4096;

		r[i].start = cursor + gap;
		r[i].last = r[i].start + size - 1;
		cursor = r[i].last + 1;
		order[i] = i;
	}
	/* The tree is built in random order, as a VM's binds would be. */
	shuffle(order, n, &seed);
	for (size_t i = 0; i < n; i++) {
		err = gvm__itree_insert(&t, r[order[i]].start,
					r[order[i]].last, &r[order[i]]);
		if (err)
			goto out;
	}
	for (size_t i = 0; i < q; i++)
		pts[i] = rng_next(&seed) % cursor;
	for (size_t i = 0; i < q; i++)
		hits += array_find(r, n, pts[i]) != NULL;
	huge = gvm_bench_huge(r, n * sizeof(*r));

	gvm_bench_pin();
	for (int rep = -1; rep < GVM_BENCH_REPS; rep++) {
		uintptr_t s1, s2;
		double a = time_tree_lookups(&t, pts, q, &s1);
		double b = time_array_lookups(r, n, pts, q, &s2);

		if (s1 != s2) {		/* both must find the same ranges */
			fprintf(stderr, "itree_lookup_1m: results differ\n");
			err = -EIO;
			goto out;
		}
		if (rep >= 0) {
			tv[rep] = a;
			bv[rep] = b;
		}
	}
	res->value = gvm_bench_median(tv, GVM_BENCH_REPS);
	res->unit = "ns/op";
	res->baseline = "binary search, sorted array";
	res->baseline_value = gvm_bench_median(bv, GVM_BENCH_REPS);
	res->goal = 1.5;
	snprintf(res->note, sizeof(res->note),
		 "height %u, fanout %d, %.0f%% hits; array on huge pages: %s",
		 t.height, GVM_ITREE_FANOUT, 100.0 * (double)hits / (double)q,
		 huge ? "yes" : "no");
out:
	gvm__itree_fini(&t);
	free(pts);
	free(order);
	free(r);
	return err;
}

/* ---- insert + remove ------------------------------------------------------ */

/*
 * Keys are slot numbers k: the range [k * 4096, k * 4096 + 4095], item and
 * tsearch key (void *)(k + 1).  Each op inserts a free slot and removes a
 * live one.
 */
struct churn_op {
	uint64_t ins, del;
};

static int cmp_key(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;

	return x < y ? -1 : x > y;
}

static void free_nothing(void *p)
{
	(void)p;
}

static double time_tree_churn(struct gvm_itree *t, const struct churn_op *op,
			      size_t m, int *err)
{
	int64_t t0 = gvm_bench_now_ns();

	for (size_t i = 0; i < m; i++) {
		uint64_t k = op[i].ins, d = op[i].del;
		int e;

		e = gvm__itree_insert(t, k * 4096, k * 4096 + 4095,
				      (void *)(uintptr_t)(k + 1));
		if (e)
			*err = e;
		e = gvm__itree_remove(t, d * 4096, (void *)(uintptr_t)(d + 1));
		if (e)
			*err = e;
	}
	return (double)(gvm_bench_now_ns() - t0) / (double)m;
}

static double time_tsearch_churn(void **root, const struct churn_op *op,
				 size_t m, int *err)
{
	int64_t t0 = gvm_bench_now_ns();

	for (size_t i = 0; i < m; i++) {
		if (!tsearch((void *)(uintptr_t)(op[i].ins + 1), root,
			     cmp_key))
			*err = -ENOMEM;
		if (!tdelete((void *)(uintptr_t)(op[i].del + 1), root,
			     cmp_key))
			*err = -ENOENT;
	}
	return (double)(gvm_bench_now_ns() - t0) / (double)m;
}

GVM_BENCH(itree_insert_1m, "interval tree insert+remove at 1M live ranges")
{
	const size_t n = ctx->quick ? 10000 : 1000000;
	const size_t m = ctx->quick ? 2000 : 200000;	/* ops per pass */
	const size_t passes = 1 + GVM_BENCH_REPS;
	double tv[GVM_BENCH_REPS], bv[GVM_BENCH_REPS];
	uint64_t *slots = malloc(2 * n * sizeof(*slots));
	struct churn_op *ops = malloc(passes * m * sizeof(*ops));
	uint64_t seed = 0x1235;
	struct gvm_itree t;
	void *troot = NULL;
	size_t huge;
	int err = 0;

	gvm__itree_init(&t);
	if (!slots || !ops) {
		err = -ENOMEM;
		goto out;
	}
	/* slots[0, n) live, slots[n, 2n) free; ops replay the same churn. */
	for (size_t i = 0; i < 2 * n; i++)
		slots[i] = i;
	shuffle(slots, 2 * n, &seed);
	for (size_t i = 0; i < n; i++) {
		uint64_t k = slots[i];

		err = gvm__itree_insert(&t, k * 4096, k * 4096 + 4095,
					(void *)(uintptr_t)(k + 1));
		if (err)
			goto out;
		if (!tsearch((void *)(uintptr_t)(k + 1), &troot, cmp_key)) {
			err = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < passes * m; i++) {
		size_t a = rng_next(&seed) % n, b = n + rng_next(&seed) % n;

		ops[i].ins = slots[b];
		ops[i].del = slots[a];
		slots[a] = ops[i].ins;
		slots[b] = ops[i].del;
	}

	huge = gvm_bench_huge_libc_heap();
	gvm_bench_pin();
	for (size_t p = 0; p < passes; p++) {
		double a = time_tree_churn(&t, ops + p * m, m, &err);
		double b = time_tsearch_churn(&troot, ops + p * m, m, &err);

		if (err)
			goto out;
		if (p > 0) {
			tv[p - 1] = a;
			bv[p - 1] = b;
		}
	}
	if (gvm__itree_count(&t) != n) {
		err = -EIO;
		goto out;
	}
	res->value = gvm_bench_median(tv, GVM_BENCH_REPS);
	res->unit = "ns/op";
	res->baseline = "glibc tsearch+tdelete";
	res->baseline_value = gvm_bench_median(bv, GVM_BENCH_REPS);
	res->goal = 1.0;
	snprintf(res->note, sizeof(res->note),
		 "height %u, fanout %d; tsearch's heap on huge pages: %s",
		 t.height, GVM_ITREE_FANOUT, huge ? "yes" : "no");
out:
	if (troot)
		tdestroy(troot, free_nothing);
	gvm__itree_fini(&t);
	free(ops);
	free(slots);
	return err;
}
