/* SPDX-License-Identifier: MIT */
/*
 * Benchmark harness.  Each benchmark measures a gvm figure and a baseline
 * doing the equivalent job without gvm, back to back in the same process,
 * and reports both and their ratio (value / baseline; lower is better).
 * Goals are ratios; nothing here is pass/fail.
 *
 * A benchmark is a function registered with GVM_BENCH(name); it fills a
 * struct gvm_bench_result.  `quick` asks for a smoke-test size (used by the
 * test suite to keep benchmarks from rotting); figures from quick runs mean
 * nothing.
 *
 * Protocol (shared/research/perf-anchors.md §D): warm up first, then run the
 * measured loop and the baseline loop alternately GVM_BENCH_REPS times and
 * report medians.  Every benchmark starts on every CPU (the runner resets
 * the affinity before each, whatever the previous one pinned).
 *
 * Runner options (gvm_bench_main): --repeat N runs each benchmark N times
 * and reports the run with the median ratio and the spread of the ratios;
 * --compare FILE prints each ratio's change against an earlier --json
 * output (bench/bench_compare.c reads it).
 */
#ifndef GVM_BENCH_H
#define GVM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GVM_BENCH_REPS 5

struct gvm_bench_result {
	double value;			/* the gvm figure, in `unit` */
	const char *unit;		/* e.g. "ns/op" */
	const char *baseline;		/* what the baseline is */
	double baseline_value;		/* same unit */
	double goal;			/* ratio goal (<=), 0 if none */
	/*
	 * Latency benchmarks (pct set): value and baseline_value are the
	 * medians (p50) of many samples, tail and baseline_tail their
	 * tail_pct-th percentiles (99 unless the benchmark sets another
	 * before gvm_bench_set_pct()); goal applies to the p50 ratio,
	 * goal_tail to the tail ratio (0 if none).
	 */
	bool pct;
	unsigned int tail_pct;
	double tail, baseline_tail;
	double goal_tail;
	char note[320];			/* optional extra information */
};

struct gvm_bench_ctx {
	bool quick;
};

typedef int (*gvm_bench_fn)(const struct gvm_bench_ctx *ctx,
			    struct gvm_bench_result *res);

void gvm_bench_register(const char *name, const char *what, gvm_bench_fn fn);

#define GVM_BENCH(name, what)                                               \
	static int bench_##name(const struct gvm_bench_ctx *ctx,             \
				struct gvm_bench_result *res);               \
	__attribute__((constructor)) static void bench_register_##name(void) \
	{                                                                    \
		gvm_bench_register(#name, what, bench_##name);               \
	}                                                                    \
	static int bench_##name(const struct gvm_bench_ctx *ctx,             \
				struct gvm_bench_result *res)

/* Monotonic time in ns. */
int64_t gvm_bench_now_ns(void);

/* Median of @n values (reorders @v). */
double gvm_bench_median(double *v, int n);

/* The @pct-th percentile (0..100, nearest rank) of @n values (sorts @v). */
double gvm_bench_percentile(double *v, size_t n, double pct);

/*
 * Fills the p50 and tail fields of @res from @n samples of the gvm figure
 * and @bn of the baseline (both arrays get sorted), each divided by
 * @scale (1000 turns ns samples into us).  The tail is the
 * res->tail_pct-th percentile, the 99th if that is 0.
 */
void gvm_bench_set_pct(struct gvm_bench_result *res, double *v, size_t n,
		       double *b, size_t bn, double scale);

/*
 * Fills value and baseline_value of @res with the medians of the
 * GVM_BENCH_REPS passes in @v and @b (reorders both).
 */
void gvm_bench_set_median(struct gvm_bench_result *res, double *v, double *b);

/*
 * Two arrays of @n sample slots, for the gvm figure and the baseline;
 * -ENOMEM (nothing allocated) or 0.  Freed with gvm_bench_samples_free().
 */
int gvm_bench_samples(size_t n, double **v, double **b);
void gvm_bench_samples_free(double *v, double *b);

/* Keeps the compiler from optimising a value away. */
#define gvm_bench_keep(x) __asm__ __volatile__("" : : "r"(x) : "memory")

/*
 * Baseline of the page-table benchmarks: writes @n 8-byte entries
 * (valid | addr + i * step) to @a, as a raw loop would; returns the ns.
 */
double gvm_bench_fill_entries(uint64_t *a, uint64_t n, uint64_t addr,
			      uint64_t step);

/* Pins the calling thread to CPU 0 when possible (protocol step 3). */
void gvm_bench_pin(void);

/*
 * Puts the calling thread on CPU @cpu (< 0: every CPU).  False if the
 * machine has fewer CPUs than that or the call failed.
 */
bool gvm_bench_run_on_cpu(int cpu);

/*
 * Backs [p, p + len) (its 2 MiB-aligned part) with transparent huge pages
 * now, as gvm's own heap is (core/alloc.c), so that a baseline in
 * application memory is measured on the same page size as gvm's side;
 * gvm_bench_huge_libc_heap() does it for malloc()'s brk heap (tsearch()
 * nodes).  The number of bytes now in huge pages (0 where THP is off).
 */
size_t gvm_bench_huge(void *p, size_t len);
size_t gvm_bench_huge_libc_heap(void);

/*
 * Waits (yielding) until thread @tid of this process is asleep (state S
 * in /proc), so that a wake-up measured next finds it blocked, not
 * spinning.  False if /proc cannot tell.
 */
bool gvm_bench_wait_asleep(int tid);

/*
 * A userfaultfd of the benchmark's own (O_CLOEXEC, O_NONBLOCK if
 * @nonblock) with UFFDIO_API done for @features; -1 if either failed.
 * For the baselines and floors that use userfaultfd without gvm.
 */
int gvm_bench_uffd(uint64_t features, bool nonblock);

/* One benchmark of an earlier `gvm bench --json` output (--compare). */
struct gvm_bench_old {
	char name[64];
	double ratio;		/* NAN if the file had null */
	double ratio_tail;	/* "ratio_pNN"; NAN if absent */
};

/*
 * Reads @path, an earlier `gvm bench --json` output: 0 with a malloc'ed
 * array in *@out (*@nr entries), or -1 with the reason in @err (no crash
 * whatever the file holds).  bench_compare.c.
 */
int gvm_bench_read_json(const char *path, struct gvm_bench_old **out,
			size_t *nr, char *err, size_t errlen);

/* Entry point used by `gvm bench`: argv are the bench arguments. */
int gvm_bench_main(int argc, char **argv);

#endif
