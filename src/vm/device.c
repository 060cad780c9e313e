// SPDX-License-Identifier: MIT
/*
 * Devices: registration of a backend (gvm_device_create), references,
 * queries, interconnect links and owner groups, and the VRAM allocator
 * shared by buffer objects and page tables.
 *
 * A device owns a buddy allocator over its VRAM (4 KiB chunks, offsets
 * relative to desc.vram_base) and a job scheduler whose workers run the
 * device's bind and exec jobs.  Backends are described in <gvm/device.h>.
 *
 * Links: each device lists its links; a link joins two devices and is on
 * both lists, protected by one process-wide leaf lock (link_lock).  Links
 * hold no references: the device that goes first takes them down.  An
 * owner group (devices linked directly or transitively) is found by a
 * breadth-first walk, up to 64 devices; so is the path a device-to-device
 * copy crosses (gvm_device_link_query, which backends call from ops->copy
 * holding none of their locks).
 *
 * Locking: vram_lock is a leaf lock around the buddy (allocations come from
 * BO creation and moves under reservations, and from page-table updates
 * under vm->lock).  The reference count is atomic; the last put stops the
 * fault-servicing thread (fault_queue.c; no VM is left, so no fault is
 * queued), destroys the scheduler, the buddy, then calls the backend's
 * destroy.
 */
#include "vm/dev.h"
#include "vm/lr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/atomic.h"
#include "core/lockrank.h"
#include "core/page.h"
#include "core/sync.h"
#include "pt/pt.h"
#include "pt/pt_fmt.h"
#include "vm/svm.h"

#define SCHED_WORKERS 2

/* Leaf lock: every device's links (they join two devices). */
static struct gvm_mutex link_lock = {
	PTHREAD_MUTEX_INITIALIZER, "device.link_lock", GVM_RANK_LEAF
};
static uint32_t next_id = 1;

_Static_assert(GVM_PAGE_SIZE == GVM_PAGE_4K, "the GPU page is the 4K page");

static bool desc_valid(const struct gvm_device_desc *d,
		       const struct gvm_device_ops *ops)
{
	if (!ops->vm_attach || !ops->tlb_inval || !ops->copy || !ops->destroy)
		return false;
	if (ops->run && !ops->queue_create)
		return false;
	if (d->va_bits != GVM_VA_BITS_48 && d->va_bits != GVM_VA_BITS_57)
		return false;
	if (!(d->page_sizes & GVM_PAGE_4K) ||
	    (d->page_sizes & ~(GVM_PAGE_4K | GVM_PAGE_64K | GVM_PAGE_2M |
			       GVM_PAGE_1G)))
		return false;
	if (d->vram_size < (1u << 20) || !gvm__page_aligned(d->vram_size) ||
	    !gvm__page_aligned(d->vram_base) || !d->vram_cpu)
		return false;
	if (d->fault_queue_depth > GVM_FAULT_QUEUE_MAX)
		return false;
	if (d->vram_base + d->vram_size < d->vram_base ||
	    d->vram_base + d->vram_size > (1ull << GVM_PTF_ADDR_BITS))
		return false;
	return true;
}

int gvm_device_create(const struct gvm_device_desc *desc,
		      const struct gvm_device_ops *ops, void *priv,
		      struct gvm_device **out)
{
	struct gvm_device *dev;
	int err;

	if (!desc || !ops || !out || !desc_valid(desc, ops))
		return -EINVAL;
	dev = gvm__calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	snprintf(dev->name, sizeof(dev->name), "%s",
		 desc->name ? desc->name : "gpu");
	dev->desc = *desc;
	dev->desc.name = dev->name;
	dev->ops = ops;
	dev->priv = priv;
	gvm__ref_init(&dev->refcount);
	dev->id = gvm_fetch_add_relaxed(&next_id, 1u);
	gvm_list_init(&dev->links);
	gvm__mutex_init(&dev->vram_lock, "device.vram_lock", GVM_RANK_LEAF);
	gvm_list_init(&dev->lru);
	gvm_list_init(&dev->svm_lru);
	gvm_list_init(&dev->claims);
	gvm__cond_init(&dev->claims_cond);
	gvm_list_init(&dev->dead_bos);
	gvm_list_init(&dev->pt_vms);
	gvm__lr_dev_init(dev);
	err = gvm__buddy_init(&dev->vram, desc->vram_size, GVM_PAGE_SIZE);
	if (err)
		goto err_free;
	err = gvm__fault_queue_init(&dev->fq, dev, desc->fault_queue_depth);
	if (err)
		goto err_buddy;
	dev->desc.fault_queue_depth = dev->fq.depth;
	err = gvm_sched_create(dev->name, SCHED_WORKERS, &dev->sched);
	if (err)
		goto err_fq;
	gvm__put_out(out, dev);
	return 0;

err_fq:
	gvm__fault_queue_fini(&dev->fq);
err_buddy:
	gvm__buddy_fini(&dev->vram);
err_free:
	gvm__lr_dev_fini(dev);
	pthread_cond_destroy(&dev->claims_cond);
	gvm__mutex_fini(&dev->vram_lock);
	gvm__free(dev);
	return err;
}

void *gvm_device_priv(const struct gvm_device *dev)
{
	return dev ? dev->priv : NULL;
}

struct gvm_device *gvm_device_get(struct gvm_device *dev)
{
	if (dev)
		gvm__ref_get(&dev->refcount);
	return dev;
}

/* The link whose node on @dev's list is @pos. */
static struct gvm_link *link_of(const struct gvm_device *dev,
				struct gvm_list *pos)
{
	struct gvm_link *l = gvm_list_entry(pos, struct gvm_link, node[0]);

	if (l->dev[0] == dev)
		return l;
	return gvm_list_entry(pos, struct gvm_link, node[1]);
}

static struct gvm_device *peer_of(const struct gvm_device *dev,
				  const struct gvm_link *l)
{
	return l->dev[0] == dev ? l->dev[1] : l->dev[0];
}

#define GROUP_MAX 64

/*
 * The owner group of @dev (link lock held): breadth first over the links,
 * into @g (up to GROUP_MAX devices).  Returns the number found.
 */
static unsigned int group_of(struct gvm_device *dev,
			     struct gvm_device *g[GROUP_MAX])
{
	unsigned int n = 1, i, k;

	g[0] = dev;
	for (i = 0; i < n; i++) {
		struct gvm_list *pos;

		gvm_list_for_each(pos, &g[i]->links) {
			struct gvm_device *p = peer_of(g[i], link_of(g[i], pos));

			for (k = 0; k < n && g[k] != p; k++)
				;
			if (k == n && n < GROUP_MAX)
				g[n++] = p;
		}
	}
	return n;
}

int gvm_device_link(struct gvm_device *a, struct gvm_device *b,
		    const struct gvm_link_props *props)
{
	struct gvm_list *pos;
	struct gvm_link *l;

	if (!a || !b || a == b)
		return -EINVAL;
	if (gvm__device_unplugged(a) || gvm__device_unplugged(b))
		return -ENODEV;
	l = gvm__calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->dev[0] = a;
	l->dev[1] = b;
	if (props)
		l->props = *props;
	gvm__mutex_lock(&link_lock);
	/* Again under the lock: an unplug unlinks its device under it. */
	if (gvm__device_unplugged(a) || gvm__device_unplugged(b)) {
		gvm__mutex_unlock(&link_lock);
		gvm__free(l);
		return -ENODEV;
	}
	gvm_list_for_each(pos, &a->links) {
		if (peer_of(a, link_of(a, pos)) == b) {
			gvm__mutex_unlock(&link_lock);
			gvm__free(l);
			return -EEXIST;
		}
	}
	gvm_list_add_tail(&l->node[0], &a->links);
	gvm_list_add_tail(&l->node[1], &b->links);
	gvm__mutex_unlock(&link_lock);
	return 0;
}

bool gvm_device_linked(struct gvm_device *a, struct gvm_device *b)
{
	struct gvm_device *g[GROUP_MAX];
	unsigned int n, i;
	bool found = false;

	if (!a || !b)
		return false;
	gvm__mutex_lock(&link_lock);
	n = group_of(a, g);
	for (i = 0; i < n; i++)
		found |= g[i] == b;
	gvm__mutex_unlock(&link_lock);
	return found;
}

/*
 * The path from @a to @b with the fewest hops (link lock held): breadth
 * first from @a, each device found remembering the link it was reached
 * by, then back from @b.  Its narrowest bandwidth (0, host speed, is the
 * widest) and summed latency into *@out.  False if @b is not in @a's
 * owner group.
 */
static bool path_props(struct gvm_device *a, struct gvm_device *b,
		       struct gvm_link_props *out)
{
	struct gvm_device *g[GROUP_MAX];
	const struct gvm_link *by[GROUP_MAX];
	unsigned int from[GROUP_MAX], n = 1, i, k;

	g[0] = a;
	for (i = 0; i < n; i++) {
		struct gvm_list *pos;

		gvm_list_for_each(pos, &g[i]->links) {
			const struct gvm_link *l = link_of(g[i], pos);
			struct gvm_device *p = peer_of(g[i], l);

			for (k = 0; k < n && g[k] != p; k++)
				;
			if (k < n || n == GROUP_MAX)
				continue;
			g[n] = p;
			by[n] = l;
			from[n++] = i;
		}
	}
	for (k = 0; k < n && g[k] != b; k++)
		;
	if (k == n)
		return false;
	out->bandwidth = 0;
	out->latency_ns = 0;
	for (; k; k = from[k]) {
		uint64_t bw = by[k]->props.bandwidth;

		if (bw && (!out->bandwidth || bw < out->bandwidth))
			out->bandwidth = bw;
		out->latency_ns += by[k]->props.latency_ns;
	}
	return true;
}

int gvm_device_link_query(struct gvm_device *a, struct gvm_device *b,
			  struct gvm_link_props *out)
{
	struct gvm_link_props p;
	bool found;

	if (!a || !b || a == b || !out)
		return -EINVAL;
	/* into @p: @out is application memory, not touched under link_lock */
	gvm__mutex_lock(&link_lock);
	found = path_props(a, b, &p);
	gvm__mutex_unlock(&link_lock);
	if (found)
		*out = p;	/* not checked: the SVM layer calls this under
				   devmem_lock, the sim under its registry,
				   with @out on their stacks */
	return found ? 0 : -ENOLINK;
}

/* Takes @dev out of its owner group. */
static void unlink_all(struct gvm_device *dev)
{
	struct gvm_list *pos, *tmp;

	gvm__mutex_lock(&link_lock);
	gvm_list_for_each_safe(pos, tmp, &dev->links) {
		struct gvm_link *l = link_of(dev, pos);

		gvm_list_del(&l->node[0]);
		gvm_list_del(&l->node[1]);
		gvm__free(l);
	}
	gvm__mutex_unlock(&link_lock);
}

int gvm_device_unplug(struct gvm_device *dev)
{
	if (!dev)
		return -EINVAL;
	gvm_lockdep_assert_none_held();
	if (__atomic_exchange_n(&dev->unplugged, 1, __ATOMIC_ACQ_REL))
		return -ENODEV;
	/* No peer maps its memory from now on (what they map now moves
	   out below, which zaps them). */
	unlink_all(dev);
	gvm__svm_evict(dev, UINT64_MAX, NULL);	/* SVM memory, young too */
	gvm__vram_evacuate(dev);
	return 0;
}

void gvm_device_put(struct gvm_device *dev)
{
	if (!dev || !gvm__ref_put(&dev->refcount))
		return;
	unlink_all(dev);
	gvm__lr_dev_fini(dev);
	gvm__fault_queue_fini(&dev->fq);
	gvm_sched_destroy(dev->sched);
	gvm__buddy_fini(&dev->vram);
	GVM_BUG_ON(!gvm_list_empty(&dev->claims) ||
		   !gvm_list_empty(&dev->dead_bos));
	pthread_cond_destroy(&dev->claims_cond);
	gvm__mutex_fini(&dev->vram_lock);
	dev->ops->destroy(dev);
	gvm__free(dev);
}

int gvm_device_query(struct gvm_device *dev, struct gvm_device_info *info)
{
	struct gvm_buddy_stats st;

	if (!dev || !info)
		return -EINVAL;
	gvm__might_fault();	/* @info is written with no lock held */
	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", dev->name);
	info->va_bits = dev->desc.va_bits;
	info->page_sizes = dev->desc.page_sizes;
	info->vram_size = dev->desc.vram_size;
	gvm__mutex_lock(&dev->vram_lock);
	gvm__buddy_stats(&dev->vram, &st);
	gvm__mutex_unlock(&dev->vram_lock);
	info->vram_free = st.free_bytes;
	info->nr_compute = dev->desc.nr_compute;
	info->nr_copy = dev->desc.nr_copy;
	info->tlb_entries = dev->desc.tlb_entries;
	info->vram_mappable = dev->desc.vram_fd >= 0;
	info->fault_queue_depth = dev->desc.fault_queue_depth;
	info->svm_faults = gvm_load_relaxed(&dev->svm_faults);
	info->access_notified = gvm_load_relaxed(&dev->access_notified);
	info->access_dropped = gvm_load_relaxed(&dev->access_dropped);
	info->access_migrations = gvm_load_relaxed(&dev->access_migrations);
	info->svm_migrations_in = gvm_load_relaxed(&dev->svm_to_vram);
	info->svm_bytes_in = gvm_load_relaxed(&dev->svm_bytes_to_vram);
	info->svm_d2d_in = gvm_load_relaxed(&dev->svm_d2d_in);
	info->svm_d2d_out = gvm_load_relaxed(&dev->svm_d2d_out);
	info->svm_migrations_out = gvm_load_relaxed(&dev->svm_to_ram) +
				   info->svm_d2d_out;
	info->svm_bytes_out = gvm_load_relaxed(&dev->svm_bytes_to_ram) +
			      gvm_load_relaxed(&dev->svm_bytes_d2d_out);
	info->id = dev->id;
	gvm__mutex_lock(&link_lock);
	{
		struct gvm_device *g[GROUP_MAX];
		unsigned int n = group_of(dev, g), i;
		struct gvm_list *pos;

		info->owner = dev->id;
		for (i = 0; i < n; i++)
			if (g[i]->id < info->owner)
				info->owner = g[i]->id;
		gvm_list_for_each(pos, &dev->links)
			info->nr_links++;
	}
	gvm__mutex_unlock(&link_lock);
	return 0;
}

/* A cursor over a copy side's extents: byte @at of ext[i]. */
struct cursor {
	const struct gvm_copy_side *s;
	size_t i;
	uint64_t at;
};

static struct cursor cursor_at(const struct gvm_copy_side *s)
{
	struct cursor c = { .s = s, .at = s->off };

	while (c.i < s->nr && c.at >= s->ext[c.i].len)
		c.at -= s->ext[c.i++].len;
	return c;
}

/* Bytes left in the current extent (0: none left at all). */
static uint64_t cursor_run(const struct cursor *c)
{
	return c->i < c->s->nr ? c->s->ext[c->i].len - c->at : 0;
}

static struct gvm_mem_addr cursor_addr(const struct cursor *c)
{
	return (struct gvm_mem_addr){
		.region = c->s->region,
		.addr = c->s->ext[c->i].addr + c->at + c->s->bias,
		.peer = c->s->peer,
	};
}

static void cursor_advance(struct cursor *c, uint64_t n)
{
	c->at += n;
	if (c->at == c->s->ext[c->i].len) {
		c->i++;
		c->at = 0;
	}
}

int gvm__dev_copy(struct gvm_device *dev, const struct gvm_copy_side *dst,
		  const struct gvm_copy_side *src, uint64_t len,
		  struct gvm_copy_wait *w)
{
	struct cursor d = cursor_at(dst), s = cursor_at(src);
	uint64_t done = 0;
	int err = 0;

	if (w)
		w->copy_ns = 0;
	while (!err && done < len) {
		uint64_t n = len - done;
		struct gvm_fence *f;
		int64_t t0, busy_until = 0, end, signalled;

		if (!cursor_run(&d) || !cursor_run(&s))
			return -EINVAL;
		if (n > cursor_run(&d))
			n = cursor_run(&d);
		if (n > cursor_run(&s))
			n = cursor_run(&s);
		t0 = gvm__now_ns();
		err = dev->ops->copy(dev, cursor_addr(&d), cursor_addr(&s), n,
				     &f);
		if (err)
			break;
		if (w && w->meanwhile) {
			w->meanwhile(w->arg);
			w->meanwhile = NULL;
			busy_until = gvm__now_ns();
		}
		gvm_fence_wait(f, GVM_TIMEOUT_INFINITE);
		if (w) {
			/* What meanwhile ran on after the copy ended is the
			   caller's time, not the copy's. */
			end = gvm__now_ns();
			signalled = gvm_fence_timestamp(f);
			if (busy_until > signalled)
				end -= busy_until - signalled;
			w->copy_ns += end - t0;
		}
		err = gvm_fence_get_status(f) < 0 ? -EIO : 0;
		/* Injected: as if the engine had failed this copy. */
		if (!err)
			err = gvm__inject(GVM_INJECT_DEV_COPY);
		gvm_fence_put(f);
		cursor_advance(&d, n);
		cursor_advance(&s, n);
		done += n;
	}
	return err;
}

int gvm__vram_alloc(struct gvm_device *dev, uint64_t size, unsigned int flags,
		    struct gvm_list *blocks)
{
	int err;

	if (gvm__device_unplugged(dev))
		return -ENODEV;
	if (size > dev->vram.size)
		return -ENOSPC;
	gvm__mutex_lock(&dev->vram_lock);
	err = -ENOSPC;
	if (gvm__vram_claims_allow_locked(dev, size))
		err = gvm__buddy_alloc(&dev->vram, 0, dev->vram.size, size,
				       GVM_PAGE_SIZE, flags, blocks);
	if (!err)
		gvm__vram_claims_charge_locked(dev, size);
	gvm__mutex_unlock(&dev->vram_lock);
	return err;
}

void gvm__vram_free(struct gvm_device *dev, struct gvm_list *blocks)
{
	gvm__mutex_lock(&dev->vram_lock);
	gvm__buddy_free_list(&dev->vram, blocks);
	gvm__vram_changed_locked(dev);
	gvm__mutex_unlock(&dev->vram_lock);
}
