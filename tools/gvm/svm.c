// SPDX-License-Identifier: MIT
/*
 * gvm run svm-stream / svm-random: shared virtual memory on malloc'd
 * memory, no buffer object at all (docs/svm.md).
 *
 * Per device: the process's mm (gvm_mm_self), a fault-mode VM mirroring
 * the whole address space (GPU address X is CPU address X), one queue per
 * compute engine.
 *
 *  svm-stream: three malloc'd arrays of --size bytes; the CPU writes b and
 *    c, then --iters triad kernels a = b + 3c run on them: the first GPU
 *    touch of each range faults and migrates it to VRAM, later iterations
 *    run from VRAM.  The CPU then checks every element of a (which brings
 *    the arrays back).
 *  svm-random: one malloc'd array of --size bytes, --iters steps; each
 *    picks a random piece (4 KiB to 2 MiB) and either the GPU fills it
 *    with a step-unique pattern or the CPU writes one, so ranges move back
 *    and forth the way a mixed CPU/GPU program makes them; a shadow copy
 *    on the CPU side checks every byte at the end.
 *  svm-multi: one malloc'd array of --size bytes shared by all devices
 *    (--devices N, --link to make them one owner group): device i fills
 *    its slice --iters times, then checksums its neighbour's slice, which
 *    is in the neighbour's memory: mapped peer to peer when the devices
 *    are linked, migrated through system memory when not.  The CPU then
 *    checks every word.  Devices meet at a barrier between the phases.
 *
 * --model (svm-stream, svm-random): the same on a model mm
 * (gvm_mm_model_create, docs/mm.md) instead of the process's: the arrays
 * are model mappings (gvm_mm_model_mmap), the CPU reads and writes them
 * through the model (a page in VRAM comes back inside the call, as a CPU
 * fault would), and they are unmapped at the end (gvm_mm_model_munmap:
 * the ranges are invalidated first and collected).  Nothing then comes
 * from the kernel's userfaultfd thread, so the run can be deterministic
 * (--record).
 *
 * The report adds the SVM counters (faults by range size, migrations and
 * bytes each way); --trace records faults and migrations.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/mm.h>
#include <gvm/mm_model.h>

#include "run.h"

#define MAX_QUEUES 16
#define MIRROR_START 4096ull
#define MIRROR_END (1ull << 47)
#define SCALAR 3.0
#define M2 (2ull << 20)

/*
 * Under ThreadSanitizer the runtime keeps its own state (allocator
 * metadata, per-thread state) in anonymous mappings that the kernel may
 * merge with a malloc'd array's, and every instrumented thread, gvm's
 * event thread included, touches it.  A range or the prefetch policy's
 * sweep (2 MiB past the last fault) would move it to device memory, and
 * the event thread would fault on it inside the runtime and wait for
 * itself (docs/svm.md, "Under ThreadSanitizer").  There the arrays
 * get mappings of their own between PROT_NONE guards: one page before
 * (no merge), the sweep's reach after.  Elsewhere they are malloc'd.
 */
#if defined(__SANITIZE_THREAD__)
#define GUARDED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GUARDED 1
#endif
#endif

#ifdef GUARDED
#define GUARD_BEFORE 4096ull
#define GUARD_AFTER M2

static uint64_t arr_span(uint64_t size)
{
	return GUARD_BEFORE + ((size + 4095) & ~4095ull) + GUARD_AFTER;
}

/* @size bytes aligned to @align (a power of 2), or NULL. */
static void *arr_alloc(uint64_t size, uint64_t align)
{
	uint64_t len = arr_span(size) + align, base, a, lo, hi;
	void *p;

	p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	base = (uintptr_t)p;
	a = (base + GUARD_BEFORE + align - 1) & ~(align - 1);
	lo = a - GUARD_BEFORE;
	hi = lo + arr_span(size);
	/* keep [lo, hi) only */
	if (lo > base)
		munmap(p, lo - base);
	if (hi < base + len)
		munmap((void *)(uintptr_t)hi, base + len - hi);
	if (mprotect((void *)(uintptr_t)a, size, PROT_READ | PROT_WRITE)) {
		munmap((void *)(uintptr_t)lo, hi - lo);
		return NULL;
	}
	return (void *)(uintptr_t)a;
}

static void arr_free(void *p, uint64_t size)
{
	if (p)
		munmap((char *)p - GUARD_BEFORE, arr_span(size));
}
#else
static void *arr_alloc(uint64_t size, uint64_t align)
{
	void *p;

	if (align <= 16)
		return malloc(size);
	return posix_memalign(&p, align, size) ? NULL : p;
}

static void arr_free(void *p, uint64_t size)
{
	(void)size;
	free(p);
}
#endif

struct svm_run {
	struct run_dev *d;
	struct gvm_mm *mm;
	bool model;			/* mm is a model mm (--model) */
	struct gvm_vm *vm;
	struct gvm_queue *q[MAX_QUEUES];
	unsigned int nq;
};

static uint64_t svm_vram(const struct run_opts *o)
{
	/* The arrays may all move to VRAM, plus page tables and slack. */
	return 3 * o->size + 3 * (o->size >> 9) + (4ull << 20);
}

static int svm_open(struct svm_run *s, struct run_dev *d)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR,
				  .addr = MIRROR_START,
				  .range = MIRROR_END - MIRROR_START };
	struct gvm_device_info di;
	int err;

	memset(s, 0, sizeof(*s));
	s->d = d;
	s->model = d->o->model;
	if (s->model) {
		/* room for the arrays, each 2 MiB aligned, and slack */
		struct gvm_mm_model_config mc = {
			.size = ((3 * d->o->size + M2 - 1) & ~(M2 - 1)) +
				4 * M2,
		};

		err = gvm_mm_model_create(&mc, &s->mm);
		if (err) {
			run_fail(d, "gvm_mm_model_create: %s", strerror(-err));
			return err;
		}
	} else {
		err = gvm_mm_self(&s->mm);
		if (err) {
			run_fail(d, "gvm_mm_self: %s", strerror(-err));
			return err;
		}
	}
	err = gvm_vm_create(d->dev, s->mm, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
			    &s->vm);
	if (err) {
		run_fail(d, "gvm_vm_create(FAULT_MODE): %s", strerror(-err));
		return err;
	}
	err = gvm_vm_bind(s->vm, NULL, &op, 1, NULL, 0);
	if (err) {
		run_fail(d, "gvm_vm_bind(CPU_ADDR_MIRROR): %s", strerror(-err));
		return err;
	}
	err = gvm_device_query(d->dev, &di);
	s->nq = err ? 1 : di.nr_compute < MAX_QUEUES ? di.nr_compute :
						       MAX_QUEUES;
	for (unsigned int i = 0; i < s->nq; i++) {
		err = gvm_queue_create(s->vm, GVM_ENGINE_COMPUTE, &s->q[i]);
		if (err) {
			run_fail(d, "gvm_queue_create: %s", strerror(-err));
			s->nq = i;
			return err;
		}
	}
	run_say(d, "1. A fault-mode VM mirrors the whole address space "
		   "(CPU_ADDR_MIRROR): any pointer\n   is a GPU address; "
		   "nothing is bound until the GPU faults there.\n");
	return 0;
}

static void svm_close(struct svm_run *s)
{
	int err;

	for (unsigned int i = 0; i < s->nq; i++)
		gvm_queue_destroy(s->q[i]);
	if (s->vm) {
		run_snapshot(s->d, s->vm);
		err = gvm_vm_destroy(s->vm);
		if (err)
			run_fail(s->d, "gvm_vm_destroy: %s", strerror(-err));
	}
	if (s->mm && s->model) {
		struct gvm_mm_model_stats st;

		/* no engine wrote a frame after its invalidation */
		if (!gvm_mm_model_stats(s->mm, &st) && st.poison_violations)
			run_fail(s->d, "%" PRIu64 " model frames written after "
				 "their invalidation", st.poison_violations);
	}
	if (s->mm)
		gvm_mm_put(s->mm);
}

/*
 * The workloads' memory: malloc'd (GPU address == pointer), or with
 * --model a mapping of the model mm (GPU address == model address), which
 * the CPU reaches only through gvm_mm_model_read/_write.  svm_mem_free
 * unmaps it (model) or frees it.  0 or a negative errno (run_fail'ed).
 */
static int svm_mem_alloc(struct svm_run *s, uint64_t size, uint64_t *gpu)
{
	void *p;
	int err;

	if (!s->model) {
		p = arr_alloc(size, 16);
		if (!p) {
			run_fail(s->d, "malloc: out of memory");
			return -ENOMEM;
		}
		*gpu = (uintptr_t)p;
		return 0;
	}
	err = gvm_mm_model_mmap(s->mm, 0, size, PROT_READ | PROT_WRITE, 0,
				gpu);
	if (err)
		run_fail(s->d, "gvm_mm_model_mmap: %s", strerror(-err));
	return err;
}

static int svm_mem_free(struct svm_run *s, uint64_t gpu, uint64_t size)
{
	int err;

	if (!gpu)
		return 0;
	if (!s->model) {
		arr_free((void *)(uintptr_t)gpu, size);
		return 0;
	}
	err = gvm_mm_model_munmap(s->mm, gpu, size);
	if (err)
		run_fail(s->d, "gvm_mm_model_munmap: %s", strerror(-err));
	return err;
}

/* CPU accesses of [gpu, gpu + len): memcpy, or through the model. */
static int svm_cpu_write(struct svm_run *s, uint64_t gpu, const void *buf,
			 uint64_t len)
{
	int err;

	if (!s->model) {
		memcpy((void *)(uintptr_t)gpu, buf, len);
		return 0;
	}
	err = gvm_mm_model_write(s->mm, gpu, buf, len);
	if (err)
		run_fail(s->d, "gvm_mm_model_write: %s", strerror(-err));
	return err;
}

static int svm_cpu_read(struct svm_run *s, uint64_t gpu, void *buf,
			uint64_t len)
{
	int err;

	if (!s->model) {
		memcpy(buf, (void *)(uintptr_t)gpu, len);
		return 0;
	}
	err = gvm_mm_model_read(s->mm, gpu, buf, len);
	if (err)
		run_fail(s->d, "gvm_mm_model_read: %s", strerror(-err));
	return err;
}

/*
 * Runs @k[0..@n) over the queues and waits for them.  An LR VM's jobs
 * signal user fences (no fence out): 0, or an error (a failed kernel
 * shows as a fault in the VM's log; this tool then reports -EIO).
 */
static int run_split(struct svm_run *s, struct gvm_kernel *k, unsigned int n)
{
	uint64_t uf[MAX_QUEUES] = { 0 };
	struct gvm_fault_info f;
	uint32_t nf = 0;
	int err = 0;

	for (unsigned int i = 0; i < n && !err; i++) {
		struct gvm_sync sy = { .type = GVM_SYNC_USER_FENCE,
				       .flags = GVM_SYNC_SIGNAL,
				       .addr = &uf[i], .value = 1 };

		err = gvm_exec(s->q[i % s->nq], &k[i], &sy, 1);
		if (err)
			n = i;
	}
	for (unsigned int i = 0; i < n; i++)
		gvm_user_fence_wait(&uf[i], 1, GVM_TIMEOUT_INFINITE);
	if (!err && !gvm_vm_query_faults(s->vm, &f, 1, &nf) && nf)
		err = -EIO;
	return err;
}

/*
 * Sets the @n doubles at @gpu to @v from the CPU (@host: a buffer of @n
 * doubles for the model's copy).
 */
static int svm_set_doubles(struct svm_run *s, uint64_t gpu, double *host,
			   uint64_t n, double v)
{
	double *p = s->model ? host : (double *)(uintptr_t)gpu;

	for (uint64_t i = 0; i < n; i++)
		p[i] = v;
	return s->model ? svm_cpu_write(s, gpu, host, n * 8) : 0;
}

/* The @n doubles at @gpu as the CPU reads them (into @host: model). */
static const double *svm_get_doubles(struct svm_run *s, uint64_t gpu,
				     double *host, uint64_t n)
{
	if (!s->model)
		return (const double *)(uintptr_t)gpu;
	return svm_cpu_read(s, gpu, host, n * 8) ? NULL : host;
}

static void stream_run(struct run_dev *d)
{
	const struct run_opts *o = d->o;
	const uint64_t n = o->size / 8;
	const double b0 = 2.0 + 1.0 / (1 << 21), c0 = 3.0 + 1.0 / (1 << 21);
	const double want[3] = { b0 + SCALAR * c0, b0, c0 };
	uint64_t arr[3] = { 0, 0, 0 };	/* a, b, c */
	double *host = NULL;		/* --model: the CPU's copy */
	struct gvm_kernel k[MAX_QUEUES];
	struct svm_run s;
	uint64_t it, i, slice;
	int64_t t0;
	int err;

	__atomic_store_n(&d->total, o->iters, __ATOMIC_RELAXED);
	if (svm_open(&s, d))
		goto out;
	if (s.model && !(host = malloc(o->size))) {
		run_fail(d, "malloc: out of memory");
		goto out;
	}
	for (i = 0; i < 3; i++)
		if (svm_mem_alloc(&s, o->size, &arr[i]))
			goto out;
	if (svm_set_doubles(&s, arr[0], host, n, 0) ||
	    svm_set_doubles(&s, arr[1], host, n, b0) ||
	    svm_set_doubles(&s, arr[2], host, n, c0))
		goto out;
	run_say(d, "2. %s x 3: arrays a, b, c of %" PRIu64 " doubles, "
		   "written by the CPU.\n",
		s.model ? "gvm_mm_model_mmap()" : "malloc()", n);
	slice = (n + s.nq - 1) / s.nq;
	t0 = gvm_tool_now_ns();
	for (it = 0, err = 0; it < o->iters && !err; it++) {
		unsigned int nk = 0;

		for (i = 0; i < n; i += slice, nk++) {
			uint64_t len = n - i < slice ? n - i : slice;

			err = gvm_kernel_triad(&k[nk], arr[0] + 8 * i,
					       arr[1] + 8 * i, arr[2] + 8 * i,
					       len, SCALAR);
			if (err)
				break;
		}
		if (!err)
			err = run_split(&s, k, nk);
		__atomic_fetch_add(&d->done, 1, __ATOMIC_RELAXED);
		if (it == 0)
			run_snapshot(d, s.vm);
	}
	d->ns = gvm_tool_now_ns() - t0;
	if (err) {
		run_fail(d, "triad kernel: %s", strerror(-err));
		goto out;
	}
	d->bytes = 3 * o->size * o->iters;
	run_say(d, "3. gvm_exec() x %" PRIu64 ": triad a = b + 3c on the "
		   "arrays' own addresses.  The first\n   iteration faulted: "
		   "%" PRIu64 " ranges made and moved to VRAM; the others "
		   "ran from VRAM.\n",
		o->iters, d->vs.svm_ranges_created);
	for (unsigned int j = 0; j < 3; j++) {
		const double *p = svm_get_doubles(&s, arr[j], host, n);

		if (!p)
			goto out;
		for (i = 0; i < n; i++) {
			if (p[i] != want[j]) {
				run_fail(d, "wrong result at element %" PRIu64
					 " of %c", i, "abc"[j]);
				goto out;
			}
		}
	}
	d->checks = n;
	snprintf(d->result, sizeof(d->result),
		 "svm triad verified on %s memory, all %" PRIu64 " doubles",
		 s.model ? "model mm" : "malloc'd", n);
	run_say(d, "4. The CPU reads every element: each range comes back to "
		   "system memory on\n   its first touch (%s), all "
		   "correct.\n", s.model ?
		   "inside gvm_mm_model_read()" :
		   "a userfaultfd fault served by gvm");
out:
	if (s.model)
		for (i = 0; i < 3; i++)
			svm_mem_free(&s, arr[i], o->size);
	svm_close(&s);
	if (!s.model)
		for (i = 0; i < 3; i++)
			svm_mem_free(&s, arr[i], o->size);
	free(host);
}

/* xorshift64: the random sequence of --iters steps (seeded per device). */
static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void random_run(struct run_dev *d)
{
	const struct run_opts *o = d->o;
	uint8_t *shadow = malloc(o->size), *host = NULL;
	uint64_t seed = 0x9e3779b97f4a7c15ull * (d->index + 1), it, p = 0;
	uint64_t gpu_steps = 0, cpu_steps = 0;
	struct svm_run s;
	int64_t t0;
	int err = 0;

	__atomic_store_n(&d->total, o->iters, __ATOMIC_RELAXED);
	if (svm_open(&s, d))
		goto out;
	/* --model: the CPU's writes and the final read go through host */
	if (s.model)
		host = malloc(o->size);
	if (!shadow || (s.model && !host)) {
		run_fail(d, "malloc: out of memory");
		goto out;
	}
	if (svm_mem_alloc(&s, o->size, &p))
		goto out;
	memset(shadow, 0, o->size);
	if (svm_cpu_write(&s, p, shadow, o->size))
		goto out;
	t0 = gvm_tool_now_ns();
	for (it = 0; it < o->iters && !err; it++) {
		uint64_t r = next_rand(&seed);
		uint64_t len = 4096ull << (r % 10);	/* 4 KiB .. 2 MiB */
		uint64_t off, pat = (uint32_t)(it * 2654435761u) | 1;
		struct gvm_kernel k;

		if (len > o->size)
			len = o->size;
		off = (next_rand(&seed) % (o->size / 4096 - len / 4096 + 1)) *
		      4096;
		for (uint64_t j = 0; j < len; j += 4)
			memcpy(shadow + off + j, &pat, 4);
		if (r & (1ull << 40)) {
			err = gvm_kernel_fill(&k, p + off, len, (uint32_t)pat);
			if (!err)
				err = run_split(&s, &k, 1);
			gpu_steps++;
		} else {
			if (svm_cpu_write(&s, p + off, shadow + off, len))
				goto out;
			cpu_steps++;
		}
		__atomic_fetch_add(&d->done, 1, __ATOMIC_RELAXED);
	}
	d->ns = gvm_tool_now_ns() - t0;
	if (err) {
		run_fail(d, "fill kernel: %s", strerror(-err));
		goto out;
	}
	run_say(d, "2. %" PRIu64 " random steps over a%s array: %"
		   PRIu64 " GPU fills, %" PRIu64 " CPU writes;\n   ranges "
		   "move to VRAM on GPU faults and back on CPU touches.\n",
		o->iters, s.model ? " model mm" : " malloc'd", gpu_steps,
		cpu_steps);
	if (s.model ? svm_cpu_read(&s, p, host, o->size) ||
			      memcmp(host, shadow, o->size) :
		      memcmp((void *)(uintptr_t)p, shadow, o->size)) {
		run_fail(d, "the array differs from its shadow copy");
		goto out;
	}
	d->checks = o->size;
	snprintf(d->result, sizeof(d->result),
		 "%" PRIu64 " GPU and %" PRIu64 " CPU steps, every byte "
		 "checked against a shadow copy", gpu_steps, cpu_steps);
out:
	if (s.model)
		svm_mem_free(&s, p, o->size);
	svm_close(&s);
	if (!s.model)
		svm_mem_free(&s, p, o->size);
	free(shadow);
	free(host);
}

static void svm_report(const struct run_dev *d)
{
	printf("  time        %.1f ms for %" PRIu64 " iterations\n",
	       (double)d->ns / 1e6, d->o->iters);
}

static void svm_total(const struct run_dev *devs, unsigned int n,
		      int64_t wall)
{
	(void)devs;
	printf("wall time %.2f s for %u device%s (with setup and "
	       "verification)\n", (double)wall / 1e9, n, n == 1 ? "" : "s");
}

/* ---- svm-multi ---------------------------------------------------------- */

/*
 * What the devices' threads share (made by the first one there), and
 * the barrier between the phases: one of its own, which the run can
 * abort when not every device's thread started (a pthread barrier would
 * wait for them for ever).
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool ready;			/* lock */
	unsigned int parties, arrived;	/* lock */
	uint64_t gen;			/* lock: barrier rounds */
	bool aborted;			/* lock */
	uint64_t *p;			/* the array, 2 MiB aligned */
	uint64_t size;			/* its size */
} multi = { .lock = PTHREAD_MUTEX_INITIALIZER,
	    .cond = PTHREAD_COND_INITIALIZER };

static void multi_init(const struct run_opts *o)
{
	pthread_mutex_lock(&multi.lock);
	if (!multi.ready) {
		multi.parties = o->sys.nr_devices;
		multi.p = arr_alloc(o->size, M2);
		multi.size = o->size;
		multi.ready = true;
	}
	pthread_mutex_unlock(&multi.lock);
}

/* Waits for every device's thread; false if the run was aborted. */
static bool multi_wait(void)
{
	bool ok;

	pthread_mutex_lock(&multi.lock);
	if (!multi.aborted && ++multi.arrived == multi.parties) {
		multi.arrived = 0;
		multi.gen++;
		pthread_cond_broadcast(&multi.cond);
	} else {
		uint64_t gen = multi.gen;

		while (!multi.aborted && multi.gen == gen)
			pthread_cond_wait(&multi.cond, &multi.lock);
	}
	ok = !multi.aborted;
	pthread_mutex_unlock(&multi.lock);
	return ok;
}

static void multi_abort(void)
{
	pthread_mutex_lock(&multi.lock);
	multi.aborted = true;
	pthread_cond_broadcast(&multi.cond);
	pthread_mutex_unlock(&multi.lock);
}

/* A barrier of multi_run: on an aborted run, the thread fails. */
static void multi_phase(struct run_dev *d, int *err)
{
	if (!multi_wait() && !*err) {
		run_fail(d, "not every device's thread could be started");
		*err = -ECANCELED;
	}
}

/* The word device @i's fills leave in round @it. */
static uint64_t multi_word(unsigned int i, uint64_t it)
{
	return (uint64_t)(uint32_t)(0x1000 * (i + 1) + it) * 0x100000001ull;
}

static void multi_run(struct run_dev *d)
{
	const struct run_opts *o = d->o;
	unsigned int n = o->sys.nr_devices, me = d->index;
	unsigned int peer = (me + 1) % n;
	uint64_t slice = o->size / n & ~4095ull, it, i;
	uint64_t *out = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t last = o->iters - 1;
	struct gvm_kernel k;
	struct svm_run s;
	uint8_t *mine, *theirs;
	int64_t t0;
	int err = 0;

	multi_init(o);
	__atomic_store_n(&d->total, o->iters + 1, __ATOMIC_RELAXED);
	if (out == MAP_FAILED || !multi.p) {
		run_fail(d, "out of memory");
		err = -ENOMEM;
	}
	if (!err)
		err = svm_open(&s, d);
	mine = (uint8_t *)multi.p + me * slice;
	theirs = (uint8_t *)multi.p + peer * slice;
	t0 = gvm_tool_now_ns();
	/* 1: every device fills its own slice (it moves there) */
	for (it = 0; it < o->iters && !err; it++) {
		err = gvm_kernel_fill(&k, (uintptr_t)mine, slice,
				      (uint32_t)multi_word(me, it));
		if (!err)
			err = run_split(&s, &k, 1);
		__atomic_fetch_add(&d->done, 1, __ATOMIC_RELAXED);
	}
	if (err)
		run_fail(d, "fill: %s", strerror(-err));
	run_say(d, "2. Each device filled its slice of one malloc'd array "
		   "%" PRIu64 " times: the\n   slices moved into the devices' "
		   "memories.\n", o->iters);
	multi_phase(d, &err);
	/* 2: every device reads its neighbour's slice */
	if (!err) {
		*out = 0;
		err = gvm_kernel_checksum(&k, (uintptr_t)theirs, slice,
					  (uintptr_t)out);
		if (!err)
			err = run_split(&s, &k, 1);
		if (err)
			run_fail(d, "checksum: %s", strerror(-err));
		else if (*out != slice / 8 * multi_word(peer, last))
			run_fail(d, "the neighbour's slice sums wrong");
		__atomic_fetch_add(&d->done, 1, __ATOMIC_RELAXED);
	}
	d->ns = gvm_tool_now_ns() - t0;
	run_say(d, "3. Each device read its neighbour's slice: %s.\n",
		o->sys.link ? "linked, so mapped peer to peer in the "
			      "neighbour's memory" :
			      "not linked, so migrated through system memory");
	multi_phase(d, &err);
	/* 3: the CPU checks this device's slice (back to system memory) */
	for (i = 0; !err && !d->failed && i < slice / 8; i++) {
		if (((uint64_t *)mine)[i] != multi_word(me, last)) {
			run_fail(d, "wrong word at %" PRIu64, i);
			break;
		}
	}
	if (!err && !d->failed) {
		d->checks = slice / 8;
		d->bytes = slice * o->iters + slice;
		snprintf(d->result, sizeof(d->result),
			 "slice %u of the shared array verified, "
			 "neighbour's read %s", me,
			 o->sys.link ? "peer to peer" : "after migration");
	}
	if (s.vm || s.mm)
		svm_close(&s);
	multi_phase(d, &err);
	if (out != MAP_FAILED)
		munmap(out, 4096);
}

static int multi_check(const struct run_opts *o)
{
	if (o->size / o->sys.nr_devices < 4096) {
		fprintf(stderr, "gvm run svm-multi: --size must give each "
			"device at least 4K\n");
		return 2;
	}
	return 0;
}

static uint64_t multi_vram(const struct run_opts *o)
{
	/* its slice and its neighbour's, page tables and slack */
	return 2 * (o->size / o->sys.nr_devices) + (o->size >> 8) +
	       (4ull << 20);
}

static void multi_report(const struct run_dev *d)
{
	printf("  svm         %" PRIu64 " migrations in, %" PRIu64
	       " ranges mapped in a peer's memory, %" PRIu64
	       " moves out of this device\n",
	       d->vs.svm_migrations, d->vs.svm_p2p_binds,
	       d->vs.dev_svm_to_system);
	svm_report(d);
}

static void multi_total(const struct run_dev *devs, unsigned int n,
			int64_t wall)
{
	svm_total(devs, n, wall);
	arr_free(multi.p, multi.size);
	multi.p = NULL;
	multi.ready = false;
}

const struct run_workload gvm_run_svm_multi = {
	.name = "svm-multi",
	.intro = "one malloc'd array split across devices: each fills its "
		 "slice, then reads its\nneighbour's (peer to peer with "
		 "--link, else migrated); the CPU checks it all.",
	.what = "one malloc'd array across devices [--size 16M --iters 4 "
		"--link]",
	.default_size = 16ull << 20,
	.default_iters = 4,
	.unit = "steps",
	.check = multi_check,
	.vram_needed = multi_vram,
	.run = multi_run,
	.abort = multi_abort,
	.report = multi_report,
	.total = multi_total,
};

const struct run_workload gvm_run_svm_stream = {
	.name = "svm-stream",
	.intro = "the STREAM triad on three malloc'd arrays: no buffer "
		 "object, the GPU faults\non the CPU's own pointers and gvm "
		 "moves the memory to VRAM and back.",
	.what = "triad on malloc'd arrays through SVM [--size 16M --iters 10]",
	.default_size = 16ull << 20,
	.default_iters = 10,
	.unit = "iterations",
	.vram_needed = svm_vram,
	.model = true,
	.run = stream_run,
	.report = svm_report,
	.total = svm_total,
};

const struct run_workload gvm_run_svm_random = {
	.name = "svm-random",
	.intro = "random GPU fills and CPU writes of 4 KiB..2 MiB pieces of "
		 "one malloc'd array:\nmemory moves back and forth; a shadow "
		 "copy checks every byte.",
	.what = "random CPU/GPU writes on malloc'd memory [--size 16M "
		"--iters 200]",
	.default_size = 16ull << 20,
	.default_iters = 200,
	.unit = "steps",
	.vram_needed = svm_vram,
	.model = true,
	.run = random_run,
	.report = svm_report,
	.total = svm_total,
};
