// SPDX-License-Identifier: MIT
/*
 * Queued binds: a bind that must wait (for its in-syncs, an earlier bind
 * of an overlapping range on another queue, kernels still using mappings
 * it removes, moves of the BOs it maps, or its queue's earlier work)
 * decides its VA state in the call (bind.c) and leaves the page-table
 * write to a job on its bind queue.
 *
 * The job's run() is on the fence-signalling path: every fence that waits
 * for the bind (execs, other binds, user syncs) depends on it.  So it takes
 * no vm->lock (whose holders may wait for those fences), only pt_lock, and
 * does not wait for the TLB invalidation it submits: that fence is its
 * hardware fence, from which the scheduler completes the job.  The unlinked
 * page tables and the VMAs that went away are freed when the job is freed,
 * after its fence signalled.
 *
 * Dependencies go through proxies (struct dep_proxy): signalled without
 * error once their dependency signals, with an error or not, because a
 * bind's VA state is decided and its page tables must follow whatever
 * happened to what it waited for ("Failed dependencies" in bind.c).
 *
 * Abandoned waits.  The proxies of a bind's wait syncs (the user's
 * fences, which may never signal) are also on a process-wide list while
 * they wait, tagged with their queue.  Destroying a bind queue (or the VM,
 * for its default queue) signals them early (gvm__queue_abandon_waits):
 * the binds stop waiting for their wait syncs and take effect, still after
 * their internal dependencies (kernels using what goes away, moves, binds
 * of other queues), so that a destroy never waits for a fence nobody will
 * signal.  Execs wait for their unsignalled wait syncs through the same
 * proxies (gvm__queue_wait_proxy), which forward the error of the sync
 * (exec's rule: it cancels the kernel) and, abandoned when the exec
 * queue is destroyed, signal -ECANCELED: the kernel does not run.  An
 * exec waits for the VM's pending binds and moves through such proxies
 * too (exec.c): a bind of another queue may wait for a wait sync nobody
 * signals.  The list (waiting) has a leaf lock: a proxy's callback
 * (under its dependency's fence lock) takes it to leave the list;
 * abandoning takes a reference to the proxy under it, then, unlocked,
 * takes its callback off the dependency (a user's fence that never
 * signals would keep the proxy, and the proxy the fence, for ever) and
 * signals it.  A bind job's internal dependencies are never abandoned.
 *
 * Range fences (struct gvm_range_fence, under vm->lock): the hull of a
 * queued bind's touched ranges and its fence; a later bind of another
 * queue overlapping it depends on it.  They are kept per bind queue
 * (struct gvm_rf_queue, vm->rf_queues, one per fence context): in push
 * order, which is the order their fences signal in (one scheduler queue),
 * so pruning pops signalled ones off each queue's head and stops at the
 * first pending one; and in an interval tree, so that a bind finds the
 * overlapping ones of the other queues in O(queues x log n) instead of
 * walking every pending bind (bind_queue_async: 1200 binds in flight).
 * "Is this fence a pending bind's?" is a lookup of its context.
 *
 * Locking: the job takes pt_lock (prepare, commit; notifier_lock inside
 * the commit) and nothing else; range fences: vm->lock.
 */
#include "vm/bind_job.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <gvm/sched.h>

#include "core/alloc.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "core/trace.h"
#include "vm/bind.h"
#include "vm/dev.h"
#include "vm/pt_update.h"
#include "vm/vm.h"

struct dep_proxy {
	struct gvm_fence_cb cb;
	struct gvm_fence *dep;		/* reference */
	struct gvm_fence *fence;	/* the proxy; reference */
	bool user;			/* a wait sync: may be abandoned */
	bool forward;			/* exec: signal with dep's error */
	int abandon_err;		/* the error it signals abandoned */
	struct gvm_list link;		/* waiting.list, under waiting.lock */
	struct gvm_queue *q;		/* on waiting.list: its queue (not a
					   reference); NULL when off it;
					   waiting.lock */
	uint32_t refs;			/* atomic: its callback's, and an
					   abandoner's while it takes the
					   callback off dep */
};

/* Waiting proxies of wait syncs, for gvm__queue_abandon_waits(). */
static struct {
	pthread_once_t once;
	struct gvm_mutex lock;		/* leaf: list, every proxy's q */
	struct gvm_list list;		/* dep_proxy.link */
} waiting = { .once = PTHREAD_ONCE_INIT };

static void proxies_init(void)
{
	gvm__mutex_init(&waiting.lock, "bind_waiting.lock", GVM_RANK_LEAF);
	gvm_list_init(&waiting.list);
}

struct gvm_bind_job {
	struct gvm_job job;
	struct gvm_vm *vm;		/* reference, from push */
	struct gvm_queue *q;		/* its queue, from create */
	struct gvm_vm_update upd;
	struct gvm_vma **dead;		/* VMAs that went away */
	size_t nr_dead;
	struct dep_proxy **proxies;	/* armed at push */
	size_t nr_proxies, cap_proxies;
};

/*
 * The range fences of one bind queue of a VM, all under vm->lock.
 * Invariants: nr == length of fifo; the entries of tree are those of fifo
 * with lo < hi, as [lo, hi - 1]; the fences of fifo are @context's in
 * increasing seqno order, so an unsignalled one is never before a
 * signalled one once pruned.
 */
struct gvm_rf_queue {
	uint64_t context;		/* the queue's finished fences' */
	struct gvm_queue *q;		/* not a reference: compared only (a
					   queue is drained before it goes,
					   so a reused address finds only
					   signalled fences here) */
	struct gvm_list fifo;		/* gvm_range_fence.link, oldest first */
	struct gvm_itree tree;		/* the non-empty ones by range */
	size_t nr;
};

struct gvm_range_fence {
	struct gvm_list link;		/* rq->fifo, once published */
	struct gvm_rf_queue *rq;	/* its queue's, from prepare */
	uint64_t lo, hi;		/* [lo, hi) */
	struct gvm_fence *fence;	/* reference, once published */
};

/*
 * The update could not be committed (the VM is banned, or an injected
 * failure): nothing of it was written, so what it unmaps may still be
 * mapped, while the job frees those VMAs and drops their BO references
 * and pages once it ends.  They are zapped here, as an invalidation would
 * (in place, no allocation), and the whole TLB flushed before the job
 * ends: the banned VM's kernels fault there instead of reaching freed
 * memory.
 */
static void zap_dead(struct gvm_bind_job *bj)
{
	struct gvm_pt_tlb tlb = { .full = true };
	struct gvm_vm *vm = bj->vm;
	struct gvm_fence *f;
	size_t i;

	gvm__mutex_lock(&vm->pt_lock);
	gvm__mutex_lock(&vm->notifier_lock);
	for (i = 0; i < bj->nr_dead; i++) {
		struct gvm_pt_tlb t;

		gvm__pt_zap(&vm->pt, bj->dead[i]->va.addr,
			    bj->dead[i]->va.range, &t);
	}
	gvm__mutex_unlock(&vm->notifier_lock);
	gvm__mutex_unlock(&vm->pt_lock);
	f = gvm__vm_tlb_submit(vm, &tlb);
	if (f) {
		gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
		gvm_fence_put(f);
	}
}

static int bind_job_run(struct gvm_job *job, struct gvm_fence **hw_fence)
{
	struct gvm_bind_job *bj = gvm_container_of(job, struct gvm_bind_job,
						   job);
	struct gvm_vm *vm = bj->vm;
	int err;

	GVM_TRACE_BIND_JOB(vm->dev, vm->dev->name, job->queue,
			   bj->upd.nr_segs);
	gvm__signalling_begin();
	gvm__mutex_lock(&vm->pt_lock);
	err = gvm__vm_banned(vm) ? -EIO : gvm__bind_inject_check(
						 GVM_BIND_STAGE_RUN);
	if (!err)
		err = gvm__vm_update_prepare(&bj->upd);	/* reserved */
	if (!err)
		err = gvm__vm_update_commit(&bj->upd, GVM_UPDATE_STALE_ZAP);
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__signalling_end();
	if (err) {
		gvm__vm_ban(vm, err);
		if (bj->nr_dead)
			zap_dead(bj);
		return -EIO;
	}
	/* The backend's TLB fence: allocated by the backend (device.h). */
	*hw_fence = gvm__vm_update_tlb_submit(&bj->upd);
	return 0;
}

static void bind_job_free(struct gvm_job *job)
{
	struct gvm_bind_job *bj = gvm_container_of(job, struct gvm_bind_job,
						   job);
	size_t i;

	gvm__vm_update_free_tables(&bj->upd, false);
	gvm__vm_update_fini(&bj->upd);
	for (i = 0; i < bj->nr_dead; i++)
		gvm__vma_free_deferred(bj->vm, bj->dead[i]);
	gvm__free(bj->dead);
	gvm__free(bj->proxies);
	gvm__vm_put(bj->vm);
	gvm__free(bj);
}

static const struct gvm_job_ops bind_job_ops = {
	.run = bind_job_run,
	.free = bind_job_free,
};

int gvm__bind_job_create(struct gvm_queue *q, struct gvm_bind_job **out)
{
	struct gvm_bind_job *bj = gvm__calloc(1, sizeof(*bj));
	int err;

	if (!bj)
		return -ENOMEM;
	err = gvm_job_init(&bj->job, q->sq, &bind_job_ops);
	if (err) {
		gvm__free(bj);
		return err;
	}
	bj->q = q;
	*out = bj;
	return 0;
}

static void dep_proxy_free(struct dep_proxy *p)
{
	gvm_fence_put(p->fence);
	gvm_fence_put(p->dep);
	gvm__free(p);
}

static void dep_proxy_put(struct dep_proxy *p)
{
	if (gvm_fetch_sub_acq_rel(&p->refs, 1u) == 1)
		dep_proxy_free(p);
}

static void dep_proxy_cb(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct dep_proxy *p = gvm_container_of(cb, struct dep_proxy, cb);

	int err = p->forward ? gvm_fence_get_status(f) : 0;

	if (p->user) {
		gvm__mutex_lock(&waiting.lock);
		if (p->q) {
			gvm_list_del(&p->link);
			p->q = NULL;
		}
		gvm__mutex_unlock(&waiting.lock);
	}
	/* -EALREADY if abandoned meanwhile. */
	gvm_fence_signal_error(p->fence, err < 0 ? err : 0);
	dep_proxy_put(p);
}

/* Lists @p as a wait of @q (before its callback is armed: it may free p). */
static void proxy_list(struct dep_proxy *p, struct gvm_queue *q)
{
	pthread_once(&waiting.once, proxies_init);
	gvm__mutex_lock(&waiting.lock);
	p->q = q;
	gvm_list_add_tail(&p->link, &waiting.list);
	gvm__mutex_unlock(&waiting.lock);
}

int gvm__queue_wait_proxy(struct gvm_queue *q, struct gvm_fence *dep,
			  struct gvm_fence **out)
{
	struct dep_proxy *p = gvm__calloc(1, sizeof(*p));
	int err;

	if (!p)
		return -ENOMEM;
	err = gvm_fence_create(gvm_fence_context_alloc(1), 1, &p->fence);
	if (err) {
		gvm__free(p);
		return err;
	}
	p->dep = gvm_fence_get(dep);
	p->user = true;
	p->forward = true;
	p->abandon_err = -ECANCELED;
	p->refs = 1;
	*out = gvm_fence_get(p->fence);
	proxy_list(p, q);
	gvm_fence_add_callback(dep, &p->cb, dep_proxy_cb);
	return 0;
}

int gvm__bind_job_add_dep(struct gvm_bind_job *bj, struct gvm_fence *dep,
			  bool user)
{
	struct dep_proxy *p;
	int err;

	if (gvm_fence_is_signaled(dep))
		return 0;
	err = GVM_GROW(bj->proxies, bj->cap_proxies, bj->nr_proxies + 1);
	if (err)
		return err;
	p = gvm__calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	err = gvm_fence_create(gvm_fence_context_alloc(1), 1, &p->fence);
	if (err) {
		gvm__free(p);
		return err;
	}
	p->dep = gvm_fence_get(dep);
	p->user = user;
	p->refs = 1;
	bj->proxies[bj->nr_proxies++] = p;
	return gvm_job_add_dependency(&bj->job, p->fence);
}

void gvm__bind_job_abort(struct gvm_bind_job *bj)
{
	size_t i;

	for (i = 0; i < bj->nr_proxies; i++)
		dep_proxy_free(bj->proxies[i]);
	gvm__free(bj->proxies);
	gvm_job_fini(&bj->job);
	gvm__free(bj);
}

struct gvm_fence *gvm__bind_job_arm(struct gvm_bind_job *bj)
{
	gvm_job_arm(&bj->job);
	return gvm_fence_get(gvm_job_finished(&bj->job));
}

void gvm__bind_job_push(struct gvm_bind_job *bj, struct gvm_vm *vm,
			struct gvm_vm_update *upd, struct gvm_vma **dead,
			size_t nr_dead)
{
	struct dep_proxy **proxies = bj->proxies;
	size_t i, nr_proxies = bj->nr_proxies;

	gvm_lockdep_assert_held(&vm->lock);
	bj->vm = gvm__vm_get(vm);
	gvm__vm_update_move(&bj->upd, upd);
	bj->dead = dead;
	bj->nr_dead = nr_dead;
	/* The proxies free themselves; the job may be gone before they are
	   all armed. */
	bj->proxies = NULL;
	bj->nr_proxies = 0;
	gvm_job_push(&bj->job);
	for (i = 0; i < nr_proxies; i++) {
		struct dep_proxy *p = proxies[i];

		if (p->user)
			proxy_list(p, bj->q);
		gvm_fence_add_callback(p->dep, &p->cb, dep_proxy_cb);
	}
	gvm__free(proxies);
}

void gvm__queue_abandon_waits(struct gvm_queue *q)
{
	gvm_might_block();
	pthread_once(&waiting.once, proxies_init);
	for (;;) {
		struct dep_proxy *p = NULL;
		struct gvm_list *pos;

		gvm__mutex_lock(&waiting.lock);
		gvm_list_for_each(pos, &waiting.list) {
			p = gvm_list_entry(pos, struct dep_proxy, link);
			if (p->q == q)
				break;
			p = NULL;
		}
		if (p) {
			gvm_list_del(&p->link);
			p->q = NULL;
			gvm_fetch_add_relaxed(&p->refs, 1u);	/* ours */
		}
		gvm__mutex_unlock(&waiting.lock);
		if (!p)
			break;
		/*
		 * Off the user's fence, which may never signal: it would keep
		 * the proxy, and with it the fence itself, for ever.  If the
		 * callback ran meanwhile, it signalled and put its reference.
		 */
		if (gvm_fence_remove_callback(p->dep, &p->cb))
			dep_proxy_put(p);
		gvm_fence_signal_error(p->fence, p->abandon_err);
		dep_proxy_put(p);
	}
}

/* ---- range fences ------------------------------------------------------ */

/* The entry of @context in @vm, or NULL. */
static struct gvm_rf_queue *rf_queue_find(struct gvm_vm *vm, uint64_t context)
{
	for (size_t i = 0; i < vm->nr_rf_queues; i++)
		if (vm->rf_queues[i]->context == context)
			return vm->rf_queues[i];
	return NULL;
}

static void rf_queue_destroy(struct gvm_rf_queue *rq)
{
	gvm__itree_fini(&rq->tree);
	gvm__free(rq);
}

int gvm__range_fence_prepare(struct gvm_vm *vm, struct gvm_queue *q,
			     struct gvm_range_fence **out)
{
	uint64_t context = gvm_sched_queue_context(q->sq);
	struct gvm_range_fence *rf;
	struct gvm_rf_queue *rq;
	int err;

	gvm_lockdep_assert_held(&vm->lock);
	rf = gvm__calloc(1, sizeof(*rf));
	if (!rf)
		return -ENOMEM;
	rq = rf_queue_find(vm, context);
	if (!rq) {
		err = GVM_GROW(vm->rf_queues, vm->cap_rf_queues,
			       vm->nr_rf_queues + 1);
		if (err)
			goto err_free;
		rq = gvm__calloc(1, sizeof(*rq));
		if (!rq) {
			err = -ENOMEM;
			goto err_free;
		}
		rq->context = context;
		rq->q = q;
		gvm_list_init(&rq->fifo);
		gvm__itree_init(&rq->tree);
		vm->rf_queues[vm->nr_rf_queues++] = rq;
	}
	/* Add's insert cannot fail.  (If this bind fails, the reservation
	   stays until the next one's: harmless, see itree.h.) */
	err = gvm__itree_reserve(&rq->tree, 1);
	if (err)
		goto err_free;	/* an empty rq goes at the next prune */
	rf->rq = rq;
	*out = rf;
	return 0;

err_free:
	gvm__free(rf);
	return err;
}

void gvm__range_fence_free(struct gvm_range_fence *rf)
{
	if (rf && rf->fence)
		gvm_fence_put(rf->fence);
	gvm__free(rf);
}

void gvm__range_fence_add(struct gvm_vm *vm, struct gvm_range_fence *rf,
			  uint64_t lo, uint64_t hi, struct gvm_fence *f)
{
	struct gvm_rf_queue *rq = rf->rq;

	gvm_lockdep_assert_held(&vm->lock);
	GVM_WARN_ON(f->context != rq->context);
	rf->lo = lo;
	rf->hi = hi;
	rf->fence = gvm_fence_get(f);
	gvm_list_add_tail(&rf->link, &rq->fifo);
	rq->nr++;
	if (lo < hi)	/* reserved in prepare: cannot fail */
		GVM_WARN_ON(gvm__itree_insert(&rq->tree, lo, hi - 1, rf));
	gvm__itree_unreserve(&rq->tree);
}

void gvm__range_fences_prune(struct gvm_vm *vm)
{
	size_t i, kept = 0;

	gvm_lockdep_assert_held(&vm->lock);
	for (i = 0; i < vm->nr_rf_queues; i++) {
		struct gvm_rf_queue *rq = vm->rf_queues[i];

		while (!gvm_list_empty(&rq->fifo)) {
			struct gvm_range_fence *rf = gvm_list_first_entry(
				&rq->fifo, struct gvm_range_fence, link);

			if (!gvm_fence_is_signaled(rf->fence))
				break;
			gvm_list_del(&rf->link);
			if (rf->lo < rf->hi)
				gvm__itree_remove(&rq->tree, rf->lo, rf);
			rq->nr--;
			gvm__range_fence_free(rf);
		}
		if (rq->nr)
			vm->rf_queues[kept++] = rq;
		else
			rf_queue_destroy(rq);
	}
	vm->nr_rf_queues = kept;
}

void gvm__range_fences_fini(struct gvm_vm *vm)
{
	for (size_t i = 0; i < vm->nr_rf_queues; i++) {
		struct gvm_rf_queue *rq = vm->rf_queues[i];
		struct gvm_list *pos, *tmp;

		gvm_list_for_each_safe(pos, tmp, &rq->fifo) {
			gvm_list_del(pos);
			gvm__range_fence_free(gvm_list_entry(
				pos, struct gvm_range_fence, link));
		}
		rf_queue_destroy(rq);
	}
	gvm__free(vm->rf_queues);
	vm->rf_queues = NULL;
	vm->nr_rf_queues = vm->cap_rf_queues = 0;
}

/* Does @rf overlap one of @r[0..n)? */
static bool rf_overlaps(const struct gvm_range_fence *rf,
			const struct gvm_addr_range *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (r[i].lo < rf->hi && rf->lo < r[i].hi)
			return true;
	return false;
}

int gvm__range_fences_overlapping(struct gvm_vm *vm, struct gvm_queue *q,
				  const struct gvm_addr_range *r, size_t n,
				  int (*fn)(void *arg, struct gvm_fence *f),
				  void *arg)
{
	struct gvm_itree_iter it;
	size_t i, k;
	int err;

	gvm_lockdep_assert_held(&vm->lock);
	for (k = 0; k < vm->nr_rf_queues; k++) {
		struct gvm_rf_queue *rq = vm->rf_queues[k];

		if (rq->q == q)
			continue;
		for (i = 0; i < n; i++) {
			struct gvm_range_fence *rf;

			if (r[i].lo >= r[i].hi)
				continue;
			for (rf = gvm__itree_iter_first(&rq->tree, &it,
							r[i].lo, r[i].hi - 1);
			     rf; rf = gvm__itree_iter_next(&it)) {
				if (rf_overlaps(rf, r, i))
					continue;	/* found for r[< i] */
				err = fn(arg, rf->fence);
				if (err)
					return err;
			}
		}
	}
	return 0;
}

bool gvm__range_fence_is(struct gvm_vm *vm, const struct gvm_fence *f)
{
	gvm_lockdep_assert_held(&vm->lock);
	/*
	 * Every fence of a bind queue's context is a bind job's, and each
	 * got a range fence; the ones pruned are signalled.
	 */
	return rf_queue_find(vm, f->context) != NULL;
}
