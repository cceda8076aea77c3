/*
 * core/store.c — the control-plane store, backend-neutral part (store.h):
 * the typed functions over the object definitions (schema.h), with their
 * validation, defaults, record labels, the messages of a refused write and
 * the compare-and-set of statuses, on top of a store backend
 * (store_backend.h: SQLite in store_sqlite.c, PostgreSQL in store_pg.c).
 * No SQL and no driver header here (tests/test_seam.sh).
 *
 * Concurrency: one recursive mutex per store serializes every use of the
 * backend state; a transaction holds it from begin() to commit()/rollback()
 * and belongs to the thread that began it.  Across processes and hosts the
 * backend's begin(b, 0) is the control plane's global write lock.
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
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "schema.h"
#include "store.h"
#include "store_backend.h"

struct envdbi_store {
	const envdbi_store_backend_ops *ops;
	envdbi_store_backend *b;
	int64_t busy_timeout_ms;
	bool legacy;
	envdbi_store_info info;
	pthread_mutex_t lock; /* recursive */
	pthread_t owner;      /* thread of the open transaction (depth > 0) */
	int depth;            /* transaction depth of `owner` */
};

/* The compiled-in backends.  A backend registers here with one line. */
const envdbi_store_backend_ops *const envdbi_store_backends[] = {
	&envdbi_store_backend_sqlite,
#ifdef HAVE_STORE_PG
	&envdbi_store_backend_pg,
#endif
	NULL,
};

#define BT ENVDBI_BT
#define BI ENVDBI_BI
typedef envdbi_bind bindv;

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

void envdbi_store_strings_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ------------------------------------------------------------------------ */
/* Errors, backends, locking                                                 */
/* ------------------------------------------------------------------------ */

void envdbi_store_fail_set(envdbi_store_fail *f, envdbi_store_fail_kind kind, const char *native,
			   const char *message)
{
	f->kind = kind;
	snprintf(f->native, sizeof f->native, "%s", native ? native : "");
	snprintf(f->message, sizeof f->message, "%s", message ? message : "");
}

int envdbi_store_backend_error(const char *desc, int64_t busy_timeout_ms,
			       const envdbi_store_fail *f, const char *what)
{
	const char *native = f->native[0] ? f->native : NULL;

	switch (f->kind) {
	case ENVDBI_FAIL_BUSY:
		return envdbi_error(ENVDB_ERR_BUSY, native,
				    "control plane %s: %s: locked by another process beyond the busy timeout (%lld ms)",
				    desc, what, (long long)busy_timeout_ms);
	case ENVDBI_FAIL_NOMEM:
		return envdbi_error(ENVDB_ERR_NOMEM, native, "control plane %s: %s: out of memory",
				    desc, what);
	case ENVDBI_FAIL_CONNECTION_LOST:
		return envdbi_error(ENVDB_ERR_IO, native,
				    "control plane %s: %s: connection lost (%s); the open "
				    "transaction, if any, was rolled back",
				    desc, what, f->message);
	default:
		return envdbi_error(ENVDB_ERR_IO, native, "control plane %s: %s: %s", desc, what,
				    f->message);
	}
}

const envdbi_store_backend_ops *envdbi_store_backend_find(const char *driver)
{
	if (driver == NULL)
		driver = "sqlite";
	for (size_t i = 0; envdbi_store_backends[i] != NULL; i++)
		if (strcmp(envdbi_store_backends[i]->name, driver) == 0)
			return envdbi_store_backends[i];
	return NULL;
}

const envdbi_store_backend_ops *envdbi_store_ops(const envdbi_store *s)
{
	return s->ops;
}

envdbi_store_backend *envdbi_store_state(const envdbi_store *s)
{
	return s->b;
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

void envdbi_store_lock(envdbi_store *s)
{
	lock(s);
}

void envdbi_store_unlock(envdbi_store *s)
{
	unlock(s);
}

const char *envdbi_store_describe(const envdbi_store *s)
{
	return s->ops->describe(s->b);
}

#define DESC(s) envdbi_store_describe(s)

/* A failure of a statement of the neutral layer's own (exec, or a write
 * whose constraint failure is not the caller's to explain). */
static int fail_error(envdbi_store *s, const envdbi_store_fail *f, const char *what)
{
	return envdbi_store_backend_error(DESC(s), s->busy_timeout_ms, f, what);
}

/* Rows of `o` by query q.  Takes the lock. */
static int select_rows(envdbi_store *s, const envdbi_object_def *o, envdbi_query q,
		       const bindv *v, size_t nv, void ***out, size_t *n)
{
	int rc;

	lock(s);
	rc = s->ops->select(s->b, o, q, v, nv, out, n);
	unlock(s);
	return rc;
}

/* One row or ENVDB_ERR_NOT_FOUND "<what>: not found" (what NULL: not
 * reported, the caller composes the message). */
static int select_one(envdbi_store *s, const envdbi_object_def *o, envdbi_query q,
		      const bindv *v, size_t nv, void **out, const char *what)
{
	void **rows = NULL;
	size_t n = 0;
	*out = NULL;
	int rc = select_rows(s, o, q, v, nv, &rows, &n);
	if (rc != 0)
		return rc;
	if (n == 0) {
		free(rows);
		if (what == NULL)
			return ENVDB_ERR_NOT_FOUND; /* the caller reports */
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "%s: not found", what);
	}
	*out = rows[0];
	for (size_t i = 1; i < n; i++)
		envdbi_record_free(o, rows[i]);
	free(rows);
	return 0;
}

/* Run statement `st`; *changes (may be NULL) the rows it changed; a failure
 * is reported as "control plane D: WHAT: ...".  Takes the lock. */
static int exec_stmt(envdbi_store *s, envdbi_stmt st, const bindv *v, size_t nv,
		     int64_t *changes, const char *what)
{
	envdbi_store_fail f = {ENVDBI_FAIL_NONE, "", ""};
	int rc;

	lock(s);
	rc = s->ops->exec(s->b, st, v, nv, changes, &f);
	if (rc != 0)
		rc = fail_error(s, &f, what);
	unlock(s);
	return rc;
}

/* One row of integers.  Takes the lock. */
static int ints(envdbi_store *s, envdbi_ints q, const bindv *v, size_t nv, int64_t *out,
		size_t ncols, const char *what)
{
	int rc;

	lock(s);
	rc = s->ops->ints(s->b, q, v, nv, out, ncols, what);
	unlock(s);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */
/* ------------------------------------------------------------------------ */

static bool owns(envdbi_store *s)
{
	return s->depth > 0 && pthread_equal(s->owner, pthread_self());
}

int envdbi_store_begin(envdbi_store *s)
{
	int rc;
	lock(s);
	if ((rc = s->ops->begin(s->b, s->depth)) != 0) {
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
	int rc;
	lock(s);
	if (!owns(s)) {
		unlock(s);
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "control plane %s: commit without a transaction", DESC(s));
	}
	rc = s->ops->commit(s->b, s->depth);
	s->depth--;
	unlock(s); /* this call's lock */
	unlock(s); /* begin()'s lock */
	return rc;
}

void envdbi_store_rollback(envdbi_store *s)
{
	lock(s);
	if (!owns(s)) {
		unlock(s);
		return;
	}
	s->ops->rollback(s->b, s->depth);
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
	    select_one(s, ENVDBI_OBJ_ENVIRONMENT, ENVDBI_Q_BY_ID, (bindv[]){BT(env_id)}, 1, &e,
		       NULL) == 0) {
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
	    select_one(s, ENVDBI_OBJ_DATABASE, ENVDBI_Q_BY_ID, (bindv[]){BT(db_id)}, 1, &d, NULL) ==
		    0) {
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

static int conflict_error(envdbi_store *s, const envdbi_object_def *o, const void *rec,
			  const char *label, const char *nativemsg, bool insert)
{
	const envdbi_field_def *pk = envdbi_schema_primary(o);
	const char *id = envdbi_field_cstr(pk, rec);
	int rc;
	/* the primary key first (an update keeps its own id) */
	void *same = NULL;
	if (insert && id != NULL &&
	    select_one(s, o, ENVDBI_Q_BY_ID, (bindv[]){BT(id)}, 1, &same, NULL) == 0) {
		envdbi_record_free(o, same);
		return envdbi_error(ENVDB_ERR_EXISTS, NULL, "%s: id %s already exists", label, id);
	}
	for (size_t i = 0; i < o->n_indexes; i++) {
		const envdbi_index_def *ix = &o->indexes[i];
		void *other = NULL;
		if (!ix->unique)
			continue;
		if (s->ops->find_conflict(s->b, o, ix, rec, &other) != 0) {
			envdb_error_clear();
			other = NULL;
		}
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
	return envdbi_error(ENVDB_ERR_EXISTS, NULL, "%s: already exists (%s)", label, nativemsg);
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
		if (select_one(s, ro, ENVDBI_Q_BY_ID, (bindv[]){BT(ref_id)}, 1, &x, NULL) == 0) {
			envdbi_record_free(ro, x);
			continue;
		}
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "%s: %s %s: not found", label,
				    ro->label, ref_id);
	}
	return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "%s: a referenced row does not exist",
			    label);
}

/* The status and message of a refused write of `rec`. */
static int write_error(envdbi_store *s, const envdbi_object_def *o, const void *rec,
		       const char *label, const envdbi_store_fail *f, const char *what)
{
	switch (f->kind) {
	case ENVDBI_FAIL_UNIQUE:
	case ENVDBI_FAIL_PRIMARY:
		return conflict_error(s, o, rec, label, f->message, strcmp(what, "insert") == 0);
	case ENVDBI_FAIL_FOREIGN_KEY:
		return fk_error(s, o, rec, label);
	case ENVDBI_FAIL_IMMUTABLE:
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: %s: an immutable field changed",
				    label, what);
	case ENVDBI_FAIL_CHECK:
	case ENVDBI_FAIL_NOT_NULL:
	case ENVDBI_FAIL_CONSTRAINT:
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: %s: %s", label, what, f->message);
	default:
		return fail_error(s, f, what);
	}
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
	envdbi_store_fail f = {ENVDBI_FAIL_NONE, "", ""};
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
	if ((rc = s->ops->insert(s->b, o, rec, &f)) != 0) {
		if ((label = record_label(s, o, rec)) == NULL)
			rc = nomem();
		else
			rc = write_error(s, o, rec, label, &f, "insert");
	}
out:
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
	return select_one(s, o, ENVDBI_Q_BY_ID, (bindv[]){BT(id)}, 1, out, what);
}

/*
 * Overwrite the mutable fields of row rec->id.  Immutable fields must equal
 * the stored ones (ENVDB_ERR_INVALID otherwise).  updated_at is set to now.
 */
static int record_update(envdbi_store *s, const envdbi_object_def *o, const void *rec_in)
{
	const envdbi_field_def *pk = envdbi_schema_primary(o);
	const envdbi_field_def *upd = envdbi_schema_field(o, "updated_at");
	envdbi_store_fail f = {ENVDBI_FAIL_NONE, "", ""};
	void *cur = NULL, *rec = NULL;
	char *label = NULL;
	int rc;
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
		const envdbi_field_def *fd = &o->fields[i];
		if ((fd->flags & ENVDBI_FF_IMMUTABLE) && !field_equal(fd, cur, rec)) {
			rc = envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: update: %s is immutable",
					  label, fd->name);
			goto out;
		}
	}
	if (upd != NULL)
		envdbi_field_set_int(upd, rec, envdbi_now());
	if ((rc = envdbi_schema_check_record(o, rec, label)) != 0)
		goto out;
	if ((rc = s->ops->update(s->b, o, rec, &f)) != 0) {
		rc = write_error(s, o, rec, label, &f, "update");
		goto out;
	}
	rc = envdbi_store_commit(s);
	txn = false;
out:
	if (txn)
		envdbi_store_rollback(s);
	envdbi_record_free(o, cur);
	envdbi_record_free(o, rec);
	free(label);
	return rc;
}

/* Delete by statement st; NOT_FOUND "<what>: not found" when nothing matched. */
static int delete_by(envdbi_store *s, envdbi_stmt st, const bindv *v, size_t nv,
		     const char *what)
{
	int64_t changes = 0;
	int rc = exec_stmt(s, st, v, nv, &changes, "delete");
	if (rc == 0 && changes == 0)
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "%s: not found", what);
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
/* Open / close                                                              */
/* ------------------------------------------------------------------------ */

static int store_new(envdbi_store **out, const envdbi_store_backend_ops *ops,
		     int64_t busy_timeout_ms, bool legacy)
{
	pthread_mutexattr_t attr;
	envdbi_store *s = calloc(1, sizeof *s);

	*out = NULL;
	if (s == NULL)
		return nomem();
	s->ops = ops;
	s->busy_timeout_ms = busy_timeout_ms > 0 ? busy_timeout_ms : 5000;
	s->legacy = legacy;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&s->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	*out = s;
	return 0;
}

int envdbi_store_open_config(envdbi_store **out, const envdbi_store_config *cfg, unsigned flags)
{
	const envdbi_store_backend_ops *ops;
	envdbi_store *s = NULL;
	int rc;

	if (out == NULL || cfg == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "control plane: open: no configuration");
	*out = NULL;
	if ((rc = envdbi_schema_validate(envdbi_schema_objects, envdbi_schema_n_objects)) != 0)
		return rc;
	if (sodium_init() < 0)
		return envdbi_error(ENVDB_ERR_GENERIC, NULL, "control plane: libsodium init failed");
	if ((ops = envdbi_store_backend_find(cfg->driver)) == NULL)
		return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				    "control plane: driver %s: this libenvdb has no such store "
				    "backend (built with: %s%s)",
				    cfg->driver, envdbi_store_backends[0]->name,
				    envdbi_store_backends[1] ? ", ..." : "");
	if ((rc = store_new(&s, ops, cfg->busy_timeout_ms, cfg->legacy)) != 0)
		return rc;
	if ((rc = ops->open(&s->b, cfg, flags, &s->info)) != 0) {
		envdbi_store_close(s);
		return rc;
	}
	envdbi_store_legacy_notice(s); /* migration support */
	*out = s;
	return 0;
}

int envdbi_store_open_path(envdbi_store **out, const char *path, int64_t busy_timeout_ms,
			   bool legacy_shim, unsigned flags)
{
	envdbi_store_config cfg = {"sqlite", path, NULL, NULL, busy_timeout_ms, legacy_shim};

	if (out == NULL || path == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "control plane: open: no path");
	return envdbi_store_open_config(out, &cfg, flags);
}

/* The store configuration of manifest m; the conninfo of a PostgreSQL
 * control plane is read into *secret (free with envdbi_secret_free()). */
static int manifest_config(envdbi_store_config *cfg, envdbi_secret **secret,
			   const envdbi_manifest *m)
{
	const char *driver = m->control_plane_driver ? m->control_plane_driver : "sqlite";

	*secret = NULL;
	*cfg = (envdbi_store_config){driver, m->control_plane, NULL, m->control_plane_schema,
				     m->busy_timeout_ms, m->legacy_shim};
	if (strcmp(driver, "sqlite") == 0) {
		if (m->control_plane == NULL)
			return envdbi_error(ENVDB_ERR_MISUSE, NULL,
					    "control plane: open: no control_plane path");
		return 0;
	}
	if (envdbi_store_backend_find(driver) == NULL)
		return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				    "control plane: driver %s: this libenvdb was built without the "
				    "%s store backend",
				    driver, driver);
	if (m->control_plane_conninfo_file != NULL) {
		char why[PATH_MAX + 160];
		int rc = envdbi_read_secret_file(secret, m->control_plane_conninfo_file, why,
						 sizeof why);
		if (rc != 0)
			return envdbi_error(rc, NULL, "control plane: conninfo_file: %s", why);
	} else if (m->control_plane_conninfo_env != NULL) {
		const char *v = getenv(m->control_plane_conninfo_env);
		if (v == NULL || v[0] == '\0')
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "control plane: conninfo_env: the environment variable "
					    "%s is not set or empty",
					    m->control_plane_conninfo_env);
		if ((*secret = envdbi_secret_new(v, strlen(v))) == NULL)
			return nomem();
	}
	if (*secret != NULL)
		cfg->conninfo = (*secret)->data;
	return 0;
}

int envdbi_store_open(envdbi_store **out, const envdbi_manifest *m, unsigned flags)
{
	envdbi_store_config cfg;
	envdbi_secret *secret = NULL;
	int rc;

	if (out == NULL || m == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "control plane: open: no manifest");
	*out = NULL;
	if ((rc = manifest_config(&cfg, &secret, m)) == 0)
		rc = envdbi_store_open_config(out, &cfg, flags);
	envdbi_secret_free(secret);
	return rc;
}

void envdbi_store_close(envdbi_store *s)
{
	if (s == NULL)
		return;
	if (s->b != NULL)
		s->ops->close(s->b);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int envdbi_store_snapshot(envdbi_store **out, envdbi_store *src)
{
	envdbi_store *s = NULL;
	int rc;

	*out = NULL;
	if (src->ops->snapshot == NULL)
		return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				    "control plane %s: the %s store takes no snapshot", DESC(src),
				    src->ops->name);
	if ((rc = store_new(&s, src->ops, src->busy_timeout_ms, src->legacy)) != 0)
		return rc;
	lock(src);
	rc = src->ops->snapshot(&s->b, src->b, &s->info);
	unlock(src);
	if (rc != 0) {
		envdbi_store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

bool envdbi_store_is_snapshot(const envdbi_store *s)
{
	return s->info.snapshot;
}

int envdbi_store_bulk(envdbi_store *s, bool on, int64_t cache_kib, int64_t wal_pages)
{
	int rc = 0;

	if (s->ops->bulk == NULL)
		return 0;
	lock(s);
	rc = s->ops->bulk(s->b, on, cache_kib, wal_pages);
	unlock(s);
	return rc;
}

int envdbi_store_version(const envdbi_store *s)
{
	return s->info.version;
}

const char *envdbi_store_deployment_id(const envdbi_store *s)
{
	return s->info.deployment_id;
}

int64_t envdbi_store_deployment_created_at(const envdbi_store *s)
{
	return s->info.deployment_created_at;
}

bool envdbi_store_legacy(const envdbi_store *s)
{
	return s->legacy;
}

const char *envdbi_store_driver(const envdbi_store *s)
{
	return s->ops->name;
}

/* ------------------------------------------------------------------------ */
/* Backup and restore (public API; the work is the backend's)                */
/* ------------------------------------------------------------------------ */

int envdb_backup(envdb_ctx *ctx, const char *path)
{
	envdbi_store *s;
	int rc;

	if (ctx == NULL || path == NULL || path[0] == '\0')
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "backup: no context or no file given");
	if ((s = ctx->store) == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "backup: the context has no control plane open");
	if (s->ops->backup == NULL)
		return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				    "backup: the %s store is backed up with its own tools",
				    s->ops->name);
	lock(s);
	rc = s->ops->backup(s->b, path);
	unlock(s);
	return rc;
}

int envdb_restore(envdb_ctx *ctx, const char *backup_path, unsigned flags)
{
	envdbi_store_config cfg;
	envdbi_secret *secret = NULL;
	const envdbi_store_backend_ops *ops;
	int rc;

	if (ctx == NULL || ctx->manifest == NULL || backup_path == NULL || backup_path[0] == '\0')
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "restore: no context or no backup file given");
	if (flags & ~(unsigned)ENVDB_RESTORE_FORCE)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "restore: unknown flags 0x%x",
				    flags & ~(unsigned)ENVDB_RESTORE_FORCE);
	if (ctx->store != NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "restore: the context has the control plane open; open it "
				    "with ENVDB_OPEN_NO_STORE");
	if ((rc = manifest_config(&cfg, &secret, ctx->manifest)) != 0) {
		if (rc == ENVDB_ERR_MISUSE)
			rc = envdbi_error(ENVDB_ERR_CONFIG, NULL,
					  "restore: the manifest names no control-plane file");
		return rc;
	}
	ops = envdbi_store_backend_find(cfg.driver);
	if (ops == NULL || ops->restore == NULL)
		rc = envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				  "restore: the %s store is restored with its own tools", cfg.driver);
	else
		rc = ops->restore(&cfg, backup_path, flags);
	envdbi_secret_free(secret);
	return rc;
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
	return select_one(s, ENVDBI_OBJ_ENVIRONMENT, ENVDBI_Q_ENV_BY_SLUG,
			  (bindv[]){BT(organization_id), BT(slug)}, 2, (void **)out, what);
}

int envdbi_store_env_get_default(envdbi_store *s, envdb_environment **out,
				 const char *organization_id)
{
	char what[160];
	snprintf(what, sizeof what, "organization %s: default environment", nz(organization_id));
	return select_one(s, ENVDBI_OBJ_ENVIRONMENT, ENVDBI_Q_ENV_DEFAULT,
			  (bindv[]){BT(organization_id)}, 1, (void **)out, what);
}

/* 1 when look-up q (one text parameter) says yes, 0 when no, an error
 * status (`what` names it) when the store fails. */
static int exists_by(envdbi_store *s, envdbi_ints q, const char *arg, const char *what)
{
	int64_t v = 0;
	int rc = ints(s, q, (bindv[]){BT(arg)}, 1, &v, 1, what);
	return rc != 0 ? rc : v ? 1 : 0;
}

int envdbi_store_env_org_exists(envdbi_store *s, const char *organization_id)
{
	return exists_by(s, ENVDBI_I_ENV_ORG_EXISTS, organization_id,
			 "look up the environments of an organization");
}

int envdbi_store_env_list(envdbi_store *s, envdb_environment ***out, size_t *n,
			  const envdbi_env_filter *f)
{
	envdbi_env_filter none = ENVDBI_ENV_FILTER_INIT;
	if (f == NULL)
		f = &none;
	return select_rows(s, ENVDBI_OBJ_ENVIRONMENT, ENVDBI_Q_ENV_LIST,
			   (bindv[]){BT(f->organization_id), BT(f->status),
				     BI(f->lease_expired_at), BI(f->delete_due_at)},
			   4, (void ***)out, n);
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
	int64_t changes = 0;
	int rc;
	if (id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "environment: activate: no id");
	lock(s);
	/* One statement: the check and the change (what env_get and a
	 * record_update of every column cost twice over). */
	rc = exec_stmt(s, ENVDBI_S_ENV_ACTIVATE, (bindv[]){BT(id), BI(envdbi_now())}, 2, &changes,
		       "activate environment");
	if (rc == 0 && changes == 0 && (rc = envdbi_store_env_get(s, &cur, id)) == 0)
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
	return delete_by(s, ENVDBI_S_ENV_DELETE, (bindv[]){BT(id)}, 1, what);
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
	int rc = select_one(s, ENVDBI_OBJ_DATABASE, ENVDBI_Q_DB_BY_ENV,
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
	return select_one(s, ENVDBI_OBJ_DATABASE, ENVDBI_Q_DB_BY_NAME,
			  (bindv[]){BT(database_name)}, 1, (void **)out, what);
}

int envdbi_store_db_list(envdbi_store *s, envdb_database ***out, size_t *n)
{
	return select_rows(s, ENVDBI_OBJ_DATABASE, ENVDBI_Q_DB_LIST, NULL, 0, (void ***)out, n);
}

int envdbi_store_db_update(envdbi_store *s, const envdb_database *d)
{
	if (d == NULL || d->id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "database: update: no id");
	return record_update(s, ENVDBI_OBJ_DATABASE, d);
}

int envdbi_store_db_touch(envdbi_store *s, const char *id, int64_t when)
{
	int64_t changes = 0;
	int rc = exec_stmt(s, ENVDBI_S_DB_TOUCH, (bindv[]){BI(when), BT(id)}, 2, &changes,
			   "touch database");
	if (rc == 0 && changes == 0)
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "database %s: not found", nz(id));
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
	int rc = select_one(s, ENVDBI_OBJ_CREDENTIAL, ENVDBI_Q_CRED_ACTIVE,
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
	if (f == NULL)
		f = &none;
	return select_rows(s, ENVDBI_OBJ_CREDENTIAL, ENVDBI_Q_CRED_LIST,
			   (bindv[]){BT(f->environment_database_id), BT(f->authorization),
				     BT(f->status), BI(f->expired_at)},
			   4, (void ***)out, n);
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

int envdbi_store_resolve_get(envdbi_store *s, envdbi_resolve_row **out, const char *org,
			     const char *slug, const char *user, int64_t now)
{
	int rc;

	*out = NULL;
	lock(s);
	rc = s->ops->resolve_get(s->b, out, org, slug, user, now);
	unlock(s);
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
	int rc = select_one(s, ENVDBI_OBJ_MEMBER, ENVDBI_Q_MEMBER_GET,
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
	return select_rows(s, ENVDBI_OBJ_MEMBER, ENVDBI_Q_MEMBER_LIST,
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
	rc = delete_by(s, ENVDBI_S_MEMBER_DELETE, (bindv[]){BT(environment_id), BT(user_id)}, 2,
		       what ? what : "member");
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
			    DESC(s));
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
	return select_rows(s, ENVDBI_OBJ_TENANT_DB, ENVDBI_Q_TENANT_LIST,
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
	return select_rows(s, ENVDBI_OBJ_PACKAGE, ENVDBI_Q_PACKAGE_LIST, (bindv[]){BT(tenant_id)},
			   1, (void ***)out, n);
}

static int pending_strings(envdbi_store *s, envdbi_strings q, const char *what, char ***out,
			   size_t *n, const char *after_org, const char *upto_org)
{
	int rc = need_legacy(s);
	*out = NULL;
	*n = 0;
	if (rc)
		return rc;
	if (upto_org == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "legacy tenant databases: %s: no organization", what);
	lock(s);
	rc = s->ops->strings(s->b, q, (bindv[]){BT(after_org ? after_org : ""), BT(upto_org)}, 2,
			     out, n, what);
	unlock(s);
	return rc;
}

int envdbi_store_package_tenants_pending(envdbi_store *s, char ***out, size_t *n,
					 const char *after_org, const char *upto_org)
{
	return pending_strings(s, ENVDBI_L_PACKAGE_TENANTS_PENDING,
			       "read the package installations of legacy rows", out, n, after_org,
			       upto_org);
}

int envdbi_store_db_names_taken_pending(envdbi_store *s, char ***out, size_t *n,
					const char *after_org, const char *upto_org)
{
	return pending_strings(s, ENVDBI_L_DB_NAMES_TAKEN_PENDING,
			       "read the database names of legacy rows", out, n, after_org, upto_org);
}

int envdbi_store_env_orgs_pending(envdbi_store *s, char ***out, size_t *n,
				  const char *after_org, const char *upto_org)
{
	return pending_strings(s, ENVDBI_L_ENV_ORGS_PENDING, "read the organizations of legacy rows",
			       out, n, after_org, upto_org);
}

int envdbi_store_package_repoint(envdbi_store *s, const char *from_tenant, const char *to_tenant,
				 size_t *changed)
{
	int64_t changes = 0;
	int rc = need_legacy(s);
	if (rc)
		return rc;
	if (from_tenant == NULL || to_tenant == NULL || to_tenant[0] == '\0')
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "package installations: repoint: no tenant");
	rc = exec_stmt(s, ENVDBI_S_PACKAGE_REPOINT,
		       (bindv[]){BT(to_tenant), BI(envdbi_now()), BT(from_tenant)}, 3, &changes,
		       "repoint package installations");
	if (rc == 0 && changed != NULL)
		*changed = (size_t)changes;
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
	return select_rows(s, o, ENVDBI_Q_ALL, NULL, 0, out, n);
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

int envdbi_store_find_duplicates(envdbi_store *s, const envdbi_object_def *o,
				 const envdbi_index_def *ix, envdbi_dup_cb cb, void *cb_ctx)
{
	int rc;
	if ((rc = registered(s, o)) != 0)
		return rc;
	lock(s);
	rc = s->ops->find_duplicates(s->b, o, ix, cb, cb_ctx);
	unlock(s);
	return rc;
}

int envdbi_store_find_dangling(envdbi_store *s, const envdbi_object_def *o,
			       envdbi_dangling_cb cb, void *cb_ctx)
{
	int rc;
	if ((rc = registered(s, o)) != 0)
		return rc;
	lock(s);
	rc = s->ops->find_dangling(s->b, o, cb, cb_ctx);
	unlock(s);
	return rc;
}

int envdbi_store_verify_schema(envdbi_store *s, envdbi_schema_problem_cb cb, void *cb_ctx)
{
	int rc;
	lock(s);
	rc = s->ops->verify_schema(s->b, s->legacy, cb, cb_ctx);
	unlock(s);
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
	return select_rows(s, ENVDBI_OBJ_TENANT_DB, ENVDBI_Q_TENANT_PENDING,
			   (bindv[]){BT(after_org ? after_org : ""), BI((int64_t)max_orgs)}, 2,
			   (void ***)out, n);
}

int envdbi_store_tenant_db_counts(envdbi_store *s, envdbi_legacy_counts *out)
{
	int64_t v[7] = {0};
	int rc = need_legacy(s);
	memset(out, 0, sizeof *out);
	if (rc)
		return rc;
	if ((rc = ints(s, ENVDBI_I_LEGACY_COUNTS, NULL, 0, v, 7,
		       "count legacy tenant databases")) != 0)
		return rc;
	out->orgs = (size_t)v[0];
	out->orgs_pending = (size_t)v[1];
	out->orgs_migrated = (size_t)v[2];
	out->rows_pending = (size_t)v[3];
	out->orgs_done = (size_t)v[4];
	out->orgs_open = (size_t)v[5];
	out->orgs_inactive = (size_t)v[6];
	return 0;
}

int envdbi_store_tenant_db_org_has_migrated(envdbi_store *s, const char *organization_id)
{
	int rc = need_legacy(s);

	if (rc)
		return rc;
	return exists_by(s, ENVDBI_I_TENANT_ORG_HAS_MIGRATED, organization_id,
			 "look up migrated legacy tenant databases");
}

void envdbi_store_legacy_notice(envdbi_store *s)
{
	int64_t pending = 0, any = 0;

	if (s == NULL || !s->legacy)
		return;
	if (ints(s, ENVDBI_I_LEGACY_OPEN, NULL, 0, &pending, 1, "legacy notice") != 0 ||
	    ints(s, ENVDBI_I_LEGACY_ANY, NULL, 0, &any, 1, "legacy notice") != 0) {
		envdb_error_clear(); /* a notice, not a failure of the open */
		return;
	}
	if (pending)
		envdbi_log(ENVDB_LOG_WARNING,
			   "control plane %s: the deprecated v4 objects (sys_tenant_database) hold "
			   "rows not migrated yet: run `envdb migrate v4-to-v5` (the shim is removed "
			   "in v5.0)",
			   DESC(s));
	else if (any)
		envdbi_log(ENVDB_LOG_WARNING,
			   "control plane %s: the deprecated v4 objects hold no row left to migrate: "
			   "set legacy.register_shim: false in the manifest (the shim is removed in "
			   "v5.0)",
			   DESC(s));
}

int envdbi_store_tenant_db_archive(envdbi_store *s, const char *id, const char *environment_id)
{
	int64_t changes = 0;
	int rc = need_legacy(s);
	if (rc)
		return rc;
	if (id == NULL || !envdbi_uuid_valid(environment_id))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "legacy tenant database: archive: no id or no environment id");
	rc = exec_stmt(s, ENVDBI_S_TENANT_ARCHIVE,
		       (bindv[]){BT(environment_id), BI(envdbi_now()), BT(id)}, 3, &changes,
		       "archive legacy tenant database");
	if (rc == 0 && changes == 0)
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "legacy tenant database %s: archive: gone or already migrated", id);
	return rc;
}

int envdbi_store_tenant_db_wipe_token(envdbi_store *s, const char *id, const char *environment_id)
{
	int64_t changes = 0;
	int rc = need_legacy(s);
	if (rc)
		return rc;
	if (id == NULL || environment_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "legacy tenant database: wipe token: no id or no environment id");
	rc = exec_stmt(s, ENVDBI_S_TENANT_WIPE_TOKEN,
		       (bindv[]){BI(envdbi_now()), BT(id), BT(environment_id)}, 3, &changes,
		       "wipe legacy token");
	if (rc == 0 && changes == 0)
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "legacy tenant database %s: wipe token: gone or not migrated", id);
	return rc;
}
