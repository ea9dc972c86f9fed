/* SPDX-License-Identifier: MIT */
/*
 * hptmig: the command-line entry point. Dispatches to one cmd_<name>.c per
 * subcommand (the table is generated at build time), runs benchmarks, and
 * answers `help [COMMAND]` and `-V`/`--version` (exit 0; unknown names: 2).
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
	fprintf(f, "  %-10s %s\n", "help", "this list, or a command's options (hptmig help COMMAND)");
	fprintf(f, "\noptions: -h, --help (this list); -V, --version\n"
		   "'hptmig help COMMAND' or 'hptmig COMMAND --help' shows a command's options.\n");
}

/* `hptmig -V`: the CMake project version, and git describe of the tree it
 * was configured from when that was a git checkout. */
static int print_version(void)
{
#ifdef HPTMIG_GIT_DESCRIBE
	printf("hptmig %s (git %s)\n", HPTMIG_VERSION, HPTMIG_GIT_DESCRIBE);
#else
	printf("hptmig %s\n", HPTMIG_VERSION);
#endif
	return 0;
}

static void bench_list(FILE *f)
{
	fprintf(f, "usage: hptmig bench NAME [--json] [options]\n"
		   "       hptmig bench NAME --help\n\nbenchmarks:\n");
	for (size_t i = 0; hm_benches[i]; i++)
		fprintf(f, "  %-16s %s\n", hm_benches[i]->name, hm_benches[i]->summary);
}

/* `hptmig bench NAME --help` (or -h anywhere after NAME): its synopsis. */
static int bench_help(const struct hm_bench *b)
{
	printf("usage: %s\n\n%s\n", b->usage ? b->usage : b->name, b->summary);
	return 0;
}

/* `hptmig help [COMMAND]` and `hptmig help bench [NAME]`. */
static int run_help(int argc, char **argv)
{
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	const char *name = argv[1];
	if (strcmp(name, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(name, "bench") == 0) {
		if (argc < 3) {
			bench_list(stdout);
			return 0;
		}
		for (size_t i = 0; hm_benches[i]; i++)
			if (strcmp(hm_benches[i]->name, argv[2]) == 0)
				return bench_help(hm_benches[i]);
		tool_fail("help", "unknown benchmark '%s' (hptmig bench --list)", argv[2]);
		return 2;
	}
	for (size_t i = 0; hm_commands[i]; i++) {
		if (strcmp(hm_commands[i]->name, name) == 0) {
			fputs(hm_commands[i]->usage, stdout);
			return 0;
		}
	}
	tool_fail("help", "unknown command '%s' (hptmig help lists them)", name);
	return 2;
}

static int run_bench(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : NULL;
	bool json = false;
	if (!name || strcmp(name, "--list") == 0 || strcmp(name, "--help") == 0 ||
	    strcmp(name, "-h") == 0) {
		bench_list(name ? stdout : stderr);
		return name ? 0 : 2;
	}
	for (size_t i = 0; hm_benches[i]; i++) {
		if (strcmp(hm_benches[i]->name, name) != 0)
			continue;
		for (int a = 2; a < argc; a++)
			if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0)
				return bench_help(hm_benches[i]);
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
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		return print_version();
	if (strcmp(argv[1], "help") == 0)
		return run_help(argc - 1, argv + 1);
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
