// SPDX-License-Identifier: MIT
/*
 * GPU VA manager tests: every split case with its exact op list, request
 * validation, lookups, partial apply + unwind, stacked op lists, a
 * reference model (a page array) after every random request, and
 * allocation-failure injection during create.
 */
#include "vm/va.h"

#include "core/alloc.h"
#include "core/debug.h"
#include "harness.h"

#define PG GVM_PAGE_SIZE
#define BASE ((uint64_t)0x100000)	/* start of the test space */
#define SPACE_PAGES 512
/* Address of page @n of the test space. */
#define A(n) (BASE + (uint64_t)(n) * PG)

/* Fake buffer objects; never dereferenced. */
#define OBJ(n) ((void *)(uintptr_t)(0x1000 * (n)))

/* The VM layer's VMA, as it will embed gvm_va. */
struct tvma {
	struct gvm_va va;	/* must be first: the va layer allocates it */
	uint64_t id;		/* test's name for the mapping */
	uint64_t canary;	/* must stay zero: va layer zeroes it */
};
_Static_assert(offsetof(struct tvma, va) == 0, "T() casts a gvm_va to tvma");

static struct tvma *T(struct gvm_va *va)
{
	return (struct tvma *)va;
}

/* Kinds whose obj_offset advances with the address. */
static bool kind_is_offset(uint32_t flags)
{
	uint32_t kind = flags & GVM_VA_KIND_MASK;

	return kind == GVM_VA_KIND_BO || kind == GVM_VA_KIND_USERPTR;
}

static void release_free(struct gvm_va *va, void *arg)
{
	(void)arg;
	gvm__free(va);
}

static void space_init(struct gvm_va_space *s)
{
	ASSERT_OK(gvm__va_space_init(s, BASE, SPACE_PAGES * PG,
				     sizeof(struct tvma)));
	ASSERT_OK(gvm__va_validate(s));
}

static void space_fini(struct gvm_va_space *s)
{
	ASSERT_OK(gvm__va_validate(s));
	ASSERT_EQ(s->nr_lists, 0);
	gvm__va_space_fini(s, release_free, NULL);
}

/* Frees `old` of every applied op (the caller's after a commit). */
static void free_applied_old(struct gvm_va_ops *ops)
{
	for (size_t i = 0; i < ops->nr; i++)
		if (ops->op[i].state == GVM_VA_OP_APPLIED && ops->op[i].old)
			gvm__free(ops->op[i].old);
}

/* Create, apply all, commit. */
static void commit(struct gvm_va_ops *ops)
{
	gvm__va_ops_apply(ops);
	ASSERT_OK(gvm__va_validate(ops->space));
	free_applied_old(ops);
	gvm__va_ops_fini(ops);
}

static struct gvm_va *do_map(struct gvm_va_space *s, uint64_t pg,
			     uint64_t npg, void *obj, uint64_t off,
			     uint32_t flags, uint64_t id)
{
	struct gvm_va_ops ops;
	struct gvm_va *va;

	ASSERT_OK(gvm__va_map_ops_create(s, A(pg), npg * PG, obj, off, flags,
					 &ops));
	ASSERT_TRUE(ops.nr > 0);
	va = ops.op[ops.nr - 1].map;
	T(va)->id = id;
	commit(&ops);
	ASSERT_OK(gvm__va_validate(s));
	return va;
}

static struct gvm_va *bo_map(struct gvm_va_space *s, uint64_t pg,
			     uint64_t npg, void *obj, uint64_t off)
{
	return do_map(s, pg, npg, obj, off, GVM_VA_KIND_BO, 0);
}

static void expect_va(const struct gvm_va *va, uint64_t pg, uint64_t npg,
		      const void *obj, uint64_t off, uint32_t flags)
{
	ASSERT_TRUE(va != NULL);
	ASSERT_EQ(va->addr, A(pg));
	ASSERT_EQ(va->range, npg * PG);
	ASSERT_TRUE(va->obj == obj);
	ASSERT_EQ(va->obj_offset, off);
	ASSERT_EQ(va->flags, flags);
}

/* The mappings of @s in address order must be exactly @want (NULL-ended). */
static void expect_space(const struct gvm_va_space *s,
			 struct gvm_va *const *want)
{
	struct gvm_va_iter it;
	struct gvm_va *va;
	size_t n = 0;

	gvm_va_for_each_in_range(va, s, 0, UINT64_MAX, &it) {
		ASSERT_TRUE(want[n] != NULL);
		ASSERT_TRUE(va == want[n]);
		ASSERT_TRUE(va->inserted);
		n++;
	}
	ASSERT_TRUE(want[n] == NULL);
	ASSERT_EQ(gvm__va_count(s), n);
}

/* ---- the cases ---------------------------------------------------------- */

TEST(exact_replace)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *r;

	space_init(&s);
	a = bo_map(&s, 0, 4, OBJ(1), 0);
	ASSERT_OK(gvm__va_map_ops_create(&s, A(0), 4 * PG, OBJ(2), 8 * PG,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 2);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_UNMAP);
	ASSERT_TRUE(ops.op[0].old == a);
	ASSERT_TRUE(!ops.op[0].prev && !ops.op[0].next && !ops.op[0].map);
	ASSERT_EQ(ops.op[1].kind, GVM_VA_OP_MAP);
	ASSERT_TRUE(!ops.op[1].old);
	r = ops.op[1].map;
	expect_va(r, 0, 4, OBJ(2), 8 * PG, GVM_VA_KIND_BO);
	ASSERT_FALSE(r->inserted);
	ASSERT_EQ(T(r)->canary, 0);
	/* Creating changed nothing. */
	expect_space(&s, (struct gvm_va *[]){ a, NULL });
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ r, NULL });
	space_fini(&s);
}

TEST(front_overlap)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *r, *n;

	space_init(&s);
	a = bo_map(&s, 4, 4, OBJ(1), 0x10 * PG);
	ASSERT_OK(gvm__va_map_ops_create(&s, A(2), 4 * PG, OBJ(2), 0,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 2);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_REMAP);
	ASSERT_TRUE(ops.op[0].old == a);
	ASSERT_TRUE(ops.op[0].prev == NULL);
	n = ops.op[0].next;
	expect_va(n, 6, 2, OBJ(1), 0x12 * PG, GVM_VA_KIND_BO);
	ASSERT_EQ(ops.op[1].kind, GVM_VA_OP_MAP);
	r = ops.op[1].map;
	expect_va(r, 2, 4, OBJ(2), 0, GVM_VA_KIND_BO);
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ r, n, NULL });
	space_fini(&s);
}

TEST(back_overlap)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *r, *p;

	space_init(&s);
	a = bo_map(&s, 0, 4, OBJ(1), 0x10 * PG);
	ASSERT_OK(gvm__va_map_ops_create(&s, A(2), 4 * PG, OBJ(2), 0,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 2);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_REMAP);
	ASSERT_TRUE(ops.op[0].old == a);
	ASSERT_TRUE(ops.op[0].next == NULL);
	p = ops.op[0].prev;
	expect_va(p, 0, 2, OBJ(1), 0x10 * PG, GVM_VA_KIND_BO);
	ASSERT_EQ(ops.op[1].kind, GVM_VA_OP_MAP);
	r = ops.op[1].map;
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ p, r, NULL });
	space_fini(&s);
}

TEST(middle)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *r, *p, *n;

	space_init(&s);
	a = bo_map(&s, 0, 8, OBJ(1), 0x10 * PG);
	ASSERT_OK(gvm__va_map_ops_create(&s, A(3), 2 * PG, OBJ(2), 0,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 2);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_REMAP);
	ASSERT_TRUE(ops.op[0].old == a);
	p = ops.op[0].prev;
	n = ops.op[0].next;
	expect_va(p, 0, 3, OBJ(1), 0x10 * PG, GVM_VA_KIND_BO);
	expect_va(n, 5, 3, OBJ(1), 0x15 * PG, GVM_VA_KIND_BO);
	ASSERT_EQ(ops.op[1].kind, GVM_VA_OP_MAP);
	r = ops.op[1].map;
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ p, r, n, NULL });
	space_fini(&s);
}

TEST(spanning)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *b, *c, *r, *p, *n;

	space_init(&s);
	/* |AAA|BB|-|CCC| and map [1, 8) */
	a = bo_map(&s, 0, 3, OBJ(1), 0);
	b = bo_map(&s, 3, 2, OBJ(2), 0);
	c = bo_map(&s, 6, 3, OBJ(3), 0x100 * PG);
	ASSERT_OK(gvm__va_map_ops_create(&s, A(1), 7 * PG, OBJ(4), 0,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 4);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_REMAP);
	ASSERT_TRUE(ops.op[0].old == a);
	p = ops.op[0].prev;
	ASSERT_TRUE(ops.op[0].next == NULL);
	expect_va(p, 0, 1, OBJ(1), 0, GVM_VA_KIND_BO);
	ASSERT_EQ(ops.op[1].kind, GVM_VA_OP_UNMAP);
	ASSERT_TRUE(ops.op[1].old == b);
	ASSERT_EQ(ops.op[2].kind, GVM_VA_OP_REMAP);
	ASSERT_TRUE(ops.op[2].old == c);
	ASSERT_TRUE(ops.op[2].prev == NULL);
	n = ops.op[2].next;
	expect_va(n, 8, 1, OBJ(3), 0x102 * PG, GVM_VA_KIND_BO);
	ASSERT_EQ(ops.op[3].kind, GVM_VA_OP_MAP);
	r = ops.op[3].map;
	expect_va(r, 1, 7, OBJ(4), 0, GVM_VA_KIND_BO);
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ p, r, n, NULL });
	space_fini(&s);
}

TEST(spanning_exact_boundaries)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *b, *c, *d, *r;

	space_init(&s);
	a = bo_map(&s, 0, 2, OBJ(1), 0);
	b = bo_map(&s, 2, 2, OBJ(2), 0);
	c = bo_map(&s, 5, 2, OBJ(3), 0);
	d = bo_map(&s, 7, 2, OBJ(4), 0);
	/* Exactly [B.start, C.end): two UNMAPs, A and D untouched. */
	ASSERT_OK(gvm__va_map_ops_create(&s, A(2), 5 * PG, OBJ(5), 0,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 3);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_UNMAP);
	ASSERT_TRUE(ops.op[0].old == b);
	ASSERT_EQ(ops.op[1].kind, GVM_VA_OP_UNMAP);
	ASSERT_TRUE(ops.op[1].old == c);
	ASSERT_EQ(ops.op[2].kind, GVM_VA_OP_MAP);
	r = ops.op[2].map;
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ a, r, d, NULL });
	space_fini(&s);
}

TEST(adjacent)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *r1, *r2;

	space_init(&s);
	a = bo_map(&s, 3, 3, OBJ(1), 0);
	/* Touching A's end, then its start: only a MAP each time. */
	ASSERT_OK(gvm__va_map_ops_create(&s, A(6), 3 * PG, OBJ(1), 3 * PG,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 1);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_MAP);
	r1 = ops.op[0].map;
	commit(&ops);
	ASSERT_OK(gvm__va_map_ops_create(&s, A(0), 3 * PG, OBJ(2), 0,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 1);
	r2 = ops.op[0].map;
	commit(&ops);
	/* No merging, even with the same BO and contiguous offsets. */
	expect_space(&s, (struct gvm_va *[]){ r2, a, r1, NULL });
	/* Unmapping next to a mapping: an empty list. */
	ASSERT_OK(gvm__va_unmap_ops_create(&s, A(9), 4 * PG, &ops));
	ASSERT_EQ(ops.nr, 0);
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ r2, a, r1, NULL });
	space_fini(&s);
}

TEST(hole)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *b, *r;

	space_init(&s);
	a = bo_map(&s, 0, 2, OBJ(1), 0);
	b = bo_map(&s, 6, 2, OBJ(2), 0);
	ASSERT_OK(gvm__va_map_ops_create(&s, A(2), 4 * PG, OBJ(3), 0,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 1);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_MAP);
	r = ops.op[0].map;
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ a, r, b, NULL });
	/* Into an empty space. */
	ASSERT_OK(gvm__va_map_ops_create(&s, A(100), PG, OBJ(3), 0,
					 GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 1);
	gvm__va_ops_fini(&ops);		/* never applied: freed */
	expect_space(&s, (struct gvm_va *[]){ a, r, b, NULL });
	space_fini(&s);
}

TEST(unmap_cases)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *b, *c, *p, *n;

	space_init(&s);
	a = bo_map(&s, 0, 8, OBJ(1), 0);
	/* Middle: one REMAP with both pieces, no MAP. */
	ASSERT_OK(gvm__va_unmap_ops_create(&s, A(2), 2 * PG, &ops));
	ASSERT_EQ(ops.nr, 1);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_REMAP);
	ASSERT_TRUE(ops.op[0].old == a);
	p = ops.op[0].prev;
	n = ops.op[0].next;
	expect_va(p, 0, 2, OBJ(1), 0, GVM_VA_KIND_BO);
	expect_va(n, 4, 4, OBJ(1), 4 * PG, GVM_VA_KIND_BO);
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ p, n, NULL });
	ASSERT_TRUE(gvm__va_find(&s, A(2)) == NULL);

	/* Spanning: back of p, a hole, front of n. */
	ASSERT_OK(gvm__va_unmap_ops_create(&s, A(1), 4 * PG, &ops));
	ASSERT_EQ(ops.nr, 2);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_REMAP);
	ASSERT_TRUE(ops.op[0].old == p && !ops.op[0].next);
	b = ops.op[0].prev;
	expect_va(b, 0, 1, OBJ(1), 0, GVM_VA_KIND_BO);
	ASSERT_EQ(ops.op[1].kind, GVM_VA_OP_REMAP);
	ASSERT_TRUE(ops.op[1].old == n && !ops.op[1].prev);
	c = ops.op[1].next;
	expect_va(c, 5, 3, OBJ(1), 5 * PG, GVM_VA_KIND_BO);
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ b, c, NULL });

	/* Exact and over everything: UNMAPs only. */
	ASSERT_OK(gvm__va_unmap_ops_create(&s, BASE, SPACE_PAGES * PG, &ops));
	ASSERT_EQ(ops.nr, 2);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_UNMAP);
	ASSERT_TRUE(ops.op[0].old == b);
	ASSERT_EQ(ops.op[1].kind, GVM_VA_OP_UNMAP);
	ASSERT_TRUE(ops.op[1].old == c);
	commit(&ops);
	expect_space(&s, (struct gvm_va *[]){ NULL });
	space_fini(&s);
}

TEST(split_inherits_kind_and_flags)
{
	const uint32_t up = GVM_VA_KIND_USERPTR | GVM_VA_READONLY |
			    GVM_VA_PAT(5);
	const uint32_t nul = GVM_VA_KIND_NULL | GVM_VA_PAT(GVM_PAT_MAX);
	const uint32_t mir = GVM_VA_KIND_MIRROR;
	struct gvm_va_space s;
	struct gvm_va_ops ops;

	space_init(&s);
	do_map(&s, 0, 8, NULL, 0x7f0000000000, up, 1);
	do_map(&s, 8, 8, NULL, 0, nul, 2);
	do_map(&s, 16, 8, NULL, 0, mir, 3);
	for (int i = 0; i < 3; i++) {
		struct gvm_va *old;
		uint64_t pg = 8 * (uint64_t)i;

		ASSERT_OK(gvm__va_unmap_ops_create(&s, A(pg + 2), 3 * PG,
						   &ops));
		ASSERT_EQ(ops.nr, 1);
		ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_REMAP);
		old = ops.op[0].old;
		ASSERT_EQ(T(old)->id, (uint64_t)i + 1);
		/* The new pieces are zeroed beyond gvm_va. */
		ASSERT_EQ(T(ops.op[0].prev)->id, 0);
		ASSERT_EQ(T(ops.op[0].next)->id, 0);
		expect_va(ops.op[0].prev, pg, 2, NULL, old->obj_offset,
			  old->flags);
		expect_va(ops.op[0].next, pg + 5, 3, NULL,
			  i == 0 ? old->obj_offset + 5 * PG : 0, old->flags);
		commit(&ops);
	}
	ASSERT_EQ(gvm__va_count(&s), 6);
	space_fini(&s);
}

TEST(bad_requests)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a;
	const uint64_t end = BASE + SPACE_PAGES * PG;

	ASSERT_EQ(gvm__va_space_init(&s, 0, 0, sizeof(struct gvm_va)),
		  -EINVAL);
	ASSERT_EQ(gvm__va_space_init(&s, 1, PG, sizeof(struct gvm_va)),
		  -EINVAL);
	ASSERT_EQ(gvm__va_space_init(&s, 0, PG + 1, sizeof(struct gvm_va)),
		  -EINVAL);
	ASSERT_EQ(gvm__va_space_init(&s, UINT64_MAX - PG + 1, 2 * PG,
				     sizeof(struct gvm_va)), -EINVAL);
	ASSERT_EQ(gvm__va_space_init(&s, 0, PG, sizeof(struct gvm_va) - 1),
		  -EINVAL);

	space_init(&s);
	a = bo_map(&s, 0, 4, OBJ(1), 0);
#define BAD_MAP(addr, range, obj, off, flags)                               \
	do {                                                                \
		ops.nr = 99;                                                \
		ASSERT_EQ(gvm__va_map_ops_create(&s, addr, range, obj, off, \
						 flags, &ops), -EINVAL);    \
		ASSERT_TRUE(ops.space == NULL && ops.nr == 0);              \
		gvm__va_ops_fini(&ops);                                     \
	} while (0)
	BAD_MAP(A(0), 0, OBJ(1), 0, GVM_VA_KIND_BO);		/* range 0 */
	BAD_MAP(A(0) + 1, PG, OBJ(1), 0, GVM_VA_KIND_BO);	/* addr */
	BAD_MAP(A(0), PG - 1, OBJ(1), 0, GVM_VA_KIND_BO);	/* range */
	BAD_MAP(A(0), PG + 512, OBJ(1), 0, GVM_VA_KIND_BO);
	BAD_MAP(BASE - PG, PG, OBJ(1), 0, GVM_VA_KIND_BO);	/* below */
	BAD_MAP(BASE - PG, 2 * PG, OBJ(1), 0, GVM_VA_KIND_BO);	/* straddles */
	BAD_MAP(end, PG, OBJ(1), 0, GVM_VA_KIND_BO);		/* above */
	BAD_MAP(end - PG, 2 * PG, OBJ(1), 0, GVM_VA_KIND_BO);
	BAD_MAP(A(1), UINT64_MAX - PG + 1, OBJ(1), 0, GVM_VA_KIND_BO);
	BAD_MAP(A(0), PG, OBJ(1), 0, 1u << 4);			/* flags */
	BAD_MAP(A(0), PG, OBJ(1), 0, 1u << 31);
	BAD_MAP(A(0), PG, OBJ(1), 0, GVM_VA_KIND_NULL);		/* NULL+obj */
	BAD_MAP(A(0), PG, NULL, 0, GVM_VA_KIND_BO);		/* BO, no obj */
	BAD_MAP(A(0), PG, OBJ(1), 0, GVM_VA_KIND_USERPTR);
	BAD_MAP(A(0), PG, OBJ(1), 0, GVM_VA_KIND_MIRROR);
	BAD_MAP(A(0), PG, OBJ(1), 100, GVM_VA_KIND_BO);		/* offset */
	BAD_MAP(A(0), PG, NULL, 0x1001, GVM_VA_KIND_USERPTR);
	BAD_MAP(A(0), PG, NULL, PG, GVM_VA_KIND_NULL);
	BAD_MAP(A(0), PG, NULL, PG, GVM_VA_KIND_MIRROR);
	BAD_MAP(A(0), 2 * PG, NULL, UINT64_MAX - PG + 1,	/* wraps */
		GVM_VA_KIND_USERPTR);
#undef BAD_MAP
	ASSERT_EQ(gvm__va_unmap_ops_create(&s, A(0), 0, &ops), -EINVAL);
	ASSERT_EQ(gvm__va_unmap_ops_create(&s, A(0) + 8, PG, &ops), -EINVAL);
	ASSERT_EQ(gvm__va_unmap_ops_create(&s, A(0), 8, &ops), -EINVAL);
	ASSERT_EQ(gvm__va_unmap_ops_create(&s, end, PG, &ops), -EINVAL);
	ASSERT_EQ(gvm__va_unmap_ops_create(&s, 0, UINT64_MAX - PG + 1, &ops),
		  -EINVAL);
	ASSERT_TRUE(ops.space == NULL);

	/* Edge values that are valid. */
	ASSERT_OK(gvm__va_map_ops_create(&s, end - PG, PG, NULL,
					 UINT64_MAX - PG + 1,
					 GVM_VA_KIND_USERPTR, &ops));
	gvm__va_ops_fini(&ops);
	expect_space(&s, (struct gvm_va *[]){ a, NULL });
	ASSERT_EQ(s.nr_lists, 0);
	ASSERT_FALSE(s.tree.reserved);
	space_fini(&s);
}

TEST(lookups)
{
	struct gvm_va_space s;
	struct gvm_va_iter it;
	struct gvm_va *a, *b, *va;

	space_init(&s);
	ASSERT_TRUE(gvm__va_find(&s, A(0)) == NULL);
	ASSERT_TRUE(gvm__va_first(&s, 0, UINT64_MAX, &it) == NULL);
	a = bo_map(&s, 2, 2, OBJ(1), 0);
	b = bo_map(&s, 10, 1, OBJ(2), 0);
	ASSERT_EQ(gvm__va_count(&s), 2);
	ASSERT_TRUE(gvm__va_find(&s, A(1) + PG - 1) == NULL);
	ASSERT_TRUE(gvm__va_find(&s, A(2)) == a);
	ASSERT_TRUE(gvm__va_find(&s, A(4) - 1) == a);
	ASSERT_TRUE(gvm__va_find(&s, A(4)) == NULL);
	ASSERT_TRUE(gvm__va_find(&s, A(10) + 5) == b);
	ASSERT_TRUE(gvm__va_find(&s, A(11)) == NULL);

	ASSERT_TRUE(gvm__va_first(&s, A(3), A(10) - A(3), &it) == a);
	ASSERT_TRUE(gvm__va_next(&it) == NULL);
	ASSERT_TRUE(gvm__va_first(&s, A(3), A(10) - A(3) + 1, &it) == a);
	ASSERT_TRUE(gvm__va_next(&it) == b);
	ASSERT_TRUE(gvm__va_next(&it) == NULL);
	ASSERT_TRUE(gvm__va_first(&s, A(4), A(10) - A(4), &it) == NULL);
	ASSERT_TRUE(gvm__va_first(&s, A(2), 0, &it) == NULL);
	/* A range that wraps is cut at the top. */
	ASSERT_TRUE(gvm__va_first(&s, A(5), UINT64_MAX, &it) == b);
	{
		size_t n = 0;

		gvm_va_for_each_in_range(va, &s, 0, UINT64_MAX, &it)
			n++;
		ASSERT_EQ(n, 2);
	}
	space_fini(&s);
}

TEST(top_of_address_space)
{
	const uint64_t start = UINT64_MAX - (64 * PG) + 1;
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct gvm_va *a, *r;

	ASSERT_OK(gvm__va_space_init(&s, start, 64 * PG, sizeof(struct tvma)));
	ASSERT_OK(gvm__va_map_ops_create(&s, start, 64 * PG, OBJ(1), 0,
					 GVM_VA_KIND_BO, &ops));
	a = ops.op[0].map;
	commit(&ops);
	ASSERT_TRUE(gvm__va_find(&s, UINT64_MAX) == a);
	ASSERT_OK(gvm__va_map_ops_create(&s, UINT64_MAX - PG + 1, PG, OBJ(2),
					 0, GVM_VA_KIND_BO, &ops));
	ASSERT_EQ(ops.nr, 2);
	ASSERT_EQ(ops.op[0].kind, GVM_VA_OP_REMAP);
	ASSERT_TRUE(ops.op[0].next == NULL);
	ASSERT_EQ(ops.op[0].prev->range, 63 * PG);
	r = ops.op[1].map;
	commit(&ops);
	ASSERT_TRUE(gvm__va_find(&s, UINT64_MAX) == r);
	ASSERT_EQ(gvm__va_map_ops_create(&s, UINT64_MAX - PG + 1, 2 * PG,
					 OBJ(2), 0, GVM_VA_KIND_BO, &ops),
		  -EINVAL);
	ASSERT_OK(gvm__va_validate(&s));
	gvm__va_space_fini(&s, release_free, NULL);
}

TEST(validate_catches_overlap)
{
	struct gvm_va_space s;
	struct tvma *x = calloc(1, sizeof(*x));

	space_init(&s);
	bo_map(&s, 0, 4, OBJ(1), 0);
	ASSERT_TRUE(x);
	x->va = (struct gvm_va){ .addr = A(3), .range = PG, .obj = OBJ(2),
				 .flags = GVM_VA_KIND_BO, .inserted = true };
	/* Behind the va layer's back. */
	ASSERT_OK(gvm__itree_insert(&s.tree, A(3), A(4) - 1, x));
	ASSERT_EQ(gvm__va_validate(&s), -EUCLEAN);
	ASSERT_OK(gvm__itree_remove(&s.tree, A(3), x));
	ASSERT_OK(gvm__va_validate(&s));
	free(x);
	space_fini(&s);
}

TEST(protocol_misuse_asserts)
{
#if GVM_DEBUG >= 1
	struct gvm_va_space s;
	struct gvm_va_ops ops;

	space_init(&s);
	bo_map(&s, 0, 4, OBJ(1), 0);
	ASSERT_OK(gvm__va_unmap_ops_create(&s, A(1), PG, &ops));
	/* Unwinding an op that was never applied. */
	ASSERT_DEATH(gvm__va_op_unapply(&s, &ops.op[0]), "assertion failed");
	gvm__va_op_apply(&s, &ops.op[0]);
	/* Applying twice. */
	ASSERT_DEATH(gvm__va_op_apply(&s, &ops.op[0]), "assertion failed");
	gvm__va_op_unapply(&s, &ops.op[0]);
	/* Applying again after the unwind. */
	ASSERT_DEATH(gvm__va_op_apply(&s, &ops.op[0]), "assertion failed");
	gvm__va_ops_fini(&ops);
	space_fini(&s);
#endif
}

/* ---- unwind ------------------------------------------------------------- */

struct snap {
	struct gvm_va *va;
	struct gvm_va copy;
};

static struct snap *snapshot(const struct gvm_va_space *s, size_t *nr)
{
	struct snap *v = malloc((gvm__va_count(s) + 1) * sizeof(*v));
	struct gvm_va_iter it;
	struct gvm_va *va;
	size_t n = 0;

	ASSERT_TRUE(v);
	gvm_va_for_each_in_range(va, s, 0, UINT64_MAX, &it)
		v[n++] = (struct snap){ va, *va };
	*nr = n;
	return v;
}

static void expect_snapshot(const struct gvm_va_space *s,
			    const struct snap *v, size_t nr)
{
	struct gvm_va_iter it;
	struct gvm_va *va;
	size_t n = 0;

	ASSERT_OK(gvm__va_validate(s));
	gvm_va_for_each_in_range(va, s, 0, UINT64_MAX, &it) {
		ASSERT_LT(n, nr);
		ASSERT_TRUE(va == v[n].va);
		ASSERT_EQ(va->addr, v[n].copy.addr);
		ASSERT_EQ(va->range, v[n].copy.range);
		ASSERT_TRUE(va->obj == v[n].copy.obj);
		ASSERT_EQ(va->obj_offset, v[n].copy.obj_offset);
		ASSERT_EQ(va->flags, v[n].copy.flags);
		ASSERT_TRUE(va->inserted);
		n++;
	}
	ASSERT_EQ(n, nr);
	ASSERT_EQ(gvm__va_count(s), nr);
}

TEST(unwind_partial)
{
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	struct snap *v;
	size_t nr;

	space_init(&s);
	/* |AAA|BB|-|CCC|DD| ; the request covers A's tail .. C's head. */
	bo_map(&s, 0, 3, OBJ(1), 0);
	bo_map(&s, 3, 2, OBJ(2), 0);
	bo_map(&s, 6, 3, OBJ(3), 0);
	bo_map(&s, 9, 2, OBJ(4), 0);
	v = snapshot(&s, &nr);
	for (int unmap = 0; unmap < 2; unmap++) {
		for (size_t k = 0;; k++) {
			if (unmap)
				ASSERT_OK(gvm__va_unmap_ops_create(
					&s, A(1), 9 * PG, &ops));
			else
				ASSERT_OK(gvm__va_map_ops_create(
					&s, A(1), 9 * PG, OBJ(9), 0,
					GVM_VA_KIND_BO, &ops));
			ASSERT_EQ(ops.nr, 5u - (size_t)unmap);
			if (k > ops.nr) {
				gvm__va_ops_fini(&ops);
				break;
			}
			for (size_t i = 0; i < k; i++) {
				gvm__va_op_apply(&s, &ops.op[i]);
				ASSERT_OK(gvm__va_validate(&s));
			}
			for (size_t i = k; i-- > 0;) {
				gvm__va_op_unapply(&s, &ops.op[i]);
				ASSERT_OK(gvm__va_validate(&s));
			}
			expect_snapshot(&s, v, nr);
			gvm__va_ops_fini(&ops);
			expect_snapshot(&s, v, nr);
			ASSERT_FALSE(s.tree.reserved);
		}
	}
	free(v);
	space_fini(&s);
}

TEST(stacked_lists)
{
	struct gvm_va_space s;
	struct gvm_va_ops l1, l2, l3;
	struct gvm_va *m1;
	struct snap *v;
	size_t nr;

	space_init(&s);
	bo_map(&s, 0, 8, OBJ(1), 0);
	bo_map(&s, 8, 8, OBJ(2), 0);
	v = snapshot(&s, &nr);
	for (int round = 0; round < 2; round++) {
		/* A bind array: each list sees the previous one applied. */
		ASSERT_OK(gvm__va_map_ops_create(&s, A(4), 8 * PG, OBJ(3), 0,
						 GVM_VA_KIND_BO, &l1));
		gvm__va_ops_apply(&l1);
		m1 = l1.op[l1.nr - 1].map;
		ASSERT_OK(gvm__va_map_ops_create(&s, A(6), 2 * PG, NULL, 0,
						 GVM_VA_KIND_NULL, &l2));
		ASSERT_EQ(l2.nr, 2);
		ASSERT_TRUE(l2.op[0].old == m1);	/* l1's new mapping */
		gvm__va_ops_apply(&l2);
		ASSERT_OK(gvm__va_unmap_ops_create(&s, A(0), 16 * PG, &l3));
		ASSERT_EQ(l3.nr, 5);
		gvm__va_op_apply(&s, &l3.op[0]);
		gvm__va_op_apply(&s, &l3.op[1]);
		ASSERT_EQ(s.nr_lists, 3);
		ASSERT_OK(gvm__va_validate(&s));
		if (round == 0) {
			/* Failure: unwind everything in reverse. */
			gvm__va_ops_unapply(&l3);
			gvm__va_ops_unapply(&l2);
			gvm__va_ops_unapply(&l1);
			expect_snapshot(&s, v, nr);
			gvm__va_ops_fini(&l3);
			gvm__va_ops_fini(&l2);
			gvm__va_ops_fini(&l1);
			expect_snapshot(&s, v, nr);
		} else {
			/* Commit (l3 half applied: its rest is dropped). */
			free_applied_old(&l3);
			free_applied_old(&l2);
			free_applied_old(&l1);
			gvm__va_ops_fini(&l1);
			gvm__va_ops_fini(&l3);
			ASSERT_EQ(s.nr_lists, 1);
			gvm__va_ops_fini(&l2);
			ASSERT_OK(gvm__va_validate(&s));
			ASSERT_TRUE(gvm__va_find(&s, A(0)) == NULL);
			ASSERT_TRUE(gvm__va_find(&s, A(6) - 1) == NULL);
			ASSERT_EQ(gvm__va_find(&s, A(6))->flags,
				  GVM_VA_KIND_NULL);
			ASSERT_EQ(gvm__va_find(&s, A(8))->obj_offset, 4 * PG);
			ASSERT_EQ(gvm__va_find(&s, A(12))->obj_offset, 4 * PG);
			ASSERT_EQ(gvm__va_count(&s), 3);
		}
		ASSERT_EQ(s.nr_lists, 0);
		ASSERT_FALSE(s.tree.reserved);
	}
	free(v);
	space_fini(&s);
}

/* ---- reference model ------------------------------------------------------ */

/*
 * The model: what each page of the space translates to.  id 0 = a hole.
 * Mappings are never merged and pieces of one mapping are always separated
 * (by a hole or another mapping), so a mapping of the space is exactly a
 * maximal run of pages with the same id.
 */
struct mpage {
	uint64_t id;
	void *obj;
	uint64_t off;		/* obj_offset of this page */
	uint32_t flags;
};

#define MPAGES 256
#define MBASE ((uint64_t)0x40000000)

static void model_check(const struct gvm_va_space *s, const struct mpage *m)
{
	for (uint64_t p = 0; p < MPAGES;) {
		struct gvm_va *va = gvm__va_find(s, MBASE + p * PG);
		uint64_t q;

		if (!m[p].id) {
			ASSERT_TRUE(va == NULL);
			p++;
			continue;
		}
		ASSERT_TRUE(va != NULL);
		ASSERT_EQ(va->addr, MBASE + p * PG);
		for (q = p; q < MPAGES && m[q].id == m[p].id; q++) {
			uint64_t d = (q - p) * PG;

			ASSERT_EQ(T(va)->id, m[q].id);
			ASSERT_TRUE(va->obj == m[q].obj);
			ASSERT_EQ(va->flags, m[q].flags);
			ASSERT_EQ(va->obj_offset +
				  (kind_is_offset(va->flags) ? d : 0),
				  m[q].off);
		}
		ASSERT_EQ(va->range, (q - p) * PG);
		p = q;
	}
	ASSERT_OK(gvm__va_validate(s));
}

/* ---- allocation failure helpers ------------------------------------------ */

/* Arms the N-th gvm__ allocation from now to fail (0: off). */
static void arm(long nth)
{
	gvm__inject_arm(GVM_INJECT_ALLOC, nth, 0);
}

static bool fired(void)
{
	bool f = gvm__inject_pending(GVM_INJECT_ALLOC) == 0;

	arm(0);
	return f;
}

/* N more itree node allocations succeed, then all fail (-1: off). */
static void arm_itree(long n)
{
	__atomic_store_n(&gvm__itree_fail_alloc_after, n, __ATOMIC_RELAXED);
}

/* A random page index, often on a mapping boundary. */
static uint64_t pick_page(struct gvm_rng *r, const struct mpage *m)
{
	uint64_t p = gvm_rng_below(r, MPAGES);

	if (gvm_rng_below(r, 2) && m[p].id) {
		/* Start or end of the run holding p. */
		uint64_t q = p;

		if (gvm_rng_below(r, 2)) {
			while (q > 0 && m[q - 1].id == m[p].id)
				q--;
		} else {
			while (q < MPAGES && m[q].id == m[p].id)
				q++;
		}
		return q;
	}
	return p;
}

/* Checks @ops against the model before it is applied. */
static void model_check_ops(const struct gvm_va_ops *ops,
			    const struct mpage *m, uint64_t p0, uint64_t p1,
			    bool map)
{
	size_t n = 0;

	for (uint64_t p = p0; p < p1; p++) {
		const struct gvm_va_op *op;
		bool partial;

		if (!m[p].id || (p > p0 && m[p - 1].id == m[p].id))
			continue;
		/* A mapping starts here, or the first one overlapping. */
		ASSERT_LT(n, ops->nr);
		op = &ops->op[n++];
		ASSERT_EQ(T(op->old)->id, m[p].id);
		{
			uint64_t q = p;

			while (q < MPAGES && m[q].id == m[p].id)
				q++;	/* q: end of this run */
			partial = (p == p0 && p > 0 && m[p - 1].id == m[p].id) ||
				  q > p1;
		}
		ASSERT_EQ(op->kind, partial ? GVM_VA_OP_REMAP : GVM_VA_OP_UNMAP);
		ASSERT_TRUE(!op->map);
	}
	ASSERT_EQ(ops->nr, n + map);
	if (map) {
		ASSERT_EQ(ops->op[n].kind, GVM_VA_OP_MAP);
		ASSERT_TRUE(ops->op[n].map && !ops->op[n].old);
	}
}

/* Gives prev/next pieces the id of the mapping they come from. */
static void name_pieces(struct gvm_va_ops *ops)
{
	for (size_t i = 0; i < ops->nr; i++) {
		struct gvm_va_op *op = &ops->op[i];

		if (op->prev)
			T(op->prev)->id = T(op->old)->id;
		if (op->next)
			T(op->next)->id = T(op->old)->id;
	}
}

TEST(reference_model)
{
	struct gvm_rng r = { gvm_test_seed() };
	static struct mpage model[MPAGES], tent[MPAGES];
	struct gvm_va_space s;
	uint64_t next_id = 1, binds = gvm_test_scale(40000);
	size_t nr_unwound = 0, nr_ops = 0, nr_einval = 0, nr_enomem = 0;
	uint64_t sum_count = 0;

	ASSERT_OK(gvm__va_space_init(&s, MBASE, MPAGES * PG,
				     sizeof(struct tvma)));
	for (uint64_t b = 0; b < binds; b++) {
		struct gvm_va_ops lists[3];
		size_t nl = 0, want = 1 + gvm_rng_below(&r, 3);
		bool unwind = gvm_rng_below(&r, 4) == 0;

		memcpy(tent, model, sizeof(model));
		while (nl < want) {
			struct gvm_va_ops *ops = &lists[nl];
			uint64_t p0 = pick_page(&r, tent), p1, npg;
			bool map = gvm_rng_below(&r, 4) < 3;
			int inject = (int)gvm_rng_below(&r, 16);
			uint64_t sz = gvm_rng_below(&r, 20);
			uint32_t flags = 0;
			void *obj = NULL;
			uint64_t off = 0;
			int err;

			if (sz < 12)
				npg = 1 + gvm_rng_below(&r, 4);
			else if (sz < 19)
				npg = 1 + gvm_rng_below(&r, 32);
			else
				npg = 1 + gvm_rng_below(&r, MPAGES);
			if (gvm_rng_below(&r, 4) == 0) {
				/* End exactly on a boundary. */
				p1 = pick_page(&r, tent);
				if (p1 > p0)
					npg = p1 - p0;
			}
			if (p0 + npg > MPAGES && gvm_rng_below(&r, 8))
				npg = MPAGES - p0;	/* mostly inside */
			if (npg == 0)
				npg = 1;
			p1 = p0 + npg;
			if (inject == 0)
				arm(1 + (long)gvm_rng_below(&r, 4));
			else if (inject == 1)
				arm_itree((long)gvm_rng_below(&r, 4));
			if (map) {
				flags = (uint32_t)gvm_rng_below(&r, 4);
				if (gvm_rng_below(&r, 2))
					flags |= GVM_VA_READONLY;
				flags |= GVM_VA_PAT(gvm_rng_below(&r, 4));
				if ((flags & GVM_VA_KIND_MASK) ==
				    GVM_VA_KIND_BO) {
					obj = OBJ(1 + gvm_rng_below(&r, 4));
					off = gvm_rng_below(&r, 64) * PG;
				} else if ((flags & GVM_VA_KIND_MASK) ==
					   GVM_VA_KIND_USERPTR) {
					off = (1 + gvm_rng_below(&r, 1u << 20)) *
					      PG;
				}
				err = gvm__va_map_ops_create(&s, MBASE + p0 * PG,
							     npg * PG, obj, off,
							     flags, ops);
			} else {
				err = gvm__va_unmap_ops_create(
					&s, MBASE + p0 * PG, npg * PG, ops);
			}
			arm_itree(-1);
			/* fired() means something only after arm(). */
			if ((inject == 0 && fired()) || err == -ENOMEM) {
				/* Injected failure: nothing changed. */
				ASSERT_EQ(err, p1 > MPAGES ? -EINVAL : -ENOMEM);
				ASSERT_TRUE(ops->space == NULL);
				ASSERT_EQ(s.nr_lists, (size_t)nl);
				nr_enomem += err == -ENOMEM;
				model_check(&s, tent);
				continue;
			}
			if (p1 > MPAGES) {
				ASSERT_EQ(err, -EINVAL);
				nr_einval++;
				model_check(&s, tent);
				continue;
			}
			ASSERT_OK(err);
			nl++;
			model_check(&s, tent);	/* create changed nothing */
			model_check_ops(ops, tent, p0, p1, map);
			name_pieces(ops);
			if (map)
				T(ops->op[ops->nr - 1].map)->id = next_id;
			nr_ops += ops->nr;
			if (unwind && nl == want) {
				/* The last list only partly applied. */
				size_t k = gvm_rng_below(&r, ops->nr + 1);

				for (size_t i = 0; i < k; i++)
					gvm__va_op_apply(&s, &ops->op[i]);
				break;
			}
			gvm__va_ops_apply(ops);
			for (uint64_t p = p0; p < p1; p++) {
				tent[p] = (struct mpage){ 0 };
				if (map)
					tent[p] = (struct mpage){
						next_id, obj,
						kind_is_offset(flags) ?
							off + (p - p0) * PG : 0,
						flags };
			}
			next_id++;
			model_check(&s, tent);
		}
		if (unwind) {
			for (size_t i = nl; i-- > 0;)
				gvm__va_ops_unapply(&lists[i]);
			for (size_t i = nl; i-- > 0;)
				gvm__va_ops_fini(&lists[i]);
			nr_unwound++;
		} else {
			for (size_t i = 0; i < nl; i++)
				free_applied_old(&lists[i]);
			for (size_t i = 0; i < nl; i++)
				gvm__va_ops_fini(&lists[i]);
			memcpy(model, tent, sizeof(model));
		}
		ASSERT_EQ(s.nr_lists, 0);
		model_check(&s, model);
		sum_count += gvm__va_count(&s);
	}
	printf("binds %" PRIu64 ", ops %zu, unwound %zu, einval %zu, "
	       "enomem %zu, mappings: mean %" PRIu64 ", at end %zu\n", binds,
	       nr_ops, nr_unwound, nr_einval, nr_enomem, sum_count / binds,
	       gvm__va_count(&s));
	ASSERT_GT(nr_unwound, 0);
	ASSERT_GT(nr_enomem, 0);
	gvm__va_space_fini(&s, release_free, NULL);
}

/* ---- allocation failure --------------------------------------------------- */

struct req {
	bool map;
	uint64_t pg, npg;
};

static int req_create(struct gvm_va_space *s, const struct req *q,
		      struct gvm_va_ops *ops)
{
	if (q->map)
		return gvm__va_map_ops_create(s, A(q->pg), q->npg * PG, OBJ(7),
					      0, GVM_VA_KIND_BO, ops);
	return gvm__va_unmap_ops_create(s, A(q->pg), q->npg * PG, ops);
}

/* Heap arrays a list of @nr ops went through (doubling from the inline 2). */
static size_t array_allocs(size_t nr)
{
	size_t n = 0;

	for (size_t cap = GVM_VA_OPS_INL; cap < nr; cap *= 2)
		n++;
	return n;
}

/* New mappings a list allocated: MAP, prev and next pieces. */
static size_t new_mappings(const struct gvm_va_ops *ops)
{
	size_t n = 0;

	for (size_t i = 0; i < ops->nr; i++)
		n += !!ops->op[i].map + !!ops->op[i].prev + !!ops->op[i].next;
	return n;
}

TEST(alloc_failure)
{
	static const struct req reqs[] = {
		{ true, 101, 201 },	/* REMAP prev, UNMAPs, REMAP next, MAP */
		{ true, 40, 1 },	/* exact: UNMAP, MAP */
		{ true, 200, 1 },	/* middle: REMAP prev + next, MAP */
		{ false, 200, 1 },	/* exact: UNMAP */
		{ false, 150, 1 },	/* middle: REMAP prev + next */
		{ false, 0, SPACE_PAGES },	/* every mapping: UNMAPs */
		{ false, 500, 4 },	/* a hole: empty list */
	};
	struct gvm_va_space s;
	struct gvm_va_ops ops;
	long nr_alloc_fail = 0, nr_node_fail = 0;

	space_init(&s);
	/* ~330 mappings, so the tree has several levels. */
	for (uint64_t p = 0; p < 100; p++)
		bo_map(&s, p, 1, OBJ(1), p * PG);
	bo_map(&s, 100, 3, OBJ(2), 0);
	for (uint64_t p = 103; p < 450; p += 2)
		bo_map(&s, p, 2, OBJ(3), p * PG);
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		struct snap *v;
		size_t nr;
		long k;
		int err;

		v = snapshot(&s, &nr);
		/* Each gvm__ allocation of create in turn. */
		for (k = 1;; k++) {
			arm(k);
			ops.nr = 99;
			err = req_create(&s, &reqs[i], &ops);
			if (!fired()) {
				ASSERT_OK(err);
				/* k - 1 allocations: the op array's (it
				   doubles from GVM_VA_OPS_INL) and the new
				   mappings. */
				ASSERT_EQ(k - 1, (long)(array_allocs(ops.nr) +
							new_mappings(&ops)));
				break;
			}
			ASSERT_EQ(err, -ENOMEM);
			nr_alloc_fail++;
			ASSERT_TRUE(ops.space == NULL && ops.nr == 0);
			ASSERT_EQ(s.nr_lists, 0);
			ASSERT_FALSE(s.tree.reserved);
			expect_snapshot(&s, v, nr);
		}
		gvm__va_ops_fini(&ops);
		/* The tree's node allocations (the reservation). */
		for (k = 0;; k++) {
			arm_itree(k);
			err = req_create(&s, &reqs[i], &ops);
			arm_itree(-1);
			if (!err)
				break;
			ASSERT_EQ(err, -ENOMEM);
			nr_node_fail++;
			ASSERT_EQ(s.nr_lists, 0);
			ASSERT_FALSE(s.tree.reserved);
			expect_snapshot(&s, v, nr);
		}
		/* Created: apply and unwind with every allocation failing. */
		arm_itree(0);
		arm(1);
		gvm__va_ops_apply(&ops);
		ASSERT_OK(gvm__va_validate(&s));
		gvm__va_ops_unapply(&ops);
		expect_snapshot(&s, v, nr);
		gvm__va_ops_fini(&ops);
		ASSERT_FALSE(fired());
		arm_itree(-1);
		/* Then for real, and applied with allocations failing. */
		free(v);
		ASSERT_OK(req_create(&s, &reqs[i], &ops));
		arm_itree(0);
		arm(1);
		commit(&ops);
		ASSERT_FALSE(fired());
		arm_itree(-1);
		ASSERT_OK(gvm__va_validate(&s));
	}
	printf("failed allocations: %ld gvm__, %ld tree nodes\n",
	       nr_alloc_fail, nr_node_fail);
	/* Op arrays (only of lists longer than GVM_VA_OPS_INL; they
	   double: 102 ops go through 4, 8, ..., 128, 6 arrays; 179 ops
	   through 7), MAP mappings, pieces: (6+1+2)+1+3+0+2+7+0 (hole:
	   none). */
	ASSERT_EQ(nr_alloc_fail, 22);
	/* Node allocations depend on the fanout and the pool kept between
	   reservations (19 at GVM_ITREE_FANOUT 32): several, at least. */
	ASSERT_GT(nr_node_fail, 10);
	ASSERT_EQ(gvm__va_count(&s), 0);
	space_fini(&s);
}
