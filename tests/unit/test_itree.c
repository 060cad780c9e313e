// SPDX-License-Identifier: MIT
/*
 * Interval tree tests: edge cases, a reference model (a sorted array walked
 * by brute force) after every random operation, reservations and allocation
 * failure injection.
 */
#include "core/itree.h"

#include "harness.h"

/* Items are small integers disguised as pointers; never dereferenced. */
#define ITEM(n) ((void *)(uintptr_t)(n))

struct ent {
	uint64_t start, last;
	void *item;
};

/* Every entry of @t in iteration order, into a malloc'd array. */
static struct ent *snapshot(const struct gvm_itree *t, size_t *nr)
{
	struct ent *v = malloc((gvm__itree_count(t) + 1) * sizeof(*v));
	struct gvm_itree_iter it;
	size_t n = 0;

	ASSERT_TRUE(v);
	for (void *p = gvm__itree_iter_first(t, &it, 0, UINT64_MAX); p;
	     p = gvm__itree_iter_next(&it)) {
		ASSERT_LT(n, gvm__itree_count(t) + 1);
		v[n++] = (struct ent){ it.start, it.last, p };
	}
	*nr = n;
	return v;
}

static void assert_same(const struct ent *a, size_t na, const struct ent *b,
			size_t nb)
{
	ASSERT_EQ(na, nb);
	for (size_t i = 0; i < na; i++) {
		ASSERT_EQ(a[i].start, b[i].start);
		ASSERT_EQ(a[i].last, b[i].last);
		ASSERT_TRUE(a[i].item == b[i].item);
	}
}

TEST(empty)
{
	struct gvm_itree t;
	struct gvm_itree_iter it;

	gvm__itree_init(&t);
	ASSERT_OK(gvm__itree_validate(&t));
	ASSERT_EQ(gvm__itree_count(&t), 0);
	ASSERT_TRUE(gvm__itree_empty(&t));
	ASSERT_TRUE(gvm__itree_find(&t, 0) == NULL);
	ASSERT_TRUE(gvm__itree_find(&t, UINT64_MAX) == NULL);
	ASSERT_TRUE(gvm__itree_iter_first(&t, &it, 0, UINT64_MAX) == NULL);
	ASSERT_TRUE(gvm__itree_iter_next(&it) == NULL);
	ASSERT_EQ(gvm__itree_remove(&t, 0, ITEM(1)), -ENOENT);
	ASSERT_OK(gvm__itree_reserve(&t, 0));
	gvm__itree_unreserve(&t);
	gvm__itree_fini(&t);
	gvm__itree_fini(&t);	/* idempotent */
}

TEST(single_entry)
{
	struct gvm_itree t;
	struct gvm_itree_iter it;
	uint64_t s, l;

	gvm__itree_init(&t);
	ASSERT_OK(gvm__itree_insert(&t, 100, 199, ITEM(1)));
	ASSERT_OK(gvm__itree_validate(&t));
	ASSERT_EQ(gvm__itree_count(&t), 1);
	ASSERT_TRUE(gvm__itree_find(&t, 99) == NULL);
	ASSERT_TRUE(gvm__itree_find(&t, 100) == ITEM(1));
	ASSERT_TRUE(gvm__itree_find(&t, 150) == ITEM(1));
	ASSERT_TRUE(gvm__itree_find(&t, 199) == ITEM(1));
	ASSERT_TRUE(gvm__itree_find(&t, 200) == NULL);
	ASSERT_TRUE(gvm__itree_find_first(&t, 0, 100, &s, &l) == ITEM(1));
	ASSERT_EQ(s, 100);
	ASSERT_EQ(l, 199);
	ASSERT_TRUE(gvm__itree_find_first(&t, 199, 1000, NULL, NULL) ==
		    ITEM(1));
	ASSERT_TRUE(gvm__itree_find_first(&t, 0, 99, NULL, NULL) == NULL);
	ASSERT_TRUE(gvm__itree_iter_first(&t, &it, 50, 500) == ITEM(1));
	ASSERT_EQ(it.start, 100);
	ASSERT_EQ(it.last, 199);
	ASSERT_TRUE(it.item == ITEM(1));
	ASSERT_TRUE(gvm__itree_iter_next(&it) == NULL);
	/* A reversed query range is empty. */
	ASSERT_TRUE(gvm__itree_iter_first(&t, &it, 150, 149) == NULL);

	ASSERT_EQ(gvm__itree_remove(&t, 100, ITEM(2)), -ENOENT);
	ASSERT_EQ(gvm__itree_remove(&t, 101, ITEM(1)), -ENOENT);
	ASSERT_OK(gvm__itree_remove(&t, 100, ITEM(1)));
	ASSERT_OK(gvm__itree_validate(&t));
	ASSERT_TRUE(gvm__itree_empty(&t));
	ASSERT_TRUE(gvm__itree_find(&t, 150) == NULL);
	gvm__itree_fini(&t);
}

TEST(bad_input)
{
	struct gvm_itree t;

	gvm__itree_init(&t);
	ASSERT_EQ(gvm__itree_insert(&t, 2, 1, ITEM(1)), -EINVAL);
	ASSERT_EQ(gvm__itree_insert(&t, 1, 1, NULL), -EINVAL);
	ASSERT_EQ(gvm__itree_insert(&t, UINT64_MAX, 0, ITEM(1)), -EINVAL);
	ASSERT_EQ(gvm__itree_count(&t), 0);
	ASSERT_OK(gvm__itree_validate(&t));
	ASSERT_OK(gvm__itree_insert(&t, 1, 1, ITEM(1)));
	ASSERT_EQ(gvm__itree_insert(&t, 5, 4, ITEM(2)), -EINVAL);
	ASSERT_EQ(gvm__itree_count(&t), 1);
	ASSERT_EQ(gvm__itree_remove(&t, 1, NULL), -ENOENT);
	ASSERT_OK(gvm__itree_validate(&t));
	gvm__itree_fini(&t);
}

TEST(boundaries)
{
	struct gvm_itree t;
	struct gvm_itree_iter it;
	size_t n;

	gvm__itree_init(&t);
	ASSERT_OK(gvm__itree_insert(&t, UINT64_MAX, UINT64_MAX, ITEM(3)));
	ASSERT_OK(gvm__itree_insert(&t, 0, 0, ITEM(1)));
	ASSERT_OK(gvm__itree_insert(&t, 0, UINT64_MAX, ITEM(2)));
	ASSERT_OK(gvm__itree_validate(&t));

	ASSERT_TRUE(gvm__itree_find(&t, 0) == ITEM(1));
	ASSERT_TRUE(gvm__itree_find(&t, 1) == ITEM(2));
	ASSERT_TRUE(gvm__itree_find(&t, UINT64_MAX) == ITEM(2));
	ASSERT_TRUE(gvm__itree_find_first(&t, UINT64_MAX, UINT64_MAX, NULL,
					  NULL) == ITEM(2));

	n = 0;
	for (void *p = gvm__itree_iter_first(&t, &it, UINT64_MAX, UINT64_MAX);
	     p; p = gvm__itree_iter_next(&it))
		ASSERT_TRUE(p == (n++ ? ITEM(3) : ITEM(2)));
	ASSERT_EQ(n, 2);
	n = 0;
	for (void *p = gvm__itree_iter_first(&t, &it, 0, UINT64_MAX); p;
	     p = gvm__itree_iter_next(&it))
		ASSERT_TRUE(p == ITEM(++n));
	ASSERT_EQ(n, 3);

	ASSERT_OK(gvm__itree_remove(&t, 0, ITEM(2)));
	ASSERT_OK(gvm__itree_validate(&t));
	ASSERT_TRUE(gvm__itree_find(&t, 1) == NULL);
	ASSERT_TRUE(gvm__itree_find(&t, UINT64_MAX) == ITEM(3));
	ASSERT_TRUE(gvm__itree_find_first(&t, 1, UINT64_MAX - 1, NULL, NULL)
		    == NULL);
	ASSERT_OK(gvm__itree_remove(&t, UINT64_MAX, ITEM(3)));
	ASSERT_OK(gvm__itree_remove(&t, 0, ITEM(1)));
	ASSERT_TRUE(gvm__itree_empty(&t));
	ASSERT_OK(gvm__itree_validate(&t));
	gvm__itree_fini(&t);
}

/*
 * Many entries with one start span several leaves (and internal nodes), so
 * remove must search more than one child; iteration keeps insertion order.
 */
TEST(duplicates)
{
	const unsigned int n = 600;
	struct gvm_itree t;
	struct gvm_itree_iter it;
	struct gvm_rng rng = { gvm_test_seed() };
	unsigned int *order = malloc(n * sizeof(*order)), i;
	void *p;

	ASSERT_TRUE(order);
	gvm__itree_init(&t);
	/* Neighbours on both sides, so the duplicates sit mid-tree. */
	for (i = 0; i < 100; i++) {
		ASSERT_OK(gvm__itree_insert(&t, i, i, ITEM(100000 + i)));
		ASSERT_OK(gvm__itree_insert(&t, 1000 + i, 1000 + i,
					    ITEM(200000 + i)));
	}
	for (i = 1; i <= n; i++)
		ASSERT_OK(gvm__itree_insert(&t, 500, 500 + i % 7, ITEM(i)));
	/* The same (start, item) twice is allowed too. */
	ASSERT_OK(gvm__itree_insert(&t, 500, 500, ITEM(1)));
	ASSERT_OK(gvm__itree_validate(&t));
	ASSERT_EQ(gvm__itree_count(&t), 200 + n + 1);

	i = 0;
	for (p = gvm__itree_iter_first(&t, &it, 500, 500); p;
	     p = gvm__itree_iter_next(&it)) {
		ASSERT_EQ(it.start, 500);
		ASSERT_TRUE(p == ITEM(i < n ? i + 1 : 1));
		i++;
	}
	ASSERT_EQ(i, n + 1);

	/* Remove in random order; the rest keep their relative order. */
	for (i = 0; i < n; i++)
		order[i] = i + 1;
	for (i = n - 1; i > 0; i--) {
		unsigned int j = (unsigned int)gvm_rng_below(&rng, i + 1), x;

		x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	for (i = 0; i < n; i++) {
		unsigned int prev = 0, seen = 0;

		ASSERT_OK(gvm__itree_remove(&t, 500, ITEM(order[i])));
		ASSERT_OK(gvm__itree_validate(&t));
		if (i % 50)
			continue;
		for (p = gvm__itree_iter_first(&t, &it, 500, 500); p;
		     p = gvm__itree_iter_next(&it), seen++) {
			unsigned int v = (unsigned int)(uintptr_t)p;

			if (seen + 1 < n - i || v != 1) {
				ASSERT_GT(v, prev);
				prev = v;
			}
		}
		ASSERT_EQ(seen, n - i);
	}
	ASSERT_OK(gvm__itree_remove(&t, 500, ITEM(1)));
	ASSERT_EQ(gvm__itree_remove(&t, 500, ITEM(1)), -ENOENT);
	ASSERT_EQ(gvm__itree_count(&t), 200);
	ASSERT_OK(gvm__itree_validate(&t));
	gvm__itree_fini(&t);
	free(order);
}

/* A long interval starting early is found from far to its right. */
TEST(long_interval)
{
	struct gvm_itree t;
	struct gvm_itree_iter it;
	unsigned int i, n = 0;
	void *p;

	gvm__itree_init(&t);
	for (i = 0; i < 20000; i++)
		ASSERT_OK(gvm__itree_insert(&t, 16 * (uint64_t)i,
					    16 * (uint64_t)i + 7, ITEM(i + 1)));
	ASSERT_OK(gvm__itree_insert(&t, 3, 250000, ITEM(999999)));
	ASSERT_OK(gvm__itree_validate(&t));

	/* In the gap after [16 * 10000, + 7]: only the long one. */
	ASSERT_TRUE(gvm__itree_find(&t, 16 * 10000 + 9) == ITEM(999999));
	/* Inside a small one: the long one starts later than [0, 7]. */
	ASSERT_TRUE(gvm__itree_find(&t, 16 * 10000 + 2) == ITEM(999999));
	ASSERT_TRUE(gvm__itree_find(&t, 2) == ITEM(1));
	ASSERT_TRUE(gvm__itree_find(&t, 16 * 20000 + 8) == NULL);
	ASSERT_TRUE(gvm__itree_find(&t, 250008) == NULL);
	ASSERT_TRUE(gvm__itree_find(&t, 250000) == ITEM(999999));
	ASSERT_TRUE(gvm__itree_find(&t, 16 * 19000) == ITEM(19001));

	for (p = gvm__itree_iter_first(&t, &it, 16 * 10000, 16 * 10002); p;
	     p = gvm__itree_iter_next(&it))
		n++;
	ASSERT_EQ(n, 4);	/* the long one, 10000, 10001, 10002 */
	gvm__itree_fini(&t);
}

/* ---- reference model ---------------------------------------------------- */

/*
 * The model: the entries sorted by start, ties in insertion order (the
 * tree's iteration order), in a plain array.
 */
struct model {
	struct ent *e;
	size_t nr, cap;
};

static void model_insert(struct model *m, uint64_t s, uint64_t l, void *p)
{
	size_t lo = 0, hi = m->nr;

	if (m->nr == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 1024;
		m->e = realloc(m->e, m->cap * sizeof(*m->e));
		ASSERT_TRUE(m->e);
	}
	while (lo < hi) {	/* first entry with start > s */
		size_t mid = (lo + hi) / 2;

		if (m->e[mid].start <= s)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(&m->e[lo + 1], &m->e[lo], (m->nr - lo) * sizeof(*m->e));
	m->e[lo] = (struct ent){ s, l, p };
	m->nr++;
}

static void model_delete(struct model *m, size_t i)
{
	memmove(&m->e[i], &m->e[i + 1], (m->nr - i - 1) * sizeof(*m->e));
	m->nr--;
}

/* Compares the tree's answer for [qs, ql] with a walk over the model. */
static void check_query(const struct gvm_itree *t, const struct model *m,
			uint64_t qs, uint64_t ql)
{
	struct gvm_itree_iter it;
	void *p = gvm__itree_iter_first(t, &it, qs, ql);
	void *first = gvm__itree_find_first(t, qs, ql, NULL, NULL);
	bool first_seen = false;

	for (size_t i = 0; i < m->nr && m->e[i].start <= ql; i++) {
		const struct ent *e = &m->e[i];

		if (e->last < qs)
			continue;
		if (!first_seen) {
			ASSERT_TRUE(first == e->item);
			first_seen = true;
		}
		ASSERT_TRUE(p == e->item);
		ASSERT_EQ(it.start, e->start);
		ASSERT_EQ(it.last, e->last);
		p = gvm__itree_iter_next(&it);
	}
	ASSERT_TRUE(p == NULL);
	if (!first_seen)
		ASSERT_TRUE(first == NULL);
}

/* A random range: mostly small and clustered, some long, a few extreme. */
static void random_range(struct gvm_rng *r, const struct model *m,
			 uint64_t *s, uint64_t *l)
{
	uint64_t x = gvm_rng_below(r, 100), span;

	if (m->nr && x < 10) {
		*s = m->e[gvm_rng_below(r, m->nr)].start;	/* duplicate */
	} else if (m->nr && x < 50) {
		/* Next to an existing entry: keeps nodes splitting. */
		*s = m->e[gvm_rng_below(r, m->nr)].start +
		     gvm_rng_below(r, 64);
	} else if (x < 52) {
		*s = gvm_rng_below(r, 4);
	} else if (x < 54) {
		*s = UINT64_MAX - gvm_rng_below(r, 4);
	} else {
		*s = gvm_rng_below(r, 1u << 24);
	}
	x = gvm_rng_below(r, 100);
	if (x < 70)
		span = gvm_rng_below(r, 16);
	else if (x < 90)
		span = gvm_rng_below(r, 4096);
	else if (x < 99)
		span = gvm_rng_below(r, 1u << 22);
	else
		span = UINT64_MAX;
	*l = span > UINT64_MAX - *s ? UINT64_MAX : *s + span;
}

TEST(reference_model)
{
	const uint64_t ops = gvm_test_scale(100000);
	const size_t peak = 3000;
	struct gvm_rng rng = { gvm_test_seed() };
	struct model m = { 0 };
	struct gvm_itree t;
	uint64_t next_id = 1;
	unsigned int max_height = 0, rounds = 0;
	size_t low = 0;
	bool grow = true;

	gvm__itree_init(&t);
	for (uint64_t op = 0; op < ops; op++) {
		uint64_t x = gvm_rng_below(&rng, 100), s, l;

		if (grow && m.nr >= peak) {
			grow = false;
			low = gvm_rng_below(&rng, 3) ? gvm_rng_below(&rng, 200)
						     : 0;
		} else if (!grow && m.nr <= low) {
			grow = true;
			rounds++;
		}

		if (x < (grow ? 65u : 30u)) {
			void *p = ITEM(next_id++);

			random_range(&rng, &m, &s, &l);
			ASSERT_OK(gvm__itree_insert(&t, s, l, p));
			model_insert(&m, s, l, p);
		} else if (x < 95 && m.nr) {
			size_t i = gvm_rng_below(&rng, m.nr);

			ASSERT_OK(gvm__itree_remove(&t, m.e[i].start,
						    m.e[i].item));
			model_delete(&m, i);
		} else if (m.nr) {
			/* Absent entries: right start, wrong item & v.v. */
			size_t i = gvm_rng_below(&rng, m.nr);

			ASSERT_EQ(gvm__itree_remove(&t, m.e[i].start,
						    ITEM(next_id)), -ENOENT);
			if (m.e[i].start != UINT64_MAX)
				ASSERT_EQ(gvm__itree_remove(&t,
							    m.e[i].start + 1,
							    m.e[i].item),
					  -ENOENT);
		}

		ASSERT_OK(gvm__itree_validate(&t));
		ASSERT_EQ(gvm__itree_count(&t), m.nr);
		if (t.height > max_height)
			max_height = t.height;

		/* Whole contents, a random range and a random point. */
		check_query(&t, &m, 0, UINT64_MAX);
		random_range(&rng, &m, &s, &l);
		check_query(&t, &m, s, l);
		check_query(&t, &m, s, s);
	}
	printf("reference_model: %" PRIu64 " ops, %u shrink rounds, "
	       "max height %u\n", ops, rounds, max_height);
	ASSERT_GE(max_height, 3);
	gvm__itree_fini(&t);
	free(m.e);
}

/* The model's first entry (start, item), as the tree's remove picks it. */
static size_t model_find(const struct model *m, uint64_t s, const void *p)
{
	for (size_t i = 0; i < m->nr; i++)
		if (m->e[i].start == s && m->e[i].item == p)
			return i;
	return SIZE_MAX;
}

/* Points @it at the entry (s, p) of @t, which must exist. */
static void iter_at(const struct gvm_itree *t, struct gvm_itree_iter *it,
		    uint64_t s, const void *p)
{
	void *q;

	for (q = gvm__itree_iter_first(t, it, s, s); q && q != p;
	     q = gvm__itree_iter_next(it))
		;
	ASSERT_TRUE(q == p);
	ASSERT_EQ(it->start, s);
}

/*
 * The finger (the last insert's or remove's path, or an iterator's entry):
 * operations cluster around a cursor, as a VA split or merge does, so most
 * of them reuse the finger's path; the same operations run on a twin tree
 * whose finger is dropped before each one.  After every step both trees
 * match the model and each other (entries, height, pool, and the count of
 * structural changes: the finger never changes the tree's shape).  Stale
 * iterators must leave the finger alone; duplicates (same start, same item)
 * check that a remove through the finger takes the first one in order.
 */
TEST(finger_model)
{
	const uint64_t ops = gvm_test_scale(60000);
	struct gvm_rng rng = { gvm_test_seed() };
	struct model m = { 0 };
	struct gvm_itree t, twin;
	uint64_t next_id = 1, removes = 0;
	size_t cur = 0;
	bool grow = true;

	gvm__itree_init(&t);
	gvm__itree_init(&twin);
	for (uint64_t op = 0; op < ops; op++) {
		uint64_t x = gvm_rng_below(&rng, 100), s, l;
		struct gvm_itree_iter it;

		if (grow && m.nr >= 2500)
			grow = false;
		else if (!grow && m.nr <= 20)
			grow = true;
		if (m.nr) {
			/* The cursor moves a little, now and then far. */
			if (gvm_rng_below(&rng, 50) == 0)
				cur = gvm_rng_below(&rng, m.nr);
			else if (gvm_rng_below(&rng, 2))
				cur += gvm_rng_below(&rng, 3);
			else if (cur)
				cur -= gvm_rng_below(&rng, cur < 3 ? cur + 1 : 3);
			if (cur >= m.nr)
				cur = m.nr - 1;
		}

		twin.finger_ok = false;
		if (x < 10 && m.nr) {
			/* Finger at the cursor's entry, sometimes stale. */
			iter_at(&t, &it, m.e[cur].start, m.e[cur].item);
			if (gvm_rng_below(&rng, 4) == 0) {
				void *p = ITEM(next_id++);
				uint64_t gen = t.gen;

				ASSERT_OK(gvm__itree_insert(&t, m.e[cur].start,
							    m.e[cur].start, p));
				ASSERT_OK(gvm__itree_insert(&twin,
							    m.e[cur].start,
							    m.e[cur].start, p));
				model_insert(&m, m.e[cur].start,
					     m.e[cur].start, p);
				if (t.gen != gen) {
					/* Split: the iterator is stale. */
					t.finger_ok = false;
					gvm__itree_set_finger(&t, &it);
					ASSERT_FALSE(t.finger_ok);
				}
			} else {
				gvm__itree_set_finger(&t, &it);
				ASSERT_TRUE(t.finger_ok);
			}
		} else if (x < (grow ? 60u : 45u) || !m.nr) {
			/* Near the cursor; an existing start, or its item
			   again (a duplicate (start, item)) now and then. */
			uint64_t base = m.nr ? m.e[cur].start : 1u << 20;
			void *p = ITEM(next_id++);

			if (m.nr && gvm_rng_below(&rng, 8) == 0) {
				s = base;
				if (gvm_rng_below(&rng, 2))
					p = m.e[cur].item;
			} else if (gvm_rng_below(&rng, 2)) {
				s = base - 2 + gvm_rng_below(&rng, 5);
			} else {
				s = base - 64 + gvm_rng_below(&rng, 128);
			}
			l = s + gvm_rng_below(&rng, 200);
			if (l < s)
				l = UINT64_MAX;
			ASSERT_OK(gvm__itree_insert(&t, s, l, p));
			ASSERT_OK(gvm__itree_insert(&twin, s, l, p));
			model_insert(&m, s, l, p);
		} else {
			size_t i = cur;

			/* The cursor's entry or a neighbour. */
			if (gvm_rng_below(&rng, 2) && i + 1 < m.nr)
				i++;
			s = m.e[i].start;
			i = model_find(&m, s, m.e[i].item);
			ASSERT_OK(gvm__itree_remove(&t, s, m.e[i].item));
			ASSERT_OK(gvm__itree_remove(&twin, s, m.e[i].item));
			model_delete(&m, i);
			removes++;
			if (gvm_rng_below(&rng, 8) == 0) {
				ASSERT_EQ(gvm__itree_remove(&t, s,
							    ITEM(next_id)),
					  -ENOENT);
				ASSERT_EQ(gvm__itree_remove(&twin, s,
							    ITEM(next_id)),
					  -ENOENT);
			}
		}

		ASSERT_OK(gvm__itree_validate(&t));
		ASSERT_OK(gvm__itree_validate(&twin));
		ASSERT_EQ(gvm__itree_count(&t), m.nr);
		ASSERT_EQ(t.height, twin.height);
		ASSERT_EQ(t.gen, twin.gen);
		ASSERT_EQ(t.pool_nr, twin.pool_nr);
		ASSERT_EQ(t.root_last, twin.root_last);
		if (op % 64 == 0 || m.nr < 64) {
			struct ent *a, *b;
			size_t na, nb;

			check_query(&t, &m, 0, UINT64_MAX);
			a = snapshot(&t, &na);
			b = snapshot(&twin, &nb);
			assert_same(a, na, b, nb);
			free(a);
			free(b);
		}
		if (m.nr) {
			s = m.e[cur].start;
			check_query(&t, &m, s - (s ? 1 : 0), s + 64);
		}
	}
	printf("finger_model: %" PRIu64 " ops (%" PRIu64 " removes), "
	       "%zu finger hits, twin %zu\n", ops, removes, t.finger_hits,
	       twin.finger_hits);
	ASSERT_EQ(twin.finger_hits, 0);
	/* About 30%: every tenth op moves the finger, clustered starts make
	   leaves narrow, equal starts at a leaf's front miss on removes. */
	ASSERT_GT(t.finger_hits, ops / 8);
	gvm__itree_fini(&t);
	gvm__itree_fini(&twin);
	free(m.e);
}

/*
 * The same (start, item) 40 times (different lasts, so the copies can be
 * told apart) spans several leaves.  With the finger on any copy, a remove
 * still takes the first copy in order, also when the finger's copy is at
 * the front of its leaf and the first copy in an earlier leaf.
 */
TEST(finger_duplicates)
{
	for (unsigned int j = 0; j < 40; j++) {
		struct gvm_itree t;
		struct gvm_itree_iter it;
		void *q;

		gvm__itree_init(&t);
		for (unsigned int k = 0; k < 30; k++)
			ASSERT_OK(gvm__itree_insert(&t, k, k, ITEM(1000 + k)));
		for (unsigned int k = 0; k < 40; k++)
			ASSERT_OK(gvm__itree_insert(&t, 100, 100 + k, ITEM(7)));
		for (q = gvm__itree_iter_first(&t, &it, 100, 100);
		     q && it.last != 100 + j; q = gvm__itree_iter_next(&it))
			;
		ASSERT_TRUE(q == ITEM(7));
		gvm__itree_set_finger(&t, &it);
		ASSERT_TRUE(t.finger_ok);
		ASSERT_OK(gvm__itree_remove(&t, 100, ITEM(7)));
		ASSERT_OK(gvm__itree_validate(&t));
		q = gvm__itree_iter_first(&t, &it, 100, 100);
		ASSERT_TRUE(q == ITEM(7));
		ASSERT_EQ(it.last, 101);	/* copy 0 went */
		gvm__itree_fini(&t);
	}
}

/* ---- reservations and allocation failures -------------------------------- */

/*
 * After reserve(n), n inserts succeed with every allocation failing, also
 * with removes (which merge and shrink the tree) between them.
 */
TEST(reserve)
{
	struct gvm_rng rng = { gvm_test_seed() };
	const unsigned int rounds = (unsigned int)gvm_test_scale(400);
	struct gvm_itree t;
	struct model m = { 0 };
	uint64_t next_id = 1;

	gvm__itree_init(&t);
	for (unsigned int r = 0; r < rounds; r++) {
		size_t n = gvm_rng_below(&rng, 4) ? gvm_rng_below(&rng, 8)
						  : gvm_rng_below(&rng, 400);
		unsigned int remove_pct = (unsigned int)gvm_rng_below(&rng, 90);
		size_t done = 0;

		/* Grow the tree between rounds, with allocation allowed. */
		for (size_t k = gvm_rng_below(&rng, 100); k; k--) {
			uint64_t s, l;
			void *p = ITEM(next_id++);

			random_range(&rng, &m, &s, &l);
			ASSERT_OK(gvm__itree_insert(&t, s, l, p));
			model_insert(&m, s, l, p);
		}

		ASSERT_OK(gvm__itree_reserve(&t, n));
		gvm__itree_fail_alloc_after = 0;
		while (done < n) {
			if (m.nr && gvm_rng_below(&rng, 100) < remove_pct) {
				size_t i = gvm_rng_below(&rng, m.nr);

				ASSERT_OK(gvm__itree_remove(&t, m.e[i].start,
							    m.e[i].item));
				model_delete(&m, i);
			} else {
				uint64_t s, l;
				void *p = ITEM(next_id++);

				random_range(&rng, &m, &s, &l);
				ASSERT_OK(gvm__itree_insert(&t, s, l, p));
				model_insert(&m, s, l, p);
				done++;
			}
		}
		gvm__itree_fail_alloc_after = -1;
		ASSERT_OK(gvm__itree_validate(&t));
		ASSERT_EQ(gvm__itree_count(&t), m.nr);
		if (gvm_rng_below(&rng, 2))
			gvm__itree_unreserve(&t);
	}
	check_query(&t, &m, 0, UINT64_MAX);

	/* A failed reserve changes nothing (the kept spare nodes stay). */
	gvm__itree_unreserve(&t);
	{
		size_t kept = t.pool_nr;

		ASSERT_LE(kept, 32);
		gvm__itree_fail_alloc_after = 3;
		ASSERT_EQ(gvm__itree_reserve(&t, 1000), -ENOMEM);
		gvm__itree_fail_alloc_after = -1;
		ASSERT_EQ(t.pool_nr, kept);
	}
	ASSERT_FALSE(t.reserved);
	ASSERT_OK(gvm__itree_validate(&t));
	gvm__itree_fini(&t);
	free(m.e);
}

/*
 * The worst cases of the reservation bound: an insert into a full root leaf
 * needs a leaf and a new root; then inserts and removes that split the root
 * and merge it back every cycle consume two nodes per cycle, which only the
 * nodes the removes give back to the pool can pay for.
 */
TEST(reserve_worst_case)
{
	struct gvm_itree t;

	gvm__itree_init(&t);
	for (uint64_t k = 0; k < GVM_ITREE_FANOUT; k++)
		ASSERT_OK(gvm__itree_insert(&t, 10 * k, 10 * k, ITEM(k + 1)));
	ASSERT_EQ(t.height, 1);
	ASSERT_OK(gvm__itree_reserve(&t, 1));
	gvm__itree_fail_alloc_after = 0;
	ASSERT_OK(gvm__itree_insert(&t, 1000, 1000, ITEM(1001)));
	gvm__itree_fail_alloc_after = -1;
	ASSERT_EQ(t.height, 2);
	ASSERT_OK(gvm__itree_remove(&t, 1000, ITEM(1001)));
	gvm__itree_unreserve(&t);

	/* Back to one full leaf: remove until the root collapses, refill. */
	for (uint64_t k = GVM_ITREE_FANOUT - 1; t.height > 1; k--)
		ASSERT_OK(gvm__itree_remove(&t, 10 * k, ITEM(k + 1)));
	for (uint64_t k = 0; gvm__itree_count(&t) < GVM_ITREE_FANOUT; k++)
		if (!gvm__itree_find(&t, 10 * k))
			ASSERT_OK(gvm__itree_insert(&t, 10 * k, 10 * k,
						    ITEM(k + 1)));
	ASSERT_EQ(t.height, 1);
	ASSERT_OK(gvm__itree_validate(&t));

	ASSERT_OK(gvm__itree_reserve(&t, 2 * GVM_ITREE_FANOUT));
	gvm__itree_fail_alloc_after = 0;
	for (int cycle = 0; cycle < GVM_ITREE_FANOUT; cycle++) {
		struct ent *e;
		size_t nr;

		/* Split the full root leaf... */
		ASSERT_OK(gvm__itree_insert(&t, 5000, 5000, ITEM(5001)));
		ASSERT_EQ(t.height, 2);
		/* ...remove two of its right half's entries: merge, collapse... */
		ASSERT_OK(gvm__itree_remove(&t, 5000, ITEM(5001)));
		e = snapshot(&t, &nr);
		ASSERT_OK(gvm__itree_remove(&t, e[nr - 1].start, e[nr - 1].item));
		ASSERT_EQ(t.height, 1);
		/* ...and fill the leaf again. */
		ASSERT_OK(gvm__itree_insert(&t, e[nr - 1].start, e[nr - 1].last,
					    e[nr - 1].item));
		ASSERT_EQ(gvm__itree_count(&t), GVM_ITREE_FANOUT);
		ASSERT_OK(gvm__itree_validate(&t));
		free(e);
	}
	gvm__itree_fail_alloc_after = -1;
	gvm__itree_unreserve(&t);
	ASSERT_LE(t.pool_nr, 32);	/* a few spares are kept */
	gvm__itree_fini(&t);
}

/*
 * Grows a tree from empty, and for every insert fails the 1st, 2nd, ...
 * allocation in turn until it goes through; each failure must leave the
 * tree exactly as it was.  Height increases make the whole path split, so
 * this reaches failures at every level.
 */
TEST(alloc_failure)
{
	struct gvm_rng rng = { gvm_test_seed() };
	/* More entries than a tree of height 2 holds (FANOUT^2), however
	   the run is scaled down, so that the height reaches 3 (below). */
	const unsigned int min_n = GVM_ITREE_FANOUT * GVM_ITREE_FANOUT + 1;
	unsigned int n = (unsigned int)gvm_test_scale(6000);
	struct gvm_itree t;
	long max_k = 0;

	if (n < min_n)
		n = min_n;

	gvm__itree_init(&t);
	for (unsigned int i = 0; i < n; i++) {
		uint64_t s = gvm_rng_below(&rng, 1u << 30);
		uint64_t l = s + gvm_rng_below(&rng, 1u << 20);
		const struct gvm_itree_node *root = t.root;
		unsigned int height = t.height;
		size_t before_nr = 0, after_nr;
		struct ent *before = NULL;
		long k;
		int err;

		for (k = 0;; k++) {
			gvm__itree_fail_alloc_after = k;
			err = gvm__itree_insert(&t, s, l, ITEM(i + 1));
			gvm__itree_fail_alloc_after = -1;
			if (!err)
				break;
			ASSERT_EQ(err, -ENOMEM);
			ASSERT_LE(k, GVM_ITREE_MAX_HEIGHT);
			if (!before)	/* taken lazily: most inserts fit */
				before = snapshot(&t, &before_nr);
			ASSERT_OK(gvm__itree_validate(&t));
			ASSERT_EQ(gvm__itree_count(&t), i);
			ASSERT_EQ(t.pool_nr, 0);
			ASSERT_TRUE(t.root == root);
			ASSERT_EQ(t.height, height);
			struct ent *after = snapshot(&t, &after_nr);
			assert_same(before, before_nr, after, after_nr);
			free(after);
		}
		if (k > max_k)
			max_k = k;
		free(before);
	}
	ASSERT_OK(gvm__itree_validate(&t));
	printf("alloc_failure: height %u, up to %ld allocations per insert\n",
	       t.height, max_k);
	ASSERT_GE(t.height, 3);
	ASSERT_EQ(max_k, (long)t.height);
	gvm__itree_fini(&t);
}

/* Freeing everything in ascending order (leftmost merges) and back. */
TEST(drain_and_refill)
{
	struct gvm_itree t;
	const unsigned int n = 5000;

	gvm__itree_init(&t);
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned int i = 0; i < n; i++)
			ASSERT_OK(gvm__itree_insert(&t, (uint64_t)i * 4096,
						    (uint64_t)i * 4096 + 4095,
						    ITEM(i + 1)));
		ASSERT_OK(gvm__itree_validate(&t));
		for (unsigned int i = 0; i < n; i++)
			ASSERT_TRUE(gvm__itree_find(&t, (uint64_t)i * 4096 +
							    (i % 4096)) ==
				    ITEM(i + 1));
		for (unsigned int i = 0; i < n; i++) {
			unsigned int j = pass ? n - 1 - i : i;

			ASSERT_OK(gvm__itree_remove(&t, (uint64_t)j * 4096,
						    ITEM(j + 1)));
			if (i % 97 == 0)
				ASSERT_OK(gvm__itree_validate(&t));
		}
		ASSERT_TRUE(gvm__itree_empty(&t));
		ASSERT_TRUE(t.root == NULL);
		ASSERT_EQ(t.height, 0);
		ASSERT_OK(gvm__itree_validate(&t));
	}
	gvm__itree_fini(&t);
}
