/*
 * tests/test_plugin_sqlite.c — the sqlite adapter plugin (plugins/sqlite),
 * loaded the way the host loads it: a manifest in a fresh mkdtemp()
 * directory, read by envdbi_manifest_load(), the module opened from
 * $ENVDB_PLUGIN_DIR by envdbi_plugins_load(), every call made through the
 * envdbi_adapter_* wrappers of core/host.c.  The databases are real SQLite
 * files, checked with SQLite and stat(2).
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "internal.h"
#include "sync_count.h"

#define ENV_A "0f3b2c1d-aaaa-4bbb-8ccc-0123456789ab"
#define ENV_A_UPPER "0F3B2C1D-AAAA-4BBB-8CCC-0123456789AB"
#define NAME_A "env_0f3b2c1daaaa4bbb8ccc0123456789ab"
#define ENV_B "6e4d0b7a-1c2d-4e5f-9a8b-7c6d5e4f3a2b"
#define NAME_B "env_6e4d0b7a1c2d4e5f9a8b7c6d5e4f3a2b"

/* Directories are kept well below PATH_MAX so paths built from them fit. */
#define DIR_MAX 1024

static char tmpdir[DIR_MAX];
static char dbdir[DIR_MAX + 64];
static char manifest_path[DIR_MAX + 64];

static envdbi_manifest *M;
static envdbi_plugins *SET;
static envdbi_plugin *P;

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

/* Write the manifest with the sqlite plugin's configuration lines (each
 * "key: value\n"). */
static void write_manifest(const char *config)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "version: 1\n"
		 "plugins:\n"
		 "  - name: sqlite\n"
		 "    kind: adapter\n"
		 "    config:\n"
		 "%s",
		 config);
	write_text(manifest_path, text);
}

static int load(void)
{
	int rc = envdbi_manifest_load(&M, manifest_path);

	if (rc != ENVDB_OK)
		return rc;
	rc = envdbi_plugins_load(&SET, M);
	if (rc != ENVDB_OK)
		return rc;
	P = envdbi_plugins_find(SET, "sqlite", ENVDB_PLUGIN_ADAPTER);
	ck_assert_ptr_nonnull(P);
	return ENVDB_OK;
}

static void unload(void)
{
	if (SET != NULL)
		envdbi_plugins_free(SET);
	if (M != NULL)
		envdbi_manifest_free(M);
	SET = NULL;
	M = NULL;
	P = NULL;
}

static void reload_with(const char *config)
{
	unload();
	write_manifest(config);
	ck_assert_int_eq(load(), ENVDB_OK);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/envdb-sqlite-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(dbdir, sizeof(dbdir), "%s/dbs", tmpdir);
	snprintf(manifest_path, sizeof(manifest_path), "%s/envdb.yaml", tmpdir);
	write_manifest("      base_dir: dbs\n");
	ck_assert_int_eq(load(), ENVDB_OK);
}

static void teardown(void)
{
	unload();
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void db_path(char *out, size_t n, const char *dir, const char *name, const char *suffix)
{
	int len = snprintf(out, n, "%s/%s.db%s", dir, name, suffix);

	ck_assert(len > 0 && (size_t)len < n);
}

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static envdb_db_ref ref_of(const char *env, const char *name)
{
	envdb_db_ref r = {.struct_size = sizeof(envdb_db_ref),
			  .environment_id = env,
			  .database_name = name,
			  .url = NULL,
			  .metadata = NULL};
	return r;
}

static int create(const char *env, char **url, char **metadata)
{
	envdb_create_request req = {.struct_size = sizeof(envdb_create_request),
				    .environment_id = env,
				    .database_name = NULL,
				    .region = "local",
				    .plan = "free",
				    .storage_limit_mb = 1024};
	char *u = NULL, *m = NULL;
	int rc = envdbi_adapter_create(P, &req, &u, &m);

	if (url != NULL)
		*url = u;
	else
		free(u);
	if (metadata != NULL)
		*metadata = m;
	else
		free(m);
	return rc;
}

static int drop(const char *env, const char *name)
{
	envdb_db_ref r = ref_of(env, name);

	return envdbi_adapter_drop(P, &r);
}

/* Run a query on a database file with a fresh connection; the first column
 * of the first row as a malloc'd string, or NULL. */
static char *query(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char *out = NULL;

	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
		      sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
		out = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return out;
}

static void exec_sql(const char *path, const char *sql)
{
	sqlite3 *db = NULL;

	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", sql,
		      sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* Number of entries of `dir` other than . and ..; the name of the last one
 * seen goes into `last` (when not NULL, `last_size` bytes). */
static int list_dir(const char *dir, char *last, size_t last_size)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	ck_assert_msg(d != NULL, "opendir %s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		n++;
		if (last != NULL)
			snprintf(last, last_size, "%s", de->d_name);
	}
	closedir(d);
	return n;
}

static int count_entries(const char *dir)
{
	return list_dir(dir, NULL, 0);
}

static void assert_error_mentions(const char *a, const char *b)
{
	const char *msg = envdb_error_last()->message;

	ck_assert_msg(strstr(msg, a) != NULL, "'%s' not in: %s", a, msg);
	if (b != NULL)
		ck_assert_msg(strstr(msg, b) != NULL, "'%s' not in: %s", b, msg);
}

/* ------------------------------------------------------------------------ */
/* tests                                                                     */
/* ------------------------------------------------------------------------ */

START_TEST(test_descriptor)
{
	const envdb_plugin_descriptor *d = envdbi_plugin_descriptor(P);
	uint64_t caps = envdbi_plugin_capabilities(P);

	ck_assert_str_eq(d->name, "sqlite");
	ck_assert_uint_eq(d->kind, ENVDB_PLUGIN_ADAPTER);
	/* Honest capabilities: SQLite authenticates nothing; a read-only
	 * credential is a URL SQLite opens read-only (test_read_only_url). */
	ck_assert(!(caps & ENVDB_ADAPTER_CAP_AUTHENTICATES));
	ck_assert(caps & ENVDB_ADAPTER_CAP_READ_ONLY);
	ck_assert(!(caps & ENVDB_ADAPTER_CAP_REVOKE));
	ck_assert(!(caps & ENVDB_ADAPTER_CAP_EXPIRY));
	ck_assert(caps & ENVDB_ADAPTER_CAP_PROBE);
	ck_assert(caps & ENVDB_ADAPTER_CAP_LIST);
	ck_assert(caps & ENVDB_ADAPTER_CAP_ROTATE_OVERLAP);
}
END_TEST

START_TEST(test_database_name)
{
	static const char *const bad[] = {
		"",
		"prod",
		"../../etc/passwd",
		"0f3b2c1d-aaaa-4bbb-8ccc-0123456789a",    /* short */
		"0f3b2c1d-aaaa-4bbb-8ccc-0123456789abc",  /* long */
		"0f3b2c1daaaa-4bbb-8ccc-0123456789ab-",   /* dashes misplaced */
		"0f3b2c1d-aaaa-4bbb-8ccc-0123456789ag",   /* not hex */
		"0f3b2c1d-aaaa-4bbb-8ccc-01234567/9ab",   /* a slash */
		"0f3b2c1d-aaaa-4bbb-8ccc-0123456789a\n",
		NULL,
	};
	char *name = NULL;
	size_t i;

	ck_assert_int_eq(envdbi_adapter_database_name(P, ENV_A, &name), ENVDB_OK);
	ck_assert_str_eq(name, NAME_A);
	free(name);
	/* Deterministic, and case does not matter in a UUID. */
	ck_assert_int_eq(envdbi_adapter_database_name(P, ENV_A_UPPER, &name), ENVDB_OK);
	ck_assert_str_eq(name, NAME_A);
	free(name);
	for (i = 0; bad[i] != NULL; i++) {
		name = NULL;
		ck_assert_msg(envdbi_adapter_database_name(P, bad[i], &name) == ENVDB_ERR_INVALID,
			      "'%s' accepted", bad[i]);
		ck_assert_ptr_null(name);
		ck_assert_msg(create(bad[i], NULL, NULL) == ENVDB_ERR_INVALID, "create '%s'",
			      bad[i]);
		ck_assert_msg(drop(bad[i], NULL) == ENVDB_ERR_INVALID, "drop '%s'", bad[i]);
	}
	assert_error_mentions("not a uuid", NULL);
	/* Nothing was created anywhere. */
	ck_assert_int_eq(count_entries(dbdir), 0);
	ck_assert_int_eq(count_entries(tmpdir), 2); /* envdb.yaml, dbs */
}
END_TEST

START_TEST(test_create)
{
	char *url = NULL, *meta = NULL, *mode, path[PATH_MAX], expect[PATH_MAX + 8];
	json_t *root;
	json_error_t jerr;
	struct stat st;

	ck_assert_int_eq(stat(dbdir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0700);

	ck_assert_int_eq(create(ENV_A, &url, &meta), ENVDB_OK);
	db_path(path, sizeof(path), dbdir, NAME_A, "");
	snprintf(expect, sizeof(expect), "file:%s", path);
	ck_assert_str_eq(url, expect);
	root = json_loads(meta, 0, &jerr);
	ck_assert_msg(root != NULL, "metadata is not json: %s", meta);
	ck_assert(json_is_object(root));
	ck_assert_str_eq(json_string_value(json_object_get(root, "path")), path);
	json_decref(root);

	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	mode = query(path, "PRAGMA journal_mode");
	ck_assert_str_eq(mode, "wal");
	free(mode);
	/* A usable database, with nothing of ours in it. */
	mode = query(path, "SELECT count(*) FROM sqlite_schema");
	ck_assert_str_eq(mode, "0");
	free(mode);
	exec_sql(path, "CREATE TABLE t(x); INSERT INTO t VALUES (42)");
	mode = query(path, "SELECT x FROM t");
	ck_assert_str_eq(mode, "42");
	free(mode);
	free(url);
	free(meta);
}
END_TEST

/* A new file is made durable with two syncs, the file's and its
 * directory's, and without a rollback journal (issue 18: it took five,
 * through a journal, under synchronous=FULL). */
START_TEST(test_create_syncs)
{
	sync_counts before, after;
	char path[PATH_MAX], *mode;

	sync_count_get(&before);
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	sync_count_get(&after);
	ck_assert_uint_eq(after.total - before.total, 2);
	ck_assert_uint_eq(after.files - before.files, 1);
	ck_assert_uint_eq(after.dirs - before.dirs, 1);
	/* No side file was left, and the mode persisted in the header. */
	ck_assert_int_eq(count_entries(dbdir), 1);
	db_path(path, sizeof(path), dbdir, NAME_A, "");
	mode = query(path, "PRAGMA journal_mode");
	ck_assert_str_eq(mode, "wal");
	free(mode);
}
END_TEST

START_TEST(test_create_twice)
{
	char path[PATH_MAX], side[PATH_MAX], link_target[DIR_MAX + 16], *v;
	struct stat before, after;

	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	db_path(path, sizeof(path), dbdir, NAME_A, "");
	exec_sql(path, "CREATE TABLE t(x); INSERT INTO t VALUES ('keep me')");
	ck_assert_int_eq(stat(path, &before), 0);

	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_ERR_EXISTS);
	assert_error_mentions(NAME_A, "already exists");
	ck_assert_int_eq(stat(path, &after), 0);
	ck_assert_uint_eq(before.st_ino, after.st_ino);
	ck_assert_int_eq(before.st_size, after.st_size);
	ck_assert_int_eq(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
	ck_assert_int_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
	v = query(path, "SELECT x FROM t");
	ck_assert_str_eq(v, "keep me");
	free(v);

	/* A symbolic link in the way is neither followed nor replaced. */
	snprintf(link_target, sizeof(link_target), "%s/elsewhere", tmpdir);
	write_text(link_target, "not yours");
	db_path(path, sizeof(path), dbdir, NAME_B, "");
	ck_assert_int_eq(symlink(link_target, path), 0);
	ck_assert_int_eq(create(ENV_B, NULL, NULL), ENVDB_ERR_EXISTS);
	ck_assert_int_eq(lstat(path, &after), 0);
	ck_assert(S_ISLNK(after.st_mode));
	ck_assert_int_eq(stat(link_target, &after), 0);
	ck_assert_int_eq(after.st_size, 9);
	ck_assert_int_eq(unlink(path), 0);

	/* A stale write-ahead log would be replayed into a new file: refused. */
	db_path(side, sizeof(side), dbdir, NAME_B, "-wal");
	write_text(side, "stale");
	ck_assert_int_eq(create(ENV_B, NULL, NULL), ENVDB_ERR_EXISTS);
	assert_error_mentions(NAME_B, "-wal");
	ck_assert(!exists(path));
	/* drop clears what is left; then create works. */
	ck_assert_int_eq(drop(ENV_B, NULL), ENVDB_OK);
	ck_assert(!exists(side));
	ck_assert_int_eq(create(ENV_B, NULL, NULL), ENVDB_OK);
	ck_assert(exists(path));
}
END_TEST

START_TEST(test_drop)
{
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
	char path[PATH_MAX];
	size_t i;

	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(create(ENV_B, NULL, NULL), ENVDB_OK);
	/* Side files as a live connection leaves them. */
	db_path(path, sizeof(path), dbdir, NAME_A, "-wal");
	write_text(path, "");
	db_path(path, sizeof(path), dbdir, NAME_A, "-shm");
	write_text(path, "");

	ck_assert_int_eq(drop(ENV_A, NAME_A), ENVDB_OK);
	for (i = 0; i < 4; i++) {
		db_path(path, sizeof(path), dbdir, NAME_A, suffixes[i]);
		ck_assert_msg(!exists(path), "%s survived drop", path);
	}
	/* The other database is untouched. */
	db_path(path, sizeof(path), dbdir, NAME_B, "");
	ck_assert(exists(path));
	/* Dropping something already gone succeeds. */
	ck_assert_int_eq(drop(ENV_A, NAME_A), ENVDB_OK);
	ck_assert_int_eq(drop(ENV_A, NULL), ENVDB_OK);
	/* By name alone (how reconcile drops an orphan it listed). */
	ck_assert_int_eq(drop(NULL, NAME_B), ENVDB_OK);
	ck_assert(!exists(path));
	/* A name that does not belong to the environment is refused. */
	ck_assert_int_eq(drop(ENV_A, NAME_B), ENVDB_ERR_INVALID);
	ck_assert_int_eq(drop(NULL, "env_../../x"), ENVDB_ERR_INVALID);
	ck_assert_int_eq(drop(NULL, NULL), ENVDB_ERR_INVALID);
	ck_assert_int_eq(count_entries(dbdir), 0);

	/* Something that is not a regular file is never removed. */
	db_path(path, sizeof(path), dbdir, NAME_A, "");
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_eq(drop(ENV_A, NULL), ENVDB_ERR_IO);
	ck_assert(exists(path));
}
END_TEST

#define DEP_1 "11111111-2222-4333-8444-555555555555"
#define DEP_2 "99999999-8888-4777-8666-555555555555"

/* Names list() reports now, joined by spaces (static buffer). */
static const char *listed(void)
{
	static char out[512];
	char **names = NULL;
	size_t n = 0, i;

	out[0] = '\0';
	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
	for (i = 0; i < n; i++)
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? " " : "",
			 names[i]);
	envdbi_strv_free(names, n);
	return out;
}

/* Issue 16 §3 (ENVDB_ADAPTER_CAP_DEPLOYMENT): create marks the file with the
 * deployment (env_<hex>.envdb); another deployment sharing base_dir neither
 * lists it nor drops it; an unmarked file (made by an earlier envdb) is
 * nobody's orphan: not listed, not dropped by name alone, dropped when the
 * host names its environment (it has the row). */
START_TEST(test_deployment_marker)
{
	char path[PATH_MAX], marker[PATH_MAX], line[256];
	sync_counts before, after;
	struct stat st;
	ssize_t len;

	ck_assert(envdbi_plugin_capabilities(P) & ENVDB_ADAPTER_CAP_DEPLOYMENT);
	snprintf(marker, sizeof(marker), "%s/%s.envdb", dbdir, NAME_A);
	db_path(path, sizeof(path), dbdir, NAME_A, "");

	envdbi_plugin_set_deployment(P, DEP_1);
	sync_count_get(&before);
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	sync_count_get(&after);
	/* The marker costs no sync of its own (issue 18): a symbolic link,
	 * durable, text included, with the directory's one fsync. */
	ck_assert_uint_eq(after.total - before.total, 2);
	ck_assert_uint_eq(after.files - before.files, 1);
	ck_assert_uint_eq(after.dirs - before.dirs, 1);
	ck_assert_int_eq(lstat(marker, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	len = readlink(marker, line, sizeof(line) - 1);
	ck_assert_int_gt(len, 0);
	line[len] = '\0';
	ck_assert_str_eq(line, "envdb:deployment:" DEP_1);
	ck_assert_int_eq(count_entries(dbdir), 2); /* no temporary name left */
	ck_assert_str_eq(listed(), NAME_A);

	/* The other deployment: not listed, not dropped, by name or by id. */
	envdbi_plugin_set_deployment(P, DEP_2);
	ck_assert_str_eq(listed(), "");
	ck_assert_int_eq(drop(NULL, NAME_A), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "belongs to deployment " DEP_1));
	ck_assert_int_eq(drop(ENV_A, NAME_A), ENVDB_ERR_STATE);
	ck_assert(exists(path) && exists(marker));
	/* A host without a deployment id (1.0) sees every file, as before. */
	envdbi_plugin_set_deployment(P, NULL);
	ck_assert_str_eq(listed(), NAME_A);

	/* Its own deployment drops it, marker last. */
	envdbi_plugin_set_deployment(P, DEP_1);
	ck_assert_int_eq(drop(NULL, NAME_A), ENVDB_OK);
	ck_assert(!exists(path) && !exists(marker));
	ck_assert_int_eq(count_entries(dbdir), 0);

	/* An unmarked file, as an earlier envdb made them. */
	envdbi_plugin_set_deployment(P, NULL);
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	ck_assert(!exists(marker));
	envdbi_plugin_set_deployment(P, DEP_2);
	ck_assert_str_eq(listed(), "");
	ck_assert_int_eq(drop(NULL, NAME_A), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "no deployment marker"));
	envdbi_plugin_set_deployment(P, DEP_1);
	ck_assert_str_eq(listed(), "");
	ck_assert_int_eq(drop(NULL, NAME_A), ENVDB_ERR_STATE);
	ck_assert(exists(path));
	ck_assert_int_eq(drop(ENV_A, NAME_A), ENVDB_OK); /* the deployment with its row */
	ck_assert(!exists(path));

	/* A marker left by a create that crashed before the file: harmless,
	 * replaced by the next create. */
	ck_assert_int_eq(symlink("envdb:deployment:" DEP_1, marker), 0);
	ck_assert_str_eq(listed(), "");
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	ck_assert_str_eq(listed(), NAME_A);
	ck_assert_int_eq(drop(ENV_A, NULL), ENVDB_OK);
	ck_assert_int_eq(count_entries(dbdir), 0);

	/* An earlier version's marker, a regular file with one line: still
	 * read (whose it is), replaced by a symbolic link on create. */
	envdbi_plugin_set_deployment(P, NULL);
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	write_text(marker, "envdb:" ENV_A " deployment:" DEP_1 "\n");
	envdbi_plugin_set_deployment(P, DEP_1);
	ck_assert_str_eq(listed(), NAME_A);
	envdbi_plugin_set_deployment(P, DEP_2);
	ck_assert_str_eq(listed(), "");
	ck_assert_int_eq(drop(ENV_A, NAME_A), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "belongs to deployment " DEP_1));
	envdbi_plugin_set_deployment(P, DEP_1);
	ck_assert_int_eq(drop(NULL, NAME_A), ENVDB_OK);
	ck_assert_int_eq(count_entries(dbdir), 0);
	write_text(marker, "envdb:" ENV_A " deployment:" DEP_2 "\n"); /* a crash's */
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(lstat(marker, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	ck_assert_str_eq(listed(), NAME_A);
	ck_assert_int_eq(drop(ENV_A, NULL), ENVDB_OK);
	ck_assert_int_eq(count_entries(dbdir), 0);

	/* A link whose text is not a marker's: it names nobody. */
	envdbi_plugin_set_deployment(P, NULL);
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(symlink("envdb:deployment:not-a-uuid", marker), 0);
	envdbi_plugin_set_deployment(P, DEP_1);
	ck_assert_str_eq(listed(), "");
	ck_assert_int_eq(drop(NULL, NAME_A), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "no deployment marker"));
	ck_assert_int_eq(drop(ENV_A, NAME_A), ENVDB_OK);
	ck_assert_int_eq(count_entries(dbdir), 0);
	envdbi_plugin_set_deployment(P, NULL);
}
END_TEST

START_TEST(test_trash)
{
	char path[PATH_MAX], trash[DIR_MAX + 64], entry[256], *v;
	struct stat st;
	char **names = NULL;
	size_t n = 0;

	reload_with("      base_dir: dbs\n"
		    "      trash_dir: trash\n"
		    "      grace_seconds: 3600\n");
	snprintf(trash, sizeof(trash), "%s/trash", tmpdir);
	ck_assert_int_eq(stat(trash, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0700);

	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	db_path(path, sizeof(path), dbdir, NAME_A, "");
	exec_sql(path, "CREATE TABLE t(x); INSERT INTO t VALUES ('recoverable')");
	ck_assert_int_eq(drop(ENV_A, NULL), ENVDB_OK);
	ck_assert(!exists(path));
	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
	ck_assert_uint_eq(n, 0);
	envdbi_strv_free(names, n);
	/* One entry env_<hex>.<time>/ holding the file under its own name. */
	ck_assert_int_eq(list_dir(trash, entry, sizeof(entry)), 1);
	ck_assert_int_eq(strncmp(entry, NAME_A ".", strlen(NAME_A) + 1), 0);
	snprintf(path, sizeof(path), "%s/%s/%s.db", trash, entry, NAME_A);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	v = query(path, "SELECT x FROM t");
	ck_assert_str_eq(v, "recoverable");
	free(v);
	/* Already gone: success, nothing new in the trash. */
	ck_assert_int_eq(drop(ENV_A, NULL), ENVDB_OK);
	ck_assert_int_eq(count_entries(trash), 1);
	/* Create and drop again at once: a second entry, the first kept. */
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(drop(ENV_A, NULL), ENVDB_OK);
	ck_assert_int_eq(count_entries(trash), 2);

	/* Entries past the grace period are purged when the plugin starts;
	 * entries it did not make are left alone. */
	snprintf(path, sizeof(path), "%s/%s.1000", trash, NAME_B);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/%s.1000/%s.db", trash, NAME_B, NAME_B);
	write_text(path, "old");
	snprintf(path, sizeof(path), "%s/keep-me", trash);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	reload_with("      base_dir: dbs\n"
		    "      trash_dir: trash\n"
		    "      grace_seconds: 3600\n");
	snprintf(path, sizeof(path), "%s/%s.1000", trash, NAME_B);
	ck_assert(!exists(path));
	snprintf(path, sizeof(path), "%s/keep-me", trash);
	ck_assert(exists(path));
	ck_assert_int_eq(count_entries(trash), 3);

	/* grace_seconds 0: the drop purges at once. */
	reload_with("      base_dir: dbs\n"
		    "      trash_dir: trash\n"
		    "      grace_seconds: 0\n");
	ck_assert_int_eq(count_entries(trash), 1); /* keep-me */
	ck_assert_int_eq(create(ENV_B, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(drop(ENV_B, NULL), ENVDB_OK);
	ck_assert_int_eq(count_entries(trash), 1);
	ck_assert_int_eq(count_entries(dbdir), 0);
}
END_TEST

START_TEST(test_list)
{
	char path[PATH_MAX], **names = NULL;
	size_t n = 0, i;
	int seen_a = 0, seen_b = 0;

	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(create(ENV_B, NULL, NULL), ENVDB_OK);
	/* Things in the directory the plugin does not own. */
	snprintf(path, sizeof(path), "%s/notes.txt", dbdir);
	write_text(path, "x");
	snprintf(path, sizeof(path), "%s/other.db", dbdir);
	write_text(path, "x");
	snprintf(path, sizeof(path), "%s/env_0F3B2C1DAAAA4BBB8CCC0123456789AC.db", dbdir);
	write_text(path, "x");
	snprintf(path, sizeof(path), "%s/env_0f3b2c1daaaa4bbb8ccc0123456789.db", dbdir);
	write_text(path, "x");
	snprintf(path, sizeof(path), "%s/env_0f3b2c1daaaa4bbb8ccc0123456789ad.db.bak", dbdir);
	write_text(path, "x");
	db_path(path, sizeof(path), dbdir, NAME_A, "-wal");
	write_text(path, "");
	snprintf(path, sizeof(path), "%s/env_0f3b2c1daaaa4bbb8ccc0123456789ae.db", dbdir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/env_0f3b2c1daaaa4bbb8ccc0123456789af.db", dbdir);
	ck_assert_int_eq(symlink("/etc/hostname", path), 0);

	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
	ck_assert_uint_eq(n, 2);
	for (i = 0; i < n; i++) {
		if (strcmp(names[i], NAME_A) == 0)
			seen_a++;
		else if (strcmp(names[i], NAME_B) == 0)
			seen_b++;
		else
			ck_abort_msg("listed '%s'", names[i]);
	}
	ck_assert_int_eq(seen_a, 1);
	ck_assert_int_eq(seen_b, 1);
	envdbi_strv_free(names, n);
}
END_TEST

START_TEST(test_mint_and_probe)
{
	envdb_db_ref ref = ref_of(ENV_A, NAME_A);
	envdb_mint_request req = {.struct_size = sizeof(envdb_mint_request),
				  .credential_id = "9b2e6c1a-0d3f-4a5b-8c7d-6e5f4a3b2c1d",
				  .authorization = ENVDB_AUTH_FULL_ACCESS,
				  .expires_at = 0,
				  .previous_handle = NULL};
	envdbi_secret *s1 = NULL, *s2 = NULL, *ro = NULL;
	char *h1 = NULL, *h2 = NULL, *h3 = NULL, path[PATH_MAX];
	size_t i;

	/* Nothing to mint for, nothing to probe before create. */
	ck_assert_int_eq(envdbi_adapter_mint(P, &ref, &req, &s1, &h1), ENVDB_ERR_NOT_FOUND);
	ro = envdbi_secret_new("any", 3);
	ck_assert_ptr_nonnull(ro);
	ck_assert_int_eq(envdbi_adapter_probe(P, &ref, ro), ENVDB_ERR_NOT_FOUND);
	assert_error_mentions(NAME_A, "probe");
	envdbi_secret_free(ro);
	ro = NULL;

	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(envdbi_adapter_mint(P, &ref, &req, &s1, &h1), ENVDB_OK);
	ck_assert_uint_eq(s1->len, 43); /* 32 random bytes, base64url, no padding */
	for (i = 0; i < s1->len; i++)
		ck_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
				 s1->data[i]) != NULL);
	ck_assert_str_eq(h1, "");
	req.previous_handle = h1;
	ck_assert_int_eq(envdbi_adapter_mint(P, &ref, &req, &s2, &h2), ENVDB_OK);
	ck_assert_str_ne(s1->data, s2->data);

	/* A read-only credential: a token of its own and the URL query that
	 * makes SQLite open the file read-only (test_read_only_url). */
	req.authorization = ENVDB_AUTH_READ_ONLY;
	req.previous_handle = NULL;
	ck_assert_int_eq(envdbi_adapter_mint(P, &ref, &req, &ro, &h3), ENVDB_OK);
	ck_assert_uint_eq(ro->len, 43);
	ck_assert_str_ne(ro->data, s1->data);
	ck_assert_str_eq(h3, "?mode=ro");
	envdbi_secret_free(ro);
	ro = NULL;
	/* No revoke slot: the host answers "not supported". */
	ck_assert_int_eq(envdbi_adapter_revoke(P, &ref, ENVDB_AUTH_FULL_ACCESS, h1),
			 ENVDB_ERR_NOT_SUPPORTED);

	ck_assert_int_eq(envdbi_adapter_probe(P, &ref, s1), ENVDB_OK);
	ck_assert_int_eq(envdbi_adapter_probe(P, &ref, s2), ENVDB_OK);

	/* A file that is not a database. */
	db_path(path, sizeof(path), dbdir, NAME_A, "");
	write_text(path, "this is not a sqlite database, just some text that is long "
			 "enough to have a header-sized prefix.............................");
	ck_assert_int_eq(envdbi_adapter_probe(P, &ref, s1), ENVDB_ERR_INTEGRITY);
	assert_error_mentions(NAME_A, NULL);
	ck_assert_ptr_nonnull(envdb_error_last()->native_code);
	ck_assert_ptr_null(strstr(envdb_error_last()->message, s1->data));

	envdbi_secret_free(s1);
	envdbi_secret_free(s2);
	free(h1);
	free(h2);
	free(h3);
}
END_TEST

/* What the read-only credential promises, with real SQLite: the URL the
 * host hands a reader (the database's URL with the credential's handle)
 * reads, and refuses every write, whether the client opens it asking for
 * read-write or not; a client that opens it read-only (as a router for
 * readers does) cannot write through ATTACH either. */
START_TEST(test_read_only_url)
{
	envdb_db_ref ref = ref_of(ENV_A, NAME_A);
	envdb_mint_request req = {.struct_size = sizeof(envdb_mint_request),
				  .credential_id = "9b2e6c1a-0d3f-4a5b-8c7d-6e5f4a3b2c1e",
				  .authorization = ENVDB_AUTH_READ_ONLY};
	static const char *const writes[] = {
		"INSERT INTO t VALUES (2)", "CREATE TABLE u (y)", "DROP TABLE t", "DELETE FROM t",
		"PRAGMA user_version = 7",
	};
	envdbi_secret *ro = NULL;
	char *url = NULL, *h = NULL, ro_url[PATH_MAX + 32], attach[PATH_MAX + 64];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	size_t i;

	ck_assert_int_eq(create(ENV_A, &url, NULL), ENVDB_OK);
	/* the application's data, written with full access */
	ck_assert_int_eq(sqlite3_open_v2(url, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(
		sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1)", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	db = NULL;

	ck_assert_int_eq(envdbi_adapter_mint(P, &ref, &req, &ro, &h), ENVDB_OK);
	ck_assert_int_lt(snprintf(ro_url, sizeof(ro_url), "%s%s", url, h), (int)sizeof(ro_url));
	for (int pass = 0; pass < 2; pass++) {
		int flags = (pass == 0 ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) |
			    SQLITE_OPEN_URI;

		ck_assert_int_eq(sqlite3_open_v2(ro_url, &db, flags, NULL), SQLITE_OK);
		ck_assert_int_eq(sqlite3_db_readonly(db, "main"), 1);
		ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL),
				 SQLITE_OK);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
		ck_assert_int_eq(sqlite3_column_int(st, 0), 1);
		sqlite3_finalize(st);
		for (i = 0; i < sizeof(writes) / sizeof(writes[0]); i++)
			ck_assert_msg(sqlite3_exec(db, writes[i], NULL, NULL, NULL) ==
					      SQLITE_READONLY,
				      "%s through %s (pass %d): %s", writes[i], ro_url, pass,
				      sqlite3_errmsg(db));
		if (pass == 1) {
			/* opened read-only: an ATTACH of the file is read-only too */
			snprintf(attach, sizeof(attach), "ATTACH '%s' AS w", url);
			ck_assert_int_eq(sqlite3_exec(db, attach, NULL, NULL, NULL), SQLITE_OK);
			ck_assert_int_eq(
				sqlite3_exec(db, "INSERT INTO w.t VALUES (3)", NULL, NULL, NULL),
				SQLITE_READONLY);
		}
		sqlite3_close(db);
		db = NULL;
	}
	/* nothing was written */
	ck_assert_int_eq(sqlite3_open_v2(url, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*), sum(x) FROM t", -1, &st, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), 1);
	ck_assert_int_eq(sqlite3_column_int(st, 1), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	envdbi_secret_free(ro);
	free(h);
	free(url);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* adopted databases (v4 -> v5 migration: legacy name and file: URL)         */
/* ------------------------------------------------------------------------ */

#define MIGRATED_META "{\"migrated_from\":{\"object\":\"sys_tenant_database\",\"id\":\"x\"}}"

static envdb_db_ref adopted_ref(const char *env, const char *name, const char *url)
{
	envdb_db_ref r = ref_of(env, name);

	r.url = url;
	r.metadata = MIGRATED_META;
	return r;
}

/* Mint through `ref`: the status; the secret is checked and freed. */
static int mint_via(const envdb_db_ref *ref, const char *previous)
{
	envdb_mint_request req = {.struct_size = sizeof(envdb_mint_request),
				  .credential_id = "9b2e6c1a-0d3f-4a5b-8c7d-6e5f4a3b2c1d",
				  .authorization = ENVDB_AUTH_FULL_ACCESS,
				  .expires_at = 0,
				  .previous_handle = previous};
	envdbi_secret *s = NULL;
	char *h = NULL;
	int rc = envdbi_adapter_mint(P, ref, &req, &s, &h);

	if (rc == ENVDB_OK) {
		ck_assert_uint_eq(s->len, 43);
		ck_assert_str_eq(h, "");
	} else {
		ck_assert_ptr_null(s);
	}
	envdbi_secret_free(s);
	free(h);
	return rc;
}

static int probe_via(const envdb_db_ref *ref)
{
	envdbi_secret *s = envdbi_secret_new("any", 3);
	int rc;

	ck_assert_ptr_nonnull(s);
	rc = envdbi_adapter_probe(P, ref, s);
	envdbi_secret_free(s);
	return rc;
}

/* A migrated database keeps its legacy name and file (its URL), with
 * metadata {"migrated_from": ...}: mint, rotation, probe and drop work on
 * exactly that file, never through a symbolic link, never on anything
 * else; without the marker a foreign name is still refused. */
START_TEST(test_adopted)
{
	char canon[PATH_MAX], legacy[PATH_MAX + 16], file[PATH_MAX + 48], url[PATH_MAX + 160],
	    path[PATH_MAX + 128], trash[DIR_MAX + 64], entry[256], owned_dir[PATH_MAX], *v,
	    **names = NULL;
	envdb_db_ref ref;
	size_t n = 0, i;
	struct stat st;

	ck_assert_ptr_nonnull(realpath(tmpdir, canon));
	snprintf(legacy, sizeof(legacy), "%s/v4", canon);
	ck_assert_int_eq(mkdir(legacy, 0700), 0);
	snprintf(file, sizeof(file), "%s/acme.db", legacy);
	write_text(file, ""); /* an empty file is an empty database */
	exec_sql(file, "CREATE TABLE t(x); INSERT INTO t VALUES ('legacy data')");
	snprintf(url, sizeof(url), "file:%s", file);
	ref = adopted_ref(ENV_A, "acme", url);

	/* mint, rotation, probe */
	ck_assert_int_eq(mint_via(&ref, NULL), ENVDB_OK);
	ck_assert_int_eq(mint_via(&ref, ""), ENVDB_OK);
	ck_assert_int_eq(probe_via(&ref), ENVDB_OK);
	/* the other spellings of a local file URL */
	snprintf(url, sizeof(url), "file://%s", file);
	ref = adopted_ref(ENV_A, "acme", url);
	ck_assert_int_eq(mint_via(&ref, NULL), ENVDB_OK);
	snprintf(url, sizeof(url), "file://localhost%s", file);
	ref = adopted_ref(ENV_A, "acme", url);
	ck_assert_int_eq(probe_via(&ref), ENVDB_OK);
	/* the adapter never lists it: it is not a name it derives */
	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
	ck_assert_uint_eq(n, 0);
	envdbi_strv_free(names, n);

	/* Without the migration marker a foreign name is refused as before. */
	snprintf(url, sizeof(url), "file:%s", file);
	ref = adopted_ref(ENV_A, "acme", url);
	ref.metadata = "{}";
	ck_assert_int_eq(mint_via(&ref, NULL), ENVDB_ERR_INVALID);
	assert_error_mentions("does not belong", NULL);
	ref.metadata = NULL;
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_INVALID);
	ck_assert(exists(file));

	/* URLs that do not name one local file by an absolute, plain path */
	{
		const char *bad[] = {"file:v4/acme.db", "file://db.example/acme.db",
				     "postgres://db.example/acme", NULL, NULL, NULL};
		char q[PATH_MAX + 80], dir_only[PATH_MAX + 80], dot[PATH_MAX + 80];

		snprintf(q, sizeof(q), "file:%s?mode=ro", file);
		snprintf(dir_only, sizeof(dir_only), "file:%s/", legacy);
		snprintf(dot, sizeof(dot), "file:%s/./acme.db", legacy);
		bad[3] = q;
		bad[4] = dir_only;
		bad[5] = dot;
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			ref = adopted_ref(ENV_A, "acme", bad[i]);
			ck_assert_msg(mint_via(&ref, NULL) == ENVDB_ERR_INVALID, "url %s", bad[i]);
			assert_error_mentions("acme", NULL);
			ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_INVALID);
		}
		ref = adopted_ref(ENV_A, "acme", NULL);
		ck_assert_int_eq(mint_via(&ref, NULL), ENVDB_ERR_INVALID);
	}
	ck_assert(exists(file));

	/* Symbolic links: not as the directory, not on the way, not as the
	 * file; nothing is followed or removed. */
	snprintf(path, sizeof(path), "%s/linkdir", legacy);
	ck_assert_int_eq(symlink(legacy, path), 0);
	snprintf(url, sizeof(url), "file:%s/linkdir/acme.db", legacy);
	ref = adopted_ref(ENV_A, "acme", url);
	ck_assert_int_eq(mint_via(&ref, NULL), ENVDB_ERR_INVALID);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_INVALID);
	snprintf(path, sizeof(path), "%s/sub", legacy);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/sub/acme.db", legacy);
	write_text(path, "");
	snprintf(url, sizeof(url), "file:%s/linkdir/sub/acme.db", legacy);
	ref = adopted_ref(ENV_A, "acme", url);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_INVALID);
	assert_error_mentions("canonical", "acme");
	ck_assert(exists(path));
	snprintf(path, sizeof(path), "%s/lnk.db", legacy);
	ck_assert_int_eq(symlink(file, path), 0);
	snprintf(url, sizeof(url), "file:%s", path);
	ref = adopted_ref(ENV_A, "lnk", url);
	ck_assert_int_eq(mint_via(&ref, NULL), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_eq(probe_via(&ref), ENVDB_ERR_IO);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_IO);
	assert_error_mentions("not a regular file", "lnk");
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	v = query(file, "SELECT x FROM t");
	ck_assert_str_eq(v, "legacy data");
	free(v);

	/* A file in base_dir named like one of the adapter's own databases is
	 * never adopted under another name (reconcile would judge it an
	 * orphan). */
	ck_assert_ptr_nonnull(realpath(dbdir, owned_dir));
	snprintf(path, sizeof(path), "%s/%s.db", owned_dir, NAME_B);
	write_text(path, "");
	snprintf(url, sizeof(url), "file:%s", path);
	ref = adopted_ref(ENV_A, "acme", url);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_INVALID);
	assert_error_mentions("owns", NULL);
	ck_assert(exists(path));
	ck_assert_int_eq(unlink(path), 0);

	/* Gone (file or directory): mint and probe say so, drop succeeds. */
	snprintf(url, sizeof(url), "file:%s/gone.db", legacy);
	ref = adopted_ref(ENV_B, "gone", url);
	ck_assert_int_eq(mint_via(&ref, NULL), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_eq(probe_via(&ref), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_OK);
	snprintf(url, sizeof(url), "file:%s/no-such-dir/gone.db", legacy);
	ref = adopted_ref(ENV_B, "gone", url);
	ck_assert_int_eq(mint_via(&ref, NULL), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_OK);

	/* Drop removes exactly that database: the file and its side files,
	 * nothing next to it. */
	snprintf(path, sizeof(path), "%s-shm", file);
	write_text(path, "side");
	snprintf(path, sizeof(path), "%s.bak", file);
	write_text(path, "backup");
	snprintf(path, sizeof(path), "%s/other.db", legacy);
	write_text(path, "");
	snprintf(url, sizeof(url), "file:%s", file);
	ref = adopted_ref(ENV_A, "acme", url);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_OK);
	ck_assert(!exists(file));
	snprintf(path, sizeof(path), "%s-shm", file);
	ck_assert(!exists(path));
	snprintf(path, sizeof(path), "%s.bak", file);
	ck_assert(exists(path));
	snprintf(path, sizeof(path), "%s/other.db", legacy);
	ck_assert(exists(path));
	snprintf(path, sizeof(path), "%s/lnk.db", legacy);
	ck_assert_int_eq(lstat(path, &st), 0); /* the dangling link is left alone */
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_OK); /* already gone */

	/* With a trash: moved into an entry named after the environment's own
	 * database, stored under that name, so purge and restore work alike. */
	reload_with("      base_dir: dbs\n"
		    "      trash_dir: trash\n"
		    "      grace_seconds: 3600\n");
	snprintf(trash, sizeof(trash), "%s/trash", tmpdir);
	snprintf(file, sizeof(file), "%s/globex.db", legacy);
	write_text(file, "");
	exec_sql(file, "CREATE TABLE t(x); INSERT INTO t VALUES ('globex data')");
	snprintf(url, sizeof(url), "file:%s", file);
	ref = adopted_ref(ENV_B, "globex", url);
	ck_assert_int_eq(mint_via(&ref, NULL), ENVDB_OK);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_OK);
	ck_assert(!exists(file));
	ck_assert_int_eq(list_dir(trash, entry, sizeof(entry)), 1);
	ck_assert_int_eq(strncmp(entry, NAME_B ".", strlen(NAME_B) + 1), 0);
	snprintf(path, sizeof(path), "%s/%s/%s.db", trash, entry, NAME_B);
	v = query(path, "SELECT x FROM t");
	ck_assert_str_eq(v, "globex data");
	free(v);
}
END_TEST

START_TEST(test_config)
{
	char path[PATH_MAX];

	/* base_dir is required. */
	unload();
	write_manifest("      trash_dir: trash\n");
	ck_assert_int_eq(load(), ENVDB_ERR_CONFIG);
	assert_error_mentions("base_dir", NULL);
	unload();
	/* A base_dir that URLs and JSON could not carry verbatim. */
	write_manifest("      base_dir: \"dbs?mode=ro\"\n");
	ck_assert_int_eq(load(), ENVDB_ERR_CONFIG);
	unload();
	/* The trash cannot be the database directory itself. */
	write_manifest("      base_dir: dbs\n      trash_dir: dbs\n");
	ck_assert_int_eq(load(), ENVDB_ERR_CONFIG);
	unload();
	write_manifest("      base_dir: dbs\n      grace_seconds: soon\n");
	ck_assert_int_eq(load(), ENVDB_ERR_CONFIG);
	unload();
	/* grace_seconds alone enables <base_dir>/.trash; an absolute base_dir. */
	snprintf(path, sizeof(path), "      base_dir: %s/abs\n      grace_seconds: 60\n", tmpdir);
	write_manifest(path);
	ck_assert_int_eq(load(), ENVDB_OK);
	snprintf(path, sizeof(path), "%s/abs/.trash", tmpdir);
	ck_assert(exists(path));
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(drop(ENV_A, NULL), ENVDB_OK);
	ck_assert_int_eq(count_entries(path), 1);
}
END_TEST

/* A full disk, simulated with RLIMIT_FSIZE (no root needed; SIGXFSZ
 * ignored, so a write past the limit fails with EFBIG): SQLite answers
 * "wal" to the switch and closes cleanly although nothing reached the file.
 * create must fail and leave no file behind.  Before the fix it reported
 * success with a 0-byte database in rollback mode. */
START_TEST(test_create_full_disk)
{
	static const rlim_t limits[] = {200, 1000, 4095};
	char path[PATH_MAX], side[PATH_MAX];
	struct rlimit saved, lim;
	size_t i;
	int rc;

	db_path(path, sizeof(path), dbdir, NAME_A, "");
	ck_assert_ptr_ne(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
	for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		int limited;

		lim = saved;
		lim.rlim_cur = limits[i];
		/* No Check call while the limit holds: without fork (CK_FORK=no,
		 * the valgrind run) Check records every assertion in a file,
		 * which the limit would cut. */
		limited = setrlimit(RLIMIT_FSIZE, &lim);
		rc = create(ENV_A, NULL, NULL);
		ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
		ck_assert_int_eq(limited, 0);
		ck_assert_msg(rc == ENVDB_ERR_IO, "limit %lu: create returned %d (%s)",
			      (unsigned long)limits[i], rc, envdb_error_last()->message);
		assert_error_mentions("create", NAME_A);
		ck_assert_msg(!exists(path), "limit %lu: %s left behind", (unsigned long)limits[i],
			      path);
		db_path(side, sizeof(side), dbdir, NAME_A, "-wal");
		ck_assert(!exists(side));
		db_path(side, sizeof(side), dbdir, NAME_A, "-shm");
		ck_assert(!exists(side));
	}
	/* With room again, the same create works and is in WAL mode. */
	ck_assert_int_eq(create(ENV_A, NULL, NULL), ENVDB_OK);
	{
		char *mode = query(path, "PRAGMA journal_mode");
		ck_assert_str_eq(mode, "wal");
		free(mode);
	}
	signal(SIGXFSZ, SIG_DFL);
}
END_TEST

/* base_dir (and trash_dir) writable by group or others is refused, as the
 * kms keyring refuses a directory others can reach. */
START_TEST(test_base_dir_mode)
{
	char shared[DIR_MAX + 64], cfg[3 * DIR_MAX];
	static const mode_t bad[] = {0777, 0770, 0702, 01777};
	size_t i;

	snprintf(shared, sizeof(shared), "%s/shared", tmpdir);
	ck_assert_int_eq(mkdir(shared, 0700), 0);
	snprintf(cfg, sizeof(cfg), "      base_dir: %s\n", shared);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(chmod(shared, bad[i]), 0);
		unload();
		write_manifest(cfg);
		ck_assert_int_eq(load(), ENVDB_ERR_CONFIG);
		assert_error_mentions("base_dir", "writable by group or others");
	}
	/* Readable by others, or owner only: fine. */
	ck_assert_int_eq(chmod(shared, 0755), 0);
	reload_with(cfg);
	ck_assert_int_eq(chmod(shared, 0700), 0);
	reload_with(cfg);
	/* The trash directory follows the same rule. */
	snprintf(cfg, sizeof(cfg), "      base_dir: %s\n      trash_dir: %s/trash\n", shared, tmpdir);
	snprintf(shared, sizeof(shared), "%s/trash", tmpdir);
	ck_assert_int_eq(mkdir(shared, 0700), 0);
	ck_assert_int_eq(chmod(shared, 0777), 0);
	unload();
	write_manifest(cfg);
	ck_assert_int_eq(load(), ENVDB_ERR_CONFIG);
	assert_error_mentions("trash_dir", "writable by group or others");
}
END_TEST

static Suite *sqlite_suite(void)
{
	Suite *s = suite_create("plugin_sqlite");
	TCase *tc = tcase_create("adapter");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_descriptor);
	tcase_add_test(tc, test_database_name);
	tcase_add_test(tc, test_create);
	tcase_add_test(tc, test_deployment_marker);
	tcase_add_test(tc, test_create_syncs);
	tcase_add_test(tc, test_create_twice);
	tcase_add_test(tc, test_drop);
	tcase_add_test(tc, test_trash);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_mint_and_probe);
	tcase_add_test(tc, test_read_only_url);
	tcase_add_test(tc, test_adopted);
	tcase_add_test(tc, test_config);
	tcase_add_test(tc, test_create_full_disk);
	tcase_add_test(tc, test_base_dir_mode);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sqlite_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
