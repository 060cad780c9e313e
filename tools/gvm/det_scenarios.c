// SPDX-License-Identifier: MIT
/*
 * The scenarios of deterministic runs (det.h): each is two or three actor
 * threads around one race, on a simulated device, with its invariants
 * checked once the actors are done.  The actors are gvm threads
 * (gvm__thread_create), so the deterministic scheduler decides every
 * interleaving of theirs and of the library's own threads (engines, the
 * timer, bind workers, the fault thread).
 *
 *	scenario       actors                              checks
 *	seed000        bind of a BO next to a userptr |    the userptr's PTEs
 *	               invalidation of the userptr         are zapped, the BO's
 *	                                                   mapped, tables valid
 *	bind-race      two binds of BOs in one page table  both mapped, the
 *	               (same 64 KiB group) | exec of a     kernel's stores
 *	               kernel that stores to both          landed, tables valid
 *	unbind-exec    unbind of a BO | exec of a kernel   the exec faulted or
 *	               that stores to it                   stored; no PTE left
 *	fault-unbind   fault mode: a kernel whose store    the store landed or
 *	               faults the BO in (its engine) |     the fault was logged;
 *	               unbind of the BO                    no PTE left; not banned
 *	gc-fault       SVM (policy remote): an UNMAP       the store landed (the
 *	               invalidation of a range (it goes    memory is still
 *	               to the collector) | a kernel        there); no fault
 *	               storing into it (a GPU fault)       logged; not banned
 *	evict-exec     a kernel filling a VRAM BO | a new  the fill is whole
 *	               VRAM BO that needs its room         (wherever the BO is);
 *	               (eviction of a busy BO)             not both in VRAM
 *
 * SVM on the model mm (real CPU-side changes, ranges in VRAM; each also
 * checks poison, not banned, tables valid):
 *	fault-munmap   a GPU fault migrating a range to    no PTE left; served
 *	               VRAM | munmap of the range          or logged there; new
 *	                                                   memory reads zeros
 *	gc-remap       a GPU store | munmap, mmap at the   the new memory is
 *	               same address, CPU write (the        whole; a store after
 *	               collector drops the old range)      reaches it
 *	cpu-gpu-fault  a GPU store | a CPU write (fault-   both writes kept,
 *	               back of the range from VRAM)        no fault
 *	migrate-reclaim a GPU fault migrating | reclaim    the data whole, the
 *	fault-reclaim  a GPU fault mapping frames |        store there, no fault
 *	               reclaim moving them
 *
 * On gvm_mm_self, invalidations are made with gvm__mm_invalidate(), never
 * by unmapping: the mm_self event thread is not a thread of the run, and
 * a userfaultfd event would make the run depend on it.  The model mm has
 * no thread: its changes run in the calling actor.
 *
 * Locking: each actor takes what the calls it makes take; the checks run
 * after the actors are joined, under vm->lock and pt_lock.
 */
#include "det.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gvm/gvm.h>
#include <gvm/kernel.h>
#include <gvm/mm.h>
#include <gvm/mm_model.h>
#include <gvm/sim.h>
#include <gvm/svm.h>
#include <gvm/vm.h>

#include "core/det.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "pt/pt.h"
#include "vm/userptr.h"
#include "vm/vm.h"

#define K4 4096ull
#define VA 0x20000000ull

void gvm_det_set_mutant(const struct gvm_det_scenario *sc, bool on)
{
	*(sc->mutant ? sc->mutant : &gvm__pt_mutant_no_zap_rule) = on;
}

__attribute__((format(printf, 2, 3), noreturn))
static void fail(const char *sc, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "scenario %s: check failed: ", sc);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (gvm__det_on()) {
		size_t nr;

		gvm__det_events(&nr);
		fprintf(stderr, "the last events of the run:\n");
		gvm__det_dump(stderr, nr > 40 ? nr - 40 : 0, nr);
	}
	fflush(stderr);
	_exit(1);
}

#define CHECK(sc, x)                                                        \
	do {                                                                \
		if (!(x))                                                   \
			fail(sc, "%s (%s:%d)", #x, __FILE__, __LINE__);     \
	} while (0)
#define CHECK_OK(sc, x)                                                     \
	do {                                                                \
		int err_ = (x);                                             \
		if (err_)                                                   \
			fail(sc, "%s = %d (%s:%d)", #x, err_, __FILE__,     \
			     __LINE__);                                     \
	} while (0)

struct ctx {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static void setup_with(const char *sc, struct ctx *c, bool mm,
		       const struct gvm_sim_config *cfg, uint32_t vm_flags)
{
	memset(c, 0, sizeof(*c));
	if (mm)
		CHECK_OK(sc, gvm_mm_self(&c->mm));
	CHECK_OK(sc, gvm_sim_device_create(cfg, &c->dev));
	CHECK_OK(sc, gvm_vm_create(c->dev, c->mm, vm_flags, &c->vm));
	CHECK_OK(sc, gvm_queue_create(c->vm, GVM_ENGINE_COMPUTE, &c->q));
}

static void setup(const char *sc, struct ctx *c, bool mm)
{
	setup_with(sc, c, mm, NULL, 0);
}

static void teardown(const char *sc, struct ctx *c)
{
	gvm_queue_destroy(c->q);
	CHECK_OK(sc, gvm_vm_destroy(c->vm));
	gvm_device_put(c->dev);
	if (c->mm)
		gvm_mm_put(c->mm);
}

/* The committed PTE's address at @va, 0 if none (locks as the checks). */
static uint64_t pte_of(struct gvm_vm *vm, uint64_t va)
{
	struct gvm_pt_xlate x;

	return gvm__pt_translate(&vm->pt, va, GVM_PT_VIEW_COMMITTED, &x) ?
		       0 : x.addr;
}

static void lock_tables(struct gvm_vm *vm)
{
	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->pt_lock);
}

static void unlock_tables(struct gvm_vm *vm)
{
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
}

/* @va maps nothing once the scenario is over, and the tables are sound. */
static void check_unmapped(const char *sc, struct gvm_vm *vm, uint64_t va)
{
	lock_tables(vm);
	CHECK(sc, pte_of(vm, va) == 0);
	CHECK(sc, gvm__pt_validate(&vm->pt) == 0);
	unlock_tables(vm);
}

/* Starts the actors inside the exploration window, joins them. */
static void actors(const char *sc, void *(*const fns[])(void *),
		   unsigned int n, void *arg)
{
	pthread_t t[4];

	gvm__det_window(true);
	for (unsigned int i = 0; i < n; i++)
		CHECK_OK(sc, gvm__thread_create(&t[i], fns[i], arg));
	for (unsigned int i = 0; i < n; i++)
		CHECK_OK(sc, gvm__thread_join(t[i]));
	gvm__det_window(false);
}

static int bind_one(struct gvm_vm *vm, uint32_t op, uint64_t va,
		    uint64_t range, struct gvm_bo *bo, void *cpu)
{
	struct gvm_bind_op b = { .op = op, .addr = va, .range = range,
				 .bo = bo,
				 .userptr = (uint64_t)(uintptr_t)cpu };

	return gvm_vm_bind(vm, NULL, &b, 1, NULL, 0);
}

static int exec_wait(struct gvm_queue *q, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	int st = gvm_exec(q, k, &s, 1);

	if (st)
		return st;
	st = gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
	if (!st)
		st = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return st < 0 ? st : 0;
}

/* ---- seed000: a zap while a bind is staged ------------------------------ */

/*
 * Seed 000's race: a bind of a BO at VA + 16 KiB prepares its update, which
 * stages the whole 64 KiB group [VA, VA + 64 KiB) (the hint fix-up), so it
 * records the userptr's two PTEs at VA as entries it does not own.  An
 * invalidation of the userptr that zaps them between prepare and commit
 * must not be undone by the commit (pt.c, "ZAP DURING PREPARE").
 */
static struct {
	struct ctx c;
	uint64_t *cpu;
	struct gvm_bo *bo;
} s0;

static void *s0_bind(void *arg)
{
	(void)arg;
	CHECK_OK("seed000", bind_one(s0.c.vm, GVM_BIND_MAP, VA + 4 * K4,
				     4 * K4, s0.bo, NULL));
	return NULL;
}

static void *s0_invalidate(void *arg)
{
	(void)arg;
	gvm__mm_invalidate(s0.c.mm, (uint64_t)(uintptr_t)s0.cpu, 2 * K4,
			   GVM_MM_EVENT_MIGRATE);
	return NULL;
}

static void seed000(void)
{
	static void *(*const fns[])(void *) = { s0_bind, s0_invalidate };
	const char *sc = "seed000";

	setup(sc, &s0.c, true);
	s0.cpu = mmap(NULL, 2 * K4, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(sc, s0.cpu != MAP_FAILED);
	CHECK_OK(sc, bind_one(s0.c.vm, GVM_BIND_MAP_USERPTR, VA, 2 * K4, NULL,
			      s0.cpu));
	CHECK_OK(sc, gvm_bo_create(s0.c.dev, 4 * K4, GVM_MEM_SYSTEM, NULL,
				   &s0.bo));
	actors(sc, fns, 2, NULL);
	lock_tables(s0.c.vm);
	/* the invalidation returned: nothing maps the userptr's pages */
	CHECK(sc, pte_of(s0.c.vm, VA) == 0);
	CHECK(sc, pte_of(s0.c.vm, VA + K4) == 0);
	CHECK(sc, pte_of(s0.c.vm, VA + 4 * K4) != 0);
	CHECK(sc, gvm__pt_validate(&s0.c.vm->pt) == 0);
	unlock_tables(s0.c.vm);
	gvm_bo_put(s0.bo);
	teardown(sc, &s0.c);
	munmap(s0.cpu, 2 * K4);
}

/* ---- bind-race: two binds and an exec ------------------------------------ */

static struct {
	struct ctx c;
	struct gvm_bo *bo[2];
	uint32_t *cpu[2];
} br;

static void *br_bind0(void *arg)
{
	(void)arg;
	CHECK_OK("bind-race", bind_one(br.c.vm, GVM_BIND_MAP, VA, 4 * K4,
				       br.bo[0], NULL));
	return NULL;
}

static void *br_bind1(void *arg)
{
	(void)arg;
	CHECK_OK("bind-race", bind_one(br.c.vm, GVM_BIND_MAP, VA + 8 * K4,
				       4 * K4, br.bo[1], NULL));
	return NULL;
}

static void *br_exec(void *arg)
{
	struct gvm_kernel k;

	(void)arg;
	/* a kernel on another range of the VM, concurrently with the binds */
	CHECK_OK("bind-race", gvm_kernel_fill(&k, VA + 64 * K4, 4 * K4, 7));
	CHECK_OK("bind-race", exec_wait(br.c.q, &k));
	return NULL;
}

static void bind_race(void)
{
	static void *(*const fns[])(void *) = { br_bind0, br_bind1, br_exec };
	const char *sc = "bind-race";
	struct gvm_bo *fill;
	uint32_t *f;

	setup(sc, &br.c, false);
	for (int i = 0; i < 2; i++) {
		CHECK_OK(sc, gvm_bo_create(br.c.dev, 4 * K4, GVM_MEM_SYSTEM,
					   NULL, &br.bo[i]));
		CHECK_OK(sc, gvm_bo_map(br.bo[i], (void **)&br.cpu[i]));
	}
	CHECK_OK(sc, gvm_bo_create(br.c.dev, 4 * K4, GVM_MEM_SYSTEM, NULL,
				   &fill));
	CHECK_OK(sc, gvm_bo_map(fill, (void **)&f));
	CHECK_OK(sc, bind_one(br.c.vm, GVM_BIND_MAP, VA + 64 * K4, 4 * K4,
			      fill, NULL));
	actors(sc, fns, 3, NULL);
	CHECK(sc, f[0] == 7 && f[4 * K4 / 4 - 1] == 7);
	lock_tables(br.c.vm);
	CHECK(sc, pte_of(br.c.vm, VA) != 0);
	CHECK(sc, pte_of(br.c.vm, VA + 8 * K4) != 0);
	CHECK(sc, pte_of(br.c.vm, VA + 4 * K4) == 0);
	CHECK(sc, gvm__pt_validate(&br.c.vm->pt) == 0);
	unlock_tables(br.c.vm);
	for (int i = 0; i < 2; i++)
		gvm_bo_put(br.bo[i]);
	gvm_bo_put(fill);
	teardown(sc, &br.c);
}

/* ---- unbind-exec: an unbind racing with a kernel that uses the range ----- */

static struct {
	struct ctx c;
	struct gvm_bo *bo;
	uint32_t *cpu;
	int exec_st;
} ue;

static void *ue_unbind(void *arg)
{
	(void)arg;
	CHECK_OK("unbind-exec", bind_one(ue.c.vm, GVM_BIND_UNMAP, VA, 4 * K4,
					 NULL, NULL));
	return NULL;
}

static void *ue_exec(void *arg)
{
	struct gvm_kernel k;

	(void)arg;
	CHECK_OK("unbind-exec", gvm_kernel_fill(&k, VA, 4 * K4, 9));
	ue.exec_st = exec_wait(ue.c.q, &k);
	return NULL;
}

static void unbind_exec(void)
{
	static void *(*const fns[])(void *) = { ue_unbind, ue_exec };
	const char *sc = "unbind-exec";

	setup(sc, &ue.c, false);
	CHECK_OK(sc, gvm_bo_create(ue.c.dev, 4 * K4, GVM_MEM_SYSTEM, NULL,
				   &ue.bo));
	CHECK_OK(sc, gvm_bo_map(ue.bo, (void **)&ue.cpu));
	CHECK_OK(sc, bind_one(ue.c.vm, GVM_BIND_MAP, VA, 4 * K4, ue.bo, NULL));
	actors(sc, fns, 2, NULL);
	/* either the kernel ran before the unbind, or it faulted (-EIO) */
	if (ue.exec_st == 0)
		CHECK(sc, ue.cpu[0] == 9 && ue.cpu[4 * K4 / 4 - 1] == 9);
	else if (ue.exec_st != -EIO)
		fail(sc, "the exec ended with %d", ue.exec_st);
	check_unmapped(sc, ue.c.vm, VA);
	gvm_bo_put(ue.bo);
	teardown(sc, &ue.c);
}

/* ---- fault-unbind: a GPU fault serviced while the range is unbound ------- */

static struct {
	struct ctx c;
	struct gvm_bo *bo;
	uint64_t *cpu;
} fu;

static void *fu_store(void *arg)
{
	struct gvm_kernel k;
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };

	(void)arg;
	CHECK_OK("fault-unbind", gvm_kernel_store_dword(&k, VA + 8, 5, 64));
	CHECK_OK("fault-unbind", gvm_exec(fu.c.q, &k, &s, 1));
	/* an unserviceable fault fails the job, not the fence */
	CHECK_OK("fault-unbind",
		 gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	return NULL;
}

static void *fu_unbind(void *arg)
{
	(void)arg;
	CHECK_OK("fault-unbind", bind_one(fu.c.vm, GVM_BIND_UNMAP, VA, 4 * K4,
					  NULL, NULL));
	return NULL;
}

static void fault_unbind(void)
{
	static void *(*const fns[])(void *) = { fu_store, fu_unbind };
	const char *sc = "fault-unbind";
	struct gvm_fault_info f[GVM_VM_FAULT_LOG];
	struct gvm_vm_stats st;
	uint32_t n;

	setup_with(sc, &fu.c, false, NULL, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE);
	CHECK_OK(sc, gvm_bo_create(fu.c.dev, 4 * K4, GVM_MEM_VRAM, fu.c.vm,
				   &fu.bo));
	CHECK_OK(sc, gvm_bo_map(fu.bo, (void **)&fu.cpu));
	/* fault mode: bound on the first GPU fault, not now */
	CHECK_OK(sc, bind_one(fu.c.vm, GVM_BIND_MAP, VA, 4 * K4, fu.bo, NULL));
	actors(sc, fns, 2, NULL);
	CHECK_OK(sc, gvm_vm_query_faults(fu.c.vm, f, GVM_VM_FAULT_LOG, &n));
	/* the fault bound the BO before the unbind, or found nothing */
	if (fu.cpu[1] != 5) {
		CHECK(sc, fu.cpu[1] == 0);
		CHECK(sc, n == 1 && f[0].addr == VA + 8);
	} else {
		CHECK(sc, n == 0);
	}
	CHECK_OK(sc, gvm_vm_stats(fu.c.vm, &st));
	CHECK(sc, !st.banned);
	check_unmapped(sc, fu.c.vm, VA);
	gvm_bo_put(fu.bo);
	teardown(sc, &fu.c);
}

/* ---- evict-exec: eviction of a BO a kernel is using ---------------------- */

#define EE_VRAM (1ull << 20)
#define EE_BYTES (640ull << 10)	/* two do not fit in EE_VRAM */

static struct {
	struct ctx c;
	struct gvm_bo *a, *b;
	int create_st;
} ee;

static void *ee_exec(void *arg)
{
	struct gvm_kernel k;

	(void)arg;
	CHECK_OK("evict-exec", gvm_kernel_fill(&k, VA, EE_BYTES, 0x5a5a1234u));
	CHECK_OK("evict-exec", exec_wait(ee.c.q, &k));
	return NULL;
}

static void *ee_create(void *arg)
{
	(void)arg;
	/* a must leave VRAM for it, once idle (or come back, evicting it) */
	ee.create_st = gvm_bo_create(ee.c.dev, EE_BYTES, GVM_MEM_VRAM, NULL,
				     &ee.b);
	return NULL;
}

static void evict_exec(void)
{
	static void *(*const fns[])(void *) = { ee_exec, ee_create };
	const struct gvm_sim_config cfg = { .vram_size = EE_VRAM };
	const char *sc = "evict-exec";
	uint32_t *p;

	setup_with(sc, &ee.c, false, &cfg, 0);
	CHECK_OK(sc, gvm_bo_create(ee.c.dev, EE_BYTES, GVM_MEM_VRAM, ee.c.vm,
				   &ee.a));
	CHECK_OK(sc, bind_one(ee.c.vm, GVM_BIND_MAP, VA, EE_BYTES, ee.a, NULL));
	actors(sc, fns, 2, NULL);
	CHECK_OK(sc, ee.create_st);
	CHECK_OK(sc, gvm_bo_map(ee.a, (void **)&p));
	for (uint64_t i = 0; i < EE_BYTES / 4; i += 1021)
		if (p[i] != 0x5a5a1234u)
			fail(sc, "word %llu of the filled BO is %#x",
			     (unsigned long long)i, p[i]);
	CHECK(sc, p[EE_BYTES / 4 - 1] == 0x5a5a1234u);
	/* either may have been evicted by the other; never both resident */
	CHECK(sc, gvm_bo_region(ee.a) != GVM_MEM_VRAM ||
		  gvm_bo_region(ee.b) != GVM_MEM_VRAM);
	lock_tables(ee.c.vm);
	CHECK(sc, gvm__pt_validate(&ee.c.vm->pt) == 0);
	unlock_tables(ee.c.vm);
	gvm_bo_put(ee.b);
	gvm_bo_put(ee.a);
	teardown(sc, &ee.c);
}

/* ---- gc-fault: the SVM collector vs a GPU fault on the same range -------- */

#define M2 (2ull << 20)

static struct {
	struct ctx c;
	uint64_t *cpu;		/* 2 MiB, 2 MiB aligned */
	void *map;
	size_t map_len;
} gf;

static void gf_store(struct ctx *c, uint64_t va, uint64_t v)
{
	struct gvm_kernel k;
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };

	CHECK_OK("gc-fault", gvm_kernel_store_dword(&k, va, v, 64));
	CHECK_OK("gc-fault", gvm_exec(c->q, &k, &s, 1));
	CHECK_OK("gc-fault", gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
}

static void *gf_unmap(void *arg)
{
	(void)arg;
	/* what munmap's UNMAP event does, without unmapping: the range's
	   PTEs are zapped and the range is handed to the collector */
	gvm__mm_invalidate(gf.c.mm, (uint64_t)(uintptr_t)gf.cpu, M2,
			   GVM_MM_EVENT_UNMAP);
	return NULL;
}

static void *gf_fault(void *arg)
{
	(void)arg;
	gf_store(&gf.c, (uint64_t)(uintptr_t)&gf.cpu[8], 2);
	return NULL;
}

static void gc_fault(void)
{
	static void *(*const fns[])(void *) = { gf_unmap, gf_fault };
	const char *sc = "gc-fault";
	struct gvm_bind_op mirror = { .op = GVM_BIND_MAP,
				      .flags = GVM_BIND_CPU_ADDR_MIRROR,
				      .addr = K4,
				      .range = (1ull << 47) - K4 };
	struct gvm_fault_info f[8];
	struct gvm_vm_stats st;
	const char *policy = gvm_svm_policy_current();
	uintptr_t a;
	uint32_t n;

	/* no migration: the CPU reads the pages where they are */
	CHECK_OK(sc, gvm_svm_policy_select("remote"));
	setup_with(sc, &gf.c, true, NULL, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE);
	CHECK_OK(sc, gvm_vm_bind(gf.c.vm, NULL, &mirror, 1, NULL, 0));
	gf.map_len = 2 * M2;
	gf.map = mmap(NULL, gf.map_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(sc, gf.map != MAP_FAILED);
	a = ((uintptr_t)gf.map + M2 - 1) & ~(uintptr_t)(M2 - 1);
	gf.cpu = (uint64_t *)a;
	memset(gf.cpu, 0, M2);
	/* the range exists and is mapped */
	gf_store(&gf.c, (uint64_t)a, 1);
	CHECK(sc, gf.cpu[0] == 1);
	actors(sc, fns, 2, NULL);
	/* the memory never went away: the fault must have found it */
	CHECK(sc, gf.cpu[8] == 2);
	CHECK_OK(sc, gvm_vm_query_faults(gf.c.vm, f, 8, &n));
	CHECK(sc, n == 0);
	CHECK_OK(sc, gvm_vm_stats(gf.c.vm, &st));
	CHECK(sc, !st.banned);
	lock_tables(gf.c.vm);
	CHECK(sc, gvm__pt_validate(&gf.c.vm->pt) == 0);
	unlock_tables(gf.c.vm);
	teardown(sc, &gf.c);
	munmap(gf.map, gf.map_len);
	CHECK_OK(sc, gvm_svm_policy_select(policy));
}

/* ---- SVM on the model mm ------------------------------------------------- */

/*
 * The model mm (gvm_mm_model_create) has no thread of its own: a munmap,
 * a reclaim or a CPU access to a page in device memory runs its whole
 * invalidation, and the fault-back, inside the call, on the actor that
 * makes it.  So these scenarios make real CPU-side changes and keep SVM
 * ranges in VRAM, and the scheduler still decides every interleaving.
 * Each maps MS_BYTES (one 64 KiB range) of model memory under a mirror,
 * the CPU writes ms_pattern() into its first MS_WORDS words, and the
 * actors race on it.  Common checks (ms_finish): no frame written after
 * its invalidation (stats.poison_violations), the VM not banned, the
 * tables valid.  --mutant switches off the sequence recheck of an SVM
 * range's commit (gvm__svm_mutant_no_seq_recheck, vm/userptr.c).  The
 * kernels' user fences are in model memory too: the user-fence writer
 * stores them through the model, a thread of the run.
 */
#define MS_BYTES (64ull << 10)
#define MS_WORDS 32u

static struct {
	struct ctx c;
	uint64_t a;		/* the mapping */
	uint64_t uf;		/* a model page for user fences */
	uint64_t uf_value;	/* the last one's value */
	const char *policy;	/* to restore */
	uint32_t faults;	/* the GPU actor's store logged */
	struct gvm_fault_info last;	/* the last of them */
} ms;

static uint64_t ms_pattern(unsigned int i)
{
	return 0x1000ull + i;
}

static uint64_t ms_word(const char *sc, uint64_t addr)
{
	uint64_t v;

	CHECK_OK(sc, gvm_mm_model_read(ms.c.mm, addr, &v, 8));
	return v;
}

static void ms_put(const char *sc, uint64_t addr, uint64_t v)
{
	CHECK_OK(sc, gvm_mm_model_write(ms.c.mm, addr, &v, 8));
}

/* Takes the fault log's entries: their number, the last one in *@last. */
static uint32_t ms_logged(const char *sc, struct gvm_fault_info *last)
{
	struct gvm_fault_info f[GVM_VM_FAULT_LOG];
	uint32_t n;

	CHECK_OK(sc, gvm_vm_query_faults(ms.c.vm, f, GVM_VM_FAULT_LOG, &n));
	if (n && last)
		*last = f[n - 1];
	return n;
}

/*
 * A GPU store of @v at @va, waited for: the faults it logged (the log is
 * empty before: every scenario takes its entries), the last in *@last.
 */
static uint32_t ms_store(const char *sc, uint64_t va, uint64_t v,
			 struct gvm_fault_info *last)
{
	struct gvm_kernel k;
	/* in model memory: the user-fence writer stores it (a thread of
	   the run), through the model */
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL,
			      .addr = (uint64_t *)(uintptr_t)ms.uf,
			      .value = ++ms.uf_value };

	CHECK_OK(sc, gvm_kernel_store_dword(&k, va, v, 64));
	CHECK_OK(sc, gvm_exec(ms.c.q, &k, &s, 1));
	/* an unserviceable fault fails the job, not the fence */
	CHECK_OK(sc, gvm_user_fence_wait_mm(ms.c.mm, ms.uf, s.value,
					    GVM_TIMEOUT_INFINITE));
	return ms_logged(sc, last);
}

static void ms_map(const char *sc)
{
	CHECK_OK(sc, gvm_mm_model_mmap(ms.c.mm, 0, MS_BYTES,
				       PROT_READ | PROT_WRITE, 0, &ms.a));
}

static void ms_setup(const char *sc, const char *policy)
{
	const struct gvm_mm_model_config mc = { .size = 4 * M2 };
	struct gvm_bind_op mirror = { .op = GVM_BIND_MAP,
				      .flags = GVM_BIND_CPU_ADDR_MIRROR,
				      .addr = K4,
				      .range = (1ull << 47) - K4 };

	memset(&ms, 0, sizeof(ms));
	ms.policy = gvm_svm_policy_current();
	CHECK_OK(sc, gvm_svm_policy_select(policy));
	CHECK_OK(sc, gvm_mm_model_create(&mc, &ms.c.mm));
	CHECK_OK(sc, gvm_sim_device_create(NULL, &ms.c.dev));
	CHECK_OK(sc, gvm_vm_create(ms.c.dev, ms.c.mm,
				   GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				   &ms.c.vm));
	CHECK_OK(sc, gvm_vm_bind(ms.c.vm, NULL, &mirror, 1, NULL, 0));
	CHECK_OK(sc, gvm_queue_create(ms.c.vm, GVM_ENGINE_COMPUTE, &ms.c.q));
	ms_map(sc);
	/* after the range: a remap of it finds the same address */
	CHECK_OK(sc, gvm_mm_model_mmap(ms.c.mm, 0, K4, PROT_READ | PROT_WRITE,
				       0, &ms.uf));
	for (unsigned int i = 0; i < MS_WORDS; i++)
		ms_put(sc, ms.a + 8 * i, ms_pattern(i));
}

/* The common checks, then teardown. */
static void ms_finish(const char *sc)
{
	struct gvm_mm_model_stats mst;
	struct gvm_vm_stats st;

	CHECK_OK(sc, gvm_vm_stats(ms.c.vm, &st));
	CHECK(sc, !st.banned);
	lock_tables(ms.c.vm);
	CHECK(sc, gvm__pt_validate(&ms.c.vm->pt) == 0);
	unlock_tables(ms.c.vm);
	gvm_queue_destroy(ms.c.q);
	CHECK_OK(sc, gvm_vm_destroy(ms.c.vm));
	gvm_device_put(ms.c.dev);
	CHECK_OK(sc, gvm_mm_model_stats(ms.c.mm, &mst));
	if (mst.poison_violations)
		fail(sc, "%llu frames written after their invalidation",
		     (unsigned long long)mst.poison_violations);
	gvm_mm_put(ms.c.mm);
	CHECK_OK(sc, gvm_svm_policy_select(ms.policy));
}

/* Words [0, MS_WORDS) but @skip hold the pattern (read by the CPU). */
static void ms_check_pattern(const char *sc, unsigned int skip)
{
	for (unsigned int i = 0; i < MS_WORDS; i++) {
		uint64_t v = ms_word(sc, ms.a + 8 * i);

		if (i != skip && v != ms_pattern(i))
			fail(sc, "word %u is %#llx, not %#llx", i,
			     (unsigned long long)v,
			     (unsigned long long)ms_pattern(i));
	}
}

/* The GPU actor: a store to word 8 (a GPU fault if nothing maps it). */
static void *ms_gpu_store8(void *arg)
{
	ms.faults = ms_store((const char *)arg, ms.a + 64, 0x33, &ms.last);
	return NULL;
}

/* ---- fault-munmap: a GPU fault (migrating the range) vs a real munmap ---- */

static void *fm_munmap(void *arg)
{
	CHECK_OK((const char *)arg,
		 gvm_mm_model_munmap(ms.c.mm, ms.a, MS_BYTES));
	return NULL;
}

static void fault_munmap(void)
{
	static void *(*const fns[])(void *) = { ms_gpu_store8, fm_munmap };
	const char *sc = "fault-munmap";
	uint64_t old;

	ms_setup(sc, "default");	/* the fault migrates to VRAM */
	actors(sc, fns, 2, (void *)sc);
	/* the munmap returned: nothing maps the range */
	lock_tables(ms.c.vm);
	CHECK(sc, pte_of(ms.c.vm, ms.a) == 0);
	CHECK(sc, pte_of(ms.c.vm, ms.a + 64) == 0);
	unlock_tables(ms.c.vm);
	/* served before the munmap, or logged exactly there */
	if (ms.faults && (ms.faults != 1 || ms.last.addr != ms.a + 64))
		fail(sc, "%u faults logged, the last at %#llx", ms.faults,
		     (unsigned long long)ms.last.addr);
	/* new memory at the same address: zeros, none of the old data (in
	   VRAM or not), and the GPU reaches it */
	old = ms.a;
	ms_map(sc);
	CHECK(sc, ms.a == old);
	CHECK(sc, !ms_store(sc, ms.a + 128, 0x77, NULL));
	CHECK(sc, ms_word(sc, ms.a + 128) == 0x77);
	CHECK(sc, ms_word(sc, ms.a) == 0);
	CHECK(sc, ms_word(sc, ms.a + 64) == 0);
	ms_finish(sc);
}

/* ---- gc-remap: the collector vs a fault, with a real munmap and mmap ---- */

static void *gr_remap(void *arg)
{
	const char *sc = arg;
	uint64_t old = ms.a;

	CHECK_OK(sc, gvm_mm_model_munmap(ms.c.mm, ms.a, MS_BYTES));
	ms_map(sc);
	CHECK(sc, ms.a == old);
	ms_put(sc, ms.a + 128, 0x22);
	return NULL;
}

static void gc_remap(void)
{
	static void *(*const fns[])(void *) = { ms_gpu_store8, gr_remap };
	const char *sc = "gc-remap";
	uint64_t w8;

	ms_setup(sc, "remote");		/* system frames, mapped in place */
	/* the range exists and is mapped */
	CHECK(sc, !ms_store(sc, ms.a, 0x11, NULL));
	actors(sc, fns, 2, (void *)sc);
	/* the new memory: zeros but what was written after the mmap */
	CHECK(sc, ms_word(sc, ms.a) == 0);
	CHECK(sc, ms_word(sc, ms.a + 128) == 0x22);
	w8 = ms_word(sc, ms.a + 64);
	/* the store landed in the old memory or in the new, or faulted in
	   between (nothing mapped there) */
	CHECK(sc, w8 == 0 || (w8 == 0x33 && !ms.faults));
	/* the old range is gone: a store reaches the new memory */
	CHECK(sc, !ms_store(sc, ms.a + 192, 0x44, NULL));
	CHECK(sc, ms_word(sc, ms.a + 192) == 0x44);
	ms_finish(sc);
}

/* ---- cpu-gpu-fault: a CPU fault-back vs a GPU fault on the same range ---- */

static void *cg_cpu(void *arg)
{
	/* the range is in VRAM: the access brings it back first */
	ms_put((const char *)arg, ms.a + 8, 0x22);
	return NULL;
}

static void cpu_gpu_fault(void)
{
	static void *(*const fns[])(void *) = { ms_gpu_store8, cg_cpu };
	const char *sc = "cpu-gpu-fault";
	struct gvm_vm_stats st;
	uint64_t w0;

	ms_setup(sc, "default");
	w0 = ms_word(sc, ms.a);
	CHECK(sc, !ms_store(sc, ms.a + 16, ms_pattern(2), NULL));
	CHECK_OK(sc, gvm_vm_stats(ms.c.vm, &st));
	CHECK(sc, st.svm_migrations == 1);	/* in VRAM now */
	actors(sc, fns, 2, (void *)sc);
	/* both served, both writes kept, wherever the range is now */
	CHECK(sc, !ms.faults);
	CHECK(sc, ms_word(sc, ms.a + 64) == 0x33);
	CHECK(sc, ms_word(sc, ms.a + 8) == 0x22);
	CHECK(sc, ms_word(sc, ms.a) == w0);
	for (unsigned int i = 2; i < MS_WORDS; i++)
		if (i != 8)
			CHECK(sc, ms_word(sc, ms.a + 8 * i) == ms_pattern(i));
	ms_finish(sc);
}

/* ---- migrate-reclaim, fault-reclaim: a GPU fault vs a reclaim ------------ */

static void *fr_reclaim(void *arg)
{
	/* the pages move to other frames (if in system memory) */
	CHECK((const char *)arg,
	      gvm_mm_model_reclaim(ms.c.mm, ms.a, MS_BYTES) >= 0);
	return NULL;
}

static void fault_reclaim_with(const char *sc, const char *policy)
{
	static void *(*const fns[])(void *) = { ms_gpu_store8, fr_reclaim };

	ms_setup(sc, policy);
	actors(sc, fns, 2, (void *)sc);
	CHECK(sc, !ms.faults);
	CHECK(sc, ms_word(sc, ms.a + 64) == 0x33);
	ms_check_pattern(sc, 8);
	ms_finish(sc);
}

/* The fault migrates the range to VRAM (the reclaim moves what is left). */
static void migrate_reclaim(void)
{
	fault_reclaim_with("migrate-reclaim", "default");
}

/* The fault maps the system frames the reclaim moves. */
static void fault_reclaim(void)
{
	fault_reclaim_with("fault-reclaim", "remote");
}

const struct gvm_det_scenario gvm_det_scenarios[] = {
	{ "seed000", "a bind's staged update vs an invalidation of its "
		     "neighbour (seed 000)", seed000, NULL },
	{ "bind-race", "two binds in one page table vs an exec", bind_race,
	  NULL },
	{ "unbind-exec", "an unbind vs a kernel storing to the range",
	  unbind_exec, NULL },
	{ "fault-unbind", "a GPU fault being serviced vs an unbind of the "
			  "range (fault mode)", fault_unbind, NULL },
	{ "gc-fault", "the SVM collector after an UNMAP vs a GPU fault on "
		      "the same range", gc_fault, NULL },
	{ "evict-exec", "eviction of a BO a kernel is filling vs a new BO "
			"that needs its room", evict_exec, NULL },
	{ "fault-munmap", "model mm: a GPU fault migrating a range to VRAM "
			  "vs a munmap of it", fault_munmap,
	  &gvm__svm_mutant_no_seq_recheck },
	{ "gc-remap", "model mm: the collector after a munmap and mmap vs a "
		      "GPU fault on the range", gc_remap,
	  &gvm__svm_mutant_no_seq_recheck },
	{ "cpu-gpu-fault", "model mm: a CPU fault-back of a range in VRAM vs "
			   "a GPU fault on it", cpu_gpu_fault,
	  &gvm__svm_mutant_no_seq_recheck },
	{ "migrate-reclaim", "model mm: a GPU fault migrating a range vs a "
			     "reclaim of its pages", migrate_reclaim,
	  &gvm__svm_mutant_no_seq_recheck },
	{ "fault-reclaim", "model mm: a GPU fault mapping system pages vs a "
			   "reclaim of them", fault_reclaim,
	  &gvm__svm_mutant_no_seq_recheck },
};
const unsigned int gvm_det_nr_scenarios =
	sizeof(gvm_det_scenarios) / sizeof(gvm_det_scenarios[0]);

const struct gvm_det_scenario *gvm_det_scenario_find(const char *name)
{
	for (unsigned int i = 0; i < gvm_det_nr_scenarios; i++)
		if (!strcmp(gvm_det_scenarios[i].name, name))
			return &gvm_det_scenarios[i];
	return NULL;
}
