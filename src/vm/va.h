/* SPDX-License-Identifier: MIT */
/*
 * GPU VA manager (internal API): the mappings of one GPU virtual address
 * space and the "split and merge" op lists that change them.
 *
 * A MAP or UNMAP request over whatever is mapped is first turned into an op
 * list (UNMAP / REMAP / MAP steps; allocation allowed, nothing changed), then
 * applied op by op where nothing may fail, and can be unwound in reverse
 * before the caller's point of no return.  The cases, the ownership rules,
 * the apply/unwind protocol and an example are at the top of va.c.
 *
 * Locking: none.  The VM layer holds vm->lock (write) around every call
 * that creates, applies, unwinds or finishes op lists, and at least
 * vm->lock (read) around lookups.
 */
#ifndef GVM_VM_VA_H
#define GVM_VM_VA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gvm/vm.h>

#include "core/itree.h"
#include "core/page.h"

/* Every address, range and backing offset is a multiple of GVM_PAGE_SIZE. */

/*
 * struct gvm_va::flags.  The kind (exactly one) says what backs the range:
 *   BO       a buffer object: obj != NULL, obj_offset = byte offset in it
 *   USERPTR  CPU memory: obj == NULL, obj_offset = the CPU address
 *   NULL     sparse (reads zero, writes dropped): obj == NULL, offset 0
 *   MIRROR   CPU-address mirror (system allocator; GPU VA == CPU VA):
 *            obj == NULL, offset 0
 * READONLY and the PAT index are attributes carried over to split pieces.
 * VM-layer state (PTE size in use, tile masks, ...) lives in the struct
 * that embeds struct gvm_va, not here.
 */
#define GVM_VA_KIND_MASK	0x3u
#define GVM_VA_KIND_BO		0x0u
#define GVM_VA_KIND_USERPTR	0x1u
#define GVM_VA_KIND_NULL	0x2u
#define GVM_VA_KIND_MIRROR	0x3u
#define GVM_VA_READONLY		(1u << 2)
/* Made over CPU_ADDR_MIRROR mappings only: unmapping it mirrors again. */
#define GVM_VA_OVER_MIRROR	(1u << 3)
#define GVM_VA_PAT_SHIFT	8
#define GVM_VA_PAT_MASK		(GVM_PAT_MAX << GVM_VA_PAT_SHIFT)
#define GVM_VA_PAT(idx)		((uint32_t)(idx) << GVM_VA_PAT_SHIFT)
#define GVM_VA_FLAGS_ALL \
	(GVM_VA_KIND_MASK | GVM_VA_READONLY | GVM_VA_OVER_MIRROR | \
	 GVM_VA_PAT_MASK)

/*
 * One mapping [addr, addr + range).  The VM layer embeds it at offset 0 of
 * its VMA struct (see gvm__va_space_init()).  All fields are protected by
 * vm->lock; the va layer writes them only when it creates the struct, and
 * `inserted` when it inserts or removes it.
 */
struct gvm_va {
	uint64_t addr;		/* first byte; 4 KiB aligned */
	uint64_t range;		/* bytes; > 0, 4 KiB aligned */
	void *obj;		/* the buffer object (KIND_BO), else NULL */
	uint64_t obj_offset;	/* BO: offset of addr in obj; USERPTR: the
				   CPU address of addr; else 0 */
	uint32_t flags;		/* GVM_VA_* (kind, READONLY, PAT) */
	bool inserted;		/* in the space's tree right now */
};

static inline uint32_t gvm__va_kind(const struct gvm_va *va)
{
	return va->flags & GVM_VA_KIND_MASK;
}

/* Last byte, inclusive (the tree's key is [addr, gvm__va_last(va)]). */
static inline uint64_t gvm__va_last(const struct gvm_va *va)
{
	return va->addr + va->range - 1;
}

/* Mappings a space keeps for reuse (gvm__va_free). */
#define GVM_VA_SPARES 4

/*
 * A GPU VA space [start, start + range).  Invariants (gvm__va_validate()):
 *   every entry of tree is a gvm_va with inserted == true, keyed by
 *     [addr, addr + range - 1], inside the space, valid flags;
 *   entries do not overlap: in address order, a.addr + a.range <= b.addr;
 *   nr_lists == 0  =>  pending_inserts == 0 and no tree reservation.
 * All fields but spare[] are protected by vm->lock.  spare[] holds
 * mappings given back with gvm__va_free() for the next allocation to
 * reuse (a map after an unmap allocates nothing): each slot is taken and
 * filled with one atomic exchange / compare-and-swap, by any thread with
 * no lock held (the VM layer frees VMAs after dropping vm->lock).
 */
struct gvm_va_space {
	uint64_t start;		/* first usable GPU address */
	uint64_t range;		/* bytes; start + range - 1 does not wrap */
	size_t va_size;		/* bytes allocated per new gvm_va: the size
				   of the VM layer's struct embedding it */
	struct gvm_itree tree;	/* the mappings, by [addr, last] */
	size_t nr_lists;	/* op lists created and not yet finished */
	size_t pending_inserts;	/* tree inserts those lists may still do
				   (apply and unwind both insert); covered by
				   the tree's reservation */
	struct gvm_va *spare[GVM_VA_SPARES];	/* atomic slots, NULL or a
				   va_size block for reuse (see above) */
};

enum gvm_va_op_kind {
	GVM_VA_OP_MAP = 1,	/* insert map */
	GVM_VA_OP_REMAP,	/* remove old, insert prev and/or next */
	GVM_VA_OP_UNMAP,	/* remove old */
};

enum gvm_va_op_state {
	GVM_VA_OP_CREATED = 0,	/* not applied yet */
	GVM_VA_OP_APPLIED,	/* gvm__va_op_apply() done */
	GVM_VA_OP_UNWOUND,	/* applied, then gvm__va_op_unapply() */
};

/*
 * One step of an op list.  Which pointers are set depends on kind; the
 * others are NULL.  Written by the va layer only.
 */
struct gvm_va_op {
	enum gvm_va_op_kind kind;	/* what the op does */
	enum gvm_va_op_state state;	/* where it is in the protocol */
	struct gvm_va *old;	/* UNMAP, REMAP: the mapping that goes away
				   (in the space until applied) */
	struct gvm_va *prev;	/* REMAP: surviving piece before the request,
				   or NULL */
	struct gvm_va *next;	/* REMAP: surviving piece after the request,
				   or NULL; at least one of prev/next is set */
	struct gvm_va *map;	/* MAP: the new mapping */
};

/*
 * An op list, in application order: the UNMAPs and REMAPs in address order
 * of the mappings they take away, then the MAP (map requests only).
 */
#define GVM_VA_OPS_INL 2

/*
 * Invariant: op == NULL if nr == 0, op == op_inl if 0 < nr <= GVM_VA_OPS_INL
 * (a list of one or two ops allocates no array), else a heap array.  So a
 * list must not be copied by assignment or memcpy without
 * gvm__va_ops_move() / gvm__va_ops_relink().
 */
struct gvm_va_ops {
	struct gvm_va_space *space;	/* NULL: nothing to finish */
	struct gvm_va_op *op;		/* nr ops (see above) */
	size_t nr;
	struct gvm_va_op op_inl[GVM_VA_OPS_INL];
};

/* After @l was copied byte for byte (an array of lists that grew): points
   its ops back at its own inline storage. */
static inline void gvm__va_ops_relink(struct gvm_va_ops *l)
{
	if (l->nr && l->nr <= GVM_VA_OPS_INL)
		l->op = l->op_inl;
}

/* Moves list @src to @dst; @src is then a copy not to finish. */
static inline void gvm__va_ops_move(struct gvm_va_ops *dst,
				    const struct gvm_va_ops *src)
{
	*dst = *src;
	gvm__va_ops_relink(dst);
}

/* Overlap iterator; private. */
struct gvm_va_iter {
	struct gvm_itree_iter it;	/* the walk over space->tree */
};

/*
 * Initialises an empty space [start, start + range); each gvm_va it
 * allocates is va_size bytes, zeroed (va_size >= sizeof(struct gvm_va)).
 * Returns 0 or -EINVAL (range 0, misaligned, wraps, va_size too small).
 */
int gvm__va_space_init(struct gvm_va_space *space, uint64_t start,
		       uint64_t range, size_t va_size);

/*
 * Tears the space down.  No op list may be outstanding.  The mappings still
 * in it belong to the caller: @release (if not NULL) is called on each, in
 * address order, and must not call back into the space.
 */
void gvm__va_space_fini(struct gvm_va_space *space,
			void (*release)(struct gvm_va *va, void *arg),
			void *arg);

/*
 * Gives back the memory of a mapping the caller owns (out of every space,
 * its own references released), allocated by @space or by a space of the
 * same va_size: kept in a free slot of @space's spare[] for the next
 * allocation, or freed if none is free.  Any thread, no lock needed; not
 * after gvm__va_space_fini() (which frees the spares).  The allocation
 * that reuses a spare zeroes it and calls no allocator: fault injection
 * reaches the allocation only when the slots are empty.
 */
void gvm__va_free(struct gvm_va_space *space, struct gvm_va *va);

/*
 * Builds the op list of mapping [addr, addr + range) to (obj, obj_offset,
 * flags) over whatever is mapped.  Changes nothing in the space.  Returns 0
 * (@ops then holds at least the MAP), -EINVAL for a bad request, -ENOMEM;
 * on error @ops holds nothing to finish (fini is a no-op) and nothing is
 * allocated or reserved.
 */
int gvm__va_map_ops_create(struct gvm_va_space *space, uint64_t addr,
			   uint64_t range, void *obj, uint64_t obj_offset,
			   uint32_t flags, struct gvm_va_ops *ops);

/*
 * The same for unmapping [addr, addr + range); the list may be empty.
 * Unmapping exactly one whole mapping allocates nothing (one inline UNMAP,
 * no insert to reserve) and cannot fail (test_va.alloc_failure): a caller
 * may rely on it to undo a MAP it applied.
 */
int gvm__va_unmap_ops_create(struct gvm_va_space *space, uint64_t addr,
			     uint64_t range, struct gvm_va_ops *ops);

/*
 * Applies @op (CREATED -> APPLIED) to @space.  Ops are applied in list
 * order, each list against the space state it was created for.  Never
 * allocates, never fails.
 */
void gvm__va_op_apply(struct gvm_va_space *space, struct gvm_va_op *op);

/*
 * Undoes an applied @op (APPLIED -> UNWOUND).  Unwind in exact reverse order
 * of application, across lists too.  Never allocates, never fails.
 */
void gvm__va_op_unapply(struct gvm_va_space *space, struct gvm_va_op *op);

/* Applies every op of @ops in order. */
void gvm__va_ops_apply(struct gvm_va_ops *ops);

/* Unapplies every APPLIED op of @ops in reverse order. */
void gvm__va_ops_unapply(struct gvm_va_ops *ops);

/*
 * Finishes a list in any state: frees the new gvm_va structs of every op
 * that is not APPLIED, never touches `old`, frees the ops, releases the
 * list's share of the tree reservation.  See "Ownership" in va.c for who
 * owns what afterwards.  No-op on a list that holds nothing.
 */
void gvm__va_ops_fini(struct gvm_va_ops *ops);

/* The mapping containing @addr, or NULL. */
struct gvm_va *gvm__va_find(const struct gvm_va_space *space, uint64_t addr);

/*
 * The first mapping (lowest address) overlapping [addr, addr + range)
 * (range 0: none; a range that wraps is cut at the top of the address
 * space), or NULL; gvm__va_next() continues in address order.  Any change
 * to the space invalidates the iterator.
 */
struct gvm_va *gvm__va_first(const struct gvm_va_space *space, uint64_t addr,
			     uint64_t range, struct gvm_va_iter *iter);
struct gvm_va *gvm__va_next(struct gvm_va_iter *iter);

#define gvm_va_for_each_in_range(va, space, addr, range, iter)            \
	for ((va) = gvm__va_first((space), (addr), (range), (iter)); (va); \
	     (va) = gvm__va_next(iter))

static inline size_t gvm__va_count(const struct gvm_va_space *space)
{
	return gvm__itree_count(&space->tree);
}

/*
 * Checks every invariant of struct gvm_va_space.  Returns 0, or -EUCLEAN
 * after printing what is wrong to stderr.  O(n).
 */
int gvm__va_validate(const struct gvm_va_space *space);

#endif
