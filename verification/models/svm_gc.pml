/* SPDX-License-Identifier: MIT */
/*
 * Model 3: the SVM garbage collector vs a fault vs munmap vs an unbind vs
 * VM destruction: object lifetimes.
 *
 * The C it models:
 *  - src/vm/userptr.c chunk_inval_start(): the chunk's notifier callback,
 *    under vm->notifier_lock: for each range of the chunk the UNMAP hits,
 *    set its sequence and, if not listed, put it on vm->svm_gc; then
 *    gvm__fault_queue_collect(vm).  gvm__userptr_gc_pop(): under
 *    notifier_lock, take the first listed range, hand it out only if it
 *    is still in the range space (va.inserted; the caller holds
 *    vm->lock, which keeps it so).  gvm__userptr_detach(): under
 *    notifier_lock, unlink it from vm->svm_gc and from its chunk, then
 *    free it (no lock held).  gvm__userptr_chunks_fini():
 *    gvm__notifier_remove() waits for running invalidations.
 *  - src/vm/fault_queue.c (COLLECTING): gvm__fault_queue_collect() lists
 *    the VM on fq->collect under fq->lock unless vm->gc_closed;
 *    collect_one() unlists it and sets fq->collecting while it runs
 *    gvm__svm_collect() with fq->lock dropped; gvm__fault_queue_forget()
 *    sets gc_closed, unlists, and waits while fq->collecting is the VM.
 *  - src/vm/svm.c: gvm__svm_collect() takes vm->lock, runs collect() unless
 *    the VM is closed, then gvm__vm_reap() with no lock; collect() pops
 *    ranges and range_drop()s those still in the space (their VMAs go to
 *    the VM's dead list, freed by the reap); gvm__svm_fault() calls
 *    collect() first too, then refetches or drops the range.  split()
 *    makes new ranges, fresh objects nothing else holds: not modelled.
 *  - src/vm/vm.c gvm_vm_destroy(): closed = true; forget; under vm->lock
 *    the ranges leave; reap; free them; chunks_fini; the last reference
 *    frees the VM (a queued fault holds one; the collector's list none).
 *  - an unbind of the mirror (bind.c): under vm->lock the ranges leave
 *    the space; they are freed after it, with no lock held.
 *
 * One range R, one chunk, one VM.  Actors: two UNMAP callbacks, the
 * device's fault thread as collector, a fault serviced meanwhile (it
 * holds a VM reference): by a second device's fault thread, or by the
 * faulting engine's own thread (a lone fault, fault_queue.c INLINE, which
 * does not wait for the collector), an unbind, gvm_vm_destroy.
 *
 * Safety:
 *  G1 a range is never freed while the collector, a fault or a callback
 *     uses it (r_uses counts them; every use asserts it is not freed);
 *  G2 the VM is never freed while it is listed for collection or being
 *     collected, and no callback or collector touches a freed VM;
 *  and no deadlock (no invalid end state).
 *
 * Mutants:
 *  MUTANT_POP_ANY         gc_pop hands out a range that left the space
 *  MUTANT_DETACH_KEEPS_GC detach does not unlink the range from svm_gc
 *  MUTANT_FORGET_NO_WAIT  forget does not wait for a running collection
 *  MUTANT_NO_GC_CLOSED    collect lists the VM even after forget
 */

bool vmlock = false, nlock = false;
/* the range */
bool r_in_space = true, r_in_chunk = true, r_gc = false;
bool r_reap = false, r_freed = false;
byte r_uses = 0;
/* the VM and the device's collector */
bool vm_listed = false, collecting = false, gc_closed = false;
bool vm_closed = false, vm_freed = false;
byte vm_refs = 2;		/* the user's and the queued fault's */
/* the chunk's notifier */
bool chunk_in_tree = true;
byte inval_running = 0;

inline lock(l) { atomic { !l -> l = true } }
inline unlock(l) { l = false }

inline use_r() { atomic { assert(!r_freed); r_uses++ } }
inline unuse_r() { r_uses-- }

/* gvm__userptr_detach + free: no lock held */
inline detach_free()
{
	lock(nlock);
	assert(!r_freed);
#ifndef MUTANT_DETACH_KEEPS_GC
	r_gc = false;
#endif
	r_in_chunk = false;
	unlock(nlock);
	atomic { assert(r_uses == 0); r_freed = true }
}

/* gvm__vm_reap: the dead list is taken whole, under vm->dead_lock */
inline reap(mine)
{
	atomic { mine = r_reap; r_reap = false };
	if
	:: mine -> detach_free(); mine = false
	:: else -> skip
	fi
}

/* collect(), vm->lock held: gc_pop + range_drop */
inline collect(got)
{
	do
	:: lock(nlock);
		if
		:: r_gc ->
			assert(!r_freed);	/* gc_pop reads it */
			r_gc = false;
#ifdef MUTANT_POP_ANY
			got = true
#else
			got = r_in_space
#endif
		:: else -> got = false
		fi;
		unlock(nlock);
		if
		:: got ->
			use_r();
			if
			:: r_in_space ->
				/*
				 * va_find(...) == r: range_drop; its last
				 * touch of r is gvm__vma_free_deferred
				 */
				atomic {
					r_in_space = false; unuse_r();
					r_reap = true
				}
			:: else -> unuse_r()
			fi;
			got = false
		:: else -> break
		fi
	od
}

inline vm_put()
{
	atomic {
		vm_refs--;
		if
		:: vm_refs == 0 ->
			assert(!vm_listed && !collecting);	/* G2 */
			vm_freed = true
		:: else -> skip
		fi
	}
}

/* chunk_inval_start for an UNMAP over R, then its end (two of them) */
active [2] proctype callback()
{
	bool hit = false, unmapped = false;

	atomic {
		if
		:: chunk_in_tree -> inval_running++; hit = true
		:: else -> skip
		fi
	};
	if
	:: hit ->
		lock(nlock);
		assert(!vm_freed);
		if
		:: r_in_chunk ->
			use_r();
			if
			:: !r_gc -> r_gc = true; unmapped = true
			:: else -> skip
			fi;
			unuse_r()
		:: else -> skip
		fi;
		if
		:: unmapped ->
			/* gvm__fault_queue_collect, fq->lock inside */
			atomic {
				assert(!vm_freed);
#ifdef MUTANT_NO_GC_CLOSED
				vm_listed = true
#else
				if
				:: !gc_closed -> vm_listed = true
				:: else -> skip
				fi
#endif
			}
		:: else -> skip
		fi;
		unlock(nlock);
		inval_running--
	:: else -> skip
	fi
}

/* device 0's fault thread between batches: collect_one */
active proctype collector()
{
	bool got, mine;
end_idle:
	do
	:: atomic { vm_listed -> vm_listed = false; collecting = true };
		assert(!vm_freed);
		lock(vmlock);
		if
		:: !vm_closed -> collect(got)
		:: else -> skip
		fi;
		unlock(vmlock);
		reap(mine);
		collecting = false
	od
}

/* a fault on R serviced while the collector runs (gvm__svm_fault): device
   1's fault thread, or an engine servicing a lone fault of device 0 */
active proctype fault()
{
	bool got, mine;

	lock(vmlock);
	if
	:: !vm_closed ->
		collect(got);
		if
		:: r_in_space ->
			use_r();
			if
			:: atomic {				/* gone: drop */
				r_in_space = false; unuse_r(); r_reap = true
			   }
			:: unuse_r()				/* rebind */
			fi
		:: else -> skip
		fi
	:: else -> skip
	fi;
	unlock(vmlock);
	reap(mine);
	vm_put()
}

/* a bind unbinding the mirror: the ranges leave, freed with no lock */
active proctype unbind()
{
	bool mine = false;

	lock(vmlock);
	if
	:: !vm_closed && r_in_space -> r_in_space = false; mine = true
	:: else -> skip
	fi;
	unlock(vmlock);
	if
	:: mine -> detach_free()
	:: else -> skip
	fi
}

/* gvm_vm_destroy */
active proctype destroy()
{
	bool mine = false, mine2;

	lock(vmlock);
	vm_closed = true;
	unlock(vmlock);
	/* gvm__fault_queue_forget */
	atomic { gc_closed = true; vm_listed = false };
#ifndef MUTANT_FORGET_NO_WAIT
	(!collecting);
#endif
	lock(vmlock);
	if
	:: r_in_space -> r_in_space = false; mine = true
	:: else -> skip
	fi;
	unlock(vmlock);
	reap(mine2);
	if
	:: mine -> detach_free()
	:: else -> skip
	fi;
	/* gvm__userptr_chunks_fini: notifier_remove waits */
	atomic { inval_running == 0 -> chunk_in_tree = false };
	vm_put()
}
