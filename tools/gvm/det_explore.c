// SPDX-License-Identifier: MIT
/*
 * Runs of scenarios on the deterministic scheduler (det.h): one run in this
 * process, random runs and systematic exploration (each run in a child
 * process) and replay files.  The commands are in det_cmd.c.
 *
 * EXPLORATION.  A run's decisions (core/det.h: a point where two or more
 * threads could run) are taken from a script first, then by the default
 * rule (fifo: the current thread goes on until it blocks, then the lowest
 * id).  The default schedule is run 0.  From every run, for every decision
 * inside the scenario's window past the run's script, and every other
 * thread that could have run there, a new run is scheduled whose script is
 * the decisions up to there plus that thread: depth first, as long as the
 * number of deviations from the default stays within the bound.  Bound 1
 * covers every way one actor can be preempted at one point and another
 * run to its next block; that is the shape of most two-actor races (seed
 * 000's zap between prepare and commit is one).
 *
 * Each run is a fork()ed child: a failed check or an abort (a GVM_BUG_ON,
 * the scheduler's deadlock report) ends only the child.  The child writes
 * its decisions into a shared mapping the parent reads.  A failing run's
 * replay file is written (--record FILE, or a new file in $TMPDIR) and its
 * path printed.
 *
 * REPLAY FILES.  Text, one "key value" per line after "gvm-det 1":
 * scenario and mutant, or run (a `gvm run --record` command line, without
 * --record and --seed); policy (fifo|random), seed; for a recording, events
 * and hash (of the log, checked on replay); script (thread ids, space
 * separated).  A run is a function of these, so replay re-executes
 * it exactly; `--stop-at K` stops after event K and prints the log and
 * every thread's state.
 *
 * Locking: none (single-threaded outside the runs).
 */
#include "det.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/det.h"

/* ---- one run ------------------------------------------------------------- */

void gvm_det_stop_here(void *arg, uint64_t event)
{
	size_t nr;

	(void)arg;
	gvm__det_events(&nr);
	printf("stopped at event %" PRIu64 "; the log so far:\n", event);
	gvm__det_dump(stdout, 0, nr);
	printf("the threads:\n");
	gvm__det_dump_threads(stdout);
	fflush(stdout);
	_exit(0);
}

void gvm_det_run_here(const struct gvm_det_run *r, uint64_t *hash)
{
	struct gvm_det_config cfg = {
		.seed = r->seed, .fifo = r->fifo, .script = r->script,
		.script_len = r->script_len, .stop_at = r->stop_at,
		.on_stop = gvm_det_stop_here,
	};

	gvm_det_set_mutant(r->sc, r->mutant);
	gvm__det_begin(&cfg);
	r->sc->run();
	*hash = gvm__det_end();
	gvm_det_set_mutant(r->sc, false);
}

/* What a child reports through the shared page. */
struct child_out {
	uint64_t hash;
	uint64_t nr_events;
	uint64_t nr_dec;
	struct gvm_det_decision dec[];
};

#define OUT_BYTES (64ull << 20)
#define OUT_MAX_DEC ((OUT_BYTES - sizeof(struct child_out)) / \
		     sizeof(struct gvm_det_decision))

/* Runs @r in a child; 0 if it passed (@out filled), else 1. */
static int run_child(const struct gvm_det_run *r, struct child_out *out,
		     bool verbose)
{
	pid_t pid;
	int status;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		const struct gvm_det_decision *d;
		size_t nr_dec, nr_ev;
		uint64_t hash;

		if (!verbose) {
			/* the failure's own report still goes to stderr */
			if (!freopen("/dev/null", "w", stdout))
				_exit(3);
		}
		gvm_det_run_here(r, &hash);
		d = gvm__det_decisions(&nr_dec);
		gvm__det_events(&nr_ev);
		if (nr_dec > OUT_MAX_DEC)
			nr_dec = OUT_MAX_DEC;
		memcpy(out->dec, d, nr_dec * sizeof(*d));
		out->nr_dec = nr_dec;
		out->nr_events = nr_ev;
		out->hash = hash;
		fflush(stdout);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFSIGNALED(status))
		fprintf(stderr, "gvm det: the run died of signal %d (%s)\n",
			WTERMSIG(status), strsignal(WTERMSIG(status)));
	return 1;
}

/*
 * Writes the failing run's replay file: @record, or a fresh file in
 * $TMPDIR (/tmp), so that every failure names one.
 */
static void report_failure(const struct gvm_det_run *r, const char *record)
{
	char tmp[4096];
	const char *dir = getenv("TMPDIR");
	int fd;

	if (!record) {
		snprintf(tmp, sizeof(tmp), "%s/gvm-det-%s-XXXXXX",
			 dir && *dir ? dir : "/tmp", r->sc->name);
		fd = mkstemp(tmp);
		if (fd >= 0)
			close(fd);
		record = tmp;
	}
	if (gvm_det_write(record, r))
		fprintf(stderr, "gvm det: cannot write a replay file (%s); "
			"the run: scenario %s, policy %s, seed %" PRIu64 "\n",
			record, r->sc->name, r->fifo ? "fifo" : "random",
			r->seed);
	else
		fprintf(stderr, "gvm det: replay file: %s (gvm replay %s)\n",
			record, record);
}

static void note_stats(struct gvm_det_stats *st, const struct child_out *o)
{
	uint64_t w = 0;

	for (uint64_t i = 0; i < o->nr_dec; i++)
		w += o->dec[i].window;
	if (w > st->max_decisions)
		st->max_decisions = w;
	if (o->nr_events > st->max_events)
		st->max_events = o->nr_events;
}

/* ---- exploration ------------------------------------------------------------ */

struct pending {
	uint8_t *script;
	size_t len;
	unsigned int dev;
};

/* Zeroes @st; the area the runs' children report in (NULL: errno). */
static struct child_out *out_map(struct gvm_det_stats *st)
{
	void *p;

	memset(st, 0, sizeof(*st));
	p = mmap(NULL, OUT_BYTES, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

int gvm_det_explore(const struct gvm_det_scenario *sc, bool mutant,
		    unsigned int bound, uint64_t max_runs, const char *record,
		    bool verbose, struct gvm_det_stats *st)
{
	struct child_out *out;
	struct pending *stack = NULL;
	size_t sp = 0, cap = 0;
	int ret = 0;

	out = out_map(st);
	if (!out)
		return -errno;
	stack = calloc(1, sizeof(*stack));
	if (!stack) {
		ret = -ENOMEM;
		goto out_unmap;
	}
	cap = 1;
	stack[sp++] = (struct pending){ NULL, 0, 0 };
	while (sp) {
		struct pending p = stack[--sp];
		struct gvm_det_run r = { .sc = sc, .mutant = mutant,
					 .fifo = true, .script = p.script,
					 .script_len = p.len };
		int err;

		if (max_runs && st->runs >= max_runs) {
			st->capped = true;
			free(p.script);
			continue;
		}
		st->runs++;
		out->nr_dec = 0;
		err = run_child(&r, out, verbose);
		if (err) {
			st->failures++;
			report_failure(&r, record);
			free(p.script);
			ret = err < 0 ? err : 1;
			break;
		}
		note_stats(st, out);
		if (p.dev < bound) {
			/* deepest decisions last: pushed first, popped last */
			for (size_t i = p.len; i < out->nr_dec; i++) {
				const struct gvm_det_decision *d = &out->dec[i];
				uint64_t alt = d->cand & ~(1ull << d->chosen);

				if (!d->window)
					continue;
				for (; alt; alt &= alt - 1) {
					uint8_t *s = malloc(i + 1);

					if (!s) {
						ret = -ENOMEM;
						goto out_free;
					}
					for (size_t j = 0; j < i; j++)
						s[j] = out->dec[j].chosen;
					s[i] = (uint8_t)__builtin_ctzll(alt);
					if (sp == cap) {
						struct pending *n = realloc(
							stack, 2 * cap *
								sizeof(*stack));
						if (!n) {
							free(s);
							ret = -ENOMEM;
							goto out_free;
						}
						stack = n;
						cap *= 2;
					}
					stack[sp++] = (struct pending){
						s, i + 1, p.dev + 1 };
				}
			}
		}
		free(p.script);
	}
out_free:
	while (sp)
		free(stack[--sp].script);
	free(stack);
out_unmap:
	munmap(out, OUT_BYTES);
	return ret;
}

int gvm_det_random(const struct gvm_det_scenario *sc, bool mutant,
		   uint64_t seed, uint64_t n, const char *record, bool verbose,
		   struct gvm_det_stats *st)
{
	struct child_out *out;
	int ret = 0;

	out = out_map(st);
	if (!out)
		return -errno;
	for (uint64_t i = 0; i < n; i++) {
		struct gvm_det_run r = { .sc = sc, .mutant = mutant,
					 .seed = seed + i };
		int err;

		st->runs++;
		err = run_child(&r, out, verbose);
		if (err) {
			st->failures++;
			report_failure(&r, record);
			ret = err < 0 ? err : 1;
			break;
		}
		note_stats(st, out);
	}
	munmap(out, OUT_BYTES);
	return ret;
}

/* ---- replay files ------------------------------------------------------------ */

int gvm_det_write(const char *path, const struct gvm_det_run *r)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "gvm-det 1\n");
	if (r->sc) {
		fprintf(f, "scenario %s\nmutant %d\n", r->sc->name, r->mutant);
	} else {
		fprintf(f, "run");
		for (int i = 0; i < r->run_argc; i++)
			fprintf(f, " %s", r->run_argv[i]);
		fputc('\n', f);
	}
	fprintf(f, "policy %s\nseed %" PRIu64 "\n", r->fifo ? "fifo" : "random",
		r->seed);
	if (r->have_hash)
		fprintf(f, "events %zu\nhash %016" PRIx64 "\n", r->events,
			r->hash);
	fprintf(f, "script");
	for (size_t i = 0; i < r->script_len; i++)
		fprintf(f, " %u", r->script[i]);
	fputc('\n', f);
	return fclose(f) ? -errno : 0;
}

void gvm_det_run_free(struct gvm_det_run *r)
{
	if (r->run_argv)
		for (int i = 0; i < r->run_argc; i++)
			free(r->run_argv[i]);
	free(r->run_argv);
	free(r->script);
	r->run_argv = NULL;
	r->script = NULL;
}

/* The rest of the line after "run": the arguments, space separated. */
static int read_run(FILE *f, struct gvm_det_run *r)
{
	char line[4096], *tok, *save;

	if (!fgets(line, sizeof(line), f) || !strchr(line, '\n'))
		return -EINVAL;
	r->run_argv = calloc(sizeof(line) / 2 + 1, sizeof(char *));
	if (!r->run_argv)
		return -ENOMEM;
	for (tok = strtok_r(line, " \n", &save); tok;
	     tok = strtok_r(NULL, " \n", &save)) {
		r->run_argv[r->run_argc] = strdup(tok);
		if (!r->run_argv[r->run_argc])
			return -ENOMEM;
		r->run_argc++;
	}
	return r->run_argc ? 0 : -EINVAL;
}

int gvm_det_read(const char *path, struct gvm_det_run *r)
{
	char key[32], val[128];
	FILE *f = fopen(path, "r");
	int version = 0, err = -EINVAL;

	if (!f)
		return -errno;
	memset(r, 0, sizeof(*r));
	r->fifo = true;
	if (fscanf(f, "gvm-det %d", &version) != 1 || version != 1)
		goto out;
	while (fscanf(f, "%31s", key) == 1) {
		if (!strcmp(key, "run") && !r->run_argv && !r->sc) {
			err = read_run(f, r);
			if (err)
				goto out;
			err = -EINVAL;
			continue;
		}
		if (!strcmp(key, "script")) {
			unsigned int v;
			size_t cap = 0;

			while (fscanf(f, "%u", &v) == 1) {
				if (v >= GVM_DET_MAX_THREADS)
					goto out;
				if (r->script_len == cap) {
					uint8_t *n;

					cap = cap ? 2 * cap : 64;
					n = realloc(r->script, cap);
					if (!n) {
						err = -ENOMEM;
						goto out;
					}
					r->script = n;
				}
				r->script[r->script_len++] = (uint8_t)v;
			}
			continue;
		}
		if (fscanf(f, "%127s", val) != 1)
			goto out;
		if (!strcmp(key, "scenario")) {
			r->sc = gvm_det_scenario_find(val);
			if (!r->sc || r->run_argv)
				goto out;
		} else if (!strcmp(key, "events")) {
			r->events = strtoull(val, NULL, 10);
			r->have_hash = true;
		} else if (!strcmp(key, "hash")) {
			r->hash = strtoull(val, NULL, 16);
			r->have_hash = true;
		} else if (!strcmp(key, "mutant")) {
			r->mutant = !strcmp(val, "1");
		} else if (!strcmp(key, "policy")) {
			if (strcmp(val, "fifo") && strcmp(val, "random"))
				goto out;
			r->fifo = !strcmp(val, "fifo");
		} else if (!strcmp(key, "seed")) {
			r->seed = strtoull(val, NULL, 0);
		} else {
			goto out;
		}
	}
	if (r->sc || r->run_argv)
		err = 0;
out:
	fclose(f);
	if (err)
		gvm_det_run_free(r);
	return err;
}
