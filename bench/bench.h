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
 * report medians.
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
	 * medians (p50) of many samples, p99 and baseline_p99 their 99th
	 * percentiles; goal applies to the p50 ratio, goal_p99 to the p99
	 * ratio (0 if none).
	 */
	bool pct;
	double p99, baseline_p99;
	double goal_p99;
	char note[160];			/* optional extra information */
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
 * Fills the p50/p99 fields of @res from @n samples of the gvm figure and
 * @bn of the baseline (both arrays get sorted).
 */
void gvm_bench_set_pct(struct gvm_bench_result *res, double *v, size_t n,
		       double *b, size_t bn);

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

/* Entry point used by `gvm bench`: argv are the bench arguments. */
int gvm_bench_main(int argc, char **argv);

#endif
