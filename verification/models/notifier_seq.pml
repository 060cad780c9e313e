/* SPDX-License-Identifier: MIT */
/*
 * Model 1: the notifier sequence protocol (read_begin / fetch / recheck
 * under notifier_lock against invalidate_start).
 *
 * The C it models:
 *  - src/mm/notifier.c: invalidate() makes the mm sequence
 *    (subs->invalidate_seq) odd, counts itself in subs->active, calls
 *    every hit notifier's invalidate_start with cur_seq (pass 1), then the
 *    invalidate_finish of those that deferred (pass 2), then, for
 *    gvm__notifier_invalidate_change (a migration), the change itself, and
 *    last, when the last running invalidation ends, makes the sequence even
 *    again and wakes the waiters.  gvm__notifier_read_begin() takes
 *    subs->lock, loads the notifier's sequence and waits while it equals
 *    the (odd) mm sequence.  gvm__notifier_read_retry() compares.
 *  - src/vm/userptr.c: inval_start() takes vm->notifier_lock, calls
 *    gvm__notifier_set_seq(n, cur_seq), and if the userptr is live zaps its
 *    PTEs (and submits / waits for the TLB invalidation: abstracted here as
 *    part of the zap; model 2 models the TLB).  fetch() calls read_begin
 *    then gvm__mm_fetch().  gvm__userptr_stale_locked() and
 *    gvm__userptr_commit() are the recheck and the "becomes live" step.
 *  - src/vm/pt_update.c: gvm__vm_update_commit(): under notifier_lock,
 *    (1) recheck every written userptr (STALE_RETRY: abort with -EAGAIN;
 *    STALE_ZAP: go on), (2) userptr_commit: live = true, and if stale
 *    (ZAP mode) its staged PTEs are zapped (gvm__pt_update_zap) and so are
 *    the committed ones, (3) commit the PTEs: a stale userptr's are
 *    written zapped, never valid (issue 15).
 *
 * The model: one userptr over one CPU page; the page that backs it is
 * `cpu_page` (1, 2, 3: each change installs a new one).  One user process
 * inserts its notifier (gvm__notifier_insert: straight into the tree, or
 * deferred to the end of the running invalidations, starting at the value
 * initial_seq_locked() gives), then binds and repins twice (exec's gvm__userptr_revalidate), choosing
 * RETRY or ZAP mode for each commit.  Two invalidations run concurrently
 * with it and with each other; each is an after-the-fact change (UNMAP,
 * REMAP, FORK: the page is replaced before the invalidation starts) or a
 * migration (invalidate_change: the page is replaced after pass 2, with
 * the sequence still odd).
 *
 * Safety (the monitor and the asserts):
 *  S1 "after an invalidation returns, no committed PTE maps the page it
 *     retired": dead[] marks retired pages once their invalidation ended;
 *     the PTE must never hold a dead page (checked in every state).
 *  S2 for a migration, at the moment of the change no PTE maps the old
 *     page (no device access is left to the range).
 *  S3 "a stale fetch never becomes a committed mapping past its
 *     invalidation" is S1 seen from the user's side.
 *
 * Mutants (spin -D...):
 *  MUTANT_NO_RECHECK       the commit does not recheck the sequence
 *  MUTANT_RECHECK_UNLOCKED the recheck runs before notifier_lock is taken
 *  MUTANT_NO_WAIT          read_begin does not wait for a running
 *                          invalidation
 *  MUTANT_INSERT_IDLE_SEQ  an insert during an invalidation starts at the
 *                          idle value (seq - 1) instead of the running odd
 *                          sequence (initial_seq_locked), so its
 *                          read_begin does not wait for an invalidation
 *                          that cannot see it (deferred insert)
 *  MUTANT_PUBLISH_THEN_ZAP the old STALE_ZAP order (finding 2, fixed): the
 *                          pt commit publishes the stale PTE, then
 *                          userptr_commit zaps it, in the same section;
 *                          the device walks without the lock, so the
 *                          monitor (which looks inside notifier_lock too)
 *                          sees the dead page mapped
 */

#define NPAGES 4
#define INVALS 2
#define BINDS 3

byte subs_seq = 2;	/* subs->invalidate_seq: odd while invalidating */
byte nactive = 0;	/* subs->active */
byte n_seq = 0;		/* n->invalidate_seq, set at insert */
bool in_tree = false;	/* n in the mm's tree (walkers see it) */
bool deferred = false;	/* insert queued on subs->deferred */
bool nlock = false;	/* vm->notifier_lock */
byte cpu_page = 1;	/* what backs the CPU range now */
byte next_page = 2;
byte pte = 0;		/* the committed device PTE (0: none / zapped) */
bool live = false;	/* u->live, under notifier_lock */
bool dead[NPAGES];	/* page retired and its invalidation returned */

inline lock() { atomic { !nlock -> nlock = true } }
inline unlock() { nlock = false }

/* gvm__notifier_read_begin: under subs->lock, wait while n is invalidated */
inline read_begin(s)
{
#ifdef MUTANT_NO_WAIT
	s = n_seq;
#else
	atomic { s = n_seq; (s != subs_seq) }	/* cond_wait releases */
#endif
}

/* invalidate() + inval_start(); kind 0: after the fact, 1: migration */
proctype invalidation(bit kind)
{
	byte cur, old;

	if
	:: kind == 0 ->
		atomic { old = cpu_page; cpu_page = next_page; next_page++ }
	:: else -> skip
	fi;
	bool hit;

	/* subs->lock: nactive++, first hit; odd if a hit or a change */
	atomic {
		nactive++;
		hit = in_tree;
		if
		:: hit || kind == 1 -> subs_seq = subs_seq | 1
		:: else -> skip
		fi;
		cur = subs_seq
	};
	/* pass 1: inval_start (the tree cannot change while odd) */
	if
	:: hit ->
		lock();
		n_seq = cur;			/* gvm__notifier_set_seq */
		if
		:: live -> pte = 0		/* zap_locked (+ TLB) */
		:: else -> skip
		fi;
		unlock()
	:: else -> skip
	fi;
	/* pass 2: nothing left in this model (the TLB is model 2's) */
	if
	:: kind == 1 ->
		/* the change: no device access may be left to the page */
		atomic {
			old = cpu_page;
			assert(pte != old);		/* S2 */
			cpu_page = next_page; next_page++
		}
	:: else -> skip
	fi;
	/* end: the last one makes the sequence even and wakes readers */
	atomic {
		nactive--;
		if
		:: nactive == 0 && (subs_seq & 1) ->
			subs_seq++;
			if			/* apply_deferred_locked */
			:: deferred -> deferred = false; in_tree = true
			:: else -> skip
			fi
		:: else -> skip
		fi;
		dead[old] = true
	}
}

/* fetch() + gvm__vm_update_commit() (+ revalidate's retry loop) */
active proctype user()
{
	byte s, f, binds = 0;
	bool stale;

	/* gvm__notifier_insert (attach), under subs->lock */
	atomic {
		if
		:: nactive > 0 && (subs_seq & 1) ->
			deferred = true;	/* walkers are in the tree */
#ifdef MUTANT_INSERT_IDLE_SEQ
			n_seq = subs_seq - 1
#else
			n_seq = subs_seq
#endif
		:: else ->
			in_tree = true;
#ifdef MUTANT_INSERT_IDLE_SEQ
			n_seq = subs_seq - 1
#else
			if		/* initial_seq_locked */
			:: nactive > 0 -> subs_seq = subs_seq | 1;
				n_seq = subs_seq
			:: else -> n_seq = subs_seq - 1
			fi
#endif
		fi
	};

	do
	:: binds == BINDS -> break
	:: else ->
again:
		read_begin(s);
		f = cpu_page;				/* gvm__mm_fetch */
#ifdef MUTANT_RECHECK_UNLOCKED
		stale = (n_seq != s);
		lock();
#else
		lock();
		stale = (n_seq != s);			/* stale_locked */
#endif
#ifdef MUTANT_NO_RECHECK
		stale = false;
#endif
		if
		:: stale ->
			/* STALE_RETRY: abort, -EAGAIN, refetch */
			unlock();
			goto again
		:: stale ->
			/*
			 * STALE_ZAP: gvm__userptr_commit first (live, the
			 * staged PTE zapped), then the pt commit writes it
			 * zapped: the stale page is never in the PTE.
			 */
#ifdef MUTANT_PUBLISH_THEN_ZAP
			pte = f; live = true;
			pte = 0;
#else
			live = true; pte = 0;
#endif
			unlock()
		:: !stale ->
			pte = f; live = true;		/* commit, live */
			unlock()
		fi;
		binds++
	od
}

/*
 * S1 in every reachable state, inside notifier_lock too: the device walks
 * the tables without it, so a PTE published for an instant inside the
 * section is as visible as one left after it (docs/verification.md,
 * finding 2; -DMUTANT_PUBLISH_THEN_ZAP).
 */
active proctype monitor()
{
end_mon:
	atomic { (pte != 0 && dead[pte]) -> assert(false) }
}

init
{
	atomic {
		run invalidation(0);
		if
		:: run invalidation(0)
		:: run invalidation(1)
		fi
	}
}
