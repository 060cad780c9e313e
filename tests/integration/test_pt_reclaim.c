// SPDX-License-Identifier: MIT
/*
 * Page-table reclaim (src/vm/pt_reclaim.c, issue 11 item 3): when VRAM is
 * needed and no idle BO is left to evict, an idle VM's page tables are
 * cleared (all but the root) and rebuilt by its next exec (or, in fault
 * mode, its next faults), with the right data.  A busy VM, or one whose
 * reservation a bind holds, is left alone; a rebuild that fails changes
 * nothing and the VM stays usable.
 *
 * The scenario, scaled down: VRAM of 1 MiB (256 pages); VM A maps 4 KiB
 * at every GiB (two table pages each), so its tables fill ~80% of VRAM;
 * VM B then creates a VRAM-only BO that only fits if A's tables go.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/gvm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "core/inject.h"
#include "harness.h"
#include "vm/bind.h"
#include "vm/dev.h"
#include "vm/vm.h"

#define K4 4096ull
#define G1 (1ull << 30)
#define NMAPS 96			/* A's 4 KiB mappings, one per GiB */
#define UP_VA (200 * G1)		/* A's userptr mapping */
#define UP_SIZE (16 * K4)
#define NULL_VA (210 * G1)		/* A's sparse mapping */
#define B_VA G1
#define B_SIZE (128 * K4)		/* half of VRAM */

static struct gvm_vm_stats stats(struct gvm_vm *vm)
{
	struct gvm_vm_stats st;

	ASSERT_OK(gvm_vm_stats(vm, &st));
	return st;
}

static int map(struct gvm_vm *vm, struct gvm_bo *bo, uint64_t off,
	       uint64_t addr, uint64_t range)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = addr,
				  .range = range, .bo = bo,
				  .bo_offset = off };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

static uint64_t map_va(int i)
{
	return (uint64_t)(i + 1) * G1;
}

/* VM A: NMAPS pages of @sbo at map_va(i), a userptr, a NULL mapping. */
struct vm_a {
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_bo *sbo;
	uint64_t *sys;			/* sbo's CPU view */
	uint64_t *up;			/* the userptr's memory */
};

static void a_setup(struct gvm_device *dev, struct vm_a *a, uint32_t flags)
{
	struct gvm_bind_op op;
	struct gvm_mm *mm;

	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_OK(gvm_vm_create(dev, mm, flags, &a->vm));
	gvm_mm_put(mm);
	ASSERT_OK(gvm_queue_create(a->vm, GVM_ENGINE_COMPUTE, &a->q));
	ASSERT_OK(gvm_bo_create(dev, NMAPS * K4, GVM_MEM_SYSTEM, NULL,
				&a->sbo));
	ASSERT_OK(gvm_bo_map(a->sbo, (void **)&a->sys));
	for (int i = 0; i < NMAPS; i++) {
		memset(&op, 0, sizeof(op));
		op.op = GVM_BIND_MAP;
		op.addr = map_va(i);
		op.range = K4;
		op.bo = a->sbo;
		op.bo_offset = i * K4;
		op.flags = (flags & GVM_VM_FAULT_MODE) ? GVM_BIND_IMMEDIATE : 0;
		ASSERT_OK(gvm_vm_bind(a->vm, NULL, &op, 1, NULL, 0));
	}
	a->up = aligned_alloc(K4, UP_SIZE);
	ASSERT_TRUE(a->up != NULL);
	memset(a->up, 0, UP_SIZE);
	memset(&op, 0, sizeof(op));
	op.op = GVM_BIND_MAP_USERPTR;
	op.addr = UP_VA;
	op.range = UP_SIZE;
	op.userptr = (uint64_t)(uintptr_t)a->up;
	op.flags = (flags & GVM_VM_FAULT_MODE) ? GVM_BIND_IMMEDIATE : 0;
	ASSERT_OK(gvm_vm_bind(a->vm, NULL, &op, 1, NULL, 0));
	memset(&op, 0, sizeof(op));
	op.op = GVM_BIND_MAP;
	op.addr = NULL_VA;
	op.range = 2ull << 20;
	op.flags = GVM_BIND_NULL |
		   ((flags & GVM_VM_FAULT_MODE) ? GVM_BIND_IMMEDIATE : 0);
	ASSERT_OK(gvm_vm_bind(a->vm, NULL, &op, 1, NULL, 0));
}

static void a_teardown(struct vm_a *a)
{
	gvm_queue_destroy(a->q);
	gvm_bo_put(a->sbo);
	ASSERT_OK(gvm_vm_destroy(a->vm));
	free(a->up);
}

/* Stores @v at @va on @q and waits (dma-fence VMs). */
static void store(struct gvm_queue *q, uint64_t va, uint64_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_store_dword(&k, va, v, 64));
	ASSERT_OK(gvm_test_run(q, &k));
}

/*
 * A's GPU writes reach the BO pages and the userptr through every kind
 * of mapping; a store to the NULL mapping is dropped.
 */
static void a_check(struct vm_a *a, uint64_t tag)
{
	static const int idx[] = { 0, 1, NMAPS / 2, NMAPS - 1 };

	for (unsigned int i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
		store(a->q, map_va(idx[i]) + 8, tag + idx[i]);
	store(a->q, UP_VA + 3 * K4, tag);
	store(a->q, NULL_VA, tag);
	for (unsigned int i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
		ASSERT_EQ(a->sys[idx[i] * K4 / 8 + 1], tag + idx[i]);
	ASSERT_EQ(a->up[3 * K4 / 8], tag);
}

static struct gvm_device *small_device(void)
{
	struct gvm_sim_config cfg = { .vram_size = 1ull << 20 };
	struct gvm_device *dev;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	return dev;
}

/*
 * The scenario: B's VRAM-only BO is created by reclaiming idle
 * A's tables; A's next exec rebuilds them (evicting B's idle BO for the
 * room) and every mapping reads and writes the right memory; B's next
 * exec brings its BO back by reclaiming A again.
 */
TEST(idle_vms_tables_make_room_and_come_back)
{
	struct gvm_device *dev = small_device();
	struct gvm_vm_stats sa, sb;
	struct gvm_queue *qb;
	struct gvm_bo *vbo;
	struct gvm_vm *b;
	uint64_t *vp, before;
	struct vm_a a;

	a_setup(dev, &a, 0);
	a_check(&a, 100);
	before = stats(a.vm).pt_pages;
	ASSERT_GE(before, 2 * NMAPS);
	printf("A's page tables: %llu pages (%llu KiB of 1024 KiB VRAM)\n",
	       (unsigned long long)before, (unsigned long long)before * 4);

	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &b));
	ASSERT_OK(gvm_queue_create(b, GVM_ENGINE_COMPUTE, &qb));
	ASSERT_OK(gvm_bo_create(dev, B_SIZE, GVM_MEM_VRAM, b, &vbo));
	sa = stats(a.vm);
	ASSERT_EQ(sa.pt_pages, 1);		/* the root only */
	ASSERT_EQ(sa.pt_reclaims, 1);
	ASSERT_EQ(sa.pt_bytes_reclaimed, (before - 1) * K4);
	ASSERT_EQ(sa.dev_pt_reclaims, 1);
	ASSERT_EQ(sa.vmas, NMAPS + 2);		/* the VA state is untouched */
	printf("after B's BO: A %llu page(s), reclaims %llu, %llu bytes\n",
	       (unsigned long long)sa.pt_pages,
	       (unsigned long long)sa.pt_reclaims,
	       (unsigned long long)sa.pt_bytes_reclaimed);
	ASSERT_OK(map(b, vbo, 0, B_VA, B_SIZE));
	store(qb, B_VA + 16, 7);

	/* A's exec rebuilds: B's BO, idle, goes to system memory. */
	a_check(&a, 200);
	sa = stats(a.vm);
	ASSERT_EQ(sa.pt_rebuilds, 1);
	ASSERT_EQ(sa.pt_pages, before);
	ASSERT_FALSE(sa.banned);
	/* The first round's values were not lost (sys is the BO itself). */
	ASSERT_EQ(a.sys[(NMAPS / 2) * K4 / 8 + 1], 200 + NMAPS / 2);
	printf("after A's exec: A %llu pages, rebuilds %llu\n",
	       (unsigned long long)sa.pt_pages,
	       (unsigned long long)sa.pt_rebuilds);

	/* B's exec brings its BO back: A is idle again and gives way. */
	store(qb, B_VA + 24, 8);
	ASSERT_OK(gvm_bo_map(vbo, (void **)&vp));
	ASSERT_EQ(vp[2], 7);
	ASSERT_EQ(vp[3], 8);
	sa = stats(a.vm);
	sb = stats(b);
	ASSERT_EQ(sa.pt_reclaims, 2);
	ASSERT_GE(sb.evictions, 1);
	ASSERT_EQ(sb.pt_reclaims, 0);
	a_check(&a, 300);
	ASSERT_EQ(stats(a.vm).pt_rebuilds, 2);

	gvm_bo_put(vbo);
	gvm_queue_destroy(qb);
	ASSERT_OK(gvm_vm_destroy(b));
	a_teardown(&a);
	gvm_device_put(dev);
}

/*
 * B maps 4 KiB at new GiBs (two table pages each) until a bind fails:
 * its page-table allocations evict and reclaim what they may, never
 * waiting.  Returns the error of the bind that failed (or 0 if @max
 * mappings fitted); *@next: the next GiB index to use.
 */
static int b_fill(struct gvm_vm *b, struct gvm_bo *bo, int *next, int max)
{
	int err = 0;

	for (int i = 0; i < max && !err; i++) {
		err = map(b, bo, 0, (uint64_t)(*next + 1) * G1, K4);
		if (!err)
			(*next)++;
	}
	return err;
}

/* A kernel that holds its engine until the test opens the gate. */
static uint32_t gate_entered, gate_open;

static void gate_fn(struct gvm_lane *l, const void *args)
{
	uint64_t va;

	memcpy(&va, args, sizeof(va));
	__atomic_store_n(&gate_entered, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&gate_open, __ATOMIC_ACQUIRE))
		sched_yield();
	gvm_lane_store(l, va, 0x9a7e, 8);
}

/*
 * A VM with a kernel running is not reclaimed: B's binds that need page
 * tables fail with -ENOSPC instead (page-table allocations never wait);
 * once the kernel ended, A gives way and B's bind succeeds.
 */
TEST(busy_vm_is_not_reclaimed)
{
	struct gvm_device *dev = small_device();
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .out = &f };
	struct gvm_bo *bbo;
	uint64_t before, va;
	struct gvm_kernel k;
	struct gvm_vm *b;
	struct vm_a a;
	int next = 0;

	a_setup(dev, &a, 0);
	a_check(&a, 1);
	before = stats(a.vm).pt_pages;
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &b));
	ASSERT_OK(gvm_bo_create(dev, K4, GVM_MEM_SYSTEM, NULL, &bbo));

	gate_entered = gate_open = 0;
	va = map_va(3) + 64;
	ASSERT_OK(gvm_kernel_init(&k, "gate", gate_fn, 1, &va, sizeof(va)));
	ASSERT_OK(gvm_exec(a.q, &k, &s, 1));
	gvm_test_wait_flag(&gate_entered);
	ASSERT_EQ(b_fill(b, bbo, &next, 128), -ENOSPC);
	ASSERT_EQ(stats(a.vm).pt_reclaims, 0);
	ASSERT_EQ(stats(a.vm).pt_pages, before);

	__atomic_store_n(&gate_open, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
	ASSERT_EQ(a.sys[3 * K4 / 8 + 8], 0x9a7e);
	/* Idle now: B's next bind gets the room of A's tables. */
	ASSERT_OK(b_fill(b, bbo, &next, 1));
	ASSERT_EQ(stats(a.vm).pt_reclaims, 1);
	a_check(&a, 2);

	gvm_bo_put(bbo);
	ASSERT_OK(gvm_vm_destroy(b));
	a_teardown(&a);
	gvm_device_put(dev);
}

/* ---- a reclaim racing a bind on the same VM ---------------------------- */

static struct {
	struct gvm_vm *vm;		/* the VM whose bind is held */
	uint32_t in_hook, release;
} hold;

static void hold_bind(struct gvm_vm *vm)
{
	if (vm != hold.vm)
		return;
	__atomic_store_n(&hold.in_hook, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&hold.release, __ATOMIC_ACQUIRE))
		sched_yield();
}

struct bind_arg {
	struct vm_a *a;
	uint64_t va;
	int err;
};

static void *bind_thread(void *p)
{
	struct bind_arg *ba = p;

	ba->err = map(ba->a->vm, ba->a->sbo, 5 * K4, ba->va, K4);
	return NULL;
}

/*
 * A bind of A holds A's reservation (stopped before its commit by a
 * hook): B's page-table allocations cannot reclaim A (the trylock
 * fails, nothing is waited for) and B's bind fails with -ENOSPC.  Once the bind is done,
 * A is reclaimed, and its next exec rebuilds the new mapping too.
 */
TEST(bind_holding_the_vm_keeps_its_tables)
{
	struct gvm_device *dev = small_device();
	struct gvm_bo *bbo;
	struct bind_arg ba;
	struct gvm_vm *b;
	pthread_t t;
	struct vm_a a;
	int next = 0;

	a_setup(dev, &a, 0);
	a_check(&a, 1);
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &b));
	ASSERT_OK(gvm_bo_create(dev, K4, GVM_MEM_SYSTEM, NULL, &bbo));
	hold.vm = a.vm;
	hold.in_hook = hold.release = 0;
	gvm__bind_before_commit = hold_bind;
	ba.a = &a;
	ba.va = 300 * G1;
	ba.err = 1;
	ASSERT_OK(pthread_create(&t, NULL, bind_thread, &ba));
	gvm_test_wait_flag(&hold.in_hook);
	ASSERT_EQ(b_fill(b, bbo, &next, 128), -ENOSPC);
	/* (A's own stats wait for its vm->lock, which the bind holds.) */
	ASSERT_EQ(stats(b).dev_pt_reclaims, 0);
	__atomic_store_n(&hold.release, 1, __ATOMIC_RELEASE);
	ASSERT_OK(pthread_join(t, NULL));
	gvm__bind_before_commit = NULL;
	ASSERT_OK(ba.err);

	ASSERT_EQ(stats(a.vm).pt_reclaims, 0);
	ASSERT_OK(b_fill(b, bbo, &next, 1));	/* A is idle now */
	ASSERT_EQ(stats(a.vm).pt_reclaims, 1);
	store(a.q, 300 * G1 + 16, 55);		/* the held bind's mapping */
	ASSERT_EQ(a.sys[5 * K4 / 8 + 2], 55);
	a_check(&a, 2);
	ASSERT_EQ(stats(a.vm).pt_rebuilds, 1);

	gvm_bo_put(bbo);
	ASSERT_OK(gvm_vm_destroy(b));
	a_teardown(&a);
	gvm_device_put(dev);
}

/* The reclaimer's hook starts a bind of the VM it is clearing. */
static struct bind_arg *during_arg;
static pthread_t during_thread;
static uint32_t during_started;

static void bind_during_reclaim(struct gvm_vm *vm)
{
	if (!during_arg || vm != during_arg->a->vm || during_started)
		return;
	during_started = 1;
	ASSERT_OK(pthread_create(&during_thread, NULL, bind_thread,
				 during_arg));
	/* Give it time to reach the reservation (either order is right). */
	sched_yield();
}

/*
 * A bind of A that comes while A is being reclaimed waits for the
 * reservation (or runs first and the trylock fails): either way its
 * mapping and the others work after A's next exec.
 */
TEST(bind_arriving_during_a_reclaim)
{
	struct gvm_device *dev = small_device();
	struct bind_arg ba;
	struct gvm_bo *vbo;
	struct gvm_vm *b;
	struct vm_a a;

	a_setup(dev, &a, 0);
	a_check(&a, 1);
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &b));
	ba.a = &a;
	ba.va = 301 * G1;
	ba.err = 1;
	during_arg = &ba;
	during_started = 0;
	gvm__pt_reclaim_hook = bind_during_reclaim;
	ASSERT_OK(gvm_bo_create(dev, B_SIZE, GVM_MEM_VRAM, b, &vbo));
	gvm__pt_reclaim_hook = NULL;
	ASSERT_EQ(during_started, 1);
	ASSERT_OK(pthread_join(during_thread, NULL));
	during_arg = NULL;
	ASSERT_OK(ba.err);
	ASSERT_EQ(stats(a.vm).pt_reclaims, 1);
	store(a.q, 301 * G1 + 16, 56);
	ASSERT_EQ(a.sys[5 * K4 / 8 + 2], 56);
	a_check(&a, 2);

	gvm_bo_put(vbo);
	ASSERT_OK(gvm_vm_destroy(b));
	a_teardown(&a);
	gvm_device_put(dev);
}

/*
 * Every allocation of the exec that rebuilds a reclaimed VM fails in
 * turn: the exec fails with -ENOMEM, the VM is not banned and stays
 * reclaimed, and the exec after that rebuilds it with the right data.
 */
TEST(rebuild_fails_cleanly_at_each_allocation)
{
	struct gvm_device *dev = small_device();
	struct gvm_kernel k;
	struct gvm_bo *vbo;
	struct gvm_vm *b;
	struct vm_a a;
	long n;
	int err;

	a_setup(dev, &a, 0);
	a_check(&a, 1);
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &b));
	ASSERT_OK(gvm_bo_create(dev, B_SIZE, GVM_MEM_VRAM, b, &vbo));
	ASSERT_EQ(stats(a.vm).pt_reclaims, 1);
	ASSERT_OK(gvm_kernel_store_dword(&k, map_va(7) + 32, 77, 64));
	for (n = 1;; n++) {
		bool fired;

		gvm__inject_arm(GVM_INJECT_ALLOC, n, 0);
		err = gvm_test_run(a.q, &k);
		fired = !gvm__inject_disarm(GVM_INJECT_ALLOC);
		if (!fired) {
			ASSERT_OK(err);
			break;
		}
		ASSERT_FALSE(stats(a.vm).banned);
		if (!err)
			break;		/* failed after the exec: fine */
		ASSERT_EQ(err, -ENOMEM);
		ASSERT_EQ(stats(a.vm).pt_rebuilds, 0);
	}
	printf("the rebuilding exec failed cleanly at %ld allocations\n",
	       n - 1);
	ASSERT_GT(n, 3);
	ASSERT_EQ(stats(a.vm).pt_rebuilds, 1);
	ASSERT_EQ(a.sys[7 * K4 / 8 + 4], 77);
	a_check(&a, 2);

	gvm_bo_put(vbo);
	ASSERT_OK(gvm_vm_destroy(b));
	a_teardown(&a);
	gvm_device_put(dev);
}

/* ---- fault mode -------------------------------------------------------- */

/* Runs @k on a fault-mode VM's queue to its end (a user fence). */
static void run_lr(struct gvm_queue *q, const struct gvm_kernel *k)
{
	static uint64_t ufence;
	uint64_t want = __atomic_load_n(&ufence, __ATOMIC_RELAXED) + 1;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL,
			      .addr = &ufence,
			      .value = want };

	ASSERT_OK(gvm_exec(q, k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&ufence, want, GVM_TIMEOUT_INFINITE));
	ASSERT_OK(gvm_queue_error(q));
}

/*
 * A fault-mode VM's tables are reclaimed while it is idle and come back
 * by its GPU faults, not by a rebuild: every mapping kind works again.
 */
TEST(fault_mode_vm_rebinds_on_fault)
{
	struct gvm_device *dev = small_device();
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	struct gvm_bo *vbo;
	struct gvm_vm *b;
	uint64_t faults;
	struct vm_a a;

	a_setup(dev, &a, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE);
	ASSERT_OK(gvm_kernel_store_dword(&k, map_va(9) + 8, 9, 64));
	run_lr(a.q, &k);
	ASSERT_EQ(a.sys[9 * K4 / 8 + 1], 9);
	faults = stats(a.vm).faults_serviced;
	ASSERT_EQ(faults, 0);			/* IMMEDIATE: bound */

	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &b));
	ASSERT_OK(gvm_bo_create(dev, B_SIZE, GVM_MEM_VRAM, b, &vbo));
	st = stats(a.vm);
	ASSERT_EQ(st.pt_reclaims, 1);
	ASSERT_EQ(st.pt_pages, 1);

	ASSERT_OK(gvm_kernel_store_dword(&k, map_va(9) + 16, 10, 64));
	run_lr(a.q, &k);
	ASSERT_OK(gvm_kernel_store_dword(&k, UP_VA + 8, 11, 64));
	run_lr(a.q, &k);
	ASSERT_OK(gvm_kernel_store_dword(&k, NULL_VA + 8, 12, 64));
	run_lr(a.q, &k);
	st = stats(a.vm);
	ASSERT_EQ(a.sys[9 * K4 / 8 + 2], 10);
	ASSERT_EQ(a.up[1], 11);
	ASSERT_EQ(st.faults_serviced, 3);	/* one per mapping */
	ASSERT_EQ(st.pt_rebuilds, 0);
	ASSERT_FALSE(st.banned);

	gvm_bo_put(vbo);
	ASSERT_OK(gvm_vm_destroy(b));
	a_teardown(&a);
	gvm_device_put(dev);
}

/*
 * An LR (preempt-fence) VM whose kernels ended is idle although its
 * queue's preempt fence sits in its reservation: it is reclaimed, and its
 * next exec rebuilds every mapping.
 */
TEST(lr_vm_is_reclaimed_between_kernels)
{
	struct gvm_device *dev = small_device();
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	struct gvm_bo *vbo;
	struct gvm_vm *b;
	uint64_t before;
	struct vm_a a;

	a_setup(dev, &a, GVM_VM_LR_MODE);
	ASSERT_OK(gvm_kernel_store_dword(&k, map_va(11) + 8, 21, 64));
	run_lr(a.q, &k);
	ASSERT_EQ(a.sys[11 * K4 / 8 + 1], 21);
	before = stats(a.vm).pt_pages;

	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &b));
	ASSERT_OK(gvm_bo_create(dev, B_SIZE, GVM_MEM_VRAM, b, &vbo));
	st = stats(a.vm);
	ASSERT_EQ(st.pt_reclaims, 1);
	ASSERT_EQ(st.pt_pages, 1);

	ASSERT_OK(gvm_kernel_store_dword(&k, map_va(NMAPS - 1) + 8, 22, 64));
	run_lr(a.q, &k);
	ASSERT_OK(gvm_kernel_store_dword(&k, UP_VA + 16, 23, 64));
	run_lr(a.q, &k);
	st = stats(a.vm);
	ASSERT_EQ(st.pt_rebuilds, 1);
	ASSERT_EQ(st.pt_pages, before);
	ASSERT_EQ(a.sys[(NMAPS - 1) * K4 / 8 + 1], 22);
	ASSERT_EQ(a.up[2], 23);
	ASSERT_FALSE(st.banned);

	gvm_bo_put(vbo);
	ASSERT_OK(gvm_vm_destroy(b));
	a_teardown(&a);
	gvm_device_put(dev);
}

/*
 * The spare tables a VM keeps for its queued binds' reserves (pt.c
 * SPARES) give way to any VRAM allocation before eviction: after a burst
 * of queued binds, a VRAM-only BO the size of all VRAM not in tables or
 * BOs is created.
 */
TEST(spare_tables_give_way_to_a_bo)
{
	struct gvm_sim_config cfg = { .vram_size = 2ull << 20 };
	struct gvm_fence *gate, *prev;
	struct gvm_device *dev;
	struct gvm_queue *q;
	struct gvm_bo *sbo, *vbo;
	struct gvm_vm *vm;
	uint64_t spares, room;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q));
	ASSERT_OK(gvm_bo_create(dev, 2 * K4, GVM_MEM_SYSTEM, NULL, &sbo));
	ASSERT_OK(map(vm, sbo, 0, G1, K4));
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &gate));
	prev = gvm_fence_get(gate);
	for (int k = 0; k < 16; k++) {
		struct gvm_bind_op op = { .op = k % 2 ? GVM_BIND_UNMAP
						      : GVM_BIND_MAP,
					  .addr = G1 + K4, .range = K4,
					  .bo = k % 2 ? NULL : sbo,
					  .bo_offset = k % 2 ? 0 : K4 };
		struct gvm_fence *out = NULL;
		struct gvm_sync s[2] = {
			{ .type = GVM_SYNC_FENCE, .fence = prev },
			{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			  .out = &out },
		};

		ASSERT_OK(gvm_vm_bind(vm, q, &op, 1, s, 2));
		gvm_fence_put(prev);
		prev = out;
	}
	gvm_fence_signal(gate);
	ASSERT_EQ(gvm_fence_wait(prev, GVM_TIMEOUT_INFINITE), 0);
	gvm_fence_put(prev);
	gvm_fence_put(gate);
	gvm_queue_destroy(q);		/* its jobs are freed: no promise */

	ASSERT_EQ(vm->pt.spares_promised, 0);
	spares = vm->pt.nr_spares;
	ASSERT_EQ(spares, 16 * 3);	/* kept: no job took any */
	room = dev->vram.free_bytes + spares * K4;
	ASSERT_OK(gvm_bo_create(dev, room, GVM_MEM_VRAM, NULL, &vbo));
	ASSERT_EQ(vm->pt.nr_spares, 0);
	ASSERT_EQ(dev->vram.free_bytes, 0);
	gvm_bo_put(vbo);
	ASSERT_OK(gvm_vm_bind(vm, NULL, &(struct gvm_bind_op){
		.op = GVM_BIND_UNMAP, .addr = G1, .range = K4 }, 1, NULL, 0));
	gvm_vm_destroy(vm);
	gvm_bo_put(sbo);
	gvm_device_put(dev);
}
