// SPDX-License-Identifier: MIT
/*
 * Test harness runtime: the registry, the runner, failure reporting, seeds,
 * scaling, death tests, and gvm_test_run().  See harness.h.
 *
 * Rerun commands: the seed line a randomised test prints when it takes its
 * seed, and every failure, give the command that runs the test again
 * (rerun_command): the GVM_* variables the suite was started with, then
 * GVM_TEST_SEED if the test took a seed, the suite's absolute path and the
 * test's name.
 */
#include "harness.h"
#include "core/alloc.h"
#include "core/det.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gvm/gvm.h>

#ifndef GVM_TEST_SCALE_DEFAULT
#define GVM_TEST_SCALE_DEFAULT 1
#endif

#define MAX_TESTS 512

static struct {
	const char *name;
	gvm_test_fn fn;
} tests[MAX_TESTS];
static int nr_tests;
static const char *current;
static const char *suite_path;	/* absolute if it could be resolved */
static char suite_real[4096];
static char env_prefix[2048];	/* GVM_* at start, GVM_TEST_SEED aside */

void gvm_test_register(const char *name, gvm_test_fn fn)
{
	if (nr_tests == MAX_TESTS) {
		fprintf(stderr, "harness: too many tests\n");
		abort();
	}
	tests[nr_tests].name = name;
	tests[nr_tests].fn = fn;
	nr_tests++;
}

static uint64_t seed;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;
static bool seed_taken;		/* gvm_test_seed() was called (atomic:
				   a failing thread may not have called it) */
static bool det_active;		/* inside gvm_test_det_begin/_end */

static void det_write_replay(void);

/*
 * Appends a word to @buf (@len bytes, NUL-terminated): @name bare (a
 * variable's "NAME=", or ""), then @value, single-quoted for the shell
 * unless every character of it is safe bare.
 */
static void append_word(char *buf, size_t len, const char *name,
			const char *value)
{
	static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				   "abcdefghijklmnopqrstuvwxyz0123456789_./:=,+-@%";
	size_t used = strlen(buf);
	bool bare = strspn(value, safe) == strlen(value) && (*name || *value);

	if (used)
		snprintf(buf + used, len - used, " ");
	used = strlen(buf);
	snprintf(buf + used, len - used, "%s%s", name, bare ? "" : "'");
	used = strlen(buf);
	for (; *value && used + 5 < len; value++) {
		if (!bare && *value == '\'') {
			memcpy(buf + used, "'\\''", 4);	/* close, \', reopen */
			used += 4;
		} else {
			buf[used++] = *value;
		}
	}
	buf[used] = 0;
	if (!bare)
		snprintf(buf + used, len - used, "'");
}

/* The GVM_* variables the suite started with (GVM_TEST_SEED aside: the
   rerun names the seed the test took), and the suite's absolute path. */
static void rerun_init(const char *argv0)
{
	extern char **environ;

	suite_path = argv0;
	if (realpath(argv0, suite_real))
		suite_path = suite_real;
	for (char **e = environ; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		char name[256];

		if (strncmp(*e, "GVM_", 4) || !eq ||
		    !strncmp(*e, "GVM_TEST_SEED=", 14) ||
		    (size_t)(eq - *e) >= sizeof(name) - 1)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(eq - *e + 1), *e);
		append_word(env_prefix, sizeof(env_prefix), name, eq + 1);
	}
}

/* The command that runs the current test again, with its seed if it took
   one: a line to copy and paste. */
static void rerun_command(char *buf, size_t len)
{
	char s[64];

	snprintf(buf, len, "%s", env_prefix);
	if (__atomic_load_n(&seed_taken, __ATOMIC_ACQUIRE)) {
		snprintf(s, sizeof(s), "%" PRIu64, seed);
		append_word(buf, len, "GVM_TEST_SEED=", s);
	}
	append_word(buf, len, "", suite_path ? suite_path : "SUITE");
	append_word(buf, len, "", current ? current : "");
}

void gvm_test_fail(const char *file, int line, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	fprintf(stderr, "FAIL %s at %s:%d: ", current ? current : "?", file,
		line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	rerun_command(cmd, sizeof(cmd));
	fprintf(stderr, "rerun: %s\n", cmd);
	if (det_active && gvm__det_on())
		det_write_replay();
	fflush(stderr);
	abort();
}

/* ---- deterministic runs of randomised tests -------------------------------- */

/*
 * A replay file: "gvm-test-det 1", then "test NAME", "seed S" and
 * "decisions N" followed by the N thread ids the scheduler chose, one per
 * line.  Written on failure to $TMPDIR (or /tmp) as
 * gvm-test-NAME-PID.det.
 */
static uint8_t *det_script;
static size_t det_script_len;

static void det_write_replay(void)
{
	const struct gvm_det_decision *d;
	const char *dir = getenv("TMPDIR");
	char path[512];
	size_t nr;
	FILE *f;

	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(path, sizeof(path), "%s/gvm-test-%s-%d.det", dir,
		 current ? current : "x", (int)getpid());
	d = gvm__det_decisions(&nr);
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "harness: cannot write a replay file %s\n",
			path);
		return;
	}
	fprintf(f, "gvm-test-det 1\ntest %s\nseed %" PRIu64
		"\ndecisions %zu\n", current ? current : "?", seed, nr);
	for (size_t i = 0; i < nr; i++)
		fprintf(f, "%u\n", d[i].chosen);
	if (fclose(f)) {
		fprintf(stderr, "harness: cannot write a replay file %s\n",
			path);
		return;
	}
	fprintf(stderr, "replay file: %s (GVM_TEST_REPLAY=%s %s %s)\n", path,
		path, suite_path ? suite_path : "SUITE",
		current ? current : "");
}

/* Reads GVM_TEST_REPLAY's file: its seed and decisions (else exits). */
static void det_read_replay(const char *path)
{
	char name[256];
	unsigned int v;
	size_t n;
	FILE *f = fopen(path, "r");

	if (!f || fscanf(f, "gvm-test-det %u test %255s seed %" SCNu64
			 " decisions %zu", &v, name, &seed, &n) != 4 ||
	    v != 1 || (current && strcmp(name, current))) {
		fprintf(stderr, "harness: %s is not a replay file of test "
			"%s\n", path, current ? current : "?");
		exit(2);
	}
	det_script = malloc(n ? n : 1);
	if (!det_script)
		abort();
	for (det_script_len = 0; det_script_len < n; det_script_len++) {
		if (fscanf(f, "%u", &v) != 1 || v >= GVM_DET_MAX_THREADS) {
			fprintf(stderr, "harness: %s: bad decision %zu\n",
				path, det_script_len);
			exit(2);
		}
		det_script[det_script_len] = (uint8_t)v;
	}
	fclose(f);
}

void gvm_test_det_begin(void)
{
	const char *replay = getenv("GVM_TEST_REPLAY");
	struct gvm_det_config cfg = { .seed = gvm_test_seed() };

	if (replay && *replay) {
		cfg.seed = seed;
		cfg.script = det_script;
		cfg.script_len = det_script_len;
		printf("%s: replaying %s (seed %" PRIu64 ", %zu decisions)\n",
		       current ? current : "?", replay, seed, det_script_len);
	}
	gvm__det_begin(&cfg);
	det_active = true;
}

uint64_t gvm_test_det_end(void)
{
	uint64_t h = gvm__det_end();
	size_t nr;

	det_active = false;
	gvm__det_events(&nr);
	printf("%s: deterministic run, %zu events, log hash %016" PRIx64
	       "\n", current ? current : "?", nr, h);
	return h;
}

static void seed_init(void)
{
	const char *env;
	char cmd[4096];

	env = getenv("GVM_TEST_REPLAY");
	if (env && *env) {
		det_read_replay(env);
	} else if ((env = getenv("GVM_TEST_SEED")) && *env) {
		seed = strtoull(env, NULL, 0);
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
		       ((uint64_t)getpid() << 40);
	}
	__atomic_store_n(&seed_taken, true, __ATOMIC_RELEASE);
	rerun_command(cmd, sizeof(cmd));
	printf("%s: seed %" PRIu64 " (rerun: %s)\n", current ? current : "?",
	       seed, cmd);
	fflush(stdout);
}

/* Thread-safe: the first caller picks (and prints) the seed for all. */
uint64_t gvm_test_seed(void)
{
	pthread_once(&seed_once, seed_init);
	return seed;
}

uint64_t gvm_test_scale(uint64_t n)
{
	const char *env = getenv("GVM_TEST_SCALE");
	uint64_t div = GVM_TEST_SCALE_DEFAULT;

	if (env && *env)
		div = strtoull(env, NULL, 0);
	if (div < 1)
		div = 1;
	n /= div;
	return n ? n : 1;
}

int64_t gvm_test_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void gvm_test_sleep_ns(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000,
			       .tv_nsec = ns % 1000000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

void gvm__test_wait_flag(const uint32_t *flag, const char *file, int line)
{
	int64_t end = gvm_test_now_ns() + 10ll * 1000000000;

	while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
		if (gvm_test_now_ns() > end)
			gvm_test_fail(file, line, "timed out waiting for a flag");
		gvm_test_sleep_ns(100000);
	}
}

static int capture_fd = -1;

int gvm_test_fork_capture(char *buf, size_t len)
{
	int fds[2];
	pid_t pid;

	(void)buf;
	(void)len;
	fflush(NULL);
	if (pipe(fds))
		gvm_test_fail(__FILE__, __LINE__, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		gvm_test_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 2);
		close(fds[1]);
		return 0;
	}
	close(fds[1]);
	capture_fd = fds[0];
	return pid;
}

void gvm_test_expect_death(const char *file, int line, int pid, char *buf,
			   size_t len, const char *needle)
{
	size_t used = 0;
	ssize_t n;
	int status;

	while ((n = read(capture_fd, buf + used, len - 1 - used)) > 0) {
		used += (size_t)n;
		if (used == len - 1)
			break;
	}
	buf[used] = 0;
	close(capture_fd);
	capture_fd = -1;
	if (waitpid(pid, &status, 0) != pid)
		gvm_test_fail(file, line, "waitpid: %s", strerror(errno));
	if (WIFEXITED(status))
		gvm_test_fail(file, line,
			      "expected the child to die, it exited with %d; "
			      "stderr: %s", WEXITSTATUS(status), buf);
	if (needle && !strstr(buf, needle))
		gvm_test_fail(file, line,
			      "child died but stderr lacks \"%s\"; stderr: %s",
			      needle, buf);
}

/*
 * Leak check: LeakSanitizer does not see the library's own heap
 * (core/alloc.c), so every test must end with as many live heap blocks
 * as it started with.  Library threads may still be dropping their last
 * references when the test returns: give them up to two seconds (a real
 * leak still fails, only later).
 */
void gvm_test_check_leaks(uint64_t live)
{
	for (int ms = 0; ms < 2000 && gvm__alloc_live() != live; ms++) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	if (gvm__alloc_live() != live)
		gvm_test_fail(__FILE__, __LINE__,
			      "%lld blocks of the library's heap leaked",
			      (long long)(gvm__alloc_live() - live));
}

static int run_one(int i)
{
	uint64_t live = gvm__alloc_live();

	current = tests[i].name;
	tests[i].fn();
	gvm_test_check_leaks(live);
	printf("PASS %s\n", tests[i].name);
	return 0;
}

int main(int argc, char **argv)
{
	int failed = 0;

	rerun_init(argv[0]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "--list")) {
		for (int i = 0; i < nr_tests; i++)
			printf("%s\n", tests[i].name);
		return 0;
	}
	if (argc > 1) {
		for (int a = 1; a < argc; a++) {
			int i;

			for (i = 0; i < nr_tests; i++)
				if (!strcmp(argv[a], tests[i].name))
					break;
			if (i == nr_tests) {
				fprintf(stderr, "no test named %s\n", argv[a]);
				return 2;
			}
			run_one(i);
		}
		return 0;
	}
	/* All tests, each in its own child so one crash does not hide others. */
	for (int i = 0; i < nr_tests; i++) {
		int status;
		pid_t pid;

		fflush(NULL);
		pid = fork();
		if (pid == 0)
			_exit(run_one(i));
		waitpid(pid, &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			printf("FAIL %s\n", tests[i].name);
			failed++;
		}
	}
	printf("%d/%d passed\n", nr_tests - failed, nr_tests);
	return failed ? 1 : 0;
}

void gvm_test_expect_crash(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 2);	/* the expected report */
		fn();
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFSIGNALED(status) ||
		    (WIFEXITED(status) && WEXITSTATUS(status) != 0));
}

int gvm_test_run(struct gvm_queue *q, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	int err = gvm_exec(q, k, &s, 1);

	if (err)
		return err;
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	err = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return err < 0 ? err : 0;
}
