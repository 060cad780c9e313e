// SPDX-License-Identifier: MIT
/*
 * Lock sets: the wound-wait retry loop for reservation objects (API and usage
 * in <gvm/lockset.h>).
 *
 * One run of the caller's block locks objects one by one under the set's
 * acquire context.  The first -EDEADLK marks the run contended; from then on
 * every call of the run fails fast with -EDEADLK, so the block falls through
 * to gvm_lockset_retry_on_contention() and the loop condition,
 * gvm_lockset_cleanup(), which drops every lock and then sleeps until it owns
 * the contended object (gvm_resv_lock_slow()).  The next run starts with that
 * object already locked ("prelocked"); when the block asks for it, it is
 * simply accounted.  The acquire context, and so its age, is kept across
 * runs, which is what guarantees progress: the oldest transaction is never
 * wounded.
 *
 *   FIRST --cleanup--> RUNNING --(block ends, not contended)--> DONE
 *                        ^   |
 *                        +---+ contended: unlock all, lock contended slowly
 *
 * Locking: the set is private to one thread; the reservation locks it takes
 * are ranked GVM_RANK_RESV (nestable).  An error while sleeping on the
 * contended object (-EINTR) is sticky for the run: every lock call returns it.
 *
 * What it does not do: no references on the objects (the caller keeps them
 * alive), no validation or eviction of buffer objects (the VM layer's job).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/lockset.h>

#include "core/alloc.h"
#include "core/debug.h"
#include "core/sync.h"

enum { LS_FIRST, LS_RUNNING, LS_DONE };

#define LS_FLAGS (GVM_LOCKSET_INTERRUPTIBLE | GVM_LOCKSET_IGNORE_DUPLICATES)

int gvm_lockset_init(struct gvm_lockset *ls, uint32_t flags)
{
	if (!ls || (flags & ~LS_FLAGS))
		return -EINVAL;
	memset(ls, 0, sizeof(*ls));
	ls->flags = flags;
	ls->state = LS_FIRST;
	ls->objs = ls->inline_objs;
	ls->max_objs = GVM_ARRAY_SIZE(ls->inline_objs);
	gvm_ww_acquire_init(&ls->ctx, &gvm_resv_ww_class);
	return 0;
}

static void lockset_unlock_all(struct gvm_lockset *ls)
{
	while (ls->nr_objs)
		gvm_resv_unlock(ls->objs[--ls->nr_objs]);
	ls->prelocked = NULL;
}

void gvm_lockset_fini(struct gvm_lockset *ls)
{
	if (!ls)
		return;
	lockset_unlock_all(ls);
	if (ls->objs != ls->inline_objs)
		gvm__free(ls->objs);
	ls->objs = ls->inline_objs;
	ls->max_objs = 0;
	gvm_ww_acquire_fini(&ls->ctx);
}

/* Makes room for one more object. */
static int lockset_grow(struct gvm_lockset *ls)
{
	struct gvm_resv **objs;
	unsigned int max;

	if (ls->nr_objs < ls->max_objs)
		return 0;
	max = ls->max_objs * 2;
	if (ls->objs == ls->inline_objs) {
		objs = gvm__malloc(max * sizeof(*objs));
		if (objs)
			memcpy(objs, ls->objs, ls->nr_objs * sizeof(*objs));
	} else {
		objs = gvm__realloc(ls->objs, max * sizeof(*objs));
	}
	if (!objs)
		return -ENOMEM;
	ls->objs = objs;
	ls->max_objs = max;
	return 0;
}

bool gvm_lockset_cleanup(struct gvm_lockset *ls)
{
	struct gvm_resv *contended;
	int err;

	switch (ls->state) {
	case LS_FIRST:
		ls->state = LS_RUNNING;
		return true;
	case LS_RUNNING:
		if (!ls->contended) {
			gvm_ww_acquire_done(&ls->ctx);
			ls->state = LS_DONE;
			return false;
		}
		break;
	default:
		return false;
	}

	/* Back off: drop everything, wait for the object we lost on. */
	contended = ls->contended;
	ls->contended = NULL;
	lockset_unlock_all(ls);
	err = lockset_grow(ls);
	if (!err)
		err = ls->flags & GVM_LOCKSET_INTERRUPTIBLE
			      ? gvm_resv_lock_slow_interruptible(contended,
								 &ls->ctx)
			      : gvm_resv_lock_slow(contended, &ls->ctx);
	if (err) {
		ls->error = err;
	} else {
		ls->objs[ls->nr_objs++] = contended;
		ls->prelocked = contended;
	}
	return true;
}

bool gvm_lockset_is_contended(const struct gvm_lockset *ls)
{
	return ls && ls->contended;
}

int gvm_lockset_lock(struct gvm_lockset *ls, struct gvm_resv *resv)
{
	int err;

	if (!ls || !resv)
		return -EINVAL;
	gvm_assert(ls->state == LS_RUNNING);
	if (ls->error)
		return ls->error;
	if (ls->contended)
		return -EDEADLK;
	if (resv == ls->prelocked) {
		ls->prelocked = NULL;
		return 0;
	}
	err = lockset_grow(ls);
	if (err)
		return err;

	err = ls->flags & GVM_LOCKSET_INTERRUPTIBLE
		      ? gvm_resv_lock_interruptible(resv, &ls->ctx)
		      : gvm_resv_lock(resv, &ls->ctx);
	switch (err) {
	case 0:
		ls->objs[ls->nr_objs++] = resv;
		return 0;
	case -EDEADLK:
		ls->contended = resv;
		return err;
	case -EALREADY:
		return ls->flags & GVM_LOCKSET_IGNORE_DUPLICATES ? 0 : err;
	default:
		return err;
	}
}

int gvm_lockset_prepare(struct gvm_lockset *ls, struct gvm_resv *resv,
			unsigned int num_fences)
{
	int err = gvm_lockset_lock(ls, resv);

	if (err || !num_fences)
		return err;
	return gvm_resv_reserve_fences(resv, num_fences);
}

int gvm_lockset_prepare_array(struct gvm_lockset *ls,
			      struct gvm_resv *const *resvs, unsigned int n,
			      unsigned int num_fences)
{
	if (n && !resvs)
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++) {
		int err = gvm_lockset_prepare(ls, resvs[i], num_fences);

		if (err)
			return err;
	}
	return 0;
}

int gvm_lockset_unlock(struct gvm_lockset *ls, struct gvm_resv *resv)
{
	if (!ls || !resv)
		return -EINVAL;
	for (unsigned int i = ls->nr_objs; i-- > 0;) {
		if (ls->objs[i] != resv)
			continue;
		memmove(&ls->objs[i], &ls->objs[i + 1],
			(ls->nr_objs - i - 1) * sizeof(ls->objs[0]));
		ls->nr_objs--;
		if (ls->prelocked == resv)
			ls->prelocked = NULL;
		gvm_resv_unlock(resv);
		return 0;
	}
	return -ENOENT;
}
