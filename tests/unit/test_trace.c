// SPDX-License-Identifier: MIT
/*
 * Trace recorder tests (<gvm/trace.h>, src/core/trace.c).
 *
 * The written file is parsed by a small JSON reader below (strict enough
 * to reject unbalanced brackets, bad strings and trailing garbage), then
 * checked: the traceEvents array, the keys every event needs, the event
 * names a bind + exec + unbind + faulting exec on a simulated device
 * produce, the SVM garbage collector's after a munmap, and that complete
 * events on one thread nest (what viewers need).
 */
#include <sys/mman.h>

#include <gvm/gvm.h>
#include <gvm/mm.h>
#include <gvm/sim.h>
#include <gvm/trace.h>
#include <gvm/vm.h>

#include "core/trace.h"
#include "harness.h"
#include "vm/fault_queue.h"

/* ---- a minimal JSON reader ------------------------------------------------ */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	enum jtype t;
	double num;
	char *str;			/* J_STR */
	struct jv *items;		/* J_ARR, J_OBJ (values) */
	char **keys;			/* J_OBJ */
	size_t n;
};

struct jp {
	const char *s;
	int depth;
};

static void ws(struct jp *p)
{
	while (*p->s == ' ' || *p->s == '\n' || *p->s == '\t' || *p->s == '\r')
		p->s++;
}

static bool parse_value(struct jp *p, struct jv *v);

static bool parse_string(struct jp *p, char **out)
{
	size_t cap = 16, n = 0;
	char *buf = malloc(cap);

	if (*p->s++ != '"')
		goto bad;
	for (;;) {
		char c = *p->s++;

		if (c == '"')
			break;
		if ((unsigned char)c < 0x20)
			goto bad;	/* includes the terminating NUL */
		if (c == '\\') {
			c = *p->s++;
			if (c == 'u') {
				for (int i = 0; i < 4; i++)
					if (!strchr("0123456789abcdefABCDEF",
						    *p->s++) || !p->s[-1])
						goto bad;
				c = '?';
			} else if (!strchr("\"\\/bfnrt", c) || !c) {
				goto bad;
			}
		}
		if (n + 2 > cap)
			buf = realloc(buf, cap *= 2);
		buf[n++] = c;
	}
	buf[n] = 0;
	*out = buf;
	return true;
bad:
	free(buf);
	return false;
}

static bool parse_number(struct jp *p, struct jv *v)
{
	char *end;

	if (*p->s != '-' && (*p->s < '0' || *p->s > '9'))
		return false;
	v->t = J_NUM;
	v->num = strtod(p->s, &end);
	p->s = end;
	return true;
}

static bool parse_list(struct jp *p, struct jv *v, char close, bool obj)
{
	size_t cap = 0;

	p->s++;
	ws(p);
	if (*p->s == close) {
		p->s++;
		return true;
	}
	for (;;) {
		if (v->n == cap) {
			cap = cap ? cap * 2 : 8;
			v->items = realloc(v->items, cap * sizeof(*v->items));
			if (obj)
				v->keys = realloc(v->keys,
						  cap * sizeof(*v->keys));
		}
		ws(p);
		if (obj) {
			if (*p->s != '"' || !parse_string(p, &v->keys[v->n]))
				return false;
			ws(p);
			if (*p->s++ != ':')
				return false;
		}
		if (!parse_value(p, &v->items[v->n]))
			return false;
		v->n++;
		ws(p);
		if (*p->s == ',') {
			p->s++;
			continue;
		}
		if (*p->s++ != close)
			return false;
		return true;
	}
}

static bool parse_value(struct jp *p, struct jv *v)
{
	bool ok;

	memset(v, 0, sizeof(*v));
	ws(p);
	if (++p->depth > 64)
		return false;
	switch (*p->s) {
	case '{':
		v->t = J_OBJ;
		ok = parse_list(p, v, '}', true);
		break;
	case '[':
		v->t = J_ARR;
		ok = parse_list(p, v, ']', false);
		break;
	case '"':
		v->t = J_STR;
		ok = parse_string(p, &v->str);
		break;
	case 't':
	case 'f':
	case 'n':
		v->t = *p->s == 'n' ? J_NULL : J_BOOL;
		ok = !strncmp(p->s, "true", 4) || !strncmp(p->s, "false", 5) ||
		     !strncmp(p->s, "null", 4);
		p->s += *p->s == 'f' ? 5 : 4;
		break;
	default:
		ok = parse_number(p, v);
	}
	p->depth--;
	return ok;
}

static void jv_free(struct jv *v)
{
	for (size_t i = 0; i < v->n; i++) {
		jv_free(&v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->str);
}

static const struct jv *jget(const struct jv *o, const char *key)
{
	if (o->t != J_OBJ)
		return NULL;
	for (size_t i = 0; i < o->n; i++)
		if (!strcmp(o->keys[i], key))
			return &o->items[i];
	return NULL;
}

static const char *jstr(const struct jv *o, const char *key)
{
	const struct jv *v = jget(o, key);

	return v && v->t == J_STR ? v->str : NULL;
}

/* ---- reading a trace ------------------------------------------------------- */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t cap = 1 << 16, n = 0, r;
	char *buf = malloc(cap);

	ASSERT_TRUE(f);
	while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (cap - n < 2)
			buf = realloc(buf, cap *= 2);
	}
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* Parses the trace at @path into @root; checks every event's keys. */
static const struct jv *load_trace(const char *path, struct jv *root)
{
	char *text = slurp(path);
	struct jp p = { text, 0 };
	const struct jv *evs;

	ASSERT_TRUE(parse_value(&p, root));
	ws(&p);
	ASSERT_EQ(*p.s, 0);		/* nothing after the top object */
	free(text);
	ASSERT_EQ(root->t, J_OBJ);
	evs = jget(root, "traceEvents");
	ASSERT_TRUE(evs && evs->t == J_ARR);
	for (size_t i = 0; i < evs->n; i++) {
		const struct jv *e = &evs->items[i];
		const char *ph = jstr(e, "ph");

		ASSERT_EQ(e->t, J_OBJ);
		ASSERT_TRUE(jstr(e, "name"));
		ASSERT_TRUE(ph);
		ASSERT_TRUE(jget(e, "pid") && jget(e, "pid")->t == J_NUM);
		ASSERT_TRUE(jget(e, "tid") && jget(e, "tid")->t == J_NUM);
		if (!strcmp(ph, "M")) {
			ASSERT_TRUE(jget(e, "args"));
			continue;
		}
		ASSERT_TRUE(!strcmp(ph, "X") || !strcmp(ph, "i"));
		ASSERT_TRUE(jget(e, "ts") && jget(e, "ts")->t == J_NUM);
		ASSERT_TRUE(jstr(e, "cat"));
		if (!strcmp(ph, "X"))
			ASSERT_TRUE(jget(e, "dur") && jget(e, "dur")->num >= 0);
		else
			ASSERT_TRUE(jstr(e, "s"));
	}
	return evs;
}

static unsigned int count(const struct jv *evs, const char *ph,
			  const char *name)
{
	unsigned int n = 0;

	for (size_t i = 0; i < evs->n; i++)
		if (!strcmp(jstr(&evs->items[i], "ph"), ph) &&
		    !strcmp(jstr(&evs->items[i], "name"), name))
			n++;
	return n;
}

/* The number of metadata events naming a thread @name. */
static unsigned int thread_named(const struct jv *evs, const char *name)
{
	unsigned int n = 0;

	for (size_t i = 0; i < evs->n; i++) {
		const struct jv *e = &evs->items[i];
		const char *t;

		if (strcmp(jstr(e, "name"), "thread_name"))
			continue;
		t = jstr(jget(e, "args"), "name");
		n += t && !strcmp(t, name);
	}
	return n;
}

struct span {
	double pid, tid, ts, end;
};

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->tid != y->tid)
		return x->tid < y->tid ? -1 : 1;
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->end > y->end ? -1 : x->end < y->end;
}

/* Complete events of one thread nest (each inside or after the others). */
static void check_nesting(const struct jv *evs)
{
	struct span *s = calloc(evs->n + 1, sizeof(*s)), *stack;
	size_t n = 0, depth = 0, i;

	stack = calloc(evs->n + 1, sizeof(*stack));
	for (i = 0; i < evs->n; i++) {
		const struct jv *e = &evs->items[i];

		if (strcmp(jstr(e, "ph"), "X"))
			continue;
		s[n].pid = jget(e, "pid")->num;
		s[n].tid = jget(e, "tid")->num;
		s[n].ts = jget(e, "ts")->num;
		s[n].end = s[n].ts + jget(e, "dur")->num;
		n++;
	}
	qsort(s, n, sizeof(*s), cmp_span);
	for (i = 0; i < n; i++) {
		if (i && (s[i].pid != s[i - 1].pid || s[i].tid != s[i - 1].tid))
			depth = 0;
		while (depth && stack[depth - 1].end <= s[i].ts + 1e-9)
			depth--;
		if (depth)
			ASSERT_TRUE(s[i].end <= stack[depth - 1].end + 1e-9);
		stack[depth++] = s[i];
	}
	free(s);
	free(stack);
}

static void tmp_path(char *buf, size_t len)
{
	const char *dir = getenv("TMPDIR");

	snprintf(buf, len, "%s/gvm_trace_%d.json", dir ? dir : "/tmp",
		 (int)getpid());
}

/* ---- tests ---------------------------------------------------------------- */

TEST(start_stop_errors)
{
	char path[256];
	struct jv root;
	const struct jv *evs;

	tmp_path(path, sizeof(path));
	ASSERT_EQ(gvm_trace_stop(), -EINVAL);
	ASSERT_EQ(gvm_trace_start(NULL), -EINVAL);
	ASSERT_EQ(gvm_trace_start("/nonexistent-dir/x/trace.json"), -ENOENT);
	ASSERT_FALSE(gvm__trace_on());
	ASSERT_OK(gvm_trace_start(path));
	ASSERT_TRUE(gvm__trace_on());
	ASSERT_EQ(gvm_trace_start(path), -EBUSY);
	ASSERT_OK(gvm_trace_stop());
	ASSERT_FALSE(gvm__trace_on());
	ASSERT_EQ(gvm_trace_stop(), -EINVAL);

	/* An empty trace is still a well-formed file. */
	evs = load_trace(path, &root);
	ASSERT_EQ(count(evs, "X", "vm_bind"), 0);
	ASSERT_EQ(jget(jget(&root, "otherData"), "events")->num, 0);
	jv_free(&root);
	unlink(path);
}

struct env {
	struct gvm_device *dev;
	struct gvm_vm *vm;
	struct gvm_queue *cq, *bq;
	struct gvm_bo *bo;
};

static int exec_wait(struct gvm_queue *q, const struct gvm_kernel *k)
{
	struct gvm_fence *f = NULL;
	struct gvm_sync s = { .type = GVM_SYNC_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .out = &f };
	int st;

	ASSERT_OK(gvm_exec(q, k, &s, 1));
	ASSERT_OK(gvm_fence_wait(f, GVM_TIMEOUT_INFINITE));
	st = gvm_fence_get_status(f);
	gvm_fence_put(f);
	return st;
}

/*
 * An inline bind, a queued bind (its in-fence signalled later), a fill,
 * an unbind (TLB invalidation) and a store to the unbound address (a
 * fault and a failed kernel).
 */
static void workload(void)
{
	const uint64_t va = 1ull << 30, sz = 2ull << 20;
	struct gvm_sim_config cfg = { .name = "tracedev",
				      .vram_size = 32ull << 20 };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = va,
				  .range = sz / 2 };
	struct gvm_fence *in, *out = NULL;
	struct gvm_sync s[2] = {
		{ .type = GVM_SYNC_FENCE },
		{ .type = GVM_SYNC_FENCE, .flags = GVM_SYNC_SIGNAL, .out = &out },
	};
	struct gvm_kernel k;
	struct env v;

	ASSERT_OK(gvm_sim_device_create(&cfg, &v.dev));
	ASSERT_OK(gvm_vm_create(v.dev, NULL, 0, &v.vm));
	ASSERT_OK(gvm_queue_create(v.vm, GVM_ENGINE_COMPUTE, &v.cq));
	ASSERT_OK(gvm_queue_create(v.vm, GVM_ENGINE_BIND, &v.bq));
	ASSERT_OK(gvm_bo_create(v.dev, sz, GVM_MEM_VRAM, v.vm, &v.bo));
	op.bo = v.bo;
	ASSERT_OK(gvm_vm_bind(v.vm, NULL, &op, 1, NULL, 0));

	ASSERT_OK(gvm_fence_create(gvm_fence_context_alloc(1), 1, &in));
	s[0].fence = in;
	op.addr += sz / 2;
	op.bo_offset = sz / 2;
	ASSERT_OK(gvm_vm_bind(v.vm, v.bq, &op, 1, s, 2));
	ASSERT_OK(gvm_fence_signal(in));
	ASSERT_OK(gvm_fence_wait(out, GVM_TIMEOUT_INFINITE));
	gvm_fence_put(out);
	gvm_fence_put(in);

	ASSERT_OK(gvm_kernel_fill(&k, va, sz, 0x01020304));
	ASSERT_EQ(exec_wait(v.cq, &k), 1);
	op.op = GVM_BIND_UNMAP;
	op.bo = NULL;
	op.bo_offset = 0;
	op.addr = va;
	op.range = sz;
	ASSERT_OK(gvm_vm_bind(v.vm, NULL, &op, 1, NULL, 0));
	ASSERT_OK(gvm_kernel_store_dword(&k, va, 1, 64));
	ASSERT_EQ(exec_wait(v.cq, &k), -EIO);

	gvm_bo_put(v.bo);
	gvm_queue_destroy(v.bq);
	gvm_queue_destroy(v.cq);
	ASSERT_OK(gvm_vm_destroy(v.vm));
	gvm_device_put(v.dev);
}

TEST(bind_exec_unbind_fault)
{
	char path[256];
	struct jv root;
	const struct jv *evs, *pn = NULL;

	tmp_path(path, sizeof(path));
	ASSERT_OK(gvm_trace_start(path));
	workload();
	ASSERT_OK(gvm_trace_stop());

	evs = load_trace(path, &root);
	ASSERT_GE(count(evs, "X", "vm_bind"), 3);
	ASSERT_EQ(count(evs, "X", "bind_job"), 1);
	ASSERT_EQ(count(evs, "X", "fill"), 1);
	ASSERT_EQ(count(evs, "X", "store_dword"), 1);
	ASSERT_GE(count(evs, "X", "tlb_inval"), 1);
	ASSERT_EQ(count(evs, "i", "gpu_fault"), 1);
	for (size_t i = 0; i < evs->n; i++)
		if (!strcmp(jstr(&evs->items[i], "name"), "process_name"))
			pn = &evs->items[i];
	ASSERT_TRUE(pn);
	ASSERT_TRUE(!strcmp(jstr(jget(pn, "args"), "name"), "tracedev"));
	ASSERT_EQ(thread_named(evs, "bind queue 0"), 1);  /* the default */
	ASSERT_EQ(thread_named(evs, "bind queue 1"), 1);  /* v.bq */
	ASSERT_EQ(thread_named(evs, "compute queue 0"), 1);
	ASSERT_EQ(thread_named(evs, "compute engine 0") +
			  thread_named(evs, "compute engine 1"), 1);
	ASSERT_EQ(thread_named(evs, "TLB 0"), 1);
	for (size_t i = 0; i < evs->n; i++) {
		const struct jv *e = &evs->items[i];

		if (!strcmp(jstr(e, "name"), "gpu_fault")) {
			ASSERT_TRUE(!strcmp(jstr(jget(e, "args"), "addr"),
					    "0x40000000"));
			ASSERT_TRUE(!strcmp(jstr(jget(e, "args"), "access"),
					    "write"));
		}
		if (!strcmp(jstr(e, "name"), "store_dword"))
			ASSERT_TRUE(jstr(jget(e, "args"), "error"));
	}
	check_nesting(evs);
	ASSERT_EQ(jget(jget(&root, "otherData"), "dropped_events")->num, 0);
	jv_free(&root);
	unlink(path);
}

/*
 * A fault-mode VM's fault goes through the device's fault queue: one
 * fault_batch scope (with the batch size) on the "fault queue" track,
 * around the fault's service.
 */
TEST(fault_batch_of_a_fault_mode_vm)
{
	const uint64_t va = 1ull << 30;
	struct gvm_sim_config cfg = { .name = "tracedev",
				      .vram_size = 32ull << 20 };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = va,
				  .range = 4096 };
	uint64_t uf = 0;
	struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
			      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
			      .value = 1 };
	const struct jv *evs, *b = NULL;
	struct gvm_kernel k;
	struct jv root;
	char path[256];
	struct env v;

	tmp_path(path, sizeof(path));
	ASSERT_OK(gvm_sim_device_create(&cfg, &v.dev));
	ASSERT_OK(gvm_vm_create(v.dev, NULL,
				GVM_VM_LR_MODE | GVM_VM_FAULT_MODE, &v.vm));
	ASSERT_OK(gvm_queue_create(v.vm, GVM_ENGINE_COMPUTE, &v.cq));
	ASSERT_OK(gvm_bo_create(v.dev, 4096, GVM_MEM_VRAM, v.vm, &v.bo));
	op.bo = v.bo;
	ASSERT_OK(gvm_vm_bind(v.vm, NULL, &op, 1, NULL, 0));
	ASSERT_OK(gvm_trace_start(path));
	ASSERT_OK(gvm_kernel_store_dword(&k, va + 8, 1, 64));
	ASSERT_OK(gvm_exec(v.cq, &k, &s, 1));
	ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	ASSERT_OK(gvm_trace_stop());
	gvm_bo_put(v.bo);
	gvm_queue_destroy(v.cq);
	ASSERT_OK(gvm_vm_destroy(v.vm));
	gvm_device_put(v.dev);

	evs = load_trace(path, &root);
	ASSERT_EQ(count(evs, "i", "gpu_fault"), 1);
	ASSERT_EQ(count(evs, "X", "fault_batch"), 1);
	for (size_t i = 0; i < evs->n; i++)
		if (!strcmp(jstr(&evs->items[i], "name"), "fault_batch"))
			b = &evs->items[i];
	ASSERT_TRUE(b);
	ASSERT_EQ(jget(jget(b, "args"), "faults")->num, 1);
	ASSERT_EQ(thread_named(evs, "fault queue 0"), 1);
	check_nesting(evs);
	jv_free(&root);
	unlink(path);
}

/*
 * SVM garbage collection: a munmap of one 2 MiB range and of half of the
 * next drops both (the second split: its mapped half covered again by
 * smaller ranges); the collector records svm_gc events, on the "svm gc"
 * track, whose arguments add up to that.
 */
TEST(svm_gc_after_munmap)
{
	const uint64_t m2 = 2ull << 20, mirror_end = 1ull << 47;
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = 4096,
				  .range = mirror_end - 4096,
				  .flags = GVM_BIND_CPU_ADDR_MIRROR };
	double dropped = 0, split = 0, bytes = 0;
	uint8_t *map, *p;
	const struct jv *evs;
	struct gvm_kernel k;
	struct gvm_mm *mm;
	struct jv root;
	char path[256];
	struct env v;
	int i;

	tmp_path(path, sizeof(path));
	ASSERT_OK(gvm_mm_self(&mm));
	ASSERT_OK(gvm_sim_device_create(NULL, &v.dev));
	ASSERT_OK(gvm_vm_create(v.dev, mm, GVM_VM_LR_MODE | GVM_VM_FAULT_MODE,
				&v.vm));
	ASSERT_OK(gvm_queue_create(v.vm, GVM_ENGINE_COMPUTE, &v.cq));
	ASSERT_OK(gvm_vm_bind(v.vm, NULL, &op, 1, NULL, 0));
	map = mmap(NULL, 3 * m2, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(map != MAP_FAILED);
	p = (uint8_t *)(((uintptr_t)map + m2 - 1) & ~(uintptr_t)(m2 - 1));
	for (i = 0; i < 2; i++) {	/* a 2 MiB range each */
		uint64_t uf = 0;
		struct gvm_sync s = { .type = GVM_SYNC_USER_FENCE,
				      .flags = GVM_SYNC_SIGNAL, .addr = &uf,
				      .value = 1 };

		ASSERT_OK(gvm_kernel_store_dword(&k, (uintptr_t)p + i * m2, 1,
						 64));
		ASSERT_OK(gvm_exec(v.cq, &k, &s, 1));
		ASSERT_OK(gvm_user_fence_wait(&uf, 1, GVM_TIMEOUT_INFINITE));
	}
	ASSERT_OK(gvm_trace_start(path));
	ASSERT_OK(munmap(p, m2 + m2 / 2));
	ASSERT_OK(gvm_mm_flush(mm));
	gvm__fault_queue_collect_wait(v.vm);
	ASSERT_OK(gvm_trace_stop());
	gvm_queue_destroy(v.cq);
	ASSERT_OK(gvm_vm_destroy(v.vm));
	gvm_device_put(v.dev);
	gvm_mm_put(mm);
	munmap(map, 3 * m2);

	evs = load_trace(path, &root);
	ASSERT_GE(count(evs, "X", "svm_gc"), 1);
	for (size_t j = 0; j < evs->n; j++) {
		const struct jv *e = &evs->items[j], *a;

		if (strcmp(jstr(e, "name"), "svm_gc"))
			continue;
		a = jget(e, "args");
		ASSERT_TRUE(!strcmp(jstr(e, "cat"), "svm"));
		dropped += jget(a, "dropped")->num;
		split += jget(a, "split")->num;
		bytes += jget(a, "bytes")->num;
	}
	ASSERT_EQ(dropped, 2);
	ASSERT_EQ(split, 1);
	ASSERT_EQ(bytes, 2 * m2);
	ASSERT_EQ(thread_named(evs, "svm gc 0"), 1);
	check_nesting(evs);
	jv_free(&root);
	unlink(path);
}

TEST(nothing_recorded_when_stopped)
{
	char path[256];
	struct jv root;
	const struct jv *evs;

	tmp_path(path, sizeof(path));
	workload();			/* no trace: nothing kept */
	ASSERT_OK(gvm_trace_start(path));
	ASSERT_OK(gvm_trace_stop());
	workload();			/* after the stop: dropped */
	evs = load_trace(path, &root);
	ASSERT_EQ(jget(jget(&root, "otherData"), "events")->num, 0);
	ASSERT_EQ(count(evs, "X", "vm_bind"), 0);
	jv_free(&root);
	unlink(path);
}

/* Overlapping events on one track are split into lanes that nest. */
TEST(overlaps_get_their_own_lane)
{
	static const char dev_name[] = "dev \"quoted\"";
	struct gvm__trace_where w = { &w, dev_name, &w, "bind queue", -1 };
	struct gvm__trace_scope a, b, c;
	char path[256];
	struct jv root;
	const struct jv *evs;

	tmp_path(path, sizeof(path));
	ASSERT_OK(gvm_trace_start(path));
	gvm__trace_scope_begin(&a, "a", "test", &w, NULL, 0, NULL, 0, 0);
	gvm_test_sleep_ns(100000);
	gvm__trace_scope_begin(&b, "b", "test", &w, "x", 7, NULL, 0, 0);
	gvm_test_sleep_ns(100000);
	gvm__trace_scope_end_slow(&a);		/* b overlaps a's end */
	gvm__trace_scope_begin(&c, "c", "test", &w, NULL, 0, NULL, 0, 0);
	gvm__trace_scope_end_slow(&c);		/* c nests in b */
	gvm_test_sleep_ns(100000);
	gvm__trace_scope_end_slow(&b);
	ASSERT_OK(gvm_trace_stop());

	evs = load_trace(path, &root);
	ASSERT_EQ(count(evs, "X", "a") + count(evs, "X", "b") +
			  count(evs, "X", "c"), 3);
	ASSERT_EQ(thread_named(evs, "bind queue 0"), 1);
	ASSERT_EQ(thread_named(evs, "bind queue 0 (+1)"), 1);
	check_nesting(evs);
	jv_free(&root);
	unlink(path);
}

/*
 * A device name that is not UTF-8 (any bytes, or a character cut by the
 * name's length limit) is written as U+FFFD escapes, so the trace stays
 * valid JSON; a well-formed character is written as it is.
 */
TEST(names_that_are_not_utf8_are_replaced)
{
	struct gvm_sim_config cfg = { .name = "ok\xc3\xa9 bad\xff\xe2\x82",
				      .vram_size = 32ull << 20 };
	struct gvm_bind_op op = { .op = GVM_BIND_MAP, .addr = 1ull << 30,
				  .range = 64 << 10 };
	struct gvm_device *dev;
	struct gvm_vm *vm;
	char path[256], *text;
	struct jv root;

	tmp_path(path, sizeof(path));
	ASSERT_OK(gvm_trace_start(path));
	ASSERT_OK(gvm_sim_device_create(&cfg, &dev));
	ASSERT_OK(gvm_vm_create(dev, NULL, 0, &vm));
	ASSERT_OK(gvm_bo_create(dev, 64 << 10, GVM_MEM_VRAM, vm, &op.bo));
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));
	gvm_bo_put(op.bo);
	ASSERT_OK(gvm_vm_destroy(vm));
	gvm_device_put(dev);
	ASSERT_OK(gvm_trace_stop());

	text = slurp(path);
	ASSERT_TRUE(strstr(text, "\"ok\xc3\xa9 bad\\ufffd\\ufffd\\ufffd\""));
	ASSERT_TRUE(strchr(text, '\xff') == NULL);
	free(text);
	load_trace(path, &root);		/* and it parses */
	jv_free(&root);
	unlink(path);
}
