// SPDX-License-Identifier: MIT
/*
 * GPU fault queue benchmarks, on the simulated GPU.
 *
 *   fault_batch_dup  the cost of a duplicate fault in a 256-fault batch:
 *                    (time of a batch of 256 faults on one page - time
 *                    of a batch of that one fault) / 255, each batch
 *                    queued while the servicing thread is held, then
 *                    released and waited for (submit, sort, dedupe,
 *                    completion, the submitter's wait).  The serviced
 *                    fault hits no mapping (the cheapest service, so the
 *                    difference is the duplicates').  Baseline: a warm
 *                    4 KiB CPU write fault (a write to each page of 256
 *                    anonymous pages just dropped with MADV_DONTNEED).
 *
 * Faults are injected with gvm__fault_queue_submit(), as an engine's
 * gvm_vm_fault() queues them.  Protocol: warm-up, then GVM_BENCH_REPS
 * passes of many alternating batches each; per pass the minimum batch
 * times (thread wake-ups add noise of tens of microseconds, never
 * subtract) and the median CPU fault; medians of the passes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <gvm/sim.h>
#include <gvm/vm.h>

#include "bench.h"
#include "vm/dev.h"
#include "vm/fault_queue.h"
#include "vm/vm.h"

#define K4 4096ull
#define VA 0x40000000ull
#define DUPS GVM_FAULT_BATCH_MAX

/* ns of one batch of @n faults on one page, queued, released, waited. */
static double batch_ns(struct gvm_vm *vm, struct gvm_fault_req *req,
		       unsigned int n)
{
	struct gvm_device *dev = vm->dev;
	struct gvm_fault_info f = { .addr = VA + 8,
				    .access = GVM_ACCESS_WRITE,
				    .reason = GVM_FAULT_NOT_PRESENT,
				    .engine = GVM_ENGINE_COMPUTE };
	int64_t t0;
	unsigned int i;

	gvm__fault_queue_hold(dev, true);
	t0 = gvm_bench_now_ns();
	for (i = 0; i < n; i++)
		gvm__fault_queue_submit(vm, &f, &req[i]);
	gvm__fault_queue_hold(dev, false);
	for (i = 0; i < n; i++)
		gvm__fault_req_wait(&req[i]);
	return (double)(gvm_bench_now_ns() - t0);
}

static double min_of(const double *v, unsigned int n)
{
	double m = v[0];
	unsigned int i;

	for (i = 1; i < n; i++)
		if (v[i] < m)
			m = v[i];
	return m;
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
			t1[i] = batch_ns(vm, req, 1);
			tn[i] = batch_ns(vm, req, DUPS);
			tc[i] = cpu_fault_ns(p, DUPS);
		}
		if (r < 0)
			continue;
		/* Minima: the two thread wake-ups each batch costs vary by
		   tens of microseconds on a loaded machine, and only add. */
		v[r] = (min_of(tn, iters) - min_of(t1, iters)) / (DUPS - 1);
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
