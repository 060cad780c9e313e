// SPDX-License-Identifier: MIT
/*
 * SVM policies: anti-ping-pong and thrashing detection for
 * oversubscribed device memory (policy.h has the interface and the knobs,
 * docs/policy.md the defaults and why).
 *
 * Thrashing.  Each migration of a range to VRAM after its first means the
 * data went back in between (a CPU touch, another device, an eviction):
 * a range migrated more than thrash_migrations times within
 * thrash_window_ns of the first of them is moving back and forth faster
 * than the copies pay off.  It is pinned to system memory (placement maps
 * its system pages; the GPU reaches them remotely) for thrash_cooldown_ns,
 * then allowed again with a fresh count.
 *
 * The history lives here, not in the range: a range is dropped and made
 * again (munmap, split) and placement must not forget a hot spot with it.
 * Per VM, a small direct-mapped table keyed by the range's start
 * (HIST_SLOTS entries, allocated at the VM's first migration): a
 * collision overwrites the older entry, which forgets that range's
 * history (it may then thrash a window longer before it is pinned).
 * Time is gvm__svm_policy_now(): tests make the decisions deterministic
 * with the knobs (a window or cool-down of 0 or of hours) and move the
 * clock on with clock_skew_ns, never with sleeps.
 *
 * Locking: the table is protected by vm->lock (every caller holds it);
 * the knobs are read relaxed.
 */
#include "vm/policy.h"

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "vm/dev.h"
#include "vm/vm.h"

#define HIST_SLOTS 256u

struct hist {
	uint64_t start;			/* the range's, 0: empty slot */
	int64_t window_ns;		/* start of the counting window */
	int64_t pinned_ns;		/* when pinned, 0: not pinned */
	uint32_t migrations;		/* in the window */
};

/* vm->svm_policy: protected by vm->lock. */
struct gvm_svm_policy_state {
	struct hist slot[HIST_SLOTS];
};

struct gvm_svm_policy gvm__svm_policy = {
	.evict_timeslice_ns = GVM_SVM_EVICT_TIMESLICE_NS,
	.thrash_migrations = GVM_SVM_THRASH_MIGRATIONS,
	.thrash_window_ns = GVM_SVM_THRASH_WINDOW_NS,
	.thrash_cooldown_ns = GVM_SVM_THRASH_COOLDOWN_NS,
	.vram_headroom_div = GVM_SVM_VRAM_HEADROOM_DIV,
};

void gvm__svm_policy_reset(void)
{
	gvm_store_relaxed(&gvm__svm_policy.evict_timeslice_ns,
			  GVM_SVM_EVICT_TIMESLICE_NS);
	gvm_store_relaxed(&gvm__svm_policy.thrash_migrations,
			  GVM_SVM_THRASH_MIGRATIONS);
	gvm_store_relaxed(&gvm__svm_policy.thrash_window_ns,
			  GVM_SVM_THRASH_WINDOW_NS);
	gvm_store_relaxed(&gvm__svm_policy.thrash_cooldown_ns,
			  GVM_SVM_THRASH_COOLDOWN_NS);
	gvm_store_relaxed(&gvm__svm_policy.vram_headroom_div,
			  GVM_SVM_VRAM_HEADROOM_DIV);
	gvm_store_relaxed(&gvm__svm_policy.clock_skew_ns, 0);
}

int64_t gvm__svm_policy_now(void)
{
	return gvm__now_ns() + gvm_load_relaxed(&gvm__svm_policy.clock_skew_ns);
}

static struct hist *slot_of(struct gvm_svm_policy_state *s, uint64_t start)
{
	uint64_t h = (start >> 12) * 0x9e3779b97f4a7c15ull;

	return &s->slot[(h >> 32) % HIST_SLOTS];
}

/* Elapsed from @then to @now, never negative. */
static uint64_t since(int64_t then, int64_t now)
{
	return now > then ? (uint64_t)(now - then) : 0;
}

bool gvm__svm_policy_may_migrate(struct gvm_vm *vm, uint64_t start,
				 uint64_t size)
{
	struct hist *h;

	(void)size;
	gvm_lockdep_assert_held(&vm->lock);
	if (!vm->svm_policy)
		return true;
	h = slot_of(vm->svm_policy, start);
	if (h->start != start || !h->pinned_ns)
		return true;
	if (since(h->pinned_ns, gvm__svm_policy_now()) <
	    gvm_load_relaxed(&gvm__svm_policy.thrash_cooldown_ns))
		return false;
	h->pinned_ns = 0;		/* cooled down: a fresh count */
	h->migrations = 0;
	return true;
}

void gvm__svm_policy_migrated(struct gvm_vm *vm, uint64_t start,
			      uint64_t size)
{
	uint32_t limit = gvm_load_relaxed(&gvm__svm_policy.thrash_migrations);
	int64_t now;
	struct hist *h;

	(void)size;
	gvm_lockdep_assert_held(&vm->lock);
	if (!limit)
		return;
	if (!vm->svm_policy) {
		vm->svm_policy = gvm__calloc(1, sizeof(*vm->svm_policy));
		if (!vm->svm_policy)
			return;		/* no history: no pinning */
	}
	now = gvm__svm_policy_now();
	h = slot_of(vm->svm_policy, start);
	if (h->start != start ||
	    since(h->window_ns, now) >=
		    gvm_load_relaxed(&gvm__svm_policy.thrash_window_ns)) {
		h->start = start;
		h->window_ns = now;
		h->pinned_ns = 0;
		h->migrations = 0;
	}
	if (++h->migrations > limit) {
		h->pinned_ns = now ? now : 1;
		gvm__vm_stat_add(vm, svm_thrash_pins, 1);
	}
}

bool gvm__svm_policy_evictable(int64_t migrated_ns, int64_t now_ns)
{
	return since(migrated_ns, now_ns) >=
	       gvm_load_relaxed(&gvm__svm_policy.evict_timeslice_ns);
}

uint64_t gvm__svm_policy_headroom(const struct gvm_device *dev)
{
	uint32_t div = gvm_load_relaxed(&gvm__svm_policy.vram_headroom_div);

	return div ? dev->desc.vram_size / div : 0;
}

void gvm__svm_policy_vm_fini(struct gvm_vm *vm)
{
	gvm__free(vm->svm_policy);
	vm->svm_policy = NULL;
}
