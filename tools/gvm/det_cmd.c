// SPDX-License-Identifier: MIT
/*
 * `gvm explore SCENARIO` and `gvm replay FILE`: the command-line side of
 * deterministic runs (det.h, det_explore.c; docs/tool.md).  `gvm run
 * --record` is in run.c; replay re-runs its command line (run.c,
 * gvm_tool_run_replay) and checks the log's hash.
 * Locking: none (single-threaded outside the runs).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/det.h"
#include "det.h"
#include "gvm_tool.h"

/* ---- commands ----------------------------------------------------------------- */

static void explore_usage(FILE *f)
{
	fprintf(f,
		"usage: gvm explore SCENARIO [--bound N] [--max-runs N] "
		"[--random N] [--seed S]\n"
		"                   [--mutant] [--record FILE] [--verbose]\n"
		"       gvm explore --list\n"
		"  --bound N     deviations from the default schedule (default 1)\n"
		"  --random N    N random schedules instead (seeds S, S+1, ...)\n"
		"  --mutant      put back seed 000's defect (expect a failure)\n"
		"  --record FILE write the first failing run's replay file\n");
}

int gvm_tool_explore(int argc, char **argv)
{
	const struct gvm_det_scenario *sc = NULL;
	const char *record = NULL, *v;
	uint64_t bound = 1, max_runs = 0, nrand = 0, seed = 1;
	bool mutant = false, verbose = false;
	struct gvm_det_stats st;
	int64_t t0;
	int ret;

	for (int i = 0; i < argc; i++) {
		int m;

		if (!strcmp(argv[i], "--list")) {
			for (unsigned int j = 0; j < gvm_det_nr_scenarios; j++)
				printf("%-12s %s\n", gvm_det_scenarios[j].name,
				       gvm_det_scenarios[j].what);
			return 0;
		}
		if (!strcmp(argv[i], "--help")) {
			explore_usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--mutant")) {
			mutant = true;
			continue;
		}
		if (!strcmp(argv[i], "--verbose")) {
			verbose = true;
			continue;
		}
		if ((m = gvm_tool_option(argc, argv, &i, "--record", &v))) {
			if (m < 0)
				goto bad;
			record = v;
			continue;
		}
		if ((m = gvm_tool_option(argc, argv, &i, "--bound", &v))) {
			if (m < 0 || (strcmp(v, "0") &&
				      gvm_tool_parse_count(v, 8, &bound)))
				goto bad;
			if (!strcmp(v, "0"))
				bound = 0;
			continue;
		}
		if ((m = gvm_tool_option(argc, argv, &i, "--max-runs", &v))) {
			if (m < 0 ||
			    gvm_tool_parse_count(v, UINT32_MAX, &max_runs))
				goto bad;
			continue;
		}
		if ((m = gvm_tool_option(argc, argv, &i, "--random", &v))) {
			if (m < 0 || gvm_tool_parse_count(v, UINT32_MAX, &nrand))
				goto bad;
			continue;
		}
		if ((m = gvm_tool_option(argc, argv, &i, "--seed", &v))) {
			char *end;

			if (m < 0)
				goto bad;
			seed = strtoull(v, &end, 0);
			if (*end)
				goto bad;
			continue;
		}
		if (argv[i][0] == '-' || sc) {
			fprintf(stderr, "gvm explore: unexpected '%s'\n",
				argv[i]);
			explore_usage(stderr);
			return 2;
		}
		sc = gvm_det_scenario_find(argv[i]);
		if (!sc) {
			fprintf(stderr, "gvm explore: no scenario '%s' "
				"(gvm explore --list)\n", argv[i]);
			return 2;
		}
	}
	if (!sc) {
		fprintf(stderr, "gvm explore: missing SCENARIO\n");
		explore_usage(stderr);
		return 2;
	}
	t0 = gvm_tool_now_ns();
	if (nrand)
		ret = gvm_det_random(sc, mutant, seed, nrand, record, verbose,
				     &st);
	else
		ret = gvm_det_explore(sc, mutant, (unsigned int)bound,
				      max_runs, record, verbose, &st);
	if (ret < 0) {
		fprintf(stderr, "gvm explore: %s\n", strerror(-ret));
		return 1;
	}
	printf("%s%s: %" PRIu64 " runs (%s), %" PRIu64 " failed, in %.2f s; "
	       "at most %" PRIu64 " decisions in the window, %" PRIu64
	       " events per run\n", sc->name, mutant ? " (mutant)" : "",
	       st.runs, nrand ? "random" :
	       st.capped ? "stopped at --max-runs" : "exhaustive at the bound",
	       st.failures, (double)(gvm_tool_now_ns() - t0) / 1e9,
	       st.max_decisions, st.max_events);
	return ret ? 1 : 0;
bad:
	fprintf(stderr, "gvm explore: bad or missing option value\n");
	explore_usage(stderr);
	return 2;
}

int gvm_tool_replay(int argc, char **argv)
{
	struct gvm_det_run r;
	const char *file = NULL, *v;
	uint64_t stop_at = 0, hash;
	int err;

	for (int i = 0; i < argc; i++) {
		int m = gvm_tool_option(argc, argv, &i, "--stop-at", &v);

		if (m < 0 || (m > 0 && gvm_tool_parse_count(v, UINT64_MAX,
							    &stop_at))) {
			fprintf(stderr, "gvm replay: bad value for "
				"--stop-at\n");
			return 2;
		}
		if (m)
			continue;
		if (argv[i][0] == '-' || file) {
			fprintf(stderr, "gvm replay: unexpected '%s'\n"
				"usage: gvm replay FILE [--stop-at K]\n",
				argv[i]);
			return 2;
		}
		file = argv[i];
	}
	if (!file) {
		fprintf(stderr, "gvm replay: missing FILE\n"
			"usage: gvm replay FILE [--stop-at K]\n");
		return 2;
	}
	err = gvm_det_read(file, &r);
	if (err) {
		fprintf(stderr, "gvm replay: %s: %s\n", file,
			err == -EINVAL ? "not a gvm-det replay file" :
					 strerror(-err));
		return 2;
	}
	r.stop_at = stop_at;
	if (r.run_argv) {
		size_t nr;
		int status;

		printf("replaying %s: gvm run", file);
		for (int i = 0; i < r.run_argc; i++)
			printf(" %s", r.run_argv[i]);
		printf(", seed %" PRIu64 ", %zu scripted decisions\n", r.seed,
		       r.script_len);
		fflush(stdout);
		status = gvm_tool_run_replay(&r, &hash, &nr);
		if (status == 0 && r.have_hash &&
		    (nr != r.events || hash != r.hash)) {
			printf("replay diverged: %zu events, log hash %016"
			       PRIx64 "; recorded %zu, %016" PRIx64 "\n", nr,
			       hash, r.events, r.hash);
			status = 1;
		} else if (status == 0) {
			printf("replay matches the recording: %zu events, log "
			       "hash %016" PRIx64 "\n", nr, hash);
		}
		gvm_det_run_free(&r);
		return status;
	}
	printf("replaying %s: scenario %s%s, policy %s, seed %" PRIu64
	       ", %zu scripted decisions\n", file, r.sc->name,
	       r.mutant ? " (mutant)" : "", r.fifo ? "fifo" : "random",
	       r.seed, r.script_len);
	fflush(stdout);
	/* a failed check exits 1 from inside the run, with its report */
	gvm_det_run_here(&r, &hash);
	{
		size_t nr;

		gvm__det_events(&nr);
		printf("%s passed: %zu events, log hash %016" PRIx64 "\n",
		       r.sc->name, nr, hash);
	}
	gvm_det_run_free(&r);
	return 0;
}
