/* SPDX-License-Identifier: MIT */
/*
 * In-place sort (internal API): qsort()'s contract without its allocation.
 *
 * glibc's qsort() is a merge sort that takes a buffer from malloc() for
 * arrays over 1 KiB, i.e. from the application's heap, whose pages SVM
 * may have moved to device memory (core/alloc.c: the library never
 * touches the application's memory on its own threads or under its
 * locks).  gvm__sort() is an introsort (core/sort.c): O(n) for an array
 * in order already, O(n log n) comparisons at worst, no memory but the
 * array and O(log n) stack, not stable (neither is qsort()).
 *
 * Locking: none; the caller owns the array.
 */
#ifndef GVM_CORE_SORT_H
#define GVM_CORE_SORT_H

#include <stddef.h>

void gvm__sort(void *base, size_t n, size_t size,
	       int (*cmp)(const void *a, const void *b));

#endif
