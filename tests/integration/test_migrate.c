// SPDX-License-Identifier: MIT
/*
 * SVM migration (vm/migrate.c, mm/devmem.c) on the process's real memory:
 * a GPU fault moves a private anonymous range to device memory, the CPU's
 * next touch brings it back, and everything the application can do to
 * the memory meanwhile (munmap, partial munmap, madvise, mremap, fork,
 * another VM's userptr) keeps its data.  Memory that must stay (shared,
 * file-backed) is mirrored in place; a failed migration falls back to
 * system memory with the data intact.  Data is checked after every step.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/mm_model.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "svmtest.h"
#include "core/alloc.h"
#include "core/inject.h"
#include "core/stack.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "mm/notifier.h"
#include "mm/uffd_compat.h"
#include "vm/dev.h"
#include "vm/fault_queue.h"
#include "vm/svm.h"
#include "vm/vm.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M2 (2ull << 20)
#define MIRROR_END (1ull << 47)

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	uint64_t vram_free;		/* at setup */
};

static uint64_t u64(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

static uint64_t vram_free(struct gvm_device *dev)
{
	struct gvm_device_info info;

	ASSERT_OK(gvm_device_query(dev, &info));
	return info.vram_free;
}

static void setup(struct ctx *c)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };

	ASSERT_OK(gvm_mm_self(&c->mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, c->mm,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0));
	c->vram_free = vram_free(c->dev);
}

static void teardown(struct ctx *c)
{
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
	gvm_mm_put(c->mm);
}

static struct gvm_vm_stats stats(struct gvm_vm *vm)
{
	struct gvm_vm_stats st;

	ASSERT_OK(gvm_vm_stats(vm, &st));
	return st;
}

static uint32_t logged(struct gvm_vm *vm)
{
	struct gvm_fault_info f[8];
	uint32_t n;

	ASSERT_OK(gvm_vm_query_faults(vm, f, 8, &n));
	return n;
}

static void run(struct gvm_queue *q, struct gvm_kernel *k)
{
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };

	ASSERT_OK(gvm_exec(q, k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
}

/* The 64-bit word a fill with the 32-bit pattern @v leaves. */
#define W(v) ((uint64_t)(v) * 0x100000001ull)

/* The GPU fills [va, va + size) with the 32-bit pattern @v. */
static void gpu_fill(struct ctx *c, uint64_t va, uint64_t size, uint32_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_fill(&k, va, size, v));
	run(c->q, &k);
}

/*
 * The GPU's checksum of [va, va + size).  The result lands in shared
 * memory, which is mirrored but never moves, so it counts no migration;
 * one page for the whole process, never unmapped, so that no collection
 * of its range runs behind a test's back (the first sum in a VM faults
 * on it once).
 */
static uint64_t *sum_page(void)
{
	static uint64_t *out;

	if (!out) {
		out = mmap(NULL, K4, PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		ASSERT_TRUE(out != MAP_FAILED);
	}
	return out;
}

static uint64_t gpu_sum(struct gvm_queue *q, uint64_t va, uint64_t size)
{
	uint64_t *out = sum_page();
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_checksum(&k, va, size, u64(out)));
	run(q, &k);
	return *out;
}

/* 2 MiB of private anonymous memory, 2 MiB aligned, in a 4 MiB hole. */
static uint64_t *map_2m(void)
{
	uint8_t *p = mmap(NULL, 3 * M2, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *a;

	ASSERT_TRUE(p != MAP_FAILED);
	a = (uint8_t *)((u64(p) + M2 - 1) & ~(M2 - 1));
	if (a > p)
		munmap(p, a - p);
	munmap(a + M2, p + 3 * M2 - (a + M2));
	return (uint64_t *)a;
}

/* Does the GPU map @va (committed page tables)? */
static bool mapped(struct gvm_vm *vm, uint64_t va)
{
	struct gvm_pt_xlate x;
	int err;

	gvm__mutex_lock(&vm->pt_lock);
	err = gvm__pt_translate(&vm->pt, va, GVM_PT_VIEW_COMMITTED, &x);
	gvm__mutex_unlock(&vm->pt_lock);
	return !err;
}

/* 2 MiB as map_2m(), each word its own index (their sum: INDEX_SUM). */
#define INDEX_SUM ((M2 / 8) * (M2 / 8 - 1) / 2)
static uint64_t *map_2m_indexed(void)
{
	uint64_t *p = map_2m();

	for (uint64_t i = 0; i < M2 / 8; i++)
		p[i] = i;
	return p;
}

/* Does each word of @p's 2 MiB still hold its index? */
static bool holds_index(const uint64_t *p)
{
	for (uint64_t i = 0; i < M2 / 8; i++)
		if (p[i] != i)
			return false;
	return true;
}

/* Every word of [p, p + bytes) is @v. */
static bool all_are(const uint64_t *p, uint64_t bytes, uint64_t v)
{
	for (uint64_t i = 0; i < bytes / 8; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* The GPU fills @p's 2 MiB, which moves it to VRAM. */
static void make_resident(struct ctx *c, uint64_t *p, uint32_t v)
{
	uint64_t before = stats(c->vm).svm_migrations;

	gpu_fill(c, u64(p), M2, v);
	ASSERT_EQ(stats(c->vm).svm_migrations, before + 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c->mm), M2);
	ASSERT_LE(vram_free(c->dev), c->vram_free - M2);	/* + tables */
}

TEST(data_round_trips_through_device_memory)
{
	struct gvm_mm_self_stats ms;
	struct ctx c;
	uint64_t *p, free0, faults0;

	setup(&c);
	p = map_2m_indexed();
	make_resident(&c, p, 5);
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), W(5) * (M2 / 8));	/* in VRAM */
	free0 = vram_free(c.dev);
	gvm__mm_self_stats(c.mm, &ms);
	faults0 = ms.cpu_faults;
	ASSERT_TRUE(all_are(p, M2, W(5)));		/* CPU: back, all of it */
	gvm__mm_self_stats(c.mm, &ms);
	ASSERT_EQ(ms.cpu_faults, faults0 + 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(vram_free(c.dev), free0 + M2);
	ASSERT_EQ(stats(c.vm).dev_svm_bytes_to_system, M2);
	p[7] = 77;				/* the CPU writes, the GPU sees */
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), W(5) * (M2 / 8 - 1) + 77);
	ASSERT_EQ(stats(c.vm).svm_migrations, 2);
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, M2);
}

/*
 * Memory back from device memory is the CPU's again: its absent pages
 * (here after MADV_DONTNEED) fault as usual, not to gvm's event thread.
 * (Registering a range again without MISSING leaves MISSING on it: the
 * kernel keeps modes a VMA has.  Had it stayed, a simulated GPU touching
 * such a page while the event thread waited for that GPU would hang.)
 */
TEST(memory_back_from_the_device_faults_as_usual)
{
	struct gvm_mm_self_stats ms0, ms;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 9);
	ASSERT_TRUE(all_are(p, M2, W(9)));		/* back */
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_OK(madvise(p, M2, MADV_DONTNEED));
	ASSERT_OK(gvm_mm_flush(c.mm));
	gvm__mm_self_stats(c.mm, &ms0);
	ASSERT_TRUE(all_are(p, M2, 0));		/* fresh zero pages */
	p[3] = 3;
	gvm__mm_self_stats(c.mm, &ms);
	ASSERT_EQ(ms.pagefault, ms0.pagefault);
	ASSERT_EQ(ms.cpu_faults, ms0.cpu_faults);
	/* and the GPU sees what the CPU wrote */
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), 3);
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, M2);
}

/*
 * MADV_DONTNEED of device-resident memory, and the device memory brought
 * back (an eviction, here gvm__mm_migrate_to_ram from another thread)
 * while the REMOVE's invalidation is still running: the CPU must read
 * zeros, not the data from before the madvise.  A notifier over the range
 * holds the event thread in its pass 1 while the test brings the range
 * back.
 */
static struct {
	struct gvm_mm *mm;
	uint64_t start, len;
	int brought;		/* migrate_to_ram's answer */
	bool held;
	int madvised;		/* atomic: the madvise returned (its zap
				   is done) */
} evict_during;

static struct gvm_notifier_finish *
evict_during_start(struct gvm_notifier *n, const struct gvm_notifier_range *r,
		   uint64_t cur_seq)
{
	gvm__notifier_set_seq(n, cur_seq);
	if (r->event == GVM_MM_EVENT_REMOVE && !evict_during.held) {
		evict_during.held = true;	/* only this thread */
		/* The event was read before the zap: wait for it. */
		while (!__atomic_load_n(&evict_during.madvised,
					__ATOMIC_ACQUIRE))
			sched_yield();
		/* The eviction, from inside the REMOVE's invalidation. */
		evict_during.brought = gvm__mm_migrate_to_ram(
			evict_during.mm, evict_during.start, evict_during.len);
	}
	return NULL;
}

static const struct gvm_notifier_ops evict_during_ops = {
	.invalidate_start = evict_during_start,
};

TEST(device_memory_brought_back_during_a_remove_stays_discarded)
{
	struct gvm_notifier probe;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 12);
	evict_during.mm = c.mm;
	evict_during.start = u64(p);
	evict_during.len = M2;
	evict_during.held = false;
	evict_during.madvised = 0;
	ASSERT_OK(gvm__notifier_insert(c.mm, &probe, u64(p), M2,
				       &evict_during_ops));
	ASSERT_OK(madvise(p, M2, MADV_DONTNEED));
	__atomic_store_n(&evict_during.madvised, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_TRUE(evict_during.held);
	ASSERT_OK(evict_during.brought);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_TRUE(all_are(p, M2, 0));		/* discarded: zeros */
	gvm__notifier_remove(&probe);
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), 0);
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, M2);
}

/* Destroying the VM and its device leaves the data reachable. */
TEST(data_outlives_the_vm_and_device)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 21);
	gvm_mm_get(c.mm);
	teardown(&c);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_TRUE(all_are(p, M2, W(21)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	gvm_mm_put(c.mm);
	munmap(p, M2);
}

TEST(munmap_of_device_resident_memory_frees_it)
{
	struct ctx c;
	uint64_t *p, *q;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 3);
	ASSERT_OK(munmap(p, M2));
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	/* the range still maps the block until its GPU fault drops it */
	q = mmap(p, M2, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_TRUE(q == p);
	ASSERT_TRUE(all_are(q, M2, 0));		/* fresh memory: no old data */
	gpu_fill(&c, u64(q), K4, 9);
	ASSERT_TRUE(all_are(q, K4, W(9)));
	ASSERT_TRUE(all_are(q + K4 / 8, M2 - K4, 0));
	teardown(&c);
	munmap(q, M2);
}

TEST(partial_munmap_keeps_the_rest)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 4);
	ASSERT_OK(munmap((uint8_t *)p + K64, K4));	/* a hole */
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_TRUE(all_are(p, K64, W(4)));
	ASSERT_TRUE(all_are(p + (K64 + K4) / 8, M2 - K64 - K4, W(4)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, M2);
}

/*
 * Partial munmap of a device-resident 2 MiB range: the collector (no GPU
 * fault needed) drops the range and covers what is left with smaller
 * ranges, still in device memory and mapped: the GPU reads the rest
 * without a fault and without moving a byte.
 */
TEST(partial_munmap_splits_the_range_and_keeps_the_rest_mapped)
{
	struct ctx c;
	struct gvm_vm_stats st;
	uint64_t *p, *hole, faults;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 5);
	hole = p + (M2 / 2) / 8;
	ASSERT_OK(munmap(hole, K64));
	ASSERT_OK(gvm_mm_flush(c.mm));		/* the UNMAP is processed */
	gvm__fault_queue_collect_wait(c.vm);	/* and collected */
	st = stats(c.vm);
	ASSERT_EQ(st.svm_ranges_dropped, 1);
	ASSERT_EQ(st.svm_ranges_split, 1);
	/* 1 MiB - 64K and 1 MiB on either side: 15 + 16 64 KiB ranges */
	ASSERT_EQ(st.svm_ranges_created, 1 + 31);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2 - K64);
	faults = st.faults;
	/* The GPU reads both sides where they are: no fault, no copy. */
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2 / 2), (M2 / 2 / 8) * W(5));
	ASSERT_EQ(gpu_sum(c.q, u64(hole + K64 / 8), M2 / 2 - K64),
		  ((M2 / 2 - K64) / 8) * W(5));
	st = stats(c.vm);
	ASSERT_EQ(st.faults, faults + 1);	/* gpu_sum's result page */
	ASSERT_EQ(st.dev_svm_to_system, 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2 - K64);
	/* The CPU has all of it; the hole stays a hole for the GPU. */
	ASSERT_TRUE(all_are(p, M2 / 2, W(5)));
	ASSERT_TRUE(all_are(hole + K64 / 8, M2 / 2 - K64, W(5)));
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, M2 / 2);
	munmap(hole + K64 / 8, M2 / 2 - K64);
}

/*
 * A range mapped with 4 KiB PTEs (64 KiB, in system memory) loses only the
 * unmapped page's: a kernel may keep using the rest while it is split.
 */
TEST(partial_munmap_of_a_4k_mapped_range_zaps_only_the_hole)
{
	struct ctx c;
	uint64_t *p, *hole;

	gvm__svm_no_migration = true;
	setup(&c);
	p = map_2m();
	munmap((uint8_t *)p + K64, M2 - K64);	/* 64 KiB left: a 64K range */
	gpu_fill(&c, u64(p), K64, 6);
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 1);
	ASSERT_EQ(stats(c.vm).svm_faults_by_size[1], 1);
	hole = p + 4 * K4 / 8;
	gvm__fault_queue_hold(c.dev, true);	/* no collection yet */
	ASSERT_OK(munmap(hole, K4));
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_TRUE(mapped(c.vm, u64(p)));
	ASSERT_TRUE(mapped(c.vm, u64(hole + K4 / 8)));
	ASSERT_FALSE(mapped(c.vm, u64(hole)));
	ASSERT_EQ(stats(c.vm).svm_ranges_dropped, 0);
	gvm__fault_queue_hold(c.dev, false);
	gvm__fault_queue_collect_wait(c.vm);
	ASSERT_EQ(stats(c.vm).svm_ranges_split, 1);
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 1 + 15);	/* 4K each */
	ASSERT_TRUE(mapped(c.vm, u64(p)));
	ASSERT_TRUE(mapped(c.vm, u64(hole + K4 / 8)));
	ASSERT_FALSE(mapped(c.vm, u64(hole)));
	ASSERT_TRUE(all_are(p, 4 * K4, W(6)));
	ASSERT_TRUE(all_are(hole + K4 / 8, K64 - 5 * K4, W(6)));
	teardown(&c);
	gvm__svm_no_migration = false;
	munmap(p, K64);
}

TEST(madvise_dontneed_drops_only_its_part)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 6);
	ASSERT_OK(madvise(p, K64, MADV_DONTNEED));
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_TRUE(all_are(p, K64, 0));		/* dropped: zero */
	ASSERT_TRUE(all_are(p + K64 / 8, M2 - K64, W(6)));
	/* the GPU sees the same thing */
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), W(6) * ((M2 - K64) / 8));
	teardown(&c);
	munmap(p, M2);
}

TEST(mremap_moves_device_resident_data)
{
	struct ctx c;
	uint64_t *p, *dst, *n;

	setup(&c);
	p = map_2m();
	dst = map_2m();
	make_resident(&c, p, 8);
	n = mremap(p, M2, M2, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	ASSERT_TRUE(n == dst);
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_TRUE(all_are(n, M2, W(8)));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(gpu_sum(c.q, u64(n), M2), W(8) * (M2 / 8));
	teardown(&c);
	munmap(n, M2);
}

TEST(mremap_dontunmap_leaves_an_empty_source)
{
	struct ctx c;
	uint64_t *p, *dst, *n;

	setup(&c);
	p = map_2m();
	dst = map_2m();
	make_resident(&c, p, 10);
	n = mremap(p, M2, M2, MREMAP_MAYMOVE | MREMAP_FIXED |
			      MREMAP_DONTUNMAP, dst);
	ASSERT_TRUE(n == dst);
	ASSERT_OK(gvm_mm_flush(c.mm));
	/* the GPU first, while the data is still in device memory */
	ASSERT_EQ(gpu_sum(c.q, u64(n), M2), W(10) * (M2 / 8));
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), 0);
	ASSERT_TRUE(all_are(n, M2, W(10)));
	ASSERT_TRUE(all_are(p, M2, 0));
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(n, M2);
	munmap(p, M2);
}

/*
 * mremap before migration: a range the GPU bound in system memory (the
 * preferred location keeps it there) is moved by the CPU, with or without
 * MREMAP_DONTUNMAP.  The GPU and the CPU see the data at the new address;
 * at the old one the GPU finds no memory after a plain move (the job
 * fails, -EIO, one fault logged, the VM goes on) and the empty source
 * (zeros) after DONTUNMAP.  Both mappings lie between guard pages, so
 * the 2 MiB hole the plain move leaves is too small for the library's
 * own mappings (a migration's 2 MiB-aligned stage needs 4 MiB of room):
 * under ThreadSanitizer's layout one landed in the hole map_2m() leaves,
 * and the GPU then found memory there.
 */
static void mremap_system_resident(bool dontunmap)
{
	uint64_t sum = W(12) * (M2 / 8), *p, *dst, *n;
	struct ctx c;

	setup(&c);
	p = svmt_map(M2, M2);
	dst = svmt_map(M2, M2);
	for (uint64_t i = 0; i < M2 / 8; i++)
		p[i] = W(12);
	svmt_keep_in_system(c.vm, p, M2);
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), sum);	/* bound in place */
	ASSERT_TRUE(mapped(c.vm, u64(p)));
	ASSERT_EQ(stats(c.vm).svm_migrations, 0);
	n = mremap(p, M2, M2, MREMAP_MAYMOVE | MREMAP_FIXED |
			      (dontunmap ? MREMAP_DONTUNMAP : 0), dst);
	ASSERT_TRUE(n == dst);
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_FALSE(mapped(c.vm, u64(p)));		/* zapped */
	ASSERT_EQ(gpu_sum(c.q, u64(n), M2), sum);
	if (dontunmap) {
		ASSERT_EQ(gpu_sum(c.q, u64(p), M2), 0);
		ASSERT_TRUE(all_are(p, M2, 0));
	} else {
		svmt_sum_refused(c.vm, c.q, p, M2, sum_page());
	}
	ASSERT_TRUE(all_are(n, M2, W(12)));
	ASSERT_EQ(gpu_sum(c.q, u64(n), M2), sum);	/* the VM goes on */
	ASSERT_EQ(logged(c.vm), 0);
	ASSERT_EQ(stats(c.vm).svm_migration_failures, 0);
	teardown(&c);
	svmt_unmap(n, M2);
	munmap((uint8_t *)p - K4, K4);			/* p's guards */
	munmap((uint8_t *)p + M2, K4);
	if (dontunmap)
		munmap(p, M2);
}

TEST(mremap_of_a_range_bound_in_system_memory)
{
	mremap_system_resident(false);
}

TEST(mremap_dontunmap_of_a_range_bound_in_system_memory)
{
	mremap_system_resident(true);
}

TEST(fork_child_reads_device_resident_data)
{
	struct ctx c;
	uint64_t *p;
	pid_t pid;
	int status;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 12);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0)
		_exit(all_are(p, M2, W(12)) ? 0 : 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	/* the parent keeps working: the GPU again, then the CPU */
	gpu_fill(&c, u64(p), M2, 13);
	ASSERT_TRUE(all_are(p, M2, W(13)));
	teardown(&c);
	munmap(p, M2);
}

static void prefetch(struct ctx *c, void *p, uint64_t len, uint32_t mem)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH,
				  .addr = u64(p), .range = len,
				  .prefetch_mem = mem };

	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0));
}

/* A prefetched workload takes no GPU fault; a prefetch back, neither. */
TEST(prefetch_of_mirrored_memory_avoids_faults)
{
	struct ctx c;
	uint64_t *p, sum = 0;

	setup(&c);
	p = map_2m();
	for (uint64_t i = 0; i < M2 / 8; i++) {
		p[i] = i * 3;
		sum += i * 3;
	}
	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 1);
	ASSERT_EQ(stats(c.vm).svm_migrations, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), sum);
	/* only the result page (shared memory, elsewhere) faulted */
	ASSERT_EQ(stats(c.vm).faults, 1);
	prefetch(&c, p, M2, GVM_MEM_SYSTEM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(stats(c.vm).dev_svm_to_system, 1);
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), sum);
	ASSERT_EQ(stats(c.vm).faults, 1);	/* none: all prefetched */
	ASSERT_EQ(p[5], 15);
	/* a prefetch of memory the GPU may not touch is a hint: nothing */
	{
		void *none = mmap(NULL, M2, PROT_NONE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t made = stats(c.vm).svm_ranges_created;

		ASSERT_TRUE(none != MAP_FAILED);
		prefetch(&c, none, M2, GVM_MEM_VRAM);
		ASSERT_EQ(stats(c.vm).svm_ranges_created, made);
		munmap(none, M2);
	}
	teardown(&c);
	munmap(p, M2);
}

/*
 * Out-parameters in memory SVM moved to VRAM: each call brings the page
 * back through the mm's event thread and completes.  The library stores
 * them holding no lock the fault-back needs (docs/locking.md, "Touching
 * application memory"; debug builds check it with gvm__might_fault()).
 */
TEST(out_parameters_in_device_memory)
{
	struct ctx c;
	uint64_t *p = map_2m();
	struct gvm_syncobj *s;
	uint32_t *n;

	setup(&c);
	memset(p, 0xa5, M2);
	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_OK(gvm_vm_stats(c.vm, (struct gvm_vm_stats *)(p + 8)));
	ASSERT_EQ(((struct gvm_vm_stats *)(p + 8))->svm_migrations, 1);

	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	n = (uint32_t *)(p + K64 / 8);
	ASSERT_OK(gvm_vm_query_faults(c.vm, (struct gvm_fault_info *)(n + 2),
				      8, n));
	ASSERT_LE(*n, 8);

	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_OK(gvm_device_query(c.dev, (struct gvm_device_info *)p));
	ASSERT_GE(((struct gvm_device_info *)p)->svm_migrations_in, 3);

	ASSERT_OK(gvm_syncobj_create(&s));
	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_EQ(gvm_syncobj_fence(s, (struct gvm_fence **)(p + 100)),
		  -ENOENT);
	ASSERT_TRUE(*(struct gvm_fence **)(p + 100) == NULL);
	gvm_syncobj_destroy(s);
	teardown(&c);
	munmap(p, M2);
}

/*
 * gvm_vm_peek's destination and gvm_vm_poke's source in memory SVM moved
 * to VRAM, on a VM with a BO mapping, whose pieces are copied under the
 * BO's reservation: the caller's buffer goes through a bounce buffer and
 * is touched with no lock held (peek.c; debug builds check it with
 * gvm__might_fault()), its pages come back through the mm's event thread,
 * and the bytes are right.
 */
TEST(peek_and_poke_buffers_in_device_memory)
{
	const uint64_t high = 0xffffc00000000000ull;	/* above the mirror */
	const uint64_t len = GVM_VM_PEEK_CHUNK + K64 + 100;
	uint8_t *p = (uint8_t *)map_2m(), *bo_cpu;
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = high,
				  .range = 2 * GVM_VM_PEEK_CHUNK };
	struct ctx c;

	setup(&c);
	ASSERT_OK(gvm_bo_create(c.dev, op.range, GVM_MEM_VRAM, NULL, &op.bo));
	ASSERT_OK(gvm_bo_map(op.bo, (void **)&bo_cpu));
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	memset(bo_cpu, 0x5c, op.range);
	for (uint64_t i = 0; i < M2; i++)
		p[i] = (uint8_t)(i * 13 + 7);

	/* poke from device memory, unaligned, over two chunks */
	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_OK(gvm_vm_poke(c.vm, high + 3, p + 5, len));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);	/* came back */
	for (uint64_t i = 0; i < len; i++)
		ASSERT_EQ(bo_cpu[3 + i], (uint8_t)((5 + i) * 13 + 7));
	ASSERT_EQ(bo_cpu[2], 0x5c);
	ASSERT_EQ(bo_cpu[3 + len], 0x5c);

	/* peek into device memory */
	memset(p, 0, M2);
	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_OK(gvm_vm_peek(c.vm, high + 1, p + 9, len + 4));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_OK(memcmp(p + 9, bo_cpu + 1, len + 4));
	ASSERT_EQ(p[8], 0);
	ASSERT_EQ(p[9 + len + 4], 0);
	ASSERT_EQ(p[11], (uint8_t)(5 * 13 + 7));	/* bo_cpu[3] */

	teardown(&c);
	gvm_bo_put(op.bo);
	munmap(p, M2);
}

/*
 * A model mm's CPU read and write, and its statistics, with the caller's
 * buffer in process memory SVM moved to VRAM: the model touches it with
 * no lock the fault-back needs (phys->lock is a leaf; mm/model.c goes
 * through a one-page bounce), the pages come back, the bytes are right.
 */
TEST(model_mm_buffers_in_device_memory)
{
	struct gvm_mm_model_config cfg = { 0 };
	struct gvm_mm_model_stats *st;
	uint8_t *p = (uint8_t *)map_2m();
	const uint64_t len = 2 * K4 + 50;	/* over three pages */
	struct gvm_mm *mm;
	struct ctx c;
	uint64_t a;

	setup(&c);
	ASSERT_OK(gvm_mm_model_create(&cfg, &mm));
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, 4 * K4, PROT_READ | PROT_WRITE, 0,
				    &a));
	for (uint64_t i = 0; i < M2; i++)
		p[i] = (uint8_t)(i * 7 + 1);

	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_OK(gvm_mm_model_write(mm, a + 100, p + 3, len));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);	/* came back */

	memset(p, 0, M2);
	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	ASSERT_OK(gvm_mm_model_read(mm, a + 99, p + 8, len + 2));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(p[8], 0);			/* never written: zeros */
	for (uint64_t i = 0; i < len; i++)
		ASSERT_EQ(p[9 + i], (uint8_t)((3 + i) * 7 + 1));
	ASSERT_EQ(p[9 + len], 0);
	ASSERT_EQ(p[10 + len], 0);

	prefetch(&c, p, M2, GVM_MEM_VRAM);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
	st = (struct gvm_mm_model_stats *)(p + K64);
	ASSERT_OK(gvm_mm_model_stats(mm, st));
	ASSERT_EQ(st->frames_used, 3);

	gvm_mm_put(mm);
	teardown(&c);
	munmap(p, M2);
}

/* mmap(MAP_FIXED) over device-resident data: the new mapping, never it. */
TEST(map_fixed_over_device_resident_memory)
{
	struct ctx c;
	uint64_t *p, *q;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 22);
	q = mmap(p, M2, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_TRUE(q == p);
	ASSERT_TRUE(all_are(q, M2, 0));
	ASSERT_EQ(gpu_sum(c.q, u64(q), M2), 0);
	gpu_fill(&c, u64(q), M2, 23);
	ASSERT_TRUE(all_are(q, M2, W(23)));
	teardown(&c);
	munmap(q, M2);
}

/* free() then malloc() of the same address: no stale translation. */
TEST(free_and_reuse_of_the_address)
{
	struct ctx c;
	uint64_t *a, *b;

	setup(&c);
	a = malloc(4 * M2);
	ASSERT_TRUE(a != NULL);
	memset(a, 0, 4 * M2);
	gpu_fill(&c, u64(a), 4 * M2, 24);
	ASSERT_TRUE(all_are(a, 4 * M2, W(24)));
	gpu_fill(&c, u64(a), 4 * M2, 25);	/* resident again */
	free(a);				/* munmap: a big block */
	b = malloc(4 * M2);
	ASSERT_TRUE(b != NULL);
	memset(b, 0, 4 * M2);
	ASSERT_TRUE(all_are(b, 4 * M2, 0));
	ASSERT_EQ(gpu_sum(c.q, u64(b), 4 * M2), 0);
	gpu_fill(&c, u64(b), 4 * M2, 26);
	ASSERT_TRUE(all_are(b, 4 * M2, W(26)));
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	free(b);
}

/* Two VMs of one device and two threads fault on the same pages. */
struct filler {
	struct gvm_queue *q;
	uint64_t va;
	uint32_t v;
	int rounds;
};

static void *filler_fn(void *arg)
{
	struct filler *f = arg;

	for (int i = 0; i < f->rounds; i++) {
		struct gvm_kernel k;
		uint64_t uf = 0;
		struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
				      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
				      .value = 1 };

		if (gvm_kernel_fill(&k, f->va, K64, f->v) ||
		    gvm_exec(f->q, &k, &s, 1) ||
		    gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE))
			return (void *)1;
	}
	return NULL;
}

TEST(two_vms_and_threads_fault_on_the_same_pages)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	struct filler f[2];
	struct gvm_queue *q2;
	struct gvm_vm *vm2;
	pthread_t t[2];
	struct ctx c;
	uint64_t *p;
	void *r0, *r1;

	setup(&c);
	p = map_2m();
	ASSERT_OK(gvm_vm_create(c.dev, c.mm, GVM_VM_LR_MODE |
				GVM_VM_FAULT_MODE, &vm2));
	ASSERT_OK(gvm_queue_create(vm2, GVM_ENGINE_COMPUTE, &q2));
	ASSERT_OK(gvm_vm_bind(vm2, NULL, &op, 1, NULL, 0));
	/* each VM writes its own 64 KiB of the same 2 MiB range */
	f[0] = (struct filler){ c.q, u64(p), 27, 20 };
	f[1] = (struct filler){ q2, u64(p) + K64, 28, 20 };
	ASSERT_OK(pthread_create(&t[0], NULL, filler_fn, &f[0]));
	ASSERT_OK(pthread_create(&t[1], NULL, filler_fn, &f[1]));
	pthread_join(t[0], &r0);
	pthread_join(t[1], &r1);
	ASSERT_TRUE(r0 == NULL && r1 == NULL);
	ASSERT_TRUE(all_are(p, K64, W(27)));
	ASSERT_TRUE(all_are(p + K64 / 8, K64, W(28)));
	ASSERT_TRUE(all_are(p + 2 * K64 / 8, M2 - 2 * K64, 0));
	ASSERT_EQ(logged(c.vm), 0);
	ASSERT_EQ(logged(vm2), 0);
	gvm_queue_destroy(q2);
	ASSERT_OK(gvm_vm_destroy(vm2));
	teardown(&c);
	munmap(p, M2);
}

/* Another VM binds a userptr over memory in this VM's device memory. */
TEST(userptr_of_another_vm_brings_it_back)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .range = M2 };
	struct gvm_queue *q2;
	struct gvm_vm *vm2;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 14);
	ASSERT_OK(gvm_vm_create(c.dev, c.mm, 0, &vm2));
	ASSERT_OK(gvm_queue_create(vm2, GVM_ENGINE_COMPUTE, &q2));
	op.addr = u64(p);
	op.userptr = u64(p);
	ASSERT_OK(gvm_vm_bind(vm2, NULL, &op, 1, NULL, 0));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(stats(c.vm).dev_svm_to_system, 1);
	ASSERT_TRUE(all_are(p, M2, W(14)));
	gvm_queue_destroy(q2);
	ASSERT_OK(gvm_vm_destroy(vm2));
	teardown(&c);
	munmap(p, M2);
}

TEST(shared_and_file_memory_stay_in_place)
{
	struct ctx c;
	uint64_t *sh, *file;
	int fd;

	setup(&c);
	sh = mmap(NULL, M2, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(sh != MAP_FAILED);
	fd = memfd_create("gvm-test", 0);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(ftruncate(fd, M2));
	file = mmap(NULL, M2, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_TRUE(file != MAP_FAILED);
	gpu_fill(&c, u64(sh), M2, 1);
	gpu_fill(&c, u64(file), M2, 2);
	ASSERT_EQ(stats(c.vm).svm_migrations, 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_TRUE(all_are(sh, M2, W(1)));
	ASSERT_TRUE(all_are(file, M2, W(2)));
	teardown(&c);
	munmap(sh, M2);
	munmap(file, M2);
	close(fd);
}

static uint64_t engine_sp;

static void note_stack(struct gvm_lane *lane, const void *args)
{
	volatile int local = 0;

	(void)lane;
	(void)args;
	gvm_store_relaxed(&engine_sp, (uint64_t)(uintptr_t)&local);
}

/*
 * The library's own memory is never migrated: a prefetch to VRAM over the
 * stack an engine runs kernels on, or over the library's heap, leaves it
 * in place (a moved stack would fault its own thread; core/thread.c).
 * Next to it, the application's page moves, so prefetching does.
 */
TEST(the_librarys_stacks_and_heap_stay_in_place)
{
	struct ctx c;
	struct gvm_kernel k;
	uint64_t uf = 0, *mine, *heap;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };

	setup(&c);
	ASSERT_OK(gvm_kernel_init(&k, "note_stack", note_stack, 1, NULL, 0));
	ASSERT_OK(gvm_exec(c.q, &k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_NE(engine_sp, 0);
	heap = gvm__aligned_alloc(K4, K4);
	ASSERT_TRUE(heap != NULL);

	prefetch(&c, (void *)(uintptr_t)(engine_sp & ~(K4 - 1)), K4,
		 GVM_MEM_VRAM);
	prefetch(&c, heap, K4, GVM_MEM_VRAM);
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 2);
	ASSERT_EQ(stats(c.vm).svm_migrations, 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	/* the engine still runs on it */
	uf = 0;
	ASSERT_OK(gvm_exec(c.q, &k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));

	mine = map_2m();
	mine[0] = 7;
	prefetch(&c, mine, K4, GVM_MEM_VRAM);
	ASSERT_EQ(stats(c.vm).svm_migrations, 1);
	ASSERT_EQ(mine[0], 7);
	gvm__free(heap);
	teardown(&c);
	munmap(mine, M2);
}

/*
 * The stack and TLS of a thread that runs library code never move
 * (core/stack.c): a prefetch to VRAM over the caller's own stack or thread
 * control block, made by that caller from inside gvm_vm_bind, leaves them
 * in place.  Had it moved, the caller would
 * fault on its stack inside the library, maybe holding a lock the
 * fault-back needs.
 */
TEST(the_callers_stack_stays_in_place)
{
	volatile uint64_t here[K4 / 8];
	uint64_t page = (uint64_t)(uintptr_t)&here[0] & ~(K4 - 1);
	struct ctx c;

	here[0] = 11;
	setup(&c);
	ASSERT_GE(gvm__stacks_registered(), 1);
	prefetch(&c, (void *)(uintptr_t)page, 2 * K4, GVM_MEM_VRAM);
	/* its thread control block and TLS (the stack protector's canary,
	   errno, the library's thread-local variables) */
	prefetch(&c, (void *)((uintptr_t)__builtin_thread_pointer() &
			      ~(uintptr_t)(K4 - 1)), K4, GVM_MEM_VRAM);
	ASSERT_EQ(stats(c.vm).svm_migrations, 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_EQ(here[0], 11);
	teardown(&c);
}

/* An application thread on a stack of 1 MiB (64 KiB ranges) the test owns. */
#define TSTACK (1ull << 20)

struct stack_thread {
	int go[2], done[2];		/* pipes: main -> thread, back */
	pid_t tid;
};

/*
 * Waits until thread @tid sleeps in read(): from then on it touches no
 * memory of its own until woken (its /proc syscall line starts "0 ",
 * __NR_read, while it is blocked in it).
 */
static void wait_until_in_read(pid_t tid)
{
	char path[64], line[256];

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	for (;;) {
		FILE *f = fopen(path, "r");

		ASSERT_TRUE(f != NULL);
		ASSERT_TRUE(fgets(line, sizeof(line), f) != NULL);
		fclose(f);
		if (!strncmp(line, "0 ", 2))
			return;
		sched_yield();
	}
}

static void step(int fd)
{
	char b = 0;

	ASSERT_EQ(read(fd, &b, 1), 1);
}

static void signal_fd(int fd)
{
	char b = 0;

	ASSERT_EQ(write(fd, &b, 1), 1);
}

static void *stack_thread_fn(void *arg)
{
	struct stack_thread *t = arg;
	struct gvm_fence *f;

	gvm_store_release(&t->tid, gettid());
	step(t->go[0]);			/* 1: its stack moves meanwhile */
	/* Its first library call: registers the stack, and brings back
	   what moved of it, all of it, not only what this call touches. */
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &f));
	gvm_fence_signal(f);
	gvm_fence_put(f);
	signal_fd(t->done[1]);
	step(t->go[0]);			/* 2: a prefetch moves nothing */
	return NULL;
}

/*
 * A thread whose stack moved to VRAM before it ever called gvm gets all of
 * it back at its first call: a call on a deeper page could otherwise fault
 * holding a lock.  From then on a prefetch over it moves nothing; once the
 * thread has exited, its memory is the application's again and moves.
 */
TEST(a_threads_stack_comes_back_when_it_first_calls_gvm)
{
	struct stack_thread t;
	pthread_attr_t attr;
	unsigned int before;
	pthread_t th;
	struct ctx c;
	void *area, *stk;

	setup(&c);
	ASSERT_OK(pipe(t.go));
	ASSERT_OK(pipe(t.done));
	/* 64 KiB-aligned, in a mapping of its own (no neighbour merges
	   with it): exactly 16 ranges. */
	area = mmap(NULL, TSTACK + 2 * K64, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_TRUE(area != MAP_FAILED);
	stk = (void *)(((uintptr_t)area + K64) & ~(uintptr_t)(K64 - 1));
	ASSERT_OK(mprotect(stk, TSTACK, PROT_READ | PROT_WRITE));
	ASSERT_OK(pthread_attr_init(&attr));
	ASSERT_OK(pthread_attr_setstack(&attr, stk, TSTACK));
	before = gvm__stacks_registered();
	t.tid = 0;
	ASSERT_OK(pthread_create(&th, &attr, stack_thread_fn, &t));
	pthread_attr_destroy(&attr);
	while (!gvm_load_acquire(&t.tid))
		sched_yield();
	wait_until_in_read(t.tid);

	/* The thread waits in read(); its whole stack moves (16 ranges). */
	prefetch(&c, stk, TSTACK, GVM_MEM_VRAM);
	ASSERT_EQ(stats(c.vm).svm_migrations, TSTACK / K64);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), TSTACK);
	ASSERT_EQ(gvm__stacks_registered(), before);
	signal_fd(t.go[1]);
	step(t.done[0]);
	ASSERT_EQ(gvm__stacks_registered(), before + 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);

	/* Registered: the ranges exist and would migrate, but the mm
	   takes nothing from a stack running library code (the ranges
	   stay in system memory, as after any failed migration). */
	ASSERT_TRUE(gvm__alloc_owns((uint64_t)(uintptr_t)stk, TSTACK));
	/* ... and nothing past it: its TLS is inside the stack block, and
	   the memory above is the application's (it used to be taken for
	   that thread's TLS, and a mapping there never migrated). */
	ASSERT_FALSE(gvm__alloc_owns((uint64_t)(uintptr_t)stk + TSTACK, K4));
	prefetch(&c, stk, TSTACK, GVM_MEM_VRAM);
	ASSERT_EQ(stats(c.vm).svm_migrations, TSTACK / K64);
	ASSERT_GE(stats(c.vm).svm_migration_failures, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);

	wait_until_in_read(t.tid);
	signal_fd(t.go[1]);
	ASSERT_OK(pthread_join(th, NULL));
	ASSERT_EQ(gvm__stacks_registered(), before);
	ASSERT_FALSE(gvm__alloc_owns((uint64_t)(uintptr_t)stk, TSTACK));
	teardown(&c);
	ASSERT_OK(munmap(area, TSTACK + 2 * K64));
	close(t.go[0]);
	close(t.go[1]);
	close(t.done[0]);
	close(t.done[1]);
}

TEST(mlocked_memory_keeps_its_data)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_2m();
	if (mlock(p, M2)) {
		printf("SKIP: mlock: no permission\n");
		teardown(&c);
		munmap(p, M2);
		return;
	}
	gpu_fill(&c, u64(p), M2, 15);		/* moved or not: correct */
	ASSERT_TRUE(all_are(p, M2, W(15)));
	ASSERT_EQ(logged(c.vm), 0);
	printf("mlocked: %llu migrations\n",
	       (unsigned long long)stats(c.vm).svm_migrations);
	munlock(p, M2);
	teardown(&c);
	munmap(p, M2);
}

/* ---- a copy engine that fails on demand --------------------------------- */

static struct gvm_device_ops failing_ops;
static const struct gvm_device_ops *real_ops;
static int copy_failures;		/* atomic: copies left to fail */
static uint32_t fail_dst;		/* ... of those into this region */

static int failing_copy(struct gvm_device *dev, struct gvm_mem_addr dst,
			struct gvm_mem_addr src, uint64_t size,
			struct gvm_fence **done)
{
	if (dst.region == fail_dst &&
	    __atomic_load_n(&copy_failures, __ATOMIC_RELAXED) > 0) {
		__atomic_fetch_sub(&copy_failures, 1, __ATOMIC_RELAXED);
		return -EIO;
	}
	return real_ops->copy(dev, dst, src, size, done);
}

static void install_failing_copy(struct gvm_device *dev, uint32_t region)
{
	fail_dst = region;
	real_ops = dev->ops;
	failing_ops = *real_ops;
	failing_ops.copy = failing_copy;
	dev->ops = &failing_ops;
}

TEST(failed_migration_falls_back_with_data_intact)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	install_failing_copy(c.dev, GVM_MEM_VRAM);
	p = map_2m_indexed();
	__atomic_store_n(&copy_failures, 2, __ATOMIC_RELAXED);	/* + retry */
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), INDEX_SUM);
	ASSERT_EQ(stats(c.vm).svm_migrations, 0);
	ASSERT_EQ(stats(c.vm).svm_migration_failures, 1);
	ASSERT_EQ(stats(c.vm).svm_migration_retries, 1);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_GT(vram_free(c.dev), c.vram_free - M2);	/* tables only */
	ASSERT_TRUE(holds_index(p));
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, M2);
}

/*
 * The copy to VRAM fails and the pages cannot go back at once (the give
 * meets a pending event: -EAGAIN, injected): the data stays in the stage,
 * which becomes the extent's memory (mm/devmem.c, give_back), no device's.
 * The GPU still gets the data: its fetch brings a stage extent back to
 * system memory (it used to fail every fault on the range with -EINVAL).
 */
TEST(data_a_failed_migration_left_in_a_stage_reaches_the_gpu)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	install_failing_copy(c.dev, GVM_MEM_VRAM);
	p = map_2m_indexed();
	__atomic_store_n(&copy_failures, 1, __ATOMIC_RELAXED);
	/* UFFDIO_MOVE: 1 the take, 2 the give back */
	gvm__inject_arm(GVM_INJECT_UFFD_MOVE, 2, -EAGAIN);
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), INDEX_SUM);
	ASSERT_EQ(gvm__inject_disarm(GVM_INJECT_UFFD_MOVE), 0);	/* fired */
	ASSERT_EQ(logged(c.vm), 0);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_TRUE(holds_index(p));
	teardown(&c);
	munmap(p, M2);
}

/*
 * A take that stops part way (a page in the middle is still shared with a
 * fork child: UFFDIO_MOVE refuses it) puts back what it moved; when that
 * cannot be done at once (an event pending: -EAGAIN, injected on the put
 * back), the pages go back the way a failed copy's do.  Nothing is lost
 * (the moved pages used to stay in a stage released as empty).
 */
TEST(a_take_that_stops_part_way_loses_nothing)
{
	const uint64_t per_page = K4 / 8;
	uint64_t *p;
	struct ctx c;
	int go[2], status;
	pid_t pid;
	char b = 0;

	setup(&c);
	p = map_2m_indexed();
	ASSERT_OK(pipe(go));
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {		/* keeps the pages shared until told */
		_exit(read(go[0], &b, 1) == 1 ? 0 : 1);
	}
	/* The parent's own copy of every page but the sixth. */
	for (uint64_t pg = 0; pg < M2 / K4; pg++)
		if (pg != 5)
			p[pg * per_page] = pg * per_page;
	/* UFFDIO_MOVE: 1 the take (stops at the sixth page), 2 the put back */
	gvm__inject_arm(GVM_INJECT_UFFD_MOVE, 2, -EAGAIN);
	ASSERT_EQ(gpu_sum(c.q, u64(p), M2), INDEX_SUM);
	ASSERT_EQ(gvm__inject_disarm(GVM_INJECT_UFFD_MOVE), 0);	/* fired */
	ASSERT_TRUE(holds_index(p));
	ASSERT_EQ(logged(c.vm), 0);
	ASSERT_EQ(write(go[1], &b, 1), 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(go[0]);
	close(go[1]);
	teardown(&c);
	munmap(p, M2);
}

/*
 * A CPU copy back that fills part of a migration and then has to wait
 * (-EAGAIN: an event pending) leaves what it filled to the CPU at once:
 * the CPU threads it woke may write there, so no GPU may map the device
 * copy of those pages meanwhile (it did until the retry).  Pages 5 and 7
 * are discarded first, so that page 6 is a run of its own: the CPU copy
 * fills a run in one call, and only a lone page fails whole.  So the CPU
 * copy fills [0, 5) and fails at page 6 (-EAGAIN), the stage's move of
 * the next run fails too, and the migration waits for the events:
 * back_waits looks then, and writes page 0 as the CPU may.
 */
static struct {
	uint64_t *p;
	unsigned int calls;
	bool page0_on_device, page6_on_device;
} back_wait;

static bool on_device(struct gvm_mm *mm, uint64_t addr)
{
	struct gvm_mm_devmem *dm;
	uint64_t off;
	bool other;

	dm = gvm__mm_devmem_lookup(mm, addr, K4, NULL, &off, &other);
	if (dm)
		gvm__mm_devmem_put(dm);
	return dm != NULL;
}

static void back_waits(struct gvm_mm *mm)
{
	back_wait.calls++;
	back_wait.page0_on_device = on_device(mm, u64(back_wait.p));
	back_wait.page6_on_device = on_device(mm, u64(back_wait.p) + 6 * K4);
	back_wait.p[0] = 99;
}

TEST(what_the_cpu_copy_gave_back_is_the_cpus_while_the_rest_waits)
{
	const uint64_t per_page = K4 / 8;
	struct ctx c;
	uint64_t *p, back0;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 21);
	back0 = stats(c.vm).svm_to_system;
	back0 = stats(c.vm).svm_to_system;
	ASSERT_OK(madvise(p + 5 * per_page, K4, MADV_DONTNEED));
	ASSERT_OK(madvise(p + 7 * per_page, K4, MADV_DONTNEED));
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2 - 2 * K4);
	back_wait.p = p;
	gvm__mm_back_wait_hook = back_waits;
	/* UFFDIO_COPY: 1 the run [0, 5), 2 page 6; UFFDIO_MOVE: 1 the
	   stage's first move */
	gvm__inject_arm(GVM_INJECT_UFFD_COPY, 2, -EAGAIN);
	gvm__inject_arm(GVM_INJECT_UFFD_MOVE, 1, -EAGAIN);
	ASSERT_OK(gvm__mm_migrate_to_ram(c.mm, u64(p), M2));
	gvm__mm_back_wait_hook = NULL;
	ASSERT_EQ(gvm__inject_disarm(GVM_INJECT_UFFD_COPY), 0);	/* fired */
	ASSERT_EQ(gvm__inject_disarm(GVM_INJECT_UFFD_MOVE), 0);
	ASSERT_EQ(back_wait.calls, 1);
	ASSERT_FALSE(back_wait.page0_on_device);
	ASSERT_TRUE(back_wait.page6_on_device);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	/* one move back, in three attempts of two ways */
	ASSERT_EQ(stats(c.vm).svm_to_system, back0 + 1);
	ASSERT_EQ(p[0], 99);
	ASSERT_TRUE(all_are(p + 1, K4 - 8, W(21)));
	for (uint64_t pg = 1; pg < M2 / K4; pg++)
		ASSERT_TRUE(all_are(p + pg * per_page, K4,
				    pg == 5 || pg == 7 ? 0 : W(21)));
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, M2);
}

TEST(one_failed_copy_is_retried)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	install_failing_copy(c.dev, GVM_MEM_VRAM);
	p = map_2m();
	__atomic_store_n(&copy_failures, 1, __ATOMIC_RELAXED);
	gpu_fill(&c, u64(p), M2, 16);
	ASSERT_EQ(stats(c.vm).svm_migrations, 1);
	ASSERT_EQ(stats(c.vm).svm_migration_failures, 0);
	ASSERT_EQ(stats(c.vm).svm_migration_retries, 1);
	ASSERT_TRUE(all_are(p, M2, W(16)));
	teardown(&c);
	munmap(p, M2);
}

/* ---- a stage emptied while a migration's copy runs (mm/self.c) -------- */

/*
 * Copies into VRAM after the first end only once the mm has emptied a
 * stage meanwhile: each is made at once, and its fence is signalled by a
 * releaser thread that waits for stages_tidied to grow (10 s at most,
 * then it signals all the same and says so).  A migration that emptied
 * its next stage only after its copy, or never, would wait those 10 s.
 * The releaser is started, and has used the library once (its stack is
 * registered: core/stack.c), before any migration holds devmem_lock.
 */
#define HELD_MAX 2
static struct gvm_device_ops held_ops;
static struct gvm_mm *held_mm;
static unsigned int vram_copies;		/* the migrating thread's */
static struct held {
	struct gvm_fence *fence;		/* atomic: set once */
	uint64_t tidied_before;
	bool timed_out;
} held[HELD_MAX];
static unsigned int nr_held;			/* atomic */
static bool releaser_ready;			/* atomic: it used gvm */

static uint64_t stages_tidied(struct gvm_mm *mm)
{
	struct gvm_mm_self_stats st;

	gvm__mm_self_stats(mm, &st);
	return st.stages_tidied;
}

static void *releaser_main(void *arg)
{
	struct gvm_fence *warm;

	(void)arg;
	if (!gvm_fence_create(gvm_fence_context_alloc(1), 1, &warm)) {
		gvm_fence_signal(warm);
		gvm_fence_put(warm);
	}
	__atomic_store_n(&releaser_ready, true, __ATOMIC_RELEASE);
	for (unsigned int i = 0; i < HELD_MAX; i++) {
		struct held *h = &held[i];
		int64_t until;

		while (!__atomic_load_n(&h->fence, __ATOMIC_ACQUIRE))
			sched_yield();
		until = gvm__now_ns() + 10ll * 1000 * 1000 * 1000;
		while (stages_tidied(held_mm) == h->tidied_before) {
			if (gvm__now_ns() > until) {
				h->timed_out = true;
				break;
			}
			sched_yield();
		}
		gvm_fence_signal(h->fence);
	}
	return NULL;
}

static int held_copy(struct gvm_device *dev, struct gvm_mem_addr dst,
		     struct gvm_mem_addr src, uint64_t size,
		     struct gvm_fence **done)
{
	unsigned int i = __atomic_load_n(&nr_held, __ATOMIC_RELAXED);
	struct gvm_fence *f, *mine;
	int err;

	err = real_ops->copy(dev, dst, src, size, &f);
	if (err || dst.region != GVM_MEM_VRAM || ++vram_copies == 1 ||
	    i == HELD_MAX) {
		if (!err)
			*done = f;
		return err;
	}
	gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);	/* the data is there */
	gvm_fence_put(f);
	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &mine));
	held[i].tidied_before = stages_tidied(held_mm);
	*done = gvm_fence_get(mine);
	__atomic_store_n(&nr_held, i + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&held[i].fence, mine, __ATOMIC_RELEASE);
	return 0;
}

/*
 * Three 2 MiB migrations one after the other: the second and the third
 * each empty the stage the one before filled while their own copy runs
 * (so no take empties one itself), and the data arrives whole.
 */
TEST(migrations_empty_the_last_stage_while_they_copy)
{
	uint64_t *p[3], before;
	pthread_t releaser;
	struct ctx c;

	setup(&c);
	held_mm = c.mm;
	ASSERT_OK(pthread_create(&releaser, NULL, releaser_main, NULL));
	/* Its first call registers its stack and brings back what of it
	   moved, which waits for devmem_lock: a held copy holds that. */
	while (!__atomic_load_n(&releaser_ready, __ATOMIC_ACQUIRE))
		sched_yield();
	real_ops = c.dev->ops;
	held_ops = *real_ops;
	held_ops.copy = held_copy;
	c.dev->ops = &held_ops;
	before = stages_tidied(c.mm);
	for (int i = 0; i < 3; i++) {
		p[i] = map_2m();
		gpu_fill(&c, u64(p[i]), M2, 40 + (uint32_t)i);
	}
	ASSERT_EQ(stats(c.vm).svm_migrations, 3);
	pthread_join(releaser, NULL);
	for (unsigned int i = 0; i < HELD_MAX; i++) {
		ASSERT_FALSE(held[i].timed_out);
		gvm_fence_put(held[i].fence);
	}
	ASSERT_EQ(stages_tidied(c.mm), before + 2);
	for (int i = 0; i < 3; i++)
		ASSERT_TRUE(all_are(p[i], M2, W(40 + i)));
	teardown(&c);
	for (int i = 0; i < 3; i++)
		munmap(p[i], M2);
}

/*
 * The copy back fails once: retried, the CPU gets its data.  The copy
 * engine's way back (into a stage, then UFFDIO_MOVE), which the CPU's
 * UFFDIO_COPY from the VRAM window replaces by default.
 */
TEST(failed_copy_back_is_retried)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	gvm_store_relaxed(&gvm__mm_devmem_cpu_back_max, 0);
	install_failing_copy(c.dev, GVM_MEM_SYSTEM);
	p = map_2m();
	make_resident(&c, p, 17);
	__atomic_store_n(&copy_failures, 1, __ATOMIC_RELAXED);
	ASSERT_TRUE(all_are(p, M2, W(17)));
	ASSERT_EQ(__atomic_load_n(&copy_failures, __ATOMIC_RELAXED), 0);
	teardown(&c);
	munmap(p, M2);
}

/* Both ways back give the same bytes, every page, and the same counts. */
TEST(both_ways_back_give_the_data)
{
	struct ctx c;
	uint64_t *p, free0;

	setup(&c);
	p = map_2m();
	for (int way = 0; way < 2; way++) {
		uint64_t back0 = stats(c.vm).dev_svm_bytes_to_system, sum = 0;

		gvm_store_relaxed(&gvm__mm_devmem_cpu_back_max,
				  way ? 0 : GVM_MM_CPU_BACK_MAX);
		for (uint64_t i = 0; i < M2 / 8; i++) {
			p[i] = i * 3 + (uint64_t)way;
			sum += p[i];
		}
		/* a GPU read moves it to VRAM too */
		ASSERT_EQ(gpu_sum(c.q, u64(p), M2), sum);
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), M2);
		free0 = vram_free(c.dev);
		for (uint64_t i = 0; i < M2 / 8; i++)
			ASSERT_EQ(p[i], i * 3 + (uint64_t)way);
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
		ASSERT_EQ(vram_free(c.dev), free0 + M2);
		ASSERT_EQ(stats(c.vm).dev_svm_bytes_to_system, back0 + M2);
	}
	gvm_store_relaxed(&gvm__mm_devmem_cpu_back_max, GVM_MM_CPU_BACK_MAX);
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, M2);
}

/* ---- huge pages (mm/self.c, HUGE PAGES) --------------------------------- */

/* Does the CPU map [p, p + M2) with one huge page? */
static bool is_huge(const void *p)
{
	struct gvm_mm_maps maps;
	bool huge;

	ASSERT_OK(gvm__mm_maps_init(&maps));
	huge = gvm__mm_maps_huge(&maps, u64(p), M2);
	gvm__mm_maps_fini(&maps);
	return huge;
}

/* @p's words, from word @from on, are i * 3 + @v. */
static bool all_from(const uint64_t *p, uint64_t from, uint64_t bytes,
		     uint64_t v)
{
	for (uint64_t i = from; i < from + bytes / 8; i++)
		if (p[i] != i * 3 + v)
			return false;
	return true;
}

/*
 * map_2m() with MADV_HUGEPAGE, word i = i * 3 + @v: one huge page, or
 * NULL (said) where the system gives none (THP off, none free).
 */
static uint64_t *map_2m_huge(uint64_t v)
{
	uint64_t *p = map_2m();

	madvise(p, M2, MADV_HUGEPAGE);
	for (uint64_t i = 0; i < M2 / 8; i++)
		p[i] = i * 3 + v;
	if (is_huge(p))
		return p;
	fprintf(stderr, "no transparent huge page here: test skipped\n");
	munmap(p, M2);
	return NULL;
}

/* The GPU reads @p's 2 MiB (checked), which moves it to VRAM. */
static void read_resident(struct ctx *c, const uint64_t *p, uint64_t v)
{
	uint64_t sum = 0;

	for (uint64_t i = 0; i < M2 / 8; i++)
		sum += i * 3 + v;
	ASSERT_EQ(gpu_sum(c->q, u64(p), M2), sum);
	ASSERT_EQ(gvm__mm_devmem_bytes(c->mm), M2);
}

/*
 * A range taken from the CPU as one huge page comes back as one (one new
 * page-table entry, not 512: docs/performance.md, migrate_2m), whether
 * the CPU touches it or gvm brings it back, and again after that; a
 * 2 MiB range of small pages stays small.
 */
TEST(a_huge_page_goes_to_device_memory_and_back_whole)
{
	struct ctx c;
	uint64_t *p, *q;

	setup(&c);
	p = map_2m_huge(1);
	if (!p) {
		teardown(&c);
		return;
	}
	read_resident(&c, p, 1);
	ASSERT_TRUE(all_from(p, 0, M2, 1));		/* CPU fault: back */
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_TRUE(is_huge(p));
	for (uint64_t i = 0; i < M2 / 8; i++)
		p[i] = i * 3 + 2;
	read_resident(&c, p, 2);
	ASSERT_OK(gvm__mm_migrate_to_ram(c.mm, u64(p), M2));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	ASSERT_TRUE(is_huge(p));
	ASSERT_TRUE(all_from(p, 0, M2, 2));

	q = map_2m();				/* small pages */
	madvise(q, M2, MADV_NOHUGEPAGE);
	for (uint64_t i = 0; i < M2 / 8; i++)
		q[i] = i * 3 + 4;
	read_resident(&c, q, 4);
	ASSERT_TRUE(all_from(q, 0, M2, 4));
	ASSERT_FALSE(is_huge(q));
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, M2);
	munmap(q, M2);
}

/*
 * What the CPU did to a device-resident huge page meanwhile sends it
 * back the small pages' way, data intact: a hole (the rest comes back),
 * an mremap to an address that is not 2 MiB-aligned; an aligned one
 * keeps it whole.
 */
TEST(a_changed_huge_page_comes_back_with_its_data)
{
	struct ctx c;
	uint8_t *area, *room;
	uint64_t *p, *n, *first;

	setup(&c);
	p = map_2m_huge(6);
	if (!p) {
		teardown(&c);
		return;
	}
	read_resident(&c, p, 6);
	ASSERT_OK(munmap((uint8_t *)p + K64, K4));	/* a hole */
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_TRUE(all_from(p, 0, K64, 6));
	ASSERT_TRUE(all_from(p, (K64 + K4) / 8, M2 - K64 - K4, 6));
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	/*
	 * Kept mapped until the end: the collector makes the rest's new
	 * ranges on its own thread, after the flush, each fetched through
	 * whatever the CPU maps there then; at this address a new huge
	 * mapping of the loop below would have its VMA split by their
	 * registrations (docs/svm.md, "Partial munmap").
	 */
	first = p;

	area = mmap(NULL, 4 * M2, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(area != MAP_FAILED);
	room = (uint8_t *)((u64(area) + M2 - 1) & ~(M2 - 1));
	for (int aligned = 0; aligned < 2; aligned++) {
		uint8_t *dst = room + (aligned ? M2 : K64);

		p = map_2m_huge(7 + (uint64_t)aligned);
		ASSERT_TRUE(p != NULL);
		read_resident(&c, p, 7 + (uint64_t)aligned);
		n = mremap(p, M2, M2, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
		ASSERT_TRUE(n == (uint64_t *)dst);
		ASSERT_OK(gvm_mm_flush(c.mm));
		ASSERT_TRUE(all_from(n, 0, M2, 7 + (uint64_t)aligned));
		ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
		ASSERT_EQ(is_huge(n), aligned);
		munmap(n, M2);
	}
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(area, 4 * M2);
	munmap(first, M2);
}

/* ---- who may touch device-resident memory -------------------------------- */

/* A user fence whose address is in device-resident memory. */
TEST(user_fence_in_device_resident_memory)
{
	struct gvm_kernel k;
	struct ctx c;
	uint64_t *p;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .value = 99 };

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 18);
	s.addr = &p[1000];			/* in the second page */
	ASSERT_OK(gvm_kernel_fill(&k, u64(p), K4, 19));
	ASSERT_OK(gvm_exec(c.q, &k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&p[1000], 99, GVM_TIMEOUT_INFINITE));
	ASSERT_TRUE(all_are(p, K4, W(19)));
	ASSERT_TRUE(all_are(p + K4 / 8, 8000 - K4, W(18)));
	ASSERT_TRUE(all_are(p + 1001, M2 - 8008, W(18)));
	teardown(&c);
	munmap(p, M2);
}

/* A GPU fault whose servicing needs memory another VM moved to VRAM. */
TEST(fault_service_brings_back_another_devices_memory)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	struct gvm_device *dev2;
	struct gvm_queue *q2;
	struct gvm_vm *vm2;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_2m();
	make_resident(&c, p, 20);
	ASSERT_OK(gvm_sim_device_create(NULL, &dev2));
	ASSERT_OK(gvm_vm_create(dev2, c.mm, GVM_VM_LR_MODE |
				GVM_VM_FAULT_MODE, &vm2));
	ASSERT_OK(gvm_queue_create(vm2, GVM_ENGINE_COMPUTE, &q2));
	ASSERT_OK(gvm_vm_bind(vm2, NULL, &op, 1, NULL, 0));
	/* vm2's fault takes the range from c.dev's memory into dev2's */
	ASSERT_EQ(gpu_sum(q2, u64(p), M2), W(20) * (M2 / 8));
	ASSERT_EQ(stats(c.vm).dev_svm_to_system, 1);
	ASSERT_EQ(stats(vm2).svm_migrations, 1);
	ASSERT_TRUE(all_are(p, M2, W(20)));
	gvm_queue_destroy(q2);
	ASSERT_OK(gvm_vm_destroy(vm2));
	gvm_device_put(dev2);
	teardown(&c);
	munmap(p, M2);
}

/*
 * A CPU thread keeps reading a word of a range the GPU keeps writing
 * elsewhere in (no data race: different words): every GPU fault moves the
 * range to VRAM, every read brings it back; the word never changes.
 */
struct reader {
	const uint64_t *p;
	uint64_t stop;			/* atomic */
	uint64_t reads, bad;
};

static void *reader_fn(void *arg)
{
	struct reader *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		if (*(volatile const uint64_t *)r->p != 0x5eed)
			r->bad++;
		r->reads++;
	}
	return NULL;
}

TEST(cpu_readers_while_the_gpu_migrates)
{
	struct reader r = { 0 };
	pthread_t t;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_2m();
	p[M2 / 8 - 1] = 0x5eed;
	r.p = &p[M2 / 8 - 1];
	ASSERT_OK(pthread_create(&t, NULL, reader_fn, &r));
	for (uint32_t v = 1; v <= 50; v++) {
		gpu_fill(&c, u64(p), K64, v);
		ASSERT_EQ(p[1], W(v));
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	ASSERT_EQ(r.bad, 0);
	ASSERT_TRUE(all_are(p, K64, W(50)));
	printf("%llu reads, %llu migrations, %llu failed\n",
	       (unsigned long long)r.reads,
	       (unsigned long long)stats(c.vm).svm_migrations,
	       (unsigned long long)stats(c.vm).svm_migration_failures);
	teardown(&c);
	munmap(p, M2);
}

