// SPDX-License-Identifier: MIT
/*
 * GPU VA manager: non-overlapping mappings of one GPU VA space, and the
 * "split and merge" op lists that VM_BIND builds before it touches anything.
 *
 * A space holds struct gvm_va mappings in an interval tree keyed by
 * [addr, addr + range - 1].  A request never edits a mapping in place: a
 * MAP or UNMAP over existing mappings becomes an op list of
 *
 *	UNMAP	a mapping entirely covered by the request goes away;
 *	REMAP	a mapping partly covered goes away and the parts outside the
 *		request come back as new mappings: `prev` (before the request)
 *		and/or `next` (after it), with the old backing (obj_offset
 *		advanced for next), kind, READONLY and PAT;
 *	MAP	the new mapping (map requests only, always last).
 *
 * UNMAPs and REMAPs come in address order of the mappings they take away.
 * There are at most two REMAPs (the mappings under the request's first and
 * last page), any number of UNMAPs and at most one MAP.
 *
 * The cases (old mappings A, B, C; request R; "-" hole):
 *
 *   exact replace     old  |AAAA|            ops: UNMAP A, MAP R
 *                     req  |RRRR|
 *                     new  |RRRR|
 *
 *   front overlap     old    |AAAA|          ops: REMAP A (next = A'), MAP R
 *   (R covers A's     req  |RRR|
 *    start)           new  |RRR|A'|          A'.obj_offset = A.obj_offset +
 *                                            (A'.addr - A.addr)
 *
 *   back overlap      old  |AAAA|            ops: REMAP A (prev = A'), MAP R
 *   (R covers A's     req     |RRR|
 *    end)             new  |A'|RRR|          A'.obj_offset = A.obj_offset
 *
 *   middle            old  |AAAAAAAA|        ops: REMAP A (prev = A1,
 *                     req     |RR|                     next = A2), MAP R
 *                     new  |A1|RR|A2|
 *
 *   spanning          old  |AAA|BB|-|CCC|    ops: REMAP A (prev = A'),
 *                     req    |RRRRRRRR|           UNMAP B, REMAP C
 *                     new  |A|RRRRRRRR|C'|        (next = C'), MAP R
 *
 *   adjacent          old  |AAA|             ops: MAP R (A only touches R:
 *                     req      |RRR|              nothing to split)
 *                     new  |AAA|RRR|
 *
 *   hole              old  |AA|----|BB|      ops: MAP R
 *                     req     |RRRR|
 *                     new  |AA|RRRR|BB|
 *
 * An unmap request gives the same list without the MAP; over a hole it is
 * empty.
 *
 * No merging.  Adjacent mappings with the same backing stay separate, as
 * in drm_gpuvm: merging would change mappings the request did not name
 * (their PTE sizes, fences, user fences, notifiers) for no correctness
 * gain.  A MAP followed by REMAPs therefore only ever splits.
 *
 * Creating a list changes nothing in the space.  It allocates every new
 * gvm_va (space->va_size bytes, zeroed; the VM layer's VMA embeds gvm_va at
 * offset 0 and fills its own fields, e.g. copies them from op->old into
 * prev/next, after create) and reserves tree nodes for every insert the
 * list can do, applying *and* unwinding (unwinding an UNMAP or REMAP
 * reinserts old).  Several lists may be outstanding at once (a bind array
 * builds list i + 1 against the space after list i was applied): the space
 * counts their remaining inserts in pending_inserts and each create
 * reserves for all of them; the reservation ends when the last list is
 * finished.  On -ENOMEM (or -EINVAL) nothing is allocated or reserved.
 *
 * Apply / unwind protocol (the VM layer interleaves its page-table work):
 *
 *	create(L1)  apply L1[0..]   create(L2)  apply L2[0..k]
 *	    ... failure before the point of no return:
 *	unapply L2[k..0]  unapply L1[..0]  fini(L2)  fini(L1)
 *	    ... or success:
 *	collect `old` of every APPLIED op  fini(L2)  fini(L1)
 *
 * Each op is applied at most once and, if applied, unwound at most once;
 * ops are applied in list order and unwound in the exact reverse order of
 * application, across lists.  A list is only valid against the space state
 * it was created for: do not create a list, change the space through
 * another, then apply the first.
 *
 * Ownership (the space owns nothing: mappings in the tree belong to the VM
 * layer, and the va layer only ever frees what it allocated and never
 * handed over):
 *
 *	op state   op->old                 op->prev / next / map
 *	CREATED    in the space            owned by the list
 *	APPLIED    out of the space; the   in the space
 *	           caller's, but must stay
 *	           alive until fini (unwind
 *	           reinserts it)
 *	UNWOUND    in the space again      owned by the list
 *
 *	after fini: APPLIED ops: old is the caller's to free or defer (read it
 *	before or after fini: fini never touches it); the new mappings stay in
 *	the space (the caller's, like every mapping).  Other ops: the list's
 *	new mappings are freed; old is untouched (in the space).
 *
 * A mapping a later list takes away is that list's `old`; so when several
 * applied lists commit, freeing `old` of every APPLIED op of every list
 * frees each removed mapping exactly once.
 *
 * Example (one map request, no failure after the point of no return):
 *
 *	struct gvm_va_ops ops;
 *
 *	err = gvm__va_map_ops_create(&vm->va, addr, range, bo, off,
 *				     GVM_VA_KIND_BO, &ops);
 *	if (err)
 *		return err;
 *	for (i = 0; i < ops.nr; i++) {
 *		gvm__va_op_apply(&vm->va, &ops.op[i]);
 *		err = prepare_page_tables(vm, &ops.op[i]);
 *		if (err) {
 *			gvm__va_ops_unapply(&ops);	// ops i, ..., 0
 *			gvm__va_ops_fini(&ops);
 *			return err;
 *		}
 *	}
 *	for (i = 0; i < ops.nr; i++)
 *		if (ops.op[i].old)
 *			vma_destroy_deferred(ops.op[i].old);
 *	gvm__va_ops_fini(&ops);
 *
 * Locking: none.  The VM layer holds vm->lock (write) around create, apply,
 * unapply and fini, and at least vm->lock (read) around lookups.
 *
 * Cost: creating a list is one overlap walk, O(log n + k) for k mappings
 * touched, with the va layer's allocations: the MAP mapping, prev, next,
 * and for lists longer than GVM_VA_OPS_INL the op array, which doubles as
 * the walk fills it (ceil(log2(k / 2)) arrays for k ops: one for 3 or 4),
 * plus the tree's reservation.  Applying it costs no descent for the ops
 * next to the mapping the walk found first: the walk leaves the tree's
 * finger there (itree.h), and the remove and the inserts of a split or a
 * merge reuse its path.  The reservation covers the unwind too, so an unmap of k mappings reserves nodes for k reinserts
 * (about k / 8 nodes per tree level, bounded by the tree's own size); a
 * caller that cannot afford that for a huge unmap must split it.
 *
 * What this does not do: merge neighbours (see above); know about page
 * tables, BOs, fences or PTE sizes (the VM layer decides whether a REMAP
 * piece can keep its PTEs); validate obj_offset + range against the BO's
 * size (the VM layer knows it); PREFETCH or UNMAP_ALL (the VM layer walks
 * the mappings itself); concurrency of any kind.
 */
#include "vm/va.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/debug.h"

/* ---- helpers ---------------------------------------------------------------- */

/* Kinds whose obj_offset moves with the address (BO offset, CPU address). */
static bool kind_has_offset(uint32_t kind)
{
	return kind == GVM_VA_KIND_BO || kind == GVM_VA_KIND_USERPTR;
}

static bool range_ok(const struct gvm_va_space *space, uint64_t addr,
		     uint64_t range)
{
	if (!range || !gvm__page_aligned(addr) || !gvm__page_aligned(range))
		return false;
	if (addr + range - 1 < addr)			/* wraps */
		return false;
	return addr >= space->start &&
	       addr + range - 1 <= space->start + space->range - 1;
}

static bool backing_ok(uint64_t range, const void *obj, uint64_t obj_offset,
		       uint32_t flags)
{
	const uint32_t kind = flags & GVM_VA_KIND_MASK;

	if (flags & ~GVM_VA_FLAGS_ALL)
		return false;
	if ((kind == GVM_VA_KIND_BO) != (obj != NULL))
		return false;
	if (!kind_has_offset(kind))
		return obj_offset == 0;
	if (!gvm__page_aligned(obj_offset))
		return false;
	return obj_offset + (range - 1) >= obj_offset;	/* no wrap */
}

/* A spare of @space (zeroed), or NULL if every slot is empty. */
static struct gvm_va *spare_take(struct gvm_va_space *space)
{
	for (size_t i = 0; i < GVM_VA_SPARES; i++) {
		struct gvm_va *va;

		if (!gvm_load_relaxed(&space->spare[i]))
			continue;
		va = gvm_xchg_acquire(&space->spare[i], NULL);
		if (va) {
			memset(va, 0, space->va_size);
			return va;
		}
	}
	return NULL;
}

void gvm__va_free(struct gvm_va_space *space, struct gvm_va *va)
{
	for (size_t i = 0; va && i < GVM_VA_SPARES; i++) {
		struct gvm_va *none = NULL;

		if (!gvm_load_relaxed(&space->spare[i]) &&
		    gvm_cmpxchg_release(&space->spare[i], &none, va))
			return;
	}
	gvm__free(va);
}

static struct gvm_va *va_alloc(struct gvm_va_space *space,
			       uint64_t addr, uint64_t range, void *obj,
			       uint64_t obj_offset, uint32_t flags)
{
	struct gvm_va *va = spare_take(space);

	if (!va)
		va = gvm__calloc(1, space->va_size);
	if (!va)
		return NULL;
	va->addr = addr;
	va->range = range;
	va->obj = obj;
	va->obj_offset = obj_offset;
	va->flags = flags;
	return va;
}

/* Inserts an op may do when applied, and when unwound. */
static size_t op_apply_inserts(const struct gvm_va_op *op)
{
	return (op->prev != NULL) + (op->next != NULL) + (op->map != NULL);
}

static size_t op_unwind_inserts(const struct gvm_va_op *op)
{
	return op->old != NULL;
}

/* Inserts the op may still do in its state (its share of the reservation). */
static size_t op_pending_inserts(const struct gvm_va_op *op)
{
	switch (op->state) {
	case GVM_VA_OP_CREATED:
		return op_apply_inserts(op) + op_unwind_inserts(op);
	case GVM_VA_OP_APPLIED:
		return op_unwind_inserts(op);
	case GVM_VA_OP_UNWOUND:
		break;
	}
	return 0;
}

static void op_free_new(struct gvm_va_op *op)
{
	gvm__free(op->prev);
	gvm__free(op->next);
	gvm__free(op->map);
	op->prev = op->next = op->map = NULL;
}

/* ---- space ------------------------------------------------------------------ */

int gvm__va_space_init(struct gvm_va_space *space, uint64_t start,
		       uint64_t range, size_t va_size)
{
	if (!range || !gvm__page_aligned(start) || !gvm__page_aligned(range) ||
	    start + range - 1 < start || va_size < sizeof(struct gvm_va))
		return -EINVAL;
	space->start = start;
	space->range = range;
	space->va_size = va_size;
	gvm__itree_init(&space->tree);
	space->nr_lists = 0;
	space->pending_inserts = 0;
	memset(space->spare, 0, sizeof(space->spare));
	return 0;
}

void gvm__va_space_fini(struct gvm_va_space *space,
			void (*release)(struct gvm_va *va, void *arg),
			void *arg)
{
	struct gvm_itree_iter it;

	GVM_WARN_ON(space->nr_lists != 0);
	for (void *p = gvm__itree_iter_first(&space->tree, &it, 0, UINT64_MAX);
	     p; p = gvm__itree_iter_next(&it)) {
		struct gvm_va *va = p;

		va->inserted = false;
		if (release)
			release(va, arg);
	}
	gvm__itree_fini(&space->tree);
	space->nr_lists = 0;
	space->pending_inserts = 0;
	for (size_t i = 0; i < GVM_VA_SPARES; i++) {
		gvm__free(space->spare[i]);
		space->spare[i] = NULL;
	}
}

/* ---- lookups ---------------------------------------------------------------- */

struct gvm_va *gvm__va_find(const struct gvm_va_space *space, uint64_t addr)
{
	return gvm__itree_find(&space->tree, addr);
}

struct gvm_va *gvm__va_first(const struct gvm_va_space *space, uint64_t addr,
			     uint64_t range, struct gvm_va_iter *iter)
{
	uint64_t last = addr + range - 1;

	if (!range) {
		/* An empty query: leave an iterator that ends at once. */
		return gvm__itree_iter_first(&space->tree, &iter->it, 1, 0);
	}
	if (last < addr)
		last = UINT64_MAX;
	return gvm__itree_iter_first(&space->tree, &iter->it, addr, last);
}

struct gvm_va *gvm__va_next(struct gvm_va_iter *iter)
{
	return gvm__itree_iter_next(&iter->it);
}

/* ---- op list creation ------------------------------------------------------- */

/*
 * Builds the UNMAP/REMAP op for @old, a mapping overlapping [addr, last],
 * into *@o.  On -ENOMEM frees what it allocated.
 */
static int split_op_fill(struct gvm_va_space *space, uint64_t addr,
			 uint64_t last, struct gvm_va *old,
			 struct gvm_va_op *o)
{
	const uint64_t olast = gvm__va_last(old);

	*o = (struct gvm_va_op){ .kind = GVM_VA_OP_UNMAP, .old = old };
	if (old->addr >= addr && olast <= last)
		return 0;
	o->kind = GVM_VA_OP_REMAP;
	if (old->addr < addr) {
		o->prev = va_alloc(space, old->addr, addr - old->addr,
				   old->obj, old->obj_offset, old->flags);
		if (!o->prev)
			return -ENOMEM;
	}
	if (olast > last) {
		uint64_t skip = last + 1 - old->addr;
		uint64_t off = old->obj_offset;

		if (kind_has_offset(gvm__va_kind(old)))
			off += skip;
		o->next = va_alloc(space, last + 1, olast - last, old->obj,
				   off, old->flags);
		if (!o->next) {
			op_free_new(o);
			return -ENOMEM;
		}
	}
	return 0;
}

/*
 * Shared by map and unmap requests; @map_va is the MAP's mapping or NULL.
 * One overlap walk builds the UNMAP/REMAP ops into an array that starts in
 * ops->op_inl and doubles on the heap as it fills.  The walk leaves the
 * tree's finger on the first mapping it takes away, which the first apply
 * removes: that remove and the inserts next to it skip the descent.
 */
static int ops_create(struct gvm_va_space *space, uint64_t addr,
		      uint64_t range, struct gvm_va *map_va,
		      struct gvm_va_ops *ops)
{
	const uint64_t last = addr + range - 1;
	struct gvm_itree_iter it;
	struct gvm_va_op *op = ops->op_inl;
	size_t cap = GVM_VA_OPS_INL, n = 0, nr, inserts = 0;
	int err;

	for (void *p = gvm__itree_iter_first(&space->tree, &it, addr, last);
	     p; p = gvm__itree_iter_next(&it)) {
		if (!n)
			gvm__itree_set_finger(&space->tree, &it);
		err = GVM_GROW_INL(op, cap, n + 1, ops->op_inl);
		if (err)
			goto err_free_new;
		err = split_op_fill(space, addr, last, p, &op[n]);
		if (err)
			goto err_free_new;
		n++;
	}
	nr = n + (map_va != NULL);
	if (map_va) {
		err = GVM_GROW_INL(op, cap, nr, ops->op_inl);
		if (err)
			goto err_free_new;
		op[n] = (struct gvm_va_op){ .kind = GVM_VA_OP_MAP,
					    .map = map_va };
	}
	for (size_t i = 0; i < nr; i++)
		inserts += op_pending_inserts(&op[i]);

	err = gvm__itree_reserve(&space->tree,
				 space->pending_inserts + inserts);
	if (err)
		goto err_free_new;
	space->pending_inserts += inserts;
	space->nr_lists++;
	ops->space = space;
	ops->op = nr ? op : NULL;
	ops->nr = nr;
	return 0;

err_free_new:
	while (n--)		/* not the MAP: the caller frees it */
		op_free_new(&op[n]);
	GVM_FREE_INL(op, ops->op_inl);
	return err;
}

static void ops_clear(struct gvm_va_ops *ops)
{
	ops->space = NULL;
	ops->op = NULL;
	ops->nr = 0;
}

int gvm__va_map_ops_create(struct gvm_va_space *space, uint64_t addr,
			   uint64_t range, void *obj, uint64_t obj_offset,
			   uint32_t flags, struct gvm_va_ops *ops)
{
	struct gvm_va *va;
	int err;

	ops_clear(ops);
	if (!range_ok(space, addr, range) ||
	    !backing_ok(range, obj, obj_offset, flags))
		return -EINVAL;
	va = va_alloc(space, addr, range, obj, obj_offset, flags);
	if (!va)
		return -ENOMEM;
	err = ops_create(space, addr, range, va, ops);
	if (err)
		gvm__free(va);
	return err;
}

int gvm__va_unmap_ops_create(struct gvm_va_space *space, uint64_t addr,
			     uint64_t range, struct gvm_va_ops *ops)
{
	ops_clear(ops);
	if (!range_ok(space, addr, range))
		return -EINVAL;
	return ops_create(space, addr, range, NULL, ops);
}

/* ---- apply / unwind --------------------------------------------------------- */

static void va_insert(struct gvm_va_space *space, struct gvm_va *va)
{
	gvm_assert(!va->inserted);
	gvm_assert(space->pending_inserts > 0);
	gvm_assert_slow(!gvm__itree_find_first(&space->tree, va->addr,
					       gvm__va_last(va), NULL, NULL));
	/* Cannot fail: the list's create reserved the nodes. */
	GVM_BUG_ON(gvm__itree_insert(&space->tree, va->addr, gvm__va_last(va),
				     va) != 0);
	va->inserted = true;
	space->pending_inserts--;
}

static void va_remove(struct gvm_va_space *space, struct gvm_va *va)
{
	gvm_assert(va->inserted);
	GVM_BUG_ON(gvm__itree_remove(&space->tree, va->addr, va) != 0);
	va->inserted = false;
}

void gvm__va_op_apply(struct gvm_va_space *space, struct gvm_va_op *op)
{
	gvm_assert(op->state == GVM_VA_OP_CREATED);
	gvm_assert(space->nr_lists > 0);
	switch (op->kind) {
	case GVM_VA_OP_MAP:
		va_insert(space, op->map);
		break;
	case GVM_VA_OP_REMAP:
		va_remove(space, op->old);
		if (op->prev)
			va_insert(space, op->prev);
		if (op->next)
			va_insert(space, op->next);
		break;
	case GVM_VA_OP_UNMAP:
		va_remove(space, op->old);
		break;
	}
	op->state = GVM_VA_OP_APPLIED;
	gvm_assert_slow(gvm__va_validate(space) == 0);
}

void gvm__va_op_unapply(struct gvm_va_space *space, struct gvm_va_op *op)
{
	gvm_assert(op->state == GVM_VA_OP_APPLIED);
	switch (op->kind) {
	case GVM_VA_OP_MAP:
		va_remove(space, op->map);
		break;
	case GVM_VA_OP_REMAP:
		if (op->next)
			va_remove(space, op->next);
		if (op->prev)
			va_remove(space, op->prev);
		va_insert(space, op->old);
		break;
	case GVM_VA_OP_UNMAP:
		va_insert(space, op->old);
		break;
	}
	op->state = GVM_VA_OP_UNWOUND;
	gvm_assert_slow(gvm__va_validate(space) == 0);
}

void gvm__va_ops_apply(struct gvm_va_ops *ops)
{
	for (size_t i = 0; i < ops->nr; i++)
		gvm__va_op_apply(ops->space, &ops->op[i]);
}

void gvm__va_ops_unapply(struct gvm_va_ops *ops)
{
	for (size_t i = ops->nr; i-- > 0;)
		if (ops->op[i].state == GVM_VA_OP_APPLIED)
			gvm__va_op_unapply(ops->space, &ops->op[i]);
}

void gvm__va_ops_fini(struct gvm_va_ops *ops)
{
	struct gvm_va_space *space = ops->space;
	size_t pending = 0;

	if (!space)
		return;
	for (size_t i = 0; i < ops->nr; i++) {
		struct gvm_va_op *op = &ops->op[i];

		pending += op_pending_inserts(op);
		if (op->state != GVM_VA_OP_APPLIED)
			op_free_new(op);
	}
	if (ops->op != ops->op_inl)
		gvm__free(ops->op);
	ops_clear(ops);

	gvm_assert(space->nr_lists > 0 && space->pending_inserts >= pending);
	space->pending_inserts -= pending;
	if (--space->nr_lists == 0) {
		GVM_WARN_ON(space->pending_inserts != 0);
		space->pending_inserts = 0;
		gvm__itree_unreserve(&space->tree);
	}
}

/* ---- validation ------------------------------------------------------------- */

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "gvm va validate: " __VA_ARGS__);  \
			fputc('\n', stderr);                               \
			return -EUCLEAN;                                   \
		}                                                          \
	} while (0)

int gvm__va_validate(const struct gvm_va_space *space)
{
	const uint64_t space_last = space->start + space->range - 1;
	struct gvm_itree_iter it;
	uint64_t next_free = space->start;	/* first address not yet used */
	bool any = false;
	size_t n = 0;

	CHECK(gvm__itree_validate(&space->tree) == 0, "tree invalid");
	CHECK(space->va_size >= sizeof(struct gvm_va), "va_size %zu",
	      space->va_size);
	if (space->nr_lists == 0) {
		CHECK(space->pending_inserts == 0,
		      "%zu pending inserts, no list", space->pending_inserts);
		CHECK(!space->tree.reserved, "reservation without a list");
	} else {
		CHECK(space->tree.reserved, "%zu lists, no reservation",
		      space->nr_lists);
	}
	for (void *p = gvm__itree_iter_first(&space->tree, &it, 0, UINT64_MAX);
	     p; p = gvm__itree_iter_next(&it)) {
		const struct gvm_va *va = p;

		n++;
		CHECK(va->inserted, "va %#" PRIx64 " not marked inserted",
		      va->addr);
		CHECK(va->range && gvm__page_aligned(va->addr) &&
		      gvm__page_aligned(va->range),
		      "va %#" PRIx64 "+%#" PRIx64 " misaligned or empty",
		      va->addr, va->range);
		CHECK(it.start == va->addr && it.last == gvm__va_last(va),
		      "va %#" PRIx64 " keyed [%#" PRIx64 ", %#" PRIx64 "]",
		      va->addr, it.start, it.last);
		CHECK(va->addr >= space->start && it.last >= va->addr &&
		      it.last <= space_last,
		      "va %#" PRIx64 "+%#" PRIx64 " outside the space",
		      va->addr, va->range);
		CHECK(!any || va->addr >= next_free,
		      "va %#" PRIx64 " overlaps its predecessor (ends %#" PRIx64
		      ")", va->addr, next_free);
		CHECK(backing_ok(va->range, va->obj, va->obj_offset, va->flags),
		      "va %#" PRIx64 " bad backing (flags %#x)", va->addr,
		      va->flags);
		next_free = it.last + 1;	/* 0 after the top: loop ends */
		any = true;
	}
	CHECK(n == gvm__itree_count(&space->tree), "count %zu, walked %zu",
	      gvm__itree_count(&space->tree), n);
	return 0;
}
