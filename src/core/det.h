/* SPDX-License-Identifier: MIT */
/*
 * Deterministic execution (issue 15): a mode in which every gvm thread runs
 * only while it holds the single "run token" that one seeded scheduler hands
 * out, on a virtual clock, so that a run is a function of its seed (or of a
 * script of decisions) and its inputs.  See det.c for the model, and
 * docs/verification.md for how to use it.
 *
 * The mode is off by default.  sync.h tests gvm__det_on() (one relaxed load
 * and a predictable branch) at each primitive and calls the gvm__det_*
 * variants below only when it is on.
 *
 * Locking: the scheduler's state is under its own leaf mutex (det.c); the
 * hooks take it and nothing else.
 */
#ifndef GVM_CORE_DET_H
#define GVM_CORE_DET_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/atomic.h"

struct gvm_mutex;

/* Non-zero while a deterministic run is in progress (relaxed). */
extern uint32_t gvm__det_enabled;

static inline bool gvm__det_on(void)
{
	return __builtin_expect(gvm_load_relaxed(&gvm__det_enabled) != 0, 0);
}

/* ---- the primitives, in deterministic mode (called by sync.h) -------- */

/*
 * Each falls back to the OS primitive when the caller is not a thread of
 * the run (a "foreign" thread: the mm_self event thread, a test's own
 * pthread); a wake from a foreign thread still reaches the run's waiters.
 */
void gvm__det_mutex_lock(struct gvm_mutex *m);
void gvm__det_mutex_unlock(struct gvm_mutex *m);
int gvm__det_cond_wait(pthread_cond_t *c, struct gvm_mutex *m,
		       int64_t deadline_ns);
void gvm__det_cond_wake(pthread_cond_t *c, bool all);
int gvm__det_futex_wait(uint32_t *word, uint32_t val, int64_t deadline_ns);
void gvm__det_futex_wake(uint32_t *word, int nr);
bool gvm__det_spin(const uint32_t *word, uint32_t old);
void gvm__det_yield(void);
void gvm__det_sleep(int64_t ns);
int64_t gvm__det_now(void);
int gvm__det_thread_create(pthread_t *t, void *(*fn)(void *), void *arg);
int gvm__det_thread_join(pthread_t t);
void gvm__det_thread_detach(pthread_t t);

/* ---- running ------------------------------------------------------------ */

/* Every scheduling point is one event of the log. */
enum gvm_det_kind {
	GVM_DET_LOCK,		/* about to take a mutex */
	GVM_DET_LOCK_WAIT,	/* the mutex was held: sleeps until unlocked */
	GVM_DET_COND_WAIT,	/* sleeps on a condition variable */
	GVM_DET_FUTEX_WAIT,	/* sleeps on a futex word */
	GVM_DET_SPIN,		/* a spin-then-block poll */
	GVM_DET_YIELD,		/* sched_yield */
	GVM_DET_SLEEP,		/* a timed sleep */
	GVM_DET_SPAWN,		/* created a thread */
	GVM_DET_JOIN,		/* waits for a thread to exit */
	GVM_DET_EXIT,		/* the thread ends */
	GVM_DET_MARK,		/* gvm__det_mark(): a point the program names */
	GVM_DET_NR_KINDS
};

/* One event: who reached the point, what it was, who runs next. */
struct gvm_det_event {
	uint64_t vtime_ns;	/* the virtual clock at the event */
	const char *name;	/* the mutex's or mark's name, or NULL */
	uint32_t obj;		/* hash of the name, a thread id, or 0 */
	uint8_t tid;		/* thread that reached the point */
	uint8_t kind;		/* enum gvm_det_kind */
	uint8_t next;		/* thread the scheduler picked */
	uint8_t nr_cand;	/* runnable threads it picked from */
};

/*
 * One decision: a point where more than one thread could run.  A script is
 * the list of chosen thread ids; cand is the set it was chosen from.
 */
struct gvm_det_decision {
	uint64_t cand;		/* bit i: thread i was runnable */
	uint8_t chosen;
	uint8_t cur;		/* the thread that reached the point */
	bool cur_runnable;	/* it could have gone on (else it blocked) */
	bool window;		/* inside gvm__det_window() */
};

#define GVM_DET_MAX_THREADS 64

struct gvm_det_config {
	uint64_t seed;		/* picks among runnable threads (random) */
	bool fifo;		/* default choice: the current thread goes on
				   until it blocks, then the lowest id */
	const uint8_t *script;	/* forced choices for the first decisions */
	size_t script_len;
	uint64_t stop_at;	/* call on_stop once event #stop_at is logged
				   (1-based); 0 = never */
	void (*on_stop)(void *arg, uint64_t event);
	void *stop_arg;
	uint64_t max_events;	/* 0 = 50 million; more aborts (livelock) */
};

/*
 * Begin a run on the calling thread, which becomes thread 0.  No other
 * thread of the run may exist yet: create the objects under test after it.
 * gvm__det_end() ends it once every other thread of the run has exited
 * (joined; a detached one, gvm__thread_detach, it waits for), returns the
 * log's hash and leaves the log and decisions readable until the next
 * gvm__det_begin().
 */
void gvm__det_begin(const struct gvm_det_config *cfg);
uint64_t gvm__det_end(void);

/* The log of the last (or current) run. */
const struct gvm_det_event *gvm__det_events(size_t *nr);
const struct gvm_det_decision *gvm__det_decisions(size_t *nr);
void gvm__det_dump(FILE *f, size_t from, size_t to);
/* Every thread's state (runnable, blocked in what, exited). */
void gvm__det_dump_threads(FILE *f);

/*
 * Exploration: decisions taken while the window is open are the ones an
 * explorer varies (the actors' phase, not setup and teardown).
 */
void gvm__det_window(bool open);

/* A named point of the program under test (logged, schedulable). */
void gvm__det_mark(const char *name);

#endif
