// SPDX-License-Identifier: MIT
/*
 * Shared virtual memory benchmarks (docs/svm.md), on the process's own
 * memory through gvm_mm_self and a simulated device.
 *
 *  svm_fault_4k, svm_fault_64k: one GPU fault serviced (gvm_vm_fault, as
 *    the device's fault handler calls it) on a CPU mapping of that size,
 *    which makes and binds a range in system memory (migration off: this
 *    is the service without the copy).  The pages were touched before, so
 *    no CPU fault is counted in.  One fault at a time: each is a lone
 *    fault, serviced in the calling thread (vm/fault_queue.c, INLINE), the
 *    best case; faults that arrive together go through the servicing
 *    thread in batches (fault_batch_dup).  Baseline: a warm 4 KiB CPU
 *    write fault (page tables present, a zeroed page allocated and
 *    mapped).  The note adds the floor: the service's system calls alone
 *    (syscall_floor_ns).
 *  svm_fault_2m_copy_share: GPU faults on 2 MiB mappings that migrate to
 *    VRAM; the share of the service that is not the copy (time in the
 *    device's copy op, measured inside migrate.c).
 *  migrate_2m: a 2 MiB range moved to VRAM and back (take, copy, copy
 *    back, give); baseline: two memcpy of 2 MiB (the same bytes moved),
 *    cache- and TLB-warm: the strict comparison, kept as the ratio.  The
 *    note adds a memcpy out of pages UFFDIO_MOVE just moved in, which is
 *    what the copy out of the stage has to do: on the project's VM
 *    (PVM, shadow paging) each first access through a fresh PTE is a
 *    hypervisor exit, ~5 us per 4 KiB, and that, not the copy, is where
 *    most of the time goes.
 *  cpu_faultback_4k: the CPU reading a device-resident 4 KiB page (the
 *    event thread's fault-back: invalidation, copy, UFFDIO_MOVE, wake);
 *    baseline: a raw userfaultfd fault resolved in the faulting thread
 *    (UFFD_FEATURE_SIGBUS, UFFDIO_COPY from the signal handler).  The
 *    note adds the floor of a handler thread (bare_faultback_ns).
 *  faultback_way_4k, _64k, _2m: the way back (issue 12), both measured
 *    in the same run: UFFDIO_COPY from the VRAM window by the event thread
 *    against a copy-engine copy into a stage and UFFDIO_MOVE; the value is
 *    the default policy's way (GVM_MM_CPU_BACK_MAX), the baseline the
 *    other one.
 *
 * Each figure is the median over GPU_BENCH_REPS runs of the per-fault
 * mean over many fresh ranges; the note gives what the run covered.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "bench.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "mm/uffd_compat.h"
#include "vm/dev.h"
#include "vm/policy.h"
#include "vm/svm.h"
#include "vm/vm.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M2 (2ull << 20)
#define MIRROR_END (1ull << 47)

struct svm_bench {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
};

static int mirror(struct gvm_vm *vm, uint32_t opcode)
{
	struct gvm_bind_op op = { .op = opcode, .addr = K4,
				  .range = MIRROR_END - K4 };

	if (opcode == GVM_BIND_MAP)
		op.flags = GVM_BIND_CPU_ADDR_MIRROR;
	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

static int svm_setup(struct svm_bench *s)
{
	int err;

	memset(s, 0, sizeof(*s));
	err = gvm_mm_self(&s->mm);
	if (err)
		return err;
	err = gvm_sim_device_create(NULL, &s->dev);
	if (!err)
		err = gvm_vm_create(s->dev, s->mm, GVM_VM_LR_MODE |
				    GVM_VM_FAULT_MODE, &s->vm);
	if (!err)
		err = mirror(s->vm, GVM_BIND_MAP);
	return err;
}

static void svm_teardown(struct svm_bench *s)
{
	if (s->vm)
		gvm_vm_destroy(s->vm);
	gvm_device_put(s->dev);
	gvm_mm_put(s->mm);
}

/*
 * @n CPU mappings of @size bytes each, aligned to @size, each its own VMA
 * (a PROT_NONE gap after it), touched; their start in *@base, stride
 * 2 * @size.
 */
static int map_chunks(uint64_t n, uint64_t size, uint8_t **base)
{
	uint64_t len = 2 * size * n + size;
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *a;

	if (p == MAP_FAILED)
		return -errno;
	a = (uint8_t *)(((uintptr_t)p + size - 1) & ~(uintptr_t)(size - 1));
	for (uint64_t i = 0; i < n; i++) {
		memset(a + 2 * size * i, (int)i, size);
		if (mprotect(a + 2 * size * i + size, size, PROT_NONE))
			return -errno;
	}
	*base = a;
	return 0;
}

static int gpu_fault(struct gvm_vm *vm, uint64_t addr)
{
	struct gvm_fault_info f = { .addr = addr, .access = GVM_ACCESS_WRITE,
				    .reason = GVM_FAULT_NOT_PRESENT,
				    .engine = GVM_ENGINE_COMPUTE };

	return gvm_vm_fault(vm, &f);
}

/* ns per warm 4 KiB CPU write fault, over @n pages. */
static double cpu_fault_ns(uint64_t n)
{
	uint8_t *p = mmap(NULL, n * K4, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int64_t t0;
	double ns;

	if (p == MAP_FAILED)
		return 0;
	memset(p, 1, n * K4);			/* page tables in place */
	madvise(p, n * K4, MADV_DONTNEED);
	t0 = gvm_bench_now_ns();
	for (uint64_t i = 0; i < n; i++)
		((volatile uint8_t *)p)[i * K4] = 1;
	ns = (double)(gvm_bench_now_ns() - t0) / (double)n;
	munmap(p, n * K4);
	return ns;
}

/*
 * The system calls one fault's service makes, with nothing of gvm around
 * them, on @n fresh mappings of @size laid out as map_chunks() does: the
 * PROCMAP_QUERY that sizes the range, the UFFDIO_REGISTER that watches it
 * (WP | MISSING, the modes gvm asks for, on a userfaultfd of our own) and
 * the fetch's (MADV_POPULATE_WRITE; from GVM_MM_SCAN_MIN_BYTES on, a
 * PROCMAP_QUERY for the protection and a PAGEMAP_SCAN instead, as
 * mm/fetch.c does).  ns per fault; 0 if a call is not available.
 */
static double syscall_floor_ns(uint64_t n, uint64_t size)
{
	int uffd = gvm_bench_uffd(UFFD_FEATURE_PAGEFAULT_FLAG_WP, true);
	int maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	bool scan = size >= GVM_MM_SCAN_MIN_BYTES;
	uint8_t *base = NULL;
	double ns = 0;
	int64_t t0;
	uint64_t i;

	if (uffd < 0 || maps < 0 || pagemap < 0 ||
	    map_chunks(n, size, &base))
		goto out;
	t0 = gvm_bench_now_ns();
	for (i = 0; i < n; i++) {
		uint64_t a = (uintptr_t)(base + 2 * size * i);
		struct procmap_query q = { .size = sizeof(q), .query_addr = a };
		struct uffdio_register r = {
			.range = { .start = a, .len = size },
			.mode = UFFDIO_REGISTER_MODE_WP |
				UFFDIO_REGISTER_MODE_MISSING,
		};
		struct page_region v[4];
		struct pm_scan_arg sa = {
			.size = sizeof(sa), .start = a, .end = a + size,
			.vec = (uintptr_t)v, .vec_len = 4,
			.category_mask = PAGE_IS_PRESENT | PAGE_IS_WRITTEN |
					 PAGE_IS_PFNZERO,
			.category_inverted = PAGE_IS_PFNZERO,
			.return_mask = PAGE_IS_PRESENT,
		};

		if (ioctl(maps, PROCMAP_QUERY, &q) ||
		    ioctl(uffd, UFFDIO_REGISTER, &r))
			break;
		if (scan) {
			q.query_addr = a;
			if (ioctl(maps, PROCMAP_QUERY, &q) ||
			    ioctl(pagemap, PAGEMAP_SCAN, &sa) < 0)
				break;
		} else if (madvise((void *)(uintptr_t)a, size,
				   MADV_POPULATE_WRITE)) {
			break;
		}
	}
	if (i == n)
		ns = (double)(gvm_bench_now_ns() - t0) / (double)n;
out:
	if (base)
		munmap(base, 2 * size * n);
	if (pagemap >= 0)
		close(pagemap);
	if (maps >= 0)
		close(maps);
	if (uffd >= 0)
		close(uffd);
	return ns;
}

/* GPU faults on @n mappings of @size, migration off: ns per fault. */
static int svm_fault(const struct gvm_bench_ctx *ctx,
		     struct gvm_bench_result *res, uint64_t size,
		     double goal)
{
	uint64_t n = ctx->quick ? 16 : 1000;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS], floor_ns = 0;
	char floor[112] = "";
	struct svm_bench s;
	uint8_t *base = NULL;
	int err, r;

	err = svm_setup(&s);
	if (!err)
		err = map_chunks(n, size, &base);
	if (err) {
		svm_teardown(&s);
		return err;
	}
	gvm_store_relaxed(&gvm__svm_no_migration, true);
	for (r = 0; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();

		for (uint64_t i = 0; i < n && !err; i++)
			err = gpu_fault(s.vm, (uintptr_t)(base + 2 * size * i));
		v[r] = (double)(gvm_bench_now_ns() - t0) / (double)n;
		b[r] = cpu_fault_ns(n);
		/* fresh ranges next time */
		if (!err)
			err = mirror(s.vm, GVM_BIND_UNMAP);
		if (!err)
			err = mirror(s.vm, GVM_BIND_MAP);
	}
	gvm_store_relaxed(&gvm__svm_no_migration, false);
	if (!err)
		floor_ns = syscall_floor_ns(n, size);
	res->value = gvm_bench_median(v, GVM_BENCH_REPS);
	res->unit = "ns/fault";
	res->baseline = "warm 4 KiB CPU write fault";
	res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
	res->goal = goal;
	if (floor_ns > 0)
		snprintf(floor, sizeof(floor),
			 "; floor, its system calls alone: %.0f ns (%.2f of "
			 "the baseline), gvm's own work %.0f ns", floor_ns,
			 floor_ns / res->baseline_value,
			 res->value - floor_ns);
	snprintf(res->note, sizeof(res->note),
		 "%llu lone faults (serviced inline: best case) on ranges "
		 "of %llu KiB, system memory: PROCMAP_QUERY, range, "
		 "notifier, fetch, PTEs, TLB inval%s",
		 (unsigned long long)n, (unsigned long long)(size >> 10),
		 floor);
	munmap(base, 2 * size * n);
	svm_teardown(&s);
	return err;
}

GVM_BENCH(svm_fault_4k, "GPU fault service, 4 KiB range, no copy")
{
	return svm_fault(ctx, res, K4, 1.5);
}

GVM_BENCH(svm_fault_64k, "GPU fault service, 64 KiB range, no copy")
{
	return svm_fault(ctx, res, K64, 2);
}

GVM_BENCH(svm_fault_2m_copy_share,
	  "GPU fault migrating 2 MiB to VRAM: share that is not the copy")
{
	uint64_t n = ctx->quick ? 2 : 32;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	struct svm_bench s;
	uint8_t *base = NULL;
	int err, r;

	err = svm_setup(&s);
	if (!err)
		err = map_chunks(n, M2, &base);
	if (err) {
		svm_teardown(&s);
		return err;
	}
	for (r = 0; r < GVM_BENCH_REPS && !err; r++) {
		uint64_t copy0 = gvm_load_relaxed(&s.dev->svm_copy_ns), copy;
		int64_t t0 = gvm_bench_now_ns(), total;

		for (uint64_t i = 0; i < n && !err; i++)
			err = gpu_fault(s.vm, (uintptr_t)(base + 2 * M2 * i));
		total = gvm_bench_now_ns() - t0;
		copy = gvm_load_relaxed(&s.dev->svm_copy_ns) - copy0;
		v[r] = (double)((uint64_t)total - copy) / (double)n;
		b[r] = (double)total / (double)n;
		if (!err && gvm_load_relaxed(&s.vm->stats.svm_migrations) <
				    (uint64_t)(r + 1) * n)
			err = -EIO;	/* it must have migrated */
		for (uint64_t i = 0; i < n && !err; i++)
			err = gvm__mm_migrate_to_ram(s.mm, (uintptr_t)(base +
							2 * M2 * i), M2);
		if (!err)
			err = mirror(s.vm, GVM_BIND_UNMAP);
		if (!err)
			err = mirror(s.vm, GVM_BIND_MAP);
	}
	res->value = gvm_bench_median(v, GVM_BENCH_REPS);
	res->unit = "ns/fault";
	res->baseline = "the whole fault (copy included)";
	res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
	res->goal = 0.15;
	snprintf(res->note, sizeof(res->note),
		 "%llu ranges of 2 MiB; not-copy: VRAM alloc, invalidation, "
		 "UFFDIO_MOVE out, bind (xe: ~0.2)", (unsigned long long)n);
	munmap(base, 2 * M2 * n);
	svm_teardown(&s);
	return err;
}

/*
 * ns per memcpy of 2 MiB out of pages that UFFDIO_MOVE just moved in (the
 * move not counted), @n times, on a userfaultfd of our own: what a copy
 * out of the stage costs.  On a bare-metal kernel about a warm memcpy;
 * under shadow paging (PVM) every first access through a fresh PTE is a
 * hypervisor exit.  0 if userfaultfd or UFFDIO_MOVE is not available.
 */
static double moved_memcpy_ns(uint64_t n)
{
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	uint8_t *p = MAP_FAILED, *a, *b, *dst = MAP_FAILED;
	int64_t total = 0;
	int fd;

	fd = gvm_bench_uffd(UFFD_FEATURE_MOVE, false);
	if (fd < 0)
		return 0;
	p = mmap(NULL, 3 * M2, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, M2, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || dst == MAP_FAILED)
		goto out;
	a = (uint8_t *)(((uintptr_t)p + M2 - 1) & ~(uintptr_t)(M2 - 1));
	b = a + M2;
	madvise(a, 2 * M2, MADV_NOHUGEPAGE);
	memset(a, 1, M2);
	memset(dst, 0, M2);
	reg.range.start = (uintptr_t)a;
	reg.range.len = 2 * M2;
	if (ioctl(fd, UFFDIO_REGISTER, &reg))
		goto out;
	for (uint64_t i = 0; i < n; i++) {
		struct uffdio_move m = { .dst = (uintptr_t)(i & 1 ? a : b),
					 .src = (uintptr_t)(i & 1 ? b : a),
					 .len = M2 };
		int64_t t0;

		if (ioctl(fd, UFFDIO_MOVE, &m)) {
			total = 0;
			break;
		}
		t0 = gvm_bench_now_ns();
		memcpy(dst, (void *)(uintptr_t)m.dst, M2);
		gvm_bench_keep(dst);
		total += gvm_bench_now_ns() - t0;
	}
out:
	if (p != MAP_FAILED)
		munmap(p, 3 * M2);
	if (dst != MAP_FAILED)
		munmap(dst, M2);
	close(fd);
	return (double)total / (double)n;
}

/* True if the CPU maps [addr, addr + len) with huge pages only. */
static bool mapped_huge(const void *addr, uint64_t len)
{
	struct gvm_mm_maps maps;
	bool huge;

	if (gvm__mm_maps_init(&maps))
		return false;
	huge = gvm__mm_maps_huge(&maps, (uintptr_t)addr, len);
	gvm__mm_maps_fini(&maps);
	return huge;
}

/*
 * migrate_2m, migrate_2m_4k: the round trips on a 2 MiB range the CPU
 * maps with one huge page (@huge: MADV_HUGEPAGE) or 4 KiB pages.
 */
static int migrate_round_trips(const struct gvm_bench_ctx *ctx,
			       struct gvm_bench_result *res, bool huge)
{
	uint64_t n = ctx->quick ? 2 : 64;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	struct svm_bench s;
	uint8_t *base = NULL, *buf;
	bool was_huge = false, is_huge;
	int err, r;

	err = svm_setup(&s);
	if (!err)
		err = map_chunks(1, M2, &base);
	buf = mmap(NULL, M2, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!err && buf == MAP_FAILED)
		err = -ENOMEM;
	if (err) {
		svm_teardown(&s);
		return err;
	}
	/* map_chunks touched it: again, as the mapping now says */
	madvise(base, M2, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	madvise(base, M2, MADV_DONTNEED);
	memset(base, 1, M2);
	was_huge = mapped_huge(base, M2);
	memset(buf, 0, M2);
	for (r = 0; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();

		for (uint64_t i = 0; i < n && !err; i++) {
			gvm__mutex_lock(&s.vm->lock);
			err = gvm__svm_migrate_to_vram(s.vm, s.vm->dev,
						       (uintptr_t)base, M2);
			gvm__mutex_unlock(&s.vm->lock);
			if (!err)
				err = gvm__mm_migrate_to_ram(s.mm,
							     (uintptr_t)base,
							     M2);
		}
		v[r] = (double)(gvm_bench_now_ns() - t0) / (double)n;
		t0 = gvm_bench_now_ns();
		for (uint64_t i = 0; i < n; i++) {
			memcpy(buf, base, M2);
			gvm_bench_keep(buf);
			memcpy(base, buf, M2);
			gvm_bench_keep(base);
		}
		b[r] = (double)(gvm_bench_now_ns() - t0) / (double)n;
	}
	is_huge = mapped_huge(base, M2);
	res->value = gvm_bench_median(v, GVM_BENCH_REPS);
	res->unit = "ns/round trip";
	res->baseline = "memcpy of 2 MiB there and back";
	res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
	res->goal = huge ? 1.18 : 0;
	if (huge) {
		snprintf(res->note, sizeof(res->note),
			 "%.2f GiB/s vs %.2f GiB/s each way; CPU mapping "
			 "huge before %s, after %s",
			 2.0 * M2 / res->value * 1e9 / (1 << 30),
			 2.0 * M2 / res->baseline_value * 1e9 / (1 << 30),
			 was_huge ? "yes" : "NO", is_huge ? "yes" : "NO");
	} else {
		double cold = moved_memcpy_ns(ctx->quick ? 2 : 16);

		snprintf(res->note, sizeof(res->note),
			 "%.2f GiB/s vs %.2f GiB/s each way; memcpy out of "
			 "just-moved pages (the stage): %.2f GiB/s",
			 2.0 * M2 / res->value * 1e9 / (1 << 30),
			 2.0 * M2 / res->baseline_value * 1e9 / (1 << 30),
			 cold > 0 ? M2 / cold * 1e9 / (1 << 30) : 0.0);
	}
	munmap(buf, M2);
	munmap(base, 2 * M2);
	svm_teardown(&s);
	return err;
}

GVM_BENCH(migrate_2m, "2 MiB huge page to VRAM and back (take, copy, copy, give)")
{
	return migrate_round_trips(ctx, res, true);
}

GVM_BENCH(migrate_2m_4k, "2 MiB of 4 KiB pages to VRAM and back")
{
	return migrate_round_trips(ctx, res, false);
}

/* ---- cpu_faultback_4k ------------------------------------------------- */

static int raw_uffd = -1;
static uint8_t raw_src[4096] __attribute__((aligned(4096)));

static void raw_sigbus(int sig, siginfo_t *si, void *uc)
{
	struct uffdio_copy c = {
		.dst = (uintptr_t)si->si_addr & ~(uintptr_t)(K4 - 1),
		.src = (uintptr_t)raw_src,
		.len = K4,
	};

	(void)sig;
	(void)uc;
	if (ioctl(raw_uffd, UFFDIO_COPY, &c))
		_exit(99);
}

/* ns per raw userfaultfd fault resolved in the faulting thread. */
static double raw_faultback_ns(uint64_t n)
{
	struct sigaction sa = { .sa_sigaction = raw_sigbus,
				.sa_flags = SA_SIGINFO }, old;
	struct uffdio_register reg;
	uint8_t *p;
	double ns = 0;
	int64_t t0;

	raw_uffd = gvm_bench_uffd(UFFD_FEATURE_SIGBUS, false);
	if (raw_uffd < 0)
		return 0;
	p = mmap(NULL, n * K4, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg.range.start = (uintptr_t)p;
	reg.range.len = n * K4;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (p == MAP_FAILED || ioctl(raw_uffd, UFFDIO_REGISTER, &reg))
		goto out;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	t0 = gvm_bench_now_ns();
	for (uint64_t i = 0; i < n; i++)
		gvm_bench_keep(((volatile uint8_t *)p)[i * K4]);
	ns = (double)(gvm_bench_now_ns() - t0) / (double)n;
	sigaction(SIGBUS, &old, NULL);
out:
	if (p != MAP_FAILED)
		munmap(p, n * K4);
	close(raw_uffd);
	raw_uffd = -1;
	return ns;
}

/*
 * The floor of a design that resolves CPU faults in a handler thread, as
 * gvm's event thread does: a thread of our own that reads the fault from a
 * userfaultfd and resolves it with UFFDIO_COPY, nothing else, and spins
 * GVM_HANDOFF_SPIN_NS after each event as gvm's does.  The faulting thread
 * sleeps in the kernel until the copy wakes it: one wake-up per fault in a
 * burst, two for a fault alone.  The faulting thread runs on CPU 0, the
 * handler on CPU @cpu: on the other CPU, as gvm's event thread mostly is
 * when the application runs, each of those wake-ups is a cross-CPU one;
 * on the same CPU none is.  ns per fault of @n in a burst into *@burst,
 * the median of up to 100 faults 200 us apart into *@alone; false if
 * userfaultfd or CPU @cpu is not available.
 */
struct bare_handler {
	int uffd, stop, cpu;
};

static void *bare_handle(void *arg)
{
	struct bare_handler *bh = arg;
	struct pollfd pfd = { .fd = bh->uffd, .events = POLLIN };
	struct uffd_msg msg;
	int64_t until = 0;

	gvm_bench_run_on_cpu(bh->cpu);
	while (!gvm_load_acquire(&bh->stop)) {
		int ready = poll(&pfd, 1, gvm_bench_now_ns() < until ? 0 : 10);

		if (ready <= 0) {
			gvm_cpu_relax();
			continue;
		}
		while (read(bh->uffd, &msg, sizeof(msg)) ==
		       (ssize_t)sizeof(msg)) {
			struct uffdio_copy c = {
				.dst = msg.arg.pagefault.address &
				       ~(uint64_t)(K4 - 1),
				.src = (uintptr_t)raw_src,
				.len = K4,
			};

			if (msg.event == UFFD_EVENT_PAGEFAULT)
				ioctl(bh->uffd, UFFDIO_COPY, &c);
		}
		until = gvm_bench_now_ns() + GVM_HANDOFF_SPIN_NS;
	}
	return NULL;
}

static bool bare_faultback_ns(uint64_t n, int cpu, double *burst,
			      double *alone)
{
	struct bare_handler bh = { .stop = 0, .cpu = cpu };
	uint64_t m = n < 100 ? n : 100;
	struct uffdio_register reg;
	double *iso = calloc(m, sizeof(*iso));
	uint8_t *p = MAP_FAILED;
	bool ok = false;
	pthread_t t;
	int64_t t0;

	bh.uffd = gvm_bench_uffd(0, true);
	if (bh.uffd < 0 || !iso || !gvm_bench_run_on_cpu(cpu) ||
	    !gvm_bench_run_on_cpu(0))
		goto out;
	p = mmap(NULL, 2 * n * K4, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg.range.start = (uintptr_t)p;
	reg.range.len = 2 * n * K4;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (p == MAP_FAILED || ioctl(bh.uffd, UFFDIO_REGISTER, &reg) ||
	    pthread_create(&t, NULL, bare_handle, &bh))
		goto out;
	t0 = gvm_bench_now_ns();
	for (uint64_t i = 0; i < n; i++)
		gvm_bench_keep(((volatile uint8_t *)p)[2 * i * K4]);
	*burst = (double)(gvm_bench_now_ns() - t0) / (double)n;
	for (uint64_t i = 0; i < m; i++) {
		struct timespec gap = { 0, 200000 };

		nanosleep(&gap, NULL);
		t0 = gvm_bench_now_ns();
		gvm_bench_keep(((volatile uint8_t *)p)[(2 * i + 1) * K4]);
		iso[i] = (double)(gvm_bench_now_ns() - t0);
	}
	*alone = gvm_bench_median(iso, (int)m);
	gvm_store_release(&bh.stop, 1);
	pthread_join(t, NULL);
	ok = true;
out:
	if (p != MAP_FAILED)
		munmap(p, 2 * n * K4);
	if (bh.uffd >= 0)
		close(bh.uffd);
	free(iso);
	return ok;
}

/* GPU faults on the @n ranges of @size at @base_p: all must migrate. */
static int fault_into_vram(struct svm_bench *s, uint8_t *base_p, uint64_t n,
			   uint64_t size)
{
	uint64_t moved = gvm_load_relaxed(&s->vm->stats.svm_migrations);
	int err = 0;

	for (uint64_t i = 0; i < n && !err; i++)
		err = gpu_fault(s->vm, (uintptr_t)(base_p + 2 * size * i));
	if (!err &&
	    gvm_load_relaxed(&s->vm->stats.svm_migrations) != moved + n)
		err = -EIO;
	return err;
}

/*
 * CPU reads of @n device-resident ranges of @size (one read each, which
 * brings the whole range back), extents up to @cpu_back_max bytes coming
 * back by CPU copy (UFFDIO_COPY from the VRAM window), larger ones by
 * copy engine + UFFDIO_MOVE: ns per fault, median over the reps, in *@ns;
 * the raw userfaultfd baseline (4 KiB) in *@base if not NULL.  The reads
 * follow one another (a burst: the event thread is still spinning from
 * the last); with @isolated not NULL, one more round reads up to 100 of
 * them 200 us apart, past the spin, and gives the median in *@isolated.
 * The same ranges migrate once a rep: thrashing detection is off
 * meanwhile, which would pin them to system memory after 4 migrations in
 * 50 ms (a --quick run's reps) and leave nothing to fault back.
 */
static int faultback(uint64_t n, uint64_t size, uint64_t cpu_back_max,
		     double *ns, double *base, double *isolated)
{
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	uint64_t saved = gvm_load_relaxed(&gvm__mm_devmem_cpu_back_max);
	uint32_t thrash = gvm_load_relaxed(&gvm__svm_policy.thrash_migrations);
	struct svm_bench s;
	uint8_t *base_p = NULL;
	int err, r;

	err = svm_setup(&s);
	if (!err)
		err = map_chunks(n, size, &base_p);
	if (err) {
		svm_teardown(&s);
		return err;
	}
	gvm_store_relaxed(&gvm__mm_devmem_cpu_back_max, cpu_back_max);
	gvm_store_relaxed(&gvm__svm_policy.thrash_migrations, 0u);
	for (r = 0; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0;

		err = fault_into_vram(&s, base_p, n, size);
		t0 = gvm_bench_now_ns();
		for (uint64_t i = 0; i < n && !err; i++)
			gvm_bench_keep(((volatile uint8_t *)base_p)[2 * size *
								     i]);
		v[r] = (double)(gvm_bench_now_ns() - t0) / (double)n;
		if (base)
			b[r] = raw_faultback_ns(n);
		if (!err)
			err = mirror(s.vm, GVM_BIND_UNMAP);
		if (!err)
			err = mirror(s.vm, GVM_BIND_MAP);
	}
	if (!err && isolated) {
		uint64_t m = n < 100 ? n : 100;
		double *iso = calloc(m, sizeof(*iso));

		err = fault_into_vram(&s, base_p, n, size);
		for (uint64_t i = 0; i < m && iso && !err; i++) {
			struct timespec gap = { 0, 200000 };
			int64_t t0;

			nanosleep(&gap, NULL);
			t0 = gvm_bench_now_ns();
			gvm_bench_keep(((volatile uint8_t *)base_p)[2 * size *
								     i]);
			iso[i] = (double)(gvm_bench_now_ns() - t0);
		}
		*isolated = iso ? gvm_bench_median(iso, m) : 0;
		free(iso);
	}
	gvm_store_relaxed(&gvm__mm_devmem_cpu_back_max, saved);
	gvm_store_relaxed(&gvm__svm_policy.thrash_migrations, thrash);
	*ns = gvm_bench_median(v, GVM_BENCH_REPS);
	if (base)
		*base = gvm_bench_median(b, GVM_BENCH_REPS);
	munmap(base_p, 2 * size * n);
	svm_teardown(&s);
	return err;
}

GVM_BENCH(cpu_faultback_4k, "CPU touch of a device-resident 4 KiB page")
{
	uint64_t n = ctx->quick ? 16 : 500;
	double iso = 0, fb = 0, fa = 0, sb = 0, sa = 0;
	char floor[128] = "";
	int err;

	err = faultback(n, K4, gvm_load_relaxed(&gvm__mm_devmem_cpu_back_max),
			&res->value, &res->baseline_value, &iso);
	if (!err && bare_faultback_ns(n, 1, &fb, &fa) &&
	    bare_faultback_ns(n, 0, &sb, &sa))
		snprintf(floor, sizeof(floor),
			 "; floor, a bare handler thread on the other CPU %.0f, "
			 "alone %.0f ns (gvm / floor %.2f, %.2f); same CPU %.0f, "
			 "%.0f", fb, fa, res->value / fb, iso / fa, sb, sa);
	res->unit = "ns/fault";
	res->baseline = "raw userfaultfd fault, SIGBUS + UFFDIO_COPY";
	res->goal = 1.3;
	snprintf(res->note, sizeof(res->note),
		 "%llu pages in a burst (best case); one alone (200 us apart) "
		 "%.0f ns; event thread: invalidation, UFFDIO_COPY from the "
		 "VRAM window (wakes)%s", (unsigned long long)n, iso, floor);
	return err;
}

/*
 * Issue 12's choice for the way back: UFFDIO_COPY from the VRAM window
 * (CPU copy) against copy engine into a stage + UFFDIO_MOVE, per size.
 * Value: the default policy; baseline: the other way.
 */
static int faultback_way(const struct gvm_bench_ctx *ctx,
			 struct gvm_bench_result *res, uint64_t size,
			 uint64_t n)
{
	uint64_t max = gvm_load_relaxed(&gvm__mm_devmem_cpu_back_max);
	bool by_cpu = size <= max;
	double copy_ns = 0, move_ns = 0;
	int err;

	if (ctx->quick)
		n = 4;
	err = faultback(n, size, size, &copy_ns, NULL, NULL);
	if (!err)
		err = faultback(n, size, 0, &move_ns, NULL, NULL);
	res->value = by_cpu ? copy_ns : move_ns;
	res->baseline_value = by_cpu ? move_ns : copy_ns;
	res->unit = "ns/fault";
	res->baseline = by_cpu ? "the other way: engine + UFFDIO_MOVE" :
				 "the other way: UFFDIO_COPY from VRAM";
	res->goal = 1.0;
	snprintf(res->note, sizeof(res->note),
		 "%llu ranges of %llu KiB back: UFFDIO_COPY %.1f us, engine + "
		 "MOVE %.1f us; default: %s", (unsigned long long)n,
		 (unsigned long long)(size >> 10), copy_ns / 1e3,
		 move_ns / 1e3, by_cpu ? "COPY" : "MOVE");
	return err;
}

GVM_BENCH(faultback_way_4k, "CPU fault-back of 4 KiB: UFFDIO_COPY vs MOVE")
{
	return faultback_way(ctx, res, K4, 500);
}

GVM_BENCH(faultback_way_64k, "CPU fault-back of 64 KiB: UFFDIO_COPY vs MOVE")
{
	return faultback_way(ctx, res, K64, 200);
}

GVM_BENCH(faultback_way_2m, "CPU fault-back of 2 MiB: UFFDIO_COPY vs MOVE")
{
	return faultback_way(ctx, res, M2, 16);
}
