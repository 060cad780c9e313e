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
 * every block under it, is aligned to its size.  An aligned block lies
 * inside one root iff it ends at or below size (a block crossing a root
 * boundary would have to reach past size), so "the k-block at offset x
 * exists" is just x + S(k) <= size, and roots need no record.
 *
 * Blocks form a binary tree under each root; the leaves tile the region
 * and each is FREE or ALLOCATED; an inner block is split.  No block has a
 * record.  The state is two bitmaps per order k (struct gvm_buddy_order),
 * indexed by slot = offset / S(k):
 *
 *	free[k]  bit set iff that k-block is a FREE leaf; 64-ary summary
 *	         levels above it (a bit per word below: "not zero")
 *	used[k]  bit set iff that k-block is an ALLOCATED leaf
 *
 * so a block is split iff a set bit lies strictly below it.  An ALLOCATED
 * block also has a handle (struct gvm_buddy_block: offset, order, and the
 * caller's list link), which is what the caller holds; handles live in
 * slabs and are reused, the lowest slab's spares first (see "Handles"),
 * never freed before fini.
 *
 * Invariants (checked by gvm__buddy_validate()).  S(k) = chunk << k, and
 * "set" means set in free[k] or used[k] at the block's slot.
 *
 *	bits:    no bit beyond n[k] (= blocks of order k inside [0, size));
 *	         free[k] and used[k] disjoint; every summary bit says whether
 *	         its word below is non-zero
 *	leaves:  no set block lies inside another set block, and the set
 *	         blocks' sizes sum to size: the leaves tile [0, size) exactly
 *	merged:  a FREE block whose parent exists has a buddy that is not FREE
 *	counts:  nr_free[k] = |free[k]|,  free_bytes = sum S(k) |free[k]|,
 *	         nr_allocated = sum |used[k]|
 *	handles: the ALLOCATED handles are nr_allocated, each on a set used
 *	         bit of its order; the others are the spares
 *
 * Given the set of ALLOCATED blocks the shape is unique: a block is split
 * iff an allocated block lies strictly inside it.  That is why a failed
 * allocation can be undone by freeing what it took: the frees merge what
 * it split, and the result is exactly the shape before the call.
 *
 * Allocation.  A request of n bytes (rounded to chunks, then to the
 * minimum block size m) is cut greedily into the largest power-of-two
 * pieces first (12 KiB = 8 KiB + 4 KiB); when no free block of an order
 * fits, the remaining bytes are asked for in blocks of the next order down,
 * never below m.  Each piece of order o is found by find_free():
 *
 *	bottom-up  for k = o, o+1, ...: the lowest free k-block that holds
 *	           an o-aligned o-block inside [start, end); the smallest k
 *	           that has one wins (best fit, so big blocks are split last)
 *	top-down   over every k >= o, the block whose highest o-block inside
 *	           [start, end) is highest
 *
 * Per order this is a find-next-set-bit (find-previous for top-down) from
 * the slot of start (end), O(levels): blocks of order k are aligned to
 * S(k), so only the block containing start (end) can fail to fit while a
 * later one fits; at most two lookups.  The found block is split down to
 * order o, keeping the half that holds the target o-block: a split clears
 * one free bit and sets the other half's, a take sets a used bit.
 *
 * Contiguous allocation looks for a free o-block with S(o) >= n (o =
 * ceil(log2(n))), as above, and takes exactly [x, x + n) of it (top-down:
 * its last n bytes).  That "trims" the block: the unused tail stays free,
 * in blocks as large as alignment allows, and the run comes back as one or
 * more blocks in address order (the aligned pieces of [x, x + n), each of
 * which lies in one free leaf).  If no such block exists (fragmentation,
 * or n exceeds the largest root), a walk of the leaves in address order
 * looks for any free run of n bytes starting m-aligned in range, which may
 * span several free blocks; this fallback is O(leaves x orders).
 *
 * Errors.  Only handles are allocated while allocating (a slab when the
 * spares run out), and a handle is taken before the bitmaps change: the
 * greedy loop takes one per piece, so its -ENOMEM frees the pieces taken
 * so far (see above); a contiguous run counts its pieces and takes all its
 * handles first.  Freeing never allocates: the handle goes back on its
 * slab's spare stack.
 *
 * Performance.  Free, split and merge touch one bit (and rarely a summary
 * word) per level, and the bitmaps are small: for 4 GiB of 4 KiB chunks,
 * 2^20 + 2^19 + ... bits per kind, 512 KiB in all, and the maps of the
 * orders a workload uses are far smaller (order 4, 64 KiB blocks: 8 KiB +
 * 8 KiB).  The working set is the maps of the orders in use plus the
 * caller's handles, 32 bytes per allocated block, so it stays in L2 where
 * a record per block (free and split ones too) did not; and handles are
 * reused lowest slab first, so the live ones stay dense.
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
 * contiguous fallback walk is linear in the number of leaves.
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

#define NO_SLOT UINT64_MAX

static inline uint64_t bsize(const struct gvm_buddy *mm, unsigned int order)
{
	return mm->chunk_size << order;
}

static inline unsigned int ilog2_u64(uint64_t x)
{
	return 63u - (unsigned int)__builtin_clzll(x);
}

static inline bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static inline uint64_t slot_of(const struct gvm_buddy *mm, uint64_t off,
			       unsigned int k)
{
	return off >> (mm->chunk_lg2 + k);
}

static inline bool bit_test(const uint64_t *w, uint64_t i)
{
	return w[i >> 6] >> (i & 63) & 1;
}

/* ---- free maps ----------------------------------------------------------- */

static inline uint64_t *map_word(const struct gvm_buddy_order *f,
				 unsigned int level, uint64_t w)
{
	return &f->free[f->level_off[level] + w];
}

/* Sets bit @i of level 0 and the summary bits above it. */
static void map_set(struct gvm_buddy_order *f, uint64_t i)
{
	for (unsigned int l = 0; l < f->levels; l++, i >>= 6) {
		uint64_t *w = map_word(f, l, i >> 6), old = *w;

		*w = old | 1ull << (i & 63);
		if (old)
			break;		/* the levels above already say so */
	}
}

static void map_clear(struct gvm_buddy_order *f, uint64_t i)
{
	for (unsigned int l = 0; l < f->levels; l++, i >>= 6) {
		uint64_t *w = map_word(f, l, i >> 6);

		*w &= ~(1ull << (i & 63));
		if (*w)
			break;
	}
}

/*
 * The lowest set bit >= @i, or NO_SLOT: up the levels while the rest of a
 * word is empty, then down through the first set bit of each level.
 */
static uint64_t map_next(const struct gvm_buddy_order *f, uint64_t i)
{
	unsigned int l = 0;

	for (;;) {
		uint64_t wi = i >> 6, w;

		if (wi >= f->level_words[l])
			return NO_SLOT;
		w = *map_word(f, l, wi) & (~0ull << (i & 63));
		if (w) {
			i = wi << 6 | (uint64_t)__builtin_ctzll(w);
			break;
		}
		if (++l == f->levels)
			return NO_SLOT;
		i = wi + 1;
	}
	while (l-- > 0)
		i = i << 6 | (uint64_t)__builtin_ctzll(*map_word(f, l, i));
	return i;
}

/* The highest set bit < @i, or NO_SLOT. */
static uint64_t map_prev(const struct gvm_buddy_order *f, uint64_t i)
{
	unsigned int l = 0;

	if (i > f->n)
		i = f->n;
	if (!i)
		return NO_SLOT;
	i--;
	for (;;) {
		uint64_t wi = i >> 6;
		uint64_t w = *map_word(f, l, wi) & (~0ull >> (63 - (i & 63)));

		if (w) {
			i = wi << 6 | (63u - (uint64_t)__builtin_clzll(w));
			break;
		}
		if (!wi || ++l == f->levels)
			return NO_SLOT;
		i = wi - 1;
	}
	while (l-- > 0)
		i = i << 6 |
		    (63u - (uint64_t)__builtin_clzll(*map_word(f, l, i)));
	return i;
}

static inline bool is_free(const struct gvm_buddy *mm, uint64_t off,
			   unsigned int k)
{
	return bit_test(mm->orders[k].free, slot_of(mm, off, k));
}

static inline bool is_used(const struct gvm_buddy *mm, uint64_t off,
			   unsigned int k)
{
	return bit_test(mm->orders[k].used, slot_of(mm, off, k));
}

/* The k-block at @off becomes a FREE leaf. */
static inline void free_add(struct gvm_buddy *mm, uint64_t off, unsigned int k)
{
	struct gvm_buddy_order *f = &mm->orders[k];

	map_set(f, slot_of(mm, off, k));
	f->nr_free++;
}

/* The FREE k-block at @off stops being a leaf or stops being free. */
static inline void free_del(struct gvm_buddy *mm, uint64_t off, unsigned int k)
{
	struct gvm_buddy_order *f = &mm->orders[k];

	gvm_assert(is_free(mm, off, k) && f->nr_free > 0);
	map_clear(f, slot_of(mm, off, k));
	f->nr_free--;
}

static inline void used_flip(struct gvm_buddy *mm, uint64_t off,
			     unsigned int k)
{
	uint64_t i = slot_of(mm, off, k);

	mm->orders[k].used[i >> 6] ^= 1ull << (i & 63);
}

/*
 * Lays out orders[0..max_order] and, per order, its free map levels then
 * its used bits, in one zeroed allocation.  0 or -ENOMEM.
 */
static int maps_init(struct gvm_buddy *mm)
{
	const size_t hdr = (mm->max_order + 1) * sizeof(struct gvm_buddy_order);
	struct gvm_buddy_order ord[GVM_BUDDY_MAX_ORDERS];
	uint64_t words = 0, *w;

	memset(ord, 0, sizeof(ord));
	for (unsigned int k = 0; k <= mm->max_order; k++) {
		struct gvm_buddy_order *f = &ord[k];
		uint64_t lw = slot_of(mm, mm->size, k), rel = 0;

		f->n = lw;
		do {
			lw = (lw + 63) / 64;
			GVM_BUG_ON(f->levels == GVM_BUDDY_MAP_LEVELS);
			f->level_off[f->levels] = rel;
			f->level_words[f->levels] = lw;
			f->levels++;
			rel += lw;
		} while (lw > 1);
		words += rel + f->level_words[0];	/* free[], used[] */
	}
	if (words > (SIZE_MAX - hdr) / 8)
		return -ENOMEM;
	mm->map_bytes = hdr + words * 8;
	mm->map_mem = gvm__calloc(1, (size_t)mm->map_bytes);
	if (!mm->map_mem)
		return -ENOMEM;
	mm->orders = mm->map_mem;
	w = (uint64_t *)(void *)((char *)mm->map_mem + hdr);
	for (unsigned int k = 0; k <= mm->max_order; k++) {
		struct gvm_buddy_order *f = &ord[k];
		unsigned int top = f->levels - 1;

		f->free = w;
		f->used = w + f->level_off[top] + f->level_words[top];
		w = f->used + f->level_words[0];
		mm->orders[k] = *f;
	}
	return 0;
}

/* ---- handles ------------------------------------------------------------- */

/*
 * Handles come from slabs that grow from 32 to 2048 handles (64 KiB), so a
 * small allocator stays small.  Each slab keeps a stack of its spare
 * handles (through link.next), and a handle is taken from the lowest-
 * numbered slab that has one (spare_bits, find-first-set): the allocated
 * handles gather in the first slabs, a dense working set, instead of
 * scattering over every slab ever grown; and the handle freed last is
 * reused first when nothing lower is spare, so it is still in the cache.
 */
struct gvm_buddy_hslab {
	struct gvm_buddy_block *spare;		/* stack of spare handles */
	uint32_t nr_spare;
	uint32_t n;				/* handles in h[] */
	struct gvm_buddy_block h[];
};

_Static_assert(sizeof(struct gvm_buddy_block) <= 32,
	       "handles are kept small: the allocator is bound by cache misses");

static bool meta_fail(void)
{
	if (__builtin_expect(gvm__buddy_fail_alloc_after >= 0, 0)) {
		if (gvm__buddy_fail_alloc_after == 0)
			return true;
		gvm__buddy_fail_alloc_after--;
	}
	return false;
}

static inline struct gvm_buddy_block *spare_next(const struct gvm_buddy_block *b)
{
	return (struct gvm_buddy_block *)(void *)b->link.next;
}

static void handle_put(struct gvm_buddy *mm, struct gvm_buddy_block *b)
{
	struct gvm_buddy_hslab *s = mm->slabs[b->slab];

	b->state = GVM_BUDDY_UNUSED;
	b->link.prev = NULL;
	b->link.next = (struct gvm_list *)(void *)s->spare;
	s->spare = b;
	if (s->nr_spare++ == 0)
		mm->spare_bits[b->slab >> 6] |= 1ull << (b->slab & 63);
}

/* Adds a slab of spare handles.  0 or -ENOMEM (nothing changed). */
static int grow(struct gvm_buddy *mm)
{
	const unsigned int i = mm->nr_slabs;
	size_t n = (size_t)32 << (i < 6 ? i : 6);
	struct gvm_buddy_hslab *s;

	if (i == UINT32_MAX ||
	    GVM_GROW(mm->slabs, mm->slabs_cap, (size_t)i + 1) ||
	    GVM_GROW(mm->spare_bits, mm->spare_words, (size_t)i / 64 + 1))
		return -ENOMEM;
	s = gvm__malloc(sizeof(*s) + n * sizeof(s->h[0]));
	if (!s)
		return -ENOMEM;
	if (i % 64 == 0)
		mm->spare_bits[i / 64] = 0;	/* a new word */
	s->spare = NULL;
	s->nr_spare = 0;
	s->n = (uint32_t)n;
	mm->slabs[i] = s;
	mm->nr_slabs++;
	mm->nr_handles += n;
	for (size_t j = n; j-- > 0;) {	/* they pop in address order */
		s->h[j].slab = i;
		handle_put(mm, &s->h[j]);
	}
	return 0;
}

/* A spare handle from the lowest slab that has one, or NULL (-ENOMEM). */
static struct gvm_buddy_block *handle_get(struct gvm_buddy *mm)
{
	struct gvm_buddy_hslab *s;
	struct gvm_buddy_block *b;
	unsigned int i = mm->nr_slabs;

	if (meta_fail())
		return NULL;
	for (unsigned int w = 0; w < (mm->nr_slabs + 63) / 64; w++)
		if (mm->spare_bits[w]) {
			i = w * 64 + (unsigned int)__builtin_ctzll(
						mm->spare_bits[w]);
			break;
		}
	if (i == mm->nr_slabs && grow(mm))
		return NULL;
	s = mm->slabs[i];
	b = s->spare;
	s->spare = spare_next(b);
	if (--s->nr_spare == 0)
		mm->spare_bits[i >> 6] &= ~(1ull << (i & 63));
	return b;
}

/* ---- take, free ---------------------------------------------------------- */

/*
 * Splits the FREE k-block at @off down to the o-block at @x and hands
 * that to handle @h, which goes to the tail of @list.  Cannot fail.
 */
static void take_at(struct gvm_buddy *mm, uint64_t off, unsigned int k,
		    unsigned int o, uint64_t x, struct gvm_buddy_block *h,
		    struct gvm_list *list)
{
	free_del(mm, off, k);
	while (k > o) {
		uint64_t half = bsize(mm, --k);

		if (x >= off + half) {
			free_add(mm, off, k);
			off += half;
		} else {
			free_add(mm, off + half, k);
		}
	}
	gvm_assert(off == x);
	used_flip(mm, x, o);
	mm->free_bytes -= bsize(mm, o);
	mm->nr_allocated++;
	h->offset = x;
	h->order = (uint8_t)o;
	h->state = GVM_BUDDY_ALLOCATED;
	gvm_list_add_tail(&h->link, list);
}

/*
 * The k-block at @off (a leaf no more) becomes free: merge it with its
 * buddy while the buddy is free, then set what is left.
 */
static void release(struct gvm_buddy *mm, uint64_t off, unsigned int k)
{
	for (; k < mm->max_order; k++) {
		uint64_t s = bsize(mm, k);

		if ((off & ~(2 * s - 1)) + 2 * s > mm->size ||
		    !is_free(mm, off ^ s, k))
			break;	/* no parent (past a root), or buddy busy */
		free_del(mm, off ^ s, k);
		off &= ~(2 * s - 1);
	}
	free_add(mm, off, k);
}

void gvm__buddy_free_block(struct gvm_buddy *mm, struct gvm_buddy_block *b)
{
	GVM_BUG_ON(b->state != GVM_BUDDY_ALLOCATED || b->order > mm->max_order ||
		   b->offset + bsize(mm, b->order) > mm->size ||
		   !is_used(mm, b->offset, b->order));
	gvm_list_del(&b->link);
	used_flip(mm, b->offset, b->order);
	mm->free_bytes += bsize(mm, b->order);
	mm->nr_allocated--;
	release(mm, b->offset, b->order);
	handle_put(mm, b);
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
	uint64_t off = 0;

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
	if (meta_fail() || maps_init(mm)) {
		memset(mm, 0, sizeof(*mm));
		return -ENOMEM;
	}
	while (off < size) {		/* the roots, largest first */
		unsigned int lg2 = ilog2_u64(size - off);

		free_add(mm, off, lg2 - mm->chunk_lg2);
		off += 1ull << lg2;
	}
	mm->free_bytes = size;
	return 0;
}

void gvm__buddy_fini(struct gvm_buddy *mm)
{
	GVM_WARN_ON(mm->nr_allocated);	/* their handles die here */
	for (unsigned int i = 0; i < mm->nr_slabs; i++)
		gvm__free(mm->slabs[i]);
	gvm__free(mm->slabs);
	gvm__free(mm->spare_bits);
	gvm__free(mm->map_mem);
	memset(mm, 0, sizeof(*mm));
}

enum gvm_buddy_state gvm__buddy_leaf(const struct gvm_buddy *mm,
				     uint64_t offset, uint64_t *leaf_offset,
				     unsigned int *order)
{
	for (unsigned int k = 0; k <= mm->max_order; k++) {
		uint64_t q = offset & ~(bsize(mm, k) - 1);
		enum gvm_buddy_state st;

		if (q + bsize(mm, k) > mm->size)
			break;
		st = is_free(mm, q, k) ? GVM_BUDDY_FREE :
		     is_used(mm, q, k) ? GVM_BUDDY_ALLOCATED : GVM_BUDDY_UNUSED;
		if (st != GVM_BUDDY_UNUSED) {
			*leaf_offset = q;
			*order = k;
			return st;
		}
	}
	return GVM_BUDDY_UNUSED;	/* corrupt: validate() says why */
}

/* ---- search -------------------------------------------------------------- */

/*
 * Lowest o-aligned address x with [x, x + S(o)) inside both the k-block at
 * @off and [start, end); false if none.
 */
static bool fit_low(const struct gvm_buddy *mm, uint64_t off, unsigned int k,
		    unsigned int o, uint64_t start, uint64_t end, uint64_t *x)
{
	uint64_t so = bsize(mm, o), be = off + bsize(mm, k);
	uint64_t lo = off > start ? off : start;
	uint64_t hi = be < end ? be : end;
	uint64_t a = (lo + so - 1) & ~(so - 1);	/* lo < 2^64 - so: no wrap */

	if (a < lo || a >= hi || hi - a < so)
		return false;
	*x = a;
	return true;
}

/* Highest such x. */
static bool fit_high(const struct gvm_buddy *mm, uint64_t off, unsigned int k,
		     unsigned int o, uint64_t start, uint64_t end, uint64_t *x)
{
	uint64_t so = bsize(mm, o), be = off + bsize(mm, k);
	uint64_t lo = off > start ? off : start;
	uint64_t hi = be < end ? be : end;
	uint64_t a;

	if (hi <= lo || hi - lo < so)
		return false;
	a = (hi - so) & ~(so - 1);
	if (a < lo)
		return false;
	*x = a;
	return true;
}

/* Bottom-up candidate among the free k-blocks for an o-block; see the top. */
static bool scan_low(const struct gvm_buddy *mm, unsigned int k,
		     unsigned int o, uint64_t start, uint64_t end,
		     uint64_t *off, uint64_t *x)
{
	const struct gvm_buddy_order *f = &mm->orders[k];
	const unsigned int sh = mm->chunk_lg2 + k;

	if (!f->nr_free)
		return false;
	/*
	 * The block holding start may not fit; after it, a block starting
	 * at or above start fits unless it crosses end, and then so would
	 * every later one.  Two lookups at most.
	 */
	for (uint64_t i = map_next(f, start >> sh); i != NO_SLOT;
	     i = map_next(f, i + 1)) {
		uint64_t b = i << sh;

		if (b >= end)
			break;
		if (fit_low(mm, b, k, o, start, end, x)) {
			*off = b;
			return true;
		}
		if (b >= start)
			break;
	}
	return false;
}

static bool scan_high(const struct gvm_buddy *mm, unsigned int k,
		      unsigned int o, uint64_t start, uint64_t end,
		      uint64_t *off, uint64_t *x)
{
	const struct gvm_buddy_order *f = &mm->orders[k];
	const unsigned int sh = mm->chunk_lg2 + k;

	if (!f->nr_free)
		return false;
	for (uint64_t i = map_prev(f, ((end - 1) >> sh) + 1); i != NO_SLOT;
	     i = map_prev(f, i)) {
		uint64_t b = i << sh, be = b + bsize(mm, k);

		if (be <= start)
			break;
		if (fit_high(mm, b, k, o, start, end, x)) {
			*off = b;
			return true;
		}
		if (be <= end)
			break;
	}
	return false;
}

/* Where a free o-block was found: inside the k-block at off, at x. */
struct found {
	uint64_t off, x;
	unsigned int k;
};

/*
 * A free block of order >= @o holding a free o-aligned o-block inside
 * [start, end), chosen as described at the top; false if none.
 */
static bool find_free(const struct gvm_buddy *mm, unsigned int o,
		      uint64_t start, uint64_t end, bool topdown,
		      struct found *r)
{
	bool any = false;

	for (unsigned int k = o; k <= mm->max_order; k++) {
		uint64_t off, x;

		if (!topdown) {
			if (scan_low(mm, k, o, start, end, &off, &x)) {
				*r = (struct found){ off, x, k };
				return true;
			}
			continue;
		}
		if (scan_high(mm, k, o, start, end, &off, &x) &&
		    (!any || x > r->x)) {
			*r = (struct found){ off, x, k };
			any = true;
		}
	}
	return any;
}

/* ---- contiguous ---------------------------------------------------------- */

/* Order of the largest aligned piece of [a, e) starting at a. */
static unsigned int piece_order(const struct gvm_buddy *mm, uint64_t a,
				uint64_t e)
{
	unsigned int o = ilog2_u64(e - a) - mm->chunk_lg2;

	if (a) {
		unsigned int al = (unsigned int)__builtin_ctzll(a) -
				  mm->chunk_lg2;

		if (al < o)
			o = al;
	}
	return o;
}

/*
 * Takes [a, e) (all free) as its aligned pieces, in address order, with
 * the handles on @hs (exactly one per piece).  Each piece lies in one free
 * leaf: a fully free aligned block cannot hold two leaves, as the deepest
 * split block among them would have two free halves.
 */
static void take_run(struct gvm_buddy *mm, uint64_t a, uint64_t e,
		     struct gvm_list *hs, struct gvm_list *list)
{
	while (a < e) {
		unsigned int o = piece_order(mm, a, e), k;
		struct gvm_buddy_block *h =
			gvm_list_first_entry(hs, struct gvm_buddy_block, link);
		uint64_t off;

		GVM_BUG_ON(gvm__buddy_leaf(mm, a, &off, &k) != GVM_BUDDY_FREE ||
			   k < o);
		gvm_list_del(&h->link);
		take_at(mm, off, k, o, a, h, list);
		a += bsize(mm, o);
	}
	gvm_assert(gvm_list_empty(hs));
}

/* Free-run search for the contiguous fallback: a walk of the leaves. */
static bool find_run(const struct gvm_buddy *mm, uint64_t start, uint64_t end,
		     uint64_t size, uint64_t align, bool topdown, uint64_t *at)
{
	uint64_t lo = 0, hi = 0;	/* current free run, lo == hi: none */
	uint64_t pos = topdown ? end - 1 : start;

	for (;;) {
		uint64_t off, l, h, a;
		unsigned int k;
		enum gvm_buddy_state st = gvm__buddy_leaf(mm, pos, &off, &k);
		uint64_t be = off + bsize(mm, k);

		GVM_BUG_ON(st == GVM_BUDDY_UNUSED);
		if (st != GVM_BUDDY_FREE) {
			lo = hi = 0;
		} else if (lo == hi) {
			lo = off;
			hi = be;
		} else if (!topdown) {
			hi = be;	/* leaves tile: off == previous hi */
		} else {
			lo = off;
		}
		l = lo > start ? lo : start;
		h = hi < end ? hi : end;
		if (lo != hi && h - l >= size) {
			if (!topdown) {
				a = (l + align - 1) & ~(align - 1);
				if (a >= l && a <= h && h - a >= size) {
					*at = a;
					return true;
				}
			} else {
				a = (h - size) & ~(align - 1);
				if (a >= l) {
					*at = a;
					return true;
				}
			}
		}
		if (topdown ? off <= start : be >= end)
			return false;
		pos = topdown ? off - 1 : be;
	}
}

static int alloc_contiguous(struct gvm_buddy *mm, uint64_t start, uint64_t end,
			    uint64_t size, unsigned int min_order, bool topdown,
			    struct gvm_list *list)
{
	uint64_t chunks = size >> mm->chunk_lg2, a;
	unsigned int o = chunks == 1 ? 0 : ilog2_u64(chunks - 1) + 1;
	struct gvm_list hs;
	struct found f;

	if (o <= mm->max_order && find_free(mm, o, start, end, topdown, &f)) {
		a = topdown ? f.x + bsize(mm, o) - size : f.x;
		if (size == bsize(mm, o)) {
			struct gvm_buddy_block *h = handle_get(mm);

			if (!h)
				return -ENOMEM;
			take_at(mm, f.off, f.k, o, f.x, h, list);
			return 0;
		}
	} else if (!find_run(mm, start, end, size, bsize(mm, min_order),
			     topdown, &a)) {
		return -ENOSPC;
	}
	/* One handle per piece, all before anything changes. */
	gvm_list_init(&hs);
	for (uint64_t p = a; p < a + size;
	     p += bsize(mm, piece_order(mm, p, a + size))) {
		struct gvm_buddy_block *h = handle_get(mm);

		if (!h) {
			while (!gvm_list_empty(&hs)) {
				h = gvm_list_first_entry(&hs,
					struct gvm_buddy_block, link);
				gvm_list_del(&h->link);
				handle_put(mm, h);
			}
			return -ENOMEM;
		}
		gvm_list_add_tail(&h->link, &hs);
	}
	take_run(mm, a, a + size, &hs, list);
	return 0;
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
		struct gvm_buddy_block *h;
		struct found f;
		bool ok;

		if (o > cap)
			o = cap;
		for (;;) {
			ok = find_free(mm, o, start, end, topdown, &f);
			if (ok || o == min_order)
				break;
			cap = --o;
		}
		if (!ok) {
			err = -ENOSPC;
			break;
		}
		h = handle_get(mm);
		if (!h) {
			err = -ENOMEM;
			break;
		}
		take_at(mm, f.off, f.k, o, f.x, h, &taken);
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
		st->free_blocks[k] = mm->orders[k].nr_free;
		if (st->free_blocks[k])
			st->largest_free_bytes = bsize(mm, k);
	}
}

#define VFAIL(mm, err, ...)                                                 \
	do {                                                                \
		fprintf(stderr, "buddy %p: ", (const void *)(mm));          \
		fprintf(stderr, __VA_ARGS__);                               \
		fputc('\n', stderr);                                        \
		(err) = -EUCLEAN;                                           \
	} while (0)

/* Summary levels and the bits past n of order @k. */
static int validate_maps(const struct gvm_buddy *mm, unsigned int k)
{
	const struct gvm_buddy_order *f = &mm->orders[k];
	uint64_t words = f->level_words[0];
	int err = 0;

	if (f->n != slot_of(mm, mm->size, k) || words != (f->n + 63) / 64) {
		VFAIL(mm, err, "order %u: %" PRIu64 " slots in %" PRIu64
		      " words", k, f->n, words);
		return err;
	}
	if (f->n & 63) {
		uint64_t past = ~0ull << (f->n & 63);

		if ((f->free[words - 1] | f->used[words - 1]) & past)
			VFAIL(mm, err, "order %u: bits past slot %" PRIu64, k,
			      f->n);
	}
	for (unsigned int l = 1; l < f->levels; l++)
		for (uint64_t j = 0; j < f->level_words[l - 1]; j++) {
			bool sum = bit_test(map_word(f, l, 0), j);

			if (sum != (*map_word(f, l - 1, j) != 0))
				VFAIL(mm, err, "order %u: summary bit %" PRIu64
				      " of level %u is %d", k, j, l, sum);
		}
	if (f->levels && f->level_words[f->levels - 1] != 1)
		VFAIL(mm, err, "order %u: top level is not one word", k);
	return err;
}

/*
 * The set block (k, @off): no set block above it, and, if FREE, a buddy
 * that is not FREE.
 */
static int validate_leaf(const struct gvm_buddy *mm, uint64_t off,
			 unsigned int k, bool free)
{
	int err = 0;

	for (unsigned int j = k + 1; j <= mm->max_order; j++) {
		uint64_t q = off & ~(bsize(mm, j) - 1);

		if (q + bsize(mm, j) > mm->size)
			break;
		if (is_free(mm, q, j) || is_used(mm, q, j)) {
			VFAIL(mm, err, "%s block %#" PRIx64 " order %u lies "
			      "inside the %s block %#" PRIx64 " order %u",
			      free ? "free" : "allocated", off, k,
			      is_free(mm, q, j) ? "free" : "allocated", q, j);
			return err;
		}
	}
	if (free && k < mm->max_order) {
		uint64_t s = bsize(mm, k);

		if ((off & ~(2 * s - 1)) + 2 * s <= mm->size &&
		    is_free(mm, off ^ s, k))
			VFAIL(mm, err, "free block %#" PRIx64 " order %u and its "
			      "buddy are not merged", off, k);
	}
	return err;
}

int gvm__buddy_validate(const struct gvm_buddy *mm)
{
	uint64_t covered = 0, free_bytes = 0, nr_used = 0, nr_h = 0, nr_spare = 0;
	int err = 0;

	if (!is_pow2(mm->chunk_size) || mm->chunk_size < GVM_BUDDY_DEFAULT_CHUNK ||
	    mm->chunk_size != 1ull << mm->chunk_lg2 ||
	    (mm->size & (mm->chunk_size - 1)) || !mm->size || !mm->orders ||
	    mm->max_order != ilog2_u64(mm->size) - mm->chunk_lg2) {
		VFAIL(mm, err, "bad geometry: size %#" PRIx64 " chunk %#"
		      PRIx64, mm->size, mm->chunk_size);
		return err;
	}
	for (unsigned int k = 0; k <= mm->max_order; k++) {
		const struct gvm_buddy_order *f = &mm->orders[k];
		uint64_t nf = 0, nu = 0;

		if (validate_maps(mm, k)) {
			err = -EUCLEAN;
			continue;
		}
		for (uint64_t w = 0; w < f->level_words[0]; w++) {
			uint64_t fw = f->free[w], uw = f->used[w];

			if (fw & uw)
				VFAIL(mm, err, "order %u word %" PRIu64
				      ": free and allocated %#" PRIx64, k, w,
				      fw & uw);
			for (uint64_t m = fw | uw; m; m &= m - 1) {
				uint64_t i = w << 6 |
					     (uint64_t)__builtin_ctzll(m);
				bool fr = fw >> (i & 63) & 1;

				if (validate_leaf(mm, i << (mm->chunk_lg2 + k),
						  k, fr))
					err = -EUCLEAN;
				covered += bsize(mm, k);
				nf += fr;
				nu += !fr;
			}
		}
		if (nf != f->nr_free)
			VFAIL(mm, err, "order %u: nr_free %" PRIu64 ", %" PRIu64
			      " bits set", k, f->nr_free, nf);
		free_bytes += nf * bsize(mm, k);
		nr_used += nu;
	}
	if (err)
		return err;
	if (covered != mm->size)
		VFAIL(mm, err, "leaves cover %#" PRIx64 " of %#" PRIx64,
		      covered, mm->size);
	if (free_bytes != mm->free_bytes)
		VFAIL(mm, err, "free_bytes %" PRIu64 ", blocks hold %" PRIu64,
		      mm->free_bytes, free_bytes);
	if (nr_used != mm->nr_allocated)
		VFAIL(mm, err, "nr_allocated %" PRIu64 ", %" PRIu64
		      " blocks allocated", mm->nr_allocated, nr_used);
	for (unsigned int j = 0; j < mm->nr_slabs; j++) {
		const struct gvm_buddy_hslab *s = mm->slabs[j];
		uint64_t spares = 0;

		for (size_t i = 0; i < s->n; i++) {
			const struct gvm_buddy_block *b = &s->h[i];

			nr_h++;
			if (b->slab != j)
				VFAIL(mm, err, "handle %p of slab %u says slab %u",
				      (const void *)b, j, b->slab);
			if (b->state == GVM_BUDDY_UNUSED)
				continue;
			if (b->state != GVM_BUDDY_ALLOCATED ||
			    b->order > mm->max_order ||
			    (b->offset & (bsize(mm, b->order) - 1)) ||
			    b->offset + bsize(mm, b->order) > mm->size ||
			    !is_used(mm, b->offset, b->order)) {
				VFAIL(mm, err, "handle %p: state %u at %#"
				      PRIx64 " order %u is no allocated block",
				      (const void *)b, b->state, b->offset,
				      b->order);
				continue;
			}
			nr_used--;
		}
		for (const struct gvm_buddy_block *b = s->spare;
		     b && spares <= s->n; b = spare_next(b)) {
			spares++;
			if (b->state != GVM_BUDDY_UNUSED || b < s->h ||
			    b >= s->h + s->n)
				VFAIL(mm, err, "spare handle %p of slab %u: "
				      "state %u", (const void *)b, j, b->state);
		}
		if (spares != s->nr_spare ||
		    bit_test(mm->spare_bits, j) != (spares != 0))
			VFAIL(mm, err, "slab %u: %" PRIu64 " spares, counted %u,"
			      " bit %d", j, spares, s->nr_spare,
			      bit_test(mm->spare_bits, j));
		nr_spare += spares;
	}
	if (nr_used)
		VFAIL(mm, err, "%" PRIu64 " allocated blocks without a handle",
		      nr_used);
	if (nr_h != mm->nr_handles || nr_spare != nr_h - mm->nr_allocated)
		VFAIL(mm, err, "%" PRIu64 " handles (%" PRIu64 " counted), %"
		      PRIu64 " spare, %" PRIu64 " allocated", mm->nr_handles,
		      nr_h, nr_spare, mm->nr_allocated);
	return err;
}
