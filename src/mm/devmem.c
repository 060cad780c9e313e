// SPDX-License-Identifier: MIT
/*
 * Device-private emulation: CPU pages whose data lives in device memory.
 *
 * Linux lets a driver migrate anonymous pages to device memory: the CPU
 * page-table entries then point at "device-private" pages the CPU cannot
 * touch, and a CPU access faults into the driver, which migrates the data
 * back (dev_pagemap_ops.migrate_to_ram).  A process cannot create such
 * pages, so gvm emulates them with the backend's help (mm.h, "device-private
 * emulation"; self.c does it with userfaultfd):
 *
 *   to device (gvm__mm_migrate_to_devmem, called by SVM's fault path):
 *     devmem_lock
 *     invalidate [start, end) (MIGRATE) ........ every GPU mapping of the
 *     |                                          CPU pages is gone
 *     |  change, readers wait (notifier.h):
 *     |    register the range "missing" ....... a CPU access will fault
 *     |    take: CPU pages -> empty stage ...... the CPU range is empty
 *     |    copy stage -> device memory
 *     |    record the extent [start, end) -> (devmem, offset)
 *     end of invalidation
 *   back (a CPU access faults: gvm__mm_devmem_fault from the backend; or
 *   gvm__mm_migrate_to_ram, e.g. a userptr or another device fetching):
 *     devmem_lock
 *     invalidate the extent (MIGRATE) .......... no GPU maps the device copy
 *     |  change: give_copy: the CPU copies from the device's CPU window
 *     |          (dm ops cpu_addr) into the CPU pages (UFFDIO_COPY; wakes
 *     |          the faulting threads); or, without a window, for an
 *     |          extent above gvm__mm_devmem_cpu_back_max, or if a page
 *     |          could not be filled: copy device memory -> stage (copy
 *     |          engine); give: stage -> CPU pages (wakes); or, for an
 *     |          extent taken as one huge page (mm.h, take): the CPU
 *     |          copies from the window into a stage of one huge
 *     |          page, give moves it back whole (back_huge);
 *     |          the CPU's again: "not missing" (mm ops unmiss:
 *     |          registering with fewer modes keeps MISSING);
 *     |          drop the extent and its reference on the devmem
 *     end of invalidation
 *   across (gvm__mm_devmem_move, SVM's placement moving a range from one
 *   device's memory to a linked device's; called with the new device
 *   memory made):
 *     devmem_lock
 *     invalidate the extent (MIGRATE) .......... no GPU maps the old copy,
 *     |                                          the peers' mappings of
 *     |                                          it included
 *     |  change: new devmem's copy_from: old device memory -> new
 *     |          (one copy-engine copy over the link, no stage);
 *     |          the extent refers to the new devmem; the old one's
 *     |          reference goes (unused, release: freed)
 *     end of invalidation
 *   The CPU pages stay absent and "missing" throughout: a CPU access
 *   meanwhile waits for devmem_lock, then comes back from the new
 *   memory.  A copy error changes nothing: the data stays in the old
 *   memory, and the caller moves it through system memory or leaves it.
 *
 * The CPU's way back is the default because it is faster at every size
 * measured (bench faultback_way_*, docs/svm.md): a copy-engine job costs
 * two thread hand-offs, and the stage's freshly moved pages are slow to
 * touch first under shadow paging.
 *
 * Taking the pages only after the invalidation, inside it, is what makes
 * it safe: no device reaches the CPU pages when they go, and no user can
 * fetch them during the change and commit a mapping of them (they retry),
 * so no engine ever touches an emptied CPU page (it would block in the
 * backend's fault, and the fault-back would wait for that engine's TLB
 * invalidation).  A migration is whole: one extent, back in one piece
 * (a range never mixes system and device pages).
 *
 * The CPU may change the range meanwhile (the backend reports it):
 * unmap/discard drops those pages' device data (a valid-page bitmap per
 * extent, so no allocation is needed and a partial munmap keeps the rest),
 * out of the mm before the event's invalidation and freed only in its
 * change (gvm__mm_devmem_discard_begin/_end, mm.h);
 * mremap moves it with the pages (an extent moved into the span of another
 * trims or splits that one: spans never overlap, ext_make_room); fork
 * migrates everything back first
 * (fork_prepare, from pthread_atfork in self.c), so the child's copy of
 * the pages has the data.  A registration (gvm__mm_register) of memory
 * that has extents keeps them registered "missing", after waiting for the
 * backend's pending events (gvm__mm_sync), so that an extent left over
 * from a mapping that was unmapped but whose event is not processed yet
 * never lends its data to a new mapping at the same address.
 *
 * Eviction (gvm__mm_devmem_evict): the owner of device memory that needs
 * it back names the devmem, not a CPU range (it does not know where the
 * CPU maps its data now: mremap moves extents and may split one into
 * several sharing the devmem); every extent of the mm whose data is in it
 * goes back as above.  Each devmem counts the extents that refer to it
 * (under devmem_lock) and its owner hears when the last one went (ops
 * unused), so the owner knows which devmems are still worth evicting and
 * when the mm (perhaps in its teardown) no longer refers to one.
 *
 * Locking: devmem_lock (GVM_RANK_MM, per mm) protects the extent tree and
 * every extent and is held across a whole migration, including its
 * invalidation; it is taken with at most vm->lock held (SVM's fault
 * path, and SVM eviction) or none (the backend's fault handler, an
 * allocation that waits for VRAM).  Notifier callbacks never
 * take it and nothing they wait for needs it.  A devmem's reference count
 * is atomic; its owner's copy runs under devmem_lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/debug.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "mm/mm.h"

#define PAGES_MAX (GVM_MM_STAGE_MAX >> GVM_MM_PAGE_SHIFT)

/* A CPU range whose data is in device memory. */
struct devmem_ext {
	struct gvm_mm *mm;		/* constant */
	uint64_t start, len;		/* CPU range, len <= STAGE_MAX */
	uint64_t valid[PAGES_MAX / 64];	/* pages whose data it holds */
	struct gvm_mm_devmem *dm;	/* reference */
	uint64_t off;			/* in dm, of start */
	bool huge;			/* constant: taken as one huge page */
	struct stage_dm *spare;		/* a migration's, until it ends */
	bool inserted;			/* in the tree (a migration's) */
	bool faulted;			/* a CPU access is bringing it
					   back (ops faulted called) */
	bool going_back;		/* its move back began (ops to_ram
					   called) */
};

/*
 * A stage standing in for device memory.  A migration to device memory
 * takes the CPU pages into a stage, then copies them; if the copy fails
 * they are given back, but if the backend cannot give them now (-EAGAIN:
 * an event is pending, and the migration holds devmem_lock, which the
 * event's processing may need), the stage itself becomes the range's
 * "device memory": owned by no device (so no GPU maps it), copied from
 * with memcpy, and released to the pool with the last extent using it.
 * The next CPU touch or fetch brings the data back like any other.
 * Allocated with the migration, so that this path cannot fail.
 */
struct stage_dm {
	struct gvm_mm_devmem dm;
	struct gvm_mm *mm;
	uint64_t stage;
};

static int stage_dm_copy(struct gvm_mm_devmem *dm, uint64_t off, uint64_t sys,
			 uint64_t len, bool to_ram, void (*meanwhile)(void *),
			 void *arg)
{
	struct stage_dm *sd = gvm_container_of(dm, struct stage_dm, dm);
	void *there = (void *)(uintptr_t)(sd->stage + off);
	void *here = (void *)(uintptr_t)sys;

	memcpy(to_ram ? here : there, to_ram ? there : here, len);
	if (meanwhile)
		meanwhile(arg);
	return 0;
}

static void stage_dm_release(struct gvm_mm_devmem *dm)
{
	struct stage_dm *sd = gvm_container_of(dm, struct stage_dm, dm);

	sd->mm->ops->stage_put(sd->mm, sd->stage, false);
	gvm__free(sd);
}

static const struct gvm_mm_devmem_ops stage_dm_ops = {
	.copy = stage_dm_copy,
	.release = stage_dm_release,
};

void gvm__mm_devmem_init(struct gvm_mm_devmem *dm,
			 const struct gvm_mm_devmem_ops *ops,
			 const void *owner, uint64_t size)
{
	gvm__ref_init(&dm->ref);
	dm->ops = ops;
	dm->owner = owner;
	dm->size = size;
	dm->extents = 0;
}

void gvm__mm_devmem_get(struct gvm_mm_devmem *dm)
{
	gvm__ref_get(&dm->ref);
}

void gvm__mm_devmem_put(struct gvm_mm_devmem *dm)
{
	if (dm && gvm__ref_put(&dm->ref))
		dm->ops->release(dm);
}

/* ---- extents ------------------------------------------------------- */

static bool page_valid(const struct devmem_ext *e, uint64_t i)
{
	return e->valid[i / 64] & (1ull << (i % 64));
}

static void set_valid(struct devmem_ext *e, uint64_t i, bool v)
{
	if (v)
		e->valid[i / 64] |= 1ull << (i % 64);
	else
		e->valid[i / 64] &= ~(1ull << (i % 64));
}

static bool ext_empty(const struct devmem_ext *e)
{
	for (size_t i = 0; i < PAGES_MAX / 64; i++)
		if (e->valid[i])
			return false;
	return true;
}

/* Every page of @e holds its data (nothing of it was discarded). */
static bool ext_full(const struct devmem_ext *e)
{
	for (uint64_t i = 0; i < e->len >> GVM_MM_PAGE_SHIFT; i++)
		if (!page_valid(e, i))
			return false;
	return true;
}

static struct devmem_ext *ext_first(struct gvm_mm *mm, uint64_t start,
				    uint64_t len)
{
	return gvm__itree_find_first(&mm->devmem, start, start + len - 1,
				     NULL, NULL);
}

/* The first extent over [start, start + len) whose data is in @dm (any
   device memory if NULL). */
static struct devmem_ext *ext_first_of(struct gvm_mm *mm, uint64_t start,
				       uint64_t len,
				       const struct gvm_mm_devmem *dm)
{
	struct gvm_itree_iter it;
	struct devmem_ext *e;

	if (!dm)
		return ext_first(mm, start, len);
	for (e = gvm__itree_iter_first(&mm->devmem, &it, start,
				       start + len - 1);
	     e; e = gvm__itree_iter_next(&it))
		if (e->dm == dm)
			return e;
	return NULL;
}

/* Extents come and go with devmem_lock held; devmem_nr is a lock-free hint. */
static void ext_insert(struct gvm_mm *mm, struct devmem_ext *e)
{
	e->inserted = true;
	/* Reserved by the caller: cannot fail. */
	GVM_BUG_ON(gvm__itree_insert(&mm->devmem, e->start,
				     e->start + e->len - 1, e) != 0);
	gvm_store_relaxed(&mm->devmem_nr, gvm_load_relaxed(&mm->devmem_nr) + 1);
	e->dm->extents++;
}

/* An extent let go of @dm; its owner hears when the last one did. */
static void dm_unref(struct gvm_mm_devmem *dm)
{
	if (!--dm->extents && dm->ops->unused)
		dm->ops->unused(dm);
	gvm__mm_devmem_put(dm);
}

/* Extent @e goes. */
static void ext_free(struct gvm_mm *mm, struct devmem_ext *e)
{
	GVM_BUG_ON(gvm__itree_remove(&mm->devmem, e->start, e) != 0);
	gvm_store_relaxed(&mm->devmem_nr, gvm_load_relaxed(&mm->devmem_nr) - 1);
	dm_unref(e->dm);
	gvm__free(e);
}

/*
 * The next run of valid pages of @e at or after page *@i: [*i, *i + n)
 * with n returned (0: none left).
 */
static uint64_t next_run(const struct devmem_ext *e, uint64_t *i)
{
	uint64_t pages = e->len >> GVM_MM_PAGE_SHIFT, j;

	while (*i < pages && !page_valid(e, *i))
		(*i)++;
	for (j = *i; j < pages && page_valid(e, j); j++)
		;
	return j - *i;
}

/* The CPU's again (inside the invalidation; best effort). */
static void cpu_owns(struct gvm_mm *mm, uint64_t start, uint64_t len)
{
	if (mm->ops->unmiss)
		mm->ops->unmiss(mm, start, len);
	else
		mm->ops->register_range(mm, start, len, false);
}

/* ---- migration ----------------------------------------------------- */

/*
 * The skeleton every move shares (devmem_lock held): @change runs inside
 * a MIGRATE invalidation of [start, start + len), once no GPU maps the
 * range any more and while no user can fetch it (they retry).
 */
static int migrate_locked(struct gvm_mm *mm, uint64_t start, uint64_t len,
			  int (*change)(void *arg), void *arg)
{
	struct gvm_notifier_range r = {
		.start = start,
		.last = start + len - 1,
		.event = GVM_MM_EVENT_MIGRATE,
	};

	gvm_lockdep_assert_held(&mm->devmem_lock);
	return gvm__notifier_invalidate_change(mm, &r, change, arg);
}

/*
 * The copy to device memory failed after the take: the pages go back.
 * What cannot go back now (-EAGAIN, see struct stage_dm) stays in the
 * stage, which becomes the extent's memory.  True if it did.
 */
static bool give_back(struct devmem_ext *e, uint64_t stage)
{
	struct gvm_mm *mm = e->mm;
	struct stage_dm *sd = e->spare;
	uint64_t done = 0, i;

	if (mm->ops->give(mm, e->start, e->len, stage, &done) != -EAGAIN) {
		cpu_owns(mm, e->start, e->len);
		return false;
	}
	if (done)
		cpu_owns(mm, e->start, done);
	for (i = 0; i < done >> GVM_MM_PAGE_SHIFT; i++)
		set_valid(e, i, false);
	gvm__mm_devmem_init(&sd->dm, &stage_dm_ops, NULL, e->len);
	sd->mm = mm;
	sd->stage = stage;
	e->spare = NULL;
	e->dm = &sd->dm;		/* its one reference */
	e->off = 0;
	ext_insert(mm, e);
	return true;
}

/* The copy's meanwhile: the next take's stage (mm ops stage_tidy). */
static void tidy_stage(void *arg)
{
	struct gvm_mm *mm = arg;

	mm->ops->stage_tidy(mm);
}

/* Inside the invalidation: take the pages, copy them, record extent @arg. */
static int to_dev_change(void *arg)
{
	struct devmem_ext *e = arg;
	struct gvm_mm *mm = e->mm;
	uint64_t stage;
	int err;

	err = mm->ops->stage_get(mm, GVM_MM_STAGE_EMPTY, &stage);
	if (err)
		return err;
	err = mm->ops->register_range(mm, e->start, e->len, true);
	if (err) {
		mm->ops->stage_put(mm, stage, true);
		return err;
	}
	err = mm->ops->take(mm, e->start, e->len, stage, &e->huge);
	if (err == -EINPROGRESS) {
		/* Part of it is in the stage: back as after a failed copy. */
		if (!give_back(e, stage))
			mm->ops->stage_put(mm, stage, true);
		return -EBUSY;
	}
	if (err) {
		cpu_owns(mm, e->start, e->len);
		mm->ops->stage_put(mm, stage, true);
		return err;
	}
	err = e->dm->ops->copy(e->dm, e->off, stage, e->len, false,
			       mm->ops->stage_tidy ? tidy_stage : NULL, mm);
	if (err) {
		/* back: nobody saw them gone (or into the stage's keeping) */
		if (!give_back(e, stage))
			mm->ops->stage_put(mm, stage, true);
		return err;
	}
	/* Copied, not recorded: an invalidation now (INVAL). */
	gvm__mm_inject_inval(mm, e->start, e->len);
	mm->ops->stage_put(mm, stage, false);	/* its pages stay, for reuse */
	ext_insert(mm, e);
	gvm__mm_devmem_get(e->dm);
	return 0;
}

int gvm__mm_migrate_to_devmem(struct gvm_mm *mm, uint64_t start, uint64_t len,
			      struct gvm_mm_devmem *dm)
{
	struct devmem_ext *e;
	struct stage_dm *spare;
	uint64_t i;
	int err;

	if (!gvm__mm_devmem_supported(mm))
		return -EOPNOTSUPP;
	if (!gvm__mm_range_ok(start, len) || len > GVM_MM_STAGE_MAX ||
	    !dm || len > dm->size)
		return -EINVAL;
	e = gvm__calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->mm = mm;
	e->start = start;
	e->len = len;
	e->dm = dm;
	e->spare = gvm__calloc(1, sizeof(*e->spare));
	if (!e->spare) {
		gvm__free(e);
		return -ENOMEM;
	}
	for (i = 0; i < len >> GVM_MM_PAGE_SHIFT; i++)
		set_valid(e, i, true);

	gvm__mutex_lock(&mm->devmem_lock);
	if (mm->devmem_frozen) {
		err = -EAGAIN;
		goto out_unlock;
	}
	if (ext_first(mm, start, len)) {
		err = -EEXIST;
		goto out_unlock;
	}
	err = gvm__itree_reserve(&mm->devmem, 1);
	if (err)
		goto out_unlock;
	err = migrate_locked(mm, start, len, to_dev_change, e);
	gvm__itree_unreserve(&mm->devmem);
out_unlock:
	/* Once inserted, @e is the tree's: read it under the lock. */
	spare = e->spare;
	if (e->inserted)
		e = NULL;
	gvm__mutex_unlock(&mm->devmem_lock);
	gvm__free(spare);
	gvm__free(e);
	return err;
}

/* A direct move: extent @e's data goes to @dm (move_change). */
struct devmem_move {
	struct devmem_ext *e;
	struct gvm_mm_devmem *dm;
};

/*
 * Inside the invalidation of the move's extent: @dm copies the data from
 * the extent's device memory, then the extent refers to @dm.  The CPU
 * pages stay absent and registered missing all along; the valid bitmap
 * does not change.  On a copy error nothing changed.
 */
static int move_change(void *arg)
{
	struct devmem_move *m = arg;
	struct devmem_ext *e = m->e;
	struct gvm_mm_devmem *old = e->dm;
	int err;

	err = m->dm->ops->copy_from(m->dm, 0, old, e->off, e->len);
	if (err)
		return err;
	/* Copied, the extent still on the old memory (INVAL). */
	gvm__mm_inject_inval(e->mm, e->start, e->len);
	gvm__mm_devmem_get(m->dm);
	m->dm->extents++;
	e->dm = m->dm;
	e->off = 0;
	e->faulted = e->going_back = false;	/* the new memory's */
	dm_unref(old);		/* no GPU maps it: we are inside the
				   invalidation */
	return 0;
}

int gvm__mm_devmem_move(struct gvm_mm *mm, uint64_t start, uint64_t len,
			struct gvm_mm_devmem *dm)
{
	struct devmem_move m = { .dm = dm };
	struct devmem_ext *e;
	int err;

	if (!gvm__mm_range_ok(start, len) || len > GVM_MM_STAGE_MAX ||
	    !dm || len > dm->size)
		return -EINVAL;
	if (!dm->ops->copy_from)
		return -EXDEV;
	gvm__mutex_lock(&mm->devmem_lock);
	e = ext_first(mm, start, len);
	if (mm->devmem_frozen)
		err = -EAGAIN;
	else if (!e)
		err = -ENOENT;
	else if (e->dm->owner == dm->owner)
		err = -EEXIST;
	else if (e->start != start || e->len != len || !ext_full(e) ||
		 e->going_back)
		err = -EXDEV;	/* not one whole migration, or on its way
				   back to system memory (counted so) */
	else
		err = 0;
	if (!err) {
		m.e = e;
		err = migrate_locked(mm, start, len, move_change, &m);
	}
	gvm__mutex_unlock(&mm->devmem_lock);
	return err;
}

uint64_t gvm__mm_devmem_cpu_back_max = GVM_MM_CPU_BACK_MAX;
void (*gvm__mm_back_wait_hook)(struct gvm_mm *mm);

/*
 * Back by the CPU (see gvm__mm_devmem_cpu_back_max): each valid run of @e
 * copied from the device's CPU window straight into its CPU pages (one
 * UFFDIO_COPY per run, which also wakes the faulting threads), with no
 * copy-engine job, stage or page move.  What was filled is the CPU's at
 * once (cpu_owns, no longer valid in @e): the CPU threads it woke may
 * write there, so a GPU must not map the device copy of it, even if the
 * rest has to wait (-EAGAIN below).  False if this way is not open or a
 * page could not be filled; the caller then goes the stage's way with
 * the pages left.
 */
static bool to_ram_by_cpu(struct devmem_ext *e)
{
	struct gvm_mm *mm = e->mm;
	uint64_t src, i = 0, n, j;

	if (e->len > gvm_load_relaxed(&gvm__mm_devmem_cpu_back_max) ||
	    !mm->ops->give_copy || !e->dm->ops->cpu_addr)
		return false;
	src = e->dm->ops->cpu_addr(e->dm, e->off, e->len);
	if (!src)
		return false;
	while ((n = next_run(e, &i))) {
		uint64_t b = i << GVM_MM_PAGE_SHIFT, done = 0;
		int err = mm->ops->give_copy(mm, e->start + b,
					     n << GVM_MM_PAGE_SHIFT, src + b,
					     &done);

		if (done)
			cpu_owns(mm, e->start + b, done);
		for (j = 0; j < done >> GVM_MM_PAGE_SHIFT; j++)
			set_valid(e, i + j, false);
		if (err)
			return false;
		i += n;
	}
	return true;
}

/*
 * A huge page goes back as one (mm.h, take): whole, where it was taken,
 * CPU-copied from the device's window into a stage holding one huge page
 * (or none: the copy faults one in), then moved.  Else @e goes the ways below.
 */
static bool back_huge(const struct devmem_ext *e)
{
	return e->huge && e->len == GVM_MM_STAGE_MAX &&
	       !(e->start & (GVM_MM_STAGE_MAX - 1)) && ext_full(e) &&
	       e->dm->ops->cpu_addr;
}

/* @e's data into @stage: by the CPU from the window (@by_cpu), or the
   device's copy. */
static int stage_fill(struct devmem_ext *e, uint64_t stage, bool by_cpu)
{
	uint64_t src = by_cpu ? e->dm->ops->cpu_addr(e->dm, e->off, e->len) :
				0;

	if (!src)
		return e->dm->ops->copy(e->dm, e->off, stage, e->len, true,
					NULL, NULL);
	memcpy((void *)(uintptr_t)stage, (const void *)(uintptr_t)src,
	       e->len);
	return 0;
}

/*
 * Inside the invalidation of extent @arg: its data back into the CPU
 * pages, then the extent goes.  A copy that fails twice poisons the
 * pages (a CPU access gets SIGBUS) rather than hand out stale or zeroed
 * data.  -EAGAIN: the backend could give only part of it (an event is
 * pending, mm.h); the extent stays with the pages not given, their data
 * still in device memory.
 */
static int to_ram_change(void *arg)
{
	struct devmem_ext *e = arg;
	struct gvm_mm *mm = e->mm;
	bool huge = back_huge(e);
	uint64_t stage, i = 0, n, j;
	int err, tries;

	/* Told once, before any CPU thread waiting for it is woken. */
	if (!e->going_back && e->dm->ops->to_ram)
		e->dm->ops->to_ram(e->dm, e->len);
	e->going_back = true;
	if (!huge && to_ram_by_cpu(e)) {
		/* Given back, the extent not yet dropped (INVAL). */
		gvm__mm_inject_inval(mm, e->start, e->len);
		ext_free(mm, e);
		return 0;
	}
	err = mm->ops->stage_get(mm, huge ? GVM_MM_STAGE_HUGE :
						 GVM_MM_STAGE_FULL, &stage);
	if (err)
		return err;
	for (tries = 0; tries < 2; tries++) {
		err = stage_fill(e, stage, huge);
		if (!err)
			break;
	}
	/* Copied into the stage, not yet given back (INVAL). */
	if (!err)
		gvm__mm_inject_inval(mm, e->start, e->len);
	while ((n = next_run(e, &i))) {
		uint64_t b = i << GVM_MM_PAGE_SHIFT, len, done;

		len = n << GVM_MM_PAGE_SHIFT;
		done = len;
		if (err) {
			fprintf(stderr, "gvm: device memory lost for "
				"[0x%llx, +0x%llx) (%d): poisoned\n",
				(unsigned long long)(e->start + b),
				(unsigned long long)len, err);
			mm->ops->poison(mm, e->start + b, len);
		} else {
			int gerr = mm->ops->give(mm, e->start + b, len,
						 stage + b, &done);

			if (gerr == -EAGAIN) {
				err = -EAGAIN;
			} else if (gerr) {
				/* The rest of the run: poisoned, never
				   zero pages where data was. */
				fprintf(stderr, "gvm: giving back "
					"[0x%llx, +0x%llx) failed (%d): "
					"poisoned\n",
					(unsigned long long)(e->start + b +
							     done),
					(unsigned long long)(len - done),
					gerr);
				mm->ops->poison(mm, e->start + b + done,
						len - done);
				done = len;
			}
		}
		/* What was given (or poisoned) is the CPU's again. */
		if (done)
			cpu_owns(mm, e->start + b, done);
		for (j = 0; j < done >> GVM_MM_PAGE_SHIFT; j++)
			set_valid(e, i + j, false);
		if (err == -EAGAIN)
			break;
		i += n;
	}
	/* Invalid runs' pages may still be in the stage. */
	mm->ops->stage_put(mm, stage, false);
	if (err != -EAGAIN)
		ext_free(mm, e);
	return err;
}

/* devmem_lock held: migrates extent @e back, whole. */
static int migrate_back_locked(struct gvm_mm *mm, struct devmem_ext *e)
{
	return migrate_locked(mm, e->start, e->len, to_ram_change, e);
}

/*
 * devmem_lock held: every extent overlapping [start, start + len) back,
 * only those whose data is in @dm if it is not NULL.  An extent the
 * backend could not give whole (-EAGAIN) is retried once the events in
 * the way are read: devmem_lock is dropped meanwhile (the event thread
 * may need it to process them) and taken again.  One that failed
 * otherwise and is still there (no stage to give it through) is left,
 * and the walk goes on after it: trying it again at once would fail
 * again, for ever.  The first error is returned.
 */
static int migrate_back_all_locked(struct gvm_mm *mm, uint64_t start,
				   uint64_t len,
				   const struct gvm_mm_devmem *dm)
{
	uint64_t a = start, end = start + len;
	struct devmem_ext *e;
	int err, ret = 0;

	while (a < end && (e = ext_first_of(mm, a, end - a, dm))) {
		uint64_t next = e->start + e->len;	/* e may go */

		err = migrate_back_locked(mm, e);
		if (err == -EAGAIN) {
			mm->devmem_waits++;
			gvm__mutex_unlock(&mm->devmem_lock);
			if (gvm__mm_back_wait_hook)
				gvm__mm_back_wait_hook(mm);
			gvm__mm_sync(mm);
			gvm__mutex_lock(&mm->devmem_lock);
		} else if (err) {
			ret = ret ? ret : err;
			a = next;
		}
	}
	return ret;
}

int gvm__mm_migrate_to_ram(struct gvm_mm *mm, uint64_t start, uint64_t len)
{
	int ret;

	if (!gvm__mm_range_ok(start, len))
		return -EINVAL;
	gvm__mutex_lock(&mm->devmem_lock);
	ret = migrate_back_all_locked(mm, start, len, NULL);
	gvm__mutex_unlock(&mm->devmem_lock);
	return ret;
}

int gvm__mm_devmem_evict(struct gvm_mm *mm, struct gvm_mm_devmem *dm)
{
	int ret = -ENOENT;

	gvm__mutex_lock(&mm->devmem_lock);
	if (ext_first_of(mm, 0, UINT64_MAX, dm))
		ret = migrate_back_all_locked(mm, 0, UINT64_MAX, dm);
	gvm__mutex_unlock(&mm->devmem_lock);
	return ret;
}

int gvm__mm_devmem_fault(struct gvm_mm *mm, uint64_t addr,
			 int (*absent)(struct gvm_mm *mm, uint64_t page))
{
	uint64_t page = addr & ~(GVM_MM_PAGE_SIZE - 1);
	struct devmem_ext *e;
	int err = -ENOENT;

	gvm__mutex_lock(&mm->devmem_lock);
	e = ext_first(mm, page, GVM_MM_PAGE_SIZE);
	if (!(e && page_valid(e, (addr - e->start) >> GVM_MM_PAGE_SHIFT))) {
		if (absent)
			err = absent(mm, page);
	} else {
		/* Told before the move, which wakes the faulting threads;
		   once per extent (a retry after -EAGAIN is the same). */
		if (!e->faulted && e->dm->ops->faulted)
			e->dm->ops->faulted(e->dm);
		e->faulted = true;
		err = migrate_back_locked(mm, e);
	}
	gvm__mutex_unlock(&mm->devmem_lock);
	return err;
}

struct gvm_mm_devmem *gvm__mm_devmem_lookup(struct gvm_mm *mm, uint64_t start,
					    uint64_t len, const void *owner,
					    uint64_t *off, bool *other)
{
	struct gvm_mm_devmem *dm = NULL;
	struct devmem_ext *e;
	uint64_t i;

	*other = false;
	if (!gvm_load_relaxed(&mm->devmem_nr))	/* hint, rechecked */
		return NULL;
	gvm__mutex_lock(&mm->devmem_lock);
	e = ext_first(mm, start, len);
	if (!e)
		goto out;
	*other = true;
	if ((owner && e->dm->owner != owner) || start < e->start ||
	    start + len > e->start + e->len)
		goto out;
	for (i = (start - e->start) >> GVM_MM_PAGE_SHIFT;
	     i < (start + len - e->start) >> GVM_MM_PAGE_SHIFT; i++)
		if (!page_valid(e, i))
			goto out;
	*other = false;
	dm = e->dm;
	gvm__mm_devmem_get(dm);
	*off = e->off + (start - e->start);
out:
	gvm__mutex_unlock(&mm->devmem_lock);
	return dm;
}

/* ---- changes the CPU made -------------------------------------------- */

/* Drops the pages of [start, end) from @e; false if none is left. */
static bool ext_trim(struct devmem_ext *e, uint64_t start, uint64_t end)
{
	for (uint64_t i = 0; i < e->len >> GVM_MM_PAGE_SHIFT; i++) {
		uint64_t a = e->start + (i << GVM_MM_PAGE_SHIFT);

		if (a >= start && a < end)
			set_valid(e, i, false);
	}
	return !ext_empty(e);
}

/*
 * devmem_lock held: the device data of [start, end) dropped; with @d, the
 * memory of the extents it empties held, and it stops when @d is full
 * (the rest is for a later discard).
 */
static void discard_locked(struct gvm_mm *mm, uint64_t start, uint64_t end,
			   struct gvm_mm_discard *d)
{
	uint64_t a = start;
	struct devmem_ext *e;

	/* Extents do not overlap: walk them by address. */
	while (a < end && (!d || d->nr < GVM_MM_DISCARD_HELD) &&
	       (e = ext_first(mm, a, end - a))) {
		a = e->start + e->len;
		if (ext_trim(e, start, end))
			continue;
		if (d) {
			gvm__mm_devmem_get(e->dm);
			d->held[d->nr++] = e->dm;
		}
		ext_free(mm, e);
	}
}

void gvm__mm_devmem_discard_begin(struct gvm_mm *mm, uint64_t start,
				  uint64_t len, struct gvm_mm_discard *d)
{
	d->nr = 0;
	if (!len || start + len < start || !gvm_load_relaxed(&mm->devmem_nr))
		return;
	gvm__mutex_lock(&mm->devmem_lock);
	discard_locked(mm, start, start + len, d);
	gvm__mutex_unlock(&mm->devmem_lock);
}

void gvm__mm_devmem_discard_end(struct gvm_mm_discard *d)
{
	for (unsigned int i = 0; i < d->nr; i++)
		gvm__mm_devmem_put(d->held[i]);
	d->nr = 0;
}

void gvm__mm_devmem_discard(struct gvm_mm *mm, uint64_t start, uint64_t len)
{
	if (!len || start + len < start)
		return;
	gvm__mutex_lock(&mm->devmem_lock);
	discard_locked(mm, start, start + len, NULL);
	gvm__mutex_unlock(&mm->devmem_lock);
}

/*
 * The part of @e inside [from, from + len), moved by @to - @from: a new
 * extent sharing @e's device memory.  NULL if @e has no valid page there
 * or on allocation failure (*@err).
 */
static struct devmem_ext *ext_split_moved(struct gvm_mm *mm,
					  struct devmem_ext *e, uint64_t from,
					  uint64_t to, uint64_t len, int *err)
{
	uint64_t lo = e->start > from ? e->start : from;
	uint64_t hi = e->start + e->len < from + len ? e->start + e->len :
						       from + len;
	struct devmem_ext *m;
	uint64_t i, j;

	m = gvm__calloc(1, sizeof(*m));
	if (!m) {
		*err = -ENOMEM;
		return NULL;
	}
	m->mm = mm;
	m->start = lo - from + to;
	m->len = hi - lo;
	m->dm = e->dm;
	m->off = e->off + (lo - e->start);
	m->huge = e->huge;	/* back_huge: only if it is still whole */
	for (i = 0, j = (lo - e->start) >> GVM_MM_PAGE_SHIFT;
	     i < m->len >> GVM_MM_PAGE_SHIFT; i++, j++)
		set_valid(m, i, page_valid(e, j));
	if (ext_empty(m)) {
		gvm__free(m);
		return NULL;
	}
	*err = gvm__itree_reserve(&mm->devmem, 1);
	if (*err) {
		gvm__free(m);
		return NULL;
	}
	gvm__mm_devmem_get(m->dm);
	/*
	 * Counted at once, not at its insertion: the caller frees the
	 * extent it comes from before inserting it, and the devmem must not
	 * look unused meanwhile (its owner would take it off the eviction
	 * LRU for good: VRAM nobody can evict).  gvm__mm_devmem_remap drops
	 * this count once the extent is in.
	 */
	m->dm->extents++;
	return m;
}

/*
 * [start, start + len) of @x as an extent of its own (not inserted, its
 * devmem referenced but not counted), NULL if none of its pages holds
 * data there or out of memory.
 */
static struct devmem_ext *ext_part(struct gvm_mm *mm,
				   const struct devmem_ext *x, uint64_t start,
				   uint64_t len)
{
	struct devmem_ext *r = gvm__calloc(1, sizeof(*r));
	uint64_t i, j = (start - x->start) >> GVM_MM_PAGE_SHIFT;

	if (!r)
		return NULL;
	r->mm = mm;
	r->dm = x->dm;
	r->start = start;
	r->len = len;
	r->off = x->off + (start - x->start);
	r->huge = x->huge;
	for (i = 0; i < len >> GVM_MM_PAGE_SHIFT; i++)
		set_valid(r, i, page_valid(x, i + j));
	if (ext_empty(r)) {
		gvm__free(r);
		return NULL;
	}
	gvm__mm_devmem_get(r->dm);
	return r;
}

/*
 * Makes room for @m, a moved extent about to be inserted: an extent whose
 * span overlaps m's holds no data there (the destination of a move was
 * unmapped first, which trimmed it; a move may leave holes in the middle
 * of an extent), so it gives that part of its span up - trimmed at one
 * end, or split around @m.  Spans stay disjoint, which every walk by
 * address (ext_first, then past its end) relies on: an extent inside
 * another's span would be missed by them.  @more: inserts to come after
 * this one's (for the reservation).  False if a split is out of memory
 * (nothing changed).
 */
static bool ext_make_room(struct gvm_mm *mm, const struct devmem_ext *m,
			  size_t more)
{
	uint64_t ms = m->start, me = m->start + m->len;
	struct devmem_ext *x;

	while ((x = ext_first(mm, ms, m->len))) {
		uint64_t xs = x->start, xe = x->start + x->len;
		struct devmem_ext *left = NULL, *right = NULL;
		bool need_left = false, need_right = false;

		for (uint64_t a = xs; a < xe; a += GVM_MM_PAGE_SIZE) {
			if (!page_valid(x, (a - xs) >> GVM_MM_PAGE_SHIFT))
				continue;
			need_left |= a < ms;
			need_right |= a >= me;
			/* no data of x where m goes: the destination of a
			   move was free */
			GVM_WARN_ON(a >= ms && a < me);
		}
		if ((need_left || need_right) &&
		    gvm__itree_reserve(&mm->devmem, more + 2))
			return false;
		if (need_left)
			left = ext_part(mm, x, xs, ms - xs);
		if (need_right)
			right = ext_part(mm, x, me, xe - me);
		if ((need_left && !left) || (need_right && !right)) {
			if (left)
				gvm__mm_devmem_put(left->dm);
			if (right)
				gvm__mm_devmem_put(right->dm);
			gvm__free(left);
			gvm__free(right);
			return false;
		}
		/* the parts replace x (counted before x's count goes) */
		if (left)
			ext_insert(mm, left);
		if (right)
			ext_insert(mm, right);
		ext_free(mm, x);
	}
	return true;
}

void gvm__mm_devmem_remap(struct gvm_mm *mm, uint64_t from, uint64_t to,
			  uint64_t len)
{
	struct devmem_ext *e, *moved[PAGES_MAX];
	size_t nr = 0, k;
	uint64_t a = from, end = from + len;
	int err = 0;

	if (!len || end < from)
		return;
	gvm__mutex_lock(&mm->devmem_lock);
	/*
	 * Each extent's part inside the moved range becomes an extent at
	 * the new address (inserted after the walk, as the destination may
	 * overlap the source); the rest of the extent stays.  The pages
	 * the kernel moved are absent and keep their "missing"
	 * registration (mremap carries it along), so a CPU access at the
	 * new address faults here.  Out of memory, the moved part's data
	 * cannot follow: its pages are poisoned (SIGBUS), never zeroed.
	 */
	while (a < end && (e = ext_first(mm, a, end - a))) {
		struct devmem_ext *m;

		a = e->start + e->len;
		m = nr < PAGES_MAX ? ext_split_moved(mm, e, from, to, len,
						     &err) : NULL;
		if (m) {
			moved[nr++] = m;
		} else if (err || nr == PAGES_MAX) {
			uint64_t lo = e->start > from ? e->start : from;
			uint64_t hi = a < end ? a : end;

			fprintf(stderr, "gvm: mremap of device-resident "
				"memory: out of memory, [0x%llx, +0x%llx) "
				"poisoned\n",
				(unsigned long long)(lo - from + to),
				(unsigned long long)(hi - lo));
			mm->ops->poison(mm, lo - from + to, hi - lo);
			err = 0;
		}
		if (!ext_trim(e, from, end))
			ext_free(mm, e);
	}
	for (k = 0; k < nr; k++) {
		struct devmem_ext *m = moved[k];

		if (!ext_make_room(mm, m, nr - k)) {
			fprintf(stderr, "gvm: mremap of device-resident "
				"memory: out of memory, [0x%llx, +0x%llx) "
				"poisoned\n", (unsigned long long)m->start,
				(unsigned long long)m->len);
			mm->ops->poison(mm, m->start, m->len);
			dm_unref(m->dm);	/* ext_split_moved's count */
			gvm__free(m);
			continue;
		}
		ext_insert(mm, m);
		m->dm->extents--;	/* ext_split_moved's count */
	}
	if (mm->devmem.reserved)
		gvm__itree_unreserve(&mm->devmem);
	gvm__mutex_unlock(&mm->devmem_lock);
}

void gvm__mm_devmem_fork_prepare(struct gvm_mm *mm)
{
	gvm__mutex_lock(&mm->devmem_lock);
	migrate_back_all_locked(mm, 0, UINT64_MAX, NULL);
	mm->devmem_frozen = true;
	gvm__mutex_unlock(&mm->devmem_lock);
}

void gvm__mm_devmem_fork_done(struct gvm_mm *mm)
{
	gvm__mutex_lock(&mm->devmem_lock);
	mm->devmem_frozen = false;
	gvm__mutex_unlock(&mm->devmem_lock);
}

uint64_t gvm__mm_devmem_waits(struct gvm_mm *mm)
{
	uint64_t n;

	gvm__mutex_lock(&mm->devmem_lock);
	n = mm->devmem_waits;
	gvm__mutex_unlock(&mm->devmem_lock);
	return n;
}

uint64_t gvm__mm_devmem_bytes(struct gvm_mm *mm)
{
	struct gvm_itree_iter it;
	struct devmem_ext *e;
	uint64_t bytes = 0, i;

	gvm__mutex_lock(&mm->devmem_lock);
	for (e = gvm__itree_iter_first(&mm->devmem, &it, 0, UINT64_MAX); e;
	     e = gvm__itree_iter_next(&it))
		for (i = 0; i < e->len >> GVM_MM_PAGE_SHIFT; i++)
			if (page_valid(e, i))
				bytes += GVM_MM_PAGE_SIZE;
	gvm__mutex_unlock(&mm->devmem_lock);
	return bytes;
}

/* ---- registration and teardown ---------------------------------------- */

int gvm__mm_register(struct gvm_mm *mm, uint64_t start, uint64_t len)
{
	struct devmem_ext *e;
	uint64_t a = start, end = start + len;
	int err;

	if (!gvm__mm_range_ok(start, len))
		return -EINVAL;
	if (!gvm_load_relaxed(&mm->devmem_nr))	/* hint, see below */
		return mm->ops->register_range(mm, start, len, false);
	/*
	 * Extents overlap (or did a moment ago): first let the backend
	 * process the changes already made, so that an extent of memory
	 * unmapped meanwhile is gone before a new mapping there is
	 * registered.  Without extents the hint may be stale only for a
	 * migration that runs now, which registers its range itself.
	 */
	err = gvm__mm_sync(mm);
	if (err)
		return err;
	/*
	 * Piece by piece, so that a page whose data is in device memory is
	 * never registered without MISSING, not even for a moment: a CPU
	 * access then would get a fresh zero page instead of its data.
	 */
	gvm__mutex_lock(&mm->devmem_lock);
	err = 0;
	while (!err && a < end) {
		uint64_t from, to, i;

		e = ext_first(mm, a, end - a);
		from = e ? (e->start > a ? e->start : a) : end;
		if (from > a)
			err = mm->ops->register_range(mm, a, from - a, false);
		if (!e || err)
			break;
		to = e->start + e->len < end ? e->start + e->len : end;
		/* runs of equal validity inside [from, to) */
		for (a = from; !err && a < to; a = from) {
			bool v = page_valid(e, (a - e->start) >>
						       GVM_MM_PAGE_SHIFT);

			for (from = a; from < to; from += GVM_MM_PAGE_SIZE) {
				i = (from - e->start) >> GVM_MM_PAGE_SHIFT;
				if (page_valid(e, i) != v)
					break;
			}
			err = mm->ops->register_range(mm, a, from - a, v);
		}
	}
	gvm__mutex_unlock(&mm->devmem_lock);
	return err;
}

void gvm__mm_devmem_fini(struct gvm_mm *mm)
{
	struct devmem_ext *e;

	/* The process let go of the mm: the data has nowhere to go. */
	while ((e = ext_first(mm, 0, UINT64_MAX)))
		ext_free(mm, e);
	gvm__itree_fini(&mm->devmem);
	gvm__mutex_fini(&mm->devmem_lock);
}
