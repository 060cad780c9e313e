// SPDX-License-Identifier: MIT
/*
 * Reservation objects (API and usage classes in <gvm/resv.h>).
 *
 * The fence set is kept twice, in tables[0] and tables[1], so that readers
 * never take a lock and never wait (the "left-right" technique).  Readers use
 * tables[cur]; a writer (holding the ww lock, so there is one at a time)
 * waits until no reader is inside the other table, rewrites it from the
 * current one plus its change, then flips cur.  The table it left stays
 * intact for readers still inside it, and is only rewritten by the next
 * writer after they have left.
 *
 *   reader                                writer (lock held)
 *   ------                                ------------------
 *   i = cur                               b = !cur
 *   readers[i]++                          wait until readers[b] == 0
 *   cur == i ? else readers[i]--, retry   rewrite tables[b] from tables[cur]
 *   ... read tables[i] ...                cur = b          (publish)
 *   readers[i]--
 *
 * The increment and the re-check of cur (reader) and the flip and the test of
 * readers[] (writer) are sequentially consistent: a reader that passes its
 * re-check is either counted before a writer tests the count, or sees the
 * flip and retries.  Fences in a table are referenced by that table, so a
 * reader may take a reference to any fence it sees.  After a flip the writer
 * empties the old copy at once if no reader is inside it, so replaced fences
 * are released promptly.
 *
 * Capacity.  Writers cannot allocate after the point of no return, so
 * gvm_resv_reserve_fences() grows both tables: invariant, under the lock,
 *	capacity(tables[0]), capacity(tables[1]) >= count(tables[cur]) + reserved
 * Each add consumes one reserved slot and grows the count by at most one.
 *
 * Locking: resv->lock (ww mutex, rank GVM_RANK_RESV) serialises writers and
 * protects tables[!cur], reserved, and the contents of tables[cur] against
 * change.  Fence locks may be taken under it; it is never taken under one.
 *
 * What it does not do: no shared/exclusive distinction beyond usage classes,
 * no implicit-sync policy (callers choose the usage), no timeout on locking.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <gvm/resv.h>

#include "core/alloc.h"
#include "core/sync.h"

struct resv_entry {
	struct gvm_fence *fence;	/* reference held by the table */
	enum gvm_resv_usage usage;
};

struct gvm_resv_table {
	unsigned int count;
	unsigned int capacity;
	struct resv_entry e[];
};

struct gvm_ww_class gvm_resv_ww_class = GVM_WW_CLASS_INIT("reservation");

static bool usage_valid(enum gvm_resv_usage usage)
{
	return (unsigned int)usage <= GVM_RESV_USAGE_BOOKKEEP;
}

void gvm_resv_init(struct gvm_resv *resv)
{
	gvm_ww_mutex_init(&resv->lock, &gvm_resv_ww_class);
	resv->tables[0] = NULL;
	resv->tables[1] = NULL;
	resv->cur = 0;
	resv->readers[0] = 0;
	resv->readers[1] = 0;
	resv->reserved = 0;
}

static unsigned int table_count(const struct gvm_resv_table *t)
{
	return t ? t->count : 0;
}

static void table_clear(struct gvm_resv_table *t)
{
	if (!t)
		return;
	for (unsigned int i = 0; i < t->count; i++)
		gvm_fence_put(t->e[i].fence);
	t->count = 0;
}

/* Grows *@tp to at least @capacity entries; nobody may be reading it. */
static int table_ensure(struct gvm_resv_table **tp, unsigned int capacity)
{
	struct gvm_resv_table *t = *tp;
	unsigned int cap;

	if (t && t->capacity >= capacity)
		return 0;
	if (capacity > (1u << 24))	/* 16M fences on one object: a bug */
		return -ENOMEM;
	cap = t && t->capacity ? t->capacity : 4;
	while (cap < capacity)
		cap *= 2;
	t = gvm__realloc(t, sizeof(*t) + (size_t)cap * sizeof(t->e[0]));
	if (!t)
		return -ENOMEM;
	if (!*tp)
		t->count = 0;
	t->capacity = cap;
	*tp = t;
	return 0;
}

int gvm_resv_fini(struct gvm_resv *resv)
{
	if (!resv)
		return -EINVAL;
	if (gvm_ww_mutex_fini(&resv->lock))
		return -EBUSY;
	for (int i = 0; i < 2; i++) {
		table_clear(resv->tables[i]);
		gvm__free(resv->tables[i]);
		resv->tables[i] = NULL;
	}
	return 0;
}

/* ---- readers ------------------------------------------------------------ */

static const struct gvm_resv_table *resv_read_begin(struct gvm_resv *resv,
						    unsigned int *idx)
{
	for (;;) {
		unsigned int i = gvm_load_seq_cst(&resv->cur);

		gvm_fetch_add_seq_cst(&resv->readers[i], 1u);
		if (gvm_load_seq_cst(&resv->cur) == i) {
			*idx = i;
			return resv->tables[i];
		}
		gvm_fetch_sub_release(&resv->readers[i], 1u);
	}
}

static void resv_read_end(struct gvm_resv *resv, unsigned int idx)
{
	gvm_fetch_sub_release(&resv->readers[idx], 1u);
}

/* ---- writers (lock held) ---------------------------------------------- */

static void resv_wait_readers(struct gvm_resv *resv, unsigned int idx)
{
	for (unsigned int spins = 0; gvm_load_seq_cst(&resv->readers[idx]);
	     spins++) {
		if (spins < 128)
			gvm_cpu_relax();
		else
			gvm__yield();
	}
}

/* True if @newer (at @usage) makes @e redundant. */
static bool entry_replaced_by(const struct resv_entry *e,
			      const struct gvm_fence *newer,
			      enum gvm_resv_usage usage)
{
	return newer && e->fence->context == newer->context &&
	       !gvm_fence_is_later(e->fence, newer) && usage <= e->usage;
}

/*
 * Rewrites the unused table from the current one, dropping signalled fences
 * and those @fence replaces, appending @fence if given, and publishes it.
 */
static void resv_rewrite(struct gvm_resv *resv, struct gvm_fence *fence,
			 enum gvm_resv_usage usage)
{
	unsigned int a = resv->cur, b = a ^ 1u;
	const struct gvm_resv_table *from = resv->tables[a];
	struct gvm_resv_table *to = resv->tables[b];

	resv_wait_readers(resv, b);
	table_clear(to);
	for (unsigned int i = 0; i < table_count(from); i++) {
		const struct resv_entry *e = &from->e[i];

		if (gvm_fence_is_signaled(e->fence) ||
		    entry_replaced_by(e, fence, usage))
			continue;
		to->e[to->count].fence = gvm_fence_get(e->fence);
		to->e[to->count].usage = e->usage;
		to->count++;
	}
	if (fence) {
		GVM_BUG_ON(to->count >= to->capacity);
		to->e[to->count].fence = gvm_fence_get(fence);
		to->e[to->count].usage = usage;
		to->count++;
	}
	gvm_store_seq_cst(&resv->cur, b);

	/*
	 * Release what the old copy references now unless a reader is still
	 * inside it (then the next rewrite does it).  A reader arriving later
	 * re-checks cur, sees the flip and never reads it.
	 */
	if (!gvm_load_seq_cst(&resv->readers[a]))
		table_clear(resv->tables[a]);
}

static int resv_check_locked(struct gvm_resv *resv)
{
	if (!gvm_ww_mutex_is_locked(&resv->lock))
		return -EPERM;
	gvm_lockdep_assert_held(&resv->lock);
	return 0;
}

int gvm_resv_reserve_fences(struct gvm_resv *resv, unsigned int n)
{
	unsigned int need, other;
	int err;

	if (!resv)
		return -EINVAL;
	err = resv_check_locked(resv);
	if (err)
		return err;
	need = table_count(resv->tables[resv->cur]) + resv->reserved;
	if (n > UINT32_MAX / 2 || need + n < need)
		return -EINVAL;
	need += n;

	/* The unused table first: nobody reads it once its readers left. */
	other = resv->cur ^ 1u;
	resv_wait_readers(resv, other);
	err = table_ensure(&resv->tables[other], need);
	if (err)
		return err;
	if (!resv->tables[resv->cur] ||
	    resv->tables[resv->cur]->capacity < need) {
		/* Publish the grown copy, then grow the one readers left. */
		resv_rewrite(resv, NULL, 0);
		other = resv->cur ^ 1u;
		resv_wait_readers(resv, other);
		err = table_ensure(&resv->tables[other], need);
		if (err)
			return err;	/* same fences, just the other copy */
	}
	resv->reserved += n;
	return 0;
}

int gvm_resv_add_fence(struct gvm_resv *resv, struct gvm_fence *fence,
		       enum gvm_resv_usage usage)
{
	int err;

	if (!resv || !fence || !usage_valid(usage))
		return -EINVAL;
	err = resv_check_locked(resv);
	if (err)
		return err;
	if (!resv->reserved)
		return -ENOSPC;
	resv_rewrite(resv, fence, usage);
	resv->reserved--;
	gvm_assert_slow(gvm_resv_validate(resv) == 0);
	return 0;
}

/* ---- locking --------------------------------------------------------------- */

int gvm_resv_lock(struct gvm_resv *resv, struct gvm_ww_acquire_ctx *ctx)
{
	return resv ? gvm_ww_mutex_lock(&resv->lock, ctx) : -EINVAL;
}

int gvm_resv_lock_interruptible(struct gvm_resv *resv,
				struct gvm_ww_acquire_ctx *ctx)
{
	return resv ? gvm_ww_mutex_lock_interruptible(&resv->lock, ctx)
		    : -EINVAL;
}

int gvm_resv_lock_slow(struct gvm_resv *resv, struct gvm_ww_acquire_ctx *ctx)
{
	return resv ? gvm_ww_mutex_lock_slow(&resv->lock, ctx) : -EINVAL;
}

int gvm_resv_lock_slow_interruptible(struct gvm_resv *resv,
				     struct gvm_ww_acquire_ctx *ctx)
{
	return resv ? gvm_ww_mutex_lock_slow_interruptible(&resv->lock, ctx)
		    : -EINVAL;
}

bool gvm_resv_trylock(struct gvm_resv *resv)
{
	return resv && gvm_ww_mutex_trylock(&resv->lock, NULL);
}

void gvm_resv_unlock(struct gvm_resv *resv)
{
	if (GVM_WARN_ON(!resv))
		return;
	if (gvm_ww_mutex_is_locked(&resv->lock))
		resv->reserved = 0;
	gvm_ww_mutex_unlock(&resv->lock);
}

bool gvm_resv_is_locked(const struct gvm_resv *resv)
{
	return resv && gvm_ww_mutex_is_locked(&resv->lock);
}

/* ---- lock-free queries ----------------------------------------------------- */

bool gvm_resv_test_signaled(struct gvm_resv *resv, enum gvm_resv_usage usage)
{
	const struct gvm_resv_table *t;
	bool signaled = true;
	unsigned int idx;

	if (!resv)
		return true;
	t = resv_read_begin(resv, &idx);
	for (unsigned int i = 0; signaled && i < table_count(t); i++)
		if (t->e[i].usage <= usage &&
		    !gvm_fence_is_signaled(t->e[i].fence))
			signaled = false;
	resv_read_end(resv, idx);
	return signaled;
}

int gvm_resv_get_fences(struct gvm_resv *resv, enum gvm_resv_usage usage,
			struct gvm_fence ***fences, unsigned int *count)
{
	const struct gvm_resv_table *t;
	struct gvm_fence **array = NULL;
	unsigned int idx, n = 0;

	if (!resv || !fences || !count || !usage_valid(usage))
		return -EINVAL;
	t = resv_read_begin(resv, &idx);
	for (unsigned int i = 0; i < table_count(t); i++)
		n += t->e[i].usage <= usage;
	if (n) {
		array = gvm__malloc(n * sizeof(*array));
		if (!array) {
			resv_read_end(resv, idx);
			return -ENOMEM;
		}
		n = 0;
		for (unsigned int i = 0; i < table_count(t); i++)
			if (t->e[i].usage <= usage)
				array[n++] = gvm_fence_get(t->e[i].fence);
	}
	resv_read_end(resv, idx);
	*fences = array;
	*count = n;
	return 0;
}

void gvm_resv_put_fences(struct gvm_fence **fences, unsigned int count)
{
	for (unsigned int i = 0; i < count; i++)
		gvm_fence_put(fences[i]);
	gvm__free(fences);
}

int gvm_resv_wait(struct gvm_resv *resv, enum gvm_resv_usage usage,
		  bool interruptible, int64_t timeout_ns)
{
	int64_t deadline = gvm__deadline(timeout_ns);
	struct gvm_fence **fences;
	unsigned int n;
	int err;

	err = gvm_resv_get_fences(resv, usage, &fences, &n);
	if (err)
		return err;
	for (unsigned int i = 0; i < n && !err; i++) {
		int64_t left = -1;

		if (deadline >= 0) {
			left = deadline - gvm__now_ns();
			if (left < 0)
				left = 0;
		}
		err = interruptible ? gvm_fence_wait_interruptible(fences[i], left)
				    : gvm_fence_wait(fences[i], left);
	}
	gvm_resv_put_fences(fences, n);
	return err;
}

int gvm_resv_get_singleton(struct gvm_resv *resv, enum gvm_resv_usage usage,
			   struct gvm_fence **out)
{
	struct gvm_fence **fences;
	unsigned int n;
	int err;

	if (!out)
		return -EINVAL;
	err = gvm_resv_get_fences(resv, usage, &fences, &n);
	if (err)
		return err;
	if (n <= 1) {
		*out = n ? fences[0] : NULL;
		gvm__free(fences);
		return 0;
	}
	err = gvm_fence_array_create(fences, n, gvm_fence_context_alloc(1), 1,
				     out);
	gvm_resv_put_fences(fences, n);
	return err;
}

/* ---- iteration under the lock ---------------------------------------------- */

static struct gvm_fence *resv_iter_scan(struct gvm_resv_iter *it)
{
	const struct gvm_resv_table *t = it->resv->tables[it->resv->cur];

	for (; it->index < table_count(t); it->index++) {
		if (t->e[it->index].usage <= it->usage) {
			it->cur_usage = t->e[it->index].usage;
			return t->e[it->index++].fence;
		}
	}
	return NULL;
}

struct gvm_fence *gvm_resv_iter_first(struct gvm_resv_iter *it,
				      struct gvm_resv *resv,
				      enum gvm_resv_usage usage)
{
	if (!it || !resv || resv_check_locked(resv))
		return NULL;
	it->resv = resv;
	it->usage = usage;
	it->index = 0;
	return resv_iter_scan(it);
}

struct gvm_fence *gvm_resv_iter_next(struct gvm_resv_iter *it)
{
	return it ? resv_iter_scan(it) : NULL;
}

/* ---- validation -------------------------------------------------------- */

#define RESV_CHECK(cond)                                                    \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "gvm_resv_validate: %s\n", #cond);  \
			return -EINVAL;                                     \
		}                                                           \
	} while (0)

int gvm_resv_validate(struct gvm_resv *resv)
{
	const struct gvm_resv_table *t;

	if (!resv)
		return -EINVAL;
	RESV_CHECK(resv->cur <= 1);
	t = resv->tables[resv->cur];
	for (int i = 0; i < 2; i++) {
		const struct gvm_resv_table *x = resv->tables[i];

		RESV_CHECK(!x || x->count <= x->capacity);
		if (resv->reserved)
			RESV_CHECK(x && x->capacity >=
					       table_count(t) + resv->reserved);
	}
	for (unsigned int i = 0; i < table_count(t); i++) {
		RESV_CHECK(t->e[i].fence);
		RESV_CHECK(usage_valid(t->e[i].usage));
		RESV_CHECK(gvm__ref_read(&t->e[i].fence->refcount) > 0);
	}
	return 0;
}
