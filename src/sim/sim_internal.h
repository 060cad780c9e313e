/* SPDX-License-Identifier: MIT */
/*
 * Simulated GPU: the structures shared by the files of src/sim (internal).
 *
 *   sim.c      config, the VRAM arena, the device ops, stats, destroy
 *   engine.c   engine threads, jobs, the timer thread, TLB-invalidation
 *              requests and their acknowledgement
 *   mmu.c      page-table walks and the per-engine TLB
 *   lane.c     the lane API (gvm_lane_*): translation, permission checks,
 *              GPU faults, spans
 *   guard.c    the SIGSEGV/SIGBUS guard around system-memory accesses
 *   kernels.c  the built-in kernels
 *
 * Docs: docs/sim.md (model and protocols), docs/locking.md (locks).
 *
 * Locks (all GVM_RANK_LEAF; none is ever held while another is taken,
 * none while calling out of the backend):
 *   engine->lock      the engine's job list, its fence seqno, whether it
 *                     translates (its TLB request stack's head to and
 *                     from IDLE; the stack itself is lock-free),
 *                     `cur_q`, the suspend state of its queues, and its
 *                     TLB while it does not translate
 *   sd->timer_lock    the timer list
 *   the registry lock (sim.c, GVM_RANK_SIM_REGISTRY) the list of
 *                     simulated devices; held while asking gvm for a link
 *                     (gvm_device_link_query, whose leaf lock nests)
 */
#ifndef GVM_SIM_INTERNAL_H
#define GVM_SIM_INTERNAL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>

#include <gvm/device.h>
#include <gvm/kernel.h>
#include <gvm/sim.h>

#include "core/list.h"
#include "core/sync.h"

struct sim_dev;
struct sim_engine;

/* ---- VMs and queues ---------------------------------------------------- */

/*
 * Per-VM state (ops->vm_attach), called `simvm` in code ("svm" is shared
 * virtual memory).  All fields immutable.
 */
struct sim_vm {
	struct sim_dev *sd;
	struct gvm_vm *vm;		/* passed to the fault handler */
	uint64_t id;			/* TLB tag, unique in the process, != 0 */
	uint64_t root;			/* device address of the root table */
	unsigned int levels;
	uint32_t flags;			/* GVM_ATTACH_* */
	struct sim_inval_ctx *ic;	/* its TLB invalidations (engine.c);
					   outlives the attachment while a
					   request's fence is referenced */
};

/*
 * An exec queue bound to one engine (simvm, e, context: immutable).  Its
 * kernels' fences are on the queue's own fence context: a suspended
 * queue's jobs are overtaken by other queues' jobs on the same engine, so
 * an engine-wide context would signal out of seqno order.
 */
struct sim_queue {
	struct sim_vm *simvm;
	struct sim_engine *e;
	uint64_t context;		/* fence context of its kernels */
	uint64_t seqno;			/* e->lock: last fence seqno */
	uint32_t suspend_count;		/* e->lock: suspends not yet resumed;
					   its jobs start only while 0 */
	uint32_t preempt;		/* written under e->lock (release),
					   read by the engine at every lane
					   start (acquire): park the job */
	struct gvm_fence *suspend_done;	/* e->lock: the pending fence of a
					   suspend waiting for the running
					   job to park (reference), or NULL */
};

/* ---- MMU / TLB (mmu.c) -------------------------------------------------- */

/* Permission / kind bits of a translation. */
#define SIM_P_WRITE	(1u << 0)
#define SIM_P_ATOMIC	(1u << 1)
#define SIM_P_NULL	(1u << 2)	/* sparse leaf: reads 0, writes dropped */
#define SIM_P_SYS	(1u << 3)	/* system memory (guarded host VA) */
#define SIM_P_SCRATCH	(1u << 4)	/* no valid leaf, scratch VM (never
					   cached) */
#define SIM_P_PEER	(1u << 5)	/* with SYS: a linked peer's VRAM
					   window; the engine's link slot in
					   the bits from SIM_P_LINK_SHIFT */
#define SIM_P_LINK_SHIFT 16

/* A translation of one page. */
struct sim_xlate {
	uint64_t va;			/* page base (GPU VA) */
	uint8_t *host;			/* host pointer of the page base; NULL
					   for NULL / scratch */
	uint32_t lg2;			/* page size */
	uint32_t perm;			/* SIM_P_* */
};

/* One TLB entry; vm_id 0 = empty. */
struct sim_tlb_entry {
	uint64_t vm_id;
	struct sim_xlate x;
};

#define SIM_TLB_WAYS	4u
#define SIM_TLB_L0	4u		/* fully associative first level */
#define SIM_TLB_VM_BUCKETS 64u		/* occupancy counters by VM id */

/*
 * A per-engine TLB: a small fully associative first level (the last
 * translations used) in front of a SIM_TLB_WAYS-way set-associative
 * array, indexed by the page number at each page size.  Owned by the
 * engine's thread while it is translating (lane.inval_head not
 * SIM_INVAL_IDLE), else by engine->lock.
 *
 * Occupancy (lets an invalidation skip a TLB that holds nothing of the
 * VM without scanning it; checked by gvm__sim_tlb_validate()):
 *   vm_count[b] == #{ e in sets[] and l0[] : e.vm_id != 0 and
 *                     e.vm_id % SIM_TLB_VM_BUCKETS == b }
 *   nr_valid    == sum of vm_count[]
 */
struct sim_tlb {
	struct sim_tlb_entry *sets;	/* [nr_sets * WAYS] */
	uint64_t *valid;		/* bit i: sets[i] holds an entry, so an
					   invalidation visits only those */
	uint32_t nr_sets;		/* power of two */
	uint32_t victim;		/* round-robin way */
	struct sim_tlb_entry l0[SIM_TLB_L0];
	uint32_t l0_next;
	uint32_t size_mask;		/* page sizes the TLB may hold, bit
					   (lg2 - 12) / 1: 4K, 64K, 2M, 1G */
	uint32_t nr_valid;		/* see Occupancy */
	uint32_t vm_count[SIM_TLB_VM_BUCKETS];
};

int gvm__sim_tlb_init(struct sim_tlb *t, unsigned int entries);
void gvm__sim_tlb_fini(struct sim_tlb *t);
/* A hit copies the translation to *x.  Counts nothing. */
bool gvm__sim_tlb_lookup(struct sim_tlb *t, uint64_t vm_id, uint64_t va,
			 struct sim_xlate *x);
void gvm__sim_tlb_insert(struct sim_tlb *t, uint64_t vm_id,
			 const struct sim_xlate *x);
/* Drops entries of @vm_id overlapping [start, start + size) (size 0: all
   of the VM; vm_id 0: everything).  O(1) when the TLB holds no entry of
   a VM in @vm_id's occupancy bucket, else a scan of every entry. */
void gvm__sim_tlb_inval(struct sim_tlb *t, uint64_t vm_id, uint64_t start,
			uint64_t size);
/* Checks the occupancy invariants: 0, or -EUCLEAN after printing. */
int gvm__sim_tlb_validate(const struct sim_tlb *t);

/*
 * Walks @simvm's page tables for @va.  Returns 0 with *x filled (valid leaf,
 * NULL leaves included), or -ENOENT (no valid leaf, or a table outside
 * VRAM).  Reads entries with 8-byte acquire loads.
 */
int gvm__sim_walk(struct sim_dev *sd, const struct sim_vm *simvm, uint64_t va,
		  struct sim_xlate *x);

/* ---- the guard (guard.c) ---------------------------------------------- */

#define SIM_SPANS	GVM_LANE_SPANS	/* live spans per lane */

/*
 * Per engine thread.  The signal handler only reads it (on that thread);
 * the thread writes it.  Ranges are [lo, hi) host addresses; lo == hi is
 * empty.
 */
struct sim_guard {
	sigjmp_buf *volatile lane_jb;	/* span faults: back to the lane loop */
	sigjmp_buf *volatile raw_jb;	/* faults of a guarded raw access */
	volatile uintptr_t raw_lo[2], raw_hi[2];
	volatile uintptr_t span_lo[SIM_SPANS], span_hi[SIM_SPANS];
	volatile uintptr_t fault_addr;	/* set by the handler */
};

/* Longjmp values. */
#define SIM_JMP_SIGNAL	1		/* a guarded access faulted */
#define SIM_JMP_RESTART	2		/* rerun the lane */
#define SIM_JMP_ABORT	3		/* the lane failed, drop it */

/* Installs the process-wide handler once; 0 or -errno. */
int gvm__sim_guard_install(void);
/* Makes @g the calling thread's guard (NULL: none). */
void gvm__sim_guard_set_thread(struct sim_guard *g);
/* After a longjmp out of the handler: unblocks SIGSEGV/SIGBUS. */
void gvm__sim_guard_recovered(void);

enum sim_raw_op {
	SIM_RAW_LOAD,
	SIM_RAW_STORE,
	SIM_RAW_ADD,
	SIM_RAW_CMPXCHG,
	SIM_RAW_COPY,
};

/*
 * A guarded access to host memory (system memory): loads, stores and
 * atomics of @size bytes at @p, or a copy of @size bytes from @src to @p.
 * Returns 0, or -EFAULT if the memory is not (or no longer) accessible;
 * then *@fault_addr is the host address that faulted.
 */
int gvm__sim_raw(struct sim_guard *g, enum sim_raw_op op, void *p,
		 const void *src, size_t size, uint64_t v1, uint64_t v2,
		 uint64_t *out, uintptr_t *fault_addr);

/*
 * Plain device accesses of 1/2/4/8 bytes (atomics of 4/8): relaxed loads and
 * stores (a GPU access is single-copy atomic), sequentially consistent
 * read-modify-writes.
 */
static inline uint64_t gvm__sim_load(const void *p, size_t size)
{
	switch (size) {
	case 1: return __atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
	case 2: return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
	case 4: return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
	default: return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
	}
}

static inline void gvm__sim_store(void *p, size_t size, uint64_t v)
{
	switch (size) {
	case 1: __atomic_store_n((uint8_t *)p, (uint8_t)v, __ATOMIC_RELAXED); break;
	case 2: __atomic_store_n((uint16_t *)p, (uint16_t)v, __ATOMIC_RELAXED); break;
	case 4: __atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_RELAXED); break;
	default: __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED); break;
	}
}

static inline uint64_t gvm__sim_add(void *p, size_t size, uint64_t v)
{
	if (size == 4)
		return __atomic_fetch_add((uint32_t *)p, (uint32_t)v,
					  __ATOMIC_SEQ_CST);
	return __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_SEQ_CST);
}

static inline uint64_t gvm__sim_cmpxchg(void *p, size_t size, uint64_t exp, uint64_t des)
{
	if (size == 4) {
		uint32_t e = (uint32_t)exp;

		__atomic_compare_exchange_n((uint32_t *)p, &e, (uint32_t)des,
					    false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
		return e;
	}
	__atomic_compare_exchange_n((uint64_t *)p, &exp, des, false,
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	return exp;
}

/* ---- engines (engine.c) -------------------------------------------------- */

struct sim_timer_item {
	struct gvm_list link;		/* in sd->timers, under timer_lock */
	int64_t deadline;		/* gvm__now_ns() time to signal at */
	struct gvm_fence *fence;	/* reference owned by the item */
	int error;
	void (*release)(struct sim_timer_item *it);	/* after signalling */
};

enum sim_job_type { SIM_JOB_KERNEL, SIM_JOB_COPY };

struct sim_job {
	struct gvm_list link;		/* in e->jobs, under e->lock */
	enum sim_job_type type;
	struct sim_engine *e;
	struct gvm_fence *fence;	/* the job's reference */
	int error;			/* engine thread */
	struct sim_vm *simvm;		/* KERNEL */
	struct sim_queue *q;		/* KERNEL: its queue */
	uint64_t next_lane;		/* KERNEL: where it starts or resumes
					   (engine thread, or e->lock while
					   parked) */
	struct gvm_kernel k;		/* KERNEL: a copy */
	struct gvm_mem_addr dst, src;	/* COPY */
	uint64_t size;			/* COPY */
	uint64_t bw, latency_ns;	/* COPY: the model it is charged
					   (cfg.copy_*, or a peer copy's
					   link); set before submission */
	struct sim_timer_item timer;
};

/* One live span of a lane (engine thread; read under e->lock while the
   engine is not translating). */
struct sim_span {
	uint64_t va;
	uint64_t len;
	uintptr_t host;			/* 0 if not system memory */
	unsigned int access;
};

/* What the engine knows about the lane it runs (engine thread only,
   except `spans`/`nspans`/`stale`: see struct sim_span). */
struct gvm_lane {
	struct gvm_lane_fast fast;	/* first (<gvm/kernel.h>): the inline
					   loads' and stores' last
					   translation; its tags are set by
					   the full path and cleared (~0)
					   wherever that translation may stop
					   being usable (lane.c FAST PATH);
					   fast.inval_pending is the engine's
					   flag (struct sim_engine) */
	/* The engine's TLB requests (engine.c, QUEUEING), here so that
	   they share the line the engine reads fast.inval_pending from. */
	struct sim_inval_node *inval_head;
	struct sim_engine *e;
	struct sim_job *job;
	uint64_t vm_id;			/* of the job while it runs, else 0 */
	uint64_t id;
	bool faulted;			/* the job failed: skip everything */
	bool stale;			/* an invalidation hit a live span */
	unsigned int restarts;		/* of this lane */
	uint64_t fault_va;		/* the lane's last fault reported: */
	unsigned int fault_access;	/* what a give-up names (lane.c) */
	unsigned int nspans;		/* live spans */
	unsigned int span_next;		/* ring position */
	struct sim_span spans[SIM_SPANS];
};

/* Counters, relaxed atomics (written by the engine thread mostly). */
struct sim_counters {
	uint64_t tlb_hits, tlb_misses, walks, faults, kernels, lanes;
	uint64_t bytes_copied;
	uint64_t parks;			/* kernels parked by a suspend */
	uint64_t link_bytes, link_wait_ns, access_notes;
};

/*
 * The link model of one engine (lane.c, "LINK"); engine thread only.  A
 * translation into a linked peer's VRAM window names one of `links` (its
 * bandwidth and latency, asked of gvm at the walk); accesses through it
 * add to `debt_ns`, which the engine pays, by sleeping, at lane
 * boundaries once it reaches SIM_LINK_QUANTUM_NS.  `ctr` are the access
 * counters: bytes per (VM, 2 MiB region), a small table replaced
 * round-robin; crossing the device's threshold queues `note`, sent at the
 * next payment.
 */
#define SIM_LINKS		8u
#define SIM_ACCESS_CTRS		8u
#define SIM_LINK_QUANTUM_NS	20000
#define SIM_LINK_CREDIT_NS	1000000

struct sim_link_model {
	struct {
		const struct sim_dev *peer;	/* compared only */
		uint64_t bw, latency_ns;
	} links[SIM_LINKS];
	unsigned int link_rr;
	uint64_t debt_ns;
	int64_t busy_until;		/* the link is charged until then */
	int64_t overslept_ns;		/* the last payment's sleep overran
					   by this much (made up next) */
	struct {
		uint64_t vm_id, region, bytes;
	} ctr[SIM_ACCESS_CTRS];
	unsigned int ctr_rr;
	bool note_pending;
	struct gvm_vm *note_vm;		/* the running job's VM */
	struct gvm_access_info note;
};

struct sim_inval_req;
struct sim_inval_ctx;

struct sim_engine {
	struct sim_dev *sd;		/* immutable */
	uint32_t cls;			/* GVM_ENGINE_COMPUTE / _COPY */
	bool migrate;			/* immutable: a migration engine
					   (copies of ops->copy only) */
	unsigned int instance;		/* within its class */
	uint64_t context;		/* fence context, immutable */
	pthread_t thread;
	bool thread_started;		/* creator/destroyer only */

	struct gvm_mutex lock;		/* LEAF; see sim_internal.h top */
	pthread_cond_t cond;		/* jobs or stop, with lock */
	struct gvm_list jobs;		/* sim_job.link, under lock */
	uint32_t kicks;			/* bumped under lock by everything that
					   signals cond (release); the thread
					   spins on it lock-free before it
					   sleeps (gvm__spin_while_eq) */
	bool stop;			/* under lock */
	struct sim_queue *cur_q;	/* under lock: queue of the kernel job
					   the thread runs, or NULL */
	/* lane.inval_head: the TLB requests queued on the engine, a
	   lock-free stack (engine.c, QUEUEING), or SIM_INVAL_IDLE while the
	   engine is not "translating" (changed to and from IDLE only under
	   lock).  While it translates the thread uses the TLB and spans
	   without the lock.
	   lane.fast.inval_pending: set (seq_cst) after each push, cleared
	   by the engine before it takes the stack; read lock-free at
	   lane-call boundaries and by the inline fast path. */
	uint64_t seqno;			/* last fence seqno, under lock */

	struct sim_tlb tlb;		/* see struct sim_tlb */
	struct gvm_lane lane;		/* engine thread (see gvm_lane) */
	struct sim_guard guard;		/* engine thread + its signal handler */
	uint8_t *sink;			/* write spans of NULL / scratch pages */

	struct sim_link_model link;	/* engine thread only */
	int64_t busy_until;		/* copy model, engine thread only */
	int64_t last_deadline;		/* of the last fence, engine thread */
	uint32_t timer_pending;		/* atomic: fences of this engine in
					   the timer list */
	struct sim_counters cnt;	/* relaxed atomics */
};

/* Size of an engine's write sink and of the device's zero area. */
#define SIM_SINK_BYTES	(64u << 10)
#define SIM_ZERO_BYTES	(2u << 20)

/* ---- the device (sim.c) ------------------------------------------------ */

struct sim_dev {
	struct gvm_device *dev;		/* set once registered, immutable */
	struct gvm_sim_config cfg;	/* with defaults, immutable */
	char name[32];			/* immutable */
	int vram_fd;			/* immutable */
	uint8_t *vram;			/* CPU window (arena), immutable */
	uint64_t vram_base, vram_size;	/* immutable */
	const uint8_t *zero;		/* SIM_ZERO_BYTES of read-only zeros */

	bool engines_started;		/* creator/destroyer only */
	unsigned int nr_engines;	/* compute first, then copy, then
					   one migration engine per copy
					   engine (ops->copy; no kernels) */
	struct sim_engine *engines;
	uint32_t rr_compute, rr_copy;	/* atomic round-robin cursors */
	uint32_t rr_migrate;		/* atomic: migration engines */

	/* The timer thread signals fences at their modelled time. */
	struct gvm_mutex timer_lock;	/* LEAF */
	pthread_cond_t timer_cond;	/* with timer_lock */
	struct gvm_list timers;		/* by deadline (stable), timer_lock */
	bool timer_stop;		/* under timer_lock */
	pthread_t timer_thread;
	bool timer_started;		/* creator/destroyer only */

	uint64_t tlb_invals;		/* relaxed atomic */

	/* Where GPU faults go: gvm_vm_fault(), or a test's handler. */
	int (*fault_fn)(struct gvm_vm *vm, const struct gvm_fault_info *f);

	struct gvm_list link;		/* registry, under the registry lock */
	bool registered;		/* registry lock: dev is set (peers'
					   lookups, gvm__sim_peer_link) */
};

extern const struct gvm_device_ops gvm__sim_ops;

/*
 * The device whose VRAM window holds host address @host, if it is another
 * simulated device than @sd linked to it: 0 with its link's properties
 * and *@peer (compared only), else -ENOENT.  Takes the registry lock (and
 * gvm's link lock inside it).
 */
extern uint32_t gvm__sim_nr_devs;	/* atomic: registered devices */
int gvm__sim_peer_link(const struct sim_dev *sd, const void *host,
		       const struct sim_dev **peer, struct gvm_link_props *lp);

static inline struct sim_dev *sim_dev_of(struct gvm_device *dev)
{
	return (struct sim_dev *)gvm_device_priv(dev);
}

/* Host pointer of [addr, addr + len) of VRAM, NULL if outside it. */
static inline uint8_t *gvm__sim_vram_ptr(const struct sim_dev *sd,
					 uint64_t addr, uint64_t len)
{
	uint64_t off = addr - sd->vram_base;

	if (addr < sd->vram_base || off > sd->vram_size ||
	    len > sd->vram_size - off)
		return NULL;
	return sd->vram + off;
}

/* engine.c */
int gvm__sim_engines_start(struct sim_dev *sd);
void gvm__sim_engines_stop(struct sim_dev *sd);
int gvm__sim_submit(struct sim_engine *e, struct sim_job *job,
		    struct gvm_fence **done);
/*
 * A VM attachment's TLB invalidation context (engine.c, TLB INVALIDATION
 * REQUESTS): one fence context, and the requests recycled.  Created at
 * vm_attach; detach ends the attachment's use of it, and it is freed once
 * no request fence is left.
 */
int gvm__sim_inval_ctx_create(struct sim_dev *sd, uint64_t vm_id,
			      struct sim_inval_ctx **out);
void gvm__sim_inval_ctx_detach(struct sim_inval_ctx *ic);
int gvm__sim_tlb_inval_submit(struct sim_inval_ctx *ic, uint64_t start,
			      uint64_t size, struct gvm_fence **done);
/* Engine thread: acknowledge queued invalidations (lane-call boundary). */
void gvm__sim_engine_ack_invals(struct sim_engine *e);
/* Engine thread: stop / resume translating around a fault report. */
void gvm__sim_engine_quiesce(struct sim_engine *e);
void gvm__sim_engine_resume(struct sim_engine *e);

/* Queue suspend / resume (engine.c; ops->queue_suspend / _resume). */
int gvm__sim_queue_suspend(struct sim_queue *q, struct gvm_fence **done);
void gvm__sim_queue_resume(struct sim_queue *q);
/* Drops the queue's parked and queued jobs (-ECANCELED). */
void gvm__sim_queue_drop(struct sim_queue *q);

/* lane.c: forgets the lane's fast-path translation (the engine thread, or
   e->lock while it is not translating). */
static inline void gvm__sim_lane_fast_clear(struct gvm_lane *l)
{
	l->fast.read_tag = l->fast.write_tag = ~0ull;
}

/* lane.c: runs lanes from job->next_lane; true if the job parked (its
   queue asked to be suspended) before its last lane. */
bool gvm__sim_run_kernel(struct sim_engine *e, struct sim_job *job);

#endif
