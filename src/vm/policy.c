// SPDX-License-Identifier: MIT
/*
 * SVM policies: the table of policies and the one in force, and the
 * default policy's parts: anti-ping-pong and thrashing detection for
 * oversubscribed device memory (policy.h has the interface and the knobs,
 * docs/policy.md the policies, the defaults and why).
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
 * Sequential prefetch (the "prefetch" policy): a fault on the range that
 * starts where the VM's previous fault's range ended is a sweep; the
 * next PREFETCH_AHEAD bytes of mirror are made and placed with it.
 *
 * Locking: the per-VM state (vm->svm_policy) is protected by vm->lock
 * (every caller holds it); the knobs and the policy in force are read
 * relaxed, and the policy in force is written with one atomic store.
 */
#include "vm/policy.h"

#include <errno.h>
#include <string.h>

#include <gvm/svm.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "vm/dev.h"
#include "vm/vm.h"

#define HIST_SLOTS 256u
#define PREFETCH_AHEAD (2ull << 20)

struct hist {
	uint64_t start;			/* the range's, 0: empty slot */
	int64_t window_ns;		/* start of the counting window */
	int64_t pinned_ns;		/* when pinned, 0: not pinned */
	uint32_t migrations;		/* in the window */
};

/* vm->svm_policy: protected by vm->lock. */
struct gvm_svm_policy_state {
	struct hist slot[HIST_SLOTS];
	uint64_t last_end;		/* end of the last faulted range
					   (sequential prefetch) */
};

struct gvm_svm_policy gvm__svm_policy = {
	.evict_timeslice_ns = GVM_SVM_EVICT_TIMESLICE_NS,
	.thrash_migrations = GVM_SVM_THRASH_MIGRATIONS,
	.thrash_window_ns = GVM_SVM_THRASH_WINDOW_NS,
	.thrash_cooldown_ns = GVM_SVM_THRASH_COOLDOWN_NS,
	.vram_headroom_div = GVM_SVM_VRAM_HEADROOM_DIV,
};

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

/* @vm's state, allocated on first use; NULL when memory is short. */
static struct gvm_svm_policy_state *state_of(struct gvm_vm *vm)
{
	if (!vm->svm_policy)
		vm->svm_policy = gvm__calloc(1, sizeof(*vm->svm_policy));
	return vm->svm_policy;
}

static bool thrash_may_migrate(struct gvm_vm *vm, uint64_t start,
			       uint64_t size)
{
	struct hist *h;

	(void)size;
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

static void thrash_migrated(struct gvm_vm *vm, uint64_t start,
			    uint64_t size)
{
	uint32_t limit = gvm_load_relaxed(&gvm__svm_policy.thrash_migrations);
	int64_t now;
	struct hist *h;

	(void)size;
	if (!limit || !state_of(vm))
		return;			/* off, or no history: no pinning */
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

static bool timeslice_evictable(int64_t migrated_ns, int64_t now_ns)
{
	return since(migrated_ns, now_ns) >=
	       gvm_load_relaxed(&gvm__svm_policy.evict_timeslice_ns);
}

/* ---- the policies --------------------------------------------------------- */

/* Where they are if reachable (no copy), else the faulting device. */
static struct gvm_device *place_local(struct gvm_device *own,
				      struct gvm_device *where)
{
	return where ? where : own;
}

/* Where they are if in device memory, else system memory. */
static struct gvm_device *place_remote(struct gvm_device *own,
				       struct gvm_device *where)
{
	(void)own;
	return where;
}

/* Always the faulting device's memory, out of a peer's too. */
static struct gvm_device *place_own(struct gvm_device *own,
				    struct gvm_device *where)
{
	(void)where;
	return own;
}

static void no_prefetch(struct gvm_vm *vm, uint64_t start, uint64_t size,
			uint64_t *lo, uint64_t *hi)
{
	(void)vm;
	*lo = *hi = start + size;
}

static void sequential_prefetch(struct gvm_vm *vm, uint64_t start,
				uint64_t size, uint64_t *lo, uint64_t *hi)
{
	struct gvm_svm_policy_state *s = state_of(vm);
	uint64_t end = start + size;

	*lo = *hi = end;
	if (!s)
		return;
	if (s->last_end == start && end + PREFETCH_AHEAD > end)
		*hi = end + PREFETCH_AHEAD;
	/* The sweep goes on where the prefetch ends. */
	s->last_end = *hi;
}

static bool always_evictable(int64_t migrated_ns, int64_t now_ns)
{
	(void)migrated_ns;
	(void)now_ns;
	return true;
}

static bool always_may_migrate(struct gvm_vm *vm, uint64_t start,
			       uint64_t size)
{
	(void)vm;
	(void)start;
	(void)size;
	return true;
}

static void not_counted(struct gvm_vm *vm, uint64_t start, uint64_t size)
{
	(void)vm;
	(void)start;
	(void)size;
}

static bool move_near(struct gvm_vm *vm, uint64_t start, uint64_t size)
{
	(void)vm;
	(void)start;
	(void)size;
	return true;
}

static bool stay_remote(struct gvm_vm *vm, uint64_t start, uint64_t size)
{
	(void)vm;
	(void)start;
	(void)size;
	return false;
}

static const struct gvm_svm_policy_ops policies[] = {
	{
		.name = "default",
		.summary = "migrate to the faulting device, map a linked "
			   "peer's memory in place until access counters "
			   "say it is used, timeslice, thrashing pins",
		.place = place_local,
		.prefetch = no_prefetch,
		.evictable = timeslice_evictable,
		.may_migrate = thrash_may_migrate,
		.migrated = thrash_migrated,
		.accessed = move_near,
	},
	{
		.name = "remote",
		.summary = "leave pages where they are: the GPU reaches "
			   "system memory remotely, nothing migrates unasked",
		.place = place_remote,
		.prefetch = no_prefetch,
		.evictable = timeslice_evictable,
		.may_migrate = thrash_may_migrate,
		.migrated = thrash_migrated,
		.accessed = stay_remote,
	},
	{
		.name = "migrate",
		.summary = "always migrate to the faulting device (from peers "
			   "too); no timeslice, no thrashing detection",
		.place = place_own,
		.prefetch = no_prefetch,
		.evictable = always_evictable,
		.may_migrate = always_may_migrate,
		.migrated = not_counted,
		.accessed = move_near,
	},
	{
		.name = "prefetch",
		.summary = "default, and a sequential sweep places the next "
			   "2 MiB ahead of its faults",
		.place = place_local,
		.prefetch = sequential_prefetch,
		.evictable = timeslice_evictable,
		.may_migrate = thrash_may_migrate,
		.migrated = thrash_migrated,
		.accessed = move_near,
	},
};

#define NR_POLICIES (sizeof(policies) / sizeof(policies[0]))

static const struct gvm_svm_policy_ops *policy_cur = &policies[0];

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
	gvm_store_relaxed(&policy_cur, &policies[0]);
}

const struct gvm_svm_policy_ops *gvm__svm_policy_ops(void)
{
	return gvm_load_relaxed(&policy_cur);
}

bool gvm__svm_policy_may_migrate(struct gvm_vm *vm, uint64_t start,
				 uint64_t size)
{
	gvm_lockdep_assert_held(&vm->lock);
	return gvm__svm_policy_ops()->may_migrate(vm, start, size);
}

void gvm__svm_policy_migrated(struct gvm_vm *vm, uint64_t start,
			      uint64_t size)
{
	gvm_lockdep_assert_held(&vm->lock);
	gvm__svm_policy_ops()->migrated(vm, start, size);
}

bool gvm__svm_policy_evictable(int64_t migrated_ns, int64_t now_ns)
{
	return gvm__svm_policy_ops()->evictable(migrated_ns, now_ns);
}

int gvm_svm_policy_select(const char *name)
{
	for (size_t i = 0; name && i < NR_POLICIES; i++) {
		if (!strcmp(policies[i].name, name)) {
			gvm_store_relaxed(&policy_cur, &policies[i]);
			return 0;
		}
	}
	return -EINVAL;
}

const char *gvm_svm_policy_current(void)
{
	return gvm__svm_policy_ops()->name;
}

const char *gvm_svm_policy_list(unsigned int i, const char **summary)
{
	if (i >= NR_POLICIES)
		return NULL;
	if (summary)
		gvm__put_out(summary, policies[i].summary);
	return policies[i].name;
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
