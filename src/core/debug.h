/* SPDX-License-Identifier: MIT */
/*
 * Assertion tiers and diagnostics.
 *
 * GVM_DEBUG selects the tier at build time (CMake option GVM_DEBUG):
 *   0  release: gvm_assert()/gvm_assert_slow() compile to nothing; only
 *      GVM_BUG_ON() (states that cannot be survived) remains.
 *   1  cheap assertions and the lock-rank checker (lockrank.h).
 *   2  also expensive checks: structures' validate() after modifications.
 *
 * Bad input from a caller is never an assertion: public calls check it in
 * every build and return an errno.  Assertions state internal invariants and
 * caller contracts that cannot be checked cheaply in release builds.
 */
#ifndef GVM_CORE_DEBUG_H
#define GVM_CORE_DEBUG_H

#include <stdbool.h>

#include <gvm/types.h>

#ifndef GVM_DEBUG
#define GVM_DEBUG 0
#endif

__attribute__((noreturn, format(printf, 3, 4)))
void gvm__panic(const char *file, int line, const char *fmt, ...);

__attribute__((format(printf, 3, 4)))
void gvm__warn(const char *file, int line, const char *fmt, ...);

#define GVM_BUG_ON(x)                                                      \
	do {                                                               \
		if (__builtin_expect(!!(x), 0))                            \
			gvm__panic(__FILE__, __LINE__, "BUG: %s", #x);     \
	} while (0)

#if GVM_DEBUG >= 1
#define gvm_assert(x)                                                       \
	do {                                                                \
		if (__builtin_expect(!(x), 0))                              \
			gvm__panic(__FILE__, __LINE__,                      \
				   "assertion failed: %s", #x);             \
	} while (0)
#else
#define gvm_assert(x) ((void)sizeof(!(x)))
#endif

#if GVM_DEBUG >= 2
#define gvm_assert_slow(x) gvm_assert(x)
#else
#define gvm_assert_slow(x) ((void)sizeof(!(x)))
#endif

/* Evaluates x in every build; reports it (debug builds) and returns it. */
static inline bool gvm__warn_on(bool cond, const char *file, int line,
				const char *what)
{
	if (__builtin_expect(cond, 0) && GVM_DEBUG >= 1)
		gvm__warn(file, line, "WARN_ON(%s)", what);
	return cond;
}
#define GVM_WARN_ON(x) gvm__warn_on(!!(x), __FILE__, __LINE__, #x)

#define GVM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
