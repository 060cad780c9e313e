// SPDX-License-Identifier: MIT
/* gvm demo: placeholder until the core pieces land. */
#include <stdio.h>

#include "gvm_tool.h"

int gvm_tool_demo(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("gvm demo: nothing yet\n");
	return 0;
}
