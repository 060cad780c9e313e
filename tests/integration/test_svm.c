// SPDX-License-Identifier: MIT
/*
 * Shared virtual memory on system memory (svm.c): a CPU_ADDR_MIRROR
 * mapping lets kernels use the process's own pointers; GPU faults make and
 * bind ranges sized by the CPU mapping, invalidations zap them, a range
 * whose memory went away is dropped and made again when the CPU maps
 * something there, a BO bound inside the mirror overrides it, and unbinding
 * the mirror takes its ranges away.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "svmtest.h"
#include "core/alloc.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "mm/notifier.h"
#include "vm/fault_queue.h"
#include "vm/vm.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define MIRROR_END (1ull << 47)

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static void mirror_op(struct ctx *c, uint32_t opcode)
{
	struct gvm_bind_op op = { .op = opcode, .addr = K4,
				  .range = MIRROR_END - K4 };

	if (opcode == GVM_BIND_MAP)
		op.flags = GVM_BIND_CPU_ADDR_MIRROR;
	ASSERT_OK(gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0));
}

static void setup(struct ctx *c)
{
	ASSERT_OK(gvm_mm_self(&c->mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, c->mm,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
	mirror_op(c, GVM_BIND_MAP);
}

static void teardown(struct ctx *c)
{
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
	gvm_mm_put(c->mm);
}

static uint64_t u64(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

static bool mapped(struct gvm_vm *vm, uint64_t va, uint64_t *page)
{
	struct gvm_pt_xlate x;
	int err;

	gvm__mutex_lock(&vm->pt_lock);
	err = gvm__pt_translate(&vm->pt, va, GVM_PT_VIEW_COMMITTED, &x);
	gvm__mutex_unlock(&vm->pt_lock);
	if (page)
		*page = err ? 0 : x.page_size;
	return !err;
}

static void store(struct ctx *c, uint64_t va, uint64_t v)
{
	struct gvm_kernel k;
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };

	ASSERT_OK(gvm_kernel_store_dword(&k, va, v, 64));
	ASSERT_OK(gvm_exec(c->q, &k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
}

static uint32_t logged(struct gvm_vm *vm)
{
	struct gvm_fault_info f[8];
	uint32_t n;

	ASSERT_OK(gvm_vm_query_faults(vm, f, 8, &n));
	return n;
}

static struct gvm_vm_stats stats(struct gvm_vm *vm)
{
	struct gvm_vm_stats st;

	ASSERT_OK(gvm_vm_stats(vm, &st));
	return st;
}

/* 4 MiB of anonymous memory, 2 MiB aligned. */
static uint64_t *map_4m(void)
{
	uint8_t *p = mmap(NULL, 3 * M2, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *a;

	ASSERT_TRUE(p != MAP_FAILED);
	a = (uint8_t *)((u64(p) + M2 - 1) & ~(M2 - 1));
	if (a > p)
		munmap(p, a - p);
	munmap(a + 2 * M2, p + 3 * M2 - (a + 2 * M2));
	return (uint64_t *)a;
}

/*
 * A GPU fault on private anonymous memory makes a 2M range and moves it to
 * the device; the CPU's next touch brings the whole range back (its data
 * intact) and zaps the GPU mapping, whose next fault moves it again.
 */
TEST(kernel_uses_cpu_pointers)
{
	struct ctx c;
	uint64_t *p, page;

	setup(&c);
	p = map_4m();
	p[0] = 1;
	store(&c, u64(&p[3]), 33);		/* a fault makes a 2M range */
	ASSERT_TRUE(mapped(c.vm, u64(p), &page));
	ASSERT_EQ(page, M2);
	ASSERT_EQ(stats(c.vm).svm_migrations, 1);
	ASSERT_EQ(stats(c.vm).bytes_to_vram, M2);
	store(&c, u64(&p[M2 / 8 - 1]), 34);	/* same range: no fault */
	ASSERT_EQ(stats(c.vm).faults_serviced, 1);
	ASSERT_EQ(stats(c.vm).dev_svm_to_system, 0);
	ASSERT_EQ(p[3], 33);			/* the CPU: back, all of it */
	ASSERT_EQ(stats(c.vm).dev_svm_to_system, 1);
	ASSERT_EQ(stats(c.vm).dev_svm_bytes_to_system, M2);
	ASSERT_EQ(p[M2 / 8 - 1], 34);
	ASSERT_EQ(p[0], 1);
	ASSERT_FALSE(mapped(c.vm, u64(p), NULL));
	store(&c, u64(&p[4]), 36);		/* refault: moves again */
	ASSERT_EQ(p[4], 36);
	ASSERT_EQ(stats(c.vm).svm_migrations, 2);
	ASSERT_EQ(p[3], 33);
	store(&c, u64(&p[M2 / 8]), 35);		/* the next 2M: a fault */
	ASSERT_EQ(p[M2 / 8], 35);
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 2);
	ASSERT_EQ(stats(c.vm).faults_serviced, 3);
	ASSERT_EQ(stats(c.vm).svm_migration_failures, 0);
	ASSERT_EQ(stats(c.vm).svm_faults_by_size[2], 3);
	ASSERT_EQ(stats(c.vm).svm_faults_by_size[0], 0);
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	munmap(p, 2 * M2);
}

/*
 * Per-VM counters of a round trip: a fault moves a 2 MiB range to VRAM
 * (svm_bytes_to_vram), the CPU's touch brings it back (svm_to_system,
 * svm_bytes_to_system, svm_cpu_faultbacks), each by exactly one move of
 * 2 MiB.  A second VM mirroring the same memory maps the device copy
 * without moving it and is not counted: the move back counts for the VM
 * that migrated.
 */
TEST(per_vm_counters_of_a_migration_and_a_cpu_touch)
{
	struct gvm_vm_stats st;
	struct ctx c, c2;
	uint64_t *p;

	setup(&c);
	c2.mm = c.mm;
	c2.dev = c.dev;
	ASSERT_OK(gvm_vm_create(c.dev, c.mm,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &c2.vm));
	ASSERT_OK(gvm_queue_create(c2.vm, GVM_ENGINE_COMPUTE, &c2.q));
	mirror_op(&c2, GVM_BIND_MAP);
	p = map_4m();
	p[0] = 1;
	store(&c, u64(&p[3]), 33);		/* to VRAM */
	st = stats(c.vm);
	ASSERT_EQ(st.svm_migrations, 1);
	ASSERT_EQ(st.svm_bytes_to_vram, M2);
	ASSERT_EQ(st.svm_to_system, 0);
	ASSERT_EQ(st.svm_cpu_faultbacks, 0);
	store(&c2, u64(&p[5]), 55);		/* the same device copy */
	ASSERT_EQ(stats(c2.vm).svm_migrations, 0);
	ASSERT_EQ(p[3], 33);			/* the CPU: back */
	ASSERT_EQ(p[5], 55);
	st = stats(c.vm);
	ASSERT_EQ(st.svm_to_system, 1);
	ASSERT_EQ(st.svm_bytes_to_system, M2);
	ASSERT_EQ(st.svm_cpu_faultbacks, 1);
	ASSERT_EQ(st.svm_bytes_to_vram, M2);
	ASSERT_EQ(st.dev_svm_bytes_to_system, M2);
	st = stats(c2.vm);
	ASSERT_EQ(st.svm_bytes_to_vram, 0);
	ASSERT_EQ(st.svm_to_system, 0);
	ASSERT_EQ(st.svm_bytes_to_system, 0);
	ASSERT_EQ(st.svm_cpu_faultbacks, 0);
	gvm_queue_destroy(c2.q);
	ASSERT_OK(gvm_vm_destroy(c2.vm));
	teardown(&c);
	munmap(p, 2 * M2);
}

TEST(range_fits_the_cpu_mapping)
{
	struct ctx c;
	uint64_t *p, page;
	void *g;

	setup(&c);
	/* 12 KiB between PROT_NONE guards: no neighbour merges with it */
	g = mmap(NULL, 5 * K4, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(g != MAP_FAILED);
	p = (uint64_t *)((uint8_t *)g + K4);
	ASSERT_OK(mprotect(p, 3 * K4, PROT_READ | PROT_WRITE));
	store(&c, u64(&p[K4 / 8]), 8);		/* 12 KiB mapping: 4K range */
	ASSERT_TRUE(mapped(c.vm, u64(p) + K4, &page));
	ASSERT_EQ(page, K4);
	ASSERT_FALSE(mapped(c.vm, u64(p), NULL));
	ASSERT_EQ(stats(c.vm).bytes_to_vram, K4);
	ASSERT_EQ(stats(c.vm).svm_faults_by_size[0], 1);
	ASSERT_EQ(p[K4 / 8], 8);
	teardown(&c);
	munmap(g, 5 * K4);
}

TEST(munmap_drops_the_range_and_a_new_mapping_gets_one)
{
	struct ctx c;
	uint64_t *p, *q;

	setup(&c);
	p = map_4m();
	store(&c, u64(&p[1]), 1);
	ASSERT_EQ(p[1], 1);
	ASSERT_OK(munmap(p, M2));
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_FALSE(mapped(c.vm, u64(p), NULL));	/* zapped */
	store(&c, u64(&p[1]), 2);		/* nothing there: refused */
	ASSERT_EQ(logged(c.vm), 1);
	ASSERT_EQ(stats(c.vm).svm_ranges_dropped, 1);
	q = mmap(p, M2, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_TRUE(q == p);
	store(&c, u64(&p[1]), 3);		/* a new range */
	ASSERT_EQ(p[1], 3);
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 2);
	ASSERT_FALSE(stats(c.vm).banned);
	teardown(&c);
	munmap(p, 2 * M2);
}

/* Ranges whose memory went are collected by the device's collector,
   with no GPU fault. */
TEST(unmapped_ranges_are_collected_without_a_fault)
{
	struct ctx c;
	uint64_t *p, faults;

	setup(&c);
	p = map_4m();
	store(&c, u64(&p[1]), 1);
	store(&c, u64(&p[M2 / 8 + 1]), 2);
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 2);
	faults = stats(c.vm).faults;
	ASSERT_OK(munmap(p, 2 * M2));
	ASSERT_OK(gvm_mm_flush(c.mm));
	gvm__fault_queue_collect_wait(c.vm);
	ASSERT_EQ(stats(c.vm).svm_ranges_dropped, 2);
	ASSERT_EQ(stats(c.vm).svm_ranges_split, 0);
	ASSERT_EQ(stats(c.vm).faults, faults);
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
}

/*
 * Ranges do not insert notifiers of their own: one per 512 MiB chunk of
 * address space watches all the ranges in it, and goes with the VM.
 */
TEST(ranges_share_their_chunks_notifier)
{
	const uint64_t chunk = 512ull << 20;
	struct ctx c;
	uint8_t *res, *p;
	size_t before;

	res = mmap(NULL, 3 * chunk, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_TRUE(res != MAP_FAILED);
	p = (uint8_t *)((u64(res) + chunk - 1) & ~(chunk - 1));
	setup(&c);
	before = gvm__notifier_count(c.mm);
	store(&c, u64(p), 1);
	store(&c, u64(p + 8 * M2), 2);
	store(&c, u64(p + chunk - K4), 3);
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 3);
	ASSERT_EQ(gvm__notifier_count(c.mm), before + 1);
	store(&c, u64(p + chunk), 4);			/* the next chunk */
	ASSERT_EQ(gvm__notifier_count(c.mm), before + 2);
	/* Each range is still invalidated on its own. */
	ASSERT_OK(madvise(p + 8 * M2, K4, MADV_DONTNEED));
	ASSERT_OK(gvm_mm_flush(c.mm));
	ASSERT_EQ(stats(c.vm).userptr_invalidations, 1);
	store(&c, u64(p + 8 * M2 + 8), 5);
	ASSERT_EQ(*(uint64_t *)(p + 8 * M2), 0);	/* dropped page */
	ASSERT_EQ(*(uint64_t *)(p + 8 * M2 + 8), 5);
	ASSERT_EQ(*(uint64_t *)p, 1);
	ASSERT_EQ(*(uint64_t *)(p + chunk - K4), 3);
	ASSERT_EQ(*(uint64_t *)(p + chunk), 4);
	ASSERT_EQ(logged(c.vm), 0);
	gvm_queue_destroy(c.q);
	ASSERT_OK(gvm_vm_destroy(c.vm));
	ASSERT_EQ(gvm__notifier_count(c.mm), before);
	gvm_device_put(c.dev);
	gvm_mm_put(c.mm);
	munmap(res, 3 * chunk);
}

TEST(read_only_memory_is_read_only_to_the_gpu)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = mmap(NULL, 2 * K4, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	p[0] = 77;
	ASSERT_OK(mprotect(p, 2 * K4, PROT_READ));
	store(&c, u64(&p[1]), 5);		/* a write: refused */
	ASSERT_EQ(logged(c.vm), 1);
	ASSERT_EQ(p[1], 0);
	teardown(&c);
	munmap(p, 2 * K4);
}

TEST(bo_inside_the_mirror_overrides_it)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .range = M2 };
	struct gvm_bo *bo;
	struct ctx c;
	uint64_t *p, *b;

	setup(&c);
	p = map_4m();
	store(&c, u64(&p[1]), 1);		/* a range in the first 2M */
	ASSERT_EQ(p[1], 1);
	ASSERT_OK(gvm_bo_create(c.dev, M2, GVM_MEM_VRAM, c.vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&b));
	op.addr = u64(p);
	op.bo = bo;
	op.flags = GVM_BIND_IMMEDIATE;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 1);
	store(&c, u64(&p[2]), 2);		/* goes to the BO */
	ASSERT_EQ(b[2], 2);
	ASSERT_EQ(p[2], 0);
	store(&c, u64(&p[M2 / 8 + 2]), 3);	/* past it: the mirror */
	ASSERT_EQ(p[M2 / 8 + 2], 3);
	/* the range under the BO went with the bind: nothing stale */
	ASSERT_OK(gvm_vm_bind(c.vm, NULL,
			      &(struct gvm_bind_op){ .op = GVM_BIND_UNMAP,
						     .addr = u64(p),
						     .range = M2 }, 1, NULL, 0));
	ASSERT_FALSE(mapped(c.vm, u64(p), NULL));
	/* unbinding the BO mirrors the hole again: the CPU's memory */
	store(&c, u64(&p[2]), 4);
	ASSERT_EQ(p[2], 4);
	ASSERT_EQ(b[2], 2);
	ASSERT_EQ(logged(c.vm), 0);
	gvm_bo_put(bo);
	teardown(&c);
	munmap(p, 2 * M2);
}

/*
 * Only a mapping made entirely over the mirror gives it back when it goes;
 * half of a BO unmapped gives back that half; one that also covered
 * unmirrored addresses leaves a hole.
 */
TEST(unbinding_over_the_mirror_gives_back_what_was_mirrored)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .range = 2 * K4 };
	struct gvm_bo *bo;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_4m();
	ASSERT_OK(gvm_bo_create(c.dev, M2, GVM_MEM_VRAM, c.vm, &bo));
	op.bo = bo;
	op.addr = u64(p);
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	/* unmap the BO's second page: that page is mirrored again */
	ASSERT_OK(gvm_vm_bind(c.vm, NULL,
			      &(struct gvm_bind_op){ .op = GVM_BIND_UNMAP,
						     .addr = u64(p) + K4,
						     .range = K4 }, 1, NULL, 0));
	store(&c, u64(p) + K4 + 8, 5);
	ASSERT_EQ(p[K4 / 8 + 1], 5);
	ASSERT_EQ(logged(c.vm), 0);
	/* a hole in the mirror at [64K, 128K), a BO over [60K, 68K) */
	ASSERT_OK(gvm_vm_bind(c.vm, NULL,
			      &(struct gvm_bind_op){ .op = GVM_BIND_UNMAP,
						     .addr = u64(p) + 16 * K4,
						     .range = 16 * K4 }, 1, NULL,
			      0));
	op.addr = u64(p) + 15 * K4;
	op.range = 2 * K4;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	ASSERT_OK(gvm_vm_bind(c.vm, NULL,
			      &(struct gvm_bind_op){ .op = GVM_BIND_UNMAP,
						     .addr = u64(p) + 15 * K4,
						     .range = 2 * K4 }, 1, NULL,
			      0));
	/* it covered unmirrored addresses: a hole now, the fault fails */
	p[15 * K4 / 8] = 6;
	{
		struct gvm_kernel k;
		uint64_t uf = 0;
		struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
				      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
				      .value = 1 };

		ASSERT_OK(gvm_kernel_store_dword(&k, u64(p) + 15 * K4, 7, 64));
		ASSERT_OK(gvm_exec(c.q, &k, &s, 1));
		ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(logged(c.vm), 1);
		ASSERT_EQ(p[15 * K4 / 8], 6);
	}
	store(&c, u64(p) + 14 * K4, 8);		/* the mirror before it */
	ASSERT_EQ(p[14 * K4 / 8], 8);
	gvm_bo_put(bo);
	teardown(&c);
	munmap(p, 2 * M2);
}

TEST(unbinding_the_mirror_takes_its_ranges)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_4m();
	store(&c, u64(&p[1]), 1);
	store(&c, u64(&p[M2 / 8 + 1]), 2);
	ASSERT_TRUE(mapped(c.vm, u64(p), NULL));
	mirror_op(&c, GVM_BIND_UNMAP);
	ASSERT_FALSE(mapped(c.vm, u64(p), NULL));
	ASSERT_FALSE(mapped(c.vm, u64(p) + M2, NULL));
	ASSERT_EQ(stats(c.vm).vmas, 0);
	store(&c, u64(&p[1]), 3);		/* no mapping: refused */
	ASSERT_EQ(logged(c.vm), 1);
	ASSERT_EQ(p[1], 1);
	mirror_op(&c, GVM_BIND_MAP);		/* and back */
	store(&c, u64(&p[1]), 4);
	ASSERT_EQ(p[1], 4);
	teardown(&c);
	munmap(p, 2 * M2);
}

/*
 * The ranges an UNMAP takes join the bind's op lists while the list that
 * removes the mirror is being walked; with three lists before it, the
 * array of lists moves as they join (review finding: the walk read the
 * moved list through a stale pointer; ASan saw it).
 */
TEST(unbinding_ranges_while_the_bind_s_lists_grow)
{
	struct gvm_bind_op ops[4];
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_4m();
	store(&c, u64(&p[1]), 1);
	store(&c, u64(&p[M2 / 8 + 1]), 2);
	memset(ops, 0, sizeof(ops));
	for (int i = 0; i < 3; i++) {
		ops[i].op = GVM_BIND_MAP;
		ops[i].flags = GVM_BIND_NULL;
		ops[i].addr = 0x700000000000ull + (uint64_t)i * M2;
		ops[i].range = M2;
	}
	ops[3].op = GVM_BIND_UNMAP;
	ops[3].addr = u64(p);
	ops[3].range = 2 * M2;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, ops, 4, NULL, 0));
	ASSERT_FALSE(mapped(c.vm, u64(p), NULL));
	ASSERT_FALSE(mapped(c.vm, u64(p) + M2, NULL));
	store(&c, u64(&p[1]), 3);		/* no mapping: refused */
	ASSERT_EQ(logged(c.vm), 1);
	ASSERT_EQ(p[1], 1);
	ASSERT_EQ(p[M2 / 8 + 1], 2);
	teardown(&c);
	munmap(p, 2 * M2);
}

/*
 * A kernel that uses a range, says so, polls a gate in a BO (each poll a
 * lane call: the engine acknowledges TLB invalidations meanwhile) until
 * the test opens it, then uses the range again.
 */
struct held_use_args {
	uint64_t *started;
	uint64_t gate, va;
};

static void held_use_fn(struct gvm_lane *l, const void *args)
{
	const struct held_use_args *a = args;

	gvm_lane_store(l, a->va, 1, 8);
	if (gvm_lane_faulted(l))
		return;
	__atomic_store_n(a->started, 1, __ATOMIC_RELEASE);
	while (!gvm_lane_load(l, a->gate, 8) && !gvm_lane_faulted(l))
		gvm_cpu_relax();
	if (!gvm_lane_faulted(l))
		gvm_lane_store(l, a->va + 8, 2, 8);
}

/*
 * docs/svm.md, "Ranges": unbinding the mirror while a kernel uses its
 * ranges is never -EBUSY; the ranges go with it (their PTEs too) while
 * the kernel runs, and the kernel's next access to them faults, finds no
 * mapping and fails the job with -EIO and one fault-log entry.  The data
 * it wrote before stays the process's; the VM goes on.
 */
TEST(unbinding_the_mirror_while_a_kernel_uses_its_ranges)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = MIRROR_END,
				  .range = 64 * K4 };
	uint64_t started = 0, uf = 0, *p, *gate;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };
	struct held_use_args a;
	struct gvm_fault_info f;
	struct gvm_kernel k;
	struct gvm_bo *bo;
	struct ctx c;

	setup(&c);
	p = map_4m();
	/* the gate: a BO past the mirror, which the unbind leaves alone */
	ASSERT_OK(gvm_bo_create(c.dev, op.range, GVM_MEM_SYSTEM, c.vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&gate));
	op.bo = bo;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	store(&c, u64(&p[M2 / 8]), 5);		/* a second range */
	a = (struct held_use_args){ &started, MIRROR_END, u64(&p[1]) };
	ASSERT_OK(gvm_kernel_init(&k, "held_use", held_use_fn, 1, &a,
				  sizeof(a)));
	ASSERT_OK(gvm_exec(c.q, &k, &s, 1));
	while (!__atomic_load_n(&started, __ATOMIC_ACQUIRE))
		gvm_cpu_relax();
	ASSERT_EQ(stats(c.vm).svm_ranges_created, 2);
	ASSERT_TRUE(mapped(c.vm, u64(p), NULL));
	mirror_op(&c, GVM_BIND_UNMAP);		/* the kernel is mid-way */
	ASSERT_FALSE(mapped(c.vm, u64(p), NULL));
	ASSERT_FALSE(mapped(c.vm, u64(p) + M2, NULL));
	gvm__mutex_lock(&c.vm->lock);
	ASSERT_EQ(gvm__va_count(&c.vm->svm), 0);
	gvm__mutex_unlock(&c.vm->lock);
	ASSERT_EQ(stats(c.vm).vmas, 1);		/* the gate's */
	ASSERT_EQ(__atomic_load_n(&uf, __ATOMIC_ACQUIRE), 0);
	__atomic_store_n(gate, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(svmt_last_status(c.q), -EIO);
	ASSERT_EQ(svmt_logged(c.vm, &f), 1);
	ASSERT_EQ(f.addr, u64(&p[2]));
	ASSERT_EQ(f.access, GVM_ACCESS_WRITE);
	ASSERT_FALSE(stats(c.vm).banned);
	ASSERT_EQ(p[1], 1);			/* back from VRAM */
	ASSERT_EQ(p[2], 0);
	ASSERT_EQ(p[M2 / 8], 5);
	ASSERT_EQ(gvm__mm_devmem_bytes(c.mm), 0);
	mirror_op(&c, GVM_BIND_MAP);		/* the VM goes on */
	store(&c, u64(&p[2]), 6);
	ASSERT_EQ(p[2], 6);
	ASSERT_EQ(logged(c.vm), 0);
	op = (struct gvm_bind_op){ .op = GVM_BIND_UNMAP, .addr = MIRROR_END,
				   .range = 64 * K4 };
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	gvm_bo_put(bo);
	teardown(&c);
	munmap(p, 2 * M2);
}

TEST(malloc_memory_and_madvise)
{
	struct ctx c;
	uint64_t *small = malloc(64), *big = malloc(8 * M2);

	ASSERT_TRUE(small && big);
	setup(&c);
	small[0] = 10;
	store(&c, u64(&small[1]), 11);		/* brk heap */
	ASSERT_EQ(small[1], 11);
	ASSERT_EQ(small[0], 10);
	store(&c, u64(&big[5]), 12);		/* its own mmap */
	ASSERT_EQ(big[5], 12);
	/* the CPU drops the pages of big's first 2 MiB block it fully
	   owns: the GPU then sees the fresh zero page, and writes it */
	{
		uint64_t a = (u64(big) + M2 - 1) & ~(M2 - 1);
		uint64_t *w = (uint64_t *)(uintptr_t)a;

		store(&c, a + 8, 13);
		ASSERT_EQ(w[1], 13);
		ASSERT_OK(madvise(w, M2, MADV_DONTNEED));
		ASSERT_EQ(w[1], 0);
		store(&c, a + 16, 14);
		ASSERT_EQ(w[2], 14);
		ASSERT_EQ(w[1], 0);
	}
	ASSERT_EQ(logged(c.vm), 0);
	teardown(&c);
	free(big);
	free(small);
}

/*
 * A kernel that says it started, waits for its gate, then stores: the
 * test arms allocation-failure injection only once the job runs, so the
 * failures land in the fault's servicing (and migration), not in the
 * exec that submitted it.
 */
struct gate_store_args {
	uint64_t *started;
	const uint64_t *gate;
	uint64_t va, value;
};

static void gate_store_fn(struct gvm_lane *l, const void *args)
{
	const struct gate_store_args *a = args;

	__atomic_store_n(a->started, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(a->gate, __ATOMIC_ACQUIRE))
		gvm_cpu_relax();
	gvm_lane_store(l, a->va, a->value, 8);
}

/*
 * The N-th allocation of a fault's servicing fails, for every N: the
 * fault is then either served (the data is there, nothing logged) or
 * refused (one logged fault, the memory as it was); never lost.  The
 * range falls back to system memory when migration keeps failing; the
 * VM stays usable, nothing leaks (ASan), and a retry succeeds.
 */
TEST(fault_servicing_survives_allocation_failures)
{
	struct ctx c;
	uint64_t *p;
	unsigned int n, served = 0, refused = 0;

	setup(&c);
	p = map_4m();
	for (n = 1; n <= 40; n++) {
		uint64_t *slot = &p[n * (M2 / 8 / 64)];
		uint64_t started = 0, gate = 0, uf = 0;
		struct gate_store_args a = { &started, &gate, u64(slot), n };
		struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
				      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
				      .value = 1 };
		struct gvm_kernel kern;
		uint32_t nlog;

		/* Each round starts from no range: unbind, rebind. */
		mirror_op(&c, GVM_BIND_UNMAP);
		mirror_op(&c, GVM_BIND_MAP);
		*slot = 7;
		ASSERT_OK(gvm_kernel_init(&kern, "gate_store", gate_store_fn,
					  1, &a, sizeof(a)));
		ASSERT_OK(gvm_exec(c.q, &kern, &s, 1));
		while (!__atomic_load_n(&started, __ATOMIC_ACQUIRE))
			gvm_cpu_relax();
		gvm__inject_arm(GVM_INJECT_ALLOC, (long)n, 0);
		__atomic_store_n(&gate, 1, __ATOMIC_RELEASE);
		ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
		gvm__inject_arm(GVM_INJECT_ALLOC, 0, 0);
		nlog = logged(c.vm);		/* drains the log */
		if (!nlog) {
			ASSERT_EQ(*slot, n);
			served++;
		} else {
			ASSERT_EQ(nlog, 1);
			ASSERT_EQ(*slot, 7);
			refused++;
		}
		store(&c, u64(slot), n + 1000);		/* retry works */
		ASSERT_EQ(*slot, n + 1000);
	}
	ASSERT_GT(served, 0);
	ASSERT_GT(refused, 0);
	ASSERT_FALSE(stats(c.vm).banned);
	printf("served %u, refused %u, migration failures %llu\n", served,
	       refused,
	       (unsigned long long)stats(c.vm).svm_migration_failures);
	teardown(&c);
	munmap(p, 2 * M2);
}
