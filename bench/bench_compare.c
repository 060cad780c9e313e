// SPDX-License-Identifier: MIT
/*
 * Reads an earlier `gvm bench --json` output for `gvm bench --compare`.
 *
 * The reader is a small recursive-descent JSON parser that accepts any
 * well-formed JSON text (so fields added later do not break it) but keeps
 * only what the comparison needs: a top-level array of objects, and of each
 * object its "name" (string), "ratio" (number) and tail ratio
 * ("ratio_p99", or "ratio_pNN" for another percentile).  Everything else is
 * skipped.  It never reads past the buffer, limits nesting, and on any
 * error says where (byte offset) and what it expected; it does not crash
 * on any input.
 *
 * Single-threaded; called once, before the benchmarks run.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (16u << 20)	/* far more than gvm writes */
#define MAX_DEPTH 16

struct parser {
	const char *s;
	size_t len, pos;
	char *err;
	size_t errlen;
};

static bool isdigit_c(char c)
{
	return c >= '0' && c <= '9';
}

static bool fail(struct parser *p, const char *fmt, ...)
{
	char what[96];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "at byte %zu: %s", p->pos, what);
	return false;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) &&
	       p->s[p->pos])
		p->pos++;
}

/* True and consumes @c if it is next (after white space). */
static bool eat(struct parser *p, char c)
{
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == c) {
		p->pos++;
		return true;
	}
	return false;
}

/*
 * A string; its contents (escapes decoded, \u as '?') go to @out if set,
 * cut to @cap - 1 bytes; *@full (if set) receives the uncut length.
 */
static bool parse_string(struct parser *p, char *out, size_t cap,
			 size_t *full)
{
	size_t n = 0;

	if (!eat(p, '"'))
		return fail(p, "expected a string");
	for (;;) {
		char c;

		if (p->pos >= p->len)
			return fail(p, "unterminated string");
		c = p->s[p->pos++];
		if (c == '"')
			break;
		if ((unsigned char)c < 0x20)
			return fail(p, "control character in a string");
		if (c == '\\') {
			if (p->pos >= p->len)
				return fail(p, "unterminated string");
			c = p->s[p->pos++];
			switch (c) {
			case '"': case '\\': case '/':
				break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				for (int i = 0; i < 4; i++, p->pos++)
					if (p->pos >= p->len ||
					    !strchr("0123456789abcdefABCDEF",
						    p->s[p->pos]) ||
					    !p->s[p->pos])
						return fail(p, "bad \\u escape");
				c = '?';
				break;
			default:
				return fail(p, "bad escape \\%c", c);
			}
		}
		if (out && n + 1 < cap)
			out[n] = c;
		n++;
	}
	if (out)
		out[n < cap ? n : cap - 1] = '\0';
	if (full)
		*full = n;
	return true;
}

static bool parse_number(struct parser *p, double *out)
{
	char buf[64], *end;
	size_t n = 0;

	skip_ws(p);
	while (p->pos + n < p->len && p->s[p->pos + n] &&
	       strchr("+-0123456789.eE", p->s[p->pos + n]))
		n++;
	if (!n || n >= sizeof(buf))
		return fail(p, "expected a value");
	memcpy(buf, p->s + p->pos, n);
	buf[n] = '\0';
	errno = 0;
	*out = strtod(buf, &end);
	if (*end || errno == ERANGE || (buf[0] != '-' && !isdigit_c(buf[0])))
		return fail(p, "bad number %s", buf);
	p->pos += n;
	return true;
}

static bool parse_value(struct parser *p, int depth);

/* Literal @word (true, false, null). */
static bool parse_word(struct parser *p, const char *word)
{
	size_t n = strlen(word);

	if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n))
		return fail(p, "expected a value");
	p->pos += n;
	return true;
}

/* Skips any object or array body after its opening bracket. */
static bool skip_members(struct parser *p, char close, int depth)
{
	if (eat(p, close))
		return true;
	do {
		if (close == '}') {
			if (!parse_string(p, NULL, 0, NULL))
				return false;
			if (!eat(p, ':'))
				return fail(p, "expected ':'");
		}
		if (!parse_value(p, depth + 1))
			return false;
	} while (eat(p, ','));
	return eat(p, close) ? true : fail(p, "expected ',' or '%c'", close);
}

static bool parse_value(struct parser *p, int depth)
{
	double d;

	if (depth > MAX_DEPTH)
		return fail(p, "nested more than %d deep", MAX_DEPTH);
	skip_ws(p);
	if (p->pos >= p->len)
		return fail(p, "unexpected end of file");
	switch (p->s[p->pos]) {
	case '{':
		p->pos++;
		return skip_members(p, '}', depth);
	case '[':
		p->pos++;
		return skip_members(p, ']', depth);
	case '"':
		return parse_string(p, NULL, 0, NULL);
	case 't':
		return parse_word(p, "true");
	case 'f':
		return parse_word(p, "false");
	case 'n':
		return parse_word(p, "null");
	default:
		return parse_number(p, &d);
	}
}

/* A number or null (NAN). */
static bool parse_ratio(struct parser *p, double *out)
{
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == 'n') {
		*out = NAN;
		return parse_word(p, "null");
	}
	return parse_number(p, out);
}

/* "ratio_p" followed by digits only: a tail ratio. */
static bool is_tail_key(const char *k)
{
	if (strncmp(k, "ratio_p", 7) || !k[7])
		return false;
	for (k += 7; *k; k++)
		if (!isdigit_c(*k))
			return false;
	return true;
}

/* One benchmark object, after its '{'. */
static bool parse_entry(struct parser *p, struct gvm_bench_old *e)
{
	bool has_ratio = false;
	size_t len;
	char key[32];

	e->name[0] = '\0';
	e->ratio = e->ratio_tail = NAN;
	if (eat(p, '}'))
		return fail(p, "an entry without \"name\"");
	do {
		if (!parse_string(p, key, sizeof(key), &len))
			return false;
		if (len >= sizeof(key))		/* not one of ours */
			key[0] = '\0';
		if (!eat(p, ':'))
			return fail(p, "expected ':'");
		if (!strcmp(key, "name")) {
			if (!parse_string(p, e->name, sizeof(e->name), &len))
				return false;
			if (len >= sizeof(e->name))
				return fail(p, "a name longer than %zu bytes",
					    sizeof(e->name) - 1);
		} else if (!strcmp(key, "ratio")) {
			if (!parse_ratio(p, &e->ratio))
				return false;
			has_ratio = true;
		} else if (is_tail_key(key)) {
			if (!parse_ratio(p, &e->ratio_tail))
				return false;
		} else if (!parse_value(p, 2)) {
			return false;
		}
	} while (eat(p, ','));
	if (!eat(p, '}'))
		return fail(p, "expected ',' or '}'");
	if (!e->name[0] || !has_ratio)
		return fail(p, "an entry without \"name\" or \"ratio\"");
	return true;
}

int gvm_bench_read_json(const char *path, struct gvm_bench_old **out,
			size_t *nr, char *err, size_t errlen)
{
	struct parser p = { .err = err, .errlen = errlen };
	struct gvm_bench_old *v = NULL;
	size_t n = 0, cap = 0;
	char *buf = NULL;
	FILE *f;

	err[0] = '\0';
	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "cannot read: %s", strerror(errno));
		return -1;
	}
	buf = malloc(MAX_FILE);
	if (buf)
		p.len = fread(buf, 1, MAX_FILE, f);
	if (!buf || ferror(f) || p.len == MAX_FILE) {
		snprintf(err, errlen, "%s", !buf ? "out of memory" :
			 ferror(f) ? "read error" : "too large");
		goto err;
	}
	p.s = buf;
	if (!eat(&p, '[')) {
		fail(&p, "expected '[' (a gvm bench --json array)");
		goto err;
	}
	if (!eat(&p, ']')) {
		do {
			if (!eat(&p, '{')) {
				fail(&p, "expected '{'");
				goto err;
			}
			if (n == cap) {
				struct gvm_bench_old *w;

				cap = cap ? 2 * cap : 64;
				w = realloc(v, cap * sizeof(*v));
				if (!w) {
					snprintf(err, errlen, "out of memory");
					goto err;
				}
				v = w;
			}
			if (!parse_entry(&p, &v[n]))
				goto err;
			n++;
		} while (eat(&p, ','));
		if (!eat(&p, ']')) {
			fail(&p, "expected ',' or ']'");
			goto err;
		}
	}
	skip_ws(&p);
	if (p.pos != p.len) {
		fail(&p, "trailing data after the array");
		goto err;
	}
	fclose(f);
	free(buf);
	*out = v;
	*nr = n;
	return 0;
err:
	fclose(f);
	free(buf);
	free(v);
	return -1;
}
