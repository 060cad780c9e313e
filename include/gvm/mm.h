/* SPDX-License-Identifier: MIT */
/*
 * CPU address spaces ("mm"): the memory that userptr mappings and shared
 * virtual memory (SVM) mirror into a GPU VM.  Semantics: docs/mm.md.
 *
 * gvm_mm_self() is the calling process itself: userptr and SVM then operate
 * on real malloc()/mmap() memory.  gvm watches that memory without pinning
 * it, through a userfaultfd owned by the library and read by a library
 * thread: when the application unmaps, remaps or madvise(DONTNEED)s memory a
 * GPU VM mirrors, the GPU mappings of it are invalidated and refetched on
 * next use.  Ordinary CPU page faults are never intercepted.
 *
 * Requirements: Linux with userfaultfd (the userfaultfd(2) system call, or
 * /dev/userfaultfd) and its non-cooperative events UNMAP, REMOVE and REMAP
 * (Linux >= 4.11); the process must be allowed to use it (root,
 * CAP_SYS_PTRACE, vm.unprivileged_userfaultfd = 1, or access to
 * /dev/userfaultfd).  gvm_mm_self() returns -ENOSYS and says why on stderr
 * otherwise.
 *
 * fork() is tracked (the FORK event) only with CAP_SYS_PTRACE, which the
 * kernel requires for it.  Without, gvm_mm_self() works and says on stderr
 * that fork() is not tracked: after a fork(), the parent's private memory
 * mirrored by a GPU is copy-on-write and its next CPU write moves the
 * parent to a new page, which no GPU mapping is invalidated for.  A device
 * that maps pages (not the simulated GPU, which uses this process's
 * addresses) would then keep using the child's copy.  Use
 * madvise(MADV_DONTFORK) on such ranges, or rebind them after fork().
 *
 * Threads: any thread may call these.  An mm obtained in a process is not
 * usable in a child created by fork(): the child calls gvm_mm_self() again.
 */
#ifndef GVM_MM_H
#define GVM_MM_H

#include <gvm/types.h>

GVM_BEGIN_DECLS

struct gvm_mm;

/*
 * The calling process's address space.  There is one such object per
 * process: the first call creates it (opens the userfaultfd, starts the
 * event thread), later calls return it with one more reference.  Drop each
 * with gvm_mm_put(); the last put stops the thread and closes the
 * userfaultfd.  Returns 0, -ENOSYS (no usable userfaultfd, see above),
 * -ENOMEM, -EMFILE, -EAGAIN (no thread could be started).
 */
GVM_API int gvm_mm_self(struct gvm_mm **out);

/* Takes a reference; returns @mm. */
GVM_API struct gvm_mm *gvm_mm_get(struct gvm_mm *mm);

/* Drops a reference (NULL is ignored). */
GVM_API void gvm_mm_put(struct gvm_mm *mm);

/*
 * Waits until every change of the address space made before this call -
 * munmap, madvise(MADV_DONTNEED, _FREE, _REMOVE), mremap, mmap(MAP_FIXED)
 * over mirrored memory, fork - is reflected in every GPU mapping of @mm's
 * memory: the mappings it invalidated are torn down (the device can no
 * longer reach the old pages) and will be refetched on next use.  "Before"
 * means the system call returned before gvm_mm_flush() was called, in any
 * thread of the process.
 *
 * gvm_vm_bind() and gvm_exec() do this themselves on entry, so an
 * application that changes its memory and then binds or submits work needs
 * no flush; call it to make the same guarantee at another point (before
 * reading a VM's statistics, say).  Nothing is guaranteed about a change
 * made *while* a kernel runs on that memory (docs/mm.md, "Ordering").
 *
 * Cheap when nothing is pending (one atomic load); otherwise it waits for
 * the invalidation in progress, which may wait for TLB invalidations and
 * for long-running queues to stop.  Do not call it from a fence callback
 * or a kernel.  Returns 0, or -EINVAL if @mm is NULL.
 */
GVM_API int gvm_mm_flush(struct gvm_mm *mm);

/*
 * Tells gvm that the application changed the CPU's protection of
 * [addr, addr + len) - mprotect(), pkey_mprotect() - which, unlike the
 * changes gvm_mm_flush() waits for, the kernel reports to no process.
 * Before it returns, every GPU mapping of that memory in every VM
 * mirroring @mm (userptr and SVM) is torn down and the devices' TLBs are
 * flushed, so a device's next access there faults and honours the
 * protection the CPU mapping has then: PROT_NONE refuses every access, a
 * read-only mapping refuses writes (the job fails with -EIO, one fault
 * logged; the VM goes on).  Nothing else changes: data SVM moved to
 * device memory stays there, a running kernel is not waited for.
 *
 * Without this call the GPU keeps its mapping of device-resident memory
 * until the range's next invalidation (docs/svm.md, "What the
 * application may do to device-resident memory"); memory the GPU maps in
 * system memory needs no call (the simulated device reaches it through
 * the CPU's page tables).  Like gvm_mm_flush(), it may wait for TLB
 * invalidations: do not call it from a fence callback or a kernel.
 * Returns 0, or -EINVAL: @mm NULL, @len 0, @addr or @len not a multiple
 * of 4096, or the range wrapping around the end of the address space.
 */
GVM_API int gvm_mm_invalidate(struct gvm_mm *mm, uint64_t addr, uint64_t len);

GVM_END_DECLS

#endif
