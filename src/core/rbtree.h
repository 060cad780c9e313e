/* SPDX-License-Identifier: MIT */
/*
 * Intrusive red-black tree (internal API).
 *
 * The tree never compares keys: the caller descends to the place of a new
 * node itself (it knows its key type) and hands the link it found to
 * gvm__rb_insert(), which links the node and rebalances.  The tree keeps
 * its leftmost and rightmost nodes, so first/last are O(1), and insert
 * takes O(1) extra steps to keep them.  The design and the invariants are at
 * the top of rbtree.c.
 *
 * Locking: none.  The owner of the tree serialises every call on it.
 */
#ifndef GVM_CORE_RBTREE_H
#define GVM_CORE_RBTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gvm/types.h>

/*
 * A node: three words.  The colour lives in bit 0 of the parent pointer
 * (nodes are pointer-aligned), which keeps nodes small: the buddy
 * allocator embeds one in every block and is bound by cache misses.
 */
struct gvm_rb_node {
	uintptr_t parent_colour;	/* parent (NULL for the root) | red */
	struct gvm_rb_node *left;	/* smaller keys, NULL if none */
	struct gvm_rb_node *right;	/* larger keys, NULL if none */
};

struct gvm_rb_root {
	struct gvm_rb_node *root;	/* NULL when empty */
	struct gvm_rb_node *first;	/* leftmost node, NULL when empty */
	struct gvm_rb_node *last;	/* rightmost node, NULL when empty */
	size_t count;			/* nodes in the tree */
};

#define GVM_RB_ROOT_INIT { NULL, NULL, NULL, 0 }

static inline struct gvm_rb_node *gvm__rb_parent(const struct gvm_rb_node *n)
{
	return (struct gvm_rb_node *)(n->parent_colour & ~(uintptr_t)1);
}

/* Colour accessors (NULL leaves are black); setting is for tests. */
static inline bool gvm__rb_is_red(const struct gvm_rb_node *n)
{
	return n && (n->parent_colour & 1);
}

static inline void gvm__rb_set_red(struct gvm_rb_node *n, bool red)
{
	n->parent_colour = (n->parent_colour & ~(uintptr_t)1) | (uintptr_t)red;
}

static inline void gvm__rb_init(struct gvm_rb_root *t)
{
	t->root = t->first = t->last = NULL;
	t->count = 0;
}

static inline bool gvm__rb_empty(const struct gvm_rb_root *t)
{
	return t->root == NULL;
}

static inline struct gvm_rb_node *gvm__rb_first(const struct gvm_rb_root *t)
{
	return t->first;
}

static inline struct gvm_rb_node *gvm__rb_last(const struct gvm_rb_root *t)
{
	return t->last;
}

/*
 * Links @node as the child of @parent at @link (&parent->left or
 * &parent->right, or &t->root with @parent NULL when the tree is empty)
 * and rebalances.  The caller found @link by descending with its own key
 * comparison; equal keys may go either way but then their order is the
 * caller's business.  Never fails, never allocates.  O(log n).
 */
void gvm__rb_insert(struct gvm_rb_root *t, struct gvm_rb_node *node,
		    struct gvm_rb_node *parent, struct gvm_rb_node **link);

/* Unlinks @node (which must be in @t) and rebalances.  O(log n). */
void gvm__rb_erase(struct gvm_rb_root *t, struct gvm_rb_node *node);

/* In-order successor / predecessor, NULL at the end.  Amortised O(1). */
struct gvm_rb_node *gvm__rb_next(const struct gvm_rb_node *node);
struct gvm_rb_node *gvm__rb_prev(const struct gvm_rb_node *node);

/*
 * Checks the invariants listed in rbtree.c: parent links, a black root, no
 * red node with a red child, the same number of black nodes on every path
 * from the root to a NULL leaf, count, first and last; with @less non-NULL
 * also that an in-order walk is sorted (no node less than its
 * predecessor).  Returns 0, or -EUCLEAN after printing what is wrong to
 * stderr.  O(n).
 */
int gvm__rb_validate(const struct gvm_rb_root *t,
		     bool (*less)(const struct gvm_rb_node *a,
				  const struct gvm_rb_node *b));

#define gvm_rb_entry(ptr, type, member) gvm_container_of(ptr, type, member)

#endif
