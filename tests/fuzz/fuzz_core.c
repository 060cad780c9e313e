// SPDX-License-Identifier: MIT
/*
 * The VM_BIND fuzzer: bytes -> gvm operations, checked against a model.
 *
 * World (rebuilt for every input): two simulated devices with 4 MiB of
 * VRAM each (so BOs are evicted and brought back), one VM on each (of the
 * process's mm, or with --det of a 2 MiB model mm), a compute queue and a
 * bind queue per VM.  Objects: up to 8 BOs per device (4 KiB .. 512 KiB,
 * VRAM, system or either; VRAM-only ones are kept under 2 MiB a device so
 * that an exec always fits) and 4 user buffers of 256 KiB (mmap'd in that
 * mm, mapped as userptr by both VMs).
 *
 * Two modes.  By default the user buffers are the process's memory
 * (gvm_mm_self: its userfaultfd thread delivers their invalidations) and
 * gvm's threads run freely.  With --det (gvm_fuzz_det, fuzz_det.c) the
 * input runs on the deterministic scheduler and the buffers live in a
 * model mm (<gvm/mm_model.h>), whose invalidations come from the calls
 * that change it, so that every thread of the run is the scheduler's: the
 * engine maps, unmaps, discards, moves, reads and writes them only
 * through the model's calls (the buf_* and obj_* helpers below), and the
 * final check adds that no engine wrote a frame the model freed.  The
 * same input means the same operations in both modes.
 *
 * The model: for each object, its bytes and, per page, whether they are
 * known (a kernel that faulted may or may not have written a page it
 * targeted: its pages become unknown until written whole again); for
 * each VM, what every page of a 4 MiB window at WIN maps (nothing, a BO
 * page, a user-buffer page or NULL; read-only or not).
 *
 * Each operation is decoded from the next bytes (an opcode, then its
 * arguments; missing bytes read as 0) and its result is predicted by the
 * model before it runs: the call's return value (0 or the errno a bad
 * argument must give: -EINVAL for malformed binds, prefetches to a
 * region a mapped BO may not use) and, for kernels, the job's status
 * (-EIO when it touches an unmapped page or writes a read-only one).
 * Binds go inline or on the bind queue (not waited for: exec orders
 * after them), sometimes several in one atomic array.  The CPU writes
 * objects, unmaps and remaps user buffers, discards them (MADV_DONTNEED)
 * and moves them away and back (mremap).  BOs are advised DONTNEED and
 * WILLNEED (gvm_bo_madvise()): while DONTNEED the model knows none of
 * their bytes (VRAM pressure may purge them), and WILLNEED's "retained"
 * tells it what they are (zeros if not retained and not written since;
 * a BO never advised DONTNEED must always be retained).
 *
 * Checks: every return value and job status; checksum kernels against
 * the model along the way; at the end, every mapping in each VM's VA tree
 * against the window model, every known byte of every object through the
 * CPU, every mapped known page through the GPU, and the VA trees and page
 * tables validate.  The first divergence is printed and the input fails.
 */
#include "fuzz_core.h"
#include "fuzz_input.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/mm_model.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "core/sync.h"
#include "mm/uffd_compat.h"
#include "pt/pt.h"
#include "vm/va.h"
#include "vm/vm.h"

#define K4 4096ull
#define NDEV 2
#define NBO 8				/* per device */
#define NBUF 4				/* user buffers */
#define BUF_PAGES 64
#define BO_PAGES_MAX 128
#define VRAM (4ull << 20)
#define VRAM_ONLY_BUDGET (2ull << 20)	/* per device */
#define WIN (1ull << 30)		/* the modelled window */
#define WIN_PAGES 1024
#define RES (WIN + 64 * (1ull << 20))	/* checksum result page */
#define MAX_K 64			/* pages per operation */
#define NOBJ (NDEV * NBO + NBUF)
#define MODEL_SIZE (2ull << 20)		/* --det: the model mm's range */

enum kind { M_NONE, M_BO, M_BUF, M_NULL };

struct mpage {
	uint8_t kind;			/* enum kind */
	uint8_t ro;
	uint8_t obj;			/* object index */
	uint16_t pg;			/* page in the object */
};

struct obj {
	struct gvm_bo *bo;		/* BOs; NULL: no object (or a buffer) */
	uint8_t *cpu;			/* BO map, or the buffer's memory in
					   the process's mm (NULL in a model
					   mm: buf_* and obj_* reach it) */
	uint64_t uaddr;			/* buffers: their address in the mm */
	uint8_t *shadow;		/* expected bytes */
	bool *known;			/* per page */
	uint32_t pages;
	uint32_t placement;		/* GVM_MEM_* (BOs) */
	int dev;			/* -1 for a buffer */
	bool dontneed;			/* BOs: advised DONTNEED now (may be
					   purged: no byte is known) */
	bool dirty;			/* written since that advice */
	bool lost;			/* a DONTNEED call since said "not
					   retained" */
};

struct world {
	struct gvm_mm *mm;
	bool model;			/* mm is a model mm (--det) */
	struct gvm_device *dev[NDEV];
	struct gvm_vm *vm[NDEV];
	struct gvm_queue *q[NDEV], *bq[NDEV];
	struct gvm_bo *res[NDEV];
	uint64_t *res_cpu[NDEV];
	struct obj o[NOBJ];
	uint64_t vram_only[NDEV];	/* bytes of VRAM-only BOs */
	struct mpage win[NDEV][WIN_PAGES];
	struct gvm_fuzz_io io;		/* input, stats, the verdict */
};

/* ---- input and reporting (fuzz_input.h) -------------------------------- */

static unsigned int byte(struct world *w)
{
	return gvm_fuzz_byte(&w->io);
}

static unsigned int u16(struct world *w)
{
	return gvm_fuzz_u16(&w->io);
}

#define FAIL(w, ...) GVM_FUZZ_FAIL(&(w)->io, __VA_ARGS__)
#define SAY(w, ...) GVM_FUZZ_SAY(&(w)->io, __VA_ARGS__)

static bool check_rc(struct world *w, const char *what, int got, int want)
{
	return gvm_fuzz_check_rc(&w->io, what, got, want);
}

#define die gvm_fuzz_die

/* ---- the model ------------------------------------------------------------- */

static uint8_t *obj_page(struct obj *o, uint32_t pg)
{
	return o->shadow + (uint64_t)pg * K4;
}

/* Does the model know the bytes of mapped page @m (NULL reads zero)? */
static bool page_known(struct world *w, const struct mpage *m)
{
	if (m->kind == M_NULL)
		return true;
	if (w->o[m->obj].dontneed)
		return false;
	return w->o[m->obj].known[m->pg];
}

/* Writes @src (NULL: unknown) to the object page behind @m. */
static void page_write(struct world *w, const struct mpage *m,
		       const uint8_t *src)
{
	struct obj *o;

	if (m->kind != M_BO && m->kind != M_BUF)
		return;				/* NULL: dropped */
	o = &w->o[m->obj];
	o->dirty |= o->dontneed;
	o->known[m->pg] = src != NULL;
	if (src)
		memcpy(obj_page(o, m->pg), src, K4);
}

/* ---- user buffers' memory: the process's own, or the model mm's ------ */

/*
 * Maps user buffer @o's BUF_PAGES of zeros: anywhere (o->uaddr is set),
 * or with @fixed at o->uaddr, replacing what is there.  In the process's
 * mm, the harness failing dies; in a model mm, a failure is gvm's: the
 * divergence is reported and -EIO returned.
 */
static int buf_map(struct world *w, struct obj *o, bool fixed)
{
	uint64_t len = BUF_PAGES * K4, a;
	void *p;
	int err;

	if (w->model) {
		err = gvm_mm_model_mmap(w->mm, o->uaddr, len,
					PROT_READ | PROT_WRITE,
					fixed ? GVM_MM_MODEL_FIXED : 0, &a);
		if (!check_rc(w, "gvm_mm_model_mmap", err, 0))
			return -EIO;
		if (fixed && a != o->uaddr) {
			FAIL(w, "gvm_mm_model_mmap(FIXED) mapped %#" PRIx64
				" for %#" PRIx64, a, o->uaddr);
			return -EIO;
		}
		o->uaddr = a;
		return 0;
	}
	p = mmap(fixed ? o->cpu : NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED : 0), -1, 0);
	if (p == MAP_FAILED || (fixed && p != o->cpu))
		die("mmap");
	o->cpu = p;
	o->uaddr = (uint64_t)(uintptr_t)p;
	return 0;
}

static void buf_unmap(struct world *w, struct obj *o)
{
	if (!w->model)
		munmap(o->cpu, BUF_PAGES * K4);
	else
		check_rc(w, "gvm_mm_model_munmap",
			 gvm_mm_model_munmap(w->mm, o->uaddr, BUF_PAGES * K4),
			 0);
}

/* madvise(MADV_DONTNEED) of the whole buffer: it reads zeros again. */
static void buf_discard(struct world *w, struct obj *o)
{
	if (!w->model) {
		if (madvise(o->cpu, BUF_PAGES * K4, MADV_DONTNEED))
			die("madvise");
		return;
	}
	check_rc(w, "gvm_mm_model_madvise",
		 gvm_mm_model_madvise(w->mm, o->uaddr, BUF_PAGES * K4,
				      GVM_MM_MODEL_DONTNEED), 0);
}

/*
 * Page @pg of buffer @o moved away and back, keeping its bytes: mremap to
 * a spare page (a PROT_NONE one mapped for it, which the move replaces),
 * then to where it was.  In the process the first move keeps the source
 * mapped (MREMAP_DONTUNMAP, empty), so no hole opens that another
 * thread's mapping could take and the move back would replace.
 */
static void buf_move_page(struct world *w, struct obj *o, uint32_t pg)
{
	uint64_t at = o->uaddr + pg * K4, spare, out;
	unsigned int mv = GVM_MM_MODEL_MAYMOVE | GVM_MM_MODEL_FIXED;
	void *p;
	int err;

	if (!w->model) {
		p = mmap(NULL, K4, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			 0);
		if (p == MAP_FAILED)
			die("mmap");
		if (mremap((void *)(uintptr_t)at, K4, K4,
			   MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
			   p) != p)
			die("mremap away");
		if (mremap(p, K4, K4, MREMAP_MAYMOVE | MREMAP_FIXED,
			   (void *)(uintptr_t)at) != (void *)(uintptr_t)at)
			die("mremap back");
		return;
	}
	err = gvm_mm_model_mmap(w->mm, 0, K4, PROT_NONE, 0, &spare);
	if (!err)
		err = gvm_mm_model_mremap(w->mm, at, K4, K4, mv, spare, &out);
	if (!err && out == spare)
		err = gvm_mm_model_mremap(w->mm, spare, K4, K4, mv, at, &out);
	if (check_rc(w, "moving a page away and back", err, 0) && out != at)
		FAIL(w, "gvm_mm_model_mremap moved the page to %#" PRIx64
			" instead of %#" PRIx64, out, at);
}

/*
 * The CPU writes or reads @len bytes of object @o at @off: a BO through
 * its map, a buffer in the process's memory directly, one in a model mm
 * through the model (true if it worked: else the divergence is reported).
 */
static void obj_write(struct world *w, struct obj *o, uint64_t off,
		      const void *src, uint64_t len)
{
	if (o->cpu)
		memcpy(o->cpu + off, src, len);
	else
		check_rc(w, "gvm_mm_model_write",
			 gvm_mm_model_write(w->mm, o->uaddr + off, src, len),
			 0);
}

static bool obj_read(struct world *w, struct obj *o, uint64_t off, void *dst,
		     uint64_t len)
{
	if (o->cpu) {
		memcpy(dst, o->cpu + off, len);
		return true;
	}
	return check_rc(w, "gvm_mm_model_read",
			gvm_mm_model_read(w->mm, o->uaddr + off, dst, len), 0);
}

/* ---- world -------------------------------------------------------------- */

static int world_init(struct world *w)
{
	struct gvm_sim_config cfg = { .vram_size = VRAM };
	struct gvm_mm_model_config mc = { .size = MODEL_SIZE };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = RES,
				  .range = K4 };
	int d, i, err;

	w->model = gvm_fuzz_det;
	if (w->model)
		err = gvm_mm_model_create(&mc, &w->mm);
	else
		err = gvm_mm_self(&w->mm);
	for (d = 0; d < NDEV && !err; d++) {
		err = gvm_sim_device_create(&cfg, &w->dev[d]);
		if (!err)
			err = gvm_vm_create(w->dev[d], w->mm, 0, &w->vm[d]);
		if (!err)
			err = gvm_queue_create(w->vm[d], GVM_ENGINE_COMPUTE,
					       &w->q[d]);
		if (!err)
			err = gvm_queue_create(w->vm[d], GVM_ENGINE_BIND,
					       &w->bq[d]);
		if (!err)
			err = gvm_bo_create(w->dev[d], K4, GVM_MEM_SYSTEM,
					    NULL, &w->res[d]);
		if (!err)
			err = gvm_bo_map(w->res[d], (void **)&w->res_cpu[d]);
		if (!err) {
			op.bo = w->res[d];
			err = gvm_vm_bind(w->vm[d], NULL, &op, 1, NULL, 0);
		}
	}
	for (i = 0; i < NOBJ; i++)
		w->o[i].dev = -1;
	for (i = NDEV * NBO; i < NOBJ && !err; i++) {
		struct obj *o = &w->o[i];

		o->shadow = calloc(BUF_PAGES, K4);
		o->known = malloc(BUF_PAGES * sizeof(bool));
		if (!o->shadow || !o->known) {
			err = -ENOMEM;
			break;
		}
		err = buf_map(w, o, false);
		if (err)
			break;
		o->pages = BUF_PAGES;
		memset(o->known, 1, BUF_PAGES * sizeof(bool));
	}
	return err;
}

static void world_fini(struct world *w)
{
	int d, i;

	for (d = 0; d < NDEV; d++) {
		if (w->bq[d])
			gvm_queue_destroy(w->bq[d]);
		if (w->q[d])
			gvm_queue_destroy(w->q[d]);
		if (w->vm[d])
			gvm_vm_destroy(w->vm[d]);
		if (w->res[d])
			gvm_bo_put(w->res[d]);
	}
	for (i = 0; i < NOBJ; i++) {
		struct obj *o = &w->o[i];

		if (o->bo)
			gvm_bo_put(o->bo);
		else if (o->cpu)
			munmap(o->cpu, o->pages * K4);
		free(o->shadow);
		free(o->known);
	}
	for (d = 0; d < NDEV; d++)
		if (w->dev[d])
			gvm_device_put(w->dev[d]);
	if (w->mm)
		gvm_mm_put(w->mm);
}

/* The VM's queued binds (and the moves they make) are done. */
static void quiesce(struct world *w, int v)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .out = &f };

	if (!gvm_vm_bind(w->vm[v], w->bq[v], NULL, 0, &s, 1) && f) {
		gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(f);
	}
}

/* Runs @k on VM @v's queue: the job's status (0 or its error). */
static int exec(struct world *w, int v, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .out = &f };
	int err;

	err = gvm_exec(w->q[v], k, &s, 1);
	if (err) {
		FAIL(w, "gvm_exec returned %d", err);
		return err;
	}
	w->io.st->execs++;
	gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
	err = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return err < 0 ? err : 0;
}

/* The model's checksum of [s, s + k) of VM @v; false if not all known. */
static bool model_sum(struct world *w, int v, uint32_t s, uint32_t k,
		      uint64_t *sum)
{
	*sum = 0;
	for (uint32_t i = 0; i < k; i++) {
		const struct mpage *m = &w->win[v][s + i];
		const uint64_t *p;

		if (m->kind == M_NONE || !page_known(w, m))
			return false;
		if (m->kind == M_NULL)
			continue;
		p = (const uint64_t *)obj_page(&w->o[m->obj], m->pg);
		for (uint64_t j = 0; j < K4 / 8; j++)
			*sum += p[j];
	}
	return true;
}

/* The GPU's checksum of [s, s + k) matches the model's (if it knows). */
static void gpu_check(struct world *w, int v, uint32_t s, uint32_t k)
{
	struct gvm_kernel kn;
	uint64_t want;
	bool known = model_sum(w, v, s, k, &want);
	bool mapped = true;
	int err;

	for (uint32_t i = 0; i < k; i++)
		mapped &= w->win[v][s + i].kind != M_NONE;
	gvm_kernel_checksum(&kn, WIN + s * K4, k * K4, RES);
	err = exec(w, v, &kn);
	if (w->io.failed)
		return;
	if (!check_rc(w, "checksum job", err, mapped ? 0 : -EIO) || !known)
		return;
	if (*w->res_cpu[v] != want)
		FAIL(w, "vm%d pages [%u, +%u): GPU sum %#" PRIx64
			", model %#" PRIx64, v, s, k, *w->res_cpu[v], want);
	w->io.st->bytes_checked += k * K4;
}

/* ---- operations ------------------------------------------------------------ */

/* Clips a page run [*s, *s + *k) to the window; k >= 1. */
static void pick_run(struct world *w, uint32_t *s, uint32_t *k)
{
	*s = u16(w) % WIN_PAGES;
	*k = byte(w) % MAX_K + 1;
	if (*s + *k > WIN_PAGES)
		*k = WIN_PAGES - *s;
}

static void op_bo_create(struct world *w)
{
	static const uint32_t places[] = { GVM_MEM_VRAM, GVM_MEM_SYSTEM,
					   GVM_MEM_VRAM | GVM_MEM_SYSTEM };
	int d = byte(w) % NDEV, i = byte(w) % NBO;
	struct obj *o = &w->o[d * NBO + i];
	uint32_t pages = byte(w) % BO_PAGES_MAX + 1;
	uint32_t place = places[byte(w) % 3];
	int err;

	if (o->bo)
		return;				/* slot taken */
	if (place == GVM_MEM_VRAM &&
	    w->vram_only[d] + pages * K4 > VRAM_ONLY_BUDGET)
		place |= GVM_MEM_SYSTEM;
	SAY(w, "bo_create dev%d #%d %u pages place %u\n", d, i, pages, place);
	err = gvm_bo_create(w->dev[d], pages * K4, place, NULL, &o->bo);
	if (!check_rc(w, "gvm_bo_create", err, 0))
		return;
	if (gvm_bo_map(o->bo, (void **)&o->cpu)) {
		FAIL(w, "gvm_bo_map failed");
		return;
	}
	o->pages = pages;
	o->placement = place;
	o->dev = d;
	o->shadow = calloc(pages, K4);
	o->known = malloc(pages * sizeof(bool));
	if (!o->shadow || !o->known)
		die("calloc");
	memset(o->known, 1, pages * sizeof(bool));
	if (place == GVM_MEM_VRAM)
		w->vram_only[d] += pages * K4;
}

/*
 * One bind op from the input, for VM @v, and its effect on the model (in
 * @win, the array's model so far).  *@want: the errno it must give.
 */
static void decode_bind(struct world *w, int v, struct mpage (*win)[WIN_PAGES],
			struct gvm_bind_op *op, int *want)
{
	unsigned int kind = byte(w) % 7;
	uint32_t s, k, i;
	struct obj *o;
	struct mpage m = { 0 };

	pick_run(w, &s, &k);
	memset(op, 0, sizeof(*op));
	op->addr = WIN + s * K4;
	op->range = k * K4;
	*want = 0;
	switch (kind) {
	case 0: /* MAP a BO of this VM's device */
		o = &w->o[v * NBO + byte(w) % NBO];
		if (!o->bo) {
			op->op = 0;		/* unknown op: -EINVAL */
			*want = -EINVAL;
			return;
		}
		i = byte(w) % o->pages;
		if (i + k > o->pages)
			i = o->pages >= k ? o->pages - k : 0;
		op->op = GVM_BIND_MAP;
		op->bo = o->bo;
		op->bo_offset = i * K4;
		op->flags = byte(w) & 1 ? GVM_BIND_READONLY : 0;
		if (i + k > o->pages) {
			*want = -EINVAL;	/* beyond the BO */
			return;
		}
		m = (struct mpage){ M_BO, op->flags != 0,
				    (uint8_t)(o - w->o), (uint16_t)i };
		for (uint32_t j = 0; j < k; j++, m.pg++)
			(*win)[s + j] = m;
		return;
	case 1: /* MAP_USERPTR of a user buffer */
		i = NDEV * NBO + byte(w) % NBUF;
		o = &w->o[i];
		op->op = GVM_BIND_MAP_USERPTR;
		m.pg = (uint16_t)(byte(w) % BUF_PAGES);
		if (m.pg + k > BUF_PAGES)
			m.pg = (uint16_t)(BUF_PAGES >= k ? BUF_PAGES - k : 0);
		op->userptr = o->uaddr + m.pg * K4;
		op->flags = byte(w) & 1 ? GVM_BIND_READONLY : 0;
		if (m.pg + k > BUF_PAGES) {
			op->range = (BUF_PAGES - m.pg) * K4;
			k = BUF_PAGES - m.pg;
		}
		m.kind = M_BUF;
		m.ro = op->flags != 0;
		m.obj = (uint8_t)i;
		for (uint32_t j = 0; j < k; j++, m.pg++)
			(*win)[s + j] = m;
		return;
	case 2: /* NULL */
		op->op = GVM_BIND_MAP;
		op->flags = GVM_BIND_NULL;
		m.kind = M_NULL;
		for (uint32_t j = 0; j < k; j++)
			(*win)[s + j] = m;
		return;
	case 3: /* UNMAP */
		op->op = GVM_BIND_UNMAP;
		for (uint32_t j = 0; j < k; j++)
			(*win)[s + j] = m;
		return;
	case 4: /* UNMAP_ALL of a BO */
		o = &w->o[v * NBO + byte(w) % NBO];
		op->op = GVM_BIND_UNMAP_ALL;
		op->addr = op->range = 0;
		op->bo = o->bo;
		if (!o->bo) {
			*want = -EINVAL;
			return;
		}
		for (i = 0; i < WIN_PAGES; i++)
			if ((*win)[i].kind == M_BO &&
			    &w->o[(*win)[i].obj] == o)
				(*win)[i] = m;
		return;
	case 5: /* PREFETCH */
		op->op = GVM_BIND_PREFETCH;
		op->prefetch_mem = byte(w) & 1 ? GVM_MEM_VRAM : GVM_MEM_SYSTEM;
		for (uint32_t j = 0; j < k; j++) {
			const struct mpage *p = &(*win)[s + j];

			if (p->kind == M_BO &&
			    !(w->o[p->obj].placement & op->prefetch_mem))
				*want = -EINVAL;
		}
		return;
	default: /* malformed */
		op->op = GVM_BIND_MAP;
		op->flags = GVM_BIND_NULL;
		switch (byte(w) % 4) {
		case 0: op->addr += 1; break;		/* unaligned */
		case 1: op->range = 0; break;
		case 2: op->flags |= 1u << 30; break;	/* unknown flag */
		default: /* the top page is canonical; two wrap */
			op->addr = ~0ull & ~(K4 - 1);
			op->range = 2 * K4;
			break;
		}
		*want = -EINVAL;
		return;
	}
}

/* 1..3 bind ops in one atomic call, inline or queued. */
static void op_bind(struct world *w)
{
	int v = byte(w) % NDEV, n = byte(w) % 3 + 1, want = 0, i, err;
	bool queued = byte(w) & 1;
	struct gvm_bind_op ops[3];
	static struct mpage win[WIN_PAGES];

	memcpy(win, w->win[v], sizeof(win));
	for (i = 0; i < n; i++) {
		int e;

		decode_bind(w, v, &win, &ops[i], &e);
		if (!want)
			want = e;
	}
	SAY(w, "bind vm%d %d op(s) first op %u [%#" PRIx64 ", +%#" PRIx64
	       ") %s, want %d\n", v, n, ops[0].op, ops[0].addr, ops[0].range,
	    queued ? "queued" : "inline", want);
	err = gvm_vm_bind(w->vm[v], queued ? w->bq[v] : NULL, ops,
			  (uint32_t)n, NULL, 0);
	/* Several bad ops: any of their errors is right, all are -EINVAL. */
	if (check_rc(w, "gvm_vm_bind", err, want) && !err)
		memcpy(w->win[v], win, sizeof(win));
}

/* A fill kernel over a run of the window. */
static void op_fill(struct world *w)
{
	int v = byte(w) % NDEV, want = 0, err;
	uint32_t s, k, pat = byte(w) * 0x01010101u ^ 0x5a000000u;
	static uint8_t page[K4];
	struct gvm_kernel kn;

	pick_run(w, &s, &k);
	for (uint32_t i = 0; i < k; i++) {
		const struct mpage *m = &w->win[v][s + i];

		if (m->kind == M_NONE || (m->ro && m->kind != M_NULL))
			want = -EIO;
	}
	SAY(w, "fill vm%d [%u, +%u) %#x want %d\n", v, s, k, pat, want);
	gvm_kernel_fill(&kn, WIN + s * K4, k * K4, pat);
	err = exec(w, v, &kn);
	if (w->io.failed || !check_rc(w, "fill job", err, want))
		return;
	for (uint32_t j = 0; j < K4 / 4; j++)
		memcpy(page + 4 * j, &pat, 4);
	for (uint32_t i = 0; i < k; i++) {
		const struct mpage *m = &w->win[v][s + i];

		/* a faulted job may have written any page it could */
		if (!m->ro)
			page_write(w, m, want ? NULL : page);
	}
}

/* A copy kernel between two runs of the window, when well defined. */
static void op_copy(struct world *w)
{
	int v = byte(w) % NDEV, want = 0, err;
	uint32_t s, d, k, i, j;
	struct gvm_kernel kn;
	uint8_t *tmp;

	pick_run(w, &s, &k);
	d = u16(w) % WIN_PAGES;
	if (d + k > WIN_PAGES || (d < s + k && s < d + k))
		return;
	for (i = 0; i < k; i++) {
		const struct mpage *a = &w->win[v][s + i];
		const struct mpage *b = &w->win[v][d + i];

		if (a->kind == M_NONE || b->kind == M_NONE ||
		    (b->ro && b->kind != M_NULL))
			want = -EIO;
		/* a destination page also read, or written twice: the
		   result depends on the lanes' order */
		for (j = 0; j < k && b->kind != M_NULL; j++) {
			const struct mpage *x = &w->win[v][s + j];
			const struct mpage *y = &w->win[v][d + j];

			if ((x->kind == b->kind && x->obj == b->obj &&
			     x->pg == b->pg) ||
			    (j != i && y->kind == b->kind &&
			     y->obj == b->obj && y->pg == b->pg))
				return;
		}
	}
	SAY(w, "copy vm%d [%u, +%u) -> %u want %d\n", v, s, k, d, want);
	tmp = malloc(k * K4);
	if (!tmp)
		die("malloc");
	for (i = 0; i < k; i++) {	/* the sources, before any write */
		const struct mpage *a = &w->win[v][s + i];

		if (a->kind == M_NULL)
			memset(tmp + i * K4, 0, K4);
		else if (a->kind != M_NONE && page_known(w, a))
			memcpy(tmp + i * K4, obj_page(&w->o[a->obj], a->pg),
			       K4);
	}
	gvm_kernel_copy(&kn, WIN + d * K4, WIN + s * K4, k * K4);
	err = exec(w, v, &kn);
	if (!w->io.failed && check_rc(w, "copy job", err, want)) {
		for (i = 0; i < k; i++) {
			const struct mpage *a = &w->win[v][s + i];
			const struct mpage *b = &w->win[v][d + i];
			bool ok = !want && (a->kind == M_NULL ||
					    page_known(w, a));

			if (b->ro)
				continue;
			page_write(w, b, ok ? tmp + i * K4 : NULL);
		}
	}
	free(tmp);
}

/* The CPU writes 8 bytes of an object. */
static void op_cpu_write(struct world *w)
{
	int i = byte(w) % NOBJ;
	struct obj *o = &w->o[i];
	uint64_t off, val = (uint64_t)u16(w) * 0x9e3779b97f4a7c15ull;

	if (!o->pages)
		return;
	off = ((uint64_t)u16(w) * 8) % (o->pages * K4);
	if (o->dev >= 0)
		quiesce(w, o->dev);		/* no move under the write */
	SAY(w, "cpu_write obj%d +%#" PRIx64 "\n", i, off);
	obj_write(w, o, off, &val, 8);
	memcpy(o->shadow + off, &val, 8);
	o->dirty |= o->dontneed;
}

/* What the CPU may do to a user buffer behind the GPU's back. */
static void op_buffer(struct world *w)
{
	int i = NDEV * NBO + byte(w) % NBUF;
	struct obj *o = &w->o[i];
	uint64_t len = o->pages * K4;
	unsigned int what = byte(w) % 3;

	SAY(w, "buffer obj%d %s\n", i,
	    what == 0 ? "munmap+mmap" : what == 1 ? "dontneed" : "mremap");
	switch (what) {
	case 0:	/* a new mapping at the same address: zeros */
		/*
		 * In the process, one mmap(MAP_FIXED) over the buffer, which
		 * unmaps it and maps anew in one step: a munmap() first would
		 * leave a hole that another thread's mapping can take (TSan's
		 * per-thread state did), and MAP_FIXED would then replace
		 * that mapping.
		 */
		if (w->model)
			buf_unmap(w, o);
		if (!w->io.failed)
			buf_map(w, o, true);
		break;
	case 1:	/* discarded: zeros */
		buf_discard(w, o);
		break;
	default: /* a page moved away and back: the same bytes (one page:
		    mremap moves one VMA, and registering parts of the
		    buffer with userfaultfd splits it) */
		buf_move_page(w, o, byte(w) % o->pages);
		return;
	}
	memset(o->shadow, 0, len);
	memset(o->known, 1, o->pages * sizeof(bool));
}

/*
 * WILLNEED on BO object @o, checked against the model: a BO not advised
 * DONTNEED cannot have been purged (retained); one that was and is not
 * retained holds zeros, or unknown bytes if written meanwhile (the write
 * may have come before or after the purge); retained, it holds what the
 * model says.
 */
static void willneed(struct world *w, int i)
{
	struct obj *o = &w->o[i];
	bool retained = false;
	int err;

	err = gvm_bo_madvise(o->bo, GVM_BO_WILLNEED, &retained);
	SAY(w, "madvise obj%d willneed: %d retained %d\n", i, err, retained);
	if (!check_rc(w, "gvm_bo_madvise(WILLNEED)", err, 0))
		return;
	if (!o->dontneed && !retained)
		FAIL(w, "obj%d: purged while WILLNEED", i);
	if (o->dontneed && o->lost && retained)
		FAIL(w, "obj%d: a purge reported by DONTNEED was lost", i);
	if (o->dontneed && !retained) {
		w->io.st->purges_seen++;
		memset(o->shadow, 0, o->pages * K4);
		memset(o->known, !o->dirty, o->pages * sizeof(bool));
	}
	o->dontneed = o->dirty = o->lost = false;
}

/* Purgeable BOs: DONTNEED (pressure may purge it), WILLNEED, bad advice. */
static void op_madvise(struct world *w)
{
	int i = byte(w) % (NDEV * NBO);
	unsigned int what = byte(w) % 8;
	struct obj *o = &w->o[i];
	bool retained = true;
	int err;

	if (!o->bo)
		return;
	if (what == 7) {		/* unknown advice: changes nothing */
		err = gvm_bo_madvise(o->bo, 2 + byte(w), &retained);
		check_rc(w, "gvm_bo_madvise(bad advice)", err, -EINVAL);
		if (!retained)
			FAIL(w, "a failed gvm_bo_madvise wrote retained");
		return;
	}
	if (what >= 3) {
		willneed(w, i);
		return;
	}
	err = gvm_bo_madvise(o->bo, GVM_BO_DONTNEED, what ? &retained : NULL);
	SAY(w, "madvise obj%d dontneed: %d\n", i, err);
	if (!check_rc(w, "gvm_bo_madvise(DONTNEED)", err, 0))
		return;
	if (!o->dontneed && what && !retained)
		FAIL(w, "obj%d: purged while WILLNEED", i);
	if (!o->dontneed)
		o->dirty = false;
	o->lost |= o->dontneed && what && !retained;
	o->dontneed = true;
	/*
	 * Sometimes pressure right away, for a BO in VRAM: a VRAM-only BO of
	 * a page more than is free comes and goes.  It always fits: the
	 * idle DONTNEED BOs in VRAM (this one at least) are the first
	 * victims, and they are purged.
	 */
	if (what == 2 && gvm_bo_region(o->bo) == GVM_MEM_VRAM) {
		struct gvm_device_info info;
		struct gvm_bo *bo;

		quiesce(w, o->dev);
		if (gvm_device_query(w->dev[o->dev], &info))
			die("gvm_device_query");
		SAY(w, "purge pressure dev%d %" PRIu64 " KiB\n", o->dev,
		    (uint64_t)(info.vram_free + K4) >> 10);
		err = gvm_bo_create(w->dev[o->dev], info.vram_free + K4,
				    GVM_MEM_VRAM, NULL, &bo);
		if (check_rc(w, "gvm_bo_create (purge pressure)", err, 0))
			gvm_bo_put(bo);
	}
}

/* VRAM pressure: a VRAM-only BO comes and goes, evicting idle ones. */
static void op_evict(struct world *w)
{
	int d = byte(w) % NDEV, err;
	uint64_t size = (byte(w) % 4 + 1) * (256ull << 10);
	struct gvm_bo *bo;

	if (w->vram_only[d] + size > VRAM_ONLY_BUDGET)
		return;
	quiesce(w, d);
	SAY(w, "evict dev%d %" PRIu64 " KiB\n", d, size >> 10);
	err = gvm_bo_create(w->dev[d], size, GVM_MEM_VRAM, NULL, &bo);
	if (check_rc(w, "gvm_bo_create (pressure)", err, 0))
		gvm_bo_put(bo);
}

static void op_checksum(struct world *w)
{
	int v = byte(w) % NDEV;
	uint32_t s, k;

	pick_run(w, &s, &k);
	SAY(w, "checksum vm%d [%u, +%u)\n", v, s, k);
	gpu_check(w, v, s, k);
}

/* ---- the final check ---------------------------------------------------------- */

/* VM @v's VA tree says what the window model says, page by page. */
static void check_tree(struct world *w, int v)
{
	struct gvm_vm *vm = w->vm[v];

	gvm__mutex_lock(&vm->lock);
	if (gvm__va_validate(&vm->va))
		FAIL(w, "vm%d: the VA tree does not validate", v);
	for (uint32_t i = 0; i < WIN_PAGES && !w->io.failed; i++) {
		const struct mpage *m = &w->win[v][i];
		uint64_t a = WIN + i * K4;
		struct gvm_va *va = gvm__va_find(&vm->va, a);
		uint32_t kind = va ? gvm__va_kind(va) : 0;
		bool ok;

		switch (m->kind) {
		case M_NONE:
			ok = !va;
			break;
		case M_BO:
			ok = va && kind == GVM_VA_KIND_BO &&
			     va->obj == w->o[m->obj].bo &&
			     va->obj_offset + (a - va->addr) == m->pg * K4;
			break;
		case M_BUF:
			ok = va && kind == GVM_VA_KIND_USERPTR &&
			     va->obj_offset + (a - va->addr) ==
				     w->o[m->obj].uaddr + m->pg * K4;
			break;
		default:
			ok = va && kind == GVM_VA_KIND_NULL;
			break;
		}
		if (ok && va && m->kind != M_NULL)
			ok = !(va->flags & GVM_VA_READONLY) == !m->ro;
		if (!ok)
			FAIL(w, "vm%d page %u: VA tree and model differ "
				"(model kind %d)", v, i, m->kind);
	}
	gvm__mutex_lock(&vm->pt_lock);
	if (!w->io.failed && gvm__pt_validate(&vm->pt))
		FAIL(w, "vm%d: the page tables do not validate", v);
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
}

/* --det: no engine wrote a frame the model mm had freed. */
static void check_poison(struct world *w)
{
	struct gvm_mm_model_stats ms;

	if (gvm_mm_model_stats(w->mm, &ms))
		FAIL(w, "gvm_mm_model_stats failed");
	else if (ms.poison_violations)
		FAIL(w, "%" PRIu64 " frames written after they were freed",
		     ms.poison_violations);
}

static void final_check(struct world *w)
{
	static uint8_t page[K4];
	int v, i;

	for (v = 0; v < NDEV && !w->io.failed; v++) {
		quiesce(w, v);
		check_tree(w, v);
	}
	/* Purgeable BOs made ordinary, so their bytes are checked too. */
	for (i = 0; i < NDEV * NBO && !w->io.failed; i++)
		if (w->o[i].bo && w->o[i].dontneed)
			willneed(w, i);
	for (i = 0; i < NOBJ && !w->io.failed; i++) {
		struct obj *o = &w->o[i];

		for (uint32_t pg = 0; pg < o->pages && !w->io.failed; pg++) {
			if (!o->known[pg])
				continue;
			if (!obj_read(w, o, pg * K4, page, K4))
				break;
			if (memcmp(page, obj_page(o, pg), K4)) {
				FAIL(w, "obj%d page %u: the CPU sees other "
					"bytes than the model", i, pg);
				break;
			}
			w->io.st->bytes_checked += K4;
		}
	}
	/* Every mapped run, through the GPU, MAX_K pages at a time. */
	for (v = 0; v < NDEV && !w->io.failed; v++) {
		uint32_t s = 0;

		while (s < WIN_PAGES && !w->io.failed) {
			uint32_t k = 0;

			while (s + k < WIN_PAGES && k < MAX_K &&
			       w->win[v][s + k].kind != M_NONE)
				k++;
			if (k)
				gpu_check(w, v, s, k);
			s += k ? k : 1;
		}
	}
	if (w->model && !w->io.failed)
		check_poison(w);
}

/* ---- entry --------------------------------------------------------------- */

int gvm_fuzz_run(const uint8_t *data, size_t size, struct gvm_fuzz_stats *st,
		 int verbose)
{
	static struct world w;
	struct gvm_fuzz_stats dummy = { 0 };
	int err;

	memset(&w, 0, sizeof(w));
	w.io.in = data;
	w.io.end = data + size;
	w.io.st = st ? st : &dummy;
	w.io.verbose = verbose;
	gvm_fuzz_det_begin(&w.io);
	err = world_init(&w);
	if (err) {
		fprintf(stderr, "fuzz: setting up failed: %d\n", err);
		world_fini(&w);
		gvm_fuzz_det_end(&w.io);
		return -2;
	}
	while (w.io.in < w.io.end && !w.io.failed) {
		switch (byte(&w) % 11) {
		case 0: op_bo_create(&w); break;
		case 1: case 2: case 3: op_bind(&w); break;
		case 4: op_fill(&w); break;
		case 5: op_copy(&w); break;
		case 6: op_cpu_write(&w); break;
		case 7: op_buffer(&w); break;
		case 8: op_evict(&w); break;
		case 10: op_madvise(&w); break;
		default: op_checksum(&w); break;
		}
		w.io.st->ops++;
	}
	if (!w.io.failed)
		final_check(&w);
	w.io.st->inputs++;
	world_fini(&w);
	gvm_fuzz_det_end(&w.io);
	return w.io.failed ? -1 : 0;
}
