/* SPDX-License-Identifier: MIT */
/*
 * Kernel ABI constants and structures the installed headers may lack.
 *
 * The CPU side (src/mm/) runs on kernels newer than the headers it is built
 * against (Debian's linux-libc-dev can be years older than the running
 * kernel).  Everything it uses from <linux/userfaultfd.h>, <linux/fs.h>
 * (PROCMAP_QUERY, Linux 6.11; PAGEMAP_SCAN, Linux 6.7) and <sys/mman.h>
 * (MADV_POPULATE_*, Linux 5.14; MREMAP_DONTUNMAP, 5.7, which the tests
 * use) is defined here when missing, with the
 * kernel's values, each under #ifndef so that newer headers win.  This is
 * the only place such values appear; whether the running kernel supports
 * them is decided at run time (UFFDIO_API's feature mask, ENOTTY or EINVAL
 * from an ioctl, EINVAL from madvise).
 *
 * Include this instead of the system headers it wraps.
 */
#ifndef GVM_MM_UFFD_COMPAT_H
#define GVM_MM_UFFD_COMPAT_H

#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <linux/types.h>
#include <linux/userfaultfd.h>

/* ---- syscall ----------------------------------------------------------- */

#ifndef __NR_userfaultfd
#if defined(__x86_64__)
#define __NR_userfaultfd 323
#elif defined(__aarch64__)
#define __NR_userfaultfd 282
#else
#error "__NR_userfaultfd unknown for this architecture"
#endif
#endif

/* userfaultfd(2) flag: handle faults of user mode only (5.11). */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* /dev/userfaultfd: a userfaultfd without the syscall's permission (6.1). */
#ifndef USERFAULTFD_IOC
#define USERFAULTFD_IOC 0xAA
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

/* ---- UFFDIO_API features --------------------------------------------- */

#ifndef UFFD_FEATURE_EXACT_ADDRESS
#define UFFD_FEATURE_EXACT_ADDRESS (1 << 11)		/* 5.18 */
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)	/* 5.19 */
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)		/* 6.4 */
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)			/* 6.6 */
#endif
/* Write-protect faults are resolved by the kernel, never reported (6.7). */
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
/* UFFDIO_MOVE (6.8). */
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

/* ---- ioctls ---------------------------------------------------------- */

#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif

#ifndef UFFDIO_MOVE
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
	__u64 mode;
	__s64 move;	/* written by the kernel: bytes moved or -errno */
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

/* ---- PROCMAP_QUERY (ioctl on /proc/<pid>/maps, 6.11) ----------------- */

#ifndef PROCMAP_QUERY
enum procmap_query_flags {
	/* VMA permission filters (query) and VMA flags (answer) */
	PROCMAP_QUERY_VMA_READABLE = 0x01,
	PROCMAP_QUERY_VMA_WRITABLE = 0x02,
	PROCMAP_QUERY_VMA_EXECUTABLE = 0x04,
	PROCMAP_QUERY_VMA_SHARED = 0x08,
	/* no VMA covers query_addr: answer the next one instead of ENOENT */
	PROCMAP_QUERY_COVERING_OR_NEXT_VMA = 0x10,
	/* consider file-backed VMAs only */
	PROCMAP_QUERY_FILE_BACKED_VMA = 0x20,
};

struct procmap_query {
	__u64 size;		/* in: sizeof(struct procmap_query) */
	__u64 query_flags;	/* in: enum procmap_query_flags */
	__u64 query_addr;	/* in */
	__u64 vma_start;	/* out */
	__u64 vma_end;		/* out (exclusive) */
	__u64 vma_flags;	/* out: PROCMAP_QUERY_VMA_* */
	__u64 vma_page_size;	/* out */
	__u64 vma_offset;	/* out: file offset (0 for anonymous) */
	__u64 inode;		/* out: 0 for anonymous */
	__u32 dev_major;	/* out */
	__u32 dev_minor;	/* out */
	__u32 vma_name_size;	/* in/out: buffer size, name length + 1 */
	__u32 build_id_size;	/* in/out */
	__u64 vma_name_addr;	/* in: user buffer or 0 */
	__u64 build_id_addr;	/* in: user buffer or 0 */
};

#define PROCFS_IOCTL_MAGIC 'f'
#define PROCMAP_QUERY _IOWR(PROCFS_IOCTL_MAGIC, 17, struct procmap_query)
#endif

/* ---- PAGEMAP_SCAN (ioctl on /proc/<pid>/pagemap, 6.7) ---------------- */

#ifndef PAGEMAP_SCAN
/* Page categories (struct page_region.categories and the masks). */
#define PAGE_IS_WPALLOWED	(1 << 0)
#define PAGE_IS_WRITTEN		(1 << 1)	/* present: not uffd-wp */
#define PAGE_IS_FILE		(1 << 2)
#define PAGE_IS_PRESENT		(1 << 3)
#define PAGE_IS_SWAPPED		(1 << 4)
#define PAGE_IS_PFNZERO		(1 << 5)	/* the shared zero page */
#define PAGE_IS_HUGE		(1 << 6)

/* One run of pages with the same (return-masked) categories. */
struct page_region {
	__u64 start;
	__u64 end;		/* exclusive */
	__u64 categories;
};

/* A page matches when ((categories ^ category_inverted) & category_mask)
   == category_mask (and any of category_anyof_mask, if not 0). */
struct pm_scan_arg {
	__u64 size;		/* in: sizeof(struct pm_scan_arg) */
	__u64 flags;		/* in: PM_SCAN_* (none used) */
	__u64 start;		/* in */
	__u64 end;		/* in (exclusive) */
	__u64 walk_end;		/* out: where the walk stopped */
	__u64 vec;		/* in: struct page_region[vec_len] */
	__u64 vec_len;		/* in */
	__u64 max_pages;	/* in: 0 = no limit */
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;	/* categories reported (and split on) */
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* ---- madvise --------------------------------------------------------- */

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25	/* Linux 6.1 */
#endif

/* ---- mremap ---------------------------------------------------------- */

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

_Static_assert(sizeof(struct procmap_query) == 104, "procmap_query ABI");
_Static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg ABI");
_Static_assert(sizeof(struct page_region) == 24, "page_region ABI");
_Static_assert(sizeof(struct uffd_msg) == 32, "uffd_msg ABI");

#endif
