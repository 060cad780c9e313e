/* SPDX-License-Identifier: MIT */
/*
 * The library's threads, on stacks the library owns (core/thread.c says
 * why).  Every thread gvm starts comes from gvm__os_thread_create(): the
 * deterministic-mode wrappers of sync.h (gvm__thread_create) and the
 * scheduler's own actors (core/det.c) included.
 *
 * Locking: internal (a leaf mutex, never held when these return).
 */
#ifndef GVM_CORE_THREAD_H
#define GVM_CORE_THREAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Bytes of stack each thread gets (its descriptor and TLS included). */
#define GVM_THREAD_STACK_SIZE (8ull << 20)
/* Threads that can exist at once. */
#define GVM_THREAD_MAX 512

/*
 * Starts @fn(@arg) on a stack of the library.  It must be joined
 * (gvm__os_thread_join) or detached (gvm__os_thread_detach).  0, or
 * -EAGAIN (GVM_THREAD_MAX threads exist, or no memory for the stacks), or
 * pthread_create()'s negative errno.  Context: no lock the CPU fault-back
 * may need (checked, gvm__might_fault()): pthread_create() allocates the
 * thread's TLS vector from glibc's heap, the application's memory.  @t is
 * stored by pthread_create(): the library's callers pass their own
 * memory (an object's field, a local).
 */
int gvm__os_thread_create(pthread_t *t, void *(*fn)(void *), void *arg);

/* pthread_join() of such a thread (also a detached one, known to end),
   the result discarded; then its stack is free.  0 or a negative errno. */
int gvm__os_thread_join(pthread_t t);

/*
 * Such a thread ends on its own and is never joined by the caller: its
 * stack is free once it has ended (a later gvm__os_thread_create(), or
 * the process's exit, joins it then).  0, or -ESRCH if @t is not a running thread of the library.
 */
int gvm__os_thread_detach(pthread_t t);

/* True if [start, start + len) overlaps the stacks' reservation. */
bool gvm__thread_stacks_own(uint64_t start, uint64_t len);

#endif
