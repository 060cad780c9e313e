/* SPDX-License-Identifier: MIT */
/* Subcommands of the gvm tool; each returns the process exit status. */
#ifndef GVM_TOOL_H
#define GVM_TOOL_H

int gvm_tool_demo(int argc, char **argv);

#endif
