// SPDX-License-Identifier: MIT
/*
 * VM_BIND through the public API, on the test backend, with the page-table
 * translator (committed view, under vm->lock) as the oracle:
 *
 *  - validation: every -EINVAL of gvm_vm_bind(), each leaving the VM as it
 *    was (VMA count, every page's translation);
 *  - split and merge through the page tables: replace, front / back /
 *    middle overlaps, spans with holes, leaf splits (2 MiB, 1 GiB), mixed
 *    page sizes, shared tables, table freeing, one BO mapped many times,
 *    57-bit VMs, NULL / READONLY / PAT entries;
 *  - bind arrays as one atomic operation, error injection at every stage;
 *  - a reference model: random bind arrays against a per-page model, with
 *    injected failures, checking translations and validate() after every
 *    call;
 *  - syncs and queues: jobs, ordering per queue and across queues,
 *    syncobjs, user fences, the -EBUSY rule, empty arrays, failed in-fences;
 *  - allocation-failure injection on bind, BO, VM and queue creation.
 */
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "testdev.h"

#include "core/alloc.h"
#include "core/sync.h"
#include "pt/pt_fmt.h"
#include "vm/bind.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/sync.h"
#include "vm/vm.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M1 (1ull << 20)
#define M2 (2ull << 20)
#define G1 (1ull << 30)

#define INF GVM_TIMEOUT_INFINITE

static struct gvm_device *dev;

static struct gvm_vm *new_vm(uint32_t flags)
{
	struct gvm_vm *vm;

	if (!dev)
		dev = testdev_create(0, 48);
	ASSERT_OK(gvm_vm_create(dev, NULL, flags, &vm));
	return vm;
}

static struct gvm_bo *new_bo(uint64_t size, uint32_t placement,
			     struct gvm_vm *local)
{
	struct gvm_bo *bo;

	if (!dev)
		dev = testdev_create(0, 48);
	ASSERT_OK(gvm_bo_create(dev, size, placement, local, &bo));
	return bo;
}

static void all_done(void)
{
	if (dev) {
		ASSERT_EQ(testdev_of(dev)->attached, 0);
		gvm_device_put(dev);
		dev = NULL;
	}
}

/* ---- oracle ---------------------------------------------------------------- */

static int xl(struct gvm_vm *vm, uint64_t va, struct gvm_pt_xlate *x)
{
	int err;

	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->pt_lock);
	err = gvm__pt_translate(&vm->pt, va, GVM_PT_VIEW_COMMITTED, x);
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
	return err;
}

/* Device address of byte @off of @bo. */
static uint64_t bo_addr(struct gvm_bo *bo, uint64_t off)
{
	for (size_t k = 0; k < bo->mem.nr_ext; k++) {
		if (off < bo->mem.ext[k].len)
			return bo->mem.ext[k].addr + off;
		off -= bo->mem.ext[k].len;
	}
	ASSERT_TRUE(!"offset beyond the BO");
	return 0;
}

static uint32_t bo_refs(struct gvm_bo *bo)
{
	return __atomic_load_n(&bo->refcount, __ATOMIC_RELAXED);
}

static uint32_t fence_refs(struct gvm_fence *f)
{
	return __atomic_load_n(&f->refcount, __ATOMIC_RELAXED);
}

static uint64_t pte_pat(uint64_t pte)
{
	return (pte & GVM_PTF_PAT_MASK) >> GVM_PTF_PAT_SHIFT;
}

/* The pages to look at in [va, va + len): all of them, or a sample. */
static uint64_t step_of(uint64_t len)
{
	return len <= 8 * M1 ? K4 : len / 512 + K4;
}

/* [va, va + len) maps @bo from @off, writable unless @ro, PAT @pat. */
static void expect_bo(struct gvm_vm *vm, uint64_t va, uint64_t len,
		      struct gvm_bo *bo, uint64_t off, bool ro, unsigned pat)
{
	uint64_t step = step_of(len), i;

	for (i = 0; i < len; i = i + step < len || i == len - K4 ? i + step
							       : len - K4) {
		struct gvm_pt_xlate x;

		ASSERT_OK(xl(vm, va + i, &x));
		ASSERT_EQ(x.addr, bo_addr(bo, off + i));
		ASSERT_FALSE(gvm__ptf_is_null(x.pte));
		ASSERT_EQ(!(x.pte & GVM_PTF_WRITE), ro);
		ASSERT_EQ(pte_pat(x.pte), pat);
		ASSERT_EQ(!!(x.pte & GVM_PTF_DEVMEM),
			  bo->mem.region == GVM_MEM_VRAM);
	}
}

static void expect_none(struct gvm_vm *vm, uint64_t va, uint64_t len)
{
	uint64_t step = step_of(len), i;

	for (i = 0; i < len; i = i + step < len || i == len - K4 ? i + step
							       : len - K4) {
		struct gvm_pt_xlate x;

		ASSERT_EQ(xl(vm, va + i, &x), -ENOENT);
	}
}

static void expect_null(struct gvm_vm *vm, uint64_t va, uint64_t len)
{
	uint64_t step = step_of(len), i;

	for (i = 0; i < len; i = i + step < len || i == len - K4 ? i + step
							       : len - K4) {
		struct gvm_pt_xlate x;

		ASSERT_OK(xl(vm, va + i, &x));
		ASSERT_TRUE(gvm__ptf_is_null(x.pte));
	}
}

static uint64_t page_size_at(struct gvm_vm *vm, uint64_t va)
{
	struct gvm_pt_xlate x;

	ASSERT_OK(xl(vm, va, &x));
	return x.page_size;
}

static void check_vm(struct gvm_vm *vm)
{
	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->pt_lock);
	ASSERT_OK(gvm__pt_validate(&vm->pt));
	ASSERT_OK(gvm__va_validate(&vm->va));
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
}

static struct gvm_vm_stats stats(struct gvm_vm *vm)
{
	struct gvm_vm_stats st;

	ASSERT_OK(gvm_vm_stats(vm, &st));
	return st;
}

static uint64_t nr_vmas(struct gvm_vm *vm)
{
	return stats(vm).vmas;
}

/* VMAs of @vm mapping @bo (from the VA tree). */
static uint64_t vmas_of(struct gvm_vm *vm, struct gvm_bo *bo)
{
	struct gvm_va_iter it;
	struct gvm_va *va;
	uint64_t n = 0;

	gvm__mutex_lock(&vm->lock);
	gvm_va_for_each_in_range(va, &vm->va, vm->va.start, vm->va.range, &it)
		n += va->obj == bo;
	gvm__mutex_unlock(&vm->lock);
	return n;
}

/*
 * A queued bind drops the references of the VMAs it removed when the
 * scheduler frees the job, just after its fence signalled: wait for that.
 */
static void wait_refs(struct gvm_vm *vm, struct gvm_bo *bo)
{
	for (int i = 0; bo_refs(bo) != 1 + vmas_of(vm, bo); i++) {
		ASSERT_LT(i, 100000);
		gvm_test_sleep_ns(100000);
	}
}

/* Every page's translation in a few windows, and the VMA count. */
#define SNAP_WINDOWS 4
struct snap {
	uint64_t vmas, pt_pages;
	size_t nr;
	uint64_t base[SNAP_WINDOWS], len[SNAP_WINDOWS];
	uint64_t *pte[SNAP_WINDOWS];
};

static void snap_take(struct gvm_vm *vm, struct snap *s)
{
	struct gvm_vm_stats st = stats(vm);

	s->vmas = st.vmas;
	s->pt_pages = st.pt_pages;
	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->pt_lock);
	for (size_t w = 0; w < s->nr; w++) {
		uint64_t n = s->len[w] / K4;

		if (!s->pte[w])
			s->pte[w] = calloc(n, sizeof(uint64_t));
		ASSERT_TRUE(s->pte[w]);
		for (uint64_t i = 0; i < n; i++) {
			struct gvm_pt_xlate x;

			s->pte[w][i] = gvm__pt_translate(&vm->pt,
							 s->base[w] + i * K4,
							 GVM_PT_VIEW_COMMITTED,
							 &x) ? 0 : x.pte ^ x.addr;
		}
	}
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
}

static void snap_add(struct snap *s, uint64_t base, uint64_t len)
{
	ASSERT_LT(s->nr, SNAP_WINDOWS);
	s->base[s->nr] = base;
	s->len[s->nr++] = len;
}

static void snap_expect_same(struct gvm_vm *vm, const struct snap *s)
{
	struct snap now = *s;

	for (size_t w = 0; w < s->nr; w++)
		now.pte[w] = NULL;
	snap_take(vm, &now);
	ASSERT_EQ(now.vmas, s->vmas);
	ASSERT_EQ(now.pt_pages, s->pt_pages);
	for (size_t w = 0; w < s->nr; w++) {
		for (uint64_t i = 0; i < s->len[w] / K4; i++)
			if (now.pte[w][i] != s->pte[w][i])
				ASSERT_EQ(s->base[w] + i * K4, 0);
		free(now.pte[w]);
	}
	check_vm(vm);
}

static void snap_free(struct snap *s)
{
	for (size_t w = 0; w < s->nr; w++)
		free(s->pte[w]);
}

/* ---- binding helpers ------------------------------------------------------------ */

static struct gvm_bind_op op_map(uint64_t addr, uint64_t range,
				 struct gvm_bo *bo, uint64_t off)
{
	return (struct gvm_bind_op){ .op = GVM_BIND_MAP, .addr = addr,
				     .range = range, .bo = bo,
				     .bo_offset = off };
}

static struct gvm_bind_op op_null(uint64_t addr, uint64_t range)
{
	return (struct gvm_bind_op){ .op = GVM_BIND_MAP,
				     .flags = GVM_BIND_NULL, .addr = addr,
				     .range = range };
}

static struct gvm_bind_op op_unmap(uint64_t addr, uint64_t range)
{
	return (struct gvm_bind_op){ .op = GVM_BIND_UNMAP, .addr = addr,
				     .range = range };
}

static struct gvm_bind_op op_unmap_all(struct gvm_bo *bo)
{
	return (struct gvm_bind_op){ .op = GVM_BIND_UNMAP_ALL, .bo = bo };
}

static int bind_ops(struct gvm_vm *vm, const struct gvm_bind_op *ops,
		    uint32_t n)
{
	return gvm_vm_bind(vm, NULL, ops, n, NULL, 0);
}

static int map(struct gvm_vm *vm, uint64_t addr, uint64_t range,
	       struct gvm_bo *bo, uint64_t off)
{
	struct gvm_bind_op op = op_map(addr, range, bo, off);

	return bind_ops(vm, &op, 1);
}

static int unmap(struct gvm_vm *vm, uint64_t addr, uint64_t range)
{
	struct gvm_bind_op op = op_unmap(addr, range);

	return bind_ops(vm, &op, 1);
}

static int null_map(struct gvm_vm *vm, uint64_t addr, uint64_t range)
{
	struct gvm_bind_op op = op_null(addr, range);

	return bind_ops(vm, &op, 1);
}

static struct gvm_sync sync_wait(struct gvm_fence *f)
{
	return (struct gvm_sync){ .type = GVM_SYNC_FENCE, .fence = f };
}

static struct gvm_sync sync_out(struct gvm_fence **out)
{
	return (struct gvm_sync){ .type = GVM_SYNC_FENCE,
				  .flags = GVM_SYNC_SIGNAL, .out = out };
}

static struct gvm_sync sync_ufence(uint64_t *addr, uint64_t value)
{
	return (struct gvm_sync){ .type = GVM_SYNC_USER_FENCE,
				  .flags = GVM_SYNC_SIGNAL, .addr = addr,
				  .value = value };
}

static struct gvm_fence *new_fence(void)
{
	struct gvm_fence *f;

	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &f));
	return f;
}

/* Binds @ops on @q after @in (may be NULL); returns the out-fence. */
static struct gvm_fence *bind_async(struct gvm_vm *vm, struct gvm_queue *q,
				    const struct gvm_bind_op *ops, uint32_t n,
				    struct gvm_fence *in)
{
	struct gvm_fence *out = NULL;
	struct gvm_sync s[2] = { sync_out(&out), sync_wait(in) };

	ASSERT_OK(gvm_vm_bind(vm, q, ops, n, s, in ? 2 : 1));
	ASSERT_TRUE(out);
	return out;
}

static void fence_done(struct gvm_fence *f, int status)
{
	ASSERT_OK(gvm_fence_wait(f, INF));
	ASSERT_EQ(gvm_fence_get_status(f), status);
	gvm_fence_put(f);
}

/* ---- 1. validation ------------------------------------------------------------ */

/* A VM with a few mappings and a snapshot of it. */
#define VBASE (4 * G1)

static struct gvm_vm *validation_vm(struct gvm_bo *bo, struct snap *s)
{
	struct gvm_vm *vm = new_vm(0);

	ASSERT_OK(map(vm, VBASE, 4 * M2, bo, 0));
	ASSERT_OK(map(vm, VBASE + 6 * M2, 16 * K4, bo, 64 * K4));
	ASSERT_OK(null_map(vm, VBASE + 8 * M2, M2));
	memset(s, 0, sizeof(*s));
	snap_add(s, VBASE, 10 * M2);
	snap_take(vm, s);
	ASSERT_EQ(s->vmas, 3);
	return vm;
}

TEST(validate_ops)
{
	struct gvm_device *dev2 = testdev_create(0, 48);
	struct gvm_bo *bo, *bo2, *local_other;
	struct gvm_vm *vm, *other;
	struct snap s;
	uint64_t top = 1ull << 48;

	dev = testdev_create(0, 48);
	bo = new_bo(8 * M2, GVM_MEM_VRAM, NULL);
	ASSERT_OK(gvm_bo_create(dev2, M2, GVM_MEM_VRAM, NULL, &bo2));
	vm = validation_vm(bo, &s);
	other = new_vm(0);
	local_other = new_bo(M2, GVM_MEM_VRAM, other);

	struct gvm_bind_op bad[] = {
		{ .op = 0, .addr = VBASE, .range = K4, .bo = bo },
		{ .op = 99, .addr = VBASE, .range = K4, .bo = bo },
		{ .op = GVM_BIND_MAP, .flags = 1u << 10, .addr = VBASE,
		  .range = K4, .bo = bo },
		{ .op = GVM_BIND_UNMAP, .flags = 1u << 31, .addr = VBASE,
		  .range = K4 },
		/* misaligned addr, range, bo_offset */
		{ .op = GVM_BIND_MAP, .addr = VBASE + 1, .range = K4, .bo = bo },
		{ .op = GVM_BIND_MAP, .addr = VBASE + 2048, .range = K4,
		  .bo = bo },
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = K4 + 8, .bo = bo },
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = K4, .bo = bo,
		  .bo_offset = 512 },
		{ .op = GVM_BIND_UNMAP, .addr = VBASE + 4, .range = K4 },
		{ .op = GVM_BIND_UNMAP, .addr = VBASE, .range = 100 },
		/* range 0 */
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = 0, .bo = bo },
		{ .op = GVM_BIND_UNMAP, .addr = VBASE, .range = 0 },
		{ .op = GVM_BIND_MAP, .flags = GVM_BIND_NULL, .addr = VBASE },
		/* overflow, beyond the VA size */
		{ .op = GVM_BIND_UNMAP, .addr = ~0ull << 12, .range = 2 * K4 },
		{ .op = GVM_BIND_UNMAP, .addr = K4, .range = ~0ull << 12 },
		{ .op = GVM_BIND_MAP, .addr = ~0ull << 12, .range = 2 * K4,
		  .bo = bo },
		{ .op = GVM_BIND_UNMAP, .addr = top - K4, .range = 2 * K4 },
		{ .op = GVM_BIND_UNMAP, .addr = top, .range = K4 },
		{ .op = GVM_BIND_MAP, .flags = GVM_BIND_NULL, .addr = top - K4,
		  .range = 2 * K4 },
		{ .op = GVM_BIND_MAP, .addr = top - K4, .range = 2 * K4,
		  .bo = bo },
		/* bo_offset + range beyond the BO */
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = K4, .bo = bo,
		  .bo_offset = 8 * M2 },
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = 2 * K4, .bo = bo,
		  .bo_offset = 8 * M2 - K4 },
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = 8 * M2 + K4,
		  .bo = bo },
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = K4, .bo = bo,
		  .bo_offset = ~0ull << 12 },
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = 2 * K4, .bo = bo,
		  .bo_offset = (~0ull << 12) - 0 },
		/* BO of another device, VM-local BO of another VM, no BO */
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = K4, .bo = bo2 },
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = K4,
		  .bo = local_other },
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = K4 },
		{ .op = GVM_BIND_UNMAP_ALL, .bo = bo2 },
		{ .op = GVM_BIND_UNMAP_ALL, .bo = local_other },
		{ .op = GVM_BIND_UNMAP_ALL },
		{ .op = GVM_BIND_UNMAP_ALL, .bo = bo, .addr = VBASE },
		{ .op = GVM_BIND_UNMAP_ALL, .bo = bo, .range = K4 },
		{ .op = GVM_BIND_UNMAP_ALL, .bo = bo,
		  .flags = GVM_BIND_READONLY },
		/* NULL with a BO, UNMAP with a BO or flags */
		{ .op = GVM_BIND_MAP, .flags = GVM_BIND_NULL, .addr = VBASE,
		  .range = K4, .bo = bo },
		{ .op = GVM_BIND_MAP, .flags = GVM_BIND_NULL, .addr = VBASE,
		  .range = K4, .bo_offset = K4 },
		{ .op = GVM_BIND_UNMAP, .addr = VBASE, .range = K4, .bo = bo },
		{ .op = GVM_BIND_UNMAP, .flags = GVM_BIND_READONLY,
		  .addr = VBASE, .range = K4 },
		/* MIRROR outside fault mode */
		{ .op = GVM_BIND_MAP, .flags = GVM_BIND_CPU_ADDR_MIRROR,
		  .addr = VBASE, .range = K4 },
		/* PAT > 7 */
		{ .op = GVM_BIND_MAP, .addr = VBASE, .range = K4, .bo = bo,
		  .pat = 8 },
		{ .op = GVM_BIND_MAP, .flags = GVM_BIND_NULL, .addr = VBASE,
		  .range = K4, .pat = ~0u },
		/* userptr without an mm */
		{ .op = GVM_BIND_MAP_USERPTR, .addr = VBASE, .range = K4,
		  .userptr = 0x10000 },
		/* prefetch to nowhere */
		{ .op = GVM_BIND_PREFETCH, .addr = VBASE, .range = K4 },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gvm_bind_op arr[3] = {
			op_unmap(VBASE, M2), op_map(VBASE + 9 * M2, K4, bo, 0),
			bad[i]
		};

		if (gvm_vm_bind(vm, NULL, &bad[i], 1, NULL, 0) != -EINVAL)
			ASSERT_EQ(i, ~0ull);
		snap_expect_same(vm, &s);
		/* A bad op anywhere fails the whole array. */
		ASSERT_EQ(gvm_vm_bind(vm, NULL, arr, 3, NULL, 0), -EINVAL);
		snap_expect_same(vm, &s);
	}
	ASSERT_EQ(gvm_vm_bind(NULL, NULL, bad, 1, NULL, 0), -EINVAL);
	ASSERT_EQ(gvm_vm_bind(vm, NULL, NULL, 1, NULL, 0), -EINVAL);
	ASSERT_EQ(stats(vm).bind_errors, 0);	/* refused before parsing */
	ASSERT_EQ(bo_refs(bo), 1 + 2);
	ASSERT_EQ(bo_refs(bo2), 1);
	ASSERT_EQ(bo_refs(local_other), 1);

	/* The last valid pages of the VA space do work. */
	ASSERT_OK(null_map(vm, top - 2 * K4, 2 * K4));
	expect_null(vm, top - 2 * K4, 2 * K4);
	ASSERT_OK(unmap(vm, top - 2 * K4, 2 * K4));
	snap_expect_same(vm, &s);

	gvm_bo_put(local_other);
	gvm_bo_put(bo);
	gvm_bo_put(bo2);
	ASSERT_OK(gvm_vm_destroy(other));
	ASSERT_OK(gvm_vm_destroy(vm));
	snap_free(&s);
	gvm_device_put(dev2);
	all_done();
}

TEST(validate_va_bits_57)
{
	struct gvm_vm *vm;
	struct gvm_bo *bo;
	uint64_t top = 1ull << 57, hi = (1ull << 56) + 3 * G1;

	dev = testdev_create(0, 57);
	vm = new_vm(0);
	ASSERT_EQ(vm->pt.levels, 5);
	bo = new_bo(2 * M2, GVM_MEM_VRAM, NULL);
	ASSERT_EQ(map(vm, top - K4, 2 * K4, bo, 0), -EINVAL);
	ASSERT_EQ(map(vm, top, K4, bo, 0), -EINVAL);
	ASSERT_EQ(null_map(vm, top - G1, 2 * G1), -EINVAL);
	ASSERT_EQ(unmap(vm, ~0ull << 12, 2 * K4), -EINVAL);
	ASSERT_EQ(nr_vmas(vm), 0);
	ASSERT_EQ(stats(vm).pt_pages, 1);

	/* High addresses work: beyond 48 bits, up to the last page. */
	ASSERT_OK(map(vm, hi, 2 * M2, bo, 0));
	ASSERT_OK(map(vm, top - M2, M2, bo, M2));
	ASSERT_OK(map(vm, 1ull << 48, K4, bo, 5 * K4));
	expect_bo(vm, hi, 2 * M2, bo, 0, false, 0);
	expect_bo(vm, top - M2, M2, bo, M2, false, 0);
	expect_bo(vm, 1ull << 48, K4, bo, 5 * K4, false, 0);
	expect_none(vm, hi - M2, M2);
	expect_none(vm, (1ull << 48) - K4, K4);
	ASSERT_EQ(page_size_at(vm, hi), M2);
	check_vm(vm);
	/* The same low 48 bits in another 2^48 slice are another address. */
	expect_none(vm, hi & ((1ull << 48) - 1), K4);
	ASSERT_EQ(bo_refs(bo), 4);
	ASSERT_OK(unmap(vm, 1ull << 48, top - (1ull << 48)));
	ASSERT_EQ(nr_vmas(vm), 0);
	ASSERT_EQ(stats(vm).pt_pages, 1);
	ASSERT_EQ(bo_refs(bo), 1);
	check_vm(vm);
	gvm_bo_put(bo);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(validate_fault_mode_flags)
{
	struct gvm_vm *vm = new_vm(GVM_VM_LR_MODE | GVM_VM_FAULT_MODE);
	struct gvm_bind_op op = { .op = GVM_BIND_MAP,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR,
				  .addr = G1, .range = M2 };

	/* MIRROR needs an mm (GPU address == CPU address) and no BO */
	ASSERT_EQ(bind_ops(vm, &op, 1), -EINVAL);
	op.flags |= GVM_BIND_NULL;
	ASSERT_EQ(bind_ops(vm, &op, 1), -EINVAL);
	ASSERT_EQ(nr_vmas(vm), 0);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(validate_queues_and_syncs)
{
	struct gvm_vm *vm, *vm2, *evm;
	struct gvm_queue *q2, *eq, *ebq;
	struct gvm_bo *bo;
	struct gvm_fence *f = new_fence(), *out = NULL;
	struct gvm_syncobj *so;
	struct snap s;
	uint64_t ufv = 0, ufa[2];
	struct gvm_bind_op ok;

	dev = testdev_create(0, 48);
	bo = new_bo(8 * M2, GVM_MEM_VRAM, NULL);
	vm = validation_vm(bo, &s);
	vm2 = new_vm(0);
	ASSERT_OK(gvm_queue_create(vm2, GVM_ENGINE_BIND, &q2));
	ok = op_map(VBASE + 9 * M2, K4, bo, 0);

	/* A queue of another VM: -ENODEV. */
	ASSERT_EQ(gvm_vm_bind(vm, q2, &ok, 1, NULL, 0), -ENODEV);
	snap_expect_same(vm, &s);

	/* A queue that is not a bind queue: -EINVAL. */
	evm = new_vm(0);
	ASSERT_OK(gvm_queue_create(evm, GVM_ENGINE_COMPUTE, &eq));
	ASSERT_OK(gvm_queue_create(evm, GVM_ENGINE_BIND, &ebq));
	{
		struct gvm_bind_op nop = op_null(G1, M2);

		ASSERT_EQ(gvm_vm_bind(evm, eq, &nop, 1, NULL, 0), -EINVAL);
		ASSERT_EQ(stats(evm).vmas, 0);
		ASSERT_OK(gvm_vm_bind(evm, ebq, &nop, 1, NULL, 0));
		ASSERT_EQ(stats(evm).vmas, 1);
	}
	gvm_queue_destroy(eq);
	gvm_queue_destroy(ebq);
	ASSERT_OK(gvm_vm_destroy(evm));

	/* Bad syncs. */
	ASSERT_OK(gvm_syncobj_create(&so));
	struct gvm_sync bad[] = {
		/* a user fence as a wait */
		{ .type = GVM_SYNC_USER_FENCE, .addr = &ufv, .value = 1 },
		/* unaligned user fence */
		{ .type = GVM_SYNC_USER_FENCE, .flags = GVM_SYNC_SIGNAL,
		  .addr = (uint64_t *)((char *)ufa + 4), .value = 1 },
		{ .type = GVM_SYNC_USER_FENCE, .flags = GVM_SYNC_SIGNAL,
		  .value = 1 },
		/* unknown type, unknown flags */
		{ .type = 0, .fence = f },
		{ .type = 77, .flags = GVM_SYNC_SIGNAL, .out = &out },
		{ .type = GVM_SYNC_FENCE, .flags = 2, .fence = f },
		/* missing pointers */
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL },
		{ .type = GVM_SYNC_SYNCOBJ },
		{ .type = GVM_SYNC_SYNCOBJ, .flags = GVM_SYNC_SIGNAL },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* Good syncs around the bad one: none may take effect. */
		struct gvm_sync arr[4] = {
			sync_wait(f), sync_out(&out), bad[i],
			{ .type = GVM_SYNC_SYNCOBJ, .flags = GVM_SYNC_SIGNAL,
			  .syncobj = so },
		};
		struct gvm_fence *sf;

		if (gvm_vm_bind(vm, NULL, &ok, 1, &bad[i], 1) != -EINVAL)
			ASSERT_EQ(i, ~0ull);
		if (gvm_vm_bind(vm, NULL, &ok, 1, arr, 4) != -EINVAL)
			ASSERT_EQ(i, ~0ull);
		snap_expect_same(vm, &s);
		ASSERT_TRUE(out == NULL);
		ASSERT_EQ(gvm_syncobj_fence(so, &sf), -ENOENT);
		ASSERT_EQ(fence_refs(f), 1);	/* no reference kept */
		ASSERT_EQ(ufv, 0);
	}
	ASSERT_EQ(gvm_vm_bind(vm, NULL, &ok, 1, NULL, 1), -EINVAL);
	/* An empty array checks its syncs too. */
	ASSERT_EQ(gvm_vm_bind(vm, NULL, NULL, 0, bad, 1), -EINVAL);
	snap_expect_same(vm, &s);
	ASSERT_EQ(fence_refs(f), 1);

	gvm_syncobj_destroy(so);
	gvm_fence_signal(f);
	gvm_fence_put(f);
	gvm_queue_destroy(q2);
	ASSERT_OK(gvm_vm_destroy(vm2));
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_bo_put(bo);
	snap_free(&s);
	all_done();
}

TEST(validate_destroyed_and_busy_vm)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_queue *q;

	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q));
	ASSERT_EQ(gvm_vm_destroy(vm), -EBUSY);	/* a queue is left */
	ASSERT_OK(null_map(vm, G1, M2));	/* still usable */
	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

/* ---- 2. split and merge through the page tables -------------------------------- */

#define SBASE (8 * G1)

TEST(split_exact_replace)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(4 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_bo *b = new_bo(4 * M2, GVM_MEM_SYSTEM, NULL);

	ASSERT_OK(map(vm, SBASE, 4 * M2, a, 0));
	expect_bo(vm, SBASE, 4 * M2, a, 0, false, 0);
	ASSERT_EQ(page_size_at(vm, SBASE), M2);
	ASSERT_EQ(bo_refs(a), 2);
	ASSERT_OK(map(vm, SBASE, 4 * M2, b, 0));
	expect_bo(vm, SBASE, 4 * M2, b, 0, false, 0);
	ASSERT_EQ(nr_vmas(vm), 1);
	ASSERT_EQ(bo_refs(a), 1);	/* the replaced VMA let go */
	ASSERT_EQ(bo_refs(b), 2);
	/* Replace with itself at another offset, then with NULL. */
	ASSERT_OK(map(vm, SBASE, 2 * M2, b, 2 * M2));
	expect_bo(vm, SBASE, 2 * M2, b, 2 * M2, false, 0);
	expect_bo(vm, SBASE + 2 * M2, 2 * M2, b, 2 * M2, false, 0);
	ASSERT_EQ(nr_vmas(vm), 2);
	ASSERT_OK(null_map(vm, SBASE, 4 * M2));
	expect_null(vm, SBASE, 4 * M2);
	ASSERT_EQ(nr_vmas(vm), 1);
	ASSERT_EQ(bo_refs(b), 1);
	check_vm(vm);
	ASSERT_OK(unmap(vm, SBASE, 4 * M2));
	ASSERT_EQ(stats(vm).pt_pages, 1);
	gvm_bo_put(a);
	gvm_bo_put(b);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(split_front_back_middle)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(4 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_bo *b = new_bo(M2, GVM_MEM_VRAM, NULL);
	uint64_t x = SBASE + 64 * K4;	/* not 2M aligned */
	struct gvm_pt_xlate before[64], after;

	ASSERT_OK(map(vm, x, 64 * K4, a, 0));
	for (int i = 0; i < 64; i++)
		ASSERT_OK(xl(vm, x + (uint64_t)i * K4, &before[i]));

	/* front: [x, x + 8) -> b; survivor [x + 8, x + 64) */
	ASSERT_OK(map(vm, x - 4 * K4, 12 * K4, b, 0));
	expect_bo(vm, x - 4 * K4, 12 * K4, b, 0, false, 0);
	/* back: [x + 56, x + 70) -> b */
	ASSERT_OK(map(vm, x + 56 * K4, 14 * K4, b, 100 * K4));
	expect_bo(vm, x + 56 * K4, 14 * K4, b, 100 * K4, false, 0);
	/* middle: [x + 30, x + 34) -> NULL */
	ASSERT_OK(null_map(vm, x + 30 * K4, 4 * K4));
	expect_null(vm, x + 30 * K4, 4 * K4);
	ASSERT_EQ(nr_vmas(vm), 5);	/* b, a, NULL, a, b */
	/* The survivors kept their device addresses. */
	for (int i = 8; i < 56; i++) {
		if (i >= 30 && i < 34)
			continue;
		ASSERT_OK(xl(vm, x + (uint64_t)i * K4, &after));
		ASSERT_EQ(after.addr, before[i].addr);
		ASSERT_EQ(after.addr, bo_addr(a, (uint64_t)i * K4));
	}
	ASSERT_EQ(bo_refs(a), 3);
	ASSERT_EQ(bo_refs(b), 3);
	check_vm(vm);

	/* unmap a middle piece of a survivor, and holes around everything */
	ASSERT_OK(unmap(vm, x + 10 * K4, 2 * K4));
	expect_none(vm, x + 10 * K4, 2 * K4);
	expect_bo(vm, x + 8 * K4, 2 * K4, a, 8 * K4, false, 0);
	expect_bo(vm, x + 12 * K4, 18 * K4, a, 12 * K4, false, 0);
	ASSERT_EQ(nr_vmas(vm), 6);
	ASSERT_OK(unmap(vm, x + 10 * K4, 2 * K4));	/* a hole: no-op */
	ASSERT_OK(unmap(vm, SBASE - G1, G1));		/* a hole */
	ASSERT_EQ(nr_vmas(vm), 6);
	check_vm(vm);
	ASSERT_OK(unmap(vm, SBASE, M2));
	expect_none(vm, SBASE, M2);
	ASSERT_EQ(nr_vmas(vm), 0);
	ASSERT_EQ(stats(vm).pt_pages, 1);
	ASSERT_EQ(bo_refs(a), 1);
	ASSERT_EQ(bo_refs(b), 1);
	gvm_bo_put(a);
	gvm_bo_put(b);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(split_span_with_holes_and_adjacent)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(4 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_bo *b = new_bo(8 * M2, GVM_MEM_VRAM, NULL);

	/* Adjacent maps stay separate VMAs with their own backing. */
	ASSERT_OK(map(vm, SBASE, M2, a, 0));
	ASSERT_OK(map(vm, SBASE + M2, M2, a, 2 * M2));
	ASSERT_OK(null_map(vm, SBASE + 2 * M2, M2));
	ASSERT_OK(map(vm, SBASE + 4 * M2, M2, a, M2));	/* hole before */
	ASSERT_OK(map(vm, SBASE + 6 * M2, 16 * K4, a, 0));
	ASSERT_EQ(nr_vmas(vm), 5);
	expect_bo(vm, SBASE, M2, a, 0, false, 0);
	expect_bo(vm, SBASE + M2, M2, a, 2 * M2, false, 0);
	expect_null(vm, SBASE + 2 * M2, M2);
	expect_none(vm, SBASE + 3 * M2, M2);
	expect_bo(vm, SBASE + 4 * M2, M2, a, M2, false, 0);
	expect_none(vm, SBASE + 5 * M2, M2);
	ASSERT_EQ(bo_refs(a), 5);

	/* One map over all of them, cutting the first and last. */
	ASSERT_OK(map(vm, SBASE + 4 * K4, 6 * M2 + 4 * K4, b, 0));
	ASSERT_EQ(nr_vmas(vm), 3);
	expect_bo(vm, SBASE, 4 * K4, a, 0, false, 0);
	expect_bo(vm, SBASE + 4 * K4, 6 * M2 + 4 * K4, b, 0, false, 0);
	expect_bo(vm, SBASE + 6 * M2 + 8 * K4, 8 * K4, a, 8 * K4, false, 0);
	ASSERT_EQ(bo_refs(a), 3);
	check_vm(vm);

	/* An unmap over holes and mappings. */
	ASSERT_OK(unmap(vm, SBASE - M2, 5 * M2));
	expect_none(vm, SBASE, 4 * M2);
	expect_bo(vm, SBASE + 4 * M2, 2 * M2 + 4 * K4, b,
		  4 * M2 - 4 * K4, false, 0);
	ASSERT_EQ(nr_vmas(vm), 2);
	ASSERT_EQ(bo_refs(a), 2);
	ASSERT_OK(unmap(vm, SBASE, G1));
	ASSERT_EQ(nr_vmas(vm), 0);
	ASSERT_EQ(stats(vm).pt_pages, 1);
	check_vm(vm);
	gvm_bo_put(a);
	gvm_bo_put(b);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(split_2m_leaf)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(8 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_bo *b = new_bo(M2, GVM_MEM_SYSTEM, NULL);
	uint64_t x = SBASE;

	ASSERT_EQ(a->mem.nr_ext, 1);
	ASSERT_EQ(bo_addr(a, 0) % M2, 0);
	ASSERT_OK(map(vm, x, 8 * M2, a, 0));
	for (uint64_t o = 0; o < 8 * M2; o += M2)
		ASSERT_EQ(page_size_at(vm, x + o), M2);

	/* Rebind one page in the middle of the third 2M leaf. */
	ASSERT_OK(map(vm, x + 2 * M2 + 100 * K4, K4, b, 0));
	expect_bo(vm, x + 2 * M2 + 100 * K4, K4, b, 0, false, 0);
	expect_bo(vm, x, 2 * M2 + 100 * K4, a, 0, false, 0);
	expect_bo(vm, x + 2 * M2 + 101 * K4, 6 * M2 - 101 * K4, a,
		  2 * M2 + 101 * K4, false, 0);
	ASSERT_EQ(page_size_at(vm, x + M2), M2);	/* neighbours intact */
	ASSERT_EQ(page_size_at(vm, x + 3 * M2), M2);
	ASSERT_EQ(page_size_at(vm, x + 2 * M2 + 100 * K4), K4);
	ASSERT_EQ(page_size_at(vm, x + 2 * M2 + 101 * K4), K4);
	/* The split leaf keeps 64K pages where it can. */
	ASSERT_EQ(page_size_at(vm, x + 2 * M2), K64);
	ASSERT_EQ(page_size_at(vm, x + 2 * M2 + 96 * K4), K4);
	ASSERT_EQ(page_size_at(vm, x + 2 * M2 + 112 * K4), K64);
	ASSERT_EQ(page_size_at(vm, x + 3 * M2 - K4), K64);
	check_vm(vm);
	ASSERT_EQ(nr_vmas(vm), 3);

	/* Rebinding all of it with the original gives 2M pages back. */
	ASSERT_OK(map(vm, x + 2 * M2, M2 * 2, a, 2 * M2));
	ASSERT_EQ(page_size_at(vm, x + 2 * M2 + 100 * K4), M2);
	expect_bo(vm, x, 8 * M2, a, 0, false, 0);

	/* Unmap one page: the leaf splits, the rest stays mapped. */
	ASSERT_OK(unmap(vm, x + 5 * M2 + M1, K4));
	expect_none(vm, x + 5 * M2 + M1, K4);
	expect_bo(vm, x + 5 * M2, M1, a, 5 * M2, false, 0);
	expect_bo(vm, x + 5 * M2 + M1 + K4, M1 - K4, a, 5 * M2 + M1 + K4,
		  false, 0);
	check_vm(vm);
	ASSERT_OK(unmap(vm, x, 8 * M2));
	ASSERT_EQ(stats(vm).pt_pages, 1);
	ASSERT_EQ(bo_refs(a), 1);
	gvm_bo_put(a);
	gvm_bo_put(b);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(split_1g_leaf)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *b = new_bo(4 * M2, GVM_MEM_VRAM, NULL);
	uint64_t x = 16 * G1;

	ASSERT_OK(null_map(vm, x, 2 * G1));
	ASSERT_EQ(page_size_at(vm, x), G1);
	ASSERT_EQ(page_size_at(vm, x + G1 + 5 * M2), G1);
	ASSERT_EQ(stats(vm).pt_pages, 2);	/* the root, one L2 */

	/* Rebind 2M + 4K in the second 1G: it splits down to 4K. */
	ASSERT_OK(map(vm, x + G1 + 10 * M2, M2 + K4, b, 0));
	expect_bo(vm, x + G1 + 10 * M2, M2 + K4, b, 0, false, 0);
	ASSERT_EQ(page_size_at(vm, x + G1 + 10 * M2), M2);
	ASSERT_EQ(page_size_at(vm, x + G1 + 11 * M2), K4);
	ASSERT_EQ(page_size_at(vm, x), G1);
	ASSERT_EQ(page_size_at(vm, x + G1), M2);
	ASSERT_EQ(page_size_at(vm, x + 2 * G1 - M2), M2);
	expect_null(vm, x, G1 + 10 * M2);
	expect_null(vm, x + G1 + 11 * M2 + K4, G1 - 11 * M2 - K4);
	expect_none(vm, x + 2 * G1, M2);
	ASSERT_EQ(nr_vmas(vm), 3);
	check_vm(vm);

	/* A NULL rebind over the hole gives the 1G leaf back. */
	ASSERT_OK(null_map(vm, x + G1, G1));
	ASSERT_EQ(page_size_at(vm, x + G1 + 11 * M2), G1);
	ASSERT_EQ(stats(vm).pt_pages, 2);
	ASSERT_EQ(bo_refs(b), 1);
	ASSERT_OK(unmap(vm, x, 2 * G1));
	ASSERT_EQ(stats(vm).pt_pages, 1);
	check_vm(vm);
	gvm_bo_put(b);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(mixed_page_sizes_in_one_vma)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(8 * M2, GVM_MEM_VRAM, NULL);
	uint64_t x = SBASE, off = 0x1f000, len = 8 * M2 - off - 0x11000;
	uint64_t n = 32 * G1 - M2 - K64 - K4;	/* NULL: 4K 64K 2M 1G ... */
	uint64_t nlen = G1 + 2 * (M2 + K64 + K4);

	ASSERT_EQ(a->mem.nr_ext, 1);
	/* VA and backing agree modulo 2M, start and end misaligned. */
	ASSERT_OK(map(vm, x + off, len, a, off));
	expect_bo(vm, x + off, len, a, off, false, 0);
	ASSERT_EQ(page_size_at(vm, x + off), K4);
	ASSERT_EQ(page_size_at(vm, x + 0x20000), K64);
	ASSERT_EQ(page_size_at(vm, x + M2 - K4), K64);
	ASSERT_EQ(page_size_at(vm, x + M2), M2);
	ASSERT_EQ(page_size_at(vm, x + 7 * M2 - K4), M2);
	ASSERT_EQ(page_size_at(vm, x + 7 * M2), K64);
	ASSERT_EQ(page_size_at(vm, x + off + len - K4), K4);
	ASSERT_EQ(nr_vmas(vm), 1);

	/* NULL: no memory, so no 64K hint, but 2M and 1G leaves. */
	ASSERT_OK(null_map(vm, n, nlen));
	expect_null(vm, n, nlen);
	ASSERT_EQ(page_size_at(vm, n), K4);
	ASSERT_EQ(page_size_at(vm, n + K4), K4);
	ASSERT_EQ(page_size_at(vm, n + K4 + K64), M2);
	ASSERT_EQ(page_size_at(vm, 32 * G1), G1);
	ASSERT_EQ(page_size_at(vm, 33 * G1), M2);
	ASSERT_EQ(page_size_at(vm, 33 * G1 + M2), K4);
	ASSERT_EQ(page_size_at(vm, n + nlen - K4), K4);
	expect_none(vm, n - K4, K4);
	expect_none(vm, n + nlen, K4);
	check_vm(vm);
	ASSERT_OK(unmap(vm, x, n + nlen - x));
	ASSERT_EQ(stats(vm).pt_pages, 1);
	gvm_bo_put(a);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(shared_tables_survive_neighbours)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(M2, GVM_MEM_VRAM, NULL);
	/* Neighbours sharing a table at level 0, 1, 2 and 3 (the root). */
	uint64_t base = 3ull << 39;
	uint64_t va[] = {
		base, base + 16 * K4,		/* same L0 table */
		base + M2,			/* same L1 table */
		base + G1,			/* same L2 table */
		base + (1ull << 39),		/* same root only */
	};
	int n = 5;

	for (int i = 0; i < n; i++)
		ASSERT_OK(map(vm, va[i], 8 * K4, a, (uint64_t)i * 8 * K4));
	/* root + L2 x2 + L1 x3 + L0 x4 */
	ASSERT_EQ(stats(vm).pt_pages, 1 + 2 + 3 + 4);
	check_vm(vm);
	/* Unbind each in turn, the others keep their translations. */
	for (int i = 0; i < n; i++) {
		ASSERT_OK(unmap(vm, va[i], 8 * K4));
		expect_none(vm, va[i], 8 * K4);
		for (int j = i + 1; j < n; j++)
			expect_bo(vm, va[j], 8 * K4, a, (uint64_t)j * 8 * K4,
				  false, 0);
		check_vm(vm);
	}
	ASSERT_EQ(stats(vm).pt_pages, 1);

	/* Reverse order, and empty tables are freed as they empty. */
	for (int i = 0; i < n; i++)
		ASSERT_OK(map(vm, va[i], 8 * K4, a, 0));
	ASSERT_OK(unmap(vm, va[4], 8 * K4));
	ASSERT_EQ(stats(vm).pt_pages, 1 + 1 + 2 + 3);
	ASSERT_OK(unmap(vm, va[3], 8 * K4));
	ASSERT_EQ(stats(vm).pt_pages, 1 + 1 + 1 + 2);
	ASSERT_OK(unmap(vm, va[2], 8 * K4));
	ASSERT_EQ(stats(vm).pt_pages, 1 + 1 + 1 + 1);
	ASSERT_OK(unmap(vm, va[1], 8 * K4));
	ASSERT_EQ(stats(vm).pt_pages, 1 + 1 + 1 + 1);
	expect_bo(vm, va[0], 8 * K4, a, 0, false, 0);
	ASSERT_OK(unmap(vm, va[0], 8 * K4));
	ASSERT_EQ(stats(vm).pt_pages, 1);
	ASSERT_EQ(bo_refs(a), 1);
	gvm_bo_put(a);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(one_bo_many_mappings_many_vms)
{
	struct gvm_vm *vm[3];
	struct gvm_bo *a = new_bo(4 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_bo *s = new_bo(M2, GVM_MEM_SYSTEM, NULL);
	struct gvm_bind_op ua = op_unmap_all(a);
	uint64_t *p;

	for (int v = 0; v < 3; v++) {
		vm[v] = new_vm(0);
		for (int i = 0; i < 8; i++) {
			uint64_t va = SBASE + (uint64_t)i * G1 + (uint64_t)v * M2;

			ASSERT_OK(map(vm[v], va, M2, a, (uint64_t)(i % 4) * M2));
			ASSERT_OK(map(vm[v], va + 4 * M2, M2, s, 0));
		}
	}
	ASSERT_EQ(bo_refs(a), 1 + 24);
	ASSERT_EQ(bo_refs(s), 1 + 24);
	/* Every mapping reaches the same memory. */
	for (int v = 0; v < 3; v++)
		for (int i = 0; i < 8; i++) {
			uint64_t va = SBASE + (uint64_t)i * G1 + (uint64_t)v * M2;

			expect_bo(vm[v], va, M2, a, (uint64_t)(i % 4) * M2,
				  false, 0);
			expect_bo(vm[v], va + 4 * M2, M2, s, 0, false, 0);
		}
	ASSERT_OK(gvm_bo_map(s, (void **)&p));
	{
		struct gvm_pt_xlate x;

		/* The device's address and the CPU view are the same page. */
		ASSERT_OK(xl(vm[2], SBASE + 5 * G1 + 2 * M2 + 4 * M2 + 8, &x));
		p[1] = 0x5eed;
		ASSERT_EQ(*(volatile uint64_t *)(uintptr_t)x.addr, 0x5eed);
	}

	/* UNMAP_ALL in one VM leaves the others alone. */
	ASSERT_OK(bind_ops(vm[1], &ua, 1));
	ASSERT_EQ(bo_refs(a), 1 + 16);
	ASSERT_EQ(nr_vmas(vm[1]), 8);
	ASSERT_EQ(vmas_of(vm[1], a), 0);
	expect_none(vm[1], SBASE + M2, M2);
	expect_bo(vm[1], SBASE + M2 + 4 * M2, M2, s, 0, false, 0);
	expect_bo(vm[0], SBASE, M2, a, 0, false, 0);
	ASSERT_OK(bind_ops(vm[1], &ua, 1));	/* nothing left: fine */
	check_vm(vm[1]);

	/* The BO outlives the user's reference while mapped. */
	gvm_bo_put(a);
	expect_bo(vm[2], SBASE + 3 * G1 + 2 * M2, M2, a, 3 * M2, false, 0);
	for (int v = 0; v < 3; v++)
		ASSERT_OK(gvm_vm_destroy(vm[v]));
	ASSERT_EQ(bo_refs(s), 1);
	gvm_bo_put(s);
	all_done();
}

TEST(null_readonly_pat_entries)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(4 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_bo *s = new_bo(M2, GVM_MEM_SYSTEM, NULL);
	struct gvm_bo *l = new_bo(M2, GVM_MEM_VRAM, vm);
	struct gvm_bind_op ops[] = {
		{ .op = GVM_BIND_MAP, .flags = GVM_BIND_READONLY,
		  .addr = SBASE, .range = 2 * M2, .bo = a, .pat = 3 },
		{ .op = GVM_BIND_MAP, .flags = GVM_BIND_NULL | GVM_BIND_READONLY,
		  .addr = SBASE + 2 * M2, .range = M2, .pat = 5 },
		{ .op = GVM_BIND_MAP, .addr = SBASE + 3 * M2, .range = M2,
		  .bo = s, .pat = 7 },
		{ .op = GVM_BIND_MAP, .flags = GVM_BIND_IMMEDIATE,
		  .addr = SBASE + 4 * M2, .range = M2, .bo = l, .pat = 1 },
	};
	struct gvm_pt_xlate x;

	ASSERT_OK(bind_ops(vm, ops, 4));
	expect_bo(vm, SBASE, 2 * M2, a, 0, true, 3);
	expect_bo(vm, SBASE + 3 * M2, M2, s, 0, false, 7);
	expect_bo(vm, SBASE + 4 * M2, M2, l, 0, false, 1);
	ASSERT_OK(xl(vm, SBASE + 2 * M2 + 5 * K4, &x));
	ASSERT_TRUE(gvm__ptf_is_null(x.pte));
	ASSERT_FALSE(x.pte & GVM_PTF_WRITE);
	ASSERT_EQ(pte_pat(x.pte), 5);
	ASSERT_OK(xl(vm, SBASE + 5, &x));
	ASSERT_TRUE(x.pte & GVM_PTF_DEVMEM);
	ASSERT_OK(xl(vm, SBASE + 3 * M2, &x));
	ASSERT_FALSE(x.pte & GVM_PTF_DEVMEM);

	/* Split pieces inherit READONLY and PAT. */
	ASSERT_OK(unmap(vm, SBASE + M2 - K4, 2 * K4));
	ASSERT_OK(unmap(vm, SBASE + 2 * M2 + 16 * K4, K4));
	expect_bo(vm, SBASE, M2 - K4, a, 0, true, 3);
	expect_bo(vm, SBASE + M2 + K4, M2 - K4, a, M2 + K4, true, 3);
	ASSERT_OK(xl(vm, SBASE + 2 * M2 + 17 * K4, &x));
	ASSERT_TRUE(gvm__ptf_is_null(x.pte));
	ASSERT_EQ(pte_pat(x.pte), 5);
	ASSERT_FALSE(x.pte & GVM_PTF_WRITE);
	ASSERT_EQ(nr_vmas(vm), 6);
	check_vm(vm);
	ASSERT_OK(unmap(vm, SBASE, 8 * M2));
	ASSERT_EQ(stats(vm).pt_pages, 1);
	gvm_bo_put(a);
	gvm_bo_put(s);
	gvm_bo_put(l);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

/* ---- 3. arrays and error injection --------------------------------------------- */

TEST(array_later_ops_see_earlier)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(4 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_bo *b = new_bo(4 * M2, GVM_MEM_SYSTEM, NULL);
	struct gvm_bind_op ops[6];

	/* MAP, then UNMAP part of it. */
	ops[0] = op_map(SBASE, 2 * M2, a, 0);
	ops[1] = op_unmap(SBASE + M2, 4 * K4);
	ASSERT_OK(bind_ops(vm, ops, 2));
	expect_bo(vm, SBASE, M2, a, 0, false, 0);
	expect_none(vm, SBASE + M2, 4 * K4);
	expect_bo(vm, SBASE + M2 + 4 * K4, M2 - 4 * K4, a, M2 + 4 * K4,
		  false, 0);
	ASSERT_EQ(nr_vmas(vm), 2);
	ASSERT_EQ(stats(vm).bind_ops, 2);

	/* MAP over MAP over MAP; the last wins where they overlap. */
	ops[0] = op_map(SBASE + 4 * M2, 2 * M2, a, 0);
	ops[1] = op_map(SBASE + 4 * M2 + K64, M2, b, 0);
	ops[2] = op_null(SBASE + 4 * M2 + 2 * K64, K64);
	ASSERT_OK(bind_ops(vm, ops, 3));
	expect_bo(vm, SBASE + 4 * M2, K64, a, 0, false, 0);
	expect_bo(vm, SBASE + 4 * M2 + K64, K64, b, 0, false, 0);
	expect_null(vm, SBASE + 4 * M2 + 2 * K64, K64);
	expect_bo(vm, SBASE + 4 * M2 + 3 * K64, M2 - 2 * K64, b, 2 * K64,
		  false, 0);
	expect_bo(vm, SBASE + 5 * M2 + K64, M2 - K64, a, M2 + K64, false, 0);
	ASSERT_EQ(nr_vmas(vm), 2 + 5);

	/* MAP a BO at several places and UNMAP_ALL it in the same array. */
	ops[0] = op_map(SBASE + 8 * M2, M2, b, 0);
	ops[1] = op_map(SBASE + 10 * M2, M2, b, M2);
	ops[2] = op_map(SBASE + 12 * M2, 4 * K4, a, 0);
	ops[3] = op_unmap_all(b);
	ops[4] = op_map(SBASE + 14 * M2, M2, b, 2 * M2);
	ASSERT_OK(bind_ops(vm, ops, 5));
	expect_none(vm, SBASE + 8 * M2, 4 * M2);
	expect_none(vm, SBASE + 4 * M2 + K64, K64);	/* the older b too */
	expect_bo(vm, SBASE + 12 * M2, 4 * K4, a, 0, false, 0);
	expect_bo(vm, SBASE + 14 * M2, M2, b, 2 * M2, false, 0);
	ASSERT_EQ(vmas_of(vm, b), 1);
	ASSERT_EQ(bo_refs(b), 2);
	ASSERT_EQ(bo_refs(a), 1 + vmas_of(vm, a));

	/* MAP then UNMAP all of it: nothing, and no table left behind. */
	ASSERT_OK(unmap(vm, SBASE, 16 * M2));
	ops[0] = op_map(40 * G1, M2, a, 0);
	ops[1] = op_null(41 * G1, M2);
	ops[2] = op_unmap(40 * G1, 2 * G1);
	ASSERT_OK(bind_ops(vm, ops, 3));
	ASSERT_EQ(nr_vmas(vm), 0);
	ASSERT_EQ(stats(vm).pt_pages, 1);
	ASSERT_EQ(bo_refs(a), 1);
	ASSERT_EQ(bo_refs(b), 1);
	check_vm(vm);
	gvm_bo_put(a);
	gvm_bo_put(b);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

static void inject_arm(enum gvm_bind_stage stage, int countdown, int error)
{
	gvm__bind_inject.error = error;
	__atomic_store_n(&gvm__bind_inject.countdown, countdown,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&gvm__bind_inject.stage, (int)stage,
			 __ATOMIC_RELEASE);
}

static bool inject_fired(void)
{
	bool f = __atomic_load_n(&gvm__bind_inject.stage, __ATOMIC_ACQUIRE) ==
		 GVM_BIND_STAGE_NONE;

	__atomic_store_n(&gvm__bind_inject.stage, GVM_BIND_STAGE_NONE,
			 __ATOMIC_RELEASE);
	return f;
}

/* One random bind array over [IBASE, IBASE + 16M) with BOs @bos. */
#define IBASE (20 * G1 - 8 * M2)
#define IWIN (16 * M2)

static uint32_t random_ops(struct gvm_rng *r, struct gvm_bo **bos, int nbos,
			   struct gvm_bind_op *ops)
{
	uint32_t n = 1 + (uint32_t)gvm_rng_below(r, 6);
	static const uint64_t aligns[] = { K4, K64, M2 };

	for (uint32_t i = 0; i < n; i++) {
		uint64_t al = aligns[gvm_rng_below(r, 3)];
		uint64_t addr = IBASE + gvm_rng_below(r, IWIN / al) * al;
		uint64_t len = al == M2 ? M2 * (1 + gvm_rng_below(r, 2))
					: al * (1 + gvm_rng_below(r, 40));
		struct gvm_bo *bo = bos[gvm_rng_below(r, (uint64_t)nbos)];
		uint32_t kind = (uint32_t)gvm_rng_below(r, 10);

		if (addr + len > IBASE + IWIN)
			len = IBASE + IWIN - addr;
		if (len > bo->size)
			len = bo->size;
		memset(&ops[i], 0, sizeof(ops[i]));
		ops[i].addr = addr;
		ops[i].range = len;
		ops[i].pat = (uint32_t)gvm_rng_below(r, 8);
		if (gvm_rng_below(r, 4) == 0)
			ops[i].flags |= GVM_BIND_READONLY;
		if (kind < 5) {
			uint64_t slots = (bo->size - len) / al + 1;

			ops[i].op = GVM_BIND_MAP;
			ops[i].bo = bo;
			ops[i].bo_offset = gvm_rng_below(r, slots) * al;
			if (ops[i].bo_offset + len > bo->size)
				ops[i].bo_offset = 0;
		} else if (kind < 7) {
			ops[i].op = GVM_BIND_MAP;
			ops[i].flags |= GVM_BIND_NULL;
		} else if (kind < 9) {
			ops[i].op = GVM_BIND_UNMAP;
			ops[i].flags = 0;
			ops[i].pat = 0;
		} else {
			ops[i] = op_unmap_all(bo);
		}
	}
	return n;
}

TEST(inject_each_stage_restores)
{
	static const enum gvm_bind_stage stages[] = {
		GVM_BIND_STAGE_LOCK, GVM_BIND_STAGE_PREPARE, GVM_BIND_STAGE_RUN
	};
	struct gvm_rng r = { gvm_test_seed() };
	int rounds = (int)gvm_test_scale(24);

	dev = testdev_create(0, 48);
	for (int round = 0; round < rounds; round++) {
		struct gvm_vm *vm = new_vm(0);
		struct gvm_bo *bos[3] = {
			new_bo(4 * M2, GVM_MEM_VRAM, NULL),
			new_bo(M2 + 3 * K64, GVM_MEM_SYSTEM, NULL),
			new_bo(2 * M2, GVM_MEM_VRAM, vm),
		};
		enum gvm_bind_stage stage = stages[round % 3];
		int k = (int)gvm_rng_below(&r, 12), fired = 0;

		for (int i = 0; i < 16; i++) {
			struct gvm_bind_op ops[6];
			uint32_t n = random_ops(&r, bos, 3, ops);
			uint32_t refs[3];
			struct snap s = { 0 };
			int err;

			snap_add(&s, IBASE, IWIN);
			snap_take(vm, &s);
			for (int j = 0; j < 3; j++)
				refs[j] = bo_refs(bos[j]);
			if (i == k)
				inject_arm(stage, 0, -ENOSPC);
			err = bind_ops(vm, ops, n);
			if (i == k && inject_fired()) {
				fired = 1;
				ASSERT_EQ(err, -ENOSPC);
				snap_expect_same(vm, &s);
				for (int j = 0; j < 3; j++)
					ASSERT_EQ(bo_refs(bos[j]), refs[j]);
				ASSERT_EQ(stats(vm).bind_errors, 1);
				ASSERT_FALSE(stats(vm).banned);
				/* The same array works afterwards. */
				err = bind_ops(vm, ops, n);
			}
			ASSERT_OK(err);
			for (int j = 0; j < 3; j++)
				ASSERT_EQ(bo_refs(bos[j]),
					  1 + vmas_of(vm, bos[j]));
			check_vm(vm);
			snap_free(&s);
		}
		/* RUN fires only on binds that write page tables. */
		ASSERT_TRUE(fired || stage == GVM_BIND_STAGE_RUN);
		for (int j = 0; j < 3; j++)
			gvm_bo_put(bos[j]);
		ASSERT_OK(gvm_vm_destroy(vm));
	}
	all_done();
}

TEST(inject_run_on_queued_bind_bans)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(M2, GVM_MEM_VRAM, NULL);
	struct gvm_fence *in = new_fence(), *out;
	struct gvm_bind_op op = op_map(SBASE, M2, a, 0);
	struct gvm_vm_stats st;

	inject_arm(GVM_BIND_STAGE_RUN, 0, 0);
	out = bind_async(vm, NULL, &op, 1, in);
	/* Not yet: the job has not run. */
	ASSERT_EQ(gvm__bind_inject.stage, GVM_BIND_STAGE_RUN);
	gvm_fence_signal(in);
	fence_done(out, -EIO);
	ASSERT_TRUE(inject_fired());
	st = stats(vm);
	ASSERT_TRUE(st.banned);
	ASSERT_EQ(map(vm, SBASE + M2, M2, a, 0), -EIO);
	ASSERT_EQ(unmap(vm, SBASE, M2), -EIO);
	ASSERT_EQ(gvm_vm_bind(vm, NULL, NULL, 0, NULL, 0), -EIO);
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));	/* a banned VM still goes away */
	ASSERT_EQ(bo_refs(a), 1);
	gvm_bo_put(a);
	all_done();
}

TEST(canonical_high_addresses)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(M2, GVM_MEM_VRAM, NULL);
	uint64_t top = 1ull << 48;

	/* 0xffff_ffff_ffe0_0000 is the canonical form of top - 2M. */
	ASSERT_OK(map(vm, ~0ull << 21, M2, a, 0));
	expect_bo(vm, top - M2, M2, a, 0, false, 0);
	ASSERT_OK(unmap(vm, top - M2, M1));
	ASSERT_OK(unmap(vm, (~0ull << 21) + M1, M1));
	ASSERT_EQ(nr_vmas(vm), 0);
	ASSERT_EQ(stats(vm).pt_pages, 1);
	gvm_bo_put(a);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

/* ---- 4. reference model ------------------------------------------------------- */

/* What one 4K page of the window maps to. */
struct mpage {
	uint8_t kind;		/* 0 none, 1 BO, 2 NULL */
	uint8_t bo;		/* index into the model's BOs */
	uint8_t ro, pat;
	uint64_t off;		/* BO offset */
};

#define MPAGES (IWIN / K4)
#define MBOS 4

static void model_apply(struct mpage *m, struct gvm_bo **bos,
			const struct gvm_bind_op *ops, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct gvm_bind_op *op = &ops[i];
		uint64_t first = (op->addr - IBASE) / K4, cnt = op->range / K4;

		if (op->op == GVM_BIND_UNMAP_ALL) {
			for (uint64_t p = 0; p < MPAGES; p++)
				if (m[p].kind == 1 && bos[m[p].bo] == op->bo)
					memset(&m[p], 0, sizeof(m[p]));
			continue;
		}
		for (uint64_t p = first; p < first + cnt; p++) {
			memset(&m[p], 0, sizeof(m[p]));
			if (op->op != GVM_BIND_MAP)
				continue;
			m[p].ro = !!(op->flags & GVM_BIND_READONLY);
			m[p].pat = (uint8_t)op->pat;
			if (op->flags & GVM_BIND_NULL) {
				m[p].kind = 2;
				continue;
			}
			m[p].kind = 1;
			for (uint8_t b = 0; b < MBOS; b++)
				if (bos[b] == op->bo)
					m[p].bo = b;
			m[p].off = op->bo_offset + (p - first) * K4;
		}
	}
}

static void model_check(struct gvm_vm *vm, const struct mpage *m,
			struct gvm_bo **bos)
{
	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->pt_lock);
	for (uint64_t p = 0; p < MPAGES; p++) {
		struct gvm_pt_xlate x;
		int err = gvm__pt_translate(&vm->pt, IBASE + p * K4,
					    GVM_PT_VIEW_COMMITTED, &x);
		bool ok;

		if (!m[p].kind) {
			ok = err == -ENOENT;
		} else {
			ok = !err && !(x.pte & GVM_PTF_WRITE) == !!m[p].ro &&
			     pte_pat(x.pte) == m[p].pat &&
			     gvm__ptf_is_null(x.pte) == (m[p].kind == 2);
			if (ok && m[p].kind == 1)
				ok = x.addr == bo_addr(bos[m[p].bo], m[p].off);
		}
		if (!ok) {
			fprintf(stderr, "page %#" PRIx64 ": model kind %u bo %u "
				"off %#" PRIx64 " ro %u pat %u; pt err %d addr %#"
				PRIx64 " pte %#" PRIx64 "\n",
				(uint64_t)(IBASE + p * K4), m[p].kind, m[p].bo, m[p].off,
				m[p].ro, m[p].pat, err, err ? 0 : x.addr,
				err ? 0 : x.pte);
			ASSERT_TRUE(ok);
		}
	}
	ASSERT_OK(gvm__pt_validate(&vm->pt));
	ASSERT_OK(gvm__va_validate(&vm->va));
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
	for (int b = 0; b < MBOS; b++)
		wait_refs(vm, bos[b]);
}

static void arm_alloc(long nth)
{
	gvm__inject_arm(GVM_INJECT_ALLOC, nth, 0);
}

static bool alloc_fired(void)
{
	bool f = gvm__inject_pending(GVM_INJECT_ALLOC) == 0;

	arm_alloc(0);
	return f;
}

static void reference_model_run(long iters)
{
	struct gvm_rng r = { gvm_test_seed() };
	struct mpage *m = calloc(MPAGES, sizeof(*m));
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *bos[MBOS] = {
		new_bo(4 * M2, GVM_MEM_VRAM, NULL),
		new_bo(M2 + 5 * K64, GVM_MEM_VRAM, NULL),
		new_bo(M2, GVM_MEM_SYSTEM, NULL),
		new_bo(2 * M2, GVM_MEM_VRAM | GVM_MEM_SYSTEM, vm),
	};
	long fails = 0, queued = 0;

	ASSERT_TRUE(m);
	for (long it = 0; it < iters; it++) {
		struct gvm_bind_op ops[6];
		uint32_t n = random_ops(&r, bos, MBOS, ops);
		unsigned int what = (unsigned int)gvm_rng_below(&r, 16);
		struct gvm_fence *in = NULL, *out = NULL;
		struct gvm_sync s[2] = { sync_out(&out), { 0 } };
		bool injected = false, async = gvm_rng_below(&r, 8) == 0;
		uint64_t vmas = nr_vmas(vm);
		int err;

		if (async) {
			in = new_fence();
			s[1] = sync_wait(in);
		}
		if (what < 3) {
			inject_arm((enum gvm_bind_stage)(GVM_BIND_STAGE_LOCK + what),
				   0, -ENOSPC);
		} else if (what < 5) {
			arm_alloc(1 + (long)gvm_rng_below(&r, 40));
		}
		err = gvm_vm_bind(vm, NULL, ops, n, s, async ? 2 : 1);
		if (what < 3)
			injected = inject_fired();
		else if (what < 5)
			injected = alloc_fired();
		if (in)
			gvm_fence_signal(in);
		if (err) {
			/* Only an injected failure may fail, and undo all. */
			ASSERT_TRUE(injected);
			ASSERT_EQ(err, what < 3 ? -ENOSPC : -ENOMEM);
			ASSERT_TRUE(out == NULL);
			ASSERT_EQ(nr_vmas(vm), vmas);
			fails++;
		} else {
			ASSERT_OK(gvm_fence_wait(out, INF));
			ASSERT_EQ(gvm_fence_get_status(out), 1);
			gvm_fence_put(out);
			model_apply(m, bos, ops, n);
			queued += async;
		}
		gvm_fence_put(in);
		ASSERT_FALSE(stats(vm).banned);
		model_check(vm, m, bos);
	}
	printf("reference_model: %ld calls, %ld failed by injection, %ld "
	       "queued\n", iters, fails, queued);
	ASSERT_GT(fails, 0);
	for (int b = 0; b < MBOS; b++)
		gvm_bo_put(bos[b]);
	ASSERT_OK(gvm_vm_destroy(vm));
	free(m);
	all_done();
}

TEST(reference_model)
{
	reference_model_run((long)gvm_test_scale(1500));
}

/*
 * The same on the deterministic scheduler (seeded with the test's seed):
 * the queued binds' jobs run on the bind worker at points the seed
 * chooses, and the n-th allocation an injection fails is then the same
 * one on every run; a failure writes a replay file (GVM_TEST_REPLAY=FILE
 * replays it).
 */
TEST(reference_model_det)
{
	gvm_test_det_begin();
	reference_model_run((long)gvm_test_scale(1500));
	gvm_test_det_end();
}

/* ---- 5. syncs and queues ------------------------------------------------------- */

static bool pending(struct gvm_fence *f)
{
	return gvm_fence_wait(f, 0) == -ETIME;
}

TEST(sync_in_fence_makes_a_job)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(2 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_fence *in = new_fence(), *out;
	struct gvm_bind_op op = op_map(SBASE, 2 * M2, a, 0);

	out = bind_async(vm, NULL, &op, 1, in);
	/* The VA state is decided, the page tables are not written. */
	ASSERT_EQ(nr_vmas(vm), 1);
	expect_none(vm, SBASE, 2 * M2);
	ASSERT_TRUE(pending(out));
	ASSERT_EQ(stats(vm).bind_jobs, 1);
	ASSERT_EQ(stats(vm).binds, 1);
	gvm_fence_signal(in);
	fence_done(out, 1);
	expect_bo(vm, SBASE, 2 * M2, a, 0, false, 0);
	check_vm(vm);

	/* An in-fence that already signalled: inline, out signalled. */
	op = op_unmap(SBASE, M2);
	out = bind_async(vm, NULL, &op, 1, in);
	ASSERT_FALSE(pending(out));
	expect_none(vm, SBASE, M2);
	ASSERT_EQ(stats(vm).bind_jobs, 1);
	fence_done(out, 1);
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));
	ASSERT_EQ(bo_refs(a), 1);
	gvm_bo_put(a);
	all_done();
}

TEST(sync_queue_in_order)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(2 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_fence *in = new_fence(), *o1, *o2, *o3;
	struct gvm_bind_op op1 = op_map(SBASE, M2, a, 0);
	struct gvm_bind_op op2 = op_map(SBASE + G1, M2, a, M2);
	struct gvm_bind_op op3 = op_null(SBASE + 4 * K4, 4 * K4);

	o1 = bind_async(vm, NULL, &op1, 1, in);
	/* No in-fence, a disjoint range: still behind o1 on this queue. */
	o2 = bind_async(vm, NULL, &op2, 1, NULL);
	o3 = bind_async(vm, NULL, &op3, 1, NULL);
	ASSERT_TRUE(pending(o1) && pending(o2) && pending(o3));
	expect_none(vm, SBASE + G1, M2);
	ASSERT_EQ(stats(vm).bind_jobs, 3);
	gvm_fence_signal(in);
	ASSERT_OK(gvm_fence_wait(o3, INF));
	ASSERT_TRUE(gvm_fence_is_signaled(o1) && gvm_fence_is_signaled(o2));
	expect_bo(vm, SBASE, 4 * K4, a, 0, false, 0);
	expect_null(vm, SBASE + 4 * K4, 4 * K4);
	expect_bo(vm, SBASE + 8 * K4, M2 - 8 * K4, a, 8 * K4, false, 0);
	expect_bo(vm, SBASE + G1, M2, a, M2, false, 0);
	check_vm(vm);
	fence_done(o1, 1);
	fence_done(o2, 1);
	fence_done(o3, 1);
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_bo_put(a);
	all_done();
}

TEST(sync_queues_independent_ranges_ordered)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_queue *q2;
	struct gvm_bo *a = new_bo(2 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_bo *b = new_bo(2 * M2, GVM_MEM_SYSTEM, NULL);
	struct gvm_fence *in = new_fence(), *o1, *o2, *o3, *o4;
	struct gvm_bind_op op1 = op_map(SBASE, M2, a, 0);
	struct gvm_bind_op op2 = op_map(SBASE + G1, M2, b, 0);
	struct gvm_bind_op op3 = op_map(SBASE + M1, M2, b, M2);
	struct gvm_bind_op op4 = op_null(SBASE + 2 * G1, M2);

	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q2));
	o1 = bind_async(vm, NULL, &op1, 1, in);
	/* Another queue, a disjoint range: done within the call. */
	o2 = bind_async(vm, q2, &op2, 1, NULL);
	ASSERT_FALSE(pending(o2));
	expect_bo(vm, SBASE + G1, M2, b, 0, false, 0);
	/* Another queue, an overlapping range: waits for o1. */
	o3 = bind_async(vm, q2, &op3, 1, NULL);
	ASSERT_TRUE(pending(o3));
	/* Behind o3 on q2, although disjoint from everything. */
	o4 = bind_async(vm, q2, &op4, 1, NULL);
	ASSERT_TRUE(pending(o4));
	expect_none(vm, SBASE, M2);
	expect_none(vm, SBASE + 2 * G1, M2);
	gvm_fence_signal(in);
	fence_done(o4, 1);
	fence_done(o3, 1);
	fence_done(o1, 1);
	fence_done(o2, 1);
	/* o3 ran after o1: its mapping wins where they overlap. */
	expect_bo(vm, SBASE, M1, a, 0, false, 0);
	expect_bo(vm, SBASE + M1, M2, b, M2, false, 0);
	expect_null(vm, SBASE + 2 * G1, M2);
	check_vm(vm);
	gvm_queue_destroy(q2);
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_bo_put(a);
	gvm_bo_put(b);
	all_done();
}

/*
 * Range fences with many binds pending on one queue (kept per queue, in an
 * interval tree): another queue's bind depends on exactly the overlapping
 * one's fence; once they signalled, nothing is waited for.
 */
TEST(sync_range_fences_many_pending)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_queue *q2, *q3;
	struct gvm_fence *in = new_fence(), *o[40], *mid, *far, *two, *late;
	struct gvm_bind_op op, ops2[2];
	int i;

	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q2));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q3));
	for (i = 0; i < 40; i++) {	/* every other 2 MiB: gaps between */
		op = op_null(SBASE + (uint64_t)(2 * i) * M2, M2);
		o[i] = bind_async(vm, NULL, &op, 1, i ? NULL : in);
		ASSERT_TRUE(pending(o[i]));
	}
	/* In a gap: depends on nothing pending. */
	op = op_null(SBASE + 21 * M2, M2);
	far = bind_async(vm, q2, &op, 1, NULL);
	ASSERT_FALSE(pending(far));
	/* Over bind 20 only. */
	op = op_null(SBASE + 40 * M2 + M1, M1);
	mid = bind_async(vm, q2, &op, 1, NULL);
	ASSERT_TRUE(pending(mid));
	/* A third queue, two ranges both in bind 30's: waits for it. */
	ops2[0] = op_null(SBASE + 60 * M2, M1);
	ops2[1] = op_null(SBASE + 60 * M2 + M1 + K4 * 4, K4 * 4);
	two = bind_async(vm, q3, ops2, 2, NULL);
	ASSERT_TRUE(pending(two));
	gvm_fence_signal(in);
	fence_done(two, 1);
	fence_done(mid, 1);
	for (i = 0; i < 40; i++)
		fence_done(o[i], 1);
	/* All signalled: pruned, a new bind over them is not held up. */
	op = op_null(SBASE + 40 * M2, M2);
	late = bind_async(vm, NULL, &op, 1, NULL);
	ASSERT_FALSE(pending(late));
	fence_done(late, 1);
	fence_done(far, 1);
	check_vm(vm);
	gvm_queue_destroy(q3);
	gvm_queue_destroy(q2);
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(sync_syncobj_out_and_in)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_queue *q2;
	struct gvm_syncobj *so, *empty;
	struct gvm_fence *in = new_fence(), *f;
	struct gvm_bind_op op1 = op_null(SBASE, M2);
	struct gvm_bind_op op2 = op_null(SBASE + G1, M2);
	struct gvm_sync s1[2] = {
		sync_wait(in),
		{ .type = GVM_SYNC_SYNCOBJ, .flags = GVM_SYNC_SIGNAL },
	};
	struct gvm_sync s2[2] = {
		{ .type = GVM_SYNC_SYNCOBJ },
		{ .type = GVM_SYNC_SYNCOBJ },
	};

	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q2));
	ASSERT_OK(gvm_syncobj_create(&so));
	ASSERT_OK(gvm_syncobj_create(&empty));
	ASSERT_EQ(gvm_syncobj_wait(so, 0), -ENOENT);
	s1[1].syncobj = so;
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op1, 1, s1, 2));
	ASSERT_EQ(gvm_syncobj_wait(so, 0), -ETIME);
	/* Waiting on the syncobj on another queue, a disjoint range. */
	s2[0].syncobj = so;
	s2[1].syncobj = empty;		/* no fence: nothing to wait for */
	ASSERT_OK(gvm_vm_bind(vm, q2, &op2, 1, s2, 2));
	expect_none(vm, SBASE + G1, M2);
	gvm_fence_signal(in);
	ASSERT_OK(gvm_syncobj_wait(so, INF));
	/* The second bind signals nothing; wait through its queue. */
	ASSERT_OK(gvm_vm_bind(vm, q2, NULL, 0, &s1[1], 1));
	ASSERT_OK(gvm_syncobj_wait(so, INF));
	expect_null(vm, SBASE, M2);
	expect_null(vm, SBASE + G1, M2);
	/* An empty syncobj as the only wait: inline. */
	ASSERT_OK(gvm_vm_bind(vm, q2, &op1, 1, &s2[1], 1));
	ASSERT_OK(gvm_syncobj_fence(so, &f));
	gvm_fence_put(f);
	gvm_syncobj_destroy(so);
	gvm_syncobj_destroy(empty);
	gvm_queue_destroy(q2);
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(sync_user_fences)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_fence *in = new_fence();
	struct gvm_bind_op op = op_null(SBASE, M2);
	uint64_t u[2] = { 0, 0 };
	struct gvm_sync s[2] = { sync_ufence(&u[0], 0x1234), sync_wait(in) };

	/* Inline: written before the call returns. */
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, s, 1));
	ASSERT_EQ(__atomic_load_n(&u[0], __ATOMIC_ACQUIRE), 0x1234);
	ASSERT_OK(gvm_user_fence_wait(&u[0], 0x1234, 0));
	/* Queued: written when the job is done. */
	s[0] = sync_ufence(&u[1], 7);
	op = op_null(SBASE + G1, M2);
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, s, 2));
	ASSERT_EQ(gvm_user_fence_wait(&u[1], 7, 0), -ETIME);
	ASSERT_EQ(gvm_user_fence_wait(&u[1], 7, 1000000), -ETIME);
	ASSERT_EQ(gvm_user_fence_wait((uint64_t *)((char *)u + 1), 7, 0),
		  -EINVAL);
	gvm_fence_signal(in);
	ASSERT_OK(gvm_user_fence_wait(&u[1], 7, INF));
	expect_null(vm, SBASE + G1, M2);
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

/*
 * User fences at read-only and PROT_NONE pages: refused at submission
 * (-EFAULT), and when the page loses PROT_WRITE before completion the
 * value is not stored (no SIGSEGV in the bind worker) and
 * gvm_user_fence_wait() reports -EFAULT.
 */
TEST(sync_user_fence_bad_address)
{
	static const int prot[2] = { PROT_READ, PROT_NONE };
	struct gvm_vm *vm = new_vm(0);
	struct gvm_fence *in = new_fence();
	struct gvm_fence *done[2] = { NULL, NULL };
	struct gvm_bind_op op;
	struct gvm_sync s[3];
	uint64_t *page[2];
	char *p;
	int i;

	p = mmap(NULL, 2 * K4, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	page[0] = (uint64_t *)p;
	page[1] = (uint64_t *)(p + K4);

	/* Not writable when submitted: the call fails, nothing changes. */
	for (i = 0; i < 2; i++) {
		ASSERT_OK(mprotect(page[i], K4, prot[i]));
		op = op_null(SBASE, M2);
		s[0] = sync_ufence(page[i], 1);
		ASSERT_EQ(gvm_vm_bind(vm, NULL, &op, 1, s, 1), -EFAULT);
		s[1] = sync_wait(in);
		ASSERT_EQ(gvm_vm_bind(vm, NULL, &op, 1, s, 2), -EFAULT);
		ASSERT_EQ(nr_vmas(vm), 0);
		ASSERT_OK(mprotect(page[i], K4, PROT_READ | PROT_WRITE));
	}

	/* Writable when submitted, not any more when the job completes. */
	for (i = 0; i < 2; i++) {
		op = op_null(SBASE + (uint64_t)i * G1, M2);
		s[0] = sync_ufence(page[i], 1);
		s[1] = sync_wait(in);
		s[2] = sync_out(&done[i]);
		ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, s, 3));
		ASSERT_OK(mprotect(page[i], K4, prot[i]));
	}
	gvm_fence_signal(in);
	for (i = 0; i < 2; i++) {
		fence_done(done[i], 1);		/* drops the reference */
		ASSERT_EQ(gvm_user_fence_wait(page[i], 1, INF), -EFAULT);
	}
	expect_null(vm, SBASE, M2);
	expect_null(vm, SBASE + G1, M2);
	/* Given up counts as written for the -EBUSY rule. */
	ASSERT_OK(unmap(vm, SBASE, M2));

	/* Writable again: a bind that fails after reading its syncs (a
	   prefetch the BO's placement refuses) leaves -EFAULT recorded... */
	ASSERT_OK(mprotect(page[0], K4, PROT_READ | PROT_WRITE));
	{
		struct gvm_bo *bo = new_bo(M2, GVM_MEM_VRAM, NULL);
		struct gvm_bind_op pf = { .op = GVM_BIND_PREFETCH,
					  .addr = SBASE + 2 * G1, .range = M2,
					  .prefetch_mem = GVM_MEM_SYSTEM };

		op = op_map(SBASE + 2 * G1, M2, bo, 0);
		ASSERT_OK(bind_ops(vm, &op, 1));
		s[0] = sync_ufence(page[0], 2);
		ASSERT_EQ(gvm_vm_bind(vm, NULL, &pf, 1, s, 1), -EINVAL);
		ASSERT_EQ(gvm_user_fence_wait(page[0], 1, 0), -EFAULT);
		ASSERT_OK(unmap(vm, SBASE + 2 * G1, M2));
		gvm_bo_put(bo);
	}
	/* ...a new user fence there works and clears it. */
	ASSERT_EQ(*page[0], 0);
	op = op_null(SBASE, M2);
	s[0] = sync_ufence(page[0], 2);
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, s, 1));
	ASSERT_OK(gvm_user_fence_wait(page[0], 2, INF));

	ASSERT_OK(munmap(p, 2 * K4));
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(sync_ebusy_rule)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(2 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_fence *in = new_fence();
	struct gvm_bind_op op = op_map(SBASE, M2, a, 0), arr[2];
	uint64_t u = 0;
	struct gvm_sync s[2] = { sync_ufence(&u, 1), sync_wait(in) };
	struct gvm_bind_op ua = op_unmap_all(a);
	struct snap sn = { 0 };

	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, s, 2));
	ASSERT_OK(map(vm, SBASE + G1, M2, a, M2));	/* no user fence */
	snap_add(&sn, SBASE, 2 * M2);
	snap_take(vm, &sn);
	ASSERT_EQ(sn.vmas, 2);

	ASSERT_EQ(unmap(vm, SBASE, M2), -EBUSY);
	ASSERT_EQ(unmap(vm, SBASE + M1, K4), -EBUSY);
	ASSERT_EQ(map(vm, SBASE + M1, M2, a, 0), -EBUSY);	/* partial */
	ASSERT_EQ(map(vm, SBASE, M2, a, M2), -EBUSY);		/* whole */
	ASSERT_EQ(null_map(vm, SBASE - M2, 2 * M2), -EBUSY);
	ASSERT_EQ(bind_ops(vm, &ua, 1), -EBUSY);
	arr[0] = op_unmap(SBASE + G1, M2);	/* fine on its own */
	arr[1] = op_unmap(SBASE, K4);
	ASSERT_EQ(bind_ops(vm, arr, 2), -EBUSY);
	snap_expect_same(vm, &sn);
	ASSERT_EQ(stats(vm).bind_errors, 7);
	ASSERT_EQ(bo_refs(a), 3);
	/* Around it is fine. */
	ASSERT_OK(null_map(vm, SBASE + M2, M2));
	ASSERT_OK(unmap(vm, SBASE + M2, M2));
	ASSERT_OK(unmap(vm, SBASE - M2, M2));

	gvm_fence_signal(in);
	ASSERT_OK(gvm_user_fence_wait(&u, 1, INF));
	/* Written: the pieces of a split inherit the written fence. */
	ASSERT_OK(unmap(vm, SBASE + M1, K4));
	ASSERT_OK(map(vm, SBASE, K4, a, M2));
	ASSERT_OK(bind_ops(vm, &ua, 1));
	ASSERT_EQ(nr_vmas(vm), 0);
	wait_refs(vm, a);	/* these binds queued behind the first */
	ASSERT_EQ(bo_refs(a), 1);
	snap_free(&sn);
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_bo_put(a);
	all_done();
}

TEST(sync_empty_array)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_queue *q2;
	struct gvm_fence *in = new_fence(), *o1, *o2, *o3;
	struct gvm_bind_op op = op_null(SBASE, M2);
	uint64_t u = 0;
	struct gvm_sync s[2] = { sync_out(&o2), sync_ufence(&u, 5) };

	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q2));
	/* Idle queue: at once. */
	ASSERT_OK(gvm_vm_bind(vm, NULL, NULL, 0, s, 2));
	ASSERT_FALSE(pending(o2));
	ASSERT_EQ(u, 5);
	fence_done(o2, 1);
	/* Busy queue: after its pending work. */
	o1 = bind_async(vm, NULL, &op, 1, in);
	u = 0;
	ASSERT_OK(gvm_vm_bind(vm, NULL, NULL, 0, s, 2));
	ASSERT_TRUE(pending(o2));
	ASSERT_EQ(gvm_user_fence_wait(&u, 5, 0), -ETIME);
	/* Another queue is idle. */
	o3 = bind_async(vm, q2, NULL, 0, NULL);
	ASSERT_FALSE(pending(o3));
	fence_done(o3, 1);
	gvm_fence_signal(in);
	ASSERT_OK(gvm_fence_wait(o2, INF));
	ASSERT_TRUE(gvm_fence_is_signaled(o1));
	ASSERT_OK(gvm_user_fence_wait(&u, 5, INF));
	expect_null(vm, SBASE, M2);
	fence_done(o1, 1);
	fence_done(o2, 1);
	/* An empty array with an in-fence waits for it. */
	gvm_fence_put(in);
	in = new_fence();
	o1 = bind_async(vm, q2, NULL, 0, in);
	ASSERT_TRUE(pending(o1));
	gvm_fence_signal(in);
	fence_done(o1, 1);
	gvm_fence_put(in);
	gvm_queue_destroy(q2);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

/*
 * A failed in-fence: the bind still takes effect (its page tables are
 * written, as its VA state was decided in the call) and its fence signals
 * without error, as with xe (see "Failed dependencies" in bind.c).
 */
TEST(sync_in_fence_error)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(2 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_fence *in = new_fence(), *out, *o2;
	struct gvm_bind_op op = op_map(SBASE, 2 * M2, a, 0), op2;
	uint64_t u = 0;
	struct gvm_sync s[3] = { sync_out(&out), sync_wait(in),
				 sync_ufence(&u, 9) };

	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, s, 3));
	/* A later bind of the queue does not inherit the error. */
	op2 = op_null(G1, M2);
	o2 = bind_async(vm, NULL, &op2, 1, NULL);
	gvm_fence_signal_error(in, -EPIPE);
	fence_done(out, 1);
	fence_done(o2, 1);
	ASSERT_OK(gvm_user_fence_wait(&u, 9, INF));
	ASSERT_FALSE(stats(vm).banned);
	ASSERT_EQ(nr_vmas(vm), 2);
	expect_bo(vm, SBASE, 2 * M2, a, 0, false, 0);
	expect_null(vm, G1, M2);
	check_vm(vm);

	/* An unmap behind a failed fence unmaps (the BO is let go). */
	op = op_unmap(SBASE, M2 + K4);
	s[2] = sync_ufence(&u, 10);
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, s, 3));	/* already failed */
	fence_done(out, 1);
	expect_none(vm, SBASE, M2 + K4);
	expect_bo(vm, SBASE + M2 + K4, M2 - K4, a, M2 + K4, false, 0);
	wait_refs(vm, a);
	ASSERT_EQ(bo_refs(a), 2);
	ASSERT_OK(unmap(vm, 0, 1ull << 47));
	ASSERT_EQ(stats(vm).pt_pages, 1);
	wait_refs(vm, a);
	ASSERT_EQ(bo_refs(a), 1);
	ASSERT_FALSE(stats(vm).banned);
	gvm_fence_put(in);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_bo_put(a);
	all_done();
}

/*
 * Destroying a bind queue, or the VM for its default queue, does not wait
 * for wait syncs that never signal: the binds take effect without them.
 */
TEST(destroy_abandons_unsignalled_wait_syncs)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *a = new_bo(2 * M2, GVM_MEM_VRAM, NULL);
	struct gvm_fence *in = new_fence(), *in2 = new_fence(), *o1, *o2, *o3;
	struct gvm_bind_op op1 = op_map(SBASE, M2, a, 0);
	struct gvm_bind_op op2 = op_map(SBASE + G1, M2, a, M2);
	struct gvm_queue *q;

	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q));
	o1 = bind_async(vm, q, &op1, 1, in);
	ASSERT_TRUE(pending(o1));
	expect_none(vm, SBASE, M2);
	gvm_queue_destroy(q);		/* hung here before */
	fence_done(o1, 1);
	expect_bo(vm, SBASE, M2, a, 0, false, 0);
	check_vm(vm);

	/* The default queue, in gvm_vm_destroy(): a job behind the first. */
	o2 = bind_async(vm, NULL, &op2, 1, in2);
	o3 = bind_async(vm, NULL, &op1, 1, NULL);
	ASSERT_TRUE(pending(o2) && pending(o3));
	ASSERT_OK(gvm_vm_destroy(vm));
	fence_done(o2, 1);
	fence_done(o3, 1);
	ASSERT_EQ(bo_refs(a), 1);

	/* Signalled late, the fences find nothing waiting. */
	gvm_fence_signal(in);
	gvm_fence_signal(in2);
	gvm_fence_put(in);
	gvm_fence_put(in2);
	gvm_bo_put(a);
	all_done();
}

/* ---- 6. allocation failures ---------------------------------------------------- */

/* The starting point of the allocation-failure binds. */
static struct gvm_vm *af_vm(struct gvm_bo *a, struct gvm_bo *b)
{
	struct gvm_vm *vm = new_vm(0);

	ASSERT_OK(map(vm, SBASE, 4 * M2, a, 0));
	ASSERT_OK(map(vm, SBASE + 8 * M2, 16 * K4, b, 0));
	ASSERT_OK(null_map(vm, SBASE + G1, G1));
	return vm;
}

static uint32_t af_ops(struct gvm_bo *a, struct gvm_bo *b,
		       struct gvm_bind_op *ops)
{
	ops[0] = op_map(SBASE + M2 + K4, 2 * K4, b, K64);	/* split */
	ops[1] = op_unmap(SBASE + 8 * M2, 4 * K4);		/* front */
	ops[2] = op_null(SBASE + G1 + 3 * M2, K4);		/* 1G split */
	ops[3] = op_map(SBASE + 2 * G1, M2, a, M2);		/* new */
	ops[4] = op_unmap_all(b);
	ops[5] = op_map(SBASE + 16 * M2, M2, b, 0);
	return 6;
}

static void alloc_fail_bind(bool queued)
{
	struct gvm_bo *a, *b;
	struct gvm_vm *ref;
	struct gvm_bind_op ops[6];
	struct snap want = { 0 };
	uint32_t n;
	long failures = 0;

	dev = testdev_create(0, 48);
	a = new_bo(4 * M2, GVM_MEM_VRAM, NULL);
	b = new_bo(M2, GVM_MEM_SYSTEM, NULL);
	n = af_ops(a, b, ops);
	/* What success looks like, on a VM of its own. */
	ref = af_vm(a, b);
	ASSERT_OK(bind_ops(ref, ops, n));
	snap_add(&want, SBASE, 20 * M2);
	snap_add(&want, SBASE + G1, G1 + M2);
	snap_take(ref, &want);
	ASSERT_OK(gvm_vm_destroy(ref));

	for (long k = 1;; k++) {
		struct gvm_vm *vm = af_vm(a, b);
		struct gvm_fence *in = queued ? new_fence() : NULL, *out = NULL;
		struct gvm_sync s[2] = { sync_out(&out), sync_wait(in) };
		struct snap before = { 0 };
		uint32_t ra = bo_refs(a), rb = bo_refs(b);
		bool fired;
		int err;

		snap_add(&before, SBASE, 20 * M2);
		snap_add(&before, SBASE + G1, G1 + M2);
		snap_take(vm, &before);
		arm_alloc(k);
		err = gvm_vm_bind(vm, NULL, ops, n, s, queued ? 2 : 1);
		fired = alloc_fired();
		if (in)
			gvm_fence_signal(in);
		if (err) {
			ASSERT_TRUE(fired);
			ASSERT_EQ(err, -ENOMEM);
			ASSERT_TRUE(out == NULL);
			snap_expect_same(vm, &before);
			ASSERT_EQ(bo_refs(a), ra);
			ASSERT_EQ(bo_refs(b), rb);
			failures++;
		} else {
			/*
			 * Success; an allocation that failed after the point
			 * of no return (the backend's TLB fence) must not
			 * have cost the VM.
			 */
			fence_done(out, 1);
			ASSERT_FALSE(stats(vm).banned);
			snap_expect_same(vm, &want);
		}
		gvm_fence_put(in);
		snap_free(&before);
		ASSERT_OK(gvm_vm_destroy(vm));
		ASSERT_EQ(bo_refs(a), 1);
		ASSERT_EQ(bo_refs(b), 1);
		if (!fired)
			break;
	}
	printf("%ld allocation failures\n", failures);
	ASSERT_GT(failures, 10);
	snap_free(&want);
	gvm_bo_put(a);
	gvm_bo_put(b);
	all_done();
}

TEST(alloc_fail_bind_inline)
{
	alloc_fail_bind(false);
}

TEST(alloc_fail_bind_queued)
{
	alloc_fail_bind(true);
}

/*
 * A single-op inline bind with no out-sync allocates nothing once the VM
 * is warm (issue 14): the map takes the VMA the previous unmap gave back
 * to the VA space's spares.  With the spares empty (a fresh VM) the
 * VMA's allocation is still there for fault injection to fail.  On the
 * simulated device, whose TLB invalidations allocate nothing once warm
 * (the test backend allocates a fence for each).
 */
TEST(single_bind_allocates_nothing_once_warm)
{
	struct gvm_sim_config cfg = { .vram_size = 64ull << 20 };
	struct gvm_device *sdev;
	struct gvm_vm *vm;
	struct gvm_bo *bo;
	struct gvm_pt_xlate x;
	unsigned long before;

	ASSERT_OK(gvm_sim_device_create(&cfg, &sdev));
	ASSERT_OK(gvm_vm_create(sdev, NULL, 0, &vm));
	ASSERT_OK(gvm_bo_create(sdev, 2 * K4, GVM_MEM_SYSTEM, NULL, &bo));
	/* A fresh VM: the map's VMA comes from the heap. */
	arm_alloc(1);
	ASSERT_EQ(map(vm, G1, K4, bo, 0), -ENOMEM);
	ASSERT_TRUE(alloc_fired());
	ASSERT_EQ(stats(vm).vmas, 0);
	ASSERT_OK(map(vm, G1, K4, bo, 0));	/* keeps the tables */
	for (int k = 0; k < 3; k++) {	/* warm */
		ASSERT_OK(map(vm, G1 + K4, K4, bo, K4));
		ASSERT_OK(unmap(vm, G1 + K4, K4));
	}
	for (int k = 0; k < 3; k++) {
		before = gvm__alloc_count;
		ASSERT_OK(map(vm, G1 + K4, K4, bo, K4));
		ASSERT_EQ(gvm__alloc_count, before);
		ASSERT_OK(xl(vm, G1 + K4, &x));
		ASSERT_OK(unmap(vm, G1 + K4, K4));
		ASSERT_EQ(gvm__alloc_count, before);
		ASSERT_EQ(xl(vm, G1 + K4, &x), -ENOENT);
	}
	ASSERT_EQ(stats(vm).vmas, 1);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_bo_put(bo);
	gvm_device_put(sdev);
}

static uint64_t vram_free(void)
{
	struct gvm_device_info info;

	ASSERT_OK(gvm_device_query(dev, &info));
	return info.vram_free;
}

TEST(alloc_fail_bo_create)
{
	struct gvm_vm *vm = new_vm(0);
	uint64_t free0 = vram_free();
	uint32_t vm_refs = __atomic_load_n(&vm->refcount, __ATOMIC_RELAXED);
	static const uint32_t pl[] = { GVM_MEM_VRAM, GVM_MEM_SYSTEM,
				       GVM_MEM_VRAM | GVM_MEM_SYSTEM };

	for (int i = 0; i < 6; i++) {
		struct gvm_vm *local = i >= 3 ? vm : NULL;
		long failures = 0;

		for (long k = 1;; k++) {
			struct gvm_bo *bo = NULL;
			bool fired;
			int err;

			arm_alloc(k);
			err = gvm_bo_create(dev, 3 * M2 + K64, pl[i % 3], local,
					    &bo);
			fired = alloc_fired();
			if (err) {
				ASSERT_TRUE(fired);
				ASSERT_EQ(err, -ENOMEM);
				ASSERT_TRUE(bo == NULL);
				ASSERT_EQ(vram_free(), free0);
				ASSERT_EQ(__atomic_load_n(&vm->refcount,
							  __ATOMIC_RELAXED),
					  vm_refs);
				failures++;
				continue;
			}
			/* VRAM or system: a failed VRAM try may fall back. */
			ASSERT_TRUE(fired ? pl[i % 3] == (GVM_MEM_VRAM |
							  GVM_MEM_SYSTEM) &&
						    gvm_bo_region(bo) ==
							    GVM_MEM_SYSTEM
					  : true);
			ASSERT_OK(map(vm, SBASE, gvm_bo_size(bo), bo, 0));
			expect_bo(vm, SBASE, gvm_bo_size(bo), bo, 0, false, 0);
			ASSERT_OK(unmap(vm, SBASE, gvm_bo_size(bo)));
			gvm_bo_put(bo);
			ASSERT_EQ(vram_free(), free0);
			if (!fired)
				break;
		}
		ASSERT_GT(failures, 0);
	}
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

TEST(alloc_fail_vm_create)
{
	struct gvm_vm *vm;
	uint64_t free0;
	long failures = 0;

	dev = testdev_create(0, 48);
	free0 = vram_free();
	for (long k = 1;; k++) {
		bool fired;
		int err;

		vm = NULL;
		arm_alloc(k);
		err = gvm_vm_create(dev, NULL, 0, &vm);
		fired = alloc_fired();
		if (err) {
			ASSERT_TRUE(fired);
			ASSERT_EQ(err, -ENOMEM);
			ASSERT_TRUE(vm == NULL);
			ASSERT_EQ(testdev_of(dev)->attached, 0);
			ASSERT_EQ(vram_free(), free0);
			ASSERT_EQ(__atomic_load_n(&dev->refcount,
						  __ATOMIC_RELAXED), 1);
			failures++;
			continue;
		}
		ASSERT_OK(null_map(vm, G1, M2));
		expect_null(vm, G1, M2);
		ASSERT_OK(gvm_vm_destroy(vm));
		ASSERT_EQ(vram_free(), free0);
		if (!fired)
			break;
	}
	ASSERT_GT(failures, 2);
	all_done();
}

TEST(alloc_fail_queue_create)
{
	struct gvm_vm *vm = new_vm(0);
	uint32_t refs = __atomic_load_n(&vm->refcount, __ATOMIC_RELAXED);
	long failures = 0;

	for (long k = 1;; k++) {
		struct gvm_queue *q = NULL;
		bool fired;
		int err;

		arm_alloc(k);
		err = gvm_queue_create(vm, GVM_ENGINE_BIND, &q);
		fired = alloc_fired();
		if (err) {
			ASSERT_TRUE(fired);
			ASSERT_EQ(err, -ENOMEM);
			ASSERT_TRUE(q == NULL);
			ASSERT_EQ(vm->nr_queues, 0);
			ASSERT_EQ(__atomic_load_n(&vm->refcount,
						  __ATOMIC_RELAXED), refs);
			failures++;
			continue;
		}
		ASSERT_OK(gvm_vm_bind(vm, q, NULL, 0, NULL, 0));
		gvm_queue_destroy(q);
		if (!fired)
			break;
	}
	ASSERT_GT(failures, 0);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}

/*
 * The reference model with the binds spread over three queues, in-fences
 * held back and signalled later in random order (some with an error):
 * binds of one queue, and binds of different queues over overlapping
 * ranges, must take effect in submission order.  Checked whenever every
 * fence has signalled.
 */
static void reference_model_queues_run(long iters)
{
	struct gvm_rng r = { gvm_test_seed() };
	struct mpage *m = calloc(MPAGES, sizeof(*m));
	struct gvm_vm *vm = new_vm(0);
	struct gvm_queue *q[3] = { NULL };
	struct gvm_bo *bos[MBOS] = {
		new_bo(4 * M2, GVM_MEM_VRAM, NULL),
		new_bo(M2 + 5 * K64, GVM_MEM_VRAM, NULL),
		new_bo(M2, GVM_MEM_SYSTEM, NULL),
		new_bo(2 * M2, GVM_MEM_VRAM, vm),
	};
	struct gvm_fence *in[6], *out[64];
	unsigned int nin = 0, nout = 0;
	long fails = 0, checks = 0;

	ASSERT_TRUE(m);
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q[1]));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_BIND, &q[2]));
	for (long it = 0; it < iters; it++) {
		struct gvm_bind_op ops[6];
		uint32_t n = random_ops(&r, bos, MBOS, ops);
		struct gvm_fence *f = NULL, *o = NULL;
		struct gvm_sync s[2] = { sync_out(&o), { 0 } };
		bool inj = gvm_rng_below(&r, 8) == 0, last = it == iters - 1;
		int err;

		if (nin < 6 && gvm_rng_below(&r, 2)) {
			f = in[nin++] = new_fence();
			s[1] = sync_wait(f);
		} else if (nin && gvm_rng_below(&r, 2)) {
			s[1] = sync_wait(in[gvm_rng_below(&r, nin)]);
		}
		if (inj)
			arm_alloc(1 + (long)gvm_rng_below(&r, 30));
		err = gvm_vm_bind(vm, q[gvm_rng_below(&r, 3)], ops, n, s,
				  s[1].type ? 2 : 1);
		if (inj)
			inj = alloc_fired();
		if (err) {
			ASSERT_TRUE(inj);
			ASSERT_EQ(err, -ENOMEM);
			fails++;
		} else {
			model_apply(m, bos, ops, n);
			out[nout++] = o;
		}
		if (nout < 64 && !last && gvm_rng_below(&r, 6))
			continue;
		/* Signal everything in random order, then check. */
		while (nin) {
			unsigned int i = (unsigned int)gvm_rng_below(&r, nin);

			if (gvm_rng_below(&r, 5) == 0)
				gvm_fence_signal_error(in[i], -EIO);
			else
				gvm_fence_signal(in[i]);
			gvm_fence_put(in[i]);
			in[i] = in[--nin];
		}
		while (nout)
			fence_done(out[--nout], 1);
		ASSERT_FALSE(stats(vm).banned);
		model_check(vm, m, bos);
		checks++;
	}
	printf("reference_model_queues: %ld calls, %ld failed, %ld checks, "
	       "%" PRIu64 " jobs\n", iters, fails, checks,
	       stats(vm).bind_jobs);
	gvm_queue_destroy(q[1]);
	gvm_queue_destroy(q[2]);
	for (int b = 0; b < MBOS; b++)
		gvm_bo_put(bos[b]);
	ASSERT_OK(gvm_vm_destroy(vm));
	free(m);
	all_done();
}

TEST(reference_model_queues)
{
	reference_model_queues_run((long)gvm_test_scale(1200));
}

/*
 * The same on the deterministic scheduler (seeded with the test's seed):
 * the bind workers' interleaving is then a function of the seed too, and
 * a failure writes a replay file (GVM_TEST_REPLAY=FILE replays it).
 */
TEST(reference_model_queues_det)
{
	gvm_test_det_begin();
	reference_model_queues_run((long)gvm_test_scale(1200));
	gvm_test_det_end();
}

/*
 * Issue 10, defect 8: a queued bind's job cannot fail for memory: its
 * page-table pages and records were reserved when the bind was called.
 * With the next allocation anywhere failing as its dependency signals, the
 * job still writes the mapping and the VM is not banned (it was, when the
 * job allocated in its prepare).
 */
TEST(queued_bind_job_survives_allocation_failure)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_bo *bo = new_bo(M1, GVM_MEM_SYSTEM, NULL);
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = 5 * G1 + K4,
				  .range = M1 - K4, .bo = bo, .bo_offset = K4 };
	struct gvm_fence *in, *out = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL },
	};
	struct gvm_pt_xlate x;

	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &in));
	s[0].fence = in;
	s[1].out = &out;
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, s, 2));
	ASSERT_EQ(stats(vm).bind_jobs, 1);
	gvm__inject_arm(GVM_INJECT_ALLOC, 1, 0);
	ASSERT_OK(gvm_fence_signal(in));
	ASSERT_OK(gvm_fence_wait(out, INF));
	gvm__inject_arm(GVM_INJECT_ALLOC, 0, 0);
	ASSERT_EQ(gvm_fence_get_status(out), 1);
	ASSERT_FALSE(stats(vm).banned);
	ASSERT_OK(xl(vm, 5 * G1 + K4, &x));
	ASSERT_OK(xl(vm, 5 * G1 + M1 - K4, &x));
	gvm_fence_put(out);
	gvm_fence_put(in);
	gvm_bo_put(bo);
	ASSERT_OK(gvm_vm_destroy(vm));
	all_done();
}
