/* SPDX-License-Identifier: MIT */
/*
 * Devices, and the contract a device backend implements.
 *
 * A device (struct gvm_device) is the library's view of one GPU: its memory
 * regions, its engines and the operations gvm needs from the hardware.  The
 * library owns everything that is policy (which memory a buffer or a
 * page-table page gets, what is mapped where, when the TLB must be
 * invalidated, what runs after what); a backend only does what hardware
 * does: it walks the page tables gvm writes, caches translations, runs work
 * on engines and copies bytes.  What the run op executes is a kernel
 * (<gvm/kernel.h>, included here).  The simulated GPU (<gvm/sim.h>) is one
 * backend; it uses nothing but this header and <gvm/kernel.h>.
 *
 * MEMORY.  Two regions:
 *  - GVM_MEM_SYSTEM: host memory of this process.  A system-memory address
 *    handed to the device (in a PTE or a copy) is the CPU virtual address of
 *    the page in this process.  The host may unmap it behind the device's
 *    back (userptr, SVM): a backend must survive touching such an address
 *    (report a fault, never crash).
 *  - GVM_MEM_VRAM: the device's own memory, @vram_size bytes at device
 *    addresses [vram_base, vram_base + vram_size).  The backend exposes all
 *    of it to the CPU as one writable window @vram_cpu (a BAR): gvm writes
 *    page tables through it and gives buffers a CPU view.  If the backend
 *    also gives @vram_fd (a file whose offset o is VRAM byte o, mmap-able
 *    MAP_SHARED), buffers made of scattered VRAM blocks get one contiguous
 *    CPU view; without it such buffers cannot be mapped.  gvm allocates VRAM
 *    (buddy allocator, 4 KiB chunks); the backend never does.
 *
 * PAGE TABLES.  gvm writes the VM's page tables in VRAM in the device's
 * page-table format (src/pt/fmt_*.h) and tells the backend only the root
 * (vm_attach).  Before gvm frees or reuses anything a translation could
 * reach, it invalidates the TLB range and waits for it.
 *
 * OPERATIONS (struct gvm_device_ops).  Every op returns 0 or a negative
 * errno; an op that fails must have changed nothing.  Ops that start
 * asynchronous work hand back a fence reference in *@done (signalled, with
 * an error if the work failed); they may return an already-signalled
 * fence.  Ops are called with no gvm lock held, except tlb_inval (may be
 * called under vm->lock and the notifier lock: it must not block on
 * anything but short internal locks, and must never wait for a job) and
 * queue_suspend / queue_resume (see there).
 * Backends call into gvm only through the functions of this header and
 * <gvm/fence.h>.
 *
 * LIFETIME.  gvm_device_create() returns the first reference.  Each VM,
 * buffer and queue holds one.  When the last goes, gvm calls ops->destroy
 * after every VM has been detached; the backend then frees its state (the
 * VRAM window included).
 *
 * Errors of the calls below: -EINVAL for NULL or bad arguments, -ENOMEM.
 */
#ifndef GVM_DEVICE_H
#define GVM_DEVICE_H

#include <gvm/fence.h>
#include <gvm/kernel.h>
#include <gvm/types.h>

GVM_BEGIN_DECLS

struct gvm_device;
struct gvm_vm;

/* Memory regions (also the placement bits of buffer objects). */
#define GVM_MEM_SYSTEM	(1u << 0)
#define GVM_MEM_VRAM	(1u << 1)

/* Engine classes (queues). */
#define GVM_ENGINE_BIND		(1u << 0)
#define GVM_ENGINE_COMPUTE	(1u << 1)
#define GVM_ENGINE_COPY		(1u << 2)

/*
 * GPU VA sizes (gvm_device_desc::va_bits): 48 bits (4-level page tables)
 * or 57 bits (5 levels).
 */
#define GVM_VA_BITS_48	48u
#define GVM_VA_BITS_57	57u

/* Page sizes, as a mask of sizes (bit n set: 2^n bytes supported). */
#define GVM_PAGE_4K	(1ull << 12)
#define GVM_PAGE_64K	(1ull << 16)
#define GVM_PAGE_2M	(1ull << 21)
#define GVM_PAGE_1G	(1ull << 30)

/*
 * VM flags of ops->vm_attach: what the backend must do for a VM.  The
 * library decides them (from the GVM_VM_* flags of <gvm/vm.h>).
 *  GVM_ATTACH_SCRATCH: an address with no valid page-table entry reads as
 *  zero and writes to it are dropped, instead of faulting (scratch pages).
 */
#define GVM_ATTACH_SCRATCH	(1u << 0)

/*
 * A location in one device's view of memory.  @peer names a linked
 * device's memory reached peer to peer: GVM_MEM_SYSTEM addresses that lie
 * in @peer's CPU window over its VRAM (desc.vram_cpu, what PCIe
 * peer-to-peer DMA reaches through the peer's BAR), so a copy that has one
 * crosses the interconnect between the two devices rather than the host's
 * bus.  gvm sets it only for devices in one owner group
 * (gvm_device_linked) and keeps @peer alive until the copy's fence
 * signalled; a backend that models the link asks gvm_device_link_query()
 * for its properties (the simulated GPU charges its bandwidth and latency
 * instead of its own copy engine's); one that does not may ignore it.
 */
struct gvm_mem_addr {
	uint32_t region;	/* GVM_MEM_SYSTEM or GVM_MEM_VRAM */
	uint64_t addr;		/* CPU VA (system) or device address (VRAM) */
	struct gvm_device *peer; /* NULL, or (system only) whose VRAM window
				    @addr lies in */
};

/* Access types and fault reasons (fault log, fault reports). */
#define GVM_ACCESS_READ		1u
#define GVM_ACCESS_WRITE	2u
#define GVM_ACCESS_ATOMIC	3u

enum gvm_fault_reason {
	GVM_FAULT_NOT_PRESENT = 1,	/* no valid PTE */
	GVM_FAULT_WRITE_PROTECT,	/* write through a read-only PTE */
	GVM_FAULT_ATOMIC,		/* atomic where the PTE forbids it */
	GVM_FAULT_SYSMEM_GONE,		/* the host page is not mapped */
	GVM_FAULT_REPLAY_LIMIT,		/* the backend gave up on an access
					   whose faults were each resolved
					   and came back on every replay
					   (gvm_vm_fault()) */
};

struct gvm_fault_info {
	uint64_t addr;			/* GPU VA of the access */
	uint32_t access;		/* GVM_ACCESS_* */
	uint32_t reason;		/* enum gvm_fault_reason */
	uint32_t engine;		/* GVM_ENGINE_* class of the engine */
	uint32_t engine_instance;
	int64_t timestamp_ns;		/* CLOCK_MONOTONIC */
	uint32_t queue_id;		/* the faulting exec's queue
					   (gvm_queue_id()), 0 if unknown */
	uint64_t seqno;			/* the exec's number on that queue:
					   1 for its first exec, the seqno
					   of the exec's fence; 0 if unknown.
					   Backends copy both from the
					   kernel they run (struct
					   gvm_kernel) */
};

/* What a backend registers. */
struct gvm_device_desc {
	const char *name;		/* copied */
	unsigned int va_bits;		/* GVM_VA_BITS_48 or _57 */
	uint64_t page_sizes;		/* GVM_PAGE_* mask; must include 4K.
					   The page tables hold only these
					   leaves: 2M with 2M, 1G with 1G
					   and 2M, the 64K hint with 64K */
	uint64_t vram_size;		/* bytes, multiple of 4 KiB, >= 1 MiB */
	uint64_t vram_base;		/* device address of VRAM byte 0,
					   4 KiB aligned */
	void *vram_cpu;			/* CPU window over all of VRAM */
	int vram_fd;			/* see MEMORY; -1 if none */
	unsigned int nr_compute;	/* engines per class */
	unsigned int nr_copy;
	unsigned int tlb_entries;	/* per engine, informational */
	unsigned int fault_queue_depth;	/* faults gvm_vm_fault() queues for
					   the device's servicing thread
					   before engines block; 0: 1024,
					   at most 65536 */
};

struct gvm_device_ops {
	/*
	 * A VM starts using the device: page tables of @levels levels whose
	 * root is at device address @root; @flags are GVM_ATTACH_* flags
	 * (above), which the backend implements.  The backend stores its
	 * per-VM state in *@vm_priv and reports faults with gvm_vm_fault(@vm).
	 * Mandatory.
	 */
	int (*vm_attach)(struct gvm_device *dev, struct gvm_vm *vm,
			 uint64_t root, unsigned int levels, uint32_t flags,
			 void **vm_priv);
	/* The VM is gone: no queue of it remains, its TLB is flushed. */
	void (*vm_detach)(struct gvm_device *dev, void *vm_priv);
	/*
	 * Starts invalidating the translations of [start, start + size) of
	 * the VM (size 0: all of them; else size is a power of two and start
	 * is aligned to it).  *@done signals once no engine can use a
	 * translation of the range it cached before the call.  Mandatory.
	 * Fails only for want of memory (-ENOMEM: gvm retries, then bans the
	 * VM and retries every millisecond until it works, because what the
	 * invalidation protects is freed once it signals), or with -ENODEV
	 * once no engine of the device runs any more.
	 */
	int (*tlb_inval)(struct gvm_device *dev, void *vm_priv, uint64_t start,
			 uint64_t size, struct gvm_fence **done);
	/*
	 * Copies @size bytes (multiple of 4 KiB) from @src to @dst with a copy
	 * engine.  The ranges do not overlap.  Either side may be a linked
	 * peer's VRAM (struct gvm_mem_addr's @peer): a device-to-device
	 * copy, which gvm asks of the device that receives the data; a
	 * backend that cannot reach the peer (no link any more) fails with
	 * -ENOLINK.  Mandatory.  gvm waits for
	 * copies while servicing GPU faults (on its fault-servicing thread,
	 * or on the faulting engine's own thread inside gvm_vm_fault()),
	 * engines stalled in those faults: a copy must complete without
	 * waiting for any kernel (run it where no kernel runs, or where
	 * kernels can be switched out).
	 */
	int (*copy)(struct gvm_device *dev, struct gvm_mem_addr dst,
		    struct gvm_mem_addr src, uint64_t size,
		    struct gvm_fence **done);
	/* An exec queue of engine class @engine for the VM. Optional. */
	int (*queue_create)(struct gvm_device *dev, void *vm_priv,
			    uint32_t engine, void **queue_priv);
	/* The queue is idle and will get no more work. */
	void (*queue_destroy)(struct gvm_device *dev, void *queue_priv);
	/*
	 * Runs kernel @k on the queue; *@done signals when it finished (with
	 * -EIO if it faulted).  gvm calls it in queue order, after the job's
	 * dependencies signalled; @k is valid until *@done signals.
	 */
	int (*run)(struct gvm_device *dev, void *queue_priv,
		   const struct gvm_kernel *k, struct gvm_fence **done);
	/*
	 * Preemption of exec queues (long-running VMs, GVM_VM_LR_MODE
	 * without GVM_VM_FAULT_MODE; optional, but such VMs get no exec
	 * queue without both).  queue_suspend stops the queue at the next
	 * point where its running kernel can be paused and resumed later
	 * (the simulated GPU: the next lane boundary) - paused, not failed;
	 * queued kernels do not start.  *@done signals once nothing of the
	 * queue runs or can touch memory (at once if it is idle), so gvm may
	 * then change the memory and the page tables the queue uses;
	 * translations the paused kernel cached must not be used again
	 * without the TLB invalidations submitted meanwhile being applied.
	 * Suspends nest: the queue runs again once queue_resume was called as
	 * many times as queue_suspend succeeded; it then continues its paused
	 * kernel where it stopped.  A queue destroyed while suspended drops
	 * its paused and queued kernels (their fences signal -ECANCELED).
	 * Both may be called under vm->lock, notifier_lock, reservations and
	 * from a fence's enable_signaling (possibly under a fence lock): they
	 * must not block on anything but short internal locks, and never
	 * wait for a job.  queue_suspend fails only with -ENOMEM (nothing
	 * changed).
	 */
	int (*queue_suspend)(struct gvm_device *dev, void *queue_priv,
			     struct gvm_fence **done);
	void (*queue_resume)(struct gvm_device *dev, void *queue_priv);
	/* Last reference gone; no VM is attached.  Free everything. */
	void (*destroy)(struct gvm_device *dev);
};

/*
 * Backend side: registers a device.  @desc is copied; @ops must stay valid
 * for the device's life.  Returns 0, -EINVAL (bad description or ops),
 * -ENOMEM.  On failure nothing is registered and ops->destroy is not
 * called.
 */
GVM_API int gvm_device_create(const struct gvm_device_desc *desc,
			      const struct gvm_device_ops *ops, void *priv,
			      struct gvm_device **out);
/* The backend's private pointer given to gvm_device_create(). */
GVM_API void *gvm_device_priv(const struct gvm_device *dev);

/*
 * Backend side: an engine hit a fault in @vm.  Called from the engine's
 * thread with no gvm lock held, the engine stalled (it runs nothing else
 * until the call returns, and must acknowledge TLB invalidations
 * meanwhile); may block.  Returns 0 if the fault was resolved (the engine
 * replays the access), or a negative errno: the access fails and the
 * backend fails the job with -EIO; an unresolved fault is logged
 * (gvm_vm_query_faults()).  A backend that bounds its replays and gives
 * up on an access (it faulted again after every resolved fault: the
 * memory was taken away each time before the replay) fails the job with
 * -EIO too, and first reports the access once more with reason
 * GVM_FAULT_REPLAY_LIMIT, which is logged and never serviced (-EFAULT):
 * so every job a fault fails has its fault-log entry.  In a VM without
 * GVM_VM_FAULT_MODE every fault is logged and returns -EFAULT.  In fault mode a lone fault (the device
 * services no other fault and has none queued) is serviced inside the
 * call, on the calling thread; otherwise the fault goes into the device's
 * fault queue (desc.fault_queue_depth; the call waits for room when it is
 * full, nothing is dropped) and is serviced by the device's servicing
 * thread, in batches, faults on the same page deduplicated.  Either way
 * the call returns when its fault was, and the service may call the
 * device's ops (tlb_inval, copy, ...) from the calling thread.
 */
GVM_API int gvm_vm_fault(struct gvm_vm *vm, const struct gvm_fault_info *f);

/*
 * Access counters (backend side), as GPUs with an interconnect have them:
 * the device counts the bytes its engines access in memory that is not
 * its own - a linked peer's VRAM, reached through the link - per region
 * of a VM's address space, and when a region's count crosses the
 * device's threshold it tells gvm, which may then move the memory closer
 * (the placement policy decides: docs/policy.md, "Access counters").
 * @addr and @size give the region (size a power of two, addr aligned to
 * it); @bytes what was counted.  Called from an engine's thread with no
 * gvm lock held; never blocks (a leaf lock inside): the notification is
 * queued for the device's fault-servicing thread and the engine goes on.
 * Returns 0 (queued), -EINVAL (NULL, bad region), -EOPNOTSUPP (the VM is
 * not in fault mode: nothing there acts on it), -EAGAIN (the queue of
 * notifications is full: dropped, as hardware drops them; counted in
 * gvm_device_query's access_dropped).  A hint: gvm may ignore it.
 */
struct gvm_access_info {
	uint64_t addr;			/* GPU VA of the region */
	uint64_t size;			/* bytes, power of two */
	uint64_t bytes;			/* accessed remotely in it since the
					   last notification */
	uint32_t engine;		/* GVM_ENGINE_* class */
	uint32_t engine_instance;
	int64_t timestamp_ns;		/* CLOCK_MONOTONIC */
};
GVM_API int gvm_vm_access_notify(struct gvm_vm *vm,
				 const struct gvm_access_info *a);

/*
 * Interconnects.  gvm_device_link() records a link between two devices
 * (peer-to-peer access and device-to-device copies, used by multi-device
 * SVM); devices linked directly or through others form one owner group,
 * whose members may map each other's memory.  @props may be NULL
 * (defaults: host speed).  Returns 0, -EINVAL (NULL, a == b), -EEXIST
 * (already linked), -ENOMEM.  Links go away with either device.
 */
struct gvm_link_props {
	uint64_t bandwidth;		/* bytes per second, 0 = host speed */
	uint64_t latency_ns;
};
GVM_API int gvm_device_link(struct gvm_device *a, struct gvm_device *b,
			    const struct gvm_link_props *props);
/*
 * The interconnect between @a and @b as a copy sees it: the direct link's
 * properties, or for devices linked only through others the path with the
 * fewest hops, its narrowest bandwidth (0, host speed, counting as the
 * widest) and the sum of its latencies.  For backends (a copy with a
 * @peer address) and users.  No gvm lock needed (a leaf lock inside).
 * Returns 0, -EINVAL (NULL, a == b), -ENOLINK (not in one owner group).
 */
GVM_API int gvm_device_link_query(struct gvm_device *a, struct gvm_device *b,
				  struct gvm_link_props *out);
/* True if @a and @b are in the same owner group (a == b included). */
GVM_API bool gvm_device_linked(struct gvm_device *a, struct gvm_device *b);

/* Users' side. */
struct gvm_device_info {
	uint32_t id;			/* unique in the process, from 1 */
	uint32_t owner;			/* smallest id of its owner group */
	unsigned int nr_links;		/* direct links */
	char name[32];
	unsigned int va_bits;
	uint64_t page_sizes;
	uint64_t vram_size;
	uint64_t vram_free;		/* bytes not allocated right now */
	unsigned int nr_compute, nr_copy;
	unsigned int tlb_entries;
	bool vram_mappable;		/* scattered VRAM buffers can be mapped */
	unsigned int fault_queue_depth;	/* GPU faults queued before engines
					   block (desc, 0 made 1024) */
	/* Shared virtual memory, since the device was created: */
	uint64_t svm_faults;		/* GPU faults serviced in SVM ranges
					   of its VMs */
	uint64_t svm_migrations_in;	/* ranges moved into its memory */
	uint64_t svm_bytes_in;
	uint64_t svm_migrations_out;	/* moved out: to system memory, or
					   directly to a linked device */
	uint64_t svm_bytes_out;
	uint64_t svm_d2d_in;		/* of svm_migrations_in: copied
					   directly from a linked device's
					   memory, over the link */
	uint64_t svm_d2d_out;		/* of svm_migrations_out: copied
					   directly to a linked device */
	uint64_t access_notified;	/* access-counter notifications its
					   engines sent (gvm_vm_access_notify) */
	uint64_t access_dropped;	/* of them dropped: queue full */
	uint64_t access_migrations;	/* SVM ranges moved into its memory
					   because of them */
};

GVM_API int gvm_device_query(struct gvm_device *dev,
			     struct gvm_device_info *info);

/*
 * Hot-unplug (docs/multidevice.md): the device leaves.  From the call on,
 * new users are refused with -ENODEV (gvm_vm_create, gvm_bo_create,
 * gvm_queue_create, gvm_exec, and any allocation of its VRAM); it leaves
 * its owner group (its links go); shared virtual memory is never placed
 * in its memory again, and what is there is moved to system memory before
 * the call returns, as are its idle buffer objects.  What is outstanding
 * keeps working: jobs already submitted run to their end, VMs and BOs
 * stay valid until put (a BO busy at the call stays where it is, its
 * data intact), and the device's memory lives, as a tombstone, as long as
 * anything still uses it.  The handle stays valid until its last
 * gvm_device_put().  No lock held.  Returns 0, -EINVAL (NULL), -ENODEV
 * (unplugged already).
 */
GVM_API int gvm_device_unplug(struct gvm_device *dev);
GVM_API struct gvm_device *gvm_device_get(struct gvm_device *dev);
GVM_API void gvm_device_put(struct gvm_device *dev);

GVM_END_DECLS

#endif
