/* SPDX-License-Identifier: MIT */
/*
 * Traces: what the library did, when, on which device and queue, as a
 * Chrome / Perfetto trace-event JSON file (open it in ui.perfetto.dev or
 * chrome://tracing).
 *
 * While a trace is recording, gvm keeps one event per bind call
 * ("vm_bind"), queued bind job ("bind_job"), kernel run on an exec queue
 * (named after the kernel, from the moment the queue starts it until its
 * fence signals), TLB invalidation ("tlb_inval"), GPU fault
 * ("gpu_fault", an instant) and batch of faults serviced ("fault_batch",
 * fault-mode VMs: by the fault-servicing thread, or a lone fault by its
 * engine's thread; one batch at a time per device).  Processes are devices, threads are
 * queues and engines.  The events stay in memory until gvm_trace_stop() writes
 * them.  The format is in docs/tool.md.
 *
 * One trace per process at a time.  Recording costs a lock and a few
 * dozen bytes per event; when no trace is recording, every hook costs one
 * relaxed load.  At most GVM_TRACE_MAX_EVENTS events are kept; the file
 * says how many were dropped.
 *
 * Threads: both calls may be made from any thread; events of work still
 * running when the trace stops are left out.
 */
#ifndef GVM_TRACE_H
#define GVM_TRACE_H

#include <gvm/types.h>

GVM_BEGIN_DECLS

#define GVM_TRACE_MAX_EVENTS (1u << 20)

/*
 * Starts recording; the file @path is created (truncated) now and written
 * by gvm_trace_stop().  Returns 0, -EINVAL (NULL path), -EBUSY (a trace is
 * already recording), -ENOMEM, or the negated errno of opening @path.
 */
GVM_API int gvm_trace_start(const char *path);

/*
 * Stops recording and writes the file.  Returns 0, -EINVAL (no trace is
 * recording), or the negated errno of writing it (-EIO if unknown); the
 * trace is stopped in every case.
 */
GVM_API int gvm_trace_stop(void);

GVM_END_DECLS

#endif
