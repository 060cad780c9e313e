/* SPDX-License-Identifier: MIT */
/*
 * Compile-time selection of the page-table format (see fmt_sim.h for the
 * names a format header must define).  One format per build for now.
 */
#ifndef GVM_PT_FMT_H
#define GVM_PT_FMT_H

#include "pt/fmt_sim.h"

#endif
