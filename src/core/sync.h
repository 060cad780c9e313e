/* SPDX-License-Identifier: MIT */
/*
 * Thin wrappers over the OS primitives gvm builds on: ranked mutexes (with
 * the debug lock-order checker), condition variables on CLOCK_MONOTONIC,
 * futexes, the monotonic clock, threads, and reference counts.
 *
 * Every primitive that can block, wake or read the clock is also a
 * scheduling point of the deterministic mode (core/det.h): when that mode
 * is on (gvm__det_on(), one relaxed load, false in every normal run) it
 * goes to the gvm__det_* variant.  gvm code therefore creates its threads
 * with gvm__thread_create() and uses no OS primitive directly.
 *
 * Locking: these are the locks; see lockrank.h for the order.  Each lock
 * first registers the caller's stack (core/stack.h).
 */
#ifndef GVM_CORE_SYNC_H
#define GVM_CORE_SYNC_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <gvm/types.h>

#include "core/atomic.h"
#include "core/debug.h"
#include "core/det.h"
#include "core/lockrank.h"
#include "core/stack.h"

/* ---- time ----------------------------------------------------------- */

static inline int64_t gvm__now_ns(void)
{
	struct timespec ts;

	if (gvm__det_on())
		return gvm__det_now();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Absolute CLOCK_MONOTONIC deadline for @timeout_ns; -1 when infinite. */
static inline int64_t gvm__deadline(int64_t timeout_ns)
{
	if (timeout_ns < 0)
		return -1;
	int64_t now = gvm__now_ns();
	return timeout_ns > INT64_MAX - now ? -1 : now + timeout_ns;
}

static inline struct timespec gvm__ns_to_timespec(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000,
			       .tv_nsec = ns % 1000000000 };
	return ts;
}

/* ---- ranked mutexes ----------------------------------------------------- */

void gvm__mutex_init(struct gvm_mutex *m, const char *name, unsigned int rank);
void gvm__mutex_fini(struct gvm_mutex *m);

static inline void gvm__mutex_lock(struct gvm_mutex *m)
{
	gvm__stack_check();	/* core/stack.c */
	gvm__lockrank_acquire(m, m->rank, m->name, false);
	if (gvm__det_on())
		gvm__det_mutex_lock(m);
	else
		pthread_mutex_lock(&m->m);
}

/*
 * Takes @m if it is free: true if taken.  Recorded by the lock-rank checker
 * but never checked against the order (a trylock cannot deadlock).
 */
static inline bool gvm__mutex_trylock(struct gvm_mutex *m)
{
	gvm__stack_check();
	if (pthread_mutex_trylock(&m->m))
		return false;
	gvm__lockrank_acquire(m, m->rank, m->name, true);
	return true;
}

static inline void gvm__mutex_unlock(struct gvm_mutex *m)
{
	gvm__lockrank_release(m);
	if (gvm__det_on())
		gvm__det_mutex_unlock(m);
	else
		pthread_mutex_unlock(&m->m);
}

/* ---- condition variables (CLOCK_MONOTONIC) --------------------------- */

void gvm__cond_init(pthread_cond_t *c);

static inline void gvm__cond_wait(pthread_cond_t *c, struct gvm_mutex *m)
{
	if (gvm__det_on())
		gvm__det_cond_wait(c, m, -1);
	else
		pthread_cond_wait(c, &m->m);
}

static inline void gvm__cond_signal(pthread_cond_t *c)
{
	if (gvm__det_on())
		gvm__det_cond_wake(c, false);
	else
		pthread_cond_signal(c);
}

static inline void gvm__cond_broadcast(pthread_cond_t *c)
{
	if (gvm__det_on())
		gvm__det_cond_wake(c, true);
	else
		pthread_cond_broadcast(c);
}

/* Returns 0, or -ETIME once @deadline_ns (absolute, gvm__now_ns) passed. */
int gvm__cond_wait_until(pthread_cond_t *c, struct gvm_mutex *m,
			 int64_t deadline_ns);

/* ---- futexes -------------------------------------------------------------- */

/*
 * Sleeps while *@word == @val.  Returns 0 on wake-up (possibly spurious),
 * -EAGAIN if *@word != @val on entry, -ETIME after @deadline_ns (absolute,
 * gvm__now_ns; -1 = none), -EINTR if a signal handler ran.
 */
int gvm__futex_wait(uint32_t *word, uint32_t val, int64_t deadline_ns);
void gvm__futex_wake(uint32_t *word, int nr);

/*
 * Spin-then-block hand-offs.  A thread about to sleep until somebody gives
 * it work first polls *@word for up to @ns: on this kind of machine (a
 * 2-vCPU VM) a cross-CPU wake-up costs tens of microseconds, a spin
 * hand-off well under one.  Returns true as soon as *@word != @old (read
 * with acquire), false after @ns.  Bounded, and it gives the CPU away
 * (sched_yield) about every microsecond so that a thread waiting to run on
 * the same CPU is not kept out.  Callers spin only right after doing work
 * (a burst of requests is likely to go on), never when they were idle, so
 * an idle thread burns nothing.
 */
bool gvm__spin_while_eq(const uint32_t *word, uint32_t old, int64_t ns);

/*
 * How long the engine, scheduler and fence waiters spin before sleeping.
 * Longer than a wake-up of an idle vCPU on the project's VM (~27 µs,
 * `perf sched timehist` of exec_latency): with a shorter spin, a caller
 * and an engine handing work back and forth settle into waking each other
 * from sleep, two wake-ups per exec.  exec_latency p50/p99: 56/89 µs at
 * 5 µs, 3.0/77 µs at 10 µs, 2.7-3.0/6-72 µs at 30 µs (docs/performance.md).
 * The price: a thread that finds no more work burns up to this long
 * (yielding every microsecond) before it sleeps, once per burst.
 */
#define GVM_HANDOFF_SPIN_NS 30000
/*
 * True if the 4-byte aligned word at @addr can be written by this process
 * now: the kernel adds 0 to it atomically (FUTEX_WAKE_OP), which needs a
 * writable mapping and fails with EFAULT, never a signal, without one.
 * The word's value is unchanged, even under concurrent stores.
 */
bool gvm__user_writable(void *addr);

/* ---- threads, yielding, sleeping ----------------------------------------- */

/* A thread on a stack of the library (core/thread.h); 0 or a negative
   errno. */
int gvm__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);
/* Joins such a thread, the result discarded; 0 or a negative errno. */
int gvm__thread_join(pthread_t t);
/*
 * @t ends on its own and is never joined (its stack is reclaimed after
 * it ended: core/thread.h).  In
 * deterministic mode it is still a thread of the run, and the run's end
 * (gvm__det_end) waits for it to exit.  0 or a negative errno.
 */
int gvm__thread_detach(pthread_t t);
/* sched_yield(): let another thread that waits for a CPU run. */
void gvm__yield(void);
/* Sleeps @ns nanoseconds (not interrupted by signals). */
void gvm__sleep_ns(int64_t ns);

/* ---- reference counts ---------------------------------------------------- */

static inline void gvm__ref_init(uint32_t *ref)
{
	gvm_store_relaxed(ref, 1u);
}

static inline void gvm__ref_get(uint32_t *ref)
{
	uint32_t old = gvm_fetch_add_relaxed(ref, 1u);

	GVM_BUG_ON(old == 0 || old == UINT32_MAX);
}

/* Returns true when the last reference was dropped. */
static inline bool gvm__ref_put(uint32_t *ref)
{
	uint32_t old = gvm_fetch_sub_acq_rel(ref, 1u);

	GVM_BUG_ON(old == 0);
	return old == 1;
}

static inline uint32_t gvm__ref_read(uint32_t *ref)
{
	return gvm_load_relaxed(ref);
}

/*
 * Reads *@addr (8 bytes, with acquire semantics) without faulting on an
 * address the process cannot read (unmapped, PROT_NONE): 0, or -EFAULT.
 * Checked with process_vm_readv on itself first; only a change of the
 * mapping racing with the call itself can still fault.
 */
int gvm__user_read64(const uint64_t *addr, uint64_t *out);

/*
 * Copies @n bytes between the application's memory at @user and @ours
 * (to the application if @to_user) without faulting on an address it
 * cannot read or write: 0, or -EFAULT (part may have been copied).  With
 * process_vm_readv/writev on itself; where those are not allowed, with
 * memcpy.
 */
int gvm__user_copy(void *user, void *ours, size_t n, bool to_user);

#endif
