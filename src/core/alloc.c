// SPDX-License-Identifier: MIT
/*
 * The library's own heap, the fault-injection counter of core/alloc.h and
 * the array-growing helper, and the per-thread allocation count.
 *
 * Why gvm does not use the application's malloc(): shared virtual memory
 * migrates pages of the process to device memory and removes them from
 * the CPU until someone touches them (mm/devmem.c).  A page of the
 * application's heap can hold the application's data and, next to it,
 * objects of this library (a VM, a notifier, the mm's own state).  If
 * such a page moved, the library's threads would fault on their own
 * state, and the thread that resolves CPU faults could wait for itself.
 * The kernel never has this problem (its memory is not user memory); we
 * get the same property by keeping every library object in memory the
 * library owns and never migrates: gvm__alloc_owns() says which.
 *
 * The heap: one reservation of address space (MAP_NORESERVE: only pages
 * touched cost memory), carved by a bump pointer into blocks of size
 * classes (16-byte steps up to 128 bytes, then four classes per power of
 * two).  Each block starts with a 16-byte header naming its class; a freed
 * block goes on its class's free list and is reused for the same class.
 * Memory is never returned to the system: no munmap and no madvise that
 * drops pages, which also keeps the library from raising userfaultfd
 * events on itself.  The reservation asks for transparent huge pages
 * (MADV_HUGEPAGE, which raises no event): the trees of a VM with a
 * million mappings span tens of MiB, and on 4 KiB pages a lookup there
 * pays a TLB miss per level (itree_lookup_1m: 325 -> 270 ns per lookup,
 * docs/performance.md).  The cost is that the heap is touched 2 MiB at
 * a time where THP is available.
 * Small classes are refilled a run of blocks at a time.
 *
 * Per-thread caches: each thread that allocates keeps, for the classes of
 * blocks up to 32 KiB, a short private list of free blocks (struct
 * tcache).  An allocation pops from it and a free pushes onto it without
 * a lock or an atomic read-modify-write, so threads working side by side
 * (two binders on two VMs, the scheduler's workers) share no cache line
 * on their way through the heap.  The cache gives half back when it
 * overflows, as one batch that is kept whole, and refills with one such
 * batch when it has one (no walk over blocks another CPU touched last),
 * else half a cache from the shared lists; one lock round either way.  A
 * block freed by another thread than the one that allocated it simply
 * joins the freeing thread's cache.  A thread's
 * cache goes back to the shared lists when the thread exits (a
 * pthread key's destructor), and the cache's own record is kept for the
 * next thread, so threads coming and going lose no memory.  The live
 * count is per thread too (each cache counts what its thread allocated
 * minus what it freed, possibly negative): gvm__alloc_live() sums the
 * caches under the registry lock and adds what exited threads left.
 * Blocks sitting in a cache are free, not live.  After a thread's cache
 * is gone (later destructors of the exiting thread), nothing is cached:
 * the shared lists are used directly.  A forked child keeps the other
 * threads' caches as they were (no thread of the child uses them: their
 * free blocks stay there, and their live counts still count).  Fault
 * injection is untouched: it sits in the
 * wrappers of alloc.h, before the heap.
 *
 * Locking: striped mutexes over the classes' shared free lists and
 * batches (leaves, held for a list push or pop, or a batch of them);
 * `tc_lock` over the registry of caches and the exited threads' live
 * count (a leaf, held with the others only by fork()'s prepare, which
 * takes it first); the bump pointer is atomic.  A cache is its
 * thread's alone, except its live count, written by its thread (relaxed)
 * and read under `tc_lock`.  Not in the lock-rank table: nothing is ever
 * taken under these mutexes.
 *
 * AddressSanitizer builds poison free blocks and the slack after each
 * allocation, so use-after-free (until reuse) and overflows are still
 * caught; LeakSanitizer does not see this heap, gvm__alloc_live() counts
 * live blocks instead.
 */
#include "core/alloc.h"
#include "core/stack.h"
#include "core/thread.h"

#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

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

#define HDR 16u				/* header bytes, keeps 16-byte alignment */
#define HDR_MAGIC 0x6776u		/* "gv" */
#define NR_CLASSES 160
#define RUN_BYTES (64u << 10)		/* refill of a small class */
#define RESERVE_MAX (64ull << 30)
#define RESERVE_MIN (1ull << 30)

struct hdr {
	uint64_t size;			/* bytes asked for */
	uint32_t back;			/* bytes from the block's start to this
					   header (aligned allocations) */
	uint16_t cls;
	uint16_t magic;
};

struct free_block {
	struct free_block *next;
};

/*
 * Free lists, one per class, under NR_LOCKS striped mutexes (class c under
 * locks[c % NR_LOCKS]): few enough for fork() to take them all (and for
 * ThreadSanitizer, which tracks at most 64 held locks per thread).
 */
#define NR_LOCKS 16
static pthread_mutex_t locks[NR_LOCKS];
static struct free_block *free_lists[NR_CLASSES];	/* locks[c % NR_LOCKS] */

static pthread_mutex_t *class_lock(unsigned int c)
{
	return &locks[c % NR_LOCKS];
}

/* Every lock of the heap: the caller's stack registered first (stack.h). */
static void heap_lock(pthread_mutex_t *m)
{
	gvm__stack_check();
	pthread_mutex_lock(m);
}

static pthread_once_t heap_once = PTHREAD_ONCE_INIT;
static uint8_t *heap_base;		/* set once (heap_once) */
static uint64_t heap_size;		/* set once */
static uint64_t heap_top;		/* atomic: bytes handed out */
static uint64_t heap_live;		/* atomic: blocks allocated by threads
					   with no cache; tc_lock: plus what
					   exited threads' caches counted */

/*
 * A thread's cache.  Invariant: count[c] == length of head[c] <=
 * tc_cap(c); live == blocks this thread allocated - blocks it freed while
 * it had this cache.
 */
#define TC_CLASSES 40			/* classes 0..39: blocks <= 32 KiB */
#define TC_BYTES (64u << 10)		/* per class: at most this much ... */
#define TC_MAX 64u			/* ... and at most this many blocks
					   (a thread holds <= 2.5 MiB) */

struct tcache {
	struct free_block *head[TC_CLASSES];	/* owner thread only */
	uint32_t count[TC_CLASSES];		/* owner thread only */
	int64_t live;			/* written by the owner (relaxed),
					   read under tc_lock */
	struct tcache *next, *prev;	/* tc_lock: registry or spare list */
};

/*
 * Batches: the runs of blocks that caches give back whole (tc_flush),
 * kept as they came, so that a cache refilling takes one in O(1) instead
 * of walking a list whose blocks another CPU freed last: a cache miss a
 * block, one after the other, under the class lock (a thread allocating
 * what other threads free, as a bind queue's submitter does with its
 * workers).  The blocks are then missed one at a time as they are handed
 * out, where their new owner would miss them anyway.  Up to BATCH_SLOTS
 * a class; more join the class's free list.  Under the class's lock.
 */
#define BATCH_SLOTS 64u
struct batch {
	struct free_block *head;	/* NULL-terminated */
	uint32_t n;			/* blocks, <= tc_cap(c) */
};
static struct batch batches[TC_CLASSES][BATCH_SLOTS];
static uint32_t nr_batches[TC_CLASSES];

static pthread_mutex_t tc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tcache *tc_threads;	/* tc_lock: caches of live threads */
static struct tcache *tc_spare;		/* tc_lock: records of exited ones */
static pthread_key_t tc_key;		/* set once: destructor tc_exit() */
static bool tc_key_ok;			/* set once */

/* This thread's cache; NULL before its first allocation, TC_NONE after
   its destructor ran (or if no cache could be made). */
#define TC_NONE ((struct tcache *)1)
static _Thread_local struct tcache *tc_mine;

/* The library's static data (its writable segments), set once. */
#define MAX_STATIC 4
static struct { uint64_t start, end; } statics[MAX_STATIC];
static unsigned int nr_statics;

/* Block size of class @c: 16..128 by 16, then 4 steps per doubling. */
static uint64_t class_size(unsigned int c)
{
	unsigned int k;

	if (c < 8)
		return 16ull * (c + 1);
	k = (c - 8) / 4;		/* 128 << k .. 256 << k */
	return (128ull << k) + (32ull << k) * ((c - 8) % 4 + 1);
}

static unsigned int size_class(uint64_t bytes)
{
	unsigned int c;

	if (bytes <= 128)
		return bytes ? (unsigned int)((bytes - 1) / 16) : 0;
	/* (bytes - 1) >> 7 in [2^k, 2^(k+1)): at least class 8 + 4k */
	c = 8 + 4 * (unsigned int)(63 - __builtin_clzll((bytes - 1) >> 7));
	while (c < NR_CLASSES && class_size(c) < bytes)
		c++;
	return c;
}

static int find_statics(struct dl_phdr_info *info, size_t size, void *arg)
{
	uint64_t me = (uint64_t)(uintptr_t)arg;
	bool mine = false;
	int i;

	(void)size;
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uint64_t s = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && me >= s && me < s + ph->p_memsz)
			mine = true;
	}
	if (!mine)
		return 0;
	for (i = 0; i < info->dlpi_phnum && nr_statics < MAX_STATIC; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uint64_t s = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W)) {
			statics[nr_statics].start = s & ~4095ull;
			statics[nr_statics++].end =
				(s + ph->p_memsz + 4095) & ~4095ull;
		}
	}
	return 1;
}

/* fork(): the child gets the free lists consistent. */
static void heap_fork_prepare(void)
{
	gvm__stack_check();
	pthread_mutex_lock(&tc_lock);
	for (unsigned int i = 0; i < NR_LOCKS; i++)
		pthread_mutex_lock(&locks[i]);
}

static void heap_fork_done(void)
{
	for (unsigned int i = NR_LOCKS; i-- > 0;)
		pthread_mutex_unlock(&locks[i]);
	pthread_mutex_unlock(&tc_lock);
}

static void tc_exit(void *arg);

static void heap_init(void)
{
	uint64_t size = RESERVE_MAX;
	void *p;

	for (;;) {
		p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p != MAP_FAILED || size <= RESERVE_MIN)
			break;
		size /= 2;
	}
	if (p != MAP_FAILED) {
		(void)madvise(p, size, MADV_HUGEPAGE);	/* a hint */
		heap_base = p;
		heap_size = size;
	}
	for (unsigned int i = 0; i < NR_LOCKS; i++)
		pthread_mutex_init(&locks[i], NULL);
	tc_key_ok = pthread_key_create(&tc_key, tc_exit) == 0;
	pthread_atfork(heap_fork_prepare, heap_fork_done, heap_fork_done);
	dl_iterate_phdr(find_statics, (void *)(uintptr_t)&heap_once);
}

/*
 * At load time, so that the fork handlers above are registered before any
 * other of the library's: prepare handlers run in reverse order, and the
 * others (the mm's moves device memory back) allocate.
 */
__attribute__((constructor)) static void heap_ctor(void)
{
	pthread_once(&heap_once, heap_init);
}

/* @bytes of fresh heap, 16-byte aligned (4 KiB from 4 KiB blocks). */
static uint8_t *heap_carve(uint64_t bytes)
{
	uint64_t align = bytes >= 4096 ? 4096 : 16, top, start;

	top = gvm_load_relaxed(&heap_top);
	do {
		start = (top + align - 1) & ~(align - 1);
		if (start + bytes > heap_size || start + bytes < start)
			return NULL;
	} while (!gvm_cmpxchg_acq_rel(&heap_top, &top, start + bytes));
	return heap_base + start;
}

/* Most blocks of class @c a thread cache holds (c < TC_CLASSES). */
static uint32_t tc_cap(unsigned int c)
{
	uint64_t n = TC_BYTES / class_size(c);

	return n >= TC_MAX ? TC_MAX : n < 2 ? 2 : (uint32_t)n;
}

/* Pushes @b (poisoned, ASan) on a singly linked list *@head. */
static void link_push(struct free_block **head, struct free_block *b)
{
	UNPOISON(b, sizeof(*b));
	b->next = *head;
	POISON(b, sizeof(*b));
	*head = b;
}

static struct free_block *link_next(struct free_block *b)
{
	struct free_block *n;

	UNPOISON(b, sizeof(*b));
	n = b->next;
	POISON(b, sizeof(*b));
	return n;
}

/* This thread's cache, made on first use; NULL if it has none. */
static struct tcache *tc_get(void)
{
	struct tcache *tc = tc_mine;

	if (__builtin_expect(tc != NULL, 1))
		return tc == TC_NONE ? NULL : tc;
	tc_mine = TC_NONE;
	if (!tc_key_ok)
		return NULL;
	heap_lock(&tc_lock);
	tc = tc_spare;
	if (tc)
		tc_spare = tc->next;
	pthread_mutex_unlock(&tc_lock);
	if (!tc) {
		tc = (struct tcache *)heap_carve(sizeof(*tc));
		if (!tc)
			return NULL;
	}
	memset(tc, 0, sizeof(*tc));
	if (pthread_setspecific(tc_key, tc)) {
		heap_lock(&tc_lock);
		tc->next = tc_spare;
		tc_spare = tc;
		pthread_mutex_unlock(&tc_lock);
		return NULL;
	}
	heap_lock(&tc_lock);
	tc->prev = NULL;
	tc->next = tc_threads;
	if (tc_threads)
		tc_threads->prev = tc;
	tc_threads = tc;
	pthread_mutex_unlock(&tc_lock);
	tc_mine = tc;
	return tc;
}

/* Gives the first @n blocks of class @c of @tc back to the shared list. */
static void tc_flush(struct tcache *tc, unsigned int c, uint32_t n)
{
	struct free_block *first = tc->head[c], *last = first;

	if (!n)
		return;
	for (uint32_t i = 1; i < n; i++)
		last = link_next(last);
	tc->head[c] = link_next(last);
	tc->count[c] -= n;
	/* The link is written and poisoned again under the lock: once on
	   the list, the block may be taken and unpoisoned by its next
	   owner at any moment after the unlock. */
	heap_lock(class_lock(c));
	UNPOISON(last, sizeof(*last));
	if (nr_batches[c] < BATCH_SLOTS) {
		last->next = NULL;
		batches[c][nr_batches[c]++] = (struct batch){ first, n };
	} else {
		last->next = free_lists[c];
		free_lists[c] = first;
	}
	POISON(last, sizeof(*last));
	pthread_mutex_unlock(class_lock(c));
}

/* Thread exit (pthread key destructor): the cache goes back. */
static void tc_exit(void *arg)
{
	struct tcache *tc = arg;

	tc_mine = TC_NONE;
	for (unsigned int c = 0; c < TC_CLASSES; c++)
		tc_flush(tc, c, tc->count[c]);
	heap_lock(&tc_lock);
	gvm_fetch_add_relaxed(&heap_live, (uint64_t)gvm_load_relaxed(&tc->live));
	if (tc->prev)
		tc->prev->next = tc->next;
	else
		tc_threads = tc->next;
	if (tc->next)
		tc->next->prev = tc->prev;
	tc->next = tc_spare;
	tc_spare = tc;
	pthread_mutex_unlock(&tc_lock);
}

/*
 * A block of class @c, its header not yet written; NULL if none.  From
 * the thread's cache @tc (NULL: none) if it has one; else a batch another
 * cache gave back (whole, the rest becoming the cache), or some blocks
 * from the shared list, or a fresh run carved from the heap, whose extra
 * blocks fill the cache and the rest the shared list.
 */
static void *block_get(unsigned int c, struct tcache *tc)
{
	uint64_t bs = class_size(c);
	uint32_t want = 0;
	struct free_block *b;
	uint8_t *run;
	uint64_t n, i;

	if (tc && c < TC_CLASSES) {
		b = tc->head[c];
		if (b) {
			tc->head[c] = link_next(b);
			tc->count[c]--;
			UNPOISON(b, sizeof(*b));
			return b;
		}
		want = tc_cap(c) / 2;
	}

	heap_lock(class_lock(c));
	if (want && nr_batches[c]) {
		struct batch bt = batches[c][--nr_batches[c]];

		pthread_mutex_unlock(class_lock(c));
		/* The cache is empty (a refill) and bt.n <= its cap. */
		b = bt.head;
		tc->head[c] = link_next(b);
		tc->count[c] = bt.n - 1;
		UNPOISON(b, sizeof(*b));
		return b;
	}
	b = free_lists[c];
	if (b) {
		free_lists[c] = link_next(b);
		/* a batch more for the cache */
		while (want && free_lists[c]) {
			struct free_block *x = free_lists[c];

			free_lists[c] = link_next(x);
			link_push(&tc->head[c], x);
			tc->count[c]++;
			want--;
		}
		UNPOISON(b, sizeof(*b));
	} else if (c < TC_CLASSES && nr_batches[c]) {
		/* No cache to take a batch whole: one block of one. */
		struct batch *bt = &batches[c][nr_batches[c] - 1];

		b = bt->head;
		bt->head = link_next(b);
		if (!--bt->n)
			nr_batches[c]--;
		UNPOISON(b, sizeof(*b));
	}
	pthread_mutex_unlock(class_lock(c));
	if (b)
		return b;

	n = bs >= RUN_BYTES ? 1 : RUN_BYTES / bs;
	run = heap_carve(n * bs);
	if (!run)
		return NULL;
	POISON(run, n * bs);
	/* Keep the first, cache some, free the rest. */
	for (i = n - 1; i >= 1 && want; i--, want--) {
		link_push(&tc->head[c], (struct free_block *)(run + i * bs));
		tc->count[c]++;
	}
	if (i >= 1) {
		heap_lock(class_lock(c));
		for (; i >= 1; i--)
			link_push(&free_lists[c],
				  (struct free_block *)(run + i * bs));
		pthread_mutex_unlock(class_lock(c));
	}
	return run;
}

/* Counts a block allocated (+1) or freed (-1) by this thread. */
static void live_add(struct tcache *tc, int64_t d)
{
	if (tc)
		gvm_store_relaxed(&tc->live, gvm_load_relaxed(&tc->live) + d);
	else
		gvm_fetch_add_relaxed(&heap_live, (uint64_t)d);
}

static void *heap_alloc(size_t size, size_t align)
{
	uint64_t need = (uint64_t)size + HDR + (align > HDR ? align : 0);
	uint8_t *blk, *p;
	struct tcache *tc;
	struct hdr *h;
	unsigned int c;

	pthread_once(&heap_once, heap_init);
	if (!heap_base || need < size)
		return NULL;
	c = size_class(need);
	if (c >= NR_CLASSES)
		return NULL;
	tc = tc_get();
	blk = block_get(c, tc);
	if (!blk)
		return NULL;
	p = blk + HDR;
	if (align > HDR)
		p = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	h = (struct hdr *)(p - HDR);
	UNPOISON(h, HDR + size);
	h->size = size;
	h->back = (uint32_t)((uint8_t *)h - blk);
	h->cls = (uint16_t)c;
	h->magic = HDR_MAGIC;
	live_add(tc, 1);
	return p;
}

static struct hdr *hdr_of(void *p)
{
	struct hdr *h = (struct hdr *)((uint8_t *)p - HDR);

	if (!gvm__heap_owns(p) ||
	    h->magic != HDR_MAGIC || h->cls >= NR_CLASSES) {
		fprintf(stderr, "gvm: freeing %p, not a gvm heap block\n", p);
		abort();
	}
	return h;
}

void gvm__free(void *p)
{
	struct free_block *b;
	struct tcache *tc;
	struct hdr *h;
	unsigned int c;

	if (!p)
		return;
	h = hdr_of(p);
	c = h->cls;
	b = (struct free_block *)((uint8_t *)h - h->back);
	h->magic = 0;
	POISON(b, class_size(c));
	tc = tc_get();
	live_add(tc, -1);
	if (tc && c < TC_CLASSES) {
		link_push(&tc->head[c], b);
		if (++tc->count[c] > tc_cap(c))
			tc_flush(tc, c, tc->count[c] / 2);
		return;
	}
	/* The link is written and poisoned again under the lock: once on
	   the list, the block may be taken and unpoisoned by its next
	   owner at any moment after the unlock. */
	heap_lock(class_lock(c));
	link_push(&free_lists[c], b);
	pthread_mutex_unlock(class_lock(c));
}

void *gvm__heap_malloc(size_t size)
{
	return heap_alloc(size, 0);
}

void *gvm__heap_calloc(size_t n, size_t size)
{
	void *p;

	if (size && n > SIZE_MAX / size)
		return NULL;
	p = heap_alloc(n * size, 0);
	if (p)
		memset(p, 0, n * size);	/* reused blocks are dirty */
	return p;
}

void *gvm__heap_aligned_alloc(size_t align, size_t size)
{
	if (align & (align - 1))
		return NULL;
	return heap_alloc(size, align);
}

void *gvm__heap_realloc(void *p, size_t size)
{
	struct hdr *h;
	uint64_t cap;
	void *np;

	if (!p)
		return heap_alloc(size, 0);
	h = hdr_of(p);
	cap = class_size(h->cls) - h->back - HDR;
	if (size <= cap) {
		if (size < h->size)
			POISON((uint8_t *)p + size, h->size - size);
		else
			UNPOISON(p, size);
		h->size = size;
		return p;
	}
	np = heap_alloc(size, 0);
	if (!np)
		return NULL;
	memcpy(np, p, h->size);
	gvm__free(p);
	return np;
}

bool gvm__heap_owns(const void *p)
{
	uint64_t a = (uint64_t)(uintptr_t)p, base;

	pthread_once(&heap_once, heap_init);
	base = (uint64_t)(uintptr_t)heap_base;
	return heap_base && a >= base && a < base + heap_size;
}

bool gvm__alloc_owns(uint64_t start, uint64_t len)
{
	uint64_t end = start + len, base;

	pthread_once(&heap_once, heap_init);
	base = (uint64_t)(uintptr_t)heap_base;
	if (heap_base && start < base + heap_size && end > base)
		return true;
	for (unsigned int i = 0; i < nr_statics; i++)
		if (start < statics[i].end && end > statics[i].start)
			return true;
	return gvm__thread_stacks_own(start, len) ||
	       gvm__stacks_own(start, len);
}

uint64_t gvm__alloc_live(void)
{
	uint64_t live;

	heap_lock(&tc_lock);
	live = gvm_load_relaxed(&heap_live);
	for (struct tcache *tc = tc_threads; tc; tc = tc->next)
		live += (uint64_t)gvm_load_relaxed(&tc->live);
	pthread_mutex_unlock(&tc_lock);
	return live;
}

uint64_t gvm__alloc_carved(void)
{
	return gvm_load_relaxed(&heap_top);
}

int gvm__grow_slow(void **p, size_t *cap, size_t need, size_t sz)
{
	size_t ncap;
	void *np;

	ncap = *cap ? *cap : 8;
	while (ncap < need)
		ncap *= 2;
	if (ncap > SIZE_MAX / sz)
		return -ENOMEM;
	np = gvm__realloc(*p, ncap * sz);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}
