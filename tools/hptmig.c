/* SPDX-License-Identifier: MIT */
/*
 * hptmig: the command-line entry point. Dispatches to one cmd_<name>.c per
 * subcommand (the table is generated at build time) and runs benchmarks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

#include "commands.inc"

static void usage(FILE *f)
{
	fprintf(f, "usage: hptmig COMMAND [args...]\n\n"
		   "Live migration of a POWER (pseries) guest's hashed page table,\n"
		   "wire-compatible with QEMU's migration stream.\n\ncommands:\n");
	for (size_t i = 0; hm_commands[i]; i++)
		fprintf(f, "  %-10s %s\n", hm_commands[i]->name, hm_commands[i]->summary);
	fprintf(f, "  %-10s %s\n", "bench", "run a benchmark (hptmig bench --list)");
	fprintf(f, "\n'hptmig COMMAND --help' shows a command's options.\n");
}

static int run_bench(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : NULL;
	bool json = false;
	if (!name || strcmp(name, "--list") == 0 || strcmp(name, "--help") == 0) {
		FILE *f = name ? stdout : stderr;
		fprintf(f, "usage: hptmig bench NAME [--json] [options]\n\nbenchmarks:\n");
		for (size_t i = 0; hm_benches[i]; i++)
			fprintf(f, "  %-16s %s\n", hm_benches[i]->name, hm_benches[i]->summary);
		return name ? 0 : 2;
	}
	for (size_t i = 0; hm_benches[i]; i++) {
		if (strcmp(hm_benches[i]->name, name) != 0)
			continue;
		/* --json is common to every benchmark: strip it here. */
		int n = 0;
		char **args = calloc((size_t)argc, sizeof(char *));
		if (!args)
			return 1;
		for (int a = 1; a < argc; a++) {
			if (strcmp(argv[a], "--json") == 0)
				json = true;
			else
				args[n++] = argv[a];
		}
		json_t *result = NULL;
		int rc = hm_benches[i]->run(n, args, &result);
		free(args);
		if (rc != 0) {
			json_decref(result);
			return rc;
		}
		if (json) {
			tool_print_json(result);
		} else {
			char *s = json_dumps(result, JSON_INDENT(2));
			if (s)
				printf("%s\n", s);
			free(s);
			json_decref(result);
		}
		return 0;
	}
	tool_fail("bench", "unknown benchmark '%s' (hptmig bench --list)", name);
	return 2;
}

static int dispatch(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("hptmig %s\n", HPTMIG_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "bench") == 0)
		return run_bench(argc - 1, argv + 1);
	for (size_t i = 0; hm_commands[i]; i++) {
		if (strcmp(hm_commands[i]->name, argv[1]) != 0)
			continue;
		if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
			fputs(hm_commands[i]->usage, stdout);
			return 0;
		}
		return hm_commands[i]->run(argc - 1, argv + 1);
	}
	tool_fail(argv[1], "unknown command (hptmig --help lists them)");
	return 2;
}

int main(int argc, char **argv)
{
	int rc = dispatch(argc, argv);
	tool_usage_json(argc, argv, rc);
	return rc;
}
