/* SPDX-License-Identifier: MIT */
/*
 * Kernels: what an exec queue runs, and the lane API kernels are written
 * against.
 *
 * A kernel (struct gvm_kernel) is a C function, a grid size and a copy of
 * its arguments.  gvm_exec() (<gvm/vm.h>) copies it into a job, and the
 * device's run op (<gvm/device.h>) runs it.  The simulated GPU
 * (<gvm/sim.h>) implements the lane functions below and provides built-in
 * kernels; docs/sim.md describes how it runs them.
 *
 * LANES.  A kernel's function is called once per lane (index 0 ..
 * grid - 1) on an engine's thread; the lanes of one job run in index order
 * on one engine.  It touches memory only through the lane functions
 * below, which translate GPU VAs through the engine's TLB and the VM's
 * page tables.  An access the page tables do not allow is a GPU fault,
 * reported to gvm (gvm_vm_fault()); if gvm resolves it (fault mode) the
 * access is replayed (16 times at most: an access that still faults is
 * reported once more, GVM_FAULT_REPLAY_LIMIT, and fails as below),
 * otherwise the lane and every later lane of the job do nothing (loads
 * return 0, spans NULL) and the job's fence signals -EIO.  A kernel should return as soon as gvm_lane_faulted() says so.
 * A bad argument to a lane function (size, alignment, access) fails the
 * job the same way, with -EINVAL.
 *
 * Lane functions may only be called by the kernel on the lane it was
 * given, during that call.  Every lane function except gvm_lane_id(),
 * gvm_lane_faulted() and gvm_lane_span() is a *boundary*: it ends the
 * lane's spans, and it is where a busy engine acknowledges TLB
 * invalidations (so keep lanes short: the built-ins use 64 KiB).
 *
 * Spans and restarts.  A span is a host pointer straight into the memory
 * (gvm_lane_span()).  Up to GVM_LANE_SPANS spans stay valid together
 * until the next boundary or the return of the kernel (taking more ends
 * the oldest).  If a span can no longer be trusted - the host unmapped
 * the system memory under it (the access becomes a GVM_FAULT_SYSMEM_GONE
 * fault), or a fault reported by a later span call let gvm invalidate
 * it - the engine abandons the kernel's call at once (siglongjmp) and,
 * if gvm resolved the fault, runs the lane again from its start.  So a
 * kernel that uses spans must (1) be restartable: make its non-idempotent
 * effects (atomics) after its last span access; (2) hold no lock, own no
 * heap memory and not be inside non-reentrant library code (malloc,
 * stdio) while it touches a span.  Details: docs/sim.md.
 */
#ifndef GVM_KERNEL_H
#define GVM_KERNEL_H

#include <gvm/types.h>

GVM_BEGIN_DECLS

/* The context of one lane; opaque, owned by the engine running it. */
struct gvm_lane;

#define GVM_KERNEL_ARGS_MAX 128
/* Live spans per lane (see the top of this file). */
#define GVM_LANE_SPANS 4

typedef void (*gvm_kernel_fn)(struct gvm_lane *lane, const void *args);

struct gvm_kernel {
	const char *name;		/* static string, for traces */
	gvm_kernel_fn fn;
	uint64_t grid;			/* number of lanes, >= 1 */
	size_t args_size;		/* bytes of args used */
	uint64_t args[GVM_KERNEL_ARGS_MAX / 8];	/* copied with the kernel */
	/* Set by gvm_exec() in its copy (yours is ignored): which exec this
	   is, for the backend's fault reports (struct gvm_fault_info). */
	uint32_t queue_id;		/* gvm_queue_id() of its queue */
	uint64_t seqno;			/* its exec's number on the queue */
};

/*
 * Fills @k for a kernel of your own: @fn run over @grid lanes with a copy
 * of @args (@size bytes, at most GVM_KERNEL_ARGS_MAX).  @name is kept (a
 * static string).  Returns 0 or -EINVAL.
 */
GVM_API int gvm_kernel_init(struct gvm_kernel *k, const char *name,
			    gvm_kernel_fn fn, uint64_t grid, const void *args,
			    size_t size);

/* This lane's index, in [0, grid). */
GVM_API uint64_t gvm_lane_id(const struct gvm_lane *lane);
/* True once an access of this job faulted without being resolved. */
GVM_API bool gvm_lane_faulted(const struct gvm_lane *lane);

/*
 * Loads/stores of 1, 2, 4 or 8 bytes at a naturally aligned @va.  Every
 * lane call takes canonical addresses, as gvm_vm_bind() does: a @va
 * sign-extended from bit va_bits - 1 means the one without the extension;
 * any other @va at or above 2^va_bits faults.
 *
 * They are inline (below): an access to the page the lane used last, in
 * device memory, with no span live and no TLB invalidation waiting, is
 * one tag compare and the access itself; anything else calls the full
 * path, gvm_lane_load_slow() / gvm_lane_store_slow(), which kernels may
 * also call directly (the result is the same).
 */
GVM_API uint64_t gvm_lane_load_slow(struct gvm_lane *lane, uint64_t va,
				    unsigned int size);
GVM_API void gvm_lane_store_slow(struct gvm_lane *lane, uint64_t va,
				 uint64_t value, unsigned int size);
/* Atomics of 4 or 8 bytes; return the old value. */
GVM_API uint64_t gvm_lane_atomic_add(struct gvm_lane *lane, uint64_t va,
				     uint64_t value, unsigned int size);
GVM_API uint64_t gvm_lane_atomic_cmpxchg(struct gvm_lane *lane, uint64_t va,
					 uint64_t expected, uint64_t desired,
					 unsigned int size);
/*
 * A host pointer to the bytes at @va, for @access (GVM_ACCESS_READ or
 * _WRITE), valid as described at the top (until the next boundary):
 * *@len is in/out, the request in, the contiguous bytes available (> 0,
 * up to the end of the page that maps @va) out.  NULL on a fault.  On a
 * NULL page (or unmapped memory in a GVM_VM_SCRATCH_PAGE VM) a read span
 * shows zeros and a write span is discarded.
 */
GVM_API void *gvm_lane_span(struct gvm_lane *lane, uint64_t va, size_t *len,
			    unsigned int access);

/*
 * The lane's last translation, for the inline loads and stores: the
 * first member of the backend's struct gvm_lane (not for kernels: they
 * use the functions).  Written by the engine thread in the full path;
 * `inval_pending` is also set by threads submitting a TLB
 * invalidation and cleared by the engine (seq_cst), read here with
 * acquire.  The tags are the
 * GPU VA of the cached page, or ~0 (never matches: the mask below clears
 * bits 3 to 11) when that access may
 * not take the fast path: no translation, a span live, the job failed, a
 * page in system memory, NULL or scratch page, or (write_tag) read-only.
 * An access hits when (va & (page_mask | (size - 1))) == tag: the same
 * page, naturally aligned.  Every boundary condition of the full path
 * (spans to end, invalidations to acknowledge) makes it miss, so a hit is
 * exactly what the full path would do.
 */
struct gvm_lane_fast {
	uint64_t read_tag;
	uint64_t write_tag;
	uint64_t page_mask;		/* ~(page size - 1) */
	uintptr_t host_off;		/* host address - GPU VA, in the page */
	uint32_t inval_pending;		/* != 0: an invalidation waits */
};

/* The inline fast path's hit test (see struct gvm_lane_fast). */
static inline const struct gvm_lane_fast *
gvm__lane_fast_hit(struct gvm_lane *lane, uint64_t va, unsigned int size,
		   bool write)
{
	const struct gvm_lane_fast *f = (const struct gvm_lane_fast *)lane;
	uint64_t tag = write ? f->write_tag : f->read_tag;

	if (size != 1 && size != 2 && size != 4 && size != 8)
		return NULL;
	if ((va & (f->page_mask | (uint64_t)(size - 1))) != tag)
		return NULL;
	if (__atomic_load_n(&f->inval_pending, __ATOMIC_ACQUIRE))
		return NULL;
	return f;
}

/* Plain device accesses are single-copy atomic: relaxed loads/stores. */
static inline uint64_t gvm_lane_load(struct gvm_lane *lane, uint64_t va,
				     unsigned int size)
{
	const struct gvm_lane_fast *f = gvm__lane_fast_hit(lane, va, size,
							   false);
	uintptr_t p;

	if (!f)
		return gvm_lane_load_slow(lane, va, size);
	p = (uintptr_t)va + f->host_off;
	switch (size) {
	case 1: return __atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
	case 2: return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
	case 4: return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
	default: return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
	}
}

static inline void gvm_lane_store(struct gvm_lane *lane, uint64_t va,
				  uint64_t value, unsigned int size)
{
	const struct gvm_lane_fast *f = gvm__lane_fast_hit(lane, va, size,
							   true);
	uintptr_t p;

	if (!f) {
		gvm_lane_store_slow(lane, va, value, size);
		return;
	}
	p = (uintptr_t)va + f->host_off;
	switch (size) {
	case 1: __atomic_store_n((uint8_t *)p, (uint8_t)value, __ATOMIC_RELAXED); break;
	case 2: __atomic_store_n((uint16_t *)p, (uint16_t)value, __ATOMIC_RELAXED); break;
	case 4: __atomic_store_n((uint32_t *)p, (uint32_t)value, __ATOMIC_RELAXED); break;
	default: __atomic_store_n((uint64_t *)p, value, __ATOMIC_RELAXED); break;
	}
}

GVM_END_DECLS

#endif
