// SPDX-License-Identifier: MIT
/*
 * The library's threads (core/thread.c): each runs on a stack, descriptor
 * and TLS the library owns (so SVM never migrates them), stacks are
 * reused after a join, and running out of them is an error, not a crash.
 * Detached threads give theirs back once they ended; a forked child gets
 * the stacks of the parent's other threads back.  One test looks at every
 * thread a device, a VM and the process's mm start, through
 * /proc/self/task/N/syscall (the stack pointer of a thread blocked in a
 * system call).
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gvm/gvm.h>

#include "core/alloc.h"
#include "core/sync.h"
#include "core/thread.h"
#include "harness.h"
#include "svmtest.h"

static __thread int tls_word;

struct where {
	uint64_t local, tls, stack_lo, stack_hi;
};

static void *record(void *arg)
{
	struct where *w = arg;
	pthread_attr_t attr;
	void *lo;
	size_t size;
	int local = 0;

	w->local = (uint64_t)(uintptr_t)&local;
	w->tls = (uint64_t)(uintptr_t)&tls_word;
	if (!pthread_getattr_np(pthread_self(), &attr)) {
		pthread_attr_getstack(&attr, &lo, &size);
		w->stack_lo = (uint64_t)(uintptr_t)lo;
		w->stack_hi = w->stack_lo + size;
		pthread_attr_destroy(&attr);
	}
	return NULL;
}

TEST(stack_and_tls_are_the_librarys)
{
	struct where w = { 0 }, plain = { 0 };
	pthread_t t;

	ASSERT_OK(gvm__thread_create(&t, record, &w));
	ASSERT_OK(gvm__thread_join(t));
	ASSERT_TRUE(gvm__alloc_owns(w.local, sizeof(int)));
	ASSERT_TRUE(gvm__alloc_owns(w.tls, sizeof(int)));
	ASSERT_GE(w.stack_hi - w.stack_lo, GVM_THREAD_STACK_SIZE / 2);
	ASSERT_TRUE(gvm__thread_stacks_own(w.stack_lo, 1));
	ASSERT_TRUE(gvm__thread_stacks_own(w.stack_hi - 1, 1));

	/* The control: a thread of the application's is not. */
	ASSERT_OK(pthread_create(&t, NULL, record, &plain));
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_FALSE(gvm__alloc_owns(plain.local, sizeof(int)));
	ASSERT_FALSE(gvm__thread_stacks_own(plain.stack_lo,
					    plain.stack_hi - plain.stack_lo));
}

static void *nothing(void *arg)
{
	return arg;
}

TEST(joined_threads_give_their_stacks_back)
{
	pthread_t t;

	for (unsigned int i = 0; i < 2 * GVM_THREAD_MAX + 3; i++) {
		ASSERT_OK(gvm__thread_create(&t, nothing, NULL));
		ASSERT_OK(gvm__thread_join(t));
	}
}

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	unsigned int arrived;	/* threads waiting at it */
	unsigned int left;	/* threads done with it (atomic): the gate
				   may go once every one has left */
};

static void *wait_gate(void *arg)
{
	struct gate *g = arg;

	pthread_mutex_lock(&g->lock);
	g->arrived++;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	__atomic_add_fetch(&g->left, 1, __ATOMIC_RELEASE);	/* the last use */
	return NULL;
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/*
 * Starts threads that wait at a gate until a start fails (its error in
 * *@err), opens the gate, joins them; returns how many started.
 */
static unsigned int start_until_full(int *err)
{
	struct gate g = { .lock = PTHREAD_MUTEX_INITIALIZER,
			  .cond = PTHREAD_COND_INITIALIZER };
	pthread_t *t = calloc(GVM_THREAD_MAX + 1, sizeof(*t));
	unsigned int n = 0;

	ASSERT_TRUE(t != NULL);
	while (!(*err = gvm__thread_create(&t[n], wait_gate, &g))) {
		n++;
		ASSERT_LE(n, GVM_THREAD_MAX);
	}
	gate_open(&g);
	for (unsigned int i = 0; i < n; i++)
		ASSERT_OK(gvm__thread_join(t[i]));
	free(t);
	return n;
}

TEST(running_out_of_stacks_is_eagain)
{
	pthread_t t;
	int err;

	ASSERT_GT(start_until_full(&err), GVM_THREAD_MAX - 8);
	ASSERT_EQ(err, -EAGAIN);
	ASSERT_OK(gvm__thread_create(&t, nothing, NULL));
	ASSERT_OK(gvm__thread_join(t));
}

/*
 * Detached threads' stacks come back once they have ended: with every
 * slot taken by detached threads held at a gate, opening the gate lets
 * as many new threads start (each retried while -EAGAIN: the detached
 * ones end on their own, in their own time).
 */
/*
 * Every stack of a detached thread comes back once it ended: as many
 * threads as there were detached ones run at once afterwards.  The gate
 * is on this frame, so the test waits until every detached thread has
 * left it (it used to return while some were still waking at the gate,
 * whose memory the exit handlers then overwrote: seen as a crash under
 * load, ~1 run in 100).
 */
TEST(detached_threads_give_their_stacks_back)
{
	struct gate g = { .lock = PTHREAD_MUTEX_INITIALIZER,
			  .cond = PTHREAD_COND_INITIALIZER };
	pthread_t *t = calloc(GVM_THREAD_MAX + 1, sizeof(*t));
	unsigned int n = 0;
	int err;

	ASSERT_TRUE(t != NULL);
	while (!(err = gvm__thread_create(&t[n], wait_gate, &g))) {
		ASSERT_OK(gvm__thread_detach(t[n]));
		n++;
		ASSERT_LE(n, GVM_THREAD_MAX);
	}
	ASSERT_EQ(err, -EAGAIN);
	gate_open(&g);
	while (__atomic_load_n(&g.left, __ATOMIC_ACQUIRE) != n)
		sched_yield();
	for (unsigned int i = 0; i < n; i++) {
		while ((err = gvm__thread_create(&t[i], nothing, NULL)) ==
		       -EAGAIN)
			sched_yield();
		ASSERT_OK(err);
	}
	for (unsigned int i = 0; i < n; i++)
		ASSERT_OK(gvm__thread_join(t[i]));
	ASSERT_EQ(gvm__thread_detach(t[0]), -ESRCH);	/* joined already */
	free(t);
}

/* A forked child gets the stacks of the parent's threads, which it does
   not have, back. */
TEST(a_forked_child_has_every_stack)
{
	struct gate g = { .lock = PTHREAD_MUTEX_INITIALIZER,
			  .cond = PTHREAD_COND_INITIALIZER };
	pthread_t t[16];
	int status, err;
	pid_t pid;

	/* ThreadSanitizer cannot start threads in the child of a
	   multi-threaded fork (it dies). */
	if (UNDER_TSAN)
		return;
	for (unsigned int i = 0; i < 16; i++)
		ASSERT_OK(gvm__thread_create(&t[i], wait_gate, &g));
	/* Forked only once they all wait: none is inside a runtime's
	   allocator (ASan's is not fork-safe) or half started. */
	pthread_mutex_lock(&g.lock);
	while (g.arrived < 16)
		pthread_cond_wait(&g.cond, &g.lock);
	pthread_mutex_unlock(&g.lock);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (!pid) {
		unsigned int n = start_until_full(&err);

		_exit(err == -EAGAIN && n > GVM_THREAD_MAX - 8 ? 0 : 1);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	gate_open(&g);
	for (unsigned int i = 0; i < 16; i++)
		ASSERT_OK(gvm__thread_join(t[i]));
}

/*
 * A detached thread still running when the process exits, which ends
 * after the exit-time reaper has looked at it (a user-fence writer whose
 * last user went just before exit(): a "thread leak" in a CI TSan run).
 * The reaper detaches it for pthread, so that its end is no leak.  The
 * child forces the order: its own exit handler, registered before the
 * reaper's (at the first detach), runs after it, lets the thread end and
 * waits until the kernel has removed the task, before ThreadSanitizer's
 * check at the very end.  Under ThreadSanitizer the child's exit status
 * says whether it reported the thread; elsewhere this checks the exit
 * path runs.
 */
static struct {
	uint32_t go;		/* atomic: the thread may end */
	int tid;		/* atomic: its task id, once it runs */
} late;

static void *late_main(void *arg)
{
	(void)arg;
	__atomic_store_n(&late.tid, gettid(), __ATOMIC_RELEASE);
	while (!__atomic_load_n(&late.go, __ATOMIC_ACQUIRE))
		sched_yield();
	return NULL;
}

static void late_release(void)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d",
		 __atomic_load_n(&late.tid, __ATOMIC_ACQUIRE));
	__atomic_store_n(&late.go, 1u, __ATOMIC_RELEASE);
	for (long i = 0; !access(path, F_OK); i++) {
		if (i == 10000000)
			_exit(3);	/* never ended */
		sched_yield();
	}
}

TEST(a_detached_thread_ending_during_exit_is_no_leak)
{
	int status;
	pid_t pid;

	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (!pid) {
		pthread_t t;

		atexit(late_release);
		if (gvm__thread_create(&t, late_main, NULL) ||
		    gvm__thread_detach(t))
			_exit(2);
		while (!__atomic_load_n(&late.tid, __ATOMIC_ACQUIRE))
			sched_yield();
		exit(0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* ---- every thread the library starts ------------------------------------ */

#define MAX_TASKS 256

static unsigned int tasks(int *tid)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	unsigned int n = 0;

	ASSERT_TRUE(d != NULL);
	while ((e = readdir(d)) && n < MAX_TASKS)
		if (e->d_name[0] != '.')
			tid[n++] = atoi(e->d_name);
	closedir(d);
	return n;
}

/*
 * The stack pointer of thread @tid once it blocks in a system call (its
 * /proc/self/task/N/syscall line: number, six arguments, sp, pc; "running"
 * while it runs).  Threads that are done working go to sleep: no bound.
 */
static uint64_t blocked_sp(int tid)
{
	char path[64], line[512];
	unsigned long long sp = 0;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	for (;;) {
		FILE *f = fopen(path, "r");
		char *tok, *save;
		int field = 0;

		ASSERT_TRUE(f != NULL);
		ASSERT_TRUE(fgets(line, sizeof(line), f) != NULL);
		fclose(f);
		for (tok = strtok_r(line, " \n", &save); tok;
		     tok = strtok_r(NULL, " \n", &save), field++)
			if (field == 7)
				sp = strtoull(tok, NULL, 16);
		if (field == 9)
			return sp;
		sched_yield();
	}
}

static bool in(const int *set, unsigned int n, int tid)
{
	for (unsigned int i = 0; i < n; i++)
		if (set[i] == tid)
			return true;
	return false;
}

TEST(every_library_thread_runs_on_a_library_stack)
{
	int before[MAX_TASKS], after[MAX_TASKS];
	unsigned int nb, na, checked = 0;
	struct gvm_device *dev;
	struct gvm_mm *mm;
	struct svmt_vm v;
	uint64_t *p = svmt_map(SVMT_K4, SVMT_K4);
	struct where w;
	pthread_t t;

	/* A sanitizer's runtime starts its own thread with the first
	   thread: that one is not gvm's. */
	ASSERT_OK(pthread_create(&t, NULL, record, &w));
	ASSERT_OK(pthread_join(t, NULL));
	nb = tasks(before);

	/* The mm's event thread, a device's engines, timer, fault thread
	   and scheduler workers, a VM's rebind worker, the user-fence
	   writer: all started here, and each has worked once. */
	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	svmt_vm_init(&v, dev, mm);
	svmt_fill(&v, p, SVMT_K4, 0x5a5a5a5a);	/* a GPU fault */
	ASSERT_EQ(p[0], 0x5a5a5a5a5a5a5a5aull);

	na = tasks(after);
	for (unsigned int i = 0; i < na; i++) {
		uint64_t sp;

		if (in(before, nb, after[i]))
			continue;
		sp = blocked_sp(after[i]);
		if (!gvm__alloc_owns(sp, 8))
			gvm_test_fail(__FILE__, __LINE__,
				      "thread %d runs on %#llx, not a stack of the library",
				      after[i], (unsigned long long)sp);
		checked++;
	}
	ASSERT_GE(checked, 4u);
	svmt_vm_fini(&v);
	gvm_device_put(dev);
	gvm_mm_put(mm);
	svmt_unmap(p, SVMT_K4);
}
