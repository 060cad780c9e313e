// SPDX-License-Identifier: MIT
/*
 * Eviction benchmark: how many bytes gvm's eviction policy moves between
 * VRAM and system memory when kernels need more VRAM than the device has,
 * against the fewest bytes any policy could move for the same accesses.
 *
 *   evict_150  A 16 MiB simulated device and 24 VRAM-only BOs of 1 MiB
 *              (150% of VRAM): 4 VMs with 4 VM-local BOs each, and 8
 *              external BOs each mapped in two neighbouring VMs (so every
 *              VM uses 8 BOs, 8 MiB, and shares 2 with each neighbour).
 *              Each step runs a kernel on one VM, chosen in a fixed
 *              pseudo-random order, that stores to every one of its BOs,
 *              and waits for it: gvm_exec() moves the VM's evicted BOs
 *              back, evicting others.  Value: the bytes the device's copy
 *              engine moved during the steps (each move is one copy of the
 *              BO; the VMs' bytes_to_vram + bytes_to_system counters sum
 *              to more, since a move of a shared BO counts in both VMs
 *              that map it; the note gives that sum).  Baseline: the bytes
 *              Belady's policy moves for the same sequence (on a miss with
 *              VRAM full, evict the BO whose next use is farthest in the
 *              future; never one the step itself needs), simulated here
 *              with the capacity in whole BOs that VRAM offers next to the
 *              page tables, from the residency gvm has when the steps
 *              start.  Belady is optimal for the number of fetches, and
 *              every policy that evicts only on demand moves
 *              fetches + evictions = 2 * fetches - (free slots at start).
 *
 *   bo_move_64m  a 64 MiB BO moved VRAM -> system -> VRAM by two PREFETCH
 *              binds, against memcpy of the same bytes there and back
 *              between two warm host buffers.  Value: ms per round trip.
 *
 * gvm's policy (src/vm/evict.c): LRU over the device's BOs in VRAM; an
 * exec puts its VM's BOs at the tail; a VRAM allocation that does not fit
 * evicts, among the first 8 BOs of the head it can trylock (not the exec's
 * own), the one mapped by the fewest VMs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/sim.h>
#include <gvm/vm.h>

#include "bench.h"

#define M1 (1ull << 20)
#define VA (1ull << 30)

#define NR_VMS 4
#define NR_LOCAL 4			/* per VM */
#define NR_EXT 8			/* each in VMs i % 4 and (i + 1) % 4 */
#define NR_BOS (NR_VMS * NR_LOCAL + NR_EXT)
#define WSET (NR_LOCAL + 2 * NR_EXT / NR_VMS)	/* BOs per VM */
#define MAX_STEPS 400

struct evict_env {
	struct gvm_device *dev;
	struct gvm_vm *vm[NR_VMS];
	struct gvm_queue *q[NR_VMS];
	struct gvm_bo *bo[NR_BOS];	/* locals first, VM by VM */
	int wset[NR_VMS][WSET];		/* indices in bo[] */
};

/* Lane i stores its index at va + i * stride. */
struct touch_args {
	uint64_t va, stride;
};

static void touch_fn(struct gvm_lane *l, const void *args)
{
	const struct touch_args *a = args;
	uint64_t i = gvm_lane_id(l);

	gvm_lane_store(l, a->va + i * a->stride, i + 1, 8);
}

static int run_step(struct evict_env *e, int v)
{
	struct touch_args a = { VA, M1 };
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL,
			      .out = &f };
	struct gvm_kernel k;
	int err;

	gvm_kernel_init(&k, "bench_touch", touch_fn, WSET, &a, sizeof(a));
	err = gvm_exec(e->q[v], &k, &s, 1);
	if (err)
		return err;
	err = gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
	if (!err && gvm_fence_get_status(f) < 0)
		err = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return err;
}

static int setup(struct evict_env *e)
{
	struct gvm_sim_config cfg = { .vram_size = 16 * M1 };
	int v, i, err;

	memset(e, 0, sizeof(*e));
	err = gvm_sim_device_create(&cfg, &e->dev);
	for (v = 0; v < NR_VMS && !err; v++) {
		err = gvm_vm_create(e->dev, NULL, 0, &e->vm[v]);
		if (!err)
			err = gvm_queue_create(e->vm[v], GVM_ENGINE_COMPUTE,
					       &e->q[v]);
	}
	/* working sets: the VM's locals, then its external BOs */
	for (v = 0; v < NR_VMS; v++) {
		int n = 0;

		for (i = 0; i < NR_LOCAL; i++)
			e->wset[v][n++] = v * NR_LOCAL + i;
		for (i = 0; i < NR_EXT; i++)
			if (i % NR_VMS == v || (i + 1) % NR_VMS == v)
				e->wset[v][n++] = NR_VMS * NR_LOCAL + i;
	}
	/* VM by VM: create what is missing, map the working set */
	for (v = 0; v < NR_VMS && !err; v++) {
		struct gvm_bind_op ops[WSET];

		memset(ops, 0, sizeof(ops));
		for (i = 0; i < WSET && !err; i++) {
			int b = e->wset[v][i];

			if (!e->bo[b])
				err = gvm_bo_create(e->dev, M1, GVM_MEM_VRAM,
						    b < NR_VMS * NR_LOCAL ?
						    e->vm[v] : NULL,
						    &e->bo[b]);
			ops[i] = (struct gvm_bind_op){
				.op = GVM_BIND_MAP, .addr = VA + i * M1,
				.range = M1, .bo = e->bo[b] };
		}
		if (!err)
			err = gvm_vm_bind(e->vm[v], NULL, ops, WSET, NULL, 0);
	}
	return err;
}

static void teardown(struct evict_env *e)
{
	int v, i;

	for (v = 0; v < NR_VMS; v++) {
		if (e->q[v])
			gvm_queue_destroy(e->q[v]);
		if (e->vm[v])
			gvm_vm_destroy(e->vm[v]);
	}
	for (i = 0; i < NR_BOS; i++)
		if (e->bo[i])
			gvm_bo_put(e->bo[i]);
	if (e->dev)
		gvm_device_put(e->dev);
}

static bool uses(const struct evict_env *e, int v, int b)
{
	for (int i = 0; i < WSET; i++)
		if (e->wset[v][i] == b)
			return true;
	return false;
}

/*
 * Belady over @seq[0..@n): starts from @resident, holds at most @cap BOs;
 * returns the BOs moved (fetches + evictions).
 */
static uint64_t belady(const struct evict_env *e, const int *seq, int n,
		       const bool *resident, int cap)
{
	bool in[NR_BOS];
	uint64_t moved = 0;
	int t, i, b, nr = 0;

	for (b = 0; b < NR_BOS; b++)
		nr += (in[b] = resident[b]);
	for (t = 0; t < n; t++) {
		for (i = 0; i < WSET; i++) {
			int need = e->wset[seq[t]][i], victim = -1, far = -1;

			if (in[need])
				continue;
			if (nr == cap) {
				for (b = 0; b < NR_BOS; b++) {
					int u;

					if (!in[b] || uses(e, seq[t], b))
						continue;
					for (u = t + 1; u < n; u++)
						if (uses(e, seq[u], b))
							break;
					if (u > far) {
						far = u;
						victim = b;
					}
				}
				if (victim < 0)
					return UINT64_MAX;	/* cannot fit */
				in[victim] = false;
				nr--;
				moved++;
			}
			in[need] = true;
			nr++;
			moved++;
		}
	}
	return moved;
}

GVM_BENCH(evict_150, "bytes moved by eviction at 150% of VRAM vs Belady")
{
	int steps = ctx->quick ? 24 : MAX_STEPS, seq[MAX_STEPS];
	uint64_t seed = 0x5eed, copied, vm_sum = 0, opt;
	struct gvm_sim_stats s0, s1;
	struct gvm_device_info info;
	bool resident[NR_BOS];
	struct evict_env e;
	int64_t t0 = 0;
	double ms = 0;
	int i, v, cap, nr_res = 0, err;

	for (i = 0; i < steps; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		seq[i] = (int)((seed >> 33) % NR_VMS);
	}
	err = setup(&e);
	if (!err)
		err = gvm_device_query(e.dev, &info);
	if (err)
		goto out;
	for (i = 0; i < NR_BOS; i++) {
		resident[i] = gvm_bo_region(e.bo[i]) == GVM_MEM_VRAM;
		nr_res += resident[i];
	}
	/* Whole BOs that fit next to the page tables. */
	cap = (int)((info.vram_free + (uint64_t)nr_res * M1) / M1);
	for (v = 0; v < NR_VMS && !err; v++) {
		struct gvm_vm_stats st;

		err = gvm_vm_stats(e.vm[v], &st);
		vm_sum -= st.bytes_to_vram + st.bytes_to_system;
	}
	if (!err)
		err = gvm_sim_stats(e.dev, &s0);
	t0 = gvm_bench_now_ns();
	for (i = 0; i < steps && !err; i++)
		err = run_step(&e, seq[i]);
	ms = (double)(gvm_bench_now_ns() - t0) / 1e6;
	if (!err)
		err = gvm_sim_stats(e.dev, &s1);
	for (v = 0; v < NR_VMS && !err; v++) {
		struct gvm_vm_stats st;

		err = gvm_vm_stats(e.vm[v], &st);
		vm_sum += st.bytes_to_vram + st.bytes_to_system;
	}
	if (err)
		goto out;
	opt = belady(&e, seq, steps, resident, cap);
	if (opt == UINT64_MAX) {
		err = -ENOSPC;
		goto out;
	}
	copied = s1.bytes_copied - s0.bytes_copied;
	res->value = (double)copied / (double)M1;
	res->baseline_value = (double)opt;
	res->unit = "MiB moved";
	res->baseline = "Belady (farthest next use)";
	res->goal = 1.5;
	snprintf(res->note, sizeof(res->note),
		 "LRU window, fewest VMs first; %d steps, %d of %d BOs fit; VM counters sum %llu MiB; "
		 "%.0f us/step",
		 steps, cap, NR_BOS, (unsigned long long)(vm_sum / M1),
		 ms * 1000.0 / steps);
out:
	teardown(&e);
	return err;
}

/* ---- bo_move_64m ---------------------------------------------------------- */

static int prefetch(struct gvm_vm *vm, uint64_t size, uint32_t region)
{
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH, .addr = VA,
				  .range = size, .prefetch_mem = region };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

/*
 * A 64 MiB BO (VRAM or system) mapped in a VM, moved VRAM -> system ->
 * VRAM by two PREFETCH binds (the move zaps and rebinds its mapping and
 * copies with the copy engine), against memcpy of the same bytes between
 * two warm 64 MiB host buffers, there and back.  Value: ms per round trip.
 */
GVM_BENCH(bo_move_64m, "64 MiB BO VRAM -> system -> VRAM (PREFETCH binds)")
{
	const uint64_t size = ctx->quick ? 4 * M1 : 64 * M1;
	const int inner = ctx->quick ? 2 : 5;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	struct gvm_sim_config cfg = { .vram_size = 2 * size + 16 * M1 };
	struct gvm_device *dev = NULL;
	struct gvm_vm *vm = NULL;
	struct gvm_bo *bo = NULL;
	uint8_t *x = NULL, *y = NULL;
	int r, k, err;

	err = gvm_sim_device_create(&cfg, &dev);
	if (!err)
		err = gvm_vm_create(dev, NULL, 0, &vm);
	if (!err)
		err = gvm_bo_create(dev, size, GVM_MEM_VRAM | GVM_MEM_SYSTEM,
				    NULL, &bo);
	if (!err) {
		struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = VA,
					  .range = size, .bo = bo };

		err = gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
	}
	x = malloc(size);
	y = malloc(size);
	if (!err && (!x || !y))
		err = -ENOMEM;
	if (!err) {
		memset(x, 1, size);	/* warm */
		memset(y, 2, size);
	}
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();

		for (k = 0; k < inner && !err; k++) {
			err = prefetch(vm, size, GVM_MEM_SYSTEM);
			if (!err && gvm_bo_region(bo) != GVM_MEM_SYSTEM)
				err = -EIO;
			if (!err)
				err = prefetch(vm, size, GVM_MEM_VRAM);
			if (!err && gvm_bo_region(bo) != GVM_MEM_VRAM)
				err = -EIO;
		}
		if (r >= 0)
			v[r] = (double)(gvm_bench_now_ns() - t0) / inner / 1e6;
		t0 = gvm_bench_now_ns();
		for (k = 0; k < inner; k++) {
			memcpy(y, x, size);
			gvm_bench_keep(y);
			memcpy(x, y, size);
			gvm_bench_keep(x);
		}
		if (r >= 0)
			b[r] = (double)(gvm_bench_now_ns() - t0) / inner / 1e6;
	}
	if (!err) {
		res->value = gvm_bench_median(v, GVM_BENCH_REPS);
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
		res->unit = "ms/trip";
		res->baseline = "memcpy there and back, same bytes";
		res->goal = 1.3;
		snprintf(res->note, sizeof(res->note),
			 "%.2f GiB/s moved vs %.2f GiB/s memcpy",
			 2.0 * (double)size / (res->value / 1e3) / (1ull << 30),
			 2.0 * (double)size / (res->baseline_value / 1e3) /
				 (1ull << 30));
	}
	if (vm)
		gvm_vm_destroy(vm);
	if (bo)
		gvm_bo_put(bo);
	if (dev)
		gvm_device_put(dev);
	free(x);
	free(y);
	return err;
}
