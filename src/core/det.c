// SPDX-License-Identifier: MIT
/*
 * The deterministic scheduler (det.h): one run token, a seeded or scripted
 * choice at every scheduling point, a virtual clock, and a log.
 *
 * MODEL.  A run's threads are the thread that called gvm__det_begin()
 * (thread 0) and every thread created through gvm__thread_create() while
 * the run lasts (engines, the timer, bind workers, the fault thread, the
 * rebind worker...), numbered in creation order.  They are real threads,
 * but exactly one of them runs at a time: the one holding the token
 * (det.cur).  The others sleep on their own condition variable.  Every
 * primitive of sync.h is a scheduling point:
 *
 *	point         what the thread does                       logged as
 *	mutex lock    point, then trylock; busy: sleep until an  LOCK,
 *	              unlock, retry                              LOCK_WAIT
 *	mutex unlock  unlock, make the lock's sleepers runnable  -
 *	cond wait     sleep on the cond (with a deadline if      COND_WAIT
 *	              timed), unlock; woken: retake the mutex
 *	signal/bcast  make the first / every sleeper runnable    -
 *	futex wait    -EAGAIN if the word moved, else sleep      FUTEX_WAIT
 *	futex wake    make up to nr sleepers runnable (FIFO)     -
 *	spin poll     yield, then read the word once             SPIN
 *	sched_yield   prefer another runnable thread             YIELD
 *	sleep         sleep until now + ns                       SLEEP
 *	create/join   the child is runnable / sleep until exit   SPAWN, JOIN
 *	exit          hand the token on                          EXIT
 *
 * At a point the scheduler picks the next holder among the runnable
 * threads: the script's next entry if any is left (replay, exploration),
 * else a seeded random one, or (fifo) the current thread if it can go on,
 * else the lowest id.  Fifo at a yield: the next runnable id after the
 * current one (round robin, so that threads yielding in a loop all get
 * their turn); at a spin: the lowest runnable id but the spinner's, as if
 * it blocked (a spin is one point, never a loop: a poll whose word did not
 * move goes to sleep).  The library's threads are created before a
 * scenario's actors, so fifo lets the library's work (a woken servicer, a
 * worker) go on before an actor, at a spin as at a block, whichever
 * thread that work runs on; an actor comes in where a schedule deviates.
 * A point with one candidate is no decision.
 *
 * TIME.  gvm__now_ns() reads the virtual clock, which starts at 1 s and
 * moves in two ways only: every read by a thread of the run advances it by
 * DET_CLOCK_STEP_NS (so that a loop that polls until a deadline ends), and
 * when no thread is runnable it jumps to the earliest deadline of a timed
 * sleeper.  Nobody runnable and no deadline is a deadlock: the scheduler
 * prints every thread's state and the end of the log, and aborts.
 *
 * Unchanged behaviour, different timing: a deterministic run takes the
 * paths a real run can take (a spin that sees nothing, a wake-up that comes
 * late) but never a spurious wake-up.  What it cannot cover: threads that
 * are not the run's ("foreign": the mm_self event thread, which sleeps in
 * the kernel; a test's own pthreads) run freely; their wakes of the run's
 * sleepers are applied (and logged as such) but make the run depend on
 * them, so scenarios cause no userfaultfd events (they invalidate through
 * gvm__mm_invalidate instead).  Atomics are not points: a thread can only
 * be preempted at a primitive.
 *
 * LOCKING.  det.lock (an OS mutex, a leaf: taken by the hooks only, never
 * held while calling out) protects everything in struct det and every
 * struct det_thread; det_self is the calling thread's own.  The token
 * moves only under det.lock, so what one holder wrote is visible to the
 * next (the lock's release/acquire).
 *
 * MEMORY.  The scheduler's own records (threads, the log) come from libc,
 * not gvm__malloc(): they are not the library's state, so fault injection
 * must neither count nor fail them.  (Nothing here touches memory a
 * scenario hands to SVM.)
 *
 * WHAT IT DOES NOT DO.  No preemption between two atomics; no choice of
 * which sleeper a signal wakes (the oldest); no spurious wake-ups; at most
 * GVM_DET_MAX_THREADS threads per run; one run at a time per process.
 *
 * EXAMPLE.
 *	struct gvm_det_config cfg = { .seed = 42 };
 *	gvm__det_begin(&cfg);
 *	... create a device, run actors with gvm__thread_create, join ...
 *	hash = gvm__det_end();		// same seed, same program: same hash
 */
#include "core/det.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/sync.h"
#include "core/thread.h"

#define DET_CLOCK_STEP_NS 1000
#define DET_CLOCK_START_NS 1000000000ll
/* How long a run with nothing runnable waits for a foreign thread's wake
   before it calls it a deadlock (real time). */
#define DET_FOREIGN_WAIT_NS 2000000000ll

enum det_state { DET_RUNNABLE, DET_BLOCKED, DET_EXITED };

struct det_thread {
	pthread_cond_t cv;		/* the thread sleeps here for the token */
	pthread_t pt;
	void *(*fn)(void *);
	void *arg;
	unsigned int id;
	enum det_state state;
	const void *key;		/* what it sleeps on (BLOCKED) */
	enum gvm_det_kind why;		/* the point it sleeps at */
	const char *what;		/* the mutex name, if any */
	int64_t deadline;		/* -1: none */
	uint64_t wait_seq;		/* FIFO order of sleepers */
	bool timed_out;
	bool joined;
	bool detached;			/* gvm__thread_detach: never joined */
};

static struct det {
	pthread_mutex_t lock;
	pthread_cond_t idle;		/* a foreign wake while nobody runs */
	struct det_thread *threads[GVM_DET_MAX_THREADS];
	unsigned int nr;
	struct det_thread *cur;		/* holds the token */
	int64_t now;			/* written under lock, read relaxed */
	uint64_t rng;
	uint64_t wait_seq;
	uint64_t hash;
	struct gvm_det_config cfg;
	size_t script_pos;
	bool window;
	bool stopped;
	struct gvm_det_event *ev;
	size_t nr_ev, cap_ev;
	struct gvm_det_decision *dec;
	size_t nr_dec, cap_dec;
} det = { .lock = PTHREAD_MUTEX_INITIALIZER };

uint32_t gvm__det_enabled;
static __thread struct det_thread *det_self;

static const char *const kind_names[GVM_DET_NR_KINDS] = {
	"lock", "lock-wait", "cond-wait", "futex-wait", "spin", "yield",
	"sleep", "spawn", "join", "exit", "mark",
};

/* ---- helpers (det.lock held) --------------------------------------------- */

static uint64_t rng_next(void)
{
	uint64_t z = (det.rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (s && *s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	*cap = *cap ? *cap * 2 : 4096;
	p = realloc(p, *cap * size);
	if (!p) {
		fprintf(stderr, "gvm det: out of memory for the log\n");
		abort();
	}
	return p;
}

void gvm__det_dump_threads(FILE *f)
{
	for (unsigned int i = 0; i < det.nr; i++) {
		struct det_thread *t = det.threads[i];

		fprintf(f, "  thread %u%s: %s", i, t == det.cur ? " (runs)" : "",
			t->state == DET_RUNNABLE ? "runnable" :
			t->state == DET_EXITED ? "exited" : "blocked");
		if (t->state == DET_BLOCKED)
			fprintf(f, " in %s%s%s, deadline %" PRId64,
				kind_names[t->why], t->what ? " " : "",
				t->what ? t->what : "", t->deadline);
		fputc('\n', f);
	}
}

static void report_locked(const char *why)
{
	fprintf(stderr, "gvm det: %s at event %zu (virtual time %" PRId64
		" ns)\n", why, det.nr_ev, det.now);
	gvm__det_dump_threads(stderr);
	fprintf(stderr, "  last events:\n");
	gvm__det_dump(stderr, det.nr_ev > 30 ? det.nr_ev - 30 : 0, det.nr_ev);
}

static void wake_locked(struct det_thread *t, bool timed_out)
{
	t->state = DET_RUNNABLE;
	t->key = NULL;
	t->timed_out = timed_out;
}

/* Makes up to @nr sleepers on @key runnable, oldest first. */
static int wake_key_locked(const void *key, int nr)
{
	int woken = 0;

	while (woken < nr) {
		struct det_thread *best = NULL;

		for (unsigned int i = 0; i < det.nr; i++) {
			struct det_thread *t = det.threads[i];

			if (t->state == DET_BLOCKED && t->key == key &&
			    (!best || t->wait_seq < best->wait_seq))
				best = t;
		}
		if (!best)
			break;
		wake_locked(best, false);
		woken++;
	}
	return woken;
}

static void wake_expired_locked(void)
{
	for (unsigned int i = 0; i < det.nr; i++) {
		struct det_thread *t = det.threads[i];

		if (t->state == DET_BLOCKED && t->deadline >= 0 &&
		    t->deadline <= det.now)
			wake_locked(t, true);
	}
}

static uint64_t runnable_locked(void)
{
	uint64_t mask = 0;

	for (unsigned int i = 0; i < det.nr; i++)
		if (det.threads[i]->state == DET_RUNNABLE)
			mask |= 1ull << i;
	return mask;
}

/* Nobody runnable: jump the clock, or wait for a foreign wake, or die. */
static uint64_t idle_locked(void)
{
	int64_t first = -1;
	uint64_t mask;

	for (unsigned int i = 0; i < det.nr; i++) {
		struct det_thread *t = det.threads[i];

		if (t->state == DET_BLOCKED && t->deadline >= 0 &&
		    (first < 0 || t->deadline < first))
			first = t->deadline;
	}
	if (first >= 0) {
		if (first > det.now)
			gvm_store_relaxed(&det.now, first);
		wake_expired_locked();
		return runnable_locked();
	}
	/* Only a foreign thread can help now. */
	{
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += DET_FOREIGN_WAIT_NS / 1000000000;
		while (!(mask = runnable_locked()))
			if (pthread_cond_timedwait(&det.idle, &det.lock, &ts))
				break;
	}
	if (!mask) {
		report_locked("deadlock: no thread can run");
		abort();
	}
	return mask;
}

static unsigned int lowest(uint64_t mask)
{
	return (unsigned int)__builtin_ctzll(mask);
}

static unsigned int nth_bit(uint64_t mask, unsigned int n)
{
	while (n--)
		mask &= mask - 1;
	return lowest(mask);
}

/*
 * Picks the next token holder after @self reached a point of @kind (self
 * may have blocked or exited), logs the event and the decision.
 */
static struct det_thread *pick_locked(struct det_thread *self,
				      enum gvm_det_kind kind, const char *name,
				      uint32_t obj)
{
	uint64_t mask, others;
	unsigned int n, next;
	bool self_ok;

	wake_expired_locked();
	mask = runnable_locked();
	if (!mask)
		mask = idle_locked();
	self_ok = mask & (1ull << self->id);
	n = (unsigned int)__builtin_popcountll(mask);
	if (n == 1) {
		next = lowest(mask);
	} else {
		if (det.script_pos < det.cfg.script_len) {
			next = det.cfg.script[det.script_pos++];
			if (next >= det.nr || !(mask & (1ull << next))) {
				report_locked("replay diverged: the script's "
					      "thread cannot run");
				abort();
			}
		} else if (det.cfg.fifo) {
			others = mask & ~(1ull << self->id);
			if (kind == GVM_DET_YIELD)
				/* round robin: the next id after self */
				next = (others >> self->id) ?
					       self->id +
						       lowest(others >> self->id) :
					       lowest(others);
			else if (kind == GVM_DET_SPIN)
				/* steps aside as if blocked (MODEL) */
				next = lowest(others);
			else
				next = self_ok ? self->id : lowest(mask);
		} else {
			next = nth_bit(mask, (unsigned int)(rng_next() % n));
		}
		det.dec = grow(det.dec, &det.cap_dec, det.nr_dec + 1,
			       sizeof(*det.dec));
		det.dec[det.nr_dec++] = (struct gvm_det_decision){
			.cand = mask, .chosen = (uint8_t)next,
			.cur = (uint8_t)self->id, .cur_runnable = self_ok,
			.window = det.window,
		};
	}
	det.ev = grow(det.ev, &det.cap_ev, det.nr_ev + 1, sizeof(*det.ev));
	det.ev[det.nr_ev++] = (struct gvm_det_event){
		.vtime_ns = (uint64_t)det.now, .name = name, .obj = obj,
		.tid = (uint8_t)self->id, .kind = (uint8_t)kind,
		.next = (uint8_t)next, .nr_cand = (uint8_t)n,
	};
	/* FNV-1a over what is independent of addresses */
	{
		uint64_t w[3] = { (uint64_t)det.now, obj,
				  self->id | (uint64_t)kind << 8 |
					  (uint64_t)next << 16 |
					  (uint64_t)n << 24 };
		const uint8_t *b = (const uint8_t *)w;

		for (size_t i = 0; i < sizeof(w); i++)
			det.hash = (det.hash ^ b[i]) * 1099511628211ull;
	}
	if (det.nr_ev > det.cfg.max_events) {
		report_locked("livelock: too many events");
		abort();
	}
	if (det.cfg.stop_at && det.nr_ev == det.cfg.stop_at && det.cfg.on_stop &&
	    !det.stopped) {
		det.stopped = true;
		det.cfg.on_stop(det.cfg.stop_arg, det.nr_ev);
	}
	return det.threads[next];
}

/* Hands the token to @next and sleeps until it comes back to @self. */
static void switch_locked(struct det_thread *self, struct det_thread *next)
{
	det.cur = next;
	if (next == self)
		return;
	pthread_cond_signal(&next->cv);
	while (det.cur != self)
		pthread_cond_wait(&self->cv, &det.lock);
}

static void point_locked(struct det_thread *self, enum gvm_det_kind kind,
			 const char *name, uint32_t obj)
{
	switch_locked(self, pick_locked(self, kind, name, obj));
}

/* Sleeps on @key until woken (false) or until @deadline (true). */
static bool block_locked(struct det_thread *self, enum gvm_det_kind kind,
			 const void *key, const char *what, int64_t deadline)
{
	self->state = DET_BLOCKED;
	self->key = key;
	self->why = kind;
	self->what = what;
	self->deadline = deadline;
	self->wait_seq = det.wait_seq++;
	self->timed_out = false;
	point_locked(self, kind, what, what ? name_hash(what) : 0);
	return self->timed_out;
}

/* A foreign thread woke sleepers of the run: let an idle run go on. */
static void foreign_wake(const void *key, int nr)
{
	pthread_mutex_lock(&det.lock);
	if (wake_key_locked(key, nr))
		pthread_cond_broadcast(&det.idle);
	pthread_mutex_unlock(&det.lock);
}

/* ---- the primitives --------------------------------------------------- */

static void take_locked(struct det_thread *self, struct gvm_mutex *m)
{
	while (pthread_mutex_trylock(&m->m))
		block_locked(self, GVM_DET_LOCK_WAIT, &m->m, m->name, -1);
}

void gvm__det_mutex_lock(struct gvm_mutex *m)
{
	struct det_thread *self = det_self;

	if (!self) {
		pthread_mutex_lock(&m->m);
		return;
	}
	pthread_mutex_lock(&det.lock);
	point_locked(self, GVM_DET_LOCK, m->name, name_hash(m->name));
	take_locked(self, m);
	pthread_mutex_unlock(&det.lock);
}

void gvm__det_mutex_unlock(struct gvm_mutex *m)
{
	pthread_mutex_unlock(&m->m);
	if (!det_self) {
		foreign_wake(&m->m, INT32_MAX);
		return;
	}
	pthread_mutex_lock(&det.lock);
	wake_key_locked(&m->m, INT32_MAX);
	pthread_mutex_unlock(&det.lock);
}

int gvm__det_cond_wait(pthread_cond_t *c, struct gvm_mutex *m,
		       int64_t deadline_ns)
{
	struct det_thread *self = det_self;
	bool timed_out;

	if (!self) {
		if (deadline_ns < 0) {
			pthread_cond_wait(c, &m->m);
			return 0;
		}
		struct timespec ts = gvm__ns_to_timespec(deadline_ns);

		return pthread_cond_timedwait(c, &m->m, &ts) == ETIMEDOUT ?
			       -ETIME : 0;
	}
	pthread_mutex_lock(&det.lock);
	pthread_mutex_unlock(&m->m);
	wake_key_locked(&m->m, INT32_MAX);
	timed_out = block_locked(self, GVM_DET_COND_WAIT, c, NULL,
				 deadline_ns);
	take_locked(self, m);
	pthread_mutex_unlock(&det.lock);
	return timed_out ? -ETIME : 0;
}

void gvm__det_cond_wake(pthread_cond_t *c, bool all)
{
	if (!det_self) {
		foreign_wake(c, all ? INT32_MAX : 1);
		if (all)
			pthread_cond_broadcast(c);
		else
			pthread_cond_signal(c);
		return;
	}
	pthread_mutex_lock(&det.lock);
	wake_key_locked(c, all ? INT32_MAX : 1);
	pthread_mutex_unlock(&det.lock);
	/* a foreign thread may sleep on it too */
	if (all)
		pthread_cond_broadcast(c);
	else
		pthread_cond_signal(c);
}

int gvm__det_futex_wait(uint32_t *word, uint32_t val, int64_t deadline_ns)
{
	struct det_thread *self = det_self;
	bool timed_out;

	if (!self)
		return -ENOSYS;		/* sync.c: the system call */
	pthread_mutex_lock(&det.lock);
	if (gvm_load_acquire(word) != val) {
		point_locked(self, GVM_DET_FUTEX_WAIT, NULL, 0);
		pthread_mutex_unlock(&det.lock);
		return -EAGAIN;
	}
	timed_out = block_locked(self, GVM_DET_FUTEX_WAIT, word, NULL,
				 deadline_ns);
	pthread_mutex_unlock(&det.lock);
	return timed_out ? -ETIME : 0;
}

void gvm__det_futex_wake(uint32_t *word, int nr)
{
	if (!det_self) {
		foreign_wake(word, nr);
		return;
	}
	pthread_mutex_lock(&det.lock);
	wake_key_locked(word, nr);
	pthread_mutex_unlock(&det.lock);
}

bool gvm__det_spin(const uint32_t *word, uint32_t old)
{
	struct det_thread *self = det_self;

	if (self) {
		pthread_mutex_lock(&det.lock);
		point_locked(self, GVM_DET_SPIN, NULL, 0);
		pthread_mutex_unlock(&det.lock);
	}
	return gvm_load_acquire(word) != old;
}

void gvm__det_yield(void)
{
	struct det_thread *self = det_self;

	if (!self) {
		sched_yield();
		return;
	}
	pthread_mutex_lock(&det.lock);
	point_locked(self, GVM_DET_YIELD, NULL, 0);
	pthread_mutex_unlock(&det.lock);
}

void gvm__det_sleep(int64_t ns)
{
	struct det_thread *self = det_self;

	if (!self) {
		struct timespec ts = gvm__ns_to_timespec(ns);

		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
		return;
	}
	pthread_mutex_lock(&det.lock);
	block_locked(self, GVM_DET_SLEEP, NULL, NULL, det.now + ns);
	pthread_mutex_unlock(&det.lock);
}

int64_t gvm__det_now(void)
{
	int64_t now;

	if (!det_self)
		return gvm_load_relaxed(&det.now);
	pthread_mutex_lock(&det.lock);
	now = det.now + DET_CLOCK_STEP_NS;
	gvm_store_relaxed(&det.now, now);
	pthread_mutex_unlock(&det.lock);
	return now;
}

void gvm__det_mark(const char *name)
{
	struct det_thread *self = det_self;

	if (!gvm__det_on() || !self)
		return;
	pthread_mutex_lock(&det.lock);
	point_locked(self, GVM_DET_MARK, name, name_hash(name));
	pthread_mutex_unlock(&det.lock);
}

void gvm__det_window(bool open)
{
	pthread_mutex_lock(&det.lock);
	det.window = open;
	pthread_mutex_unlock(&det.lock);
}

/* ---- threads ------------------------------------------------------------ */

static struct det_thread *thread_new(void)
{
	struct det_thread *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	pthread_cond_init(&t->cv, NULL);
	t->deadline = -1;
	return t;
}

static void exit_locked(struct det_thread *self)
{
	self->state = DET_EXITED;
	wake_key_locked(self, INT32_MAX);
	det.cur = pick_locked(self, GVM_DET_EXIT, NULL, 0);
	pthread_cond_signal(&det.cur->cv);
}

static void *trampoline(void *arg)
{
	struct det_thread *self = arg;
	void *ret;

	det_self = self;
	pthread_mutex_lock(&det.lock);
	while (det.cur != self)
		pthread_cond_wait(&self->cv, &det.lock);
	pthread_mutex_unlock(&det.lock);
	ret = self->fn(self->arg);
	pthread_mutex_lock(&det.lock);
	exit_locked(self);
	pthread_mutex_unlock(&det.lock);
	det_self = NULL;
	return ret;
}

int gvm__det_thread_create(pthread_t *out, void *(*fn)(void *), void *arg)
{
	struct det_thread *self = det_self, *t;
	int err;

	if (!self)
		return gvm__os_thread_create(out, fn, arg);
	t = thread_new();
	if (!t)
		return -ENOMEM;
	t->fn = fn;
	t->arg = arg;
	pthread_mutex_lock(&det.lock);
	if (det.nr == GVM_DET_MAX_THREADS) {
		/* As pthread_create() when out of threads: the caller's
		   create fails (a device, say), not the process. */
		pthread_mutex_unlock(&det.lock);
		pthread_cond_destroy(&t->cv);
		free(t);
		return -EAGAIN;
	}
	t->id = det.nr;
	err = gvm__os_thread_create(&t->pt, trampoline, t);
	if (err) {
		pthread_mutex_unlock(&det.lock);
		pthread_cond_destroy(&t->cv);
		free(t);
		return err;
	}
	det.threads[det.nr++] = t;
	*out = t->pt;
	point_locked(self, GVM_DET_SPAWN, NULL, t->id);
	pthread_mutex_unlock(&det.lock);
	return 0;
}

int gvm__det_thread_join(pthread_t pt)
{
	struct det_thread *self = det_self, *t = NULL;

	if (self) {
		pthread_mutex_lock(&det.lock);
		for (unsigned int i = 0; i < det.nr; i++)
			if (pthread_equal(det.threads[i]->pt, pt))
				t = det.threads[i];
		if (t) {
			point_locked(self, GVM_DET_JOIN, NULL, t->id);
			while (t->state != DET_EXITED)
				block_locked(self, GVM_DET_JOIN, t, NULL, -1);
			t->joined = true;
		}
		pthread_mutex_unlock(&det.lock);
	}
	return gvm__os_thread_join(pt);
}

void gvm__det_thread_detach(pthread_t pt)
{
	pthread_mutex_lock(&det.lock);
	for (unsigned int i = 0; i < det.nr; i++)
		if (pthread_equal(det.threads[i]->pt, pt))
			det.threads[i]->detached = true;
	pthread_mutex_unlock(&det.lock);
}

/* ---- runs ---------------------------------------------------------------- */

void gvm__det_begin(const struct gvm_det_config *cfg)
{
	struct det_thread *t;

	GVM_BUG_ON(gvm__det_on());
	for (unsigned int i = 0; i < det.nr; i++) {
		pthread_cond_destroy(&det.threads[i]->cv);
		free(det.threads[i]);
	}
	det.nr = 0;
	det.cfg = *cfg;
	if (!det.cfg.max_events)
		det.cfg.max_events = 50000000;
	det.rng = cfg->seed;
	det.now = DET_CLOCK_START_NS;
	det.wait_seq = 0;
	det.hash = 14695981039346656037ull;
	det.script_pos = 0;
	det.window = false;
	det.stopped = false;
	det.nr_ev = 0;
	det.nr_dec = 0;
	pthread_cond_init(&det.idle, NULL);
	t = thread_new();
	GVM_BUG_ON(!t);
	t->pt = pthread_self();
	det.threads[det.nr++] = t;
	det.cur = t;
	det_self = t;
	gvm_store_release(&gvm__det_enabled, 1u);
}

uint64_t gvm__det_end(void)
{
	struct det_thread *self = det_self;

	GVM_BUG_ON(!self || self->id != 0);
	pthread_mutex_lock(&det.lock);
	for (unsigned int i = 1; i < det.nr; i++) {
		struct det_thread *t = det.threads[i];

		/* a detached thread ends on its own: wait for it */
		while (t->detached && t->state != DET_EXITED)
			block_locked(self, GVM_DET_JOIN, t, NULL, -1);
		if (t->state != DET_EXITED || (!t->joined && !t->detached)) {
			report_locked("the run ended with a thread alive");
			abort();
		}
	}
	pthread_mutex_unlock(&det.lock);
	gvm_store_release(&gvm__det_enabled, 0u);
	det_self = NULL;
	/* Detached threads ended: joined now, so that no run leaves an
	   ended thread behind (ThreadSanitizer reports those).  No other
	   thread of the run is left to reap them concurrently. */
	for (unsigned int i = 1; i < det.nr; i++)
		if (det.threads[i]->detached)
			gvm__os_thread_join(det.threads[i]->pt);
	pthread_cond_destroy(&det.idle);
	return det.hash;
}

const struct gvm_det_event *gvm__det_events(size_t *nr)
{
	*nr = det.nr_ev;
	return det.ev;
}

const struct gvm_det_decision *gvm__det_decisions(size_t *nr)
{
	*nr = det.nr_dec;
	return det.dec;
}

void gvm__det_dump(FILE *f, size_t from, size_t to)
{
	if (to > det.nr_ev)
		to = det.nr_ev;
	for (size_t i = from; i < to; i++) {
		const struct gvm_det_event *e = &det.ev[i];

		fprintf(f, "  #%zu t=%" PRIu64 " thread %u %s", i + 1,
			e->vtime_ns, e->tid, kind_names[e->kind]);
		if (e->name)
			fprintf(f, " %s", e->name);
		else if (e->kind == GVM_DET_SPAWN || e->kind == GVM_DET_JOIN)
			fprintf(f, " thread %u", e->obj);
		if (e->nr_cand > 1)
			fprintf(f, " -> thread %u (of %u)", e->next,
				e->nr_cand);
		else if (e->next != e->tid)
			fprintf(f, " -> thread %u", e->next);
		fputc('\n', f);
	}
}
