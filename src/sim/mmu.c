// SPDX-License-Identifier: MIT
/*
 * Simulated GPU: the MMU (page-table walker) and the per-engine TLB.
 *
 * WALK.  gvm__sim_walk() translates one GPU VA of a VM the way the hardware
 * would: from the root table given to ops->vm_attach, one level at a time,
 * reading each entry from the VRAM arena with an 8-byte acquire load (the
 * CPU rewrites tables while engines walk them; acquire on a directory
 * entry orders the reads of the table it points to after the CPU's writes
 * of that table, which gvm publishes with a release store or a TLB
 * invalidation).  Entries are decoded with the format helpers
 * (src/pt/pt_fmt.h), never by hand.  The leaf gives:
 *   - the page size: 4K, 2M (level 1) or 1G (level 2) leaves; a 4K PTE
 *     with the CONT hint is treated as one 64K page (base = this PTE's
 *     address minus its index in the aligned run of 16), if the device
 *     supports 64K pages and the base is 64K aligned; a leaf of a size the
 *     device does not support is not valid;
 *   - the permissions (WRITE, ATOMIC, NULL) and the memory: DEVMEM
 *     addresses must lie inside VRAM (else the entry is not valid), and
 *     are turned into arena pointers; system addresses are host VAs of
 *     this process, used as they are (accessed under the guard, guard.c).
 * A walk that finds no valid leaf (or a table outside VRAM) returns
 * -ENOENT.  Invalid entries are never cached: gvm only invalidates the
 * TLB for entries that were in use, so a negative entry would go stale.
 *
 * TLB.  Per engine: a 4-entry fully associative level 0 (the last
 * translations used: streaming kernels alternate between 2 or 3 pages)
 * in front of a SIM_TLB_WAYS-way set-associative array of
 * cfg.tlb_entries entries.  An entry caches one page of any size; its set
 * is a hash of (page number, page size), so a lookup probes one set per
 * page size present in the TLB (4K, 64K, 2M, 1G).  Replacement is
 * round-robin.  Entries are tagged with the VM's id (unique in the
 * process, like an ASID), so jobs of different VMs share an engine
 * without flushes and a detached VM's entries can never hit again.
 *
 * INVALIDATION.  gvm__sim_tlb_inval() drops every entry of the VM that
 * overlaps the range, in both levels.  Every bind that replaces or removes
 * PTEs invalidates, on every engine, so the common case is a TLB that
 * holds nothing of that VM (an idle device, or engines running other
 * VMs).  The TLB therefore keeps occupancy counters (struct sim_tlb):
 * valid entries per bucket of VM ids (id % SIM_TLB_VM_BUCKETS) and in
 * total, updated wherever an entry is filled, overwritten or dropped.
 * A bucket at zero means no entry of any VM of that bucket is cached, so
 * the invalidation has nothing to drop and returns without scanning.
 * This is exact, not a heuristic: the counters are owned like the
 * entries they count (same owner, same moments), so they never lag; a
 * non-zero bucket (this VM, or another VM sharing the bucket) falls back
 * to a scan, of the slots in use only: a bitmap of the array's slots
 * that hold an entry (valid[], set and cleared with the entry), so that
 * a kernel that used a few pages costs a few checks, not 1024 (a 2 MiB
 * invalidation with one engine polling went from ~2 to ~0.5 µs,
 * tlb_inval_range).  The protocol (engine.c) is unchanged: an engine
 * still applies and acknowledges every request, it just applies it in
 * O(1) when there is nothing to drop.  gvm__sim_tlb_validate() recounts.
 *
 * Locking: none here.  The caller owns the TLB (the engine's thread while
 * it translates, else engine->lock; see engine.c).  Walks take no lock.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "pt/pt_fmt.h"
#include "sim/sim_internal.h"

/* Size classes: 0 = 4K, 1 = 64K, 2 = 2M, 3 = 1G. */
static const uint32_t class_lg2[4] = { 12, 16, 21, 30 };

static inline unsigned int lg2_class(uint32_t lg2)
{
	return lg2 == 12 ? 0 : lg2 == 16 ? 1 : lg2 == 21 ? 2 : 3;
}

int gvm__sim_tlb_init(struct sim_tlb *t, unsigned int entries)
{
	uint32_t sets = 1;

	while (sets * 2 * SIM_TLB_WAYS <= entries)
		sets *= 2;
	memset(t, 0, sizeof(*t));
	t->sets = gvm__calloc((size_t)sets * SIM_TLB_WAYS, sizeof(*t->sets));
	t->valid = gvm__calloc(((size_t)sets * SIM_TLB_WAYS + 63) / 64,
			       sizeof(*t->valid));
	if (!t->sets || !t->valid) {
		gvm__sim_tlb_fini(t);
		return -ENOMEM;
	}
	t->nr_sets = sets;
	return 0;
}

void gvm__sim_tlb_fini(struct sim_tlb *t)
{
	gvm__free(t->sets);
	gvm__free(t->valid);
	t->sets = NULL;
	t->valid = NULL;
}

static inline bool entry_hits(const struct sim_tlb_entry *e, uint64_t vm_id,
			      uint64_t va)
{
	return e->vm_id == vm_id && ((va - e->x.va) >> e->x.lg2) == 0;
}

static inline struct sim_tlb_entry *set_of(struct sim_tlb *t, uint64_t va,
					   uint32_t lg2)
{
	uint64_t pn = va >> lg2;
	uint64_t h = (pn ^ (pn >> 13) ^ ((uint64_t)lg2 << 4)) &
		     (t->nr_sets - 1);

	return &t->sets[h * SIM_TLB_WAYS];
}

/* Occupancy bookkeeping: an entry of @vm_id (0 = empty) comes or goes. */
static inline void count_add(struct sim_tlb *t, uint64_t vm_id)
{
	if (vm_id) {
		t->vm_count[vm_id % SIM_TLB_VM_BUCKETS]++;
		t->nr_valid++;
	}
}

static inline void count_del(struct sim_tlb *t, uint64_t vm_id)
{
	if (vm_id) {
		t->vm_count[vm_id % SIM_TLB_VM_BUCKETS]--;
		t->nr_valid--;
	}
}

static inline void l0_put(struct sim_tlb *t, const struct sim_tlb_entry *e)
{
	count_del(t, t->l0[t->l0_next].vm_id);
	t->l0[t->l0_next] = *e;
	count_add(t, e->vm_id);
	t->l0_next = (t->l0_next + 1) % SIM_TLB_L0;
}

bool gvm__sim_tlb_lookup(struct sim_tlb *t, uint64_t vm_id, uint64_t va,
			 struct sim_xlate *x)
{
	unsigned int i, c, w;

	for (i = 0; i < SIM_TLB_L0; i++) {
		if (entry_hits(&t->l0[i], vm_id, va)) {
			*x = t->l0[i].x;
			return true;
		}
	}
	for (c = 0; c < 4; c++) {
		struct sim_tlb_entry *s;

		if (!(t->size_mask & (1u << c)))
			continue;
		s = set_of(t, va, class_lg2[c]);
		for (w = 0; w < SIM_TLB_WAYS; w++) {
			if (s[w].x.lg2 == class_lg2[c] &&
			    entry_hits(&s[w], vm_id, va)) {
				*x = s[w].x;
				l0_put(t, &s[w]);
				return true;
			}
		}
	}
	return false;
}

void gvm__sim_tlb_insert(struct sim_tlb *t, uint64_t vm_id,
			 const struct sim_xlate *x)
{
	struct sim_tlb_entry *s = set_of(t, x->va, x->lg2);
	struct sim_tlb_entry ne = { .vm_id = vm_id, .x = *x };
	unsigned int w;
	size_t i;

	gvm_assert(vm_id != 0 && !(x->perm & SIM_P_SCRATCH));
	for (w = 0; w < SIM_TLB_WAYS; w++)
		if (!s[w].vm_id)
			break;
	if (w == SIM_TLB_WAYS)
		w = t->victim++ % SIM_TLB_WAYS;
	count_del(t, s[w].vm_id);
	s[w] = ne;
	count_add(t, vm_id);
	i = (size_t)(s + w - t->sets);
	t->valid[i / 64] |= 1ull << (i % 64);
	t->size_mask |= 1u << lg2_class(x->lg2);
	l0_put(t, &ne);
}

static inline bool entry_in(const struct sim_tlb_entry *e, uint64_t vm_id,
			    uint64_t start, uint64_t last, bool all)
{
	if (!e->vm_id || (vm_id && e->vm_id != vm_id))
		return false;
	if (all)
		return true;
	/* [e.va, e.va + size - 1] intersects [start, last] */
	return e->x.va <= last && start <= e->x.va + ((1ull << e->x.lg2) - 1);
}

void gvm__sim_tlb_inval(struct sim_tlb *t, uint64_t vm_id, uint64_t start,
			uint64_t size)
{
	bool all = size == 0 || start + size < start;
	uint64_t last = start + size - 1;
	size_t i, n = (size_t)t->nr_sets * SIM_TLB_WAYS;

	/* Nothing of this VM (or of any VM, for vm_id 0) is cached. */
	if (!(vm_id ? t->vm_count[vm_id % SIM_TLB_VM_BUCKETS] : t->nr_valid))
		return;
	for (i = 0; i < SIM_TLB_L0; i++) {
		if (entry_in(&t->l0[i], vm_id, start, last, all)) {
			count_del(t, t->l0[i].vm_id);
			t->l0[i].vm_id = 0;
		}
	}
	/* Only the slots in use: a TLB a kernel barely used is not scanned
	   whole (tlb_inval_range, docs/performance.md). */
	for (size_t w = 0; w < (n + 63) / 64; w++) {
		for (uint64_t bits = t->valid[w]; bits; bits &= bits - 1) {
			i = w * 64 + (size_t)__builtin_ctzll(bits);
			if (entry_in(&t->sets[i], vm_id, start, last, all)) {
				count_del(t, t->sets[i].vm_id);
				t->sets[i].vm_id = 0;
				t->valid[w] &= ~(1ull << (i % 64));
			}
		}
	}
	if (!t->nr_valid)
		t->size_mask = 0;
}

static int check_count(const struct sim_tlb *t, uint32_t *count,
		       const struct sim_tlb_entry *e)
{
	if (!e->vm_id)
		return 0;
	count[e->vm_id % SIM_TLB_VM_BUCKETS]++;
	return 1;
}

int gvm__sim_tlb_validate(const struct sim_tlb *t)
{
	uint32_t count[SIM_TLB_VM_BUCKETS] = { 0 };
	size_t i, n = (size_t)t->nr_sets * SIM_TLB_WAYS;
	uint32_t total = 0;
	int err = 0;

	for (i = 0; i < SIM_TLB_L0; i++)
		total += (uint32_t)check_count(t, count, &t->l0[i]);
	for (i = 0; i < n; i++) {
		total += (uint32_t)check_count(t, count, &t->sets[i]);
		if (!(t->valid[i / 64] >> (i % 64) & 1) != !t->sets[i].vm_id) {
			fprintf(stderr, "sim tlb: slot %zu valid bit %d, vm %llu\n",
				i, (int)(t->valid[i / 64] >> (i % 64) & 1),
				(unsigned long long)t->sets[i].vm_id);
			err = -EUCLEAN;
		}
	}
	for (i = 0; i < SIM_TLB_VM_BUCKETS; i++) {
		if (count[i] != t->vm_count[i]) {
			fprintf(stderr, "sim tlb: bucket %zu counts %u, holds "
				"%u entries\n", i, t->vm_count[i], count[i]);
			err = -EUCLEAN;
		}
	}
	if (total != t->nr_valid) {
		fprintf(stderr, "sim tlb: nr_valid %u, %u valid entries\n",
			t->nr_valid, total);
		err = -EUCLEAN;
	}
	return err;
}

/* Is a page of 2^@lg2 bytes supported by the device? */
static inline bool size_ok(const struct sim_dev *sd, uint32_t lg2)
{
	return sd->cfg.page_sizes & (1ull << lg2);
}

int gvm__sim_walk(struct sim_dev *sd, const struct sim_vm *simvm, uint64_t va,
		  struct sim_xlate *x)
{
	unsigned int level = simvm->levels - 1;
	uint64_t table = simvm->root;
	uint64_t pte, addr;
	uint32_t lg2;

	if (gvm__ptf_shift(simvm->levels) < 64 &&
	    va >> gvm__ptf_shift(simvm->levels))
		return -ENOENT;
	for (;;) {
		const uint64_t *t = (const uint64_t *)gvm__sim_vram_ptr(
			sd, table, (uint64_t)GVM_PTF_ENTRIES * 8);

		if (!t)
			return -ENOENT;
		pte = __atomic_load_n(&t[gvm__ptf_index(va, level)],
				      __ATOMIC_ACQUIRE);
		if (!gvm__ptf_is_valid(pte))
			return -ENOENT;
		if (!gvm__ptf_is_dir(pte, level))
			break;
		table = gvm__ptf_addr(pte);
		level--;
	}

	lg2 = gvm__ptf_shift(level);
	if (!gvm__ptf_can_leaf(level) || !size_ok(sd, lg2))
		return -ENOENT;
	addr = gvm__ptf_addr(pte);
	if (level == 0 && gvm__ptf_has_cont(pte) && size_ok(sd, 16)) {
		uint64_t base = addr - (((va >> GVM_PTF_PAGE_LG2) &
					 (GVM_PTF_CONT_ENTRIES - 1))
					<< GVM_PTF_PAGE_LG2);

		if (!(base & 0xffff)) {
			lg2 = 16;
			addr = base;
		}
	}
	x->va = va & ~((1ull << lg2) - 1);
	x->lg2 = lg2;
	x->perm = 0;
	if (pte & GVM_PTF_WRITE)
		x->perm |= SIM_P_WRITE;
	if (pte & GVM_PTF_ATOMIC)
		x->perm |= SIM_P_ATOMIC;
	if (gvm__ptf_is_null(pte)) {
		x->perm |= SIM_P_NULL;
		x->host = NULL;
	} else if (pte & GVM_PTF_DEVMEM) {
		x->host = gvm__sim_vram_ptr(sd, addr, 1ull << lg2);
		if (!x->host)
			return -ENOENT;
	} else {
		x->perm |= SIM_P_SYS;
		x->host = (uint8_t *)(uintptr_t)addr;
	}
	return 0;
}
