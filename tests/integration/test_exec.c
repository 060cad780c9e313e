// SPDX-License-Identifier: MIT
/*
 * Whole-stack tests in the style of IGT's xe_exec_* tests: BOs bound with
 * gvm_vm_bind, kernels run with gvm_exec on the simulated GPU, results
 * read back by the CPU.  Everything goes through the public API.
 */
#include <pthread.h>

#include <gvm/gvm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "core/sync.h"
#include "vm/vm.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define VA 0x10000000ull

struct ctx {
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static void setup(struct ctx *c, uint32_t vm_flags)
{
	struct gvm_sim_config cfg = { .vram_size = 64ull << 20 };

	ASSERT_OK(gvm_sim_device_create(&cfg, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, NULL, vm_flags, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
}

static void teardown(struct ctx *c)
{
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
}

static struct gvm_bo *new_bo(struct ctx *c, uint64_t size, uint32_t where,
			     void **cpu)
{
	struct gvm_bo *bo;

	ASSERT_OK(gvm_bo_create(c->dev, size, where, NULL, &bo));
	if (cpu)
		ASSERT_OK(gvm_bo_map(bo, cpu));
	return bo;
}

static void bind(struct ctx *c, uint32_t op, uint32_t flags, uint64_t addr,
		 uint64_t range, struct gvm_bo *bo, uint64_t off)
{
	struct gvm_bind_op b = { .op = op, .flags = flags, .addr = addr,
				 .range = range, .bo = bo, .bo_offset = off };

	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &b, 1, NULL, 0));
}

/* Runs @k on @q and returns the job's fence status. */
static int run_on(struct gvm_queue *q, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	int st;

	ASSERT_OK(gvm_exec(q, k, &s, 1));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return st < 0 ? st : 0;
}

static int run(struct ctx *c, const struct gvm_kernel *k)
{
	return run_on(c->q, k);
}

static int store(struct ctx *c, uint64_t va, uint64_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_store_dword(&k, va, v, 64));
	return run(c, &k);
}

static uint32_t faults(struct ctx *c, struct gvm_fault_info *out)
{
	struct gvm_fault_info buf[GVM_VM_FAULT_LOG];
	uint32_t n;

	ASSERT_OK(gvm_vm_query_faults(c->vm, buf, GVM_VM_FAULT_LOG, &n));
	if (n && out)
		*out = buf[0];
	return n;
}

TEST(store_dword)
{
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	bo = new_bo(&c, 16 * K4, GVM_MEM_VRAM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, VA, 16 * K4, bo, 0);
	/* stores spread over the BO's pages, read back by the CPU */
	for (uint64_t i = 0; i < 8; i++)
		ASSERT_OK(store(&c, VA + i * 8200, 0xc0ffee00ull + i));
	for (uint64_t i = 0; i < 8; i++)
		ASSERT_EQ(p[i * 8200 / 8], 0xc0ffee00ull + i);
	ASSERT_EQ(faults(&c, NULL), 0);
	gvm_bo_put(bo);
	teardown(&c);
}

/*
 * A BO bound at a canonical high address (bits 47..63 all ones on a 48-bit
 * VM): kernels use that address as it is, the MMU strips the sign
 * extension as gvm_vm_bind() does; a non-canonical address still faults.
 */
TEST(canonical_high_address_store)
{
	const uint64_t high = 0xffffc00000000000ull;
	const uint64_t bad = 0x8000c00000000000ull;	/* not canonical */
	struct gvm_fault_info fi;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	bo = new_bo(&c, 4 * K4, GVM_MEM_VRAM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, high, 4 * K4, bo, 0);
	ASSERT_OK(store(&c, high + 8, 0xcafe));
	ASSERT_EQ(p[1], 0xcafe);
	ASSERT_OK(store(&c, high + K4, 0xbeef));
	ASSERT_EQ(p[K4 / 8], 0xbeef);
	/* The short form is the same mapping. */
	ASSERT_OK(store(&c, high & ((1ull << 48) - 1), 7));
	ASSERT_EQ(p[0], 7);
	ASSERT_EQ(faults(&c, NULL), 0);
	ASSERT_EQ(store(&c, bad + 8, 1), -EIO);
	ASSERT_EQ(faults(&c, &fi), 1);
	ASSERT_EQ(fi.reason, GVM_FAULT_NOT_PRESENT);
	gvm_bo_put(bo);
	teardown(&c);
}

/* vm.h's rule for execs: a failed wait sync skips the kernel, error kept. */
TEST(exec_in_fence_error_skips_kernel)
{
	struct gvm_fence *in, *out = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL, .out = &out },
		{ .type = GVM_SYNC_FENCE },
	};
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	bo = new_bo(&c, 4 * K4, GVM_MEM_VRAM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, VA, 4 * K4, bo, 0);
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &in));
	s[1].fence = in;
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 8, 5, 64));
	ASSERT_OK(gvm_exec(c.q, &k, s, 2));
	ASSERT_OK(gvm_fence_signal_error(in, -ENOLINK));
	ASSERT_OK(gvm_fence_wait(out, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(out), -ENOLINK);
	ASSERT_EQ(p[1], 0);			/* the kernel did not run */
	ASSERT_EQ(faults(&c, NULL), 0);
	gvm_fence_put(out);
	gvm_fence_put(in);
	/* The queue goes on. */
	ASSERT_OK(store(&c, VA + 8, 6));
	ASSERT_EQ(p[1], 6);
	gvm_bo_put(bo);
	teardown(&c);
}

/*
 * Destroying an exec queue does not wait for a wait sync nobody signals:
 * the exec waiting for it is cancelled (-ECANCELED, the kernel does not
 * run); one whose wait sync signalled runs first.
 */
TEST(exec_queue_destroy_cancels_unsignalled_waits)
{
	struct gvm_fence *in, *in2, *o1 = NULL, *o2 = NULL, *o3 = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL },
		{ .type = GVM_SYNC_FENCE },
	};
	struct gvm_queue *q2;
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	ASSERT_OK(gvm_queue_create(c.vm, GVM_ENGINE_COMPUTE, &q2));
	bo = new_bo(&c, 4 * K4, GVM_MEM_VRAM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, VA, 4 * K4, bo, 0);
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &in));
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &in2));
	/* q2: an exec behind in2 (signalled), then one behind in (never). */
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 8, 5, 64));
	s[0].out = &o1;
	s[1].fence = in2;
	ASSERT_OK(gvm_exec(q2, &k, s, 2));
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 16, 6, 64));
	s[0].out = &o2;
	s[1].fence = in;
	ASSERT_OK(gvm_exec(q2, &k, s, 2));
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 24, 7, 64));
	s[0].out = &o3;
	ASSERT_OK(gvm_exec(q2, &k, s, 1));
	ASSERT_OK(gvm_fence_signal(in2));
	ASSERT_OK(gvm_fence_wait(o1, GVM_TIMEOUT_INFINITE));
	gvm_queue_destroy(q2);			/* hung here before */
	ASSERT_EQ(gvm_fence_get_status(o1), 1);
	ASSERT_EQ(gvm_fence_get_status(o2), -ECANCELED);
	ASSERT_TRUE(gvm_fence_is_signaled(o3));
	ASSERT_EQ(p[1], 5);
	ASSERT_EQ(p[2], 0);			/* cancelled: did not run */
	ASSERT_EQ(faults(&c, NULL), 0);
	/* Signalled late, the fence finds nothing waiting. */
	ASSERT_OK(gvm_fence_signal(in));
	gvm_fence_put(o1);
	gvm_fence_put(o2);
	gvm_fence_put(o3);
	gvm_fence_put(in);
	gvm_fence_put(in2);
	/* Another queue of the VM goes on. */
	ASSERT_OK(store(&c, VA + 8, 9));
	ASSERT_EQ(p[1], 9);
	gvm_bo_put(bo);
	teardown(&c);
}

/*
 * A device without 2M (or 64K) pages: a 4 MiB VRAM BO at a 2M-aligned VA
 * is mapped with 4K PTEs only, and a kernel over all of it runs without
 * faults (its MMU treats 2M leaves as invalid).
 */
TEST(page_sizes_4k_only_device)
{
	struct gvm_sim_config cfg = { .vram_size = 64ull << 20,
				      .page_sizes = GVM_PAGE_4K };
	const uint64_t size = 4ull << 20, va = 16 * M2;
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	struct ctx c;
	uint32_t *p;
	struct gvm_bo *bo;

	ASSERT_OK(gvm_sim_device_create(&cfg, &c.dev));
	ASSERT_OK(gvm_vm_create(c.dev, NULL, 0, &c.vm));
	ASSERT_OK(gvm_queue_create(c.vm, GVM_ENGINE_COMPUTE, &c.q));
	bo = new_bo(&c, size, GVM_MEM_VRAM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, va, size, bo, 0);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.pte_writes[1], 0);
	ASSERT_EQ(st.pte_writes[0], size / K4);
	ASSERT_OK(gvm_kernel_fill(&k, va, size, 0x5a5a1234u));
	ASSERT_OK(run(&c, &k));
	ASSERT_EQ(faults(&c, NULL), 0);
	for (uint64_t i = 0; i < size / 4; i += 4093)
		ASSERT_EQ(p[i], 0x5a5a1234u);
	ASSERT_EQ(p[size / 4 - 1], 0x5a5a1234u);
	gvm_bo_put(bo);
	teardown(&c);
}

TEST(unbind_then_exec_faults)
{
	struct gvm_fault_info fi;
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	bo = new_bo(&c, 4 * K4, GVM_MEM_SYSTEM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, VA, 4 * K4, bo, 0);
	ASSERT_OK(store(&c, VA + 8, 1));	/* fills the TLB */
	ASSERT_EQ(p[1], 1);
	bind(&c, GVM_BIND_UNMAP, 0, VA, 4 * K4, NULL, 0);
	/* No stale translation: the store faults. */
	ASSERT_EQ(store(&c, VA + 8, 2), -EIO);
	ASSERT_EQ(p[1], 1);
	ASSERT_EQ(faults(&c, &fi), 1);
	ASSERT_EQ(fi.addr, VA + 8);
	ASSERT_EQ(fi.access, GVM_ACCESS_WRITE);
	ASSERT_EQ(fi.reason, GVM_FAULT_NOT_PRESENT);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.faults, 1);
	ASSERT_FALSE(st.banned);
	/* The VM stays usable. */
	bind(&c, GVM_BIND_MAP, 0, VA, 4 * K4, bo, 0);
	ASSERT_OK(store(&c, VA + 8, 3));
	ASSERT_EQ(p[1], 3);
	gvm_bo_put(bo);
	teardown(&c);
}

TEST(null_binding_reads_zero_drops_writes)
{
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	bo = new_bo(&c, 4 * K4, GVM_MEM_VRAM, (void **)&p);
	memset(p, 0x5a, 4 * K4);
	bind(&c, GVM_BIND_MAP, 0, VA, 4 * K4, bo, 0);
	bind(&c, GVM_BIND_MAP, GVM_BIND_NULL, VA + M2, 4 * K4, NULL, 0);
	ASSERT_OK(store(&c, VA + M2 + 16, 77));		/* dropped */
	ASSERT_OK(gvm_kernel_copy(&k, VA, VA + M2, 4 * K4));
	ASSERT_OK(run(&c, &k));
	for (int i = 0; i < 512; i++)
		ASSERT_EQ(p[i], 0);
	ASSERT_EQ(faults(&c, NULL), 0);
	gvm_bo_put(bo);
	teardown(&c);
}

TEST(readonly_binding_write_faults)
{
	struct gvm_fault_info fi;
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p, *q;
	struct gvm_bo *bo, *out;

	setup(&c, 0);
	bo = new_bo(&c, K4, GVM_MEM_VRAM, (void **)&p);
	out = new_bo(&c, K4, GVM_MEM_VRAM, (void **)&q);
	p[0] = 42;
	bind(&c, GVM_BIND_MAP, GVM_BIND_READONLY, VA, K4, bo, 0);
	bind(&c, GVM_BIND_MAP, 0, VA + M2, K4, out, 0);
	ASSERT_EQ(store(&c, VA, 1), -EIO);
	ASSERT_EQ(p[0], 42);
	ASSERT_EQ(faults(&c, &fi), 1);
	ASSERT_EQ(fi.reason, GVM_FAULT_WRITE_PROTECT);
	/* Reads are fine. */
	ASSERT_OK(gvm_kernel_checksum(&k, VA, 8, VA + M2));
	ASSERT_OK(run(&c, &k));
	ASSERT_EQ(q[0], 42);
	gvm_bo_put(bo);
	gvm_bo_put(out);
	teardown(&c);
}

TEST(same_bo_twice_coherent)
{
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	bo = new_bo(&c, 8 * K4, GVM_MEM_VRAM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, VA, 4 * K4, bo, 0);
	bind(&c, GVM_BIND_MAP, 0, VA + M2, 4 * K4, bo, 0);
	ASSERT_OK(store(&c, VA + 64, 0x1234));
	/* read through the second mapping, write to the BO's other half */
	ASSERT_OK(gvm_kernel_copy(&k, VA + M2 + 4 * K4 - K4, VA + M2, K4));
	ASSERT_EQ(run(&c, &k), 0);
	ASSERT_EQ(p[8], 0x1234);
	ASSERT_EQ(p[(3 * K4 + 64) / 8], 0x1234);
	gvm_bo_put(bo);
	teardown(&c);
}

/*
 * A fault-log entry says which exec faulted: its queue's id and its number
 * on that queue (the seqno of its fence), so an LR job that signals only a
 * user fence can be told apart.
 */
TEST(fault_log_names_queue_and_exec)
{
	struct gvm_fault_info fi;
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	struct gvm_queue *q2;
	struct gvm_kernel k;
	struct ctx c;
	struct gvm_bo *bo;

	setup(&c, 0);
	ASSERT_OK(gvm_queue_create(c.vm, GVM_ENGINE_COMPUTE, &q2));
	ASSERT_NE(gvm_queue_id(c.q), 0);
	ASSERT_NE(gvm_queue_id(q2), 0);
	ASSERT_NE(gvm_queue_id(c.q), gvm_queue_id(q2));
	bo = new_bo(&c, K4, GVM_MEM_VRAM, NULL);
	bind(&c, GVM_BIND_MAP, 0, VA, K4, bo, 0);

	ASSERT_OK(store(&c, VA, 1));			/* c.q: exec 1 */
	ASSERT_OK(gvm_kernel_store_dword(&k, VA, 2, 64));
	ASSERT_OK(run_on(q2, &k));			/* q2: exec 1 */
	/* q2's second exec faults (a caller's queue_id/seqno is ignored). */
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 16 * K4, 3, 64));
	k.queue_id = 77;
	k.seqno = 77;
	ASSERT_OK(gvm_exec(q2, &k, &s, 1));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), -EIO);
	ASSERT_EQ(faults(&c, &fi), 1);
	ASSERT_EQ(fi.addr, VA + 16 * K4);
	ASSERT_EQ(fi.queue_id, gvm_queue_id(q2));
	ASSERT_EQ(fi.seqno, 2);
	ASSERT_EQ(fi.seqno, f->seqno);
	gvm_fence_put(f);

	/* c.q's second exec faults too: its own numbering. */
	ASSERT_EQ(store(&c, VA + 32 * K4, 4), -EIO);
	ASSERT_EQ(faults(&c, &fi), 1);
	ASSERT_EQ(fi.queue_id, gvm_queue_id(c.q));
	ASSERT_EQ(fi.seqno, 2);
	gvm_queue_destroy(q2);
	gvm_bo_put(bo);
	teardown(&c);
}

TEST(queues_in_order_and_independent)
{
	struct gvm_fence *gate, *fa = NULL, *fb = NULL;
	struct gvm_queue *q2;
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	ASSERT_OK(gvm_queue_create(c.vm, GVM_ENGINE_COMPUTE, &q2));
	bo = new_bo(&c, K4, GVM_MEM_VRAM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, VA, K4, bo, 0);
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &gate));

	/* Queue 1: held by the gate, then three stores in order. */
	for (uint64_t v = 1; v <= 3; v++) {
		struct gvm_sync s[2] = {
			{ .type = GVM_SYNC_FENCE, .fence = gate },
			{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			  .out = &fa },
		};

		if (fa)
			gvm_fence_put(fa);
		ASSERT_OK(gvm_kernel_store_dword(&k, VA, v, 64));
		ASSERT_OK(gvm_exec(c.q, &k, s, 2));
	}
	/* Queue 2 progresses while queue 1 waits. */
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 8, 9, 64));
	{
		struct gvm_sync s = { .type = GVM_SYNC_FENCE,
				      .flags = GVM_SYNC_SIGNAL, .out = &fb };

		ASSERT_OK(gvm_exec(q2, &k, &s, 1));
	}
	ASSERT_OK(gvm_fence_wait(fb, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(p[1], 9);
	ASSERT_FALSE(gvm_fence_is_signaled(fa));
	ASSERT_EQ(p[0], 0);
	gvm_fence_signal(gate);
	ASSERT_OK(gvm_fence_wait(fa, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(p[0], 3);			/* the last one, in order */
	gvm_fence_put(fa);
	gvm_fence_put(fb);
	gvm_fence_put(gate);
	gvm_queue_destroy(q2);
	gvm_bo_put(bo);
	teardown(&c);
}

TEST(exec_waits_for_queued_bind)
{
	struct gvm_fence *gate;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA, .range = K4 };
	struct gvm_sync s;

	setup(&c, 0);
	bo = new_bo(&c, K4, GVM_MEM_VRAM, (void **)&p);
	op.bo = bo;
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &gate));
	s = (struct gvm_sync){ .type = GVM_SYNC_FENCE, .fence = gate };
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, &s, 1));
	/* The exec must not run before the bind: signal from a thread
	 * only after submitting. */
	{
		struct gvm_kernel k;
		struct gvm_fence *f = NULL;
		struct gvm_sync o = { .type = GVM_SYNC_FENCE,
				      .flags = GVM_SYNC_SIGNAL, .out = &f };

		ASSERT_OK(gvm_kernel_store_dword(&k, VA, 5, 64));
		ASSERT_OK(gvm_exec(c.q, &k, &o, 1));
		ASSERT_FALSE(gvm_fence_is_signaled(f));
		gvm_fence_signal(gate);
		ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(gvm_fence_get_status(f), 1);
		gvm_fence_put(f);
	}
	ASSERT_EQ(p[0], 5);
	ASSERT_EQ(faults(&c, NULL), 0);
	gvm_fence_put(gate);
	gvm_bo_put(bo);
	teardown(&c);
}

/*
 * Replacing a mapping while a kernel reads it: the bind waits for the
 * kernel (its fence is in the VM's reservation), so the kernel sees the
 * old mapping throughout and the next kernel the new one: no fault, no
 * window.
 */
TEST(rebind_while_kernel_runs)
{
	const uint64_t size = 8ull << 20;
	struct gvm_kernel k;
	struct gvm_bo *a, *b, *out;
	struct ctx c;
	uint64_t *pa, *pb, *po, sum = 0;

	setup(&c, 0);
	a = new_bo(&c, size, GVM_MEM_VRAM, (void **)&pa);
	b = new_bo(&c, size, GVM_MEM_SYSTEM, (void **)&pb);
	out = new_bo(&c, K4, GVM_MEM_VRAM, (void **)&po);
	for (uint64_t i = 0; i < size / 8; i++) {
		pa[i] = pb[i] = i * 2654435761u;
		sum += pa[i];
	}
	bind(&c, GVM_BIND_MAP, 0, VA, size, a, 0);
	bind(&c, GVM_BIND_MAP, 0, VA + 4 * size, K4, out, 0);
	for (int round = 0; round < 4; round++) {
		struct gvm_fence *f1 = NULL;
		struct gvm_sync s = { .type = GVM_SYNC_FENCE,
				      .flags = GVM_SYNC_SIGNAL, .out = &f1 };

		ASSERT_OK(gvm_kernel_checksum(&k, VA, size,
					      VA + 4 * size + 8 * (uint64_t)round));
		ASSERT_OK(gvm_exec(c.q, &k, &s, 1));
		/* replace while it (probably) runs */
		bind(&c, GVM_BIND_MAP, 0, VA, size, round & 1 ? a : b, 0);
		ASSERT_OK(gvm_fence_wait(f1, GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(gvm_fence_get_status(f1), 1);
		gvm_fence_put(f1);
	}
	ASSERT_OK(gvm_kernel_checksum(&k, VA, size, VA + 4 * size + 64));
	ASSERT_OK(run(&c, &k));
	for (int round = 0; round < 4; round++)
		ASSERT_EQ(po[round], sum);
	ASSERT_EQ(po[8], sum);
	ASSERT_EQ(faults(&c, NULL), 0);
	gvm_bo_put(a);
	gvm_bo_put(b);
	gvm_bo_put(out);
	teardown(&c);
}

TEST(scratch_page_reads_zero)
{
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, GVM_VM_SCRATCH_PAGE);
	bo = new_bo(&c, K4, GVM_MEM_VRAM, (void **)&p);
	p[0] = 99;
	bind(&c, GVM_BIND_MAP, 0, VA, K4, bo, 0);
	ASSERT_OK(gvm_kernel_checksum(&k, VA + M2, 64, VA));	/* unmapped */
	ASSERT_OK(run(&c, &k));
	ASSERT_EQ(p[0], 0);
	ASSERT_EQ(faults(&c, NULL), 0);
	gvm_bo_put(bo);
	teardown(&c);
}

static struct gvm_bind_op prefetch_op(uint64_t addr, uint64_t range,
				      uint32_t mem)
{
	return (struct gvm_bind_op){ .op = GVM_BIND_PREFETCH, .addr = addr,
				     .range = range, .prefetch_mem = mem };
}

static struct gvm_bind_op map_op(uint64_t addr, uint64_t range,
				 struct gvm_bo *bo)
{
	return (struct gvm_bind_op){ .op = GVM_BIND_MAP, .addr = addr,
				     .range = range, .bo = bo };
}

/*
 * A PREFETCH sees the VA state the earlier ops of its array left, not the
 * final one (vm.h: later ops see earlier ones).
 */
TEST(prefetch_sees_the_array_at_its_position)
{
	const uint64_t r1 = VA, r2 = VA + M2, r3 = VA + 2 * M2;
	struct gvm_bind_op ops[2];
	struct gvm_vm_stats st;
	struct gvm_bo *vram_only, *both;
	struct ctx c;
	uint64_t *p;

	setup(&c, 0);
	vram_only = new_bo(&c, 4 * K4, GVM_MEM_VRAM, NULL);
	both = new_bo(&c, 4 * K4, GVM_MEM_VRAM | GVM_MEM_SYSTEM,
		      (void **)&p);
	ASSERT_EQ(gvm_bo_region(both), GVM_MEM_VRAM);

	/* Nothing at r1 yet: the PREFETCH has nothing to move. */
	ops[0] = prefetch_op(r1, 4 * K4, GVM_MEM_SYSTEM);
	ops[1] = map_op(r1, 4 * K4, vram_only);
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, ops, 2, NULL, 0));
	ASSERT_EQ(gvm_bo_region(vram_only), GVM_MEM_VRAM);
	ASSERT_OK(store(&c, r1, 1));

	/* Prefetch, then unmap: the BO that was there moves. */
	bind(&c, GVM_BIND_MAP, 0, r2, 4 * K4, both, 0);
	ASSERT_OK(store(&c, r2 + 8, 0xabc));
	ops[0] = prefetch_op(r2, 4 * K4, GVM_MEM_SYSTEM);
	ops[1] = (struct gvm_bind_op){ .op = GVM_BIND_UNMAP, .addr = r2,
				       .range = 4 * K4 };
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, ops, 2, NULL, 0));
	ASSERT_EQ(gvm_bo_region(both), GVM_MEM_SYSTEM);
	ASSERT_EQ(p[1], 0xabc);

	/* Map, then prefetch: the new mapping's BO moves. */
	ops[0] = map_op(r3, 4 * K4, both);
	ops[1] = prefetch_op(r3, 4 * K4, GVM_MEM_VRAM);
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, ops, 2, NULL, 0));
	ASSERT_EQ(gvm_bo_region(both), GVM_MEM_VRAM);
	ASSERT_OK(store(&c, r3 + 16, 0xdef));
	ASSERT_EQ(p[2], 0xdef);

	/*
	 * A region the BO's placement does not allow is -EINVAL, even if a
	 * later op unmaps it, and nothing changes (not even an earlier
	 * prefetch's move).
	 */
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.vmas, 2);
	ops[0] = prefetch_op(r3, 4 * K4, GVM_MEM_SYSTEM);
	ops[1] = prefetch_op(r1, 4 * K4, GVM_MEM_SYSTEM);
	ASSERT_EQ(gvm_vm_bind(c.vm, NULL, ops, 2, NULL, 0), -EINVAL);
	ASSERT_EQ(gvm_bo_region(both), GVM_MEM_VRAM);
	ops[0] = prefetch_op(r1, 4 * K4, GVM_MEM_SYSTEM);
	ops[1] = (struct gvm_bind_op){ .op = GVM_BIND_UNMAP, .addr = r1,
				       .range = 4 * K4 };
	ASSERT_EQ(gvm_vm_bind(c.vm, NULL, ops, 2, NULL, 0), -EINVAL);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.vmas, 2);
	ASSERT_OK(store(&c, r1 + 8, 2));
	ASSERT_EQ(faults(&c, NULL), 0);

	gvm_bo_put(vram_only);
	gvm_bo_put(both);
	teardown(&c);
}

TEST(moved_bo_rebound_at_exec)
{
	struct gvm_bind_op pf = { .op = GVM_BIND_PREFETCH, .addr = VA,
				  .range = 4 * K4,
				  .prefetch_mem = GVM_MEM_SYSTEM };
	struct gvm_vm *vm2;
	struct gvm_queue *q2;
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	ASSERT_OK(gvm_vm_create(c.dev, NULL, 0, &vm2));
	ASSERT_OK(gvm_queue_create(vm2, GVM_ENGINE_COMPUTE, &q2));
	bo = new_bo(&c, 4 * K4, GVM_MEM_VRAM | GVM_MEM_SYSTEM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, VA, 4 * K4, bo, 0);
	{
		struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
					  .range = 4 * K4, .bo = bo };

		ASSERT_OK(gvm_vm_bind(vm2, NULL, &op, 1, NULL, 0));
	}
	ASSERT_OK(gvm_kernel_store_dword(&k, VA, 7, 64));
	ASSERT_OK(run_on(q2, &k));		/* vm2's TLB has it */
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &pf, 1, NULL, 0));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	ASSERT_EQ(p[0], 7);
	/* vm2 was zapped by the move and is rebound by this exec */
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 8, 8, 64));
	ASSERT_OK(run_on(q2, &k));
	ASSERT_EQ(p[1], 8);
	ASSERT_OK(store(&c, VA + 16, 9));
	ASSERT_EQ(p[2], 9);
	ASSERT_EQ(faults(&c, NULL), 0);
	gvm_queue_destroy(q2);
	ASSERT_OK(gvm_vm_destroy(vm2));
	gvm_bo_put(bo);
	teardown(&c);
}

static void *device_thread(void *arg)
{
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	(void)arg;
	setup(&c, 0);
	bo = new_bo(&c, 1ull << 20, GVM_MEM_VRAM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, VA, 1ull << 20, bo, 0);
	for (uint32_t round = 1; round <= 20; round++) {
		ASSERT_OK(gvm_kernel_fill(&k, VA, 1ull << 20, round));
		ASSERT_OK(run(&c, &k));
		ASSERT_EQ(((uint32_t *)p)[round * 1000], round);
	}
	gvm_bo_put(bo);
	teardown(&c);
	return NULL;
}

TEST(two_devices_at_once)
{
	pthread_t t[2];

	for (int i = 0; i < 2; i++)
		ASSERT_OK(pthread_create(&t[i], NULL, device_thread, NULL));
	for (int i = 0; i < 2; i++)
		ASSERT_OK(pthread_join(t[i], NULL));
}

/*
 * An exec must not wait, under vm->lock, for a bind job of its own VM:
 * here the BO that exec would move back to VRAM is busy with a queued bind
 * (blocked on a gate), which needs vm->lock to run.  The exec leaves the
 * BO where it is and goes on; everything completes once the gate opens.
 */
TEST(exec_does_not_wait_for_own_bind_job)
{
	struct gvm_bind_op pf = { .op = GVM_BIND_PREFETCH, .addr = VA,
				  .range = K4,
				  .prefetch_mem = GVM_MEM_SYSTEM };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA + M2,
				  .range = K4 };
	struct gvm_fence *gate, *f = NULL;
	struct gvm_sync in, out = { .type = GVM_SYNC_FENCE,
				    .flags = GVM_SYNC_SIGNAL, .out = &f };
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_bo *bo;

	setup(&c, 0);
	bo = new_bo(&c, K4, GVM_MEM_VRAM | GVM_MEM_SYSTEM, (void **)&p);
	bind(&c, GVM_BIND_MAP, 0, VA, K4, bo, 0);
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &pf, 1, NULL, 0));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	/* a second mapping of it, queued behind a gate */
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &gate));
	in = (struct gvm_sync){ .type = GVM_SYNC_FENCE, .fence = gate };
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, &in, 1));
	/* would deadlock if the exec waited for the BO to be idle */
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + M2, 77, 64));
	ASSERT_OK(gvm_exec(c.q, &k, &out, 1));
	ASSERT_FALSE(gvm_fence_is_signaled(f));
	gvm_fence_signal(gate);
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	ASSERT_EQ(p[0], 77);
	/* idle now: the next exec brings it back to VRAM */
	ASSERT_OK(store(&c, VA + 8, 78));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);
	ASSERT_EQ(p[1], 78);
	gvm_fence_put(f);
	gvm_fence_put(gate);
	gvm_bo_put(bo);
	teardown(&c);
}

/* Does @va translate in @vm's committed page tables? */
static bool mapped(struct gvm_vm *vm, uint64_t va)
{
	struct gvm_pt_xlate x;
	int err;

	gvm__mutex_lock(&vm->pt_lock);
	err = gvm__pt_translate(&vm->pt, va, GVM_PT_VIEW_COMMITTED, &x);
	gvm__mutex_unlock(&vm->pt_lock);
	return !err;
}

/*
 * A BO of @size mapped at VA in c's VM and in a second VM (*@vm2, with a
 * compute queue *@q2), then moved to system memory by a PREFETCH in c's
 * VM: the move zaps the second VM's mapping and marks its handle evicted.
 */
static struct gvm_bo *moved_under_a_second_vm(struct ctx *c, uint64_t size,
					      struct gvm_vm **vm2,
					      struct gvm_queue **q2,
					      uint64_t **cpu)
{
	struct gvm_bind_op pf = { .op = GVM_BIND_PREFETCH, .addr = VA,
				  .range = size,
				  .prefetch_mem = GVM_MEM_SYSTEM };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
				  .range = size };
	struct gvm_bo *bo;

	ASSERT_OK(gvm_vm_create(c->dev, NULL, 0, vm2));
	ASSERT_OK(gvm_queue_create(*vm2, GVM_ENGINE_COMPUTE, q2));
	bo = new_bo(c, size, GVM_MEM_VRAM | GVM_MEM_SYSTEM, (void **)cpu);
	bind(c, GVM_BIND_MAP, 0, VA, size, bo, 0);
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(*vm2, NULL, &op, 1, NULL, 0));
	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &pf, 1, NULL, 0));
	ASSERT_FALSE(mapped(*vm2, VA));
	return bo;
}

/*
 * Issue 10, defect 6: exec rebinds the VMAs of a BO a move zapped, but not
 * one whose queued bind still waits for its in-sync: that mapping becomes
 * visible when its bind job runs, not before.
 */
TEST(rebind_skips_vma_of_pending_bind)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .range = 4 * K4 };
	struct gvm_fence *in, *done = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL },
	};
	struct gvm_kernel k;
	struct gvm_vm *vm2;
	struct gvm_queue *q2;
	struct gvm_bo *bo;
	struct ctx c;
	uint64_t *p;

	setup(&c, 0);
	bo = moved_under_a_second_vm(&c, 4 * K4, &vm2, &q2, &p);
	op.bo = bo;
	/* vm2 maps the BO again at VA + 1M, queued behind @in */
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &in));
	s[0].fence = in;
	op.addr = VA + (1ull << 20);
	ASSERT_OK(gvm_vm_bind(vm2, NULL, &op, 1, s, 1));
	/* exec's revalidation rebinds VA, not the pending VA + 1M */
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + (1ull << 20) + 8, 5, 64));
	s[1].out = &done;
	ASSERT_OK(gvm_exec(q2, &k, &s[1], 1));
	ASSERT_TRUE(mapped(vm2, VA));
	ASSERT_FALSE(mapped(vm2, VA + (1ull << 20)));
	ASSERT_EQ(gvm_fence_get_status(done), 0);	/* waits for the bind */
	ASSERT_OK(gvm_fence_signal(in));
	ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(done), 1);
	ASSERT_TRUE(mapped(vm2, VA + (1ull << 20)));
	ASSERT_EQ(p[1], 5);
	gvm_fence_put(done);
	gvm_fence_put(in);
	gvm_queue_destroy(q2);
	ASSERT_OK(gvm_vm_destroy(vm2));
	gvm_bo_put(bo);
	teardown(&c);
}

/*
 * The pieces a queued UNMAP leaves of a mapping keep their PTEs; the job
 * writes only the part it removes.  They used to take the job's fence as
 * theirs, so after a move zapped the BO an exec's rebind skipped them
 * ("their job writes them"), cleared the handle's evicted mark, and they
 * stayed zapped: every exec using them failed (review finding).
 */
TEST(pieces_a_queued_unmap_leaves_of_a_moved_bo_are_rebound)
{
	struct gvm_bind_op un = { .op = GVM_BIND_UNMAP, .addr = VA + K4,
				  .range = K4 };
	struct gvm_fence *in, *done = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL },
	};
	struct gvm_kernel k;
	struct gvm_vm *vm2;
	struct gvm_queue *q2;
	struct gvm_bo *bo;
	struct ctx c;
	uint64_t *p;

	setup(&c, 0);
	bo = moved_under_a_second_vm(&c, 3 * K4, &vm2, &q2, &p);
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &in));
	s[0].fence = in;
	ASSERT_OK(gvm_vm_bind(vm2, NULL, &un, 1, s, 1));
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 2 * K4 + 8, 7, 64));
	s[1].out = &done;
	ASSERT_OK(gvm_exec(q2, &k, &s[1], 1));
	ASSERT_TRUE(mapped(vm2, VA + 2 * K4));		/* rebound */
	ASSERT_OK(gvm_fence_signal(in));
	ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(done), 1);
	ASSERT_EQ(p[2 * K4 / 8 + 1], 7);
	ASSERT_TRUE(mapped(vm2, VA));
	ASSERT_FALSE(mapped(vm2, VA + K4));
	gvm_fence_put(done);
	gvm_fence_put(in);
	gvm_queue_destroy(q2);
	ASSERT_OK(gvm_vm_destroy(vm2));
	gvm_bo_put(bo);
	teardown(&c);
}

/*
 * A queued UNMAP whose job finds the VM banned writes nothing, but it
 * still ends by freeing the VMAs it removed and dropping their BO
 * references: their PTEs are zapped (and the TLB flushed) first, so the
 * banned VM's kernels fault instead of reaching the freed memory.  They
 * used to stay valid (review finding).
 */
TEST(a_bind_job_on_a_banned_vm_leaves_nothing_mapped_that_it_frees)
{
	struct gvm_bind_op un = { .op = GVM_BIND_UNMAP, .addr = VA,
				  .range = 4 * K4 };
	struct gvm_fence *in, *done = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL },
	};
	struct gvm_bo *bo;
	struct ctx c;

	setup(&c, 0);
	bo = new_bo(&c, 4 * K4, GVM_MEM_VRAM, NULL);
	bind(&c, GVM_BIND_MAP, 0, VA, 4 * K4, bo, 0);
	gvm_bo_put(bo);				/* the VMA's is the last */
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &in));
	s[0].fence = in;
	s[1].out = &done;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &un, 1, s, 2));
	gvm__vm_ban(c.vm, -EIO);	/* as a failed LR rebind pass does */
	ASSERT_OK(gvm_fence_signal(in));
	ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
	ASSERT_FALSE(mapped(c.vm, VA));
	ASSERT_FALSE(mapped(c.vm, VA + 3 * K4));
	gvm_fence_put(done);
	gvm_fence_put(in);
	teardown(&c);
}

/* ---- queue destroy and waits that never end (review findings) ---------- */

/*
 * An exec queue's exec waits for a bind of the default queue, which waits
 * for a fence nobody signals.  Destroying the exec queue cancels the exec
 * (as one waiting for a wait sync of its own) instead of waiting for ever:
 * the bind's wait is not the queue's to abandon.
 */
TEST(destroying_a_queue_cancels_execs_behind_a_bind_that_waits)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
				  .range = 4 * K4 };
	struct gvm_fence *wf, *out = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE };
	struct gvm_sync o = { .type = GVM_SYNC_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .out = &out };
	struct gvm_kernel k;
	struct gvm_bo *bo;
	struct ctx c;

	setup(&c, 0);
	bo = new_bo(&c, 4 * K4, GVM_MEM_VRAM, NULL);
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &wf));
	s.fence = wf;
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, &s, 1));
	ASSERT_OK(gvm_kernel_fill(&k, VA, K4, 1));
	ASSERT_OK(gvm_exec(c.q, &k, &o, 1));
	gvm_queue_destroy(c.q);		/* hung before (the test's timeout) */
	ASSERT_EQ(gvm_fence_get_status(out), -ECANCELED);
	ASSERT_OK(gvm_queue_create(c.vm, GVM_ENGINE_COMPUTE, &c.q));
	gvm_fence_put(out);
	gvm_fence_put(wf);		/* never signalled */
	gvm_bo_put(bo);
	teardown(&c);			/* the bind takes effect */
}

/*
 * A wait sync nobody ever signals, its queue destroyed, then the last
 * reference to it put: nothing of it is left (the proxy used to stay on
 * the fence, and keep it, for ever: the harness counts the library's
 * heap).  An exec's, then a user bind queue's.
 */
TEST(an_abandoned_wait_sync_is_freed_with_its_last_reference)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
				  .range = 4 * K4 };
	struct gvm_fence *wf, *out = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
		  .out = &out },
	};
	struct gvm_queue *bq;
	struct gvm_kernel k;
	struct gvm_bo *bo;
	struct ctx c;

	setup(&c, 0);
	bo = new_bo(&c, 4 * K4, GVM_MEM_VRAM, NULL);
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &wf));
	s[0].fence = wf;
	ASSERT_OK(gvm_kernel_fill(&k, VA, K4, 1));
	ASSERT_OK(gvm_exec(c.q, &k, s, 2));
	gvm_queue_destroy(c.q);
	ASSERT_EQ(gvm_fence_get_status(out), -ECANCELED);
	gvm_fence_put(out);
	ASSERT_OK(gvm_queue_create(c.vm, GVM_ENGINE_BIND, &bq));
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(c.vm, bq, &op, 1, s, 1));
	gvm_queue_destroy(bq);
	gvm_fence_put(wf);		/* never signalled */
	ASSERT_OK(gvm_queue_create(c.vm, GVM_ENGINE_COMPUTE, &c.q));
	gvm_bo_put(bo);
	teardown(&c);
}
