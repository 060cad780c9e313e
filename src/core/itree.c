// SPDX-License-Identifier: MIT
/*
 * Interval tree: a B+tree of inclusive [start, last] ranges keyed on start,
 * augmented with the largest `last` of every subtree (API in itree.h).
 *
 * What it is for.  The VMA tree of a GPU VM holds disjoint ranges, up to
 * millions, and is mostly asked "which VMA contains this address"; the
 * notifier tree holds ranges that overlap and is asked "which ranges overlap
 * [a, b]".  A binary tree with one entry per node answers both but chases a
 * pointer, usually a cache miss, per level: some 20 levels at a million
 * entries.  A B+tree with wide nodes is 4-5 levels deep there, and a node
 * scan reads a few consecutive cache lines.
 *
 * Node layout.  Leaves and internal nodes share one layout (and one size,
 * so one pool of spare nodes serves both):
 *
 *	nr, level | last[F] | start[F] | item[F] or child[F]	(F = FANOUT)
 *
 * each array starting a cache line (64 bytes of header: 832 bytes at
 * F = 32, the size the header's 8 bytes would round up to anyway).
 * Fanout 32 rather than 16 (docs/performance.md, itree): one level fewer
 * at a million entries (5, not 6) for a last[] scan of four cache lines
 * instead of two; lookups and splits measured 6-10 % faster.
 *
 * A leaf holds nr entries as parallel arrays.  An internal node holds nr
 * children and, per child, the smallest start and the largest last found in
 * that child's subtree.  last[] comes first because queries scan it first.
 * There are no parent pointers or leaf links: iterators keep the path from
 * the root instead, so splits and merges touch only the nodes on one path and
 * their siblings.
 *
 * Invariants (checked by gvm__itree_validate()).  Levels count from the
 * leaves (level 0) to the root (level height - 1); E(x) is the sequence of
 * entries under node x, in order.
 *
 *	every leaf is at depth height - 1; node->level is its level
 *	leaf:      start[0] <= start[1] <= ... <= start[nr-1]
 *	           start[i] <= last[i],  item[i] != NULL
 *	internal:  start[i] = min { e.start : e in E(child[i]) } = first start
 *	           last[i]  = max { e.last  : e in E(child[i]) }
 *	           max start of E(child[i]) <= start[i + 1]	(global order)
 *	fill:      MIN_FILL <= nr <= FANOUT, except the root:
 *	           1 <= nr (root leaf), 2 <= nr (root internal)
 *	tree:      count = |E(root)|, root_last = max { e.last : e in E(root) },
 *	           root == NULL <=> count == 0 <=> height == 0
 *	pool:      pool_nr = length of the pool list
 *
 * Entries with equal starts keep their insertion order: insert places a new
 * entry after every entry whose start is <= its own, and splits, borrows and
 * merges never reorder entries.
 *
 * Queries.  Entries overlapping [qs, ql] are those with start <= ql and
 * last >= qs.  A depth-first walk visits children in order, skips a child
 * whose last[i] < qs (nothing in it reaches qs) and stops at the first child
 * or entry whose start > ql (nothing after it can start early enough).  A
 * long interval that starts early is found because its last raises last[]
 * on every level above it.  Finding the first overlap never backtracks,
 * overlapping ranges or not: in each node the first slot with last >= qs
 * either starts after ql (then nothing overlaps: earlier slots end before
 * qs, later ones start after ql) or leads to the answer.  So
 * gvm__itree_find_first() is one descent, like a plain B+tree lookup, and
 * only iter_next() climbs back up.
 *
 * Insert descends to the leaf, counts the full nodes on the path that will
 * split (plus a new root if all do), takes that many nodes from the pool
 * (allocating first if the pool is short; on failure nothing has been
 * touched), then inserts bottom-up, splitting full nodes in two halves.
 * Remove finds the exact (start, item) (equal starts may span several
 * children, so it may try more than one), deletes it, then walks up: a node
 * left under MIN_FILL borrows one slot from a sibling that has more than
 * MIN_FILL, or else merges with it; an internal root left with one child is
 * replaced by that child; an empty root leaf is freed.
 *
 * Finger.  The tree keeps the path (node and slot per level) of its last
 * insert or remove, or of an iterator's entry (gvm__itree_set_finger()), and
 * a generation, gen, bumped by every split, borrow, merge and root change.
 * Leaf-only changes leave every node where it was and every internal slot
 * index valid, so the path stays a path of the tree (finger_ok) until a
 * structural change; an iterator's path is one while its gen matches.
 * Insert takes the finger's path when a descent would take the same one: at
 * every internal level the finger's child is the last whose min start is
 * <= the key (two compares per level on nodes just touched).  Remove takes
 * it when the finger's leaf holds (start, item) and that copy is surely the
 * first in order (an entry before it in the leaf starts lower, or the leaf
 * is the first).  Both then do exactly what the descent would have done, so
 * the tree's shape never depends on the finger.  A VA split (remove one
 * mapping, insert three pieces in its place) and a merge (the reverse) thus
 * cost one descent, by the overlap walk that found the mapping.
 *
 * Remove refreshes the augmentation bottom-up and stops at the first level
 * whose node kept its fill and whose parent's slot already has its min
 * start and max last: nothing above can change.
 *
 * Prefetch.  A walk that steps into a child asks for all of the child's
 * cache lines at once: a query reads last[] and then start[] and item[] at
 * the slot found, which in a node not in cache are otherwise misses one
 * after the other.
 *
 * Reservations.  VM_BIND must apply its op list where nothing may fail, so
 * gvm__itree_reserve(n) fills the pool with an upper bound B(n) of the nodes
 * the next n inserts can consume, and while the reservation lasts, removes
 * give their freed nodes back to the pool.  The bound, per level l (leaves
 * first), with a_0 = n inserts arriving and E_l an upper bound of the nodes
 * now at level l:
 *
 *	s_l = min(a_l, E_l + floor(a_l / g)),   a_(l+1) = s_l,   g = F / 2
 *	B(n) = sum of s_l, plus 1 for every level created above the root
 *
 * Why: a split at level l adds one slot at level l + 1.  A node that exists
 * now can split after one add; a node made by a split has at most
 * ceil((F + 1) / 2) slots (and one refilled by a borrow has MIN_FILL), so it
 * needs at least g adds to split again.  A merge can make a full node again,
 * but it frees a node, which the reservation puts back in the pool, so it
 * pays for the extra split.  E_l comes from count: E_0 <= count / MIN_FILL,
 * E_(l+1) <= E_l / MIN_FILL, and the root level has one node.
 *
 * Locking: none.  The tree belongs to an owner (the VM, the notifier list)
 * whose lock serialises every call, queries included.  Any modification
 * invalidates all iterators (for gvm__itree_set_finger(), gen tells).
 *
 * Example:
 *
 *	struct gvm_itree t;
 *	struct gvm_itree_iter it;
 *
 *	gvm__itree_init(&t);
 *	err = gvm__itree_insert(&t, 0x1000, 0x1fff, vma);   // -ENOMEM possible
 *	for (v = gvm__itree_iter_first(&t, &it, 0x1800, 0x27ff); v;
 *	     v = gvm__itree_iter_next(&it))
 *		printf("%lx-%lx\n", it.start, it.last);
 *	gvm__itree_remove(&t, 0x1000, vma);
 *	gvm__itree_fini(&t);
 *
 * What it does not do: no locking and no concurrent readers (no RCU); it
 * never looks inside items and never frees them; it does not merge or split
 * ranges (the VM layer does); iterators do not survive modifications; ranges
 * are inclusive, so [0, UINT64_MAX] is one entry and "empty" ranges cannot
 * be stored.
 */
#include "core/alloc.h"
#include "core/itree.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/debug.h"

#define F GVM_ITREE_FANOUT
#define MIN_FILL GVM_ITREE_MIN_FILL

/* Spare nodes kept (after removes and reservations) for the next inserts:
   ~13 KiB of them whatever the fanout (16 at 32). */
#define POOL_KEEP (512 / F)

_Static_assert(MIN_FILL >= 8, "GVM_ITREE_MAX_HEIGHT assumes MIN_FILL >= 8");
_Static_assert(F <= 255, "node slot indices are small");

struct gvm_itree_node {
	uint32_t nr;			/* used slots: 1..F */
	uint32_t level;			/* 0 for leaves; the root's is height-1 */
	_Alignas(64) uint64_t last[F];	/* leaf: entry's last;
					   internal: max last of child's subtree */
	uint64_t start[F];		/* leaf: entry's start;
					   internal: min start of child's subtree */
	union {
		void *item[F];		/* leaf: entry's item */
		struct gvm_itree_node *child[F]; /* internal: children;
					   pool: child[0] links free nodes */
	};
};

/* Rounded to whole cache lines so that a node never shares one. */
#define NODE_BYTES ((sizeof(struct gvm_itree_node) + 63) & ~(size_t)63)

long gvm__itree_fail_alloc_after = -1;

/* ---- nodes and the pool -------------------------------------------------- */

static struct gvm_itree_node *node_alloc(void)
{
	if (__builtin_expect(gvm__itree_fail_alloc_after >= 0, 0)) {
		if (gvm__itree_fail_alloc_after == 0)
			return NULL;
		gvm__itree_fail_alloc_after--;
	}
	return gvm__heap_aligned_alloc(64, NODE_BYTES);
}

static void pool_push(struct gvm_itree *tree, struct gvm_itree_node *node)
{
	node->child[0] = tree->pool;
	tree->pool = node;
	tree->pool_nr++;
}

static struct gvm_itree_node *pool_pop(struct gvm_itree *tree)
{
	struct gvm_itree_node *node = tree->pool;

	GVM_BUG_ON(!node);
	tree->pool = node->child[0];
	tree->pool_nr--;
	return node;
}

/*
 * Grows the pool to @want nodes.  On failure frees what this call allocated
 * and returns -ENOMEM, leaving the pool as it was.
 */
static int pool_fill(struct gvm_itree *tree, size_t want)
{
	size_t added = 0;

	while (tree->pool_nr < want) {
		struct gvm_itree_node *node = node_alloc();

		if (!node) {
			while (added--)
				gvm__free(pool_pop(tree));
			return -ENOMEM;
		}
		pool_push(tree, node);
		added++;
	}
	return 0;
}

/* A node leaving the tree: back to the pool, or to the allocator. */
static void node_release(struct gvm_itree *tree, struct gvm_itree_node *node)
{
	if (tree->reserved || tree->pool_nr < POOL_KEEP)
		pool_push(tree, node);
	else
		gvm__free(node);
}

static void pool_drain(struct gvm_itree *tree)
{
	while (tree->pool)
		gvm__free(pool_pop(tree));
}

/* ---- slot helpers (same layout for leaves and internal nodes) ------------ */

/*
 * Starts loading every cache line of @node.  A query reads its last[], then
 * start[] and item[] at a slot found by that scan: in a node that is not
 * cached, these are several misses one after the other, unless all of them
 * are in flight at once.
 */
static inline void node_prefetch(const struct gvm_itree_node *node)
{
	for (size_t off = 0; off < NODE_BYTES; off += 64)
		__builtin_prefetch((const char *)node + off);
}

/* Number of slots with start <= key; starts are sorted. */
static inline unsigned int count_le(const uint64_t *start, unsigned int nr,
				    uint64_t key)
{
	unsigned int c = 0;

	for (unsigned int i = 0; i < nr; i++)
		c += start[i] <= key;
	return c;
}

/* Number of slots with start < key. */
static inline unsigned int count_lt(const uint64_t *start, unsigned int nr,
				    uint64_t key)
{
	unsigned int c = 0;

	for (unsigned int i = 0; i < nr; i++)
		c += start[i] < key;
	return c;
}

static inline uint64_t node_max_last(const struct gvm_itree_node *node)
{
	uint64_t m = node->last[0];

	for (unsigned int i = 1; i < node->nr; i++)
		m = node->last[i] > m ? node->last[i] : m;
	return m;
}

/* Copies @n slots from src[si..] to dst[di..]; the ranges may overlap. */
static void slots_move(struct gvm_itree_node *dst, unsigned int di,
		       const struct gvm_itree_node *src, unsigned int si,
		       unsigned int n)
{
	memmove(&dst->last[di], &src->last[si], n * sizeof(dst->last[0]));
	memmove(&dst->start[di], &src->start[si], n * sizeof(dst->start[0]));
	memmove(&dst->item[di], &src->item[si], n * sizeof(dst->item[0]));
}

static void slot_set(struct gvm_itree_node *node, unsigned int i,
		     uint64_t start, uint64_t last, void *p)
{
	node->start[i] = start;
	node->last[i] = last;
	node->item[i] = p;
}

/* Inserts a slot at @pos in a node that is not full. */
static void slot_insert(struct gvm_itree_node *node, unsigned int pos,
			uint64_t start, uint64_t last, void *p)
{
	gvm_assert(node->nr < F && pos <= node->nr);
	slots_move(node, pos + 1, node, pos, node->nr - pos);
	slot_set(node, pos, start, last, p);
	node->nr++;
}

static void slot_delete(struct gvm_itree_node *node, unsigned int pos)
{
	gvm_assert(pos < node->nr);
	slots_move(node, pos, node, pos + 1, node->nr - pos - 1);
	node->nr--;
}

/*
 * Splits full @node, with a new slot at @pos, between @node and empty
 * @right: @node keeps the first ceil((F + 1) / 2) slots.
 */
static void split_insert(struct gvm_itree_node *node,
			 struct gvm_itree_node *right, unsigned int pos,
			 uint64_t start, uint64_t last, void *p)
{
	const unsigned int keep = (F + 2) / 2;

	gvm_assert(node->nr == F);
	right->level = node->level;
	if (pos < keep) {
		slots_move(right, 0, node, keep - 1, F - (keep - 1));
		right->nr = F - (keep - 1);
		node->nr = keep - 1;
		slot_insert(node, pos, start, last, p);
	} else {
		slots_move(right, 0, node, keep, F - keep);
		right->nr = F - keep;
		node->nr = keep;
		slot_insert(right, pos - keep, start, last, p);
	}
}

/* Refreshes the parent's slot @i from its child (after the child changed). */
static inline void parent_update(struct gvm_itree_node *parent, unsigned int i)
{
	const struct gvm_itree_node *child = parent->child[i];

	parent->start[i] = child->start[0];
	parent->last[i] = node_max_last(child);
}

/* ---- init / fini / reserve ------------------------------------------------ */

void gvm__itree_init(struct gvm_itree *tree)
{
	memset(tree, 0, sizeof(*tree));
}

static void free_subtree(struct gvm_itree_node *node)
{
	if (node->level)
		for (unsigned int i = 0; i < node->nr; i++)
			free_subtree(node->child[i]);
	gvm__free(node);
}

void gvm__itree_fini(struct gvm_itree *tree)
{
	uint64_t gen = tree->gen;

	if (tree->root)
		free_subtree(tree->root);
	pool_drain(tree);
	gvm__itree_init(tree);
	tree->gen = gen + 1;	/* no earlier iterator may set the finger */
}

/* B(n) of the overview: nodes that n inserts can consume at most. */
static size_t reserve_bound(const struct gvm_itree *tree, size_t n)
{
	const size_t g = F / 2;
	size_t need = 0, a = n, e = 0;

	for (unsigned int l = 0; a > 0; l++) {
		size_t s;

		if (l + 1 == tree->height) {
			e = 1;
		} else if (l < tree->height) {
			e = (l == 0 ? tree->count : e) / MIN_FILL;
			if (e == 0)
				e = 1;
		} else {
			need++;		/* a new root at level l */
			e = 0;
		}
		s = e + a / g;
		if (s > a)
			s = a;
		need += s;
		a = s;
	}
	return need;
}

int gvm__itree_reserve(struct gvm_itree *tree, size_t n)
{
	int err = pool_fill(tree, reserve_bound(tree, n));

	if (err)
		return err;
	tree->reserved = true;
	return 0;
}

void gvm__itree_unreserve(struct gvm_itree *tree)
{
	tree->reserved = false;
	/* Keep a few for the next reservation: binds come in streams. */
	while (tree->pool_nr > POOL_KEEP)
		gvm__free(pool_pop(tree));
}

/* ---- insert ----------------------------------------------------------------- */

/*
 * Whether a descent for @start from the root would take the finger's path
 * down to its leaf: at every internal level the finger's child is the last
 * one whose min start is <= @start (or the first).  O(height) compares on
 * nodes the last operation touched.
 */
static bool finger_covers(const struct gvm_itree *tree, uint64_t start)
{
	for (unsigned int level = 1; level < tree->height; level++) {
		const struct gvm_itree_node *node = tree->finger[level].node;
		unsigned int i = tree->finger[level].idx;

		if (i > 0 && node->start[i] > start)
			return false;
		if (i + 1 < node->nr && node->start[i + 1] <= start)
			return false;
	}
	return true;
}

/*
 * Sets tree->finger to the path an insert of @start takes: the finger
 * itself when it covers @start, else a descent.  Either way the same path.
 */
static void insert_path(struct gvm_itree *tree, uint64_t start)
{
	struct gvm_itree_step *path = tree->finger;
	struct gvm_itree_node *node;
	unsigned int level;

	if (tree->finger_ok && finger_covers(tree, start)) {
		tree->finger_hits++;
		node = path[0].node;
	} else {
		/* The last child whose min start is <= start (or the first). */
		node = tree->root;
		for (level = tree->height - 1; level > 0; level--) {
			unsigned int i = count_le(node->start, node->nr, start);

			i = i ? i - 1 : 0;
			path[level].node = node;
			path[level].idx = i;
			node = node->child[i];
		}
		path[0].node = node;
		tree->finger_ok = true;
	}
	path[0].idx = count_le(node->start, node->nr, start);
}

/* The node structure changes: iterators and the finger are stale. */
static inline void structure_changed(struct gvm_itree *tree)
{
	tree->gen++;
	tree->finger_ok = false;
}

int gvm__itree_insert(struct gvm_itree *tree, uint64_t start, uint64_t last,
		      void *item)
{
	struct gvm_itree_step *path = tree->finger;
	const unsigned int height = tree->height;
	struct gvm_itree_node *node;
	uint64_t s = start, l = last;
	unsigned int level, need;
	void *p = item;
	int err;

	if (start > last || !item)
		return -EINVAL;

	if (!height) {
		err = pool_fill(tree, 1);
		if (err)
			return err;
		node = pool_pop(tree);
		node->level = 0;
		node->nr = 1;
		slot_set(node, 0, start, last, item);
		tree->root = node;
		tree->root_last = last;
		tree->height = 1;
		tree->count = 1;
		structure_changed(tree);
		return 0;
	}

	insert_path(tree, start);

	/* Every full node from the leaf up splits; all full: a new root. */
	for (need = 0; need < height && path[need].node->nr == F; need++)
		;
	if (need == height)
		need++;
	if (need > tree->pool_nr) {
		err = pool_fill(tree, need);
		if (err)
			return err;
	}

	/* Nothing can fail from here on. */
	for (level = 0;; level++) {
		struct gvm_itree_node *right, *parent;
		unsigned int pidx;

		node = path[level].node;
		if (node->nr < F) {
			slot_insert(node, path[level].idx, s, l, p);
			break;
		}
		structure_changed(tree);
		right = pool_pop(tree);
		split_insert(node, right, path[level].idx, s, l, p);
		if (level + 1 == height) {
			parent = pool_pop(tree);
			parent->level = height;
			parent->nr = 2;
			parent->child[0] = node;
			parent->child[1] = right;
			parent_update(parent, 0);
			parent_update(parent, 1);
			tree->root = parent;
			tree->height = height + 1;
			break;
		}
		parent = path[level + 1].node;
		pidx = path[level + 1].idx;
		parent_update(parent, pidx);
		/* Next level: insert the slot for `right` after `node`. */
		s = right->start[0];
		l = node_max_last(right);
		p = right;
		path[level + 1].idx = pidx + 1;
	}

	/* Above the level that absorbed the slot, subtrees gained one entry. */
	for (level++; level < height; level++) {
		unsigned int i = path[level].idx;

		node = path[level].node;
		if (start < node->start[i])
			node->start[i] = start;
		if (last > node->last[i])
			node->last[i] = last;
	}
	if (last > tree->root_last)
		tree->root_last = last;
	tree->count++;
	return 0;
}

/* ---- remove ----------------------------------------------------------------- */

/*
 * Finds the slot holding (start, item) under @node, filling @path from
 * @node's level down.  Entries with start equal to @start may sit in every
 * child from the last one starting before @start to the last one starting
 * at or before it, so this may try several.
 */
static bool find_exact(struct gvm_itree_node *node, uint64_t start,
		       const void *item, struct gvm_itree_step *path)
{
	unsigned int lo = count_lt(node->start, node->nr, start);
	unsigned int hi = count_le(node->start, node->nr, start);

	if (!node->level) {
		for (unsigned int i = lo; i < hi; i++) {
			if (node->item[i] == item) {
				path[0].node = node;
				path[0].idx = i;
				return true;
			}
		}
		return false;
	}
	for (unsigned int i = lo ? lo - 1 : 0; i < hi; i++) {
		path[node->level].node = node;
		path[node->level].idx = i;
		if (find_exact(node->child[i], start, item, path))
			return true;
	}
	return false;
}

/*
 * @node (child @i of @parent) has MIN_FILL - 1 slots: borrow one from a
 * sibling with spare slots, or merge with it.  Refreshes the parent's slots
 * for both.
 */
static void rebalance(struct gvm_itree *tree, struct gvm_itree_node *parent,
		      unsigned int i)
{
	struct gvm_itree_node *node = parent->child[i], *left, *right;
	unsigned int li;

	gvm_assert(parent->nr >= 2 && node->nr == MIN_FILL - 1);
	li = i > 0 ? i - 1 : i;
	left = parent->child[li];
	right = parent->child[li + 1];

	if (left != node && left->nr > MIN_FILL) {
		/* Borrow the left sibling's last slot. */
		slots_move(node, 1, node, 0, node->nr);
		slots_move(node, 0, left, left->nr - 1, 1);
		node->nr++;
		left->nr--;
	} else if (right != node && right->nr > MIN_FILL) {
		/* Borrow the right sibling's first slot. */
		slots_move(node, node->nr, right, 0, 1);
		node->nr++;
		slot_delete(right, 0);
	} else {
		/* Merge right into left. */
		gvm_assert(left->nr + right->nr <= F);
		slots_move(left, left->nr, right, 0, right->nr);
		left->nr += right->nr;
		slot_delete(parent, li + 1);
		node_release(tree, right);
		parent_update(parent, li);
		return;
	}
	parent_update(parent, li);
	parent_update(parent, li + 1);
}

/*
 * Finds (start, item) in the finger's leaf, when that is surely the first
 * such entry in order (as find_exact() would pick): an entry of the leaf
 * before it starts lower, or the leaf is the tree's first.  Sets the leaf
 * idx of the finger.
 */
static bool finger_find(struct gvm_itree *tree, uint64_t start,
			const void *item)
{
	struct gvm_itree_node *leaf = tree->finger[0].node;
	unsigned int lo = count_lt(leaf->start, leaf->nr, start);
	unsigned int hi = count_le(leaf->start, leaf->nr, start);

	if (!lo) {
		for (unsigned int level = 1; level < tree->height; level++)
			if (tree->finger[level].idx)
				return false;
	}
	for (unsigned int i = lo; i < hi; i++) {
		if (leaf->item[i] == item) {
			tree->finger[0].idx = i;
			return true;
		}
	}
	return false;
}

int gvm__itree_remove(struct gvm_itree *tree, uint64_t start, void *item)
{
	struct gvm_itree_step *path = tree->finger;
	struct gvm_itree_node *root = tree->root;
	unsigned int level;

	if (!root)
		return -ENOENT;
	if (tree->finger_ok && finger_find(tree, start, item)) {
		tree->finger_hits++;
	} else {
		tree->finger_ok = false;
		if (!find_exact(root, start, item, path))
			return -ENOENT;
		tree->finger_ok = true;
	}

	slot_delete(path[0].node, path[0].idx);
	tree->count--;

	/*
	 * Fix fills and refresh the augmentation on the way up.  A level
	 * whose node keeps its fill and whose parent's slot already says its
	 * min start and max last ends the walk: nothing above changes.
	 */
	for (level = 0; level + 1 < tree->height; level++) {
		struct gvm_itree_node *node = path[level].node;
		struct gvm_itree_node *parent = path[level + 1].node;
		unsigned int i = path[level + 1].idx;

		if (node->nr < MIN_FILL) {
			structure_changed(tree);
			rebalance(tree, parent, i);
		} else {
			uint64_t ms = node->start[0], ml = node_max_last(node);

			if (parent->start[i] == ms && parent->last[i] == ml)
				break;
			parent->start[i] = ms;
			parent->last[i] = ml;
		}
	}

	if (tree->height > 1 && root->nr == 1) {
		structure_changed(tree);
		tree->root = root->child[0];
		tree->height--;
		node_release(tree, root);
	} else if (tree->height == 1 && root->nr == 0) {
		structure_changed(tree);
		tree->root = NULL;
		tree->height = 0;
		node_release(tree, root);
	}
	tree->root_last = tree->root ? node_max_last(tree->root) : 0;
	return 0;
}

void gvm__itree_set_finger(struct gvm_itree *tree,
			   const struct gvm_itree_iter *iter)
{
	if (iter->tree != tree || !iter->item || iter->gen != tree->gen ||
	    !tree->height)
		return;
	for (unsigned int level = 0; level < tree->height; level++)
		tree->finger[level] = iter->path[level];
	tree->finger_ok = true;
}

/* ---- queries ------------------------------------------------------------------ */

/*
 * Depth-first walk from path[level] (node, first slot to look at) to the
 * next entry overlapping the query.
 */
static void *iter_walk(struct gvm_itree_iter *it, unsigned int level)
{
	const uint64_t qs = it->qstart, ql = it->qlast;
	const unsigned int height = it->tree->height;

	for (;;) {
		const struct gvm_itree_node *node = it->path[level].node;
		unsigned int i = it->path[level].idx, nr = node->nr;

		for (; i < nr; i++) {
			if (node->last[i] >= qs)
				break;
		}
		if (i < nr && node->start[i] > ql)
			break;		/* everything from here on starts later */
		if (i == nr) {
			if (++level == height)
				break;
			it->path[level].idx++;
			continue;
		}
		it->path[level].idx = i;
		if (!level) {
			it->start = node->start[i];
			it->last = node->last[i];
			it->item = node->item[i];
			return it->item;
		}
		level--;
		it->path[level].node = node->child[i];
		node_prefetch(node->child[i]);
		it->path[level].idx = 0;
	}
	it->item = NULL;
	return NULL;
}

void *gvm__itree_iter_first(const struct gvm_itree *tree,
			    struct gvm_itree_iter *iter, uint64_t start,
			    uint64_t last)
{
	iter->tree = tree;
	iter->gen = tree->gen;
	iter->qstart = start;
	iter->qlast = last;
	iter->item = NULL;
	if (!tree->root || start > last || tree->root_last < start)
		return NULL;
	iter->path[tree->height - 1].node = tree->root;
	iter->path[tree->height - 1].idx = 0;
	return iter_walk(iter, tree->height - 1);
}

void *gvm__itree_iter_next(struct gvm_itree_iter *iter)
{
	if (!iter->item)
		return NULL;
	iter->path[0].idx++;
	return iter_walk(iter, 0);
}

/*
 * One descent, no backtracking: the first slot with last >= start either
 * starts after @last (then nothing overlaps: every earlier slot ends before
 * start, every later one starts after last) or holds the answer.  The scan
 * needs no bound: the parent's last[] for this node, or root_last, says a
 * slot with last >= start exists.
 */
void *gvm__itree_find_first(const struct gvm_itree *tree, uint64_t start,
			    uint64_t last, uint64_t *start_out,
			    uint64_t *last_out)
{
	const struct gvm_itree_node *node = tree->root;
	unsigned int i;

	if (!node || start > last || tree->root_last < start)
		return NULL;
	/*
	 * Internal levels: the first child whose subtree reaches @start.  No
	 * check of its min start there: if it begins after @last, so does
	 * the entry the leaf finds, and the leaf says so.
	 */
	for (unsigned int level = tree->height - 1; level; level--) {
		for (i = 0; node->last[i] < start; i++)
			gvm_assert(i + 1 < node->nr);
		node = node->child[i];
		node_prefetch(node);
	}
	for (i = 0; node->last[i] < start; i++)
		gvm_assert(i + 1 < node->nr);
	if (node->start[i] > last)
		return NULL;
	if (start_out)
		*start_out = node->start[i];
	if (last_out)
		*last_out = node->last[i];
	return node->item[i];
}

/* ---- validation ------------------------------------------------------------------ */

struct vstate {
	const struct gvm_itree *tree;
	size_t count;		/* entries seen */
	bool have_prev;		/* prev_start is set */
	uint64_t prev_start;	/* start of the previous entry in order */
	int err;
};

#define VFAIL(v, node, ...)                                                 \
	do {                                                                \
		fprintf(stderr, "itree %p: node %p (level %u): ",           \
			(const void *)(v)->tree, (const void *)(node),      \
			(node) ? (node)->level : 0u);                       \
		fprintf(stderr, __VA_ARGS__);                               \
		fputc('\n', stderr);                                        \
		(v)->err = -EUCLEAN;                                        \
	} while (0)

/* Checks @node at @level; returns its subtree's min start and max last. */
static void validate_node(struct vstate *v, const struct gvm_itree_node *node,
			  unsigned int level, bool is_root,
			  uint64_t *min_start, uint64_t *max_last)
{
	unsigned int min_nr = is_root ? (level ? 2 : 1) : MIN_FILL;
	uint64_t mx = 0;

	*min_start = 0;
	*max_last = 0;
	if (node->level != level)
		VFAIL(v, node, "level field %u, expected %u", node->level,
		      level);
	if (node->nr < min_nr || node->nr > F) {
		VFAIL(v, node, "%u slots, allowed %u..%u", node->nr, min_nr,
		      F);
		if (node->nr == 0 || node->nr > F)
			return;
	}
	for (unsigned int i = 1; i < node->nr; i++)
		if (node->start[i - 1] > node->start[i])
			VFAIL(v, node, "start[%u] %#" PRIx64 " > start[%u] %#"
			      PRIx64, i - 1, node->start[i - 1], i,
			      node->start[i]);

	for (unsigned int i = 0; i < node->nr; i++) {
		uint64_t cmin, cmax;

		if (!level) {
			if (node->start[i] > node->last[i])
				VFAIL(v, node, "entry %u: start %#" PRIx64
				      " > last %#" PRIx64, i, node->start[i],
				      node->last[i]);
			if (!node->item[i])
				VFAIL(v, node, "entry %u: NULL item", i);
			if (v->have_prev && v->prev_start > node->start[i])
				VFAIL(v, node, "entry %u: start %#" PRIx64
				      " below previous entry's %#" PRIx64, i,
				      node->start[i], v->prev_start);
			v->have_prev = true;
			v->prev_start = node->start[i];
			v->count++;
			cmax = node->last[i];
		} else {
			if (!node->child[i]) {
				VFAIL(v, node, "child %u is NULL", i);
				continue;
			}
			validate_node(v, node->child[i], level - 1, false,
				      &cmin, &cmax);
			if (node->start[i] != cmin)
				VFAIL(v, node, "child %u: min start %#" PRIx64
				      ", subtree's is %#" PRIx64, i,
				      node->start[i], cmin);
			if (node->last[i] != cmax)
				VFAIL(v, node, "child %u: max last %#" PRIx64
				      ", subtree's is %#" PRIx64, i,
				      node->last[i], cmax);
		}
		mx = i == 0 || cmax > mx ? cmax : mx;
	}
	*min_start = node->start[0];
	*max_last = mx;
}

int gvm__itree_validate(const struct gvm_itree *tree)
{
	struct vstate v = { .tree = tree };
	const struct gvm_itree_node *n;
	size_t pool_nr = 0;

	if (tree->height > GVM_ITREE_MAX_HEIGHT) {
		VFAIL(&v, (const struct gvm_itree_node *)NULL,
		      "height %u > %u", tree->height, GVM_ITREE_MAX_HEIGHT);
		return v.err;
	}
	if (!tree->root != !tree->height || !tree->root != !tree->count)
		VFAIL(&v, tree->root, "root %p, height %u, count %zu disagree",
		      (void *)tree->root, tree->height, tree->count);
	if (!tree->root && tree->root_last)
		VFAIL(&v, tree->root, "empty tree with root_last %#" PRIx64,
		      tree->root_last);
	if (tree->root && tree->height) {
		uint64_t mn, mx;

		validate_node(&v, tree->root, tree->height - 1, true, &mn,
			      &mx);
		if (mx != tree->root_last)
			VFAIL(&v, tree->root, "root_last %#" PRIx64
			      ", tree's max last is %#" PRIx64,
			      tree->root_last, mx);
		if (v.count != tree->count)
			VFAIL(&v, tree->root, "count %zu, found %zu entries",
			      tree->count, v.count);
	}
	if (tree->finger_ok && !tree->height)
		VFAIL(&v, tree->root, "finger set in an empty tree");
	if (tree->finger_ok && tree->height &&
	    tree->finger[tree->height - 1].node != tree->root)
		VFAIL(&v, tree->root, "finger does not start at the root");
	for (unsigned int l = 1; tree->finger_ok && l < tree->height &&
	     l <= GVM_ITREE_MAX_HEIGHT - 1; l++) {
		const struct gvm_itree_step *f = &tree->finger[l];

		if (f->idx >= f->node->nr ||
		    f->node->child[f->idx] != tree->finger[l - 1].node)
			VFAIL(&v, f->node, "finger: slot %u does not lead to "
			      "the finger's node at level %u", f->idx, l - 1);
	}
	if (tree->finger_ok && tree->height &&
	    tree->finger[0].idx > tree->finger[0].node->nr)
		VFAIL(&v, tree->finger[0].node, "finger: leaf slot %u of %u",
		      tree->finger[0].idx, tree->finger[0].node->nr);
	for (n = tree->pool; n && pool_nr <= tree->pool_nr; n = n->child[0])
		pool_nr++;
	if (pool_nr != tree->pool_nr)
		VFAIL(&v, tree->pool, "pool_nr %zu, pool list has %s%zu",
		      tree->pool_nr, n ? "more than " : "", pool_nr);
	return v.err;
}
