// SPDX-License-Identifier: MIT
/*
 * gvm run triad: the STREAM triad a[i] = b[i] + 3.0 * c[i] on a simulated
 * GPU, through the whole VM stack.
 *
 * Per device: a VM; three VM-local BOs of --size bytes in VRAM; one
 * gvm_vm_bind() with an array of three MAP ops; two fill kernels for b
 * and c; then --iters iterations of the triad kernel, each split into one
 * slice per compute engine (one exec queue per engine), at most WINDOW
 * iterations in flight; the result checked on the CPU through
 * gvm_bo_map().  Bandwidth counts 3 * size bytes per iteration (two reads,
 * one write), over the triad iterations only.
 *
 * The fill patterns make every value exact: b = 2 + 2^-21 and
 * c = 3 + 2^-21 + 2^-32 need few mantissa bits, so b + 3c is exact in
 * any evaluation order (with or without fused multiply-add), and the CPU
 * compares bit for bit.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "run.h"

#define PAT_B 0x40000000u	/* as a double: 2 + 2^-21 */
#define PAT_C 0x40080000u	/* 3 + 2^-21 + 2^-32 */
#define SCALAR 3.0
#define WINDOW 4		/* iterations in flight */
#define MAX_QUEUES 16
#define VA_BASE (1ull << 32)

static double pattern_double(uint32_t p)
{
	uint64_t bits = (uint64_t)p << 32 | p;
	double d;

	memcpy(&d, &bits, sizeof(d));
	return d;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

/* Where BO i goes: aligned so that large pages can be used. */
static uint64_t bo_va(uint64_t size, unsigned int i)
{
	uint64_t align = size >= (1ull << 30) ? 1ull << 30 : 2ull << 20;

	return VA_BASE + i * align_up(size, align);
}

static uint64_t triad_vram(const struct run_opts *o)
{
	/* Three BOs, page tables (a few pages per 2 MiB worst case), slack. */
	return 3 * o->size + 3 * (o->size >> 9) + (4ull << 20);
}

struct triad {
	struct run_dev *d;
	struct gvm_vm *vm;
	struct gvm_bo *bo[3];		/* a, b, c */
	uint64_t va[3];
	struct gvm_queue *q[MAX_QUEUES];
	unsigned int nq;
	struct gvm_fence *inflight[WINDOW][MAX_QUEUES];
};

static int bind_all(struct triad *t)
{
	struct gvm_bind_op ops[3];
	struct gvm_fence *done = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .out = &done };
	unsigned int i;
	int err;

	memset(ops, 0, sizeof(ops));
	for (i = 0; i < 3; i++) {
		ops[i].op = GVM_BIND_MAP;
		ops[i].addr = t->va[i];
		ops[i].range = gvm_bo_size(t->bo[i]);
		ops[i].bo = t->bo[i];
	}
	err = gvm_vm_bind(t->vm, NULL, ops, 3, &s, 1);
	if (err)
		return err;
	return run_wait(done);
}

/* Waits for the iteration in slot @w of the window; 0 or an error. */
static int drain(struct triad *t, unsigned int w)
{
	int err = 0, e;
	unsigned int i;

	for (i = 0; i < t->nq; i++) {
		if (!t->inflight[w][i])
			continue;
		e = run_wait(t->inflight[w][i]);
		t->inflight[w][i] = NULL;
		if (!err)
			err = e;
	}
	return err;
}

/* One iteration: a slice of the arrays per queue; fences in slot @w. */
static int submit(struct triad *t, unsigned int w, uint64_t size)
{
	uint64_t slice = align_up((size + t->nq - 1) / t->nq,
				  GVM_KERNEL_LANE_BYTES);
	uint64_t off;
	unsigned int i;
	int err;

	for (i = 0, off = 0; off < size; i++, off += slice) {
		uint64_t len = size - off < slice ? size - off : slice;
		struct gvm_kernel k;

		err = gvm_kernel_triad(&k, t->va[0] + off, t->va[1] + off,
				       t->va[2] + off, len / 8, SCALAR);
		if (!err)
			err = run_exec(t->q[i], &k, NULL, NULL,
				       &t->inflight[w][i]);
		if (err)
			return err;
	}
	return 0;
}

/* Checks a, b and c on the CPU; the index of the first wrong one, or -1. */
static int64_t verify(struct triad *t, uint64_t n, const char **which)
{
	const double b = pattern_double(PAT_B), c = pattern_double(PAT_C);
	const double a = b + SCALAR * c;
	double *p[3];
	uint64_t i;
	unsigned int j;

	for (j = 0; j < 3; j++) {
		if (gvm_bo_map(t->bo[j], (void **)&p[j])) {
			*which = "map";
			return 0;
		}
	}
	for (i = 0; i < n; i++) {
		if (p[1][i] != b || p[2][i] != c) {
			*which = p[1][i] != b ? "b" : "c";
			return (int64_t)i;
		}
		if (p[0][i] != a) {
			*which = "a";
			return (int64_t)i;
		}
	}
	return -1;
}

static void triad_run(struct run_dev *d)
{
	const struct run_opts *o = d->o;
	const uint64_t size = o->size, n = size / 8;
	struct triad t = { .d = d };
	struct gvm_device_info di;
	struct gvm_vm_stats vs;
	struct gvm_fence *fill[2] = { NULL, NULL };
	struct gvm_kernel k;
	const char *which = "";
	char b1[32], b2[32];
	uint64_t it;
	int64_t bad, t0;
	unsigned int i;
	int err;

	__atomic_store_n(&d->total, o->iters, __ATOMIC_RELAXED);
	err = gvm_device_query(d->dev, &di);
	if (err) {
		run_fail(d, "device query: %s", strerror(-err));
		return;
	}
	err = gvm_vm_create(d->dev, NULL, 0, &t.vm);
	if (err) {
		run_fail(d, "gvm_vm_create: %s", strerror(-err));
		return;
	}
	run_say(d, "1. gvm_vm_create(): a VM on %s, an empty %u-bit GPU virtual "
		   "address space.\n   Its page tables will live in %s's VRAM; "
		   "only the root table exists yet.\n",
		di.name, di.va_bits, di.name);

	for (i = 0; i < 3; i++) {
		t.va[i] = bo_va(size, i);
		err = gvm_bo_create(d->dev, size, GVM_MEM_VRAM, t.vm, &t.bo[i]);
		if (err) {
			run_fail(d, "gvm_bo_create(%s, VRAM): %s",
				 gvm_tool_bytes(b1, sizeof(b1), size),
				 strerror(-err));
			goto out;
		}
	}
	gvm_device_query(d->dev, &di);
	run_say(d, "2. gvm_bo_create() x 3: buffers a, b and c of %s each, "
		   "placed in VRAM\n   (%s of VRAM left free).\n",
		gvm_tool_bytes(b1, sizeof(b1), size),
		gvm_tool_bytes(b2, sizeof(b2), di.vram_free));

	err = bind_all(&t);
	if (err) {
		run_fail(d, "gvm_vm_bind: %s", strerror(-err));
		goto out;
	}
	gvm_vm_stats(t.vm, &vs);
	run_say(d, "3. gvm_vm_bind(): one array of 3 MAP ops maps a, b and c at "
		   "GPU addresses\n   0x%" PRIx64 ", 0x%" PRIx64 " and 0x%" PRIx64
		   ", as one atomic operation.  Nothing\n   had to wait, so the "
		   "CPU wrote the page tables inside the call:\n   %" PRIu64
		   " page-table pages, %" PRIu64 " 2M entries, %" PRIu64
		   " 4K entries (gvm uses the largest\n   page that the "
		   "alignment and the VRAM blocks allow).\n",
		t.va[0], t.va[1], t.va[2], vs.pt_pages, vs.pte_writes[1],
		vs.pte_writes[0]);

	t.nq = di.nr_compute < MAX_QUEUES ? di.nr_compute : MAX_QUEUES;
	for (i = 0; i < t.nq; i++) {
		err = gvm_queue_create(t.vm, GVM_ENGINE_COMPUTE, &t.q[i]);
		if (err) {
			run_fail(d, "gvm_queue_create: %s", strerror(-err));
			t.nq = i;
			goto out;
		}
	}

	err = gvm_kernel_fill(&k, t.va[1], size, PAT_B);
	if (!err)
		err = run_exec(t.q[0], &k, NULL, NULL, &fill[0]);
	if (!err)
		err = gvm_kernel_fill(&k, t.va[2], size, PAT_C);
	if (!err)
		err = run_exec(t.q[t.nq > 1], &k, NULL, NULL, &fill[1]);
	for (i = 0; i < 2; i++) {
		int e = fill[i] ? run_wait(fill[i]) : 0;

		if (!err)
			err = e;
	}
	if (err) {
		run_fail(d, "fill kernels: %s", strerror(-err));
		goto out;
	}
	run_snapshot(d, t.vm);
	run_say(d, "4. gvm_exec() x 2: fill kernels write b[i] = %.7f and c[i] "
		   "= %.7f\n   on %u compute engine%s.  Every access goes "
		   "through\n   the engine's MMU: %" PRIu64 " TLB misses walked "
		   "the page tables the bind wrote,\n   %" PRIu64 " lookups "
		   "hit.\n",
		pattern_double(PAT_B), pattern_double(PAT_C), t.nq,
		t.nq == 1 ? "" : "s (a queue on each)", d->ss.tlb_misses,
		d->ss.tlb_hits);

	t0 = gvm_tool_now_ns();
	for (it = 0; it < o->iters; it++) {
		unsigned int w = (unsigned int)(it % WINDOW);

		if (it >= WINDOW) {
			err = drain(&t, w);
			if (err)
				break;
			__atomic_fetch_add(&d->done, 1, __ATOMIC_RELAXED);
		}
		err = submit(&t, w, size);
		if (err)
			break;
	}
	for (i = 0; i < WINDOW; i++) {
		unsigned int w = (unsigned int)((it + i) % WINDOW);
		int e = drain(&t, w);

		if (!err)
			err = e;
	}
	d->ns = gvm_tool_now_ns() - t0;
	if (err) {
		run_fail(d, "triad kernel: %s", strerror(-err));
		goto out;
	}
	__atomic_store_n(&d->done, o->iters, __ATOMIC_RELAXED);
	d->bytes = 3 * size * o->iters;
	run_say(d, "5. gvm_exec(): the triad kernel a[i] = b[i] + %.1f * c[i], "
		   "%" PRIu64 " time%s, each split\n   over %u engine%s: %s "
		   "read and written in %.1f ms, %.2f GB/s.\n",
		SCALAR, o->iters, o->iters == 1 ? "" : "s", t.nq,
		t.nq == 1 ? "" : "s", gvm_tool_bytes(b1, sizeof(b1), d->bytes),
		(double)d->ns / 1e6, run_gbps(d->bytes, d->ns));

	bad = verify(&t, n, &which);
	if (bad >= 0) {
		if (!strcmp(which, "map"))
			run_fail(d, "gvm_bo_map failed");
		else
			run_fail(d, "wrong result: %s[%" PRId64 "] is not "
				 "what the kernels should have written", which,
				 bad);
		goto out;
	}
	d->checks = n;
	snprintf(d->result, sizeof(d->result),
		 "triad verified, a[i] = b[i] + %.1f * c[i] for all %" PRIu64
		 " doubles", SCALAR, n);
	run_say(d, "6. gvm_bo_map(): the CPU reads a[] straight from VRAM and "
		   "checks all %" PRIu64 "\n   values: correct.\n", n);
	run_snapshot(d, t.vm);
out:
	for (i = 0; i < t.nq; i++)
		gvm_queue_destroy(t.q[i]);
	for (i = 0; i < 3; i++)
		if (t.bo[i])
			gvm_bo_put(t.bo[i]);
	err = gvm_vm_destroy(t.vm);
	if (err) {
		run_fail(d, "gvm_vm_destroy: %s", strerror(-err));
		return;
	}
	if (!d->failed && !gvm_device_query(d->dev, &di))
		run_say(d, "7. gvm_vm_destroy(): mappings unbound, TLB "
			   "flushed, page tables and buffers\n   freed (%s of "
			   "VRAM free again).\n",
			gvm_tool_bytes(b1, sizeof(b1), di.vram_free));
}

static void triad_report(const struct run_dev *d)
{
	char b1[32], b2[32];

	printf("  moved       %s in %.1f ms: %.2f GB/s (%" PRIu64
	       " x 3 x %s)\n",
	       gvm_tool_bytes(b1, sizeof(b1), d->bytes), (double)d->ns / 1e6,
	       run_gbps(d->bytes, d->ns), d->o->iters,
	       gvm_tool_bytes(b2, sizeof(b2), d->o->size));
}

static void triad_total(const struct run_dev *devs, unsigned int n,
			int64_t wall)
{
	uint64_t bytes = 0;
	int64_t ns = 0;
	unsigned int i;
	char b1[32];

	for (i = 0; i < n; i++) {
		bytes += devs[i].bytes;
		if (devs[i].ns > ns)
			ns = devs[i].ns;
	}
	if (n > 1)
		printf("total: %u devices in parallel, %s in %.1f ms: %.2f GB/s"
		       "; wall time %.2f s\n",
		       n, gvm_tool_bytes(b1, sizeof(b1), bytes),
		       (double)ns / 1e6, run_gbps(bytes, ns),
		       (double)wall / 1e9);
	else
		printf("wall time %.2f s (with setup and verification)\n",
		       (double)wall / 1e9);
}

const struct run_workload gvm_run_triad = {
	.name = "triad",
	.intro = "the STREAM triad a[i] = b[i] + 3.0 * c[i],\nthe classic "
		 "memory-bandwidth kernel, on simulated GPUs through gvm's "
		 "whole\nVM stack.",
	.what = "STREAM triad a = b + 3c over three VRAM BOs [--size 64M "
		"--iters 10]",
	.default_size = 64ull << 20,
	.default_iters = 10,
	.unit = "iterations",
	.det = true,
	.vram_needed = triad_vram,
	.run = triad_run,
	.report = triad_report,
	.total = triad_total,
};
