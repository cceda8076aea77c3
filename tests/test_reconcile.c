/*
 * tests/test_reconcile.c — envdb_reconcile() (DESIGN.md §4.6, invariant 8)
 * and deletion: a dry run changes nothing; --apply rolls back expired
 * intents, executes due deletions, ends rotations whose window closed and
 * drops orphan databases; rows whose database is gone are reported.  Then
 * the crash matrix: EVERY failpoint of ENVDBI_FAILPOINT_LIST, armed as
 * "error" and as "kill" in a child that runs every multi-step operation;
 * after one reconcile --apply (and a re-run of the v4 -> v5 migration)
 * the deployment is consistent.  It prints how many failpoints it covered.
 */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "failpoint.h"
#include "internal.h"
#include "legacy_seed.h"
#include "testdeploy.h"

#ifdef ENVDB_FAILPOINTS
#define ENVDB_TEST_FAILPOINTS 1
#else
#define ENVDB_TEST_FAILPOINTS 0
#endif
#define NEED_FAILPOINTS()                                                              \
	do {                                                                           \
		if (!ENVDB_TEST_FAILPOINTS) {                                          \
			fprintf(stderr, "SKIP %s: failpoints not compiled in "         \
					"(configure --enable-failpoints)\n",           \
				__func__);                                             \
			return;                                                        \
		}                                                                      \
	} while (0)

static td T;

static void setup(void)
{
	td_setup(&T, NULL);
}

static void teardown(void)
{
	td_teardown(&T);
}

/* Create a file the faulty adapter lists as its database: an orphan. */
static void make_orphan(const char *hex32)
{
	char path[PATH_MAX + 64];
	int fd;

	snprintf(path, sizeof(path), "%s/fdb_%s.db", T.faulty_dir, hex32);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

static size_t count_kind(const envdb_reconcile_report *r, const char *kind, const char *action)
{
	size_t i, n = 0;

	for (i = 0; i < r->n_items; i++)
		if (strcmp(r->items[i].kind, kind) == 0 &&
		    (action == NULL || strcmp(r->items[i].action, action) == 0))
			n++;
	return n;
}

/* Consistency after reconcile: nothing provisioning, every physical
 * database has a row and every row its database, envdb check clean, every
 * active environment resolves for its owner, and a second reconcile with
 * every deadline past has nothing left to do. */
static void assert_reconciled(envdb_ctx *ctx)
{
	envdb_environment **v = NULL;
	envdb_reconcile_report *r = NULL;
	size_t n = 0, i, with_db = 0;

	ck_assert_int_eq(envdb_env_list(&v, &n, ctx, NULL), ENVDB_OK);
	for (i = 0; i < n; i++) {
		envdb_database *db = NULL;

		ck_assert_msg(strcmp(v[i]->status, "provisioning") != 0, "%s/%s provisioning",
			      v[i]->organization_id, v[i]->slug);
		if (envdb_env_database(&db, ctx, v[i]->organization_id, v[i]->slug) == ENVDB_OK) {
			/* migrated v4 databases live on a backend not loaded here */
			if (strcmp(db->driver, "postgres") != 0)
				with_db++;
			envdb_database_free(db);
		}
		if (strcmp(v[i]->status, "active") == 0) {
			envdb_connection *c = NULL;
			int rc = envdb_resolve(&c, ctx, v[i]->organization_id, v[i]->slug,
					       v[i]->created_by);

			ck_assert_msg(rc == ENVDB_OK, "resolve %s/%s: %s", v[i]->organization_id,
				      v[i]->slug, envdb_error_last()->message);
			envdb_connection_free(c);
		}
	}
	envdb_environment_list_free(v, n);
	ck_assert_uint_eq(td_faulty_dbs(&T) + td_sqlite_dbs(&T), with_db);
	ck_assert_uint_eq(td_check(ctx), 0);
	td_clock_ahead(30 * 86400);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	td_clock_ahead(0);
	for (i = 0; i < r->n_items; i++)
		fprintf(stderr, "left: %s %s %s\n", r->items[i].kind, r->items[i].action,
			r->items[i].label ? r->items[i].label : "");
	ck_assert_uint_eq(r->n_items, 0);
	envdb_reconcile_report_free(r);
}

START_TEST(test_nothing_to_do)
{
	envdb_reconcile_report *r = NULL;
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "lite", "sqlite", "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY), ENVDB_OK);
	ck_assert_int_eq(r->applied, 1);
	ck_assert_uint_eq(r->n_items, 0);
	envdb_reconcile_report_free(r);
	assert_reconciled(ctx);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_orphans_dropped_only_with_apply)
{
	envdb_reconcile_report *r = NULL;
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	make_orphan("0123456789abcdef0123456789abcdef");
	ck_assert_uint_eq(td_faulty_dbs(&T), 2);

	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	ck_assert_int_eq(r->applied, 0);
	ck_assert_uint_eq(r->n_items, 1);
	ck_assert_uint_eq(count_kind(r, "orphan", "would drop"), 1);
	ck_assert_str_eq(r->items[0].database_name, "fdb_0123456789abcdef0123456789abcdef");
	ck_assert_str_eq(r->items[0].driver, "faulty");
	envdb_reconcile_report_free(r);
	ck_assert_uint_eq(td_faulty_dbs(&T), 2);

	ck_assert_int_eq(envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY), ENVDB_OK);
	ck_assert_uint_eq(count_kind(r, "orphan", "dropped"), 1);
	ck_assert_uint_eq(r->n_failed, 0);
	envdb_reconcile_report_free(r);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	assert_reconciled(ctx);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_missing_database_reported)
{
	envdb_reconcile_report *r = NULL;
	envdb_database *db = NULL;
	char path[PATH_MAX + 64];
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_env_database(&db, ctx, "acme", "dev"), ENVDB_OK);
	snprintf(path, sizeof(path), "%s/%.40s.db", T.faulty_dir, db->database_name);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY), ENVDB_OK);
	ck_assert_uint_eq(count_kind(r, "missing", "none"), 1);
	ck_assert_uint_eq(r->n_failed, 1);
	ck_assert_int_eq(r->items[0].status, ENVDB_ERR_NOT_FOUND);
	ck_assert_ptr_nonnull(strstr(r->items[0].message, db->database_name));
	envdb_reconcile_report_free(r);
	envdb_database_free(db);
	envdb_close(ctx);
}
END_TEST

/* Issue 16 §3: more orphans than the safety limit at once are dropped only
 * with ENVDB_RECONCILE_FORCE; without it reconcile --apply changes nothing
 * (not the orphans, not the other work it found either). */
START_TEST(test_orphan_drop_limit_needs_force)
{
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_reconcile_report *r = NULL;
	envdb_ctx *ctx = td_open(&T);
	const char *msg;
	size_t n_rot;

	/* 10% of the registered databases, at least 1, at most 10 */
	ck_assert_uint_eq(envdbi_reconcile_drop_limit(0), 1);
	ck_assert_uint_eq(envdbi_reconcile_drop_limit(19), 1);
	ck_assert_uint_eq(envdbi_reconcile_drop_limit(20), 2);
	ck_assert_uint_eq(envdbi_reconcile_drop_limit(99), 9);
	ck_assert_uint_eq(envdbi_reconcile_drop_limit(100), 10);
	ck_assert_uint_eq(envdbi_reconcile_drop_limit(100000), 10);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	make_orphan("0123456789abcdef0123456789abcde1");
	make_orphan("0123456789abcdef0123456789abcde2");
	/* a rotation whose window ended: work reconcile would also do */
	ro.overlap_seconds = 60;
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_OK);
	td_clock_ahead(3600);
	ck_assert_uint_eq(td_faulty_dbs(&T), 3);

	/* the dry run reports them all */
	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(count_kind(r, "orphan", "would drop"), 2);
	n_rot = count_kind(r, "rotation", "would revoke");
	ck_assert_uint_gt(n_rot, 0);
	envdb_reconcile_report_free(r);
	r = NULL;

	/* 2 orphans for 1 registered database: over the limit of 1 */
	ck_assert_int_eq(envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY), ENVDB_ERR_STATE);
	ck_assert_ptr_null(r);
	msg = envdb_error_last()->message;
	ck_assert_msg(strstr(msg, "would drop 2 orphan databases") != NULL &&
			  strstr(msg, "limit of 1 for 1 registered") != NULL &&
			  strstr(msg, "nothing was changed") != NULL && strstr(msg, "--force"),
		      "%s", msg);
	ck_assert_uint_eq(td_faulty_dbs(&T), 3);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(count_kind(r, "orphan", "would drop"), 2);
	ck_assert_uint_eq(count_kind(r, "rotation", "would revoke"), n_rot);
	envdb_reconcile_report_free(r);
	r = NULL;

	/* FORCE without APPLY changes nothing either; with APPLY it acts */
	ck_assert_int_eq(envdb_reconcile(&r, ctx, ENVDB_RECONCILE_FORCE), ENVDB_OK);
	ck_assert_uint_eq(count_kind(r, "orphan", "would drop"), 2);
	envdb_reconcile_report_free(r);
	r = NULL;
	ck_assert_int_eq(envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY | ENVDB_RECONCILE_FORCE),
			 ENVDB_OK);
	ck_assert_uint_eq(count_kind(r, "orphan", "dropped"), 2);
	ck_assert_uint_eq(count_kind(r, "rotation", "revoked"), n_rot);
	ck_assert_uint_eq(r->n_failed, 0);
	envdb_reconcile_report_free(r);
	td_clock_ahead(0);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	assert_reconciled(ctx);
	envdb_close(ctx);
}
END_TEST

/* The file of a sqlite environment's database (from resolve), and a value
 * written into / read from it with plain SQLite. */
static void sqlite_file_of(char *out, size_t cap, envdb_ctx *ctx, const char *org,
			   const char *slug)
{
	envdb_connection *c = NULL;

	ck_assert_int_eq(envdb_resolve(&c, ctx, org, slug, "alice"), ENVDB_OK);
	ck_assert_str_eq(c->driver, "sqlite");
	ck_assert(strncmp(c->database_url, "file:", 5) == 0);
	snprintf(out, cap, "%s", c->database_url + 5);
	envdb_connection_free(c);
}

static void sqlite_put(const char *path, const char *sql)
{
	sqlite3 *db = NULL;

	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static int sqlite_get(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int v = -1;

	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	if (sqlite3_prepare_v2(db, "SELECT x FROM kept", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/*
 * Issue 16 §3: two deployments (two control planes, two manifests) share
 * one sqlite base_dir.  Reconcile on each lists no orphan of the other,
 * --apply on each drops nothing of the other, and both still resolve and
 * read their data.  A database of an earlier envdb (no marker, provisioned
 * before the control plane had a deployment id) keeps working for its own
 * deployment, is "unverified" there, and is no orphan of the other.
 * Before deployment ids each listed the other's files as orphans and
 * --apply dropped them.
 */
START_TEST(test_two_deployments_one_base_dir)
{
	static const char *slugs[] = {"prod", "dev", "prod", "dev"};
	static const char *orgs[] = {"acme", "acme", "beta", "beta"};
	envdb_reconcile_report *r = NULL;
	char text[16384], path[4][PATH_MAX], old_path[PATH_MAX], marker[PATH_MAX + 16];
	envdb_ctx *ctx[2];
	td T2;
	FILE *f;
	size_t len, k, pass;
	char *at;

	/* T2's sqlite adapter works in T's base_dir. */
	td_setup(&T2, NULL);
	f = fopen(T2.manifest, "r");
	ck_assert_ptr_nonnull(f);
	len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[len] = '\0';
	at = strstr(text, "base_dir: environments\n");
	ck_assert_ptr_nonnull(at);
	{
		char rest[16384];

		snprintf(rest, sizeof(rest), "%s", at + strlen("base_dir: environments\n"));
		snprintf(at, sizeof(text) - (size_t)(at - text), "base_dir: %s\n%s", T.sqlite_dir,
			 rest);
	}
	f = fopen(T2.manifest, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);

	ctx[0] = td_open(&T);
	ctx[1] = td_open(&T2);
	ck_assert_str_ne(envdb_deployment_id(ctx[0]), envdb_deployment_id(ctx[1]));
	for (k = 0; k < 4; k++) {
		ck_assert_int_eq(td_provision(ctx[k / 2], orgs[k], slugs[k], "sqlite", "alice"),
				 ENVDB_OK);
		sqlite_file_of(path[k], sizeof(path[k]), ctx[k / 2], orgs[k], slugs[k]);
		sqlite_put(path[k], "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)");
	}
	/* An earlier envdb's database of the first deployment: provisioned
	 * before its deployment id existed, and without a marker. */
	td_clock_ahead(-86400);
	ck_assert_int_eq(td_provision(ctx[0], "acme", "old", "sqlite", "alice"), ENVDB_OK);
	td_clock_ahead(0);
	sqlite_file_of(old_path, sizeof(old_path), ctx[0], "acme", "old");
	sqlite_put(old_path, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)");
	snprintf(marker, sizeof(marker), "%.*s.envdb", (int)(strlen(old_path) - 3), old_path);
	ck_assert_int_eq(unlink(marker), 0);
	ck_assert_uint_eq(td_sqlite_dbs(&T), 5);

	for (pass = 0; pass < 2; pass++)
		for (k = 0; k < 2; k++) {
			envdb_ctx *c = ctx[k ^ pass];

			ck_assert_int_eq(envdb_reconcile(&r, c, 0), ENVDB_OK);
			ck_assert_uint_eq(count_kind(r, "orphan", NULL), 0);
			ck_assert_uint_eq(count_kind(r, "missing", NULL), 0);
			ck_assert_uint_eq(count_kind(r, "unverified", "none"), c == ctx[0] ? 1 : 0);
			ck_assert_uint_eq(r->n_failed, 0);
			envdb_reconcile_report_free(r);
			r = NULL;
			ck_assert_int_eq(envdb_reconcile(&r, c, ENVDB_RECONCILE_APPLY), ENVDB_OK);
			ck_assert_uint_eq(count_kind(r, "orphan", NULL), 0);
			ck_assert_uint_eq(r->n_failed, 0);
			envdb_reconcile_report_free(r);
			r = NULL;
			ck_assert_uint_eq(td_check(c), 0);
			ck_assert_uint_eq(td_sqlite_dbs(&T), 5);
		}
	for (k = 0; k < 4; k++) {
		char again[PATH_MAX];

		sqlite_file_of(again, sizeof(again), ctx[k / 2], orgs[k], slugs[k]);
		ck_assert_str_eq(again, path[k]);
		ck_assert_int_eq(sqlite_get(path[k]), 42);
	}
	ck_assert_int_eq(sqlite_get(old_path), 42);
	/* Each deletes its own (the earlier envdb's one too); the other's stay. */
	ck_assert_int_eq(envdb_env_delete(ctx[0], "acme", "old", ENVDB_DELETE_NOW), ENVDB_OK);
	ck_assert_int_eq(envdb_env_delete(ctx[0], "acme", "dev", ENVDB_DELETE_NOW), ENVDB_OK);
	ck_assert_uint_eq(td_sqlite_dbs(&T), 3);
	ck_assert_int_eq(sqlite_get(path[3]), 42);
	envdb_close(ctx[0]);
	envdb_close(ctx[1]);
	td_teardown(&T2);
}
END_TEST

/* Child of test_orphan_race: wait until the parent's reconcile is inside
 * the faulty adapter's list(), provision there, then open the gate. */
static int provision_during_list(void *arg)
{
	char gate[PATH_MAX + 16], waiting[PATH_MAX + 16];
	envdb_ctx *ctx = NULL;
	int i, rc;

	(void)arg;
	snprintf(gate, sizeof(gate), "%s/list.gate", T.faulty_dir);
	snprintf(waiting, sizeof(waiting), "%s/list.waiting", T.faulty_dir);
	for (i = 0; i < 12000 && access(waiting, F_OK) != 0; i++)
		usleep(10000);
	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		rc = 90;
	else
		rc = td_provision(ctx, "acme", "race", NULL, "alice") == ENVDB_OK ? 0 : 91;
	envdb_close(ctx);
	unlink(gate);
	return rc;
}

/* A database provisioned while reconcile runs is not an orphan: reconcile
 * must judge a listed database against rows read AFTER the listing (the
 * intent is committed before the database is created). */
START_TEST(test_orphan_race)
{
	envdb_reconcile_report *r = NULL;
	envdb_connection *c = NULL;
	char gate[PATH_MAX + 16];
	envdb_ctx *ctx;
	int status = 0, fd;
	pid_t pid;

	snprintf(gate, sizeof(gate), "%s/list.gate", T.faulty_dir);
	fd = open(gate, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	/* Fork before opening anything: the child inherits no context. */
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(provision_during_list(NULL));
	ctx = td_open(&T);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY), ENVDB_OK);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	ck_assert_uint_eq(count_kind(r, "orphan", NULL), 0);
	envdb_reconcile_report_free(r);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "race", "alice"), ENVDB_OK);
	envdb_connection_free(c);
	assert_reconciled(ctx);
	envdb_close(ctx);
}
END_TEST

static int killed_provision(void *arg)
{
	envdb_ctx *ctx = NULL;

	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		return 90;
	td_failpoints(arg);
	td_provision(ctx, "acme", "half", NULL, "alice");
	envdb_close(ctx);
	return 91;
}

START_TEST(test_dry_run_changes_nothing)
{
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_reconcile_report *r = NULL;
	envdb_ctx *ctx;

	NEED_FAILPOINTS();
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "old", NULL, "alice"), ENVDB_OK);
	ro.overlap_seconds = 60;
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_OK);
	ck_assert_int_eq(envdb_env_delete(ctx, "acme", "old", 0), ENVDB_OK);
	envdb_close(ctx);
	{
		int st = td_fork(killed_provision, (void *)"provision.after_mint=kill");

		ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	}
	make_orphan("fedcba9876543210fedcba9876543210");
	ctx = td_open(&T);
	ck_assert_uint_eq(td_faulty_dbs(&T), 4);

	/* Before any deadline: only the orphan is due. */
	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(r->n_items, 1);
	ck_assert_uint_eq(count_kind(r, "orphan", "would drop"), 1);
	envdb_reconcile_report_free(r);

	/* With every deadline past: everything is reported, nothing done. */
	td_clock_ahead(86400);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(count_kind(r, "intent", "would roll back"), 1);
	ck_assert_uint_eq(count_kind(r, "deletion", "would delete"), 1);
	ck_assert_uint_eq(count_kind(r, "rotation", "would revoke"), 2);
	ck_assert_uint_eq(count_kind(r, "orphan", "would drop"), 1);
	ck_assert_uint_eq(r->n_items, 5);
	envdb_reconcile_report_free(r);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(r->n_items, 5);
	envdb_reconcile_report_free(r);
	ck_assert_uint_eq(td_faulty_dbs(&T), 4);
	ck_assert_uint_eq(td_env_count(ctx, "acme", "provisioning"), 1);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 3);

	ck_assert_int_eq(envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY), ENVDB_OK);
	td_clock_ahead(0);
	ck_assert_uint_eq(r->n_failed, 0);
	ck_assert_uint_eq(count_kind(r, "intent", "rolled back"), 1);
	ck_assert_uint_eq(count_kind(r, "deletion", "deleted"), 1);
	ck_assert_uint_eq(count_kind(r, "rotation", "revoked"), 2);
	ck_assert_uint_eq(count_kind(r, "orphan", "dropped"), 1);
	envdb_reconcile_report_free(r);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 1);
	assert_reconciled(ctx);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_delete_grace_and_now)
{
	envdb_environment *env = NULL;
	envdb_ctx *ctx = td_open(&T);
	int64_t now = (int64_t)time(NULL);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "tmp", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "arch", NULL, "alice"), ENVDB_OK);

	/* Archive keeps the database. */
	ck_assert_int_eq(envdb_env_archive(ctx, "acme", "arch"), ENVDB_OK);
	ck_assert_int_eq(envdb_env_archive(ctx, "acme", "arch"), ENVDB_ERR_STATE);

	/* Delete with the grace period (manifest: 3600 s). */
	ck_assert_int_eq(envdb_env_delete(ctx, "acme", "dev", 0), ENVDB_OK);
	ck_assert_int_eq(envdb_env_get(&env, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_str_eq(env->status, "archived");
	ck_assert_int_ge(env->delete_after, now + 3600);
	ck_assert_int_le(env->delete_after, now + 3605);
	ck_assert_ptr_nonnull(env->pending_database_name);
	envdb_environment_free(env);
	ck_assert_uint_eq(td_faulty_dbs(&T), 3);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 0), 0);
	ck_assert_uint_eq(td_faulty_dbs(&T), 3);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 3700), 0);
	ck_assert_uint_eq(td_faulty_dbs(&T), 2);
	ck_assert_int_eq(envdb_env_get(&env, ctx, "acme", "dev"), ENVDB_ERR_NOT_FOUND);
	/* The slug is free again. */
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);

	/* --now drops at once; an archived environment can be deleted too. */
	ck_assert_int_eq(envdb_env_delete(ctx, "acme", "tmp", ENVDB_DELETE_NOW), ENVDB_OK);
	ck_assert_int_eq(envdb_env_delete(ctx, "acme", "arch", ENVDB_DELETE_NOW), ENVDB_OK);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 1);
	ck_assert_int_eq(envdb_env_delete(ctx, "acme", "tmp", 0), ENVDB_ERR_NOT_FOUND);
	assert_reconciled(ctx);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_delete_drop_fails)
{
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	td_fail_at(&T, "drop");
	ck_assert_int_eq(envdb_env_delete(ctx, "acme", "dev", ENVDB_DELETE_NOW),
			 ENVDB_ERR_UNAVAILABLE);
	/* The deletion intent stays, so nothing is lost: reconcile retries. */
	ck_assert_uint_eq(td_env_count(ctx, "acme", "archived"), 1);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 0), 1);
	td_fail_at(&T, NULL);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 0), 0);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 0);
	ck_assert_uint_eq(td_faulty_dbs(&T), 0);
	assert_reconciled(ctx);
	envdb_close(ctx);
}
END_TEST

/* ---- the crash matrix --------------------------------------------------- */
/*
 * EVERY failpoint of ENVDBI_FAILPOINT_LIST (the static list: a point added
 * there is covered without touching this file), each armed as "error" and
 * as "kill" in a child that runs every multi-step operation: provisioning
 * (a good one and one whose compensation runs), rotation, completion,
 * rewrap, deletion now and with grace, reconcile --apply of an expired
 * intent, a due deletion, an ended rotation and an orphan, and the v4 -> v5
 * migration.  The matrix fails when an armed point is never reached (an
 * "error" that nobody reported, a "kill" that did not kill).  Recovery is
 * what an operator runs: `reconcile --apply` and a re-run of the migration.
 * Afterwards: no orphan physical database and no row without one, nothing
 * provisioning, the environments that existed before are whole (same ids,
 * same databases, resolvable), every legacy row became exactly one
 * environment, and `envdb check` is clean.
 */

#define POINT_NAME(name, what) name,
static const char *const all_points[] = {ENVDBI_FAILPOINT_LIST(POINT_NAME)};
#undef POINT_NAME
#define N_POINTS (sizeof(all_points) / sizeof(all_points[0]))

/* The legacy v4 registry the migration moves: organization, rows. */
static const struct {
	const char *org, *name, *url;
} legacy_rows[] = {
	{"v4-one", "v4_one_main", "postgres://pg.example/v4_one_main"},
	{"v4-two", "v4_two_main", "postgres://pg.example/v4_two_main"},
	{"v4-two", "v4_two_eu", "postgresql://pg-eu.example/v4_two_eu"},
};
#define N_LEGACY (sizeof(legacy_rows) / sizeof(legacy_rows[0]))

typedef struct matrix_before {
	char prod_id[40], dev_id[40], prod_db[80], dev_db[80];
} matrix_before;

static void matrix_fixture_setup(void)
{
	td_opts o = TD_OPTS_INIT;

	o.legacy_shim = true;
	td_setup(&T, &o);
}

static void env_ids(envdb_ctx *ctx, const char *slug, char *id, char *db_name)
{
	envdb_environment *e = NULL;
	envdb_database *db = NULL;

	ck_assert_int_eq(envdb_env_get(&e, ctx, "acme", slug), ENVDB_OK);
	ck_assert_int_eq(envdb_env_database(&db, ctx, "acme", slug), ENVDB_OK);
	snprintf(id, 40, "%s", e->id);
	snprintf(db_name, 80, "%s", db->database_name);
	envdb_environment_free(e);
	envdb_database_free(db);
}

/* The state the matrix starts from: acme/prod and acme/dev active, acme/old
 * active (deleted with a grace period by the child), an expired
 * provisioning intent acme/half, an orphan database, and a legacy registry
 * of two organizations (three rows, a package installation each). */
static void matrix_setup(matrix_before *before)
{
	envdb_ctx *ctx = td_open(&T);
	size_t i;
	int st;

	ck_assert_int_eq(td_provision(ctx, "acme", "prod", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "old", NULL, "alice"), ENVDB_OK);
	env_ids(ctx, "prod", before->prod_id, before->prod_db);
	env_ids(ctx, "dev", before->dev_id, before->dev_db);
	for (i = 0; i < N_LEGACY; i++) {
		legacy_row r;
		char id[37], pkg[37], token[64];

		memset(&r, 0, sizeof(r));
		snprintf(token, sizeof(token), "v4-token-%zu", i);
		r.organization_id = legacy_rows[i].org;
		r.database_name = legacy_rows[i].name;
		r.database_url = legacy_rows[i].url;
		r.token = token;
		r.created_at = 1000 + (int64_t)i;
		ck_assert_msg(legacy_seed_row(ctx, NULL, &r, id) == ENVDB_OK, "seed: %s",
			      envdb_error_last()->message);
		ck_assert_int_eq(legacy_seed_package(ctx, id, "crm", "1.0.0", pkg), ENVDB_OK);
	}
	envdb_close(ctx);
	st = td_fork(killed_provision, (void *)"provision.after_create=kill");
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	make_orphan("00000000000000000000000000000001");
}

/* Run the migration; true when it reported `point`. */
static bool matrix_migrate(envdb_ctx *ctx, const char *point, int *rc_out)
{
	envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
	envdb_migrate_report *rep = NULL;
	bool seen = false;
	size_t i;
	int rc;

	o.batch = 1;
	o.by = "alice";
	rc = envdb_migrate_v4_to_v5(&rep, ctx, &o);
	if (rc != ENVDB_OK && point && strstr(envdb_error_last()->message, point))
		seen = true;
	if (rep != NULL) {
		if (point && rep->stopped_message && strstr(rep->stopped_message, point))
			seen = true;
		for (i = 0; i < rep->n_orgs; i++)
			if (point && rep->orgs[i].reason && strstr(rep->orgs[i].reason, point))
				seen = true;
		if (rc_out != NULL)
			*rc_out = rc != ENVDB_OK ? rc : (int)(rep->failed + rep->conflicts);
		envdb_migrate_report_free(rep);
	} else if (rc_out != NULL) {
		*rc_out = rc;
	}
	return seen;
}

/* Every multi-step operation, each failpoint reached at least once.  Errors
 * of individual steps are expected (an armed "error" point); the child
 * reports whether the armed point's error was seen. */
static int matrix_child(void *arg)
{
	const char *point = arg;
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_rewrap_report rep = ENVDB_REWRAP_REPORT_INIT;
	envdb_reconcile_report *r = NULL;
	envdb_ctx *ctx = NULL;
	char spec[160], *key = NULL;
	bool seen = false;
	size_t i;

#define STEP(call)                                                                   \
	do {                                                                         \
		if ((call) != ENVDB_OK && strstr(envdb_error_last()->message, point))  \
			seen = true;                                                 \
	} while (0)

	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		return 90;
	snprintf(spec, sizeof(spec), "%s=%s", point, getenv("MATRIX_ACTION"));
	td_failpoints(spec);
	/* provision.*: a good one, and one whose mint fails (compensate) */
	STEP(td_provision(ctx, "acme", "new", NULL, "alice"));
	td_fail_at(&T, "mint");
	STEP(td_provision(ctx, "acme", "bad", NULL, "alice"));
	td_fail_at(&T, NULL);
	/* rotate.*, complete.* */
	STEP(envdb_cred_rotate(ctx, "acme", "prod", NULL));
	STEP(envdb_cred_complete(NULL, ctx, "acme", "prod"));
	ro.overlap_seconds = 60;
	STEP(envdb_cred_rotate(ctx, "acme", "dev", &ro));
	/* rewrap.* under a new key */
	if (envdb_key_generate(&key, ctx, NULL, 1) == ENVDB_OK)
		envdb_free(key);
	STEP(envdb_key_rewrap(&rep, ctx, 0));
	/* delete.* (now), and a delete with grace for reconcile */
	STEP(envdb_env_delete(ctx, "acme", "new", ENVDB_DELETE_NOW));
	STEP(envdb_env_delete(ctx, "acme", "old", 0));
	/* reconcile.*: the expired intent, the due deletion, the ended
	 * rotation, the orphan */
	td_clock_ahead(30 * 86400);
	if (envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY) == ENVDB_OK) {
		for (i = 0; i < r->n_items; i++)
			if (r->items[i].message && strstr(r->items[i].message, point))
				seen = true;
		envdb_reconcile_report_free(r);
	} else if (strstr(envdb_error_last()->message, point)) {
		seen = true;
	}
	td_clock_ahead(0);
	/* migrate.*: the legacy registry */
	if (matrix_migrate(ctx, point, NULL))
		seen = true;
	/* store_copy.*: into a new control plane (an SQLite file) of its own */
	{
		char m[PATH_MAX + 32], cp[PATH_MAX + 64];

		snprintf(m, sizeof(m), "%s/copy-%ld.yaml", T.dir, (long)getpid());
		snprintf(cp, sizeof(cp), "control_plane: %s/copy-%ld.db\n", T.dir, (long)getpid());
		td_manifest_variant(&T, m, cp);
		STEP(envdb_store_copy(NULL, ctx, m));
	}
	envdb_close(ctx);
#undef STEP
	return seen ? 0 : 3;
}

/* Every legacy row became exactly one environment of its organization,
 * whose database row reuses the legacy database; a further run has
 * nothing to do. */
static void assert_migrated(envdb_ctx *ctx)
{
	envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
	envdb_migrate_report *rep = NULL;
	size_t i;

	for (i = 0; i < N_LEGACY; i++) {
		envdb_environment **v = NULL;
		size_t n = 0, k, found = 0, want = 0, j;

		for (j = 0; j < N_LEGACY; j++)
			want += strcmp(legacy_rows[j].org, legacy_rows[i].org) == 0;
		ck_assert_int_eq(envdb_env_list(&v, &n, ctx, legacy_rows[i].org), ENVDB_OK);
		ck_assert_msg(n == want, "%s: %zu environments for %zu legacy rows",
			      legacy_rows[i].org, n, want);
		for (k = 0; k < n; k++) {
			envdb_database *db = NULL;

			ck_assert_int_eq(envdb_env_database(&db, ctx, legacy_rows[i].org, v[k]->slug),
					 ENVDB_OK);
			found += strcmp(db->database_name, legacy_rows[i].name) == 0;
			envdb_database_free(db);
		}
		ck_assert_msg(found == 1, "%s: legacy database %s registered %zu times",
			      legacy_rows[i].org, legacy_rows[i].name, found);
		envdb_environment_list_free(v, n);
	}
	o.by = "alice";
	ck_assert_int_eq(envdb_migrate_v4_to_v5(&rep, ctx, &o), ENVDB_OK);
	ck_assert_uint_eq(rep->migrated, 0);
	ck_assert_uint_eq(rep->failed + rep->conflicts, 0);
	envdb_migrate_report_free(rep);
}

/* The environments that existed before the child ran are whole. */
static void assert_before_kept(envdb_ctx *ctx, const matrix_before *before)
{
	char id[40], db_name[80];

	env_ids(ctx, "prod", id, db_name);
	ck_assert_str_eq(id, before->prod_id);
	ck_assert_str_eq(db_name, before->prod_db);
	env_ids(ctx, "dev", id, db_name);
	ck_assert_str_eq(id, before->dev_id);
	ck_assert_str_eq(db_name, before->dev_db);
	ck_assert_uint_eq(td_env_count(ctx, "acme", "active"), td_env_count(ctx, "acme", NULL));
}

/* One cell of the matrix: fresh deployment, the child with `point` armed
 * as `action`, recovery, invariants. */
static void matrix_run(const char *point, const char *action)
{
	matrix_before before;
	envdb_ctx *ctx;
	int st, mrc = 0;

	td_teardown(&T);
	matrix_fixture_setup();
	matrix_setup(&before);
	setenv("MATRIX_ACTION", action, 1);
	st = td_fork(matrix_child, (void *)point);
	unsetenv("MATRIX_ACTION");
	if (strcmp(action, "kill") == 0)
		ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
			      "%s=kill: the point was never reached (status 0x%x)", point, st);
	else
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "%s=error: the point was never reached or its error was lost "
			      "(status 0x%x)",
			      point, st);
	/* Recovery: reconcile --apply past every deadline (also the lease of
	 * the claim a reconcile killed at 30 days on left), re-run the
	 * migration. */
	td_fail_at(&T, NULL);
	ctx = td_open(&T);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 30 * 86400 + 3600), 0);
	(void)matrix_migrate(ctx, NULL, &mrc);
	ck_assert_msg(mrc == 0, "%s=%s: the migration re-run failed (%d): %s", point, action, mrc,
		      envdb_error_last()->message);
	assert_reconciled(ctx);
	assert_before_kept(ctx, &before);
	assert_migrated(ctx);
	envdb_close(ctx);
}

START_TEST(test_crash_matrix)
{
	static const char *const actions[] = {"error", "kill"};
	size_t i, a, runs = 0;

	NEED_FAILPOINTS();
	ck_assert_uint_ge(N_POINTS, 30);
	for (i = 0; i < N_POINTS; i++) {
		for (a = 0; a < 2; a++) {
			fprintf(stderr, "crash matrix: %-32s %s\n", all_points[i], actions[a]);
			matrix_run(all_points[i], actions[a]);
			runs++;
		}
	}
	fprintf(stderr,
		"crash matrix: %zu failpoints covered (%zu runs: each point armed as error and "
		"as kill, then reconcile --apply and a migration re-run; invariants hold)\n",
		(size_t)N_POINTS, runs);
}
END_TEST

static Suite *reconcile_suite(void)
{
	Suite *s = suite_create("reconcile");
	TCase *tc = tcase_create("reconcile");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_nothing_to_do);
	tcase_add_test(tc, test_orphans_dropped_only_with_apply);
	tcase_add_test(tc, test_orphan_drop_limit_needs_force);
	tcase_add_test(tc, test_two_deployments_one_base_dir);
	tcase_add_test(tc, test_missing_database_reported);
	tcase_add_test(tc, test_orphan_race);
	tcase_add_test(tc, test_dry_run_changes_nothing);
	tcase_add_test(tc, test_delete_grace_and_now);
	tcase_add_test(tc, test_delete_drop_fails);
	suite_add_tcase(s, tc);

	tc = tcase_create("crash matrix");
	tcase_add_checked_fixture(tc, matrix_fixture_setup, teardown);
	/* 2 runs per failpoint, each a fresh deployment (valgrind: minutes) */
	tcase_set_timeout(tc, getenv("ENVDB_VALGRIND") ? 7200 : 900);
	tcase_add_test(tc, test_crash_matrix);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(reconcile_suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
