/*
 * core/check.c — `envdb check`: verify every invariant of DESIGN.md §3 on
 * the data of the control plane, whatever the store let in (another
 * process, a manual edit, a restore of an old file, dropped indexes).
 *
 * Most checks are generated from the object definitions (schema.h): the
 * field rules of every row, every unique index (duplicates are searched in
 * the data, not trusted to the physical index), every reference, and the
 * physical schema against the definitions.  The cross-object invariants
 * (an active environment has its database and one active full_access
 * credential, no provisioning intent past its lease) are written out below.
 * Read-only: nothing is repaired here (envdb reconcile repairs intents).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "schema.h"
#include "store.h"

/* `s` (malloc'd, consumed) with every byte outside printable ASCII as
 * \xNN: a value read from the control plane is whatever its writer chose,
 * and a report must not carry terminal escapes or line breaks of theirs.
 * NULL when out of memory. */
static char *escaped(char *s)
{
	size_t n = 0, i, o = 0;
	char *r;

	for (i = 0; s[i] != '\0'; i++)
		n += (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? 4 : 1;
	if (n == i)
		return s;
	if ((r = malloc(n + 1)) != NULL) {
		for (i = 0; s[i] != '\0'; i++) {
			unsigned char ch = (unsigned char)s[i];

			if (ch < 0x20 || ch >= 0x7f) {
				snprintf(r + o, 5, "\\x%02x", ch);
				o += 4;
			} else {
				r[o++] = (char)ch;
			}
		}
		r[o] = '\0';
	}
	free(s);
	return r;
}

typedef struct vlist {
	envdb_violation **v;
	size_t n, cap;
	bool failed; /* out of memory */
} vlist;

static void add(vlist *l, const char *object, const char *invariant, const char *ids,
		const char *fmt, ...) ENVDB_PRINTF(5, 6);
static void add(vlist *l, const char *object, const char *invariant, const char *ids,
		const char *fmt, ...)
{
	envdb_violation *v = NULL;
	va_list ap;
	if (l->failed)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		envdb_violation **nv = realloc(l->v, cap * sizeof *nv);
		if (nv == NULL)
			goto fail;
		l->v = nv;
		l->cap = cap;
	}
	if ((v = calloc(1, sizeof *v)) == NULL)
		goto fail;
	va_start(ap, fmt);
	int r = vasprintf(&v->message, fmt, ap);
	va_end(ap);
	if (r < 0) {
		v->message = NULL;
		goto fail;
	}
	if ((v->message = escaped(v->message)) == NULL ||
	    (v->object = strdup(object)) == NULL || (v->invariant = strdup(invariant)) == NULL ||
	    (v->row_ids = strdup(ids ? ids : "")) == NULL ||
	    (v->row_ids = escaped(v->row_ids)) == NULL)
		goto fail;
	l->v[l->n++] = v;
	return;
fail:
	if (v != NULL) {
		free(v->object);
		free(v->invariant);
		free(v->row_ids);
		free(v->message);
		free(v);
	}
	l->failed = true;
}

void envdb_violation_list_free(envdb_violation **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == NULL)
			continue;
		free(v[i]->object);
		free(v[i]->invariant);
		free(v[i]->row_ids);
		free(v[i]->message);
		free(v[i]);
	}
	free(v);
}

static const char *nz(const char *s)
{
	return s ? s : "(null)";
}

/* How a row is named in messages; into buf. */
static const char *row_label(char *buf, size_t len, const envdbi_object_def *o, const void *rec)
{
	if (o == ENVDBI_OBJ_ENVIRONMENT) {
		const envdb_environment *e = rec;
		snprintf(buf, len, "environment %s/%s", nz(e->organization_id), nz(e->slug));
	} else if (o == ENVDBI_OBJ_DATABASE) {
		const envdb_database *d = rec;
		snprintf(buf, len, "database %s", nz(d->database_name));
	} else if (o == ENVDBI_OBJ_MEMBER) {
		const envdb_member *m = rec;
		snprintf(buf, len, "member %s of environment %s", nz(m->user_id),
			 nz(m->environment_id));
	} else if (o == ENVDBI_OBJ_TENANT_DB) {
		const envdbi_tenant_db_row *t = rec;
		snprintf(buf, len, "legacy tenant database %s", nz(t->database_name));
	} else {
		const envdbi_field_def *pk = envdbi_schema_primary(o);
		snprintf(buf, len, "%s %s", o->label, nz(envdbi_field_cstr(pk, rec)));
	}
	return buf;
}

static bool json_object_ok(const char *s)
{
	json_error_t err;
	json_t *j = json_loads(s, 0, &err);
	bool ok = j != NULL && json_is_object(j);
	json_decref(j);
	return ok;
}

/* ---- per-row field rules (generated from the definitions) --------------- */

typedef struct scan_ctx {
	vlist *l;
} scan_ctx;

static int check_row(void *cb_ctx, const envdbi_object_def *o, const void *rec)
{
	vlist *l = ((scan_ctx *)cb_ctx)->l;
	const char *id = envdbi_field_cstr(envdbi_schema_primary(o), rec);
	char label[256];
	row_label(label, sizeof label, o, rec);
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		bool sealed = f->type == ENVDBI_FT_CIPHERTEXT ||
			      (o == ENVDBI_OBJ_CREDENTIAL && strcmp(f->name, "encryption_key_id") == 0);
		if (!envdbi_ftype_is_text(f->type)) {
			int64_t v = envdbi_field_int(f, rec);
			if (f->type == ENVDBI_FT_TIME && f->required && v <= 0)
				add(l, o->name, "required", id, "%s: %s is missing", label, f->name);
			else if ((f->flags & ENVDBI_FF_POSITIVE) && v <= 0)
				add(l, o->name, "positive", id, "%s: %s must be > 0 (is %lld)", label,
				    f->name, (long long)v);
			else if (f->type == ENVDBI_FT_BOOL && v != 0 && v != 1)
				add(l, o->name, "enum_value", id, "%s: %s must be 0 or 1", label,
				    f->name);
			continue;
		}
		const char *v = envdbi_field_cstr(f, rec);
		if (v == NULL || (v[0] == '\0' && f->required && f->type != ENVDBI_FT_TEXT) ||
		    (v[0] == '\0' && sealed)) {
			if (sealed)
				add(l, o->name, "ciphertext_sealed", id, "%s: %s is missing", label,
				    f->name);
			else if (f->required)
				add(l, o->name, "required", id, "%s: %s is missing", label, f->name);
			continue;
		}
		switch (f->type) {
		case ENVDBI_FT_UUID:
		case ENVDBI_FT_REF:
			if (!envdbi_uuid_valid(v))
				add(l, o->name, "uuid_format", id, "%s: %s '%s' is not a UUID", label,
				    f->name, v);
			break;
		case ENVDBI_FT_SLUG:
			if (!envdbi_slug_valid(v))
				add(l, o->name, "slug_pattern", id,
				    "%s: slug '%s' does not match ^[a-z0-9][a-z0-9-]{0,62}$", label, v);
			break;
		case ENVDBI_FT_ENUM:
			if (!envdbi_schema_enum_ok(f, v)) {
				envdbi_strbuf b = ENVDBI_STRBUF_INIT;
				envdbi_schema_enum_list(&b, f);
				add(l, o->name, "enum_value", id, "%s: %s '%s' is not one of %s", label,
				    f->name, v, b.data ? b.data : "");
				envdbi_strbuf_free(&b);
			}
			break;
		case ENVDBI_FT_JSON:
			if (!json_object_ok(v))
				add(l, o->name, "json_object", id, "%s: %s is not a JSON object", label,
				    f->name);
			break;
		case ENVDBI_FT_CIPHERTEXT:
			/* never print the value: it may be a plaintext secret */
			if (!envdbi_ciphertext_plausible(v))
				add(l, o->name, "ciphertext_sealed", id,
				    "%s: %s does not look like encryptor output (plaintext secret?)",
				    label, f->name);
			break;
		default:
			break;
		}
	}
	return 0;
}

/* ---- uniqueness and references (generated) ------------------------------ */

static void on_dup(void *cb_ctx, const envdbi_object_def *o, const envdbi_index_def *ix,
		   const char *key, const char *ids)
{
	envdbi_strbuf cols = ENVDBI_STRBUF_INIT;
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
		envdbi_strbuf_printf(&cols, "%s%s", c ? ", " : "", ix->columns[c]);
	add(cb_ctx, o->name, ix->invariant, ids, "%s: broken rule '%s': rows %s share (%s) = %s",
	    o->name, ix->description, nz(ids), cols.data ? cols.data : "", nz(key));
	envdbi_strbuf_free(&cols);
}

static void on_dangling(void *cb_ctx, const envdbi_object_def *o, const envdbi_field_def *f,
			const char *row_id, const char *missing_id)
{
	add(cb_ctx, o->name, "dangling_reference", row_id,
	    "%s %s: %s names %s %s, which does not exist (orphan row)", o->label, nz(row_id),
	    f->name, f->ref, nz(missing_id));
}

static void on_schema(void *cb_ctx, const char *object, const char *what, const char *message)
{
	add(cb_ctx, object, "schema_matches_definitions", "", "%s: %s", object, message);
	(void)what;
}

/* ---- cross-object invariants -------------------------------------------- */

static bool status_needs_database(const char *status)
{
	return status != NULL && (strcmp(status, "active") == 0 ||
				  strcmp(status, "suspended") == 0 || strcmp(status, "migrating") == 0);
}

/* The rows of the environments, databases and credentials as the scan read
 * them (each object is read once: the field rules, the cross-object
 * invariants and the ciphertext pass all work on these).  Owned. */
typedef struct check_rows {
	envdb_environment **envs;
	envdb_database **dbs; /* sorted by id (by_id) */
	envdb_credential **creds;
	size_t ne, nd, nc;
} check_rows;

static void check_rows_free(check_rows *r)
{
	envdb_environment_list_free(r->envs, r->ne);
	envdb_database_list_free(r->dbs, r->nd);
	envdb_credential_list_free(r->creds, r->nc);
	memset(r, 0, sizeof *r);
}

static int cmp_str(const char *x, const char *y)
{
	return strcmp(x ? x : "", y ? y : "");
}

static int cmp_db_by_env(const void *a, const void *b)
{
	const envdb_database *x = *(const envdb_database *const *)a;
	const envdb_database *y = *(const envdb_database *const *)b;
	return cmp_str(x->environment_id, y->environment_id);
}

static int cmp_db_by_id(const void *a, const void *b)
{
	const envdb_database *x = *(const envdb_database *const *)a;
	const envdb_database *y = *(const envdb_database *const *)b;
	return cmp_str(x->id, y->id);
}

static int cmp_cred_by_db(const void *a, const void *b)
{
	const envdb_credential *x = *(const envdb_credential *const *)a;
	const envdb_credential *y = *(const envdb_credential *const *)b;
	return cmp_str(x->environment_database_id, y->environment_database_id);
}

/* The order the store's credential list had: database, creation, id. */
static int cmp_cred_by_db_created(const void *a, const void *b)
{
	const envdb_credential *x = *(const envdb_credential *const *)a;
	const envdb_credential *y = *(const envdb_credential *const *)b;
	int c = cmp_str(x->environment_database_id, y->environment_database_id);
	if (c == 0)
		c = (x->created_at > y->created_at) - (x->created_at < y->created_at);
	return c != 0 ? c : cmp_str(x->id, y->id);
}

/* The first element of sorted `v` (n entries) whose key equals `key`
 * (lower bound), or n. */
static size_t lower_bound(void *const *v, size_t n, const char *key,
			  const char *(*key_of)(const void *))
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *k = key_of(v[mid]);
		if (strcmp(k ? k : "", key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const char *db_env_key(const void *d)
{
	return ((const envdb_database *)d)->environment_id;
}

static const char *db_id_key(const void *d)
{
	return ((const envdb_database *)d)->id;
}

static const char *cred_db_key(const void *c)
{
	return ((const envdb_credential *)c)->environment_database_id;
}

static bool str_is(const char *s, const char *want)
{
	return s != NULL && strcmp(s, want) == 0;
}

/* The database row `id` of r (sorted by id), or NULL. */
static envdb_database *db_by_id(const check_rows *r, const char *id)
{
	size_t k;
	if (id == NULL)
		return NULL;
	k = lower_bound((void *const *)r->dbs, r->nd, id, db_id_key);
	return k < r->nd && str_is(r->dbs[k]->id, id) ? r->dbs[k] : NULL;
}

/*
 * The per-environment invariants, on the rows the scan read.  Linear
 * after two sorts (n log n): the databases by environment_id and the
 * active full_access credentials by database id (pointer arrays over the
 * scanned rows), each environment then looked up by binary search
 * (comparing every environment with every database and credential took
 * minutes at 100,000 environments; reading the three lists again cost as
 * much as the scan).
 */
static int check_environments(vlist *l, const check_rows *r)
{
	envdb_database **dbs = NULL;
	envdb_credential **creds = NULL;
	size_t nd = r->nd, nc = 0;
	int64_t now = envdbi_now();
	int rc = 0;

	if ((nd > 0 && (dbs = malloc(nd * sizeof *dbs)) == NULL) ||
	    (r->nc > 0 && (creds = malloc(r->nc * sizeof *creds)) == NULL)) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "check: out of memory");
		goto out;
	}
	if (nd > 0)
		memcpy(dbs, r->dbs, nd * sizeof *dbs);
	for (size_t k = 0; k < r->nc; k++)
		if (str_is(r->creds[k]->status, "active") &&
		    str_is(r->creds[k]->authorization, "full_access"))
			creds[nc++] = r->creds[k];
	if (nd > 1)
		qsort(dbs, nd, sizeof *dbs, cmp_db_by_env);
	if (nc > 1)
		qsort(creds, nc, sizeof *creds, cmp_cred_by_db);
	for (size_t i = 0; i < r->ne; i++) {
		const envdb_environment *e = r->envs[i];
		const envdb_database *db = NULL;
		size_t active_fa = 0;
		if (e->id != NULL) {
			size_t k = lower_bound((void *const *)dbs, nd, e->id, db_env_key);
			if (k < nd && dbs[k]->environment_id && strcmp(dbs[k]->environment_id, e->id) == 0)
				db = dbs[k];
		}
		/* v5 addresses an environment as ORG/SLUG from a command line or a
		 * request: an organization id outside the identifier rules (a
		 * space, '/', non-ASCII, ...) is an environment nobody can reach */
		if (e->organization_id != NULL &&
		    envdbi_check_ident("check", "organization id", e->organization_id) != 0) {
			add(l, "sys_environment", "organization_addressable", e->id,
			    "environment %s: %s", nz(e->id), envdb_error_last()->message);
			envdb_error_clear();
		}
		if (status_needs_database(e->status) && db == NULL)
			add(l, "sys_environment", "database_per_active_environment", e->id,
			    "environment %s/%s: status %s but it has no database row",
			    nz(e->organization_id), nz(e->slug), e->status);
		if (db != NULL && db->id != NULL)
			for (size_t k = lower_bound((void *const *)creds, nc, db->id, cred_db_key);
			     k < nc && creds[k]->environment_database_id &&
			     strcmp(creds[k]->environment_database_id, db->id) == 0;
			     k++)
				active_fa++;
		if (e->status != NULL && strcmp(e->status, "active") == 0 && db != NULL &&
		    active_fa == 0)
			add(l, "sys_environment", "active_full_access", e->id,
			    "environment %s/%s: active but database %s has no active full_access credential",
			    nz(e->organization_id), nz(e->slug), nz(db->database_name));
		if (e->status != NULL && strcmp(e->status, "provisioning") == 0) {
			if (e->lease_expires_at <= 0)
				add(l, "sys_environment", "provisioning_lease", e->id,
				    "environment %s/%s: provisioning without a lease", nz(e->organization_id),
				    nz(e->slug));
			else if (e->lease_expires_at < now)
				add(l, "sys_environment", "provisioning_lease", e->id,
				    "environment %s/%s: still provisioning, its lease expired %lld s ago (run envdb reconcile)",
				    nz(e->organization_id), nz(e->slug),
				    (long long)(now - e->lease_expires_at));
		}
	}
out:
	free(dbs);
	free(creds);
	return rc;
}

/* An active credential past its expires_at: resolve refuses it, so its
 * readers are locked out until someone rotates (envdb reconcile --apply
 * does ahead of time).  A violation, not a note: the environment does not
 * work.  On the scanned rows (reported in the order database, creation,
 * id). */
static int check_expired_credentials(vlist *l, const check_rows *r)
{
	envdb_credential **creds = NULL;
	size_t nc = 0;
	int64_t now = envdbi_now();

	for (size_t k = 0; k < r->nc; k++) {
		const envdb_credential *c = r->creds[k];
		if (!str_is(c->status, "active") || c->expires_at <= 0 || c->expires_at > now)
			continue;
		if (creds == NULL && (creds = malloc(r->nc * sizeof *creds)) == NULL)
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "check: out of memory");
		creds[nc++] = r->creds[k];
	}
	if (nc > 1)
		qsort(creds, nc, sizeof *creds, cmp_cred_by_db_created);
	for (size_t k = 0; k < nc; k++)
		add(l, "sys_database_credential", "active_credential_expired", creds[k]->id,
		    "credential %s (%s) of database row %s: active but it expired %lld s ago; "
		    "resolve refuses it (envdb cred rotate, or envdb reconcile --apply)",
		    nz(creds[k]->id), nz(creds[k]->authorization),
		    nz(creds[k]->environment_database_id),
		    (long long)(now - creds[k]->expires_at));
	free(creds);
	return 0;
}

/* Every check that needs no encryptor; the environment, database and
 * credential rows are left in *keep (owned by the caller) for the
 * ciphertext pass. */
static int check_store(vlist *l, envdbi_store *s, check_rows *keep)
{
	int rc = 0;

	if (envdbi_schema_validate(envdbi_schema_objects, envdbi_schema_n_objects) != 0)
		add(l, "definitions", "definition_valid", "", "%s", envdb_error_last()->message);
	if ((rc = envdbi_store_verify_schema(s, on_schema, l)) != 0)
		return rc;
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		scan_ctx sc = {l};
		void **v = NULL;
		size_t nv = 0;
		if (o->legacy && !envdbi_store_legacy(s))
			continue;
		if ((rc = envdbi_store_rows(s, o, &v, &nv)) != 0)
			return rc;
		for (size_t k = 0; k < nv; k++)
			check_row(&sc, o, v[k]);
		if (o == ENVDBI_OBJ_ENVIRONMENT) {
			keep->envs = (envdb_environment **)v;
			keep->ne = nv;
		} else if (o == ENVDBI_OBJ_DATABASE) {
			keep->dbs = (envdb_database **)v;
			keep->nd = nv;
		} else if (o == ENVDBI_OBJ_CREDENTIAL) {
			keep->creds = (envdb_credential **)v;
			keep->nc = nv;
		} else {
			for (size_t k = 0; k < nv; k++)
				envdbi_record_free(o, v[k]);
			free(v);
		}
		for (size_t k = 0; k < o->n_indexes; k++)
			if (o->indexes[k].unique &&
			    (rc = envdbi_store_find_duplicates(s, o, &o->indexes[k], on_dup, l)) != 0)
				return rc;
		if ((rc = envdbi_store_find_dangling(s, o, on_dangling, l)) != 0)
			return rc;
	}
	/* the store's order is its collation's: sorted here by the same
	 * comparison the lookups use, whatever the column held */
	if (keep->nd > 1)
		qsort(keep->dbs, keep->nd, sizeof *keep->dbs, cmp_db_by_id);
	if ((rc = check_environments(l, keep)) != 0)
		return rc;
	if ((rc = check_expired_credentials(l, keep)) != 0)
		return rc;
	if (l->failed)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "check: out of memory");
	return 0;
}

int envdbi_check_store(envdb_violation ***out, size_t *n, envdbi_store *s)
{
	vlist l = {NULL, 0, 0, false};
	check_rows rows = {0};
	int rc;

	*out = NULL;
	*n = 0;
	rc = check_store(&l, s, &rows);
	check_rows_free(&rows);
	if (rc != 0) {
		envdb_violation_list_free(l.v, l.n);
		return rc;
	}
	*out = l.v;
	*n = l.n;
	return 0;
}

/* ---- the ciphertexts, through the encryptor (invariant 7) --------------- */

#define CHECK_PAIRING_TRIES 10000

/* One credential and what opening it told. */
typedef struct sealed_row {
	envdb_credential *c;
	envdb_database *db; /* NULL: dangling (reported above) */
	bool opens;         /* with its own associated data */
} sealed_row;

/* True when the ciphertext of `a` opens with the associated data of `b`. */
static bool opens_as(envdb_ctx *ctx, const sealed_row *a, const sealed_row *b)
{
	unsigned char aad[ENVDB_CREDENTIAL_AAD_BOUND_MAX];
	envdbi_secret *pt = NULL;
	envdb_credential as_b = *b->c;
	size_t len;

	as_b.secret_ciphertext = a->c->secret_ciphertext;
	if (envdbi_credential_aad_of(aad, &len, &as_b, b->c->aad_version, b->db) != ENVDB_OK ||
	    envdbi_encryptor_decrypt(ctx->encryptor, a->c->secret_ciphertext, aad, len, &pt) !=
		    ENVDB_OK)
		return false;
	envdbi_secret_free(pt);
	return true;
}

/* Open every credential's ciphertext with its own associated data (the
 * plaintext is wiped at once), compare the key id inside it with the
 * row's encryption_key_id, and name the rows a ciphertext was swapped or
 * copied with.  Fatal only when the rows cannot be read. */
static int check_ciphertexts(vlist *l, envdb_ctx *ctx, const check_rows *cr)
{
	envdb_credential *const *creds = cr->creds;
	sealed_row *rows = NULL;
	size_t nc = cr->nc, i, k, tries = 0;
	int rc = 0;

	if (nc > 0 && (rows = calloc(nc, sizeof *rows)) == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "check: out of memory");
		goto out;
	}
	for (i = 0; i < nc; i++) {
		envdb_credential *c = rows[i].c = creds[i];
		envdbi_secret *pt = NULL;
		char *key = NULL;

		if (c->secret_ciphertext == NULL || !envdbi_ciphertext_plausible(c->secret_ciphertext))
			continue; /* reported by the field rules */
		/* the database row as the scan read it (no query per credential) */
		if ((rows[i].db = db_by_id(cr, c->environment_database_id)) == NULL)
			continue; /* dangling reference, reported above */
		if (c->aad_version < ENVDB_CREDENTIAL_AAD_VERSION)
			add(l, "sys_database_credential", "aad_binds_address", c->id,
			    "credential %s of database %s: sealed with associated data version "
			    "%lld, which does not bind the database's driver, name and url; run "
			    "envdb key rewrap",
			    c->id, nz(rows[i].db->database_name), (long long)c->aad_version);
		if (envdbi_encryptor_key_of(ctx->encryptor, c->secret_ciphertext, &key) != ENVDB_OK)
			add(l, "sys_database_credential", "ciphertext_key_id", c->id,
			    "credential %s: the encryptor cannot tell the key of its ciphertext: %s",
			    c->id, envdb_error_last()->message);
		else if (c->key_id == NULL || strcmp(key, c->key_id) != 0)
			add(l, "sys_database_credential", "ciphertext_key_id", c->id,
			    "credential %s: its ciphertext is sealed with key %s, but "
			    "encryption_key_id says %s",
			    c->id, key, nz(c->key_id));
		free(key);
		if (envdbi_credential_open(&pt, ctx, c, rows[i].db) == ENVDB_OK) {
			rows[i].opens = true;
			envdbi_secret_free(pt);
		} else if (envdb_error_last()->status != ENVDB_ERR_INTEGRITY) {
			add(l, "sys_database_credential", "ciphertext_bound", c->id,
			    "credential %s: its ciphertext cannot be opened: %s", c->id,
			    envdb_error_last()->message);
			rows[i].opens = true; /* not a binding question: no pairing */
		}
	}
	rc = 0;
	/* What does not open with its own associated data: whose does it
	 * open with (a swap, or a copy onto another row)?  Bounded: a mass
	 * failure (an edited url of a database with many credentials) costs
	 * at most CHECK_PAIRING_TRIES extra decryptions. */
	for (i = 0; i < nc; i++) {
		char ids[80];
		bool named = false;

		if (rows[i].db == NULL || rows[i].opens)
			continue;
		for (k = 0; k < nc && !named && tries < CHECK_PAIRING_TRIES; k++) {
			if (k == i || rows[k].db == NULL)
				continue;
			tries++;
			if (!opens_as(ctx, &rows[i], &rows[k]))
				continue;
			snprintf(ids, sizeof ids, "%s,%s", rows[i].c->id, rows[k].c->id);
			add(l, "sys_database_credential", "ciphertext_bound", ids,
			    "credential %s: its ciphertext is the one sealed for credential %s "
			    "(swapped or copied between rows)",
			    rows[i].c->id, rows[k].c->id);
			named = true;
		}
		if (!named)
			add(l, "sys_database_credential", "ciphertext_bound", rows[i].c->id,
			    "credential %s: its ciphertext does not open with its own associated "
			    "data: it was replaced, or database %s's driver, name or url changed "
			    "since it was sealed (driver %s, url %s now)",
			    rows[i].c->id, nz(rows[i].db->database_name), nz(rows[i].db->driver),
			    nz(rows[i].db->database_url));
	}
out:
	free(rows);
	return rc;
}

int envdb_check_flags(envdb_violation ***out, size_t *n, envdb_ctx *ctx, unsigned flags)
{
	vlist l = {NULL, 0, 0, false};
	check_rows rows = {0};
	int rc;

	if (out == NULL || n == NULL || ctx == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "check: NULL argument");
	*out = NULL;
	*n = 0;
	if (ctx->store == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "check: the context was opened without a control plane");
	if ((rc = check_store(&l, ctx->store, &rows)) != 0)
		goto fail;
	if (!(flags & ENVDB_CHECK_NO_DECRYPT) && ctx->encryptor == NULL)
		envdbi_log(ENVDB_LOG_WARNING,
			   "check: the manifest configures no encryptor: the ciphertexts are not "
			   "opened (their binding to their rows is not verified)");
	else if (!(flags & ENVDB_CHECK_NO_DECRYPT) && (rc = check_ciphertexts(&l, ctx, &rows)) != 0)
		goto fail;
	check_rows_free(&rows);
	if (l.failed) {
		envdb_violation_list_free(l.v, l.n);
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "check: out of memory");
	}
	*out = l.v;
	*n = l.n;
	return 0;
fail:
	envdbi_error_prefix("check: ");
	check_rows_free(&rows);
	envdb_violation_list_free(l.v, l.n);
	return rc;
}

int envdb_check(envdb_violation ***out, size_t *n, envdb_ctx *ctx)
{
	return envdb_check_flags(out, n, ctx, 0);
}
