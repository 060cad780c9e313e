// SPDX-License-Identifier: MIT
/*
 * Memory attributes of a VM's address range: gvm_vm_madvise(),
 * gvm_vm_query_attrs() (<gvm/svm.h>) and the store svm.c reads.
 *
 * A VM keeps the stretches whose attributes differ from the defaults in an
 * interval tree (vm->attrs): disjoint, adjacent equal stretches merged,
 * so a VM nobody advised has an empty tree and a fault's lookup is one
 * empty-tree test.  Setting [lo, hi) rebuilds the hull of the stretches it
 * touches (its equal neighbours included, so they merge) as a list of
 * pieces cut at every boundary, all allocated before anything changes
 * (struct attr_update): a failure leaves the store as it was.  The parts
 * whose value changes are handed to svm.c, which drops the SVM ranges
 * there before the update commits (gvm__svm_attrs_changed): their next
 * fault makes them under the new attributes.  A range dropped for an
 * update that then fails is no change anyone can see: it refaults the
 * same.
 *
 * Auto-reset.  An UNMAP invalidation of an SVM chunk (userptr.c) notes the
 * span here (gvm__attrs_note_unmap: under notifier_lock, no allocation,
 * a short log; when it is full the log is marked overflowed and the
 * reset instead checks every stretch against the CPU's mappings) and asks
 * the device's collector to run.  The collector, every GPU fault, madvise
 * and query then reset those spans to the defaults under vm->lock
 * (gvm__attrs_reset_unmapped).  Events come only for memory registered
 * with the mm and inside a chunk: madvise registers what the CPU maps in
 * its range (watch()), GPU faults what they touch.
 *
 * Locking: vm->attrs and the stretches by vm->lock.  The unmap log
 * (vm->attr_unmapped) by vm->notifier_lock; vm->attrs_present is written
 * under both, so either reads it.  A stretch with GVM_LOC_DEVICE holds a
 * reference on its device.
 */
#include "vm/attr.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/dev.h"
#include "vm/svm.h"
#include "vm/userptr.h"
#include "vm/vm.h"

#define K4 (4ull << 10)
#define K64 (64ull << 10)
#define M2 (2ull << 20)

struct stretch {
	uint64_t start, end;
	struct gvm_mem_attrs a;			/* a.dev: a reference */
};

static const struct gvm_mem_attrs defaults;

static bool attrs_eq(const struct gvm_mem_attrs *x,
		     const struct gvm_mem_attrs *y)
{
	return x->preferred_loc == y->preferred_loc &&
	       x->atomic == y->atomic && x->dev == y->dev &&
	       x->pat == y->pat && x->granularity == y->granularity;
}

static void stretch_free(struct stretch *s)
{
	if (s->a.dev)
		gvm_device_put(s->a.dev);
	gvm__free(s);
}

void gvm__attrs_init(struct gvm_vm *vm)
{
	gvm__itree_init(&vm->attrs);
}

void gvm__attrs_fini(struct gvm_vm *vm)
{
	struct gvm_itree_iter it;
	struct stretch *s;

	while ((s = gvm__itree_iter_first(&vm->attrs, &it, 0, UINT64_MAX))) {
		gvm__itree_remove(&vm->attrs, s->start, s);
		stretch_free(s);
	}
	gvm__itree_fini(&vm->attrs);
}

void gvm__attrs_get(struct gvm_vm *vm, uint64_t addr,
		    struct gvm_mem_attrs *out)
{
	struct stretch *s;

	gvm_lockdep_assert_held(&vm->lock);
	s = gvm__itree_empty(&vm->attrs) ? NULL :
	    gvm__itree_find(&vm->attrs, addr);
	*out = s ? s->a : defaults;
}

bool gvm__attrs_uniform(struct gvm_vm *vm, uint64_t addr, uint64_t size)
{
	uint64_t start, last;

	gvm_lockdep_assert_held(&vm->lock);
	if (gvm__itree_empty(&vm->attrs) ||
	    !gvm__itree_find_first(&vm->attrs, addr, addr + size - 1, &start,
				   &last))
		return true;
	return start <= addr && last >= addr + size - 1;
}

/* ---- updates ------------------------------------------------------------ */

struct span {
	uint64_t start, end;
};

/*
 * A prepared change of [lo, hi): the stretches it replaces, the ones that
 * replace them (allocated, device references taken) and the spans whose
 * attributes change.
 */
struct attr_update {
	struct stretch **old;
	size_t nr_old, cap_old;
	struct stretch **new;
	size_t nr_new, cap_new;
	struct span *chg;
	size_t nr_chg, cap_chg;
};

static void update_fini(struct attr_update *u, bool committed)
{
	size_t i;

	/* Committed: the old stretches go; else the new ones never came. */
	if (committed)
		for (i = 0; i < u->nr_old; i++)
			stretch_free(u->old[i]);
	else
		for (i = 0; i < u->nr_new; i++)
			stretch_free(u->new[i]);
	gvm__free(u->old);
	gvm__free(u->new);
	gvm__free(u->chg);
}

static struct gvm_mem_attrs apply(const struct gvm_mem_attrs *old,
				  uint32_t set, const struct gvm_mem_attrs *v)
{
	struct gvm_mem_attrs a = *old;

	if (set & GVM_MADV_PREFERRED_LOC) {
		a.preferred_loc = v->preferred_loc;
		a.dev = v->preferred_loc == GVM_LOC_DEVICE ? v->dev : NULL;
	}
	if (set & GVM_MADV_ATOMIC)
		a.atomic = v->atomic;
	if (set & GVM_MADV_PAT)
		a.pat = v->pat;
	if (set & GVM_MADV_GRANULARITY)
		a.granularity = v->granularity;
	return a;
}

/* Appends piece [start, end) with @a to @u, merged with the last one. */
static int add_piece(struct attr_update *u, uint64_t start, uint64_t end,
		     const struct gvm_mem_attrs *a)
{
	struct stretch *s, *last = u->nr_new ? u->new[u->nr_new - 1] : NULL;

	if (last && last->end == start && attrs_eq(&last->a, a)) {
		last->end = end;
		return 0;
	}
	if (attrs_eq(a, &defaults))
		return 0;
	if (GVM_GROW(u->new, u->cap_new, u->nr_new + 1))
		return -ENOMEM;
	s = gvm__malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->start = start;
	s->end = end;
	s->a = *a;
	if (a->dev)
		gvm_device_get(a->dev);
	u->new[u->nr_new++] = s;
	return 0;
}

static int add_change(struct attr_update *u, uint64_t start, uint64_t end)
{
	if (u->nr_chg && u->chg[u->nr_chg - 1].end == start) {
		u->chg[u->nr_chg - 1].end = end;
		return 0;
	}
	if (GVM_GROW(u->chg, u->cap_chg, u->nr_chg + 1))
		return -ENOMEM;
	u->chg[u->nr_chg].start = start;
	u->chg[u->nr_chg++].end = end;
	return 0;
}

/*
 * Prepares setting @set of @v over [lo, hi).  The hull considered reaches
 * one byte past each end, so equal neighbours join the rebuild and merge.
 */
static int update_prepare(struct gvm_vm *vm, uint64_t lo, uint64_t hi,
			  uint32_t set, const struct gvm_mem_attrs *v,
			  struct attr_update *u)
{
	uint64_t qlo = lo ? lo - 1 : 0, a = lo, b = hi, pos;
	struct gvm_itree_iter it;
	struct stretch *s;
	size_t i = 0;
	int err;

	memset(u, 0, sizeof(*u));
	for (s = gvm__itree_iter_first(&vm->attrs, &it, qlo, hi); s;
	     s = gvm__itree_iter_next(&it)) {
		if (GVM_GROW(u->old, u->cap_old, u->nr_old + 1))
			return -ENOMEM;
		u->old[u->nr_old++] = s;
		if (s->start < a)
			a = s->start;
		if (s->end > b)
			b = s->end;
	}
	/* Cut [a, b) at every boundary: lo, hi, and the stretches' ends. */
	for (pos = a; pos < b;) {
		const struct gvm_mem_attrs *old = &defaults;
		struct gvm_mem_attrs na;
		uint64_t next = b;

		while (i < u->nr_old && u->old[i]->end <= pos)
			i++;
		if (i < u->nr_old) {
			if (u->old[i]->start <= pos) {
				old = &u->old[i]->a;
				next = u->old[i]->end;
			} else {
				next = u->old[i]->start;
			}
		}
		if (pos < lo && next > lo)
			next = lo;
		if (pos < hi && next > hi)
			next = hi;
		na = pos >= lo && pos < hi ? apply(old, set, v) : *old;
		err = add_piece(u, pos, next, &na);
		if (!err && !attrs_eq(&na, old))
			err = add_change(u, pos, next);
		if (err)
			return err;
		pos = next;
	}
	return gvm__itree_reserve(&vm->attrs, u->nr_new);
}

static void update_commit(struct gvm_vm *vm, struct attr_update *u)
{
	size_t i;

	for (i = 0; i < u->nr_old; i++)
		gvm__itree_remove(&vm->attrs, u->old[i]->start, u->old[i]);
	for (i = 0; i < u->nr_new; i++)	/* reserved: cannot fail */
		gvm__itree_insert(&vm->attrs, u->new[i]->start,
				  u->new[i]->end - 1, u->new[i]);
	gvm__itree_unreserve(&vm->attrs);
	gvm__mutex_lock(&vm->notifier_lock);
	vm->attrs_present = !gvm__itree_empty(&vm->attrs);
	gvm__mutex_unlock(&vm->notifier_lock);
}

/*
 * Sets @set of @v over [lo, hi); with @drop, the SVM ranges where a value
 * changes are dropped first.  vm->lock held.  0, -ENOMEM (nothing
 * changed).
 */
static int attrs_set(struct gvm_vm *vm, uint64_t lo, uint64_t hi,
		     uint32_t set, const struct gvm_mem_attrs *v, bool drop)
{
	struct attr_update u;
	size_t i;
	int err;

	err = update_prepare(vm, lo, hi, set, v, &u);
	if (err) {
		update_fini(&u, false);
		return err;
	}
	for (i = 0; !err && drop && i < u.nr_chg; i++)
		err = gvm__svm_attrs_changed(vm, u.chg[i].start, u.chg[i].end);
	if (!err && u.nr_chg) {
		update_commit(vm, &u);
		update_fini(&u, true);
		return 0;
	}
	gvm__itree_unreserve(&vm->attrs);
	update_fini(&u, false);
	return err;
}

/* ---- auto-reset ------------------------------------------------------- */

bool gvm__attrs_note_unmap(struct gvm_vm *vm, uint64_t start, uint64_t end)
{
	struct gvm_attr_unmap_log *l = &vm->attr_unmapped;

	gvm_lockdep_assert_held(&vm->notifier_lock);
	if (!vm->attrs_present)
		return false;
	if (l->nr && l->span[l->nr - 1].end == start)
		l->span[l->nr - 1].end = end;
	else if (l->nr < GVM_ATTR_UNMAP_LOG) {
		l->span[l->nr].start = start;
		l->span[l->nr++].end = end;
	} else {
		l->overflow = true;
	}
	return true;
}

/*
 * The log overflowed: every stretch's parts the CPU does not map now go
 * back to the defaults.  (A part unmapped and mapped again meanwhile keeps
 * its attributes: the one thing the log would have told.)
 */
static void reset_all_unmapped(struct gvm_vm *vm)
{
	struct span *gone = NULL;
	size_t nr = 0, cap = 0, i;
	struct gvm_itree_iter it;
	struct stretch *s;

	for (s = gvm__itree_iter_first(&vm->attrs, &it, 0, UINT64_MAX); s;
	     s = gvm__itree_iter_next(&it)) {
		uint64_t a = s->start, to;
		struct gvm_mm_vma m;

		while (a < s->end) {
			bool found = !gvm__mm_lookup(vm->mm, a,
						     GVM_MM_LOOKUP_NEXT, &m);

			if (found && m.start <= a) {	/* mapped */
				a = m.end;
				continue;
			}
			to = found && m.start < s->end ? m.start : s->end;
			if (GVM_GROW(gone, cap, nr + 1))
				goto out;
			gone[nr].start = a;
			gone[nr++].end = to;
			a = to;
		}
	}
out:
	for (i = 0; i < nr; i++)
		attrs_set(vm, gone[i].start, gone[i].end, GVM_MADV_ALL,
			  &defaults, false);
	gvm__free(gone);
}

void gvm__attrs_reset_unmapped(struct gvm_vm *vm)
{
	struct gvm_attr_unmap_log l;
	uint32_t i;

	gvm_lockdep_assert_held(&vm->lock);
	gvm__mutex_lock(&vm->notifier_lock);
	l = vm->attr_unmapped;
	vm->attr_unmapped.nr = 0;
	vm->attr_unmapped.overflow = false;
	gvm__mutex_unlock(&vm->notifier_lock);
	if (l.overflow) {
		reset_all_unmapped(vm);
		return;
	}
	/*
	 * The ranges there are the collector's (their memory went); a reset
	 * that fails (-ENOMEM) is retried by the overflow path next time.
	 */
	for (i = 0; i < l.nr; i++)
		if (attrs_set(vm, l.span[i].start, l.span[i].end,
			      GVM_MADV_ALL, &defaults, false)) {
			gvm__mutex_lock(&vm->notifier_lock);
			vm->attr_unmapped.overflow = true;
			gvm__mutex_unlock(&vm->notifier_lock);
			return;
		}
}

/*
 * Has the mm report unmaps of what the CPU maps in [lo, hi) (chunks and
 * registration, as a GPU fault would do).  Best effort: memory the mm
 * cannot watch keeps its attributes after an unmap.
 */
static void watch(struct gvm_vm *vm, uint64_t lo, uint64_t hi)
{
	struct gvm_mm_vma m;
	uint64_t a = lo;

	while (a < hi && !gvm__mm_lookup(vm->mm, a, GVM_MM_LOOKUP_NEXT, &m) &&
	       m.start < hi) {
		uint64_t s = m.start > a ? m.start : a;
		uint64_t e = m.end < hi ? m.end : hi;

		if ((m.prot & (PROT_READ | PROT_WRITE)) &&
		    !gvm__userptr_chunks_watch(vm, s, e))
			gvm__mm_register(vm->mm, s, e - s);
		a = m.end;
	}
}

/* ---- the calls -------------------------------------------------------- */

static bool range_ok(struct gvm_vm *vm, uint64_t addr, uint64_t range)
{
	uint64_t va_end = 1ull << vm->dev->desc.va_bits;

	return range && !((addr | range) & (K4 - 1)) && addr + range > addr &&
	       addr + range <= va_end;
}

static int check_advice(struct gvm_vm *vm, const struct gvm_madvise *adv)
{
	const struct gvm_mem_attrs *a = &adv->attrs;

	if (!adv->set || (adv->set & ~GVM_MADV_ALL) ||
	    (adv->flags & ~GVM_MADV_STRICT) || a->reserved)
		return -EINVAL;
	if (adv->set & GVM_MADV_PREFERRED_LOC) {
		if (a->preferred_loc > GVM_LOC_DEVICE ||
		    (a->preferred_loc == GVM_LOC_DEVICE) != !!a->dev)
			return -EINVAL;
		if (a->dev && (adv->flags & GVM_MADV_STRICT) &&
		    !gvm_device_linked(vm->dev, a->dev))
			return -ENOLINK;
	}
	if ((adv->set & GVM_MADV_ATOMIC) && a->atomic > GVM_ATOMIC_CPU)
		return -EINVAL;
	if ((adv->set & GVM_MADV_PAT) && a->pat > GVM_PAT_MAX)
		return -EINVAL;
	if ((adv->set & GVM_MADV_GRANULARITY) && a->granularity &&
	    a->granularity != K4 && a->granularity != K64 &&
	    a->granularity != M2)
		return -EINVAL;
	return 0;
}

int gvm_vm_madvise(struct gvm_vm *vm, uint64_t addr, uint64_t range,
		   const struct gvm_madvise *adv)
{
	int err;

	if (!vm || !adv || !range_ok(vm, addr, range))
		return -EINVAL;
	err = check_advice(vm, adv);
	if (err)
		return err;
	if (!vm->mm)
		return -EOPNOTSUPP;
	gvm_lockdep_assert_none_held();
	/* The application's unmaps before this call reset first. */
	gvm__mm_flush(vm->mm);
	gvm__mutex_lock(&vm->lock);
	gvm__attrs_reset_unmapped(vm);
	err = attrs_set(vm, addr, addr + range, adv->set, &adv->attrs, true);
	if (!err && vm->attrs_present)
		watch(vm, addr, addr + range);
	gvm__mutex_unlock(&vm->lock);
	gvm__vm_reap(vm);		/* dropped ranges, no lock held */
	return err;
}

int gvm_vm_query_attrs(struct gvm_vm *vm, uint64_t addr, uint64_t range,
		       struct gvm_attr_range *out, uint32_t *n)
{
	uint64_t end = addr + range, pos = addr;
	struct gvm_itree_iter it;
	uint32_t cap, nr = 0;
	struct stretch *s;

	if (!vm || !n || !range_ok(vm, addr, range))
		return -EINVAL;
	if (!vm->mm)
		return -EOPNOTSUPP;
	gvm__might_fault();
	cap = out ? *n : 0;
	gvm_lockdep_assert_none_held();
	gvm__mm_flush(vm->mm);
	gvm__mutex_lock(&vm->lock);
	gvm__attrs_reset_unmapped(vm);
	s = gvm__itree_iter_first(&vm->attrs, &it, addr, end - 1);
	while (pos < end) {
		struct gvm_attr_range r = { .addr = pos };

		if (s && s->start <= pos) {
			r.range = (s->end < end ? s->end : end) - pos;
			r.attrs = s->a;
			s = gvm__itree_iter_next(&it);
		} else {
			r.range = (s ? s->start : end) - pos;
		}
		if (nr < cap) {
			gvm__might_fault();	/* under vm->lock only */
			out[nr] = r;
		}
		nr++;
		pos += r.range;
	}
	gvm__mutex_unlock(&vm->lock);
	gvm__put_out(n, nr);
	return out && nr > cap ? -ENOSPC : 0;
}
