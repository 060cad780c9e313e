// SPDX-License-Identifier: MIT
/*
 * OS primitives behind sync.h: mutex and condvar setup, timed condvar waits,
 * futex system calls (including the write probe of gvm__user_writable), the
 * bounded spin of spin-then-block hand-offs, threads, yield and sleep.  Each
 * blocking one goes to the deterministic scheduler (core/det.c) while that
 * mode is on.
 * Stateless; no locking of its own.
 */
#include "core/sync.h"
#include "core/thread.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * Adaptive: a thread that finds the mutex held spins briefly before it
 * sleeps.  gvm's critical sections are short, and a sleep on one costs
 * the holder a futex wake and the sleeper a wake-up (tens of µs on an
 * idle vCPU): a fence waiter blocked on the fence's lock behind the
 * signaller made tlb_inval_range's p99 10 µs, 2.4 µs adaptive.
 */
void gvm__mutex_init(struct gvm_mutex *m, const char *name, unsigned int rank)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&m->m, &a);
	pthread_mutexattr_destroy(&a);
	m->name = name;
	m->rank = rank;
}

void gvm__mutex_fini(struct gvm_mutex *m)
{
	pthread_mutex_destroy(&m->m);
}

void gvm__cond_init(pthread_cond_t *c)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(c, &attr);
	pthread_condattr_destroy(&attr);
}

int gvm__cond_wait_until(pthread_cond_t *c, struct gvm_mutex *m,
			 int64_t deadline_ns)
{
	struct timespec ts;

	if (gvm__det_on())
		return gvm__det_cond_wait(c, m, deadline_ns);
	if (deadline_ns < 0) {
		pthread_cond_wait(c, &m->m);
		return 0;
	}
	ts = gvm__ns_to_timespec(deadline_ns);
	return pthread_cond_timedwait(c, &m->m, &ts) == ETIMEDOUT ? -ETIME : 0;
}

int gvm__futex_wait(uint32_t *word, uint32_t val, int64_t deadline_ns)
{
	struct timespec ts, *tsp = NULL;
	long ret;

	if (gvm__det_on()) {
		int err = gvm__det_futex_wait(word, val, deadline_ns);

		if (err != -ENOSYS)	/* else: not a thread of the run */
			return err;
	}
	if (deadline_ns >= 0) {
		ts = gvm__ns_to_timespec(deadline_ns);
		tsp = &ts;
	}
	/* WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. */
	ret = syscall(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, val, tsp,
		      NULL, FUTEX_BITSET_MATCH_ANY);
	if (ret == 0)
		return 0;
	switch (errno) {
	case EAGAIN:
		return -EAGAIN;
	case ETIMEDOUT:
		return -ETIME;
	case EINTR:
		return -EINTR;
	default:
		return 0; /* treat anything else as a spurious wake-up */
	}
}

void gvm__futex_wake(uint32_t *word, int nr)
{
	if (gvm__det_on())
		gvm__det_futex_wake(word, nr);
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, nr, NULL, NULL, 0);
}

bool gvm__user_writable(void *addr)
{
	static uint32_t nobody;		/* uaddr1: nothing waits on it */

	/*
	 * *addr += 0 in the kernel, then wake up to 0 waiters on either word.
	 * The add faults the page in for writing like a store would (copy on
	 * write included); without a writable mapping it returns EFAULT.
	 */
	return syscall(SYS_futex, &nobody, FUTEX_WAKE_OP_PRIVATE, 0, NULL,
		       addr, FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_EQ, 0)) >= 0;
}

int gvm__user_copy(void *user, void *ours, size_t n, bool to_user)
{
	struct iovec local = { ours, n };
	struct iovec remote = { user, n };
	ssize_t got = to_user ?
		process_vm_writev(getpid(), &local, 1, &remote, 1, 0) :
		process_vm_readv(getpid(), &local, 1, &remote, 1, 0);

	if (got == (ssize_t)n)
		return 0;
	if (got < 0 && (errno == ENOSYS || errno == EPERM)) {
		/* the calls are not allowed here: copy ourselves */
		memcpy(to_user ? user : ours, to_user ? ours : user, n);
		return 0;
	}
	return -EFAULT;
}

int gvm__user_read64(const uint64_t *addr, uint64_t *out)
{
	struct iovec local = { out, sizeof(*out) };
	struct iovec remote = { (void *)addr, sizeof(*out) };
	ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);

	if (n == (ssize_t)sizeof(*out)) {
		/*
		 * Readable a moment ago: read it again as an acquire load,
		 * which orders what the writer published before its store
		 * (a fence would do, but TSan does not model fences).  Only
		 * an mprotect/munmap racing with this very call can fault.
		 */
		*out = __atomic_load_n(addr, __ATOMIC_ACQUIRE);
		return 0;
	}
	if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
		/* the call is not allowed here: read it ourselves */
		*out = __atomic_load_n(addr, __ATOMIC_ACQUIRE);
		return 0;
	}
	return -EFAULT;
}

bool gvm__spin_while_eq(const uint32_t *word, uint32_t old, int64_t ns)
{
	int64_t now, until, yield_at;

	if (gvm__det_on())
		return gvm__det_spin(word, old);
	now = gvm__now_ns();
	until = now + ns;
	yield_at = now + 1000;
	for (;;) {
		for (int i = 0; i < 16; i++) {
			if (gvm_load_acquire(word) != old)
				return true;
			gvm_cpu_relax();
		}
		now = gvm__now_ns();
		if (now >= until)
			return gvm_load_acquire(word) != old;
		if (now >= yield_at) {
			sched_yield();
			yield_at = now + 1000;
		}
	}
}

int gvm__thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	if (gvm__det_on())
		return gvm__det_thread_create(t, fn, arg);
	return gvm__os_thread_create(t, fn, arg);
}

int gvm__thread_join(pthread_t t)
{
	if (gvm__det_on())
		return gvm__det_thread_join(t);
	return gvm__os_thread_join(t);
}

int gvm__thread_detach(pthread_t t)
{
	if (gvm__det_on())
		gvm__det_thread_detach(t);
	return gvm__os_thread_detach(t);
}

void gvm__yield(void)
{
	if (gvm__det_on())
		gvm__det_yield();
	else
		sched_yield();
}

void gvm__sleep_ns(int64_t ns)
{
	struct timespec ts = gvm__ns_to_timespec(ns);

	if (gvm__det_on()) {
		gvm__det_sleep(ns);
		return;
	}
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}
