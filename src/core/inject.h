/* SPDX-License-Identifier: MIT */
/*
 * Fault injection: fail the N-th call of one kind from now.
 *
 * Every place where gvm calls something that can fail for reasons outside
 * its control - the heap, a device op, a system call of the mm backend -
 * is an injection *site*.  A test arms a site with N (>= 1) and the N-th
 * call of that site from then on fails, once, with the error the real
 * call returns in that situation; then the site is off again.  Sites are
 * placed at the layer boundary (where the VM layer calls a device op,
 * where the mm layer makes the system call), never inside a backend, so a
 * real backend failing the same way takes the same path:
 *
 *	site                 where                                  fails with
 *	ALLOC                gvm__malloc & co (core/alloc.h)         NULL
 *	DEV_COPY             gvm__dev_copy -> ops->copy (vm/device.c) -EIO (the
 *	                     copy engine's fence signalled an error)
 *	TLB_INVAL            gvm__vm_tlb_submit -> ops->tlb_inval     -ENOMEM (the
 *	                     (vm/vm.c)                                backend's fence)
 *	FETCH                gvm__mm_fetch, gvm__mm_populate_write   -ENOMEM
 *	                     (mm/mm.h, mm/fetch.c: MADV_POPULATE_*)
 *	UFFD_REGISTER        UFFDIO_REGISTER (mm/self.c)             -ENOMEM
 *	UFFD_COPY            UFFDIO_COPY, UFFDIO_ZEROPAGE            -ENOMEM
 *	UFFD_MOVE            UFFDIO_MOVE                             -ENOMEM
 *	UFFD_WAKE            UFFDIO_WAKE                             -EFAULT
 *	PROCMAP_QUERY        ioctl(PROCMAP_QUERY) (mm/maps.c)        -ENOMEM
 *	VIEW_MAP             mmap/mremap of a piece of a BO's CPU     -ENOMEM
 *	                     view onto its new backing (vm/bo.c)
 *	INVAL                gvm__mm_inject_inval (mm/mm.h): data     (an invalidation)
 *	                     fetched or copied, its new place not
 *	                     yet published: a userptr's or SVM
 *	                     range's fetch before its commit
 *	                     (vm/userptr.c); a migration to device
 *	                     memory after its copy, before its
 *	                     extent is recorded; a device-to-device
 *	                     move after its copy, before the extent
 *	                     points at the new memory; a migration
 *	                     back after the copy into the stage,
 *	                     before the give, or after the CPU's
 *	                     copy, before the extent goes
 *	                     (mm/devmem.c).  The range is
 *	                     invalidated right there, as a fork()
 *	                     would (GVM_MM_EVENT_FORK), or by the
 *	                     backend's inject_inval (the model mm:
 *	                     a reclaim, the pages moved)
 *
 * gvm__inject_arm(site, n, err) chooses another errno (0: the default
 * above).  Sweeping a scenario:
 *
 *	gvm__inject_count(true);          // count every site's calls
 *	run(); calls = gvm__inject_calls(GVM_INJECT_FETCH);
 *	for (n = 1; n <= calls; n++) {
 *		gvm__inject_arm(GVM_INJECT_FETCH, n, 0);
 *		run();                    // must cope with the failure
 *		fired = !gvm__inject_disarm(GVM_INJECT_FETCH);
 *	}
 *
 * Cost when nothing is armed and nothing counted: one relaxed load of
 * gvm__inject_on per call (the same as alloc's old counter).  Everything
 * is atomic, so threads may hit a site concurrently; which one of two
 * concurrent calls is "the N-th" is then up to the scheduler.
 *
 * Tests only: the library never arms a site itself.
 */
#ifndef GVM_CORE_INJECT_H
#define GVM_CORE_INJECT_H

#include <stdbool.h>

#include "core/atomic.h"

enum gvm_inject_site {
	GVM_INJECT_ALLOC,
	GVM_INJECT_DEV_COPY,
	GVM_INJECT_TLB_INVAL,
	GVM_INJECT_FETCH,
	GVM_INJECT_UFFD_REGISTER,
	GVM_INJECT_UFFD_COPY,
	GVM_INJECT_UFFD_MOVE,
	GVM_INJECT_UFFD_WAKE,
	GVM_INJECT_PROCMAP_QUERY,
	GVM_INJECT_INVAL,
	GVM_INJECT_VIEW_MAP,
	GVM_INJECT_NR_SITES
};

/* Non-zero while a site is armed or calls are counted (the fast check). */
extern int gvm__inject_on;

int gvm__inject_slow(enum gvm_inject_site site);

/*
 * Called at the site: 0 (go on) or the negative errno the call must fail
 * with now.
 */
static inline int gvm__inject(enum gvm_inject_site site)
{
	if (__builtin_expect(gvm_load_relaxed(&gvm__inject_on) == 0, 1))
		return 0;
	return gvm__inject_slow(site);
}

/*
 * The @n-th call of @site from now fails, once, with @err (negative;
 * 0: the site's default); @n == 0 disarms.
 */
void gvm__inject_arm(enum gvm_inject_site site, long n, int err);

/* Disarms @site; returns the calls that were still to come before it
   fired (0: it fired). */
long gvm__inject_disarm(enum gvm_inject_site site);

/* Calls still to come before @site fires (0: fired or not armed). */
long gvm__inject_pending(enum gvm_inject_site site);

/* Starts (zeroing every site's count) or stops counting calls. */
void gvm__inject_count(bool on);

/* Calls of @site since gvm__inject_count(true). */
unsigned long gvm__inject_calls(enum gvm_inject_site site);

/* Failures @site injected since the program started. */
unsigned long gvm__inject_fired(enum gvm_inject_site site);

/* "ALLOC", "DEV_COPY", ... */
const char *gvm__inject_name(enum gvm_inject_site site);

#endif
