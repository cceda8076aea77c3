/*
 * tests/turso_exec.c — run a command against a throwaway Turso: the
 * Platform API emulator (tests/turso_emulator.c, in a thread of this
 * process) in front of a real libSQL server (`tursodb --sync-server`).
 * Exports ENVDB_TEST_TURSO_TOKEN (the one API token the emulator accepts,
 * for `api_token_env=`) and ENVDB_TEST_TURSO_API (its base URL), replaces
 * every "@TURSO_API_URL@" in the arguments with that URL, runs the command,
 * stops everything, and exits with the command's status.  Exits 77 when no
 * tursodb binary is found (ENVDB_TURSODB, tests/turso-setup.sh).  Used by
 * tests/test_conformance.sh to run envdb-conformance on the turso adapter.
 *
 *   turso_exec COMMAND [ARGUMENT...]
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "turso_emulator.h"

static char *substitute(const char *arg, const char *url)
{
	static const char ph[] = "@TURSO_API_URL@";
	const char *p = strstr(arg, ph);
	char *out;

	if (p == NULL)
		return strdup(arg);
	out = malloc(strlen(arg) + strlen(url) + 1);
	if (out != NULL)
		sprintf(out, "%.*s%s%s", (int)(p - arg), arg, url, p + sizeof(ph) - 1);
	return out;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/envdb-turso-exec-XXXXXX", token[64], cmd[128];
	unsigned char r[16];
	const char *bin;
	turso_emu_options o = { 0 };
	turso_emu *emu = NULL;
	pid_t libsql = 0, pid;
	int port = 0, status = 0, i;
	char **args;

	if (argc < 2) {
		fprintf(stderr, "usage: turso_exec COMMAND [ARGUMENT...]\n");
		return 2;
	}
	bin = turso_libsql_binary();
	if (bin == NULL) {
		fprintf(stderr, "turso_exec: no tursodb binary (set ENVDB_TURSODB)\n");
		return 77;
	}
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		return 99;
	strcpy(token, "tursoexectoken");
	for (i = 0; i < (int)sizeof r; i++)
		sprintf(token + strlen(token), "%02x", r[i]);
	if (mkdtemp(dir) == NULL || turso_libsql_start(bin, dir, &libsql, &port) != 0) {
		fprintf(stderr, "turso_exec: cannot start %s --sync-server\n", bin);
		return 99;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	o.org = "acme";
	o.api_token = token;
	o.groups = "default,other";
	o.libsql_port = port;
	if (turso_emu_start(&emu, &o) != 0) {
		turso_libsql_stop(libsql);
		return 99;
	}
	setenv("ENVDB_TEST_TURSO_TOKEN", token, 1);
	setenv("ENVDB_TEST_TURSO_API", turso_emu_api_url(emu), 1);
	args = calloc((size_t)argc, sizeof(*args));
	for (i = 1; args != NULL && i < argc; i++)
		args[i - 1] = substitute(argv[i], turso_emu_api_url(emu));
	fflush(NULL);
	pid = args != NULL ? fork() : -1;
	if (pid == 0) {
		execvp(args[0], args);
		perror("turso_exec: exec");
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0) {
		perror("turso_exec");
		status = 99 << 8;
	}
	for (i = 0; args != NULL && i < argc - 1; i++)
		free(args[i]);
	free(args);
	turso_emu_stop(emu);
	turso_libsql_stop(libsql);
	curl_global_cleanup();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "turso_exec: cannot remove %s\n", dir);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}
