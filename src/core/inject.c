// SPDX-License-Identifier: MIT
/*
 * Fault injection (inject.h): the per-site counters.
 *
 * State: for each site, nth (calls to come before the failure, <= 0: off),
 * the errno to fail with, the calls counted and the failures injected;
 * gvm__inject_on is the number of armed sites plus one while counting,
 * recomputed by arm/disarm/count.  All atomic, relaxed except the
 * decrement of nth (acq_rel: exactly one caller sees it reach the end).
 * Arming is for tests, which arm and disarm from one thread; the sites
 * may run on any thread.
 *
 * Context: any; never blocks, never allocates.
 */
#include <errno.h>

#include "core/inject.h"

int gvm__inject_on;

static long nth[GVM_INJECT_NR_SITES];
static int err_of[GVM_INJECT_NR_SITES];
static unsigned long calls[GVM_INJECT_NR_SITES];
static unsigned long fired[GVM_INJECT_NR_SITES];
static bool counting;

static const struct {
	const char *name;
	int err;
} sites[GVM_INJECT_NR_SITES] = {
	[GVM_INJECT_ALLOC] = { "ALLOC", -ENOMEM },
	[GVM_INJECT_DEV_COPY] = { "DEV_COPY", -EIO },
	[GVM_INJECT_TLB_INVAL] = { "TLB_INVAL", -ENOMEM },
	[GVM_INJECT_FETCH] = { "FETCH", -ENOMEM },
	[GVM_INJECT_UFFD_REGISTER] = { "UFFD_REGISTER", -ENOMEM },
	[GVM_INJECT_UFFD_COPY] = { "UFFD_COPY", -ENOMEM },
	[GVM_INJECT_UFFD_MOVE] = { "UFFD_MOVE", -ENOMEM },
	[GVM_INJECT_UFFD_WAKE] = { "UFFD_WAKE", -EFAULT },
	[GVM_INJECT_PROCMAP_QUERY] = { "PROCMAP_QUERY", -ENOMEM },
	[GVM_INJECT_INVAL] = { "INVAL", -EAGAIN },
	[GVM_INJECT_VIEW_MAP] = { "VIEW_MAP", -ENOMEM },
};

static void update_on(void)
{
	int on = gvm_load_relaxed(&counting) ? 1 : 0;

	for (int i = 0; i < GVM_INJECT_NR_SITES; i++)
		on += gvm_load_relaxed(&nth[i]) > 0;
	gvm_store_relaxed(&gvm__inject_on, on);
}

int gvm__inject_slow(enum gvm_inject_site site)
{
	if (gvm_load_relaxed(&counting))
		gvm_fetch_add_relaxed(&calls[site], 1);
	if (gvm_load_relaxed(&nth[site]) <= 0)
		return 0;
	if (gvm_fetch_sub_acq_rel(&nth[site], 1) != 1)
		return 0;
	gvm_fetch_add_relaxed(&fired[site], 1);
	int err = gvm_load_relaxed(&err_of[site]);

	return err ? err : sites[site].err;
}

void gvm__inject_arm(enum gvm_inject_site site, long n, int err)
{
	gvm_store_relaxed(&err_of[site], err);
	gvm_store_relaxed(&nth[site], n > 0 ? n : 0);
	update_on();
}

long gvm__inject_pending(enum gvm_inject_site site)
{
	long n = gvm_load_relaxed(&nth[site]);

	return n > 0 ? n : 0;
}

long gvm__inject_disarm(enum gvm_inject_site site)
{
	long n = __atomic_exchange_n(&nth[site], 0, __ATOMIC_ACQ_REL);

	update_on();
	return n > 0 ? n : 0;
}

void gvm__inject_count(bool on)
{
	if (on)
		for (int i = 0; i < GVM_INJECT_NR_SITES; i++)
			gvm_store_relaxed(&calls[i], 0);
	gvm_store_relaxed(&counting, on);
	update_on();
}

unsigned long gvm__inject_calls(enum gvm_inject_site site)
{
	return gvm_load_relaxed(&calls[site]);
}

unsigned long gvm__inject_fired(enum gvm_inject_site site)
{
	return gvm_load_relaxed(&fired[site]);
}

const char *gvm__inject_name(enum gvm_inject_site site)
{
	return site < GVM_INJECT_NR_SITES ? sites[site].name : "?";
}
