/* SPDX-License-Identifier: MIT */
/*
 * gvm run: the workloads' side.  run.c parses the arguments, builds the
 * simulated system, starts one thread per device running the workload's
 * run(), shows progress, and prints each device's report and the totals.
 *
 * A workload's run() owns everything it creates on its device (VM,
 * queues, BOs) and destroys it before returning, after copying the VM's
 * statistics into its struct run_dev.  It reports progress through
 * run_dev.done out of run_dev.total (relaxed atomics) and failures with
 * run_fail() (the tool then exits 1).
 */
#ifndef GVM_TOOL_RUN_H
#define GVM_TOOL_RUN_H

#include <pthread.h>

#include "gvm_tool.h"

struct run_opts {
	const struct run_workload *w;
	struct gvm_tool_system sys;
	uint64_t size;			/* --size (or the workload's default) */
	uint64_t iters;			/* --iters (idem) */
	const char *trace;		/* --trace FILE or NULL */
	bool explain;			/* --explain: narrate device 0 */
	const char *record;		/* --record FILE or NULL */
	uint64_t seed;			/* --seed (with --record) [1] */
	bool model;			/* --model: SVM on a model mm */
};

struct run_dev {
	const struct run_opts *o;
	unsigned int index;
	struct gvm_device *dev;
	const char *name;		/* the device's */
	bool explain;			/* this device narrates */
	pthread_t thread;

	uint64_t done, total;		/* progress; relaxed atomics */

	/* Results, read after the thread was joined. */
	bool failed;
	char error[256];
	int64_t ns;			/* the measured phase */
	uint64_t bytes;			/* moved in it (triad) */
	uint64_t binds;			/* bind calls in it (churn) */
	uint64_t checks;		/* results checked on the CPU */
	char result[256];		/* one line: what was verified */
	struct gvm_vm_stats vs;
	struct gvm_sim_stats ss;
};

struct run_workload {
	const char *name;
	const char *what;		/* one line for the usage */
	const char *intro;		/* --explain: what it shows */
	uint64_t default_size, default_iters;
	const char *unit;		/* of done/total, for the progress line */
	/* Runs deterministically (--record): its threads are gvm threads and
	   it makes no CPU-side mapping change the kernel reports. */
	bool det;
	/* Runs on a model mm (--model, gvm_mm_model_create): its CPU-side
	   events then come from calls, so it also runs deterministically. */
	bool model;
	/* Checks --size etc. beyond the generic rules; prints, returns 2. */
	int (*check)(const struct run_opts *o);
	/* Bytes of VRAM the workload needs on each device. */
	uint64_t (*vram_needed)(const struct run_opts *o);
	void (*run)(struct run_dev *d);
	/* Optional: not every device's thread could be started; those
	   that were must not wait for the others (called once, after). */
	void (*abort)(void);
	/* Prints the per-device figures (after the statistics). */
	void (*report)(const struct run_dev *d);
	/* Prints the line for all devices together. */
	void (*total)(const struct run_dev *devs, unsigned int n,
		      int64_t wall_ns);
};

extern const struct run_workload gvm_run_triad, gvm_run_bind_churn,
	gvm_run_svm_stream, gvm_run_svm_random, gvm_run_svm_multi;

/* Records the first failure of @d (printf-style); later ones are dropped. */
__attribute__((format(printf, 2, 3)))
void run_fail(struct run_dev *d, const char *fmt, ...);
/* Prints a narration line if @d narrates (--explain, device 0). */
__attribute__((format(printf, 2, 3)))
void run_say(const struct run_dev *d, const char *fmt, ...);
/* Copies the VM's and the device's statistics into @d. */
void run_snapshot(struct run_dev *d, struct gvm_vm *vm);

/* An exec with an optional wait fence and an out-fence (*@out). */
int run_exec(struct gvm_queue *q, const struct gvm_kernel *k,
	     struct gvm_fence *wait, struct gvm_syncobj *wait_obj,
	     struct gvm_fence **out);
/* Waits for @f and drops it: 0 if it signalled without error. */
int run_wait(struct gvm_fence *f);

/* Gigabytes (1e9) per second. */
static inline double run_gbps(uint64_t bytes, int64_t ns)
{
	return ns > 0 ? (double)bytes / (double)ns : 0.0;
}

#endif
