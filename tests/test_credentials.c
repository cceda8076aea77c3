/*
 * tests/test_credentials.c — credentials (DESIGN.md §5): the AAD binding
 * (a ciphertext moved to another row fails with ENVDB_ERR_INTEGRITY), no
 * plaintext in the control-plane file or its WAL, rotation with an overlap
 * window (the previous secret stays resolvable while rotating, is gone
 * after completion and revoked at the backend), expiry, failures and
 * crashes during rotation, and rewrap under a new key.
 */
#include "config.h"

#include <check.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
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

/* The secret alice (owner) resolves, copied; and the previous one if any. */
static char *resolve_secret(envdb_ctx *ctx, const char *slug, char **previous)
{
	envdb_connection *c = NULL;
	char *s;
	int rc = envdb_resolve(&c, ctx, "acme", slug, "alice");

	ck_assert_msg(rc == ENVDB_OK, "resolve acme/%s: %s", slug, envdb_error_last()->message);
	s = strdup(c->secret);
	if (previous != NULL)
		*previous = c->previous_secret ? strdup(c->previous_secret) : NULL;
	ck_assert_uint_eq(strlen(s), c->secret_len);
	envdb_connection_free(c);
	return s;
}

/* Credentials of acme/SLUG in `status` of `auth` (NULL: any). */
static size_t count_creds(envdb_ctx *ctx, const char *slug, const char *status,
			  const char *auth)
{
	envdb_credential **v = NULL;
	size_t n = 0, i, k = 0;

	ck_assert_int_eq(envdb_cred_list(&v, &n, ctx, "acme", slug), ENVDB_OK);
	for (i = 0; i < n; i++)
		if ((status == NULL || strcmp(v[i]->status, status) == 0) &&
		    (auth == NULL || strcmp(v[i]->authorization, auth) == 0))
			k++;
	envdb_credential_list_free(v, n);
	return k;
}

static char *db_name(envdb_ctx *ctx, const char *slug)
{
	envdb_database *d = NULL;
	char *n;

	ck_assert_int_eq(envdb_env_database(&d, ctx, "acme", slug), ENVDB_OK);
	n = strdup(d->database_name);
	envdb_database_free(d);
	return n;
}

/* SQL straight on the control plane (the file, or the schema of the
 * PostgreSQL pass), as another process would write it. */
static void sql(const char *cp, const char *stmt)
{
	char err[512] = "";

	ck_assert_msg(sm_exec(cp, stmt, err, sizeof err) == 0, "%s: %s", stmt, err);
}

START_TEST(test_aad_bytes)
{
	const char *cid = "11111111-2222-4333-8444-555555555555";
	const char *did = "66666666-7777-4888-9999-aaaaaaaaaaaa";
	unsigned char aad[ENVDB_CREDENTIAL_AAD_MAX], want[ENVDB_CREDENTIAL_AAD_MAX];
	size_t len = 0, n = 0;

	ck_assert_int_eq(envdb_credential_aad(aad, &len, cid, did), ENVDB_OK);
	memcpy(want, "envdb-credential-v1", 20); /* with its NUL */
	n = 20;
	memcpy(want + n, cid, 36);
	n += 36;
	want[n++] = 0;
	memcpy(want + n, did, 36);
	n += 36;
	ck_assert_uint_eq(len, n);
	ck_assert_uint_eq(len, 93);
	ck_assert_int_eq(memcmp(aad, want, n), 0);
	ck_assert_int_eq(envdb_credential_aad(aad, &len, "not-a-uuid", did), ENVDB_ERR_INVALID);
}
END_TEST

/* Version 2 binds the address: the same bytes as documented in envdb.h. */
START_TEST(test_aad_v2_bytes)
{
	const char *cid = "11111111-2222-4333-8444-555555555555";
	envdb_database d = {.id = "66666666-7777-4888-9999-aaaaaaaaaaaa",
			    .driver = "sqlite",
			    .database_name = "env_66",
			    .database_url = "file:/srv/env_66.db"};
	unsigned char aad[ENVDB_CREDENTIAL_AAD_BOUND_MAX], want[ENVDB_CREDENTIAL_AAD_BOUND_MAX];
	unsigned char other[ENVDB_CREDENTIAL_AAD_BOUND_MAX];
	const char addr[] = "sqlite\0env_66\0file:/srv/env_66.db";
	size_t len = 0, n = 0, olen = 0;

	ck_assert_int_eq(envdb_credential_aad_bound(aad, sizeof(aad), &len, 2, cid, &d), ENVDB_OK);
	memcpy(want, "envdb-credential-v2", 20);
	n = 20;
	memcpy(want + n, cid, 36);
	n += 36;
	want[n++] = 0;
	memcpy(want + n, d.id, 36);
	n += 36;
	want[n++] = 0;
	crypto_generichash(want + n, 32, (const unsigned char *)addr, sizeof(addr), NULL, 0);
	n += 32;
	ck_assert_uint_eq(len, 126);
	ck_assert_uint_eq(len, n);
	ck_assert_int_eq(memcmp(aad, want, n), 0);
	/* version 1 is envdb_credential_aad() */
	ck_assert_int_eq(envdb_credential_aad_bound(aad, sizeof(aad), &len, 1, cid, &d), ENVDB_OK);
	ck_assert_int_eq(envdb_credential_aad(other, &olen, cid, d.id), ENVDB_OK);
	ck_assert_uint_eq(len, olen);
	ck_assert_int_eq(memcmp(aad, other, len), 0);
	/* each part of the address changes it, and a moved boundary too */
	ck_assert_int_eq(envdb_credential_aad_bound(aad, sizeof(aad), &len, 2, cid, &d), ENVDB_OK);
	d.database_url = "file:/srv/evil.db";
	ck_assert_int_eq(envdb_credential_aad_bound(other, sizeof(other), &olen, 2, cid, &d),
			 ENVDB_OK);
	ck_assert_int_ne(memcmp(aad, other, len), 0);
	d.database_url = "file:/srv/env_66.db";
	d.driver = "sqlit";
	d.database_name = "eenv_66";
	ck_assert_int_eq(envdb_credential_aad_bound(other, sizeof(other), &olen, 2, cid, &d),
			 ENVDB_OK);
	ck_assert_int_ne(memcmp(aad, other, len), 0);
	/* refusals */
	ck_assert_int_eq(envdb_credential_aad_bound(aad, 100, &len, 2, cid, &d),
			 ENVDB_ERR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 126);
	ck_assert_int_eq(envdb_credential_aad_bound(aad, sizeof(aad), &len, 3, cid, &d),
			 ENVDB_ERR_INVALID);
	d.database_url = NULL;
	ck_assert_int_eq(envdb_credential_aad_bound(aad, sizeof(aad), &len, 2, cid, &d),
			 ENVDB_ERR_INVALID);
}
END_TEST

/* Violations of `invariant` whose row_ids contain `id` (NULL: any). */
static size_t violations(envdb_ctx *ctx, unsigned flags, const char *invariant, const char *id)
{
	envdb_violation **v = NULL;
	size_t n = 0, i, k = 0;

	ck_assert_msg(envdb_check_flags(&v, &n, ctx, flags) == ENVDB_OK, "check: %s",
		      envdb_error_last()->message);
	for (i = 0; i < n; i++)
		if (strcmp(v[i]->invariant, invariant) == 0 &&
		    (id == NULL || strstr(v[i]->row_ids, id) != NULL))
			k++;
	envdb_violation_list_free(v, n);
	return k;
}

/* The id of acme/SLUG's credential of `auth` in `status`, malloc'd. */
static char *cred_id(envdb_ctx *ctx, const char *slug, const char *auth, const char *status)
{
	envdb_credential **v = NULL;
	size_t n = 0, i;
	char *id = NULL;

	ck_assert_int_eq(envdb_cred_list(&v, &n, ctx, "acme", slug), ENVDB_OK);
	for (i = 0; i < n; i++)
		if (strcmp(v[i]->authorization, auth) == 0 && strcmp(v[i]->status, status) == 0)
			id = strdup(v[i]->id);
	envdb_credential_list_free(v, n);
	ck_assert_ptr_nonnull(id);
	return id;
}

/* Run the envdb command on the deployment; its exit status, stdout in `out`. */
static int run_cli(const char *args, char *out, size_t cap)
{
	const char *build = getenv("ENVDB_TEST_BUILDDIR");
	char cmd[PATH_MAX * 3];
	size_t n;
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "'%s/core/envdb' --manifest '%s' %s 2>/dev/null",
		 build ? build : ".", T.manifest, args);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = fread(out, 1, cap - 1, p);
	out[n] = '\0';
	st = pclose(p);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* Whoever can write the control plane cannot point a secret at another
 * database: the url, driver and name are bound into the AAD.  resolve
 * refuses (INTEGRITY), check reports it (library and `envdb check`, exit
 * 65); --no-decrypt does not look. */
START_TEST(test_address_bound_into_aad)
{
	envdb_ctx *ctx = td_open(&T);
	envdb_connection *c = NULL;
	char *fa, *s1, *s2, stmt[2300], url[1024], out[16384];
	envdb_database *d = NULL;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_uint_eq(td_check(ctx), 0);
	s1 = resolve_secret(ctx, "dev", NULL);
	fa = cred_id(ctx, "dev", "full_access", "active");
	ck_assert_int_eq(envdb_env_database(&d, ctx, "acme", "dev"), ENVDB_OK);
	snprintf(url, sizeof(url), "%s", d->database_url);
	envdb_close(ctx);

	snprintf(stmt, sizeof(stmt),
		 "UPDATE sys_environment_database SET database_url = 'postgresql://evil.example/x' "
		 "WHERE id = '%s'", d->id);
	sql(T.control, stmt);
	ctx = td_open(&T);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_ERR_INTEGRITY);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "acme/dev"));
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", fa), 1);
	ck_assert_uint_eq(violations(ctx, ENVDB_CHECK_NO_DECRYPT, "ciphertext_bound", NULL), 0);
	envdb_close(ctx);
	/* ... and so does the command an operator runs */
	ck_assert_int_eq(run_cli("check", out, sizeof(out)), 65);
	ck_assert_msg(strstr(out, "ciphertext_bound") != NULL && strstr(out, fa) != NULL &&
			      strstr(out, "evil.example") != NULL,
		      "%s", out);
	ck_assert_int_eq(run_cli("--json check", out, sizeof(out)), 65);
	ck_assert_msg(strstr(out, "\"ciphertext_bound\"") != NULL && strstr(out, fa) != NULL,
		      "%s", out);
	ck_assert_int_eq(run_cli("check --no-decrypt", out, sizeof(out)), 0);

	/* the driver, too (to another loaded adapter) */
	snprintf(stmt, sizeof(stmt),
		 "UPDATE sys_environment_database SET database_url = '%s', driver = 'faulty_noro' "
		 "WHERE id = '%s'", url, d->id);
	sql(T.control, stmt);
	ctx = td_open(&T);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_ERR_INTEGRITY);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", fa), 1);
	envdb_close(ctx);

	/* put back: the secret opens again and check is clean */
	snprintf(stmt, sizeof(stmt),
		 "UPDATE sys_environment_database SET driver = '%s' WHERE id = '%s'", d->driver,
		 d->id);
	sql(T.control, stmt);
	ctx = td_open(&T);
	s2 = resolve_secret(ctx, "dev", NULL);
	ck_assert_str_eq(s1, s2);
	ck_assert_uint_eq(td_check(ctx), 0);
	envdb_close(ctx);
	envdb_database_free(d);
	free(fa);
	free(s1);
	free(s2);
}
END_TEST

/* Two credentials' ciphertexts swapped, or one copied onto another row:
 * check names both ids (and the command exits 65); a wrong
 * encryption_key_id is reported; --no-decrypt skips these checks. */
START_TEST(test_check_reports_swapped_ciphertexts)
{
	envdb_ctx *ctx = td_open(&T);
	char *a, *b, swap[1024], stmt[1024], ids[80], out[16384];

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "test", NULL, "alice"), ENVDB_OK);
	a = cred_id(ctx, "dev", "full_access", "active");
	b = cred_id(ctx, "test", "full_access", "active");
	envdb_close(ctx);
	ck_assert_int_eq(run_cli("check", out, sizeof(out)), 0);
	/* (a TEMP table lives as long as the connection sql() opens) */
	snprintf(swap, sizeof(swap),
		 "CREATE TEMP TABLE old AS SELECT id, secret_ciphertext AS ct FROM "
		 "sys_database_credential WHERE id IN ('%s', '%s'); "
		 "UPDATE sys_database_credential SET secret_ciphertext = (SELECT ct FROM old "
		 "WHERE old.id <> sys_database_credential.id) WHERE id IN ('%s', '%s')",
		 a, b, a, b);
	sql(T.control, swap);
	ctx = td_open(&T);
	snprintf(ids, sizeof(ids), "%s,%s", a, b);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", ids), 1);
	snprintf(ids, sizeof(ids), "%s,%s", b, a);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", ids), 1);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", NULL), 2);
	ck_assert_uint_eq(violations(ctx, ENVDB_CHECK_NO_DECRYPT, "ciphertext_bound", NULL), 0);
	envdb_close(ctx);
	ck_assert_int_eq(run_cli("check", out, sizeof(out)), 65);
	ck_assert_msg(strstr(out, a) != NULL && strstr(out, b) != NULL, "%s", out);
	ck_assert_int_eq(run_cli("check --no-decrypt", out, sizeof(out)), 0);

	/* swapped back: clean; then b's ciphertext copied onto a (b intact) */
	sql(T.control, swap);
	ctx = td_open(&T);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", NULL), 0);
	envdb_close(ctx);
	snprintf(stmt, sizeof(stmt),
		 "CREATE TABLE keep AS SELECT secret_ciphertext AS ct FROM sys_database_credential "
		 "WHERE id = '%s'; "
		 "UPDATE sys_database_credential SET secret_ciphertext = (SELECT "
		 "secret_ciphertext FROM sys_database_credential WHERE id = '%s') WHERE id = '%s'",
		 a, b, a);
	sql(T.control, stmt);
	ctx = td_open(&T);
	snprintf(ids, sizeof(ids), "%s,%s", a, b);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", ids), 1);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", NULL), 1);
	envdb_close(ctx);
	snprintf(stmt, sizeof(stmt),
		 "UPDATE sys_database_credential SET secret_ciphertext = (SELECT ct FROM keep) "
		 "WHERE id = '%s'; DROP TABLE keep",
		 a);
	sql(T.control, stmt);

	/* a row that lies about its key */
	snprintf(stmt, sizeof(stmt),
		 "UPDATE sys_database_credential SET encryption_key_id = 'kother' WHERE id = '%s'",
		 b);
	sql(T.control, stmt);
	ctx = td_open(&T);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", NULL), 0);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_key_id", b), 1);
	ck_assert_uint_eq(violations(ctx, ENVDB_CHECK_NO_DECRYPT, "ciphertext_key_id", NULL), 0);
	envdb_close(ctx);
	free(a);
	free(b);
}
END_TEST

/* A control plane of schema version 1 whose ciphertexts are bound to the
 * ids only (what libenvdb sealed before): opening migrates it (aad_version
 * 1 on every row), the rows still resolve, check asks for a rewrap, and
 * rewrap re-seals them under the address-binding AAD (even with the key
 * already current). */
START_TEST(test_old_aad_rows_resolve_and_rewrap)
{
	envdb_rewrap_report rep = ENVDB_REWRAP_REPORT_INIT;
	envdb_ctx *ctx = td_open(&T);
	envdb_credential **v = NULL;
	envdb_database *d = NULL;
	char *s1, *s2, *prev = NULL, *stmts[8];
	size_t n = 0, i, k = 0;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	s1 = resolve_secret(ctx, "dev", NULL);
	/* Re-seal every credential of dev with the version 1 AAD. */
	ck_assert_int_eq(envdb_env_database(&d, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_int_eq(envdb_cred_list(&v, &n, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_uint_le(n, 8);
	for (i = 0; i < n; i++) {
		unsigned char aad[ENVDB_CREDENTIAL_AAD_MAX];
		envdbi_secret *pt = NULL;
		char *ct = NULL, *kid = NULL;
		size_t len;

		ck_assert_int_eq(v[i]->aad_version, ENVDB_CREDENTIAL_AAD_VERSION);
		ck_assert_int_eq(envdbi_credential_open(&pt, ctx, v[i], d), ENVDB_OK);
		ck_assert_int_eq(envdb_credential_aad(aad, &len, v[i]->id, d->id), ENVDB_OK);
		ck_assert_int_eq(envdbi_encryptor_encrypt(ctx->encryptor, pt, aad, len, &ct, &kid),
				 ENVDB_OK);
		envdbi_secret_free(pt);
		ck_assert_int_ge(asprintf(&stmts[k++],
					  "UPDATE sys_database_credential SET secret_ciphertext = "
					  "'%s', encryption_key_id = '%s' WHERE id = '%s'",
					  ct, kid, v[i]->id),
				 0);
		free(ct);
		free(kid);
	}
	envdb_credential_list_free(v, n);
	envdb_close(ctx);
	for (i = 0; i < k; i++) {
		sql(T.control, stmts[i]);
		free(stmts[i]);
	}
	/* and make the control plane what schema version 1 was */
	sql(T.control, "ALTER TABLE sys_database_credential DROP COLUMN aad_version");
	sql(T.control, sm_pg() ? "UPDATE envdb_store_version SET version = 1"
			       : "PRAGMA user_version = 1");

	ctx = td_open(&T);
	ck_assert_int_eq(envdb_cred_list(&v, &n, ctx, "acme", "dev"), ENVDB_OK);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(v[i]->aad_version, 1);
	envdb_credential_list_free(v, n);
	s2 = resolve_secret(ctx, "dev", &prev);
	ck_assert_str_eq(s1, s2);
	free(s2);
	ck_assert_uint_eq(violations(ctx, 0, "aad_binds_address", NULL), k);
	ck_assert_uint_eq(violations(ctx, 0, "ciphertext_bound", NULL), 0);
	ck_assert_int_eq(envdb_key_rewrap(&rep, ctx, ENVDB_REWRAP_DRY_RUN), ENVDB_OK);
	ck_assert_uint_eq(rep.rewrapped, k);
	ck_assert_uint_eq(violations(ctx, 0, "aad_binds_address", NULL), k);
	ck_assert_int_eq(envdb_key_rewrap(&rep, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(rep.total, k);
	ck_assert_uint_eq(rep.rewrapped, k);
	ck_assert_uint_eq(rep.failed, 0);
	ck_assert_int_eq(envdb_cred_list(&v, &n, ctx, "acme", "dev"), ENVDB_OK);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(v[i]->aad_version, ENVDB_CREDENTIAL_AAD_VERSION);
	envdb_credential_list_free(v, n);
	s2 = resolve_secret(ctx, "dev", NULL);
	ck_assert_str_eq(s1, s2);
	free(s2);
	ck_assert_uint_eq(td_check(ctx), 0);
	ck_assert_int_eq(envdb_key_rewrap(&rep, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(rep.already_current, k);
	envdb_close(ctx);
	free(s1);
	free(prev);
	envdb_database_free(d);
}
END_TEST

START_TEST(test_ciphertext_swap_fails_integrity)
{
	envdb_ctx *ctx = td_open(&T);
	envdb_connection *c = NULL;
	char stmt[1024];
	char *s;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "test", NULL, "alice"), ENVDB_OK);
	s = resolve_secret(ctx, "test", NULL);
	free(s);
	envdb_close(ctx);

	/* Copy dev's full_access ciphertext onto test's full_access row. */
	snprintf(stmt, sizeof(stmt),
		 "UPDATE sys_database_credential SET secret_ciphertext = ("
		 " SELECT c.secret_ciphertext FROM sys_database_credential c"
		 " JOIN sys_environment_database d ON d.id = c.environment_database_id"
		 " JOIN sys_environment e ON e.id = d.environment_id"
		 " WHERE e.slug = 'dev' AND c.\"authorization\" = 'full_access')"
		 " WHERE id = (SELECT c.id FROM sys_database_credential c"
		 " JOIN sys_environment_database d ON d.id = c.environment_database_id"
		 " JOIN sys_environment e ON e.id = d.environment_id"
		 " WHERE e.slug = 'test' AND c.\"authorization\" = 'full_access')");
	sql(T.control, stmt);
	ctx = td_open(&T);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "test", "alice"), ENVDB_ERR_INTEGRITY);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "acme/test"));
	/* The original row still opens. */
	s = resolve_secret(ctx, "dev", NULL);
	free(s);
	envdb_close(ctx);

	/* Within one database: the read_only ciphertext on the full_access row. */
	snprintf(stmt, sizeof(stmt),
		 "UPDATE sys_database_credential SET secret_ciphertext = ("
		 " SELECT c.secret_ciphertext FROM sys_database_credential c"
		 " JOIN sys_environment_database d ON d.id = c.environment_database_id"
		 " JOIN sys_environment e ON e.id = d.environment_id"
		 " WHERE e.slug = 'dev' AND c.\"authorization\" = 'read_only')"
		 " WHERE id = (SELECT c.id FROM sys_database_credential c"
		 " JOIN sys_environment_database d ON d.id = c.environment_database_id"
		 " JOIN sys_environment e ON e.id = d.environment_id"
		 " WHERE e.slug = 'dev' AND c.\"authorization\" = 'full_access')");
	sql(T.control, stmt);
	ctx = td_open(&T);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_ERR_INTEGRITY);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_no_plaintext_in_control_plane)
{
	envdb_ctx *ctx = td_open(&T);
	char wal[PATH_MAX + 8];
	char *secrets[6] = {NULL};
	size_t i;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "lite", "sqlite", "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", NULL), ENVDB_OK);
	secrets[0] = resolve_secret(ctx, "dev", &secrets[1]);
	secrets[2] = resolve_secret(ctx, "lite", NULL);
	ck_assert_ptr_nonnull(secrets[1]);
	snprintf(wal, sizeof(wal), "%s-wal", T.control);
	if (sm_pg()) {
		/* every row of every table of the schema, as text */
		static char all[1 << 16];
		char q[512], *name = db_name(ctx, "dev");
		snprintf(q, sizeof q,
			 "SELECT (SELECT coalesce(string_agg(t::text, '|'), '') FROM "
			 "sys_environment t) || (SELECT coalesce(string_agg(t::text, '|'), '') FROM "
			 "sys_environment_database t) || (SELECT coalesce(string_agg(t::text, '|'), "
			 "'') FROM sys_database_credential t) || (SELECT "
			 "coalesce(string_agg(t::text, '|'), '') FROM sys_environment_member t)");
		ck_assert_int_eq(sm_pg_query1(q, all, sizeof all), 1);
		for (i = 0; i < 6; i++)
			if (secrets[i] != NULL)
				ck_assert_msg(strstr(all, secrets[i]) == NULL,
					      "secret %zu found in the control plane", i);
		ck_assert_ptr_nonnull(strstr(all, name)); /* the search works */
		free(name);
	}
	for (i = 0; i < 6 && !sm_pg(); i++) {
		if (secrets[i] == NULL)
			continue;
		ck_assert_uint_ge(strlen(secrets[i]), 16);
		ck_assert_msg(!td_file_contains(T.control, secrets[i], strlen(secrets[i])),
			      "secret %zu found in the control-plane file", i);
		ck_assert_msg(!td_file_contains(wal, secrets[i], strlen(secrets[i])),
			      "secret %zu found in the control-plane WAL", i);
	}
	/* The search itself works: the database name is in there. */
	if (!sm_pg()) {
		char *name = db_name(ctx, "dev");

		ck_assert(td_file_contains(T.control, name, strlen(name)) ||
			  td_file_contains(wal, name, strlen(name)));
		free(name);
	}
	for (i = 0; i < 6; i++)
		free(secrets[i]);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_rotation_overlap_and_complete)
{
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_ctx *ctx = td_open(&T);
	char *s1, *s2, *prev = NULL, *name;
	size_t revoked = 0;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	name = db_name(ctx, "dev");
	s1 = resolve_secret(ctx, "dev", &prev);
	ck_assert_ptr_null(prev);

	ro.overlap_seconds = 900;
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_OK);
	ck_assert_uint_eq(count_creds(ctx, "dev", "active", "full_access"), 1);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", "full_access"), 1);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", "read_only"), 1);
	/* During the window: the new secret, and the old one still valid. */
	s2 = resolve_secret(ctx, "dev", &prev);
	ck_assert_str_ne(s1, s2);
	ck_assert_ptr_nonnull(prev);
	ck_assert_str_eq(prev, s1);
	free(prev);
	{
		envdb_connection *c = NULL;

		ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_OK);
		ck_assert_int_ge(c->previous_expires_at, (int64_t)time(NULL) + 800);
		ck_assert_int_le(c->previous_expires_at, (int64_t)time(NULL) + 900);
		envdb_connection_free(c);
	}
	ck_assert_uint_eq(td_faulty_revocations(&T, name), 0);

	/* Completion: the old one is revoked at the backend, then in the row,
	 * and no longer handed out. */
	ck_assert_int_eq(envdb_cred_complete(&revoked, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_uint_eq(revoked, 2);
	ck_assert_uint_eq(td_faulty_revocations(&T, name), 2);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", NULL), 0);
	ck_assert_uint_eq(count_creds(ctx, "dev", "revoked", NULL), 2);
	free(s1);
	s1 = resolve_secret(ctx, "dev", &prev);
	ck_assert_str_eq(s1, s2);
	ck_assert_ptr_null(prev);
	/* Completing again is harmless. */
	ck_assert_int_eq(envdb_cred_complete(&revoked, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_uint_eq(revoked, 0);
	ck_assert_uint_eq(td_check(ctx), 0);
	free(s1);
	free(s2);
	free(name);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_rotation_window_ends_in_reconcile)
{
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_ctx *ctx = td_open(&T);
	char *s, *prev = NULL, *name;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	name = db_name(ctx, "dev");
	ro.overlap_seconds = 60;
	ro.authorization = "full_access";
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_OK);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", NULL), 1);
	ck_assert_uint_eq(count_creds(ctx, "dev", "active", "read_only"), 1);
	/* Before the window ends reconcile leaves it alone. */
	ck_assert_uint_eq(td_reconcile_apply(ctx, 0), 0);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", NULL), 1);
	/* After it, the previous secret is not handed out even before
	 * reconcile ran... */
	td_clock_ahead(120);
	s = resolve_secret(ctx, "dev", &prev);
	ck_assert_ptr_null(prev);
	free(s);
	td_clock_ahead(0);
	/* ...and reconcile revokes it. */
	ck_assert_uint_eq(td_reconcile_apply(ctx, 120), 0);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", NULL), 0);
	ck_assert_uint_eq(count_creds(ctx, "dev", "revoked", "full_access"), 1);
	ck_assert_uint_eq(td_faulty_revocations(&T, name), 1);
	free(name);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_rotation_without_overlap_and_twice)
{
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_ctx *ctx = td_open(&T);
	char *s1, *s2, *prev = NULL;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	s1 = resolve_secret(ctx, "dev", NULL);
	ro.overlap_seconds = 0;
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_OK);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", NULL), 0);
	ck_assert_uint_eq(count_creds(ctx, "dev", "revoked", NULL), 2);
	s2 = resolve_secret(ctx, "dev", &prev);
	ck_assert_ptr_null(prev);
	ck_assert_str_ne(s1, s2);
	/* Two overlapping rotations: the first previous is revoked by the
	 * second, only one credential per authorization is rotating. */
	ro.overlap_seconds = 600;
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_OK);
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_OK);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", "full_access"), 1);
	ck_assert_uint_eq(count_creds(ctx, "dev", "active", "full_access"), 1);
	ck_assert_uint_eq(count_creds(ctx, "dev", "revoked", "full_access"), 2);
	ck_assert_uint_eq(td_check(ctx), 0);
	/* The active full_access credential cannot be revoked directly. */
	{
		envdb_credential **v = NULL;
		size_t n = 0, i;

		ck_assert_int_eq(envdb_cred_list(&v, &n, ctx, "acme", "dev"), ENVDB_OK);
		for (i = 0; i < n; i++)
			if (strcmp(v[i]->status, "active") == 0 &&
			    strcmp(v[i]->authorization, "full_access") == 0)
				ck_assert_int_eq(envdb_cred_revoke(ctx, "acme", "dev", v[i]->id),
						 ENVDB_ERR_STATE);
			else if (strcmp(v[i]->status, "rotating") == 0)
				ck_assert_int_eq(envdb_cred_revoke(ctx, "acme", "dev", v[i]->id),
						 ENVDB_OK);
		envdb_credential_list_free(v, n);
	}
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", NULL), 0);
	free(s1);
	free(s2);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_rotation_refused_states)
{
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", NULL), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ro.authorization = "superuser";
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_ERR_INVALID);
	ck_assert_int_eq(envdb_env_archive(ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", NULL), ENVDB_ERR_STATE);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_expiry)
{
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_connection *c = NULL;
	envdb_ctx *ctx = td_open(&T);
	char *s, id[37];

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	/* A lifetime or overlap past 100 years is refused: now + INT64_MAX
	 * overflowed, and a time past year 9999 printed as "-" (never). */
	ro.overlap_seconds = 0;
	ro.expires_in_seconds = INT64_MAX;
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_ERR_INVALID);
	ro.expires_in_seconds = 0;
	ro.overlap_seconds = INT64_MAX;
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_ERR_INVALID);
	ck_assert_int_eq(envdb_cred_mint(id, ctx, "acme", "dev", "read_only", INT64_MAX),
			 ENVDB_ERR_INVALID);
	ro.overlap_seconds = 0;
	ro.expires_in_seconds = 300;
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_OK);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_OK);
	ck_assert_int_gt(c->expires_at, (int64_t)time(NULL));
	envdb_connection_free(c);
	/* Past expiry: refused, from the cache too. */
	td_clock_ahead(301);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_ERR_AUTH);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "expired"));
	ck_assert_ptr_null(c);
	/* A new rotation makes it resolvable again. */
	ro.expires_in_seconds = 0;
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", &ro), ENVDB_OK);
	s = resolve_secret(ctx, "dev", NULL);
	free(s);
	td_clock_ahead(0);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_rotation_mint_failure_changes_nothing)
{
	envdb_ctx *ctx = td_open(&T);
	char *s1, *s2, *prev = NULL;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	s1 = resolve_secret(ctx, "dev", NULL);
	td_fail_at(&T, "mint_read_only");
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", NULL), ENVDB_ERR_UNAVAILABLE);
	td_fail_at(&T, NULL);
	ck_assert_uint_eq(count_creds(ctx, "dev", "active", NULL), 2);
	ck_assert_uint_eq(count_creds(ctx, "dev", NULL, NULL), 2);
	s2 = resolve_secret(ctx, "dev", &prev);
	ck_assert_str_eq(s1, s2);
	ck_assert_ptr_null(prev);
	ck_assert_uint_eq(td_check(ctx), 0);
	free(s1);
	free(s2);
	envdb_close(ctx);
}
END_TEST

static const char *const rotate_points[] = {"rotate.after_mint", "rotate.encrypt",
					    "rotate.commit"};

START_TEST(test_rotation_failpoint_error_undoes)
{
	envdb_ctx *ctx;
	char spec[128], *s1, *s2, *name;

	NEED_FAILPOINTS();
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	name = db_name(ctx, "dev");
	s1 = resolve_secret(ctx, "dev", NULL);
	snprintf(spec, sizeof(spec), "%s=error", rotate_points[_i]);
	td_failpoints(spec);
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", NULL), ENVDB_ERR_GENERIC);
	td_failpoints(NULL);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, rotate_points[_i]));
	/* Rows unchanged; what was minted is revoked at the backend. */
	ck_assert_uint_eq(count_creds(ctx, "dev", NULL, NULL), 2);
	ck_assert_uint_eq(count_creds(ctx, "dev", "active", NULL), 2);
	ck_assert_uint_eq(td_faulty_revocations(&T, name), 2);
	s2 = resolve_secret(ctx, "dev", NULL);
	ck_assert_str_eq(s1, s2);
	ck_assert_uint_eq(td_check(ctx), 0);
	free(s1);
	free(s2);
	free(name);
	envdb_close(ctx);
}
END_TEST

typedef struct child_arg {
	const char *spec;
	int op; /* 0 rotate, 1 complete, 2 rewrap */
} child_arg;

static int cred_child(void *arg)
{
	const child_arg *a = arg;
	envdb_rewrap_report rep = ENVDB_REWRAP_REPORT_INIT;
	envdb_ctx *ctx = NULL;
	size_t n;
	int rc;

	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		return 90;
	td_failpoints(a->spec);
	if (a->op == 0)
		rc = envdb_cred_rotate(ctx, "acme", "dev", NULL);
	else if (a->op == 1)
		rc = envdb_cred_complete(&n, ctx, "acme", "dev");
	else
		rc = envdb_key_rewrap(&rep, ctx, 0);
	envdb_close(ctx);
	return rc == ENVDB_OK ? 0 : 91;
}

static void assert_killed(int status, const char *what)
{
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "%s: the child was not killed at its failpoint (status 0x%x)", what, status);
}

START_TEST(test_rotation_killed)
{
	static const char *const points[] = {"rotate.after_mint", "rotate.encrypt",
					     "rotate.commit", "rotate.after_commit"};
	child_arg a = {NULL, 0};
	envdb_ctx *ctx;
	char spec[128], *s;

	NEED_FAILPOINTS();
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	envdb_close(ctx);
	snprintf(spec, sizeof(spec), "%s=kill", points[_i]);
	a.spec = spec;
	assert_killed(td_fork(cred_child, &a), points[_i]);
	ctx = td_open(&T);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 3600), 0);
	/* Exactly one active credential per authorization, whichever side of
	 * the commit the crash was, and it resolves. */
	ck_assert_uint_eq(count_creds(ctx, "dev", "active", "full_access"), 1);
	ck_assert_uint_eq(count_creds(ctx, "dev", "active", "read_only"), 1);
	ck_assert_uint_eq(count_creds(ctx, "dev", NULL, NULL), _i == 3 ? 4 : 2);
	s = resolve_secret(ctx, "dev", NULL);
	free(s);
	ck_assert_uint_eq(td_check(ctx), 0);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_completion_killed_after_backend_revoke)
{
	child_arg a = {"complete.after_revoke=kill", 1};
	envdb_ctx *ctx;
	char *name;
	size_t n = 0;

	NEED_FAILPOINTS();
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", NULL), ENVDB_OK);
	name = db_name(ctx, "dev");
	envdb_close(ctx);
	assert_killed(td_fork(cred_child, &a), "complete.after_revoke");
	ctx = td_open(&T);
	/* Revoked at the backend, the row still says rotating: completing
	 * again finishes it (revoking twice is harmless). */
	ck_assert_uint_eq(td_faulty_revocations(&T, name), 1);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", NULL), 2);
	ck_assert_int_eq(envdb_cred_complete(&n, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", NULL), 0);
	ck_assert_uint_eq(td_check(ctx), 0);
	free(name);
	envdb_close(ctx);
}
END_TEST

/* The progress of a rewrap: done counts up by one to total. */
static void count_progress(void *cb_ctx, size_t done, size_t total)
{
	size_t *calls = cb_ctx;

	ck_assert_uint_eq(done, *calls + 1);
	ck_assert_uint_le(done, total);
	*calls = done;
}

START_TEST(test_rewrap)
{
	size_t prog_calls;
	envdb_rewrap_report rep = ENVDB_REWRAP_REPORT_INIT;
	envdb_ctx *ctx = td_open(&T);
	envdb_credential **v = NULL;
	char *key = NULL, *s1, *s2;
	size_t n = 0, i;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	/* 2 credentials each: full_access and read_only (sqlite's: ?mode=ro) */
	ck_assert_int_eq(td_provision(ctx, "acme", "lite", "sqlite", "alice"), ENVDB_OK);
	s1 = resolve_secret(ctx, "dev", NULL);
	ck_assert_int_eq(envdb_key_rewrap(&rep, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(rep.total, 4);
	ck_assert_uint_eq(rep.already_current, 4);
	ck_assert_uint_eq(rep.rewrapped, 0);

	ck_assert_int_eq(envdb_key_generate(&key, ctx, NULL, 1), ENVDB_OK);
	ck_assert_int_eq(envdb_key_rewrap(&rep, ctx, ENVDB_REWRAP_DRY_RUN), ENVDB_OK);
	ck_assert_uint_eq(rep.total, 4);
	ck_assert_uint_eq(rep.already_current, 0);
	ck_assert_uint_eq(rep.rewrapped, 4);
	/* The dry run changed nothing. */
	ck_assert_int_eq(envdb_key_rewrap(&rep, ctx, ENVDB_REWRAP_DRY_RUN), ENVDB_OK);
	ck_assert_uint_eq(rep.rewrapped, 4);

	prog_calls = 0;
	ck_assert_int_eq(envdb_key_rewrap_progress(&rep, ctx, 0, count_progress, &prog_calls),
			 ENVDB_OK);
	ck_assert_uint_eq(prog_calls, rep.total); /* once per credential, in order */
	ck_assert_uint_eq(rep.total, 4);
	ck_assert_uint_eq(rep.rewrapped, 4);
	ck_assert_uint_eq(rep.failed, 0);
	ck_assert_int_eq(envdb_cred_list(&v, &n, ctx, "acme", "dev"), ENVDB_OK);
	for (i = 0; i < n; i++)
		ck_assert_str_eq(v[i]->key_id, key);
	envdb_credential_list_free(v, n);
	ck_assert_int_eq(envdb_key_rewrap(&rep, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(rep.already_current, 4);
	ck_assert_uint_eq(rep.rewrapped, 0);
	envdb_close(ctx);
	/* Same secret, under the new key (fresh context: no cache). */
	ctx = td_open(&T);
	s2 = resolve_secret(ctx, "dev", NULL);
	ck_assert_str_eq(s1, s2);
	free(s1);
	free(s2);
	envdb_free(key);
	ck_assert_uint_eq(td_check(ctx), 0);
	envdb_close(ctx);
}
END_TEST

/* An environment deleted (by another process) after the rewrap listed its
 * credentials: they are gone, not failures; rewrap succeeds.  The delete
 * is a trigger on the first row the rewrap writes, so it lands between
 * the list and the next rows every time. */
START_TEST(test_rewrap_skips_deleted_meanwhile)
{
	envdb_rewrap_report rep = ENVDB_REWRAP_REPORT_INIT;
	envdb_ctx *ctx = td_open(&T);
	envdb_credential **v = NULL;
	char *key = NULL;
	size_t n = 0, i;
	int rc;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "lite", "sqlite", "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "test", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_key_generate(&key, ctx, NULL, 1), ENVDB_OK);
	envdb_close(ctx);
	sql(T.control,
	    sm_pg() ? "CREATE FUNCTION gone_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
		      "DELETE FROM sys_database_credential WHERE environment_database_id <> "
		      "NEW.environment_database_id; "
		      "DELETE FROM sys_environment_database WHERE id <> "
		      "NEW.environment_database_id; RETURN NULL; END $$; "
		      "CREATE TRIGGER gone AFTER UPDATE OF secret_ciphertext ON "
		      "sys_database_credential FOR EACH ROW EXECUTE FUNCTION gone_fn()"
		    : "CREATE TRIGGER gone AFTER UPDATE OF secret_ciphertext ON "
		      "sys_database_credential BEGIN "
		      "DELETE FROM sys_database_credential WHERE environment_database_id <> "
		      "NEW.environment_database_id; "
		      "DELETE FROM sys_environment_database WHERE id <> "
		      "NEW.environment_database_id; END");
	ctx = td_open(&T);
	rc = envdb_key_rewrap(&rep, ctx, 0);
	ck_assert_msg(rc == ENVDB_OK, "rewrap: %s", envdb_error_last()->message);
	ck_assert_uint_eq(rep.total, 6); /* 2 per environment */
	ck_assert_uint_eq(rep.failed, 0);
	ck_assert_uint_ge(rep.rewrapped, 1);
	ck_assert_uint_eq(rep.rewrapped + rep.already_current, 6);
	envdb_close(ctx);
	sql(T.control, sm_pg() ? "DROP TRIGGER gone ON sys_database_credential; DROP FUNCTION gone_fn()"
			       : "DROP TRIGGER gone");
	/* what is left is under the new key */
	ctx = td_open(&T);
	for (i = 0; i < 3; i++) {
		static const char *const slugs[] = {"dev", "lite", "test"};
		size_t k;

		ck_assert_int_eq(envdb_cred_list(&v, &n, ctx, "acme", slugs[i]), ENVDB_OK);
		for (k = 0; k < n; k++)
			ck_assert_str_eq(v[k]->key_id, key);
		envdb_credential_list_free(v, n);
	}
	envdb_close(ctx);
	envdb_free(key);
}
END_TEST

START_TEST(test_rewrap_interrupted)
{
	envdb_rewrap_report rep = ENVDB_REWRAP_REPORT_INIT;
	child_arg a = {"rewrap.after_row=kill", 2};
	envdb_ctx *ctx;
	char *key = NULL, *s;

	NEED_FAILPOINTS();
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_key_generate(&key, ctx, NULL, 1), ENVDB_OK);
	envdb_free(key);
	/* An error on one row: counted, reported, the others are done. */
	td_failpoints("rewrap.after_seal=error");
	ck_assert_int_eq(envdb_key_rewrap(&rep, ctx, 0), ENVDB_ERR_GENERIC);
	td_failpoints(NULL);
	ck_assert_uint_eq(rep.failed, 2);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "2 of 2"));
	envdb_close(ctx);
	/* Killed after the first row: a re-run finishes the rest. */
	assert_killed(td_fork(cred_child, &a), "rewrap.after_row");
	ctx = td_open(&T);
	ck_assert_int_eq(envdb_key_rewrap(&rep, ctx, 0), ENVDB_OK);
	ck_assert_uint_eq(rep.total, 2);
	ck_assert_uint_eq(rep.already_current, 1);
	ck_assert_uint_eq(rep.rewrapped, 1);
	s = resolve_secret(ctx, "dev", NULL);
	free(s);
	envdb_close(ctx);
}
END_TEST

/* ---- concurrent rotation, completion and reconcile ---------------------- */

#define RACERS 4
#define RACE_ROUNDS 25

/* One racer: rotations (with and without overlap), completions and
 * reconciles (with the clock past every window) of acme/dev, as fast as it
 * can.  Every call must succeed or fail with a true conflict (a concurrent
 * rotation won before this one committed, or the lock stayed taken past
 * the busy timeout); an error after a commit, or "already revoked by
 * someone else" reported as an error, fails the racer. */
static int racer(void *arg)
{
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_reconcile_report *r = NULL;
	unsigned seed = (unsigned)(uintptr_t)arg * 7919u + (unsigned)getpid();
	envdb_ctx *ctx = NULL;
	size_t n, i;
	int round, rc, bad = 0;

	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		return 90;
	for (round = 0; round < RACE_ROUNDS; round++) {
		const char *what;

		switch (rand_r(&seed) % 4) {
		case 0:
			what = "rotate (overlap 0)";
			ro.overlap_seconds = 0;
			rc = envdb_cred_rotate(ctx, "acme", "dev", &ro);
			break;
		case 1:
			what = "rotate (overlap 600)";
			ro.overlap_seconds = 600;
			rc = envdb_cred_rotate(ctx, "acme", "dev", &ro);
			break;
		case 2:
			what = "complete";
			rc = envdb_cred_complete(&n, ctx, "acme", "dev");
			break;
		default:
			what = "reconcile";
			td_clock_ahead(3600);
			rc = envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY);
			td_clock_ahead(0);
			if (rc == ENVDB_OK) {
				for (i = 0; i < r->n_items; i++)
					if (r->items[i].status != ENVDB_OK) {
						fprintf(stderr, "racer: reconcile item %s: %s\n",
							r->items[i].kind,
							r->items[i].message ? r->items[i].message : "");
						bad = 1;
					}
				envdb_reconcile_report_free(r);
				r = NULL;
			}
			break;
		}
		if (rc == ENVDB_OK || rc == ENVDB_ERR_BUSY)
			continue;
		if (rc == ENVDB_ERR_STATE &&
		    strstr(envdb_error_last()->message, "a concurrent rotation won") != NULL &&
		    strstr(envdb_error_last()->message, "not revoked yet") == NULL)
			continue;
		fprintf(stderr, "racer: %s: status %d: %s\n", what, rc, envdb_error_last()->message);
		bad = 1;
	}
	envdb_close(ctx);
	return bad;
}

START_TEST(test_concurrent_rotate_complete_reconcile)
{
	envdb_ctx *ctx = td_open(&T);
	pid_t pids[RACERS];
	int i, status;
	char *s;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	envdb_close(ctx);
	fflush(NULL);
	for (i = 0; i < RACERS; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0)
			_exit(racer((void *)(uintptr_t)(i + 1)));
	}
	for (i = 0; i < RACERS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "racer %d failed (status 0x%x; its errors are on stderr)", i, status);
	}
	/* The invariants hold: one active credential per authorization, it
	 * resolves, nothing is left rotating once completed, check is clean. */
	ctx = td_open(&T);
	ck_assert_uint_eq(count_creds(ctx, "dev", "active", "full_access"), 1);
	ck_assert_uint_eq(count_creds(ctx, "dev", "active", "read_only"), 1);
	s = resolve_secret(ctx, "dev", NULL);
	free(s);
	ck_assert_int_eq(envdb_cred_complete(NULL, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_uint_eq(count_creds(ctx, "dev", "rotating", NULL), 0);
	ck_assert_uint_eq(td_check(ctx), 0);
	envdb_close(ctx);
}
END_TEST

static Suite *cred_suite(void)
{
	Suite *s = suite_create("credentials");
	TCase *tc = tcase_create("credentials");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_aad_bytes);
	tcase_add_test(tc, test_aad_v2_bytes);
	tcase_add_test(tc, test_address_bound_into_aad);
	tcase_add_test(tc, test_check_reports_swapped_ciphertexts);
	tcase_add_test(tc, test_old_aad_rows_resolve_and_rewrap);
	tcase_add_test(tc, test_ciphertext_swap_fails_integrity);
	tcase_add_test(tc, test_no_plaintext_in_control_plane);
	tcase_add_test(tc, test_rotation_overlap_and_complete);
	tcase_add_test(tc, test_rotation_window_ends_in_reconcile);
	tcase_add_test(tc, test_rotation_without_overlap_and_twice);
	tcase_add_test(tc, test_rotation_refused_states);
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_rotation_mint_failure_changes_nothing);
	tcase_add_test(tc, test_rewrap);
	tcase_add_test(tc, test_rewrap_skips_deleted_meanwhile);
	tcase_add_test(tc, test_concurrent_rotate_complete_reconcile);
	suite_add_tcase(s, tc);

	tc = tcase_create("failpoints");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_rotation_failpoint_error_undoes, 0, 3);
	tcase_add_loop_test(tc, test_rotation_killed, 0, 4);
	tcase_add_test(tc, test_completion_killed_after_backend_revoke);
	tcase_add_test(tc, test_rewrap_interrupted);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(cred_suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
