// SPDX-License-Identifier: MIT
/*
 * Page-table engine benchmarks.
 *
 *   pt_bind_1g_2m  prepare + commit of a 1 GiB bind with 2 MiB pages into
 *                  existing tables (the L1 table already exists: the
 *                  measured bind rebinds over the previous one, so no table
 *                  is allocated), against a raw loop writing 512 8-byte
 *                  PDEs.
 *   pt_bind_1g_4k  bind of 1 GiB with 4 KiB pages into an empty VM,
 *                  including the allocation of the 512 leaf tables (and
 *                  the directories), against a raw loop writing 262,144
 *                  8-byte PTEs into one 2 MiB array.  The unbind between
 *                  passes is not measured.
 *
 * Protocol: one warm-up, then GVM_BENCH_REPS alternating passes; medians.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "bench.h"
#include "pt/pt.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define G1 (1ull << 30)

struct pt_env {
	struct gvm_buddy buddy;
	uint8_t *arena;
	uint64_t size;
	struct gvm_pt_vm vm;
};

static int env_init(struct pt_env *e, uint64_t size)
{
	struct gvm_pt_mem mem = { 0 };
	int err;

	e->size = size;
	e->arena = mmap(NULL, size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e->arena == MAP_FAILED)
		return -ENOMEM;
	err = gvm__buddy_init(&e->buddy, size, 0);
	if (err)
		goto err_unmap;
	mem.buddy = &e->buddy;
	mem.cpu_base = e->arena;
	mem.dev_base = 0;
	err = gvm__pt_vm_init(&e->vm, &mem, 48, 0);
	if (err)
		goto err_buddy;
	return 0;
err_buddy:
	gvm__buddy_fini(&e->buddy);
err_unmap:
	munmap(e->arena, size);
	return err;
}

static void env_fini(struct pt_env *e)
{
	gvm__pt_vm_fini(&e->vm);
	gvm__buddy_fini(&e->buddy);
	munmap(e->arena, e->size);
}

GVM_BENCH(pt_bind_1g_2m, "bind 1 GiB with 2 MiB pages (tables exist)")
{
	struct pt_env e;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	uint64_t *raw = aligned_alloc(4096, 4096);
	struct gvm_pt_extent x = { 4 * G1 + M2, G1 };	/* 2M, not 1G aligned */
	int inner = ctx->quick ? 10 : 1000, r, k, err;

	if (!raw)
		return -ENOMEM;
	err = env_init(&e, 16ull << 20);
	if (err)
		goto out;
	err = gvm__pt_bind(&e.vm, G1, G1, &x, 1, GVM_PT_WRITE, NULL);
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();
		double raw_ns = 0;

		for (k = 0; k < inner && !err; k++) {
			x.addr = (4 + (k & 1)) * G1 + M2;
			err = gvm__pt_bind(&e.vm, G1, G1, &x, 1, GVM_PT_WRITE,
					   NULL);
		}
		if (r >= 0)
			v[r] = (double)(gvm_bench_now_ns() - t0) / inner;
		for (k = 0; k < inner; k++)
			raw_ns += gvm_bench_fill_entries(raw, 512, (uint64_t)k * G1, M2);
		if (r >= 0)
			b[r] = raw_ns / inner;
	}
	if (!err) {
		res->value = gvm_bench_median(v, GVM_BENCH_REPS);
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
		res->unit = "ns/bind";
		res->baseline = "raw loop writing 512 PDEs";
		res->goal = 10;
		snprintf(res->note, sizeof(res->note),
			 "prepare+commit, rebinding into existing tables");
	}
	env_fini(&e);
out:
	free(raw);
	return err;
}

GVM_BENCH(pt_bind_1g_4k, "bind 1 GiB with 4 KiB pages incl. table allocation")
{
	struct pt_env e;
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	uint64_t size = ctx->quick ? 64 * M2 : G1, n = size / K4;
	uint64_t *raw = aligned_alloc(4096, n * 8);
	struct gvm_pt_extent x = { 4 * G1 + K4, size };
	int r, err;

	if (!raw)
		return -ENOMEM;
	err = env_init(&e, 16ull << 20);
	if (err)
		goto out;
	for (r = -1; r < GVM_BENCH_REPS && !err; r++) {
		int64_t t0 = gvm_bench_now_ns();
		double raw_ns;

		/* backing offset by 4 KiB: no 2 MiB leaves, 64K hints */
		err = gvm__pt_bind(&e.vm, G1, size, &x, 1, GVM_PT_WRITE, NULL);
		if (r >= 0)
			v[r] = (double)(gvm_bench_now_ns() - t0);
		if (!err)
			err = gvm__pt_unbind(&e.vm, G1, size, NULL);
		raw_ns = gvm_bench_fill_entries(raw, n, x.addr, K4);
		if (r >= 0)
			b[r] = raw_ns;
	}
	if (!err) {
		res->value = gvm_bench_median(v, GVM_BENCH_REPS) / 1000.0;
		res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS) /
				      1000.0;
		res->unit = "us/bind";
		res->baseline = "raw loop writing 262,144 PTEs";
		res->goal = 3;
		snprintf(res->note, sizeof(res->note),
			 "into an empty VM: 512 leaf tables allocated");
	}
	env_fini(&e);
out:
	free(raw);
	return err;
}
