// SPDX-License-Identifier: MIT
/*
 * Simulated-GPU benchmarks: what running on the simulated GPU costs next to
 * doing the same work on the CPU directly.
 *
 *   sim_triad_span   the built-in triad kernel (gvm_kernel_triad) over
 *                    three VRAM BOs of 84 MiB (252 MiB, about 256 MiB)
 *                    mapped with 2 MiB pages, through gvm_exec() on a
 *                    compute queue and a fence wait, against the same
 *                    triad loop over host arrays of the same size in one
 *                    thread.  Value: ms per triad.
 *   sim_load_tlbhit  gvm_lane_load() of 8 bytes that hits the TLB (the
 *                    inline fast path of <gvm/kernel.h>, as every kernel
 *                    written against the lane API gets it): one
 *                    lane loads sequentially, wrapping, through a 16 KiB
 *                    VRAM BO mapped with 4 KiB pages (4 translations, all
 *                    in the level-0 TLB), 4M loads per job, timed inside
 *                    the kernel with the engine thread's CPU time, against
 *                    a loop of volatile 8-byte loads over a 16 KiB host
 *                    buffer in the same order, timed the same way.  CPU
 *                    time, because this 2-CPU machine is often shared and
 *                    wall time then mostly measures who else ran; the note
 *                    gives the wall time per load around gvm_exec() + wait
 *                    (the job's own cost spread over 4M loads: ~0.01 ns
 *                    each).  Value: ns per load.
 *   tlb_inval_range  ops->tlb_inval() of a 2 MiB range + gvm_fence_wait(),
 *                    reached through the internal device (vm/dev.h), while
 *                    one compute engine runs a kernel that polls a VRAM
 *                    word with lane loads (the busy engine acknowledges at
 *                    its next lane call; the others at once), against a
 *                    spin hand-off round trip between two threads.  Each
 *                    invalidation and each round trip is timed: p50 and
 *                    p99 of 5 x 1000.  With two CPUs or more the engines
 *                    are created on CPU 1 and the submitter runs on CPU
 *                    0, and the ping-pong threads sit on CPUs 0 and 1:
 *                    both sides cross CPUs.  The kernels run only during
 *                    the measured invalidations (started and stopped
 *                    around each pass), so the baseline does not compete
 *                    with them for CPU 1.  Value: us per invalidation.
 *   tlb_inval_busy   the same with a span kernel on every engine (2
 *                    compute, 1 copy): each fills 64 KiB through a span,
 *                    then makes one lane call, so an invalidation waits
 *                    for the fills in progress - and, with 3 busy engines
 *                    and the submitter on 2 CPUs, for the scheduler.
 *
 *   exec_latency     gvm_exec() of a kernel that does nothing on an idle
 *                    compute queue, to its fence signalled (fence wait),
 *                    against an eventfd ping-pong round trip between two
 *                    threads; both timed one by one, p50 and p99 of
 *                    5 x 1000.  Engines and the pong thread on CPU 1, the
 *                    caller on CPU 0.
 *
 * Protocol: warm-up, then GVM_BENCH_REPS alternating passes; medians.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <gvm/sim.h>
#include <gvm/vm.h>

#include "bench.h"
#include "vm/dev.h"
#include "vm/vm.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define G1 (1ull << 30)

struct env {
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static int env_init(struct env *e, uint64_t vram)
{
	struct gvm_sim_config cfg = { .vram_size = vram };
	int err;

	memset(e, 0, sizeof(*e));
	err = gvm_sim_device_create(&cfg, &e->dev);
	if (err)
		return err;
	err = gvm_vm_create(e->dev, NULL, 0, &e->vm);
	if (!err)
		err = gvm_queue_create(e->vm, GVM_ENGINE_COMPUTE, &e->q);
	return err;
}

static void env_fini(struct env *e)
{
	if (e->q)
		gvm_queue_destroy(e->q);
	if (e->vm)
		gvm_vm_destroy(e->vm);
	if (e->dev)
		gvm_device_put(e->dev);
}

/* A VRAM BO of the VM, mapped at @va, with its CPU view in *@cpu. */
static int bo_at(struct env *e, uint64_t size, uint64_t va, struct gvm_bo **bo,
		 void **cpu)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = va,
				  .range = size };
	int err;

	err = gvm_bo_create(e->dev, size, GVM_MEM_VRAM, e->vm, bo);
	if (err)
		return err;
	op.bo = *bo;
	err = gvm_vm_bind(e->vm, NULL, &op, 1, NULL, 0);
	if (!err && cpu)
		err = gvm_bo_map(*bo, cpu);
	return err;
}

/* Submits @k on @q; *@f receives its fence. */
static int submit(struct gvm_queue *q, const struct gvm_kernel *k,
		  struct gvm_fence **f)
{
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = f };

	*f = NULL;
	return gvm_exec(q, k, &s, 1);
}

/* Runs @k on @q and waits: 0, or the error of the exec or of the job. */
static int exec_wait(struct gvm_queue *q, const struct gvm_kernel *k)
{
	struct gvm_fence *f;
	int err = submit(q, k, &f);

	if (err)
		return err;
	err = gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
	if (!err && gvm_fence_get_status(f) < 0)
		err = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return err;
}


/* ---- sim_triad_span --------------------------------------------------- */

/* The built-in's loop (kernels.c), on host memory. */
static void host_triad(double *a, const double *b, const double *c,
		       uint64_t n, double s)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		a[i] = b[i] + s * c[i];
	gvm_bench_keep(a);
}

static double ms_since(int64_t t0)
{
	return (double)(gvm_bench_now_ns() - t0) / 1e6;
}

GVM_BENCH(sim_triad_span, "triad kernel over 3 x 84 MiB VRAM BOs (2M pages)")
{
	uint64_t size = ctx->quick ? 2 * M2 : 42 * M2, n = size / 8, i;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	double *ha = NULL, *hb, *hc, *da = NULL, *db = NULL, *dc = NULL;
	struct gvm_bo *bo[3] = { NULL, NULL, NULL };
	struct gvm_vm_stats st;
	struct gvm_kernel k;
	struct env e;
	int r, err;

	gvm_bench_run_on_cpu(-1);
	ha = mmap(NULL, 3 * size, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ha == MAP_FAILED)
		return -ENOMEM;
	hb = ha + n;
	hc = hb + n;
	/* the arrays plus room for the page tables */
	err = env_init(&e, 3 * size + 16 * M2);
	if (!err)	/* 2 MiB aligned VAs, so 2 MiB leaves */
		err = bo_at(&e, size, G1, &bo[0], (void **)&da);
	if (!err)
		err = bo_at(&e, size, G1 + size, &bo[1], (void **)&db);
	if (!err)
		err = bo_at(&e, size, G1 + 2 * size, &bo[2], (void **)&dc);
	if (!err)
		err = gvm_kernel_triad(&k, G1, G1 + size, G1 + 2 * size, n,
				       3.0);
	if (err)
		goto out;
	for (i = 0; i < n; i++) {
		hb[i] = db[i] = (double)(i & 1023);
		hc[i] = dc[i] = 0.5 * (double)(i & 511);
		ha[i] = da[i] = 0;
	}
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();

		err = exec_wait(e.q, &k);
		if (r >= 0)
			v[r] = ms_since(t0);
		t0 = gvm_bench_now_ns();
		host_triad(ha, hb, hc, n, 3.0);
		if (r >= 0)
			b[r] = ms_since(t0);
	}
	for (i = 0; i < n && !err; i += 4099)
		if (da[i] != ha[i] || da[i] != hb[i] + 3.0 * hc[i])
			err = -EIO;
	if (!err)
		err = gvm_vm_stats(e.vm, &st);
	if (!err) {
		res->value = gvm_bench_median(v, GVM_BENCH_REPS);
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
		res->unit = "ms/triad";
		res->baseline = "same triad, host arrays, 1 thread";
		res->goal = 1.5;
		snprintf(res->note, sizeof(res->note),
			 "3 x %llu MiB; %.1f vs %.1f GB/s; PTEs written: "
			 "%llu x 2M, %llu x 4K",
			 (unsigned long long)(size >> 20),
			 3.0 * (double)size / 1e6 / res->value,
			 3.0 * (double)size / 1e6 / res->baseline_value,
			 (unsigned long long)st.pte_writes[1],
			 (unsigned long long)st.pte_writes[0]);
	}
out:
	env_fini(&e);
	for (i = 0; i < 3; i++)
		if (bo[i])
			gvm_bo_put(bo[i]);
	munmap(ha, 3 * size);
	return err;
}

/* ---- sim_load_tlbhit -------------------------------------------------- */

#define LOAD_WINDOW (16 * 1024ull)	/* 4 pages of 4 KiB */

/* CPU time of the calling thread, ns: what the loops cost, whoever else
   runs on the machine. */
static int64_t thread_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct loads_args {
	uint64_t va, mask, n, out;
};

/*
 * n sequential 8-byte loads through [va, va + mask], wrapping; stores the
 * sum at out and the engine thread's CPU time for the loop at out + 8.
 */
static void loads_fn(struct gvm_lane *l, const void *args)
{
	const struct loads_args *a = args;
	uint64_t i, off = 0, sum = 0;
	int64_t t0 = thread_ns();

	for (i = 0; i < a->n; i++) {
		sum += gvm_lane_load(l, a->va + off, 8);
		off = (off + 8) & a->mask;
	}
	t0 = thread_ns() - t0;
	gvm_lane_store(l, a->out, sum, 8);
	gvm_lane_store(l, a->out + 8, (uint64_t)t0, 8);
}

static uint64_t host_loads(const volatile uint64_t *p, uint64_t mask,
			   uint64_t n)
{
	uint64_t i, off = 0, sum = 0;

	for (i = 0; i < n; i++) {
		sum += p[off / 8];
		off = (off + 8) & mask;
	}
	return sum;
}

GVM_BENCH(sim_load_tlbhit, "gvm_lane_load of 8 bytes hitting the TLB")
{
	uint64_t n = ctx->quick ? 20000 : 4000000, i, hsum = 0;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS], w[GVM_BENCH_REPS];
	uint64_t *host = aligned_alloc(4096, LOAD_WINDOW), *dev, *out;
	struct gvm_bo *win = NULL, *res_bo = NULL;
	struct loads_args a;
	struct gvm_sim_stats s0, s1;
	struct gvm_kernel k;
	struct env e;
	int r, err;

	if (!host)
		return -ENOMEM;
	gvm_bench_run_on_cpu(-1);
	err = env_init(&e, 64ull << 20);
	if (!err)
		err = bo_at(&e, LOAD_WINDOW, G1, &win, (void **)&dev);
	if (!err)
		err = bo_at(&e, K4, 2 * G1, &res_bo, (void **)&out);
	if (err)
		goto out;
	for (i = 0; i < LOAD_WINDOW / 8; i++)
		host[i] = dev[i] = i * 0x9e3779b97f4a7c15ull;
	a = (struct loads_args){ G1, LOAD_WINDOW - 1, n, 2 * G1 };
	gvm_kernel_init(&k, "bench_loads", loads_fn, 1, &a, sizeof(a));
	err = gvm_sim_stats(e.dev, &s0);
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();

		err = exec_wait(e.q, &k);
		if (r >= 0) {
			w[r] = (double)(gvm_bench_now_ns() - t0) / (double)n;
			v[r] = (double)out[1] / (double)n;
		}
		t0 = thread_ns();
		hsum = host_loads(host, LOAD_WINDOW - 1, n);
		if (r >= 0)
			b[r] = (double)(thread_ns() - t0) / (double)n;
	}
	if (!err && out[0] != hsum)
		err = -EIO;
	if (!err)
		err = gvm_sim_stats(e.dev, &s1);
	if (!err) {
		res->value = gvm_bench_median(v, GVM_BENCH_REPS);
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
		res->unit = "ns/load";
		res->baseline = "volatile 8-byte load loop, same order";
		res->goal = 4;
		snprintf(res->note, sizeof(res->note),
			 "thread CPU time in the kernel; 16 KiB, 4K pages; "
			 "%llu TLB misses in %d jobs of %llu loads; wall %.1f ns",
			 (unsigned long long)(s1.tlb_misses - s0.tlb_misses),
			 GVM_BENCH_REPS + 1, (unsigned long long)n,
			 gvm_bench_median(w, GVM_BENCH_REPS));
	}
out:
	env_fini(&e);
	if (win)
		gvm_bo_put(win);
	if (res_bo)
		gvm_bo_put(res_bo);
	free(host);
	return err;
}

/* ---- tlb_inval_range, tlb_inval_busy ------------------------------------ */

struct poll_args {
	uint64_t started, stop;		/* VAs of two words */
};

/* Says it started, then keeps making lane calls until told to stop. */
static void poll_fn(struct gvm_lane *l, const void *args)
{
	const struct poll_args *a = args;

	gvm_lane_store(l, a->started, 1, 8);
	while (!gvm_lane_faulted(l) && !gvm_lane_load(l, a->stop, 8))
		;
}

struct span_args {
	uint64_t started, stop;		/* VAs of two words */
	uint64_t buf;			/* VA of 64 KiB to write */
};

/*
 * A span kernel, as the built-ins are: takes a 64 KiB write span, fills it
 * through the host pointer (no boundary meanwhile, so an invalidation
 * waits for it), then one lane call to check for the stop word; over and
 * over.
 */
static void span_fn(struct gvm_lane *l, const void *args)
{
	const struct span_args *a = args;
	uint64_t round = 0;

	gvm_lane_atomic_add(l, a->started, 1, 8);
	while (!gvm_lane_faulted(l) && !gvm_lane_load(l, a->stop, 8)) {
		size_t len = 64 << 10;
		void *p = gvm_lane_span(l, a->buf, &len, GVM_ACCESS_WRITE);

		if (p)
			memset(p, (int)(++round & 0xff), len);
	}
}

/*
 * Spin hand-off between two threads: the pinger publishes an odd number,
 * the ponger answers with the next even one; both spin.
 */
struct spinpong {
	uint64_t word;			/* atomic */
	bool pinned;
};

static void *spin_pong_main(void *arg)
{
	struct spinpong *sp = arg;
	uint64_t seen = 0;

	if (sp->pinned)
		gvm_bench_run_on_cpu(1);
	for (;;) {
		uint64_t x;

		while ((x = __atomic_load_n(&sp->word, __ATOMIC_ACQUIRE)) ==
		       seen)
			__builtin_ia32_pause();
		if (x == UINT64_MAX)
			break;
		seen = x + 1;
		__atomic_store_n(&sp->word, seen, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* @n round trips, each timed into @ns[]. */
static void spin_pingpong(struct spinpong *sp, double *ns, int n)
{
	for (int i = 0; i < n; i++) {
		uint64_t next = __atomic_load_n(&sp->word, __ATOMIC_RELAXED) + 1;
		int64_t t0 = gvm_bench_now_ns();

		__atomic_store_n(&sp->word, next, __ATOMIC_RELEASE);
		while (__atomic_load_n(&sp->word, __ATOMIC_ACQUIRE) == next)
			__builtin_ia32_pause();
		ns[i] = (double)(gvm_bench_now_ns() - t0);
	}
}

/* @n invalidations of [va, va + 2 MiB), each waited for and timed. */
static int invals(struct gvm_vm *vm, uint64_t va, double *ns, int n)
{
	struct gvm_device *dev = vm->dev;

	for (int i = 0; i < n; i++) {
		int64_t t0 = gvm_bench_now_ns();
		struct gvm_fence *f;

		if (dev->ops->tlb_inval(dev, vm->dev_priv, va, M2, &f))
			return -EIO;
		gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(f);
		ns[i] = (double)(gvm_bench_now_ns() - t0);
	}
	return 0;
}

#define INVAL_QUEUES 3		/* the default device: 2 compute, 1 copy */

/*
 * @n invalidations while kernels run on @nq queues (polling kernels, or
 * span kernels if @spans): starts them, waits until all run, invalidates,
 * stops them.
 */
static int invals_busy(struct env *e, struct gvm_queue **qs, int nq,
		       bool spans, volatile uint64_t *words, double *ns, int n)
{
	struct poll_args pa = { G1, G1 + 8 };
	struct gvm_fence *busy[INVAL_QUEUES] = { 0 };
	struct gvm_kernel k;
	int i, err = 0;

	words[0] = words[1] = 0;
	for (i = 0; i < nq && !err; i++) {
		/* each span kernel fills its own 64 KiB: no two engines race */
		struct span_args sa = { G1, G1 + 8,
					G1 + (uint64_t)(i + 1) * (64 << 10) };

		if (spans)
			gvm_kernel_init(&k, "bench_span", span_fn, 1, &sa,
					sizeof(sa));
		else
			gvm_kernel_init(&k, "bench_poll", poll_fn, 1, &pa,
					sizeof(pa));
		err = submit(qs[i], &k, &busy[i]);
	}
	for (i = 0; i < nq && !err; i++)
		if (!busy[i])
			err = -EIO;
	while (!err && __atomic_load_n(&words[0], __ATOMIC_ACQUIRE) <
			       (uint64_t)(spans ? nq : 1)) {
		for (i = 0; i < nq; i++)
			if (gvm_fence_is_signaled(busy[i]))
				err = -EIO;	/* ended early */
		sched_yield();
	}
	if (!err) {
		err = invals(e->vm, G1 + M2, ns, n);
		for (i = 0; i < nq && !err; i++)
			if (gvm_fence_is_signaled(busy[i]))	/* must run */
				err = -EIO;
	}
	__atomic_store_n(&words[1], 1, __ATOMIC_RELEASE);
	for (i = 0; i < nq; i++) {
		if (!busy[i])
			continue;
		gvm_fence_wait(busy[i], GVM_TIMEOUT_INFINITE);
		if (gvm_fence_get_status(busy[i]) < 0)
			err = -EIO;
		gvm_fence_put(busy[i]);
	}
	return err;
}

/*
 * tlb_inval_range (@spans false): one compute engine runs a polling
 * kernel (acknowledges at its next lane load), the others are idle
 * (acknowledged inline by the submitter).  tlb_inval_busy (@spans true):
 * every engine runs a span kernel.  Each invalidation is timed; so is
 * each round trip of the baseline.
 */
static int inval_bench(const struct gvm_bench_ctx *ctx,
		       struct gvm_bench_result *res, bool spans)
{
	const int inner = ctx->quick ? 20 : 1000;
	const int total = inner * GVM_BENCH_REPS;
	struct spinpong sp = { 0, false };
	struct gvm_queue *qs[INVAL_QUEUES] = { 0 };
	bool pong_started = false;
	struct gvm_bo *bo = NULL;
	uint64_t *words = NULL;
	double *v, *b;
	pthread_t pong;
	struct env e;
	int r, i, nq = spans ? INVAL_QUEUES : 1, err;

	if (gvm_bench_samples((size_t)total, &v, &b))
		return -ENOMEM;
	/* engines (created now) on CPU 1, this thread on CPU 0; three busy
	   engines are left on every CPU (one CPU would serve them in turn,
	   one scheduler time slice each) */
	sp.pinned = gvm_bench_run_on_cpu(spans ? -1 : 1);
	err = env_init(&e, 64ull << 20);
	if (sp.pinned)
		gvm_bench_run_on_cpu(0);
	/* [G1, +2M): the kernels' words and span buffer; [G1 + 2M, +2M):
	   the range invalidated */
	if (!err)
		err = bo_at(&e, 2 * M2, G1, &bo, (void **)&words);
	qs[0] = e.q;
	for (i = 1; i < nq && !err; i++)
		err = gvm_queue_create(e.vm, i < 2 ? GVM_ENGINE_COMPUTE :
						      GVM_ENGINE_COPY, &qs[i]);
	if (err)
		goto out;
	/* The baseline runs while the engines idle (spinning kernels on the
	   pong thread's CPU would slow it down), and the spinning pong thread
	   only during the baseline. */
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		double *vs = v + (r < 0 ? 0 : r) * inner;
		double *bs = b + (r < 0 ? 0 : r) * inner;

		err = invals_busy(&e, qs, nq, spans, words, vs, inner);
		if (err)
			break;
		sp.word = 0;
		err = -pthread_create(&pong, NULL, spin_pong_main, &sp);
		if (err)
			break;
		pong_started = true;
		spin_pingpong(&sp, bs, inner);
		__atomic_store_n(&sp.word, UINT64_MAX, __ATOMIC_RELEASE);
		pthread_join(pong, NULL);
		pong_started = false;
	}
	if (!err) {
		gvm_bench_set_pct(res, v, (size_t)total, b, (size_t)total,
				  1000.0);
		res->unit = "us/inval";
		res->baseline = "spin hand-off round trip (2 threads)";
		res->goal = 3;
		res->goal_tail = 20;
		snprintf(res->note, sizeof(res->note),
			 "p50 of %d; %s; %s", total,
			 spans ? "span kernels (64 KiB memset per lane call) "
				 "on all 3 engines" :
				 "1 of 3 engines polling with lane loads",
			 !sp.pinned ? "one CPU: not pinned" :
			 spans ? "engines on any CPU, submitter CPU 0" :
				 "engines + pong on CPU 1, submitter CPU 0");
	}
out:
	if (pong_started) {
		__atomic_store_n(&sp.word, UINT64_MAX, __ATOMIC_RELEASE);
		pthread_join(pong, NULL);
	}
	for (i = 1; i < nq; i++)
		if (qs[i])
			gvm_queue_destroy(qs[i]);
	env_fini(&e);
	if (bo)
		gvm_bo_put(bo);
	gvm_bench_run_on_cpu(-1);
	gvm_bench_samples_free(v, b);
	return err;
}

GVM_BENCH(tlb_inval_range, "2 MiB TLB invalidation + wait, one engine polling")
{
	return inval_bench(ctx, res, false);
}

GVM_BENCH(tlb_inval_busy, "2 MiB TLB invalidation + wait, span kernels on all")
{
	return inval_bench(ctx, res, true);
}

/* ---- exec_latency ------------------------------------------------------- */

static void noop_fn(struct gvm_lane *l, const void *args)
{
	(void)l;
	(void)args;
}

struct efd_pong {
	int ping, pong;
	bool pinned;
};

static void *efd_pong_main(void *arg)
{
	struct efd_pong *pp = arg;
	uint64_t x;

	if (pp->pinned)
		gvm_bench_run_on_cpu(1);
	for (;;) {
		if (read(pp->ping, &x, sizeof(x)) != sizeof(x) || x > 1)
			break;
		if (write(pp->pong, &x, sizeof(x)) != sizeof(x))
			break;
	}
	return NULL;
}

/*
 * gvm_exec() of a kernel that does nothing, on an idle compute queue, to
 * its fence signalled (gvm_fence_wait), each one timed; against an
 * eventfd ping-pong round trip between two threads, each timed.  Engines
 * (created first) and the pong thread on CPU 1, the caller on CPU 0.
 */
GVM_BENCH(exec_latency, "gvm_exec of a no-op kernel to its fence signalled")
{
	const int inner = ctx->quick ? 20 : 1000;
	const int total = inner * GVM_BENCH_REPS;
	struct efd_pong pp = { -1, -1, false };
	bool pong_started = false;
	struct gvm_kernel k;
	pthread_t pong;
	double *v, *b;
	struct env e;
	int r, i, err;

	if (gvm_bench_samples((size_t)total, &v, &b))
		return -ENOMEM;
	pp.pinned = gvm_bench_run_on_cpu(1);
	err = env_init(&e, 64ull << 20);
	if (pp.pinned)
		gvm_bench_run_on_cpu(0);
	if (err)
		goto out;
	gvm_kernel_init(&k, "bench_noop", noop_fn, 1, NULL, 0);
	pp.ping = eventfd(0, EFD_CLOEXEC);
	pp.pong = eventfd(0, EFD_CLOEXEC);
	if (pp.ping < 0 || pp.pong < 0) {
		err = -errno;
		goto out;
	}
	err = -pthread_create(&pong, NULL, efd_pong_main, &pp);
	if (err)
		goto out;
	pong_started = true;
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		double *vs = v + (r < 0 ? 0 : r) * inner;
		double *bs = b + (r < 0 ? 0 : r) * inner;

		for (i = 0; i < inner && !err; i++) {
			int64_t t0 = gvm_bench_now_ns();

			err = exec_wait(e.q, &k);
			vs[i] = (double)(gvm_bench_now_ns() - t0);
		}
		for (i = 0; i < inner && !err; i++) {
			int64_t t0 = gvm_bench_now_ns();
			uint64_t x = 1;

			if (write(pp.ping, &x, sizeof(x)) != sizeof(x) ||
			    read(pp.pong, &x, sizeof(x)) != sizeof(x))
				err = -EIO;
			bs[i] = (double)(gvm_bench_now_ns() - t0);
		}
	}
	if (!err) {
		gvm_bench_set_pct(res, v, (size_t)total, b, (size_t)total,
				  1000.0);
		res->unit = "us/exec";
		res->baseline = "eventfd ping-pong round trip";
		res->goal = 0.25;
		res->goal_tail = 1;
		snprintf(res->note, sizeof(res->note), "p50 of %d; %s", total,
			 pp.pinned ? "engines + pong on CPU 1, caller on CPU 0"
				   : "one CPU: not pinned");
	}
out:
	if (pong_started) {
		uint64_t stop = 2;

		if (write(pp.ping, &stop, sizeof(stop)) != sizeof(stop))
			err = err ? err : -EIO;
		pthread_join(pong, NULL);
	}
	if (pp.ping >= 0)
		close(pp.ping);
	if (pp.pong >= 0)
		close(pp.pong);
	env_fini(&e);
	gvm_bench_run_on_cpu(-1);
	gvm_bench_samples_free(v, b);
	return err;
}
