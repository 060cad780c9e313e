/* SPDX-License-Identifier: MIT */
/*
 * SVM policies (policy.c): the decisions the fault path and the evictor
 * ask for, kept behind a few functions so that a different policy is a
 * different policy.c, not edits across svm.c and migrate.c.  docs/policy.md
 * has the defaults and why.
 *
 * Oversubscription (this file's part so far):
 *  - anti-ping-pong: an allocation migrated to VRAM less than
 *    evict_timeslice_ns ago is evicted only when nothing older can be;
 *  - thrashing: a range migrated to VRAM more than thrash_migrations
 *    times within thrash_window_ns is pinned to system memory (mapped
 *    there, remotely accessed, not migrated) for thrash_cooldown_ns;
 *  - headroom: SVM leaves vram_headroom_div-th of VRAM free (page tables
 *    come from VRAM too and cannot make SVM memory give way, they are
 *    allocated under pt_lock).
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

/* Restores the defaults above (tests, at the end). */
void gvm__svm_policy_reset(void);

/* The policy's clock: gvm__now_ns() plus the test knob's skew. */
int64_t gvm__svm_policy_now(void);

/*
 * May range [start, start + size) of @vm migrate to device memory now?
 * False while it is pinned to system memory for thrashing.  Placement
 * (svm.c) asks before every migration; vm->lock held.
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
