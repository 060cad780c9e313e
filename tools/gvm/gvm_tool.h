/* SPDX-License-Identifier: MIT */
/*
 * The gvm tool's subcommands and the helpers they share (common.c).
 *
 * Every subcommand returns the process exit status: 0 success, 1 the work
 * failed (a wrong result, an error from the library), 2 bad arguments
 * (one line saying what is wrong, then the usage, on stderr).
 */
#ifndef GVM_TOOL_H
#define GVM_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <gvm/device.h>
#include <gvm/sim.h>
#include <gvm/svm.h>
#include <gvm/vm.h>

int gvm_tool_demo(int argc, char **argv);
int gvm_tool_info(int argc, char **argv);
int gvm_tool_run(int argc, char **argv);
int gvm_tool_plot(int argc, char **argv);

/* ---- arguments ---------------------------------------------------------- */

#define GVM_TOOL_MAX_DEVICES 64

/* The simulated system both `info` and `run` build. */
struct gvm_tool_system {
	unsigned int nr_devices;	/* --devices [1] */
	uint64_t vram_size;		/* --vram, 0: the simulator's default */
	bool link;			/* --link: the devices in one owner
					   group (a chain of links) */
	const char *policy;		/* --policy: the SVM policy, NULL:
					   the library's default */
	struct gvm_device *dev[GVM_TOOL_MAX_DEVICES];
};

/*
 * "4096", "64K", "256M", "1G" (also lower case, and KiB/MiB/GiB) into
 * bytes; > 0.  Returns 0 or -EINVAL.
 */
int gvm_tool_parse_size(const char *s, uint64_t *out);
/* A decimal count in [1, @max]. */
int gvm_tool_parse_count(const char *s, uint64_t max, uint64_t *out);

/*
 * Matches argv[*i] against option @name ("--size"): "--size V" or
 * "--size=V".  Returns 1 and sets *@val (advancing *@i past a separate
 * value), 0 if it is another option, -1 if the value is missing.
 */
int gvm_tool_option(int argc, char **argv, int *i, const char *name,
		    const char **val);

/*
 * Parses --devices, --vram, --link and --policy at argv[*i] into @sys.  Returns 1 (taken),
 * 0 (not one of them), or 2 after printing what is wrong (exit status).
 */
int gvm_tool_system_option(int argc, char **argv, int *i, const char *cmd,
			   struct gvm_tool_system *sys);

/* Creates the devices ("sim0", "sim1", ...); prints and returns errno. */
int gvm_tool_system_create(struct gvm_tool_system *sys);
void gvm_tool_system_destroy(struct gvm_tool_system *sys);

/* ---- output -------------------------------------------------------------- */

/* "64 MiB", "4 KiB", "1.5 GiB" (binary units, at most one decimal). */
const char *gvm_tool_bytes(char *buf, size_t len, uint64_t bytes);
/* The host's physical memory in bytes (UINT64_MAX if unknown). */
uint64_t gvm_tool_host_memory(void);
/* "4K 64K 2M 1G" */
const char *gvm_tool_page_sizes(char *buf, size_t len, uint64_t mask);
int64_t gvm_tool_now_ns(void);

/*
 * A progress line on stderr, carriage-return updated, shown once a run has
 * taken more than a second: "triad:  42% ...".  Updated as often as called
 * on a terminal, once a second otherwise (logs).  Call update() from one
 * thread (the one that waits for the workers), finish() once.
 */
struct gvm_tool_progress {
	const char *what;
	int64_t start_ns, last_ns;
	bool tty;			/* stderr is a terminal */
	bool shown;
};
void gvm_tool_progress_init(struct gvm_tool_progress *p, const char *what);
void gvm_tool_progress_update(struct gvm_tool_progress *p, uint64_t done,
			      uint64_t total, const char *unit);
void gvm_tool_progress_finish(struct gvm_tool_progress *p);

/* The counters `run` reports for one device: its VM and the simulator's. */
void gvm_tool_print_stats(FILE *f, const char *indent,
			  const struct gvm_vm_stats *vs,
			  const struct gvm_sim_stats *ss);

#endif
