/* SPDX-License-Identifier: MIT */
/*
 * Helpers for SVM tests: a fault-mode VM mirroring the whole process on a
 * simulated device, kernels run to completion, statistics, and private
 * anonymous mappings with guard pages.  Header-only (static functions);
 * include it after harness.h.
 */
#ifndef GVM_TEST_SVMTEST_H
#define GVM_TEST_SVMTEST_H

#include <stdint.h>
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/sim.h>

#include "harness.h"
#include "vm/vm.h"

#define SVMT_K4 4096ull
#define SVMT_K64 (64ull << 10)
#define SVMT_M2 (2ull << 20)
#define SVMT_MIRROR_END (1ull << 47)

struct svmt_vm {
	struct gvm_device *dev;		/* a reference */
	struct gvm_vm *vm;
	struct gvm_queue *q;
	uint64_t *out;			/* a shared page: checksums land here */
};

static inline uint64_t svmt_u64(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/* A fault-mode VM of @dev (a reference is taken) mirroring [4K, 2^47). */
static inline void svmt_vm_init(struct svmt_vm *v, struct gvm_device *dev,
				struct gvm_mm *mm)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = SVMT_K4,
				  .range = SVMT_MIRROR_END - SVMT_K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };

	v->dev = gvm_device_get(dev);
	ASSERT_OK(gvm_vm_create(dev, mm, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				&v->vm));
	ASSERT_OK(gvm_queue_create(v->vm, GVM_ENGINE_COMPUTE, &v->q));
	ASSERT_OK(gvm_vm_bind(v->vm, NULL, &op, 1, NULL, 0));
	v->out = mmap(NULL, SVMT_K4, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(v->out != MAP_FAILED);
}

static inline void svmt_vm_fini(struct svmt_vm *v)
{
	gvm_queue_destroy(v->q);
	ASSERT_OK(gvm_vm_destroy(v->vm));
	gvm_device_put(v->dev);
	munmap(v->out, SVMT_K4);
}

static inline struct gvm_vm_stats svmt_stats(struct gvm_vm *vm)
{
	struct gvm_vm_stats st;

	ASSERT_OK(gvm_vm_stats(vm, &st));
	return st;
}

static inline struct gvm_device_info svmt_info(struct gvm_device *dev)
{
	struct gvm_device_info i;

	ASSERT_OK(gvm_device_query(dev, &i));
	return i;
}

/* Faults in the VM's log (its capacity at most). */
static inline uint32_t svmt_logged(struct gvm_vm *vm,
				   struct gvm_fault_info *last)
{
	struct gvm_fault_info f[16];
	uint32_t n;

	ASSERT_OK(gvm_vm_query_faults(vm, f, 16, &n));
	if (last && n)
		*last = f[n < 16 ? n - 1 : 15];
	return n;
}

/* Runs @k on @q to its end (a user fence: also when the job fails). */
static inline void svmt_run(struct gvm_queue *q, struct gvm_kernel *k)
{
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };

	ASSERT_OK(gvm_exec(q, k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
}

/*
 * The status of @q's last job, once it ended: 1 (its fence signalled
 * without error) or its error (-EIO: it faulted).
 */
static inline int svmt_last_status(struct gvm_queue *q)
{
	struct gvm_fence *f = gvm__queue_last(q);
	int st;

	ASSERT_TRUE(f != NULL);
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return st;
}

/* Runs @k on @q to its end; its status (svmt_last_status). */
static inline int svmt_run_status(struct gvm_queue *q, struct gvm_kernel *k)
{
	svmt_run(q, k);
	return svmt_last_status(q);
}

/*
 * Runs @k on @q (of @vm), which must fail on a GPU fault it cannot have
 * serviced: its fence carries -EIO, and the VM's fault log, empty before,
 * holds exactly one entry (drained), an @access at an address in
 * [lo, hi); the VM is not banned.
 */
static inline void svmt_run_refused(struct gvm_vm *vm, struct gvm_queue *q,
				    struct gvm_kernel *k, uint32_t access,
				    uint64_t lo, uint64_t hi)
{
	struct gvm_fault_info f;

	ASSERT_EQ(svmt_logged(vm, NULL), 0);
	ASSERT_EQ(svmt_run_status(q, k), -EIO);
	ASSERT_EQ(svmt_logged(vm, &f), 1);
	ASSERT_EQ(f.access, access);
	ASSERT_GE(f.addr, lo);
	ASSERT_LT(f.addr, hi);
	ASSERT_FALSE(svmt_stats(vm).banned);
}

/* A GPU store (one lane) of @v to @p that must be refused (above). */
static inline void svmt_store_refused(struct gvm_vm *vm, struct gvm_queue *q,
				      uint64_t *p, uint64_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_store_dword(&k, svmt_u64(p), v, 64));
	svmt_run_refused(vm, q, &k, GVM_ACCESS_WRITE, svmt_u64(p),
			 svmt_u64(p) + 8);
}

/* A GPU checksum of [p, p + size) that must be refused (above). */
static inline void svmt_sum_refused(struct gvm_vm *vm, struct gvm_queue *q,
				    const void *p, uint64_t size,
				    uint64_t *out)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_checksum(&k, svmt_u64(p), size, svmt_u64(out)));
	svmt_run_refused(vm, q, &k, GVM_ACCESS_READ, svmt_u64(p),
			 svmt_u64(p) + size);
}

/*
 * Preferred location system memory over [p, p + size): GPU faults there
 * bind the CPU's pages in place, nothing migrates.
 */
static inline void svmt_keep_in_system(struct gvm_vm *vm, const void *p,
				       uint64_t size)
{
	struct gvm_madvise adv = {
		.set = GVM_MADV_PREFERRED_LOC,
		.attrs.preferred_loc = GVM_LOC_SYSTEM,
	};

	ASSERT_OK(gvm_vm_madvise(vm, svmt_u64(p), size, &adv));
}

/* The GPU's 64-bit word sum of [va, va + size). */
static inline uint64_t svmt_sum(struct svmt_vm *v, const void *va,
				uint64_t size)
{
	struct gvm_kernel k;

	*v->out = 0;
	ASSERT_OK(gvm_kernel_checksum(&k, svmt_u64(va), size,
				      svmt_u64(v->out)));
	svmt_run(v->q, &k);
	return *v->out;
}

static inline void svmt_fill(struct svmt_vm *v, const void *va,
			     uint64_t size, uint32_t pattern)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_fill(&k, svmt_u64(va), size, pattern));
	svmt_run(v->q, &k);
}

/* @lanes GPU atomic increments of the word at @p. */
static inline void svmt_inc(struct svmt_vm *v, uint64_t *p, uint64_t lanes)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_atomic_inc(&k, svmt_u64(p), lanes));
	svmt_run(v->q, &k);
}

/*
 * @size bytes of private anonymous memory aligned to @align, between
 * inaccessible guard pages (no neighbour merges with it).
 */
static inline void *svmt_map(uint64_t size, uint64_t align)
{
	uint64_t len = size + 2 * align + 2 * SVMT_K4, a;
	uint8_t *r = mmap(NULL, len, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	ASSERT_TRUE(r != MAP_FAILED);
	a = (svmt_u64(r) + SVMT_K4 + align - 1) & ~(align - 1);
	if (a - SVMT_K4 > svmt_u64(r))
		ASSERT_OK(munmap(r, a - SVMT_K4 - svmt_u64(r)));
	ASSERT_OK(munmap((void *)(uintptr_t)(a + size + SVMT_K4),
			 svmt_u64(r) + len - (a + size + SVMT_K4)));
	ASSERT_OK(mprotect((void *)(uintptr_t)a, size,
			   PROT_READ | PROT_WRITE));
	return (void *)(uintptr_t)a;
}

static inline void svmt_unmap(void *p, uint64_t size)
{
	ASSERT_OK(munmap((uint8_t *)p - SVMT_K4, size + 2 * SVMT_K4));
}

/*
 * Two simulated devices sharing the process's memory, each with a VM
 * (svmt_vm), linked (with @props, NULL: the defaults) or not.
 */
/*
 * Simulated devices whose access counters are off: tests that count
 * migrations between linked devices would otherwise see the counters
 * move a peer-mapped range behind their back, asynchronously (the
 * access-counter tests turn them on themselves).
 */
static const struct gvm_sim_config svmt_no_access_counters = {
	.access_threshold = GVM_SIM_ACCESS_OFF,
};

struct svmt_pair {
	struct gvm_mm *mm;
	struct gvm_device *a, *b;
	struct svmt_vm va, vb;
};

/* The devices with @cfg (NULL: the simulator's defaults). */
static inline void svmt_pair_setup_cfg(struct svmt_pair *x, bool linked,
				       const struct gvm_link_props *props,
				       const struct gvm_sim_config *cfg)
{
	ASSERT_OK(gvm_mm_self(&x->mm));
	ASSERT_OK(gvm_sim_device_create(cfg, &x->a));
	ASSERT_OK(gvm_sim_device_create(cfg, &x->b));
	if (linked)
		ASSERT_OK(gvm_device_link(x->a, x->b, props));
	svmt_vm_init(&x->va, x->a, x->mm);
	svmt_vm_init(&x->vb, x->b, x->mm);
}

static inline void svmt_pair_setup(struct svmt_pair *x, bool linked,
				   const struct gvm_link_props *props)
{
	svmt_pair_setup_cfg(x, linked, props, &svmt_no_access_counters);
}

/* Also checks that neither VM logged a GPU fault it could not resolve. */
static inline void svmt_pair_teardown(struct svmt_pair *x)
{
	ASSERT_EQ(svmt_logged(x->va.vm, NULL), 0);
	ASSERT_EQ(svmt_logged(x->vb.vm, NULL), 0);
	svmt_vm_fini(&x->va);
	svmt_vm_fini(&x->vb);
	gvm_device_put(x->a);
	gvm_device_put(x->b);
	gvm_mm_put(x->mm);
}

/* The sum of the 64-bit words the CPU sees. */
static inline uint64_t svmt_cpu_sum(const void *p, uint64_t size)
{
	const uint64_t *w = p;
	uint64_t s = 0;

	for (uint64_t i = 0; i < size / 8; i++)
		s += w[i];
	return s;
}

#endif
