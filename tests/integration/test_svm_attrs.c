// SPDX-License-Identifier: MIT
/*
 * Memory attributes of mirrored memory (gvm_vm_madvise, gvm_vm_query_attrs;
 * issue 13) and placement across devices: the store's split/merge and
 * query, the invalidation rules (the same value invalidates nothing, a
 * changed value drops exactly the ranges it covers), auto-reset on
 * munmap, the preferred location (system, this device, a linked peer, an
 * unlinked device), atomic policies, granularity, peer-to-peer mapping of
 * a linked device's memory, and GPU atomics from two devices at once.
 *
 * Nothing waits for time: kernels end with user fences; two devices count
 * at once by running their jobs concurrently and waiting for both.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "harness.h"
#include "svmtest.h"
#include "mm/mm.h"
#include "vm/dev.h"
#include "vm/svm.h"

#define K4 SVMT_K4
#define K64 SVMT_K64
#define M2 SVMT_M2

/* The 64-bit word a fill with the 32-bit pattern @v leaves. */
#define W(v) ((uint64_t)(v) * 0x100000001ull)

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct svmt_vm v;
};

static void setup(struct ctx *c)
{
	ASSERT_OK(gvm_mm_self(&c->mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &c->dev));
	svmt_vm_init(&c->v, c->dev, c->mm);
}

static void teardown(struct ctx *c)
{
	svmt_vm_fini(&c->v);
	gvm_device_put(c->dev);
	gvm_mm_put(c->mm);
}

static int advise(struct gvm_vm *vm, const void *p, uint64_t len,
		  uint32_t set, struct gvm_mem_attrs a)
{
	struct gvm_madvise adv = { .set = set, .attrs = a };

	return gvm_vm_madvise(vm, svmt_u64(p), len, &adv);
}

static struct gvm_mem_attrs loc(uint32_t where, struct gvm_device *dev)
{
	return (struct gvm_mem_attrs){ .preferred_loc = where, .dev = dev };
}

static struct gvm_mem_attrs atomic_policy(uint32_t policy)
{
	return (struct gvm_mem_attrs){ .atomic = policy };
}

static uint32_t query(struct gvm_vm *vm, const void *p, uint64_t len,
		      struct gvm_attr_range *r, uint32_t cap)
{
	uint32_t n = cap;

	ASSERT_OK(gvm_vm_query_attrs(vm, svmt_u64(p), len, r, &n));
	return n;
}

/* ---- the store ----------------------------------------------------------- */

TEST(madvise_splits_merges_and_queries)
{
	struct gvm_attr_range r[8];
	struct ctx c;
	uint8_t *p;
	uint32_t n;

	setup(&c);
	p = svmt_map(4 * K64, K64);
	ASSERT_EQ(query(c.v.vm, p, 4 * K64, r, 8), 1);	/* all default */
	ASSERT_EQ(r[0].range, 4 * K64);
	ASSERT_EQ(r[0].attrs.preferred_loc, GVM_LOC_DEFAULT);
	ASSERT_OK(advise(c.v.vm, p, 3 * K64, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_SYSTEM, NULL)));
	ASSERT_OK(advise(c.v.vm, p + K64, K64, GVM_MADV_ATOMIC,
			 atomic_policy(GVM_ATOMIC_DEVICE)));
	ASSERT_EQ(query(c.v.vm, p, 4 * K64, r, 8), 4);
	ASSERT_EQ(r[0].addr, svmt_u64(p));
	ASSERT_EQ(r[0].range, K64);
	ASSERT_EQ(r[0].attrs.preferred_loc, GVM_LOC_SYSTEM);
	ASSERT_EQ(r[0].attrs.atomic, GVM_ATOMIC_UNDEFINED);
	ASSERT_EQ(r[1].addr, svmt_u64(p + K64));
	ASSERT_EQ(r[1].attrs.preferred_loc, GVM_LOC_SYSTEM);
	ASSERT_EQ(r[1].attrs.atomic, GVM_ATOMIC_DEVICE);
	ASSERT_EQ(r[2].attrs.atomic, GVM_ATOMIC_UNDEFINED);
	ASSERT_EQ(r[3].addr, svmt_u64(p + 3 * K64));
	ASSERT_EQ(r[3].attrs.preferred_loc, GVM_LOC_DEFAULT);
	/* a query inside one stretch is clipped to it */
	ASSERT_EQ(query(c.v.vm, p + K4, K4, r, 8), 1);
	ASSERT_EQ(r[0].addr, svmt_u64(p + K4));
	ASSERT_EQ(r[0].range, K4);
	/* back to the neighbours' value: they merge again */
	ASSERT_OK(advise(c.v.vm, p + K64, K64, GVM_MADV_ATOMIC,
			 atomic_policy(GVM_ATOMIC_UNDEFINED)));
	ASSERT_EQ(query(c.v.vm, p, 4 * K64, r, 8), 2);
	ASSERT_EQ(r[0].range, 3 * K64);
	/* the count alone, and a buffer too small */
	n = 0;
	ASSERT_OK(gvm_vm_query_attrs(c.v.vm, svmt_u64(p), 4 * K64, NULL, &n));
	ASSERT_EQ(n, 2);
	n = 1;
	ASSERT_EQ(gvm_vm_query_attrs(c.v.vm, svmt_u64(p), 4 * K64, r, &n),
		  -ENOSPC);
	ASSERT_EQ(n, 2);
	ASSERT_EQ(r[0].range, 3 * K64);
	/* all defaults: nothing stored */
	ASSERT_OK(advise(c.v.vm, p, 4 * K64, GVM_MADV_ALL, loc(0, NULL)));
	ASSERT_EQ(query(c.v.vm, p, 4 * K64, r, 8), 1);
	ASSERT_EQ(r[0].attrs.preferred_loc, GVM_LOC_DEFAULT);
	teardown(&c);
	svmt_unmap(p, 4 * K64);
}

TEST(madvise_rejects_bad_input_and_changes_nothing)
{
	struct gvm_device *other;
	struct gvm_attr_range r[2];
	struct gvm_madvise adv = { .set = GVM_MADV_PAT };
	struct gvm_vm *plain;
	struct ctx c;
	uint64_t a;
	uint8_t *p;

	setup(&c);
	p = svmt_map(K64, K64);
	a = svmt_u64(p);
	ASSERT_EQ(gvm_vm_madvise(NULL, a, K64, &adv), -EINVAL);
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, K64, NULL), -EINVAL);
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a + 1, K64, &adv), -EINVAL);
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, K64 + 1, &adv), -EINVAL);
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, 0, &adv), -EINVAL);
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, ~0ull << 12, K64, &adv), -EINVAL);
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, 1ull << 48, K64, &adv), -EINVAL);
	adv.set = 0;
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, K64, &adv), -EINVAL);
	adv.set = 1u << 7;
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, K64, &adv), -EINVAL);
	adv.set = GVM_MADV_PAT;
	adv.flags = 2;
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, K64, &adv), -EINVAL);
	adv.flags = 0;
	adv.attrs.pat = GVM_PAT_MAX + 1;
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, K64, &adv), -EINVAL);
	adv.attrs.pat = 0;
	adv.attrs.reserved = 1;
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, K64, &adv), -EINVAL);
	adv.attrs.reserved = 0;
	ASSERT_EQ(advise(c.v.vm, p, K64, GVM_MADV_ATOMIC,
			 atomic_policy(GVM_ATOMIC_CPU + 1)), -EINVAL);
	ASSERT_EQ(advise(c.v.vm, p, K64, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_DEVICE, NULL)), -EINVAL);
	ASSERT_EQ(advise(c.v.vm, p, K64, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_SYSTEM, c.dev)), -EINVAL);
	ASSERT_EQ(advise(c.v.vm, p, K64, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_DEVICE + 1, NULL)), -EINVAL);
	adv.set = GVM_MADV_GRANULARITY;
	adv.attrs.granularity = 8192;
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, K64, &adv), -EINVAL);
	/* a device this VM's device is not linked to, strictly */
	ASSERT_OK(gvm_sim_device_create(NULL, &other));
	adv = (struct gvm_madvise){ .set = GVM_MADV_PREFERRED_LOC,
				    .flags = GVM_MADV_STRICT,
				    .attrs = loc(GVM_LOC_DEVICE, other) };
	ASSERT_EQ(gvm_vm_madvise(c.v.vm, a, K64, &adv), -ENOLINK);
	/* a VM without an mm has no mirrored memory to advise */
	ASSERT_OK(gvm_vm_create(c.dev, NULL, 0, &plain));
	adv.flags = 0;
	ASSERT_EQ(gvm_vm_madvise(plain, a, K64, &adv), -EOPNOTSUPP);
	ASSERT_OK(gvm_vm_destroy(plain));
	ASSERT_EQ(query(c.v.vm, p, K64, r, 2), 1);
	ASSERT_TRUE(!memcmp(&r[0].attrs, &(struct gvm_mem_attrs){ 0 },
			    sizeof(r[0].attrs)));
	gvm_device_put(other);
	teardown(&c);
	svmt_unmap(p, K64);
}

/* ---- invalidation rules -------------------------------------------------- */

TEST(the_same_value_invalidates_nothing)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(4 * K64, K64);
	svmt_fill(&c.v, p, 4 * K64, 7);
	st = svmt_stats(c.v.vm);
	ASSERT_EQ(st.svm_faults_by_size[1], 4);
	/* the defaults, stated; then a value set twice */
	ASSERT_OK(advise(c.v.vm, p, 4 * K64, GVM_MADV_ALL, loc(0, NULL)));
	ASSERT_OK(advise(c.v.vm, p, 4 * K64, GVM_MADV_ATOMIC,
			 atomic_policy(GVM_ATOMIC_GLOBAL)));
	ASSERT_EQ(svmt_stats(c.v.vm).svm_ranges_dropped, 1 * 4);
	ASSERT_EQ(svmt_sum(&c.v, p, 4 * K64), 4 * K64 / 8 * W(7));
	st = svmt_stats(c.v.vm);
	ASSERT_OK(advise(c.v.vm, p, 4 * K64, GVM_MADV_ATOMIC,
			 atomic_policy(GVM_ATOMIC_GLOBAL)));
	ASSERT_EQ(svmt_sum(&c.v, p, 4 * K64), 4 * K64 / 8 * W(7));
	ASSERT_EQ(svmt_stats(c.v.vm).faults, st.faults);
	ASSERT_EQ(svmt_stats(c.v.vm).svm_ranges_dropped,
		  st.svm_ranges_dropped);
	teardown(&c);
	svmt_unmap(p, 4 * K64);
}

TEST(a_changed_value_drops_exactly_the_ranges_it_covers)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(4 * K64, K64);
	svmt_fill(&c.v, p, 4 * K64, 3);
	ASSERT_EQ(svmt_sum(&c.v, p, 4 * K64), 4 * K64 / 8 * W(3));
	st = svmt_stats(c.v.vm);
	ASSERT_EQ(st.svm_migrations, 4);
	/* the second range: it alone refaults, and comes back */
	ASSERT_OK(advise(c.v.vm, p + K64, K64, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_SYSTEM, NULL)));
	ASSERT_EQ(svmt_stats(c.v.vm).svm_ranges_dropped,
		  st.svm_ranges_dropped + 1);
	ASSERT_EQ(svmt_sum(&c.v, p, 4 * K64), 4 * K64 / 8 * W(3));
	ASSERT_EQ(svmt_stats(c.v.vm).faults, st.faults + 1);
	ASSERT_EQ(svmt_stats(c.v.vm).dev_svm_to_system, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 3 * K64);
	/* part of the third: the range around it goes whole, no other */
	st = svmt_stats(c.v.vm);
	ASSERT_OK(advise(c.v.vm, p + 2 * K64 + 8 * K4, 2 * K4,
			 GVM_MADV_ATOMIC, atomic_policy(GVM_ATOMIC_GLOBAL)));
	ASSERT_EQ(svmt_stats(c.v.vm).svm_ranges_dropped,
		  st.svm_ranges_dropped + 1);
	ASSERT_EQ(svmt_sum(&c.v, p, 4 * K64), 4 * K64 / 8 * W(3));
	ASSERT_EQ(svmt_cpu_sum(p, 4 * K64), 4 * K64 / 8 * W(3));
	teardown(&c);
	svmt_unmap(p, 4 * K64);
}

/* ---- auto-reset ---------------------------------------------------------- */

TEST(attributes_reset_when_the_cpu_unmaps_the_memory)
{
	struct gvm_attr_range r[4];
	struct ctx c;
	uint8_t *p, *q;

	setup(&c);
	p = svmt_map(4 * K64, K64);
	ASSERT_OK(advise(c.v.vm, p, 4 * K64, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_SYSTEM, NULL)));
	ASSERT_EQ(query(c.v.vm, p, 4 * K64, r, 4), 1);
	ASSERT_EQ(r[0].attrs.preferred_loc, GVM_LOC_SYSTEM);
	/* a hole: its attributes go, its neighbours keep theirs */
	ASSERT_OK(munmap(p + K64, K64));
	ASSERT_EQ(query(c.v.vm, p, 4 * K64, r, 4), 3);
	ASSERT_EQ(r[0].attrs.preferred_loc, GVM_LOC_SYSTEM);
	ASSERT_EQ(r[1].addr, svmt_u64(p + K64));
	ASSERT_EQ(r[1].range, K64);
	ASSERT_EQ(r[1].attrs.preferred_loc, GVM_LOC_DEFAULT);
	ASSERT_EQ(r[2].attrs.preferred_loc, GVM_LOC_SYSTEM);
	/* memory mapped again at the address starts with the defaults */
	q = mmap(p + K64, K64, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_TRUE(q == p + K64);
	ASSERT_EQ(query(c.v.vm, p, 4 * K64, r, 4), 3);
	ASSERT_EQ(r[1].attrs.preferred_loc, GVM_LOC_DEFAULT);
	ASSERT_OK(munmap(p, 4 * K64));
	ASSERT_EQ(query(c.v.vm, p, 4 * K64, r, 4), 1);
	ASSERT_EQ(r[0].attrs.preferred_loc, GVM_LOC_DEFAULT);
	teardown(&c);
	munmap(p - K4, 4 * K64 + 2 * K4);
}

/* ---- placement ----------------------------------------------------------- */

TEST(preferred_system_keeps_the_pages_in_system_memory)
{
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(M2, M2);
	ASSERT_OK(advise(c.v.vm, p, M2, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_SYSTEM, NULL)));
	svmt_fill(&c.v, p, M2, 5);
	ASSERT_EQ(svmt_stats(c.v.vm).svm_migrations, 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(5));
	/* back to the default: the next fault moves it */
	ASSERT_OK(advise(c.v.vm, p, M2, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_DEFAULT, NULL)));
	svmt_fill(&c.v, p, M2, 6);
	ASSERT_EQ(svmt_stats(c.v.vm).svm_migrations, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	/* and system again brings it back at the next fault */
	ASSERT_OK(advise(c.v.vm, p, M2, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_SYSTEM, NULL)));
	ASSERT_EQ(svmt_sum(&c.v, p, M2), M2 / 8 * W(6));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(svmt_stats(c.v.vm).dev_svm_to_system, 1);
	ASSERT_EQ(svmt_info(c.dev).svm_migrations_in, 1);
	ASSERT_EQ(svmt_info(c.dev).svm_migrations_out, 1);
	ASSERT_EQ(svmt_info(c.dev).svm_bytes_out, M2);
	teardown(&c);
	svmt_unmap(p, M2);
}

TEST(granularity_bounds_the_range_size)
{
	struct gvm_mem_attrs a = { .granularity = K4 };
	struct gvm_vm_stats st;
	struct ctx c;
	uint8_t *p;

	setup(&c);
	p = svmt_map(M2, M2);
	ASSERT_OK(advise(c.v.vm, p, M2, GVM_MADV_GRANULARITY, a));
	svmt_fill(&c.v, p, K64, 9);
	st = svmt_stats(c.v.vm);
	ASSERT_EQ(st.svm_ranges_created, 16);
	ASSERT_EQ(st.svm_faults_by_size[0], 16);
	ASSERT_EQ(st.svm_faults_by_size[2], 0);
	ASSERT_EQ(svmt_cpu_sum(p, K64), K64 / 8 * W(9));
	teardown(&c);
	svmt_unmap(p, M2);
}

/* ---- atomics ------------------------------------------------------------- */

TEST(atomic_cpu_policy_fails_gpu_atomics_without_hanging)
{
	struct gvm_fault_info f;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = svmt_map(K64, K64);
	ASSERT_OK(advise(c.v.vm, p, K64, GVM_MADV_ATOMIC,
			 atomic_policy(GVM_ATOMIC_CPU)));
	svmt_inc(&c.v, p, 64);
	ASSERT_GE(svmt_logged(c.v.vm, &f), 1);
	ASSERT_EQ(f.access, GVM_ACCESS_ATOMIC);
	ASSERT_EQ(f.addr, svmt_u64(p));
	ASSERT_EQ(p[0], 0);
	/* plain accesses are fine, and the VM still works */
	svmt_fill(&c.v, p, K64, 1);
	ASSERT_EQ(svmt_cpu_sum(p, K64), K64 / 8 * W(1));
	ASSERT_FALSE(svmt_stats(c.v.vm).banned);
	teardown(&c);
	svmt_unmap(p, K64);
}

TEST(atomic_device_policy_migrates_on_the_first_atomic)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = svmt_map(K64, K64);
	ASSERT_OK(advise(c.v.vm, p, K64, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_SYSTEM, NULL)));
	ASSERT_OK(advise(c.v.vm, p, K64, GVM_MADV_ATOMIC,
			 atomic_policy(GVM_ATOMIC_DEVICE)));
	svmt_fill(&c.v, p, K64, 0);			/* stays */
	ASSERT_EQ(svmt_stats(c.v.vm).svm_migrations, 0);
	svmt_inc(&c.v, p, 100);				/* moves */
	ASSERT_EQ(svmt_stats(c.v.vm).svm_migrations, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), K64);
	svmt_inc(&c.v, p, 100);				/* no fault */
	ASSERT_EQ(svmt_stats(c.v.vm).svm_migrations, 1);
	ASSERT_EQ(p[0], 200);
	ASSERT_EQ(svmt_logged(c.v.vm, NULL), 0);
	teardown(&c);
	svmt_unmap(p, K64);
}

TEST(atomic_global_policy_counts_in_system_memory)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = svmt_map(K64, K64);
	ASSERT_OK(advise(c.v.vm, p, K64,
			 GVM_MADV_PREFERRED_LOC | GVM_MADV_ATOMIC,
			 (struct gvm_mem_attrs){
				 .preferred_loc = GVM_LOC_SYSTEM,
				 .atomic = GVM_ATOMIC_GLOBAL }));
	svmt_inc(&c.v, p, 150);
	ASSERT_EQ(p[0], 150);
	ASSERT_EQ(svmt_stats(c.v.vm).svm_migrations, 0);
	ASSERT_EQ(svmt_logged(c.v.vm, NULL), 0);
	teardown(&c);
	svmt_unmap(p, K64);
}

/* ---- two devices --------------------------------------------------------- */

TEST(a_linked_device_maps_its_peers_memory_instead_of_migrating)
{
	struct svmt_pair x;
	uint8_t *p;

	svmt_pair_setup(&x, true, NULL);
	p = svmt_map(M2, M2);
	svmt_fill(&x.va, p, M2, 4);			/* into A */
	ASSERT_EQ(svmt_info(x.a).svm_migrations_in, 1);
	ASSERT_EQ(svmt_sum(&x.vb, p, M2), M2 / 8 * W(4));
	ASSERT_EQ(svmt_stats(x.vb.vm).svm_migrations, 0);
	ASSERT_EQ(svmt_stats(x.vb.vm).svm_p2p_binds, 1);
	ASSERT_EQ(svmt_info(x.a).svm_migrations_out, 0);
	ASSERT_EQ(svmt_info(x.b).svm_faults, 2);	/* + the out page */
	/* B writes A's memory over the link; the CPU sees it */
	svmt_fill(&x.vb, p, M2, 8);
	ASSERT_EQ(svmt_sum(&x.va, p, M2), M2 / 8 * W(8));
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(8));
	ASSERT_EQ(svmt_info(x.a).svm_migrations_out, 1);
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

TEST(devices_without_a_link_move_data_through_system_memory)
{
	struct svmt_pair x;
	uint8_t *p;

	svmt_pair_setup(&x, false, NULL);
	p = svmt_map(M2, M2);
	svmt_fill(&x.va, p, M2, 4);
	ASSERT_EQ(svmt_sum(&x.vb, p, M2), M2 / 8 * W(4));
	ASSERT_EQ(svmt_stats(x.vb.vm).svm_p2p_binds, 0);
	ASSERT_EQ(svmt_info(x.a).svm_migrations_out, 1);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 1);
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(4));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

TEST(preferred_location_on_a_linked_peer)
{
	struct svmt_pair x;
	uint8_t *p;

	svmt_pair_setup(&x, true, NULL);
	p = svmt_map(M2, M2);
	ASSERT_OK(advise(x.va.vm, p, M2, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_DEVICE, x.b)));
	svmt_fill(&x.va, p, M2, 2);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 1);	/* B's memory */
	ASSERT_EQ(svmt_info(x.a).svm_migrations_in, 0);
	ASSERT_EQ(svmt_stats(x.va.vm).svm_p2p_binds, 1);
	/* B itself maps it in place */
	ASSERT_EQ(svmt_sum(&x.vb, p, M2), M2 / 8 * W(2));
	ASSERT_EQ(svmt_stats(x.vb.vm).svm_migrations, 0);
	ASSERT_EQ(svmt_stats(x.vb.vm).svm_p2p_binds, 0);
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(2));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

TEST(preferred_location_on_an_unlinked_device_falls_back_to_system)
{
	struct svmt_pair x;
	uint8_t *p;

	svmt_pair_setup(&x, false, NULL);
	p = svmt_map(M2, M2);
	ASSERT_OK(advise(x.va.vm, p, M2, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_DEVICE, x.b)));
	svmt_fill(&x.va, p, M2, 2);
	ASSERT_EQ(svmt_info(x.a).svm_migrations_in, 0);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(x.mm), 0);
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(2));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

/*
 * Two devices count on one word at the same time, 200 increments each,
 * under each atomic policy that lets the GPU count, linked or not.
 */
static void count_on_two_devices(bool linked, uint32_t policy)
{
	uint64_t ufa = 0, ufb = 0, *p;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .value = 1 };
	struct gvm_kernel k;
	struct svmt_pair x;

	svmt_pair_setup(&x, linked, NULL);
	p = svmt_map(K64, K64);
	ASSERT_OK(advise(x.va.vm, p, K64, GVM_MADV_ATOMIC,
			 atomic_policy(policy)));
	ASSERT_OK(advise(x.vb.vm, p, K64, GVM_MADV_ATOMIC,
			 atomic_policy(policy)));
	for (int round = 1; round <= 3; round++) {
		ASSERT_OK(gvm_kernel_atomic_inc(&k, svmt_u64(p), 200));
		ufa = ufb = 0;
		s.addr = &ufa;
		ASSERT_OK(gvm_exec(x.va.q, &k, &s, 1));
		s.addr = &ufb;
		ASSERT_OK(gvm_exec(x.vb.q, &k, &s, 1));
		ASSERT_OK(gvm_user_fence_wait(&ufa, 1, GVM_TIMEOUT_INFINITE));
		ASSERT_OK(gvm_user_fence_wait(&ufb, 1, GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(svmt_logged(x.va.vm, NULL), 0);
		ASSERT_EQ(svmt_logged(x.vb.vm, NULL), 0);
		ASSERT_EQ(p[0], 400ull * round);
	}
	svmt_pair_teardown(&x);
	svmt_unmap(p, K64);
}

TEST(two_devices_count_exactly_linked_device_policy)
{
	count_on_two_devices(true, GVM_ATOMIC_DEVICE);
}

TEST(two_devices_count_exactly_unlinked_device_policy)
{
	count_on_two_devices(false, GVM_ATOMIC_DEVICE);
}

TEST(two_devices_count_exactly_global_policy)
{
	count_on_two_devices(false, GVM_ATOMIC_GLOBAL);
}

TEST(two_devices_count_exactly_default_policy)
{
	count_on_two_devices(true, GVM_ATOMIC_UNDEFINED);
}

/*
 * Between a fault's placement and its migration, another VM's fault puts
 * the pages in the memory of a device the first cannot reach.  That is
 * contention, not a failed migration: the range still migrates (it used
 * to stay in system memory for good, and an atomic under the DEVICE
 * policy then failed its job, 1 run in ~150 of the test above under TSan).
 */
static struct {
	struct gvm_vm *vm, *thief;
	uint64_t addr, len;
	int calls;
	intptr_t rc;
} steal;

static void *steal_fn(void *arg)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH,
				  .prefetch_mem = GVM_MEM_VRAM,
				  .addr = steal.addr, .range = steal.len };

	(void)arg;
	return (void *)(intptr_t)gvm_vm_bind(steal.thief, NULL, &op, 1,
					     NULL, 0);
}

/* The first placement of steal.vm's: the thief takes the pages first. */
static void steal_hook(struct gvm_vm *vm, uint64_t addr, uint64_t len)
{
	pthread_t t;
	void *rc = (void *)(intptr_t)-1;

	if (vm != steal.vm || steal.calls++)
		return;
	steal.addr = addr;
	steal.len = len;
	if (!pthread_create(&t, NULL, steal_fn, NULL))
		pthread_join(t, &rc);
	steal.rc = (intptr_t)rc;
}

TEST(pages_another_vm_takes_before_the_migration_still_migrate)
{
	uint64_t *p;
	struct gvm_kernel k;
	struct svmt_pair x;

	svmt_pair_setup(&x, false, NULL);
	p = svmt_map(K64, K64);
	p[0] = 41;
	ASSERT_OK(advise(x.va.vm, p, K64, GVM_MADV_ATOMIC,
			 atomic_policy(GVM_ATOMIC_DEVICE)));
	steal.vm = x.va.vm;
	steal.thief = x.vb.vm;
	gvm__svm_place_hook = steal_hook;
	ASSERT_OK(gvm_kernel_atomic_inc(&k, svmt_u64(p), 1));
	svmt_run(x.va.q, &k);
	gvm__svm_place_hook = NULL;
	ASSERT_EQ(steal.calls, 2);	/* placed again after the fetch */
	ASSERT_EQ(steal.rc, 0);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 1);
	ASSERT_EQ(svmt_info(x.a).svm_migrations_in, 1);
	ASSERT_EQ(svmt_stats(x.va.vm).svm_migration_failures, 0);
	ASSERT_EQ(svmt_logged(x.va.vm, NULL), 0);
	ASSERT_EQ(p[0], 42);
	svmt_pair_teardown(&x);
	svmt_unmap(p, K64);
}

/* ---- hot-unplug ---------------------------------------------------------- */

TEST(an_unplugged_device_refuses_new_users)
{
	struct gvm_device *dev, *other;
	struct gvm_queue *q, *q2;
	struct gvm_kernel k;
	struct gvm_vm *vm, *vm2;
	struct gvm_bo *bo;

	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_sim_device_create(NULL, &other));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_EQ(gvm_device_unplug(NULL), -EINVAL);
	ASSERT_OK(gvm_device_unplug(dev));
	ASSERT_EQ(gvm_device_unplug(dev), -ENODEV);
	ASSERT_EQ(gvm_vm_create(dev, NULL, 0, &vm2), -ENODEV);
	ASSERT_EQ(gvm_bo_create(dev, K64, GVM_MEM_SYSTEM, NULL, &bo), -ENODEV);
	ASSERT_EQ(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q2), -ENODEV);
	ASSERT_EQ(gvm_device_link(dev, other, NULL), -ENODEV);
	ASSERT_OK(gvm_kernel_store_dword(&k, 0x100000, 1, 64));
	ASSERT_EQ(gvm_exec(q, &k, NULL, 0), -ENODEV);
	/* what exists goes away as usual */
	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
	gvm_device_put(other);
}

TEST(unplug_moves_idle_buffer_objects_to_system_memory)
{
	struct gvm_device *dev;
	struct gvm_bo *bo;
	uint64_t *cpu;

	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_bo_create(dev, M2, GVM_MEM_VRAM, NULL, &bo));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);
	ASSERT_OK(gvm_bo_map(bo, (void **)&cpu));
	for (uint64_t i = 0; i < M2 / 8; i++)
		cpu[i] = i * 3 + 1;
	ASSERT_OK(gvm_device_unplug(dev));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	ASSERT_EQ(svmt_info(dev).vram_free, svmt_info(dev).vram_size);
	ASSERT_OK(gvm_bo_map(bo, (void **)&cpu));
	for (uint64_t i = 0; i < M2 / 8; i++)
		ASSERT_EQ(cpu[i], i * 3 + 1);
	gvm_bo_put(bo);
	gvm_device_put(dev);
}

TEST(an_unplugged_peer_is_never_a_placement)
{
	struct svmt_pair x;
	uint8_t *p;

	svmt_pair_setup(&x, true, NULL);
	p = svmt_map(M2, M2);
	ASSERT_OK(advise(x.va.vm, p, M2, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_DEVICE, x.b)));
	ASSERT_OK(gvm_device_unplug(x.b));
	ASSERT_FALSE(gvm_device_linked(x.a, x.b));
	svmt_fill(&x.va, p, M2, 2);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 0);
	ASSERT_EQ(svmt_info(x.a).svm_migrations_in, 0);	/* preferred: B */
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(2));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

/*
 * Unplugging a device whose memory holds SVM data moves the data out:
 * nothing is lost, the peer that mapped it refaults and maps system
 * memory, the CPU reads it.
 */
TEST(unplug_moves_svm_data_out_and_peers_keep_working)
{
	struct svmt_pair x;
	uint8_t *p;

	svmt_pair_setup(&x, true, NULL);
	p = svmt_map(M2, M2);
	svmt_fill(&x.vb, p, M2, 6);			/* into B */
	ASSERT_EQ(svmt_sum(&x.va, p, M2), M2 / 8 * W(6));	/* p2p */
	ASSERT_EQ(svmt_stats(x.va.vm).svm_p2p_binds, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(x.mm), M2);
	ASSERT_OK(gvm_device_unplug(x.b));
	ASSERT_EQ(gvm__mm_devmem_bytes(x.mm), 0);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_out, 1);
	/* A refaults: its own memory now (B is no peer any more) */
	ASSERT_EQ(svmt_sum(&x.va, p, M2), M2 / 8 * W(6));
	ASSERT_EQ(svmt_info(x.a).svm_migrations_in, 1);
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(6));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

/*
 * Unplug while a kernel of the device runs on SVM memory in its VRAM.  The
 * kernel (one lane) writes the first half of 2 MiB, says so, and keeps
 * loading from the range (so it acknowledges TLB invalidations) until the
 * test, having unplugged the device meanwhile, lets it write the second
 * half.  The unplug moves the data to system memory under the running
 * kernel; its next access refaults and maps system memory (the device
 * can hold nothing any more); the job ends without error and nothing is
 * lost.  New work is refused.
 */
struct unplug_args {
	uint64_t base, words;
	uint32_t *half_done, *go;	/* host words, not GPU memory */
};

static void unplug_fn(struct gvm_lane *l, const void *args)
{
	const struct unplug_args *a = args;

	for (uint64_t i = 0; i < a->words / 2; i++)
		gvm_lane_store(l, a->base + i * 8, i + 1, 8);
	__atomic_store_n(a->half_done, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(a->go, __ATOMIC_ACQUIRE))
		gvm_lane_load(l, a->base, 8);
	for (uint64_t i = a->words / 2; i < a->words; i++)
		gvm_lane_store(l, a->base + i * 8, i + 1, 8);
}

TEST(unplug_while_a_kernel_runs_on_the_devices_memory)
{
	uint32_t half_done = 0, go = 0;
	struct unplug_args a;
	struct gvm_kernel k;
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = svmt_map(M2, M2);
	svmt_fill(&c.v, p, M2, 1);			/* into VRAM */
	ASSERT_EQ(svmt_info(c.dev).svm_migrations_in, 1);
	a = (struct unplug_args){ svmt_u64(p), M2 / 8, &half_done, &go };
	ASSERT_OK(gvm_kernel_init(&k, "unplug", unplug_fn, 1, &a, sizeof(a)));
	ASSERT_OK(gvm_exec(c.v.q, &k, &s, 1));
	while (!__atomic_load_n(&half_done, __ATOMIC_ACQUIRE))
		sched_yield();
	ASSERT_OK(gvm_device_unplug(c.dev));
	ASSERT_EQ(svmt_info(c.dev).svm_migrations_out, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(svmt_logged(c.v.vm, NULL), 0);	/* no failed fault */
	for (uint64_t i = 0; i < M2 / 8; i++)
		if (p[i] != i + 1)
			ASSERT_EQ(p[i], i + 1);
	ASSERT_EQ(svmt_info(c.dev).svm_migrations_in, 1);	/* no more */
	ASSERT_EQ(gvm_exec(c.v.q, &k, NULL, 0), -ENODEV);
	teardown(&c);
	svmt_unmap(p, M2);
}

/*
 * SVM memory fills VRAM; a BO that may live in system memory too lands
 * there (it does not push SVM memory out: docs/svm.md, "Who evicts
 * what") and works; the SVM data stays where it is, intact.
 */
TEST(a_vram_or_system_bo_falls_back_while_svm_fills_vram)
{
	struct gvm_sim_config cfg = { .vram_size = 8 * M2 };
	const uint64_t va = 1ull << 40;
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = va, .range = M2 };
	struct gvm_device *dev;
	struct gvm_bo *bo;
	struct gvm_mm *mm;
	struct svmt_vm v;
	uint32_t *b;
	uint8_t *p;

	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	svmt_vm_init(&v, dev, mm);
	p = svmt_map(7 * M2, M2);
	svmt_fill(&v, p, 7 * M2, 4);			/* all but 2 MiB */
	ASSERT_EQ(svmt_info(dev).svm_migrations_in, 7);
	ASSERT_LT(svmt_info(dev).vram_free, M2);
	ASSERT_OK(gvm_bo_create(dev, M2, GVM_MEM_VRAM | GVM_MEM_SYSTEM, NULL,
				&bo));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	ASSERT_EQ(svmt_stats(v.vm).dev_svm_evictions, 0);
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(v.vm, NULL, &op, 1, NULL, 0));
	svmt_fill(&v, (void *)(uintptr_t)va, M2, 9);	/* the GPU uses it */
	ASSERT_OK(gvm_bo_map(bo, (void **)&b));
	for (uint64_t i = 0; i < M2 / 4; i++)
		if (b[i] != 9)
			ASSERT_EQ(b[i], 9);
	ASSERT_EQ(gvm__mm_devmem_bytes(mm), 7 * M2);
	ASSERT_EQ(svmt_cpu_sum(p, 7 * M2), 7 * M2 / 8 * W(4));
	svmt_vm_fini(&v);
	gvm_bo_put(bo);
	gvm_device_put(dev);
	gvm_mm_put(mm);
	svmt_unmap(p, 7 * M2);
}

/*
 * A PREFETCH places the ranges as the attributes say, here in a linked
 * peer's memory: the kernel afterwards takes no fault at all.
 */
TEST(prefetch_to_a_preferred_peer_then_zero_faults)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH,
				  .prefetch_mem = GVM_MEM_VRAM };
	struct gvm_vm_stats st;
	struct svmt_pair x;
	uint8_t *p;

	svmt_pair_setup(&x, true, NULL);
	p = svmt_map(4 * M2, M2);
	memset(p, 1, 4 * M2);
	ASSERT_OK(advise(x.va.vm, p, 4 * M2, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_DEVICE, x.b)));
	op.addr = svmt_u64(p);
	op.range = 4 * M2;
	ASSERT_OK(gvm_vm_bind(x.va.vm, NULL, &op, 1, NULL, 0));
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 4);
	st = svmt_stats(x.va.vm);
	ASSERT_EQ(st.svm_p2p_binds, 4);
	svmt_fill(&x.va, p, 4 * M2, 3);
	ASSERT_EQ(svmt_stats(x.va.vm).faults, st.faults);
	ASSERT_EQ(svmt_cpu_sum(p, 4 * M2), 4 * M2 / 8 * W(3));
	svmt_pair_teardown(&x);
	svmt_unmap(p, 4 * M2);
}

/*
 * The preferred device is unplugged between a fault's placement and its
 * migration (here: the unplug's flag raised from the placement hook, as
 * another thread's unplug would): the fault is served where the pages
 * are, the range is no failure, and a DEVICE-policy atomic then moves it
 * into the faulting device's memory.  The -ENODEV used to mark the range
 * unmovable for good, and the atomic failed its job (review finding).
 */
static struct gvm_device *unplug_now;

static void unplug_at_placement(struct gvm_vm *vm, uint64_t addr,
				uint64_t len)
{
	(void)vm;
	(void)addr;
	(void)len;
	if (unplug_now) {
		__atomic_store_n(&unplug_now->unplugged, 1, __ATOMIC_RELEASE);
		unplug_now = NULL;
	}
}

TEST(an_unplug_racing_a_migration_fails_nothing)
{
	struct gvm_kernel k;
	struct svmt_pair x;
	uint64_t *p;

	svmt_pair_setup(&x, true, NULL);
	p = svmt_map(M2, M2);
	memset(p, 0, M2);
	ASSERT_OK(advise(x.va.vm, p, M2, GVM_MADV_PREFERRED_LOC,
			 loc(GVM_LOC_DEVICE, x.b)));
	ASSERT_OK(advise(x.va.vm, p, M2, GVM_MADV_ATOMIC,
			 atomic_policy(GVM_ATOMIC_DEVICE)));
	unplug_now = x.b;
	gvm__svm_place_hook = unplug_at_placement;
	ASSERT_EQ(svmt_sum(&x.va, p, M2), 0);
	gvm__svm_place_hook = NULL;
	ASSERT_EQ(svmt_stats(x.va.vm).svm_migration_failures, 0);
	ASSERT_OK(gvm_kernel_atomic_inc(&k, svmt_u64(p), 64));
	ASSERT_GE(svmt_run_status(x.va.q, &k), 0);	/* no -EIO */
	ASSERT_EQ(svmt_logged(x.va.vm, NULL), 0);
	svmt_vm_fini(&x.va);
	svmt_vm_fini(&x.vb);
	gvm_device_put(x.a);
	gvm_device_put(x.b);
	gvm_mm_put(x.mm);
	ASSERT_EQ(p[0], 64);
	svmt_unmap(p, M2);
}
