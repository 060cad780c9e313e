// SPDX-License-Identifier: MIT
/*
 * Wound-wait mutexes (API and protocol in <gvm/ww.h>).
 *
 * The lock word.  m->owner holds the owning acquire context's address (or
 * OWNER_NOCTX for a context-less owner) ORed with OWNER_WAITERS when the slow
 * path is involved.  Uncontended lock and unlock are one compare-and-swap
 * each.  A contender takes m->wait_lock and sets OWNER_WAITERS before it
 * looks at the owner; from then on the owner can only unlock through the slow
 * path, which needs wait_lock, so the owner's context (on the owner's stack)
 * stays alive while a contender holding wait_lock reads or wounds it.
 *
 * Every store of an owner value is a release and every load an acquire, so
 * a contender that sees a context's address also sees its stamp.
 *
 * Sleeping.  Each waiter sleeps on a futex word in its own acquire context
 * (wake_seq); anyone who wants it to re-evaluate bumps the word and wakes it:
 * the unlocker (head waiter only, oldest first), a waiter that leaves
 * without the lock (it wakes the new head, which then re-evaluates the owner
 * and wounds it if younger), and a wounder (the wounded context may be asleep
 * on a different mutex).  A waiter reads wake_seq
 * before testing its wounded flag; the wounder sets wounded before bumping
 * wake_seq (release), so a wound is never missed:
 *
 *   waiter (ctx B)                       wounder (older ctx A)
 *   seq = load_acquire(B.wake_seq)
 *   B.wounded? no                        B.wounded = 1
 *   futex_wait(B.wake_seq, seq)   <----  B.wake_seq++ (release); futex_wake
 *   (returns at once if seq moved)
 *   B.wounded? yes -> -EDEADLK
 *
 * Wound-wait rules, in ww_lock_slow(): a context that must wait while holding
 * locks and has been wounded returns -EDEADLK; a context that must wait for a
 * younger owner wounds it first.  Wounded is cleared when a context starts to
 * lock with no locks held, before it publishes itself as an owner: nobody can
 * wound it then (it owns nothing), and a wound that arrives once it is
 * visible as an owner is kept (clearing after publishing lost wounds and
 * deadlocked the stress test).
 *
 * Locking: m->wait_lock (rank GVM_RANK_WW_WAIT, a leaf) protects m->waiters
 * and serialises slow paths.  The ww mutexes themselves are checked by the
 * lock-rank checker at rank GVM_RANK_RESV (nestable).
 *
 * What it does not do: no wait-die variant, no timeouts on ww locks, no
 * optimistic spinning (the owner may hold a lock across long operations).
 */
#include <errno.h>
#include <limits.h>

#include <gvm/ww.h>

#include "core/list.h"
#include "core/sync.h"

#define OWNER_WAITERS ((uintptr_t)1)
#define OWNER_NOCTX ((uintptr_t)2)
#define OWNER_MASK (~OWNER_WAITERS)

/* An implicit context (ctx == NULL callers) never wounds or gets wounded. */
#define STAMP_IMPLICIT UINT64_MAX

struct ww_waiter {
	struct gvm_list node;		/* in m->waiters, under m->wait_lock */
	struct gvm_ww_acquire_ctx *ctx;
};

static uintptr_t owner_value(const struct gvm_ww_acquire_ctx *ctx)
{
	return ctx->stamp == STAMP_IMPLICIT ? OWNER_NOCTX : (uintptr_t)ctx;
}

void gvm_ww_mutex_init(struct gvm_ww_mutex *m, struct gvm_ww_class *ww_class)
{
	m->owner = 0;
	gvm__mutex_init(&m->wait_lock, "ww wait_lock", GVM_RANK_WW_WAIT);
	gvm_list_init(&m->waiters);
	m->ww_class = ww_class;
}

int gvm_ww_mutex_fini(struct gvm_ww_mutex *m)
{
	if (!m)
		return -EINVAL;
	if (gvm_load_acquire(&m->owner) & OWNER_MASK)
		return -EBUSY;
	gvm__mutex_fini(&m->wait_lock);
	return 0;
}

/*
 * Stamps.  A thread takes them from its class in blocks of STAMP_BLOCK
 * and hands them out one by one: two threads that each start a
 * transaction per call (two binders on two VMs) do not bounce the
 * class's counter line between their CPUs on every call.  Stamps stay
 * unique and increase within a thread; across threads a stamp is older
 * than every one in a later block, so a transaction keeps its age and
 * finitely many are ever older than it (the oldest still always
 * progresses).  A thread's block is for one class; another class (tests
 * make their own) takes a new block.
 */
#define STAMP_BLOCK 64

static _Thread_local struct {
	const struct gvm_ww_class *cls;
	uint64_t next, end;
} stamps;

static uint64_t stamp_take(struct gvm_ww_class *ww_class)
{
	if (stamps.cls != ww_class || stamps.next == stamps.end) {
		stamps.cls = ww_class;
		stamps.next = gvm_fetch_add_relaxed(&ww_class->next_stamp,
						    STAMP_BLOCK);
		stamps.end = stamps.next + STAMP_BLOCK;
	}
	return stamps.next++;
}

void gvm_ww_acquire_init(struct gvm_ww_acquire_ctx *ctx,
			 struct gvm_ww_class *ww_class)
{
	ctx->ww_class = ww_class;
	ctx->stamp = stamp_take(ww_class);
	ctx->acquired = 0;
	ctx->wounded = 0;
	ctx->wake_seq = 0;
	ctx->done = false;
}

void gvm_ww_acquire_done(struct gvm_ww_acquire_ctx *ctx)
{
	gvm_assert(!ctx->done);
	ctx->done = true;
}

int gvm_ww_acquire_fini(struct gvm_ww_acquire_ctx *ctx)
{
	if (!ctx)
		return -EINVAL;
	return ctx->acquired ? -EBUSY : 0;
}

/*
 * A context that holds nothing cannot be wounded (it owns nothing to wait
 * for), so a wound it still carries is stale: forget it.  This must happen
 * before the lock is published, never after: a contender may wound us the
 * moment our ownership is visible, and that wound must stick.
 */
static void ww_forget_stale_wound(struct gvm_ww_acquire_ctx *ctx)
{
	if (ctx && !ctx->acquired)
		gvm_store_relaxed(&ctx->wounded, 0u);
}

static void ww_acquired(struct gvm_ww_mutex *m, struct gvm_ww_acquire_ctx *ctx,
			bool trylock)
{
	gvm__lockrank_acquire(m, GVM_RANK_RESV, m->ww_class->name, trylock);
	if (ctx)
		ctx->acquired++;
}

static void ww_wake(struct gvm_ww_acquire_ctx *ctx)
{
	gvm_fetch_add_acq_rel(&ctx->wake_seq, 1u);
	gvm__futex_wake(&ctx->wake_seq, INT_MAX);
}

static void ww_wound(struct gvm_ww_acquire_ctx *owner)
{
	if (gvm_load_relaxed(&owner->wounded))
		return;
	gvm_store_relaxed(&owner->wounded, 1u);
	ww_wake(owner);
}

static void ww_enqueue(struct gvm_ww_mutex *m, struct ww_waiter *w)
{
	struct gvm_list *pos;

	gvm_list_for_each(pos, &m->waiters) {
		struct ww_waiter *o = gvm_list_entry(pos, struct ww_waiter, node);

		if (w->ctx->stamp < o->ctx->stamp)
			break;
	}
	gvm_list_add_tail(&w->node, pos); /* i.e. before pos */
}

static void ww_wake_head(struct gvm_ww_mutex *m)
{
	if (!gvm_list_empty(&m->waiters))
		ww_wake(gvm_list_first_entry(&m->waiters, struct ww_waiter,
					     node)->ctx);
}

static int ww_lock_slow(struct gvm_ww_mutex *m, struct gvm_ww_acquire_ctx *ctx,
			bool interruptible)
{
	struct ww_waiter w = { .ctx = ctx };
	uintptr_t me = owner_value(ctx);
	bool queued = false;
	int ret;

	gvm__mutex_lock(&m->wait_lock);
	for (;;) {
		uintptr_t o = gvm_load_acquire(&m->owner);
		struct gvm_ww_acquire_ctx *owner;
		uint32_t seq;

		if (!(o & OWNER_MASK)) {
			bool others = queued ? m->waiters.next->next != &m->waiters
					     : !gvm_list_empty(&m->waiters);
			uintptr_t n = me | (others ? OWNER_WAITERS : 0);

			if (gvm_cmpxchg_acq_rel(&m->owner, &o, n)) {
				ret = 0;
				break;
			}
			continue;
		}
		if ((o & OWNER_MASK) == me && me != OWNER_NOCTX) {
			ret = -EALREADY;
			break;
		}
		/* Pin the owner: it must now unlock through wait_lock. */
		if (!(o & OWNER_WAITERS) &&
		    !gvm_cmpxchg_acq_rel(&m->owner, &o, o | OWNER_WAITERS))
			continue;

		seq = gvm_load_acquire(&ctx->wake_seq);
		if (ctx->acquired && gvm_load_relaxed(&ctx->wounded)) {
			ret = -EDEADLK;
			break;
		}
		owner = (struct gvm_ww_acquire_ctx *)(o & OWNER_MASK);
		if ((o & OWNER_MASK) != OWNER_NOCTX &&
		    ctx->stamp < owner->stamp)
			ww_wound(owner);
		if (!queued) {
			ww_enqueue(m, &w);
			queued = true;
		}
		gvm__mutex_unlock(&m->wait_lock);
		ret = gvm__futex_wait(&ctx->wake_seq, seq, -1);
		gvm__mutex_lock(&m->wait_lock);
		if (ret == -EINTR && interruptible)
			break;
	}
	if (queued)
		gvm_list_del(&w.node);
	/*
	 * Leaving without the lock: wake the next waiter, whether or not the
	 * mutex is free.  We may have consumed the unlocker's wake-up (it is
	 * free: someone must take it), or the owner may have changed while we
	 * slept to a context younger than the next waiter, who then has to
	 * wound it.  Only the head is woken on unlock, and we were it; a
	 * waiter that never re-evaluates the new owner never wounds it, and
	 * the two can deadlock.  A waiter that never queued took no wake-up
	 * and owes nothing.
	 */
	if (ret && queued)
		ww_wake_head(m);
	gvm__mutex_unlock(&m->wait_lock);
	return ret;
}

static int ww_lock(struct gvm_ww_mutex *m, struct gvm_ww_acquire_ctx *ctx,
		   bool interruptible)
{
	struct gvm_ww_acquire_ctx implicit = { .stamp = STAMP_IMPLICIT };
	uintptr_t expected = 0;
	int err;

	if (!m)
		return -EINVAL;
	gvm_might_block();
	if (ctx) {
		gvm_assert(!ctx->done);
		gvm_assert(ctx->ww_class == m->ww_class);
	}
	ww_forget_stale_wound(ctx);
	if (gvm_cmpxchg_acq_rel(&m->owner, &expected,
				ctx ? (uintptr_t)ctx : OWNER_NOCTX)) {
		ww_acquired(m, ctx, false);
		return 0;
	}
	err = ww_lock_slow(m, ctx ? ctx : &implicit, interruptible);
	if (!err)
		ww_acquired(m, ctx, false);
	return err;
}

int gvm_ww_mutex_lock(struct gvm_ww_mutex *m, struct gvm_ww_acquire_ctx *ctx)
{
	return ww_lock(m, ctx, false);
}

int gvm_ww_mutex_lock_interruptible(struct gvm_ww_mutex *m,
				    struct gvm_ww_acquire_ctx *ctx)
{
	return ww_lock(m, ctx, true);
}

int gvm_ww_mutex_lock_slow(struct gvm_ww_mutex *m,
			   struct gvm_ww_acquire_ctx *ctx)
{
	if (!ctx || ctx->acquired)
		return -EINVAL;
	return ww_lock(m, ctx, false);
}

int gvm_ww_mutex_lock_slow_interruptible(struct gvm_ww_mutex *m,
					 struct gvm_ww_acquire_ctx *ctx)
{
	if (!ctx || ctx->acquired)
		return -EINVAL;
	return ww_lock(m, ctx, true);
}

bool gvm_ww_mutex_trylock(struct gvm_ww_mutex *m, struct gvm_ww_acquire_ctx *ctx)
{
	uintptr_t expected = 0;

	if (!m)
		return false;
	ww_forget_stale_wound(ctx);
	if (!gvm_cmpxchg_acq_rel(&m->owner, &expected,
				 ctx ? (uintptr_t)ctx : OWNER_NOCTX))
		return false;
	ww_acquired(m, ctx, true);
	return true;
}

void gvm_ww_mutex_unlock(struct gvm_ww_mutex *m)
{
	uintptr_t o;

	/* Unlocking what is not locked is a caller bug: report, change nothing. */
	if (GVM_WARN_ON(!m))
		return;
	o = gvm_load_relaxed(&m->owner);
	if (GVM_WARN_ON(!(o & OWNER_MASK)))
		return;
	gvm__lockrank_release(m);
	if ((o & OWNER_MASK) != OWNER_NOCTX)
		((struct gvm_ww_acquire_ctx *)(o & OWNER_MASK))->acquired--;

	if (!(o & OWNER_WAITERS) && gvm_cmpxchg_release(&m->owner, &o, 0))
		return;
	/* Someone is (or was) in the slow path. */
	gvm__mutex_lock(&m->wait_lock);
	gvm_store_release(&m->owner,
			  gvm_list_empty(&m->waiters) ? 0 : OWNER_WAITERS);
	ww_wake_head(m);
	gvm__mutex_unlock(&m->wait_lock);
}

bool gvm_ww_mutex_is_locked(const struct gvm_ww_mutex *m)
{
	return m && (gvm_load_acquire(&m->owner) & OWNER_MASK);
}

bool gvm_ww_mutex_is_owned_by(const struct gvm_ww_mutex *m,
			      const struct gvm_ww_acquire_ctx *ctx)
{
	return m && ctx &&
	       (gvm_load_relaxed(&m->owner) & OWNER_MASK) == (uintptr_t)ctx;
}
