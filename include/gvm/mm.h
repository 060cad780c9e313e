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
 * /dev/userfaultfd) and its non-cooperative events UNMAP, REMOVE, REMAP and
 * FORK (Linux >= 4.11); the process must be allowed to use it (root,
 * CAP_SYS_PTRACE, vm.unprivileged_userfaultfd = 1, or access to
 * /dev/userfaultfd).  gvm_mm_self() returns -ENOSYS and says why on stderr
 * otherwise.
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

GVM_END_DECLS

#endif
