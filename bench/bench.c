// SPDX-License-Identifier: MIT
/*
 * Benchmark runner: registry, command line (--repeat, --compare), table
 * and JSON output, and the helpers benchmarks share (timing, percentiles,
 * thread placement).  Single-threaded; benchmarks may start threads of
 * their own.
 */
#include "bench.h"
#include "mm/uffd_compat.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

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
		       double *b, size_t bn, double scale)
{
	double tail = res->tail_pct ? res->tail_pct : 99;

	res->pct = true;
	res->tail_pct = (unsigned int)tail;
	res->value = gvm_bench_percentile(v, n, 50) / scale;
	res->tail = gvm_bench_percentile(v, n, tail) / scale;
	res->baseline_value = gvm_bench_percentile(b, bn, 50) / scale;
	res->baseline_tail = gvm_bench_percentile(b, bn, tail) / scale;
}

void gvm_bench_set_median(struct gvm_bench_result *res, double *v, double *b)
{
	res->value = gvm_bench_median(v, GVM_BENCH_REPS);
	res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
}

int gvm_bench_samples(size_t n, double **v, double **b)
{
	*v = calloc(n, sizeof(**v));
	*b = calloc(n, sizeof(**b));
	if (*v && *b)
		return 0;
	gvm_bench_samples_free(*v, *b);
	return -ENOMEM;
}

void gvm_bench_samples_free(double *v, double *b)
{
	free(v);
	free(b);
}

void gvm_bench_pin(void)
{
	gvm_bench_run_on_cpu(0);
}

bool gvm_bench_run_on_cpu(int cpu)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int i;

	if (n < 1 || cpu >= n)
		return false;
	CPU_ZERO(&set);
	for (i = 0; i < n && i < CPU_SETSIZE; i++)
		if (cpu < 0 || i == cpu)
			CPU_SET(i, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0;
}

size_t gvm_bench_huge(void *p, size_t len)
{
	const uintptr_t m2 = 2u << 20;
	uintptr_t lo = ((uintptr_t)p + m2 - 1) & ~(m2 - 1);
	uintptr_t hi = ((uintptr_t)p + len) & ~(m2 - 1);

	if (hi <= lo || madvise((void *)lo, hi - lo, MADV_HUGEPAGE) ||
	    madvise((void *)lo, hi - lo, MADV_COLLAPSE))
		return 0;
	return hi - lo;
}

size_t gvm_bench_huge_libc_heap(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long lo, hi;
	char line[512];
	size_t done = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "[heap]") &&
		    sscanf(line, "%lx-%lx", &lo, &hi) == 2) {
			done = gvm_bench_huge((void *)lo, hi - lo);
			break;
		}
	fclose(f);
	return done;
}

/* The state letter of /proc/self/task/@tid/stat, or 0. */
static char thread_state(int tid)
{
	char path[64], buf[512], *rp;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	rp = strrchr(buf, ')');		/* the name may hold spaces */
	return rp && rp[1] == ' ' ? rp[2] : 0;
}

int gvm_bench_uffd(uint64_t features, bool nonblock)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = (int)syscall(__NR_userfaultfd,
			      O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));

	if (fd >= 0 && ioctl(fd, UFFDIO_API, &api)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

bool gvm_bench_wait_asleep(int tid)
{
	char st;

	while ((st = thread_state(tid)) && st != 'S')
		sched_yield();
	return st == 'S';
}

static void usage(FILE *f)
{
	fprintf(f, "usage: gvm bench [--json] [--quick] [--list] "
		   "[--repeat N] [--compare FILE.json] [NAME...]\n");
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

/* ", "key": x" with x printed by @fmt, or null if not finite. */
static void json_num(const char *key, const char *fmt, double x)
{
	printf(", \"%s\": ", key);
	if (isfinite(x))
		printf(fmt, x);
	else
		printf("null");
}

/* One benchmark's runs (--repeat) and what is printed of them. */
struct outcome {
	struct gvm_bench_result r;	/* the run with the median ratio */
	double ratio, tratio;		/* its ratios (tail: 0 if none) */
	int n;				/* runs */
	double min, max, tmin, tmax;	/* spread of the runs' ratios */
	const struct gvm_bench_old *old;	/* --compare: NULL if absent */
	double load[2];			/* 1-minute load average before and
					   after the runs (NaN: unknown) */
};

/* The host's 1-minute load average, or NaN (the figures' context). */
static double load_now(void)
{
	double l;

	return getloadavg(&l, 1) == 1 ? l : NAN;
}

static double ratio_of(const struct gvm_bench_result *r)
{
	return r->baseline_value > 0 ? r->value / r->baseline_value : 0;
}

static double tail_ratio_of(const struct gvm_bench_result *r)
{
	return r->pct && r->baseline_tail > 0 ? r->tail / r->baseline_tail : 0;
}

/*
 * Runs benchmark @i @n times into @o: the run whose ratio is the median
 * (for an even @n the lower of the two middle ones, so that the figures
 * shown are one run's), and the spread.  0 or the first run's error.
 */
static int run_bench(int i, const struct gvm_bench_ctx *ctx, int n,
		     struct outcome *o)
{
	struct gvm_bench_result *runs = calloc((size_t)n, sizeof(*runs));
	double *ratios = calloc((size_t)n, sizeof(*ratios));
	int k, err = 0;

	if (!runs || !ratios) {
		err = -ENOMEM;
		goto out;
	}
	for (k = 0; k < n && !err; k++) {
		gvm_bench_run_on_cpu(-1);	/* whatever the last one pinned */
		fflush(stdout);
		err = benches[i].fn(ctx, &runs[k]);
		ratios[k] = ratio_of(&runs[k]);
	}
	if (err)
		goto out;
	o->n = n;
	o->min = o->tmin = INFINITY;
	o->max = o->tmax = -INFINITY;
	for (k = 0; k < n; k++) {
		double t = tail_ratio_of(&runs[k]);

		o->min = ratios[k] < o->min ? ratios[k] : o->min;
		o->max = ratios[k] > o->max ? ratios[k] : o->max;
		o->tmin = t < o->tmin ? t : o->tmin;
		o->tmax = t > o->tmax ? t : o->tmax;
	}
	gvm_bench_percentile(ratios, (size_t)n, 50);	/* sorts */
	for (k = 0; k < n; k++)
		if (ratio_of(&runs[k]) == ratios[(n - 1) / 2])
			break;
	o->r = runs[k];
	o->ratio = ratio_of(&o->r);
	o->tratio = tail_ratio_of(&o->r);
out:
	free(runs);
	free(ratios);
	return err;
}

/* "0.95..1.10" */
static void spread(char *buf, size_t len, double lo, double hi)
{
	snprintf(buf, len, "%.3g..%.3g", lo, hi);
}

/*
 * "was 1.20, +5%": the change of @now against @old; a rise above 25 %
 * (perf-anchors.md §D5, lower is better) is flagged "worse", a fall of
 * the same factor "better".
 */
static void change(char *buf, size_t len, double now, double old)
{
	double pct;

	if (!isfinite(old) || old <= 0 || !isfinite(now)) {
		snprintf(buf, len, "was %s", isfinite(old) ? "0" : "-");
		return;
	}
	pct = (now / old - 1) * 100;
	snprintf(buf, len, "was %.3g, %+.0f%%%s", old, pct,
		 now > old * 1.25 ? " WORSE" :
		 now * 1.25 < old ? " better" : "");
}

static void print_json(const char *name, const struct outcome *o,
		       bool first)
{
	const struct gvm_bench_result *r = &o->r;
	char k[32];

	printf("%s\n  {\"name\": ", first ? "" : ",");
	json_string(name);
	json_num("value", "%.4g", r->value);
	printf(", \"unit\": ");
	json_string(r->unit);
	printf(", \"baseline\": ");
	json_string(r->baseline);
	json_num("baseline_value", "%.4g", r->baseline_value);
	json_num("ratio", "%.3f", o->ratio);
	json_num("goal", "%.3g", r->goal);
	if (r->pct) {
		json_num("p50", "%.4g", r->value);
		snprintf(k, sizeof(k), "p%u", r->tail_pct);
		json_num(k, "%.4g", r->tail);
		json_num("baseline_p50", "%.4g", r->baseline_value);
		snprintf(k, sizeof(k), "baseline_p%u", r->tail_pct);
		json_num(k, "%.4g", r->baseline_tail);
		snprintf(k, sizeof(k), "ratio_p%u", r->tail_pct);
		json_num(k, "%.3f", o->tratio);
		snprintf(k, sizeof(k), "goal_p%u", r->tail_pct);
		json_num(k, "%.3g", r->goal_tail);
	}
	if (o->n > 1) {
		printf(", \"repeat\": %d", o->n);
		json_num("ratio_min", "%.3f", o->min);
		json_num("ratio_max", "%.3f", o->max);
		if (r->pct) {
			snprintf(k, sizeof(k), "ratio_p%u_min", r->tail_pct);
			json_num(k, "%.3f", o->tmin);
			snprintf(k, sizeof(k), "ratio_p%u_max", r->tail_pct);
			json_num(k, "%.3f", o->tmax);
		}
	}
	if (o->old) {
		json_num("old_ratio", "%.3f", o->old->ratio);
		json_num("ratio_change_pct", "%.1f",
			 (o->ratio / o->old->ratio - 1) * 100);
		if (r->pct)
			json_num("old_ratio_tail", "%.3f", o->old->ratio_tail);
	}
	json_num("load_before", "%.2f", o->load[0]);
	json_num("load_after", "%.2f", o->load[1]);
	printf(", \"note\": ");
	json_string(r->note);
	printf("}");
}

static void print_row(const char *name, const struct outcome *o,
		      bool compare)
{
	const struct gvm_bench_result *r = &o->r;
	char goal[16] = "-", goalt[16] = "-", rt[16] = "-", sp[32] = "",
	     ch[48] = "";

	if (r->goal > 0)
		snprintf(goal, sizeof(goal), "<=%.3g", r->goal);
	if (r->pct)
		snprintf(rt, sizeof(rt), "%.3f", o->tratio);
	if (r->goal_tail > 0)
		snprintf(goalt, sizeof(goalt), "<=%.3g", r->goal_tail);
	if (o->n > 1)
		spread(sp, sizeof(sp), o->min, o->max);
	if (compare)
		change(ch, sizeof(ch), o->ratio,
		       o->old ? o->old->ratio : NAN);
	printf("%-18s %12.4g %-7s  %-34s %12.4g %7.3f %6s",
	       name, r->value, r->unit, r->baseline, r->baseline_value,
	       o->ratio, goal);
	if (o->n > 1)
		printf(" %-13s", sp);
	printf(" %9s %6s", rt, goalt);
	if (compare)
		printf("  %-22s", o->old ? ch : "new");
	printf("%s%s\n", r->note[0] ? "  " : "", r->note);
	if (r->pct) {
		printf("%-18s %12.4g %-7s  %-34s %12.4g   (p%u)", "", r->tail,
		       r->unit, "", r->baseline_tail, r->tail_pct);
		if (o->n > 1) {
			spread(sp, sizeof(sp), o->tmin, o->tmax);
			printf(" p%u ratio %s", r->tail_pct, sp);
		}
		if (compare && o->old) {
			change(ch, sizeof(ch), o->tratio, o->old->ratio_tail);
			printf(" p%u ratio %s", r->tail_pct, ch);
		}
		printf("\n");
	}
}

/* A count for --repeat: 1..1000, or 0. */
static int parse_count(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 1000)
		return 0;
	return (int)v;
}

/*
 * Moves the options (with the values of those that take one) ahead of
 * the benchmark names, keeping both orders: options may come anywhere.
 */
static void options_first(int argc, char **argv)
{
	char *opts[argc > 0 ? argc : 1], *names[argc > 0 ? argc : 1];
	int no = 0, nn = 0, i;

	for (i = 0; i < argc; i++) {
		if (argv[i][0] != '-') {
			names[nn++] = argv[i];
			continue;
		}
		opts[no++] = argv[i];
		if ((!strcmp(argv[i], "--repeat") ||
		     !strcmp(argv[i], "--compare")) && i + 1 < argc)
			opts[no++] = argv[++i];
	}
	memcpy(argv, opts, (size_t)no * sizeof(*argv));
	memcpy(argv + no, names, (size_t)nn * sizeof(*argv));
}

int gvm_bench_main(int argc, char **argv)
{
	struct gvm_bench_ctx ctx = { .quick = false };
	bool json = false, first_json = true;
	struct gvm_bench_old *old = NULL;
	const char *compare = NULL;
	int first = 0, failed = 0, repeat = 1;
	size_t nr_old = 0;
	struct utsname u;
	double load0;

	options_first(argc, argv);
	for (; first < argc && argv[first][0] == '-'; first++) {
		const char *opt = argv[first];

		if (!strcmp(opt, "--json")) {
			json = true;
		} else if (!strcmp(opt, "--quick")) {
			ctx.quick = true;
		} else if (!strcmp(opt, "--list")) {
			for (int i = 0; i < nr_benches; i++)
				printf("%-20s %s\n", benches[i].name,
				       benches[i].what);
			return 0;
		} else if (!strcmp(opt, "--repeat") ||
			   !strcmp(opt, "--compare")) {
			if (first + 1 >= argc) {
				fprintf(stderr, "gvm bench: %s needs a value\n",
					opt);
				usage(stderr);
				return 2;
			}
			first++;
			if (opt[2] == 'c') {
				compare = argv[first];
			} else if (!(repeat = parse_count(argv[first]))) {
				fprintf(stderr, "gvm bench: --repeat wants a "
					"count from 1 to 1000, not '%s'\n",
					argv[first]);
				usage(stderr);
				return 2;
			}
		} else {
			fprintf(stderr, "gvm bench: unknown option %s\n", opt);
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
	if (compare) {
		char err[160];

		if (gvm_bench_read_json(compare, &old, &nr_old, err,
					sizeof(err))) {
			fprintf(stderr, "gvm bench: --compare %s: %s\n",
				compare, err);
			usage(stderr);
			return 2;
		}
	}

	uname(&u);
	load0 = load_now();
	if (json) {
		printf("[");
	} else {
		printf("gvm bench on %s %s (%s)%s\n", u.sysname, u.release,
		       u.machine,
		       ctx.quick ? " -- quick mode: figures are meaningless" : "");
		if (repeat > 1)
			printf("each benchmark run %d times: the figures of "
			       "the run with the median ratio, and the "
			       "ratios' min..max\n", repeat);
		if (compare)
			printf("ratios against %s (lower is better; WORSE: "
			       "up more than 25%%)\n", compare);
		printf("%-18s %12s %-7s  %-34s %12s %7s %6s", "name", "value",
		       "unit", "baseline", "baseline", "ratio", "goal");
		if (repeat > 1)
			printf(" %-13s", "spread");
		printf(" %9s %6s", "tailratio", "goal");
		if (compare)
			printf("  %-22s", "vs earlier");
		printf("\n");
	}

	for (int i = 0; i < nr_benches; i++) {
		struct outcome o;
		int err;

		if (!selected(benches[i].name, argc, argv, first))
			continue;
		memset(&o, 0, sizeof(o));
		o.load[0] = load_now();
		err = run_bench(i, &ctx, repeat, &o);
		o.load[1] = load_now();
		if (err) {
			fprintf(stderr, "gvm bench: %s failed: %s\n",
				benches[i].name, strerror(-err));
			failed++;
			continue;
		}
		for (size_t k = 0; k < nr_old; k++)
			if (!strcmp(old[k].name, benches[i].name))
				o.old = &old[k];
		if (json) {
			print_json(benches[i].name, &o, first_json);
			first_json = false;
		} else {
			print_row(benches[i].name, &o, compare != NULL);
		}
	}
	if (json)
		printf("\n]\n");
	else
		printf("load average (1 min): %.2f at the start, %.2f at the "
		       "end (other work on the host slows latency figures "
		       "most)\n", load0, load_now());
	free(old);
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
