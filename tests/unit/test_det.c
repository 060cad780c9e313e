// SPDX-License-Identifier: MIT
/*
 * The deterministic scheduler (src/core/det.c) and the explorer built on it
 * (tools/gvm/det_explore.c, det_scenarios.c): a run is a function of its
 * seed (same seed, same log; another seed, another log), on small programs
 * of the sync primitives and on a whole-stack scenario; the virtual clock;
 * deadlock reports; replay files and rerun commands; exploration finds seed 000's race when
 * its fix is switched off, and passes every scenario at bound 1 (sampled
 * under sanitizers: GVM_TEST_SCALE divides the number of runs).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <gvm/gvm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "core/det.h"
#include "core/sync.h"
#include "det.h"

/* ---- a program of the primitives ------------------------------------------ */

#define WORKERS 3
#define ROUNDS 20

static struct {
	struct gvm_mutex lock;
	pthread_cond_t cond;
	uint32_t word;
	unsigned int counter;
	unsigned int turns[WORKERS];
} prog;

static void *worker(void *arg)
{
	unsigned int id = (unsigned int)(uintptr_t)arg;

	for (int i = 0; i < ROUNDS; i++) {
		gvm__mutex_lock(&prog.lock);
		prog.counter++;
		prog.turns[id]++;
		gvm__cond_broadcast(&prog.cond);
		gvm__mutex_unlock(&prog.lock);
		if (i % 5 == 4) {
			gvm_fetch_add_release(&prog.word, 1u);
			gvm__futex_wake(&prog.word, 1);
		}
		gvm__yield();
	}
	return NULL;
}

/* Runs the program; returns the log's hash, the events in *@ev. */
static uint64_t run_prog(const struct gvm_det_config *cfg,
			 struct gvm_det_event **ev, size_t *nr)
{
	const struct gvm_det_event *e;
	pthread_t t[WORKERS];
	uint64_t hash;

	memset(&prog, 0, sizeof(prog));
	gvm__det_begin(cfg);
	gvm__mutex_init(&prog.lock, "prog.lock", GVM_RANK_LEAF);
	gvm__cond_init(&prog.cond);
	for (unsigned int i = 0; i < WORKERS; i++)
		ASSERT_OK(gvm__thread_create(&t[i], worker,
					     (void *)(uintptr_t)i));
	gvm__mutex_lock(&prog.lock);
	while (prog.counter < WORKERS * ROUNDS)
		gvm__cond_wait(&prog.cond, &prog.lock);
	gvm__mutex_unlock(&prog.lock);
	for (unsigned int i = 0; i < WORKERS; i++)
		ASSERT_OK(gvm__thread_join(t[i]));
	hash = gvm__det_end();
	ASSERT_EQ(prog.counter, WORKERS * ROUNDS);
	e = gvm__det_events(nr);
	*ev = malloc(*nr * sizeof(**ev));
	ASSERT_TRUE(*ev);
	memcpy(*ev, e, *nr * sizeof(**ev));
	pthread_cond_destroy(&prog.cond);
	gvm__mutex_fini(&prog.lock);
	return hash;
}

TEST(same_seed_same_log_different_seed_different_log)
{
	struct gvm_det_config cfg = { .seed = gvm_test_seed() };
	struct gvm_det_event *a, *b, *c;
	size_t na, nb, nc;
	uint64_t ha, hb, hc;

	ha = run_prog(&cfg, &a, &na);
	hb = run_prog(&cfg, &b, &nb);
	ASSERT_EQ(ha, hb);
	ASSERT_EQ(na, nb);
	ASSERT_EQ(memcmp(a, b, na * sizeof(*a)), 0);
	cfg.seed++;
	hc = run_prog(&cfg, &c, &nc);
	ASSERT_NE(ha, hc);
	/* the program's own result does not depend on the schedule */
	printf("%zu and %zu events, hashes %016llx %016llx\n", na, nc,
	       (unsigned long long)ha, (unsigned long long)hc);
	free(a);
	free(b);
	free(c);
}

TEST(fifo_runs_one_thread_until_it_blocks)
{
	struct gvm_det_config cfg = { .fifo = true };
	const struct gvm_det_decision *d;
	struct gvm_det_event *e;
	size_t ne, nd, switches = 0;

	run_prog(&cfg, &e, &ne);
	d = gvm__det_decisions(&nd);
	for (size_t i = 0; i < nd; i++)
		if (d[i].cur_runnable && d[i].chosen != d[i].cur)
			switches++;
	/* only the yields hand the token on while the thread could go on */
	for (size_t i = 0; i < ne; i++)
		if (e[i].nr_cand > 1 && e[i].next != e[i].tid)
			ASSERT_TRUE(e[i].kind == GVM_DET_YIELD ||
				    e[i].kind == GVM_DET_COND_WAIT ||
				    e[i].kind == GVM_DET_LOCK_WAIT ||
				    e[i].kind == GVM_DET_FUTEX_WAIT ||
				    e[i].kind == GVM_DET_JOIN ||
				    e[i].kind == GVM_DET_EXIT);
	ASSERT_GT(switches, 0);
	free(e);
}

/*
 * Fifo at a spin: the spinner steps aside as if it blocked, so the lowest
 * runnable id goes on (here the thread the spinner just woke), not the
 * next id after the spinner (a yield's round robin).  An engine polls like
 * this after a job: the default schedule must go on with the library's
 * work it woke, wherever that work runs, before an actor of a higher id.
 */
static uint32_t spin_gate, spin_word;
static unsigned int spin_order[3], spin_n;

static void *spin_woken(void *arg)
{
	(void)arg;
	while (!gvm_load_acquire(&spin_gate))
		gvm__futex_wait(&spin_gate, 0, -1);
	spin_order[spin_n++] = 1;
	return NULL;
}

static void *spin_spinner(void *arg)
{
	(void)arg;
	gvm_store_release(&spin_gate, 1u);
	gvm__futex_wake(&spin_gate, 1);
	gvm__spin_while_eq(&spin_word, 0, 1000);
	spin_order[spin_n++] = 2;
	return NULL;
}

static void *spin_other(void *arg)
{
	(void)arg;
	spin_order[spin_n++] = 3;
	return NULL;
}

TEST(fifo_spin_goes_on_with_the_lowest_runnable_id)
{
	static void *(*const fns[])(void *) = { spin_woken, spin_spinner,
						spin_other };
	struct gvm_det_config cfg = { .fifo = true };
	const struct gvm_det_event *e;
	unsigned int spins = 0;
	pthread_t t[3];
	size_t ne;

	spin_gate = spin_word = 0;
	spin_n = 0;
	gvm__det_begin(&cfg);
	for (unsigned int i = 0; i < 3; i++)
		ASSERT_OK(gvm__thread_create(&t[i], fns[i], NULL));
	for (unsigned int i = 0; i < 3; i++)
		ASSERT_OK(gvm__thread_join(t[i]));
	e = gvm__det_events(&ne);
	for (size_t i = 0; i < ne; i++) {
		if (e[i].kind != GVM_DET_SPIN)
			continue;
		spins++;
		ASSERT_EQ(e[i].tid, 2);
		ASSERT_EQ(e[i].nr_cand, 3);	/* 1 (woken), 2, 3 */
		ASSERT_EQ(e[i].next, 1);
	}
	gvm__det_end();
	ASSERT_EQ(spins, 1);
	/* the woken thread, then (the spinner stepped aside) the lowest */
	ASSERT_EQ(spin_n, 3);
	ASSERT_EQ(spin_order[0], 1);
	ASSERT_EQ(spin_order[1], 2);
	ASSERT_EQ(spin_order[2], 3);
}

/* ---- the virtual clock ------------------------------------------------------- */

static struct gvm_mutex clk_lock;
static pthread_cond_t clk_cond;

static void *sleeper(void *arg)
{
	int64_t *woke = arg;

	gvm__sleep_ns(3600ll * 1000000000);	/* an hour, virtually */
	*woke = gvm__now_ns();
	return NULL;
}

TEST(virtual_clock_jumps_to_the_next_deadline)
{
	struct gvm_det_config cfg = { .seed = 1 };
	int64_t t0, deadline, woke = 0;
	pthread_t t;

	gvm__det_begin(&cfg);
	gvm__mutex_init(&clk_lock, "clk", GVM_RANK_LEAF);
	gvm__cond_init(&clk_cond);
	t0 = gvm__now_ns();
	ASSERT_OK(gvm__thread_create(&t, sleeper, &woke));
	deadline = t0 + 10ll * 1000000000;
	gvm__mutex_lock(&clk_lock);
	ASSERT_EQ(gvm__cond_wait_until(&clk_cond, &clk_lock, deadline), -ETIME);
	gvm__mutex_unlock(&clk_lock);
	ASSERT_GE(gvm__now_ns(), deadline);
	ASSERT_OK(gvm__thread_join(t));
	ASSERT_GE(woke, t0 + 3600ll * 1000000000);
	gvm__det_end();
	pthread_cond_destroy(&clk_cond);
	gvm__mutex_fini(&clk_lock);
}

/* ---- deadlocks ------------------------------------------------------------------ */

static void *waits_forever(void *arg)
{
	(void)arg;
	gvm__mutex_lock(&clk_lock);
	gvm__cond_wait(&clk_cond, &clk_lock);	/* nobody signals */
	gvm__mutex_unlock(&clk_lock);
	return NULL;
}

static void deadlock(void)
{
	struct gvm_det_config cfg = { .seed = 1 };
	pthread_t t;

	gvm__det_begin(&cfg);
	gvm__mutex_init(&clk_lock, "clk", GVM_RANK_LEAF);
	gvm__cond_init(&clk_cond);
	ASSERT_OK(gvm__thread_create(&t, waits_forever, NULL));
	gvm__thread_join(t);
}

TEST(a_deadlock_is_reported_with_every_thread_state)
{
	ASSERT_DEATH(deadlock(), "deadlock: no thread can run");
	ASSERT_DEATH(deadlock(), "thread 1: blocked in cond-wait");
}

/* ---- detached threads ------------------------------------------------------ */

static unsigned int detached_steps;

static void *detached_fn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 5; i++) {
		gvm__yield();
		detached_steps++;
	}
	return NULL;
}

/*
 * A detached thread of the run (the user-fence writer is one) is never
 * joined: the run's end waits for it to exit, then ends normally.
 */
TEST(the_run_ends_after_its_detached_threads)
{
	struct gvm_det_config cfg = { .fifo = true };
	pthread_t t;

	detached_steps = 0;
	gvm__det_begin(&cfg);
	ASSERT_OK(gvm__thread_create(&t, detached_fn, NULL));
	ASSERT_OK(gvm__thread_detach(t));
	gvm__det_end();
	ASSERT_EQ(detached_steps, 5);
}

/* ---- replay files of failing randomised tests ------------------------------ */

/* A randomised test that fails inside its deterministic part (a child). */
static void failing_det_test(void)
{
	pthread_t t[WORKERS];

	memset(&prog, 0, sizeof(prog));
	gvm_test_det_begin();
	gvm__mutex_init(&prog.lock, "prog.lock", GVM_RANK_LEAF);
	gvm__cond_init(&prog.cond);
	for (unsigned int i = 0; i < WORKERS; i++)
		ASSERT_OK(gvm__thread_create(&t[i], worker,
					     (void *)(uintptr_t)i));
	for (unsigned int i = 0; i < WORKERS; i++)
		ASSERT_OK(gvm__thread_join(t[i]));
	/* fails, as a randomised test's check would */
	ASSERT_EQ(prog.counter, 0);
}

/* The decisions of replay file @path, and how many. */
static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 1 << 20);

	ASSERT_TRUE(f && buf);
	ASSERT_GT(fread(buf, 1, (1 << 20) - 1, f), 0);
	fclose(f);
	return buf;
}

static char *run_failing(const char *replay, pid_t *pid)
{
	char path[512];
	const char *dir = getenv("TMPDIR");
	int status;

	*pid = fork();
	ASSERT_GE(*pid, 0);
	if (*pid == 0) {
		if (replay)
			setenv("GVM_TEST_REPLAY", replay, 1);
		failing_det_test();
		_exit(0);
	}
	ASSERT_EQ(waitpid(*pid, &status, 0), *pid);
	ASSERT_TRUE(WIFSIGNALED(status));	/* the harness aborts */
	snprintf(path, sizeof(path), "%s/gvm-test-%s-%d.det",
		 dir && *dir ? dir : "/tmp",
		 "a_failing_det_test_writes_a_replay_file", (int)*pid);
	return strdup(path);
}

/*
 * A randomised test that runs deterministically (gvm_test_det_begin) and
 * fails writes a replay file named after the test and the process; with
 * GVM_TEST_REPLAY set to it, the test runs the same schedule and fails
 * the same way (its own replay file then holds the same decisions).
 */
TEST(a_failing_det_test_writes_a_replay_file)
{
	pid_t p1, p2;
	char *f1 = run_failing(NULL, &p1), *f2 = run_failing(f1, &p2);
	char *a = read_all(f1), *b = read_all(f2);

	ASSERT_TRUE(strstr(a, "gvm-test-det 1\ntest "
			      "a_failing_det_test_writes_a_replay_file\n"));
	ASSERT_TRUE(strstr(a, "\ndecisions "));
	ASSERT_EQ(strcmp(a, b), 0);
	unlink(f1);
	unlink(f2);
	free(a);
	free(b);
	free(f1);
	free(f2);
}

/*
 * Any randomised test that fails prints the command that reruns it: its
 * seed (GVM_TEST_SEED), the suite's absolute path and the test's name,
 * after the GVM_* variables the suite started with (CI's, if any).
 */
TEST(a_failing_seeded_test_prints_its_rerun_command)
{
	char exe[2048], want[2400];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	uint64_t s = gvm_test_seed();

	ASSERT_GT(n, 0);
	exe[n] = 0;
	snprintf(want, sizeof(want), "GVM_TEST_SEED=%" PRIu64 " %s "
		 "a_failing_seeded_test_prints_its_rerun_command\n", s, exe);
	/* fails, as a randomised test's check would */
	ASSERT_DEATH(ASSERT_EQ(gvm_test_seed(), s + 1), want);
}

/* ---- whole-stack scenarios ------------------------------------------------------- */

TEST(stack_scenario_same_seed_same_log)
{
	const struct gvm_det_scenario *sc = gvm_det_scenario_find("bind-race");
	struct gvm_det_run r = { .sc = sc, .seed = gvm_test_seed() };
	uint64_t h1, h2, h3;
	size_t n1, n2;

	ASSERT_TRUE(sc);
	gvm_det_run_here(&r, &h1);
	gvm__det_events(&n1);
	gvm_det_run_here(&r, &h2);
	gvm__det_events(&n2);
	ASSERT_EQ(h1, h2);
	ASSERT_EQ(n1, n2);
	r.seed++;
	gvm_det_run_here(&r, &h3);
	ASSERT_NE(h1, h3);
}

/*
 * An inline bind with an out-fence and nothing to do: the fence is the
 * library's stub, made on first use in the process.  Returns the run's
 * log hash.
 */
static uint64_t empty_bind_run(void)
{
	struct gvm_det_config cfg = { .seed = gvm_test_seed() };
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .out = &f };
	struct gvm_device *dev;
	struct gvm_vm *vm;

	gvm__det_begin(&cfg);
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &vm));
	ASSERT_OK(gvm_vm_bind(vm, NULL, NULL, 0, &s, 1));
	ASSERT_TRUE(f != NULL);
	ASSERT_EQ(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE), 0);
	gvm_fence_put(f);
	gvm_vm_destroy(vm);
	gvm_device_put(dev);
	return gvm__det_end();
}

/*
 * A run does not depend on what the process did before it: the first run
 * in a process schedules as the next ones do.  The stub fence used to be
 * signalled under its lock when it was made, a scheduling point only the
 * first user met (fuzz_driver --det then gave an input run alone another
 * log than the same input run after others).
 */
TEST(the_first_run_in_a_process_is_like_the_next)
{
	uint64_t h1 = empty_bind_run(), h2 = empty_bind_run();

	ASSERT_EQ(h1, h2);
}

TEST(replay_file_round_trip)
{
	uint8_t script[] = { 0, 3, 1, 2, 9 };
	struct gvm_det_run w = { .sc = gvm_det_scenario_find("seed000"),
				 .mutant = true, .fifo = true, .seed = 77,
				 .script = script, .script_len = 5 }, r;
	char path[] = "/tmp/gvm-det-test-XXXXXX";
	int fd = mkstemp(path);

	ASSERT_GE(fd, 0);
	close(fd);
	ASSERT_OK(gvm_det_write(path, &w));
	ASSERT_OK(gvm_det_read(path, &r));
	ASSERT_TRUE(r.sc == w.sc);
	ASSERT_TRUE(r.mutant && r.fifo);
	ASSERT_EQ(r.seed, 77);
	ASSERT_EQ(r.script_len, 5);
	ASSERT_EQ(memcmp(r.script, script, 5), 0);
	gvm_det_run_free(&r);
	unlink(path);
}

/*
 * Seed 000's fix switched off (a test-only switch: commit ignores zaps of
 * entries it does not own): exploration at bound 1 finds the interleaving
 * (the bind preempted before its commit, the invalidation run in between)
 * within a few runs.  With the fix, every run of the bound passes.
 */
TEST(explore_finds_seed000_without_its_fix)
{
	const struct gvm_det_scenario *sc = gvm_det_scenario_find("seed000");
	char path[] = "/tmp/gvm-det-seed000-XXXXXX";
	struct gvm_det_stats st;
	struct gvm_det_run r;
	int fd = mkstemp(path), status;
	pid_t pid;

	ASSERT_GE(fd, 0);
	close(fd);
	ASSERT_EQ(gvm_det_explore(sc, true, 1, 1000, path, false, &st), 1);
	ASSERT_EQ(st.failures, 1);
	ASSERT_LE(st.runs, 20);
	printf("found in %llu runs\n", (unsigned long long)st.runs);
	/* the replay file reproduces it */
	ASSERT_OK(gvm_det_read(path, &r));
	ASSERT_TRUE(r.mutant);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		uint64_t h;

		gvm_det_run_here(&r, &h);
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 1);	/* the scenario's failed check */
	gvm_det_run_free(&r);
	unlink(path);
}

/*
 * The same for SVM on the model mm: with the sequence recheck of an SVM
 * range's commit switched off (gvm__svm_mutant_no_seq_recheck), a GPU
 * fault that fetched system pages commits them after a reclaim moved them
 * away, and the GPU's store lands in a freed frame.  Exploration at bound
 * 1 finds it; with the recheck, every run passes (below).
 */
TEST(explore_finds_svm_race_without_the_seq_recheck)
{
	const char *names[] = { "fault-reclaim", "fault-munmap" };

	for (unsigned int i = 0; i < 2; i++) {
		const struct gvm_det_scenario *sc =
			gvm_det_scenario_find(names[i]);
		struct gvm_det_stats st;

		ASSERT_TRUE(sc);
		ASSERT_EQ(gvm_det_explore(sc, true, 1, 1000, NULL, false, &st),
			  1);
		ASSERT_EQ(st.failures, 1);
		printf("%s: found in %llu runs\n", names[i],
		       (unsigned long long)st.runs);
	}
}

static void explore_passes_max(const char *name, uint64_t max_runs)
{
	const struct gvm_det_scenario *sc = gvm_det_scenario_find(name);
	struct gvm_det_stats st;

	ASSERT_TRUE(sc);
	/* exhaustive in debug builds (< max_runs); sampled under sanitizers */
	ASSERT_EQ(gvm_det_explore(sc, false, 1, gvm_test_scale(max_runs), NULL,
				  false, &st), 0);
	printf("%s: %llu runs%s, %llu decisions in the window\n", name,
	       (unsigned long long)st.runs, st.capped ? " (capped)" : "",
	       (unsigned long long)st.max_decisions);
	if (!st.capped)
		ASSERT_GT(st.runs, st.max_decisions / 2);
}

static void explore_passes(const char *name)
{
	explore_passes_max(name, 200);
}

TEST(explore_seed000_bound1)
{
	explore_passes("seed000");
}

TEST(explore_bind_race_bound1)
{
	explore_passes("bind-race");
}

TEST(explore_unbind_exec_bound1)
{
	explore_passes("unbind-exec");
}

TEST(explore_fault_unbind_bound1)
{
	explore_passes_max("fault-unbind", 400);
}

TEST(explore_gc_fault_bound1)
{
	explore_passes_max("gc-fault", 400);
}

TEST(explore_evict_exec_bound1)
{
	explore_passes("evict-exec");
}

TEST(explore_fault_munmap_bound1)
{
	explore_passes_max("fault-munmap", 400);
}

TEST(explore_gc_remap_bound1)
{
	explore_passes_max("gc-remap", 400);
}

TEST(explore_cpu_gpu_fault_bound1)
{
	explore_passes_max("cpu-gpu-fault", 400);
}

TEST(explore_migrate_reclaim_bound1)
{
	explore_passes_max("migrate-reclaim", 400);
}

TEST(explore_fault_reclaim_bound1)
{
	explore_passes_max("fault-reclaim", 400);
}
