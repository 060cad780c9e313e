// SPDX-License-Identifier: MIT
/*
 * Debug-build lock-order checker and fence-signalling annotations (see
 * lockrank.h for the rules).
 *
 * Locking: none needed; the state is a per-thread stack of held locks and
 * a per-thread signalling depth.
 * What it does not do: it checks one thread's acquisition order against the
 * static rank table; it does not build a dependency graph across threads
 * (lockdep does).  The rank table makes that unnecessary: a strict total order
 * obeyed by every thread cannot deadlock.
 */
#include "core/lockrank.h"

#if GVM_DEBUG >= 1

#include <stddef.h>

#define MAX_HELD 64

struct held_lock {
	const void *lock;
	const char *name;
	unsigned int rank;
};

static __thread struct held_lock held[MAX_HELD];
static __thread unsigned int nr_held;
static __thread unsigned int signalling;	/* nesting depth */

void gvm__signalling_begin(void)
{
	signalling++;
}

void gvm__signalling_end(void)
{
	if (!signalling)
		gvm__panic(__FILE__, __LINE__,
			   "fence-signalling section ended twice");
	signalling--;
}

void gvm__signalling_no_alloc(void)
{
	if (signalling)
		gvm__panic(__FILE__, __LINE__,
			   "allocation in a fence-signalling critical section");
}

void gvm__lockrank_acquire(const void *lock, unsigned int rank,
			   const char *name, bool trylock)
{
	if (signalling && rank == GVM_RANK_VM)
		gvm__panic(__FILE__, __LINE__,
			   "acquiring \"%s\" in a fence-signalling critical "
			   "section", name);
	for (unsigned int i = 0; i < nr_held; i++) {
		const struct held_lock *h = &held[i];

		if (h->lock == lock)
			gvm__panic(__FILE__, __LINE__,
				   "recursive locking of \"%s\"", name);
		if (trylock || rank == GVM_RANK_NONE ||
		    h->rank == GVM_RANK_NONE)
			continue;
		if (h->rank > rank ||
		    (h->rank == rank && !gvm_lock_rank_nestable(rank)))
			gvm__panic(__FILE__, __LINE__,
				   "lock order violation: acquiring \"%s\" "
				   "(rank %u) while holding \"%s\" (rank %u)",
				   name, rank, h->name, h->rank);
	}
	if (nr_held == MAX_HELD)
		gvm__panic(__FILE__, __LINE__,
			   "more than %d locks held, acquiring \"%s\"",
			   MAX_HELD, name);
	held[nr_held].lock = lock;
	held[nr_held].name = name;
	held[nr_held].rank = rank;
	nr_held++;
}

void gvm__lockrank_release(const void *lock)
{
	for (unsigned int i = nr_held; i-- > 0;) {
		if (held[i].lock != lock)
			continue;
		/* Keep acquisition order so messages name the right locks. */
		for (unsigned int j = i; j + 1 < nr_held; j++)
			held[j] = held[j + 1];
		nr_held--;
		return;
	}
	gvm__panic(__FILE__, __LINE__, "releasing a lock that is not held");
}

bool gvm__lockrank_held(const void *lock)
{
	for (unsigned int i = 0; i < nr_held; i++)
		if (held[i].lock == lock)
			return true;
	return false;
}

void gvm__might_fault_at(const char *file, int line)
{
	if (signalling)
		gvm__panic(file, line, "touching application memory in a "
			   "fence-signalling critical section");
	for (unsigned int i = 0; i < nr_held; i++)
		if (held[i].rank >= GVM_RANK_MM)
			gvm__panic(file, line, "touching application memory "
				   "while holding \"%s\" (rank %u), which the "
				   "CPU fault-back may need", held[i].name,
				   held[i].rank);
}

unsigned int gvm__lockrank_max_held(void)
{
	unsigned int max = 0;

	for (unsigned int i = 0; i < nr_held; i++)
		if (held[i].rank > max)
			max = held[i].rank;
	return max;
}

#endif
