/*
 * core/store_sqlite.c — the SQLite store backend (store_backend.h): the
 * control plane as one local SQLite file, the embedded default.
 *
 * The SQL comes from core/store_sql.c (SQLite's dialect); what is here is
 * SQLite's own: the connection and its PRAGMAs (WAL, foreign keys,
 * synchronous=FULL, page size), the statement cache, the busy retry,
 * the schema migrations by PRAGMA user_version, snapshots through the
 * online backup API, the bulk-writer settings, and the physical-schema
 * introspection of envdb check.  Backup and restore of the file are in
 * core/store_sqlite_backup.c.
 *
 * Concurrency: the neutral layer (store.c) holds the store's mutex around
 * every operation, so this file never locks.  Across processes SQLite's
 * locks apply: begin(b, 0) is BEGIN IMMEDIATE, which takes the file's write
 * lock up front (the global write lock of the contract), retried on
 * SQLITE_BUSY until the busy timeout.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "store_sqlite.h"

#define STMT_CACHE 64

typedef struct cached_stmt {
	char *sql;
	sqlite3_stmt *st;
	bool in_use;
} cached_stmt;

/* The statements generated per object that hot paths run (a migration
 * inserts four rows per organization): prepared once and found by index,
 * not rebuilt with printf and looked up by strcmp on every call. */
enum stmt_kind { SK_INSERT, SK__N };
#define SK_OBJECTS 8

struct envdbi_store_backend {
	sqlite3 *db;
	char *path;
	int64_t busy_timeout_ms;
	bool legacy;
	int version;
	bool snapshot; /* an in-memory copy (ENVDB_OPEN_SNAPSHOT) */
	cached_stmt cache[STMT_CACHE];
	sqlite3_stmt *kind_st[SK__N][SK_OBJECTS];
	bool kind_in_use[SK__N][SK_OBJECTS];
	/* The text of each query without optional filters per object, made
	 * once: the reads of a migration formatted it column by column at
	 * every call. */
	char *query_sql[ENVDBI_Q__N][SK_OBJECTS];
};

typedef envdbi_store_backend sq;

static int sq_begin(sq *b, int depth);
static int sq_commit(sq *b, int depth);
static void sq_rollback(sq *b, int depth);
static void sq_close(sq *b);

/* ------------------------------------------------------------------------ */
/* Errors and statements                                                     */
/* ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The neutral classification of an SQLite result code. */
static void classify(envdbi_store_fail *f, int rc, const char *msg)
{
	envdbi_store_fail_kind k;
	char native[16];

	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
		k = ENVDBI_FAIL_UNIQUE;
		break;
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		k = ENVDBI_FAIL_PRIMARY;
		break;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		k = ENVDBI_FAIL_FOREIGN_KEY;
		break;
	case SQLITE_CONSTRAINT_TRIGGER:
		k = ENVDBI_FAIL_IMMUTABLE;
		break;
	case SQLITE_CONSTRAINT_CHECK:
		k = ENVDBI_FAIL_CHECK;
		break;
	case SQLITE_CONSTRAINT_NOTNULL:
		k = ENVDBI_FAIL_NOT_NULL;
		break;
	default:
		switch (rc & 0xff) {
		case SQLITE_CONSTRAINT:
			k = ENVDBI_FAIL_CONSTRAINT;
			break;
		case SQLITE_BUSY:
		case SQLITE_LOCKED:
			k = ENVDBI_FAIL_BUSY;
			break;
		case SQLITE_NOMEM:
			k = ENVDBI_FAIL_NOMEM;
			break;
		default:
			k = ENVDBI_FAIL_IO;
		}
	}
	snprintf(native, sizeof native, "%d", rc);
	envdbi_store_fail_set(f, k, native, msg);
}

static const char *errmsg(sq *b, int rc)
{
	return b->db ? sqlite3_errmsg(b->db) : sqlite3_errstr(rc);
}

static int db_error_msg(sq *b, int rc, const char *what, const char *msg)
{
	envdbi_store_fail f;

	classify(&f, rc, msg);
	return envdbi_store_backend_error(b->path, b->busy_timeout_ms, &f, what);
}

static int db_error(sq *b, int rc, const char *what)
{
	return db_error_msg(b, rc, what, errmsg(b, rc));
}

static int nomem(void)
{
	return envdbi_error(ENVDB_ERR_NOMEM, NULL, "control plane: out of memory");
}

/* Fill *fail for a write that did not run to SQLITE_DONE. */
static int write_fail(sq *b, envdbi_store_fail *fail, int rc)
{
	classify(fail, rc, errmsg(b, rc));
	return ENVDB_ERR_IO; /* the neutral layer composes the status */
}

static int stmt_get(sq *b, sqlite3_stmt **out, const char *sql)
{
	cached_stmt *free_slot = NULL;
	for (size_t i = 0; i < STMT_CACHE; i++) {
		cached_stmt *c = &b->cache[i];
		if (c->sql == NULL) {
			if (free_slot == NULL)
				free_slot = c;
		} else if (!c->in_use && strcmp(c->sql, sql) == 0) {
			c->in_use = true;
			*out = c->st;
			return 0;
		}
	}
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v3(b->db, sql, -1, free_slot ? SQLITE_PREPARE_PERSISTENT : 0, &st,
				    NULL);
	if (rc != SQLITE_OK)
		return db_error(b, rc, "prepare");
	if (free_slot != NULL && (free_slot->sql = strdup(sql)) != NULL) {
		free_slot->st = st;
		free_slot->in_use = true;
	}
	*out = st;
	return 0;
}

static void stmt_put(sq *b, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < STMT_CACHE; i++) {
		if (b->cache[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			b->cache[i].in_use = false;
			return;
		}
	}
	sqlite3_finalize(st);
}

static void stmt_cache_clear(sq *b)
{
	for (size_t i = 0; i < STMT_CACHE; i++) {
		sqlite3_finalize(b->cache[i].st);
		free(b->cache[i].sql);
		b->cache[i] = (cached_stmt){NULL, NULL, false};
	}
	for (size_t k = 0; k < SK__N; k++)
		for (size_t i = 0; i < SK_OBJECTS; i++) {
			sqlite3_finalize(b->kind_st[k][i]);
			b->kind_st[k][i] = NULL;
			b->kind_in_use[k][i] = false;
		}
	for (size_t q = 0; q < ENVDBI_Q__N; q++)
		for (size_t i = 0; i < SK_OBJECTS; i++) {
			free(b->query_sql[q][i]);
			b->query_sql[q][i] = NULL;
		}
}

/* The index of `o` in the object table, SK_OBJECTS when it has no slot. */
static size_t kind_index(const envdbi_object_def *o)
{
	uintptr_t p = (uintptr_t)o, base = (uintptr_t)envdbi_schema_objects;

	if (p < base || p >= base + envdbi_schema_n_objects * sizeof(*o))
		return SK_OBJECTS;
	return (p - base) / sizeof(*o) < SK_OBJECTS ? (p - base) / sizeof(*o) : SK_OBJECTS;
}

/* Statement `kind` of object `o`, prepared on first use; one in use
 * already (a nested call) gets a one-off copy.  Give it back with
 * kind_put().  Returns the SQLite code. */
static int kind_get(sq *b, sqlite3_stmt **out, enum stmt_kind kind, const envdbi_object_def *o)
{
	size_t i = kind_index(o);
	bool keep = i < SK_OBJECTS && !b->kind_in_use[kind][i];
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL;
	int rc;

	if (keep && b->kind_st[kind][i] != NULL) {
		b->kind_in_use[kind][i] = true;
		*out = b->kind_st[kind][i];
		return 0;
	}
	switch (kind) {
	case SK_INSERT:
		envdbi_sql_insert(&sql, &envdbi_sql_dialect_sqlite, o);
		break;
	case SK__N:
		break;
	}
	if (sql.failed || sql.data == NULL) {
		envdbi_strbuf_free(&sql);
		return SQLITE_NOMEM;
	}
	rc = sqlite3_prepare_v3(b->db, sql.data, -1, keep ? SQLITE_PREPARE_PERSISTENT : 0, &st,
				NULL);
	envdbi_strbuf_free(&sql);
	if (rc != SQLITE_OK)
		return rc;
	if (keep) {
		b->kind_st[kind][i] = st;
		b->kind_in_use[kind][i] = true;
	}
	*out = st;
	return 0;
}

static void kind_put(sq *b, sqlite3_stmt *st, enum stmt_kind kind, const envdbi_object_def *o)
{
	size_t i = kind_index(o);

	if (st == NULL)
		return;
	if (i < SK_OBJECTS && b->kind_st[kind][i] == st) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		b->kind_in_use[kind][i] = false;
		return;
	}
	sqlite3_finalize(st);
}

static int bind_values(sq *b, sqlite3_stmt *st, int first, const envdbi_bind *v, size_t nv)
{
	for (size_t i = 0; i < nv; i++) {
		int idx = first + (int)i;
		int rc = v[i].is_int ? sqlite3_bind_int64(st, idx, v[i].i)
			 : v[i].s   ? sqlite3_bind_text(st, idx, v[i].s, -1, SQLITE_STATIC)
				    : sqlite3_bind_null(st, idx);
		if (rc != SQLITE_OK)
			return db_error(b, rc, "bind");
	}
	return 0;
}

/* Bind field f of `rec` to parameter idx.  TIME (and optional INT) 0 is
 * NULL.  Returns the SQLite code. */
static int bind_field(sqlite3_stmt *st, int idx, const envdbi_field_def *f, const void *rec)
{
	if (envdbi_ftype_is_text(f->type)) {
		const char *v = envdbi_field_cstr(f, rec);
		return v ? sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, idx);
	}
	int64_t v = envdbi_field_int(f, rec);
	if (v == 0 && (f->type == ENVDBI_FT_TIME || (!f->required && f->type == ENVDBI_FT_INT)))
		return sqlite3_bind_null(st, idx);
	return sqlite3_bind_int64(st, idx, v);
}

/* Read the current row of `st` (columns in definition order) into a new record. */
static int read_record(void **out, const envdbi_object_def *o, sqlite3_stmt *st)
{
	void *rec = calloc(1, o->record_size);
	if (rec == NULL)
		return nomem();
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (envdbi_ftype_is_text(f->type)) {
			const unsigned char *v = sqlite3_column_text(st, (int)i);
			if (v != NULL && (*envdbi_field_str(f, rec) = strdup((const char *)v)) == NULL) {
				envdbi_record_free(o, rec);
				return nomem();
			}
		} else {
			envdbi_field_set_int(f, rec, sqlite3_column_int64(st, (int)i));
		}
	}
	*out = rec;
	return 0;
}

static void records_free(const envdbi_object_def *o, void **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		envdbi_record_free(o, v[i]);
	free(v);
}

/* Execute a statement without result rows; *changes (may be NULL) gets the
 * number of changed rows.  Returns the raw SQLite code (SQLITE_DONE = ok). */
static int exec_raw(sq *b, const char *sql, const envdbi_bind *v, size_t nv, int64_t *changes)
{
	sqlite3_stmt *st = NULL;
	int rc = stmt_get(b, &st, sql);
	if (rc != 0)
		return sqlite3_errcode(b->db) != SQLITE_OK ? sqlite3_errcode(b->db) : SQLITE_ERROR;
	if (bind_values(b, st, 1, v, nv) != 0) {
		stmt_put(b, st);
		return SQLITE_ERROR;
	}
	rc = sqlite3_step(st);
	if (changes != NULL)
		*changes = sqlite3_changes(b->db);
	stmt_put(b, st);
	return rc;
}

static int exec_sql(sq *b, const char *sql, const char *what)
{
	char *err = NULL;
	int rc = sqlite3_exec(b->db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		int status = (rc & 0xff) == SQLITE_BUSY ? ENVDB_ERR_BUSY : ENVDB_ERR_IO;
		rc = envdbi_error(status, NULL, "control plane %s: %s: %s", b->path, what,
				  err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return rc;
	}
	return 0;
}

static int pragma_int(sq *b, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(b->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK || rc == SQLITE_DONE ? 0 : db_error(b, rc, sql);
}

/* ------------------------------------------------------------------------ */
/* Row operations                                                            */
/* ------------------------------------------------------------------------ */

static bool query_has_filters(envdbi_query q)
{
	return q == ENVDBI_Q_ENV_LIST || q == ENVDBI_Q_CRED_LIST || q == ENVDBI_Q_MEMBER_LIST ||
	       q == ENVDBI_Q_TENANT_LIST || q == ENVDBI_Q_PACKAGE_LIST;
}

static int sq_select(sq *b, const envdbi_object_def *o, envdbi_query q, const envdbi_bind *v,
		     size_t nv, void ***out, size_t *n)
{
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	envdbi_bind used[8];
	size_t nused = 0, k = kind_index(o), count = 0, cap = 0;
	const char *text;
	sqlite3_stmt *st = NULL;
	void **rows = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	if (nv > sizeof used / sizeof used[0])
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "%s: too many values", o->name);
	if (!query_has_filters(q) && (unsigned)q < ENVDBI_Q__N && k < SK_OBJECTS &&
	    b->query_sql[q][k] != NULL) {
		text = b->query_sql[q][k];
		memcpy(used, v, nv * sizeof *v);
		nused = nv;
	} else {
		if ((rc = envdbi_sql_query(&sql, &envdbi_sql_dialect_sqlite, o, q, v, nv, used,
					   &nused)) != 0)
			goto out;
		if (sql.failed) {
			rc = nomem();
			goto out;
		}
		text = sql.data;
		if (!query_has_filters(q) && k < SK_OBJECTS) {
			b->query_sql[q][k] = sql.data; /* kept */
			sql = (envdbi_strbuf)ENVDBI_STRBUF_INIT;
		}
	}
	if ((rc = stmt_get(b, &st, text)) != 0)
		goto out;
	if ((rc = bind_values(b, st, 1, used, nused)) != 0)
		goto out;
	for (;;) {
		int step = sqlite3_step(st);
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			rc = db_error(b, step, o->name);
			goto out;
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			void **nr = realloc(rows, ncap * sizeof *nr);
			if (nr == NULL) {
				rc = nomem();
				goto out;
			}
			rows = nr;
			cap = ncap;
		}
		if ((rc = read_record(&rows[count], o, st)) != 0)
			goto out;
		count++;
	}
	*out = rows;
	*n = count;
	rows = NULL;
	count = 0;
out:
	stmt_put(b, st);
	records_free(o, rows, count);
	envdbi_strbuf_free(&sql);
	return rc;
}

static int sq_insert(sq *b, const envdbi_object_def *o, const void *rec, envdbi_store_fail *fail)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if ((rc = kind_get(b, &st, SK_INSERT, o)) != SQLITE_OK)
		return write_fail(b, fail, rc);
	for (size_t i = 0; i < o->n_fields; i++)
		if ((rc = bind_field(st, (int)i + 1, &o->fields[i], rec)) != SQLITE_OK) {
			rc = write_fail(b, fail, rc);
			kind_put(b, st, SK_INSERT, o);
			return rc;
		}
	int step = sqlite3_step(st);
	if (step != SQLITE_DONE) {
		/* SQLite's message before the statement is reset */
		rc = write_fail(b, fail, step);
		kind_put(b, st, SK_INSERT, o);
		return rc;
	}
	kind_put(b, st, SK_INSERT, o);
	return 0;
}

static int sq_update(sq *b, const envdbi_object_def *o, const void *rec, envdbi_store_fail *fail)
{
	const envdbi_field_def *pk = envdbi_schema_primary(o);
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL;
	int rc = 0, p = 1, step;

	envdbi_sql_update(&sql, &envdbi_sql_dialect_sqlite, o);
	if (sql.failed) {
		envdbi_strbuf_free(&sql);
		envdbi_store_fail_set(fail, ENVDBI_FAIL_NOMEM, NULL, "out of memory");
		return ENVDB_ERR_NOMEM;
	}
	if (stmt_get(b, &st, sql.data) != 0) {
		envdb_error_clear();
		rc = write_fail(b, fail, sqlite3_errcode(b->db));
		goto out;
	}
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (f->flags & ENVDBI_FF_IMMUTABLE)
			continue;
		if ((step = bind_field(st, p++, f, rec)) != SQLITE_OK) {
			rc = write_fail(b, fail, step);
			goto out;
		}
	}
	if ((step = bind_field(st, p, pk, rec)) != SQLITE_OK) {
		rc = write_fail(b, fail, step);
		goto out;
	}
	step = sqlite3_step(st);
	if (step != SQLITE_DONE)
		rc = write_fail(b, fail, step);
out:
	stmt_put(b, st);
	envdbi_strbuf_free(&sql);
	return rc;
}

static int sq_exec(sq *b, envdbi_stmt s, const envdbi_bind *v, size_t nv, int64_t *changes,
		   envdbi_store_fail *fail)
{
	const char *sql = envdbi_sql_stmt_text(s);
	int64_t ch = 0;
	int step;

	if (sql == NULL) {
		envdbi_store_fail_set(fail, ENVDBI_FAIL_IO, NULL, "unknown statement");
		return ENVDB_ERR_MISUSE;
	}
	step = exec_raw(b, sql, v, nv, &ch);
	if (step != SQLITE_DONE) {
		envdb_error_clear();
		return write_fail(b, fail, step);
	}
	if (changes != NULL)
		*changes = ch;
	return 0;
}

static int sq_ints(sq *b, envdbi_ints q, const envdbi_bind *v, size_t nv, int64_t *out,
		   size_t ncols, const char *what)
{
	const char *sql = envdbi_sql_ints_text(q);
	sqlite3_stmt *st = NULL;
	int rc, step;

	if (sql == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "control plane: unknown look-up %d",
				    (int)q);
	if ((rc = stmt_get(b, &st, sql)) != 0)
		goto out;
	if ((rc = bind_values(b, st, 1, v, nv)) != 0)
		goto out;
	step = sqlite3_step(st);
	if (step != SQLITE_ROW) {
		rc = db_error(b, step, what);
		goto out;
	}
	for (size_t i = 0; i < ncols; i++)
		out[i] = sqlite3_column_int64(st, (int)i);
out:
	stmt_put(b, st);
	return rc;
}

static int sq_strings(sq *b, envdbi_strings q, const envdbi_bind *v, size_t nv, char ***out,
		      size_t *n, const char *what)
{
	const char *sql = envdbi_sql_strings_text(q);
	sqlite3_stmt *st = NULL;
	char **list = NULL;
	size_t count = 0, cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (sql == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "control plane: unknown list %d", (int)q);
	if ((rc = stmt_get(b, &st, sql)) != 0)
		goto out;
	if ((rc = bind_values(b, st, 1, v, nv)) != 0)
		goto out;
	for (;;) {
		int step = sqlite3_step(st);
		const unsigned char *t;
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			rc = db_error(b, step, what);
			goto out;
		}
		if ((t = sqlite3_column_text(st, 0)) == NULL)
			continue;
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			char **nl = realloc(list, ncap * sizeof *nl);
			if (nl == NULL) {
				rc = nomem();
				goto out;
			}
			list = nl;
			cap = ncap;
		}
		if ((list[count] = strdup((const char *)t)) == NULL) {
			rc = nomem();
			goto out;
		}
		count++;
	}
	*out = list;
	*n = count;
	list = NULL;
	count = 0;
out:
	stmt_put(b, st);
	envdbi_store_strings_free(list, count);
	return rc;
}

/* Does the new record satisfy the partial-index predicate of ix? */
static bool record_matches_where(sq *b, const envdbi_object_def *o, const envdbi_index_def *ix,
				 const void *rec)
{
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL;
	bool match = true; /* when unsure, consider the index */

	envdbi_sql_matches_where(&sql, &envdbi_sql_dialect_sqlite, o, ix);
	if (sql.failed || stmt_get(b, &st, sql.data) != 0)
		goto out;
	for (size_t i = 0; i < o->n_fields; i++)
		if (bind_field(st, (int)i + 1, &o->fields[i], rec) != SQLITE_OK)
			goto out;
	match = sqlite3_step(st) == SQLITE_ROW;
out:
	stmt_put(b, st);
	envdbi_strbuf_free(&sql);
	return match;
}

static int sq_find_conflict(sq *b, const envdbi_object_def *o, const envdbi_index_def *ix,
			    const void *rec, void **other)
{
	const envdbi_field_def *pk = envdbi_schema_primary(o);
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL;
	int p = 1, rc = 0;

	*other = NULL;
	if (ix->where != NULL && !record_matches_where(b, o, ix, rec))
		return 0;
	envdbi_sql_conflict(&sql, &envdbi_sql_dialect_sqlite, o, ix);
	if (sql.failed) {
		rc = nomem();
		goto out;
	}
	if ((rc = stmt_get(b, &st, sql.data)) != 0)
		goto out;
	if (bind_field(st, p++, pk, rec) != SQLITE_OK)
		goto out;
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
		if (bind_field(st, p++, envdbi_schema_field(o, ix->columns[c]), rec) != SQLITE_OK)
			goto out;
	if (sqlite3_step(st) == SQLITE_ROW)
		rc = read_record(other, o, st);
out:
	stmt_put(b, st);
	envdbi_strbuf_free(&sql);
	return rc;
}

static int sq_resolve_get(sq *b, envdbi_resolve_row **out, const char *org, const char *slug,
			  const char *user, int64_t now)
{
	/* Columns in row order. */
	enum { C_ENV, C_STATUS, C_ROLE, C_DB, C_DRIVER, C_DBNAME, C_URL, C_AUTH, C_CRED, C_CT,
	       C_HANDLE, C_EXP, C_PREV, C_PCT, C_PHANDLE, C_PEXP, C_AADV, C_PAADV, C__N };
	sqlite3_stmt *st = NULL;
	envdbi_resolve_row *r = NULL;
	size_t len[C__N], total = 0, i;
	int rc, step;
	char *p;

	*out = NULL;
	if ((rc = stmt_get(b, &st, envdbi_sql_resolve)) != 0)
		goto out;
	if ((rc = bind_values(b, st, 1,
			      (envdbi_bind[]){ENVDBI_BT(org), ENVDBI_BT(slug), ENVDBI_BT(user),
					      ENVDBI_BI(now)},
			      4)) != 0)
		goto out;
	step = sqlite3_step(st);
	if (step == SQLITE_DONE) {
		rc = ENVDB_ERR_NOT_FOUND; /* the caller reports */
		goto out;
	}
	if (step != SQLITE_ROW) {
		rc = db_error(b, step, "resolve");
		goto out;
	}
	for (i = 0; i < C__N; i++) {
		len[i] = 0;
		if (i == C_EXP || i == C_PEXP || i == C_AADV || i == C_PAADV ||
		    sqlite3_column_type(st, (int)i) == SQLITE_NULL)
			continue;
		len[i] = (size_t)sqlite3_column_bytes(st, (int)i) + 1;
		total += len[i];
	}
	r = calloc(1, sizeof(*r) + total);
	if (r == NULL) {
		rc = nomem();
		goto out;
	}
	{
		const char **field[C__N] = {
			&r->env_id, &r->env_status, &r->role, &r->db_id, &r->driver,
			&r->database_name, &r->database_url, &r->authorization, &r->cred_id,
			&r->cred_ciphertext, &r->cred_handle, NULL, &r->prev_id,
			&r->prev_ciphertext, &r->prev_handle, NULL, NULL, NULL};

		p = r->buf;
		for (i = 0; i < C__N; i++) {
			if (len[i] == 0)
				continue;
			memcpy(p, sqlite3_column_text(st, (int)i), len[i] - 1);
			p[len[i] - 1] = '\0';
			*field[i] = p;
			p += len[i];
		}
	}
	r->cred_expires_at = sqlite3_column_int64(st, C_EXP);
	r->prev_expires_at = sqlite3_column_int64(st, C_PEXP);
	r->cred_aad_version = sqlite3_column_int64(st, C_AADV);
	r->prev_aad_version = sqlite3_column_int64(st, C_PAADV);
	*out = r;
	r = NULL;
out:
	stmt_put(b, st);
	free(r);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* envdb check                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Two queries: the keys held more than once, grouped over the columns alone
 * (the unique index, when it is there, is a covering index walked in
 * order: no table row is read and nothing is sorted but the duplicate
 * groups), then, per duplicate key only, the ids sharing it in id order.
 * Grouping every row in id order to list the ids of each group read the
 * whole table through its primary key and sorted it twice: a third of
 * envdb check at 100,000 environments.
 */
static int sq_find_duplicates(sq *b, const envdbi_object_def *o, const envdbi_index_def *ix,
			      envdbi_dup_cb cb, void *cb_ctx)
{
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT, ids_sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL, *ids = NULL;
	size_t nc = 0;
	int rc;

	envdbi_sql_duplicates(&sql, &ids_sql, &envdbi_sql_dialect_sqlite, o, ix);
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
		nc++;
	if (sql.failed || ids_sql.failed) {
		rc = nomem();
		goto out;
	}
	rc = stmt_get(b, &st, sql.data);
	if (rc == 0)
		rc = stmt_get(b, &ids, ids_sql.data);
	while (rc == 0) {
		int step = sqlite3_step(st);
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			rc = db_error(b, step, o->name);
			break;
		}
		for (size_t c = 0; c < nc && rc == 0; c++)
			if (sqlite3_bind_value(ids, (int)c + 1, sqlite3_column_value(st, (int)c + 1)) !=
			    SQLITE_OK)
				rc = db_error(b, SQLITE_ERROR, o->name);
		if (rc == 0 && (step = sqlite3_step(ids)) != SQLITE_ROW)
			rc = db_error(b, step, o->name);
		if (rc == 0)
			cb(cb_ctx, o, ix, (const char *)sqlite3_column_text(st, 0),
			   (const char *)sqlite3_column_text(ids, 0));
		sqlite3_reset(ids);
		sqlite3_clear_bindings(ids);
	}
	stmt_put(b, ids);
	stmt_put(b, st);
out:
	envdbi_strbuf_free(&sql);
	envdbi_strbuf_free(&ids_sql);
	return rc;
}

static int sq_find_dangling(sq *b, const envdbi_object_def *o, envdbi_dangling_cb cb, void *cb_ctx)
{
	int rc = 0;

	for (size_t i = 0; i < o->n_fields && rc == 0; i++) {
		const envdbi_field_def *f = &o->fields[i];
		envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
		sqlite3_stmt *st = NULL;
		if (f->type != ENVDBI_FT_REF)
			continue;
		envdbi_sql_dangling(&sql, &envdbi_sql_dialect_sqlite, o, f);
		if (sql.failed) {
			envdbi_strbuf_free(&sql);
			rc = nomem();
			break;
		}
		rc = stmt_get(b, &st, sql.data);
		while (rc == 0) {
			int step = sqlite3_step(st);
			if (step == SQLITE_DONE)
				break;
			if (step != SQLITE_ROW) {
				rc = db_error(b, step, o->name);
				break;
			}
			cb(cb_ctx, o, f, (const char *)sqlite3_column_text(st, 0),
			   (const char *)sqlite3_column_text(st, 1));
		}
		stmt_put(b, st);
		envdbi_strbuf_free(&sql);
	}
	return rc;
}

static int table_has(sq *b, const char *sql, const char *x, const char *y, int *found)
{
	sqlite3_stmt *st = NULL;
	int rc = stmt_get(b, &st, sql);

	*found = 0;
	if (rc == 0)
		rc = bind_values(b, st, 1, (envdbi_bind[]){ENVDBI_BT(x), ENVDBI_BT(y)}, y ? 2 : 1);
	if (rc == 0) {
		int step = sqlite3_step(st);
		if (step == SQLITE_ROW)
			*found = sqlite3_column_int(st, 0);
		else if (step != SQLITE_DONE)
			rc = db_error(b, step, "schema");
	}
	stmt_put(b, st);
	return rc;
}

static int sq_verify_schema(sq *b, bool legacy, envdbi_schema_problem_cb cb, void *cb_ctx)
{
	int rc = 0;
	for (size_t i = 0; i < envdbi_schema_n_objects && rc == 0; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		int found = 0;
		char msg[256];
		if (o->legacy && !legacy)
			continue;
		if ((rc = table_has(b, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
				    o->name, NULL, &found)) != 0)
			break;
		if (!found) {
			cb(cb_ctx, o->name, o->name, "table is missing");
			continue;
		}
		for (size_t k = 0; k < o->n_fields && rc == 0; k++) {
			rc = table_has(b, "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
				       o->name, o->fields[k].name, &found);
			if (rc == 0 && !found) {
				snprintf(msg, sizeof msg, "column %s is missing", o->fields[k].name);
				cb(cb_ctx, o->name, o->fields[k].name, msg);
			}
		}
		for (size_t k = 0; k < o->n_indexes && rc == 0; k++) {
			const envdbi_index_def *ix = &o->indexes[k];
			int uniq = 0;
			rc = table_has(b, "SELECT count(*) FROM pragma_index_list(?1) WHERE name = ?2",
				       o->name, ix->name, &found);
			if (rc == 0 && found)
				rc = table_has(b,
					       "SELECT count(*) FROM pragma_index_list(?1) WHERE name = ?2 AND \"unique\" = 1",
					       o->name, ix->name, &uniq);
			if (rc != 0)
				break;
			if (!found) {
				snprintf(msg, sizeof msg, "%sindex %s is missing (%s)",
					 ix->unique ? "unique " : "", ix->name, ix->description);
				cb(cb_ctx, o->name, ix->name, msg);
			} else if ((uniq != 0) != ix->unique) {
				snprintf(msg, sizeof msg, "index %s should %sbe unique (%s)", ix->name,
					 ix->unique ? "" : "not ", ix->description);
				cb(cb_ctx, o->name, ix->name, msg);
			}
		}
		bool immutable = false;
		for (size_t k = 0; k < o->n_fields; k++)
			if (o->fields[k].flags & ENVDBI_FF_IMMUTABLE)
				immutable = true;
		if (immutable && rc == 0) {
			char trig[128];
			snprintf(trig, sizeof trig, "%s_immutable", o->name);
			rc = table_has(b,
				       "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 AND name = ?2",
				       o->name, trig, &found);
			if (rc == 0 && !found) {
				snprintf(msg, sizeof msg, "trigger %s is missing (immutable fields)", trig);
				cb(cb_ctx, o->name, trig, msg);
			}
		}
	}
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */
/* ------------------------------------------------------------------------ */

/* One statement of transaction control (BEGIN IMMEDIATE, COMMIT, SAVEPOINT,
 * RELEASE), retried while busy.  Prepared once and kept in the statement
 * cache: parsing them again on every transaction cost a provisioning more
 * than its inserts.  Returns the raw SQLite code (SQLITE_OK = done). */
static int exec_retry(sq *b, const char *sql)
{
	int64_t deadline = mono_ms() + b->busy_timeout_ms;
	for (;;) {
		sqlite3_stmt *st = NULL;
		int rc = stmt_get(b, &st, sql) != 0 ? sqlite3_errcode(b->db) : sqlite3_step(st);
		if (st != NULL)
			stmt_put(b, st);
		if (rc == SQLITE_DONE || rc == SQLITE_ROW)
			rc = SQLITE_OK;
		else if (rc == SQLITE_OK)
			rc = SQLITE_ERROR; /* the prepare failed without a code */
		int primary = rc & 0xff;
		if (primary != SQLITE_BUSY && primary != SQLITE_LOCKED)
			return rc;
		if (mono_ms() >= deadline)
			return rc;
		usleep(2000 + randombytes_uniform(8000));
	}
}

static int sq_begin(sq *b, int depth)
{
	char sql[48];
	int rc;

	if (depth == 0)
		snprintf(sql, sizeof sql, "BEGIN IMMEDIATE");
	else
		snprintf(sql, sizeof sql, "SAVEPOINT envdbi_sp%d", depth);
	rc = exec_retry(b, sql);
	if (rc != SQLITE_OK)
		return db_error(b, rc, "begin transaction");
	return 0;
}

static void undo(sq *b, int depth)
{
	char sql[64];

	if (depth > 1) {
		snprintf(sql, sizeof sql, "ROLLBACK TO envdbi_sp%d; RELEASE envdbi_sp%d", depth - 1,
			 depth - 1);
		sqlite3_exec(b->db, sql, NULL, NULL, NULL);
	} else if (!sqlite3_get_autocommit(b->db)) {
		sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
	}
}

static int sq_commit(sq *b, int depth)
{
	char sql[48];
	int rc;

	if (depth > 1)
		snprintf(sql, sizeof sql, "RELEASE envdbi_sp%d", depth - 1);
	else
		snprintf(sql, sizeof sql, "COMMIT");
	rc = exec_retry(b, sql);
	if (rc != SQLITE_OK) {
		rc = db_error(b, rc, "commit");
		undo(b, depth);
	}
	return rc;
}

static void sq_rollback(sq *b, int depth)
{
	undo(b, depth);
}

/* ------------------------------------------------------------------------ */
/* Migrations                                                                */
/* ------------------------------------------------------------------------ */

static int create_objects(sq *b, bool legacy)
{
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		char *ddl = NULL;
		int rc;
		if (o->legacy != legacy)
			continue;
		if ((rc = envdbi_sql_ddl(&ddl, &envdbi_sql_dialect_sqlite, o)) != 0)
			return rc;
		rc = exec_sql(b, ddl, o->name);
		free(ddl);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Migration 1: every non-legacy object from the definitions. */
static int migration_1(sq *b)
{
	return create_objects(b, false);
}

/* Add every column of the (non-legacy) definitions that a table of an
 * older version lacks; a fresh file got them all from migration 1. */
static int add_missing_columns(sq *b)
{
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];

		if (o->legacy)
			continue;
		for (size_t k = 0; k < o->n_fields; k++) {
			char *ddl = NULL;
			int found = 0, rc;

			rc = table_has(b, "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
				       o->name, o->fields[k].name, &found);
			if (rc != 0)
				return rc;
			if (found)
				continue;
			if ((rc = envdbi_sql_add_column_ddl(&ddl, &envdbi_sql_dialect_sqlite, o,
							    &o->fields[k])) != 0)
				return rc;
			rc = exec_sql(b, ddl, o->name);
			free(ddl);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* Migration 2: sys_database_credential.aad_version (the associated data
 * binds the database address from version 2 on); existing rows are
 * version 1 (the column's default) until `envdb key rewrap`. */
static int migration_2(sq *b)
{
	return add_missing_columns(b);
}

/* Migration 3: the deployment identity (issue 16 §3).  Self-contained: it
 * creates the one-row table sys_deployment and gives it a new random id, so
 * a control plane made by `envdb init` and one of an earlier version (on
 * its first open, which takes the write lock to migrate) both get one.  The
 * id never changes: triggers refuse UPDATE and DELETE.  Not an object of
 * the definitions (schema.c): it is a property of the file, not a record
 * envdb manages.  Idempotent: a file whose version number was set back
 * keeps the id it has. */
static int migration_deployment_id(sq *b)
{
	static const char ddl[] =
		"CREATE TABLE IF NOT EXISTS \"sys_deployment\" ("
		"\"singleton\" INTEGER PRIMARY KEY NOT NULL CHECK (\"singleton\" = 1), "
		"\"id\" TEXT NOT NULL CHECK (length(\"id\") = 36 AND \"id\" NOT GLOB '*[^0-9a-f-]*'), "
		"\"created_at\" INTEGER NOT NULL);"
		"CREATE TRIGGER IF NOT EXISTS \"sys_deployment_immutable\" BEFORE UPDATE ON \"sys_deployment\" "
		"BEGIN SELECT RAISE(ABORT, 'deployment id: immutable'); END;"
		"CREATE TRIGGER IF NOT EXISTS \"sys_deployment_kept\" BEFORE DELETE ON \"sys_deployment\" "
		"BEGIN SELECT RAISE(ABORT, 'deployment id: cannot be deleted'); END;";
	char id[37];
	int rc;

	if ((rc = exec_sql(b, ddl, "create sys_deployment")) != 0)
		return rc;
	envdbi_uuid_new(id);
	rc = exec_raw(b,
		      "INSERT OR IGNORE INTO \"sys_deployment\" (\"singleton\", \"id\", \"created_at\") "
		      "VALUES (1, ?1, ?2)",
		      (envdbi_bind[]){ENVDBI_BT(id), ENVDBI_BI(envdbi_now())}, 2, NULL);
	return rc == SQLITE_DONE ? 0 : db_error(b, rc, "create the deployment id");
}

static int (*const migrations[ENVDBI_STORE_VERSION])(sq *) = {migration_1, migration_2,
							     migration_deployment_id};

/* The deployment id into info (every open, after the migrations). */
static int load_deployment_id(sq *b, envdbi_store_info *info)
{
	sqlite3_stmt *st = NULL;
	int rc, step;

	if ((rc = stmt_get(b, &st,
			   "SELECT \"id\", \"created_at\" FROM \"sys_deployment\" "
			   "WHERE \"singleton\" = 1")) == 0) {
		step = sqlite3_step(st);
		if (step == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 36 &&
		    envdbi_uuid_valid((const char *)sqlite3_column_text(st, 0))) {
			memcpy(info->deployment_id, sqlite3_column_text(st, 0), 37);
			info->deployment_created_at = sqlite3_column_int64(st, 1);
		} else if (step == SQLITE_ROW || step == SQLITE_DONE) {
			rc = envdbi_error(ENVDB_ERR_INVALID, NULL,
					  "control plane %s: no valid deployment id (table "
					  "sys_deployment %s)",
					  b->path, step == SQLITE_DONE ? "is empty" : "holds a malformed id");
		} else {
			rc = db_error(b, step, "read the deployment id");
		}
	}
	stmt_put(b, st);
	return rc;
}

static int count_tables(sq *b, int *n)
{
	return pragma_int(b,
			  "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
			  n);
}

static int migrate(sq *b, unsigned flags)
{
	int version = 0, app = 0, tables = 0, rc;
	bool txn = false;
	char sql[64];

	if ((rc = pragma_int(b, "PRAGMA user_version", &version)) != 0 ||
	    (rc = pragma_int(b, "PRAGMA application_id", &app)) != 0)
		return rc;
	if (app != 0 && app != ENVDBI_APPLICATION_ID)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "control plane %s: not an envdb control plane (application_id %#x)",
				    b->path, (unsigned)app);
	if (version > ENVDBI_STORE_VERSION)
		return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				    "control plane %s: schema version %d is newer than this libenvdb supports (%d): upgrade envdb",
				    b->path, version, ENVDBI_STORE_VERSION);
	if (version == ENVDBI_STORE_VERSION) {
		b->version = version;
		return 0;
	}
	if (version == 0) {
		if ((rc = count_tables(b, &tables)) != 0)
			return rc;
		if (tables > 0 && app != ENVDBI_APPLICATION_ID)
			return envdbi_error(ENVDB_ERR_INVALID, NULL,
					    "control plane %s: not an envdb control plane (it holds other tables)",
					    b->path);
		if (!(flags & ENVDB_OPEN_CREATE))
			return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
					    "control plane %s: not initialised (run envdb init)",
					    b->path);
	}
	if ((rc = sq_begin(b, 0)) != 0)
		return rc;
	txn = true;
	/* another process may have migrated while we waited for the lock */
	if ((rc = pragma_int(b, "PRAGMA user_version", &version)) != 0)
		goto out;
	if (version > ENVDBI_STORE_VERSION) {
		rc = envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				  "control plane %s: schema version %d is newer than this libenvdb supports (%d): upgrade envdb",
				  b->path, version, ENVDBI_STORE_VERSION);
		goto out;
	}
	for (int v = version; v < ENVDBI_STORE_VERSION; v++) {
		if ((rc = migrations[v](b)) != 0) {
			envdbi_error_prefix("migration %d: ", v + 1);
			goto out;
		}
	}
	snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
		 ENVDBI_APPLICATION_ID, ENVDBI_STORE_VERSION);
	if ((rc = exec_sql(b, sql, "set schema version")) != 0)
		goto out;
	rc = sq_commit(b, 1);
	txn = false;
	if (rc == 0) {
		b->version = ENVDBI_STORE_VERSION;
		envdbi_log(ENVDB_LOG_INFO, "control plane %s: migrated from version %d to %d",
			   b->path, version, ENVDBI_STORE_VERSION);
	}
out:
	if (txn)
		sq_rollback(b, 1);
	return rc;
}

static int ensure_legacy(sq *b)
{
	int missing = 0, rc;
	if ((rc = pragma_int(b,
			     "SELECT count(*) FROM (SELECT 'sys_tenant_database' AS n UNION ALL "
			     "SELECT 'sys_package_installation') WHERE n NOT IN "
			     "(SELECT name FROM sqlite_master WHERE type = 'table')",
			     &missing)) != 0)
		return rc;
	if (missing == 0)
		return 0;
	if ((rc = sq_begin(b, 0)) != 0)
		return rc;
	if ((rc = create_objects(b, true)) != 0) {
		sq_rollback(b, 1);
		return rc;
	}
	return sq_commit(b, 1);
}

/* ------------------------------------------------------------------------ */
/* Open                                                                      */
/* ------------------------------------------------------------------------ */

int envdbi_store_status_of_sqlite(int sqlite_rc)
{
	switch (sqlite_rc & 0xff) {
	case SQLITE_OK:
		return ENVDB_OK;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
	case SQLITE_FORMAT:
		return ENVDB_ERR_INVALID;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return ENVDB_ERR_BUSY;
	case SQLITE_NOMEM:
		return ENVDB_ERR_NOMEM;
	default:
		/* READONLY, CANTOPEN, PERM, IOERR, FULL, ...: the file is
		 * (probably) fine; the system refused to read or write it. */
		return ENVDB_ERR_IO;
	}
}

/* Why the control plane cannot be written, for the message: the errno of
 * a write-access probe of the file, else of its directory (where SQLite
 * creates the -wal and -shm files), else SQLite's own errno. */
static const char *unwritable_cause(char *buf, size_t cap, const char *path, int sys_errno)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) != 0 && errno != ENOENT) {
		snprintf(buf, cap, "the file is not writable: %s", strerror(errno));
		return buf;
	}
	if (slash == NULL)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	if (faccessat(AT_FDCWD, dir, W_OK, AT_EACCESS) != 0) {
		snprintf(buf, cap, "its directory %s is not writable (needed for the -wal and -shm "
			 "files): %s", dir, strerror(errno));
		return buf;
	}
	if (sys_errno != 0)
		snprintf(buf, cap, "%s", strerror(sys_errno));
	else
		snprintf(buf, cap, "cannot write it");
	return buf;
}

/* Report a failure of the first steps of open (the file opened read-only,
 * the first read failed) by its real cause: only a file SQLite calls
 * damaged or not a database is ENVDB_ERR_INVALID; a read-only file system
 * or file, or a missing permission, is ENVDB_ERR_IO and says so (an
 * operator told "not a database" might restore a healthy file). */
static int open_error(sq *b, int sqlite_rc)
{
	int status = envdbi_store_status_of_sqlite(sqlite_rc);
	char native[16], cause[PATH_MAX + 160];

	snprintf(native, sizeof native, "%d", sqlite_rc);
	if (status == ENVDB_ERR_INVALID)
		return envdbi_error(status, native,
				    "control plane %s: not an SQLite database (or damaged): %s",
				    b->path, sqlite3_errstr(sqlite_rc));
	if (status == ENVDB_ERR_IO)
		return envdbi_error(status, native,
				    "control plane %s: cannot be opened for writing: %s (sqlite: %s); "
				    "a read-only file system or missing permissions, not a damaged "
				    "file",
				    b->path,
				    unwritable_cause(cause, sizeof cause, b->path,
						     b->db ? sqlite3_system_errno(b->db) : 0),
				    b->db && sqlite3_errcode(b->db) != SQLITE_OK
					    ? sqlite3_errmsg(b->db)
					    : sqlite3_errstr(sqlite_rc));
	return db_error(b, sqlite_rc, "open");
}

/* "file:" URI of `path` with `query`, percent-escaping what a URI reserves. */
static char *file_uri(const char *path, const char *query)
{
	envdbi_strbuf u = ENVDBI_STRBUF_INIT;
	envdbi_strbuf_puts(&u, "file:");
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if (*p == '%' || *p == '?' || *p == '#' || *p <= 0x20 || *p >= 0x7f)
			envdbi_strbuf_printf(&u, "%%%02X", *p);
		else
			envdbi_strbuf_putc(&u, (char)*p);
	}
	envdbi_strbuf_printf(&u, "?%s", query);
	if (u.failed) {
		envdbi_strbuf_free(&u);
		return NULL;
	}
	return u.data;
}

static bool wal_exists(const char *path)
{
	char wal[PATH_MAX];
	struct stat st;
	if (snprintf(wal, sizeof wal, "%s-wal", path) >= (int)sizeof wal)
		return true; /* cannot tell: take the path that reads the WAL */
	return stat(wal, &st) == 0;
}

/* Copy everything of `src` (database "main") into `dst`. */
static int backup_all(sq *b, sqlite3 *dst, sqlite3 *src, const char *what)
{
	sqlite3_backup *bk = sqlite3_backup_init(dst, "main", src, "main");
	int rc;
	if (bk == NULL)
		return envdbi_error(ENVDB_ERR_IO, NULL, "control plane %s: %s: %s", b->path, what,
				    sqlite3_errmsg(dst));
	rc = sqlite3_backup_step(bk, -1);
	sqlite3_backup_finish(bk);
	if (rc != SQLITE_DONE)
		return envdbi_error((rc & 0xff) == SQLITE_BUSY ? ENVDB_ERR_BUSY : ENVDB_ERR_IO, NULL,
				    "control plane %s: %s: %s", b->path, what,
				    sqlite3_errstr(rc));
	return 0;
}

/*
 * Read the file at b->path into the in-memory connection b->db without
 * writing a byte to the file, its -wal or its -shm.  A read-only
 * connection alone is not enough: it sets read marks in the -shm and
 * rebuilds a stale wal-index there (a writer was killed), so the -shm is
 * opened read-only too (readonly_shm=1: SQLite then reads the WAL into
 * private memory when no other process has the file open, and uses an
 * existing read mark otherwise).  Without a -wal, such a connection would
 * create one: then nothing is to be replayed and the main file is read as
 * it is (immutable=1), and the copy is retried through the WAL if a -wal
 * appeared meanwhile (a writer started).
 */
static int open_snapshot(sq *b)
{
	int rc = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		bool wal = attempt > 0 || wal_exists(b->path);
		char *uri = file_uri(b->path, wal ? "mode=ro&readonly_shm=1" : "mode=ro&immutable=1");
		sqlite3 *src = NULL;
		if (uri == NULL)
			return nomem();
		rc = sqlite3_open_v2(uri, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
		free(uri);
		if (rc != SQLITE_OK) {
			rc = envdbi_error(ENVDB_ERR_IO, NULL, "control plane %s: open a snapshot: %s",
					  b->path, src ? sqlite3_errmsg(src) : sqlite3_errstr(rc));
			sqlite3_close_v2(src);
			return rc;
		}
		sqlite3_busy_timeout(src, (int)(b->busy_timeout_ms > 0x7fffffff ? 0x7fffffff
										 : b->busy_timeout_ms));
		rc = backup_all(b, b->db, src, "copy a snapshot");
		sqlite3_close_v2(src);
		if (rc != 0)
			return rc;
		if (wal || !wal_exists(b->path))
			return 0;
	}
	return rc;
}

static int sq_open(sq **out, const envdbi_store_config *cfg, unsigned flags,
		   envdbi_store_info *info)
{
	const char *path = cfg->path;
	sq *b = NULL;
	struct stat stt;
	int rc = 0;

	*out = NULL;
	if (path == NULL || path[0] == '\0')
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "control plane: open: no path");
	if (!(flags & ENVDB_OPEN_CREATE) && stat(path, &stt) != 0)
		return envdbi_error(errno == ENOENT ? ENVDB_ERR_NOT_FOUND : ENVDB_ERR_IO, NULL,
				    "control plane %s: %s%s", path, strerror(errno),
				    errno == ENOENT ? " (run envdb init)" : "");
	if ((b = calloc(1, sizeof *b)) == NULL || (b->path = strdup(path)) == NULL) {
		free(b);
		return nomem();
	}
	b->busy_timeout_ms = cfg->busy_timeout_ms > 0 ? cfg->busy_timeout_ms : 5000;
	b->legacy = cfg->legacy;

	/* SQLite would create the file with 0644 & ~umask, and its -wal and
	 * -shm files with the mode of the main file: create it owner-only
	 * first.  An existing file keeps the mode its owner gave it. */
	if (flags & ENVDB_OPEN_SNAPSHOT) {
		b->snapshot = true;
		if ((rc = sqlite3_open_v2(":memory:", &b->db,
					  SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL)) !=
		    SQLITE_OK) {
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "control plane %s: snapshot: %s",
					  path, sqlite3_errstr(rc));
			goto fail;
		}
		if ((rc = open_snapshot(b)) != 0)
			goto fail;
		flags &= ~(unsigned)ENVDB_OPEN_CREATE;
	} else if ((flags & ENVDB_OPEN_CREATE) && strcmp(path, ":memory:") != 0) {
		int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

		if (fd >= 0) {
			(void)fchmod(fd, 0600); /* exactly: the umask may have removed our own bits */
			close(fd);
		} else if (errno != EEXIST) {
			rc = envdbi_error(ENVDB_ERR_IO, NULL, "control plane %s: create: %s", path,
					  strerror(errno));
			goto fail;
		}
	}
	/* Whoever else can write the file can rewrite the registry (URLs,
	 * members, ciphertexts): an existing group- or other-writable control
	 * plane is refused, not used silently. */
	if (strcmp(path, ":memory:") != 0 && stat(path, &stt) == 0 &&
	    (stt.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		rc = envdbi_error(ENVDB_ERR_CONFIG, NULL,
				  "control plane %s: refused: the file is writable by group or "
				  "others (mode %04o, owner uid %u); make it 0600 (chmod 600)",
				  path, (unsigned)(stt.st_mode & 07777), (unsigned)stt.st_uid);
		goto fail;
	}
	if (!b->snapshot)
		rc = sqlite3_open_v2(path, &b->db,
				     SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX |
					     ((flags & ENVDB_OPEN_CREATE) ? SQLITE_OPEN_CREATE : 0),
				     NULL);
	if (rc != SQLITE_OK) {
		rc = open_error(b, rc);
		goto fail;
	}
	/* SQLite falls back to read-only when it cannot open the file for
	 * writing (EROFS, EACCES); envdb always writes (the WAL index, the
	 * last access time), so say so now rather than fail later. */
	if (strcmp(path, ":memory:") != 0 && sqlite3_db_readonly(b->db, "main") == 1) {
		rc = open_error(b, SQLITE_READONLY);
		goto fail;
	}
	sqlite3_extended_result_codes(b->db, 1);
	sqlite3_busy_timeout(b->db, (int)(b->busy_timeout_ms > 0x7fffffff ? 0x7fffffff
									  : b->busy_timeout_ms));
	if ((rc = exec_sql(b, "PRAGMA foreign_keys = ON", "enable foreign keys")) != 0)
		goto fail;
	/* A new file only (an existing one keeps its page size): every commit
	 * writes one page per b-tree it touches (15 for a provisioning's last
	 * commit), whatever the few hundred bytes it changes in each; 2 KiB
	 * pages halve the log written per provisioning (89 to 44 KB measured,
	 * bench_scale) at the same size at rest and the same read cost (1 KiB:
	 * 28 KB, but a resolve's point query 5% slower). */
	if ((rc = exec_sql(b, "PRAGMA page_size = 2048", "set the page size")) != 0)
		goto fail;
	/* the first read tells whether this is a database at all */
	{
		sqlite3_stmt *st = NULL;

		rc = sqlite3_prepare_v2(b->db, "PRAGMA schema_version", -1, &st, NULL);
		if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
			rc = SQLITE_OK;
		sqlite3_finalize(st);
		if (rc != SQLITE_OK) {
			rc = open_error(b, rc);
			goto fail;
		}
	}
	if (!b->snapshot && (rc = exec_sql(b, "PRAGMA journal_mode = WAL", "enable WAL")) != 0)
		goto fail;
	if (!b->snapshot && (rc = exec_sql(b, "PRAGMA synchronous = FULL", "set synchronous")) != 0)
		goto fail;
	if ((rc = migrate(b, flags)) != 0 || (rc = load_deployment_id(b, info)) != 0)
		goto fail;
	if (b->legacy && (rc = ensure_legacy(b)) != 0)
		goto fail;
	envdbi_sqlite_track(b, path, true); /* restore refuses an open one */
	info->version = b->version;
	info->snapshot = b->snapshot;
	*out = b;
	return 0;
fail:
	sq_close(b);
	return rc;
}

static void sq_close(sq *b)
{
	if (b == NULL)
		return;
	envdbi_sqlite_track(b, NULL, false);
	if (b->db != NULL) {
		if (!sqlite3_get_autocommit(b->db))
			sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
		stmt_cache_clear(b);
		sqlite3_close_v2(b->db);
	}
	free(b->path);
	free(b);
}

static const char *sq_describe(const sq *b)
{
	return b->path;
}

static int sq_snapshot(sq **out, sq *src, envdbi_store_info *info)
{
	envdbi_store_config cfg = {"sqlite", ":memory:", NULL, NULL, src->busy_timeout_ms, false};
	sq *b = NULL;
	int rc;

	*out = NULL;
	if ((rc = sq_open(&b, &cfg, ENVDB_OPEN_CREATE, info)) != 0)
		return rc;
	stmt_cache_clear(b);
	rc = backup_all(src, b->db, src->db, "copy a snapshot");
	if (rc == 0)
		rc = load_deployment_id(b, info);
	if (rc != 0) {
		sq_close(b);
		return rc;
	}
	b->legacy = src->legacy;
	b->version = src->version;
	b->snapshot = true;
	free(b->path);
	if ((b->path = strdup(src->path)) == NULL) {
		sq_close(b);
		return nomem();
	}
	info->version = b->version;
	info->snapshot = true;
	*out = b;
	return 0;
}

static int sq_bulk(sq *b, bool on, int64_t cache_kib, int64_t wal_pages)
{
	char sql[160];
	if (b->snapshot)
		return 0;
	/* temp_store MEMORY: the undo pages of each savepoint (the
	 * sub-journal) stay in memory instead of spilling to a temporary file
	 * past 64 KiB — 41 pwrite() per migrated row.  That journal only
	 * undoes a savepoint of a live transaction; crash recovery is the
	 * WAL's, untouched. */
	if (on)
		snprintf(sql, sizeof sql,
			 "PRAGMA cache_size = %lld; PRAGMA wal_autocheckpoint = %lld; "
			 "PRAGMA temp_store = MEMORY",
			 -(long long)cache_kib, (long long)wal_pages);
	else
		snprintf(sql, sizeof sql, "PRAGMA cache_size = -2000; PRAGMA wal_autocheckpoint = 1000; "
					  "PRAGMA temp_store = DEFAULT");
	return exec_sql(b, sql, "bulk settings");
}

static int sq_backup(sq *b, const char *path)
{
	return envdbi_sqlite_backup(b->db, b->path, path);
}

sqlite3 *envdbi_store_sqlite_lock(envdbi_store *s)
{
	if (envdbi_store_ops(s) != &envdbi_store_backend_sqlite)
		return NULL;
	envdbi_store_lock(s);
	return envdbi_store_state(s)->db;
}

void envdbi_store_sqlite_unlock(envdbi_store *s)
{
	if (envdbi_store_ops(s) == &envdbi_store_backend_sqlite)
		envdbi_store_unlock(s);
}

const envdbi_store_backend_ops envdbi_store_backend_sqlite = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.describe = sq_describe,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.select = sq_select,
	.insert = sq_insert,
	.update = sq_update,
	.exec = sq_exec,
	.ints = sq_ints,
	.strings = sq_strings,
	.find_conflict = sq_find_conflict,
	.resolve_get = sq_resolve_get,
	.find_duplicates = sq_find_duplicates,
	.find_dangling = sq_find_dangling,
	.verify_schema = sq_verify_schema,
	.snapshot = sq_snapshot,
	.bulk = sq_bulk,
	.backup = sq_backup,
	.restore = envdbi_sqlite_restore,
};
