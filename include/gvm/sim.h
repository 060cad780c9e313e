/* SPDX-License-Identifier: MIT */
/*
 * The simulated GPU, and the kernels it runs.
 *
 * gvm_sim_device_create() makes a device backend (<gvm/device.h>) out of
 * host memory and threads: VRAM is a host memory arena, an MMU walks the
 * page tables gvm writes there, every engine has a TLB, compute engines run
 * kernels (C functions) over a grid, copy engines move bytes.  Several
 * devices may exist in one process.  Semantics and internals: docs/sim.md.
 *
 * KERNELS.  A kernel is a C function called once per lane (index 0 ..
 * grid - 1) on an engine's thread; the lanes of one job run in index order
 * on one engine.  It touches memory only through the lane functions
 * below, which translate GPU VAs through the engine's TLB and the VM's
 * page tables.  An access the page tables do not allow is a GPU fault,
 * reported to gvm (gvm_vm_fault()); if gvm resolves it (fault mode) the
 * access is replayed, otherwise the lane and every later lane of the job
 * do nothing (loads return 0, spans NULL) and the job's fence signals
 * -EIO.  A kernel should return as soon as gvm_lane_faulted() says so.
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
#ifndef GVM_SIM_H
#define GVM_SIM_H

#include <gvm/device.h>
#include <gvm/types.h>

GVM_BEGIN_DECLS

struct gvm_lane;

/* Zero fields take the defaults in brackets. */
struct gvm_sim_config {
	const char *name;		/* ["sim<N>"] */
	uint64_t vram_size;		/* bytes, 4 KiB multiple [256 MiB] */
	unsigned int va_bits;		/* 48 or 57 [48] */
	unsigned int nr_compute;	/* compute engines [2] */
	unsigned int nr_copy;		/* copy engines [1] */
	unsigned int tlb_entries;	/* per engine [1024] */
	uint64_t page_sizes;		/* GVM_PAGE_* mask [4K|64K|2M|1G] */
	uint64_t copy_bw;		/* bytes per second [0: host speed] */
	uint64_t copy_latency_ns;	/* per copy [0] */
	uint64_t tlb_inval_latency_ns;	/* per invalidation [0] */
};

/*
 * Creates a simulated GPU (@cfg NULL: all defaults).  -EINVAL: bad config
 * (va_bits, unaligned or < 1 MiB VRAM, no 4K pages, 0 engines after
 * defaults); -ENOMEM.
 */
GVM_API int gvm_sim_device_create(const struct gvm_sim_config *cfg,
				  struct gvm_device **out);

/* Counters of a simulated device (all engines). */
struct gvm_sim_stats {
	uint64_t tlb_hits, tlb_misses;
	uint64_t tlb_invals;		/* invalidation requests */
	uint64_t walks;			/* page-table walks */
	uint64_t faults;
	uint64_t kernels;		/* kernels completed */
	uint64_t lanes;			/* lanes run */
	uint64_t bytes_copied;		/* by copy engines */
	uint64_t parks;			/* kernels parked by a queue suspend */
};
/* -EINVAL if @dev is not a simulated device. */
GVM_API int gvm_sim_stats(struct gvm_device *dev, struct gvm_sim_stats *st);

/* ---- kernels ------------------------------------------------------------- */

#define GVM_KERNEL_ARGS_MAX 128
/* Live spans per lane (see the top of this file). */
#define GVM_LANE_SPANS 4
/* Bytes of the buffer each lane of a streaming built-in handles. */
#define GVM_KERNEL_LANE_BYTES (64u << 10)

typedef void (*gvm_kernel_fn)(struct gvm_lane *lane, const void *args);

struct gvm_kernel {
	const char *name;		/* static string, for traces */
	gvm_kernel_fn fn;
	uint64_t grid;			/* number of lanes, >= 1 */
	size_t args_size;		/* bytes of args used */
	uint64_t args[GVM_KERNEL_ARGS_MAX / 8];	/* copied with the kernel */
};

/* This lane's index, in [0, grid). */
GVM_API uint64_t gvm_lane_id(const struct gvm_lane *lane);
/* True once an access of this job faulted without being resolved. */
GVM_API bool gvm_lane_faulted(const struct gvm_lane *lane);

/* Loads/stores of 1, 2, 4 or 8 bytes at a naturally aligned @va. */
GVM_API uint64_t gvm_lane_load(struct gvm_lane *lane, uint64_t va,
			       unsigned int size);
GVM_API void gvm_lane_store(struct gvm_lane *lane, uint64_t va,
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
 * Fills @k for a kernel of your own: @fn run over @grid lanes with a copy
 * of @args (@size bytes, at most GVM_KERNEL_ARGS_MAX).  @name is kept (a
 * static string).  Returns 0 or -EINVAL.
 */
GVM_API int gvm_kernel_init(struct gvm_kernel *k, const char *name,
			    gvm_kernel_fn fn, uint64_t grid, const void *args,
			    size_t size);

/*
 * Built-in kernels: fill @k.  Sizes are bytes (> 0); VAs as for the lane
 * calls.  The streaming ones (fill, copy, checksum, triad) run one lane
 * per GVM_KERNEL_LANE_BYTES of the buffer.
 *  fill:       @size bytes at @va with the 32-bit @pattern (va and size
 *              multiples of 4)
 *  copy:       @size bytes from @src to @dst (not overlapping)
 *  store_dword: one @bits (32 or 64) store of @value at @va (aligned)
 *  checksum:   the 64-bit sum of the 64-bit words at [va, va + size),
 *              stored at @out (va, size, out multiples of 8)
 *  atomic_inc: @count lanes each atomically add 1 to the 64-bit word at @va
 *  triad:      a[i] = b[i] + scalar * c[i] for @n doubles (8-byte aligned)
 * Return 0 or -EINVAL.
 */
GVM_API int gvm_kernel_fill(struct gvm_kernel *k, uint64_t va, uint64_t size,
			    uint32_t pattern);
GVM_API int gvm_kernel_copy(struct gvm_kernel *k, uint64_t dst, uint64_t src,
			    uint64_t size);
GVM_API int gvm_kernel_store_dword(struct gvm_kernel *k, uint64_t va,
				   uint64_t value, unsigned int bits);
GVM_API int gvm_kernel_checksum(struct gvm_kernel *k, uint64_t va,
				uint64_t size, uint64_t out);
GVM_API int gvm_kernel_atomic_inc(struct gvm_kernel *k, uint64_t va,
				  uint64_t count);
GVM_API int gvm_kernel_triad(struct gvm_kernel *k, uint64_t a, uint64_t b,
			     uint64_t c, uint64_t n, double scalar);

GVM_END_DECLS

#endif
