// SPDX-License-Identifier: MIT
/*
 * Userptr benchmarks, on the simulated GPU and the real memory of this
 * process.
 *
 *   userptr_bind_64m  gvm_vm_bind() of a 64 MiB userptr (notifier, page
 *                     fetch with MADV_POPULATE_WRITE, PTE write, TLB
 *                     invalidation) at a CPU address 4 KiB past a 2 MiB
 *                     boundary, so every page gets a 4 KiB PTE, against
 *                     touching one byte of each of its pages (warm); the
 *                     unbind between passes is not measured.
 *   userptr_bind_64m_2m  the same at a 2 MiB-aligned CPU address: 2 MiB
 *                     leaves where the host backing allows (reported for
 *                     comparison, no goal).
 *   inval_2pass_4dev  one invalidation of a 2 MiB userptr bound on 4
 *                     devices whose TLB invalidation takes 20 us, against
 *                     the same with 1 device: with two passes the devices'
 *                     latencies overlap (ratio ~1); one pass per device in
 *                     sequence would be ~4.  The note gives the marginal
 *                     cost of a device, (4-device time - 1-device time) / 3:
 *                     its share of the first pass (zap, submit) and of the
 *                     waits beyond the first.
 *   inval_2pass_4dev_svm  the same with the 2 MiB bound as an SVM range on
 *                     4 fault-mode VMs mirroring the process (migration
 *                     off, so every device maps the system pages): the
 *                     invalidation goes through each VM's chunk notifier
 *                     and range child; a GPU fault rebinds between passes.
 *   munmap_userptr_1m  munmap() of 1 MiB bound as a userptr, with the
 *                     gvm_mm_flush() that makes the UNMAP event's
 *                     invalidation complete, against munmap() of the same
 *                     1 MiB unmirrored; p50 and p90 over every sample.
 *                     The note adds the floor (bare_unmap_floor).
 *
 * Protocol: warm-up, then GVM_BENCH_REPS alternating passes; medians.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "bench.h"
#include "core/atomic.h"
#include "mm/mm.h"
#include "mm/uffd_compat.h"
#include "vm/svm.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define VA 0x40000000ull

static int bind_userptr(struct gvm_vm *vm, void *cpu, uint64_t len)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .addr = VA,
				  .range = len,
				  .userptr = (uint64_t)(uintptr_t)cpu };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

static int unbind(struct gvm_vm *vm, uint64_t len)
{
	struct gvm_bind_op op = { .op = GVM_BIND_UNMAP, .addr = VA,
				  .range = len };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

/* A simulated device and a VM on it mirroring @mm; stats into @st. */
static int userptr_vm(struct gvm_mm *mm, struct gvm_device **dev,
		      struct gvm_vm **vm, struct gvm_vm_stats *st)
{
	int err = gvm_sim_device_create(NULL, dev);

	if (!err)
		err = gvm_vm_create(*dev, mm, 0, vm);
	if (!err)
		err = gvm_vm_stats(*vm, st);
	return err;
}

/*
 * Binds 64 MiB of userptr at @cpu_off bytes past a 2 MiB-aligned address
 * (the GPU VA is 2 MiB aligned): 4 KiB off, the backing never fits a 2 MiB
 * leaf and every page gets a 4 KiB PTE; 0, it may get 2 MiB leaves where
 * the host pages allow (THP).  The note says which were written.
 */
static int userptr_bind(const struct gvm_bench_ctx *ctx,
			struct gvm_bench_result *res, uint64_t cpu_off)
{
	uint64_t len = ctx->quick ? 4 * M2 : 64ull << 20, i;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	uint64_t map_len = len + 2 * M2;
	struct gvm_vm_stats st0, st1;
	struct gvm_device *dev = NULL;
	struct gvm_vm *vm = NULL;
	struct gvm_mm *mm;
	uint8_t *map, *p;
	int r, err;

	err = gvm_mm_self(&mm);
	if (err)
		return err;
	map = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		gvm_mm_put(mm);
		return -ENOMEM;
	}
	p = (uint8_t *)(((uintptr_t)map + M2 - 1) & ~(uintptr_t)(M2 - 1)) +
	    cpu_off;
	memset(p, 1, len);			/* warm */
	err = userptr_vm(mm, &dev, &vm, &st0);
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();
		unsigned int sum = 0;

		err = bind_userptr(vm, p, len);
		if (r >= 0)
			v[r] = (double)(gvm_bench_now_ns() - t0) / 1000.0;
		if (!err)
			err = unbind(vm, len);
		t0 = gvm_bench_now_ns();
		for (i = 0; i < len; i += K4)
			sum += ((volatile uint8_t *)p)[i];
		gvm_bench_keep(sum);
		if (r >= 0)
			b[r] = (double)(gvm_bench_now_ns() - t0) / 1000.0;
	}
	if (!err)
		err = gvm_vm_stats(vm, &st1);
	if (!err) {
		const double n = GVM_BENCH_REPS + 1;

		res->value = gvm_bench_median(v, GVM_BENCH_REPS);
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
		res->unit = "us/bind";
		res->baseline = "touching each page once (warm)";
		res->goal = cpu_off ? 1.5 : 0;
		snprintf(res->note, sizeof(res->note),
			 "CPU address %s; PTEs per bind: %.0f x 4K, %.0f x 2M",
			 cpu_off ? "2 MiB + 4 KiB" : "2 MiB aligned",
			 (double)(st1.pte_writes[0] - st0.pte_writes[0]) / n,
			 (double)(st1.pte_writes[1] - st0.pte_writes[1]) / n);
	}
	if (vm)
		gvm_vm_destroy(vm);
	if (dev)
		gvm_device_put(dev);
	munmap(map, map_len);
	gvm_mm_put(mm);
	return err;
}

GVM_BENCH(userptr_bind_64m, "gvm_vm_bind of a 64 MiB userptr, 4K PTEs")
{
	return userptr_bind(ctx, res, K4);
}

GVM_BENCH(userptr_bind_64m_2m, "gvm_vm_bind of a 64 MiB userptr, 2M aligned")
{
	return userptr_bind(ctx, res, 0);
}

/* (Re)binds @p on @vm: as a userptr, or (@svm) by a GPU fault in it. */
static int bind_again(struct gvm_vm *vm, uint8_t *p, bool svm)
{
	struct gvm_fault_info f = { .addr = (uint64_t)(uintptr_t)p,
				    .access = GVM_ACCESS_WRITE,
				    .reason = GVM_FAULT_NOT_PRESENT,
				    .engine = GVM_ENGINE_COMPUTE };

	return svm ? gvm_vm_fault(vm, &f) : bind_userptr(vm, p, M2);
}

/* A fault-mode VM of @dev mirroring the process's address space. */
static int svm_vm(struct gvm_device *dev, struct gvm_mm *mm,
		  struct gvm_vm **vm)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = (1ull << 47) - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	int err = gvm_vm_create(dev, mm, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				vm);

	if (!err)
		err = gvm_vm_bind(*vm, NULL, &op, 1, NULL, 0);
	return err;
}

/*
 * Median time of invalidating 2 MiB at @p bound on @n devices, as a
 * userptr or (@svm) as an SVM range.
 */
static int inval_time(struct gvm_mm *mm, unsigned int n, uint8_t *p,
		      bool svm, int reps, double *out)
{
	struct gvm_sim_config cfg = { .vram_size = 16ull << 20,
				      .tlb_inval_latency_ns = 20000 };
	struct gvm_device *dev[4] = { 0 };
	struct gvm_vm *vm[4] = { 0 };
	double t[64];
	unsigned int i;
	int r, err = 0;

	for (i = 0; i < n && !err; i++) {
		err = gvm_sim_device_create(&cfg, &dev[i]);
		if (err)
			break;
		err = svm ? svm_vm(dev[i], mm, &vm[i])
			  : gvm_vm_create(dev[i], mm, 0, &vm[i]);
	}
	for (r = 0; r < reps && !err; r++) {
		int64_t t0;

		/* Bound everywhere again: live again. */
		for (i = 0; i < n && !err; i++)
			err = bind_again(vm[i], p, svm);
		if (err)
			break;
		t0 = gvm_bench_now_ns();
		gvm__mm_invalidate(mm, (uint64_t)(uintptr_t)p, M2,
				   GVM_MM_EVENT_MIGRATE);
		t[r] = (double)(gvm_bench_now_ns() - t0) / 1000.0;
	}
	if (!err)
		*out = gvm_bench_median(t, reps);
	for (i = 0; i < n; i++) {
		if (vm[i])
			gvm_vm_destroy(vm[i]);
		if (dev[i])
			gvm_device_put(dev[i]);
	}
	return err;
}

static int inval_2pass(const struct gvm_bench_ctx *ctx,
		       struct gvm_bench_result *res, bool svm)
{
	int reps = ctx->quick ? 3 : 41, r, err = 0;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	struct gvm_mm *mm;
	uint8_t *map, *p;

	err = gvm_mm_self(&mm);
	if (err)
		return err;
	map = mmap(NULL, 2 * M2, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		gvm_mm_put(mm);
		return -ENOMEM;
	}
	/* 2 MiB aligned, so that an SVM range covers it whole */
	p = (uint8_t *)(((uintptr_t)map + M2 - 1) & ~(uintptr_t)(M2 - 1));
	memset(p, 1, M2);
	gvm_store_relaxed(&gvm__svm_no_migration, true);
	for (r = 0; r < GVM_BENCH_REPS && !err; r++) {
		err = inval_time(mm, 4, p, svm, reps, &v[r]);
		if (!err)
			err = inval_time(mm, 1, p, svm, reps, &b[r]);
	}
	gvm_store_relaxed(&gvm__svm_no_migration, false);
	if (!err) {
		res->value = gvm_bench_median(v, GVM_BENCH_REPS);
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
		res->unit = "us/inval";
		res->baseline = "the same on 1 device";
		res->goal = 1.2;
		snprintf(res->note, sizeof(res->note),
			 "%s; two passes; modelled TLB latency 20 us; marginal "
			 "cost per extra device %.2f us",
			 svm ? "SVM range of 2 MiB in system memory"
			     : "userptr of 2 MiB",
			 (res->value - res->baseline_value) / 3);
	}
	munmap(map, 2 * M2);
	gvm_mm_put(mm);
	return err;
}

GVM_BENCH(inval_2pass_4dev, "userptr invalidation on 4 devices (20 us TLB)")
{
	return inval_2pass(ctx, res, false);
}

GVM_BENCH(inval_2pass_4dev_svm, "SVM range invalidation on 4 devices (20 us TLB)")
{
	return inval_2pass(ctx, res, true);
}

/* Maps 1 MiB at @slot (a hole or PROT_NONE) and writes every page. */
static int slot_fill(uint8_t *slot, uint64_t len, int i)
{
	if (mmap(slot, len, PROT_READ | PROT_WRITE,
		 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != slot)
		return -ENOMEM;
	memset(slot, i & 0xff, len);
	return 0;
}

/* munmap() of @slot (+ gvm_mm_flush() if @mm); the ns it took. */
static double slot_unmap(uint8_t *slot, uint64_t len, struct gvm_mm *mm)
{
	int64_t t0 = gvm_bench_now_ns();

	munmap(slot, len);
	if (mm)
		gvm_mm_flush(mm);
	return (double)(gvm_bench_now_ns() - t0);
}

/*
 * The floor of any design built on userfaultfd's UNMAP event: munmap() of
 * a 1 MiB range registered with a userfaultfd of our own whose reader
 * thread does nothing but read the events.  The kernel holds munmap()
 * until the event is read, so it pays a wake-up of the reader and one of
 * itself back however fast the reader is.  p50 and p90 in ns into @p50,
 * @p90; false if userfaultfd is not available.
 */
struct bare_reader {
	int uffd, stop;
};

static void *bare_read(void *arg)
{
	struct bare_reader *br = arg;
	struct pollfd pfd = { .fd = br->uffd, .events = POLLIN };
	struct uffd_msg msg;

	while (!gvm_load_acquire(&br->stop)) {
		if (poll(&pfd, 1, 10) > 0)
			while (read(br->uffd, &msg, sizeof(msg)) ==
			       (ssize_t)sizeof(msg))
				;
	}
	return NULL;
}

static bool bare_unmap_floor(uint8_t *slot, uint64_t len, int n,
			     double *p50, double *p90)
{
	struct bare_reader br = { .stop = 0 };
	bool ok = false;
	pthread_t t;
	double *v;
	int i;

	v = malloc((size_t)n * sizeof(*v));
	br.uffd = gvm_bench_uffd(UFFD_FEATURE_EVENT_UNMAP, true);
	if (!v || br.uffd < 0 || pthread_create(&t, NULL, bare_read, &br))
		goto out;
	for (i = 0; i < n; i++) {
		struct uffdio_register r = {
			.range = { .start = (uintptr_t)slot, .len = len },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (slot_fill(slot, len, i) ||
		    ioctl(br.uffd, UFFDIO_REGISTER, &r))
			break;
		v[i] = slot_unmap(slot, len, NULL);
	}
	gvm_store_release(&br.stop, 1);
	pthread_join(t, NULL);
	if (i == n) {
		*p50 = gvm_bench_percentile(v, (size_t)n, 50);
		*p90 = gvm_bench_percentile(v, (size_t)n, 90);
		ok = true;
	}
out:
	if (br.uffd >= 0)
		close(br.uffd);
	free(v);
	return ok;
}

GVM_BENCH(munmap_userptr_1m, "munmap of 1 MiB bound as a userptr (UNMAP event)")
{
	const int inner = ctx->quick ? 20 : 1000;
	const int total = inner * GVM_BENCH_REPS;
	const uint64_t len = 1ull << 20, area = len + 2 * K4;
	struct gvm_vm_stats st0, st1;
	struct gvm_device *dev = NULL;
	struct gvm_vm *vm = NULL;
	uint8_t *guard, *slot;
	double *v, *b, f50, f90;
	char floor[96] = "";
	struct gvm_mm *mm;
	int r, i, err;

	if (gvm_bench_samples((size_t)total, &v, &b))
		return -ENOMEM;
	err = gvm_mm_self(&mm);
	if (err) {
		gvm_bench_samples_free(v, b);
		return err;
	}
	guard = mmap(NULL, area, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		     0);
	if (guard == MAP_FAILED) {
		err = -ENOMEM;
		goto out_mm;
	}
	slot = guard + K4;
	err = userptr_vm(mm, &dev, &vm, &st0);
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		double *vs = v + (r < 0 ? 0 : r) * inner;
		double *bs = b + (r < 0 ? 0 : r) * inner;

		for (i = 0; i < inner && !err; i++) {
			err = slot_fill(slot, len, i);
			if (!err)
				err = bind_userptr(vm, slot, len);
			if (err)
				break;
			vs[i] = slot_unmap(slot, len, mm);
			err = unbind(vm, len);
			if (!err)
				err = slot_fill(slot, len, i);
			if (!err)
				bs[i] = slot_unmap(slot, len, NULL);
		}
	}
	if (!err)
		err = gvm_vm_stats(vm, &st1);
	/* every timed munmap must have invalidated the userptr */
	if (!err && st1.userptr_invalidations - st0.userptr_invalidations !=
			    (uint64_t)(total + inner))
		err = -EIO;
	if (!err && bare_unmap_floor(slot, len, total, &f50, &f90))
		snprintf(floor, sizeof(floor),
			 "; floor, a bare userfaultfd reader: %.1f / %.1f us "
			 "(gvm / floor p50 %.2f)", f50 / 1000.0, f90 / 1000.0,
			 gvm_bench_percentile(v, (size_t)total, 50) / f50);
	if (!err) {
		res->tail_pct = 90;
		gvm_bench_set_pct(res, v, (size_t)total, b, (size_t)total,
				  1000.0);
		res->unit = "us/munmap";
		res->baseline = "munmap of the same 1 MiB, unmirrored";
		res->goal = 1.5;
		res->goal_tail = 2;
		snprintf(res->note, sizeof(res->note),
			 "p50 of %d, tail column p90; UNMAP event read + "
			 "invalidation (gvm_mm_flush); 256 x 4K pages; "
			 "no CPU pinned%s", total, floor);
	}
	if (vm)
		gvm_vm_destroy(vm);
	if (dev)
		gvm_device_put(dev);
	munmap(guard, area);
out_mm:
	gvm_mm_put(mm);
	gvm_bench_samples_free(v, b);
	return err;
}
