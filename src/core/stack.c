// SPDX-License-Identifier: MIT
/*
 * The stacks of the application's threads that run library code.
 *
 * SVM can take any private anonymous page of the process away from the CPU
 * (mm/devmem.c): the data moves to device memory and the next CPU access
 * blocks until the mm's event thread brings it back.  That thread, and the
 * engines whose TLB acknowledgements it waits for, take library locks.  An
 * application thread calling into gvm runs library code on its own stack;
 * if a page of that stack were taken while the thread held a library lock,
 * its next push would block in the kernel until the event thread brought
 * the page back, and the event thread could wait for that very lock: a
 * deadlock.  (The kernel has no such problem: its code runs on kernel
 * stacks and touches user memory only through copy_{to,from}_user, with no
 * lock held that the fault path needs.)
 *
 * The same holds for the thread's control block and static TLS (glibc puts
 * them at the top of a thread's stack mapping, or, for the main thread, in
 * an anonymous mapping of their own that a neighbouring mmap() can merge
 * with): library code reads them all the time (the stack protector's
 * canary, errno, its own thread-local variables).
 *
 * So the stack and TLS of every thread that takes a library lock are
 * registered first, and from then on SVM never takes its pages (gvm__alloc_owns()
 * covers it, and the mm refuses to take such pages): a GPU access to it is
 * served in system memory, as for a mapping SVM does not migrate.  The
 * registration happens in gvm__stack_check(), which every lock of the
 * library calls before locking; it is one compare of the stack pointer
 * with the registered stack on the fast path.  On a thread's first lock it
 * registers the thread's stack (pthread_getattr_np(): for the main thread,
 * the whole area the stack may grow into) and then, holding no lock of the
 * library, brings back to system memory whatever of that stack had been
 * moved to device memory before (the mm's bring-back hook).  A take either
 * ran before the registration, and the bring-back (which waits for the
 * mm's devmem_lock) undoes it, or it sees the registration and refuses.
 *
 * A thread that later runs library code on another stack (swapcontext())
 * registers that one in place of the first; the stack is not known
 * exactly then, so 1 MiB below the stack pointer and 64 KiB above are
 * registered.  A thread's registration ends when it exits (a TLS
 * destructor).  At most GVM_APP_STACKS threads are registered at once;
 * beyond that a thread runs unregistered (counted, and warned about once).
 *
 * Locking: `table_lock`, a leaf pthread mutex (nothing is taken under it;
 * not in the rank table), serialises the writers of the table: threads
 * registering, exiting, forking.  A writer may fault on its own stack
 * under it, so nothing the CPU-fault path needs may wait for it: readers
 * (gvm__stacks_own(), called by a take under the mm's devmem_lock) take no
 * lock.  An entry is published by storing `lo`, then `hi` (release), and
 * freed by clearing `hi` first; a reader loads `hi` (acquire), then `lo`.
 * A reader racing with a registration may miss the new entry: the
 * registering thread's bring-back, which takes devmem_lock after the
 * store, then undoes whatever that reader's take did.  table_lock is taken
 * last in fork()'s prepare phase (registered by a constructor, so its
 * handler runs after every other of the library); the child keeps only its
 * own thread's entry.  `bring_back` is written once (release) and read
 * with acquire.  The thread-local bounds are the thread's own.
 */
#include "core/stack.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "core/atomic.h"

#define GVM_APP_STACKS 4096
#define PAGE 4096ul
#define GUESS_BELOW (1ul << 20)		/* a stack of unknown bounds */
#define GUESS_ABOVE (64ul << 10)

_Thread_local uintptr_t gvm__stack_lo, gvm__stack_hi;
static _Thread_local int my_slot = -1;	/* index in table, or -1 */

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uintptr_t lo, hi;		/* the stack; hi == 0: free */
	uintptr_t tls_lo, tls_hi;	/* its thread's TCB and static TLS */
} table[GVM_APP_STACKS];		/* written under table_lock, read
					   without (see the top) */
static unsigned int table_used;		/* likewise: entries [0, used) may
					   be taken */
static unsigned int nr_registered;	/* table_lock */
static uint64_t nr_unregistered;	/* atomic: threads left out */

static void (*bring_back)(uint64_t lo, uint64_t len);

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static bool key_ok;

static void slot_free_locked(int i)
{
	unsigned int used = table_used;

	gvm_store_release(&table[i].hi, 0);
	nr_registered--;
	while (used && !table[used - 1].hi)
		used--;
	gvm_store_release(&table_used, used);
}

/*
 * The thread exits.  Other TLS destructors (the heap's thread cache) may
 * still run library code, in this round of destructors: the entry is
 * dropped in the next round (pthread runs them again while a key has a
 * value, up to PTHREAD_DESTRUCTOR_ITERATIONS times).
 */
static void forget(void *v)
{
	static _Thread_local bool again;
	int i = (int)(uintptr_t)v - 1;

	if (!again) {
		again = true;
		if (!pthread_setspecific(key, v))
			return;
	}
	pthread_mutex_lock(&table_lock);
	if (i >= 0 && table[i].hi)
		slot_free_locked(i);
	pthread_mutex_unlock(&table_lock);
	my_slot = -1;
}

static void key_init(void)
{
	key_ok = !pthread_key_create(&key, forget);
}

static void fork_prepare(void)
{
	/* Other prepare handlers check (and register) after this one. */
	gvm__stack_check();
	pthread_mutex_lock(&table_lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&table_lock);
}

/* Only the forking thread runs in the child: the others' entries go. */
static void fork_child(void)
{
	for (unsigned int i = 0; i < table_used; i++)
		if (table[i].hi && (int)i != my_slot)
			slot_free_locked((int)i);
	pthread_mutex_unlock(&table_lock);
}

/* Before main(), before any other fork handler: see the top. */
__attribute__((constructor)) static void stack_atfork_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* The bounds of the stack holding @sp. */
static void bounds(uintptr_t sp, uintptr_t *lo, uintptr_t *hi)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;

	if (!pthread_getattr_np(pthread_self(), &attr)) {
		bool ok = !pthread_attr_getstack(&attr, &addr, &size);

		pthread_attr_destroy(&attr);
		if (ok && sp >= (uintptr_t)addr &&
		    sp < (uintptr_t)addr + size) {
			*lo = (uintptr_t)addr;
			*hi = (uintptr_t)addr + size;
			return;
		}
	}
	sp &= ~(PAGE - 1);
	*lo = sp > GUESS_BELOW ? sp - GUESS_BELOW : 0;
	*hi = sp + GUESS_ABOVE;
}

/*
 * The calling thread's control block and static TLS, whose stack is
 * [stack_lo, stack_hi): the static TLS area on either side of the thread
 * pointer (below it on x86-64, above it on some other architectures), as
 * glibc sizes it.  A thread pthread made has them at the top of its stack
 * block, which its stack's bounds include: then only what lies inside
 * the stack (the guess on the other side of the thread pointer would
 * reach into the next mapping, and that memory, the application's, would
 * never migrate while the thread is registered).  The main thread's are
 * in a mapping of their own, whose ends we do not know: the guess stands.
 */
static void tls_bounds(uintptr_t stack_lo, uintptr_t stack_hi, uintptr_t *lo,
		       uintptr_t *hi)
{
	void (*info)(size_t *size, size_t *align);
	uintptr_t tp = (uintptr_t)__builtin_thread_pointer();
	size_t size = 64ul << 10, align = 64;

	/* Exported by the dynamic linker for sanitizer runtimes. */
	info = (void (*)(size_t *, size_t *))dlsym(RTLD_DEFAULT,
						   "_dl_get_tls_static_info");
	if (info)
		info(&size, &align);
	size += PAGE;			/* the thread descriptor */
	*lo = (tp > size ? tp - size : 0) & ~(PAGE - 1);
	*hi = (tp + size + PAGE - 1) & ~(PAGE - 1);
	if (tp >= stack_lo && tp < stack_hi) {
		*lo = *lo > stack_lo ? *lo : stack_lo;
		*hi = *hi < stack_hi ? *hi : stack_hi;
	}
}

void gvm__stack_note(uintptr_t sp)
{
	void (*back)(uint64_t lo, uint64_t len);
	uintptr_t lo, hi, tls_lo, tls_hi;
	int slot = my_slot;

	bounds(sp, &lo, &hi);
	tls_bounds(lo, hi, &tls_lo, &tls_hi);
	/* First: the bring-back below takes locks, which check again. */
	gvm__stack_lo = lo;
	gvm__stack_hi = hi;
	pthread_once(&key_once, key_init);

	pthread_mutex_lock(&table_lock);
	if (slot < 0) {
		for (unsigned int i = 0; i < GVM_APP_STACKS; i++)
			if (!table[i].hi) {
				slot = (int)i;
				nr_registered++;
				break;
			}
	}
	if (slot >= 0) {
		gvm_store_release(&table[slot].hi, 0);	/* a new stack */
		gvm_store_relaxed(&table[slot].lo, lo);
		gvm_store_relaxed(&table[slot].tls_lo, tls_lo);
		gvm_store_relaxed(&table[slot].tls_hi, tls_hi);
		gvm_store_release(&table[slot].hi, hi);
		if ((unsigned int)slot >= table_used)
			gvm_store_release(&table_used,
					  (unsigned int)slot + 1);
	}
	pthread_mutex_unlock(&table_lock);

	if (slot < 0) {
		if (!gvm_fetch_add_relaxed(&nr_unregistered, 1))
			fprintf(stderr, "gvm: more than %d threads run "
				"gvm code at once: the stacks of the others "
				"are not kept from SVM migration\n",
				GVM_APP_STACKS);
		return;
	}
	if (my_slot < 0) {
		my_slot = slot;
		if (key_ok)
			pthread_setspecific(key, (void *)(uintptr_t)(slot + 1));
	}
	back = gvm_load_acquire(&bring_back);
	if (back) {
		back(lo, hi - lo);
		back(tls_lo, tls_hi - tls_lo);
	}
}

void gvm__stack_set_own(uintptr_t lo, uintptr_t hi)
{
	gvm__stack_lo = lo;
	gvm__stack_hi = hi;
}

void gvm__stack_set_bring_back(void (*fn)(uint64_t lo, uint64_t len))
{
	gvm_store_release(&bring_back, fn);
}

bool gvm__stacks_own(uint64_t start, uint64_t len)
{
	uint64_t end = start + len;
	unsigned int used = gvm_load_acquire(&table_used);

	for (unsigned int i = 0; i < used; i++) {
		uintptr_t hi = gvm_load_acquire(&table[i].hi);

		if (!hi)
			continue;
		if ((start < hi && end > gvm_load_relaxed(&table[i].lo)) ||
		    (start < gvm_load_relaxed(&table[i].tls_hi) &&
		     end > gvm_load_relaxed(&table[i].tls_lo)))
			return true;
	}
	return false;
}

unsigned int gvm__stacks_registered(void)
{
	unsigned int n;

	pthread_mutex_lock(&table_lock);
	n = nr_registered;
	pthread_mutex_unlock(&table_lock);
	return n;
}
