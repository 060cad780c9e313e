// SPDX-License-Identifier: MIT
/*
 * gvm run WORKLOAD: runs a workload on N simulated devices (one VM each,
 * one thread per device) and reports what happened: binds, page-table
 * pages, kernels, TLB hits/misses/invalidations, faults, bytes moved, wall
 * time and bandwidth or bind rate.  --trace FILE records a Chrome/Perfetto
 * trace of the whole run (docs/tool.md).
 *
 * Threads: the main thread parses, creates the devices, starts the
 * workers, prints the progress line until they finish, then reports.
 * Workers only touch their struct run_dev (and stdout through run_say(),
 * which only device 0 uses).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gvm/trace.h>

#include "core/det.h"
#include "core/sync.h"
#include "det.h"
#include "run.h"

static const struct run_workload *const workloads[] = {
	&gvm_run_triad,
	&gvm_run_bind_churn,
	&gvm_run_svm_stream,
	&gvm_run_svm_random,
	&gvm_run_svm_multi,
};

#define NR_WORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f,
		"usage: gvm run WORKLOAD [--devices N] [--vram SIZE] "
		"[--size SIZE] [--iters N]\n"
		"                        [--link] [--policy NAME] [--trace FILE] "
		"[--explain]\n"
		"                        [--model] [--record FILE [--seed S]]\n"
		"workloads:\n");
	for (i = 0; i < NR_WORKLOADS; i++)
		fprintf(f, "  %-11s %s\n", workloads[i]->name,
			workloads[i]->what);
	fprintf(f,
		"options:\n"
		"  --devices N   simulated devices, one VM and thread each [1]\n"
		"  --link        link the devices into one owner group (peer "
		"to peer)\n"
		"  --policy NAME SVM policy: default, remote, migrate, prefetch "
		"(docs/policy.md)\n"
		"  --vram SIZE   VRAM per device [256M, or what the workload "
		"needs]\n"
		"  --size SIZE   buffer size (4096, 64K, 256M, 1G) [per "
		"workload]\n"
		"  --iters N     iterations [per workload]\n"
		"  --trace FILE  write a Chrome/Perfetto trace (ui.perfetto.dev)\n"
		"  --record FILE run deterministically (seeded scheduler, "
		"virtual clock) and\n"
		"                write a replay file for gvm replay (triad, "
		"bind-churn,\n"
		"                svm-stream and svm-random with --model)\n"
		"  --model       SVM on a model mm (gvm_mm_model_create), not "
		"the process's\n"
		"                (svm-stream, svm-random)\n"
		"  --seed S      the deterministic scheduler's seed [1]\n"
		"  --explain     say what happens at each step (device 0)\n");
}

static pthread_mutex_t say_lock = PTHREAD_MUTEX_INITIALIZER;

void run_fail(struct run_dev *d, const char *fmt, ...)
{
	va_list ap;

	if (d->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
	d->failed = true;
}

void run_say(const struct run_dev *d, const char *fmt, ...)
{
	va_list ap;

	if (!d->explain)
		return;
	pthread_mutex_lock(&say_lock);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	pthread_mutex_unlock(&say_lock);
}

void run_snapshot(struct run_dev *d, struct gvm_vm *vm)
{
	if (gvm_vm_stats(vm, &d->vs))
		memset(&d->vs, 0, sizeof(d->vs));
	if (gvm_sim_stats(d->dev, &d->ss))
		memset(&d->ss, 0, sizeof(d->ss));
}

int run_exec(struct gvm_queue *q, const struct gvm_kernel *k,
	     struct gvm_fence *wait, struct gvm_syncobj *wait_obj,
	     struct gvm_fence **out)
{
	struct gvm_sync s[3];
	uint32_t n = 0;

	memset(s, 0, sizeof(s));
	if (wait) {
		s[n].type = GVM_SYNC_FENCE;
		s[n++].fence = wait;
	}
	if (wait_obj) {
		s[n].type = GVM_SYNC_SYNCOBJ;
		s[n++].syncobj = wait_obj;
	}
	if (out) {
		*out = NULL;
		s[n].type = GVM_SYNC_FENCE;
		s[n].flags = GVM_SYNC_SIGNAL;
		s[n++].out = out;
	}
	return gvm_exec(q, k, s, n);
}

int run_wait(struct gvm_fence *f)
{
	int err = gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
	int st = gvm_fence_get_status(f);

	gvm_fence_put(f);
	if (err)
		return err;
	return st == 1 ? 0 : st < 0 ? st : -EIO;
}

/* --explain: what is simulated, before the workload narrates. */
static void explain_header(const struct run_opts *o)
{
	struct gvm_device_info di;
	char b1[32], b2[32];

	if (gvm_device_query(o->sys.dev[0], &di))
		return;
	printf("gvm run %s: %s\n\n", o->w->name, o->w->intro);
	printf("What is simulated (see gvm info): %u GPU%s (%s%s), built "
	       "from host memory\nand threads: %s of VRAM%s (a memory "
	       "arena the CPU can map too),\n%u compute and %u copy "
	       "engine%s (threads) with a %u-entry TLB each, and an MMU\n"
	       "that walks the page tables gvm writes into VRAM.  Kernels are "
	       "C functions\nthe engines run lane by lane (one lane per %s "
	       "here); each load and store\nis translated by the TLB.  "
	       "Everything else is gvm itself: VMs, VM_BIND, page\ntables, "
	       "buffer placement, the job scheduler, fences, TLB "
	       "invalidation.\n\n",
	       o->sys.nr_devices, o->sys.nr_devices == 1 ? "" : "s", di.name,
	       o->sys.nr_devices == 1 ? "" : ", ...",
	       gvm_tool_bytes(b1, sizeof(b1), di.vram_size),
	       o->sys.nr_devices == 1 ? "" : " each", di.nr_compute,
	       di.nr_copy, di.nr_copy == 1 ? "" : "s", di.tlb_entries,
	       gvm_tool_bytes(b2, sizeof(b2), GVM_KERNEL_LANE_BYTES));
	if (o->sys.nr_devices > 1)
		printf("Each device runs the same steps in its own thread; "
		       "%s narrates.\n\n", di.name);
	fflush(stdout);
}

static unsigned int nr_finished;	/* workers done; atomic */

static void *dev_thread(void *arg)
{
	struct run_dev *d = arg;

	d->o->w->run(d);
	__atomic_fetch_add(&nr_finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int parse(int argc, char **argv, struct run_opts *o)
{
	bool size_set = false, iters_set = false, seed_set = false;
	char b1[32], b2[32], b3[32];
	uint64_t need;
	const char *v;
	size_t k;
	int r;

	if (argc < 1 || argv[0][0] == '-') {
		if (argc >= 1 && (!strcmp(argv[0], "--help") ||
				  !strcmp(argv[0], "-h"))) {
			usage(stdout);
			return 0;
		}
		fprintf(stderr, "gvm run: missing workload\n");
		goto usage;
	}
	for (k = 0; k < NR_WORKLOADS; k++)
		if (!strcmp(argv[0], workloads[k]->name))
			o->w = workloads[k];
	if (!o->w) {
		fprintf(stderr, "gvm run: unknown workload '%s'\n", argv[0]);
		goto usage;
	}
	for (int i = 1; i < argc; i++) {
		r = gvm_tool_system_option(argc, argv, &i, "run", &o->sys);
		if (r == 2)
			goto usage;
		if (r == 1)
			continue;
		if (!strcmp(argv[i], "--explain")) {
			o->explain = true;
			continue;
		}
		if (!strcmp(argv[i], "--model")) {
			o->model = true;
			continue;
		}
		if ((r = gvm_tool_option(argc, argv, &i, "--size", &v))) {
			if (r < 0)
				goto missing;
			if (gvm_tool_parse_size(v, &o->size) ||
			    o->size % 4096) {
				fprintf(stderr, "gvm run: --size wants a "
					"multiple of 4096 (4096, 64K, 256M, "
					"1G), not '%s'\n", v);
				goto usage;
			}
			size_set = true;
			continue;
		}
		if ((r = gvm_tool_option(argc, argv, &i, "--iters", &v))) {
			if (r < 0)
				goto missing;
			if (gvm_tool_parse_count(v, 1000000000, &o->iters)) {
				fprintf(stderr, "gvm run: --iters wants a "
					"number from 1 to 10^9, not '%s'\n", v);
				goto usage;
			}
			iters_set = true;
			continue;
		}
		if ((r = gvm_tool_option(argc, argv, &i, "--record", &v))) {
			if (r < 0)
				goto missing;
			if (!*v) {
				fprintf(stderr, "gvm run: --record wants a "
					"file name\n");
				goto usage;
			}
			o->record = v;
			continue;
		}
		if ((r = gvm_tool_option(argc, argv, &i, "--seed", &v))) {
			char *end;

			if (r < 0)
				goto missing;
			o->seed = strtoull(v, &end, 0);
			if (!*v || *end) {
				fprintf(stderr, "gvm run: --seed wants a "
					"number, not '%s'\n", v);
				goto usage;
			}
			seed_set = true;
			continue;
		}
		if ((r = gvm_tool_option(argc, argv, &i, "--trace", &v))) {
			if (r < 0)
				goto missing;
			if (!*v) {
				fprintf(stderr, "gvm run: --trace wants a "
					"file name\n");
				goto usage;
			}
			o->trace = v;
			continue;
		}
		fprintf(stderr, "gvm run: unknown argument '%s'\n", argv[i]);
		goto usage;
missing:
		fprintf(stderr, "gvm run: %s needs a value\n", argv[i]);
		goto usage;
	}
	if (seed_set && !o->record) {
		fprintf(stderr, "gvm run: --seed goes with --record\n");
		goto usage;
	}
	if (!seed_set)
		o->seed = 1;
	if (o->model && !o->w->model) {
		fprintf(stderr, "gvm run: %s does not run on a model mm "
			"(--model)\n", o->w->name);
		goto usage;
	}
	if (o->record && !o->w->det && !o->model) {
		fprintf(stderr, "gvm run: %s cannot run deterministically "
			"(--record): its CPU-side memory events come from the "
			"kernel's userfaultfd thread%s\n", o->w->name,
			o->w->model ? " (add --model)" : "");
		goto usage;
	}
	if (!size_set)
		o->size = o->w->default_size;
	if (!iters_set)
		o->iters = o->w->default_iters;
	if (!o->sys.nr_devices)
		o->sys.nr_devices = 1;
	if (o->w->check && o->w->check(o))
		goto usage;
	/*
	 * No buffer can be larger than a device's VRAM: refusing those first
	 * keeps vram_needed() (a few times --size) far from overflowing.
	 */
	if (o->size > GVM_SIM_VRAM_MAX) {
		fprintf(stderr, "gvm run: --size %s is more than a simulated "
			"device's VRAM can hold (%s)\n",
			gvm_tool_bytes(b1, sizeof(b1), o->size),
			gvm_tool_bytes(b2, sizeof(b2), GVM_SIM_VRAM_MAX));
		goto usage;
	}
	need = o->w->vram_needed(o);
	/* Simulated VRAM is host memory, written whole (BOs start zeroed):
	   more than the host has would end in the OOM killer. */
	if (need <= GVM_SIM_VRAM_MAX &&
	    need * o->sys.nr_devices > gvm_tool_host_memory()) {
		fprintf(stderr, "gvm run: %s with --size %s needs %s of VRAM "
			"per device, more than this host's memory (%s) for "
			"%u device(s)\n", o->w->name,
			gvm_tool_bytes(b1, sizeof(b1), o->size),
			gvm_tool_bytes(b2, sizeof(b2), need),
			gvm_tool_bytes(b3, sizeof(b3), gvm_tool_host_memory()),
			o->sys.nr_devices);
		goto usage;
	}
	if (need > GVM_SIM_VRAM_MAX) {
		fprintf(stderr, "gvm run: %s with --size %s needs %s of VRAM "
			"per device; a simulated device has at most %s\n",
			o->w->name, gvm_tool_bytes(b1, sizeof(b1), o->size),
			gvm_tool_bytes(b2, sizeof(b2), need),
			gvm_tool_bytes(b3, sizeof(b3), GVM_SIM_VRAM_MAX));
		goto usage;
	}
	if (!o->sys.vram_size) {
		/*
		 * The simulator's default, or what the workload needs: powers
		 * of two up to GVM_SIM_VRAM_MAX, which need does not exceed.
		 */
		uint64_t vram = 256ull << 20;

		while (vram < need && vram < GVM_SIM_VRAM_MAX / 2)
			vram *= 2;
		o->sys.vram_size = vram < need ? GVM_SIM_VRAM_MAX : vram;
	} else if (o->sys.vram_size < need) {
		fprintf(stderr, "gvm run: %s with --size %s needs %s of VRAM "
			"per device; --vram is %s\n", o->w->name,
			gvm_tool_bytes(b1, sizeof(b1), o->size),
			gvm_tool_bytes(b2, sizeof(b2), need),
			gvm_tool_bytes(b3, sizeof(b3), o->sys.vram_size));
		goto usage;
	}
	return 1;
usage:
	usage(stderr);
	return -2;
}

/* Runs the parsed workload; the process exit status. */
static int run_parsed(struct run_opts *op)
{
	struct run_opts o = *op;
	struct gvm_tool_progress prog;
	struct run_dev *devs;
	int64_t t0, wall;
	unsigned int i, started = 0;
	int status = 0, err;

	if (o.trace) {
		err = gvm_trace_start(o.trace);
		if (err) {
			fprintf(stderr, "gvm run: cannot write the trace to "
				"'%s': %s\n", o.trace, strerror(-err));
			return 1;
		}
	}
	devs = calloc(o.sys.nr_devices, sizeof(*devs));
	if (!devs || gvm_tool_system_create(&o.sys)) {
		if (o.trace)
			gvm_trace_stop();
		free(devs);
		return 1;
	}

	if (o.explain)
		explain_header(&o);
	t0 = gvm_tool_now_ns();
	for (i = 0; i < o.sys.nr_devices; i++) {
		struct run_dev *d = &devs[i];
		struct gvm_device_info di;

		d->o = &o;
		d->index = i;
		d->dev = o.sys.dev[i];
		d->explain = o.explain && i == 0;
		d->name = "sim";
		if (!gvm_device_query(d->dev, &di))
			d->name = strdup(di.name);
		err = gvm__thread_create(&d->thread, dev_thread, d);
		if (err) {
			fprintf(stderr, "gvm run: pthread_create: %s\n",
				strerror(-err));
			status = 1;
			break;
		}
		started++;
	}
	if (started < o.sys.nr_devices && o.w->abort)
		o.w->abort();
	/* Poll every 10 ms, so that short runs end without delay. */
	gvm_tool_progress_init(&prog, o.w->name);
	for (unsigned int tick = 0;
	     __atomic_load_n(&nr_finished, __ATOMIC_ACQUIRE) < started;
	     tick++) {
		uint64_t done = 0, total = 0;

		gvm__sleep_ns(10 * 1000 * 1000);
		if (tick % 10 != 9)
			continue;
		for (i = 0; i < started; i++) {
			done += __atomic_load_n(&devs[i].done,
						__ATOMIC_RELAXED);
			total += __atomic_load_n(&devs[i].total,
						 __ATOMIC_RELAXED);
		}
		gvm_tool_progress_update(&prog, done, total, o.w->unit);
	}
	for (i = 0; i < started; i++)
		gvm__thread_join(devs[i].thread);
	wall = gvm_tool_now_ns() - t0;
	gvm_tool_progress_finish(&prog);

	for (i = 0; i < started; i++) {
		struct run_dev *d = &devs[i];

		if (d->failed) {
			fprintf(stderr, "gvm run %s: %s: %s\n", o.w->name,
				d->name, d->error);
			status = 1;
			continue;
		}
		if (o.explain && i == 0)
			printf("\nWhat the counters say (gvm_vm_stats() and "
			       "gvm_sim_stats()):\n");
		printf("%s: %s\n", d->name, d->result);
		o.w->report(d);
		gvm_tool_print_stats(stdout, "  ", &d->vs, &d->ss);
	}
	if (!status)
		o.w->total(devs, started, wall);
	if (!status && o.explain)
		printf("\nNext: gvm run %s --trace t.json (open t.json in "
		       "ui.perfetto.dev),\n      gvm run bind-churn, gvm run "
		       "--help, gvm info (docs/tool.md).\n",
		       o.w->name);
	for (i = 0; i < started; i++)
		if (strcmp(devs[i].name, "sim"))
			free((void *)devs[i].name);
	free(devs);
	gvm_tool_system_destroy(&o.sys);
	if (o.trace) {
		err = gvm_trace_stop();
		if (err) {
			fprintf(stderr, "gvm run: writing the trace '%s': %s\n",
				o.trace, strerror(-err));
			status = 1;
		} else {
			printf("trace: %s (open it in https://ui.perfetto.dev "
			       "or chrome://tracing)\n", o.trace);
		}
	}
	return status;
}

/*
 * --record: the same run on the deterministic scheduler (core/det.h),
 * seeded with --seed; the replay file keeps the command line (without
 * --record/--seed), the seed, the decisions, the number of events and the
 * log's hash, which `gvm replay` checks.
 */
static int run_recorded(struct run_opts *o, int argc, char **argv)
{
	struct gvm_det_config cfg = { .seed = o->seed };
	const struct gvm_det_decision *d;
	struct gvm_det_run r = { .seed = o->seed };
	char **args = calloc((size_t)argc, sizeof(*args));
	size_t nr_dec;
	int status, err;

	if (!args)
		return 1;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--record") || !strcmp(argv[i], "--seed")) {
			i++;
			continue;
		}
		if (!strncmp(argv[i], "--record=", 9) ||
		    !strncmp(argv[i], "--seed=", 7))
			continue;
		args[r.run_argc++] = argv[i];
	}
	r.run_argv = args;
	gvm__det_begin(&cfg);
	status = run_parsed(o);
	r.hash = gvm__det_end();
	r.have_hash = true;
	gvm__det_events(&r.events);
	d = gvm__det_decisions(&nr_dec);
	r.script = malloc(nr_dec ? nr_dec : 1);
	if (!r.script) {
		free(args);
		return 1;
	}
	for (size_t i = 0; i < nr_dec; i++)
		r.script[i] = d[i].chosen;
	r.script_len = nr_dec;
	err = gvm_det_write(o->record, &r);
	if (err) {
		fprintf(stderr, "gvm run: cannot write '%s': %s\n", o->record,
			strerror(-err));
		status = 1;
	} else {
		printf("recorded: %s (%zu events, %zu decisions, log hash "
		       "%016" PRIx64 "; gvm replay %s)\n", o->record, r.events,
		       nr_dec, r.hash, o->record);
	}
	free(r.script);
	free(args);
	return status;
}

int gvm_tool_run(int argc, char **argv)
{
	struct run_opts o = { 0 };
	int r = parse(argc, argv, &o);

	if (r <= 0)
		return r ? 2 : 0;
	if (o.record)
		return run_recorded(&o, argc, argv);
	return run_parsed(&o);
}

int gvm_tool_run_replay(const struct gvm_det_run *rec, uint64_t *hash,
			size_t *events)
{
	struct gvm_det_config cfg = { .seed = rec->seed, .fifo = rec->fifo,
				      .script = rec->script,
				      .script_len = rec->script_len,
				      .stop_at = rec->stop_at,
				      .on_stop = gvm_det_stop_here };
	struct run_opts o = { 0 };
	int r = parse(rec->run_argc, rec->run_argv, &o);
	int status;

	if (r <= 0 || o.record)
		return 2;
	gvm__det_begin(&cfg);
	status = run_parsed(&o);
	*hash = gvm__det_end();
	gvm__det_events(events);
	return status;
}

