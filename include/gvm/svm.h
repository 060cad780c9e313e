/* SPDX-License-Identifier: MIT */
/*
 * Shared virtual memory control: memory attributes of a VM's address range
 * (the xe / amdkfd "madvise" of SVM).
 *
 * Attributes say how gvm places and maps the process memory a
 * CPU_ADDR_MIRROR mapping mirrors (docs/svm.md, docs/policy.md).  They
 * belong to the VM, per 4 KiB-aligned range of its address space, and act
 * on the SVM ranges its GPU faults make there; BO and userptr mappings
 * keep the placement and PAT index they were bound with.  An address no
 * attribute was set for has the defaults (all fields 0).
 *
 *  preferred location  where a fault puts the pages:
 *    GVM_LOC_DEFAULT  the faulting device's memory when the memory may move
 *                     there (private anonymous, writable), unless it lives
 *                     in the memory of a device linked to it already: then
 *                     it is mapped there, peer to peer, without a copy
 *    GVM_LOC_SYSTEM   system memory (device-resident pages come back)
 *    GVM_LOC_DEVICE   @dev's memory: the VM's own device, or one linked to
 *                     it (gvm_device_link), which the VM's device then maps
 *                     peer to peer; a device that is not linked cannot be
 *                     reached: the pages stay in system memory, or, with
 *                     GVM_MADV_STRICT, gvm_vm_madvise() fails (-ENOLINK)
 *  atomic policy  what GPU atomics need:
 *    GVM_ATOMIC_UNDEFINED  the device's default: atomics wherever the
 *                          memory is (the simulated GPU's system-memory
 *                          atomics are coherent)
 *    GVM_ATOMIC_DEVICE     device memory (this device's or a linked
 *                          one's): an atomic on system memory migrates the
 *                          range first, whatever the preferred location
 *    GVM_ATOMIC_GLOBAL     anywhere, like UNDEFINED, stated
 *    GVM_ATOMIC_CPU        never on the GPU: a GPU atomic there fails its
 *                          job (-EIO; the fault is logged, its access
 *                          GVM_ACCESS_ATOMIC); so does one under DEVICE
 *                          on memory that cannot move (shared, file)
 *  pat            the PAT index of the PTEs (0 .. GVM_PAT_MAX)
 *  granularity    the largest SVM range made there (4 KiB, 64 KiB or
 *                 2 MiB; 0: 2 MiB): the unit of faults and migrations
 *
 * Setting an attribute to the value it has invalidates nothing.  A changed
 * value drops exactly the SVM ranges that intersect the changed part (their
 * PTEs go; the data stays where it is, nothing is copied): their next GPU
 * fault makes them again under the new attributes.  Ranges never straddle
 * an attribute boundary.  Attributes of memory the CPU unmaps go back to
 * the defaults (auto-reset), for memory gvm watches: what was mapped when
 * the attribute was set, and what the GPU has touched since.
 */
#ifndef GVM_SVM_H
#define GVM_SVM_H

#include <gvm/types.h>

GVM_BEGIN_DECLS

struct gvm_device;
struct gvm_vm;

/* Preferred locations. */
#define GVM_LOC_DEFAULT		0u
#define GVM_LOC_SYSTEM		1u
#define GVM_LOC_DEVICE		2u

/* Atomic policies. */
#define GVM_ATOMIC_UNDEFINED	0u
#define GVM_ATOMIC_DEVICE	1u
#define GVM_ATOMIC_GLOBAL	2u
#define GVM_ATOMIC_CPU		3u

struct gvm_mem_attrs {
	uint32_t preferred_loc;		/* GVM_LOC_* */
	uint32_t atomic;		/* GVM_ATOMIC_* */
	struct gvm_device *dev;		/* GVM_LOC_DEVICE: whose memory (no
					   reference is taken: the attribute
					   holds its own); else NULL */
	uint32_t pat;			/* PAT index */
	uint32_t reserved;		/* 0 */
	uint64_t granularity;		/* 0, 4 KiB, 64 KiB or 2 MiB */
};

/* Which attributes gvm_vm_madvise() sets (gvm_madvise::set). */
#define GVM_MADV_PREFERRED_LOC	(1u << 0)	/* preferred_loc and dev */
#define GVM_MADV_ATOMIC		(1u << 1)
#define GVM_MADV_PAT		(1u << 2)
#define GVM_MADV_GRANULARITY	(1u << 3)
#define GVM_MADV_ALL		0xfu

/* gvm_madvise::flags */
#define GVM_MADV_STRICT		(1u << 0)	/* -ENOLINK for a device the
						   VM's device cannot reach */

struct gvm_madvise {
	uint32_t set;			/* GVM_MADV_* bits: the fields of
					   @attrs to set, the others kept */
	uint32_t flags;			/* GVM_MADV_STRICT */
	struct gvm_mem_attrs attrs;
};

/*
 * Sets the attributes @adv->set of [addr, addr + range) of @vm.  @addr
 * and @range 4 KiB aligned, @range not 0, inside the VM's address space;
 * the VM has an mm.  Changes the CPU made before the call are seen by it
 * (gvm_mm_flush).  Returns 0, -EINVAL (bad range, flags, set bits or
 * values, GVM_LOC_DEVICE without a device), -EOPNOTSUPP (a VM without an
 * mm), -ENOLINK (GVM_MADV_STRICT and a device the VM's device is not
 * linked to), -ENOMEM; on failure nothing changed.
 */
GVM_API int gvm_vm_madvise(struct gvm_vm *vm, uint64_t addr, uint64_t range,
			   const struct gvm_madvise *adv);

/* One attribute range, as gvm_vm_query_attrs() reports it. */
struct gvm_attr_range {
	uint64_t addr, range;
	struct gvm_mem_attrs attrs;	/* attrs.dev: no reference */
};

/*
 * The attribute ranges covering [addr, addr + range) as they are now, in
 * address order, clipped to it, default stretches included (every byte of
 * the query is in exactly one), adjacent equal ranges merged.  *@n: in,
 * the capacity of @out; out, the number of ranges.  With @out NULL only
 * the number is reported.  Returns 0, -EINVAL, -EOPNOTSUPP (no mm),
 * -ENOSPC (more ranges than the capacity: the first @n are written, *@n
 * is the number needed).
 */
GVM_API int gvm_vm_query_attrs(struct gvm_vm *vm, uint64_t addr,
			       uint64_t range, struct gvm_attr_range *out,
			       uint32_t *n);

/*
 * SVM policies (docs/policy.md): the decisions the memory attributes
 * leave open - where a fault puts pages with the default preferred
 * location, what it prefetches, whether young allocations are spared by
 * eviction, whether thrashing ranges are pinned to system memory.  One
 * policy is in force for the whole process, "default" at start; a
 * selection applies to the decisions made after it (ranges already
 * placed stay where they are until their next fault).
 *
 * gvm_svm_policy_select() returns 0 or -EINVAL (NULL or an unknown name;
 * nothing changed).  gvm_svm_policy_current() names the policy in force.
 * gvm_svm_policy_list() names policy @i (from 0) and, if @summary is not
 * NULL, gives a one-line description in *@summary; NULL past the last.
 * Thread-safe; the strings are static.
 */
GVM_API int gvm_svm_policy_select(const char *name);
GVM_API const char *gvm_svm_policy_current(void);
GVM_API const char *gvm_svm_policy_list(unsigned int i, const char **summary);

GVM_END_DECLS

#endif
