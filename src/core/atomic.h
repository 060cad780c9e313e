/* SPDX-License-Identifier: MIT */
/*
 * Atomics, with the memory order in the name so every ordering decision in
 * gvm is visible at the call site and named in one place.
 *
 * Built on the GCC/Clang __atomic builtins rather than C11 _Atomic: they
 * operate on plain integer and pointer fields, which keeps the public headers
 * (that embed such fields) usable from C++ and free of _Atomic.  The memory
 * model is the C11 one; ThreadSanitizer understands these builtins.
 *
 * Rule: a field accessed with these helpers is accessed only with them (or
 * under a lock that excludes every concurrent accessor).
 */
#ifndef GVM_CORE_ATOMIC_H
#define GVM_CORE_ATOMIC_H

#define gvm_load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define gvm_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define gvm_load_seq_cst(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)

#define gvm_store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define gvm_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define gvm_store_seq_cst(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

#define gvm_fetch_add_relaxed(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define gvm_fetch_add_release(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELEASE)
#define gvm_fetch_add_acq_rel(p, v) __atomic_fetch_add((p), (v), __ATOMIC_ACQ_REL)
#define gvm_fetch_add_seq_cst(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define gvm_fetch_sub_release(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_RELEASE)
#define gvm_fetch_sub_acq_rel(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_ACQ_REL)
#define gvm_fetch_or_acq_rel(p, v) __atomic_fetch_or((p), (v), __ATOMIC_ACQ_REL)

#define gvm_xchg_acquire(p, v) __atomic_exchange_n((p), (v), __ATOMIC_ACQUIRE)
#define gvm_xchg_seq_cst(p, v) __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)

/* Strong compare-and-swap; on failure *expected receives the current value. */
#define gvm_cmpxchg_release(p, expected, desired)                         \
	__atomic_compare_exchange_n((p), (expected), (desired), false,    \
				    __ATOMIC_RELEASE, __ATOMIC_RELAXED)
#define gvm_cmpxchg_acq_rel(p, expected, desired)                         \
	__atomic_compare_exchange_n((p), (expected), (desired), false,    \
				    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#define gvm_cmpxchg_seq_cst(p, expected, desired)                         \
	__atomic_compare_exchange_n((p), (expected), (desired), false,    \
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

static inline void gvm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
