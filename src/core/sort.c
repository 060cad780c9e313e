// SPDX-License-Identifier: MIT
/*
 * An introsort (sort.h says why gvm does not call qsort()).
 *
 * An array already in order is seen in one pass and left alone: the
 * fault queue's batches arrive in submission order, which its key breaks
 * ties by, and a heapsort of such a batch cost twice glibc's merge sort
 * (fault_batch_dup: 82 ns a duplicate fault before gvm__sort, 190 with a
 * heapsort, docs/performance.md).  Otherwise a quicksort: the median of
 * the first, middle and last elements is the pivot, moved to the front;
 * i runs up over elements smaller than it, j down over larger ones, and
 * the pair where both stop is swapped, so runs of equal keys split
 * evenly; the pivot then goes between the two parts.  The smaller part
 * is sorted by recursion, the larger by the loop (stack depth at most
 * log2 n).  Parts of up to SMALL elements get an insertion sort, and a
 * part still being split after 2 log2 n levels (an adversarial input) a
 * heapsort, so the worst case stays O(n log n).  Elements are swapped a
 * word at a time while whole words remain, then a byte at a time.
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

static void heap_sort(unsigned char *a, size_t n, size_t size,
		      int (*cmp)(const void *, const void *))
{
	size_t i;

	for (i = n / 2; i-- > 0;)
		sift_down(a, i, n, size, cmp);
	for (i = n - 1; i > 0; i--) {
		swap(a, a + i * size, size);
		sift_down(a, 0, i, size, cmp);
	}
}

static void insertion_sort(unsigned char *a, size_t n, size_t size,
			   int (*cmp)(const void *, const void *))
{
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 &&
				   cmp(a + (j - 1) * size, a + j * size) > 0;
		     j--)
			swap(a + (j - 1) * size, a + j * size, size);
}

#define SMALL 12

static void intro_sort(unsigned char *a, size_t n, size_t size,
		       int (*cmp)(const void *, const void *),
		       unsigned int depth)
{
#define A(k) (a + (k) * size)
	while (n > SMALL) {
		size_t i = 1, j = n - 1, mid = n / 2;

		if (!depth--) {
			heap_sort(a, n, size, cmp);
			return;
		}
		/* a[0] <= a[mid] <= a[n - 1], then the median to the front */
		if (cmp(A(mid), A(0)) < 0)
			swap(A(mid), A(0), size);
		if (cmp(A(n - 1), A(mid)) < 0) {
			swap(A(n - 1), A(mid), size);
			if (cmp(A(mid), A(0)) < 0)
				swap(A(mid), A(0), size);
		}
		swap(A(0), A(mid), size);
		for (;;) {
			while (i <= j && cmp(A(i), A(0)) < 0)
				i++;
			while (i <= j && cmp(A(j), A(0)) > 0)
				j--;
			if (i >= j)
				break;
			swap(A(i), A(j), size);
			i++;
			j--;
		}
		/* [1, j] <= pivot <= [j + 1, n): the pivot goes to j */
		swap(A(0), A(j), size);
		if (j < n - 1 - j) {
			intro_sort(a, j, size, cmp, depth);
			a = A(j + 1);
			n -= j + 1;
		} else {
			intro_sort(A(j + 1), n - 1 - j, size, cmp, depth);
			n = j;
		}
	}
	insertion_sort(a, n, size, cmp);
#undef A
}

void gvm__sort(void *base, size_t n, size_t size,
	       int (*cmp)(const void *a, const void *b))
{
	unsigned char *a = base;
	unsigned int depth = 0;
	size_t i;

	for (i = 1; i < n && cmp(a + (i - 1) * size, a + i * size) <= 0; i++)
		;
	if (i >= n)
		return;			/* in order already */
	for (i = n; i > 1; i >>= 1)
		depth += 2;
	intro_sort(a, n, size, cmp, depth);
}
