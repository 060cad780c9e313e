// SPDX-License-Identifier: MIT
/*
 * The debug-build lock checker (core/lockrank.h): lock order, and the
 * fence-signalling critical sections, whose rules (no vm->lock, no heap
 * allocation) bind jobs rely on.  A violation aborts, so each bad case
 * runs in a child process that must die; the good cases run in place.
 */
#include <stdlib.h>

#include "harness.h"
#include "core/alloc.h"
#include "core/lockrank.h"
#include "core/sync.h"

static struct gvm_mutex vm_lock, pt_lock, leaf;

static void init_locks(void)
{
	gvm__mutex_init(&vm_lock, "test.vm_lock", GVM_RANK_VM);
	gvm__mutex_init(&pt_lock, "test.pt_lock", GVM_RANK_PT);
	gvm__mutex_init(&leaf, "test.leaf", GVM_RANK_LEAF);
}

static bool checked(void)
{
	if (GVM_DEBUG < 1 || UNDER_TSAN) {
		/* release: compiled away; TSan: no fork() with threads */
		printf("SKIP (needs a debug build without TSan)\n");
		return false;
	}
	init_locks();
	return true;
}

static void order_violation(void)
{
	gvm__mutex_lock(&pt_lock);
	gvm__mutex_lock(&vm_lock);
}

static void vm_lock_while_signalling(void)
{
	gvm__signalling_begin();
	gvm__mutex_lock(&vm_lock);
}

static void alloc_while_signalling(void)
{
	gvm__signalling_begin();
	gvm__mutex_lock(&pt_lock);
	free(gvm__malloc(16));
}

static void end_without_begin(void)
{
	gvm__signalling_end();
}

TEST(order_violation_aborts)
{
	if (!checked())
		return;
	gvm_test_expect_crash(order_violation);
}

TEST(signalling_section_rejects_vm_lock)
{
	if (!checked())
		return;
	gvm_test_expect_crash(vm_lock_while_signalling);
}

TEST(signalling_section_rejects_allocation)
{
	if (!checked())
		return;
	gvm_test_expect_crash(alloc_while_signalling);
	gvm_test_expect_crash(end_without_begin);
}

TEST(signalling_section_allows_the_rest)
{
	void *p;

	if (!checked())
		return;
	/* pt_lock and leaf locks may be taken, sections nest */
	gvm__signalling_begin();
	gvm__signalling_begin();
	gvm__mutex_lock(&pt_lock);
	gvm__mutex_lock(&leaf);
	gvm__mutex_unlock(&leaf);
	gvm__mutex_unlock(&pt_lock);
	gvm__signalling_end();
	gvm__signalling_end();
	/* outside: vm->lock and allocation again */
	gvm__mutex_lock(&vm_lock);
	p = gvm__malloc(16);
	ASSERT_TRUE(p != NULL);
	gvm__free(p);
	gvm__mutex_unlock(&vm_lock);
}

/* ---- gvm__might_fault(): touching application memory ---------------- */

static struct gvm_mutex mm_lock;

static void fault_under_mm_lock(void)
{
	gvm__mutex_init(&mm_lock, "test.mm_lock", GVM_RANK_MM);
	gvm__mutex_lock(&mm_lock);
	gvm__might_fault();
}

static void fault_under_leaf(void)
{
	gvm__mutex_lock(&leaf);
	gvm__might_fault();
}

static void fault_under_trylocked_pt_lock(void)
{
	if (!gvm__mutex_trylock(&pt_lock))
		return;
	gvm__might_fault();
}

static void fault_while_signalling(void)
{
	gvm__signalling_begin();
	gvm__might_fault();
}

static void put_out_under_pt_lock(void)
{
	int x = 0;

	gvm__mutex_lock(&pt_lock);
	gvm__put_out(&x, 1);
}

TEST(might_fault_rejects_fault_back_locks)
{
	if (!checked())
		return;
	gvm_test_expect_crash(fault_under_mm_lock);
	gvm_test_expect_crash(fault_under_leaf);
	gvm_test_expect_crash(fault_under_trylocked_pt_lock);
	gvm_test_expect_crash(fault_while_signalling);
	gvm_test_expect_crash(put_out_under_pt_lock);
}

TEST(might_fault_allows_vm_lock)
{
	int x = 0;

	if (!checked())
		return;
	gvm__might_fault();
	gvm__mutex_lock(&vm_lock);
	gvm__might_fault();
	gvm__put_out(&x, 7);
	gvm__mutex_unlock(&vm_lock);
	ASSERT_EQ(x, 7);
}
