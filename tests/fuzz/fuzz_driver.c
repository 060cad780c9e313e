// SPDX-License-Identifier: MIT
/*
 * The fuzzer's standalone driver (fuzz_core.c):
 *
 *   fuzz_driver [--svm] [--det] [-v] FILE...
 *                                  replays inputs (-v: print each op)
 *   fuzz_driver [--svm] [--det] --random [--seconds S] [--seed N] [--out DIR]
 *                                  [--ops N] [--len L]
 *                                  random inputs for S seconds (default
 *                                  60; none with --ops alone) or until
 *                                  N operations ran, seeded
 *                                  (printed); a diverging input is
 *                                  written to DIR (default .), its path
 *                                  printed, and the driver exits 1;
 *                                  inputs of 64 .. L bytes (default
 *                                  2048; longer ones spend less of the
 *                                  time setting up and checking worlds)
 *
 * --svm: the SVM engine (fuzz_svm.c) instead of the VM_BIND one.  It
 * prints inputs, operations and operations per second at the end.
 *
 * --det: each input runs on the deterministic scheduler (core/det.h,
 * fuzz_det.c), seeded by a hash of its bytes, so that the run is a
 * function of the input: a diverging input file is its own replay file,
 * and `fuzz_driver [--svm] --det -v FILE` re-executes the same
 * interleaving, printing the log hash to compare
 * (GVM_FUZZ_DET_LOG=PATH also writes the scheduler's event log).  The
 * VM_BIND engine then puts its user buffers in a model mm instead of the
 * process's memory (whose events come from a thread the scheduler does
 * not control), so the two modes test different mms.  The
 * driver re-executes itself with address-space randomisation off first:
 * where the simulated device maps system memory with larger pages
 * depends on host addresses, and so would the interleaving.  For the
 * same reason each input runs in a child process forked from the same
 * state: what earlier inputs left in the address space (holes, malloc
 * arenas, gvm's lazily made globals) would move the next one's memory,
 * and an input replayed alone would not schedule as it did among others.
 * A child that crashes is a divergence too (its input is written out).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_core.h"

typedef int (*engine_fn)(const uint8_t *, size_t, struct gvm_fuzz_stats *,
			 int);

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void report(const struct gvm_fuzz_stats *st, double secs)
{
	printf("%llu inputs, %llu ops (%llu failing as predicted), %llu "
	       "kernels, %llu MiB checked, %llu purges, %llu migrations in "
	       "%.1f s: %.0f ops/s\n",
	       (unsigned long long)st->inputs, (unsigned long long)st->ops,
	       (unsigned long long)st->errors_expected,
	       (unsigned long long)st->execs,
	       (unsigned long long)(st->bytes_checked >> 20),
	       (unsigned long long)st->purges_seen,
	       (unsigned long long)st->migrations, secs,
	       secs > 0 ? (double)st->ops / secs : 0.0);
	if (st->replay_limits)
		printf("%llu inputs ended at a replay-limit failure (known "
		       "defect, docs/verification.md)\n",
		       (unsigned long long)st->replay_limits);
}

/* The input buffer, the same in both modes (--det: the same layout). */
static uint8_t buf[1 << 20];

/* --det: the children's stats, in memory shared with them. */
static struct gvm_fuzz_stats *det_st;

/*
 * Runs one input: in this process, or with --det in a child forked for
 * it.  0: no divergence; -1: a divergence, or the child died (said on
 * stderr); -2: the world could not be set up.
 */
static int run_one(engine_fn run, size_t n, struct gvm_fuzz_stats *st,
		   int verbose)
{
	pid_t pid;
	int status;

	if (!gvm_fuzz_det)
		return run(buf, n, st, verbose);
	fflush(stdout);
	fflush(stderr);
	*det_st = *st;
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0)
		exit(-run(buf, n, det_st, verbose));	/* 0, 1 or 2 */
	while (waitpid(pid, &status, 0) < 0)
		;
	*st = *det_st;
	if (WIFEXITED(status) && WEXITSTATUS(status) <= 2)
		return -WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		fprintf(stderr, "fuzz: the input's process died of signal "
			"%d\n", WTERMSIG(status));
	else
		fprintf(stderr, "fuzz: the input's process exited with %d\n",
			WEXITSTATUS(status));
	return -1;
}

static int replay(engine_fn run, int argc, char **argv, int verbose)
{
	struct gvm_fuzz_stats st = { 0 };
	double t0 = now();
	int bad = 0;

	for (int i = 0; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		size_t n;

		if (!f) {
			perror(argv[i]);
			return 2;
		}
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		if (run_one(run, n, &st, verbose)) {
			printf("%s: diverged\n", argv[i]);
			bad = 1;
		}
		if (gvm_fuzz_det)
			printf("%s: deterministic run, log hash %016llx\n",
			       argv[i], (unsigned long long)st.det_hash);
	}
	report(&st, now() - t0);
	return bad;
}

/*
 * --det: runs again with ADDR_NO_RANDOMIZE (once: the flag is inherited),
 * so that the same input maps the same host addresses every time.  If the
 * kernel refuses, goes on (runs may then differ where addresses matter).
 */
static void det_no_aslr(char **argv)
{
	int pers = personality(0xffffffff);

	if (pers == -1 || (pers & ADDR_NO_RANDOMIZE))
		return;
	if (personality((unsigned long)pers | ADDR_NO_RANDOMIZE) == -1)
		return;
	execv("/proc/self/exe", argv);
	fprintf(stderr, "--det: could not re-execute with randomisation "
		"off; runs may differ\n");
}

int main(int argc, char **argv)
{
	struct gvm_fuzz_stats st = { 0 };
	const char *out = ".";
	double secs = -1, t0;
	uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)getpid(), s;
	uint64_t max_ops = UINT64_MAX;
	size_t max_len = 2048;
	int i = 1, verbose = 0;
	engine_fn run = gvm_fuzz_run;
	const char *name = "fuzz";

	for (; i < argc; i++) {
		if (!strcmp(argv[i], "-v")) {
			verbose = 1;
		} else if (!strcmp(argv[i], "--det")) {
			gvm_fuzz_det = 1;
			det_no_aslr(argv);
		} else if (!strcmp(argv[i], "--svm")) {
			run = gvm_fuzz_svm_run;
			name = "fuzz-svm";
		} else {
			break;
		}
	}
	if (gvm_fuzz_det) {
		det_st = mmap(NULL, sizeof(*det_st), PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (det_st == MAP_FAILED)
			return perror("mmap"), 2;
	}
	if (i >= argc || strcmp(argv[i], "--random"))
		return i < argc ? replay(run, argc - i, argv + i, verbose) :
				  (fprintf(stderr, "usage: see fuzz_driver.c\n"),
				   2);
	for (i++; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--seconds"))
			secs = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--out"))
			out = argv[i + 1];
		else if (!strcmp(argv[i], "--ops"))
			max_ops = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--len"))
			max_len = strtoull(argv[i + 1], NULL, 0);
		else
			return fprintf(stderr, "unknown option %s\n", argv[i]),
			       2;
	}
	if (i < argc)
		return fprintf(stderr, "option %s needs a value\n", argv[i]), 2;
	/* --ops alone runs until N operations, however long that takes */
	if (secs < 0)
		secs = max_ops == UINT64_MAX ? 60 : 1e18;
	if (max_len < 65 || max_len > sizeof(buf))
		return fprintf(stderr, "bad --len (65 .. %zu)\n", sizeof(buf)),
		       2;
	printf("seed %llu\n", (unsigned long long)seed);
	s = seed;
	t0 = now();
	while (now() - t0 < secs && st.ops < max_ops) {
		size_t len = 64 + next(&s) % (max_len - 64);

		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)next(&s);
		if (run_one(run, len, &st, 0)) {
			char path[4096];
			FILE *f;

			snprintf(path, sizeof(path), "%s/%s-%llu-%llu.bin", out,
				 name,
				 (unsigned long long)seed,
				 (unsigned long long)st.inputs);
			f = fopen(path, "wb");
			if (f) {
				fwrite(buf, 1, len, f);
				fclose(f);
			}
			printf("diverging input written to %s (replay: "
			       "fuzz_driver%s%s -v %s)\n", path,
			       run == gvm_fuzz_run ? "" : " --svm",
			       gvm_fuzz_det ? " --det" : "", path);
			if (gvm_fuzz_det)
				printf("deterministic run, log hash %016llx\n",
				       (unsigned long long)st.det_hash);
			report(&st, now() - t0);
			return 1;
		}
	}
	report(&st, now() - t0);
	return 0;
}
