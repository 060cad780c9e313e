/* SPDX-License-Identifier: MIT */
/*
 * The trace recorder's hooks (internal side of <gvm/trace.h>).
 *
 * Each hook is one line at the place it describes:
 *
 *   GVM_TRACE_BIND(dev, dev_name, sq, nr_ops);       a bind call (scope)
 *   GVM_TRACE_BIND_JOB(dev, dev_name, sq, nr_segs);  a bind job's run (scope)
 *   GVM_TRACE_TLB_INVAL(dev, dev_name, start, size); a TLB flush (scope)
 *   GVM_TRACE_MIGRATE(dev, dev_name, dir, start, size); an SVM migration
 *   GVM_TRACE_FAULT_BATCH(dev, dev_name, faults);    a batch of the fault
 *                                                    queue serviced (scope)
 *   gvm__trace_exec(dev, dev_name, sq, queue_name, kernel_name, lanes,
 *                   finished);     a kernel from now to @finished signalling
 *   gvm__trace_fault(dev, dev_name, engine_name, instance, addr, access,
 *                    reason);                        a GPU fault (instant)
 *   t0 = gvm__trace_start_ns(); ...
 *   gvm__trace_svm_gc(dev, dev_name, t0, dropped, split, bytes);
 *                             SVM garbage collection from t0 to now
 *
 * A scope hook declares a variable whose cleanup (the GCC/Clang cleanup
 * attribute) records a complete event when the enclosing block is left, on
 * any path.  @dev is the process key (any pointer that identifies the
 * device, named @dev_name, copied); @sq identifies the queue (the same
 * pointer for a queue's binds, bind jobs and kernels: its scheduler
 * queue).  Keys are only compared, never dereferenced.  The recorder
 * knows nothing of devices: callers name things (queue and engine kinds,
 * kernels, access types) with strings and pass plain numbers.
 *
 * Cost when no trace records: one relaxed load of gvm__trace_enabled per
 * hook (a scope also tests a local at its end).  When recording, events go
 * to one process-wide buffer under trace.lock (rank LEAF: nothing is taken
 * inside it, and the hooks must not be called with another leaf lock held).
 * Hooks may be called from any thread, under any lock of a lower rank,
 * from fence callbacks, but not from signal handlers.
 *
 * Not done here: no per-thread buffers (the lock is fine for the event
 * rates of binds and kernels; lanes are not traced), no streaming to the
 * file while recording.
 */
#ifndef GVM_CORE_TRACE_H
#define GVM_CORE_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/atomic.h"
#include "core/sync.h"

struct gvm_fence;

/* Non-zero while a trace records; read relaxed by every hook. */
extern uint32_t gvm__trace_enabled;

static inline bool gvm__trace_on(void)
{
	return __builtin_expect(gvm_load_relaxed(&gvm__trace_enabled) != 0, 0);
}

/* Where an event goes: a device (process) and a track (thread) in it. */
struct gvm__trace_where {
	const void *dev;
	const char *dev_name;
	const void *track;		/* key, unique within the device */
	const char *track_name;		/* static; the thread is named
					   "<track_name> <index>"; a track
					   is (track, track_name) */
	int track_index;		/* -1: numbered in order of appearance */
};

struct gvm__trace_scope {
	int64_t t0;			/* -1: not recording at the start */
	const char *name, *cat;		/* static */
	struct gvm__trace_where w;
	const char *key[2];		/* static, NULL: no argument */
	uint64_t val[2];
	unsigned int hex;		/* bit i: val[i] printed in hex */
};

void gvm__trace_scope_begin(struct gvm__trace_scope *s, const char *name,
			    const char *cat, const struct gvm__trace_where *w,
			    const char *k0, uint64_t v0, const char *k1,
			    uint64_t v1, unsigned int hex);
void gvm__trace_scope_end_slow(struct gvm__trace_scope *s);
void gvm__trace_exec_slow(const void *dev, const char *dev_name,
			  const void *sq, const char *queue_name,
			  const char *kernel_name, uint64_t lanes,
			  struct gvm_fence *finished);
void gvm__trace_fault_slow(const void *dev, const char *dev_name,
			   const char *engine_name, uint32_t instance,
			   uint64_t addr, const char *access,
			   const char *reason);
void gvm__trace_svm_gc_slow(const void *dev, const char *dev_name,
			    int64_t t0, uint64_t dropped, uint64_t split,
			    uint64_t bytes);

static inline void gvm__trace_scope_end(struct gvm__trace_scope *s)
{
	if (s->t0 >= 0)
		gvm__trace_scope_end_slow(s);
}

static inline void gvm__trace_scope_init(struct gvm__trace_scope *s,
					 const char *name, const char *cat,
					 const void *dev,
					 const char *dev_name,
					 const void *track,
					 const char *track_name,
					 const char *k0, uint64_t v0,
					 const char *k1, uint64_t v1,
					 unsigned int hex)
{
	s->t0 = -1;
	if (gvm__trace_on()) {
		struct gvm__trace_where w = { dev, dev_name, track,
					      track_name, -1 };

		gvm__trace_scope_begin(s, name, cat, &w, k0, v0, k1, v1, hex);
	}
}

#define GVM__TRACE_CAT2(a, b) a##b
#define GVM__TRACE_CAT(a, b) GVM__TRACE_CAT2(a, b)
#define GVM__TRACE_VAR GVM__TRACE_CAT(gvm__trace_scope_, __LINE__)

/* A complete event from here to the end of the enclosing block. */
#define GVM__TRACE_SCOPE(name, cat, dev, dev_name, track, track_name, k0,   \
			 v0, k1, v1, hex)                                     \
	struct gvm__trace_scope GVM__TRACE_VAR                                \
		__attribute__((cleanup(gvm__trace_scope_end)));               \
	gvm__trace_scope_init(&GVM__TRACE_VAR, name, cat, dev, dev_name,      \
			      track, track_name, k0, v0, k1, v1, hex)

/* Track names (also used by trace.c). */
#define GVM__TRACE_BIND_QUEUE "bind queue"
#define GVM__TRACE_TLB "TLB"
#define GVM__TRACE_MIGRATION "migration"
#define GVM__TRACE_FAULT_QUEUE "fault queue"
#define GVM__TRACE_SVM_GC "svm gc"

#define GVM_TRACE_BIND(dev, dev_name, sq, nr_ops)                             \
	GVM__TRACE_SCOPE("vm_bind", "bind", dev, dev_name, sq,                \
			 GVM__TRACE_BIND_QUEUE, "ops", (uint64_t)(nr_ops),    \
			 NULL, 0, 0)
#define GVM_TRACE_BIND_JOB(dev, dev_name, sq, nr_segs)                        \
	GVM__TRACE_SCOPE("bind_job", "bind", dev, dev_name, sq,               \
			 GVM__TRACE_BIND_QUEUE, "segments",                   \
			 (uint64_t)(nr_segs), NULL, 0, 0)
/* @size 0: a full flush. */
#define GVM_TRACE_TLB_INVAL(dev, dev_name, start, size)                       \
	GVM__TRACE_SCOPE("tlb_inval", "tlb", dev, dev_name, GVM__TRACE_TLB,   \
			 GVM__TRACE_TLB, "start", (uint64_t)(start), "size",  \
			 (uint64_t)(size), 1u)

/* SVM: a range moving, "to_vram" or "to_system" (@dir, a static string). */
#define GVM_TRACE_MIGRATE(dev, dev_name, dir, start, size)                   \
	GVM__TRACE_SCOPE(dir, "migrate", dev, dev_name,                       \
			 GVM__TRACE_MIGRATION, GVM__TRACE_MIGRATION, "start", \
			 (uint64_t)(start), "size", (uint64_t)(size), 1u)
/* A batch's servicer (the fault-servicing thread, or the faulting engine's
   thread for a lone fault) sorts, deduplicates and services @faults. */
#define GVM_TRACE_FAULT_BATCH(dev, dev_name, faults)                          \
	GVM__TRACE_SCOPE("fault_batch", "fault", dev, dev_name,               \
			 GVM__TRACE_FAULT_QUEUE, GVM__TRACE_FAULT_QUEUE,      \
			 "faults", (uint64_t)(faults), NULL, 0, 0)

/*
 * A kernel named @kernel_name (a static string, NULL: "kernel") of @lanes
 * lanes starts now on queue @sq, a track named @queue_name ("compute
 * queue", static); the event ends when @finished signals (its timestamp).
 */
static inline void gvm__trace_exec(const void *dev, const char *dev_name,
				   const void *sq, const char *queue_name,
				   const char *kernel_name, uint64_t lanes,
				   struct gvm_fence *finished)
{
	if (gvm__trace_on())
		gvm__trace_exec_slow(dev, dev_name, sq, queue_name,
				     kernel_name, lanes, finished);
}

/*
 * A GPU fault at GPU VA @addr: an instant on the track of the engine
 * @engine_name ("compute engine", static) number @instance (< 65536).
 * @access and @reason are static strings ("write", "not present").
 */
static inline void gvm__trace_fault(const void *dev, const char *dev_name,
				    const char *engine_name, uint32_t instance,
				    uint64_t addr, const char *access,
				    const char *reason)
{
	if (gvm__trace_on())
		gvm__trace_fault_slow(dev, dev_name, engine_name, instance,
				      addr, access, reason);
}

/* The start of an event recorded later if at all: now, or -1 if no trace
   records now. */
static inline int64_t gvm__trace_start_ns(void)
{
	return gvm__trace_on() ? gvm__now_ns() : -1;
}

/*
 * SVM garbage collection (svm.c) from @t0 (gvm__trace_start_ns()) to now,
 * on the track "svm gc": @dropped ranges whose CPU memory was unmapped
 * left the VM, @split of them had what the CPU still maps covered again
 * by smaller ranges, @bytes the dropped ranges' size.  Nothing is
 * recorded if nothing was dropped (a fault's collection usually finds
 * nothing) or no trace recorded at @t0.
 */
static inline void gvm__trace_svm_gc(const void *dev, const char *dev_name,
				     int64_t t0, uint64_t dropped,
				     uint64_t split, uint64_t bytes)
{
	if (t0 >= 0 && dropped)
		gvm__trace_svm_gc_slow(dev, dev_name, t0, dropped, split,
				       bytes);
}

#endif
