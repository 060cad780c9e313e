/* SPDX-License-Identifier: MIT */
/*
 * Userptr VMAs: GPU mappings of the VM's mm, never pinned (userptr.c has
 * the protocol).  What protects what: u->live, its place on the VM's
 * invalidated list: notifier_lock; its pages and fetch sequence: vm->lock
 * (or the bind job that writes it before it ever went live).
 */
#ifndef GVM_VM_USERPTR_H
#define GVM_VM_USERPTR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gvm_pt_extent;
struct gvm_pt_update;
struct gvm_vm;
struct gvm_vma;

/*
 * Gives a new userptr VMA its notifier and fetches its pages: before the
 * bind's point of no return, vm->lock held, no reservation.  0, -EFAULT
 * (not mapped), -EPERM (writable mapping of read-only memory), -ENOMEM.
 * @svm non-NULL: the VMA is an SVM range (svm.c) made under these
 * attributes, rebound by GPU faults only (an invalidation zaps it, exec
 * does not repin it), whose pages in the device memory of the VM's device
 * or of a device linked to it are mapped there instead of being migrated
 * back; its pages are fetched by the fault that binds it.
 */
struct gvm_mem_attrs;
int gvm__userptr_attach(struct gvm_vm *vm, struct gvm_vma *vma,
			const struct gvm_mem_attrs *svm);
/* Removes the notifier and frees the CPU side.  No lock held. */
void gvm__userptr_detach(struct gvm_vma *vma);

/*
 * Fetches the pages again (a GPU fault on the userptr, fault mode):
 * vm->lock held, no reservation.  0, -EFAULT (gone, or not mapped any
 * more), -EPERM, -ENOMEM.
 */
int gvm__userptr_refresh(struct gvm_vma *vma);

/*
 * A userptr piece whose CPU memory is gone (a split of a userptr over
 * unmapped memory): it keeps no PTEs, the GPU faults there.  vm->lock.
 */
bool gvm__userptr_gone(const struct gvm_vma *vma);
void gvm__userptr_set_gone(struct gvm_vma *vma);

/*
 * SVM ranges (svm.c), vm->lock held.  in_devmem: the pages fetched last
 * are in the VM's device's memory (the PTEs get GVM_PT_DEVMEM); in_peer:
 * in a linked device's memory, reached through its window (system-memory
 * PTEs); atomic: the PTEs allow GPU atomics (the range's atomic policy
 * and where its pages are; always for a userptr); no_migrate: a
 * migration failed twice, the range stays in system memory.
 */
/*
 * The next SVM range an UNMAP invalidated (its CPU memory went away) that
 * is still in the VM, taken off the VM's list; NULL if none.  vm->lock
 * held, which keeps the range's VMA alive.
 */
struct gvm_vma *gvm__userptr_gc_pop(struct gvm_vm *vm);
bool gvm__userptr_in_devmem(const struct gvm_vma *vma);
bool gvm__userptr_in_peer(const struct gvm_vma *vma);
bool gvm__userptr_atomic(const struct gvm_vma *vma);
uint32_t gvm__userptr_atomic_policy(const struct gvm_vma *vma);
/* DEVICE atomics allowed wherever the pages are, until they are in device
   memory again (contention: gvm__svm_fault). */
void gvm__userptr_set_atomic_anywhere(struct gvm_vma *vma);
bool gvm__userptr_no_migrate(const struct gvm_vma *vma);
void gvm__userptr_set_no_migrate(struct gvm_vma *vma);

/*
 * Inserts the SVM chunk notifiers over [start, end), as a range made there
 * would (attr.c: unmaps there reset attributes).  vm->lock.  0, -ENOMEM.
 */
int gvm__userptr_chunks_watch(struct gvm_vm *vm, uint64_t start,
			      uint64_t end);

/* Appends the device addresses of [offset, offset + len) of the VMA
   (gvm__bo_extents' conventions). */
int gvm__userptr_extents(const struct gvm_vma *vma, uint64_t offset,
			 uint64_t len, const struct gvm_pt_extent *inl,
			 struct gvm_pt_extent **out, size_t *n, size_t *cap);

/* vm->lock held: the sequence the VMA's pages were fetched at. */
uint64_t gvm__userptr_seq(const struct gvm_vma *vma);

/* notifier_lock held: did pages fetched at sequence @seq go stale? */
bool gvm__userptr_stale_locked(struct gvm_vma *vma, uint64_t seq);

/*
 * Test-only switch, false in every shipped path: when set, an SVM range's
 * commit skips the sequence recheck (above and gvm__userptr_commit), so a
 * fault that fetched pages an invalidation then took away maps them
 * anyway.  The deterministic explorer sets it (gvm explore fault-reclaim
 * --mutant) to show that it finds the race (docs/verification.md).
 */
extern bool gvm__svm_mutant_no_seq_recheck;

/*
 * The userptr side of a page-table commit (pt_update.c), notifier_lock
 * held, in the commit section, before the page tables are committed:
 * @live, the update writes the VMA's PTEs from pages fetched at sequence
 * @seq (@staged: the prepared update, or NULL), it goes live and leaves
 * the invalidated list, unless those pages went stale (an invalidation
 * since @seq; also if a later fetch replaced them: the update holds the
 * old ones, and cannot leave the range as the later one wrote it): then
 * the staged PTEs are zapped (the
 * commit writes them invalid) and so are the committed ones, it stays (or
 * goes) on the list and true is returned (a TLB flush is needed); !@live,
 * it leaves the VM and is no longer zapped by its notifier.
 */
bool gvm__userptr_commit(struct gvm_vma *vma, bool live, uint64_t seq,
			 struct gvm_pt_update *staged);

/*
 * Exec and the rebind worker: refetches and rebinds every userptr on the
 * VM's invalidated list (vm->lock held, no reservation).  0, -ENOMEM,
 * -ENOSPC, -EAGAIN (invalidated again and again).
 */
int gvm__userptr_revalidate(struct gvm_vm *vm);

/*
 * notifier_lock held: true if an invalidated userptr still in the VA tree
 * waits for its repin (exec must revalidate again; the rebind worker must
 * not resume the queues).
 */
bool gvm__userptr_pending_locked(struct gvm_vm *vm);

/*
 * VM teardown, no lock held, every range gone: removes the SVM ranges'
 * chunk notifiers (userptr.c, "SVM chunks").
 */
void gvm__userptr_chunks_fini(struct gvm_vm *vm);

#endif
