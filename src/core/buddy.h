/* SPDX-License-Identifier: MIT */
/*
 * Buddy allocator of device memory (internal API).
 *
 * Hands out power-of-two blocks of a device-memory region: by size, with
 * a minimum block size (= alignment), inside an address range, lowest or
 * highest addresses first, or as one contiguous run.  Free blocks live in
 * one red-black tree per order keyed by offset.  Page tables (src/pt) and
 * buffer objects (src/vm) both allocate device memory and sit below SVM,
 * which is why this lives in src/core.  Design, invariants and an example
 * are at the top of buddy.c.
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
#include "core/rbtree.h"

/* Default minimum chunk size: the GPU page. */
#define GVM_BUDDY_DEFAULT_CHUNK GVM_PAGE_SIZE
/* Orders are below 64 (a block is chunk_size << order bytes). */
#define GVM_BUDDY_MAX_ORDERS 64

/* Allocation flags. */
#define GVM_BUDDY_TOPDOWN	(1u << 0)	/* highest addresses first */
#define GVM_BUDDY_CONTIGUOUS	(1u << 1)	/* one contiguous run */
#define GVM_BUDDY_FLAGS_ALL	(GVM_BUDDY_TOPDOWN | GVM_BUDDY_CONTIGUOUS)

enum gvm_buddy_state {
	GVM_BUDDY_UNUSED = 0,	/* spare metadata in a slab */
	GVM_BUDDY_FREE,		/* in free_tree[order] */
	GVM_BUDDY_ALLOCATED,	/* owned by a caller */
	GVM_BUDDY_SPLIT,	/* both halves are its children */
};

/*
 * One block: [offset, offset + (chunk_size << order)).  The caller of an
 * allocation owns an ALLOCATED block and may use `link` (to keep it on its
 * own lists) until it frees the block; every other field is the
 * allocator's and is read through the accessors below.  The two halves of
 * a split block are allocated together (a "pair", adjacent in memory), so
 * a block and its buddy share cache lines.  A block is in one state at a
 * time, so the state-specific fields share storage.
 */
struct gvm_buddy_block {
	uint64_t offset;			/* byte offset in the region */
	struct gvm_buddy_block *parent;		/* NULL for a root */
	union {
		struct gvm_rb_node rb;		/* FREE: in free_tree[order] */
		struct gvm_list link;		/* ALLOCATED: caller's list */
		struct {			/* SPLIT: the pair of halves */
			struct gvm_buddy_block *left;	/* at offset */
			struct gvm_buddy_block *right;	/* at offset + size/2 */
		};
	};
	uint8_t order;				/* size = chunk_size << order */
	uint8_t state;				/* enum gvm_buddy_state */
};

struct gvm_buddy_slab;

struct gvm_buddy {
	uint64_t size;			/* managed bytes, a multiple of chunk_size */
	uint64_t chunk_size;		/* smallest block, a power of two >= 4 KiB */
	unsigned int chunk_lg2;		/* log2(chunk_size) */
	unsigned int max_order;		/* order of the largest root */
	unsigned int nr_roots;		/* roots tiling [0, size), largest first */
	struct gvm_buddy_block **roots;	/* [nr_roots] */
	struct gvm_rb_root free_tree[GVM_BUDDY_MAX_ORDERS];
					/* FREE blocks of each order by offset */
	uint64_t free_bytes;		/* bytes in FREE blocks */
	uint64_t nr_allocated;		/* blocks in state ALLOCATED */
	uint64_t nr_allocs;		/* successful gvm__buddy_alloc() calls */
	struct gvm_buddy_slab *slabs;	/* every slab of block pairs */
	struct gvm_buddy_slab *free_slabs;	/* slabs with a free pair */
	uint64_t nr_pairs;		/* pairs in all slabs */
	uint64_t nr_free_pairs;		/* of which unused */
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
 * the caller must not touch it afterwards.
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
 * The blocks are appended to @blocks (linked by block->link).
 *
 * Returns 0; -EINVAL for bad arguments (also when the rounded size exceeds
 * end - start); -ENOSPC when the free space cannot satisfy the request;
 * -ENOMEM when metadata allocation fails.  On error nothing changed.
 */
int gvm__buddy_alloc(struct gvm_buddy *mm, uint64_t start, uint64_t end,
		     uint64_t size, uint64_t min_block_size, unsigned int flags,
		     struct gvm_list *blocks);

/*
 * Frees an ALLOCATED block (unlinking it from whatever list holds it) and
 * merges it with its free buddies.  Never allocates, never fails.
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

/* Fills @st.  O(max_order). */
void gvm__buddy_stats(const struct gvm_buddy *mm, struct gvm_buddy_stats *st);

/*
 * Checks every invariant listed in buddy.c.  Returns 0, or -EUCLEAN after
 * printing what is wrong to stderr.  O(number of blocks).
 */
int gvm__buddy_validate(const struct gvm_buddy *mm);

/*
 * Metadata allocation failure injection, for tests (single-threaded use
 * only).  -1 (the default): allocations succeed.  N >= 0: N more block
 * metadata allocations succeed (one per split, or per root at init; spare
 * pairs in slabs count too), then every one fails until the counter is set
 * back to -1.  Real heap allocations also honour GVM_INJECT_ALLOC
 * (core/inject.h).
 */
extern long gvm__buddy_fail_alloc_after;

#endif
