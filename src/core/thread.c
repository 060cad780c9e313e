// SPDX-License-Identifier: MIT
/*
 * Threads on stacks the library owns.
 *
 * SVM moves private anonymous memory of the process to device memory and
 * takes it away from the CPU until something touches it (mm/devmem.c).
 * The stack pthread_create() gives a thread is such memory: glibc maps it
 * like any other.  A fault or prefetch whose range covered the stack of
 * one of gvm's threads would move it; that thread would then fault on its
 * next push and wait for the CPU-fault handler, which may be itself (the
 * mm's event thread) or blocked the same way: a deadlock.  So every thread
 * of the library runs on a stack carved from one reservation the library
 * owns; gvm__alloc_owns() covers it and SVM never migrates it, the rule
 * the heap follows (core/alloc.c).  glibc puts a thread's descriptor and
 * static TLS at the top of a stack it is given, so they are covered too.
 *
 * The reservation: GVM_THREAD_MAX slots of GVM_THREAD_STACK_SIZE, mapped
 * PROT_NONE (no memory, no commit charge) when the first thread is
 * created.  A slot becomes readable and writable the first time it is
 * used, all but its lowest page, the guard an overflow hits.  It is free
 * again once its thread has been joined (and has then exited for good):
 * by gvm__os_thread_join(), or, for a thread gvm__os_thread_detach()
 * left to end on its own, by the next gvm__os_thread_create() once its
 * function has returned (`ended`, set by the trampoline; the join then
 * waits only for the exit itself), and at the process's exit, so that no
 * ended thread is left unjoined (ThreadSanitizer reports those).  Such a
 * thread is never detached for pthread while the process runs: nobody
 * could tell when its stack is free; at exit, one still running is (its
 * slot is then never reused).  Slots are never
 * unmapped or discarded, like the heap's blocks: the library raises no
 * userfaultfd event on its own memory, and a reused slot's pages are
 * already there.
 *
 * Locking: `slot_lock` (a leaf pthread mutex, not in the rank table:
 * no lock is taken under it) over the slot table.  It is not held across
 * pthread_create() or the join of a running thread, only across the join
 * of a detached thread whose function returned, which waits for nothing
 * but that thread's exit (its TLS destructors take the heap's locks,
 * never this one).  It is held across fork(), after which the child
 * frees every slot but the forking thread's.  `stacks_base` is written
 * once, under pthread_once, before any slot is handed out, and read with
 * acquire by gvm__thread_stacks_own().  A slot's `ended` is written
 * (release) by its thread's trampoline, read (acquire) under slot_lock.
 */
#include "core/thread.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/stack.h"

#define RESERVATION (GVM_THREAD_MAX * GVM_THREAD_STACK_SIZE)

enum slot_state {
	SLOT_FREE,
	SLOT_STARTING,		/* being handed to pthread_create() */
	SLOT_RUNNING,		/* to be joined by gvm__os_thread_join() */
	SLOT_DETACHED,		/* joined when it ended, by a later create */
	SLOT_LEFT,		/* still running at exit: detached for
				   pthread, never joined nor reused */
};

static struct slot {
	pthread_t thread;	/* valid while RUNNING or DETACHED */
	void *(*fn)(void *);	/* what it runs: written by its creator
				   while SLOT_STARTING, read by it */
	void *arg;
	uint8_t state;		/* enum slot_state */
	bool ready;		/* its pages are read-write */
	bool ended;		/* fn returned (the trampoline, release) */
} slots[GVM_THREAD_MAX];	/* slot_lock, but `ended` */

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t stacks_once = PTHREAD_ONCE_INIT;
static uintptr_t stacks_base;	/* set once; 0: no reservation */
static uint64_t guard_size;	/* one page; set with stacks_base */

static uint8_t *slot_addr(unsigned int i)
{
	return (uint8_t *)stacks_base + (uint64_t)i * GVM_THREAD_STACK_SIZE;
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&slot_lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&slot_lock);
}

/*
 * In the child only the forking thread runs: every other slot is free
 * (never joined there; their pages are copies nobody uses).
 */
static void fork_child(void)
{
	uint8_t *sp = (uint8_t *)__builtin_frame_address(0);

	for (unsigned int i = 0; i < GVM_THREAD_MAX; i++)
		if (sp < slot_addr(i) ||
		    sp >= slot_addr(i) + GVM_THREAD_STACK_SIZE)
			slots[i].state = SLOT_FREE;
	pthread_mutex_unlock(&slot_lock);
}

static void stacks_init(void)
{
	void *p = mmap(NULL, RESERVATION, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return;
	guard_size = (uint64_t)sysconf(_SC_PAGESIZE);
	gvm_store_release(&stacks_base, (uintptr_t)p);
}

/*
 * Registered before main(), before any other fork handler of the library,
 * so that slot_lock is taken last in the prepare phase (handlers run in
 * the reverse order): the library takes it under its other locks (the mm's
 * creation starts its event thread under the mm's lock), never the reverse.
 */
__attribute__((constructor)) static void thread_atfork_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/*
 * A free slot, made ready and marked SLOT_STARTING; -1 if none.  Detached
 * threads whose function returned are joined on the way (they are only
 * exiting: the join does not wait for anything else), and their slots
 * taken.
 */
static int slot_take(void)
{
	int found = -1;

	pthread_mutex_lock(&slot_lock);
	for (unsigned int i = 0; i < GVM_THREAD_MAX; i++) {
		struct slot *s = &slots[i];

		if (s->state == SLOT_DETACHED &&
		    gvm_load_acquire(&s->ended)) {
			pthread_join(s->thread, NULL);	/* exiting */
			s->state = SLOT_FREE;
		}
		if (s->state != SLOT_FREE)
			continue;
		if (!s->ready) {
			if (mprotect(slot_addr(i) + guard_size,
				     GVM_THREAD_STACK_SIZE - guard_size,
				     PROT_READ | PROT_WRITE))
				break;
			s->ready = true;
		}
		s->state = SLOT_STARTING;
		s->ended = false;
		found = (int)i;
		break;
	}
	pthread_mutex_unlock(&slot_lock);
	return found;
}

static void slot_set(int i, enum slot_state state, pthread_t t)
{
	pthread_mutex_lock(&slot_lock);
	slots[i].state = (uint8_t)state;
	slots[i].thread = t;
	pthread_mutex_unlock(&slot_lock);
}

static void *trampoline(void *arg)
{
	struct slot *s = arg;
	uint8_t *base = slot_addr((unsigned int)(s - slots));
	void *ret;

	gvm__stack_set_own((uintptr_t)base,
			   (uintptr_t)base + GVM_THREAD_STACK_SIZE);
	ret = s->fn(s->arg);

	gvm_store_release(&s->ended, true);
	return ret;
}

int gvm__os_thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	int i, err;

	gvm__stack_check();	/* before slot_lock (stack.h) */
	pthread_once(&stacks_once, stacks_init);
	if (!stacks_base)
		return -EAGAIN;
	i = slot_take();
	if (i < 0)
		return -EAGAIN;
	slots[i].fn = fn;	/* the slot is ours while SLOT_STARTING */
	slots[i].arg = arg;
	err = pthread_attr_init(&attr);
	if (!err)
		err = pthread_attr_setstack(&attr, slot_addr((unsigned int)i) +
					    guard_size,
					    GVM_THREAD_STACK_SIZE - guard_size);
	/* glibc allocates the thread's TLS vector from its malloc heap,
	   the application's memory (thread.h) */
	gvm__might_fault();
	if (!err)
		err = pthread_create(t, &attr, trampoline, &slots[i]);
	pthread_attr_destroy(&attr);
	if (err) {
		slot_set(i, SLOT_FREE, (pthread_t)0);
		return -err;
	}
	slot_set(i, SLOT_RUNNING, *t);
	return 0;
}

/* The slot of thread @t in @state, or -1.  slot_lock held. */
static int slot_find(pthread_t t, enum slot_state state)
{
	for (unsigned int i = 0; i < GVM_THREAD_MAX; i++)
		if (slots[i].state == state && pthread_equal(slots[i].thread, t))
			return (int)i;
	return -1;
}

/*
 * At exit: joins the detached threads that ended (see the top), and
 * detaches for pthread those still running, which may end before the
 * process does (a thread whose last user went just before exit()):
 * unjoined, that end is what ThreadSanitizer reports as a leak.  Their
 * slots are never reused (nobody can tell when the stack is free); the
 * process is going.  Test: test_thread.a_detached_thread_ending_during_exit_is_no_leak.
 */
static void reap_at_exit(void)
{
	pthread_mutex_lock(&slot_lock);
	for (unsigned int i = 0; i < GVM_THREAD_MAX; i++) {
		if (slots[i].state != SLOT_DETACHED)
			continue;
		if (gvm_load_acquire(&slots[i].ended)) {
			pthread_join(slots[i].thread, NULL);
			slots[i].state = SLOT_FREE;
		} else {
			pthread_detach(slots[i].thread);
			slots[i].state = SLOT_LEFT;
		}
	}
	pthread_mutex_unlock(&slot_lock);
}

static void reap_init(void)
{
	atexit(reap_at_exit);
}

int gvm__os_thread_detach(pthread_t t)
{
	static pthread_once_t reap_once = PTHREAD_ONCE_INIT;
	int i;

	/* Registered now, long after a sanitizer's own exit handler: it
	   runs first. */
	gvm__stack_check();
	pthread_once(&reap_once, reap_init);
	pthread_mutex_lock(&slot_lock);
	i = slot_find(t, SLOT_RUNNING);
	if (i >= 0)
		slots[i].state = SLOT_DETACHED;
	pthread_mutex_unlock(&slot_lock);
	return i >= 0 ? 0 : -ESRCH;
}

int gvm__os_thread_join(pthread_t t)
{
	int i, err;

	gvm__stack_check();
	pthread_mutex_lock(&slot_lock);
	i = slot_find(t, SLOT_RUNNING);
	if (i < 0)
		i = slot_find(t, SLOT_DETACHED);
	if (i >= 0)
		slots[i].state = SLOT_STARTING;	/* ours: no reaping */
	pthread_mutex_unlock(&slot_lock);
	err = pthread_join(t, NULL);
	/* Its thread has exited: nothing runs on the stack any more. */
	if (i >= 0)
		slot_set(i, err ? SLOT_RUNNING : SLOT_FREE, err ? t : (pthread_t)0);
	return -err;
}

bool gvm__thread_stacks_own(uint64_t start, uint64_t len)
{
	uint64_t base = gvm_load_acquire(&stacks_base);

	return base && start < base + RESERVATION && start + len > base;
}
