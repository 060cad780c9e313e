// SPDX-License-Identifier: MIT
/*
 * ww_lock_16: lock 16 uncontended reservations through a lock set and
 * release them, against 16 plain pthread_mutex lock/unlock pairs.
 */
#include <pthread.h>

#include <gvm/lockset.h>

#include "bench.h"

#define NR 16

GVM_BENCH(ww_lock_16, "lock set over 16 uncontended reservations")
{
	static struct gvm_resv resv[NR];
	static struct gvm_resv *ptrs[NR];
	static pthread_mutex_t mutex[NR];
	double v[GVM_BENCH_REPS], b[GVM_BENCH_REPS];
	long iters = ctx->quick ? 1000 : 200000;

	gvm_bench_pin();
	for (int i = 0; i < NR; i++) {
		gvm_resv_init(&resv[i]);
		ptrs[i] = &resv[i];
		pthread_mutex_init(&mutex[i], NULL);
	}
	for (int rep = -1; rep < GVM_BENCH_REPS; rep++) {
		int64_t t0 = gvm_bench_now_ns();

		for (long it = 0; it < iters; it++) {
			struct gvm_lockset ls;

			gvm_lockset_init(&ls, 0);
			gvm_lockset_until_all_locked(&ls) {
				int err = gvm_lockset_prepare_array(&ls, ptrs,
								    NR, 0);

				gvm_lockset_retry_on_contention(&ls);
				if (err)
					return err;
			}
			gvm_lockset_fini(&ls);
		}
		int64_t t1 = gvm_bench_now_ns();

		for (long it = 0; it < iters; it++) {
			for (int i = 0; i < NR; i++)
				pthread_mutex_lock(&mutex[i]);
			for (int i = NR; i-- > 0;)
				pthread_mutex_unlock(&mutex[i]);
		}
		int64_t t2 = gvm_bench_now_ns();

		if (rep >= 0) {	/* rep -1 warms up */
			v[rep] = (double)(t1 - t0) / (double)iters;
			b[rep] = (double)(t2 - t1) / (double)iters;
		}
	}
	for (int i = 0; i < NR; i++) {
		gvm_resv_fini(&resv[i]);
		pthread_mutex_destroy(&mutex[i]);
	}
	res->value = gvm_bench_median(v, GVM_BENCH_REPS);
	res->baseline_value = gvm_bench_median(b, GVM_BENCH_REPS);
	res->unit = "ns/set";
	res->baseline = "16 pthread_mutex lock+unlock";
	res->goal = 3.0;
	return 0;
}
