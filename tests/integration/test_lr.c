// SPDX-License-Identifier: MIT
/*
 * Long-running (LR) VMs: a kernel that runs for a long time (many short
 * lanes, each spinning, then adding 1 to a counter) is preempted - parked
 * between lanes, not failed - when memory it maps must change: a VRAM
 * BO evicted by another allocation, a userptr whose CPU memory is
 * dropped or replaced.  The rebind worker restores the mappings and
 * resumes it; the counts must come out exact, with no GPU fault.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "sim/sim_internal.h"
#include "vm/vm.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define VA 0x40000000ull
#define UVA 0x80000000ull

/*
 * Lane i spins, stores i + 1 at slots + 8i (if slots), adds 1 at count.
 * If @preempt is set, lane @gate first raises *@waiting and waits until
 * that word (its queue's preempt flag) and *@changed are raised: the
 * kernel is then parked right after it, and the lanes after it start
 * after the CPU's change returned.
 */
struct spin_args {
	uint64_t count, slots;
	uint32_t spin;
	const uint32_t *preempt, *changed;
	uint32_t *waiting;
	uint64_t gate;
};

static void spin_fn(struct gvm_lane *l, const void *args)
{
	const struct spin_args *a = args;
	uint64_t i = gvm_lane_id(l);
	volatile uint32_t s;

	if (a->preempt && i == a->gate) {
		gvm_store_release(a->waiting, 1u);
		while (!gvm_load_acquire(a->preempt) ||
		       !gvm_load_acquire(a->changed))
			gvm_cpu_relax();
	}
	for (s = 0; s < a->spin; s++)
		;
	if (a->slots)
		gvm_lane_store(l, a->slots + 8 * i, i + 1, 8);
	gvm_lane_atomic_add(l, a->count, 1, 8);
}

static void spin_kernel(struct gvm_kernel *k, uint64_t lanes, uint64_t count,
			uint64_t slots, uint32_t spin)
{
	struct spin_args a = { count, slots, spin, NULL, NULL, NULL, 0 };

	ASSERT_OK(gvm_kernel_init(k, "spin", spin_fn, lanes, &a, sizeof(a)));
}

/* LR exec: the out-sync is a user fence writing 1 to *@uf. */
static void exec_lr(struct gvm_queue *q, const struct gvm_kernel *k,
		    uint64_t *uf)
{
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = uf,
			      .value = 1 };

	*uf = 0;
	ASSERT_OK(gvm_exec(q, k, &s, 1));
}

static uint64_t parks(struct gvm_device *dev)
{
	struct gvm_sim_stats st;

	ASSERT_OK(gvm_sim_stats(dev, &st));
	return st.parks;
}

static uint32_t nr_faults(struct gvm_vm *vm)
{
	struct gvm_fault_info f[8];
	uint32_t n;

	ASSERT_OK(gvm_vm_query_faults(vm, f, 8, &n));
	return n;
}

static uint64_t ld(const void *p)
{
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}

static void bind_bo(struct gvm_vm *vm, struct gvm_bo *bo, uint64_t va)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .bo = bo, .addr = va,
				  .range = gvm_bo_size(bo) };

	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));
}

#define LANES 3000
#define SPIN 40000

TEST(exec_rejects_fence_out_syncs)
{
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_fence *f = NULL;
	struct gvm_kernel k;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };

	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_kernel_store_dword(&k, VA, 1, 64));
	ASSERT_EQ(gvm_exec(q, &k, &s, 1), -EINVAL);
	ASSERT_TRUE(f == NULL);
	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
}

/*
 * An LR exec signals only a user fence, written whether the kernel
 * faulted or not; the fault log tells which exec failed: its queue's id
 * and its number on the queue.
 */
TEST(failed_exec_named_in_fault_log)
{
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_bo *bo;
	struct gvm_kernel k;
	struct gvm_fault_info f[8];
	uint64_t uf;
	uint32_t n;

	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_bo_create(dev, K4, GVM_MEM_VRAM, NULL, &bo));
	bind_bo(vm, bo, VA);
	for (uint64_t i = 1; i <= 3; i++) {
		/* the second exec stores outside the BO */
		ASSERT_OK(gvm_kernel_store_dword(&k, i == 2 ? VA + M2 : VA, i,
						 64));
		exec_lr(q, &k, &uf);
		ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	}
	ASSERT_OK(gvm_vm_query_faults(vm, f, 8, &n));
	ASSERT_EQ(n, 1);
	ASSERT_EQ(f[0].addr, VA + M2);
	ASSERT_EQ(f[0].queue_id, gvm_queue_id(q));
	ASSERT_EQ(f[0].seqno, 2);
	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_bo_put(bo);
	gvm_device_put(dev);
}

/*
 * (a) A VRAM-only BO the kernel uses is evicted by another allocation:
 * the kernel is parked, the BO moves out, the rebind worker brings it
 * back (evicting the newcomer) and resumes the kernel.
 */
static void evict_while_running(bool external)
{
	struct gvm_sim_config cfg = { .vram_size = 8 << 20, .nr_compute = 1 };
	struct gvm_device *dev;
	struct gvm_device_info info;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_bo *x, *other = NULL;
	struct gvm_kernel k;
	struct gvm_vm_stats st;
	uint64_t uf, *cnt;
	int err;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_bo_create(dev, M2, GVM_MEM_VRAM, external ? NULL : vm,
				&x));
	bind_bo(vm, x, VA);
	ASSERT_OK(gvm_bo_map(x, (void **)&cnt));
	spin_kernel(&k, LANES, VA, 0, SPIN);
	exec_lr(q, &k, &uf);
	while (!ld(cnt))
		gvm_cpu_relax();

	/* More than is free: only x can make room (page tables cannot). */
	ASSERT_OK(gvm_device_query(dev, &info));
	err = gvm_bo_create(dev, info.vram_free + M2 / 2, GVM_MEM_VRAM, NULL,
			    &other);
	/* The worker may win x's space back first: then nothing fits. */
	ASSERT_TRUE(err == 0 || err == -ENOSPC);

	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(ld(cnt), LANES);
	ASSERT_EQ(nr_faults(vm), 0);
	ASSERT_OK(gvm_vm_stats(vm, &st));
	ASSERT_FALSE(st.banned);
	ASSERT_GE(st.evictions, 1);
	ASSERT_GE(st.bytes_to_system, M2);
	ASSERT_GE(st.preemptions, 1);
	ASSERT_GE(st.lr_rebinds, 1);
	ASSERT_GE(parks(dev), 1);	/* paused mid-kernel, not waited for */
	ASSERT_EQ(gvm_bo_region(x), GVM_MEM_VRAM);

	/* It runs again on the restored mapping. */
	spin_kernel(&k, 10, VA, 0, 0);
	exec_lr(q, &k, &uf);
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(ld(cnt), LANES + 10);

	gvm_queue_destroy(q);
	gvm_bo_put(other);
	gvm_bo_put(x);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
}

TEST(evict_local_bo_preempts_and_resumes)
{
	evict_while_running(false);
}

TEST(evict_external_bo_preempts_and_resumes)
{
	evict_while_running(true);
}

/*
 * (b) The userptr the kernel stores to loses its pages (madvise) or is
 * replaced (mmap MAP_FIXED): the invalidation preempts the kernel before
 * it zaps, the worker repins, the kernel resumes, and every lane that ran
 * after the CPU's change wrote into the memory the CPU sees.
 */
#define GATE (LANES / 8)

static void userptr_while_running(bool map_fixed)
{
	struct gvm_sim_config cfg = { .nr_compute = 1 };
	size_t len = LANES * 8 + K4 - 1;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_mm *mm;
	struct gvm_bo *bo;
	struct gvm_kernel k;
	struct gvm_vm_stats st;
	uint64_t uf, *cnt, *slots, i;
	uint32_t waiting = 0, changed = 0;
	struct gvm_bind_op op;

	len &= ~(K4 - 1);
	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_vm_create(dev, mm, GVM_VM_LR_MODE, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_bo_create(dev, K4 * 16, GVM_MEM_VRAM, vm, &bo));
	bind_bo(vm, bo, VA);
	ASSERT_OK(gvm_bo_map(bo, (void **)&cnt));
	slots = mmap(NULL, len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(slots != MAP_FAILED);
	memset(slots, 0, len);
	op = (struct gvm_bind_op){ .op = GVM_BIND_MAP_USERPTR, .addr = UVA,
				   .range = len,
				   .userptr = (uint64_t)(uintptr_t)slots };
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));

	/* Lane GATE waits, the CPU changes the memory, and the lane returns
	   only once the invalidation has asked the queue to park: every
	   lane after it runs after the change, into the new pages. */
	ASSERT_OK(gvm_kernel_init(&k, "spin", spin_fn, LANES,
				  &(struct spin_args){
					  .count = VA, .slots = UVA,
					  .spin = SPIN,
					  .preempt = &((struct sim_queue *)
							       q->dev_priv)
							      ->preempt,
					  .waiting = &waiting,
					  .changed = &changed,
					  .gate = GATE },
				  sizeof(struct spin_args)));
	exec_lr(q, &k, &uf);
	while (!gvm_load_acquire(&waiting))
		gvm_cpu_relax();
	if (map_fixed)
		ASSERT_TRUE(mmap(slots, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
				 0) == slots);
	else
		ASSERT_OK(madvise(slots, len, MADV_DONTNEED));
	gvm_store_release(&changed, 1u);

	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(ld(cnt), LANES);
	ASSERT_EQ(nr_faults(vm), 0);
	/* Lanes after the gate started after the CPU's change. */
	for (i = GATE + 1; i < LANES; i++)
		ASSERT_EQ(ld(&slots[i]), i + 1);
	ASSERT_OK(gvm_vm_stats(vm, &st));
	ASSERT_FALSE(st.banned);
	ASSERT_GE(st.userptr_invalidations, 1);
	ASSERT_GE(st.userptr_repins, 1);
	ASSERT_GE(st.preemptions, 1);

	gvm_queue_destroy(q);
	gvm_bo_put(bo);
	ASSERT_OK(gvm_vm_destroy(vm));
	munmap(slots, len);
	gvm_device_put(dev);
	gvm_mm_put(mm);
}

TEST(userptr_madvise_preempts_repins_resumes)
{
	userptr_while_running(false);
}

TEST(userptr_map_fixed_preempts_repins_resumes)
{
	if (UNDER_TSAN) {
		/* TSan resets the shadow of a MAP_FIXED range while the
		   simulated GPU may still write it (see test_userptr). */
		printf("SKIP under TSan\n");
		return;
	}
	userptr_while_running(true);
}

/*
 * (c) Teardown while a long kernel runs: the VM cannot go while its queue
 * lives; evictions keep preempting the kernel while its queue is being
 * destroyed (which waits for it), then the VM goes cleanly.
 */
struct evictor {
	struct gvm_device *dev;
	uint64_t *uf;
	int rounds;
};

static void *evict_loop(void *arg)
{
	struct evictor *e = arg;
	struct gvm_device_info info;

	while (!ld(e->uf)) {
		struct gvm_bo *b = NULL;

		if (gvm_device_query(e->dev, &info))
			break;
		if (!gvm_bo_create(e->dev, info.vram_free + M2 / 2,
				   GVM_MEM_VRAM, NULL, &b))
			gvm_bo_put(b);
		e->rounds++;
	}
	return NULL;
}

TEST(teardown_with_running_kernel)
{
	struct gvm_sim_config cfg = { .vram_size = 8 << 20, .nr_compute = 1 };
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_bo *x;
	struct gvm_kernel k;
	struct evictor e;
	pthread_t t;
	uint64_t uf, *cnt;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_bo_create(dev, M2, GVM_MEM_VRAM, vm, &x));
	bind_bo(vm, x, VA);
	ASSERT_OK(gvm_bo_map(x, (void **)&cnt));
	spin_kernel(&k, LANES, VA, 0, SPIN);
	exec_lr(q, &k, &uf);
	while (!ld(cnt))
		gvm_cpu_relax();
	ASSERT_EQ(gvm_vm_destroy(vm), -EBUSY);
	e = (struct evictor){ dev, &uf, 0 };
	ASSERT_OK(pthread_create(&t, NULL, evict_loop, &e));
	gvm_queue_destroy(q);		/* waits for the kernel */
	ASSERT_EQ(ld(&uf), 1);
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_EQ(ld(cnt), LANES);
	ASSERT_EQ(nr_faults(vm), 0);
	gvm_bo_put(x);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
}

/*
 * (d) What stops a kernel after its VM lost the rebind worker's help.  A
 * gated kernel: lane 0 raises *@waiting, then waits until its queue is
 * asked to park, so the kernel is running when the test acts, and is
 * parked, by what the test does, before any later lane runs.  Every lane
 * adds 1 at VA.  The waits on its user fence are bounded only so that a
 * regression fails instead of hanging: each ends within milliseconds.
 */
#define GATED_LANES 64
#define HANG_NS 10000000000ll

static void gated_kernel(struct gvm_kernel *k, struct gvm_queue *q,
			 uint32_t *waiting)
{
	static const uint32_t changed = 1;
	struct spin_args a = {
		.count = VA,
		.preempt = &((struct sim_queue *)q->dev_priv)->preempt,
		.changed = &changed,
		.waiting = waiting,
		.gate = 0,
	};

	ASSERT_OK(gvm_kernel_init(k, "gated", spin_fn, GATED_LANES, &a,
				  sizeof(a)));
}

/*
 * An LR VM on a fresh device (8 MiB of VRAM, one compute engine) whose
 * gated kernel runs, its lane 0 waiting at the gate, over BO x (of
 * @placement, mapped at VA and on the CPU at cnt).
 */
struct gated {
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_bo *x;
	struct gvm_kernel k;
	uint32_t waiting;
	uint64_t uf, *cnt;
};

static void gated_start(struct gated *g, uint32_t placement)
{
	struct gvm_sim_config cfg = { .vram_size = 8 << 20, .nr_compute = 1 };

	memset(g, 0, sizeof(*g));
	ASSERT_OK(gvm_sim_device_create(&cfg, &g->dev));
	ASSERT_OK(gvm_vm_create(g->dev, NULL, GVM_VM_LR_MODE, &g->vm));
	ASSERT_OK(gvm_queue_create(g->vm, GVM_ENGINE_COMPUTE, &g->q));
	ASSERT_OK(gvm_bo_create(g->dev, M2, placement, NULL, &g->x));
	bind_bo(g->vm, g->x, VA);
	ASSERT_OK(gvm_bo_map(g->x, (void **)&g->cnt));
	gated_kernel(&g->k, g->q, &g->waiting);
	exec_lr(g->q, &g->k, &g->uf);
	while (!gvm_load_acquire(&g->waiting))
		gvm_cpu_relax();
}

/* After the kernel ended (the queue may be destroyed already: NULL). */
static void gated_end(struct gated *g)
{
	gvm_queue_destroy(g->q);
	gvm_bo_put(g->x);
	ASSERT_OK(gvm_vm_destroy(g->vm));
	gvm_device_put(g->dev);
}

/*
 * Hot-unplug while a kernel runs (docs/multidevice.md: the jobs already
 * running end normally).  The unplug parks the kernel to move its BO to
 * system memory; the rebind worker cannot move it back (the device gives
 * no VRAM any more: -ENODEV) and leaves it there, rebinds it and resumes
 * the kernel, which ends without a fault; the VM is not banned.  For a
 * VRAM-only BO as for one that may live in system memory.
 */
static void unplug_while_running(uint32_t placement)
{
	struct gvm_vm_stats st;
	struct gated g;

	gated_start(&g, placement);
	ASSERT_OK(gvm_device_unplug(g.dev));
	ASSERT_EQ(gvm_bo_region(g.x), GVM_MEM_SYSTEM);

	ASSERT_OK(gvm_user_fence_wait(&g.uf, 1, HANG_NS));
	ASSERT_OK(gvm_vm_stats(g.vm, &st));
	ASSERT_FALSE(st.banned);
	ASSERT_EQ(nr_faults(g.vm), 0);
	ASSERT_EQ(ld(g.cnt), GATED_LANES);
	ASSERT_GE(st.preemptions, 1);
	ASSERT_GE(st.lr_rebinds, 1);
	ASSERT_GE(parks(g.dev), 1);
	ASSERT_EQ(gvm_bo_region(g.x), GVM_MEM_SYSTEM);
	gated_end(&g);
}

TEST(unplug_parks_and_resumes_a_running_kernel)
{
	unplug_while_running(GVM_MEM_VRAM | GVM_MEM_SYSTEM);
}

TEST(unplug_leaves_a_vram_only_bo_of_a_running_kernel_in_system_memory)
{
	unplug_while_running(GVM_MEM_VRAM);
}

/*
 * A VM banned outside the worker (here as a failed bind job bans it,
 * bind_job.c) and preempted only afterwards: an eviction parks its
 * kernel; the worker, kicked, must resume the queue (the kernel then
 * faults on the zapped mapping, as in any banned VM), not skip the banned
 * VM and leave the kernel parked, its user fence unwritten and
 * gvm_queue_destroy() waiting for it forever.  Later waiters (here the
 * queue's destroy, which retires its preempt fence) find that fence
 * signalled and preempt nothing more.
 */
TEST(a_banned_vm_preempted_later_gets_its_queue_resumed)
{
	struct gvm_device_info info;
	struct gvm_vm_stats st;
	struct gvm_bo *other;
	uint64_t nr_parks;
	struct gated g;

	gated_start(&g, GVM_MEM_VRAM);
	gvm__vm_ban(g.vm, -EIO);
	/* More than is free: only x can make room (page tables cannot). */
	ASSERT_OK(gvm_device_query(g.dev, &info));
	ASSERT_OK(gvm_bo_create(g.dev, info.vram_free + M2 / 2, GVM_MEM_VRAM,
				NULL, &other));
	ASSERT_EQ(gvm_bo_region(g.x), GVM_MEM_SYSTEM);

	ASSERT_OK(gvm_user_fence_wait(&g.uf, 1, HANG_NS));
	/* The move ended before the kernel ran again: lane 1 faulted. */
	ASSERT_EQ(nr_faults(g.vm), 1);
	ASSERT_EQ(ld(g.cnt), 1);
	ASSERT_OK(gvm_vm_stats(g.vm, &st));
	ASSERT_TRUE(st.banned);
	ASSERT_EQ(st.preemptions, 1);
	nr_parks = parks(g.dev);
	gvm_queue_destroy(g.q);
	g.q = NULL;
	ASSERT_OK(gvm_vm_stats(g.vm, &st));
	ASSERT_EQ(st.preemptions, 1);
	ASSERT_EQ(parks(g.dev), nr_parks);
	gvm_bo_put(other);
	gated_end(&g);
}

/*
 * Issue 10, defect 4: the two-pass rule across LR VMs.  An invalidation of
 * userptrs in two LR VMs (two devices) must start preempting both before
 * it waits for either.  Device A's kernel cannot park until device B's
 * kernel parked (its lane 0 waits for that), so if pass 1 of A's userptr
 * waited for A's preempt fence before B's pass 1 ran, it would never end.
 * A's userptr starts lower, so the notifier visits it first.
 */
struct wait_park_args {
	struct gvm_device *other;	/* lane 0 waits until it parked */
	uint64_t *started;		/* host flag: lane 0 is running */
};

static void wait_park_fn(struct gvm_lane *l, const void *args)
{
	const struct wait_park_args *a = args;

	if (gvm_lane_id(l))
		return;
	__atomic_store_n(a->started, 1, __ATOMIC_RELEASE);
	while (!parks(a->other))
		gvm_cpu_relax();
}

struct busy_args {
	uint64_t *count;		/* host counter of lanes run */
	const uint64_t *stop;		/* host flag: finish quickly */
};

static void busy_fn(struct gvm_lane *l, const void *args)
{
	const struct busy_args *a = args;
	volatile uint32_t s;

	(void)l;
	__atomic_fetch_add(a->count, 1, __ATOMIC_RELAXED);
	if (__atomic_load_n(a->stop, __ATOMIC_ACQUIRE))
		return;
	for (s = 0; s < 2000; s++)
		;
}

TEST(userptr_invalidation_preempts_all_vms_before_waiting)
{
	struct gvm_sim_config cfg = { .nr_compute = 1 };
	struct gvm_device *dev[2];
	struct gvm_vm *vm[2];
	struct gvm_queue *q[2];
	struct wait_park_args wa;
	struct busy_args ba;
	struct gvm_kernel k;
	struct gvm_vm_stats st;
	struct gvm_mm *mm;
	uint64_t uf[2], started = 0, count = 0, stop = 0;
	uint8_t *buf;
	int i;

	ASSERT_OK(gvm_mm_self(&mm));
	buf = mmap(NULL, 2 * K4, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(buf != MAP_FAILED);
	for (i = 0; i < 2; i++) {
		struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR,
					  .addr = UVA, .range = (2 - i) * K4,
					  .userptr = (uint64_t)(uintptr_t)
						     (buf + i * K4) };

		ASSERT_OK(gvm_sim_device_create(&cfg, &dev[i]));
		ASSERT_OK(gvm_vm_create(dev[i], mm, GVM_VM_LR_MODE, &vm[i]));
		ASSERT_OK(gvm_queue_create(vm[i], GVM_ENGINE_COMPUTE, &q[i]));
		ASSERT_OK(gvm_vm_bind(vm[i], NULL, &op, 1, NULL, 0));
	}
	wa = (struct wait_park_args){ .other = dev[1], .started = &started };
	ASSERT_OK(gvm_kernel_init(&k, "wait_park", wait_park_fn, 2, &wa,
				  sizeof(wa)));
	exec_lr(q[0], &k, &uf[0]);
	ba = (struct busy_args){ .count = &count, .stop = &stop };
	ASSERT_OK(gvm_kernel_init(&k, "busy", busy_fn, 1u << 20, &ba,
				  sizeof(ba)));
	exec_lr(q[1], &k, &uf[1]);
	while (!ld(&started) || !ld(&count))
		gvm_cpu_relax();

	gvm__mm_invalidate(mm, (uint64_t)(uintptr_t)buf, 2 * K4,
			   GVM_MM_EVENT_MIGRATE);

	ASSERT_GE(parks(dev[1]), 1);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < 2; i++) {
		ASSERT_OK(gvm_user_fence_wait(&uf[i], 1,
					      GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(nr_faults(vm[i]), 0);
		ASSERT_OK(gvm_vm_stats(vm[i], &st));
		ASSERT_EQ(st.userptr_invalidations, 1);
		ASSERT_GE(st.preemptions, 1);
	}
	ASSERT_EQ(ld(&count), 1u << 20);
	for (i = 0; i < 2; i++) {
		gvm_queue_destroy(q[i]);
		ASSERT_OK(gvm_vm_destroy(vm[i]));
		gvm_device_put(dev[i]);
	}
	munmap(buf, 2 * K4);
	gvm_mm_put(mm);
}

/* Threads of this process now. */
static unsigned int nr_threads(void)
{
	unsigned int n = 0;
	char line[128];
	FILE *f = fopen("/proc/self/status", "r");

	ASSERT_TRUE(f != NULL);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %u", &n) == 1)
			break;
	fclose(f);
	return n;
}

/*
 * The user-fence writer (vm/sync.c) is started by the submission that
 * brings the first user fence, never from a fence callback (a thread
 * creation there could touch heap pages SVM moved while a fence lock is
 * held); it stays while the VM lives (no thread per exec) and is gone
 * with the last such VM.
 */
static void nop_fn(struct gvm_lane *lane, const void *args)
{
	(void)lane;
	(void)args;
}

TEST(the_user_fence_writer_starts_at_submission_and_ends_with_the_vm)
{
	struct gvm_sim_config cfg = { .vram_size = 8 << 20, .nr_compute = 1 };
	struct gvm_device *dev;
	struct gvm_queue *q;
	struct gvm_kernel k;
	struct gvm_vm *vm;
	unsigned int t0;
	uint64_t uf;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_kernel_init(&k, "nop", nop_fn, 1, NULL, 0));
	t0 = nr_threads();
	for (int i = 0; i < 3; i++) {
		exec_lr(q, &k, &uf);
		ASSERT_EQ(nr_threads(), t0 + 1);
		ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	}
	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(vm));
	while (nr_threads() != t0)	/* it exits on its own */
		sched_yield();
	gvm_device_put(dev);
}

/*
 * The rebind worker is the device's, not the VM's (issue 11, item 3): 32
 * LR VMs cost no more threads than one, and one worker restores two VMs
 * whose running kernels were preempted by the same eviction.
 */
TEST(lr_vms_share_the_devices_rebind_worker)
{
	struct gvm_sim_config cfg = { .vram_size = 8 << 20, .nr_compute = 2 };
	struct gvm_vm *vm[32], *v[2];
	struct gvm_device_info info;
	struct gvm_bo *x[2], *other = NULL;
	struct gvm_queue *q[2];
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	struct gvm_device *dev;
	uint64_t uf[2], *cnt[2];
	unsigned int t1;
	int err;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE, &vm[0]));
	t1 = nr_threads();
	for (int i = 1; i < 32; i++)
		ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE, &vm[i]));
	ASSERT_EQ(nr_threads(), t1);
	for (int i = 0; i < 32; i++)
		ASSERT_OK(gvm_vm_destroy(vm[i]));

	for (int i = 0; i < 2; i++) {
		ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE, &v[i]));
		ASSERT_OK(gvm_queue_create(v[i], GVM_ENGINE_COMPUTE, &q[i]));
		ASSERT_OK(gvm_bo_create(dev, M2, GVM_MEM_VRAM, v[i], &x[i]));
		bind_bo(v[i], x[i], VA);
		ASSERT_OK(gvm_bo_map(x[i], (void **)&cnt[i]));
		spin_kernel(&k, LANES, VA, 0, SPIN);
		exec_lr(q[i], &k, &uf[i]);
	}
	for (int i = 0; i < 2; i++)
		while (!ld(cnt[i]))
			gvm_cpu_relax();
	/* More than is free: only both x can make room. */
	ASSERT_OK(gvm_device_query(dev, &info));
	err = gvm_bo_create(dev, info.vram_free + M2 + M2 / 2, GVM_MEM_VRAM,
			    NULL, &other);
	ASSERT_TRUE(err == 0 || err == -ENOSPC);
	for (int i = 0; i < 2; i++) {
		ASSERT_OK(gvm_user_fence_wait(&uf[i], 1,
					      GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(ld(cnt[i]), LANES);
		ASSERT_EQ(nr_faults(v[i]), 0);
		ASSERT_OK(gvm_vm_stats(v[i], &st));
		ASSERT_FALSE(st.banned);
		if (!err) {	/* both were evicted for it */
			ASSERT_GE(st.preemptions, 1);
			ASSERT_GE(st.lr_rebinds, 1);
		}
	}
	/* no other rebind worker; one user-fence writer (vm/sync.c) */
	ASSERT_EQ(nr_threads(), t1 + 1);
	for (int i = 0; i < 2; i++) {
		gvm_queue_destroy(q[i]);
		gvm_bo_put(x[i]);
		ASSERT_OK(gvm_vm_destroy(v[i]));
	}
	gvm_bo_put(other);
	gvm_device_put(dev);
}
