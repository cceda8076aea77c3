/*
 * tests/pg_exec.c — run a command against a throwaway PostgreSQL cluster
 * (tests/pg_harness.c): start the cluster, export ENVDB_TEST_PG_ADMIN (a
 * libpq connection string of its superuser, for `admin_conninfo_env=`),
 * run the command, stop the cluster, exit with the command's status.  Exits
 * 77 when no PostgreSQL server binaries are installed.  Used by
 * tests/test_conformance.sh to run envdb-conformance on the postgres
 * adapter.
 *
 *   pg_exec COMMAND [ARGUMENT...]
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pg_harness.h"

int main(int argc, char **argv)
{
	char err[4096], conninfo[1024];
	pg_harness *h = NULL;
	pid_t pid;
	int rc, status = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: pg_exec COMMAND [ARGUMENT...]\n");
		return 2;
	}
	rc = pg_harness_start(&h, err, sizeof(err));
	if (rc == PG_HARNESS_SKIP) {
		fprintf(stderr, "pg_exec: %s\n", err);
		return 77;
	}
	if (rc != 0) {
		fprintf(stderr, "pg_exec: cannot start a PostgreSQL cluster: %s\n", err);
		return 99;
	}
	pg_harness_conninfo(conninfo, sizeof(conninfo), h, pg_harness_super_user(h),
			    pg_harness_super_password(h), "postgres");
	setenv("ENVDB_TEST_PG_ADMIN", conninfo, 1);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		execvp(argv[1], argv + 1);
		perror("pg_exec: exec");
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0) {
		perror("pg_exec");
		status = 99 << 8;
	}
	pg_harness_stop(h);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}
