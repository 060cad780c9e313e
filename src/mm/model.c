// SPDX-License-Identifier: MIT
/*
 * The model mm: a simulated address space driven by API calls
 * (include/gvm/mm_model.h), implementing the mm contract (mm.h) with
 * kernel-notifier semantics: every change runs *inside* the invalidation of
 * its range (gvm__notifier_invalidate_change), after both passes, as Linux
 * runs it between mmu_notifier_invalidate_range_start and _end.
 *
 * State.  A family (an mm and its fork children) shares a pool of frames,
 * host memory that the simulated GPU reaches directly: a fetch returns
 * frame addresses as the pages' device addresses.  Each mm has a sorted
 * array of mappings (private anonymous, with a protection) and a page
 * table, one entry per page of its range: a frame (or none: zero on first
 * touch), "dev" (the data is in device memory: devmem.c took the page),
 * "poisoned" (its device copy could not come back).  Frames are counted
 * (fork shares them copy-on-write) and freed ones are filled with the
 * poison byte and queued FIFO; a frame is reused only once more than
 * QUARANTINE frames wait, and is checked to still hold the poison then
 * (poison_violations: an engine wrote it after its invalidation ended).
 *
 *   change (munmap, mremap, mprotect, madvise, fork, reclaim, CoW break):
 *     map_lock
 *     invalidate [range] (event) ......... both passes: no engine reaches
 *     |                                    the old pages
 *     |  change (readers wait, notifier.h): devmem discard/remap (takes
 *     |    devmem_lock), then lock; pages and mappings; unlock
 *     end of invalidation
 *   fetch (userptr, SVM; vm->lock may be held): lock; check the mappings;
 *     allocate absent pages; extents; unlock.  A page in device memory is
 *     brought back first (gvm__mm_devmem_fault, lock dropped), a shared
 *     page fetched for writing is copied first (a CoW break: invalidation
 *     of that page, event FORK: the old frame lives on in the relative).
 *   CPU access: as a fetch, under map_lock, page by page.
 *   injected reclaim (site INVAL, model_inject_inval): a reclaim's
 *     invalidation and change without map_lock, where the site is
 *     reached (its caller may hold map_lock); the change works under
 *     phys->lock only, so changes beside it do not disturb it.
 *
 * "dev" pages are exactly the valid pages of devmem.c's extents, except
 * while a change of ours moves or drops both (mremap, munmap): a fetch,
 * which runs beside a change, then finds a dev page devmem.c does not
 * know (-ENOENT) and waits for the change to end (m->changing) instead of
 * zero-filling it.
 *
 * Locking: map_lock (rank GVM_RANK_MM_MAP, per mm) serialises the mm's
 * changes and CPU accesses, like the kernel's mmap lock; it is held
 * across invalidations (callbacks take notifier_lock and wait for
 * devices, never for it) and devmem_lock (GVM_RANK_MM) nests inside it;
 * nothing takes it with a gvm lock held.  phys->lock (GVM_RANK_LEAF, per
 * family) protects every page table, mapping array, frame count, the
 * free queue, stages and statistics of the family; nothing nests inside
 * it and nothing blocks under it.  Frame contents are not locked: the CPU
 * side copies them under phys->lock, engines access them as memory.  A
 * CPU access's caller buffer is process memory that the self mm's SVM may
 * have moved to device memory (touching it may block), so it goes through
 * a one-page bounce and is touched with map_lock held only; so are the
 * out-parameters stored (docs/locking.md, "Touching application memory").
 */
#include <gvm/mm_model.h>

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/debug.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "mm/mm.h"

#define PG GVM_MM_PAGE_SIZE
#define PG_SHIFT GVM_MM_PAGE_SHIFT
#define M2 (2ull << 20)
#define QUARANTINE 64u		/* freed frames kept back before reuse */
#define STAGE_POOL 4

/* The frames of a family. */
struct model_phys {
	uint32_t ref;			/* atomic: mms of the family */
	struct gvm_mutex lock;		/* GVM_RANK_LEAF, see the top */
	uint8_t *mem;			/* constant: nr frames */
	uint64_t nr;			/* constant */
	uint8_t poison;			/* constant */
	/* lock: */
	uint32_t *fref;			/* per frame: page-table entries */
	uint32_t *fifo;			/* ring of free frames */
	uint64_t head, nfree;		/* of the ring */
	uint64_t fresh;			/* frames never used: [fresh, nr) */
	uint64_t used;			/* frames referenced */
	uint64_t violations;		/* poison found overwritten */
};

struct mvma {
	uint64_t start, end;
	unsigned int prot;
};

struct mpte {
	uint32_t frame;			/* index + 1; 0: none */
	uint8_t dev;			/* data in device memory */
	uint8_t poisoned;
};

struct gvm_mm_model {
	struct gvm_mm base;
	struct model_phys *phys;	/* constant, a reference */
	uint64_t lo, hi;		/* constant: the range */
	struct gvm_mutex map_lock;	/* GVM_RANK_MM_MAP */
	/* phys->lock: */
	struct mvma *vma;		/* sorted, disjoint, merged */
	size_t nr_vma, cap_vma;
	struct mpte *pte;		/* (hi - lo) / PG */
	uint64_t *stages;		/* free 2 MiB stages */
	size_t nr_stages, cap_stages;
	unsigned int changing;		/* changes of ours under way */
	struct gvm_mm_model_stats st;	/* this mm's counters */
};

static const struct gvm_mm_ops model_ops;

static struct gvm_mm_model *to_model(struct gvm_mm *mm)
{
	return gvm_container_of(mm, struct gvm_mm_model, base);
}

static struct gvm_mm_model *model_of(struct gvm_mm *mm)
{
	return mm && mm->ops == &model_ops ? to_model(mm) : NULL;
}

/* ---- frames (phys->lock) ---------------------------------------------- */

static uint8_t *frame_mem(struct model_phys *p, uint32_t f)
{
	return p->mem + (uint64_t)(f - 1) * PG;
}

static bool poison_intact(const struct model_phys *p, const uint8_t *a)
{
	uint64_t w, v;
	size_t i;

	memset(&w, p->poison, sizeof(w));
	for (i = 0; i < PG; i += sizeof(v)) {
		memcpy(&v, a + i, sizeof(v));
		if (v != w)
			return false;
	}
	return true;
}

/* A zero-filled frame (index + 1), or 0 if the pool is exhausted. */
static uint32_t frame_alloc(struct model_phys *p)
{
	uint64_t idx;

	if (p->nfree > QUARANTINE || (p->fresh == p->nr && p->nfree)) {
		idx = p->fifo[p->head];
		p->head = (p->head + 1) % p->nr;
		p->nfree--;
		if (!poison_intact(p, p->mem + idx * PG)) {
			if (!p->violations++)
				fprintf(stderr, "gvm: model mm: frame %llu "
					"written after it was freed\n",
					(unsigned long long)idx);
		}
		memset(p->mem + idx * PG, 0, PG);
	} else if (p->fresh < p->nr) {
		idx = p->fresh++;	/* zero since the mmap */
	} else {
		return 0;
	}
	p->fref[idx] = 1;
	p->used++;
	return (uint32_t)idx + 1;
}

static void frame_put(struct model_phys *p, uint32_t f)
{
	if (--p->fref[f - 1])
		return;
	memset(frame_mem(p, f), p->poison, PG);
	p->fifo[(p->head + p->nfree) % p->nr] = f - 1;
	p->nfree++;
	p->used--;
}

static void phys_put(struct model_phys *p)
{
	if (!gvm__ref_put(&p->ref))
		return;
	munmap(p->mem, p->nr * PG);
	gvm__free(p->fref);
	gvm__free(p->fifo);
	gvm__mutex_fini(&p->lock);
	gvm__free(p);
}

static struct model_phys *phys_new(uint64_t frames, uint8_t poison)
{
	struct model_phys *p = gvm__calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->nr = frames;
	p->poison = poison;
	p->fref = gvm__calloc(frames, sizeof(*p->fref));
	p->fifo = gvm__calloc(frames, sizeof(*p->fifo));
	/*
	 * 2 MiB-aligned: a frame's host address is what a device maps (its
	 * "DMA address"), and the page-table engine picks leaf sizes by its
	 * alignment, so an unaligned pool would make the same operations map
	 * differently from one run to the next (address space
	 * randomisation), and a deterministic run (core/det.h) of a model mm
	 * would not be a function of its seed alone.
	 */
	p->mem = gvm__mm_map_aligned(frames * PG, 2ull << 20, MAP_NORESERVE);
	if (!p->fref || !p->fifo || p->mem == MAP_FAILED) {
		if (p->mem != MAP_FAILED)
			munmap(p->mem, frames * PG);
		gvm__free(p->fref);
		gvm__free(p->fifo);
		gvm__free(p);
		return NULL;
	}
	gvm__ref_init(&p->ref);
	gvm__mutex_init(&p->lock, "mm_model.phys", GVM_RANK_LEAF);
	return p;
}

/* ---- mappings and pages (phys->lock) ---------------------------------- */

static struct mpte *pte_of(struct gvm_mm_model *m, uint64_t addr)
{
	return &m->pte[(addr - m->lo) >> PG_SHIFT];
}

/* Index of the first mapping ending above @addr (nr_vma if none). */
static size_t vma_after(const struct gvm_mm_model *m, uint64_t addr)
{
	size_t lo = 0, hi = m->nr_vma;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (m->vma[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const struct mvma *vma_at(const struct gvm_mm_model *m, uint64_t addr)
{
	size_t i = vma_after(m, addr);

	return i < m->nr_vma && m->vma[i].start <= addr ? &m->vma[i] : NULL;
}

/* Is [start, end) wholly mapped (with every bit of @prot)? */
static bool covered(const struct gvm_mm_model *m, uint64_t start, uint64_t end,
		    unsigned int prot, bool any)
{
	size_t i = vma_after(m, start);
	uint64_t a = start;

	for (; a < end && i < m->nr_vma; i++) {
		const struct mvma *v = &m->vma[i];

		if (v->start > a)
			return false;
		if (any ? !(v->prot & prot) : (v->prot & prot) != prot)
			return false;
		a = v->end;
	}
	return a >= end;
}

static bool any_mapped(const struct gvm_mm_model *m, uint64_t start,
		       uint64_t end)
{
	size_t i = vma_after(m, start);

	return i < m->nr_vma && m->vma[i].start < end;
}

/* Drops the pages of [start, end): frames freed, entries cleared. */
static void pages_drop(struct gvm_mm_model *m, uint64_t start, uint64_t end)
{
	for (uint64_t a = start; a < end; a += PG) {
		struct mpte *e = pte_of(m, a);

		if (e->frame)
			frame_put(m->phys, e->frame);
		*e = (struct mpte){ 0 };
	}
}

/* Room for @extra more mappings, allocated with phys->lock not held (the
   caller holds map_lock: nobody else changes the array). */
static int vma_reserve(struct gvm_mm_model *m, size_t extra)
{
	size_t cap = m->cap_vma, need = m->nr_vma + extra;
	struct mvma *nv, *old;

	if (need <= cap)
		return 0;
	cap = need * 2 > 16 ? need * 2 : 16;
	nv = gvm__malloc(cap * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	gvm__mutex_lock(&m->phys->lock);
	old = m->vma;
	if (m->nr_vma)
		memcpy(nv, old, m->nr_vma * sizeof(*nv));
	m->vma = nv;
	m->cap_vma = cap;
	gvm__mutex_unlock(&m->phys->lock);
	gvm__free(old);
	return 0;
}

/* Removes [start, end) from the mappings (one spare slot needed). */
static void vmas_carve(struct gvm_mm_model *m, uint64_t start, uint64_t end)
{
	size_t i = vma_after(m, start);

	while (i < m->nr_vma && m->vma[i].start < end) {
		struct mvma *v = &m->vma[i];

		if (v->start < start && v->end > end) {	/* split in two */
			memmove(v + 1, v, (m->nr_vma - i) * sizeof(*v));
			m->nr_vma++;
			v[0].end = start;
			v[1].start = end;
			return;
		}
		if (v->start < start) {
			v->end = start;
			i++;
		} else if (v->end > end) {
			v->start = end;
			return;
		} else {
			memmove(v, v + 1, (m->nr_vma - i - 1) * sizeof(*v));
			m->nr_vma--;
		}
	}
}

/* Maps [start, end), which is free, with @prot (one spare slot needed);
   merges with equal neighbours. */
static void vmas_insert(struct gvm_mm_model *m, uint64_t start, uint64_t end,
			unsigned int prot)
{
	size_t i = vma_after(m, start);
	struct mvma *v = m->vma;

	if (i > 0 && v[i - 1].end == start && v[i - 1].prot == prot) {
		v[i - 1].end = end;
		if (i < m->nr_vma && v[i].start == end && v[i].prot == prot) {
			v[i - 1].end = v[i].end;
			memmove(&v[i], &v[i + 1],
				(m->nr_vma - i - 1) * sizeof(*v));
			m->nr_vma--;
		}
		return;
	}
	if (i < m->nr_vma && v[i].start == end && v[i].prot == prot) {
		v[i].start = start;
		return;
	}
	memmove(&v[i + 1], &v[i], (m->nr_vma - i) * sizeof(*v));
	v[i] = (struct mvma){ start, end, prot };
	m->nr_vma++;
}

/* The lowest free [a, a + len) (2 MiB aligned for 2 MiB or more). */
static int find_free(const struct gvm_mm_model *m, uint64_t len, uint64_t *out)
{
	uint64_t align = len >= M2 ? M2 : PG, a = m->lo;
	size_t i;

	for (i = 0; i <= m->nr_vma; i++) {
		uint64_t lim = i < m->nr_vma ? m->vma[i].start : m->hi;

		a = (a + align - 1) & ~(align - 1);
		if (a <= lim && lim - a >= len) {
			*out = a;
			return 0;
		}
		if (i < m->nr_vma && m->vma[i].end > a)
			a = m->vma[i].end;
	}
	return -ENOMEM;
}

/* ---- changes ------------------------------------------------------------ */

static bool in_range(const struct gvm_mm_model *m, uint64_t a, uint64_t len)
{
	return gvm__mm_range_ok(a, len) && a >= m->lo && a + len <= m->hi;
}

/* Runs @fn inside the invalidation of [start, start + len) (@ev). */
static int change(struct gvm_mm_model *m, uint64_t start, uint64_t len,
		  enum gvm_mm_event ev, int (*fn)(void *), void *arg)
{
	struct gvm_notifier_range r = {
		.start = start,
		.last = start + len - 1,
		.event = ev,
	};

	gvm__mutex_lock(&m->phys->lock);
	m->st.invalidations++;
	gvm__mutex_unlock(&m->phys->lock);
	return gvm__notifier_invalidate_change(&m->base, &r, fn, arg);
}

struct span {
	struct gvm_mm_model *m;
	uint64_t start, end;
	uint64_t to;			/* mremap: destination */
	unsigned int prot;		/* mprotect, mmap */
	int count;			/* reclaim */
};

static void changing(struct gvm_mm_model *m, int d)
{
	gvm__mutex_lock(&m->phys->lock);
	m->changing += (unsigned int)d;
	gvm__mutex_unlock(&m->phys->lock);
}

static int unmap_change(void *arg)
{
	struct span *s = arg;
	struct gvm_mm_model *m = s->m;

	changing(m, 1);
	gvm__mm_devmem_discard(&m->base, s->start, s->end - s->start);
	gvm__mutex_lock(&m->phys->lock);
	pages_drop(m, s->start, s->end);
	vmas_carve(m, s->start, s->end);
	m->changing--;
	gvm__mutex_unlock(&m->phys->lock);
	return 0;
}

/* map_lock held; one spare mapping slot reserved. */
static void do_unmap(struct gvm_mm_model *m, uint64_t start, uint64_t end)
{
	struct span s = { .m = m, .start = start, .end = end };
	bool any;

	gvm__mutex_lock(&m->phys->lock);
	any = any_mapped(m, start, end);
	gvm__mutex_unlock(&m->phys->lock);
	if (any)
		change(m, start, end - start, GVM_MM_EVENT_UNMAP, unmap_change,
		       &s);
}

static int dontneed_change(void *arg)
{
	struct span *s = arg;

	gvm__mm_devmem_discard(&s->m->base, s->start, s->end - s->start);
	gvm__mutex_lock(&s->m->phys->lock);
	pages_drop(s->m, s->start, s->end);
	gvm__mutex_unlock(&s->m->phys->lock);
	return 0;
}

static int protect_change(void *arg)
{
	struct span *s = arg;

	gvm__mutex_lock(&s->m->phys->lock);
	vmas_carve(s->m, s->start, s->end);
	vmas_insert(s->m, s->start, s->end, s->prot);
	gvm__mutex_unlock(&s->m->phys->lock);
	return 0;
}

/* mremap's move: [start, end) to [to, ...), which is free. */
static int move_change(void *arg)
{
	struct span *s = arg;
	struct gvm_mm_model *m = s->m;
	uint64_t len = s->end - s->start;
	const struct mvma *v;
	unsigned int prot;

	changing(m, 1);
	gvm__mutex_lock(&m->phys->lock);
	v = vma_at(m, s->start);
	prot = v->prot;
	vmas_carve(m, s->start, s->end);
	vmas_insert(m, s->to, s->to + len, prot);
	/* the regions may overlap (a move by less than its length) */
	memmove(pte_of(m, s->to), pte_of(m, s->start),
		(len >> PG_SHIFT) * sizeof(struct mpte));
	for (uint64_t a = s->start; a < s->end; a += PG)
		if (a < s->to || a >= s->to + len)
			*pte_of(m, a) = (struct mpte){ 0 };
	gvm__mutex_unlock(&m->phys->lock);
	gvm__mm_devmem_remap(&m->base, s->start, s->to, len);
	changing(m, -1);
	return 0;
}

static int reclaim_change(void *arg)
{
	struct span *s = arg;
	struct model_phys *p = s->m->phys;

	gvm__mutex_lock(&p->lock);
	for (uint64_t a = s->start; a < s->end; a += PG) {
		struct mpte *e = pte_of(s->m, a);
		uint32_t f;

		if (!e->frame || p->fref[e->frame - 1] > 1)
			continue;
		f = frame_alloc(p);
		if (!f)
			break;
		memcpy(frame_mem(p, f), frame_mem(p, e->frame), PG);
		frame_put(p, e->frame);
		e->frame = f;
		s->count++;
	}
	s->m->st.reclaimed += (uint64_t)s->count;
	gvm__mutex_unlock(&p->lock);
	return 0;
}

/* The copy-on-write break of the page at @addr (for writing). */
static int cow_change(void *arg)
{
	struct span *s = arg;
	struct model_phys *p = s->m->phys;
	struct mpte *e;
	int err = 0;

	gvm__mutex_lock(&p->lock);
	e = pte_of(s->m, s->start);
	if (e->frame && p->fref[e->frame - 1] > 1) {
		uint32_t f = frame_alloc(p);

		if (f) {
			memcpy(frame_mem(p, f), frame_mem(p, e->frame), PG);
			frame_put(p, e->frame);
			e->frame = f;
			s->m->st.cow_copies++;
		} else {
			err = -ENOMEM;
		}
	}
	gvm__mutex_unlock(&p->lock);
	return err;
}

/*
 * Makes the page at @addr usable by an access (@write) whose mapping
 * allows it: phys->lock held on entry and on return, dropped meanwhile
 * if the page must come back from device memory or be copied (then
 * -EAGAIN: look again).  0: e->frame is the page.
 */
static int page_fault_locked(struct gvm_mm_model *m, uint64_t addr, bool write)
{
	struct model_phys *p = m->phys;
	struct mpte *e = pte_of(m, addr);
	int err;

	if (e->poisoned)
		return -EHWPOISON;
	if (e->dev) {
		bool busy = m->changing;

		gvm__mutex_unlock(&p->lock);
		err = gvm__mm_devmem_fault(&m->base, addr, NULL);
		if (err == -ENOENT && busy)
			sched_yield();	/* a change moves it: wait for it */
		gvm__mutex_lock(&p->lock);
		if (!err || (err == -ENOENT && busy)) {
			m->st.devmem_faults += !err;
			return -EAGAIN;
		}
		if (err != -ENOENT)
			return err;
		/* dev with no extent cannot happen outside a change */
		e = pte_of(m, addr);
		if (e->dev) {
			GVM_WARN_ON(1);
			e->dev = 0;
			e->poisoned = 1;
			return -EHWPOISON;
		}
		return -EAGAIN;
	}
	if (!e->frame) {
		e->frame = frame_alloc(p);
		if (!e->frame)
			return -ENOMEM;
	}
	if (write && p->fref[e->frame - 1] > 1) {
		struct span s = { .m = m, .start = addr, .end = addr + PG };

		gvm__mutex_unlock(&p->lock);
		err = change(m, addr, PG, GVM_MM_EVENT_FORK, cow_change, &s);
		gvm__mutex_lock(&p->lock);
		return err ? err : -EAGAIN;
	}
	return 0;
}

/*
 * One page's part of a CPU access: [addr, addr + n) of the page at @pa
 * to or from @page.  phys->lock held (dropped and taken again inside if
 * the page must come back or be copied).
 */
static int page_access_locked(struct gvm_mm_model *m, uint64_t pa,
			      uint64_t off, uint8_t *page, uint64_t n,
			      bool write)
{
	struct model_phys *p = m->phys;
	int err;

	do {
		const struct mvma *v = vma_at(m, pa);

		if (!v || !(v->prot & (PROT_READ | PROT_WRITE)))
			return -EFAULT;
		if (write && !(v->prot & PROT_WRITE))
			return -EPERM;
		err = page_fault_locked(m, pa, write);
	} while (err == -EAGAIN);
	if (err)
		return err;
	if (write)
		memcpy(frame_mem(p, pte_of(m, pa)->frame) + off, page, n);
	else
		memcpy(page, frame_mem(p, pte_of(m, pa)->frame) + off, n);
	return 0;
}

/*
 * The CPU's read or write of [addr, addr + len) (map_lock held), page by
 * page.  @buf is the caller's memory, which SVM of the process may have
 * moved to device memory: it is touched only without phys->lock (a leaf
 * nothing may block under, and of a rank the CPU fault-back's rule
 * forbids, docs/locking.md), through a one-page bounce on the stack.
 */
static int cpu_access(struct gvm_mm_model *m, uint64_t addr, uint8_t *buf,
		      uint64_t len, bool write)
{
	struct model_phys *p = m->phys;
	uint8_t page[PG];
	int err = 0;

	while (len) {
		uint64_t pa = addr & ~(PG - 1), off = addr - pa;
		uint64_t n = PG - off < len ? PG - off : len;

		if (write) {
			gvm__might_fault();
			memcpy(page, buf, n);
		}
		gvm__mutex_lock(&p->lock);
		err = page_access_locked(m, pa, off, page, n, write);
		gvm__mutex_unlock(&p->lock);
		if (err)
			break;
		if (!write) {
			gvm__might_fault();
			memcpy(buf, page, n);
		}
		addr += n;
		buf += n;
		len -= n;
	}
	return err;
}

/* ---- the mm contract ---------------------------------------------------- */

static int model_register(struct gvm_mm *mm, uint64_t start, uint64_t len,
			  bool missing)
{
	(void)mm;
	(void)missing;	/* a dev page always faults to devmem.c here */
	return gvm__mm_range_ok(start, len) ? 0 : -EINVAL;
}

static int model_lookup(struct gvm_mm *mm, uint64_t addr, unsigned int flags,
			struct gvm_mm_vma *out)
{
	struct gvm_mm_model *m = to_model(mm);
	size_t i;
	int err = -ENOENT;

	gvm__mutex_lock(&m->phys->lock);
	i = vma_after(m, addr);
	if (i < m->nr_vma &&
	    (m->vma[i].start <= addr || (flags & GVM_MM_LOOKUP_NEXT))) {
		*out = (struct gvm_mm_vma){ .start = m->vma[i].start,
					    .end = m->vma[i].end,
					    .prot = m->vma[i].prot };
		err = 0;
	}
	gvm__mutex_unlock(&m->phys->lock);
	return err;
}

static int model_fetch(struct gvm_mm *mm, uint64_t start, uint64_t len,
		       bool write, struct gvm_mm_extent **ext, size_t *nr)
{
	struct gvm_mm_model *m = to_model(mm);
	struct model_phys *p = m->phys;
	struct gvm_mm_extent *x;
	uint64_t a, end = start + len;
	size_t n = 0;
	int err = 0;

	if (!gvm__mm_range_ok(start, len))
		return -EINVAL;
	if (start < m->lo || end > m->hi)
		return -EFAULT;
	x = gvm__malloc((len >> PG_SHIFT) * sizeof(*x));
	if (!x)
		return -ENOMEM;
	gvm__mutex_lock(&p->lock);
again:
	if (!covered(m, start, end, PROT_READ | PROT_WRITE, true))
		err = -EFAULT;
	else if (write && !covered(m, start, end, PROT_WRITE, false))
		err = -EPERM;
	for (a = start; !err && a < end; a += PG) {
		err = page_fault_locked(m, a, write);
		if (err == -EAGAIN) {
			err = 0;
			goto again;
		}
	}
	for (a = start; !err && a < end; a += PG) {
		uint64_t d = (uint64_t)(uintptr_t)frame_mem(p,
							    pte_of(m, a)->frame);

		if (n && x[n - 1].addr + x[n - 1].len == d)
			x[n - 1].len += PG;
		else
			x[n++] = (struct gvm_mm_extent){ d, PG };
	}
	gvm__mutex_unlock(&p->lock);
	if (err) {
		gvm__free(x);
		return err;
	}
	*ext = x;
	*nr = n;
	return 0;
}

static int model_sync(struct gvm_mm *mm)
{
	(void)mm;	/* every change is applied before its call returns */
	return 0;
}

static int model_stage_get(struct gvm_mm *mm, enum gvm_mm_stage_kind kind,
			   uint64_t *stage)
{
	struct gvm_mm_model *m = to_model(mm);
	bool got = false;
	void *s;
	int err = 0;

	(void)kind;	/* take overwrites every byte of what it uses */
	gvm__mutex_lock(&m->phys->lock);
	if (m->nr_stages) {
		*stage = m->stages[--m->nr_stages];
		got = true;
	} else {
		/* room to keep it, so that stage_put cannot fail */
		err = GVM_GROW(m->stages, m->cap_stages, STAGE_POOL);
	}
	gvm__mutex_unlock(&m->phys->lock);
	if (err || got)
		return err;
	s = mmap(NULL, GVM_MM_STAGE_MAX, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return -ENOMEM;
	*stage = (uint64_t)(uintptr_t)s;
	return 0;
}

static void model_stage_put(struct gvm_mm *mm, uint64_t stage, bool empty)
{
	struct gvm_mm_model *m = to_model(mm);

	(void)empty;
	gvm__mutex_lock(&m->phys->lock);
	if (m->nr_stages < m->cap_stages) {
		m->stages[m->nr_stages++] = stage;
		stage = 0;
	}
	gvm__mutex_unlock(&m->phys->lock);
	if (stage)
		munmap((void *)(uintptr_t)stage, GVM_MM_STAGE_MAX);
}

static int model_take(struct gvm_mm *mm, uint64_t start, uint64_t len,
		      uint64_t stage, bool *huge)
{
	struct gvm_mm_model *m = to_model(mm);
	struct model_phys *p = m->phys;
	uint8_t *st = (uint8_t *)(uintptr_t)stage;
	uint64_t a, end = start + len;
	int err = 0;

	*huge = false;		/* the model has small pages only */
	if (start < m->lo || end > m->hi)
		return -EFAULT;
	gvm__mutex_lock(&p->lock);
	if (!covered(m, start, end, PROT_READ | PROT_WRITE, true))
		err = -EFAULT;
	for (a = start; !err && a < end; a += PG) {
		const struct mpte *e = pte_of(m, a);

		if (e->dev || e->poisoned)
			err = -EINVAL;
		else if (e->frame && p->fref[e->frame - 1] > 1)
			err = -EBUSY;	/* shared with a fork relative */
	}
	for (a = start; !err && a < end; a += PG, st += PG) {
		struct mpte *e = pte_of(m, a);

		if (e->frame) {
			memcpy(st, frame_mem(p, e->frame), PG);
			frame_put(p, e->frame);
		} else {
			memset(st, 0, PG);
		}
		*e = (struct mpte){ .dev = 1 };
	}
	gvm__mutex_unlock(&p->lock);
	return err;
}

/*
 * Fills the dev pages of [start, start + len) still mapped from @src.  Out
 * of frames: the page is poisoned (@poison_on_fail), or the fill stops
 * there with -ENOMEM.  *@done: how far it got.
 */
static int fill(struct gvm_mm_model *m, uint64_t start, uint64_t len,
		const uint8_t *src, bool poison_on_fail, uint64_t *done)
{
	struct model_phys *p = m->phys;
	int err = 0;
	uint64_t a;

	gvm__mutex_lock(&p->lock);
	for (a = start; a < start + len; a += PG, src += PG) {
		struct mpte *e;

		if (a < m->lo || a >= m->hi || !vma_at(m, a))
			continue;
		e = pte_of(m, a);
		if (!e->dev)
			continue;
		e->frame = frame_alloc(p);
		if (e->frame) {
			memcpy(frame_mem(p, e->frame), src, PG);
			e->dev = 0;
		} else if (poison_on_fail) {
			e->dev = 0;
			e->poisoned = 1;
		} else {
			err = -ENOMEM;
			break;
		}
	}
	gvm__mutex_unlock(&p->lock);
	*done = a - start;
	return err;
}

static int model_give(struct gvm_mm *mm, uint64_t start, uint64_t len,
		      uint64_t stage, uint64_t *done)
{
	/* No pending event can refuse it; out of frames, never stale data */
	return fill(to_model(mm), start, len,
		    (const uint8_t *)(uintptr_t)stage, true, done);
}

static int model_give_copy(struct gvm_mm *mm, uint64_t start, uint64_t len,
			   uint64_t src, uint64_t *done)
{
	return fill(to_model(mm), start, len, (const uint8_t *)(uintptr_t)src,
		    false, done);
}

static int model_poison(struct gvm_mm *mm, uint64_t start, uint64_t len)
{
	struct gvm_mm_model *m = to_model(mm);

	gvm__mutex_lock(&m->phys->lock);
	for (uint64_t a = start; a < start + len; a += PG) {
		struct mpte *e;

		if (a < m->lo || a >= m->hi || !vma_at(m, a))
			continue;
		e = pte_of(m, a);
		if (!e->frame) {
			e->dev = 0;
			e->poisoned = 1;
		}
	}
	gvm__mutex_unlock(&m->phys->lock);
	return 0;
}

static void model_destroy(struct gvm_mm *mm)
{
	struct gvm_mm_model *m = to_model(mm);

	GVM_WARN_ON(gvm__notifier_count(mm) != 0);
	/* as self does: device memory's last users let go of it here */
	gvm__mm_migrate_to_ram(mm, m->lo, m->hi - m->lo);
	gvm__mm_fini(mm);
	gvm__mutex_lock(&m->phys->lock);
	pages_drop(m, m->lo, m->hi);
	gvm__mutex_unlock(&m->phys->lock);
	for (size_t i = 0; i < m->nr_stages; i++)
		munmap((void *)(uintptr_t)m->stages[i], GVM_MM_STAGE_MAX);
	gvm__free(m->stages);
	gvm__free(m->vma);
	gvm__free(m->pte);
	gvm__mutex_fini(&m->map_lock);
	phys_put(m->phys);
	gvm__free(m);
}

/* gvm_mm_model_read/_write: the arguments checked, then the access. */
static int checked_access(struct gvm_mm *mm, uint64_t addr, void *buf,
			  uint64_t len, bool write)
{
	struct gvm_mm_model *m = model_of(mm);
	int err;

	if (!m || (!buf && len) || addr < m->lo || addr + len > m->hi ||
	    addr + len < addr)
		return -EINVAL;
	gvm__mutex_lock(&m->map_lock);
	err = cpu_access(m, addr, buf, len, write);
	gvm__mutex_unlock(&m->map_lock);
	return err;
}

/*
 * The library's CPU access (gvm__mm_access): the model's read or write;
 * with @len 0, whether @addr is in the model's range (gvm__mm_owns).
 */
static int model_access(struct gvm_mm *mm, uint64_t addr, void *buf,
			uint64_t len, bool write)
{
	struct gvm_mm_model *m = to_model(mm);
	int err;

	if (!len)
		return addr >= m->lo && addr < m->hi ? 0 : -ERANGE;
	err = checked_access(mm, addr, buf, len, write);
	return err == -ENOMEM ? err : err ? -EFAULT : 0;
}

/*
 * Injection site INVAL (mm.h, inject_inval): a reclaim of the range's
 * present pages, without map_lock (the caller may hold it: a CPU access
 * bringing pages back from device memory; or locks below it, vm->lock or
 * devmem_lock).  reclaim_change does all its work under phys->lock, so
 * it needs no serialisation against a change beside it.
 */
static void model_inject_inval(struct gvm_mm *mm, uint64_t start,
			       uint64_t len)
{
	struct gvm_mm_model *m = to_model(mm);
	struct span s = { .m = m, .start = start, .end = start + len };

	if (in_range(m, start, len))
		change(m, start, len, GVM_MM_EVENT_MIGRATE, reclaim_change,
		       &s);
}

static const struct gvm_mm_ops model_ops = {
	.name = "model",
	.register_range = model_register,
	.lookup = model_lookup,
	.fetch = model_fetch,
	.sync = model_sync,
	.destroy = model_destroy,
	.stage_get = model_stage_get,
	.stage_put = model_stage_put,
	.take = model_take,
	.give = model_give,
	.give_copy = model_give_copy,
	.poison = model_poison,
	.access = model_access,
	.inject_inval = model_inject_inval,
};

/* ---- the API ------------------------------------------------------------ */

static struct gvm_mm_model *model_new(struct model_phys *p, uint64_t lo,
				      uint64_t hi)
{
	struct gvm_mm_model *m = gvm__calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->pte = gvm__calloc((hi - lo) >> PG_SHIFT, sizeof(*m->pte));
	if (!m->pte) {
		gvm__free(m);
		return NULL;
	}
	m->phys = p;
	m->lo = lo;
	m->hi = hi;
	gvm__mutex_init(&m->map_lock, "mm_model.map_lock", GVM_RANK_MM_MAP);
	gvm__mm_init(&m->base, &model_ops);
	m->base.devmem_ok = true;
	return m;
}

GVM_API int gvm_mm_model_create(const struct gvm_mm_model_config *cfg,
				struct gvm_mm **out)
{
	struct gvm_mm_model_config c = { 0 };
	struct gvm_mm_model *m;
	struct model_phys *p;

	if (!out)
		return -EINVAL;
	if (cfg)
		c = *cfg;
	if (!c.base)
		c.base = GVM_MM_MODEL_BASE;
	if (!c.size)
		c.size = 256ull << 20;
	if (!c.frames)
		c.frames = 2 * (c.size >> PG_SHIFT);
	if (!c.poison)
		c.poison = 0xa5;
	if ((c.base | c.size) & (M2 - 1) || c.base + c.size < c.base ||
	    c.frames > UINT32_MAX - 1 || (c.size >> PG_SHIFT) > UINT32_MAX)
		return -EINVAL;
	p = phys_new(c.frames, c.poison);
	if (!p)
		return -ENOMEM;
	m = model_new(p, c.base, c.base + c.size);
	if (!m) {
		phys_put(p);
		return -ENOMEM;
	}
	*out = &m->base;
	return 0;
}

GVM_API int gvm_mm_model_mmap(struct gvm_mm *mm, uint64_t addr, uint64_t len,
			      unsigned int prot, unsigned int flags,
			      uint64_t *out)
{
	struct gvm_mm_model *m = model_of(mm);
	int err;

	if (!m || !out || (flags & ~GVM_MM_MODEL_FIXED) ||
	    (prot & ~(unsigned int)(PROT_READ | PROT_WRITE | PROT_EXEC)) ||
	    !gvm__mm_range_ok(PG, len) ||
	    ((flags & GVM_MM_MODEL_FIXED) && !in_range(m, addr, len)))
		return -EINVAL;
	gvm__mutex_lock(&m->map_lock);
	err = vma_reserve(m, 2);
	if (!err && (flags & GVM_MM_MODEL_FIXED))
		do_unmap(m, addr, addr + len);
	else if (!err) {
		gvm__mutex_lock(&m->phys->lock);
		err = find_free(m, len, &addr);
		gvm__mutex_unlock(&m->phys->lock);
	}
	if (!err) {
		gvm__mutex_lock(&m->phys->lock);
		vmas_insert(m, addr, addr + len, prot);
		gvm__mutex_unlock(&m->phys->lock);
		gvm__put_out(out, addr);
	}
	gvm__mutex_unlock(&m->map_lock);
	return err;
}

GVM_API int gvm_mm_model_munmap(struct gvm_mm *mm, uint64_t addr,
				uint64_t len)
{
	struct gvm_mm_model *m = model_of(mm);
	int err;

	if (!m || !in_range(m, addr, len))
		return -EINVAL;
	gvm__mutex_lock(&m->map_lock);
	err = vma_reserve(m, 1);
	if (!err)
		do_unmap(m, addr, addr + len);
	gvm__mutex_unlock(&m->map_lock);
	return err;
}

GVM_API int gvm_mm_model_mremap(struct gvm_mm *mm, uint64_t old,
				uint64_t old_len, uint64_t new_len,
				unsigned int flags, uint64_t new_addr,
				uint64_t *out)
{
	struct gvm_mm_model *m = model_of(mm);
	const struct mvma *v;
	struct span s = { .m = m };
	uint64_t to = 0, keep;
	bool fixed = flags & GVM_MM_MODEL_FIXED, grow_in_place = false;
	int err = 0;

	if (!m || !out || !in_range(m, old, old_len) ||
	    !gvm__mm_range_ok(old, new_len) ||
	    (flags & ~(GVM_MM_MODEL_FIXED | GVM_MM_MODEL_MAYMOVE)) ||
	    (fixed && !(flags & GVM_MM_MODEL_MAYMOVE)) ||
	    (fixed && (!in_range(m, new_addr, new_len) ||
		       (new_addr < old + old_len &&
			old < new_addr + new_len))))
		return -EINVAL;
	gvm__mutex_lock(&m->map_lock);
	err = vma_reserve(m, 3);
	if (err)
		goto out;
	gvm__mutex_lock(&m->phys->lock);
	v = vma_at(m, old);
	if (!v || v->end < old + old_len) {
		err = -EFAULT;
	} else if (!fixed && new_len > old_len) {
		grow_in_place = old + new_len <= m->hi &&
				old + new_len > old &&
				!any_mapped(m, old + old_len, old + new_len);
		if (grow_in_place)
			vmas_insert(m, old + old_len, old + new_len, v->prot);
		else if (!(flags & GVM_MM_MODEL_MAYMOVE))
			err = -ENOMEM;
		else
			err = find_free(m, new_len, &to);
	}
	gvm__mutex_unlock(&m->phys->lock);
	if (err)
		goto out;
	keep = new_len < old_len ? new_len : old_len;
	if (!fixed && (new_len <= old_len || grow_in_place)) {
		if (new_len < old_len)
			do_unmap(m, old + new_len, old + old_len);
		gvm__put_out(out, old);
		goto out;
	}
	if (fixed) {
		to = new_addr;
		do_unmap(m, to, to + new_len);
	}
	/* the tail first (a shrinking move), then the move */
	if (new_len < old_len)
		do_unmap(m, old + new_len, old + old_len);
	s.start = old;
	s.end = old + keep;
	s.to = to;
	change(m, old, keep, GVM_MM_EVENT_REMAP, move_change, &s);
	if (new_len > old_len) {
		gvm__mutex_lock(&m->phys->lock);
		vmas_insert(m, to + old_len, to + new_len,
			    vma_at(m, to)->prot);
		gvm__mutex_unlock(&m->phys->lock);
	}
	gvm__put_out(out, to);
out:
	gvm__mutex_unlock(&m->map_lock);
	return err;
}

GVM_API int gvm_mm_model_mprotect(struct gvm_mm *mm, uint64_t addr,
				  uint64_t len, unsigned int prot)
{
	struct gvm_mm_model *m = model_of(mm);
	struct span s = { .m = m, .start = addr, .end = addr + len,
			  .prot = prot };
	bool ok;
	int err;

	if (!m || !in_range(m, addr, len) ||
	    (prot & ~(unsigned int)(PROT_READ | PROT_WRITE | PROT_EXEC)))
		return -EINVAL;
	gvm__mutex_lock(&m->map_lock);
	err = vma_reserve(m, 2);
	if (!err) {
		gvm__mutex_lock(&m->phys->lock);
		ok = covered(m, s.start, s.end, 0, false);
		gvm__mutex_unlock(&m->phys->lock);
		if (!ok)
			err = -ENOMEM;
		else
			change(m, addr, len, GVM_MM_EVENT_MIGRATE,
			       protect_change, &s);
	}
	gvm__mutex_unlock(&m->map_lock);
	return err;
}

GVM_API int gvm_mm_model_madvise(struct gvm_mm *mm, uint64_t addr,
				 uint64_t len, int advice)
{
	struct gvm_mm_model *m = model_of(mm);
	struct span s = { .m = m, .start = addr, .end = addr + len };
	bool ok;
	int err = 0;

	if (!m || !in_range(m, addr, len) || advice != GVM_MM_MODEL_DONTNEED)
		return -EINVAL;
	gvm__mutex_lock(&m->map_lock);
	gvm__mutex_lock(&m->phys->lock);
	ok = covered(m, s.start, s.end, 0, false);
	gvm__mutex_unlock(&m->phys->lock);
	if (!ok)
		err = -ENOMEM;
	else
		change(m, addr, len, GVM_MM_EVENT_REMOVE, dontneed_change, &s);
	gvm__mutex_unlock(&m->map_lock);
	return err;
}

struct fork_arg {
	struct gvm_mm_model *parent, *child;
	size_t i;			/* the mapping to copy */
};

/* Copies mapping @i and its pages into the child, sharing the frames. */
static int fork_change(void *arg)
{
	struct fork_arg *f = arg;
	struct gvm_mm_model *m = f->parent, *c = f->child;
	const struct mvma *v;

	gvm__mutex_lock(&m->phys->lock);
	v = &m->vma[f->i];
	c->vma[c->nr_vma++] = *v;
	for (uint64_t a = v->start; a < v->end; a += PG) {
		const struct mpte *e = pte_of(m, a);

		*pte_of(c, a) = *e;
		if (e->frame)
			m->phys->fref[e->frame - 1]++;
	}
	gvm__mutex_unlock(&m->phys->lock);
	return 0;
}

GVM_API int gvm_mm_model_fork(struct gvm_mm *mm, struct gvm_mm **child)
{
	struct gvm_mm_model *m = model_of(mm), *c;
	struct fork_arg f;
	size_t nr;
	int err = 0;

	if (!m || !child)
		return -EINVAL;
	c = model_new(m->phys, m->lo, m->hi);
	if (!c)
		return -ENOMEM;
	gvm__ref_get(&m->phys->ref);
	gvm__mutex_lock(&m->map_lock);
	nr = m->nr_vma;
	if (GVM_GROW(c->vma, c->cap_vma, nr + 2)) {
		gvm__mutex_unlock(&m->map_lock);
		gvm_mm_put(&c->base);
		return -ENOMEM;
	}
	/* device-resident data back, no migration until done (devmem.c) */
	gvm__mm_devmem_fork_prepare(mm);
	f.parent = m;
	f.child = c;
	for (f.i = 0; f.i < nr; f.i++) {
		const struct mvma *v = &m->vma[f.i];

		/* only writable pages become copy-on-write */
		if (v->prot & PROT_WRITE)
			change(m, v->start, v->end - v->start,
			       GVM_MM_EVENT_FORK, fork_change, &f);
		else
			fork_change(&f);
	}
	gvm__mm_devmem_fork_done(mm);
	gvm__mutex_unlock(&m->map_lock);
	gvm__put_out(child, &c->base);
	return err;
}

GVM_API int gvm_mm_model_read(struct gvm_mm *mm, uint64_t addr, void *buf,
			      uint64_t len)
{
	return checked_access(mm, addr, buf, len, false);
}

GVM_API int gvm_mm_model_write(struct gvm_mm *mm, uint64_t addr,
			       const void *buf, uint64_t len)
{
	return checked_access(mm, addr, (void *)(uintptr_t)buf, len, true);
}

GVM_API int gvm_mm_model_reclaim(struct gvm_mm *mm, uint64_t addr,
				 uint64_t len)
{
	struct gvm_mm_model *m = model_of(mm);
	struct span s = { .m = m, .start = addr, .end = addr + len };
	bool any;

	if (!m || !in_range(m, addr, len))
		return -EINVAL;
	gvm__mutex_lock(&m->map_lock);
	gvm__mutex_lock(&m->phys->lock);
	any = any_mapped(m, s.start, s.end);
	gvm__mutex_unlock(&m->phys->lock);
	if (any)
		change(m, addr, len, GVM_MM_EVENT_MIGRATE, reclaim_change, &s);
	gvm__mutex_unlock(&m->map_lock);
	return s.count;
}

GVM_API int gvm_mm_model_stats(struct gvm_mm *mm,
			       struct gvm_mm_model_stats *out)
{
	struct gvm_mm_model *m = model_of(mm);
	struct gvm_mm_model_stats st;
	struct model_phys *p;
	uint64_t dirty = 0, i;

	if (!m || !out)
		return -EINVAL;
	p = m->phys;
	gvm__mutex_lock(&p->lock);
	st = m->st;
	st.frames = p->nr;
	st.frames_used = p->used;
	/* the free frames now, as well as those checked at reuse */
	for (i = 0; i < p->nfree; i++)
		if (!poison_intact(p, p->mem +
				      (uint64_t)p->fifo[(p->head + i) % p->nr] *
					      PG))
			dirty++;
	st.poison_violations = p->violations + dirty;
	gvm__mutex_unlock(&p->lock);
	/* after phys->lock: @out is the caller's memory (cpu_access) */
	gvm__put_out(out, st);
	return 0;
}
