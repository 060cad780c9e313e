// SPDX-License-Identifier: MIT
/*
 * Syncs: what binds and execs wait for and signal.
 *
 *  - wait syncs: a fence, or a syncobj's current fence;
 *  - signal syncs: *out receives the operation's fence, a syncobj's fence is
 *    replaced by it, a user fence's 64-bit value is stored to its address
 *    when the operation's fence signals (from the fence callback).
 *
 * User fences are written with a release store and then every waiter in
 * gvm_user_fence_wait() is woken through one process-wide futex word (a
 * sequence bumped on every write): waiters recheck their own address.
 *
 * A user fence's address is the caller's memory, which may stop being
 * writable (mprotect, munmap): a store there would kill the process from
 * a library thread.  So the address is probed (gvm__user_writable) when the
 * bind or exec is submitted (-EFAULT) and again just before the store; a
 * fence whose probe fails is not stored but recorded in ufence_bad[], where
 * gvm_user_fence_wait() finds it (-EFAULT).  The probe and the store are
 * two steps: an mprotect racing exactly between them still faults, which
 * the contract (writable until completion, vm.h) rules out.
 *
 * The address may also be in memory SVM moved to device memory: the probe
 * fails there without waiting (the page must come back first, through
 * the mm's event thread).  At submission the caller holds no lock, so the
 * page is brought back there (gvm__mm_populate_write).  At completion the
 * callback runs under a fence lock, on a thread the migration back may
 * need (an engine acknowledging its TLB invalidation), so it must not
 * wait: a fence whose probe fails is handed to the writer, a thread that
 * holds nothing, brings the page back and stores (or records it bad).  A
 * waiter in gvm_user_fence_wait() holds no lock either: when its read
 * fails it brings the page back the same way and reads again, so a fence
 * that shares a page with data SVM migrated is waited for, not -EFAULT.
 *
 * On a VM of a model mm, a user fence may be in the model's memory (an
 * address of the model's range, which must be mapped writable at
 * submission, else -EFAULT): the callback
 * always hands it to the writer, which stores through the model
 * (gvm__mm_access: the model's map_lock, perhaps a fault-back), and
 * gvm_user_fence_wait_mm() reads it through the model.
 *
 * The writer runs while a user fence or a VM that had one lives; it is
 * started at submission, never from a fence callback (see "The writer"
 * below).  In deterministic mode it is a thread of the run, scheduled
 * like the others, and it is gone once the run's VMs are.
 *
 * Locking: a syncobj's fence pointer is protected by its leaf lock.  User
 * fences are written from fence callbacks (under the fence's lock): only
 * atomics, a futex wake and a hand-off to the writer (its leaf lock)
 * there.  The writer's list, users and state are protected by writer.lock
 * (a leaf).
 */
#include "vm/sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/list.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/vm.h"

struct gvm_syncobj {
	struct gvm_mutex lock;		/* leaf: fence */
	struct gvm_fence *fence;	/* reference, or NULL */
};

static uint32_t ufence_seq;		/* futex word, bumped per write */

/*
 * Addresses of the latest user fences that could not be written (atomic
 * pointers, NULL = free; the oldest is overwritten when full).  An entry
 * is cleared when a user fence at that address is submitted again.
 */
#define NR_UFENCE_BAD 16u
static uint64_t *ufence_bad[NR_UFENCE_BAD];
static uint32_t ufence_bad_next;	/* atomic */

int gvm_syncobj_create(struct gvm_syncobj **out)
{
	struct gvm_syncobj *s;

	if (!out)
		return -EINVAL;
	s = gvm__calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	gvm__mutex_init(&s->lock, "syncobj.lock", GVM_RANK_LEAF);
	gvm__put_out(out, s);
	return 0;
}

void gvm_syncobj_destroy(struct gvm_syncobj *s)
{
	if (!s)
		return;
	if (s->fence)
		gvm_fence_put(s->fence);
	gvm__mutex_fini(&s->lock);
	gvm__free(s);
}

int gvm_syncobj_fence(struct gvm_syncobj *s, struct gvm_fence **out)
{
	struct gvm_fence *f;

	if (!s || !out)
		return -EINVAL;
	gvm__mutex_lock(&s->lock);
	f = s->fence ? gvm_fence_get(s->fence) : NULL;
	gvm__mutex_unlock(&s->lock);
	gvm__put_out(out, f);	/* after s->lock: application memory */
	return f ? 0 : -ENOENT;
}

int gvm_syncobj_wait(struct gvm_syncobj *s, int64_t timeout_ns)
{
	struct gvm_fence *f;
	int err = gvm_syncobj_fence(s, &f);

	if (err)
		return err;
	err = gvm_fence_wait(f, timeout_ns);
	if (!err)
		err = gvm_fence_get_status(f) < 0 ? gvm_fence_get_status(f) : 0;
	gvm_fence_put(f);
	return err;
}

static void syncobj_replace(struct gvm_syncobj *s, struct gvm_fence *f)
{
	struct gvm_fence *old;

	gvm__mutex_lock(&s->lock);
	old = s->fence;
	s->fence = gvm_fence_get(f);
	gvm__mutex_unlock(&s->lock);
	if (old)
		gvm_fence_put(old);
}

/* ---- user fences --------------------------------------------------------- */

static void writer_put(void);

struct gvm_ufence *gvm__ufence_get(struct gvm_ufence *uf)
{
	if (uf)
		gvm__ref_get(&uf->refcount);
	return uf;
}

void gvm__ufence_put(struct gvm_ufence *uf)
{
	if (!uf || !gvm__ref_put(&uf->refcount))
		return;
	if (uf->fence)
		gvm_fence_put(uf->fence);
	if (uf->mm)
		gvm_mm_put(uf->mm);
	gvm__free(uf);
	writer_put();
}

static bool ufence_is_bad(const uint64_t *addr)
{
	unsigned int i;

	for (i = 0; i < NR_UFENCE_BAD; i++)
		if (gvm_load_acquire(&ufence_bad[i]) == addr)
			return true;
	return false;
}

static void ufence_clear_bad(uint64_t *addr)
{
	unsigned int i;

	for (i = 0; i < NR_UFENCE_BAD; i++) {
		uint64_t *expected = addr;

		gvm_cmpxchg_acq_rel(&ufence_bad[i], &expected, NULL);
	}
}

/*
 * The end of user fence @uf: its value was stored (@ok), else its address
 * is recorded as bad; either way its waiters are woken.
 */
static void ufence_done(struct gvm_ufence *uf, bool ok)
{
	if (!ok) {
		uint32_t i = gvm_fetch_add_acq_rel(&ufence_bad_next, 1u);

		gvm_store_release(&ufence_bad[i % NR_UFENCE_BAD], uf->addr);
	}
	/* Written or given up: either way it no longer holds a VMA (-EBUSY). */
	gvm_store_release(&uf->written, 1u);
	gvm_fetch_add_acq_rel(&ufence_seq, 1u);
	gvm__futex_wake(&ufence_seq, 1 << 30);
}

/*
 * The writer: user fences that cannot be stored from the fence callback
 * (a page not writable at completion; model memory, written through the
 * model).  A thread (gvm__thread_create, so that the deterministic
 * scheduler runs it), running while it has users: every live user fence
 * and every VM that has had one (so that a loop of execs does not start
 * one per exec).  It is started by the first user (gvm__syncs_parse, with
 * no lock held), never from a fence callback: creating a thread makes
 * glibc allocate in the application's heap, whose pages SVM may have
 * moved, and a callback holds a fence lock, perhaps on an engine whose
 * TLB acknowledgement the CPU fault-back needs.  It exits, detached, once
 * it has no user and nothing to write, so a deterministic run (whose VMs
 * are gone at its end) ends with it.
 */
enum writer_state { WRITER_NONE, WRITER_STARTING, WRITER_RUNNING };

static struct {
	pthread_once_t once;
	struct gvm_mutex lock;		/* leaf: all below */
	pthread_cond_t cond;		/* work, no user, or state changed */
	struct gvm_list list;		/* gvm_ufence.writer_link */
	unsigned int users;
	uint8_t state;			/* enum writer_state */
} writer = { .once = PTHREAD_ONCE_INIT };

static void writer_init(void)
{
	gvm__mutex_init(&writer.lock, "ufence_writer.lock", GVM_RANK_LEAF);
	gvm__cond_init(&writer.cond);
	gvm_list_init(&writer.list);
}

/* Stores @uf's value with no lock held: 0 or -EFAULT. */
static int ufence_store_unlocked(struct gvm_ufence *uf)
{
	if (uf->mm)
		return gvm__mm_access(uf->mm, (uintptr_t)uf->addr, &uf->value,
				      sizeof(uf->value), true);
	if (gvm__mm_populate_write((uint64_t)(uintptr_t)uf->addr) ||
	    !gvm__user_writable(uf->addr))
		return -EFAULT;
	gvm_store_release(uf->addr, uf->value);
	return 0;
}

static void *writer_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct gvm_ufence *uf;

		gvm__mutex_lock(&writer.lock);
		while (gvm_list_empty(&writer.list) &&
		       (writer.users || writer.state == WRITER_STARTING))
			gvm__cond_wait(&writer.cond, &writer.lock);
		if (gvm_list_empty(&writer.list)) {
			writer.state = WRITER_NONE;
			gvm__cond_broadcast(&writer.cond);
			gvm__mutex_unlock(&writer.lock);
			return NULL;
		}
		uf = gvm_list_first_entry(&writer.list, struct gvm_ufence,
					  writer_link);
		gvm_list_del(&uf->writer_link);
		gvm__mutex_unlock(&writer.lock);

		ufence_done(uf, !ufence_store_unlocked(uf));
		gvm__ufence_put(uf);
	}
}

/*
 * A new user of the writer, started if none runs.  No lock held.  0, or
 * the thread creation's error (-EAGAIN...).
 */
static int writer_get(void)
{
	pthread_t t;
	int err = 0;

	pthread_once(&writer.once, writer_init);
	gvm__mutex_lock(&writer.lock);
	while (writer.state == WRITER_STARTING)
		gvm__cond_wait(&writer.cond, &writer.lock);
	if (writer.state == WRITER_NONE) {
		writer.state = WRITER_STARTING;
		gvm__mutex_unlock(&writer.lock);
		err = gvm__thread_create(&t, writer_main, NULL);
		if (!err)
			gvm__thread_detach(t);
		gvm__mutex_lock(&writer.lock);
		writer.state = err ? WRITER_NONE : WRITER_RUNNING;
		gvm__cond_broadcast(&writer.cond);
	}
	if (!err)
		writer.users++;
	gvm__mutex_unlock(&writer.lock);
	return err;
}

/* Any context (a fence callback too): a user is gone. */
static void writer_put(void)
{
	gvm__mutex_lock(&writer.lock);
	if (!--writer.users)
		gvm__cond_broadcast(&writer.cond);
	gvm__mutex_unlock(&writer.lock);
}

/* Hands @uf (and its reference) to the writer, which runs: @uf uses it. */
static void writer_queue(struct gvm_ufence *uf)
{
	gvm__mutex_lock(&writer.lock);
	gvm_list_add_tail(&uf->writer_link, &writer.list);
	gvm__cond_broadcast(&writer.cond);
	gvm__mutex_unlock(&writer.lock);
}

/* @vm has a user fence: it keeps the writer until it goes. */
static int writer_get_vm(struct gvm_vm *vm)
{
	int err;

	if (gvm_load_acquire(&vm->ufence_writer))
		return 0;
	err = writer_get();
	if (err)
		return err;
	if (__atomic_exchange_n(&vm->ufence_writer, 1u, __ATOMIC_ACQ_REL))
		writer_put();		/* another thread took the VM's */
	return 0;
}

void gvm__ufence_writer_put_vm(struct gvm_vm *vm)
{
	if (gvm_load_acquire(&vm->ufence_writer))
		writer_put();
}

static void ufence_cb(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct gvm_ufence *uf = gvm_container_of(cb, struct gvm_ufence, cb);

	(void)f;
	if (!uf->mm && gvm__user_writable(uf->addr)) {
		gvm_store_release(uf->addr, uf->value);
		ufence_done(uf, true);
		gvm__ufence_put(uf);	/* the callback's reference */
		return;
	}
	/* Not now: maybe in device memory, or model memory: the writer. */
	writer_queue(uf);
}

/*
 * Reads a user fence without faulting: in @mm's memory (a model mm's,
 * through the model) or the process's.  The waiter holds no lock, so a
 * page SVM moved to device memory is brought back first (as at
 * submission); -EFAULT if the fence was given up or is unreadable.
 */
static int ufence_read(struct gvm_mm *mm, const uint64_t *addr,
		       uint64_t *now)
{
	if (ufence_is_bad(addr))
		return -EFAULT;
	if (gvm__mm_owns(mm, (uintptr_t)addr))
		return gvm__mm_access(mm, (uintptr_t)addr, now, sizeof(*now),
				      false) ? -EFAULT : 0;
	if (!gvm__user_read64(addr, now))
		return 0;
	if (gvm__mm_populate_write((uintptr_t)addr) ||
	    gvm__user_read64(addr, now))
		return -EFAULT;
	return 0;
}

static int ufence_wait(struct gvm_mm *mm, const uint64_t *addr,
		       uint64_t value, int64_t timeout_ns)
{
	int64_t deadline = gvm__deadline(timeout_ns);

	if (!addr || ((uintptr_t)addr & 7))
		return -EINVAL;
	for (;;) {
		uint32_t seq = gvm_load_acquire(&ufence_seq);
		uint64_t now;
		int err;

		/* Read without faulting: the address may have become
		   unreadable (the store was then given up, or will be). */
		if (ufence_read(mm, addr, &now))
			return -EFAULT;
		if (now == value)
			return 0;
		err = gvm__futex_wait(&ufence_seq, seq, deadline);
		if (err == -ETIME) {
			if (ufence_read(mm, addr, &now))
				return -EFAULT;
			return now == value ? 0 : -ETIME;
		}
	}
}

int gvm_user_fence_wait(const uint64_t *addr, uint64_t value,
			int64_t timeout_ns)
{
	return ufence_wait(NULL, addr, value, timeout_ns);
}

int gvm_user_fence_wait_mm(struct gvm_mm *mm, uint64_t addr, uint64_t value,
			   int64_t timeout_ns)
{
	return ufence_wait(mm, (const uint64_t *)(uintptr_t)addr, value,
			   timeout_ns);
}

/* ---- sync arrays --------------------------------------------------------- */

/*
 * Is a user fence at @addr in @mm's own memory (a model mm's range, and
 * writable there: 0), or the process's (1)?  -EFAULT: in @mm's range but
 * not mapped writable.
 */
static int ufence_in_mm(struct gvm_mm *mm, uint64_t addr)
{
	struct gvm_mm_vma m;

	if (!gvm__mm_owns(mm, addr))
		return 1;
	if (gvm__mm_lookup(mm, addr, 0, &m) || !(m.prot & PROT_WRITE))
		return -EFAULT;
	return 0;
}

int gvm__syncs_parse(struct gvm_sync_set *set, struct gvm_vm *vm,
		     const struct gvm_sync *syncs, uint32_t n)
{
	struct gvm_mm *mm = vm->mm;
	uint32_t i;
	int err = -EINVAL;

	gvm__might_fault();	/* @syncs: read before any lock */
	set->in = NULL;
	set->uf = NULL;
	set->nr_in = 0;
	set->syncs = syncs;
	set->nr = n;
	set->ufence = NULL;
	if (n && !syncs)
		return -EINVAL;
	if (n) {
		set->in = gvm__calloc(n, sizeof(*set->in));
		set->uf = gvm__calloc(n, sizeof(*set->uf));
		if (!set->in || !set->uf) {
			gvm__free(set->in);
			gvm__free(set->uf);
			set->in = NULL;
			set->uf = NULL;
			return -ENOMEM;
		}
	}
	for (i = 0; i < n; i++) {
		const struct gvm_sync *s = &syncs[i];
		bool sig = s->flags & GVM_SYNC_SIGNAL;
		struct gvm_fence *f = NULL;
		struct gvm_ufence *uf;
		int own;

		if (s->flags & ~GVM_SYNC_SIGNAL)
			goto err;
		switch (s->type) {
		case GVM_SYNC_FENCE:
			if (sig ? !s->out : !s->fence)
				goto err;
			if (!sig)
				f = gvm_fence_get(s->fence);
			break;
		case GVM_SYNC_SYNCOBJ:
			if (!s->syncobj)
				goto err;
			if (!sig)
				gvm_syncobj_fence(s->syncobj, &f);
			break;
		case GVM_SYNC_USER_FENCE:
			if (!sig || !s->addr || ((uintptr_t)s->addr & 7))
				goto err;
			own = ufence_in_mm(mm, (uintptr_t)s->addr);
			/* No lock held: device-resident memory comes back. */
			if (own < 0 ||
			    (own && !gvm__user_writable(s->addr) &&
			     (gvm__mm_populate_write((uintptr_t)s->addr) ||
			      !gvm__user_writable(s->addr)))) {
				err = -EFAULT;
				goto err;
			}
			uf = gvm__calloc(1, sizeof(*uf));
			if (!uf) {
				err = -ENOMEM;
				goto err;
			}
			if (writer_get()) {
				gvm__free(uf);
				err = -EAGAIN;
				goto err;
			}
			gvm__ref_init(&uf->refcount);
			uf->addr = s->addr;
			uf->value = s->value;
			if (!own)
				uf->mm = gvm_mm_get(mm);
			set->uf[i] = uf;
			if (!set->ufence)
				set->ufence = uf;
			break;
		default:
			goto err;
		}
		if (f)
			set->in[set->nr_in++] = f;
	}
	if (set->ufence) {
		err = writer_get_vm(vm);
		if (err)
			goto err;
	}
	return 0;
err:
	gvm__syncs_fini(set);
	return err;
}

void gvm__syncs_fini(struct gvm_sync_set *set)
{
	uint32_t i;

	for (i = 0; i < set->nr_in; i++)
		gvm_fence_put(set->in[i]);
	for (i = 0; set->uf && i < set->nr; i++)
		gvm__ufence_put(set->uf[i]);
	gvm__free(set->in);
	gvm__free(set->uf);
	set->in = NULL;
	set->uf = NULL;
	set->nr_in = 0;
	set->ufence = NULL;
}

/* Stores a user fence's value once @done signals. */
static void ufence_arm(struct gvm_ufence *uf, struct gvm_fence *done)
{
	uf->fence = gvm_fence_get(done);
	gvm__ufence_get(uf);		/* for the callback */
	gvm_fence_add_callback(done, &uf->cb, ufence_cb);
}

void gvm__syncs_signal(struct gvm_sync_set *set, struct gvm_fence *done)
{
	uint32_t i;

	for (i = 0; i < set->nr; i++) {
		const struct gvm_sync *s = &set->syncs[i];

		if (!(s->flags & GVM_SYNC_SIGNAL))
			continue;
		switch (s->type) {
		case GVM_SYNC_FENCE:
			*s->out = gvm_fence_get(done);
			break;
		case GVM_SYNC_SYNCOBJ:
			syncobj_replace(s->syncobj, done);
			break;
		case GVM_SYNC_USER_FENCE:
			/* A new fence there: the old one's failure is
			   forgotten (not by a call that fails). */
			ufence_clear_bad(set->uf[i]->addr);
			ufence_arm(set->uf[i], done);
			break;
		}
	}
}
