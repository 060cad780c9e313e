/* SPDX-License-Identifier: MIT */
/*
 * Long-running VMs in preempt-fence mode (lr.c): preempt fences on exec
 * queues, the rebind worker, and what exec and userptr invalidations ask of
 * them.  The protocol and its interleavings are at the top of lr.c.
 */
#ifndef GVM_VM_LR_H
#define GVM_VM_LR_H

#include <stdbool.h>

struct gvm_device;
struct gvm_fence;
struct gvm_queue;
struct gvm_vm;

/*
 * The device's rebind worker: set up at device creation, stopped (and its
 * thread joined) when the last device reference goes, after every VM.
 */
void gvm__lr_dev_init(struct gvm_device *dev);
void gvm__lr_dev_fini(struct gvm_device *dev);
/* VM create (lr_queues, lr_link initialised): starts the device's worker
   for the first preempt-mode VM.  Destroy: the worker is done with the VM
   and will not take it again.  No lock held. */
int gvm__lr_vm_init(struct gvm_vm *vm);
void gvm__lr_vm_fini(struct gvm_vm *vm);
/* Waiting for a preempt fence only suspends a queue: it needs no lock. */
bool gvm__lr_is_preempt_fence(const struct gvm_fence *f);
/* Exec queue of a preempt-mode VM: create (no lock) and destroy (no lock
   held, after its work completed: retires its preempt fence). */
void gvm__lr_queue_init(struct gvm_queue *q);
void gvm__lr_queue_fini(struct gvm_queue *q);
/*
 * Exec: before the point of no return (vm->lock, reservations held), a
 * preempt fence for a queue that has none (*@pf NULL if it has one);
 * after it, with notifier_lock held too (in the section of the final
 * userptr check), installs it (or re-adds the current one to the external
 * BOs' reservations: one fence slot each).  Cannot fail.
 */
int gvm__lr_exec_prepare(struct gvm_queue *q, struct gvm_fence **pf);
void gvm__lr_exec_commit_locked(struct gvm_queue *q, struct gvm_fence *pf);
/*
 * Userptr invalidation: notifier_lock held, references to the current
 * preempt fences (*@f NULL, *@n 0 if none or out of memory); the caller
 * enables their signalling and waits for them with no lock held.
 */
void gvm__lr_snapshot_locked(struct gvm_vm *vm, struct gvm_fence ***f,
			     unsigned int *n);

#endif
