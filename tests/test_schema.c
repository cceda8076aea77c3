/*
 * tests/test_schema.c — the object definitions as data (core/schema.c): the
 * built-in table is valid and complete, deliberately broken tables are
 * refused at start, the DDL generated from the table enforces the rules in
 * SQLite itself, and `envdb schema` renders the same table.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sqlite3.h>

#include "schema.h"
#include "store.h"
#include "store_backend.h"

/* ---- the built-in table ------------------------------------------------- */

START_TEST(builtin_table_is_valid)
{
	ck_assert_int_eq(envdbi_schema_validate(envdbi_schema_objects, envdbi_schema_n_objects), 0);
	ck_assert_uint_eq(envdbi_schema_n_objects, 6);
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		ck_assert_msg(strncmp(o->name, "sys_", 4) == 0, "%s", o->name);
		ck_assert_ptr_nonnull(envdbi_schema_primary(o));
		for (size_t k = 0; k < o->n_fields; k++) {
			ck_assert_msg(o->fields[k].description && o->fields[k].description[0],
				      "%s.%s undescribed", o->name, o->fields[k].name);
			ck_assert_ptr_nonnull(envdbi_ftype_name(o->fields[k].type));
		}
		for (size_t k = 0; k < o->n_indexes; k++)
			if (o->indexes[k].unique)
				ck_assert_ptr_nonnull(o->indexes[k].invariant);
	}
	ck_assert_ptr_eq(envdbi_schema_object("sys_environment"), ENVDBI_OBJ_ENVIRONMENT);
	ck_assert_ptr_eq(envdbi_schema_object("sys_environment_member"), ENVDBI_OBJ_MEMBER);
	ck_assert_ptr_eq(envdbi_schema_object("sys_package_installation"), ENVDBI_OBJ_PACKAGE);
	ck_assert(ENVDBI_OBJ_TENANT_DB->legacy && ENVDBI_OBJ_PACKAGE->legacy);
	ck_assert(!ENVDBI_OBJ_CREDENTIAL->legacy);
	/* the design's uniqueness rules are declared */
	const char *want[] = {"unique_slug", "one_default_per_org", "one_database_per_environment",
			      "unique_database_name", "one_active_credential", "unique_member"};
	for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
		bool found = false;
		for (size_t i = 0; i < envdbi_schema_n_objects; i++)
			for (size_t k = 0; k < envdbi_schema_objects[i].n_indexes; k++) {
				const envdbi_index_def *ix = &envdbi_schema_objects[i].indexes[k];
				if (ix->unique && strcmp(ix->invariant, want[w]) == 0)
					found = true;
			}
		ck_assert_msg(found, "missing unique rule %s", want[w]);
	}
}
END_TEST

/* ---- broken tables ------------------------------------------------------ */

typedef struct rec2 {
	char *id;
	char *kind;
	char *parent;
} rec2;

static const char *const kinds[] = {"a", "b", NULL};

/* A valid two-object table that each case copies and breaks. */
static envdbi_field_def pf[3];
static envdbi_field_def cf[3];
static envdbi_index_def ci[1];
static envdbi_object_def objs[2];

static void reset_table(void)
{
	envdbi_field_def p[3] = {
		{"id", ENVDBI_FT_UUID, "id", NULL, true, NULL, NULL, ENVDBI_FF_PRIMARY,
		 offsetof(rec2, id)},
		{"kind", ENVDBI_FT_ENUM, "kind", kinds, true, "a", NULL, 0, offsetof(rec2, kind)},
		{"parent", ENVDBI_FT_TEXT, "unused", NULL, false, NULL, NULL, 0,
		 offsetof(rec2, parent)},
	};
	envdbi_field_def c[3] = {
		{"id", ENVDBI_FT_UUID, "id", NULL, true, NULL, NULL, ENVDBI_FF_PRIMARY,
		 offsetof(rec2, id)},
		{"kind", ENVDBI_FT_ENUM, "kind", kinds, true, NULL, NULL, 0, offsetof(rec2, kind)},
		{"parent", ENVDBI_FT_REF, "parent", NULL, true, NULL, "sys_parent", 0,
		 offsetof(rec2, parent)},
	};
	envdbi_index_def i[1] = {
		{"sys_child_parent", {"parent", "kind", NULL}, true, NULL, "one kind per parent",
		 "one_kind"},
	};
	memcpy(pf, p, sizeof p);
	memcpy(cf, c, sizeof c);
	memcpy(ci, i, sizeof i);
	objs[0] = (envdbi_object_def){"sys_parent", "parent", "parents", pf, 3, NULL, 0,
				      sizeof(rec2), false};
	objs[1] = (envdbi_object_def){"sys_child", "child", "children", cf, 3, ci, 1, sizeof(rec2),
				      false};
}

static void expect_refused(const char *needle)
{
	ck_assert_int_eq(envdbi_schema_validate(objs, 2), ENVDB_ERR_CONFIG);
	const char *msg = envdb_error_last()->message;
	ck_assert_msg(strstr(msg, needle) != NULL, "message '%s' lacks '%s'", msg, needle);
}

START_TEST(broken_tables_are_refused)
{
	reset_table();
	ck_assert_int_eq(envdbi_schema_validate(objs, 2), 0);

	reset_table();
	cf[1].type = (envdbi_ftype)99; /* the seed's Field.picklist */
	expect_refused("sys_child.kind: unknown field type 99");

	reset_table();
	cf[1].type = (envdbi_ftype)0;
	expect_refused("unknown field type");

	reset_table();
	pf[2].description = "";
	expect_refused("sys_parent.parent: field has no description");

	reset_table();
	pf[2].description = NULL;
	expect_refused("no description");

	reset_table();
	objs[1].name = "child";
	expect_refused("must start with sys_");

	reset_table();
	pf[1].default_value = "c";
	expect_refused("sys_parent.kind: default 'c' is not one of its values");

	reset_table();
	pf[1].enum_values = NULL;
	expect_refused("enum field without values");

	reset_table();
	cf[2].ref = "sys_nowhere";
	expect_refused("references unknown object 'sys_nowhere'");

	reset_table();
	ci[0].columns[1] = "nope";
	expect_refused("index sys_child_parent names unknown field 'nope'");

	reset_table();
	ci[0].invariant = NULL;
	expect_refused("has no invariant name");

	reset_table();
	cf[1].name = "id";
	expect_refused("field defined twice");

	reset_table();
	pf[0].flags = 0;
	expect_refused("exactly one primary key");

	reset_table();
	pf[2].offset = sizeof(rec2);
	expect_refused("offset outside the record");

	reset_table();
	objs[0].description = "";
	expect_refused("no description");

	reset_table();
	pf[2].type = ENVDBI_FT_BOOL;
	pf[2].default_value = "yes";
	expect_refused("boolean default 'yes'");
}
END_TEST

/* ---- helpers ------------------------------------------------------------ */

START_TEST(slug_and_uuid_rules)
{
	ck_assert(envdbi_slug_valid("prod"));
	ck_assert(envdbi_slug_valid("a"));
	ck_assert(envdbi_slug_valid("0-dev-2"));
	char s63[64], s64[65];
	memset(s63, 'a', 63);
	s63[63] = '\0';
	memset(s64, 'a', 64);
	s64[64] = '\0';
	ck_assert(envdbi_slug_valid(s63));
	ck_assert(!envdbi_slug_valid(s64));
	ck_assert(!envdbi_slug_valid(""));
	ck_assert(!envdbi_slug_valid("-dev"));
	ck_assert(!envdbi_slug_valid("Prod"));
	ck_assert(!envdbi_slug_valid("dev_1"));
	ck_assert(!envdbi_slug_valid("dév"));
	ck_assert(!envdbi_slug_valid(NULL));

	char a[37], b[37];
	envdbi_uuid_new(a);
	envdbi_uuid_new(b);
	ck_assert(envdbi_uuid_valid(a));
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(a[14], '7');
	ck_assert(strchr("89ab", a[19]) != NULL);
	/* Time-ordered (issue 18): an id made 2 ms later sorts after, and its
	 * first 48 bits are the Unix time in milliseconds. */
	{
		char later[37], ms_hex[13];
		struct timespec ts;
		unsigned long long ms;

		ts.tv_sec = 0;
		ts.tv_nsec = 2000000;
		nanosleep(&ts, NULL);
		envdbi_uuid_new(later);
		ck_assert_int_lt(strcmp(a, later), 0);
		clock_gettime(CLOCK_REALTIME, &ts);
		ms = (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
		memcpy(ms_hex, later, 8);
		memcpy(ms_hex + 8, later + 9, 4);
		ms_hex[12] = '\0';
		ck_assert_uint_le(strtoull(ms_hex, NULL, 16), ms);
		ck_assert_uint_ge(strtoull(ms_hex, NULL, 16) + 5000, ms);
	}
	ck_assert(!envdbi_uuid_valid("3F0C0000-0000-4000-8000-000000000000"));
	ck_assert(!envdbi_uuid_valid("not-a-uuid"));

	ck_assert(!envdbi_ciphertext_plausible("hunter2"));
	ck_assert(!envdbi_ciphertext_plausible("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	ck_assert(!envdbi_ciphertext_plausible("v1:key 1:AAAAAAAAAAAAAAAAAAAAAAAAA"));
	ck_assert(envdbi_ciphertext_plausible("v1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
}
END_TEST

START_TEST(record_validation_messages)
{
	envdb_environment e = {.id = "3f0c7a52-1b2c-4d3e-8f40-1234567890ab",
			       .organization_id = "acme",
			       .slug = "prod",
			       .display_name = "Prod",
			       .env_type = "production",
			       .plan = "free",
			       .status = "active",
			       .created_at = 1,
			       .updated_at = 1,
			       .metadata = "{}"};
	ck_assert_int_eq(envdbi_schema_check_record(ENVDBI_OBJ_ENVIRONMENT, &e, "environment acme/prod"), 0);
	e.env_type = "picklist";
	ck_assert_int_eq(envdbi_schema_check_record(ENVDBI_OBJ_ENVIRONMENT, &e, "environment acme/prod"),
			 ENVDB_ERR_INVALID);
	ck_assert_str_eq(envdb_error_last()->message,
			 "environment acme/prod: env_type: 'picklist' is not one of production, sandbox, "
			 "development, test, staging, preview, trial");
	e.env_type = "test";
	e.slug = "Prod";
	ck_assert_int_eq(envdbi_schema_check_record(ENVDBI_OBJ_ENVIRONMENT, &e, "environment acme/Prod"),
			 ENVDB_ERR_INVALID);
	ck_assert(strstr(envdb_error_last()->message, "slug: 'Prod' does not match") != NULL);
	e.slug = "prod";
	e.metadata = "[1]";
	ck_assert_int_eq(envdbi_schema_check_record(ENVDBI_OBJ_ENVIRONMENT, &e, "x"), ENVDB_ERR_INVALID);
	e.metadata = "{}";
	e.created_at = 0;
	ck_assert_int_eq(envdbi_schema_check_record(ENVDBI_OBJ_ENVIRONMENT, &e, "x"), ENVDB_ERR_INVALID);
	ck_assert_str_eq(envdb_error_last()->message, "x: created_at: is required");

	envdb_credential c = {.id = "3f0c7a52-1b2c-4d3e-8f40-1234567890ab",
			      .environment_database_id = "3f0c7a52-1b2c-4d3e-8f40-1234567890ac",
			      .secret_ciphertext = "hunter2-plaintext-password",
			      .key_id = "k1",
			      .authorization = "full_access",
			      .status = "active",
			      .created_at = 5,
			      .aad_version = ENVDB_CREDENTIAL_AAD_VERSION};
	ck_assert_int_eq(envdbi_schema_check_record(ENVDBI_OBJ_CREDENTIAL, &c, "credential"),
			 ENVDB_ERR_INVALID);
	/* the refused value is never echoed */
	ck_assert(strstr(envdb_error_last()->message, "hunter2") == NULL);
	ck_assert(strstr(envdb_error_last()->message, "plaintext refused") != NULL);
	c.secret_ciphertext = "v1:k1:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";
	ck_assert_int_eq(envdbi_schema_check_record(ENVDBI_OBJ_CREDENTIAL, &c, "credential"), 0);
	c.authorization = "admin";
	ck_assert_int_eq(envdbi_schema_check_record(ENVDBI_OBJ_CREDENTIAL, &c, "credential"),
			 ENVDB_ERR_INVALID);
}
END_TEST

START_TEST(record_dup_and_free)
{
	envdb_member m = {.id = "i", .environment_id = "e", .user_id = "u", .role = "reader",
			  .invited_by = NULL, .created_at = 3, .updated_at = 4};
	envdb_member *d = envdbi_record_dup(ENVDBI_OBJ_MEMBER, &m);
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_ne(d->user_id, m.user_id);
	ck_assert_str_eq(d->user_id, "u");
	ck_assert_ptr_null(d->invited_by);
	ck_assert_int_eq(d->updated_at, 4);
	envdb_member_free(d);
	envdb_member_free(NULL);
	ck_assert_ptr_null(envdbi_record_dup(ENVDBI_OBJ_MEMBER, NULL));
}
END_TEST

/* ---- the DDL enforces the rules in SQLite ------------------------------- */

static sqlite3 *ddl_db(void)
{
	sqlite3 *db = NULL;
	ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		char *ddl = NULL, *err = NULL;
		ck_assert_int_eq(envdbi_sql_ddl(&ddl, &envdbi_sql_dialect_sqlite, &envdbi_schema_objects[i]), 0);
		int rc = sqlite3_exec(db, ddl, NULL, NULL, &err);
		ck_assert_msg(rc == SQLITE_OK, "%s: %s", envdbi_schema_objects[i].name, err);
		free(ddl);
	}
	return db;
}

static int run(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

#define ENV_INSERT(id, org, slug, type, def, status)                                       \
	"INSERT INTO sys_environment (id, organization_id, slug, display_name, env_type, "    \
	"is_default, plan, status, created_at, updated_at, metadata) VALUES ('" id "', '" org \
	"', '" slug "', 'x', '" type "', " def ", 'free', '" status "', 1, 1, '{}')"

START_TEST(ddl_enforces_rules)
{
	sqlite3 *db = ddl_db();
	ck_assert_int_eq(run(db, ENV_INSERT("3f0c7a52-1b2c-4d3e-8f40-000000000001", "acme", "prod",
					    "production", "1", "active")),
			 SQLITE_OK);
	/* slug pattern, enum, uuid: CHECK constraints */
	ck_assert_int_eq(run(db, ENV_INSERT("3f0c7a52-1b2c-4d3e-8f40-000000000002", "acme", "Bad",
					    "production", "0", "active")),
			 SQLITE_CONSTRAINT);
	ck_assert_int_eq(run(db, ENV_INSERT("3f0c7a52-1b2c-4d3e-8f40-000000000002", "acme", "-dev",
					    "production", "0", "active")),
			 SQLITE_CONSTRAINT);
	ck_assert_int_eq(run(db, ENV_INSERT("3f0c7a52-1b2c-4d3e-8f40-000000000002", "acme", "dev",
					    "picklist", "0", "active")),
			 SQLITE_CONSTRAINT);
	ck_assert_int_eq(run(db, ENV_INSERT("not-a-uuid", "acme", "dev", "test", "0", "active")),
			 SQLITE_CONSTRAINT);
	/* UNIQUE(organization_id, slug) */
	ck_assert_int_eq(run(db, ENV_INSERT("3f0c7a52-1b2c-4d3e-8f40-000000000003", "acme", "prod",
					    "test", "0", "active")),
			 SQLITE_CONSTRAINT);
	/* one default per organization; an archived default does not count */
	ck_assert_int_eq(run(db, ENV_INSERT("3f0c7a52-1b2c-4d3e-8f40-000000000004", "acme", "dev",
					    "development", "1", "provisioning")),
			 SQLITE_CONSTRAINT);
	ck_assert_int_eq(run(db, ENV_INSERT("3f0c7a52-1b2c-4d3e-8f40-000000000005", "acme", "old",
					    "production", "1", "archived")),
			 SQLITE_OK);
	ck_assert_int_eq(run(db, ENV_INSERT("3f0c7a52-1b2c-4d3e-8f40-000000000006", "beta", "prod",
					    "production", "1", "active")),
			 SQLITE_OK);
	/* storage limit > 0 and foreign keys */
	ck_assert_int_eq(run(db, "INSERT INTO sys_environment_database (id, environment_id, "
				 "database_name, database_url, driver, storage_limit_mb, provisioned_at, "
				 "metadata) VALUES ('3f0c7a52-1b2c-4d3e-8f40-000000000101', "
				 "'3f0c7a52-1b2c-4d3e-8f40-000000000001', 'db1', 'file:db1', 'sqlite', 0, 1, '{}')"),
			 SQLITE_CONSTRAINT);
	ck_assert_int_eq(run(db, "INSERT INTO sys_environment_database (id, environment_id, "
				 "database_name, database_url, driver, storage_limit_mb, provisioned_at, "
				 "metadata) VALUES ('3f0c7a52-1b2c-4d3e-8f40-000000000101', "
				 "'3f0c7a52-1b2c-4d3e-8f40-00000000ffff', 'db1', 'file:db1', 'sqlite', 10, 1, '{}')"),
			 SQLITE_CONSTRAINT);
	ck_assert_int_eq(run(db, "INSERT INTO sys_environment_database (id, environment_id, "
				 "database_name, database_url, driver, storage_limit_mb, provisioned_at, "
				 "metadata) VALUES ('3f0c7a52-1b2c-4d3e-8f40-000000000101', "
				 "'3f0c7a52-1b2c-4d3e-8f40-000000000001', 'db1', 'file:db1', 'sqlite', 10, 1, '{}')"),
			 SQLITE_OK);
	/* database_name is immutable */
	ck_assert_int_eq(run(db, "UPDATE sys_environment_database SET database_name = 'db2'"),
			 SQLITE_CONSTRAINT);
	ck_assert_int_eq(run(db, "UPDATE sys_environment_database SET database_url = 'file:x'"),
			 SQLITE_OK);
	sqlite3_close(db);
}
END_TEST

/* The CHECK of a UUID, a ciphertext and an enum (rewritten cheaper for
 * issue 17) accept what they accepted: a UUID what envdbi_uuid_valid()
 * accepts, a ciphertext 24 characters or more without whitespace, an enum
 * its values exactly; every value goes through the very expression the DDL
 * gives SQLite. */
START_TEST(ddl_checks_agree_with_validators)
{
	static const char *const uuids[] = {
		"3f0c7a52-1b2c-4d3e-8f40-000000000001", "3F0C7A52-1B2C-4D3E-8F40-000000000001",
		"3f0c7a52-1b2c-4d3e-8f40-00000000000",  "3f0c7a52-1b2c-4d3e-8f40-0000000000011",
		"3f0c7a521-b2c-4d3e-8f40-000000000001", "3f0c7a52-1b2c-4d3e-8f40-00000000000g",
		"3f0c7a52-1b2c-4d3e-8f40-00000000000-", "3f0c7a52x1b2c-4d3e-8f40-000000000001",
		"3f0c7a52-1b2c-4d3e-8f4--000000000001", "3f0c7a52-1b2c-4d3e-8f40 000000000001",
		"------------------------------------", "3f0c7a52-1b2c-4d3e-8f40-00000000000*",
		"3f0c7a52-1b2c-4d3e-8f40-00000000000[", "",
		"ffffffff-ffff-ffff-ffff-ffffffffffff", "00000000-0000-0000-0000-000000000000",
	};
	static const char *const cts[] = {
		"edb1.k0000000000000000.abcdefghijklmnopqrstuvwxyz_-0123",
		"edb1.k0000000000000000.abc defghijklmnopqrstuvwxyz",
		"edb1.k0000000000000000.abc\tdefghijklmnopqrstuvwxyz",
		"edb1.k0000000000000000.abcdefghijklmnopqrstuvwxyz\n",
		"\redb1.k0000000000000000.abcdefghijklmnopqrstuvwxyz", "short",
		"abcdefghijklmnopqrstuvwx",
	};
	static const char *const statuses[] = {"provisioning", "active", "suspended", "archived",
					       "failed", "migrating", "Active", "activ",
					       "active ", "", "picklist"};
	const envdbi_field_def *id = envdbi_schema_primary(ENVDBI_OBJ_ENVIRONMENT), *ct = NULL,
			       *status = NULL;
	sqlite3 *db = NULL;
	char *expr = NULL, sql[2048];
	ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	for (size_t i = 0; i < ENVDBI_OBJ_CREDENTIAL->n_fields; i++)
		if (ENVDBI_OBJ_CREDENTIAL->fields[i].type == ENVDBI_FT_CIPHERTEXT)
			ct = &ENVDBI_OBJ_CREDENTIAL->fields[i];
	for (size_t i = 0; i < ENVDBI_OBJ_ENVIRONMENT->n_fields; i++)
		if (strcmp(ENVDBI_OBJ_ENVIRONMENT->fields[i].name, "status") == 0)
			status = &ENVDBI_OBJ_ENVIRONMENT->fields[i];
	ck_assert_ptr_nonnull(ct);
	ck_assert_ptr_nonnull(status);
	for (int pass = 0; pass < 3; pass++) {
		const envdbi_field_def *f = pass == 0 ? id : pass == 1 ? ct : status;
		const char *const *v = pass == 0 ? uuids : pass == 1 ? cts : statuses;
		size_t nv = pass == 0   ? sizeof uuids / sizeof *uuids
			    : pass == 1 ? sizeof cts / sizeof *cts
					: sizeof statuses / sizeof *statuses;
		sqlite3_stmt *st = NULL;
		ck_assert_int_eq(envdbi_sql_field_check(&expr, &envdbi_sql_dialect_sqlite, f), 0);
		snprintf(sql, sizeof sql, "SELECT coalesce((%s), 0) FROM (SELECT ?1 AS \"%s\")", expr,
			 f->name);
		free(expr);
		ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
		for (size_t k = 0; k < nv; k++) {
			bool want = pass == 0   ? envdbi_uuid_valid(v[k])
				    : pass == 1 ? strlen(v[k]) >= 24 && strpbrk(v[k], " \t\r\n") == NULL
						: envdbi_schema_enum_ok(f, v[k]);
			sqlite3_bind_text(st, 1, v[k], -1, SQLITE_STATIC);
			ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
			ck_assert_msg((sqlite3_column_int(st, 0) != 0) == want, "%s '%s': CHECK says %d",
				      f->name, v[k], sqlite3_column_int(st, 0));
			sqlite3_reset(st);
		}
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
}
END_TEST

/* Issue 17: an insert into any object builds no temporary b-tree (a CHECK
 * with "x IN (three or more values)" built one per enum column at every
 * insert): the INSERT of every column, as the store prepares it, has no
 * OpenEphemeral in its program. */
START_TEST(ddl_insert_builds_no_temp_btree)
{
	sqlite3 *db = ddl_db();
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		char sql[2048];
		size_t n = 0;
		sqlite3_stmt *st = NULL;
		int ephemeral = 0;
		n += (size_t)snprintf(sql + n, sizeof sql - n, "EXPLAIN INSERT INTO \"%s\" (", o->name);
		for (size_t k = 0; k < o->n_fields; k++)
			n += (size_t)snprintf(sql + n, sizeof sql - n, "%s\"%s\"", k ? ", " : "",
					      o->fields[k].name);
		n += (size_t)snprintf(sql + n, sizeof sql - n, ") VALUES (");
		for (size_t k = 0; k < o->n_fields; k++)
			n += (size_t)snprintf(sql + n, sizeof sql - n, "%s?", k ? ", " : "");
		snprintf(sql + n, sizeof sql - n, ")");
		ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
		while (sqlite3_step(st) == SQLITE_ROW)
			if (strcmp((const char *)sqlite3_column_text(st, 1), "OpenEphemeral") == 0)
				ephemeral++;
		sqlite3_finalize(st);
		ck_assert_msg(ephemeral == 0, "%s: insert opens %d temporary b-trees", o->name,
			      ephemeral);
	}
	sqlite3_close(db);
}
END_TEST

/* ---- renderings --------------------------------------------------------- */

START_TEST(schema_json_and_text)
{
	char *js = NULL, *txt = NULL;
	json_error_t err;
	ck_assert_int_eq(envdb_schema_json(&js, NULL), 0);
	json_t *root = json_loads(js, 0, &err);
	ck_assert_ptr_nonnull(root);
	ck_assert_int_eq(json_integer_value(json_object_get(root, "version")), ENVDBI_STORE_VERSION);
	json_t *objects = json_object_get(root, "objects");
	ck_assert_uint_eq(json_array_size(objects), envdbi_schema_n_objects);
	json_t *env = json_array_get(objects, 0);
	ck_assert_str_eq(json_string_value(json_object_get(env, "name")), "sys_environment");
	json_t *fields = json_object_get(env, "fields");
	bool saw_env_type = false;
	for (size_t i = 0; i < json_array_size(fields); i++) {
		json_t *f = json_array_get(fields, i);
		ck_assert(json_string_length(json_object_get(f, "description")) > 0);
		if (strcmp(json_string_value(json_object_get(f, "name")), "env_type") == 0) {
			saw_env_type = true;
			ck_assert_str_eq(json_string_value(json_object_get(f, "type")), "enum");
			ck_assert_str_eq(json_string_value(json_object_get(f, "default")), "production");
			ck_assert_uint_eq(json_array_size(json_object_get(f, "values")), 7);
		}
	}
	ck_assert(saw_env_type);
	json_t *idx = json_array_get(json_object_get(env, "indexes"), 1);
	ck_assert_str_eq(json_string_value(json_object_get(idx, "name")),
			 "sys_environment_one_default");
	ck_assert(json_is_true(json_object_get(idx, "unique")));
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(idx, "where")), "archived"));
	json_decref(root);
	envdb_free(js);

	ck_assert_int_eq(envdb_schema_text(&txt, NULL), 0);
	ck_assert_ptr_nonnull(strstr(txt, "sys_environment_member"));
	ck_assert_ptr_nonnull(strstr(txt, "sys_tenant_database (legacy)"));
	ck_assert_ptr_nonnull(strstr(txt, "UNIQUE sys_environment_org_slug (organization_id, slug)"));
	ck_assert_ptr_nonnull(strstr(txt, "[owner, admin, maker, reader, guest]"));
	envdb_free(txt);

	/* without the legacy shim the legacy objects are not listed */
	ck_assert_int_eq(envdbi_schema_render_json(&js, false), 0);
	root = json_loads(js, 0, &err);
	ck_assert_uint_eq(json_array_size(json_object_get(root, "objects")), 4);
	json_decref(root);
	free(js);
}
END_TEST

/* jansson's answer for a metadata text: an object without duplicate keys. */
static bool jansson_object(const char *s)
{
	json_error_t err;
	json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &err);
	bool ok = j != NULL && json_is_object(j);
	json_decref(j);
	return ok;
}

/* The non-allocating test says yes only where jansson does, and decides the
 * texts the migration writes. */
START_TEST(json_object_fast_agrees_with_jansson)
{
	static const char *const yes[] = {
		"{}", " { } ", "{\"a\":\"b\"}", "{\"a\":[true,false,null,[],{}]}\n",
		"{\"migrated_from\":{\"object\":\"sys_tenant_database\",\"id\":\"t-1\"}}",
		"{\"a\":{\"a\":{\"a\":\"\"}}, \"b\":\"x\"}",
	};
	static const char *const no[] = {
		"", "[]", "\"x\"", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":\"b\",}", "{} x",
		"{\"a\":1,\"a\":2}", "{\"a\":\"b\",\"a\":\"c\"}", "{a:\"b\"}", "{\"a\":tru}",
		"{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}", "{\"a\":[1,]}", "{}{}", "{\"a\":nul}",
	};
	static const char *const parts[] = {
		"{", "}", "[", "]", ",", ":", "\"a\"", "\"b\"", "\"\\u0041\"", "\"\\n\"", "1",
		"-0.5", "1e999", "true", "false", "null", " ", "\t", "\"\xc3\xa9\"", "\"\xc3\"",
		"x", "\"", "\"a\":", "\"b\":", "\"c\":\"d\"", "\"a\":{", "\"b\":[null", ",\"e\":true",
	};
	char buf[256];
	unsigned seed = 17;
	int decided = 0;

	for (size_t i = 0; i < sizeof(yes) / sizeof(*yes); i++) {
		ck_assert_msg(envdbi_json_object_fast(yes[i]), "fast: %s", yes[i]);
		ck_assert_msg(jansson_object(yes[i]), "jansson: %s", yes[i]);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(*no); i++) {
		ck_assert_msg(!envdbi_json_object_fast(no[i]), "fast: %s", no[i]);
		ck_assert_msg(!jansson_object(no[i]), "jansson: %s", no[i]);
	}
	/* random token strings, mostly well-formed objects: never a yes that
	 * jansson refuses */
	for (int round = 0; round < 200000; round++) {
		size_t len = 0, n;

		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 16) % 14;
		buf[len++] = '{';
		for (size_t k = 0; k < n; k++) {
			const char *t;

			seed = seed * 1103515245u + 12345u;
			t = parts[(seed >> 16) % (sizeof(parts) / sizeof(*parts))];
			if (len + strlen(t) + 2 >= sizeof(buf))
				break;
			memcpy(buf + len, t, strlen(t));
			len += strlen(t);
		}
		if ((seed >> 8) & 1)
			buf[len++] = '}';
		buf[len] = '\0';
		if (envdbi_json_object_fast(buf)) {
			ck_assert_msg(jansson_object(buf), "fast says object, jansson not: %s", buf);
			decided++;
		}
	}
	ck_assert_int_gt(decided, 100);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("schema");
	TCase *tc = tcase_create("definitions");
	tcase_add_test(tc, builtin_table_is_valid);
	tcase_add_test(tc, json_object_fast_agrees_with_jansson);
	tcase_add_test(tc, broken_tables_are_refused);
	tcase_add_test(tc, slug_and_uuid_rules);
	tcase_add_test(tc, record_validation_messages);
	tcase_add_test(tc, record_dup_and_free);
	tcase_add_test(tc, ddl_enforces_rules);
	tcase_add_test(tc, ddl_checks_agree_with_validators);
	tcase_add_test(tc, ddl_insert_builds_no_temp_btree);
	tcase_add_test(tc, schema_json_and_text);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
