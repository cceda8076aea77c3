/*
 * tests/fuzz/fuzz_cli.c — libFuzzer harness of the envdb command line
 * (core/cli.c and the handlers' option parsing in core/cli_*.c): the input,
 * split at NUL bytes, is argv; the real main runs (compiled as
 * envdb_cli_main) against a manifest that does not exist, so every path up
 * to opening a context — global options, command lookup, each command's
 * options, ORG/SLUG, durations, numbers, --help — sees arbitrary words.
 * `init` (which creates files) is left out.  Any argv must give an exit
 * status of the documented set, never a crash or a leak.  Seeds:
 * corpus/cli/ (NUL-separated words).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_main.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	char *buf, *argv[MAX_ARGS + 2];
	int argc = 0, rc;
	size_t i, start = 0;

	if (!ready) {
		char dir[] = "/tmp/envdb-fuzz-cli-XXXXXX";

		/* no envdb.yaml anywhere it looks */
		if (mkdtemp(dir) == NULL || chdir(dir) != 0)
			abort();
		setenv("ENVDB_MANIFEST", "/nonexistent/envdb.yaml", 1);
		setenv("ENVDB_LOG_LEVEL", "error", 1);
		ready = 1;
	}
	if (size > 4096)
		return 0;
	buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	argv[argc++] = (char *)"envdb";
	for (i = 0; i <= size && argc <= MAX_ARGS; i++)
		if (i == size || buf[i] == '\0') {
			argv[argc++] = buf + start;
			start = i + 1;
		}
	argv[argc] = NULL;
	for (i = 1; i < (size_t)argc; i++)
		if (strcmp(argv[i], "init") == 0) {
			free(buf);
			return 0;
		}
	rc = envdb_cli_main(argc, argv);
	fflush(stdout);
	/* 0, the sysexits the command documents, or 1 (a check that failed) */
	if (!(rc == 0 || rc == 1 || (rc >= 64 && rc <= 78)))
		abort();
	free(buf);
	return 0;
}
