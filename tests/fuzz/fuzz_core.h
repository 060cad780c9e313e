/* SPDX-License-Identifier: MIT */
/*
 * The VM_BIND fuzzer's engine (fuzz_core.c): decodes bytes into a sequence
 * of gvm operations on two simulated devices with one VM each (of the
 * process's mm, or of a model mm with gvm_fuzz_det), keeps a
 * shadow model of every byte and every mapping, and reports the first
 * divergence.  Three front ends use it: the CTest suite (test_fuzz.c:
 * the corpus, then random inputs), the standalone driver (fuzz_driver.c:
 * long runs, failing inputs written to files) and libFuzzer
 * (fuzz_libfuzzer.c, clang builds with GVM_LIBFUZZER=ON).
 */
#ifndef GVM_TEST_FUZZ_CORE_H
#define GVM_TEST_FUZZ_CORE_H

#include <stddef.h>
#include <stdint.h>

struct gvm_fuzz_stats {
	uint64_t inputs;		/* inputs run */
	uint64_t ops;			/* operations decoded and run */
	uint64_t errors_expected;	/* of them, failing as predicted */
	uint64_t execs;			/* kernels run */
	uint64_t bytes_checked;		/* compared against the model */
	uint64_t purges_seen;		/* WILLNEEDs that reported a purge */
	uint64_t migrations;		/* SVM: ranges moved by faults */
	uint64_t replay_limits;		/* SVM: inputs ended at a job failed
					   by the replay limit (a known
					   defect: docs/verification.md) */
	uint64_t det_hash;		/* --det: log hash of the last input */
};

/*
 * Runs one input.  0: gvm and the model agree; -1: they diverged (what
 * and where was printed on stderr).  Setting up the devices failed: -2.
 * Adds to @st (may be NULL).  @verbose: print each operation.
 */
int gvm_fuzz_run(const uint8_t *data, size_t size, struct gvm_fuzz_stats *st,
		 int verbose);

/*
 * The same for the SVM engine (fuzz_svm.c): SVM on the model mm, GPU
 * faults and migrations, the CPU side driven by calls.  Its inputs are
 * not the VM_BIND engine's.
 */
int gvm_fuzz_svm_run(const uint8_t *data, size_t size,
		     struct gvm_fuzz_stats *st, int verbose);

/*
 * Non-zero: both engines run each input on the deterministic scheduler
 * (core/det.h, fuzz_det.c), seeded by a hash of the input's bytes, so that
 * a run is a function of the input alone: the input file is its own replay
 * file.  The VM_BIND engine's user buffers are then in a model mm (the
 * process's own memory has events from a thread the scheduler does not
 * control).
 */
extern int gvm_fuzz_det;

#endif
