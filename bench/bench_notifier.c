// SPDX-License-Identifier: MIT
/*
 * Notifier benchmark.
 *
 *   notifier_lookup_100k   finding the notifiers an invalidation hits among
 *                          100,000 registered ones, as gvm__notifier_invalidate
 *                          does it (take the tree lock, walk the interval
 *                          tree's overlaps), against a binary search over a
 *                          sorted array of the same ranges followed by a scan
 *                          of the overlapping ones.  Both produce the
 *                          notifier pointers; same queries for both.  The
 *                          note gives the whole invalidation too (lookup,
 *                          sequence update, one trivial callback per hit),
 *                          whose extra cost is mostly the cache miss of
 *                          reading each hit notifier's ops.
 *
 * The notifiers are disjoint 4K..64K ranges with 0..3 pages between them
 * (userptrs of one process); queries are 4K..64K ranges at random addresses
 * of the same span, so most hit one or two notifiers and some hit none.
 * The mm is a stub (no userfaultfd is needed): the notifier core only uses
 * its tree.  Protocol: one unmeasured warm-up pass each, then GVM_BENCH_REPS
 * alternating passes; medians.  Quick mode uses 5,000 notifiers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "core/itree.h"
#include "mm/notifier.h"
#include "core/sync.h"
#include "mm/mm.h"

struct range {
	uint64_t start, last;
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Both sides call this per hit; it counts and mixes in the address. */
static uint64_t hit_sum;

static struct gvm_notifier_finish *count_start(struct gvm_notifier *n,
					       const struct gvm_notifier_range *r,
					       uint64_t cur_seq)
{
	hit_sum += n->start;
	return NULL;
}

static const struct gvm_notifier_ops count_ops = {
	.invalidate_start = count_start,
};

static void stub_destroy(struct gvm_mm *mm)
{
}

static const struct gvm_mm_ops stub_ops = {
	.name = "bench-stub",
	.destroy = stub_destroy,
};

/* The lookup half of gvm__notifier_invalidate, on its own. */
static double time_lookup(struct gvm_mm *mm, const struct range *q, size_t nq,
			  uint64_t *sum)
{
	struct gvm_notifier_subs *subs = &mm->subs;
	int64_t t0 = gvm_bench_now_ns();
	uintptr_t s = 0;

	for (size_t i = 0; i < nq; i++) {
		struct gvm_itree_iter it;

		gvm__mutex_lock(&subs->lock);
		for (void *n = gvm__itree_iter_first(&subs->tree, &it,
						     q[i].start, q[i].last);
		     n; n = gvm__itree_iter_next(&it))
			s += (uintptr_t)n;
		gvm__mutex_unlock(&subs->lock);
	}
	gvm_bench_keep(s);
	*sum = s;
	return (double)(gvm_bench_now_ns() - t0) / (double)nq;
}

static double time_invalidate(struct gvm_mm *mm, const struct range *q,
			      size_t nq, uint64_t *sum)
{
	int64_t t0 = gvm_bench_now_ns();

	hit_sum = 0;
	for (size_t i = 0; i < nq; i++) {
		struct gvm_notifier_range r = { q[i].start, q[i].last,
						GVM_MM_EVENT_UNMAP, 0 };

		gvm__notifier_invalidate(mm, &r);
	}
	*sum = hit_sum;
	return (double)(gvm_bench_now_ns() - t0) / (double)nq;
}

/* First index whose last >= addr (ranges sorted and disjoint). */
static size_t first_ending_at_or_after(const struct range *r, size_t n,
				       uint64_t addr)
{
	size_t lo = 0, len = n;

	while (len > 0) {
		size_t half = len / 2;

		if (r[lo + half].last < addr) {
			lo += half + 1;
			len -= half + 1;
		} else {
			len = half;
		}
	}
	return lo;
}

static double time_array(const struct range *r, struct gvm_notifier *ns,
			 size_t n, const struct range *q, size_t nq,
			 uint64_t *sum)
{
	int64_t t0 = gvm_bench_now_ns();
	uintptr_t s = 0;

	for (size_t i = 0; i < nq; i++)
		for (size_t j = first_ending_at_or_after(r, n, q[i].start);
		     j < n && r[j].start <= q[i].last; j++)
			s += (uintptr_t)&ns[j];
	gvm_bench_keep(s);
	*sum = s;
	return (double)(gvm_bench_now_ns() - t0) / (double)nq;
}

GVM_BENCH(notifier_lookup_100k,
	  "invalidation: find the notifiers hit among 100k ranges")
{
	const size_t n = ctx->quick ? 5000 : 100000;
	const size_t nq = ctx->quick ? 5000 : 500000;
	double tv[GVM_BENCH_REPS], bv[GVM_BENCH_REPS], iv[GVM_BENCH_REPS];
	struct range *r = malloc(n * sizeof(*r));
	struct range *q = malloc(nq * sizeof(*q));
	struct gvm_notifier *ns = calloc(n, sizeof(*ns));
	uint64_t seed = 0x5eed, cursor = 1ull << 30, base = cursor;
	size_t inserted = 0, hits = 0;
	struct gvm_mm mm;
	int err = 0;

	gvm__mm_init(&mm, &stub_ops);
	if (!r || !q || !ns) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t gap = (rng_next(&seed) % 4) * 4096;
		uint64_t size = (1 + rng_next(&seed) % 16) * 4096;

		r[i].start = cursor + gap;
		r[i].last = r[i].start + size - 1;
		cursor = r[i].last + 1;
	}
	/* Inserted in random order, as binds would come. */
	for (size_t k = 0; k < n; k++) {
		size_t i = (size_t)(((k * 0x9e3779b97f4a7c15ull) >> 7) % n);

		while (ns[i].ops)
			i = (i + 1) % n;
		err = gvm__notifier_insert(&mm, &ns[i], r[i].start,
					   r[i].last - r[i].start + 1,
					   &count_ops);
		if (err)
			goto out;
		inserted++;
	}
	for (size_t i = 0; i < nq; i++) {
		uint64_t size = (1 + rng_next(&seed) % 16) * 4096;

		q[i].start = base + (rng_next(&seed) % (cursor - base)) /
					    4096 * 4096;
		q[i].last = q[i].start + size - 1;
	}

	gvm_bench_pin();
	for (int rep = -1; rep < GVM_BENCH_REPS; rep++) {
		uint64_t s1, s2, s3;
		double a = time_lookup(&mm, q, nq, &s1);
		double b = time_array(r, ns, n, q, nq, &s2);
		double c = time_invalidate(&mm, q, nq, &s3);

		if (s1 != s2) {		/* both must find the same notifiers */
			fprintf(stderr, "notifier_lookup_100k: results differ\n");
			err = -EIO;
			goto out;
		}
		if (rep >= 0) {
			tv[rep] = a;
			bv[rep] = b;
			iv[rep] = c;
		}
	}
	for (size_t i = 0; i < nq && i < 10000; i++)
		hits += gvm__notifier_find_first(&mm, q[i].start, q[i].last,
						 NULL, NULL);
	res->value = gvm_bench_median(tv, GVM_BENCH_REPS);
	res->unit = "ns/op";
	res->baseline = "binary search + scan, sorted array";
	res->baseline_value = gvm_bench_median(bv, GVM_BENCH_REPS);
	res->goal = 1.5;
	snprintf(res->note, sizeof(res->note),
		 "%zu notifiers, %.0f%% of queries hit; whole invalidation "
		 "%.0f ns", n,
		 100.0 * (double)hits / (double)(nq < 10000 ? nq : 10000),
		 gvm_bench_median(iv, GVM_BENCH_REPS));
out:
	for (size_t i = 0; i < n && inserted; i++)
		if (ns[i].ops) {
			gvm__notifier_remove(&ns[i]);
			inserted--;
		}
	gvm__mm_fini(&mm);
	free(ns);
	free(q);
	free(r);
	return err;
}
