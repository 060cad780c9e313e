// SPDX-License-Identifier: MIT
/*
 * Multi-device SVM benchmarks (docs/multidevice.md).
 *
 *  p2p_read_vs_migrate_1, _10: device B reads (GPU checksum) 8 MiB of
 *    malloc'd-style memory that lives in linked device A's memory, for one
 *    pass and for ten.  Value: B maps A's memory peer to peer (the default
 *    placement); baseline: B migrates it into its own memory first (the
 *    preferred location set to B).  Both sides do the same passes over the
 *    same bytes and take the same faults (one per 2 MiB range); they
 *    differ in the copies.  A ratio below 1 says peer-to-peer wins, which
 *    the default policy assumes.  The simulated link charges nothing per
 *    access (a peer's VRAM is host memory to the simulated MMU), so this
 *    is the best case for peer to peer: on hardware each remote read pays
 *    the link, and enough passes make migrating first win.
 *
 * Each figure is the median over GVM_BENCH_REPS runs, each on fresh memory
 * filled by A (so it starts in A's memory).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <gvm/gvm.h>

#include "bench.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define SIZE (8ull << 20)
#define MIRROR_END (1ull << 47)

struct side {
	struct gvm_vm *vm;
	struct gvm_queue *q;
};

static int side_init(struct side *s, struct gvm_device *dev,
		     struct gvm_mm *mm)
{
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = K4,
				  .range = MIRROR_END - K4,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	int err;

	err = gvm_vm_create(dev, mm, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
			    &s->vm);
	if (err)
		return err;
	err = gvm_queue_create(s->vm, GVM_ENGINE_COMPUTE, &s->q);
	if (!err)
		err = gvm_vm_bind(s->vm, NULL, &op, 1, NULL, 0);
	return err;
}

static void side_fini(struct side *s)
{
	if (s->q)
		gvm_queue_destroy(s->q);
	if (s->vm)
		gvm_vm_destroy(s->vm);
}

static int run(struct side *s, struct gvm_kernel *k)
{
	uint64_t uf = 0;
	struct gvm_sync sy = { .type = GVM_SYNC_USER_FENCE,
			       .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			       .value = 1 };
	int err = gvm_exec(s->q, k, &sy, 1);

	return err ? err : gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE);
}

/*
 * One run: fresh memory filled by A, then @passes checksums by B; with
 * @migrate, B's preferred location is its own memory.  *@ns: B's time.
 */
static int one_run(struct side *a, struct side *b, struct gvm_device *devb,
		   unsigned int passes, bool migrate, uint64_t *out,
		   double *ns)
{
	struct gvm_madvise adv = {
		.set = GVM_MADV_PREFERRED_LOC,
		.attrs = { .preferred_loc = migrate ? GVM_LOC_DEVICE :
							GVM_LOC_DEFAULT,
			   .dev = migrate ? devb : NULL },
	};
	struct gvm_kernel k;
	int64_t t0;
	uint8_t *p;
	int err;

	p = mmap(NULL, SIZE + M2, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	p = (uint8_t *)(((uintptr_t)p + M2 - 1) & ~(M2 - 1));
	err = gvm_vm_madvise(b->vm, (uintptr_t)p, SIZE, &adv);
	if (!err)
		err = gvm_kernel_fill(&k, (uintptr_t)p, SIZE, 0x5a5a5a5a);
	if (!err)
		err = run(a, &k);			/* into A */
	if (!err)
		err = gvm_kernel_checksum(&k, (uintptr_t)p, SIZE,
					  (uintptr_t)out);
	t0 = gvm_bench_now_ns();
	for (unsigned int i = 0; i < passes && !err; i++)
		err = run(b, &k);
	*ns = (double)(gvm_bench_now_ns() - t0);
	if (!err && *out != SIZE / 8 * 0x5a5a5a5a5a5a5a5aull)
		err = -EIO;
	munmap((void *)((uintptr_t)p & ~(M2 - 1)), SIZE + M2);
	return err;
}

static int p2p_vs_migrate(const struct gvm_bench_ctx *ctx,
			  struct gvm_bench_result *res, unsigned int passes)
{
	struct gvm_device *da = NULL, *db = NULL;
	struct side a = { 0 }, b = { 0 };
	double v[GVM_BENCH_REPS], w[GVM_BENCH_REPS];
	int reps = ctx->quick ? 1 : GVM_BENCH_REPS, r;
	struct gvm_mm *mm = NULL;
	uint64_t *out;
	int err;

	out = mmap(NULL, K4, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (out == MAP_FAILED)
		return -ENOMEM;
	err = gvm_mm_self(&mm);
	if (!err)
		err = gvm_sim_device_create(NULL, &da);
	if (!err)
		err = gvm_sim_device_create(NULL, &db);
	if (!err)
		err = gvm_device_link(da, db, NULL);
	if (!err)
		err = side_init(&a, da, mm);
	if (!err)
		err = side_init(&b, db, mm);
	for (r = 0; r < reps && !err; r++) {
		err = one_run(&a, &b, db, passes, false, out, &v[r]);
		if (!err)
			err = one_run(&a, &b, db, passes, true, out, &w[r]);
	}
	if (!err) {
		res->value = gvm_bench_median(v, reps) / 1e3;
		res->baseline_value = gvm_bench_median(w, reps) / 1e3;
		res->unit = "us";
		res->baseline = "migrate to B first, then read locally";
		snprintf(res->note, sizeof(res->note),
			 "%u pass(es) over 8 MiB in A's memory; sim link: no "
			 "per-access cost (best case for p2p)", passes);
	}
	side_fini(&b);
	side_fini(&a);
	gvm_device_put(db);
	gvm_device_put(da);
	gvm_mm_put(mm);
	munmap(out, K4);
	return err;
}

GVM_BENCH(p2p_read_vs_migrate_1,
	  "peer reads a linked device's memory vs migrating it, 1 pass")
{
	return p2p_vs_migrate(ctx, res, 1);
}

GVM_BENCH(p2p_read_vs_migrate_10,
	  "peer reads a linked device's memory vs migrating it, 10 passes")
{
	return p2p_vs_migrate(ctx, res, 10);
}
