// SPDX-License-Identifier: MIT
/*
 * gvm info: the simulated system the other commands run on, as
 * gvm_device_query() reports it: each device's name, VRAM (size, free),
 * VA bits, engines per class, TLB entries, page sizes; then the links
 * between devices (none until device links exist).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "gvm_tool.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: gvm info [--devices N] [--vram SIZE]\n");
}

int gvm_tool_info(int argc, char **argv)
{
	struct gvm_tool_system sys = { 0 };
	char b1[32], b2[32], b3[64];
	unsigned int i;
	int r;

	for (int a = 0; a < argc; a++) {
		if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
			usage(stdout);
			return 0;
		}
		r = gvm_tool_system_option(argc, argv, &a, "info", &sys);
		if (r == 1)
			continue;
		if (!r)
			fprintf(stderr, "gvm info: unknown argument '%s'\n",
				argv[a]);
		usage(stderr);
		return 2;
	}
	if (gvm_tool_system_create(&sys))
		return 1;

	printf("simulated system: %u device%s (gvm's built-in GPU "
	       "simulator)\n",
	       sys.nr_devices, sys.nr_devices == 1 ? "" : "s");
	for (i = 0; i < sys.nr_devices; i++) {
		struct gvm_device_info di;
		int err = gvm_device_query(sys.dev[i], &di);

		if (err) {
			fprintf(stderr, "gvm info: query: %s\n",
				strerror(-err));
			gvm_tool_system_destroy(&sys);
			return 1;
		}
		printf("device %u: %s\n", i, di.name);
		printf("  VRAM        %s (%s free)%s\n",
		       gvm_tool_bytes(b1, sizeof(b1), di.vram_size),
		       gvm_tool_bytes(b2, sizeof(b2), di.vram_free),
		       di.vram_mappable ? ", all CPU-mappable" : "");
		printf("  VA bits     %u (%s of GPU virtual address space, "
		       "%u-level page tables)\n",
		       di.va_bits,
		       gvm_tool_bytes(b1, sizeof(b1), 1ull << di.va_bits),
		       di.va_bits == GVM_VA_BITS_57 ? 5 : 4);
		printf("  engines     compute %u, copy %u; bind queues run on "
		       "the CPU\n",
		       di.nr_compute, di.nr_copy);
		printf("  TLB         %u entries per engine\n", di.tlb_entries);
		printf("  page sizes  %s\n",
		       gvm_tool_page_sizes(b3, sizeof(b3), di.page_sizes));
	}
	printf("links: none\n");
	gvm_tool_system_destroy(&sys);
	return 0;
}
