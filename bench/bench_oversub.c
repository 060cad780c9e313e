// SPDX-License-Identifier: MIT
/*
 * Oversubscribed SVM benchmarks (docs/svm.md, "Oversubscription"): GPU
 * kernels on more process memory than the device has VRAM, on a simulated
 * device with 16 MiB of VRAM, through gvm_mm_self.
 *
 *  oversub_150_seq: one GPU checksum sweep over 24 MiB (150% of VRAM, 64
 *    KiB ranges) whose data starts in system memory: bytes migrated to
 *    VRAM against the minimum necessary (every byte once).  Anything above
 *    1 is a range evicted before the sweep was done with it (ping-pong
 *    inside one sweep).  Goal <= 1.1.
 *  oversub_150_rand: a stream of random 64 KiB GPU accesses (a checksum
 *    kernel each) over 150% of VRAM, against the same number of accesses,
 *    from the same random sequence, over 100% of VRAM: time ratio.  The
 *    note gives faults per access of each.  Goal <= 3.
 *
 * Each figure is the median of GVM_BENCH_REPS runs; between runs the CPU
 * reads everything back, so each run starts from system memory.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/vm.h>

#include "bench.h"
#include "core/atomic.h"
#include "mm/mm.h"
#include "vm/vm.h"

#define K4 4096ull
#define K64 (64ull << 10)
#define M1 (1ull << 20)
#define M2 (2ull << 20)
#define VRAM (16ull << 20)
#define MIRROR_END (1ull << 47)

struct ob {
	struct gvm_mm *mm;
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *q;
	uint64_t *out;		/* shared page: never migrates */
	uint8_t *mem;		/* the working set's mapping */
	uint64_t size;
};

static int ob_setup(struct ob *s, uint64_t size)
{
	struct gvm_sim_config cfg = { .vram_size = VRAM };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	int err;

	memset(s, 0, sizeof(*s));
	s->out = MAP_FAILED;
	s->mem = MAP_FAILED;
	err = gvm_mm_self(&s->mm);
	if (!err)
		err = gvm_sim_device_create(&cfg, &s->dev);
	if (!err)
		err = gvm_vm_create(s->dev, s->mm, GVM_VM_LR_MODE |
				    GVM_VM_FAULT_MODE, &s->vm);
	if (!err)
		err = gvm_queue_create(s->vm, GVM_ENGINE_COMPUTE, &s->q);
	if (!err)
		err = gvm_vm_bind(s->vm, NULL, &op, 1, NULL, 0);
	if (err)
		return err;
	s->out = mmap(NULL, K4, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	/* Reserved PROT_NONE; ob_map() opens the blocks' mappings (block()). */
	s->size = size;
	s->mem = mmap(NULL, 2 * size + M2, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->out == MAP_FAILED || s->mem == MAP_FAILED)
		return -ENOMEM;
	return 0;
}

static void ob_teardown(struct ob *s)
{
	if (s->q)
		gvm_queue_destroy(s->q);
	if (s->vm)
		gvm_vm_destroy(s->vm);
	gvm_device_put(s->dev);
	gvm_mm_put(s->mm);
	if (s->out != MAP_FAILED)
		munmap(s->out, K4);
	if (s->mem != MAP_FAILED)
		munmap(s->mem, 2 * s->size + M2);
}

/*
 * The address of the @i-th 64 KiB block of the working set: blocks live
 * in 960 KiB mappings (15 blocks) separated by 64 KiB PROT_NONE gaps, so
 * every SVM range is 64 KiB (no 2 MiB block fits a mapping).
 */
static uint8_t *block(struct ob *s, uint64_t i)
{
	uint8_t *base = (uint8_t *)(((uintptr_t)s->mem + M2 - 1) &
				    ~(uintptr_t)(M2 - 1));

	return base + (i / 15) * M1 + (i % 15) * K64;
}

static uint64_t nr_blocks(uint64_t size)
{
	return size / K64;
}

/* Makes the working set's mappings and fills them. */
static int ob_map(struct ob *s)
{
	for (uint64_t i = 0; i < nr_blocks(s->size); i += 15) {
		uint64_t n = nr_blocks(s->size) - i < 15 ?
				     nr_blocks(s->size) - i : 15;

		if (mprotect(block(s, i), n * K64, PROT_READ | PROT_WRITE))
			return -errno;
	}
	for (uint64_t i = 0; i < nr_blocks(s->size); i++)
		memset(block(s, i), (int)i, K64);
	return 0;
}

/* The CPU reads every block: all data back in system memory. */
static void cpu_touch_all(struct ob *s)
{
	volatile uint8_t sink = 0;

	for (uint64_t i = 0; i < nr_blocks(s->size); i++)
		for (uint64_t o = 0; o < K64; o += K4)
			sink ^= block(s, i)[o];
	(void)sink;
}

static int gpu_sum(struct ob *s, const void *va, uint64_t len)
{
	uint64_t uf = 0;
	struct gvm_sync sync = { .type = GVM_SYNC_USER_FENCE,
				 .flags = GVM_SYNC_SIGNAL, .addr = &uf,
				 .value = 1 };
	struct gvm_kernel k;
	int err;

	err = gvm_kernel_checksum(&k, (uintptr_t)va, len, (uintptr_t)s->out);
	if (!err)
		err = gvm_exec(s->q, &k, &sync, 1);
	if (!err)
		err = gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE);
	return err;
}

static uint64_t stat_of(struct gvm_vm *vm, int which)
{
	struct gvm_vm_stats st;

	if (gvm_vm_stats(vm, &st))
		return 0;
	return which ? st.faults : st.bytes_to_vram;
}

GVM_BENCH(oversub_150_seq,
	  "sequential GPU sweep over 150% of VRAM: bytes migrated / minimum")
{
	const uint64_t size = VRAM * 3 / 2;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	uint64_t evicted = 0;
	struct ob s;
	int err, r;

	(void)ctx;
	err = ob_setup(&s, size);
	if (!err)
		err = ob_map(&s);
	for (r = 0; r < GVM_BENCH_REPS && !err; r++) {
		uint64_t b0 = stat_of(s.vm, 0), e0;
		struct gvm_vm_stats st;

		gvm_vm_stats(s.vm, &st);
		e0 = st.svm_evictions;
		/* one sweep, block after block, each its own kernel */
		for (uint64_t i = 0; i < nr_blocks(size) && !err; i += 15)
			err = gpu_sum(&s, block(&s, i),
				      (nr_blocks(size) - i < 15 ?
					       nr_blocks(size) - i : 15) * K64);
		v[r] = (double)(stat_of(s.vm, 0) - b0) / (double)M1;
		b[r] = (double)size / (double)M1;
		gvm_vm_stats(s.vm, &st);
		evicted = st.svm_evictions - e0;
		cpu_touch_all(&s);
	}
	res->value = gvm_bench_median(v, GVM_BENCH_REPS);
	res->unit = "MiB migrated";
	res->baseline = "the working set (each byte once)";
	res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
	res->goal = 1.1;
	snprintf(res->note, sizeof(res->note),
		 "24 MiB of 64 KiB ranges on 16 MiB of VRAM; %llu evictions "
		 "in the last sweep", (unsigned long long)evicted);
	ob_teardown(&s);
	return err;
}

/* A xorshift stream, the same for both sizes. */
static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* @accesses random 64 KiB GPU accesses over @size: ns per access. */
static int rand_run(uint64_t size, uint64_t accesses, double *ns,
		    double *faults_per_access)
{
	double t[GVM_BENCH_REPS], f[GVM_BENCH_REPS];
	struct ob s;
	int err, r;

	err = ob_setup(&s, size);
	if (!err)
		err = ob_map(&s);
	for (r = 0; r < GVM_BENCH_REPS && !err; r++) {
		uint64_t x = 0x2545f4914f6cdd1dull, f0 = stat_of(s.vm, 1);
		int64_t t0 = gvm_bench_now_ns();

		for (uint64_t i = 0; i < accesses && !err; i++)
			err = gpu_sum(&s, block(&s, next_rand(&x) %
						       nr_blocks(size)),
				      K64);
		t[r] = (double)(gvm_bench_now_ns() - t0) / (double)accesses;
		f[r] = (double)(stat_of(s.vm, 1) - f0) / (double)accesses;
		cpu_touch_all(&s);
	}
	*ns = gvm_bench_median(t, GVM_BENCH_REPS);
	*faults_per_access = gvm_bench_median(f, GVM_BENCH_REPS);
	ob_teardown(&s);
	return err;
}

GVM_BENCH(oversub_150_rand,
	  "random 64 KiB GPU accesses over 150% of VRAM vs over 100%")
{
	uint64_t accesses = ctx->quick ? 64 : 2000;
	double f150 = 0, f100 = 0;
	int err;

	err = rand_run(VRAM * 3 / 2, accesses, &res->value, &f150);
	if (!err)
		err = rand_run(VRAM, accesses, &res->baseline_value, &f100);
	res->unit = "ns/access";
	res->baseline = "the same stream over 100% of VRAM";
	res->goal = 3;
	snprintf(res->note, sizeof(res->note),
		 "%llu accesses; faults/access %.2f at 150%%, %.2f at 100%%",
		 (unsigned long long)accesses, f150, f100);
	return err;
}
