/* SPDX-License-Identifier: MIT */
/*
 * Model 4: staging vs commit of a page-table update with a concurrent zap
 * (seed 000's race).
 *
 * The C it models:
 *  - src/pt/pt.c, STAGING and ZAP DURING PREPARE:
 *    gvm__pt_update_prepare_reserved() runs under vm->pt_lock only (it
 *    allocates) and writes nothing the device walks: for each connected
 *    table it records, reading each entry once atomically, the old
 *    entries (old_e) and the new ones (new_e), and whether the table's
 *    span lies inside the update's runs R ("owned").
 *    gvm__pt_update_commit() (under pt_lock and notifier_lock) writes an
 *    owned entry unconditionally, and a not-owned one only if it still
 *    holds old_e (a zap since prepare wins outside R).  gvm__pt_zap()
 *    (zap_table) turns valid leaves of the committed view into zapped ones
 *    under notifier_lock.
 *  - src/vm/pt_update.c gvm__vm_update_commit(): under notifier_lock,
 *    recheck the written userptrs' sequences (RETRY: abort, -EAGAIN;
 *    ZAP: go on), then gvm__userptr_commit (live; a stale one's staged
 *    entries are zapped, gvm__pt_update_zap, and its committed ones), then
 *    gvm__pt_update_commit, which writes a stale userptr's entry zapped.
 *  - src/vm/userptr.c fetch() (read_begin, gvm__mm_fetch) and inval_start
 *    (set_seq, zap if live), src/mm/notifier.c read_begin / invalidate.
 *
 * The model: one table with two entries.  Entry A lies inside the
 * update's segment (owned): the bind maps userptr U there.  Entry B is
 * outside it but in the same record (a 64 KiB-group fix-up of a
 * neighbour): it maps userptr V, live, CPU page 5, and the update stages
 * it with its hint cleared (new_e = the snapshot without the hint, 15
 * here; 5 and 15 both map page 5).
 * Both userptrs are in the same mm.  Concurrently, U's CPU page 1 is
 * replaced (page 2) and invalidated, and V's page 5 is replaced (page 6)
 * and invalidated (after-the-fact events; the TLB is model 2's).
 *
 * Safety: "after an invalidation returns, no committed PTE maps the old
 * page": once U's (V's) invalidation has returned, entry A (B) never maps
 * page 1 (5), checked in every state, inside notifier_lock too (the
 * device walks the tables without it).  The binder commits a stale U in
 * RETRY or in ZAP mode (bind jobs, inline binds), chosen at each commit.
 *
 * Mutants:
 *  MUTANT_NO_STAGING   seed 000's race: prepare writes the committed
 *                      entries directly (no staging): a zap of V between
 *                      prepare's read of B and its write is undone
 *  MUTANT_UNCOND       commit writes not-owned entries unconditionally
 *                      (drops the "C[i] != old_e: keep" rule)
 *  MUTANT_NO_RECHECK   commit does not recheck U's sequence
 *  MUTANT_PUBLISH_THEN_ZAP  ZAP mode in the old order (issue 15): the
 *                      commit writes U's stale entry, then userptr_commit
 *                      zaps it, in the same notifier_lock section
 * ONLY_V (with a mutant) runs V's invalidation only, so the counterexample
 * is the neighbour's resurrected mapping rather than U's stale one.
 */

byte subs_seq = 2;
byte nactive = 0;
byte seqU = 1, seqV = 1;	/* the notifiers' sequences */
bool nlock = false;		/* vm->notifier_lock */
bool ptlock = false;		/* vm->pt_lock */
bool liveU = false, liveV = true;
byte A = 0, B = 5;		/* committed entries (page, 0 = none/zapped) */
byte cpuU = 1, cpuV = 5;
bool deadU = false, deadV = false;	/* page 1 / 5's invalidation returned */

inline lock() { atomic { !nlock -> nlock = true } }
inline unlock() { nlock = false }

/* invalidate() + inval_start() of one userptr: kind 0 = U, 1 = V */
proctype invalidation(bit which)
{
	byte cur;

	if
	:: which == 0 -> cpuU = 2
	:: else -> cpuV = 6
	fi;
	atomic { nactive++; subs_seq = subs_seq | 1; cur = subs_seq };
	lock();
	if
	:: which == 0 ->
		seqU = cur;
		if :: liveU -> A = 0 :: else -> skip fi
	:: else ->
		seqV = cur;
		if :: liveV -> B = 0 :: else -> skip fi
	fi;
	unlock();
	atomic {
		nactive--;
		if
		:: nactive == 0 && (subs_seq & 1) -> subs_seq++
		:: else -> skip
		fi;
		if :: which == 0 -> deadU = true :: else -> deadV = true fi
	}
}

/* a bind of U at A: fetch, prepare, commit (gvm__vm_update_run) */
active proctype binder()
{
	byte s, f, oldB, newA, newB;
	bool stale;
again:
	atomic { s = seqU; (s != subs_seq) };		/* read_begin */
	f = cpuU;					/* gvm__mm_fetch */
	atomic { !ptlock -> ptlock = true };
	/*
	 * prepare: A owned (the new page); B not owned: its 64 KiB hint is
	 * cleared, which in the model is page + 10 (still V's page 5)
	 */
	oldB = B;					/* one atomic read */
	newA = f;
	if
	:: oldB != 0 -> newB = oldB + 10
	:: else -> newB = 0
	fi;
#ifdef MUTANT_NO_STAGING
	A = newA;					/* straight into the */
	B = newB;					/* committed tables */
#endif
	lock();
	stale = (seqU != s);
#ifdef MUTANT_NO_RECHECK
	stale = false;
#endif
	if
	:: stale ->
		/* ZAP: userptr_commit before the commit zaps U's staged
		   entry (gvm__pt_update_zap) and its committed one */
#ifdef MUTANT_PUBLISH_THEN_ZAP
		A = newA;
		A = 0;
#else
		newA = 0;
		A = 0;
		A = newA;
#endif
		if
		:: B == newB -> skip
		:: B != newB && B == oldB -> B = newB
		:: B != newB && B != oldB -> skip
		fi;
		liveU = true;
		unlock();
		ptlock = false
	:: stale ->
		/* abort, -EAGAIN, retry (gvm__pt_update_abort) */
#ifdef MUTANT_NO_STAGING
		A = 0;
#endif
		unlock();
		ptlock = false;
		goto again
	:: !stale ->
		A = newA;				/* owned */
#ifdef MUTANT_UNCOND
		B = newB;
#else
		if
		:: B == newB -> skip			/* already as staged */
		:: B != newB && B == oldB -> B = newB	/* unchanged since */
		:: B != newB && B != oldB -> skip	/* zapped: keep */
		fi;
#endif
		liveU = true;				/* userptr_commit */
		unlock();
		ptlock = false
	fi
}

active proctype monitor()
{
end_mon:
	atomic {
		((deadU && A == 1) || (deadV && (B == 5 || B == 15))) ->
			assert(false)
	}
}

init
{
	atomic {
#ifndef ONLY_V
		run invalidation(0);
#endif
		run invalidation(1)
	}
}
