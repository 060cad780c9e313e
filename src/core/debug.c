// SPDX-License-Identifier: MIT
/*
 * Diagnostics: panic and warning output.  No locking: each message is
 * formatted into one buffer and written with a single write(2) so lines from
 * different threads do not interleave.
 */
#include "core/debug.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void emit(const char *kind, const char *file, int line, const char *fmt,
		 va_list ap)
{
	char buf[1024];
	int n;

	n = snprintf(buf, sizeof(buf), "gvm: %s at %s:%d: ", kind, file, line);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(buf))
		n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	if ((size_t)n >= sizeof(buf) - 1)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

void gvm__panic(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit("panic", file, line, fmt, ap);
	va_end(ap);
	abort();
}

void gvm__warn(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit("warning", file, line, fmt, ap);
	va_end(ap);
}
