/* SPDX-License-Identifier: MIT */
/*
 * The page-table update pipeline of a VM (pt_update.c): the one way every
 * path (inline bind, bind job, exec's rebind of moved BOs, userptr
 * revalidation, fault binds and SVM ranges) changes a VM's page tables.
 *
 *   init → add/retire … → [pt_lock] prepare → commit → [unlock]
 *        → tlb_submit → (wait) → free → fini
 *
 * add() turns the final VA state of [lo, hi) (a VMA or nothing) into one
 * page-table segment; prepare() stages it (allocates, may fail); commit()
 * makes it visible in ONE notifier_lock section that also rechecks the
 * invalidation sequence of every userptr the update writes (first: a stale
 * one is zapped in the staged update before anything is published) and
 * moves userptrs live (written) or dead (retired).  After commit the TLB
 * invalidation is submitted and the unlinked tables freed once it
 * completed.
 */
#ifndef GVM_VM_PT_UPDATE_H
#define GVM_VM_PT_UPDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pt/pt.h"

struct gvm_fence;
struct gvm_vm;
struct gvm_vma;

/*
 * What commit does with a userptr whose pages went stale since they were
 * fetched (its sequence moved):
 *  ZAP    commit anyway, with its PTEs written zapped (they are zapped in
 *         the staged update first, so none is ever valid), and put it on
 *         the VM's invalidated list (the next exec, or the rebind worker,
 *         repins it).  Binds (inline, bind jobs) and the rebuild after a
 *         page-table reclaim: their VA state is decided, they cannot be
 *         retried.
 *  RETRY  abort before committing anything: -EAGAIN, the caller refetches
 *         and tries again (revalidation, fault binds).
 */
enum gvm_vm_update_stale {
	GVM_UPDATE_STALE_ZAP,
	GVM_UPDATE_STALE_RETRY,
};

/*
 * A userptr whose PTEs an update writes, and the sequence its pages were
 * fetched at when add() copied their extents: commit rechecks against
 * that, not against the userptr's sequence then, which a later fetch (of
 * other pages) may have moved on while a queued bind job waited.
 */
struct gvm_vm_update_live {
	struct gvm_vma *vma;
	uint64_t seq;
};

struct gvm_vm_update {
	struct gvm_vm *vm;
	struct gvm_pt_seg *segs;	/* sorted by va, disjoint; segment i's
					   extents follow segment i - 1's in
					   ext[] (pointers set by prepare) */
	size_t nr_segs, cap_segs;
	struct gvm_pt_extent *ext;
	size_t nr_ext, cap_ext;
	struct gvm_vm_update_live *live; /* userptrs whose PTEs it writes */
	size_t nr_live, cap_live;
	struct gvm_vma **retire;	/* userptrs leaving the VM */
	size_t nr_retire, cap_retire;

	struct gvm_pt_reserve res;	/* what prepare may use, if reserved */
	bool reserved;
	struct gvm_pt_update pt;	/* prepared update */
	bool prepared;
	bool zapped;			/* commit zapped a stale userptr */
	struct gvm_pt_tlb tlb;		/* what the commit made stale */
	struct gvm_pt_free_list dead;	/* tables to free after the TLB */

	/* Inline storage segs and ext start in (a small update allocates
	   neither); the struct is moved with gvm__vm_update_move() only. */
	struct gvm_pt_seg segs_inl[2];
	struct gvm_pt_extent ext_inl[2];
};

void gvm__vm_update_init(struct gvm_vm_update *u, struct gvm_vm *vm);

/*
 * Moves @src (not prepared) to @dst, which takes over everything it owns
 * (its arrays may point into its own inline storage, so never copy the
 * struct); @src is left initialised and empty.
 */
void gvm__vm_update_move(struct gvm_vm_update *dst, struct gvm_vm_update *src);

/*
 * Appends the segment [lo, hi) mapped as @vma maps it (a BO's or userptr's
 * pages, a NULL mapping), or cleared if @vma is NULL or a userptr whose
 * memory is gone.  Segments come in address order.  Reads the backing (BO
 * extents: the BO's reservation or vm->lock; userptr pages: vm->lock).
 * 0 or -ENOMEM.
 */
int gvm__vm_update_add(struct gvm_vm_update *u, uint64_t lo, uint64_t hi,
		       struct gvm_vma *vma);

/* A userptr VMA leaving the VM: it stops being live at commit. */
int gvm__vm_update_retire(struct gvm_vm_update *u, struct gvm_vma *vma);

/*
 * Allocates now everything a later prepare of these segments can need
 * (page-table pages, records), so that the prepare cannot fail for memory:
 * for bind jobs, whose prepare runs on the fence-signalling path.  No lock
 * needed.  0, -ENOMEM or -ENOSPC.
 */
int gvm__vm_update_reserve(struct gvm_vm_update *u);

/*
 * Stages the segments (vm->pt_lock held).  0, -ENOMEM or -ENOSPC with
 * nothing changed (never for memory once reserved).  No segment: nothing to stage, commit still does the
 * userptr transitions.
 */
int gvm__vm_update_prepare(struct gvm_vm_update *u);

/*
 * The commit section (vm->pt_lock held; takes notifier_lock): recheck,
 * commit, userptr transitions.  0, or -EAGAIN (RETRY only: a userptr went
 * stale; the prepared update was aborted, nothing changed).
 */
int gvm__vm_update_commit(struct gvm_vm_update *u,
			  enum gvm_vm_update_stale stale);

/* Submits the TLB invalidation the commit needs: its fence, or NULL. */
struct gvm_fence *gvm__vm_update_tlb_submit(struct gvm_vm_update *u);

/*
 * After the TLB invalidation completed: frees the unlinked tables (takes
 * vm->pt_lock unless @locked says the caller holds it).
 */
void gvm__vm_update_free_tables(struct gvm_vm_update *u, bool locked);

/* Aborts an update prepared and not committed; frees the arrays. */
void gvm__vm_update_fini(struct gvm_vm_update *u);

/*
 * The whole pipeline for callers that may block: prepare, commit, TLB
 * submit and wait, free (takes and drops vm->pt_lock; notifier_lock inside).
 * 0, -ENOMEM / -ENOSPC (nothing changed) or -EAGAIN (RETRY).
 */
int gvm__vm_update_run(struct gvm_vm_update *u,
		       enum gvm_vm_update_stale stale);

/*
 * Test hook: if set, every commit calls it with pt_lock held, before it
 * takes notifier_lock (BEFORE), inside the commit section right after the
 * page tables were committed, notifier_lock still held (COMMITTED: the
 * GPU may walk them now; the hook must take no lock), and after the
 * commit section (AFTER), so tests can force an invalidation into either
 * window or let a kernel access what a commit published.  Internal symbol
 * (reachable from the test programs, not exported by the shared library).
 */
enum gvm_vm_update_point {
	GVM_UPDATE_BEFORE_COMMIT,
	GVM_UPDATE_COMMITTED,
	GVM_UPDATE_AFTER_COMMIT,
};
extern void (*gvm__vm_update_hook)(struct gvm_vm *vm,
				   enum gvm_vm_update_point point);

#endif
