/* SPDX-License-Identifier: MIT */
/*
 * SVM policies (policy.c): the decisions the fault path and the evictor
 * ask for, behind one small interface, so that a different policy is a
 * different table of functions, not edits across svm.c and migrate.c.
 * docs/policy.md has the policies, their defaults and why.
 *
 * What a policy decides is what the memory attributes (<gvm/svm.h>,
 * attr.c) leave open; what the attributes say (a preferred location,
 * device atomics) every policy obeys:
 *  - placement: where a fault puts pages with the default preferred
 *    location (system memory, the faulting device, or where they are);
 *  - prefetch: which mirror memory past a faulted range is made and
 *    placed with it;
 *  - eviction: whether an allocation may be evicted in the first pass,
 *    the one that spares young allocations (anti-ping-pong);
 *  - thrashing: whether a range may migrate to device memory now, and
 *    what a migration counts for (a range migrated too often in a window
 *    is pinned to system memory for a cool-down).
 * Plus a knob that is no policy's choice: the headroom SVM leaves free in
 * VRAM for page tables (they cannot make SVM memory give way, being
 * allocated under pt_lock).
 *
 * One policy is in force, process-wide (gvm_svm_policy_select); each
 * decision reads it once, so a switch applies to the decisions that
 * follow.  Callers hold vm->lock where the functions take a VM.
 */
#ifndef GVM_VM_POLICY_H
#define GVM_VM_POLICY_H

#include <stdbool.h>
#include <stdint.h>

struct gvm_vm;
struct gvm_device;

/*
 * The knobs, process-wide.  Tests and benchmarks may change them between
 * runs (read relaxed; a change applies to the decisions that follow).
 */
struct gvm_svm_policy {
	uint64_t evict_timeslice_ns;	/* anti-ping-pong */
	uint32_t thrash_migrations;	/* 0: thrashing detection off */
	uint64_t thrash_window_ns;
	uint64_t thrash_cooldown_ns;
	uint32_t vram_headroom_div;	/* 0: no headroom */
	int64_t clock_skew_ns;		/* test knob: added to the policy's
					   clock, so a test moves time on
					   without sleeping; 0 */
};

#define GVM_SVM_EVICT_TIMESLICE_NS (2ull * 1000 * 1000)	/* 2 ms */
#define GVM_SVM_THRASH_MIGRATIONS 4
#define GVM_SVM_THRASH_WINDOW_NS (50ull * 1000 * 1000)	/* 50 ms */
#define GVM_SVM_THRASH_COOLDOWN_NS (200ull * 1000 * 1000)	/* 200 ms */
#define GVM_SVM_VRAM_HEADROOM_DIV 64			/* 1/64 of VRAM */

extern struct gvm_svm_policy gvm__svm_policy;

/* Restores the default knobs and policy (tests, at the end). */
void gvm__svm_policy_reset(void);

/* The policy's clock: gvm__now_ns() plus the test knob's skew. */
int64_t gvm__svm_policy_now(void);

/* A policy. */
struct gvm_svm_policy_ops {
	const char *name;
	const char *summary;		/* one line, for listings */
	/*
	 * Placement with the default preferred location: @own is the
	 * faulting device (NULL if it can hold nothing), @where the device
	 * whose memory the pages are in if @own can reach it (NULL: system
	 * memory, or a device it cannot reach).  Returns the device whose
	 * memory they should be in, NULL for system memory.
	 */
	struct gvm_device *(*place)(struct gvm_device *own,
				    struct gvm_device *where);
	/*
	 * Prefetch: after a fault serviced range [start, start + size) of
	 * @vm, [*@lo, *@hi) is to be made and placed too (*@lo == *@hi:
	 * nothing).  vm->lock held.
	 */
	void (*prefetch)(struct gvm_vm *vm, uint64_t start, uint64_t size,
			 uint64_t *lo, uint64_t *hi);
	/* Eviction: see gvm__svm_policy_evictable.  No lock. */
	bool (*evictable)(int64_t migrated_ns, int64_t now_ns);
	/* Thrashing: see gvm__svm_policy_may_migrate / _migrated. */
	bool (*may_migrate)(struct gvm_vm *vm, uint64_t start, uint64_t size);
	void (*migrated)(struct gvm_vm *vm, uint64_t start, uint64_t size);
	/*
	 * Access counters: @vm's device reached range [start, start + size),
	 * which lives in a linked peer's memory, often enough for the device
	 * to notify (gvm_vm_access_notify).  true: move it to the device's
	 * own memory (if it may move at all).  vm->lock held.
	 */
	bool (*accessed)(struct gvm_vm *vm, uint64_t start, uint64_t size);
};

/* The policy in force (never NULL). */
const struct gvm_svm_policy_ops *gvm__svm_policy_ops(void);

/*
 * May range [start, start + size) of @vm migrate to device memory now?
 * Under the default policy, false while it is pinned to system memory
 * for thrashing.  Placement (svm.c) asks before every migration;
 * vm->lock held.
 */
bool gvm__svm_policy_may_migrate(struct gvm_vm *vm, uint64_t start,
				 uint64_t size);

/*
 * Range [start, start + size) of @vm was migrated to device memory:
 * counted for thrashing detection (which may pin it, counted in
 * svm_thrash_pins).  vm->lock held.  Cannot fail (history is dropped
 * rather than allocated when memory is short).
 */
void gvm__svm_policy_migrated(struct gvm_vm *vm, uint64_t start,
			      uint64_t size);

/*
 * May an allocation migrated to VRAM at @migrated_ns be evicted now in
 * the first pass (one that spares young allocations)?  No lock.
 */
bool gvm__svm_policy_evictable(int64_t migrated_ns, int64_t now_ns);

/* Bytes of @dev's VRAM that SVM allocations leave free. */
uint64_t gvm__svm_policy_headroom(const struct gvm_device *dev);

/* Frees @vm's policy state (VM teardown, no lock). */
void gvm__svm_policy_vm_fini(struct gvm_vm *vm);

#endif
