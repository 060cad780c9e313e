// SPDX-License-Identifier: MIT
/*
 * The trace recorder: events in memory while a trace records, written as
 * Chrome / Perfetto trace-event JSON when it stops (API in <gvm/trace.h>,
 * hooks in core/trace.h, format in docs/tool.md).
 *
 * Model.  A device is a process (pid), a track inside it a thread (tid):
 * one per queue ("bind queue 0", "compute queue 1", in order of first
 * appearance), one per engine that faulted ("compute engine 0", by
 * instance) and one for TLB invalidations.  Events are complete events
 * ("ph":"X": a start and a duration) or instants ("ph":"i").  The
 * recorder decodes no device structure: the hooks' callers (src/vm) hand
 * it names and numbers.
 *
 * Nesting.  Viewers draw a thread's complete events as a stack and need
 * them properly nested, but concurrent work can put overlapping events on
 * one track (a bind call queuing a job while the queue's previous job
 * runs, two threads flushing one device's TLB).  The writer therefore
 * splits a track into lanes: each event goes to the first lane where it
 * nests, and lane k > 0 becomes its own thread "<track> (+k)".
 *
 * Locking.  trace.control (a plain mutex, outside every gvm lock)
 * serialises gvm_trace_start() and gvm_trace_stop(); trace.lock (rank LEAF)
 * protects everything else, including gvm__trace_enabled's writes.  Hooks
 * read gvm__trace_enabled relaxed (a stale value only costs a lock) and
 * decide under trace.lock.  Each start bumps trace.generation; an event
 * that began before the current trace started (a scope or a kernel still
 * running across a stop/start) is dropped.  No I/O and no other lock under
 * trace.lock; the file is written after the buffer was taken out.
 *
 * Example (what `gvm run --trace` does):
 *
 *	gvm_trace_start("t.json");
 *	... binds and kernels ...
 *	gvm_trace_stop();	// writes t.json
 *
 * Not done: no streaming (everything stays in memory, capped at
 * GVM_TRACE_MAX_EVENTS), no per-thread buffers, no flow events linking a
 * bind to the kernels that waited for it.
 */
#include "core/trace.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gvm/fence.h>
#include <gvm/trace.h>

#include "core/alloc.h"
#include "core/sort.h"
#include "core/sync.h"

uint32_t gvm__trace_enabled;

enum arg_kind { ARG_NONE, ARG_DEC, ARG_HEX, ARG_STR };

#define NR_ARGS 3

struct arg {
	unsigned int kind;
	const char *key;		/* static */
	uint64_t val;
	const char *str;		/* ARG_STR: static */
};

struct event {
	int64_t t0, t1;			/* absolute ns; t1 < 0: an instant */
	const char *name;		/* static or interned */
	const char *cat;		/* static */
	uint32_t track;			/* index in trace.tracks */
	uint32_t lane;			/* set by the writer */
	struct arg args[NR_ARGS];
};

struct proc {
	const void *key;
	char name[32];
};

struct track {
	uint32_t proc;
	const void *key;
	const char *name;		/* static */
	int index;
	uint32_t nr_lanes;		/* writer */
	uint32_t tid;			/* writer: tid of lane 0 */
};

struct name {
	const void *key;		/* the caller's pointer */
	char *copy;
};

struct buffers {
	struct event *ev;
	size_t nr_ev, cap_ev;
	struct proc *procs;
	size_t nr_procs, cap_procs;
	struct track *tracks;
	size_t nr_tracks, cap_tracks;
	struct name *names;
	size_t nr_names, cap_names;
	uint64_t dropped;
};

static struct {
	pthread_mutex_t control;	/* start/stop */
	FILE *file;			/* under control: a trace is on */
	struct gvm_mutex lock;		/* the rest */
	uint64_t generation;
	int64_t epoch;			/* gvm__now_ns() at start */
	struct buffers b;
} trace = {
	.control = PTHREAD_MUTEX_INITIALIZER,
	.lock = { PTHREAD_MUTEX_INITIALIZER, "trace.lock", GVM_RANK_LEAF },
};

static bool recording_locked(int64_t t0)
{
	return gvm_load_relaxed(&gvm__trace_enabled) && t0 >= trace.epoch;
}

/* The track of @w, created if new; -1 if out of memory. */
static long track_locked(const struct gvm__trace_where *w)
{
	struct buffers *b = &trace.b;
	size_t p, t;
	int index = 0;

	for (p = 0; p < b->nr_procs; p++)
		if (b->procs[p].key == w->dev &&
		    !strncmp(b->procs[p].name, w->dev_name,
			     sizeof(b->procs[p].name) - 1))
			break;
	if (p == b->nr_procs) {
		if (GVM_GROW(b->procs, b->cap_procs, p + 1))
			return -1;
		b->procs[p].key = w->dev;
		snprintf(b->procs[p].name, sizeof(b->procs[p].name), "%s",
			 w->dev_name);
		b->nr_procs++;
	}
	for (t = 0; t < b->nr_tracks; t++) {
		const struct track *tr = &b->tracks[t];

		if (tr->proc != p)
			continue;
		if (strcmp(tr->name, w->track_name))
			continue;
		if (tr->key == w->track)
			return (long)t;
		index++;
	}
	if (GVM_GROW(b->tracks, b->cap_tracks, t + 1))
		return -1;
	b->tracks[t] = (struct track){
		.proc = (uint32_t)p,
		.key = w->track,
		.name = w->track_name,
		.index = w->track_index >= 0 ? w->track_index : index,
	};
	b->nr_tracks++;
	return (long)t;
}

/* A copy of @s kept until the trace stops; NULL if out of memory. */
static const char *intern_locked(const char *s)
{
	struct buffers *b = &trace.b;
	size_t i, len;
	char *copy;

	for (i = 0; i < b->nr_names; i++)
		if (b->names[i].key == s)
			return b->names[i].copy;
	if (GVM_GROW(b->names, b->cap_names, i + 1))
		return NULL;
	len = strlen(s) + 1;
	copy = gvm__malloc(len);
	if (!copy)
		return NULL;
	memcpy(copy, s, len);
	b->names[i].key = s;
	b->names[i].copy = copy;
	b->nr_names++;
	return copy;
}

static void append_locked(const struct event *e)
{
	struct buffers *b = &trace.b;

	if (b->nr_ev >= GVM_TRACE_MAX_EVENTS ||
	    GVM_GROW(b->ev, b->cap_ev, b->nr_ev + 1)) {
		b->dropped++;
		return;
	}
	b->ev[b->nr_ev++] = *e;
}

/* Appends @e, which started at e->t0, to the track of @w if it records. */
static void record(const struct gvm__trace_where *w, struct event *e)
{
	long t;

	gvm__mutex_lock(&trace.lock);
	if (recording_locked(e->t0)) {
		t = track_locked(w);
		if (t < 0) {
			trace.b.dropped++;
		} else {
			e->track = (uint32_t)t;
			append_locked(e);
		}
	}
	gvm__mutex_unlock(&trace.lock);
}

/* ---- hooks ------------------------------------------------------------ */

void gvm__trace_scope_begin(struct gvm__trace_scope *s, const char *name,
			    const char *cat, const struct gvm__trace_where *w,
			    const char *k0, uint64_t v0, const char *k1,
			    uint64_t v1, unsigned int hex)
{
	s->name = name;
	s->cat = cat;
	s->w = *w;
	s->key[0] = k0;
	s->key[1] = k1;
	s->val[0] = v0;
	s->val[1] = v1;
	s->hex = hex;
	s->t0 = gvm__now_ns();
}

void gvm__trace_scope_end_slow(struct gvm__trace_scope *s)
{
	struct event e = { .t0 = s->t0, .name = s->name, .cat = s->cat };
	unsigned int i;

	e.t1 = gvm__now_ns();
	for (i = 0; i < 2; i++) {
		e.args[i].key = s->key[i];
		e.args[i].val = s->val[i];
		e.args[i].kind = !s->key[i]	       ? ARG_NONE
				 : s->hex & (1u << i) ? ARG_HEX
						      : ARG_DEC;
	}
	record(&s->w, &e);
}

struct exec_cb {
	struct gvm_fence_cb cb;
	uint64_t generation;
	struct event e;
};

/* Context: the fence's signaller, fence lock held (or the adder). */
static void exec_done(struct gvm_fence *f, struct gvm_fence_cb *cb)
{
	struct exec_cb *c = gvm_container_of(cb, struct exec_cb, cb);
	int status = gvm_fence_get_status(f);

	c->e.t1 = gvm_fence_timestamp(f);
	if (c->e.t1 < c->e.t0)
		c->e.t1 = c->e.t0;
	if (status < 0) {
		c->e.args[1].kind = ARG_STR;
		c->e.args[1].key = "error";
		c->e.args[1].str = status == -EIO ? "EIO (GPU fault)"
				   : status == -ECANCELED ? "ECANCELED"
							  : "failed";
	}
	gvm__mutex_lock(&trace.lock);
	if (c->generation == trace.generation && recording_locked(c->e.t0))
		append_locked(&c->e);
	gvm__mutex_unlock(&trace.lock);
	gvm__free(c);
}

void gvm__trace_exec_slow(const void *dev, const char *dev_name,
			  const void *sq, const char *queue_name,
			  const char *kernel_name, uint64_t lanes,
			  struct gvm_fence *finished)
{
	struct gvm__trace_where w = { dev, dev_name, sq, queue_name, -1 };
	struct exec_cb *c = gvm__calloc(1, sizeof(*c));
	const char *name = NULL;
	long t = -1;

	gvm__mutex_lock(&trace.lock);
	if (!c) {
		trace.b.dropped++;
	} else if (gvm_load_relaxed(&gvm__trace_enabled)) {
		t = track_locked(&w);
		name = intern_locked(kernel_name ? kernel_name : "kernel");
		if (t < 0 || !name)
			trace.b.dropped++;
		c->generation = trace.generation;
	}
	gvm__mutex_unlock(&trace.lock);
	if (!c)
		return;
	if (t < 0 || !name) {
		gvm__free(c);
		return;
	}
	c->e.t0 = gvm__now_ns();
	c->e.name = name;
	c->e.cat = "exec";
	c->e.track = (uint32_t)t;
	c->e.args[0].kind = ARG_DEC;
	c->e.args[0].key = "lanes";
	c->e.args[0].val = lanes;
	if (gvm_fence_add_callback(finished, &c->cb, exec_done))
		gvm__free(c);
}

void gvm__trace_fault_slow(const void *dev, const char *dev_name,
			   const char *engine_name, uint32_t instance,
			   uint64_t addr, const char *access,
			   const char *reason)
{
	/*
	 * Engine tracks: small integers never equal a queue's address, and
	 * the name tells engines of different kinds apart.
	 */
	struct gvm__trace_where w = {
		dev, dev_name, (const void *)(uintptr_t)(1 + (instance & 0xffff)),
		engine_name, (int)(instance & 0xffff)
	};
	struct event e = {
		.t0 = gvm__now_ns(), .t1 = -1, .name = "gpu_fault",
		.cat = "fault",
		.args = { { ARG_HEX, "addr", addr, NULL },
			  { ARG_STR, "access", 0, access },
			  { ARG_STR, "reason", 0, reason } },
	};

	record(&w, &e);
}

void gvm__trace_svm_gc_slow(const void *dev, const char *dev_name,
			    int64_t t0, uint64_t dropped, uint64_t split,
			    uint64_t bytes)
{
	struct gvm__trace_where w = { dev, dev_name, GVM__TRACE_SVM_GC,
				      GVM__TRACE_SVM_GC, -1 };
	struct event e = {
		.t0 = t0, .t1 = gvm__now_ns(), .name = "svm_gc", .cat = "svm",
		.args = { { ARG_DEC, "dropped", dropped, NULL },
			  { ARG_DEC, "split", split, NULL },
			  { ARG_DEC, "bytes", bytes, NULL } },
	};

	record(&w, &e);
}

/* ---- writing ------------------------------------------------------------ */

/*
 * The length of the well-formed UTF-8 sequence at @s (RFC 3629: no
 * overlong forms, surrogates or code points above U+10FFFF), or 0.
 */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	for (i = 1; i < n; i++, lo = 0x80, hi = 0xbf)
		if (s[i] < lo || s[i] > hi)	/* the NUL included */
			return 0;
	return n;
}

/* A JSON string: escaped, and a byte that is not UTF-8 written U+FFFD
   (a device's name may be anything, or cut inside a character). */
static void put_string(FILE *f, const char *s)
{
	fputc('"', f);
	while (*s) {
		unsigned char c = (unsigned char)*s;
		size_t n = utf8_len((const unsigned char *)s);

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else if (!n)
			fputs("\\ufffd", f);
		else
			fwrite(s, 1, n, f);
		s += n ? n : 1;
	}
	fputc('"', f);
}

/* Microseconds with nanosecond digits. */
static void put_us(FILE *f, int64_t ns)
{
	if (ns < 0)
		ns = 0;
	fprintf(f, "%" PRId64 ".%03d", ns / 1000, (int)(ns % 1000));
}

static int cmp_event(const void *a, const void *b)
{
	const struct event *x = a, *y = b;

	if (x->track != y->track)
		return x->track < y->track ? -1 : 1;
	if (x->t0 != y->t0)
		return x->t0 < y->t0 ? -1 : 1;
	/* The longer first, so that the shorter nests in it. */
	return x->t1 > y->t1 ? -1 : x->t1 < y->t1;
}

struct lane {
	int64_t *ends;			/* a stack of open events' ends */
	size_t n, cap;
};

/*
 * Gives each event of b->ev (sorted) a lane of its track where it nests,
 * and each track its lane count.  -ENOMEM.
 */
static int assign_lanes(struct buffers *b)
{
	struct lane *lanes = NULL;
	size_t nr_lanes = 0, cap_lanes = 0, i, l;
	uint32_t track = UINT32_MAX;
	int err = 0;

	for (i = 0; i < b->nr_ev && !err; i++) {
		struct event *e = &b->ev[i];
		size_t used;

		if (e->track != track) {
			track = e->track;
			for (l = 0; l < nr_lanes; l++)
				lanes[l].n = 0;
		}
		e->lane = 0;
		if (e->t1 < 0)
			goto counted;	/* instants nest anywhere */
		for (l = 0;; l++) {
			struct lane *ln;

			if (l == nr_lanes) {
				err = GVM_GROW(lanes, cap_lanes, l + 1);
				if (err)
					break;
				memset(&lanes[l], 0, sizeof(lanes[l]));
				nr_lanes++;
			}
			ln = &lanes[l];
			while (ln->n && ln->ends[ln->n - 1] <= e->t0)
				ln->n--;
			if (ln->n && e->t1 > ln->ends[ln->n - 1])
				continue;
			err = GVM_GROW(ln->ends, ln->cap, ln->n + 1);
			if (err)
				break;
			ln->ends[ln->n++] = e->t1;
			e->lane = (uint32_t)l;
			break;
		}
counted:
		used = (size_t)e->lane + 1;
		if (b->tracks[track].nr_lanes < used)
			b->tracks[track].nr_lanes = (uint32_t)used;
	}
	for (l = 0; l < nr_lanes; l++)
		gvm__free(lanes[l].ends);
	gvm__free(lanes);
	return err;
}

static void put_meta(FILE *f, const char *what, uint32_t pid, uint32_t tid,
		     const char *name, uint32_t sort)
{
	fprintf(f, ",\n{\"name\":\"%s\",\"ph\":\"M\",\"pid\":%" PRIu32
		   ",\"tid\":%" PRIu32 ",\"args\":{\"name\":",
		what, pid, tid);
	put_string(f, name);
	fprintf(f, "}},\n{\"name\":\"%s_sort_index\",\"ph\":\"M\",\"pid\":%" PRIu32
		   ",\"tid\":%" PRIu32 ",\"args\":{\"sort_index\":%" PRIu32 "}}",
		!strcmp(what, "process_name") ? "process" : "thread", pid, tid,
		sort);
}

static void put_event(FILE *f, const struct buffers *b, const struct event *e,
		      int64_t epoch)
{
	const struct track *tr = &b->tracks[e->track];
	unsigned int i, n = 0;

	fputs(",\n{\"name\":", f);
	put_string(f, e->name);
	fprintf(f, ",\"cat\":\"%s\",\"ph\":\"%s\",\"pid\":%" PRIu32
		   ",\"tid\":%" PRIu32 ",\"ts\":",
		e->cat, e->t1 < 0 ? "i" : "X", tr->proc + 1, tr->tid + e->lane);
	put_us(f, e->t0 - epoch);
	if (e->t1 < 0) {
		fputs(",\"s\":\"t\"", f);
	} else {
		fputs(",\"dur\":", f);
		put_us(f, e->t1 - e->t0);
	}
	fputs(",\"args\":{", f);
	for (i = 0; i < NR_ARGS; i++) {
		const struct arg *a = &e->args[i];

		if (a->kind == ARG_NONE)
			continue;
		fprintf(f, "%s\"%s\":", n++ ? "," : "", a->key);
		if (a->kind == ARG_DEC)
			fprintf(f, "%" PRIu64, a->val);
		else if (a->kind == ARG_HEX)
			fprintf(f, "\"0x%" PRIx64 "\"", a->val);
		else
			put_string(f, a->str);
	}
	fputs("}}", f);
}

static int write_trace(FILE *f, struct buffers *b, int64_t epoch)
{
	char name[64];
	size_t i, p, t;
	uint32_t l;
	int err;

	gvm__sort(b->ev, b->nr_ev, sizeof(*b->ev), cmp_event);
	err = assign_lanes(b);
	if (err)
		return err;
	fprintf(f, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"generator\":"
		   "\"gvm\",\"events\":%zu,\"dropped_events\":%" PRIu64 "},\n"
		   "\"traceEvents\":[\n",
		b->nr_ev, b->dropped);
	/* Something first, so every later element can start with a comma. */
	fputs("{\"name\":\"trace\",\"cat\":\"gvm\",\"ph\":\"i\",\"s\":\"g\","
	      "\"pid\":0,\"tid\":0,\"ts\":0}", f);
	for (p = 0; p < b->nr_procs; p++) {
		uint32_t tid = 1;

		put_meta(f, "process_name", (uint32_t)p + 1, 0,
			 b->procs[p].name, (uint32_t)p + 1);
		for (t = 0; t < b->nr_tracks; t++) {
			struct track *tr = &b->tracks[t];

			if (tr->proc != p)
				continue;
			tr->tid = tid;
			for (l = 0; l < tr->nr_lanes || l == 0; l++) {
				if (l)
					snprintf(name, sizeof(name),
						 "%s %d (+%" PRIu32 ")",
						 tr->name, tr->index, l);
				else
					snprintf(name, sizeof(name), "%s %d",
						 tr->name, tr->index);
				put_meta(f, "thread_name", (uint32_t)p + 1,
					 tid, name, tid);
				tid++;
			}
		}
	}
	for (i = 0; i < b->nr_ev; i++)
		put_event(f, b, &b->ev[i], epoch);
	fputs("\n]}\n", f);
	return 0;
}

static void buffers_free(struct buffers *b)
{
	size_t i;

	for (i = 0; i < b->nr_names; i++)
		gvm__free(b->names[i].copy);
	gvm__free(b->names);
	gvm__free(b->ev);
	gvm__free(b->procs);
	gvm__free(b->tracks);
	memset(b, 0, sizeof(*b));
}

/* ---- API ---------------------------------------------------------------- */

int gvm_trace_start(const char *path)
{
	FILE *f;
	int err = 0;

	if (!path)
		return -EINVAL;
	gvm__stack_check();
	pthread_mutex_lock(&trace.control);
	if (trace.file) {
		err = -EBUSY;
		goto out;
	}
	f = fopen(path, "w");
	if (!f) {
		err = errno ? -errno : -EIO;
		goto out;
	}
	trace.file = f;
	gvm__mutex_lock(&trace.lock);
	buffers_free(&trace.b);
	trace.generation++;
	trace.epoch = gvm__now_ns();
	gvm_store_relaxed(&gvm__trace_enabled, 1u);
	gvm__mutex_unlock(&trace.lock);
out:
	pthread_mutex_unlock(&trace.control);
	return err;
}

int gvm_trace_stop(void)
{
	struct buffers b;
	int64_t epoch;
	int err;

	gvm__stack_check();
	pthread_mutex_lock(&trace.control);
	if (!trace.file) {
		pthread_mutex_unlock(&trace.control);
		return -EINVAL;
	}
	gvm__mutex_lock(&trace.lock);
	gvm_store_relaxed(&gvm__trace_enabled, 0u);
	b = trace.b;
	memset(&trace.b, 0, sizeof(trace.b));
	epoch = trace.epoch;
	gvm__mutex_unlock(&trace.lock);

	errno = 0;
	err = write_trace(trace.file, &b, epoch);
	if (!err && (fflush(trace.file) || ferror(trace.file)))
		err = errno ? -errno : -EIO;
	if (fclose(trace.file) && !err)
		err = errno ? -errno : -EIO;
	trace.file = NULL;
	buffers_free(&b);
	pthread_mutex_unlock(&trace.control);
	return err;
}
