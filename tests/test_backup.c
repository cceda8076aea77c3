/*
 * tests/test_backup.c — envdb_backup() and envdb_restore()
 * (core/store_sqlite_backup.c) on a real deployment (tests/testdeploy.h): backups
 * taken while another process keeps provisioning and rotating are each a
 * consistent control plane (restored, `envdb check` finds no violation);
 * a backup never overwrites, is 0600 and leaves no temporary file; restore
 * refuses a file that is not an envdb control plane, an existing control
 * plane without --force, and one that a process has open; it removes a
 * stale -wal that SQLite would otherwise replay into the restored file.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testdeploy.h"

#define BACKUPS 5

static td T;

static void setup(void)
{
	td_setup(&T, NULL);
}

static void teardown(void)
{
	td_teardown(&T);
}

static void path_in(char *out, size_t cap, const char *name)
{
	ck_assert_int_lt(snprintf(out, cap, "%s/%s", T.dir, name), (int)cap);
}

/* Files in the deployment directory whose name contains `part`. */
static size_t files_named(const char *part)
{
	DIR *d = opendir(T.dir);
	struct dirent *de;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		n += strstr(de->d_name, part) != NULL;
	closedir(d);
	return n;
}

/* Put `backup` in place of the deployment's control plane; the status. */
static int restore(const char *backup, unsigned flags)
{
	envdb_ctx *ctx = NULL;
	int rc;

	ck_assert_msg(envdb_open(&ctx, T.manifest, ENVDB_OPEN_NO_STORE) == ENVDB_OK, "%s",
		      envdb_error_last()->message);
	rc = envdb_restore(ctx, backup, flags);
	envdb_close(ctx);
	return rc;
}

START_TEST(backup_is_new_private_and_complete)
{
	char b[PATH_MAX];
	struct stat st;
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "prod", NULL, "alice"), ENVDB_OK);
	path_in(b, sizeof(b), "b.db");
	ck_assert_msg(envdb_backup(ctx, b) == ENVDB_OK, "%s", envdb_error_last()->message);
	ck_assert_int_eq(stat(b, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_uint_eq(files_named(".tmp-"), 0);
	/* a single file: no -wal to carry along */
	ck_assert_uint_eq(files_named("b.db-"), 0);
	/* never overwritten, even by a backup of the same state */
	ck_assert_int_eq(envdb_backup(ctx, b), ENVDB_ERR_EXISTS);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "the file exists"));
	/* a directory that does not exist: an i/o error, nothing left */
	ck_assert_int_eq(envdb_backup(ctx, "/nonexistent-dir/b.db"), ENVDB_ERR_IO);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	envdb_close(ctx);

	/* the backup holds acme/prod only */
	ck_assert_int_eq(restore(b, ENVDB_RESTORE_FORCE), ENVDB_OK);
	ctx = td_open(&T);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 1);
	ck_assert_uint_eq(td_check(ctx), 0);
	envdb_close(ctx);
	ck_assert_uint_eq(files_named(".tmp-"), 0);
}
END_TEST

/* The writer: provision and rotate until the stop file appears. */
static int writer(void *arg)
{
	const char *stop = arg;
	envdb_ctx *ctx = NULL;
	char org[32];
	int i, rc;

	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		return 10;
	for (i = 0; i < 100000 && access(stop, F_OK) != 0; i++) {
		snprintf(org, sizeof(org), "org%d", i);
		rc = td_provision(ctx, org, "prod", NULL, "alice");
		if (rc == ENVDB_OK)
			rc = envdb_cred_rotate(ctx, org, "prod", NULL);
		if (rc == ENVDB_OK && i > 0) {
			snprintf(org, sizeof(org), "org%d", i - 1);
			rc = envdb_cred_rotate(ctx, org, "prod", NULL);
		}
		if (rc != ENVDB_OK) {
			fprintf(stderr, "writer: %s\n", envdb_error_last()->message);
			envdb_close(ctx);
			return 11;
		}
	}
	envdb_close(ctx);
	return 0;
}

START_TEST(backups_under_concurrent_writes_restore_clean)
{
	char stop[PATH_MAX], b[BACKUPS][PATH_MAX];
	size_t before[BACKUPS], restored[BACKUPS], i;
	envdb_ctx *ctx;
	struct timespec pause = {0, 50 * 1000 * 1000};
	int status;
	pid_t pid;

	path_in(stop, sizeof(stop), "stop");
	fflush(NULL);
	/* fork first: the writer inherits no context of ours (under valgrind
	 * it would be reported lost when the writer exits) */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(writer(stop));
	ctx = td_open(&T);
	/* let the writer get going */
	for (i = 0; i < 200 && td_env_count(ctx, NULL, NULL) < 3; i++)
		nanosleep(&pause, NULL);
	ck_assert_uint_ge(td_env_count(ctx, NULL, NULL), 3);
	for (i = 0; i < BACKUPS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "b%zu.db", i);
		path_in(b[i], sizeof(b[i]), name);
		before[i] = td_env_count(ctx, NULL, NULL);
		ck_assert_msg(envdb_backup(ctx, b[i]) == ENVDB_OK, "backup %zu: %s", i,
			      envdb_error_last()->message);
		nanosleep(&pause, NULL);
	}
	/* the writer was still writing through every backup */
	ck_assert_int_eq(waitpid(pid, &status, WNOHANG), 0);
	{
		FILE *f = fopen(stop, "w");
		ck_assert_ptr_nonnull(f);
		fclose(f);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer status %d", status);
	printf("backups under writes: %zu environments at the end\n",
	       td_env_count(ctx, NULL, NULL));
	envdb_close(ctx);

	for (i = 0; i < BACKUPS; i++) {
		ck_assert_msg(restore(b[i], ENVDB_RESTORE_FORCE) == ENVDB_OK, "restore %zu: %s", i,
			      envdb_error_last()->message);
		ctx = td_open(&T);
		ck_assert_uint_eq(td_check(ctx), 0);
		restored[i] = td_env_count(ctx, NULL, NULL);
		envdb_close(ctx);
		/* the state of one instant during the call, in order */
		ck_assert_uint_ge(restored[i], before[i]);
		if (i > 0)
			ck_assert_uint_ge(restored[i], restored[i - 1]);
	}
	/* the writer got on while the backups ran */
	ck_assert_uint_gt(restored[BACKUPS - 1], restored[0]);
}
END_TEST

/* PostgreSQL: the backup path of a control plane on a server is
 * pg_dump/pg_restore (man envdb(1), store copy).  Dumps taken while
 * another process keeps provisioning and rotating, each restored into a
 * database of its own, are each a consistent control plane: envdb opens
 * it (the deployment id kept) and envdb check finds no violation. */
START_TEST(pg_dump_under_concurrent_writes_restores_clean)
{
	char stop[PATH_MAX], dump[BACKUPS][PATH_MAX], cmd[4096], ci[1024], sql[256];
	char file[PATH_MAX + 32], manifest[PATH_MAX + 32], cp[PATH_MAX * 3], dep[64];
	size_t before[BACKUPS], restored[BACKUPS], i;
	envdb_ctx *ctx;
	struct timespec pause = {0, 50 * 1000 * 1000};
	int status;
	pid_t pid;

	path_in(stop, sizeof(stop), "stop");
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(writer(stop));
	ctx = td_open(&T);
	snprintf(dep, sizeof dep, "%s", envdb_deployment_id(ctx));
	for (i = 0; i < 200 && td_env_count(ctx, NULL, NULL) < 3; i++)
		nanosleep(&pause, NULL);
	ck_assert_uint_ge(td_env_count(ctx, NULL, NULL), 3);
	for (i = 0; i < BACKUPS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "dump%zu", i);
		path_in(dump[i], sizeof(dump[i]), name);
		before[i] = td_env_count(ctx, NULL, NULL);
		snprintf(cmd, sizeof cmd,
			 "'%s/pg_dump' -d \"%s\" --schema=%s --format=custom -f '%s' 2>&1",
			 sm_pg_bindir(), sm_pg_conninfo(), T.control, dump[i]);
		ck_assert_msg(system(cmd) == 0, "pg_dump %zu failed", i);
		nanosleep(&pause, NULL);
	}
	ck_assert_int_eq(waitpid(pid, &status, WNOHANG), 0);
	{
		FILE *f = fopen(stop, "w");
		ck_assert_ptr_nonnull(f);
		fclose(f);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer status %d", status);
	printf("pg_dump under writes: %zu environments at the end\n",
	       td_env_count(ctx, NULL, NULL));
	envdb_close(ctx);

	for (i = 0; i < BACKUPS; i++) {
		char db[64];
		FILE *f;

		snprintf(db, sizeof db, "%s_r%zu", T.control, i);
		snprintf(sql, sizeof sql, "CREATE DATABASE %s OWNER envdb_cp", db);
		ck_assert_int_eq(sm_pg_exec_super(sql, NULL, 0), 0);
		sm_pg_conninfo_db(ci, sizeof ci, db);
		snprintf(cmd, sizeof cmd,
			 "'%s/pg_restore' --no-owner --role=envdb_cp -d \"%s\" '%s' 2>&1",
			 sm_pg_bindir(), ci, dump[i]);
		ck_assert_msg(system(cmd) == 0, "pg_restore %zu failed", i);
		/* a deployment whose control plane is the restored schema */
		snprintf(file, sizeof file, "%s/restored%zu.conninfo", T.dir, i);
		ck_assert_ptr_nonnull(f = fopen(file, "w"));
		fputs(ci, f);
		fclose(f);
		ck_assert_int_eq(chmod(file, 0600), 0);
		snprintf(manifest, sizeof manifest, "%s/restored%zu.yaml", T.dir, i);
		snprintf(cp, sizeof cp,
			 "control_plane:\n  driver: postgresql\n  conninfo_file: %s\n  schema: %s\n",
			 file, T.control);
		td_manifest_variant(&T, manifest, cp);
		ck_assert_msg(envdb_open(&ctx, manifest, 0) == ENVDB_OK, "open restored %zu: %s", i,
			      envdb_error_last()->message);
		ck_assert_str_eq(envdb_deployment_id(ctx), dep);
		ck_assert_uint_eq(td_check(ctx), 0);
		restored[i] = td_env_count(ctx, NULL, NULL);
		envdb_close(ctx);
		ck_assert_uint_ge(restored[i], before[i]);
		if (i > 0)
			ck_assert_uint_ge(restored[i], restored[i - 1]);
	}
	ck_assert_uint_gt(restored[BACKUPS - 1], restored[0]);
}
END_TEST

START_TEST(restore_refusals)
{
	char b[PATH_MAX], junk[PATH_MAX], other[PATH_MAX], wal[PATH_MAX];
	envdb_ctx *ctx = td_open(&T), *holder;
	sqlite3 *db;
	FILE *f;

	ck_assert_int_eq(td_provision(ctx, "acme", "prod", NULL, "alice"), ENVDB_OK);
	path_in(b, sizeof(b), "b.db");
	ck_assert_int_eq(envdb_backup(ctx, b), ENVDB_OK);
	/* not with the control plane open in the same context */
	ck_assert_int_eq(envdb_restore(ctx, b, ENVDB_RESTORE_FORCE), ENVDB_ERR_MISUSE);
	envdb_close(ctx);

	/* an existing control plane: only with --force */
	ck_assert_int_eq(restore(b, 0), ENVDB_ERR_EXISTS);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "only with --force"));

	/* a process holding it open: refused, and nothing changes */
	holder = td_open(&T);
	ck_assert_uint_eq(td_env_count(holder, NULL, NULL), 1);
	ck_assert_int_eq(restore(b, ENVDB_RESTORE_FORCE), ENVDB_ERR_BUSY);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "is in use"));
	ck_assert_int_eq(td_provision(holder, "acme", "dev", NULL, "alice"), ENVDB_OK);
	envdb_close(holder);

	/* ... or another process holding it open (the SQLite lock bytes) */
	{
		char ready[PATH_MAX], done[PATH_MAX];
		struct timespec pause = {0, 20 * 1000 * 1000};
		int status, i;
		pid_t pid;

		path_in(ready, sizeof(ready), "ready");
		path_in(done, sizeof(done), "done");
		fflush(NULL);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			envdb_ctx *c = NULL;
			FILE *r;
			if (envdb_open(&c, T.manifest, 0) != ENVDB_OK || td_env_count(c, NULL, NULL) != 2)
				_exit(10);
			if ((r = fopen(ready, "w")) == NULL)
				_exit(11);
			fclose(r);
			for (i = 0; i < 1500 && access(done, F_OK) != 0; i++)
				nanosleep(&pause, NULL);
			envdb_close(c);
			_exit(0);
		}
		for (i = 0; i < 1500 && access(ready, F_OK) != 0; i++)
			nanosleep(&pause, NULL);
		ck_assert_int_eq(access(ready, F_OK), 0);
		ck_assert_int_eq(restore(b, ENVDB_RESTORE_FORCE), ENVDB_ERR_BUSY);
		ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "a process has it open"));
		f = fopen(done, "w");
		ck_assert_ptr_nonnull(f);
		fclose(f);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "holder %d", status);
	}

	/* not an SQLite file; an SQLite file of something else */
	path_in(junk, sizeof(junk), "junk.db");
	f = fopen(junk, "w");
	ck_assert_ptr_nonnull(f);
	fputs("this is not a database, but it is long enough to look like one ......\n", f);
	fclose(f);
	ck_assert_int_eq(restore(junk, ENVDB_RESTORE_FORCE), ENVDB_ERR_INVALID);
	path_in(other, sizeof(other), "other.db");
	ck_assert_int_eq(sqlite3_open(other, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1)", NULL,
				      NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	ck_assert_int_eq(restore(other, ENVDB_RESTORE_FORCE), ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "not an envdb control plane"));
	ck_assert_int_eq(restore("/nonexistent-dir/b.db", ENVDB_RESTORE_FORCE), ENVDB_ERR_IO);
	ctx = td_open(&T);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 2); /* untouched */
	envdb_close(ctx);
	ck_assert_uint_eq(files_named(".tmp-"), 0);

	/* no control plane, a stale -wal left next to where it was: the
	 * restore goes in without --force and the -wal is not replayed */
	ck_assert_int_eq(unlink(T.control), 0);
	ck_assert_int_lt(snprintf(wal, sizeof(wal), "%s-wal", T.control), (int)sizeof(wal));
	f = fopen(wal, "w");
	ck_assert_ptr_nonnull(f);
	fputs("stale write-ahead log", f);
	fclose(f);
	ck_assert_msg(restore(b, 0) == ENVDB_OK, "%s", envdb_error_last()->message);
	ck_assert_int_ne(access(wal, F_OK) == 0 && td_file_contains(wal, "stale", 5), 1);
	ctx = td_open(&T);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 1);
	ck_assert_uint_eq(td_check(ctx), 0);
	envdb_close(ctx);
}
END_TEST

static Suite *backup_suite(void)
{
	Suite *s = suite_create("backup");
	TCase *tc = tcase_create("backup");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	if (!sm_pg()) {
		/* envdb backup / restore: the SQLite file's */
		tcase_add_test(tc, backup_is_new_private_and_complete);
		tcase_add_test(tc, backups_under_concurrent_writes_restore_clean);
		tcase_add_test(tc, restore_refusals);
	} else {
		tcase_add_test(tc, pg_dump_under_concurrent_writes_restores_clean);
	}
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(backup_suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
