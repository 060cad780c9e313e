// SPDX-License-Identifier: MIT
/*
 * VM layer: VMs, BOs, VM_BIND (validation, split/merge through the page
 * tables, atomicity and unwind, syncs, queues), on the test backend.
 * The page-table translator is the oracle.
 */
#include <gvm/gvm.h>
#include <gvm/vm.h>

#include "harness.h"
#include "testdev.h"

#include "core/sync.h"
#include "vm/bind.h"
#include "vm/dev.h"
#include "vm/bo.h"
#include "vm/vm.h"

#define K4 4096ull
#define M2 (2ull << 20)
#define G1 (1ull << 30)

static struct gvm_device *dev;

static struct gvm_vm *new_vm(uint32_t flags)
{
	struct gvm_vm *vm;

	if (!dev)
		dev = testdev_create(0, 48);
	ASSERT_OK(gvm_vm_create(dev, NULL, flags, &vm));
	return vm;
}

/* Translation of @va through the committed page tables; 0 if unmapped. */
static uint64_t xlate(struct gvm_vm *vm, uint64_t va, uint64_t *pte)
{
	struct gvm_pt_xlate x;
	int err;

	gvm__mutex_lock(&vm->lock);
	gvm__mutex_lock(&vm->pt_lock);
	err = gvm__pt_translate(&vm->pt, va, GVM_PT_VIEW_COMMITTED, &x);
	gvm__mutex_unlock(&vm->pt_lock);
	gvm__mutex_unlock(&vm->lock);
	if (pte)
		*pte = err ? 0 : x.pte;
	return err ? 0 : x.addr;
}

/* Device address of byte @off of @bo. */
static uint64_t bo_addr(struct gvm_bo *bo, uint64_t off)
{
	for (size_t k = 0; k < bo->mem.nr_ext; k++) {
		if (off < bo->mem.ext[k].len)
			return bo->mem.ext[k].addr + off;
		off -= bo->mem.ext[k].len;
	}
	return 0;
}

static int bind1(struct gvm_vm *vm, uint32_t opc, uint32_t flags,
		 uint64_t addr, uint64_t range, struct gvm_bo *bo,
		 uint64_t off)
{
	struct gvm_bind_op op = { .op = opc, .flags = flags, .addr = addr,
				  .range = range, .bo = bo, .bo_offset = off };

	return gvm_vm_bind(vm, NULL, &op, 1, NULL, 0);
}

static void vm_done(struct gvm_vm *vm)
{
	ASSERT_OK(gvm_vm_destroy(vm));
}

static void all_done(void)
{
	if (dev) {
		ASSERT_EQ(testdev_of(dev)->attached, 0);
		gvm_device_put(dev);
		dev = NULL;
	}
}

TEST(create_destroy)
{
	struct gvm_vm *vm;

	dev = testdev_create(0, 48);
	ASSERT_EQ(gvm_vm_create(dev, NULL, GVM_VM_FAULT_MODE, &vm), -EINVAL);
	ASSERT_EQ(gvm_vm_create(dev, NULL, 1u << 20, &vm), -EINVAL);
	ASSERT_EQ(gvm_vm_create(NULL, NULL, 0, &vm), -EINVAL);
	vm = new_vm(0);
	ASSERT_EQ(testdev_of(dev)->attached, 1);
	vm_done(vm);
	all_done();
}

/* A description with an unknown page size is refused (it was accepted). */
TEST(device_create_refuses_unknown_page_sizes)
{
	struct gvm_device *td = testdev_create(0, 0), *out = NULL;
	struct gvm_device_desc d = td->desc;

	d.page_sizes |= 1ull << 13;		/* 8 KiB */
	ASSERT_EQ(gvm_device_create(&d, td->ops, NULL, &out), -EINVAL);
	ASSERT_TRUE(out == NULL);
	gvm_device_put(td);
}

TEST(bo_create_map)
{
	struct gvm_bo *bo;
	uint8_t *p;
	struct gvm_vm *vm = new_vm(0);

	ASSERT_EQ(gvm_bo_create(dev, 0, GVM_MEM_VRAM, NULL, &bo), -EINVAL);
	ASSERT_EQ(gvm_bo_create(dev, 100, GVM_MEM_VRAM, NULL, &bo), -EINVAL);
	ASSERT_EQ(gvm_bo_create(dev, K4, 0, NULL, &bo), -EINVAL);
	ASSERT_EQ(gvm_bo_create(dev, K4, 8, NULL, &bo), -EINVAL);
	ASSERT_EQ(gvm_bo_create(dev, 1ull << 40, GVM_MEM_VRAM, NULL, &bo),
		  -ENOSPC);
	for (int pl = 1; pl <= 3; pl++) {
		ASSERT_OK(gvm_bo_create(dev, 3 * K4 * 16, (uint32_t)pl,
					pl == 2 ? vm : NULL, &bo));
		ASSERT_EQ(gvm_bo_region(bo),
			  pl & GVM_MEM_VRAM ? GVM_MEM_VRAM : GVM_MEM_SYSTEM);
		ASSERT_OK(gvm_bo_map(bo, (void **)&p));
		for (uint64_t i = 0; i < gvm_bo_size(bo); i++)
			ASSERT_EQ(p[i], 0);
		memset(p, 0xab, gvm_bo_size(bo));
		gvm_bo_put(bo);
	}
	vm_done(vm);
	all_done();
}

TEST(map_unmap_translate)
{
	struct gvm_vm *vm = new_vm(0);
	struct gvm_vm_stats st;
	struct gvm_bo *bo;
	uint64_t pte;

	ASSERT_OK(gvm_bo_create(dev, 4 * M2, GVM_MEM_VRAM, NULL, &bo));
	ASSERT_OK(bind1(vm, GVM_BIND_MAP, 0, 0x40000000, 4 * M2, bo, 0));
	for (uint64_t off = 0; off < 4 * M2; off += 64 * K4)
		ASSERT_EQ(xlate(vm, 0x40000000 + off, &pte), bo_addr(bo, off));
	ASSERT_EQ(xlate(vm, 0x40000000 + 4 * M2, NULL), 0);
	ASSERT_OK(gvm_vm_stats(vm, &st));
	ASSERT_EQ(st.vmas, 1);
	ASSERT_EQ(st.binds, 1);
	ASSERT_OK(bind1(vm, GVM_BIND_UNMAP, 0, 0x40000000, 4 * M2, NULL, 0));
	ASSERT_EQ(xlate(vm, 0x40000000, NULL), 0);
	ASSERT_OK(gvm_vm_stats(vm, &st));
	ASSERT_EQ(st.vmas, 0);
	ASSERT_EQ(st.pt_pages, 1);		/* just the root */
	ASSERT_EQ(bo->refcount, 1);
	gvm_bo_put(bo);
	vm_done(vm);
	all_done();
}

TEST(prefetch_moves_bo)
{
	struct gvm_vm *vm = new_vm(0), *vm2 = new_vm(0);
	struct gvm_bind_op op = { .op = GVM_BIND_PREFETCH, .addr = 0x100000,
				  .range = 16 * K4 };
	struct gvm_bo *bo;
	uint32_t *p;
	uint64_t pte;

	ASSERT_OK(gvm_bo_create(dev, 16 * K4, GVM_MEM_VRAM | GVM_MEM_SYSTEM,
				NULL, &bo));
	ASSERT_OK(gvm_bo_map(bo, (void **)&p));
	for (int i = 0; i < 16 * 1024; i++)
		p[i] = (uint32_t)i * 7;
	ASSERT_OK(bind1(vm, GVM_BIND_MAP, 0, 0x100000, 16 * K4, bo, 0));
	ASSERT_OK(bind1(vm2, GVM_BIND_MAP, 0, 0x200000, 16 * K4, bo, 0));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);

	op.prefetch_mem = GVM_MEM_SYSTEM;
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_SYSTEM);
	for (int i = 0; i < 16 * 1024; i++)	/* the view followed */
		ASSERT_EQ(p[i], (uint32_t)i * 7);
	/* This VM was rewritten, the other one zapped until its next exec */
	for (uint64_t off = 0; off < 16 * K4; off += K4)
		ASSERT_EQ(xlate(vm, 0x100000 + off, &pte), bo_addr(bo, off));
	ASSERT_FALSE(pte & GVM_PTF_DEVMEM);
	ASSERT_EQ(xlate(vm2, 0x200000, &pte), 0);

	op.prefetch_mem = GVM_MEM_VRAM;
	ASSERT_OK(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0));
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);
	ASSERT_EQ(xlate(vm, 0x100000, &pte), bo_addr(bo, 0));
	ASSERT_TRUE(pte & GVM_PTF_DEVMEM);
	p[5] = 1234;			/* writes land in VRAM now */
	ASSERT_EQ(*(uint32_t *)((uint8_t *)testdev_of(dev)->vram +
				(bo_addr(bo, 0) - (1ull << 40)) + 20), 1234);

	/* A placement the BO does not allow: -EINVAL, nothing moves */
	gvm_bo_put(bo);
	ASSERT_OK(gvm_bo_create(dev, 16 * K4, GVM_MEM_VRAM, NULL, &bo));
	ASSERT_OK(bind1(vm, GVM_BIND_MAP, 0, 0x100000, 16 * K4, bo, 0));
	op.prefetch_mem = GVM_MEM_SYSTEM;
	ASSERT_EQ(gvm_vm_bind(vm, NULL, &op, 1, NULL, 0), -EINVAL);
	ASSERT_EQ(gvm_bo_region(bo), GVM_MEM_VRAM);
	ASSERT_EQ(xlate(vm, 0x100000, NULL), bo_addr(bo, 0));
	gvm_bo_put(bo);
	vm_done(vm);
	vm_done(vm2);
	all_done();
}

TEST(device_links_and_owner_groups)
{
	struct gvm_device *a = testdev_create(0, 48), *b = testdev_create(0, 48);
	struct gvm_device *c = testdev_create(0, 48), *d = testdev_create(0, 48);
	struct gvm_link_props props = { .bandwidth = 1ull << 30 };
	struct gvm_device_info ia, ic, id;

	ASSERT_EQ(gvm_device_link(a, a, NULL), -EINVAL);
	ASSERT_EQ(gvm_device_link(NULL, a, NULL), -EINVAL);
	ASSERT_OK(gvm_device_link(a, b, &props));
	ASSERT_EQ(gvm_device_link(b, a, NULL), -EEXIST);
	ASSERT_OK(gvm_device_link(b, c, NULL));
	ASSERT_TRUE(gvm_device_linked(a, c));	/* transitively */
	ASSERT_TRUE(gvm_device_linked(c, a));
	ASSERT_TRUE(gvm_device_linked(d, d));
	ASSERT_FALSE(gvm_device_linked(a, d));
	ASSERT_OK(gvm_device_query(a, &ia));
	ASSERT_OK(gvm_device_query(c, &ic));
	ASSERT_OK(gvm_device_query(d, &id));
	ASSERT_EQ(ia.owner, ic.owner);
	ASSERT_EQ(ia.owner, ia.id);		/* a was created first */
	ASSERT_EQ(id.owner, id.id);
	ASSERT_EQ(ia.nr_links, 1);
	ASSERT_EQ(id.nr_links, 0);
	/* A device that goes takes its links with it. */
	gvm_device_put(b);
	ASSERT_FALSE(gvm_device_linked(a, c));
	ASSERT_OK(gvm_device_query(a, &ia));
	ASSERT_EQ(ia.nr_links, 0);
	gvm_device_put(a);
	gvm_device_put(c);
	gvm_device_put(d);
}
