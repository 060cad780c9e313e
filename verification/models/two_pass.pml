/* SPDX-License-Identifier: MIT */
/*
 * Model 2: two-pass invalidation across N devices.
 *
 * The C it models:
 *  - src/mm/notifier.c invalidate(): under subs->lock, active++ and the mm
 *    sequence made odd (cur_seq); pass 1 calls ops->invalidate_start of
 *    EVERY hit notifier, in tree order, linking the finish structures
 *    returned; pass 2 calls invalidate_finish for each, in the same order;
 *    then (invalidate_change, a migration) the change; then active--, and
 *    the last one to end makes the sequence even and broadcasts.
 *    gvm__notifier_read_begin() waits while n's sequence is the odd mm
 *    sequence.
 *  - src/vm/userptr.c inval_start(): under the VM's notifier_lock:
 *    set_seq; if live: zap_locked() (gvm__pt_zap, which notes a TLB range
 *    only for entries that were valid, then gvm__vm_tlb_submit, which
 *    returns NULL for an empty range); if there is a TLB fence and
 *    gvm__notifier_finish_claim() succeeds, keep the fence for pass 2;
 *    otherwise ("finish busy") wait for the fence inline: both passes in
 *    pass 1.  inval_finish(): wait for the fence, then
 *    gvm__notifier_finish_release() under notifier_lock.  (The path where
 *    the zap first waits for preempt or job fences, snapshot_waits, is not
 *    modelled: fault-mode VMs and after-the-fact events never take it.)
 *  - the simulated device (src/sim/mmu.c, engine.c): each engine walks the
 *    page table without a lock and caches the translation in its TLB; a
 *    TLB invalidation request is applied by the engine between
 *    translations and then its fence signals, in submission order.
 *
 * The model: N = 3 devices, one VM each (own notifier_lock, page table,
 * TLB), each with a live userptr mapping CPU page 1 (PTE and maybe TLB).
 * Two invalidations of that page run concurrently: an after-the-fact
 * event that leaves the page in place (FORK) and a migration
 * (invalidate_change) that replaces it after pass 2.  A reader on device
 * 0 calls read_begin meanwhile (a repin or a fault).
 *
 * Safety:
 *  P1 when an invalidation has finished pass 2, no device reaches page 1:
 *     neither a PTE nor a TLB entry maps it (for the migration: at the
 *     moment of the change);
 *  P2 every notifier's pass 1 (TLB invalidation submitted) comes before
 *     any pass-2 wait of the same invalidation (the N devices' latencies
 *     overlap);
 *  P3 read_begin never returns while an invalidation that hit the
 *     notifier is running, unless it returns a sequence that recheck will
 *     find moved.
 *
 * Variants:
 *  C_AS_IS              the C before finding 1 was fixed: the zap of a
 *                       second, concurrent invalidation finds the PTEs
 *                       already zapped by the first, submits no TLB
 *                       invalidation and returns at once, while the
 *                       first's TLB invalidation is still in flight: P1
 *                       FAILS (docs/verification.md).  The default is the
 *                       C now (userptr.c zap_span_locked): a live
 *                       userptr's zap always submits a TLB invalidation
 *                       of its range.
 *  MUTANT_BUSY_NO_WAIT  finish busy: return without waiting inline
 *  MUTANT_ONE_PASS      wait for each notifier right after its pass 1
 *  MUTANT_NO_WAIT       read_begin does not wait
 */

#ifndef N
#define N 3			/* devices (-DN=2 for two) */
#endif

byte subs_seq = 2;
byte nactive = 0;
byte n_seq[N];		/* each notifier's sequence (inserted idle: 1) */
bool nlock[N];		/* each VM's notifier_lock */
bool live[N];
byte pte[N];		/* page mapped by the PTE, 0 none */
byte tlb[N];		/* page cached by the engine's TLB, 0 none */
byte tlb_sub[N];	/* TLB invalidations submitted */
byte tlb_done[N];	/* ... and applied (fences signalled, in order) */
bool in_use[N];		/* u->finish.in_use, under nlock[d] */
byte fin_fence[N];	/* u->tlb_fence of the holder of finish */
bool hit_running[N];	/* ghost: a running invalidation hit notifier d */
byte cpu_page = 1;

inline lock(d) { atomic { !nlock[d] -> nlock[d] = true } }
inline unlock(d) { nlock[d] = false }

/* P1: nothing on any device reaches page 1 */
inline check_unreachable()
{
	atomic {
		k = 0;
		do
		:: k < N -> assert(pte[k] != 1 && tlb[k] != 1); k++
		:: else -> k = 0; break
		od
	}
}

proctype invalidation(bit mig)
{
	byte cur, d, t, k, p1 = 0;
	bool deferred[N];
	byte fence[N];

	atomic {
		nactive++; subs_seq = subs_seq | 1; cur = subs_seq

	};
	d = 0;
	do
	:: d == N -> break
	:: d < N ->
		/* pass 1: inval_start(n_d) */
		lock(d);
		n_seq[d] = cur;			/* gvm__notifier_set_seq */
		hit_running[d] = true;
		t = 0;
		if
		:: live[d] ->
			/* zap_locked: gvm__pt_zap + gvm__vm_tlb_submit */
			if
			:: pte[d] != 0 ->
				pte[d] = 0;
				tlb_sub[d]++; t = tlb_sub[d]
			:: else ->
#ifdef C_AS_IS
				t = 0		/* empty range: no fence */
#else
				tlb_sub[d]++; t = tlb_sub[d]
#endif
			fi;
			if
			:: t != 0 && !in_use[d] ->
				/* gvm__notifier_finish_claim */
				in_use[d] = true; fin_fence[d] = t;
				deferred[d] = true;
				unlock(d)
			:: else ->
				unlock(d);
				/* busy (or nothing): both passes here */
#ifndef MUTANT_BUSY_NO_WAIT
				(tlb_done[d] >= t)
#endif
			fi
		:: else ->
			unlock(d)
		fi;
		p1++;
#ifdef MUTANT_ONE_PASS
		if
		:: deferred[d] ->
			assert(p1 == N);		/* P2 */
			(tlb_done[d] >= fin_fence[d]);
			lock(d); in_use[d] = false; deferred[d] = false;
			unlock(d)
		:: else -> skip
		fi;
#endif
		d++
	od;
	/* pass 2: inval_finish, same order */
	d = 0;
	do
	:: d == N -> break
	:: d < N ->
		if
		:: deferred[d] ->
			assert(p1 == N);		/* P2 */
			fence[d] = fin_fence[d];
			(tlb_done[d] >= fence[d]);
			lock(d); in_use[d] = false; unlock(d)
		:: else -> skip
		fi;
		d++
	od;
	check_unreachable();				/* P1 */
	if
	:: mig -> atomic { check_unreachable(); cpu_page = 2 }
	:: else -> skip
	fi;
	atomic {
		nactive--;
		if
		:: nactive == 0 && (subs_seq & 1) ->
			subs_seq++;
			k = 0;
			do
			:: k < N -> hit_running[k] = false; k++
			:: else -> k = 0; break
			od
		:: else -> skip
		fi
	}
}

/* each device's engine: walks (fills its TLB) and applies invalidations */
proctype engine(byte d)
{
end_eng:
	do
	:: atomic { pte[d] != 0 && tlb[d] != pte[d] -> tlb[d] = pte[d] }
	:: atomic { tlb_done[d] < tlb_sub[d] -> tlb[d] = 0; tlb_done[d]++ }
	od
}

/* a repin or fault on device 0: gvm__notifier_read_begin (P3) */
active proctype reader()
{
	byte s;
#ifdef MUTANT_NO_WAIT
	atomic {
		s = n_seq[0];
		assert(!(hit_running[0] && s == subs_seq))	/* P3 */
	}
#else
	atomic {
		s = n_seq[0];
		(s != subs_seq);
		assert(!(hit_running[0] && s == subs_seq))	/* P3 */
	}
#endif
}

init
{
	byte d = 0;

	atomic {
		do
		:: d < N ->
			n_seq[d] = 1; live[d] = true; pte[d] = 1;
			if
			:: tlb[d] = 1
			:: skip
			fi;
			run engine(d);
			d++
		:: else -> break
		od;
		run invalidation(0);
		run invalidation(1)
	}
}
