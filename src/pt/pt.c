// SPDX-License-Identifier: MIT
/*
 * Page-table engine: one GPU VM's page tables, written once for every
 * format (the format is a header of inline functions, pt/pt_fmt.h).
 *
 * FORMAT.  The simulated GPU (fmt_sim.h): tables of 512 8-byte entries,
 * 4 levels for 48-bit VAs, 5 for 57-bit.  Leaves at level 0 (4 KiB),
 * 1 (2 MiB) and 2 (1 GiB); 4 KiB PTEs carry a 64 KiB "contiguous" hint when
 * 16 aligned PTEs map 64 KiB of contiguous, aligned memory.  An entry is
 * empty (0), a valid leaf, a zapped leaf (invalid to the GPU, slot still in
 * use) or a directory entry (VALID | next table's device address).
 *
 * TABLE LIFETIME.  Table pages are 4 KiB blocks of the device-memory buddy
 * (struct gvm_pt_mem), written by the CPU through cpu_base.  Each has a
 * host shadow (struct gvm_pt): children[] and the live count, so walks
 * never decode addresses.  A table is created by a prepare that needs it,
 * connected by the commit, and unlinked by the commit that empties it (or
 * covers it with a huge leaf); unlinked tables are freed at once or handed
 * back for freeing after the TLB invalidation.  The root is never freed.
 * Binds and unbinds replace whatever was there; a huge leaf partly covered
 * is split into a new table replicating it (split recursively down to the
 * level the op needs).
 *
 * PAGE SIZE.  At each entry the walk writes the largest leaf that the VA
 * alignment, the remaining range and the backing allow (the backing block
 * must lie in one extent and be aligned to the page size); otherwise it
 * descends.  The walk descends once from the root and fills runs of entries
 * at each table; level-0 runs are filled in a tight loop per extent.
 *
 * STAGING.  A bind or unbind is prepared, then committed or aborted:
 *  - prepare allocates everything.  Tables it creates are "new" (not
 *    reachable from the committed tree) and written directly.  For each
 *    connected table it visits it records one struct gvm_pt_rec: the entry
 *    range [first, first + count) with old and new entries and children,
 *    and the staged live count.  The committed tables are not written.
 *  - commit writes the recorded entries into the connected tables (children
 *    first, so a subtree is complete before it is linked), applies the live
 *    counts, unlinks dropped subtrees, clears "new".  No allocation, no
 *    failure.  abort frees the new tables and the records.
 *  - walkers pick a view: COMMITTED (cpu[]/children[]: what the GPU sees)
 *    or STAGING (a table's record overrides its committed entries).
 *
 * ZAP DURING PREPARE (seed 000).  A zap (invalidation, under the notifier
 * lock) may run between prepare and commit of an update (prepare runs under
 * vm->lock only, since it allocates; commit runs under the notifier lock
 * too).  The zap walks the committed view only, so it never sees half-built
 * subtrees, and turns valid leaves into zapped ones in place (live counts
 * unchanged, so the staged counts stay right):
 *
 *     vm->lock holder                 notifier (notifier_lock)
 *     ---------------                 ------------------------
 *     prepare(bind [a, b))
 *       records old = C[i], new = N[i]
 *                                     zap([z0, z1)) on committed tables:
 *                                       C[i] -> zapped(C[i])
 *     lock notifier_lock
 *     (caller re-checks its seqno)
 *     commit:
 *       entry owned by the op         -> write N[i]  (the op's own mapping)
 *       entry not owned, C[i] == old  -> write N[i]
 *       entry not owned, C[i] != old  -> keep C[i]; if N[i] links a split
 *                                        copy of the zapped huge leaf, zap
 *                                        the copy's leaves outside [a, b)
 *                                        first, then link it
 *
 * The rule: commit writes unconditionally only the entries the op owns
 * (those whose whole VA span lies in [a, b)); every other entry it touches
 * (64 KiB-hint fix-ups of neighbours, split copies of a huge leaf) is
 * written only if no zap changed it since prepare, so a commit never
 * resurrects a zapped mapping outside its range.  Inside its range the op
 * wins: the engine cannot know whether a zap there was aimed at the old or
 * the new mapping, so the caller re-checks its invalidation sequence under
 * the notifier lock before commit and aborts + retries if it moved (the
 * userptr protocol).  The staging view applies the same rule, so it always
 * shows what commit would produce.
 *
 * INVARIANTS (committed view, checked by gvm__pt_validate()):
 *   t->live == #{ i : t->cpu[i] != 0 }
 *   t->children[i] != NULL  <=>  is_dir(t->cpu[i]),
 *   addr(t->cpu[i]) == t->children[i]->dev_addr, child level == level - 1
 *   t->live > 0 for every table but the root
 *   leaves only at levels 0..MAX_LEAF_LEVEL
 *   CONT on one entry of a 16-group => all 16 valid, equal attributes,
 *     addr(e[g + k]) == addr(e[g]) + k * 4 KiB, addr(e[g]) % 64 KiB == 0
 *   vm->nr_tables == #reachable tables + #new tables of the pending update
 *
 * LOCKING.  None inside.  The VM layer serialises prepare, commit, abort,
 * unbind and bind (vm->lock) and takes the notifier lock around commit and
 * zap.  What may run concurrently: nothing, except that a zap may come
 * between a prepare and its commit/abort (serialised with them by the
 * notifier lock, never truly in parallel); the engine guarantees that the
 * zap sees a consistent committed tree and that commit follows the rule
 * above.  Translation of the committed view needs the notifier lock or
 * vm->lock; of the staging view, vm->lock.  At most one update is pending.
 *
 * EXAMPLE.
 *	struct gvm_pt_update upd;
 *	struct gvm_pt_free_list dead = { 0 };
 *	struct gvm_pt_tlb tlb;
 *	ext[0] = (struct gvm_pt_extent){ bo_dev_addr, size };
 *	err = gvm__pt_bind_prepare(vm, va, size, ext, 1,
 *				   GVM_PT_WRITE | GVM_PT_DEVMEM, &upd);
 *	if (err) return err;			// nothing changed
 *	lock(notifier_lock);
 *	if (seqno moved) { unlock; gvm__pt_update_abort(&upd); retry; }
 *	gvm__pt_update_commit(&upd, &tlb, &dead);
 *	unlock(notifier_lock);
 *	invalidate tlb; wait; gvm__pt_free_deferred(vm, &dead);
 *
 * WHAT IT DOES NOT DO.  No GPU-side updates (the CPU writes the tables; a
 * job-based writer would replay the records), one pending update per VM
 * (a bind array is a sequence of prepare/commit pairs for now), no scratch
 * pages (empty entries fault), no 64 KiB hint across extents or with
 * neighbours outside the op, contiguity only within one extent, no
 * canonical (sign-extended) VAs.
 */
#include "pt/pt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/debug.h"
#include "core/list.h"

#define PT_PAGE		(1ull << GVM_PTF_PAGE_LG2)
#define PT_N		GVM_PTF_ENTRIES
#define PT_CONT		GVM_PTF_CONT_ENTRIES

/* The staged change of one connected table (see STAGING). */
struct gvm_pt_rec {
	struct gvm_pt *table;
	struct gvm_pt_rec *next;
	uint64_t base;			/* VA of the table's entry 0 */
	unsigned int first, count;	/* entry range */
	unsigned int new_live;		/* live count after commit */
	uint64_t *new_e, *old_e;	/* [count] */
	struct gvm_pt **new_c;		/* [count], NULL at level 0; the old
					   children are table->children[]
					   (only commits change those) */
	uint64_t data[];
};

/* State of one prepare walk. */
struct walk {
	struct gvm_pt_update *upd;
	struct gvm_pt_vm *vm;
	uint64_t va, end;
	uint64_t attrs;			/* leaf attributes (bind) */
	bool unbind, null;
	const struct gvm_pt_extent *ext;
	size_t n, xi;			/* extents, current one */
	uint64_t xoff;			/* offset in ext[xi] */
};

/* Entries of a table as the walk sees and writes them. */
struct tview {
	uint64_t *e;			/* index i at e[i - off] */
	struct gvm_pt **c;		/* same, NULL at level 0 */
	unsigned int off;
	unsigned int live;
	bool fresh;			/* all entries known zero */
};

static inline uint64_t span_of(unsigned int level)
{
	return 1ull << gvm__ptf_shift(level);
}

static inline void note_tlb(struct gvm_pt_update *upd, uint64_t lo,
			    uint64_t hi)
{
	if (upd->tlb_hi <= upd->tlb_lo) {
		upd->tlb_lo = lo;
		upd->tlb_hi = hi;
		return;
	}
	if (lo < upd->tlb_lo)
		upd->tlb_lo = lo;
	if (hi > upd->tlb_hi)
		upd->tlb_hi = hi;
}

static void tlb_range(const struct gvm_pt_vm *vm, uint64_t lo, uint64_t hi,
		      struct gvm_pt_tlb *tlb)
{
	unsigned int k;

	tlb->start = tlb->size = 0;
	tlb->full = false;
	if (hi <= lo)
		return;
	k = lo ^ (hi - 1) ? 64 - (unsigned int)__builtin_clzll(lo ^ (hi - 1))
			  : 0;
	if (k < GVM_PTF_PAGE_LG2)
		k = GVM_PTF_PAGE_LG2;
	if (k > vm->tlb_full_lg2) {
		tlb->full = true;
		return;
	}
	tlb->size = 1ull << k;
	tlb->start = lo & ~(tlb->size - 1);
}

/* ---- table memory ---------------------------------------------------- */

static struct gvm_pt *pt_alloc(struct gvm_pt_vm *vm, unsigned int level,
			       bool zero, int *err)
{
	size_t sz = sizeof(struct gvm_pt) +
		    (level ? PT_N * sizeof(struct gvm_pt *) : 0);
	struct gvm_buddy_block *b;
	struct gvm_list blocks;
	struct gvm_pt *t;
	int ret;

	t = level ? gvm__calloc(1, sz) : gvm__malloc(sz);
	if (!t) {
		*err = -ENOMEM;
		return NULL;
	}
	gvm_list_init(&blocks);
	ret = gvm__buddy_alloc(vm->mem.buddy, 0, vm->mem.buddy->size, PT_PAGE,
			       0, 0, &blocks);
	if (ret) {
		free(t);
		*err = ret;
		return NULL;
	}
	b = gvm_list_first_entry(&blocks, struct gvm_buddy_block, link);
	gvm_list_del(&b->link);
	t->block = b;
	t->cpu = (uint64_t *)(vm->mem.cpu_base + gvm__buddy_block_offset(b));
	t->dev_addr = vm->mem.dev_base + gvm__buddy_block_offset(b);
	t->rec = NULL;
	t->next = NULL;
	t->live = 0;
	t->level = (uint8_t)level;
	t->is_new = 0;
	if (zero)
		memset(t->cpu, 0, PT_PAGE);
	vm->nr_tables++;
	return t;
}

static void pt_free(struct gvm_pt_vm *vm, struct gvm_pt *t)
{
	gvm__buddy_free_block(vm->mem.buddy, t->block);
	free(t);
	vm->nr_tables--;
}

/* A table built by the pending update. */
static struct gvm_pt *pt_new(struct walk *w, unsigned int level, bool zero,
			     int *err)
{
	struct gvm_pt *t = pt_alloc(w->vm, level, zero, err);

	if (!t)
		return NULL;
	t->is_new = 1;
	t->next = w->upd->new_tables;
	w->upd->new_tables = t;
	return t;
}

/* Splits leaf @e at @level into a new table of 512 smaller leaves. */
static struct gvm_pt *pt_split(struct walk *w, uint64_t e, unsigned int level,
			       int *err)
{
	struct gvm_pt *t = pt_new(w, level - 1, false, err);
	bool cont = level - 1 == 0 && gvm__ptf_is_valid(e) &&
		    !gvm__ptf_is_null(e);
	unsigned int i;

	if (!t)
		return NULL;
	for (i = 0; i < PT_N; i++) {
		uint64_t s = gvm__ptf_split_leaf(e, level, i);

		t->cpu[i] = cont ? gvm__ptf_set_cont(s) : s;
	}
	t->live = PT_N;
	return t;
}

/* ---- prepare --------------------------------------------------------- */

static struct gvm_pt_rec *rec_create(struct walk *w, struct gvm_pt *t,
				     uint64_t base, unsigned int first,
				     unsigned int count)
{
	size_t words = (size_t)count * (t->level ? 3 : 2);
	struct gvm_pt_rec *r;

	r = gvm__malloc(sizeof(*r) + words * sizeof(uint64_t));
	if (!r)
		return NULL;
	r->table = t;
	r->base = base;
	r->first = first;
	r->count = count;
	r->new_live = t->live;
	r->new_e = r->data;
	r->old_e = r->data + count;
	memcpy(r->new_e, t->cpu + first, count * sizeof(uint64_t));
	memcpy(r->old_e, t->cpu + first, count * sizeof(uint64_t));
	if (t->level) {
		r->new_c = (struct gvm_pt **)(r->data + 2 * (size_t)count);
		memcpy(r->new_c, t->children + first,
		       count * sizeof(struct gvm_pt *));
	} else {
		r->new_c = NULL;
	}
	/* Head insertion: the list runs children before parents. */
	r->next = w->upd->recs;
	w->upd->recs = r;
	t->rec = r;
	return r;
}

static inline bool backing_fits(const struct walk *w, uint64_t size)
{
	const struct gvm_pt_extent *x;

	if (w->null)
		return true;
	x = &w->ext[w->xi];
	return x->len - w->xoff >= size && !((x->addr + w->xoff) & (size - 1));
}

static inline uint64_t backing_addr(const struct walk *w)
{
	return w->null ? 0 : w->ext[w->xi].addr + w->xoff;
}

static inline void backing_advance(struct walk *w, uint64_t size)
{
	if (w->null)
		return;
	w->xoff += size;
	if (w->xoff == w->ext[w->xi].len) {
		w->xi++;
		w->xoff = 0;
	}
}

/* Clears the 64 KiB hint of group members outside [i0, i1]. */
static void fix_cont_edges(uint64_t *e, unsigned int off, unsigned int i0,
			   unsigned int i1)
{
	unsigned int j;

	if (i0 % PT_CONT)
		for (j = i0 & ~(PT_CONT - 1); j < i0; j++)
			e[j - off] = gvm__ptf_clear_cont(e[j - off]);
	if (i1 % PT_CONT != PT_CONT - 1)
		for (j = i1 + 1; j <= (i1 | (PT_CONT - 1)); j++)
			e[j - off] = gvm__ptf_clear_cont(e[j - off]);
}

/* Level 0: entries [i0, i1] of the table at VA @base. */
static void fill_leaf(struct walk *w, struct tview *v, uint64_t base,
		      unsigned int i0, unsigned int i1)
{
	uint64_t *e = v->e - 0;
	unsigned int off = v->off, i, k;
	int lo = -1, hi = -1;

	for (i = i0; !v->fresh && i <= i1; i++) {
		if (e[i - off]) {
			if (lo < 0)
				lo = (int)i;
			hi = (int)i;
			if (w->unbind)
				e[i - off] = 0;
			v->live--;
		}
	}
	if (lo >= 0)
		note_tlb(w->upd, base + ((uint64_t)lo << GVM_PTF_PAGE_LG2),
			 base + ((uint64_t)(hi + 1) << GVM_PTF_PAGE_LG2));
	if (!w->unbind) {
		v->live += i1 - i0 + 1;
		w->vm->pte_writes[0] += i1 - i0 + 1;
		for (i = i0; i <= i1;) {
			uint64_t addr = backing_addr(w), pte;
			unsigned int n = i1 - i + 1, g0, g1;

			if (!w->null) {
				uint64_t rem = (w->ext[w->xi].len - w->xoff) >>
					       GVM_PTF_PAGE_LG2;

				if (rem < n)
					n = (unsigned int)rem;
			}
			pte = gvm__ptf_mk_leaf(w->attrs, addr, 0);
			g0 = g1 = i;
			if (!w->null &&
			    !(((addr >> GVM_PTF_PAGE_LG2) - i) % PT_CONT)) {
				g0 = (i + PT_CONT - 1) & ~(PT_CONT - 1);
				g1 = (i + n) & ~(PT_CONT - 1);
				if (g1 <= g0)
					g0 = g1 = i;	/* no whole group */
			}
			if (w->null) {
				for (k = 0; k < n; k++)
					e[i + k - off] = pte;
			} else {
				uint64_t *p = e + (i - off);
				uint64_t cpte = gvm__ptf_set_cont(pte);

				for (k = i; k < g0; k++)
					*p++ = pte + ((uint64_t)(k - i) << 12);
				for (; k < g1; k++)
					*p++ = cpte + ((uint64_t)(k - i) << 12);
				for (; k < i + n; k++)
					*p++ = pte + ((uint64_t)(k - i) << 12);
			}
			backing_advance(w, (uint64_t)n << GVM_PTF_PAGE_LG2);
			i += n;
		}
	}
	if (!v->fresh)
		fix_cont_edges(e, off, i0, i1);
}

static int walk_table(struct walk *w, struct gvm_pt *t, uint64_t base,
		      bool fresh, unsigned int *live_out);

/* Levels >= 1: entry @i of a directory. */
static int walk_entry(struct walk *w, struct gvm_pt *t, struct tview *v,
		      uint64_t base, unsigned int i)
{
	unsigned int level = t->level;
	uint64_t span = span_of(level);
	uint64_t eva = base + (uint64_t)i * span, eend = eva + span;
	uint64_t o = v->e[i - v->off];
	struct gvm_pt *oc = v->c[i - v->off], *child;
	bool covers = w->va <= eva && eend <= w->end;
	unsigned int cl;
	int err = 0;

	if (w->unbind) {
		if (!o)
			return 0;
		if (covers) {
			v->e[i - v->off] = 0;
			v->c[i - v->off] = NULL;
			v->live--;
			note_tlb(w->upd, eva, eend);
			return 0;
		}
		child = oc;
		if (!gvm__ptf_is_dir(o, level)) {
			child = pt_split(w, o, level, &err);
			if (!child)
				return err;
			note_tlb(w->upd, eva, eend);
		}
		err = walk_table(w, child, eva, false, &cl);
		if (err)
			return err;
		if (!cl) {
			gvm_assert(child == oc);
			v->e[i - v->off] = 0;
			v->c[i - v->off] = NULL;
			v->live--;
		} else if (child != oc) {
			v->e[i - v->off] = gvm__ptf_mk_dir(child->dev_addr);
			v->c[i - v->off] = child;
		}
		return 0;
	}

	if (covers && gvm__ptf_can_leaf(level) && backing_fits(w, span)) {
		v->e[i - v->off] = gvm__ptf_mk_leaf(w->attrs, backing_addr(w),
						    level);
		v->c[i - v->off] = NULL;
		backing_advance(w, span);
		w->vm->pte_writes[level]++;
		if (o)
			note_tlb(w->upd, eva, eend);
		else
			v->live++;
		return 0;
	}
	child = gvm__ptf_is_dir(o, level) ? oc : NULL;
	if (!child) {
		bool fresh = !o || covers;

		if (fresh)
			child = pt_new(w, level - 1,
				       !(covers && level - 1 == 0), &err);
		else
			child = pt_split(w, o, level, &err);
		if (!child)
			return err;
		if (o)
			note_tlb(w->upd, eva, eend);
		else
			v->live++;
		err = walk_table(w, child, eva, fresh, &cl);
		if (err)
			return err;
		v->e[i - v->off] = gvm__ptf_mk_dir(child->dev_addr);
		v->c[i - v->off] = child;
		return 0;
	}
	return walk_table(w, child, eva, false, &cl);
}

static int walk_table(struct walk *w, struct gvm_pt *t, uint64_t base,
		      bool fresh, unsigned int *live_out)
{
	unsigned int level = t->level, sh = gvm__ptf_shift(level);
	uint64_t top = base + (span_of(level) << GVM_PTF_ENTRIES_LG2);
	uint64_t lo = w->va > base ? w->va : base;
	uint64_t hi = w->end < top ? w->end : top;
	unsigned int i0 = (unsigned int)((lo - base) >> sh);
	unsigned int i1 = (unsigned int)((hi - 1 - base) >> sh), i;
	struct gvm_pt_rec *r = NULL;
	struct tview v;
	int err = 0;

	if (!t->is_new) {
		unsigned int first = i0, last = i1;

		if (level == 0) {
			first &= ~(PT_CONT - 1);
			last |= PT_CONT - 1;
		}
		r = rec_create(w, t, base, first, last - first + 1);
		if (!r)
			return -ENOMEM;
		v.e = r->new_e;
		v.c = r->new_c;
		v.off = first;
		v.live = r->new_live;
		v.fresh = false;
	} else {
		v.e = t->cpu;
		v.c = level ? t->children : NULL;
		v.off = 0;
		v.live = t->live;
		v.fresh = fresh;
	}

	if (level == 0) {
		fill_leaf(w, &v, base, i0, i1);
	} else {
		for (i = i0; i <= i1 && !err; i++)
			err = walk_entry(w, t, &v, base, i);
	}
	if (r)
		r->new_live = v.live;
	else
		t->live = (uint16_t)v.live;
	*live_out = v.live;
	return err;
}

static int check_range(const struct gvm_pt_vm *vm, uint64_t va,
		       uint64_t size)
{
	if (!size || ((va | size) & (PT_PAGE - 1)))
		return -EINVAL;
	if (va + size < va)
		return -EINVAL;
	if (vm->va_bits < 64 && va + size > (1ull << vm->va_bits))
		return -EINVAL;
	return 0;
}

static int prepare(struct walk *w)
{
	struct gvm_pt_vm *vm = w->vm;
	struct gvm_pt_update *upd = w->upd;
	unsigned int live;
	int err;

	if (vm->pending)
		return -EBUSY;
	memset(upd, 0, sizeof(*upd));
	upd->vm = vm;
	upd->va = w->va;
	upd->end = w->end;
	upd->unbind = w->unbind;
	vm->pending = upd;
	err = walk_table(w, vm->root, 0, false, &live);
	if (err) {
		gvm__pt_update_abort(upd);
		return err;
	}
	gvm_assert(w->unbind || w->null || w->xi == w->n);
	return 0;
}

int gvm__pt_bind_prepare(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
			 const struct gvm_pt_extent *ext, size_t n,
			 unsigned int flags, struct gvm_pt_update *upd)
{
	struct walk w = { .upd = upd, .vm = vm, .va = va, .end = va + size,
			  .ext = ext, .n = n };
	bool null = flags & GVM_PT_NULL;
	uint64_t total = 0;
	size_t k;
	int err;

	err = check_range(vm, va, size);
	if (err)
		return err;
	if (flags & ~GVM_PT_FLAGS_ALL)
		return -EINVAL;
	if (null) {
		if (n || (flags & GVM_PT_DEVMEM))
			return -EINVAL;
	} else {
		if (!n || !ext)
			return -EINVAL;
		for (k = 0; k < n; k++) {
			uint64_t a = ext[k].addr, l = ext[k].len;

			if (!l || ((a | l) & (PT_PAGE - 1)) || a + l < a ||
			    a + l > (1ull << GVM_PTF_ADDR_BITS) ||
			    total + l < total)
				return -EINVAL;
			total += l;
		}
		if (total != size)
			return -EINVAL;
	}
	w.null = null;
	w.attrs = gvm__ptf_attrs(flags & GVM_PT_WRITE, flags & GVM_PT_DEVMEM,
				 flags & GVM_PT_ATOMIC, null,
				 (flags >> GVM_PT_PAT_SHIFT) & 7);
	return prepare(&w);
}

int gvm__pt_unbind_prepare(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
			   struct gvm_pt_update *upd)
{
	struct walk w = { .upd = upd, .vm = vm, .va = va, .end = va + size,
			  .unbind = true };
	int err = check_range(vm, va, size);

	if (err)
		return err;
	return prepare(&w);
}

/* ---- commit / abort ---------------------------------------------------- */

static void drop_subtree(struct gvm_pt *t, struct gvm_pt_free_list *list)
{
	unsigned int i;

	if (t->level)
		for (i = 0; i < PT_N; i++)
			if (t->children[i])
				drop_subtree(t->children[i], list);
	t->next = list->head;
	list->head = t;
	list->nr++;
}

/* Zaps the leaves of new subtree @t (at VA @base) outside [va, end). */
static void zap_outside(struct gvm_pt *t, uint64_t base, uint64_t va,
			uint64_t end)
{
	uint64_t span = span_of(t->level);
	unsigned int i;

	for (i = 0; i < PT_N; i++) {
		uint64_t e = t->cpu[i], a = base + i * span;

		if (!e)
			continue;
		if (gvm__ptf_is_dir(e, t->level))
			zap_outside(t->children[i], a, va, end);
		else if ((a + span <= va || a >= end) && gvm__ptf_is_valid(e))
			t->cpu[i] = gvm__ptf_zap(e);
	}
}

void gvm__pt_update_commit(struct gvm_pt_update *upd, struct gvm_pt_tlb *tlb,
			   struct gvm_pt_free_list *deferred)
{
	struct gvm_pt_vm *vm = upd->vm;
	struct gvm_pt_free_list local = { 0 };
	struct gvm_pt_free_list *list = deferred ? deferred : &local;
	struct gvm_pt_rec *r, *next;
	struct gvm_pt *t;

	GVM_BUG_ON(vm->pending != upd);
	for (r = upd->recs; r; r = next) {
		uint64_t span;
		unsigned int k;

		next = r->next;
		t = r->table;
		span = span_of(t->level);
		for (k = 0; k < r->count; k++) {
			unsigned int i = r->first + k;
			uint64_t n = r->new_e[k], o = r->old_e[k];
			struct gvm_pt *nc = r->new_c ? r->new_c[k] : NULL;
			struct gvm_pt *oc = t->level ? t->children[i] : NULL;
			uint64_t eva = r->base + i * span;

			if (n == o && nc == oc)
				continue;
			if (t->cpu[i] != o &&
			    !(upd->va <= eva && eva + span <= upd->end)) {
				/* Zapped since prepare, not ours (rule). */
				if (!nc || nc == oc)
					continue;
				zap_outside(nc, eva, upd->va, upd->end);
			}
			t->cpu[i] = n;
			if (t->level)
				t->children[i] = nc;
			if (oc && oc != nc)
				drop_subtree(oc, list);
		}
		t->live = (uint16_t)r->new_live;
		t->rec = NULL;
		free(r);
	}
	for (t = upd->new_tables; t; t = t->next)
		t->is_new = 0;
	if (tlb)
		tlb_range(vm, upd->tlb_lo, upd->tlb_hi, tlb);
	upd->recs = NULL;
	upd->new_tables = NULL;
	vm->pending = NULL;
	if (!deferred)
		gvm__pt_free_deferred(vm, &local);
}

void gvm__pt_update_abort(struct gvm_pt_update *upd)
{
	struct gvm_pt_vm *vm = upd->vm;
	struct gvm_pt_rec *r, *rn;
	struct gvm_pt *t, *tn;

	GVM_BUG_ON(vm->pending != upd);
	for (r = upd->recs; r; r = rn) {
		rn = r->next;
		r->table->rec = NULL;
		free(r);
	}
	for (t = upd->new_tables; t; t = tn) {
		tn = t->next;
		pt_free(vm, t);
	}
	upd->recs = NULL;
	upd->new_tables = NULL;
	vm->pending = NULL;
}

void gvm__pt_free_deferred(struct gvm_pt_vm *vm,
			   struct gvm_pt_free_list *list)
{
	struct gvm_pt *t, *tn;

	for (t = list->head; t; t = tn) {
		tn = t->next;
		pt_free(vm, t);
	}
	list->head = NULL;
	list->nr = 0;
}

int gvm__pt_bind(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
		 const struct gvm_pt_extent *ext, size_t n, unsigned int flags,
		 struct gvm_pt_tlb *tlb)
{
	struct gvm_pt_update upd;
	int err = gvm__pt_bind_prepare(vm, va, size, ext, n, flags, &upd);

	if (err)
		return err;
	gvm__pt_update_commit(&upd, tlb, NULL);
	return 0;
}

int gvm__pt_unbind(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
		   struct gvm_pt_tlb *tlb)
{
	struct gvm_pt_update upd;
	int err = gvm__pt_unbind_prepare(vm, va, size, &upd);

	if (err)
		return err;
	gvm__pt_update_commit(&upd, tlb, NULL);
	return 0;
}

/* ---- zap ------------------------------------------------------------- */

static void zap_table(struct gvm_pt *t, uint64_t base, uint64_t va,
		      uint64_t end, struct gvm_pt_update *acc)
{
	unsigned int level = t->level, sh = gvm__ptf_shift(level);
	uint64_t span = span_of(level);
	uint64_t top = base + (span << GVM_PTF_ENTRIES_LG2);
	uint64_t lo = va > base ? va : base, hi = end < top ? end : top;
	unsigned int i0 = (unsigned int)((lo - base) >> sh);
	unsigned int i1 = (unsigned int)((hi - 1 - base) >> sh), i, g;

	for (i = i0; i <= i1; i++) {
		uint64_t e = t->cpu[i], a = base + i * span;

		if (!e)
			continue;
		if (gvm__ptf_is_dir(e, level)) {
			zap_table(t->children[i], a, va, end, acc);
		} else if (gvm__ptf_is_valid(e)) {
			t->cpu[i] = gvm__ptf_zap(e);
			note_tlb(acc, a, a + span);
		}
	}
	if (level)
		return;
	/* Survivors of a partly zapped 64 KiB run lose the hint. */
	for (g = i0 & ~(PT_CONT - 1); g <= i1; g += PT_CONT) {
		bool had = false;

		for (i = g; i < g + PT_CONT; i++) {
			had |= gvm__ptf_has_cont(t->cpu[i]);
			t->cpu[i] = gvm__ptf_clear_cont(t->cpu[i]);
		}
		if (had)
			note_tlb(acc, base + g * span,
				 base + (g + PT_CONT) * span);
	}
}

int gvm__pt_zap(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
		struct gvm_pt_tlb *tlb)
{
	struct gvm_pt_update acc = { .vm = vm };
	int err = check_range(vm, va, size);

	if (err)
		return err;
	zap_table(vm->root, 0, va, va + size, &acc);
	if (tlb)
		tlb_range(vm, acc.tlb_lo, acc.tlb_hi, tlb);
	return 0;
}

/* ---- translation ------------------------------------------------------- */

int gvm__pt_translate(const struct gvm_pt_vm *vm, uint64_t va,
		      enum gvm_pt_view view, struct gvm_pt_xlate *out)
{
	const struct gvm_pt_update *upd = vm->pending;
	const struct gvm_pt *t = vm->root;
	bool zap_copy = false;	/* below a split copy of a zapped leaf */
	uint64_t base = 0;

	memset(out, 0, sizeof(*out));
	if (vm->va_bits < 64 && va >= (1ull << vm->va_bits))
		return -ENOENT;
	for (;;) {
		unsigned int level = t->level, i = gvm__ptf_index(va, level);
		uint64_t span = span_of(level), e = t->cpu[i];
		const struct gvm_pt *child = level ? t->children[i] : NULL;
		uint64_t eva = base + i * span;
		const struct gvm_pt_rec *r = t->rec;

		if (view == GVM_PT_VIEW_STAGING && r && i >= r->first &&
		    i < r->first + r->count) {
			uint64_t n = r->new_e[i - r->first];
			uint64_t o = r->old_e[i - r->first];
			struct gvm_pt *nc = r->new_c ? r->new_c[i - r->first]
						     : NULL;
			bool owned = upd->va <= eva && eva + span <= upd->end;

			if (e == o || owned) {
				e = n;
				child = nc;
			} else if (nc && nc != child) {
				/* commit zaps the copy outside the op */
				e = n;
				child = nc;
				zap_copy = true;
			}
		}
		if (!e)
			return -ENOENT;
		if (gvm__ptf_is_dir(e, level)) {
			t = child;
			base = eva;
			continue;
		}
		if (zap_copy && gvm__ptf_is_valid(e) &&
		    (eva + span <= upd->va || eva >= upd->end))
			e = gvm__ptf_zap(e);
		out->pte = e;
		out->level = level;
		if (!gvm__ptf_is_valid(e))
			return -ENOENT;
		out->page_size = level == 0 && gvm__ptf_has_cont(e)
				 ? span * PT_CONT : span;
		out->addr = gvm__ptf_is_null(e)
			    ? 0 : gvm__ptf_addr(e) + (va & (span - 1));
		return 0;
	}
}

/* ---- validate, init, fini -------------------------------------------- */

static int validate_table(const struct gvm_pt_vm *vm, const struct gvm_pt *t,
			  uint64_t *nr)
{
	unsigned int i, live = 0, level = t->level;
	uint64_t off = gvm__buddy_block_offset(t->block);

	(*nr)++;
	if (t->cpu != (uint64_t *)(vm->mem.cpu_base + off) ||
	    t->dev_addr != vm->mem.dev_base + off || t->is_new) {
		fprintf(stderr, "pt: table %p: bad memory or state\n",
			(const void *)t);
		return -EUCLEAN;
	}
	for (i = 0; i < PT_N; i++) {
		uint64_t e = t->cpu[i];
		const struct gvm_pt *c = level ? t->children[i] : NULL;

		live += e != 0;
		if (gvm__ptf_is_dir(e, level) != (c != NULL) ||
		    (c && (gvm__ptf_addr(e) != c->dev_addr ||
			   c->level != level - 1))) {
			fprintf(stderr, "pt: L%u[%u] %#llx: shadow mismatch\n",
				level, i, (unsigned long long)e);
			return -EUCLEAN;
		}
		if (gvm__ptf_is_leaf(e, level) && !gvm__ptf_can_leaf(level)) {
			fprintf(stderr, "pt: L%u[%u]: leaf too high\n", level,
				i);
			return -EUCLEAN;
		}
		if (c && validate_table(vm, c, nr))
			return -EUCLEAN;
		if (level == 0 && gvm__ptf_has_cont(e)) {
			unsigned int g = i & ~(PT_CONT - 1), k;
			uint64_t f = t->cpu[g];

			for (k = 0; k < PT_CONT; k++) {
				uint64_t x = t->cpu[g + k];

				if (!gvm__ptf_is_valid(x) || gvm__ptf_is_null(x) ||
				    !gvm__ptf_has_cont(x) ||
				    gvm__ptf_attrs_of(x) != gvm__ptf_attrs_of(f) ||
				    gvm__ptf_addr(x) != gvm__ptf_addr(f) + k * PT_PAGE ||
				    gvm__ptf_addr(f) % (PT_CONT * PT_PAGE)) {
					fprintf(stderr,
						"pt: L0[%u]: bad 64K run\n", i);
					return -EUCLEAN;
				}
			}
		}
	}
	if (live != t->live || (!live && t != vm->root)) {
		fprintf(stderr, "pt: L%u table: live %u, counted %u\n", level,
			t->live, live);
		return -EUCLEAN;
	}
	return 0;
}

int gvm__pt_validate(const struct gvm_pt_vm *vm)
{
	uint64_t nr = 0;
	const struct gvm_pt *t;

	if (validate_table(vm, vm->root, &nr))
		return -EUCLEAN;
	if (vm->pending)
		for (t = vm->pending->new_tables; t; t = t->next)
			nr++;
	if (nr != vm->nr_tables) {
		fprintf(stderr, "pt: %llu tables allocated, %llu accounted\n",
			(unsigned long long)vm->nr_tables,
			(unsigned long long)nr);
		return -EUCLEAN;
	}
	return 0;
}

int gvm__pt_vm_init(struct gvm_pt_vm *vm, const struct gvm_pt_mem *mem,
		    unsigned int va_bits)
{
	unsigned int levels = gvm__ptf_levels(va_bits);
	int err = 0;

	memset(vm, 0, sizeof(*vm));
	if (!levels || !mem || !mem->buddy || !mem->cpu_base ||
	    mem->buddy->chunk_size != PT_PAGE)
		return -EINVAL;
	vm->mem = *mem;
	vm->levels = levels;
	vm->va_bits = va_bits;
	vm->tlb_full_lg2 = 32;	/* > 4 GiB: full flush */
	vm->root = pt_alloc(vm, levels - 1, true, &err);
	return vm->root ? 0 : err;
}

static void free_tree(struct gvm_pt_vm *vm, struct gvm_pt *t)
{
	unsigned int i;

	if (t->level)
		for (i = 0; i < PT_N; i++)
			if (t->children[i])
				free_tree(vm, t->children[i]);
	pt_free(vm, t);
}

void gvm__pt_vm_fini(struct gvm_pt_vm *vm)
{
	GVM_BUG_ON(vm->pending);
	if (vm->root)
		free_tree(vm, vm->root);
	vm->root = NULL;
}
