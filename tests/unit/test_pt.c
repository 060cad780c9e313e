// SPDX-License-Identifier: MIT
/*
 * Page-table engine tests: format round trips, minimal-cover page-size
 * choice, a reference model (segments of pages with their expected
 * backing, attributes and leaf level) checked after every random
 * bind/unbind/zap/abort/injected failure, staging views, and the seed-000
 * interleaving (zap between prepare and commit).
 */
#include "pt/pt.h"

#include <sys/mman.h>

#include "core/alloc.h"
#include "core/debug.h"
#include "harness.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M2 (2ull << 20)
#define G1 (1ull << 30)

struct env {
	struct gvm_buddy buddy;
	uint8_t *arena;
	uint64_t arena_size;
	struct gvm_pt_vm vm;
};

static void env_init(struct env *v, uint64_t arena_size, unsigned int va_bits)
{
	struct gvm_pt_mem mem;

	v->arena_size = arena_size;
	v->arena = mmap(NULL, arena_size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(v->arena != MAP_FAILED);
	ASSERT_OK(gvm__buddy_init(&v->buddy, arena_size, 0));
	mem.buddy = &v->buddy;
	mem.cpu_base = v->arena;
	mem.dev_base = 1ull << 40;
	ASSERT_OK(gvm__pt_vm_init(&v->vm, &mem, va_bits));
}

static void env_fini(struct env *v)
{
	gvm__pt_vm_fini(&v->vm);
	ASSERT_EQ(v->buddy.nr_allocated, 0);
	gvm__buddy_fini(&v->buddy);
	munmap(v->arena, v->arena_size);
}

static uint64_t writes(const struct gvm_pt_vm *vm, unsigned int level)
{
	return vm->pte_writes[level];
}

static void clear_writes(struct gvm_pt_vm *vm)
{
	memset(vm->pte_writes, 0, sizeof(vm->pte_writes));
}

TEST(format_round_trip)
{
	uint64_t a = gvm__ptf_attrs(true, true, false, false, 5);
	uint64_t e = gvm__ptf_mk_leaf(a, 0x123456789000ull, 0);
	uint64_t h = gvm__ptf_mk_leaf(a, 0x40000000ull, 2);
	uint64_t d = gvm__ptf_mk_dir(0xabc000ull);
	uint64_t z = gvm__ptf_zap(gvm__ptf_set_cont(e));
	uint64_t n = gvm__ptf_mk_leaf(gvm__ptf_attrs(false, false, false,
						      true, 0), 0x5000, 1);

	ASSERT_EQ(gvm__ptf_addr(e), 0x123456789000ull);
	ASSERT_EQ(gvm__ptf_attrs_of(e), a);
	ASSERT_TRUE(gvm__ptf_is_leaf(e, 0) && !gvm__ptf_is_dir(e, 0));
	ASSERT_TRUE(gvm__ptf_is_leaf(h, 2) && !gvm__ptf_is_dir(h, 2));
	ASSERT_TRUE(gvm__ptf_is_dir(d, 3) && gvm__ptf_addr(d) == 0xabc000ull);
	ASSERT_TRUE(!gvm__ptf_is_valid(z) && gvm__ptf_is_zapped(z) &&
		    gvm__ptf_in_use(z) && !gvm__ptf_has_cont(z));
	ASSERT_EQ(gvm__ptf_addr(z), 0x123456789000ull);
	ASSERT_TRUE(gvm__ptf_is_null(n) && gvm__ptf_addr(n) == 0);
	ASSERT_EQ((e >> GVM_PTF_PAT_SHIFT) & 7, 5);
	ASSERT_EQ(gvm__ptf_addr(gvm__ptf_split_leaf(h, 2, 3)),
		  0x40000000ull + 3 * M2);
	ASSERT_TRUE(gvm__ptf_is_leaf(gvm__ptf_split_leaf(h, 2, 3), 1));
	ASSERT_FALSE(gvm__ptf_is_leaf(gvm__ptf_split_leaf(h, 2, 3), 2) &&
		     false);
	ASSERT_EQ(gvm__ptf_levels(48), 4);
	ASSERT_EQ(gvm__ptf_levels(57), 5);
	ASSERT_EQ(gvm__ptf_shift(2), 30);
	ASSERT_EQ(gvm__ptf_index(0x40201000ull, 0), 1);
	ASSERT_EQ(gvm__ptf_index(0x40201000ull, 1), 1);
	ASSERT_EQ(gvm__ptf_index(0x40201000ull, 2), 1);
}

static void expect_xlate(struct gvm_pt_vm *vm, uint64_t va,
			 enum gvm_pt_view view, uint64_t addr, uint64_t psize)
{
	struct gvm_pt_xlate x;

	ASSERT_OK(gvm__pt_translate(vm, va, view, &x));
	ASSERT_EQ(x.addr, addr);
	ASSERT_EQ(x.page_size, psize);
}

TEST(page_size_choice)
{
	struct env v;
	struct gvm_pt_extent x;
	struct gvm_pt_tlb tlb;

	env_init(&v, 64ull << 20, 48);
	/* 1 GiB + 4 KiB at a 1 GiB-aligned VA, contiguous aligned backing. */
	x = (struct gvm_pt_extent){ 4 * G1, G1 + K4 };
	clear_writes(&v.vm);
	ASSERT_OK(gvm__pt_bind(&v.vm, G1, G1 + K4, &x, 1, GVM_PT_WRITE, &tlb));
	ASSERT_EQ(writes(&v.vm, 2), 1);
	ASSERT_EQ(writes(&v.vm, 1), 0);
	ASSERT_EQ(writes(&v.vm, 0), 1);
	ASSERT_EQ(tlb.size, 0);		/* nothing was mapped before */
	expect_xlate(&v.vm, G1 + 12345 * K4, GVM_PT_VIEW_COMMITTED,
		     4 * G1 + 12345 * K4, G1);
	expect_xlate(&v.vm, 2 * G1, GVM_PT_VIEW_COMMITTED, 5 * G1, K4);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	/* root + L2 + L1 + L0 */
	ASSERT_EQ(v.vm.nr_tables, 4);
	ASSERT_OK(gvm__pt_unbind(&v.vm, G1, G1 + K4, &tlb));
	ASSERT_EQ(v.vm.nr_tables, 1);
	ASSERT_TRUE(tlb.full || (tlb.start <= G1 && tlb.start + tlb.size >=
						     2 * G1 + K4));

	/* Misaligned 4 MiB + 8 KiB starting 4 KiB before a 2 MiB boundary:
	 * 1 x 4K, 2 x 2M, 1 x 4K ... with 2M-aligned backing at VA offset. */
	x = (struct gvm_pt_extent){ 8 * G1 - K4, 2 * M2 + 2 * K4 };
	clear_writes(&v.vm);
	ASSERT_OK(gvm__pt_bind(&v.vm, M2 - K4, 2 * M2 + 2 * K4, &x, 1, 0,
			       NULL));
	ASSERT_EQ(writes(&v.vm, 2), 0);
	ASSERT_EQ(writes(&v.vm, 1), 2);
	ASSERT_EQ(writes(&v.vm, 0), 2);
	ASSERT_OK(gvm__pt_validate(&v.vm));

	/* Backing not 2M aligned: 64 KiB hints instead of 2M leaves. */
	x = (struct gvm_pt_extent){ 3 * G1 + K64, M2 };
	clear_writes(&v.vm);
	ASSERT_OK(gvm__pt_bind(&v.vm, 16 * M2, M2, &x, 1, GVM_PT_DEVMEM,
			       NULL));
	ASSERT_EQ(writes(&v.vm, 1), 0);
	ASSERT_EQ(writes(&v.vm, 0), 512);
	expect_xlate(&v.vm, 16 * M2 + 5 * K4, GVM_PT_VIEW_COMMITTED,
		     3 * G1 + K64 + 5 * K4, K64);
	ASSERT_OK(gvm__pt_validate(&v.vm));

	/* NULL binding: no backing, largest pages. */
	clear_writes(&v.vm);
	ASSERT_OK(gvm__pt_bind(&v.vm, 8 * G1, G1 + M2, NULL, 0, GVM_PT_NULL,
			       NULL));
	ASSERT_EQ(writes(&v.vm, 2), 1);
	ASSERT_EQ(writes(&v.vm, 1), 1);
	expect_xlate(&v.vm, 9 * G1 + 7, GVM_PT_VIEW_COMMITTED, 0, M2);

	/* Rebinding over a 2M leaf with 4K pages splits it. */
	x = (struct gvm_pt_extent){ 7 * G1, K4 };
	ASSERT_OK(gvm__pt_bind(&v.vm, M2 + 3 * K4, K4, &x, 1, 0, &tlb));
	ASSERT_TRUE(tlb.size >= K4 && tlb.start <= M2 + 3 * K4);
	expect_xlate(&v.vm, M2 + 3 * K4, GVM_PT_VIEW_COMMITTED, 7 * G1, K4);
	expect_xlate(&v.vm, M2 + 4 * K4, GVM_PT_VIEW_COMMITTED,
		     8 * G1 - K4 + K4 + 4 * K4, K4);
	expect_xlate(&v.vm, M2 + 16 * K4, GVM_PT_VIEW_COMMITTED,
		     8 * G1 - K4 + K4 + 16 * K4, K64);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	env_fini(&v);
}

TEST(errors)
{
	struct env v;
	struct gvm_pt_extent x = { 0, K4 }, bad = { 100, K4 };
	struct gvm_pt_update upd;

	env_init(&v, 1ull << 20, 48);
	ASSERT_EQ(gvm__pt_bind(&v.vm, 100, K4, &x, 1, 0, NULL), -EINVAL);
	ASSERT_EQ(gvm__pt_bind(&v.vm, 0, 0, &x, 1, 0, NULL), -EINVAL);
	ASSERT_EQ(gvm__pt_bind(&v.vm, 1ull << 48, K4, &x, 1, 0, NULL),
		  -EINVAL);
	ASSERT_EQ(gvm__pt_bind(&v.vm, ~0ull & ~(K4 - 1), K4 * 2, &x, 1, 0,
			       NULL), -EINVAL);
	ASSERT_EQ(gvm__pt_bind(&v.vm, 0, K4, &x, 1, 1u << 20, NULL), -EINVAL);
	ASSERT_EQ(gvm__pt_bind(&v.vm, 0, K4, &bad, 1, 0, NULL), -EINVAL);
	ASSERT_EQ(gvm__pt_bind(&v.vm, 0, 2 * K4, &x, 1, 0, NULL), -EINVAL);
	ASSERT_EQ(gvm__pt_bind(&v.vm, 0, K4, &x, 1, GVM_PT_NULL, NULL),
		  -EINVAL);
	ASSERT_EQ(gvm__pt_unbind(&v.vm, 0, K4 + 1, NULL), -EINVAL);
	ASSERT_EQ(gvm__pt_zap(&v.vm, 1ull << 48, K4, NULL), -EINVAL);
	ASSERT_OK(gvm__pt_bind_prepare(&v.vm, 0, K4, &x, 1, 0, &upd));
	ASSERT_EQ(gvm__pt_unbind(&v.vm, 0, K4, NULL), -EBUSY);
	gvm__pt_update_abort(&upd);
	/* 1 MiB of table memory = 256 tables: a huge 4K bind runs out. */
	x.len = 8 * G1;
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, x.len, &x, 1, 0, NULL));
	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, x.len, NULL));
	x.addr = K4;
	ASSERT_EQ(gvm__pt_bind(&v.vm, 0, x.len, &x, 1, 0, NULL), -ENOSPC);
	ASSERT_EQ(v.vm.nr_tables, 1);
	ASSERT_EQ(v.buddy.nr_allocated, 1);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	env_fini(&v);

	env_init(&v, 1ull << 20, 57);
	x = (struct gvm_pt_extent){ 0, G1 };
	ASSERT_OK(gvm__pt_bind(&v.vm, 1ull << 56, G1, &x, 1, 0, NULL));
	ASSERT_EQ(v.vm.nr_tables, 3);
	expect_xlate(&v.vm, (1ull << 56) + 5, GVM_PT_VIEW_COMMITTED, 5, G1);
	ASSERT_OK(gvm__pt_unbind(&v.vm, 1ull << 56, G1, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	env_fini(&v);
}

/* ---- reference model -------------------------------------------------- */

struct seg {
	uint64_t start, end;	/* VA */
	uint64_t addr;		/* backing at start (0 for NULL) */
	uint64_t attrs;		/* format attributes */
	unsigned int level;	/* leaf level */
	bool zapped;
};

struct model {
	struct seg *s;
	size_t n, cap;
};

static void m_push(struct model *m, struct seg s)
{
	if (s.start >= s.end)
		return;
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->s = realloc(m->s, m->cap * sizeof(*m->s));
		ASSERT_TRUE(m->s);
	}
	m->s[m->n++] = s;
}

static struct seg piece(const struct seg *s, uint64_t a, uint64_t b,
			unsigned int level)
{
	struct seg p = *s;

	p.start = a;
	p.end = b;
	p.level = level;
	if (!(p.attrs & GVM_PTF_NULL))
		p.addr = s->addr + (a - s->start);
	return p;
}

static uint64_t lsz(unsigned int level)
{
	return 1ull << gvm__ptf_shift(level);
}

static uint64_t down(uint64_t x, uint64_t a) { return x & ~(a - 1); }
static uint64_t up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

/*
 * Removes [a, b) from @m (into @out, sorted); pieces of huge leaves cut by
 * a or b are re-levelled the way the engine splits them.
 */
static void m_carve(struct model *m, uint64_t a, uint64_t b,
		    struct model *out)
{
	size_t k;

	out->n = 0;
	for (k = 0; k < m->n; k++) {
		struct seg *s = &m->s[k];
		uint64_t S = lsz(s->level);
		int l;

		if (s->end <= a || s->start >= b) {
			m_push(out, *s);
			continue;
		}
		if (s->start < a) {	/* left survivor [start, a) */
			uint64_t cur = s->start;

			if (a % S) {
				m_push(out, piece(s, cur, down(a, S),
						  s->level));
				cur = down(a, S);
				for (l = (int)s->level - 1; l >= 0; l--) {
					uint64_t f = down(a, lsz((unsigned)l));

					m_push(out, piece(s, cur, f,
							  (unsigned)l));
					cur = f;
				}
			} else {
				m_push(out, piece(s, cur, a, s->level));
			}
		}
		if (s->end > b) {	/* right survivor [b, end) */
			uint64_t cur = b;

			if (b % S) {
				for (l = 0; l < (int)s->level; l++) {
					uint64_t c = up(b, lsz((unsigned)l + 1));

					m_push(out, piece(s, cur, c,
							  (unsigned)l));
					cur = c;
				}
			}
			m_push(out, piece(s, cur, s->end, s->level));
		}
	}
}

static void m_bind(struct model *m, uint64_t va, uint64_t size,
		   const struct gvm_pt_extent *x, size_t n, uint64_t attrs)
{
	struct model out = { 0 }, add = { 0 };
	uint64_t cur = va, end = va + size;
	size_t xi = 0;
	uint64_t xoff = 0;
	bool null = attrs & GVM_PTF_NULL;

	m_carve(m, va, end, &out);
	while (cur < end) {
		int l;

		for (l = GVM_PTF_MAX_LEAF_LEVEL; l >= 0; l--) {
			uint64_t S = lsz((unsigned)l);

			if (cur % S || end - cur < S)
				continue;
			if (!null && (x[xi].len - xoff < S ||
				      (x[xi].addr + xoff) % S))
				continue;
			break;
		}
		{
			uint64_t S = lsz((unsigned)l);
			struct seg s = { cur, cur + S,
					 null ? 0 : x[xi].addr + xoff, attrs,
					 (unsigned)l, false };
			struct seg *last = add.n ? &add.s[add.n - 1] : NULL;

			if (last && last->end == cur && last->level == s.level &&
			    (null || last->addr + (cur - last->start) == s.addr))
				last->end = s.end;
			else
				m_push(&add, s);
			cur += S;
			if (!null) {
				xoff += S;
				if (xoff == x[xi].len) {
					xi++;
					xoff = 0;
				}
			}
		}
	}
	{
		size_t i = 0, j = 0;

		m->n = 0;
		while (i < out.n || j < add.n) {
			if (j == add.n ||
			    (i < out.n && out.s[i].start < add.s[j].start))
				m_push(m, out.s[i++]);
			else
				m_push(m, add.s[j++]);
		}
	}
	free(out.s);
	free(add.s);
}

static void m_replace(struct model *m, struct model *from)
{
	size_t i;

	m->n = 0;
	for (i = 0; i < from->n; i++)
		m_push(m, from->s[i]);
}

static void m_unbind(struct model *m, uint64_t va, uint64_t size)
{
	struct model out = { 0 };

	m_carve(m, va, va + size, &out);
	m_replace(m, &out);
	free(out.s);
}

static void m_zap(struct model *m, uint64_t va, uint64_t size)
{
	struct model out = { 0 };
	uint64_t a = va, b = va + size;
	size_t k;

	/* A zap takes whole leaves. */
	for (k = 0; k < m->n; k++) {
		struct seg *s = &m->s[k];

		if (s->start <= a && a < s->end && s->start < b)
			a = down(a, lsz(s->level)) > s->start
			    ? down(a, lsz(s->level)) : s->start;
		if (s->start < b && b <= s->end && b > a)
			b = up(b, lsz(s->level)) < s->end
			    ? up(b, lsz(s->level)) : s->end;
	}
	for (k = 0; k < m->n; k++) {
		struct seg *s = &m->s[k];
		uint64_t lo = s->start > a ? s->start : a;
		uint64_t hi = s->end < b ? s->end : b;

		if (lo >= hi) {
			m_push(&out, *s);
			continue;
		}
		m_push(&out, piece(s, s->start, lo, s->level));
		{
			struct seg z = piece(s, lo, hi, s->level);

			z.zapped = true;
			m_push(&out, z);
		}
		m_push(&out, piece(s, hi, s->end, s->level));
	}
	m_replace(m, &out);
	free(out.s);
}

/* Tables the model needs: root + per level the blocks with small leaves. */
static uint64_t m_tables(const struct model *m, unsigned int levels)
{
	uint64_t nr = 1;
	unsigned int l;

	for (l = 0; l + 1 < levels; l++) {
		unsigned int sh = gvm__ptf_shift(l + 1);
		uint64_t last = ~0ull;
		size_t k;

		for (k = 0; k < m->n; k++) {
			const struct seg *s = &m->s[k];
			uint64_t b0, b1;

			if (s->level > l)
				continue;
			b0 = s->start >> sh;
			b1 = (s->end - 1) >> sh;
			if (b0 == last)
				b0++;
			if (b1 + 1 > b0)
				nr += b1 + 1 - b0;
			last = b1;
		}
	}
	return nr;
}

static const struct seg *m_find(const struct model *m, uint64_t va)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (m->s[mid].end <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->n && m->s[lo].start <= va ? &m->s[lo] : NULL;
}

static void check_page(struct gvm_pt_vm *vm, const struct model *m,
		       uint64_t va)
{
	const struct seg *s = m_find(m, va);
	struct gvm_pt_xlate x;
	int ret = gvm__pt_translate(vm, va, GVM_PT_VIEW_COMMITTED, &x);

	if (!s || s->zapped) {
		if (ret != -ENOENT)
			fprintf(stderr, "va %#llx: expected unmapped\n",
				(unsigned long long)va);
		ASSERT_EQ(ret, -ENOENT);
		ASSERT_EQ(!!x.pte, !!s);
		return;
	}
	if (ret)
		fprintf(stderr, "va %#llx: expected mapped in [%#llx, %#llx)\n",
			(unsigned long long)va, (unsigned long long)s->start,
			(unsigned long long)s->end);
	ASSERT_OK(ret);
	ASSERT_EQ(x.level, s->level);
	ASSERT_EQ(gvm__ptf_attrs_of(x.pte), s->attrs);
	ASSERT_EQ(x.addr, (s->attrs & GVM_PTF_NULL) ? 0
			  : s->addr + (va - s->start));
}

static void check_range_pages(struct gvm_pt_vm *vm, const struct model *m,
			      struct gvm_rng *r, uint64_t a, uint64_t b)
{
	uint64_t np = (b - a) / K4, k;

	if (np <= 1024) {
		for (k = 0; k < np; k++)
			check_page(vm, m, a + k * K4);
		return;
	}
	for (k = 0; k < 256; k++) {
		check_page(vm, m, a + k * K4);
		check_page(vm, m, b - (k + 1) * K4);
		check_page(vm, m, a + gvm_rng_below(r, np) * K4);
	}
}

static uint64_t rand_size(struct gvm_rng *r)
{
	uint64_t c = gvm_rng_below(r, 100);

	if (c < 55)
		return (1 + gvm_rng_below(r, 64)) * K4;
	if (c < 80)
		return (1 + gvm_rng_below(r, 2048)) * K4;
	if (c < 95)
		return (1 + gvm_rng_below(r, 512)) * M2 +
		       gvm_rng_below(r, 3) * gvm_rng_below(r, 512) * K4;
	return (1 + gvm_rng_below(r, 3)) * G1 + gvm_rng_below(r, 2) * M2 +
	       gvm_rng_below(r, 2) * K4;
}

static uint64_t rand_align(struct gvm_rng *r)
{
	static const uint64_t al[] = { K4, K64, M2, G1 };

	return al[gvm_rng_below(r, 4)];
}

#define WINDOW (32 * G1)

TEST(reference_model)
{
	struct gvm_rng r = { gvm_test_seed() };
	uint64_t steps = gvm_test_scale(300), step;
	struct model m = { 0 };
	struct env v;

	env_init(&v, 64ull << 20, 48);
	for (step = 0; step < steps; step++) {
		uint64_t size = rand_size(&r), align = rand_align(&r);
		uint64_t va = down(gvm_rng_below(&r, WINDOW - size), align);
		uint64_t c = gvm_rng_below(&r, 100), before = v.vm.nr_tables;
		struct gvm_pt_extent x[4];
		struct gvm_pt_update upd;
		unsigned int flags = 0;
		size_t n = 0, k;
		bool abort_it = gvm_rng_below(&r, 10) == 0;
		bool inject = gvm_rng_below(&r, 10) == 0;
		int ret;

		if (c < 55) {	/* bind */
			uint64_t left = size;

			flags = (gvm_rng_below(&r, 3) ? GVM_PT_WRITE : 0) |
				GVM_PT_PAT(gvm_rng_below(&r, 8));
			if (gvm_rng_below(&r, 10) == 0) {
				flags |= GVM_PT_NULL;
			} else {
				flags |= gvm_rng_below(&r, 2) ? GVM_PT_DEVMEM
							      : GVM_PT_ATOMIC;
				while (left) {
					uint64_t l = n == 3 ? left
						: (1 + gvm_rng_below(&r, left / K4)) * K4;
					uint64_t al = rand_align(&r);

					if (gvm_rng_below(&r, 2))
						l = left;
					x[n].addr = down(gvm_rng_below(&r, 1ull << 44), al) +
						    (gvm_rng_below(&r, 4) ? 0 : (va % al));
					x[n].addr = down(x[n].addr, K4);
					x[n++].len = l;
					left -= l;
				}
			}
		}
		if (inject) {
			if (gvm_rng_below(&r, 2))
				gvm__alloc_fail_nth = (long)(1 + gvm_rng_below(&r, 6));
			else
				gvm__buddy_fail_alloc_after = (long)gvm_rng_below(&r, 3);
		}
		if (c < 55)
			ret = gvm__pt_bind_prepare(&v.vm, va, size, x, n, flags, &upd);
		else if (c < 90)
			ret = gvm__pt_unbind_prepare(&v.vm, va, size, &upd);
		else
			ret = gvm__pt_zap(&v.vm, va, size, NULL);
		gvm__alloc_fail_nth = 0;
		gvm__buddy_fail_alloc_after = -1;
		if (ret) {
			ASSERT_TRUE(ret == -ENOMEM || ret == -ENOSPC);
			ASSERT_EQ(v.vm.nr_tables, before);
		} else if (c >= 90) {
			m_zap(&m, va, size);
		} else if (abort_it) {
			gvm__pt_update_abort(&upd);
			ASSERT_EQ(v.vm.nr_tables, before);
		} else {
			struct gvm_pt_tlb tlb;

			gvm__pt_update_commit(&upd, &tlb, NULL);
			if (c < 55) {
				uint64_t attrs = gvm__ptf_attrs(
					flags & GVM_PT_WRITE, flags & GVM_PT_DEVMEM,
					flags & GVM_PT_ATOMIC, flags & GVM_PT_NULL,
					(flags >> GVM_PT_PAT_SHIFT) & 7);

				m_bind(&m, va, size, x, n, attrs);
			} else {
				m_unbind(&m, va, size);
			}
		}
		ASSERT_OK(gvm__pt_validate(&v.vm));
		ASSERT_EQ(v.buddy.nr_allocated, v.vm.nr_tables);
		if (v.vm.nr_tables != m_tables(&m, v.vm.levels))
			fprintf(stderr, "step %llu: tables %llu model %llu\n",
				(unsigned long long)step,
				(unsigned long long)v.vm.nr_tables,
				(unsigned long long)m_tables(&m, v.vm.levels));
		ASSERT_EQ(v.vm.nr_tables, m_tables(&m, v.vm.levels));
		check_range_pages(&v.vm, &m, &r, va > M2 ? va - M2 : 0,
				  va + size + M2);
		for (k = 0; k < 64; k++)
			check_page(&v.vm, &m, down(gvm_rng_below(&r, WINDOW), K4));
		for (k = 0; k < m.n && k < 64; k++) {
			const struct seg *s = &m.s[gvm_rng_below(&r, m.n)];

			check_page(&v.vm, &m, s->start);
			check_page(&v.vm, &m, s->end - K4);
		}
	}
	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, WINDOW, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	free(m.s);
	env_fini(&v);
}

/* Translation of @va in @view: the address, or ~0 if not mapped. */
static uint64_t xl(struct gvm_pt_vm *vm, uint64_t va, enum gvm_pt_view view)
{
	struct gvm_pt_xlate x;

	return gvm__pt_translate(vm, va, view, &x) ? ~0ull : x.addr;
}

#define COMMITTED GVM_PT_VIEW_COMMITTED
#define STAGING GVM_PT_VIEW_STAGING

TEST(staging_views)
{
	struct env v;
	struct gvm_pt_extent a = { 64 * G1, 4 * M2 }, b = { 96 * G1, 2 * M2 };
	struct gvm_pt_update upd;
	struct gvm_pt_free_list dead = { 0 };
	struct gvm_pt_tlb tlb;
	uint64_t tables;

	env_init(&v, 16ull << 20, 48);
	/* 4 KiB pages (backing offset by 4 KiB keeps them small). */
	a.addr += K4;
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, 4 * M2, &a, 1, 0, NULL));
	tables = v.vm.nr_tables;
	ASSERT_OK(gvm__pt_bind_prepare(&v.vm, M2, 2 * M2, &b, 1, 0, &upd));
	ASSERT_EQ(xl(&v.vm, M2 + K4, COMMITTED), a.addr + M2 + K4);
	ASSERT_EQ(xl(&v.vm, M2 + K4, STAGING), b.addr + K4);
	ASSERT_EQ(xl(&v.vm, 2 * M2 + K4, STAGING), b.addr + M2 + K4);
	ASSERT_EQ(xl(&v.vm, K4, STAGING), a.addr + K4);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	gvm__pt_update_abort(&upd);
	ASSERT_EQ(v.vm.nr_tables, tables);
	ASSERT_EQ(xl(&v.vm, M2 + K4, STAGING), a.addr + M2 + K4);
	ASSERT_EQ(xl(&v.vm, M2 + K4, COMMITTED), a.addr + M2 + K4);

	ASSERT_OK(gvm__pt_bind_prepare(&v.vm, M2, 2 * M2, &b, 1, 0, &upd));
	gvm__pt_update_commit(&upd, &tlb, &dead);
	ASSERT_EQ(xl(&v.vm, M2 + K4, COMMITTED), b.addr + K4);
	ASSERT_EQ(xl(&v.vm, 2 * M2 + K4, COMMITTED), b.addr + M2 + K4);
	/* 2M leaves replaced the two L0 tables: handed back, not freed. */
	ASSERT_EQ(dead.nr, 2);
	ASSERT_TRUE(tlb.size >= 2 * M2 && tlb.start <= M2);
	gvm__pt_free_deferred(&v.vm, &dead);
	ASSERT_OK(gvm__pt_validate(&v.vm));

	/* Staged unbind: staging view empty, committed view unchanged. */
	ASSERT_OK(gvm__pt_unbind_prepare(&v.vm, 0, 4 * M2, &upd));
	ASSERT_EQ(xl(&v.vm, K4, STAGING), ~0ull);
	ASSERT_EQ(xl(&v.vm, 3 * M2, STAGING), ~0ull);
	ASSERT_EQ(xl(&v.vm, K4, COMMITTED), a.addr + K4);
	gvm__pt_update_commit(&upd, NULL, NULL);
	ASSERT_EQ(xl(&v.vm, K4, COMMITTED), ~0ull);
	ASSERT_EQ(v.vm.nr_tables, 1);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	env_fini(&v);
}

/* Staging view of every page of [lo, hi) equals the committed one. */
static void views_agree_after_commit(struct env *v, struct gvm_pt_update *upd,
				     uint64_t lo, uint64_t hi)
{
	uint64_t n = (hi - lo) / K4, k, *want = calloc(n, sizeof(*want));

	ASSERT_TRUE(want);
	for (k = 0; k < n; k++)
		want[k] = xl(&v->vm, lo + k * K4, STAGING);
	gvm__pt_update_commit(upd, NULL, NULL);
	for (k = 0; k < n; k++)
		ASSERT_EQ(xl(&v->vm, lo + k * K4, COMMITTED), want[k]);
	free(want);
	ASSERT_OK(gvm__pt_validate(&v->vm));
}

TEST(seed000_zap_during_prepare)
{
	struct env v;
	struct gvm_pt_extent huge = { 10 * G1, M2 }, run = { 11 * G1, K64 };
	struct gvm_pt_extent nb = { 12 * G1, K4 };
	struct gvm_pt_update upd;
	struct gvm_pt_xlate x;
	struct gvm_pt_tlb tlb;

	env_init(&v, 16ull << 20, 48);
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, M2, &huge, 1, 0, NULL));
	ASSERT_OK(gvm__pt_bind(&v.vm, M2, K64, &run, 1, 0, NULL));
	ASSERT_OK(gvm__pt_translate(&v.vm, M2, COMMITTED, &x));
	ASSERT_EQ(x.page_size, K64);

	/* 1. The bind splits the 2M leaf; a zap hits that leaf meanwhile. */
	ASSERT_OK(gvm__pt_bind_prepare(&v.vm, K4, K4, &nb, 1, 0, &upd));
	ASSERT_EQ(xl(&v.vm, 2 * K4, STAGING), huge.addr + 2 * K4);
	ASSERT_OK(gvm__pt_zap(&v.vm, M2 / 2, K4, &tlb));
	ASSERT_TRUE(tlb.start <= 0 && tlb.size >= M2);	/* whole leaf */
	ASSERT_EQ(xl(&v.vm, 2 * K4, COMMITTED), ~0ull);
	ASSERT_EQ(xl(&v.vm, K4, COMMITTED), ~0ull);
	/* Staging shows what commit will do: the split copy stays zapped. */
	ASSERT_EQ(xl(&v.vm, 2 * K4, STAGING), ~0ull);
	ASSERT_EQ(xl(&v.vm, K4, STAGING), nb.addr);
	views_agree_after_commit(&v, &upd, 0, 2 * M2);
	ASSERT_EQ(xl(&v.vm, K4, COMMITTED), nb.addr);
	ASSERT_EQ(xl(&v.vm, 0, COMMITTED), ~0ull);
	ASSERT_EQ(xl(&v.vm, M2 - K4, COMMITTED), ~0ull);

	/* 2. Neighbour fix-ups (64K hint) are not resurrected after a zap. */
	ASSERT_OK(gvm__pt_bind_prepare(&v.vm, M2 + K4, K4, &nb, 1, 0, &upd));
	ASSERT_OK(gvm__pt_zap(&v.vm, M2 + 8 * K4, K4, NULL));
	ASSERT_EQ(xl(&v.vm, M2 + 8 * K4, STAGING), ~0ull);
	views_agree_after_commit(&v, &upd, M2, M2 + K64);
	ASSERT_EQ(xl(&v.vm, M2 + 8 * K4, COMMITTED), ~0ull);
	ASSERT_EQ(xl(&v.vm, M2 + K4, COMMITTED), nb.addr);
	ASSERT_OK(gvm__pt_translate(&v.vm, M2, COMMITTED, &x));
	ASSERT_EQ(x.addr, run.addr);
	ASSERT_EQ(x.page_size, K4);

	/* 3. Inside its own range the op wins over a zap (caller rechecks). */
	ASSERT_OK(gvm__pt_bind_prepare(&v.vm, M2 + 2 * K4, K4, &nb, 1, 0,
				       &upd));
	ASSERT_OK(gvm__pt_zap(&v.vm, M2 + 2 * K4, K4, NULL));
	ASSERT_EQ(xl(&v.vm, M2 + 2 * K4, COMMITTED), ~0ull);
	ASSERT_EQ(xl(&v.vm, M2 + 2 * K4, STAGING), nb.addr);
	views_agree_after_commit(&v, &upd, M2, M2 + K64);
	ASSERT_EQ(xl(&v.vm, M2 + 2 * K4, COMMITTED), nb.addr);

	/* 4. A staged unbind of part of a zapped region, zap in between. */
	ASSERT_OK(gvm__pt_unbind_prepare(&v.vm, M2 + 3 * K4, K4, &upd));
	ASSERT_OK(gvm__pt_zap(&v.vm, M2, K64, NULL));
	views_agree_after_commit(&v, &upd, M2, M2 + K64);
	ASSERT_EQ(xl(&v.vm, M2 + 4 * K4, COMMITTED), ~0ull);

	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, 4 * M2, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	env_fini(&v);
}
