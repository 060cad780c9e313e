// SPDX-License-Identifier: MIT
/*
 * The fuzzers in `make check`: for each engine (fuzz_core.c: VM_BIND;
 * fuzz_svm.c: SVM on the model mm), every input of its corpus
 * (tests/fuzz/corpus/ and corpus/svm/, replayed exactly), then random
 * inputs from the test seed (printed; GVM_TEST_SEED=N replays a run).  A
 * random input that diverges is written to a file whose path is printed
 * with the command that replays it: add it to the corpus once the defect
 * is fixed.  Long runs: build/.../fuzz_driver [--svm].
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "fuzz_core.h"

/* SVM inputs run slower (two devices, faults, migrations) */
#define SVM_RANDOM_INPUTS 100

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	ASSERT_TRUE(f != NULL);
	ASSERT_OK(fseek(f, 0, SEEK_END));
	n = ftell(f);
	ASSERT_TRUE(n >= 0);
	rewind(f);
	buf = malloc(n ? (size_t)n : 1);
	ASSERT_TRUE(buf != NULL);
	ASSERT_EQ(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

typedef int (*engine_fn)(const uint8_t *, size_t, struct gvm_fuzz_stats *,
			 int);

/* Every file of @dir (subdirectories skipped) replays without divergence. */
static void corpus(engine_fn run, const char *dir)
{
	struct gvm_fuzz_stats st = { 0 };
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];

	ASSERT_TRUE(d != NULL);
	while ((e = readdir(d))) {
		struct stat sb;
		uint8_t *buf;
		size_t len;
		int r;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ASSERT_OK(stat(path, &sb));
		if (!S_ISREG(sb.st_mode))
			continue;
		buf = read_file(path, &len);
		r = run(buf, len, &st, 0);
		if (r)
			fprintf(stderr, "corpus input %s diverged (replay: "
				"fuzz_driver%s -v %s)\n", path,
				run == gvm_fuzz_run ? "" : " --svm", path);
		ASSERT_EQ(r, 0);
		free(buf);
	}
	closedir(d);
	ASSERT_TRUE(st.inputs >= 2);
	ASSERT_TRUE(st.errors_expected > 0);	/* bad input was exercised */
}

/*
 * @n random inputs of up to @max bytes from the test seed; a diverging one
 * is written to a file whose path (and replay command) is printed.
 */
static void random_inputs(engine_fn run, uint64_t n, size_t max)
{
	struct gvm_rng rng = { gvm_test_seed() };
	struct gvm_fuzz_stats st = { 0 };
	struct timespec t0, t1;
	uint8_t *buf = malloc(max);
	uint64_t i;

	ASSERT_TRUE(buf != NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++) {
		size_t len = 64 + gvm_rng_next(&rng) % (max - 64);

		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)gvm_rng_next(&rng);
		if (run(buf, len, &st, 0)) {
			char path[64];
			FILE *f;

			snprintf(path, sizeof(path), "/tmp/gvm-%s-%d-%llu.bin",
				 run == gvm_fuzz_run ? "fuzz" : "fuzz-svm",
				 (int)getpid(), (unsigned long long)i);
			f = fopen(path, "wb");
			if (f) {
				fwrite(buf, 1, len, f);
				fclose(f);
			}
			fprintf(stderr, "diverging input written to %s "
				"(replay: fuzz_driver%s -v %s)\n", path,
				run == gvm_fuzz_run ? "" : " --svm", path);
			ASSERT_TRUE(false);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "%llu inputs, %llu ops (%llu failing as predicted), "
		"%llu kernels, %llu MiB checked, %llu purges, %llu "
		"migrations, %.0f ops/s\n",
		(unsigned long long)st.inputs, (unsigned long long)st.ops,
		(unsigned long long)st.errors_expected,
		(unsigned long long)st.execs,
		(unsigned long long)(st.bytes_checked >> 20),
		(unsigned long long)st.purges_seen,
		(unsigned long long)st.migrations,
		(double)st.ops / ((double)(t1.tv_sec - t0.tv_sec) +
				  (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9));
	if (st.replay_limits)
		fprintf(stderr, "%llu inputs ended at a replay-limit failure "
			"(known defect, docs/verification.md)\n",
			(unsigned long long)st.replay_limits);
	ASSERT_EQ(st.inputs, n);
	free(buf);
}

TEST(corpus)
{
	corpus(gvm_fuzz_run, GVM_FUZZ_CORPUS);
}

TEST(random_inputs)
{
	random_inputs(gvm_fuzz_run, gvm_test_scale(60), 1536);
}

/* The SVM engine (fuzz_svm.c): its corpus, tests/fuzz/corpus/svm/. */
TEST(svm_corpus)
{
	corpus(gvm_fuzz_svm_run, GVM_FUZZ_CORPUS "/svm");
}

TEST(svm_random_inputs)
{
	random_inputs(gvm_fuzz_svm_run, gvm_test_scale(SVM_RANDOM_INPUTS),
		      1536);
}
