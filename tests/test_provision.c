/*
 * tests/test_provision.c — crash-safe provisioning (DESIGN.md §4): the happy
 * path on the real sqlite adapter, validation, compensation of every adapter
 * and encryptor failure, a process killed between any two steps, and two
 * processes racing for the same slug or the default environment.  After
 * each failure: no physical database without a row, no row without its
 * database, no environment left provisioning (after reconcile), envdb check
 * clean, and the slug reusable.
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "failpoint.h"
#include "testdeploy.h"

static td T;

static void setup(void)
{
	td_setup(&T, NULL);
}

static void teardown(void)
{
	td_teardown(&T);
}

/* Every environment row of acme that has a database has its physical file,
 * and every physical file has a row; none is provisioning; check is clean. */
static void assert_consistent(envdb_ctx *ctx)
{
	envdb_environment **v = NULL;
	size_t n = 0, i, with_db = 0;

	ck_assert_int_eq(envdb_env_list(&v, &n, ctx, NULL), ENVDB_OK);
	for (i = 0; i < n; i++) {
		envdb_database *db = NULL;

		ck_assert_msg(strcmp(v[i]->status, "provisioning") != 0,
			      "environment %s/%s left provisioning", v[i]->organization_id,
			      v[i]->slug);
		if (envdb_env_database(&db, ctx, v[i]->organization_id, v[i]->slug) == ENVDB_OK) {
			with_db++;
			envdb_database_free(db);
		}
	}
	envdb_environment_list_free(v, n);
	ck_assert_uint_eq(td_faulty_dbs(&T) + td_sqlite_dbs(&T), with_db);
	ck_assert_uint_eq(td_check(ctx), 0);
}

START_TEST(test_provision_sqlite_happy_path)
{
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	envdb_credential **creds = NULL;
	envdb_member **mem = NULL;
	size_t n_creds = 0, n_mem = 0;
	envdb_ctx *ctx = td_open(&T);

	o.driver = "sqlite";
	o.created_by = "alice";
	o.region = "eu-west";
	o.plan = "pro";
	o.storage_limit_mb = 512;
	ck_assert_int_eq(envdb_org_provision(&env, ctx, "acme", NULL, &o), ENVDB_OK);
	ck_assert_str_eq(env->slug, "prod");
	ck_assert_str_eq(env->env_type, "production");
	ck_assert_str_eq(env->status, "active");
	ck_assert_int_eq(env->is_default, 1);
	ck_assert_str_eq(env->created_by, "alice");
	ck_assert_int_eq(env->lease_expires_at, 0);
	ck_assert_ptr_null(env->pending_database_name);

	ck_assert_int_eq(envdb_env_database(&db, ctx, "acme", "prod"), ENVDB_OK);
	ck_assert_str_eq(db->driver, "sqlite");
	ck_assert_str_eq(db->environment_id, env->id);
	ck_assert_int_eq(db->storage_limit_mb, 512);
	ck_assert_uint_eq(td_sqlite_dbs(&T), 1);

	/* full_access and read_only (sqlite's is the ?mode=ro URL), minted
	 * together: in either order */
	ck_assert_int_eq(envdb_cred_list(&creds, &n_creds, ctx, "acme", "prod"), ENVDB_OK);
	ck_assert_uint_eq(n_creds, 2);
	ck_assert_str_ne(creds[0]->authorization, creds[1]->authorization);
	for (size_t i = 0; i < n_creds; i++) {
		ck_assert(strcmp(creds[i]->authorization, "full_access") == 0 ||
			  strcmp(creds[i]->authorization, "read_only") == 0);
		ck_assert_str_eq(creds[i]->status, "active");
		ck_assert_str_eq(creds[i]->environment_database_id, db->id);
		ck_assert_str_eq(creds[i]->handle, strcmp(creds[i]->authorization, "read_only") == 0
							   ? "?mode=ro"
							   : "");
	}

	ck_assert_int_eq(envdb_member_list(&mem, &n_mem, ctx, "acme", "prod"), ENVDB_OK);
	ck_assert_uint_eq(n_mem, 1);
	ck_assert_str_eq(mem[0]->user_id, "alice");
	ck_assert_str_eq(mem[0]->role, "owner");
	assert_consistent(ctx);

	envdb_member_list_free(mem, n_mem);
	envdb_credential_list_free(creds, n_creds);
	envdb_database_free(db);
	envdb_environment_free(env);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_provision_faulty_mints_read_only)
{
	envdb_credential **creds = NULL;
	size_t n = 0;
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", "faulty", "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_cred_list(&creds, &n, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(creds[0]->status, "active");
	ck_assert_str_eq(creds[1]->status, "active");
	ck_assert_str_ne(creds[0]->authorization, creds[1]->authorization);
	envdb_credential_list_free(creds, n);
	/* A driver without CAP_READ_ONLY gets the full_access one only. */
	ck_assert_int_eq(td_provision(ctx, "acme", "noro", "faulty_noro", "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_cred_list(&creds, &n, ctx, "acme", "noro"), ENVDB_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(creds[0]->authorization, "full_access");
	envdb_credential_list_free(creds, n);
	assert_consistent(ctx);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_provision_bad_input_changes_nothing)
{
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	envdb_ctx *ctx = td_open(&T);
	int rc;

	o.created_by = "alice";
	o.env_type = "development";
	rc = envdb_env_provision(NULL, ctx, "acme", "Bad_Slug", &o);
	ck_assert_int_eq(rc, ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "Bad_Slug"));
	rc = envdb_env_provision(NULL, ctx, "acme", "-dash", &o);
	ck_assert_int_eq(rc, ENVDB_ERR_INVALID);

	o.env_type = "galaxy";
	rc = envdb_env_provision(NULL, ctx, "acme", "dev", &o);
	ck_assert_int_eq(rc, ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "galaxy"));
	o.env_type = "development";

	o.plan = "platinum";
	ck_assert_int_eq(envdb_env_provision(NULL, ctx, "acme", "dev", &o), ENVDB_ERR_INVALID);
	o.plan = NULL;

	o.driver = "oracle";
	rc = envdb_env_provision(NULL, ctx, "acme", "dev", &o);
	ck_assert_int_eq(rc, ENVDB_ERR_NOT_FOUND);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "oracle"));
	o.driver = NULL;

	o.storage_limit_mb = -5;
	ck_assert_int_eq(envdb_env_provision(NULL, ctx, "acme", "dev", &o), ENVDB_ERR_INVALID);
	o.storage_limit_mb = 0;

	o.created_by = NULL;
	ck_assert_int_eq(envdb_env_provision(NULL, ctx, "acme", "dev", &o), ENVDB_ERR_INVALID);
	o.created_by = "alice";

	ck_assert_int_eq(envdb_env_provision(NULL, ctx, "ac me", "dev", &o), ENVDB_ERR_INVALID);
	ck_assert_int_eq(envdb_env_provision(NULL, ctx, "acme", "dev", NULL), ENVDB_ERR_MISUSE);

	ck_assert_uint_eq(td_env_count(ctx, NULL, NULL), 0);
	ck_assert_uint_eq(td_faulty_dbs(&T), 0);

	/* Duplicates. */
	ck_assert_int_eq(envdb_env_provision(NULL, ctx, "acme", "dev", &o), ENVDB_OK);
	rc = envdb_env_provision(NULL, ctx, "acme", "dev", &o);
	ck_assert_int_eq(rc, ENVDB_ERR_EXISTS);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "already exists"));
	ck_assert_int_eq(envdb_org_provision(NULL, ctx, "acme", NULL, &o), ENVDB_OK);
	rc = envdb_org_provision(NULL, ctx, "acme", "main", &o);
	ck_assert_int_eq(rc, ENVDB_ERR_EXISTS);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "default"));
	o.is_default = 1;
	ck_assert_int_eq(envdb_env_provision(NULL, ctx, "acme", "other", &o), ENVDB_ERR_EXISTS);
	/* Another organization has its own default. */
	ck_assert_int_eq(envdb_org_provision(NULL, ctx, "globex", NULL, &o), ENVDB_OK);
	ck_assert_uint_eq(td_env_count(ctx, NULL, NULL), 3);
	ck_assert_uint_eq(td_faulty_dbs(&T), 3);
	assert_consistent(ctx);
	envdb_close(ctx);
}
END_TEST

/* The adapter fails at `ops`: the call fails with `expect`, nothing is left,
 * and the slug is reusable once the adapter works again. */
static void adapter_failure(const char *ops, int expect)
{
	envdb_ctx *ctx = td_open(&T);
	int rc;

	td_fail_at(&T, ops);
	rc = td_provision(ctx, "acme", "dev", NULL, "alice");
	ck_assert_int_eq(rc, expect);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "acme/dev"));
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 0);
	ck_assert_uint_eq(td_faulty_dbs(&T), 0);
	td_fail_at(&T, NULL);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	assert_consistent(ctx);
	envdb_close(ctx);
}

START_TEST(test_provision_create_fails)
{
	adapter_failure("create", ENVDB_ERR_UNAVAILABLE);
}
END_TEST

START_TEST(test_provision_create_fails_leaving_a_file)
{
	/* An adapter that broke its promise: the compensating drop cleans up. */
	adapter_failure("create_leak", ENVDB_ERR_UNAVAILABLE);
}
END_TEST

START_TEST(test_provision_mint_fails)
{
	adapter_failure("mint", ENVDB_ERR_UNAVAILABLE);
}
END_TEST

START_TEST(test_provision_mint_read_only_fails)
{
	adapter_failure("mint_read_only", ENVDB_ERR_UNAVAILABLE);
}
END_TEST

START_TEST(test_provision_compensation_fails_then_reconcile)
{
	envdb_environment *env = NULL;
	envdb_ctx *ctx = td_open(&T);
	int rc;

	/* Mint fails, and so does the compensating drop: the intent stays,
	 * visibly failed, naming the database for reconcile. */
	td_fail_at(&T, "mint,drop");
	rc = td_provision(ctx, "acme", "dev", NULL, "alice");
	ck_assert_int_eq(rc, ENVDB_ERR_UNAVAILABLE);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "reconcile"));
	ck_assert_int_eq(envdb_env_get(&env, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_str_eq(env->status, "failed");
	ck_assert_ptr_nonnull(env->pending_database_name);
	envdb_environment_free(env);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	/* Reconcile cannot drop either while the backend fails. */
	ck_assert_uint_eq(td_reconcile_apply(ctx, 0), 1);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	td_fail_at(&T, NULL);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 0), 0);
	ck_assert_uint_eq(td_faulty_dbs(&T), 0);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 0);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	assert_consistent(ctx);
	envdb_close(ctx);
}
END_TEST

/* ---- failpoints --------------------------------------------------------- */

#define NEED_FAILPOINTS()                                                              \
	do {                                                                           \
		if (!ENVDB_TEST_FAILPOINTS) {                                          \
			fprintf(stderr, "SKIP %s: failpoints not compiled in "         \
					"(configure --enable-failpoints)\n",           \
				__func__);                                             \
			return;                                                        \
		}                                                                      \
	} while (0)

#ifdef ENVDB_FAILPOINTS
#define ENVDB_TEST_FAILPOINTS 1
#else
#define ENVDB_TEST_FAILPOINTS 0
#endif

/* The provisioning steps, in order; the last one is after the commit. */
static const char *const prov_points[] = {
	"provision.after_intent", "provision.after_create", "provision.after_mint",
	"provision.encrypt",      "provision.after_encrypt", "provision.commit",
	"provision.after_commit",
};
#define N_PROV_POINTS (sizeof(prov_points) / sizeof(prov_points[0]))

START_TEST(test_provision_failpoint_error)
{
	const char *point = prov_points[_i];
	bool after_commit = _i == N_PROV_POINTS - 1;
	char spec[128];
	envdb_ctx *ctx;
	int rc;

	NEED_FAILPOINTS();
	ctx = td_open(&T);
	snprintf(spec, sizeof(spec), "%s=error", point);
	td_failpoints(spec);
	rc = td_provision(ctx, "acme", "dev", NULL, "alice");
	td_failpoints(NULL);
	ck_assert_int_eq(rc, ENVDB_ERR_GENERIC);
	ck_assert_msg(strstr(envdb_error_last()->message, point) != NULL, "message: %s",
		      envdb_error_last()->message);
	if (after_commit) {
		/* The failure came after the commit: the environment is whole. */
		ck_assert_uint_eq(td_env_count(ctx, "acme", "active"), 1);
		ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	} else {
		ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 0);
		ck_assert_uint_eq(td_faulty_dbs(&T), 0);
		ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	}
	assert_consistent(ctx);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_provision_failpoint_compensation_error)
{
	envdb_ctx *ctx;
	int rc;

	NEED_FAILPOINTS();
	ctx = td_open(&T);
	td_failpoints("provision.after_mint=error,provision.compensate=error");
	rc = td_provision(ctx, "acme", "dev", NULL, "alice");
	td_failpoints(NULL);
	ck_assert_int_eq(rc, ENVDB_ERR_GENERIC);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "provision.after_mint"));
	ck_assert_uint_eq(td_env_count(ctx, "acme", "failed"), 1);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 0), 0);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 0);
	ck_assert_uint_eq(td_faulty_dbs(&T), 0);
	assert_consistent(ctx);
	envdb_close(ctx);
}
END_TEST

typedef struct kill_arg {
	const char *spec;
	const char *slug;
} kill_arg;

static int provision_child(void *arg)
{
	const kill_arg *k = arg;
	envdb_ctx *ctx = NULL;
	int rc;

	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		return 90;
	td_failpoints(k->spec);
	rc = td_provision(ctx, "acme", k->slug, NULL, "alice");
	envdb_close(ctx);
	return rc == ENVDB_OK ? 0 : 91;
}

static void assert_killed(int status, const char *what)
{
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "%s: the child was not killed at its failpoint (status 0x%x)", what, status);
}

START_TEST(test_provision_killed_between_steps)
{
	const char *point = prov_points[_i];
	bool after_commit = _i == N_PROV_POINTS - 1;
	char spec[128];
	kill_arg k = {spec, "dev"};
	envdb_ctx *ctx;
	int status;

	NEED_FAILPOINTS();
	snprintf(spec, sizeof(spec), "%s=kill", point);
	status = td_fork(provision_child, &k);
	assert_killed(status, point);
	ctx = td_open(&T);
	if (!after_commit) {
		/* The intent survives the crash, and its lease protects it from
		 * a reconcile that runs too early. */
		ck_assert_uint_eq(td_env_count(ctx, "acme", "provisioning"), 1);
		ck_assert_uint_eq(td_reconcile_apply(ctx, 0), 0);
		ck_assert_uint_eq(td_env_count(ctx, "acme", "provisioning"), 1);
		/* The slug is taken until then. */
		ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_ERR_EXISTS);
	}
	ck_assert_uint_eq(td_reconcile_apply(ctx, 3600), 0);
	assert_consistent(ctx);
	if (after_commit) {
		ck_assert_uint_eq(td_env_count(ctx, "acme", "active"), 1);
		ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	} else {
		ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 0);
		ck_assert_uint_eq(td_faulty_dbs(&T), 0);
		ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
		assert_consistent(ctx);
	}
	envdb_close(ctx);
}
END_TEST

START_TEST(test_provision_killed_during_compensation)
{
	kill_arg k = {"provision.after_mint=error,provision.compensate=kill", "dev"};
	envdb_ctx *ctx;

	NEED_FAILPOINTS();
	assert_killed(td_fork(provision_child, &k), "provision.compensate");
	ctx = td_open(&T);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 3600), 0);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 0);
	assert_consistent(ctx);
	envdb_close(ctx);
}
END_TEST

/* ---- two processes racing ----------------------------------------------- */

typedef struct race_arg {
	int go_fd;        /* read end: the start signal */
	const char *slug; /* slug this racer provisions */
	bool org;         /* org provision (default) rather than env provision */
} race_arg;

static int race_child(void *arg)
{
	const race_arg *r = arg;
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	envdb_ctx *ctx = NULL;
	char c;
	int rc;

	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		return 90;
	if (read(r->go_fd, &c, 1) != 1)
		return 92;
	o.created_by = "alice";
	o.env_type = "production";
	o.is_default = 1;
	if (r->org)
		rc = envdb_org_provision(NULL, ctx, "acme", r->slug, &o);
	else
		rc = envdb_env_provision(NULL, ctx, "acme", r->slug, &o);
	if (rc == ENVDB_ERR_EXISTS && strstr(envdb_error_last()->message, "already") == NULL)
		rc = 93;
	envdb_close(ctx);
	return rc == ENVDB_OK ? 0 : rc == ENVDB_ERR_EXISTS ? 10 : 94;
}

static void race(const char *slug_a, const char *slug_b, bool org)
{
	race_arg a = {0, slug_a, org}, b = {0, slug_b, org};
	int fds[2], st[2], ok = 0, exists = 0, i;
	pid_t pid[2];
	envdb_reconcile_report *r = NULL;
	envdb_ctx *ctx;

	ck_assert_int_eq(pipe(fds), 0);
	a.go_fd = b.go_fd = fds[0];
	fflush(NULL);
	for (i = 0; i < 2; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0) {
			close(fds[1]);
			_exit(race_child(i == 0 ? &a : &b));
		}
	}
	close(fds[0]);
	ck_assert_int_eq(write(fds[1], "gg", 2), 2);
	close(fds[1]);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(waitpid(pid[i], &st[i], 0), pid[i]);
		ck_assert_msg(WIFEXITED(st[i]), "racer %d died (0x%x)", i, st[i]);
		if (WEXITSTATUS(st[i]) == 0)
			ok++;
		else if (WEXITSTATUS(st[i]) == 10)
			exists++;
		else
			ck_abort_msg("racer %d exited %d", i, WEXITSTATUS(st[i]));
	}
	ck_assert_int_eq(ok, 1);
	ck_assert_int_eq(exists, 1);
	ctx = td_open(&T);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 1);
	ck_assert_uint_eq(td_env_count(ctx, "acme", "active"), 1);
	ck_assert_uint_eq(td_faulty_dbs(&T), 1);
	/* Nothing orphaned: reconcile, even with every lease expired, finds
	 * nothing to do. */
	td_clock_ahead(3600);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	td_clock_ahead(0);
	ck_assert_uint_eq(r->n_items, 0);
	envdb_reconcile_report_free(r);
	assert_consistent(ctx);
	envdb_close(ctx);
}

START_TEST(test_race_same_slug)
{
	race("prod", "prod", false);
}
END_TEST

START_TEST(test_race_default_environment)
{
	/* Different slugs, both the organization's default. */
	race("prod", "main", true);
}
END_TEST

/* Everything a deployment has, in its copy: the same environments, the
 * same deployment id, secrets that still open, check clean. */
static void expect_copy_of(const char *manifest, const char *dep_id, const char *secret)
{
	envdb_ctx *ctx = NULL;
	envdb_connection *c = NULL;

	ck_assert_msg(envdb_open(&ctx, manifest, 0) == ENVDB_OK, "open %s: %s", manifest,
		      envdb_error_last()->message);
	ck_assert_str_eq(envdb_deployment_id(ctx), dep_id);
	ck_assert_uint_eq(td_env_count(ctx, "acme", NULL), 2);
	ck_assert_uint_eq(td_env_count(ctx, "acme", "active"), 2);
	ck_assert_uint_eq(td_check(ctx), 0);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "prod", "bob"), ENVDB_OK);
	ck_assert_str_eq(c->secret, secret);
	envdb_connection_free(c);
	envdb_close(ctx);
}

/* envdb store copy: to an SQLite file, and — in the PostgreSQL pass —
 * from the PostgreSQL schema to a file and from that file to a new schema:
 * everything arrives, the deployment id with it; a non-empty target is
 * refused; a copy killed before its commit leaves the target empty. */
START_TEST(test_store_copy)
{
	envdb_store_copy_report r = ENVDB_STORE_COPY_REPORT_INIT;
	envdb_ctx *ctx = td_open(&T);
	envdb_connection *c = NULL;
	char file_m[PATH_MAX + 16], pg_m[PATH_MAX + 16], cp[PATH_MAX * 2], dep[64], secret[512];

	ck_assert_int_eq(td_provision(ctx, "acme", "prod", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "prod", "bob", "reader", NULL), ENVDB_OK);
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "prod", NULL), ENVDB_OK);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "prod", "bob"), ENVDB_OK);
	snprintf(secret, sizeof secret, "%s", c->secret);
	envdb_connection_free(c);
	snprintf(dep, sizeof dep, "%s", envdb_deployment_id(ctx));

	snprintf(file_m, sizeof file_m, "%s/copy-file.yaml", T.dir);
	snprintf(cp, sizeof cp, "control_plane: %s/copy.db\n", T.dir);
	td_manifest_variant(&T, file_m, cp);
	ck_assert_msg(envdb_store_copy(&r, ctx, file_m) == ENVDB_OK, "copy: %s",
		      envdb_error_last()->message);
	ck_assert_uint_eq(r.environments, 2);
	ck_assert_uint_eq(r.databases, 2);
	ck_assert_uint_ge(r.credentials, 3); /* dev's, prod's rotating and active ones */
	ck_assert_uint_eq(r.members, 3);
	ck_assert_uint_eq(r.target_violations, 0);
	/* a second copy: the target is not empty */
	ck_assert_int_eq(envdb_store_copy(&r, ctx, file_m), ENVDB_ERR_EXISTS);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "not empty"));
	envdb_close(ctx);
	expect_copy_of(file_m, dep, secret);
	if (!sm_pg())
		return;

	/* and back into PostgreSQL: from the file to a new schema */
	snprintf(pg_m, sizeof pg_m, "%s/copy-pg.yaml", T.dir);
	snprintf(cp, sizeof cp,
		 "control_plane:\n  driver: postgresql\n  conninfo_file: %s\n  schema: %s_c\n",
		 sm_conninfo_file(), T.control);
	td_manifest_variant(&T, pg_m, cp);
#ifdef ENVDB_FAILPOINTS
	{
		/* killed after writing everything, before the commit */
		envdb_ctx *k = NULL;
		pid_t pid = fork();
		int status = 0;

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			setenv("ENVDB_FAILPOINTS", "store_copy.commit=kill", 1);
			if (envdb_open(&k, file_m, 0) != ENVDB_OK)
				_exit(2);
			envdb_store_copy(&r, k, pg_m);
			_exit(3);
		}
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d",
			      status);
		ck_assert_int_eq(envdb_open(&k, pg_m, 0), ENVDB_OK);
		ck_assert_uint_eq(td_env_count(k, "acme", NULL), 0);
		ck_assert_str_ne(envdb_deployment_id(k), dep);
		envdb_close(k);
	}
#endif
	ck_assert_int_eq(envdb_open(&ctx, file_m, 0), ENVDB_OK);
	ck_assert_msg(envdb_store_copy(&r, ctx, pg_m) == ENVDB_OK, "copy back: %s",
		      envdb_error_last()->message);
	ck_assert_uint_eq(r.environments, 2);
	envdb_close(ctx);
	expect_copy_of(pg_m, dep, secret);
}
END_TEST

START_TEST(test_failpoint_names_listed)
{
#define COUNT_POINT(name, what) n++;
	size_t n = 0;

	ENVDBI_FAILPOINT_LIST(COUNT_POINT)
	ck_assert_uint_ge(n, 20);
#undef COUNT_POINT
}
END_TEST

static Suite *provision_suite(void)
{
	Suite *s = suite_create("provision");
	TCase *tc = tcase_create("provision");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_provision_sqlite_happy_path);
	tcase_add_test(tc, test_provision_faulty_mints_read_only);
	tcase_add_test(tc, test_provision_bad_input_changes_nothing);
	tcase_add_test(tc, test_provision_create_fails);
	tcase_add_test(tc, test_provision_create_fails_leaving_a_file);
	tcase_add_test(tc, test_provision_mint_fails);
	tcase_add_test(tc, test_provision_mint_read_only_fails);
	tcase_add_test(tc, test_provision_compensation_fails_then_reconcile);
	tcase_add_test(tc, test_failpoint_names_listed);
	tcase_add_test(tc, test_store_copy);
	suite_add_tcase(s, tc);

	tc = tcase_create("failpoints");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_provision_failpoint_error, 0, (int)N_PROV_POINTS);
	tcase_add_test(tc, test_provision_failpoint_compensation_error);
	tcase_add_loop_test(tc, test_provision_killed_between_steps, 0, (int)N_PROV_POINTS);
	tcase_add_test(tc, test_provision_killed_during_compensation);
	suite_add_tcase(s, tc);

	tc = tcase_create("race");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_race_same_slug);
	tcase_add_test(tc, test_race_default_environment);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(provision_suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
