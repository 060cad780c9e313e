// SPDX-License-Identifier: MIT
/*
 * CPU mapping lookup for the calling process: which VMA contains an address,
 * its bounds, protection and kind (anonymous, shared, file).
 *
 * Two methods give the same answer:
 *  - the PROCMAP_QUERY ioctl on an open /proc/self/maps (Linux >= 6.11):
 *    one system call that asks the kernel's VMA tree directly, O(log n);
 *  - parsing the text of /proc/self/maps (any Linux): reads the file up to
 *    the line wanted, O(n) in the number of mappings.
 * The ioctl is used when the running kernel has it (detected at init, so
 * old headers do not matter: see uffd_compat.h); the parser otherwise, or
 * when gvm__mm_maps_force_parse is set (tests) or GVM_MM_MAPS=parse is in
 * the environment.
 *
 * Example:
 *
 *	struct gvm_mm_vma v;
 *	if (!gvm__mm_maps_lookup(&maps, (uintptr_t)p, 0, &v) &&
 *	    (v.prot & PROT_WRITE))
 *		...;
 *
 * Locking: maps->lock (a leaf) serialises ioctls on the shared file
 * descriptor; some kernels keep per-file state across a query.  The parser
 * opens its own file each time and takes no lock; it allocates nothing
 * (no stdio: see gvm__mm_maps_parse).
 *
 * gvm__mm_maps_init() also sets up what fetch.c needs of /proc
 * (gvm__mm_fetch_init: the pagemap file), and fini closes it.
 *
 * What it does not do: report the mapping's name, or the gate VMA
 * ([vsyscall], above the user address space), which the ioctl cannot see
 * either; answers are snapshots that may be stale as soon as they return.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/inject.h"
#include "core/sync.h"
#include "mm/mm.h"
#include "mm/uffd_compat.h"

bool gvm__mm_maps_force_parse;

int gvm__mm_maps_init(struct gvm_mm_maps *maps)
{
	struct procmap_query q = {
		.size = sizeof(q),
		.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA,
		.query_addr = 0,
	};
	const char *env = getenv("GVM_MM_MAPS");

	maps->fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (maps->fd < 0)
		return -errno;
	gvm__mutex_init(&maps->lock, "mm_maps", GVM_RANK_LEAF);
	/* Supported if it answers; ENOTTY (or EINVAL) on older kernels. */
	maps->have_query = ioctl(maps->fd, PROCMAP_QUERY, &q) == 0 ||
			   errno == ENOENT;
	if (env && !strcmp(env, "parse"))
		maps->have_query = false;
	gvm__mm_fetch_init(maps);
	return 0;
}

void gvm__mm_maps_fini(struct gvm_mm_maps *maps)
{
	if (maps->fd >= 0)
		close(maps->fd);
	maps->fd = -1;
	if (maps->pagemap_fd >= 0)
		close(maps->pagemap_fd);
	maps->pagemap_fd = -1;
	gvm__mutex_fini(&maps->lock);
}

int gvm__mm_maps_query(struct gvm_mm_maps *maps, uint64_t addr,
		       unsigned int flags, struct gvm_mm_vma *out)
{
	struct procmap_query q = {
		.size = sizeof(q),
		.query_flags = (flags & GVM_MM_LOOKUP_NEXT) ?
				       PROCMAP_QUERY_COVERING_OR_NEXT_VMA :
				       0,
		.query_addr = addr,
	};
	int rc;

	if (!maps->have_query)
		return -EOPNOTSUPP;
	gvm__mutex_lock(&maps->lock);
	rc = gvm__inject(GVM_INJECT_PROCMAP_QUERY);
	if (!rc && ioctl(maps->fd, PROCMAP_QUERY, &q) < 0)
		rc = -errno;
	gvm__mutex_unlock(&maps->lock);
	if (rc)
		return rc;

	out->start = q.vma_start;
	out->end = q.vma_end;
	out->prot = ((q.vma_flags & PROCMAP_QUERY_VMA_READABLE) ? PROT_READ : 0) |
		    ((q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE) ? PROT_WRITE : 0) |
		    ((q.vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE) ? PROT_EXEC : 0);
	out->flags = ((q.vma_flags & PROCMAP_QUERY_VMA_SHARED) ?
			      GVM_MM_VMA_SHARED : 0) |
		     (q.inode ? GVM_MM_VMA_FILE : 0);
	out->offset = q.vma_offset;
	out->inode = q.inode;
	out->dev_major = q.dev_major;
	out->dev_minor = q.dev_minor;
	return 0;
}

/*
 * One line: "start-end perms offset major:minor inode [name]", numbers in
 * hex but the inode (decimal).  Returns 0 or -EIO if it does not parse.
 */
static int parse_line(const char *s, struct gvm_mm_vma *v)
{
	char *e;

	v->start = strtoull(s, &e, 16);
	if (*e != '-')
		return -EIO;
	v->end = strtoull(e + 1, &e, 16);
	if (*e != ' ' || strlen(e) < 6)
		return -EIO;
	s = e + 1;
	v->prot = (s[0] == 'r' ? PROT_READ : 0) |
		  (s[1] == 'w' ? PROT_WRITE : 0) |
		  (s[2] == 'x' ? PROT_EXEC : 0);
	v->flags = s[3] == 's' ? GVM_MM_VMA_SHARED : 0;
	v->offset = strtoull(s + 4, &e, 16);
	v->dev_major = (uint32_t)strtoul(e, &e, 16);
	if (*e != ':')
		return -EIO;
	v->dev_minor = (uint32_t)strtoul(e + 1, &e, 16);
	v->inode = strtoull(e, &e, 10);
	if (v->inode)
		v->flags |= GVM_MM_VMA_FILE;
	return 0;
}

/*
 * /proc/self/maps read with read(2) into a buffer on the stack: fopen()
 * and getline() would take memory from the application's heap, whose
 * pages SVM may have moved (core/alloc.c), and the lookup runs on the
 * fault-servicing thread.  A line's fields end well before its name; only
 * its first LINE_PREFIX - 1 bytes are kept.
 */
#define LINE_PREFIX 160

struct maps_reader {
	int fd;
	size_t pos, len;
	char buf[2048];
};

/* The next line's prefix into @line: 1, 0 at the end, or -errno. */
static int next_line(struct maps_reader *r, char line[LINE_PREFIX])
{
	size_t n = 0;
	bool any = false;

	for (;;) {
		char c;

		if (r->pos == r->len) {
			ssize_t got = read(r->fd, r->buf, sizeof(r->buf));

			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0)
				return -errno;
			if (got == 0) {
				line[n] = '\0';
				return any;
			}
			r->pos = 0;
			r->len = (size_t)got;
		}
		any = true;
		c = r->buf[r->pos++];
		if (c == '\n')
			break;
		if (n < LINE_PREFIX - 1)
			line[n++] = c;
	}
	line[n] = '\0';
	return 1;
}

int gvm__mm_maps_parse(uint64_t addr, unsigned int flags,
		       struct gvm_mm_vma *out)
{
	struct maps_reader r = { .fd = open("/proc/self/maps",
					    O_RDONLY | O_CLOEXEC) };
	char line[LINE_PREFIX];
	int err = -ENOENT, got;

	if (r.fd < 0)
		return -errno;
	while ((got = next_line(&r, line)) > 0) {
		struct gvm_mm_vma v;

		if (parse_line(line, &v)) {
			err = -EIO;
			break;
		}
		/* The gate VMA sits above user space; the ioctl skips it. */
		if (v.start >> 63)
			break;
		if (v.end <= addr)
			continue;
		if (v.start <= addr || (flags & GVM_MM_LOOKUP_NEXT)) {
			*out = v;
			err = 0;
		}
		break;		/* lines are in address order */
	}
	if (got < 0)
		err = got;
	close(r.fd);
	return err;
}

int gvm__mm_maps_lookup(struct gvm_mm_maps *maps, uint64_t addr,
			unsigned int flags, struct gvm_mm_vma *out)
{
	if (maps->have_query && !__atomic_load_n(&gvm__mm_maps_force_parse,
						 __ATOMIC_RELAXED))
		return gvm__mm_maps_query(maps, addr, flags, out);
	return gvm__mm_maps_parse(addr, flags, out);
}
