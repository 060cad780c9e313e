/* SPDX-License-Identifier: MIT */
/*
 * The stacks and TLS of the application's threads that run library code
 * (core/stack.c says why they must never move to device memory).
 *
 * gvm__stack_check() is called before every library lock is taken: by
 * the mutex wrappers of sync.h and by the few places that take a plain
 * pthread mutex (the heap, the mm's object lock, the thread table, the
 * trace control).  On a thread's first lock, or when it runs on a stack
 * it has not run library code on before, it registers that stack and the
 * thread's TLS; from then on SVM never takes their pages from the CPU.
 *
 * Locking: internal (a leaf pthread mutex, never held when these return).
 */
#ifndef GVM_CORE_STACK_H
#define GVM_CORE_STACK_H

#include <stdbool.h>
#include <stdint.h>

/* The stack the calling thread is known to run on: [lo, hi). */
extern _Thread_local uintptr_t gvm__stack_lo, gvm__stack_hi;

/* Slow path of gvm__stack_check(): registers the stack holding @sp. */
void gvm__stack_note(uintptr_t sp);

/*
 * Makes sure the stack the caller runs on is registered (or is one of the
 * library's own).  Call it holding no library lock: the first time, it
 * brings that stack's device-resident pages back to system memory.
 */
static inline void gvm__stack_check(void)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);

	if (__builtin_expect(sp - gvm__stack_lo >=
			     gvm__stack_hi - gvm__stack_lo, 0))
		gvm__stack_note(sp);
}

/*
 * For the library's own threads (core/thread.c): the calling thread runs
 * on [lo, hi), a stack the library owns; nothing to register.
 */
void gvm__stack_set_own(uintptr_t lo, uintptr_t hi);

/*
 * The mm that can move process memory to device memory (mm/self.c) sets
 * this: called by a thread registering its stack, holding no library
 * lock, to bring [lo, lo + len) back to system memory.
 */
void gvm__stack_set_bring_back(void (*fn)(uint64_t lo, uint64_t len));

/* True if [start, start + len) overlaps a registered application stack. */
bool gvm__stacks_own(uint64_t start, uint64_t len);

/* Application stacks registered now (tests). */
unsigned int gvm__stacks_registered(void);

#endif
