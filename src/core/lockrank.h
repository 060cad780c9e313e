/* SPDX-License-Identifier: MIT */
/*
 * Lock ranks and the debug-build lock-order checker.
 *
 * Every lock in gvm has a rank; a thread may only acquire locks in strictly
 * increasing rank order.  Two locks of the same rank may be held together
 * only where the rank is marked nestable and something else rules out
 * deadlock: reservations (the ww acquire context orders them) and fences
 * (callbacks run along the fence dependency graph, which is acyclic).
 *
 * The table below is the executable form of docs/locking.md; change both
 * together.  In debug builds (GVM_DEBUG >= 1) each thread keeps the locks it
 * holds; taking a lock against the order aborts and names both locks.  Trylocks
 * are recorded but not checked (they cannot deadlock).  Release builds compile
 * all of it away.
 */
#ifndef GVM_CORE_LOCKRANK_H
#define GVM_CORE_LOCKRANK_H

#include <stdbool.h>

#include "core/debug.h"

enum gvm_lock_rank {
	GVM_RANK_NONE = 0,	/* not checked */
	GVM_RANK_VM = 100,	/* vm->lock */
	GVM_RANK_MM_MAP = 150, /* a model mm's map_lock (mm/model.c) */
	GVM_RANK_MM = 200,	/* the mm's lock (CPU address space) */
	GVM_RANK_RESV = 300,	/* reservation ww mutexes, nestable */
	GVM_RANK_PT = 350,	/* vm->pt_lock: a VM's page tables */
	GVM_RANK_NOTIFIER = 400, /* notifier_lock */
	GVM_RANK_SCHED_QUEUE = 500, /* a scheduler queue's job list */
	GVM_RANK_FENCE = 600,	/* a fence's callback list, nestable */
	GVM_RANK_SCHED = 700,	/* the scheduler's run list */
	GVM_RANK_WW_WAIT = 800,	/* a ww mutex's waiter list (leaf) */
	GVM_RANK_NOTIFIER_TREE = 850, /* an mm's notifier tree (no callback
				 runs under it; only leaves nest inside) */
	GVM_RANK_SIM_REGISTRY = 860, /* the simulated devices' registry
				 (sim/sim.c; gvm's link_lock nests inside) */
	GVM_RANK_SIM_INVAL = 880, /* a simulated VM's TLB invalidation
				 context (sim/engine.c; the timer lock
				 nests inside) */
	GVM_RANK_LEAF = 900,	/* timelines, statistics: nothing nests inside */
};

/* True if two locks of this rank may be held at once. */
static inline bool gvm_lock_rank_nestable(unsigned int rank)
{
	return rank == GVM_RANK_RESV || rank == GVM_RANK_FENCE;
}

/*
 * Fence-signalling critical sections.  Code that a published fence's
 * signalling depends on (a bind job's run: every exec and bind waiting for
 * it depends on it) runs between gvm__signalling_begin() and _end(), as
 * dma_fence_begin_signalling() annotates in Linux.  Inside one it must not
 * take vm->lock (rank VM: a holder of vm->lock may wait for such a fence)
 * nor allocate from the heap (gvm__malloc & co., which may fail and so
 * leave the fence unsignalled).  Debug builds report either as a
 * violation and abort; sections nest.
 */
#if GVM_DEBUG >= 1
void gvm__signalling_begin(void);
void gvm__signalling_end(void);
/* Aborts if called inside a fence-signalling critical section. */
void gvm__signalling_no_alloc(void);
void gvm__lockrank_acquire(const void *lock, unsigned int rank,
			   const char *name, bool trylock);
void gvm__lockrank_release(const void *lock);
bool gvm__lockrank_held(const void *lock);
/* Highest rank among the locks the calling thread holds, 0 if none. */
unsigned int gvm__lockrank_max_held(void);
void gvm__might_fault_at(const char *file, int line);
#else
static inline void gvm__signalling_begin(void)
{
}
static inline void gvm__signalling_end(void)
{
}
static inline void gvm__signalling_no_alloc(void)
{
}
static inline void gvm__lockrank_acquire(const void *lock, unsigned int rank,
					 const char *name, bool trylock)
{
}
static inline void gvm__lockrank_release(const void *lock)
{
}
static inline bool gvm__lockrank_held(const void *lock)
{
	return true;
}
static inline unsigned int gvm__lockrank_max_held(void)
{
	return 0;
}
static inline void gvm__might_fault_at(const char *file, int line)
{
}
#endif

/* Asserts (debug builds) that the calling thread holds @lock. */
#define gvm_lockdep_assert_held(lock) gvm_assert(gvm__lockrank_held(lock))

/* Asserts (debug builds) that the calling thread holds no checked lock. */
#define gvm_lockdep_assert_none_held() gvm_assert(!gvm__lockrank_max_held())

/*
 * Asserts (debug builds) that the calling thread may block: it holds no lock
 * of the non-blocking ranks (scheduler queue and above: those sections,
 * including fence callbacks, must never sleep).  Outer locks such as vm->lock
 * and reservations may be held across blocking calls.
 */
#define gvm_might_block() \
	gvm_assert(gvm__lockrank_max_held() < GVM_RANK_SCHED_QUEUE)

/*
 * Marks a read or write of application memory: memory a caller passed by
 * pointer (out-parameters, input arrays and structs, data copied to or
 * from the caller), which SVM may have moved to device memory.  Touching
 * such a page blocks the thread until the mm's event thread brings it
 * back, and that fault-back takes the mm's devmem_lock, reservations,
 * page-table and notifier locks, fence, scheduler and engine locks...  So
 * the caller must hold no checked lock of rank GVM_RANK_MM or above and
 * must not be in a fence-signalling section (the fault-back waits for copy
 * fences).  vm->lock and a model mm's map_lock may be held: the fault-back
 * never takes them.  Debug builds abort on a violation, naming the lock;
 * release builds compile it away (docs/locking.md, "Touching application
 * memory").
 */
#define gvm__might_fault() gvm__might_fault_at(__FILE__, __LINE__)

/* Stores @val through the caller's pointer @ptr, after gvm__might_fault(). */
#define gvm__put_out(ptr, val) \
	do { \
		gvm__might_fault(); \
		*(ptr) = (val); \
	} while (0)

#endif
