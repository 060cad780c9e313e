/* SPDX-License-Identifier: MIT */
/*
 * Syncs of binds and execs (internal): parsing the user's struct gvm_sync
 * array, and signalling the out-syncs.  See sync.c.
 */
#ifndef GVM_VM_SYNC_H
#define GVM_VM_SYNC_H

#include <gvm/vm.h>

#include "core/list.h"

/* A bind's user fence, shared with the VMAs it created (the -EBUSY rule). */
struct gvm_ufence {
	uint32_t refcount;		/* atomic */
	uint32_t written;		/* atomic: the value was stored */
	uint64_t *addr;			/* immutable: a process address, or
					   (mm set) an address of mm */
	uint64_t value;			/* immutable */
	struct gvm_mm *mm;		/* immutable: a model mm whose memory
					   holds it (a reference), or NULL */
	struct gvm_fence *fence;	/* the fence it waits for, reference */
	struct gvm_fence_cb cb;
	struct gvm_list writer_link;	/* sync.c's writer.lock */
};

struct gvm_sync_set {
	struct gvm_fence **in;		/* references */
	uint32_t nr_in;
	const struct gvm_sync *syncs;	/* the caller's array */
	uint32_t nr;
	struct gvm_ufence **uf;		/* [nr]: the user fence of sync i */
	struct gvm_ufence *ufence;	/* the first of them, or NULL */
};

/*
 * Checks @syncs[0..@n) and takes references on the wait fences.  A user
 * fence at an address of @vm's mm's own memory (a model mm's range,
 * gvm__mm_owns) is in that memory.  0, -EINVAL (bad type/flags/pointers,
 * user fence used as a wait), -EFAULT (a user fence not writable),
 * -ENOMEM, -EAGAIN (no thread for the user-fence writer).  No lock held
 * (the fence's page may come back from device memory; the writer may be
 * started).
 */
int gvm__syncs_parse(struct gvm_sync_set *set, struct gvm_vm *vm,
		     const struct gvm_sync *syncs, uint32_t n);
/* Drops what parse took (in-fences, the unused user fence). */
void gvm__syncs_fini(struct gvm_sync_set *set);
/*
 * Signals the out-syncs with @done (a reference is taken where kept):
 * *out, syncobjs, user fences (written when @done signals).  Cannot fail.
 */
void gvm__syncs_signal(struct gvm_sync_set *set, struct gvm_fence *done);

/* @vm is going: it no longer keeps the user-fence writer (sync.c). */
void gvm__ufence_writer_put_vm(struct gvm_vm *vm);

struct gvm_ufence *gvm__ufence_get(struct gvm_ufence *uf);
void gvm__ufence_put(struct gvm_ufence *uf);
static inline bool gvm__ufence_written(struct gvm_ufence *uf)
{
	return !uf || __atomic_load_n(&uf->written, __ATOMIC_ACQUIRE);
}

#endif
