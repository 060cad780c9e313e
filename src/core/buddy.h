/* SPDX-License-Identifier: MIT */
/*
 * Buddy allocator of device memory (internal API).
 *
 * Hands out power-of-two blocks of a device-memory region: by size, with
 * a minimum block size (= alignment), inside an address range, lowest or
 * highest addresses first, or as one contiguous run.  The state of the
 * region is two bitmaps per order: its free blocks (with 64-ary summary
 * levels, so a search is O(levels)) and its allocated blocks.  Free and
 * split blocks have no record; an allocated block has a small handle, the
 * caller's.  Page tables (src/pt) and buffer objects (src/vm) both
 * allocate device memory and sit below SVM, which is why this lives in
 * src/core.  Design, invariants and an example are at the top of buddy.c.
 *
 * Locking: none.  The owner (a device's memory region) serialises every
 * call on one allocator, queries included.
 */
#ifndef GVM_CORE_BUDDY_H
#define GVM_CORE_BUDDY_H

#include <stdbool.h>
#include <stdint.h>

#include <gvm/types.h>

#include "core/page.h"

/* Default minimum chunk size: the GPU page. */
#define GVM_BUDDY_DEFAULT_CHUNK GVM_PAGE_SIZE
/* Orders are below 64 (a block is chunk_size << order bytes). */
#define GVM_BUDDY_MAX_ORDERS 64
/* Levels of a free map: 64^10 bits exceed any order's slots (< 2^52). */
#define GVM_BUDDY_MAP_LEVELS 10

/* Allocation flags. */
#define GVM_BUDDY_TOPDOWN	(1u << 0)	/* highest addresses first */
#define GVM_BUDDY_CONTIGUOUS	(1u << 1)	/* one contiguous run */
#define GVM_BUDDY_FLAGS_ALL	(GVM_BUDDY_TOPDOWN | GVM_BUDDY_CONTIGUOUS)

enum gvm_buddy_state {
	GVM_BUDDY_UNUSED = 0,	/* a spare handle; not a block */
	GVM_BUDDY_FREE,		/* a leaf block nobody uses */
	GVM_BUDDY_ALLOCATED,	/* a leaf block a caller owns */
};

/*
 * The handle of an ALLOCATED block [offset, offset + (chunk_size << order)).
 * The caller owns it from the allocation until it frees the block, and may
 * use `link` (to keep it on its own lists) in that time; the other fields
 * are the allocator's, read through the accessors below.  Handles live in
 * the allocator's slabs: a freed block's handle is reused, never returned
 * to the heap before fini.
 */
struct gvm_buddy_block {
	struct gvm_list link;	/* ALLOCATED: the caller's; UNUSED: next
				   spare (link.next) */
	uint64_t offset;	/* byte offset in the region */
	uint8_t order;		/* size = chunk_size << order */
	uint8_t state;		/* ALLOCATED or UNUSED */
	uint32_t slab;		/* the slab it lives in (never changes) */
};

/*
 * The blocks of one order k.  Slot i is the k-block at offset i * S(k)
 * (S(k) = chunk_size << k); n counts the slots whose block lies inside
 * [0, size).  free[] level 0 has bit i set iff that block is a FREE leaf;
 * bit j of level l + 1 is set iff word j of level l is not zero; the top
 * level is one word.  used[] has bit i set iff the block is ALLOCATED.
 */
struct gvm_buddy_order {
	uint64_t *free;				/* every level, level 0 first */
	uint64_t *used;				/* ceil(n / 64) words */
	uint64_t n;				/* slots */
	uint64_t nr_free;			/* bits set in free level 0 */
	unsigned int levels;			/* of free[], >= 1 */
	uint64_t level_off[GVM_BUDDY_MAP_LEVELS];	/* first word */
	uint64_t level_words[GVM_BUDDY_MAP_LEVELS];	/* words */
};

struct gvm_buddy_hslab;

struct gvm_buddy {
	uint64_t size;			/* managed bytes, a multiple of chunk_size */
	uint64_t chunk_size;		/* smallest block, a power of two >= 4 KiB */
	unsigned int chunk_lg2;		/* log2(chunk_size) */
	unsigned int max_order;		/* order of the largest block */
	struct gvm_buddy_order *orders;	/* [max_order + 1], in map_mem */
	void *map_mem;			/* orders[], then every bitmap */
	uint64_t map_bytes;		/* its size */
	uint64_t free_bytes;		/* bytes in FREE blocks */
	uint64_t nr_allocated;		/* blocks in state ALLOCATED */
	uint64_t nr_allocs;		/* successful gvm__buddy_alloc() calls */
	struct gvm_buddy_hslab **slabs;	/* [nr_slabs] slabs of handles */
	size_t slabs_cap;
	uint64_t *spare_bits;		/* bit i: slabs[i] has a spare handle */
	size_t spare_words;		/* capacity of spare_bits[] */
	unsigned int nr_slabs;
	uint64_t nr_handles;		/* handles in all slabs */
};

struct gvm_buddy_stats {
	uint64_t total_bytes;		/* managed bytes */
	uint64_t free_bytes;		/* bytes in free blocks */
	uint64_t largest_free_bytes;	/* largest free block, 0 if none */
	uint64_t nr_allocs;		/* successful allocation calls so far */
	uint64_t nr_allocated_blocks;	/* blocks allocated now */
	unsigned int max_order;		/* free_blocks[] is valid up to it */
	uint64_t free_blocks[GVM_BUDDY_MAX_ORDERS];	/* per order */
};

/*
 * Manages [0, size) rounded down to a multiple of @chunk_size (0 = the
 * default 4 KiB; otherwise a power of two >= 4 KiB).  Returns 0, -EINVAL
 * (bad chunk size, size below one chunk) or -ENOMEM.
 */
int gvm__buddy_init(struct gvm_buddy *mm, uint64_t size, uint64_t chunk_size);

/*
 * Frees all metadata.  Every allocated block should have been freed; a
 * block still allocated is reported (debug builds) and freed anyway, so
 * the caller must not touch its handle afterwards.
 */
void gvm__buddy_fini(struct gvm_buddy *mm);

/*
 * Allocates @size bytes (rounded up to the chunk size, then to
 * @min_block_size) as blocks of at least @min_block_size bytes (0 = chunk
 * size; a power of two >= chunk size), each aligned to its own size and so
 * to @min_block_size, all inside [start, end) (chunk-aligned, start < end
 * <= mm->size).  Flags: GVM_BUDDY_TOPDOWN takes the highest addresses
 * first (otherwise: the smallest free blocks that fit, lowest address
 * first); GVM_BUDDY_CONTIGUOUS returns one run [a, a + size) with a
 * aligned to @min_block_size, as one or more blocks in address order.
 * The blocks' handles are appended to @blocks (linked by block->link).
 *
 * Returns 0; -EINVAL for bad arguments (also when the rounded size exceeds
 * end - start); -ENOSPC when the free space cannot satisfy the request;
 * -ENOMEM when a handle cannot be allocated.  On error nothing changed.
 */
int gvm__buddy_alloc(struct gvm_buddy *mm, uint64_t start, uint64_t end,
		     uint64_t size, uint64_t min_block_size, unsigned int flags,
		     struct gvm_list *blocks);

/*
 * Frees an ALLOCATED block (unlinking its handle from whatever list holds
 * it; the handle is dead afterwards) and merges it with its free buddies.
 * Never allocates, never fails.
 */
void gvm__buddy_free_block(struct gvm_buddy *mm, struct gvm_buddy_block *b);

/* Frees every block on @blocks; the list ends empty. */
void gvm__buddy_free_list(struct gvm_buddy *mm, struct gvm_list *blocks);

static inline uint64_t gvm__buddy_block_offset(const struct gvm_buddy_block *b)
{
	return b->offset;
}

static inline unsigned int gvm__buddy_block_order(const struct gvm_buddy_block *b)
{
	return b->order;
}

static inline uint64_t gvm__buddy_block_size(const struct gvm_buddy *mm,
					     const struct gvm_buddy_block *b)
{
	return mm->chunk_size << b->order;
}

/*
 * The leaf (FREE or ALLOCATED block) holding byte @offset (< mm->size):
 * its offset and order in *@leaf_offset / *@order; returns its state.
 * O(orders).  Walking [0, size) leaf by leaf gives the allocator's shape.
 */
enum gvm_buddy_state gvm__buddy_leaf(const struct gvm_buddy *mm,
				     uint64_t offset, uint64_t *leaf_offset,
				     unsigned int *order);

/* Fills @st.  O(max_order). */
void gvm__buddy_stats(const struct gvm_buddy *mm, struct gvm_buddy_stats *st);

/*
 * Checks every invariant listed in buddy.c.  Returns 0, or -EUCLEAN after
 * printing what is wrong to stderr.  O(bitmap words + blocks x orders +
 * handles).
 */
int gvm__buddy_validate(const struct gvm_buddy *mm);

/*
 * Metadata allocation failure injection, for tests (single-threaded use
 * only).  -1 (the default): allocations succeed.  N >= 0: N more metadata
 * allocations succeed (one per block handed out, spare handles in slabs
 * included, and one for the bitmaps at init), then every one fails until
 * the counter is set back to -1.  Real heap allocations also honour
 * GVM_INJECT_ALLOC (core/inject.h).
 */
extern long gvm__buddy_fail_alloc_after;

#endif
