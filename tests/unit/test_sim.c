// SPDX-License-Identifier: MIT
/*
 * Simulated GPU tests.
 *
 * Most tests drive the backend the way gvm does, through its ops
 * (gvm__sim_ops), with page tables they build themselves with the
 * page-table engine over the device's VRAM window, and a fault handler of
 * their own (sd->fault_fn) that records faults and may resolve them.  That
 * lets them write any entry (system-memory PTEs over host mappings they
 * then unmap, NULL entries, read-only ones) and check the MMU, the TLB
 * and its invalidation protocol, the engines, the copy engine and the
 * guard directly.  The last tests go through the public API (VMs, BOs,
 * VM_BIND, gvm_exec) to check the backend works under the real VM layer.
 *
 * No pass/fail test depends on timing: "still pending" checks are made
 * where the protocol guarantees the fence cannot have signalled yet, and
 * modelled latencies are checked as lower bounds only.
 */
#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "core/alloc.h"
#include "core/buddy.h"
#include "core/sync.h"
#include "harness.h"
#include "pt/pt.h"
#include "sim/sim_internal.h"
#include "testdev.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M2 (2ull << 20)
#define G1 (1ull << 30)

/* ---- recorded faults ---------------------------------------------------- */

#define MAX_FAULTS 64

struct env;
typedef int (*resolve_fn)(struct env *v, const struct gvm_fault_info *f);

static struct {
	pthread_mutex_t lock;
	struct gvm_fault_info log[MAX_FAULTS];
	unsigned int n;
	resolve_fn resolve;
	struct env *env;
} faults = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int test_fault(struct gvm_vm *vm, const struct gvm_fault_info *f)
{
	resolve_fn r;

	pthread_mutex_lock(&faults.lock);
	if (faults.n < MAX_FAULTS)
		faults.log[faults.n] = *f;
	faults.n++;
	r = faults.resolve;
	pthread_mutex_unlock(&faults.lock);
	return r ? r(faults.env, f) : -EFAULT;
}

static unsigned int nr_faults(void)
{
	unsigned int n;

	pthread_mutex_lock(&faults.lock);
	n = faults.n;
	pthread_mutex_unlock(&faults.lock);
	return n;
}

static struct gvm_fault_info fault_at(unsigned int i)
{
	struct gvm_fault_info f;

	pthread_mutex_lock(&faults.lock);
	f = faults.log[i];
	pthread_mutex_unlock(&faults.lock);
	return f;
}

/* ---- a device driven through its ops ------------------------------------ */

struct env {
	struct gvm_device *dev;
	struct sim_dev *sd;
	struct gvm_buddy buddy;		/* all of VRAM: tables and data */
	struct gvm_list blocks;		/* data blocks */
	struct gvm_pt_vm pt;
	void *vm;			/* backend VM */
	void *q[4];			/* backend queues */
	unsigned int nq;
};

static const struct gvm_device_ops *ops = &gvm__sim_ops;

static void env_init_cfg(struct env *v, const struct gvm_sim_config *cfg,
			 uint32_t attach_flags)
{
	struct gvm_pt_mem mem = { 0 };
	unsigned int i;

	memset(v, 0, sizeof(*v));
	ASSERT_OK(gvm_sim_device_create(cfg, &v->dev));
	v->sd = gvm_device_priv(v->dev);
	v->sd->fault_fn = test_fault;
	faults.env = v;
	gvm_list_init(&v->blocks);
	ASSERT_OK(gvm__buddy_init(&v->buddy, v->sd->vram_size, 0));
	mem.buddy = &v->buddy;
	mem.cpu_base = v->sd->vram;
	mem.dev_base = v->sd->vram_base;
	ASSERT_OK(gvm__pt_vm_init(&v->pt, &mem, v->sd->cfg.va_bits,
				  v->sd->cfg.page_sizes));
	ASSERT_OK(ops->vm_attach(v->dev, (struct gvm_vm *)v,
				 v->pt.root->dev_addr, v->pt.levels, attach_flags,
				 &v->vm));
	/* One queue per compute engine, in engine order (round robin). */
	v->nq = v->sd->cfg.nr_compute < 4 ? v->sd->cfg.nr_compute : 4;
	for (i = 0; i < v->nq; i++)
		ASSERT_OK(ops->queue_create(v->dev, v->vm, GVM_ENGINE_COMPUTE,
					    &v->q[i]));
}

static void env_init(struct env *v, uint32_t attach_flags)
{
	struct gvm_sim_config cfg = { .vram_size = 64ull << 20 };

	env_init_cfg(v, &cfg, attach_flags);
}

static void env_fini(struct env *v)
{
	unsigned int i;

	for (i = 0; i < v->nq; i++)
		ops->queue_destroy(v->dev, v->q[i]);
	ops->vm_detach(v->dev, v->vm);
	gvm__pt_vm_fini(&v->pt);
	gvm__buddy_free_list(&v->buddy, &v->blocks);
	gvm__buddy_fini(&v->buddy);
	gvm_device_put(v->dev);
	faults.env = NULL;
	faults.resolve = NULL;
}

/* @size bytes of VRAM aligned to @align: device address. */
static uint64_t vram_alloc(struct env *v, uint64_t size, uint64_t align)
{
	struct gvm_list l;
	struct gvm_buddy_block *b;

	gvm_list_init(&l);
	ASSERT_OK(gvm__buddy_alloc(&v->buddy, 0, v->buddy.size, size, align,
				   GVM_BUDDY_CONTIGUOUS, &l));
	b = gvm_list_first_entry(&l, struct gvm_buddy_block, link);
	gvm_list_splice_tail(&l, &v->blocks);
	return v->sd->vram_base + b->offset;
}

static void *vcpu(struct env *v, uint64_t addr)
{
	return v->sd->vram + (addr - v->sd->vram_base);
}

static void tlb_inval_wait(struct env *v, uint64_t start, uint64_t size)
{
	struct gvm_fence *f;

	ASSERT_OK(ops->tlb_inval(v->dev, v->vm, start, size, &f));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
}

/* Binds [va, va + size) to @addr with GVM_PT_* @flags, then invalidates
   whatever the bind replaced. */
static void map(struct env *v, uint64_t va, uint64_t size, uint64_t addr,
		unsigned int flags)
{
	struct gvm_pt_extent x = { addr, size };
	struct gvm_pt_tlb tlb;

	ASSERT_OK(gvm__pt_bind(&v->pt, va, size,
			       (flags & GVM_PT_NULL) ? NULL : &x,
			       (flags & GVM_PT_NULL) ? 0 : 1, flags, &tlb));
	if (tlb.full || tlb.size)
		tlb_inval_wait(v, tlb.full ? 0 : tlb.start,
			       tlb.full ? 0 : tlb.size);
}

static void unmap(struct env *v, uint64_t va, uint64_t size)
{
	struct gvm_pt_tlb tlb;

	ASSERT_OK(gvm__pt_unbind(&v->pt, va, size, &tlb));
	if (tlb.full || tlb.size)
		tlb_inval_wait(v, tlb.full ? 0 : tlb.start,
			       tlb.full ? 0 : tlb.size);
}

#define RW (GVM_PT_WRITE | GVM_PT_ATOMIC)
#define VRAM_RW (GVM_PT_DEVMEM | RW)

/* Runs @k on queue @qi and waits: the fence status (1 ok, or -errno). */
static int run_on(struct env *v, unsigned int qi, const struct gvm_kernel *k)
{
	struct gvm_fence *f;
	int st;

	ASSERT_OK(ops->run(v->dev, v->q[qi], k, &f));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return st;
}

static int run(struct env *v, const struct gvm_kernel *k)
{
	return run_on(v, 0, k);
}

static struct gvm_sim_stats stats(struct env *v)
{
	struct gvm_sim_stats st;

	ASSERT_OK(gvm_sim_stats(v->dev, &st));
	return st;
}

/* Host memory for system-memory PTEs: @size bytes aligned to @align. */
static uint8_t *host_alloc(uint64_t size, uint64_t align)
{
	uint8_t *p = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t a;

	ASSERT_TRUE(p != MAP_FAILED);
	a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	munmap((uint8_t *)a + size, (uintptr_t)p + align - a);
	return (uint8_t *)a;
}

/* ---- custom kernels ------------------------------------------------------ */

/* Lane i loads the 8-byte word at va + 8i and stores it at out + 8i. */
struct ld_args {
	uint64_t va, out;
	unsigned int size;
};

static void load_fn(struct gvm_lane *l, const void *args)
{
	const struct ld_args *a = args;
	uint64_t i = gvm_lane_id(l);
	uint64_t x = gvm_lane_load(l, a->va + i * a->size, a->size);

	gvm_lane_store(l, a->out + i * 8, x, 8);
}

static void kernel(struct gvm_kernel *k, gvm_kernel_fn fn, uint64_t grid,
		   const void *args, size_t size)
{
	ASSERT_OK(gvm_kernel_init(k, "test", fn, grid, args, size));
}

/* ---- configuration ---------------------------------------------------- */

TEST(create_defaults)
{
	struct gvm_device *dev;
	struct gvm_device_info info;
	struct gvm_sim_stats st;

	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_device_query(dev, &info));
	ASSERT_EQ(strncmp(info.name, "sim", 3), 0);
	ASSERT_EQ(info.va_bits, 48);
	ASSERT_EQ(info.page_sizes,
		  GVM_PAGE_4K | GVM_PAGE_64K | GVM_PAGE_2M | GVM_PAGE_1G);
	ASSERT_EQ(info.vram_size, 256ull << 20);
	ASSERT_EQ(info.nr_compute, 2);
	ASSERT_EQ(info.nr_copy, 1);
	ASSERT_EQ(info.tlb_entries, 1024);
	ASSERT_TRUE(info.vram_mappable);
	ASSERT_OK(gvm_sim_stats(dev, &st));
	ASSERT_EQ(st.kernels + st.lanes + st.faults + st.tlb_invals, 0);
	gvm_device_put(dev);
}

TEST(create_named_config)
{
	struct gvm_sim_config cfg = { .name = "gpu-a", .vram_size = 2 << 20,
				      .va_bits = 57, .nr_compute = 3,
				      .nr_copy = 2, .tlb_entries = 64,
				      .page_sizes = GVM_PAGE_4K | GVM_PAGE_2M };
	struct gvm_device *dev;
	struct gvm_device_info info;

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_device_query(dev, &info));
	ASSERT_EQ(strcmp(info.name, "gpu-a"), 0);
	ASSERT_EQ(info.va_bits, 57);
	ASSERT_EQ(info.vram_size, 2 << 20);
	ASSERT_EQ(info.nr_compute, 3);
	ASSERT_EQ(info.nr_copy, 2);
	ASSERT_EQ(info.tlb_entries, 64);
	ASSERT_EQ(info.page_sizes, GVM_PAGE_4K | GVM_PAGE_2M);
	gvm_device_put(dev);
}

TEST(create_rejects_bad_config)
{
	struct gvm_device *dev = NULL;
	struct gvm_sim_config bad[] = {
		{ .va_bits = 40 },
		{ .vram_size = (1 << 20) + 100 },
		{ .vram_size = 512 << 10 },
		{ .page_sizes = GVM_PAGE_2M },
		{ .page_sizes = GVM_PAGE_4K | (1ull << 13) },
		{ .nr_compute = 1000 },
	};
	unsigned int i;

	for (i = 0; i < GVM_ARRAY_SIZE(bad); i++)
		ASSERT_EQ(gvm_sim_device_create(&bad[i], &dev), -EINVAL);
	ASSERT_EQ(gvm_sim_device_create(NULL, NULL), -EINVAL);
	ASSERT_TRUE(dev == NULL);
}

TEST(create_survives_allocation_failures)
{
	struct gvm_sim_config cfg = { .vram_size = 4 << 20 };
	struct gvm_device *dev;
	long n;
	int err;

	for (n = 1;; n++) {
		gvm__inject_arm(GVM_INJECT_ALLOC, n, 0);
		err = gvm_sim_device_create(&cfg, &dev);
		gvm__inject_arm(GVM_INJECT_ALLOC, 0, 0);
		if (!err)
			break;
		ASSERT_EQ(err, -ENOMEM);
		ASSERT_LT(n, 1000);
	}
	gvm_device_put(dev);
}

TEST(stats_rejects_other_devices)
{
	struct gvm_device *td = testdev_create(0, 48);
	struct gvm_sim_stats st;

	ASSERT_EQ(gvm_sim_stats(td, &st), -EINVAL);
	ASSERT_EQ(gvm_sim_stats(NULL, &st), -EINVAL);
	gvm_device_put(td);
}

TEST(ops_reject_bad_arguments)
{
	struct env v;
	struct gvm_fence *f;
	struct gvm_kernel k;
	void *p;
	struct gvm_mem_addr vr = { .region = GVM_MEM_VRAM, .addr = 0 };
	struct gvm_mem_addr sys = { .region = GVM_MEM_SYSTEM, .addr = 0x10000 };

	env_init(&v, 0);
	vr.addr = v.sd->vram_base;
	ASSERT_EQ(ops->vm_attach(v.dev, (struct gvm_vm *)&v, 123, 4, 0, &p),
		  -EINVAL);
	ASSERT_EQ(ops->vm_attach(v.dev, (struct gvm_vm *)&v,
				 v.sd->vram_base + v.sd->vram_size, 4, 0, &p),
		  -EINVAL);
	ASSERT_EQ(ops->tlb_inval(v.dev, v.vm, 4096, 8192, &f), -EINVAL);
	ASSERT_EQ(ops->tlb_inval(v.dev, v.vm, 0, 12288, &f), -EINVAL);
	ASSERT_EQ(ops->copy(v.dev, vr, sys, 100, &f), -EINVAL);
	ASSERT_EQ(ops->copy(v.dev, vr, sys, 0, &f), -EINVAL);
	vr.addr = v.sd->vram_base + v.sd->vram_size - 4096;
	ASSERT_EQ(ops->copy(v.dev, vr, sys, 8192, &f), -EINVAL);
	vr.region = 7;
	ASSERT_EQ(ops->copy(v.dev, vr, sys, 4096, &f), -EINVAL);
	ASSERT_EQ(ops->queue_create(v.dev, v.vm, GVM_ENGINE_BIND, &p),
		  -EOPNOTSUPP);
	ASSERT_EQ(ops->queue_create(v.dev, v.vm, 1u << 9, &p), -EINVAL);
	/* the backend checks what gvm_kernel_init() would refuse */
	ASSERT_EQ(gvm_kernel_init(&k, "test", load_fn, 0, NULL, 0), -EINVAL);
	kernel(&k, load_fn, 1, NULL, 0);
	k.grid = 0;
	ASSERT_EQ(ops->run(v.dev, v.q[0], &k, &f), -EINVAL);
	k.grid = 1;
	k.fn = NULL;
	ASSERT_EQ(ops->run(v.dev, v.q[0], &k, &f), -EINVAL);
	ASSERT_EQ(gvm_kernel_fill(&k, 2, 8, 0), -EINVAL);
	ASSERT_EQ(gvm_kernel_fill(&k, 0, 0, 0), -EINVAL);
	ASSERT_EQ(gvm_kernel_copy(&k, 0, UINT64_MAX - 10, 100), -EINVAL);
	ASSERT_EQ(gvm_kernel_copy(&k, 0x1000, 0x1008, 64), -EINVAL); /* overlap */
	ASSERT_EQ(gvm_kernel_copy(&k, 0x1008, 0x1000, 64), -EINVAL);
	ASSERT_OK(gvm_kernel_copy(&k, 0x1000, 0x1040, 64));	/* adjacent */
	ASSERT_EQ(gvm_kernel_store_dword(&k, 0, 0, 16), -EINVAL);
	ASSERT_EQ(gvm_kernel_store_dword(&k, 2, 0, 32), -EINVAL);
	ASSERT_EQ(gvm_kernel_checksum(&k, 0, 12, 0), -EINVAL);
	ASSERT_EQ(gvm_kernel_atomic_inc(&k, 0, 0), -EINVAL);
	ASSERT_EQ(gvm_kernel_triad(&k, 0, 8, 4, 10, 1.0), -EINVAL);
	ASSERT_EQ(gvm_kernel_triad(&k, 0, 8, 16, 0, 1.0), -EINVAL);
	env_fini(&v);
}

/* ---- kernels on VRAM -------------------------------------------------- */

TEST(store_and_load)
{
	struct env v;
	struct gvm_kernel k;
	uint64_t buf = 0, out;
	uint64_t *cpu, *ocpu;
	struct ld_args a;
	unsigned int s;

	env_init(&v, 0);
	buf = vram_alloc(&v, 2 * K4, K4);
	out = vram_alloc(&v, K4, K4);
	map(&v, 0x100000, 2 * K4, buf, VRAM_RW);
	map(&v, 0x200000, K4, out, VRAM_RW);
	cpu = vcpu(&v, buf);
	ocpu = vcpu(&v, out);

	ASSERT_OK(gvm_kernel_store_dword(&k, 0x100008, 0xdeadbeef, 32));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_OK(gvm_kernel_store_dword(&k, 0x101000, 0x1122334455667788ull,
					 64));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(cpu[1], 0xdeadbeef);
	ASSERT_EQ(cpu[512], 0x1122334455667788ull);

	for (s = 1; s <= 8; s *= 2) {
		cpu[0] = 0x0807060504030201ull;
		a = (struct ld_args){ 0x100000, 0x200000, s };
		kernel(&k, load_fn, 2, &a, sizeof(a));
		ASSERT_EQ(run(&v, &k), 1);
		ASSERT_EQ(ocpu[0], 0x0807060504030201ull &
				   (s == 8 ? ~0ull : (1ull << (8 * s)) - 1));
	}
	ASSERT_EQ(stats(&v).kernels, 6);
	ASSERT_EQ(stats(&v).faults, 0);
	env_fini(&v);
}

/* CPU pointer of GPU VA @va through the committed tables. */
static void *cpu_of(struct env *v, uint64_t va)
{
	struct gvm_pt_xlate x;

	ASSERT_OK(gvm__pt_translate(&v->pt, va, GVM_PT_VIEW_COMMITTED, &x));
	if (x.pte & GVM_PTF_DEVMEM)
		return vcpu(v, x.addr);
	return (void *)(uintptr_t)x.addr;
}

static double *dbl(struct env *v, uint64_t va)
{
	return cpu_of(v, va);
}

/* fill, triad, copy and checksum over [va, va + size), checked by CPU. */
static void check_streaming(struct env *v, uint64_t va, uint64_t size)
{
	struct gvm_kernel k;
	uint64_t sum = 0, i, n = size / 8 / 3;
	uint64_t a = va, b = va + n * 8, c = va + 2 * n * 8;
	uint64_t out = va + size - 8;

	ASSERT_OK(gvm_kernel_fill(&k, va, size, 0x01020304));
	ASSERT_EQ(k.grid, (size + GVM_KERNEL_LANE_BYTES - 1) /
			  GVM_KERNEL_LANE_BYTES);
	ASSERT_EQ(run(v, &k), 1);
	for (i = 0; i < size; i += 4 * 997)
		ASSERT_EQ(*(uint32_t *)cpu_of(v, va + i), 0x01020304);
	ASSERT_EQ(*(uint32_t *)cpu_of(v, va + size - 4), 0x01020304);

	/* triad over three thirds: b = i, c = 2i. */
	for (i = 0; i < n; i++) {
		*dbl(v, b + 8 * i) = (double)i;
		*dbl(v, c + 8 * i) = 2.0 * (double)i;
	}
	ASSERT_OK(gvm_kernel_triad(&k, a, b, c, n, 0.5));
	ASSERT_EQ(run(v, &k), 1);
	for (i = 0; i < n; i++)
		ASSERT_TRUE(*dbl(v, a + 8 * i) == 2.0 * (double)i);

	/* copy c over a, then checksum a (as integers) */
	ASSERT_OK(gvm_kernel_copy(&k, a, c, n * 8));
	ASSERT_EQ(run(v, &k), 1);
	for (i = 0; i < n; i++) {
		uint64_t x = *(uint64_t *)cpu_of(v, a + 8 * i);

		ASSERT_EQ(x, *(uint64_t *)cpu_of(v, c + 8 * i));
		sum += x;
	}
	ASSERT_OK(gvm_kernel_checksum(&k, a, n * 8, out));
	ASSERT_EQ(run(v, &k), 1);
	ASSERT_EQ(*(uint64_t *)cpu_of(v, out), sum);
}

TEST(streaming_kernels_4k_pages)
{
	struct env v;
	uint64_t i, va = 0x40000000;

	env_init(&v, 0);
	/* 96 scattered 4K pages (every other one). */
	for (i = 0; i < 96; i++)
		map(&v, va + i * K4, K4, vram_alloc(&v, 2 * K4, K4), VRAM_RW);
	check_streaming(&v, va, 96 * K4);
	ASSERT_EQ(stats(&v).faults, 0);
	env_fini(&v);
}

TEST(streaming_kernels_64k_pages)
{
	struct env v;
	struct gvm_pt_xlate x;
	uint64_t i, va = 0x40000000;

	env_init(&v, 0);
	for (i = 0; i < 8; i++)
		map(&v, va + i * K64, K64, vram_alloc(&v, 2 * K64, K64), VRAM_RW);
	ASSERT_OK(gvm__pt_translate(&v.pt, va + 5 * K4, GVM_PT_VIEW_COMMITTED,
				    &x));
	ASSERT_EQ(x.page_size, K64);
	check_streaming(&v, va, 8 * K64);
	env_fini(&v);
}

TEST(streaming_kernels_2m_pages)
{
	struct env v;
	struct gvm_sim_stats st;
	uint64_t va = 0x40000000;

	env_init(&v, 0);
	map(&v, va, 2 * M2, vram_alloc(&v, 2 * M2, M2), VRAM_RW);
	check_streaming(&v, va, 2 * M2);
	st = stats(&v);
	/* A handful of walks for 4 MiB: huge pages are cached as such. */
	ASSERT_LT(st.walks, 16);
	ASSERT_GT(st.tlb_hits, st.walks);
	env_fini(&v);
}

TEST(streaming_kernels_1g_system_page)
{
	struct env v;
	uint8_t *host = host_alloc(G1, G1);
	uint64_t va = 4 * G1;

	env_init(&v, 0);
	map(&v, va, G1, (uint64_t)(uintptr_t)host, RW);
	/* Only the first MiB is touched (the rest stays unbacked). */
	check_streaming(&v, va, 1 << 20);
	ASSERT_LT(stats(&v).walks, 8);
	env_fini(&v);
	munmap(host, G1);
}

TEST(system_memory_ptes)
{
	struct env v;
	uint8_t *host = host_alloc(64 * K4, K4);
	uint64_t va = 0x7000000;

	env_init(&v, 0);
	map(&v, va, 64 * K4, (uint64_t)(uintptr_t)host, RW);
	check_streaming(&v, va, 64 * K4);
	env_fini(&v);
	munmap(host, 64 * K4);
}

TEST(five_level_va)
{
	struct gvm_sim_config cfg = { .vram_size = 8 << 20, .va_bits = 57 };
	struct env v;
	struct gvm_kernel k;
	uint64_t buf, va = 1ull << 52;

	env_init_cfg(&v, &cfg, 0);
	ASSERT_EQ(v.pt.levels, 5);
	buf = vram_alloc(&v, K4, K4);
	map(&v, va, K4, buf, VRAM_RW);
	ASSERT_OK(gvm_kernel_store_dword(&k, va + 16, 77, 64));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(((uint64_t *)vcpu(&v, buf))[2], 77);
	/* Beyond 57 bits: not translatable. */
	ASSERT_OK(gvm_kernel_store_dword(&k, 1ull << 57, 1, 64));
	ASSERT_EQ(run(&v, &k), -EIO);
	env_fini(&v);
}

TEST(atomic_inc_on_all_engines)
{
	struct gvm_sim_config cfg = { .vram_size = 8 << 20, .nr_compute = 3 };
	struct env v;
	struct gvm_kernel k;
	struct gvm_fence *f[3];
	uint64_t buf, n = 5000;
	unsigned int i;

	env_init_cfg(&v, &cfg, 0);
	buf = vram_alloc(&v, K4, K4);
	map(&v, 0x10000, K4, buf, VRAM_RW);
	ASSERT_OK(gvm_kernel_atomic_inc(&k, 0x10008, n));
	for (i = 0; i < 3; i++)
		ASSERT_OK(ops->run(v.dev, v.q[i], &k, &f[i]));
	for (i = 0; i < 3; i++) {
		ASSERT_OK(gvm_fence_wait(f[i], GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(gvm_fence_get_status(f[i]), 1);
		gvm_fence_put(f[i]);
	}
	ASSERT_EQ(((uint64_t *)vcpu(&v, buf))[1], 3 * n);
	ASSERT_EQ(stats(&v).lanes, 3 * n);
	env_fini(&v);
}

/* cmpxchg: lane i swaps i -> i + 1 at the word, in order. */
static void cas_fn(struct gvm_lane *l, const void *args)
{
	const uint64_t *va = args;
	uint64_t i = gvm_lane_id(l);

	gvm_lane_atomic_cmpxchg(l, *va, i, i + 1, 4);
}

TEST(atomic_cmpxchg)
{
	struct env v;
	struct gvm_kernel k;
	uint64_t buf, va = 0x10000;

	env_init(&v, 0);
	buf = vram_alloc(&v, K4, K4);
	map(&v, va, K4, buf, VRAM_RW);
	kernel(&k, cas_fn, 100, &va, sizeof(va));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(*(uint32_t *)vcpu(&v, buf), 100);
	env_fini(&v);
}

TEST(fences_signal_in_queue_order)
{
	struct env v;
	struct gvm_kernel k;
	struct gvm_fence *f[32];
	uint64_t buf;
	unsigned int i;

	env_init(&v, 0);
	buf = vram_alloc(&v, K4, K4);
	map(&v, 0x10000, K4, buf, VRAM_RW);
	ASSERT_OK(gvm_kernel_atomic_inc(&k, 0x10000, 50));
	for (i = 0; i < 32; i++)
		ASSERT_OK(ops->run(v.dev, v.q[0], &k, &f[i]));
	for (i = 1; i < 32; i++)
		ASSERT_TRUE(gvm_fence_is_later(f[i], f[i - 1]));
	ASSERT_OK(gvm_fence_wait(f[31], GVM_TIMEOUT_INFINITE));
	for (i = 0; i < 32; i++) {
		ASSERT_TRUE(gvm_fence_is_signaled(f[i]));
		gvm_fence_put(f[i]);
	}
	ASSERT_EQ(*(uint64_t *)vcpu(&v, buf), 32 * 50);
	env_fini(&v);
}

/* ---- faults ------------------------------------------------------------------ */

static uint32_t lanes_seen;

/* Lane i stores at va + 4K * i; counts the lanes that ran. */
struct stride_args {
	uint64_t va;
	uint64_t stride;
	unsigned int access;
};

static void stride_fn(struct gvm_lane *l, const void *args)
{
	const struct stride_args *a = args;
	uint64_t va = a->va + gvm_lane_id(l) * a->stride;

	__atomic_fetch_add(&lanes_seen, 1, __ATOMIC_RELAXED);
	if (a->access == GVM_ACCESS_READ)
		gvm_lane_load(l, va, 8);
	else if (a->access == GVM_ACCESS_WRITE)
		gvm_lane_store(l, va, 1, 8);
	else
		gvm_lane_atomic_add(l, va, 1, 8);
	if (gvm_lane_faulted(l))
		return;
}

TEST(fault_not_present_fails_the_job)
{
	struct env v;
	struct gvm_kernel k;
	struct gvm_fault_info f;
	struct stride_args a = { 0x100000, K4, GVM_ACCESS_WRITE };
	uint64_t buf;

	env_init(&v, 0);
	buf = vram_alloc(&v, 4 * K4, K4);
	/* pages 0, 1, 3 mapped; lane 2 faults, lanes 3..7 are skipped */
	map(&v, 0x100000, 2 * K4, buf, VRAM_RW);
	map(&v, 0x103000, K4, buf + 3 * K4, VRAM_RW);
	kernel(&k, stride_fn, 8, &a, sizeof(a));
	lanes_seen = 0;
	ASSERT_EQ(run_on(&v, 1, &k), -EIO);
	ASSERT_EQ(lanes_seen, 3);
	ASSERT_EQ(nr_faults(), 1);
	f = fault_at(0);
	ASSERT_EQ(f.addr, 0x102000);
	ASSERT_EQ(f.access, GVM_ACCESS_WRITE);
	ASSERT_EQ(f.reason, GVM_FAULT_NOT_PRESENT);
	ASSERT_EQ(f.engine, GVM_ENGINE_COMPUTE);
	ASSERT_EQ(f.engine_instance, 1);
	ASSERT_GT(f.timestamp_ns, 0);
	ASSERT_EQ(((uint64_t *)vcpu(&v, buf))[0], 1);
	ASSERT_EQ(((uint64_t *)vcpu(&v, buf))[3 * 512], 0);
	ASSERT_EQ(stats(&v).faults, 1);

	/* The VM stays usable. */
	kernel(&k, stride_fn, 2, &a, sizeof(a));
	ASSERT_EQ(run_on(&v, 1, &k), 1);
	env_fini(&v);
}

TEST(fault_write_protect_and_atomic)
{
	struct env v;
	struct gvm_kernel k;
	struct stride_args a = { 0x100000, 0, GVM_ACCESS_WRITE };
	uint64_t buf;

	env_init(&v, 0);
	buf = vram_alloc(&v, 2 * K4, K4);
	map(&v, 0x100000, K4, buf, GVM_PT_DEVMEM);		/* read-only */
	map(&v, 0x101000, K4, buf + K4, GVM_PT_DEVMEM | GVM_PT_WRITE);

	a.access = GVM_ACCESS_READ;
	kernel(&k, stride_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), 1);
	a.access = GVM_ACCESS_WRITE;
	kernel(&k, stride_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), -EIO);
	ASSERT_EQ(fault_at(0).reason, GVM_FAULT_WRITE_PROTECT);
	a.access = GVM_ACCESS_ATOMIC;
	kernel(&k, stride_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), -EIO);
	ASSERT_EQ(fault_at(1).reason, GVM_FAULT_WRITE_PROTECT);
	ASSERT_EQ(fault_at(1).access, GVM_ACCESS_ATOMIC);

	a.va = 0x101000;	/* writable, no atomics */
	a.access = GVM_ACCESS_WRITE;
	kernel(&k, stride_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), 1);
	a.access = GVM_ACCESS_ATOMIC;
	kernel(&k, stride_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), -EIO);
	ASSERT_EQ(fault_at(2).reason, GVM_FAULT_ATOMIC);
	ASSERT_EQ(nr_faults(), 3);
	ASSERT_EQ(((uint64_t *)vcpu(&v, buf))[0], 0);
	ASSERT_EQ(((uint64_t *)vcpu(&v, buf))[512], 1);
	env_fini(&v);
}

TEST(bad_lane_arguments_fail_the_job)
{
	struct env v;
	struct gvm_kernel k;
	struct ld_args a = { 0x100001, 0x100000, 8 };

	env_init(&v, 0);
	map(&v, 0x100000, K4, vram_alloc(&v, K4, K4), VRAM_RW);
	kernel(&k, load_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), -EINVAL);
	a = (struct ld_args){ 0x100000, 0x100000, 3 };
	kernel(&k, load_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), -EINVAL);
	ASSERT_EQ(nr_faults(), 0);
	env_fini(&v);
}

/* Resolves a fault by binding the faulting page to fresh VRAM. */
static int bind_on_fault(struct env *v, const struct gvm_fault_info *f)
{
	map(v, f->addr & ~(K4 - 1), K4, vram_alloc(v, K4, K4), VRAM_RW);
	return 0;
}

TEST(fault_resolved_is_replayed)
{
	struct env v;
	struct gvm_kernel k;
	struct stride_args a = { 0x100000, K4, GVM_ACCESS_ATOMIC };
	struct gvm_pt_xlate x;
	unsigned int i;

	env_init(&v, 0);
	faults.resolve = bind_on_fault;
	kernel(&k, stride_fn, 8, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(nr_faults(), 8);
	for (i = 0; i < 8; i++) {
		ASSERT_OK(gvm__pt_translate(&v.pt, 0x100000 + i * K4,
					    GVM_PT_VIEW_COMMITTED, &x));
		ASSERT_EQ(*(uint64_t *)vcpu(&v, x.addr), 1);
	}
	env_fini(&v);
}

/* Resolves by returning 0 without fixing anything. */
static int lie_on_fault(struct env *v, const struct gvm_fault_info *f)
{
	return 0;
}

/*
 * 16 replays, then the job fails; the access is reported once more as
 * GVM_FAULT_REPLAY_LIMIT, which gvm logs: the 16 faults were resolved,
 * so without it the failed job had no fault-log entry.
 */
TEST(fault_replays_are_bounded)
{
	struct env v;
	struct gvm_kernel k;
	struct stride_args a = { 0x100000, 0, GVM_ACCESS_READ };
	struct gvm_fault_info f;
	unsigned int i;

	env_init(&v, 0);
	faults.resolve = lie_on_fault;
	kernel(&k, stride_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), -EIO);
	ASSERT_EQ(nr_faults(), 16 + 1);
	for (i = 0; i < 16; i++)
		ASSERT_EQ(fault_at(i).reason, GVM_FAULT_NOT_PRESENT);
	f = fault_at(16);
	ASSERT_EQ(f.reason, GVM_FAULT_REPLAY_LIMIT);
	ASSERT_EQ(f.addr, 0x100000);
	ASSERT_EQ(f.access, GVM_ACCESS_READ);
	env_fini(&v);
}

TEST(scratch_vm_reads_zero_and_drops_writes)
{
	struct env v;
	struct gvm_kernel k;
	struct ld_args a = { 0x500000, 0x100000, 8 };
	uint64_t out;

	env_init(&v, GVM_ATTACH_SCRATCH);
	out = vram_alloc(&v, K4, K4);
	map(&v, 0x100000, K4, out, VRAM_RW);
	memset(vcpu(&v, out), 0xff, K4);
	kernel(&k, load_fn, 4, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(((uint64_t *)vcpu(&v, out))[0], 0);
	ASSERT_EQ(((uint64_t *)vcpu(&v, out))[3], 0);
	ASSERT_OK(gvm_kernel_fill(&k, 0x800000, 3 * M2, 0xabababab));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_OK(gvm_kernel_checksum(&k, 0x800000, 3 * M2, 0x100000));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(((uint64_t *)vcpu(&v, out))[0], 0);
	ASSERT_OK(gvm_kernel_atomic_inc(&k, 0x900000, 5));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(nr_faults(), 0);
	/* But a write to a read-only page still faults. */
	map(&v, 0x200000, K4, out, GVM_PT_DEVMEM);
	ASSERT_OK(gvm_kernel_store_dword(&k, 0x200000, 1, 32));
	ASSERT_EQ(run(&v, &k), -EIO);
	ASSERT_EQ(nr_faults(), 1);
	env_fini(&v);
}

TEST(null_pages_read_zero_and_drop_writes)
{
	struct env v;
	struct gvm_kernel k;
	uint64_t out;

	env_init(&v, 0);
	out = vram_alloc(&v, K4, K4);
	map(&v, 0x100000, K4, out, VRAM_RW);
	map(&v, 0x40000000, 2 * M2 + 3 * K4, 0, GVM_PT_NULL);
	ASSERT_OK(gvm_kernel_fill(&k, 0x40000000, 2 * M2 + 3 * K4, 7));
	ASSERT_EQ(run(&v, &k), 1);
	*(uint64_t *)vcpu(&v, out) = 99;
	ASSERT_OK(gvm_kernel_checksum(&k, 0x40000000, 2 * M2 + 3 * K4,
				      0x100000));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(*(uint64_t *)vcpu(&v, out), 0);
	ASSERT_OK(gvm_kernel_atomic_inc(&k, 0x40000008, 3));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(nr_faults(), 0);
	env_fini(&v);
}

/* ---- TLB and invalidation ------------------------------------------------ */

TEST(tlb_caches_until_invalidated)
{
	struct env v;
	struct gvm_kernel k;
	struct ld_args a = { 0x100000, 0x200000, 8 };
	struct gvm_pt_extent x;
	struct gvm_pt_tlb tlb;
	uint64_t A, B, out;
	uint64_t *o;

	env_init(&v, 0);
	A = vram_alloc(&v, K4, K4);
	B = vram_alloc(&v, K4, K4);
	out = vram_alloc(&v, K4, K4);
	*(uint64_t *)vcpu(&v, A) = 0xaaaa;
	*(uint64_t *)vcpu(&v, B) = 0xbbbb;
	o = vcpu(&v, out);
	map(&v, 0x100000, K4, A, VRAM_RW);
	map(&v, 0x200000, K4, out, VRAM_RW);
	kernel(&k, load_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(o[0], 0xaaaa);

	/* Rewrite the PTE without invalidating: the engine still uses the
	   translation it cached. */
	x = (struct gvm_pt_extent){ B, K4 };
	ASSERT_OK(gvm__pt_bind(&v.pt, 0x100000, K4, &x, 1, VRAM_RW, &tlb));
	ASSERT_TRUE(tlb.full || tlb.size);
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(o[0], 0xaaaa);
	/* Another engine has not cached it. */
	ASSERT_EQ(run_on(&v, 1, &k), 1);
	ASSERT_EQ(o[0], 0xbbbb);

	tlb_inval_wait(&v, tlb.full ? 0 : tlb.start, tlb.full ? 0 : tlb.size);
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(o[0], 0xbbbb);
	ASSERT_EQ(stats(&v).tlb_invals, 1);

	/* Unbind + invalidate: the next access faults. */
	unmap(&v, 0x100000, K4);
	ASSERT_EQ(run(&v, &k), -EIO);
	ASSERT_EQ(fault_at(0).reason, GVM_FAULT_NOT_PRESENT);
	env_fini(&v);
}

/*
 * A TLB invalidation recycles its request (engine.c, REQUEST RECYCLING):
 * once the VM has had as many requests alive at once before, submitting
 * one allocates nothing, and its fence is on the VM's one fence context
 * with increasing seqnos.
 */
TEST(tlb_inval_allocates_nothing_once_warm)
{
	struct env v;
	struct gvm_fence *f[3];
	unsigned long before;
	unsigned int i, round;

	env_init(&v, 0);
	for (round = 0; round < 3; round++) {
		before = gvm__alloc_count;
		for (i = 0; i < 3; i++)	/* three alive at once */
			ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, K64, &f[i]));
		if (round)
			ASSERT_EQ(gvm__alloc_count, before);
		for (i = 0; i < 3; i++) {
			if (i) {
				ASSERT_EQ(f[i]->context, f[0]->context);
				ASSERT_TRUE(gvm_fence_is_later(f[i], f[i - 1]));
			}
			ASSERT_OK(gvm_fence_wait(f[i], GVM_TIMEOUT_INFINITE));
			ASSERT_EQ(gvm_fence_get_status(f[i]), 1);
		}
		for (i = 0; i < 3; i++)
			gvm_fence_put(f[i]);
	}
	env_fini(&v);
}

/*
 * A request's fence may outlive its VM attachment and the device: the
 * waiter that holds it still finds it complete, and the memory stays
 * valid until its last reference goes (run under ASan).  The latency is
 * long so that the device goes away before the modelled deadline (if the
 * machine is slower than that, the test checks the same things anyway).
 */
TEST(tlb_inval_fence_outlives_the_device)
{
	struct gvm_sim_config cfg = { .vram_size = 64ull << 20,
				      .tlb_inval_latency_ns = 60000000000ull };
	struct gvm_fence *f, *g, *recycled;
	struct env v;

	env_init_cfg(&v, &cfg, 0);
	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, 0, &recycled));
	gvm_fence_put(recycled);	/* back on the free list */
	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, K64, &f));
	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, 0, &g));
	ASSERT_TRUE(gvm_fence_is_later(g, f));
	env_fini(&v);			/* detach, then the device goes */

	ASSERT_OK(gvm_fence_wait(g, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(g), 1);
	ASSERT_EQ(gvm_fence_get_status(f), 1);	/* seqno order */
	gvm_fence_put(g);
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	gvm_fence_put(f);		/* the last one frees the context */
}

TEST(tlb_inval_range_and_full)
{
	struct sim_tlb t;
	struct sim_xlate x = { 0, (uint8_t *)0x1000, 12, 0 }, y;
	uint64_t va;

	ASSERT_OK(gvm__sim_tlb_init(&t, 64));
	for (va = 0; va < 32 * K4; va += K4) {
		x.va = va;
		gvm__sim_tlb_insert(&t, 1, &x);
	}
	x = (struct sim_xlate){ M2, (uint8_t *)0x200000, 21, 0 };
	gvm__sim_tlb_insert(&t, 1, &x);
	x = (struct sim_xlate){ 0, (uint8_t *)0x2000, 12, 0 };
	gvm__sim_tlb_insert(&t, 2, &x);
	ASSERT_TRUE(gvm__sim_tlb_lookup(&t, 1, 31 * K4 + 5, &y));
	ASSERT_EQ(y.va, 31 * K4);
	ASSERT_TRUE(gvm__sim_tlb_lookup(&t, 1, M2 + 12345, &y));
	ASSERT_EQ(y.lg2, 21);
	ASSERT_TRUE(gvm__sim_tlb_lookup(&t, 2, 7, &y));
	ASSERT_TRUE(y.host == (uint8_t *)0x2000);
	ASSERT_FALSE(gvm__sim_tlb_lookup(&t, 3, 7, &y));

	/* [16K, 32K) of VM 1 only */
	gvm__sim_tlb_inval(&t, 1, 4 * K4, 4 * K4);
	ASSERT_TRUE(gvm__sim_tlb_lookup(&t, 1, 3 * K4, &y));
	ASSERT_FALSE(gvm__sim_tlb_lookup(&t, 1, 4 * K4, &y));
	ASSERT_FALSE(gvm__sim_tlb_lookup(&t, 1, 7 * K4, &y));
	ASSERT_TRUE(gvm__sim_tlb_lookup(&t, 2, 0, &y));
	/* a 4K range inside the 2M page drops the whole page */
	gvm__sim_tlb_inval(&t, 1, M2 + 64 * K4, K4);
	ASSERT_FALSE(gvm__sim_tlb_lookup(&t, 1, M2, &y));
	/* full flush of VM 1 */
	gvm__sim_tlb_inval(&t, 1, 0, 0);
	ASSERT_FALSE(gvm__sim_tlb_lookup(&t, 1, 3 * K4, &y));
	ASSERT_TRUE(gvm__sim_tlb_lookup(&t, 2, 0, &y));
	gvm__sim_tlb_fini(&t);
}

/*
 * The occupancy counters (mmu.c) let an invalidation return without a scan
 * when the TLB holds nothing of the VM's bucket.  Random fills, lookups and
 * invalidations over VMs that share buckets (1, 65, 129) or not, against a
 * model of what may still be cached: after every invalidation no entry of
 * the range may be left in either level, a hit must be a translation
 * inserted since the last invalidation that covered it, and the counters
 * must match a recount.
 */
/* Model keys: 5 VMs x (64 4K + 32 64K + 16 2M + 4 1G pages). */
#define REF_VMS 5
#define REF_KEYS 116

static const uint64_t ref_vms[REF_VMS] = { 1, 2, 1 + SIM_TLB_VM_BUCKETS,
					   1 + 2 * SIM_TLB_VM_BUCKETS, 3 };
static const uint32_t ref_lg2[4] = { 12, 16, 21, 30 };
static const unsigned int ref_pages[4] = { 64, 32, 16, 4 };
static const unsigned int ref_first[4] = { 0, 64, 96, 112 };

static uint8_t *ref_host(uint64_t vm, uint64_t va, uint32_t lg2)
{
	return (uint8_t *)(uintptr_t)(va ^ (vm << 48) ^ ((uint64_t)lg2 << 40));
}

/* Index of (VM slot, size class, page base) in the model. */
static unsigned int ref_key(unsigned int v, unsigned int c, uint64_t va)
{
	return v * REF_KEYS + ref_first[c] + (unsigned int)(va >> ref_lg2[c]);
}

static bool ref_overlaps(uint64_t va, uint32_t lg2, uint64_t start,
			 uint64_t size)
{
	return !size || (va < start + size && start < va + (1ull << lg2));
}

static void ref_check_gone(const struct sim_tlb *t, uint64_t vm,
			   uint64_t start, uint64_t size)
{
	size_t i, n = (size_t)t->nr_sets * SIM_TLB_WAYS;

	for (i = 0; i < n + SIM_TLB_L0; i++) {
		const struct sim_tlb_entry *e = i < n ? &t->sets[i] :
							&t->l0[i - n];

		if (e->vm_id && (!vm || e->vm_id == vm))
			ASSERT_FALSE(ref_overlaps(e->x.va, e->x.lg2, start,
						  size));
	}
}

/* The model's side of an invalidation. */
static void ref_drop(bool *live, uint64_t vm, uint64_t start, uint64_t size)
{
	unsigned int v, c, i;

	for (v = 0; v < REF_VMS; v++) {
		if (vm && ref_vms[v] != vm)
			continue;
		for (c = 0; c < 4; c++) {
			for (i = 0; i < ref_pages[c]; i++) {
				uint64_t va = (uint64_t)i << ref_lg2[c];

				if (ref_overlaps(va, ref_lg2[c], start, size))
					live[ref_key(v, c, va)] = false;
			}
		}
	}
}

/*
 * Against the model, with a TLB of @entries: 64 (one word of the in-use
 * bitmap that invalidations walk) or 1024 (16 words, the default).
 */
static void tlb_ref_run(unsigned int entries)
{
	static const uint64_t others[] = { 0, 7, 7 + SIM_TLB_VM_BUCKETS };
	bool live[REF_VMS * REF_KEYS] = { false };
	struct gvm_rng rng = { gvm_test_seed() + entries };
	unsigned int step, skips = 0, scans = 0, hits = 0;
	struct sim_tlb t;

	ASSERT_OK(gvm__sim_tlb_init(&t, entries));
	for (step = 0; step < 100000; step++) {
		unsigned int op = (unsigned int)gvm_rng_below(&rng, 10);
		unsigned int c = (unsigned int)gvm_rng_below(&rng, 4);
		unsigned int v = (unsigned int)gvm_rng_below(&rng, REF_VMS);
		uint64_t vm = ref_vms[v];
		uint64_t va = gvm_rng_below(&rng, ref_pages[c]) << ref_lg2[c];
		struct sim_xlate x, y;

		if (op < 4) {		/* fill */
			x = (struct sim_xlate){
				va, ref_host(vm, va, ref_lg2[c]), ref_lg2[c], 0
			};
			gvm__sim_tlb_insert(&t, vm, &x);
			live[ref_key(v, c, va)] = true;
		} else if (op < 7) {	/* lookup */
			va += gvm_rng_below(&rng, 1ull << ref_lg2[c]);
			if (gvm__sim_tlb_lookup(&t, vm, va, &y)) {
				hits++;
				for (c = 0; c < 4 && ref_lg2[c] != y.lg2; c++)
					;
				ASSERT_LT(c, 4);
				ASSERT_TRUE(va - y.va < (1ull << y.lg2));
				ASSERT_TRUE(y.host == ref_host(vm, y.va, y.lg2));
				/* never a translation dropped since */
				ASSERT_TRUE(live[ref_key(v, c, y.va)]);
			}
		} else {		/* invalidate */
			uint64_t size = 0, start = 0;
			bool empty;

			if (gvm_rng_below(&rng, 4) == 0)
				vm = others[gvm_rng_below(&rng, 3)];
			if (gvm_rng_below(&rng, 8)) {
				uint32_t lg2 = 12 + (uint32_t)gvm_rng_below(
							&rng, 21);

				size = 1ull << lg2;
				start = gvm_rng_below(&rng, (4ull << 30) >> lg2)
					<< lg2;
			}
			empty = vm ? !t.vm_count[vm % SIM_TLB_VM_BUCKETS] :
				     !t.nr_valid;
			skips += empty;
			scans += !empty;
			gvm__sim_tlb_inval(&t, vm, start, size);
			ref_check_gone(&t, vm, start, size);
			ref_drop(live, vm, start, size);
		}
		ASSERT_OK(gvm__sim_tlb_validate(&t));
	}
	/* Both paths were taken, and the TLB was used. */
	ASSERT_GT(skips, 100);
	ASSERT_GT(scans, 100);
	ASSERT_GT(hits, 1000);
	gvm__sim_tlb_fini(&t);
}

TEST(tlb_inval_skips_only_what_is_not_cached)
{
	tlb_ref_run(64);
	tlb_ref_run(1024);
}

TEST(tlb_inval_idle_engines_ack_at_once)
{
	struct env v;
	struct gvm_fence *f;

	env_init(&v, 0);
	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, 0, &f));
	ASSERT_TRUE(gvm_fence_is_signaled(f));
	gvm_fence_put(f);
	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, M2, M2, &f));
	ASSERT_TRUE(gvm_fence_is_signaled(f));
	gvm_fence_put(f);
	env_fini(&v);
}

static uint32_t spin_started, spin_release;

/* Lane 0 spins without lane calls until released, then loads. */
static void spin_fn(struct gvm_lane *l, const void *args)
{
	const uint64_t *va = args;

	__atomic_store_n(&spin_started, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&spin_release, __ATOMIC_ACQUIRE))
		sched_yield();
	gvm_lane_load(l, *va, 8);
}

TEST(tlb_inval_waits_for_a_busy_engine_boundary)
{
	struct env v;
	struct gvm_kernel k;
	struct gvm_fence *job, *inv;
	uint64_t va = 0x100000;

	env_init(&v, 0);
	map(&v, va, K4, vram_alloc(&v, K4, K4), VRAM_RW);
	spin_started = spin_release = 0;
	kernel(&k, spin_fn, 1, &va, sizeof(va));
	ASSERT_OK(ops->run(v.dev, v.q[0], &k, &job));
	gvm_test_wait_flag(&spin_started);

	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, 0, &inv));
	/* Engine 0 is inside a lane and makes no lane call: it cannot have
	   acknowledged, whatever the timing. */
	gvm_test_sleep_ns(20 * 1000 * 1000);
	ASSERT_FALSE(gvm_fence_is_signaled(inv));
	ASSERT_FALSE(gvm_fence_is_signaled(job));
	__atomic_store_n(&spin_release, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_fence_wait(inv, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(inv), 1);
	ASSERT_OK(gvm_fence_wait(job, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(job), 1);
	gvm_fence_put(inv);
	gvm_fence_put(job);
	env_fini(&v);
}

/* Lane 0 spins without lane calls until released, then ends without one. */
static void spin_end_fn(struct gvm_lane *l, const void *args)
{
	(void)l;
	(void)args;
	__atomic_store_n(&spin_started, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&spin_release, __ATOMIC_ACQUIRE))
		sched_yield();
}

/*
 * SEQNO ORDER (sim/engine.c): a request complete means every earlier one
 * of its VM is.  Two requests queue on a busy engine and complete
 * together; the engine then ends its kernel without a lane call, so it
 * acknowledges what was queued as it stops translating, and a request
 * submitted after that finds it idle, complete at once: the earlier one
 * must be complete already, without a wait.
 */
TEST(tlb_inval_requests_complete_in_seqno_order)
{
	struct gvm_fence *job, *m1, *m2, *m3, *n;
	struct gvm_kernel k;
	struct env v;

	env_init(&v, 0);
	spin_started = spin_release = 0;
	kernel(&k, spin_end_fn, 1, NULL, 0);
	ASSERT_OK(ops->run(v.dev, v.q[0], &k, &job));
	gvm_test_wait_flag(&spin_started);
	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, 0, &m1));
	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, K4, &m2));
	ASSERT_FALSE(gvm_fence_is_signaled(m1));
	ASSERT_FALSE(gvm_fence_is_signaled(m2));
	ASSERT_TRUE(gvm_fence_is_later(m2, m1));
	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, K4, K4, &m3));
	__atomic_store_n(&spin_release, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_fence_wait(job, GVM_TIMEOUT_INFINITE));
	ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, 0, &n));
	ASSERT_TRUE(gvm_fence_is_signaled(n));
	ASSERT_TRUE(gvm_fence_is_signaled(m3));
	ASSERT_TRUE(gvm_fence_is_signaled(m2));
	ASSERT_TRUE(gvm_fence_is_signaled(m1));
	gvm_fence_put(n);
	gvm_fence_put(m3);
	gvm_fence_put(m2);
	gvm_fence_put(m1);
	gvm_fence_put(job);
	env_fini(&v);
}

TEST(tlb_inval_latency_is_modelled_without_blocking)
{
	struct gvm_sim_config cfg = { .vram_size = 4 << 20,
				      .tlb_inval_latency_ns = 30000000 };
	struct env v;
	struct gvm_fence *f[4];
	int64_t t0;
	unsigned int i;

	env_init_cfg(&v, &cfg, 0);
	t0 = gvm__now_ns();
	for (i = 0; i < 4; i++)
		ASSERT_OK(ops->tlb_inval(v.dev, v.vm, 0, 0, &f[i]));
	/* Lower bounds only: each fence signals >= 30 ms after its submit,
	   and the submitter did not sleep for them (it would have taken
	   120 ms): if the last one signalled already, 30 ms have passed.
	   The state is read before the clock, so a preemption between the
	   two cannot make a correct run fail. */
	if (gvm_fence_is_signaled(f[3]))
		ASSERT_GE(gvm__now_ns() - t0, 30000000);
	for (i = 0; i < 4; i++) {
		ASSERT_OK(gvm_fence_wait(f[i], GVM_TIMEOUT_INFINITE));
		ASSERT_GE(gvm_fence_timestamp(f[i]) - t0, 30000000);
		gvm_fence_put(f[i]);
	}
	env_fini(&v);
}

/* A kernel that keeps loading (lane calls) until told to stop. */
static void poll_fn(struct gvm_lane *l, const void *args)
{
	const uint64_t *va = args;

	__atomic_store_n(&spin_started, 1, __ATOMIC_RELEASE);
	while (!gvm_lane_faulted(l) && !gvm_lane_load(l, *va, 8))
		;
}

TEST(tlb_inval_busy_engine_acks_at_lane_calls)
{
	struct env v;
	struct gvm_kernel k;
	struct gvm_fence *job;
	uint64_t va = 0x100000, buf;
	unsigned int i;

	env_init(&v, 0);
	buf = vram_alloc(&v, K4, K4);
	map(&v, va, K4, buf, VRAM_RW);
	spin_started = 0;
	kernel(&k, poll_fn, 1, &va, sizeof(va));
	ASSERT_OK(ops->run(v.dev, v.q[0], &k, &job));
	gvm_test_wait_flag(&spin_started);
	for (i = 0; i < 100; i++)
		tlb_inval_wait(&v, 0, i & 1 ? 0 : K4);
	ASSERT_FALSE(gvm_fence_is_signaled(job));
	__atomic_store_n((uint64_t *)vcpu(&v, buf), 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_fence_wait(job, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(job), 1);
	gvm_fence_put(job);
	ASSERT_EQ(stats(&v).tlb_invals, 100);
	env_fini(&v);
}

/*
 * The inline fast path (<gvm/kernel.h>) keeps the lane's last translation
 * and must drop it when an invalidation is queued: the kernel polls a
 * word of page A (0) through one VA; the test points the PTE at page B
 * (7) without invalidating (the engine may keep using A), then
 * invalidates: the kernel must see B and end.  It counts its loads, which
 * must be mostly fast-path hits (not TLB lookups).
 */
struct fast_args {
	uint64_t va, out;
};

static void fast_poll_fn(struct gvm_lane *l, const void *args)
{
	const struct fast_args *a = args;
	uint64_t x, n = 0;

	do {
		x = gvm_lane_load(l, a->va, 8);
		if (!n++)
			__atomic_store_n(&spin_started, 1, __ATOMIC_RELEASE);
	} while (!x && !gvm_lane_faulted(l));
	gvm_lane_store(l, a->out, x, 8);
	gvm_lane_store(l, a->out + 8, n, 8);
}

TEST(fast_path_sees_a_pending_invalidation)
{
	struct env v;
	struct gvm_kernel k;
	struct gvm_fence *job;
	struct fast_args a = { 0x100000, 0x200000 };
	struct gvm_pt_extent x;
	struct gvm_pt_tlb tlb;
	struct gvm_sim_stats s0, s1;
	uint64_t A, B, out, *o;

	env_init(&v, 0);
	A = vram_alloc(&v, K4, K4);
	B = vram_alloc(&v, K4, K4);
	out = vram_alloc(&v, K4, K4);
	*(uint64_t *)vcpu(&v, B) = 7;
	o = vcpu(&v, out);
	map(&v, a.va, K4, A, VRAM_RW);
	map(&v, a.out, K4, out, VRAM_RW);
	s0 = stats(&v);
	spin_started = 0;
	kernel(&k, fast_poll_fn, 1, &a, sizeof(a));
	ASSERT_OK(ops->run(v.dev, v.q[0], &k, &job));
	gvm_test_wait_flag(&spin_started);
	x = (struct gvm_pt_extent){ B, K4 };
	ASSERT_OK(gvm__pt_bind(&v.pt, a.va, K4, &x, 1, VRAM_RW, &tlb));
	tlb_inval_wait(&v, a.va, K4);
	ASSERT_OK(gvm_fence_wait(job, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(job), 1);
	gvm_fence_put(job);
	ASSERT_EQ(o[0], 7);
	s1 = stats(&v);
	/* Each TLB lookup is a full-path call: a few, whatever the loads. */
	ASSERT_LE((s1.tlb_hits + s1.tlb_misses) - (s0.tlb_hits + s0.tlb_misses),
		  8);
	ASSERT_GE(o[1], 2);
	env_fini(&v);
}

/* Up to 4 accesses of 8 bytes in order: op = offset from va, | 1 for a
   store (of 0x55), else a load whose value goes to out + 8 * i. */
struct fast_seq_args {
	uint64_t va, out;
	uint64_t op[4];		/* offset | 1: store, else load */
};

static void fast_seq_fn(struct gvm_lane *l, const void *args)
{
	const struct fast_seq_args *a = args;
	unsigned int i;

	for (i = 0; i < 4 && !gvm_lane_faulted(l); i++) {
		uint64_t op = a->op[i];

		if (op & 1)
			gvm_lane_store(l, a->va + (op & ~1ull), 0x55, 8);
		else
			gvm_lane_store(l, a->out + 8 * i,
				       gvm_lane_load(l, a->va + op, 8), 8);
	}
}

/*
 * What the fast path caches never widens what the full path allows: a
 * store to a read-only page after loads from it still faults, and a
 * misaligned access to the cached page still fails the job.
 */
TEST(fast_path_keeps_permissions_and_checks)
{
	struct env v;
	struct gvm_kernel k;
	struct fast_seq_args a = { 0x100000, 0x200000, { 0, 8, 16 | 1, 24 } };
	uint64_t buf, out;

	env_init(&v, 0);
	buf = vram_alloc(&v, K4, K4);
	out = vram_alloc(&v, K4, K4);
	((uint64_t *)vcpu(&v, buf))[1] = 9;
	map(&v, a.va, K4, buf, GVM_PT_DEVMEM);		/* read-only */
	map(&v, a.out, K4, out, VRAM_RW);
	kernel(&k, fast_seq_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), -EIO);
	ASSERT_EQ(nr_faults(), 1);
	ASSERT_EQ(fault_at(0).reason, GVM_FAULT_WRITE_PROTECT);
	ASSERT_EQ(fault_at(0).addr, a.va + 16);
	ASSERT_EQ(((uint64_t *)vcpu(&v, out))[1], 9);
	ASSERT_EQ(((uint64_t *)vcpu(&v, buf))[2], 0);

	/* Writable now: the store lands; then a misaligned load fails. */
	unmap(&v, a.va, K4);
	map(&v, a.va, K4, buf, VRAM_RW);
	a.op[3] = 28;
	kernel(&k, fast_seq_fn, 1, &a, sizeof(a));
	ASSERT_EQ(run(&v, &k), -EINVAL);
	ASSERT_EQ(((uint64_t *)vcpu(&v, buf))[2], 0x55);
	ASSERT_EQ(nr_faults(), 1);
	env_fini(&v);
}

/*
 * The fault handler rebinds page A (live span) and waits for the TLB
 * invalidation from the faulting engine's thread: the engine is not
 * translating, so it acknowledges at once (no deadlock), and the lane is
 * restarted because its span of A went stale.
 */
static uint32_t restarts_seen;
static uint64_t new_a;

static int move_a_on_fault(struct env *v, const struct gvm_fault_info *f)
{
	if (f->addr >= 0x200000) {
		/* move A (an invalidation of a live span), then bind B */
		map(v, 0x100000, K4, new_a, VRAM_RW);
		map(v, 0x200000, K4, vram_alloc(v, K4, K4), VRAM_RW);
	}
	return 0;
}

static void two_spans_fn(struct gvm_lane *l, const void *args)
{
	size_t n = 8;
	uint64_t *a, *b;

	__atomic_fetch_add(&restarts_seen, 1, __ATOMIC_RELAXED);
	a = gvm_lane_span(l, 0x100000, &n, GVM_ACCESS_WRITE);
	if (!a)
		return;
	n = 8;
	b = gvm_lane_span(l, 0x200000, &n, GVM_ACCESS_WRITE);
	if (!b)
		return;
	*a = 11;
	*b = 22;
}

TEST(span_made_stale_by_a_fault_restarts_the_lane)
{
	struct env v;
	struct gvm_kernel k;
	struct gvm_pt_xlate x;

	env_init(&v, 0);
	map(&v, 0x100000, K4, vram_alloc(&v, K4, K4), VRAM_RW);
	new_a = vram_alloc(&v, K4, K4);
	faults.resolve = move_a_on_fault;
	restarts_seen = 0;
	kernel(&k, two_spans_fn, 1, NULL, 0);
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(restarts_seen, 2);
	ASSERT_EQ(nr_faults(), 1);
	ASSERT_EQ(*(uint64_t *)vcpu(&v, new_a), 11);
	ASSERT_OK(gvm__pt_translate(&v.pt, 0x200000, GVM_PT_VIEW_COMMITTED,
				    &x));
	ASSERT_EQ(*(uint64_t *)vcpu(&v, x.addr), 22);
	env_fini(&v);
}

TEST(span_fault_without_invalidation_keeps_spans)
{
	struct env v;
	struct gvm_kernel k;

	env_init(&v, 0);
	map(&v, 0x100000, K4, vram_alloc(&v, K4, K4), VRAM_RW);
	faults.resolve = bind_on_fault;		/* binds B, invalidates nothing */
	restarts_seen = 0;
	kernel(&k, two_spans_fn, 1, NULL, 0);
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(restarts_seen, 1);
	ASSERT_EQ(nr_faults(), 1);
	env_fini(&v);
}

/* ---- the copy engine ------------------------------------------------------ */

TEST(copy_engine_moves_bytes)
{
	struct env v;
	struct gvm_fence *f;
	uint8_t *host = host_alloc(4 * K64, K4), *back = host_alloc(4 * K64, K4);
	uint64_t vr;
	struct gvm_mem_addr s, d;
	unsigned int i;

	env_init(&v, 0);
	vr = vram_alloc(&v, 4 * K64, K4);
	for (i = 0; i < 4 * K64; i++)
		host[i] = (uint8_t)(i * 7);
	d = (struct gvm_mem_addr){ .region = GVM_MEM_VRAM, .addr = vr };
	s = (struct gvm_mem_addr){ .region = GVM_MEM_SYSTEM, .addr = (uint64_t)(uintptr_t)host };
	ASSERT_OK(ops->copy(v.dev, d, s, 4 * K64, &f));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
	ASSERT_EQ(memcmp(vcpu(&v, vr), host, 4 * K64), 0);
	s = d;
	d = (struct gvm_mem_addr){ .region = GVM_MEM_SYSTEM, .addr = (uint64_t)(uintptr_t)back };
	ASSERT_OK(ops->copy(v.dev, d, s, 4 * K64, &f));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
	ASSERT_EQ(memcmp(back, host, 4 * K64), 0);
	ASSERT_EQ(stats(&v).bytes_copied, 8 * K64);
	env_fini(&v);
	munmap(host, 4 * K64);
	munmap(back, 4 * K64);
}

/*
 * A kernel of a COPY exec queue faults, and the fault's service waits for
 * a copy (gvm's service migrates SVM ranges and evicts BOs through
 * ops->copy).  Copies run on migration engines, which run no kernels, so
 * the copy completes; queued on the copy engine the faulting kernel
 * stalls, it would wait for that kernel forever.
 */
static uint64_t copy_src, copy_dst;

static int copy_then_bind(struct env *v, const struct gvm_fault_info *f)
{
	struct gvm_mem_addr d = { .region = GVM_MEM_VRAM, .addr = copy_dst };
	struct gvm_mem_addr s = { .region = GVM_MEM_VRAM, .addr = copy_src };
	struct gvm_fence *done;
	int st;

	ASSERT_OK(ops->copy(v->dev, d, s, K4, &done));
	ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(done);
	gvm_fence_put(done);
	if (st != 1)
		return -EIO;
	return bind_on_fault(v, f);
}

TEST(copy_completes_while_a_copy_queue_kernel_faults)
{
	struct stride_args a = { 0x100000, K4, GVM_ACCESS_WRITE };
	struct gvm_kernel k;
	struct gvm_fence *f;
	struct env v;
	void *cq;

	env_init(&v, 0);		/* one copy engine */
	copy_src = vram_alloc(&v, K4, K4);
	copy_dst = vram_alloc(&v, K4, K4);
	memset(vcpu(&v, copy_src), 0x5a, K4);
	ASSERT_OK(ops->queue_create(v.dev, v.vm, GVM_ENGINE_COPY, &cq));
	faults.resolve = copy_then_bind;
	kernel(&k, stride_fn, 2, &a, sizeof(a));
	ASSERT_OK(ops->run(v.dev, cq, &k, &f));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
	ASSERT_EQ(nr_faults(), 2);
	ASSERT_EQ(fault_at(0).engine, GVM_ENGINE_COPY);
	ASSERT_EQ(memcmp(vcpu(&v, copy_dst), vcpu(&v, copy_src), K4), 0);
	ASSERT_EQ(stats(&v).bytes_copied, 2 * K4);
	ops->queue_destroy(v.dev, cq);
	env_fini(&v);
}

TEST(copy_engine_models_latency_and_bandwidth)
{
	struct gvm_sim_config cfg = { .vram_size = 8 << 20,
				      .copy_bw = 1000000000ull,
				      .copy_latency_ns = 5000000 };
	struct env v;
	struct gvm_fence *f[3];
	uint64_t vr;
	struct gvm_mem_addr s, d;
	int64_t t0;
	unsigned int i;

	env_init_cfg(&v, &cfg, 0);
	vr = vram_alloc(&v, 2 * M2, K4);
	d = (struct gvm_mem_addr){ .region = GVM_MEM_VRAM, .addr = vr };
	s = (struct gvm_mem_addr){ .region = GVM_MEM_VRAM, .addr = vr + M2 };
	t0 = gvm__now_ns();
	for (i = 0; i < 3; i++)
		ASSERT_OK(ops->copy(v.dev, d, s, M2, &f[i]));
	for (i = 0; i < 3; i++) {
		ASSERT_OK(gvm_fence_wait(f[i], GVM_TIMEOUT_INFINITE));
		ASSERT_EQ(gvm_fence_get_status(f[i]), 1);
		/* (i + 1) transfers of 2 MiB at 1 GB/s, then the latency */
		ASSERT_GE(gvm_fence_timestamp(f[i]) - t0,
			  5000000 + (int64_t)(i + 1) * 2097152);
		if (i)
			ASSERT_GE(gvm_fence_timestamp(f[i]),
				  gvm_fence_timestamp(f[i - 1]));
	}
	for (i = 0; i < 3; i++)
		gvm_fence_put(f[i]);
	env_fini(&v);
}

TEST(copy_from_unmapped_host_memory_fails_cleanly)
{
	struct env v;
	struct gvm_fence *f;
	uint8_t *host = host_alloc(4 * K4, K4);
	struct gvm_mem_addr s, d;

	env_init(&v, 0);
	munmap(host + 2 * K4, K4);
	d = (struct gvm_mem_addr){ .region = GVM_MEM_VRAM, .addr = vram_alloc(&v, 4 * K4, K4) };
	s = (struct gvm_mem_addr){ .region = GVM_MEM_SYSTEM, .addr = (uint64_t)(uintptr_t)host };
	ASSERT_OK(ops->copy(v.dev, d, s, 4 * K4, &f));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), -EFAULT);
	gvm_fence_put(f);
	/* and the other way */
	ASSERT_OK(ops->copy(v.dev, s, d, 4 * K4, &f));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), -EFAULT);
	gvm_fence_put(f);
	env_fini(&v);
	munmap(host, 2 * K4);
	munmap(host + 3 * K4, K4);
}

/* ---- the guard ------------------------------------------------------------- */

TEST(guard_span_over_unmapped_host_page)
{
	struct env v;
	struct gvm_kernel k;
	uint8_t *host = host_alloc(4 * K4, K4);
	uint64_t va = 0x300000, out;
	struct gvm_fault_info f;

	env_init(&v, 0);
	out = vram_alloc(&v, K4, K4);
	map(&v, 0x100000, K4, out, VRAM_RW);
	memset(host, 1, 4 * K4);
	map(&v, va, 4 * K4, (uint64_t)(uintptr_t)host, RW);
	/* The host unmaps page 2 behind the device's back. */
	munmap(host + 2 * K4, K4);

	ASSERT_OK(gvm_kernel_checksum(&k, va, 4 * K4, 0x100000));
	ASSERT_EQ(run(&v, &k), -EIO);
	ASSERT_EQ(nr_faults(), 1);
	f = fault_at(0);
	ASSERT_EQ(f.reason, GVM_FAULT_SYSMEM_GONE);
	ASSERT_EQ(f.addr, va + 2 * K4);
	ASSERT_EQ(f.access, GVM_ACCESS_READ);

	/* The engine and the VM keep working. */
	ASSERT_OK(gvm_kernel_checksum(&k, va, 2 * K4, 0x100000));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(*(uint64_t *)vcpu(&v, out), 2 * K4 / 8 * 0x0101010101010101ull);
	ASSERT_OK(gvm_kernel_fill(&k, va, 4 * K4, 5));
	ASSERT_EQ(run(&v, &k), -EIO);
	ASSERT_EQ(fault_at(1).access, GVM_ACCESS_WRITE);
	ASSERT_EQ(fault_at(1).addr, va + 2 * K4);
	env_fini(&v);
	munmap(host, 2 * K4);
	munmap(host + 3 * K4, K4);
}

TEST(guard_lane_calls_on_unmapped_host_page)
{
	struct env v;
	struct gvm_kernel k;
	uint8_t *host = host_alloc(2 * K4, K4);
	uint64_t va = 0x300000;
	struct stride_args a = { va, K4, GVM_ACCESS_READ };
	unsigned int acc[3] = { GVM_ACCESS_READ, GVM_ACCESS_WRITE,
				GVM_ACCESS_ATOMIC };
	unsigned int i;

	env_init(&v, 0);
	map(&v, va, 2 * K4, (uint64_t)(uintptr_t)host, RW);
	munmap(host + K4, K4);
	for (i = 0; i < 3; i++) {
		a.access = acc[i];
		kernel(&k, stride_fn, 2, &a, sizeof(a));
		ASSERT_EQ(run(&v, &k), -EIO);
		ASSERT_EQ(fault_at(i).reason, GVM_FAULT_SYSMEM_GONE);
		ASSERT_EQ(fault_at(i).addr, va + K4);
		ASSERT_EQ(fault_at(i).access, acc[i]);
	}
	ASSERT_EQ(*(uint64_t *)host, 2);	/* the write and the atomic */
	env_fini(&v);
	munmap(host, K4);
}

/* Resolves SYSMEM_GONE by mapping the host page again (same address). */
static uint8_t *remap_host;

static int remap_on_fault(struct env *v, const struct gvm_fault_info *f)
{
	/* NOREPLACE: should another thread have mapped something into
	   the hole meanwhile (TSan's runtime does), fail, not replace it. */
	void *p = mmap(remap_host, K4, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
		       0);

	ASSERT_TRUE(p == remap_host);
	memset(p, 2, K4);
	return 0;
}

static void count_checksum_fn(struct gvm_lane *l, const void *args)
{
	__atomic_fetch_add(&restarts_seen, 1, __ATOMIC_RELAXED);
	((gvm_kernel_fn)((const uint64_t *)args)[3])(l, args);
}

TEST(guard_fault_resolved_restarts_the_lane)
{
	struct env v;
	struct gvm_kernel k, ck;
	uint8_t *host = host_alloc(4 * K4, K4);
	uint64_t va = 0x300000, out;

	env_init(&v, 0);
	out = vram_alloc(&v, K4, K4);
	map(&v, 0x100000, K4, out, VRAM_RW);
	memset(host, 1, 4 * K4);
	map(&v, va, 4 * K4, (uint64_t)(uintptr_t)host, RW);
	munmap(host + K4, K4);
	remap_host = host + K4;
	faults.resolve = remap_on_fault;

	/* checksum, wrapped to count how often lane 0 starts */
	ASSERT_OK(gvm_kernel_checksum(&ck, va, 4 * K4, 0x100000));
	kernel(&k, count_checksum_fn, 1, ck.args, ck.args_size);
	k.args[3] = (uint64_t)(uintptr_t)ck.fn;
	k.args_size = 32;
	restarts_seen = 0;
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_EQ(restarts_seen, 2);
	ASSERT_EQ(nr_faults(), 1);
	ASSERT_EQ(fault_at(0).reason, GVM_FAULT_SYSMEM_GONE);
	ASSERT_EQ(*(uint64_t *)vcpu(&v, out),
		  3 * K4 / 8 * 0x0101010101010101ull +
		  K4 / 8 * 0x0202020202020202ull);
	env_fini(&v);
	munmap(host, 4 * K4);
}

/* An address nothing maps (hidden from the compiler's bounds checks). */
static volatile uintptr_t wild_addr = 16;

static void wild_fn(struct gvm_lane *l, const void *args)
{
	(void)*(volatile uint64_t *)wild_addr;	/* not a span: a bug */
}

static void wild_store(void)
{
	*(volatile int *)wild_addr = 1;
}

static void raise_segv(void)
{
	raise(SIGSEGV);
}

/*
 * A lane restarted after each resolved fault whose host page never comes
 * back: 16 restarts, then the job fails, and the access of the fault
 * that restarted it last is reported as GVM_FAULT_REPLAY_LIMIT (gvm logs
 * it; the 17 faults before were resolved).
 */
TEST(guard_lane_restarts_are_bounded)
{
	struct env v;
	struct gvm_kernel k;
	uint8_t *host = host_alloc(2 * K4, K4);
	uint64_t va = 0x300000, out;
	struct gvm_fault_info f;
	unsigned int i;

	env_init(&v, 0);
	out = vram_alloc(&v, K4, K4);
	map(&v, 0x100000, K4, out, VRAM_RW);
	map(&v, va, 2 * K4, (uint64_t)(uintptr_t)host, RW);
	munmap(host + K4, K4);
	faults.resolve = lie_on_fault;
	ASSERT_OK(gvm_kernel_checksum(&k, va, 2 * K4, 0x100000));
	ASSERT_EQ(run(&v, &k), -EIO);
	/* the first fault and one after each of the 16 restarts */
	ASSERT_EQ(nr_faults(), 17 + 1);
	for (i = 0; i < 17; i++)
		ASSERT_EQ(fault_at(i).reason, GVM_FAULT_SYSMEM_GONE);
	f = fault_at(17);
	ASSERT_EQ(f.reason, GVM_FAULT_REPLAY_LIMIT);
	ASSERT_EQ(f.addr, va + K4);
	ASSERT_EQ(f.access, GVM_ACCESS_READ);
	env_fini(&v);
	munmap(host, K4);
}

TEST(guard_passes_other_faults_on)
{
	struct gvm_device *dev;

	/* With the handler installed, a fault elsewhere still kills. */
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	gvm_test_expect_crash(wild_store);
	gvm_test_expect_crash(raise_segv);
	gvm_device_put(dev);
}

static void run_wild_kernel(void)
{
	struct env v;
	struct gvm_kernel k;

	env_init(&v, 0);
	kernel(&k, wild_fn, 1, NULL, 0);
	run(&v, &k);
	env_fini(&v);
}

TEST(guard_passes_kernel_bugs_on)
{
	/* A fault in kernel code outside every span is not a GPU fault. */
	gvm_test_expect_crash(run_wild_kernel);
}

/* ---- several devices, stress --------------------------------------------- */

TEST(several_devices)
{
	struct env v;
	struct gvm_device *other;
	struct gvm_sim_stats st;
	struct gvm_kernel k;

	ASSERT_OK(gvm_sim_device_create(NULL, &other));
	env_init(&v, 0);
	map(&v, 0x10000, K4, vram_alloc(&v, K4, K4), VRAM_RW);
	ASSERT_OK(gvm_kernel_atomic_inc(&k, 0x10000, 10));
	ASSERT_EQ(run(&v, &k), 1);
	ASSERT_OK(gvm_sim_stats(other, &st));
	ASSERT_EQ(st.lanes, 0);
	ASSERT_EQ(stats(&v).lanes, 10);
	env_fini(&v);
	gvm_device_put(other);
}

struct inval_thread {
	struct env *v;
	uint32_t stop;
	uint64_t done;
};

static void *inval_main(void *arg)
{
	struct inval_thread *t = arg;
	struct gvm_fence *f;
	uint64_t i = 0;

	while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
		ASSERT_OK(ops->tlb_inval(t->v->dev, t->v->vm,
					 (i & 7) * M2, i & 1 ? 0 : M2, &f));
		ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
		gvm_fence_put(f);
		i++;
	}
	t->done = i;
	return NULL;
}

TEST(stress_kernels_and_invalidations)
{
	struct env v;
	struct gvm_kernel k;
	struct inval_thread t;
	pthread_t th;
	struct gvm_fence *f[2];
	uint64_t n = gvm_test_scale(400), i, buf;
	unsigned int q;

	env_init(&v, 0);
	buf = vram_alloc(&v, 4 * M2, M2);
	map(&v, 0, 4 * M2, buf, VRAM_RW);
	t = (struct inval_thread){ &v, 0, 0 };
	ASSERT_OK(pthread_create(&th, NULL, inval_main, &t));
	for (i = 0; i < n; i++) {
		ASSERT_OK(gvm_kernel_atomic_inc(&k, (i & 3) * M2, 64));
		for (q = 0; q < 2; q++)
			ASSERT_OK(ops->run(v.dev, v.q[q], &k, &f[q]));
		for (q = 0; q < 2; q++) {
			ASSERT_OK(gvm_fence_wait(f[q], GVM_TIMEOUT_INFINITE));
			ASSERT_EQ(gvm_fence_get_status(f[q]), 1);
			gvm_fence_put(f[q]);
		}
	}
	__atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	for (i = 0; i < 4; i++)
		ASSERT_EQ(*(uint64_t *)vcpu(&v, buf + i * M2),
			  2 * 64 * (n / 4 + (i < n % 4)));
	ASSERT_EQ(stats(&v).tlb_invals, t.done);
	env_fini(&v);
}

/* ---- through the public API (VM layer + simulated GPU) ------------------ */

struct api {
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static void api_init(struct api *a, uint32_t vm_flags)
{
	struct gvm_sim_config cfg = { .vram_size = 64ull << 20 };

	ASSERT_OK(gvm_sim_device_create(&cfg, &a->dev));
	ASSERT_OK(gvm_vm_create(a->dev, NULL, vm_flags, &a->vm));
	ASSERT_OK(gvm_queue_create(a->vm, GVM_ENGINE_COMPUTE, &a->q));
}

static void api_fini(struct api *a)
{
	gvm_queue_destroy(a->q);
	ASSERT_OK(gvm_vm_destroy(a->vm));
	gvm_device_put(a->dev);
}

static int api_bind(struct api *a, uint32_t opc, uint32_t flags,
		    uint64_t addr, uint64_t range, struct gvm_bo *bo)
{
	struct gvm_bind_op op = { .op = opc, .flags = flags, .addr = addr,
				  .range = range, .bo = bo };

	return gvm_vm_bind(a->vm, NULL, &op, 1, NULL, 0);
}

/* gvm_exec + wait: the fence status (1, or -errno). */
static int api_exec(struct api *a, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .out = &f };
	int st;

	ASSERT_OK(gvm_exec(a->q, k, &s, 1));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return st;
}

static void api_builtins(uint32_t placement)
{
	struct api a;
	struct gvm_bo *bo;
	struct gvm_kernel k;
	uint64_t va = 1ull << 32, size = 4 * M2, n = size / 8 / 4, i, sum = 0;
	uint64_t *cpu;
	double *d;

	api_init(&a, 0);
	ASSERT_OK(gvm_bo_create(a.dev, size, placement, NULL, &bo));
	ASSERT_OK(api_bind(&a, GVM_BIND_MAP, 0, va, size, bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&cpu));
	d = (double *)cpu;

	ASSERT_OK(gvm_kernel_fill(&k, va, size, 0x5a5a5a5a));
	ASSERT_EQ(api_exec(&a, &k), 1);
	for (i = 0; i < size / 8; i += 511)
		ASSERT_EQ(cpu[i], 0x5a5a5a5a5a5a5a5aull);

	for (i = 0; i < n; i++) {
		d[n + i] = 1.0 + (double)i;
		d[2 * n + i] = 3.0;
	}
	ASSERT_OK(gvm_kernel_triad(&k, va, va + n * 8, va + 2 * n * 8, n, 2.0));
	ASSERT_EQ(api_exec(&a, &k), 1);
	for (i = 0; i < n; i++)
		ASSERT_TRUE(d[i] == 7.0 + (double)i);

	for (i = 0; i < n; i++)
		sum += cpu[i];
	ASSERT_OK(gvm_kernel_checksum(&k, va, n * 8, va + size - 8));
	ASSERT_EQ(api_exec(&a, &k), 1);
	ASSERT_EQ(cpu[size / 8 - 1], sum);

	ASSERT_OK(gvm_kernel_copy(&k, va + 3 * n * 8, va, n * 8));
	ASSERT_EQ(api_exec(&a, &k), 1);
	ASSERT_EQ(memcmp(d + 3 * n, d, n * 8), 0);

	cpu[1] = 0;
	ASSERT_OK(gvm_kernel_atomic_inc(&k, va + 8, 1000));
	ASSERT_EQ(api_exec(&a, &k), 1);
	ASSERT_EQ(cpu[1], 1000);
	ASSERT_OK(gvm_kernel_store_dword(&k, va + 16, 0xfeedface, 32));
	ASSERT_EQ(api_exec(&a, &k), 1);
	ASSERT_EQ((uint32_t)cpu[2], 0xfeedface);

	ASSERT_OK(api_bind(&a, GVM_BIND_UNMAP, 0, va, size, NULL));
	gvm_bo_put(bo);
	api_fini(&a);
}

TEST(api_builtins_on_a_vram_bo)
{
	api_builtins(GVM_MEM_VRAM);
}

TEST(api_builtins_on_a_system_bo)
{
	api_builtins(GVM_MEM_SYSTEM);
}

TEST(api_unmapped_access_is_a_logged_fault)
{
	struct api a;
	struct gvm_kernel k;
	struct gvm_fault_info f[4];
	struct gvm_vm_stats vs;
	uint32_t n;

	api_init(&a, 0);
	ASSERT_OK(gvm_kernel_store_dword(&k, 0x123000, 1, 64));
	ASSERT_EQ(api_exec(&a, &k), -EIO);
	ASSERT_OK(gvm_vm_query_faults(a.vm, f, 4, &n));
	ASSERT_EQ(n, 1);
	ASSERT_EQ(f[0].addr, 0x123000);
	ASSERT_EQ(f[0].access, GVM_ACCESS_WRITE);
	ASSERT_EQ(f[0].reason, GVM_FAULT_NOT_PRESENT);
	ASSERT_EQ(f[0].engine, GVM_ENGINE_COMPUTE);
	ASSERT_OK(gvm_vm_stats(a.vm, &vs));
	ASSERT_EQ(vs.faults, 1);
	api_fini(&a);
}

TEST(api_unbind_invalidates_the_tlb)
{
	struct api a;
	struct gvm_bo *bo;
	struct gvm_kernel k;
	uint64_t va = 0x200000;

	api_init(&a, 0);
	ASSERT_OK(gvm_bo_create(a.dev, M2, GVM_MEM_VRAM, a.vm, &bo));
	ASSERT_OK(api_bind(&a, GVM_BIND_MAP, 0, va, M2, bo));
	ASSERT_OK(gvm_kernel_store_dword(&k, va + 64, 1, 64));
	ASSERT_EQ(api_exec(&a, &k), 1);	/* the engine caches va */
	ASSERT_OK(api_bind(&a, GVM_BIND_UNMAP, 0, va, M2, NULL));
	ASSERT_EQ(api_exec(&a, &k), -EIO);	/* not through a stale entry */
	gvm_bo_put(bo);
	api_fini(&a);
}

TEST(api_readonly_and_null_binds)
{
	struct api a;
	struct gvm_bo *bo;
	struct gvm_kernel k;
	struct gvm_fault_info f;
	uint32_t n;
	uint64_t *cpu;

	api_init(&a, 0);
	ASSERT_OK(gvm_bo_create(a.dev, 64 * K4, GVM_MEM_VRAM, a.vm, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&cpu));
	ASSERT_OK(api_bind(&a, GVM_BIND_MAP, GVM_BIND_READONLY, 0x100000,
			   64 * K4, bo));
	ASSERT_OK(api_bind(&a, GVM_BIND_MAP, GVM_BIND_NULL, 0x400000, 2 * M2,
			   NULL));
	cpu[3] = 42;
	ASSERT_OK(gvm_kernel_checksum(&k, 0x100000, 64 * K4, 0x400000));
	ASSERT_EQ(api_exec(&a, &k), 1);		/* sum dropped into NULL */
	ASSERT_OK(gvm_kernel_fill(&k, 0x100000, K4, 1));
	ASSERT_EQ(api_exec(&a, &k), -EIO);
	ASSERT_OK(gvm_vm_query_faults(a.vm, &f, 1, &n));
	ASSERT_EQ(n, 1);
	ASSERT_EQ(f.reason, GVM_FAULT_WRITE_PROTECT);
	ASSERT_EQ(cpu[3], 42);
	ASSERT_OK(gvm_kernel_fill(&k, 0x400000, 2 * M2, 1));
	ASSERT_EQ(api_exec(&a, &k), 1);
	ASSERT_OK(api_bind(&a, GVM_BIND_UNMAP, 0, 0x100000, 64 * K4, NULL));
	gvm_bo_put(bo);
	api_fini(&a);
}

TEST(api_scratch_vm)
{
	struct api a;
	struct gvm_kernel k;
	uint32_t n;

	api_init(&a, GVM_VM_SCRATCH_PAGE);
	ASSERT_OK(gvm_kernel_checksum(&k, 0x100000, M2, 0x800000));
	ASSERT_EQ(api_exec(&a, &k), 1);
	ASSERT_OK(gvm_vm_query_faults(a.vm, NULL, 0, &n));
	ASSERT_EQ(n, 0);
	api_fini(&a);
}

/*
 * The contract through the VM layer: a fault gvm services every time,
 * whose page is gone again before each replay (the application
 * invalidates the userptr, here from the fault callback once
 * gvm_vm_fault() bound it: deterministic), runs out of the engine's
 * replays.  The job fails with -EIO and one fault-log entry, reason
 * GVM_FAULT_REPLAY_LIMIT; it used to fail with none (each fault had been
 * serviced, so none was logged).  The VM goes on.
 */
static struct {
	struct gvm_mm *mm;
	uint64_t cpu;
	unsigned int serviced;
} takeaway;

static int fault_then_take_away(struct gvm_vm *vm,
				const struct gvm_fault_info *f)
{
	int err = gvm_vm_fault(vm, f);

	if (!err) {
		takeaway.serviced++;
		ASSERT_OK(gvm_mm_invalidate(takeaway.mm, takeaway.cpu, K4));
	}
	return err;
}

TEST(api_fault_serviced_but_never_kept_is_logged_at_the_replay_limit)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR,
				  .addr = 0x200000, .range = K4 };
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };
	struct gvm_fault_info f[4];
	struct gvm_device *dev;
	struct gvm_vm_stats vs;
	struct gvm_kernel k;
	struct gvm_queue *q;
	struct sim_dev *sd;
	struct gvm_vm *vm;
	uint64_t *p;
	uint32_t n;

	ASSERT_OK(gvm_mm_self(&takeaway.mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	sd = gvm_device_priv(dev);
	ASSERT_OK(gvm_vm_create(dev, takeaway.mm,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	p = mmap(NULL, K4, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	takeaway.cpu = (uint64_t)(uintptr_t)p;
	op.userptr = takeaway.cpu;
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));

	sd->fault_fn = fault_then_take_away;
	ASSERT_OK(gvm_kernel_store_dword(&k, 0x200000 + 8, 9, 64));
	ASSERT_OK(gvm_exec(q, &k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	sd->fault_fn = gvm_vm_fault;
	ASSERT_EQ(takeaway.serviced, 16);
	ASSERT_EQ(p[1], 0);
	ASSERT_OK(gvm_vm_query_faults(vm, f, 4, &n));
	ASSERT_EQ(n, 1);
	ASSERT_EQ(f[0].reason, GVM_FAULT_REPLAY_LIMIT);
	ASSERT_EQ(f[0].addr, 0x200000 + 8);
	ASSERT_EQ(f[0].access, GVM_ACCESS_WRITE);
	ASSERT_EQ(f[0].queue_id, gvm_queue_id(q));
	ASSERT_OK(gvm_vm_stats(vm, &vs));
	ASSERT_EQ(vs.faults, 16 + 1);
	ASSERT_EQ(vs.faults_serviced, 16);
	ASSERT_FALSE(vs.banned);

	/* Left alone, the next store is served and kept. */
	uf = 0;
	ASSERT_OK(gvm_exec(q, &k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(p[1], 9);
	ASSERT_OK(gvm_vm_query_faults(vm, f, 4, &n));
	ASSERT_EQ(n, 0);

	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
	gvm_mm_put(takeaway.mm);
	munmap(p, K4);
}

/* ---- queue suspend / resume (preemption) --------------------------------- */

/*
 * Lane i spins a little, then adds 1 at va: a slow kernel.  With @gated,
 * lane 0 first raises gate_started and waits, making no lane call, until
 * the test raises gate_open: a queue suspended meanwhile parks the job
 * exactly before lane 1 (the engine parks only between lanes), whatever
 * the timing.
 */
struct slow_args {
	uint64_t va;
	uint32_t spin;
	bool gated;
};

static uint32_t gate_started, gate_open;

static void slow_fn(struct gvm_lane *l, const void *args)
{
	const struct slow_args *a = args;
	volatile uint32_t i;

	if (a->gated && gvm_lane_id(l) == 0 &&
	    !__atomic_load_n(&gate_open, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&gate_started, 1, __ATOMIC_RELEASE);
		while (!__atomic_load_n(&gate_open, __ATOMIC_ACQUIRE))
			sched_yield();
	}
	for (i = 0; i < a->spin; i++)
		;
	gvm_lane_atomic_add(l, a->va, 1, 8);
}

/*
 * Runs the gated kernel @k on @q (its fence in *@f), and suspends @q while
 * its lane 0 waits at the gate: the suspend's fence cannot signal then.
 * Opens the gate and waits for the suspend: the job is parked with lane 0
 * done and no other lane started.
 */
static void run_and_park_after_lane0(struct env *v, void *q,
				     const struct gvm_kernel *k,
				     struct gvm_fence **f)
{
	struct gvm_fence *done;

	gate_started = gate_open = 0;
	ASSERT_OK(ops->run(v->dev, q, k, f));
	gvm_test_wait_flag(&gate_started);
	ASSERT_OK(ops->queue_suspend(v->dev, q, &done));
	ASSERT_FALSE(gvm_fence_is_signaled(done));
	__atomic_store_n(&gate_open, 1, __ATOMIC_RELEASE);
	ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(done), 1);
	gvm_fence_put(done);
}

static uint64_t parks(struct env *v)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < v->sd->nr_engines; i++)
		n += gvm_load_relaxed(&v->sd->engines[i].cnt.parks);
	return n;
}

static uint64_t load64(struct env *v, uint64_t addr)
{
	return __atomic_load_n((uint64_t *)vcpu(v, addr), __ATOMIC_ACQUIRE);
}

static void wait_fence_ok(struct gvm_fence *f)
{
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	ASSERT_EQ(gvm_fence_get_status(f), 1);
	gvm_fence_put(f);
}

/*
 * One compute engine, two queues on it: suspending the first parks its
 * kernel between lanes (nothing of it runs once the suspend's fence
 * signalled), the second queue's kernel runs meanwhile on the same
 * engine, TLB invalidations are acknowledged, and resuming continues the
 * parked kernel where it stopped: no lane lost or run twice.
 */
TEST(suspend_parks_kernel_others_proceed_resume_continues)
{
	struct gvm_sim_config cfg = { .vram_size = 8 << 20, .nr_compute = 1 };
	struct slow_args a = { 0x10000, 2000, true };
	struct gvm_fence *f, *g;
	struct gvm_kernel k, k2;
	uint64_t buf, n = 2000;
	struct env v;

	env_init_cfg(&v, &cfg, 0);
	ASSERT_OK(ops->queue_create(v.dev, v.vm, GVM_ENGINE_COMPUTE, &v.q[1]));
	v.nq = 2;
	ASSERT_TRUE(((struct sim_queue *)v.q[0])->e ==
		    ((struct sim_queue *)v.q[1])->e);
	buf = vram_alloc(&v, K4, K4);
	map(&v, 0x10000, K4, buf, VRAM_RW);
	kernel(&k, slow_fn, n, &a, sizeof(a));
	run_and_park_after_lane0(&v, v.q[0], &k, &f);
	/* Parked, not failed: pending, and nothing of it runs now. */
	ASSERT_EQ(load64(&v, buf), 1);
	ASSERT_FALSE(gvm_fence_is_signaled(f));
	ASSERT_EQ(parks(&v), 1);
	/* The engine is free for the other queue, and acknowledges. */
	ASSERT_OK(gvm_kernel_atomic_inc(&k2, 0x10008, 10));
	ASSERT_OK(ops->run(v.dev, v.q[1], &k2, &g));
	wait_fence_ok(g);
	tlb_inval_wait(&v, 0, 0);
	ASSERT_EQ(((uint64_t *)vcpu(&v, buf))[1], 10);
	ASSERT_EQ(load64(&v, buf), 1);
	ASSERT_FALSE(gvm_fence_is_signaled(f));
	ops->queue_resume(v.dev, v.q[0]);
	wait_fence_ok(f);
	ASSERT_EQ(load64(&v, buf), n);
	ASSERT_EQ(stats(&v).lanes, n + 10);
	env_fini(&v);
}

/* Suspending an idle queue signals at once; suspends nest; queued work
   starts only once every suspend was resumed. */
TEST(suspend_idle_nests_and_holds_queued_work)
{
	struct slow_args a = { 0x10000, 0, false };
	struct gvm_fence *d1, *d2, *f;
	struct gvm_kernel k;
	struct env v;
	uint64_t buf;

	env_init(&v, 0);
	buf = vram_alloc(&v, K4, K4);
	map(&v, 0x10000, K4, buf, VRAM_RW);
	ASSERT_OK(ops->queue_suspend(v.dev, v.q[0], &d1));
	ASSERT_TRUE(gvm_fence_is_signaled(d1));
	ASSERT_OK(ops->queue_suspend(v.dev, v.q[0], &d2));
	ASSERT_TRUE(gvm_fence_is_signaled(d2));
	gvm_fence_put(d1);
	gvm_fence_put(d2);
	kernel(&k, slow_fn, 100, &a, sizeof(a));
	ASSERT_OK(ops->run(v.dev, v.q[0], &k, &f));
	ops->queue_resume(v.dev, v.q[0]);
	/* Still suspended once: the job cannot have started. */
	ASSERT_EQ(gvm_fence_wait(f, 20 * 1000 * 1000), -ETIME);
	ASSERT_EQ(load64(&v, buf), 0);
	ops->queue_resume(v.dev, v.q[0]);
	wait_fence_ok(f);
	ASSERT_EQ(load64(&v, buf), 100);
	ASSERT_EQ(parks(&v), 0);
	env_fini(&v);
}

/*
 * A kernel parked and resumed many times still runs every lane once; its
 * fences stay on its queue's context in order.  The first park is forced
 * (the gate); later suspends land wherever the engine is, and while one
 * holds, nothing of the queue runs.
 */
TEST(suspend_resume_repeatedly)
{
	struct slow_args a = { 0x10000, 2000, true };
	struct gvm_fence *f[2], *done;
	struct gvm_kernel k;
	uint64_t buf, n = 3000, c;
	unsigned int i, rounds = 0;
	struct env v;

	env_init(&v, 0);
	buf = vram_alloc(&v, K4, K4);
	map(&v, 0x10000, K4, buf, VRAM_RW);
	kernel(&k, slow_fn, n, &a, sizeof(a));
	run_and_park_after_lane0(&v, v.q[0], &k, &f[0]);
	ASSERT_OK(ops->run(v.dev, v.q[0], &k, &f[1]));
	ASSERT_TRUE(gvm_fence_is_later(f[1], f[0]));
	ASSERT_EQ(load64(&v, buf), 1);
	ASSERT_EQ(parks(&v), 1);
	ops->queue_resume(v.dev, v.q[0]);
	while (!gvm_fence_is_signaled(f[1]) && rounds < 200) {
		ASSERT_OK(ops->queue_suspend(v.dev, v.q[0], &done));
		ASSERT_OK(gvm_fence_wait(done, GVM_TIMEOUT_INFINITE));
		gvm_fence_put(done);
		c = load64(&v, buf);
		ASSERT_LE(c, 2 * n);
		for (i = 0; i < 10; i++)
			sched_yield();
		ASSERT_EQ(load64(&v, buf), c);
		ops->queue_resume(v.dev, v.q[0]);
		rounds++;
	}
	for (i = 0; i < 2; i++)
		wait_fence_ok(f[i]);
	ASSERT_EQ(load64(&v, buf), 2 * n);
	env_fini(&v);
}

/*
 * Destroying a suspended queue drops its parked and queued kernels: the
 * first is parked after its lane 0 (the gate), the second never started.
 */
TEST(destroy_suspended_queue_cancels_its_jobs)
{
	struct slow_args a = { 0x10000, 0, true };
	struct gvm_fence *f[2];
	struct gvm_kernel k;
	struct env v;
	uint64_t buf;

	env_init(&v, 0);
	buf = vram_alloc(&v, K4, K4);
	map(&v, 0x10000, K4, buf, VRAM_RW);
	kernel(&k, slow_fn, 1000, &a, sizeof(a));
	run_and_park_after_lane0(&v, v.q[0], &k, &f[0]);
	ASSERT_OK(ops->run(v.dev, v.q[0], &k, &f[1]));
	ASSERT_EQ(parks(&v), 1);
	ops->queue_destroy(v.dev, v.q[0]);
	v.q[0] = NULL;
	ASSERT_OK(ops->queue_create(v.dev, v.vm, GVM_ENGINE_COMPUTE, &v.q[0]));
	ASSERT_EQ(gvm_fence_get_status(f[0]), -ECANCELED);
	ASSERT_EQ(gvm_fence_get_status(f[1]), -ECANCELED);
	gvm_fence_put(f[0]);
	gvm_fence_put(f[1]);
	ASSERT_EQ(load64(&v, buf), 1);
	ASSERT_EQ(stats(&v).lanes, 1);
	env_fini(&v);
}
