/* SPDX-License-Identifier: MIT */
/*
 * Page-table format of the simulated GPU (internal; included through
 * pt/pt_fmt.h only).
 *
 * A format is this header: constants and small static inline functions with
 * fixed names (gvm__ptf_*).  The engine (pt.c) is written once against
 * these names; a second format is another header defining the same names,
 * selected at compile time in pt_fmt.h.  No function pointers.
 *
 * Geometry: 512 8-byte entries per 4 KiB table, 9 VA bits per level.
 * 4 levels translate 48-bit VAs, 5 levels 57-bit VAs.  Level 0 holds 4 KiB
 * PTEs; levels 1 (2 MiB) and 2 (1 GiB) hold either leaves (LEAF set) or
 * directory entries; levels 3 and 4 hold directory entries only.
 *
 *  bit(s)  name     in          meaning
 *  ------  -------  ----------  ----------------------------------------------
 *  0       VALID    all         the GPU may use the entry
 *  1       WRITE    leaf        writes allowed
 *  2       DEVMEM   leaf        address is device memory (else system memory)
 *  3       ATOMIC   leaf        atomics allowed
 *  4       NULL     leaf        sparse: reads return zero, writes dropped;
 *                               no address
 *  5       LEAF     level 1, 2  the entry maps a 2 MiB / 1 GiB page; clear in
 *                               directory entries; never set at level 0
 *  6       CONT     level 0     one of 16 aligned PTEs mapping 64 KiB of
 *                               contiguous, 64 KiB-aligned memory with equal
 *                               bits (a TLB hint)
 *  7..9    PAT      leaf        PAT index (cache attributes)
 *  11      ZAPPED   leaf        software: VALID clear, the entry was zapped
 *                               by an invalidation; the slot stays in use
 *                               until unbound (the GPU ignores invalid
 *                               entries, so this bit is free for software)
 *  12..56  ADDR     all         leaf: page address (aligned to the page
 *                               size); directory: next table's device address
 *  57..63  -        -           zero
 *
 * Directory entry = VALID | next table address.  An entry is "in use" when
 * it is non-zero: valid leaves, zapped leaves, directory entries.
 */
#ifndef GVM_PT_FMT_SIM_H
#define GVM_PT_FMT_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include <gvm/types.h>

#define GVM_PTF_NAME		"sim"
#define GVM_PTF_PAGE_LG2	12u		/* 4 KiB tables and pages */
#define GVM_PTF_ENTRIES_LG2	9u		/* 512 entries per table */
#define GVM_PTF_ENTRIES		(1u << GVM_PTF_ENTRIES_LG2)
#define GVM_PTF_MAX_LEVELS	5u
#define GVM_PTF_MAX_LEAF_LEVEL	2u		/* 1 GiB pages */
#define GVM_PTF_CONT_ENTRIES	16u		/* 64 KiB hint run */
#define GVM_PTF_ADDR_BITS	57u		/* addresses below 2^57 */

#define GVM_PTF_VALID	(1ull << 0)
#define GVM_PTF_WRITE	(1ull << 1)
#define GVM_PTF_DEVMEM	(1ull << 2)
#define GVM_PTF_ATOMIC	(1ull << 3)
#define GVM_PTF_NULL	(1ull << 4)
#define GVM_PTF_LEAF	(1ull << 5)
#define GVM_PTF_CONT	(1ull << 6)
#define GVM_PTF_PAT_SHIFT 7u
#define GVM_PTF_PAT_MASK ((uint64_t)GVM_PAT_MAX << GVM_PTF_PAT_SHIFT)
#define GVM_PTF_ZAPPED	(1ull << 11)
#define GVM_PTF_ADDR_MASK (((1ull << GVM_PTF_ADDR_BITS) - 1) & ~0xfffull)

/* Bits a leaf's attributes occupy (what "equal bits" compares). */
#define GVM_PTF_ATTR_MASK (GVM_PTF_VALID | GVM_PTF_WRITE | GVM_PTF_DEVMEM | \
			   GVM_PTF_ATOMIC | GVM_PTF_NULL | GVM_PTF_PAT_MASK)

/* Number of levels for @va_bits (48 or 57); 0 if unsupported. */
static inline unsigned int gvm__ptf_levels(unsigned int va_bits)
{
	return va_bits == 48 ? 4 : va_bits == 57 ? 5 : 0;
}

/* log2 of the VA span of one entry at @level. */
static inline unsigned int gvm__ptf_shift(unsigned int level)
{
	return GVM_PTF_PAGE_LG2 + GVM_PTF_ENTRIES_LG2 * level;
}

static inline unsigned int gvm__ptf_index(uint64_t va, unsigned int level)
{
	return (unsigned int)(va >> gvm__ptf_shift(level)) &
	       (GVM_PTF_ENTRIES - 1);
}

static inline bool gvm__ptf_can_leaf(unsigned int level)
{
	return level <= GVM_PTF_MAX_LEAF_LEVEL;
}

/*
 * Leaf attribute bits (no address, no LEAF/CONT) from the generic flags;
 * see gvm__ptf_mk_leaf.
 */
static inline uint64_t gvm__ptf_attrs(bool write, bool devmem, bool atomic,
				      bool null, unsigned int pat)
{
	return GVM_PTF_VALID | (write ? GVM_PTF_WRITE : 0) |
	       (devmem ? GVM_PTF_DEVMEM : 0) | (atomic ? GVM_PTF_ATOMIC : 0) |
	       (null ? GVM_PTF_NULL : 0) |
	       ((uint64_t)(pat & GVM_PAT_MAX) << GVM_PTF_PAT_SHIFT);
}

/* A leaf at @level mapping @addr (ignored for NULL) with @attrs. */
static inline uint64_t gvm__ptf_mk_leaf(uint64_t attrs, uint64_t addr,
					unsigned int level)
{
	uint64_t e = attrs | (level ? GVM_PTF_LEAF : 0);

	if (!(attrs & GVM_PTF_NULL))
		e |= addr & GVM_PTF_ADDR_MASK;
	return e;
}

static inline uint64_t gvm__ptf_mk_dir(uint64_t table_dev_addr)
{
	return GVM_PTF_VALID | (table_dev_addr & GVM_PTF_ADDR_MASK);
}

/* Non-zero: the slot is in use (counted in the table's live count). */
static inline bool gvm__ptf_in_use(uint64_t e)
{
	return e != 0;
}

static inline bool gvm__ptf_is_valid(uint64_t e)
{
	return e & GVM_PTF_VALID;
}

/* Does valid leaf @e allow writes (@write) and atomics (@atomic)? */
static inline bool gvm__ptf_allows(uint64_t e, bool write, bool atomic)
{
	return (!write || (e & GVM_PTF_WRITE)) &&
	       (!atomic || (e & GVM_PTF_ATOMIC));
}

/* A leaf (valid or zapped) at @level; the other in-use entries are dirs. */
static inline bool gvm__ptf_is_leaf(uint64_t e, unsigned int level)
{
	return e && (level == 0 || (e & GVM_PTF_LEAF));
}

static inline bool gvm__ptf_is_dir(uint64_t e, unsigned int level)
{
	return e && level > 0 && !(e & GVM_PTF_LEAF);
}

static inline uint64_t gvm__ptf_addr(uint64_t e)
{
	return e & GVM_PTF_ADDR_MASK;
}

static inline uint64_t gvm__ptf_attrs_of(uint64_t e)
{
	return e & GVM_PTF_ATTR_MASK;
}

static inline bool gvm__ptf_is_null(uint64_t e)
{
	return e & GVM_PTF_NULL;
}

static inline bool gvm__ptf_is_zapped(uint64_t e)
{
	return e & GVM_PTF_ZAPPED;
}

/* The zapped form of a leaf: invalid to the GPU, slot still in use. */
static inline uint64_t gvm__ptf_zap(uint64_t e)
{
	return (e & ~(GVM_PTF_VALID | GVM_PTF_CONT)) | GVM_PTF_ZAPPED;
}

static inline bool gvm__ptf_has_cont(uint64_t e)
{
	return e & GVM_PTF_CONT;
}

static inline uint64_t gvm__ptf_set_cont(uint64_t e)
{
	return e | GVM_PTF_CONT;
}

static inline uint64_t gvm__ptf_clear_cont(uint64_t e)
{
	return e & ~GVM_PTF_CONT;
}

/*
 * The leaf at @level - 1, index @i, that replaces part of the leaf @e at
 * @level when it is split (same attributes and state, address advanced).
 */
static inline uint64_t gvm__ptf_split_leaf(uint64_t e, unsigned int level,
					   unsigned int i)
{
	uint64_t s = e & ~(GVM_PTF_LEAF | GVM_PTF_CONT);

	if (level - 1 > 0)
		s |= GVM_PTF_LEAF;
	if (!(e & GVM_PTF_NULL))
		s += (uint64_t)i << gvm__ptf_shift(level - 1);
	return s;
}

#endif
