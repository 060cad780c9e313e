/* SPDX-License-Identifier: MIT */
/*
 * VM_BIND and exec internals for tests: error injection (like xe's
 * FORCE_OP_ERROR) and hooks that force interleavings.
 *
 * Setting gvm__bind_inject.stage makes the (countdown + 1)-th bind that
 * reaches that stage fail with .error (default -ENOMEM), then the injection
 * disarms itself.  Stages: LOCK (after the reservations are locked),
 * PREPARE (before the page tables are prepared or the job is set up), RUN
 * (inline binds: between page-table prepare and commit, so still before the
 * point of no return; queued binds: in the job, after it, which bans the
 * VM).  Internal symbol: reachable from the test programs (static library),
 * not exported by the shared library.
 */
#ifndef GVM_VM_BIND_H
#define GVM_VM_BIND_H

enum gvm_bind_stage {
	GVM_BIND_STAGE_NONE = 0,
	GVM_BIND_STAGE_LOCK,
	GVM_BIND_STAGE_PREPARE,
	GVM_BIND_STAGE_RUN,
};

struct gvm_bind_inject {
	int stage;		/* enum gvm_bind_stage; atomic */
	int countdown;		/* atomic */
	int error;		/* negative errno; 0 = -ENOMEM */
};

extern struct gvm_bind_inject gvm__bind_inject;

/* The injected error if @stage is armed and its countdown ran out, else 0. */
int gvm__bind_inject_check(enum gvm_bind_stage stage);

struct gvm_vm;

/*
 * Test hook: if set, an inline bind calls it after its page tables are
 * prepared and before it takes notifier_lock to commit them (vm->lock
 * held).  Tests use it to force an invalidation into that window, the
 * race of seed 000.  Internal symbol, like gvm__bind_inject.
 */
extern void (*gvm__bind_before_commit)(struct gvm_vm *vm);

/*
 * Test hook: if set, gvm_exec() calls it after revalidating and locking,
 * right before its final userptr check under notifier_lock (vm->lock and
 * the reservations held), so tests can force an invalidation into that
 * window.  Internal symbol, like gvm__bind_inject.
 */
extern void (*gvm__exec_before_check)(struct gvm_vm *vm);

#endif
