// SPDX-License-Identifier: MIT
/* The test backend described in testdev.h. */
#include "testdev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"

#define VRAM_BASE (1ull << 40)

static int td_vm_attach(struct gvm_device *dev, struct gvm_vm *vm,
			uint64_t root, unsigned int levels, uint32_t flags,
			void **priv)
{
	struct testdev *td = gvm_device_priv(dev);

	__atomic_fetch_add(&td->attached, 1, __ATOMIC_RELAXED);
	*priv = td;
	return 0;
}

static void td_vm_detach(struct gvm_device *dev, void *priv)
{
	struct testdev *td = priv;

	__atomic_fetch_sub(&td->attached, 1, __ATOMIC_RELAXED);
}

static int td_tlb_inval(struct gvm_device *dev, void *priv, uint64_t start,
			uint64_t size, struct gvm_fence **done)
{
	struct testdev *td = priv;

	__atomic_fetch_add(&td->tlb_invals, 1, __ATOMIC_RELAXED);
	if (!size)
		__atomic_fetch_add(&td->tlb_full, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&td->last_inval_start, start, __ATOMIC_RELAXED);
	__atomic_store_n(&td->last_inval_size, size, __ATOMIC_RELAXED);
	return gvm_fence_create_signaled(0, done);
}

static void *td_ptr(struct testdev *td, struct gvm_mem_addr a)
{
	if (a.region == GVM_MEM_SYSTEM)
		return (void *)(uintptr_t)a.addr;
	return td->vram + (a.addr - VRAM_BASE);
}

static int td_copy(struct gvm_device *dev, struct gvm_mem_addr dst,
		   struct gvm_mem_addr src, uint64_t size,
		   struct gvm_fence **done)
{
	struct testdev *td = gvm_device_priv(dev);

	memcpy(td_ptr(td, dst), td_ptr(td, src), size);
	return gvm_fence_create_signaled(0, done);
}

/* One stub compute engine: kernels complete at once, doing nothing. */
static int td_queue_create(struct gvm_device *dev, void *vm_priv,
			   uint32_t engine, void **queue_priv)
{
	*queue_priv = vm_priv;
	return 0;
}

static void td_queue_destroy(struct gvm_device *dev, void *queue_priv)
{
}

static int td_run(struct gvm_device *dev, void *queue_priv,
		  const struct gvm_kernel *k, struct gvm_fence **done)
{
	return gvm_fence_create_signaled(0, done);
}

static void td_destroy(struct gvm_device *dev)
{
	struct testdev *td = gvm_device_priv(dev);

	munmap(td->vram, td->vram_size);
	close(td->fd);
	free(td);
}

static const struct gvm_device_ops td_ops = {
	.vm_attach = td_vm_attach,
	.vm_detach = td_vm_detach,
	.tlb_inval = td_tlb_inval,
	.copy = td_copy,
	.queue_create = td_queue_create,
	.queue_destroy = td_queue_destroy,
	.run = td_run,
	.destroy = td_destroy,
};

struct gvm_device *testdev_create(uint64_t vram_size, unsigned int va_bits)
{
	struct gvm_device_desc d = { 0 };
	struct gvm_device *dev;
	struct testdev *td = calloc(1, sizeof(*td));

	ASSERT_TRUE(td);
	td->vram_size = vram_size ? vram_size : 64ull << 20;
	td->fd = memfd_create("testdev-vram", 0);
	ASSERT_TRUE(td->fd >= 0);
	ASSERT_OK(ftruncate(td->fd, (off_t)td->vram_size));
	td->vram = mmap(NULL, td->vram_size, PROT_READ | PROT_WRITE,
			MAP_SHARED, td->fd, 0);
	ASSERT_TRUE(td->vram != MAP_FAILED);
	d.name = "testdev";
	d.va_bits = va_bits ? va_bits : GVM_VA_BITS_48;
	d.page_sizes = GVM_PAGE_4K | GVM_PAGE_64K | GVM_PAGE_2M | GVM_PAGE_1G;
	d.vram_size = td->vram_size;
	d.vram_base = VRAM_BASE;
	d.vram_cpu = td->vram;
	d.vram_fd = td->fd;
	d.nr_compute = 1;
	ASSERT_OK(gvm_device_create(&d, &td_ops, td, &dev));
	return dev;
}

struct testdev *testdev_of(struct gvm_device *dev)
{
	return gvm_device_priv(dev);
}
