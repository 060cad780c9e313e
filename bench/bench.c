// SPDX-License-Identifier: MIT
/*
 * Benchmark runner: registry, command line, table and JSON output.
 * Single-threaded; benchmarks may start threads of their own.
 */
#include "bench.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#define MAX_BENCH 128

static struct {
	const char *name;
	const char *what;
	gvm_bench_fn fn;
} benches[MAX_BENCH];
static int nr_benches;

void gvm_bench_register(const char *name, const char *what, gvm_bench_fn fn)
{
	if (nr_benches == MAX_BENCH)
		abort();
	benches[nr_benches].name = name;
	benches[nr_benches].what = what;
	benches[nr_benches].fn = fn;
	nr_benches++;
}

int64_t gvm_bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double gvm_bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double gvm_bench_percentile(double *v, size_t n, double pct)
{
	size_t k;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	k = (size_t)(pct / 100.0 * (double)n + 0.999999);	/* nearest rank */
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

void gvm_bench_set_pct(struct gvm_bench_result *res, double *v, size_t n,
		       double *b, size_t bn)
{
	res->pct = true;
	res->value = gvm_bench_percentile(v, n, 50);
	res->p99 = gvm_bench_percentile(v, n, 99);
	res->baseline_value = gvm_bench_percentile(b, bn, 50);
	res->baseline_p99 = gvm_bench_percentile(b, bn, 99);
}

void gvm_bench_pin(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: gvm bench [--json] [--quick] [--list] [NAME...]\n");
}

static bool selected(const char *name, int argc, char **argv, int first)
{
	if (first >= argc)
		return true;
	for (int i = first; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		putchar(*s);
	}
	putchar('"');
}

int gvm_bench_main(int argc, char **argv)
{
	struct gvm_bench_ctx ctx = { .quick = false };
	bool json = false, first_json = true;
	int first = 0, failed = 0;
	struct utsname u;

	for (; first < argc && argv[first][0] == '-'; first++) {
		if (!strcmp(argv[first], "--json")) {
			json = true;
		} else if (!strcmp(argv[first], "--quick")) {
			ctx.quick = true;
		} else if (!strcmp(argv[first], "--list")) {
			for (int i = 0; i < nr_benches; i++)
				printf("%-20s %s\n", benches[i].name,
				       benches[i].what);
			return 0;
		} else {
			fprintf(stderr, "gvm bench: unknown option %s\n",
				argv[first]);
			usage(stderr);
			return 2;
		}
	}
	for (int i = first; i < argc; i++) {
		int j;

		for (j = 0; j < nr_benches; j++)
			if (!strcmp(argv[i], benches[j].name))
				break;
		if (j == nr_benches) {
			fprintf(stderr, "gvm bench: no benchmark named %s\n",
				argv[i]);
			usage(stderr);
			return 2;
		}
	}

	uname(&u);
	if (json)
		printf("[");
	else
		printf("gvm bench on %s %s (%s)%s\n"
		       "%-18s %12s %-7s  %-34s %12s %7s %6s %8s %6s\n",
		       u.sysname, u.release, u.machine,
		       ctx.quick ? " -- quick mode: figures are meaningless" : "",
		       "name", "value", "unit", "baseline", "baseline", "ratio",
		       "goal", "p99ratio", "goal");

	for (int i = 0; i < nr_benches; i++) {
		struct gvm_bench_result r;
		double ratio, ratio99;
		int err;

		if (!selected(benches[i].name, argc, argv, first))
			continue;
		memset(&r, 0, sizeof(r));
		fflush(stdout);
		err = benches[i].fn(&ctx, &r);
		if (err) {
			fprintf(stderr, "gvm bench: %s failed: %s\n",
				benches[i].name, strerror(-err));
			failed++;
			continue;
		}
		ratio = r.baseline_value > 0 ? r.value / r.baseline_value : 0;
		ratio99 = r.pct && r.baseline_p99 > 0 ? r.p99 / r.baseline_p99
						       : 0;
		if (json) {
			printf("%s\n  {\"name\": ", first_json ? "" : ",");
			json_string(benches[i].name);
			printf(", \"value\": %.4g, \"unit\": ", r.value);
			json_string(r.unit);
			printf(", \"baseline\": ");
			json_string(r.baseline);
			printf(", \"baseline_value\": %.4g, \"ratio\": %.3f, "
			       "\"goal\": %.3g", r.baseline_value, ratio,
			       r.goal);
			if (r.pct)
				printf(", \"p50\": %.4g, \"p99\": %.4g, "
				       "\"baseline_p50\": %.4g, "
				       "\"baseline_p99\": %.4g, "
				       "\"ratio_p99\": %.3f, \"goal_p99\": %.3g",
				       r.value, r.p99, r.baseline_value,
				       r.baseline_p99, ratio99, r.goal_p99);
			printf(", \"note\": ");
			json_string(r.note);
			printf("}");
			first_json = false;
		} else {
			char goal[16] = "-", goal99[16] = "-", r99[16] = "-";

			if (r.goal > 0)
				snprintf(goal, sizeof(goal), "<=%.3g", r.goal);
			if (r.pct)
				snprintf(r99, sizeof(r99), "%.3f", ratio99);
			if (r.goal_p99 > 0)
				snprintf(goal99, sizeof(goal99), "<=%.3g",
					 r.goal_p99);
			printf("%-18s %12.4g %-7s  %-34s %12.4g %7.3f %6s %8s %6s%s%s\n",
			       benches[i].name, r.value, r.unit, r.baseline,
			       r.baseline_value, ratio, goal, r99, goal99,
			       r.note[0] ? "  " : "", r.note);
			if (r.pct)
				printf("%-18s %12.4g %-7s  %-34s %12.4g   (p99)\n",
				       "", r.p99, r.unit, "", r.baseline_p99);
		}
	}
	if (json)
		printf("\n]\n");
	return failed ? 1 : 0;
}

double gvm_bench_fill_entries(uint64_t *a, uint64_t n, uint64_t addr,
			      uint64_t step)
{
	int64_t t0 = gvm_bench_now_ns();
	uint64_t i;

	for (i = 0; i < n; i++)
		a[i] = 0x3 | (addr + i * step);
	gvm_bench_keep(a);
	return (double)(gvm_bench_now_ns() - t0);
}
