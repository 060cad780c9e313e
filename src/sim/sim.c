// SPDX-License-Identifier: MIT
/*
 * Simulated GPU: configuration, the VRAM arena, the device ops
 * (<gvm/device.h>), statistics and teardown.
 *
 * The simulated GPU is an ordinary device backend: gvm_sim_device_create()
 * builds the hardware (VRAM, engines, a timer) and registers it with
 * gvm_device_create(); from then on gvm drives it through the ops below
 * and the backend calls back only through gvm_vm_fault().  What it models
 * and how is in docs/sim.md; the pieces:
 *
 *   VRAM     a memfd of cfg.vram_size bytes mapped MAP_SHARED: the mapping
 *            is the CPU window (desc.vram_cpu, also what engines access),
 *            the fd is desc.vram_fd.  Device address of byte 0: 1 << 44
 *            (any non-zero, 4 KiB aligned value would do; this one is far
 *            from every host address so mixing them up faults loudly).
 *   engines  engine.c (threads, jobs, fences, TLB invalidation), lane.c
 *            (kernels), mmu.c (walks, TLB), guard.c (system memory).
 *            ops->copy runs on migration engines (one per copy engine),
 *            which never run kernels: a kernel stalled in a GPU fault
 *            must not hold up the copy its fault's service waits for.
 *            A copy to or from a linked peer's VRAM window (an address
 *            with a peer) is charged the link's bandwidth and latency,
 *            which it asks gvm for (gvm_device_link_query, copy_model)
 *            holding no lock of its own.
 *
 * Example:
 *
 *	struct gvm_sim_config cfg = { .vram_size = 64 << 20 };
 *	struct gvm_device *dev;
 *	int err = gvm_sim_device_create(&cfg, &dev);	// 0 or -errno
 *	...
 *	gvm_device_put(dev);	// ops->destroy once the last user is gone
 *
 * Locking: the registry of simulated devices (for gvm_sim_stats() and for
 * finding the peer whose VRAM window a translation points into) is under
 * `registry_lock` (rank GVM_RANK_SIM_REGISTRY), which is held while gvm is
 * asked for the link to that peer: a device leaves the registry in
 * ops->destroy, so a device found there stays valid until the lock is
 * dropped.  Everything else: see engine.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/lockrank.h"
#include "core/page.h"
#include "pt/pt_fmt.h"
#include "sim/sim_internal.h"

#define SIM_VRAM_BASE (1ull << 44)
_Static_assert(GVM_SIM_VRAM_MAX == (1ull << GVM_PTF_ADDR_BITS) - SIM_VRAM_BASE,
	       "sim.h's GVM_SIM_VRAM_MAX is the window above SIM_VRAM_BASE");

static struct gvm_mutex registry_lock;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;
static struct gvm_list registry;	/* sim_dev.link, under registry_lock */
static uint32_t dev_counter;		/* atomic: default names */
static uint64_t vm_ids;			/* atomic: TLB tags */
uint32_t gvm__sim_nr_devs;		/* atomic: registered devices */

static void registry_init(void)
{
	gvm__mutex_init(&registry_lock, "sim_registry", GVM_RANK_SIM_REGISTRY);
	gvm_list_init(&registry);
}

/* ---- config ------------------------------------------------------------- */

#define ALL_PAGES (GVM_PAGE_4K | GVM_PAGE_64K | GVM_PAGE_2M | GVM_PAGE_1G)

static int config_apply(const struct gvm_sim_config *in,
			struct gvm_sim_config *c)
{
	if (in)
		*c = *in;
	else
		memset(c, 0, sizeof(*c));
	if (!c->vram_size)
		c->vram_size = 256ull << 20;
	if (!c->va_bits)
		c->va_bits = GVM_VA_BITS_48;
	if (!c->nr_compute)
		c->nr_compute = 2;
	if (!c->nr_copy)
		c->nr_copy = 1;
	if (!c->tlb_entries)
		c->tlb_entries = 1024;
	if (!c->page_sizes)
		c->page_sizes = ALL_PAGES;
	if (!c->fault_queue_depth)
		c->fault_queue_depth = 1024;
	if (!c->access_threshold)
		c->access_threshold = GVM_SIM_ACCESS_DEFAULT;

	if (!gvm__ptf_levels(c->va_bits))
		return -EINVAL;
	if (!gvm__page_aligned(c->vram_size) || c->vram_size < (1ull << 20) ||
	    c->vram_size > GVM_SIM_VRAM_MAX ||
	    c->vram_size > (uint64_t)SIZE_MAX)
		return -EINVAL;
	if (!(c->page_sizes & GVM_PAGE_4K) || (c->page_sizes & ~ALL_PAGES))
		return -EINVAL;
	if (c->nr_compute > 64 || c->nr_copy > 64 ||
	    c->tlb_entries > (1u << 24) || c->fault_queue_depth > (1u << 16))
		return -EINVAL;
	return 0;
}

/* ---- the device ------------------------------------------------------------ */

static void sim_free(struct sim_dev *sd)
{
	if (sd->engines_started)
		gvm__sim_engines_stop(sd);
	if (sd->zero)
		munmap((void *)sd->zero, SIM_ZERO_BYTES);
	if (sd->vram)
		munmap(sd->vram, sd->vram_size);
	if (sd->vram_fd >= 0)
		close(sd->vram_fd);
	gvm__free(sd);
}

int gvm__sim_peer_link(const struct sim_dev *sd, const void *host,
		       const struct sim_dev **peer, struct gvm_link_props *lp)
{
	const uint8_t *h = host;
	struct gvm_list *pos;
	int err = -ENOENT;

	gvm__mutex_lock(&registry_lock);
	gvm_list_for_each(pos, &registry) {
		struct sim_dev *p = gvm_list_entry(pos, struct sim_dev, link);

		if (p == sd || !p->registered || h < p->vram ||
		    h >= p->vram + p->vram_size)
			continue;
		err = gvm_device_link_query(sd->dev, p->dev, lp) ? -ENOENT : 0;
		*peer = p;
		break;
	}
	gvm__mutex_unlock(&registry_lock);
	return err;
}

static void registry_del(struct sim_dev *sd)
{
	gvm__mutex_lock(&registry_lock);
	gvm_list_del(&sd->link);
	if (sd->registered)
		gvm_fetch_sub_release(&gvm__sim_nr_devs, 1u);
	gvm__mutex_unlock(&registry_lock);
}

static void sim_destroy(struct gvm_device *dev)
{
	struct sim_dev *sd = sim_dev_of(dev);

	registry_del(sd);
	sim_free(sd);
}

static int sim_vm_attach(struct gvm_device *dev, struct gvm_vm *vm,
			 uint64_t root, unsigned int levels, uint32_t flags,
			 void **vm_priv)
{
	struct sim_dev *sd = sim_dev_of(dev);
	struct sim_vm *simvm;

	if (!vm || !vm_priv || levels < 1 || levels > GVM_PTF_MAX_LEVELS ||
	    !gvm__page_aligned(root) ||
	    !gvm__sim_vram_ptr(sd, root, GVM_PAGE_SIZE))
		return -EINVAL;
	simvm = gvm__calloc(1, sizeof(*simvm));
	if (!simvm)
		return -ENOMEM;
	simvm->sd = sd;
	simvm->vm = vm;
	simvm->id = gvm_fetch_add_relaxed(&vm_ids, 1u) + 1;
	simvm->root = root;
	simvm->levels = levels;
	simvm->flags = flags;
	if (gvm__sim_inval_ctx_create(sd, simvm->id, &simvm->ic)) {
		gvm__free(simvm);
		return -ENOMEM;
	}
	*vm_priv = simvm;
	return 0;
}

/*
 * No TLB work: entries are tagged with the VM's id, which is never reused,
 * so whatever an engine still caches for this VM can never hit again.
 */
static void sim_vm_detach(struct gvm_device *dev, void *vm_priv)
{
	struct sim_vm *simvm = vm_priv;

	gvm__sim_inval_ctx_detach(simvm->ic);
	gvm__free(simvm);
}

static int sim_tlb_inval(struct gvm_device *dev, void *vm_priv,
			 uint64_t start, uint64_t size, struct gvm_fence **done)
{
	struct sim_vm *simvm = vm_priv;

	if (!simvm || !done || (size && ((size & (size - 1)) ||
				       (start & (size - 1)))))
		return -EINVAL;
	return gvm__sim_tlb_inval_submit(simvm->ic, start, size, done);
}

static bool mem_ok(const struct sim_dev *sd, struct gvm_mem_addr a,
		   uint64_t size)
{
	if (a.region == GVM_MEM_VRAM)
		return gvm__sim_vram_ptr(sd, a.addr, size) != NULL;
	if (a.region == GVM_MEM_SYSTEM)
		return a.addr && a.addr + size > a.addr;
	return false;
}

/*
 * The model a copy is charged: the copy engine's, or, for a copy to or
 * from a linked peer's VRAM window (@peer, <gvm/device.h>), the link's as
 * gvm reports it (0 bandwidth: host speed).  -ENOLINK if the peer is not
 * linked (any more), -EINVAL for a peer address in VRAM or to itself.
 */
static int copy_model(struct gvm_device *dev, const struct sim_dev *sd,
		      struct gvm_mem_addr dst, struct gvm_mem_addr src,
		      struct sim_job *job)
{
	struct gvm_device *peer = src.peer ? src.peer : dst.peer;
	struct gvm_link_props lp;
	int err;

	job->bw = sd->cfg.copy_bw;
	job->latency_ns = sd->cfg.copy_latency_ns;
	if (!peer)
		return 0;
	if ((src.peer && src.region != GVM_MEM_SYSTEM) ||
	    (dst.peer && dst.region != GVM_MEM_SYSTEM))
		return -EINVAL;
	err = gvm_device_link_query(dev, peer, &lp);
	if (err)
		return err;
	job->bw = lp.bandwidth;
	job->latency_ns = lp.latency_ns;
	return 0;
}

static int sim_copy(struct gvm_device *dev, struct gvm_mem_addr dst,
		    struct gvm_mem_addr src, uint64_t size,
		    struct gvm_fence **done)
{
	struct sim_dev *sd = sim_dev_of(dev);
	struct sim_engine *e;
	struct sim_job *job;
	uint32_t i;
	int err;

	if (!done || !size || !gvm__page_aligned(size) ||
	    !mem_ok(sd, dst, size) || !mem_ok(sd, src, size))
		return -EINVAL;
	job = gvm__calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	err = copy_model(dev, sd, dst, src, job);
	if (err) {
		gvm__free(job);
		return err;
	}
	job->type = SIM_JOB_COPY;
	job->dst = dst;
	job->src = src;
	job->size = size;
	/* A migration engine: it runs no kernel, so no fault stalls it
	   (gvm waits for copies while servicing faults). */
	i = gvm_fetch_add_relaxed(&sd->rr_migrate, 1u) % sd->cfg.nr_copy;
	e = &sd->engines[sd->cfg.nr_compute + sd->cfg.nr_copy + i];
	err = gvm__sim_submit(e, job, done);
	if (err)
		gvm__free(job);
	return err;
}

static int sim_queue_create(struct gvm_device *dev, void *vm_priv,
			    uint32_t engine, void **queue_priv)
{
	struct sim_dev *sd = sim_dev_of(dev);
	struct sim_queue *q;
	uint32_t i;

	if (!vm_priv || !queue_priv)
		return -EINVAL;
	if (engine != GVM_ENGINE_COMPUTE && engine != GVM_ENGINE_COPY)
		return engine == GVM_ENGINE_BIND ? -EOPNOTSUPP : -EINVAL;
	q = gvm__calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->simvm = vm_priv;
	q->context = gvm_fence_context_alloc(1);
	if (engine == GVM_ENGINE_COMPUTE) {
		i = gvm_fetch_add_relaxed(&sd->rr_compute, 1u) %
		    sd->cfg.nr_compute;
	} else {
		i = sd->cfg.nr_compute +
		    gvm_fetch_add_relaxed(&sd->rr_copy, 1u) % sd->cfg.nr_copy;
	}
	q->e = &sd->engines[i];
	*queue_priv = q;
	return 0;
}

/* Jobs left (the queue was suspended) are dropped: -ECANCELED. */
static void sim_queue_destroy(struct gvm_device *dev, void *queue_priv)
{
	gvm__sim_queue_drop(queue_priv);
	gvm__free(queue_priv);
}

static int sim_queue_suspend(struct gvm_device *dev, void *queue_priv,
			     struct gvm_fence **done)
{
	if (!queue_priv || !done)
		return -EINVAL;
	return gvm__sim_queue_suspend(queue_priv, done);
}

static void sim_queue_resume(struct gvm_device *dev, void *queue_priv)
{
	if (queue_priv)
		gvm__sim_queue_resume(queue_priv);
}

static int sim_run(struct gvm_device *dev, void *queue_priv,
		   const struct gvm_kernel *k, struct gvm_fence **done)
{
	struct sim_queue *q = queue_priv;
	struct sim_job *job;
	int err;

	if (!q || !k || !done || !k->fn || !k->grid ||
	    k->args_size > GVM_KERNEL_ARGS_MAX)
		return -EINVAL;
	job = gvm__calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	job->type = SIM_JOB_KERNEL;
	job->simvm = q->simvm;
	job->q = q;
	job->k = *k;
	err = gvm__sim_submit(q->e, job, done);
	if (err)
		gvm__free(job);
	return err;
}

const struct gvm_device_ops gvm__sim_ops = {
	.vm_attach = sim_vm_attach,
	.vm_detach = sim_vm_detach,
	.tlb_inval = sim_tlb_inval,
	.copy = sim_copy,
	.queue_create = sim_queue_create,
	.queue_destroy = sim_queue_destroy,
	.queue_suspend = sim_queue_suspend,
	.queue_resume = sim_queue_resume,
	.run = sim_run,
	.destroy = sim_destroy,
};

static int vram_create(struct sim_dev *sd)
{
	void *p;

	sd->vram_fd = memfd_create("gvm-sim-vram", MFD_CLOEXEC);
	if (sd->vram_fd < 0)
		return -errno;
	if (ftruncate(sd->vram_fd, (off_t)sd->vram_size))
		return -ENOMEM;
	p = mmap(NULL, sd->vram_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 sd->vram_fd, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	sd->vram = p;
	p = mmap(NULL, SIM_ZERO_BYTES, PROT_READ,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	sd->zero = p;
	return 0;
}

int gvm_sim_device_create(const struct gvm_sim_config *cfg,
			  struct gvm_device **out)
{
	struct gvm_device_desc desc;
	struct sim_dev *sd;
	int err;

	if (!out)
		return -EINVAL;
	pthread_once(&registry_once, registry_init);
	sd = gvm__calloc(1, sizeof(*sd));
	if (!sd)
		return -ENOMEM;
	sd->vram_fd = -1;
	gvm_list_init(&sd->link);
	err = config_apply(cfg, &sd->cfg);
	if (err)
		goto err_free;
	if (sd->cfg.name)
		snprintf(sd->name, sizeof(sd->name), "%s", sd->cfg.name);
	else
		snprintf(sd->name, sizeof(sd->name), "sim%u",
			 gvm_fetch_add_relaxed(&dev_counter, 1u));
	sd->cfg.name = sd->name;
	sd->vram_base = SIM_VRAM_BASE;
	sd->vram_size = sd->cfg.vram_size;
	sd->fault_fn = gvm_vm_fault;
	err = gvm__sim_guard_install();
	if (err)
		goto err_free;
	err = vram_create(sd);
	if (err)
		goto err_free;
	err = gvm__sim_engines_start(sd);
	if (err)
		goto err_free;
	sd->engines_started = true;

	memset(&desc, 0, sizeof(desc));
	desc.name = sd->name;
	desc.va_bits = sd->cfg.va_bits;
	desc.page_sizes = sd->cfg.page_sizes;
	desc.vram_size = sd->vram_size;
	desc.vram_base = sd->vram_base;
	desc.vram_cpu = sd->vram;
	desc.vram_fd = sd->vram_fd;
	desc.nr_compute = sd->cfg.nr_compute;
	desc.nr_copy = sd->cfg.nr_copy;
	desc.tlb_entries = sd->cfg.tlb_entries;
	desc.fault_queue_depth = sd->cfg.fault_queue_depth;

	/* Registered before the device exists, so stats never miss it. */
	gvm__mutex_lock(&registry_lock);
	gvm_list_add_tail(&sd->link, &registry);
	gvm__mutex_unlock(&registry_lock);
	err = gvm_device_create(&desc, &gvm__sim_ops, sd, &sd->dev);
	if (err) {
		registry_del(sd);
		goto err_free;
	}
	gvm__mutex_lock(&registry_lock);
	sd->registered = true;		/* peers may look sd->dev up now */
	gvm_fetch_add_relaxed(&gvm__sim_nr_devs, 1u);
	gvm__mutex_unlock(&registry_lock);
	gvm__put_out(out, sd->dev);
	return 0;

err_free:
	sim_free(sd);
	return err;
}

int gvm_sim_stats(struct gvm_device *dev, struct gvm_sim_stats *st)
{
	struct sim_dev *sd, *found = NULL;
	struct gvm_list *pos;
	unsigned int i;

	if (!dev || !st)
		return -EINVAL;
	pthread_once(&registry_once, registry_init);
	sd = gvm_device_priv(dev);
	gvm__mutex_lock(&registry_lock);
	gvm_list_for_each(pos, &registry) {
		if (gvm_list_entry(pos, struct sim_dev, link) == sd)
			found = sd;
	}
	gvm__mutex_unlock(&registry_lock);
	if (!found)
		return -EINVAL;

	gvm__might_fault();
	memset(st, 0, sizeof(*st));
	st->tlb_invals = gvm_load_relaxed(&sd->tlb_invals);
	for (i = 0; i < sd->nr_engines; i++) {
		struct sim_counters *c = &sd->engines[i].cnt;

		st->tlb_hits += gvm_load_relaxed(&c->tlb_hits);
		st->tlb_misses += gvm_load_relaxed(&c->tlb_misses);
		st->walks += gvm_load_relaxed(&c->walks);
		st->faults += gvm_load_relaxed(&c->faults);
		st->kernels += gvm_load_relaxed(&c->kernels);
		st->lanes += gvm_load_relaxed(&c->lanes);
		st->bytes_copied += gvm_load_relaxed(&c->bytes_copied);
		st->parks += gvm_load_relaxed(&c->parks);
		st->link_bytes += gvm_load_relaxed(&c->link_bytes);
		st->link_wait_ns += gvm_load_relaxed(&c->link_wait_ns);
		st->access_notifications += gvm_load_relaxed(&c->access_notes);
	}
	return 0;
}
