// SPDX-License-Identifier: MIT
/*
 * SVM policies (gvm_svm_policy_select; docs/policy.md): selection and
 * listing, and what each policy decides differently on the same workload -
 * placement (remote leaves system memory in place, migrate pulls a linked
 * peer's memory instead of mapping it), thrashing (migrate never pins),
 * prefetch (a sequential sweep is placed ahead of its faults, a backward
 * one is not) - while the memory attributes are obeyed under every policy.
 *
 * Nothing depends on time: kernels end with user fences, the thrashing
 * window is an hour, and the sweeps run in one lane, so their faults come
 * in address order.
 */
#include <errno.h>
#include <string.h>

#include <gvm/svm.h>

#include "harness.h"
#include "svmtest.h"
#include "vm/policy.h"

#define K64 SVMT_K64
#define M2 SVMT_M2
#define SEC 1000000000ll

/* The 64-bit word a fill with the 32-bit pattern @v leaves. */
#define W(v) ((uint64_t)(v) * 0x100000001ull)

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *a, *b;	/* b: a linked peer, if asked */
	struct svmt_vm va, vb;
};

static void setup(struct ctx *c, const char *policy, bool peer)
{
	memset(c, 0, sizeof(*c));
	ASSERT_OK(gvm_svm_policy_select(policy));
	ASSERT_OK(gvm_mm_self(&c->mm));
	ASSERT_OK(gvm_sim_device_create(&svmt_no_access_counters, &c->a));
	svmt_vm_init(&c->va, c->a, c->mm);
	if (!peer)
		return;
	ASSERT_OK(gvm_sim_device_create(&svmt_no_access_counters, &c->b));
	ASSERT_OK(gvm_device_link(c->a, c->b, NULL));
	svmt_vm_init(&c->vb, c->b, c->mm);
}

static void teardown(struct ctx *c)
{
	ASSERT_EQ(svmt_logged(c->va.vm, NULL), 0);
	svmt_vm_fini(&c->va);
	gvm_device_put(c->a);
	if (c->b) {
		ASSERT_EQ(svmt_logged(c->vb.vm, NULL), 0);
		svmt_vm_fini(&c->vb);
		gvm_device_put(c->b);
	}
	gvm_mm_put(c->mm);
	gvm__svm_policy_reset();
}

TEST(select_lists_and_rejects_unknown_names)
{
	const char *name, *what = NULL;
	unsigned int n;

	ASSERT_TRUE(!strcmp(gvm_svm_policy_current(), "default"));
	for (n = 0; (name = gvm_svm_policy_list(n, &what)); n++) {
		ASSERT_TRUE(what && *what);
		ASSERT_OK(gvm_svm_policy_select(name));
		ASSERT_TRUE(!strcmp(gvm_svm_policy_current(), name));
	}
	ASSERT_EQ(n, 4);
	ASSERT_TRUE(gvm_svm_policy_list(n, NULL) == NULL);
	ASSERT_OK(gvm_svm_policy_select("remote"));
	ASSERT_EQ(gvm_svm_policy_select("fastest"), -EINVAL);
	ASSERT_EQ(gvm_svm_policy_select(""), -EINVAL);
	ASSERT_EQ(gvm_svm_policy_select(NULL), -EINVAL);
	ASSERT_TRUE(!strcmp(gvm_svm_policy_current(), "remote"));
	gvm__svm_policy_reset();
	ASSERT_TRUE(!strcmp(gvm_svm_policy_current(), "default"));
}

/* ---- placement ------------------------------------------------------------ */

TEST(remote_leaves_system_memory_in_place)
{
	struct ctx c;
	uint8_t *p;

	setup(&c, "remote", false);
	p = svmt_map(M2, M2);
	svmt_fill(&c.va, p, M2, 3);
	ASSERT_EQ(svmt_sum(&c.va, p, M2), M2 / 8 * W(3));
	ASSERT_EQ(svmt_stats(c.va.vm).svm_migrations, 0);
	ASSERT_EQ(svmt_info(c.a).svm_migrations_in, 0);
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(3));
	teardown(&c);
	svmt_unmap(p, M2);
}

/* What the attributes say every policy does: here, a preferred device. */
TEST(remote_obeys_a_preferred_device)
{
	struct gvm_madvise adv = {
		.set = GVM_MADV_PREFERRED_LOC,
		.attrs = { .preferred_loc = GVM_LOC_DEVICE },
	};
	struct ctx c;
	uint8_t *p;

	setup(&c, "remote", false);
	adv.attrs.dev = c.a;
	p = svmt_map(M2, M2);
	ASSERT_OK(gvm_vm_madvise(c.va.vm, svmt_u64(p), M2, &adv));
	svmt_fill(&c.va, p, M2, 5);
	ASSERT_EQ(svmt_stats(c.va.vm).svm_migrations, 1);
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(5));
	teardown(&c);
	svmt_unmap(p, M2);
}

/*
 * The same two steps under two policies: A fills the range (into A's
 * memory), then B reads it.  The default maps A's memory into B, peer to
 * peer; "migrate" moves it into B's memory.
 */
static void peer_read(const char *policy, bool migrates)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint8_t *p;

	setup(&c, policy, true);
	p = svmt_map(M2, M2);
	svmt_fill(&c.va, p, M2, 7);
	ASSERT_EQ(svmt_info(c.a).svm_migrations_in, 1);
	ASSERT_EQ(svmt_sum(&c.vb, p, M2), M2 / 8 * W(7));
	st = svmt_stats(c.vb.vm);
	ASSERT_EQ(st.svm_migrations, migrates ? 1 : 0);
	ASSERT_EQ(st.svm_p2p_binds, migrates ? 0 : 1);
	ASSERT_EQ(svmt_info(c.b).svm_migrations_in, migrates ? 1 : 0);
	ASSERT_EQ(svmt_info(c.a).svm_migrations_out, migrates ? 1 : 0);
	ASSERT_EQ(svmt_cpu_sum(p, M2), M2 / 8 * W(7));
	teardown(&c);
	svmt_unmap(p, M2);
}

TEST(default_maps_a_linked_peers_memory)
{
	peer_read("default", false);
}

TEST(migrate_pulls_a_linked_peers_memory)
{
	peer_read("migrate", true);
}

/* ---- thrashing ------------------------------------------------------------ */

/*
 * The CPU and the GPU touch one range in turn, 8 times: each GPU touch
 * migrates it again.  The default pins it after thrash_migrations (3)
 * migrations in the window; "migrate" moves it every time.  The data is
 * right at every step either way.
 */
static void ping_pong(const char *policy, uint64_t migrations, uint64_t pins)
{
	const unsigned int steps = 8;
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c, policy, false);
	gvm__svm_policy.thrash_migrations = 3;
	gvm__svm_policy.thrash_window_ns = 3600 * SEC;
	gvm__svm_policy.thrash_cooldown_ns = 3600 * SEC;
	p = svmt_map(M2, M2);
	for (unsigned int s = 0; s < steps; s++) {
		memset(p, (int)s + 1, M2);
		ASSERT_EQ(svmt_sum(&c.va, p, M2),
			  M2 / 8 * (0x0101010101010101ull * (s + 1)));
	}
	st = svmt_stats(c.va.vm);
	ASSERT_EQ(st.svm_migrations, migrations);
	ASSERT_EQ(st.svm_thrash_pins, pins);
	teardown(&c);
	svmt_unmap(p, M2);
}

TEST(default_pins_a_thrashing_range)
{
	ping_pong("default", 4, 1);
}

TEST(migrate_never_pins_a_thrashing_range)
{
	ping_pong("migrate", 8, 0);
}

/* ---- prefetch ------------------------------------------------------------- */

struct sweep_args {
	uint64_t base, pages;
	int64_t step;			/* +1: forward, -1: backward */
};

/* One lane stores its page number into the first word of each page. */
static void sweep_fn(struct gvm_lane *l, const void *args)
{
	const struct sweep_args *a = args;

	for (uint64_t i = 0; i < a->pages; i++) {
		uint64_t pg = a->step > 0 ? i : a->pages - 1 - i;

		gvm_lane_store(l, a->base + pg * K64, pg + 1, 8);
	}
}

/*
 * 8 MiB of 10 MiB of mirrored memory in 64 KiB ranges (granularity
 * attribute), swept one range at a time by one lane.  Without prefetch
 * each of the 128 ranges is made on its own fault.  With the "prefetch"
 * policy the faults on ranges 0 and 1 make a sweep, and 1 places the 32
 * ranges (2 MiB) after it; so do the faults on 34, 67 and 100, the last
 * placing 5 ranges past the 8 MiB: 5 faults, 128 ranges prefetched.
 */
static void sweep(const char *policy, bool forward, bool ahead)
{
	const uint64_t size = 8ull << 20, pages = size / K64;
	const uint64_t faults = ahead ? 5 : pages;
	const uint64_t prefetched = ahead ? 128 : 0;
	struct gvm_madvise adv = { .set = GVM_MADV_GRANULARITY,
				   .attrs = { .granularity = K64 } };
	struct sweep_args a;
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	struct ctx c;
	uint8_t *p;

	setup(&c, policy, false);
	p = svmt_map(size + M2, M2);
	ASSERT_OK(gvm_vm_madvise(c.va.vm, svmt_u64(p), size + M2, &adv));
	a = (struct sweep_args){ svmt_u64(p), pages, forward ? 1 : -1 };
	ASSERT_OK(gvm_kernel_init(&k, "sweep", sweep_fn, 1, &a, sizeof(a)));
	svmt_run(c.va.q, &k);
	st = svmt_stats(c.va.vm);
	printf("%s %s: %llu ranges, %llu faulted, %llu prefetched\n", policy,
	       forward ? "forward" : "backward",
	       (unsigned long long)st.svm_ranges_created,
	       (unsigned long long)st.svm_faults_by_size[1],
	       (unsigned long long)st.svm_ranges_prefetched);
	ASSERT_EQ(st.svm_faults_by_size[1], faults);
	ASSERT_EQ(st.svm_ranges_prefetched, prefetched);
	ASSERT_EQ(st.svm_ranges_created, faults + prefetched);
	ASSERT_EQ(st.svm_migrations, faults + prefetched);
	for (uint64_t i = 0; i < pages; i++)
		ASSERT_EQ(*(uint64_t *)(p + i * K64), i + 1);
	teardown(&c);
	svmt_unmap(p, size + M2);
}

TEST(prefetch_places_a_sweep_ahead_of_its_faults)
{
	sweep("prefetch", true, true);
}

TEST(prefetch_leaves_a_backward_sweep_alone)
{
	sweep("prefetch", false, false);
}

TEST(default_faults_on_every_range_of_a_sweep)
{
	sweep("default", true, false);
}
