/*
 * core/schema.c — the control-plane object definitions (one static table)
 * and the data-level helpers over it: validation of the table itself, the
 * value validators of the field types, record validation, and the `envdb
 * schema` renderings.  No SQL: each store backend generates its DDL from
 * the table (core/store_sql.c for the SQL backends).  See schema.h.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "legacy_rows.h"
#include "schema.h"

/* ------------------------------------------------------------------------ */
/* The table                                                                 */
/* ------------------------------------------------------------------------ */

static const char *const env_types[] = {"production", "sandbox", "development", "test",
					"staging",    "preview", "trial",       NULL};
static const char *const plans[] = {"free", "starter", "pro", "enterprise", "custom", NULL};
static const char *const env_statuses[] = {"provisioning", "active",  "suspended", "archived",
					   "failed",       "migrating", NULL};
static const char *const authorizations[] = {"full_access", "read_only", NULL};
static const char *const cred_statuses[] = {"active", "rotating", "revoked", NULL};
static const char *const roles[] = {"owner", "admin", "maker", "reader", "guest", NULL};
static const char *const legacy_statuses[] = {"active", "suspended", "archived", "failed", NULL};
static const char *const package_statuses[] = {"installed", "installing", "failed", "uninstalled",
					       NULL};

#define F(rec, member) offsetof(rec, member)

static const envdbi_field_def environment_fields[] = {
	{"id", ENVDBI_FT_UUID, "unique id of the environment (UUID v7)", NULL, true, NULL, NULL,
	 ENVDBI_FF_PRIMARY | ENVDBI_FF_IMMUTABLE, F(envdb_environment, id)},
	{"organization_id", ENVDBI_FT_TEXT, "organization that owns the environment", NULL, true,
	 NULL, NULL, ENVDBI_FF_IMMUTABLE, F(envdb_environment, organization_id)},
	{"slug", ENVDBI_FT_SLUG, "short name, unique within the organization", NULL, true, NULL,
	 NULL, 0, F(envdb_environment, slug)},
	{"display_name", ENVDBI_FT_TEXT, "human-readable name", NULL, true, NULL, NULL, 0,
	 F(envdb_environment, display_name)},
	{"env_type", ENVDBI_FT_ENUM, "kind of environment", env_types, true, "production", NULL, 0,
	 F(envdb_environment, env_type)},
	{"is_default", ENVDBI_FT_BOOL,
	 "the organization's default environment (at most one that is not archived or failed)",
	 NULL, true, "0", NULL, 0, F(envdb_environment, is_default)},
	{"region", ENVDBI_FT_TEXT, "preferred region of the physical database", NULL, false, NULL,
	 NULL, 0, F(envdb_environment, region)},
	{"plan", ENVDBI_FT_ENUM, "billing plan", plans, true, "free", NULL, 0,
	 F(envdb_environment, plan)},
	{"status", ENVDBI_FT_ENUM, "lifecycle state", env_statuses, true, "provisioning", NULL, 0,
	 F(envdb_environment, status)},
	{"created_by", ENVDBI_FT_TEXT, "user who created the environment", NULL, false, NULL, NULL,
	 ENVDBI_FF_IMMUTABLE, F(envdb_environment, created_by)},
	{"created_at", ENVDBI_FT_TIME, "creation time (epoch seconds)", NULL, true, NULL, NULL,
	 ENVDBI_FF_IMMUTABLE, F(envdb_environment, created_at)},
	{"updated_at", ENVDBI_FT_TIME, "last change (epoch seconds)", NULL, true, NULL, NULL, 0,
	 F(envdb_environment, updated_at)},
	{"metadata", ENVDBI_FT_JSON, "free-form JSON object", NULL, true, "{}", NULL, 0,
	 F(envdb_environment, metadata)},
	{"lease_expires_at", ENVDBI_FT_TIME,
	 "end of the lease of a provisioning or deletion intent; reconcile takes over after it",
	 NULL, false, NULL, NULL, 0, F(envdb_environment, lease_expires_at)},
	{"pending_database_name", ENVDBI_FT_TEXT,
	 "physical database an unfinished intent may have created (for reconcile to drop)", NULL,
	 false, NULL, NULL, 0, F(envdb_environment, pending_database_name)},
	{"pending_driver", ENVDBI_FT_TEXT, "adapter of pending_database_name", NULL, false, NULL,
	 NULL, 0, F(envdb_environment, pending_driver)},
	{"delete_after", ENVDBI_FT_TIME,
	 "archived environment: its physical database is dropped after this time", NULL, false,
	 NULL, NULL, 0, F(envdb_environment, delete_after)},
};

static const envdbi_index_def environment_indexes[] = {
	{"sys_environment_org_slug", {"organization_id", "slug", NULL}, true, NULL,
	 "(organization_id, slug) is unique", "unique_slug"},
	{"sys_environment_one_default", {"organization_id", NULL}, true,
	 "\"is_default\" = 1 AND \"status\" NOT IN ('archived', 'failed')",
	 "at most one default environment per organization", "one_default_per_org"},
};

static const envdbi_field_def database_fields[] = {
	{"id", ENVDBI_FT_UUID, "unique id of the database row (UUID v7)", NULL, true, NULL, NULL,
	 ENVDBI_FF_PRIMARY | ENVDBI_FF_IMMUTABLE, F(envdb_database, id)},
	{"environment_id", ENVDBI_FT_REF, "the environment this database belongs to (exactly one)",
	 NULL, true, NULL, "sys_environment", ENVDBI_FF_IMMUTABLE | ENVDBI_FF_CASCADE,
	 F(envdb_database, environment_id)},
	{"database_name", ENVDBI_FT_TEXT, "physical database name, derived from the environment id",
	 NULL, true, NULL, NULL, ENVDBI_FF_IMMUTABLE, F(envdb_database, database_name)},
	{"database_url", ENVDBI_FT_TEXT, "how clients reach the database (never a secret)", NULL,
	 true, NULL, NULL, 0, F(envdb_database, database_url)},
	{"driver", ENVDBI_FT_TEXT, "adapter plugin that owns the database", NULL, true, NULL, NULL,
	 0, F(envdb_database, driver)},
	{"region", ENVDBI_FT_TEXT, "region the database lives in", NULL, false, NULL, NULL, 0,
	 F(envdb_database, region)},
	{"storage_limit_mb", ENVDBI_FT_INT, "storage limit in MiB (> 0)", NULL, true, NULL, NULL,
	 ENVDBI_FF_POSITIVE, F(envdb_database, storage_limit_mb)},
	{"provisioned_at", ENVDBI_FT_TIME, "when the physical database was created", NULL, true,
	 NULL, NULL, ENVDBI_FF_IMMUTABLE, F(envdb_database, provisioned_at)},
	{"last_accessed_at", ENVDBI_FT_TIME, "last resolve of the database", NULL, false, NULL,
	 NULL, 0, F(envdb_database, last_accessed_at)},
	{"metadata", ENVDBI_FT_JSON, "driver details (Turso DbId, PostgreSQL role names)", NULL,
	 true, "{}", NULL, 0, F(envdb_database, metadata)},
};

static const envdbi_index_def database_indexes[] = {
	{"sys_environment_database_env", {"environment_id", NULL}, true, NULL,
	 "exactly one physical database per environment", "one_database_per_environment"},
	{"sys_environment_database_name", {"database_name", NULL}, true, NULL,
	 "physical database names are unique", "unique_database_name"},
};

static const envdbi_field_def credential_fields[] = {
	{"id", ENVDBI_FT_UUID, "unique id of the credential (UUID v7); part of the AAD", NULL, true,
	 NULL, NULL, ENVDBI_FF_PRIMARY | ENVDBI_FF_IMMUTABLE, F(envdb_credential, id)},
	{"environment_database_id", ENVDBI_FT_REF, "the database the credential opens; part of the AAD",
	 NULL, true, NULL, "sys_environment_database", ENVDBI_FF_IMMUTABLE | ENVDBI_FF_CASCADE,
	 F(envdb_credential, environment_database_id)},
	{"secret_ciphertext", ENVDBI_FT_CIPHERTEXT,
	 "the secret sealed by the encryptor, bound to id, environment_database_id and (see "
	 "aad_version) the database's address",
	 NULL, true,
	 NULL, NULL, 0, F(envdb_credential, secret_ciphertext)},
	{"encryption_key_id", ENVDBI_FT_TEXT, "id of the key that sealed the secret", NULL, true,
	 NULL, NULL, 0, F(envdb_credential, key_id)},
	{"handle", ENVDBI_FT_TEXT, "adapter's non-secret id of the credential (role name, token id)",
	 NULL, false, NULL, NULL, 0, F(envdb_credential, handle)},
	{"authorization", ENVDBI_FT_ENUM, "what the credential may do", authorizations, true, NULL,
	 NULL, ENVDBI_FF_IMMUTABLE, F(envdb_credential, authorization)},
	{"status", ENVDBI_FT_ENUM,
	 "active (handed out), rotating (still valid during the overlap), revoked", cred_statuses,
	 true, "active", NULL, 0, F(envdb_credential, status)},
	{"created_at", ENVDBI_FT_TIME, "when the credential was minted", NULL, true, NULL, NULL,
	 ENVDBI_FF_IMMUTABLE, F(envdb_credential, created_at)},
	{"expires_at", ENVDBI_FT_TIME, "when the credential stops being valid", NULL, false, NULL,
	 NULL, 0, F(envdb_credential, expires_at)},
	{"revoked_at", ENVDBI_FT_TIME, "when the credential was revoked", NULL, false, NULL, NULL, 0,
	 F(envdb_credential, revoked_at)},
	/* Added by store migration 2; rows from before it are version 1. */
	{"aad_version", ENVDBI_FT_INT,
	 "associated data the ciphertext is bound to: 1 ids only (upgrade with envdb key "
	 "rewrap), 2 ids and the database's driver, name and url",
	 NULL, true, "1", NULL, ENVDBI_FF_POSITIVE, F(envdb_credential, aad_version)},
};

static const envdbi_index_def credential_indexes[] = {
	{"sys_database_credential_one_active", {"environment_database_id", "authorization", NULL},
	 true, "\"status\" = 'active'",
	 "at most one active credential per database and authorization", "one_active_credential"},
	{"sys_database_credential_db", {"environment_database_id", NULL}, false, NULL,
	 "credentials of a database", NULL},
};

static const envdbi_field_def member_fields[] = {
	{"id", ENVDBI_FT_UUID, "unique id of the membership (UUID v7)", NULL, true, NULL, NULL,
	 ENVDBI_FF_PRIMARY | ENVDBI_FF_IMMUTABLE, F(envdb_member, id)},
	{"environment_id", ENVDBI_FT_REF, "the environment", NULL, true, NULL, "sys_environment",
	 ENVDBI_FF_IMMUTABLE | ENVDBI_FF_CASCADE, F(envdb_member, environment_id)},
	{"user_id", ENVDBI_FT_TEXT, "the member", NULL, true, NULL, NULL, ENVDBI_FF_IMMUTABLE,
	 F(envdb_member, user_id)},
	{"role", ENVDBI_FT_ENUM, "what the member may do; reader and guest never get full access",
	 roles, true, NULL, NULL, 0, F(envdb_member, role)},
	{"invited_by", ENVDBI_FT_TEXT, "user who added the member", NULL, false, NULL, NULL, 0,
	 F(envdb_member, invited_by)},
	{"created_at", ENVDBI_FT_TIME, "when the member was added", NULL, true, NULL, NULL,
	 ENVDBI_FF_IMMUTABLE, F(envdb_member, created_at)},
	{"updated_at", ENVDBI_FT_TIME, "last role change", NULL, true, NULL, NULL, 0,
	 F(envdb_member, updated_at)},
};

static const envdbi_index_def member_indexes[] = {
	{"sys_environment_member_env_user", {"environment_id", "user_id", NULL}, true, NULL,
	 "a user is a member of an environment at most once", "unique_member"},
};

static const envdbi_field_def tenant_db_fields[] = {
	{"id", ENVDBI_FT_UUID, "unique id of the legacy row", NULL, true, NULL, NULL,
	 ENVDBI_FF_PRIMARY | ENVDBI_FF_IMMUTABLE, F(envdbi_tenant_db_row, id)},
	{"organization_id", ENVDBI_FT_TEXT, "organization (v4 tenant) of the database", NULL, true,
	 NULL, NULL, ENVDBI_FF_IMMUTABLE, F(envdbi_tenant_db_row, organization_id)},
	{"database_name", ENVDBI_FT_TEXT, "physical database name", NULL, true, NULL, NULL,
	 ENVDBI_FF_IMMUTABLE, F(envdbi_tenant_db_row, database_name)},
	{"database_url", ENVDBI_FT_TEXT, "how clients reach the database", NULL, true, NULL, NULL,
	 0, F(envdbi_tenant_db_row, database_url)},
	{"auth_token", ENVDBI_FT_TEXT, "access token encrypted with the legacy key", NULL, false,
	 NULL, NULL, 0, F(envdbi_tenant_db_row, auth_token)},
	{"status", ENVDBI_FT_ENUM, "legacy state; archived once migrated", legacy_statuses, true,
	 "active", NULL, 0, F(envdbi_tenant_db_row, status)},
	{"region", ENVDBI_FT_TEXT, "region of the database", NULL, false, NULL, NULL, 0,
	 F(envdbi_tenant_db_row, region)},
	{"plan", ENVDBI_FT_ENUM, "billing plan", plans, true, "free", NULL, 0,
	 F(envdbi_tenant_db_row, plan)},
	{"storage_limit_mb", ENVDBI_FT_INT, "storage limit in MiB (> 0)", NULL, true, "1024", NULL,
	 ENVDBI_FF_POSITIVE, F(envdbi_tenant_db_row, storage_limit_mb)},
	{"driver", ENVDBI_FT_TEXT, "adapter plugin of the database (NULL: manifest default)", NULL,
	 false, NULL, NULL, 0, F(envdbi_tenant_db_row, driver)},
	{"migrated_environment_id", ENVDBI_FT_UUID, "environment created from this row by the v5 migration",
	 NULL, false, NULL, NULL, 0, F(envdbi_tenant_db_row, migrated_environment_id)},
	{"created_at", ENVDBI_FT_TIME, "creation time", NULL, true, NULL, NULL, ENVDBI_FF_IMMUTABLE,
	 F(envdbi_tenant_db_row, created_at)},
	{"updated_at", ENVDBI_FT_TIME, "last change", NULL, true, NULL, NULL, 0,
	 F(envdbi_tenant_db_row, updated_at)},
};

static const envdbi_index_def tenant_db_indexes[] = {
	{"sys_tenant_database_name", {"database_name", NULL}, true, NULL,
	 "legacy physical database names are unique", "unique_legacy_database_name"},
	{"sys_tenant_database_org", {"organization_id", NULL}, false, NULL,
	 "legacy databases of an organization", NULL},
	/* migration support: the v4 -> v5 migration and the shim's notice
	 * look only at rows not migrated yet; a re-run touches no other row */
	{"sys_tenant_database_pending", {"organization_id", NULL}, false,
	 "migrated_environment_id IS NULL", "legacy databases not yet migrated to v5", NULL},
};

static const envdbi_field_def package_fields[] = {
	{"id", ENVDBI_FT_UUID, "unique id of the installation", NULL, true, NULL, NULL,
	 ENVDBI_FF_PRIMARY | ENVDBI_FF_IMMUTABLE, F(envdbi_package_row, id)},
	{"tenant_id", ENVDBI_FT_TEXT,
	 "legacy tenant database id, or the environment id after migration", NULL, true, NULL,
	 NULL, 0, F(envdbi_package_row, tenant_id)},
	{"package_id", ENVDBI_FT_TEXT, "installed package", NULL, true, NULL, NULL,
	 ENVDBI_FF_IMMUTABLE, F(envdbi_package_row, package_id)},
	{"version", ENVDBI_FT_TEXT, "installed version", NULL, true, NULL, NULL, 0,
	 F(envdbi_package_row, version)},
	{"status", ENVDBI_FT_ENUM, "installation state", package_statuses, true, "installed", NULL,
	 0, F(envdbi_package_row, status)},
	{"created_at", ENVDBI_FT_TIME, "installation time", NULL, true, NULL, NULL,
	 ENVDBI_FF_IMMUTABLE, F(envdbi_package_row, created_at)},
	{"updated_at", ENVDBI_FT_TIME, "last change", NULL, true, NULL, NULL, 0,
	 F(envdbi_package_row, updated_at)},
};

static const envdbi_index_def package_indexes[] = {
	{"sys_package_installation_tenant", {"tenant_id", NULL}, false, NULL,
	 "installations of a tenant or environment", NULL},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

const envdbi_object_def envdbi_schema_objects[] = {
	{"sys_environment", "environment", "one environment (prod, dev, ...) of an organization",
	 environment_fields, N(environment_fields), environment_indexes, N(environment_indexes),
	 sizeof(envdb_environment), false},
	{"sys_environment_database", "database", "the one physical database of an environment",
	 database_fields, N(database_fields), database_indexes, N(database_indexes),
	 sizeof(envdb_database), false},
	{"sys_database_credential", "credential", "an encrypted credential of a database",
	 credential_fields, N(credential_fields), credential_indexes, N(credential_indexes),
	 sizeof(envdb_credential), false},
	{"sys_environment_member", "member", "a user's role in an environment", member_fields,
	 N(member_fields), member_indexes, N(member_indexes), sizeof(envdb_member), false},
	{"sys_tenant_database", "legacy tenant database",
	 "deprecated v4 per-organization database registry (removed in v5)", tenant_db_fields,
	 N(tenant_db_fields), tenant_db_indexes, N(tenant_db_indexes), sizeof(envdbi_tenant_db_row),
	 true},
	{"sys_package_installation", "package installation",
	 "deprecated v4 per-tenant package registry", package_fields, N(package_fields),
	 package_indexes, N(package_indexes), sizeof(envdbi_package_row), true},
};
const size_t envdbi_schema_n_objects = N(envdbi_schema_objects);

/* ------------------------------------------------------------------------ */
/* Value validators of the field types                                       */
/* ------------------------------------------------------------------------ */

bool envdbi_uuid_valid(const char *s)
{
	/* 1: a lowercase hex digit; '-' only at the four dash positions */
	static const unsigned char hex[256] = {
		['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
		['7'] = 1, ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
		['e'] = 1, ['f'] = 1,
	};
	if (s == NULL)
		return false;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!hex[(unsigned char)s[i]]) {
			return false; /* the terminating NUL of a short id too */
		}
	}
	return s[36] == '\0';
}

bool envdbi_slug_valid(const char *slug)
{
	if (slug == NULL)
		return false;
	size_t n = strlen(slug);
	if (n < 1 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = slug[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && !(i > 0 && c == '-'))
			return false;
	}
	return true;
}

bool envdbi_ciphertext_plausible(const char *ct)
{
	if (ct == NULL)
		return false;
	size_t n = strlen(ct);
	bool sep = false;
	if (n < 24)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)ct[i];
		if (c <= 0x20 || c >= 0x7f)
			return false;
		if (c == ':' || c == '.' || c == '$')
			sep = true;
	}
	return sep;
}

/* ------------------------------------------------------------------------ */
/* Lookup and accessors                                                      */
/* ------------------------------------------------------------------------ */

static const char *const ftype_names[] = {
	[ENVDBI_FT_UUID] = "uuid", [ENVDBI_FT_TEXT] = "text",   [ENVDBI_FT_SLUG] = "slug",
	[ENVDBI_FT_ENUM] = "enum", [ENVDBI_FT_BOOL] = "bool",   [ENVDBI_FT_INT] = "integer",
	[ENVDBI_FT_TIME] = "time", [ENVDBI_FT_JSON] = "json",   [ENVDBI_FT_CIPHERTEXT] = "ciphertext",
	[ENVDBI_FT_REF] = "reference",
};

const char *envdbi_ftype_name(envdbi_ftype t)
{
	if ((int)t <= 0 || t >= ENVDBI_FT__END)
		return NULL;
	return ftype_names[t];
}

bool envdbi_ftype_is_text(envdbi_ftype t)
{
	switch (t) {
	case ENVDBI_FT_BOOL:
	case ENVDBI_FT_INT:
	case ENVDBI_FT_TIME:
		return false;
	default:
		return true;
	}
}

const envdbi_object_def *envdbi_schema_object(const char *name)
{
	for (size_t i = 0; i < envdbi_schema_n_objects; i++)
		if (strcmp(envdbi_schema_objects[i].name, name) == 0)
			return &envdbi_schema_objects[i];
	return NULL;
}

const envdbi_field_def *envdbi_schema_field(const envdbi_object_def *o, const char *name)
{
	for (size_t i = 0; i < o->n_fields; i++)
		if (strcmp(o->fields[i].name, name) == 0)
			return &o->fields[i];
	return NULL;
}

const envdbi_field_def *envdbi_schema_primary(const envdbi_object_def *o)
{
	for (size_t i = 0; i < o->n_fields; i++)
		if (o->fields[i].flags & ENVDBI_FF_PRIMARY)
			return &o->fields[i];
	return NULL;
}

bool envdbi_schema_enum_ok(const envdbi_field_def *f, const char *v)
{
	if (v == NULL || f->enum_values == NULL)
		return false;
	for (const char *const *e = f->enum_values; *e != NULL; e++)
		if (strcmp(*e, v) == 0)
			return true;
	return false;
}

void envdbi_schema_enum_list(envdbi_strbuf *b, const envdbi_field_def *f)
{
	if (f->enum_values == NULL)
		return;
	for (const char *const *e = f->enum_values; *e != NULL; e++)
		envdbi_strbuf_printf(b, "%s%s", e == f->enum_values ? "" : ", ", *e);
}

char **envdbi_field_str(const envdbi_field_def *f, void *record)
{
	assert(envdbi_ftype_is_text(f->type));
	return (char **)(void *)((char *)record + f->offset);
}

const char *envdbi_field_cstr(const envdbi_field_def *f, const void *record)
{
	assert(envdbi_ftype_is_text(f->type));
	return *(char *const *)(const void *)((const char *)record + f->offset);
}

int64_t envdbi_field_int(const envdbi_field_def *f, const void *record)
{
	const char *p = (const char *)record + f->offset;
	if (f->type == ENVDBI_FT_BOOL) {
		int v;
		memcpy(&v, p, sizeof v);
		return v;
	}
	assert(f->type == ENVDBI_FT_INT || f->type == ENVDBI_FT_TIME);
	int64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

void envdbi_field_set_int(const envdbi_field_def *f, void *record, int64_t v)
{
	char *p = (char *)record + f->offset;
	if (f->type == ENVDBI_FT_BOOL) {
		int b = v != 0;
		memcpy(p, &b, sizeof b);
		return;
	}
	assert(f->type == ENVDBI_FT_INT || f->type == ENVDBI_FT_TIME);
	memcpy(p, &v, sizeof v);
}

/* ------------------------------------------------------------------------ */
/* Validation of the table                                                   */
/* ------------------------------------------------------------------------ */

static bool is_identifier(const char *s)
{
	if (s == NULL || *s == '\0' || !(*s >= 'a' && *s <= 'z'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static bool is_integer_text(const char *s)
{
	char *end;
	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	(void)strtoll(s, &end, 10);
	return errno == 0 && *end == '\0';
}

static int validate_field(const envdbi_object_def *objs, size_t n, const envdbi_object_def *o,
			  const envdbi_field_def *f)
{
	const char *on = o->name;
	if (!is_identifier(f->name))
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s: field name '%s' is not a lowercase identifier",
				    on, f->name ? f->name : "(null)");
	if (envdbi_ftype_name(f->type) == NULL)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s.%s: unknown field type %d", on, f->name,
				    (int)f->type);
	if (f->description == NULL || f->description[0] == '\0')
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s.%s: field has no description", on, f->name);
	for (const envdbi_field_def *g = o->fields; g < f; g++)
		if (strcmp(g->name, f->name) == 0)
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "object definition %s.%s: field defined twice", on,
					    f->name);
	if (f->type == ENVDBI_FT_ENUM) {
		if (f->enum_values == NULL || f->enum_values[0] == NULL)
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "object definition %s.%s: enum field without values", on,
					    f->name);
		for (const char *const *e = f->enum_values; *e; e++)
			if (!is_identifier(*e))
				return envdbi_error(ENVDB_ERR_CONFIG, NULL,
						    "object definition %s.%s: enum value '%s' is not a lowercase identifier",
						    on, f->name, *e);
		if (f->default_value != NULL && !envdbi_schema_enum_ok(f, f->default_value))
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "object definition %s.%s: default '%s' is not one of its values",
					    on, f->name, f->default_value);
	} else if (f->enum_values != NULL) {
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s.%s: enum values on a %s field", on, f->name,
				    envdbi_ftype_name(f->type));
	}
	if (f->type == ENVDBI_FT_BOOL && f->default_value != NULL &&
	    strcmp(f->default_value, "0") != 0 && strcmp(f->default_value, "1") != 0)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s.%s: boolean default '%s' is not 0 or 1", on,
				    f->name, f->default_value);
	if ((f->type == ENVDBI_FT_INT || f->type == ENVDBI_FT_TIME) && f->default_value != NULL &&
	    !is_integer_text(f->default_value))
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s.%s: integer default '%s' is not an integer",
				    on, f->name, f->default_value);
	if ((f->flags & ENVDBI_FF_POSITIVE) && f->type != ENVDBI_FT_INT)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s.%s: 'positive' on a non-integer field", on,
				    f->name);
	if (f->type == ENVDBI_FT_REF) {
		bool found = false;
		for (size_t i = 0; f->ref != NULL && i < n; i++)
			if (strcmp(objs[i].name, f->ref) == 0 && &objs[i] != o)
				found = true;
		if (!found)
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "object definition %s.%s: references unknown object '%s'",
					    on, f->name, f->ref ? f->ref : "(null)");
	} else if (f->ref != NULL || (f->flags & ENVDBI_FF_CASCADE)) {
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s.%s: reference on a %s field", on, f->name,
				    envdbi_ftype_name(f->type));
	}
	if ((f->flags & ENVDBI_FF_PRIMARY) && (f->type != ENVDBI_FT_UUID || !f->required))
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s.%s: the primary key must be a required uuid",
				    on, f->name);
	size_t width = envdbi_ftype_is_text(f->type)      ? sizeof(char *)
		       : f->type == ENVDBI_FT_BOOL ? sizeof(int)
						   : sizeof(int64_t);
	if (o->record_size == 0 || f->offset + width > o->record_size)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s.%s: offset outside the record", on, f->name);
	return 0;
}

static int validate_index(const envdbi_object_def *o, const envdbi_index_def *ix)
{
	if (!is_identifier(ix->name) || strncmp(ix->name, o->name, strlen(o->name)) != 0)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s: index name '%s' must start with the object name",
				    o->name, ix->name ? ix->name : "(null)");
	if (ix->description == NULL || ix->description[0] == '\0')
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s: index %s has no description", o->name,
				    ix->name);
	if (ix->columns[0] == NULL)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s: index %s has no column", o->name, ix->name);
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
		if (envdbi_schema_field(o, ix->columns[c]) == NULL)
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "object definition %s: index %s names unknown field '%s'",
					    o->name, ix->name, ix->columns[c]);
	if (ix->unique && (ix->invariant == NULL || !is_identifier(ix->invariant)))
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "object definition %s: unique index %s has no invariant name",
				    o->name, ix->name);
	return 0;
}

int envdbi_schema_validate(const envdbi_object_def *objs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const envdbi_object_def *o = &objs[i];
		if (o->name == NULL || strncmp(o->name, "sys_", 4) != 0 || !is_identifier(o->name))
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "object definition '%s': name must start with sys_ and be a lowercase identifier",
					    o->name ? o->name : "(null)");
		if (o->description == NULL || o->description[0] == '\0' || o->label == NULL ||
		    o->label[0] == '\0')
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "object definition %s: object has no description or label",
					    o->name);
		for (size_t j = 0; j < i; j++)
			if (strcmp(objs[j].name, o->name) == 0)
				return envdbi_error(ENVDB_ERR_CONFIG, NULL,
						    "object definition %s: object defined twice",
						    o->name);
		if (o->n_fields == 0 || o->fields == NULL)
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "object definition %s: object has no field", o->name);
		size_t primaries = 0;
		for (size_t k = 0; k < o->n_fields; k++) {
			int rc = validate_field(objs, n, o, &o->fields[k]);
			if (rc != 0)
				return rc;
			if (o->fields[k].flags & ENVDBI_FF_PRIMARY)
				primaries++;
		}
		if (primaries != 1)
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "object definition %s: needs exactly one primary key, has %zu",
					    o->name, primaries);
		for (size_t k = 0; k < o->n_indexes; k++) {
			int rc = validate_index(o, &o->indexes[k]);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Records                                                                   */
/* ------------------------------------------------------------------------ */

void envdbi_record_free(const envdbi_object_def *o, void *record)
{
	if (record == NULL)
		return;
	for (size_t i = 0; i < o->n_fields; i++)
		if (envdbi_ftype_is_text(o->fields[i].type))
			free(*envdbi_field_str(&o->fields[i], record));
	free(record);
}

void *envdbi_record_dup(const envdbi_object_def *o, const void *record)
{
	if (record == NULL)
		return NULL;
	void *copy = calloc(1, o->record_size);
	if (copy == NULL)
		return NULL;
	memcpy(copy, record, o->record_size);
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (!envdbi_ftype_is_text(f->type))
			continue;
		*envdbi_field_str(f, copy) = NULL;
	}
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (!envdbi_ftype_is_text(f->type))
			continue;
		const char *v = envdbi_field_cstr(f, record);
		if (v != NULL && (*envdbi_field_str(f, copy) = strdup(v)) == NULL) {
			envdbi_record_free(o, copy);
			return NULL;
		}
	}
	return copy;
}

/*
 * The common metadata texts decided without jansson: only a yes, for a text
 * whose every part jansson reads the same way (objects and arrays at most
 * FAST_JSON_DEPTH deep, at most FAST_JSON_KEYS distinct keys per object,
 * strings of printable ASCII without escapes, true, false, null).  Anything
 * else (a number, an escape, a byte >= 0x80, a duplicate key, an error) is
 * left to json_loads, which decides.
 */
#define FAST_JSON_DEPTH 8
#define FAST_JSON_KEYS 16

static const char *fast_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/* p at '"': past the closing quote, or NULL. */
static const char *fast_string(const char *p, size_t *len)
{
	const char *q = ++p;

	while (*q >= 0x20 && *q <= 0x7e && *q != '"' && *q != '\\')
		q++;
	if (*q != '"')
		return NULL;
	*len = (size_t)(q - p);
	return q + 1;
}

static const char *fast_value(const char *p, int depth);

static const char *fast_object(const char *p, int depth)
{
	const char *key[FAST_JSON_KEYS];
	size_t klen[FAST_JSON_KEYS], n = 0, len;

	if (depth > FAST_JSON_DEPTH)
		return NULL;
	p = fast_ws(p + 1);
	if (*p == '}')
		return p + 1;
	for (;;) {
		if (*p != '"' || n == FAST_JSON_KEYS)
			return NULL;
		key[n] = p + 1;
		if ((p = fast_string(p, &len)) == NULL)
			return NULL;
		for (size_t i = 0; i < n; i++)
			if (klen[i] == len && memcmp(key[i], key[n], len) == 0)
				return NULL; /* a duplicate: jansson says why */
		klen[n++] = len;
		p = fast_ws(p);
		if (*p != ':')
			return NULL;
		if ((p = fast_value(fast_ws(p + 1), depth)) == NULL)
			return NULL;
		p = fast_ws(p);
		if (*p == '}')
			return p + 1;
		if (*p != ',')
			return NULL;
		p = fast_ws(p + 1);
	}
}

static const char *fast_array(const char *p, int depth)
{
	if (depth > FAST_JSON_DEPTH)
		return NULL;
	p = fast_ws(p + 1);
	if (*p == ']')
		return p + 1;
	for (;;) {
		if ((p = fast_value(p, depth)) == NULL)
			return NULL;
		p = fast_ws(p);
		if (*p == ']')
			return p + 1;
		if (*p != ',')
			return NULL;
		p = fast_ws(p + 1);
	}
}

static const char *fast_value(const char *p, int depth)
{
	size_t len;

	switch (*p) {
	case '{':
		return fast_object(p, depth + 1);
	case '[':
		return fast_array(p, depth + 1);
	case '"':
		return fast_string(p, &len);
	case 't':
		return strncmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		return strncmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case 'n':
		return strncmp(p, "null", 4) == 0 ? p + 4 : NULL;
	default:
		return NULL;
	}
}

/* A JSON object for sure (see above); false: ask jansson. */
bool envdbi_json_object_fast(const char *s)
{
	const char *p = fast_ws(s);

	if (*p != '{' || (p = fast_object(p, 1)) == NULL)
		return false;
	return *fast_ws(p) == '\0';
}

static bool json_object_text(const char *s)
{
	json_error_t err;
	json_t *j;
	bool ok;

	if (envdbi_json_object_fast(s))
		return true;
	j = json_loads(s, JSON_REJECT_DUPLICATES, &err);
	ok = j != NULL && json_is_object(j);
	json_decref(j);
	return ok;
}

int envdbi_schema_check_record(const envdbi_object_def *o, const void *record, const char *label)
{
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (!envdbi_ftype_is_text(f->type)) {
			int64_t v = envdbi_field_int(f, record);
			if (f->type == ENVDBI_FT_TIME && f->required && v <= 0)
				return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: %s: is required",
						    label, f->name);
			if ((f->flags & ENVDBI_FF_POSITIVE) && v <= 0)
				return envdbi_error(ENVDB_ERR_INVALID, NULL,
						    "%s: %s: must be greater than 0 (got %lld)", label,
						    f->name, (long long)v);
			if (f->type == ENVDBI_FT_TIME && v < 0)
				return envdbi_error(ENVDB_ERR_INVALID, NULL,
						    "%s: %s: negative time", label, f->name);
			continue;
		}
		const char *v = envdbi_field_cstr(f, record);
		if (v == NULL) {
			if (f->required)
				return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: %s: is required",
						    label, f->name);
			continue;
		}
		switch (f->type) {
		case ENVDBI_FT_UUID:
		case ENVDBI_FT_REF:
			if (!envdbi_uuid_valid(v))
				return envdbi_error(ENVDB_ERR_INVALID, NULL,
						    "%s: %s: '%s' is not a UUID", label, f->name, v);
			break;
		case ENVDBI_FT_SLUG:
			if (!envdbi_slug_valid(v))
				return envdbi_error(ENVDB_ERR_INVALID, NULL,
						    "%s: %s: '%s' does not match ^[a-z0-9][a-z0-9-]{0,62}$",
						    label, f->name, v);
			break;
		case ENVDBI_FT_ENUM:
			if (!envdbi_schema_enum_ok(f, v)) {
				envdbi_strbuf b = ENVDBI_STRBUF_INIT;
				envdbi_schema_enum_list(&b, f);
				int rc = envdbi_error(ENVDB_ERR_INVALID, NULL,
						      "%s: %s: '%s' is not one of %s", label,
						      f->name, v, b.data ? b.data : "");
				envdbi_strbuf_free(&b);
				return rc;
			}
			break;
		case ENVDBI_FT_JSON:
			if (!json_object_text(v))
				return envdbi_error(ENVDB_ERR_INVALID, NULL,
						    "%s: %s: not a JSON object", label, f->name);
			break;
		case ENVDBI_FT_CIPHERTEXT:
			/* never echo the value: it might be a plaintext secret */
			if (!envdbi_ciphertext_plausible(v))
				return envdbi_error(ENVDB_ERR_INVALID, NULL,
						    "%s: %s: does not look like encryptor output (plaintext refused)",
						    label, f->name);
			break;
		default:
			if (f->required && v[0] == '\0' && f->default_value == NULL)
				return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: %s: is empty",
						    label, f->name);
			break;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* strbuf                                                                    */
/* ------------------------------------------------------------------------ */

static bool strbuf_grow(envdbi_strbuf *b, size_t extra)
{
	if (b->failed)
		return false;
	if (b->len + extra + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void envdbi_strbuf_puts(envdbi_strbuf *b, const char *s)
{
	size_t n = strlen(s);
	if (!strbuf_grow(b, n))
		return;
	memcpy(b->data + b->len, s, n + 1);
	b->len += n;
}

void envdbi_strbuf_putc(envdbi_strbuf *b, char c)
{
	if (!strbuf_grow(b, 1))
		return;
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void envdbi_strbuf_printf(envdbi_strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if (!strbuf_grow(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void envdbi_strbuf_free(envdbi_strbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}

/* ------------------------------------------------------------------------ */
/* Renderings                                                                */
/* ------------------------------------------------------------------------ */

static json_t *field_json(const envdbi_field_def *f)
{
	json_t *j = json_object();
	json_object_set_new(j, "name", json_string(f->name));
	json_object_set_new(j, "type", json_string(envdbi_ftype_name(f->type)));
	json_object_set_new(j, "description", json_string(f->description));
	json_object_set_new(j, "required", json_boolean(f->required));
	json_object_set_new(j, "default",
			    f->default_value ? json_string(f->default_value) : json_null());
	if (f->enum_values != NULL) {
		json_t *vals = json_array();
		for (const char *const *e = f->enum_values; *e; e++)
			json_array_append_new(vals, json_string(*e));
		json_object_set_new(j, "values", vals);
	}
	if (f->ref != NULL)
		json_object_set_new(j, "references", json_string(f->ref));
	json_object_set_new(j, "primary_key", json_boolean(f->flags & ENVDBI_FF_PRIMARY));
	json_object_set_new(j, "immutable", json_boolean(f->flags & ENVDBI_FF_IMMUTABLE));
	if (f->flags & ENVDBI_FF_POSITIVE)
		json_object_set_new(j, "positive", json_true());
	return j;
}

static json_t *index_json(const envdbi_index_def *ix)
{
	json_t *j = json_object();
	json_t *cols = json_array();
	json_object_set_new(j, "name", json_string(ix->name));
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
		json_array_append_new(cols, json_string(ix->columns[c]));
	json_object_set_new(j, "columns", cols);
	json_object_set_new(j, "unique", json_boolean(ix->unique));
	json_object_set_new(j, "where", ix->where ? json_string(ix->where) : json_null());
	json_object_set_new(j, "description", json_string(ix->description));
	if (ix->invariant != NULL)
		json_object_set_new(j, "invariant", json_string(ix->invariant));
	return j;
}

int envdbi_schema_render_json(char **out, bool include_legacy)
{
	json_t *root = json_object();
	json_t *objs = json_array();
	*out = NULL;
	json_object_set_new(root, "version", json_integer(ENVDBI_STORE_VERSION));
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		if (o->legacy && !include_legacy)
			continue;
		json_t *jo = json_object();
		json_t *fields = json_array();
		json_t *indexes = json_array();
		json_object_set_new(jo, "name", json_string(o->name));
		json_object_set_new(jo, "description", json_string(o->description));
		json_object_set_new(jo, "legacy", json_boolean(o->legacy));
		for (size_t k = 0; k < o->n_fields; k++)
			json_array_append_new(fields, field_json(&o->fields[k]));
		for (size_t k = 0; k < o->n_indexes; k++)
			json_array_append_new(indexes, index_json(&o->indexes[k]));
		json_object_set_new(jo, "fields", fields);
		json_object_set_new(jo, "indexes", indexes);
		json_array_append_new(objs, jo);
	}
	json_object_set_new(root, "objects", objs);
	*out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (*out == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "schema: cannot render JSON");
	return 0;
}

int envdbi_schema_render_text(char **out, bool include_legacy)
{
	envdbi_strbuf b = ENVDBI_STRBUF_INIT;
	*out = NULL;
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		if (o->legacy && !include_legacy)
			continue;
		envdbi_strbuf_printf(&b, "%s%s%s — %s\n", i ? "\n" : "", o->name,
				     o->legacy ? " (legacy)" : "", o->description);
		envdbi_strbuf_printf(&b, "  %-24s %-10s %-3s %-13s %s\n", "FIELD", "TYPE", "REQ",
				     "DEFAULT", "DESCRIPTION");
		for (size_t k = 0; k < o->n_fields; k++) {
			const envdbi_field_def *f = &o->fields[k];
			envdbi_strbuf_printf(&b, "  %-24s %-10s %-3s %-13s %s", f->name,
					     envdbi_ftype_name(f->type), f->required ? "yes" : "no",
					     f->default_value ? f->default_value : "-",
					     f->description);
			if (f->enum_values != NULL) {
				envdbi_strbuf_puts(&b, " [");
				for (const char *const *e = f->enum_values; *e; e++)
					envdbi_strbuf_printf(&b, "%s%s",
							     e == f->enum_values ? "" : ", ", *e);
				envdbi_strbuf_putc(&b, ']');
			}
			if (f->ref != NULL)
				envdbi_strbuf_printf(&b, " -> %s.id", f->ref);
			if ((f->flags & ENVDBI_FF_IMMUTABLE) && !(f->flags & ENVDBI_FF_PRIMARY))
				envdbi_strbuf_puts(&b, " (immutable)");
			if (f->flags & ENVDBI_FF_PRIMARY)
				envdbi_strbuf_puts(&b, " (primary key)");
			envdbi_strbuf_putc(&b, '\n');
		}
		for (size_t k = 0; k < o->n_indexes; k++) {
			const envdbi_index_def *ix = &o->indexes[k];
			envdbi_strbuf_printf(&b, "  %s %s (", ix->unique ? "UNIQUE" : "INDEX ",
					     ix->name);
			for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
				envdbi_strbuf_printf(&b, "%s%s", c ? ", " : "", ix->columns[c]);
			envdbi_strbuf_putc(&b, ')');
			if (ix->where != NULL)
				envdbi_strbuf_printf(&b, " WHERE %s", ix->where);
			envdbi_strbuf_printf(&b, " — %s\n", ix->description);
		}
	}
	if (b.failed || b.data == NULL) {
		envdbi_strbuf_free(&b);
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "schema: out of memory");
	}
	*out = b.data;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */
/* ------------------------------------------------------------------------ */

static bool ctx_legacy(const envdb_ctx *ctx)
{
	if (ctx == NULL || ctx->manifest == NULL)
		return true;
	return ctx->manifest->legacy_shim;
}

int envdb_schema_json(char **out, const envdb_ctx *ctx)
{
	if (out == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "schema: NULL output");
	return envdbi_schema_render_json(out, ctx_legacy(ctx));
}

int envdb_schema_text(char **out, const envdb_ctx *ctx)
{
	if (out == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "schema: NULL output");
	return envdbi_schema_render_text(out, ctx_legacy(ctx));
}

void envdb_free(void *p)
{
	free(p);
}
