// SPDX-License-Identifier: MIT
/*
 * Userptr on real process memory, in the style of IGT's xe_exec_*
 * userptr / userptr-invalidate tests: the GPU maps ordinary mmap() memory,
 * the application unmaps, remaps, madvises and forks behind its back, and
 * the GPU's results must always match the CPU's view of memory.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "harness.h"
#include "mmhold.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "vm/bind.h"
#include "vm/vm.h"

#define K4 4096ull
#define VA 0x20000000ull

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static void setup(struct ctx *c)
{
	ASSERT_OK(gvm_mm_self(&c->mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &c->dev));
	ASSERT_OK(gvm_vm_create(c->dev, c->mm, 0, &c->vm));
	ASSERT_OK(gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
}

static void teardown(struct ctx *c)
{
	gvm_queue_destroy(c->q);
	ASSERT_OK(gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
	gvm_mm_put(c->mm);
}

static int bind_userptr(struct ctx *c, uint64_t va, void *cpu, uint64_t len,
			uint32_t flags)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .flags = flags,
				  .addr = va, .range = len,
				  .userptr = (uint64_t)(uintptr_t)cpu };

	return gvm_vm_bind(c->vm, NULL, &op, 1, NULL, 0);
}

static int run(struct ctx *c, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	int st = gvm_exec(c->q, k, &s, 1);

	if (st)
		return st;
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return st < 0 ? st : 0;
}

static int store(struct ctx *c, uint64_t va, uint64_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_store_dword(&k, va, v, 64));
	return run(c, &k);
}

static void *map_pages(size_t n)
{
	void *p = mmap(NULL, n * K4, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(p != MAP_FAILED);
	return p;
}

TEST(store_to_malloc_memory)
{
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(4);
	p[0] = 1;
	ASSERT_OK(bind_userptr(&c, VA, p, 4 * K4, 0));
	for (uint64_t i = 0; i < 4; i++)
		ASSERT_OK(store(&c, VA + i * K4 + 8, 100 + i));
	for (uint64_t i = 0; i < 4; i++)
		ASSERT_EQ(p[i * K4 / 8 + 1], 100 + i);
	ASSERT_EQ(p[0], 1);
	teardown(&c);
	munmap(p, 4 * K4);
}

TEST(bind_errors)
{
	struct ctx c;
	uint8_t *p, *ro;

	setup(&c);
	p = map_pages(4);
	munmap(p + 2 * K4, K4);			/* a hole */
	ASSERT_EQ(bind_userptr(&c, VA, p, 4 * K4, 0), -EFAULT);
	ASSERT_EQ(bind_userptr(&c, VA, p + 1, K4, 0), -EINVAL);
	ro = mmap(NULL, K4, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(ro != MAP_FAILED);
	ASSERT_EQ(bind_userptr(&c, VA, ro, K4, 0), -EPERM);
	ASSERT_OK(bind_userptr(&c, VA, ro, K4, GVM_BIND_READONLY));
	ASSERT_EQ(store(&c, VA, 1), -EIO);	/* read-only mapping */
	{
		struct gvm_vm_stats st;

		ASSERT_OK(gvm_vm_stats(c.vm, &st));
		ASSERT_EQ(st.vmas, 1);		/* the failed binds left none */
	}
	teardown(&c);
	munmap(p, 2 * K4);
	munmap(p + 3 * K4, K4);
	munmap(ro, K4);
}

TEST(munmap_invalidates)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(4);
	ASSERT_OK(bind_userptr(&c, VA, p, 4 * K4, 0));
	ASSERT_OK(store(&c, VA, 1));
	ASSERT_EQ(p[0], 1);
	munmap(p + K4 / 8 * 2, K4);		/* part of it */
	ASSERT_OK(gvm__mm_sync(c.mm));
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.userptr_invalidations, 1);
	/* The memory is gone: the mapping stays invalid, the GPU faults
	 * (the exec itself does not fail). */
	ASSERT_EQ(store(&c, VA, 2), -EIO);
	ASSERT_EQ(p[0], 1);
	/* Rebinding what is still mapped works (the piece left over the
	 * hole stays invalid). */
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(store(&c, VA + 8, 3));
	ASSERT_EQ(p[1], 3);
	teardown(&c);
	munmap(p, 2 * K4);
	munmap(p + 3 * K4 / 8, K4);
}

TEST(map_fixed_over_is_seen)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p, *q;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(store(&c, VA, 7));
	ASSERT_EQ(p[0], 7);
	q = mmap(p, 2 * K4, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_TRUE(q == p);
	ASSERT_EQ(p[0], 0);			/* new memory */
	ASSERT_OK(gvm__mm_sync(c.mm));
	/* The exec repins the new pages: the GPU writes what the CPU sees. */
	ASSERT_OK(store(&c, VA + 8, 8));
	ASSERT_EQ(p[1], 8);
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_GE(st.userptr_invalidations, 1);
	ASSERT_GE(st.userptr_repins, 1);
	teardown(&c);
	munmap(p, 2 * K4);
}

TEST(madvise_dontneed_is_seen)
{
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(store(&c, VA, 5));
	ASSERT_OK(madvise(p, 2 * K4, MADV_DONTNEED));
	ASSERT_EQ(p[0], 0);
	ASSERT_OK(gvm__mm_sync(c.mm));
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.userptr_invalidations, 1);
	ASSERT_OK(store(&c, VA + K4, 6));
	ASSERT_EQ(p[K4 / 8], 6);
	teardown(&c);
	munmap(p, 2 * K4);
}

TEST(mremap_part_is_seen)
{
	struct ctx c;
	uint64_t *p, *q;

	setup(&c);
	p = map_pages(4);
	ASSERT_OK(bind_userptr(&c, VA, p, 4 * K4, 0));
	ASSERT_OK(store(&c, VA, 1));
	q = mremap(p + 3 * K4 / 8, K4, K4, MREMAP_MAYMOVE | MREMAP_FIXED,
		   map_pages(1));
	ASSERT_TRUE(q != MAP_FAILED);
	ASSERT_OK(gvm__mm_sync(c.mm));
	/* The last page moved away: the mapping cannot be repinned. */
	ASSERT_EQ(store(&c, VA, 2), -EIO);
	ASSERT_EQ(p[0], 1);
	teardown(&c);
	munmap(p, 3 * K4);
	munmap(q, K4);
}

TEST(fork_parent_keeps_working)
{
	struct ctx c;
	uint64_t *p;
	pid_t pid;
	int status;

	setup(&c);
	p = map_pages(2);
	p[0] = 10;
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(store(&c, VA + 8, 11));
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		/* The child sees the memory as it was at fork. */
		_exit(p[0] == 10 && p[1] == 11 ? 0 : 1);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_OK(gvm__mm_sync(c.mm));
	ASSERT_OK(store(&c, VA + 16, 12));
	ASSERT_EQ(p[2], 12);
	p[3] = 13;				/* the CPU writes too */
	{
		struct gvm_kernel k;

		ASSERT_OK(gvm_kernel_copy(&k, VA + K4, VA, 64));
		ASSERT_OK(run(&c, &k));
	}
	ASSERT_EQ(p[K4 / 8 + 3], 13);
	teardown(&c);
	munmap(p, 2 * K4);
}

/* Several devices mirror the same memory: an invalidation reaches all. */
static void multi_device(int n)
{
	struct ctx c[4];
	uint64_t *p;

	p = map_pages(2);
	for (int i = 0; i < n; i++) {
		setup(&c[i]);
		ASSERT_OK(bind_userptr(&c[i], VA, p, 2 * K4, 0));
		ASSERT_OK(store(&c[i], VA + 8 * (uint64_t)i, 1 + (uint64_t)i));
	}
	for (int i = 0; i < n; i++)
		ASSERT_EQ(p[i], 1 + (uint64_t)i);
	ASSERT_OK(madvise(p, 2 * K4, MADV_DONTNEED));
	ASSERT_OK(gvm__mm_sync(c[0].mm));
	for (int i = 0; i < n; i++) {
		struct gvm_vm_stats st;

		ASSERT_OK(gvm_vm_stats(c[i].vm, &st));
		ASSERT_EQ(st.userptr_invalidations, 1);
	}
	ASSERT_EQ(p[0], 0);
	for (int i = 0; i < n; i++)
		ASSERT_OK(store(&c[i], VA + 64 + 8 * (uint64_t)i, 50 + (uint64_t)i));
	for (int i = 0; i < n; i++) {
		ASSERT_EQ(p[8 + i], 50 + (uint64_t)i);
		teardown(&c[i]);
	}
	munmap(p, 2 * K4);
}

TEST(two_devices)
{
	multi_device(2);
}

TEST(four_devices)
{
	multi_device(4);
}

/*
 * userptr-invalidate-race: kernels keep writing the userptr while the
 * application replaces its memory under them.  Every job either completes
 * or faults (-EIO, never a crash or a write into freed memory); once the
 * CPU side settles, the GPU writes what the CPU sees.
 */
struct race {
	struct ctx *c;
	uint64_t *p;
	int stop;
	int ok, faulted;
};

static void *race_gpu(void *arg)
{
	struct race *r = arg;
	struct gvm_kernel k;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		int st;

		ASSERT_OK(gvm_kernel_fill(&k, VA, 8 * K4, 0x77));
		st = run(r->c, &k);
		ASSERT_TRUE(st == 0 || st == -EIO);
		if (st)
			r->faulted++;
		else
			r->ok++;
	}
	return NULL;
}

TEST(invalidate_race_map_fixed)
{
	struct race r = { 0 };
	pthread_t t;
	struct ctx c;
	uint64_t *p;

	/*
	 * The simulated device reaches system memory through CPU virtual
	 * addresses, so a write in flight while the application maps new
	 * memory over the range is, to TSan, a race with mmap (a real device
	 * would DMA to the old physical pages).  The zap + TLB invalidation
	 * ordering is what this test checks; TSan cannot judge it.
	 */
	if (UNDER_TSAN) {
		printf("skipped under ThreadSanitizer\n");
		return;
	}
	setup(&c);
	p = map_pages(8);
	r.c = &c;
	r.p = p;
	ASSERT_OK(bind_userptr(&c, VA, p, 8 * K4, 0));
	ASSERT_OK(pthread_create(&t, NULL, race_gpu, &r));
	for (int i = 0; i < 200; i++) {
		void *q = mmap(p, 8 * K4, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

		ASSERT_TRUE(q == p);
		if (i % 50 == 0)
			gvm_test_sleep_ns(1000000);
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_GT(r.ok + r.faulted, 0);
	ASSERT_OK(gvm__mm_sync(c.mm));
	ASSERT_OK(store(&c, VA + 8, 99));
	ASSERT_EQ(p[1], 99);
	teardown(&c);
	munmap(p, 8 * K4);
}

/*
 * Seed 000: an invalidation zaps a userptr's PTEs (walking the committed
 * view) while a bind of a neighbour in the same page table has been
 * prepared (staged) but not committed.  Both views must stay consistent:
 * the committed view shows the zap at once, the staging view shows the
 * bind and keeps the zap, and the commit publishes the bind without
 * resurrecting the zapped neighbour.
 */
static struct {
	struct ctx *c;
	void *cpu;
	int ran;
} s000;

static uint64_t pte_of(struct gvm_vm *vm, uint64_t va, enum gvm_pt_view view)
{
	struct gvm_pt_xlate x;

	/* The hook runs with vm->lock held: no locking here. */
	return gvm__pt_translate(&vm->pt, va, view, &x) ? 0 : x.addr;
}

/* The invalidation comes from another thread (it must hold no lock). */
static void *seed000_invalidate(void *arg)
{
	(void)arg;
	gvm__mm_invalidate(s000.c->mm, (uint64_t)(uintptr_t)s000.cpu, 2 * K4,
			   GVM_MM_EVENT_MIGRATE);
	return NULL;
}

static void seed000_hook(struct gvm_vm *vm)
{
	uint64_t up = (uint64_t)(uintptr_t)s000.cpu;
	pthread_t t;

	/* before: the userptr is mapped in both views */
	ASSERT_EQ(pte_of(vm, VA, GVM_PT_VIEW_COMMITTED), up);
	ASSERT_EQ(pte_of(vm, VA, GVM_PT_VIEW_STAGING), up);
	ASSERT_EQ(pte_of(vm, VA + 4 * K4, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_NE(pte_of(vm, VA + 4 * K4, GVM_PT_VIEW_STAGING), 0);
	/* the invalidation, exactly in the window */
	ASSERT_OK(pthread_create(&t, NULL, seed000_invalidate, NULL));
	ASSERT_OK(pthread_join(t, NULL));
	ASSERT_EQ(pte_of(vm, VA, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(pte_of(vm, VA + K4, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(pte_of(vm, VA, GVM_PT_VIEW_STAGING), 0);
	ASSERT_NE(pte_of(vm, VA + 4 * K4, GVM_PT_VIEW_STAGING), 0);
	ASSERT_EQ(gvm__pt_validate(&vm->pt), 0);
	s000.ran++;
}

TEST(seed000_zap_while_bind_is_staged)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA + 4 * K4,
				  .range = 4 * K4 };
	struct gvm_bo *bo;
	struct ctx c;
	uint64_t *p, *b;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(gvm_bo_create(c.dev, 4 * K4, GVM_MEM_SYSTEM, NULL, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&b));
	op.bo = bo;
	s000.c = &c;
	s000.cpu = p;
	gvm__bind_before_commit = seed000_hook;
	ASSERT_OK(gvm_vm_bind(c.vm, NULL, &op, 1, NULL, 0));
	gvm__bind_before_commit = NULL;
	ASSERT_EQ(s000.ran, 1);
	gvm__mutex_lock(&c.vm->lock);
	/* the bind is published, the zapped neighbour is not resurrected */
	ASSERT_NE(pte_of(c.vm, VA + 4 * K4, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(pte_of(c.vm, VA, GVM_PT_VIEW_COMMITTED), 0);
	ASSERT_EQ(gvm__pt_validate(&c.vm->pt), 0);
	gvm__mutex_unlock(&c.vm->lock);
	/* the next exec repins the userptr; both mappings work */
	ASSERT_OK(store(&c, VA + 8, 31));
	ASSERT_OK(store(&c, VA + 4 * K4 + 8, 32));
	ASSERT_EQ(p[1], 31);
	ASSERT_EQ(b[1], 32);
	gvm_bo_put(bo);
	teardown(&c);
	munmap(p, 2 * K4);
}

/*
 * The application's order is gvm's (docs/mm.md, "Ordering"): a change made
 * before gvm_vm_bind() or gvm_exec() is applied before they act, and the
 * late event of a previous mapping never tears down a new one.
 *
 * The "_forced" variants hold the event thread between reading each event
 * and processing it (tests/mmhold.h): the window in which the application
 * has returned from munmap/madvise and gvm has not applied the change.  The
 * kernel ("racer") then first lets the event go, waits until its
 * invalidation has gone past the userptr (pass 1 reached a probe notifier
 * that starts one page later, so comes after the userptr in the walk), and
 * only then loads and stores through the userptr.  Without the flush in
 * exec (or, for the unmap loop, without both the flush in bind and the
 * stamps) the load faults and the job fails with -EIO, every time.  With
 * it, the flush found the thread busy, released it and waited for it, so
 * the call saw the change first and the kernel's wait is over at once.  The
 * plain variants run the same loops holding nothing.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool probed;		/* the held event's pass 1 reached the probe */
} race = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, true };

static struct gvm_notifier_finish *
probe_start(struct gvm_notifier *n, const struct gvm_notifier_range *r,
	    uint64_t cur_seq)
{
	(void)r;
	gvm__notifier_set_seq(n, cur_seq);
	pthread_mutex_lock(&race.lock);
	race.probed = true;
	pthread_cond_broadcast(&race.cond);
	pthread_mutex_unlock(&race.lock);
	return NULL;
}

static const struct gvm_notifier_ops probe_ops = {
	.invalidate_start = probe_start,
};

/* The next event is held, and the racer waits for its invalidation. */
static void race_hold_next_event(void)
{
	pthread_mutex_lock(&race.lock);
	race.probed = false;
	pthread_mutex_unlock(&race.lock);
	mmhold_arm();
}

struct racer_args {
	uint64_t src, dst, add;
};

/* One lane: dst = src + add, once the held event's pass 1 is past. */
static void racer_fn(struct gvm_lane *lane, const void *args)
{
	const struct racer_args *a = args;
	uint64_t v;

	mmhold_release();
	pthread_mutex_lock(&race.lock);
	while (!race.probed)
		pthread_cond_wait(&race.cond, &race.lock);
	pthread_mutex_unlock(&race.lock);
	v = gvm_lane_load(lane, a->src, 8);
	if (gvm_lane_faulted(lane))
		return;
	gvm_lane_store(lane, a->dst, v + a->add, 8);
}

static int racer(struct ctx *c, uint64_t src, uint64_t dst, uint64_t add)
{
	struct racer_args a = { .src = src, .dst = dst, .add = add };
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_init(&k, "racer", racer_fn, 1, &a, sizeof(a)));
	return run(c, &k);
}

static uint64_t u64(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/*
 * madvise(MADV_DONTNEED) on a bound userptr, the CPU writes the new page,
 * then an exec reads and writes through the userptr: 100 times in a row
 * the job succeeds and sees the CPU's value (the exec revalidated).
 */
static void madvise_then_exec(bool forced)
{
	struct gvm_notifier probe;
	struct gvm_vm_stats st;
	struct ctx c;
	uint64_t *p;

	setup(&c);
	p = map_pages(2);
	ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
	ASSERT_OK(gvm__notifier_insert(c.mm, &probe, u64(p) + K4, K4,
				       &probe_ops));
	if (forced)
		mmhold_install();
	for (uint64_t i = 0; i < 100; i++) {
		p[0] = 1;
		if (forced)
			race_hold_next_event();
		ASSERT_OK(madvise(p, 2 * K4, MADV_DONTNEED));
		ASSERT_EQ(p[0], 0);
		p[0] = 1000 + i;		/* a new page */
		ASSERT_OK(racer(&c, VA, VA + K4 + 8, 7));
		ASSERT_EQ(p[K4 / 8 + 1], 1007 + i);
	}
	if (forced) {
		/* every exec's flush found the event thread holding */
		ASSERT_EQ(mmhold_flush_waits(), 100);
		mmhold_uninstall();
	}
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.userptr_invalidations, 100);
	ASSERT_EQ(st.userptr_repins, 100);
	gvm__notifier_remove(&probe);
	teardown(&c);
	munmap(p, 2 * K4);
}

TEST(exec_after_madvise_sees_the_change)
{
	madvise_then_exec(false);
}

TEST(exec_after_madvise_sees_the_change_forced)
{
	madvise_then_exec(true);
}

/*
 * mmap -> bind userptr -> exec store -> unbind -> munmap, 200 times: every
 * store succeeds and lands, and the late UNMAP of a previous mapping never
 * invalidates the next one's userptr (no invalidation at all: each userptr
 * is unbound before its memory is unmapped).  The plain variant asks for
 * the previous address and Linux usually gives it back (not always: other
 * threads map memory too, sanitizer runtimes for one); the forced variant
 * unmaps with mmap(MAP_FIXED, PROT_NONE) over the range, which raises the
 * same UNMAP event and keeps the address for the next mapping.
 */
static void remap_loop(bool forced)
{
	struct gvm_bind_op unbind = { .op = GVM_BIND_UNMAP, .addr = VA,
				      .range = 2 * K4 };
	struct gvm_notifier probe;
	struct gvm_vm_stats st;
	uint64_t *p = NULL, *prev = NULL;
	unsigned int same = 0;
	struct ctx c;

	setup(&c);
	if (forced)
		mmhold_install();
	for (uint64_t i = 0; i < 200; i++) {
		if (forced && i) {
			/* over the placeholder of the previous round */
			ASSERT_TRUE(mmap(p, 2 * K4, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
					 -1, 0) == p);
		} else {
			p = mmap(prev, 2 * K4, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			ASSERT_TRUE(p != MAP_FAILED);
			same += p == prev;
		}
		if (forced && !i)
			ASSERT_OK(gvm__notifier_insert(c.mm, &probe,
						       u64(p) + K4, K4,
						       &probe_ops));
		ASSERT_OK(bind_userptr(&c, VA, p, 2 * K4, 0));
		p[0] = i;
		ASSERT_OK(racer(&c, VA, VA + K4, 1));
		ASSERT_EQ(p[K4 / 8], i + 1);
		ASSERT_OK(gvm_vm_bind(c.vm, NULL, &unbind, 1, NULL, 0));
		if (forced) {
			race_hold_next_event();
			ASSERT_TRUE(mmap(p, 2 * K4, PROT_NONE,
					 MAP_PRIVATE | MAP_ANONYMOUS |
						 MAP_FIXED | MAP_NORESERVE,
					 -1, 0) == p);
		} else {
			ASSERT_OK(munmap(p, 2 * K4));
		}
		prev = p;
	}
	ASSERT_OK(gvm_mm_flush(c.mm));		/* the last one's event */
	if (forced) {
		/* the flush of binds 1..199, and the one above */
		ASSERT_EQ(mmhold_flush_waits(), 200);
		mmhold_uninstall();
		gvm__notifier_remove(&probe);
		munmap(p, 2 * K4);		/* the placeholder */
	} else {
		printf("the same address again %u times out of 199\n", same);
	}
	ASSERT_OK(gvm_vm_stats(c.vm, &st));
	ASSERT_EQ(st.userptr_invalidations, 0);
	teardown(&c);
}

TEST(remap_loop_at_the_same_address)
{
	remap_loop(false);
}

TEST(remap_loop_at_the_same_address_forced)
{
	remap_loop(true);
}
