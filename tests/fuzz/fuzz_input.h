/* SPDX-License-Identifier: MIT */
/*
 * What the fuzzer's engines share (fuzz_core.c: VM_BIND on the process's
 * memory, or the model mm with --det; fuzz_svm.c: SVM on the model mm):
 * reading operations' argument bytes from the input (missing bytes read
 * as 0), reporting, the first divergence ending the input, and the
 * deterministic mode (fuzz_det.c).  One struct gvm_fuzz_io per input run,
 * used by one thread.
 */
#ifndef GVM_TEST_FUZZ_INPUT_H
#define GVM_TEST_FUZZ_INPUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_core.h"

struct gvm_fuzz_io {
	const uint8_t *in, *end;	/* the bytes not decoded yet */
	struct gvm_fuzz_stats *st;	/* never NULL */
	int verbose;			/* print each operation */
	bool failed;			/* a divergence was reported */
};

static inline unsigned int gvm_fuzz_byte(struct gvm_fuzz_io *io)
{
	return io->in < io->end ? *io->in++ : 0;
}

static inline unsigned int gvm_fuzz_u16(struct gvm_fuzz_io *io)
{
	return gvm_fuzz_byte(io) | gvm_fuzz_byte(io) << 8;
}

static inline uint32_t gvm_fuzz_u32(struct gvm_fuzz_io *io)
{
	return gvm_fuzz_u16(io) | (uint32_t)gvm_fuzz_u16(io) << 16;
}

/* A divergence: printed, and the input fails. */
#define GVM_FUZZ_FAIL(io, ...)                                              \
	do {                                                                \
		fprintf(stderr, "fuzz: divergence: " __VA_ARGS__);          \
		fputc('\n', stderr);                                        \
		(io)->failed = true;                                        \
	} while (0)

#define GVM_FUZZ_SAY(io, ...)                                               \
	do {                                                                \
		if ((io)->verbose)                                          \
			fprintf(stderr, __VA_ARGS__);                       \
	} while (0)

/* @got is what the model predicted (@want); counts expected errors. */
static inline bool gvm_fuzz_check_rc(struct gvm_fuzz_io *io, const char *what,
				     int got, int want)
{
	if (got == want) {
		if (want)
			io->st->errors_expected++;
		return true;
	}
	GVM_FUZZ_FAIL(io, "%s returned %d, the model says %d", what, got, want);
	return false;
}

/*
 * --det (fuzz_det.c): with gvm_fuzz_det set, _begin starts the input's
 * deterministic run (call it with @io holding the whole input, before
 * building the world) and _end ends it (after tearing the world down),
 * storing the log's hash in io->st->det_hash.  Both do nothing otherwise.
 */
void gvm_fuzz_det_begin(const struct gvm_fuzz_io *io);
void gvm_fuzz_det_end(struct gvm_fuzz_io *io);

/* The harness itself failed (not gvm): say what, and stop. */
static inline void gvm_fuzz_die(const char *what)
{
	perror(what);
	abort();
}

#endif
