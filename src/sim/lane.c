// SPDX-License-Identifier: MIT
/*
 * Simulated GPU: running a kernel's lanes, and the lane API (<gvm/kernel.h>):
 * every access a kernel makes goes through the engine's TLB and the VM's
 * page tables, is checked against the entry's permissions, and becomes a
 * GPU fault when the tables do not allow it.
 *
 * LANES.  The engine thread calls kernel->fn once per lane, ids 0 .. grid-1
 * in order, until a fault fails the job (later lanes are skipped).  Lane
 * calls other than gvm_lane_span/_id/_faulted are *boundaries*: they end
 * the lane's spans and acknowledge queued TLB invalidations (engine.c);
 * the start of every lane is one too.
 *
 * ADDRESSES.  Like the CPU's, a VM's VA space of va_bits is canonical: an
 * address whose bits va_bits - 1 .. 63 are all ones is the one without
 * that sign extension (what gvm_vm_bind() accepts, bind.c op_addr).  Every
 * entry point strips it first (lane_canon), so the TLB, the walk, spans
 * and fault reports all see the short form; any other address at or above
 * 2^va_bits is not canonical and stays a NOT_PRESENT fault.
 *
 * ACCESSES.  translate (TLB, else walk and fill the TLB; invalid entries
 * are not cached) -> check (write needs WRITE, atomic needs WRITE and
 * ATOMIC; NULL leaves read zero and drop writes; in a VM attached with
 * GVM_ATTACH_SCRATCH a missing entry behaves like a NULL one and is not a
 * fault) -> access
 * (VRAM: the arena; system memory: a guarded access, guard.c, whose fault
 * is a GVM_FAULT_SYSMEM_GONE GPU fault).
 *
 * FAULTS.  The engine stops translating (so invalidations are acknowledged
 * at once, engine.c), reports through sd->fault_fn (gvm_vm_fault, which
 * for a fault-mode VM services a lone fault right there, in the engine's
 * thread, or queues it to gvm's servicing thread and waits; the engine
 * runs nothing else meanwhile) with no lock held and the guard off, then
 * resumes.  0 = resolved: the TLB entry
 * for the address is dropped and the access is translated and replayed
 * (at most MAX_REPLAYS times per access).  Otherwise the job fails: the
 * lane's access does nothing, gvm_lane_faulted() becomes true, later
 * lanes are skipped, and the job's fence carries -EIO.  An access that
 * runs out of replays (each fault resolved, and the memory gone again
 * before the replay), and a lane that runs out of restarts (SPANS), fail
 * the job the same way; gvm logged none of those resolved faults, so the
 * engine first reports the access once more as GVM_FAULT_REPLAY_LIMIT,
 * which gvm logs and does not service (lane_give_up()).
 *
 * SPANS.  gvm_lane_span() returns a host pointer into the page; up to
 * SIM_SPANS spans stay valid together, until the next boundary (or until
 * SIM_SPANS newer spans were taken).  Two things can invalidate a span
 * behind the kernel's back, and both make the engine *restart the lane*
 * from its start, abandoning the kernel's frames (siglongjmp):
 *   - a span call reports a fault and, while the engine was not
 *     translating, an invalidation covered one of the live spans (the
 *     memory may be freed once the invalidation completes): restart if
 *     the fault was resolved, else abandon the lane;
 *   - the kernel touches a span of system memory that the host unmapped:
 *     the guard jumps back to the lane loop, which reports a
 *     GVM_FAULT_SYSMEM_GONE fault at the span's GPU VA; restart if
 *     resolved, else the job fails.
 * So a kernel using spans must be restartable: it must not have made a
 * non-idempotent side effect before a span access that may restart it
 * (the built-ins do their only atomic last).  A lane is restarted at most
 * MAX_RESTARTS times, then the job fails.
 *
 * FAST PATH.  gvm_lane_load() and gvm_lane_store() are inline in
 * <gvm/kernel.h>: they compare the access with the lane's last
 * translation (struct gvm_lane_fast, the first member of the lane) and,
 * on a hit, access the host memory themselves; else they call the full
 * path here (gvm_lane_load_slow / _store_slow).  The full path sets the
 * tags after a translation of a page in VRAM (not system memory, which
 * needs the guard; not NULL or scratch pages; write_tag only if the page
 * is writable), and they are cleared (~0, which never matches) wherever
 * that translation may stop being what the full path would use:
 *   - any TLB invalidation applied to the engine (apply_inval, engine.c,
 *     whoever applies it: the engine at a boundary, or a submitter while
 *     the engine is not translating) and the replay after a fault;
 *   - a span taken (the next access must be a boundary that ends it);
 *   - the job failing (loads return 0), and the start and end of a job.
 * A queued invalidation that was not applied yet is seen through
 * fast.inval_pending, which the inline path checks (acquire) like
 * lane_boundary does.  So a hit needs no boundary work: no span is live
 * and nothing is to acknowledge.  Hits are not counted (the TLB counters
 * count the lookups of the full path: the misses of this one-entry
 * cache).
 *
 * LINK.  A translation of system memory that lies in another simulated
 * device's VRAM window, linked to this one (gvm mapped a peer's memory
 * peer to peer), is marked SIM_P_PEER at the walk, with the link's
 * bandwidth and latency as gvm reports them (gvm_device_link_query) in a
 * slot of the engine's link model (struct sim_link_model).  Such pages
 * never use the fast path; each access through them is charged: the
 * walk the link's latency, every byte loaded, stored or spanned its
 * bandwidth's time.  The charges add up as a debt that the engine pays
 * at lane boundaries once it reaches SIM_LINK_QUANTUM_NS, sleeping (not
 * translating, so invalidations are acknowledged meanwhile) until the
 * link would have carried the bytes: the link runs alongside the
 * engine's own work (`busy_until`), so a kernel slower than its link
 * waits for nothing.  A sleep that overruns (timer slack, a loaded
 * host; at most SIM_LINK_CREDIT_NS counted) is made up on the next
 * payment of the same job.  Bandwidth 0 (host speed) charges nothing.
 *
 * ACCESS COUNTERS.  The same accesses count bytes per (VM, 2 MiB region,
 * GVM_SIM_ACCESS_GRANULE) in a small per-engine table; a region that
 * reaches the device's access_threshold is reported to gvm with
 * gvm_vm_access_notify() at the next payment (engine not translating, no
 * lock held; it never blocks) and its count starts again.
 *
 * PREEMPTION.  Before each lane the engine checks its queue's `preempt`
 * flag (ops->queue_suspend, engine.c): if set, the job is *parked* at that
 * lane (job->next_lane) and the engine goes on with other queues' jobs;
 * queue_resume puts it back and it continues with that lane.  A lane is
 * never interrupted: a kernel is preempted only between lanes, where it
 * holds no span, so a parked job keeps nothing that an invalidation could
 * make stale, and it translates afresh (through a TLB that saw every
 * invalidation meanwhile) when it resumes.
 *
 * Locking: the engine thread owns its lane and (while translating) its
 * TLB; see engine.c.  Nothing here takes a lock except through the
 * quiesce/resume/acknowledge helpers of engine.c.
 */
#include <errno.h>
#include <string.h>

#include "core/page.h"
#include "pt/pt_fmt.h"
#include "sim/sim_internal.h"

#define MAX_REPLAYS	16u
#define MAX_RESTARTS	16u

static void lane_fail(struct gvm_lane *l, int err)
{
	if (l->faulted)
		return;
	gvm__sim_lane_fast_clear(l);
	l->faulted = true;
	if (!l->job->error)
		l->job->error = err;
}

static void spans_drop(struct gvm_lane *l)
{
	struct sim_guard *g = &l->e->guard;
	unsigned int i;

	for (i = 0; i < SIM_SPANS; i++)
		g->span_lo[i] = g->span_hi[i] = 0;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	l->nspans = 0;
	l->span_next = 0;
	l->stale = false;
}

static inline void lane_boundary(struct gvm_lane *l)
{
	if (l->nspans)
		spans_drop(l);
	if (__builtin_expect(gvm_load_acquire(&l->fast.inval_pending) != 0,
			     0))
		gvm__sim_engine_ack_invals(l->e);
}

/* Reports a fault with the engine quiesced.  0 if resolved. */
static int lane_report(struct gvm_lane *l, uint64_t va, unsigned int access,
		       unsigned int reason)
{
	struct sim_engine *e = l->e;
	struct sim_guard *g = &e->guard;
	struct gvm_fault_info f = {
		.addr = va,
		.access = access,
		.reason = reason,
		.engine = e->cls,
		.engine_instance = e->instance,
		.timestamp_ns = gvm__now_ns(),
		.queue_id = l->job->k.queue_id,
		.seqno = l->job->k.seqno,
	};
	sigjmp_buf *jb;
	int rc;

	gvm_fetch_add_relaxed(&e->cnt.faults, 1u);
	gvm__sim_engine_quiesce(e);
	jb = g->lane_jb;
	g->lane_jb = NULL;	/* the guard is off in the fault handler */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	rc = e->sd->fault_fn(l->job->simvm->vm, &f);
	g->lane_jb = jb;
	gvm__sim_engine_resume(e);
	return rc;
}

/*
 * A fault of the access at @va: report it; fail the job if unresolved.  If
 * an invalidation hit a live span meanwhile, leaves the lane (restart or
 * abort).  Returns 0 if resolved.
 */
static int lane_fault(struct gvm_lane *l, uint64_t va, unsigned int access,
		      unsigned int reason)
{
	int rc;

	l->fault_va = va;
	l->fault_access = access;
	rc = lane_report(l, va, access, reason);

	if (rc)
		lane_fail(l, -EIO);
	if (l->stale)
		siglongjmp(*l->e->guard.lane_jb,
			   rc ? SIM_JMP_ABORT : SIM_JMP_RESTART);
	gvm__sim_tlb_inval(&l->e->tlb, l->vm_id, va, GVM_PAGE_SIZE);
	gvm__sim_lane_fast_clear(l);
	return rc;
}

/*
 * The replays of the access at @va (or the restarts of the lane) ran out:
 * its faults were each resolved, so gvm logged none.  Reports it once
 * more, GVM_FAULT_REPLAY_LIMIT (logged, never serviced: whatever gvm
 * answers, the job fails), so that the failed job has its fault-log
 * entry, then fails the job.  An invalidation that hit a live span
 * meanwhile leaves the lane, as for any unresolved fault.
 */
static void lane_give_up(struct gvm_lane *l, uint64_t va, unsigned int access)
{
	lane_report(l, va, access, GVM_FAULT_REPLAY_LIMIT);
	lane_fail(l, -EIO);
	if (l->stale)
		siglongjmp(*l->e->guard.lane_jb, SIM_JMP_ABORT);
}

static unsigned int perm_check(const struct sim_xlate *x, unsigned int access)
{
	if (access == GVM_ACCESS_READ || (x->perm & SIM_P_NULL))
		return 0;
	if (!(x->perm & SIM_P_WRITE))
		return GVM_FAULT_WRITE_PROTECT;
	if (access == GVM_ACCESS_ATOMIC && !(x->perm & SIM_P_ATOMIC))
		return GVM_FAULT_ATOMIC;
	return 0;
}

/*
 * Counter increments on the hot path: the engine thread is the only writer
 * of these, so a relaxed load and store do (no locked read-modify-write).
 */
static inline void cnt_inc(uint64_t *c)
{
	gvm_store_relaxed(c, gvm_load_relaxed(c) + 1);
}

/* ---- the link to peers' memory (LINK, ACCESS COUNTERS) ---------------- */

/* A fresh walk's system page: is it a linked peer's VRAM? */
static void link_classify(struct sim_engine *e, struct sim_xlate *x)
{
	struct sim_link_model *m = &e->link;
	const struct sim_dev *peer;
	struct gvm_link_props lp;
	unsigned int i;

	if (gvm_load_relaxed(&gvm__sim_nr_devs) < 2 ||
	    gvm__sim_peer_link(e->sd, x->host, &peer, &lp))
		return;
	for (i = 0; i < SIM_LINKS && m->links[i].peer != peer; i++)
		;
	if (i == SIM_LINKS) {
		/* More peers than slots: the oldest slot's entries still
		   in the TLB are charged this link's costs. */
		i = m->link_rr++ % SIM_LINKS;
		m->links[i].peer = peer;
	}
	m->links[i].bw = lp.bandwidth;
	m->links[i].latency_ns = lp.latency_ns;
	x->perm |= SIM_P_PEER | (i << SIM_P_LINK_SHIFT);
	m->debt_ns += lp.latency_ns;
}

/* @bytes at @va went through the link of translation @x. */
static void link_charge(struct gvm_lane *l, const struct sim_xlate *x,
			uint64_t va, uint64_t bytes)
{
	struct sim_engine *e = l->e;
	struct sim_link_model *m = &e->link;
	uint64_t bw = m->links[x->perm >> SIM_P_LINK_SHIFT].bw;
	uint64_t threshold = e->sd->cfg.access_threshold;
	uint64_t region = va & ~(GVM_SIM_ACCESS_GRANULE - 1);
	unsigned int i;

	if (bw)		/* bytes <= 1 GiB (one page): no overflow */
		m->debt_ns += bytes * 1000000000ull / bw;
	gvm_store_relaxed(&e->cnt.link_bytes,
			  gvm_load_relaxed(&e->cnt.link_bytes) + bytes);
	if (threshold == GVM_SIM_ACCESS_OFF)
		return;
	for (i = 0; i < SIM_ACCESS_CTRS; i++) {
		if (m->ctr[i].vm_id == l->vm_id && m->ctr[i].region == region)
			break;
	}
	if (i == SIM_ACCESS_CTRS) {
		i = m->ctr_rr++ % SIM_ACCESS_CTRS;
		m->ctr[i].vm_id = l->vm_id;
		m->ctr[i].region = region;
		m->ctr[i].bytes = 0;
	}
	m->ctr[i].bytes += bytes;
	if (m->ctr[i].bytes < threshold || m->note_pending)
		return;
	m->note = (struct gvm_access_info){
		.addr = region,
		.size = GVM_SIM_ACCESS_GRANULE,
		.bytes = m->ctr[i].bytes,
		.engine = e->cls,
		.engine_instance = e->instance,
	};
	m->note_vm = l->job->simvm->vm;
	m->note_pending = true;
	m->ctr[i].bytes = 0;
}

/*
 * At a lane boundary (no span live): pays the link's debt and sends a
 * pending notification, with the engine quiesced.  Cheap unless there
 * is something to do.
 */
static void link_pay(struct gvm_lane *l)
{
	struct sim_engine *e = l->e;
	struct sim_link_model *m = &e->link;
	int64_t now, until;
	uint32_t never = 0;

	if (m->debt_ns < SIM_LINK_QUANTUM_NS && !m->note_pending)
		return;
	now = gvm__now_ns();
	/* A sleep that overran (timer slack, a loaded host) is made up:
	   the link is taken to have run on meanwhile. */
	until = now - m->overslept_ns;
	if (m->busy_until > until)
		until = m->busy_until;
	until += (int64_t)m->debt_ns;
	m->debt_ns = 0;
	m->busy_until = until;
	if (until - now < SIM_LINK_QUANTUM_NS && !m->note_pending)
		return;
	gvm__sim_engine_quiesce(e);
	if (m->note_pending) {
		m->note.timestamp_ns = now;
		gvm_vm_access_notify(m->note_vm, &m->note);
		gvm_store_relaxed(&e->cnt.access_notes,
				  gvm_load_relaxed(&e->cnt.access_notes) + 1);
		m->note_pending = false;
	}
	if (until - now >= SIM_LINK_QUANTUM_NS) {
		int64_t woke;

		while (gvm__futex_wait(&never, 0, until) != -ETIME)
			;
		woke = gvm__now_ns();
		m->overslept_ns = woke - until < SIM_LINK_CREDIT_NS ?
				  woke - until : SIM_LINK_CREDIT_NS;
		gvm_store_relaxed(&e->cnt.link_wait_ns,
				  gvm_load_relaxed(&e->cnt.link_wait_ns) +
				  (uint64_t)(woke - now));
	}
	gvm__sim_engine_resume(e);
}

/* Translates @va for @access.  0, or -EFAULT: the job failed. */
static int lane_xlate(struct gvm_lane *l, uint64_t va, unsigned int access,
		      struct sim_xlate *x)
{
	struct sim_engine *e = l->e;
	const struct sim_vm *simvm = l->job->simvm;
	unsigned int tries, reason;

	for (tries = 0;; tries++) {
		if (gvm__sim_tlb_lookup(&e->tlb, simvm->id, va, x)) {
			cnt_inc(&e->cnt.tlb_hits);
			reason = perm_check(x, access);
		} else {
			cnt_inc(&e->cnt.tlb_misses);
			cnt_inc(&e->cnt.walks);
			if (!gvm__sim_walk(e->sd, simvm, va, x)) {
				if (x->perm & SIM_P_SYS)
					link_classify(e, x);
				gvm__sim_tlb_insert(&e->tlb, simvm->id, x);
				reason = perm_check(x, access);
			} else if (simvm->flags & GVM_ATTACH_SCRATCH) {
				x->va = va & ~GVM_PAGE_OFFSET_MASK;
				x->lg2 = GVM_PAGE_SHIFT;
				x->host = NULL;
				x->perm = SIM_P_SCRATCH;
				return 0;
			} else {
				reason = GVM_FAULT_NOT_PRESENT;
			}
		}
		if (!reason)
			return 0;
		if (lane_fault(l, va, access, reason))
			return -EFAULT;
		if (tries + 1 >= MAX_REPLAYS) {
			lane_give_up(l, va, access);
			return -EFAULT;
		}
	}
}

/* After a translation for an access: the inline path may use it (FAST PATH). */
static inline void fast_set(struct gvm_lane *l, const struct sim_xlate *x)
{
	struct gvm_lane_fast *f = &l->fast;

	if (x->perm & (SIM_P_NULL | SIM_P_SCRATCH | SIM_P_SYS))
		return;
	f->page_mask = ~((1ull << x->lg2) - 1);
	f->host_off = (uintptr_t)x->host - (uintptr_t)x->va;
	f->read_tag = x->va;
	f->write_tag = (x->perm & SIM_P_WRITE) ? x->va : ~0ull;
}

/* The host page of a system-memory access is gone.  true: give up. */
static bool sysmem_gone(struct gvm_lane *l, uint64_t va, unsigned int access,
			unsigned int tries)
{
	if (lane_fault(l, va, access, GVM_FAULT_SYSMEM_GONE))
		return true;
	if (tries + 1 >= MAX_REPLAYS) {
		lane_give_up(l, va, access);
		return true;
	}
	return false;
}

/* @va without the sign extension of a canonical high address (ADDRESSES). */
static inline uint64_t lane_canon(const struct gvm_lane *l, uint64_t va)
{
	unsigned int bits = gvm__ptf_shift(l->job->simvm->levels);
	uint64_t high;

	if (bits >= 64)
		return va;
	high = ~0ull << (bits - 1);
	return (va & high) == high ? va & ~(~0ull << bits) : va;
}

/* Entry of the non-span access calls: a boundary, then argument checks. */
static bool lane_enter(struct gvm_lane *l, uint64_t va, unsigned int size,
		       bool atomic)
{
	bool ok = atomic ? (size == 4 || size == 8) :
			   (size == 1 || size == 2 || size == 4 || size == 8);

	if (l->faulted)
		return false;
	lane_boundary(l);
	link_pay(l);
	if (!ok || (va & (size - 1))) {
		lane_fail(l, -EINVAL);
		return false;
	}
	return true;
}

uint64_t gvm_lane_id(const struct gvm_lane *lane)
{
	return lane->id;
}

bool gvm_lane_faulted(const struct gvm_lane *lane)
{
	return lane->faulted;
}

uint64_t gvm_lane_load_slow(struct gvm_lane *l, uint64_t va,
			    unsigned int size)
{
	struct sim_xlate x;
	unsigned int tries;

	if (!lane_enter(l, va, size, false))
		return 0;
	va = lane_canon(l, va);
	for (tries = 0;; tries++) {
		uint8_t *p;
		uint64_t v;
		uintptr_t fa;

		if (lane_xlate(l, va, GVM_ACCESS_READ, &x))
			return 0;
		if (x.perm & (SIM_P_NULL | SIM_P_SCRATCH))
			return 0;
		p = x.host + (va - x.va);
		if (!(x.perm & SIM_P_SYS)) {
			fast_set(l, &x);
			return gvm__sim_load(p, size);
		}
		if (x.perm & SIM_P_PEER)
			link_charge(l, &x, va, size);
		if (!gvm__sim_raw(&l->e->guard, SIM_RAW_LOAD, p, NULL, size, 0,
				  0, &v, &fa))
			return v;
		if (sysmem_gone(l, va, GVM_ACCESS_READ, tries))
			return 0;
	}
}

void gvm_lane_store_slow(struct gvm_lane *l, uint64_t va, uint64_t value,
			 unsigned int size)
{
	struct sim_xlate x;
	unsigned int tries;

	if (!lane_enter(l, va, size, false))
		return;
	va = lane_canon(l, va);
	for (tries = 0;; tries++) {
		uint8_t *p;
		uintptr_t fa;

		if (lane_xlate(l, va, GVM_ACCESS_WRITE, &x))
			return;
		if (x.perm & (SIM_P_NULL | SIM_P_SCRATCH))
			return;
		p = x.host + (va - x.va);
		if (!(x.perm & SIM_P_SYS)) {
			fast_set(l, &x);
			gvm__sim_store(p, size, value);
			return;
		}
		if (x.perm & SIM_P_PEER)
			link_charge(l, &x, va, size);
		if (!gvm__sim_raw(&l->e->guard, SIM_RAW_STORE, p, NULL, size,
				  value, 0, NULL, &fa))
			return;
		if (sysmem_gone(l, va, GVM_ACCESS_WRITE, tries))
			return;
	}
}

static uint64_t lane_rmw(struct gvm_lane *l, enum sim_raw_op op, uint64_t va,
			 uint64_t v1, uint64_t v2, unsigned int size)
{
	struct sim_xlate x;
	unsigned int tries;

	if (!lane_enter(l, va, size, true))
		return 0;
	va = lane_canon(l, va);
	for (tries = 0;; tries++) {
		uint8_t *p;
		uint64_t old;
		uintptr_t fa;

		if (lane_xlate(l, va, GVM_ACCESS_ATOMIC, &x))
			return 0;
		if (x.perm & (SIM_P_NULL | SIM_P_SCRATCH))
			return 0;
		p = x.host + (va - x.va);
		if (!(x.perm & SIM_P_SYS))
			return op == SIM_RAW_ADD ? gvm__sim_add(p, size, v1) :
				gvm__sim_cmpxchg(p, size, v1, v2);
		if (x.perm & SIM_P_PEER)
			link_charge(l, &x, va, size);
		if (!gvm__sim_raw(&l->e->guard, op, p, NULL, size, v1, v2,
				  &old, &fa))
			return old;
		if (sysmem_gone(l, va, GVM_ACCESS_ATOMIC, tries))
			return 0;
	}
}

uint64_t gvm_lane_atomic_add(struct gvm_lane *l, uint64_t va, uint64_t value,
			     unsigned int size)
{
	return lane_rmw(l, SIM_RAW_ADD, va, value, 0, size);
}

uint64_t gvm_lane_atomic_cmpxchg(struct gvm_lane *l, uint64_t va,
				 uint64_t expected, uint64_t desired,
				 unsigned int size)
{
	return lane_rmw(l, SIM_RAW_CMPXCHG, va, expected, desired, size);
}

static void span_add(struct gvm_lane *l, uint64_t va, uint64_t len,
		     uintptr_t sys_host, unsigned int access)
{
	struct sim_guard *g = &l->e->guard;
	unsigned int i = l->span_next;

	gvm__sim_lane_fast_clear(l);
	l->span_next = (i + 1) % SIM_SPANS;
	if (l->nspans < SIM_SPANS)
		l->nspans++;
	l->spans[i] = (struct sim_span){ va, len, sys_host, access };
	g->span_lo[i] = sys_host;
	g->span_hi[i] = sys_host ? sys_host + len : 0;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

void *gvm_lane_span(struct gvm_lane *l, uint64_t va, size_t *len,
		    unsigned int access)
{
	struct sim_engine *e = l->e;
	struct sim_xlate x;
	uint64_t off, n;
	uint8_t *p;

	if (l->faulted)
		return NULL;
	if (!len || !*len ||
	    (access != GVM_ACCESS_READ && access != GVM_ACCESS_WRITE)) {
		lane_fail(l, -EINVAL);
		return NULL;
	}
	va = lane_canon(l, va);
	if (lane_xlate(l, va, access, &x))
		return NULL;
	off = va - x.va;
	n = (1ull << x.lg2) - off;
	if (n > *len)
		n = *len;
	if (x.perm & (SIM_P_NULL | SIM_P_SCRATCH)) {
		if (access == GVM_ACCESS_WRITE) {
			p = e->sink;
			if (n > SIM_SINK_BYTES)
				n = SIM_SINK_BYTES;
		} else {
			p = (uint8_t *)e->sd->zero;
			if (n > SIM_ZERO_BYTES)
				n = SIM_ZERO_BYTES;
		}
		span_add(l, va, n, 0, access);
	} else {
		p = x.host + off;
		if (x.perm & SIM_P_PEER)
			link_charge(l, &x, va, n);
		span_add(l, va, n, (x.perm & SIM_P_SYS) ? (uintptr_t)p : 0,
			 access);
	}
	*len = (size_t)n;
	return p;
}

/* Back in the lane loop after a siglongjmp: see SPANS above. */
static void lane_recover(struct gvm_lane *l, int why)
{
	struct sim_guard *g = &l->e->guard;

	if (why == SIM_JMP_SIGNAL) {
		uintptr_t a = g->fault_addr;
		uint64_t va = 0;
		unsigned int i, access = GVM_ACCESS_READ;

		gvm__sim_guard_recovered();
		for (i = 0; i < l->nspans; i++) {
			const struct sim_span *s = &l->spans[i];

			if (s->host && a >= s->host && a - s->host < s->len) {
				va = s->va + (a - s->host);
				access = s->access;
				break;
			}
		}
		GVM_BUG_ON(i == l->nspans);
		spans_drop(l);
		if (lane_fault(l, va, access, GVM_FAULT_SYSMEM_GONE))
			return;
	} else if (why == SIM_JMP_ABORT) {
		spans_drop(l);
		return;
	}
	spans_drop(l);
	/* The fault that restarted it last (lane_fault() noted it). */
	if (++l->restarts > MAX_RESTARTS)
		lane_give_up(l, l->fault_va, l->fault_access);
}

bool gvm__sim_run_kernel(struct sim_engine *e, struct sim_job *job)
{
	struct gvm_lane *l = &e->lane;
	struct sim_guard *g = &e->guard;
	bool parked;
	sigjmp_buf jb;
	int why;

	l->job = job;
	l->vm_id = job->simvm->id;
	l->id = job->next_lane;
	l->faulted = false;
	l->restarts = 0;
	l->e->link.overslept_ns = 0;	/* no credit from idle time */
	gvm__sim_lane_fast_clear(l);
	spans_drop(l);
	g->lane_jb = &jb;
	why = sigsetjmp(jb, 0);
	if (why)
		lane_recover(l, why);
	while (!l->faulted && l->id < job->k.grid) {
		/* Preemption point: between lanes, no span is live. */
		if (__builtin_expect(gvm_load_acquire(&job->q->preempt) != 0,
				     0)) {
			job->next_lane = l->id;
			break;
		}
		lane_boundary(l);
		job->k.fn(l, job->k.args);
		spans_drop(l);
		link_pay(l);
		l->id++;
		l->restarts = 0;
		cnt_inc(&e->cnt.lanes);
	}
	/* Left early without a fault: parked. */
	parked = !l->faulted && l->id < job->k.grid;
	spans_drop(l);
	link_pay(l);		/* a notification names this job's VM */
	gvm__sim_lane_fast_clear(l);
	g->lane_jb = NULL;
	l->vm_id = 0;
	l->job = NULL;
	return parked;
}
