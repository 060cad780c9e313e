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
 * level the update needs).
 *
 * SEGMENTS.  An update is a sorted list of disjoint segments (struct
 * gvm_pt_seg), each "map [va, end) to these extents with these flags",
 * "map it to nothing" (NULL) or "clear it" (UNBIND); the VM layer passes
 * the net effect of a whole bind array this way.  Addresses between
 * segments (gaps) are left untouched.  The walk descends once from the
 * root, keeping a cursor on the current segment and its backing.  At each
 * directory entry:
 *  - intersecting no segment: skipped, untouched;
 *  - inside one segment: a leaf if the segment maps and the backing fits
 *    (see PAGE SIZE), cleared if it unbinds, else descend;
 *  - straddling segment edges or a gap: descend (a huge leaf is split into
 *    a new table replicating it; an empty entry gets a new table if a
 *    segment there maps, else is skipped).
 * Runs of leaves are written per segment in tight loops: 4 KiB PTEs per
 * extent at level 0 (fill_table), 2 MiB / 1 GiB leaves while the backing
 * fits (fill_huge); directory entries go through walk_entry one by one.
 * Adjacent UNBIND segments, and adjacent NULL segments with equal flags,
 * are merged first, so that a NULL range gets the largest pages however it
 * was cut and an entry straddling segments never ends up empty.  Adjacent
 * mapping segments need no merge: no leaf or 64 KiB hint spans two
 * extents anyway.  The result is what applying the segments one after the
 * other would give (the reference-model test checks exactly that).
 *
 * PAGE SIZE.  At each entry inside a mapping segment the walk writes the
 * largest leaf that the VA alignment, the segment's remaining range and
 * the backing allow (the backing block must lie in one extent and be
 * aligned to the page size); otherwise it descends.  A 64 KiB hint is set
 * only on a whole group of 16 PTEs written from one extent; the other
 * members of a group a segment writes part of lose theirs.  The largest
 * leaf is also bounded by what the device supports (vm->leaf_levels,
 * vm->cont_hint, from its page sizes at init): on a 4K-only device every
 * mapping is 4 KiB PTEs without hints.  The reserve (descending_inside)
 * follows the same rule (pt_can_leaf).
 *
 * STAGING.  An update is prepared, then committed or aborted:
 *  - prepare allocates everything.  Tables it creates are "new" (not
 *    reachable from the committed tree) and written directly.  For each
 *    connected table it visits it records ONE struct gvm_pt_rec: the entry
 *    range [first, first + count) from the first to the last entry any
 *    segment touches (at level 0 widened to whole 64 KiB groups; entries
 *    in gaps between are copied unchanged), the new entries and children,
 *    the old entries, and the staged live count.  The committed tables are
 *    not written.  It also stores the update's "runs" (below).  A record
 *    the update owns (every entry's span inside the runs, see the rule)
 *    keeps no old entries; at a directory level it is also "lazy": no
 *    snapshot of the table is copied in, because the walk writes every
 *    entry of its range (fill_huge, or walk_entry after staging the one
 *    entry it reads), reading the old values from the table itself.  So
 *    rebinding a whole table costs one read and one staged write per
 *    entry, and records come from the VM's spares (rec_alloc), not the
 *    heap.
 *    Commit stores only the entries that differ from the table
 *    (vm->commit_stores counts them; test
 *    owned_update_stores_only_changed_entries).
 *    DEFERRED RECORDS.  A connected directory the update does not own
 *    (the path down to a small bind: root, then one entry per level) is
 *    walked without a record until an entry changes: each entry is read
 *    once (atomically) into a private copy that walk_entry works on; if
 *    it came back unchanged (the child table existed and stays), the
 *    table needs no record and commit does not visit it.  At the first
 *    change the record is made, its snapshot of that entry being the
 *    value the walk read and acted on (so the zap rule below sees a zap
 *    that came since, as with a record made first), and it goes into the
 *    list before the records made while its entries were walked, keeping
 *    children before parents.  A 4 KiB bind where the tables exist thus
 *    records one table (the leaf one), not one per level
 *    (test deferred_records_only_changed_tables).
 *  - commit writes the recorded entries into the connected tables (children
 *    first, so a subtree is complete before it is linked), applies the live
 *    counts, unlinks dropped subtrees, clears "new".  No allocation, no
 *    failure.  abort frees the new tables, the records and the runs.
 *  - walkers pick a view: COMMITTED (cpu[]/children[]: what the GPU sees)
 *    or STAGING (a table's record overrides its committed entries, with
 *    the rule below applied, so it shows exactly what commit would write).
 *
 * ZAP DURING PREPARE (seed 000).  A zap (invalidation, under the notifier
 * lock) may run between prepare and commit of an update, or during the
 * prepare (which runs under vm->pt_lock only, since it allocates, and reads
 * connected entries with atomic loads; commit runs under the notifier lock
 * too).  The zap walks the committed view only, so it never sees half-built
 * subtrees, and turns valid leaves into zapped ones in place (live counts
 * unchanged, so the staged counts stay right).  R is the union of the
 * update's segments, as sorted runs (adjacent segments form one run):
 *
 *     vm->pt_lock holder              notifier (notifier_lock)
 *     ------------------              ------------------------
 *     prepare(segments, union R)
 *       records old = C[i], new = N[i]
 *                                     zap([z0, z1)) on committed tables:
 *                                       C[i] -> zapped(C[i])
 *     lock notifier_lock
 *     (caller re-checks its seqno)
 *     commit:
 *       entry owned (span in R)       -> write N[i]  (the update's mapping)
 *       entry not owned, C[i] == old  -> write N[i]
 *       entry not owned, C[i] != old  -> keep C[i]; if N[i] links a split
 *                                        copy of the zapped huge leaf, zap
 *                                        the copy's leaves outside R first,
 *                                        then link it
 *
 * The rule: commit writes unconditionally only the entries the update owns
 * (those whose whole VA span lies inside R); every other entry it touches
 * (64 KiB-hint fix-ups of neighbours, split copies of a huge leaf that a
 * segment edge or a gap crosses) is written only if no zap changed it
 * since prepare, so a commit never resurrects a zapped mapping outside its
 * segments, gaps included.  Inside R the update wins: the engine cannot
 * know whether a zap there was aimed at the old or the new mapping, so the
 * caller re-checks its invalidation sequence under the notifier lock
 * before commit and aborts + retries if it moved (the userptr protocol),
 * or, if it cannot retry, zaps that range in the pending update first
 * (gvm__pt_update_zap: the staged leaves, in records and new tables,
 * become zapped ones, so commit writes them invalid and the device never
 * sees them valid; then gvm__pt_zap for the committed rest).
 * The staging view applies the same rule.  (A leaf of a split copy is
 * either inside one segment, written by the update, or outside R: the
 * walk descends wherever a segment edge crosses an entry.)
 *
 * RESERVES.  A prepare that must not fail for memory (a bind job's, on a
 * fence-signalling path) runs from a reserve made when the bind was called
 * (gvm__pt_reserve), against tables that may have changed by then.  The
 * reserve is a bound that holds for any tables: below every level >= 1
 * entry the walk may descend into, it visits one table, either a new one
 * (fresh or a split copy) or a connected one (one record of at most 512
 * entries).  The walk descends below an entry crossing a segment's edge,
 * and below one inside a segment unless it becomes a leaf (NULL, or
 * backing that fits: one extent, aligned) or is cleared (UNBIND); counted
 * per extent, that bounds tables and records by the segments alone.  A
 * record spans at most the entries the segments touch in its table; where
 * the segments' hull lies in one table's range at a level, at most one
 * table is visited there and its record spans the hull's entries
 * (rec_entries: a 4 KiB bind's records take under 1 KiB).  The
 * reserve holds the promise of that many spare tables (pages of the buddy,
 * not counted in nr_tables until taken; SPARES) and an arena for the
 * records, the walk's segment copy and the runs; what is left is freed
 * after the commit.  The update
 * reference-model test prepares a third of its updates this way with every
 * heap and buddy allocation failing.
 *
 * SPARES.  A reserve's spare tables are not its own: the VM keeps a list
 * of spares (vm->spares, under mem.lock) and a count of those live
 * reserves may still take (spares_promised <= nr_spares).  Reserving k
 * tables promises k more, allocating only what the list lacks; a reserved
 * prepare takes promised ones; reserve_fini stops counting on the ones its
 * update did not take, which stay on the list.  So a burst of queued
 * binds allocates its spares once, and the next burst finds them (a spare
 * is a page of the buddy and a 4 KiB shadow; a job mostly takes none).
 * Spares nobody counts on are taken first by any table allocation, and
 * go back to the buddy when the owner needs room (make_room: the VM layer
 * calls gvm__pt_spares_drop_locked() before evicting anything), at
 * gvm__pt_trim() and when the VM goes.  They count in nr_pages
 * (mem.max_pages) like any table page.
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
 *                    + #unlinked tables not yet freed (nr_deferred)
 *
 * LOCKING.  None inside, except mem.lock if set: a leaf lock held around
 * each buddy call only (table allocation and freeing), as the buddy may be
 * shared with buffer objects and other VMs, and around the spare list and
 * its counts (SPARES).  The VM layer serialises
 * prepare, commit, abort, unbind, bind and freeing (vm->pt_lock) and takes
 * the notifier lock around commit and zap.  Reserving needs no lock of
 * the VM's (it takes mem.lock for the spares, as for the buddy).  What may run concurrently:
 * nothing, except that a zap may come between a prepare and its
 * commit/abort (serialised with them by the notifier lock, never truly in
 * parallel); the engine guarantees that the zap sees a consistent
 * committed tree and that commit follows the rule above.  Translation of
 * the committed view needs the notifier lock or vm->pt_lock (entries are
 * read with atomic loads, as a zap may store to them meanwhile); of the
 * staging view, vm->pt_lock.  At most one update is pending per VM.  The
 * device walks the committed tables at any time, without locks: every
 * write to a connected table is one release store of the whole entry
 * (pte_publish), and a new subtree is complete before the store that links
 * it.
 *
 * EXAMPLE (a bind array whose net effect is: map [a, b) to a buffer
 * object, leave [b, c) alone, unmap [c, d)).
 *	struct gvm_pt_seg segs[] = {
 *		{ a, b, GVM_PT_WRITE | GVM_PT_DEVMEM, &bo_ext, 1 },
 *		{ c, d, GVM_PT_UNBIND, NULL, 0 },
 *	};
 *	struct gvm_pt_update upd;
 *	struct gvm_pt_free_list dead = { 0 };
 *	struct gvm_pt_tlb tlb;
 *	err = gvm__pt_update_prepare(vm, segs, 2, &upd);
 *	if (err) return err;			// nothing changed
 *	lock(notifier_lock);
 *	if (seqno moved) { unlock; gvm__pt_update_abort(&upd); retry; }
 *	gvm__pt_update_commit(&upd, &tlb, &dead);
 *	unlock(notifier_lock);
 *	invalidate tlb; wait; gvm__pt_free_deferred(vm, &dead);
 *
 * WHAT IT DOES NOT DO.  No GPU-side updates (the CPU writes the tables; a
 * job-based writer would replay the records); one pending update per VM
 * (it covers a whole bind array, but two arrays are two updates in
 * sequence); no scratch pages (empty entries fault); no 64 KiB hint across
 * extents or segments or with neighbours outside them; contiguity only
 * within one extent; one TLB range per update (the hull of everything it
 * changed, gaps included); no canonical (sign-extended) VAs.
 */
#include "pt/pt.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/debug.h"
#include "core/list.h"
#include "core/sync.h"

#define PT_PAGE		(1ull << GVM_PTF_PAGE_LG2)
#define PT_N		GVM_PTF_ENTRIES
#define PT_CONT		GVM_PTF_CONT_ENTRIES
#define SEG_STACK	16	/* segments walked without a heap copy */

/* The staged change of one connected table (see STAGING). */
struct gvm_pt_rec {
	struct gvm_pt *table;
	struct gvm_pt_rec *next;
	uint64_t base;			/* VA of the table's entry 0 */
	unsigned int first, count;	/* entry range */
	unsigned int new_live;		/* live count after commit */
	bool reserved;			/* in a reserve's arena: not freed */
	bool owned;			/* every entry's span inside the
					   update's runs: old_e[] not kept
					   (only the rule needs it) */
	bool lazy;			/* owned, level >= 1: no snapshot;
					   the walk writes every entry of
					   the range (STAGING) */
	size_t cap_words;		/* data[] capacity (heap records) */
	uint64_t *new_e, *old_e;	/* [count] */
	struct gvm_pt **new_c;		/* [count], NULL at level 0; the old
					   children are table->children[]
					   (only commits change those) */
	uint64_t data[];
};

/*
 * A segment as the walk sees it: validated, attributes computed, adjacent
 * UNBIND / equal NULL segments merged (see SEGMENTS).
 */
struct wseg {
	uint64_t va, end;
	uint64_t attrs;			/* leaf attributes (map, NULL) */
	const struct gvm_pt_extent *ext;	/* NULL for NULL and UNBIND */
	size_t n;
	bool unbind, null;
};

/* State of one prepare walk. */
struct walk {
	struct gvm_pt_update *upd;
	struct gvm_pt_vm *vm;
	struct gvm_pt_reserve *res;	/* allocate from it, or NULL */
	const struct wseg *s, *s_end;	/* current segment, end of the list */
	size_t xi;			/* current extent of *s */
	uint64_t xoff;			/* offset in ext[xi] */
};

/* Entries of a table as the walk sees and writes them. */
struct tview {
	uint64_t *e;			/* index i at e[i - off] */
	struct gvm_pt **c;		/* same, NULL at level 0 */
	const uint64_t *old;		/* the entries before the walk wrote
					   them, same indexing: e, or for a
					   lazy record the committed table */
	unsigned int off;
	unsigned int live;
	bool fresh;			/* all entries known zero */
};
/*
 * Writes an entry of a table the device may be walking (a connected one):
 * one 8-byte store, release so that a directory entry is seen only after
 * the table it links is complete (the device reads entries with acquire
 * loads).  Tables not yet linked are written with plain stores.
 */
static inline void pte_publish(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/*
 * Reads an entry of a connected table outside the notifier lock (prepare,
 * translation under vm->pt_lock only): a zap may store to it at the same
 * time; the value is either the old entry or its zapped form.
 */
static inline uint64_t pte_read(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint64_t span_of(unsigned int level)
{
	return 1ull << gvm__ptf_shift(level);
}

/*
 * The entries [*i0, *i1] of a level-@level table at VA @base that
 * [va, end) intersects (it must intersect the table).
 */
static inline void entry_range(unsigned int level, uint64_t base, uint64_t va,
			       uint64_t end, unsigned int *i0, unsigned int *i1)
{
	unsigned int sh = gvm__ptf_shift(level);
	uint64_t top = base + (span_of(level) << GVM_PTF_ENTRIES_LG2);
	uint64_t lo = va > base ? va : base, hi = end < top ? end : top;

	*i0 = (unsigned int)((lo - base) >> sh);
	*i1 = (unsigned int)((hi - 1 - base) >> sh);
}

/* Whether @level may hold leaves in @vm: the format and the device agree. */
static inline bool pt_can_leaf(const struct gvm_pt_vm *vm, unsigned int level)
{
	return gvm__ptf_can_leaf(level) && (vm->leaf_levels >> level & 1);
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

void gvm__pt_tlb_span(const struct gvm_pt_vm *vm, uint64_t lo, uint64_t hi,
		      struct gvm_pt_tlb *tlb)
{
	tlb_range(vm, lo, hi, tlb);
}

void gvm__pt_tlb_add(const struct gvm_pt_vm *vm, struct gvm_pt_tlb *acc,
		     const struct gvm_pt_tlb *t)
{
	uint64_t lo, hi;

	if (acc->full || (!t->full && !t->size))
		return;
	if (t->full || !acc->size) {
		*acc = *t;
		return;
	}
	lo = acc->start < t->start ? acc->start : t->start;
	hi = acc->start + acc->size > t->start + t->size ?
		     acc->start + acc->size : t->start + t->size;
	tlb_range(vm, lo, hi, acc);
}

/* Index of the first run of @upd ending after @va (nr_runs if none). */
static size_t run_find(const struct gvm_pt_update *upd, uint64_t va)
{
	size_t lo = 0, hi = upd->nr_runs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (upd->runs[mid].end <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* [lo, hi) lies inside the update's segments: an entry it owns (rule). */
static bool runs_cover(const struct gvm_pt_update *upd, uint64_t lo,
		       uint64_t hi)
{
	size_t k = run_find(upd, lo);

	return k < upd->nr_runs && upd->runs[k].va <= lo &&
	       hi <= upd->runs[k].end;
}

/* [lo, hi) intersects the update's segments. */
static bool runs_hit(const struct gvm_pt_update *upd, uint64_t lo,
		     uint64_t hi)
{
	size_t k = run_find(upd, lo);

	return k < upd->nr_runs && upd->runs[k].va < hi;
}

static void runs_free(struct gvm_pt_update *upd)
{
	if (upd->runs != &upd->run0 && !upd->runs_reserved)
		gvm__free((void *)upd->runs);
	upd->runs = NULL;
	upd->nr_runs = 0;
}

/* ---- table memory ---------------------------------------------------- */

/* mem.lock, if any, is a leaf lock around buddy calls only. */
static inline void mem_lock(const struct gvm_pt_vm *vm)
{
	if (vm->mem.lock)
		gvm__mutex_lock(vm->mem.lock);
}

static inline void mem_unlock(const struct gvm_pt_vm *vm)
{
	if (vm->mem.lock)
		gvm__mutex_unlock(vm->mem.lock);
}

/*
 * The VM's table pages (mem.max_pages): counted atomically, as tables are
 * allocated under pt_lock but reserves' spares are freed by bind jobs
 * with no lock held.  False: the limit is reached.
 */
static bool pages_get(struct gvm_pt_vm *vm)
{
	uint64_t n = __atomic_load_n(&vm->nr_pages, __ATOMIC_RELAXED);

	do {
		if (vm->mem.max_pages && n >= vm->mem.max_pages)
			return false;
	} while (!__atomic_compare_exchange_n(&vm->nr_pages, &n, n + 1, true,
					      __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return true;
}

static void pages_put(struct gvm_pt_vm *vm)
{
	__atomic_fetch_sub(&vm->nr_pages, 1, __ATOMIC_RELAXED);
}

/*
 * A table (host shadow + a page of the buddy), not yet counted.  @level
 * sizes children[] (a reserve's spares get one whatever their level).
 */
/*
 * A table for @level (its page zeroed if @zero).  A reserve's spare
 * (@spare) has room for children whatever its level, not cleared: the
 * reserve does not know the level yet, and most spares go unused;
 * res_take() clears the children of the ones it takes.
 */
static struct gvm_pt *table_alloc(struct gvm_pt_vm *vm, unsigned int level,
				  bool zero, bool spare, int *err)
{
	size_t sz = sizeof(struct gvm_pt) +
		    (level || spare ? PT_N * sizeof(struct gvm_pt *) : 0);
	struct gvm_buddy_block *b;
	struct gvm_list blocks;
	struct gvm_pt *t;
	int ret;

	if (!pages_get(vm)) {
		*err = -ENOSPC;		/* the VM's page-table limit */
		return NULL;
	}
	t = level && !spare ? gvm__calloc(1, sz) : gvm__malloc(sz);
	if (!t) {
		pages_put(vm);
		*err = -ENOMEM;
		return NULL;
	}
	gvm_list_init(&blocks);
	do {
		mem_lock(vm);
		ret = gvm__buddy_alloc(vm->mem.buddy, 0, vm->mem.buddy->size,
				       PT_PAGE, 0, 0, &blocks);
		mem_unlock(vm);
		/* A full buddy: the owner may make room (pt.h). */
	} while (ret == -ENOSPC && vm->mem.make_room &&
		 !vm->mem.make_room(vm->mem.priv, PT_PAGE));
	if (ret) {
		gvm__free(t);
		pages_put(vm);
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
	return t;
}

/* ---- spare tables (see SPARES) ---------------------------------------- */

static void table_free(struct gvm_pt_vm *vm, struct gvm_pt *t);

/*
 * nr_spares and spares_promised change under mem.lock, and are stored
 * atomically so that spare_take_surplus() can read them without it.
 */
static inline void spares_add(uint64_t *count, int64_t d)
{
	__atomic_store_n(count, *count + (uint64_t)d, __ATOMIC_RELAXED);
}

/* Takes a spare off the list (mem.lock held, one is there). */
static struct gvm_pt *spare_pop_locked(struct gvm_pt_vm *vm)
{
	struct gvm_pt *t = vm->spares;

	vm->spares = t->next;
	spares_add(&vm->nr_spares, -1);
	t->next = NULL;
	return t;
}

/* A spare made into a table for @level (it enters nr_tables now). */
static struct gvm_pt *spare_use(struct gvm_pt_vm *vm, struct gvm_pt *t,
				unsigned int level, bool zero)
{
	t->level = (uint8_t)level;
	if (level)
		memset(t->children, 0, PT_N * sizeof(t->children[0]));
	if (zero)
		memset(t->cpu, 0, PT_PAGE);
	vm->nr_tables++;
	return t;
}

/* A spare no reserve counts on, or NULL. */
static struct gvm_pt *spare_take_surplus(struct gvm_pt_vm *vm)
{
	struct gvm_pt *t = NULL;

	/* A hint, so that allocations do not take mem.lock once more when
	   there is no spare (most of them); checked again under it. */
	if (__atomic_load_n(&vm->nr_spares, __ATOMIC_RELAXED) <=
	    __atomic_load_n(&vm->spares_promised, __ATOMIC_RELAXED))
		return NULL;
	mem_lock(vm);
	if (vm->nr_spares > vm->spares_promised)
		t = spare_pop_locked(vm);
	mem_unlock(vm);
	return t;
}

/*
 * Makes @k more spares count as promised, growing the list with new ones
 * (allocated with no lock held) if its surplus is short.  0, or -ENOMEM /
 * -ENOSPC with nothing promised (what was allocated is freed again).
 */
static int spares_promise(struct gvm_pt_vm *vm, uint64_t k)
{
	struct gvm_pt *got = NULL, *last = NULL, *t, *back = NULL;
	uint64_t need, n = 0;
	int err = 0;

	mem_lock(vm);
	need = vm->spares_promised + k > vm->nr_spares
		       ? vm->spares_promised + k - vm->nr_spares
		       : 0;
	if (!need)
		spares_add(&vm->spares_promised, (int64_t)k);
	mem_unlock(vm);
	if (!need)
		return 0;
	for (; n < need; n++) {
		t = table_alloc(vm, 0, false, true, &err);
		if (!t)
			break;
		t->next = got;
		got = t;
		if (!last)
			last = t;
	}
	mem_lock(vm);
	if (n) {
		last->next = vm->spares;
		vm->spares = got;
		spares_add(&vm->nr_spares, (int64_t)n);
	}
	/* Others may have promised meanwhile: count again. */
	if (!err && vm->spares_promised + k > vm->nr_spares)
		err = -EAGAIN;
	if (!err) {
		spares_add(&vm->spares_promised, (int64_t)k);
	} else {
		/* Give back what nobody counts on, up to what we added. */
		while (n-- && vm->nr_spares > vm->spares_promised) {
			t = spare_pop_locked(vm);
			t->next = back;
			back = t;
		}
	}
	mem_unlock(vm);
	for (t = back; t; t = back) {
		back = t->next;
		table_free(vm, t);
	}
	return err == -EAGAIN ? spares_promise(vm, k) : err;
}

/* The @k spares a reserve did not take are no longer counted on. */
static void spares_release(struct gvm_pt_vm *vm, uint64_t k)
{
	if (!k)
		return;
	mem_lock(vm);
	gvm_assert(vm->spares_promised >= k);
	spares_add(&vm->spares_promised, -(int64_t)k);
	mem_unlock(vm);
}

uint64_t gvm__pt_spares_drop_locked(struct gvm_pt_vm *vm,
				    struct gvm_pt **shadows)
{
	uint64_t n = 0;

	while (vm->nr_spares > vm->spares_promised) {
		struct gvm_pt *t = spare_pop_locked(vm);

		gvm__buddy_free_block(vm->mem.buddy, t->block);
		pages_put(vm);
		t->next = *shadows;
		*shadows = t;
		n++;
	}
	if (n && vm->mem.freed)
		vm->mem.freed(vm->mem.priv);
	return n;
}

void gvm__pt_spares_free_shadows(struct gvm_pt *shadows)
{
	struct gvm_pt *t;

	while ((t = shadows)) {
		shadows = t->next;
		gvm__free(t);
	}
}

static struct gvm_pt *pt_alloc(struct gvm_pt_vm *vm, unsigned int level,
			       bool zero, int *err)
{
	struct gvm_pt *t = spare_take_surplus(vm);

	if (t)
		return spare_use(vm, t, level, zero);
	t = table_alloc(vm, level, zero, false, err);
	if (t)
		vm->nr_tables++;
	return t;
}

static void table_free(struct gvm_pt_vm *vm, struct gvm_pt *t)
{
	mem_lock(vm);
	gvm__buddy_free_block(vm->mem.buddy, t->block);
	if (vm->mem.freed)
		vm->mem.freed(vm->mem.priv);
	mem_unlock(vm);
	pages_put(vm);
	gvm__free(t);
}

static void pt_free(struct gvm_pt_vm *vm, struct gvm_pt *t)
{
	table_free(vm, t);
	vm->nr_tables--;
}

/* ---- reserves (see RESERVES) ------------------------------------------- */

static void *res_alloc(struct gvm_pt_reserve *res, size_t size)
{
	void *p;

	size = (size + 15) & ~(size_t)15;
	if (GVM_WARN_ON(res->mem_used + size > res->mem_size))
		return NULL;
	p = res->mem + res->mem_used;
	res->mem_used += size;
	return p;
}

/* Memory for the walk: from the reserve if there is one, else the heap. */
static void *walk_alloc(struct gvm_pt_reserve *res, size_t size)
{
	return res ? res_alloc(res, size) : gvm__malloc(size);
}

static void walk_free(struct gvm_pt_reserve *res, void *p)
{
	if (!res)
		gvm__free(p);
}

/* A promised spare taken for @level (it enters vm->nr_tables now). */
static struct gvm_pt *res_take(struct gvm_pt_vm *vm,
			       struct gvm_pt_reserve *res, unsigned int level,
			       bool zero, int *err)
{
	struct gvm_pt *t = NULL;

	mem_lock(vm);
	if (!GVM_WARN_ON(!res->nr_tables || !vm->nr_spares)) {
		t = spare_pop_locked(vm);
		spares_add(&vm->spares_promised, -1);
		res->nr_tables--;
	}
	mem_unlock(vm);
	if (!t) {
		*err = -ENOMEM;
		return NULL;
	}
	return spare_use(vm, t, level, zero);
}

/* A table built by the pending update. */
static struct gvm_pt *pt_new(struct walk *w, unsigned int level, bool zero,
			     int *err)
{
	struct gvm_pt *t = w->res ? res_take(w->vm, w->res, level, zero, err)
				  : pt_alloc(w->vm, level, zero, err);

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
	bool cont = level - 1 == 0 && w->vm->cont_hint &&
		    gvm__ptf_is_valid(e) && !gvm__ptf_is_null(e);
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

bool gvm__pt_mutant_no_zap_rule;
void (*gvm__pt_prepare_hook)(struct gvm_pt_vm *vm, uint64_t base,
			     unsigned int level);

/*
 * Memory for a record of @words data words: from the reserve, else a
 * spare record of the VM large enough, else the heap.  A bind rewrites the
 * same few tables again and again; reusing their records saves a malloc
 * and free of up to 12 KiB per table and update.
 */
static struct gvm_pt_rec *rec_alloc(struct walk *w, size_t words)
{
	struct gvm_pt_vm *vm = w->vm;
	struct gvm_pt_rec *r, **pp;

	if (w->res) {
		r = res_alloc(w->res, sizeof(*r) + words * sizeof(uint64_t));
		if (r)
			r->reserved = true;
		return r;
	}
	for (pp = &vm->spare_recs; (r = *pp); pp = &r->next) {
		if (r->cap_words >= words) {
			*pp = r->next;
			vm->nr_spare_recs--;
			return r;
		}
	}
	/* Round up so that one record fits every table of a level. */
	if (words < 3 * (size_t)PT_N)
		words = words <= 2 * (size_t)PT_N ? 2 * (size_t)PT_N
						 : 3 * (size_t)PT_N;
	r = gvm__malloc(sizeof(*r) + words * sizeof(uint64_t));
	if (!r)
		return NULL;
	r->reserved = false;
	r->cap_words = words;
	return r;
}

/* A heap record back to the VM's spares, or freed if there are enough. */
static void rec_release(struct gvm_pt_vm *vm, struct gvm_pt_rec *r)
{
	if (r->reserved)
		return;
	if (vm->nr_spare_recs >= GVM_PT_SPARE_RECS) {
		gvm__free(r);
		return;
	}
	r->next = vm->spare_recs;
	vm->spare_recs = r;
	vm->nr_spare_recs++;
}

/*
 * The record of connected table @t (at VA @base) for entries [first,
 * first + count), inserted in the update's list at *@link.  Entry @at (if
 * in range) is recorded as holding @at_old, the value the walk already
 * read and acted on (a deferred record, see DEFERRED RECORDS); the others
 * are read now.
 */
static struct gvm_pt_rec *rec_create(struct walk *w, struct gvm_pt *t,
				     uint64_t base, unsigned int first,
				     unsigned int count,
				     struct gvm_pt_rec **link, unsigned int at,
				     uint64_t at_old)
{
	size_t words = (size_t)count * (t->level ? 3 : 2);
	uint64_t *ne, *oe, span;
	const uint64_t *cpu;
	struct gvm_pt_rec *r;
	unsigned int i;

	gvm_assert(!t->rec);		/* one record per table and update */
	if (gvm__pt_prepare_hook)
		gvm__pt_prepare_hook(w->vm, base, t->level);
	r = rec_alloc(w, words);
	if (!r)
		return NULL;
	r->table = t;
	r->base = base;
	r->first = first;
	r->count = count;
	r->new_live = t->live;
	r->new_e = r->data;
	r->old_e = r->data + count;
	/*
	 * A zap may store to these entries meanwhile (ZAP DURING PREPARE):
	 * each is read once, atomically; the staged copy is a plain copy of
	 * that snapshot.
	 */
	span = span_of(t->level);
	r->owned = runs_cover(w->upd, base + first * span,
			      base + (first + count) * span);
	ne = r->new_e;
	oe = r->old_e;
	cpu = t->cpu;
	r->new_c = t->level ? (struct gvm_pt **)(r->data + 2 * (size_t)count)
			    : NULL;
	/* Owned directory: the walk stages every entry itself (lazy). */
	r->lazy = r->owned && t->level;
	if (r->lazy) {
		;
	} else if (r->owned) {
		for (i = 0; i < count; i++)
			ne[i] = pte_read(&cpu[first + i]);
	} else {
		for (i = 0; i < count; i++)
			oe[i] = ne[i] = pte_read(&cpu[first + i]);
		if (at - first < count)
			oe[at - first] = ne[at - first] = at_old;
	}
	if (t->level && !r->lazy)
		memcpy(r->new_c, t->children + first,
		       count * sizeof(struct gvm_pt *));
	/*
	 * The list runs children before parents: @link is the head, or
	 * (deferred record) the place before the records that were there
	 * when the walk entered the table.
	 */
	r->next = *link;
	*link = r;
	t->rec = r;
	return r;
}

/* The link of the update's record list that points at @head0. */
static struct gvm_pt_rec **rec_link(struct walk *w, struct gvm_pt_rec *head0)
{
	struct gvm_pt_rec **pp = &w->upd->recs;

	while (*pp != head0)
		pp = &(*pp)->next;
	return pp;
}

/*
 * Moves the segment cursor past the segments ending at or before @va (the
 * walk visits addresses in increasing order, so those are done).
 */
static inline void seg_skip(struct walk *w, uint64_t va)
{
	while (w->s < w->s_end && w->s->end <= va) {
		gvm_assert(w->s->unbind || w->s->null || w->xi == w->s->n);
		w->s++;
		w->xi = 0;
		w->xoff = 0;
	}
}

/* True if a segment from the cursor on, starting before @end, maps. */
static bool seg_maps_before(const struct walk *w, uint64_t end)
{
	const struct wseg *s;

	for (s = w->s; s < w->s_end && s->va < end; s++)
		if (!s->unbind)
			return true;
	return false;
}

static inline uint64_t backing_addr(const struct walk *w)
{
	return w->s->null ? 0 : w->s->ext[w->xi].addr + w->xoff;
}

static inline void backing_advance(struct walk *w, uint64_t size)
{
	if (w->s->null)
		return;
	w->xoff += size;
	if (w->xoff == w->s->ext[w->xi].len) {
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

/* Level 0: entries [i0, i1] of the table at VA @base, all in segment w->s. */
static void fill_leaf(struct walk *w, struct tview *v, uint64_t base,
		      unsigned int i0, unsigned int i1)
{
	const struct wseg *s = w->s;
	uint64_t *e = v->e;
	unsigned int off = v->off, i, k;
	int lo = -1, hi = -1;

	for (i = i0; !v->fresh && i <= i1; i++) {
		if (e[i - off]) {
			if (lo < 0)
				lo = (int)i;
			hi = (int)i;
			if (s->unbind)
				e[i - off] = 0;
			v->live--;
		}
	}
	if (lo >= 0)
		note_tlb(w->upd, base + ((uint64_t)lo << GVM_PTF_PAGE_LG2),
			 base + ((uint64_t)(hi + 1) << GVM_PTF_PAGE_LG2));
	if (!s->unbind) {
		v->live += i1 - i0 + 1;
		w->vm->pte_writes[0] += i1 - i0 + 1;
		for (i = i0; i <= i1;) {
			uint64_t addr = backing_addr(w), pte;
			unsigned int n = i1 - i + 1, g0, g1;

			if (!s->null) {
				uint64_t rem = (s->ext[w->xi].len - w->xoff) >>
					       GVM_PTF_PAGE_LG2;

				if (rem < n)
					n = (unsigned int)rem;
			}
			pte = gvm__ptf_mk_leaf(s->attrs, addr, 0);
			g0 = g1 = i;
			if (!s->null && w->vm->cont_hint &&
			    !(((addr >> GVM_PTF_PAGE_LG2) - i) % PT_CONT)) {
				g0 = (i + PT_CONT - 1) & ~(PT_CONT - 1);
				g1 = (i + n) & ~(PT_CONT - 1);
				if (g1 <= g0)
					g0 = g1 = i;	/* no whole group */
			}
			if (s->null) {
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

/* Level 0: fills the table at VA [@base, @top) segment by segment. */
static void fill_table(struct walk *w, struct tview *v, uint64_t base,
		       uint64_t top)
{
	uint64_t cur = base;

	for (;;) {
		const struct wseg *s;
		uint64_t lo, hi;

		seg_skip(w, cur);
		s = w->s;
		if (s == w->s_end || s->va >= top)
			return;
		lo = s->va > cur ? s->va : cur;
		hi = s->end < top ? s->end : top;
		fill_leaf(w, v, base,
			  (unsigned int)((lo - base) >> GVM_PTF_PAGE_LG2),
			  (unsigned int)((hi - 1 - base) >> GVM_PTF_PAGE_LG2));
		if (hi == top)
			return;
		cur = hi;
	}
}

static int walk_table(struct walk *w, struct gvm_pt *t, uint64_t base,
		      bool fresh, unsigned int *live_out);

static inline void set_entry(struct tview *v, unsigned int i, uint64_t e,
			     struct gvm_pt *c)
{
	v->e[i - v->off] = e;
	v->c[i - v->off] = c;
}

/*
 * Levels 1..MAX_LEAF_LEVEL: how many leaves entries @i.. (up to @i1) of a
 * table at VA @base take while they lie inside one mapping segment and
 * the backing fits (one extent, aligned); 0 if entry @i takes no leaf.
 */
static unsigned int huge_count(struct walk *w, unsigned int level,
			       uint64_t base, unsigned int i, unsigned int i1)
{
	unsigned int sh = gvm__ptf_shift(level), n;
	uint64_t span = 1ull << sh, eva = base + ((uint64_t)i << sh);
	const struct wseg *s;

	seg_skip(w, eva);
	s = w->s;
	if (s == w->s_end || s->unbind || s->va > eva || s->end - eva < span)
		return 0;
	n = i1 - i + 1;
	if ((s->end - eva) >> sh < n)
		n = (unsigned int)((s->end - eva) >> sh);
	if (!s->null) {
		const struct gvm_pt_extent *x = &s->ext[w->xi];

		if ((x->addr + w->xoff) & (span - 1))
			return 0;
		if ((x->len - w->xoff) >> sh < n)
			n = (unsigned int)((x->len - w->xoff) >> sh);
	}
	return n;
}

/* Writes the @n leaves huge_count() found at entries @i.. */
static void fill_huge(struct walk *w, struct tview *v, unsigned int level,
		      uint64_t base, unsigned int i, unsigned int n)
{
	unsigned int sh = gvm__ptf_shift(level), k, added = 0;
	uint64_t span = 1ull << sh, eva = base + ((uint64_t)i << sh);
	uint64_t addr = 0, attrs, *e;
	const uint64_t *old;
	struct gvm_pt **c;
	const struct wseg *s = w->s;
	int lo = -1, hi = -1;

	if (!s->null)
		addr = s->ext[w->xi].addr + w->xoff;
	attrs = s->attrs;
	e = v->e + (i - v->off);
	c = v->c + (i - v->off);
	old = v->old + (i - v->off);
	for (k = 0; k < n; k++) {
		if (pte_read(&old[k])) {
			if (lo < 0)
				lo = (int)k;
			hi = (int)k;
		} else {
			added++;
		}
		e[k] = gvm__ptf_mk_leaf(attrs, addr + (uint64_t)k * span,
					level);
		c[k] = NULL;
	}
	if (lo >= 0)
		note_tlb(w->upd, eva + ((uint64_t)lo << sh),
			 eva + ((uint64_t)(hi + 1) << sh));
	v->live += added;
	w->vm->pte_writes[level] += n;
	backing_advance(w, (uint64_t)n << sh);
}

/* Levels >= 1: entry @i of a directory (see SEGMENTS for the cases). */
static int walk_entry(struct walk *w, struct gvm_pt *t, struct tview *v,
		      uint64_t base, unsigned int i)
{
	unsigned int level = t->level, cl;
	uint64_t span = span_of(level);
	uint64_t eva = base + (uint64_t)i * span, eend = eva + span;
	uint64_t o = v->e[i - v->off];
	struct gvm_pt *oc = v->c[i - v->off], *child;
	const struct wseg *s;
	bool inside;
	int err = 0;

	seg_skip(w, eva);
	s = w->s;
	if (s == w->s_end || s->va >= eend)
		return 0;			/* in no segment: untouched */
	inside = s->va <= eva && eend <= s->end;
	if (inside && s->unbind) {
		if (o) {
			set_entry(v, i, 0, NULL);
			v->live--;
			note_tlb(w->upd, eva, eend);
		}
		return 0;
	}
	/* (A huge leaf that fits was written by fill_huge().) */
	if (!inside && !o && !seg_maps_before(w, eend))
		return 0;			/* only UNBIND over nothing */

	child = gvm__ptf_is_dir(o, level) ? oc : NULL;
	if (!child) {
		/* Inside one segment every entry below is rewritten. */
		bool fresh = !o || inside;

		if (fresh)
			child = pt_new(w, level - 1,
				       !(inside && level - 1 == 0), &err);
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
		/*
		 * Not empty: a fresh table got a mapping segment's entries, a
		 * split copy keeps what lies outside the segments or maps
		 * (adjacent UNBIND segments were merged, so they never cover
		 * a straddled entry).
		 */
		gvm_assert(cl);
		set_entry(v, i, gvm__ptf_mk_dir(child->dev_addr), child);
		return 0;
	}
	err = walk_table(w, child, eva, false, &cl);
	if (err)
		return err;
	if (!cl) {			/* emptied: commit unlinks it */
		set_entry(v, i, 0, NULL);
		v->live--;
	}
	return 0;
}

/* The tview of record @r of table @t. */
static void rec_view(struct tview *v, const struct gvm_pt_rec *r,
		     const struct gvm_pt *t)
{
	v->e = r->new_e;
	v->c = r->new_c;
	v->old = r->lazy ? t->cpu + r->first : r->new_e;
	v->off = r->first;
	v->fresh = false;
}

/*
 * Entry @i of connected directory @t, whose record is deferred (none
 * yet): walked on a private copy of the entry, read once.  0 with *@r
 * still NULL if the entry did not change; else the record now exists
 * (the copy's old value as the entry's snapshot, its new value staged)
 * and @v is its view.
 */
static int walk_entry_deferred(struct walk *w, struct gvm_pt *t,
			       struct tview *v, uint64_t base, unsigned int i,
			       unsigned int first, unsigned int count,
			       struct gvm_pt_rec *head0, struct gvm_pt_rec **r)
{
	uint64_t o = pte_read(&t->cpu[i]), e = o;
	struct gvm_pt *oc = t->children[i], *c = oc;
	unsigned int live = v->live;
	int err;

	v->e = &e;
	v->c = &c;
	v->off = i;
	err = walk_entry(w, t, v, base, i);
	if (err || (e == o && c == oc && v->live == live))
		return err;
	*r = rec_create(w, t, base, first, count, rec_link(w, head0), i, o);
	if (!*r)
		return -ENOMEM;
	rec_view(v, *r, t);
	set_entry(v, i, e, c);
	return 0;
}

static int walk_table(struct walk *w, struct gvm_pt *t, uint64_t base,
		      bool fresh, unsigned int *live_out)
{
	unsigned int level = t->level, sh = gvm__ptf_shift(level);
	uint64_t top = base + (span_of(level) << GVM_PTF_ENTRIES_LG2);
	struct gvm_pt_rec *r = NULL, *head0 = w->upd->recs;
	unsigned int i0, i1, i, first = 0, count = 0;
	const struct wseg *s;
	bool deferred = false;
	uint64_t lo, hi;
	struct tview v;
	int err = 0;

	/* Touched entries: first to last segment intersecting the table. */
	seg_skip(w, base);
	gvm_assert(w->s < w->s_end && w->s->va < top);
	for (s = w->s; s + 1 < w->s_end && s[1].va < top; s++)
		;
	lo = w->s->va > base ? w->s->va : base;
	hi = s->end < top ? s->end : top;
	i0 = (unsigned int)((lo - base) >> sh);
	i1 = (unsigned int)((hi - 1 - base) >> sh);

	if (!t->is_new) {
		unsigned int last = i1;

		first = i0;
		if (level == 0) {
			first &= ~(PT_CONT - 1);
			last |= PT_CONT - 1;
		}
		count = last - first + 1;
		/* A directory the update does not own: DEFERRED RECORDS. */
		deferred = level &&
			   !runs_cover(w->upd, base + first * span_of(level),
				       base + (first + count) * span_of(level));
		v.live = t->live;
		v.fresh = false;
		if (!deferred) {
			r = rec_create(w, t, base, first, count,
				       &w->upd->recs, UINT_MAX, 0);
			if (!r)
				return -ENOMEM;
			rec_view(&v, r, t);
		}
	} else {
		v.e = t->cpu;
		v.c = level ? t->children : NULL;
		v.old = t->cpu;
		v.off = 0;
		v.live = t->live;
		v.fresh = fresh;
	}

	if (level == 0) {
		fill_table(w, &v, base, top);
	} else {
		for (i = i0; i <= i1 && !err;) {
			unsigned int n = pt_can_leaf(w->vm, level)
					 ? huge_count(w, level, base, i, i1)
					 : 0;

			if (deferred && !r && !n) {
				err = walk_entry_deferred(w, t, &v, base, i,
							  first, count, head0,
							  &r);
				i++;
				continue;
			}
			if (deferred && !r) {	/* leaves: a change */
				r = rec_create(w, t, base, first, count,
					       rec_link(w, head0), UINT_MAX,
					       0);
				if (!r)
					return -ENOMEM;
				rec_view(&v, r, t);
			}
			if (n) {
				fill_huge(w, &v, level, base, i, n);
				i += n;
				continue;
			}
			if (r && r->lazy)	/* staged before it is read */
				set_entry(&v, i, pte_read(&t->cpu[i]),
					  t->children[i]);
			err = walk_entry(w, t, &v, base, i);
			i++;
		}
	}
	if (r)
		r->new_live = v.live;
	else if (t->is_new)
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
	if (va + size > (1ull << vm->va_bits))
		return -EINVAL;
	return 0;
}

static int check_seg(const struct gvm_pt_vm *vm, const struct gvm_pt_seg *s)
{
	uint64_t total = 0;
	size_t k;

	if (s->va >= s->end || ((s->va | s->end) & (PT_PAGE - 1)) ||
	    s->end > (1ull << vm->va_bits))
		return -EINVAL;
	if (s->flags & GVM_PT_UNBIND)
		return s->flags == GVM_PT_UNBIND && !s->n ? 0 : -EINVAL;
	if (s->flags & ~GVM_PT_FLAGS_ALL)
		return -EINVAL;
	if (s->flags & GVM_PT_NULL)
		return s->n || (s->flags & GVM_PT_DEVMEM) ? -EINVAL : 0;
	if (!s->n || !s->ext)
		return -EINVAL;
	for (k = 0; k < s->n; k++) {
		uint64_t a = s->ext[k].addr, l = s->ext[k].len;

		if (!l || ((a | l) & (PT_PAGE - 1)) || a + l < a ||
		    a + l > (1ull << GVM_PTF_ADDR_BITS) || total + l < total)
			return -EINVAL;
		total += l;
	}
	return total == s->end - s->va ? 0 : -EINVAL;
}

/*
 * Copies the validated @segs into @ws, merging adjacent UNBIND segments and
 * adjacent NULL segments with equal flags; returns the count.
 */
static size_t segs_to_walk(const struct gvm_pt_seg *segs, size_t n,
			   struct wseg *ws)
{
	size_t k, nw = 0;

	for (k = 0; k < n; k++) {
		const struct gvm_pt_seg *s = &segs[k];
		struct wseg *p = nw ? &ws[nw - 1] : NULL;
		bool unbind = s->flags & GVM_PT_UNBIND;
		bool null = s->flags & GVM_PT_NULL;
		uint64_t attrs = 0;

		if (!unbind)
			attrs = gvm__ptf_attrs(s->flags & GVM_PT_WRITE,
					       s->flags & GVM_PT_DEVMEM,
					       s->flags & GVM_PT_ATOMIC, null,
					       (s->flags >> GVM_PT_PAT_SHIFT) &
						       GVM_PAT_MAX);
		if (p && p->end == s->va && (unbind || null) &&
		    p->unbind == unbind && p->null == null &&
		    p->attrs == attrs) {
			p->end = s->end;
			continue;
		}
		ws[nw++] = (struct wseg){
			.va = s->va, .end = s->end, .attrs = attrs,
			.ext = unbind || null ? NULL : s->ext,
			.n = unbind || null ? 0 : s->n,
			.unbind = unbind, .null = null,
		};
	}
	return nw;
}

/* Stores the union of @ws[0..n) in @upd as runs (adjacent ones merged). */
static int runs_create(struct gvm_pt_update *upd, const struct wseg *ws,
		       size_t n, struct gvm_pt_reserve *res)
{
	struct gvm_pt_run *runs;
	size_t k, nr = 1;

	for (k = 1; k < n; k++)
		nr += ws[k].va != ws[k - 1].end;
	if (nr == 1) {
		runs = &upd->run0;
	} else {
		runs = walk_alloc(res, nr * sizeof(*runs));
		if (!runs)
			return -ENOMEM;
		upd->runs_reserved = res;
	}
	nr = 0;
	for (k = 0; k < n; k++) {
		if (nr && runs[nr - 1].end == ws[k].va)
			runs[nr - 1].end = ws[k].end;
		else
			runs[nr++] = (struct gvm_pt_run){ ws[k].va, ws[k].end };
	}
	upd->runs = runs;
	upd->nr_runs = nr;
	return 0;
}

/* ---- reserves (RESERVES) ------------------------------------------------ */

/*
 * Entries of @level >= 1 lying wholly inside segment @s below which the
 * walk descends (see SEGMENTS: not where the entry becomes a leaf or is
 * cleared).  Counted per extent, so a huge NULL or UNBIND segment costs
 * nothing and a mapping costs its extents, not its size.
 */
static uint64_t descending_inside(const struct gvm_pt_vm *vm,
				  const struct gvm_pt_seg *s, unsigned int level)
{
	uint64_t span = span_of(level), m = span - 1;
	uint64_t lo = (s->va + m) & ~m, hi = s->end & ~m;
	uint64_t n = 0, at = s->va;
	size_t k;

	if (lo >= hi || (s->flags & GVM_PT_UNBIND))
		return 0;
	if (!pt_can_leaf(vm, level))
		return (hi - lo) / span;
	if (s->flags & GVM_PT_NULL)
		return 0;
	for (k = 0; k < s->n; at += s->ext[k].len, k++) {
		const struct gvm_pt_extent *x = &s->ext[k];
		uint64_t end = at + x->len;
		uint64_t a = at > lo ? at : lo, b = end < hi ? end : hi;
		uint64_t first, last;

		if (a >= b)
			continue;
		first = a & ~m;
		last = (b - 1) & ~m;
		if ((x->addr - at) & m) {	/* no entry of it fits */
			n += (last - first) / span + 1;
			continue;
		}
		/* aligned: the entries crossing its ends descend */
		n += first < at;
		n += last + span > end && !(last == first && first < at);
	}
	return n;
}

/*
 * The most entries a record of one table at @level can span for segments
 * whose hull is [lo, hi): the walk records from the first to the last
 * entry the segments touch in the table (walk_table; whole 64 KiB groups
 * at level 0).  If the hull lies in one table's range at @level (always,
 * for the root), only that table can be visited there, and its record
 * spans at most the hull's entries; else a record may span the table.
 */
static uint64_t rec_entries(const struct gvm_pt_vm *vm, unsigned int level,
			    uint64_t lo, uint64_t hi)
{
	unsigned int sh = gvm__ptf_shift(level);
	uint64_t first, last;

	if (level + 1 < vm->levels &&
	    lo >> (sh + GVM_PTF_ENTRIES_LG2) !=
		    (hi - 1) >> (sh + GVM_PTF_ENTRIES_LG2))
		return PT_N;
	first = lo >> sh & (PT_N - 1);
	last = (hi - 1) >> sh & (PT_N - 1);
	if (!level) {
		first &= ~(uint64_t)(PT_CONT - 1);
		last |= PT_CONT - 1;
	}
	return last - first + 1;
}

/* Arena bytes for @nr records of @entries entries each at @level. */
static uint64_t rec_bytes(unsigned int level, uint64_t nr, uint64_t entries)
{
	return nr * (sizeof(struct gvm_pt_rec) + 16 +
		     entries * (level ? 3 : 2) * sizeof(uint64_t));
}

int gvm__pt_reserve(struct gvm_pt_vm *vm, const struct gvm_pt_seg *segs,
		    size_t n, struct gvm_pt_reserve *res)
{
	uint64_t tables = 0, mem = 0, lo = UINT64_MAX, hi = 0;
	unsigned int level;
	size_t k;
	int err = 0;

	memset(res, 0, sizeof(*res));
	for (k = 0; k < n; k++) {
		err = check_seg(vm, &segs[k]);
		if (err)
			return err;
		lo = segs[k].va < lo ? segs[k].va : lo;
		hi = segs[k].end > hi ? segs[k].end : hi;
	}
	if (!n) {		/* (a prepare rejects it) */
		lo = 0;
		hi = 1ull << vm->va_bits;
	}
	/*
	 * A table is visited below every level >= 1 entry the walk descends
	 * into: one new table or one record of a connected one, at most.
	 * Entries crossing a segment's edges always may (one entry when
	 * both edges fall in it: a small bind); entries inside one per
	 * descending_inside().  Plus the root's record.
	 */
	for (level = vm->levels - 1; level >= 1; level--) {
		uint64_t span = span_of(level), visited = 0, e;

		for (k = 0; k < n; k++) {
			const struct gvm_pt_seg *s = &segs[k];
			uint64_t m = span - 1;
			unsigned int edges = ((s->va & m) != 0) +
					     ((s->end & m) != 0);

			/* both edges inside one entry: one descent */
			if (edges == 2 && (s->va & ~m) == ((s->end - 1) & ~m))
				edges = 1;
			visited += edges;
			visited += descending_inside(vm, s, level);
		}
		tables += visited;
		/* Records of the tables at level - 1: one at most if the
		   hull is in one table's range there (rec_entries). */
		e = rec_entries(vm, level - 1, lo, hi);
		mem += rec_bytes(level - 1,
				 e < PT_N && visited > 1 ? 1 : visited, e);
	}
	mem += rec_bytes(vm->levels - 1, 1,
			 rec_entries(vm, vm->levels - 1, lo, hi));
	if (n > SEG_STACK)
		mem += n * sizeof(struct wseg) + 16;
	if (n > 1)
		mem += n * sizeof(struct gvm_pt_run) + 16;
	res->mem = gvm__malloc(mem);
	if (!res->mem)
		return -ENOMEM;
	res->mem_size = mem;
	err = spares_promise(vm, tables);
	if (err) {
		gvm__pt_reserve_fini(vm, res);
		return err;
	}
	res->nr_tables = tables;
	return 0;
}

void gvm__pt_reserve_fini(struct gvm_pt_vm *vm, struct gvm_pt_reserve *res)
{
	spares_release(vm, res->nr_tables);
	gvm__free(res->mem);
	memset(res, 0, sizeof(*res));
}

int gvm__pt_update_prepare(struct gvm_pt_vm *vm, const struct gvm_pt_seg *segs,
			   size_t n, struct gvm_pt_update *upd)
{
	return gvm__pt_update_prepare_reserved(vm, segs, n, NULL, upd);
}

int gvm__pt_update_prepare_reserved(struct gvm_pt_vm *vm,
				    const struct gvm_pt_seg *segs, size_t n,
				    struct gvm_pt_reserve *res,
				    struct gvm_pt_update *upd)
{
	struct wseg stack[SEG_STACK], *ws = stack;
	struct walk w;
	unsigned int live;
	size_t k, nw;
	int err;

	if (!n || !segs)
		return -EINVAL;
	for (k = 0; k < n; k++) {
		err = check_seg(vm, &segs[k]);
		if (err)
			return err;
		if (k && segs[k].va < segs[k - 1].end)
			return -EINVAL;	/* unsorted or overlapping */
	}
	if (vm->pending)
		return -EBUSY;
	if (n > SEG_STACK) {
		ws = walk_alloc(res, n * sizeof(*ws));
		if (!ws)
			return -ENOMEM;
	}
	nw = segs_to_walk(segs, n, ws);
	memset(upd, 0, sizeof(*upd));
	upd->vm = vm;
	err = runs_create(upd, ws, nw, res);
	if (err)
		goto out;
	vm->pending = upd;
	w = (struct walk){ .upd = upd, .vm = vm, .res = res, .s = ws,
			   .s_end = ws + nw };
	err = walk_table(&w, vm->root, 0, false, &live);
	if (err) {
		gvm__pt_update_abort(upd);
		goto out;
	}
	seg_skip(&w, UINT64_MAX);	/* asserts all backing consumed */
out:
	if (ws != stack)
		walk_free(res, ws);
	return err;
}

int gvm__pt_bind_prepare(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
			 const struct gvm_pt_extent *ext, size_t n,
			 unsigned int flags, struct gvm_pt_update *upd)
{
	struct gvm_pt_seg s = { va, va + size, flags, ext, n };

	if (flags & GVM_PT_UNBIND)
		return -EINVAL;
	return gvm__pt_update_prepare(vm, &s, 1, upd);
}

int gvm__pt_unbind_prepare(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
			   struct gvm_pt_update *upd)
{
	struct gvm_pt_seg s = { va, va + size, GVM_PT_UNBIND, NULL, 0 };

	return gvm__pt_update_prepare(vm, &s, 1, upd);
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

/*
 * Zaps the valid leaves of new subtree @t (at VA @base) that lie outside
 * the update's segments (its split-copy leaves; see the rule).
 */
static void zap_outside(struct gvm_pt *t, uint64_t base,
			const struct gvm_pt_update *upd)
{
	uint64_t span = span_of(t->level);
	unsigned int i;

	for (i = 0; i < PT_N; i++) {
		uint64_t e = t->cpu[i], a = base + i * span;

		if (!e)
			continue;
		if (gvm__ptf_is_dir(e, t->level))
			zap_outside(t->children[i], a, upd);
		else if (gvm__ptf_is_valid(e) && !runs_hit(upd, a, a + span))
			t->cpu[i] = gvm__ptf_zap(e);
	}
}

/*
 * Commits a record whose entries the update owns all of: each is written
 * as staged (what differs), with no zap check (see the rule).  Kept apart
 * from the general loop so that this one, the common case, stays tight.
 */
static unsigned int commit_owned(const struct gvm_pt_rec *r,
				 struct gvm_pt_free_list *list)
{
	struct gvm_pt *t = r->table;
	uint64_t *cpu = t->cpu + r->first;
	const uint64_t *ne = r->new_e;
	unsigned int count = r->count, k, stores = 0;

	if (!t->level) {
		for (k = 0; k < count; k++) {
			if (cpu[k] != ne[k]) {
				pte_publish(&cpu[k], ne[k]);
				stores++;
			}
		}
		return stores;
	}
	struct gvm_pt **cs = t->children + r->first, *const *ncs = r->new_c;

	for (k = 0; k < count; k++) {
		struct gvm_pt *nc = ncs[k], *oc = cs[k];

		if (cpu[k] == ne[k] && nc == oc)
			continue;
		pte_publish(&cpu[k], ne[k]);
		stores++;
		cs[k] = nc;
		if (oc && oc != nc)
			drop_subtree(oc, list);
	}
	return stores;
}

void gvm__pt_update_commit(struct gvm_pt_update *upd, struct gvm_pt_tlb *tlb,
			   struct gvm_pt_free_list *deferred)
{
	struct gvm_pt_vm *vm = upd->vm;
	struct gvm_pt_free_list local = { 0 };
	struct gvm_pt_free_list *list = deferred ? deferred : &local;
	struct gvm_pt_rec *r, *next;
	struct gvm_pt *t;

	uint64_t nr_dropped = list->nr;

	GVM_BUG_ON(vm->pending != upd);
	for (r = upd->recs; r; r = next) {
		const uint64_t *ne = r->new_e, *oe = r->old_e;
		struct gvm_pt **ncs = r->new_c;
		unsigned int first = r->first, count = r->count, k;
		uint64_t base, span;
		uint64_t *cpu;
		struct gvm_pt **cs;

		next = r->next;
		t = r->table;
		cpu = t->cpu;
		cs = t->level ? t->children : NULL;
		span = span_of(t->level);
		base = r->base + first * span;
		if (r->owned) {
			vm->commit_stores += commit_owned(r, list);
			goto done;
		}
		for (k = 0; k < count; k++) {
			unsigned int i = first + k;
			uint64_t n = ne[k], c = cpu[i];
			struct gvm_pt *nc = ncs ? ncs[k] : NULL;
			struct gvm_pt *oc = cs ? cs[i] : NULL;
			uint64_t eva;

			/*
			 * Skip what is already as staged, not merely what
			 * prepare left unchanged: an owned entry rewritten
			 * with its old value must still undo a zap.
			 */
			if (c == n && nc == oc)
				continue;
			eva = base + k * span;
			if (c != oe[k] && !runs_cover(upd, eva, eva + span) &&
			    !gvm__pt_mutant_no_zap_rule) {
				/* Zapped since prepare, not ours (rule). */
				if (!nc || nc == oc)
					continue;
				zap_outside(nc, eva, upd);
			}
			pte_publish(&cpu[i], n);
			vm->commit_stores++;
			if (cs) {
				cs[i] = nc;
				if (oc && oc != nc)
					drop_subtree(oc, list);
			}
		}
done:
		t->live = (uint16_t)r->new_live;
		t->rec = NULL;
		rec_release(vm, r);
	}
	for (t = upd->new_tables; t; t = t->next)
		t->is_new = 0;
	if (tlb)
		tlb_range(vm, upd->tlb_lo, upd->tlb_hi, tlb);
	upd->recs = NULL;
	upd->new_tables = NULL;
	runs_free(upd);
	vm->pending = NULL;
	vm->nr_deferred += list->nr - nr_dropped;
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
		if (!r->reserved)	/* not kept: a retry allocates anew */
			gvm__free(r);
	}
	for (t = upd->new_tables; t; t = tn) {
		tn = t->next;
		pt_free(vm, t);
	}
	upd->recs = NULL;
	upd->new_tables = NULL;
	runs_free(upd);
	vm->pending = NULL;
}

void gvm__pt_free_deferred(struct gvm_pt_vm *vm,
			   struct gvm_pt_free_list *list)
{
	struct gvm_pt *t, *tn;

	gvm_assert(vm->nr_deferred >= list->nr);
	vm->nr_deferred -= list->nr;
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
	unsigned int level = t->level, i0, i1, i, g;
	uint64_t span = span_of(level);

	entry_range(level, base, va, end, &i0, &i1);
	for (i = i0; i <= i1; i++) {
		uint64_t e = t->cpu[i], a = base + i * span;

		if (!e)
			continue;
		if (gvm__ptf_is_dir(e, level)) {
			zap_table(t->children[i], a, va, end, acc);
		} else if (gvm__ptf_is_valid(e)) {
			pte_publish(&t->cpu[i], gvm__ptf_zap(e));
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
			if (gvm__ptf_has_cont(t->cpu[i]))
				pte_publish(&t->cpu[i],
					    gvm__ptf_clear_cont(t->cpu[i]));
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

/*
 * Zaps, in table @t of the pending update's staging view (at VA @base),
 * the valid leaves intersecting [va, end) that the commit will write:
 * those of @t's record (its new entries) and those of a new table (not
 * linked yet: plain stores).  Committed entries outside a record are not
 * the update's: left alone.  Like zap_table, the survivors of a partly
 * zapped 64 KiB group lose the hint (a level-0 record spans whole groups).
 */
static void zap_staged_table(struct gvm_pt_update *upd, struct gvm_pt *t,
			     uint64_t base, uint64_t va, uint64_t end)
{
	unsigned int level = t->level, i0, i1, i, g;
	uint64_t span = span_of(level);
	struct gvm_pt_rec *r = t->rec;
	bool zapped = false;

	entry_range(level, base, va, end, &i0, &i1);
	for (i = i0; i <= i1; i++) {
		bool in_rec = r && i >= r->first && i < r->first + r->count;
		uint64_t *p = in_rec ? &r->new_e[i - r->first]
			    : t->is_new ? &t->cpu[i] : NULL;
		uint64_t e = p ? *p : pte_read(&t->cpu[i]);
		uint64_t a = base + i * span;

		if (!e)
			continue;
		if (gvm__ptf_is_dir(e, level)) {
			struct gvm_pt *c = in_rec ? r->new_c[i - r->first]
						  : t->children[i];

			zap_staged_table(upd, c, a, va, end);
		} else if (p && gvm__ptf_is_valid(e)) {
			*p = gvm__ptf_zap(e);
			note_tlb(upd, a, a + span);
			zapped = true;
		}
	}
	if (level || !zapped)
		return;
	for (g = i0 & ~(PT_CONT - 1); g <= i1; g += PT_CONT) {
		bool in_rec = r && g >= r->first && g < r->first + r->count;
		uint64_t *e = in_rec ? &r->new_e[g - r->first]
			    : t->is_new ? &t->cpu[g] : NULL;

		if (!e)
			continue;
		for (i = 0; i < PT_CONT; i++)
			e[i] = gvm__ptf_clear_cont(e[i]);
	}
}

int gvm__pt_update_zap(struct gvm_pt_update *upd, uint64_t va, uint64_t size)
{
	struct gvm_pt_vm *vm = upd->vm;
	int err = check_range(vm, va, size);

	if (err)
		return err;
	GVM_BUG_ON(vm->pending != upd);
	zap_staged_table(upd, vm->root, 0, va, va + size);
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
	if (va >= (1ull << vm->va_bits))
		return -ENOENT;
	for (;;) {
		unsigned int level = t->level, i = gvm__ptf_index(va, level);
		uint64_t span = span_of(level), e = pte_read(&t->cpu[i]);
		const struct gvm_pt *child = level ? t->children[i] : NULL;
		uint64_t eva = base + i * span;
		const struct gvm_pt_rec *r = t->rec;

		if (view == GVM_PT_VIEW_STAGING && r && i >= r->first &&
		    i < r->first + r->count) {
			uint64_t n = r->new_e[i - r->first];
			struct gvm_pt *nc = r->new_c ? r->new_c[i - r->first]
						     : NULL;
			bool owned = r->owned || runs_cover(upd, eva, eva + span);

			if (owned || e == r->old_e[i - r->first]) {
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
		    !runs_hit(upd, eva, eva + span))
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
		if (gvm__ptf_is_leaf(e, level) && !pt_can_leaf(vm, level)) {
			fprintf(stderr, "pt: L%u[%u]: leaf too high\n", level,
				i);
			return -EUCLEAN;
		}
		if (c && validate_table(vm, c, nr))
			return -EUCLEAN;
		if (level == 0 && gvm__ptf_has_cont(e) && !vm->cont_hint) {
			fprintf(stderr, "pt: L0[%u]: 64K hint not allowed\n", i);
			return -EUCLEAN;
		}
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
	nr += vm->nr_deferred;
	if (nr != vm->nr_tables) {
		fprintf(stderr, "pt: %llu tables allocated, %llu accounted\n",
			(unsigned long long)vm->nr_tables,
			(unsigned long long)nr);
		return -EUCLEAN;
	}
	return 0;
}

int gvm__pt_vm_init(struct gvm_pt_vm *vm, const struct gvm_pt_mem *mem,
		    unsigned int va_bits, uint64_t page_sizes)
{
	unsigned int levels = gvm__ptf_levels(va_bits);
	int err = 0;

	memset(vm, 0, sizeof(*vm));
	if (!page_sizes)
		page_sizes = GVM_PAGE_4K | GVM_PAGE_64K | GVM_PAGE_2M |
			     GVM_PAGE_1G;
	if (!levels || !mem || !mem->buddy || !mem->cpu_base ||
	    mem->buddy->chunk_size != PT_PAGE || !(page_sizes & GVM_PAGE_4K))
		return -EINVAL;
	vm->mem = *mem;
	vm->levels = levels;
	vm->va_bits = va_bits;
	vm->leaf_levels = 1u << 0;
	if (page_sizes & GVM_PAGE_2M) {
		vm->leaf_levels |= 1u << 1;
		if (page_sizes & GVM_PAGE_1G)
			vm->leaf_levels |= 1u << 2;
	}
	vm->cont_hint = page_sizes & GVM_PAGE_64K;
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

void gvm__pt_trim(struct gvm_pt_vm *vm)
{
	struct gvm_pt *shadows = NULL;

	mem_lock(vm);
	gvm__pt_spares_drop_locked(vm, &shadows);
	mem_unlock(vm);
	gvm__pt_spares_free_shadows(shadows);
	while (vm->spare_recs) {
		struct gvm_pt_rec *r = vm->spare_recs;

		vm->spare_recs = r->next;
		gvm__free(r);
	}
	vm->nr_spare_recs = 0;
}

void gvm__pt_vm_fini(struct gvm_pt_vm *vm)
{
	GVM_BUG_ON(vm->pending);
	if (vm->root)
		free_tree(vm, vm->root);
	vm->root = NULL;
	GVM_BUG_ON(vm->spares_promised);
	gvm__pt_trim(vm);
}
