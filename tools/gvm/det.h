/* SPDX-License-Identifier: MIT */
/*
 * Deterministic runs of small scenarios (det_scenarios.c) on the library's
 * deterministic scheduler (src/core/det.h): one run, random runs,
 * systematic exploration of interleavings up to a bound, and replay files
 * (det_explore.c).  Used by `gvm explore` / `gvm replay` and by
 * tests/unit/test_det.c.
 *
 * A scenario is a program of two or three actor threads around one race
 * (bind vs invalidation, fault vs unbind, ...): it builds its objects,
 * opens the exploration window, starts the actors, joins them, closes the
 * window, checks its invariants and tears down.  A failed check prints
 * what failed and exits the process with status 1; a run is therefore
 * executed in a child process by the explorer.
 */
#ifndef GVM_TOOL_DET_H
#define GVM_TOOL_DET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct gvm_det_scenario {
	const char *name;
	const char *what;		/* one line */
	void (*run)(void);		/* exits 1 on a failed check */
	/* the defect --mutant puts back (a test-only switch of the
	   library); NULL: seed 000's (gvm__pt_mutant_no_zap_rule) */
	bool *mutant;
};

extern const struct gvm_det_scenario gvm_det_scenarios[];
extern const unsigned int gvm_det_nr_scenarios;
const struct gvm_det_scenario *gvm_det_scenario_find(const char *name);

/*
 * Test-only switch: puts back @sc's defect (its .mutant; by default the
 * one seed 000 fixed: a page-table commit writes the entries it does not
 * own even if a zap changed them since prepare).  Never set outside a run
 * that wants to see it fail.
 */
void gvm_det_set_mutant(const struct gvm_det_scenario *sc, bool on);

/* What one run is: enough to replay it exactly. */
struct gvm_det_run {
	const struct gvm_det_scenario *sc;	/* a scenario's run, or */
	char **run_argv;		/* `gvm run` arguments (--record) */
	int run_argc;
	bool have_hash;			/* recorded: the log's hash and */
	uint64_t hash;			/* number of events, checked by */
	size_t events;			/* gvm replay */
	bool mutant;
	bool fifo;		/* else random from seed */
	uint64_t seed;
	uint8_t *script;	/* the forced decisions (thread ids) */
	size_t script_len;
	uint64_t stop_at;	/* replay: stop at this event, 0 = never */
};

/*
 * Runs @r in this process.  Returns only if the scenario's checks pass
 * (and @r->stop_at was not reached), with the log's hash in *@hash.
 */
void gvm_det_run_here(const struct gvm_det_run *r, uint64_t *hash);

struct gvm_det_stats {
	uint64_t runs;
	uint64_t failures;
	uint64_t max_decisions;	/* inside the window, of one run */
	uint64_t max_events;
	bool capped;		/* exploration stopped at max_runs */
};

/*
 * Every interleaving of @sc's window that deviates from the default
 * (non-preemptive) schedule in at most @bound decisions, each run in a
 * child; at most @max_runs runs (0: no limit).  Stops at the first failing
 * run, writes its replay file to @record (if not NULL) and prints its
 * path.  Returns 0 if every run passed, 1 if one failed, -errno.
 */
int gvm_det_explore(const struct gvm_det_scenario *sc, bool mutant,
		    unsigned int bound, uint64_t max_runs, const char *record,
		    bool verbose, struct gvm_det_stats *st);

/* @n random schedules with seeds @seed, @seed + 1, ...; same contract. */
int gvm_det_random(const struct gvm_det_scenario *sc, bool mutant,
		   uint64_t seed, uint64_t n, const char *record,
		   bool verbose, struct gvm_det_stats *st);

/* Prints the log and the threads' states and exits 0 (config.on_stop). */
void gvm_det_stop_here(void *arg, uint64_t event);

/*
 * `gvm run` on the deterministic scheduler with @rec's decisions (run.c):
 * the run's exit status; its log's hash and length in *@hash, *@events.
 */
int gvm_tool_run_replay(const struct gvm_det_run *rec, uint64_t *hash,
			size_t *events);

/*
 * Replay files: "gvm-det 1" then key value lines (det_explore.c); read
 * allocates r->script and r->run_argv (gvm_det_run_free).
 */
int gvm_det_write(const char *path, const struct gvm_det_run *r);
int gvm_det_read(const char *path, struct gvm_det_run *r);
void gvm_det_run_free(struct gvm_det_run *r);

int gvm_tool_explore(int argc, char **argv);
int gvm_tool_replay(int argc, char **argv);

#endif
