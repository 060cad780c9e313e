// SPDX-License-Identifier: MIT
/*
 * The per-device GPU fault queue (src/vm/fault_queue.c): faults of
 * fault-mode VMs resolve through it; a queue of depth 1 or 2 with many
 * engines faulting blocks the engines and drops nothing; faults on one
 * page in one batch are serviced once, and so are faults on the pages of
 * one new SVM range; a fault that fails fails only its
 * job (-EIO, one fault-log entry); a VM destroyed with faults pending has
 * them complete as failed; the servicing thread starts with the first
 * fault-mode VM and is joined when the device goes.
 *
 * Nothing here depends on timing: the servicing thread is held
 * (gvm__fault_queue_hold) until the faults a test needs in one batch are
 * queued, which gvm__fault_queue_wait_for() waits for.
 */
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "svmtest.h"
#include "core/atomic.h"
#include "vm/dev.h"
#include "vm/fault_queue.h"
#include "vm/pt_update.h"
#include "vm/vm.h"

#define K4 4096ull
#define VA 0x10000000ull
#define VA_RO 0x20000000ull
#define NQ 8

struct ctx {
	struct gvm_device *dev;
	struct gvm_mm *mm;		/* NULL, or the process (SVM) */
	struct gvm_vm *vm;
	struct gvm_queue *q[NQ];
	unsigned int nq;
};

static void setup_mm(struct ctx *c, struct gvm_mm *mm,
		     unsigned int nr_compute, unsigned int depth,
		     unsigned int nq)
{
	struct gvm_sim_config cfg = { .vram_size = 64ull << 20,
				      .nr_compute = nr_compute,
				      .fault_queue_depth = depth };
	unsigned int i;

	memset(c, 0, sizeof(*c));
	c->mm = mm;
	ASSERT_OK(gvm_sim_device_create(&cfg, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, mm,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &c->vm));
	/* Round robin: queue i runs on compute engine i. */
	for (i = 0; i < nq; i++)
		ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE,
					   &c->q[i]));
	c->nq = nq;
}

static void setup_cfg(struct ctx *c, unsigned int nr_compute,
		      unsigned int depth, unsigned int nq)
{
	setup_mm(c, NULL, nr_compute, depth, nq);
}

/* An SVM VM: the process's memory mirrored over the whole VA. */
static void setup_svm(struct ctx *c, unsigned int nq)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = (1ull << 47) - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	struct gvm_mm *mm;

	ASSERT_OK(gvm_mm_self(&mm));
	setup_mm(c, mm, nq, 0, nq);
	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0));
}

static void teardown(struct ctx *c)
{
	unsigned int i;

	for (i = 0; i < c->nq; i++)
		gvm_queue_destroy(c->q[i]);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
	if (c->mm)
		gvm_mm_put(c->mm);
}

/* 2 MiB of fresh anonymous memory, 2 MiB aligned, @prot; munmap 4 MiB at
   *@base when done. */
static uint64_t *map_2m(int prot, void **base)
{
	const uint64_t m2 = 2ull << 20;
	uint8_t *p = mmap(NULL, 2 * m2, prot, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);

	ASSERT_TRUE(p != MAP_FAILED);
	*base = p;
	return (uint64_t *)(((uintptr_t)p + m2 - 1) & ~(uintptr_t)(m2 - 1));
}

/* Drains the fault log: the number of entries, the oldest in *@f. */
static uint32_t logged(struct gvm_vm *vm, struct gvm_fault_info *f)
{
	struct gvm_fault_info buf[GVM_VM_FAULT_LOG];
	uint32_t n;

	ASSERT_OK(gvm_vm_query_faults(vm, buf, GVM_VM_FAULT_LOG, &n));
	if (f && n)
		*f = buf[0];
	return n;
}

/* A BO of @pages pages (VM-local) mapped at @va without IMMEDIATE. */
static struct gvm_bo *bo_at(struct ctx *c, uint64_t va, uint64_t pages,
			    uint32_t flags, uint64_t **cpu)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .flags = flags,
				  .addr = va, .range = pages * K4 };
	struct gvm_bo *bo;

	ASSERT_OK(gvm_bo_create(c->dev, pages * K4, GVM_MEM_VRAM, c->vm,
				&bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)cpu));
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0));
	return bo;
}

/* Submits @k on @q; *@uf becomes 1 when it completed (LR: user fence). */
static void exec_on(struct gvm_queue *q, const struct gvm_kernel *k,
		    uint64_t *uf)
{
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = uf,
			      .value = 1 };

	*uf = 0;
	ASSERT_OK(gvm_exec(q, k, &s, 1));
}

static void uf_wait(uint64_t *uf)
{
	ASSERT_OK(gvm_user_fence_wait(uf, 1, GVM_TIMEOUT_INFINITE));
}

TEST(faults_resolve_through_the_queue)
{
	struct gvm_device_info info;
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	struct gvm_bo *bo;
	uint64_t *p, uf;
	struct ctx c;

	setup_cfg(&c, 0, 0, 1);
	ASSERT_OK(gvm_device_query(c.dev, &info));
	ASSERT_EQ(info.fault_queue_depth, GVM_FAULT_QUEUE_DEFAULT);
	bo = bo_at(&c, VA, 4, 0, &p);
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 2 * K4 + 8, 42, 64));
	exec_on(c.q[0], &k, &uf);
	uf_wait(&uf);
	ASSERT_EQ(svmt_last_status(c.q[0]), 1);
	ASSERT_EQ(p[2 * K4 / 8 + 1], 42);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.faults, 1);
	ASSERT_EQ(st.faults_serviced, 1);
	ASSERT_EQ(st.fault_batches, 1);
	ASSERT_EQ(st.faults_deduplicated, 0);
	ASSERT_EQ(logged(c.vm, NULL), 0);
	gvm_bo_put(bo);
	teardown(&c);
}

TEST(queue_depth_is_validated)
{
	struct gvm_sim_config cfg = { .fault_queue_depth = (1u << 16) + 1 };
	struct gvm_device_info info;
	struct gvm_device *dev;

	ASSERT_EQ(gvm_sim_device_create(&cfg, &dev), -EINVAL);
	cfg.fault_queue_depth = 1u << 16;
	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_device_query(dev, &info));
	ASSERT_EQ(info.fault_queue_depth, 1u << 16);
	gvm_device_put(dev);
}

/*
 * Eight engines fault on eight mappings into a queue of depth 1 or 2: the
 * queue fills, the other engines block in gvm_vm_fault() (observed, not
 * timed), and once the thread runs every fault is serviced, every job
 * completes.
 */
TEST(overflow_blocks_engines_and_drops_nothing)
{
	unsigned int depth;

	for (depth = 1; depth <= 2; depth++) {
		struct gvm_bo *bo[NQ];
		struct gvm_vm_stats st;
		uint64_t *p[NQ], uf[NQ];
		struct ctx c;
		unsigned int i;

		setup_cfg(&c, NQ, depth, NQ);
		for (i = 0; i < NQ; i++)
			bo[i] = bo_at(&c, VA + i * 16 * K4, 1, 0, &p[i]);
		gvm__fault_queue_hold(c.dev, true);
		for (i = 0; i < NQ; i++) {
			struct gvm_kernel k;

			ASSERT_OK(gvm_kernel_store_dword(&k,
							 VA + i * 16 * K4 + 8,
							 100 + i, 64));
			exec_on(c.q[i], &k, &uf[i]);
		}
		/* full, and every other engine blocked on it */
		gvm__fault_queue_wait_for(c.dev, depth, NQ - depth);
		for (i = 0; i < NQ; i++)
			ASSERT_EQ(gvm_load_acquire(&uf[i]), 0);
		gvm__fault_queue_hold(c.dev, false);
		for (i = 0; i < NQ; i++) {
			uf_wait(&uf[i]);
			ASSERT_EQ(svmt_last_status(c.q[i]), 1);
			ASSERT_EQ(p[i][1], 100 + i);
		}
		st = svmt_stats(c.vm);
		ASSERT_EQ(st.faults, NQ);
		ASSERT_EQ(st.faults_serviced, NQ);
		ASSERT_EQ(st.faults_deduplicated, 0);
		/* at most @depth faults a batch */
		ASSERT_GE(st.fault_batches, (NQ + depth - 1) / depth);
		ASSERT_EQ(logged(c.vm, NULL), 0);
		for (i = 0; i < NQ; i++)
			gvm_bo_put(bo[i]);
		teardown(&c);
	}
}

/*
 * Eight engines write one page in one batch: one service binds it, seven
 * faults are deduplicated, all eight accesses are replayed.
 */
TEST(same_page_faults_are_serviced_once)
{
	struct gvm_vm_stats st;
	uint64_t *p, uf[NQ];
	struct gvm_bo *bo;
	struct ctx c;
	unsigned int i;

	setup_cfg(&c, NQ, 0, NQ);
	bo = bo_at(&c, VA, 4, 0, &p);
	gvm__fault_queue_hold(c.dev, true);
	for (i = 0; i < NQ; i++) {
		struct gvm_kernel k;

		ASSERT_OK(gvm_kernel_store_dword(&k, VA + K4 + 8 * i, 7 + i,
						 64));
		exec_on(c.q[i], &k, &uf[i]);
	}
	gvm__fault_queue_wait_for(c.dev, NQ, 0);
	gvm__fault_queue_hold(c.dev, false);
	for (i = 0; i < NQ; i++) {
		uf_wait(&uf[i]);
		ASSERT_EQ(svmt_last_status(c.q[i]), 1);
		ASSERT_EQ(p[K4 / 8 + i], 7 + i);
	}
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.faults, NQ);
	ASSERT_EQ(st.faults_serviced, NQ);
	ASSERT_EQ(st.faults_deduplicated, NQ - 1);
	ASSERT_EQ(st.fault_batches, 1);
	ASSERT_EQ(st.fault_batch_max, NQ);
	ASSERT_EQ(logged(c.vm, NULL), 0);
	gvm_bo_put(bo);
	teardown(&c);
}

/* A fault injected straight into the queue, and what its batch makes of it. */
struct scripted {
	uint64_t off;		/* from the base run_script() is given */
	uint32_t access;
	int result;
	bool dup;		/* completed with another's result */
};

/*
 * Submits @n faults at @base + f[i].off, held so that they make one
 * batch (none completes before the release), releases them, and checks
 * each fault's result and whether it was deduplicated.
 */
static void run_script(struct ctx *c, uint64_t base, const struct scripted *f,
		       unsigned int n)
{
	struct gvm_fault_req req[16];
	unsigned int i;

	ASSERT_TRUE(n <= 16);
	gvm__fault_queue_hold(c->dev, true);
	for (i = 0; i < n; i++) {
		struct gvm_fault_info fi = {
			.addr = base + f[i].off,
			.access = f[i].access,
			.reason = GVM_FAULT_NOT_PRESENT,
			.engine = GVM_ENGINE_COMPUTE,
		};

		gvm__fault_queue_submit(c->vm, &fi, &req[i]);
	}
	gvm__fault_queue_wait_for(c->dev, n, 0);
	for (i = 0; i < n; i++)
		ASSERT_FALSE(gvm__fault_req_done(&req[i]));
	gvm__fault_queue_hold(c->dev, false);
	for (i = 0; i < n; i++) {
		ASSERT_EQ(gvm__fault_req_wait(&req[i]), f[i].result);
		ASSERT_EQ(req[i].deduplicated, f[i].dup);
	}
}

/*
 * The coverage rules, with faults injected straight into the queue: a
 * fault is covered by one serviced before it on the same page with the
 * same access, or a stronger one that succeeded; a failure is not passed
 * on to a weaker access.
 */
TEST(dedupe_covers_same_or_weaker_access_of_a_success)
{
	static const struct scripted f[] = {
		{ VA + 8, GVM_ACCESS_READ, 0, true },
		{ VA + 16, GVM_ACCESS_WRITE, 0, true },
		{ VA + 24, GVM_ACCESS_ATOMIC, 0, false },	/* serviced */
		{ VA_RO, GVM_ACCESS_READ, 0, false },		/* serviced */
		{ VA_RO + 8, GVM_ACCESS_WRITE, -EACCES, false }, /* serviced */
		{ VA_RO + 16, GVM_ACCESS_READ, 0, true },
		{ VA_RO + 24, GVM_ACCESS_WRITE, -EACCES, true },
		{ VA + K4, GVM_ACCESS_WRITE, 0, false },	/* other page */
	};
	struct gvm_bo *bo, *ro;
	struct gvm_vm_stats st;
	uint64_t *p, *q;
	struct ctx c;

	setup_cfg(&c, 0, 0, 0);
	bo = bo_at(&c, VA, 2, 0, &p);
	ro = bo_at(&c, VA_RO, 1, GVM_BIND_READONLY, &q);
	run_script(&c, 0, f, sizeof(f) / sizeof(f[0]));
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.faults_deduplicated, 4);
	ASSERT_EQ(st.fault_batches, 1);
	gvm_bo_put(ro);
	gvm_bo_put(bo);
	teardown(&c);
}

/* Loads the 8 bytes at src and stores them + 1 at dst. */
struct load_store_args {
	uint64_t src, dst;
};

static void load_store_fn(struct gvm_lane *l, const void *args)
{
	const struct load_store_args *a = args;
	uint64_t v = gvm_lane_load(l, a->src, 8);

	if (!gvm_lane_faulted(l))
		gvm_lane_store(l, a->dst, v + 1, 8);
}

/*
 * One batch holds a write to a read-only page (refused) and a read of the
 * same page by another job (served): only the writer's job fails, with
 * -EIO and one fault-log entry; the reader's completes; the VM goes on.
 */
TEST(failed_fault_fails_only_its_job)
{
	struct load_store_args a = { VA_RO + 8, VA + 8 };
	struct gvm_bo *ro, *rw;
	struct gvm_fault_info fi;
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	uint64_t *p, *q, uf[2];
	struct ctx c;

	setup_cfg(&c, 2, 0, 2);
	ro = bo_at(&c, VA_RO, 1, GVM_BIND_READONLY, &q);
	rw = bo_at(&c, VA, 1, 0, &p);
	q[1] = 41;
	gvm__fault_queue_hold(c.dev, true);
	ASSERT_OK(gvm_kernel_store_dword(&k, VA_RO + 16, 5, 64));
	exec_on(c.q[0], &k, &uf[0]);
	ASSERT_OK(gvm_kernel_init(&k, "load_store", load_store_fn, 1, &a,
				  sizeof(a)));
	exec_on(c.q[1], &k, &uf[1]);
	gvm__fault_queue_wait_for(c.dev, 2, 0);
	gvm__fault_queue_hold(c.dev, false);
	uf_wait(&uf[0]);
	uf_wait(&uf[1]);
	ASSERT_EQ(svmt_last_status(c.q[0]), -EIO);
	ASSERT_EQ(svmt_last_status(c.q[1]), 1);
	ASSERT_EQ(q[2], 0);			/* the refused store */
	ASSERT_EQ(p[1], 42);			/* the reader's result */
	ASSERT_EQ(logged(c.vm, &fi), 1);
	ASSERT_EQ(fi.addr, VA_RO + 16);
	ASSERT_EQ(fi.access, GVM_ACCESS_WRITE);
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.faults, 3);		/* write, read, then the store */
	ASSERT_EQ(st.faults_serviced, 2);
	ASSERT_EQ(st.faults_deduplicated, 0);
	ASSERT_FALSE(st.banned);
	/* the VM goes on */
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 16, 6, 64));
	exec_on(c.q[0], &k, &uf[0]);
	uf_wait(&uf[0]);
	ASSERT_EQ(svmt_last_status(c.q[0]), 1);
	ASSERT_EQ(p[2], 6);
	gvm_bo_put(rw);
	gvm_bo_put(ro);
	teardown(&c);
}

/*
 * A kernel of a COPY exec queue faults while VRAM is full: servicing the
 * fault allocates page-table pages, which evicts an idle BO through the
 * copy op.  The copy runs on a migration engine, not behind the stalled
 * kernel on the copy engine (which deadlocked before).
 */
TEST(copy_queue_fault_whose_service_evicts)
{
	struct gvm_sim_config cfg = { .vram_size = 1ull << 20 };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
				  .range = K4 };
	struct gvm_device_info info;
	struct gvm_bo *filler, *bo;
	struct gvm_device *dev;
	struct gvm_queue *q;
	struct gvm_kernel k;
	struct gvm_vm *vm;
	uint64_t *p, *fp, uf;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				&vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COPY, &q));
	ASSERT_OK(gvm_bo_create(dev, K4, GVM_MEM_SYSTEM, vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&p));
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));
	/* every free VRAM byte to an idle external BO */
	ASSERT_OK(gvm_device_query(dev, &info));
	ASSERT_GT(info.vram_free, 0);
	ASSERT_OK(gvm_bo_create(dev, info.vram_free,
				GVM_MEM_VRAM | GVM_MEM_SYSTEM, NULL, &filler));
	ASSERT_OK(gvm_bo_map(filler, (void **)&fp));
	fp[0] = 77;
	ASSERT_OK(gvm_device_query(dev, &info));
	ASSERT_EQ(info.vram_free, 0);
	ASSERT_EQ(gvm_bo_region(filler), GVM_MEM_VRAM);

	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 8, 9, 64));
	exec_on(q, &k, &uf);
	uf_wait(&uf);
	ASSERT_EQ(svmt_last_status(q), 1);
	ASSERT_EQ(p[1], 9);
	ASSERT_EQ(gvm_bo_region(filler), GVM_MEM_SYSTEM);	/* evicted */
	ASSERT_EQ(fp[0], 77);					/* copied */
	ASSERT_EQ(logged(vm, NULL), 0);
	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_bo_put(filler);
	gvm_bo_put(bo);
	gvm_device_put(dev);
}

/*
 * gvm_vm_destroy() with faults of the VM queued does not wait for them;
 * they complete as failed once the thread runs (their requests hold the
 * VM, not the user), and the device then goes with its thread joined.
 */
TEST(vm_destroyed_with_faults_pending)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
				  .range = 4 * K4 };
	struct gvm_fault_req req[4];
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_bo *bo;
	unsigned int i;

	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				&vm));
	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 1);
	ASSERT_OK(gvm_bo_create(dev, 4 * K4, GVM_MEM_VRAM, NULL, &bo));
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));
	gvm__fault_queue_hold(dev, true);
	for (i = 0; i < 4; i++) {
		struct gvm_fault_info fi = {
			.addr = VA + i * K4, .access = GVM_ACCESS_WRITE,
			.reason = GVM_FAULT_NOT_PRESENT,
		};

		gvm__fault_queue_submit(vm, &fi, &req[i]);
	}
	gvm__fault_queue_wait_for(dev, 4, 0);
	ASSERT_OK(gvm_vm_destroy(vm));		/* does not wait for them */
	for (i = 0; i < 4; i++)
		ASSERT_FALSE(gvm__fault_req_done(&req[i]));
	gvm__fault_queue_hold(dev, false);
	for (i = 0; i < 4; i++)
		ASSERT_EQ(gvm__fault_req_wait(&req[i]), -EFAULT);
	gvm_bo_put(bo);
	gvm_device_put(dev);
	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 0);
}

/*
 * The servicing thread starts with the device's first fault-mode VM (not
 * with other VMs), one per device, and is joined when the last device
 * reference goes, not when the VMs go.
 */
TEST(thread_starts_with_first_fault_vm_and_is_joined_at_teardown)
{
	struct gvm_device *dev, *other;
	struct gvm_vm *plain, *lr, *f1, *f2, *g;

	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 0);
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_sim_device_create(NULL, &other));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &plain));
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE, &lr));
	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 0);
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				&f1));
	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 1);
	ASSERT_OK(gvm_vm_create(dev, NULL, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				&f2));
	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 1);
	ASSERT_OK(gvm_vm_create(other, NULL,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &g));
	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 2);
	ASSERT_OK(gvm_vm_destroy(f1));
	ASSERT_OK(gvm_vm_destroy(f2));
	ASSERT_OK(gvm_vm_destroy(lr));
	ASSERT_OK(gvm_vm_destroy(plain));
	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 2);
	gvm_device_put(dev);
	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 1);
	ASSERT_OK(gvm_vm_destroy(g));
	gvm_device_put(other);
	ASSERT_EQ(gvm_load_relaxed(&gvm__fault_queue_threads), 0);
}

/* ---- inline servicing ---------------------------------------------------- */

/* Who committed each update of one VM; the first may be held at a gate. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct gvm_vm *vm;
	pthread_t who[4];
	unsigned int n;
	bool hold_first, released;
} hk = { .lock = PTHREAD_MUTEX_INITIALIZER,
	  .cond = PTHREAD_COND_INITIALIZER };

static void who_hook(struct gvm_vm *vm, enum gvm_vm_update_point point)
{
	if (vm != hk.vm || point != GVM_UPDATE_BEFORE_COMMIT)
		return;
	pthread_mutex_lock(&hk.lock);
	if (hk.n < 4)
		hk.who[hk.n] = pthread_self();
	hk.n++;
	pthread_cond_broadcast(&hk.cond);
	while (hk.n == 1 && hk.hold_first && !hk.released)
		pthread_cond_wait(&hk.cond, &hk.lock);
	pthread_mutex_unlock(&hk.lock);
}

static void hook_on(struct gvm_vm *vm, bool hold_first)
{
	hk.vm = vm;
	hk.n = 0;
	hk.hold_first = hold_first;
	hk.released = false;
	gvm__vm_update_hook = who_hook;
}

static void hook_wait(unsigned int n)
{
	pthread_mutex_lock(&hk.lock);
	while (hk.n < n)
		pthread_cond_wait(&hk.cond, &hk.lock);
	pthread_mutex_unlock(&hk.lock);
}

/*
 * A lone fault on an idle device is serviced by the engine that took it
 * (no hand-off to the servicing thread and back), as a batch of one.
 */
TEST(a_lone_fault_is_serviced_by_its_engine)
{
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	struct gvm_bo *bo;
	uint64_t *p, uf;
	struct ctx c;

	setup_cfg(&c, 0, 0, 1);
	bo = bo_at(&c, VA, 4, 0, &p);
	hook_on(c.vm, false);
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 8, 42, 64));
	exec_on(c.q[0], &k, &uf);
	uf_wait(&uf);
	gvm__vm_update_hook = NULL;
	ASSERT_EQ(p[1], 42);
	ASSERT_EQ(hk.n, 1);
	ASSERT_FALSE(pthread_equal(hk.who[0], c.dev->fq.thread));
	ASSERT_FALSE(pthread_equal(hk.who[0], pthread_self()));
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.faults_serviced, 1);
	ASSERT_EQ(st.fault_batches, 1);
	ASSERT_EQ(st.fault_batch_max, 1);
	gvm_bo_put(bo);
	teardown(&c);
}

struct faulter {
	struct gvm_vm *vm;
	uint64_t addr;
	int result;
};

/* A fault reported as an engine would (gvm_vm_fault), from a thread. */
static void *fault_at(void *arg)
{
	struct faulter *f = arg;
	struct gvm_fault_info fi = { .addr = f->addr,
				     .access = GVM_ACCESS_WRITE,
				     .reason = GVM_FAULT_NOT_PRESENT,
				     .engine = GVM_ENGINE_COMPUTE };

	f->result = gvm_vm_fault(f->vm, &fi);
	return NULL;
}

/*
 * Faults that arrive while a lone fault is serviced inline queue for the
 * servicing thread, which takes them as one batch (deduplicated) once the
 * inline service ended: one batch at a time per device.
 */
TEST(faults_during_an_inline_service_are_batched_by_the_thread)
{
	struct faulter f[2];
	struct gvm_vm_stats st;
	uint64_t *p, *p2, uf;
	struct gvm_bo *bo, *bo2;
	struct gvm_kernel k;
	pthread_t t[2];
	struct ctx c;
	unsigned int i;

	setup_cfg(&c, 0, 0, 1);
	bo = bo_at(&c, VA, 4, 0, &p);
	bo2 = bo_at(&c, VA_RO, 4, 0, &p2);
	hook_on(c.vm, true);
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 8, 1, 64));
	exec_on(c.q[0], &k, &uf);
	hook_wait(1);		/* the engine services inline, held */
	for (i = 0; i < 2; i++) {
		f[i] = (struct faulter){ .vm = c.vm, .addr = VA_RO + 8 * i,
					 .result = -1 };
		ASSERT_OK(pthread_create(&t[i], NULL, fault_at, &f[i]));
	}
	gvm__fault_queue_wait_for(c.dev, 2, 0);	/* both queued */
	pthread_mutex_lock(&hk.lock);
	ASSERT_TRUE(c.dev->fq.servicing);
	ASSERT_EQ(hk.n, 1);
	hk.released = true;
	pthread_cond_broadcast(&hk.cond);
	pthread_mutex_unlock(&hk.lock);
	uf_wait(&uf);
	ASSERT_EQ(svmt_last_status(c.q[0]), 1);
	ASSERT_EQ(p[1], 1);
	for (i = 0; i < 2; i++) {
		ASSERT_OK(pthread_join(t[i], NULL));
		ASSERT_EQ(f[i].result, 0);
	}
	gvm__vm_update_hook = NULL;
	/* the held one, then the thread's batch: one service, one covered */
	ASSERT_EQ(hk.n, 2);
	ASSERT_FALSE(pthread_equal(hk.who[0], c.dev->fq.thread));
	ASSERT_TRUE(pthread_equal(hk.who[1], c.dev->fq.thread));
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.faults_serviced, 3);
	ASSERT_EQ(st.fault_batches, 2);
	ASSERT_EQ(st.fault_batch_max, 2);
	ASSERT_EQ(st.faults_deduplicated, 1);
	gvm_bo_put(bo);
	gvm_bo_put(bo2);
	teardown(&c);
}

/*
 * Eight engines write eight pages of one 2 MiB of fresh memory in one
 * batch: the first fault makes the 2 MiB range and binds it, the seven
 * others find their pages mapped (by the page tables, for a write) and
 * are deduplicated; every store lands.
 */
TEST(faults_on_one_new_range_are_serviced_once)
{
	struct gvm_vm_stats st;
	uint64_t *p, uf[NQ];
	struct ctx c;
	unsigned int i;
	void *base;

	setup_svm(&c, NQ);
	p = map_2m(PROT_READ | PROT_WRITE, &base);
	gvm__fault_queue_hold(c.dev, true);
	for (i = 0; i < NQ; i++) {
		struct gvm_kernel k;

		ASSERT_OK(gvm_kernel_store_dword(&k, (uintptr_t)&p[i * 17 * K4 /
								8 + i],
						 100 + i, 64));
		exec_on(c.q[i], &k, &uf[i]);
	}
	gvm__fault_queue_wait_for(c.dev, NQ, 0);
	gvm__fault_queue_hold(c.dev, false);
	for (i = 0; i < NQ; i++) {
		uf_wait(&uf[i]);
		ASSERT_EQ(svmt_last_status(c.q[i]), 1);
	}
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.faults, NQ);
	ASSERT_EQ(st.faults_serviced, NQ);
	ASSERT_EQ(st.fault_batches, 1);
	ASSERT_EQ(st.svm_ranges_created, 1);
	ASSERT_EQ(st.svm_faults_by_size[2], 1);		/* one service */
	ASSERT_EQ(st.faults_deduplicated, NQ - 1);
	for (i = 0; i < NQ; i++)
		ASSERT_EQ(p[i * 17 * K4 / 8 + i], 100 + i);
	ASSERT_EQ(logged(c.vm, NULL), 0);
	teardown(&c);
	munmap(base, 4ull << 20);
}

/*
 * The range dedupe checks the page tables, not the range: in one batch, a
 * read makes a read-only range (the CPU maps the memory read-only); a
 * read of another page of it is deduplicated, a write there is not (its
 * service refuses it), nor is an atomic.
 */
TEST(range_dedupe_needs_the_access_mapped)
{
	static const struct scripted f[] = {
		{ 0, GVM_ACCESS_READ, 0, false },		/* serviced */
		{ 3 * K4, GVM_ACCESS_WRITE, -EACCES, false },	/* serviced */
		{ 3 * K4, GVM_ACCESS_READ, 0, true },	/* mapped, and its
							   page's write failed */
		{ 5 * K4, GVM_ACCESS_ATOMIC, -EACCES, false },	/* serviced */
		{ 9 * K4, GVM_ACCESS_READ, 0, true },
	};
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;
	void *base;

	setup_svm(&c, 0);
	p = map_2m(PROT_READ, &base);
	run_script(&c, (uintptr_t)p, f, sizeof(f) / sizeof(f[0]));
	st = svmt_stats(c.vm);
	ASSERT_EQ(st.svm_ranges_created, 1);
	ASSERT_EQ(st.faults_deduplicated, 2);
	teardown(&c);
	munmap(base, 4ull << 20);
}
