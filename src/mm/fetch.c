// SPDX-License-Identifier: MIT
/*
 * Page fetching from the calling process's memory, without pinning.
 *
 * gvm__mm_fetch_self() makes every page of a range present, as a CPU access
 * would, then reports one device address per 4 KiB page.  The fault-in is
 * one madvise(MADV_POPULATE_READ or MADV_POPULATE_WRITE) (Linux 5.14): the
 * kernel faults the pages exactly as a read or write would, honouring the
 * protection (it refuses writes to read-only memory and any access to
 * PROT_NONE memory), breaking copy-on-write for writes, and never delivers
 * a signal: SIGBUS or SIGSEGV conditions come back as errors.  Only on
 * failure do we look at the mappings (maps.c), to say why:
 *
 *	a hole in the range                 -EFAULT
 *	PROT_NONE anywhere                  -EFAULT
 *	write asked, some part not writable -EPERM
 *	otherwise madvise's own answer      EFAULT/EINVAL -> -EFAULT (e.g. SIGBUS
 *	                                    past the end of a file, VM_PFNMAP),
 *	                                    ENOMEM, EHWPOISON as is
 *
 * Nothing is pinned, so the pages may be reclaimed, migrated or unmapped as
 * soon as this returns; the caller learns about it through its notifier
 * (mm.h describes the protocol).  For this simulated system the device
 * address of a system-memory page is its CPU virtual address: the simulated
 * device reaches system memory through the process's own page tables.  A
 * backend with real DMA would translate here.
 *
 * Context: may sleep for a long time (page faults, swap-in, reclaim) and the
 * kernel takes the mmap lock, so call it without holding a reservation or
 * notifier_lock: an invalidation (which takes notifier_lock and waits for
 * fences) may need to run before the faults can complete.
 *
 * What it does not do: it does not register the range for notifications
 * (gvm__mm_register) nor check the notifier sequence.  Pages SVM moved to
 * device memory come back like on any CPU access: the populate faults on
 * them and waits for the mm's event thread (mm/devmem.c).
 */
#include <errno.h>
#include <sys/mman.h>

#include "core/debug.h"
#include "core/lockrank.h"
#include "mm/mm.h"
#include "mm/uffd_compat.h"

/* madvise failed with @err: find out why, from the mappings. */
static int classify(struct gvm_mm_maps *maps, uint64_t start, uint64_t end,
		    bool write, int err)
{
	uint64_t addr = start;

	while (addr < end) {
		struct gvm_mm_vma v;
		int rc = gvm__mm_maps_lookup(maps, addr, 0, &v);

		if (rc == -ENOENT)
			return -EFAULT;		/* a hole */
		if (rc)
			return rc;
		if (!(v.prot & (PROT_READ | PROT_WRITE | PROT_EXEC)))
			return -EFAULT;		/* PROT_NONE */
		if (write && !(v.prot & PROT_WRITE))
			return -EPERM;
		if (v.end <= addr)
			return -EIO;		/* cannot happen */
		addr = v.end;
	}
	switch (err) {
	case ENOMEM:
	case EHWPOISON:
		return -err;
	default:
		/* EFAULT (SIGBUS/SIGSEGV), EINVAL (VM_IO, VM_PFNMAP, ...) */
		return -EFAULT;
	}
}

int gvm__mm_fetch_self(struct gvm_mm_maps *maps, uint64_t start, uint64_t len,
		       bool write, uint64_t *addrs)
{
	const int advice = write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;
	uint64_t n;

	gvm_assert(gvm__lockrank_max_held() < GVM_RANK_RESV);
	if (!gvm__mm_range_ok(start, len) || !addrs)
		return -EINVAL;

	while (madvise((void *)(uintptr_t)start, len, advice)) {
		int err = errno;

		/* EINTR: a signal arrived while faulting; the range stands. */
		if (err == EINTR)
			continue;
		return classify(maps, start, start + len, write, err);
	}

	n = len >> GVM_MM_PAGE_SHIFT;
	for (uint64_t i = 0; i < n; i++)
		addrs[i] = start + (i << GVM_MM_PAGE_SHIFT);
	return 0;
}

int gvm__mm_populate_write(uint64_t addr)
{
	uint64_t page = addr & ~(uint64_t)(GVM_MM_PAGE_SIZE - 1);
	int err;

	gvm_lockdep_assert_none_held();
	err = gvm__inject(GVM_INJECT_FETCH);
	if (err)
		return err;
	return madvise((void *)(uintptr_t)page, GVM_MM_PAGE_SIZE,
		       MADV_POPULATE_WRITE) ? -EFAULT : 0;
}
