// SPDX-License-Identifier: MIT
/*
 * Access counters (issue 13; docs/policy.md, "Access counters"; docs/sim.md,
 * "Link and access counters"): a device that maps a linked peer's memory
 * in place counts the bytes its engines move over the link per 2 MiB
 * region; at the device's threshold it notifies gvm
 * (gvm_vm_access_notify), and the default policy moves the range into the
 * device's own memory.  One pass over peer memory stays peer to peer;
 * repeated passes end up local.  The simulated link charges each access
 * its bandwidth.
 *
 * Deterministic: the counts are bytes, the notification is sent by the
 * engine before the kernel's fence signals, and the test then waits for
 * the fault thread to have acted on it (gvm__fault_queue_notes_wait).
 * Queue-full and VM-teardown cases hold the fault thread
 * (gvm__fault_queue_hold).  Nothing depends on time: the link charge is
 * checked as a lower bound of a kernel's duration.
 */
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "svmtest.h"
#include "core/sync.h"
#include "vm/fault_queue.h"

#define M2 SVMT_M2
#define W(v) ((uint64_t)(v) * 0x100000001ull)

/* Linked devices with access counters on (the simulator's defaults). */
static void setup(struct svmt_pair *x, const struct gvm_link_props *props)
{
	svmt_pair_setup_cfg(x, true, props, NULL);
}

static struct gvm_sim_stats sim(struct gvm_device *dev)
{
	struct gvm_sim_stats st;

	ASSERT_OK(gvm_sim_stats(dev, &st));
	return st;
}

/* B sums the 2 MiB at @p (in A's memory at first) and lets the fault
   thread act on what the pass notified. */
static void b_pass(struct svmt_pair *x, const void *p, uint32_t pattern)
{
	ASSERT_EQ(svmt_sum(&x->vb, p, M2), M2 / 8 * W(pattern));
	gvm__fault_queue_notes_wait(x->b);
}

TEST(repeated_peer_reads_move_the_range_near_once_at_the_threshold)
{
	struct svmt_pair x;
	uint64_t link;
	uint8_t *p;

	setup(&x, NULL);
	p = svmt_map(M2, M2);
	svmt_fill(&x.va, p, M2, 3);			/* into A */
	ASSERT_EQ(svmt_info(x.a).svm_migrations_in, 1);

	/* Pass 1: half the default threshold, peer to peer. */
	b_pass(&x, p, 3);
	ASSERT_EQ(svmt_stats(x.vb.vm).svm_p2p_binds, 1);
	ASSERT_GE(sim(x.b).link_bytes, M2);
	ASSERT_EQ(svmt_info(x.b).access_notified, 0);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 0);

	/* Pass 2 reaches it: one notification, the range moves to B,
	   directly over the link. */
	b_pass(&x, p, 3);
	ASSERT_EQ(sim(x.b).access_notifications, 1);
	ASSERT_EQ(svmt_info(x.b).access_notified, 1);
	ASSERT_EQ(svmt_info(x.b).access_migrations, 1);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 1);
	ASSERT_EQ(svmt_info(x.b).svm_d2d_in, 1);
	ASSERT_EQ(svmt_info(x.a).svm_d2d_out, 1);

	/* Pass 3 is local: nothing more over the link, same data. */
	link = sim(x.b).link_bytes;
	b_pass(&x, p, 3);
	ASSERT_EQ(sim(x.b).link_bytes, link);
	ASSERT_EQ(svmt_info(x.b).access_notified, 1);
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(3));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

TEST(the_link_charges_peer_accesses_its_bandwidth)
{
	/* 2 MiB over a 1 GiB/s link: at least ~2 ms of modelled waiting. */
	struct gvm_link_props slow = { .bandwidth = 1ull << 30 };
	struct gvm_sim_config cfg = {
		.access_threshold = GVM_SIM_ACCESS_OFF,
	};
	struct svmt_pair x;
	int64_t t0;
	uint8_t *p;

	svmt_pair_setup_cfg(&x, true, &slow, &cfg);
	p = svmt_map(M2, M2);
	svmt_fill(&x.va, p, M2, 5);
	ASSERT_EQ(sim(x.b).link_wait_ns, 0);
	t0 = gvm__now_ns();
	b_pass(&x, p, 5);
	/* A lower bound, which load cannot break: the link's time for
	   2 MiB but the last unpaid quantum (SIM_LINK_QUANTUM_NS). */
	ASSERT_GE(gvm__now_ns() - t0, 1953125 - 20000);
	ASSERT_GT(sim(x.b).link_wait_ns, 0);
	ASSERT_EQ(svmt_info(x.b).access_notified, 0);	/* off */
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 0);
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

TEST(the_remote_policy_keeps_peer_memory_where_it_is)
{
	struct svmt_pair x;
	uint8_t *p;
	int i;

	ASSERT_OK(gvm_svm_policy_select("remote"));
	setup(&x, NULL);
	p = svmt_map(M2, M2);
	/* "remote" leaves system memory alone: put it in A explicitly */
	ASSERT_OK(gvm_vm_madvise(x.va.vm, svmt_u64(p), M2,
				 &(struct gvm_madvise){
					 .set = GVM_MADV_PREFERRED_LOC,
					 .attrs = { .preferred_loc =
							    GVM_LOC_DEVICE,
						    .dev = x.a } }));
	svmt_fill(&x.va, p, M2, 6);
	ASSERT_EQ(svmt_info(x.a).svm_migrations_in, 1);
	for (i = 0; i < 3; i++)
		b_pass(&x, p, 6);
	ASSERT_EQ(svmt_info(x.b).access_notified, 1);
	ASSERT_EQ(svmt_info(x.b).access_migrations, 0);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 0);
	svmt_pair_teardown(&x);
	ASSERT_OK(gvm_svm_policy_select("default"));
	svmt_unmap(p, M2);
}

TEST(a_preferred_location_outranks_the_counters)
{
	struct svmt_pair x;
	uint8_t *p;
	int i;

	setup(&x, NULL);
	p = svmt_map(M2, M2);
	/* B's VM says: A's memory */
	ASSERT_OK(gvm_vm_madvise(x.vb.vm, svmt_u64(p), M2,
				 &(struct gvm_madvise){
					 .set = GVM_MADV_PREFERRED_LOC,
					 .attrs = { .preferred_loc =
							    GVM_LOC_DEVICE,
						    .dev = x.a } }));
	svmt_fill(&x.va, p, M2, 7);
	for (i = 0; i < 3; i++)
		b_pass(&x, p, 7);
	ASSERT_EQ(svmt_info(x.b).access_notified, 1);
	ASSERT_EQ(svmt_info(x.b).access_migrations, 0);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 0);
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

TEST(access_notify_checks_its_input_and_drops_when_full)
{
	struct gvm_access_info a = { .addr = 0x40000000, .size = M2,
				     .bytes = 1 };
	struct svmt_pair x;
	struct gvm_device *dev;
	struct gvm_vm *plain;
	unsigned int i;

	setup(&x, NULL);
	ASSERT_EQ(gvm_vm_access_notify(NULL, &a), -EINVAL);
	ASSERT_EQ(gvm_vm_access_notify(x.vb.vm, NULL), -EINVAL);
	a.size = 3 * M2;
	ASSERT_EQ(gvm_vm_access_notify(x.vb.vm, &a), -EINVAL);
	a.size = M2;
	a.addr += 4096;
	ASSERT_EQ(gvm_vm_access_notify(x.vb.vm, &a), -EINVAL);
	a.addr -= 4096;
	/* a VM not in fault mode has nothing to act on it */
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &plain));
	ASSERT_EQ(gvm_vm_access_notify(plain, &a), -EOPNOTSUPP);
	ASSERT_OK(gvm_vm_destroy(plain));
	gvm_device_put(dev);

	/* full: dropped and counted, nothing queued changes */
	gvm__fault_queue_hold(x.b, true);
	for (i = 0; i < GVM_ACCESS_NOTES; i++)
		ASSERT_OK(gvm_vm_access_notify(x.vb.vm, &a));
	ASSERT_EQ(gvm_vm_access_notify(x.vb.vm, &a), -EAGAIN);
	ASSERT_EQ(svmt_info(x.b).access_dropped, 1);
	ASSERT_EQ(svmt_info(x.b).access_notified, GVM_ACCESS_NOTES + 1);
	gvm__fault_queue_hold(x.b, false);
	gvm__fault_queue_notes_wait(x.b);	/* no range there: nothing */
	ASSERT_EQ(svmt_info(x.b).access_migrations, 0);
	svmt_pair_teardown(&x);
}

/*
 * A notification for a huge region (the whole 64-bit space above 0) is
 * acted on range by range: it used to be walked 4 KiB at a time, ~2^51
 * steps, with vm->lock held.
 */
TEST(a_notification_for_a_huge_region_walks_ranges_not_pages)
{
	struct gvm_access_info a = { .addr = 0, .size = 1ull << 63,
				     .bytes = 1 };
	struct svmt_pair x;
	uint64_t *p = svmt_map(M2, M2);

	setup(&x, NULL);
	svmt_fill(&x.va, p, M2, 7);		/* a range in A's memory */
	ASSERT_OK(gvm_vm_access_notify(x.vb.vm, &a));
	gvm__fault_queue_notes_wait(x.b);	/* hung here */
	ASSERT_EQ(svmt_info(x.b).access_notified, 1);
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

TEST(a_vm_destroyed_with_notifications_queued_drops_them)
{
	struct gvm_access_info a = { .addr = 0x40000000, .size = M2,
				     .bytes = 1 };
	struct svmt_pair x;

	setup(&x, NULL);
	gvm__fault_queue_hold(x.b, true);
	ASSERT_OK(gvm_vm_access_notify(x.vb.vm, &a));
	ASSERT_OK(gvm_vm_access_notify(x.vb.vm, &a));
	svmt_vm_fini(&x.vb);		/* forgets them (ASan: no use after) */
	gvm__fault_queue_hold(x.b, false);
	gvm__fault_queue_notes_wait(x.b);
	svmt_vm_fini(&x.va);
	gvm_device_put(x.a);
	gvm_device_put(x.b);
	gvm_mm_put(x.mm);
}
