// SPDX-License-Identifier: MIT
/*
 * The fuzzers' deterministic mode (fuzz_driver --det; both engines):
 * an input runs on the deterministic scheduler (core/det.h) seeded by a
 * hash of its bytes, so that the run, its interleaving included, is a
 * function of the input alone and the input file is its own replay file.
 * gvm_fuzz_det_begin() comes before the input's world is built (every
 * thread gvm creates for it is then a thread of the run) and
 * gvm_fuzz_det_end() after it is torn down (the run ends once they have
 * all exited); the log's hash goes to the stats, and GVM_FUZZ_DET_LOG=PATH
 * writes the event log there.
 *
 * Not thread-safe: one input at a time, as the engines run them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_input.h"

#include "core/det.h"

int gvm_fuzz_det;

/* FNV-1a: the scheduler's seed for an input. */
static uint64_t input_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

void gvm_fuzz_det_begin(const struct gvm_fuzz_io *io)
{
	struct gvm_det_config cfg = {
		.seed = input_hash(io->in, (size_t)(io->end - io->in)),
	};

	if (gvm_fuzz_det)
		gvm__det_begin(&cfg);
}

void gvm_fuzz_det_end(struct gvm_fuzz_io *io)
{
	const char *log = getenv("GVM_FUZZ_DET_LOG");
	FILE *f;

	if (!gvm_fuzz_det)
		return;
	io->st->det_hash = gvm__det_end();
	if (log && *log && (f = fopen(log, "w"))) {
		gvm__det_dump(f, 0, SIZE_MAX);
		fclose(f);
	}
}
