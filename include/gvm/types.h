/* SPDX-License-Identifier: MIT */
/*
 * Basic types shared by every public gvm header.
 *
 * Conventions of the whole API:
 *  - every call that can fail returns 0 or a negative errno and changes
 *    nothing on failure; outputs come last;
 *  - fixed meanings: -EAGAIN a concurrent invalidation (retry), -EDEADLK lock
 *    contention (back off), -ENOSPC an allocator is full, -ETIME a wait timed
 *    out, -EINTR an interruptible wait saw a signal;
 *  - get/put are references, init/fini embedded objects, create/destroy
 *    allocated ones;
 *  - timeouts are in nanoseconds; a negative timeout waits forever, zero
 *    polls.
 *
 * Structures defined in public headers may be embedded by users (a device
 * backend embeds struct gvm_fence in its own fence, say); their fields are
 * documented but private: use the functions.
 */
#ifndef GVM_TYPES_H
#define GVM_TYPES_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define GVM_BEGIN_DECLS extern "C" {
#define GVM_END_DECLS }
#else
#define GVM_BEGIN_DECLS
#define GVM_END_DECLS
#endif

#define GVM_API __attribute__((visibility("default")))

/* Wait forever. */
#define GVM_TIMEOUT_INFINITE ((int64_t)-1)

/* The structure that embeds @ptr as its field @member. */
#define gvm_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* An intrusive doubly-linked list node / head (circular). */
struct gvm_list {
	struct gvm_list *next, *prev;
};

/*
 * A mutex that knows its name and lock rank.  In debug builds every
 * acquisition is checked against the documented lock order (docs/locking.md);
 * release builds only pay for the two extra words.
 */
struct gvm_mutex {
	pthread_mutex_t m;
	const char *name;
	unsigned int rank;
};

/* The largest PAT index (cache attributes) of a GPU mapping: 3 bits. */
#define GVM_PAT_MAX	7u

#endif
