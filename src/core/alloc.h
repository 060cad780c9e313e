/* SPDX-License-Identifier: MIT */
/*
 * Heap allocation for gvm, with fault injection.
 *
 * Every allocation in the library goes through these wrappers, into the
 * library's own heap (alloc.c: memory SVM never migrates, see there), freed
 * with gvm__free(); and so that tests can fail any one of them and prove
 * the error path, each is the injection site GVM_INJECT_ALLOC
 * (core/inject.h): gvm__inject_arm(GVM_INJECT_ALLOC, N, 0) and the N-th
 * allocation from then on returns NULL, once.  The check costs one relaxed
 * load when injection is off.
 *
 * Thread-safe.
 * (The interval tree keeps its own node-allocation hook,
 * gvm__itree_fail_alloc_after, which fails every allocation after N.)
 */
#ifndef GVM_CORE_ALLOC_H
#define GVM_CORE_ALLOC_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/atomic.h"
#include "core/inject.h"
#include "core/lockrank.h"

void *gvm__heap_malloc(size_t size);
void *gvm__heap_calloc(size_t n, size_t size);
void *gvm__heap_realloc(void *p, size_t size);
void *gvm__heap_aligned_alloc(size_t align, size_t size);

/* Frees a block of the library's heap (NULL: nothing); aborts on others. */
void gvm__free(void *p);

/*
 * True if [start, start + len) overlaps memory the library owns: its heap,
 * its static data or its threads' stacks (core/thread.c), or the stack of
 * an application thread that runs library code (core/stack.c).  SVM never
 * migrates such memory.
 */
bool gvm__alloc_owns(uint64_t start, uint64_t len);

/* True if @p points into the library's heap (a gvm__free() candidate). */
bool gvm__heap_owns(const void *p);

/*
 * Blocks of the library's heap allocated now (leak checks in tests); a
 * block sitting in a thread's cache is free.  Takes a lock and sums the
 * threads' counts: not for hot paths.
 */
uint64_t gvm__alloc_live(void);

/* Bytes of the heap's reservation handed out so far (never shrinks):
   tests check that threads coming and going strand no memory. */
uint64_t gvm__alloc_carved(void);

/*
 * Heap allocations the calling thread made through these wrappers since
 * it started: benchmarks and tests read it around a call to count what
 * the call allocated.  Thread-local, so it costs a plain increment.
 */
extern _Thread_local unsigned long gvm__alloc_count;

static inline bool gvm__alloc_inject(void)
{
	gvm__signalling_no_alloc();	/* debug builds: see lockrank.h */
	gvm__alloc_count++;
	return gvm__inject(GVM_INJECT_ALLOC) != 0;
}

static inline void *gvm__malloc(size_t size)
{
	return gvm__alloc_inject() ? NULL : gvm__heap_malloc(size);
}

static inline void *gvm__calloc(size_t n, size_t size)
{
	return gvm__alloc_inject() ? NULL : gvm__heap_calloc(n, size);
}

/* On failure *p is untouched (realloc semantics). */
static inline void *gvm__realloc(void *p, size_t size)
{
	return gvm__alloc_inject() ? NULL : gvm__heap_realloc(p, size);
}

static inline void *gvm__aligned_alloc(size_t align, size_t size)
{
	return gvm__alloc_inject() ? NULL : gvm__heap_aligned_alloc(align, size);
}

/*
 * Grows the array *@p of *@cap elements of @sz bytes to hold at least @need
 * (doubling, from 8).  0 or -ENOMEM (then *@p and *@cap are untouched).
 */
int gvm__grow_slow(void **p, size_t *cap, size_t need, size_t sz);

static inline int gvm__grow(void **p, size_t *cap, size_t need, size_t sz)
{
	return need <= *cap ? 0 : gvm__grow_slow(p, cap, need, sz);
}

#define GVM_GROW(arr, cap, need) \
	gvm__grow((void **)&(arr), &(cap), (need), sizeof(*(arr)))

/*
 * The same for an array that starts in inline storage @inl (*@p == @inl,
 * *@cap its elements): the first growth copies it to the heap; inline
 * storage is never realloc'd.  Free such an array with GVM_FREE_INL.
 */
int gvm__grow_inl_slow(void **p, size_t *cap, size_t need, size_t sz,
		       const void *inl);

static inline int gvm__grow_inl(void **p, size_t *cap, size_t need, size_t sz,
				const void *inl)
{
	return need <= *cap ? 0 : gvm__grow_inl_slow(p, cap, need, sz, inl);
}

#define GVM_GROW_INL(arr, cap, need, inl) \
	gvm__grow_inl((void **)&(arr), &(cap), (need), sizeof(*(arr)), (inl))
#define GVM_FREE_INL(arr, inl)		\
	do {				\
		if ((arr) != (inl))	\
			gvm__free(arr);	\
	} while (0)

#endif
