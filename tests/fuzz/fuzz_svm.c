// SPDX-License-Identifier: MIT
/*
 * The SVM fuzzer: bytes -> CPU and GPU operations on shared virtual memory
 * over the model mm (<gvm/mm_model.h>), checked against a shadow model.
 *
 * World (rebuilt for every input): a model mm of 8 MiB at
 * GVM_MM_MODEL_BASE with a frame pool three times its pages (no access
 * ever runs out of frames); two simulated devices with small VRAM (2 or 4
 * MiB: SVM memory is evicted), linked or not and with access counters on
 * or off (the input's first byte); on each, a fault-mode LR VM of the mm
 * with a CPU_ADDR_MIRROR over the whole model range, a compute queue and
 * a system BO outside the mirror where checksum kernels put their result.
 *
 * The model: per page of the model range its protection (or unmapped;
 * mappings are the maximal runs of one protection, which is how the model
 * mm merges them), its bytes, and whether they are known (a GPU kernel
 * that faulted may or may not have written the writable pages it
 * targeted: those become unknown until written whole again, or read by
 * the CPU, which then learns them).  A fork child has its own copy of the
 * model, made at the fork.  Each operation's result is predicted before it
 * runs: the return value of every call (0, or the errno the model mm's and
 * gvm's contracts give: -EINVAL, -ENOMEM, -EFAULT, -EPERM, -ENOLINK), the
 * address mmap and mremap choose (first fit, as documented), and for each
 * kernel whether it faults: a GPU access to an address the CPU does not
 * map, or maps PROT_NONE, or a write to read-only memory, must fail the
 * job (a fault-log entry on a page the model says is bad), and every
 * other access must succeed (no stale translation survives an munmap,
 * mremap or madvise: a reused address reads the new zeros).
 *
 * Operations: mmap (first fit or FIXED over existing pages), munmap of a
 * whole mapping or any range, mremap (shrink, grow in place or moving,
 * move to a fixed address), mprotect, madvise(DONTNEED), CPU reads (every
 * byte compared) and writes through the model, GPU fill / store / copy /
 * checksum kernels on either device, PREFETCH binds to VRAM or system
 * memory (-EINVAL over a BO that may not go there), preferred location
 * per range (system, own device, the peer: -ENOLINK if STRICT and not
 * linked) and granularity, injected reclaim, VRAM pressure (a VRAM-only BO
 * comes and goes), fork and the child's reads and writes; BOs (system or
 * VRAM|system, up to 4 a device) bound inside the mirror, read-only or
 * not, which the VM's GPU accesses then reach instead of the CPU memory
 * (modelled per VM and page), unbound by UNMAP of BO pages (the mirror
 * comes back) or UNMAP_ALL, and read and written by the CPU through their
 * views.  Operations pick their pages uniformly or among the mapped ones.
 *
 * Final check: every mapped readable page through the CPU, every BO
 * through its view, every GPU-readable page of each VM through that GPU
 * (checksums), the child's pages, no fault logged that the model did not
 * predict, the page tables validate, and no frame was written after the
 * model mm freed it (poison_violations == 0).
 *
 * Single-threaded; gvm's own threads (fault servicing, engines) run
 * beside it.
 */
#include "fuzz_core.h"
#include "fuzz_input.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/mm_model.h>
#include <gvm/sim.h>
#include <gvm/svm.h>
#include <gvm/vm.h>

#include "core/sync.h"
#include "pt/pt.h"
#include "vm/vm.h"

#define K4 4096ull
#define NDEV 2
#define PAGES 2048u			/* the model range: 8 MiB */
#define BASE GVM_MM_MODEL_BASE
#define RES (BASE + (1ull << 30))	/* checksum results: not mirrored */
#define BIG 512u			/* pages of 2 MiB */
#define MAX_K 64u			/* pages of a small run */
#define MAX_IO (3 * K4)			/* bytes of a CPU access */
#define UNMAPPED 0xffu
#define RW (PROT_READ | PROT_WRITE)
#define NBO 4				/* BOs per device */

/* What the CPU side of an mm looks like. */
struct space {
	uint8_t prot[PAGES];		/* PROT_* or UNMAPPED */
	bool known[PAGES];		/* mem[] of the page is what it holds */
	uint8_t mem[PAGES * K4];
};

/* A BO of a device, bound inside the mirror of that device's VM. */
struct bobj {
	struct gvm_bo *bo;		/* NULL: not made yet */
	uint8_t *cpu;			/* its CPU view */
	uint8_t *mem;			/* expected bytes */
	bool *known;			/* per page */
	uint32_t pages;
	uint32_t placement;		/* GVM_MEM_* */
};

/* What a VM maps at a page of the model range instead of the mirror. */
struct ovl {
	uint8_t slot;			/* 0: the mirror; else BO slot + 1 */
	uint8_t ro;			/* bound read-only */
	uint16_t pg;			/* page of the BO */
};

/* Where a GPU access of a page lands, and what it may do. */
struct where {
	uint8_t *mem;			/* the expected bytes */
	bool *known;
	bool r, w;			/* reads, writes allowed */
};

struct world {
	struct gvm_fuzz_io io;		/* input, stats, the verdict */
	bool replay_limit;		/* a job failed at the replay limit:
					   the model cannot follow, the input
					   ends (counted, not a divergence) */
	struct gvm_mm *mm, *child;
	struct gvm_device *dev[NDEV];
	struct gvm_vm *vm[NDEV];
	struct gvm_queue *q[NDEV];
	struct gvm_bo *res[NDEV];
	uint64_t *res_cpu[NDEV];
	bool linked;
	struct bobj bo[NDEV][NBO];
	struct ovl ov[NDEV][PAGES];	/* per VM, per page */
	struct space par, chl;		/* the mm, the fork child */
	uint8_t buf[MAX_IO];
	bool bad[PAGES];		/* pages the running kernel may fault on */
};

/* ---- input --------------------------------------------------------------- */

static unsigned int byte(struct world *w)
{
	return gvm_fuzz_byte(&w->io);
}

static unsigned int u16(struct world *w)
{
	return gvm_fuzz_u16(&w->io);
}

/* After a replay-limit failure (struct world) nothing more is judged. */
#define FAIL(w, ...)							\
	do {								\
		if (!(w)->replay_limit)					\
			GVM_FUZZ_FAIL(&(w)->io, __VA_ARGS__);		\
	} while (0)
#define SAY(w, ...) GVM_FUZZ_SAY(&(w)->io, __VA_ARGS__)

static bool check_rc(struct world *w, const char *what, int got, int want)
{
	return gvm_fuzz_check_rc(&w->io, what, got, want);
}

static uint64_t addr_of(uint32_t pg)
{
	return BASE + (uint64_t)pg * K4;
}

/*
 * A page of the model range: any, or (bit 15 of the input) a mapped one,
 * so that operations find memory more often than a uniform pick would.
 */
static uint32_t pick_page(struct world *w)
{
	unsigned int x = u16(w);
	uint32_t pg = x % PAGES, n = 0, i;

	if (!(x & 0x8000))
		return pg;
	for (i = 0; i < PAGES; i++)
		n += w->par.prot[i] != UNMAPPED;
	if (!n)
		return pg;
	n = pg % n;
	for (i = 0; i < PAGES; i++)
		if (w->par.prot[i] != UNMAPPED && !n--)
			break;
	return i;
}

/*
 * A run of pages [*s, *s + *k) inside the range: small (1 .. 64 pages) or,
 * one time in eight, a 2 MiB-aligned 2 MiB block.
 */
static void pick_run(struct world *w, uint32_t *s, uint32_t *k)
{
	unsigned int b = byte(w);

	*s = pick_page(w);
	if (b < 32) {
		*s &= ~(BIG - 1);
		*k = BIG;
	} else {
		*k = b % MAX_K + 1;
	}
	if (*s + *k > PAGES)
		*k = PAGES - *s;
}

/* ---- the model ------------------------------------------------------------- */

/* The mapping (run of one protection) holding page @pg: [*a, *b). */
static bool vma_of(const struct space *sp, uint32_t pg, uint32_t *a,
		   uint32_t *b)
{
	uint8_t p = sp->prot[pg];

	if (p == UNMAPPED)
		return false;
	for (*a = pg; *a > 0 && sp->prot[*a - 1] == p; --*a)
		;
	for (*b = pg + 1; *b < PAGES && sp->prot[*b] == p; ++*b)
		;
	return true;
}

static bool all_mapped(const struct space *sp, uint32_t s, uint32_t k)
{
	for (uint32_t i = s; i < s + k; i++)
		if (sp->prot[i] == UNMAPPED)
			return false;
	return true;
}

static bool none_mapped(const struct space *sp, uint32_t s, uint32_t k)
{
	for (uint32_t i = s; i < s + k; i++)
		if (sp->prot[i] != UNMAPPED)
			return false;
	return true;
}

/* The model mm's first fit: lowest free run (2 MiB aligned for 2 MiB+). */
static bool find_free(const struct space *sp, uint32_t k, uint32_t *out)
{
	uint32_t align = k >= BIG ? BIG : 1;

	for (uint32_t a = 0; a + k <= PAGES; a += align)
		if (none_mapped(sp, a, k)) {
			*out = a;
			return true;
		}
	return false;
}

static void set_map(struct space *sp, uint32_t s, uint32_t k, uint8_t prot)
{
	memset(sp->prot + s, prot, k);
	memset(sp->mem + (uint64_t)s * K4, 0, (uint64_t)k * K4);
	memset(sp->known + s, 1, k);
}

static void set_unmap(struct space *sp, uint32_t s, uint32_t k)
{
	memset(sp->prot + s, UNMAPPED, k);
}

static bool readable(uint8_t prot)
{
	return prot != UNMAPPED && (prot & (PROT_READ | PROT_WRITE));
}

static bool writable(uint8_t prot)
{
	return prot != UNMAPPED && (prot & PROT_WRITE);
}

/* Where VM @v's GPU access of page @pg lands. */
static void where(struct world *w, int v, uint32_t pg, struct where *x)
{
	const struct ovl *o = &w->ov[v][pg];

	if (o->slot) {
		struct bobj *b = &w->bo[v][o->slot - 1];

		x->mem = b->mem + (uint64_t)o->pg * K4;
		x->known = &b->known[o->pg];
		x->r = true;
		x->w = !o->ro;
		return;
	}
	x->mem = w->par.mem + (uint64_t)pg * K4;
	x->known = &w->par.known[pg];
	x->r = readable(w->par.prot[pg]);
	x->w = writable(w->par.prot[pg]);
}

/*
 * A CPU access of [a, a + len) model offsets: the error it must give
 * (-EFAULT: a page not mapped or PROT_NONE; -EPERM: a write to read-only)
 * and, in *@done, the bytes before the failing page (all of them on 0).
 */
static int cpu_predict(const struct space *sp, uint64_t a, uint64_t len,
		       bool write, uint64_t *done)
{
	for (uint64_t p = a & ~(K4 - 1); p < a + len; p += K4) {
		uint8_t prot = sp->prot[p / K4];

		*done = p > a ? p - a : 0;
		if (!readable(prot))
			return -EFAULT;
		if (write && !writable(prot))
			return -EPERM;
	}
	*done = len;
	return 0;
}

static void gen_bytes(uint8_t *p, uint64_t n, unsigned int seed)
{
	for (uint64_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 0x9d + (i >> 8) * 0x3b);
}

/* ---- world -------------------------------------------------------------- */

static int world_init(struct world *w, unsigned int cfgb)
{
	struct gvm_mm_model_config mc = { .size = PAGES * K4,
					  .frames = 3 * PAGES };
	struct gvm_sim_config cfg = {
		.vram_size = cfgb & 4 ? 2ull << 20 : 4ull << 20,
		.access_threshold = cfgb & 2 ? 0 : GVM_SIM_ACCESS_OFF,
	};
	struct gvm_bind_op mirror = { .op = GVM_BIND_MAP, .addr = BASE,
				      .range = PAGES * K4,
				      .flags = GVM_BIND_CPU_ADDR_MIRROR };
	struct gvm_bind_op res = { .op = GVM_BIND_MAP, .addr = RES,
				   .range = K4 };
	int d, err;

	memset(w->par.prot, UNMAPPED, PAGES);
	err = gvm_mm_model_create(&mc, &w->mm);
	for (d = 0; d < NDEV && !err; d++)
		err = gvm_sim_device_create(&cfg, &w->dev[d]);
	w->linked = cfgb & 1;
	if (!err && w->linked)
		err = gvm_device_link(w->dev[0], w->dev[1], NULL);
	for (d = 0; d < NDEV && !err; d++) {
		err = gvm_vm_create(w->dev[d], w->mm,
				    GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				    &w->vm[d]);
		if (!err)
			err = gvm_queue_create(w->vm[d], GVM_ENGINE_COMPUTE,
					       &w->q[d]);
		if (!err)
			err = gvm_vm_bind(w->vm[d], NULL, &mirror, 1, NULL, 0);
		if (!err)
			err = gvm_bo_create(w->dev[d], K4, GVM_MEM_SYSTEM,
					    NULL, &w->res[d]);
		if (!err)
			err = gvm_bo_map(w->res[d], (void **)&w->res_cpu[d]);
		if (!err) {
			res.bo = w->res[d];
			err = gvm_vm_bind(w->vm[d], NULL, &res, 1, NULL, 0);
		}
	}
	return err;
}

static void world_fini(struct world *w)
{
	int d;

	if (w->child)
		gvm_mm_put(w->child);
	for (d = 0; d < NDEV; d++) {
		if (w->q[d])
			gvm_queue_destroy(w->q[d]);
		if (w->vm[d])
			gvm_vm_destroy(w->vm[d]);
		if (w->res[d])
			gvm_bo_put(w->res[d]);
		for (int i = 0; i < NBO; i++) {
			struct bobj *b = &w->bo[d][i];

			if (b->bo)
				gvm_bo_put(b->bo);
			free(b->mem);
			free(b->known);
		}
	}
	for (d = 0; d < NDEV; d++)
		if (w->dev[d])
			gvm_device_put(w->dev[d]);
	if (w->mm)
		gvm_mm_put(w->mm);
}

/*
 * Runs @k on VM @v to its end: true if it faulted.  Every fault it logged
 * must be on a page w->bad[] allows (or outside the range: a divergence).
 */
static bool run(struct world *w, int v, const struct gvm_kernel *k)
{
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };
	struct gvm_fault_info f[8];
	uint32_t n = 0, total = 0;
	int err;

	err = gvm_exec(w->q[v], k, &s, 1);
	if (err) {
		FAIL(w, "gvm_exec(%s) returned %d", k->name, err);
		return false;
	}
	w->io.st->execs++;
	err = gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE);
	if (err) {
		FAIL(w, "waiting for %s: %d", k->name, err);
		return false;
	}
	do {
		err = gvm_vm_query_faults(w->vm[v], f, 8, &n);
		if (err) {
			FAIL(w, "gvm_vm_query_faults: %d", err);
			return false;
		}
		total += n;
		for (uint32_t i = 0; i < n; i++) {
			uint64_t a = f[i].addr;

			if (a >= BASE && a < BASE + PAGES * K4 &&
			    w->bad[(a - BASE) / K4])
				continue;
			/*
			 * Known defect (docs/verification.md, "Known
			 * defects"): a fault serviced again and again without
			 * the access ever translating, until the engine gives
			 * up.  Not the model's to predict: the input ends.
			 */
			if (f[i].reason == GVM_FAULT_REPLAY_LIMIT) {
				w->replay_limit = true;
				return true;
			}
			FAIL(w, "vm%d %s: a GPU fault at %#" PRIx64
				" (page %" PRId64 ") the model does not allow",
			     v, k->name, a, (int64_t)(a - BASE) / (int64_t)K4);
			return true;
		}
	} while (n == 8);
	return total > 0;
}

/*
 * Marks the pages of [s, s + k) a kernel may fault on (@write: needs
 * write access); true if there is one (the job must fault).
 */
static bool mark_bad(struct world *w, int v, uint32_t s, uint32_t k,
		     bool write)
{
	struct where x;
	bool any = false;

	for (uint32_t i = s; i < s + k; i++) {
		where(w, v, i, &x);
		w->bad[i] = write ? !x.w : !x.r;
		any |= w->bad[i];
	}
	return any;
}

static void clear_bad(struct world *w, uint32_t s, uint32_t k)
{
	memset(w->bad + s, 0, k);
}

/* The job's outcome is what the model said. */
static void check_fault(struct world *w, int v, const char *what, bool got,
			bool want, uint32_t s, uint32_t k)
{
	if (got != want)
		FAIL(w, "vm%d %s of pages [%u, +%u): %s, the model says %s", v,
		     what, s, k, got ? "faulted" : "ran", want ? "fault" : "run");
	else if (want)
		w->io.st->errors_expected++;
}

/*
 * Runs @kn on VM @v, whose pages [s, s + k) mark_bad() marked (@want: the
 * model expects a fault), unmarks them and checks the fault against the
 * model.  False if the input already failed (nothing more to check).
 */
static bool run_checked(struct world *w, int v, const struct gvm_kernel *kn,
			const char *what, bool want, uint32_t s, uint32_t k)
{
	bool got = run(w, v, kn);

	clear_bad(w, s, k);
	if (w->io.failed)
		return false;
	check_fault(w, v, what, got, want, s, k);
	return true;
}

/* The model's checksum of [s, s + k) in VM @v; false if not all known. */
static bool model_sum(struct world *w, int v, uint32_t s, uint32_t k,
		      uint64_t *sum)
{
	*sum = 0;
	for (uint32_t i = s; i < s + k; i++) {
		struct where x;
		const uint8_t *p;

		where(w, v, i, &x);
		p = x.mem;
		if (!*x.known)
			return false;
		for (uint64_t j = 0; j < K4; j += 8) {
			uint64_t q;

			memcpy(&q, p + j, 8);
			*sum += q;
		}
	}
	return true;
}

/* ---- CPU operations ------------------------------------------------------------ */

static void op_mmap(struct world *w)
{
	static const uint8_t prots[] = { RW, RW, RW, PROT_READ, PROT_NONE };
	unsigned int b = byte(w);
	uint32_t k = b < 48 ? BIG * (1 + b % 2) : b % MAX_K + 1;
	uint8_t prot = prots[byte(w) % 5];
	bool fixed = byte(w) & 1;
	uint32_t s = u16(w) % PAGES, want_pg = 0;
	uint64_t out = 0;
	int want = 0, err;

	if (fixed && s + k > PAGES)
		want = -EINVAL;
	else if (fixed)
		want_pg = s;
	else if (!find_free(&w->par, k, &want_pg))
		want = -ENOMEM;
	SAY(w, "mmap %u pages prot %u %s%u: want %d at %u\n", k, prot,
	    fixed ? "fixed " : "", s, want, want_pg);
	err = gvm_mm_model_mmap(w->mm, addr_of(s), k * K4, prot,
				fixed ? GVM_MM_MODEL_FIXED : 0, &out);
	if (!check_rc(w, "gvm_mm_model_mmap", err, want) || err)
		return;
	if (out != addr_of(want_pg)) {
		FAIL(w, "mmap of %u pages at %#" PRIx64 ", the model says %#"
			PRIx64, k, out, addr_of(want_pg));
		return;
	}
	set_map(&w->par, want_pg, k, prot);
}

static void op_munmap(struct world *w)
{
	uint32_t s, k, a, b;
	bool whole = byte(w) & 1;
	int err;

	pick_run(w, &s, &k);
	if (whole && vma_of(&w->par, s, &a, &b)) {
		s = a;
		k = b - a;
	}
	SAY(w, "munmap [%u, +%u)\n", s, k);
	err = gvm_mm_model_munmap(w->mm, addr_of(s), k * K4);
	if (check_rc(w, "gvm_mm_model_munmap", err, 0))
		set_unmap(&w->par, s, k);
}

/* Moves the model of [from, +k) to [to, +k) (free), as mremap does. */
static void model_move(struct space *sp, uint32_t from, uint32_t to,
		       uint32_t k)
{
	memmove(sp->prot + to, sp->prot + from, k);
	memmove(sp->known + to, sp->known + from, k);
	memmove(sp->mem + (uint64_t)to * K4, sp->mem + (uint64_t)from * K4,
		(uint64_t)k * K4);
	for (uint32_t i = from; i < from + k; i++)
		if (i < to || i >= to + k)
			sp->prot[i] = UNMAPPED;
}

static void op_mremap(struct world *w)
{
	unsigned int how = byte(w) % 4;
	uint32_t s = u16(w) % PAGES, t = u16(w) % PAGES;
	unsigned int d = byte(w) % MAX_K + 1;
	uint32_t a = s, b = s + 1, old, olen, nlen, to = 0, keep;
	unsigned int flags = 0;
	bool fixed, grow_in_place = false;
	uint64_t out = 0;
	int want = 0, err;
	uint8_t prot;

	vma_of(&w->par, s, &a, &b);
	old = a;
	olen = b - a;
	switch (how) {
	case 0: /* shrink in place (or not at all) */
		nlen = olen > d ? olen - d : olen;
		break;
	case 1: /* grow: in place if free after it, else moving (or not) */
		nlen = olen + d;
		flags = byte(w) & 1 ? GVM_MM_MODEL_MAYMOVE : 0;
		break;
	case 2: /* the whole mapping to a fixed address, resized */
		nlen = byte(w) & 1 ? olen + d : olen > d ? olen - d : olen;
		flags = GVM_MM_MODEL_MAYMOVE | GVM_MM_MODEL_FIXED;
		break;
	default: /* part of it, from s (may cross its end: -EFAULT) */
		old = s;
		olen = d;
		nlen = olen;
		flags = GVM_MM_MODEL_MAYMOVE | GVM_MM_MODEL_FIXED;
		break;
	}
	fixed = flags & GVM_MM_MODEL_FIXED;
	/* the model mm's checks, in its order */
	if (old + olen > PAGES ||
	    (fixed && (t + nlen > PAGES ||
		       (t < old + olen && old < t + nlen))))
		want = -EINVAL;
	else if (!vma_of(&w->par, old, &a, &b) || b < old + olen)
		want = -EFAULT;
	else if (!fixed && nlen > olen) {
		grow_in_place = old + nlen <= PAGES &&
				none_mapped(&w->par, old + olen, nlen - olen);
		if (!grow_in_place && !(flags & GVM_MM_MODEL_MAYMOVE))
			want = -ENOMEM;
		else if (!grow_in_place && !find_free(&w->par, nlen, &to))
			want = -ENOMEM;
	}
	SAY(w, "mremap [%u, +%u) -> %u pages flags %u to %u: want %d\n", old,
	    olen, nlen, flags, fixed ? t : to, want);
	err = gvm_mm_model_mremap(w->mm, addr_of(old), (uint64_t)olen * K4,
				  (uint64_t)nlen * K4, flags, addr_of(t), &out);
	if (!check_rc(w, "gvm_mm_model_mremap", err, want) || err)
		return;
	prot = w->par.prot[old];
	keep = nlen < olen ? nlen : olen;
	if (!fixed && (nlen <= olen || grow_in_place)) {
		if (nlen < olen)
			set_unmap(&w->par, old + nlen, olen - nlen);
		else if (nlen > olen)
			set_map(&w->par, old + olen, nlen - olen, prot);
		to = old;
	} else {
		if (fixed) {
			to = t;
			set_unmap(&w->par, to, nlen);
		}
		if (nlen < olen)
			set_unmap(&w->par, old + nlen, olen - nlen);
		model_move(&w->par, old, to, keep);
		if (nlen > olen)
			set_map(&w->par, to + olen, nlen - olen, prot);
	}
	if (out != addr_of(to))
		FAIL(w, "mremap to %#" PRIx64 ", the model says %#" PRIx64,
		     out, addr_of(to));
}

static void op_mprotect(struct world *w)
{
	static const uint8_t prots[] = { RW, RW, PROT_READ, PROT_NONE };
	unsigned int b = byte(w);
	uint8_t prot = prots[b % 4];
	uint32_t s, k;
	int want, err;

	pick_run(w, &s, &k);
	if (b >= 0xf0) {		/* a bad protection bit */
		err = gvm_mm_model_mprotect(w->mm, addr_of(s), k * K4, 0x100);
		check_rc(w, "gvm_mm_model_mprotect(bad prot)", err, -EINVAL);
		return;
	}
	want = all_mapped(&w->par, s, k) ? 0 : -ENOMEM;
	SAY(w, "mprotect [%u, +%u) %u: want %d\n", s, k, prot, want);
	err = gvm_mm_model_mprotect(w->mm, addr_of(s), k * K4, prot);
	if (check_rc(w, "gvm_mm_model_mprotect", err, want) && !err)
		memset(w->par.prot + s, prot, k);
}

static void op_dontneed(struct world *w)
{
	uint32_t s, k;
	int want, err;

	pick_run(w, &s, &k);
	want = all_mapped(&w->par, s, k) ? 0 : -ENOMEM;
	SAY(w, "madvise dontneed [%u, +%u): want %d\n", s, k, want);
	err = gvm_mm_model_madvise(w->mm, addr_of(s), k * K4,
				   GVM_MM_MODEL_DONTNEED);
	if (!check_rc(w, "gvm_mm_model_madvise", err, want) || err)
		return;
	memset(w->par.mem + (uint64_t)s * K4, 0, (uint64_t)k * K4);
	memset(w->par.known + s, 1, k);
}

/* A CPU range: any byte offset, up to MAX_IO bytes. */
static void pick_io(struct world *w, uint64_t *a, uint64_t *len)
{
	*a = ((uint64_t)(u16(w) % PAGES) * K4 + u16(w) % K4);
	*len = u16(w) % MAX_IO + 1;
	if (*a + *len > PAGES * K4)
		*len = PAGES * K4 - *a;
}

/* The CPU writes [a, +len) of @mm, modelled by @sp. */
static void cpu_write(struct world *w, struct gvm_mm *mm, struct space *sp,
		      const char *who)
{
	uint64_t a, len, done;
	int want, err;

	pick_io(w, &a, &len);
	gen_bytes(w->buf, len, byte(w));
	want = cpu_predict(sp, a, len, true, &done);
	SAY(w, "%s write [%#" PRIx64 ", +%" PRIu64 "): want %d\n", who, a, len,
	    want);
	err = gvm_mm_model_write(mm, BASE + a, w->buf, len);
	if (!check_rc(w, "gvm_mm_model_write", err, want))
		return;
	/* the pages before the failing one were written */
	memcpy(sp->mem + a, w->buf, done);
}

/* The CPU reads [a, +len) of @mm: every known byte as the model says. */
static void cpu_read_at(struct world *w, struct gvm_mm *mm, struct space *sp,
			uint64_t a, uint64_t len, const char *who)
{
	uint64_t done;
	int want, err;

	want = cpu_predict(sp, a, len, false, &done);
	SAY(w, "%s read [%#" PRIx64 ", +%" PRIu64 "): want %d\n", who, a, len,
	    want);
	memset(w->buf, 0x5a, len);
	err = gvm_mm_model_read(mm, BASE + a, w->buf, len);
	if (!check_rc(w, "gvm_mm_model_read", err, want))
		return;
	for (uint64_t o = 0; o < done;) {
		uint64_t pg = (a + o) / K4, n = K4 - (a + o) % K4;

		if (n > done - o)
			n = done - o;
		if (!sp->known[pg]) {
			/* learnt, if the whole page was read */
			if (n == K4) {
				memcpy(sp->mem + pg * K4, w->buf + o, K4);
				sp->known[pg] = true;
			}
		} else if (memcmp(sp->mem + a + o, w->buf + o, n)) {
			FAIL(w, "%s page %" PRIu64 ": the CPU reads other bytes "
				"than the model", who, pg);
			return;
		} else {
			w->io.st->bytes_checked += n;
		}
		o += n;
	}
}

static void cpu_read(struct world *w, struct gvm_mm *mm, struct space *sp,
		     const char *who)
{
	uint64_t a, len;

	pick_io(w, &a, &len);
	cpu_read_at(w, mm, sp, a, len, who);
}

static void op_cpu(struct world *w)
{
	if (byte(w) & 1)
		cpu_write(w, w->mm, &w->par, "cpu");
	else
		cpu_read(w, w->mm, &w->par, "cpu");
}

static void op_reclaim(struct world *w)
{
	uint32_t s, k;
	int err;

	pick_run(w, &s, &k);
	SAY(w, "reclaim [%u, +%u)\n", s, k);
	err = gvm_mm_model_reclaim(w->mm, addr_of(s), k * K4);
	if (err < 0 || (uint32_t)err > k)
		FAIL(w, "gvm_mm_model_reclaim of %u pages returned %d", k,
		     err);
}

/* fork, then the child's reads and writes, and its end. */
static void op_fork(struct world *w)
{
	unsigned int what = byte(w) % 4;
	int err;

	if (!w->child) {
		SAY(w, "fork\n");
		err = gvm_mm_model_fork(w->mm, &w->child);
		if (!check_rc(w, "gvm_mm_model_fork", err, 0))
			return;
		memcpy(w->chl.prot, w->par.prot, PAGES);
		memcpy(w->chl.known, w->par.known, PAGES);
		for (uint32_t i = 0; i < PAGES; i++)
			if (w->par.prot[i] != UNMAPPED)
				memcpy(w->chl.mem + i * K4,
				       w->par.mem + i * K4, K4);
		return;
	}
	switch (what) {
	case 0:
	case 1:
		cpu_read(w, w->child, &w->chl, "child");
		break;
	case 2:
		cpu_write(w, w->child, &w->chl, "child");
		break;
	default:
		SAY(w, "child exits\n");
		gvm_mm_put(w->child);
		w->child = NULL;
		break;
	}
}

/* ---- GPU operations ------------------------------------------------------------ */

static void op_fill(struct world *w)
{
	int v = byte(w) % NDEV;
	uint32_t pat = gvm_fuzz_u32(&w->io), s, k;
	struct gvm_kernel kn;
	bool want;

	pick_run(w, &s, &k);
	want = mark_bad(w, v, s, k, true);
	SAY(w, "fill vm%d [%u, +%u) %#x: fault %d\n", v, s, k, pat, want);
	gvm_kernel_fill(&kn, addr_of(s), k * K4, pat);
	if (!run_checked(w, v, &kn, "fill", want, s, k))
		return;
	for (uint32_t i = s; i < s + k; i++) {
		struct where x;

		where(w, v, i, &x);
		if (!x.w)
			continue;
		if (want) {
			*x.known = false;
			continue;
		}
		for (uint64_t j = 0; j < K4; j += 4)
			memcpy(x.mem + j, &pat, 4);
		*x.known = true;
	}
}

static void op_store(struct world *w)
{
	int v = byte(w) % NDEV;
	uint32_t pg = pick_page(w);
	uint64_t off = (byte(w) % (K4 / 8)) * 8, val = gvm_fuzz_u32(&w->io);
	struct gvm_kernel kn;
	struct where x;
	bool want;

	val |= val << 32;
	want = mark_bad(w, v, pg, 1, true);
	SAY(w, "store vm%d page %u +%" PRIu64 ": fault %d\n", v, pg, off, want);
	gvm_kernel_store_dword(&kn, addr_of(pg) + off, val, 64);
	if (!run_checked(w, v, &kn, "store", want, pg, 1))
		return;
	where(w, v, pg, &x);
	if (!want)
		memcpy(x.mem + off, &val, 8);
}

static void op_copy(struct world *w)
{
	int v = byte(w) % NDEV;
	uint32_t s, k, d = pick_page(w);
	struct where src[MAX_K], dst[MAX_K];
	struct gvm_kernel kn;
	bool want, got, known = true, alias = false;

	pick_run(w, &s, &k);
	if (k > MAX_K)
		k = MAX_K;
	if (d + k > PAGES)
		d = PAGES - k;
	if (d < s + k && s < d + k)
		return;				/* they overlap */
	want = mark_bad(w, v, s, k, false);
	want |= mark_bad(w, v, d, k, true);	/* disjoint: both kept */
	SAY(w, "copy vm%d [%u, +%u) -> %u: fault %d\n", v, s, k, d, want);
	gvm_kernel_copy(&kn, addr_of(d), addr_of(s), k * K4);
	got = run(w, v, &kn);
	clear_bad(w, s, k);
	clear_bad(w, d, k);
	if (w->io.failed)
		return;
	check_fault(w, v, "copy", got, want, s, k);
	/* a BO page mapped twice makes the order of the lanes matter */
	for (uint32_t i = 0; i < k; i++) {
		where(w, v, s + i, &src[i]);
		where(w, v, d + i, &dst[i]);
		known &= *src[i].known;
	}
	for (uint32_t i = 0; i < k && !alias; i++)
		for (uint32_t j = 0; j < k && !alias; j++)
			alias = dst[i].mem == src[j].mem ||
				(i != j && dst[i].mem == dst[j].mem);
	for (uint32_t i = 0; i < k; i++) {
		if (!dst[i].w)
			continue;
		if (want || !known || alias) {
			*dst[i].known = false;
			continue;
		}
		memcpy(dst[i].mem, src[i].mem, K4);
		*dst[i].known = true;
	}
}

/* The GPU's checksum of [s, s + k) on VM @v, against the model's. */
static void gpu_sum(struct world *w, int v, uint32_t s, uint32_t k)
{
	struct gvm_kernel kn;
	uint64_t sum;
	bool want, known;

	want = mark_bad(w, v, s, k, false);
	SAY(w, "checksum vm%d [%u, +%u): fault %d\n", v, s, k, want);
	*w->res_cpu[v] = 0x5a5a5a5a5a5a5a5aull;
	gvm_kernel_checksum(&kn, addr_of(s), k * K4, RES);
	if (!run_checked(w, v, &kn, "checksum", want, s, k))
		return;
	known = model_sum(w, v, s, k, &sum);
	if (want || w->io.failed || !known)
		return;
	if (*w->res_cpu[v] != sum)
		FAIL(w, "vm%d pages [%u, +%u): GPU sum %#" PRIx64
			", model %#" PRIx64, v, s, k, *w->res_cpu[v], sum);
	w->io.st->bytes_checked += k * K4;
}

static void op_checksum(struct world *w)
{
	int v = byte(w) % NDEV;
	uint32_t s, k;

	pick_run(w, &s, &k);
	gpu_sum(w, v, s, k);
}

static void op_prefetch(struct world *w)
{
	int v = byte(w) % NDEV;
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH };
	uint32_t s, k;
	int want = 0, err;

	op.prefetch_mem = byte(w) & 1 ? GVM_MEM_SYSTEM : GVM_MEM_VRAM;
	pick_run(w, &s, &k);
	op.addr = addr_of(s);
	op.range = k * K4;
	/* a BO mapped there that may not go to prefetch_mem: -EINVAL */
	for (uint32_t i = s; i < s + k; i++) {
		const struct ovl *o = &w->ov[v][i];

		if (o->slot && !(w->bo[v][o->slot - 1].placement &
				 op.prefetch_mem))
			want = -EINVAL;
	}
	SAY(w, "prefetch vm%d [%u, +%u) to %s: want %d\n", v, s, k,
	    op.prefetch_mem == GVM_MEM_VRAM ? "vram" : "system", want);
	err = gvm_vm_bind(w->vm[v], NULL, &op, 1, NULL, 0);
	check_rc(w, "gvm_vm_bind(PREFETCH)", err, want);
}

/* Memory attributes: preferred location (and granularity). */
static void op_attr(struct world *w)
{
	static const uint64_t grains[] = { 0, K4, 64 * 1024, 2ull << 20 };
	int v = byte(w) % NDEV;
	unsigned int b = byte(w);
	struct gvm_madvise adv = { .set = GVM_MADV_PREFERRED_LOC };
	uint32_t s, k;
	int want = 0, err;

	switch (b % 4) {
	case 0:
		adv.attrs.preferred_loc = GVM_LOC_DEFAULT;
		break;
	case 1:
		adv.attrs.preferred_loc = GVM_LOC_SYSTEM;
		break;
	case 2:
		adv.attrs.preferred_loc = GVM_LOC_DEVICE;
		adv.attrs.dev = w->dev[v];
		break;
	default:
		adv.attrs.preferred_loc = GVM_LOC_DEVICE;
		adv.attrs.dev = w->dev[!v];
		if (b & 4)
			adv.flags = GVM_MADV_STRICT;
		if (adv.flags && !w->linked)
			want = -ENOLINK;
		break;
	}
	if (b & 8) {
		adv.set |= GVM_MADV_GRANULARITY;
		adv.attrs.granularity = grains[(b >> 4) % 4];
	}
	pick_run(w, &s, &k);
	SAY(w, "attr vm%d [%u, +%u) loc %u%s set %#x: want %d\n", v, s, k,
	    adv.attrs.preferred_loc, adv.attrs.dev == w->dev[v] ? " own" :
	    adv.attrs.dev ? " peer" : "", adv.set, want);
	err = gvm_vm_madvise(w->vm[v], addr_of(s), k * K4, &adv);
	check_rc(w, "gvm_vm_madvise", err, want);
}

/* VRAM pressure: a VRAM-only BO comes and goes, evicting SVM memory. */
static void op_evict(struct world *w)
{
	int d = byte(w) % NDEV, err;
	uint64_t size = (byte(w) % 4 + 1) * (256ull << 10);
	struct gvm_bo *bo;

	if (w->io.verbose) {
		struct gvm_device_info info;

		/* not with --det: the query's locks would change the run */
		if (!gvm_fuzz_det && !gvm_device_query(w->dev[d], &info))
			SAY(w, "evict dev%d %" PRIu64 " KiB (%" PRIu64
				" KiB free of %" PRIu64 ")\n", d, size >> 10,
			    info.vram_free >> 10, info.vram_size >> 10);
		else
			SAY(w, "evict dev%d %" PRIu64 " KiB\n", d,
			    size >> 10);
	}
	err = gvm_bo_create(w->dev[d], size, GVM_MEM_VRAM, NULL, &bo);
	if (check_rc(w, "gvm_bo_create (pressure)", err, 0))
		gvm_bo_put(bo);
}

/* ---- BOs inside the mirror ------------------------------------------------------- */

/* BO slot @i of device @d, made on first use: 1 .. 64 pages. */
static struct bobj *bo_get(struct world *w, int d, int i, unsigned int b)
{
	static const uint32_t places[] = { GVM_MEM_SYSTEM,
					   GVM_MEM_VRAM | GVM_MEM_SYSTEM };
	struct bobj *o = &w->bo[d][i];
	int err;

	if (o->bo)
		return o;
	o->pages = b % MAX_K + 1;
	o->placement = places[(b >> 6) & 1];
	SAY(w, "bo dev%d #%d: %u pages place %u\n", d, i, o->pages,
	    o->placement);
	err = gvm_bo_create(w->dev[d], o->pages * K4, o->placement, NULL,
			    &o->bo);
	if (!check_rc(w, "gvm_bo_create", err, 0))
		return NULL;
	if (gvm_bo_map(o->bo, (void **)&o->cpu)) {
		FAIL(w, "gvm_bo_map failed");
		return NULL;
	}
	o->mem = calloc(o->pages, K4);
	o->known = malloc(o->pages * sizeof(bool));
	if (!o->mem || !o->known)
		gvm_fuzz_die("calloc");
	memset(o->known, 1, o->pages * sizeof(bool));
	return o;
}

/* MAP a BO of the VM's device over part of the mirror (or of BOs). */
static void op_bo_map(struct world *w)
{
	int v = byte(w) % NDEV, i = byte(w) % NBO;
	unsigned int b = byte(w), f = byte(w);
	struct gvm_bind_op op = { .op = GVM_BIND_MAP };
	struct bobj *o = bo_get(w, v, i, b);
	uint32_t s, k, off;
	int err;

	pick_run(w, &s, &k);
	if (!o)
		return;
	if (k > o->pages)
		k = o->pages;
	off = (f >> 1) % o->pages;
	if (off + k > o->pages)
		off = o->pages - k;
	op.bo = o->bo;
	op.addr = addr_of(s);
	op.range = k * K4;
	op.bo_offset = off * K4;
	op.flags = f & 1 ? GVM_BIND_READONLY : 0;
	SAY(w, "bo map vm%d [%u, +%u) bo #%d +%u%s\n", v, s, k, i, off,
	    op.flags ? " ro" : "");
	err = gvm_vm_bind(w->vm[v], NULL, &op, 1, NULL, 0);
	if (!check_rc(w, "gvm_vm_bind(MAP bo)", err, 0))
		return;
	for (uint32_t j = 0; j < k; j++)
		w->ov[v][s + j] = (struct ovl){ (uint8_t)(i + 1), f & 1,
						(uint16_t)(off + j) };
}

/*
 * Unbinds BOs: UNMAP of a run of BO pages (the mirror comes back there),
 * or UNMAP_ALL of one BO.
 */
static void op_bo_unmap(struct world *w)
{
	int v = byte(w) % NDEV, i = byte(w) % NBO;
	struct gvm_bind_op op = { 0 };
	uint32_t s, k, j;
	int err;

	pick_run(w, &s, &k);
	if (i & 1 && w->bo[v][i].bo) {
		op.op = GVM_BIND_UNMAP_ALL;
		op.bo = w->bo[v][i].bo;
		SAY(w, "bo unmap_all vm%d bo #%d\n", v, i);
		err = gvm_vm_bind(w->vm[v], NULL, &op, 1, NULL, 0);
		if (!check_rc(w, "gvm_vm_bind(UNMAP_ALL)", err, 0))
			return;
		for (j = 0; j < PAGES; j++)
			if (w->ov[v][j].slot == i + 1)
				w->ov[v][j] = (struct ovl){ 0 };
		return;
	}
	/* the BO pages from s (an UNMAP of the mirror would remove it) */
	for (j = 0; j < k && w->ov[v][s + j].slot; j++)
		;
	if (!j)
		return;
	op.op = GVM_BIND_UNMAP;
	op.addr = addr_of(s);
	op.range = j * K4;
	SAY(w, "bo unmap vm%d [%u, +%u)\n", v, s, j);
	err = gvm_vm_bind(w->vm[v], NULL, &op, 1, NULL, 0);
	if (check_rc(w, "gvm_vm_bind(UNMAP)", err, 0))
		memset(w->ov[v] + s, 0, j * sizeof(struct ovl));
}

/* The CPU writes or reads a BO through its view. */
static void op_bo_cpu(struct world *w)
{
	int d = byte(w) % NDEV, i = byte(w) % NBO;
	unsigned int b = byte(w);
	struct bobj *o = &w->bo[d][i];
	uint64_t a = u16(w), len = u16(w) % MAX_IO + 1;

	if (!o->bo)
		return;
	a %= o->pages * K4;
	if (a + len > o->pages * K4)
		len = o->pages * K4 - a;
	SAY(w, "bo %s dev%d #%d [%#" PRIx64 ", +%" PRIu64 ")\n",
	    b & 1 ? "write" : "read", d, i, a, len);
	if (b & 1) {
		gen_bytes(o->cpu + a, len, b);
		memcpy(o->mem + a, o->cpu + a, len);
		return;
	}
	for (uint64_t p = a / K4; p * K4 < a + len; p++) {
		uint64_t lo = p * K4 > a ? p * K4 : a;
		uint64_t hi = (p + 1) * K4 < a + len ? (p + 1) * K4 : a + len;

		if (!o->known[p])
			continue;
		if (memcmp(o->cpu + lo, o->mem + lo, hi - lo)) {
			FAIL(w, "bo dev%d #%d page %" PRIu64 ": the CPU reads "
				"other bytes than the model", d, i, p);
			return;
		}
		w->io.st->bytes_checked += hi - lo;
	}
}

/* ---- the final check ---------------------------------------------------------- */

static void check_pt(struct world *w, int v)
{
	struct gvm_vm *vm = w->vm[v];

	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->pt_lock);
	if (gvm__pt_validate(&vm->pt))
		FAIL(w, "vm%d: the page tables do not validate", v);
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
}

/* No engine wrote a frame the model mm had freed. */
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
	struct gvm_vm_stats vs;
	int v;

	/* every readable page through the CPU, a page at a time */
	for (uint32_t i = 0; i < PAGES && !w->io.failed; i++) {
		if (readable(w->par.prot[i]))
			cpu_read_at(w, w->mm, &w->par, (uint64_t)i * K4, K4,
				    "final");
		if (w->child && readable(w->chl.prot[i]) && !w->io.failed)
			cpu_read_at(w, w->child, &w->chl, (uint64_t)i * K4, K4,
				    "final child");
	}
	/* every known byte of every BO through the CPU */
	for (v = 0; v < NDEV && !w->io.failed; v++)
		for (int i = 0; i < NBO && !w->io.failed; i++) {
			struct bobj *o = &w->bo[v][i];

			for (uint32_t p = 0; o->bo && p < o->pages; p++) {
				if (!o->known[p])
					continue;
				if (memcmp(o->cpu + p * K4, o->mem + p * K4,
					   K4)) {
					FAIL(w, "bo dev%d #%d page %u: the CPU "
						"reads other bytes than the "
						"model", v, i, p);
					break;
				}
				w->io.st->bytes_checked += K4;
			}
		}
	/* and through each GPU, in runs of readable pages */
	for (v = 0; v < NDEV && !w->io.failed; v++) {
		uint32_t s = 0;

		while (s < PAGES && !w->io.failed) {
			uint32_t k = 0;
			struct where x;

			while (s + k < PAGES && k < MAX_K &&
			       (where(w, v, s + k, &x), x.r))
				k++;
			if (k)
				gpu_sum(w, v, s, k);
			s += k ? k : 1;
		}
		if (!w->io.failed)
			check_pt(w, v);
		if (!gvm_vm_stats(w->vm[v], &vs))
			w->io.st->migrations += vs.svm_migrations;
	}
	if (!w->io.failed)
		check_poison(w);
}

/* ---- entry --------------------------------------------------------------- */

int gvm_fuzz_svm_run(const uint8_t *data, size_t size,
		     struct gvm_fuzz_stats *st, int verbose)
{
	static struct world w;
	struct gvm_fuzz_stats dummy = { 0 };
	int err;

	memset(&w.io, 0, offsetof(struct world, par));
	w.io.in = data;
	w.io.end = data + size;
	w.io.st = st ? st : &dummy;
	w.io.verbose = verbose;
	gvm_fuzz_det_begin(&w.io);
	err = world_init(&w, byte(&w));
	if (err) {
		fprintf(stderr, "fuzz: setting up failed: %d\n", err);
		world_fini(&w);
		gvm_fuzz_det_end(&w.io);
		return -2;
	}
	while (w.io.in < w.io.end && !w.io.failed && !w.replay_limit) {
		switch (byte(&w) % 19) {
		case 0: op_mmap(&w); break;
		case 1: op_munmap(&w); break;
		case 2: op_mremap(&w); break;
		case 3: op_mprotect(&w); break;
		case 4: op_dontneed(&w); break;
		case 5: case 6: op_cpu(&w); break;
		case 7: op_fill(&w); break;
		case 8: op_store(&w); break;
		case 9: op_copy(&w); break;
		case 10: op_checksum(&w); break;
		case 11: op_prefetch(&w); break;
		case 12: op_attr(&w); break;
		case 13: op_reclaim(&w); break;
		case 14: op_fork(&w); break;
		case 15: op_evict(&w); break;
		case 16: op_bo_map(&w); break;
		case 17: op_bo_unmap(&w); break;
		default: op_bo_cpu(&w); break;
		}
		w.io.st->ops++;
		/* replaying with -v: find the operation that wrote a freed
		   frame (the final check only says that one did); not with
		   --det, where the check's locks would be scheduling points
		   of their own and -v would replay another interleaving */
		if (w.io.verbose && !w.io.failed && !gvm_fuzz_det)
			check_poison(&w);
	}
	if (w.replay_limit)
		w.io.st->replay_limits++;
	else if (!w.io.failed)
		final_check(&w);
	w.io.st->inputs++;
	world_fini(&w);
	gvm_fuzz_det_end(&w.io);
	return w.io.failed ? -1 : 0;
}
