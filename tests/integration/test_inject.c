// SPDX-License-Identifier: MIT
/*
 * Fault injection on every backend and system call (core/inject.h).
 *
 * Each scenario is run first with counting on, to learn how many calls of
 * each injection site one of its phases makes (its work, or its
 * teardown), and then once per site and per N, with the N-th call of that
 * site failing.  After each run of the work, with injection off again:
 *  - every public call of the phase returned 0 or a negative errno (the
 *    test would crash or hang otherwise: ctest's timeout);
 *  - the VM's page tables and VA tree validate;
 *  - every byte the application wrote from the CPU is still there, read
 *    from the CPU, and every byte the GPU wrote is either the old or the
 *    new value (a failed kernel may have done part of its work);
 *  - the VM is usable (a fresh bind and exec succeed) or banned (the
 *    calls fail with -EIO and gvm_vm_stats says banned);
 *  - after teardown the library's heap holds as many blocks as before.
 *
 * A run of the teardown: every call returns 0 or an errno (a failed
 * gvm_vm_destroy leaves the VM to destroy again), and nothing leaks.
 *
 * Scenarios: userptr bind + exec + munmap + rebind (non-fault VM); SVM on
 * the process's memory: GPU faults, migration to VRAM and CPU fault-back;
 * the same on a model mm, with reclaims, where the INVAL site's
 * invalidation moves the pages (a missed one maps freed, poisoned frames:
 * the poison check after the run); two linked devices, device-to-device
 * migration; BOs evicted under VRAM pressure.  Also: the SVM scenario with a failed UFFDIO_WAKE after each
 * failed move, copy or register; every scenario's teardown.
 * docs/verification.md ("Fault injection") has the numbers and findings.
 *
 * By default a site with more calls than a scenario's max_n is swept over
 * its first max_n calls and then about max_n more spread evenly, so that
 * each test stays within seconds; GVM_INJECT_FULL=1 (the inject_full
 * label, tests/CMakeLists.txt, make check-inject-full) sweeps every N.
 */
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <gvm/gvm.h>
#include <gvm/sim.h>

#include "core/alloc.h"
#include "core/inject.h"
#include "core/sync.h"
#include "harness.h"
#include "svmtest.h"
#include "mm/mm.h"
#include "pt/pt.h"
#include "vm/dev.h"
#include "vm/va.h"
#include "vm/vm.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M1 (1ull << 20)
#define M2 (2ull << 20)
#define VA 0x20000000ull
#define VA2 0x30000000ull
#define MIRROR_END (1ull << 47)

/* ---- the sweep ---------------------------------------------------------- */

static struct {
	enum gvm_inject_site site;
	long n;			/* 0: counting run */
	int also;		/* a second site failing its first call, or -1 */
	int phase;		/* the phase injected: PHASE_* */
	bool in_phase;
	bool fired;
} cur = { .also = -1 };

/* A scenario's phases: its work, and its teardown. */
enum { PHASE_WORK, PHASE_TEARDOWN };

static void phase_begin(int phase)
{
	if (phase != cur.phase)
		return;
	cur.in_phase = true;
	if (cur.n && cur.also >= 0)
		gvm__inject_arm(cur.also, 1, 0);
	if (cur.n)
		gvm__inject_arm(cur.site, cur.n, 0);
	else
		gvm__inject_count(true);
}

static void phase_end(int phase)
{
	if (phase != cur.phase)
		return;
	cur.in_phase = false;
	if (cur.n && cur.also >= 0)
		cur.fired = gvm__inject_disarm(cur.also) == 0;
	if (cur.n)
		cur.fired |= gvm__inject_disarm(cur.site) == 0;
	else
		gvm__inject_count(false);
}

/* A clean run (nothing injected, or the armed call never came). */
static bool clean(void)
{
	if (!cur.n)
		return true;
	if (!cur.in_phase)
		return !cur.fired;
	return gvm__inject_pending(cur.site) != 0 &&
	       (cur.also < 0 || gvm__inject_pending(cur.also) != 0);
}

/* What every public call must return: 0 or a negative errno. */
static int ok_or_errno(int err)
{
	if (err)
		printf("  %s #%ld: %d\n", gvm__inject_name(cur.site), cur.n,
		       err);
	ASSERT_TRUE(err == 0 || (err < 0 && err > -4096));
	if (clean())
		ASSERT_OK(err);
	return err;
}

/* Zaps (invalidations, e.g. a CPU fault-back still running) take only
   notifier_lock: the tables are stable under all three. */
static void check_vm(struct gvm_vm *vm)
{
	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->pt_lock);
	gvm__mutex_lock(&vm->notifier_lock);
	ASSERT_OK(gvm__pt_validate(&vm->pt));
	ASSERT_OK(gvm__va_validate(&vm->va));
	gvm__mutex_unlock(&vm->notifier_lock);
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
}

static bool banned(struct gvm_vm *vm)
{
	struct gvm_vm_stats st;

	ASSERT_OK(gvm_vm_stats(vm, &st));
	return st.banned;
}

static bool full_sweep(void)
{
	const char *e = getenv("GVM_INJECT_FULL");

	return e && *e && strcmp(e, "0");
}

/*
 * Runs @scenario once counting, then once per N of every site of
 * @site_mask: N = 1 .. @max_n, then about @max_n more spread evenly up to
 * the site's count (every N with GVM_INJECT_FULL).  If @also is a site,
 * its first call fails too in each of those runs.
 */
static void sweep2(const char *name, void (*scenario)(void),
		   uint64_t site_mask, unsigned long max_n, int also, int phase)
{
	unsigned long calls[GVM_INJECT_NR_SITES];
	unsigned long runs = 0, fired = 0;
	uint64_t live = gvm__alloc_live();
	unsigned long also0 = also >= 0 ? gvm__inject_fired(also) : 0;
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	cur.n = 0;
	cur.also = -1;
	cur.phase = phase;
	scenario();
	gvm_test_check_leaks(live);
	for (int s = 0; s < GVM_INJECT_NR_SITES; s++)
		calls[s] = gvm__inject_calls(s);
	for (int s = 0; s < GVM_INJECT_NR_SITES; s++) {
		unsigned long nf = 0, nr = 0, stride;

		if (!(site_mask & (1ull << s)))
			continue;
		stride = full_sweep() || calls[s] <= max_n ?
				 1 :
				 (calls[s] - max_n) / max_n + 1;
		for (unsigned long n = 1; n <= calls[s];
		     n += n < max_n ? 1 : stride) {
			cur.site = s;
			cur.n = (long)n;
			cur.fired = false;
			cur.also = also;
			if (getenv("GVM_INJECT_VERBOSE"))
				printf("run %s #%ld\n", gvm__inject_name(s),
				       cur.n);
			scenario();
			gvm_test_check_leaks(live);
			nr++;
			nf += cur.fired;
		}
		printf("%s: %-14s %5lu calls, %5lu runs, %5lu fired\n", name,
		       gvm__inject_name(s), calls[s], nr, nf);
		runs += nr;
		fired += nf;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (also >= 0)
		printf("%s: %s fired in %lu runs\n", name,
		       gvm__inject_name(also),
		       gvm__inject_fired(also) - also0);
	printf("%s: %lu runs, %lu injected, %.1f s\n", name, runs, fired,
	       (double)(t1.tv_sec - t0.tv_sec) +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
}

/* sweep2() of the work phase, with no second site. */
static void sweep(const char *name, void (*scenario)(void),
		  uint64_t site_mask, unsigned long max_n)
{
	sweep2(name, scenario, site_mask, max_n, -1, PHASE_WORK);
}

/* VM destruction, under injection: 0, or an errno and the VM is still
   there (a failed call changes nothing), so it is destroyed again. */
static void destroy_vm(struct gvm_vm *vm)
{
	if (ok_or_errno(gvm_vm_destroy(vm)))
		ASSERT_OK(gvm_vm_destroy(vm));
}

#define ALL_SITES ((1ull << GVM_INJECT_NR_SITES) - 1)

/* ---- helpers ------------------------------------------------------------- */

static uint64_t u64(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

static uint64_t pat(uint64_t i)
{
	return 0x5a5a000000000000ull ^ (i * 0x9e3779b97f4a7c15ull);
}

/*
 * The 2 MiB at @p as the SVM scenarios leave it: its first 1 MiB holds @a,
 * the next 512 KiB @b, the rest pat() (~pat() if @rest_inv).  A part whose
 * GPU write may have failed (@a_sure, @b_sure false) holds either value
 * or the pattern it had before.
 */
static void check_layout(const uint64_t *p, uint64_t a, bool a_sure,
			 uint64_t b, bool b_sure, bool rest_inv)
{
	for (uint64_t i = 0; i < M2 / 8; i++) {
		uint64_t v = p[i];

		if (i < M1 / 8) {
			if (a_sure || v != a)
				ASSERT_EQ(v, a_sure ? a : pat(i));
		} else if (i < 3 * M2 / 32) {
			if (b_sure || v != b)
				ASSERT_EQ(v, b_sure ? b : pat(i));
		} else {
			ASSERT_EQ(v, rest_inv ? ~pat(i) : pat(i));
		}
	}
}

static uint64_t word(uint32_t v)
{
	return ((uint64_t)v << 32) | v;
}

/*
 * The same on a fault-mode VM, which has no dma-fences: a user fence, and
 * a GPU fault the handler could not resolve (logged) is the job's error.
 */
static int run_lr(struct gvm_vm *vm, struct gvm_queue *q,
		  const struct gvm_kernel *k)
{
	struct gvm_fault_info f[16];
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };
	int qerr = gvm_queue_error(q), err = gvm_exec(q, k, &s, 1);
	uint32_t n;

	if (err)
		return err;
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_OK(gvm_vm_query_faults(vm, f, 16, &n));
	/* sticky: the first failed start */
	err = gvm_queue_error(q);
	return err != qerr ? err : n ? -EFAULT : 0;
}

static int fill(struct gvm_queue *q, uint64_t va, uint64_t size, uint32_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_fill(&k, va, size, v));
	return gvm_test_run(q, &k);
}

static int fill_lr(struct gvm_vm *vm, struct gvm_queue *q, uint64_t va,
		   uint64_t size, uint32_t v)
{
	struct gvm_kernel k;

	ASSERT_OK(gvm_kernel_fill(&k, va, size, v));
	return run_lr(vm, q, &k);
}

static void *map_aligned(uint64_t size, uint64_t align)
{
	uint8_t *p = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *a;

	ASSERT_TRUE(p != MAP_FAILED);
	a = (uint8_t *)((u64(p) + align - 1) & ~(align - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (p + align > a)
		munmap(a + size, (size_t)(p + align - a));
	return a;
}

/* Every word of [p, p + bytes) is one of the @n values @v. */
static void all_among(const uint64_t *p, uint64_t bytes, const uint64_t *v,
		      int n)
{
	for (uint64_t i = 0; i < bytes / 8; i++) {
		int j = 0;

		while (j < n && p[i] != v[j])
			j++;
		if (j == n)
			ASSERT_EQ(p[i], v[n - 1]);
	}
}

/* ---- userptr: bind + exec + munmap + rebind ------------------------------ */

static int bind_userptr(struct gvm_vm *vm, uint64_t va, void *cpu,
			uint64_t len)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP_USERPTR, .addr = va,
				  .range = len, .userptr = u64(cpu) };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

static int unbind(struct gvm_vm *vm, uint64_t va, uint64_t len)
{
	struct gvm_bind_op op = { .op = GVM_BIND_UNMAP, .addr = va,
				  .range = len };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

/*
 * 16 pages written by the CPU, bound as a userptr; the GPU fills pages
 * 8-11; the CPU unmaps pages 12-15 (an invalidation); the userptr is
 * unbound and pages 0-11 bound again; the GPU fills pages 10-11 again.
 */
/* A fill in a VM of either kind (LR VMs signal user fences only). */
static int ufill(struct gvm_vm *vm, struct gvm_queue *q, uint64_t va,
		 uint64_t size, uint32_t v)
{
	return vm->flags & GVM_VM_LR_MODE ? fill_lr(vm, q, va, size, v) :
					    fill(q, va, size, v);
}

static void userptr_scenario_flags(uint32_t flags)
{
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	uint64_t *buf, *extra;
	int e1, e2, e3, e4, e5;

	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, mm, flags, &vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	buf = map_aligned(16 * K4, K64);
	for (uint64_t i = 0; i < 16 * K4 / 8; i++)
		buf[i] = pat(i);

	phase_begin(PHASE_WORK);
	e1 = ok_or_errno(bind_userptr(vm, VA, buf, 16 * K4));
	e2 = e1 ? e1 : ok_or_errno(ufill(vm, q, VA + 8 * K4, 4 * K4, 0x11));
	ASSERT_OK(munmap(buf + 12 * K4 / 8, 4 * K4));
	e3 = ok_or_errno(unbind(vm, VA, 16 * K4));
	e4 = e3 ? e3 : ok_or_errno(bind_userptr(vm, VA, buf, 12 * K4));
	e5 = e4 ? e4 : ok_or_errno(ufill(vm, q, VA + 10 * K4, 2 * K4, 0x22));
	phase_end(PHASE_WORK);

	check_vm(vm);
	/* The CPU's bytes, and the GPU's as far as they got. */
	for (uint64_t i = 0; i < 8 * K4 / 8; i++)
		ASSERT_EQ(buf[i], pat(i));
	for (uint64_t i = 8 * K4 / 8; i < 12 * K4 / 8; i++) {
		uint64_t v = buf[i];

		bool second = i >= 10 * K4 / 8;	/* filled twice */

		if (clean() || (second && !e5))
			ASSERT_EQ(v, word(second ? 0x22 : 0x11));
		else if (!e2 && !second)
			ASSERT_EQ(v, word(0x11));
		else if (!e2 && v != word(0x22))
			ASSERT_EQ(v, word(0x11));
		else if (v != pat(i) && v != word(0x11) && v != word(0x22))
			ASSERT_EQ(v, pat(i));
	}
	/* Usable, or banned. */
	extra = map_aligned(K4, K4);
	memset(extra, 0, K4);
	if (banned(vm)) {
		ASSERT_EQ(bind_userptr(vm, VA2, extra, K4), -EIO);
	} else {
		if (!e3 && !e4)
			ASSERT_OK(unbind(vm, VA, 12 * K4));
		ASSERT_OK(bind_userptr(vm, VA2, extra, K4));
		ASSERT_OK(ufill(vm, q, VA2, K4, 0x33));
		ASSERT_EQ(extra[K4 / 8 - 1], word(0x33));
		check_vm(vm);
	}
	phase_begin(PHASE_TEARDOWN);
	gvm_queue_destroy(q);
	destroy_vm(vm);
	gvm_device_put(dev);
	gvm_mm_put(mm);
	phase_end(PHASE_TEARDOWN);
	munmap(buf, 12 * K4);
	munmap(extra, K4);
}

static void userptr_scenario(void)
{
	userptr_scenario_flags(0);
}

/* The same in a long-running VM: preempt fences and the rebind worker. */
static void userptr_lr_scenario(void)
{
	userptr_scenario_flags(GVM_VM_LR_MODE);
}

TEST(userptr_bind_exec_munmap)
{
	sweep("userptr", userptr_scenario, ALL_SITES, 64);
}

TEST(userptr_lr_bind_exec_munmap)
{
	sweep("userptr lr", userptr_lr_scenario, ALL_SITES, 32);
}

/* ---- SVM: GPU faults, migration to VRAM, CPU fault-back ----------------- */

/*
 * 2 MiB the CPU wrote; the GPU fills the first MiB (its fault migrates the
 * range to VRAM) and sums the rest; the CPU reads it all back (faults the
 * pages back from VRAM) and writes the last quarter; the GPU fills the
 * third quarter.
 */
static void svm_scenario(void)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_kernel k;
	struct gvm_madvise adv = {
		.set = GVM_MADV_PREFERRED_LOC,
		.attrs = { .preferred_loc = GVM_LOC_SYSTEM },
	};
	uint64_t *p, *out, *extra, *sys, *pf, sum = 0, want = 0;
	struct gvm_bind_op prefetch = { .op = GVM_BIND_PREFETCH,
					.prefetch_mem = GVM_MEM_VRAM,
					.range = M2 };
	int e1, e2, e3, e4;

	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, mm, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				&vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));
	p = map_aligned(M2, M2);
	out = map_aligned(K4, K4);
	*out = 0;
	for (uint64_t i = 0; i < M2 / 8; i++)
		p[i] = pat(i);
	for (uint64_t i = M1 / 8; i < M2 / 8; i++)
		want += pat(i);
	/* 64 KiB that stays in system memory: fetched, not migrated */
	sys = map_aligned(K64, K64);
	memset(sys, 0, K64);
	ASSERT_OK(gvm_vm_madvise(vm, u64(sys), K64, &adv));
	/* 2 MiB the CPU wrote, prefetched into VRAM by a bind */
	pf = map_aligned(M2, M2);
	for (uint64_t i = 0; i < M2 / 8; i++)
		pf[i] = ~pat(i) ^ 0xff;
	prefetch.addr = u64(pf);

	phase_begin(PHASE_WORK);
	e1 = ok_or_errno(fill_lr(vm, q, u64(p), M1, 0x44));
	ASSERT_OK(gvm_kernel_checksum(&k, u64(p) + M1, M1, u64(out)));
	e2 = ok_or_errno(run_lr(vm, q, &k));
	if (!e2)
		ASSERT_EQ(*out, want);
	/* CPU fault-back of whatever went to VRAM. */
	for (uint64_t i = 0; i < M2 / 8; i++)
		sum += p[i];
	if (!e1)
		ASSERT_EQ(sum, want + word(0x44) * (M1 / 8));
	for (uint64_t i = 3 * M2 / 32; i < M2 / 8; i++)
		p[i] = ~pat(i);
	e3 = ok_or_errno(fill_lr(vm, q, u64(p) + M1, M1 / 2, 0x55));
	e4 = ok_or_errno(fill_lr(vm, q, u64(sys), K64, 0x58));
	ok_or_errno(gvm_vm_bind(vm, NULL, &prefetch, 1, NULL, 0));
	phase_end(PHASE_WORK);

	for (uint64_t i = 0; i < M2 / 8; i++)	/* back from VRAM if there */
		ASSERT_EQ(pf[i], ~pat(i) ^ 0xff);

	if (clean() || !e4)
		all_among(sys, K64, (uint64_t[]){ word(0x58) }, 1);
	else
		all_among(sys, K64, (uint64_t[]){ 0, word(0x58) }, 2);

	check_vm(vm);
	check_layout(p, word(0x44), clean() || !e1, word(0x55), clean() || !e3,
		     true);
	/* Usable, or banned. */
	extra = map_aligned(K64, K64);
	if (banned(vm)) {
		ASSERT_EQ(fill_lr(vm, q, u64(extra), K64, 0x66), -EIO);
	} else {
		ASSERT_OK(fill_lr(vm, q, u64(extra), K64, 0x66));
		ASSERT_EQ(extra[K64 / 8 - 1], word(0x66));
		check_vm(vm);
	}
	phase_begin(PHASE_TEARDOWN);
	gvm_queue_destroy(q);
	destroy_vm(vm);
	gvm_device_put(dev);
	gvm_mm_put(mm);
	phase_end(PHASE_TEARDOWN);
	munmap(p, M2);
	munmap(out, K4);
	munmap(extra, K64);
	munmap(sys, K64);
	munmap(pf, M2);
}

TEST(svm_fault_migrate_fault_back)
{
	sweep("svm", svm_scenario, ALL_SITES, 24);
}

/*
 * No scenario calls UFFDIO_WAKE unless a give or copy into the faulting
 * range came out short: fail one of those and the next wake with it.
 */
TEST(svm_fault_back_with_a_failed_wake)
{
	sweep2("svm+wake", svm_scenario,
	       (1ull << GVM_INJECT_UFFD_MOVE) | (1ull << GVM_INJECT_UFFD_COPY) |
		       (1ull << GVM_INJECT_UFFD_REGISTER),
	       24, GVM_INJECT_UFFD_WAKE, PHASE_WORK);
}

/* ---- SVM on the model mm --------------------------------------------------- */

static int model_rw_once(struct gvm_mm *mm, uint64_t a, void *buf,
			 uint64_t len, bool write)
{
	return write ? gvm_mm_model_write(mm, a, buf, len) :
		       gvm_mm_model_read(mm, a, buf, len);
}

/* A CPU access through the model: under injection it may fail once (the
   site is off again then), so a failure is retried. */
static void model_rw(struct gvm_mm *mm, uint64_t a, void *buf, uint64_t len,
		     bool write)
{
	if (ok_or_errno(model_rw_once(mm, a, buf, len, write)))
		ASSERT_OK(model_rw_once(mm, a, buf, len, write));
}

/*
 * The SVM scenario on a model mm (gvm_mm_model_create), which runs every
 * CPU change inside its invalidation and poisons the frames it frees (an
 * engine writing one after its invalidation is counted): 2 MiB the CPU
 * wrote through the model; the GPU fills the first MiB (into VRAM) and
 * sums the rest; the CPU reads it all (back from VRAM, as a CPU fault
 * would) and writes the last quarter; the GPU fills 64 KiB whose preferred
 * location is system memory (its frames mapped); a reclaim moves every
 * page of both to new frames, poisoning the old; the GPU fills the 64 KiB
 * again and the third quarter; a PREFETCH bind moves another 2 MiB into
 * VRAM.
 */
static void svm_model_scenario(void)
{
	struct gvm_mm_model_config cfg = { .size = 16ull << 20 };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	struct gvm_bind_op prefetch = { .op = GVM_BIND_PREFETCH,
					.prefetch_mem = GVM_MEM_VRAM,
					.range = M2 };
	struct gvm_madvise adv = {
		.set = GVM_MADV_PREFERRED_LOC,
		.attrs = { .preferred_loc = GVM_LOC_SYSTEM },
	};
	struct gvm_mm_model_stats st;
	struct gvm_device *dev;
	struct gvm_mm *mm;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_kernel k;
	uint64_t a, b, sys, out, extra, sum = 0, want = 0, v;
	uint64_t *buf = malloc(M2);
	int e1, e2, e3, e4, e5, moved;

	ASSERT_TRUE(buf != NULL);
	ASSERT_OK(gvm_mm_model_create(&cfg, &mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	ASSERT_OK(gvm_vm_create(dev, mm, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				&vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, M2, PROT_READ | PROT_WRITE, 0, &a));
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, M2, PROT_READ | PROT_WRITE, 0, &b));
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, K64, PROT_READ | PROT_WRITE, 0,
				    &out));
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, K64, PROT_READ | PROT_WRITE, 0,
				    &sys));
	ASSERT_OK(gvm_vm_madvise(vm, sys, K64, &adv));
	for (uint64_t i = 0; i < M2 / 8; i++)
		buf[i] = pat(i);
	for (uint64_t i = M1 / 8; i < M2 / 8; i++)
		want += pat(i);
	ASSERT_OK(gvm_mm_model_write(mm, a, buf, M2));
	for (uint64_t i = 0; i < M2 / 8; i++)
		buf[i] = ~pat(i) ^ 0xff;
	ASSERT_OK(gvm_mm_model_write(mm, b, buf, M2));
	prefetch.addr = b;

	phase_begin(PHASE_WORK);
	e1 = ok_or_errno(fill_lr(vm, q, a, M1, 0x44));
	ASSERT_OK(gvm_kernel_checksum(&k, a + M1, M1, out));
	e2 = ok_or_errno(run_lr(vm, q, &k));
	if (!e2) {
		model_rw(mm, out, &v, sizeof(v), false);
		ASSERT_EQ(v, want);
	}
	/* The CPU brings back whatever went to VRAM. */
	model_rw(mm, a, buf, M2, false);
	for (uint64_t i = 0; i < M2 / 8; i++)
		sum += buf[i];
	if (!e1)
		ASSERT_EQ(sum, want + word(0x44) * (M1 / 8));
	for (uint64_t i = 3 * M2 / 32; i < M2 / 8; i++)
		buf[i] = ~pat(i);
	model_rw(mm, a + 3 * M2 / 8, buf + 3 * M2 / 64, M2 - 3 * M2 / 8,
		 true);
	e4 = ok_or_errno(fill_lr(vm, q, sys, K64, 0x58));
	moved = gvm_mm_model_reclaim(mm, sys, K64);
	ok_or_errno(moved < 0 ? moved : 0);
	if (clean())
		ASSERT_EQ(moved, K64 / K4);
	moved = gvm_mm_model_reclaim(mm, a, M2);
	ok_or_errno(moved < 0 ? moved : 0);
	if (clean())
		ASSERT_EQ(moved, M2 / K4);
	e5 = ok_or_errno(fill_lr(vm, q, sys, K64, 0x59));
	e3 = ok_or_errno(fill_lr(vm, q, a + M1, M1 / 2, 0x55));
	ok_or_errno(gvm_vm_bind(vm, NULL, &prefetch, 1, NULL, 0));
	phase_end(PHASE_WORK);

	ASSERT_OK(gvm_mm_model_read(mm, b, buf, M2));	/* back if there */
	for (uint64_t i = 0; i < M2 / 8; i++)
		ASSERT_EQ(buf[i], ~pat(i) ^ 0xff);
	ASSERT_OK(gvm_mm_model_read(mm, sys, buf, K64));
	if (clean() || !e5)
		all_among(buf, K64, (uint64_t[]){ word(0x59) }, 1);
	else if (!e4)
		all_among(buf, K64, (uint64_t[]){ word(0x58), word(0x59) }, 2);
	else
		all_among(buf, K64,
			  (uint64_t[]){ 0, word(0x58), word(0x59) }, 3);
	ASSERT_OK(gvm_mm_model_read(mm, a, buf, M2));
	check_layout(buf, word(0x44), clean() || !e1, word(0x55),
		     clean() || !e3, true);
	check_vm(vm);
	/* Usable, or banned. */
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, K64, PROT_READ | PROT_WRITE, 0,
				    &extra));
	if (banned(vm)) {
		ASSERT_EQ(fill_lr(vm, q, extra, K64, 0x66), -EIO);
	} else {
		ASSERT_OK(fill_lr(vm, q, extra, K64, 0x66));
		ASSERT_OK(gvm_mm_model_read(mm, extra + K64 - 8, &v,
					    sizeof(v)));
		ASSERT_EQ(v, word(0x66));
		check_vm(vm);
	}
	phase_begin(PHASE_TEARDOWN);
	gvm_queue_destroy(q);
	destroy_vm(vm);
	gvm_device_put(dev);
	phase_end(PHASE_TEARDOWN);
	/* No engine wrote a frame after its invalidation ended. */
	ASSERT_OK(gvm_mm_model_stats(mm, &st));
	ASSERT_EQ(st.poison_violations, 0);
	gvm_mm_put(mm);
	free(buf);
}

TEST(svm_on_the_model_mm)
{
	sweep("svm model", svm_model_scenario, ALL_SITES, 24);
}

/* ---- two linked devices: device-to-device migration ---------------------- */

/*
 * 2 MiB the CPU wrote; A's GPU fills the first half (the range moves into
 * A's VRAM); B prefers its own memory and fills the third quarter (the
 * range moves from A to B over the link); the CPU reads it all back.
 */
static void d2d_scenario(void)
{
	struct gvm_madvise adv = { .set = GVM_MADV_PREFERRED_LOC };
	struct svmt_pair x;
	uint64_t *p, *extra;
	int e1, e2;

	svmt_pair_setup(&x, true, NULL);
	adv.attrs.preferred_loc = GVM_LOC_DEVICE;
	adv.attrs.dev = x.b;
	p = map_aligned(M2, M2);
	for (uint64_t i = 0; i < M2 / 8; i++)
		p[i] = pat(i);
	ASSERT_OK(gvm_vm_madvise(x.vb.vm, u64(p), M2, &adv));

	phase_begin(PHASE_WORK);
	e1 = ok_or_errno(fill_lr(x.va.vm, x.va.q, u64(p), M1, 0x81));
	e2 = ok_or_errno(fill_lr(x.vb.vm, x.vb.q, u64(p) + M1, M1 / 2, 0x82));
	phase_end(PHASE_WORK);

	check_vm(x.va.vm);
	check_vm(x.vb.vm);
	if (!cur.n)	/* the counting run took the direct path */
		ASSERT_EQ(svmt_stats(x.va.vm).svm_d2d_migrations +
				  svmt_stats(x.vb.vm).svm_d2d_migrations,
			  1);
	check_layout(p, word(0x81), clean() || !e1, word(0x82), clean() || !e2,
		     false);
	extra = map_aligned(K64, K64);
	for (int d = 0; d < 2; d++) {
		struct svmt_vm *v = d ? &x.vb : &x.va;

		if (banned(v->vm)) {
			ASSERT_EQ(fill_lr(v->vm, v->q, u64(extra), K64, 0x83),
				  -EIO);
			continue;
		}
		ASSERT_OK(fill_lr(v->vm, v->q, u64(extra), K64, 0x83));
		ASSERT_EQ(extra[K64 / 8 - 1], word(0x83));
		check_vm(v->vm);
	}
	phase_begin(PHASE_TEARDOWN);
	for (int d = 0; d < 2; d++) {
		struct svmt_vm *v = d ? &x.vb : &x.va;

		gvm_queue_destroy(v->q);
		destroy_vm(v->vm);
		gvm_device_put(v->dev);
		munmap(v->out, K4);
	}
	gvm_device_put(x.a);
	gvm_device_put(x.b);
	gvm_mm_put(x.mm);
	phase_end(PHASE_TEARDOWN);
	munmap(p, M2);
	munmap(extra, K64);
}

TEST(svm_two_devices_d2d_migration)
{
	sweep("d2d", d2d_scenario, ALL_SITES, 16);
}

/* ---- BOs evicted under VRAM pressure ------------------------------------- */

#define NVMS 3
#define NBOS 2		/* per VM */
#define NFILLS 2	/* per BO */

struct evm {
	struct gvm_vm *vm;
	struct gvm_queue *q;
	struct gvm_bo *bo[NBOS];
	/* what each BO may hold: the last complete fill and any failed one
	   after it (a failed kernel may have written part of its range) */
	uint64_t may[NBOS][NFILLS + 1];
	int nmay[NBOS];
};

/*
 * Three VMs of two 2 MiB VRAM BOs each (one VM-local, one not), written
 * by the CPU, on a device with 8 MiB of VRAM: each exec needs its VM's
 * 4 MiB resident, so the VMs' execs take turns evicting each other.
 */
static void evict_scenario(void)
{
	struct gvm_sim_config cfg = { .vram_size = 8ull << 20 };
	struct gvm_device *dev;
	struct evm e[NVMS];

	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	for (int v = 0; v < NVMS; v++) {
		ASSERT_OK(gvm_vm_create(dev, NULL, 0, &e[v].vm));
		ASSERT_OK(gvm_queue_create(e[v].vm, GVM_ENGINE_COMPUTE,
					   &e[v].q));
		for (int i = 0; i < NBOS; i++) {
			struct gvm_bind_op op = { .op = GVM_BIND_MAP,
						  .addr = VA + (uint64_t)i * M2,
						  .range = M2 };
			uint64_t *cpu;

			ASSERT_OK(gvm_bo_create(dev, M2, GVM_MEM_VRAM,
						i & 1 ? NULL : e[v].vm,
						&e[v].bo[i]));
			op.bo = e[v].bo[i];
			ASSERT_OK(gvm_vm_bind(e[v].vm, NULL, &op, 1, NULL, 0));
			ASSERT_OK(gvm_bo_map(e[v].bo[i], (void **)&cpu));
			e[v].may[i][0] = word(0x100 + (uint32_t)(v * 8 + i));
			e[v].nmay[i] = 1;
			for (uint64_t w = 0; w < M2 / 8; w++)
				cpu[w] = e[v].may[i][0];
		}
	}

	phase_begin(PHASE_WORK);
	for (int r = 0; r < NFILLS; r++) {
		for (int v = 0; v < NVMS; v++) {
			for (int i = 0; i < NBOS; i++) {
				uint32_t x = 0x200 + (uint32_t)(r * 64 +
								v * 8 + i);
				int err = fill(e[v].q, VA + (uint64_t)i * M2,
					       M2, x);

				if (ok_or_errno(err)) {
					e[v].may[i][e[v].nmay[i]++] = word(x);
				} else {
					e[v].may[i][0] = word(x);
					e[v].nmay[i] = 1;
				}
			}
		}
	}
	phase_end(PHASE_WORK);

	for (int v = 0; v < NVMS; v++) {
		struct gvm_vm *vm = e[v].vm;
		uint64_t *cpu;

		check_vm(vm);
		for (int i = 0; i < NBOS; i++) {
			ASSERT_OK(gvm_bo_map(e[v].bo[i], (void **)&cpu));
			all_among(cpu, M2, e[v].may[i], e[v].nmay[i]);
		}
		if (banned(vm)) {
			ASSERT_EQ(fill(e[v].q, VA, K4, 0x300), -EIO);
			continue;
		}
		ASSERT_OK(fill(e[v].q, VA, K4, 0x300));
		ASSERT_OK(gvm_bo_map(e[v].bo[0], (void **)&cpu));
		ASSERT_EQ(cpu[0], word(0x300));
		check_vm(vm);
	}
	phase_begin(PHASE_TEARDOWN);
	for (int v = 0; v < NVMS; v++) {
		gvm_queue_destroy(e[v].q);
		for (int i = 0; i < NBOS; i++)
			gvm_bo_put(e[v].bo[i]);
		destroy_vm(e[v].vm);
	}
	gvm_device_put(dev);
	phase_end(PHASE_TEARDOWN);
}

TEST(bo_eviction_under_vram_pressure)
{
	sweep("evict", evict_scenario, ALL_SITES, 8);
}

/* ---- teardown ------------------------------------------------------------ */

/* The teardowns of the scenarios (queues, VMs, BOs, devices, the mm). */
TEST(teardown)
{
	sweep2("userptr teardown", userptr_scenario, ALL_SITES, 16, -1,
	       PHASE_TEARDOWN);
	sweep2("svm teardown", svm_scenario, ALL_SITES, 16, -1,
	       PHASE_TEARDOWN);
	sweep2("d2d teardown", d2d_scenario, ALL_SITES, 16, -1,
	       PHASE_TEARDOWN);
	sweep2("evict teardown", evict_scenario, ALL_SITES, 4, -1,
	       PHASE_TEARDOWN);
	sweep2("svm model teardown", svm_model_scenario, ALL_SITES, 16, -1,
	       PHASE_TEARDOWN);
}

/* ---- regressions ----------------------------------------------------------- */

static const struct gvm_device_ops *real_ops;
static struct gvm_device_ops failing_ops;
static int run_failures;		/* atomic: runs left to fail */

static int failing_run(struct gvm_device *dev, void *queue_priv,
		       const struct gvm_kernel *k, struct gvm_fence **done)
{
	if (__atomic_load_n(&run_failures, __ATOMIC_RELAXED) > 0) {
		__atomic_fetch_sub(&run_failures, 1, __ATOMIC_RELAXED);
		return -ENOMEM;
	}
	return real_ops->run(dev, queue_priv, k, done);
}

/*
 * Found by the ALLOC sweep of svm_fault_migrate_fault_back: the sim's run
 * op failed (-ENOMEM), the exec's user fence signalled all the same, and a
 * long-running VM has no other out-sync: the kernel had not run and
 * nothing said so.  gvm_queue_error() says so now.
 */
TEST(lr_exec_whose_kernel_could_not_start_is_reported)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	uint64_t *p = map_aligned(K64, K64);

	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &dev));
	real_ops = dev->ops;
	failing_ops = *real_ops;
	failing_ops.run = failing_run;
	dev->ops = &failing_ops;
	ASSERT_OK(gvm_vm_create(dev, mm, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				&vm));
	ASSERT_OK(gvm_queue_create(vm, GVM_ENGINE_COMPUTE, &q));
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));
	memset(p, 0, K64);
	ASSERT_EQ(gvm_queue_error(q), 0);
	__atomic_store_n(&run_failures, 1, __ATOMIC_RELAXED);
	ASSERT_EQ(fill_lr(vm, q, u64(p), K64, 0x77), -ENOMEM);
	ASSERT_EQ(p[0], 0);			/* it did not run */
	ASSERT_EQ(gvm_queue_error(q), -ENOMEM);
	/* The queue still runs work; the error stays. */
	ASSERT_OK(fill_lr(vm, q, u64(p), K64, 0x77));
	ASSERT_EQ(p[0], word(0x77));
	ASSERT_EQ(gvm_queue_error(q), -ENOMEM);
	gvm_queue_destroy(q);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
	gvm_mm_put(mm);
	munmap(p, K64);
}
