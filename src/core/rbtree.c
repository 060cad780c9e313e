// SPDX-License-Identifier: MIT
/*
 * Intrusive red-black tree (API in rbtree.h).
 *
 * What it is for.  The buddy allocator keeps its free blocks of each order
 * in a tree keyed by offset, so that "the lowest (or highest) free block of
 * this order at or after (before) an address" is a descent, not a list
 * scan.  Nodes are embedded in the caller's objects, so inserting never
 * allocates and never fails: the allocator's free path depends on that.
 *
 * Shape.  A binary search tree with parent pointers (the colour in their
 * low bit, so a node is three words) and NULL leaves; the
 * caller does the key descent and passes the link it stopped at.  Colours
 * keep it balanced (height <= 2 log2(n + 1)).  The tree also remembers its
 * leftmost and rightmost nodes: the buddy allocator's unrestricted
 * bottom-up and top-down searches read them in O(1).
 *
 * Invariants (checked by gvm__rb_validate()).  For every node x, with
 * x->parent and x->red read from parent_colour:
 *
 *	x->left->parent = x,  x->right->parent = x	(when non-NULL)
 *	root->parent = NULL,  root->red = false
 *	x->red  =>  !x->left->red && !x->right->red	(NULL is black)
 *	bh(x->left) = bh(x->right)	where bh(NULL) = 1 and
 *	bh(x) = bh(x->left) + (x->red ? 0 : 1)
 *	count = |nodes|,  first = leftmost,  last = rightmost
 *	(with a comparator) in-order walk is non-decreasing
 *
 * Insert links a red node, then repairs a red-red violation upwards:
 * recolour while the uncle is red, else one or two rotations end it.
 * Erase replaces a node with two children by its successor, and if a black
 * node left the tree, walks the "extra black" up, fixing it with at most
 * three rotations.  These are the textbook algorithms, with NULL leaves:
 * the parent of a NULL "x" is carried alongside it.
 *
 * Locking: none; the owner serialises all calls.
 *
 * Example (keys are uint64_t in struct item { uint64_t key;
 * struct gvm_rb_node rb; }):
 *
 *	struct gvm_rb_node **link = &t->root, *parent = NULL;
 *	while (*link) {
 *		parent = *link;
 *		link = key < gvm_rb_entry(parent, struct item, rb)->key ?
 *		       &parent->left : &parent->right;
 *	}
 *	gvm__rb_insert(t, &it->rb, parent, link);
 *
 * What it does not do: no key comparison of its own, no augmentation, no
 * concurrent readers, no duplicate detection.
 */
#include "core/rbtree.h"

#include <errno.h>
#include <stdio.h>

#include "core/debug.h"

#define parent_of gvm__rb_parent
#define is_red gvm__rb_is_red
#define set_red gvm__rb_set_red

static inline void set_parent(struct gvm_rb_node *n, struct gvm_rb_node *p)
{
	n->parent_colour = (uintptr_t)p | (n->parent_colour & 1);
}

/* Makes @new take @old's place under @old's parent (or as the root). */
static inline void replace_child(struct gvm_rb_root *t,
				 struct gvm_rb_node *old,
				 struct gvm_rb_node *new,
				 struct gvm_rb_node *parent)
{
	if (!parent)
		t->root = new;
	else if (parent->left == old)
		parent->left = new;
	else
		parent->right = new;
}

/*
 *	  x              y
 *	 / \            / \
 *	a   y    =>    x   c
 *	   / \        / \
 *	  b   c      a   b
 */
static void rotate_left(struct gvm_rb_root *t, struct gvm_rb_node *x)
{
	struct gvm_rb_node *y = x->right, *p = parent_of(x);

	x->right = y->left;
	if (y->left)
		set_parent(y->left, x);
	set_parent(y, p);
	replace_child(t, x, y, p);
	y->left = x;
	set_parent(x, y);
}

/* The mirror image of rotate_left(). */
static void rotate_right(struct gvm_rb_root *t, struct gvm_rb_node *x)
{
	struct gvm_rb_node *y = x->left, *p = parent_of(x);

	x->left = y->right;
	if (y->right)
		set_parent(y->right, x);
	set_parent(y, p);
	replace_child(t, x, y, p);
	y->right = x;
	set_parent(x, y);
}

void gvm__rb_insert(struct gvm_rb_root *t, struct gvm_rb_node *node,
		    struct gvm_rb_node *parent, struct gvm_rb_node **link)
{
	struct gvm_rb_node *z = node, *p;

	gvm_assert(*link == NULL);
	node->parent_colour = (uintptr_t)parent | 1;	/* red */
	node->left = node->right = NULL;
	*link = node;
	t->count++;
	if (!t->first || (parent == t->first && link == &parent->left))
		t->first = node;
	if (!t->last || (parent == t->last && link == &parent->right))
		t->last = node;

	while ((p = parent_of(z)) && is_red(p)) {
		/* p is red, so it is not the root: g exists and is black. */
		struct gvm_rb_node *g = parent_of(p), *u;

		if (p == g->left) {
			u = g->right;
			if (is_red(u)) {
				set_red(p, false);
				set_red(u, false);
				set_red(g, true);
				z = g;
				continue;
			}
			if (z == p->right) {
				rotate_left(t, p);
				z = p;
				p = parent_of(z);
			}
			set_red(p, false);
			set_red(g, true);
			rotate_right(t, g);
		} else {
			u = g->left;
			if (is_red(u)) {
				set_red(p, false);
				set_red(u, false);
				set_red(g, true);
				z = g;
				continue;
			}
			if (z == p->left) {
				rotate_right(t, p);
				z = p;
				p = parent_of(z);
			}
			set_red(p, false);
			set_red(g, true);
			rotate_left(t, g);
		}
		break;
	}
	set_red(t->root, false);
}

static struct gvm_rb_node *leftmost(struct gvm_rb_node *n)
{
	while (n->left)
		n = n->left;
	return n;
}

static struct gvm_rb_node *rightmost(struct gvm_rb_node *n)
{
	while (n->right)
		n = n->right;
	return n;
}

struct gvm_rb_node *gvm__rb_next(const struct gvm_rb_node *node)
{
	const struct gvm_rb_node *p;

	if (node->right)
		return leftmost(node->right);
	while ((p = parent_of(node)) && node == p->right)
		node = p;
	return (struct gvm_rb_node *)p;
}

struct gvm_rb_node *gvm__rb_prev(const struct gvm_rb_node *node)
{
	const struct gvm_rb_node *p;

	if (node->left)
		return rightmost(node->left);
	while ((p = parent_of(node)) && node == p->left)
		node = p;
	return (struct gvm_rb_node *)p;
}

/*
 * Removes one black from the path through @x (possibly NULL), whose parent
 * is @xp: the subtree at x has one black fewer than its sibling's.
 */
static void erase_fixup(struct gvm_rb_root *t, struct gvm_rb_node *x,
			struct gvm_rb_node *xp)
{
	while (x != t->root && !is_red(x)) {
		struct gvm_rb_node *w;

		if (x == xp->left) {
			w = xp->right;	/* non-NULL: its side is black-heavier */
			if (is_red(w)) {
				set_red(w, false);
				set_red(xp, true);
				rotate_left(t, xp);
				w = xp->right;
			}
			if (!is_red(w->left) && !is_red(w->right)) {
				set_red(w, true);
				x = xp;
				xp = parent_of(x);
				continue;
			}
			if (!is_red(w->right)) {
				set_red(w->left, false);
				set_red(w, true);
				rotate_right(t, w);
				w = xp->right;
			}
			set_red(w, is_red(xp));
			set_red(xp, false);
			set_red(w->right, false);
			rotate_left(t, xp);
		} else {
			w = xp->left;
			if (is_red(w)) {
				set_red(w, false);
				set_red(xp, true);
				rotate_right(t, xp);
				w = xp->left;
			}
			if (!is_red(w->left) && !is_red(w->right)) {
				set_red(w, true);
				x = xp;
				xp = parent_of(x);
				continue;
			}
			if (!is_red(w->left)) {
				set_red(w->right, false);
				set_red(w, true);
				rotate_left(t, w);
				w = xp->left;
			}
			set_red(w, is_red(xp));
			set_red(xp, false);
			set_red(w->left, false);
			rotate_right(t, xp);
		}
		x = t->root;
		break;
	}
	if (x)
		set_red(x, false);
}

void gvm__rb_erase(struct gvm_rb_root *t, struct gvm_rb_node *z)
{
	struct gvm_rb_node *x, *xp, *zp = parent_of(z);
	bool removed_red;

	gvm_assert(t->count > 0);
	if (t->first == z)
		t->first = gvm__rb_next(z);
	if (t->last == z)
		t->last = gvm__rb_prev(z);
	t->count--;

	if (!z->left || !z->right) {
		/* z itself leaves; its only child (or NULL) takes its place. */
		x = z->left ? z->left : z->right;
		xp = zp;
		removed_red = is_red(z);
		replace_child(t, z, x, xp);
		if (x)
			set_parent(x, xp);
	} else {
		/* The successor y (no left child) leaves its place for z's. */
		struct gvm_rb_node *y = leftmost(z->right);

		removed_red = is_red(y);
		x = y->right;
		if (parent_of(y) == z) {
			xp = y;
		} else {
			xp = parent_of(y);
			xp->left = x;
			if (x)
				set_parent(x, xp);
			y->right = z->right;
			set_parent(z->right, y);
		}
		replace_child(t, z, y, zp);
		y->parent_colour = z->parent_colour;	/* z's parent and colour */
		y->left = z->left;
		set_parent(z->left, y);
	}
	if (!removed_red)
		erase_fixup(t, x, xp);
	z->parent_colour = 0;
	z->left = z->right = NULL;
}

/* ---- validation ---------------------------------------------------------- */

struct vstate {
	const struct gvm_rb_root *t;
	bool (*less)(const struct gvm_rb_node *, const struct gvm_rb_node *);
	const struct gvm_rb_node *prev;	/* previous node in order */
	const struct gvm_rb_node *first;	/* first node in order */
	size_t count;
	int err;
};

#define VFAIL(v, node, ...)                                               \
	do {                                                              \
		fprintf(stderr, "rbtree %p: node %p: ", (const void *)(v)->t, \
			(const void *)(node));                            \
		fprintf(stderr, __VA_ARGS__);                             \
		fputc('\n', stderr);                                      \
		(v)->err = -EUCLEAN;                                      \
	} while (0)

/* Returns the black height of @n (1 for NULL); depth bounds recursion. */
static unsigned int validate_node(struct vstate *v, const struct gvm_rb_node *n,
				  unsigned int depth)
{
	unsigned int lh, rh;

	if (!n)
		return 1;
	if (depth > 128) {
		VFAIL(v, n, "depth > 128 (cycle?)");
		return 1;
	}
	if (n->left && parent_of(n->left) != n)
		VFAIL(v, n, "left child's parent is %p",
		      (const void *)parent_of(n->left));
	if (n->right && parent_of(n->right) != n)
		VFAIL(v, n, "right child's parent is %p",
		      (const void *)parent_of(n->right));
	if (is_red(n) && (is_red(n->left) || is_red(n->right)))
		VFAIL(v, n, "red node with a red child");
	lh = validate_node(v, n->left, depth + 1);
	if (!v->first)
		v->first = n;
	if (v->prev && v->less && v->less(n, v->prev))
		VFAIL(v, n, "out of order after %p", (const void *)v->prev);
	v->prev = n;
	v->count++;
	rh = validate_node(v, n->right, depth + 1);
	if (lh != rh)
		VFAIL(v, n, "black heights differ: left %u, right %u", lh, rh);
	return lh + (is_red(n) ? 0 : 1);
}

int gvm__rb_validate(const struct gvm_rb_root *t,
		     bool (*less)(const struct gvm_rb_node *a,
				  const struct gvm_rb_node *b))
{
	struct vstate v = { .t = t, .less = less };

	if (t->root && parent_of(t->root))
		VFAIL(&v, t->root, "root has a parent");
	if (is_red(t->root))
		VFAIL(&v, t->root, "root is red");
	validate_node(&v, t->root, 0);
	if (v.count != t->count)
		VFAIL(&v, t->root, "count %zu, tree holds %zu", t->count,
		      v.count);
	if (t->first != v.first)
		VFAIL(&v, t->first, "first is not the leftmost %p",
		      (const void *)v.first);
	if (t->last != v.prev)
		VFAIL(&v, t->last, "last is not the rightmost %p",
		      (const void *)v.prev);
	return v.err;
}
