/* SPDX-License-Identifier: MIT */
/*
 * Test harness: TEST() registration, assertions that print both values,
 * seeded random numbers, death tests and size scaling.
 *
 * A suite is one executable; "suite NAME" runs one test, "suite" runs all of
 * them (each in a forked child), "suite --list" lists them.  CTest runs every
 * test in its own process (see tests/CMakeLists.txt).
 *
 * Randomised tests take their seed from gvm_test_seed(): GVM_TEST_SEED from
 * the environment if set (or the seed of GVM_TEST_REPLAY's file), otherwise
 * a fresh one.  It is printed when taken, with the command that reruns the
 * test with it ("rerun: GVM_TEST_SEED=N /path/to/suite NAME", after the
 * GVM_* variables the suite was started with), and a failing assertion
 * prints that command again after its FAIL line, so a crash, a hang or a
 * failure can be rerun by copying one line.  The seed replays the test's
 * data; the interleaving of real threads is not replayed.  Tests that run
 * deterministically also write a replay file when they fail
 * (gvm_test_det_begin), which replays the schedule too.
 */
#ifndef GVM_TEST_HARNESS_H
#define GVM_TEST_HARNESS_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void (*gvm_test_fn)(void);
void gvm_test_register(const char *name, gvm_test_fn fn);

#define TEST(name)                                                          \
	static void test_##name(void);                                      \
	__attribute__((constructor)) static void register_##name(void)      \
	{                                                                   \
		gvm_test_register(#name, test_##name);                      \
	}                                                                   \
	static void test_##name(void)

__attribute__((noreturn, format(printf, 3, 4)))
void gvm_test_fail(const char *file, int line, const char *fmt, ...);

#define ASSERT_TRUE(x)                                                       \
	do {                                                                 \
		if (!(x))                                                    \
			gvm_test_fail(__FILE__, __LINE__, "ASSERT_TRUE(%s)", \
				      #x);                                   \
	} while (0)

#define ASSERT_FALSE(x) ASSERT_TRUE(!(x))

#define ASSERT_CMP(a, op, b)                                                 \
	do {                                                                 \
		int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                \
		if (!(a_ op b_))                                             \
			gvm_test_fail(__FILE__, __LINE__,                    \
				      "%s %s %s: %" PRId64 " vs %" PRId64,   \
				      #a, #op, #b, a_, b_);                  \
	} while (0)

#define ASSERT_EQ(a, b) ASSERT_CMP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_CMP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_CMP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_CMP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_CMP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_CMP(a, >=, b)

/* A call that must succeed (return 0). */
#define ASSERT_OK(x) ASSERT_EQ((x), 0)

/*
 * Runs @stmt in a forked child and asserts that it dies (abort or signal)
 * and that its stderr contains @needle.
 */
#define ASSERT_DEATH(stmt, needle)                                           \
	do {                                                                 \
		char out_[4096];                                             \
		int pid_ = gvm_test_fork_capture(out_, sizeof(out_));        \
		if (pid_ == 0) {                                             \
			stmt;                                                \
			_exit(0);                                            \
		}                                                            \
		gvm_test_expect_death(__FILE__, __LINE__, pid_, out_,        \
				      sizeof(out_), needle);                 \
	} while (0)

int gvm_test_fork_capture(char *buf, size_t len);
void gvm_test_expect_death(const char *file, int line, int pid, char *buf,
			   size_t len, const char *needle);

/* Seed for this test (printed once). */
uint64_t gvm_test_seed(void);

/*
 * A randomised test's deterministic part (src/core/det.h): between
 * gvm_test_det_begin() and gvm_test_det_end() every thread the library
 * creates runs on the deterministic scheduler, seeded with
 * gvm_test_seed(), so the interleaving is a function of the seed.  An
 * assertion failing inside writes a replay file (the seed and the
 * scheduler's decisions) and prints its path; GVM_TEST_REPLAY=FILE runs
 * the test again on exactly those decisions (and that seed).  Begin before
 * creating the objects under test, end after destroying them (every
 * thread of theirs joined).  End returns the log's hash.
 */
void gvm_test_det_begin(void);
uint64_t gvm_test_det_end(void);

/* Divide a stress size by GVM_TEST_SCALE (env or build default), min 1. */
uint64_t gvm_test_scale(uint64_t n);

/* splitmix64: small, fast, good enough for test sequences. */
struct gvm_rng {
	uint64_t s;
};

static inline uint64_t gvm_rng_next(struct gvm_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n); n > 0. */
static inline uint64_t gvm_rng_below(struct gvm_rng *r, uint64_t n)
{
	return gvm_rng_next(r) % n;
}

/* 1 when built with ThreadSanitizer (some tests adapt, e.g. signal timing). */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* 1 when built with AddressSanitizer. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Monotonic clock in nanoseconds. */
int64_t gvm_test_now_ns(void);

/* Sleeps @ns nanoseconds (restarting after signal handlers). */
void gvm_test_sleep_ns(int64_t ns);

/*
 * Runs @fn in a forked child (its stderr to /dev/null) and fails the test
 * unless the child died: killed by a signal, or exited with a failure
 * status (the way AddressSanitizer reports a SEGV, or a gvm panic).
 */
void gvm_test_expect_crash(void (*fn)(void));

/* Waits (polling) until *@flag is non-zero; fails the test after 10 s. */
#define gvm_test_wait_flag(flag) gvm__test_wait_flag((flag), __FILE__, __LINE__)
void gvm__test_wait_flag(const uint32_t *flag, const char *file, int line);

/*
 * Fails the test unless the library's heap is back to @live blocks, once
 * library threads have dropped their last references (bounded wait; the
 * runner checks every test this way).
 */
void gvm_test_check_leaks(uint64_t live);

struct gvm_queue;
struct gvm_kernel;
/*
 * Runs @k on @q (a dma-fence VM's queue) to its end: 0, the exec's error,
 * or the job's (a failed kernel's negative fence status).
 */
int gvm_test_run(struct gvm_queue *q, const struct gvm_kernel *k);

#endif
