// SPDX-License-Identifier: MIT
/*
 * gvm_mm_self(): the calling process's address space, watched through a
 * userfaultfd that the library owns.
 *
 * The kernel tells a userfaultfd's reader about changes to the mappings it
 * watches ("non-cooperative events").  A library thread reads them and turns
 * each into a notifier invalidation (mm/notifier.c):
 *
 *	event    raised by                              invalidates     when
 *	UNMAP    munmap, mmap(MAP_FIXED) over,          [start, end)    after
 *	         brk/mremap shrinking, mremap's move
 *	REMOVE   madvise(DONTNEED, DONTNEED_LOCKED,     [start, end)    before*
 *	         FREE, REMOVE)
 *	REMAP    mremap moving pages away               [from, +len)    after
 *	FORK     fork/clone without CLONE_VM            private VMAs    after
 *	                                                with notifiers
 *
 * The thread that causes an event sleeps in the kernel until our thread has
 * *read* the event (fs/userfaultfd.c: the event is completed in read(), not
 * when we are done with it).  "After" means the mapping change has been
 * made before the event is queued: munmap/mremap queue it once the mmap
 * lock is dropped, fork once the child exists (its pages already
 * write-protected for copy-on-write).  "Before*" means the pages are still
 * there while the event waits to be read, but the zap starts as soon as we
 * read it, so it runs concurrently with our invalidation.  Either way a
 * device may touch the old pages for a moment after the CPU change: the
 * simulated device reaches system memory through guarded accesses (a fault
 * becomes a GPU fault, DESIGN.md §4), and docs/mm.md lists the limits.
 * The test suite checks each row (tests/unit/test_mm.c).
 *
 * Fork: copy-on-write makes the parent's private pages shared with the
 * child and read-only until the next write, which gives the parent a new
 * page.  Linux invalidates mmu notifiers over the parent's COW ranges at
 * fork for that reason (a device mapping the old page would no longer see
 * the parent's writes).  We do the same, after the fact: on FORK we
 * invalidate every private (not MAP_SHARED) VMA that overlaps a notifier.
 * The event also hands us a userfaultfd for the child's copy of our
 * registrations; we close it, which drops the child's registrations.
 *
 * Registration is lazy and exact: gvm__mm_register() registers
 * [start, start + len) with UFFDIO_REGISTER_MODE_WP and never
 * write-protects anything, so no fault is ever reported (and with
 * UFFD_FEATURE_WP_ASYNC, Linux >= 6.7, none could be: write-protect faults
 * would be resolved by the kernel).  Ordinary page faults of registered
 * memory are never intercepted, and the events above are delivered for
 * every registered VMA whatever the mode.  WP_ASYNC also lets any kind of
 * mapping be registered (file mappings); without it only anonymous, shmem
 * and hugetlbfs memory can be.  The kernel splits VMAs at the range's ends,
 * so registration can add up to two VMAs per range (adjacent registered
 * pieces merge back).
 *
 * One object per process.  gvm_mm_self() creates it under self_lock and
 * returns it with a reference; the last gvm_mm_put() stops the thread
 * (eventfd), drops the registrations and closes the userfaultfd; only then
 * is the next gvm_mm_self() allowed to create a new one (a VMA can belong to
 * one userfaultfd only).  A fork() child must not keep the parent's
 * userfaultfd open: the pthread_atfork() child handler closes our
 * descriptors in the child and forgets the object (the child starts afresh).
 *
 * Flush: "a change the application made before a gvm call is applied
 * before that call acts" (mm.h).  The calls that raise events return only
 * once the event is read, so it is enough to know that every event read so
 * far has been processed.  The thread makes event_gen odd before each
 * read() and even again once the event is processed (or the read found
 * nothing); a flush that sees it even returns at once, one that sees it odd
 * waits until it moves:
 *
 *	application thread            event thread
 *	                              poll()
 *	                              event_gen = g (odd)    (seq_cst)
 *	munmap() ...... sleeps  <---- read(): UNMAP
 *	munmap() returns              stamp; invalidate (both passes)
 *	gvm_exec(): flush:            event_gen = g + 1 (even)
 *	  event_gen == g? wait        flush_waiters? futex wake
 *	  (futex, while == g)
 *	  event_gen != g: return
 *
 * Why it is exact: the odd store comes before read() in the thread, read()
 * before munmap's return (the kernel completes the event in read()), and
 * munmap's return before the flush's load, so the load sees g or a later
 * value; a later even value is stored only after the event read under g
 * was processed.  The events before g were processed before g was stored
 * (one at a time).  A flush waits for at most the one event in progress
 * when it looked, not for the queue to drain, so a stream of events cannot
 * starve it.  Lost wake-ups: the thread stores event_gen then loads
 * flush_waiters, a flush increments flush_waiters then loads event_gen, all
 * seq_cst, so at least one of them sees the other (and the futex rechecks
 * the value).  event_gen wraps after 2^31 events; a flush would have to
 * sleep through exactly that many to miss its wake-up.  The thread itself
 * never waits for a flush, and a flush called on it (from a notifier
 * callback) returns at once.
 *
 * Stamps (notifier.h): each read() is bracketed by stamp_begin/_end, and
 * an UNMAP, REMAP or FORK event, which reports a change that is complete,
 * gets a stamp: a notifier inserted after the read returned (over a new
 * mapping at the same address, say) is not hit by that event, whether or
 * not the inserter flushed.  A REMOVE event is read *before* the zap it
 * announces, which may run after such an insert, so it gets no stamp and
 * hits every notifier.
 *
 * Locking: self_lock (plain mutex, held across object creation and
 * teardown, and across fork(): prepare to parent/child) guards the
 * singleton; the event thread holds no
 * lock while invalidating (notifier callbacks take notifier_lock).  The
 * thread serialises events: a slow invalidation delays every later event,
 * and with it every thread waiting in munmap/madvise/mremap/fork.
 *
 * What it does not do: it cannot see mprotect, page migration, swap, KSM or
 * file truncation (no userfaultfd event exists for them); see docs/mm.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/debug.h"
#include "core/inject.h"
#include "core/lockrank.h"
#include "core/sync.h"
#include "core/thread.h"
#include "mm/mm.h"
#include "mm/uffd_compat.h"

/*
 * Events we cannot work without, and what we use when it is there.  FORK
 * is wanted but optional: the kernel grants it only with CAP_SYS_PTRACE
 * (UFFDIO_API fails with EPERM otherwise, although the probe lists it), and
 * without it the mm works except that a fork() is not seen (mm.h).
 */
#define SELF_NEEDED_FEATURES                                              \
	(UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |          \
	 UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_PAGEFAULT_FLAG_WP)
#define SELF_OPTIONAL_FEATURES                                            \
	(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_MOVE)

/*
 * ioctl() on a userfaultfd, an injection site (core/inject.h): an injected
 * failure looks like the kernel's (-1, errno set, nothing done).
 */
static int uffd_ioctl(int fd, unsigned long req, void *arg,
		      enum gvm_inject_site site)
{
	int err = gvm__inject(site);

	if (err) {
		errno = -err;
		return -1;
	}
	return ioctl(fd, req, arg);
}

bool gvm__mm_self_refuse_fork;

struct gvm_mm_self {
	struct gvm_mm base;
	pid_t pid;			/* constant: the owning process */
	int uffd;			/* constant; O_NONBLOCK, O_CLOEXEC */
	int stop_fd;			/* eventfd: the thread must exit */
	uint64_t features;		/* constant: granted by UFFDIO_API */
	pthread_t thread;
	struct gvm_mm_maps maps;	/* its own lock */
	void *sync_page;		/* constant: a registered page of ours */
	struct gvm_mutex sync_lock;	/* serialises gvm__mm_sync() */
	/* written by the event thread only, release; futex word: the
	   REMOVE events of sync_page processed (see sync below) */
	uint32_t sync_done;
	struct gvm_mm_self_stats stats;	/* atomic counters */
	/* written by the event thread only, seq_cst; futex word: odd while
	   it reads or processes an event (see Flush above) */
	uint32_t event_gen;
	uint32_t flush_waiters;		/* atomic, seq_cst */
	/* device-private emulation (devmem.c), if the kernel allows it */
	int stage_uffd;			/* constant: stages' userfaultfd, no
					   events; -1 without emulation */
	struct gvm_mutex stage_lock;	/* leaf: the two stage stacks */
	uint64_t *stage_empty, *stage_full; /* stage_lock: 2 MiB-aligned
					   stages with no page / with pages */
	size_t nr_empty, nr_full, nr_stages; /* stage_lock */
	size_t cap_empty, cap_full;	/* stage_lock */
	/* CPU faults the event thread could not resolve yet because an
	   event was pending (-EAGAIN): retried after each message read;
	   the event thread's alone */
	uint64_t *deferred;
	size_t nr_deferred, cap_deferred;
};

/* Set on the event thread of that mm: flushes there return at once. */
static _Thread_local const struct gvm_mm_self *event_thread_of;

void (*gvm__mm_self_before_event)(struct gvm_mm *mm, uint8_t uffd_event);
void (*gvm__mm_flush_before_wait)(struct gvm_mm *mm);

static pthread_mutex_t self_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t self_cond = PTHREAD_COND_INITIALIZER;
static struct gvm_mm_self *self_mm;	/* under self_lock */
static struct gvm_mm_self *self_abandoned; /* a fork child's stale copy */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static struct gvm_mm_self *to_self(struct gvm_mm *mm)
{
	return gvm_container_of(mm, struct gvm_mm_self, base);
}

static void stat_inc(uint64_t *c)
{
	gvm_fetch_add_relaxed(c, 1);
}

/* ---- the event thread ---------------------------------------------- */

static void cpu_fault(struct gvm_mm_self *s, uint64_t addr);
static bool ref_get_unless_zero(uint32_t *ref);
static void stages_fini(struct gvm_mm_self *s);

/*
 * What an event changes in the device data of its range, done as the
 * invalidation's change (after the passes, while readers still wait):
 * the device memory of pages that went away is freed, or follows them
 * to their new address, only once no device reaches it, and before any
 * fault can look the range up again.  Done after the invalidation, a
 * fault in between could map the device memory the change then frees.
 * A discard first takes the data out of the mm before the passes
 * (gvm__mm_devmem_discard_begin: nothing brings it back meanwhile, while
 * its memory stays allocated until the invalidation has ended); the
 * change drops what that could not hold.
 */
struct devmem_change {
	struct gvm_mm *mm;
	uint64_t start, len;
	uint64_t to;			/* REMAP: the new address */
	bool remap;
};

static int devmem_change(void *arg)
{
	const struct devmem_change *c = arg;

	if (c->remap)
		gvm__mm_devmem_remap(c->mm, c->start, c->to, c->len);
	else
		gvm__mm_devmem_discard(c->mm, c->start, c->len);
	return 0;
}

/* Invalidates [start, end) for @ev, then makes @change (NULL: none). */
static void invalidate(struct gvm_mm_self *s, uint64_t start, uint64_t end,
		       enum gvm_mm_event ev, uint64_t stamp,
		       struct devmem_change *change)
{
	struct gvm_notifier_range r = {
		.start = start,
		.last = end - 1,
		.event = ev,
		.stamp = stamp,
	};

	if (end <= start)
		return;
	stat_inc(&s->stats.invalidations);
	if (change)
		gvm__notifier_invalidate_change(&s->base, &r, devmem_change,
						change);
	else
		gvm__notifier_invalidate(&s->base, &r);
}

/* An event whose pages are gone (UNMAP, REMOVE): so is their device data. */
static void invalidate_discard(struct gvm_mm_self *s, uint64_t start,
			       uint64_t end, enum gvm_mm_event ev,
			       uint64_t stamp)
{
	struct devmem_change change = {
		.mm = &s->base, .start = start, .len = end - start,
	};
	struct gvm_mm_discard held;

	gvm__mm_devmem_discard_begin(change.mm, start, change.len, &held);
	invalidate(s, start, end, ev, stamp, &change);
	gvm__mm_devmem_discard_end(&held);
}

/*
 * After a fork: invalidate each private VMA that overlaps a notifier (the
 * parent's pages there became copy-on-write).  Walks only the VMAs next to
 * notifiers: find the next notifier, then the VMA at or after it.
 */
static void fork_invalidate(struct gvm_mm_self *s, uint64_t stamp)
{
	uint64_t addr = 0, ns, nl;

	while (gvm__notifier_find_first(&s->base, addr, UINT64_MAX, &ns, &nl)) {
		struct gvm_mm_vma v;
		uint64_t probe = ns > addr ? ns : addr;
		int err = gvm__mm_maps_lookup(&s->maps, probe,
					      GVM_MM_LOOKUP_NEXT, &v);

		if (err == -ENOENT)
			break;			/* no VMA above */
		if (err) {
			/* The VMAs are unknown from here: all of it. */
			invalidate(s, probe, UINT64_MAX, GVM_MM_EVENT_FORK,
				   stamp, NULL);
			break;
		}
		if (!(v.flags & GVM_MM_VMA_SHARED) &&
		    gvm__notifier_find_first(&s->base, v.start, v.end - 1,
					     NULL, NULL))
			invalidate(s, v.start, v.end, GVM_MM_EVENT_FORK,
				   stamp, NULL);
		if (v.end <= addr)
			break;		/* cannot happen: no progress */
		addr = v.end;
	}
}

/* The event reports a change that is complete (see Stamps). */
static bool event_complete(const struct uffd_msg *msg)
{
	return msg->event == UFFD_EVENT_UNMAP ||
	       msg->event == UFFD_EVENT_REMAP || msg->event == UFFD_EVENT_FORK;
}

/* gvm__mm_sync's own event: a REMOVE of exactly our sync page. */
static bool is_sync_event(const struct gvm_mm_self *s,
			  const struct uffd_msg *msg)
{
	return msg->arg.remove.start == (uintptr_t)s->sync_page &&
	       msg->arg.remove.end ==
		       (uintptr_t)s->sync_page + GVM_MM_PAGE_SIZE;
}

static void handle_event(struct gvm_mm_self *s, const struct uffd_msg *msg,
			 uint64_t stamp)
{
	void (*hook)(struct gvm_mm *, uint8_t);
	struct devmem_change change;

	hook = gvm_load_acquire(&gvm__mm_self_before_event);
	if (hook)
		hook(&s->base, msg->event);

	switch (msg->event) {
	case UFFD_EVENT_UNMAP:
		stat_inc(&s->stats.unmap);
		invalidate_discard(s, msg->arg.remove.start,
				   msg->arg.remove.end, GVM_MM_EVENT_UNMAP,
				   stamp);
		break;
	case UFFD_EVENT_REMOVE:
		stat_inc(&s->stats.remove);
		if (is_sync_event(s, msg)) {
			gvm_store_release(&s->sync_done, s->sync_done + 1);
			gvm__futex_wake(&s->sync_done, INT_MAX);
			break;
		}
		/* Discarded pages read as zeros: so does their device data,
		   from now on (an eviction or a fault-back during the
		   invalidation would bring the old data back). */
		invalidate_discard(s, msg->arg.remove.start,
				   msg->arg.remove.end, GVM_MM_EVENT_REMOVE, 0);
		break;
	case UFFD_EVENT_REMAP:
		stat_inc(&s->stats.remap);
		change = (struct devmem_change){
			.mm = &s->base, .start = msg->arg.remap.from,
			.len = msg->arg.remap.len, .to = msg->arg.remap.to,
			.remap = true };
		invalidate(s, msg->arg.remap.from,
			   msg->arg.remap.from + msg->arg.remap.len,
			   GVM_MM_EVENT_REMAP, stamp, &change);
		break;
	case UFFD_EVENT_FORK:
		stat_inc(&s->stats.fork);
		/* The child's copy of our registrations: drop it. */
		close((int)msg->arg.fork.ufd);
		fork_invalidate(s, stamp);
		break;
	case UFFD_EVENT_PAGEFAULT: {
		/*
		 * A write-protect fault cannot happen: nothing is ever
		 * write-protected.  Should it, clear the protection of that
		 * page, which wakes the faulting thread, rather than leave
		 * it hanging.
		 */
		struct uffdio_writeprotect wp = {
			.range = { .start = msg->arg.pagefault.address &
					    ~(GVM_MM_PAGE_SIZE - 1),
				   .len = GVM_MM_PAGE_SIZE },
			.mode = 0,
		};

		if (!(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
			stat_inc(&s->stats.cpu_faults);
			cpu_fault(s, msg->arg.pagefault.address);
			break;
		}
		if (gvm_fetch_add_relaxed(&s->stats.pagefault, 1) == 0)
			fprintf(stderr, "gvm: unexpected userfaultfd page fault "
					"at 0x%llx (resolved)\n",
				(unsigned long long)msg->arg.pagefault.address);
		if (ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp)) {
			struct uffdio_range r = wp.range;

			uffd_ioctl(s->uffd, UFFDIO_WAKE, &r,
				   GVM_INJECT_UFFD_WAKE);
		}
		break;
	}
	default:
		break;
	}
}

/* Before read(): from now on a flush waits for what we read (see Flush). */
static void event_busy(struct gvm_mm_self *s, uint32_t *gen)
{
	gvm_store_seq_cst(&s->event_gen, ++*gen);
}

/* The event read since event_busy(), if any, is processed. */
static void event_idle(struct gvm_mm_self *s, uint32_t *gen)
{
	gvm_store_seq_cst(&s->event_gen, ++*gen);
	if (gvm_load_seq_cst(&s->flush_waiters))
		gvm__futex_wake(&s->event_gen, INT_MAX);
}

/*
 * CPU faults deferred because an event was in the way (cpu_fault): one
 * more message was read since, which may have been it, or a moment
 * passed.  Each retry may defer again.
 */
static void retry_deferred(struct gvm_mm_self *s)
{
	size_t n = s->nr_deferred, i;

	s->nr_deferred = 0;
	for (i = 0; i < n; i++)
		cpu_fault(s, s->deferred[i]);
}

/*
 * poll() or read() of the userfaultfd failed with @err.  The thread goes
 * on (only stop_fd ends it): an event the kernel could not hand over (a
 * FORK whose descriptor could not be installed: EMFILE, ENOMEM) stays
 * queued, and every thread changing registered memory waits for it to be
 * read.  Said once per run of failures, retried every millisecond.
 */
static void event_error(const char *what, int err, bool *told)
{
	struct timespec ms = { 0, 1000000 };

	if (!*told)
		fprintf(stderr, "gvm: mm event thread: %s: %s (retrying)\n",
			what, strerror(err));
	*told = true;
	nanosleep(&ms, NULL);
}

static void *event_thread(void *arg)
{
	struct gvm_mm_self *s = arg;
	struct pollfd pfd[2] = {
		{ .fd = s->uffd, .events = POLLIN },
		{ .fd = s->stop_fd, .events = POLLIN },
	};
	uint32_t gen = gvm_load_relaxed(&s->event_gen);
	bool worked = false, told = false;
	int perr;

	event_thread_of = s;
	for (;;) {
		struct uffd_msg msg;
		ssize_t n;
		int ready = 0;

		/*
		 * Right after events, look for the next without sleeping for
		 * GVM_HANDOFF_SPIN_NS, as the engines do after a job: in a
		 * burst (a CPU reading device-resident pages one after
		 * another, each a fault-back) the next event is read without
		 * a wake-up of this thread.  Never when idle.
		 */
		if (worked && !s->nr_deferred) {
			int64_t until = gvm__now_ns() + GVM_HANDOFF_SPIN_NS;

			while (!(ready = poll(pfd, 2, 0)) &&
			       gvm__now_ns() < until)
				gvm_cpu_relax();
		}
		worked = false;
		/*
		 * A deferred fault waits for the thread that raised the
		 * event in its way to run once more after the read (the
		 * kernel clears its "changing" mark there): poll briefly.
		 */
		if (!ready)
			ready = poll(pfd, 2, s->nr_deferred ? 1 : -1);
		perr = ready < 0 ? errno : 0;
		if (s->nr_deferred)
			retry_deferred(s);
		if (ready <= 0) {
			if (ready < 0 && perr != EINTR) {
				event_error("poll", perr, &told);
				if (poll(&pfd[1], 1, 0) > 0)
					break;		/* stop */
			}
			continue;
		}
		if (pfd[1].revents)
			break;
		/* One event at a time: each is fully processed (both passes)
		   before the next one is read and its producer released. */
		for (;;) {
			uint64_t stamp;

			event_busy(s, &gen);
			gvm__notifier_stamp_begin(&s->base);
			n = read(s->uffd, &msg, sizeof(msg));
			stamp = gvm__notifier_stamp_end(&s->base,
					n == (ssize_t)sizeof(msg) &&
					event_complete(&msg));
			if (n == (ssize_t)sizeof(msg)) {
				handle_event(s, &msg, stamp);
				retry_deferred(s);
				worked = true;
				told = false;
			}
			event_idle(s, &gen);
			if (n < 0 && errno == EINTR)
				continue;
			if (n != (ssize_t)sizeof(msg))
				break;		/* EAGAIN: drained */
		}
		if (n < 0 && errno != EAGAIN)
			event_error("read", errno, &told);
	}
	return NULL;
}

/* ---- backend operations ------------------------------------------------ */

static int self_register(struct gvm_mm *mm, uint64_t start, uint64_t len,
			 bool missing)
{
	struct gvm_mm_self *s = to_self(mm);
	struct uffdio_register r = {
		.range = { .start = start, .len = len },
		.mode = UFFDIO_REGISTER_MODE_WP |
			(missing ? UFFDIO_REGISTER_MODE_MISSING : 0),
	};
	struct gvm_mm_vma v;
	int err;

	gvm_assert(gvm__lockrank_max_held() < GVM_RANK_RESV);
	if (!gvm__mm_range_ok(start, len))
		return -EINVAL;
	if (!uffd_ioctl(s->uffd, UFFDIO_REGISTER, &r,
			GVM_INJECT_UFFD_REGISTER))
		return 0;
	err = errno;
	switch (err) {
	case EBUSY:
	case ENOMEM:
		return -err;
	case EINVAL:
		/* Nothing mapped in the range: nothing to watch (fetch will
		   say -EFAULT).  Otherwise a kind we cannot register. */
		err = gvm__mm_maps_lookup(&s->maps, start, GVM_MM_LOOKUP_NEXT,
					  &v);
		if (err == -ENOENT || (!err && v.start >= start + len))
			return 0;
		return err ? err : -EOPNOTSUPP;
	default:
		return -err;
	}
}

/*
 * The kernel keeps the modes of a VMA registered again with fewer (it
 * skips a VMA whose modes include those asked), so MISSING goes only with
 * an unregistration: then a CPU (or simulated GPU) access to an absent
 * page of memory that was once device-resident faults as usual instead of
 * waiting for the event thread, which may itself be waiting for that GPU
 * (an invalidation's TLB acknowledgement).  No event of the range is
 * delivered between the two calls; that is harmless here, inside the
 * migration's invalidation: no device maps the range, no fetch can begin,
 * and every fetch registers its range before it maps it.
 */
static int self_unmiss(struct gvm_mm *mm, uint64_t start, uint64_t len)
{
	struct gvm_mm_self *s = to_self(mm);
	struct uffdio_range r = { .start = start, .len = len };

	if (!gvm__mm_range_ok(start, len))
		return -EINVAL;
	(void)ioctl(s->uffd, UFFDIO_UNREGISTER, &r);	/* failed: as before */
	return self_register(mm, start, len, false);
}

static int self_lookup(struct gvm_mm *mm, uint64_t addr, unsigned int flags,
		       struct gvm_mm_vma *out)
{
	return gvm__mm_maps_lookup(&to_self(mm)->maps, addr, flags, out);
}

static int self_fetch(struct gvm_mm *mm, uint64_t start, uint64_t len,
		      bool write, struct gvm_mm_extent **ext, size_t *nr)
{
	return gvm__mm_fetch_self(&to_self(mm)->maps, start, len, write, ext,
				  nr);
}

/*
 * sync: a REMOVE event of our own goes through the same queue as every
 * other event, after all those already queued; the event thread counts it
 * in sync_done once it has processed it, and so everything before it.  The
 * page is ours (s->sync_page, registered at creation), so no user notifier
 * needs to see these events: the thread recognises them by their range
 * and invalidates nothing.
 *
 * Not a notifier on the page (an earlier design): an insert made while
 * another thread runs an invalidation (a migration's) is deferred until
 * that invalidation ends, so the event could be processed before the
 * marker was in the tree, and the sync waited forever (seen under TSan in
 * `gvm run svm-multi`: two fault threads, one migrating, one registering).
 * sync_lock makes the syncs one at a time, so each waits for the count
 * to pass the value it saw before its madvise.
 */
static int self_sync(struct gvm_mm *mm)
{
	struct gvm_mm_self *s = to_self(mm);
	uint32_t seen;
	int err = 0;

	gvm_might_block();
	gvm__mutex_lock(&s->sync_lock);
	seen = gvm_load_acquire(&s->sync_done);
	if (madvise(s->sync_page, GVM_MM_PAGE_SIZE, MADV_DONTNEED))
		err = -errno;
	else
		while (gvm_load_acquire(&s->sync_done) == seen)
			gvm__futex_wait(&s->sync_done, seen, -1);
	gvm__mutex_unlock(&s->sync_lock);
	return err;
}

/* The event thread is busy with generation @gen (odd): wait for it. */
static __attribute__((noinline)) int flush_wait(struct gvm_mm_self *s,
						uint32_t gen)
{
	void (*hook)(struct gvm_mm *);

	if (event_thread_of == s)
		return 0;		/* a callback: see gvm__mm_flush */
	hook = gvm_load_acquire(&gvm__mm_flush_before_wait);
	if (hook)
		hook(&s->base);
	gvm_fetch_add_seq_cst(&s->flush_waiters, 1u);
	while (gvm_load_seq_cst(&s->event_gen) == gen)
		gvm__futex_wait(&s->event_gen, gen, -1);
	gvm_fetch_sub_release(&s->flush_waiters, 1u);
	return 0;
}

static int self_flush(struct gvm_mm *mm)
{
	struct gvm_mm_self *s = to_self(mm);
	uint32_t gen;

	gvm_assert(event_thread_of == s || gvm__lockrank_max_held() == 0);
	gen = gvm_load_seq_cst(&s->event_gen);
	if (!(gen & 1))
		return 0;		/* idle: every event read is processed */
	return flush_wait(s, gen);
}

/*
 * Unregisters every VMA registered with our userfaultfd.  A kernel
 * without the ownership check in UFFDIO_UNREGISTER (recent ones refuse
 * with EINVAL) would drop another userfaultfd's registration, so each VMA
 * is asked first: registering it again (WP, which every one of
 * ours has) is a no-op if it is ours and -EBUSY if another's.  One that
 * was not registered at all becomes ours for a moment.  Errors ignored.
 */
static void unregister_all(struct gvm_mm_self *s)
{
	uint64_t addr = 0;
	struct gvm_mm_vma v;

	while (!gvm__mm_maps_lookup(&s->maps, addr, GVM_MM_LOOKUP_NEXT, &v) &&
	       v.end > addr) {
		struct uffdio_register r = {
			.range = { .start = v.start, .len = v.end - v.start },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};

		if (!ioctl(s->uffd, UFFDIO_REGISTER, &r))
			ioctl(s->uffd, UFFDIO_UNREGISTER, &r.range);
		addr = v.end;
	}
}

static void self_destroy(struct gvm_mm *mm)
{
	struct gvm_mm_self *s = to_self(mm);
	uint64_t one = 1;

	GVM_WARN_ON(gvm__notifier_count(mm) != 0);
	/* Device-resident data back where the process can read it. */
	gvm__mm_migrate_to_ram(mm, 0, -GVM_MM_PAGE_SIZE);
	/* While the thread still reads: its UNMAP event must be consumed. */
	munmap(s->sync_page, GVM_MM_PAGE_SIZE);
	/*
	 * Should another process still hold the userfaultfd (a child made
	 * without fork(), which runs no atfork handler), closing ours would
	 * not release it, and its VMAs would keep raising events nobody
	 * reads.  Unregistering first makes that harmless.
	 */
	unregister_all(s);
	if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
		GVM_WARN_ON(1);
	gvm__os_thread_join(s->thread);
	close(s->uffd);
	close(s->stop_fd);
	gvm__mm_maps_fini(&s->maps);
	gvm__mutex_fini(&s->sync_lock);
	gvm__mm_fini(mm);
	stages_fini(s);

	gvm__stack_check();
	pthread_mutex_lock(&self_lock);
	if (self_mm == s)
		self_mm = NULL;
	pthread_cond_broadcast(&self_cond);
	pthread_mutex_unlock(&self_lock);
	gvm__free(s);
}

/* ---- device-private emulation (mm.h, devmem.c) -------------------------- */

/*
 * Stages are 2 MiB-aligned areas of our own, registered with a second
 * userfaultfd that asks for no event (stage_uffd), because UFFDIO_MOVE
 * needs its destination registered and a stage must be emptied
 * (MADV_DONTNEED) without raising an event our thread must read: a
 * migration running on the event thread itself would wait for it.
 *
 *	take:  UFFDIO_MOVE  CPU range -> empty stage   (on stage_uffd)
 *	give:  UFFDIO_MOVE  stage -> CPU range         (on uffd: the CPU
 *	       range is ours; the move wakes the threads faulting there)
 *	       or, for a page whose mapping mprotect or mlock made unlike
 *	       the stage's (UFFDIO_MOVE refuses it), UFFDIO_COPY
 *	give_copy: UFFDIO_COPY  any address of ours (the VRAM window) ->
 *	       CPU range (on uffd; no stage; wakes as well)
 *
 * Moving pages costs no copy and no page fault; the pages a take brought
 * into a stage stay there after the copy to device memory (a "full"
 * stage, up to STAGE_POOL of them, 32 MiB), so the copy back of the next
 * give writes into allocated pages.  UFFDIO_MOVE refuses a page shared
 * with another process (-EBUSY, after fork()) and mlocked memory
 * (-EINVAL): such ranges stay in system memory.
 *
 * HUGE PAGES.  Stages are MADV_HUGEPAGE: UFFDIO_MOVE moves a PMD-mapped
 * huge page whole (one entry) only into an aligned, empty, huge-page-able
 * destination, and splits it otherwise (~2 ms for 2 MiB here).  So a
 * take of a huge page stays one page (take's *huge, from PAGEMAP_SCAN),
 * and the way back of such a range fills an empty stage by CPU copy (the
 * first write faults in one huge page) and moves it whole into the CPU
 * mapping: the CPU then reaches its 2 MiB through one new entry, where
 * 512 new PTEs cost ~3 ms of first accesses under shadow paging
 * (docs/performance.md, migrate_2m).  Into a mapping that takes no huge
 * pages the kernel splits the page: still correct.
 */
#define STAGE_SIZE GVM_MM_STAGE_MAX
#define STAGE_POOL 16
/*
 * TIDYING.  A take needs an empty stage.  Emptying a full one
 * (MADV_DONTNEED of the pages the last take moved in: 512 pages freed and
 * a TLB shootdown, ~65 µs for 2 MiB of 4 KiB pages here) was half of what
 * a 2 MiB migration spent besides its copy (svm_fault_2m_copy_share,
 * docs/performance.md).  So stage_tidy, which devmem.c calls while the
 * migration's copy runs, empties a full stage if fewer than STAGE_READY
 * are empty; and while fewer than STAGE_READY stages exist, a take that
 * finds no empty one gets a new stage rather than emptying the full one
 * itself, so that there is a second stage to tidy while the first is in
 * use.  A take still empties one itself when none is ready.
 */
#define STAGE_READY 2

/* Frees the pages in @stage (it is then EMPTY). */
static void stage_drop_pages(uint64_t stage)
{
	madvise((void *)(uintptr_t)stage, STAGE_SIZE, MADV_DONTNEED);
}

static int stage_new(struct gvm_mm_self *s, uint64_t *out)
{
	struct uffdio_register r = { .mode = UFFDIO_REGISTER_MODE_WP };
	uint8_t *a = gvm__mm_map_aligned(STAGE_SIZE, STAGE_SIZE, 0);
	int err;

	if (a == MAP_FAILED)
		return -ENOMEM;
	/* HUGE PAGES above; no THP support is no error */
	madvise(a, STAGE_SIZE, MADV_HUGEPAGE);
	r.range.start = (uintptr_t)a;
	r.range.len = STAGE_SIZE;
	if (uffd_ioctl(s->stage_uffd, UFFDIO_REGISTER, &r,
		       GVM_INJECT_UFFD_REGISTER)) {
		err = -errno;
		munmap(a, STAGE_SIZE);
		return err;
	}
	*out = (uintptr_t)a;
	return 0;
}

static int self_stage_get(struct gvm_mm *mm, enum gvm_mm_stage_kind kind,
			  uint64_t *stage)
{
	struct gvm_mm_self *s = to_self(mm);
	int err = 0;

	gvm__mutex_lock(&s->stage_lock);
	if (kind != GVM_MM_STAGE_EMPTY && s->nr_full) {
		*stage = s->stage_full[--s->nr_full];
		/* small pages, or a huge page where small ones are wanted
		   (a move would split it): emptied */
		if (gvm__mm_maps_huge(&s->maps, *stage, STAGE_SIZE) !=
		    (kind == GVM_MM_STAGE_HUGE))
			stage_drop_pages(*stage);
	} else if (s->nr_empty) {
		*stage = s->stage_empty[--s->nr_empty];
	} else if (s->nr_full && s->nr_stages >= STAGE_READY) {
		*stage = s->stage_full[--s->nr_full];
		stage_drop_pages(*stage);
	} else {
		/* Room on either stack, so that stage_put cannot fail. */
		err = GVM_GROW(s->stage_empty, s->cap_empty, s->nr_stages + 1);
		if (!err)
			err = GVM_GROW(s->stage_full, s->cap_full,
				       s->nr_stages + 1);
		if (!err)
			err = stage_new(s, stage);
		if (!err)
			s->nr_stages++;
	}
	gvm__mutex_unlock(&s->stage_lock);
	return err;
}

/* TIDYING above.  Called with devmem_lock, as the other stage ops. */
static void self_stage_tidy(struct gvm_mm *mm)
{
	struct gvm_mm_self *s = to_self(mm);
	uint64_t stage;

	gvm__mutex_lock(&s->stage_lock);
	if (!s->nr_full || s->nr_empty >= STAGE_READY) {
		gvm__mutex_unlock(&s->stage_lock);
		return;
	}
	stage = s->stage_full[--s->nr_full];
	gvm__mutex_unlock(&s->stage_lock);
	stage_drop_pages(stage);
	gvm__mutex_lock(&s->stage_lock);
	s->stage_empty[s->nr_empty++] = stage;	/* room: stage_get grew it */
	gvm__mutex_unlock(&s->stage_lock);
	stat_inc(&s->stats.stages_tidied);
}

static void self_stage_put(struct gvm_mm *mm, uint64_t stage, bool empty)
{
	struct gvm_mm_self *s = to_self(mm);

	gvm__mutex_lock(&s->stage_lock);
	if (!empty && s->nr_full < STAGE_POOL) {
		s->stage_full[s->nr_full++] = stage;
	} else {
		if (!empty)
			stage_drop_pages(stage);
		s->stage_empty[s->nr_empty++] = stage;
	}
	gvm__mutex_unlock(&s->stage_lock);
}

/* UFFDIO_MOVE on @fd; the bytes moved (maybe short), or -errno if none. */
static int64_t move(int fd, uint64_t dst, uint64_t src, uint64_t len)
{
	struct uffdio_move m = {
		.dst = dst,
		.src = src,
		.len = len,
		.mode = UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
	};

	if (!uffd_ioctl(fd, UFFDIO_MOVE, &m, GVM_INJECT_UFFD_MOVE))
		return (int64_t)len;
	return m.move > 0 ? m.move : (m.move < 0 ? m.move : -errno);
}

static int self_give(struct gvm_mm *mm, uint64_t start, uint64_t len,
		     uint64_t stage, uint64_t *done);

static int self_take(struct gvm_mm *mm, uint64_t start, uint64_t len,
		     uint64_t stage, bool *huge)
{
	struct gvm_mm_self *s = to_self(mm);
	int64_t n;

	*huge = false;
	/* The library's memory, or a stack running library code: it must
	   never fault (core/stack.c). */
	if (gvm__alloc_owns(start, len))
		return -EBUSY;
	n = move(s->stage_uffd, stage, start, len);
	if (n == (int64_t)len) {
		*huge = len == STAGE_SIZE &&
			gvm__mm_maps_huge(&s->maps, stage, len);
		return 0;
	}
	if (n > 0) {
		/* Part moved: put it back, as if nothing happened; if that
		   cannot be done now, the caller gives it back (mm.h). */
		uint64_t done;

		if (self_give(mm, start, (uint64_t)n, stage, &done))
			return -EINPROGRESS;
		n = -EBUSY;
	}
	return n == -EEXIST || n == -ENOENT ? -EBUSY : (int)n;
}

/* A give's error that means the page needs no giving: the CPU no longer
   maps it here (ENOENT), something is there already (EEXIST), the
   process is going (ESRCH). */
static bool give_skips(int err)
{
	return err == ENOENT || err == EEXIST || err == ESRCH;
}

/*
 * One page of a give that the bulk move refused: moved on its own, or,
 * if the move refuses (-EINVAL: UFFDIO_MOVE wants both sides alike, and
 * mprotect or mlock changed the CPU's side since the take, with no event;
 * -EBUSY, -ENOMEM and the like), copied (UFFDIO_COPY fills a missing page
 * of a registered anonymous mapping whatever its protection) and the
 * stage's page dropped, as a move would have left it.  0: given, or
 * skipped (give_skips); -EAGAIN: an event is pending (nothing done);
 * another -errno: neither worked, the page is not given (the caller
 * poisons it: never a zero page where data was).
 */
static int give_page(struct gvm_mm_self *s, uint64_t dst, uint64_t src)
{
	struct uffdio_copy c = {
		.dst = dst,
		.src = src,
		.len = GVM_MM_PAGE_SIZE,
		.mode = UFFDIO_COPY_MODE_DONTWAKE,
	};
	int64_t n = move(s->uffd, dst, src, GVM_MM_PAGE_SIZE);

	if (n > 0 || n == -EAGAIN)
		return n > 0 ? 0 : -EAGAIN;
	if (give_skips((int)-n))
		return 0;
	if (uffd_ioctl(s->uffd, UFFDIO_COPY, &c, GVM_INJECT_UFFD_COPY)) {
		if (errno == EAGAIN)
			return -EAGAIN;
		return give_skips(errno) ? 0 : -errno;
	}
	madvise((void *)(uintptr_t)src, GVM_MM_PAGE_SIZE, MADV_DONTNEED);
	return 0;
}

/*
 * While an event is queued and not read (munmap, madvise, mremap in
 * another thread), the kernel refuses moves and copies into the
 * userfaultfd's ranges with EAGAIN: the give stops there and says how
 * far it got (mm.h); the caller retries once the event is read.
 */
static int self_give(struct gvm_mm *mm, uint64_t start, uint64_t len,
		     uint64_t stage, uint64_t *done)
{
	struct gvm_mm_self *s = to_self(mm);
	struct uffdio_range r = { .start = start, .len = len };
	uint64_t off = 0;
	int err = 0;

	/*
	 * Page by page after a failure (give_page), then in bulk again.
	 * Then wake whoever still waits in what was given: copies do not.
	 */
	while (off < len) {
		int64_t n = move(s->uffd, start + off, stage + off, len - off);

		if (n == (int64_t)(len - off)) {
			if (!off) {
				*done = len;
				return 0;
			}
			off = len;
			break;
		}
		if (n > 0) {
			off += (uint64_t)n;
			continue;
		}
		err = n == -EAGAIN ? -EAGAIN :
				     give_page(s, start + off, stage + off);
		if (err)
			break;
		off += GVM_MM_PAGE_SIZE;
	}
	*done = off;
	r.len = off;
	if (off)
		uffd_ioctl(s->uffd, UFFDIO_WAKE, &r, GVM_INJECT_UFFD_WAKE);
	return err;
}

/* UFFDIO_COPY on @fd: the bytes copied (maybe short), or -errno if none. */
static int64_t copy_in(int fd, uint64_t dst, uint64_t src, uint64_t len)
{
	struct uffdio_copy c = { .dst = dst, .src = src, .len = len };

	if (!uffd_ioctl(fd, UFFDIO_COPY, &c, GVM_INJECT_UFFD_COPY))
		return (int64_t)len;
	return c.copy > 0 ? c.copy : (c.copy < 0 ? c.copy : -errno);
}

static int self_give_copy(struct gvm_mm *mm, uint64_t start, uint64_t len,
			  uint64_t src, uint64_t *done)
{
	struct gvm_mm_self *s = to_self(mm);
	struct uffdio_range r = { .start = start, .len = len };
	uint64_t off = 0;
	int err = 0;

	/*
	 * Like give: page by page after a failure.  A page that is present
	 * (-EEXIST) or no longer ours (-ENOENT, -ESRCH) is skipped; a page
	 * the kernel could not allocate (-ENOMEM) or read (-EFAULT), or any
	 * page while an event is pending (-EAGAIN), is an error: the caller
	 * brings the rest back another way.  Only what was filled is woken.
	 */
	while (off < len) {
		int64_t n = copy_in(s->uffd, start + off, src + off, len - off);

		if (n == (int64_t)(len - off)) {
			if (!off) {
				*done = len;
				return 0;	/* one copy, which woke */
			}
			off = len;
			break;
		}
		if (n > 0) {
			off += (uint64_t)n;
			continue;
		}
		/* One page on its own: a run over two VMAs fails whole. */
		if (len - off > GVM_MM_PAGE_SIZE)
			n = copy_in(s->uffd, start + off, src + off,
				    GVM_MM_PAGE_SIZE);
		if (n < 0 && n != -EEXIST && n != -ENOENT && n != -ESRCH) {
			err = (int)n;
			break;
		}
		off += GVM_MM_PAGE_SIZE;
	}
	*done = off;
	r.len = off;
	if (off)
		uffd_ioctl(s->uffd, UFFDIO_WAKE, &r, GVM_INJECT_UFFD_WAKE);
	return err;
}

static int self_poison(struct gvm_mm *mm, uint64_t start, uint64_t len)
{
	struct gvm_mm_self *s = to_self(mm);
	struct uffdio_poison p = { .range = { .start = start, .len = len } };
	struct uffdio_zeropage z = { .range = p.range };

	if (!ioctl(s->uffd, UFFDIO_POISON, &p))
		return 0;
	/* A kernel before 6.6: zeros, said loudly (devmem.c's message). */
	ioctl(s->uffd, UFFDIO_ZEROPAGE, &z);
	return -EOPNOTSUPP;
}

/*
 * A CPU thread touched an absent page of a range registered missing.  If
 * an event is pending (-EAGAIN: the kernel fills no page until it is
 * read), the fault waits, its thread not woken, and is retried after the
 * next message: a woken thread would fault again at once, and the kernel
 * hands out faults before events, so the event would never be read.
 */
/*
 * Not device-resident (its data was discarded): a fresh zero page, as for
 * any first touch.  Under devmem_lock (gvm__mm_devmem_fault), so that no
 * migration takes the range between the lookup and the fill: a zero page
 * filled after one did would stand for the data it moved, which the
 * give back then skips (review finding: GPU writes lost).  0 also when
 * the page is there meanwhile (or gone): the thread faults again if it
 * must.
 */
static int zero_page(struct gvm_mm *mm, uint64_t page)
{
	struct uffdio_zeropage z = {
		.range = { .start = page, .len = GVM_MM_PAGE_SIZE },
	};

	if (!uffd_ioctl(to_self(mm)->uffd, UFFDIO_ZEROPAGE, &z,
			GVM_INJECT_UFFD_COPY))
		return 0;		/* it also woke the thread */
	if (errno == EAGAIN)
		return -EAGAIN;
	/* There meanwhile, or gone: let it fault again. */
	uffd_ioctl(to_self(mm)->uffd, UFFDIO_WAKE, &z.range,
		   GVM_INJECT_UFFD_WAKE);
	return 0;
}

static void cpu_fault(struct gvm_mm_self *s, uint64_t addr)
{
	struct uffdio_zeropage z = {
		.range = { .start = addr & ~(GVM_MM_PAGE_SIZE - 1),
			   .len = GVM_MM_PAGE_SIZE },
	};
	int err;

	err = gvm__mm_devmem_fault(&s->base, z.range.start, zero_page);
	if (!err)
		return;
	if (err == -EAGAIN &&
	    !GVM_GROW(s->deferred, s->cap_deferred, s->nr_deferred + 1)) {
		stat_inc(&s->stats.cpu_faults_deferred);
		s->deferred[s->nr_deferred++] = z.range.start;
		return;
	}
	/* Resolved meanwhile, or not now: let it fault again. */
	uffd_ioctl(s->uffd, UFFDIO_WAKE, &z.range, GVM_INJECT_UFFD_WAKE);
}

static void stages_fini(struct gvm_mm_self *s)
{
	size_t i;

	for (i = 0; i < s->nr_empty; i++)
		munmap((void *)(uintptr_t)s->stage_empty[i], STAGE_SIZE);
	for (i = 0; i < s->nr_full; i++)
		munmap((void *)(uintptr_t)s->stage_full[i], STAGE_SIZE);
	gvm__free(s->stage_empty);
	gvm__free(s->stage_full);
	gvm__free(s->deferred);
	if (s->stage_uffd >= 0)
		close(s->stage_uffd);
	gvm__mutex_fini(&s->stage_lock);
}

static const struct gvm_mm_ops self_ops = {
	.name = "self",
	.register_range = self_register,
	.unmiss = self_unmiss,
	.lookup = self_lookup,
	.fetch = self_fetch,
	.sync = self_sync,
	.flush = self_flush,
	.destroy = self_destroy,
	.stage_get = self_stage_get,
	.stage_put = self_stage_put,
	.take = self_take,
	.give = self_give,
	.give_copy = self_give_copy,
	.stage_tidy = self_stage_tidy,
	.poison = self_poison,
};

/* ---- creation ------------------------------------------------------------ */

static void nosys(const char *why)
{
	fprintf(stderr, "gvm: gvm_mm_self: %s\n", why);
}

/*
 * A userfaultfd from the system call, or /dev/userfaultfd; -errno.  One
 * that also handles faults the kernel takes on the process's behalf
 * (read(2) into a buffer, process_vm_readv, MADV_POPULATE_*) if allowed:
 * a device-resident page must fault back for those too.  Otherwise one
 * limited to user-mode faults (*@user_only; the events work the same),
 * which is what an unprivileged process gets with
 * vm.unprivileged_userfaultfd=0: then nothing is migrated to device
 * memory.
 */
static int open_uffd(bool *user_only)
{
	const int flags = O_CLOEXEC | O_NONBLOCK;
	int fd, dev, err;

	*user_only = false;
	fd = (int)syscall(__NR_userfaultfd, flags);
	if (fd >= 0)
		return fd;
	err = errno;
	if (err == ENOSYS) {
		nosys("this kernel has no userfaultfd (CONFIG_USERFAULTFD)");
		return -ENOSYS;
	}
	if (err != EPERM)
		return -err;
	/* Not allowed to use the system call: try the device (6.1). */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	fd = (int)syscall(__NR_userfaultfd, flags | UFFD_USER_MODE_ONLY);
	if (fd >= 0) {
		*user_only = true;
		return fd;
	}
	nosys("userfaultfd is not permitted for this process (needs "
	      "CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or access to "
	      "/dev/userfaultfd)");
	return -ENOSYS;
}

/* The features this kernel offers: UFFDIO_API on a throwaway descriptor. */
static int probe_features(uint64_t *avail)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	bool user_only;
	int fd = open_uffd(&user_only);

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int err = errno;

		close(fd);
		nosys("UFFDIO_API handshake failed");
		return err == EINVAL ? -ENOSYS : -err;
	}
	close(fd);
	*avail = api.features;
	return 0;
}

/* UFFDIO_API on @fd with @api's features; -errno (EPERM: see FORK above). */
static int api_handshake(int fd, struct uffdio_api *api)
{
	if ((api->features & UFFD_FEATURE_EVENT_FORK) &&
	    gvm_load_acquire(&gvm__mm_self_refuse_fork))
		return -EPERM;		/* as the kernel does without the cap */
	return ioctl(fd, UFFDIO_API, api) ? -errno : 0;
}

/* The stages' userfaultfd (see "device-private emulation"), or -1. */
static int open_stage_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MOVE };
	bool user_only;
	int fd = open_uffd(&user_only);

	if (fd < 0)
		return -1;
	if (ioctl(fd, UFFDIO_API, &api)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int self_create(struct gvm_mm_self **out)
{
	struct uffdio_api api = { .api = UFFD_API };
	sigset_t all, old;
	uint64_t avail = 0, want;
	struct gvm_mm_self *s;
	bool user_only;
	int err;

	err = probe_features(&avail);
	if (err)
		return err;
	if ((avail & SELF_NEEDED_FEATURES) != SELF_NEEDED_FEATURES) {
		fprintf(stderr,
			"gvm: gvm_mm_self: userfaultfd lacks needed features "
			"(have 0x%llx, missing 0x%llx: EVENT_UNMAP 0x%x, "
			"EVENT_REMOVE 0x%x, EVENT_REMAP 0x%x, "
			"write-protect mode 0x%x)\n",
			(unsigned long long)avail,
			(unsigned long long)(SELF_NEEDED_FEATURES & ~avail),
			UFFD_FEATURE_EVENT_UNMAP, UFFD_FEATURE_EVENT_REMOVE,
			UFFD_FEATURE_EVENT_REMAP,
			UFFD_FEATURE_PAGEFAULT_FLAG_WP);
		return -ENOSYS;
	}

	s = gvm__calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pid = getpid();
	s->stage_uffd = -1;
	gvm__mutex_init(&s->stage_lock, "mm_stage", GVM_RANK_LEAF);
	s->uffd = open_uffd(&user_only);
	if (s->uffd < 0) {
		err = s->uffd;
		goto err_free;
	}
	want = SELF_NEEDED_FEATURES | (avail & SELF_OPTIONAL_FEATURES);
	api.features = want;
	err = api_handshake(s->uffd, &api);
	if (err == -EPERM && (want & UFFD_FEATURE_EVENT_FORK)) {
		/* EVENT_FORK needs CAP_SYS_PTRACE: do without, on a new fd. */
		close(s->uffd);
		s->uffd = open_uffd(&user_only);
		if (s->uffd < 0) {
			err = s->uffd;
			goto err_free;
		}
		want &= ~(uint64_t)UFFD_FEATURE_EVENT_FORK;
		api.api = UFFD_API;
		api.features = want;
		err = api_handshake(s->uffd, &api);
		if (!err)
			fprintf(stderr, "gvm: gvm_mm_self: userfaultfd's "
				"EVENT_FORK needs CAP_SYS_PTRACE; going on "
				"without it (fork() is not tracked, see "
				"gvm/mm.h)\n");
	}
	if (err) {
		nosys("UFFDIO_API refused the features it offered");
		err = -ENOSYS;
		goto err_close_uffd;
	}
	/* api.features now lists everything available; we enabled @want. */
	s->features = want & api.features;
	if (!user_only && (s->features & UFFD_FEATURE_MOVE))
		s->stage_uffd = open_stage_uffd();
	s->base.devmem_ok = s->stage_uffd >= 0;
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		err = -errno;
		goto err_close_uffd;
	}
	err = gvm__mm_maps_init(&s->maps);
	if (err)
		goto err_close_stop;
	gvm__mm_init(&s->base, &self_ops);
	gvm__mutex_init(&s->sync_lock, "mm_sync", GVM_RANK_MM);
	s->sync_page = mmap(NULL, GVM_MM_PAGE_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->sync_page == MAP_FAILED) {
		err = -errno;
		goto err_fini;
	}
	err = self_register(&s->base, (uintptr_t)s->sync_page,
			    GVM_MM_PAGE_SIZE, false);
	if (err)
		goto err_unmap;

	/* The thread takes no signal of the application's. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	/*
	 * A plain thread even in deterministic mode (core/det.h): it sleeps
	 * in poll(), which no scheduler of ours can hand a token to.
	 */
	err = gvm__os_thread_create(&s->thread, event_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		goto err_unmap;
	*out = s;
	return 0;

err_unmap:
	/* Unregistered first: no thread reads the event of this munmap. */
	{
		struct uffdio_range r = { .start = (uintptr_t)s->sync_page,
					  .len = GVM_MM_PAGE_SIZE };

		ioctl(s->uffd, UFFDIO_UNREGISTER, &r);
	}
	munmap(s->sync_page, GVM_MM_PAGE_SIZE);
err_fini:
	gvm__mutex_fini(&s->sync_lock);
	gvm__mm_fini(&s->base);
	gvm__mm_maps_fini(&s->maps);
err_close_stop:
	close(s->stop_fd);
err_close_uffd:
	close(s->uffd);
err_free:
	stages_fini(s);
	gvm__free(s);
	return err;
}

/*
 * fork(): the child must not keep the parent's userfaultfd open, and must
 * find in its copy of the pages the data the parent has in device memory:
 * everything comes back to system memory first, and nothing migrates to
 * device memory until the fork is done (devmem.c).
 */
static struct gvm_mm_self *forking;	/* under self_lock */

static void atfork_prepare(void)
{
	gvm__stack_check();
	pthread_mutex_lock(&self_lock);
	forking = self_mm && ref_get_unless_zero(&self_mm->base.ref) ?
			  self_mm : NULL;
	if (forking)
		gvm__mm_devmem_fork_prepare(&forking->base);
}

static void atfork_parent(void)
{
	struct gvm_mm_self *s = forking;

	forking = NULL;
	if (s)
		gvm__mm_devmem_fork_done(&s->base);
	pthread_mutex_unlock(&self_lock);
	if (s)
		gvm_mm_put(&s->base);	/* may destroy: self_lock free */
}

static void atfork_child(void)
{
	struct gvm_mm_self *s = self_mm;

	if (s) {
		close(s->uffd);
		close(s->stop_fd);
		close(s->maps.fd);
		if (s->maps.pagemap_fd >= 0)
			close(s->maps.pagemap_fd);
		if (s->stage_uffd >= 0)
			close(s->stage_uffd);
		/* Its thread and users stayed in the parent: forget it,
		   but keep it reachable (it is not ours to free). */
		self_abandoned = s;
		self_mm = NULL;
	}
	pthread_mutex_unlock(&self_lock);
}

/* ---- write-protecting memory the library moves ------------------------ */

/*
 * One userfaultfd of the process write-protects shared memory gvm owns
 * while it moves what is behind it (a BO's CPU view, vm/move.c).  No
 * thread reads it: a store to a protected range sleeps in the kernel's
 * fault handler until gvm__mm_wp_end() wakes it, and then retries on
 * whatever is mapped there by then.  Opened on first use; again in a
 * forked child, where an inherited descriptor would act on the parent's
 * address space.  wp_lock (a leaf, plain mutex like self_lock) protects
 * wp_fd and wp_pid; the ioctls run outside it.
 */
static pthread_mutex_t wp_lock = PTHREAD_MUTEX_INITIALIZER;
static int wp_fd = -1;		/* -2: this kernel cannot */
static pid_t wp_pid;

static int wp_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	bool user_only;
	int fd;

	gvm__stack_check();
	pthread_mutex_lock(&wp_lock);
	if (wp_fd != -1 && wp_pid != getpid()) {
		if (wp_fd >= 0)
			close(wp_fd);	/* the parent's */
		wp_fd = -1;
	}
	if (wp_fd == -1) {
		wp_pid = getpid();
		wp_fd = open_uffd(&user_only);
		if (wp_fd >= 0 && ioctl(wp_fd, UFFDIO_API, &api)) {
			close(wp_fd);
			wp_fd = -2;
		}
		if (wp_fd < 0)
			wp_fd = -2;
	}
	fd = wp_fd;
	pthread_mutex_unlock(&wp_lock);
	return fd >= 0 ? fd : -EOPNOTSUPP;
}

int gvm__mm_wp_begin(void *addr, size_t len)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = {
		.range = reg.range,
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	int fd = wp_uffd(), err;

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_REGISTER, &reg))
		return -errno;
	if (!ioctl(fd, UFFDIO_WRITEPROTECT, &wp))
		return 0;
	err = -errno;
	ioctl(fd, UFFDIO_UNREGISTER, &reg.range);
	return err;
}

void gvm__mm_wp_end(void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };
	struct uffdio_writeprotect wp = { .range = r, .mode = 0 };
	int fd = wp_uffd();

	if (fd < 0)
		return;
	/* Still the protected mapping (the move failed): store away. */
	ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
	ioctl(fd, UFFDIO_UNREGISTER, &r);
	/* Stores that slept on a mapping since replaced: retry on the new. */
	ioctl(fd, UFFDIO_WAKE, &r);
}

/*
 * A thread registering its stack (core/stack.c), holding no library lock:
 * what SVM moved of it to device memory before comes back now, before the
 * thread can hold a lock the fault-back needs and touch it.
 */
static void stack_back(uint64_t lo, uint64_t len)
{
	struct gvm_mm_self *s;

	pthread_mutex_lock(&self_lock);
	s = self_mm && ref_get_unless_zero(&self_mm->base.ref) ? self_mm : NULL;
	pthread_mutex_unlock(&self_lock);
	if (!s)
		return;
	GVM_WARN_ON(gvm__mm_migrate_to_ram(&s->base, lo, len) < 0);
	gvm_mm_put(&s->base);
}

static void install_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	gvm__stack_set_bring_back(stack_back);
}

static bool ref_get_unless_zero(uint32_t *ref)
{
	uint32_t old = gvm_load_relaxed(ref);

	while (old) {
		if (__atomic_compare_exchange_n(ref, &old, old + 1, false,
						__ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return true;
	}
	return false;
}

GVM_API int gvm_mm_self(struct gvm_mm **out)
{
	struct gvm_mm_self *s;
	int err = 0;

	if (!out)
		return -EINVAL;
	pthread_once(&atfork_once, install_atfork);
	gvm__stack_check();
	pthread_mutex_lock(&self_lock);
	/* A dying one must be gone (its VMAs unregistered) first. */
	while ((s = self_mm) && !ref_get_unless_zero(&s->base.ref))
		pthread_cond_wait(&self_cond, &self_lock);
	if (!s) {
		err = self_create(&s);
		if (!err)
			self_mm = s;
	}
	pthread_mutex_unlock(&self_lock);
	if (!err)
		gvm__put_out(out, &s->base);
	return err;
}

/* ---- for tests ------------------------------------------------------------- */

void gvm__mm_self_stats(struct gvm_mm *mm, struct gvm_mm_self_stats *out)
{
	struct gvm_mm_self *s = to_self(mm);

	GVM_BUG_ON(mm->ops != &self_ops);
	out->unmap = gvm_load_relaxed(&s->stats.unmap);
	out->remove = gvm_load_relaxed(&s->stats.remove);
	out->remap = gvm_load_relaxed(&s->stats.remap);
	out->fork = gvm_load_relaxed(&s->stats.fork);
	out->pagefault = gvm_load_relaxed(&s->stats.pagefault);
	out->cpu_faults = gvm_load_relaxed(&s->stats.cpu_faults);
	out->cpu_faults_deferred =
		gvm_load_relaxed(&s->stats.cpu_faults_deferred);
	out->invalidations = gvm_load_relaxed(&s->stats.invalidations);
	out->stages_tidied = gvm_load_relaxed(&s->stats.stages_tidied);
}

uint64_t gvm__mm_self_features(struct gvm_mm *mm)
{
	return mm->ops == &self_ops ? to_self(mm)->features : 0;
}
