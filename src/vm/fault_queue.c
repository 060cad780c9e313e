// SPDX-License-Identifier: MIT
/*
 * The per-device GPU fault queue and its servicing thread: how faults of
 * fault-mode VMs get from the engine that took them to gvm__fault_service()
 * (fault.c, the one place a fault is serviced).
 *
 * A backend reports a fault with gvm_vm_fault() from the faulting engine's
 * thread, the engine stalled (it runs no other job meanwhile) and not
 * translating.  When the device is servicing nothing and has nothing
 * queued, the fault is serviced right there (INLINE, below); otherwise, in
 * a fault-mode VM, that call is submit + wait:
 *
 *   engine thread (gvm_vm_fault)          servicing thread (one per device)
 *   ----------------------------          ---------------------------------
 *   req on its stack, VM reference        lock
 *   lock                                  wait: count > 0 and not held
 *   while count == depth:                 take min(count, 256) from the ring
 *     blocked++; wait room; blocked--     wake the blocked submitters
 *   ring[tail] = &req; count++            unlock
 *   wake the thread; unlock               sort by (VM, page, access desc)
 *   wait until req.done == DONE           for each: covered by the one
 *   (futex; FQ_SLEEPING tells the           serviced before it, or in the
 *    completer to wake it)                  SVM range it bound, mapped?
 *   drop the VM reference                   its result; else
 *                                           gvm__fault_service (no lock)
 *   0: replay; else log, fail the job     complete each: result, done = DONE
 *
 * The queue is bounded (desc.fault_queue_depth, default 1024): when it is
 * full the submitting engine blocks until the thread takes a batch; a
 * fault is never dropped.  The thread starts with the device's first
 * fault-mode VM (gvm__fault_queue_start from gvm_vm_create) and is joined
 * when the last device reference goes (gvm__fault_queue_fini); it holds no
 * device reference itself, and drops no VM reference (submitters do), so
 * the last device reference is never dropped on it.
 *
 * INLINE.  A thread of the device takes faults from the engines so that a
 * burst of them is serviced in batches, deduplicated.  A lone fault has
 * nothing to batch with, and handing it over costs two cross-CPU wake-ups
 * (to the thread and back), as much as the service itself (a 4 KiB SVM
 * fault on the 2-vCPU development VM: 6-8 us serviced, 6-7 us more
 * through the thread, tens of us when the other CPU is busy;
 * docs/performance.md).  So
 * gvm__fault_queue_service() services it in the calling thread when the
 * queue is empty, not held, and no batch is being serviced: it sets
 * fq->servicing under fq->lock, services a batch of one with no lock held
 * (service_batch, the thread's own path: the same statistics, trace and
 * completion) and clears it.  fq->servicing keeps one batch at a time per
 * device: while it is set, faults queue and the thread takes no batch
 * (it waits, and is signalled when the inline service ends), so a burst
 * that arrives during a lone fault is batched behind it as before.  The
 * deadlock analysis below holds for the calling thread as for the
 * servicing thread: an engine reporting a fault is stalled and not
 * translating (it acknowledges TLB invalidations at once, its own
 * included), its guard is off during the report (src/sim/lane.c), and the
 * service never waits for the servicing thread to do anything.  A
 * collection or a notification the thread runs meanwhile (they do not
 * set fq->servicing) may hold vm->lock, which the service then waits for,
 * as for any other holder: they take it like a fault's own collection
 * does and wait for no engine under it.
 *
 * DEDUPLICATION.  A batch is sorted by VM, then 4 KiB page, then access,
 * strongest first (atomic > write > read), then arrival.  A fault is
 * *covered* by the last fault serviced before it on the same VM and page
 * when it asks for the same access, or for a weaker one and that service
 * succeeded (binding for an atomic allows a write and a read; a read-only
 * result does not allow a write).  A covered fault completes with that
 * result without a second service: N lanes faulting on one page cost one
 * bind.  A failure is not extended to weaker accesses: a write refused on
 * a read-only mapping does not fail a read of it.
 * Per range: a service that bound an SVM range (svm.c: all of it, 4 KiB
 * to 2 MiB) reports its end; a later fault of the batch on another page
 * of that range (same VM; sorted after, so at or above its start) whose
 * page the committed page tables now map for its access
 * (gvm__fault_resolved: vm->lock, pt_lock) completes with 0, not
 * serviced again: N lanes faulting on the pages of one new range cost one
 * range and one bind.  The page tables, not the range, decide: a range
 * zapped since (an invalidation) or read-only (a write there) leaves the
 * fault to its service.  Other VMAs are not covered this way (a rebind of
 * a BO or userptr VMA is cheap and its fault clears fault_pending).
 *
 * LOCKING.  fq->lock is a leaf (rank LEAF), taken with no other gvm lock
 * held, by submitters, inline servicers, the thread, the test hooks and
 * teardown; it is never held while servicing, while waiting for a
 * completion or while calling out.  fq->servicing (under it) says a batch
 * is being serviced, by the thread or inline.  A queued request's `done`
 * word is the only thing shared after submit: written once by the thread
 * (release), read by the submitter (acquire).  Per-VM counters are
 * relaxed atomics.
 *
 * DEADLOCK ANALYSIS.  An engine stalled in a fault runs no other job, so
 * nothing the servicing thread waits for may need a stalled engine (or a
 * later fault of the queue: the thread services one fault at a time).
 * What servicing waits for (fault.c, svm.c, migrate.c, pt_update.c):
 *  - vm->lock, a BO's reservation, pt_lock, notifier_lock, the mm's locks:
 *    their holders (binds, bind jobs, exec, the rebind worker, notifier
 *    callbacks, CPU fault-back) never wait for a kernel of a fault-mode VM:
 *    in fault mode no job fence sits in a reservation and no preempt fence
 *    exists, binds do not wait for kernels, moves under locks take idle
 *    BOs only.
 *  - TLB invalidations: a stalled engine is not translating and
 *    acknowledges at once, a running one at its next lane call, and an
 *    engine blocked on a full queue is stalled too (it quiesced before
 *    reporting).
 *  - Copies (SVM migration, BO moves and evictions for page-table or
 *    range memory): through ops->copy, which the device contract requires
 *    to complete without waiting for any kernel.  The simulated GPU runs
 *    copies on migration engines that never run kernels (src/sim/engine.c);
 *    before, a kernel of a COPY exec queue stalled in a fault on the only
 *    copy engine blocked the copy its own service waited for
 *    (test_sim.copy_completes_while_a_copy_queue_kernel_faults,
 *    test_fault_queue.copy_queue_fault_whose_service_evicts).
 *  - Nothing else: the thread never submits a fault, never waits for a
 *    fence of a kernel or of a bind that waits for one.
 *  - One known gap: a page fetch (userptr, SVM range) waits for the mm's
 *    running invalidations to end, and an invalidation of a dma-fence
 *    (non-LR) VM waits for that VM's kernels, which may be queued behind
 *    a stalled fault-mode kernel on the same engine.  That cycle is not
 *    broken yet (docs/vm.md, "Not done yet").
 * The submitter holds no lock while it waits (for room or completion).
 * Destroying a VM with faults pending does not wait for them: they hold
 * VM references (not the user's), the VM is closed, and servicing a
 * closed VM fails (-EFAULT), so they complete as failed.
 *
 * COLLECTING.  The thread is also the device's SVM garbage collector: a
 * notifier callback that queued unmapped ranges on vm->svm_gc lists the
 * VM (gvm__fault_queue_collect, under notifier_lock: fq->lock is a leaf),
 * and between batches the thread collects it (gvm__svm_collect: vm->lock,
 * like a service, then the dropped ranges freed with no lock held).
 * Faults go first.  The list holds no VM reference: gvm_vm_destroy()
 * calls gvm__fault_queue_forget() first, which unlists the VM for good
 * and waits while fq->collecting is that VM.
 *
 * NOTIFICATIONS.  Access-counter notifications (gvm_vm_access_notify) are
 * hints, not faults: nobody waits for them.  The engine's call copies the
 * notification into a ring of GVM_ACCESS_NOTES under fq->lock and
 * returns; a full ring drops it (-EAGAIN, counted), as hardware drops
 * them.  The thread acts on them last, after faults and collections, one
 * at a time (gvm__svm_accessed: vm->lock, like a collection).  Like the
 * collect list the ring holds no VM reference: gvm__fault_queue_forget()
 * removes the VM's notifications and waits while fq->noting is that VM,
 * and a closed VM takes no new ones.
 *
 * Not done here: no priorities between VMs, no per-VM fairness inside a
 * batch, no prefetch around a faulting page (servicing binds what
 * fault.c decides: the whole VMA, or an SVM range).
 */
#include "vm/fault_queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/page.h"
#include "core/sort.h"
#include "core/trace.h"
#include "vm/dev.h"
#include "vm/fault.h"
#include "vm/svm.h"
#include "vm/vm.h"

enum { FQ_PENDING = 0, FQ_SLEEPING = 1, FQ_DONE = 2 };

/* Coverage compares accesses by strength. */
_Static_assert(GVM_ACCESS_READ < GVM_ACCESS_WRITE &&
	       GVM_ACCESS_WRITE < GVM_ACCESS_ATOMIC,
	       "GVM_ACCESS_* grow with the permissions they need");

uint32_t gvm__fault_queue_threads;

int gvm__fault_queue_init(struct gvm_fault_queue *fq, struct gvm_device *dev,
			  uint32_t depth)
{
	if (!depth)
		depth = GVM_FAULT_QUEUE_DEFAULT;
	if (depth > GVM_FAULT_QUEUE_MAX)
		return -EINVAL;
	fq->ring = gvm__calloc(depth, sizeof(*fq->ring));
	if (!fq->ring)
		return -ENOMEM;
	fq->depth = depth;
	fq->dev = dev;
	gvm__mutex_init(&fq->start_lock, "device.fault_queue.start",
			GVM_RANK_NONE);
	gvm__mutex_init(&fq->lock, "device.fault_queue", GVM_RANK_LEAF);
	gvm__cond_init(&fq->work_cond);
	gvm__cond_init(&fq->room_cond);
	gvm__cond_init(&fq->state_cond);
	gvm_list_init(&fq->collect);
	return 0;
}

void gvm__fault_queue_fini(struct gvm_fault_queue *fq)
{
	bool started;

	/*
	 * The caller may hold locks (the last device reference can go with
	 * SVM device memory released under the mm's locks).  Joining is
	 * safe: with no VM left no fault is queued, so the thread is idle or
	 * finishing a batch it has completed, and takes no lock but
	 * fq->lock from then on.
	 */
	gvm__mutex_lock(&fq->lock);
	/* Every queued fault holds a VM, which holds the device. */
	gvm_assert(fq->count == 0);
	fq->stop = true;
	started = fq->started;
	gvm__cond_broadcast(&fq->work_cond);
	gvm__mutex_unlock(&fq->lock);
	if (started)
		gvm__thread_join(fq->thread);
	pthread_cond_destroy(&fq->state_cond);
	pthread_cond_destroy(&fq->room_cond);
	pthread_cond_destroy(&fq->work_cond);
	gvm__mutex_fini(&fq->lock);
	gvm__mutex_fini(&fq->start_lock);
	gvm__free(fq->ring);
}

/* ---- requests --------------------------------------------------------- */

static void req_complete(struct gvm_fault_req *req, int result, bool dup)
{
	req->result = result;
	req->deduplicated = dup;
	/* After this store the submitter may return: @req is gone. */
	if (__atomic_exchange_n(&req->done, FQ_DONE, __ATOMIC_RELEASE) ==
	    FQ_SLEEPING)
		gvm__futex_wake(&req->done, 1);
}

bool gvm__fault_req_done(struct gvm_fault_req *req)
{
	return gvm_load_acquire(&req->done) == FQ_DONE;
}

int gvm__fault_req_wait(struct gvm_fault_req *req)
{
	uint32_t v = gvm_load_acquire(&req->done);

	gvm_might_block();
	/*
	 * No polling before the sleep: a 30 us poll (yielding every
	 * microsecond) was measured slower, not faster, on the 2-vCPU VM
	 * (bench svm_fault_4k ~18 vs ~13 us per fault, svm_fault_64k ~21 vs
	 * ~15 us, medians of 3 and 6 runs): the poller's sched_yield calls
	 * compete with the servicing thread for the two CPUs.
	 */
	while (v != FQ_DONE) {
		if (v == FQ_PENDING) {
			/* Tell the completer to wake us. */
			if (!gvm_cmpxchg_acq_rel(&req->done, &v, FQ_SLEEPING))
				continue;	/* v: what it is now */
			v = FQ_SLEEPING;
		}
		gvm__futex_wait(&req->done, FQ_SLEEPING, -1);
		v = gvm_load_acquire(&req->done);
	}
	gvm__vm_put(req->vm);
	return req->result;
}

void gvm__fault_queue_submit(struct gvm_vm *vm, const struct gvm_fault_info *f,
			     struct gvm_fault_req *req)
{
	struct gvm_fault_queue *fq = &vm->dev->fq;

	gvm_might_block();
	req->info = *f;
	req->vm = gvm__vm_get(vm);
	req->result = -EFAULT;
	req->deduplicated = false;
	gvm_store_relaxed(&req->done, FQ_PENDING);

	gvm__mutex_lock(&fq->lock);
	gvm_assert(fq->started && !fq->stop);
	while (fq->count == fq->depth) {
		fq->blocked++;
		if (fq->watchers)
			gvm__cond_broadcast(&fq->state_cond);
		gvm__cond_wait(&fq->room_cond, &fq->lock);
		fq->blocked--;
	}
	req->seq = fq->next_seq++;
	fq->ring[(fq->head + fq->count) % fq->depth] = req;
	if (fq->count++ == 0)
		gvm__cond_signal(&fq->work_cond);
	if (fq->watchers)
		gvm__cond_broadcast(&fq->state_cond);
	gvm__mutex_unlock(&fq->lock);
}

/* ---- the servicing thread ------------------------------------------------ */

/* Batch order: VM, page, access strongest first, then arrival (stable). */
static int req_cmp(const void *a, const void *b)
{
	const struct gvm_fault_req *x = *(struct gvm_fault_req *const *)a;
	const struct gvm_fault_req *y = *(struct gvm_fault_req *const *)b;
	uint64_t px = x->info.addr >> GVM_PAGE_SHIFT;
	uint64_t py = y->info.addr >> GVM_PAGE_SHIFT;

	if (x->vm != y->vm)
		return (uintptr_t)x->vm < (uintptr_t)y->vm ? -1 : 1;
	if (px != py)
		return px < py ? -1 : 1;
	if (x->info.access != y->info.access)
		return x->info.access > y->info.access ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Does the service of @s (same VM and page, sorted before) cover @r? */
static bool covered(const struct gvm_fault_req *s, int s_result,
		    const struct gvm_fault_req *r)
{
	if (!s || s->vm != r->vm ||
	    (s->info.addr >> GVM_PAGE_SHIFT) != (r->info.addr >> GVM_PAGE_SHIFT))
		return false;
	return r->info.access == s->info.access ||
	       (s_result == 0 && r->info.access <= s->info.access);
}

/*
 * Is @r in the SVM range a service of this batch bound last in @vm, up to
 * @end (sorted after that fault: at or above the range's start), with its
 * page mapped for its access now (the page tables say so, whatever
 * happened to the range since)?
 */
static bool in_bound_range(const struct gvm_vm *vm, uint64_t end,
			   const struct gvm_fault_req *r)
{
	return r->vm == vm && r->info.addr < end &&
	       gvm__fault_resolved(r->vm, &r->info);
}

/* @r completes with @result, not serviced again. */
static void dedup(struct gvm_fault_req *r, int result)
{
	gvm__vm_stat_add(r->vm, faults_deduplicated, 1);
	r->result = result;
	r->deduplicated = true;
}

/* The largest batch of @vm's faults; written by the servicer of a batch
   (one at a time per device: fq->servicing). */
static void batch_max(struct gvm_vm *vm, uint64_t nr)
{
	if (nr > gvm_load_relaxed(&vm->stats.fault_batch_max))
		gvm_store_relaxed(&vm->stats.fault_batch_max, nr);
}

/* Sorts @b[0..n), services what is not covered, sets every result. */
static void service_sorted(struct gvm_fault_req **b, uint32_t n)
{
	const struct gvm_fault_req *last = NULL;
	struct gvm_vm *cur = NULL, *range_vm = NULL;
	uint64_t range_end = 0, bound_end;
	int last_result = 0;
	uint32_t i, end;

	if (n > 1)
		gvm__sort(b, n, sizeof(*b), req_cmp);
	for (i = 0; i < n; i++) {
		struct gvm_fault_req *r = b[i];

		if (r->vm != cur) {
			cur = r->vm;
			gvm__vm_stat_add(cur, fault_batches, 1);
			for (end = i; end < n && b[end]->vm == cur;)
				end++;
			batch_max(cur, end - i);
		}
		if (covered(last, last_result, r)) {
			dedup(r, last_result);
			continue;
		}
		if (in_bound_range(range_vm, range_end, r)) {
			dedup(r, 0);
			continue;
		}
		r->result = gvm__fault_service(r->vm, &r->info, &bound_end);
		last = r;
		last_result = r->result;
		if (!r->result && bound_end) {
			range_vm = r->vm;
			range_end = bound_end;
		}
	}
}

static void service_batch(struct gvm_fault_queue *fq,
			  struct gvm_fault_req **b, uint32_t n)
{
	struct gvm_device *dev = fq->dev;
	int64_t t0 = gvm__now_ns();
	uint32_t i;

	gvm_lockdep_assert_none_held();
	{
		/* Recorded before the first completion: once that is seen
		   the batch's event is in any trace stopped after it. */
		GVM_TRACE_FAULT_BATCH(dev, dev->name, n);
		service_sorted(b, n);
	}
	/*
	 * Completed only now: a completed request may vanish (it lives on
	 * its submitter's stack) and the coverage test reads earlier ones.
	 * After the last completion the device may be going: nothing but
	 * fq (alive until the join) is touched.
	 */
	for (i = 0; i < n; i++)
		req_complete(b[i], b[i]->result, b[i]->deduplicated);
	gvm_store_relaxed(&fq->last_batch_ns, gvm__now_ns() - t0);
	gvm_fetch_add_acq_rel(&fq->batches, 1u);
}

/* fq->lock held, a VM listed: collects it (the lock dropped meanwhile). */
static void collect_one(struct gvm_fault_queue *fq)
{
	struct gvm_vm *vm = gvm_list_first_entry(&fq->collect, struct gvm_vm,
						 gc_link);

	gvm_list_del(&vm->gc_link);
	fq->collecting = vm;
	gvm__mutex_unlock(&fq->lock);
	gvm__svm_collect(vm);
	gvm__mutex_lock(&fq->lock);
	fq->collecting = NULL;
	gvm__cond_broadcast(&fq->state_cond);
}

/* fq->lock held, a notification queued: acts on it (lock dropped). */
static void note_one(struct gvm_fault_queue *fq)
{
	struct gvm_access_note n = fq->notes[fq->notes_head];

	fq->notes_head = (fq->notes_head + 1) % GVM_ACCESS_NOTES;
	fq->notes_count--;
	fq->noting = n.vm;
	gvm__mutex_unlock(&fq->lock);
	gvm__svm_accessed(n.vm, &n.info);
	gvm__mutex_lock(&fq->lock);
	fq->noting = NULL;
	gvm__cond_broadcast(&fq->state_cond);
}

/* fq->lock held: is there anything for the thread to do? */
static bool thread_has_work(const struct gvm_fault_queue *fq)
{
	return fq->count || !gvm_list_empty(&fq->collect) || fq->notes_count;
}

static void *fault_thread_main(void *arg)
{
	struct gvm_fault_queue *fq = arg;
	char name[16];

	snprintf(name, sizeof(name), "%.8s/fault", fq->dev->name);
	pthread_setname_np(pthread_self(), name);
	gvm__mutex_lock(&fq->lock);
	for (;;) {
		uint32_t n, i;

		if (fq->stop)
			break;
		if (fq->hold || fq->servicing || !thread_has_work(fq)) {
			gvm__cond_wait(&fq->work_cond, &fq->lock);
			continue;
		}
		if (!fq->count) {
			if (!gvm_list_empty(&fq->collect))
				collect_one(fq);
			else
				note_one(fq);
			continue;
		}
		n = fq->count < GVM_FAULT_BATCH_MAX ? fq->count :
						      GVM_FAULT_BATCH_MAX;
		for (i = 0; i < n; i++)
			fq->batch[i] = fq->ring[(fq->head + i) % fq->depth];
		fq->head = (fq->head + n) % fq->depth;
		fq->count -= n;
		if (fq->blocked)
			gvm__cond_broadcast(&fq->room_cond);
		if (fq->watchers)
			gvm__cond_broadcast(&fq->state_cond);
		fq->servicing = true;
		gvm__mutex_unlock(&fq->lock);
		service_batch(fq, fq->batch, n);
		gvm__mutex_lock(&fq->lock);
		fq->servicing = false;
	}
	gvm__mutex_unlock(&fq->lock);
	gvm_fetch_sub_release(&gvm__fault_queue_threads, 1u);
	return NULL;
}

/* ---- servicing a fault: inline or through the queue --------------------- */

int gvm__fault_queue_service(struct gvm_vm *vm, const struct gvm_fault_info *f)
{
	struct gvm_fault_queue *fq = &vm->dev->fq;
	struct gvm_fault_req req, *b = &req;

	gvm_might_block();
	gvm__mutex_lock(&fq->lock);
	gvm_assert(fq->started && !fq->stop);
	if (fq->hold || fq->servicing || fq->count) {
		gvm__mutex_unlock(&fq->lock);
		gvm__fault_queue_submit(vm, f, &req);
		return gvm__fault_req_wait(&req);
	}
	/* INLINE: a batch of one, serviced here. */
	fq->servicing = true;
	req.info = *f;
	req.vm = gvm__vm_get(vm);	/* as a queued fault holds it */
	req.result = -EFAULT;
	req.deduplicated = false;
	req.seq = fq->next_seq++;
	req.done = FQ_PENDING;
	gvm__mutex_unlock(&fq->lock);
	service_batch(fq, &b, 1);
	gvm__mutex_lock(&fq->lock);
	fq->servicing = false;
	/* Faults queued meanwhile, collections, notifications: the thread
	   waited for this.  Nothing: no wake-up (a futex call and a cross-CPU
	   wake-up per fault doubled svm_fault_4k's median). */
	if (thread_has_work(fq))
		gvm__cond_signal(&fq->work_cond);
	gvm__mutex_unlock(&fq->lock);
	gvm__vm_put(req.vm);
	return req.result;
}

int gvm__fault_queue_start(struct gvm_device *dev)
{
	struct gvm_fault_queue *fq = &dev->fq;
	int err = 0;

	gvm_lockdep_assert_none_held();
	/* Not under fq->lock: pthread_create() touches glibc's heap, the
	   application's memory (lr.c, gvm__lr_vm_init, says why). */
	gvm__mutex_lock(&fq->start_lock);
	if (!fq->started) {
		pthread_t t;

		gvm_fetch_add_relaxed(&gvm__fault_queue_threads, 1u);
		err = gvm__thread_create(&t, fault_thread_main, fq);
		if (err) {
			gvm_fetch_sub_release(&gvm__fault_queue_threads, 1u);
		} else {
			gvm__mutex_lock(&fq->lock);
			fq->thread = t;
			fq->started = true;
			gvm__mutex_unlock(&fq->lock);
		}
	}
	gvm__mutex_unlock(&fq->start_lock);
	return err;
}

/* ---- collecting --------------------------------------------------------- */

void gvm__fault_queue_collect(struct gvm_vm *vm)
{
	struct gvm_fault_queue *fq = &vm->dev->fq;

	gvm__mutex_lock(&fq->lock);
	if (!vm->gc_closed && gvm_list_empty(&vm->gc_link)) {
		gvm_list_add_tail(&vm->gc_link, &fq->collect);
		gvm__cond_signal(&fq->work_cond);
	}
	gvm__mutex_unlock(&fq->lock);
}

/* fq->lock held: drops @vm's queued notifications, keeping the order. */
static void notes_forget(struct gvm_fault_queue *fq, struct gvm_vm *vm)
{
	uint32_t i, kept = 0;

	for (i = 0; i < fq->notes_count; i++) {
		struct gvm_access_note *n =
			&fq->notes[(fq->notes_head + i) % GVM_ACCESS_NOTES];

		if (n->vm != vm)
			fq->notes[(fq->notes_head + kept++) %
				  GVM_ACCESS_NOTES] = *n;
	}
	fq->notes_count = kept;
}

void gvm__fault_queue_forget(struct gvm_vm *vm)
{
	struct gvm_fault_queue *fq = &vm->dev->fq;

	gvm_lockdep_assert_none_held();	/* the collection takes vm->lock */
	gvm__mutex_lock(&fq->lock);
	vm->gc_closed = true;
	gvm_list_del(&vm->gc_link);
	notes_forget(fq, vm);
	while (fq->collecting == vm || fq->noting == vm)
		gvm__cond_wait(&fq->state_cond, &fq->lock);
	gvm__mutex_unlock(&fq->lock);
}

/* ---- access-counter notifications ---------------------------------------- */

int gvm_vm_access_notify(struct gvm_vm *vm, const struct gvm_access_info *a)
{
	struct gvm_fault_queue *fq;
	int err = 0;

	if (!vm || !a || !a->size || (a->size & (a->size - 1)) ||
	    (a->addr & (a->size - 1)) || a->addr + a->size < a->addr)
		return -EINVAL;
	if (!(vm->flags & GVM_VM_FAULT_MODE))
		return -EOPNOTSUPP;
	fq = &vm->dev->fq;
	gvm_fetch_add_relaxed(&vm->dev->access_notified, 1u);
	gvm__mutex_lock(&fq->lock);
	if (vm->gc_closed) {
		/* being destroyed: nothing to act on */
	} else if (fq->notes_count == GVM_ACCESS_NOTES) {
		gvm_fetch_add_relaxed(&vm->dev->access_dropped, 1u);
		err = -EAGAIN;
	} else {
		fq->notes[(fq->notes_head + fq->notes_count++) %
			  GVM_ACCESS_NOTES] = (struct gvm_access_note){
			.vm = vm,
			.info = *a,
		};
		gvm__cond_signal(&fq->work_cond);
	}
	gvm__mutex_unlock(&fq->lock);
	return err;
}

void gvm__fault_queue_notes_wait(struct gvm_device *dev)
{
	struct gvm_fault_queue *fq = &dev->fq;

	gvm__mutex_lock(&fq->lock);
	while (fq->notes_count || fq->noting)
		gvm__cond_wait(&fq->state_cond, &fq->lock);
	gvm__mutex_unlock(&fq->lock);
}

void gvm__fault_queue_collect_wait(struct gvm_vm *vm)
{
	struct gvm_fault_queue *fq = &vm->dev->fq;

	gvm__mutex_lock(&fq->lock);
	while (!gvm_list_empty(&vm->gc_link) || fq->collecting == vm)
		gvm__cond_wait(&fq->state_cond, &fq->lock);
	gvm__mutex_unlock(&fq->lock);
}

/* ---- test hooks ------------------------------------------------------- */

void gvm__fault_queue_hold(struct gvm_device *dev, bool hold)
{
	struct gvm_fault_queue *fq = &dev->fq;

	gvm__mutex_lock(&fq->lock);
	fq->hold = hold;
	gvm__cond_broadcast(&fq->work_cond);
	gvm__mutex_unlock(&fq->lock);
}

void gvm__fault_queue_wait_for(struct gvm_device *dev, uint32_t queued,
			       uint32_t blocked)
{
	struct gvm_fault_queue *fq = &dev->fq;

	gvm__mutex_lock(&fq->lock);
	fq->watchers++;
	while (fq->count < queued || fq->blocked < blocked)
		gvm__cond_wait(&fq->state_cond, &fq->lock);
	fq->watchers--;
	gvm__mutex_unlock(&fq->lock);
}
