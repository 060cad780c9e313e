// SPDX-License-Identifier: MIT
/*
 * Buddy allocator tests: every feature and error on small pools, failure
 * injection (the allocator is unchanged after a failed allocation), and a
 * reference model (a bitmap of allocated chunks) checked after every random
 * alloc/free, with validate() after every step.
 */
#include "core/buddy.h"

#include "core/alloc.h"
#include "core/list.h"
#include "harness.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M1 (1ull << 20)
#define G1 (1ull << 30)

static struct gvm_buddy_block *blk(struct gvm_list *pos)
{
	return gvm_list_entry(pos, struct gvm_buddy_block, link);
}

static size_t list_len(struct gvm_list *head)
{
	struct gvm_list *pos;
	size_t n = 0;

	gvm_list_for_each(pos, head)
		n++;
	return n;
}

/* Sum of block sizes on @head. */
static uint64_t list_bytes(const struct gvm_buddy *mm, struct gvm_list *head)
{
	struct gvm_list *pos;
	uint64_t n = 0;

	gvm_list_for_each(pos, head)
		n += gvm__buddy_block_size(mm, blk(pos));
	return n;
}

/* Leaves of the allocator as (offset, order, state), a shape fingerprint. */
struct leaf {
	uint64_t offset;
	unsigned int order, state;
};

static struct leaf *shape(const struct gvm_buddy *mm, size_t *n)
{
	size_t cap = (mm->size / mm->chunk_size) + 1;
	struct leaf *v = malloc(cap * sizeof(*v));
	uint64_t off = 0;

	ASSERT_TRUE(v);
	*n = 0;
	while (off < mm->size) {
		struct leaf l;
		uint64_t at;

		l.state = gvm__buddy_leaf(mm, off, &at, &l.order);
		l.offset = at;
		ASSERT_NE(l.state, GVM_BUDDY_UNUSED);
		ASSERT_EQ(at, off);
		ASSERT_LT(*n, cap);
		v[(*n)++] = l;
		off += mm->chunk_size << l.order;
	}
	return v;
}

static void assert_same_shape(const struct leaf *a, size_t na,
			      const struct leaf *b, size_t nb)
{
	ASSERT_EQ(na, nb);
	for (size_t i = 0; i < na; i++) {
		ASSERT_EQ(a[i].offset, b[i].offset);
		ASSERT_EQ(a[i].order, b[i].order);
		ASSERT_EQ(a[i].state, b[i].state);
	}
}

/* The pool is back to its roots, all free. */
static void assert_pristine(const struct gvm_buddy *mm)
{
	struct gvm_buddy_stats st;

	ASSERT_OK(gvm__buddy_validate(mm));
	gvm__buddy_stats(mm, &st);
	ASSERT_EQ(st.free_bytes, mm->size);
	ASSERT_EQ(st.nr_allocated_blocks, 0);
	/* One free leaf per root. */
	size_t n;
	struct leaf *v = shape(mm, &n);

	ASSERT_EQ(n, (size_t)__builtin_popcountll(mm->size / mm->chunk_size));
	for (size_t i = 0; i < n; i++)
		ASSERT_EQ(v[i].state, GVM_BUDDY_FREE);
	free(v);
}

/* The leaf holding @off is at @at with @order, in state @state. */
static void assert_leaf(const struct gvm_buddy *mm, uint64_t off, uint64_t at,
			unsigned int order, unsigned int state)
{
	uint64_t a;
	unsigned int o;

	ASSERT_EQ(gvm__buddy_leaf(mm, off, &a, &o), state);
	ASSERT_EQ(a, at);
	ASSERT_EQ(o, order);
}

TEST(init_errors)
{
	struct gvm_buddy mm;

	ASSERT_EQ(gvm__buddy_init(&mm, 1 << 20, 3 * K4), -EINVAL);
	ASSERT_EQ(gvm__buddy_init(&mm, 1 << 20, 2048), -EINVAL);
	ASSERT_EQ(gvm__buddy_init(&mm, K4 - 1, 0), -EINVAL);
	ASSERT_EQ(gvm__buddy_init(&mm, K64 - 1, K64), -EINVAL);
	ASSERT_EQ(gvm__buddy_init(&mm, 0, 0), -EINVAL);

	/* Rounded down to chunks. */
	ASSERT_OK(gvm__buddy_init(&mm, 3 * K4 + 100, 0));
	ASSERT_EQ(mm.size, 3 * K4);
	assert_leaf(&mm, K4, 0, 1, GVM_BUDDY_FREE);
	assert_leaf(&mm, 2 * K4, 2 * K4, 0, GVM_BUDDY_FREE);
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);

	/* Allocation failure during init (its one metadata allocation). */
	gvm__buddy_fail_alloc_after = 0;
	ASSERT_EQ(gvm__buddy_init(&mm, 3 * K4, 0), -ENOMEM);
	gvm__buddy_fail_alloc_after = -1;
}

TEST(non_power_of_two_roots)
{
	struct gvm_buddy mm;
	struct gvm_buddy_stats st;
	uint64_t size = 6 * G1 + 12 * K4;

	ASSERT_OK(gvm__buddy_init(&mm, size, 0));
	/* Roots 4G, 2G, 32K, 16K. */
	assert_leaf(&mm, 0, 0, 20, GVM_BUDDY_FREE);
	assert_leaf(&mm, 4 * G1 - 1, 0, 20, GVM_BUDDY_FREE);
	assert_leaf(&mm, 4 * G1, 4 * G1, 19, GVM_BUDDY_FREE);
	assert_leaf(&mm, 6 * G1 + 5 * K4, 6 * G1, 3, GVM_BUDDY_FREE);
	assert_leaf(&mm, size - 1, 6 * G1 + 8 * K4, 2, GVM_BUDDY_FREE);
	gvm__buddy_stats(&mm, &st);
	ASSERT_EQ(st.total_bytes, size);
	ASSERT_EQ(st.free_bytes, size);
	ASSERT_EQ(st.largest_free_bytes, 4 * G1);
	ASSERT_EQ(st.free_blocks[20], 1);
	ASSERT_EQ(st.free_blocks[19], 1);
	ASSERT_EQ(st.free_blocks[3], 1);
	ASSERT_EQ(st.free_blocks[2], 1);
	ASSERT_EQ(st.max_order, 20);
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);
}

TEST(alloc_errors)
{
	struct gvm_buddy mm;
	struct gvm_list l;
	struct gvm_buddy_stats st;
	uint64_t sz = 48 * K4;

	ASSERT_OK(gvm__buddy_init(&mm, sz, 0));
	gvm_list_init(&l);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz, 0, 0, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz, K4, 3 * K4, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz, K4, 2048, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 1, sz, K4, 0, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz - 1, K4, 0, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, K4, K4, K4, 0, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 2 * K4, K4, K4, 0, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz + K4, K4, 0, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz, K4, 0, 1u << 7, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz, UINT64_MAX, 0, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz, UINT64_MAX - K4 + 2, K64, 0,
				   &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz, sz + 1, 0, 0, &l), -EINVAL);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, 4 * K4, 5 * K4, 0, 0, &l), -EINVAL);
	/* Rounded to the min block size: 256K > 192K. */
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, sz, K4, 64 * K4, 0, &l), -EINVAL);
	ASSERT_TRUE(gvm_list_empty(&l));
	gvm__buddy_stats(&mm, &st);
	ASSERT_EQ(st.nr_allocs, 0);
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);
}

TEST(alloc_free_merge)
{
	struct gvm_buddy mm;
	struct gvm_list l;
	struct gvm_buddy_stats st;
	struct gvm_buddy_block *b;

	ASSERT_OK(gvm__buddy_init(&mm, 64 * K4, 0));
	gvm_list_init(&l);
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 1, 0, 0, &l));
	ASSERT_EQ(list_len(&l), 1);
	b = blk(l.next);
	ASSERT_EQ(gvm__buddy_block_offset(b), 0);
	ASSERT_EQ(gvm__buddy_block_order(b), 0);
	ASSERT_OK(gvm__buddy_validate(&mm));
	gvm__buddy_stats(&mm, &st);
	ASSERT_EQ(st.free_bytes, 63 * K4);
	ASSERT_EQ(st.nr_allocs, 1);
	ASSERT_EQ(st.nr_allocated_blocks, 1);
	for (unsigned int k = 0; k < 6; k++)
		ASSERT_EQ(st.free_blocks[k], 1);	/* 4K, 8K, ..., 128K */
	ASSERT_EQ(st.largest_free_bytes, 32 * K4);

	/* The next one is the free 4K buddy (best fit). */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, K4, 0, 0, &l));
	ASSERT_EQ(blk(l.prev)->offset, K4);
	/* Then 8K: the free 8K block. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 2 * K4, 0, 0, &l));
	ASSERT_EQ(blk(l.prev)->offset, 2 * K4);
	ASSERT_OK(gvm__buddy_validate(&mm));

	/* Free one at a time; merges happen only when both halves are free. */
	gvm__buddy_free_block(&mm, blk(l.next));
	ASSERT_OK(gvm__buddy_validate(&mm));
	gvm__buddy_free_list(&mm, &l);
	ASSERT_TRUE(gvm_list_empty(&l));
	assert_pristine(&mm);
	gvm__buddy_stats(&mm, &st);
	ASSERT_EQ(st.nr_allocs, 3);
	ASSERT_EQ(st.free_blocks[6], 1);
	gvm__buddy_fini(&mm);
}

TEST(size_rounding_and_pieces)
{
	struct gvm_buddy mm;
	struct gvm_list l;
	struct gvm_list *pos;

	ASSERT_OK(gvm__buddy_init(&mm, 64 * K4, 0));
	gvm_list_init(&l);
	/* 5000 bytes -> 8K -> one 8K block. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 5000, 0, 0, &l));
	ASSERT_EQ(list_len(&l), 1);
	ASSERT_EQ(blk(l.next)->order, 1);
	gvm__buddy_free_list(&mm, &l);
	/* 28K = 16K + 8K + 4K, in that order. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 28 * 1024, 0, 0, &l));
	ASSERT_EQ(list_len(&l), 3);
	unsigned int want = 2;
	gvm_list_for_each(pos, &l)
		ASSERT_EQ(blk(pos)->order, want--);
	ASSERT_EQ(list_bytes(&mm, &l), 7 * K4);
	ASSERT_OK(gvm__buddy_validate(&mm));
	gvm__buddy_free_list(&mm, &l);
	/* 4K with a 64K minimum block: one 64K block. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, K4, K64, 0, &l));
	ASSERT_EQ(list_len(&l), 1);
	ASSERT_EQ(gvm__buddy_block_size(&mm, blk(l.next)), K64);
	ASSERT_EQ(blk(l.next)->offset % K64, 0);
	gvm__buddy_free_list(&mm, &l);
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);
}

TEST(topdown_and_ranges)
{
	struct gvm_buddy mm;
	struct gvm_list l;
	uint64_t size = 6 * G1 + 12 * K4;

	ASSERT_OK(gvm__buddy_init(&mm, size, 0));
	gvm_list_init(&l);
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, size, K4, 0, GVM_BUDDY_TOPDOWN, &l));
	ASSERT_EQ(blk(l.prev)->offset, size - K4);
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, size, K64, 0, GVM_BUDDY_TOPDOWN,
				   &l));
	ASSERT_EQ(blk(l.prev)->offset, 6 * G1 - K64);
	/* Range [1M, 2M), bottom-up and top-down. */
	ASSERT_OK(gvm__buddy_alloc(&mm, M1, 2 * M1, K64, 0, 0, &l));
	ASSERT_EQ(blk(l.prev)->offset, M1);
	ASSERT_OK(gvm__buddy_alloc(&mm, M1, 2 * M1, K64, 0, GVM_BUDDY_TOPDOWN,
				   &l));
	ASSERT_EQ(blk(l.prev)->offset, 2 * M1 - K64);
	/* A range no 8K block fits in: [4K, 12K) takes two 4K blocks. */
	ASSERT_OK(gvm__buddy_alloc(&mm, K4, 3 * K4, 2 * K4, 0, 0, &l));
	ASSERT_EQ(blk(l.prev)->offset, 2 * K4);
	ASSERT_EQ(blk(l.prev->prev)->offset, K4);
	/* ... but not with an 8K minimum block (no 8K-aligned 8K inside). */
	ASSERT_EQ(gvm__buddy_alloc(&mm, K4, 3 * K4, 2 * K4, 2 * K4, 0, &l),
		  -ENOSPC);
	ASSERT_EQ(gvm__buddy_alloc(&mm, K4, 4 * K4, 2 * K4, 2 * K4, 0, &l),
		  -ENOSPC);
	/* A range across the 4G/2G root boundary. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 4 * G1 - K64, 4 * G1 + K64, 2 * K64,
				   0, 0, &l));
	/* Best fit: the 1G block at 4G is smaller than the 2G block below. */
	ASSERT_EQ(blk(l.prev->prev)->offset, 4 * G1);
	ASSERT_EQ(blk(l.prev)->offset, 4 * G1 - K64);
	ASSERT_OK(gvm__buddy_validate(&mm));
	gvm__buddy_free_list(&mm, &l);
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);
}

TEST(enospc_leaves_state)
{
	struct gvm_buddy mm;
	struct gvm_list l, l2;
	struct leaf *a, *b;
	size_t na, nb;

	ASSERT_OK(gvm__buddy_init(&mm, 40 * K4, 0));
	gvm_list_init(&l);
	gvm_list_init(&l2);
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 20 * K4, 0, 0, &l));
	a = shape(&mm, &na);
	/* 24K needs 16K + 8K pieces; there are 20K free: fails after
	 * taking the 16K piece, which must be given back. */
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, mm.size, 24 * K4, 0, 0, &l2),
		  -ENOSPC);
	ASSERT_TRUE(gvm_list_empty(&l2));
	b = shape(&mm, &nb);
	assert_same_shape(a, na, b, nb);
	free(b);
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 20 * K4, 0, 0, &l2));
	ASSERT_EQ(mm.free_bytes, 0);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, mm.size, K4, 0, 0, &l2), -ENOSPC);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, mm.size, K4, 0,
				   GVM_BUDDY_CONTIGUOUS, &l2), -ENOSPC);
	ASSERT_OK(gvm__buddy_validate(&mm));
	gvm__buddy_free_list(&mm, &l);
	gvm__buddy_free_list(&mm, &l2);
	assert_pristine(&mm);
	free(a);
	gvm__buddy_fini(&mm);
}

/* Blocks on @l form one run starting at @at of @len bytes. */
static void assert_run(const struct gvm_buddy *mm, struct gvm_list *l,
		       uint64_t at, uint64_t len)
{
	struct gvm_list *pos;
	uint64_t off = at;

	gvm_list_for_each(pos, l) {
		ASSERT_EQ(blk(pos)->offset, off);
		off += gvm__buddy_block_size(mm, blk(pos));
	}
	ASSERT_EQ(off, at + len);
}

TEST(contiguous)
{
	struct gvm_buddy mm;
	struct gvm_list l, all;
	struct gvm_list *pos, *tmp;

	ASSERT_OK(gvm__buddy_init(&mm, 48 * K4, 0));	/* 32 + 16 pages */
	gvm_list_init(&l);
	gvm_list_init(&all);
	/* 12K: trimmed from a 16K block of the smaller (64K) root, best
	 * fit; the tail 4K stays free. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 3 * K4, 0,
				   GVM_BUDDY_CONTIGUOUS, &l));
	assert_run(&mm, &l, 32 * K4, 3 * K4);
	ASSERT_EQ(mm.free_bytes, 45 * K4);
	ASSERT_OK(gvm__buddy_validate(&mm));
	gvm__buddy_free_list(&mm, &l);
	/* Top-down: the run ends at the top. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 3 * K4, 0,
				   GVM_BUDDY_CONTIGUOUS | GVM_BUDDY_TOPDOWN,
				   &l));
	assert_run(&mm, &l, 45 * K4, 3 * K4);
	gvm__buddy_free_list(&mm, &l);
	/* Larger than the largest root: spans the two roots. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 40 * K4, 0,
				   GVM_BUDDY_CONTIGUOUS, &l));
	assert_run(&mm, &l, 0, 40 * K4);
	gvm__buddy_free_list(&mm, &l);
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 40 * K4, 0,
				   GVM_BUDDY_CONTIGUOUS | GVM_BUDDY_TOPDOWN,
				   &l));
	assert_run(&mm, &l, 8 * K4, 40 * K4);
	gvm__buddy_free_list(&mm, &l);
	assert_pristine(&mm);

	/* Fragmented: only pages 3..6 free; a 16K run is there but no
	 * free 16K block. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 48 * K4, K4, 0, &all));
	gvm__buddy_free_list(&mm, &all);
	for (int i = 0; i < 48; i++)
		ASSERT_OK(gvm__buddy_alloc(&mm, (uint64_t)i * K4,
					   (uint64_t)(i + 1) * K4, K4, 0, 0,
					   &all));
	gvm_list_for_each_safe(pos, tmp, &all) {
		uint64_t o = blk(pos)->offset / K4;

		if (o >= 3 && o <= 6)
			gvm__buddy_free_block(&mm, blk(pos));
	}
	ASSERT_OK(gvm__buddy_validate(&mm));
	ASSERT_EQ(mm.orders[2].nr_free, 0);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, mm.size, 5 * K4, 0,
				   GVM_BUDDY_CONTIGUOUS, &l), -ENOSPC);
	ASSERT_EQ(gvm__buddy_alloc(&mm, 0, mm.size, 4 * K4, 2 * K4,
				   GVM_BUDDY_CONTIGUOUS, &l), -ENOSPC);
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 4 * K4, 0,
				   GVM_BUDDY_CONTIGUOUS, &l));
	assert_run(&mm, &l, 3 * K4, 4 * K4);
	ASSERT_EQ(list_len(&l), 3);	/* 4K, 8K, 4K */
	ASSERT_OK(gvm__buddy_validate(&mm));
	gvm__buddy_free_list(&mm, &l);
	/* 8K aligned to 8K inside it: [16K, 24K) is one free 8K block. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 2 * K4, 2 * K4,
				   GVM_BUDDY_CONTIGUOUS, &l));
	assert_run(&mm, &l, 4 * K4, 2 * K4);
	gvm__buddy_free_list(&mm, &l);
	gvm__buddy_free_list(&mm, &all);
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);
}

TEST(validate_catches_corruption)
{
	struct gvm_buddy mm;
	struct gvm_list l;
	struct gvm_buddy_order *o0 = NULL, *o1 = NULL;

	ASSERT_OK(gvm__buddy_init(&mm, 256 * K4, 0));	/* 2 map levels */
	gvm_list_init(&l);
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, K4, 0, 0, &l));
	ASSERT_OK(gvm__buddy_validate(&mm));
	o0 = &mm.orders[0];
	o1 = &mm.orders[1];
	mm.free_bytes += K4;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	mm.free_bytes -= K4;
	mm.nr_allocated++;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	mm.nr_allocated--;
	o1->nr_free++;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	o1->nr_free--;
	/* The handle claims another state or another block. */
	blk(l.next)->state = GVM_BUDDY_FREE;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	blk(l.next)->state = GVM_BUDDY_ALLOCATED;
	blk(l.next)->offset += K4;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	blk(l.next)->offset -= K4;
	/* The allocated 4K block at 0 also free: in two states at once. */
	o0->free[0] |= 1;
	o0->nr_free++;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	/* ... or free and merged with nothing: its free buddy at 4K. */
	o0->used[0] &= ~1ull;
	mm.nr_allocated--;
	mm.free_bytes += K4;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	o0->used[0] |= 1;
	o0->free[0] &= ~1ull;
	o0->nr_free--;
	mm.nr_allocated++;
	mm.free_bytes -= K4;
	/* A leaf inside another: the free 8K block at 8K also allocated. */
	o1->used[0] |= 2;
	mm.nr_allocated++;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	o1->used[0] &= ~2ull;
	mm.nr_allocated--;
	/* A slab's spare bit out of step with its spares. */
	mm.spare_bits[0] ^= 1;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	mm.spare_bits[0] ^= 1;
	/* A summary bit out of step with its word. */
	ASSERT_EQ(o1->levels, 2);
	ASSERT_EQ(o1->free[o1->level_off[1]], 1);
	o1->free[o1->level_off[1]] = 0;
	ASSERT_EQ(gvm__buddy_validate(&mm), -EUCLEAN);
	o1->free[o1->level_off[1]] = 1;
	ASSERT_OK(gvm__buddy_validate(&mm));
	gvm__buddy_free_list(&mm, &l);
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);
}

TEST(free_block_bad_state_dies)
{
	struct gvm_buddy mm;
	struct gvm_list l;
	struct gvm_buddy_block fake = { .offset = 0, .order = 0,
					.state = GVM_BUDDY_ALLOCATED }, *b;

	ASSERT_OK(gvm__buddy_init(&mm, 16 * K4, 0));
	gvm_list_init(&l);
	gvm_list_init(&fake.link);
	/* A handle that is no allocated block. */
	ASSERT_DEATH(gvm__buddy_free_block(&mm, &fake), "BUG");
	/* A double free (the handle is a spare, in the allocator's slab). */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, K4, 0, 0, &l));
	b = blk(l.next);
	gvm__buddy_free_block(&mm, b);
	ASSERT_DEATH(gvm__buddy_free_block(&mm, b), "BUG");
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);
}

/* Every k: fail the k-th metadata allocation of one request. */
TEST(failure_injection)
{
	static const struct {
		uint64_t size, min;
		unsigned int flags;
	} req[] = {
		{ 28 * K4, 0, 0 },
		{ 3 * K4, 0, GVM_BUDDY_CONTIGUOUS },
		{ 37 * K4, 0, GVM_BUDDY_CONTIGUOUS | GVM_BUDDY_TOPDOWN },
		{ 9 * K64, K64, GVM_BUDDY_TOPDOWN },
		{ 300 * K4, 0, GVM_BUDDY_CONTIGUOUS },	/* fallback path */
	};
	struct gvm_buddy mm;
	struct gvm_list l, keep;

	ASSERT_OK(gvm__buddy_init(&mm, 1000 * K4, 0));
	gvm_list_init(&l);
	gvm_list_init(&keep);
	/* Some fragmentation to start from. */
	ASSERT_OK(gvm__buddy_alloc(&mm, 200 * K4, 300 * K4, 5 * K4, 0, 0,
				   &keep));
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, 3 * K4, 0,
				   GVM_BUDDY_TOPDOWN, &keep));
	ASSERT_OK(gvm__buddy_alloc(&mm, 512 * K4, 1000 * K4, 3 * K4, 0, 0,
				   &keep));
	for (size_t r = 0; r < GVM_ARRAY_SIZE(req); r++) {
		bool done = false;

		for (long k = 0; !done; k++) {
			size_t na, nb;
			struct leaf *a = shape(&mm, &na), *b;
			uint64_t allocs = mm.nr_allocs;
			int err;

			gvm__buddy_fail_alloc_after = k;
			err = gvm__buddy_alloc(&mm, 0, mm.size, req[r].size,
					       req[r].min, req[r].flags, &l);
			gvm__buddy_fail_alloc_after = -1;
			ASSERT_OK(gvm__buddy_validate(&mm));
			if (err) {
				ASSERT_EQ(err, -ENOMEM);
				ASSERT_TRUE(gvm_list_empty(&l));
				ASSERT_EQ(mm.nr_allocs, allocs);
				b = shape(&mm, &nb);
				assert_same_shape(a, na, b, nb);
				free(b);
			} else {
				ASSERT_GE(list_bytes(&mm, &l), req[r].size);
				gvm__buddy_free_list(&mm, &l);
				b = shape(&mm, &nb);
				assert_same_shape(a, na, b, nb);
				free(b);
				done = true;
			}
			free(a);
			ASSERT_LT(k, 200);
		}
	}
	gvm__buddy_free_list(&mm, &keep);
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);
}

/* The heap itself failing (core/alloc.h): a new slab of metadata. */
TEST(heap_failure)
{
	struct gvm_buddy mm;
	struct gvm_list l;

	gvm_list_init(&l);
	/* Init's one allocation (the maps). */
	gvm__inject_arm(GVM_INJECT_ALLOC, 1, 0);
	ASSERT_EQ(gvm__buddy_init(&mm, 64 * K4, 0), -ENOMEM);
	gvm__inject_arm(GVM_INJECT_ALLOC, 0, 0);
	/* The first handle grows the slab array, the spare bitmap, then
	   allocates the slab: fail each, on a fresh allocator (a grown array
	   stays grown). */
	for (long nth = 1; nth <= 4; nth++) {
		ASSERT_OK(gvm__buddy_init(&mm, 64 * K4, 0));
		gvm__inject_arm(GVM_INJECT_ALLOC, nth, 0);
		int err = gvm__buddy_alloc(&mm, 0, mm.size, K4, 0, 0, &l);
		gvm__inject_arm(GVM_INJECT_ALLOC, 0, 0);
		if (nth == 4) {		/* three allocations in all */
			ASSERT_OK(err);
			gvm__buddy_free_list(&mm, &l);
		} else {
			ASSERT_EQ(err, -ENOMEM);
		}
		ASSERT_TRUE(gvm_list_empty(&l));
		assert_pristine(&mm);
		gvm__buddy_fini(&mm);
	}
}

/*
 * Handles are reused from the lowest slab that has a spare, so allocated
 * handles stay dense; within a slab, the one freed last goes first.
 */
TEST(handles_lowest_slab_first)
{
	enum { N = 100 };	/* slabs of 32, 64, then 128 handles */
	struct gvm_buddy mm;
	struct gvm_list l, one;
	struct gvm_buddy_block *b[N], *lo, *lo2, *hi;
	size_t i = 0;

	ASSERT_OK(gvm__buddy_init(&mm, 256 * K4, 0));
	gvm_list_init(&l);
	gvm_list_init(&one);
	for (int k = 0; k < N; k++)
		ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, K4, 0, 0, &l));
	struct gvm_list *pos;
	gvm_list_for_each(pos, &l)
		b[i++] = blk(pos);
	ASSERT_EQ(mm.nr_slabs, 3);
	ASSERT_EQ(mm.nr_handles, 32 + 64 + 128);
	ASSERT_EQ(b[0]->slab, 0);
	ASSERT_EQ(b[40]->slab, 1);
	ASSERT_EQ(b[99]->slab, 2);
	lo = b[5];
	lo2 = b[7];
	hi = b[99];
	/* Slab 2 has spares already; free two of slab 0, then one of 2. */
	gvm__buddy_free_block(&mm, lo2);
	gvm__buddy_free_block(&mm, lo);
	gvm__buddy_free_block(&mm, hi);
	ASSERT_OK(gvm__buddy_validate(&mm));
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, K4, 0, 0, &one));
	ASSERT_TRUE(blk(one.next) == lo);	/* lowest slab, last freed */
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, K4, 0, 0, &one));
	ASSERT_TRUE(blk(one.prev) == lo2);
	ASSERT_OK(gvm__buddy_alloc(&mm, 0, mm.size, K4, 0, 0, &one));
	ASSERT_TRUE(blk(one.prev) == hi);	/* slab 2: its last freed */
	ASSERT_OK(gvm__buddy_validate(&mm));
	gvm__buddy_free_list(&mm, &one);
	gvm__buddy_free_list(&mm, &l);
	assert_pristine(&mm);
	ASSERT_EQ(mm.nr_slabs, 3);	/* slabs live until fini */
	gvm__buddy_fini(&mm);
}

/* ---- reference model ------------------------------------------------------ */

struct alloc {
	struct gvm_list blocks;
	bool live;
};

struct model {
	uint32_t *owner;	/* per chunk: allocation id + 1, 0 = free */
	uint64_t chunks;
	uint64_t used;		/* allocated chunks */
};

/* Free m-aligned slots of @m chunks in [s, e) (chunk units). */
static uint64_t free_slots(const struct model *md, uint64_t s, uint64_t e,
			   uint64_t m)
{
	uint64_t n = 0;

	for (uint64_t a = (s + m - 1) / m * m; a + m <= e; a += m) {
		uint64_t i;

		for (i = a; i < a + m && !md->owner[i]; i++)
			;
		n += i == a + m;
	}
	return n;
}

/* Is there an m-aligned free run of @len chunks in [s, e)? */
static bool free_run(const struct model *md, uint64_t s, uint64_t e,
		     uint64_t len, uint64_t m)
{
	for (uint64_t a = (s + m - 1) / m * m; a + len <= e; a += m) {
		uint64_t i;

		for (i = a; i < a + len && !md->owner[i]; i++)
			;
		if (i == a + len)
			return true;
	}
	return false;
}

static void run_model(uint64_t chunk, uint64_t chunks, struct gvm_rng *rng,
		      size_t steps)
{
	enum { NA = 256 };
	struct gvm_buddy mm;
	struct alloc *al = calloc(NA, sizeof(*al));
	struct model md = { calloc(chunks, sizeof(uint32_t)), chunks, 0 };
	unsigned int lg_chunks = 63u - (unsigned int)__builtin_clzll(chunks);

	ASSERT_TRUE(al && md.owner);
	ASSERT_OK(gvm__buddy_init(&mm, chunks * chunk, chunk));
	for (int i = 0; i < NA; i++)
		gvm_list_init(&al[i].blocks);

	for (size_t s = 0; s < steps; s++) {
		uint32_t id = (uint32_t)gvm_rng_below(rng, NA);
		struct alloc *a = &al[id];
		struct gvm_list *pos;

		if (a->live) {
			gvm_list_for_each(pos, &a->blocks) {
				struct gvm_buddy_block *b = blk(pos);
				uint64_t c0 = b->offset / chunk;
				uint64_t n = gvm__buddy_block_size(&mm, b) /
					     chunk;

				for (uint64_t c = c0; c < c0 + n; c++) {
					ASSERT_EQ(md.owner[c], id + 1);
					md.owner[c] = 0;
				}
				md.used -= n;
			}
			gvm__buddy_free_list(&mm, &a->blocks);
			a->live = false;
			ASSERT_OK(gvm__buddy_validate(&mm));
			continue;
		}

		/* A random request. */
		uint64_t s0 = 0, e0 = chunks, len, m;
		unsigned int flags = 0, mlg;
		bool inject = gvm_rng_below(rng, 8) == 0;
		int err;

		if (gvm_rng_below(rng, 3) == 0) {
			s0 = gvm_rng_below(rng, chunks);
			e0 = s0 + 1 + gvm_rng_below(rng, chunks - s0);
		}
		mlg = (unsigned int)gvm_rng_below(rng, 4);
		if (gvm_rng_below(rng, 2))
			mlg = 0;
		if (mlg > lg_chunks)
			mlg = lg_chunks;
		m = 1ull << mlg;
		len = 1 + gvm_rng_below(rng, gvm_rng_below(rng, 4) ? 16 :
					chunks / 4 + 1);
		if (gvm_rng_below(rng, 2))
			flags |= GVM_BUDDY_TOPDOWN;
		if (gvm_rng_below(rng, 3) == 0)
			flags |= GVM_BUDDY_CONTIGUOUS;

		uint64_t rlen = (len + m - 1) / m * m;	/* rounded, chunks */
		size_t na = 0, nb;
		struct leaf *before = inject ? shape(&mm, &na) : NULL;

		if (inject)
			gvm__buddy_fail_alloc_after =
				(long)gvm_rng_below(rng, 6);
		err = gvm__buddy_alloc(&mm, s0 * chunk, e0 * chunk,
				       len * chunk - gvm_rng_below(rng, chunk),
				       m * chunk, flags, &a->blocks);
		gvm__buddy_fail_alloc_after = -1;
		ASSERT_OK(gvm__buddy_validate(&mm));

		if (rlen > e0 - s0) {
			ASSERT_EQ(err, -EINVAL);
		} else if (err == -ENOMEM) {
			ASSERT_TRUE(inject);
		} else if (flags & GVM_BUDDY_CONTIGUOUS) {
			ASSERT_EQ(err ? 1 : 0,
				  free_run(&md, s0, e0, rlen, m) ? 0 : 1);
		} else {
			ASSERT_EQ(err ? 1 : 0,
				  free_slots(&md, s0, e0, m) >= rlen / m ? 0 :
									   1);
		}
		if (err) {
			ASSERT_TRUE(gvm_list_empty(&a->blocks));
			if (before) {
				struct leaf *after = shape(&mm, &nb);

				assert_same_shape(before, na, after, nb);
				free(after);
			}
			free(before);
			ASSERT_EQ(mm.free_bytes, (chunks - md.used) * chunk);
			continue;
		}
		free(before);

		/* Check and record the blocks. */
		uint64_t total = 0, next = UINT64_MAX;
		gvm_list_for_each(pos, &a->blocks) {
			struct gvm_buddy_block *b = blk(pos);
			uint64_t bs = gvm__buddy_block_size(&mm, b);
			uint64_t c0 = b->offset / chunk, n = bs / chunk;

			ASSERT_EQ(b->state, GVM_BUDDY_ALLOCATED);
			ASSERT_EQ(b->offset % bs, 0);
			ASSERT_GE(bs, m * chunk);
			ASSERT_GE(c0, s0);
			ASSERT_LE(c0 + n, e0);
			if ((flags & GVM_BUDDY_CONTIGUOUS) &&
			    next != UINT64_MAX)
				ASSERT_EQ(c0, next);
			next = c0 + n;
			for (uint64_t c = c0; c < c0 + n; c++) {
				ASSERT_EQ(md.owner[c], 0);
				md.owner[c] = id + 1;
			}
			total += n;
		}
		ASSERT_EQ(total, rlen);
		md.used += total;
		a->live = true;
		ASSERT_EQ(mm.free_bytes, (chunks - md.used) * chunk);
	}
	for (int i = 0; i < NA; i++)
		gvm__buddy_free_list(&mm, &al[i].blocks);
	assert_pristine(&mm);
	gvm__buddy_fini(&mm);
	free(al);
	free(md.owner);
}

TEST(reference_model)
{
	struct gvm_rng rng = { gvm_test_seed() };
	size_t rounds = gvm_test_scale(200);

	for (size_t r = 0; r < rounds; r++) {
		uint64_t chunks = 1 + gvm_rng_below(&rng, r % 4 ? 700 : 3000);
		uint64_t chunk = gvm_rng_below(&rng, 4) ? K4 : K64;

		run_model(chunk, chunks, &rng, 2000);
	}
}
