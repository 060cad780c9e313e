// SPDX-License-Identifier: MIT
/*
 * The backend-independent part of an mm: references, invalidation entry
 * and the library's CPU accesses (the contract is in mm.h, the backends in
 * self.c and model.c).
 *
 * Locking: the reference count is atomic; the notifier tree has its own lock
 * (mm/notifier.c).  What it does not do: anything backend-specific.
 */
#include "mm/mm.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/debug.h"
#include "core/lockrank.h"
#include "core/sync.h"

void gvm__mm_init(struct gvm_mm *mm, const struct gvm_mm_ops *ops)
{
	gvm__ref_init(&mm->ref);
	mm->ops = ops;
	gvm__notifier_subs_init(&mm->subs);
	gvm__mutex_init(&mm->devmem_lock, "mm.devmem_lock", GVM_RANK_MM);
	gvm__itree_init(&mm->devmem);
}

void gvm__mm_fini(struct gvm_mm *mm)
{
	gvm__mm_devmem_fini(mm);
	gvm__notifier_subs_fini(&mm->subs);
}

void *gvm__mm_map_aligned(uint64_t len, uint64_t align, int flags)
{
	uint8_t *p, *a;

	p = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
	if (p == MAP_FAILED)
		return p;
	a = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	munmap(a + len, (size_t)(p + align - a));
	return a;
}

GVM_API struct gvm_mm *gvm_mm_get(struct gvm_mm *mm)
{
	gvm__ref_get(&mm->ref);
	return mm;
}

GVM_API void gvm_mm_put(struct gvm_mm *mm)
{
	if (mm && gvm__ref_put(&mm->ref))
		mm->ops->destroy(mm);
}

GVM_API int gvm_mm_flush(struct gvm_mm *mm)
{
	if (!mm)
		return -EINVAL;
	return gvm__mm_flush(mm);
}

GVM_API int gvm_mm_invalidate(struct gvm_mm *mm, uint64_t addr, uint64_t len)
{
	if (!mm || !gvm__mm_range_ok(addr, len))
		return -EINVAL;
	gvm_might_block();
	gvm__mm_invalidate(mm, addr, len, GVM_MM_EVENT_PROTECT);
	return 0;
}

unsigned int gvm__mm_invalidate(struct gvm_mm *mm, uint64_t start,
				uint64_t len, enum gvm_mm_event event)
{
	struct gvm_notifier_range r = {
		.start = start,
		.last = start + len - 1,
		.event = event,
	};

	if (!len || r.last < start)
		return 0;
	return gvm__notifier_invalidate(mm, &r);
}

int gvm__mm_access(struct gvm_mm *mm, uint64_t addr, void *buf, uint64_t len,
		   bool write)
{
	struct iovec local = { buf, len };
	struct iovec remote = { (void *)(uintptr_t)addr, len };
	ssize_t n;

	if (!len)
		return 0;
	if (mm && mm->ops->access)
		return mm->ops->access(mm, addr, buf, len, write);
	n = write ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0) :
		    process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	return n == (ssize_t)len ? 0 : -EFAULT;
}
