/* SPDX-License-Identifier: MIT */
/*
 * Page-table engine (internal API).  The design, the staging protocol,
 * invariants, locking and an example are at the top of pt.c.
 *
 * Ranges are (va, size) in bytes, 4 KiB aligned, size > 0, va + size within
 * the VM's VA bits.  Errors: -EINVAL for bad arguments, -ENOMEM / -ENOSPC
 * from the heap / the page-table memory allocator; a failed call changed
 * nothing.
 */
#ifndef GVM_PT_PT_H
#define GVM_PT_PT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gvm/device.h>
#include <gvm/types.h>

#include "core/buddy.h"
#include "pt/pt_fmt.h"

struct gvm_mutex;

/*
 * Where page-table pages come from: 4 KiB blocks of @buddy, whose offset o
 * is CPU-writable at cpu_base + o and seen by the device at dev_base + o.
 * The buddy's chunk size must be 4 KiB.  If @lock is non-NULL the engine
 * holds it around every gvm__buddy_* call (the buddy is then shared, e.g.
 * with buffer objects and other VMs' tables); it is a leaf lock
 * (GVM_RANK_LEAF): nothing else is taken under it.  If @lock is NULL the
 * owner serialises the buddy.  Zero-initialise the struct (the fields are
 * read even when unused).
 *
 * @make_room, if set, is called (with @priv and the bytes wanted, and
 * without @lock) when a table allocation finds the buddy full: it may
 * free buddy space, by evicting what else lives there, and returns 0 if
 * it freed some (the allocation is retried) or -ENOSPC (the allocation
 * fails).  It runs in the table allocation's context: with whatever
 * locks the engine's caller holds, never in a fence-signalling section
 * (tables are allocated there only from reserves).
 *
 * @freed, if set, is called with @priv after a table page went back to
 * the buddy, with @lock held: the owner may wake who waits for space.
 */
struct gvm_pt_mem {
	struct gvm_buddy *buddy;
	uint8_t *cpu_base;
	uint64_t dev_base;
	struct gvm_mutex *lock;		/* optional, see above */
	int (*make_room)(void *priv, uint64_t bytes);	/* optional */
	void (*freed)(void *priv);	/* optional */
	void *priv;			/* for make_room and freed */
	uint64_t max_pages;		/* 0, or at most this many table
					   pages (root and reserves' spares
					   included): -ENOSPC beyond */
};

/*
 * Host-side shadow of one page-table page.  Walks follow children[], never
 * decode addresses.  All fields: protected by the VM layer's vm->pt_lock for
 * prepare/commit/abort and by the notifier lock for zap (see pt.c).
 */
struct gvm_pt {
	uint64_t *cpu;			/* the 512 entries, CPU view */
	uint64_t dev_addr;		/* device address of the page */
	struct gvm_buddy_block *block;	/* its buddy block */
	struct gvm_pt_rec *rec;		/* staged changes, NULL if none */
	struct gvm_pt *next;		/* on an update's/free list */
	uint16_t live;			/* committed entries in use */
	uint8_t level;
	uint8_t is_new;			/* built by a pending update */
	struct gvm_pt *children[];	/* [512], level >= 1 only */
};

/* One VM's page tables. */
struct gvm_pt_vm {
	struct gvm_pt_mem mem;
	struct gvm_pt *root;		/* level levels - 1, never freed */
	unsigned int levels;		/* 4 (48-bit VA) or 5 (57-bit) */
	unsigned int va_bits;
	unsigned int leaf_levels;	/* bit L: level L may hold leaves
					   (bit 0 always; 2 only with 1);
					   constant, from the page sizes */
	bool cont_hint;			/* 64K CONT hint allowed; constant */
	uint64_t nr_tables;		/* tables allocated (incl. pending new
					   ones, unlinked ones not yet freed
					   and the root) */
	uint64_t nr_deferred;		/* unlinked by commits, not yet freed
					   (gvm__pt_free_deferred) */
	uint64_t nr_pages;		/* atomic: table pages held, spares
					   of reserves included
					   (mem.max_pages) */
	struct gvm_pt_update *pending;	/* prepared, not yet committed */
	uint64_t tlb_full_lg2;		/* invalidations above 2^this: full */
	uint64_t pte_writes[GVM_PTF_MAX_LEVELS];
					/* entries written by binds, per
					   level (statistics for tests) */
	uint64_t commit_stores;		/* entries commits stored into
					   connected tables (tests: only
					   what changed is stored) */
	struct gvm_pt *spares;		/* spare tables (pages, shadows with
					   room for children), on ->next:
					   mem.lock (SPARES in pt.c) */
	uint64_t nr_spares;		/* on the list; written under
					   mem.lock (relaxed stores), read
					   under it or as a hint */
	uint64_t spares_promised;	/* of them, what live reserves may
					   still take; as nr_spares */
	struct gvm_pt_rec *spare_recs;	/* heap records of finished updates,
					   kept for the next prepare (at most
					   GVM_PT_SPARE_RECS); serialised
					   like prepare/commit (vm->pt_lock) */
	unsigned int nr_spare_recs;
};

/* Records kept per VM for reuse: a bind touches one table per level. */
#define GVM_PT_SPARE_RECS 8

/* Bind flags. */
#define GVM_PT_WRITE	(1u << 0)
#define GVM_PT_DEVMEM	(1u << 1)	/* backing is device memory */
#define GVM_PT_ATOMIC	(1u << 2)
#define GVM_PT_NULL	(1u << 3)	/* sparse: no backing */
#define GVM_PT_PAT_SHIFT 4u
#define GVM_PT_PAT(x)	((unsigned int)(x) << GVM_PT_PAT_SHIFT)	/* 0..GVM_PAT_MAX */
#define GVM_PT_FLAGS_ALL (GVM_PT_WRITE | GVM_PT_DEVMEM | GVM_PT_ATOMIC | \
			  GVM_PT_NULL | GVM_PT_PAT(GVM_PAT_MAX))
#define GVM_PT_UNBIND	(1u << 7)	/* segment flag: clear the range (no
					   other flag allowed) */

/* One piece of backing: [addr, addr + len), 4 KiB aligned. */
struct gvm_pt_extent {
	uint64_t addr;
	uint64_t len;
};

/*
 * The VA range whose TLB entries a change makes stale: size 0 = none,
 * full = flush everything, else [start, start + size) with size a power of
 * two and start aligned to it.
 */
struct gvm_pt_tlb {
	uint64_t start;
	uint64_t size;
	bool full;
};

/* The invalidation that covers [lo, hi) (a range, or a full flush). */
void gvm__pt_tlb_span(const struct gvm_pt_vm *vm, uint64_t lo, uint64_t hi,
		      struct gvm_pt_tlb *tlb);

/* @acc grows to cover @t too (one invalidation for both). */
void gvm__pt_tlb_add(const struct gvm_pt_vm *vm, struct gvm_pt_tlb *acc,
		     const struct gvm_pt_tlb *t);

/* Tables unlinked by a commit, to free after the TLB invalidation. */
struct gvm_pt_free_list {
	struct gvm_pt *head;
	uint64_t nr;
};

/*
 * One segment of an update: map [va, end) to @ext[0..n) (total length
 * end - va) with @flags, map it to nothing (GVM_PT_NULL: ext NULL, n 0), or
 * clear it (flags == GVM_PT_UNBIND, ext NULL, n 0).  [va, end) is 4 KiB
 * aligned, va < end.
 */
struct gvm_pt_seg {
	uint64_t va, end;
	unsigned int flags;		/* GVM_PT_* bind flags, or GVM_PT_UNBIND */
	const struct gvm_pt_extent *ext;
	size_t n;
};

/* A VA run [va, end) owned by an update (see "The rule" in pt.c). */
struct gvm_pt_run {
	uint64_t va, end;
};

/*
 * A prepared update (caller-owned storage; it must not move while
 * pending).  Fields are the engine's.
 */
struct gvm_pt_update {
	struct gvm_pt_vm *vm;
	const struct gvm_pt_run *runs;	/* the union of the segments: sorted,
					   disjoint, never adjacent */
	size_t nr_runs;
	struct gvm_pt_run run0;		/* runs[] when nr_runs == 1, else
					   runs[] is allocated */
	struct gvm_pt_rec *recs;	/* staged changes of connected tables */
	struct gvm_pt *new_tables;	/* tables built for this update */
	bool runs_reserved;		/* runs[] is in a reserve's arena */
	uint64_t tlb_lo, tlb_hi;	/* changed in-use entries, [lo, hi) */
};

enum gvm_pt_view {
	GVM_PT_VIEW_COMMITTED,		/* what the GPU sees */
	GVM_PT_VIEW_STAGING,		/* committed + the pending update */
};

/* A translation. */
struct gvm_pt_xlate {
	uint64_t addr;			/* backing address of va (0 for NULL) */
	uint64_t page_size;		/* 4K, 64K (hinted), 2M or 1G */
	unsigned int level;		/* of the leaf */
	uint64_t pte;			/* the raw leaf entry */
};

/*
 * Creates an empty VM (allocates the root).  @va_bits: 48 or 57.
 * @page_sizes: the GVM_PAGE_* mask of the device (0: all); the tables hold
 * only leaves of those sizes: 2M leaves with GVM_PAGE_2M, 1G leaves with
 * GVM_PAGE_1G and 2M (a 1G leaf splits into 2M ones), the 64K hint with
 * GVM_PAGE_64K, 4K always.  Returns 0, -EINVAL (also: @page_sizes without
 * GVM_PAGE_4K), -ENOMEM or -ENOSPC.
 */
int gvm__pt_vm_init(struct gvm_pt_vm *vm, const struct gvm_pt_mem *mem,
		    unsigned int va_bits, uint64_t page_sizes);

/* Frees every table.  No update may be pending. */
void gvm__pt_vm_fini(struct gvm_pt_vm *vm);

/*
 * Frees the spare records commits keep for later prepares (a commit hands
 * its heap records back to the VM, up to GVM_PT_SPARE_RECS; an abort frees
 * them) and the spare tables no reserve counts on.  Same serialisation as
 * prepare (takes mem.lock).  Never fails.
 */
void gvm__pt_trim(struct gvm_pt_vm *vm);

/*
 * Prepares one update applying @segs[0..n): sorted by va, non-overlapping
 * (adjacent is fine); the addresses between segments are left untouched.
 * Whatever was mapped in a segment is replaced; the result is that of
 * applying the segments in order, except that adjacent NULL segments with
 * equal flags act as one (largest pages).  Allocates every table the
 * update needs; changes nothing the GPU sees.  At most one update may be
 * pending per VM.  @segs and their extents need only live during the call.
 * Returns 0, -EINVAL (n == 0, unsorted or overlapping segments, misaligned
 * or empty ranges, beyond the VA bits, bad flags or extents), -EBUSY (an
 * update is pending), -ENOMEM or -ENOSPC; nothing changed on failure.
 */
int gvm__pt_update_prepare(struct gvm_pt_vm *vm, const struct gvm_pt_seg *segs,
			   size_t n, struct gvm_pt_update *upd);

/*
 * What a prepare of given segments may allocate, allocated ahead (see
 * RESERVES in pt.c): for a prepare that must not fail for memory, such as
 * one on a fence-signalling path.  Caller-owned; zero-initialise.
 */
struct gvm_pt_reserve {
	size_t nr_tables;		/* spares of the VM promised to it
					   and not yet taken (SPARES) */
	uint8_t *mem;			/* arena: records, segments, runs */
	size_t mem_size, mem_used;
};

/*
 * Reserves what a prepare of @segs[0..n) (as for gvm__pt_update_prepare)
 * can need, whatever the tables look like by then.  Touches no table and
 * no VM counter: needs no lock of the VM's.  0, -EINVAL (bad segments),
 * -ENOMEM or -ENOSPC with nothing reserved.
 */
int gvm__pt_reserve(struct gvm_pt_vm *vm, const struct gvm_pt_seg *segs,
		    size_t n, struct gvm_pt_reserve *res);

/* Frees what is left of @res, after the update it served was committed
   or aborted (its records live in the arena until then); the spares it
   did not take stay with the VM, for later reserves and tables. */
void gvm__pt_reserve_fini(struct gvm_pt_vm *vm, struct gvm_pt_reserve *res);

/*
 * With mem.lock held (if the VM has one): gives the pages of the spares no
 * reserve counts on back to the buddy (calling mem.freed) and puts their
 * shadows on *@shadows, to free with gvm__pt_spares_free_shadows() once
 * the lock is dropped.  How many.  For the owner's make-room path.
 */
uint64_t gvm__pt_spares_drop_locked(struct gvm_pt_vm *vm,
				    struct gvm_pt **shadows);
void gvm__pt_spares_free_shadows(struct gvm_pt *shadows);

/*
 * gvm__pt_update_prepare, allocating only from @res (NULL: from the heap
 * and the buddy).  With a reserve made for the same segments it cannot
 * fail for memory.
 */
int gvm__pt_update_prepare_reserved(struct gvm_pt_vm *vm,
				    const struct gvm_pt_seg *segs, size_t n,
				    struct gvm_pt_reserve *res,
				    struct gvm_pt_update *upd);

/*
 * One-segment forms of gvm__pt_update_prepare: binding [va, va + size) to
 * @ext[0..n) (total length == size), or to nothing for GVM_PT_NULL (ext
 * NULL, n 0); @flags must not hold GVM_PT_UNBIND.
 */
int gvm__pt_bind_prepare(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
			 const struct gvm_pt_extent *ext, size_t n,
			 unsigned int flags, struct gvm_pt_update *upd);

/* Prepares unmapping [va, va + size) (holes are fine). */
int gvm__pt_unbind_prepare(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
			   struct gvm_pt_update *upd);

/*
 * Makes a prepared update visible.  Never fails, never allocates.  Tables
 * it unlinks go to @deferred (free them with gvm__pt_free_deferred() after
 * the TLB invalidation), or are freed at once if @deferred is NULL.  @tlb
 * (may be NULL) receives the range to invalidate.
 */
void gvm__pt_update_commit(struct gvm_pt_update *upd, struct gvm_pt_tlb *tlb,
			   struct gvm_pt_free_list *deferred);

/* Drops a prepared update: frees what it built; nothing changes. */
void gvm__pt_update_abort(struct gvm_pt_update *upd);

void gvm__pt_free_deferred(struct gvm_pt_vm *vm,
			   struct gvm_pt_free_list *list);

/* prepare + commit (tables freed at once). */
int gvm__pt_bind(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
		 const struct gvm_pt_extent *ext, size_t n, unsigned int flags,
		 struct gvm_pt_tlb *tlb);
int gvm__pt_unbind(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
		   struct gvm_pt_tlb *tlb);

/*
 * Zaps the committed leaves intersecting [va, va + size) in place (a huge
 * leaf straddling an end is zapped whole).  Never allocates or frees; may
 * run while an update is pending (see pt.c).  Returns 0 or -EINVAL.
 */
int gvm__pt_zap(struct gvm_pt_vm *vm, uint64_t va, uint64_t size,
		struct gvm_pt_tlb *tlb);

/*
 * Zaps, in the pending update @upd, the staged leaves intersecting
 * [va, va + size) (a huge leaf straddling an end whole): the commit then
 * writes them zapped, so no valid leaf of the range the update writes is
 * ever visible to the device.  Committed entries the update does not
 * write are left alone (gvm__pt_zap is for those).  Never allocates;
 * serialised like commit (the VM layer: pt_lock and the notifier lock).
 * Returns 0 or -EINVAL.
 */
int gvm__pt_update_zap(struct gvm_pt_update *upd, uint64_t va, uint64_t size);

/*
 * Translates @va in @view.  Returns 0, or -ENOENT if nothing valid maps it
 * (@out->pte then holds the zapped entry, or 0).
 */
int gvm__pt_translate(const struct gvm_pt_vm *vm, uint64_t va,
		      enum gvm_pt_view view, struct gvm_pt_xlate *out);

/*
 * Checks the invariants listed in pt.c over the committed tables.  Returns
 * 0 or -EUCLEAN after printing what is wrong.
 */
int gvm__pt_validate(const struct gvm_pt_vm *vm);

/*
 * Test hook: if set, prepare calls it before it copies the committed
 * entries of a connected table into a staged record (@base: the table's
 * VA, @level), so tests can run a zap concurrently with that copy.
 * Internal symbol (reachable from the test programs).
 */
extern void (*gvm__pt_prepare_hook)(struct gvm_pt_vm *vm, uint64_t base,
				    unsigned int level);

/*
 * Test-only switch, false in every shipped path: when set, commit writes
 * the entries it does not own even if a zap changed them since prepare,
 * i.e. the rule of "ZAP DURING PREPARE" (seed 000's fix) is off.  The
 * deterministic explorer sets it to show that it finds the race
 * (docs/verification.md).
 */
extern bool gvm__pt_mutant_no_zap_rule;

#endif
