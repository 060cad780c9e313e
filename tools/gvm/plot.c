// SPDX-License-Identifier: MIT
/*
 * gvm plot TRACE [-o FILE.svg]: one self-contained SVG of a trace written
 * by `gvm run --trace` (or gvm_trace_start): over time, the GPU faults, the
 * bytes SVM migrated each way, and how busy the kernels kept the engines,
 * so that a workload that thrashes (faults and migrations that never
 * stop, kernels starved) shows at a glance without a trace viewer.
 *
 * It reads the trace line by line (the writer puts one event per line,
 * docs/tool.md) and keeps only: "gpu_fault" instants, "to_vram" and
 * "to_system" migrations (their "size" argument, counted where they end)
 * and the kernels (category "exec", their duration spread over the
 * buckets they cover).  Time is cut into PLOT_BUCKETS equal buckets.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gvm_tool.h"

#define PLOT_BUCKETS 120
#define W 960
#define LEFT 80
#define PANEL_H 150
#define GAP 50

struct plot_event {
	char kind;			/* 'f' fault, 'v' to VRAM, 's' to system,
					   'k' kernel */
	double ts, dur;			/* microseconds */
	double bytes;
};

struct plot {
	struct plot_event *ev;
	size_t n, cap;
	double t_end;
	double faults[PLOT_BUCKETS], to_vram[PLOT_BUCKETS],
		to_sys[PLOT_BUCKETS], busy[PLOT_BUCKETS];
	double nr_faults, bytes_vram, bytes_sys, kernel_us;
};

/* The value after "@key": in @line, as a double; false if absent. */
static bool field(const char *line, const char *key, double *out)
{
	const char *p = strstr(line, key);

	if (!p)
		return false;
	p += strlen(key);
	if (*p == '"')
		p++;
	*out = strtod(p, NULL);
	return true;
}

static int add(struct plot *pl, char kind, const char *line)
{
	struct plot_event e = { .kind = kind };

	if (!field(line, "\"ts\":", &e.ts))
		return 0;
	field(line, "\"dur\":", &e.dur);
	field(line, "\"size\":", &e.bytes);
	/* Times and sizes a trace can have: a hostile file is refused,
	   not drawn outside the buckets. */
	if (!isfinite(e.ts) || !isfinite(e.dur) || !isfinite(e.bytes) ||
	    e.ts < 0 || e.dur < 0 || e.bytes < 0 || e.ts + e.dur > 1e15)
		return -EINVAL;
	if (pl->n == pl->cap) {
		size_t cap = pl->cap ? 2 * pl->cap : 1024;
		struct plot_event *n = realloc(pl->ev, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		pl->ev = n;
		pl->cap = cap;
	}
	pl->ev[pl->n++] = e;
	if (e.ts + e.dur > pl->t_end)
		pl->t_end = e.ts + e.dur;
	return 0;
}

static int load(struct plot *pl, FILE *f)
{
	char *line = NULL;
	size_t cap = 0;
	int err = 0;

	while (!err && getline(&line, &cap, f) > 0) {
		if (strstr(line, "\"name\":\"gpu_fault\""))
			err = add(pl, 'f', line);
		else if (strstr(line, "\"name\":\"to_vram\""))
			err = add(pl, 'v', line);
		else if (strstr(line, "\"name\":\"to_system\""))
			err = add(pl, 's', line);
		else if (strstr(line, "\"cat\":\"exec\"") &&
			 strstr(line, "\"ph\":\"X\""))
			err = add(pl, 'k', line);
	}
	free(line);
	return err;
}

static void bucketize(struct plot *pl)
{
	double w = pl->t_end / PLOT_BUCKETS;

	for (size_t i = 0; i < pl->n; i++) {
		const struct plot_event *e = &pl->ev[i];
		double end = e->ts + e->dur;
		int b = w > 0 ? (int)(end / w) : 0;

		if (b >= PLOT_BUCKETS)
			b = PLOT_BUCKETS - 1;
		switch (e->kind) {
		case 'f':
			pl->faults[b]++;
			pl->nr_faults++;
			break;
		case 'v':
			pl->to_vram[b] += e->bytes;
			pl->bytes_vram += e->bytes;
			break;
		case 's':
			pl->to_sys[b] += e->bytes;
			pl->bytes_sys += e->bytes;
			break;
		case 'k':
			pl->kernel_us += e->dur;
			for (int j = w > 0 ? (int)(e->ts / w) : 0;
			     j < PLOT_BUCKETS; j++) {
				double lo = j * w, hi = lo + w;
				double a = e->ts > lo ? e->ts : lo;
				double z = end < hi ? end : hi;

				if (z <= a)
					break;
				pl->busy[j] += (z - a) / w;
			}
			break;
		}
	}
}

static double max_of(const double *v)
{
	double m = 0;

	for (int i = 0; i < PLOT_BUCKETS; i++)
		if (v[i] > m)
			m = v[i];
	return m;
}

/* Bars of @v (scaled to @vmax) from baseline @y0, up (@dir -1) or down. */
static void bars(FILE *o, const double *v, double vmax, int y0, int h,
		 int dir, const char *colour)
{
	double bw = (double)(W - LEFT - 20) / PLOT_BUCKETS;

	for (int i = 0; i < PLOT_BUCKETS; i++) {
		double bh = vmax > 0 ? v[i] / vmax * h : 0;

		if (bh <= 0)
			continue;
		fprintf(o, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' "
			   "fill='%s'/>\n", LEFT + i * bw,
			dir < 0 ? y0 - bh : (double)y0, bw > 1.5 ? bw - 0.5 : bw,
			bh, colour);
	}
}

static void panel(FILE *o, int top, const char *title, const char *ymax)
{
	fprintf(o, "<text x='%d' y='%d' font-weight='bold'>%s</text>\n", LEFT,
		top - 8, title);
	fprintf(o, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' "
		   "stroke='#bbb'/>\n", LEFT, top, W - LEFT - 20, PANEL_H);
	fprintf(o, "<text x='%d' y='%d' text-anchor='end' font-size='11'>%s"
		   "</text>\n", LEFT - 6, top + 10, ymax);
}

/* @s as SVG text (a file name may hold & or <). */
static void put_text(FILE *o, const char *s)
{
	for (; *s; s++) {
		if (*s == '&')
			fputs("&amp;", o);
		else if (*s == '<')
			fputs("&lt;", o);
		else if (*s == '>')
			fputs("&gt;", o);
		else
			fputc(*s, o);
	}
}

static void write_svg(const struct plot *pl, FILE *o, const char *name)
{
	double mf = max_of(pl->faults), mv = max_of(pl->to_vram),
	       ms = max_of(pl->to_sys), mm = mv > ms ? mv : ms;
	int h = 3 * PANEL_H + 3 * GAP + 60, top = 60;
	char buf[64];

	fprintf(o, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' "
		   "height='%d' font-family='sans-serif' font-size='13'>\n"
		   "<rect width='100%%' height='100%%' fill='white'/>\n",
		W, h);
	fprintf(o, "<text x='%d' y='24' font-size='15'>", LEFT);
	put_text(o, name);
	fprintf(o, ": %.0f GPU faults, "
		   "%.1f MiB to VRAM, %.1f MiB back, kernels %.1f ms "
		   "(engine time) in %.1f ms</text>\n",
		pl->nr_faults, pl->bytes_vram / (1 << 20),
		pl->bytes_sys / (1 << 20), pl->kernel_us / 1e3,
		pl->t_end / 1e3);

	snprintf(buf, sizeof(buf), "%.0f", mf);
	panel(o, top, "GPU faults", buf);
	bars(o, pl->faults, mf, top + PANEL_H, PANEL_H, -1, "#d62728");

	top += PANEL_H + GAP;
	snprintf(buf, sizeof(buf), "%.1f MiB", mm / (1 << 20));
	panel(o, top, "SVM migrations: to VRAM (up, blue), to system memory "
		      "(down, orange)", buf);
	fprintf(o, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#888'/>\n",
		LEFT, top + PANEL_H / 2, W - 20, top + PANEL_H / 2);
	bars(o, pl->to_vram, mm, top + PANEL_H / 2, PANEL_H / 2, -1,
	     "#1f77b4");
	bars(o, pl->to_sys, mm, top + PANEL_H / 2, PANEL_H / 2, 1, "#ff7f0e");

	top += PANEL_H + GAP;
	snprintf(buf, sizeof(buf), "%.1f", max_of(pl->busy));
	panel(o, top, "Kernels: engines busy (1 = one engine all the time)",
	      buf);
	bars(o, pl->busy, max_of(pl->busy), top + PANEL_H, PANEL_H, -1,
	     "#2ca02c");

	for (int i = 0; i <= 4; i++) {
		double x = LEFT + (W - LEFT - 20) * i / 4.0;

		fprintf(o, "<text x='%.0f' y='%d' text-anchor='middle' "
			   "font-size='11'>%.1f ms</text>\n",
			x, top + PANEL_H + 16, pl->t_end * i / 4.0 / 1e3);
	}
	fprintf(o, "</svg>\n");
}

static void usage(FILE *f)
{
	fprintf(f, "usage: gvm plot TRACE [-o FILE.svg]\n"
		   "  draws the GPU faults, SVM migrations and kernel time of a "
		   "trace\n  (gvm run ... --trace TRACE) as one SVG "
		   "[TRACE.svg]\n");
}

int gvm_tool_plot(int argc, char **argv)
{
	const char *in = NULL, *out = NULL;
	struct plot *pl;
	char *def = NULL;
	FILE *f, *o;
	int err;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "-o") && i + 1 < argc) {
			out = argv[++i];
		} else if (!strcmp(argv[i], "--help") ||
			   !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] != '-' && !in) {
			in = argv[i];
		} else {
			fprintf(stderr, "gvm plot: unknown argument '%s'\n",
				argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!in) {
		fprintf(stderr, "gvm plot: missing trace file\n");
		usage(stderr);
		return 2;
	}
	f = fopen(in, "r");
	if (!f) {
		fprintf(stderr, "gvm plot: cannot read '%s': %s\n", in,
			strerror(errno));
		return 1;
	}
	pl = calloc(1, sizeof(*pl));
	err = pl ? load(pl, f) : -ENOMEM;
	fclose(f);
	if (err == -EINVAL) {
		fprintf(stderr, "gvm plot: '%s' holds an event with a "
			"negative, infinite or too large time or size\n", in);
		goto fail;
	}
	if (err) {
		fprintf(stderr, "gvm plot: %s\n", strerror(-err));
		goto fail;
	}
	if (!pl->n || pl->t_end <= 0) {
		fprintf(stderr, "gvm plot: '%s' holds no fault, migration or "
			"kernel event\n", in);
		goto fail;
	}
	bucketize(pl);
	if (!out) {
		def = malloc(strlen(in) + 5);
		if (!def)
			goto fail;
		sprintf(def, "%s.svg", in);
		out = def;
	}
	o = fopen(out, "w");
	if (!o) {
		fprintf(stderr, "gvm plot: cannot write '%s': %s\n", out,
			strerror(errno));
		goto fail;
	}
	write_svg(pl, o, in);
	if (fclose(o)) {
		fprintf(stderr, "gvm plot: writing '%s' failed\n", out);
		goto fail;
	}
	printf("plot: %s (%zu events)\n", out, pl->n);
	free(def);
	free(pl->ev);
	free(pl);
	return 0;
fail:
	free(def);
	if (pl)
		free(pl->ev);
	free(pl);
	return 1;
}
