/* SPDX-License-Identifier: MIT */
/*
 * Interval tree over inclusive [start, last] uint64_t ranges (internal API).
 *
 * A B+tree keyed on start whose internal nodes also keep, per child, the
 * largest `last` of that subtree, so overlap queries skip subtrees that end
 * before the query begins.  It is the VMA tree of every GPU VM (disjoint
 * ranges, up to millions of them) and the notifier tree (ranges overlap).
 * The design, the invariants and an example are at the top of itree.c.
 *
 * Locking: none.  The owner of the tree serialises every call on it
 * (including queries against modifications).  Any modification invalidates
 * every iterator of the tree (gvm__itree_set_finger() detects that itself).
 *
 * Finger: the tree remembers the root-to-leaf path of its last insert or
 * remove (or of an iterator's entry, gvm__itree_set_finger()), so that the
 * next insert or remove near it skips the descent.  It is a cache: results
 * and the tree's shape are the same with or without it.
 */
#ifndef GVM_CORE_ITREE_H
#define GVM_CORE_ITREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Maximum entries (leaves) or children (internal nodes) per node; at least
 * 16 (the tests pass at 16 and 32).  Overridable at build time for tuning
 * experiments only.
 */
#ifndef GVM_ITREE_FANOUT
#define GVM_ITREE_FANOUT 32
#endif
/* Minimum fill of every node but the root. */
#define GVM_ITREE_MIN_FILL (GVM_ITREE_FANOUT / 2)
/*
 * Upper bound on the height: a tree of height h holds at least
 * 2 * MIN_FILL^(h - 1) entries, which exceeds 2^64 for h = 22 when
 * MIN_FILL >= 8.
 */
#define GVM_ITREE_MAX_HEIGHT 22

struct gvm_itree_node;

/* One level of a root-to-leaf path: a node and the slot taken in it. */
struct gvm_itree_step {
	struct gvm_itree_node *node;
	unsigned int idx;
};

struct gvm_itree {
	struct gvm_itree_node *root;	/* NULL when empty */
	uint64_t root_last;		/* max last of the whole tree (0 if empty) */
	size_t count;			/* entries in the tree */
	unsigned int height;		/* levels; 0 empty, 1 = root is a leaf */
	bool reserved;			/* a reservation is outstanding (see
					   gvm__itree_reserve) */
	size_t pool_nr;			/* nodes in the pool */
	struct gvm_itree_node *pool;	/* free nodes, linked through slot 0 */
	uint64_t gen;			/* bumped by every change of the node
					   structure (split, borrow, merge,
					   new or freed root) */
	bool finger_ok;			/* finger[] is a path of the tree now */
	size_t finger_hits;		/* inserts and removes that used the
					   finger (statistics, tests) */
	struct gvm_itree_step finger[GVM_ITREE_MAX_HEIGHT];
					/* by level, 0 = leaf: the nodes
					   from the root down to one leaf and
					   the child taken in each; the leaf's
					   idx is a hint only */
};

/*
 * Overlap iterator.  Read start, last and item of the current entry; the
 * rest is private.  Valid until the tree is next modified.
 */
struct gvm_itree_iter {
	uint64_t start;			/* current entry's start */
	uint64_t last;			/* current entry's last */
	void *item;			/* current entry's item, NULL at the end */
	uint64_t qstart, qlast;		/* the query range */
	const struct gvm_itree *tree;	/* the tree being walked */
	uint64_t gen;			/* tree->gen at iter_first */
	struct gvm_itree_step path[GVM_ITREE_MAX_HEIGHT];
					/* by level, 0 = leaf: node at this
					   level, slot being visited in it */
};

void gvm__itree_init(struct gvm_itree *tree);
/* Frees every node and the pool; the items are the caller's. */
void gvm__itree_fini(struct gvm_itree *tree);

static inline size_t gvm__itree_count(const struct gvm_itree *tree)
{
	return tree->count;
}

static inline bool gvm__itree_empty(const struct gvm_itree *tree)
{
	return tree->count == 0;
}

/*
 * Adds the entry ([start, last], item).  Duplicate starts are allowed (even
 * the same (start, item) twice); entries with equal starts iterate in
 * insertion order.  Returns 0, -EINVAL if start > last or !item, -ENOMEM if
 * a node could not be allocated (the tree is then unchanged).
 */
int gvm__itree_insert(struct gvm_itree *tree, uint64_t start, uint64_t last,
		      void *item);

/*
 * Removes the entry (start, item) (the first one in order if it was inserted
 * twice).  Never allocates and never fails otherwise.  Returns 0 or -ENOENT.
 */
int gvm__itree_remove(struct gvm_itree *tree, uint64_t start, void *item);

/*
 * Preallocates nodes so that the next @n inserts cannot fail, whatever
 * removes are interleaved with them, and starts a reservation: until
 * gvm__itree_unreserve(), nodes freed by removes go back to the pool instead
 * of to the allocator.  Calls do not add up: each guarantees @n inserts
 * counted from the tree as it is at that call.  Cost: O(height), plus the
 * allocations.  Returns 0 or -ENOMEM (then nothing new was allocated and an
 * earlier reservation, if any, still holds).
 */
int gvm__itree_reserve(struct gvm_itree *tree, size_t n);

/* Ends a reservation; the pool keeps a few nodes for the next one. */
void gvm__itree_unreserve(struct gvm_itree *tree);

/*
 * Overlap iteration, ascending start (ties in insertion order).  Returns the
 * first entry's item overlapping [start, last] (start <= last), or NULL;
 * iter->start/last/item describe it.
 *
 *	for (item = gvm__itree_iter_first(t, &it, s, l); item;
 *	     item = gvm__itree_iter_next(&it))
 *		use(it.start, it.last, item);
 */
void *gvm__itree_iter_first(const struct gvm_itree *tree,
			    struct gvm_itree_iter *iter, uint64_t start,
			    uint64_t last);
void *gvm__itree_iter_next(struct gvm_itree_iter *iter);

/*
 * The first entry (lowest start) overlapping [start, last], or NULL.  Its
 * range goes to *@start_out / *@last_out when those are not NULL.
 */
void *gvm__itree_find_first(const struct gvm_itree *tree, uint64_t start,
			    uint64_t last, uint64_t *start_out,
			    uint64_t *last_out);

/* The first entry containing @addr, or NULL. */
static inline void *gvm__itree_find(const struct gvm_itree *tree,
				    uint64_t addr)
{
	return gvm__itree_find_first(tree, addr, addr, NULL, NULL);
}

/*
 * Makes @iter's current entry the tree's finger, so that the next insert or
 * remove near it (e.g. removing that entry, then inserting pieces of it)
 * skips the descent.  A hint only: does nothing if @iter is at its end, was
 * not started on @tree, or the tree's node structure changed since it was.
 * O(height).
 */
void gvm__itree_set_finger(struct gvm_itree *tree,
			   const struct gvm_itree_iter *iter);

/*
 * Checks every invariant listed in itree.c.  Returns 0, or -EUCLEAN after
 * printing what is wrong to stderr.  O(n).
 */
int gvm__itree_validate(const struct gvm_itree *tree);

/*
 * Allocation failure injection, for tests (single-threaded use only).
 * -1 (the default): allocations succeed.  N >= 0: N more node allocations
 * succeed, then every one fails until the counter is set back to -1.
 */
extern long gvm__itree_fail_alloc_after;

#endif
