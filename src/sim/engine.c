// SPDX-License-Identifier: MIT
/*
 * Simulated GPU: engines, jobs, fences, the timer thread and the TLB
 * invalidation protocol.
 *
 * ENGINES.  Every engine (cfg.nr_compute compute engines, cfg.nr_copy
 * copy engines, then cfg.nr_copy migration engines) is a thread with a
 * FIFO of jobs.  A job is a kernel (run lane by lane, lane.c) or a copy
 * (ops->copy).  Compute and copy engines run the kernels of exec queues of
 * their class (a copy engine translates through its own TLB like any
 * engine); only migration engines take copies.  A kernel stalled in a GPU
 * fault stalls its engine, and gvm's fault service may wait for a copy
 * (SVM migration, a BO evicted to make room): if copies shared an engine
 * with kernels of COPY queues, that copy could wait behind the very
 * kernel whose fault it serves.  Migration engines never run a kernel,
 * so a copy never waits for one (the device contract's ops->copy rule).  Copies use the engine's fence context, the
 * kernels of an exec queue their queue's: a job's fence gets the next
 * seqno of its context, under engine->lock, in the order the jobs are
 * queued, and fences signal in that order (one signaller per engine at a
 * time: its thread, or the timer thread when it has fences pending there;
 * see complete()).  The engine runs the first queued job whose queue is
 * not suspended.  Plain fences (gvm_fence_create) are used rather than a
 * gvm_timeline because a timeline fence cannot be created under
 * engine->lock (both are leaf locks), and creating it outside the lock
 * could hand out seqnos in another order than the jobs are queued.
 *
 * PREEMPTION (ops->queue_suspend / queue_resume).  A queue has a suspend
 * count; its jobs start only while it is 0.  Suspending a queue whose job
 * the engine is running raises the queue's `preempt` flag: the engine
 * parks the job before its next lane (lane.c), puts it back at the head of
 * its FIFO (so it stays ahead of its queue's later jobs) and goes on with
 * other queues' jobs; the suspend's fence signals then (or when the job
 * ends, if it ends first).  Suspending an idle or already parked queue
 * signals at once.  When the count drops back to 0 the parked job is
 * eligible again and continues with the lane it parked at.  The engine
 * keeps acknowledging TLB invalidations while a job is parked (a parked
 * job is not "translating"; it holds no span and retranslates when it
 * resumes), so nothing waits for a suspended queue but its own jobs.
 *
 *   ops->queue_suspend              engine thread
 *   ------------------              -------------
 *   lock; count++                   lock; job = first eligible;
 *   running it (cur_q == q)?          cur_q = job->q; unlock
 *     yes: done pending,            lanes: before each, preempt? -> park
 *          preempt = 1 (release)    lock; cur_q = NULL; parked: back at
 *     no:  done signalled             the head; take q's pending done;
 *   unlock                            unlock; signal it
 *
 * TIMER.  One thread per device signals fences at a modelled time: copy
 * fences (latency + size / bandwidth after the copy started, the engine
 * being busy for size / bandwidth; a copy to or from a linked peer's
 * VRAM is charged the link's bandwidth and latency instead), TLB invalidation fences (latency after
 * submit; only when somebody waits for one, and a waiter or poller that
 * finds the deadline passed signals it first: see SIGNALLING ON DEMAND).
 * The thread sleeps with a timer slack of 1 ns, so it wakes at the
 * deadline rather than up to 50 us after it.  Nothing ever sleeps to model
 * time, so modelled latencies of several devices, or of several requests,
 * overlap.
 *
 * TLB INVALIDATION.  A request (vm, range) must be acknowledged by every
 * engine before its fence may signal; the fence signals at
 * max(last acknowledgement, submit + cfg.tlb_inval_latency_ns), and after
 * the earlier requests of its VM (SEQNO ORDER below: one fence context per
 * VM attachment; requests are recycled, REQUEST RECYCLING).
 *
 *   submitter (ops->tlb_inval, ic->lock)  engine thread
 *   ------------------------------------  -------------
 *   for each engine:                      dequeue a job:
 *     head == IDLE (not translating)?       lock; head = NULL (translating);
 *       no:  push a node on the head            unlock
 *            (CAS); inval_pending = 1     ... lanes: at every lane call
 *       yes: lock; still IDLE? invalidate     if inval_pending:
 *            its TLB now; unlock                pending = 0; take the stack
 *   drop the idle engines' counts and           (xchg); apply oldest first;
 *   the submitter's (COMPLETE below)            acknowledge in that order
 *                                           before a fault report / at the
 *                                           end of the job, until nothing
 *                                           is queued: take, apply,
 *                                           acknowledge; lock; head NULL
 *                                           -> IDLE (CAS); unlock
 *
 * The head changes to and from IDLE only under engine->lock (QUEUEING
 * below), so a request either finds the engine not translating (and owns
 * its TLB under the lock) or is taken by the engine before it stops
 * translating.  An engine reporting a
 * fault is not translating: the fault handler may bind and invalidate, and
 * waits for the invalidation it submitted, which this engine then
 * acknowledges at once (no deadlock).  A busy engine acknowledges only at
 * a lane-call boundary, so a kernel's spans stay valid until its next
 * lane call (other than gvm_lane_span) even while an invalidation waits.
 *
 * HAND-OFFS.  An engine that finished a job polls e->kicks (bumped by
 * every submit, resume and stop, under e->lock) for GVM_HANDOFF_SPIN_NS
 * before it sleeps on e->cond, so a job submitted right after the last one
 * ended starts without a wake-up; an idle engine never spins.  Waiters do
 * the same on the other side (gvm_fence_wait, the scheduler's workers).
 *
 * Locking: engine->lock and sd->timer_lock are leaves (docs/locking.md):
 * nothing else is taken under them except the heap and fence
 * initialisation (gvm_fence_create takes no lock); fences are signalled
 * with no backend lock held.  A VM attachment's invalidation context
 * lock (ic->lock, rank GVM_RANK_SIM_INVAL) ranks just below: ops->tlb_inval
 * takes each engine's lock in turn under it (never two at once, and it
 * never waits), and the timer lock nests in it when a request's timer is
 * armed (REQUEST RECYCLING, SEQNO ORDER).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include "core/alloc.h"
#include "sim/sim_internal.h"

/* ---- timer ------------------------------------------------------------ */

static void timer_add(struct sim_dev *sd, struct sim_timer_item *it)
{
	struct gvm_list *pos;
	bool first;

	gvm__mutex_lock(&sd->timer_lock);
	/* After the last item with deadline <= it->deadline (stable). */
	for (pos = sd->timers.prev; pos != &sd->timers; pos = pos->prev) {
		struct sim_timer_item *o =
			gvm_list_entry(pos, struct sim_timer_item, link);

		if (o->deadline <= it->deadline)
			break;
	}
	gvm__list_insert(&it->link, pos, pos->next);
	first = sd->timers.next == &it->link;
	if (first)
		gvm__cond_signal(&sd->timer_cond);
	gvm__mutex_unlock(&sd->timer_lock);
}

static void *timer_main(void *arg)
{
	struct sim_dev *sd = arg;
	char name[16];

	snprintf(name, sizeof(name), "%.8s/timer", sd->name);
	pthread_setname_np(pthread_self(), name);
	/* Wake at the modelled deadline, not up to 50 us later (the default
	   slack of a timed sleep). */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	gvm__mutex_lock(&sd->timer_lock);
	for (;;) {
		struct sim_timer_item *it;

		if (gvm_list_empty(&sd->timers)) {
			if (sd->timer_stop)
				break;
			gvm__cond_wait(&sd->timer_cond, &sd->timer_lock);
			continue;
		}
		it = gvm_list_first_entry(&sd->timers, struct sim_timer_item,
					  link);
		if (it->deadline > gvm__now_ns()) {
			gvm__cond_wait_until(&sd->timer_cond, &sd->timer_lock,
					     it->deadline);
			continue;
		}
		gvm_list_del(&it->link);
		gvm__mutex_unlock(&sd->timer_lock);
		gvm_fence_signal_error(it->fence, it->error);
		it->release(it);
		gvm__mutex_lock(&sd->timer_lock);
	}
	gvm__mutex_unlock(&sd->timer_lock);
	return NULL;
}

/* ---- jobs ---------------------------------------------------------------- */

static void job_free(struct sim_job *job)
{
	gvm_fence_put(job->fence);
	gvm__free(job);
}

static void job_timer_release(struct sim_timer_item *it)
{
	struct sim_job *job = gvm_container_of(it, struct sim_job, timer);

	gvm_fetch_sub_release(&job->e->timer_pending, 1u);
	job_free(job);
}

/*
 * Engine thread: the job is done; its fence signals at @deadline (not
 * before), after every earlier fence of this engine.  Signals directly
 * when that is now and no earlier fence waits in the timer, else hands
 * the fence to the timer (whose list is stable in deadline order, and
 * deadlines of one engine never decrease).
 */
static void complete(struct sim_engine *e, struct sim_job *job,
		     int64_t deadline)
{
	if (deadline < e->last_deadline)
		deadline = e->last_deadline;
	e->last_deadline = deadline;
	if (deadline <= gvm__now_ns() &&
	    !gvm_load_acquire(&e->timer_pending)) {
		gvm_fence_signal_error(job->fence, job->error);
		job_free(job);
		return;
	}
	gvm_fetch_add_relaxed(&e->timer_pending, 1u);
	job->timer.deadline = deadline;
	job->timer.fence = job->fence;
	job->timer.error = job->error;
	job->timer.release = job_timer_release;
	timer_add(e->sd, &job->timer);
}

int gvm__sim_submit(struct sim_engine *e, struct sim_job *job,
		    struct gvm_fence **done)
{
	uint64_t *seqno = job->q ? &job->q->seqno : &e->seqno;
	struct gvm_fence *f;
	int err;

	job->e = e;
	gvm__mutex_lock(&e->lock);
	err = gvm_fence_create(job->q ? job->q->context : e->context,
			       *seqno + 1, &job->fence);
	if (err) {
		gvm__mutex_unlock(&e->lock);
		return err;
	}
	(*seqno)++;
	f = gvm_fence_get(job->fence);
	gvm_list_add_tail(&job->link, &e->jobs);
	gvm_fetch_add_release(&e->kicks, 1u);
	gvm__cond_signal(&e->cond);
	gvm__mutex_unlock(&e->lock);
	/*
	 * Stored only now: @done is the caller's memory (often its stack),
	 * which SVM may have moved to device memory.  Touching it under
	 * e->lock would block this thread in a CPU fault-back that needs
	 * e->lock for its TLB invalidation (seen with
	 * test_svm_cases.atomics_on_the_stack).
	 */
	*done = f;
	return 0;
}

/* ---- copies ---------------------------------------------------------- */

static void *mem_ptr(struct sim_dev *sd, struct gvm_mem_addr a, uint64_t size)
{
	if (a.region == GVM_MEM_VRAM)
		return gvm__sim_vram_ptr(sd, a.addr, size);
	return (void *)(uintptr_t)a.addr;
}

/* Bytes per guarded memcpy: bounds the work lost to nothing (a fault
   stops the copy) and keeps the guard's ranges exact. */
#define COPY_CHUNK (2ull << 20)

static void run_copy(struct sim_engine *e, struct sim_job *job)
{
	struct sim_dev *sd = e->sd;
	uint8_t *dst = mem_ptr(sd, job->dst, job->size);
	const uint8_t *src = mem_ptr(sd, job->src, job->size);
	bool guarded = job->dst.region == GVM_MEM_SYSTEM ||
		       job->src.region == GVM_MEM_SYSTEM;
	int64_t start = gvm__now_ns(), deadline;
	uint64_t off;

	for (off = 0; off < job->size; off += COPY_CHUNK) {
		uint64_t n = job->size - off < COPY_CHUNK ? job->size - off :
							     COPY_CHUNK;
		uintptr_t fa;

		if (!guarded) {
			memcpy(dst + off, src + off, n);
		} else if (gvm__sim_raw(&e->guard, SIM_RAW_COPY, dst + off,
					src + off, n, 0, 0, NULL, &fa)) {
			job->error = -EFAULT;
			break;
		}
		gvm_fetch_add_relaxed(&e->cnt.bytes_copied, n);
	}

	/* The model: busy for size / bw, done latency after that (the
	   copy engine's, or the link's for a peer copy: sim.c). */
	if (start < e->busy_until)
		start = e->busy_until;
	if (job->bw)
		start += (int64_t)((double)job->size * 1e9 /
				   (double)job->bw);
	e->busy_until = start;
	deadline = start + (int64_t)job->latency_ns;
	complete(e, job, deadline);
}

/* ---- TLB invalidation requests ----------------------------------------- */

/*
 * A request's place on one engine, with what the engine applies: the
 * engine reads this node's cache line and the request's first line (the
 * count it acknowledges), nothing else the submitter just wrote.
 */
struct sim_inval_node {
	_Alignas(64) struct sim_inval_node *next; /* on lane.inval_head */
	struct sim_inval_req *req;
	uint64_t vm_id, start, size;	/* what to invalidate */
};

/*
 * QUEUEING.  An engine's requests are a lock-free stack, e->lane.inval_head
 * (next to the flag the engine polls, one cache line): a submitter pushes
 * with a compare-and-swap, then sets fast.inval_pending; the engine
 * thread, at a lane call that sees the flag, clears it, then takes the
 * whole stack with an exchange (all four seq_cst: a push whose flag the
 * engine's clear overwrote is one the exchange takes), applies the
 * requests oldest first and acknowledges them in that order.  No lock:
 * the engine owns its TLB while it translates.  While the engine does
 * not translate the head is SIM_INVAL_IDLE, which nobody pushes onto: the
 * submitter then takes e->lock, finds it still IDLE (the head changes to
 * and from IDLE only under the lock) and applies the request to the
 * idle engine's TLB itself; if the engine started meanwhile, it pushes.
 * An engine stops translating (quiesce) by taking and acknowledging the
 * stack until it can swap an empty head for IDLE under its lock.
 */
#define SIM_INVAL_IDLE ((struct sim_inval_node *)(uintptr_t)1)

/*
 * REQUEST RECYCLING.  Every VM attachment has an invalidation context:
 * one fence context, with seqnos handed out in submission order, and a
 * free list of requests.  A request lives as long as its fence
 * (embedded); when the last reference goes, ops->release puts it back on
 * the free list, so an invalidation costs no allocation and no new fence
 * context once the VM has had as many requests in flight before.
 *
 * References to a request's fence: the submitter's (*done), one "in
 * flight" until its last acknowledgement (the engines' nodes point into
 * the request), one held by the timer item while it is armed.
 *
 * Lifetime.  Waiters may keep a fence after the VM is detached and the
 * device destroyed, so the context outlives the attachment: it is freed
 * once it is dead (detached) and the last request object is gone
 * (ic->nr_reqs == 0, under ic->lock).  After detach no request is
 * recycled, and none uses ic->sd: req_arm() checks ic->dead under
 * ic->lock, and a dead context's acknowledged fences count as complete
 * (nothing of the VM can run any more, so the modelled latency no longer
 * matters).
 *
 * COMPLETE.  A request counts the acknowledgements it misses (one per
 * engine it was queued on, and the submitter's) in req->state; it is
 * complete once the count is 0 and its deadline passed.  Nobody else's
 * state is involved: an engine acknowledges with one atomic operation on
 * the request, and the waiter's poll (ops->signaled) reads that word.
 *
 * SEQNO ORDER.  Fences of one context must signal in seqno order (resv
 * and the scheduler keep only the later fence of a context), so a count
 * at 0 must imply the earlier requests' counts are 0 too.  That holds by
 * construction:
 *  - a submit holds ic->lock from taking its seqno to dropping its own
 *    count, queueing on the engines in between: a context's requests sit
 *    on every engine in seqno order, and a request's own count is gone
 *    before the next request of its context is submitted;
 *  - an engine acknowledges what it took in list order, with acq_rel
 *    operations: whoever sees a later request's count reach 0 sees the
 *    earlier ones' acknowledgements by that engine;
 *  - an engine stops translating only after it acknowledged everything
 *    queued on it (gvm__sim_engine_quiesce), so a request that finds it
 *    idle finds every earlier request acknowledged there;
 *  - deadlines are taken under ic->lock with the seqno, so they never
 *    decrease along a context.
 * "Count 0 and the deadline passed" thus holds for a prefix of the
 * context's seqnos at any time, as timeline fences do.  (Before, engines
 * acknowledged in any order and the last acknowledgement took ic->lock to
 * mark the oldest complete run: two more cache lines the waiter's CPU had
 * to get back on every invalidation, docs/performance.md.)
 */
struct sim_inval_ctx {
	struct gvm_mutex lock;		/* GVM_RANK_SIM_INVAL: the fields
					   below, a submit's queueing on
					   the engines (SEQNO ORDER), and
					   arming a request's timer
					   (timer_lock nests inside) */
	struct sim_dev *sd;		/* immutable; used only while !dead */
	uint64_t vm_id;			/* immutable: TLB tag */
	uint64_t context;		/* immutable: fence context */
	unsigned int nr_nodes;		/* immutable: sd->nr_engines */
	uint64_t seqno;			/* lock: last seqno handed out */
	struct gvm_list free;		/* lock: released requests */
	unsigned int nr_free;		/* lock: length of free */
	unsigned int nr_reqs;		/* lock: request objects in existence
					   (in flight, referenced, free) */
	uint32_t dead;			/* written under lock (release), read
					   lock-free (acquire): detached */
};

/* Released requests kept per VM beyond this are freed. */
#define IC_FREE_MAX 64

struct sim_inval_req {
	struct gvm_fence fence;
	/* Next to the fence's flags and refcount (the request starts a
	   cache line): what an engine's acknowledgement and a poller touch
	   is one line. */
	uint32_t state;			/* atomic: REQ_WANTED | missing
					   acknowledgements << REQ_COUNT */
	struct sim_inval_ctx *ic;	/* immutable */
	int64_t deadline;		/* gvm__now_ns() to complete at; 0: at once */
	struct gvm_list link;		/* ic->lock: in ic->free */
	struct sim_timer_item timer;
	struct sim_inval_node nodes[];	/* one per engine */
};

#define REQ_WANTED	(1u << 0)	/* somebody waits: signal on time */
#define REQ_COUNT	1		/* the count's shift */
#define REQ_ONE		(1u << REQ_COUNT)

static struct sim_inval_req *req_of(struct gvm_fence *f)
{
	return gvm_container_of(f, struct sim_inval_req, fence);
}

static void ic_free(struct sim_inval_ctx *ic)
{
	gvm__mutex_fini(&ic->lock);
	gvm__free(ic);
}

int gvm__sim_inval_ctx_create(struct sim_dev *sd, uint64_t vm_id,
			      struct sim_inval_ctx **out)
{
	struct sim_inval_ctx *ic = gvm__calloc(1, sizeof(*ic));

	if (!ic)
		return -ENOMEM;
	gvm__mutex_init(&ic->lock, "sim_inval", GVM_RANK_SIM_INVAL);
	ic->sd = sd;
	ic->vm_id = vm_id;
	ic->context = gvm_fence_context_alloc(1);
	ic->nr_nodes = sd->nr_engines;
	gvm_list_init(&ic->free);
	*out = ic;
	return 0;
}

/*
 * The attachment's end (vm_detach): frees the recycled requests, and the
 * context too unless a request's fence is still referenced (its release
 * frees it then).  No submit may follow.
 */
void gvm__sim_inval_ctx_detach(struct sim_inval_ctx *ic)
{
	struct gvm_list free;
	bool last;

	gvm_list_init(&free);
	gvm__mutex_lock(&ic->lock);
	gvm_store_release(&ic->dead, 1u);
	gvm_list_splice_tail(&ic->free, &free);
	ic->nr_reqs -= ic->nr_free;
	ic->nr_free = 0;
	last = ic->nr_reqs == 0;
	gvm__mutex_unlock(&ic->lock);
	while (!gvm_list_empty(&free)) {
		struct sim_inval_req *req =
			gvm_list_first_entry(&free, struct sim_inval_req, link);

		gvm_list_del(&req->link);
		gvm__free(req);
	}
	if (last)
		ic_free(ic);
}

static void req_timer_release(struct sim_timer_item *it)
{
	gvm_fence_put(it->fence);
}

/*
 * Hands the fence to the timer thread, which signals it at the deadline.
 * Returns false if the VM is detached (the device may be gone): the
 * caller treats the fence as complete.
 */
static bool req_arm(struct sim_inval_req *req)
{
	struct sim_inval_ctx *ic = req->ic;

	gvm__mutex_lock(&ic->lock);
	if (ic->dead) {
		gvm__mutex_unlock(&ic->lock);
		return false;
	}
	req->timer.deadline = req->deadline;
	req->timer.fence = gvm_fence_get(&req->fence);
	req->timer.error = 0;
	req->timer.release = req_timer_release;
	timer_add(ic->sd, &req->timer);
	gvm__mutex_unlock(&ic->lock);
	return true;
}

static bool req_time_up(const struct sim_inval_req *req)
{
	return !req->deadline || req->deadline <= gvm__now_ns() ||
	       gvm_load_acquire(&req->ic->dead);
}

/*
 * SIGNALLING ON DEMAND.  Whoever notices that the request is complete
 * signals it: a poller (gvm_fence_is_signaled(), and so a waiter
 * spinning before it sleeps) through ops->signaled; the last
 * acknowledgement if somebody waits (REQ_WANTED) and the deadline has
 * passed; else the timer thread, armed only when somebody needs an
 * event (ops->enable_signaling) - a fence nobody waits for costs no
 * signal and no timer wake-up.  Exactly one side acts on WANTED: both
 * change req->state with one atomic operation, and the one that finds
 * the other's change already made acts.
 *
 *   last acknowledgement (req_ack)    enable_signaling (a waiter)
 *   ------------------------------    ---------------------------
 *   old = state -= ONE                old = state |= WANTED
 *   old count 1 and old & WANTED:     old count 0:
 *     deadline passed: signal           deadline passed: "complete"
 *     else arm the timer                else arm the timer
 *   drop the in-flight reference
 */
static bool req_signaled(struct gvm_fence *f)
{
	struct sim_inval_req *req = req_of(f);

	return gvm_load_acquire(&req->state) < REQ_ONE && req_time_up(req);
}

static bool req_enable_signaling(struct gvm_fence *f)
{
	struct sim_inval_req *req = req_of(f);
	uint32_t old = gvm_fetch_or_acq_rel(&req->state, REQ_WANTED);

	if (old >= REQ_ONE)
		return true;		/* the last req_ack() acts */
	if (req_time_up(req))
		return false;		/* complete: gvm signals it */
	return req_arm(req);
}

/* The last reference is gone: back to the free list, or freed. */
static void req_release(struct gvm_fence *f)
{
	struct sim_inval_req *req = req_of(f);
	struct sim_inval_ctx *ic = req->ic;
	bool last;

	gvm__mutex_lock(&ic->lock);
	if (!ic->dead && ic->nr_free < IC_FREE_MAX) {
		gvm_list_add(&req->link, &ic->free);
		ic->nr_free++;
		gvm__mutex_unlock(&ic->lock);
		return;
	}
	ic->nr_reqs--;
	last = ic->dead && ic->nr_reqs == 0;
	gvm__mutex_unlock(&ic->lock);
	gvm__free(req);
	if (last)
		ic_free(ic);
}

static const struct gvm_fence_ops req_fence_ops = {
	.name = "sim_tlb_inval",
	.signaled = req_signaled,
	.enable_signaling = req_enable_signaling,
	.release = req_release,
};

/*
 * An engine's acknowledgement (SIGNALLING ON DEMAND).  After one that is
 * not the last, the request may be complete and recycled at any moment:
 * nothing of it is read again.
 */
static void req_ack(struct sim_inval_req *req)
{
	uint32_t old = gvm_fetch_sub_acq_rel(&req->state, REQ_ONE);

	if (old >= 2 * REQ_ONE)
		return;
	if ((old & REQ_WANTED) && (req_time_up(req) || !req_arm(req)))
		gvm_fence_signal(&req->fence);
	gvm_fence_put(&req->fence);	/* the in-flight reference */
}

/*
 * Under e->lock, the engine not translating or the caller being its
 * thread: applies one request to the TLB and marks the lane's live spans
 * stale if it covers one of them.
 */
static void apply_inval(struct sim_engine *e, uint64_t vm_id, uint64_t start,
			uint64_t size)
{
	struct gvm_lane *l = &e->lane;
	unsigned int i;

	gvm__sim_tlb_inval(&e->tlb, vm_id, start, size);
	gvm__sim_lane_fast_clear(l);
	if (!l->vm_id || l->vm_id != vm_id)
		return;
	for (i = 0; i < l->nspans; i++) {
		const struct sim_span *s = &l->spans[i];

		if (size == 0 || (s->va < start + size && start < s->va + s->len))
			l->stale = true;
	}
}

/*
 * Engine thread, translating: takes the requests queued on @e, applies
 * them oldest first and acknowledges them in that order (QUEUEING, SEQNO
 * ORDER).
 */
void gvm__sim_engine_ack_invals(struct sim_engine *e)
{
	struct sim_inval_node *n, *next, *fifo = NULL;

	gvm_store_seq_cst(&e->lane.fast.inval_pending, 0u);
	n = gvm_xchg_seq_cst(&e->lane.inval_head, NULL);
	gvm_assert(n != SIM_INVAL_IDLE);
	for (; n; n = next) {		/* newest first: reverse */
		next = n->next;
		n->next = fifo;
		fifo = n;
	}
	for (n = fifo; n; n = n->next)
		apply_inval(e, n->vm_id, n->start, n->size);
	for (n = fifo; n; n = next) {
		next = n->next;		/* the node may be reused after */
		req_ack(n->req);
	}
}

/*
 * The engine stops translating: everything queued on it is applied and
 * acknowledged first, requests queued meanwhile too (SEQNO ORDER).
 */
void gvm__sim_engine_quiesce(struct sim_engine *e)
{
	for (;;) {
		struct sim_inval_node *empty = NULL;

		gvm__sim_engine_ack_invals(e);
		gvm__mutex_lock(&e->lock);
		if (gvm_cmpxchg_seq_cst(&e->lane.inval_head, &empty,
					SIM_INVAL_IDLE))
			break;
		gvm__mutex_unlock(&e->lock);	/* pushed meanwhile */
	}
	gvm_store_relaxed(&e->lane.fast.inval_pending, 0u);
	gvm__mutex_unlock(&e->lock);
}

/* Under e->lock: the engine starts translating. */
static void translating_begin(struct sim_engine *e)
{
	gvm_assert(e->lane.inval_head == SIM_INVAL_IDLE);
	gvm_store_seq_cst(&e->lane.inval_head, NULL);
}

void gvm__sim_engine_resume(struct sim_engine *e)
{
	gvm__mutex_lock(&e->lock);
	translating_begin(e);
	gvm__mutex_unlock(&e->lock);
}

/*
 * Pushes @nd on @e's requests (true), or applies it to the TLB of @e,
 * which is not translating (false).  QUEUEING.
 */
static bool queue_or_apply(struct sim_engine *e, struct sim_inval_node *nd)
{
	struct sim_inval_node *head = gvm_load_acquire(&e->lane.inval_head);

	for (;;) {
		if (head != SIM_INVAL_IDLE) {
			nd->next = head;
			if (gvm_cmpxchg_seq_cst(&e->lane.inval_head, &head,
						nd)) {
				gvm_store_seq_cst(&e->lane.fast.inval_pending,
						  1u);
				return true;
			}
			continue;		/* head reloaded */
		}
		gvm__mutex_lock(&e->lock);
		head = gvm_load_relaxed(&e->lane.inval_head);
		if (head == SIM_INVAL_IDLE) {
			apply_inval(e, nd->vm_id, nd->start, nd->size);
			gvm__mutex_unlock(&e->lock);
			return false;
		}
		gvm__mutex_unlock(&e->lock);	/* it started: push */
	}
}

/*
 * ops->tlb_inval of the VM whose context is @ic.  No allocation unless
 * the VM has more requests in flight (or referenced) than ever before.
 */
int gvm__sim_tlb_inval_submit(struct sim_inval_ctx *ic, uint64_t start,
			      uint64_t size, struct gvm_fence **done)
{
	struct sim_dev *sd = ic->sd;
	struct sim_inval_req *req = NULL;
	/* Migration engines never translate: nothing to invalidate. */
	unsigned int i, n = sd->cfg.nr_compute + sd->cfg.nr_copy, idle = 0;
	bool last;

	gvm__mutex_lock(&ic->lock);
	if (gvm_list_empty(&ic->free)) {
		gvm__mutex_unlock(&ic->lock);
		req = gvm__aligned_alloc(64, sizeof(*req) +
					 ic->nr_nodes *
						 sizeof(struct sim_inval_node));
		if (!req)
			return -ENOMEM;
		req->ic = ic;
		gvm__mutex_lock(&ic->lock);
		ic->nr_reqs++;
	} else {
		req = gvm_list_first_entry(&ic->free, struct sim_inval_req,
					   link);
		gvm_list_del(&req->link);
		ic->nr_free--;
	}
	/* SEQNO ORDER: seqno, deadline and place in line together. */
	gvm_fence_init(&req->fence, &req_fence_ops, ic->context,
		       ++ic->seqno);
	/* 0: no modelled latency, no clock to read (req_time_up). */
	req->deadline = sd->cfg.tlb_inval_latency_ns ?
				gvm__now_ns() +
					(int64_t)sd->cfg.tlb_inval_latency_ns :
				0;
	gvm_store_relaxed(&req->state, (n + 1) * REQ_ONE);
	gvm_fence_get(&req->fence);		/* in flight */

	for (i = 0; i < n; i++) {
		struct sim_engine *e = &sd->engines[i];
		struct sim_inval_node *nd = &req->nodes[i];

		nd->req = req;
		nd->vm_id = ic->vm_id;
		nd->start = start;
		nd->size = size;
		if (!queue_or_apply(e, nd))
			idle++;
	}
	/*
	 * The idle engines' counts and the submitter's, before the next
	 * submit of this context (SEQNO ORDER).  Nobody can wait for the
	 * fence yet, so if these were the last, all that is left to do is
	 * dropping the in-flight reference (never the last one).
	 */
	last = gvm_fetch_sub_acq_rel(&req->state, (idle + 1) * REQ_ONE) <
	       (idle + 2) * REQ_ONE;
	gvm__mutex_unlock(&ic->lock);
	if (last)
		gvm_fence_put(&req->fence);
	*done = &req->fence;			/* the initial reference */
	gvm_fetch_add_relaxed(&sd->tlb_invals, 1u);
	return 0;
}

/* ---- queue suspend / resume ------------------------------------------------ */

int gvm__sim_queue_suspend(struct sim_queue *q, struct gvm_fence **done)
{
	struct sim_engine *e = q->e;
	struct gvm_fence *f, *ret, *now = NULL;
	int err;

	/* Fences are created outside e->lock only when they are signalled
	   at once (signalling takes the fence lock, which ranks below). */
	err = gvm_fence_create(gvm_fence_context_alloc(1), 1, &f);
	if (err)
		return err;
	gvm__mutex_lock(&e->lock);
	q->suspend_count++;
	if (q->suspend_done) {
		ret = gvm_fence_get(q->suspend_done);
		now = f;		/* unused */
	} else if (e->cur_q == q) {
		q->suspend_done = f;
		ret = gvm_fence_get(f);
		gvm_store_release(&q->preempt, 1u);
	} else {
		ret = f;
		now = f;
	}
	gvm__mutex_unlock(&e->lock);
	if (now == ret)
		gvm_fence_signal(now);
	else if (now)
		gvm_fence_put(now);
	/*
	 * Stored only now, as in gvm__sim_submit: never touch a caller's
	 * memory under e->lock, a CPU fault-back may need it.  (@done is the
	 * VM layer's, lr.c's stack, so no gvm__might_fault() here: the caller
	 * holds reservations.)
	 */
	*done = ret;
	return 0;
}

void gvm__sim_queue_resume(struct sim_queue *q)
{
	struct sim_engine *e = q->e;

	gvm__mutex_lock(&e->lock);
	if (q->suspend_count && !--q->suspend_count) {
		gvm_store_release(&q->preempt, 0u);
		gvm_fetch_add_release(&e->kicks, 1u);
		gvm__cond_signal(&e->cond);
	}
	gvm__mutex_unlock(&e->lock);
}

void gvm__sim_queue_drop(struct sim_queue *q)
{
	struct sim_engine *e = q->e;
	struct gvm_list *pos, *tmp, dropped;

	gvm_list_init(&dropped);
	gvm__mutex_lock(&e->lock);
	gvm_assert(e->cur_q != q);
	gvm_list_for_each_safe(pos, tmp, &e->jobs) {
		struct sim_job *job = gvm_list_entry(pos, struct sim_job, link);

		if (job->q != q)
			continue;
		gvm_list_del(&job->link);
		gvm_list_add_tail(&job->link, &dropped);
	}
	gvm__mutex_unlock(&e->lock);
	gvm_list_for_each_safe(pos, tmp, &dropped) {
		struct sim_job *job = gvm_list_entry(pos, struct sim_job, link);

		gvm_list_del(&job->link);
		gvm_fence_signal_error(job->fence, -ECANCELED);
		job_free(job);
	}
}

/* Under e->lock: the first job the engine may start, or NULL. */
static struct sim_job *next_job(struct sim_engine *e)
{
	struct gvm_list *pos;

	gvm_list_for_each(pos, &e->jobs) {
		struct sim_job *job = gvm_list_entry(pos, struct sim_job, link);

		if (!job->q || !job->q->suspend_count)
			return job;
	}
	return NULL;
}

/* ---- engine threads ---------------------------------------------------------- */

static void *engine_main(void *arg)
{
	struct sim_engine *e = arg;
	bool worked = false;
	char name[16];

	snprintf(name, sizeof(name), "%.8s/%c%u", e->sd->name,
		 e->migrate ? 'm' : e->cls == GVM_ENGINE_COMPUTE ? 'c' : 'x',
		 e->instance);
	pthread_setname_np(pthread_self(), name);
	gvm__sim_guard_set_thread(&e->guard);
	gvm__mutex_lock(&e->lock);
	for (;;) {
		struct sim_job *job = next_job(e);

		if (!job) {
			if (e->stop)
				break;
			/*
			 * Right after a job, poll briefly for the next one
			 * before sleeping (HAND-OFFS above); never when idle.
			 */
			if (worked) {
				uint32_t k = gvm_load_relaxed(&e->kicks);

				worked = false;
				gvm__mutex_unlock(&e->lock);
				gvm__spin_while_eq(&e->kicks, k,
						   GVM_HANDOFF_SPIN_NS);
				gvm__mutex_lock(&e->lock);
				continue;
			}
			gvm__cond_wait(&e->cond, &e->lock);
			continue;
		}
		worked = true;
		gvm_list_del(&job->link);
		if (job->type == SIM_JOB_KERNEL)
			translating_begin(e);
		e->cur_q = job->q;
		gvm__mutex_unlock(&e->lock);

		if (job->type == SIM_JOB_KERNEL) {
			bool parked = gvm__sim_run_kernel(e, job);
			struct gvm_fence *suspended;

			gvm__sim_engine_quiesce(e);
			gvm__mutex_lock(&e->lock);
			e->cur_q = NULL;
			/* Parked: first in line again, before its queue's
			   later jobs; it starts once the queue resumes. */
			if (parked) {
				gvm__list_insert(&job->link, &e->jobs,
						 e->jobs.next);
				gvm_fetch_add_relaxed(&e->cnt.parks, 1u);
			}
			suspended = job->q->suspend_done;
			job->q->suspend_done = NULL;
			gvm__mutex_unlock(&e->lock);
			if (suspended) {	/* nothing of the queue runs */
				gvm_fence_signal(suspended);
				gvm_fence_put(suspended);
			}
			if (!parked) {
				gvm_fetch_add_relaxed(&e->cnt.kernels, 1u);
				complete(e, job, gvm__now_ns());
			}
		} else {
			run_copy(e, job);	/* no translation */
		}
		gvm__mutex_lock(&e->lock);
	}
	gvm__mutex_unlock(&e->lock);
	gvm__sim_guard_set_thread(NULL);
	return NULL;
}

static void engine_fini(struct sim_engine *e)
{
	gvm__sim_tlb_fini(&e->tlb);
	gvm__free(e->sink);
	pthread_cond_destroy(&e->cond);
	gvm__mutex_fini(&e->lock);
}

void gvm__sim_engines_stop(struct sim_dev *sd)
{
	unsigned int i;

	for (i = 0; i < sd->nr_engines; i++) {
		struct sim_engine *e = &sd->engines[i];

		if (!e->thread_started)
			continue;
		gvm__mutex_lock(&e->lock);
		e->stop = true;
		gvm_fetch_add_release(&e->kicks, 1u);
		gvm__cond_signal(&e->cond);
		gvm__mutex_unlock(&e->lock);
		gvm__thread_join(e->thread);
		e->thread_started = false;
	}
	if (sd->timer_started) {
		gvm__mutex_lock(&sd->timer_lock);
		sd->timer_stop = true;
		gvm__cond_signal(&sd->timer_cond);
		gvm__mutex_unlock(&sd->timer_lock);
		gvm__thread_join(sd->timer_thread);
		sd->timer_started = false;
	}
	if (sd->engines) {
		for (i = 0; i < sd->nr_engines; i++)
			engine_fini(&sd->engines[i]);
		gvm__free(sd->engines);
		sd->engines = NULL;
	}
	pthread_cond_destroy(&sd->timer_cond);
	gvm__mutex_fini(&sd->timer_lock);
}

int gvm__sim_engines_start(struct sim_dev *sd)
{
	unsigned int i, n = sd->cfg.nr_compute + 2 * sd->cfg.nr_copy;
	int err;

	gvm__mutex_init(&sd->timer_lock, "sim_timer", GVM_RANK_LEAF);
	gvm__cond_init(&sd->timer_cond);
	gvm_list_init(&sd->timers);
	sd->engines = gvm__calloc(n, sizeof(*sd->engines));
	if (!sd->engines) {
		gvm__sim_engines_stop(sd);
		return -ENOMEM;
	}
	sd->nr_engines = n;
	for (i = 0; i < n; i++) {
		struct sim_engine *e = &sd->engines[i];

		e->sd = sd;
		e->cls = i < sd->cfg.nr_compute ? GVM_ENGINE_COMPUTE :
						  GVM_ENGINE_COPY;
		e->migrate = i >= sd->cfg.nr_compute + sd->cfg.nr_copy;
		e->instance = i < sd->cfg.nr_compute ? i :
			      e->migrate ? i - sd->cfg.nr_compute -
					   sd->cfg.nr_copy :
					   i - sd->cfg.nr_compute;
		e->context = gvm_fence_context_alloc(1);
		gvm__mutex_init(&e->lock, "sim_engine", GVM_RANK_LEAF);
		gvm__cond_init(&e->cond);
		gvm_list_init(&e->jobs);
		e->lane.inval_head = SIM_INVAL_IDLE;
		e->lane.e = e;
		gvm__sim_lane_fast_clear(&e->lane);
	}
	for (i = 0; i < n; i++) {
		struct sim_engine *e = &sd->engines[i];

		err = gvm__sim_tlb_init(&e->tlb, sd->cfg.tlb_entries);
		if (err)
			goto err_stop;
		e->sink = gvm__malloc(SIM_SINK_BYTES);
		if (!e->sink) {
			err = -ENOMEM;
			goto err_stop;
		}
	}
	err = gvm__thread_create(&sd->timer_thread, timer_main, sd);
	if (err)
		goto err_stop;
	sd->timer_started = true;
	for (i = 0; i < n; i++) {
		struct sim_engine *e = &sd->engines[i];

		err = gvm__thread_create(&e->thread, engine_main, e);
		if (err)
			goto err_stop;
		e->thread_started = true;
	}
	return 0;

err_stop:
	gvm__sim_engines_stop(sd);
	return err;
}
