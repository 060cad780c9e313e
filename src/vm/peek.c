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
 * The caller's buffer is application memory: SVM may have moved its pages
 * to device memory, and touching one blocks until the mm's event thread
 * brings it back, which takes locks of rank GVM_RANK_MM and above
 * (docs/locking.md, "Touching application memory").  So the buffer is
 * never touched under the reservations: the data goes through a bounce
 * buffer of the library's heap (never migrated), in chunks of at most
 * GVM_VM_PEEK_CHUNK bytes and GVM_VM_PEEK_CPU_PIECES userptr or mirror
 * pieces.  Per chunk [a, a + n):
 *
 *   poke: caller -> bounce                       no lock
 *   vm->lock, every reservation of the VM (gvm__vm_lock_all, as exec)
 *     check the range mapped (the first chunk: the whole range)
 *     BO and NULL pieces: bounce <-> backing; note the CPU pieces
 *   unlock
 *   CPU pieces: bounce <-> CPU memory through the VM's mm    no lock
 *   peek: bounce -> caller                       no lock
 *
 * The CPU pieces go through gvm__mm_access(): process_vm_readv/writev on
 * this process for gvm_mm_self, where an unreadable or unwritable page is
 * -EFAULT instead of a crash and a page SVM moved to device memory faults
 * back through the mm's event thread, with no lock held; the model's own
 * read and write on a model mm (its addresses are not the process's).
 *
 * What holds when a call fails.  Argument errors and a failed bounce
 * allocation (-ENOMEM) come before anything: nothing copied or written.
 * A range not wholly mapped when the call starts is -EFAULT with nothing
 * copied or written.  An access of more than one chunk is not atomic
 * with respect to binds: each chunk takes the locks anew, so a bind or an
 * unbind between two chunks is seen by the later ones; a later chunk that
 * finds a hole fails with -EFAULT, and so may one whose locking fails
 * (-ENOMEM growing the lockset of a VM with many BOs).  Then, like a
 * failed write(2): a poke has written the chunks before the failing one
 * (and, for a failing CPU piece, the pieces of its chunk before it); a
 * peek has filled the caller's buffer for the chunks before the failing
 * one and left the rest of it untouched.
 *
 * Not done: ordering with GPU work (a kernel writing the same bytes
 * meanwhile races with the copy: wait for its fences first), atomicity of
 * any size, PROT/READONLY checks (a debugger writes read-only mappings),
 * and the page tables themselves (the oracle in the tests reads those).
 *
 * Locking: per chunk vm->lock, then the reservations (gvm__vm_lock_all);
 * the caller's buffer and the CPU pieces are touched with no lock held
 * (gvm__might_fault()).  May block.
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
	uint64_t off;		/* offset in the chunk */
	uint64_t len;
};

/* One call's bounce buffer: a chunk's data and its CPU pieces. */
struct bounce {
	struct cpu_piece pc[GVM_VM_PEEK_CPU_PIECES];
	size_t nr;		/* CPU pieces of the chunk */
	uint8_t data[];		/* min(size, GVM_VM_PEEK_CHUNK) bytes */
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

/* -EFAULT unless [addr, end) is mapped without a hole.  vm->lock held. */
static int check_range(struct gvm_vm *vm, uint64_t addr, uint64_t end)
{
	struct gvm_va_iter it;
	struct gvm_va *va;
	uint64_t cur = addr;

	gvm_va_for_each_in_range(va, &vm->va, addr, end - addr, &it) {
		if (va->addr > cur)
			return -EFAULT;
		cur = va->addr + va->range;
		if (cur >= end)
			return 0;
	}
	return -EFAULT;
}

/*
 * The chunk at [addr, end) (at most GVM_VM_PEEK_CHUNK bytes), under the
 * locks: BO and NULL pieces copied between @b and their backing, CPU
 * pieces noted in @b, until the chunk's end or a CPU piece beyond
 * GVM_VM_PEEK_CPU_PIECES.  Returns the bytes the chunk covers (> 0).
 * Cannot fail: [addr, end) is mapped.
 */
static uint64_t chunk_locked(struct gvm_vm *vm, uint64_t addr, uint64_t end,
			     struct bounce *b, bool write)
{
	struct gvm_va_iter it;
	struct gvm_va *va;

	b->nr = 0;
	gvm_va_for_each_in_range(va, &vm->va, addr, end - addr, &it) {
		uint64_t lo = va->addr > addr ? va->addr : addr;
		uint64_t hi = va->addr + va->range < end ? va->addr + va->range
							 : end;
		uint8_t *p = b->data + (lo - addr);
		uint32_t kind = gvm__va_kind(va);

		if ((kind == GVM_VA_KIND_USERPTR ||
		     kind == GVM_VA_KIND_MIRROR) &&
		    b->nr == GVM_VM_PEEK_CPU_PIECES)
			return lo - addr;	/* the rest in the next chunk */
		switch (kind) {
		case GVM_VA_KIND_BO:
			bo_copy(va->obj, va->obj_offset + (lo - va->addr), p,
				hi - lo, write);
			break;
		case GVM_VA_KIND_NULL:
			if (!write)
				memset(p, 0, hi - lo);
			break;
		case GVM_VA_KIND_USERPTR:
			b->pc[b->nr++] = (struct cpu_piece){
				va->obj_offset + (lo - va->addr), lo - addr,
				hi - lo };
			break;
		case GVM_VA_KIND_MIRROR:
			b->pc[b->nr++] = (struct cpu_piece){ lo, lo - addr,
							     hi - lo };
			break;
		}
	}
	return end - addr;
}

/* The CPU pieces of the chunk in @b, with no lock held, through @mm. */
static int cpu_copy(struct gvm_mm *mm, struct bounce *b, bool write)
{
	size_t i;
	int err;

	gvm__might_fault();
	for (i = 0; i < b->nr; i++) {
		err = gvm__mm_access(mm, b->pc[i].cpu, b->data + b->pc[i].off,
				     b->pc[i].len, write);
		if (err)
			return err;
	}
	return 0;
}

/*
 * One chunk from @addr, at most up to @end: the locks, the check (of
 * [addr, @check_end)), the copies.  *@n: the bytes done.
 */
static int do_chunk(struct gvm_vm *vm, uint64_t addr, uint64_t end,
		    uint64_t check_end, struct bounce *b, bool write,
		    uint64_t *n)
{
	struct gvm_lockset ls;
	int err;

	gvm__mutex_lock(&vm->lock);
	gvm_lockset_init(&ls, GVM_LOCKSET_IGNORE_DUPLICATES);
	err = vm->closed ? -EINVAL : gvm__vm_lock_all(&ls, vm, 0);
	if (!err)
		err = check_range(vm, addr, check_end);
	if (!err)
		*n = chunk_locked(vm, addr, end, b, write);
	gvm_lockset_fini(&ls);
	gvm__mutex_unlock(&vm->lock);
	if (err)
		return err;
	return cpu_copy(vm->mm, b, write);
}

static int vm_access(struct gvm_vm *vm, uint64_t addr, uint8_t *buf,
		     uint64_t size, bool write)
{
	struct bounce *b;
	uint64_t end, done = 0, cap;
	unsigned int bits;
	int err = 0;

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

	cap = size < GVM_VM_PEEK_CHUNK ? size : GVM_VM_PEEK_CHUNK;
	b = gvm__malloc(sizeof(*b) + cap);
	if (!b)
		return -ENOMEM;
	while (done < size) {
		uint64_t want = size - done < cap ? size - done : cap, n = 0;

		if (write) {
			gvm__might_fault();
			err = gvm__user_copy(buf + done, b->data, want, false);
			if (err)
				break;
		}
		/* The first chunk checks the whole range: -EFAULT, nothing
		   copied, for a range with a hole when the call starts. */
		err = do_chunk(vm, addr + done, addr + done + want,
			       done ? addr + done + want : end, b, write, &n);
		if (err)
			break;
		if (!write) {
			gvm__might_fault();
			err = gvm__user_copy(buf + done, b->data, n, true);
			if (err)
				break;
		}
		done += n;
	}
	gvm__free(b);
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
