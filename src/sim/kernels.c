// SPDX-License-Identifier: MIT
/*
 * Simulated GPU: the built-in kernels of <gvm/sim.h>, and
 * gvm_kernel_init() (<gvm/kernel.h>) they are made with.
 *
 * Each gvm_kernel_*() only fills a struct gvm_kernel (function, grid,
 * arguments); it runs when submitted (gvm_exec, or ops->run).
 *
 * Lane granularity: the streaming kernels (fill, copy, checksum, triad)
 * give every lane GVM_KERNEL_LANE_BYTES (64 KiB) of the buffer, so a
 * 1 GiB triad is 16384 lanes.  A lane walks its chunk with spans (host
 * pointers up to the end of each page) and runs plain loops over them:
 * with 2M or 64K pages a lane touches one page per stream, with 4K pages
 * sixteen, and the per-span cost (a level-0 TLB hit) is small next to
 * 4 KiB of memcpy-speed work.  64 KiB keeps lanes short, so TLB
 * invalidations (acknowledged between lanes) never wait long, and a
 * restarted lane (lane.c) redoes little.
 *
 * Restartability (lane.c, SPANS): every kernel here either writes
 * idempotently (fill, copy, triad, store_dword) or does its one
 * non-idempotent effect (an atomic add) as its last lane call, after all
 * its span accesses.  checksum relies on lanes running in index order on
 * one engine: lane 0 stores its partial sum, later lanes add theirs.
 */
#include <errno.h>
#include <string.h>

#include "sim/sim_internal.h"

#define LANE_BYTES GVM_KERNEL_LANE_BYTES

int gvm_kernel_init(struct gvm_kernel *k, const char *name, gvm_kernel_fn fn,
		    uint64_t grid, const void *args, size_t size)
{
	if (!k || !fn || !grid || size > sizeof(k->args) || (size && !args))
		return -EINVAL;
	memset(k, 0, sizeof(*k));
	k->name = name;
	k->fn = fn;
	k->grid = grid;
	k->args_size = size;
	if (size)
		memcpy(k->args, args, size);
	return 0;
}

/* The built-ins' arguments always fit. */
static void kernel_init(struct gvm_kernel *k, const char *name,
			gvm_kernel_fn fn, uint64_t grid, const void *args,
			size_t size)
{
	int err = gvm_kernel_init(k, name, fn, grid, args, size);

	GVM_BUG_ON(err);
}

static uint64_t lanes_for(uint64_t bytes)
{
	return bytes / LANE_BYTES + (bytes % LANE_BYTES != 0);
}

/* [*off, *off + *len) of the lane's chunk of a @size byte buffer. */
static bool lane_chunk(struct gvm_lane *l, uint64_t size, uint64_t *off,
		       uint64_t *len)
{
	uint64_t o = gvm_lane_id(l) * LANE_BYTES;

	if (o >= size)
		return false;
	*off = o;
	*len = size - o < LANE_BYTES ? size - o : LANE_BYTES;
	return true;
}

static bool range_ok(uint64_t va, uint64_t size)
{
	return size && va + size > va;
}

/* ---- fill ---------------------------------------------------------------- */

struct fill_args {
	uint64_t va, size;
	uint32_t pattern;
};

static void fill_fn(struct gvm_lane *l, const void *args)
{
	const struct fill_args *a = args;
	uint32_t pat = a->pattern;
	bool bytewise = (pat & 0xff) * 0x01010101u == pat;
	uint64_t off, left;

	if (!lane_chunk(l, a->size, &off, &left))
		return;
	while (left) {
		size_t n = left, i;
		uint8_t *d = gvm_lane_span(l, a->va + off, &n, GVM_ACCESS_WRITE);

		if (!d)
			return;
		if (bytewise) {
			memset(d, (int)(pat & 0xff), n);
		} else {
			uint32_t *d32 = (uint32_t *)d;

			for (i = 0; i < n / 4; i++)
				d32[i] = pat;
		}
		off += n;
		left -= n;
	}
}

int gvm_kernel_fill(struct gvm_kernel *k, uint64_t va, uint64_t size,
		    uint32_t pattern)
{
	struct fill_args a = { va, size, pattern };

	if (!k || !range_ok(va, size) || (va & 3) || (size & 3))
		return -EINVAL;
	kernel_init(k, "fill", fill_fn, lanes_for(size), &a, sizeof(a));
	return 0;
}

/* ---- copy ---------------------------------------------------------------- */

struct copy_args {
	uint64_t dst, src, size;
};

static void copy_fn(struct gvm_lane *l, const void *args)
{
	const struct copy_args *a = args;
	uint64_t off, left;

	if (!lane_chunk(l, a->size, &off, &left))
		return;
	while (left) {
		size_t ns = left, nd = left;
		const uint8_t *s = gvm_lane_span(l, a->src + off, &ns,
						 GVM_ACCESS_READ);
		uint8_t *d;

		if (!s)
			return;
		d = gvm_lane_span(l, a->dst + off, &nd, GVM_ACCESS_WRITE);
		if (!d)
			return;
		if (nd > ns)
			nd = ns;
		memcpy(d, s, nd);
		off += nd;
		left -= nd;
	}
}

int gvm_kernel_copy(struct gvm_kernel *k, uint64_t dst, uint64_t src,
		    uint64_t size)
{
	struct copy_args a = { dst, src, size };

	if (!k || !range_ok(dst, size) || !range_ok(src, size) ||
	    (dst < src + size && src < dst + size))	/* overlap */
		return -EINVAL;
	kernel_init(k, "copy", copy_fn, lanes_for(size), &a, sizeof(a));
	return 0;
}

/* ---- store_dword ------------------------------------------------------- */

struct store_args {
	uint64_t va, value;
	unsigned int bytes;
};

static void store_fn(struct gvm_lane *l, const void *args)
{
	const struct store_args *a = args;

	gvm_lane_store(l, a->va, a->value, a->bytes);
}

int gvm_kernel_store_dword(struct gvm_kernel *k, uint64_t va, uint64_t value,
			   unsigned int bits)
{
	struct store_args a = { va, value, bits / 8 };

	if (!k || (bits != 32 && bits != 64) || (va & (bits / 8 - 1)))
		return -EINVAL;
	kernel_init(k, "store_dword", store_fn, 1, &a, sizeof(a));
	return 0;
}

/* ---- checksum ----------------------------------------------------------- */

struct checksum_args {
	uint64_t va, size, out;
};

static void checksum_fn(struct gvm_lane *l, const void *args)
{
	const struct checksum_args *a = args;
	uint64_t off, left, sum = 0;

	if (!lane_chunk(l, a->size, &off, &left))
		return;
	while (left) {
		size_t n = left, i;
		const uint64_t *s = gvm_lane_span(l, a->va + off, &n,
						  GVM_ACCESS_READ);

		if (!s)
			return;
		for (i = 0; i < n / 8; i++)
			sum += s[i];
		off += n;
		left -= n;
	}
	if (gvm_lane_id(l) == 0)
		gvm_lane_store(l, a->out, sum, 8);
	else
		gvm_lane_atomic_add(l, a->out, sum, 8);
}

int gvm_kernel_checksum(struct gvm_kernel *k, uint64_t va, uint64_t size,
			uint64_t out)
{
	struct checksum_args a = { va, size, out };

	if (!k || !range_ok(va, size) || (va & 7) || (size & 7) || (out & 7))
		return -EINVAL;
	kernel_init(k, "checksum", checksum_fn, lanes_for(size), &a,
		    sizeof(a));
	return 0;
}

/* ---- atomic_inc -------------------------------------------------------- */

struct inc_args {
	uint64_t va;
};

static void inc_fn(struct gvm_lane *l, const void *args)
{
	const struct inc_args *a = args;

	gvm_lane_atomic_add(l, a->va, 1, 8);
}

int gvm_kernel_atomic_inc(struct gvm_kernel *k, uint64_t va, uint64_t count)
{
	struct inc_args a = { va };

	if (!k || !count || (va & 7))
		return -EINVAL;
	kernel_init(k, "atomic_inc", inc_fn, count, &a, sizeof(a));
	return 0;
}

/* ---- triad --------------------------------------------------------------- */

struct triad_args {
	uint64_t a, b, c, bytes;
	double scalar;
};

static void triad_fn(struct gvm_lane *l, const void *args)
{
	const struct triad_args *t = args;
	double s = t->scalar;
	uint64_t off, left;

	if (!lane_chunk(l, t->bytes, &off, &left))
		return;
	while (left) {
		size_t na = left, nb = left, nc = left, n, i;
		const double *b, *c;
		double *a;

		b = gvm_lane_span(l, t->b + off, &nb, GVM_ACCESS_READ);
		if (!b)
			return;
		c = gvm_lane_span(l, t->c + off, &nc, GVM_ACCESS_READ);
		if (!c)
			return;
		a = gvm_lane_span(l, t->a + off, &na, GVM_ACCESS_WRITE);
		if (!a)
			return;
		n = na < nb ? na : nb;
		n = n < nc ? n : nc;
		for (i = 0; i < n / 8; i++)
			a[i] = b[i] + s * c[i];
		off += n;
		left -= n;
	}
}

int gvm_kernel_triad(struct gvm_kernel *k, uint64_t a, uint64_t b, uint64_t c,
		     uint64_t n, double scalar)
{
	struct triad_args t = { a, b, c, n * 8, scalar };

	if (!k || !n || n > UINT64_MAX / 8 || !range_ok(a, n * 8) ||
	    !range_ok(b, n * 8) || !range_ok(c, n * 8) ||
	    ((a | b | c) & 7))
		return -EINVAL;
	kernel_init(k, "triad", triad_fn, lanes_for(n * 8), &t, sizeof(t));
	return 0;
}
