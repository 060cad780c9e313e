// SPDX-License-Identifier: MIT
/*
 * The fault-injection counter of core/alloc.h (the wrappers are inline).
 * Atomic; tests set it, the library decrements it.
 */
#include "core/alloc.h"

long gvm__alloc_fail_nth;
