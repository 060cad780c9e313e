// SPDX-License-Identifier: MIT
/*
 * Red-black tree tests: edge cases and a reference model (a sorted array of
 * keys) checked after every random insert or erase, with validate() (order,
 * colour and black-height rules, first/last/count) after every operation.
 */
#include "core/rbtree.h"

#include "harness.h"

struct item {
	uint64_t key;
	struct gvm_rb_node rb;
	bool in;	/* in the tree */
};

static struct item *to_item(const struct gvm_rb_node *n)
{
	return n ? gvm_rb_entry(n, struct item, rb) : NULL;
}

static bool item_less(const struct gvm_rb_node *a, const struct gvm_rb_node *b)
{
	return to_item(a)->key < to_item(b)->key;
}

/* Inserts after every equal key (so equal keys keep insertion order). */
static void insert(struct gvm_rb_root *t, struct item *it)
{
	struct gvm_rb_node **link = &t->root, *parent = NULL;

	while (*link) {
		parent = *link;
		link = it->key < to_item(parent)->key ? &parent->left :
							 &parent->right;
	}
	gvm__rb_insert(t, &it->rb, parent, link);
	it->in = true;
}

/* The first node with key >= @key, or NULL. */
static struct item *lower_bound(const struct gvm_rb_root *t, uint64_t key)
{
	struct gvm_rb_node *n = t->root, *best = NULL;

	while (n) {
		if (to_item(n)->key >= key) {
			best = n;
			n = n->left;
		} else {
			n = n->right;
		}
	}
	return to_item(best);
}

TEST(empty_and_single)
{
	struct gvm_rb_root t = GVM_RB_ROOT_INIT;
	struct item a = { .key = 5 };

	ASSERT_TRUE(gvm__rb_empty(&t));
	ASSERT_TRUE(gvm__rb_first(&t) == NULL && gvm__rb_last(&t) == NULL);
	ASSERT_OK(gvm__rb_validate(&t, item_less));
	insert(&t, &a);
	ASSERT_OK(gvm__rb_validate(&t, item_less));
	ASSERT_TRUE(gvm__rb_first(&t) == &a.rb && gvm__rb_last(&t) == &a.rb);
	ASSERT_TRUE(gvm__rb_next(&a.rb) == NULL && gvm__rb_prev(&a.rb) == NULL);
	gvm__rb_erase(&t, &a.rb);
	ASSERT_TRUE(gvm__rb_empty(&t));
	ASSERT_EQ(t.count, 0);
	ASSERT_TRUE(gvm__rb_first(&t) == NULL && gvm__rb_last(&t) == NULL);
	ASSERT_OK(gvm__rb_validate(&t, item_less));
}

TEST(ascending_descending)
{
	enum { N = 1000 };
	static struct item v[N];
	struct gvm_rb_root t;

	gvm__rb_init(&t);
	for (int i = 0; i < N; i++) {
		v[i].key = (uint64_t)i;
		insert(&t, &v[i]);
		ASSERT_OK(gvm__rb_validate(&t, item_less));
	}
	for (int i = N - 1; i >= 0; i -= 2) {
		gvm__rb_erase(&t, &v[i].rb);
		ASSERT_OK(gvm__rb_validate(&t, item_less));
	}
	int i = 0;
	for (struct gvm_rb_node *n = gvm__rb_first(&t); n; n = gvm__rb_next(n))
		ASSERT_EQ(to_item(n)->key, (uint64_t)(2 * i++));
	ASSERT_EQ(i, N / 2);
	for (i = 0; i < N; i += 2)
		gvm__rb_erase(&t, &v[i].rb);
	ASSERT_TRUE(gvm__rb_empty(&t));
	ASSERT_OK(gvm__rb_validate(&t, item_less));
}

TEST(validate_catches_corruption)
{
	struct item v[3] = { { .key = 1 }, { .key = 2 }, { .key = 3 } };
	struct gvm_rb_root t = GVM_RB_ROOT_INIT;

	for (int i = 0; i < 3; i++)
		insert(&t, &v[i]);
	ASSERT_OK(gvm__rb_validate(&t, item_less));
	/* Root 2 black, children red.  Make a child black: heights differ. */
	gvm__rb_set_red(&v[0].rb, false);
	ASSERT_EQ(gvm__rb_validate(&t, item_less), -EUCLEAN);
	gvm__rb_set_red(&v[0].rb, true);
	gvm__rb_set_red(&v[1].rb, true);	/* red root */
	ASSERT_EQ(gvm__rb_validate(&t, item_less), -EUCLEAN);
	gvm__rb_set_red(&v[1].rb, false);
	v[0].key = 9;		/* out of order */
	ASSERT_EQ(gvm__rb_validate(&t, item_less), -EUCLEAN);
	v[0].key = 1;
	t.count++;
	ASSERT_EQ(gvm__rb_validate(&t, item_less), -EUCLEAN);
	t.count--;
	ASSERT_OK(gvm__rb_validate(&t, item_less));
}

/* Reference: sorted array of keys (duplicates allowed). */
static size_t model_lower(const uint64_t *m, size_t n, uint64_t key)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (m[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

TEST(reference_model)
{
	const size_t cap = 4096;
	size_t steps = gvm_test_scale(200000);
	struct gvm_rng rng = { gvm_test_seed() };
	struct item *v = calloc(cap, sizeof(*v));
	uint64_t *m = calloc(cap, sizeof(*m));
	struct gvm_rb_root t = GVM_RB_ROOT_INIT;
	size_t n = 0;

	ASSERT_TRUE(v && m);
	for (size_t s = 0; s < steps; s++) {
		/* Key space small enough for duplicates; size drifts. */
		uint64_t key = gvm_rng_below(&rng, 3 * cap);
		size_t i = gvm_rng_below(&rng, cap);
		bool full_check = s < 20000 || s % 64 == 0;

		if (!v[i].in) {
			v[i].key = key;
			insert(&t, &v[i]);
			size_t p = model_lower(m, n, key + 1);
			memmove(&m[p + 1], &m[p], (n - p) * sizeof(*m));
			m[p] = key;
			n++;
		} else {
			size_t p = model_lower(m, n, v[i].key);
			ASSERT_LT(p, n);
			ASSERT_EQ(m[p], v[i].key);
			memmove(&m[p], &m[p + 1], (n - p - 1) * sizeof(*m));
			n--;
			gvm__rb_erase(&t, &v[i].rb);
			v[i].in = false;
		}
		ASSERT_EQ(t.count, n);
		if (full_check)
			ASSERT_OK(gvm__rb_validate(&t, item_less));

		/* Lookups. */
		uint64_t q = gvm_rng_below(&rng, 3 * cap + 1);
		size_t p = model_lower(m, n, q);
		struct item *lb = lower_bound(&t, q);
		if (p == n) {
			ASSERT_TRUE(lb == NULL);
		} else {
			ASSERT_TRUE(lb != NULL);
			ASSERT_EQ(lb->key, m[p]);
			struct item *pr = to_item(gvm__rb_prev(&lb->rb));
			if (p == 0)
				ASSERT_TRUE(pr == NULL);
			else
				ASSERT_EQ(pr->key, m[p - 1]);
		}
		if (n) {
			ASSERT_EQ(to_item(gvm__rb_first(&t))->key, m[0]);
			ASSERT_EQ(to_item(gvm__rb_last(&t))->key, m[n - 1]);
		} else {
			ASSERT_TRUE(gvm__rb_first(&t) == NULL);
		}
		if (full_check && s % 512 == 0) {
			size_t k = 0;
			for (struct gvm_rb_node *x = gvm__rb_first(&t); x;
			     x = gvm__rb_next(x))
				ASSERT_EQ(to_item(x)->key, m[k++]);
			ASSERT_EQ(k, n);
			for (struct gvm_rb_node *x = gvm__rb_last(&t); x;
			     x = gvm__rb_prev(x))
				ASSERT_EQ(to_item(x)->key, m[--k]);
			ASSERT_EQ(k, 0);
		}
	}
	free(v);
	free(m);
}
