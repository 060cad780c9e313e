// SPDX-License-Identifier: MIT
/*
 * VM_BIND benchmarks, through the public API on a simulated GPU (so the
 * figures include the VA op lists, locking, the page-table update and the
 * TLB invalidation), and the VA manager's split at scale.
 *
 *   bind_1g_2m      gvm_vm_bind() mapping 1 GiB of a VRAM BO with 2 MiB
 *                   pages over the previous mapping of the same range (the
 *                   tables exist), alternating between two BOs so that
 *                   every bind changes all 512 entries, against writing
 *                   512 8-byte entries.
 *   bind_1g_4k      gvm_vm_bind() mapping 1 GiB of a system BO with 4 KiB
 *                   pages into an empty range (tables allocated), against
 *                   writing 262,144 8-byte entries; the unmap between
 *                   passes is not measured.
 *   bind_4k_single  one 4 KiB map + unmap (a neighbour keeps the tables),
 *                   against the device floor of that work: two PTE
 *                   stores and one TLB invalidation of the page submitted
 *                   through the device's ops (vm/dev.h) and waited for.
 *                   The note gives the heap allocations per bind call
 *                   (core/alloc.h's per-thread count) and the TLB
 *                   invalidations gvm submitted per pair.
 *   bind_queue_async  4 KiB map and unmap binds (alternating, a neighbour
 *                   keeps the tables) on 3 bind queues, submitted in
 *                   round-robin order, each waiting for the previous bind
 *                   of its queue (in-sync: its out-fence; the first waits
 *                   for a gate fence) and signalling an out-fence, so
 *                   every bind is queued as a job; then the gate opens and
 *                   the last out-fences are waited for.  Against the same
 *                   binds in the same order, inline (no syncs: each
 *                   gvm_vm_bind() writes the tables before it returns).
 *                   Value: ns per bind, submission to completion; the
 *                   note gives the submission's share (until the gate
 *                   opens: the submitting thread's work alone).
 *   bind_2threads   4 KiB map + unmap pairs (as bind_4k_single) by 2
 *                   threads, each on its own VM of one device with its own
 *                   BO, CPUs 0 and 1, N pairs each; against 1 thread doing
 *                   the 2N pairs on one VM, CPU 0.  Value: wall ns per
 *                   pair; ratio = 2-thread time / 1-thread time, lower is
 *                   better: a speed-up of 1.7 is a ratio of 0.59 (goal).
 *   bind_2threads_1vm  the same with both threads in one VM (report only).
 *   va_split_1m     VA manager: a map into the middle of one of 1,000,000
 *                   mappings (split into prev / new / next) and the map of
 *                   the original range that replaces the three again,
 *                   against a glibc tsearch insert + tdelete at 1M keys.
 *
 * Protocol: warm-up, then GVM_BENCH_REPS alternating passes; medians.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/sim.h>
#include <gvm/vm.h>

#include "bench.h"
#include "core/alloc.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/va.h"
#include "vm/vm.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M2 (2ull << 20)
#define G1 (1ull << 30)

static int map(struct gvm_vm *vm, uint64_t addr, uint64_t range,
	       struct gvm_bo *bo, uint64_t off)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = addr,
				  .range = range, .bo = bo, .bo_offset = off };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

static int unmap(struct gvm_vm *vm, uint64_t addr, uint64_t range)
{
	struct gvm_bind_op op = { .op = GVM_BIND_UNMAP, .addr = addr,
				  .range = range };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

struct env {
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_bo *bo;
};

static int env_init(struct env *e, uint64_t vram, uint64_t bo_size,
		    uint32_t placement)
{
	struct gvm_sim_config cfg = { .vram_size = vram };
	int err;

	e->vm = NULL;
	e->bo = NULL;
	err = gvm_sim_device_create(&cfg, &e->dev);
	if (err)
		return err;
	err = gvm_vm_create(e->dev, NULL, 0, &e->vm);
	if (!err)
		err = gvm_bo_create(e->dev, bo_size, placement, NULL, &e->bo);
	return err;
}

static void env_fini(struct env *e)
{
	if (e->vm)
		gvm_vm_destroy(e->vm);
	if (e->bo)
		gvm_bo_put(e->bo);
	gvm_device_put(e->dev);
}

GVM_BENCH(bind_1g_2m, "gvm_vm_bind of 1 GiB with 2 MiB pages (tables exist)")
{
	uint64_t size = ctx->quick ? 64 * M2 : G1, n = size / M2;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	uint64_t *raw = aligned_alloc(4096, 4096);
	int inner = ctx->quick ? 5 : 2000, r, k, err;
	struct gvm_bo *bo2 = NULL;
	struct env e;

	if (!raw)
		return -ENOMEM;
	/* Two BOs, mapped alternately, so every bind rewrites all n entries;
	 * 2 MiB aligned VA, not 1 GiB aligned: 2 MiB leaves in two tables. */
	err = env_init(&e, 2 * size + 64 * M2, size, GVM_MEM_VRAM);
	if (!err)
		err = gvm_bo_create(e.dev, size, GVM_MEM_VRAM, NULL, &bo2);
	if (!err)
		err = map(e.vm, G1 + M2, size, e.bo, 0);
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();
		double raw_ns = 0;

		for (k = 0; k < inner && !err; k++)
			err = map(e.vm, G1 + M2, size, k % 2 ? e.bo : bo2, 0);
		if (r >= 0)
			v[r] = (double)(gvm_bench_now_ns() - t0) / inner;
		for (k = 0; k < inner; k++)
			raw_ns += gvm_bench_fill_entries(raw, n, (uint64_t)k * G1, M2);
		if (r >= 0)
			b[r] = raw_ns / inner;
	}
	if (!err) {
		res->value = gvm_bench_median(v, GVM_BENCH_REPS);
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
		res->unit = "ns/bind";
		res->baseline = "raw loop writing 512 entries";
		res->goal = 10;
		snprintf(res->note, sizeof(res->note),
			 "alternates 2 BOs: all %" PRIu64 " entries change; "
			 "incl. TLB invalidation", n);
	}
	if (bo2)
		gvm_bo_put(bo2);
	env_fini(&e);
	free(raw);
	return err;
}

GVM_BENCH(bind_1g_4k, "gvm_vm_bind of 1 GiB with 4 KiB pages incl. tables")
{
	uint64_t size = ctx->quick ? 64 * M2 : G1, n = size / K4;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	uint64_t *raw = aligned_alloc(4096, n * 8), off = K4;
	struct gvm_vm_stats st0, st1;
	struct env e;
	int r, err;

	if (!raw)
		return -ENOMEM;
	err = env_init(&e, 64ull << 20, size + 2 * K4, GVM_MEM_SYSTEM);
	if (!err) {
		/*
		 * A BO offset whose backing is 4 KiB off 2 MiB alignment,
		 * the VA being aligned: only 4 KiB PTEs.  Where mmap put the
		 * system BO decides it (a fixed offset of 4 KiB got 2 MiB
		 * leaves when the BO started 4 KiB below a 2 MiB boundary).
		 */
		if (!((e.bo->mem.ext[0].addr + off) & (M2 - 1)))
			off += K4;
		err = gvm_vm_stats(e.vm, &st0);
	}
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();
		double raw_ns;

		err = map(e.vm, G1, size, e.bo, off);
		if (r >= 0)
			v[r] = (double)(gvm_bench_now_ns() - t0);
		if (!err)
			err = unmap(e.vm, G1, size);
		raw_ns = gvm_bench_fill_entries(raw, n, G1, K4);
		if (r >= 0)
			b[r] = raw_ns;
	}
	if (!err)
		err = gvm_vm_stats(e.vm, &st1);
	if (!err) {
		res->value = gvm_bench_median(v, GVM_BENCH_REPS) / 1000.0;
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS) /
				      1000.0;
		res->unit = "us/bind";
		res->baseline = "raw loop writing 262,144 entries";
		res->goal = 3;
		/* the check that the binds wrote 4 KiB PTEs only */
		snprintf(res->note, sizeof(res->note),
			 "into an empty range: 512 leaf tables allocated; "
			 "4 KiB PTEs per bind %" PRIu64 ", 2 MiB leaves %" PRIu64,
			 (st1.pte_writes[0] - st0.pte_writes[0]) /
				 (GVM_BENCH_REPS + 1),
			 (st1.pte_writes[1] - st0.pte_writes[1]) /
				 (GVM_BENCH_REPS + 1));
	}
	env_fini(&e);
	free(raw);
	return err;
}

/*
 * The device floor of a map + unmap of one 4 KiB page: the two PTE stores
 * (here into a plain array) and the unmap's TLB invalidation of the page,
 * submitted and waited for through the device's ops.  ns per pair, < 0 on
 * error.
 */
static double floor_4k(struct gvm_vm *vm, uint64_t *pte, uint64_t va, int n)
{
	struct gvm_device *dev = vm->dev;
	int64_t t0 = gvm_bench_now_ns();

	for (int k = 0; k < n; k++) {
		struct gvm_fence *f;

		__atomic_store_n(pte, 0x3 | ((uint64_t)k << 12), __ATOMIC_RELEASE);
		__atomic_store_n(pte, 0, __ATOMIC_RELEASE);
		if (dev->ops->tlb_inval(dev, vm->dev_priv, va, K4, &f))
			return -1;
		gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(f);
	}
	return (double)(gvm_bench_now_ns() - t0) / n;
}

GVM_BENCH(bind_4k_single, "one 4 KiB gvm_vm_bind map + unmap")
{
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	int inner = ctx->quick ? 100 : 20000, r, k, err;
	unsigned long allocs_map = 0, allocs_unmap = 0;
	struct gvm_vm_stats st0, st1;
	uint64_t pte = 0;
	struct env e;

	err = env_init(&e, 64ull << 20, 2 * K4, GVM_MEM_SYSTEM);
	if (!err)	/* the neighbour that keeps the tables alive */
		err = map(e.vm, G1, K4, e.bo, 0);
	if (!err)
		err = gvm_vm_stats(e.vm, &st0);
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();
		unsigned long a0, a1, a2;

		for (k = 0; k < inner && !err; k++) {
			a0 = gvm__alloc_count;
			err = map(e.vm, G1 + K4, K4, e.bo, K4);
			a1 = gvm__alloc_count;
			if (!err)
				err = unmap(e.vm, G1 + K4, K4);
			a2 = gvm__alloc_count;
			if (r >= 0) {
				allocs_map += a1 - a0;
				allocs_unmap += a2 - a1;
			}
		}
		if (r >= 0)
			v[r] = (double)(gvm_bench_now_ns() - t0) / inner;
		b[r < 0 ? 0 : r] = floor_4k(e.vm, &pte, G1 + K4, inner);
		if (b[r < 0 ? 0 : r] < 0)
			err = -EIO;
	}
	if (!err)
		err = gvm_vm_stats(e.vm, &st1);
	if (!err) {
		double pairs = (double)(GVM_BENCH_REPS + 1) * inner;

		res->value = gvm_bench_median(v, GVM_BENCH_REPS);
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
		res->unit = "ns/map+unmap";
		res->baseline = "2 PTE stores + tlb_inval+wait (ops)";
		res->goal = 2;
		snprintf(res->note, sizeof(res->note),
			 "heap allocations per bind: map %.2f, unmap %.2f; "
			 "TLB invalidations per pair %.2f",
			 (double)allocs_map / (GVM_BENCH_REPS * inner),
			 (double)allocs_unmap / (GVM_BENCH_REPS * inner),
			 (double)(st1.tlb_invals - st0.tlb_invals) / pairs);
	}
	env_fini(&e);
	return err;
}

/* ---- bind_queue_async ------------------------------------------------ */

#define ASYNC_QUEUES 3

/* Bind @k of queue @q: even k map the page next to the neighbour, odd k
   unmap it. */
static struct gvm_bind_op churn_op(struct gvm_bo *bo, int q, int k)
{
	uint64_t va = (uint64_t)(q + 1) * G1 + K4;
	struct gvm_bind_op op = { .op = k % 2 ? GVM_BIND_UNMAP : GVM_BIND_MAP,
				  .addr = va, .range = K4 };

	if (!(k % 2)) {
		op.bo = bo;
		op.bo_offset = K4;
	}
	return op;
}

/* @n binds per queue, queued behind a gate; the ns it took, and the ns
   until the gate opened (submission). */
static int async_round(struct env *e, struct gvm_queue **qs, int n,
		       uint64_t ctx_id, double *ns, double *submit_ns)
{
	static uint64_t seqno;
	struct gvm_fence *prev[ASYNC_QUEUES] = { 0 }, *gate;
	int64_t t0 = gvm_bench_now_ns();
	int q, k, err;

	err = gvm_fence_create(ctx_id, ++seqno, &gate);
	if (err)
		return err;
	for (q = 0; q < ASYNC_QUEUES; q++)
		prev[q] = gvm_fence_get(gate);
	for (k = 0; k < n && !err; k++) {
		for (q = 0; q < ASYNC_QUEUES && !err; q++) {
			struct gvm_bind_op op = churn_op(e->bo, q, k);
			struct gvm_fence *out = NULL;
			struct gvm_sync s[2] = {
				{ .type = GVM_SYNC_FENCE, .fence = prev[q] },
				{ .type = GVM_SYNC_FENCE,
				  .flags = GVM_SYNC_SIGNAL, .out = &out },
			};

			err = gvm_vm_bind(e->vm, qs[q], &op, 1, s, 2);
			if (!err) {
				gvm_fence_put(prev[q]);
				prev[q] = out;
			}
		}
	}
	*submit_ns = (double)(gvm_bench_now_ns() - t0);
	gvm_fence_signal(gate);
	for (q = 0; q < ASYNC_QUEUES; q++) {
		gvm_fence_wait(prev[q], GVM_TIMEOUT_INFINITE);
		if (!err && gvm_fence_get_status(prev[q]) != 1)
			err = -EIO;
		gvm_fence_put(prev[q]);
	}
	*ns = (double)(gvm_bench_now_ns() - t0);
	gvm_fence_put(gate);
	return err;
}

/* The same binds, inline; the ns it took. */
static int inline_round(struct env *e, struct gvm_queue **qs, int n,
			double *ns)
{
	int64_t t0 = gvm_bench_now_ns();
	int q, k, err = 0;

	for (k = 0; k < n && !err; k++) {
		for (q = 0; q < ASYNC_QUEUES && !err; q++) {
			struct gvm_bind_op op = churn_op(e->bo, q, k);

			err = gvm_vm_bind(e->vm, qs[q], &op, 1, NULL, 0);
		}
	}
	*ns = (double)(gvm_bench_now_ns() - t0);
	return err;
}

GVM_BENCH(bind_queue_async, "4 KiB binds queued on 3 bind queues with syncs")
{
	const int n = ctx->quick ? 10 : 400, rounds = ctx->quick ? 1 : 10;
	const double binds = (double)n * ASYNC_QUEUES * rounds;
	struct gvm_queue *qs[ASYNC_QUEUES] = { 0 };
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS], sub[GVM_BENCH_REPS];
	uint64_t ctx_id = gvm_fence_context_alloc(1);
	uint64_t queued = 0, inl = 0;
	struct gvm_vm_stats st0, st1;
	int q, r, k, err;
	struct env e;

	err = env_init(&e, 64ull << 20, 2 * K4, GVM_MEM_SYSTEM);
	for (q = 0; q < ASYNC_QUEUES && !err; q++) {
		/* the neighbour that keeps the queue's tables alive */
		err = map(e.vm, (uint64_t)(q + 1) * G1, K4, e.bo, 0);
		if (!err)
			err = gvm_queue_create(e.vm, GVM_ENGINE_BIND, &qs[q]);
	}
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		double sv = 0, sb = 0, ss = 0, ns = 0, sns = 0;

		for (k = 0; k < rounds && !err; k++) {
			err = gvm_vm_stats(e.vm, &st0);
			if (!err)
				err = async_round(&e, qs, n, ctx_id, &ns,
						  &sns);
			sv += ns;
			ss += sns;
			if (!err)
				err = gvm_vm_stats(e.vm, &st1);
			queued += st1.bind_jobs - st0.bind_jobs;
			if (!err)
				err = inline_round(&e, qs, n, &ns);
			sb += ns;
			if (!err)
				err = gvm_vm_stats(e.vm, &st0);
			inl += st0.bind_jobs - st1.bind_jobs;
		}
		if (r >= 0) {
			v[r] = sv / binds;
			b[r] = sb / binds;
			sub[r] = ss / binds;
		}
	}
	if (!err) {
		double total = binds * (GVM_BENCH_REPS + 1);
		double submit = gvm_bench_median(sub, GVM_BENCH_REPS);

		gvm_bench_set_median(res, v, b);
		res->unit = "ns/bind";
		res->baseline = "same binds inline (no syncs)";
		res->goal = 2;
		snprintf(res->note, sizeof(res->note),
			 "%.0f vs %.0f binds/s; %d per queue behind a gate; "
			 "queued as jobs: %.0f%% vs %.0f%%; submitting %.0f "
			 "ns/bind (median), the rest after the gate opened",
			 1e9 / res->value, 1e9 / res->baseline_value, n,
			 100.0 * (double)queued / total,
			 100.0 * (double)inl / total, submit);
	}
	for (q = 0; q < ASYNC_QUEUES; q++)
		if (qs[q])
			gvm_queue_destroy(qs[q]);
	env_fini(&e);
	return err;
}

/* ---- bind_2threads, bind_2threads_1vm ---------------------------------- */

/* One binding thread's VM, BO and VA: map + unmap pairs next to a
   neighbour mapping that keeps the tables. */
struct binder {
	struct gvm_vm *vm;
	struct gvm_bo *bo;
	uint64_t va;
	int pairs;
	int err;
	int cpu;			/* < 0: not pinned */
	/* hand-off with the main thread */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int go, done;			/* rounds started / finished */
	bool stop;
};

static int binder_pairs(struct binder *t, int n)
{
	int err = 0;

	for (int k = 0; k < n && !err; k++) {
		err = map(t->vm, t->va + K4, K4, t->bo, K4);
		if (!err)
			err = unmap(t->vm, t->va + K4, K4);
	}
	return err;
}

static void *binder_main(void *arg)
{
	struct binder *t = arg;

	if (t->cpu >= 0)
		gvm_bench_run_on_cpu(t->cpu);
	pthread_mutex_lock(&t->lock);
	for (;;) {
		while (!t->stop && t->go == t->done)
			pthread_cond_wait(&t->cond, &t->lock);
		if (t->stop)
			break;
		pthread_mutex_unlock(&t->lock);
		t->err = binder_pairs(t, t->pairs);
		pthread_mutex_lock(&t->lock);
		t->done++;
		pthread_cond_broadcast(&t->cond);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static int binder_init(struct binder *t, struct gvm_device *dev,
		       struct gvm_vm *vm, uint64_t va, int pairs)
{
	int err;

	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->vm = vm;
	t->va = va;
	t->pairs = pairs;
	t->cpu = -1;
	err = gvm_bo_create(dev, 2 * K4, GVM_MEM_SYSTEM, NULL, &t->bo);
	if (!err)
		err = map(vm, va, K4, t->bo, 0);
	return err;
}

static void binder_fini(struct binder *t)
{
	if (t->bo)
		gvm_bo_put(t->bo);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
}

/*
 * One round with 2 threads: @t runs its pairs on its thread while this
 * one runs @self's; the wall ns of both.
 */
static int two_threads(struct binder *self, struct binder *t, double *ns)
{
	int64_t t0 = gvm_bench_now_ns();
	int err;

	pthread_mutex_lock(&t->lock);
	t->go++;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	err = binder_pairs(self, self->pairs);
	pthread_mutex_lock(&t->lock);
	while (t->done != t->go)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
	*ns = (double)(gvm_bench_now_ns() - t0);
	return err ? err : t->err;
}

static int bind_threads(const struct gvm_bench_ctx *ctx,
			struct gvm_bench_result *res, bool one_vm)
{
	const int pairs = ctx->quick ? 100 : 20000;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	struct binder t[2];
	struct gvm_vm *vm2 = NULL;
	bool started = false, pinned;
	pthread_t th;
	struct env e;
	int r, err;

	memset(t, 0, sizeof(t));
	pinned = gvm_bench_run_on_cpu(1) && gvm_bench_run_on_cpu(0);
	if (!pinned)
		gvm_bench_run_on_cpu(-1);
	err = env_init(&e, 64ull << 20, K4, GVM_MEM_SYSTEM);
	if (!err && !one_vm)
		err = gvm_vm_create(e.dev, NULL, 0, &vm2);
	if (!err)
		err = binder_init(&t[0], e.dev, e.vm, G1, pairs);
	if (!err)
		err = binder_init(&t[1], e.dev, one_vm ? e.vm : vm2,
				  one_vm ? 2 * G1 : G1, pairs);
	t[1].cpu = pinned ? 1 : -1;
	if (!err)
		err = -pthread_create(&th, NULL, binder_main, &t[1]);
	started = !err;
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		double ns2, ns1;
		int64_t t0;

		err = two_threads(&t[0], &t[1], &ns2);
		if (err)
			break;
		t0 = gvm_bench_now_ns();
		err = binder_pairs(&t[0], 2 * pairs);
		ns1 = (double)(gvm_bench_now_ns() - t0);
		if (r >= 0) {
			v[r] = ns2 / (2.0 * pairs);
			b[r] = ns1 / (2.0 * pairs);
		}
	}
	if (started) {
		pthread_mutex_lock(&t[1].lock);
		t[1].stop = true;
		pthread_cond_broadcast(&t[1].cond);
		pthread_mutex_unlock(&t[1].lock);
		pthread_join(th, NULL);
	}
	if (!err) {
		gvm_bench_set_median(res, v, b);
		res->unit = "ns/pair";
		res->baseline = "1 thread, the same 2N pairs";
		res->goal = one_vm ? 0 : 1 / 1.7;
		snprintf(res->note, sizeof(res->note),
			 "speed-up %.2fx (goal >= 1.7 is ratio <= 0.59); %s; "
			 "N = %d 4K map+unmap pairs per thread; %s",
			 res->baseline_value / res->value,
			 one_vm ? "both threads in one VM"
				: "one VM each, one device",
			 pairs, pinned ? "CPUs 0 and 1 (1 thread: CPU 0)"
				       : "one CPU: not pinned");
	}
	binder_fini(&t[1]);
	binder_fini(&t[0]);
	if (vm2)
		gvm_vm_destroy(vm2);
	env_fini(&e);
	gvm_bench_run_on_cpu(-1);
	return err;
}

GVM_BENCH(bind_2threads, "4 KiB binds, 2 threads on 2 VMs vs 1 thread")
{
	return bind_threads(ctx, res, false);
}

GVM_BENCH(bind_2threads_1vm, "4 KiB binds, 2 threads in 1 VM vs 1 thread")
{
	return bind_threads(ctx, res, true);
}

/* ---- va_split_1m ------------------------------------------------------------ */

static void free_old(struct gvm_va_ops *ops)
{
	size_t i;

	for (i = 0; i < ops->nr; i++)
		if (ops->op[i].old)
			gvm__free(ops->op[i].old);
	gvm__va_ops_fini(ops);
}

/* Maps [addr, addr + range) over whatever is there, frees what went. */
static int va_map(struct gvm_va_space *s, uint64_t addr, uint64_t range)
{
	struct gvm_va_ops ops;
	int err = gvm__va_map_ops_create(s, addr, range, NULL, 0,
					 GVM_VA_KIND_NULL, &ops);

	if (err)
		return err;
	gvm__va_ops_apply(&ops);
	free_old(&ops);
	return 0;
}

static int cmp_key(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;

	return x < y ? -1 : x > y;
}

static void release(struct gvm_va *va, void *arg)
{
	(void)arg;
	gvm__free(va);
}

GVM_BENCH(va_split_1m, "VA split + re-merge with 1M live mappings")
{
	uint64_t nr = ctx->quick ? 10000 : 1000000, i;
	int inner = ctx->quick ? 1000 : 100000, r, k, err = 0;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	void *troot = NULL;
	struct gvm_va_space s;
	uint64_t seed = 1;
	size_t huge = 0;

	err = gvm__va_space_init(&s, 0, 1ull << 48, sizeof(struct gvm_va));
	for (i = 0; i < nr && !err; i++)
		err = va_map(&s, i * K64, K64);
	for (i = 0; i < nr && !err; i++)
		if (!tsearch((void *)(uintptr_t)(2 * i + 2), &troot, cmp_key))
			err = -ENOMEM;
	huge = gvm_bench_huge_libc_heap();
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();

		for (k = 0; k < inner && !err; k++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			i = (seed >> 33) % nr;
			err = va_map(&s, i * K64 + 4 * K4, 4 * K4);
			if (!err)
				err = va_map(&s, i * K64, K64);
		}
		if (r >= 0)
			v[r] = (double)(gvm_bench_now_ns() - t0) / inner;
		t0 = gvm_bench_now_ns();
		for (k = 0; k < inner && !err; k++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			i = (seed >> 33) % nr;
			/* odd keys: absent, so a real insert and delete */
			if (!tsearch((void *)(uintptr_t)(2 * i + 1), &troot,
				     cmp_key))
				err = -ENOMEM;
			tdelete((void *)(uintptr_t)(2 * i + 1), &troot, cmp_key);
		}
		if (r >= 0)
			b[r] = (double)(gvm_bench_now_ns() - t0) / inner;
	}
	if (!err) {
		gvm_bench_set_median(res, v, b);
		res->unit = "ns/split+merge";
		res->baseline = "glibc tsearch+tdelete at 1M keys";
		res->goal = 1.2;	/* issue 14 */
		snprintf(res->note, sizeof(res->note),
			 "tsearch's heap on huge pages: %s", huge ? "yes" : "no");
	}
	for (i = 0; i < nr; i++)
		tdelete((void *)(uintptr_t)(2 * i + 2), &troot, cmp_key);
	gvm__va_space_fini(&s, release, NULL);
	return err;
}
