// SPDX-License-Identifier: MIT
/*
 * What the gvm tool's subcommands share: argument parsing (sizes, counts,
 * --opt V / --opt=V, the --devices/--vram pair), building the simulated
 * system, byte formatting, the progress line and the statistics block.
 *
 * Single-threaded except gvm_tool_now_ns(); the workloads' threads never
 * print through these.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gvm_tool.h"

int gvm_tool_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned int shift;
	} units[] = {
		{ "", 0 },	{ "K", 10 },   { "k", 10 },   { "KiB", 10 },
		{ "M", 20 },	{ "m", 20 },   { "MiB", 20 }, { "G", 30 },
		{ "g", 30 },	{ "GiB", 30 }, { "T", 40 },   { "TiB", 40 },
	};
	unsigned long long v;
	char *end;
	size_t i;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || !v)
		return -EINVAL;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix))
			continue;
		if (v > (UINT64_MAX >> units[i].shift))
			return -EINVAL;
		*out = (uint64_t)v << units[i].shift;
		return 0;
	}
	return -EINVAL;
}

int gvm_tool_parse_count(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || !v || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int gvm_tool_option(int argc, char **argv, int *i, const char *name,
		    const char **val)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (strncmp(a, name, n))
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n])
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

int gvm_tool_system_option(int argc, char **argv, int *i, const char *cmd,
			   struct gvm_tool_system *sys)
{
	const char *v;
	uint64_t n;
	int r;

	if (!strcmp(argv[*i], "--link")) {
		sys->link = true;
		return 1;
	}
	r = gvm_tool_option(argc, argv, i, "--devices", &v);
	if (r < 0)
		goto missing;
	if (r) {
		if (gvm_tool_parse_count(v, GVM_TOOL_MAX_DEVICES, &n)) {
			fprintf(stderr, "gvm %s: --devices wants a number "
				"from 1 to %d, not '%s'\n",
				cmd, GVM_TOOL_MAX_DEVICES, v);
			return 2;
		}
		sys->nr_devices = (unsigned int)n;
		return 1;
	}
	r = gvm_tool_option(argc, argv, i, "--policy", &v);
	if (r < 0)
		goto missing;
	if (r) {
		const char *name, *what;

		if (!gvm_svm_policy_select(v)) {
			sys->policy = v;
			return 1;
		}
		fprintf(stderr, "gvm %s: --policy wants one of these SVM "
			"policies, not '%s':\n", cmd, v);
		for (unsigned int k = 0;
		     (name = gvm_svm_policy_list(k, &what)); k++)
			fprintf(stderr, "  %-9s %s\n", name, what);
		return 2;
	}
	r = gvm_tool_option(argc, argv, i, "--vram", &v);
	if (r < 0)
		goto missing;
	if (r) {
		if (gvm_tool_parse_size(v, &n) || n % 4096 || n < (1u << 20)) {
			fprintf(stderr, "gvm %s: --vram wants a size of at "
				"least 1M in 4K multiples (4096, 64K, 256M, "
				"1G), not '%s'\n", cmd, v);
			return 2;
		}
		if (n > GVM_SIM_VRAM_MAX) {
			char b[32];

			fprintf(stderr, "gvm %s: --vram %s is more than a "
				"simulated device can have (%s)\n", cmd, v,
				gvm_tool_bytes(b, sizeof(b), GVM_SIM_VRAM_MAX));
			return 2;
		}
		sys->vram_size = n;
		return 1;
	}
	return 0;
missing:
	fprintf(stderr, "gvm %s: %s needs a value\n", cmd, argv[*i]);
	return 2;
}

int gvm_tool_system_create(struct gvm_tool_system *sys)
{
	unsigned int i;
	int err;

	if (!sys->nr_devices)
		sys->nr_devices = 1;
	for (i = 0; i < sys->nr_devices; i++) {
		struct gvm_sim_config cfg = { .vram_size = sys->vram_size };
		char name[16];

		snprintf(name, sizeof(name), "sim%u", i);
		cfg.name = name;
		err = gvm_sim_device_create(&cfg, &sys->dev[i]);
		if (err) {
			fprintf(stderr, "gvm: cannot create simulated device "
				"%u: %s\n", i, strerror(-err));
			while (i--)
				gvm_device_put(sys->dev[i]);
			return err;
		}
	}
	for (i = 1; sys->link && i < sys->nr_devices; i++) {
		err = gvm_device_link(sys->dev[i - 1], sys->dev[i], NULL);
		if (err) {
			fprintf(stderr, "gvm: cannot link devices %u and %u: "
				"%s\n", i - 1, i, strerror(-err));
			gvm_tool_system_destroy(sys);
			return err;
		}
	}
	return 0;
}

void gvm_tool_system_destroy(struct gvm_tool_system *sys)
{
	unsigned int i;

	for (i = 0; i < sys->nr_devices; i++) {
		if (sys->dev[i])
			gvm_device_put(sys->dev[i]);
		sys->dev[i] = NULL;
	}
}

uint64_t gvm_tool_host_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || size <= 0)
		return UINT64_MAX;
	return (uint64_t)pages * (uint64_t)size;
}

const char *gvm_tool_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
					    "PiB", "EiB" };
	unsigned int u = 0;
	uint64_t whole = bytes, rem = 0;

	while (whole >= 1024 && u < 6) {
		rem = whole % 1024;
		whole /= 1024;
		u++;
	}
	if (!rem || whole >= 100)
		snprintf(buf, len, "%" PRIu64 " %s", whole, unit[u]);
	else
		snprintf(buf, len, "%.1f %s", (double)whole + rem / 1024.0,
			 unit[u]);
	return buf;
}

const char *gvm_tool_page_sizes(char *buf, size_t len, uint64_t mask)
{
	static const char *const names[] = { "4K", "64K", "2M", "1G" };
	static const uint64_t sizes[] = { GVM_PAGE_4K, GVM_PAGE_64K,
					  GVM_PAGE_2M, GVM_PAGE_1G };
	size_t off = 0, i;

	buf[0] = 0;
	for (i = 0; i < 4; i++)
		if ((mask & sizes[i]) && off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s",
						off ? " " : "", names[i]);
	return buf;
}

int64_t gvm_tool_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void gvm_tool_progress_init(struct gvm_tool_progress *p, const char *what)
{
	p->what = what;
	p->start_ns = gvm_tool_now_ns();
	p->last_ns = 0;
	p->tty = isatty(STDERR_FILENO);
	p->shown = false;
}

void gvm_tool_progress_update(struct gvm_tool_progress *p, uint64_t done,
			      uint64_t total, const char *unit)
{
	int64_t now = gvm_tool_now_ns();
	double s = (double)(now - p->start_ns) / 1e9;

	if (s < 1.0 || !total)
		return;
	if (!p->tty && now - p->last_ns < 1000000000)
		return;
	p->last_ns = now;
	fprintf(stderr, "\r%s: %3u%%  %" PRIu64 "/%" PRIu64 " %s  %.1f s ",
		p->what, (unsigned int)(done * 100 / total), done, total,
		unit, s);
	fflush(stderr);
	p->shown = true;
}

void gvm_tool_progress_finish(struct gvm_tool_progress *p)
{
	if (!p->shown)
		return;
	/* On a terminal, erase the line; in a log, end it. */
	fputs(p->tty ? "\r\033[K" : "\n", stderr);
	fflush(stderr);
	p->shown = false;
}

void gvm_tool_print_stats(FILE *f, const char *in,
			  const struct gvm_vm_stats *vs,
			  const struct gvm_sim_stats *ss)
{
	uint64_t lookups = ss->tlb_hits + ss->tlb_misses;

	fprintf(f, "%sbinds       %" PRIu64 " call%s, %" PRIu64 " ops (%" PRIu64
		   " queued as jobs, %" PRIu64 " failed); %" PRIu64
		   " mappings now\n",
		in, vs->binds, vs->binds == 1 ? "" : "s", vs->bind_ops,
		vs->bind_jobs, vs->bind_errors, vs->vmas);
	fprintf(f, "%spage tables %" PRIu64 " pages now; entries written "
		   "4K:%" PRIu64 " 2M:%" PRIu64 " 1G:%" PRIu64
		   " 512G:%" PRIu64 "\n",
		in, vs->pt_pages, vs->pte_writes[0], vs->pte_writes[1],
		vs->pte_writes[2], vs->pte_writes[3]);
	fprintf(f, "%skernels     %" PRIu64 " (%" PRIu64 " lanes), %" PRIu64
		   " execs\n",
		in, ss->kernels, ss->lanes, vs->execs);
	fprintf(f, "%sTLB         %" PRIu64 " hits, %" PRIu64 " misses (%.2f%% "
		   "hits), %" PRIu64 " page walks\n",
		in, ss->tlb_hits, ss->tlb_misses,
		lookups ? 100.0 * (double)ss->tlb_hits / (double)lookups : 0.0,
		ss->walks);
	fprintf(f, "%sTLB flushes %" PRIu64 " invalidations, %" PRIu64
		   " of them full flushes\n",
		in, vs->tlb_invals, vs->tlb_full_flushes);
	fprintf(f, "%sfaults      %" PRIu64 " GPU faults; %" PRIu64
		   " evictions\n",
		in, ss->faults, vs->evictions);
	if (vs->svm_ranges_created)
		fprintf(f, "%sSVM         %" PRIu64 " ranges made (%" PRIu64
			   " prefetched, policy %s); faults serviced in "
			   "4K:%" PRIu64 " 64K:%" PRIu64 " 2M:%" PRIu64
			   " ranges\n"
			   "%s            %" PRIu64 " migrations to VRAM (%"
			   PRIu64 " MiB), %" PRIu64 " back to system memory "
			   "(%" PRIu64 " MiB; %" PRIu64 " CPU fault-backs; "
			   "device-wide %" PRIu64 "), %" PRIu64
			   " failed, %" PRIu64 " retried\n"
			   "%s            %" PRIu64 " evicted (%" PRIu64
			   " MiB; device-wide %" PRIu64 "), %" PRIu64
			   " capacity fallbacks, %" PRIu64 " thrashing pins\n"
			   "%s            %" PRIu64 " ranges collected (%"
			   PRIu64 " split); %" PRIu64 " fault batches (largest %"
			   PRIu64 "), %" PRIu64 " binds retried\n",
			in, vs->svm_ranges_created, vs->svm_ranges_prefetched,
			gvm_svm_policy_current(), vs->svm_faults_by_size[0],
			vs->svm_faults_by_size[1], vs->svm_faults_by_size[2],
			in, vs->svm_migrations, vs->svm_bytes_to_vram >> 20,
			vs->svm_to_system, vs->svm_bytes_to_system >> 20,
			vs->svm_cpu_faultbacks, vs->dev_svm_to_system,
			vs->svm_migration_failures, vs->svm_migration_retries,
			in, vs->svm_evictions, vs->svm_bytes_evicted >> 20,
			vs->dev_svm_evictions, vs->svm_capacity_fallbacks,
			vs->svm_thrash_pins,
			in, vs->svm_ranges_dropped, vs->svm_ranges_split,
			vs->fault_batches, vs->fault_batch_max,
			vs->fault_retries);
}
