// SPDX-License-Identifier: MIT
/*
 * Userptr and SVM on the model mm (gvm_mm_model_create): the VM layer
 * unchanged, the CPU side driven by calls, and kernel-notifier semantics
 * that real memory cannot show: after pass 2 of an invalidation no engine
 * touches the old page, checked by poisoning it (freed frames are filled
 * with 0xa5 and checked when reused or counted: poison_violations), while
 * a kernel keeps loading and storing there until it faults.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <gvm/gvm.h>

#include "harness.h"
#include "svmtest.h"
#include "core/atomic.h"
#include "mm/mm.h"
#include "vm/dev.h"
#include "vm/pt_update.h"
#include "vm/svm.h"
#include "vm/vm.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define VA 0x20000000ull
#define RW (PROT_READ | PROT_WRITE)
#define POISON 0xa5a5a5a5a5a5a5a5ull

static struct gvm_mm *model(void)
{
	struct gvm_mm_model_config c = { .size = 64ull << 20 };
	struct gvm_mm *mm;

	ASSERT_OK(gvm_mm_model_create(&c, &mm));
	return mm;
}

static struct gvm_mm_model_stats mstats(struct gvm_mm *mm)
{
	struct gvm_mm_model_stats st;

	ASSERT_OK(gvm_mm_model_stats(mm, &st));
	return st;
}

static void put_u64(struct gvm_mm *mm, uint64_t a, uint64_t v)
{
	ASSERT_OK(gvm_mm_model_write(mm, a, &v, sizeof(v)));
}

static uint64_t get_u64(struct gvm_mm *mm, uint64_t a)
{
	uint64_t v = 0;

	ASSERT_OK(gvm_mm_model_read(mm, a, &v, sizeof(v)));
	return v;
}

struct uctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static void usetup(struct uctx *c, uint32_t flags)
{
	c->mm = model();
	ASSERT_OK(gvm_sim_device_create(NULL, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, c->mm, flags, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
}

static void uteardown(struct uctx *c)
{
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
	ASSERT_EQ(mstats(c->mm).poison_violations, 0);
	gvm_mm_put(c->mm);
}

static int bind_userptr(struct uctx *c, uint64_t va, uint64_t cpu,
			uint64_t len)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .addr = va,
				  .range = len, .userptr = cpu };

	return gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0);
}

/* Runs @k; the job's status. */
static int run(struct gvm_queue *q, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	int st = gvm_exec(q, k, &s, 1);

	if (st)
		return st;
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return st < 0 ? st : 0;
}

static int store(struct gvm_queue *q, uint64_t va, uint64_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_store_dword(&k, va, v, 64));
	return run(q, &k);
}

TEST(userptr_on_model_memory)
{
	struct uctx c;
	uint64_t a;
	struct gvm_kernel k;

	usetup(&c, 0);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, 8 * K4, RW, 0, &a));
	put_u64(c.mm, a, 5);
	ASSERT_OK(bind_userptr(&c, VA, a, 8 * K4));
	for (uint64_t i = 0; i < 8; i++)
		ASSERT_OK(store(c.q, VA + i * K4 + 8, 100 + i));
	for (uint64_t i = 0; i < 8; i++)
		ASSERT_EQ(get_u64(c.mm, a + i * K4 + 8), 100 + i);
	ASSERT_EQ(get_u64(c.mm, a), 5);
	/* the GPU sums what the CPU wrote, the result in the model */
	ASSERT_OK(gvm_kernel_checksum(&k, VA + K4, 2 * K4, VA + 7 * K4));
	ASSERT_OK(run(c.q, &k));
	ASSERT_EQ(get_u64(c.mm, a + 7 * K4), 101 + 102);

	/* madvise drops the pages: the next exec repins and sees zeros */
	ASSERT_OK(gvm_mm_model_madvise(c.mm, a + K4, K4,
				       GVM_MM_MODEL_DONTNEED));
	ASSERT_OK(run(c.q, &k));
	ASSERT_EQ(get_u64(c.mm, a + 7 * K4), 102);
	/* reclaim moves every page: the GPU follows */
	ASSERT_EQ(gvm_mm_model_reclaim(c.mm, a, 8 * K4), 8);
	ASSERT_OK(store(c.q, VA + 3 * K4, 33));
	ASSERT_EQ(get_u64(c.mm, a + 3 * K4), 33);
	/* unmapped: the exec cannot repin */
	ASSERT_OK(gvm_mm_model_munmap(c.mm, a, 8 * K4));
	ASSERT_NE(store(c.q, VA, 1), 0);
	uteardown(&c);
}

/*
 * gvm_vm_peek/poke of a userptr on model memory read and write the model
 * (its addresses are not the process's: they used to be -EFAULT).
 */
TEST(peek_poke_userptr_on_model_memory)
{
	struct uctx c;
	uint64_t a, v = 0;

	usetup(&c, 0);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, 4 * K4, RW, 0, &a));
	put_u64(c.mm, a + K4 + 8, 0x1234);
	ASSERT_OK(bind_userptr(&c, VA, a, 4 * K4));
	ASSERT_OK(gvm_vm_peek(c.vm, VA + K4 + 8, &v, sizeof(v)));
	ASSERT_EQ(v, 0x1234);
	v = 0x5678;
	/* across a page boundary */
	ASSERT_OK(gvm_vm_poke(c.vm, VA + 2 * K4 - 4, &v, sizeof(v)));
	ASSERT_EQ(get_u64(c.mm, a + 2 * K4 - 8) >> 32, 0x5678);
	ASSERT_EQ(get_u64(c.mm, a + 2 * K4), 0);
	/* the GPU sees the poke */
	ASSERT_OK(store(c.q, VA + 3 * K4, 1));
	ASSERT_OK(gvm_vm_peek(c.vm, VA + 3 * K4, &v, sizeof(v)));
	ASSERT_EQ(v, 1);
	/* read-only CPU memory: a peek reads, a poke cannot write */
	ASSERT_OK(gvm_mm_model_mprotect(c.mm, a, 4 * K4, PROT_READ));
	ASSERT_OK(gvm_vm_peek(c.vm, VA + K4 + 8, &v, sizeof(v)));
	ASSERT_EQ(v, 0x1234);
	ASSERT_EQ(gvm_vm_poke(c.vm, VA + K4 + 8, &v, sizeof(v)), -EFAULT);
	/* unmapped CPU memory: -EFAULT */
	ASSERT_OK(gvm_mm_model_munmap(c.mm, a, 4 * K4));
	ASSERT_EQ(gvm_vm_peek(c.vm, VA, &v, sizeof(v)), -EFAULT);
	uteardown(&c);
}

TEST(userptr_fork_copy_on_write)
{
	struct uctx c;
	struct gvm_mm *child;
	uint64_t a;

	usetup(&c, 0);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, 2 * K4, RW, 0, &a));
	ASSERT_OK(bind_userptr(&c, VA, a, 2 * K4));
	ASSERT_OK(store(c.q, VA, 1));
	ASSERT_OK(gvm_mm_model_fork(c.mm, &child));
	/* the GPU writes the parent's page: the child keeps its copy */
	ASSERT_OK(store(c.q, VA, 2));
	ASSERT_EQ(get_u64(c.mm, a), 2);
	ASSERT_EQ(get_u64(child, a), 1);
	/* the child writes: the parent's GPU mapping is untouched */
	put_u64(child, a + K4, 7);
	ASSERT_OK(store(c.q, VA + K4, 3));
	ASSERT_EQ(get_u64(c.mm, a + K4), 3);
	ASSERT_EQ(get_u64(child, a + K4), 7);
	gvm_mm_put(child);
	uteardown(&c);
}

/* ---- a kernel that runs until its page goes ----------------------------- */

struct spin_args {
	uint64_t va;		/* the page it loads and stores */
	uint64_t *started;	/* host words */
	uint64_t *poison_seen;
	uint64_t *iters;
	uint64_t *stop;
};

/*
 * Loads the word at va (never the poison: that would be a freed frame),
 * stores its iteration count after it, until an access faults (the page
 * went) or *stop.  Every lane call is a boundary at which the engine
 * acknowledges TLB invalidations, so the CPU side's invalidation ends
 * while the lane runs.
 */
static void spin_fn(struct gvm_lane *l, const void *argp)
{
	const struct spin_args *a = argp;
	uint64_t i;

	for (i = 0; !gvm_load_acquire(a->stop); i++) {
		uint64_t v = gvm_lane_load(l, a->va, 8);

		if (gvm_lane_faulted(l))
			break;
		if (v == POISON)
			gvm_store_release(a->poison_seen, 1);
		gvm_lane_store(l, a->va + 8, i, 8);
		if (gvm_lane_faulted(l))
			break;
		gvm_store_release(a->started, 1);
	}
	gvm_store_release(a->iters, i);
}

struct spin {
	uint64_t started, poison_seen, iters, stop, uf;
	struct spin_args args;
	struct gvm_fence *fence;
	bool lr;
};

/* @lr: a long-running VM (a user fence; else a fence out) */
static void spin_start(struct spin *s, struct gvm_queue *q, uint64_t va,
		       bool lr)
{
	struct gvm_sync sy = { .type = GVM_SYNC_FENCE,
			       .flags = GVM_SYNC_SIGNAL };
	struct gvm_kernel k;

	memset(s, 0, sizeof(*s));
	s->lr = lr;
	if (lr) {
		sy.type = GVM_SYNC_USER_FENCE;
		sy.addr = &s->uf;
		sy.value = 1;
	} else {
		sy.out = &s->fence;
	}
	s->args = (struct spin_args){ va, &s->started, &s->poison_seen,
				      &s->iters, &s->stop };
	ASSERT_OK(gvm_kernel_init(&k, "spin", spin_fn, 1, &s->args,
				  sizeof(s->args)));
	ASSERT_OK(gvm_exec(q, &k, &sy, 1));
	while (!gvm_load_acquire(&s->started))
		sched_yield();
}

static int spin_end(struct spin *s)
{
	int st;

	gvm_store_release(&s->stop, 1);
	if (s->lr) {
		ASSERT_OK(gvm_user_fence_wait(&s->uf, 1,
					      GVM_TIMEOUT_INFINITE));
		return 0;
	}
	ASSERT_OK(gvm_fence_wait(s->fence, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(s->fence);
	gvm_fence_put(s->fence);
	ASSERT_EQ(gvm_load_acquire(&s->poison_seen), 0);
	return st;
}

/*
 * munmap while a kernel loads and stores the page: when munmap returns,
 * both passes are done, the frame is freed and poisoned, and the kernel
 * must fault instead of touching it: it never reads the poison and never
 * writes the freed frame (checked when the pool is scanned).
 */
TEST(no_engine_touches_the_old_page_after_pass_2)
{
	struct uctx c;
	struct spin s;
	uint64_t a;

	usetup(&c, 0);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, K4, RW, 0, &a));
	put_u64(c.mm, a, 1234);
	ASSERT_OK(bind_userptr(&c, VA, a, K4));
	spin_start(&s, c.q, VA, false);
	ASSERT_OK(gvm_mm_model_munmap(c.mm, a, K4));
	/* the frame is poison now, and stays so */
	ASSERT_EQ(mstats(c.mm).poison_violations, 0);
	ASSERT_EQ(spin_end(&s), -EIO);	/* it faulted: never stopped */
	ASSERT_EQ(mstats(c.mm).poison_violations, 0);
	uteardown(&c);
}

/*
 * The same when the device cannot take the TLB invalidation (its fence
 * allocation fails, three times in a row here): the invalidation does not
 * end before one succeeds (every millisecond, the VM banned meanwhile).
 * It used to give up after two: munmap returned, the frame was freed, and
 * the kernel went on reading and writing it through its TLB.
 */
static const struct gvm_device_ops *real_ops;
static struct gvm_device_ops failing_tlb_ops;
static int tlb_failures;			/* atomic: still to fail */

static int failing_tlb_inval(struct gvm_device *dev, void *vm_priv,
			     uint64_t start, uint64_t size,
			     struct gvm_fence **done)
{
	if (__atomic_fetch_sub(&tlb_failures, 1, __ATOMIC_RELAXED) > 0)
		return -ENOMEM;
	return real_ops->tlb_inval(dev, vm_priv, start, size, done);
}

TEST(an_invalidation_waits_until_a_tlb_flush_succeeds)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .addr = VA + K4,
				  .range = K4 };
	struct uctx c;
	struct spin s;
	uint64_t a;

	usetup(&c, 0);
	real_ops = c.dev->ops;
	failing_tlb_ops = *real_ops;
	failing_tlb_ops.tlb_inval = failing_tlb_inval;
	c.dev->ops = &failing_tlb_ops;
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, 2 * K4, RW, 0, &a));
	ASSERT_OK(bind_userptr(&c, VA, a, K4));
	spin_start(&s, c.q, VA, false);
	gvm_store_relaxed(&tlb_failures, 3);
	ASSERT_OK(gvm_mm_model_munmap(c.mm, a, K4));
	ASSERT_LE(gvm_load_relaxed(&tlb_failures), 0);	/* all failed */
	/* Flushed: the kernel faults, or (before) reads the poisoned frame */
	while (!gvm_fence_is_signaled(s.fence) &&
	       !gvm_load_acquire(&s.poison_seen))
		sched_yield();
	ASSERT_EQ(spin_end(&s), -EIO);
	ASSERT_EQ(mstats(c.mm).poison_violations, 0);
	op.userptr = a + K4;				/* banned meanwhile */
	ASSERT_EQ(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0), -EIO);
	uteardown(&c);
}

/* ---- a stale userptr's PTEs are never published (issue 15) ------------- */

/*
 * A kernel that waits for the gate, then loads the word at va once and
 * reports what it saw (or that it faulted).
 */
struct gate_args {
	uint64_t va;
	uint64_t *gate, *done, *value, *faulted;
};

static void gate_fn(struct gvm_lane *l, const void *argp)
{
	const struct gate_args *a = argp;
	uint64_t v;

	while (!gvm_load_acquire(a->gate))
		sched_yield();
	v = gvm_lane_load(l, a->va, 8);
	gvm_store_release(a->faulted, gvm_lane_faulted(l) ? 1 : 0);
	gvm_store_release(a->value, v);
	gvm_store_release(a->done, 1);
}

static struct stale {
	struct uctx *c;
	uint64_t cpu;		/* the model page the userptr maps */
	uint64_t gate, done, value, faulted;
	int unmapped, loaded;
} stale;

static void *stale_munmap(void *arg)
{
	(void)arg;
	ASSERT_OK(gvm_mm_model_munmap(stale.c->mm, stale.cpu, K4));
	return NULL;
}

/*
 * BEFORE: the pages were fetched, the commit section not entered: munmap
 * them from another thread and let it return (both passes done; the
 * userptr is not live yet, so the notifier waits for nothing; the frame
 * is freed and poisoned).  COMMITTED: the page tables are committed and
 * visible to the GPU, the section not over: the kernel loads now.
 */
static void stale_hook(struct gvm_vm *vm, enum gvm_vm_update_point p)
{
	pthread_t t;

	if (vm != stale.c->vm)
		return;
	if (p == GVM_UPDATE_BEFORE_COMMIT && !stale.unmapped) {
		ASSERT_OK(pthread_create(&t, NULL, stale_munmap, NULL));
		ASSERT_OK(pthread_join(t, NULL));
		stale.unmapped = 1;
	} else if (p == GVM_UPDATE_COMMITTED && stale.unmapped &&
		   !stale.loaded) {
		gvm_store_release(&stale.gate, 1);
		while (!gvm_load_acquire(&stale.done))
			sched_yield();
		stale.loaded = 1;
	}
}

/*
 * Issue 15: a bind of a userptr whose pages are unmapped between their
 * fetch and the commit (the invalidation returned before the commit: the
 * userptr was not live) commits with STALE_ZAP.  No valid PTE to the freed
 * page may be visible at any instant: a kernel that walks the tables right
 * after the commit (the GPU takes no lock) must fault, not read the
 * poisoned frame.  Inline binds and bind jobs share the commit section.
 */
static void stale_userptr_bind(bool queued)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .addr = VA,
				  .range = K4 };
	struct gvm_sync sy = { .type = GVM_SYNC_FENCE,
			       .flags = GVM_SYNC_SIGNAL };
	struct gvm_sync bs[2] = {
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL },
	};
	struct gvm_fence *kf = NULL, *in = NULL, *out = NULL;
	struct gate_args ga;
	struct gvm_kernel k;
	struct uctx c;

	usetup(&c, 0);
	memset(&stale, 0, sizeof(stale));
	stale.c = &c;
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, K4, RW, 0, &stale.cpu));
	put_u64(c.mm, stale.cpu, 1234);
	op.userptr = stale.cpu;
	ga = (struct gate_args){ VA, &stale.gate, &stale.done, &stale.value,
				 &stale.faulted };
	sy.out = &kf;
	ASSERT_OK(gvm_kernel_init(&k, "gate", gate_fn, 1, &ga, sizeof(ga)));
	ASSERT_OK(gvm_exec(c.q, &k, &sy, 1));
	gvm__vm_update_hook = stale_hook;
	if (queued) {
		ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1,
					   &in));
		bs[0].fence = in;
		bs[1].out = &out;
		ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, bs, 2));
		ASSERT_OK(gvm_fence_signal(in));
		ASSERT_OK(gvm_fence_wait(out, GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(gvm_fence_get_status(out), 1);
		gvm_fence_put(out);
		gvm_fence_put(in);
	} else {
		ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	}
	gvm__vm_update_hook = NULL;
	ASSERT_EQ(stale.unmapped, 1);
	ASSERT_EQ(stale.loaded, 1);
	ASSERT_OK(gvm_fence_wait(kf, GVM_TIMEOUT_INFINITE));
	/* the load saw no valid PTE: it faulted and read nothing */
	ASSERT_NE(gvm_load_acquire(&stale.value), POISON);
	ASSERT_EQ(gvm_load_acquire(&stale.faulted), 1);
	ASSERT_EQ(gvm_fence_get_status(kf), -EIO);
	gvm_fence_put(kf);
	ASSERT_EQ(mstats(c.mm).poison_violations, 0);
	uteardown(&c);
}

TEST(stale_userptr_inline_bind_never_publishes_its_ptes)
{
	stale_userptr_bind(false);
}

TEST(stale_userptr_bind_job_never_publishes_its_ptes)
{
	stale_userptr_bind(true);
}

/* ---- SVM ---------------------------------------------------------------- */

struct sctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct svmt_vm v;
	uint64_t out;		/* a model page for results */
};

static void ssetup(struct sctx *c)
{
	c->mm = model();
	ASSERT_OK(gvm_sim_device_create(NULL, &c->dev));
	svmt_vm_init(&c->v, c->dev, c->mm);
	ASSERT_OK(gvm_mm_model_mmap(c->mm, 0, K4, RW, 0, &c->out));
}

/* Runs @k to its end; true if it faulted (the fault log grew). */
static bool srun(struct sctx *c, const struct gvm_kernel *k)
{
	uint32_t n = svmt_logged(c->v.vm, NULL), m;
	struct gvm_fault_info f;

	svmt_run(c->v.q, (struct gvm_kernel *)k);
	m = svmt_logged(c->v.vm, &f);
	if (m != n)
		fprintf(stderr, "%s: fault at 0x%llx\n", k->name,
			(unsigned long long)f.addr);
	return m != n;
}

static bool sstore(struct sctx *c, uint64_t va, uint64_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_store_dword(&k, va, v, 64));
	return srun(c, &k);
}

static void sfill(struct sctx *c, uint64_t va, uint64_t size, uint32_t pat)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_fill(&k, va, size, pat));
	ASSERT_FALSE(srun(c, &k));
}

static void steardown(struct sctx *c)
{
	svmt_vm_fini(&c->v);
	gvm_device_put(c->dev);
	ASSERT_EQ(mstats(c->mm).poison_violations, 0);
	gvm_mm_put(c->mm);
}

/* The GPU's sum of [va, va + size) (the result in host memory). */
static uint64_t gsum(struct sctx *c, uint64_t va, uint64_t size)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_checksum(&k, va, size, c->out));
	ASSERT_FALSE(srun(c, &k));
	return get_u64(c->mm, c->out);
}

TEST(svm_faults_migrates_and_cpu_brings_back)
{
	struct sctx c;
	struct gvm_vm_stats st;
	uint64_t a, v;

	ssetup(&c);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2, RW, 0, &a));
	for (uint64_t i = 0; i < 512; i++)
		put_u64(c.mm, a + i * K4, i);
	ASSERT_EQ(gsum(&c, a, M2), 511 * 512 / 2 * 1);
	/* the GPU fills: its pages went to VRAM (default policy) */
	sfill(&c, a, M2, 0x01010101);
	st = svmt_stats(c.v.vm);
	ASSERT_GT(st.svm_migrations, 0);
	/* a CPU access brings the range back, as a CPU fault would */
	v = get_u64(c.mm, a + 77 * K4);
	ASSERT_EQ(v, 0x0101010101010101ull);
	ASSERT_GT(mstats(c.mm).devmem_faults, 0);
	put_u64(c.mm, a + 5 * K4, 0);
	ASSERT_EQ(gsum(&c, a + 5 * K4, K4), 0x0101010101010101ull * 511);
	steardown(&c);
}

/*
 * peek/poke under a mirror on the model mm: model addresses, and a range
 * in VRAM comes back for them as for a CPU access.
 */
TEST(svm_peek_poke_through_the_model)
{
	struct sctx c;
	uint64_t a, v = 0;

	ssetup(&c);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2, RW, 0, &a));
	ASSERT_OK(gvm_vm_poke(c.v.vm, a + 3 * K4, &(uint64_t){ 77 }, 8));
	ASSERT_EQ(get_u64(c.mm, a + 3 * K4), 77);
	sfill(&c, a + 64 * K4, 64 * K4, 0x02020202);
	ASSERT_GT(svmt_stats(c.v.vm).svm_migrations, 0);
	ASSERT_OK(gvm_vm_peek(c.v.vm, a + 64 * K4 + 16, &v, sizeof(v)));
	ASSERT_EQ(v, 0x0202020202020202ull);
	ASSERT_GT(mstats(c.mm).devmem_faults, 0);
	ASSERT_EQ(gsum(&c, a + 3 * K4, K4), 77);
	steardown(&c);
}

/* Runs @k with a user fence at model address @uf (value @v); waits. */
static void srun_ufence(struct sctx *c, const struct gvm_kernel *k,
			uint64_t uf, uint64_t v)
{
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL,
			      .addr = (uint64_t *)(uintptr_t)uf, .value = v };

	ASSERT_OK(gvm_exec(c->v.q, k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait_mm(c->mm, uf, v, GVM_TIMEOUT_INFINITE));
}

/*
 * User fences in model memory: stored through the model by the writer
 * (also when the fence's page is in VRAM: it comes back), waited for with
 * gvm_user_fence_wait_mm; a read-only one is refused at submission.
 */
TEST(svm_user_fence_in_model_memory)
{
	struct sctx c;
	struct gvm_kernel k;
	uint64_t a, f, v;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .value = 1 };

	ssetup(&c);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2, RW, 0, &a));
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, K4, RW, 0, &f));
	ASSERT_OK(gvm_kernel_store_dword(&k, a + 8, 5, 64));
	srun_ufence(&c, &k, f, 1);
	ASSERT_EQ(get_u64(c.mm, f), 1);
	ASSERT_EQ(get_u64(c.mm, a + 8), 5);
	ASSERT_EQ(gvm_user_fence_wait_mm(c.mm, f, 1, 0), 0);
	ASSERT_EQ(gvm_user_fence_wait_mm(c.mm, f, 2, 0), -ETIME);
	/* the fence inside the range the kernel moves to VRAM */
	ASSERT_OK(gvm_kernel_fill(&k, a, 64 * K4, 0x03030303));
	srun_ufence(&c, &k, a + 128 * K4, 7);
	/* (not in the bytes it fills: the waiter would read them while the
	   kernel writes them, a race ThreadSanitizer reports) */
	ASSERT_OK(gvm_kernel_fill(&k, a, 64 * K4, 0x04040404));
	srun_ufence(&c, &k, a + 64 * K4 + 8, 9);
	ASSERT_GT(svmt_stats(c.v.vm).svm_migrations, 0);
	ASSERT_EQ(get_u64(c.mm, a + 64 * K4 + 8), 9);
	ASSERT_EQ(get_u64(c.mm, a + 8), 0x0404040404040404ull);
	ASSERT_EQ(get_u64(c.mm, a + 128 * K4), 7);
	/* read-only model memory: refused, nothing run */
	ASSERT_OK(gvm_mm_model_mprotect(c.mm, f, K4, PROT_READ));
	s.addr = (uint64_t *)(uintptr_t)f;
	ASSERT_EQ(gvm_exec(c.v.q, &k, &s, 1), -EFAULT);
	/* unmapped: still the model's range, so -EFAULT (even where the
	   process happens to map that address) */
	ASSERT_OK(gvm_mm_model_munmap(c.mm, f, K4));
	ASSERT_EQ(gvm_exec(c.v.q, &k, &s, 1), -EFAULT);
	ASSERT_EQ(gvm_user_fence_wait_mm(c.mm, f, 1, 0), -EFAULT);
	v = get_u64(c.mm, a + 24);
	ASSERT_EQ(v, 0x0404040404040404ull);
	steardown(&c);
}

TEST(svm_munmap_mprotect_mremap_fork_under_a_mirror)
{
	struct sctx c;
	struct gvm_mm *child;
	uint64_t a, b;

	ssetup(&c);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, 2 * M2, RW, 0, &a));
	sfill(&c, a, 2 * M2, 0x02020202);
	/* partial munmap: the rest stays readable by both */
	ASSERT_OK(gvm_mm_model_munmap(c.mm, a + M2 / 2, M2 / 2));
	ASSERT_EQ(gsum(&c, a, K4), 0x0202020202020202ull * 512);
	ASSERT_EQ(get_u64(c.mm, a + M2), 0x0202020202020202ull);
	ASSERT_TRUE(sstore(&c, a + M2 / 2, 1));	/* a hole: faults */
	/* read-only: GPU reads work, writes fail */
	ASSERT_OK(gvm_mm_model_mprotect(c.mm, a + M2, M2, PROT_READ));
	ASSERT_EQ(gsum(&c, a + M2, K4), 0x0202020202020202ull * 512);
	ASSERT_TRUE(sstore(&c, a + M2, 1));
	ASSERT_EQ(get_u64(c.mm, a + M2), 0x0202020202020202ull);
	/* mremap: the data (device-resident or not) moves along */
	ASSERT_OK(gvm_mm_model_mprotect(c.mm, a + M2, M2, RW));
	sfill(&c, a + M2 + M2 / 2, M2 / 2, 0x03030303);
	ASSERT_OK(gvm_mm_model_mremap(c.mm, a + M2, M2, M2,
				      GVM_MM_MODEL_MAYMOVE |
					      GVM_MM_MODEL_FIXED,
				      a + 4 * M2, &b));
	ASSERT_EQ(gsum(&c, b + M2 / 2, K4), 0x0303030303030303ull * 512);
	ASSERT_EQ(get_u64(c.mm, b + M2 - 8), 0x0303030303030303ull);
	ASSERT_TRUE(sstore(&c, a + M2, 1));		/* gone */
	/* fork: the child has the data, the GPU writes only the parent's */
	ASSERT_OK(gvm_mm_model_fork(c.mm, &child));
	ASSERT_EQ(get_u64(child, b), 0x0202020202020202ull);
	ASSERT_FALSE(sstore(&c, b, 9));
	ASSERT_EQ(get_u64(c.mm, b), 9);
	ASSERT_EQ(get_u64(child, b), 0x0202020202020202ull);
	gvm_mm_put(child);
	steardown(&c);
}

struct reclaimer {
	struct gvm_mm *mm;
	uint64_t a, n;
};

/*
 * Reclaim (a MIGRATE invalidation, then the page moves to another frame)
 * while an SVM kernel spins on the page: each time, it faults, refetches
 * the new frame and goes on; it never sees the poison of the old one.
 */
TEST(svm_injected_reclaim_under_a_running_kernel)
{
	struct sctx c;
	struct spin s;
	uint64_t a, rounds = gvm_test_scale(50), last;

	ssetup(&c);
	gvm_store_relaxed(&gvm__svm_no_migration, true);	/* frames */
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, K4, RW, 0, &a));
	put_u64(c.mm, a, 4321);
	spin_start(&s, c.v.q, a, true);
	for (uint64_t i = 0; i < rounds; i++)
		ASSERT_EQ(gvm_mm_model_reclaim(c.mm, a, K4), 1);
	ASSERT_EQ(spin_end(&s), 0);
	last = get_u64(c.mm, a + 8);
	ASSERT_EQ(last + 1, s.iters);
	ASSERT_EQ(get_u64(c.mm, a), 4321);
	ASSERT_EQ(mstats(c.mm).reclaimed, rounds);
	gvm_store_relaxed(&gvm__svm_no_migration, false);
	steardown(&c);
}

static void prefetch(struct sctx *c, uint64_t va, uint64_t len, uint32_t mem)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH, .addr = va,
				  .range = len, .prefetch_mem = mem };

	ASSERT_OK(gvm_vm_bind(c->v.vm, NULL, &op, 1, NULL, 0));
}

/*
 * Found by the SVM fuzzer: device memory whose pages mremap moved stayed
 * allocated but left the eviction LRU (the move freed the old extent
 * before inserting the new one, so the devmem looked unused for a
 * moment), and no BO could have that VRAM any more (-ENOSPC).
 */
TEST(svm_memory_moved_by_mremap_can_still_be_evicted)
{
	struct gvm_sim_config cfg = { .vram_size = 4ull << 20 };
	struct gvm_device_info info;
	struct sctx c;
	struct gvm_bo *bo;
	uint64_t a, b;

	c.mm = model();
	ASSERT_OK(gvm_sim_device_create(&cfg, &c.dev));
	svmt_vm_init(&c.v, c.dev, c.mm);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, K4, RW, 0, &c.out));
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2, RW, 0, &a));
	put_u64(c.mm, a + 8, 77);
	prefetch(&c, a, M2, GVM_MEM_VRAM);
	ASSERT_GT(svmt_stats(c.v.vm).svm_migrations, 0);
	ASSERT_OK(gvm_mm_model_mremap(c.mm, a, M2, M2,
				      GVM_MM_MODEL_MAYMOVE |
					      GVM_MM_MODEL_FIXED,
				      a + 2 * M2, &b));
	ASSERT_OK(gvm_device_query(c.dev, &info));
	ASSERT_LT(info.vram_free, 3ull << 20);	/* still resident */
	/* a VRAM-only BO needs the SVM memory out */
	ASSERT_OK(gvm_bo_create(c.dev, 3ull << 20, GVM_MEM_VRAM, NULL, &bo));
	gvm_bo_put(bo);
	ASSERT_EQ(get_u64(c.mm, b + 8), 77);
	steardown(&c);
}

/*
 * Found by the SVM fuzzer: device-resident data moved by mremap into the
 * hole an munmap left in another device-resident range.  The extent of
 * the moved data lay inside the span of the other's, and walks by address
 * (the CPU's fault-back, the next mremap, munmap) found only the outer
 * one: the moved pages were device pages with no data anywhere (poisoned
 * on the next access), or kept their data when unmapped.
 */
TEST(svm_mremap_into_the_hole_of_a_resident_range)
{
	struct sctx c;
	uint64_t a, b, r, d;

	ssetup(&c);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2, RW, 0, &a));
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, 64 * K4, RW, 0, &b));
	for (uint64_t i = 0; i < 512; i++)
		put_u64(c.mm, a + i * K4, 1000 + i);
	for (uint64_t i = 0; i < 64; i++)
		put_u64(c.mm, b + i * K4, 2000 + i);
	prefetch(&c, a, M2, GVM_MEM_VRAM);
	prefetch(&c, b, 64 * K4, GVM_MEM_VRAM);
	ASSERT_GE(gvm__mm_devmem_bytes(c.mm), M2 + 64 * K4);
	/* a hole in the middle of a's extent, b's data moved into it */
	ASSERT_OK(gvm_mm_model_munmap(c.mm, a + 128 * K4, 64 * K4));
	ASSERT_OK(gvm_mm_model_mremap(c.mm, b, 64 * K4, 64 * K4,
				      GVM_MM_MODEL_MAYMOVE |
					      GVM_MM_MODEL_FIXED,
				      a + 128 * K4, &r));
	ASSERT_EQ(r, a + 128 * K4);
	/* the whole middle moves on, both extents' parts */
	ASSERT_OK(gvm_mm_model_mremap(c.mm, a + 64 * K4, 192 * K4, 192 * K4,
				      GVM_MM_MODEL_MAYMOVE |
					      GVM_MM_MODEL_FIXED,
				      a + 2 * M2, &d));
	for (uint64_t i = 0; i < 192; i++)
		ASSERT_EQ(get_u64(c.mm, d + i * K4),
			  i >= 64 && i < 128 ? 2000 + i - 64 : 1064 + i);
	ASSERT_EQ(get_u64(c.mm, a + 8 * K4), 1008);
	ASSERT_EQ(get_u64(c.mm, a + 300 * K4), 1300);
	ASSERT_EQ(mstats(c.mm).poison_violations, 0);
	steardown(&c);
}

/*
 * Found by the SVM fuzzer (both of its last open defects): a range's
 * refetch that failed (memory made read-only, or PROT_NONE) left the old
 * pages in the range but took a fresh notifier sequence.  The next bind
 * that rewrites the range's PTEs from its pages (a PREFETCH over it, which
 * replans the touched span) passed the sequence recheck and mapped the old
 * pages again, valid and writable: a GPU store to read-only memory ran,
 * and one to memory madvise(DONTNEED) had freed wrote a freed frame.
 */
TEST(svm_failed_refetch_never_maps_the_old_pages)
{
	struct sctx c;
	uint64_t a;

	ssetup(&c);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, 16 * K4, RW, 0, &a));
	/* in VRAM (the fill's placement), then read-only */
	sfill(&c, a, 16 * K4, 0x04040404);
	ASSERT_OK(gvm_mm_model_mprotect(c.mm, a, 16 * K4, PROT_READ));
	/* a writable range, read-only memory: the refetch fails; twice */
	prefetch(&c, a, 16 * K4, GVM_MEM_SYSTEM);
	prefetch(&c, a, 16 * K4, GVM_MEM_SYSTEM);
	ASSERT_TRUE(sstore(&c, a + 5 * K4, 1));
	ASSERT_EQ(get_u64(c.mm, a + 5 * K4), 0x0404040404040404ull);
	ASSERT_EQ(gsum(&c, a, K4), 0x0404040404040404ull * 512);
	/* system pages, freed by DONTNEED, then PROT_NONE */
	gvm_store_relaxed(&gvm__svm_no_migration, true);
	ASSERT_OK(gvm_mm_model_mprotect(c.mm, a, 16 * K4, RW));
	sfill(&c, a, 16 * K4, 0x05050505);
	ASSERT_OK(gvm_mm_model_madvise(c.mm, a, 16 * K4,
				       GVM_MM_MODEL_DONTNEED));
	ASSERT_OK(gvm_mm_model_mprotect(c.mm, a, 16 * K4, PROT_NONE));
	prefetch(&c, a, 16 * K4, GVM_MEM_SYSTEM);
	prefetch(&c, a, 16 * K4, GVM_MEM_SYSTEM);
	ASSERT_TRUE(sstore(&c, a + 3 * K4, 2));
	ASSERT_EQ(mstats(c.mm).poison_violations, 0);
	gvm_store_relaxed(&gvm__svm_no_migration, false);
	steardown(&c);
}

/*
 * Found by the SVM fuzzer: a PREFETCH of a BO to VRAM that SVM memory
 * fills failed the bind with -ENOSPC (holding reservations, the move may
 * evict idle BOs only, never SVM memory).  A prefetch is a hint: the BO
 * stays where it is, as a busy one does.
 */
TEST(svm_prefetch_of_a_bo_into_vram_full_of_svm_memory)
{
	struct gvm_sim_config cfg = { .vram_size = 4ull << 20 };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
				  .range = 3ull << 20 };
	struct sctx c;
	struct gvm_bo *bo;
	uint64_t a;

	c.mm = model();
	ASSERT_OK(gvm_sim_device_create(&cfg, &c.dev));
	svmt_vm_init(&c.v, c.dev, c.mm);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, K4, RW, 0, &c.out));
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2, RW, 0, &a));
	prefetch(&c, a, M2, GVM_MEM_VRAM);
	ASSERT_GT(svmt_stats(c.v.vm).svm_migrations, 0);
	/* no room left for it in VRAM: it starts in system memory */
	ASSERT_OK(gvm_bo_create(c.dev, 3ull << 20,
				GVM_MEM_VRAM | GVM_MEM_SYSTEM, NULL, &bo));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(c.v.vm, NULL, &op, 1, NULL, 0));
	prefetch(&c, VA, 3ull << 20, GVM_MEM_VRAM);
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);	/* still resident */
	op = (struct gvm_bind_op){ .op = GVM_BIND_UNMAP, .addr = VA,
				   .range = 3ull << 20 };
	ASSERT_OK(gvm_vm_bind(c.v.vm, NULL, &op, 1, NULL, 0));
	gvm_bo_put(bo);
	steardown(&c);
}

static uint64_t vram_free(struct gvm_device *dev)
{
	struct gvm_device_info info;

	ASSERT_OK(gvm_device_query(dev, &info));
	return info.vram_free;
}

/*
 * A BO of @size that may live in VRAM or system memory, in @region now;
 * VM-local (@vm) or external.
 */
static struct gvm_bo *vs_bo(struct sctx *c, uint64_t size, struct gvm_vm *vm,
			    uint32_t region)
{
	struct gvm_bo *bo;

	ASSERT_OK(gvm_bo_create(c->dev, size, GVM_MEM_VRAM | GVM_MEM_SYSTEM,
				vm, &bo));
	ASSERT_EQ(gvm_bo_region(bo), region);
	return bo;
}

/*
 * Found by the SVM fuzzer: an exec whose revalidation needs page tables
 * (to rebind a moved BO whose tables were reclaimed) in VRAM full of SVM
 * memory and of the VM's own BOs failed with -ENOSPC.  Page tables may
 * not evict SVM memory while reservations are held, and the exec's rounds
 * of waiting for VRAM waited for nothing (none of its VRAM-only BOs was
 * missing: 0 bytes), 32 times; a round now asks for the page tables'
 * headroom, so SVM memory moves back.
 */
TEST(svm_exec_gets_page_tables_from_svm_memory)
{
	struct gvm_sim_config cfg = { .vram_size = 2ull << 20 };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA };
	struct gvm_bo *x, *y, *z;
	struct gvm_kernel k;
	struct sctx c;
	uint64_t a, f;

	c.mm = model();
	ASSERT_OK(gvm_sim_device_create(&cfg, &c.dev));
	svmt_vm_init(&c.v, c.dev, c.mm);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, K4, RW, 0, &c.out));
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2 / 2, RW, 0, &a));
	prefetch(&c, a, M2 / 2, GVM_MEM_VRAM);
	ASSERT_GE(gvm__mm_devmem_bytes(c.mm), M2 / 2);
	/* a BO mapped in the VM, moved out by pressure; the VM's own
	   BOs take its room */
	x = vs_bo(&c, vram_free(c.dev) - 64 * K4, NULL, GVM_MEM_VRAM);
	op.bo = x;
	op.range = gvm_bo_size(x);
	ASSERT_OK(gvm_vm_bind(c.v.vm, NULL, &op, 1, NULL, 0));
	ASSERT_OK(gvm_bo_create(c.dev, gvm_bo_size(x), GVM_MEM_VRAM, NULL,
				&y));
	ASSERT_EQ(gvm_bo_region(x), GVM_MEM_SYSTEM);
	gvm_bo_put(y);
	gvm__dev_reap(c.dev);
	y = vs_bo(&c, gvm_bo_size(x), c.v.vm, GVM_MEM_VRAM);
	/* the VM's tables reclaimed (it is idle), their room taken too */
	ASSERT_OK(gvm__pt_reclaim(c.dev));
	f = vram_free(c.dev);
	ASSERT_GT(f, 0);
	z = vs_bo(&c, f, c.v.vm, GVM_MEM_VRAM);
	ASSERT_EQ(vram_free(c.dev), 0);
	/* the exec rebinds x: its tables come from SVM memory */
	ASSERT_OK(gvm_kernel_store_dword(&k, VA + 8, 7, 64));
	ASSERT_FALSE(srun(&c, &k));
	ASSERT_LT(gvm__mm_devmem_bytes(c.mm), M2 / 2);	/* moved back */
	op = (struct gvm_bind_op){ .op = GVM_BIND_UNMAP, .addr = VA,
				   .range = gvm_bo_size(x) };
	ASSERT_OK(gvm_vm_bind(c.v.vm, NULL, &op, 1, NULL, 0));
	gvm_bo_put(x);
	gvm_bo_put(y);
	gvm_bo_put(z);
	steardown(&c);
}

/*
 * Found by the SVM fuzzer: a read-only range whose pages are in device
 * memory was mapped from there whatever the CPU's protection, so a GPU
 * read of memory made PROT_NONE ran (the check of the CPU's mapping was
 * made for writable ranges only).
 */
TEST(svm_prot_none_device_memory_is_not_mapped)
{
	struct gvm_kernel k;
	struct sctx c;
	uint64_t a;

	ssetup(&c);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2, RW, 0, &a));	/* aligned */
	sfill(&c, a, M2, 0x06060606);		/* one range, in VRAM */
	/* read-only: the range is made again read-only, still in VRAM */
	ASSERT_OK(gvm_mm_model_mprotect(c.mm, a, M2, PROT_READ));
	ASSERT_EQ(gsum(&c, a, K4), 0x0606060606060606ull * 512);
	ASSERT_GE(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_OK(gvm_mm_model_mprotect(c.mm, a, M2, PROT_NONE));
	ASSERT_OK(gvm_kernel_checksum(&k, a, K4, c.out));
	ASSERT_TRUE(srun(&c, &k));
	steardown(&c);
}

/* ---- queued binds and pages fetched since (review findings) ------------- */

/* A bind of @op that waits for @in (a fence nobody signalled yet). */
static void bind_after(struct gvm_vm *vm, const struct gvm_bind_op *op,
		       struct gvm_fence *in, struct gvm_fence **out)
{
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE, .fence = in },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
		  .out = out },
	};

	ASSERT_OK(gvm_vm_bind(vm, NULL, op, 1, s, 2));
}

static struct gvm_fence *new_fence(void)
{
	struct gvm_fence *f;

	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &f));
	return f;
}

/*
 * A queued PREFETCH over a userptr: the CPU replaces the memory, an exec
 * repins it (new pages, new sequence), then the job runs.  It used to
 * write the pages it copied at the call, and recheck them against the
 * new sequence: the exec's store went to the freed frame.  A prefetch
 * has nothing to write for a userptr (it moves BOs only).
 */
TEST(queued_prefetch_over_a_userptr_writes_no_stale_pages)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH, .addr = VA,
				  .range = K4,
				  .prefetch_mem = GVM_MEM_SYSTEM };
	struct gvm_fence *in = new_fence(), *done = NULL;
	struct uctx c;
	uint64_t a, a2;

	usetup(&c, 0);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, K4, RW, 0, &a));
	put_u64(c.mm, a, 111);
	ASSERT_OK(bind_userptr(&c, VA, a, K4));
	bind_after(c.vm, &op, in, &done);
	ASSERT_OK(gvm_mm_model_munmap(c.mm, a, K4));
	ASSERT_OK(gvm_mm_model_mmap(c.mm, a, K4, RW, GVM_MM_MODEL_FIXED,
				    &a2));
	ASSERT_EQ(a2, a);
	put_u64(c.mm, a, 222);
	/* the exec repins; its kernel runs after the bind job */
	{
		struct gvm_fence *kf = NULL;
		struct gvm_sync s = { .type = GVM_SYNC_FENCE,
				      .flags = GVM_SYNC_SIGNAL, .out = &kf };
		struct gvm_kernel k;

		ASSERT_OK(gvm_kernel_store_dword(&k, VA + 8, 777, 64));
		ASSERT_OK(gvm_exec(c.q, &k, &s, 1));
		ASSERT_OK(gvm_fence_signal(in));
		ASSERT_OK(gvm_fence_wait(kf, GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(gvm_fence_get_status(kf), 1);
		gvm_fence_put(kf);
	}
	ASSERT_EQ(get_u64(c.mm, a), 222);
	ASSERT_EQ(get_u64(c.mm, a + 8), 777);
	ASSERT_EQ(mstats(c.mm).poison_violations, 0);
	gvm_fence_put(done);
	gvm_fence_put(in);
	uteardown(&c);
}

/*
 * A queued PREFETCH to system memory over an SVM range in device memory:
 * the call's own svm_prefetch moves the range back and binds its system
 * pages; the CPU writes them; then the job runs.  It used to write the
 * device addresses it copied at the call (VRAM freed by then), so the GPU
 * read stale data.
 */
TEST(queued_prefetch_over_an_svm_range_writes_no_stale_device_memory)
{
	struct gvm_fence *in = new_fence(), *done = NULL;
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH, .range = M2,
				  .prefetch_mem = GVM_MEM_SYSTEM };
	struct sctx c;
	uint64_t a;

	ssetup(&c);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2, RW, 0, &a));
	sfill(&c, a, M2, 0x01010101);		/* a 2 MiB range, in VRAM */
	ASSERT_EQ(svmt_stats(c.v.vm).svm_migrations, 1);
	op.addr = a;
	bind_after(c.v.vm, &op, in, &done);
	for (uint64_t i = 0; i < M2 / K4; i++)
		put_u64(c.mm, a + i * K4, 0);
	ASSERT_OK(gvm_fence_signal(in));
	ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gsum(&c, a, K4), 0x0101010101010101ull * 511);
	gvm_fence_put(done);
	gvm_fence_put(in);
	steardown(&c);
}

/*
 * A queued PREFETCH over an SVM range that madvise drops (and frees)
 * before the job runs: the job used to commit the freed range (a
 * use-after-free, a crash).  The range is left to the next fault.
 */
TEST(queued_prefetch_over_an_svm_range_dropped_before_its_job)
{
	struct gvm_fence *in = new_fence(), *done = NULL;
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH, .range = M2,
				  .prefetch_mem = GVM_MEM_SYSTEM };
	struct gvm_madvise adv = {
		.set = GVM_MADV_PREFERRED_LOC,
		.attrs.preferred_loc = GVM_LOC_SYSTEM,
	};
	struct sctx c;
	uint64_t a, dropped;

	ssetup(&c);
	ASSERT_OK(gvm_mm_model_mmap(c.mm, 0, M2, RW, 0, &a));
	sfill(&c, a, M2, 0x02020202);
	op.addr = a;
	bind_after(c.v.vm, &op, in, &done);
	dropped = svmt_stats(c.v.vm).svm_ranges_dropped;
	ASSERT_OK(gvm_vm_madvise(c.v.vm, a, M2, &adv));
	ASSERT_EQ(svmt_stats(c.v.vm).svm_ranges_dropped, dropped + 1);
	ASSERT_OK(gvm_fence_signal(in));
	ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(done), 1);
	ASSERT_EQ(gsum(&c, a, K4), 0x0202020202020202ull * 512);
	gvm_fence_put(done);
	gvm_fence_put(in);
	steardown(&c);
}
