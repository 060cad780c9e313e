// SPDX-License-Identifier: MIT
/*
 * Stress test of VM_BIND: several threads bind and unbind in one VM, each
 * on two bind queues of its own, with in-fences that a signaller thread
 * signals in random order (some with an error), while the page tables are
 * written inline or by jobs.
 *
 * Each binder owns a window of the VA space and keeps a per-page model of
 * it (its binds there are ordered: one queue in order, two queues through
 * the range fences); all binders also bind into one shared window, where
 * the outcome depends on the interleaving.  At the end, after every fence:
 *   - every page of every private window translates as its model says;
 *   - every page of the shared window translates as the VA tree says;
 *   - the page tables and the VA tree validate, nothing is banned, and the
 *     BO references come back to one each after the VM goes.
 * Sizes scale with gvm_test_scale(); randomness from gvm_test_seed().
 */
#include <pthread.h>

#include <gvm/gvm.h>
#include <gvm/vm.h>

#include "harness.h"
#include "testdev.h"

#include "core/sync.h"
#include "pt/pt_fmt.h"
#include "vm/bo.h"
#include "vm/vm.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M2 (2ull << 20)
#define G1 (1ull << 30)

#define NBINDERS 3
#define WIN (4 * M2)			/* each private window */
#define WPAGES (WIN / K4)
#define SHARED (64 * G1)		/* the shared window */
#define PRIV(t) (65 * G1 + (uint64_t)(t) * G1 + M2 / 2)
#define NSHARED_BOS 3
#define MAX_OUT 32

struct mpage {
	uint8_t kind;			/* 0 none, 1 BO, 2 NULL */
	uint8_t ro;
	struct gvm_bo *bo;
	uint64_t off;
};

static struct gvm_vm *vm;
static struct gvm_bo *shared_bos[NSHARED_BOS];

/* In-fences waiting to be signalled by the signaller. */
static struct {
	pthread_mutex_t lock;
	struct gvm_fence *f[256];
	unsigned int n;
	uint32_t stop;			/* atomic: binders are done */
} gate = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void gate_add(struct gvm_fence *f)
{
	for (;;) {
		pthread_mutex_lock(&gate.lock);
		if (gate.n < 256) {
			gate.f[gate.n++] = gvm_fence_get(f);
			pthread_mutex_unlock(&gate.lock);
			return;
		}
		pthread_mutex_unlock(&gate.lock);
		sched_yield();
	}
}

static void *signaller(void *arg)
{
	struct gvm_rng r = { gvm_test_seed() ^ 0x5157 };
	unsigned long signalled = 0;

	(void)arg;
	for (;;) {
		struct gvm_fence *f = NULL;

		pthread_mutex_lock(&gate.lock);
		if (gate.n) {
			unsigned int i = (unsigned int)gvm_rng_below(&r, gate.n);

			f = gate.f[i];
			gate.f[i] = gate.f[--gate.n];
		}
		pthread_mutex_unlock(&gate.lock);
		if (!f) {
			if (__atomic_load_n(&gate.stop, __ATOMIC_ACQUIRE))
				break;
			sched_yield();
			continue;
		}
		if (gvm_rng_below(&r, 4) == 0)
			gvm_test_sleep_ns((int64_t)gvm_rng_below(&r, 20000));
		if (gvm_rng_below(&r, 8) == 0)
			gvm_fence_signal_error(f, -EIO);
		else
			gvm_fence_signal(f);
		gvm_fence_put(f);
		signalled++;
	}
	return (void *)signalled;
}

struct binder {
	int id;
	pthread_t thread;
	struct gvm_queue *q[2];
	struct gvm_bo *own;		/* mapped only by this binder */
	struct mpage model[WPAGES];
	struct gvm_fence *out[MAX_OUT];
	unsigned int nr_out;
	unsigned long binds, jobs;
};

static void keep_out(struct binder *b, struct gvm_fence *f)
{
	if (b->nr_out == MAX_OUT) {
		ASSERT_OK(gvm_fence_wait(b->out[0], GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(gvm_fence_get_status(b->out[0]), 1);
		gvm_fence_put(b->out[0]);
		memmove(b->out, b->out + 1, (MAX_OUT - 1) * sizeof(b->out[0]));
		b->nr_out--;
	}
	b->out[b->nr_out++] = f;
}

static void model_op(struct binder *b, const struct gvm_bind_op *op,
		     uint64_t base)
{
	uint64_t first, cnt;

	if (op->op == GVM_BIND_UNMAP_ALL) {
		for (uint64_t p = 0; p < WPAGES; p++)
			if (b->model[p].kind == 1 && b->model[p].bo == op->bo)
				memset(&b->model[p], 0, sizeof(b->model[p]));
		return;
	}
	if (op->addr < base || op->addr >= base + WIN)
		return;
	first = (op->addr - base) / K4;
	cnt = op->range / K4;
	for (uint64_t p = first; p < first + cnt; p++) {
		struct mpage *m = &b->model[p];

		memset(m, 0, sizeof(*m));
		if (op->op != GVM_BIND_MAP)
			continue;
		m->ro = !!(op->flags & GVM_BIND_READONLY);
		m->kind = op->flags & GVM_BIND_NULL ? 2 : 1;
		m->bo = op->bo;
		m->off = op->bo ? op->bo_offset + (p - first) * K4 : 0;
	}
}

/* One random op in [base, base + win). */
static void random_op(struct gvm_rng *r, struct binder *b, uint64_t base,
		      uint64_t win, struct gvm_bind_op *op)
{
	static const uint64_t aligns[] = { K4, K64, M2 };
	uint64_t al = aligns[gvm_rng_below(r, 3)];
	uint64_t addr = base + gvm_rng_below(r, win / al) * al;
	uint64_t len = al * (1 + gvm_rng_below(r, al == M2 ? 2 : 24));
	struct gvm_bo *bo = gvm_rng_below(r, 3) ? shared_bos[gvm_rng_below(
							  r, NSHARED_BOS)]
						: b->own;
	unsigned int kind = (unsigned int)gvm_rng_below(r, 12);

	if (addr + len > base + win)
		len = base + win - addr;
	if (len > bo->size)
		len = bo->size;
	memset(op, 0, sizeof(*op));
	op->addr = addr;
	op->range = len;
	if (kind < 6) {
		op->op = GVM_BIND_MAP;
		op->bo = bo;
		op->bo_offset = gvm_rng_below(r, (bo->size - len) / al + 1) * al;
		if (op->bo_offset + len > bo->size)
			op->bo_offset = 0;
		if (gvm_rng_below(r, 4) == 0)
			op->flags = GVM_BIND_READONLY;
	} else if (kind < 8) {
		op->op = GVM_BIND_MAP;
		op->flags = GVM_BIND_NULL;
	} else if (kind < 11) {
		op->op = GVM_BIND_UNMAP;
	} else {
		op->op = GVM_BIND_UNMAP_ALL;
		op->addr = op->range = 0;
		op->bo = b->own;
	}
}

static void *binder_main(void *arg)
{
	struct binder *b = arg;
	struct gvm_rng r = { gvm_test_seed() + (uint64_t)b->id * 7919 };
	long iters = (long)gvm_test_scale(4000);
	uint64_t base = PRIV(b->id);

	for (long it = 0; it < iters; it++) {
		struct gvm_bind_op ops[4];
		uint32_t n = 1 + (uint32_t)gvm_rng_below(&r, 4);
		struct gvm_fence *in = NULL, *out = NULL;
		struct gvm_sync s[2];
		uint32_t ns = 0;
		struct gvm_queue *q = b->q[gvm_rng_below(&r, 2)];

		for (uint32_t i = 0; i < n; i++) {
			if (gvm_rng_below(&r, 4) == 0)
				random_op(&r, b, SHARED, 8 * M2, &ops[i]);
			else
				random_op(&r, b, base, WIN, &ops[i]);
		}
		s[ns++] = (struct gvm_sync){ .type = GVM_SYNC_FENCE,
					     .flags = GVM_SYNC_SIGNAL,
					     .out = &out };
		if (gvm_rng_below(&r, 3) == 0) {
			ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1),
						   1, &in));
			s[ns++] = (struct gvm_sync){ .type = GVM_SYNC_FENCE,
						     .fence = in };
		}
		ASSERT_OK(gvm_vm_bind(vm, q, ops, n, s, ns));
		for (uint32_t i = 0; i < n; i++)
			model_op(b, &ops[i], base);
		if (in) {
			gate_add(in);
			gvm_fence_put(in);
		}
		b->jobs += !gvm_fence_is_signaled(out);
		b->binds++;
		keep_out(b, out);
	}
	while (b->nr_out) {
		struct gvm_fence *f = b->out[--b->nr_out];

		ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(gvm_fence_get_status(f), 1);
		gvm_fence_put(f);
	}
	return NULL;
}

static uint64_t bo_addr(struct gvm_bo *bo, uint64_t off)
{
	for (size_t k = 0; k < bo->mem.nr_ext; k++) {
		if (off < bo->mem.ext[k].len)
			return bo->mem.ext[k].addr + off;
		off -= bo->mem.ext[k].len;
	}
	ASSERT_TRUE(!"offset beyond the BO");
	return 0;
}

/* vm->lock held. */
static void check_page(uint64_t va, const struct mpage *m)
{
	struct gvm_pt_xlate x;
	int err = gvm__pt_translate(&vm->pt, va, GVM_PT_VIEW_COMMITTED, &x);

	if (!m->kind) {
		ASSERT_EQ(err, -ENOENT);
		return;
	}
	ASSERT_OK(err);
	ASSERT_EQ(!(x.pte & GVM_PTF_WRITE), m->ro);
	ASSERT_EQ(gvm__ptf_is_null(x.pte), m->kind == 2);
	if (m->kind == 1)
		ASSERT_EQ(x.addr, bo_addr(m->bo, m->off));
}

TEST(binders_and_signaller)
{
	struct gvm_device *dev = testdev_create(0, 48);
	static struct binder b[NBINDERS];
	pthread_t sig;
	void *signalled;
	unsigned long binds = 0, jobs = 0;
	struct gvm_vm_stats st;

	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &vm));
	ASSERT_OK(gvm_bo_create(dev, 4 * M2, GVM_MEM_VRAM, NULL,
				&shared_bos[0]));
	ASSERT_OK(gvm_bo_create(dev, M2, GVM_MEM_SYSTEM, NULL, &shared_bos[1]));
	ASSERT_OK(gvm_bo_create(dev, M2 + K64, GVM_MEM_VRAM, vm,
				&shared_bos[2]));
	for (int t = 0; t < NBINDERS; t++) {
		b[t].id = t;
		ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &b[t].q[0]));
		ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &b[t].q[1]));
		ASSERT_OK(gvm_bo_create(dev, 2 * M2, GVM_MEM_VRAM, NULL,
					&b[t].own));
	}
	ASSERT_OK(pthread_create(&sig, NULL, signaller, NULL));
	for (int t = 0; t < NBINDERS; t++)
		ASSERT_OK(pthread_create(&b[t].thread, NULL, binder_main, &b[t]));
	for (int t = 0; t < NBINDERS; t++) {
		ASSERT_OK(pthread_join(b[t].thread, NULL));
		binds += b[t].binds;
		jobs += b[t].jobs;
	}
	__atomic_store_n(&gate.stop, 1u, __ATOMIC_RELEASE);
	ASSERT_OK(pthread_join(sig, &signalled));
	for (int t = 0; t < NBINDERS; t++) {
		gvm_queue_destroy(b[t].q[0]);
		gvm_queue_destroy(b[t].q[1]);
	}

	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->pt_lock);
	for (int t = 0; t < NBINDERS; t++)
		for (uint64_t p = 0; p < WPAGES; p++)
			check_page(PRIV(t) + p * K4, &b[t].model[p]);
	for (uint64_t va = SHARED; va < SHARED + 8 * M2; va += K4) {
		struct gvm_va *v = gvm__va_find(&vm->va, va);
		struct mpage m = { 0 };

		if (v) {
			m.kind = gvm__va_kind(v) == GVM_VA_KIND_NULL ? 2 : 1;
			m.ro = !!(v->flags & GVM_VA_READONLY);
			m.bo = v->obj;
			m.off = v->obj_offset + (va - v->addr);
		}
		check_page(va, &m);
	}
	ASSERT_OK(gvm__pt_validate(&vm->pt));
	ASSERT_OK(gvm__va_validate(&vm->va));
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
	ASSERT_OK(gvm_vm_stats(vm, &st));
	ASSERT_FALSE(st.banned);
	ASSERT_EQ(st.binds, binds);
	ASSERT_GE(st.bind_jobs, jobs);
	printf("%lu binds, %lu still pending after the call, %lu in-fences "
	       "signalled, %" PRIu64 " jobs\n", binds, jobs,
	       (unsigned long)(uintptr_t)signalled, st.bind_jobs);

	ASSERT_OK(gvm_vm_destroy(vm));
	for (int i = 0; i < NSHARED_BOS; i++) {
		ASSERT_EQ(__atomic_load_n(&shared_bos[i]->refcount,
					  __ATOMIC_RELAXED), 1);
		gvm_bo_put(shared_bos[i]);
	}
	for (int t = 0; t < NBINDERS; t++) {
		ASSERT_EQ(__atomic_load_n(&b[t].own->refcount,
					  __ATOMIC_RELAXED), 1);
		gvm_bo_put(b[t].own);
	}
	gvm_device_put(dev);
}
