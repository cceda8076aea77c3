/*
 * core/store.c — the control-plane store on a local SQLite file (store.h).
 *
 * Everything here is generated from the object definitions (schema.h): the
 * DDL of migration 1, the INSERT/SELECT/UPDATE statements, the binding of a
 * record's fields and the reading of a row into a record.  The typed
 * functions of store.h are thin wrappers that add defaults and messages.
 *
 * Concurrency: one recursive mutex per store serializes every use of the
 * connection; a transaction holds it from begin() to commit()/rollback().
 * Across processes SQLite's locks apply: BEGIN IMMEDIATE takes the write
 * lock up front and is retried on SQLITE_BUSY until the busy timeout.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "schema.h"
#include "store.h"

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

struct envdbi_store {
	sqlite3 *db;
	char *path;
	int64_t busy_timeout_ms;
	bool legacy;
	int version;
	char deployment_id[37];       /* sys_deployment.id, read at open */
	int64_t deployment_created_at; /* sys_deployment.created_at */
	pthread_mutex_t lock; /* recursive */
	pthread_t owner;      /* thread of the open transaction (depth > 0) */
	int depth;            /* transaction depth of `owner` */
	bool snapshot;        /* an in-memory copy (ENVDB_OPEN_SNAPSHOT) */
	cached_stmt cache[STMT_CACHE];
	sqlite3_stmt *kind_st[SK__N][SK_OBJECTS];
	bool kind_in_use[SK__N][SK_OBJECTS];
	/* "SELECT <every column> FROM <table> " per object, made once: the
	 * reads of a migration formatted it column by column at every call */
	char *select_head[SK_OBJECTS];
};

/* A value bound to a query parameter. */
typedef struct bindv {
	const char *s;
	int64_t i;
	bool is_int;
} bindv;
#define BT(x) ((bindv){(x), 0, false})
#define BI(x) ((bindv){NULL, (x), true})

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

/* UUID v7 (RFC 9562): 48 bits of Unix time in milliseconds, then 74
 * random bits.  Time-ordered ids make every b-tree keyed by an id (each
 * table's primary key, and the indexes on environment_id,
 * environment_database_id and the database name derived from the id) grow
 * at its right edge: an insert dirties the last leaf, which the previous
 * insert already dirtied, instead of a random one — fewer pages written per
 * commit and no half-full pages from splits in the middle. */
void envdbi_uuid_new(char out[37])
{
	unsigned char b[16];
	static const char hex[] = "0123456789abcdef";
	struct timespec ts;
	uint64_t ms;
	if (sodium_init() < 0)
		abort(); /* libsodium cannot work without a CSPRNG: nothing sane to do */
	randombytes_buf(b, sizeof b);
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)(ms >> (40 - 8 * i));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x70); /* version 7 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 9562 variant */
	size_t o = 0;
	for (size_t i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0x0f];
	}
	out[o] = '\0';
}

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

int64_t envdbi_now(void)
{
	/* The test clock is looked up only in a process whose environment
	 * had ENVDB_TEST_CLOCK or ENVDB_TEST_NOW at its first call: getenv()
	 * scans the whole environment, which would cost a cached resolve
	 * (core/resolve.c) an eighth of its time. */
	static int hook = -1;
	int h = __atomic_load_n(&hook, __ATOMIC_RELAXED);
	if (h < 0) {
		h = getenv("ENVDB_TEST_CLOCK") != NULL || getenv("ENVDB_TEST_NOW") != NULL;
		__atomic_store_n(&hook, h, __ATOMIC_RELAXED);
	}
	if (!h)
		return (int64_t)time(NULL);
	const char *t = getenv("ENVDB_TEST_NOW");
	if (t != NULL && *t != '\0') {
		char *end;
		long long v = strtoll(t, &end, 10);
		if (*end == '\0' && v > 0)
			return (int64_t)v;
	}
	return (int64_t)time(NULL);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

static void records_free(const envdbi_object_def *o, void **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		envdbi_record_free(o, v[i]);
	free(v);
}

void envdb_environment_free(envdb_environment *e)
{
	envdbi_record_free(ENVDBI_OBJ_ENVIRONMENT, e);
}
void envdb_database_free(envdb_database *d)
{
	envdbi_record_free(ENVDBI_OBJ_DATABASE, d);
}
void envdb_credential_free(envdb_credential *c)
{
	envdbi_record_free(ENVDBI_OBJ_CREDENTIAL, c);
}
void envdb_member_free(envdb_member *m)
{
	envdbi_record_free(ENVDBI_OBJ_MEMBER, m);
}
void envdb_environment_list_free(envdb_environment **v, size_t n)
{
	records_free(ENVDBI_OBJ_ENVIRONMENT, (void **)v, n);
}
void envdb_database_list_free(envdb_database **v, size_t n)
{
	records_free(ENVDBI_OBJ_DATABASE, (void **)v, n);
}
void envdb_credential_list_free(envdb_credential **v, size_t n)
{
	records_free(ENVDBI_OBJ_CREDENTIAL, (void **)v, n);
}
void envdb_member_list_free(envdb_member **v, size_t n)
{
	records_free(ENVDBI_OBJ_MEMBER, (void **)v, n);
}
void envdbi_tenant_db_free(envdbi_tenant_db_row *r)
{
	envdbi_record_free(ENVDBI_OBJ_TENANT_DB, r);
}
void envdbi_tenant_db_list_free(envdbi_tenant_db_row **v, size_t n)
{
	records_free(ENVDBI_OBJ_TENANT_DB, (void **)v, n);
}
void envdbi_package_list_free(envdbi_package_row **v, size_t n)
{
	records_free(ENVDBI_OBJ_PACKAGE, (void **)v, n);
}

/* ------------------------------------------------------------------------ */
/* Errors, locking, statements                                               */
/* ------------------------------------------------------------------------ */

static int db_error_msg(envdbi_store *s, int rc, const char *what, const char *msg)
{
	char native[16];
	int primary = rc & 0xff;
	snprintf(native, sizeof native, "%d", rc);
	if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
		return envdbi_error(ENVDB_ERR_BUSY, native,
				    "control plane %s: %s: locked by another process beyond the busy timeout (%lld ms)",
				    s->path, what, (long long)s->busy_timeout_ms);
	if (primary == SQLITE_NOMEM)
		return envdbi_error(ENVDB_ERR_NOMEM, native, "control plane %s: %s: out of memory",
				    s->path, what);
	return envdbi_error(ENVDB_ERR_IO, native, "control plane %s: %s: %s", s->path, what, msg);
}

static int db_error(envdbi_store *s, int rc, const char *what)
{
	return db_error_msg(s, rc, what, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

static int nomem(void)
{
	return envdbi_error(ENVDB_ERR_NOMEM, NULL, "control plane: out of memory");
}

static void lock(envdbi_store *s)
{
	pthread_mutex_lock(&s->lock);
}

static void unlock(envdbi_store *s)
{
	pthread_mutex_unlock(&s->lock);
}

static int stmt_get(envdbi_store *s, sqlite3_stmt **out, const char *sql)
{
	cached_stmt *free_slot = NULL;
	for (size_t i = 0; i < STMT_CACHE; i++) {
		cached_stmt *c = &s->cache[i];
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
	int rc = sqlite3_prepare_v3(s->db, sql, -1, free_slot ? SQLITE_PREPARE_PERSISTENT : 0, &st,
				    NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "prepare");
	if (free_slot != NULL && (free_slot->sql = strdup(sql)) != NULL) {
		free_slot->st = st;
		free_slot->in_use = true;
	}
	*out = st;
	return 0;
}

static void stmt_put(envdbi_store *s, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < STMT_CACHE; i++) {
		if (s->cache[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			s->cache[i].in_use = false;
			return;
		}
	}
	sqlite3_finalize(st);
}

static void stmt_cache_clear(envdbi_store *s)
{
	for (size_t i = 0; i < STMT_CACHE; i++) {
		sqlite3_finalize(s->cache[i].st);
		free(s->cache[i].sql);
		s->cache[i] = (cached_stmt){NULL, NULL, false};
	}
	for (size_t k = 0; k < SK__N; k++)
		for (size_t i = 0; i < SK_OBJECTS; i++) {
			sqlite3_finalize(s->kind_st[k][i]);
			s->kind_st[k][i] = NULL;
			s->kind_in_use[k][i] = false;
		}
	for (size_t i = 0; i < SK_OBJECTS; i++) {
		free(s->select_head[i]);
		s->select_head[i] = NULL;
	}
}

static void put_columns(envdbi_strbuf *b, const envdbi_object_def *o);

/* The index of `o` in the object table, SK_OBJECTS when it has no slot. */
static size_t kind_index(const envdbi_object_def *o)
{
	uintptr_t p = (uintptr_t)o, base = (uintptr_t)envdbi_schema_objects;

	if (p < base || p >= base + envdbi_schema_n_objects * sizeof(*o))
		return SK_OBJECTS;
	return (p - base) / sizeof(*o) < SK_OBJECTS ? (p - base) / sizeof(*o) : SK_OBJECTS;
}

/* The text of statement `kind` of object `o`. */
static void kind_sql(envdbi_strbuf *sql, enum stmt_kind kind, const envdbi_object_def *o)
{
	switch (kind) {
	case SK_INSERT:
		envdbi_strbuf_printf(sql, "INSERT INTO \"%s\" (", o->name);
		put_columns(sql, o);
		envdbi_strbuf_puts(sql, ") VALUES (");
		for (size_t i = 0; i < o->n_fields; i++)
			envdbi_strbuf_printf(sql, "%s?%zu", i ? ", " : "", i + 1);
		envdbi_strbuf_putc(sql, ')');
		break;
	case SK__N:
		break;
	}
}

/* Statement `kind` of object `o`, prepared on first use; one in use
 * already (a nested call) gets a one-off copy.  Give it back with
 * kind_put().  The caller holds the lock. */
static int kind_get(envdbi_store *s, sqlite3_stmt **out, enum stmt_kind kind,
		    const envdbi_object_def *o)
{
	size_t i = kind_index(o);
	bool keep = i < SK_OBJECTS && !s->kind_in_use[kind][i];
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL;
	int rc;

	if (keep && s->kind_st[kind][i] != NULL) {
		s->kind_in_use[kind][i] = true;
		*out = s->kind_st[kind][i];
		return 0;
	}
	kind_sql(&sql, kind, o);
	if (sql.failed) {
		envdbi_strbuf_free(&sql);
		return nomem();
	}
	rc = sqlite3_prepare_v3(s->db, sql.data, -1, keep ? SQLITE_PREPARE_PERSISTENT : 0, &st,
				NULL);
	envdbi_strbuf_free(&sql);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "prepare");
	if (keep) {
		s->kind_st[kind][i] = st;
		s->kind_in_use[kind][i] = true;
	}
	*out = st;
	return 0;
}

static void kind_put(envdbi_store *s, sqlite3_stmt *st, enum stmt_kind kind,
		     const envdbi_object_def *o)
{
	size_t i = kind_index(o);

	if (st == NULL)
		return;
	if (i < SK_OBJECTS && s->kind_st[kind][i] == st) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		s->kind_in_use[kind][i] = false;
		return;
	}
	sqlite3_finalize(st);
}

static int bind_values(envdbi_store *s, sqlite3_stmt *st, int first, const bindv *b, size_t nb)
{
	for (size_t i = 0; i < nb; i++) {
		int idx = first + (int)i;
		int rc = b[i].is_int ? sqlite3_bind_int64(st, idx, b[i].i)
			 : b[i].s   ? sqlite3_bind_text(st, idx, b[i].s, -1, SQLITE_STATIC)
				    : sqlite3_bind_null(st, idx);
		if (rc != SQLITE_OK)
			return db_error(s, rc, "bind");
	}
	return 0;
}

/* Bind field f of `rec` to parameter idx.  TIME (and optional INT) 0 is NULL. */
static int bind_field(envdbi_store *s, sqlite3_stmt *st, int idx, const envdbi_field_def *f,
		      const void *rec)
{
	int rc;
	if (envdbi_ftype_is_text(f->type)) {
		const char *v = envdbi_field_cstr(f, rec);
		rc = v ? sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, idx);
	} else {
		int64_t v = envdbi_field_int(f, rec);
		if (v == 0 && (f->type == ENVDBI_FT_TIME || (!f->required && f->type == ENVDBI_FT_INT)))
			rc = sqlite3_bind_null(st, idx);
		else
			rc = sqlite3_bind_int64(st, idx, v);
	}
	return rc == SQLITE_OK ? 0 : db_error(s, rc, "bind");
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

static void put_columns(envdbi_strbuf *b, const envdbi_object_def *o)
{
	for (size_t i = 0; i < o->n_fields; i++)
		envdbi_strbuf_printf(b, "%s\"%s\"", i ? ", " : "", o->fields[i].name);
}

/* SELECT every field of `o` + tail; rows into a new array.  Takes the lock. */
static int select_rows(envdbi_store *s, const envdbi_object_def *o, const char *tail,
		       const bindv *b, size_t nb, void ***out, size_t *n)
{
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL;
	void **v = NULL;
	size_t count = 0, cap = 0;
	int rc;
	size_t k = kind_index(o);
	*out = NULL;
	*n = 0;
	lock(s);
	if (k < SK_OBJECTS && s->select_head[k] == NULL) {
		envdbi_strbuf head = ENVDBI_STRBUF_INIT;

		envdbi_strbuf_puts(&head, "SELECT ");
		put_columns(&head, o);
		envdbi_strbuf_printf(&head, " FROM \"%s\" ", o->name);
		if (!head.failed)
			s->select_head[k] = head.data;
		else
			envdbi_strbuf_free(&head);
	}
	if (k < SK_OBJECTS && s->select_head[k] != NULL) {
		envdbi_strbuf_puts(&sql, s->select_head[k]);
	} else {
		envdbi_strbuf_puts(&sql, "SELECT ");
		put_columns(&sql, o);
		envdbi_strbuf_printf(&sql, " FROM \"%s\" ", o->name);
	}
	envdbi_strbuf_puts(&sql, tail);
	if (sql.failed) {
		rc = nomem();
		goto out;
	}
	if ((rc = stmt_get(s, &st, sql.data)) != 0)
		goto out;
	if ((rc = bind_values(s, st, 1, b, nb)) != 0)
		goto out;
	for (;;) {
		int step = sqlite3_step(st);
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			rc = db_error(s, step, o->name);
			goto out;
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			void **nv = realloc(v, ncap * sizeof *nv);
			if (nv == NULL) {
				rc = nomem();
				goto out;
			}
			v = nv;
			cap = ncap;
		}
		if ((rc = read_record(&v[count], o, st)) != 0)
			goto out;
		count++;
	}
	*out = v;
	*n = count;
	v = NULL;
	count = 0;
out:
	stmt_put(s, st);
	unlock(s);
	records_free(o, v, count);
	envdbi_strbuf_free(&sql);
	return rc;
}

/* One row or ENVDB_ERR_NOT_FOUND "<what>: not found" (what NULL: not
 * reported, the caller composes the message). */
static int select_one(envdbi_store *s, const envdbi_object_def *o, const char *tail,
		      const bindv *b, size_t nb, void **out, const char *what)
{
	void **v = NULL;
	size_t n = 0;
	*out = NULL;
	int rc = select_rows(s, o, tail, b, nb, &v, &n);
	if (rc != 0)
		return rc;
	if (n == 0) {
		free(v);
		if (what == NULL)
			return ENVDB_ERR_NOT_FOUND; /* the caller reports */
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "%s: not found", what);
	}
	*out = v[0];
	for (size_t i = 1; i < n; i++)
		envdbi_record_free(o, v[i]);
	free(v);
	return 0;
}

/* Execute a statement without result rows; *changes (may be NULL) gets the
 * number of changed rows.  Returns the raw SQLite code (SQLITE_DONE = ok);
 * the caller maps it.  The caller holds the lock. */
static int exec_raw(envdbi_store *s, const char *sql, const bindv *b, size_t nb, int *changes)
{
	sqlite3_stmt *st = NULL;
	int rc = stmt_get(s, &st, sql);
	if (rc != 0)
		return SQLITE_ERROR;
	if (bind_values(s, st, 1, b, nb) != 0) {
		stmt_put(s, st);
		return SQLITE_ERROR;
	}
	rc = sqlite3_step(st);
	if (changes != NULL)
		*changes = sqlite3_changes(s->db);
	stmt_put(s, st);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */
/* ------------------------------------------------------------------------ */

/* One statement of transaction control (BEGIN IMMEDIATE, COMMIT, SAVEPOINT,
 * RELEASE), retried while busy.  Prepared once and kept in the statement
 * cache: parsing them again on every transaction cost a provisioning more
 * than its inserts.  Returns the raw SQLite code (SQLITE_OK = done). */
static int exec_retry(envdbi_store *s, const char *sql)
{
	int64_t deadline = mono_ms() + s->busy_timeout_ms;
	for (;;) {
		sqlite3_stmt *st = NULL;
		int rc = stmt_get(s, &st, sql) != 0 ? sqlite3_errcode(s->db) : sqlite3_step(st);
		if (st != NULL)
			stmt_put(s, st);
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

static bool owns(envdbi_store *s)
{
	return s->depth > 0 && pthread_equal(s->owner, pthread_self());
}

int envdbi_store_begin(envdbi_store *s)
{
	char sql[48];
	int rc;
	lock(s);
	if (s->depth == 0)
		snprintf(sql, sizeof sql, "BEGIN IMMEDIATE");
	else
		snprintf(sql, sizeof sql, "SAVEPOINT envdbi_sp%d", s->depth);
	rc = exec_retry(s, sql);
	if (rc != SQLITE_OK) {
		rc = db_error(s, rc, "begin transaction");
		unlock(s);
		return rc;
	}
	if (s->depth == 0)
		s->owner = pthread_self();
	s->depth++;
	return 0; /* the lock stays held until commit/rollback */
}

int envdbi_store_commit(envdbi_store *s)
{
	char sql[96];
	int rc;
	lock(s);
	if (!owns(s)) {
		unlock(s);
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "control plane %s: commit without a transaction", s->path);
	}
	if (s->depth > 1)
		snprintf(sql, sizeof sql, "RELEASE envdbi_sp%d", s->depth - 1);
	else
		snprintf(sql, sizeof sql, "COMMIT");
	rc = exec_retry(s, sql);
	if (rc != SQLITE_OK) {
		rc = db_error(s, rc, "commit");
		if (s->depth > 1) {
			snprintf(sql, sizeof sql, "ROLLBACK TO envdbi_sp%d; RELEASE envdbi_sp%d",
				 s->depth - 1, s->depth - 1);
			sqlite3_exec(s->db, sql, NULL, NULL, NULL);
		} else if (!sqlite3_get_autocommit(s->db)) {
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		}
	}
	s->depth--;
	unlock(s); /* this call's lock */
	unlock(s); /* begin()'s lock */
	return rc;
}

void envdbi_store_rollback(envdbi_store *s)
{
	char sql[64];
	lock(s);
	if (!owns(s)) {
		unlock(s);
		return;
	}
	if (s->depth > 1) {
		snprintf(sql, sizeof sql, "ROLLBACK TO envdbi_sp%d; RELEASE envdbi_sp%d",
			 s->depth - 1, s->depth - 1);
		sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	} else if (!sqlite3_get_autocommit(s->db)) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	}
	s->depth--;
	unlock(s);
	unlock(s);
}

bool envdbi_store_in_transaction(envdbi_store *s)
{
	lock(s);
	bool r = owns(s);
	unlock(s);
	return r;
}

/* ------------------------------------------------------------------------ */
/* Labels and constraint messages                                            */
/* ------------------------------------------------------------------------ */

static char *strprintf(const char *fmt, ...) ENVDB_PRINTF(1, 2);
static char *strprintf(const char *fmt, ...)
{
	va_list ap;
	char *out = NULL;
	va_start(ap, fmt);
	if (vasprintf(&out, fmt, ap) < 0)
		out = NULL;
	va_end(ap);
	return out;
}

static const char *nz(const char *s)
{
	return s ? s : "(null)";
}

/* "ORG/SLUG" of an environment id, or the id itself when unknown.  malloc'd. */
static char *env_name(envdbi_store *s, const char *env_id)
{
	void *e = NULL;
	char *out;
	if (env_id != NULL &&
	    select_one(s, ENVDBI_OBJ_ENVIRONMENT, "WHERE \"id\" = ?1", (bindv[]){BT(env_id)}, 1,
		       &e, NULL) == 0) {
		envdb_environment *env = e;
		out = strprintf("%s/%s", nz(env->organization_id), nz(env->slug));
		envdb_environment_free(env);
	} else {
		out = strdup(nz(env_id));
	}
	return out;
}

static char *db_name(envdbi_store *s, const char *db_id)
{
	void *d = NULL;
	char *out;
	if (db_id != NULL &&
	    select_one(s, ENVDBI_OBJ_DATABASE, "WHERE \"id\" = ?1", (bindv[]){BT(db_id)}, 1, &d,
		       NULL) == 0) {
		out = strdup(nz(((envdb_database *)d)->database_name));
		envdb_database_free(d);
	} else {
		out = strdup(nz(db_id));
	}
	return out;
}

/* The label naming a row in messages ("environment acme/prod"). malloc'd. */
static char *record_label(envdbi_store *s, const envdbi_object_def *o, const void *rec)
{
	if (o == ENVDBI_OBJ_ENVIRONMENT) {
		const envdb_environment *e = rec;
		return strprintf("environment %s/%s", nz(e->organization_id), nz(e->slug));
	}
	if (o == ENVDBI_OBJ_DATABASE) {
		const envdb_database *d = rec;
		return strprintf("database %s", nz(d->database_name));
	}
	if (o == ENVDBI_OBJ_CREDENTIAL) {
		const envdb_credential *c = rec;
		char *db = db_name(s, c->environment_database_id);
		char *out = strprintf("credential %s of database %s", nz(c->id), nz(db));
		free(db);
		return out;
	}
	if (o == ENVDBI_OBJ_MEMBER) {
		const envdb_member *m = rec;
		char *env = env_name(s, m->environment_id);
		char *out = strprintf("environment %s: member %s", nz(env), nz(m->user_id));
		free(env);
		return out;
	}
	if (o == ENVDBI_OBJ_TENANT_DB) {
		const envdbi_tenant_db_row *t = rec;
		return strprintf("legacy tenant database %s", nz(t->database_name));
	}
	if (o == ENVDBI_OBJ_PACKAGE) {
		const envdbi_package_row *p = rec;
		return strprintf("package installation %s of %s", nz(p->package_id),
				 nz(p->tenant_id));
	}
	return strprintf("%s", o->label);
}

/* Does the new record satisfy the partial-index predicate of ix? */
static bool record_matches_where(envdbi_store *s, const envdbi_object_def *o,
				 const envdbi_index_def *ix, const void *rec)
{
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL;
	bool match = true; /* when unsure, consider the index */
	envdbi_strbuf_puts(&sql, "SELECT 1 FROM (SELECT ");
	for (size_t i = 0; i < o->n_fields; i++)
		envdbi_strbuf_printf(&sql, "%s?%zu AS \"%s\"", i ? ", " : "", i + 1,
				     o->fields[i].name);
	envdbi_strbuf_printf(&sql, ") WHERE %s", ix->where);
	if (sql.failed || stmt_get(s, &st, sql.data) != 0)
		goto out;
	for (size_t i = 0; i < o->n_fields; i++)
		if (bind_field(s, st, (int)i + 1, &o->fields[i], rec) != 0)
			goto out;
	match = sqlite3_step(st) == SQLITE_ROW;
out:
	stmt_put(s, st);
	envdbi_strbuf_free(&sql);
	return match;
}

/* The existing row (other than rec's id) sharing rec's key in unique index
 * ix, or NULL. */
static void *find_conflict(envdbi_store *s, const envdbi_object_def *o,
			   const envdbi_index_def *ix, const void *rec)
{
	const envdbi_field_def *pk = envdbi_schema_primary(o);
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL;
	void *other = NULL;
	int p = 1;
	if (ix->where != NULL && !record_matches_where(s, o, ix, rec))
		return NULL;
	envdbi_strbuf_puts(&sql, "SELECT ");
	put_columns(&sql, o);
	envdbi_strbuf_printf(&sql, " FROM \"%s\" WHERE \"%s\" IS NOT ?1", o->name, pk->name);
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
		envdbi_strbuf_printf(&sql, " AND \"%s\" = ?%zu", ix->columns[c], c + 2);
	if (ix->where != NULL)
		envdbi_strbuf_printf(&sql, " AND (%s)", ix->where);
	envdbi_strbuf_puts(&sql, " LIMIT 1");
	if (sql.failed || stmt_get(s, &st, sql.data) != 0)
		goto out;
	if (bind_field(s, st, p++, pk, rec) != 0)
		goto out;
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
		if (bind_field(s, st, p++, envdbi_schema_field(o, ix->columns[c]), rec) != 0)
			goto out;
	if (sqlite3_step(st) == SQLITE_ROW && read_record(&other, o, st) != 0)
		other = NULL;
out:
	stmt_put(s, st);
	envdbi_strbuf_free(&sql);
	return other;
}

static int conflict_error(envdbi_store *s, const envdbi_object_def *o, const void *rec,
			  const char *label, const char *sqlmsg, bool insert)
{
	const envdbi_field_def *pk = envdbi_schema_primary(o);
	const char *id = envdbi_field_cstr(pk, rec);
	int rc;
	/* the primary key first (an update keeps its own id) */
	void *same = NULL;
	if (insert && id != NULL &&
	    select_one(s, o, "WHERE \"id\" = ?1", (bindv[]){BT(id)}, 1, &same, NULL) == 0) {
		envdbi_record_free(o, same);
		return envdbi_error(ENVDB_ERR_EXISTS, NULL, "%s: id %s already exists", label, id);
	}
	for (size_t i = 0; i < o->n_indexes; i++) {
		const envdbi_index_def *ix = &o->indexes[i];
		if (!ix->unique)
			continue;
		void *other = find_conflict(s, o, ix, rec);
		if (other == NULL)
			continue;
		const char *inv = ix->invariant;
		if (strcmp(inv, "unique_slug") == 0) {
			const envdb_environment *e = rec;
			rc = envdbi_error(ENVDB_ERR_EXISTS, NULL, "environment %s/%s: already exists",
					  nz(e->organization_id), nz(e->slug));
		} else if (strcmp(inv, "one_default_per_org") == 0) {
			const envdb_environment *e = rec, *x = other;
			rc = envdbi_error(ENVDB_ERR_EXISTS, NULL,
					  "organization %s: already has a default environment (%s)",
					  nz(e->organization_id), nz(x->slug));
		} else if (strcmp(inv, "one_database_per_environment") == 0) {
			const envdb_database *d = rec, *x = other;
			char *env = env_name(s, d->environment_id);
			rc = envdbi_error(ENVDB_ERR_EXISTS, NULL,
					  "environment %s: already has a database (%s)", nz(env),
					  nz(x->database_name));
			free(env);
		} else if (strcmp(inv, "unique_database_name") == 0) {
			const envdb_database *d = rec;
			rc = envdbi_error(ENVDB_ERR_EXISTS, NULL, "database %s: already exists",
					  nz(d->database_name));
		} else if (strcmp(inv, "one_active_credential") == 0) {
			const envdb_credential *c = rec;
			char *db = db_name(s, c->environment_database_id);
			rc = envdbi_error(ENVDB_ERR_EXISTS, NULL,
					  "database %s: already has an active %s credential", nz(db),
					  nz(c->authorization));
			free(db);
		} else if (strcmp(inv, "unique_member") == 0) {
			const envdb_member *m = rec;
			char *env = env_name(s, m->environment_id);
			rc = envdbi_error(ENVDB_ERR_EXISTS, NULL,
					  "environment %s: user %s is already a member", nz(env),
					  nz(m->user_id));
			free(env);
		} else if (strcmp(inv, "unique_legacy_database_name") == 0) {
			const envdbi_tenant_db_row *t = rec;
			rc = envdbi_error(ENVDB_ERR_EXISTS, NULL,
					  "legacy tenant database %s: already exists",
					  nz(t->database_name));
		} else {
			rc = envdbi_error(ENVDB_ERR_EXISTS, NULL, "%s: already exists (%s: %s)",
					  label, ix->name, ix->description);
		}
		envdbi_record_free(o, other);
		return rc;
	}
	return envdbi_error(ENVDB_ERR_EXISTS, NULL, "%s: already exists (%s)", label, sqlmsg);
}

static int fk_error(envdbi_store *s, const envdbi_object_def *o, const void *rec,
		    const char *label)
{
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (f->type != ENVDBI_FT_REF)
			continue;
		const char *ref_id = envdbi_field_cstr(f, rec);
		const envdbi_object_def *ro = envdbi_schema_object(f->ref);
		void *x = NULL;
		if (ro == NULL || ref_id == NULL)
			continue;
		if (select_one(s, ro, "WHERE \"id\" = ?1", (bindv[]){BT(ref_id)}, 1, &x, NULL) == 0) {
			envdbi_record_free(ro, x);
			continue;
		}
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "%s: %s %s: not found", label,
				    ro->label, ref_id);
	}
	return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "%s: a referenced row does not exist",
			    label);
}

/* Map the SQLite result of a write of `rec` to a status. */
static int write_error_msg(envdbi_store *s, const envdbi_object_def *o, const void *rec,
			   const char *label, int rc, const char *what, const char *sqlmsg)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return conflict_error(s, o, rec, label, sqlmsg, strcmp(what, "insert") == 0);
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return fk_error(s, o, rec, label);
	case SQLITE_CONSTRAINT_TRIGGER:
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: %s: an immutable field changed",
				    label, what);
	case SQLITE_CONSTRAINT_CHECK:
	case SQLITE_CONSTRAINT_NOTNULL:
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: %s: %s", label, what, sqlmsg);
	default:
		if ((rc & 0xff) == SQLITE_CONSTRAINT)
			return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: %s: %s", label, what,
					    sqlmsg);
		return db_error_msg(s, rc, what, sqlmsg);
	}
}

static int write_error(envdbi_store *s, const envdbi_object_def *o, const void *rec,
		       const char *label, int rc, const char *what)
{
	char sqlmsg[256];
	snprintf(sqlmsg, sizeof sqlmsg, "%s", sqlite3_errmsg(s->db));
	return write_error_msg(s, o, rec, label, rc, what, sqlmsg);
}

/* ------------------------------------------------------------------------ */
/* Generic record operations                                                 */
/* ------------------------------------------------------------------------ */

/* Fill id, defaults and required times of a record about to be inserted. */
static int apply_defaults(const envdbi_object_def *o, void *rec)
{
	int64_t now = envdbi_now();
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (envdbi_ftype_is_text(f->type)) {
			char **v = envdbi_field_str(f, rec);
			if (*v != NULL)
				continue;
			if (f->flags & ENVDBI_FF_PRIMARY) {
				char id[37];
				envdbi_uuid_new(id);
				*v = strdup(id);
			} else if (f->default_value != NULL) {
				*v = strdup(f->default_value);
			} else {
				continue;
			}
			if (*v == NULL)
				return nomem();
		} else if (envdbi_field_int(f, rec) == 0) {
			if (f->type == ENVDBI_FT_TIME && f->required)
				envdbi_field_set_int(f, rec, now);
			else if (f->default_value != NULL)
				envdbi_field_set_int(f, rec, strtoll(f->default_value, NULL, 10));
		}
	}
	return 0;
}

/* Validate and insert a record whose defaults are applied. */
static int record_insert(envdbi_store *s, const envdbi_object_def *o, const void *rec)
{
	sqlite3_stmt *st = NULL;
	char *label = NULL;
	int rc;
	lock(s);
	/* The label (for messages) of a credential or member costs a query:
	 * made only when there is something to report. */
	if (envdbi_schema_check_record(o, rec, o->label) != 0) {
		if ((label = record_label(s, o, rec)) == NULL)
			rc = nomem();
		else
			rc = envdbi_schema_check_record(o, rec, label);
		goto out;
	}
	if ((rc = kind_get(s, &st, SK_INSERT, o)) != 0)
		goto out;
	for (size_t i = 0; i < o->n_fields; i++)
		if ((rc = bind_field(s, st, (int)i + 1, &o->fields[i], rec)) != 0)
			goto out;
	int step = sqlite3_step(st);
	kind_put(s, st, SK_INSERT, o);
	st = NULL;
	if (step != SQLITE_DONE) {
		char sqlmsg[256];

		/* Before the label's query replaces SQLite's message. */
		snprintf(sqlmsg, sizeof sqlmsg, "%s", sqlite3_errmsg(s->db));
		if ((label = record_label(s, o, rec)) == NULL)
			rc = nomem();
		else
			rc = write_error_msg(s, o, rec, label, step, "insert", sqlmsg);
	}
out:
	kind_put(s, st, SK_INSERT, o);
	unlock(s);
	free(label);
	return rc;
}

static bool field_equal(const envdbi_field_def *f, const void *a, const void *b)
{
	if (!envdbi_ftype_is_text(f->type))
		return envdbi_field_int(f, a) == envdbi_field_int(f, b);
	const char *x = envdbi_field_cstr(f, a), *y = envdbi_field_cstr(f, b);
	if (x == NULL || y == NULL)
		return x == y;
	return strcmp(x, y) == 0;
}

static int get_by_id(envdbi_store *s, const envdbi_object_def *o, void **out, const char *id)
{
	char what[96];
	if (id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "%s: no id given", o->label);
	snprintf(what, sizeof what, "%s %s", o->label, id);
	return select_one(s, o, "WHERE \"id\" = ?1", (bindv[]){BT(id)}, 1, out, what);
}

/*
 * Overwrite the mutable fields of row rec->id.  Immutable fields must equal
 * the stored ones (ENVDB_ERR_INVALID otherwise).  updated_at is set to now.
 */
static int record_update(envdbi_store *s, const envdbi_object_def *o, const void *rec_in)
{
	const envdbi_field_def *pk = envdbi_schema_primary(o);
	const envdbi_field_def *upd = envdbi_schema_field(o, "updated_at");
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL;
	void *cur = NULL, *rec = NULL;
	char *label = NULL;
	int rc, p = 1;
	bool txn = false;

	if ((rc = envdbi_store_begin(s)) != 0)
		return rc;
	txn = true;
	if ((rc = get_by_id(s, o, &cur, envdbi_field_cstr(pk, rec_in))) != 0)
		goto out;
	if ((rec = envdbi_record_dup(o, rec_in)) == NULL || (label = record_label(s, o, cur)) == NULL) {
		rc = nomem();
		goto out;
	}
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if ((f->flags & ENVDBI_FF_IMMUTABLE) && !field_equal(f, cur, rec)) {
			rc = envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: update: %s is immutable",
					  label, f->name);
			goto out;
		}
	}
	if (upd != NULL)
		envdbi_field_set_int(upd, rec, envdbi_now());
	if ((rc = envdbi_schema_check_record(o, rec, label)) != 0)
		goto out;
	envdbi_strbuf_printf(&sql, "UPDATE \"%s\" SET ", o->name);
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (f->flags & ENVDBI_FF_IMMUTABLE)
			continue;
		envdbi_strbuf_printf(&sql, "%s\"%s\" = ?%d", p > 1 ? ", " : "", f->name, p);
		p++;
	}
	envdbi_strbuf_printf(&sql, " WHERE \"%s\" = ?%d", pk->name, p);
	if (sql.failed) {
		rc = nomem();
		goto out;
	}
	if ((rc = stmt_get(s, &st, sql.data)) != 0)
		goto out;
	p = 1;
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (f->flags & ENVDBI_FF_IMMUTABLE)
			continue;
		if ((rc = bind_field(s, st, p++, f, rec)) != 0)
			goto out;
	}
	if ((rc = bind_field(s, st, p, pk, rec)) != 0)
		goto out;
	int step = sqlite3_step(st);
	stmt_put(s, st);
	st = NULL;
	if (step != SQLITE_DONE) {
		rc = write_error(s, o, rec, label, step, "update");
		goto out;
	}
	rc = envdbi_store_commit(s);
	txn = false;
out:
	stmt_put(s, st);
	if (txn)
		envdbi_store_rollback(s);
	envdbi_record_free(o, cur);
	envdbi_record_free(o, rec);
	free(label);
	envdbi_strbuf_free(&sql);
	return rc;
}

/* DELETE ... WHERE tail; NOT_FOUND "<what>: not found" when nothing matched. */
static int delete_where(envdbi_store *s, const envdbi_object_def *o, const char *tail,
			const bindv *b, size_t nb, const char *what)
{
	char *sql = strprintf("DELETE FROM \"%s\" %s", o->name, tail);
	int changes = 0, rc = 0;
	if (sql == NULL)
		return nomem();
	lock(s);
	int step = exec_raw(s, sql, b, nb, &changes);
	if (step != SQLITE_DONE)
		rc = db_error(s, step, "delete");
	else if (changes == 0)
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "%s: not found", what);
	unlock(s);
	free(sql);
	return rc;
}

/* Insert a copy of `rec_in` with defaults; the id used goes to id_out. */
static int insert_copy(envdbi_store *s, const envdbi_object_def *o, const void *rec_in,
		       char id_out[37], int (*fixup)(void *rec))
{
	void *rec;
	int rc;
	if (rec_in == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "%s: insert: no row given", o->label);
	/* A shallow copy: the caller's strings are borrowed for the call; the
	 * defaults and the fixup fill only NULL fields, with strings of their
	 * own (freed below: the fields whose pointer changed). */
	if ((rec = malloc(o->record_size)) == NULL)
		return nomem();
	memcpy(rec, rec_in, o->record_size);
	if ((rc = apply_defaults(o, rec)) != 0 || (fixup && (rc = fixup(rec)) != 0))
		goto out;
	if ((rc = record_insert(s, o, rec)) != 0)
		goto out;
	if (id_out != NULL)
		snprintf(id_out, 37, "%s", envdbi_field_cstr(envdbi_schema_primary(o), rec));
out:
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		char *v;

		if (envdbi_ftype_is_text(f->type) &&
		    (v = *envdbi_field_str(f, rec)) != envdbi_field_cstr(f, rec_in))
			free(v);
	}
	free(rec);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Open / close / migrations                                                 */
/* ------------------------------------------------------------------------ */

static int pragma_int(envdbi_store *s, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int(st, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK || rc == SQLITE_DONE ? 0 : db_error(s, rc, sql);
}

static int exec_sql(envdbi_store *s, const char *sql, const char *what)
{
	char *err = NULL;
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		int status = (rc & 0xff) == SQLITE_BUSY ? ENVDB_ERR_BUSY : ENVDB_ERR_IO;
		rc = envdbi_error(status, NULL, "control plane %s: %s: %s", s->path, what,
				  err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return rc;
	}
	return 0;
}

static int create_objects(envdbi_store *s, bool legacy)
{
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		char *ddl = NULL;
		int rc;
		if (o->legacy != legacy)
			continue;
		if ((rc = envdbi_schema_ddl(&ddl, o)) != 0)
			return rc;
		rc = exec_sql(s, ddl, o->name);
		free(ddl);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int table_has(envdbi_store *s, const char *sql, const char *a, const char *b, int *found);

/* Migration 1: every non-legacy object from the definitions. */
static int migration_1(envdbi_store *s)
{
	return create_objects(s, false);
}

/* Add every column of the (non-legacy) definitions that a table of an
 * older version lacks; a fresh file got them all from migration 1. */
static int add_missing_columns(envdbi_store *s)
{
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];

		if (o->legacy)
			continue;
		for (size_t k = 0; k < o->n_fields; k++) {
			char *ddl = NULL;
			int found = 0, rc;

			rc = table_has(s, "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
				       o->name, o->fields[k].name, &found);
			if (rc != 0)
				return rc;
			if (found)
				continue;
			if ((rc = envdbi_schema_add_column_ddl(&ddl, o, &o->fields[k])) != 0)
				return rc;
			rc = exec_sql(s, ddl, o->name);
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
static int migration_2(envdbi_store *s)
{
	return add_missing_columns(s);
}

/* Migration 3: the deployment identity (issue 16 §3).  Self-contained: it
 * creates the one-row table sys_deployment and gives it a new random id, so
 * a control plane made by `envdb init` and one of an earlier version (on
 * its first open, which takes the write lock to migrate) both get one.  The
 * id never changes: triggers refuse UPDATE and DELETE.  Not an object of
 * the definitions (schema.c): it is a property of the file, not a record
 * envdb manages.  Idempotent: a file whose version number was set back
 * keeps the id it has. */
static int migration_deployment_id(envdbi_store *s)
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

	if ((rc = exec_sql(s, ddl, "create sys_deployment")) != 0)
		return rc;
	envdbi_uuid_new(id);
	rc = exec_raw(s,
		      "INSERT OR IGNORE INTO \"sys_deployment\" (\"singleton\", \"id\", \"created_at\") "
		      "VALUES (1, ?1, ?2)",
		      (bindv[]){BT(id), BI(envdbi_now())}, 2, NULL);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "create the deployment id");
}

static int (*const migrations[ENVDBI_STORE_VERSION])(envdbi_store *) = {
	migration_1, migration_2, migration_deployment_id};

/* The deployment id into s (every open, after the migrations). */
static int load_deployment_id(envdbi_store *s)
{
	sqlite3_stmt *st = NULL;
	int rc, step;

	lock(s);
	if ((rc = stmt_get(s, &st,
			   "SELECT \"id\", \"created_at\" FROM \"sys_deployment\" "
			   "WHERE \"singleton\" = 1")) == 0) {
		step = sqlite3_step(st);
		if (step == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 36 &&
		    envdbi_uuid_valid((const char *)sqlite3_column_text(st, 0))) {
			memcpy(s->deployment_id, sqlite3_column_text(st, 0), 37);
			s->deployment_created_at = sqlite3_column_int64(st, 1);
		} else if (step == SQLITE_ROW || step == SQLITE_DONE) {
			rc = envdbi_error(ENVDB_ERR_INVALID, NULL,
					  "control plane %s: no valid deployment id (table "
					  "sys_deployment %s)",
					  s->path, step == SQLITE_DONE ? "is empty" : "holds a malformed id");
		} else {
			rc = db_error(s, step, "read the deployment id");
		}
	}
	stmt_put(s, st);
	unlock(s);
	return rc;
}

static int count_tables(envdbi_store *s, int *n)
{
	return pragma_int(s,
			  "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
			  n);
}

static int migrate(envdbi_store *s, unsigned flags)
{
	int version = 0, app = 0, tables = 0, rc;
	bool txn = false;
	char sql[64];

	if ((rc = pragma_int(s, "PRAGMA user_version", &version)) != 0 ||
	    (rc = pragma_int(s, "PRAGMA application_id", &app)) != 0)
		return rc;
	if (app != 0 && app != ENVDBI_APPLICATION_ID)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "control plane %s: not an envdb control plane (application_id %#x)",
				    s->path, (unsigned)app);
	if (version > ENVDBI_STORE_VERSION)
		return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				    "control plane %s: schema version %d is newer than this libenvdb supports (%d): upgrade envdb",
				    s->path, version, ENVDBI_STORE_VERSION);
	if (version == ENVDBI_STORE_VERSION) {
		s->version = version;
		return 0;
	}
	if (version == 0) {
		if ((rc = count_tables(s, &tables)) != 0)
			return rc;
		if (tables > 0 && app != ENVDBI_APPLICATION_ID)
			return envdbi_error(ENVDB_ERR_INVALID, NULL,
					    "control plane %s: not an envdb control plane (it holds other tables)",
					    s->path);
		if (!(flags & ENVDB_OPEN_CREATE))
			return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
					    "control plane %s: not initialised (run envdb init)",
					    s->path);
	}
	if ((rc = envdbi_store_begin(s)) != 0)
		return rc;
	txn = true;
	/* another process may have migrated while we waited for the lock */
	if ((rc = pragma_int(s, "PRAGMA user_version", &version)) != 0)
		goto out;
	if (version > ENVDBI_STORE_VERSION) {
		rc = envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				  "control plane %s: schema version %d is newer than this libenvdb supports (%d): upgrade envdb",
				  s->path, version, ENVDBI_STORE_VERSION);
		goto out;
	}
	for (int v = version; v < ENVDBI_STORE_VERSION; v++) {
		if ((rc = migrations[v](s)) != 0) {
			envdbi_error_prefix("migration %d: ", v + 1);
			goto out;
		}
	}
	snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
		 ENVDBI_APPLICATION_ID, ENVDBI_STORE_VERSION);
	if ((rc = exec_sql(s, sql, "set schema version")) != 0)
		goto out;
	rc = envdbi_store_commit(s);
	txn = false;
	if (rc == 0) {
		s->version = ENVDBI_STORE_VERSION;
		envdbi_log(ENVDB_LOG_INFO, "control plane %s: migrated from version %d to %d",
			   s->path, version, ENVDBI_STORE_VERSION);
	}
out:
	if (txn)
		envdbi_store_rollback(s);
	return rc;
}

static int ensure_legacy(envdbi_store *s)
{
	int missing = 0, rc;
	if ((rc = pragma_int(s,
			     "SELECT count(*) FROM (SELECT 'sys_tenant_database' AS n UNION ALL "
			     "SELECT 'sys_package_installation') WHERE n NOT IN "
			     "(SELECT name FROM sqlite_master WHERE type = 'table')",
			     &missing)) != 0)
		return rc;
	if (missing == 0)
		return 0;
	if ((rc = envdbi_store_begin(s)) != 0)
		return rc;
	if ((rc = create_objects(s, true)) != 0) {
		envdbi_store_rollback(s);
		return rc;
	}
	return envdbi_store_commit(s);
}

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
static int open_error(envdbi_store *s, int sqlite_rc)
{
	int status = envdbi_store_status_of_sqlite(sqlite_rc);
	char native[16], cause[PATH_MAX + 160];

	snprintf(native, sizeof native, "%d", sqlite_rc);
	if (status == ENVDB_ERR_INVALID)
		return envdbi_error(status, native,
				    "control plane %s: not an SQLite database (or damaged): %s",
				    s->path, sqlite3_errstr(sqlite_rc));
	if (status == ENVDB_ERR_IO)
		return envdbi_error(status, native,
				    "control plane %s: cannot be opened for writing: %s (sqlite: %s); "
				    "a read-only file system or missing permissions, not a damaged "
				    "file",
				    s->path,
				    unwritable_cause(cause, sizeof cause, s->path,
						     s->db ? sqlite3_system_errno(s->db) : 0),
				    s->db && sqlite3_errcode(s->db) != SQLITE_OK
					    ? sqlite3_errmsg(s->db)
					    : sqlite3_errstr(sqlite_rc));
	return db_error(s, sqlite_rc, "open");
}

/* ------------------------------------------------------------------------ */
/* Snapshots: a private in-memory copy, read without writing to the file     */
/* ------------------------------------------------------------------------ */

/* "file:" URI of `path` with `query`, percent-escaping what a URI reserves. */
static char *file_uri(const char *path, const char *query)
{
	envdbi_strbuf b = ENVDBI_STRBUF_INIT;
	envdbi_strbuf_puts(&b, "file:");
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if (*p == '%' || *p == '?' || *p == '#' || *p <= 0x20 || *p >= 0x7f)
			envdbi_strbuf_printf(&b, "%%%02X", *p);
		else
			envdbi_strbuf_putc(&b, (char)*p);
	}
	envdbi_strbuf_printf(&b, "?%s", query);
	if (b.failed) {
		envdbi_strbuf_free(&b);
		return NULL;
	}
	return b.data;
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
static int backup_all(envdbi_store *s, sqlite3 *dst, sqlite3 *src, const char *what)
{
	sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
	int rc;
	if (b == NULL)
		return envdbi_error(ENVDB_ERR_IO, NULL, "control plane %s: %s: %s", s->path, what,
				    sqlite3_errmsg(dst));
	rc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE)
		return envdbi_error((rc & 0xff) == SQLITE_BUSY ? ENVDB_ERR_BUSY : ENVDB_ERR_IO, NULL,
				    "control plane %s: %s: %s", s->path, what,
				    sqlite3_errstr(rc));
	return 0;
}

/*
 * Read the file at s->path into the in-memory connection s->db without
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
static int open_snapshot(envdbi_store *s)
{
	int rc = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		bool wal = attempt > 0 || wal_exists(s->path);
		char *uri = file_uri(s->path, wal ? "mode=ro&readonly_shm=1" : "mode=ro&immutable=1");
		sqlite3 *src = NULL;
		if (uri == NULL)
			return nomem();
		rc = sqlite3_open_v2(uri, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
		free(uri);
		if (rc != SQLITE_OK) {
			rc = envdbi_error(ENVDB_ERR_IO, NULL, "control plane %s: open a snapshot: %s",
					  s->path, src ? sqlite3_errmsg(src) : sqlite3_errstr(rc));
			sqlite3_close_v2(src);
			return rc;
		}
		sqlite3_busy_timeout(src, (int)(s->busy_timeout_ms > 0x7fffffff ? 0x7fffffff
										 : s->busy_timeout_ms));
		rc = backup_all(s, s->db, src, "copy a snapshot");
		sqlite3_close_v2(src);
		if (rc != 0)
			return rc;
		if (wal || !wal_exists(s->path))
			return 0;
	}
	return rc;
}

int envdbi_store_snapshot(envdbi_store **out, envdbi_store *src)
{
	envdbi_store *s = NULL;
	int rc;
	*out = NULL;
	if ((rc = envdbi_store_open_path(&s, ":memory:", src->busy_timeout_ms, false,
					 ENVDB_OPEN_CREATE)) != 0)
		return rc;
	stmt_cache_clear(s);
	lock(src);
	rc = backup_all(src, s->db, src->db, "copy a snapshot");
	unlock(src);
	if (rc != 0) {
		envdbi_store_close(s);
		return rc;
	}
	s->legacy = src->legacy;
	s->version = src->version;
	s->snapshot = true;
	free(s->path);
	if ((s->path = strdup(src->path)) == NULL) {
		envdbi_store_close(s);
		return nomem();
	}
	*out = s;
	return 0;
}

bool envdbi_store_is_snapshot(const envdbi_store *s)
{
	return s->snapshot;
}

int envdbi_store_open_path(envdbi_store **out, const char *path, int64_t busy_timeout_ms,
			   bool legacy_shim, unsigned flags)
{
	envdbi_store *s = NULL;
	pthread_mutexattr_t attr;
	struct stat stt;
	char sql[64];
	int rc;

	if (out == NULL || path == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "control plane: open: no path");
	*out = NULL;
	if ((rc = envdbi_schema_validate(envdbi_schema_objects, envdbi_schema_n_objects)) != 0)
		return rc;
	if (sodium_init() < 0)
		return envdbi_error(ENVDB_ERR_GENERIC, NULL, "control plane: libsodium init failed");
	if (!(flags & ENVDB_OPEN_CREATE) && stat(path, &stt) != 0)
		return envdbi_error(errno == ENOENT ? ENVDB_ERR_NOT_FOUND : ENVDB_ERR_IO, NULL,
				    "control plane %s: %s%s", path, strerror(errno),
				    errno == ENOENT ? " (run envdb init)" : "");
	if ((s = calloc(1, sizeof *s)) == NULL || (s->path = strdup(path)) == NULL) {
		free(s);
		return nomem();
	}
	s->busy_timeout_ms = busy_timeout_ms > 0 ? busy_timeout_ms : 5000;
	s->legacy = legacy_shim;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&s->lock, &attr);
	pthread_mutexattr_destroy(&attr);

	/* SQLite would create the file with 0644 & ~umask, and its -wal and
	 * -shm files with the mode of the main file: create it owner-only
	 * first.  An existing file keeps the mode its owner gave it. */
	if (flags & ENVDB_OPEN_SNAPSHOT) {
		s->snapshot = true;
		if ((rc = sqlite3_open_v2(":memory:", &s->db,
					  SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL)) !=
		    SQLITE_OK) {
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "control plane %s: snapshot: %s",
					  path, sqlite3_errstr(rc));
			goto fail;
		}
		if ((rc = open_snapshot(s)) != 0)
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
	if (!s->snapshot)
		rc = sqlite3_open_v2(path, &s->db,
				     SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX |
					     ((flags & ENVDB_OPEN_CREATE) ? SQLITE_OPEN_CREATE : 0),
				     NULL);
	if (rc != SQLITE_OK) {
		rc = open_error(s, rc);
		goto fail;
	}
	/* SQLite falls back to read-only when it cannot open the file for
	 * writing (EROFS, EACCES); envdb always writes (the WAL index, the
	 * last access time), so say so now rather than fail later. */
	if (strcmp(path, ":memory:") != 0 && sqlite3_db_readonly(s->db, "main") == 1) {
		rc = open_error(s, SQLITE_READONLY);
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, (int)(s->busy_timeout_ms > 0x7fffffff ? 0x7fffffff
									  : s->busy_timeout_ms));
	if ((rc = exec_sql(s, "PRAGMA foreign_keys = ON", "enable foreign keys")) != 0)
		goto fail;
	/* A new file only (an existing one keeps its page size): every commit
	 * writes one page per b-tree it touches (15 for a provisioning's last
	 * commit), whatever the few hundred bytes it changes in each; 2 KiB
	 * pages halve the log written per provisioning (89 to 44 KB measured,
	 * bench_scale) at the same size at rest and the same read cost (1 KiB:
	 * 28 KB, but a resolve's point query 5% slower). */
	if ((rc = exec_sql(s, "PRAGMA page_size = 2048", "set the page size")) != 0)
		goto fail;
	/* the first read tells whether this is a database at all */
	{
		sqlite3_stmt *st = NULL;

		rc = sqlite3_prepare_v2(s->db, "PRAGMA schema_version", -1, &st, NULL);
		if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
			rc = SQLITE_OK;
		sqlite3_finalize(st);
		if (rc != SQLITE_OK) {
			rc = open_error(s, rc);
			goto fail;
		}
	}
	snprintf(sql, sizeof sql, "PRAGMA journal_mode = WAL");
	if (!s->snapshot && (rc = exec_sql(s, sql, "enable WAL")) != 0)
		goto fail;
	if (!s->snapshot && (rc = exec_sql(s, "PRAGMA synchronous = FULL", "set synchronous")) != 0)
		goto fail;
	if ((rc = migrate(s, flags)) != 0 || (rc = load_deployment_id(s)) != 0)
		goto fail;
	if (s->legacy && (rc = ensure_legacy(s)) != 0)
		goto fail;
	envdbi_store_legacy_notice(s); /* migration support */
	envdbi_store_track(s, path, true); /* restore refuses an open one */
	*out = s;
	return 0;
fail:
	envdbi_store_close(s);
	return rc;
}

int envdbi_store_open(envdbi_store **out, const envdbi_manifest *m, unsigned flags)
{
	if (out == NULL || m == NULL || m->control_plane == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "control plane: open: no manifest or control_plane path");
	return envdbi_store_open_path(out, m->control_plane, m->busy_timeout_ms, m->legacy_shim,
				      flags);
}

void envdbi_store_close(envdbi_store *s)
{
	if (s == NULL)
		return;
	envdbi_store_track(s, NULL, false);
	if (s->db != NULL) {
		if (!sqlite3_get_autocommit(s->db))
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		stmt_cache_clear(s);
		sqlite3_close_v2(s->db);
	}
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}

int envdbi_store_version(const envdbi_store *s)
{
	return s->version;
}

const char *envdbi_store_deployment_id(const envdbi_store *s)
{
	return s->deployment_id;
}

int64_t envdbi_store_deployment_created_at(const envdbi_store *s)
{
	return s->deployment_created_at;
}

bool envdbi_store_legacy(const envdbi_store *s)
{
	return s->legacy;
}

const char *envdbi_store_path(const envdbi_store *s)
{
	return s->path;
}

sqlite3 *envdbi_store_sqlite_lock(envdbi_store *s)
{
	lock(s);
	return s->db;
}

void envdbi_store_sqlite_unlock(envdbi_store *s)
{
	unlock(s);
}

/* ------------------------------------------------------------------------ */
/* sys_environment                                                           */
/* ------------------------------------------------------------------------ */

static int env_fixup(void *rec)
{
	envdb_environment *e = rec;
	if (e->display_name == NULL && e->slug != NULL && (e->display_name = strdup(e->slug)) == NULL)
		return nomem();
	return 0;
}

int envdbi_store_env_insert(envdbi_store *s, const envdb_environment *e, char id_out[37])
{
	return insert_copy(s, ENVDBI_OBJ_ENVIRONMENT, e, id_out, env_fixup);
}

int envdbi_store_env_get(envdbi_store *s, envdb_environment **out, const char *id)
{
	return get_by_id(s, ENVDBI_OBJ_ENVIRONMENT, (void **)out, id);
}

int envdbi_store_env_get_by_slug(envdbi_store *s, envdb_environment **out,
				 const char *organization_id, const char *slug)
{
	char what[192];
	snprintf(what, sizeof what, "environment %s/%s", nz(organization_id), nz(slug));
	return select_one(s, ENVDBI_OBJ_ENVIRONMENT,
			  "WHERE \"organization_id\" = ?1 AND \"slug\" = ?2",
			  (bindv[]){BT(organization_id), BT(slug)}, 2, (void **)out, what);
}

int envdbi_store_env_get_default(envdbi_store *s, envdb_environment **out,
				 const char *organization_id)
{
	char what[160];
	snprintf(what, sizeof what, "organization %s: default environment", nz(organization_id));
	return select_one(s, ENVDBI_OBJ_ENVIRONMENT,
			  "WHERE \"organization_id\" = ?1 AND \"is_default\" = 1 AND "
			  "\"status\" NOT IN ('archived', 'failed')",
			  (bindv[]){BT(organization_id)}, 1, (void **)out, what);
}

/* 1 when `sql` (a SELECT EXISTS with one text parameter) says yes, 0 when
 * no, an error status (`what` names it) when the store fails. */
static int exists_by(envdbi_store *s, const char *sql, const char *arg, const char *what)
{
	sqlite3_stmt *st = NULL;
	int rc, step;

	lock(s);
	if ((rc = stmt_get(s, &st, sql)) != 0)
		goto out;
	if ((rc = bind_values(s, st, 1, (bindv[]){BT(arg)}, 1)) != 0)
		goto out;
	step = sqlite3_step(st);
	if (step != SQLITE_ROW)
		rc = db_error(s, step, what);
	else
		rc = sqlite3_column_int(st, 0) ? 1 : 0;
out:
	stmt_put(s, st);
	unlock(s);
	return rc;
}

int envdbi_store_env_org_exists(envdbi_store *s, const char *organization_id)
{
	return exists_by(s,
			 "SELECT EXISTS (SELECT 1 FROM \"sys_environment\" WHERE "
			 "\"organization_id\" = ?1)",
			 organization_id, "look up the environments of an organization");
}

int envdbi_store_env_list(envdbi_store *s, envdb_environment ***out, size_t *n,
			  const envdbi_env_filter *f)
{
	envdbi_env_filter none = ENVDBI_ENV_FILTER_INIT;
	envdbi_strbuf tail = ENVDBI_STRBUF_INIT;
	bindv b[4];
	size_t nb = 0;
	int rc;
	if (f == NULL)
		f = &none;
	envdbi_strbuf_puts(&tail, "WHERE 1");
	if (f->organization_id) {
		b[nb++] = BT(f->organization_id);
		envdbi_strbuf_printf(&tail, " AND \"organization_id\" = ?%zu", nb);
	}
	if (f->status) {
		b[nb++] = BT(f->status);
		envdbi_strbuf_printf(&tail, " AND \"status\" = ?%zu", nb);
	}
	if (f->lease_expired_at > 0) {
		b[nb++] = BI(f->lease_expired_at);
		envdbi_strbuf_printf(&tail,
				     " AND \"lease_expires_at\" > 0 AND \"lease_expires_at\" <= ?%zu",
				     nb);
	}
	if (f->delete_due_at > 0) {
		b[nb++] = BI(f->delete_due_at);
		envdbi_strbuf_printf(&tail, " AND \"delete_after\" > 0 AND \"delete_after\" <= ?%zu",
				     nb);
	}
	envdbi_strbuf_puts(&tail, " ORDER BY \"organization_id\", \"slug\"");
	if (tail.failed)
		rc = nomem();
	else
		rc = select_rows(s, ENVDBI_OBJ_ENVIRONMENT, tail.data, b, nb, (void ***)out, n);
	envdbi_strbuf_free(&tail);
	return rc;
}

int envdbi_store_env_update(envdbi_store *s, const envdb_environment *e)
{
	if (e == NULL || e->id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "environment: update: no id");
	return record_update(s, ENVDBI_OBJ_ENVIRONMENT, e);
}

/* Compare-and-set of a status field; `extra` adjusts the row before writing. */
static int set_status(envdbi_store *s, const envdbi_object_def *o, const char *id,
		      const char *from, const char *to, void (*extra)(void *rec, const char *to))
{
	const envdbi_field_def *sf = envdbi_schema_field(o, "status");
	void *cur = NULL;
	char *label = NULL;
	int rc;
	if (id == NULL || to == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "%s: set status: no id or status",
				    o->label);
	if ((rc = envdbi_store_begin(s)) != 0)
		return rc;
	if ((rc = get_by_id(s, o, &cur, id)) != 0)
		goto out;
	if ((label = record_label(s, o, cur)) == NULL) {
		rc = nomem();
		goto out;
	}
	char **st = envdbi_field_str(sf, cur);
	if (from != NULL && (*st == NULL || strcmp(*st, from) != 0)) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL, "%s: status is %s, expected %s", label,
				  nz(*st), from);
		goto out;
	}
	if (!envdbi_schema_enum_ok(sf, to)) {
		rc = envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: status: '%s' is not a valid value",
				  label, to);
		goto out;
	}
	char *dup = strdup(to);
	if (dup == NULL) {
		rc = nomem();
		goto out;
	}
	free(*st);
	*st = dup;
	if (extra != NULL)
		extra(cur, to);
	rc = record_update(s, o, cur);
out:
	if (rc == 0)
		rc = envdbi_store_commit(s);
	else
		envdbi_store_rollback(s);
	envdbi_record_free(o, cur);
	free(label);
	return rc;
}

int envdbi_store_env_set_status(envdbi_store *s, const char *id, const char *from,
				const char *to)
{
	return set_status(s, ENVDBI_OBJ_ENVIRONMENT, id, from, to, NULL);
}

int envdbi_store_env_activate(envdbi_store *s, const char *id)
{
	envdb_environment *cur = NULL;
	int changes = 0, rc = 0;
	if (id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "environment: activate: no id");
	lock(s);
	/* One statement: the check and the change (what env_get and a
	 * record_update of every column cost twice over). */
	int step = exec_raw(s,
			    "UPDATE \"sys_environment\" SET \"status\" = 'active', "
			    "\"pending_database_name\" = NULL, \"pending_driver\" = NULL, "
			    "\"lease_expires_at\" = NULL, \"updated_at\" = ?2 "
			    "WHERE \"id\" = ?1 AND \"status\" = 'provisioning'",
			    (bindv[]){BT(id), BI(envdbi_now())}, 2, &changes);
	if (step != SQLITE_DONE)
		rc = db_error(s, step, "activate environment");
	else if (changes == 0 && (rc = envdbi_store_env_get(s, &cur, id)) == 0)
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "environment %s/%s: the intent was taken over (status %s); its lease "
				  "expired before provisioning finished",
				  cur->organization_id, cur->slug, cur->status);
	envdb_environment_free(cur);
	unlock(s);
	return rc;
}

int envdbi_store_env_delete(envdbi_store *s, const char *id)
{
	char what[96];
	snprintf(what, sizeof what, "environment %s", nz(id));
	return delete_where(s, ENVDBI_OBJ_ENVIRONMENT, "WHERE \"id\" = ?1", (bindv[]){BT(id)}, 1,
			    what);
}

/* ------------------------------------------------------------------------ */
/* sys_environment_database                                                  */
/* ------------------------------------------------------------------------ */

int envdbi_store_db_insert(envdbi_store *s, const envdb_database *d, char id_out[37])
{
	return insert_copy(s, ENVDBI_OBJ_DATABASE, d, id_out, NULL);
}

int envdbi_store_db_get(envdbi_store *s, envdb_database **out, const char *id)
{
	return get_by_id(s, ENVDBI_OBJ_DATABASE, (void **)out, id);
}

int envdbi_store_db_get_by_env(envdbi_store *s, envdb_database **out, const char *environment_id)
{
	int rc = select_one(s, ENVDBI_OBJ_DATABASE, "WHERE \"environment_id\" = ?1",
			    (bindv[]){BT(environment_id)}, 1, (void **)out, NULL);
	if (rc == ENVDB_ERR_NOT_FOUND) {
		char *env = env_name(s, environment_id);
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "environment %s: database: not found",
				  nz(env));
		free(env);
	}
	return rc;
}

int envdbi_store_db_get_by_name(envdbi_store *s, envdb_database **out, const char *database_name)
{
	char what[160];
	snprintf(what, sizeof what, "database %s", nz(database_name));
	return select_one(s, ENVDBI_OBJ_DATABASE, "WHERE \"database_name\" = ?1",
			  (bindv[]){BT(database_name)}, 1, (void **)out, what);
}

int envdbi_store_db_list(envdbi_store *s, envdb_database ***out, size_t *n)
{
	return select_rows(s, ENVDBI_OBJ_DATABASE, "ORDER BY \"database_name\"", NULL, 0,
			   (void ***)out, n);
}

int envdbi_store_db_update(envdbi_store *s, const envdb_database *d)
{
	if (d == NULL || d->id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "database: update: no id");
	return record_update(s, ENVDBI_OBJ_DATABASE, d);
}

int envdbi_store_db_touch(envdbi_store *s, const char *id, int64_t when)
{
	int changes = 0, rc = 0;
	lock(s);
	int step = exec_raw(s,
			    "UPDATE \"sys_environment_database\" SET \"last_accessed_at\" = ?1 "
			    "WHERE \"id\" = ?2",
			    (bindv[]){BI(when), BT(id)}, 2, &changes);
	if (step != SQLITE_DONE)
		rc = db_error(s, step, "touch database");
	else if (changes == 0)
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "database %s: not found", nz(id));
	unlock(s);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* sys_database_credential                                                   */
/* ------------------------------------------------------------------------ */

int envdbi_store_cred_insert(envdbi_store *s, const envdb_credential *c, char id_out[37])
{
	return insert_copy(s, ENVDBI_OBJ_CREDENTIAL, c, id_out, NULL);
}

int envdbi_store_cred_get(envdbi_store *s, envdb_credential **out, const char *id)
{
	return get_by_id(s, ENVDBI_OBJ_CREDENTIAL, (void **)out, id);
}

int envdbi_store_cred_get_active(envdbi_store *s, envdb_credential **out,
				 const char *environment_database_id, const char *authorization)
{
	int rc = select_one(s, ENVDBI_OBJ_CREDENTIAL,
			    "WHERE \"environment_database_id\" = ?1 AND \"authorization\" = ?2 AND "
			    "\"status\" = 'active'",
			    (bindv[]){BT(environment_database_id), BT(authorization)}, 2,
			    (void **)out, NULL);
	if (rc == ENVDB_ERR_NOT_FOUND) {
		char *db = db_name(s, environment_database_id);
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				  "database %s: active %s credential: not found", nz(db),
				  nz(authorization));
		free(db);
	}
	return rc;
}

int envdbi_store_cred_list(envdbi_store *s, envdb_credential ***out, size_t *n,
			   const envdbi_cred_filter *f)
{
	envdbi_cred_filter none = ENVDBI_CRED_FILTER_INIT;
	envdbi_strbuf tail = ENVDBI_STRBUF_INIT;
	bindv b[4];
	size_t nb = 0;
	int rc;
	if (f == NULL)
		f = &none;
	envdbi_strbuf_puts(&tail, "WHERE 1");
	if (f->environment_database_id) {
		b[nb++] = BT(f->environment_database_id);
		envdbi_strbuf_printf(&tail, " AND \"environment_database_id\" = ?%zu", nb);
	}
	if (f->authorization) {
		b[nb++] = BT(f->authorization);
		envdbi_strbuf_printf(&tail, " AND \"authorization\" = ?%zu", nb);
	}
	if (f->status) {
		b[nb++] = BT(f->status);
		envdbi_strbuf_printf(&tail, " AND \"status\" = ?%zu", nb);
	}
	if (f->expired_at > 0) {
		b[nb++] = BI(f->expired_at);
		envdbi_strbuf_printf(&tail, " AND \"expires_at\" > 0 AND \"expires_at\" <= ?%zu", nb);
	}
	envdbi_strbuf_puts(&tail, " ORDER BY \"environment_database_id\", \"created_at\", \"id\"");
	if (tail.failed)
		rc = nomem();
	else
		rc = select_rows(s, ENVDBI_OBJ_CREDENTIAL, tail.data, b, nb, (void ***)out, n);
	envdbi_strbuf_free(&tail);
	return rc;
}

int envdbi_store_cred_update(envdbi_store *s, const envdb_credential *c)
{
	if (c == NULL || c->id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "credential: update: no id");
	return record_update(s, ENVDBI_OBJ_CREDENTIAL, c);
}

static void cred_status_extra(void *rec, const char *to)
{
	envdb_credential *c = rec;
	if (strcmp(to, "revoked") == 0 && c->revoked_at == 0)
		c->revoked_at = envdbi_now();
}

int envdbi_store_cred_set_status(envdbi_store *s, const char *id, const char *from,
				 const char *to)
{
	return set_status(s, ENVDBI_OBJ_CREDENTIAL, id, from, to, cred_status_extra);
}

/* ------------------------------------------------------------------------ */
/* Resolve: one statement, one snapshot                                      */
/* ------------------------------------------------------------------------ */

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
static const char resolve_sql[] =
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

int envdbi_store_resolve_get(envdbi_store *s, envdbi_resolve_row **out, const char *org,
			     const char *slug, const char *user, int64_t now)
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
	lock(s);
	if ((rc = stmt_get(s, &st, resolve_sql)) != 0)
		goto out;
	if ((rc = bind_values(s, st, 1, (bindv[]){BT(org), BT(slug), BT(user), BI(now)}, 4)) !=
	    0)
		goto out;
	step = sqlite3_step(st);
	if (step == SQLITE_DONE) {
		rc = ENVDB_ERR_NOT_FOUND; /* the caller reports */
		goto out;
	}
	if (step != SQLITE_ROW) {
		rc = db_error(s, step, "resolve");
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
	stmt_put(s, st);
	unlock(s);
	free(r);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* sys_environment_member                                                    */
/* ------------------------------------------------------------------------ */

int envdbi_store_member_insert(envdbi_store *s, const envdb_member *m, char id_out[37])
{
	return insert_copy(s, ENVDBI_OBJ_MEMBER, m, id_out, NULL);
}

int envdbi_store_member_get(envdbi_store *s, envdb_member **out, const char *environment_id,
			    const char *user_id)
{
	int rc = select_one(s, ENVDBI_OBJ_MEMBER,
			    "WHERE \"environment_id\" = ?1 AND \"user_id\" = ?2",
			    (bindv[]){BT(environment_id), BT(user_id)}, 2, (void **)out, NULL);
	if (rc == ENVDB_ERR_NOT_FOUND) {
		char *env = env_name(s, environment_id);
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "environment %s: member %s: not found",
				  nz(env), nz(user_id));
		free(env);
	}
	return rc;
}

int envdbi_store_member_list(envdbi_store *s, envdb_member ***out, size_t *n,
			     const char *environment_id)
{
	if (environment_id == NULL)
		return select_rows(s, ENVDBI_OBJ_MEMBER, "ORDER BY \"environment_id\", \"user_id\"",
				   NULL, 0, (void ***)out, n);
	return select_rows(s, ENVDBI_OBJ_MEMBER,
			   "WHERE \"environment_id\" = ?1 ORDER BY \"environment_id\", \"user_id\"",
			   (bindv[]){BT(environment_id)}, 1, (void ***)out, n);
}

int envdbi_store_member_update(envdbi_store *s, const envdb_member *m)
{
	if (m == NULL || m->id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "member: update: no id");
	return record_update(s, ENVDBI_OBJ_MEMBER, m);
}

int envdbi_store_member_delete(envdbi_store *s, const char *environment_id, const char *user_id)
{
	int rc;
	lock(s);
	char *env = env_name(s, environment_id);
	char *what = strprintf("environment %s: member %s", nz(env), nz(user_id));
	rc = delete_where(s, ENVDBI_OBJ_MEMBER, "WHERE \"environment_id\" = ?1 AND \"user_id\" = ?2",
			  (bindv[]){BT(environment_id), BT(user_id)}, 2, what ? what : "member");
	free(what);
	free(env);
	unlock(s);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Legacy objects                                                            */
/* ------------------------------------------------------------------------ */

static int need_legacy(envdbi_store *s)
{
	if (s->legacy)
		return 0;
	return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
			    "control plane %s: legacy objects are not registered (manifest legacy_shim is false)",
			    s->path);
}

int envdbi_store_tenant_db_insert(envdbi_store *s, const envdbi_tenant_db_row *r, char id_out[37])
{
	int rc = need_legacy(s);
	return rc ? rc : insert_copy(s, ENVDBI_OBJ_TENANT_DB, r, id_out, NULL);
}

int envdbi_store_tenant_db_get(envdbi_store *s, envdbi_tenant_db_row **out, const char *id)
{
	int rc = need_legacy(s);
	return rc ? rc : get_by_id(s, ENVDBI_OBJ_TENANT_DB, (void **)out, id);
}

int envdbi_store_tenant_db_list(envdbi_store *s, envdbi_tenant_db_row ***out, size_t *n,
				const char *organization_id)
{
	int rc = need_legacy(s);
	if (rc)
		return rc;
	if (organization_id == NULL)
		return select_rows(s, ENVDBI_OBJ_TENANT_DB,
				   "ORDER BY \"organization_id\", \"database_name\"", NULL, 0,
				   (void ***)out, n);
	return select_rows(s, ENVDBI_OBJ_TENANT_DB,
			   "WHERE \"organization_id\" = ?1 ORDER BY \"organization_id\", \"database_name\"",
			   (bindv[]){BT(organization_id)}, 1, (void ***)out, n);
}

int envdbi_store_tenant_db_update(envdbi_store *s, const envdbi_tenant_db_row *r)
{
	int rc = need_legacy(s);
	if (rc)
		return rc;
	if (r == NULL || r->id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "legacy tenant database: update: no id");
	return record_update(s, ENVDBI_OBJ_TENANT_DB, r);
}

int envdbi_store_package_insert(envdbi_store *s, const envdbi_package_row *r, char id_out[37])
{
	int rc = need_legacy(s);
	return rc ? rc : insert_copy(s, ENVDBI_OBJ_PACKAGE, r, id_out, NULL);
}

int envdbi_store_package_list(envdbi_store *s, envdbi_package_row ***out, size_t *n,
			      const char *tenant_id)
{
	int rc = need_legacy(s);
	if (rc)
		return rc;
	if (tenant_id == NULL)
		return select_rows(s, ENVDBI_OBJ_PACKAGE, "ORDER BY \"tenant_id\", \"package_id\"",
				   NULL, 0, (void ***)out, n);
	return select_rows(s, ENVDBI_OBJ_PACKAGE,
			   "WHERE \"tenant_id\" = ?1 ORDER BY \"tenant_id\", \"package_id\"",
			   (bindv[]){BT(tenant_id)}, 1, (void ***)out, n);
}

void envdbi_store_strings_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int pending_strings(envdbi_store *s, const char *sql, const char *what, char ***out,
			   size_t *n, const char *after_org, const char *upto_org)
{
	sqlite3_stmt *st = NULL;
	char **v = NULL;
	size_t count = 0, cap = 0;
	int rc = need_legacy(s);
	*out = NULL;
	*n = 0;
	if (rc)
		return rc;
	if (upto_org == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "legacy tenant databases: %s: no organization", what);
	lock(s);
	if ((rc = stmt_get(s, &st, sql)) != 0)
		goto out;
	if ((rc = bind_values(s, st, 1,
			      (bindv[]){BT(after_org ? after_org : ""), BT(upto_org)}, 2)) != 0)
		goto out;
	for (;;) {
		int step = sqlite3_step(st);
		const unsigned char *t;
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			rc = db_error(s, step, what);
			goto out;
		}
		if ((t = sqlite3_column_text(st, 0)) == NULL)
			continue;
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			char **nv = realloc(v, ncap * sizeof *nv);
			if (nv == NULL) {
				rc = nomem();
				goto out;
			}
			v = nv;
			cap = ncap;
		}
		if ((v[count] = strdup((const char *)t)) == NULL) {
			rc = nomem();
			goto out;
		}
		count++;
	}
	*out = v;
	*n = count;
	v = NULL;
	count = 0;
out:
	stmt_put(s, st);
	unlock(s);
	envdbi_store_strings_free(v, count);
	return rc;
}

int envdbi_store_package_tenants_pending(envdbi_store *s, char ***out, size_t *n,
					 const char *after_org, const char *upto_org)
{
	return pending_strings(s,
			       "SELECT DISTINCT \"tenant_id\" FROM \"sys_package_installation\" "
			       "WHERE \"tenant_id\" IN (SELECT \"id\" FROM \"sys_tenant_database\" "
			       "WHERE \"migrated_environment_id\" IS NULL AND \"organization_id\" > ?1 "
			       "AND \"organization_id\" <= ?2) ORDER BY \"tenant_id\"",
			       "read the package installations of legacy rows", out, n, after_org,
			       upto_org);
}

int envdbi_store_db_names_taken_pending(envdbi_store *s, char ***out, size_t *n,
					const char *after_org, const char *upto_org)
{
	return pending_strings(s,
			       "SELECT DISTINCT \"database_name\" FROM \"sys_environment_database\" "
			       "WHERE \"database_name\" IN (SELECT \"database_name\" FROM "
			       "\"sys_tenant_database\" WHERE \"migrated_environment_id\" IS NULL AND "
			       "\"organization_id\" > ?1 AND \"organization_id\" <= ?2) "
			       "ORDER BY \"database_name\"",
			       "read the database names of legacy rows", out, n, after_org, upto_org);
}

int envdbi_store_env_orgs_pending(envdbi_store *s, char ***out, size_t *n,
				  const char *after_org, const char *upto_org)
{
	return pending_strings(s,
			       "SELECT DISTINCT \"organization_id\" FROM \"sys_environment\" "
			       "WHERE \"organization_id\" IN (SELECT \"organization_id\" FROM "
			       "\"sys_tenant_database\" WHERE \"migrated_environment_id\" IS NULL AND "
			       "\"organization_id\" > ?1 AND \"organization_id\" <= ?2) "
			       "ORDER BY \"organization_id\"",
			       "read the organizations of legacy rows", out, n, after_org, upto_org);
}

int envdbi_store_package_repoint(envdbi_store *s, const char *from_tenant, const char *to_tenant,
				 size_t *changed)
{
	int changes = 0, rc = need_legacy(s);
	if (rc)
		return rc;
	if (from_tenant == NULL || to_tenant == NULL || to_tenant[0] == '\0')
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "package installations: repoint: no tenant");
	lock(s);
	int step = exec_raw(s,
			    "UPDATE \"sys_package_installation\" SET \"tenant_id\" = ?1, "
			    "\"updated_at\" = ?2 WHERE \"tenant_id\" = ?3",
			    (bindv[]){BT(to_tenant), BI(envdbi_now()), BT(from_tenant)}, 3, &changes);
	if (step != SQLITE_DONE)
		rc = db_error(s, step, "repoint package installations");
	else if (changed != NULL)
		*changed = (size_t)changes;
	unlock(s);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Generic access for envdb check                                            */
/* ------------------------------------------------------------------------ */

static int registered(envdbi_store *s, const envdbi_object_def *o)
{
	if (o->legacy && !s->legacy)
		return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL, "%s: not registered", o->name);
	return 0;
}

int envdbi_store_rows(envdbi_store *s, const envdbi_object_def *o, void ***out, size_t *n)
{
	int rc;
	*out = NULL;
	*n = 0;
	if ((rc = registered(s, o)) != 0)
		return rc;
	return select_rows(s, o, "ORDER BY \"id\"", NULL, 0, out, n);
}

int envdbi_store_scan(envdbi_store *s, const envdbi_object_def *o, envdbi_scan_cb cb,
		      void *cb_ctx)
{
	void **v = NULL;
	size_t n = 0;
	int rc;
	if ((rc = envdbi_store_rows(s, o, &v, &n)) != 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = cb(cb_ctx, o, v[i]);
	records_free(o, v, n);
	return rc;
}

/*
 * Two queries: the keys held more than once, grouped over the columns alone
 * (the unique index, when it is there, is a covering index walked in
 * order: no table row is read and nothing is sorted but the duplicate
 * groups), then, per duplicate key only, the ids sharing it in id order.
 * Grouping every row in id order to list the ids of each group read the
 * whole table through its primary key and sorted it twice: a third of
 * envdb check at 100,000 environments.
 */
int envdbi_store_find_duplicates(envdbi_store *s, const envdbi_object_def *o,
				 const envdbi_index_def *ix, envdbi_dup_cb cb, void *cb_ctx)
{
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT, ids_sql = ENVDBI_STRBUF_INIT,
		      cols = ENVDBI_STRBUF_INIT, key = ENVDBI_STRBUF_INIT;
	sqlite3_stmt *st = NULL, *ids = NULL;
	const char *where = ix->where ? ix->where : "1";
	size_t nc = 0;
	int rc;
	if ((rc = registered(s, o)) != 0)
		return rc;
	envdbi_strbuf_printf(&ids_sql, "SELECT group_concat(\"id\", ',') FROM (SELECT \"id\" FROM "
				       "\"%s\" WHERE (%s)",
			     o->name, where);
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++, nc++) {
		envdbi_strbuf_printf(&cols, "%s\"%s\"", c ? ", " : "", ix->columns[c]);
		envdbi_strbuf_printf(&key, "%sifnull(\"%s\", '')", c ? " || '/' || " : "",
				     ix->columns[c]);
		envdbi_strbuf_printf(&ids_sql, " AND \"%s\" IS ?%zu", ix->columns[c], c + 1);
	}
	envdbi_strbuf_puts(&ids_sql, " ORDER BY \"id\")");
	envdbi_strbuf_printf(&sql,
			     "SELECT %s, %s FROM \"%s\" WHERE %s GROUP BY %s HAVING count(*) > 1 "
			     "ORDER BY 1",
			     key.data ? key.data : "''", cols.data ? cols.data : "1", o->name, where,
			     cols.data ? cols.data : "1");
	if (sql.failed || ids_sql.failed || cols.failed || key.failed) {
		rc = nomem();
		goto out;
	}
	lock(s);
	rc = stmt_get(s, &st, sql.data);
	if (rc == 0)
		rc = stmt_get(s, &ids, ids_sql.data);
	while (rc == 0) {
		int step = sqlite3_step(st);
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			rc = db_error(s, step, o->name);
			break;
		}
		for (size_t c = 0; c < nc && rc == 0; c++)
			if (sqlite3_bind_value(ids, (int)c + 1, sqlite3_column_value(st, (int)c + 1)) !=
			    SQLITE_OK)
				rc = db_error(s, SQLITE_ERROR, o->name);
		if (rc == 0 && (step = sqlite3_step(ids)) != SQLITE_ROW)
			rc = db_error(s, step, o->name);
		if (rc == 0)
			cb(cb_ctx, o, ix, (const char *)sqlite3_column_text(st, 0),
			   (const char *)sqlite3_column_text(ids, 0));
		sqlite3_reset(ids);
		sqlite3_clear_bindings(ids);
	}
	stmt_put(s, ids);
	stmt_put(s, st);
	unlock(s);
out:
	envdbi_strbuf_free(&sql);
	envdbi_strbuf_free(&ids_sql);
	envdbi_strbuf_free(&cols);
	envdbi_strbuf_free(&key);
	return rc;
}

int envdbi_store_find_dangling(envdbi_store *s, const envdbi_object_def *o,
			       envdbi_dangling_cb cb, void *cb_ctx)
{
	int rc;
	if ((rc = registered(s, o)) != 0)
		return rc;
	lock(s);
	for (size_t i = 0; i < o->n_fields && rc == 0; i++) {
		const envdbi_field_def *f = &o->fields[i];
		sqlite3_stmt *st = NULL;
		if (f->type != ENVDBI_FT_REF)
			continue;
		char *sql = strprintf("SELECT \"id\", \"%s\" FROM \"%s\" WHERE \"%s\" IS NOT NULL AND "
				      "\"%s\" NOT IN (SELECT \"id\" FROM \"%s\") ORDER BY \"id\"",
				      f->name, o->name, f->name, f->name, f->ref);
		if (sql == NULL) {
			rc = nomem();
			break;
		}
		rc = stmt_get(s, &st, sql);
		while (rc == 0) {
			int step = sqlite3_step(st);
			if (step == SQLITE_DONE)
				break;
			if (step != SQLITE_ROW) {
				rc = db_error(s, step, o->name);
				break;
			}
			cb(cb_ctx, o, f, (const char *)sqlite3_column_text(st, 0),
			   (const char *)sqlite3_column_text(st, 1));
		}
		stmt_put(s, st);
		free(sql);
	}
	unlock(s);
	return rc;
}

static int table_has(envdbi_store *s, const char *sql, const char *a, const char *b, int *found)
{
	*found = 0;
	lock(s);
	sqlite3_stmt *st = NULL;
	int rc = stmt_get(s, &st, sql);
	if (rc == 0)
		rc = bind_values(s, st, 1, (bindv[]){BT(a), BT(b)}, b ? 2 : 1);
	if (rc == 0) {
		int step = sqlite3_step(st);
		if (step == SQLITE_ROW)
			*found = sqlite3_column_int(st, 0);
		else if (step != SQLITE_DONE)
			rc = db_error(s, step, "schema");
	}
	stmt_put(s, st);
	unlock(s);
	return rc;
}

int envdbi_store_verify_schema(envdbi_store *s, envdbi_schema_problem_cb cb, void *cb_ctx)
{
	int rc = 0;
	for (size_t i = 0; i < envdbi_schema_n_objects && rc == 0; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		int found = 0;
		char msg[256];
		if (o->legacy && !s->legacy)
			continue;
		if ((rc = table_has(s, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
				    o->name, NULL, &found)) != 0)
			break;
		if (!found) {
			cb(cb_ctx, o->name, o->name, "table is missing");
			continue;
		}
		for (size_t k = 0; k < o->n_fields && rc == 0; k++) {
			rc = table_has(s, "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
				       o->name, o->fields[k].name, &found);
			if (rc == 0 && !found) {
				snprintf(msg, sizeof msg, "column %s is missing", o->fields[k].name);
				cb(cb_ctx, o->name, o->fields[k].name, msg);
			}
		}
		for (size_t k = 0; k < o->n_indexes && rc == 0; k++) {
			const envdbi_index_def *ix = &o->indexes[k];
			int uniq = 0;
			rc = table_has(s, "SELECT count(*) FROM pragma_index_list(?1) WHERE name = ?2",
				       o->name, ix->name, &found);
			if (rc == 0 && found)
				rc = table_has(s,
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
			rc = table_has(s,
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
/* Migration support (v4 -> v5, core/migrate.c; added by helper G)           */
/* ------------------------------------------------------------------------ */

int envdbi_store_tenant_db_pending(envdbi_store *s, envdbi_tenant_db_row ***out, size_t *n,
				   const char *after_org, size_t max_orgs)
{
	int rc = need_legacy(s);
	*out = NULL;
	*n = 0;
	if (rc)
		return rc;
	if (max_orgs == 0 || max_orgs > (size_t)INT64_MAX)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "legacy tenant databases: pending: bad batch size");
	/* The organizations first (index on organization_id), then their rows. */
	return select_rows(s, ENVDBI_OBJ_TENANT_DB,
			   "WHERE \"migrated_environment_id\" IS NULL AND \"organization_id\" IN "
			   "(SELECT DISTINCT \"organization_id\" FROM \"sys_tenant_database\" "
			   "WHERE \"organization_id\" > ?1 AND \"migrated_environment_id\" IS NULL "
			   "ORDER BY \"organization_id\" LIMIT ?2) "
			   "ORDER BY \"organization_id\", \"created_at\", \"id\"",
			   (bindv[]){BT(after_org ? after_org : ""), BI((int64_t)max_orgs)}, 2,
			   (void ***)out, n);
}

int envdbi_store_tenant_db_counts(envdbi_store *s, envdbi_legacy_counts *out)
{
	sqlite3_stmt *st = NULL;
	int rc = need_legacy(s);
	memset(out, 0, sizeof *out);
	if (rc)
		return rc;
	lock(s);
	if ((rc = stmt_get(s, &st,
			   "SELECT count(*), coalesce(sum(p > 0), 0), coalesce(sum(p = 0), 0), "
			   "coalesce(sum(p), 0), coalesce(sum(a = 0 AND m > 0), 0), "
			   "coalesce(sum(a > 0), 0), coalesce(sum(a = 0 AND m = 0), 0) FROM "
			   "(SELECT sum(\"migrated_environment_id\" IS NULL) AS p, "
			   "sum(\"migrated_environment_id\" IS NULL AND \"status\" IN "
			   "('active', 'suspended')) AS a, "
			   "sum(\"migrated_environment_id\" IS NOT NULL) AS m "
			   "FROM \"sys_tenant_database\" GROUP BY \"organization_id\")")) != 0)
		goto out;
	int step = sqlite3_step(st);
	if (step != SQLITE_ROW) {
		rc = db_error(s, step, "count legacy tenant databases");
		goto out;
	}
	out->orgs = (size_t)sqlite3_column_int64(st, 0);
	out->orgs_pending = (size_t)sqlite3_column_int64(st, 1);
	out->orgs_migrated = (size_t)sqlite3_column_int64(st, 2);
	out->rows_pending = (size_t)sqlite3_column_int64(st, 3);
	out->orgs_done = (size_t)sqlite3_column_int64(st, 4);
	out->orgs_open = (size_t)sqlite3_column_int64(st, 5);
	out->orgs_inactive = (size_t)sqlite3_column_int64(st, 6);
out:
	stmt_put(s, st);
	unlock(s);
	return rc;
}

int envdbi_store_tenant_db_org_has_migrated(envdbi_store *s, const char *organization_id)
{
	int rc = need_legacy(s);

	if (rc)
		return rc;
	return exists_by(s,
			 "SELECT EXISTS (SELECT 1 FROM \"sys_tenant_database\" WHERE "
			 "\"organization_id\" = ?1 AND \"migrated_environment_id\" IS NOT NULL)",
			 organization_id, "look up migrated legacy tenant databases");
}

void envdbi_store_legacy_notice(envdbi_store *s)
{
	int pending = 0, any = 0;

	if (s == NULL || !s->legacy)
		return;
	lock(s);
	if (pragma_int(s,
		       "SELECT EXISTS (SELECT 1 FROM \"sys_tenant_database\" "
		       "WHERE \"migrated_environment_id\" IS NULL AND "
		       "\"status\" IN ('active', 'suspended'))",
		       &pending) != 0 ||
	    pragma_int(s,
		       "SELECT EXISTS (SELECT 1 FROM \"sys_tenant_database\") OR "
		       "EXISTS (SELECT 1 FROM \"sys_package_installation\")",
		       &any) != 0) {
		unlock(s);
		envdb_error_clear(); /* a notice, not a failure of the open */
		return;
	}
	unlock(s);
	if (pending)
		envdbi_log(ENVDB_LOG_WARNING,
			   "control plane %s: the deprecated v4 objects (sys_tenant_database) hold "
			   "rows not migrated yet: run `envdb migrate v4-to-v5` (the shim is removed "
			   "in v5.0)",
			   s->path);
	else if (any)
		envdbi_log(ENVDB_LOG_WARNING,
			   "control plane %s: the deprecated v4 objects hold no row left to migrate: "
			   "set legacy.register_shim: false in the manifest (the shim is removed in "
			   "v5.0)",
			   s->path);
}

int envdbi_store_tenant_db_archive(envdbi_store *s, const char *id, const char *environment_id)
{
	int changes = 0, rc = need_legacy(s);
	if (rc)
		return rc;
	if (id == NULL || !envdbi_uuid_valid(environment_id))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "legacy tenant database: archive: no id or no environment id");
	lock(s);
	int step = exec_raw(s,
			    "UPDATE \"sys_tenant_database\" SET \"status\" = 'archived', "
			    "\"migrated_environment_id\" = ?1, \"updated_at\" = ?2 "
			    "WHERE \"id\" = ?3 AND \"migrated_environment_id\" IS NULL",
			    (bindv[]){BT(environment_id), BI(envdbi_now()), BT(id)}, 3, &changes);
	if (step != SQLITE_DONE)
		rc = db_error(s, step, "archive legacy tenant database");
	else if (changes == 0)
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "legacy tenant database %s: archive: gone or already migrated", id);
	unlock(s);
	return rc;
}

int envdbi_store_tenant_db_wipe_token(envdbi_store *s, const char *id, const char *environment_id)
{
	int changes = 0, rc = need_legacy(s);
	if (rc)
		return rc;
	if (id == NULL || environment_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "legacy tenant database: wipe token: no id or no environment id");
	lock(s);
	int step = exec_raw(s,
			    "UPDATE \"sys_tenant_database\" SET \"auth_token\" = NULL, "
			    "\"updated_at\" = ?1 WHERE \"id\" = ?2 AND "
			    "\"migrated_environment_id\" = ?3",
			    (bindv[]){BI(envdbi_now()), BT(id), BT(environment_id)}, 3, &changes);
	if (step != SQLITE_DONE)
		rc = db_error(s, step, "wipe legacy token");
	else if (changes == 0)
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "legacy tenant database %s: wipe token: gone or not migrated", id);
	unlock(s);
	return rc;
}

int envdbi_store_bulk(envdbi_store *s, bool on, int64_t cache_kib, int64_t wal_pages)
{
	char sql[160];
	if (s->snapshot)
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
	lock(s);
	int rc = exec_sql(s, sql, "bulk settings");
	unlock(s);
	return rc;
}
