// SPDX-License-Identifier: MIT
/*
 * The fuzzer in `make check` (fuzz_core.c): every input of the corpus
 * (tests/fuzz/corpus/, replayed exactly), then random inputs from the
 * test seed (printed; GVM_TEST_SEED=N replays a run).  A random input
 * that diverges is written to a file whose path is printed: add it to the
 * corpus once the defect is fixed.  Long runs: build/.../fuzz_driver.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "fuzz_core.h"

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

TEST(corpus)
{
	struct gvm_fuzz_stats st = { 0 };
	DIR *d = opendir(GVM_FUZZ_CORPUS);
	struct dirent *e;
	char path[4096];

	ASSERT_TRUE(d != NULL);
	while ((e = readdir(d))) {
		uint8_t *buf;
		size_t len;
		int r;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", GVM_FUZZ_CORPUS,
			 e->d_name);
		buf = read_file(path, &len);
		r = gvm_fuzz_run(buf, len, &st, 0);
		if (r)
			fprintf(stderr, "corpus input %s diverged\n", path);
		ASSERT_EQ(r, 0);
		free(buf);
	}
	closedir(d);
	ASSERT_TRUE(st.inputs >= 2);
	ASSERT_TRUE(st.errors_expected > 0);	/* bad input was exercised */
}

TEST(random_inputs)
{
	struct gvm_rng rng = { gvm_test_seed() };
	struct gvm_fuzz_stats st = { 0 };
	uint64_t n = gvm_test_scale(60), i;
	struct timespec t0, t1;
	uint8_t buf[1536];

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++) {
		size_t len = 64 + gvm_rng_next(&rng) % (sizeof(buf) - 64);

		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)gvm_rng_next(&rng);
		if (gvm_fuzz_run(buf, len, &st, 0)) {
			char path[64];
			FILE *f;

			snprintf(path, sizeof(path), "/tmp/gvm-fuzz-%d-%llu.bin",
				 (int)getpid(), (unsigned long long)i);
			f = fopen(path, "wb");
			if (f) {
				fwrite(buf, 1, len, f);
				fclose(f);
			}
			fprintf(stderr, "diverging input written to %s "
				"(replay: fuzz_driver %s)\n", path, path);
			ASSERT_TRUE(false);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "%llu inputs, %llu ops (%llu failing as predicted), "
		"%llu kernels, %llu MiB checked, %llu purges, %.0f ops/s\n",
		(unsigned long long)st.inputs, (unsigned long long)st.ops,
		(unsigned long long)st.errors_expected,
		(unsigned long long)st.execs,
		(unsigned long long)(st.bytes_checked >> 20),
		(unsigned long long)st.purges_seen,
		(double)st.ops / ((double)(t1.tv_sec - t0.tv_sec) +
				  (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9));
	ASSERT_EQ(st.inputs, n);
}
