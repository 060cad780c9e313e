// SPDX-License-Identifier: MIT
/*
 * Page fetching from the calling process's memory, without pinning.
 *
 * gvm__mm_fetch_self() makes every page of a range present, as a CPU access
 * would, then reports the device addresses of its pages as extents (for
 * this simulated system one extent: the device address of a system-memory
 * page is its CPU virtual address, the simulated device reaches system
 * memory through the process's own page tables; a backend with real DMA
 * would translate here).
 *
 * FAULTING IN.  The fault-in is madvise(MADV_POPULATE_READ or
 * MADV_POPULATE_WRITE) (Linux 5.14): the kernel faults the pages exactly
 * as a read or write would, honouring the protection (it refuses writes
 * to read-only memory and any access to PROT_NONE memory), breaking
 * copy-on-write for writes, and never delivers a signal: SIGBUS or
 * SIGSEGV conditions come back as errors.  It walks every page, present
 * or not (~80 ns a page here), so for a range of GVM_MM_SCAN_MIN_BYTES or
 * more we first ask which pages need no fault at all, with one
 * PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7; ~8 ns a page), and
 * populate only the runs in between:
 *
 *	1. the mappings (maps.c) must cover the range with the access
 *	   allowed: else -EFAULT / -EPERM as below, nothing faulted (the
 *	   scan does not see protections: a present page of a PROT_NONE or
 *	   read-only mapping must still fail);
 *	2. scan for pages that are PRESENT, and for a write also WRITTEN
 *	   (not write-protected by a userfaultfd: the write fault must
 *	   reach its handler, a BO view being moved, mm/self.c) and not
 *	   PFNZERO (the shared zero page: a write must replace it);
 *	3. populate every run between the matching regions.
 * A present page a write would still fault on that the scan cannot
 * recognise is one shared copy-on-write (after fork(), or merged by
 * KSM).  Forks are counted (pthread_atfork, from the first
 * gvm_mm_self()): once the process has forked, write fetches populate
 * the whole range as before.  Not seen: a fork before gvm started, a
 * child made by a raw clone(), KSM merging.  For this backend that is
 * benign: the device stores through the CPU address, so its first store
 * to such a page takes the CPU's write fault and breaks the sharing there,
 * as a CPU store would (a DMA backend would have to populate always for
 * writes, or check each page's exclusivity).
 *
 * The scan is skipped for good when it answers EINVAL or ENOTTY (a kernel
 * before 6.7), and for one call on any other error: populating the whole
 * range is always correct.  gvm__mm_fetch_mode (GVM_MM_FETCH=populate)
 * forces either method, for tests and comparisons.
 *
 * ERRORS.  Only when a populate fails do we look at the mappings, to say
 * why (the scan path looked first, step 1):
 *
 *	a hole in the range                 -EFAULT
 *	PROT_NONE anywhere                  -EFAULT
 *	write asked, some part not writable -EPERM
 *	otherwise madvise's own answer      EFAULT/EINVAL -> -EFAULT (e.g. SIGBUS
 *	                                    past the end of a file, VM_PFNMAP),
 *	                                    ENOMEM, EHWPOISON as is
 *
 * Nothing is pinned, so the pages may be reclaimed, migrated or unmapped as
 * soon as this returns, and that includes between the scan and the
 * return: the caller learns about it through its notifier (mm.h describes
 * the protocol: the caller's read_begin comes before this call and its
 * retry check after it, so whatever the scan saw is covered exactly as a
 * populate's result is).
 *
 * Context: may sleep for a long time (page faults, swap-in, reclaim) and the
 * kernel takes the mmap lock, so call it without holding a reservation or
 * notifier_lock: an invalidation (which takes notifier_lock and waits for
 * fences) may need to run before the faults can complete.  The pagemap
 * descriptor is shared; PAGEMAP_SCAN keeps no state in it, so no lock.
 *
 * What it does not do: it does not register the range for notifications
 * (gvm__mm_register) nor check the notifier sequence.  Pages SVM moved to
 * device memory come back like on any CPU access: they are not present, so
 * the populate faults on them and waits for the mm's event thread
 * (mm/devmem.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/debug.h"
#include "core/lockrank.h"
#include "mm/mm.h"
#include "mm/uffd_compat.h"

enum gvm_mm_fetch_mode gvm__mm_fetch_mode;
uint64_t gvm__mm_fetch_scans, gvm__mm_fetch_populates;

/* fork()s of this process since the first gvm__mm_fetch_init() (relaxed
   atomic; the prepare handler runs in the parent, before the copy, so a
   child inherits the count too). */
static uint64_t forks;
static pthread_once_t forks_once = PTHREAD_ONCE_INIT;

static void count_fork(void)
{
	gvm_fetch_add_relaxed(&forks, 1u);
}

static void forks_watch(void)
{
	pthread_atfork(count_fork, NULL, NULL);
}

void gvm__mm_fetch_init(struct gvm_mm_maps *maps)
{
	const char *env = getenv("GVM_MM_FETCH");

	pthread_once(&forks_once, forks_watch);
	maps->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	maps->have_scan = maps->pagemap_fd >= 0;
	if (env && !strcmp(env, "populate"))
		gvm__mm_fetch_mode = GVM_MM_FETCH_POPULATE;
	else if (env && !strcmp(env, "scan"))
		gvm__mm_fetch_mode = GVM_MM_FETCH_SCAN;
}

/*
 * Do the mappings cover [start, end) with the access allowed?  0, -EFAULT
 * (a hole, PROT_NONE), -EPERM (write asked of a read-only part), or the
 * lookup's error.
 */
static int vmas_allow(struct gvm_mm_maps *maps, uint64_t start, uint64_t end,
		      bool write)
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
	return 0;
}

/* madvise failed with @err: find out why, from the mappings. */
static int classify(struct gvm_mm_maps *maps, uint64_t start, uint64_t end,
		    bool write, int err)
{
	int rc = vmas_allow(maps, start, end, write);

	if (rc)
		return rc;
	switch (err) {
	case ENOMEM:
	case EHWPOISON:
		return -err;
	default:
		/* EFAULT (SIGBUS/SIGSEGV), EINVAL (VM_IO, VM_PFNMAP, ...) */
		return -EFAULT;
	}
}

/* Faults [a, b) in: 0, or madvise's errno (positive). */
static int populate(uint64_t a, uint64_t b, bool write)
{
	const int advice = write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;

	gvm_fetch_add_relaxed(&gvm__mm_fetch_populates, 1u);
	while (madvise((void *)(uintptr_t)a, b - a, advice)) {
		/* EINTR: a signal arrived while faulting; the range stands. */
		if (errno != EINTR)
			return errno;
	}
	return 0;
}

bool gvm__mm_maps_huge(struct gvm_mm_maps *maps, uint64_t start,
		       uint64_t len)
{
	struct page_region v;
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.start = start,
		.end = start + len,
		.vec = (uint64_t)(uintptr_t)&v,
		.vec_len = 1,
		.category_mask = PAGE_IS_HUGE,
		.return_mask = PAGE_IS_HUGE,
	};

	if (!gvm_load_relaxed(&maps->have_scan))
		return false;
	return ioctl(maps->pagemap_fd, PAGEMAP_SCAN, &a) == 1 &&
	       v.start == start && v.end == start + len;
}

#define SCAN_REGIONS 64

/*
 * Steps 2 and 3 (top of file) over [start, end).  0, a populate's errno
 * (positive), or -EOPNOTSUPP: the scan failed, nothing is known about
 * what it did not cover (the caller populates the whole range).
 */
static int scan_and_populate(struct gvm_mm_maps *maps, uint64_t start,
			     uint64_t end, bool write)
{
	struct page_region v[SCAN_REGIONS];
	uint64_t cur = start;

	while (cur < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.start = cur,
			.end = end,
			.vec = (uint64_t)(uintptr_t)v,
			.vec_len = SCAN_REGIONS,
			.category_mask = PAGE_IS_PRESENT |
					 (write ? PAGE_IS_WRITTEN |
						  PAGE_IS_PFNZERO : 0),
			.category_inverted = write ? PAGE_IS_PFNZERO : 0,
			.return_mask = PAGE_IS_PRESENT,
		};
		long n = ioctl(maps->pagemap_fd, PAGEMAP_SCAN, &a);
		int err;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EINVAL || errno == ENOTTY)
				gvm_store_relaxed(&maps->have_scan, false);
			return -EOPNOTSUPP;
		}
		gvm_fetch_add_relaxed(&gvm__mm_fetch_scans, 1u);
		/* Matching regions in order, inside [cur, walk_end). */
		if (a.walk_end <= cur || a.walk_end > end)
			return -EOPNOTSUPP;		/* no progress */
		for (long i = 0; i < n; i++) {
			if (v[i].start < cur || v[i].end > a.walk_end ||
			    v[i].start >= v[i].end)
				return -EOPNOTSUPP;
			if (v[i].start > cur) {
				err = populate(cur, v[i].start, write);
				if (err)
					return err;
			}
			cur = v[i].end;
		}
		if (cur < a.walk_end) {
			err = populate(cur, a.walk_end, write);
			if (err)
				return err;
		}
		cur = a.walk_end;
	}
	return 0;
}

/* Scan first?  (FAULTING IN at the top.) */
static bool use_scan(struct gvm_mm_maps *maps, uint64_t len, bool write)
{
	enum gvm_mm_fetch_mode mode = gvm__mm_fetch_mode;

	if (mode == GVM_MM_FETCH_POPULATE ||
	    !gvm_load_relaxed(&maps->have_scan))
		return false;
	if (write && gvm_load_relaxed(&forks))
		return false;
	return mode == GVM_MM_FETCH_SCAN || len >= GVM_MM_SCAN_MIN_BYTES;
}

int gvm__mm_fetch_self(struct gvm_mm_maps *maps, uint64_t start, uint64_t len,
		       bool write, struct gvm_mm_extent **ext, size_t *nr)
{
	const uint64_t end = start + len;
	struct gvm_mm_extent *e;
	int err = -EOPNOTSUPP;

	gvm_assert(gvm__lockrank_max_held() < GVM_RANK_RESV);
	if (!gvm__mm_range_ok(start, len) || !ext || !nr)
		return -EINVAL;
	e = gvm__malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;

	if (use_scan(maps, len, write)) {
		err = vmas_allow(maps, start, end, write);
		if (err)
			goto err_free;
		err = scan_and_populate(maps, start, end, write);
	}
	if (err == -EOPNOTSUPP)
		err = populate(start, end, write);
	if (err) {
		err = classify(maps, start, end, write, err);
		goto err_free;
	}
	e->addr = start;
	e->len = len;
	*ext = e;
	*nr = 1;
	return 0;

err_free:
	gvm__free(e);
	return err;
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
