/*
 * tests/test_check.c — the invariant checker (core/check.c) on both stores
 * (tests/store_matrix.h): a consistent control plane has no violation; a
 * store corrupted directly (raw sqlite3 with foreign keys and CHECK
 * constraints off, or a PostgreSQL session that dropped them; unique
 * indexes and triggers dropped) has every corruption reported with its
 * invariant and the offending row ids.
 */
#include "config.h"

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <sqlite3.h>

#include "schema.h"
#include "store.h"
#include "store_matrix_cp.h"

#define CT "v1:k1:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj"
#define U(n) "3f0c7a52-1b2c-4d3e-8f40-0000000000" n
#define MISSING "3f0c7a52-1b2c-4d3e-8f40-00000000dead"

static char dir[256];
static char path[512];
static char prod[37], dev[37], db[37], cred[37];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* A consistent control plane: acme/prod (active, default) with its database,
 * a full_access credential and a member; acme/dev provisioning within its
 * lease; acme/old archived. */
static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	envdbi_store *s = NULL;
	snprintf(dir, sizeof dir, "%s/envdb-check-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	sm_fresh(dir);
	snprintf(path, sizeof path, "%s", sm_name());
	ck_assert_int_eq(cp_open(&s, 2000, true, ENVDB_OPEN_CREATE), 0);

	envdb_environment e = {.organization_id = "acme", .slug = "prod", .is_default = 1,
			       .status = "active"};
	ck_assert_int_eq(envdbi_store_env_insert(s, &e, prod), 0);
	envdb_environment d = {.organization_id = "acme", .slug = "dev", .status = "provisioning",
			       .lease_expires_at = envdbi_now() + 3600};
	ck_assert_int_eq(envdbi_store_env_insert(s, &d, dev), 0);
	envdb_environment o = {.organization_id = "acme", .slug = "old", .is_default = 1,
			       .status = "archived"};
	ck_assert_int_eq(envdbi_store_env_insert(s, &o, NULL), 0);
	envdb_database x = {.environment_id = prod, .database_name = "envdb_prod",
			    .database_url = "file:/p.db", .driver = "sqlite", .storage_limit_mb = 10};
	ck_assert_int_eq(envdbi_store_db_insert(s, &x, db), 0);
	envdb_credential c = {.environment_database_id = db, .secret_ciphertext = CT, .key_id = "k1",
			      .authorization = "full_access", .status = "active"};
	ck_assert_int_eq(envdbi_store_cred_insert(s, &c, cred), 0);
	envdb_member m = {.environment_id = prod, .user_id = "alice", .role = "owner"};
	ck_assert_int_eq(envdbi_store_member_insert(s, &m, NULL), 0);
	envdbi_tenant_db_row t = {.organization_id = "acme", .database_name = "legacy_acme",
				  .database_url = "libsql://acme"};
	ck_assert_int_eq(envdbi_store_tenant_db_insert(s, &t, NULL), 0);
	envdbi_store_close(s);
}

static void teardown(void)
{
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void run_check(envdb_violation ***v, size_t *n)
{
	envdbi_store *s = NULL;
	ck_assert_int_eq(cp_open(&s, 2000, true, 0), 0);
	int rc = envdbi_check_store(v, n, s);
	ck_assert_msg(rc == 0, "check: %s", envdb_error_last()->message);
	envdbi_store_close(s);
}

/* The message of the violation of `invariant` whose row ids contain `id`
 * (NULL id: any), or NULL. */
static const char *find(envdb_violation **v, size_t n, const char *invariant, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i]->invariant, invariant) == 0 &&
		    (id == NULL || strstr(v[i]->row_ids, id) != NULL))
			return v[i]->message;
	return NULL;
}

static void expect(envdb_violation **v, size_t n, const char *invariant, const char *id,
		   const char *needle)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i]->invariant, invariant) == 0 &&
		    (id == NULL || strstr(v[i]->row_ids, id) != NULL) &&
		    (needle == NULL || strstr(v[i]->message, needle) != NULL))
			return;
	ck_abort_msg("no %s violation for %s with '%s'", invariant, id ? id : "(any)",
		     needle ? needle : "");
}

static void dump(envdb_violation **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "  [%s] %s (%s): %s\n", v[i]->object, v[i]->invariant, v[i]->row_ids,
			v[i]->message);
}

START_TEST(consistent_store_has_no_violation)
{
	envdb_violation **v = NULL;
	size_t n = 99;
	run_check(&v, &n);
	if (n)
		dump(v, n);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(v);
}
END_TEST

/* Run SQL on the control plane as another process with the safety nets
 * off: SQLite's foreign keys and CHECK constraints, or PostgreSQL's CHECK
 * and FOREIGN KEY constraints (dropped: a session cannot switch them off).
 * SQLite's char(N) is PostgreSQL's chr(N). */
static void raw_exec(const char *sql_in)
{
	static const char pg_off[] =
		"DO $$ DECLARE r record; BEGIN FOR r IN SELECT c.conrelid::regclass AS t, "
		"c.conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
		"WHERE n.nspname = current_schema() AND c.contype IN ('c', 'f') LOOP "
		"EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, r.conname); END LOOP; "
		"END $$; ";
	char sql[8192], err[512] = "";
	int rc;

	if (sm_pg()) {
		size_t o = (size_t)snprintf(sql, sizeof sql, "%s", pg_off);
		for (const char *p = sql_in; *p && o + 4 < sizeof sql; p++) {
			if (strncmp(p, "char(", 5) == 0) {
				memcpy(sql + o, "chr(", 4);
				o += 4;
				p += 4;
				continue;
			}
			sql[o++] = *p;
		}
		sql[o] = '\0';
	} else {
		snprintf(sql, sizeof sql,
			 "PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON; %s", sql_in);
	}
	rc = sm_pg() ? sm_pg_exec(sql, err, sizeof err) : cp_raw_exec(sql, err, sizeof err);
	ck_assert_msg(rc == 0, "%s: %s", sql_in, err);
}

#define ENV(id, org, slug, def, status, lease)                                                  \
	"INSERT INTO sys_environment (id, organization_id, slug, display_name, env_type, "      \
	"is_default, plan, status, created_at, updated_at, metadata, lease_expires_at) VALUES ('" id \
	"', '" org "', '" slug "', 'x', 'production', " def ", 'free', '" status "', 1, 1, '{}', " \
	lease ")"
#define DB(id, env, name, limit, meta)                                                          \
	"INSERT INTO sys_environment_database (id, environment_id, database_name, database_url, "  \
	"driver, storage_limit_mb, provisioned_at, metadata) VALUES ('" id "', '" env "', '" name  \
	"', 'file:x', 'sqlite', " limit ", 1, '" meta "')"
#define CRED(id, db, ct, key, auth)                                                             \
	"INSERT INTO sys_database_credential (id, environment_database_id, secret_ciphertext, "     \
	"encryption_key_id, \"authorization\", status, created_at) VALUES ('" id "', '" db "', '" ct   \
	"', '" key "', '" auth "', 'active', 1)"
#define MEMBER(id, env, user, role)                                                             \
	"INSERT INTO sys_environment_member (id, environment_id, user_id, role, created_at, "      \
	"updated_at) VALUES ('" id "', '" env "', '" user "', '" role "', 1, 1)"

START_TEST(corrupted_store_reports_every_violation)
{
	char sql[1024];
	envdb_violation **v = NULL;
	size_t n = 0;

	raw_exec("DROP INDEX sys_environment_one_default; DROP INDEX sys_environment_org_slug;"
		 "DROP INDEX sys_environment_database_env; DROP INDEX sys_environment_database_name;"
		 "DROP INDEX sys_database_credential_one_active;"
		 "DROP INDEX sys_environment_member_env_user;");
	raw_exec(sm_pg() ? "DROP TRIGGER sys_environment_database_immutable ON "
			   "sys_environment_database"
			 : "DROP TRIGGER sys_environment_database_immutable");
	/* a second default of acme, active without a database */
	raw_exec(ENV(U("01"), "acme", "prod2", "1", "active", "NULL"));
	/* a duplicate slug with an unknown status (the seed's picklist bug) */
	raw_exec(ENV(U("02"), "acme", "prod", "0", "picklist", "NULL"));
	/* a slug outside the pattern */
	raw_exec(ENV(U("03"), "acme", "Bad_Slug", "0", "archived", "NULL"));
	/* provisioning intents past their lease / without one */
	raw_exec(ENV(U("04"), "beta", "stuck", "0", "provisioning", "100"));
	raw_exec(ENV(U("05"), "beta", "nolease", "0", "provisioning", "NULL"));
	/* active with a database but no credential */
	raw_exec(ENV(U("06"), "beta", "live", "0", "active", "NULL"));
	raw_exec(DB(U("16"), U("06"), "envdb_live", "5", "{}"));
	/* an orphan database whose name is taken */
	raw_exec(DB(U("17"), MISSING, "envdb_prod", "5", "{}"));
	/* a second database of acme/prod, limit 0, metadata not JSON */
	snprintf(sql, sizeof sql, DB(U("18"), "%s", "envdb_prod_2", "0", "nope"), prod);
	raw_exec(sql);
	/* a second active full_access credential of the prod database */
	snprintf(sql, sizeof sql, CRED(U("19"), "%s", CT, "k1", "full_access"), db);
	raw_exec(sql);
	/* a plaintext secret without key id */
	raw_exec(CRED(U("20"), U("16"), "hunter2", "", "read_only"));
	/* a credential of a database that does not exist */
	raw_exec(CRED(U("21"), MISSING, CT, "k1", "full_access"));
	/* a duplicate member, an orphan member, an unknown role */
	snprintf(sql, sizeof sql, MEMBER(U("22"), "%s", "alice", "reader"), prod);
	raw_exec(sql);
	raw_exec(MEMBER(U("23"), MISSING, "bob", "reader"));
	snprintf(sql, sizeof sql, MEMBER(U("24"), "%s", "carol", "superuser"), prod);
	raw_exec(sql);
	/* a legacy row with an unknown status */
	raw_exec("INSERT INTO sys_tenant_database (id, organization_id, database_name, "
		      "database_url, status, plan, storage_limit_mb, created_at, updated_at) VALUES ('"
		      U("25") "', 'beta', 'legacy_beta', 'x', 'zombie', 'free', 5, 1, 1)");

	run_check(&v, &n);
	dump(v, n);

	/* schema against the definitions */
	expect(v, n, "schema_matches_definitions", NULL, "sys_environment_one_default is missing");
	ck_assert_ptr_nonnull(find(v, n, "schema_matches_definitions", NULL));
	int missing = 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i]->invariant, "schema_matches_definitions") == 0)
			missing++;
	ck_assert_int_eq(missing, 7); /* 6 indexes + 1 trigger */
	/* invariant 3, 4: slugs */
	expect(v, n, "one_default_per_org", U("01"), "acme");
	expect(v, n, "one_default_per_org", prod, NULL);
	expect(v, n, "unique_slug", U("02"), "acme/prod");
	{
		/* the ids of a duplicate group, all of them, in id order */
		char want[80];
		const char *lo = strcmp(prod, U("02")) < 0 ? prod : U("02");
		snprintf(want, sizeof want, "%s,%s", lo, lo == prod ? U("02") : prod);
		bool seen = false;
		for (size_t i = 0; i < n; i++)
			if (strcmp(v[i]->invariant, "unique_slug") == 0) {
				ck_assert_str_eq(v[i]->row_ids, want);
				seen = true;
			}
		ck_assert(seen);
	}
	expect(v, n, "slug_pattern", U("03"), "Bad_Slug");
	/* invariant 2: enum values */
	expect(v, n, "enum_value", U("02"), "status 'picklist' is not one of");
	expect(v, n, "enum_value", U("24"), "role 'superuser'");
	expect(v, n, "enum_value", U("25"), "status 'zombie'");
	/* invariant 5: one database per environment, unique names */
	expect(v, n, "one_database_per_environment", U("18"), NULL);
	expect(v, n, "unique_database_name", U("17"), "envdb_prod");
	expect(v, n, "database_per_active_environment", U("01"), "acme/prod2");
	expect(v, n, "positive", U("18"), "storage_limit_mb");
	expect(v, n, "json_object", U("18"), "metadata");
	/* invariant 6: credentials */
	expect(v, n, "one_active_credential", U("19"), NULL);
	expect(v, n, "one_active_credential", cred, NULL);
	expect(v, n, "active_full_access", U("06"), "beta/live");
	/* never plaintext; always a key id */
	expect(v, n, "ciphertext_sealed", U("20"), "secret_ciphertext");
	expect(v, n, "ciphertext_sealed", U("20"), "encryption_key_id is missing");
	for (size_t i = 0; i < n; i++)
		ck_assert_ptr_null(strstr(v[i]->message, "hunter2"));
	/* invariant 8: leases */
	expect(v, n, "provisioning_lease", U("04"), "lease expired");
	expect(v, n, "provisioning_lease", U("05"), "without a lease");
	ck_assert_ptr_null(find(v, n, "provisioning_lease", dev));
	/* orphans */
	expect(v, n, "dangling_reference", U("17"), MISSING);
	expect(v, n, "dangling_reference", U("21"), MISSING);
	expect(v, n, "dangling_reference", U("23"), MISSING);
	expect(v, n, "unique_member", U("22"), NULL);
	/* every violation names its object and rows */
	for (size_t i = 0; i < n; i++) {
		ck_assert(v[i]->object[0] != '\0');
		ck_assert(v[i]->message[0] != '\0');
		if (strcmp(v[i]->invariant, "schema_matches_definitions") != 0)
			ck_assert_msg(v[i]->row_ids[0] != '\0', "%s without rows", v[i]->invariant);
	}
	envdb_violation_list_free(v, n);
}
END_TEST

/* Whoever could write the control plane chooses the bytes check shows:
 * terminal escapes and line breaks in a value come out as \xNN, so the
 * report cannot clear the screen or forge a line of its own. */
START_TEST(hostile_values_escaped)
{
	envdb_violation **v = NULL;
	size_t n = 0;
	const char *msg;

	raw_exec("INSERT INTO sys_environment (id, organization_id, slug, display_name, "
		      "env_type, is_default, plan, status, created_at, updated_at, metadata) VALUES ('"
		      U("07") "', 'acme', 'evil' || char(27) || '[2J' || char(10) || "
		      "'VIOLATION fake' || char(127) || char(233), 'x', 'production', 0, "
		      "'free', 'archived', 1, 1, '{}')");
	raw_exec("INSERT INTO sys_environment (id, organization_id, slug, display_name, "
		      "env_type, is_default, plan, status, created_at, updated_at, metadata) VALUES ("
		      "'bad' || char(27) || '[31mid', 'acme', 'fine', 'x', 'production', 0, "
		      "'free', 'archived', 1, 1, '{}')");
	run_check(&v, &n);
	dump(v, n);
	msg = find(v, n, "slug_pattern", U("07"));
	ck_assert_ptr_nonnull(msg);
	ck_assert_msg(strstr(msg, "evil\\x1b[2J\\x0aVIOLATION fake\\x7f\\xc3\\xa9") != NULL, "%s",
		      msg);
	msg = find(v, n, "uuid_format", "bad\\x1b[31mid");
	ck_assert_ptr_nonnull(msg);
	for (size_t i = 0; i < n; i++) {
		for (const char *c = v[i]->message; *c; c++)
			ck_assert_msg((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f,
				      "byte 0x%02x in %s", (unsigned char)*c, v[i]->message);
		for (const char *c = v[i]->row_ids; *c; c++)
			ck_assert_msg((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f,
				      "byte 0x%02x in row ids %s", (unsigned char)*c, v[i]->row_ids);
	}
	envdb_violation_list_free(v, n);
}
END_TEST

START_TEST(check_skips_unregistered_legacy)
{
	envdbi_store *s = NULL;
	envdb_violation **v = NULL;
	size_t n = 0;
	raw_exec("UPDATE sys_tenant_database SET status = 'zombie'");
	ck_assert_int_eq(cp_open(&s, 2000, false, 0), 0);
	ck_assert_int_eq(envdbi_check_store(&v, &n, s), 0);
	ck_assert_uint_eq(n, 0);
	envdbi_store_close(s);
	run_check(&v, &n);
	ck_assert_uint_eq(n, 1);
	expect(v, n, "enum_value", NULL, "legacy tenant database legacy_acme");
	envdb_violation_list_free(v, n);
}
END_TEST

/* `envdb check` prints each violation and exits 65 (EX_DATAERR). */
static int run_cli(const char *out)
{
	const char *builddir = getenv("ENVDB_TEST_BUILDDIR");
	char manifest[600], cmd[2048];
	FILE *f;
	snprintf(manifest, sizeof manifest, "%s/envdb.yaml", dir);
	f = fopen(manifest, "w");
	ck_assert_ptr_nonnull(f);
	fputs("version: 1\n", f);
	sm_manifest_control_plane(f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "'%s/core/envdb' --manifest '%s' check > '%s' 2>&1", builddir,
		 manifest, out);
	int st = system(cmd);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

START_TEST(cli_check_exit_status)
{
	char out[600];
	if (getenv("ENVDB_TEST_BUILDDIR") == NULL)
		return; /* only through make check */
	snprintf(out, sizeof out, "%s/check.out", dir);
	ck_assert_int_eq(run_cli(out), 0);
	raw_exec("UPDATE sys_environment_member SET role = 'root'");
	ck_assert_int_eq(run_cli(out), 65);
	char text[4096] = "";
	FILE *f = fopen(out, "r");
	ck_assert_ptr_nonnull(f);
	size_t len = fread(text, 1, sizeof text - 1, f);
	text[len] = '\0';
	fclose(f);
	/* a row of the violations table (OBJECT INVARIANT ROW IDS MESSAGE) */
	ck_assert_ptr_nonnull(strstr(text, "\nOBJECT "));
	const char *row = strstr(text, "\nsys_environment_member ");
	ck_assert_ptr_nonnull(row);
	const char *eol = strchr(row + 1, '\n');
	const char *inv = strstr(row, " enum_value ");
	ck_assert(inv != NULL && (eol == NULL || inv < eol));
	ck_assert_ptr_nonnull(strstr(text, "role 'root' is not one of"));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("check");
	TCase *tc = tcase_create("check");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, consistent_store_has_no_violation);
	tcase_add_test(tc, corrupted_store_reports_every_violation);
	tcase_add_test(tc, hostile_values_escaped);
	tcase_add_test(tc, check_skips_unregistered_legacy);
	tcase_add_test(tc, cli_check_exit_status);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
