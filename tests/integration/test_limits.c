// SPDX-License-Identifier: MIT
/*
 * Process-wide limits (gvm_limits_set, src/vm/limits.c): VMs, VM-local
 * BOs and mappings per VM, page-table memory per VM.  Each limit refuses
 * exactly the call that would exceed it, with the documented errno,
 * changing nothing; what is in use goes on working; and a VM held to its
 * page-table share leaves the device to the others (issue 11, item 3).
 */
#include <errno.h>

#include <gvm/gvm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"

#define K4 4096ull
#define G1 (1ull << 30)

static struct gvm_vm_stats stats(struct gvm_vm *vm)
{
	struct gvm_vm_stats st;

	ASSERT_OK(gvm_vm_stats(vm, &st));
	return st;
}

static void set_limits(uint32_t vms, uint32_t bos, uint64_t maps,
		       uint64_t pt_bytes)
{
	struct gvm_limits l = { .max_vms = vms, .max_bos_per_vm = bos,
				.max_mappings_per_vm = maps,
				.max_pt_bytes_per_vm = pt_bytes };

	ASSERT_OK(gvm_limits_set(&l));
}

static int map(struct gvm_vm *vm, struct gvm_bo *bo, uint64_t addr,
	       uint64_t range)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = addr,
				  .range = range, .bo = bo };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

static int unmap(struct gvm_vm *vm, uint64_t addr, uint64_t range)
{
	struct gvm_bind_op op = { .op = GVM_BIND_UNMAP, .addr = addr,
				  .range = range };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

/* The GPU stores @v at @va and the job succeeds. */
static void store(struct gvm_vm *vm, uint64_t va, uint64_t v)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .out = &f };
	struct gvm_queue *q;
	struct gvm_kernel k;

	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_kernel_store_dword(&k, va, v, 64));
	ASSERT_OK(gvm_exec(q, &k, &s, 1));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
	gvm_queue_destroy(q);
}

TEST(bad_limits_are_refused)
{
	struct gvm_limits l = { .max_pt_bytes_per_vm = 100 };

	ASSERT_EQ(gvm_limits_set(NULL), -EINVAL);
	ASSERT_EQ(gvm_limits_get(NULL), -EINVAL);
	ASSERT_EQ(gvm_limits_set(&l), -EINVAL);
	ASSERT_OK(gvm_limits_get(&l));
	ASSERT_EQ(l.max_pt_bytes_per_vm, 0);	/* unchanged */
}

TEST(vms_beyond_the_limit_get_emfile)
{
	struct gvm_device *dev;
	struct gvm_vm *a, *b, *c;
	struct gvm_limits l;

	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	set_limits(2, 0, 0, 0);
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &a));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &b));
	ASSERT_EQ(gvm_vm_create(dev, NULL, 0, &c), -EMFILE);
	ASSERT_OK(gvm_limits_get(&l));
	ASSERT_EQ(l.nr_vms, 2);
	ASSERT_OK(gvm_vm_destroy(a));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &c));	/* room again */
	set_limits(1, 0, 0, 0);		/* below what is in use */
	ASSERT_EQ(gvm_vm_create(dev, NULL, 0, &a), -EMFILE);
	set_limits(0, 0, 0, 0);
	ASSERT_OK(gvm_vm_destroy(b));
	ASSERT_OK(gvm_vm_destroy(c));
	ASSERT_OK(gvm_limits_get(&l));
	ASSERT_EQ(l.nr_vms, 0);
	gvm_device_put(dev);
}

TEST(vm_local_bos_beyond_the_limit_get_emfile)
{
	struct gvm_bo *bo[4], *ext;
	struct gvm_device *dev;
	struct gvm_vm *vm;

	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &vm));
	set_limits(0, 3, 0, 0);
	for (int i = 0; i < 3; i++)
		ASSERT_OK(gvm_bo_create(dev, K4, GVM_MEM_SYSTEM, vm, &bo[i]));
	ASSERT_EQ(gvm_bo_create(dev, K4, GVM_MEM_SYSTEM, vm, &bo[3]), -EMFILE);
	ASSERT_EQ(stats(vm).local_bos, 3);
	/* external BOs are not the VM's */
	ASSERT_OK(gvm_bo_create(dev, K4, GVM_MEM_SYSTEM, NULL, &ext));
	gvm_bo_put(bo[0]);
	ASSERT_EQ(stats(vm).local_bos, 2);
	ASSERT_OK(gvm_bo_create(dev, K4, GVM_MEM_SYSTEM, vm, &bo[0]));
	set_limits(0, 0, 0, 0);
	for (int i = 0; i < 3; i++)
		gvm_bo_put(bo[i]);
	gvm_bo_put(ext);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
}

TEST(mappings_beyond_the_limit_get_enospc_and_change_nothing)
{
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_bo *bo;

	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &vm));
	ASSERT_OK(gvm_bo_create(dev, 4 * K4, GVM_MEM_SYSTEM, NULL, &bo));
	set_limits(0, 0, 4, 0);
	for (uint64_t i = 0; i < 4; i++)
		ASSERT_OK(map(vm, bo, G1 + i * 16 * K4, K4));
	ASSERT_EQ(map(vm, bo, G1 + 4 * 16 * K4, K4), -ENOSPC);
	ASSERT_EQ(stats(vm).vmas, 4);
	/* replacing a mapping keeps the count: fine */
	ASSERT_OK(map(vm, bo, G1, K4));
	/* splitting one in two would make five: refused, as it was */
	ASSERT_OK(unmap(vm, G1, K4));
	ASSERT_OK(map(vm, bo, G1, 3 * K4));
	ASSERT_EQ(unmap(vm, G1 + K4, K4), -ENOSPC);
	ASSERT_EQ(stats(vm).vmas, 4);
	store(vm, G1 + K4, 7);		/* still mapped, still works */
	/* several ops in one array: judged on the result */
	{
		struct gvm_bind_op ops[2] = {
			{ .op = GVM_BIND_UNMAP, .addr = G1, .range = 3 * K4 },
			{ .op = GVM_BIND_MAP, .addr = 2 * G1, .range = K4,
			  .bo = bo },
		};

		ASSERT_OK(gvm_vm_bind(vm, NULL, ops, 2, NULL, 0));
	}
	ASSERT_EQ(stats(vm).vmas, 4);
	set_limits(0, 0, 0, 0);
	gvm_bo_put(bo);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
}

/*
 * One VM mapping 4 KiB every GiB needs two new page-table pages each
 * time.  Held to 16 pages, its bind is refused with -ENOSPC (nothing
 * changed, what it has works) and the device's VRAM stays for the others.
 */
TEST(page_tables_beyond_the_limit_get_enospc)
{
	struct gvm_sim_config cfg = { .vram_size = 1ull << 20 };
	struct gvm_device *dev;
	struct gvm_vm *greedy, *other;
	struct gvm_bo *bo, *vbo;
	uint64_t i, vmas;
	int err = 0;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	set_limits(0, 0, 0, 16 * K4);
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &greedy));
	set_limits(0, 0, 0, 0);
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &other));
	ASSERT_OK(gvm_bo_create(dev, K4, GVM_MEM_SYSTEM, NULL, &bo));
	for (i = 0; i < 64 && !err; i++)
		err = map(greedy, bo, (i + 1) * G1, K4);
	ASSERT_EQ(err, -ENOSPC);
	ASSERT_GE(i, 4);		/* some fit */
	vmas = stats(greedy).vmas;
	ASSERT_EQ(vmas, i - 1);
	ASSERT_LE(stats(greedy).pt_pages, 16);
	store(greedy, G1, 5);		/* what it has works */
	/* the other VM still gets VRAM: half of it, here */
	ASSERT_OK(gvm_bo_create(dev, 128 * K4, GVM_MEM_VRAM, other, &vbo));
	ASSERT_OK(map(other, vbo, G1, 128 * K4));
	store(other, G1, 6);
	gvm_bo_put(vbo);
	gvm_bo_put(bo);
	ASSERT_OK(gvm_vm_destroy(greedy));
	ASSERT_OK(gvm_vm_destroy(other));
	gvm_device_put(dev);
}
