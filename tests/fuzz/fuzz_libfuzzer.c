// SPDX-License-Identifier: MIT
/*
 * libFuzzer entry (clang, cmake -DGVM_LIBFUZZER=ON): coverage-guided
 * inputs for fuzz_core.c.  A divergence aborts, so libFuzzer keeps the
 * input as a crash file; put it in tests/fuzz/corpus/ once fixed.
 */
#include <stdlib.h>

#include "fuzz_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (gvm_fuzz_run(data, size, NULL, 0) == -1)
		abort();
	return 0;
}
