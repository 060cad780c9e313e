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
 * left to end on its own, by the next gvm__os_thread_create() that finds
 * it ended (pthread_tryjoin_np: the thread is never detached for pthread,
 * or nobody could tell when its stack is free).  Slots are never
 * unmapped or discarded, like the heap's blocks: the library raises no
 * userfaultfd event on its own memory, and a reused slot's pages are
 * already there.
 *
 * Locking: `slot_lock` (a leaf pthread mutex, not in the rank table:
 * nothing is taken under it, and it is not held across pthread_create()
 * or pthread_join()) over the slot table; held across fork(), after
 * which the child frees every slot but the forking thread's.  `stacks_base` is written once,
 * under pthread_once, before any slot is handed out, and read with
 * acquire by gvm__thread_stacks_own().
 */
#include "core/thread.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/atomic.h"

#define RESERVATION (GVM_THREAD_MAX * GVM_THREAD_STACK_SIZE)

enum slot_state {
	SLOT_FREE,
	SLOT_STARTING,		/* being handed to pthread_create() */
	SLOT_RUNNING,		/* to be joined by gvm__os_thread_join() */
	SLOT_DETACHED,		/* joined when it ended, by a later create */
};

static struct slot {
	pthread_t thread;	/* valid while RUNNING or DETACHED */
	uint8_t state;		/* enum slot_state */
	bool ready;		/* its pages are read-write */
} slots[GVM_THREAD_MAX];	/* slot_lock */

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
		if (sp < slot_addr(i) || sp >= slot_addr(i) + GVM_THREAD_STACK_SIZE)
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
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/*
 * A free slot, made ready and marked SLOT_STARTING; -1 if none.  Detached
 * threads that have ended are joined on the way (pthread_tryjoin_np does
 * not block), and their slots taken.
 */
static int slot_take(void)
{
	int found = -1;

	pthread_mutex_lock(&slot_lock);
	for (unsigned int i = 0; i < GVM_THREAD_MAX; i++) {
		struct slot *s = &slots[i];

		if (s->state == SLOT_DETACHED &&
		    !pthread_tryjoin_np(s->thread, NULL))
			s->state = SLOT_FREE;
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

int gvm__os_thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	int i, err;

	pthread_once(&stacks_once, stacks_init);
	if (!stacks_base)
		return -EAGAIN;
	i = slot_take();
	if (i < 0)
		return -EAGAIN;
	err = pthread_attr_init(&attr);
	if (!err)
		err = pthread_attr_setstack(&attr, slot_addr((unsigned int)i) +
					    guard_size,
					    GVM_THREAD_STACK_SIZE - guard_size);
	if (!err)
		err = pthread_create(t, &attr, fn, arg);
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

int gvm__os_thread_detach(pthread_t t)
{
	int i;

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

	pthread_mutex_lock(&slot_lock);
	i = slot_find(t, SLOT_RUNNING);
	pthread_mutex_unlock(&slot_lock);
	err = pthread_join(t, NULL);
	/* Its thread has exited: nothing runs on the stack any more. */
	if (!err && i >= 0)
		slot_set(i, SLOT_FREE, (pthread_t)0);
	return -err;
}

bool gvm__thread_stacks_own(uint64_t start, uint64_t len)
{
	uint64_t base = gvm_load_acquire(&stacks_base);

	return base && start < base + RESERVATION && start + len > base;
}
