/*
 * core/store_sql.c — the SQL text the SQL store backends share
 * (store_backend.h): the DDL generated from the object definitions, the
 * SELECT/INSERT/UPDATE builders over them, the fixed statement texts by id
 * (written with ?N placeholders in SQL that SQLite and PostgreSQL both
 * read), and SQLite's dialect.  A backend of another SQL dialect supplies
 * its own envdbi_sql_dialect (type names, CHECK expressions, the
 * immutability trigger, placeholder style) and rewrites the fixed texts
 * with envdbi_sql_params().
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"

/* ------------------------------------------------------------------------ */
/* Small pieces                                                              */
/* ------------------------------------------------------------------------ */

void envdbi_sql_quote(envdbi_strbuf *b, const char *s)
{
	envdbi_strbuf_putc(b, '\'');
	for (; *s; s++) {
		if (*s == '\'')
			envdbi_strbuf_putc(b, '\'');
		envdbi_strbuf_putc(b, *s);
	}
	envdbi_strbuf_putc(b, '\'');
}

static void param(envdbi_strbuf *b, const envdbi_sql_dialect *d, size_t n)
{
	envdbi_strbuf_printf(b, "%c%zu", d->param, n);
}

void envdbi_sql_columns(envdbi_strbuf *b, const envdbi_object_def *o)
{
	for (size_t i = 0; i < o->n_fields; i++)
		envdbi_strbuf_printf(b, "%s\"%s\"", i ? ", " : "", o->fields[i].name);
}

void envdbi_sql_params(envdbi_strbuf *out, const char *sql, char p)
{
	char quote = 0;

	for (const char *s = sql; *s; s++) {
		if (quote) {
			if (*s == quote)
				quote = 0;
		} else if (*s == '\'' || *s == '"') {
			quote = *s;
		} else if (*s == '?' && s[1] >= '0' && s[1] <= '9') {
			envdbi_strbuf_putc(out, p);
			continue;
		}
		envdbi_strbuf_putc(out, *s);
	}
}

/* ------------------------------------------------------------------------ */
/* Queries by id                                                             */
/* ------------------------------------------------------------------------ */

typedef struct qbuild {
	envdbi_strbuf *b;
	const envdbi_sql_dialect *d;
	envdbi_bind *used;
	size_t n;
	bool where;
} qbuild;

/* " WHERE "/" AND " + pre + the next parameter (bound to v) + post. */
static void cond(qbuild *q, const char *pre, envdbi_bind v, const char *post)
{
	envdbi_strbuf_puts(q->b, q->where ? " AND " : "WHERE ");
	q->where = true;
	envdbi_strbuf_puts(q->b, pre);
	q->used[q->n++] = v;
	param(q->b, q->d, q->n);
	envdbi_strbuf_puts(q->b, post);
}

/* Likewise without a parameter. */
static void cond_text(qbuild *q, const char *text)
{
	envdbi_strbuf_puts(q->b, q->where ? " AND " : "WHERE ");
	q->where = true;
	envdbi_strbuf_puts(q->b, text);
}

/* A filter of a *_LIST query: only when it filters. */
static void filter(qbuild *q, const char *pre, envdbi_bind v, const char *post)
{
	if (v.is_int ? v.i > 0 : v.s != NULL)
		cond(q, pre, v, post);
}

static void order(qbuild *q, const char *cols)
{
	envdbi_strbuf_printf(q->b, "%sORDER BY %s", q->where ? " " : "", cols);
}

/* The number of binds each query takes. */
static const size_t query_binds[ENVDBI_Q__N] = {
	[ENVDBI_Q_BY_ID] = 1,       [ENVDBI_Q_ALL] = 0,          [ENVDBI_Q_ENV_BY_SLUG] = 2,
	[ENVDBI_Q_ENV_DEFAULT] = 1, [ENVDBI_Q_ENV_LIST] = 4,     [ENVDBI_Q_DB_BY_ENV] = 1,
	[ENVDBI_Q_DB_BY_NAME] = 1,  [ENVDBI_Q_DB_LIST] = 0,      [ENVDBI_Q_CRED_ACTIVE] = 2,
	[ENVDBI_Q_CRED_LIST] = 4,   [ENVDBI_Q_MEMBER_GET] = 2,   [ENVDBI_Q_MEMBER_LIST] = 1,
	[ENVDBI_Q_TENANT_LIST] = 1, [ENVDBI_Q_TENANT_PENDING] = 2, [ENVDBI_Q_PACKAGE_LIST] = 1,
};

int envdbi_sql_query(envdbi_strbuf *b, const envdbi_sql_dialect *d, const envdbi_object_def *o,
		     envdbi_query qid, const envdbi_bind *v, size_t nv, envdbi_bind *used,
		     size_t *nused)
{
	qbuild q = {b, d, used, 0, false};

	*nused = 0;
	if ((unsigned)qid >= ENVDBI_Q__N || nv != query_binds[qid])
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "%s: query %d: %zu values given",
				    o->name, (int)qid, nv);
	envdbi_strbuf_puts(b, "SELECT ");
	envdbi_sql_columns(b, o);
	envdbi_strbuf_printf(b, " FROM \"%s\" ", o->name);
	switch (qid) {
	case ENVDBI_Q_BY_ID:
		cond(&q, "\"id\" = ", v[0], "");
		break;
	case ENVDBI_Q_ALL:
		order(&q, "\"id\"");
		break;
	case ENVDBI_Q_ENV_BY_SLUG:
		cond(&q, "\"organization_id\" = ", v[0], "");
		cond(&q, "\"slug\" = ", v[1], "");
		break;
	case ENVDBI_Q_ENV_DEFAULT:
		cond(&q, "\"organization_id\" = ", v[0], "");
		cond_text(&q, "\"is_default\" = 1 AND \"status\" NOT IN ('archived', 'failed')");
		break;
	case ENVDBI_Q_ENV_LIST:
		filter(&q, "\"organization_id\" = ", v[0], "");
		filter(&q, "\"status\" = ", v[1], "");
		filter(&q, "\"lease_expires_at\" > 0 AND \"lease_expires_at\" <= ", v[2], "");
		filter(&q, "\"delete_after\" > 0 AND \"delete_after\" <= ", v[3], "");
		order(&q, "\"organization_id\", \"slug\"");
		break;
	case ENVDBI_Q_DB_BY_ENV:
		cond(&q, "\"environment_id\" = ", v[0], "");
		break;
	case ENVDBI_Q_DB_BY_NAME:
		cond(&q, "\"database_name\" = ", v[0], "");
		break;
	case ENVDBI_Q_DB_LIST:
		order(&q, "\"database_name\"");
		break;
	case ENVDBI_Q_CRED_ACTIVE:
		cond(&q, "\"environment_database_id\" = ", v[0], "");
		cond(&q, "\"authorization\" = ", v[1], "");
		cond_text(&q, "\"status\" = 'active'");
		break;
	case ENVDBI_Q_CRED_LIST:
		filter(&q, "\"environment_database_id\" = ", v[0], "");
		filter(&q, "\"authorization\" = ", v[1], "");
		filter(&q, "\"status\" = ", v[2], "");
		filter(&q, "\"expires_at\" > 0 AND \"expires_at\" <= ", v[3], "");
		order(&q, "\"environment_database_id\", \"created_at\", \"id\"");
		break;
	case ENVDBI_Q_MEMBER_GET:
		cond(&q, "\"environment_id\" = ", v[0], "");
		cond(&q, "\"user_id\" = ", v[1], "");
		break;
	case ENVDBI_Q_MEMBER_LIST:
		filter(&q, "\"environment_id\" = ", v[0], "");
		order(&q, "\"environment_id\", \"user_id\"");
		break;
	case ENVDBI_Q_TENANT_LIST:
		filter(&q, "\"organization_id\" = ", v[0], "");
		order(&q, "\"organization_id\", \"database_name\"");
		break;
	case ENVDBI_Q_TENANT_PENDING:
		/* The organizations first (index on organization_id), then their rows. */
		cond_text(&q, "\"migrated_environment_id\" IS NULL");
		cond(&q,
		     "\"organization_id\" IN (SELECT DISTINCT \"organization_id\" FROM "
		     "\"sys_tenant_database\" WHERE \"organization_id\" > ",
		     v[0], "");
		envdbi_strbuf_puts(b, " AND \"migrated_environment_id\" IS NULL "
				      "ORDER BY \"organization_id\" LIMIT ");
		used[q.n++] = v[1];
		param(b, d, q.n);
		envdbi_strbuf_puts(b, ")");
		order(&q, "\"organization_id\", \"created_at\", \"id\"");
		break;
	case ENVDBI_Q_PACKAGE_LIST:
		filter(&q, "\"tenant_id\" = ", v[0], "");
		order(&q, "\"tenant_id\", \"package_id\"");
		break;
	case ENVDBI_Q__N:
		break;
	}
	*nused = q.n;
	return 0;
}

void envdbi_sql_insert(envdbi_strbuf *b, const envdbi_sql_dialect *d, const envdbi_object_def *o)
{
	envdbi_strbuf_printf(b, "INSERT INTO \"%s\" (", o->name);
	envdbi_sql_columns(b, o);
	envdbi_strbuf_puts(b, ") VALUES (");
	for (size_t i = 0; i < o->n_fields; i++) {
		if (i)
			envdbi_strbuf_puts(b, ", ");
		param(b, d, i + 1);
	}
	envdbi_strbuf_putc(b, ')');
}

void envdbi_sql_update(envdbi_strbuf *b, const envdbi_sql_dialect *d, const envdbi_object_def *o)
{
	const envdbi_field_def *pk = envdbi_schema_primary(o);
	size_t p = 1;

	envdbi_strbuf_printf(b, "UPDATE \"%s\" SET ", o->name);
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (f->flags & ENVDBI_FF_IMMUTABLE)
			continue;
		envdbi_strbuf_printf(b, "%s\"%s\" = ", p > 1 ? ", " : "", f->name);
		param(b, d, p++);
	}
	envdbi_strbuf_printf(b, " WHERE \"%s\" = ", pk->name);
	param(b, d, p);
}

void envdbi_sql_matches_where(envdbi_strbuf *b, const envdbi_sql_dialect *d,
			      const envdbi_object_def *o, const envdbi_index_def *ix)
{
	envdbi_strbuf_puts(b, "SELECT 1 FROM (SELECT ");
	for (size_t i = 0; i < o->n_fields; i++) {
		if (i)
			envdbi_strbuf_puts(b, ", ");
		param(b, d, i + 1);
		envdbi_strbuf_printf(b, " AS \"%s\"", o->fields[i].name);
	}
	envdbi_strbuf_printf(b, ") AS r WHERE %s", ix->where ? ix->where : "1 = 1");
}

void envdbi_sql_conflict(envdbi_strbuf *b, const envdbi_sql_dialect *d,
			 const envdbi_object_def *o, const envdbi_index_def *ix)
{
	const envdbi_field_def *pk = envdbi_schema_primary(o);

	envdbi_strbuf_puts(b, "SELECT ");
	envdbi_sql_columns(b, o);
	envdbi_strbuf_printf(b, " FROM \"%s\" WHERE \"%s\" %s ", o->name, pk->name, d->is_not);
	param(b, d, 1);
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++) {
		envdbi_strbuf_printf(b, " AND \"%s\" = ", ix->columns[c]);
		param(b, d, c + 2);
	}
	if (ix->where != NULL)
		envdbi_strbuf_printf(b, " AND (%s)", ix->where);
	envdbi_strbuf_puts(b, " LIMIT 1");
}

void envdbi_sql_duplicates(envdbi_strbuf *groups, envdbi_strbuf *ids,
			   const envdbi_sql_dialect *d, const envdbi_object_def *o,
			   const envdbi_index_def *ix)
{
	envdbi_strbuf cols = ENVDBI_STRBUF_INIT, key = ENVDBI_STRBUF_INIT;
	const char *where = ix->where ? ix->where : "1 = 1";

	envdbi_strbuf_printf(ids, "SELECT %s(\"id\", ',')", d->group_concat);
	envdbi_strbuf_printf(ids, " FROM (SELECT \"id\" FROM \"%s\" WHERE (%s)", o->name, where);
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++) {
		envdbi_strbuf_printf(&cols, "%s\"%s\"", c ? ", " : "", ix->columns[c]);
		envdbi_strbuf_printf(&key, "%scoalesce(\"%s\", '')", c ? " || '/' || " : "",
				     ix->columns[c]);
		envdbi_strbuf_printf(ids, " AND \"%s\" %s ", ix->columns[c], d->is);
		param(ids, d, c + 1);
	}
	envdbi_strbuf_puts(ids, " ORDER BY \"id\") AS g");
	envdbi_strbuf_printf(groups,
			     "SELECT %s, %s FROM \"%s\" WHERE %s GROUP BY %s HAVING count(*) > 1 "
			     "ORDER BY 1",
			     key.data ? key.data : "''", cols.data ? cols.data : "1", o->name, where,
			     cols.data ? cols.data : "1");
	if (cols.failed || key.failed)
		groups->failed = true;
	envdbi_strbuf_free(&cols);
	envdbi_strbuf_free(&key);
}

void envdbi_sql_dangling(envdbi_strbuf *b, const envdbi_sql_dialect *d,
			 const envdbi_object_def *o, const envdbi_field_def *f)
{
	(void)d;
	envdbi_strbuf_printf(b,
			     "SELECT \"id\", \"%s\" FROM \"%s\" WHERE \"%s\" IS NOT NULL AND "
			     "\"%s\" NOT IN (SELECT \"id\" FROM \"%s\") ORDER BY \"id\"",
			     f->name, o->name, f->name, f->name, f->ref);
}

/* ------------------------------------------------------------------------ */
/* Fixed statement texts                                                     */
/* ------------------------------------------------------------------------ */

static const char *const stmt_text[ENVDBI_S__N] = {
	[ENVDBI_S_ENV_ACTIVATE] =
		/* One statement: the check and the change. */
		"UPDATE \"sys_environment\" SET \"status\" = 'active', "
		"\"pending_database_name\" = NULL, \"pending_driver\" = NULL, "
		"\"lease_expires_at\" = NULL, \"updated_at\" = ?2 "
		"WHERE \"id\" = ?1 AND \"status\" = 'provisioning'",
	[ENVDBI_S_ENV_DELETE] = "DELETE FROM \"sys_environment\" WHERE \"id\" = ?1",
	[ENVDBI_S_DB_TOUCH] = "UPDATE \"sys_environment_database\" SET \"last_accessed_at\" = ?1 "
			      "WHERE \"id\" = ?2",
	[ENVDBI_S_MEMBER_DELETE] = "DELETE FROM \"sys_environment_member\" "
				   "WHERE \"environment_id\" = ?1 AND \"user_id\" = ?2",
	[ENVDBI_S_PACKAGE_REPOINT] = "UPDATE \"sys_package_installation\" SET \"tenant_id\" = ?1, "
				     "\"updated_at\" = ?2 WHERE \"tenant_id\" = ?3",
	[ENVDBI_S_TENANT_ARCHIVE] = "UPDATE \"sys_tenant_database\" SET \"status\" = 'archived', "
				    "\"migrated_environment_id\" = ?1, \"updated_at\" = ?2 "
				    "WHERE \"id\" = ?3 AND \"migrated_environment_id\" IS NULL",
	[ENVDBI_S_TENANT_WIPE_TOKEN] = "UPDATE \"sys_tenant_database\" SET \"auth_token\" = NULL, "
				       "\"updated_at\" = ?1 WHERE \"id\" = ?2 AND "
				       "\"migrated_environment_id\" = ?3",
};

/* Integers as 0/1 (CASE, not a boolean: PostgreSQL's EXISTS is one). */
static const char *const ints_text[ENVDBI_I__N] = {
	[ENVDBI_I_ENV_ORG_EXISTS] = "SELECT CASE WHEN EXISTS (SELECT 1 FROM \"sys_environment\" "
				    "WHERE \"organization_id\" = ?1) THEN 1 ELSE 0 END",
	[ENVDBI_I_TENANT_ORG_HAS_MIGRATED] =
		"SELECT CASE WHEN EXISTS (SELECT 1 FROM \"sys_tenant_database\" WHERE "
		"\"organization_id\" = ?1 AND \"migrated_environment_id\" IS NOT NULL) "
		"THEN 1 ELSE 0 END",
	[ENVDBI_I_LEGACY_OPEN] = "SELECT CASE WHEN EXISTS (SELECT 1 FROM \"sys_tenant_database\" "
				 "WHERE \"migrated_environment_id\" IS NULL AND "
				 "\"status\" IN ('active', 'suspended')) THEN 1 ELSE 0 END",
	[ENVDBI_I_LEGACY_ANY] = "SELECT CASE WHEN EXISTS (SELECT 1 FROM \"sys_tenant_database\") OR "
				"EXISTS (SELECT 1 FROM \"sys_package_installation\") "
				"THEN 1 ELSE 0 END",
	[ENVDBI_I_LEGACY_COUNTS] =
		"SELECT count(*), "
		"coalesce(sum(CASE WHEN p > 0 THEN 1 ELSE 0 END), 0), "
		"coalesce(sum(CASE WHEN p = 0 THEN 1 ELSE 0 END), 0), "
		"coalesce(sum(p), 0), "
		"coalesce(sum(CASE WHEN a = 0 AND m > 0 THEN 1 ELSE 0 END), 0), "
		"coalesce(sum(CASE WHEN a > 0 THEN 1 ELSE 0 END), 0), "
		"coalesce(sum(CASE WHEN a = 0 AND m = 0 THEN 1 ELSE 0 END), 0) FROM "
		"(SELECT sum(CASE WHEN \"migrated_environment_id\" IS NULL THEN 1 ELSE 0 END) AS p, "
		"sum(CASE WHEN \"migrated_environment_id\" IS NULL AND \"status\" IN "
		"('active', 'suspended') THEN 1 ELSE 0 END) AS a, "
		"sum(CASE WHEN \"migrated_environment_id\" IS NOT NULL THEN 1 ELSE 0 END) AS m "
		"FROM \"sys_tenant_database\" GROUP BY \"organization_id\") AS g",
};

static const char *const strings_text[ENVDBI_L__N] = {
	[ENVDBI_L_PACKAGE_TENANTS_PENDING] =
		"SELECT DISTINCT \"tenant_id\" FROM \"sys_package_installation\" "
		"WHERE \"tenant_id\" IN (SELECT \"id\" FROM \"sys_tenant_database\" "
		"WHERE \"migrated_environment_id\" IS NULL AND \"organization_id\" > ?1 "
		"AND \"organization_id\" <= ?2) ORDER BY \"tenant_id\"",
	[ENVDBI_L_DB_NAMES_TAKEN_PENDING] =
		"SELECT DISTINCT \"database_name\" FROM \"sys_environment_database\" "
		"WHERE \"database_name\" IN (SELECT \"database_name\" FROM "
		"\"sys_tenant_database\" WHERE \"migrated_environment_id\" IS NULL AND "
		"\"organization_id\" > ?1 AND \"organization_id\" <= ?2) "
		"ORDER BY \"database_name\"",
	[ENVDBI_L_ENV_ORGS_PENDING] =
		"SELECT DISTINCT \"organization_id\" FROM \"sys_environment\" "
		"WHERE \"organization_id\" IN (SELECT \"organization_id\" FROM "
		"\"sys_tenant_database\" WHERE \"migrated_environment_id\" IS NULL AND "
		"\"organization_id\" > ?1 AND \"organization_id\" <= ?2) "
		"ORDER BY \"organization_id\"",
};

const char *envdbi_sql_stmt_text(envdbi_stmt s)
{
	return (unsigned)s < ENVDBI_S__N ? stmt_text[s] : NULL;
}

const char *envdbi_sql_ints_text(envdbi_ints q)
{
	return (unsigned)q < ENVDBI_I__N ? ints_text[q] : NULL;
}

const char *envdbi_sql_strings_text(envdbi_strings q)
{
	return (unsigned)q < ENVDBI_L__N ? strings_text[q] : NULL;
}

/* The environment by (organization, slug), the member, the database, the
 * active credential of the member's authorization (by role, as
 * ENVDBI_ROLE_AUTHORIZATIONS in store.h says) and the newest rotating one
 * still inside its window — through the unique indexes, in one read. */
#define RESOLVE_AUTH_WHEN(role, auth) "WHEN '" role "' THEN '" auth "' "
#define RESOLVE_AUTH(m) \
	"(CASE " m ".\"role\" " ENVDBI_ROLE_AUTHORIZATIONS(RESOLVE_AUTH_WHEN) "END)"
/* A rotating credential of database d inside its window (?4: now). */
#define RESOLVE_ROTATING(x)                                                                   \
	x ".\"environment_database_id\" = d.\"id\" AND " x ".\"authorization\" = " \
	RESOLVE_AUTH("m") " AND " x ".\"status\" = 'rotating' AND (" x ".\"expires_at\" IS NULL " \
	"OR " x ".\"expires_at\" = 0 OR " x ".\"expires_at\" > ?4)"
/* No ORDER BY (it would build a temporary b-tree on every call): the newest
 * rotating credential is the one no other is newer than, by (created_at,
 * id) — as envdbi_store_cred_list orders them. */
const char envdbi_sql_resolve[] =
	"SELECT e.\"id\", e.\"status\", m.\"role\", d.\"id\", d.\"driver\", "
	"d.\"database_name\", d.\"database_url\", " RESOLVE_AUTH("m") ", "
	"c.\"id\", c.\"secret_ciphertext\", c.\"handle\", c.\"expires_at\", "
	"p.\"id\", p.\"secret_ciphertext\", p.\"handle\", p.\"expires_at\", "
	"c.\"aad_version\", p.\"aad_version\" "
	"FROM \"sys_environment\" e "
	"LEFT JOIN \"sys_environment_member\" m "
	"ON m.\"environment_id\" = e.\"id\" AND m.\"user_id\" = ?3 "
	"LEFT JOIN \"sys_environment_database\" d ON d.\"environment_id\" = e.\"id\" "
	"LEFT JOIN \"sys_database_credential\" c "
	"ON c.\"environment_database_id\" = d.\"id\" AND c.\"authorization\" = "
	RESOLVE_AUTH("m") " AND c.\"status\" = 'active' "
	"LEFT JOIN \"sys_database_credential\" p ON p.\"id\" = ("
	"SELECT x.\"id\" FROM \"sys_database_credential\" x WHERE " RESOLVE_ROTATING("x")
	" AND NOT EXISTS (SELECT 1 FROM \"sys_database_credential\" y WHERE "
	RESOLVE_ROTATING("y") " AND (y.\"created_at\" > x.\"created_at\" OR "
	"(y.\"created_at\" = x.\"created_at\" AND y.\"id\" > x.\"id\")))) "
	"WHERE e.\"organization_id\" = ?1 AND e.\"slug\" = ?2";

/* ------------------------------------------------------------------------ */
/* DDL                                                                       */
/* ------------------------------------------------------------------------ */

int envdbi_sql_field_check(char **out, const envdbi_sql_dialect *d, const envdbi_field_def *f)
{
	envdbi_strbuf b = ENVDBI_STRBUF_INIT;

	*out = NULL;
	if (f->type <= 0 || f->type >= ENVDBI_FT__END)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL, "field %s: unknown type", f->name);
	if (!d->field_check(&b, f)) {
		envdbi_strbuf_free(&b);
		return 0;
	}
	if (b.failed) {
		envdbi_strbuf_free(&b);
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "schema: out of memory");
	}
	if (!f->required) {
		/* NULL is "absent" and allowed; the check of a type would fail on it */
		envdbi_strbuf w = ENVDBI_STRBUF_INIT;
		envdbi_strbuf_printf(&w, "\"%s\" IS NULL OR (%s)", f->name, b.data);
		envdbi_strbuf_free(&b);
		if (w.failed) {
			envdbi_strbuf_free(&w);
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "schema: out of memory");
		}
		*out = w.data;
		return 0;
	}
	*out = b.data;
	return 0;
}

/* The column definition of field f of o (what CREATE TABLE and ALTER
 * TABLE ADD COLUMN take). */
static int column_ddl(envdbi_strbuf *b, const envdbi_sql_dialect *d, const envdbi_object_def *o,
		      const envdbi_field_def *f)
{
	char *check = NULL;
	int rc;

	envdbi_strbuf_printf(b, "\"%s\" %s", f->name,
			     envdbi_ftype_is_text(f->type) ? d->text_type : d->int_type);
	if (f->required)
		envdbi_strbuf_puts(b, " NOT NULL");
	if (f->flags & ENVDBI_FF_PRIMARY)
		envdbi_strbuf_puts(b, " PRIMARY KEY");
	if (f->default_value != NULL) {
		envdbi_strbuf_puts(b, " DEFAULT ");
		if (envdbi_ftype_is_text(f->type))
			envdbi_sql_quote(b, f->default_value);
		else
			envdbi_strbuf_puts(b, f->default_value);
	}
	if (f->type == ENVDBI_FT_REF)
		envdbi_strbuf_printf(b, " REFERENCES \"%s\"(\"id\")%s", f->ref,
				     (f->flags & ENVDBI_FF_CASCADE) ? " ON DELETE CASCADE" : "");
	if ((rc = envdbi_sql_field_check(&check, d, f)) != 0)
		return rc;
	if (check != NULL) {
		envdbi_strbuf_printf(b, "\n    CONSTRAINT \"%s_%s_check\" CHECK (%s)", o->name,
				     f->name, check);
		free(check);
	}
	return 0;
}

int envdbi_sql_add_column_ddl(char **out, const envdbi_sql_dialect *d, const envdbi_object_def *o,
			      const envdbi_field_def *f)
{
	envdbi_strbuf b = ENVDBI_STRBUF_INIT;
	int rc;

	*out = NULL;
	envdbi_strbuf_printf(&b, "ALTER TABLE \"%s\" ADD COLUMN ", o->name);
	if ((rc = column_ddl(&b, d, o, f)) != 0) {
		envdbi_strbuf_free(&b);
		return rc;
	}
	if (b.failed) {
		envdbi_strbuf_free(&b);
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "schema %s: out of memory", o->name);
	}
	*out = b.data;
	return 0;
}

int envdbi_sql_ddl(char **out, const envdbi_sql_dialect *d, const envdbi_object_def *o)
{
	envdbi_strbuf b = ENVDBI_STRBUF_INIT;
	int rc = 0;
	bool any = false;

	*out = NULL;
	envdbi_strbuf_printf(&b, "CREATE TABLE IF NOT EXISTS \"%s\" (\n", o->name);
	for (size_t i = 0; i < o->n_fields; i++) {
		envdbi_strbuf_puts(&b, "  ");
		if ((rc = column_ddl(&b, d, o, &o->fields[i])) != 0)
			goto out;
		envdbi_strbuf_puts(&b, i + 1 < o->n_fields ? ",\n" : "\n");
	}
	envdbi_strbuf_puts(&b, ");\n");
	for (size_t i = 0; i < o->n_indexes; i++) {
		const envdbi_index_def *ix = &o->indexes[i];
		envdbi_strbuf_printf(&b, "CREATE %sINDEX IF NOT EXISTS \"%s\" ON \"%s\" (",
				     ix->unique ? "UNIQUE " : "", ix->name, o->name);
		for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
			envdbi_strbuf_printf(&b, "%s\"%s\"", c ? ", " : "", ix->columns[c]);
		envdbi_strbuf_putc(&b, ')');
		if (ix->where != NULL)
			envdbi_strbuf_printf(&b, " WHERE %s", ix->where);
		envdbi_strbuf_puts(&b, ";\n");
	}
	/* immutable fields: one guard per object */
	for (size_t i = 0; i < o->n_fields; i++)
		if (o->fields[i].flags & ENVDBI_FF_IMMUTABLE)
			any = true;
	if (any)
		d->immutable_guard(&b, o);
	if (b.failed) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "schema %s: out of memory", o->name);
		goto out;
	}
	*out = b.data;
	b.data = NULL;
out:
	envdbi_strbuf_free(&b);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* SQLite's dialect                                                          */
/* ------------------------------------------------------------------------ */

static bool sqlite_field_check(envdbi_strbuf *b, const envdbi_field_def *f)
{
	const char *n = f->name;

	switch (f->type) {
	case ENVDBI_FT_UUID:
	case ENVDBI_FT_REF:
		/* One anchored GLOB, position by position: what envdbi_uuid_valid()
		 * accepts (36 characters, lowercase hex, the four dashes in place).
		 * Evaluated for every id of every insert, it costs half the
		 * length, replace, substr and unanchored GLOB it replaces. */
		envdbi_strbuf_printf(b, "typeof(\"%s\") = 'text' AND \"%s\" GLOB '", n, n);
		for (size_t i = 0; i < 36; i++)
			envdbi_strbuf_puts(b, (i == 8 || i == 13 || i == 18 || i == 23) ? "-"
											   : "[0-9a-f]");
		envdbi_strbuf_putc(b, '\'');
		return true;
	case ENVDBI_FT_SLUG:
		envdbi_strbuf_printf(b,
				     "typeof(\"%s\") = 'text' AND length(\"%s\") BETWEEN 1 AND 63 AND "
				     "\"%s\" GLOB '[a-z0-9]*' AND \"%s\" NOT GLOB '*[^a-z0-9-]*'",
				     n, n, n, n);
		return true;
	case ENVDBI_FT_ENUM:
		/* Comparisons, not "x IN (list)": SQLite builds an ephemeral
		 * b-tree for a constant list of more than two values each time the
		 * statement runs, so every insert built one per enum column (8 per
		 * migrated row, a fifth of the migration's instructions).  The
		 * same truth table, NULL included. */
		envdbi_strbuf_putc(b, '(');
		for (const char *const *e = f->enum_values; *e; e++) {
			envdbi_strbuf_printf(b, "%s\"%s\" = ", e != f->enum_values ? " OR " : "", n);
			envdbi_sql_quote(b, *e);
		}
		envdbi_strbuf_putc(b, ')');
		return true;
	case ENVDBI_FT_BOOL:
		envdbi_strbuf_printf(b, "\"%s\" IN (0, 1)", n);
		return true;
	case ENVDBI_FT_INT:
		envdbi_strbuf_printf(b, "typeof(\"%s\") = 'integer'", n);
		if (f->flags & ENVDBI_FF_POSITIVE)
			envdbi_strbuf_printf(b, " AND \"%s\" > 0", n);
		return true;
	case ENVDBI_FT_TIME:
		envdbi_strbuf_printf(b, "typeof(\"%s\") = 'integer' AND \"%s\" > 0", n, n);
		return true;
	case ENVDBI_FT_JSON:
		envdbi_strbuf_printf(b, "typeof(\"%s\") = 'text' AND substr(\"%s\", 1, 1) = '{'", n, n);
		return true;
	case ENVDBI_FT_CIPHERTEXT:
		/* no whitespace: instr() is a memchr, NOT GLOB '*[ \t\r\n]*'
		 * matched a class at every position of a 150-byte value */
		envdbi_strbuf_printf(b,
				     "typeof(\"%s\") = 'text' AND length(\"%s\") >= 24 AND "
				     "instr(\"%s\", ' ') = 0 AND instr(\"%s\", char(9)) = 0 AND "
				     "instr(\"%s\", char(10)) = 0 AND instr(\"%s\", char(13)) = 0",
				     n, n, n, n, n, n);
		return true;
	case ENVDBI_FT_TEXT:
		if (!f->required)
			return false;
		envdbi_strbuf_printf(b, "typeof(\"%s\") = 'text'", n);
		return true;
	default:
		return false;
	}
}

static void sqlite_immutable_guard(envdbi_strbuf *b, const envdbi_object_def *o)
{
	bool first = true;

	envdbi_strbuf_printf(b,
			     "CREATE TRIGGER IF NOT EXISTS \"%s_immutable\" BEFORE UPDATE ON "
			     "\"%s\" FOR EACH ROW WHEN ",
			     o->name, o->name);
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (!(f->flags & ENVDBI_FF_IMMUTABLE))
			continue;
		envdbi_strbuf_printf(b, "%sNEW.\"%s\" IS NOT OLD.\"%s\"", first ? "" : " OR ",
				     f->name, f->name);
		first = false;
	}
	envdbi_strbuf_printf(b,
			     " BEGIN SELECT RAISE(ABORT, '%s: immutable field changed'); "
			     "END;\n",
			     o->name);
}

const envdbi_sql_dialect envdbi_sql_dialect_sqlite = {
	.name = "sqlite",
	.param = '?',
	.text_type = "TEXT",
	.int_type = "INTEGER",
	.is = "IS",
	.is_not = "IS NOT",
	.group_concat = "group_concat",
	.field_check = sqlite_field_check,
	.immutable_guard = sqlite_immutable_guard,
};
