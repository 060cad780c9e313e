// SPDX-License-Identifier: MIT
/*
 * Buddy allocator of device memory (API in buddy.h).
 *
 * What it does.  A device-memory region [0, size) is handed out in blocks
 * of chunk_size << order bytes, each aligned to its own size.  Page tables
 * (src/pt) and buffer objects (src/vm) both take device memory from it and
 * both sit below SVM, so it lives in src/core.  The region need not be a
 * power of two: it is tiled by roots of decreasing power-of-two sizes (6
 * GiB = a 4 GiB root at 0 and a 2 GiB root at 4 GiB), so every root, and
 * every block under it, is aligned to its size.
 *
 * Blocks form a binary tree under each root.  A block is in one state:
 *
 *	FREE       in free_tree[order]; nobody uses its bytes
 *	ALLOCATED  a caller owns it (on the caller's list through ->link)
 *	SPLIT      its bytes are exactly those of its two halves, ->left at
 *	           offset and ->right at offset + size / 2, of order - 1
 *	UNUSED     not in any tree: spare metadata in a slab
 *
 * Invariants (checked by gvm__buddy_validate()).  S(b) = chunk << b.order.
 *
 *	roots:   root[0].offset = 0,  root[i+1].offset = root[i].offset + S(root[i]),
 *	         S(root[i]) > S(root[i+1]),  sum S(root[i]) = size
 *	split:   b.left.offset = b.offset,  b.right.offset = b.offset + S(b)/2,
 *	         b.left.order = b.right.order = b.order - 1,  children's parent = b
 *	so every byte of [0, size) is in exactly one leaf (FREE or ALLOCATED)
 *	merged:  b FREE and b.parent != NULL  =>  buddy(b) is not FREE
 *	trees:   free_tree[k] = { b : b FREE, b.order = k }, sorted by offset,
 *	         and a valid red-black tree
 *	stats:   free_bytes   = sum { S(b) : b FREE }
 *	         nr_allocated = |{ b : b ALLOCATED }|
 *	         nr_pairs - nr_free_pairs = |{ b : b SPLIT }|,  b.right = b.left + 1
 *
 * Given the set of ALLOCATED blocks the shape is unique: a block is SPLIT
 * iff an allocated block lies strictly inside it.  That is why a failed
 * allocation can be undone by freeing what it took and merging what it
 * split: the result is exactly the shape before the call.
 *
 * Allocation.  A request of n bytes (rounded to chunks, then to the
 * minimum block size m) is cut greedily into the largest power-of-two
 * pieces first (12 KiB = 8 KiB + 4 KiB); when no free block of an order
 * fits, the remaining bytes are asked for in blocks of the next order down,
 * never below m.  Each piece of order o is found by find_free():
 *
 *	bottom-up  for k = o, o+1, ...: the first block of free_tree[k] that
 *	           holds an o-aligned o-block inside [start, end), lowest
 *	           address first; the smallest k that has one wins (best fit,
 *	           so big blocks are split last)
 *	top-down   over every k >= o, the block whose highest o-block inside
 *	           [start, end) is highest
 *
 * Per order this is O(log n), not a scan: blocks of order k are aligned to
 * S(k), so only the block containing `start` (bottom-up) or `end` (top-down)
 * can fail to fit while a later one fits; the search is a lower-bound
 * descent plus at most two steps.  Unrestricted searches read the tree's
 * cached first / last node, O(1).  The found block is split down to order
 * o, keeping the half that holds the target o-block.
 *
 * Contiguous allocation looks for a free o-block with S(o) >= n (o =
 * ceil(log2(n))), as above, and takes exactly [x, x + n) of it (top-down:
 * its last n bytes).  That "trims" the block: the unused tail stays free,
 * in blocks as large as alignment allows, and the run comes back as one or
 * more blocks in address order.  If no such block exists (fragmentation,
 * or n exceeds the largest root), a walk of the block trees in address
 * order looks for any free run of n bytes starting m-aligned in range,
 * which may span several free blocks; this fallback is O(blocks).
 *
 * Errors.  Every split takes metadata for its two halves, which may fail
 * (-ENOMEM).  A failure at any point frees the blocks taken so far and
 * merges the splits made, leaving the allocator exactly as it was (see
 * above).  Freeing never allocates: the halves of a split are one "pair"
 * from a slab, and a merged pair goes back to its slab's stack of free
 * pairs, which has room for all of them.  A pair keeps a block and its
 * buddy on adjacent cache lines, and a split takes its pair from the slab
 * of the block it splits when it can, so related metadata stays close.
 *
 * Performance.  A search is O(log n) per order (O(1) when unrestricted),
 * and a split descends with the kept half out of the trees, so an
 * allocation costs about one tree insert per level split and a free one
 * erase per level merged.  Blocks are 48 bytes (the tree colour is packed
 * into the parent pointer).  With hundreds of thousands of blocks the
 * metadata exceeds the caches and every level is a few cache misses: that,
 * not the searches, bounds the fragmentation benchmark (bench_buddy.c),
 * and is why pairs are placed near the block they split (see "Pairs").
 *
 * Locking: none.  The owner (a device's memory region) serialises every
 * call, queries included.
 *
 * Example:
 *
 *	struct gvm_buddy mm;
 *	struct gvm_list blocks, *pos;
 *
 *	gvm__buddy_init(&mm, 6ull << 30, 0);		// 6 GiB, 4 KiB chunks
 *	gvm_list_init(&blocks);
 *	err = gvm__buddy_alloc(&mm, 0, mm.size, 3 << 20, 64 << 10,
 *			       GVM_BUDDY_TOPDOWN, &blocks);	// 2M + 1M
 *	gvm_list_for_each(pos, &blocks)			// -ENOSPC possible
 *		use(gvm__buddy_block_offset(gvm_list_entry(pos,
 *				struct gvm_buddy_block, link)));
 *	gvm__buddy_free_list(&mm, &blocks);
 *	gvm__buddy_fini(&mm);
 *
 * What it does not do: no locking; no clearing or tracking of memory
 * contents (dirty/clear state) and no eviction; no notion of "visible"
 * (CPU-mappable) memory beyond range restriction; it does not reserve or
 * free arbitrary address ranges other than through alloc/free; the
 * contiguous fallback walk is linear in the number of blocks.
 */
#include "core/buddy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/debug.h"
#include "core/list.h"

long gvm__buddy_fail_alloc_after = -1;

static inline uint64_t bsize(const struct gvm_buddy *mm, unsigned int order)
{
	return mm->chunk_size << order;
}

static inline uint64_t bend(const struct gvm_buddy *mm,
			    const struct gvm_buddy_block *b)
{
	return b->offset + bsize(mm, b->order);
}

static inline unsigned int ilog2_u64(uint64_t x)
{
	return 63u - (unsigned int)__builtin_clzll(x);
}

static inline bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static inline struct gvm_buddy_block *rb_block(const struct gvm_rb_node *n)
{
	return n ? gvm_rb_entry(n, struct gvm_buddy_block, rb) : NULL;
}

static inline struct gvm_buddy_block *buddy_of(const struct gvm_buddy_block *b)
{
	const struct gvm_buddy_block *p = b->parent;

	if (!p)
		return NULL;
	return p->left == b ? p->right : p->left;
}

/* ---- metadata ------------------------------------------------------------ */

/*
 * Pairs.  Pairs of blocks live in 64 KiB slabs aligned to their size, and each
 * slab keeps a stack of its own free pairs (room for all of them, so
 * putting a pair back never allocates).  A split takes its pair from the
 * slab of the block being split when it can: a subtree's metadata then
 * clusters in few slabs, so the blocks that a free or a tree operation
 * touches (parents, buddies, neighbours at nearby offsets) tend to share
 * pages and cache lines even after long use.  Slabs are returned to the
 * heap only by fini.
 */
#define PAIR_BYTES (2 * sizeof(struct gvm_buddy_block))	/* 96 bytes */
#define SLAB_BYTES 65536u
#define SLAB_PAIRS 660u
#define SLAB_HDR 1408u		/* header size, rounded to cache lines */

struct gvm_buddy_slab {
	struct gvm_buddy_slab *next;		/* all slabs (for fini) */
	struct gvm_buddy_slab *next_free;	/* slabs with free pairs */
	struct gvm_buddy_slab *prev_free;
	uint32_t nr_free;			/* entries in free_idx[] */
	uint16_t free_idx[SLAB_PAIRS];		/* stack of free pairs */
};

_Static_assert(sizeof(struct gvm_buddy_block) <= 48,
	       "blocks are kept small: the allocator is bound by cache misses");
_Static_assert(sizeof(struct gvm_buddy_slab) <= SLAB_HDR, "slab header");
_Static_assert(SLAB_HDR + SLAB_PAIRS * 2 * 48 <= SLAB_BYTES, "slab size");

static inline struct gvm_buddy_slab *slab_of(const void *p)
{
	return (struct gvm_buddy_slab *)((uintptr_t)p &
					 ~(uintptr_t)(SLAB_BYTES - 1));
}

static inline struct gvm_buddy_block *slab_pair(struct gvm_buddy_slab *s,
						unsigned int i)
{
	return (struct gvm_buddy_block *)((char *)s + SLAB_HDR +
					  (size_t)i * PAIR_BYTES);
}

static bool meta_fail(void)
{
	if (__builtin_expect(gvm__buddy_fail_alloc_after >= 0, 0)) {
		if (gvm__buddy_fail_alloc_after == 0)
			return true;
		gvm__buddy_fail_alloc_after--;
	}
	return false;
}

static void free_slabs_add(struct gvm_buddy *mm, struct gvm_buddy_slab *s)
{
	s->prev_free = NULL;
	s->next_free = mm->free_slabs;
	if (mm->free_slabs)
		mm->free_slabs->prev_free = s;
	mm->free_slabs = s;
}

static void free_slabs_del(struct gvm_buddy *mm, struct gvm_buddy_slab *s)
{
	if (s->prev_free)
		s->prev_free->next_free = s->next_free;
	else
		mm->free_slabs = s->next_free;
	if (s->next_free)
		s->next_free->prev_free = s->prev_free;
}

/* Adds a slab of free pairs.  0 or -ENOMEM (nothing changed). */
static int grow(struct gvm_buddy *mm)
{
	struct gvm_buddy_slab *s;

	s = gvm__alloc_inject() ? NULL : gvm__heap_aligned_alloc(SLAB_BYTES, SLAB_BYTES);
	if (!s)
		return -ENOMEM;
	s->next = mm->slabs;
	mm->slabs = s;
	/* Stacked high to low, so they pop in address order. */
	s->nr_free = SLAB_PAIRS;
	for (unsigned int i = 0; i < SLAB_PAIRS; i++) {
		struct gvm_buddy_block *pair = slab_pair(s, i);

		pair[0].state = pair[1].state = GVM_BUDDY_UNUSED;
		s->free_idx[i] = (uint16_t)(SLAB_PAIRS - 1 - i);
	}
	free_slabs_add(mm, s);
	mm->nr_pairs += SLAB_PAIRS;
	mm->nr_free_pairs += SLAB_PAIRS;
	return 0;
}

/*
 * Two adjacent blocks for the halves of @b, from @b's slab if it has room
 * (a root is not in a slab); NULL on failure.
 */
static struct gvm_buddy_block *pair_get(struct gvm_buddy *mm,
					const struct gvm_buddy_block *b)
{
	struct gvm_buddy_slab *s = b->parent ? slab_of(b) : NULL;

	if (meta_fail())
		return NULL;
	if (!s || !s->nr_free) {
		if (!mm->free_slabs && grow(mm))
			return NULL;
		s = mm->free_slabs;
	}
	if (--s->nr_free == 0)
		free_slabs_del(mm, s);
	mm->nr_free_pairs--;
	return slab_pair(s, s->free_idx[s->nr_free]);
}

static void pair_put(struct gvm_buddy *mm, struct gvm_buddy_block *pair)
{
	struct gvm_buddy_slab *s = slab_of(pair);
	size_t i = (size_t)((char *)pair - ((char *)s + SLAB_HDR)) / PAIR_BYTES;

	gvm_assert(s->nr_free < SLAB_PAIRS);
	pair[0].state = pair[1].state = GVM_BUDDY_UNUSED;
	if (s->nr_free++ == 0)
		free_slabs_add(mm, s);
	s->free_idx[s->nr_free - 1] = (uint16_t)i;
	mm->nr_free_pairs++;
}

/* ---- free trees ---------------------------------------------------------- */

static void tree_insert(struct gvm_buddy *mm, struct gvm_buddy_block *b)
{
	struct gvm_rb_root *t = &mm->free_tree[b->order];
	struct gvm_rb_node **link, *parent = NULL;

	b->state = GVM_BUDDY_FREE;
	/* Freeing at either end of the tree is common: skip the descent. */
	if (t->first && b->offset < rb_block(t->first)->offset) {
		parent = t->first;
		link = &parent->left;
	} else if (t->last && b->offset > rb_block(t->last)->offset) {
		parent = t->last;
		link = &parent->right;
	} else {
		link = &t->root;
		while (*link) {
			parent = *link;
			link = b->offset < rb_block(parent)->offset ?
				       &parent->left : &parent->right;
		}
	}
	gvm__rb_insert(t, &b->rb, parent, link);
}

static void tree_erase(struct gvm_buddy *mm, struct gvm_buddy_block *b)
{
	gvm_assert(b->state == GVM_BUDDY_FREE);
	gvm__rb_erase(&mm->free_tree[b->order], &b->rb);
}

/* The free block of order @k with the lowest offset >= @off, or NULL. */
static struct gvm_buddy_block *tree_ceil(const struct gvm_buddy *mm,
					 unsigned int k, uint64_t off)
{
	struct gvm_rb_node *n = mm->free_tree[k].root, *best = NULL;

	while (n) {
		if (rb_block(n)->offset >= off) {
			best = n;
			n = n->left;
		} else {
			n = n->right;
		}
	}
	return rb_block(best);
}

/* The free block of order @k with the highest offset < @off, or NULL. */
static struct gvm_buddy_block *tree_below(const struct gvm_buddy *mm,
					  unsigned int k, uint64_t off)
{
	struct gvm_rb_node *n = mm->free_tree[k].root, *best = NULL;

	while (n) {
		if (rb_block(n)->offset < off) {
			best = n;
			n = n->right;
		} else {
			n = n->left;
		}
	}
	return rb_block(best);
}

/* ---- split, take, free --------------------------------------------------- */

/* Splits FREE @b into two FREE halves.  -ENOMEM leaves @b as it was. */
static int split(struct gvm_buddy *mm, struct gvm_buddy_block *b)
{
	struct gvm_buddy_block *l, *r;

	gvm_assert(b->state == GVM_BUDDY_FREE && b->order > 0);
	l = pair_get(mm, b);
	if (!l)
		return -ENOMEM;
	r = l + 1;
	tree_erase(mm, b);
	b->state = GVM_BUDDY_SPLIT;
	l->order = r->order = (uint8_t)(b->order - 1);
	l->offset = b->offset;
	r->offset = b->offset + bsize(mm, l->order);
	l->parent = r->parent = b;
	b->left = l;
	b->right = r;
	tree_insert(mm, l);
	tree_insert(mm, r);
	return 0;
}

/* Detached (FREE, in no tree) @b becomes ALLOCATED, at the tail of @list. */
static void take_detached(struct gvm_buddy *mm, struct gvm_buddy_block *b,
			  struct gvm_list *list)
{
	b->state = GVM_BUDDY_ALLOCATED;
	mm->free_bytes -= bsize(mm, b->order);
	mm->nr_allocated++;
	gvm_list_add_tail(&b->link, list);
}

/* FREE @b becomes ALLOCATED and goes to the tail of @list. */
static void take(struct gvm_buddy *mm, struct gvm_buddy_block *b,
		 struct gvm_list *list)
{
	tree_erase(mm, b);
	take_detached(mm, b, list);
}

/*
 * Splits detached @b and returns, detached, the half holding @x; the other
 * half goes into its tree.  Going down several levels this way skips an
 * insert and an erase per level.  NULL (-ENOMEM) leaves @b as it was.
 */
static struct gvm_buddy_block *split_detached(struct gvm_buddy *mm,
					      struct gvm_buddy_block *b,
					      uint64_t x)
{
	struct gvm_buddy_block *l = pair_get(mm, b), *r, *keep;

	if (!l)
		return NULL;
	r = l + 1;
	b->state = GVM_BUDDY_SPLIT;
	l->order = r->order = (uint8_t)(b->order - 1);
	l->offset = b->offset;
	r->offset = b->offset + bsize(mm, l->order);
	l->parent = r->parent = b;
	b->left = l;
	b->right = r;
	keep = x < r->offset ? l : r;
	keep->state = GVM_BUDDY_FREE;
	tree_insert(mm, keep == l ? r : l);
	return keep;
}

/*
 * @b (in no tree) becomes free: merge it with its buddy while the buddy is
 * free, then insert what is left.
 */
static void release(struct gvm_buddy *mm, struct gvm_buddy_block *b)
{
	struct gvm_buddy_block *buddy;

	while ((buddy = buddy_of(b)) && buddy->state == GVM_BUDDY_FREE) {
		struct gvm_buddy_block *p = b->parent;

		tree_erase(mm, buddy);
		pair_put(mm, p->left);
		b = p;
	}
	tree_insert(mm, b);
}

/* FREE @b (in its tree) merges with free buddies, after a failed split. */
static void merge_up(struct gvm_buddy *mm, struct gvm_buddy_block *b)
{
	tree_erase(mm, b);
	release(mm, b);
}

void gvm__buddy_free_block(struct gvm_buddy *mm, struct gvm_buddy_block *b)
{
	GVM_BUG_ON(b->state != GVM_BUDDY_ALLOCATED);
	gvm_list_del(&b->link);
	mm->free_bytes += bsize(mm, b->order);
	mm->nr_allocated--;
	release(mm, b);
}

void gvm__buddy_free_list(struct gvm_buddy *mm, struct gvm_list *blocks)
{
	struct gvm_list *pos, *tmp;

	gvm_list_for_each_safe(pos, tmp, blocks)
		gvm__buddy_free_block(mm, gvm_list_entry(pos,
					struct gvm_buddy_block, link));
	gvm_list_init(blocks);
}

/* ---- init / fini --------------------------------------------------------- */

int gvm__buddy_init(struct gvm_buddy *mm, uint64_t size, uint64_t chunk_size)
{
	uint64_t off = 0, left;
	unsigned int n = 0;

	memset(mm, 0, sizeof(*mm));
	if (!chunk_size)
		chunk_size = GVM_BUDDY_DEFAULT_CHUNK;
	if (!is_pow2(chunk_size) || chunk_size < GVM_BUDDY_DEFAULT_CHUNK)
		return -EINVAL;
	size &= ~(chunk_size - 1);
	if (!size)
		return -EINVAL;
	mm->size = size;
	mm->chunk_size = chunk_size;
	mm->chunk_lg2 = ilog2_u64(chunk_size);
	mm->max_order = ilog2_u64(size) - mm->chunk_lg2;
	for (unsigned int k = 0; k < GVM_BUDDY_MAX_ORDERS; k++)
		gvm__rb_init(&mm->free_tree[k]);
	mm->nr_roots = (unsigned int)__builtin_popcountll(size);
	mm->roots = gvm__calloc(mm->nr_roots, sizeof(*mm->roots));
	if (!mm->roots)
		return -ENOMEM;
	for (left = size; left; n++) {
		unsigned int lg2 = ilog2_u64(left);
		struct gvm_buddy_block *b = meta_fail() ? NULL :
					     gvm__malloc(sizeof(*b));

		if (!b)
			goto err_free_roots;
		memset(b, 0, sizeof(*b));
		b->offset = off;
		b->order = (uint8_t)(lg2 - mm->chunk_lg2);
		mm->roots[n] = b;
		tree_insert(mm, b);
		off += 1ull << lg2;
		left -= 1ull << lg2;
	}
	mm->free_bytes = size;
	return 0;

err_free_roots:
	for (unsigned int i = 0; i < n; i++)
		gvm__free(mm->roots[i]);
	gvm__free(mm->roots);
	memset(mm, 0, sizeof(*mm));
	return -ENOMEM;
}

/* Warns about allocated blocks left behind; the memory is in the slabs. */
static void check_subtree(const struct gvm_buddy_block *b)
{
	for (;;) {
		GVM_WARN_ON(b->state == GVM_BUDDY_ALLOCATED);
		if (b->state != GVM_BUDDY_SPLIT)
			return;
		check_subtree(b->left);
		b = b->right;
	}
}

void gvm__buddy_fini(struct gvm_buddy *mm)
{
	for (unsigned int i = 0; i < mm->nr_roots; i++) {
		check_subtree(mm->roots[i]);
		gvm__free(mm->roots[i]);
	}
	gvm__free(mm->roots);
	while (mm->slabs) {
		struct gvm_buddy_slab *s = mm->slabs;

		mm->slabs = s->next;
		gvm__free(s);
	}
	memset(mm, 0, sizeof(*mm));
}

/* ---- search -------------------------------------------------------------- */

/*
 * Lowest o-aligned address x with [x, x + S(o)) inside both @b and
 * [start, end); false if none.
 */
static bool fit_low(const struct gvm_buddy *mm, const struct gvm_buddy_block *b,
		    unsigned int o, uint64_t start, uint64_t end, uint64_t *x)
{
	uint64_t so = bsize(mm, o);
	uint64_t lo = b->offset > start ? b->offset : start;
	uint64_t hi = bend(mm, b) < end ? bend(mm, b) : end;
	uint64_t a = (lo + so - 1) & ~(so - 1);	/* lo < 2^64 - so: no wrap */

	if (a < lo || a >= hi || hi - a < so)
		return false;
	*x = a;
	return true;
}

/* Highest such x. */
static bool fit_high(const struct gvm_buddy *mm,
		     const struct gvm_buddy_block *b, unsigned int o,
		     uint64_t start, uint64_t end, uint64_t *x)
{
	uint64_t so = bsize(mm, o);
	uint64_t lo = b->offset > start ? b->offset : start;
	uint64_t hi = bend(mm, b) < end ? bend(mm, b) : end;
	uint64_t a;

	if (hi <= lo || hi - lo < so)
		return false;
	a = (hi - so) & ~(so - 1);
	if (a < lo)
		return false;
	*x = a;
	return true;
}

/* Bottom-up candidate in free_tree[k] for an o-block; see the top. */
static struct gvm_buddy_block *scan_low(const struct gvm_buddy *mm,
					unsigned int k, unsigned int o,
					uint64_t start, uint64_t end,
					uint64_t *x)
{
	const struct gvm_rb_root *t = &mm->free_tree[k];
	struct gvm_buddy_block *b;

	if (!t->count || bend(mm, rb_block(t->last)) <= start)
		return NULL;	/* the tree's blocks all end below start */
	b = rb_block(t->first);
	if (b->offset >= end)
		return NULL;
	if (b->offset < start)
		b = tree_ceil(mm, k, start & ~(bsize(mm, k) - 1));
	/*
	 * The block holding start may not fit; after it, a block starting
	 * at or above start fits unless it crosses end, and then so would
	 * every later one.  A few steps at most.
	 */
	for (; b && b->offset < end; b = rb_block(gvm__rb_next(&b->rb))) {
		if (fit_low(mm, b, o, start, end, x))
			return b;
		if (b->offset >= start)
			break;
	}
	return NULL;
}

static struct gvm_buddy_block *scan_high(const struct gvm_buddy *mm,
					 unsigned int k, unsigned int o,
					 uint64_t start, uint64_t end,
					 uint64_t *x)
{
	const struct gvm_rb_root *t = &mm->free_tree[k];
	struct gvm_buddy_block *b;

	if (!t->count || rb_block(t->first)->offset >= end)
		return NULL;	/* the tree's blocks all start above end */
	b = rb_block(t->last);
	if (bend(mm, b) <= start)
		return NULL;
	if (bend(mm, b) > end)
		b = tree_below(mm, k, end);
	for (; b && bend(mm, b) > start; b = rb_block(gvm__rb_prev(&b->rb))) {
		if (fit_high(mm, b, o, start, end, x))
			return b;
		if (bend(mm, b) <= end)
			break;
	}
	return NULL;
}

/*
 * A free block of order >= @o holding a free o-aligned o-block at *@x
 * inside [start, end), chosen as described at the top; NULL if none.
 */
static struct gvm_buddy_block *find_free(const struct gvm_buddy *mm,
					 unsigned int o, uint64_t start,
					 uint64_t end, bool topdown,
					 uint64_t *x)
{
	struct gvm_buddy_block *best = NULL, *b;
	uint64_t bx = 0, cx;

	for (unsigned int k = o; k <= mm->max_order; k++) {
		if (!topdown) {
			b = scan_low(mm, k, o, start, end, x);
			if (b)
				return b;
			continue;
		}
		b = scan_high(mm, k, o, start, end, &cx);
		if (b && (!best || cx > bx)) {
			best = b;
			bx = cx;
		}
	}
	*x = bx;
	return best;
}

/*
 * Splits free @b down to the o-block at @x and takes it.  On -ENOMEM the
 * splits made here are merged back.
 */
static int take_at(struct gvm_buddy *mm, struct gvm_buddy_block *b,
		   unsigned int o, uint64_t x, struct gvm_list *list)
{
	tree_erase(mm, b);
	while (b->order > o) {
		struct gvm_buddy_block *half = split_detached(mm, b, x);

		if (!half) {
			release(mm, b);	/* merges what this call split */
			return -ENOMEM;
		}
		b = half;
	}
	gvm_assert(b->offset == x);
	take_detached(mm, b, list);
	return 0;
}

/*
 * Takes every chunk of [a, e) (all free) under @b, splitting blocks that
 * straddle its edges; blocks go to @list in address order.  On -ENOMEM,
 * *@failed is the free block that could not be split.
 */
static int take_exact(struct gvm_buddy *mm, struct gvm_buddy_block *b,
		      uint64_t a, uint64_t e, struct gvm_list *list,
		      struct gvm_buddy_block **failed)
{
	int err;

	if (bend(mm, b) <= a || b->offset >= e)
		return 0;
	if (b->state == GVM_BUDDY_FREE) {
		if (b->offset >= a && bend(mm, b) <= e) {
			take(mm, b, list);
			return 0;
		}
		err = split(mm, b);
		if (err) {
			*failed = b;
			return err;
		}
	}
	GVM_BUG_ON(b->state != GVM_BUDDY_SPLIT);
	err = take_exact(mm, b->left, a, e, list, failed);
	if (!err)
		err = take_exact(mm, b->right, a, e, list, failed);
	return err;
}

/* Free-run search state for the contiguous fallback. */
struct run {
	uint64_t lo, hi;	/* current free run [lo, hi), lo == hi: none */
	uint64_t start, end;	/* requested range */
	uint64_t size, align;	/* run length and alignment wanted */
	bool topdown;
	bool found;
	uint64_t at;		/* result */
};

static void run_visit(const struct gvm_buddy *mm,
		      const struct gvm_buddy_block *b, struct run *r)
{
	uint64_t bs = b->offset, be = bend(mm, b);

	if (r->found || be <= r->start || bs >= r->end)
		return;
	if (b->state == GVM_BUDDY_SPLIT) {
		run_visit(mm, r->topdown ? b->right : b->left, r);
		run_visit(mm, r->topdown ? b->left : b->right, r);
		return;
	}
	if (b->state != GVM_BUDDY_FREE) {
		r->lo = r->hi = 0;
		return;
	}
	if (r->lo == r->hi) {
		r->lo = bs;
		r->hi = be;
	} else if (!r->topdown) {
		r->hi = be;	/* blocks tile: bs == previous hi */
	} else {
		r->lo = bs;
	}
	uint64_t lo = r->lo > r->start ? r->lo : r->start;
	uint64_t hi = r->hi < r->end ? r->hi : r->end;
	uint64_t a;

	if (hi - lo < r->size)
		return;
	if (!r->topdown) {
		a = (lo + r->align - 1) & ~(r->align - 1);
		if (a >= lo && a <= hi && hi - a >= r->size) {
			r->at = a;
			r->found = true;
		}
	} else {
		a = (hi - r->size) & ~(r->align - 1);
		if (a >= lo) {
			r->at = a;
			r->found = true;
		}
	}
}

static int alloc_contiguous(struct gvm_buddy *mm, uint64_t start, uint64_t end,
			    uint64_t size, unsigned int min_order, bool topdown,
			    struct gvm_list *list)
{
	uint64_t chunks = size >> mm->chunk_lg2, a = 0, x;
	unsigned int o = chunks == 1 ? 0 : ilog2_u64(chunks - 1) + 1;
	struct gvm_buddy_block *b = NULL, *failed = NULL;
	int err = 0;

	if (o <= mm->max_order) {
		b = find_free(mm, o, start, end, topdown, &x);
		if (b) {
			a = topdown ? x + bsize(mm, o) - size : x;
			if (size == bsize(mm, o))
				return take_at(mm, b, o, x, list);
		}
	}
	if (!b) {
		struct run r = {
			.start = start, .end = end, .size = size,
			.align = bsize(mm, min_order), .topdown = topdown,
		};

		for (unsigned int i = 0; i < mm->nr_roots && !r.found; i++)
			run_visit(mm, mm->roots[topdown ? mm->nr_roots - 1 - i :
						     i], &r);
		if (!r.found)
			return -ENOSPC;
		a = r.at;
	}
	for (unsigned int i = 0; i < mm->nr_roots && !err; i++)
		err = take_exact(mm, mm->roots[i], a, a + size, list, &failed);
	if (err) {
		merge_up(mm, failed);
		gvm__buddy_free_list(mm, list);
	}
	return err;
}

int gvm__buddy_alloc(struct gvm_buddy *mm, uint64_t start, uint64_t end,
		     uint64_t size, uint64_t min_block_size, unsigned int flags,
		     struct gvm_list *blocks)
{
	uint64_t cmask = mm->chunk_size - 1, left;
	unsigned int min_order, cap;
	bool topdown = flags & GVM_BUDDY_TOPDOWN;
	struct gvm_list taken;
	int err = 0;

	if (!min_block_size)
		min_block_size = mm->chunk_size;
	if (!size || (flags & ~GVM_BUDDY_FLAGS_ALL) || !is_pow2(min_block_size) ||
	    min_block_size < mm->chunk_size || (start & cmask) ||
	    (end & cmask) || start >= end || end > mm->size)
		return -EINVAL;
	if (size > UINT64_MAX - (min_block_size - 1))
		return -EINVAL;
	size = (size + min_block_size - 1) & ~(min_block_size - 1);
	if (size > end - start)
		return -EINVAL;
	min_order = ilog2_u64(min_block_size) - mm->chunk_lg2;

	gvm_list_init(&taken);
	if (flags & GVM_BUDDY_CONTIGUOUS) {
		err = alloc_contiguous(mm, start, end, size, min_order, topdown,
				       &taken);
		goto out;
	}

	/* Greedy: largest pieces first; cap = largest order still worth
	 * trying (an order that failed fails again within this call). */
	cap = mm->max_order;
	for (left = size; left;) {
		unsigned int o = ilog2_u64(left) - mm->chunk_lg2;
		struct gvm_buddy_block *b;
		uint64_t x;

		if (o > cap)
			o = cap;
		for (;;) {
			b = find_free(mm, o, start, end, topdown, &x);
			if (b || o == min_order)
				break;
			cap = --o;
		}
		if (!b) {
			err = -ENOSPC;
			break;
		}
		err = take_at(mm, b, o, x, &taken);
		if (err)
			break;
		left -= bsize(mm, o);
	}
	if (err)
		gvm__buddy_free_list(mm, &taken);
out:
	if (err)
		return err;
	mm->nr_allocs++;
	gvm_list_splice_tail(&taken, blocks);
	return 0;
}

/* ---- statistics and validation ------------------------------------------- */

void gvm__buddy_stats(const struct gvm_buddy *mm, struct gvm_buddy_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->total_bytes = mm->size;
	st->free_bytes = mm->free_bytes;
	st->nr_allocs = mm->nr_allocs;
	st->nr_allocated_blocks = mm->nr_allocated;
	st->max_order = mm->max_order;
	for (unsigned int k = 0; k <= mm->max_order && mm->size; k++) {
		st->free_blocks[k] = mm->free_tree[k].count;
		if (st->free_blocks[k])
			st->largest_free_bytes = bsize(mm, k);
	}
}

struct vstate {
	const struct gvm_buddy *mm;
	uint64_t free_bytes;
	uint64_t nr_allocated;
	uint64_t nr_split;	/* = pairs in use */
	uint64_t nr_free[GVM_BUDDY_MAX_ORDERS];
	uint64_t blocks;
	int err;
};

#define VFAIL(v, b, ...)                                                    \
	do {                                                                \
		fprintf(stderr, "buddy %p: block %p: ", (const void *)(v)->mm, \
			(const void *)(b));                                 \
		fprintf(stderr, __VA_ARGS__);                               \
		fputc('\n', stderr);                                        \
		(v)->err = -EUCLEAN;                                        \
	} while (0)

static void validate_block(struct vstate *v, const struct gvm_buddy_block *b,
			   const struct gvm_buddy_block *parent,
			   uint64_t offset, unsigned int order)
{
	const struct gvm_buddy *mm = v->mm;

	if (!b) {
		VFAIL(v, b, "missing block at %#" PRIx64 " order %u", offset,
		      order);
		return;
	}
	if (++v->blocks > (mm->size >> mm->chunk_lg2) * 2 + 64) {
		VFAIL(v, b, "more blocks than chunks allow (cycle?)");
		return;
	}
	if (b->parent != parent)
		VFAIL(v, b, "parent %p, expected %p", (const void *)b->parent,
		      (const void *)parent);
	if (b->offset != offset || b->order != order) {
		VFAIL(v, b, "at %#" PRIx64 " order %u, expected %#" PRIx64
		      " order %u", b->offset, b->order, offset, order);
		return;
	}
	switch (b->state) {
	case GVM_BUDDY_FREE:
		v->free_bytes += bsize(mm, order);
		v->nr_free[order]++;
		if (parent && buddy_of(b)->state == GVM_BUDDY_FREE)
			VFAIL(v, b, "free, and so is its buddy %p at %#" PRIx64
			      ": not merged", (const void *)buddy_of(b),
			      buddy_of(b)->offset);
		break;
	case GVM_BUDDY_ALLOCATED:
		v->nr_allocated++;
		break;
	case GVM_BUDDY_SPLIT:
		if (!order) {
			VFAIL(v, b, "order-0 block is split");
			return;
		}
		v->nr_split++;
		if (b->right != b->left + 1)
			VFAIL(v, b, "halves %p and %p are not a pair",
			      (const void *)b->left, (const void *)b->right);
		validate_block(v, b->left, b, offset, order - 1);
		validate_block(v, b->right, b,
			       offset + bsize(mm, order - 1), order - 1);
		break;
	default:
		VFAIL(v, b, "bad state %u", b->state);
	}
}

static bool block_less(const struct gvm_rb_node *a, const struct gvm_rb_node *b)
{
	return rb_block(a)->offset < rb_block(b)->offset;
}

int gvm__buddy_validate(const struct gvm_buddy *mm)
{
	struct vstate v = { .mm = mm };
	uint64_t off = 0;
	unsigned int prev_order = GVM_BUDDY_MAX_ORDERS;

	if (!is_pow2(mm->chunk_size) || mm->chunk_size < GVM_BUDDY_DEFAULT_CHUNK ||
	    mm->chunk_size != 1ull << mm->chunk_lg2 ||
	    (mm->size & (mm->chunk_size - 1)) || !mm->size) {
		VFAIL(&v, NULL, "bad geometry: size %#" PRIx64 " chunk %#"
		      PRIx64, mm->size, mm->chunk_size);
		return v.err;
	}
	for (unsigned int i = 0; i < mm->nr_roots; i++) {
		const struct gvm_buddy_block *r = mm->roots[i];

		if (!r || r->order >= prev_order ||
		    r->order > mm->max_order || r->offset != off) {
			VFAIL(&v, r, "root %u out of place", i);
			return v.err;
		}
		validate_block(&v, r, NULL, off, r->order);
		prev_order = r->order;
		off += bsize(mm, r->order);
	}
	if (off != mm->size)
		VFAIL(&v, NULL, "roots cover %#" PRIx64 " of %#" PRIx64, off,
		      mm->size);
	if (mm->roots[0]->order != mm->max_order)
		VFAIL(&v, NULL, "max_order %u, largest root's %u",
		      mm->max_order, mm->roots[0]->order);
	for (unsigned int k = 0; k < GVM_BUDDY_MAX_ORDERS; k++) {
		const struct gvm_rb_root *t = &mm->free_tree[k];

		if (gvm__rb_validate(t, block_less))
			VFAIL(&v, NULL, "free tree %u is not a valid rbtree", k);
		if (t->count != v.nr_free[k])
			VFAIL(&v, NULL, "free tree %u holds %zu, %" PRIu64
			      " blocks of that order are free", k, t->count,
			      v.nr_free[k]);
		for (struct gvm_rb_node *n = gvm__rb_first(t); n;
		     n = gvm__rb_next(n)) {
			const struct gvm_buddy_block *b = rb_block(n);

			if (b->state != GVM_BUDDY_FREE || b->order != k)
				VFAIL(&v, b, "in free tree %u: state %u order %u",
				      k, b->state, b->order);
		}
	}
	if (v.free_bytes != mm->free_bytes)
		VFAIL(&v, NULL, "free_bytes %" PRIu64 ", blocks hold %" PRIu64,
		      mm->free_bytes, v.free_bytes);
	if (mm->nr_pairs - mm->nr_free_pairs != v.nr_split)
		VFAIL(&v, NULL, "%" PRIu64 " pairs in use, %" PRIu64
		      " split blocks", mm->nr_pairs - mm->nr_free_pairs,
		      v.nr_split);
	if (v.nr_allocated != mm->nr_allocated)
		VFAIL(&v, NULL, "nr_allocated %" PRIu64 ", found %" PRIu64,
		      mm->nr_allocated, v.nr_allocated);
	return v.err;
}
