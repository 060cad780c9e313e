// SPDX-License-Identifier: MIT
/*
 * gvm run bind-churn: bind queues map, split, remap and unmap ranges
 * concurrently while kernels run and check what they read.
 *
 * Per device, in one VM:
 *  - a stable range: a data BO of --size bytes and a result BO, bound once.
 *    A checker thread fills the data with a new pattern and checksums it
 *    into the result BO, on its own compute queue, over and over until the
 *    binders are done, and compares each sum on the CPU;
 *  - NR_BINDERS binder threads, each with its own bind queue, compute queue
 *    and syncobj, and two BOs X and Y of --size (W) bytes, churning a
 *    window of 2W right after the stable range (same page-table
 *    directories).  Round r of binder t:
 *
 *      bind   MAP X at [0, W) and Y at [W, 2W)         out: syncobj
 *      exec   fill [0, W) with A, [W, 2W) with B        in: syncobj
 *      exec   checksum [0, 2W)                         -> (W/8)(A + B)
 *      bind   UNMAP [W/2, 3W/2): splits both mappings (waits for the
 *             kernels above, so it is queued as a job)
 *      bind   MAP Y at [0, W), replacing what is left of X  out: syncobj
 *      exec   checksum [0, W)                in: syncobj -> (W/8) B
 *      exec   checksum [3W/2, 2W) (Y's surviving tail)  -> (W/16) B
 *      bind   UNMAP [0, 2W)                            out: syncobj
 *      wait   the checksums' out-fences, compare on the CPU
 *
 *    (offsets in the window; A and B are 32-bit patterns unique to the
 *    binder and round, and sums are of 64-bit words, modulo 2^64).
 *
 * A kernel that faults (its fence signals -EIO) or a sum that differs is a
 * failure: the run stops and the tool exits 1.  --iters is the number of
 * rounds per binder; binds/s counts every bind call of the binders.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "core/sync.h"
#include "run.h"

#define NR_BINDERS 3
#define RES_SIZE (64u << 10)		/* result BO: 8192 slots */
#define CHECK_SLOT 0
#define BINDER_SLOT(t) (8 + (t) * 8)
#define VA_BASE (1ull << 30)
#define M2 (2ull << 20)

struct churn;

struct binder {
	struct churn *c;
	unsigned int id;
	pthread_t thread;
	struct gvm_queue *bq, *cq;
	struct gvm_syncobj *so;
	struct gvm_bo *x, *y;
	uint64_t win;			/* the window's VA */
	uint64_t binds, checks;
};

struct churn {
	struct run_dev *d;
	struct gvm_vm *vm;
	struct gvm_bo *data, *res;
	uint64_t data_va, res_va;
	volatile uint64_t *res_cpu;
	struct gvm_queue *cq;
	struct binder b[NR_BINDERS];
	pthread_mutex_t lock;		/* failure reports */
	uint32_t stop;			/* atomic: failure, or binders done */
	uint32_t binders_left;		/* atomic */
	uint64_t stable_checks;
};

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

static uint64_t word(uint32_t p)
{
	return (uint64_t)p << 32 | p;
}

static int churn_check(const struct run_opts *o)
{
	if (o->size % 8192) {
		fprintf(stderr, "gvm run bind-churn: --size must be a multiple "
			"of 8K (the window is split in halves)\n");
		return 2;
	}
	return 0;
}

static uint64_t churn_vram(const struct run_opts *o)
{
	/* Stable data + results, two BOs per binder, tables, slack. */
	return o->size + RES_SIZE + 2 * NR_BINDERS * o->size +
	       (7 * o->size >> 8) + (4ull << 20);
}

static bool stopping(struct churn *c)
{
	return __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE);
}

__attribute__((format(printf, 2, 3)))
static void fail(struct churn *c, const char *fmt, ...)
{
	char buf[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&c->lock);
	run_fail(c->d, "%s", buf);
	pthread_mutex_unlock(&c->lock);
	__atomic_store_n(&c->stop, 1u, __ATOMIC_RELEASE);
}

static int bind(struct binder *b, uint32_t op, uint64_t off, uint64_t range,
		struct gvm_bo *bo, bool signal)
{
	struct gvm_bind_op o = { .op = op, .addr = b->win + off,
				 .range = range, .bo = bo };
	struct gvm_sync s = { .type = GVM_SYNC_SYNCOBJ,
			      .flags = GVM_SYNC_SIGNAL, .syncobj = b->so };

	b->binds++;
	return gvm_vm_bind(b->c->vm, b->bq, &o, 1, &s, signal ? 1 : 0);
}

static int bind2(struct binder *b, uint64_t w)
{
	struct gvm_bind_op o[2] = {
		{ .op = GVM_BIND_MAP, .addr = b->win, .range = w, .bo = b->x },
		{ .op = GVM_BIND_MAP, .addr = b->win + w, .range = w,
		  .bo = b->y },
	};
	struct gvm_sync s = { .type = GVM_SYNC_SYNCOBJ,
			      .flags = GVM_SYNC_SIGNAL, .syncobj = b->so };

	b->binds++;
	return gvm_vm_bind(b->c->vm, b->bq, o, 2, &s, 1);
}

/* A fill then nothing (@out NULL) or a checksum into @slot (*@out). */
static int exec_fill(struct gvm_queue *q, uint64_t va, uint64_t size,
		     uint32_t pattern, struct gvm_syncobj *wait)
{
	struct gvm_kernel k;
	int err = gvm_kernel_fill(&k, va, size, pattern);

	return err ? err : run_exec(q, &k, NULL, wait, NULL);
}

static int exec_sum(struct churn *c, struct gvm_queue *q, uint64_t va,
		    uint64_t size, unsigned int slot,
		    struct gvm_syncobj *wait, struct gvm_fence **out)
{
	struct gvm_kernel k;
	int err = gvm_kernel_checksum(&k, va, size, c->res_va + slot * 8);

	return err ? err : run_exec(q, &k, NULL, wait, out);
}

/* Waits for @f; checks the kernel did not fault and wrote @expect. */
static int check(struct churn *c, struct gvm_fence *f, unsigned int slot,
		 uint64_t expect, const char *what)
{
	int err = run_wait(f);
	uint64_t got;

	if (err) {
		fail(c, "%s: the kernel failed (%s)%s", what, strerror(-err),
		     err == -EIO ? ": it faulted, a mapping was missing" : "");
		return err;
	}
	got = c->res_cpu[slot];
	if (got != expect) {
		fail(c, "%s: checksum 0x%016" PRIx64 ", expected 0x%016" PRIx64
		     ": a kernel read wrong data", what, got, expect);
		return -EIO;
	}
	return 0;
}

static int round_once(struct binder *b, uint64_t r)
{
	struct churn *c = b->c;
	const uint64_t w = c->d->o->size;
	const uint32_t pa = 0xA0000000u + (b->id << 20) + (uint32_t)(r & 0xfffff);
	const uint32_t pb = 0xB0000000u + (b->id << 20) + (uint32_t)(r & 0xfffff);
	const unsigned int slot = BINDER_SLOT(b->id);
	struct gvm_fence *f[3] = { NULL, NULL, NULL };
	char what[64];
	int err, i;

	err = bind2(b, w);
	if (!err)
		err = exec_fill(b->cq, b->win, w, pa, b->so);
	if (!err)
		err = exec_fill(b->cq, b->win + w, w, pb, NULL);
	if (!err)
		err = exec_sum(c, b->cq, b->win, 2 * w, slot, NULL, &f[0]);
	if (!err)
		err = bind(b, GVM_BIND_UNMAP, w / 2, w, NULL, false);
	if (!err)
		err = bind(b, GVM_BIND_MAP, 0, w, b->y, true);
	if (!err)
		err = exec_sum(c, b->cq, b->win, w, slot + 1, b->so, &f[1]);
	if (!err)
		err = exec_sum(c, b->cq, b->win + 3 * w / 2, w / 2, slot + 2,
			       NULL, &f[2]);
	if (!err)
		err = bind(b, GVM_BIND_UNMAP, 0, 2 * w, NULL, true);
	if (err) {
		fail(c, "binder %u round %" PRIu64 ": %s", b->id, r,
		     strerror(-err));
		for (i = 0; i < 3; i++)
			if (f[i])
				run_wait(f[i]);
		return err;
	}
	snprintf(what, sizeof(what), "binder %u round %" PRIu64 ", X+Y",
		 b->id, r);
	err = check(c, f[0], slot, (w / 8) * (word(pa) + word(pb)), what);
	f[0] = NULL;
	snprintf(what, sizeof(what), "binder %u round %" PRIu64 ", Y remapped",
		 b->id, r);
	if (!err)
		err = check(c, f[1], slot + 1, (w / 8) * word(pb), what);
	f[1] = NULL;
	snprintf(what, sizeof(what), "binder %u round %" PRIu64 ", Y's tail",
		 b->id, r);
	if (!err)
		err = check(c, f[2], slot + 2, (w / 16) * word(pb), what);
	f[2] = NULL;
	for (i = 0; i < 3; i++)
		if (f[i])
			run_wait(f[i]);
	if (!err)
		b->checks += 3;
	return err;
}

static void *binder_thread(void *arg)
{
	struct binder *b = arg;
	uint64_t r;

	for (r = 0; r < b->c->d->o->iters && !stopping(b->c); r++) {
		if (round_once(b, r))
			break;
		__atomic_fetch_add(&b->c->d->done, 1, __ATOMIC_RELAXED);
	}
	gvm_syncobj_wait(b->so, GVM_TIMEOUT_INFINITE);
	/* The last binder out stops the checker. */
	if (__atomic_sub_fetch(&b->c->binders_left, 1, __ATOMIC_ACQ_REL) == 0)
		__atomic_store_n(&b->c->stop, 1u, __ATOMIC_RELEASE);
	return NULL;
}

/* The stable range: fill, checksum, compare, until the binders are done. */
static void checker(struct churn *c)
{
	const uint64_t s = c->d->o->size;
	uint64_t k = 0;

	do {
		uint32_t p = 0xC0000000u + (uint32_t)(k & 0x0fffffff);
		struct gvm_fence *f = NULL;
		char what[64];
		int err;

		err = exec_fill(c->cq, c->data_va, s, p, NULL);
		if (!err)
			err = exec_sum(c, c->cq, c->data_va, s, CHECK_SLOT,
				       NULL, &f);
		if (err) {
			fail(c, "stable range: %s", strerror(-err));
			return;
		}
		snprintf(what, sizeof(what), "stable range, pass %" PRIu64, k);
		if (check(c, f, CHECK_SLOT, (s / 8) * word(p), what))
			return;
		c->stable_checks++;
		k++;
	} while (!stopping(c));
}

static int bind_stable(struct churn *c)
{
	struct gvm_bind_op o[2] = {
		{ .op = GVM_BIND_MAP, .addr = c->data_va,
		  .range = c->d->o->size, .bo = c->data },
		{ .op = GVM_BIND_MAP, .addr = c->res_va, .range = RES_SIZE,
		  .bo = c->res },
	};

	return gvm_vm_bind(c->vm, NULL, o, 2, NULL, 0);
}

static int setup(struct churn *c)
{
	const uint64_t w = c->d->o->size;
	const uint64_t wa = 2 * w >= M2 ? M2 : 64u << 10;
	struct gvm_device *dev = c->d->dev;
	unsigned int t;
	int err;

	err = gvm_vm_create(dev, NULL, 0, &c->vm);
	if (err)
		return err;
	c->data_va = VA_BASE;
	c->res_va = VA_BASE + align_up(w, M2);
	err = gvm_bo_create(dev, w, GVM_MEM_VRAM, c->vm, &c->data);
	if (!err)
		err = gvm_bo_create(dev, RES_SIZE, GVM_MEM_VRAM, c->vm, &c->res);
	if (!err)
		err = gvm_bo_map(c->res, (void **)&c->res_cpu);
	if (!err)
		err = bind_stable(c);
	if (!err)
		err = gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->cq);
	for (t = 0; t < NR_BINDERS && !err; t++) {
		struct binder *b = &c->b[t];

		b->c = c;
		b->id = t;
		b->win = align_up(c->res_va + RES_SIZE, wa) +
			 t * align_up(2 * w, wa);
		err = gvm_queue_create(c->vm, GVM_ENGINE_BIND, &b->bq);
		if (!err)
			err = gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &b->cq);
		if (!err)
			err = gvm_syncobj_create(&b->so);
		if (!err)
			err = gvm_bo_create(dev, w, GVM_MEM_VRAM, NULL, &b->x);
		if (!err)
			err = gvm_bo_create(dev, w, GVM_MEM_VRAM, NULL, &b->y);
	}
	return err;
}

static void teardown(struct churn *c)
{
	unsigned int t;
	int err;

	for (t = 0; t < NR_BINDERS; t++) {
		struct binder *b = &c->b[t];

		if (b->bq)
			gvm_queue_destroy(b->bq);
		if (b->cq)
			gvm_queue_destroy(b->cq);
		if (b->so)
			gvm_syncobj_destroy(b->so);
		if (b->x)
			gvm_bo_put(b->x);
		if (b->y)
			gvm_bo_put(b->y);
	}
	if (c->cq)
		gvm_queue_destroy(c->cq);
	if (c->data)
		gvm_bo_put(c->data);
	if (c->res)
		gvm_bo_put(c->res);
	if (c->vm) {
		err = gvm_vm_destroy(c->vm);
		if (err)
			fail(c, "gvm_vm_destroy: %s", strerror(-err));
	}
}

static void churn_run(struct run_dev *d)
{
	const struct run_opts *o = d->o;
	struct churn c = { .d = d };
	unsigned int t, started = 0;
	char b1[32];
	int64_t t0;
	int err;

	pthread_mutex_init(&c.lock, NULL);
	__atomic_store_n(&d->total, o->iters * NR_BINDERS, __ATOMIC_RELAXED);
	err = setup(&c);
	if (err) {
		fail(&c, "setup: %s", strerror(-err));
		goto out;
	}
	run_say(d, "1. A VM with a stable range: a %s data BO at 0x%" PRIx64
		   " and a result BO,\n   bound once.  A checker fills the "
		   "data and checksums it on its own compute\n   queue, again "
		   "and again.\n",
		gvm_tool_bytes(b1, sizeof(b1), o->size), c.data_va);
	run_say(d, "2. %d binders, each with its own bind queue, compute queue "
		   "and syncobj,\n   churn windows next to it (sharing "
		   "page-table pages): map two BOs, fill\n   and checksum them, "
		   "unmap the middle (splitting both mappings), map one\n   BO "
		   "over the other, checksum, unmap everything; %" PRIu64
		   " rounds each.\n",
		NR_BINDERS, o->iters);

	t0 = gvm_tool_now_ns();
	__atomic_store_n(&c.binders_left, NR_BINDERS, __ATOMIC_RELAXED);
	for (t = 0; t < NR_BINDERS; t++) {
		err = -gvm__thread_create(&c.b[t].thread, binder_thread,
				     &c.b[t]);
		if (err) {
			fail(&c, "pthread_create: %s", strerror(err));
			break;
		}
		started++;
	}
	/* Binders that could not start count as done. */
	for (; t < NR_BINDERS; t++) {
		if (__atomic_sub_fetch(&c.binders_left, 1,
				       __ATOMIC_ACQ_REL) == 0)
			__atomic_store_n(&c.stop, 1u, __ATOMIC_RELEASE);
	}
	if (started)
		checker(&c);
	for (t = 0; t < started; t++)
		gvm__thread_join(c.b[t].thread);
	__atomic_store_n(&c.stop, 1u, __ATOMIC_RELEASE);
	d->ns = gvm_tool_now_ns() - t0;
	for (t = 0; t < NR_BINDERS; t++) {
		d->binds += c.b[t].binds;
		d->checks += c.b[t].checks;
	}
	d->checks += c.stable_checks;
	if (!d->failed) {
		run_snapshot(d, c.vm);
		snprintf(d->result, sizeof(d->result),
			 "bind-churn verified, %" PRIu64 " checksums correct "
			 "(%" PRIu64 " churned, %" PRIu64 " stable), no fault",
			 d->checks, d->checks - c.stable_checks,
			 c.stable_checks);
		run_say(d, "3. %" PRIu64 " bind calls in %.2f s while %" PRIu64
			   " checksums ran; every one matched on\n   the "
			   "CPU.\n",
			d->binds, (double)d->ns / 1e9, d->checks);
	}
	if (!d->failed && d->ss.faults)
		fail(&c, "%" PRIu64 " GPU faults", d->ss.faults);
out:
	teardown(&c);
	pthread_mutex_destroy(&c.lock);
}

static void churn_report(const struct run_dev *d)
{
	printf("  churn       %" PRIu64 " bind calls by %d bind queues in "
	       "%.2f s: %.0f binds/s\n",
	       d->binds, NR_BINDERS, (double)d->ns / 1e9,
	       d->ns ? (double)d->binds * 1e9 / (double)d->ns : 0.0);
}

static void churn_total(const struct run_dev *devs, unsigned int n,
			int64_t wall)
{
	uint64_t binds = 0;
	int64_t ns = 0;
	unsigned int i;

	for (i = 0; i < n; i++) {
		binds += devs[i].binds;
		if (devs[i].ns > ns)
			ns = devs[i].ns;
	}
	if (n > 1)
		printf("total: %u devices in parallel, %" PRIu64 " bind calls "
		       "in %.2f s: %.0f binds/s; wall time %.2f s\n",
		       n, binds, (double)ns / 1e9,
		       ns ? (double)binds * 1e9 / (double)ns : 0.0,
		       (double)wall / 1e9);
	else
		printf("wall time %.2f s (with setup)\n", (double)wall / 1e9);
}

const struct run_workload gvm_run_bind_churn = {
	.name = "bind-churn",
	.intro = "bind queues map, split, remap and unmap ranges\nwhile "
		 "kernels on the same GPUs check every value they read.",
	.what = "bind queues map/split/remap/unmap while kernels check data "
		"[--size 1M --iters 300]",
	.default_size = 1ull << 20,
	.default_iters = 300,
	.unit = "rounds",
	.det = true,
	.check = churn_check,
	.vram_needed = churn_vram,
	.run = churn_run,
	.report = churn_report,
	.total = churn_total,
};
