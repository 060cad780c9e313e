// SPDX-License-Identifier: MIT
/*
 * Direct device-to-device migration of SVM ranges (issue 13;
 * docs/multidevice.md, "Moves between devices"): a range in device A's
 * memory that must move to linked device B's memory (B's preferred
 * location, a PREFETCH to B) is copied once, by B's copy engine, from A's
 * VRAM window over the link, never through system memory; unlinked devices
 * still go through system memory; a failed direct copy (or allocation)
 * falls back with the data intact; a CPU access racing with the move gets
 * the data; the link's bandwidth and latency are what the simulated GPU
 * charges.
 *
 * Nothing waits for time: kernels end with user fences, and the one race
 * (the CPU touching the range during the move) is forced from inside the
 * copy, which holds the mm's devmem_lock: the test's copy op starts the
 * CPU writer and waits until the mm's event thread has read its fault
 * (it then waits for the lock, behind the move).  The only time measured
 * is a lower bound (a modelled latency), which load cannot break.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "harness.h"
#include "svmtest.h"
#include "core/alloc.h"
#include "core/atomic.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/dev.h"

#define K4 SVMT_K4
#define M2 SVMT_M2

/* The word the CPU puts at index @i of a range, for round @r. */
#define WORD(r, i) (((uint64_t)(r) << 40) ^ ((uint64_t)(i) * 0x9e3779b1ull))

static int prefer(struct gvm_vm *vm, const void *p, uint64_t len,
		  uint32_t where, struct gvm_device *dev)
{
	struct gvm_madvise adv = {
		.set = GVM_MADV_PREFERRED_LOC,
		.attrs = { .preferred_loc = where, .dev = dev },
	};

	return gvm_vm_madvise(vm, svmt_u64(p), len, &adv);
}

/* The CPU writes round @r's words into [p, p + len). */
static void cpu_write(uint64_t *p, uint64_t len, unsigned int r)
{
	for (uint64_t i = 0; i < len / 8; i++)
		p[i] = WORD(r, i);
}

/* Whether the CPU reads round @r's words at [p, p + len), word by word. */
static bool cpu_has(const uint64_t *p, uint64_t len, unsigned int r)
{
	for (uint64_t i = 0; i < len / 8; i++)
		if (p[i] != WORD(r, i))
			return false;
	return true;
}

static uint64_t expected_sum(uint64_t len, unsigned int r)
{
	uint64_t s = 0;

	for (uint64_t i = 0; i < len / 8; i++)
		s += WORD(r, i);
	return s;
}

/*
 * A 2 MiB range holding round @r's words in A's memory: written by the
 * CPU, then read by A's GPU (the default policy migrates it into A).
 */
static uint64_t *range_in_a(struct svmt_pair *x, unsigned int r)
{
	uint64_t *p = svmt_map(M2, M2);
	uint64_t in0 = svmt_info(x->a).svm_migrations_in;

	cpu_write(p, M2, r);
	ASSERT_EQ(svmt_sum(&x->va, p, M2), expected_sum(M2, r));
	ASSERT_EQ(svmt_info(x->a).svm_migrations_in, in0 + 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(x->mm), M2);
	return p;
}

/* B's GPU copies [p, p + M2) into @q (system memory), which the CPU
   then checks word by word. */
static void b_copies_out(struct svmt_pair *x, const uint64_t *p, uint64_t *q,
			 unsigned int r)
{
	struct gvm_kernel k;

	memset(q, 0, M2);
	ASSERT_OK(gvm_kernel_copy(&k, svmt_u64(q), svmt_u64(p), M2));
	svmt_run(x->vb.q, &k);
	ASSERT_TRUE(cpu_has(q, M2, r));
}

/* A buffer B's GPU writes that stays in system memory. */
static uint64_t *system_buffer(struct svmt_pair *x)
{
	uint64_t *q = svmt_map(M2, M2);

	ASSERT_OK(prefer(x->vb.vm, q, M2, GVM_LOC_SYSTEM, NULL));
	return q;
}

/*
 * B's preferred location for the range at @p is B's memory; returns a
 * system-memory buffer for b_copies_out().
 */
static uint64_t *b_prefers_b(struct svmt_pair *x, const uint64_t *p)
{
	uint64_t *q = system_buffer(x);

	ASSERT_OK(prefer(x->vb.vm, p, M2, GVM_LOC_DEVICE, x->b));
	return q;
}

/*
 * A's PREFETCH of the range at @p into device memory (its preferred
 * location says where): gvm_vm_bind's result.
 */
static int prefetch_to_b(struct svmt_pair *x, const uint64_t *p)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH,
				  .prefetch_mem = GVM_MEM_VRAM,
				  .addr = svmt_u64(p), .range = M2 };

	return gvm_vm_bind(x->va.vm, NULL, &op, 1, NULL, 0);
}

/* ---- the direct path ----------------------------------------------------- */

/*
 * B's preferred location is B: its fault moves the range from A to B with
 * one copy over the link.  Counted as A's move out and B's move in, and as
 * a direct one; A moves nothing to system memory.  B's GPU and then the
 * CPU read every word.
 */
TEST(a_preferred_peer_location_moves_the_range_directly)
{
	struct gvm_device_info ia, ib;
	struct gvm_vm_stats sb;
	struct svmt_pair x;
	uint64_t *p, *q;

	svmt_pair_setup(&x, true, NULL);
	p = range_in_a(&x, 1);
	q = b_prefers_b(&x, p);
	b_copies_out(&x, p, q, 1);

	sb = svmt_stats(x.vb.vm);
	ASSERT_EQ(sb.svm_d2d_migrations, 1);
	ASSERT_EQ(sb.svm_bytes_d2d, M2);
	ASSERT_EQ(sb.svm_migrations, 1);
	ASSERT_EQ(sb.svm_p2p_binds, 0);		/* in its own memory now */
	ia = svmt_info(x.a);
	ib = svmt_info(x.b);
	ASSERT_EQ(ia.svm_migrations_out, 1);
	ASSERT_EQ(ia.svm_bytes_out, M2);
	ASSERT_EQ(ia.svm_d2d_out, 1);
	ASSERT_EQ(ib.svm_migrations_in, 1);
	ASSERT_EQ(ib.svm_bytes_in, M2);
	ASSERT_EQ(ib.svm_d2d_in, 1);
	/* no system memory on the way */
	ASSERT_EQ(svmt_stats(x.va.vm).dev_svm_to_system, 0);
	ASSERT_EQ(sb.dev_svm_to_system, 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(x.mm), M2);

	/* the CPU reads it back from B, every word */
	ASSERT_TRUE(cpu_has(p, M2, 1));
	ASSERT_EQ(svmt_info(x.b).svm_migrations_out, 1);
	ASSERT_EQ(svmt_info(x.b).svm_d2d_out, 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(x.mm), 0);
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
	svmt_unmap(q, M2);
}

/* A's VRAM that held the range is free again once it moved. */
TEST(the_source_memory_is_freed_after_a_direct_move)
{
	uint64_t free_a;
	struct svmt_pair x;
	uint64_t *p, *q;

	svmt_pair_setup(&x, true, NULL);
	p = range_in_a(&x, 2);
	free_a = svmt_info(x.a).vram_free;
	q = b_prefers_b(&x, p);
	b_copies_out(&x, p, q, 2);
	ASSERT_EQ(svmt_info(x.b).svm_d2d_in, 1);
	ASSERT_EQ(svmt_info(x.a).vram_free, free_a + M2);
	/* A reads it again: peer to peer from B, no move */
	ASSERT_EQ(svmt_sum(&x.va, p, M2), expected_sum(M2, 2));
	ASSERT_EQ(svmt_info(x.a).svm_migrations_in, 1);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_out, 0);
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
	svmt_unmap(q, M2);
}

/* A PREFETCH to a linked peer (A's preferred location set to B) takes the
   direct path too, in the bind call. */
TEST(prefetch_to_a_peer_moves_directly)
{
	struct svmt_pair x;
	uint64_t *p;

	svmt_pair_setup(&x, true, NULL);
	p = range_in_a(&x, 3);
	ASSERT_OK(prefer(x.va.vm, p, M2, GVM_LOC_DEVICE, x.b));
	ASSERT_OK(prefetch_to_b(&x, p));
	ASSERT_EQ(svmt_stats(x.va.vm).svm_d2d_migrations, 1);
	ASSERT_EQ(svmt_info(x.a).svm_d2d_out, 1);
	ASSERT_EQ(svmt_info(x.b).svm_d2d_in, 1);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 1);
	ASSERT_EQ(svmt_stats(x.va.vm).dev_svm_to_system, 0);
	/* A maps it in B, peer to peer; the GPU and the CPU read it */
	ASSERT_EQ(svmt_sum(&x.va, p, M2), expected_sum(M2, 3));
	ASSERT_TRUE(svmt_stats(x.va.vm).svm_p2p_binds >= 1);
	ASSERT_TRUE(cpu_has(p, M2, 3));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

/* ---- fallbacks ----------------------------------------------------------- */

TEST(devices_without_a_link_still_move_through_system_memory)
{
	struct svmt_pair x;
	uint64_t *p, *q;

	svmt_pair_setup(&x, false, NULL);
	p = range_in_a(&x, 4);
	q = b_prefers_b(&x, p);
	b_copies_out(&x, p, q, 4);
	ASSERT_EQ(svmt_stats(x.vb.vm).svm_d2d_migrations, 0);
	ASSERT_EQ(svmt_info(x.a).svm_d2d_out, 0);
	ASSERT_EQ(svmt_info(x.b).svm_d2d_in, 0);
	ASSERT_EQ(svmt_stats(x.va.vm).dev_svm_to_system, 1);	/* A -> sys */
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 1);	/* sys -> B */
	ASSERT_TRUE(cpu_has(p, M2, 4));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
	svmt_unmap(q, M2);
}

/*
 * B's copy engine, with a hook on copies from a peer's VRAM (the direct
 * ones): fail them (copy_failures), or start a CPU writer first.
 */
static struct gvm_device_ops hooked_ops;
static const struct gvm_device_ops *real_ops;
static int copy_failures;		/* atomic: peer copies left to fail */
static bool fail_any;			/* ... or any copies (set before) */
static void (*before_peer_copy)(void);	/* test thread sets, no race */
static unsigned int peer_copies;	/* atomic: peer copies seen */

static int hooked_copy(struct gvm_device *dev, struct gvm_mem_addr dst,
		       struct gvm_mem_addr src, uint64_t size,
		       struct gvm_fence **done)
{
	if (src.peer || fail_any) {
		if (src.peer)
			__atomic_fetch_add(&peer_copies, 1, __ATOMIC_RELAXED);
		if (src.peer && before_peer_copy)
			before_peer_copy();
		if (__atomic_load_n(&copy_failures, __ATOMIC_RELAXED) > 0) {
			__atomic_fetch_sub(&copy_failures, 1,
					   __ATOMIC_RELAXED);
			return -EIO;
		}
	}
	return real_ops->copy(dev, dst, src, size, done);
}

static void hook_copies(struct gvm_device *dev)
{
	real_ops = dev->ops;
	hooked_ops = *real_ops;
	hooked_ops.copy = hooked_copy;
	dev->ops = &hooked_ops;
	__atomic_store_n(&peer_copies, 0, __ATOMIC_RELAXED);
}

/*
 * The direct copy fails: the range still moves, through system memory
 * (A's move back, then B's move in), its data intact; nothing is counted
 * as direct, and no migration failed for good.
 */
TEST(a_failed_direct_copy_falls_back_through_system_memory)
{
	struct gvm_vm_stats sb;
	struct svmt_pair x;
	uint64_t *p, *q;

	svmt_pair_setup(&x, true, NULL);
	hook_copies(x.b);
	p = range_in_a(&x, 5);
	q = b_prefers_b(&x, p);
	__atomic_store_n(&copy_failures, 1, __ATOMIC_RELAXED);
	b_copies_out(&x, p, q, 5);
	ASSERT_EQ(__atomic_load_n(&copy_failures, __ATOMIC_RELAXED), 0);
	ASSERT_EQ(__atomic_load_n(&peer_copies, __ATOMIC_RELAXED), 1);
	sb = svmt_stats(x.vb.vm);
	ASSERT_EQ(sb.svm_d2d_migrations, 0);
	ASSERT_EQ(sb.svm_migrations, 1);
	ASSERT_EQ(sb.svm_migration_failures, 0);
	ASSERT_EQ(svmt_info(x.a).svm_d2d_out, 0);
	ASSERT_EQ(svmt_info(x.a).svm_migrations_out, 1);	/* to system */
	ASSERT_EQ(svmt_stats(x.va.vm).dev_svm_to_system, 1);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(x.mm), M2);		/* in B */
	ASSERT_TRUE(cpu_has(p, M2, 5));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
	svmt_unmap(q, M2);
}

/*
 * Every copy into B fails, the direct one and the one through system
 * memory: the range ends up in system memory (a failure for good: the
 * direct attempt, then two through system memory), its data intact.
 */
TEST(direct_and_fallback_copies_failing_lose_nothing)
{
	struct svmt_pair x;
	uint64_t *p;

	svmt_pair_setup(&x, true, NULL);
	hook_copies(x.b);
	fail_any = true;
	p = range_in_a(&x, 6);
	ASSERT_OK(prefer(x.va.vm, p, M2, GVM_LOC_DEVICE, x.b));
	__atomic_store_n(&copy_failures, 1000, __ATOMIC_RELAXED);
	ASSERT_OK(prefetch_to_b(&x, p));
	ASSERT_EQ(__atomic_load_n(&peer_copies, __ATOMIC_RELAXED), 1);
	ASSERT_EQ(svmt_stats(x.va.vm).svm_migration_failures, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(x.mm), 0);		/* system */
	ASSERT_EQ(svmt_stats(x.va.vm).svm_d2d_migrations, 0);
	ASSERT_EQ(svmt_info(x.b).svm_d2d_in, 0);
	ASSERT_EQ(svmt_info(x.a).svm_d2d_out, 0);
	__atomic_store_n(&copy_failures, 0, __ATOMIC_RELAXED);
	ASSERT_TRUE(cpu_has(p, M2, 6));
	ASSERT_EQ(svmt_sum(&x.va, p, M2), expected_sum(M2, 6));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}

/*
 * The N-th allocation of a PREFETCH that moves a range from A to B fails,
 * for every N until one runs without a failure: the bind succeeds or
 * fails with -ENOMEM, and the range's data is intact wherever it ended
 * up (A, B or system memory), word by word.
 */
#define ROUNDS_MAX 200

TEST(allocation_failures_during_a_direct_move_lose_nothing)
{
	uint64_t *used[ROUNDS_MAX];
	unsigned int n, i, direct = 0;
	struct svmt_pair x;

	svmt_pair_setup(&x, true, NULL);
	for (n = 1; n < ROUNDS_MAX; n++) {
		uint64_t *p = range_in_a(&x, 100 + n), d0, left;
		int err;

		ASSERT_OK(prefer(x.va.vm, p, M2, GVM_LOC_DEVICE, x.b));
		d0 = svmt_stats(x.va.vm).svm_d2d_migrations;
		gvm__inject_arm(GVM_INJECT_ALLOC, (long)n, 0);
		err = prefetch_to_b(&x, p);
		left = (uint64_t)gvm__inject_disarm(GVM_INJECT_ALLOC);
		ASSERT_TRUE(err == 0 || err == -ENOMEM);
		direct += svmt_stats(x.va.vm).svm_d2d_migrations != d0;
		ASSERT_TRUE(cpu_has(p, M2, 100 + n));
		ASSERT_EQ(gvm__mm_devmem_bytes(x.mm), 0);
		/* A new address each round (the thrashing policy remembers
		   addresses that moved); the memory itself goes. */
		used[n] = p;
		ASSERT_OK(madvise(p, M2, MADV_DONTNEED));
		if (left)
			break;		/* nothing failed: every N was tried */
	}
	printf("%u allocations failed in turn; %u rounds moved directly\n",
	       n - 1, direct);
	ASSERT_TRUE(n < ROUNDS_MAX);
	ASSERT_GE(direct, 1);
	svmt_pair_teardown(&x);
	for (i = 1; i <= n; i++)
		svmt_unmap(used[i], M2);
}

/* ---- the CPU during and after the move ----------------------------------- */

static uint64_t *writer_p;
static pthread_t writer;

/* The CPU writes round 8's words into the first half of the range. */
static void *writer_fn(void *arg)
{
	(void)arg;
	cpu_write(writer_p, M2 / 2, 8);
	return NULL;
}

static uint64_t cpu_faults(struct gvm_mm *mm)
{
	struct gvm_mm_self_stats st;

	gvm__mm_self_stats(mm, &st);
	return st.cpu_faults;
}

static struct gvm_mm *hook_mm;

/*
 * Inside the direct move (the mm's devmem_lock held, the CPU pages
 * absent): a CPU thread writes the range; once the event thread has read
 * its fault, which then waits for the lock, the copy goes on.
 */
static void start_writer_in_the_move(void)
{
	uint64_t f0 = cpu_faults(hook_mm);

	before_peer_copy = NULL;	/* once */
	ASSERT_EQ(pthread_create(&writer, NULL, writer_fn, NULL), 0);
	while (cpu_faults(hook_mm) == f0)
		gvm_cpu_relax();
}

/*
 * The CPU writes the range while it moves from A to B (a PREFETCH by A,
 * its preferred location B): its write waits for the move, then brings
 * the range back from B; the CPU reads its own words in the half it
 * wrote and the moved data in the other, and so does B's GPU.
 */
TEST(the_cpu_writing_during_a_direct_move_reads_its_own_data)
{
	struct svmt_pair x;
	uint64_t *p, *q;
	struct gvm_kernel k;

	svmt_pair_setup(&x, true, NULL);
	hook_copies(x.b);
	p = range_in_a(&x, 7);
	q = system_buffer(&x);
	ASSERT_OK(prefer(x.va.vm, p, M2, GVM_LOC_DEVICE, x.b));
	writer_p = p;
	hook_mm = x.mm;
	before_peer_copy = start_writer_in_the_move;
	ASSERT_OK(prefetch_to_b(&x, p));
	ASSERT_EQ(pthread_join(writer, NULL), 0);
	ASSERT_EQ(svmt_info(x.b).svm_d2d_in, 1);
	ASSERT_EQ(svmt_info(x.b).svm_migrations_out, 1);  /* the CPU's */
	ASSERT_TRUE(cpu_has(p, M2 / 2, 8));
	for (uint64_t i = M2 / 16; i < M2 / 8; i++)
		ASSERT_EQ(p[i], WORD(7, i));
	/* B's GPU reads the same words */
	memset(q, 0, M2);
	ASSERT_OK(gvm_kernel_copy(&k, svmt_u64(q), svmt_u64(p), M2));
	svmt_run(x.vb.q, &k);
	ASSERT_TRUE(cpu_has(q, M2 / 2, 8));
	for (uint64_t i = M2 / 16; i < M2 / 8; i++)
		ASSERT_EQ(q[i], WORD(7, i));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
	svmt_unmap(q, M2);
}

/* After a direct move, the CPU writes the range in B and reads back its
   own words; B's GPU then sees them too. */
TEST(the_cpu_writing_the_range_in_b_reads_back_its_own_data)
{
	struct svmt_pair x;
	uint64_t *p, *q;

	svmt_pair_setup(&x, true, NULL);
	p = range_in_a(&x, 9);
	q = b_prefers_b(&x, p);
	b_copies_out(&x, p, q, 9);
	ASSERT_EQ(svmt_info(x.b).svm_d2d_in, 1);
	cpu_write(p, M2, 10);			/* back from B */
	ASSERT_TRUE(cpu_has(p, M2, 10));
	ASSERT_EQ(svmt_info(x.b).svm_migrations_out, 1);
	b_copies_out(&x, p, q, 10);		/* into B again, from system */
	ASSERT_EQ(svmt_info(x.b).svm_migrations_in, 2);
	ASSERT_TRUE(cpu_has(p, M2, 10));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
	svmt_unmap(q, M2);
}

/* ---- the link's model ---------------------------------------------------- */

TEST(link_query_reports_the_path)
{
	struct gvm_link_props ab = { .bandwidth = 8ull << 30,
				     .latency_ns = 1000 };
	struct gvm_link_props bc = { .bandwidth = 2ull << 30,
				     .latency_ns = 500 };
	struct gvm_device *a, *b, *c, *d;
	struct gvm_link_props lp;

	ASSERT_OK(gvm_sim_device_create(&svmt_no_access_counters, &a));
	ASSERT_OK(gvm_sim_device_create(&svmt_no_access_counters, &b));
	ASSERT_OK(gvm_sim_device_create(&svmt_no_access_counters, &c));
	ASSERT_OK(gvm_sim_device_create(&svmt_no_access_counters, &d));
	ASSERT_EQ(gvm_device_link_query(a, b, &lp), -ENOLINK);
	ASSERT_EQ(gvm_device_link_query(a, a, &lp), -EINVAL);
	ASSERT_EQ(gvm_device_link_query(NULL, a, &lp), -EINVAL);
	ASSERT_OK(gvm_device_link(a, b, &ab));
	ASSERT_OK(gvm_device_link(b, c, &bc));
	ASSERT_OK(gvm_device_link(c, d, NULL));		/* host speed */
	ASSERT_OK(gvm_device_link_query(b, a, &lp));
	ASSERT_EQ(lp.bandwidth, ab.bandwidth);
	ASSERT_EQ(lp.latency_ns, ab.latency_ns);
	ASSERT_OK(gvm_device_link_query(a, d, &lp));	/* a-b-c-d */
	ASSERT_EQ(lp.bandwidth, bc.bandwidth);
	ASSERT_EQ(lp.latency_ns, 1500);
	ASSERT_OK(gvm_device_link_query(c, d, &lp));
	ASSERT_EQ(lp.bandwidth, 0);
	ASSERT_EQ(lp.latency_ns, 0);
	gvm_device_put(d);
	ASSERT_EQ(gvm_device_link_query(a, c, &lp), 0);
	gvm_device_put(c);
	ASSERT_EQ(gvm_device_link_query(a, b, &lp), 0);
	gvm_device_put(b);
	gvm_device_put(a);
}

/*
 * The simulated GPU charges a direct copy the link's latency, not its own
 * copy engine's (0 here): the move takes at least the link's latency.  A
 * lower bound only, which no load can break.
 */
TEST(a_direct_copy_is_charged_the_links_latency)
{
	struct gvm_link_props lp = { .latency_ns = 30 * 1000 * 1000 };
	struct svmt_pair x;
	int64_t t0, t1;
	uint64_t *p;

	svmt_pair_setup(&x, true, &lp);
	p = range_in_a(&x, 11);
	ASSERT_OK(prefer(x.va.vm, p, M2, GVM_LOC_DEVICE, x.b));
	t0 = gvm__now_ns();
	ASSERT_OK(prefetch_to_b(&x, p));
	t1 = gvm__now_ns();
	ASSERT_EQ(svmt_info(x.b).svm_d2d_in, 1);
	ASSERT_GE(t1 - t0, (int64_t)lp.latency_ns);
	ASSERT_TRUE(cpu_has(p, M2, 11));
	svmt_pair_teardown(&x);
	svmt_unmap(p, M2);
}
