// SPDX-License-Identifier: MIT
/*
 * The fault-injection counter and the per-thread allocation count of
 * core/alloc.h (the wrappers are inline), and the array-growing helper.  The counter is atomic; tests set it, the
 * library decrements it.
 */
#include "core/alloc.h"

#include <errno.h>
#include <string.h>

long gvm__alloc_fail_nth;
_Thread_local unsigned long gvm__alloc_count;

int gvm__grow_inl_slow(void **p, size_t *cap, size_t need, size_t sz,
		       const void *inl)
{
	size_t ncap;
	void *np;

	if (*p != inl)
		return gvm__grow_slow(p, cap, need, sz);
	ncap = *cap ? 2 * *cap : 8;
	while (ncap < need)
		ncap *= 2;
	np = gvm__malloc(ncap * sz);
	if (!np)
		return -ENOMEM;
	memcpy(np, inl, *cap * sz);
	*p = np;
	*cap = ncap;
	return 0;
}

int gvm__grow_slow(void **p, size_t *cap, size_t need, size_t sz)
{
	size_t ncap;
	void *np;

	ncap = *cap ? *cap : 8;
	while (ncap < need)
		ncap *= 2;
	np = gvm__realloc(*p, ncap * sz);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}
