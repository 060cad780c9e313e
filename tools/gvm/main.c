// SPDX-License-Identifier: MIT
/*
 * The gvm command-line tool: dispatches subcommands.
 *
 *   gvm info [...]          the simulated system (info.c)
 *   gvm run WORKLOAD [...]  a workload on simulated devices (run.c)
 *   gvm plot TRACE          a trace's faults, migrations, kernels as SVG
 *   gvm demo                a short, self-explaining run of the core layer
 *   gvm bench [...]         the benchmark harness (bench/)
 *   gvm explore SCENARIO    interleavings of a scenario, deterministically
 *   gvm replay FILE         re-executes a recorded deterministic run
 *   gvm help
 *
 * Argument errors print one line and the usage and exit with status 2;
 * failed work exits with 1.  docs/tool.md describes every command.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "det.h"
#include "gvm_tool.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gvm <command> [args]\n"
		"commands:\n"
		"  info [--devices N] [--vram SIZE]\n"
		"                   the simulated system: devices, engines, TLBs, links\n"
		"  run WORKLOAD [--devices N] [--vram SIZE] [--size SIZE] [--iters N] [--link]\n"
		"               [--policy NAME] [--trace FILE] [--explain]\n"
		"               [--record FILE [--seed S]]\n"
		"                   run a workload (triad, bind-churn, svm-stream,\n"
		"                   svm-random, svm-multi) on simulated GPUs and report\n"
		"                   (gvm run --help lists the workloads)\n"
		"  plot TRACE [-o FILE.svg]\n"
		"                   draw a trace's GPU faults, migrations and kernel time\n"
		"  demo             run the core demo (fences, reservations, scheduler)\n"
		"  bench [--json] [--quick] [--list] [--repeat N] [--compare FILE.json]\n"
		"        [NAME...]\n"
		"                   run benchmarks; each reports a ratio to a baseline\n"
		"  explore SCENARIO [--bound N] [--random N] [--seed S] [--mutant]\n"
		"          [--record FILE] | --list\n"
		"                   run a scenario's interleavings on the deterministic\n"
		"                   scheduler, checking its invariants after each\n"
		"  replay FILE [--stop-at K]\n"
		"                   re-execute a recorded deterministic run\n"
		"  help             this text\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "gvm: missing command\n");
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "info"))
		return gvm_tool_info(argc - 2, argv + 2);
	if (!strcmp(argv[1], "run"))
		return gvm_tool_run(argc - 2, argv + 2);
	if (!strcmp(argv[1], "plot"))
		return gvm_tool_plot(argc - 2, argv + 2);
	if (!strcmp(argv[1], "demo"))
		return gvm_tool_demo(argc - 2, argv + 2);
	if (!strcmp(argv[1], "bench"))
		return gvm_bench_main(argc - 2, argv + 2);
	if (!strcmp(argv[1], "explore"))
		return gvm_tool_explore(argc - 2, argv + 2);
	if (!strcmp(argv[1], "replay"))
		return gvm_tool_replay(argc - 2, argv + 2);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "gvm: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
