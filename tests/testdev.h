/* SPDX-License-Identifier: MIT */
/*
 * A minimal device backend for VM-layer tests: VRAM is a memfd-backed host
 * arena, TLB invalidations complete at once (counted), copies are memcpy,
 * one stub compute engine whose kernels complete at once doing nothing
 * (enough for exec-queue argument checks).  The simulated GPU (<gvm/sim.h>) is the real backend; this
 * one lets the VM layer be tested on its own.
 */
#ifndef GVM_TEST_TESTDEV_H
#define GVM_TEST_TESTDEV_H

#include <gvm/device.h>

struct testdev {
	uint8_t *vram;
	uint64_t vram_size;
	int fd;
	uint64_t tlb_invals;		/* atomic */
	uint64_t tlb_full;		/* atomic */
	uint64_t last_inval_start, last_inval_size;
	int attached;			/* VMs attached now; atomic */
};

/* A test device with @vram_size bytes of VRAM (0: 64 MiB), @va_bits. */
struct gvm_device *testdev_create(uint64_t vram_size, unsigned int va_bits);
struct testdev *testdev_of(struct gvm_device *dev);

#endif
