// SPDX-License-Identifier: MIT
/*
 * Debug access to a VM's memory from the CPU: gvm_vm_peek() and
 * gvm_vm_poke(), a debugger's read and write at GPU addresses.
 *
 * An access goes through the VM's mappings as gvm_vm_bind() decided them
 * (the VA tree; a bind still queued counts as done), not through the page
 * tables: a fault-mode mapping not faulted in yet, or one a move or an
 * invalidation zapped, is read like a bound one.  Per kind of mapping:
 *
 *   BO        the BO's backing wherever it is now (VRAM through the
 *             device's CPU window, or its system pages), under the BO's
 *             reservation, so no move runs meanwhile (moves are done
 *             under it, move.c);
 *   NULL      reads zeros, writes are dropped (what the GPU does);
 *   USERPTR   the CPU memory it mirrors, at its CPU address;
 *   MIRROR    the CPU memory at the same address (SVM: GPU VA == CPU VA).
 *
 * Two passes.  Under vm->lock and every reservation of the VM (as exec
 * locks them): check that the whole range is mapped (else -EFAULT with
 * nothing copied), copy the BO and NULL pieces, and note the CPU pieces
 * (userptr, mirror).  Then, with no lock held, copy the CPU pieces
 * through the VM's mm (gvm__mm_access): process_vm_readv/writev on this
 * process for gvm_mm_self, where an unreadable or unwritable page is
 * -EFAULT instead of a crash and a page SVM moved to device memory faults
 * back through the mm's event thread, which may need locks this call no
 * longer holds; the model's own read and write on a model mm (its
 * addresses are not the process's).  So a poke that fails there may have
 * written the pieces before the failing page (like a failed write(2)).
 *
 * Not done: ordering with GPU work (a kernel writing the same bytes
 * meanwhile races with the copy: wait for its fences first), atomicity of
 * any size, PROT/READONLY checks (a debugger writes read-only mappings),
 * and the page tables themselves (the oracle in the tests reads those).
 *
 * Locking: vm->lock, then the reservations (gvm__vm_lock_all); no lock in
 * the second pass.  May block.
 */
#include <errno.h>
#include <string.h>

#include <gvm/lockset.h>

#include "core/alloc.h"
#include "core/lockrank.h"
#include "mm/mm.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/vm.h"
#include "vm/vm_bo.h"

struct cpu_piece {
	uint64_t cpu;		/* CPU address */
	uint64_t off;		/* offset in the caller's buffer */
	uint64_t len;
};

/* Copies [off, off + len) of @bo to or from @buf.  Reservation held. */
static void bo_copy(struct gvm_bo *bo, uint64_t off, uint8_t *buf,
		    uint64_t len, bool write)
{
	const struct gvm_device_desc *d = &bo->dev->desc;
	size_t k;

	for (k = 0; k < bo->mem.nr_ext && len; k++) {
		const struct gvm_pt_extent *e = &bo->mem.ext[k];
		uint64_t n;
		uint8_t *p;

		if (off >= e->len) {
			off -= e->len;
			continue;
		}
		n = e->len - off < len ? e->len - off : len;
		if (bo->mem.region == GVM_MEM_VRAM)
			p = (uint8_t *)d->vram_cpu + (e->addr - d->vram_base);
		else
			p = (uint8_t *)(uintptr_t)e->addr;
		p += off;
		if (write)
			memcpy(p, buf, n);
		else
			memcpy(buf, p, n);
		buf += n;
		len -= n;
		off = 0;
	}
}

/* The CPU pieces, with no lock held, through @mm: 0, -EFAULT, -ENOMEM. */
static int cpu_copy(struct gvm_mm *mm, const struct cpu_piece *pc, size_t nr,
		    uint8_t *buf, bool write)
{
	size_t i;
	int err;

	for (i = 0; i < nr; i++) {
		err = gvm__mm_access(mm, pc[i].cpu, buf + pc[i].off,
				     pc[i].len, write);
		if (err)
			return err;
	}
	return 0;
}

/* Counts the CPU pieces of [addr, end); -EFAULT on a hole. */
static int check_range(struct gvm_vm *vm, uint64_t addr, uint64_t end,
		       size_t *nr_cpu)
{
	struct gvm_va_iter it;
	struct gvm_va *va;
	uint64_t cur = addr;

	*nr_cpu = 0;
	gvm_va_for_each_in_range(va, &vm->va, addr, end - addr, &it) {
		uint32_t kind = gvm__va_kind(va);

		if (va->addr > cur)
			return -EFAULT;
		cur = va->addr + va->range;
		if (kind == GVM_VA_KIND_USERPTR || kind == GVM_VA_KIND_MIRROR)
			(*nr_cpu)++;
		if (cur >= end)
			return 0;
	}
	return -EFAULT;
}

static int vm_access(struct gvm_vm *vm, uint64_t addr, uint8_t *buf,
		     uint64_t size, bool write)
{
	struct cpu_piece *pc = NULL;
	struct gvm_lockset ls;
	struct gvm_va_iter it;
	struct gvm_va *va;
	size_t nr_cpu = 0, nr = 0;
	uint64_t end;
	unsigned int bits;
	int err;

	gvm_might_block();
	if (!vm || !buf || !size)
		return -EINVAL;
	bits = vm->dev->desc.va_bits;
	/* Canonical high addresses, as gvm_vm_bind() takes them. */
	if ((addr & (~0ull << (bits - 1))) == ~0ull << (bits - 1))
		addr &= ~(~0ull << bits);
	end = addr + size;
	if (end < addr || end > 1ull << bits)
		return -EINVAL;

	gvm__mutex_lock(&vm->lock);
	gvm_lockset_init(&ls, GVM_LOCKSET_IGNORE_DUPLICATES);
	if (vm->closed) {
		err = -EINVAL;
		goto err_unlock;
	}
	err = gvm__vm_lock_all(&ls, vm, 0);
	if (!err)
		err = check_range(vm, addr, end, &nr_cpu);
	if (!err && nr_cpu) {
		pc = gvm__calloc(nr_cpu, sizeof(*pc));
		if (!pc)
			err = -ENOMEM;
	}
	if (err)
		goto err_unlock;

	/* ---- nothing fails under the locks from here ---- */
	gvm_va_for_each_in_range(va, &vm->va, addr, end - addr, &it) {
		uint64_t lo = va->addr > addr ? va->addr : addr;
		uint64_t hi = va->addr + va->range < end ? va->addr + va->range
							 : end;
		uint8_t *p = buf + (lo - addr);

		switch (gvm__va_kind(va)) {
		case GVM_VA_KIND_BO:
			bo_copy(va->obj, va->obj_offset + (lo - va->addr), p,
				hi - lo, write);
			break;
		case GVM_VA_KIND_NULL:
			if (!write)
				memset(p, 0, hi - lo);
			break;
		case GVM_VA_KIND_USERPTR:
			pc[nr++] = (struct cpu_piece){
				va->obj_offset + (lo - va->addr), lo - addr,
				hi - lo };
			break;
		case GVM_VA_KIND_MIRROR:
			pc[nr++] = (struct cpu_piece){ lo, lo - addr, hi - lo };
			break;
		}
	}
	gvm_lockset_fini(&ls);
	gvm__mutex_unlock(&vm->lock);

	err = cpu_copy(vm->mm, pc, nr, buf, write);
	gvm__free(pc);
	return err;

err_unlock:
	gvm_lockset_fini(&ls);
	gvm__mutex_unlock(&vm->lock);
	return err;
}

int gvm_vm_peek(struct gvm_vm *vm, uint64_t addr, void *buf, uint64_t size)
{
	return vm_access(vm, addr, buf, size, false);
}

int gvm_vm_poke(struct gvm_vm *vm, uint64_t addr, const void *buf,
		uint64_t size)
{
	/* Only read from when writing. */
	return vm_access(vm, addr, (uint8_t *)(uintptr_t)buf, size, true);
}
