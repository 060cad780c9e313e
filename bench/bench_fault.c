// SPDX-License-Identifier: MIT
/*
 * GPU fault queue benchmarks, on the simulated GPU.
 *
 *   fault_batch_dup  the cost of a duplicate fault in a 256-fault batch:
 *                    (cost of a batch of 256 faults on one page - cost
 *                    of a batch of that one fault) / 255.  A batch's cost
 *                    is the submitter queuing its faults, the servicing
 *                    thread sorting, deduplicating, servicing and
 *                    completing them (timed by the thread), and the
 *                    submitter collecting the results; the thread's
 *                    wake-up is left out (the same for both batches, and
 *                    noisier than the difference).  The serviced fault
 *                    hits no mapping (the cheapest service, so the
 *                    difference is the duplicates').  Baseline: a warm
 *                    4 KiB CPU write fault (a write to each page of 256
 *                    anonymous pages just dropped with MADV_DONTNEED).
 *
 * Faults are injected with gvm__fault_queue_submit(), as an engine's
 * gvm_vm_fault() queues them.  Protocol: warm-up, then GVM_BENCH_REPS
 * passes of many alternating batches each; medians.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <gvm/sim.h>
#include <gvm/vm.h>

#include "bench.h"
#include "core/atomic.h"
#include "vm/dev.h"
#include "vm/fault_queue.h"
#include "vm/vm.h"

#define K4 4096ull
#define VA 0x40000000ull
#define DUPS GVM_FAULT_BATCH_MAX

/* The three parts of a batch of @n faults on one page, in ns. */
struct batch_ns {
	double submit;		/* the submitter queuing them */
	double service;		/* the thread: sort, dedupe, service,
				   complete (its own clock) */
	double wait;		/* the submitter collecting the results */
};

/*
 * One batch of @n faults on one page: queued while the thread is held,
 * released, and collected once the thread is done with it.  The thread's
 * wake-up is in none of the three parts (it costs the same for 1 or 256
 * faults, and on a loaded machine varies by far more than 255
 * duplicates cost).
 */
static struct batch_ns batch(struct gvm_vm *vm, struct gvm_fault_req *req,
			     unsigned int n)
{
	struct gvm_fault_queue *fq = &vm->dev->fq;
	struct gvm_fault_info f = { .addr = VA + 8,
				    .access = GVM_ACCESS_WRITE,
				    .reason = GVM_FAULT_NOT_PRESENT,
				    .engine = GVM_ENGINE_COMPUTE };
	struct batch_ns t;
	uint64_t done;
	int64_t t0;
	unsigned int i;

	gvm__fault_queue_hold(vm->dev, true);
	t0 = gvm_bench_now_ns();
	for (i = 0; i < n; i++)
		gvm__fault_queue_submit(vm, &f, &req[i]);
	t.submit = (double)(gvm_bench_now_ns() - t0);
	done = gvm_load_acquire(&fq->batches);
	gvm__fault_queue_hold(vm->dev, false);
	while (gvm_load_acquire(&fq->batches) == done)
		gvm_cpu_relax();
	t.service = (double)gvm_load_relaxed(&fq->last_batch_ns);
	t0 = gvm_bench_now_ns();
	for (i = 0; i < n; i++)
		gvm__fault_req_wait(&req[i]);
	t.wait = (double)(gvm_bench_now_ns() - t0);
	return t;
}

/* ns of one warm 4 KiB write fault, over @pages pages of @p. */
static double cpu_fault_ns(uint8_t *p, unsigned int pages)
{
	int64_t t0;
	unsigned int i;

	madvise(p, pages * K4, MADV_DONTNEED);
	t0 = gvm_bench_now_ns();
	for (i = 0; i < pages; i++)
		((volatile uint8_t *)p)[i * K4] = (uint8_t)i;
	return (double)(gvm_bench_now_ns() - t0) / pages;
}

GVM_BENCH(fault_batch_dup, "a duplicate GPU fault in a 256-fault batch")
{
	unsigned int iters = ctx->quick ? 5 : 301, i;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	double *t1, *tn, *tc;
	struct gvm_fault_req *req;
	struct gvm_device *dev = NULL;
	struct gvm_vm *vm = NULL;
	uint8_t *p;
	int r, err;

	req = calloc(DUPS, sizeof(*req));
	t1 = calloc(iters, sizeof(double));
	tn = calloc(iters, sizeof(double));
	tc = calloc(iters, sizeof(double));
	p = mmap(NULL, DUPS * K4, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	err = req && t1 && tn && tc && p != MAP_FAILED ? 0 : -ENOMEM;
	if (!err)
		err = gvm_sim_device_create(NULL, &dev);
	if (!err)
		err = gvm_vm_create(dev, NULL,
				    GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &vm);
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		for (i = 0; i < iters; i++) {
			struct batch_ns one = batch(vm, req, 1);
			struct batch_ns all = batch(vm, req, DUPS);

			t1[i] = one.submit + one.service + one.wait;
			tn[i] = all.submit + all.service + all.wait;
			tc[i] = cpu_fault_ns(p, DUPS);
		}
		if (r < 0)
			continue;
		v[r] = (gvm_bench_median(tn, (int)iters) -
			gvm_bench_median(t1, (int)iters)) / (DUPS - 1);
		b[r] = gvm_bench_median(tc, (int)iters);
	}
	if (!err) {
		res->value = gvm_bench_median(v, GVM_BENCH_REPS);
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
		res->unit = "ns/fault";
		res->baseline = "warm 4 KiB CPU write fault";
		res->goal = 0.1;
		snprintf(res->note, sizeof(res->note),
			 "(256-fault batch - 1-fault batch) / 255, one page");
	}
	if (vm)
		gvm_vm_destroy(vm);
	if (dev)
		gvm_device_put(dev);
	if (p != MAP_FAILED)
		munmap(p, DUPS * K4);
	free(tc);
	free(tn);
	free(t1);
	free(req);
	return err;
}
