// SPDX-License-Identifier: MIT
/*
 * Process-wide resource limits (gvm_limits_set(), <gvm/vm.h>): how many
 * VMs the process may have, and per VM how many VM-local BOs, mappings
 * and page-table pages, so that one client of a device cannot take all of
 * it (issue 11, item 3).  0 means no limit, the default.
 *
 * Where each is enforced: gvm_vm_create (VMs, -EMFILE), gvm_bo_create
 * with a VM (its VM-local BOs, -EMFILE), gvm_vm_bind after its VA ops are
 * applied and before anything else (the VM's mappings, -ENOSPC; the ops
 * are unwound), and the page-table allocator (pt.c: a VM's table pages,
 * -ENOSPC from the bind that needs more; the limit is taken when the VM
 * is created).  A limit lowered below what is in use stops growth; it
 * takes nothing away.
 *
 * Locking: the limits are relaxed atomics (read when enforced; a change
 * races only with calls that begin meanwhile); the VM count is an atomic
 * counter incremented only below the limit (compare-and-swap); a VM's
 * BO count likewise.
 */
#include <errno.h>

#include "core/atomic.h"
#include "core/lockrank.h"
#include "vm/vm.h"

static struct {
	uint32_t max_vms;
	uint32_t max_bos_per_vm;
	uint64_t max_mappings_per_vm;
	uint64_t max_pt_bytes_per_vm;
} limits;				/* relaxed atomics */

static uint32_t nr_vms;			/* atomic: VMs created, not destroyed */

int gvm_limits_set(const struct gvm_limits *l)
{
	if (!l)
		return -EINVAL;
	gvm__might_fault();
	if (l->max_pt_bytes_per_vm % GVM_PAGE_SIZE)
		return -EINVAL;
	gvm_store_relaxed(&limits.max_vms, l->max_vms);
	gvm_store_relaxed(&limits.max_bos_per_vm, l->max_bos_per_vm);
	gvm_store_relaxed(&limits.max_mappings_per_vm, l->max_mappings_per_vm);
	gvm_store_relaxed(&limits.max_pt_bytes_per_vm, l->max_pt_bytes_per_vm);
	return 0;
}

int gvm_limits_get(struct gvm_limits *l)
{
	if (!l)
		return -EINVAL;
	gvm__might_fault();
	l->max_vms = gvm_load_relaxed(&limits.max_vms);
	l->max_bos_per_vm = gvm_load_relaxed(&limits.max_bos_per_vm);
	l->max_mappings_per_vm = gvm_load_relaxed(&limits.max_mappings_per_vm);
	l->max_pt_bytes_per_vm = gvm_load_relaxed(&limits.max_pt_bytes_per_vm);
	l->nr_vms = gvm_load_relaxed(&nr_vms);
	return 0;
}

/* Takes one from @count unless it reached @max (0: no limit). */
static int count_get(uint32_t *count, uint32_t max)
{
	uint32_t n = gvm_load_relaxed(count);

	do {
		if (max && n >= max)
			return -EMFILE;
	} while (!gvm_cmpxchg_acq_rel(count, &n, n + 1));
	return 0;
}

int gvm__limit_vm_get(void)
{
	return count_get(&nr_vms, gvm_load_relaxed(&limits.max_vms));
}

void gvm__limit_vm_put(void)
{
	gvm_fetch_sub_release(&nr_vms, 1u);
}

int gvm__limit_bo_get(struct gvm_vm *vm)
{
	return count_get(&vm->nr_local_bos,
			 gvm_load_relaxed(&limits.max_bos_per_vm));
}

void gvm__limit_bo_put(struct gvm_vm *vm)
{
	gvm_fetch_sub_release(&vm->nr_local_bos, 1u);
}

uint64_t gvm__limit_mappings(void)
{
	return gvm_load_relaxed(&limits.max_mappings_per_vm);
}

uint64_t gvm__limit_pt_pages(void)
{
	return gvm_load_relaxed(&limits.max_pt_bytes_per_vm) / GVM_PAGE_SIZE;
}
