// SPDX-License-Identifier: MIT
/*
 * Multi-device SVM benchmarks (docs/multidevice.md).
 *
 *  p2p_read_vs_migrate_1, _10: device B reads (GPU checksum) 8 MiB of
 *    malloc'd-style memory that lives in linked device A's memory, for one
 *    pass and for ten, over a link of 1 GiB/s (slower than B's own
 *    memory, as links are; the simulator charges every byte B moves over
 *    it).  Value: the default policy, which maps A's memory peer to peer
 *    and moves a 2 MiB range into B's memory once B's access counters
 *    saw two passes' worth of it.  Baseline: the better of the two fixed
 *    strategies, measured in the same run on the same bytes: "stay"
 *    (B's preferred location A: always peer to peer) and "migrate" (B's
 *    preferred location B: moved over the link on first touch, then
 *    local).  The note gives both and which won.  A ratio near 1 means
 *    the policy picked the winner; for 10 passes it cannot match a
 *    strategy that knew the future (it reads two passes remotely before
 *    it moves: the ski-rental bound).  The time includes the fault
 *    thread acting on the counters' notifications.
 *
 *  migrate_d2d_2m: 2 MiB SVM ranges move from device A's memory to device
 *    B's (a PREFETCH by B, whose preferred location is B), 16 MiB per run.
 *    Value: A and B linked, so each range is copied once, by B's copy
 *    engine, from A's VRAM window over the link; baseline: the same
 *    moves between two devices that are not linked, so each range comes
 *    back to system memory first (the CPU reads A's window) and then goes
 *    to B (B's copy engine).  Same bytes, same ranges, same faults: only
 *    the path differs.  Figures are per 2 MiB range.  The sim's link here
 *    is the default (bandwidth 0: host speed, no latency) and so are the
 *    copy engines, so the ratio measures the copies and page moves saved,
 *    not a link that is faster or slower than the host.
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
#include "vm/fault_queue.h"

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
 * @size bytes of fresh private anonymous memory, 2 MiB aligned (what is
 * mapped around it to align it is unmapped again): munmap(p, size) frees
 * it.  NULL if it cannot be mapped.
 */
static uint8_t *map_aligned(uint64_t size)
{
	uint8_t *m = mmap(NULL, size + M2, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *p;

	if (m == MAP_FAILED)
		return NULL;
	p = (uint8_t *)(((uintptr_t)m + M2 - 1) & ~(M2 - 1));
	if (p > m)
		munmap(m, (size_t)(p - m));
	munmap(p + size, (size_t)(m + M2 - p));
	return p;
}

/* The three ways B reads A's memory. */
enum p2p_mode { P2P_POLICY, P2P_STAY, P2P_MIGRATE };

/*
 * One run: fresh memory filled by A, then @passes checksums by B, placed
 * as @mode says (B's preferred location: none, A, B).  *@ns: B's time,
 * until the fault thread has acted on every access notification.
 */
static int one_run(struct side *a, struct side *b, struct gvm_device *deva,
		   struct gvm_device *devb, unsigned int passes,
		   enum p2p_mode mode, uint64_t *out, double *ns)
{
	struct gvm_madvise adv = {
		.set = GVM_MADV_PREFERRED_LOC,
		.attrs = { .preferred_loc = mode == P2P_POLICY ?
					    GVM_LOC_DEFAULT : GVM_LOC_DEVICE,
			   .dev = mode == P2P_STAY ? deva :
				  mode == P2P_MIGRATE ? devb : NULL },
	};
	struct gvm_kernel k;
	int64_t t0;
	uint8_t *p;
	int err;

	p = map_aligned(SIZE);
	if (!p)
		return -ENOMEM;
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
	gvm__fault_queue_notes_wait(devb);
	*ns = (double)(gvm_bench_now_ns() - t0);
	if (!err && *out != SIZE / 8 * 0x5a5a5a5a5a5a5a5aull)
		err = -EIO;
	munmap(p, SIZE);
	return err;
}

static int p2p_vs_migrate(const struct gvm_bench_ctx *ctx,
			  struct gvm_bench_result *res, unsigned int passes)
{
	struct gvm_link_props link = { .bandwidth = 1ull << 30 };
	struct gvm_device *da = NULL, *db = NULL;
	struct side a = { 0 }, b = { 0 };
	double v[GVM_BENCH_REPS], st[GVM_BENCH_REPS], mi[GVM_BENCH_REPS];
	int reps = ctx->quick ? 1 : GVM_BENCH_REPS, r;
	struct gvm_device_info info = { 0 };
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
		err = gvm_device_link(da, db, &link);
	if (!err)
		err = side_init(&a, da, mm);
	if (!err)
		err = side_init(&b, db, mm);
	for (r = 0; r < reps && !err; r++) {
		err = one_run(&a, &b, da, db, passes, P2P_POLICY, out, &v[r]);
		if (!err)
			err = one_run(&a, &b, da, db, passes, P2P_STAY, out,
				      &st[r]);
		if (!err)
			err = one_run(&a, &b, da, db, passes, P2P_MIGRATE, out,
				      &mi[r]);
	}
	if (!err)
		err = gvm_device_query(db, &info);
	if (!err) {
		double s = gvm_bench_median(st, reps) / 1e3;
		double m = gvm_bench_median(mi, reps) / 1e3;

		res->value = gvm_bench_median(v, reps) / 1e3;
		res->baseline_value = s < m ? s : m;
		res->unit = "us";
		res->baseline = "the better of stay (p2p) and migrate first";
		res->goal = passes == 1 ? 1.1 : 2.5;
		snprintf(res->note, sizeof(res->note),
			 "%u pass(es) over 8 MiB in A's memory, link 1 GiB/s: "
			 "stay %.0f us, migrate %.0f us (%s wins); the policy "
			 "moved %llu of %d ranges", passes, s, m,
			 s < m ? "stay" : "migrate",
			 (unsigned long long)info.access_migrations,
			 reps * (int)(SIZE / M2));
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

/* ---- migrate_d2d_2m -------------------------------------------------------- */

#define D2D_SIZE (16ull << 20)

struct d2d_pair {
	struct gvm_device *a, *b;
	struct side sa, sb;
};

static int d2d_pair_init(struct d2d_pair *x, struct gvm_mm *mm, bool linked)
{
	int err = gvm_sim_device_create(NULL, &x->a);

	if (!err)
		err = gvm_sim_device_create(NULL, &x->b);
	if (!err && linked)
		err = gvm_device_link(x->a, x->b, NULL);
	if (!err)
		err = side_init(&x->sa, x->a, mm);
	if (!err)
		err = side_init(&x->sb, x->b, mm);
	return err;
}

static void d2d_pair_fini(struct d2d_pair *x)
{
	side_fini(&x->sb);
	side_fini(&x->sa);
	gvm_device_put(x->b);
	gvm_device_put(x->a);
}

/*
 * One run: fresh memory filled by A (into A's memory), then B prefetches
 * it into its own memory.  *@ns: the prefetch.  -EIO if the ranges did
 * not all end up in B, by the path asked for (@direct: B's direct moves
 * in grew by all of them; else by none).
 */
static int d2d_run(struct d2d_pair *x, bool direct, double *ns)
{
	struct gvm_madvise adv = {
		.set = GVM_MADV_PREFERRED_LOC,
		.attrs = { .preferred_loc = GVM_LOC_DEVICE, .dev = x->b },
	};
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH,
				  .prefetch_mem = GVM_MEM_VRAM,
				  .range = D2D_SIZE };
	struct gvm_device_info i0, i1;
	struct gvm_kernel k;
	uint64_t n = D2D_SIZE / M2;
	int64_t t0;
	uint8_t *p;
	int err;

	p = map_aligned(D2D_SIZE);
	if (!p)
		return -ENOMEM;
	op.addr = (uintptr_t)p;
	err = gvm_kernel_fill(&k, (uintptr_t)p, D2D_SIZE, 0x3c3c3c3c);
	if (!err)
		err = run(&x->sa, &k);			/* into A */
	if (!err)
		err = gvm_vm_madvise(x->sb.vm, (uintptr_t)p, D2D_SIZE, &adv);
	if (!err)
		err = gvm_device_query(x->b, &i0);
	t0 = gvm_bench_now_ns();
	if (!err)
		err = gvm_vm_bind(x->sb.vm, NULL, &op, 1, NULL, 0);
	*ns = (double)(gvm_bench_now_ns() - t0) / (double)n;
	if (!err)
		err = gvm_device_query(x->b, &i1);
	if (!err && (i1.svm_migrations_in - i0.svm_migrations_in != n ||
		     i1.svm_d2d_in - i0.svm_d2d_in != (direct ? n : 0)))
		err = -EIO;
	if (!err && p[D2D_SIZE - 1] != 0x3c)		/* back from B */
		err = -EIO;
	munmap(p, D2D_SIZE);
	return err;
}

GVM_BENCH(migrate_d2d_2m,
	  "2 MiB ranges A -> B: direct over the link vs through system memory")
{
	double v[GVM_BENCH_REPS], w[GVM_BENCH_REPS];
	int reps = ctx->quick ? 1 : GVM_BENCH_REPS, r;
	struct d2d_pair lk = { 0 }, un = { 0 };
	struct gvm_mm *mm = NULL;
	int err;

	err = gvm_mm_self(&mm);
	if (!err)
		err = d2d_pair_init(&lk, mm, true);
	if (!err)
		err = d2d_pair_init(&un, mm, false);
	for (r = 0; r < reps && !err; r++) {
		err = d2d_run(&lk, true, &v[r]);
		if (!err)
			err = d2d_run(&un, false, &w[r]);
	}
	if (!err) {
		res->value = gvm_bench_median(v, reps) / 1e3;
		res->baseline_value = gvm_bench_median(w, reps) / 1e3;
		res->unit = "us/2MiB";
		res->baseline = "through system memory (devices not linked)";
		snprintf(res->note, sizeof(res->note),
			 "PREFETCH of 8 x 2 MiB by B; sim link and copy "
			 "engines at host speed (bandwidth 0, no latency)");
	}
	d2d_pair_fini(&un);
	d2d_pair_fini(&lk);
	gvm_mm_put(mm);
	return err;
}
