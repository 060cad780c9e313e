// SPDX-License-Identifier: MIT
/*
 * Simulated GPU: the guard that turns a device access to host memory that
 * is no longer mapped into a GPU fault instead of a crash.
 *
 * System memory reaches the device as host virtual addresses of this
 * process (in PTEs and copies), and the host may unmap them behind the
 * device's back (userptr, SVM: the unmap notification arrives after the
 * fact).  So every device access to system memory runs inside a guarded
 * region:
 *
 *   - A process-wide SIGSEGV/SIGBUS handler, installed once (the first
 *     device creation).  It looks at the faulting thread's guard (a
 *     thread-local pointer, set only in engine threads) and at the address
 *     (si_addr).  If the address lies in one of the ranges the thread
 *     registered, the handler records it and siglongjmp()s to the jump
 *     buffer registered for that kind of range.  Anything else (another
 *     thread, another address: a real bug) is passed to the handler that
 *     was installed before ours (sanitizers, the application), or gets the
 *     default action (the process dies as it would have).
 *   - Raw accesses (gvm__sim_raw: lane loads, stores and atomics on system
 *     memory, copy-engine copies) register their exact range and a jump
 *     buffer in their own frame: a fault makes them return -EFAULT.
 *   - Spans into system memory are used by kernel code directly, so a
 *     span's host range stays registered while the kernel runs; a fault
 *     there jumps back to the engine's lane loop (lane.c), abandoning the
 *     kernel's frames.  This is the rule kernels must follow: between lane
 *     calls a kernel may be abandoned at any instruction that touches a
 *     span, so it must not hold locks, own heap memory or be inside
 *     non-reentrant library code (malloc, stdio) while touching a span.
 *     (The built-in kernels only compute.)
 *
 * The handler itself only reads the guard, stores the address and jumps:
 * it is async-signal-safe.  The jump does not restore the signal mask (a
 * syscall per access otherwise), so the code that receives it unblocks
 * SIGSEGV and SIGBUS (gvm__sim_guard_recovered).
 *
 * Sanitizers: AddressSanitizer lets the application install a SIGSEGV
 * handler (allow_user_segv_handler, the default) and is chained to for
 * real crashes; ThreadSanitizer delivers synchronous signals at once and
 * supports siglongjmp out of a handler.  Someone installing another
 * SIGSEGV handler after us without chaining disables the guard.
 *
 * Locking: none; the guard belongs to its thread.  Installation runs once
 * (pthread_once).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "sim/sim_internal.h"

static __thread struct sim_guard *tls_guard
	__attribute__((tls_model("initial-exec")));

static struct sigaction old_segv, old_bus;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_err;

static bool in_range(uintptr_t a, uintptr_t lo, uintptr_t hi)
{
	return a >= lo && a < hi;
}

static void chain(int sig, siginfo_t *si, void *uc)
{
	const struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;

	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, si, uc);
		return;
	}
	if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
		return;
	}
	/* Default action: die of this signal, as without us. */
	{
		struct sigaction dfl;

		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigemptyset(&dfl.sa_mask);
		sigaction(sig, &dfl, NULL);
		raise(sig);	/* pending until we return; a real fault also
				   re-executes and kills */
	}
}

static void handler(int sig, siginfo_t *si, void *uc)
{
	struct sim_guard *g = tls_guard;
	uintptr_t a = (uintptr_t)si->si_addr;
	unsigned int i;

	if (g && si->si_code > 0) {	/* kernel-generated, not kill() */
		for (i = 0; i < 2; i++) {
			if (g->raw_jb && in_range(a, g->raw_lo[i], g->raw_hi[i])) {
				g->fault_addr = a;
				siglongjmp(*g->raw_jb, SIM_JMP_SIGNAL);
			}
		}
		for (i = 0; i < SIM_SPANS; i++) {
			if (g->lane_jb &&
			    in_range(a, g->span_lo[i], g->span_hi[i])) {
				g->fault_addr = a;
				siglongjmp(*g->lane_jb, SIM_JMP_SIGNAL);
			}
		}
	}
	chain(sig, si, uc);
}

static void install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &old_segv) ||
	    sigaction(SIGBUS, &sa, &old_bus))
		install_err = -errno;
}

int gvm__sim_guard_install(void)
{
	pthread_once(&install_once, install);
	return install_err;
}

void gvm__sim_guard_set_thread(struct sim_guard *g)
{
	tls_guard = g;
}

void gvm__sim_guard_recovered(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGSEGV);
	sigaddset(&s, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

int gvm__sim_raw(struct sim_guard *g, enum sim_raw_op op, void *p,
		 const void *src, size_t size, uint64_t v1, uint64_t v2,
		 uint64_t *out, uintptr_t *fault_addr)
{
	sigjmp_buf jb;
	sigjmp_buf *volatile saved = g->raw_jb;
	uint64_t r = 0;

	if (sigsetjmp(jb, 0)) {
		gvm__sim_guard_recovered();
		g->raw_lo[0] = g->raw_hi[0] = 0;
		g->raw_lo[1] = g->raw_hi[1] = 0;
		g->raw_jb = saved;
		*fault_addr = g->fault_addr;
		return -EFAULT;
	}
	g->raw_lo[0] = (uintptr_t)p;
	g->raw_hi[0] = (uintptr_t)p + size;
	if (src) {
		g->raw_lo[1] = (uintptr_t)src;
		g->raw_hi[1] = (uintptr_t)src + size;
	}
	g->raw_jb = &jb;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);

	switch (op) {
	case SIM_RAW_LOAD:
		r = gvm__sim_load(p, size);
		break;
	case SIM_RAW_STORE:
		gvm__sim_store(p, size, v1);
		break;
	case SIM_RAW_ADD:
		r = gvm__sim_add(p, size, v1);
		break;
	case SIM_RAW_CMPXCHG:
		r = gvm__sim_cmpxchg(p, size, v1, v2);
		break;
	case SIM_RAW_COPY:
		memcpy(p, src, size);
		break;
	}

	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	g->raw_jb = saved;
	g->raw_lo[0] = g->raw_hi[0] = 0;
	g->raw_lo[1] = g->raw_hi[1] = 0;
	if (out)
		*out = r;
	return 0;
}
