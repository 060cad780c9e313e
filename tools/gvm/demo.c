// SPDX-License-Identifier: MIT
/*
 * gvm demo: a small pipeline that exercises the core layer for real and says
 * what it does.
 *
 * Three buffers in host memory each carry a reservation object.  Jobs on two
 * scheduler queues ("copy" and "compute") produce and consume them; every job
 * locks the buffers it touches with a lock set, takes its dependencies from
 * their reservations (implicit synchronisation: readers wait for writers,
 * writers for everybody) and publishes its finished fence back into them.
 * Then a job fails and the failure propagates to its consumer, and a queue is
 * destroyed with work still pending, which is cancelled.
 *
 * Until the simulated GPU exists (issue: simulated GPU), the "engines" are
 * worker threads running C functions on host arrays.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gvm/gvm.h>

#include "gvm_tool.h"

#define N 4096

struct buffer {
	const char *name;
	struct gvm_resv resv;
	uint32_t data[N];
};

enum op { OP_FILL, OP_SCALE_ADD, OP_SUM, OP_FAIL };

struct demo_job {
	struct gvm_job base;
	const char *name;
	enum op op;
	struct buffer *dst, *src[2];
	uint32_t value;
	uint64_t *result;
};

static int64_t t_start;

static double ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - t_start) /
	       1e6;
}

static void pause_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };

	nanosleep(&ts, NULL);
}

static int demo_run(struct gvm_job *job, struct gvm_fence **hw_fence)
{
	struct demo_job *j = gvm_container_of(job, struct demo_job, base);
	uint64_t sum = 0;

	(void)hw_fence;
	printf("  %7.2f ms  run   %-10s", ms_now(), j->name);
	pause_ms(5);	/* pretend the engine takes a while */
	switch (j->op) {
	case OP_FILL:
		for (int i = 0; i < N; i++)
			j->dst->data[i] = j->value + (uint32_t)i;
		printf(" %s[i] = %u + i\n", j->dst->name, j->value);
		break;
	case OP_SCALE_ADD:
		for (int i = 0; i < N; i++)
			j->dst->data[i] = j->value * j->src[0]->data[i] +
					  j->src[1]->data[i];
		printf(" %s = %u * %s + %s\n", j->dst->name, j->value,
		       j->src[0]->name, j->src[1]->name);
		break;
	case OP_SUM:
		for (int i = 0; i < N; i++)
			sum += j->src[0]->data[i];
		*j->result = sum;
		printf(" sum(%s) = %" PRIu64 "\n", j->src[0]->name, sum);
		break;
	case OP_FAIL:
		printf(" fails with -EIO (an injected engine error)\n");
		return -EIO;
	}
	return 0;
}

static void demo_free(struct gvm_job *job)
{
	free(gvm_container_of(job, struct demo_job, base));
}

static const struct gvm_job_ops demo_ops = {
	.run = demo_run,
	.free = demo_free,
};

/*
 * Submits one job: locks every buffer it touches, depends on what is already
 * in their reservations, and publishes its finished fence into them (WRITE
 * for the destination, READ for sources).  Returns the finished fence.
 */
static int submit(struct gvm_sched_queue *q, const char *qname,
		  struct demo_job *j, struct gvm_fence **finished)
{
	struct buffer *bufs[3] = { j->dst, j->src[0], j->src[1] };
	struct gvm_lockset ls;
	unsigned int deps = 0;
	int err = 0;

	gvm_lockset_init(&ls, GVM_LOCKSET_IGNORE_DUPLICATES);
	gvm_lockset_until_all_locked(&ls) {
		for (int i = 0; i < 3 && !err; i++)
			if (bufs[i])
				err = gvm_lockset_prepare(&ls, &bufs[i]->resv, 1);
		gvm_lockset_retry_on_contention(&ls);
		if (err)
			goto out;
	}

	err = gvm_job_init(&j->base, q, &demo_ops);
	if (err)
		goto out;
	for (int i = 0; i < 3 && !err; i++) {
		/* A writer waits for everybody, a reader for writers only. */
		enum gvm_resv_usage u = i == 0 ? GVM_RESV_USAGE_READ
					       : GVM_RESV_USAGE_WRITE;
		struct gvm_fence **fences;
		unsigned int n;

		if (!bufs[i])
			continue;
		err = gvm_resv_get_fences(&bufs[i]->resv, u, &fences, &n);
		for (unsigned int k = 0; !err && k < n; k++) {
			err = gvm_job_add_dependency(&j->base, fences[k]);
			deps += !gvm_fence_is_signaled(fences[k]);
		}
		if (!err)
			gvm_resv_put_fences(fences, n);
	}
	if (err) {
		gvm_job_fini(&j->base);
		goto out;
	}

	/* Point of no return. */
	gvm_job_arm(&j->base);
	*finished = gvm_fence_get(gvm_job_finished(&j->base));
	for (int i = 0; i < 3; i++)
		if (bufs[i])
			gvm_resv_add_fence(&bufs[i]->resv, *finished,
					   i == 0 ? GVM_RESV_USAGE_WRITE
						  : GVM_RESV_USAGE_READ);
	printf("  %7.2f ms  push  %-10s on queue %-8s waits for %u unsignalled fence%s\n",
	       ms_now(), j->name, qname, deps, deps == 1 ? "" : "s");
	gvm_job_push(&j->base);
out:
	gvm_lockset_fini(&ls);
	return err;
}

static struct demo_job *job(const char *name, enum op op, struct buffer *dst,
			    struct buffer *s0, struct buffer *s1, uint32_t v)
{
	struct demo_job *j = calloc(1, sizeof(*j));

	if (j) {
		j->name = name;
		j->op = op;
		j->dst = dst;
		j->src[0] = s0;
		j->src[1] = s1;
		j->value = v;
	}
	return j;
}

static const char *status_str(struct gvm_fence *f)
{
	static char buf[32];
	int st = gvm_fence_get_status(f);

	if (st == 1)
		return "ok";
	if (st == 0)
		return "pending";
	snprintf(buf, sizeof(buf), "error %s", strerror(-st));
	return buf;
}

int gvm_tool_demo(int argc, char **argv)
{
	static struct buffer a = { .name = "A" }, b = { .name = "B" },
			     c = { .name = "C" };
	struct gvm_fence *f[8] = { NULL };
	struct gvm_sched_queue *copy, *compute;
	struct gvm_sched *sched;
	uint64_t sum = 0, expect = 0;
	struct demo_job *j[8];
	int err;

	(void)argv;
	if (argc) {
		fprintf(stderr, "gvm demo: takes no arguments\n");
		return 2;
	}
	printf("gvm demo: the core layer (fences, reservations, lock sets, scheduler)\n\n"
	       "Three %d-element buffers A, B, C each carry a reservation object.\n"
	       "Jobs on two queues, 'copy' and 'compute', served by 2 worker threads,\n"
	       "take their dependencies from those reservations and publish their\n"
	       "finished fences back, so producers and consumers order themselves.\n\n",
	       N);
	t_start = 0;
	t_start = (int64_t)(ms_now() * 1e6);	/* now, in ns */

	gvm_resv_init(&a.resv);
	gvm_resv_init(&b.resv);
	gvm_resv_init(&c.resv);
	err = gvm_sched_create("demo", 2, &sched);
	if (!err)
		err = gvm_sched_queue_create(sched, "copy", &copy);
	if (!err)
		err = gvm_sched_queue_create(sched, "compute", &compute);
	if (err) {
		fprintf(stderr, "gvm demo: %s\n", strerror(-err));
		return 1;
	}

	printf("1. A pipeline: fill A and B on 'copy', C = 3*A + B and sum(C) on 'compute'\n");
	j[0] = job("fill-A", OP_FILL, &a, NULL, NULL, 1);
	j[1] = job("fill-B", OP_FILL, &b, NULL, NULL, 1000);
	j[2] = job("axpy", OP_SCALE_ADD, &c, &a, &b, 3);
	j[3] = job("sum", OP_SUM, NULL, &c, NULL, 0);
	for (int i = 0; i < 4; i++) {
		if (!j[i])
			return 1;
	}
	j[3]->result = &sum;
	err = submit(copy, "copy", j[0], &f[0]);
	err = err ? err : submit(copy, "copy", j[1], &f[1]);
	err = err ? err : submit(compute, "compute", j[2], &f[2]);
	err = err ? err : submit(compute, "compute", j[3], &f[3]);
	if (err) {
		fprintf(stderr, "gvm demo: submit: %s\n", strerror(-err));
		return 1;
	}
	gvm_fence_wait(f[3], GVM_TIMEOUT_INFINITE);
	for (int i = 0; i < N; i++)
		expect += 3ull * (1 + (uint64_t)i) + 1000 + (uint64_t)i;
	printf("  sum(C) = %" PRIu64 ", expected %" PRIu64 ": %s\n", sum, expect,
	       sum == expect ? "correct" : "WRONG");
	printf("  every fence signalled in dependency order: fill-A %.2f <= axpy %.2f <= sum %.2f ms\n\n",
	       (double)(gvm_fence_timestamp(f[0]) - t_start) / 1e6,
	       (double)(gvm_fence_timestamp(f[2]) - t_start) / 1e6,
	       (double)(gvm_fence_timestamp(f[3]) - t_start) / 1e6);

	printf("2. An engine error propagates: a failing write to A, then a reader of A\n");
	j[4] = job("bad-write", OP_FAIL, &a, NULL, NULL, 0);
	j[5] = job("sum-A", OP_SUM, NULL, &a, NULL, 0);
	if (!j[4] || !j[5])
		return 1;
	j[5]->result = &sum;
	err = submit(copy, "copy", j[4], &f[4]);
	err = err ? err : submit(compute, "compute", j[5], &f[5]);
	if (err)
		return 1;
	gvm_fence_wait(f[5], GVM_TIMEOUT_INFINITE);
	printf("  bad-write: %s; sum-A never ran: %s\n\n", status_str(f[4]),
	       status_str(f[5]));

	printf("3. Tearing down a queue with work pending cancels it\n");
	{
		struct gvm_fence *gate;

		/* A job that waits on a fence nobody signals in time. */
		gvm_fence_create(gvm_fence_context_alloc(1), 1, &gate);
		j[6] = job("blocked", OP_FILL, &b, NULL, NULL, 7);
		if (!j[6] || gvm_job_init(&j[6]->base, compute, &demo_ops))
			return 1;
		gvm_job_add_dependency(&j[6]->base, gate);
		gvm_job_arm(&j[6]->base);
		f[6] = gvm_fence_get(gvm_job_finished(&j[6]->base));
		gvm_job_push(&j[6]->base);
		printf("  %7.2f ms  push  blocked    waits for a fence that is never signalled\n",
		       ms_now());
		gvm_sched_queue_destroy(compute);
		printf("  %7.2f ms  queue 'compute' destroyed: blocked -> %s\n\n",
		       ms_now(), status_str(f[6]));
		gvm_fence_signal(gate);
		gvm_fence_put(gate);
	}

	gvm_sched_queue_destroy(copy);
	gvm_sched_destroy(sched);
	for (int i = 0; i < 8; i++)
		gvm_fence_put(f[i]);
	gvm_resv_fini(&a.resv);
	gvm_resv_fini(&b.resv);
	gvm_resv_fini(&c.resv);
	printf("Done.  Next: VM_BIND, page tables and the simulated GPU (see README status).\n");
	return sum == expect ? 0 : 1;
}
