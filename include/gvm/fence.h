/* SPDX-License-Identifier: MIT */
/*
 * Fences: one-shot completion events for asynchronous work.
 *
 * A fence is signalled exactly once, optionally with an error.  Interested
 * parties add callbacks (each runs exactly once), wait with a timeout, or poll.
 * Fences are reference counted; every function taking a fence requires the
 * caller to hold a reference for the duration of the call.
 *
 * Ordering.  Each fence belongs to a context (a timeline, from
 * gvm_fence_context_alloc()) and has a 64-bit sequence number on it.  Fences
 * of one context must signal in seqno order, so a later fence of a context
 * implies every earlier one: consumers such as reservation objects keep only
 * the latest fence per context.  struct gvm_timeline (below) is a ready-made
 * producer that enforces this order.
 *
 * Signalling on demand.  A fence whose producer must do work to notice
 * completion (poll hardware, hook other fences) implements
 * ops->enable_signaling; gvm calls it once, the first time somebody needs an
 * event (a callback or a wait), never for a plain gvm_fence_is_signaled().
 *
 * Callback context.  A callback added while the fence is unsignalled runs in
 * the thread that signals, with the fence's internal lock held: it must not
 * block, must not add or remove callbacks on this same fence, and may signal
 * other fences.  When gvm_fence_remove_callback() returns, the callback is
 * either removed or has finished running.  A callback added to an already
 * signalled fence runs at once, in the caller, without that lock.
 *
 * Errors (all calls): -EINVAL for a NULL fence or a bad argument;
 * gvm_fence_signal*() return -EALREADY on an already-signalled fence and leave
 * it (and its error) unchanged.
 */
#ifndef GVM_FENCE_H
#define GVM_FENCE_H

#include <gvm/types.h>

GVM_BEGIN_DECLS

struct gvm_fence;
struct gvm_fence_cb;

typedef void (*gvm_fence_func_t)(struct gvm_fence *fence,
				 struct gvm_fence_cb *cb);

/* Embedded by the caller; owned by the fence while added. */
struct gvm_fence_cb {
	struct gvm_list node;	/* in fence->cb_list, under fence->lock */
	gvm_fence_func_t func;
};

struct gvm_fence_ops {
	/* Name of the producer, for diagnostics and traces.  Mandatory. */
	const char *name;
	/*
	 * Optional.  Called once, without this fence's lock, before the first
	 * callback or wait needs the fence to signal (from a callback of
	 * another fence if that is where the callback is added).  Returns
	 * false if the fence is already complete (gvm then signals it).
	 */
	bool (*enable_signaling)(struct gvm_fence *fence);
	/*
	 * Optional.  Polls the producer: returns true if the fence's work is
	 * complete (gvm then signals it).  Must not block or take gvm locks.
	 */
	bool (*signaled)(struct gvm_fence *fence);
	/* Optional.  Frees the fence when the last reference goes; default free(). */
	void (*release)(struct gvm_fence *fence);
};

/* Fields are private; use the functions below. */
struct gvm_fence {
	struct gvm_mutex lock;		/* protects cb_list and signalling */
	const struct gvm_fence_ops *ops; /* immutable */
	struct gvm_list cb_list;	/* under lock */
	uint64_t context;		/* immutable */
	uint64_t seqno;			/* immutable */
	int64_t timestamp_ns;		/* written before SIGNALED is set */
	int error;			/* written before SIGNALED is set */
	uint32_t flags;			/* atomic: GVM_FENCE_F_* */
	uint32_t refcount;		/* atomic */
};

/* Fence flag bits (read with gvm_fence_is_signaled() etc., not directly). */
#define GVM_FENCE_F_SIGNALED (1u << 0)
#define GVM_FENCE_F_ENABLE_SIGNAL (1u << 1)

/* Allocates @n consecutive, never-reused fence contexts; returns the first. */
GVM_API uint64_t gvm_fence_context_alloc(unsigned int n);

/*
 * Initialises an embedded fence with one reference.  @ops may be NULL for a
 * plain software fence that is freed with free().
 */
GVM_API void gvm_fence_init(struct gvm_fence *fence,
			    const struct gvm_fence_ops *ops, uint64_t context,
			    uint64_t seqno);

/* Allocates a software fence (signalled by gvm_fence_signal()). */
GVM_API int gvm_fence_create(uint64_t context, uint64_t seqno,
			     struct gvm_fence **out);

/* Allocates a fence that is already signalled with @error (0 or -errno). */
GVM_API int gvm_fence_create_signaled(int error, struct gvm_fence **out);

/* NULL-safe. gvm_fence_get() returns @fence. */
GVM_API struct gvm_fence *gvm_fence_get(struct gvm_fence *fence);
GVM_API void gvm_fence_put(struct gvm_fence *fence);

/*
 * Signals @fence; runs its callbacks and wakes its waiters.
 * Returns 0, -EALREADY if already signalled, -EPERM for a fence that only
 * its producer may signal (timeline fences, scheduler finished fences).
 */
GVM_API int gvm_fence_signal(struct gvm_fence *fence);

/* Same, recording @error (a negative errno; 0 means no error). */
GVM_API int gvm_fence_signal_error(struct gvm_fence *fence, int error);

/*
 * True once signalled.  Never waits for the fence, never enables signalling.
 * Polls ops->signaled if the producer has one, and if that reports
 * completion signals the fence right here (taking its lock, running its
 * callbacks).
 */
GVM_API bool gvm_fence_is_signaled(struct gvm_fence *fence);

/* 0 while pending, 1 if signalled without error, else the negative error. */
GVM_API int gvm_fence_get_status(struct gvm_fence *fence);

/* The CLOCK_MONOTONIC time of signalling in ns, or -1 while pending. */
GVM_API int64_t gvm_fence_timestamp(struct gvm_fence *fence);

/* Asks the producer to signal (calls ops->enable_signaling once). */
GVM_API void gvm_fence_enable_signaling(struct gvm_fence *fence);

/*
 * Arranges for @func(fence, cb) to run once @fence signals; runs it at once
 * if already signalled.  @cb must stay valid until it ran or was removed.
 * Returns 0 or -EINVAL.
 */
GVM_API int gvm_fence_add_callback(struct gvm_fence *fence,
				   struct gvm_fence_cb *cb,
				   gvm_fence_func_t func);

/*
 * Removes @cb if it has not run.  Returns true if removed (it will never
 * run), false if it already ran (and has returned).
 */
GVM_API bool gvm_fence_remove_callback(struct gvm_fence *fence,
				       struct gvm_fence_cb *cb);

/*
 * Waits until @fence signals or @timeout_ns passes (negative: forever,
 * 0: poll).  Returns 0 once signalled (whatever its error; see
 * gvm_fence_get_status()), -ETIME on timeout, -EINVAL.
 */
GVM_API int gvm_fence_wait(struct gvm_fence *fence, int64_t timeout_ns);

/*
 * Like gvm_fence_wait(), but returns -EINTR if a signal handler runs in the
 * waiting thread (install handlers without SA_RESTART to interrupt waits).
 */
GVM_API int gvm_fence_wait_interruptible(struct gvm_fence *fence,
					 int64_t timeout_ns);

/* True if @a and @b share a context and @a has the later seqno. */
GVM_API bool gvm_fence_is_later(const struct gvm_fence *a,
				const struct gvm_fence *b);

/* Name of the fence's producer ("software" for plain fences). */
GVM_API const char *gvm_fence_producer(const struct gvm_fence *fence);

/* ---- fence arrays --------------------------------------------------------- */

/*
 * Creates a fence that signals when all @n fences have signalled, carrying the
 * first error (in time) any of them signalled with.  Takes its own references
 * to the members; n == 0 gives a fence that is already signalled.  Member
 * callbacks are installed only when somebody waits on the array (on demand).
 * Returns 0, -EINVAL (NULL member), -ENOMEM.
 */
GVM_API int gvm_fence_array_create(struct gvm_fence *const *fences,
				   unsigned int n, uint64_t context,
				   uint64_t seqno, struct gvm_fence **out);

/* True if @fence was made by gvm_fence_array_create(). */
GVM_API bool gvm_fence_is_array(const struct gvm_fence *fence);

/* ---- timelines --------------------------------------------------------- */

/*
 * A timeline is a fence producer with one context whose fences signal strictly
 * in seqno order: gvm_timeline_signal(tl, s) signals every pending fence with
 * seqno <= s, oldest first, and from then on gvm_fence_is_signaled() is true
 * for all of them (a later seqno implies the earlier ones, whatever other
 * threads are signalling).  Callbacks of one call run oldest first; those of
 * concurrent or nested calls may interleave.
 *
 * Locking: internal, and thread-safe.  Every timeline function may be called
 * from a fence callback, including one of the same timeline's fences.
 */
struct gvm_timeline;

GVM_API int gvm_timeline_create(const char *name, struct gvm_timeline **out);

/*
 * Signals every pending fence with -ECANCELED, then drops the creator's
 * reference.  Fences still referenced stay valid, and keep @tl allocated:
 * until the last of them goes, the functions below still work on @tl and
 * gvm_timeline_fence_create() / gvm_timeline_signal() return -ENODEV.
 */
GVM_API void gvm_timeline_destroy(struct gvm_timeline *tl);

/*
 * Creates the timeline's next fence (seqno = previous + 1, starting at 1).
 * Returns 0, -EINVAL, -ENOMEM, -ENODEV (destroyed).
 */
GVM_API int gvm_timeline_fence_create(struct gvm_timeline *tl,
				      struct gvm_fence **out);

/*
 * Signals all pending fences up to and including @seqno; the fence with
 * exactly @seqno gets @error (0 or -errno), earlier ones none.  Returns 0,
 * -EINVAL if @seqno was never handed out or is not after the last signalled
 * one, -ENODEV (destroyed).
 */
GVM_API int gvm_timeline_signal(struct gvm_timeline *tl, uint64_t seqno,
				int error);

/* The highest seqno signalled so far (0 before the first). */
GVM_API uint64_t gvm_timeline_signaled_seqno(struct gvm_timeline *tl);

GVM_API uint64_t gvm_timeline_context(const struct gvm_timeline *tl);

GVM_END_DECLS

#endif
