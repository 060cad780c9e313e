// SPDX-License-Identifier: MIT
/*
 * Recoverable GPU faults (GVM_VM_FAULT_MODE): a mapping made without
 * GVM_BIND_IMMEDIATE gets no PTEs until the GPU touches it, the fault binds
 * it and the access is replayed; with IMMEDIATE it is bound at once; a
 * userptr zapped by the CPU side is repinned on its next fault.  Faults
 * that cannot be serviced (no mapping, a write to a read-only one) fail
 * the job with a fault-log entry and leave the VM usable.
 */
#include <pthread.h>
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/fault.h"
#include "vm/pt_update.h"
#include "vm/vm.h"

#define K4 4096ull
#define VA 0x10000000ull
#define UVA 0x20000000ull

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static void setup(struct ctx *c)
{
	ASSERT_OK(gvm_mm_self(&c->mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, c->mm,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
}

static void teardown(struct ctx *c)
{
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
	gvm_mm_put(c->mm);
}

static bool mapped(struct gvm_vm *vm, uint64_t va)
{
	struct gvm_pt_xlate x;
	int err;

	gvm__mutex_lock(&vm->pt_lock);
	err = gvm__pt_translate(&vm->pt, va, GVM_PT_VIEW_COMMITTED, &x);
	gvm__mutex_unlock(&vm->pt_lock);
	return !err;
}

/* Runs a store of @v at @va (LR: a user fence signals completion). */
static void store(struct ctx *c, uint64_t va, uint64_t v)
{
	struct gvm_kernel k;
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };

	ASSERT_OK(gvm_kernel_store_dword(&k, va, v, 64));
	ASSERT_OK(gvm_exec(c->q, &k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
}

/*
 * Drains the fault log: the number of entries, the oldest in *@f (if not
 * NULL).  The whole log is read, so logged(vm, NULL) == 0 means it was
 * empty (a query with room for nothing copies nothing, whatever the log).
 */
static uint32_t logged(struct gvm_vm *vm, struct gvm_fault_info *f)
{
	struct gvm_fault_info buf[GVM_VM_FAULT_LOG];
	uint32_t n;

	ASSERT_OK(gvm_vm_query_faults(vm, buf, GVM_VM_FAULT_LOG, &n));
	if (f && n)
		*f = buf[0];
	return n;
}

static void bind_bo(struct ctx *c, struct gvm_bo *bo, uint64_t va,
		    uint32_t flags)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .flags = flags,
				  .addr = va, .range = gvm_bo_size(bo),
				  .bo = bo };

	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0));
}

TEST(map_binds_on_first_fault)
{
	struct gvm_vm_stats st;
	struct gvm_bo *bo;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	ASSERT_OK(gvm_bo_create(c.dev, 16 * K4, GVM_MEM_VRAM, c.vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&p));
	bind_bo(&c, bo, VA, 0);
	ASSERT_FALSE(mapped(c.vm, VA));		/* no PTE before the fault */
	store(&c, VA + 8 * K4 + 8, 42);
	ASSERT_EQ(p[8 * K4 / 8 + 1], 42);
	ASSERT_TRUE(mapped(c.vm, VA));		/* the whole VMA was bound */
	ASSERT_TRUE(mapped(c.vm, VA + 15 * K4));
	store(&c, VA + 8, 43);			/* no fault this time */
	ASSERT_EQ(p[1], 43);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.faults, 1);
	ASSERT_EQ(st.faults_serviced, 1);
	ASSERT_EQ(logged(c.vm, NULL), 0);
	gvm_bo_put(bo);
	teardown(&c);
}

TEST(immediate_binds_at_once)
{
	struct gvm_vm_stats st;
	struct gvm_bo *bo;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	ASSERT_OK(gvm_bo_create(c.dev, 4 * K4, GVM_MEM_VRAM, c.vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&p));
	bind_bo(&c, bo, VA, GVM_BIND_IMMEDIATE);
	ASSERT_TRUE(mapped(c.vm, VA));
	store(&c, VA + 8, 7);
	ASSERT_EQ(p[1], 7);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.faults, 0);
	gvm_bo_put(bo);
	teardown(&c);
}

TEST(unserviceable_faults_fail_the_job_not_the_vm)
{
	struct gvm_fault_info f;
	struct gvm_vm_stats st;
	struct gvm_bo *bo;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	ASSERT_OK(gvm_bo_create(c.dev, 4 * K4, GVM_MEM_VRAM, c.vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&p));
	bind_bo(&c, bo, VA, GVM_BIND_READONLY);
	/* nothing mapped there */
	store(&c, VA + 64 * K4, 1);
	ASSERT_EQ(logged(c.vm, &f), 1);
	ASSERT_EQ(f.addr, VA + 64 * K4);
	/* a write to a read-only mapping (bound by the fault, then
	   refused: the PTE has no WRITE) */
	store(&c, VA + 8, 2);
	ASSERT_GE(logged(c.vm, &f), 1);
	ASSERT_EQ(f.access, GVM_ACCESS_WRITE);
	ASSERT_EQ(p[1], 0);
	/* the VM goes on */
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_FALSE(st.banned);
	{
		struct gvm_bo *rw;
		uint64_t *q;

		ASSERT_OK(gvm_bo_create(c.dev, 4 * K4, GVM_MEM_VRAM, c.vm,
					&rw));
		ASSERT_OK(gvm_bo_map(rw, (void **)&q));
		bind_bo(&c, rw, VA + 128 * K4, 0);
		store(&c, VA + 128 * K4 + 8, 3);
		ASSERT_EQ(q[1], 3);
		gvm_bo_put(rw);
	}
	gvm_bo_put(bo);
	teardown(&c);
}

TEST(userptr_binds_on_fault_and_repins_after_madvise)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .addr = UVA,
				  .range = 4 * K4 };
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = mmap(NULL, 4 * K4, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	p[0] = 5;
	op.userptr = (uint64_t)(uintptr_t)p;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	ASSERT_FALSE(mapped(c.vm, UVA));
	store(&c, UVA + 8, 9);
	ASSERT_EQ(p[1], 9);
	ASSERT_EQ(p[0], 5);
	/* the CPU drops the pages: zapped; the next exec repins (exec
	   revalidates invalidated userptrs in every mode) */
	ASSERT_OK(madvise(p, 4 * K4, MADV_DONTNEED));
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_FALSE(mapped(c.vm, UVA));
	store(&c, UVA + 2 * K4, 11);
	ASSERT_EQ(p[2 * K4 / 8], 11);
	ASSERT_EQ(p[1], 0);			/* the old page is gone */
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.faults_serviced, 1);
	ASSERT_EQ(st.userptr_invalidations, 1);
	ASSERT_EQ(st.userptr_repins, 1);
	ASSERT_EQ(logged(c.vm, NULL), 0);
	teardown(&c);
	munmap(p, 4 * K4);
}

/*
 * The userptr's pages go stale while its fault is being serviced (an
 * invalidation between the fetch and the commit): the commit's recheck
 * makes the handler fetch again, and the access lands in the pages the CPU
 * sees.
 */
static struct {
	struct ctx *c;
	void *cpu;
	int ran, max;			/* invalidations run, at most */
} race;

static void *race_invalidate(void *arg)
{
	(void)arg;
	gvm__mm_invalidate(race.c->mm, (uint64_t)(uintptr_t)race.cpu, K4,
			   GVM_MM_EVENT_MIGRATE);
	return NULL;
}

static void race_hook(struct gvm_vm *vm, enum gvm_vm_update_point p)
{
	pthread_t t;

	if (vm != race.c->vm || p != GVM_UPDATE_BEFORE_COMMIT ||
	    race.ran == race.max)
		return;
	ASSERT_OK(pthread_create(&t, NULL, race_invalidate, NULL));
	ASSERT_OK(pthread_join(t, NULL));
	race.ran++;
}

/*
 * A page of fresh memory bound as a userptr at UVA, and race_hook armed
 * to invalidate it before up to @max commits.
 */
static uint64_t *userptr_raced(struct ctx *c, int max)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .addr = UVA,
				  .range = K4 };
	uint64_t *p = mmap(NULL, K4, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(p != MAP_FAILED);
	op.userptr = (uint64_t)(uintptr_t)p;
	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0));
	race.c = c;
	race.cpu = p;
	race.ran = 0;
	race.max = max;
	return p;
}

TEST(userptr_fault_retries_when_invalidated_meanwhile)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = userptr_raced(&c, 1);
	gvm__vm_update_hook = race_hook;
	store(&c, UVA + 16, 21);
	gvm__vm_update_hook = NULL;
	ASSERT_EQ(race.ran, 1);
	ASSERT_EQ(p[2], 21);
	ASSERT_TRUE(mapped(c.vm, UVA));
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.faults_serviced, 1);
	ASSERT_EQ(st.fault_retries, 1);
	ASSERT_EQ(logged(c.vm, NULL), 0);
	teardown(&c);
	munmap(p, K4);
}

/*
 * Retries are bounded: pages that go stale before every commit make the
 * service give up after FAULT_RETRIES (16) tries with -EAGAIN, nothing
 * mapped; the next fault, undisturbed, binds.
 */
TEST(userptr_fault_retries_are_bounded)
{
	struct gvm_fault_info f = { .addr = UVA, .access = GVM_ACCESS_WRITE,
				    .reason = GVM_FAULT_NOT_PRESENT };
	struct gvm_vm_stats st;
	uint64_t range_end;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = userptr_raced(&c, 1000);
	gvm__vm_update_hook = race_hook;
	ASSERT_EQ(gvm__fault_service(c.vm, &f, &range_end), -EAGAIN);
	gvm__vm_update_hook = NULL;
	ASSERT_EQ(race.ran, 16);
	ASSERT_FALSE(mapped(c.vm, UVA));
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.fault_retries, 16);
	store(&c, UVA + 16, 22);
	ASSERT_EQ(p[2], 22);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.fault_retries, 16);
	teardown(&c);
	munmap(p, K4);
}

/*
 * A kernel already running touches a mapping whose queued bind has not
 * run yet: the fault is not served (the bind job, which takes no vm->lock,
 * owns writing that VMA); once the bind completed the next kernel works.
 */
struct gate_store_args {
	const uint64_t *gate;
	uint64_t va;
};

static void gate_store_fn(struct gvm_lane *l, const void *args)
{
	const struct gate_store_args *a = args;

	while (!__atomic_load_n(a->gate, __ATOMIC_ACQUIRE))
		gvm_cpu_relax();
	gvm_lane_store(l, a->va, 99, 8);
}

/* Runs a gate_store kernel (a store at VA + 8 once *@gate is set) on
   c's queue; *@uf is its user fence. */
static void gate_store_exec(struct ctx *c, uint64_t *gate, uint64_t *uf)
{
	struct gate_store_args a = { .gate = gate, .va = VA + 8 };
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = uf,
			      .value = 1 };
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_init(&k, "gate_store", gate_store_fn, 1, &a,
				  sizeof(a)));
	ASSERT_OK(gvm_exec(c->q, &k, &s, 1));
}

TEST(fault_on_mapping_whose_bind_is_queued_is_refused)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
				  .range = 4 * K4 };
	struct gvm_sync in = { .type = GVM_SYNC_FENCE };
	struct gvm_fault_info f;
	struct gvm_fence *fence;
	struct gvm_bo *bo;
	uint64_t gate = 0, uf = 0, *p;
	struct ctx c;

	setup(&c);
	ASSERT_OK(gvm_bo_create(c.dev, 4 * K4, GVM_MEM_VRAM, c.vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&p));
	gate_store_exec(&c, &gate, &uf);		/* runs, waits */
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &fence));
	in.fence = fence;
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, &in, 1));	/* queued */
	__atomic_store_n(&gate, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(logged(c.vm, &f), 1);
	ASSERT_EQ(f.addr, VA + 8);
	ASSERT_EQ(p[1], 0);
	ASSERT_OK(gvm_fence_signal(fence));
	store(&c, VA + 16, 5);			/* after the bind: served */
	ASSERT_EQ(p[2], 5);
	gvm_fence_put(fence);
	gvm_bo_put(bo);
	teardown(&c);
}

/*
 * A banned VM's faults are not serviced (as xe refuses them): its page
 * tables may disagree with its VA tree, and what it runs is to end.  The
 * kernel faults on a mapping bound on first fault, fails with -EIO and a
 * log entry.  It used to be bound and the kernel went on.
 */
TEST(a_banned_vm_s_faults_are_refused)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
				  .range = 4 * K4 };
	struct gvm_fault_info f;
	struct gvm_bo *bo;
	uint64_t gate = 0, uf = 0, *p;
	struct ctx c;

	setup(&c);
	ASSERT_OK(gvm_bo_create(c.dev, 4 * K4, GVM_MEM_VRAM, c.vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&p));
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));	/* lazy */
	gate_store_exec(&c, &gate, &uf);		/* runs, waits */
	gvm__vm_ban(c.vm, -EIO);
	__atomic_store_n(&gate, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(logged(c.vm, &f), 1);
	ASSERT_EQ(f.addr, VA + 8);
	ASSERT_EQ(p[1], 0);
	ASSERT_FALSE(mapped(c.vm, VA));
	gvm_bo_put(bo);
	teardown(&c);
}
