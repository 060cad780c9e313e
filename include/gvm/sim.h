/* SPDX-License-Identifier: MIT */
/*
 * The simulated GPU, and its built-in kernels.
 *
 * gvm_sim_device_create() makes a device backend (<gvm/device.h>) out of
 * host memory and threads: VRAM is a host memory arena, an MMU walks the
 * page tables gvm writes there, every engine has a TLB, compute engines run
 * kernels (C functions) over a grid, copy engines move bytes.  Several
 * devices may exist in one process.  Semantics and internals: docs/sim.md.
 *
 * Kernels (struct gvm_kernel, the lane API they are written against) are
 * in <gvm/kernel.h>, included here; this header adds the built-in kernels,
 * which the simulated GPU implements.
 */
#ifndef GVM_SIM_H
#define GVM_SIM_H

#include <gvm/device.h>
#include <gvm/kernel.h>
#include <gvm/types.h>

GVM_BEGIN_DECLS

/*
 * The largest VRAM a simulated device accepts: its device-physical window
 * starts at 2^44 and ends below 2^57, the page-table address limit.
 */
#define GVM_SIM_VRAM_MAX ((1ull << 57) - (1ull << 44))

/* Zero fields take the defaults in brackets. */
struct gvm_sim_config {
	const char *name;		/* ["sim<N>"] */
	uint64_t vram_size;		/* bytes, 4 KiB multiple, at most
					 * GVM_SIM_VRAM_MAX [256 MiB] */
	unsigned int va_bits;		/* 48 or 57 [48] */
	unsigned int nr_compute;	/* compute engines [2] */
	unsigned int nr_copy;		/* copy engines [1] */
	unsigned int tlb_entries;	/* per engine [1024] */
	uint64_t page_sizes;		/* GVM_PAGE_* mask [4K|64K|2M|1G] */
	uint64_t copy_bw;		/* bytes per second [0: host speed] */
	uint64_t copy_latency_ns;	/* per copy [0] */
	uint64_t tlb_inval_latency_ns;	/* per invalidation [0] */
	unsigned int fault_queue_depth;	/* GPU faults queued for gvm's
					 * servicing thread before faulting
					 * engines block, at most 65536
					 * [1024] */
	uint64_t access_threshold;	/* access counters: bytes an engine
					 * reads or writes of a linked
					 * peer's VRAM in one 2 MiB region
					 * of a VM before it notifies gvm
					 * (gvm_vm_access_notify);
					 * GVM_SIM_ACCESS_OFF: never
					 * [GVM_SIM_ACCESS_DEFAULT] */
};

/* Access counters: region size, default threshold (two passes over a
   region), and the value that switches them off. */
#define GVM_SIM_ACCESS_GRANULE	(2ull << 20)
#define GVM_SIM_ACCESS_DEFAULT	(2 * GVM_SIM_ACCESS_GRANULE)
#define GVM_SIM_ACCESS_OFF	UINT64_MAX

/*
 * Creates a simulated GPU (@cfg NULL: all defaults).  -EINVAL: bad config
 * (va_bits, unaligned, < 1 MiB or > GVM_SIM_VRAM_MAX VRAM, no 4K pages, 0 engines after
 * defaults, more than 64 engines of a class, a fault queue deeper than
 * 65536); -ENOMEM.
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
	uint64_t link_bytes;		/* accessed by kernels in linked
					   peers' VRAM, through the link */
	uint64_t link_wait_ns;		/* engines' time charged for them
					   (the link's bandwidth and latency) */
	uint64_t access_notifications;	/* access-counter notifications */
};
/* -EINVAL if @dev is not a simulated device. */
GVM_API int gvm_sim_stats(struct gvm_device *dev, struct gvm_sim_stats *st);

/* ---- built-in kernels ---------------------------------------------------- */

/* Bytes of the buffer each lane of a streaming built-in handles. */
#define GVM_KERNEL_LANE_BYTES (64u << 10)

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
