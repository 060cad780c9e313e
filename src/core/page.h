/* SPDX-License-Identifier: MIT */
/*
 * The GPU page (internal): 4 KiB, the granule of every GPU VA, range and
 * backing offset, of buffer-object sizes, of VRAM allocation (the buddy's
 * chunk) and of page-table pages.  Larger pages (64K, 2M, 1G) are
 * multiples of it (<gvm/device.h> GVM_PAGE_*, whose GVM_PAGE_4K equals
 * GVM_PAGE_SIZE: checked in src/vm/device.c).
 *
 * The CPU's page is another matter (src/mm/mm.h, GVM_MM_PAGE_*), even if
 * it has the same size on the machines gvm runs on today.
 */
#ifndef GVM_CORE_PAGE_H
#define GVM_CORE_PAGE_H

#include <stdbool.h>
#include <stdint.h>

#define GVM_PAGE_SHIFT		12
#define GVM_PAGE_SIZE		((uint64_t)1 << GVM_PAGE_SHIFT)
/* The offset bits of an address inside its page (4095). */
#define GVM_PAGE_OFFSET_MASK	(GVM_PAGE_SIZE - 1)

/* True if @x (an address, a size or an offset) is a multiple of 4 KiB. */
static inline bool gvm__page_aligned(uint64_t x)
{
	return !(x & GVM_PAGE_OFFSET_MASK);
}

#endif
