// SPDX-License-Identifier: MIT
/*
 * Page-table engine tests: format round trips, minimal-cover page-size
 * choice, a reference model (segments of pages with their expected
 * backing, attributes and leaf level) checked after every random
 * bind/unbind/zap/abort/injected failure, staging views, and the seed-000
 * interleaving (zap between prepare and commit).
 */
#include "pt/pt.h"

#include <pthread.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/debug.h"
#include "core/sync.h"
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

static void env_init_sizes(struct env *v, uint64_t arena_size,
			   unsigned int va_bits, uint64_t page_sizes)
{
	struct gvm_pt_mem mem = { 0 };

	v->arena_size = arena_size;
	v->arena = mmap(NULL, arena_size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(v->arena != MAP_FAILED);
	ASSERT_OK(gvm__buddy_init(&v->buddy, arena_size, 0));
	mem.buddy = &v->buddy;
	mem.cpu_base = v->arena;
	mem.dev_base = 1ull << 40;
	ASSERT_OK(gvm__pt_vm_init(&v->vm, &mem, va_bits, page_sizes));
}

static void env_init(struct env *v, uint64_t arena_size, unsigned int va_bits)
{
	env_init_sizes(v, arena_size, va_bits, 0);
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

/*
 * The engine writes only the leaf sizes the device supports (its page
 * sizes at init): without 2M/1G leaves an aligned 2M (or 1G) extent is
 * 4K PTEs, with the 64K hint only if 64K pages are supported.
 */
/*
 * An update that owns whole tables stages only the entries its walk
 * writes (no snapshot of the table) and its commit stores exactly the
 * entries that change: 1 GiB of 2 MiB leaves over two level-1 tables,
 * rebound identically (no store), with 100 pages moved (100 stores), and
 * over a 4 KiB table one entry held (that entry only, the table freed).
 */
TEST(owned_update_stores_only_changed_entries)
{
	struct env v;
	struct gvm_pt_extent x[2], x4;
	struct gvm_pt_tlb tlb;
	const uint64_t va = G1 + M2;
	uint64_t st, tables;

	env_init(&v, 64ull << 20, 48);
	x[0] = (struct gvm_pt_extent){ 8 * G1, G1 };
	ASSERT_OK(gvm__pt_bind(&v.vm, va, G1, x, 1, GVM_PT_WRITE, &tlb));
	expect_xlate(&v.vm, va + 7 * M2, GVM_PT_VIEW_COMMITTED,
		     8 * G1 + 7 * M2, M2);

	st = v.vm.commit_stores;
	ASSERT_OK(gvm__pt_bind(&v.vm, va, G1, x, 1, GVM_PT_WRITE, &tlb));
	ASSERT_EQ(v.vm.commit_stores - st, 0);

	x[0] = (struct gvm_pt_extent){ 16 * G1, 100 * M2 };
	x[1] = (struct gvm_pt_extent){ 8 * G1 + 100 * M2, 412 * M2 };
	st = v.vm.commit_stores;
	ASSERT_OK(gvm__pt_bind(&v.vm, va, G1, x, 2, GVM_PT_WRITE, &tlb));
	ASSERT_EQ(v.vm.commit_stores - st, 100);
	expect_xlate(&v.vm, va, GVM_PT_VIEW_COMMITTED, 16 * G1, M2);
	expect_xlate(&v.vm, va + 99 * M2 + K4, GVM_PT_VIEW_COMMITTED,
		     16 * G1 + 99 * M2 + K4, M2);
	expect_xlate(&v.vm, va + 100 * M2, GVM_PT_VIEW_COMMITTED,
		     8 * G1 + 100 * M2, M2);
	expect_xlate(&v.vm, va + 511 * M2, GVM_PT_VIEW_COMMITTED,
		     8 * G1 + 511 * M2, M2);
	ASSERT_OK(gvm__pt_validate(&v.vm));

	/* One 4 KiB page splits entry 5 into a table; rebinding the whole
	   range stores that entry alone and drops the table. */
	x4 = (struct gvm_pt_extent){ 32 * G1, K4 };
	ASSERT_OK(gvm__pt_bind(&v.vm, va + 5 * M2, K4, &x4, 1, GVM_PT_WRITE,
			       &tlb));
	expect_xlate(&v.vm, va + 5 * M2, GVM_PT_VIEW_COMMITTED, 32 * G1, K4);
	tables = v.vm.nr_tables;
	st = v.vm.commit_stores;
	ASSERT_OK(gvm__pt_bind(&v.vm, va, G1, x, 2, GVM_PT_WRITE, &tlb));
	ASSERT_EQ(v.vm.commit_stores - st, 1);
	ASSERT_EQ(v.vm.nr_tables, tables - 1);
	expect_xlate(&v.vm, va + 5 * M2, GVM_PT_VIEW_COMMITTED,
		     16 * G1 + 5 * M2, M2);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	env_fini(&v);
}

TEST(page_sizes_honoured)
{
	struct gvm_pt_mem mem = { 0 };
	struct gvm_pt_extent x;
	struct env v;

	/* 4K only. */
	env_init_sizes(&v, 64ull << 20, 48, GVM_PAGE_4K);
	x = (struct gvm_pt_extent){ 4 * G1, M2 };
	clear_writes(&v.vm);
	ASSERT_OK(gvm__pt_bind(&v.vm, M2, M2, &x, 1, GVM_PT_WRITE, NULL));
	ASSERT_EQ(writes(&v.vm, 1), 0);
	ASSERT_EQ(writes(&v.vm, 0), 512);
	expect_xlate(&v.vm, M2 + 17 * K4, GVM_PT_VIEW_COMMITTED,
		     4 * G1 + 17 * K4, K4);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	/* 1 GiB aligned, and NULL: still 4K PTEs. */
	x = (struct gvm_pt_extent){ 8 * G1, G1 };
	clear_writes(&v.vm);
	ASSERT_OK(gvm__pt_bind(&v.vm, G1, G1, &x, 1, 0, NULL));
	ASSERT_EQ(writes(&v.vm, 2), 0);
	ASSERT_EQ(writes(&v.vm, 1), 0);
	ASSERT_EQ(writes(&v.vm, 0), G1 / K4);
	expect_xlate(&v.vm, G1 + M2 + K4, GVM_PT_VIEW_COMMITTED,
		     8 * G1 + M2 + K4, K4);
	clear_writes(&v.vm);
	ASSERT_OK(gvm__pt_bind(&v.vm, 4 * G1, M2, NULL, 0, GVM_PT_NULL,
			       NULL));
	ASSERT_EQ(writes(&v.vm, 1), 0);
	ASSERT_EQ(writes(&v.vm, 0), 512);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	ASSERT_OK(gvm__pt_unbind(&v.vm, M2, M2, NULL));
	ASSERT_OK(gvm__pt_unbind(&v.vm, G1, G1, NULL));
	ASSERT_OK(gvm__pt_unbind(&v.vm, 4 * G1, M2, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	env_fini(&v);

	/* 4K + 64K: hinted PTEs, no 2M leaf. */
	env_init_sizes(&v, 64ull << 20, 48, GVM_PAGE_4K | GVM_PAGE_64K);
	x = (struct gvm_pt_extent){ 4 * G1, M2 };
	ASSERT_OK(gvm__pt_bind(&v.vm, M2, M2, &x, 1, 0, NULL));
	ASSERT_EQ(writes(&v.vm, 1), 0);
	expect_xlate(&v.vm, M2 + 17 * K4, GVM_PT_VIEW_COMMITTED,
		     4 * G1 + 17 * K4, K64);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	ASSERT_OK(gvm__pt_unbind(&v.vm, M2, M2, NULL));
	env_fini(&v);

	/* 4K + 2M + 1G, no 64K: huge leaves, PTEs without the hint. */
	env_init_sizes(&v, 64ull << 20, 48,
		       GVM_PAGE_4K | GVM_PAGE_2M | GVM_PAGE_1G);
	x = (struct gvm_pt_extent){ 4 * G1, G1 + M2 + K64 };
	ASSERT_OK(gvm__pt_bind(&v.vm, G1, G1 + M2 + K64, &x, 1, 0, NULL));
	ASSERT_EQ(writes(&v.vm, 2), 1);
	ASSERT_EQ(writes(&v.vm, 1), 1);
	ASSERT_EQ(writes(&v.vm, 0), 16);
	expect_xlate(&v.vm, 2 * G1 + M2 + K4, GVM_PT_VIEW_COMMITTED,
		     5 * G1 + M2 + K4, K4);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	ASSERT_OK(gvm__pt_unbind(&v.vm, G1, G1 + M2 + K64, NULL));
	env_fini(&v);

	/* 1G without 2M: no 1G leaves either (they split into 2M ones). */
	env_init_sizes(&v, 64ull << 20, 48, GVM_PAGE_4K | GVM_PAGE_1G);
	x = (struct gvm_pt_extent){ 4 * G1, G1 };
	ASSERT_OK(gvm__pt_bind(&v.vm, G1, G1, &x, 1, 0, NULL));
	ASSERT_EQ(writes(&v.vm, 2), 0);
	ASSERT_EQ(writes(&v.vm, 1), 0);
	ASSERT_OK(gvm__pt_unbind(&v.vm, G1, G1, NULL));
	env_fini(&v);

	/* No 4K pages: refused. */
	memset(&v, 0, sizeof(v));
	ASSERT_OK(gvm__buddy_init(&v.buddy, 1ull << 20, 0));
	mem.buddy = &v.buddy;
	mem.cpu_base = (uint8_t *)&v;
	ASSERT_EQ(gvm__pt_vm_init(&v.vm, &mem, 48, GVM_PAGE_2M), -EINVAL);
	gvm__buddy_fini(&v.buddy);
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

static void check_page_view(struct gvm_pt_vm *vm, const struct model *m,
			    uint64_t va, enum gvm_pt_view view)
{
	const struct seg *s = m_find(m, va);
	struct gvm_pt_xlate x;
	int ret = gvm__pt_translate(vm, va, view, &x);

	if (!s || s->zapped) {
		if (ret != -ENOENT)
			fprintf(stderr, "va %#llx (view %d): expected unmapped\n",
				(unsigned long long)va, (int)view);
		ASSERT_EQ(ret, -ENOENT);
		ASSERT_EQ(!!x.pte, !!s);
		return;
	}
	if (ret)
		fprintf(stderr, "va %#llx (view %d): expected mapped in "
			"[%#llx, %#llx)\n", (unsigned long long)va, (int)view,
			(unsigned long long)s->start,
			(unsigned long long)s->end);
	ASSERT_OK(ret);
	ASSERT_EQ(x.level, s->level);
	ASSERT_EQ(gvm__ptf_attrs_of(x.pte), s->attrs);
	ASSERT_EQ(x.addr, (s->attrs & GVM_PTF_NULL) ? 0
			  : s->addr + (va - s->start));
}

static void check_page(struct gvm_pt_vm *vm, const struct model *m,
		       uint64_t va)
{
	check_page_view(vm, m, va, GVM_PT_VIEW_COMMITTED);
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
				gvm__inject_arm(GVM_INJECT_ALLOC,
						(long)(1 + gvm_rng_below(&r, 6)), 0);
			else
				gvm__buddy_fail_alloc_after = (long)gvm_rng_below(&r, 3);
		}
		if (c < 55)
			ret = gvm__pt_bind_prepare(&v.vm, va, size, x, n, flags, &upd);
		else if (c < 90)
			ret = gvm__pt_unbind_prepare(&v.vm, va, size, &upd);
		else
			ret = gvm__pt_zap(&v.vm, va, size, NULL);
		gvm__inject_arm(GVM_INJECT_ALLOC, 0, 0);
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
		ASSERT_EQ(v.buddy.nr_allocated, v.vm.nr_tables + v.vm.nr_spares);
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

/* ---- multi-segment updates -------------------------------------------- */

#define SEGS_MAX 8
#define EXTS_MAX 3
#define M1 (1ull << 20)

static uint64_t flags_attrs(unsigned int flags)
{
	return gvm__ptf_attrs(flags & GVM_PT_WRITE, flags & GVM_PT_DEVMEM,
			      flags & GVM_PT_ATOMIC, flags & GVM_PT_NULL,
			      (flags >> GVM_PT_PAT_SHIFT) & 7);
}

/*
 * Applies @s[0..n) to @m one after the other, which is what one update
 * must produce, merging adjacent NULL (and UNBIND) segments with equal
 * flags as the engine does.
 */
static void m_apply(struct model *m, const struct gvm_pt_seg *s, size_t n)
{
	size_t k = 0, j;

	while (k < n) {
		uint64_t end = s[k].end;

		j = k + 1;
		if (s[k].flags & (GVM_PT_NULL | GVM_PT_UNBIND))
			while (j < n && s[j].va == end &&
			       s[j].flags == s[k].flags)
				end = s[j++].end;
		if (s[k].flags & GVM_PT_UNBIND)
			m_unbind(m, s[k].va, end - s[k].va);
		else
			m_bind(m, s[k].va, end - s[k].va, s[k].ext, s[k].n,
			       flags_attrs(s[k].flags));
		k = j;
	}
}

/* A hash of every reachable table: entries, live counts, addresses. */
static uint64_t tree_hash(const struct gvm_pt *t, uint64_t h)
{
	unsigned int i;

	h = (h ^ t->dev_addr ^ ((uint64_t)t->live << 48) ^ t->level) *
	    0x100000001b3ull;
	for (i = 0; i < GVM_PTF_ENTRIES; i++) {
		h = (h ^ t->cpu[i]) * 0x100000001b3ull;
		h ^= h >> 29;
		if (t->level && t->children[i])
			h = tree_hash(t->children[i], h);
	}
	return h;
}

static uint64_t vm_hash(const struct gvm_pt_vm *vm)
{
	return tree_hash(vm->root, 0xcbf29ce484222325ull);
}

/* A random segment list (sorted; gaps and adjacent segments). */
struct useg {
	struct gvm_pt_seg s[SEGS_MAX];
	struct gvm_pt_extent x[SEGS_MAX][EXTS_MAX];
	size_t n;
};

static uint64_t seg_size(struct gvm_rng *r)
{
	uint64_t c = gvm_rng_below(r, 100);

	if (c < 50)
		return (1 + gvm_rng_below(r, 64)) * K4;
	if (c < 75)
		return (1 + gvm_rng_below(r, 1024)) * K4;
	if (c < 97)
		return (1 + gvm_rng_below(r, 8)) * M2 +
		       gvm_rng_below(r, 3) * gvm_rng_below(r, 512) * K4;
	return (1 + gvm_rng_below(r, 2)) * G1 + gvm_rng_below(r, 2) * M2 +
	       gvm_rng_below(r, 2) * K4;
}

/* Backing for [va, va + size) in 1..EXTS_MAX extents, often aligned. */
static size_t rand_ext(struct gvm_rng *r, uint64_t va, uint64_t size,
		       struct gvm_pt_extent *x)
{
	uint64_t left = size, cur = va;
	size_t n = 0;

	while (left) {
		uint64_t l = (1 + gvm_rng_below(r, left / K4)) * K4;
		uint64_t al = rand_align(r);

		if (n == EXTS_MAX - 1 || gvm_rng_below(r, 2))
			l = left;
		x[n].addr = down(gvm_rng_below(r, 1ull << 44), al);
		if (gvm_rng_below(r, 4))	/* same offset as the VA */
			x[n].addr += cur % al;
		x[n].addr = down(x[n].addr, K4);
		x[n++].len = l;
		left -= l;
		cur += l;
	}
	return n;
}

static void rand_segs(struct gvm_rng *r, struct useg *u)
{
	uint64_t va = down(gvm_rng_below(r, WINDOW / 2), rand_align(r));
	size_t want = 1 + gvm_rng_below(r, SEGS_MAX), k;

	u->n = 0;
	for (k = 0; k < want; k++) {
		struct gvm_pt_seg *s = &u->s[u->n];
		uint64_t size = seg_size(r), c = gvm_rng_below(r, 100);

		if (k) {
			uint64_t g = gvm_rng_below(r, 3);	/* 0: adjacent */

			if (g == 1)
				va += (1 + gvm_rng_below(r, 32)) * K4;
			else if (g == 2)
				va += seg_size(r);
		}
		if (va + size > WINDOW)
			break;
		s->va = va;
		s->end = va + size;
		s->ext = NULL;
		s->n = 0;
		if (k && gvm_rng_below(r, 4) == 0) {
			s->flags = s[-1].flags;		/* maybe merged */
		} else if (c < 30) {
			s->flags = GVM_PT_UNBIND;
		} else {
			s->flags = (gvm_rng_below(r, 3) ? GVM_PT_WRITE : 0) |
				   GVM_PT_PAT(gvm_rng_below(r, 8));
			if (c < 42)
				s->flags |= GVM_PT_NULL;
			else
				s->flags |= gvm_rng_below(r, 2) ? GVM_PT_DEVMEM
								: GVM_PT_ATOMIC;
		}
		if (!(s->flags & (GVM_PT_UNBIND | GVM_PT_NULL))) {
			s->n = rand_ext(r, va, size, u->x[u->n]);
			s->ext = u->x[u->n];
		}
		u->n++;
		va += size;
	}
}

/* Pages to check around an update. */
struct pages {
	uint64_t *va;
	size_t n, cap;
};

static void pg_add(struct pages *p, uint64_t va)
{
	if (va >= (1ull << 48))
		return;
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 4096;
		p->va = realloc(p->va, p->cap * sizeof(*p->va));
		ASSERT_TRUE(p->va);
	}
	p->va[p->n++] = va;
}

/* [a, b): every page if few, else both ends and a random sample. */
static void pg_add_range(struct pages *p, struct gvm_rng *r, uint64_t a,
			 uint64_t b)
{
	uint64_t np = b > a ? (b - a) / K4 : 0, k;

	if (np <= 512) {
		for (k = 0; k < np; k++)
			pg_add(p, a + k * K4);
		return;
	}
	for (k = 0; k < 64; k++) {
		pg_add(p, a + k * K4);
		pg_add(p, b - (k + 1) * K4);
	}
	for (k = 0; k < 256; k++)
		pg_add(p, a + gvm_rng_below(r, np) * K4);
}

/* Around an edge @e: its pages and those at the 2M / 1G boundaries. */
static void pg_add_edge(struct pages *p, struct gvm_rng *r, uint64_t e)
{
	pg_add_range(p, r, e > K64 ? e - K64 : 0, e + K64);
	pg_add_range(p, r, down(e, M2), down(e, M2) + 2 * K4);
	pg_add_range(p, r, up(e, M2) - 2 * K4, up(e, M2) + K4);
	pg_add(p, down(e, G1));
	pg_add(p, up(e, G1) - K4);
	pg_add(p, down(e, G1) + gvm_rng_below(r, G1 / K4) * K4);
}

static void pg_for_segs(struct pages *p, struct gvm_rng *r,
			const struct useg *u)
{
	size_t k;

	p->n = 0;
	for (k = 0; k < u->n; k++) {
		const struct gvm_pt_seg *s = &u->s[k];

		pg_add_edge(p, r, s->va);
		pg_add_edge(p, r, s->end);
		pg_add_range(p, r, s->va, s->end);
		if (k)		/* the gap before it */
			pg_add_range(p, r, s[-1].end, s->va);
	}
	pg_add_range(p, r, u->s[0].va > M2 ? u->s[0].va - M2 : 0, u->s[0].va);
	pg_add_range(p, r, u->s[u->n - 1].end, u->s[u->n - 1].end + M2);
}

struct xl_snap {
	int ret;
	uint64_t addr, attrs;
};

static struct xl_snap snap_of(struct gvm_pt_vm *vm, uint64_t va)
{
	struct gvm_pt_xlate x;
	struct xl_snap s;

	s.ret = gvm__pt_translate(vm, va, GVM_PT_VIEW_COMMITTED, &x);
	s.addr = x.addr;
	s.attrs = gvm__ptf_attrs_of(x.pte);
	return s;
}

static bool tlb_covers(const struct gvm_pt_tlb *tlb, uint64_t va)
{
	return tlb->full || (va >= tlb->start && va - tlb->start < tlb->size);
}

static void check_model_samples(struct env *v, const struct model *m,
				struct gvm_rng *r)
{
	size_t k;

	for (k = 0; k < 64; k++)
		check_page(&v->vm, m, down(gvm_rng_below(r, WINDOW), K4));
	for (k = 0; k < m->n && k < 64; k++) {
		const struct seg *s = &m->s[gvm_rng_below(r, m->n)];

		check_page(&v->vm, m, s->start);
		check_page(&v->vm, m, s->end - K4);
	}
}

/*
 * Random multi-segment updates (map with random extents, NULL, UNBIND,
 * read-only, gaps, adjacent segments), committed, aborted, failed by
 * allocation injection, some with a zap between prepare and commit, some
 * with a range zapped both committed and staged (gvm__pt_update_zap),
 * against the reference model: the committed view equals the model, the
 * staging view its future, a failed or aborted prepare changes no table,
 * every valid translation a commit changes is inside its TLB range.
 */
TEST(update_reference_model)
{
	struct gvm_rng r = { gvm_test_seed() };
	uint64_t steps = gvm_test_scale(400), step;
	struct model m = { 0 }, fut = { 0 };
	struct pages pg = { 0 };
	struct xl_snap *pre = NULL;
	size_t pre_cap = 0;
	struct env v;

	env_init(&v, 64ull << 20, 48);
	for (step = 0; step < steps; step++) {
		uint64_t before = v.vm.nr_tables, h;
		bool abort_it = gvm_rng_below(&r, 8) == 0;
		bool inject = gvm_rng_below(&r, 8) == 0;
		bool zap = gvm_rng_below(&r, 6) == 0;
		bool szap = gvm_rng_below(&r, 6) == 0;
		uint64_t szva = 0, szsize = 0;
		bool reserved = gvm_rng_below(&r, 3) == 0;
		struct gvm_pt_reserve res = { 0 };
		struct gvm_pt_update upd;
		struct gvm_pt_tlb tlb;
		struct useg u;
		size_t k;
		int ret;

		if (gvm_rng_below(&r, 10) == 0) {	/* a zap alone */
			uint64_t size = seg_size(&r);
			uint64_t va = down(gvm_rng_below(&r, WINDOW - size),
					   rand_align(&r));

			ASSERT_OK(gvm__pt_zap(&v.vm, va, size, NULL));
			m_zap(&m, va, size);
			ASSERT_OK(gvm__pt_validate(&v.vm));
			check_model_samples(&v, &m, &r);
			continue;
		}
		rand_segs(&r, &u);
		ASSERT_GT(u.n, 0);
		pg_for_segs(&pg, &r, &u);
		if (pg.n > pre_cap) {
			pre_cap = pg.n;
			pre = realloc(pre, pre_cap * sizeof(*pre));
			ASSERT_TRUE(pre);
		}
		h = vm_hash(&v.vm);
		if (inject) {
			if (gvm_rng_below(&r, 2))
				gvm__inject_arm(GVM_INJECT_ALLOC,
						(long)(1 + gvm_rng_below(&r, 8)), 0);
			else
				gvm__buddy_fail_alloc_after =
					(long)gvm_rng_below(&r, 4);
		}
		if (reserved) {
			/* Whatever the tables hold, a reserved prepare never
			   allocates: every allocation would fail now. */
			ret = gvm__pt_reserve(&v.vm, u.s, u.n, &res);
			if (!ret) {
				gvm__inject_arm(GVM_INJECT_ALLOC, 1, 0);
				gvm__buddy_fail_alloc_after = 0;
				ret = gvm__pt_update_prepare_reserved(
					&v.vm, u.s, u.n, &res, &upd);
				ASSERT_OK(ret);
				ASSERT_EQ(gvm__inject_pending(GVM_INJECT_ALLOC), 1);
			}
		} else {
			ret = gvm__pt_update_prepare(&v.vm, u.s, u.n, &upd);
		}
		gvm__inject_arm(GVM_INJECT_ALLOC, 0, 0);
		gvm__buddy_fail_alloc_after = -1;
		if (ret) {
			ASSERT_TRUE(ret == -ENOMEM || ret == -ENOSPC);
			ASSERT_TRUE(!v.vm.pending);
			ASSERT_EQ(v.vm.nr_tables, before);
			ASSERT_TRUE(vm_hash(&v.vm) == h);
			goto check;
		}
		ASSERT_OK(gvm__pt_validate(&v.vm));
		ASSERT_TRUE(vm_hash(&v.vm) == h);	/* nothing written */
		if (zap) {
			uint64_t va = pg.va[gvm_rng_below(&r, pg.n)];
			uint64_t size = gvm_rng_below(&r, 2) ? K4 : seg_size(&r);

			if (va + size > WINDOW)
				size = K4;
			ASSERT_OK(gvm__pt_zap(&v.vm, va, size, NULL));
			m_zap(&m, va, size);
		}
		if (szap) {
			/* A stale userptr (pt_update.c): its committed
			   leaves and the update's staged ones are zapped. */
			szva = pg.va[gvm_rng_below(&r, pg.n)];
			szsize = gvm_rng_below(&r, 2) ? K4 : seg_size(&r);
			if (szva + szsize > WINDOW)
				szsize = K4;
			ASSERT_OK(gvm__pt_zap(&v.vm, szva, szsize, NULL));
			m_zap(&m, szva, szsize);
			ASSERT_OK(gvm__pt_update_zap(&upd, szva, szsize));
		}
		m_replace(&fut, &m);
		m_apply(&fut, u.s, u.n);
		if (szap)
			m_zap(&fut, szva, szsize);
		for (k = 0; k < pg.n; k++) {
			check_page_view(&v.vm, &m, pg.va[k], COMMITTED);
			check_page_view(&v.vm, &fut, pg.va[k], STAGING);
			pre[k] = snap_of(&v.vm, pg.va[k]);
		}
		if (abort_it) {
			h = vm_hash(&v.vm);
			gvm__pt_update_abort(&upd);
			ASSERT_EQ(v.vm.nr_tables, before);
			ASSERT_TRUE(vm_hash(&v.vm) == h);
		} else if (gvm_rng_below(&r, 2)) {
			gvm__pt_update_commit(&upd, &tlb, NULL);
			m_replace(&m, &fut);
		} else {
			struct gvm_pt_free_list dead = { 0 };

			gvm__pt_update_commit(&upd, &tlb, &dead);
			gvm__pt_free_deferred(&v.vm, &dead);
			m_replace(&m, &fut);
		}
		for (k = 0; !abort_it && k < pg.n; k++) {
			struct xl_snap now = snap_of(&v.vm, pg.va[k]);

			if (pre[k].ret == 0 &&
			    (now.ret || now.addr != pre[k].addr ||
			     now.attrs != pre[k].attrs))
				ASSERT_TRUE(tlb_covers(&tlb, pg.va[k]));
		}
check:
		gvm__pt_reserve_fini(&v.vm, &res);
		ASSERT_TRUE(!v.vm.pending);
		ASSERT_OK(gvm__pt_validate(&v.vm));
		ASSERT_EQ(v.buddy.nr_allocated, v.vm.nr_tables + v.vm.nr_spares);
		if (v.vm.nr_tables != m_tables(&m, v.vm.levels))
			fprintf(stderr, "step %llu: tables %llu model %llu\n",
				(unsigned long long)step,
				(unsigned long long)v.vm.nr_tables,
				(unsigned long long)m_tables(&m, v.vm.levels));
		ASSERT_EQ(v.vm.nr_tables, m_tables(&m, v.vm.levels));
		for (k = 0; k < pg.n; k++)
			check_page(&v.vm, &m, pg.va[k]);
		check_model_samples(&v, &m, &r);
	}
	{
		/* Everything unbound: back to the root alone. */
		struct gvm_pt_seg all[3] = {
			{ 0, WINDOW / 4, GVM_PT_UNBIND, NULL, 0 },
			{ WINDOW / 4, WINDOW / 2, GVM_PT_UNBIND, NULL, 0 },
			{ WINDOW / 2, WINDOW, GVM_PT_UNBIND, NULL, 0 },
		};
		struct gvm_pt_update upd;

		ASSERT_OK(gvm__pt_update_prepare(&v.vm, all, 3, &upd));
		gvm__pt_update_commit(&upd, NULL, NULL);
		ASSERT_EQ(v.vm.nr_tables, 1);
		ASSERT_OK(gvm__pt_validate(&v.vm));
	}
	free(pre);
	free(pg.va);
	free(m.s);
	free(fut.s);
	env_fini(&v);
}

/*
 * A reserve sizes each record by the entries the segments can touch in
 * that table, not the whole table: for one 4 KiB page, a 64 KiB group at
 * level 0 and one entry above, under 1 KiB of arena (not 44 KiB).  A
 * prepare from it, with every allocation failing, works whether the tables
 * exist (records at every level) or not (spare tables), next to a table
 * edge and at the top of the VA space.
 */
TEST(reserve_small_bind_records)
{
	const uint64_t vas[] = { G1 + K4, G1 + M2 - K4, (1ull << 48) - K4 };
	struct gvm_pt_extent x = { 8 * G1, K4 }, xn = { 9 * G1, K4 };
	struct env v;

	env_init(&v, 64ull << 20, 48);
	for (size_t i = 0; i < sizeof(vas) / sizeof(vas[0]); i++) {
		for (int exist = 0; exist < 2; exist++) {
			uint64_t va = vas[i];
			uint64_t nb = va & (M2 - 1) ? va - K4 : va + K4;
			struct gvm_pt_seg seg = { va, va + K4, GVM_PT_WRITE,
						  &x, 1 };
			struct gvm_pt_reserve res = { 0 };
			struct gvm_pt_update upd;
			struct gvm_pt_tlb tlb;

			/* exist: a neighbour keeps the tables */
			if (exist)
				ASSERT_OK(gvm__pt_bind(&v.vm, nb, K4, &xn, 1,
						       GVM_PT_WRITE, &tlb));
			ASSERT_OK(gvm__pt_reserve(&v.vm, &seg, 1, &res));
			ASSERT_LT(res.mem_size, 1024);
			ASSERT_EQ(res.nr_tables, 3);
			gvm__inject_arm(GVM_INJECT_ALLOC, 1, 0);
			gvm__buddy_fail_alloc_after = 0;
			ASSERT_OK(gvm__pt_update_prepare_reserved(&v.vm, &seg,
								  1, &res,
								  &upd));
			gvm__inject_arm(GVM_INJECT_ALLOC, 0, 0);
			gvm__buddy_fail_alloc_after = -1;
			gvm__pt_update_commit(&upd, &tlb, NULL);
			gvm__pt_reserve_fini(&v.vm, &res);
			expect_xlate(&v.vm, va, GVM_PT_VIEW_COMMITTED, 8 * G1,
				     K4);
			ASSERT_OK(gvm__pt_unbind(&v.vm, va, K4, &tlb));
			if (exist)
				ASSERT_OK(gvm__pt_unbind(&v.vm, nb, K4, &tlb));
			ASSERT_EQ(v.vm.nr_tables, 1);
			ASSERT_OK(gvm__pt_validate(&v.vm));
		}
	}
	env_fini(&v);
}

/*
 * DEFERRED RECORDS: a 4 KiB bind next to a mapped neighbour changes the
 * leaf table only; the directories on the way get no record (commit does
 * not visit them).  Unbinding the neighbour too empties the leaf table:
 * its parent then gets a record (made after the leaf table's, committed
 * after it), and so on up to the root.
 */
TEST(deferred_records_only_changed_tables)
{
	struct gvm_pt_extent x = { 8 * G1, K4 }, xn = { 9 * G1, K4 };
	struct gvm_pt_seg seg = { G1 + K4, G1 + 2 * K4, GVM_PT_WRITE, &x, 1 };
	struct gvm_pt_seg both = { G1, G1 + 2 * K4, GVM_PT_UNBIND, NULL, 0 };
	struct gvm_pt *l2, *l1, *l0;
	struct gvm_pt_update upd;
	struct gvm_pt_tlb tlb;
	uint64_t st;
	struct env v;

	env_init(&v, 64ull << 20, 48);
	ASSERT_OK(gvm__pt_bind(&v.vm, G1, K4, &xn, 1, GVM_PT_WRITE, &tlb));
	l2 = v.vm.root->children[0];
	l1 = l2->children[1];
	l0 = l1->children[0];
	ASSERT_TRUE(l0 && l0->level == 0);

	st = v.vm.commit_stores;
	ASSERT_OK(gvm__pt_update_prepare(&v.vm, &seg, 1, &upd));
	ASSERT_TRUE(!v.vm.root->rec && !l2->rec && !l1->rec);
	ASSERT_TRUE(l0->rec);
	ASSERT_EQ(xl(&v.vm, G1 + K4, STAGING), 8 * G1);
	gvm__pt_update_commit(&upd, &tlb, NULL);
	ASSERT_EQ(v.vm.commit_stores - st, 1);
	ASSERT_EQ(xl(&v.vm, G1 + K4, COMMITTED), 8 * G1);
	ASSERT_EQ(xl(&v.vm, G1, COMMITTED), 9 * G1);
	ASSERT_OK(gvm__pt_validate(&v.vm));

	ASSERT_OK(gvm__pt_update_prepare(&v.vm, &both, 1, &upd));
	ASSERT_TRUE(v.vm.root->rec && l2->rec && l1->rec && l0->rec);
	ASSERT_EQ(xl(&v.vm, G1, STAGING), ~0ull);
	gvm__pt_update_commit(&upd, &tlb, NULL);
	ASSERT_EQ(v.vm.nr_tables, 1);
	ASSERT_EQ(xl(&v.vm, G1 + K4, COMMITTED), ~0ull);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	env_fini(&v);
}

/*
 * SPARES: a reserve's spares stay with the VM when it ends unused, and the
 * next reserve takes them without allocating (here, with the buddy
 * failing); an allocation takes a spare nobody counts on first; the owner
 * gets the rest back with gvm__pt_spares_drop_locked().
 */
TEST(reserve_spares_kept_for_next_reserve)
{
	struct gvm_pt_extent x = { 8 * G1, K4 };
	struct gvm_pt_seg seg = { G1 + K4, G1 + 2 * K4, GVM_PT_WRITE, &x, 1 };
	struct gvm_pt_reserve res = { 0 }, res2 = { 0 };
	struct gvm_pt *shadows = NULL;
	struct gvm_pt_tlb tlb;
	struct env v;

	env_init(&v, 64ull << 20, 48);
	ASSERT_OK(gvm__pt_reserve(&v.vm, &seg, 1, &res));
	ASSERT_EQ(v.vm.nr_spares, 3);
	ASSERT_EQ(v.vm.spares_promised, 3);
	gvm__pt_reserve_fini(&v.vm, &res);
	ASSERT_EQ(v.vm.nr_spares, 3);
	ASSERT_EQ(v.vm.spares_promised, 0);

	gvm__buddy_fail_alloc_after = 0;	/* the buddy is out */
	ASSERT_OK(gvm__pt_reserve(&v.vm, &seg, 1, &res));
	{
		int ret = gvm__pt_reserve(&v.vm, &seg, 1, &res2);

		ASSERT_TRUE(ret == -ENOSPC || ret == -ENOMEM);
	}
	ASSERT_EQ(v.vm.spares_promised, 3);
	ASSERT_EQ(v.vm.nr_spares, 3);
	gvm__pt_reserve_fini(&v.vm, &res);
	/* An allocation takes spares first: a whole path of new tables. */
	ASSERT_OK(gvm__pt_bind(&v.vm, G1, K4, &x, 1, GVM_PT_WRITE, &tlb));
	gvm__buddy_fail_alloc_after = -1;
	ASSERT_EQ(v.vm.nr_spares, 0);
	ASSERT_EQ(v.vm.nr_tables, 4);

	ASSERT_OK(gvm__pt_reserve(&v.vm, &seg, 1, &res));
	gvm__pt_reserve_fini(&v.vm, &res);
	ASSERT_EQ(v.buddy.nr_allocated, 4 + 3);
	ASSERT_EQ(gvm__pt_spares_drop_locked(&v.vm, &shadows), 3);
	gvm__pt_spares_free_shadows(shadows);
	ASSERT_EQ(v.vm.nr_spares, 0);
	ASSERT_EQ(v.buddy.nr_allocated, 4);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	env_fini(&v);
}

/* ---- multi-segment updates: targeted cases ------------------------------ */

#define SMAP(a, b, fl, x) ((struct gvm_pt_seg){ (a), (b), (fl), (x), 1 })
#define SNULL(a, b) ((struct gvm_pt_seg){ (a), (b), GVM_PT_NULL, NULL, 0 })
#define SUNMAP(a, b) ((struct gvm_pt_seg){ (a), (b), GVM_PT_UNBIND, NULL, 0 })

/* The raw entry translating @va in @view (0 if none). */
static uint64_t raw(struct gvm_pt_vm *vm, uint64_t va, enum gvm_pt_view view)
{
	struct gvm_pt_xlate x;

	gvm__pt_translate(vm, va, view, &x);
	return x.pte;
}

static uint64_t psize(struct gvm_pt_vm *vm, uint64_t va)
{
	struct gvm_pt_xlate x;

	return gvm__pt_translate(vm, va, COMMITTED, &x) ? 0 : x.page_size;
}

/*
 * Commits @upd after recording the staging view of [lo, hi); the committed
 * raw entries must then equal it exactly.
 */
static void commit_as_staged(struct env *v, struct gvm_pt_update *upd,
			     uint64_t lo, uint64_t hi, struct gvm_pt_tlb *tlb)
{
	uint64_t n = (hi - lo) / K4, k, *want = calloc(n, sizeof(*want));

	ASSERT_TRUE(want);
	ASSERT_OK(gvm__pt_validate(&v->vm));
	for (k = 0; k < n; k++)
		want[k] = raw(&v->vm, lo + k * K4, STAGING);
	gvm__pt_update_commit(upd, tlb, NULL);
	for (k = 0; k < n; k++)
		ASSERT_EQ(raw(&v->vm, lo + k * K4, COMMITTED), want[k]);
	free(want);
	ASSERT_OK(gvm__pt_validate(&v->vm));
}

TEST(update_two_segments_split_2m_leaf)
{
	struct gvm_pt_extent a = { 10 * G1, M2 }, b = { 11 * G1 + K4, 2 * K4 };
	struct gvm_pt_extent c = { 12 * G1, K64 };
	struct gvm_pt_seg s[2] = { SMAP(K4, 3 * K4, GVM_PT_WRITE, &b),
				   SMAP(M1, M1 + K64, 0, &c) };
	struct gvm_pt_update upd;
	struct gvm_pt_tlb tlb;
	struct env v;

	env_init(&v, 16ull << 20, 48);
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, M2, &a, 1, 0, NULL));
	ASSERT_EQ(v.vm.nr_tables, 3);
	ASSERT_EQ(psize(&v.vm, 0), M2);

	ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 2, &upd));
	ASSERT_EQ(v.vm.nr_tables, 4);		/* one split copy, pending */
	ASSERT_EQ(xl(&v.vm, K4, COMMITTED), a.addr + K4);
	ASSERT_EQ(xl(&v.vm, K4, STAGING), b.addr);
	ASSERT_EQ(xl(&v.vm, M1, STAGING), c.addr);
	ASSERT_EQ(xl(&v.vm, 5 * K4, STAGING), a.addr + 5 * K4);
	commit_as_staged(&v, &upd, 0, M2, &tlb);
	ASSERT_EQ(v.vm.nr_tables, 4);
	ASSERT_TRUE(tlb.full || (tlb.start == 0 && tlb.size >= M2));

	expect_xlate(&v.vm, 0, COMMITTED, a.addr, K4);	/* group 0 cut */
	expect_xlate(&v.vm, K4, COMMITTED, b.addr, K4);
	expect_xlate(&v.vm, 2 * K4, COMMITTED, b.addr + K4, K4);
	expect_xlate(&v.vm, 3 * K4, COMMITTED, a.addr + 3 * K4, K4);
	expect_xlate(&v.vm, 15 * K4, COMMITTED, a.addr + 15 * K4, K4);
	/* Whole untouched groups of the copy keep their hint. */
	expect_xlate(&v.vm, K64, COMMITTED, a.addr + K64, K64);
	expect_xlate(&v.vm, M1 - K4, COMMITTED, a.addr + M1 - K4, K64);
	expect_xlate(&v.vm, M1 + K4, COMMITTED, c.addr + K4, K64);
	expect_xlate(&v.vm, M1 + K64, COMMITTED, a.addr + M1 + K64, K64);
	expect_xlate(&v.vm, M2 - K4, COMMITTED, a.addr + M2 - K4, K64);
	ASSERT_EQ(gvm__ptf_attrs_of(raw(&v.vm, K4, COMMITTED)),
		  flags_attrs(GVM_PT_WRITE));
	ASSERT_EQ(gvm__ptf_attrs_of(raw(&v.vm, 0, COMMITTED)),
		  flags_attrs(0));

	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, M2, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	env_fini(&v);
}

TEST(update_gap_keeps_old_ptes)
{
	struct gvm_pt_extent h = { 5 * G1 + K64, 4 * M1 }, l = { 6 * G1, M2 };
	struct gvm_pt_extent d = { 7 * G1, K64 }, e = { 7 * G1 + M2, K4 };
	struct gvm_pt_seg s[4] = {
		SMAP(K64, 2 * K64, 0, &d),
		SUNMAP(M2 + K64, M2 + K64 + 8 * K4),	/* half a group */
		SNULL(3 * M1, 3 * M1 + K4),		/* 1/16 of a group */
		SMAP(6 * M1 + K4, 6 * M1 + 2 * K4, 0, &e),
	};
	uint64_t np = 8 * M1 / K4, k, *snap = calloc(np, sizeof(*snap));
	struct gvm_pt_update upd;
	struct env v;

	ASSERT_TRUE(snap);
	env_init(&v, 16ull << 20, 48);
	/* [0, 4M): 4 KiB pages with 64 KiB hints; [4M, 6M): one 2M leaf. */
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, 4 * M1, &h, 1, GVM_PT_WRITE, NULL));
	ASSERT_OK(gvm__pt_bind(&v.vm, 4 * M1, M2, &l, 1, 0, NULL));
	/* One zapped entry in the gap (its group loses the hint). */
	ASSERT_OK(gvm__pt_zap(&v.vm, M1 + 8 * K4, K4, NULL));
	ASSERT_EQ(psize(&v.vm, 0), K64);
	ASSERT_EQ(psize(&v.vm, 4 * M1), M2);
	for (k = 0; k < np; k++)
		snap[k] = raw(&v.vm, k * K4, COMMITTED);
	ASSERT_TRUE(gvm__ptf_is_zapped(snap[(M1 + 8 * K4) / K4]));

	ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 4, &upd));
	commit_as_staged(&v, &upd, 0, 8 * M1, NULL);
	for (k = 0; k < np; k++) {
		uint64_t va = k * K4, now = raw(&v.vm, va, COMMITTED);
		bool in_seg = false, group_cut = false;
		size_t j;

		for (j = 0; j < 4; j++) {
			in_seg |= s[j].va <= va && va < s[j].end;
			group_cut |= down(s[j].va, K64) <= va &&
				     va < up(s[j].end, K64);
		}
		if (in_seg)
			continue;
		if (group_cut)	/* a cut group's other members: no hint */
			ASSERT_EQ(now, gvm__ptf_clear_cont(snap[k]));
		else		/* the gap: exactly as before */
			ASSERT_EQ(now, snap[k]);
	}
	expect_xlate(&v.vm, K64 + K4, COMMITTED, d.addr + K4, K64);
	ASSERT_EQ(raw(&v.vm, M2 + K64, COMMITTED), 0);
	ASSERT_EQ(psize(&v.vm, M2 + K64 + 8 * K4), K4);
	expect_xlate(&v.vm, 3 * M1, COMMITTED, 0, K4);
	expect_xlate(&v.vm, 6 * M1 + K4, COMMITTED, e.addr, K4);
	ASSERT_EQ(xl(&v.vm, 6 * M1, COMMITTED), ~0ull);
	ASSERT_EQ(psize(&v.vm, 4 * M1 + K4), M2);	/* the 2M leaf */

	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, 8 * M1, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	free(snap);
	env_fini(&v);
}

TEST(update_adjacent_segments_at_64k_groups)
{
	struct gvm_pt_extent h = { 5 * G1 + K64, 512 * K4 };
	struct gvm_pt_extent e = { 8 * G1, K64 }, f = { 9 * G1, 8 * K4 };
	struct gvm_pt_extent g0 = { 10 * G1, 4 * K4 };
	struct gvm_pt_extent g1 = { 10 * G1 + 4 * K4, 12 * K4 };
	struct gvm_pt_extent w = { 11 * G1, K64 };
	struct gvm_pt_update upd;
	struct env v;
	uint64_t k;

	env_init(&v, 16ull << 20, 48);
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, 512 * K4, &h, 1, 0, NULL));
	ASSERT_EQ(psize(&v.vm, 0), K64);

	/* At a group boundary: map group 0 (whole: hinted), unbind group 1. */
	{
		struct gvm_pt_seg s[2] = { SMAP(0, K64, 0, &e),
					   SUNMAP(K64, 2 * K64) };

		ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 2, &upd));
		commit_as_staged(&v, &upd, 0, M2, NULL);
	}
	for (k = 0; k < 16; k++) {
		expect_xlate(&v.vm, k * K4, COMMITTED, e.addr + k * K4, K64);
		ASSERT_EQ(raw(&v.vm, K64 + k * K4, COMMITTED), 0);
		expect_xlate(&v.vm, 2 * K64 + k * K4, COMMITTED,
			     h.addr + 2 * K64 + k * K4, K64);
	}

	/* In the middle of a group: map half of group 2, unbind the other
	 * half and a quarter of group 3. */
	{
		struct gvm_pt_seg s[2] = {
			SMAP(2 * K64, 2 * K64 + 8 * K4, 0, &f),
			SUNMAP(2 * K64 + 8 * K4, 3 * K64 + 4 * K4),
		};

		ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 2, &upd));
		commit_as_staged(&v, &upd, 0, M2, NULL);
	}
	for (k = 0; k < 8; k++) {
		expect_xlate(&v.vm, 2 * K64 + k * K4, COMMITTED,
			     f.addr + k * K4, K4);
		ASSERT_EQ(raw(&v.vm, 2 * K64 + (8 + k) * K4, COMMITTED), 0);
	}
	for (k = 4; k < 16; k++)
		expect_xlate(&v.vm, 3 * K64 + k * K4, COMMITTED,
			     h.addr + 3 * K64 + k * K4, K4);
	expect_xlate(&v.vm, 4 * K64, COMMITTED, h.addr + 4 * K64, K64);

	/*
	 * Two adjacent mapping segments whose backing happens to be
	 * contiguous: no hint across segments; then a whole hinted group
	 * next to an unbind in the following group's middle.
	 */
	{
		struct gvm_pt_seg s[4] = {
			SMAP(4 * K64, 4 * K64 + 4 * K4, 0, &g0),
			SMAP(4 * K64 + 4 * K4, 5 * K64, 0, &g1),
			SMAP(5 * K64, 6 * K64, GVM_PT_WRITE, &w),
			SUNMAP(6 * K64, 6 * K64 + 8 * K4),
		};

		ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 4, &upd));
		commit_as_staged(&v, &upd, 0, M2, NULL);
	}
	for (k = 0; k < 16; k++) {
		expect_xlate(&v.vm, 4 * K64 + k * K4, COMMITTED,
			     g0.addr + k * K4, K4);
		expect_xlate(&v.vm, 5 * K64 + k * K4, COMMITTED,
			     w.addr + k * K4, K64);
	}
	expect_xlate(&v.vm, 6 * K64 + 8 * K4, COMMITTED,
		     h.addr + 6 * K64 + 8 * K4, K4);
	expect_xlate(&v.vm, 7 * K64, COMMITTED, h.addr + 7 * K64, K64);
	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, M2, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	env_fini(&v);
}

/*
 * The rule with segments: a zap between prepare and commit.  Outside all
 * segments (gaps included) a zapped mapping is never resurrected; inside
 * the segments' union the update wins, also for an entry that two
 * adjacent segments share.
 */
TEST(update_zap_between_prepare_and_commit)
{
	struct gvm_pt_extent l = { 10 * G1, M2 }, l2 = { 12 * G1, M2 };
	struct gvm_pt_extent h = { 11 * G1 + K64, M2 };
	struct gvm_pt_extent nb = { 13 * G1, K4 }, nb2 = { 13 * G1 + M2, K4 };
	struct gvm_pt_extent nb3 = { 14 * G1 + K4, M1 };
	struct gvm_pt_seg s[5] = {
		SMAP(2 * K4, 3 * K4, 0, &nb),		/* in leaf L */
		SUNMAP(M1, M1 + K4),			/* in leaf L */
		SMAP(M2 + K4, M2 + 2 * K4, 0, &nb2),	/* 4K table */
		SMAP(2 * M2, 2 * M2 + M1, 0, &nb3),	/* leaf L2, */
		SUNMAP(2 * M2 + M1, 3 * M2),		/* all of it */
	};
	struct gvm_pt_update upd;
	struct gvm_pt_tlb tlb;
	struct gvm_pt_xlate x;
	struct env v;
	uint64_t k;

	env_init(&v, 16ull << 20, 48);
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, M2, &l, 1, 0, NULL));
	ASSERT_OK(gvm__pt_bind(&v.vm, M2, M2, &h, 1, 0, NULL));
	ASSERT_OK(gvm__pt_bind(&v.vm, 2 * M2, M2, &l2, 1, 0, NULL));
	ASSERT_EQ(psize(&v.vm, 0), M2);
	ASSERT_EQ(psize(&v.vm, M2), K64);
	ASSERT_EQ(psize(&v.vm, 2 * M2), M2);

	ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 5, &upd));
	ASSERT_OK(gvm__pt_zap(&v.vm, M1 / 2, K4, &tlb));	/* all of L */
	ASSERT_TRUE(tlb.full || (tlb.start == 0 && tlb.size >= M2));
	ASSERT_OK(gvm__pt_zap(&v.vm, M2 + K4, K4, NULL));	/* in s[2] */
	ASSERT_OK(gvm__pt_zap(&v.vm, M2 + 32 * K4, K4, NULL));	/* gap */
	ASSERT_OK(gvm__pt_zap(&v.vm, 2 * M2 + 7 * K4, K4, NULL)); /* L2 */
	ASSERT_EQ(xl(&v.vm, 0, COMMITTED), ~0ull);
	ASSERT_EQ(xl(&v.vm, 2 * M2 + M1 + K4, COMMITTED), ~0ull);

	/* Staging shows what commit will produce. */
	ASSERT_EQ(xl(&v.vm, 0, STAGING), ~0ull);
	ASSERT_EQ(xl(&v.vm, 2 * K4, STAGING), nb.addr);
	ASSERT_EQ(xl(&v.vm, 3 * K4, STAGING), ~0ull);
	ASSERT_EQ(xl(&v.vm, M2 + K4, STAGING), nb2.addr);
	ASSERT_EQ(xl(&v.vm, M2 + 32 * K4, STAGING), ~0ull);
	ASSERT_EQ(xl(&v.vm, M2 + 33 * K4, STAGING), h.addr + 33 * K4);
	ASSERT_EQ(xl(&v.vm, 2 * M2 + 7 * K4, STAGING), nb3.addr + 7 * K4);
	commit_as_staged(&v, &upd, 0, 3 * M2, &tlb);

	/* Leaf L: the split copy stays zapped outside the segments. */
	for (k = 0; k < 512; k++) {
		uint64_t va = k * K4;
		int ret = gvm__pt_translate(&v.vm, va, COMMITTED, &x);

		if (va == 2 * K4) {
			ASSERT_OK(ret);
			ASSERT_EQ(x.addr, nb.addr);
		} else if (va == M1) {
			ASSERT_EQ(ret, -ENOENT);
			ASSERT_EQ(x.pte, 0);		/* unbound */
		} else {
			ASSERT_EQ(ret, -ENOENT);
			ASSERT_TRUE(gvm__ptf_is_zapped(x.pte));
		}
	}
	/* The 4K table: the update wins in s[2], the gap stays zapped. */
	ASSERT_EQ(xl(&v.vm, M2 + K4, COMMITTED), nb2.addr);
	ASSERT_EQ(xl(&v.vm, M2 + 32 * K4, COMMITTED), ~0ull);
	ASSERT_TRUE(gvm__ptf_is_zapped(raw(&v.vm, M2 + 32 * K4, COMMITTED)));
	expect_xlate(&v.vm, M2, COMMITTED, h.addr, K4);
	expect_xlate(&v.vm, M2 + 33 * K4, COMMITTED, h.addr + 33 * K4, K4);
	expect_xlate(&v.vm, M2 + 48 * K4, COMMITTED, h.addr + 48 * K4, K64);
	/* Leaf L2: owned by the union of s[3] and s[4]: the update wins. */
	for (k = 0; k < 256; k++)
		ASSERT_EQ(xl(&v.vm, 2 * M2 + k * K4, COMMITTED),
			  nb3.addr + k * K4);
	for (k = 256; k < 512; k++)
		ASSERT_EQ(raw(&v.vm, 2 * M2 + k * K4, COMMITTED), 0);
	ASSERT_TRUE(tlb.full || (tlb.start == 0 && tlb.size >= 3 * M2));

	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, 3 * M2, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	env_fini(&v);
}

/*
 * An owned entry rewritten with its old value (the same mapping bound
 * again) after a zap between prepare and commit: the update wins, so the
 * commit must write it although prepare left it unchanged.
 */
TEST(update_same_value_after_zap)
{
	struct gvm_pt_extent l = { 10 * G1, M2 }, p = { 11 * G1 + K4, K64 };
	struct gvm_pt_seg s[3] = { SNULL(0, M2), SMAP(M2, M2 + K64, 0, &p),
				   SMAP(2 * M2, 3 * M2, 0, &l) };
	struct gvm_pt_update upd;
	struct env v;

	env_init(&v, 16ull << 20, 48);
	ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 3, &upd));
	gvm__pt_update_commit(&upd, NULL, NULL);
	ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 3, &upd));
	ASSERT_OK(gvm__pt_zap(&v.vm, 0, 3 * M2, NULL));
	ASSERT_EQ(xl(&v.vm, K4, COMMITTED), ~0ull);
	ASSERT_EQ(xl(&v.vm, K4, STAGING), 0);
	ASSERT_EQ(xl(&v.vm, M2 + K4, STAGING), p.addr + K4);
	ASSERT_EQ(xl(&v.vm, 2 * M2 + K4, STAGING), l.addr + K4);
	commit_as_staged(&v, &upd, 0, 3 * M2, NULL);
	expect_xlate(&v.vm, K4, COMMITTED, 0, M2);
	expect_xlate(&v.vm, M2 + K4, COMMITTED, p.addr + K4, K4);
	expect_xlate(&v.vm, 2 * M2 + K4, COMMITTED, l.addr + K4, M2);
	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, 3 * M2, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	env_fini(&v);
}

TEST(update_invalid_segments)
{
	struct gvm_pt_extent x = { G1, K4 }, x2 = { G1, 2 * K4 };
	struct gvm_pt_extent bad = { G1 + 100, K4 }, zero = { G1, 0 };
	const struct gvm_pt_seg cases[][2] = {
		{ SUNMAP(2 * K4, 3 * K4), SUNMAP(0, K4) },	/* unsorted */
		{ SUNMAP(0, 2 * K4), SUNMAP(K4, 3 * K4) },	/* overlap */
		{ SUNMAP(0, K4), SUNMAP(100, K4) },		/* misaligned */
		{ SUNMAP(0, K4), SUNMAP(K4, 2 * K4 + 8) },
		{ SUNMAP(0, K4), SUNMAP(K4, K4) },		/* empty */
		{ SUNMAP(0, K4), SUNMAP(3 * K4, K4) },		/* va > end */
		{ SUNMAP(0, K4), SUNMAP(1ull << 48, (1ull << 48) + K4) },
		{ SUNMAP(0, K4), SUNMAP(K4, (1ull << 48) + K4) },
		{ SUNMAP(0, K4), { K4, 2 * K4, GVM_PT_UNBIND | GVM_PT_WRITE,
				   NULL, 0 } },
		{ SUNMAP(0, K4), { K4, 2 * K4, GVM_PT_UNBIND, &x, 1 } },
		{ SUNMAP(0, K4), { K4, 2 * K4, GVM_PT_NULL, &x, 1 } },
		{ SUNMAP(0, K4), { K4, 2 * K4, GVM_PT_NULL | GVM_PT_DEVMEM,
				   NULL, 0 } },
		{ SUNMAP(0, K4), { K4, 2 * K4, 0, &x, 0 } },	/* no backing */
		{ SUNMAP(0, K4), { K4, 2 * K4, 0, NULL, 1 } },
		{ SUNMAP(0, K4), SMAP(K4, 3 * K4, 0, &x) },	/* too short */
		{ SUNMAP(0, K4), SMAP(K4, 2 * K4, 0, &x2) },	/* too long */
		{ SUNMAP(0, K4), SMAP(K4, 2 * K4, 0, &bad) },
		{ SUNMAP(0, K4), SMAP(K4, 2 * K4, 0, &zero) },
		{ SUNMAP(0, K4), SMAP(K4, 2 * K4, 1u << 8, &x) },	/* flag */
		{ SMAP(0, K4, 0, &x), SUNMAP(0, K4) },		/* same range */
	};
	struct gvm_pt_extent h = { 3 * G1 + K4, M2 };
	struct gvm_pt_update upd;
	struct env v;
	uint64_t hash;
	size_t k;

	env_init(&v, 16ull << 20, 48);
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, M2, &h, 1, 0, NULL));
	hash = vm_hash(&v.vm);
	for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		if (gvm__pt_update_prepare(&v.vm, cases[k], 2, &upd) !=
		    -EINVAL)
			fprintf(stderr, "case %zu accepted\n", k);
		ASSERT_EQ(gvm__pt_update_prepare(&v.vm, cases[k], 2, &upd),
			  -EINVAL);
		/* The first segment alone is fine; the pair changed nothing. */
		ASSERT_TRUE(!v.vm.pending);
		ASSERT_EQ(v.vm.nr_tables, 4);
		ASSERT_TRUE(vm_hash(&v.vm) == hash);
	}
	ASSERT_EQ(gvm__pt_update_prepare(&v.vm, cases[0], 0, &upd), -EINVAL);
	ASSERT_EQ(gvm__pt_update_prepare(&v.vm, NULL, 1, &upd), -EINVAL);
	ASSERT_EQ(gvm__pt_bind_prepare(&v.vm, 0, K4, NULL, 0,
				       GVM_PT_UNBIND, &upd), -EINVAL);
	ASSERT_TRUE(!v.vm.pending && vm_hash(&v.vm) == hash);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, M2, NULL));
	env_fini(&v);
}

TEST(update_busy)
{
	struct gvm_pt_extent x = { G1, K4 };
	struct gvm_pt_seg s[2] = { SMAP(0, K4, 0, &x), SUNMAP(M2, 2 * M2) };
	struct gvm_pt_seg bad[1] = { SUNMAP(K4, K4) };
	struct gvm_pt_update upd, other;
	struct env v;

	env_init(&v, 16ull << 20, 48);
	ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 2, &upd));
	ASSERT_EQ(gvm__pt_update_prepare(&v.vm, s, 2, &other), -EBUSY);
	ASSERT_EQ(gvm__pt_bind_prepare(&v.vm, G1, K4, &x, 1, 0, &other),
		  -EBUSY);
	ASSERT_EQ(gvm__pt_unbind_prepare(&v.vm, G1, K4, &other), -EBUSY);
	ASSERT_EQ(gvm__pt_update_prepare(&v.vm, bad, 1, &other), -EINVAL);
	ASSERT_TRUE(v.vm.pending == &upd);
	ASSERT_EQ(xl(&v.vm, 0, STAGING), x.addr);
	gvm__pt_update_abort(&upd);
	ASSERT_EQ(v.vm.nr_tables, 1);
	ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 2, &other));
	gvm__pt_update_commit(&other, NULL, NULL);
	ASSERT_EQ(xl(&v.vm, 0, COMMITTED), x.addr);
	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, K4, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	env_fini(&v);
}

/*
 * Many segments (more than the walk keeps on its stack): every kind, gaps,
 * adjacent NULL segments with equal flags (merged: a 2M NULL leaf), against
 * the model; then one update unbinding it all.
 */
TEST(update_many_segments)
{
	enum { N = 96 };
	struct gvm_pt_seg s[N], un[N];
	struct gvm_pt_extent x[N];
	struct gvm_pt_update upd;
	struct model m = { 0 };
	uint64_t va = G1, k;
	size_t n = 0, i;
	struct env v;

	env_init(&v, 16ull << 20, 48);
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, 2 * G1, NULL, 0, GVM_PT_NULL |
			       GVM_PT_WRITE, NULL));
	m_bind(&m, 0, 2 * G1, NULL, 0, flags_attrs(GVM_PT_NULL |
						     GVM_PT_WRITE));
	/* Two halves of a 2M range, NULL with equal flags. */
	s[n++] = SNULL(4 * G1, 4 * G1 + M1);
	s[n++] = SNULL(4 * G1 + M1, 4 * G1 + M2);
	for (i = 0; n < N; i++) {
		uint64_t size = (1 + i % 7) * K4 + (i % 5 == 0 ? M2 : 0);

		va += (i % 3) * K4 * (1 + i % 4) + (i % 11 == 0 ? M2 : 0);
		x[n] = (struct gvm_pt_extent){ 20 * G1 + va, size };
		switch (i % 4) {
		case 0:
		case 1:
			s[n] = SMAP(va, va + size, GVM_PT_WRITE, &x[n]);
			break;
		case 2:
			s[n] = SUNMAP(va, va + size);
			break;
		default:
			s[n] = SNULL(va, va + size);
			break;
		}
		n++;
		va += size;
	}
	/* sort: the two NULL halves at 4G go last */
	{
		struct gvm_pt_seg t0 = s[0], t1 = s[1];

		memmove(s, s + 2, (N - 2) * sizeof(*s));
		s[N - 2] = t0;
		s[N - 1] = t1;
	}
	ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, N, &upd));
	m_apply(&m, s, N);
	for (k = G1 - M2; k < va + M2; k += K4)
		check_page_view(&v.vm, &m, k, STAGING);
	gvm__pt_update_commit(&upd, NULL, NULL);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	for (k = G1 - M2; k < va + M2; k += K4)
		check_page(&v.vm, &m, k);
	ASSERT_EQ(v.vm.nr_tables, m_tables(&m, v.vm.levels));
	expect_xlate(&v.vm, 4 * G1 + 5 * K4, COMMITTED, 0, M2);

	for (i = 0; i < N; i++)
		un[i] = SUNMAP(s[i].va, s[i].end);
	ASSERT_OK(gvm__pt_update_prepare(&v.vm, un, N, &upd));
	gvm__pt_update_commit(&upd, NULL, NULL);
	m_apply(&m, un, N);
	for (k = G1 - M2; k < va + M2; k += K4)
		check_page(&v.vm, &m, k);
	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, 8 * G1, NULL));
	ASSERT_EQ(v.vm.nr_tables, 1);
	free(m.s);
	env_fini(&v);
}

/*
 * A shared table-memory buddy: mem.lock (a leaf lock) is held around the
 * buddy calls only, so the engine may run under vm->lock and the notifier
 * lock (commit frees tables at once here).
 */
TEST(mem_lock)
{
	struct gvm_pt_extent x = { G1 + K4, 4 * M2 };
	struct gvm_pt_seg s[2] = { SMAP(0, 4 * M2, 0, &x),
				   SNULL(8 * M2, 9 * M2 + K4) };
	struct gvm_mutex lock, vm_lock, notifier;
	struct gvm_pt_free_list dead = { 0 };
	struct gvm_pt_update upd;
	struct env v;

	gvm__mutex_init(&lock, "pt.mem", GVM_RANK_LEAF);
	gvm__mutex_init(&vm_lock, "vm.lock", GVM_RANK_VM);
	gvm__mutex_init(&notifier, "vm.notifier_lock", GVM_RANK_NOTIFIER);
	env_init(&v, 16ull << 20, 48);
	v.vm.mem.lock = &lock;
	gvm__mutex_lock(&vm_lock);
	ASSERT_OK(gvm__pt_update_prepare(&v.vm, s, 2, &upd));
	gvm__mutex_lock(&notifier);
	gvm__pt_update_commit(&upd, NULL, NULL);
	gvm__mutex_unlock(&notifier);
	ASSERT_EQ(xl(&v.vm, M2 + K4, COMMITTED), x.addr + M2 + K4);
	ASSERT_OK(gvm__pt_unbind_prepare(&v.vm, 0, 16 * M2, &upd));
	gvm__mutex_lock(&notifier);
	gvm__pt_update_commit(&upd, NULL, &dead);
	gvm__mutex_unlock(&notifier);
	gvm__pt_free_deferred(&v.vm, &dead);
	gvm__mutex_unlock(&vm_lock);
	ASSERT_EQ(v.vm.nr_tables, 1);
	ASSERT_EQ(v.buddy.nr_allocated, 1);
	ASSERT_OK(pthread_mutex_trylock(&lock.m));	/* not left held */
	pthread_mutex_unlock(&lock.m);
#if GVM_DEBUG >= 1
	/* The engine does take it: holding it already is recursion. */
	x.len = K4;
	ASSERT_DEATH((gvm__mutex_lock(&lock),
		      gvm__pt_bind(&v.vm, 0, K4, &x, 1, 0, NULL)),
		     "recursive locking");
#endif
	env_fini(&v);
	gvm__mutex_fini(&notifier);
	gvm__mutex_fini(&vm_lock);
	gvm__mutex_fini(&lock);
}

/*
 * A zap *during* prepare (issue 10, defect 7): prepare copies the
 * committed entries of the level-0 table into its record while another
 * thread zaps one of them (the invalidation path stores under the notifier
 * lock only, which prepare does not hold).  The copy must read entries
 * atomically (a C11 data race otherwise: run under TSan, which sees no
 * happens-before here: the hand-off flags are relaxed), and the commit
 * must keep the zap outside the update's segments.
 */
static struct {
	struct gvm_pt_vm *vm;
	pthread_mutex_t lock;		/* the "notifier lock" */
	int go, done;			/* relaxed on purpose */
} zdp;

static void *zdp_zapper(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&zdp.go, __ATOMIC_RELAXED))
		gvm_cpu_relax();
	pthread_mutex_lock(&zdp.lock);
	ASSERT_OK(gvm__pt_zap(zdp.vm, 0, K4, NULL));
	pthread_mutex_unlock(&zdp.lock);
	__atomic_store_n(&zdp.done, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void zdp_hook(struct gvm_pt_vm *vm, uint64_t base, unsigned int level)
{
	if (vm != zdp.vm || level || base)
		return;
	__atomic_store_n(&zdp.go, 1, __ATOMIC_RELAXED);
	while (!__atomic_load_n(&zdp.done, __ATOMIC_RELAXED))
		gvm_cpu_relax();
}

TEST(update_zap_during_prepare)
{
	struct gvm_pt_extent a = { 10 * G1, K64 }, b = { 11 * G1, K4 };
	struct gvm_pt_seg s = SMAP(2 * K4, 3 * K4, 0, &b);
	struct gvm_pt_update upd;
	struct gvm_pt_tlb tlb;
	struct env v;
	pthread_t t;

	env_init(&v, 16ull << 20, 48);
	ASSERT_OK(gvm__pt_bind(&v.vm, 0, K64, &a, 1, 0, NULL));
	zdp.vm = &v.vm;
	zdp.go = zdp.done = 0;
	pthread_mutex_init(&zdp.lock, NULL);
	ASSERT_OK(pthread_create(&t, NULL, zdp_zapper, NULL));
	gvm__pt_prepare_hook = zdp_hook;
	ASSERT_OK(gvm__pt_update_prepare(&v.vm, &s, 1, &upd));
	gvm__pt_prepare_hook = NULL;
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_EQ(zdp.done, 1);
	pthread_mutex_lock(&zdp.lock);
	gvm__pt_update_commit(&upd, &tlb, NULL);
	pthread_mutex_unlock(&zdp.lock);
	/* the zapped entry stays zapped, the segment is written, the rest of
	   the 64K group lost its hint but kept its mapping */
	ASSERT_EQ(xl(&v.vm, 0, COMMITTED), ~0ull);
	ASSERT_TRUE(gvm__ptf_is_zapped(raw(&v.vm, 0, COMMITTED)));
	ASSERT_EQ(xl(&v.vm, 2 * K4, COMMITTED), b.addr);
	ASSERT_EQ(xl(&v.vm, K4, COMMITTED), a.addr + K4);
	ASSERT_EQ(xl(&v.vm, 15 * K4, COMMITTED), a.addr + 15 * K4);
	ASSERT_OK(gvm__pt_validate(&v.vm));
	ASSERT_OK(gvm__pt_unbind(&v.vm, 0, K64, NULL));
	pthread_mutex_destroy(&zdp.lock);
	env_fini(&v);
}
