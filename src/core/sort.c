// SPDX-License-Identifier: MIT
/*
 * Heapsort (sort.h says why gvm does not call qsort()).
 *
 * The array is made a max-heap (every element no smaller than its two
 * children at 2i+1 and 2i+2) by sifting each inner element down, last
 * first; then the largest, at the root, is swapped to the end and the
 * heap, one shorter, repaired by sifting the new root down, until one
 * element is left.  Elements are swapped a word at a time while whole
 * words remain, then a byte at a time.
 *
 * Locking: none.
 */
#include <stdint.h>
#include <string.h>

#include "core/sort.h"

static void swap(unsigned char *a, unsigned char *b, size_t size)
{
	for (; size >= sizeof(uint64_t); size -= sizeof(uint64_t)) {
		uint64_t t;

		memcpy(&t, a, sizeof(t));
		memcpy(a, b, sizeof(t));
		memcpy(b, &t, sizeof(t));
		a += sizeof(t);
		b += sizeof(t);
	}
	for (; size; size--, a++, b++) {
		unsigned char t = *a;

		*a = *b;
		*b = t;
	}
}

/* Restores the heap property below @root in the heap @a[0..n). */
static void sift_down(unsigned char *a, size_t root, size_t n, size_t size,
		      int (*cmp)(const void *, const void *))
{
	for (;;) {
		size_t child = 2 * root + 1;

		if (child >= n)
			return;
		if (child + 1 < n &&
		    cmp(a + child * size, a + (child + 1) * size) < 0)
			child++;
		if (cmp(a + root * size, a + child * size) >= 0)
			return;
		swap(a + root * size, a + child * size, size);
		root = child;
	}
}

void gvm__sort(void *base, size_t n, size_t size,
	       int (*cmp)(const void *a, const void *b))
{
	unsigned char *a = base;
	size_t i;

	if (n < 2)
		return;
	for (i = n / 2; i-- > 0;)
		sift_down(a, i, n, size, cmp);
	for (i = n - 1; i > 0; i--) {
		swap(a, a + i * size, size);
		sift_down(a, 0, i, size, cmp);
	}
}
