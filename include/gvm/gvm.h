/* SPDX-License-Identifier: MIT */
/*
 * gvm: the GPU virtual-memory stack of Linux DRM drivers (VM_BIND, GPU page
 * tables, userptr, shared virtual memory) as a userspace library.
 *
 * This umbrella header includes the whole public API:
 *   <gvm/types.h>    conventions (errors, timeouts), basic types
 *   <gvm/fence.h>    fences, fence arrays, timelines
 *   <gvm/ww.h>       wound-wait mutexes
 *   <gvm/resv.h>     reservation objects (lock + fences by usage class)
 *   <gvm/lockset.h>  locking many reservations without deadlock
 *   <gvm/sched.h>    job scheduler: queues, dependencies, workers
 *   <gvm/kernel.h>   kernels and the lane API they use
 *   <gvm/device.h>   devices and the backend contract
 *   <gvm/vm.h>       VMs, buffer objects, VM_BIND, queues, syncs, exec
 *   <gvm/sim.h>      the simulated GPU and its built-in kernels
 *   <gvm/trace.h>    Chrome/Perfetto traces of binds, jobs, faults
 *   <gvm/mm.h>       CPU address spaces (the process itself)
 *   <gvm/mm_model.h> a simulated address space driven by calls (tests)
 *   <gvm/svm.h>      memory attributes of mirrored memory (madvise)
 */
#ifndef GVM_GVM_H
#define GVM_GVM_H

#include <gvm/types.h>
#include <gvm/fence.h>
#include <gvm/ww.h>
#include <gvm/resv.h>
#include <gvm/lockset.h>
#include <gvm/sched.h>
#include <gvm/kernel.h>
#include <gvm/device.h>
#include <gvm/vm.h>
#include <gvm/sim.h>
#include <gvm/trace.h>
#include <gvm/mm.h>
#include <gvm/mm_model.h>
#include <gvm/svm.h>

#endif
