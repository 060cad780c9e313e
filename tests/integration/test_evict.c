// SPDX-License-Identifier: MIT
/*
 * Eviction through the public API: VMs whose BOs together need 150% and
 * 200% of the device's VRAM take turns running kernels that check and
 * rewrite every one of their BOs; each exec brings its VM's BOs back into
 * VRAM, evicting the least recently used BOs of the others.  Nothing may be
 * lost, and the counters must show the evictions.
 */
#include <gvm/gvm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define VA 0x40000000ull
#define BOS_PER_VM 4

struct vmctx {
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_bo *bo[BOS_PER_VM];
	uint32_t pattern[BOS_PER_VM];
	struct gvm_bo *res;		/* checksums, system memory */
	uint64_t *sums;
};

static uint64_t expect_sum(uint32_t pattern)
{
	uint64_t w = ((uint64_t)pattern << 32) | pattern;

	return w * (M2 / 8);
}

static int run(struct gvm_queue *q, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	int err = gvm_exec(q, k, &s, 1);

	if (err)
		return err;
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	err = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return err < 0 ? err : 0;
}

static void vm_setup(struct gvm_device *dev, struct vmctx *c, int idx)
{
	struct gvm_bind_op ops[BOS_PER_VM + 1];

	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
	memset(ops, 0, sizeof(ops));
	for (int i = 0; i < BOS_PER_VM; i++) {
		/* odd VMs use external BOs, even ones VM-local BOs */
		ASSERT_OK(gvm_bo_create(dev, M2, GVM_MEM_VRAM,
					idx & 1 ? NULL : c->vm, &c->bo[i]));
		ops[i] = (struct gvm_bind_op){ .op = GVM_BIND_MAP,
					       .addr = VA + (uint64_t)i * M2,
					       .range = M2, .bo = c->bo[i] };
		c->pattern[i] = 0;
	}
	ASSERT_OK(gvm_bo_create(dev, K4, GVM_MEM_SYSTEM, c->vm, &c->res));
	ASSERT_OK(gvm_bo_map(c->res, (void **)&c->sums));
	ops[BOS_PER_VM] = (struct gvm_bind_op){ .op = GVM_BIND_MAP,
						.addr = VA - M2, .range = K4,
						.bo = c->res };
	ASSERT_OK(gvm_vm_bind(c->vm, NULL, ops, BOS_PER_VM + 1, NULL, 0));
}

static void vm_teardown(struct vmctx *c)
{
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	for (int i = 0; i < BOS_PER_VM; i++)
		gvm_bo_put(c->bo[i]);
	gvm_bo_put(c->res);
}

/* One turn: check every BO of the VM, then give each a new pattern. */
static void turn(struct vmctx *c, uint32_t round)
{
	struct gvm_kernel k;

	for (int i = 0; i < BOS_PER_VM; i++) {
		uint64_t va = VA + (uint64_t)i * M2;

		ASSERT_OK(gvm_kernel_checksum(&k, va, M2, VA - M2 + 8 * (uint64_t)i));
		ASSERT_OK(run(c->q, &k));
		ASSERT_EQ(c->sums[i], expect_sum(c->pattern[i]));
		c->pattern[i] = round * 16 + (uint32_t)i + 1;
		ASSERT_OK(gvm_kernel_fill(&k, va, M2, c->pattern[i]));
		ASSERT_OK(run(c->q, &k));
	}
}

static void round_robin(int nr_vms)
{
	struct gvm_sim_config cfg = { .vram_size = 16ull << 20 };
	struct vmctx c[4];
	struct gvm_device *dev;
	struct gvm_vm_stats st;
	uint64_t evictions = 0, to_sys = 0, to_vram = 0;
	int rounds = 3 * nr_vms;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	for (int v = 0; v < nr_vms; v++)
		vm_setup(dev, &c[v], v);
	for (int r = 0; r < rounds; r++)
		turn(&c[r % nr_vms], (uint32_t)r);
	for (int v = 0; v < nr_vms; v++) {
		ASSERT_OK(gvm_vm_stats(c[v].vm, &st));
		ASSERT_FALSE(st.banned);
		evictions += st.evictions;
		to_sys += st.bytes_to_system;
		to_vram += st.bytes_to_vram;
	}
	/* More than VRAM holds was used, so BOs went out and came back. */
	ASSERT_GT(evictions, 0);
	ASSERT_GE(to_sys, M2);
	ASSERT_GE(to_vram, M2);
	/* Everything still correct from the CPU's side. */
	for (int v = 0; v < nr_vms; v++) {
		for (int i = 0; i < BOS_PER_VM; i++) {
			uint32_t *p;

			ASSERT_OK(gvm_bo_map(c[v].bo[i], (void **)&p));
			ASSERT_EQ(p[0], c[v].pattern[i]);
			ASSERT_EQ(p[M2 / 4 - 1], c[v].pattern[i]);
		}
		vm_teardown(&c[v]);
	}
	gvm_device_put(dev);
}

TEST(round_robin_150_percent)
{
	round_robin(3);
}

TEST(round_robin_200_percent)
{
	round_robin(4);
}

/* When nothing can be evicted, a VRAM-only BO cannot be created. */
TEST(exhaustion_is_graceful)
{
	struct gvm_sim_config cfg = { .vram_size = 4ull << 20 };
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_bo *a, *b;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &vm));
	ASSERT_EQ(gvm_bo_create(dev, 8ull << 20, GVM_MEM_VRAM, NULL, &a),
		  -ENOSPC);
	/* Idle BOs are evicted to make room for a new one. */
	ASSERT_OK(gvm_bo_create(dev, 3ull << 20, GVM_MEM_VRAM, NULL, &a));
	ASSERT_OK(gvm_bo_create(dev, 3ull << 20, GVM_MEM_VRAM, NULL, &b));
	ASSERT_EQ(gvm_bo_region(a), GVM_MEM_SYSTEM);
	ASSERT_EQ(gvm_bo_region(b), GVM_MEM_VRAM);
	gvm_bo_put(a);
	gvm_bo_put(b);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
}

/*
 * Page tables come from VRAM too: 112 x 256 KiB VRAM-only BOs over 4 VMs
 * fill 16 MiB with idle BOs, and every bind still gets its tables by
 * evicting idle BOs (issue 11, item 2.3: it failed with -ENOSPC).  The
 * evicted BOs come back at their VM's next exec.
 */
TEST(page_tables_evict_idle_bos)
{
	struct gvm_sim_config cfg = { .vram_size = 16ull << 20 };
	struct gvm_bo *bo[4][28];
	struct gvm_queue *q[4];
	struct gvm_device *dev;
	struct gvm_vm *vm[4];
	struct gvm_kernel k;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	for (int v = 0; v < 4; v++) {
		ASSERT_OK(gvm_vm_create(dev, NULL, 0, &vm[v]));
		ASSERT_OK(gvm_queue_create(vm[v], GVM_ENGINE_COMPUTE, &q[v]));
	}
	for (int v = 0; v < 4; v++) {
		for (int i = 0; i < 28; i++) {
			/* Far apart: each BO needs tables of its own. */
			struct gvm_bind_op op = {
				.op = GVM_BIND_MAP, .range = 256ull << 10,
				.addr = VA + (uint64_t)i * (1ull << 30),
			};

			ASSERT_OK(gvm_bo_create(dev, 256ull << 10,
						GVM_MEM_VRAM, NULL, &bo[v][i]));
			op.bo = bo[v][i];
			ASSERT_OK(gvm_vm_bind(vm[v], NULL, &op, 1, NULL, 0));
		}
	}
	/* Every VM runs: its BOs come back and are written. */
	for (int v = 0; v < 4; v++) {
		ASSERT_OK(gvm_kernel_fill(&k, VA, 256ull << 10, 0x1234 + v));
		ASSERT_OK(run(q[v], &k));
	}
	for (int v = 0; v < 4; v++) {
		uint32_t *p;

		ASSERT_OK(gvm_bo_map(bo[v][0], (void **)&p));
		ASSERT_EQ(p[0], 0x1234 + v);
		gvm_queue_destroy(q[v]);
		ASSERT_OK(gvm_vm_destroy(vm[v]));
		for (int i = 0; i < 28; i++)
			gvm_bo_put(bo[v][i]);
	}
	gvm_device_put(dev);
}
