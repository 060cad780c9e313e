// SPDX-License-Identifier: MIT
/*
 * The model mm backend (src/mm/model.c) on its own: mappings, CPU
 * accesses, protection, mremap, fork's copy-on-write, reclaim, device
 * memory (take/give through devmem.c), and the contract's core promise
 * that a notifier hears of every change *before* it happens: its
 * callbacks find the old pages intact, and once the call returns the old
 * frames hold the poison byte.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <gvm/gvm.h>

#include "harness.h"
#include "core/alloc.h"
#include "mm/mm.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define RW (PROT_READ | PROT_WRITE)

static struct gvm_mm *model(void)
{
	struct gvm_mm_model_config c = { .size = 64ull << 20 };
	struct gvm_mm *mm;

	ASSERT_OK(gvm_mm_model_create(&c, &mm));
	return mm;
}

static void put_u64(struct gvm_mm *mm, uint64_t a, uint64_t v)
{
	ASSERT_OK(gvm_mm_model_write(mm, a, &v, sizeof(v)));
}

static uint64_t get_u64(struct gvm_mm *mm, uint64_t a)
{
	uint64_t v = 0;

	ASSERT_OK(gvm_mm_model_read(mm, a, &v, sizeof(v)));
	return v;
}

static struct gvm_mm_model_stats stats(struct gvm_mm *mm)
{
	struct gvm_mm_model_stats st;

	ASSERT_OK(gvm_mm_model_stats(mm, &st));
	return st;
}

/* The device address (frame) of the page at @a, fetched. */
static uint64_t frame_of(struct gvm_mm *mm, uint64_t a, bool write)
{
	struct gvm_mm_extent *x;
	size_t n;
	uint64_t d;

	ASSERT_OK(gvm__mm_fetch(mm, a, K4, write, &x, &n));
	ASSERT_EQ(n, 1);
	d = x[0].addr;
	gvm__free(x);
	return d;
}

static bool all_bytes(uint64_t host, uint8_t b)
{
	const uint8_t *p = (const uint8_t *)(uintptr_t)host;

	for (uint64_t i = 0; i < K4; i++)
		if (p[i] != b)
			return false;
	return true;
}

/* ---- a notifier that checks the state when it is invalidated ---------- */

struct watch {
	struct gvm_notifier n;
	struct gvm_mm *mm;
	uint64_t frame;			/* host address of a watched page */
	uint64_t word;			/* what it must hold at pass 1 */
	unsigned int hits, intact;
	enum gvm_mm_event last;
	struct gvm_notifier_finish fin;
	unsigned int finishes;
};

static struct gvm_notifier_finish *
watch_start(struct gvm_notifier *n, const struct gvm_notifier_range *r,
	    uint64_t cur)
{
	struct watch *w = gvm_container_of(n, struct watch, n);

	gvm__notifier_set_seq(n, cur);
	w->hits++;
	w->last = r->event;
	/* Before the change: the old page still holds its data. */
	if (w->frame &&
	    *(const uint64_t *)(uintptr_t)w->frame == w->word)
		w->intact++;
	return gvm__notifier_finish_claim(&w->fin) ? &w->fin : NULL;
}

static void watch_finish(struct gvm_notifier *n, struct gvm_notifier_finish *f,
			 const struct gvm_notifier_range *r)
{
	struct watch *w = gvm_container_of(n, struct watch, n);

	(void)r;
	w->finishes++;
	gvm__notifier_finish_release(f);
}

static const struct gvm_notifier_ops watch_ops = {
	.invalidate_start = watch_start,
	.invalidate_finish = watch_finish,
};

static void watch(struct watch *w, struct gvm_mm *mm, uint64_t a,
		  uint64_t len)
{
	memset(w, 0, sizeof(*w));
	w->mm = mm;
	ASSERT_OK(gvm__notifier_insert(mm, &w->n, a, len, &watch_ops));
}

/* Watches page @a holding @word (written now). */
static void watch_page(struct watch *w, struct gvm_mm *mm, uint64_t a,
		       uint64_t word)
{
	watch(w, mm, a, K4);
	put_u64(mm, a, word);
	w->frame = frame_of(mm, a, false);
	w->word = word;
}

/* ---- tests ------------------------------------------------------------ */

TEST(mmap_access_protect_unmap)
{
	struct gvm_mm *mm = model();
	uint64_t a, b, z = 1;
	uint8_t buf[64];
	struct gvm_mm_vma v;

	ASSERT_OK(gvm_mm_model_mmap(mm, 0, 4 * K4, RW, 0, &a));
	ASSERT_EQ(a, GVM_MM_MODEL_BASE);
	ASSERT_OK(gvm_mm_model_read(mm, a + 100, &z, sizeof(z)));
	ASSERT_EQ(z, 0);		/* zero-filled on first touch */
	memset(buf, 7, sizeof(buf));
	ASSERT_OK(gvm_mm_model_write(mm, a + K4 - 32, buf, sizeof(buf)));
	memset(buf, 0, sizeof(buf));
	ASSERT_OK(gvm_mm_model_read(mm, a + K4 - 32, buf, sizeof(buf)));
	ASSERT_EQ(buf[0], 7);
	ASSERT_EQ(buf[63], 7);

	/* mprotect of the middle splits the mapping in three */
	ASSERT_OK(gvm_mm_model_mprotect(mm, a + K4, 2 * K4, PROT_READ));
	ASSERT_OK(gvm__mm_lookup(mm, a + K4, 0, &v));
	ASSERT_EQ(v.start, a + K4);
	ASSERT_EQ(v.end, a + 3 * K4);
	ASSERT_EQ(v.prot, PROT_READ);
	ASSERT_EQ(gvm_mm_model_write(mm, a + K4, buf, 1), -EPERM);
	ASSERT_EQ(gvm_mm_model_write(mm, a + K4 - 1, buf, 2), -EPERM);
	ASSERT_OK(gvm_mm_model_read(mm, a + K4, buf, 1));
	ASSERT_OK(gvm_mm_model_mprotect(mm, a + K4, K4, PROT_NONE));
	ASSERT_EQ(gvm_mm_model_read(mm, a + K4, buf, 1), -EFAULT);
	/* and back: merged again */
	ASSERT_OK(gvm_mm_model_mprotect(mm, a + K4, 2 * K4, RW));
	ASSERT_OK(gvm__mm_lookup(mm, a + K4, 0, &v));
	ASSERT_EQ(v.start, a);
	ASSERT_EQ(v.end, a + 4 * K4);

	/* a hole in the middle */
	ASSERT_OK(gvm_mm_model_munmap(mm, a + K4, K4));
	ASSERT_EQ(gvm_mm_model_read(mm, a + K4, buf, 1), -EFAULT);
	ASSERT_OK(gvm__mm_lookup(mm, a + K4, GVM_MM_LOOKUP_NEXT, &v));
	ASSERT_EQ(v.start, a + 2 * K4);
	ASSERT_EQ(gvm__mm_lookup(mm, a + K4, 0, &v), -ENOENT);
	ASSERT_EQ(gvm_mm_model_mprotect(mm, a, 4 * K4, RW), -ENOMEM);
	ASSERT_EQ(gvm_mm_model_madvise(mm, a, 4 * K4, GVM_MM_MODEL_DONTNEED),
		  -ENOMEM);
	/* first fit takes the hole */
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, K4, RW, 0, &b));
	ASSERT_EQ(b, a + K4);
	/* 2 MiB and more: 2 MiB aligned */
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, M2, RW, 0, &b));
	ASSERT_EQ(b % M2, 0);

	/* bad arguments */
	ASSERT_EQ(gvm_mm_model_mmap(mm, 0, 100, RW, 0, &b), -EINVAL);
	ASSERT_EQ(gvm_mm_model_mmap(mm, 12, K4, RW, GVM_MM_MODEL_FIXED, &b),
		  -EINVAL);
	ASSERT_EQ(gvm_mm_model_mmap(mm, GVM_MM_MODEL_BASE - K4, K4, RW,
				    GVM_MM_MODEL_FIXED, &b), -EINVAL);
	ASSERT_EQ(gvm_mm_model_munmap(mm, a + 1, K4), -EINVAL);
	ASSERT_EQ(gvm_mm_model_madvise(mm, a, K4, 3), -EINVAL);
	ASSERT_EQ(gvm_mm_model_read(NULL, a, buf, 1), -EINVAL);
	ASSERT_EQ(gvm_mm_model_read(mm, GVM_MM_MODEL_BASE - 1, buf, 1),
		  -EINVAL);
	ASSERT_EQ(gvm_mm_model_create(&(struct gvm_mm_model_config){
					      .base = 12 }, &mm), -EINVAL);
	gvm_mm_put(mm);
}

TEST(fetch_honours_protection_and_extents)
{
	struct gvm_mm *mm = model();
	struct gvm_mm_extent *x;
	uint64_t a;
	size_t n;

	ASSERT_OK(gvm_mm_model_mmap(mm, 0, 8 * K4, RW, 0, &a));
	/* fresh frames come in order: one extent */
	ASSERT_OK(gvm__mm_fetch(mm, a, 8 * K4, true, &x, &n));
	ASSERT_EQ(n, 1);
	ASSERT_EQ(x[0].len, 8 * K4);
	gvm__free(x);
	ASSERT_OK(gvm_mm_model_mprotect(mm, a, K4, PROT_READ));
	ASSERT_EQ(gvm__mm_fetch(mm, a, 2 * K4, true, &x, &n), -EPERM);
	ASSERT_OK(gvm__mm_fetch(mm, a, 2 * K4, false, &x, &n));
	gvm__free(x);
	ASSERT_OK(gvm_mm_model_mprotect(mm, a, K4, PROT_NONE));
	ASSERT_EQ(gvm__mm_fetch(mm, a, 2 * K4, false, &x, &n), -EFAULT);
	ASSERT_OK(gvm_mm_model_munmap(mm, a + K4, K4));
	ASSERT_EQ(gvm__mm_fetch(mm, a + K4, 2 * K4, false, &x, &n), -EFAULT);
	/* the GPU's writes through a fetched frame are the CPU's data */
	*(uint64_t *)(uintptr_t)frame_of(mm, a + 2 * K4, true) = 42;
	ASSERT_EQ(get_u64(mm, a + 2 * K4), 42);
	gvm_mm_put(mm);
}

/*
 * Every change reaches the notifier before the pages go: at pass 1 the old
 * frame still holds the data, both passes run, and when the call returns
 * the old frame is poisoned (freed) and a new fetch sees the new state.
 */
TEST(invalidation_comes_before_the_change)
{
	struct gvm_mm *mm = model();
	struct watch w;
	uint64_t a, b;

	ASSERT_OK(gvm_mm_model_mmap(mm, 0, 4 * K4, RW, 0, &a));

	/* munmap */
	watch_page(&w, mm, a, 0x1111);
	ASSERT_OK(gvm_mm_model_munmap(mm, a, K4));
	ASSERT_EQ(w.hits, 1);
	ASSERT_EQ(w.intact, 1);
	ASSERT_EQ(w.finishes, 1);
	ASSERT_EQ(w.last, GVM_MM_EVENT_UNMAP);
	ASSERT_TRUE(all_bytes(w.frame, 0xa5));
	gvm__notifier_remove(&w.n);

	/* madvise(DONTNEED): zeros after */
	watch_page(&w, mm, a + K4, 0x2222);
	ASSERT_OK(gvm_mm_model_madvise(mm, a + K4, K4,
				       GVM_MM_MODEL_DONTNEED));
	ASSERT_EQ(w.intact, 1);
	ASSERT_EQ(w.last, GVM_MM_EVENT_REMOVE);
	ASSERT_TRUE(all_bytes(w.frame, 0xa5));
	ASSERT_EQ(get_u64(mm, a + K4), 0);
	gvm__notifier_remove(&w.n);

	/* reclaim: same data, another frame */
	watch_page(&w, mm, a + 2 * K4, 0x3333);
	ASSERT_EQ(gvm_mm_model_reclaim(mm, a, 4 * K4), 2);
	ASSERT_EQ(w.intact, 1);
	ASSERT_EQ(w.last, GVM_MM_EVENT_MIGRATE);
	ASSERT_TRUE(all_bytes(w.frame, 0xa5));
	ASSERT_NE(frame_of(mm, a + 2 * K4, false), w.frame);
	ASSERT_EQ(get_u64(mm, a + 2 * K4), 0x3333);
	gvm__notifier_remove(&w.n);

	/* mremap: the old range invalidated, the data at the new one */
	watch_page(&w, mm, a + 3 * K4, 0x4444);
	ASSERT_OK(gvm_mm_model_mremap(mm, a + 2 * K4, 2 * K4, 2 * K4,
				      GVM_MM_MODEL_MAYMOVE |
					      GVM_MM_MODEL_FIXED,
				      a + 16 * K4, &b));
	ASSERT_EQ(b, a + 16 * K4);
	ASSERT_EQ(w.intact, 1);
	ASSERT_EQ(w.last, GVM_MM_EVENT_REMAP);
	ASSERT_EQ(get_u64(mm, b + K4), 0x4444);
	ASSERT_EQ(get_u64(mm, b), 0x3333);
	ASSERT_EQ(frame_of(mm, b + K4, false), w.frame);	/* moved */
	gvm__notifier_remove(&w.n);

	/* mprotect */
	watch_page(&w, mm, b, 0x5555);
	ASSERT_OK(gvm_mm_model_mprotect(mm, b, K4, PROT_READ));
	ASSERT_EQ(w.hits, 1);
	gvm__notifier_remove(&w.n);

	/* a notifier over a hole of an unmapped range is hit too: the
	   whole range is invalidated, as Linux does */
	watch(&w, mm, a + 8 * K4, K4);
	ASSERT_OK(gvm_mm_model_munmap(mm, a, 32 * K4));
	ASSERT_EQ(w.hits, 1);
	gvm__notifier_remove(&w.n);
	ASSERT_EQ(stats(mm).poison_violations, 0);
	gvm_mm_put(mm);
}

TEST(mremap_grow_shrink_move)
{
	struct gvm_mm *mm = model();
	uint64_t a, b, c;

	ASSERT_OK(gvm_mm_model_mmap(mm, 0, 2 * K4, RW, 0, &a));
	put_u64(mm, a, 1);
	put_u64(mm, a + K4, 2);
	/* grow in place */
	ASSERT_OK(gvm_mm_model_mremap(mm, a, 2 * K4, 4 * K4, 0, 0, &b));
	ASSERT_EQ(b, a);
	ASSERT_EQ(get_u64(mm, a + 3 * K4), 0);
	/* blocked: only with MAYMOVE */
	ASSERT_OK(gvm_mm_model_mmap(mm, a + 4 * K4, K4, RW,
				    GVM_MM_MODEL_FIXED, &c));
	ASSERT_EQ(gvm_mm_model_mremap(mm, a, 4 * K4, 8 * K4, 0, 0, &b),
		  -ENOMEM);
	ASSERT_OK(gvm_mm_model_mremap(mm, a, 4 * K4, 8 * K4,
				      GVM_MM_MODEL_MAYMOVE, 0, &b));
	ASSERT_NE(b, a);
	ASSERT_EQ(get_u64(mm, b), 1);
	ASSERT_EQ(get_u64(mm, b + K4), 2);
	ASSERT_EQ(get_u64(mm, b + 7 * K4), 0);
	ASSERT_EQ(gvm_mm_model_read(mm, a, &c, 8), -EFAULT);
	/* shrink */
	ASSERT_OK(gvm_mm_model_mremap(mm, b, 8 * K4, K4, 0, 0, &c));
	ASSERT_EQ(c, b);
	ASSERT_EQ(gvm_mm_model_read(mm, b + K4, &c, 8), -EFAULT);
	/* not one mapping */
	ASSERT_EQ(gvm_mm_model_mremap(mm, b, 2 * K4, K4, 0, 0, &c), -EFAULT);
	gvm_mm_put(mm);
}

TEST(fork_is_copy_on_write)
{
	struct gvm_mm *mm = model(), *child;
	struct watch w, wc;
	uint64_t a, pf, cf;

	ASSERT_OK(gvm_mm_model_mmap(mm, 0, 2 * K4, RW, 0, &a));
	watch_page(&w, mm, a, 7);
	ASSERT_OK(gvm_mm_model_fork(mm, &child));
	ASSERT_EQ(w.hits, 1);
	ASSERT_EQ(w.last, GVM_MM_EVENT_FORK);
	ASSERT_EQ(get_u64(child, a), 7);
	/* read fetches share the frame */
	pf = frame_of(mm, a, false);
	ASSERT_EQ(pf, frame_of(child, a, false));

	/* the child writes: its copy, invalidated first; the parent keeps
	   its frame and notifier */
	watch(&wc, child, a, K4);
	put_u64(child, a, 8);
	ASSERT_EQ(wc.hits, 1);
	ASSERT_EQ(wc.last, GVM_MM_EVENT_FORK);
	ASSERT_EQ(w.hits, 1);
	ASSERT_EQ(get_u64(mm, a), 7);
	ASSERT_EQ(frame_of(mm, a, false), pf);
	cf = frame_of(child, a, false);
	ASSERT_NE(cf, pf);
	ASSERT_EQ(stats(child).cow_copies, 1);

	/* the parent's page is its own again: a write copies nothing */
	put_u64(mm, a, 9);
	ASSERT_EQ(stats(mm).cow_copies, 0);
	ASSERT_EQ(get_u64(child, a), 8);

	/* a write fetch of a shared page breaks it too */
	put_u64(mm, a + K4, 5);
	gvm__notifier_remove(&w.n);
	gvm__notifier_remove(&wc.n);
	gvm_mm_put(child);
	ASSERT_OK(gvm_mm_model_fork(mm, &child));
	pf = frame_of(mm, a + K4, false);
	ASSERT_NE(frame_of(mm, a + K4, true), pf);
	ASSERT_EQ(frame_of(child, a + K4, true), pf);	/* last user */
	ASSERT_EQ(get_u64(child, a + K4), 5);
	/* unmapping in one leaves the other's pages */
	ASSERT_OK(gvm_mm_model_munmap(mm, a, 2 * K4));
	ASSERT_EQ(get_u64(child, a), 9);
	gvm_mm_put(mm);		/* the family's frames live on */
	ASSERT_EQ(get_u64(child, a + K4), 5);
	ASSERT_EQ(stats(child).poison_violations, 0);
	gvm_mm_put(child);
}

/* Device memory for the backend test: a buffer. */
struct tdm {
	struct gvm_mm_devmem base;
	uint8_t *mem;
	unsigned int copies;
};

static int tdm_copy(struct gvm_mm_devmem *dm, uint64_t off, uint64_t sys,
		    uint64_t len, bool to_ram, void (*meanwhile)(void *),
		    void *arg)
{
	if (meanwhile)
		meanwhile(arg);
	struct tdm *t = gvm_container_of(dm, struct tdm, base);

	t->copies++;
	if (to_ram)
		memcpy((void *)(uintptr_t)sys, t->mem + off, len);
	else
		memcpy(t->mem + off, (void *)(uintptr_t)sys, len);
	return 0;
}

static void tdm_release(struct gvm_mm_devmem *dm)
{
	struct tdm *t = gvm_container_of(dm, struct tdm, base);

	free(t->mem);
	free(t);
}

static const struct gvm_mm_devmem_ops tdm_ops = {
	.copy = tdm_copy,
	.release = tdm_release,
};

static struct tdm *tdm_new(uint64_t size)
{
	struct tdm *t = calloc(1, sizeof(*t));

	ASSERT_TRUE(t != NULL);
	t->mem = calloc(1, size);
	ASSERT_TRUE(t->mem != NULL);
	gvm__mm_devmem_init(&t->base, &tdm_ops, t, size);
	return t;
}

TEST(device_memory_comes_back_on_cpu_access)
{
	struct gvm_mm *mm = model(), *child;
	struct tdm *t = tdm_new(64 * K4);
	struct watch w;
	uint64_t a, b;

	ASSERT_TRUE(gvm__mm_devmem_supported(mm));
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, 16 * K4, RW, 0, &a));
	watch_page(&w, mm, a, 0x77);
	put_u64(mm, a + 5 * K4, 0x55);
	ASSERT_OK(gvm__mm_migrate_to_devmem(mm, a, 16 * K4, &t->base));
	ASSERT_EQ(w.hits, 1);
	ASSERT_EQ(w.intact, 1);		/* the take came after pass 2 */
	ASSERT_TRUE(all_bytes(w.frame, 0xa5));
	ASSERT_EQ(gvm__mm_devmem_bytes(mm), 16 * K4);
	ASSERT_EQ(*(uint64_t *)(t->mem + 5 * K4), 0x55);
	/* a CPU read brings the whole migration back */
	ASSERT_EQ(get_u64(mm, a + 5 * K4), 0x55);
	ASSERT_EQ(gvm__mm_devmem_bytes(mm), 0);
	ASSERT_EQ(get_u64(mm, a), 0x77);
	ASSERT_EQ(stats(mm).devmem_faults, 1);

	/* mremap carries device data along; munmap drops it */
	ASSERT_OK(gvm__mm_migrate_to_devmem(mm, a, 16 * K4, &t->base));
	ASSERT_OK(gvm_mm_model_mremap(mm, a, 16 * K4, 16 * K4,
				      GVM_MM_MODEL_MAYMOVE |
					      GVM_MM_MODEL_FIXED,
				      a + 64 * K4, &b));
	ASSERT_EQ(gvm__mm_devmem_bytes(mm), 16 * K4);
	ASSERT_OK(gvm_mm_model_munmap(mm, b + 8 * K4, 8 * K4));
	ASSERT_EQ(gvm__mm_devmem_bytes(mm), 8 * K4);
	/* a fetch brings it back too (as the CPU's populate does) */
	ASSERT_EQ(*(uint64_t *)(uintptr_t)frame_of(mm, b + 5 * K4, false),
		  0x55);
	ASSERT_EQ(gvm__mm_devmem_bytes(mm), 0);

	/* madvise drops it; the pages read as zeros */
	ASSERT_OK(gvm__mm_migrate_to_devmem(mm, b, 8 * K4, &t->base));
	ASSERT_OK(gvm_mm_model_madvise(mm, b, 8 * K4, GVM_MM_MODEL_DONTNEED));
	ASSERT_EQ(gvm__mm_devmem_bytes(mm), 0);
	ASSERT_EQ(get_u64(mm, b + 5 * K4), 0);

	/* fork brings it back first; shared pages cannot move */
	put_u64(mm, b, 3);
	ASSERT_OK(gvm__mm_migrate_to_devmem(mm, b, 8 * K4, &t->base));
	ASSERT_OK(gvm_mm_model_fork(mm, &child));
	ASSERT_EQ(gvm__mm_devmem_bytes(mm), 0);
	ASSERT_EQ(get_u64(child, b), 3);
	ASSERT_EQ(gvm__mm_migrate_to_devmem(mm, b, 8 * K4, &t->base), -EBUSY);
	gvm_mm_put(child);
	gvm__notifier_remove(&w.n);
	gvm__mm_devmem_put(&t->base);
	ASSERT_EQ(stats(mm).poison_violations, 0);
	gvm_mm_put(mm);
}

/* Same calls, same answers: addresses and frames are deterministic. */
TEST(deterministic)
{
	uint64_t out[2][8];

	for (int r = 0; r < 2; r++) {
		struct gvm_mm *mm = model(), *child;
		uint64_t a, b, base;

		ASSERT_OK(gvm_mm_model_mmap(mm, 0, 64 * K4, RW, 0, &a));
		base = frame_of(mm, a, true);
		for (int i = 0; i < 64; i++)
			put_u64(mm, a + (uint64_t)i * K4, (uint64_t)i);
		ASSERT_OK(gvm_mm_model_munmap(mm, a + 8 * K4, 8 * K4));
		ASSERT_EQ(gvm_mm_model_reclaim(mm, a, 64 * K4), 56);
		ASSERT_OK(gvm_mm_model_fork(mm, &child));
		put_u64(mm, a, 99);
		ASSERT_OK(gvm_mm_model_mmap(mm, 0, 4 * K4, RW, 0, &b));
		out[r][0] = a;
		out[r][1] = b;
		out[r][2] = frame_of(mm, a, false) - base;
		out[r][3] = frame_of(mm, a + 20 * K4, false) - base;
		out[r][4] = frame_of(mm, b, true) - base;
		out[r][5] = frame_of(child, a, true) - base;
		out[r][6] = stats(mm).frames_used;
		out[r][7] = stats(mm).invalidations;
		gvm_mm_put(child);
		gvm_mm_put(mm);
	}
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(out[0][i], out[1][i]);
}

TEST(pool_exhaustion_is_enomem)
{
	struct gvm_mm_model_config c = { .size = M2, .frames = 4 };
	struct gvm_mm *mm;
	struct gvm_mm_extent *x;
	uint64_t a, v = 1;
	size_t n;

	ASSERT_OK(gvm_mm_model_create(&c, &mm));
	ASSERT_OK(gvm_mm_model_mmap(mm, 0, 8 * K4, RW, 0, &a));
	ASSERT_OK(gvm__mm_fetch(mm, a, 4 * K4, true, &x, &n));
	gvm__free(x);
	ASSERT_EQ(gvm__mm_fetch(mm, a + 4 * K4, K4, true, &x, &n), -ENOMEM);
	ASSERT_EQ(gvm_mm_model_write(mm, a + 5 * K4, &v, 8), -ENOMEM);
	/* freed frames are used again once nothing else is left */
	ASSERT_OK(gvm_mm_model_munmap(mm, a, K4));
	ASSERT_OK(gvm_mm_model_write(mm, a + 5 * K4, &v, 8));
	ASSERT_EQ(stats(mm).poison_violations, 0);
	gvm_mm_put(mm);
}

/* A frame written after its invalidation ended is found. */
TEST(poison_violation_is_counted)
{
	struct gvm_mm *mm = model();
	uint64_t a, f;

	ASSERT_OK(gvm_mm_model_mmap(mm, 0, K4, RW, 0, &a));
	f = frame_of(mm, a, true);
	ASSERT_OK(gvm_mm_model_munmap(mm, a, K4));
	ASSERT_EQ(stats(mm).poison_violations, 0);
	*(volatile uint8_t *)(uintptr_t)(f + 100) = 1;	/* a stale engine */
	ASSERT_EQ(stats(mm).poison_violations, 1);
	gvm_mm_put(mm);
}

/* Each call of a scenario either works or says -ENOMEM. */
static void ok_or_enomem(int err)
{
	if (err)
		ASSERT_EQ(err, -ENOMEM);
}

static void alloc_scenario(void)
{
	struct gvm_mm_model_config c = { .size = 64ull << 20 };
	struct gvm_mm *mm, *child = NULL;
	struct gvm_mm_extent *x;
	struct watch w;
	uint64_t a = 0, b, v = 3;
	size_t n;
	int err;

	err = gvm_mm_model_create(&c, &mm);
	ok_or_enomem(err);
	if (err)
		return;
	err = gvm_mm_model_mmap(mm, 0, 8 * K4, RW, 0, &a);
	ok_or_enomem(err);
	if (!err) {
		ok_or_enomem(gvm_mm_model_write(mm, a, &v, 8));
		memset(&w, 0, sizeof(w));
		if (!gvm__notifier_insert(mm, &w.n, a, 8 * K4, &watch_ops)) {
			ok_or_enomem(gvm_mm_model_mprotect(mm, a + K4, K4,
							   PROT_READ));
			ok_or_enomem(gvm_mm_model_mremap(
				mm, a + 4 * K4, 4 * K4, 8 * K4,
				GVM_MM_MODEL_MAYMOVE, 0, &b));
			ok_or_enomem(gvm_mm_model_fork(mm, &child));
			if (child) {
				ok_or_enomem(gvm_mm_model_write(child, a, &v,
								8));
				gvm_mm_put(child);
			}
			err = gvm__mm_fetch(mm, a, K4, true, &x, &n);
			ok_or_enomem(err);
			if (!err)
				gvm__free(x);
			ok_or_enomem(gvm_mm_model_munmap(mm, a, 2 * K4));
			gvm__notifier_remove(&w.n);
		}
	}
	gvm_mm_put(mm);
}

/* Every allocation of the model fails once: no crash, no leak. */
TEST(allocation_failures)
{
	uint64_t live = gvm__alloc_live();
	long calls, n;

	gvm__inject_count(true);
	alloc_scenario();
	calls = gvm__inject_calls(GVM_INJECT_ALLOC);
	gvm__inject_count(false);
	ASSERT_GT(calls, 5);
	for (n = 1; n <= calls; n++) {
		gvm__inject_arm(GVM_INJECT_ALLOC, n, 0);
		alloc_scenario();
		ASSERT_EQ(gvm__inject_disarm(GVM_INJECT_ALLOC), 0);
		gvm_test_check_leaks(live);
	}
}
