/*
 * tests/test_store.c — the control-plane store (core/store.c) on both of
 * its backends (tests/store_matrix.h: real SQLite files, then schemas on a
 * real PostgreSQL cluster the test starts): open/create/version refusal,
 * typed insert/get/update/list/delete per object, the constraints and their
 * messages, transactions (nesting, rollback), locking between two
 * connections, the legacy shim; and what is particular to each backend
 * (file modes and SQLite's codes; PostgreSQL's bad conninfo, a server that
 * is down, a schema of another role, a connection lost mid-transaction).
 */
#include "config.h"

#include <check.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <sqlite3.h>

#include "schema.h"
#include "store.h"
#include "store_matrix_cp.h"
#include "store_sqlite.h"

#define CT "v1:k1:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj"

static char dir[256];
static char path[512];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/envdb-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	sm_fresh(dir);
	snprintf(path, sizeof path, "%s", sm_name());
}

static void teardown(void)
{
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Another control plane next to it (a file, or a schema). */
static void other_name(char *out, size_t cap)
{
	if (sm_pg())
		snprintf(out, cap, "%s_o", path);
	else
		snprintf(out, cap, "%s/other.db", dir);
}

static int raw_exec(const char *sql)
{
	return cp_raw_exec(sql, NULL, 0);
}

static envdbi_store *open_store(bool legacy)
{
	envdbi_store *s = NULL;
	int rc = cp_open(&s, 2000, legacy, ENVDB_OPEN_CREATE);
	ck_assert_msg(rc == 0, "open: %s", envdb_error_last()->message);
	return s;
}

static void mkenv(envdbi_store *s, const char *org, const char *slug, int is_default,
		  const char *status, char id[37])
{
	envdb_environment e = {.organization_id = (char *)org,
			       .slug = (char *)slug,
			       .is_default = is_default,
			       .status = (char *)status,
			       .created_by = "tester"};
	int rc = envdbi_store_env_insert(s, &e, id);
	ck_assert_msg(rc == 0, "insert %s/%s: %s", org, slug, envdb_error_last()->message);
}

static void mkdb(envdbi_store *s, const char *env_id, const char *name, char id[37])
{
	envdb_database d = {.environment_id = (char *)env_id,
			    .database_name = (char *)name,
			    .database_url = "file:/x.db",
			    .driver = "sqlite",
			    .storage_limit_mb = 100};
	int rc = envdbi_store_db_insert(s, &d, id);
	ck_assert_msg(rc == 0, "insert db %s: %s", name, envdb_error_last()->message);
}

static int mkcred(envdbi_store *s, const char *db_id, const char *auth, const char *status,
		  char id[37])
{
	envdb_credential c = {.environment_database_id = (char *)db_id,
			      .secret_ciphertext = CT,
			      .key_id = "k1",
			      .handle = "",
			      .authorization = (char *)auth,
			      .status = (char *)status};
	return envdbi_store_cred_insert(s, &c, id);
}

static void expect_error(int rc, int status, const char *message)
{
	ck_assert_msg(rc == status, "rc %d (want %d): %s", rc, status, envdb_error_last()->message);
	ck_assert_str_eq(envdb_error_last()->message, message);
}

/* ---- open --------------------------------------------------------------- */

START_TEST(open_create_and_versions)
{
	envdbi_store *s = NULL;
	sqlite3 *raw = NULL;
	int v = 0;
	char want[96];

	ck_assert_int_eq(cp_open(&s, 1000, false, 0), ENVDB_ERR_NOT_FOUND);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "run envdb init"));
	s = open_store(false);
	ck_assert_int_eq(envdbi_store_version(s), ENVDBI_STORE_VERSION);
	ck_assert(!envdbi_store_legacy(s));
	ck_assert_str_eq(envdbi_store_driver(s), sm_store_name());
	if (!sm_pg()) {
		ck_assert_str_eq(envdbi_store_describe(s), path);
	} else {
		/* server, database and schema; never the password */
		char sch[600];
		snprintf(sch, sizeof sch, "/envdb_cp schema %s", path);
		ck_assert_ptr_nonnull(strstr(envdbi_store_describe(s), sch));
		ck_assert_ptr_nonnull(strstr(envdbi_store_describe(s), "postgresql://127.0.0.1:"));
	}
	envdbi_store_close(s);

	/* reopen without CREATE; WAL and the version are persistent */
	ck_assert_int_eq(cp_open(&s, 1000, false, 0), 0);
	envdbi_store_close(s);
	snprintf(want, sizeof want, "schema version 99 is newer than this libenvdb supports (%d)",
		 ENVDBI_STORE_VERSION);
	if (sm_pg()) {
		char got[64];
		ck_assert_int_eq(sm_pg_query1("SELECT version FROM envdb_store_version", got,
					      sizeof got),
				 1);
		ck_assert_int_eq(atoi(got), ENVDBI_STORE_VERSION);
		/* a control plane written by a newer envdb is refused, unchanged */
		ck_assert_int_eq(raw_exec("UPDATE envdb_store_version SET version = 99"), 0);
		ck_assert_int_eq(cp_open(&s, 1000, false, ENVDB_OPEN_CREATE),
				 ENVDB_ERR_NOT_SUPPORTED);
		ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, want));
		ck_assert_ptr_null(s);
		sm_pg_query1("SELECT version FROM envdb_store_version", got, sizeof got);
		ck_assert_str_eq(got, "99");
		return;
	}
	ck_assert_int_eq(sqlite3_open(path, &raw), SQLITE_OK);
	sqlite3_stmt *st;
	sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &st, NULL);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	ck_assert_int_eq(v, ENVDBI_STORE_VERSION);
	/* a file written by a newer envdb is refused clearly */
	ck_assert_int_eq(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);
	ck_assert_int_eq(envdbi_store_open_path(&s, path, 1000, false, 0), ENVDB_ERR_NOT_SUPPORTED);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, want));
	ck_assert_ptr_null(s);
}
END_TEST

/* Read sys_deployment.id of control plane `p` with plain SQLite or libpq
 * ("" if none). */
static void raw_deployment_id(const char *p, char out[64])
{
	sqlite3 *raw = NULL;
	sqlite3_stmt *st = NULL;

	out[0] = '\0';
	if (sm_pg()) {
		ck_assert_str_eq(p, path);
		sm_pg_query1("SELECT id FROM sys_deployment", out, 64);
		return;
	}
	ck_assert_int_eq(sqlite3_open(p, &raw), SQLITE_OK);
	if (sqlite3_prepare_v2(raw, "SELECT id FROM sys_deployment", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		snprintf(out, 64, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(raw);
}

/* Issue 16 §3: a new control plane has a deployment id, it is stored in
 * the file, stable across opens, different for another control plane, and
 * neither UPDATE nor DELETE can change it. */
START_TEST(deployment_id_created_and_immutable)
{
	envdbi_store *s = open_store(false), *s2 = NULL;
	char id[37], raw_id[64], other[600];

	ck_assert(envdbi_uuid_valid(envdbi_store_deployment_id(s)));
	ck_assert_int_gt(envdbi_store_deployment_created_at(s), 0);
	snprintf(id, sizeof id, "%s", envdbi_store_deployment_id(s));
	envdbi_store_close(s);
	raw_deployment_id(path, raw_id);
	ck_assert_str_eq(raw_id, id);
	ck_assert_int_eq(cp_open(&s, 1000, false, 0), 0);
	ck_assert_str_eq(envdbi_store_deployment_id(s), id);
	envdbi_store_close(s);

	other_name(other, sizeof other);
	ck_assert_int_eq(cp_open_named(&s2, other, 1000, false, ENVDB_OPEN_CREATE), 0);
	ck_assert(envdbi_uuid_valid(envdbi_store_deployment_id(s2)));
	ck_assert_str_ne(envdbi_store_deployment_id(s2), id);
	envdbi_store_close(s2);

	ck_assert_int_ne(raw_exec("UPDATE sys_deployment SET id = "
				  "'00000000-0000-4000-8000-000000000000'"),
			 0);
	ck_assert_int_ne(raw_exec("DELETE FROM sys_deployment"), 0);
	if (sm_pg())
		ck_assert_int_ne(raw_exec("TRUNCATE sys_deployment"), 0);
	raw_deployment_id(path, raw_id);
	ck_assert_str_eq(raw_id, id);
}
END_TEST

/* A control plane of schema version 1 (before deployment ids) gets one on
 * its first open, keeps its rows, and keeps that id afterwards. */
START_TEST(deployment_id_migrated_from_version_1)
{
	envdbi_store *s = open_store(false);
	envdb_environment *e = NULL;
	char env_id[37], id[64], again[64];

	mkenv(s, "acme", "prod", 1, "active", env_id);
	envdbi_store_close(s);
	/* Make it what envdb 0.1 wrote: version 1, no sys_deployment. */
	ck_assert_int_eq(raw_exec(sm_pg() ? "DROP TABLE sys_deployment; UPDATE envdb_store_version "
					    "SET version = 1"
					  : "DROP TRIGGER sys_deployment_kept; DROP TABLE "
					    "sys_deployment; PRAGMA user_version = 1"),
			 0);
	raw_deployment_id(path, id);
	ck_assert_str_eq(id, "");

	ck_assert_int_eq(cp_open(&s, 1000, false, 0), 0);
	ck_assert_int_eq(envdbi_store_version(s), ENVDBI_STORE_VERSION);
	ck_assert(envdbi_uuid_valid(envdbi_store_deployment_id(s)));
	ck_assert_int_eq(envdbi_store_env_get(s, &e, env_id), 0);
	ck_assert_str_eq(e->slug, "prod");
	envdb_environment_free(e);
	envdbi_store_close(s);
	raw_deployment_id(path, id);
	ck_assert(envdbi_uuid_valid(id));
	ck_assert_int_eq(cp_open(&s, 1000, false, 0), 0);
	snprintf(again, sizeof again, "%s", envdbi_store_deployment_id(s));
	envdbi_store_close(s);
	ck_assert_str_eq(again, id);
}
END_TEST

/* The control plane (and its WAL) is created readable by its owner only,
 * whatever the process umask: it names every database and holds the
 * ciphertexts of every credential. */
START_TEST(open_create_owner_only)
{
	envdbi_store *s = NULL;
	char wal[sizeof path + 8];
	struct stat st;
	mode_t old = umask(022);

	s = open_store(false);
	umask(old);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_msg((st.st_mode & 0777) == 0600, "control plane mode %04o",
		      (unsigned)(st.st_mode & 0777));
	snprintf(wal, sizeof wal, "%s-wal", path);
	if (stat(wal, &st) == 0)
		ck_assert_msg((st.st_mode & 0777) == 0600, "wal mode %04o",
			      (unsigned)(st.st_mode & 0777));
	envdbi_store_close(s);
}
END_TEST

/* Issue 18: a new control plane has 2 KiB pages (a commit writes a page
 * per b-tree it touches), and only the indexes the invariants and the
 * queries need: no index on environment status or on member user alone. */
START_TEST(open_create_layout)
{
	envdbi_store *s = open_store(false);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	envdbi_store_close(s);
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), 2048);
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
					    "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
					    "AND name IN ('sys_environment_status', "
					    "'sys_environment_member_user')",
					    -1, &st, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
}
END_TEST

START_TEST(open_refuses_foreign_files)
{
	envdbi_store *s = NULL;
	sqlite3 *raw = NULL;
	char other[600];
	FILE *f;

	snprintf(other, sizeof other, "%s/other.db", dir);
	ck_assert_int_eq(sqlite3_open(other, &raw), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(raw, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);
	ck_assert_int_eq(envdbi_store_open_path(&s, other, 1000, false, ENVDB_OPEN_CREATE),
			 ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "not an envdb control plane"));

	snprintf(other, sizeof other, "%s/garbage.db", dir);
	f = fopen(other, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 200; i++)
		fputs("this is not sqlite ", f);
	fclose(f);
	ck_assert_int_eq(envdbi_store_open_path(&s, other, 1000, false, 0), ENVDB_ERR_INVALID);
	ck_assert_ptr_null(s);
}
END_TEST

/* What SQLite says while opening decides the status: only a damaged file
 * or one that is not a database is INVALID (exit 65); a read-only file
 * system or missing permissions is IO (exit 74), so that nobody "restores"
 * a healthy file. */
START_TEST(open_sqlite_status_mapping)
{
	static const struct {
		int sqlite_rc, status;
	} cases[] = {
		{SQLITE_READONLY, ENVDB_ERR_IO},
		{SQLITE_READONLY_CANTINIT, ENVDB_ERR_IO},
		{SQLITE_READONLY_RECOVERY, ENVDB_ERR_IO},
		{SQLITE_READONLY_DIRECTORY, ENVDB_ERR_IO},
		{SQLITE_CANTOPEN, ENVDB_ERR_IO},
		{SQLITE_PERM, ENVDB_ERR_IO},
		{SQLITE_IOERR, ENVDB_ERR_IO},
		{SQLITE_IOERR_WRITE, ENVDB_ERR_IO},
		{SQLITE_IOERR_SHMOPEN, ENVDB_ERR_IO},
		{SQLITE_FULL, ENVDB_ERR_IO},
		{SQLITE_NOTADB, ENVDB_ERR_INVALID},
		{SQLITE_CORRUPT, ENVDB_ERR_INVALID},
		{SQLITE_BUSY, ENVDB_ERR_BUSY},
		{SQLITE_BUSY_RECOVERY, ENVDB_ERR_BUSY},
		{SQLITE_NOMEM, ENVDB_ERR_NOMEM},
		{SQLITE_OK, ENVDB_OK},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ck_assert_msg(envdbi_store_status_of_sqlite(cases[i].sqlite_rc) == cases[i].status,
			      "sqlite %d -> %d, want %d", cases[i].sqlite_rc,
			      envdbi_store_status_of_sqlite(cases[i].sqlite_rc), cases[i].status);
}
END_TEST

/* Open `path` as a process that may not write it: as root (who bypasses
 * permissions) after dropping to nobody, else with the modes alone.
 * Exit 0 when the open failed with ENVDB_ERR_IO and a message naming the
 * cause `want`; 1 otherwise (the message on stderr). */
static int open_unwritable_child(const char *want)
{
	envdbi_store *s = NULL;
	int rc;

	if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
		return 2;
	if (access(path, R_OK) != 0)
		return 3; /* $TMPDIR is not open to nobody: nothing to learn here */
	rc = envdbi_store_open_path(&s, path, 1000, false, 0);
	if (rc == ENVDB_ERR_IO && strstr(envdb_error_last()->message, want) != NULL &&
	    strstr(envdb_error_last()->message, "cannot be opened for writing") != NULL &&
	    strstr(envdb_error_last()->message, "not an SQLite database") == NULL)
		return 0;
	fprintf(stderr, "open as uid %d: status %d: %s\n", (int)geteuid(), rc,
		envdb_error_last()->message);
	envdbi_store_close(s);
	return 1;
}

static void expect_unwritable(const char *want)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(open_unwritable_child(want));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
		fprintf(stderr, "SKIP read-only control plane (%s): %s is not readable by nobody\n",
			want, path);
		return;
	}
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "read-only control plane (%s): child status 0x%x", want, status);
}

START_TEST(open_read_only_reports_the_cause)
{
	envdbi_store *s = open_store(false);
	envdbi_store_close(s);
	/* Others may enter the directory and read the file, not write it. */
	ck_assert_int_eq(chmod(dir, 0555), 0);
	ck_assert_int_eq(chmod(path, 0444), 0);
	expect_unwritable("the file is not writable: Permission denied");
	/* A writable file in a directory where the -wal and -shm files
	 * cannot be made (a root-owned directory for nobody). */
	if (geteuid() == 0)
		ck_assert_int_eq(chown(path, 65534, 65534), 0);
	ck_assert_int_eq(chmod(path, 0644), 0);
	expect_unwritable("its directory");
	ck_assert_int_eq(chmod(dir, 0700), 0);
	/* and a file that really is no database is still INVALID */
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 200; i++)
		fputs("this is not sqlite ", f);
	fclose(f);
	ck_assert_int_eq(envdbi_store_open_path(&s, path, 1000, false, 0), ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "not an SQLite database"));
}
END_TEST

/* ---- environments ------------------------------------------------------- */

START_TEST(environment_crud)
{
	envdbi_store *s = open_store(false);
	envdb_environment *e = NULL, **list = NULL;
	size_t n = 0;
	char prod[37], dev[37];

	mkenv(s, "acme", "prod", 1, "active", prod);
	mkenv(s, "acme", "dev", 0, NULL, dev);
	ck_assert(envdbi_uuid_valid(prod));

	ck_assert_int_eq(envdbi_store_env_get(s, &e, dev), 0);
	/* defaults from the definitions */
	ck_assert_str_eq(e->status, "provisioning");
	ck_assert_str_eq(e->env_type, "production");
	ck_assert_str_eq(e->plan, "free");
	ck_assert_str_eq(e->display_name, "dev");
	ck_assert_str_eq(e->metadata, "{}");
	ck_assert_str_eq(e->created_by, "tester");
	ck_assert_ptr_null(e->region);
	ck_assert_int_gt(e->created_at, 0);
	ck_assert_int_eq(e->lease_expires_at, 0);

	/* update: mutable fields, immutables refused */
	free(e->region);
	e->region = strdup("eu");
	e->lease_expires_at = 12345;
	free(e->pending_database_name);
	e->pending_database_name = strdup("envdb_x");
	ck_assert_int_eq(envdbi_store_env_update(s, e), 0);
	free(e->organization_id);
	e->organization_id = strdup("other");
	ck_assert_int_eq(envdbi_store_env_update(s, e), ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "organization_id is immutable"));
	envdb_environment_free(e);

	ck_assert_int_eq(envdbi_store_env_get_by_slug(s, &e, "acme", "dev"), 0);
	ck_assert_str_eq(e->region, "eu");
	ck_assert_str_eq(e->pending_database_name, "envdb_x");
	ck_assert_int_eq(e->lease_expires_at, 12345);
	envdb_environment_free(e);

	ck_assert_int_eq(envdbi_store_env_get_default(s, &e, "acme"), 0);
	ck_assert_str_eq(e->id, prod);
	envdb_environment_free(e);
	expect_error(envdbi_store_env_get_default(s, &e, "nobody"), ENVDB_ERR_NOT_FOUND,
		     "organization nobody: default environment: not found");
	expect_error(envdbi_store_env_get_by_slug(s, &e, "acme", "nope"), ENVDB_ERR_NOT_FOUND,
		     "environment acme/nope: not found");
	ck_assert_ptr_null(e);

	/* list with filters */
	mkenv(s, "beta", "prod", 1, "active", NULL);
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(list[0]->slug, "dev"); /* ordered by organization, slug */
	ck_assert_str_eq(list[2]->organization_id, "beta");
	envdb_environment_list_free(list, n);
	envdbi_env_filter f = ENVDBI_ENV_FILTER_INIT;
	f.organization_id = "acme";
	f.status = "active";
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, &f), 0);
	ck_assert_uint_eq(n, 1);
	envdb_environment_list_free(list, n);
	f = (envdbi_env_filter)ENVDBI_ENV_FILTER_INIT;
	f.lease_expired_at = 20000;
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, &f), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0]->id, dev);
	envdb_environment_list_free(list, n);
	f.lease_expired_at = 100;
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, &f), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(list);

	/* compare-and-set of the status */
	ck_assert_int_eq(envdbi_store_env_set_status(s, dev, "provisioning", "active"), 0);
	expect_error(envdbi_store_env_set_status(s, dev, "provisioning", "failed"), ENVDB_ERR_STATE,
		     "environment acme/dev: status is active, expected provisioning");
	ck_assert_int_eq(envdbi_store_env_set_status(s, dev, NULL, "bogus"), ENVDB_ERR_INVALID);
	ck_assert_int_eq(envdbi_store_env_set_status(s, "3f0c7a52-1b2c-4d3e-8f40-1234567890ab",
						     NULL, "active"),
			 ENVDB_ERR_NOT_FOUND);

	ck_assert_int_eq(envdbi_store_env_delete(s, dev), 0);
	ck_assert_int_eq(envdbi_store_env_delete(s, dev), ENVDB_ERR_NOT_FOUND);
	envdbi_store_close(s);
}
END_TEST

START_TEST(environment_constraints)
{
	envdbi_store *s = open_store(false);
	envdb_environment e = {.organization_id = "acme", .slug = "prod", .is_default = 1,
			       .status = "active"};
	char prod[37], old[37];

	mkenv(s, "acme", "prod", 1, "active", prod);
	expect_error(envdbi_store_env_insert(s, &e, NULL), ENVDB_ERR_EXISTS,
		     "environment acme/prod: already exists");
	e.slug = "staging";
	expect_error(envdbi_store_env_insert(s, &e, NULL), ENVDB_ERR_EXISTS,
		     "organization acme: already has a default environment (prod)");
	e.slug = "Staging";
	expect_error(envdbi_store_env_insert(s, &e, NULL), ENVDB_ERR_INVALID,
		     "environment acme/Staging: slug: 'Staging' does not match ^[a-z0-9][a-z0-9-]{0,62}$");
	e.slug = "staging";
	e.is_default = 0;
	e.env_type = "picklist";
	ck_assert_int_eq(envdbi_store_env_insert(s, &e, NULL), ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "env_type: 'picklist' is not one of"));
	e.env_type = NULL;
	e.id = "not-a-uuid";
	ck_assert_int_eq(envdbi_store_env_insert(s, &e, NULL), ENVDB_ERR_INVALID);
	e.id = NULL;
	e.metadata = "not json";
	ck_assert_int_eq(envdbi_store_env_insert(s, &e, NULL), ENVDB_ERR_INVALID);
	e.metadata = NULL;

	/* making a second default by update is refused the same way */
	mkenv(s, "acme", "old", 0, "active", old);
	envdb_environment *x = NULL;
	ck_assert_int_eq(envdbi_store_env_get(s, &x, old), 0);
	x->is_default = 1;
	expect_error(envdbi_store_env_update(s, x), ENVDB_ERR_EXISTS,
		     "organization acme: already has a default environment (prod)");
	/* an archived default does not count: archive prod, then old may be default */
	ck_assert_int_eq(envdbi_store_env_set_status(s, prod, "active", "archived"), 0);
	ck_assert_int_eq(envdbi_store_env_update(s, x), 0);
	envdb_environment_free(x);
	/* and un-archiving prod now conflicts */
	expect_error(envdbi_store_env_set_status(s, prod, "archived", "active"), ENVDB_ERR_EXISTS,
		     "organization acme: already has a default environment (old)");
	/* the same slug in another organization is fine */
	mkenv(s, "beta", "prod", 1, "active", NULL);
	/* a duplicate id */
	e.id = prod;
	e.slug = "other";
	ck_assert_int_eq(envdbi_store_env_insert(s, &e, NULL), ENVDB_ERR_EXISTS);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "already exists"));
	envdbi_store_close(s);
}
END_TEST

/* ---- databases, credentials, members ------------------------------------ */

START_TEST(database_rules)
{
	envdbi_store *s = open_store(false);
	char env[37], env2[37], db[37];
	envdb_database *d = NULL, **list = NULL;
	size_t n = 0;

	mkenv(s, "acme", "prod", 1, "active", env);
	mkenv(s, "acme", "dev", 0, "active", env2);
	mkdb(s, env, "envdb_prod", db);

	envdb_database x = {.environment_id = env, .database_name = "envdb_other",
			    .database_url = "u", .driver = "sqlite", .storage_limit_mb = 1};
	expect_error(envdbi_store_db_insert(s, &x, NULL), ENVDB_ERR_EXISTS,
		     "environment acme/prod: already has a database (envdb_prod)");
	x.environment_id = env2;
	x.database_name = "envdb_prod";
	expect_error(envdbi_store_db_insert(s, &x, NULL), ENVDB_ERR_EXISTS,
		     "database envdb_prod: already exists");
	x.database_name = "envdb_dev";
	x.storage_limit_mb = 0;
	expect_error(envdbi_store_db_insert(s, &x, NULL), ENVDB_ERR_INVALID,
		     "database envdb_dev: storage_limit_mb: must be greater than 0 (got 0)");
	x.storage_limit_mb = 5;
	x.environment_id = "3f0c7a52-1b2c-4d3e-8f40-1234567890ab";
	expect_error(envdbi_store_db_insert(s, &x, NULL), ENVDB_ERR_NOT_FOUND,
		     "database envdb_dev: environment 3f0c7a52-1b2c-4d3e-8f40-1234567890ab: not found");

	ck_assert_int_eq(envdbi_store_db_get_by_env(s, &d, env), 0);
	ck_assert_str_eq(d->id, db);
	ck_assert_str_eq(d->metadata, "{}");
	ck_assert_int_gt(d->provisioned_at, 0);
	ck_assert_int_eq(d->last_accessed_at, 0);
	free(d->database_name);
	d->database_name = strdup("renamed");
	expect_error(envdbi_store_db_update(s, d), ENVDB_ERR_INVALID,
		     "database envdb_prod: update: database_name is immutable");
	free(d->database_name);
	d->database_name = strdup("envdb_prod");
	free(d->metadata);
	d->metadata = strdup("{\"role\":\"r1\"}");
	ck_assert_int_eq(envdbi_store_db_update(s, d), 0);
	envdb_database_free(d);
	ck_assert_int_eq(envdbi_store_db_touch(s, db, 777), 0);
	ck_assert_int_eq(envdbi_store_db_get_by_name(s, &d, "envdb_prod"), 0);
	ck_assert_int_eq(d->last_accessed_at, 777);
	ck_assert_str_eq(d->metadata, "{\"role\":\"r1\"}");
	envdb_database_free(d);
	expect_error(envdbi_store_db_get_by_env(s, &d, env2), ENVDB_ERR_NOT_FOUND,
		     "environment acme/dev: database: not found");
	ck_assert_int_eq(envdbi_store_db_list(s, &list, &n), 0);
	ck_assert_uint_eq(n, 1);
	envdb_database_list_free(list, n);
	envdbi_store_close(s);
}
END_TEST

START_TEST(credential_rules)
{
	envdbi_store *s = open_store(false);
	char env[37], db[37], c1[37], c2[37], c3[37];
	envdb_credential *c = NULL, **list = NULL;
	size_t n = 0;

	mkenv(s, "acme", "prod", 1, "active", env);
	mkdb(s, env, "envdb_prod", db);
	ck_assert_int_eq(mkcred(s, db, "full_access", "active", c1), 0);
	expect_error(mkcred(s, db, "full_access", "active", NULL), ENVDB_ERR_EXISTS,
		     "database envdb_prod: already has an active full_access credential");
	ck_assert_int_eq(mkcred(s, db, "read_only", "active", c2), 0);
	/* rotation: the old one goes to rotating, a new active one is allowed */
	ck_assert_int_eq(envdbi_store_cred_set_status(s, c1, "active", "rotating"), 0);
	ck_assert_int_eq(mkcred(s, db, "full_access", NULL, c3), 0); /* default: active */
	ck_assert_int_eq(envdbi_store_cred_get_active(s, &c, db, "full_access"), 0);
	ck_assert_str_eq(c->id, c3);
	ck_assert_str_eq(c->key_id, "k1");
	ck_assert_str_eq(c->secret_ciphertext, CT);
	envdb_credential_free(c);
	/* the rotating one cannot become active again while c3 is */
	ck_assert_int_eq(envdbi_store_cred_set_status(s, c1, "rotating", "active"), ENVDB_ERR_EXISTS);
	ck_assert_int_eq(envdbi_store_cred_set_status(s, c1, "rotating", "revoked"), 0);
	ck_assert_int_eq(envdbi_store_cred_get(s, &c, c1), 0);
	ck_assert_str_eq(c->status, "revoked");
	ck_assert_int_gt(c->revoked_at, 0);
	/* authorization is immutable; rewrap changes ciphertext and key id */
	free(c->authorization);
	c->authorization = strdup("read_only");
	ck_assert_int_eq(envdbi_store_cred_update(s, c), ENVDB_ERR_INVALID);
	free(c->authorization);
	c->authorization = strdup("full_access");
	free(c->key_id);
	c->key_id = strdup("k2");
	free(c->secret_ciphertext);
	c->secret_ciphertext = strdup("v1:k2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	ck_assert_int_eq(envdbi_store_cred_update(s, c), 0);
	/* never plaintext */
	free(c->secret_ciphertext);
	c->secret_ciphertext = strdup("postgres-password-123");
	ck_assert_int_eq(envdbi_store_cred_update(s, c), ENVDB_ERR_INVALID);
	ck_assert(strstr(envdb_error_last()->message, "postgres-password") == NULL);
	envdb_credential_free(c);

	envdbi_cred_filter f = ENVDBI_CRED_FILTER_INIT;
	f.environment_database_id = db;
	ck_assert_int_eq(envdbi_store_cred_list(s, &list, &n, &f), 0);
	ck_assert_uint_eq(n, 3);
	envdb_credential_list_free(list, n);
	f.status = "active";
	f.authorization = "read_only";
	ck_assert_int_eq(envdbi_store_cred_list(s, &list, &n, &f), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0]->id, c2);
	envdb_credential_list_free(list, n);

	/* deleting the environment cascades to database and credentials */
	ck_assert_int_eq(envdbi_store_env_delete(s, env), 0);
	f = (envdbi_cred_filter)ENVDBI_CRED_FILTER_INIT;
	ck_assert_int_eq(envdbi_store_cred_list(s, &list, &n, &f), 0);
	ck_assert_uint_eq(n, 0);
	envdbi_store_close(s);
}
END_TEST

START_TEST(member_rules)
{
	envdbi_store *s = open_store(false);
	char env[37], mid[37];
	envdb_member m = {.user_id = "alice", .role = "owner", .invited_by = "root"};
	envdb_member *got = NULL, **list = NULL;
	size_t n = 0;

	mkenv(s, "acme", "prod", 1, "active", env);
	m.environment_id = env;
	ck_assert_int_eq(envdbi_store_member_insert(s, &m, mid), 0);
	expect_error(envdbi_store_member_insert(s, &m, NULL), ENVDB_ERR_EXISTS,
		     "environment acme/prod: user alice is already a member");
	m.user_id = "bob";
	m.role = "superuser";
	ck_assert_int_eq(envdbi_store_member_insert(s, &m, NULL), ENVDB_ERR_INVALID);
	m.role = "reader";
	ck_assert_int_eq(envdbi_store_member_insert(s, &m, NULL), 0);
	ck_assert_int_eq(envdbi_store_member_get(s, &got, env, "alice"), 0);
	ck_assert_str_eq(got->id, mid);
	ck_assert_str_eq(got->role, "owner");
	ck_assert_str_eq(got->invited_by, "root");
	free(got->role);
	got->role = strdup("admin");
	ck_assert_int_eq(envdbi_store_member_update(s, got), 0);
	envdb_member_free(got);
	ck_assert_int_eq(envdbi_store_member_list(s, &list, &n, env), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(list[0]->user_id, "alice");
	ck_assert_str_eq(list[0]->role, "admin");
	envdb_member_list_free(list, n);
	ck_assert_int_eq(envdbi_store_member_delete(s, env, "bob"), 0);
	expect_error(envdbi_store_member_delete(s, env, "bob"), ENVDB_ERR_NOT_FOUND,
		     "environment acme/prod: member bob: not found");
	envdbi_store_close(s);
}
END_TEST

/* ---- transactions ------------------------------------------------------- */

START_TEST(transactions_nest_and_roll_back)
{
	envdbi_store *s = open_store(false);
	envdb_environment **list = NULL;
	size_t n = 0;

	ck_assert(!envdbi_store_in_transaction(s));
	ck_assert_int_eq(envdbi_store_begin(s), 0);
	ck_assert(envdbi_store_in_transaction(s));
	mkenv(s, "acme", "a", 0, NULL, NULL);
	/* inner part rolled back, outer survives */
	ck_assert_int_eq(envdbi_store_begin(s), 0);
	mkenv(s, "acme", "b", 0, NULL, NULL);
	envdbi_store_rollback(s);
	/* a failed typed call leaves the transaction usable */
	envdb_environment dup = {.organization_id = "acme", .slug = "a"};
	ck_assert_int_eq(envdbi_store_env_insert(s, &dup, NULL), ENVDB_ERR_EXISTS);
	mkenv(s, "acme", "c", 0, NULL, NULL);
	ck_assert_int_eq(envdbi_store_commit(s), 0);
	ck_assert(!envdbi_store_in_transaction(s));
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(list[0]->slug, "a");
	ck_assert_str_eq(list[1]->slug, "c");
	envdb_environment_list_free(list, n);

	/* a whole transaction rolled back */
	ck_assert_int_eq(envdbi_store_begin(s), 0);
	mkenv(s, "acme", "d", 0, NULL, NULL);
	envdbi_store_rollback(s);
	envdbi_store_rollback(s); /* harmless */
	ck_assert_int_eq(envdbi_store_commit(s), ENVDB_ERR_MISUSE);
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	envdb_environment_list_free(list, n);
	envdbi_store_close(s);
}
END_TEST

START_TEST(busy_timeout_between_connections)
{
	envdbi_store *a = open_store(false), *b = NULL;
	struct timespec t0, t1;
	ck_assert_int_eq(cp_open(&b, 300, false, 0), 0);
	ck_assert_int_eq(envdbi_store_begin(a), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(envdbi_store_begin(b), ENVDB_ERR_BUSY);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ck_assert_int_ge(ms, 250);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "locked by another process"));
	envdb_environment e = {.organization_id = "x", .slug = "y"};
	ck_assert_int_eq(envdbi_store_env_insert(b, &e, NULL), ENVDB_ERR_BUSY);
	ck_assert_int_eq(envdbi_store_commit(a), 0);
	ck_assert_int_eq(envdbi_store_env_insert(b, &e, NULL), 0);
	envdbi_store_close(a);
	envdbi_store_close(b);
}
END_TEST

/* Two connections race to create the default of one organization: the
 * partial unique index lets exactly one win. */
typedef struct racer {
	const char *slug;
	int rc;
} racer;

static pthread_barrier_t barrier;

static void *race(void *arg)
{
	racer *r = arg;
	envdbi_store *s = NULL;
	r->rc = cp_open(&s, 5000, false, 0);
	if (r->rc != 0)
		return NULL;
	envdb_environment e = {.organization_id = "acme", .slug = (char *)r->slug, .is_default = 1,
			       .lease_expires_at = 1};
	pthread_barrier_wait(&barrier);
	r->rc = envdbi_store_env_insert(s, &e, NULL);
	envdbi_store_close(s);
	return NULL;
}

START_TEST(concurrent_default_creation)
{
	envdbi_store *s = open_store(false);
	envdbi_store_close(s);
	for (int round = 0; round < 5; round++) {
		char a[16], b[16];
		snprintf(a, sizeof a, "a%d", round);
		snprintf(b, sizeof b, "b%d", round);
		racer ra = {a, -99}, rb = {b, -99};
		pthread_t ta, tb;
		pthread_barrier_init(&barrier, NULL, 2);
		pthread_create(&ta, NULL, race, &ra);
		pthread_create(&tb, NULL, race, &rb);
		pthread_join(ta, NULL);
		pthread_join(tb, NULL);
		pthread_barrier_destroy(&barrier);
		ck_assert_msg((ra.rc == 0) != (rb.rc == 0), "round %d: %d %d", round, ra.rc, rb.rc);
		ck_assert(ra.rc == ENVDB_ERR_EXISTS || rb.rc == ENVDB_ERR_EXISTS);
		/* archive the winner for the next round */
		s = open_store(false);
		envdb_environment *d = NULL;
		ck_assert_int_eq(envdbi_store_env_get_default(s, &d, "acme"), 0);
		ck_assert_int_eq(envdbi_store_env_set_status(s, d->id, NULL, "archived"), 0);
		envdb_environment_free(d);
		envdbi_store_close(s);
	}
}
END_TEST

/* One store shared by threads: transactions are per thread. */
static void *txn_worker(void *arg)
{
	envdbi_store *s = arg;
	for (int i = 0; i < 20; i++) {
		char slug[32];
		snprintf(slug, sizeof slug, "t%lx-%d", (unsigned long)pthread_self() % 100000, i);
		if (envdbi_store_begin(s) != 0)
			return (void *)1;
		envdb_environment e = {.organization_id = "shared", .slug = slug};
		if (envdbi_store_env_insert(s, &e, NULL) != 0) {
			envdbi_store_rollback(s);
			return (void *)2;
		}
		if (i % 2)
			envdbi_store_rollback(s);
		else if (envdbi_store_commit(s) != 0)
			return (void *)3;
	}
	return NULL;
}

START_TEST(shared_store_threads)
{
	envdbi_store *s = open_store(false);
	pthread_t t[4];
	envdbi_env_filter f = ENVDBI_ENV_FILTER_INIT;
	envdb_environment **list = NULL;
	size_t n = 0;
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, txn_worker, s);
	for (int i = 0; i < 4; i++) {
		void *r = NULL;
		pthread_join(t[i], &r);
		ck_assert_ptr_null(r);
	}
	f.organization_id = "shared";
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, &f), 0);
	ck_assert_uint_eq(n, 40);
	envdb_environment_list_free(list, n);
	envdbi_store_close(s);
}
END_TEST

/* ---- legacy shim -------------------------------------------------------- */

START_TEST(legacy_objects)
{
	envdbi_store *s = open_store(false);
	envdbi_tenant_db_row t = {.organization_id = "acme", .database_name = "acme_db",
				  .database_url = "libsql://acme", .auth_token = "legacy-ct"};
	envdbi_tenant_db_row **rows = NULL;
	envdbi_package_row **pk = NULL;
	size_t n = 0, changed = 0;
	char tid[37];

	ck_assert_int_eq(envdbi_store_tenant_db_insert(s, &t, NULL), ENVDB_ERR_NOT_SUPPORTED);
	envdbi_store_close(s);
	s = open_store(true); /* registering the shim later creates its tables */
	ck_assert(envdbi_store_legacy(s));
	ck_assert_int_eq(envdbi_store_tenant_db_insert(s, &t, tid), 0);
	expect_error(envdbi_store_tenant_db_insert(s, &t, NULL), ENVDB_ERR_EXISTS,
		     "legacy tenant database acme_db: already exists");
	ck_assert_int_eq(envdbi_store_tenant_db_list(s, &rows, &n, "acme"), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0]->status, "active");
	ck_assert_int_eq(rows[0]->storage_limit_mb, 1024);
	free(rows[0]->status);
	rows[0]->status = strdup("archived");
	rows[0]->migrated_environment_id = strdup("3f0c7a52-1b2c-4d3e-8f40-1234567890ab");
	ck_assert_int_eq(envdbi_store_tenant_db_update(s, rows[0]), 0);
	envdbi_tenant_db_list_free(rows, n);

	envdbi_package_row p = {.tenant_id = tid, .package_id = "crm", .version = "1.2.0"};
	ck_assert_int_eq(envdbi_store_package_insert(s, &p, NULL), 0);
	p.package_id = "hr";
	ck_assert_int_eq(envdbi_store_package_insert(s, &p, NULL), 0);
	ck_assert_int_eq(envdbi_store_package_repoint(s, tid, "3f0c7a52-1b2c-4d3e-8f40-1234567890ab",
						      &changed),
			 0);
	ck_assert_uint_eq(changed, 2);
	ck_assert_int_eq(envdbi_store_package_list(s, &pk, &n, tid), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(envdbi_store_package_list(s, &pk, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(pk[0]->tenant_id, "3f0c7a52-1b2c-4d3e-8f40-1234567890ab");
	ck_assert_str_eq(pk[0]->status, "installed");
	envdbi_package_list_free(pk, n);
	envdbi_tenant_db_row *one = NULL;
	ck_assert_int_eq(envdbi_store_tenant_db_get(s, &one, tid), 0);
	ck_assert_str_eq(one->status, "archived");
	envdbi_tenant_db_free(one);
	envdbi_store_close(s);
}
END_TEST

/* Open file descriptors of this process. */
static int count_fds(void)
{
	char p[64];
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		struct stat st;

		snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
		if (stat(p, &st) == 0)
			n++;
	}
	return n;
}

/* Rewrite every environment's display name inside a savepoint of the open
 * transaction; the number of file descriptors opened meanwhile. */
static int savepoint_rewrite_fds(envdbi_store *s, int round)
{
	char sql[128];
	int before, after;
	sqlite3 *db;

	ck_assert_int_eq(envdbi_store_begin(s), 0);
	before = count_fds();
	db = envdbi_store_sqlite_lock(s);
	snprintf(sql, sizeof sql,
		 "UPDATE sys_environment SET display_name = 'round %d ' || id", round);
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	envdbi_store_sqlite_unlock(s);
	after = count_fds();
	ck_assert_int_eq(envdbi_store_commit(s), 0);
	return after - before;
}

/* Bulk mode (the migration) keeps a savepoint's undo pages in memory: past
 * 64 KiB SQLite otherwise spills them to a temporary file, one pwrite() per
 * page and record (41 per migrated row). */
START_TEST(bulk_savepoint_journal_stays_in_memory)
{
	envdbi_store *s = open_store(false);
	char id[37], slug[32];

	ck_assert_int_eq(envdbi_store_begin(s), 0);
	for (int i = 0; i < 600; i++) {
		snprintf(slug, sizeof slug, "env-%d", i);
		mkenv(s, "org-spill", slug, 0, "active", id);
	}
	/* without bulk mode: the journal of the savepoint spills to a file */
	ck_assert_int_gt(savepoint_rewrite_fds(s, 1), 0);
	ck_assert_int_eq(envdbi_store_commit(s), 0);

	ck_assert_int_eq(envdbi_store_bulk(s, true, 65536, 0), 0);
	ck_assert_int_eq(envdbi_store_begin(s), 0);
	ck_assert_int_eq(savepoint_rewrite_fds(s, 2), 0);
	ck_assert_int_eq(envdbi_store_commit(s), 0);
	ck_assert_int_eq(envdbi_store_bulk(s, false, 0, 0), 0);
	envdbi_store_close(s);
}
END_TEST

/* ---- the constraints hold against other processes ------------------------ */

/* Rows written by SQL of another process, past the store's validation: the
 * backend's own constraints (generated from the same definitions) refuse
 * what the store would refuse — on both backends alike. */
START_TEST(constraints_hold_for_other_processes)
{
	envdbi_store *s = open_store(false);
	char env[37], db[37];
	envdb_environment *e = NULL;
#define ENV_ROW(id, slug, def, meta)                                                       \
	"INSERT INTO sys_environment (id, organization_id, slug, display_name, env_type, "  \
	"is_default, plan, status, created_at, updated_at, metadata) VALUES ('" id          \
	"', 'acme', '" slug "', 'x', 'production', " def ", 'free', 'active', 1, 1, '" meta \
	"')"

	mkenv(s, "acme", "prod", 1, "active", env);
	mkdb(s, env, "envdb_prod", db);
	envdbi_store_close(s);
	/* a valid row goes in (the statement itself is right) */
	ck_assert_int_eq(raw_exec(ENV_ROW("01890000-0000-7000-8000-00000000000a", "ok", "0", "{}")),
			 0);
	/* slug, uuid, JSON object, enum, boolean */
	ck_assert_int_ne(raw_exec(ENV_ROW("01890000-0000-7000-8000-00000000000b", "Bad Slug", "0",
					  "{}")),
			 0);
	ck_assert_int_ne(raw_exec(ENV_ROW("01890000-0000-7000-8000-00000000000B", "upper", "0",
					  "{}")),
			 0);
	ck_assert_int_ne(raw_exec(ENV_ROW("01890000-0000-7000-8000-00000000000c", "arr", "0", "[]")),
			 0);
	ck_assert_int_ne(raw_exec(ENV_ROW("01890000-0000-7000-8000-00000000000d", "two", "2", "{}")),
			 0);
	ck_assert_int_ne(raw_exec("UPDATE sys_environment SET status = 'bogus'"), 0);
	/* one default per organization (partial unique index) */
	ck_assert_int_ne(raw_exec(ENV_ROW("01890000-0000-7000-8000-00000000000e", "dflt", "1", "{}")),
			 0);
	/* immutability trigger */
	ck_assert_int_ne(raw_exec("UPDATE sys_environment SET organization_id = 'other'"), 0);
	ck_assert_int_ne(raw_exec("UPDATE sys_environment_database SET database_name = 'x'"), 0);
	/* positive storage limit; a reference to nothing; plaintext */
	ck_assert_int_ne(raw_exec("UPDATE sys_environment_database SET storage_limit_mb = 0"), 0);
	ck_assert_int_ne(raw_exec("INSERT INTO sys_environment_member (id, environment_id, user_id, "
				  "role, created_at, updated_at) VALUES "
				  "('01890000-0000-7000-8000-0000000000f1', "
				  "'01890000-0000-7000-8000-0000000000f2', 'u', 'owner', 1, 1)"),
			 0);
	ck_assert_int_ne(raw_exec("INSERT INTO sys_database_credential (id, environment_database_id, "
				  "secret_ciphertext, encryption_key_id, \"authorization\", status, "
				  "created_at, aad_version) SELECT "
				  "'01890000-0000-7000-8000-0000000000f3', id, 'hunter2', 'k', "
				  "'full_access', 'active', 1, 1 FROM sys_environment_database"),
			 0);
	/* the same two statements with valid values go in */
	ck_assert_int_eq(raw_exec("INSERT INTO sys_environment_member (id, environment_id, user_id, "
				  "role, created_at, updated_at) SELECT "
				  "'01890000-0000-7000-8000-0000000000f1', id, 'u', 'owner', 1, 1 "
				  "FROM sys_environment WHERE slug = 'prod'"),
			 0);
	ck_assert_int_eq(raw_exec("INSERT INTO sys_database_credential (id, environment_database_id, "
				  "secret_ciphertext, encryption_key_id, \"authorization\", status, "
				  "created_at, aad_version) SELECT "
				  "'01890000-0000-7000-8000-0000000000f3', id, '" CT "', 'k', "
				  "'full_access', 'active', 1, 1 FROM sys_environment_database"),
			 0);
	/* and what went in is what the store reads */
	s = open_store(false);
	ck_assert_int_eq(envdbi_store_env_get_by_slug(s, &e, "acme", "ok"), 0);
	envdb_environment_free(e);
	ck_assert_int_eq(envdbi_store_env_get_by_slug(s, &e, "acme", "prod"), 0);
	ck_assert_str_eq(e->organization_id, "acme");
	ck_assert_str_eq(e->status, "active");
	envdb_environment_free(e);
	envdbi_store_close(s);
#undef ENV_ROW
}
END_TEST

/* ---- snapshots (dry runs) ------------------------------------------------ */

static size_t env_count(envdbi_store *s)
{
	envdb_environment **list = NULL;
	size_t n = 0;
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, NULL), 0);
	envdb_environment_list_free(list, n);
	return n;
}

/* What a dry run writes to a snapshot stays in it: on SQLite an in-memory
 * copy, on PostgreSQL one transaction that is never committed. */
START_TEST(snapshot_writes_stay_private)
{
	envdbi_store *s = open_store(false), *snap = NULL, *s2 = NULL;
	char id[37];

	mkenv(s, "acme", "prod", 1, "active", id);
	ck_assert_int_eq(envdbi_store_snapshot(&snap, s), 0);
	ck_assert(envdbi_store_is_snapshot(snap));
	ck_assert_str_eq(envdbi_store_deployment_id(snap), envdbi_store_deployment_id(s));
	mkenv(snap, "acme", "dry", 0, "active", NULL);
	ck_assert_int_eq(envdbi_store_begin(snap), 0);
	mkenv(snap, "acme", "dry2", 0, "active", NULL);
	ck_assert_int_eq(envdbi_store_commit(snap), 0);
	ck_assert_int_eq(envdbi_store_begin(snap), 0);
	mkenv(snap, "acme", "undone", 0, "active", NULL);
	envdbi_store_rollback(snap);
	ck_assert_int_eq(envdbi_store_env_set_status(snap, id, "active", "suspended"), 0);
	ck_assert_uint_eq(env_count(snap), 3);
	ck_assert_uint_eq(env_count(s), 1);
	envdbi_store_close(snap);
	ck_assert_uint_eq(env_count(s), 1);
	/* opened as a snapshot from the start */
	ck_assert_int_eq(cp_open(&s2, 1000, false, ENVDB_OPEN_SNAPSHOT), 0);
	ck_assert(envdbi_store_is_snapshot(s2));
	mkenv(s2, "acme", "dry3", 0, "active", NULL);
	ck_assert_uint_eq(env_count(s2), 2);
	envdbi_store_close(s2);
	ck_assert_uint_eq(env_count(s), 1);
	{
		envdb_environment *e = NULL;
		ck_assert_int_eq(envdbi_store_env_get(s, &e, id), 0);
		ck_assert_str_eq(e->status, "active");
		envdb_environment_free(e);
	}
	envdbi_store_close(s);
}
END_TEST

/* ---- PostgreSQL only ------------------------------------------------------ */

/* A manifest's control plane with the conninfo `text` in a file of `mode`
 * (NULL text: conninfo_env ENVDB_TEST_CONNINFO instead), schema `schema`. */
static int open_conninfo(envdbi_store **s, const char *text, int mode, const char *schema)
{
	envdbi_manifest m = {0};
	char file[600];

	m.control_plane_driver = (char *)"postgresql";
	m.control_plane_schema = (char *)schema;
	m.busy_timeout_ms = 2000;
	if (text != NULL) {
		FILE *f;
		snprintf(file, sizeof file, "%s/other.conninfo", dir);
		ck_assert_ptr_nonnull(f = fopen(file, "w"));
		fputs(text, f);
		fclose(f);
		ck_assert_int_eq(chmod(file, (mode_t)mode), 0);
		m.control_plane_conninfo_file = file;
	} else {
		m.control_plane_conninfo_env = (char *)"ENVDB_TEST_CONNINFO";
	}
	return envdbi_store_open(s, &m, ENVDB_OPEN_CREATE);
}

static void expect_refused(int rc, int status, const char *needle)
{
	const char *msg = envdb_error_last()->message;
	ck_assert_msg(rc == status, "rc %d (want %d): %s", rc, status, msg);
	ck_assert_msg(strstr(msg, needle) != NULL, "expected \"%s\" in \"%s\"", needle, msg);
	ck_assert_msg(strstr(msg, "supersecret") == NULL, "the password leaked: %s", msg);
}

/* Bad input: clear errors, the statuses the command maps to its exit
 * statuses, no password in any message, and nothing created. */
START_TEST(pg_open_refusals)
{
	envdbi_store *s = NULL;
	char sql[2048], got[64], ci[1200];
	int port = sm_pg_port();

	/* a schema that is not an envdb control plane: refused, untouched */
	snprintf(sql, sizeof sql, "CREATE SCHEMA %s_f; CREATE TABLE %s_f.t (x integer)", path, path);
	ck_assert_int_eq(sm_pg_exec(sql, NULL, 0), 0);
	snprintf(sql, sizeof sql, "%s_f", path);
	expect_refused(cp_open_named(&s, sql, 1000, false, ENVDB_OPEN_CREATE), ENVDB_ERR_INVALID,
		       "not an envdb control plane");
	snprintf(sql, sizeof sql,
		 "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
		 "WHERE n.nspname = '%s_f'",
		 path);
	sm_pg_query1(sql, got, sizeof got);
	ck_assert_str_eq(got, "1");
	/* a schema owned by another role */
	snprintf(sql, sizeof sql, "CREATE SCHEMA %s_x AUTHORIZATION envdb_super", path);
	ck_assert_int_eq(sm_pg_exec_super(sql, NULL, 0), 0);
	snprintf(sql, sizeof sql, "%s_x", path);
	expect_refused(cp_open_named(&s, sql, 1000, false, ENVDB_OPEN_CREATE), ENVDB_ERR_CONFIG,
		       "is owned by envdb_super, not by the connecting role envdb_cp");
	/* a name PostgreSQL would truncate or fold */
	expect_refused(cp_open_named(&s, "Envdb", 1000, false, ENVDB_OPEN_CREATE), ENVDB_ERR_CONFIG,
		       "is not a lowercase identifier");
	/* a conninfo that does not parse: its text is not echoed */
	expect_refused(open_conninfo(&s, "host=127.0.0.1 port password supersecret", 0600, path),
		       ENVDB_ERR_CONFIG, "not a valid libpq connection string");
	/* a server that is down */
	snprintf(ci, sizeof ci,
		 "host=127.0.0.1 port=1 user=envdb_cp password=supersecret dbname=envdb_cp");
	expect_refused(open_conninfo(&s, ci, 0600, path), ENVDB_ERR_UNAVAILABLE, "cannot connect");
	/* a wrong password */
	snprintf(ci, sizeof ci,
		 "host=127.0.0.1 port=%d user=envdb_cp password=supersecret dbname=envdb_cp", port);
	expect_refused(open_conninfo(&s, ci, 0600, path), ENVDB_ERR_UNAVAILABLE,
		       "password authentication failed");
	/* a conninfo file others may read, a variable that is not set */
	expect_refused(open_conninfo(&s, sm_pg_conninfo(), 0640, path), ENVDB_ERR_CONFIG,
		       "accessible by group or others");
	unsetenv("ENVDB_TEST_CONNINFO");
	expect_refused(open_conninfo(&s, NULL, 0, path), ENVDB_ERR_CONFIG, "ENVDB_TEST_CONNINFO");
	ck_assert_ptr_null(s);
	/* nothing was created by any of them */
	snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_namespace WHERE nspname = '%s'", path);
	sm_pg_query1(sql, got, sizeof got);
	ck_assert_str_eq(got, "0");
	/* and the variable works */
	setenv("ENVDB_TEST_CONNINFO", sm_pg_conninfo(), 1);
	ck_assert_int_eq(open_conninfo(&s, NULL, 0, path), 0);
	unsetenv("ENVDB_TEST_CONNINFO");
	envdbi_store_close(s);
}
END_TEST

/* The conninfo file is a secret file (core/loader.c
 * envdbi_read_secret_file): a FIFO is refused at once (not read: it would
 * block), a symbolic link and a file others may read are refused, and no
 * message shows the conninfo. */
START_TEST(pg_conninfo_file_refusals)
{
	envdbi_manifest m = {0};
	envdbi_store *s = NULL;
	char file[600], link[640], sub[600];
	FILE *f;

	m.control_plane_driver = (char *)"postgresql";
	m.control_plane_schema = path;
	m.busy_timeout_ms = 2000;
	m.control_plane_conninfo_file = file;

	/* a FIFO nobody writes to: refused without blocking */
	snprintf(file, sizeof file, "%s/fifo.conninfo", dir);
	ck_assert_int_eq(mkfifo(file, 0600), 0);
	alarm(20); /* a hang fails the test instead of stalling the suite */
	expect_refused(envdbi_store_open(&s, &m, ENVDB_OPEN_CREATE), ENVDB_ERR_CONFIG,
		       "is not a regular file (a FIFO)");
	alarm(0);

	/* a real conninfo file (with the password), then its variants */
	snprintf(file, sizeof file, "%s/real.conninfo", dir);
	ck_assert_ptr_nonnull(f = fopen(file, "w"));
	fputs("host=127.0.0.1 port=1 user=envdb_cp password=supersecret dbname=envdb_cp\n", f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(file, 0640), 0);
	expect_refused(envdbi_store_open(&s, &m, ENVDB_OPEN_CREATE), ENVDB_ERR_CONFIG,
		       "accessible by group or others (mode 0640)");
	ck_assert_int_eq(chmod(file, 0620), 0);
	expect_refused(envdbi_store_open(&s, &m, ENVDB_OPEN_CREATE), ENVDB_ERR_CONFIG,
		       "is writable by group or others");
	ck_assert_int_eq(chmod(file, 0600), 0);

	/* a symbolic link to it */
	snprintf(link, sizeof link, "%s/link.conninfo", dir);
	ck_assert_int_eq(symlink(file, link), 0);
	m.control_plane_conninfo_file = link;
	expect_refused(envdbi_store_open(&s, &m, ENVDB_OPEN_CREATE), ENVDB_ERR_CONFIG,
		       "is a symbolic link");

	/* in a directory others may write to (and rename it in) */
	snprintf(sub, sizeof sub, "%s/shared", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	ck_assert_int_eq(chmod(sub, 0777), 0);
	snprintf(link, sizeof link, "%s/shared/c.conninfo", dir);
	ck_assert_int_eq(rename(file, link), 0);
	expect_refused(envdbi_store_open(&s, &m, ENVDB_OPEN_CREATE), ENVDB_ERR_CONFIG,
		       "is writable by group or others");
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "directory"));
	ck_assert_int_eq(chmod(sub, 0700), 0);
	/* the same file there, now trusted: read, and the (closed) server
	 * port is what fails */
	expect_refused(envdbi_store_open(&s, &m, ENVDB_OPEN_CREATE), ENVDB_ERR_UNAVAILABLE,
		       "cannot connect");
	ck_assert_ptr_null(s);
}
END_TEST

static void kill_sessions(void)
{
	char err[256];
	ck_assert_int_eq(sm_pg_exec_super("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
					  "WHERE usename = 'envdb_cp' AND application_name = 'envdb'",
					  err, sizeof err),
			 0);
}

/* The server ends the session in the middle of a transaction: the
 * transaction's calls fail clearly, nothing of it stays, and the store
 * works again at the next transaction (a new connection). */
START_TEST(pg_connection_lost_mid_transaction)
{
	envdbi_store *s = open_store(false);
	envdb_environment **list = NULL;
	size_t n = 0;

	mkenv(s, "acme", "before", 0, "active", NULL);
	ck_assert_int_eq(envdbi_store_begin(s), 0);
	mkenv(s, "acme", "doomed", 0, "active", NULL);
	kill_sessions();
	envdb_environment e = {.organization_id = "acme", .slug = "after-kill"};
	expect_refused(envdbi_store_env_insert(s, &e, NULL), ENVDB_ERR_IO, "connection lost");
	expect_refused(envdbi_store_commit(s), ENVDB_ERR_IO,
		       "connection lost; the transaction was rolled back");
	ck_assert(!envdbi_store_in_transaction(s));
	/* nothing half-done; the next calls reconnect */
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0]->slug, "before");
	envdb_environment_list_free(list, n);
	/* outside a transaction a broken connection is made again at once */
	kill_sessions();
	mkenv(s, "acme", "reconnected", 0, "active", NULL);
	ck_assert_int_eq(envdbi_store_begin(s), 0);
	mkenv(s, "acme", "in-tx", 0, "active", NULL);
	ck_assert_int_eq(envdbi_store_commit(s), 0);
	ck_assert_int_eq(envdbi_store_env_list(s, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 3);
	envdb_environment_list_free(list, n);
	envdbi_store_close(s);
}
END_TEST

/* The manifest selects the backend: the mapping form of the SQLite file
 * opens it like the scalar; a driver this build lacks is
 * ENVDB_ERR_NOT_SUPPORTED and says which, and nothing is created. */
START_TEST(manifest_selects_backend)
{
	char mpath[600];
	envdbi_manifest *m = NULL;
	envdbi_store *s = NULL;
	struct stat st;
	FILE *f;

	snprintf(mpath, sizeof mpath, "%s/envdb.yaml", dir);
	ck_assert_ptr_nonnull(f = fopen(mpath, "w"));
	fputs("version: 1\ncontrol_plane: {driver: sqlite, path: control.db}\n", f);
	fclose(f);
	chmod(mpath, 0600);
	ck_assert_int_eq(envdbi_manifest_load(&m, mpath), 0);
	ck_assert_int_eq(envdbi_store_open(&s, m, ENVDB_OPEN_CREATE), 0);
	ck_assert_str_eq(envdbi_store_driver(s), "sqlite");
	ck_assert_str_eq(envdbi_store_describe(s), path);
	envdbi_store_close(s);
	envdbi_manifest_free(m);
	m = NULL;

	ck_assert_ptr_nonnull(f = fopen(mpath, "w"));
	fputs("version: 1\ncontrol_plane: {driver: postgresql, conninfo_env: ENVDB_TEST_NO_PG, "
	      "schema: other}\n",
	      f);
	fclose(f);
	ck_assert_int_eq(envdbi_manifest_load(&m, mpath), 0);
	ck_assert_ptr_null(m->control_plane);
	s = NULL;
#ifdef HAVE_STORE_PG
	ck_assert_int_ne(envdbi_store_open(&s, m, ENVDB_OPEN_CREATE), 0); /* variable unset */
#else
	ck_assert_int_eq(envdbi_store_open(&s, m, ENVDB_OPEN_CREATE), ENVDB_ERR_NOT_SUPPORTED);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message,
				     "built without the postgresql store backend"));
#endif
	ck_assert_ptr_null(s);
	envdbi_manifest_free(m);
	ck_assert_int_eq(stat(path, &st), 0); /* the SQLite file is untouched, still there */
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, open_create_and_versions);
	tcase_add_test(tc, deployment_id_created_and_immutable);
	tcase_add_test(tc, deployment_id_migrated_from_version_1);
	if (!sm_pg()) {
		/* the file: its mode, page size, SQLite's codes */
		tcase_add_test(tc, manifest_selects_backend);
		tcase_add_test(tc, open_create_owner_only);
		tcase_add_test(tc, open_create_layout);
		tcase_add_test(tc, open_refuses_foreign_files);
		tcase_add_test(tc, open_sqlite_status_mapping);
		tcase_add_test(tc, open_read_only_reports_the_cause);
		tcase_add_test(tc, bulk_savepoint_journal_stays_in_memory);
	} else {
		tcase_add_test(tc, pg_open_refusals);
		tcase_add_test(tc, pg_conninfo_file_refusals);
		tcase_add_test(tc, pg_connection_lost_mid_transaction);
	}
	tcase_add_test(tc, constraints_hold_for_other_processes);
	tcase_add_test(tc, snapshot_writes_stay_private);
	tcase_add_test(tc, environment_crud);
	tcase_add_test(tc, environment_constraints);
	tcase_add_test(tc, database_rules);
	tcase_add_test(tc, credential_rules);
	tcase_add_test(tc, member_rules);
	tcase_add_test(tc, transactions_nest_and_roll_back);
	tcase_add_test(tc, busy_timeout_between_connections);
	tcase_add_test(tc, concurrent_default_creation);
	tcase_add_test(tc, shared_store_threads);
	tcase_add_test(tc, legacy_objects);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
