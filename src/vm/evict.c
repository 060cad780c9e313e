// SPDX-License-Identifier: MIT
/*
 * Eviction: making room in VRAM by moving buffer objects to system memory.
 *
 * Every BO resident in VRAM is on its device's LRU list, least recently
 * used first; exec bumps the BOs of the VM it runs on.  When a VRAM
 * allocation does not fit, gvm__vram_alloc_evict() walks the LRU from the
 * head, picks among the first few the BO mapped by the fewest VMs, and
 * moves victims to system memory (gvm__bo_move(): their GPU
 * mappings are zapped in every VM and rebound at that VM's next exec)
 * until the allocation fits or no victim is left (-ENOSPC).
 *
 * Purgeable BOs.  A BO marked DONTNEED (gvm_bo_madvise()) is purged
 * instead of moved: gvm__bo_purge() frees its VRAM and copies nothing,
 * through the same zap/TLB/free sequence as a move (move.c).  Victims are
 * chosen in this order: idle purgeable BOs (no copy, and their owner
 * said it does not need the contents), then other idle BOs, fewest VMs
 * first, least recently used on a tie.  To keep purgeable BOs within the
 * victim window, gvm__bo_lru_update() puts them at the LRU's head (an
 * exec's bump leaves them there).  A busy purgeable BO is never purged
 * under its job: it is not a victim until idle (as any BO), and the
 * waiting paths below wait for it like for any busy BO.  madv is read
 * without the reservation only as a hint for the LRU position and the
 * candidate scan; the decision to purge is made with the victim locked.
 *
 * Victims.  A victim's reservation is taken with a trylock, never a
 * blocking lock: the caller may hold reservations (its own BOs, which are
 * thereby never evicted from under the operation that needs them) and
 * vm->lock.  Victims are idle BOs: waiting for a busy BO's fences while
 * holding locks (the caller's, or the victim's reservation) could wait for
 * a bind job that needs one of them.  One exception for a caller holding
 * nothing (gvm_bo_create, GVM_EVICT_WAIT): a BO busy only with LR preempt
 * fences is a victim too; the move waits for them with the victim locked,
 * which preempts the queues without needing any lock, and keeps the rebind
 * worker from taking the BO back first.  Memory in use by a running job is
 * therefore never evicted under it: it is waited for or preempted first.
 * A victim that fails to move (-EBUSY while its CPU view goes through the
 * VRAM window, -ENOMEM, -EIO) is passed over for the rest of the round,
 * and the next best is tried (rounds, below).
 *
 * Waiting for busy BOs.  A caller that finds no idle victim and may wait
 * (gvm_bo_create with no system fallback; gvm_exec for its VRAM-only BOs,
 * after dropping every lock it holds) waits for room with no lock held,
 * in bounded rounds (gvm__vram_wait_room()), then tries again:
 *
 *   exec (VM A)                          others
 *   lock A's objects, revalidate
 *     -ENOSPC: only busy BOs of B left
 *   victim = gvm__vram_busy_victim()     (B's BO, referenced, not locked)
 *   claim VRAM for A's missing bytes
 *   unlock everything
 *   wait for the victim's fences         B's kernel ends
 *                                        bo_create: the freed space is
 *                                        claimed, it waits behind A
 *   lock A's objects, revalidate: evicts the now idle BO, gets the space
 *   submit, end the claim                bo_create's turn
 *
 * SVM memory.  Device memory that SVM ranges migrated to is on the
 * device's SVM LRU (migrate.c).  Every use of a BO or of SVM memory takes
 * a stamp of the device's LRU clock (gvm__vram_lru_stamp, dev.h), so the
 * two lists read as one LRU: an SVM migration evicts the idle BOs used
 * before the SVM memory it would evict next, then that memory
 * (gvm__vram_alloc_evict_older).  Moving SVM memory back takes the mm's
 * devmem_lock (rank 200), which a caller holding reservations (300) must
 * not take: so evict_one() never touches it, and an allocation holding
 * reservations fails over SVM memory as over busy BOs.  The rounds of
 * waiting below run with no lock held: each first moves SVM memory back
 * (gvm__svm_evict(), least recently used first), and waits for busy BOs
 * only when no SVM memory is left.  So an exec that needs VRAM-only BOs,
 * and a gvm_bo_create() with no system fallback, get the VRAM SVM holds;
 * a BO that may live in system memory does not push SVM memory out.
 *
 * Page tables.  Before anything is evicted, the spare tables VMs keep for
 * their queued binds and no reserve counts on go back
 * (gvm__pt_spares_reclaim()).  When no idle BO is left to move, an allocation (a BO's,
 * or a page table's through gvm__vram_make_room()) reclaims the page
 * tables of an idle VM (gvm__pt_reclaim(), pt_reclaim.c: trylocks only,
 * like victims here) before it waits or fails; SVM migrations do not.
 *
 * Claims (struct gvm_vram_claim, dev.h) give the space to the oldest
 * waiter: while a claim is registered, an allocation succeeds only if it
 * leaves the bytes claimed ahead of its caller free, and a waiter with a
 * claim ahead of its own waits for that claim to end before it waits for
 * victims.  So waiters are served in order, and newcomers (a binder, an
 * allocation without a claim) cannot take the space a waiter waited for.
 * Page-table pages (gvm__vram_make_room(), 4 KiB each) do not look at
 * claims; so that they do not eat a waiter's room, an allocation behind a
 * claim also leaves a slack free (claim_slack(): 1/16 of VRAM, at most
 * 1 MiB).  A waiter that finds no BO of others to wait for (only its own
 * in VRAM, the rest in flight: a BO being created or moved in, memory
 * being freed) waits, bounded, until the room is free or a BO joins the
 * LRU (wait_in_flight()).  An exec whose own VRAM-only BOs exceed VRAM fails with -ENOSPC
 * at once; others give up after their bound (-ENOSPC).
 *
 * Locking: dev->vram_lock (leaf) protects the LRU, the claims and the
 * dead list.  Nothing that can unlock a reservation or move a BO runs
 * under it: victims are chosen and referenced under it, then locked,
 * tested and unlocked after dropping it (pick_victim()).  A BO found on
 * the LRU may be dying: a reference is taken only if its count is not
 * already zero.
 *
 * References.  Eviction may hold the last reference to a victim: its
 * owner may put it meanwhile.  Freeing a BO may free its VM (a VM-local
 * BO holds one), and a VM's teardown needs no lock held; an evicting
 * caller may hold vm->lock and reservations.  So eviction drops its
 * references with gvm__bo_put_deferred(): a last one queues the BO on
 * dev->dead_bos, and gvm__dev_reap() frees it once the caller's locks are
 * gone (the public calls that may evict reap before returning).
 */
#include <errno.h>

#include <gvm/lockset.h>

#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "vm/bo.h"
#include "vm/dev.h"
#include "vm/lr.h"
#include "vm/svm.h"
#include "vm/vm.h"

void (*gvm__evict_before_wait)(struct gvm_device *dev);
void (*gvm__evict_before_put)(struct gvm_bo *victim);
void (*gvm__evict_before_idle_wait)(struct gvm_device *dev);

/* The claim of the calling thread, registered by gvm__vram_claim_begin(). */
static __thread struct gvm_vram_claim *cur_claim;

/*
 * dev->lru_joins when the calling thread last looked for a victim
 * (gvm__vram_busy_victim()): a BO that joined the LRU since is one it has
 * not considered (wait_in_flight()).
 */
static __thread uint64_t joins_seen;

/* Whether @bo may be purged (a hint without its reservation held). */
static bool purgeable(const struct gvm_bo *bo)
{
	return gvm_load_relaxed(&bo->madv) == GVM_BO_DONTNEED;
}

void gvm__bo_lru_update(struct gvm_bo *bo)
{
	struct gvm_device *dev = bo->dev;

	gvm__mutex_lock(&dev->vram_lock);
	if (gvm_list_empty(&bo->lru_link) && bo->mem.region == GVM_MEM_VRAM) {
		dev->lru_joins++;
		gvm__vram_changed_locked(dev);
	}
	gvm_list_del(&bo->lru_link);
	/* Purgeable BOs at the head, within the victim window. */
	if (bo->mem.region == GVM_MEM_VRAM && purgeable(bo)) {
		bo->lru_stamp = 0;
		gvm_list_add(&bo->lru_link, &dev->lru);
	} else if (bo->mem.region == GVM_MEM_VRAM) {
		bo->lru_stamp = gvm__vram_lru_stamp(dev);
		gvm_list_add_tail(&bo->lru_link, &dev->lru);
	}
	gvm__mutex_unlock(&dev->vram_lock);
}

void gvm__bo_lru_del(struct gvm_bo *bo)
{
	struct gvm_device *dev = bo->dev;

	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_del(&bo->lru_link);
	gvm__mutex_unlock(&dev->vram_lock);
}

/* A reference on @bo unless it is already dying. */
static bool get_unless_zero(struct gvm_bo *bo)
{
	uint32_t c = gvm_load_relaxed(&bo->refcount);

	while (c)
		if (gvm_cmpxchg_acq_rel(&bo->refcount, &c, c + 1))
			return true;
	return false;
}

/* Busy BOs an allocation that may wait waits for before giving up. */
#define MAX_WAITS 64

/* Candidates a victim is chosen among (from the LRU's head). */
#define VICTIM_WINDOW 8

/*
 * Rounds of a search for room.  A victim that fails to move (a view
 * through the VRAM window: -EBUSY; the new backing or the copy: -ENOMEM,
 * -EIO) is stamped with the current round (bo->evict_failed), and a
 * round passes over every BO stamped at or after its start, by any
 * search: so each round tries a BO once, however many fail, and a new
 * round (after a wait for room: what failed may move then) tries them
 * again.  Not a count of candidates to skip: the victim is the best of
 * the window, not its first, so skipping the first N dropped movable BOs
 * while the unmovable best one was chosen again, and the search ended
 * with -ENOSPC though there was room to make.
 */
static uint64_t round_begin(struct gvm_device *dev)
{
	uint64_t r;

	gvm__mutex_lock(&dev->vram_lock);
	r = ++dev->evict_round;
	gvm__mutex_unlock(&dev->vram_lock);
	return r;
}

static void round_failed(struct gvm_device *dev, struct gvm_bo *bo)
{
	gvm__mutex_lock(&dev->vram_lock);
	bo->evict_failed = dev->evict_round;
	gvm__mutex_unlock(&dev->vram_lock);
}

static unsigned int nr_vms(const struct gvm_bo *bo)
{
	const struct gvm_list *pos;
	unsigned int n = 0;

	gvm_list_for_each(pos, &bo->vm_bos)
		n++;
	return n;
}

/*
 * Whether @bo may be moved now by a caller in @mode holding its
 * reservation: it is idle, or (GVM_EVICT_WAIT) everything it waits for is
 * a preempt fence of an LR queue, which only suspends the queue and needs
 * no lock (so waiting for it with the reservation held cannot deadlock,
 * and holding the reservation keeps the rebind worker from taking the BO
 * back before the move).
 */
static bool movable(struct gvm_bo *bo, enum gvm_evict_mode mode)
{
	struct gvm_fence **f;
	unsigned int n, i;
	bool ok = true;

	if (gvm_resv_test_signaled(bo->resv, GVM_RESV_USAGE_BOOKKEEP))
		return true;
	if (mode != GVM_EVICT_WAIT ||
	    gvm_resv_get_fences(bo->resv, GVM_RESV_USAGE_BOOKKEEP, &f, &n))
		return false;
	for (i = 0; i < n; i++)
		ok &= gvm_fence_is_signaled(f[i]) ||
		      gvm__lr_is_preempt_fence(f[i]);
	gvm_resv_put_fences(f, n);
	return ok;
}

/*
 * A victim, locked and referenced, or NULL: among the first VICTIM_WINDOW
 * BOs of the LRU that may be moved now (movable()) and can be locked, a
 * purgeable (DONTNEED) one first (it costs no copy and nothing is lost
 * that its owner wants; they sit at the LRU's head, so in the window),
 * then the one mapped by the fewest VMs (it costs the fewest rebinds and
 * is the least likely to be needed next), the least recently used on a
 * tie.
 * BOs that failed to move in this @round are no candidates: the window
 * holds the first VICTIM_WINDOW others.  Only BOs last used
 * before LRU stamp @older_than are candidates (the list is in stamp
 * order: it stops at the first newer one).
 *
 * Two phases, so that no reservation is ever unlocked under vram_lock (a
 * contended unlock takes the mutex's wait_lock, which ranks below the
 * leaf vram_lock): under vram_lock, the candidates are chosen with the
 * lock-free movable() test and referenced (the reference keeps a BO alive
 * once vram_lock is dropped); then, holding no lock, each is trylocked,
 * tested again, and all but the choice are unlocked and put.
 */
static struct gvm_bo *pick_victim(struct gvm_device *dev,
				  enum gvm_evict_mode mode,
				  uint64_t round, uint64_t older_than)
{
	struct gvm_bo *cand[VICTIM_WINDOW], *best = NULL;
	unsigned int nr = 0, best_vms = 0, i;
	bool best_purge = false;
	struct gvm_list *pos;

	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_for_each(pos, &dev->lru) {
		struct gvm_bo *bo = gvm_list_entry(pos, struct gvm_bo,
						   lru_link);

		if (nr == VICTIM_WINDOW || bo->lru_stamp >= older_than)
			break;
		if (gvm_resv_is_locked(bo->resv) || !movable(bo, mode) ||
		    bo->evict_failed >= round)
			continue;
		/* A BO on the LRU may be dying: its put frees it. */
		if (get_unless_zero(bo))
			cand[nr++] = bo;
	}
	gvm__mutex_unlock(&dev->vram_lock);

	for (i = 0; i < nr; i++) {
		struct gvm_bo *bo = cand[i];
		unsigned int vms;
		bool purge;

		if (!gvm_resv_trylock(bo->resv))
			continue;
		/* Moved, or busy again, since it was chosen. */
		if (bo->mem.region != GVM_MEM_VRAM || !movable(bo, mode)) {
			gvm_resv_unlock(bo->resv);
			continue;
		}
		vms = nr_vms(bo);
		purge = bo->madv == GVM_BO_DONTNEED;	/* resv held */
		if (best && (best_purge > purge ||
			     (best_purge == purge && vms >= best_vms))) {
			gvm_resv_unlock(bo->resv);
			continue;
		}
		if (best)
			gvm_resv_unlock(best->resv);
		best = bo;
		best_vms = vms;
		best_purge = purge;
	}
	for (i = 0; i < nr; i++)
		if (cand[i] != best)
			gvm__bo_put_deferred(cand[i]);
	return best;
}

/*
 * Moves one victim last used before @older_than to system memory, or
 * purges it if it is DONTNEED.  A victim that fails to move is stamped
 * as failed in @round and the next is tried.  0, or -ENOSPC if no victim
 * could be moved.
 */
static int evict_one(struct gvm_device *dev, enum gvm_evict_mode mode,
		     uint64_t round, uint64_t older_than)
{
	struct gvm_bo *victim;
	struct gvm_list *pos;
	int err;

	for (;;) {
		victim = pick_victim(dev, mode, round, older_than);
		if (!victim)
			return -ENOSPC;
		/* DONTNEED, read under the reservation: purged, not copied. */
		if (victim->madv == GVM_BO_DONTNEED)
			err = gvm__bo_purge(victim);
		else
			err = gvm__bo_move(victim, GVM_MEM_SYSTEM,
					   GVM_EVICT_NONE);
		if (!err)
			gvm_list_for_each(pos, &victim->vm_bos)
				gvm__vm_stat_add(gvm_list_entry(pos,
						 struct gvm_vm_bo, bo_link)->vm,
						 evictions, 1);
		else
			round_failed(dev, victim);
		gvm_resv_unlock(victim->resv);
		if (!err && gvm__evict_before_put)
			gvm__evict_before_put(victim);
		/* The caller may hold locks (the top of the file). */
		gvm__bo_put_deferred(victim);
		if (!err)
			return 0;
	}
}

void gvm__vram_evacuate(struct gvm_device *dev)
{
	uint64_t round = round_begin(dev);

	gvm_lockdep_assert_none_held();
	while (!evict_one(dev, GVM_EVICT_WAIT, round, UINT64_MAX))
		;
	gvm__dev_reap(dev);
}

int gvm__vram_make_room(void *priv, uint64_t bytes)
{
	(void)bytes;		/* one BO or VM frees at least a page */
	gvm__signalling_no_alloc();
	if (!gvm__pt_spares_reclaim(priv))
		return 0;
	if (!evict_one(priv, GVM_EVICT_IDLE, round_begin(priv), UINT64_MAX))
		return 0;
	/* No idle BO left: an idle VM's page tables (pt_reclaim.c). */
	return gvm__pt_reclaim(priv);
}

/*
 * The claim of a GVM_EVICT_WAIT allocation: it outlives the allocation
 * until the caller has put the BO on the LRU (gvm__vram_claim_end_wait()),
 * so that a waiter behind it finds the BO to evict or wait for.
 */
static __thread struct gvm_vram_claim wait_claim;

void gvm__vram_claim_end_wait(void)
{
	gvm__vram_claim_end(&wait_claim);
}

static int alloc_evict(struct gvm_device *dev, uint64_t size,
		       enum gvm_evict_mode mode, uint64_t older_than,
		       struct gvm_list *blocks)
{
	uint64_t round = round_begin(dev);
	unsigned int waits = 0;
	int err;

	for (;;) {
		err = gvm__vram_alloc(dev, size, 0, blocks);
		if (err != -ENOSPC || size > dev->vram.size)
			break;
		if (!gvm__pt_spares_reclaim(dev))	/* spare tables */
			continue;
		if (mode == GVM_EVICT_NONE)
			break;
		if (!evict_one(dev, mode, round, older_than))
			continue;
		/* Then idle VMs' page tables, but not for SVM migrations
		   (older_than: they fall back to system memory). */
		if (older_than == UINT64_MAX && !gvm__pt_reclaim(dev))
			continue;
		if (mode != GVM_EVICT_WAIT || waits++ == MAX_WAITS ||
		    !gvm__vram_wait_room(dev, &wait_claim, size,
					 gvm__vram_busy_victim(dev, NULL)))
			break;
		/* What failed to move may move after the wait. */
		round = round_begin(dev);
	}
	if (err)
		gvm__vram_claim_end(&wait_claim);
	return err;
}

int gvm__vram_alloc_evict(struct gvm_device *dev, uint64_t size,
			  enum gvm_evict_mode mode, struct gvm_list *blocks)
{
	return alloc_evict(dev, size, mode, UINT64_MAX, blocks);
}

int gvm__vram_alloc_evict_older(struct gvm_device *dev, uint64_t size,
				uint64_t older_than, struct gvm_list *blocks)
{
	return alloc_evict(dev, size, GVM_EVICT_IDLE, older_than, blocks);
}

/* ---- claims ------------------------------------------------------------ */

/*
 * Marks @victim (referenced by the caller: the reference goes to @c) as
 * the BO @c's owner waits for, unmarking the previous one, which is
 * returned for the caller to put once vram_lock is dropped.
 */
static struct gvm_bo *mark_locked(struct gvm_vram_claim *c,
				  struct gvm_bo *victim)
{
	struct gvm_bo *old = c->victim;

	gvm_lockdep_assert_held(&c->dev->vram_lock);
	if (old && old->claim == c)
		old->claim = NULL;
	c->victim = victim;
	if (victim)
		victim->claim = c;
	return old;
}

void gvm__vram_claim_begin(struct gvm_device *dev, struct gvm_vram_claim *c,
			   uint64_t bytes)
{
	GVM_BUG_ON(cur_claim);		/* one claim per thread at a time */
	c->dev = dev;
	c->bytes = bytes;
	c->victim = NULL;
	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_add_tail(&c->link, &dev->claims);
	gvm_store_release(&dev->nr_claims, dev->nr_claims + 1);
	gvm__mutex_unlock(&dev->vram_lock);
	cur_claim = c;
}

void gvm__vram_claim_end(struct gvm_vram_claim *c)
{
	struct gvm_device *dev = c->dev;

	struct gvm_bo *old;

	if (!dev)
		return;
	gvm__mutex_lock(&dev->vram_lock);
	old = mark_locked(c, NULL);
	gvm_list_del(&c->link);
	gvm_store_release(&dev->nr_claims, dev->nr_claims - 1);
	gvm__cond_broadcast(&dev->claims_cond);
	gvm__mutex_unlock(&dev->vram_lock);
	if (old)
		gvm__bo_put_deferred(old);
	c->dev = NULL;
	cur_claim = NULL;
}

/* The most claim_slack() keeps free beyond the claims. */
#define CLAIM_SLACK_MAX (1ull << 20)

/*
 * Bytes claimed ahead of the calling thread's claim (all without one);
 * *@any: whether there is such a claim (its bytes may all be charged).
 */
static uint64_t claimed_ahead_locked(struct gvm_device *dev, bool *any)
{
	struct gvm_list *pos;
	uint64_t ahead = 0;

	gvm_lockdep_assert_held(&dev->vram_lock);
	*any = false;
	gvm_list_for_each(pos, &dev->claims) {
		struct gvm_vram_claim *c =
			gvm_list_entry(pos, struct gvm_vram_claim, link);

		if (c == cur_claim)
			break;
		ahead += c->bytes;
		*any = true;
	}
	return ahead;
}

/* Whether a claim older than the calling thread's (or any) is registered. */
static bool claim_ahead_locked(struct gvm_device *dev)
{
	return !gvm_list_empty(&dev->claims) &&
	       gvm_list_first_entry(&dev->claims, struct gvm_vram_claim,
				    link) != cur_claim;
}

/* Whether @c is older than the calling thread's claim (or it has none). */
static bool older_locked(struct gvm_device *dev, struct gvm_vram_claim *c)
{
	struct gvm_list *pos;

	if (!cur_claim || cur_claim->dev != dev)
		return true;
	gvm_list_for_each(pos, &dev->claims) {
		struct gvm_vram_claim *x =
			gvm_list_entry(pos, struct gvm_vram_claim, link);

		if (x == cur_claim)
			return false;
		if (x == c)
			return true;
	}
	return false;
}

bool gvm__vram_claimed_by_older(struct gvm_vm *vm)
{
	struct gvm_device *dev = vm->dev;
	struct gvm_list *pos;
	bool ret = false;

	gvm_lockdep_assert_held(&vm->lock);
	if (!gvm_load_acquire(&dev->nr_claims))
		return false;
	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_for_each(pos, &vm->vm_bos) {
		struct gvm_bo *bo =
			gvm_list_entry(pos, struct gvm_vm_bo, vm_link)->bo;

		if (bo->claim && bo->claim != cur_claim &&
		    older_locked(dev, bo->claim)) {
			ret = true;
			break;
		}
	}
	gvm__mutex_unlock(&dev->vram_lock);
	return ret;
}

/*
 * Page-table pages do not look at claims (gvm__vram_make_room()): so that
 * the tables other VMs allocate while a claimant waits do not eat its
 * room, and the claimant finds the tables it needs to bind what it got
 * (its claim's bytes are charged by then), an allocation behind a claim
 * also leaves this much free, like a page allocator's watermark.
 */
static uint64_t claim_slack(const struct gvm_device *dev)
{
	uint64_t s = dev->vram.size / 16;

	return s < CLAIM_SLACK_MAX ? s : CLAIM_SLACK_MAX;
}

bool gvm__vram_claims_allow_locked(struct gvm_device *dev, uint64_t size)
{
	bool any;
	uint64_t ahead = claimed_ahead_locked(dev, &any);

	return !any || (dev->vram.free_bytes >= size &&
			dev->vram.free_bytes - size >= ahead +
							claim_slack(dev));
}

void gvm__vram_claims_charge_locked(struct gvm_device *dev, uint64_t size)
{
	struct gvm_vram_claim *c = cur_claim;

	gvm_lockdep_assert_held(&dev->vram_lock);
	if (c && c->dev == dev)
		c->bytes -= size < c->bytes ? size : c->bytes;
}

/* ---- waiting for room ------------------------------------------------ */

static bool owned(const struct gvm_lockset *own, const struct gvm_resv *resv)
{
	unsigned int i;

	for (i = 0; own && i < gvm_lockset_count(own); i++)
		if (gvm_lockset_obj(own, i) == resv)
			return true;
	return false;
}

struct gvm_bo *gvm__vram_busy_victim(struct gvm_device *dev,
				     const struct gvm_lockset *own)
{
	struct gvm_bo *found = NULL;
	struct gvm_list *pos;

	gvm__mutex_lock(&dev->vram_lock);
	joins_seen = dev->lru_joins;
	/* The least recently used busy BO nobody is working on... */
	gvm_list_for_each(pos, &dev->lru) {
		struct gvm_bo *bo = gvm_list_entry(pos, struct gvm_bo,
						   lru_link);

		if (gvm_resv_is_locked(bo->resv) ||
		    gvm_resv_test_signaled(bo->resv, GVM_RESV_USAGE_BOOKKEEP))
			continue;
		if (get_unless_zero(bo)) {
			found = bo;
			break;
		}
	}
	/*
	 * ...else the least recently used one someone else holds, or may
	 * take (its reservation is free now, but the caller's trylock lost
	 * to someone's: queueing for it is the wait).
	 */
	gvm_list_for_each(pos, &dev->lru) {
		struct gvm_bo *bo = gvm_list_entry(pos, struct gvm_bo,
						   lru_link);

		if (found)
			break;
		if (owned(own, bo->resv))
			continue;
		if (get_unless_zero(bo))
			found = bo;
	}
	gvm__mutex_unlock(&dev->vram_lock);
	return found;
}

void gvm__vram_changed_locked(struct gvm_device *dev)
{
	gvm_lockdep_assert_held(&dev->vram_lock);
	if (dev->nr_claims)
		gvm__cond_broadcast(&dev->claims_cond);
}

void gvm__vram_pt_freed(void *priv)
{
	gvm__vram_changed_locked(priv);
}

/* How long a waiter with no BO to wait for waits for one, at most. */
#define IN_FLIGHT_WAIT_NS (100 * 1000 * 1000ll)

static bool room_locked(struct gvm_device *dev, uint64_t bytes)
{
	return dev->vram.free_bytes >= bytes &&
	       gvm__vram_claims_allow_locked(dev, bytes);
}

/*
 * No BO to wait for (gvm__vram_busy_victim() found none): the VRAM the
 * caller lacks is in flight (a BO allocated or being moved in and not yet
 * on the LRU, memory being freed).  Waits until the room is free or a BO
 * joins the LRU after that search (the next round considers it), for
 * IN_FLIGHT_WAIT_NS at most: false if neither happened (VRAM is held by
 * what nobody frees).
 */
static bool wait_in_flight(struct gvm_device *dev, uint64_t bytes)
{
	uint64_t joins = joins_seen;
	int64_t deadline;
	bool room;

	gvm__mutex_lock(&dev->vram_lock);
	room = room_locked(dev, bytes) || dev->lru_joins != joins;
	gvm__mutex_unlock(&dev->vram_lock);
	if (room)
		return true;
	if (gvm__evict_before_idle_wait)
		gvm__evict_before_idle_wait(dev);
	deadline = gvm__now_ns() + IN_FLIGHT_WAIT_NS;
	gvm__mutex_lock(&dev->vram_lock);
	while (!(room = room_locked(dev, bytes)) && dev->lru_joins == joins &&
	       !gvm__cond_wait_until(&dev->claims_cond, &dev->vram_lock,
				     deadline))
		;
	room = room || dev->lru_joins != joins;
	gvm__mutex_unlock(&dev->vram_lock);
	return room;
}

/* Yields bounded this many times to the waiters of a free reservation. */
#define YIELDS 1000

/*
 * A reservation that is free but cannot be trylocked has waiters queued
 * (a blocking lock takes a free mutex ahead of them): let them have it
 * first, e.g. the victim's own VM's exec, which then sees the victim
 * marked by our claim and backs off.  Without this the waiter can take
 * its rounds faster than the queued thread is scheduled.  Bounded: the
 * caller's rounds are.
 */
static void yield_to_waiters(struct gvm_resv *resv)
{
	unsigned int i;

	for (i = 0; i < YIELDS; i++) {
		if (gvm_resv_trylock(resv)) {
			gvm_resv_unlock(resv);
			return;
		}
		if (gvm_resv_is_locked(resv))
			return;		/* taken: its holder is at work */
		gvm__yield();
	}
}

bool gvm__vram_wait_room(struct gvm_device *dev, struct gvm_vram_claim *c,
			 uint64_t bytes, struct gvm_bo *victim)
{
	struct gvm_bo *old;
	bool waited = false;

	gvm_lockdep_assert_none_held();
	/* What the caller's eviction put last holds VRAM until reaped. */
	gvm__dev_reap(dev);
	if (!c->dev)
		gvm__vram_claim_begin(dev, c, bytes);
	if (gvm__evict_before_wait)
		gvm__evict_before_wait(dev);
	/* Older waiters first: the space freed next is theirs. */
	gvm__mutex_lock(&dev->vram_lock);
	while (claim_ahead_locked(dev)) {
		gvm__cond_wait(&dev->claims_cond, &dev->vram_lock);
		waited = true;
	}
	gvm__mutex_unlock(&dev->vram_lock);
	if (waited) {
		gvm_bo_put(victim);	/* the situation changed: look again */
		return true;
	}
	/*
	 * SVM memory gives way before anyone waits for a busy BO: moving it
	 * back needs no wait for a kernel, and holding no lock we may take
	 * its mm's devmem_lock (migrate.c).  The claim keeps the room for us.
	 */
	if (gvm__svm_evict(dev, bytes, NULL)) {
		gvm_bo_put(victim);
		return true;
	}
	if (!victim)
		return wait_in_flight(dev, bytes);
	/* Marked: its VM's next exec lets this claim go first. */
	gvm__mutex_lock(&dev->vram_lock);
	old = mark_locked(c, gvm_bo_get(victim));
	gvm__mutex_unlock(&dev->vram_lock);
	gvm_bo_put(old);
	/*
	 * Until whoever holds it (an exec of its VM, a bind, another
	 * evictor) is done with it, then until whoever queued for it has
	 * had it (a free reservation with waiters cannot be trylocked, and
	 * a blocking lock takes a free mutex ahead of them:
	 * yield_to_waiters()), then until its work is done.
	 */
	gvm_resv_lock(victim->resv, NULL);
	gvm_resv_unlock(victim->resv);
	yield_to_waiters(victim->resv);
	gvm_resv_wait(victim->resv, GVM_RESV_USAGE_BOOKKEEP, false,
		      GVM_TIMEOUT_INFINITE);
	gvm_bo_put(victim);
	return true;
}

void gvm__dev_reap(struct gvm_device *dev)
{
	struct gvm_list dead, *pos, *tmp;

	gvm_lockdep_assert_none_held();
	if (!gvm_load_acquire(&dev->nr_dead_bos))
		return;
	gvm_list_init(&dead);
	gvm__mutex_lock(&dev->vram_lock);
	gvm_list_splice_tail(&dev->dead_bos, &dead);
	gvm_store_release(&dev->nr_dead_bos, 0);
	gvm__mutex_unlock(&dev->vram_lock);
	gvm_list_for_each_safe(pos, tmp, &dead) {
		struct gvm_bo *bo = gvm_list_entry(pos, struct gvm_bo,
						   lru_link);

		gvm_list_del(&bo->lru_link);
		gvm__bo_free(bo);
	}
}
