/*
 * core/migrate.c — the v4 → v5 migration (DESIGN.md §7, core/MIGRATION.md):
 * every legacy sys_tenant_database row becomes an environment whose
 * database row reuses the legacy physical database, with its token
 * re-encrypted under the current key and bound to its new row.
 *
 * Shape of a run:
 *   counts → for each batch of organizations (in organization order):
 *     BEGIN; for each organization: plan (reads, checks, decrypt, encrypt —
 *     nothing written), then write (insert environment, database,
 *     credential, owner; repoint packages; archive the legacy row);
 *     COMMIT (ROLLBACK in a dry run) → progress.
 * An organization whose plan fails (conflict, bad token, unknown scheme) is
 * reported and nothing of it is written, so it never dirties the batch.  A
 * failure while *writing* (which checks should have excluded: a race with
 * another writer, a failpoint, a store error) rolls the whole batch back
 * and replays it one organization per transaction, so the failure stays
 * with its organization.  Atomicity per organization therefore never
 * depends on savepoints, only on the batch transaction.
 *
 * Idempotence: only rows whose migrated_environment_id is NULL are looked
 * at, and a migrated row gets it in the same transaction as everything
 * else of its organization.
 *
 * Secrets: a legacy token lives decrypted only in an envdbi_secret (secure
 * memory) between decrypt and encrypt; messages name rows, never tokens.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "failpoint.h"
#include "internal.h"
#include "migrate.h"
#include "store.h"

#define MIGRATE_DEFAULT_BATCH 4096
/* Page cache for the run (KiB) and WAL pages between checkpoints: a batch
 * transaction dirties index pages all over the B-trees (the keys are random
 * UUIDs); they must stay in the cache until the COMMIT writes each once. */
#define MIGRATE_CACHE_KIB 131072
#define MIGRATE_WAL_PAGES 32768
#define MIGRATE_CREATED_BY "v4-migration"
#define MIGRATE_SLUG "prod"
#define MIGRATE_MAX_SUFFIX 10000
#define MIGRATE_PLAINTEXT "none" /* legacy encryptor name: tokens are plaintext */

/* ------------------------------------------------------------------------ */
/* The v4 token format and the driver mapping (migrate.h)                    */
/* ------------------------------------------------------------------------ */

size_t envdbi_legacy_token_aad(char *buf, size_t cap, const char *legacy_id)
{
	int n;

	if (buf == NULL || legacy_id == NULL)
		return 0;
	n = snprintf(buf, cap, "%s%s", ENVDBI_LEGACY_AAD_PREFIX, legacy_id);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}

/* True when the query string of `url` has a parameter that carries a
 * credential (libsql's authToken, libpq's password, ...): such a URL would
 * put a secret in clear into database_url, which is printed and stored. */
static bool query_has_secret(const char *url)
{
	static const char *const secret_keys[] = {
		"password", "sslpassword", "passwd", "pwd", "authtoken", "auth_token",
		"token", "access_token", "jwt", "secret", "apikey", "api_key",
	};
	const char *q = strchr(url, '?'), *frag = strchr(url, '#');
	size_t i;

	if (q == NULL || (frag != NULL && frag < q))
		return false;
	q++;
	while (*q != '\0' && *q != '#') {
		size_t len = strcspn(q, "=&;#");

		for (i = 0; i < sizeof(secret_keys) / sizeof(secret_keys[0]); i++)
			if (len == strlen(secret_keys[i]) && strncasecmp(q, secret_keys[i], len) == 0)
				return true;
		q += strcspn(q, "&;#");
		if (*q == '&' || *q == ';')
			q++;
	}
	return false;
}

int envdbi_migrate_driver_of_url(envdbi_plugins *set, const char **driver, const char *url)
{
	char scheme[32];
	const char *rest, *name;
	size_t n = 0;

	*driver = NULL;
	if (url == NULL || *url == '\0')
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "url: empty");
	/* RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
	while (url[n] != '\0' && url[n] != ':' && n < sizeof(scheme) - 1) {
		char c = url[n];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (n > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
		if (!ok)
			break;
		scheme[n] = c;
		n++;
	}
	scheme[n] = '\0';
	if (n == 0 || url[n] != ':')
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "url: no scheme");
	if (query_has_secret(url))
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "url: carries a credential in its query string "
				    "(v5 keeps no secret in database_url)");
	if (envdbi_adapter_of_scheme(set, scheme, &name) != ENVDB_OK) {
		envdbi_error_prefix("url: ");
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s", envdb_error_last()->message);
	}
	/* With an authority ("scheme://"): a host, and no password in it. */
	rest = url + n + 1;
	if (strncmp(rest, "//", 2) == 0) {
		const char *end, *at = NULL;

		rest += 2;
		if (rest[0] == '\0')
			return envdbi_error(ENVDB_ERR_INVALID, NULL,
					    "url: scheme '%s' without a host ('%s://HOST...')",
					    scheme, scheme);
		end = rest + strcspn(rest, "/?#");
		for (const char *q = rest; q < end; q++)
			if (*q == '@')
				at = q;
		if (at != NULL && memchr(rest, ':', (size_t)(at - rest)) != NULL)
			return envdbi_error(ENVDB_ERR_INVALID, NULL,
					    "url: carries a password in its user information "
					    "(v5 keeps no secret in database_url)");
	}
	*driver = name;
	return ENVDB_OK;
}

void envdbi_migrate_uuid_next(uint64_t *state, char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[8];
	uint64_t v, rnd;
	char h[32];
	size_t i, o = 0;

	if (*state == 0) {
		struct timespec t;

		clock_gettime(CLOCK_REALTIME, &t);
		*state = (((uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u) << 12) &
			 ((UINT64_C(1) << 60) - 1);
	}
	v = (*state)++;
	randombytes_buf(r, sizeof(r));
	memcpy(&rnd, r, sizeof(rnd));
	for (i = 0; i < 15; i++) /* 60 bits of the counter */
		h[i] = hex[(v >> (4 * (14 - i))) & 0xf];
	h[15] = hex[8 | (rnd & 0x3)]; /* variant 10xx */
	rnd >>= 2;
	for (i = 16; i < 31; i++) {
		h[i] = hex[rnd & 0xf];
		rnd >>= 4;
	}
	/* 8-4-4-4-12 with the version nibble '4' in front of the third group */
	for (i = 0; i < 12; i++) {
		if (i == 8)
			out[o++] = '-';
		out[o++] = h[i];
	}
	out[o++] = '-';
	out[o++] = '4';
	for (i = 12; i < 15; i++)
		out[o++] = h[i];
	out[o++] = '-';
	for (i = 15; i < 19; i++)
		out[o++] = h[i];
	out[o++] = '-';
	for (i = 19; i < 31; i++)
		out[o++] = h[i];
	out[o] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Report                                                                    */
/* ------------------------------------------------------------------------ */

const char *envdb_migrate_outcome_str(int outcome)
{
	switch (outcome) {
	case ENVDB_MIGRATE_MIGRATED:
		return "migrated";
	case ENVDB_MIGRATE_ALREADY:
		return "already";
	case ENVDB_MIGRATE_CONFLICT:
		return "conflict";
	case ENVDB_MIGRATE_FAILED:
		return "failed";
	case ENVDB_MIGRATE_SKIPPED:
		return "skipped";
	default:
		return "unknown";
	}
}

static void org_clear(envdb_migrate_org *o)
{
	size_t i;

	for (i = 0; i < o->n_envs; i++) {
		envdb_migrate_env *e = &o->envs[i];
		free(e->legacy_id);
		free(e->database_name);
		free(e->driver);
		free(e->slug);
		free(e->environment_id);
	}
	free(o->envs);
	free(o->organization_id);
	free(o->reason);
	free(o->mapped_to);
	memset(o, 0, sizeof(*o));
}

void envdb_migrate_report_free(envdb_migrate_report *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n_orgs; i++)
		org_clear(&r->orgs[i]);
	free(r->orgs);
	free(r->stopped_message);
	free(r);
}

/* ------------------------------------------------------------------------ */
/* The run                                                                   */
/* ------------------------------------------------------------------------ */

/* One entry of the organization id map (sorted by old id). */
typedef struct org_map_entry {
	const char *old_id, *new_id; /* borrowed from the options */
} org_map_entry;

typedef struct mig {
	envdb_ctx *ctx;
	envdbi_store *s;
	envdbi_store *snapshot;    /* dry run on a store opened for writing: owned */
	envdbi_plugin *legacy;     /* decrypts v4 tokens; NULL: plaintext */
	const char *legacy_name;
	int plaintext;             /* legacy encryptor "none" */
	org_map_entry *map;
	size_t n_map;
	uint64_t id_seq;           /* envdbi_migrate_uuid_next */
	const char *created_by;
	const char *owner;         /* NULL: no member */
	int dry_run;
	size_t batch;
	envdb_migrate_report *rep;
	size_t cap_orgs;
	envdb_migrate_progress_fn progress;
	void *progress_ctx;
	size_t orgs_total, orgs_done;
	struct timespec t0;
	/* The batch's legacy rows that package installations point at, read
	 * once per batch (pkg_known); other rows need no repoint. */
	bool pkg_known;
	char **pkg_ids;
	size_t n_pkg;
	/* Likewise for the checks of plan_org (probes_known): the batch's
	 * database names already registered, the names that two of its rows
	 * share (the first one migrated takes it), and its organizations that
	 * have environments.  A name or an organization in none of them is
	 * free without a query; the others are looked up as before. */
	bool probes_known;
	char **taken, **org_envs;
	size_t n_taken, n_org_envs;
	const char **dup_names;
	size_t n_dup;
} mig;

/* One legacy row being migrated. */
typedef struct planned {
	const envdbi_tenant_db_row *row; /* borrowed from the batch */
	const char *org;                 /* v5 organization id (mapped or the row's) */
	const char *old_org;             /* the legacy id when mapped, else NULL */
	const char *driver;              /* the adapter's name, owned by the loader */
	char env_id[37], db_id[37], cred_id[37], member_id[37];
	char slug[64];
	int is_default;
	int plaintext;                   /* the token was taken as plaintext */
	envdb_credential cred;           /* secret_ciphertext, key_id owned */
} planned;

static int64_t elapsed_ms(const mig *m)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)(t.tv_sec - m->t0.tv_sec) * 1000 +
	       (int64_t)(t.tv_nsec - m->t0.tv_nsec) / 1000000;
}

/* Statuses after which the control plane itself is in trouble: the run
 * stops instead of blaming one organization after the other. */
static int is_fatal(int rc)
{
	return rc == ENVDB_ERR_BUSY || rc == ENVDB_ERR_IO || rc == ENVDB_ERR_NOMEM ||
	       rc == ENVDB_ERR_MISUSE;
}

static char *dup_last_error(void)
{
	const envdb_error *e = envdb_error_last();

	return strdup(e->message[0] ? e->message : envdb_status_str(e->status));
}

/* A new org entry at the end of the report (zeroed, id copied). */
static envdb_migrate_org *org_new(mig *m, const char *organization_id)
{
	envdb_migrate_report *r = m->rep;
	envdb_migrate_org *o;

	if (r->n_orgs == m->cap_orgs) {
		size_t cap = m->cap_orgs ? m->cap_orgs * 2 : 64;
		envdb_migrate_org *v = realloc(r->orgs, cap * sizeof(*v));

		if (v == NULL)
			return NULL;
		r->orgs = v;
		m->cap_orgs = cap;
	}
	o = &r->orgs[r->n_orgs];
	memset(o, 0, sizeof(*o));
	if ((o->organization_id = strdup(organization_id)) == NULL)
		return NULL;
	r->n_orgs++;
	return o;
}

/* Drop the report entries from index `mark` on (a batch rolled back). */
static void report_truncate(mig *m, size_t mark)
{
	while (m->rep->n_orgs > mark)
		org_clear(&m->rep->orgs[--m->rep->n_orgs]);
}

/* Set outcome and reason "FMT" of `o`.  Returns 0 or ENVDB_ERR_NOMEM. */
static int org_set(envdb_migrate_org *o, int outcome, const char *fmt, ...) ENVDB_PRINTF(3, 4);
static int org_set(envdb_migrate_org *o, int outcome, const char *fmt, ...)
{
	va_list ap;
	int n;

	o->outcome = outcome;
	free(o->reason);
	o->reason = NULL;
	if (fmt == NULL)
		return ENVDB_OK;
	va_start(ap, fmt);
	n = vasprintf(&o->reason, fmt, ap);
	va_end(ap);
	if (n < 0) {
		o->reason = NULL;
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
	}
	return ENVDB_OK;
}

static void planned_clear(planned *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(p[i].cred.secret_ciphertext);
		free(p[i].cred.key_id);
		p[i].cred.secret_ciphertext = NULL;
		p[i].cred.key_id = NULL;
	}
}

/* True when environment `e` was made by this migration (its metadata says
 * so): its organization's new legacy rows are then further environments,
 * not a conflict. */
static int made_by_migration(const envdb_environment *e)
{
	json_t *root, *from;
	int yes = 0;

	if (e->metadata == NULL)
		return 0;
	root = json_loads(e->metadata, 0, NULL);
	if (root == NULL)
		return 0;
	from = json_object_get(root, "migrated_from");
	yes = json_is_object(from) &&
	      json_is_string(json_object_get(from, "id")) &&
	      json_is_string(json_object_get(from, "object")) &&
	      strcmp(json_string_value(json_object_get(from, "object")), "sys_tenant_database") ==
		      0;
	json_decref(root);
	return yes;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Do package installations point at legacy row `id` (a row of the batch)? */
static bool has_packages(const mig *m, const char *id)
{
	return m->n_pkg > 0 && bsearch(&id, m->pkg_ids, m->n_pkg, sizeof(*m->pkg_ids), str_cmp);
}

static bool in_sorted(const char *const *v, size_t n, const char *key)
{
	return n > 0 && bsearch(&key, v, n, sizeof(*v), str_cmp) != NULL;
}

/* Forget what was read for the batch. */
static void batch_forget(mig *m)
{
	envdbi_store_strings_free(m->pkg_ids, m->n_pkg);
	envdbi_store_strings_free(m->taken, m->n_taken);
	envdbi_store_strings_free(m->org_envs, m->n_org_envs);
	free(m->dup_names);
	m->pkg_ids = m->taken = m->org_envs = NULL;
	m->n_pkg = m->n_taken = m->n_org_envs = 0;
	m->dup_names = NULL;
	m->n_dup = 0;
	m->pkg_known = m->probes_known = false;
}

/*
 * Read, inside the batch transaction, what the checks and writes of the
 * batch rows[0..n) (the organizations in (after, upto]) need to know: three
 * queries for the batch instead of three point queries per row.
 */
static int batch_learn(mig *m, envdbi_tenant_db_row *const *rows, size_t n, const char *after,
		       const char *upto)
{
	const char **names;
	size_t i, k = 0;
	int rc;

	if ((rc = envdbi_store_package_tenants_pending(m->s, &m->pkg_ids, &m->n_pkg, after,
						       upto)) != ENVDB_OK)
		return rc;
	m->pkg_known = true;
	if ((rc = envdbi_store_db_names_taken_pending(m->s, &m->taken, &m->n_taken, after,
						      upto)) != ENVDB_OK ||
	    (rc = envdbi_store_env_orgs_pending(m->s, &m->org_envs, &m->n_org_envs, after,
						upto)) != ENVDB_OK)
		return rc;
	if ((names = malloc((n ? n : 1) * sizeof(*names))) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
	for (i = 0; i < n; i++)
		names[i] = rows[i]->database_name;
	qsort(names, n, sizeof(*names), str_cmp);
	/* compact the names seen twice or more, in place, once each */
	for (i = 1; i < n; i++)
		if (strcmp(names[i], names[i - 1]) == 0 && (k == 0 || strcmp(names[k - 1], names[i]) != 0))
			names[k++] = names[i];
	m->dup_names = names;
	m->n_dup = k;
	m->probes_known = true;
	return ENVDB_OK;
}

/* Does ORG/slug exist?  1 yes, 0 no, or a negative status. */
static int slug_taken(mig *m, const char *org, const char *slug)
{
	envdb_environment *e = NULL;
	int rc = envdbi_store_env_get_by_slug(m->s, &e, org, slug);

	envdb_environment_free(e);
	if (rc == ENVDB_OK)
		return 1;
	if (rc == ENVDB_ERR_NOT_FOUND) {
		envdb_error_clear();
		return 0;
	}
	return rc;
}

/* The map entry of legacy organization `org`, or NULL. */
static int map_cmp(const void *a, const void *b)
{
	return strcmp(((const org_map_entry *)a)->old_id, ((const org_map_entry *)b)->old_id);
}

static const org_map_entry *map_find(const mig *m, const char *org)
{
	org_map_entry key = {org, NULL};

	if (m->n_map == 0)
		return NULL;
	return bsearch(&key, m->map, m->n_map, sizeof(*m->map), map_cmp);
}

/* `id` with every byte that is not printable ASCII, and '\\', "'" and '=',
 * written as \xNN: the form --map-org reads back (envdb_migrate_unescape_id). */
static char *escape_id(const char *id)
{
	size_t n = strlen(id), o = 0, i;
	char *out = malloc(4 * n + 1);

	if (out == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];

		if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '\'' || c == '=')
			o += (size_t)sprintf(out + o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

/* Decrypt the legacy token of p->row and seal it for its new credential row. */
static int reseal(mig *m, planned *p, envdb_migrate_org *o)
{
	const envdbi_tenant_db_row *r = p->row;
	char aad[ENVDBI_LEGACY_AAD_MAX];
	size_t aad_len = envdbi_legacy_token_aad(aad, sizeof(aad), r->id);
	envdbi_secret *token = NULL;
	envdb_database d;
	int rc;

	if (m->plaintext) {
		/* declared plaintext for the whole run (--legacy-encryptor none) */
		if ((rc = ENVDB_FAILPOINT("migrate.decrypt")) != ENVDB_OK)
			return org_set(o, ENVDB_MIGRATE_FAILED, "legacy row %s (database %s): %s",
				       r->id, r->database_name, envdb_error_last()->message);
		if ((token = envdbi_secret_new(r->auth_token, strlen(r->auth_token))) == NULL)
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
		p->plaintext = 1;
	} else if ((rc = ENVDB_FAILPOINT("migrate.decrypt")) != ENVDB_OK ||
		   (rc = envdbi_encryptor_decrypt(m->legacy, r->auth_token, aad, aad_len,
						  &token)) != ENVDB_OK) {
		const char *why = envdb_error_last()->message;

		return org_set(o, ENVDB_MIGRATE_FAILED,
			       "legacy row %s (database %s): token does not decrypt with "
			       "legacy encryptor %s: %s",
			       r->id, r->database_name, m->legacy_name, why);
	}
	memset(&p->cred, 0, sizeof(p->cred));
	p->cred.id = p->cred_id;
	p->cred.environment_database_id = p->db_id;
	/* Sealed for the address write_org() gives the database row. */
	memset(&d, 0, sizeof(d));
	d.id = p->db_id;
	d.database_name = r->database_name;
	d.database_url = r->database_url;
	d.driver = (char *)p->driver;
	if ((rc = ENVDB_FAILPOINT("migrate.encrypt")) == ENVDB_OK)
		rc = envdbi_credential_seal(m->ctx, &p->cred, &d, token);
	envdbi_secret_free(token);
	if (rc != ENVDB_OK) {
		const char *why = envdb_error_last()->message;

		return org_set(o, ENVDB_MIGRATE_FAILED,
			       "legacy row %s (database %s): re-encrypt token: %s", r->id,
			       r->database_name, why);
	}
	return ENVDB_OK;
}

/*
 * Plan organization `org` (rows[0..n), its pending rows in created_at, id
 * order): every check and all the cryptography, no write.  Fills plan[]
 * (*n_plan entries) and the outcome of `o` when the organization cannot be
 * migrated.  Returns 0 (look at o->outcome: 0 means "go ahead") or a fatal
 * status.
 */
static int plan_org(mig *m, envdb_migrate_org *o, const envdbi_tenant_db_row *const *rows,
		    size_t n, planned *plan, size_t *n_plan)
{
	const char *legacy_org = rows[0]->organization_id, *org = legacy_org;
	const org_map_entry *mapped = map_find(m, legacy_org);
	envdb_environment *def = NULL;
	size_t i, k = 0, suffix = 2;
	int rc = ENVDB_OK, need_default = 1;
	bool org_has_envs;

	*n_plan = 0;
	for (i = 0; i < n; i++) {
		const envdbi_tenant_db_row *r = rows[i];

		if (strcmp(r->status, "active") != 0 && strcmp(r->status, "suspended") != 0) {
			o->rows_left++;
			continue;
		}
		memset(&plan[k], 0, sizeof(plan[k]));
		plan[k].row = r;
		k++;
	}
	if (k == 0) {
		/* Only archived/failed v4 rows: done before, or never to be done. */
		rc = envdbi_store_tenant_db_org_has_migrated(m->s, legacy_org);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return org_set(o, ENVDB_MIGRATE_ALREADY, NULL);
		return org_set(o, ENVDB_MIGRATE_SKIPPED,
			       "%zu legacy row(s) archived or failed in v4: left as they are",
			       o->rows_left);
	}

	/* The organization id must be one v5 can address (resolve, env show,
	 * member add take it from a command line), or be mapped to one. */
	if (mapped != NULL) {
		org = mapped->new_id;
		if ((o->mapped_to = strdup(org)) == NULL)
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
	} else if (envdbi_check_ident("migrate v4-to-v5", "organization id", org) != ENVDB_OK) {
		char *esc = escape_id(org);

		rc = org_set(o, ENVDB_MIGRATE_FAILED,
			     "%s: v5 cannot address it; map it to a valid id with --map-org "
			     "'%s=NEW_ID' (or a line '%s=NEW_ID' in --map-org-file)",
			     envdb_error_last()->message, esc ? esc : "?", esc ? esc : "?");
		free(esc);
		envdb_error_clear();
		return rc;
	}
	for (i = 0; i < k; i++) {
		plan[i].org = org;
		plan[i].old_org = mapped ? legacy_org : NULL;
	}

	/* Per row: a known driver, a token, a free database name. */
	for (i = 0; i < k; i++) {
		const envdbi_tenant_db_row *r = plan[i].row;
		envdb_database *d = NULL;

		if (envdbi_migrate_driver_of_url(m->ctx->plugins, &plan[i].driver,
						 r->database_url) != ENVDB_OK)
			return org_set(o, ENVDB_MIGRATE_FAILED, "legacy row %s (database %s): %s",
				       r->id, r->database_name, envdb_error_last()->message);
		if (r->auth_token == NULL || r->auth_token[0] == '\0')
			return org_set(o, ENVDB_MIGRATE_FAILED,
				       "legacy row %s (database %s): no auth token to carry over",
				       r->id, r->database_name);
		if (m->probes_known && !in_sorted((const char *const *)m->taken, m->n_taken,
						  r->database_name) &&
		    !in_sorted(m->dup_names, m->n_dup, r->database_name))
			rc = ENVDB_ERR_NOT_FOUND; /* free: see mig.probes_known */
		else
			rc = envdbi_store_db_get_by_name(m->s, &d, r->database_name);
		if (rc == ENVDB_OK) {
			envdb_environment *e = NULL;

			if (envdbi_store_env_get(m->s, &e, d->environment_id) != ENVDB_OK)
				envdb_error_clear();
			rc = org_set(o, ENVDB_MIGRATE_CONFLICT,
				     "legacy row %s: database %s is already registered by "
				     "environment %s%s%s",
				     r->id, r->database_name, e ? e->organization_id : d->environment_id,
				     e ? "/" : "", e ? e->slug : "");
			envdb_environment_free(e);
			envdb_database_free(d);
			return rc;
		}
		if (rc != ENVDB_ERR_NOT_FOUND)
			return rc;
		envdb_error_clear();
	}

	/* An organization without any environment (every one on a first
	 * run) has no default and no slug taken: one probe instead of a read
	 * of its default and of each slug. */
	if (m->probes_known && m->n_map == 0)
		/* unmapped: only this organization's rows make its environments */
		rc = in_sorted((const char *const *)m->org_envs, m->n_org_envs, org) ? 1 : 0;
	else if ((rc = envdbi_store_env_org_exists(m->s, org)) < 0)
		return rc;
	org_has_envs = rc == 1;
	/* The default: "prod" for the oldest row, unless the organization
	 * already has one. */
	rc = org_has_envs ? envdbi_store_env_get_default(m->s, &def, org) : ENVDB_ERR_NOT_FOUND;
	if (rc == ENVDB_OK) {
		if (!made_by_migration(def)) {
			rc = org_set(o, ENVDB_MIGRATE_CONFLICT,
				     "organization already has a default environment (%s) that the "
				     "migration did not create",
				     def->slug);
			envdb_environment_free(def);
			return rc;
		}
		need_default = 0;
		envdb_environment_free(def);
	} else if (rc == ENVDB_ERR_NOT_FOUND) {
		if (org_has_envs)
			envdb_error_clear();
	} else {
		return rc;
	}
	for (i = 0; i < k; i++) {
		planned *p = &plan[i];

		if (i == 0 && need_default) {
			if ((rc = org_has_envs ? slug_taken(m, org, MIGRATE_SLUG) : 0) < 0)
				return rc;
			if (rc == 1)
				return org_set(o, ENVDB_MIGRATE_CONFLICT,
					       "slug %s is taken by a non-default environment created "
					       "before the migration",
					       MIGRATE_SLUG);
			snprintf(p->slug, sizeof(p->slug), "%s", MIGRATE_SLUG);
			p->is_default = 1;
		} else {
			for (;; suffix++) {
				if (suffix > MIGRATE_MAX_SUFFIX)
					return org_set(o, ENVDB_MIGRATE_CONFLICT,
						       "no free slug %s-N (N <= %d)", MIGRATE_SLUG,
						       MIGRATE_MAX_SUFFIX);
				snprintf(p->slug, sizeof(p->slug), "%s-%zu", MIGRATE_SLUG, suffix);
				if ((rc = org_has_envs ? slug_taken(m, org, p->slug) : 0) < 0)
					return rc;
				if (rc == 0)
					break;
			}
			suffix++;
		}
		envdbi_migrate_uuid_next(&m->id_seq, p->env_id);
		envdbi_migrate_uuid_next(&m->id_seq, p->db_id);
		envdbi_migrate_uuid_next(&m->id_seq, p->cred_id);
		envdbi_migrate_uuid_next(&m->id_seq, p->member_id);
	}

	/* The tokens, last: the costly part, only for organizations that pass. */
	*n_plan = k;
	for (i = 0; i < k; i++) {
		if ((rc = reseal(m, &plan[i], o)) != ENVDB_OK)
			return rc;
		if (o->outcome != 0)
			return ENVDB_OK;
	}
	return ENVDB_FAILPOINT("migrate.plan");
}

/* Write one planned row.  Any failure means the transaction is dirty. */
static int write_row(mig *m, planned *p, size_t *repointed)
{
	const envdbi_tenant_db_row *r = p->row;
	char meta_buf[160], *meta = meta_buf, *meta_owned = NULL;
	envdb_environment e;
	envdb_database d;
	char display[160];
	int rc;

	if (p->old_org == NULL) {
		snprintf(meta_buf, sizeof(meta_buf),
			 "{\"migrated_from\":{\"object\":\"sys_tenant_database\",\"id\":\"%s\"}}",
			 r->id);
	} else {
		/* the legacy organization id, which the environment no longer carries */
		json_t *j = json_pack("{s:{s:s, s:s, s:s%}}", "migrated_from", "object",
				      "sys_tenant_database", "id", r->id, "organization_id",
				      p->old_org, strlen(p->old_org));

		meta = meta_owned = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
		json_decref(j);
		if (meta == NULL)
			return envdbi_error(ENVDB_ERR_INVALID, NULL,
					    "legacy row %s: its organization id is not valid UTF-8 "
					    "(metadata)",
					    r->id);
	}
	if (p->is_default)
		snprintf(display, sizeof(display), "Production");
	else
		snprintf(display, sizeof(display), "Production %s (%s)",
			 p->slug + sizeof(MIGRATE_SLUG), r->database_name);

	memset(&e, 0, sizeof(e));
	e.id = p->env_id;
	e.organization_id = (char *)p->org;
	e.slug = p->slug;
	e.display_name = display;
	e.env_type = (char *)"production";
	e.is_default = p->is_default;
	e.region = r->region;
	e.plan = r->plan ? r->plan : m->ctx->manifest->default_plan;
	e.status = r->status; /* active or suspended */
	e.created_by = (char *)m->created_by;
	e.created_at = r->created_at;
	e.metadata = meta;
	if ((rc = envdbi_store_env_insert(m->s, &e, NULL)) != ENVDB_OK ||
	    (rc = ENVDB_FAILPOINT("migrate.environment")) != ENVDB_OK)
		goto out;

	memset(&d, 0, sizeof(d));
	d.id = p->db_id;
	d.environment_id = p->env_id;
	d.database_name = r->database_name;
	d.database_url = r->database_url;
	d.driver = (char *)p->driver;
	d.region = r->region;
	d.storage_limit_mb = r->storage_limit_mb > 0 ? r->storage_limit_mb
						     : m->ctx->manifest->default_storage_mb;
	d.provisioned_at = r->created_at;
	d.metadata = meta;
	if ((rc = envdbi_store_db_insert(m->s, &d, NULL)) != ENVDB_OK ||
	    (rc = ENVDB_FAILPOINT("migrate.database")) != ENVDB_OK)
		goto out;

	p->cred.handle = (char *)"";
	p->cred.authorization = (char *)"full_access";
	p->cred.status = (char *)"active";
	p->cred.created_at = 0;
	rc = envdbi_store_cred_insert(m->s, &p->cred, NULL);
	p->cred.handle = p->cred.authorization = p->cred.status = NULL;
	if (rc != ENVDB_OK || (rc = ENVDB_FAILPOINT("migrate.credential")) != ENVDB_OK)
		goto out;

	if (m->owner != NULL) {
		envdb_member mem;

		memset(&mem, 0, sizeof(mem));
		mem.id = p->member_id;
		mem.environment_id = p->env_id;
		mem.user_id = (char *)m->owner;
		mem.role = (char *)"owner";
		if ((rc = envdbi_store_member_insert(m->s, &mem, NULL)) != ENVDB_OK ||
		    (rc = ENVDB_FAILPOINT("migrate.member")) != ENVDB_OK)
			goto out;
	}

	if (m->pkg_known && !has_packages(m, r->id))
		*repointed = 0;
	else if ((rc = envdbi_store_package_repoint(m->s, r->id, p->env_id, repointed)) !=
		 ENVDB_OK)
		goto out;
	if ((rc = ENVDB_FAILPOINT("migrate.packages")) != ENVDB_OK)
		goto out;

	if ((rc = envdbi_store_tenant_db_archive(m->s, r->id, p->env_id)) == ENVDB_OK)
		rc = ENVDB_FAILPOINT("migrate.archive");
out:
	free(meta_owned);
	return rc;
}

/* Record what was (or would be) made for a migrated organization. */
static int org_record(mig *m, envdb_migrate_org *o, const planned *plan, size_t n,
		      const size_t *repointed)
{
	size_t i;

	if ((o->envs = calloc(n, sizeof(*o->envs))) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
	o->n_envs = n;
	for (i = 0; i < n; i++) {
		envdb_migrate_env *e = &o->envs[i];

		e->legacy_id = strdup(plan[i].row->id);
		e->database_name = strdup(plan[i].row->database_name);
		e->driver = strdup(plan[i].driver);
		e->slug = strdup(plan[i].slug);
		e->is_default = plan[i].is_default;
		e->environment_id = m->dry_run ? NULL : strdup(plan[i].env_id);
		e->packages_repointed = repointed[i];
		if (!e->legacy_id || !e->database_name || !e->driver || !e->slug ||
		    (!m->dry_run && !e->environment_id))
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
	}
	o->outcome = ENVDB_MIGRATE_MIGRATED;
	return ENVDB_OK;
}

/*
 * Migrate one organization inside the caller's transaction.  Returns 0 when
 * the organization is settled without leaving the transaction dirty (its
 * outcome is in the report), 1 when a write failed (the transaction must be
 * rolled back; the reason is in the report entry), or a fatal status.
 */
static int migrate_org(mig *m, const envdbi_tenant_db_row *const *rows, size_t n)
{
	planned *plan = calloc(n, sizeof(*plan));
	size_t *repointed = calloc(n, sizeof(*repointed));
	envdb_migrate_org *o;
	size_t n_plan = 0, i;
	int rc;

	if (plan == NULL || repointed == NULL ||
	    (o = org_new(m, rows[0]->organization_id)) == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
		goto out;
	}
	rc = plan_org(m, o, rows, n, plan, &n_plan);
	if (rc != ENVDB_OK) {
		if (is_fatal(rc))
			goto out;
		/* a failpoint or another non-fatal refusal of the plan */
		rc = org_set(o, ENVDB_MIGRATE_FAILED, "%s", envdb_error_last()->message);
		goto out;
	}
	if (o->outcome != 0)
		goto out;
	for (i = 0; i < n_plan; i++) {
		if ((rc = write_row(m, &plan[i], &repointed[i])) != ENVDB_OK) {
			if (is_fatal(rc))
				goto out;
			rc = org_set(o, ENVDB_MIGRATE_FAILED, "legacy row %s (database %s): %s",
				     plan[i].row->id, plan[i].row->database_name,
				     envdb_error_last()->message);
			if (rc == ENVDB_OK)
				rc = 1;
			goto out;
		}
	}
	rc = org_record(m, o, plan, n_plan, repointed);
out:
	if (plan != NULL)
		planned_clear(plan, n_plan);
	free(plan);
	free(repointed);
	return rc;
}

/* Totals of the report entries [mark, end). */
static void tally(mig *m, size_t mark)
{
	envdb_migrate_report *r = m->rep;
	size_t i, j;

	for (i = mark; i < r->n_orgs; i++) {
		const envdb_migrate_org *o = &r->orgs[i];

		switch (o->outcome) {
		case ENVDB_MIGRATE_MIGRATED:
			r->migrated++;
			r->rows_migrated += o->n_envs;
			if (m->plaintext)
				r->rows_plaintext += o->n_envs;
			for (j = 0; j < o->n_envs; j++)
				r->packages_repointed += o->envs[j].packages_repointed;
			break;
		case ENVDB_MIGRATE_ALREADY:
			r->already++;
			break;
		case ENVDB_MIGRATE_CONFLICT:
			r->conflicts++;
			break;
		case ENVDB_MIGRATE_SKIPPED:
			r->skipped++;
			break;
		default:
			r->failed++;
			break;
		}
	}
}

/* End the transaction: COMMIT, or ROLLBACK in a dry run. */
static int finish(mig *m)
{
	int rc;

	if ((rc = ENVDB_FAILPOINT("migrate.commit")) != ENVDB_OK) {
		envdbi_store_rollback(m->s);
		return rc;
	}
	if (m->dry_run && !envdbi_store_is_snapshot(m->s)) {
		envdbi_store_rollback(m->s);
		return ENVDB_OK;
	}
	/* a dry run commits to its private snapshot: later batches and the
	 * final totals then see what the real run would have written */
	return envdbi_store_commit(m->s);
}

/* The organizations of a batch: index ranges of equal organization_id. */
static size_t next_group(envdbi_tenant_db_row **rows, size_t n, size_t at)
{
	size_t j = at + 1;

	while (j < n && strcmp(rows[j]->organization_id, rows[at]->organization_id) == 0)
		j++;
	return j;
}

/*
 * Replay the organizations of a failed batch — those still pending after
 * `from` up to `upto` — one organization per transaction.  Each one is read
 * again inside its own transaction, so what another process did meanwhile
 * is seen.
 */
static int replay_single(mig *m, const char *from, const char *upto)
{
	envdbi_tenant_db_row **rows = NULL;
	char *cur = strdup(from ? from : "");
	size_t n = 0;
	int rc = ENVDB_OK;

	if (cur == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
	for (;;) {
		size_t mark = m->rep->n_orgs;

		if ((rc = envdbi_store_begin(m->s)) != ENVDB_OK)
			break;
		if ((rc = envdbi_store_tenant_db_pending(m->s, &rows, &n, cur, 1)) != ENVDB_OK) {
			envdbi_store_rollback(m->s);
			break;
		}
		if (n == 0 || strcmp(rows[0]->organization_id, upto) > 0) {
			envdbi_store_rollback(m->s);
			break;
		}
		free(cur);
		if ((cur = strdup(rows[0]->organization_id)) == NULL) {
			envdbi_store_rollback(m->s);
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
			break;
		}
		rc = migrate_org(m, (const envdbi_tenant_db_row *const *)rows, n);
		if (rc < 0) {
			envdbi_store_rollback(m->s);
			report_truncate(m, mark);
			break;
		}
		if (rc == 1) {
			/* a write failed: the reason stays in the report */
			envdbi_store_rollback(m->s);
		} else if ((rc = finish(m)) != ENVDB_OK) {
			char *why;
			envdb_migrate_org *o;

			report_truncate(m, mark);
			if (is_fatal(rc))
				break;
			/* the commit failed: the organization is untouched */
			why = dup_last_error();
			o = org_new(m, cur);
			if (o == NULL || why == NULL) {
				free(why);
				rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
				break;
			}
			o->outcome = ENVDB_MIGRATE_FAILED;
			o->reason = why;
		}
		rc = ENVDB_OK;
		tally(m, mark);
		envdbi_tenant_db_list_free(rows, n);
		rows = NULL;
		n = 0;
	}
	envdbi_tenant_db_list_free(rows, n);
	free(cur);
	return rc;
}

/*
 * One batch: the next `batch` organizations with pending rows after
 * *cursor, read and migrated in one transaction (replayed one by one when a
 * write fails).  On success *cursor moves past the batch; *done is set when
 * nothing was left.
 */
static int run_batch(mig *m, char **cursor, bool *done)
{
	envdbi_tenant_db_row **rows = NULL;
	size_t mark = m->rep->n_orgs, n = 0, at, end;
	char *last = NULL;
	int rc, dirty = 0;

	*done = false;
	if ((rc = ENVDB_FAILPOINT("migrate.begin")) != ENVDB_OK)
		return rc;
	if ((rc = envdbi_store_begin(m->s)) != ENVDB_OK)
		return rc;
	/* read inside the transaction: nobody migrates these meanwhile */
	if ((rc = envdbi_store_tenant_db_pending(m->s, &rows, &n, *cursor, m->batch)) !=
	    ENVDB_OK) {
		envdbi_store_rollback(m->s);
		return rc;
	}
	if (n == 0) {
		envdbi_store_rollback(m->s);
		*done = true;
		return ENVDB_OK;
	}
	if ((last = strdup(rows[n - 1]->organization_id)) == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
		envdbi_store_rollback(m->s);
		goto out;
	}
	/* the same rows as the pending read: same transaction, same range */
	if ((rc = batch_learn(m, rows, n, *cursor, last)) != ENVDB_OK) {
		envdbi_store_rollback(m->s);
		goto out;
	}
	/* Each organization in a savepoint of the batch transaction: a write
	 * that fails undoes that organization only, and a kill before the
	 * durable COMMIT undoes the whole batch. */
	for (at = 0; at < n && !dirty; at = end) {
		end = next_group(rows, n, at);
		if ((rc = envdbi_store_begin(m->s)) != ENVDB_OK) {
			envdbi_store_rollback(m->s);
			report_truncate(m, mark);
			goto out;
		}
		rc = migrate_org(m, (const envdbi_tenant_db_row *const *)rows + at, end - at);
		if (rc < 0) {
			envdbi_store_rollback(m->s); /* the savepoint */
			envdbi_store_rollback(m->s); /* the batch */
			report_truncate(m, mark);
			goto out;
		}
		if (rc == 1) {
			envdbi_store_rollback(m->s); /* this organization only */
			continue;
		}
		if ((rc = envdbi_store_commit(m->s)) != ENVDB_OK) {
			/* RELEASE failed: the batch is in doubt, replay it below */
			dirty = 1;
		}
	}
	batch_forget(m); /* the replay below reads its rows again */
	if (!dirty && (rc = finish(m)) == ENVDB_OK) {
		tally(m, mark);
	} else {
		if (dirty)
			envdbi_store_rollback(m->s);
		report_truncate(m, mark);
		if (!dirty && is_fatal(rc))
			goto out;
		/* A write or the commit failed: nothing of the batch is kept;
		 * replay it organization by organization so that the failure
		 * stays with its organization. */
		envdb_error_clear();
		if ((rc = replay_single(m, *cursor, last)) != ENVDB_OK)
			goto out;
	}
	free(*cursor);
	*cursor = last;
	last = NULL;
	rc = ENVDB_OK;
out:
	batch_forget(m);
	envdbi_tenant_db_list_free(rows, n);
	free(last);
	return rc;
}

static void report_progress(mig *m)
{
	envdb_migrate_progress p;

	if (m->progress == NULL)
		return;
	memset(&p, 0, sizeof(p));
	p.struct_size = sizeof(p);
	p.orgs_done = m->orgs_done;
	p.orgs_total = m->orgs_total;
	p.rows_done = m->rep->rows_migrated;
	p.elapsed_ms = elapsed_ms(m);
	m->progress(m->progress_ctx, &p);
}

/* The organization id map of the options, checked and sorted. */
static int setup_map(mig *m, const envdb_migrate_opts *opts)
{
	size_t n, i;
	int rc;

	if (opts == NULL || !ENVDB_STRUCT_HAS(opts, envdb_migrate_opts, n_org_map) ||
	    opts->n_org_map == 0)
		return ENVDB_OK;
	n = opts->n_org_map;
	if (opts->org_map == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "migrate v4-to-v5: organization map: n_org_map without org_map");
	if ((m->map = calloc(n, sizeof(*m->map))) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
	for (i = 0; i < n; i++) {
		m->map[i].old_id = opts->org_map[2 * i];
		m->map[i].new_id = opts->org_map[2 * i + 1];
		if (m->map[i].old_id == NULL || m->map[i].old_id[0] == '\0' ||
		    m->map[i].new_id == NULL)
			return envdbi_error(ENVDB_ERR_INVALID, NULL,
					    "migrate v4-to-v5: organization map: entry %zu is empty",
					    i + 1);
		if ((rc = envdbi_check_ident("migrate v4-to-v5: organization map", "new id",
					     m->map[i].new_id)) != ENVDB_OK)
			return rc;
	}
	m->n_map = n;
	qsort(m->map, n, sizeof(*m->map), map_cmp);
	for (i = 0; i < n; i++) {
		envdbi_tenant_db_row **rows = NULL;
		size_t nr = 0, j;
		char q[256];

		envdbi_quote(q, sizeof(q), m->map[i].old_id);
		if (i > 0 && strcmp(m->map[i].old_id, m->map[i - 1].old_id) == 0)
			return envdbi_error(ENVDB_ERR_INVALID, NULL,
					    "migrate v4-to-v5: organization map: \"%s\" is mapped twice",
					    q);
		for (j = 0; j < n; j++)
			if (j != i && strcmp(m->map[i].new_id, m->map[j].new_id) == 0)
				return envdbi_error(ENVDB_ERR_INVALID, NULL,
						    "migrate v4-to-v5: organization map: two "
						    "organizations are mapped to %s (that would merge them)",
						    m->map[i].new_id);
		/* a new id that is a legacy organization of its own (not mapped away)
		 * would merge two organizations as well */
		if (map_find(m, m->map[i].new_id) != NULL)
			continue;
		if ((rc = envdbi_store_tenant_db_list(m->s, &rows, &nr, m->map[i].new_id)) != ENVDB_OK)
			return rc;
		envdbi_tenant_db_list_free(rows, nr);
		if (nr > 0)
			return envdbi_error(ENVDB_ERR_INVALID, NULL,
					    "migrate v4-to-v5: organization map: \"%s\" -> %s: %s is "
					    "the id of another legacy organization (that would merge them)",
					    q, m->map[i].new_id, m->map[i].new_id);
	}
	return ENVDB_OK;
}

static int setup(mig *m, envdb_ctx *ctx, const envdb_migrate_opts *opts)
{
	envdbi_plugin *cur = NULL;
	const char *name = NULL;
	int rc;

	if (ctx == NULL || ctx->store == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "migrate v4-to-v5: the context has no control plane open");
	if (opts != NULL && opts->struct_size < sizeof(size_t))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "migrate v4-to-v5: options without struct_size");
	m->ctx = ctx;
	m->s = ctx->store;
	if (!envdbi_store_legacy(m->s))
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "migrate v4-to-v5: the manifest does not register the legacy "
				    "objects (legacy.register_shim is false): nothing to migrate");
	if (opts != NULL) {
		m->dry_run = ENVDB_STRUCT_HAS(opts, envdb_migrate_opts, dry_run) && opts->dry_run;
		if (ENVDB_STRUCT_HAS(opts, envdb_migrate_opts, batch))
			m->batch = opts->batch;
		if (ENVDB_STRUCT_HAS(opts, envdb_migrate_opts, legacy_encryptor))
			name = opts->legacy_encryptor;
		if (ENVDB_STRUCT_HAS(opts, envdb_migrate_opts, by))
			m->owner = opts->by;
		if (ENVDB_STRUCT_HAS(opts, envdb_migrate_opts, progress_ctx)) {
			m->progress = opts->progress;
			m->progress_ctx = opts->progress_ctx;
		}
	}
	if (m->batch == 0)
		m->batch = MIGRATE_DEFAULT_BATCH;
	if (m->owner != NULL && m->owner[0] == '\0')
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "migrate v4-to-v5: --by: empty user id");
	m->created_by = m->owner ? m->owner : MIGRATE_CREATED_BY;
	if ((rc = envdbi_encryptor_get(&cur, ctx, "migrate v4-to-v5")) != ENVDB_OK)
		return rc;
	if (name == NULL)
		name = ctx->manifest->legacy_encryptor;
	if (name == NULL)
		name = envdbi_plugin_name(cur);
	if (strcmp(name, MIGRATE_PLAINTEXT) == 0) {
		/* an explicit declaration for the whole run, never a guess per row */
		m->plaintext = 1;
		m->legacy_name = MIGRATE_PLAINTEXT;
		return setup_map(m, opts);
	}
	m->legacy = envdbi_plugins_find(ctx->plugins, name, ENVDB_PLUGIN_ENCRYPTOR);
	if (m->legacy == NULL)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "migrate v4-to-v5: legacy encryptor %s: no encryptor plugin of "
				    "that name is loaded",
				    name);
	m->legacy_name = envdbi_plugin_name(m->legacy);
	return setup_map(m, opts);
}

/* The whole store's totals at the end of the run (the report's store_*):
 * a count over the legacy table, so that concurrent runs add up.  A failure
 * here leaves them 0 and does not fail the run. */
static void store_totals(mig *m)
{
	envdbi_legacy_counts c;
	const envdb_error *e = envdb_error_last();
	int keep = e->status;
	char *msg = keep ? strdup(e->message) : NULL;

	if (envdbi_store_tenant_db_counts(m->s, &c) == ENVDB_OK) {
		m->rep->store_done = c.orgs_done;
		m->rep->store_open = c.orgs_open;
		m->rep->store_inactive = c.orgs_inactive;
	}
	if (keep)
		envdbi_error(keep, NULL, "%s", msg ? msg : "");
	else
		envdb_error_clear();
	free(msg);
}

static void cleanup(mig *m)
{
	if (m->snapshot != NULL)
		envdbi_store_close(m->snapshot);
	else if (m->s != NULL && !m->dry_run)
		(void)envdbi_store_bulk(m->s, false, 0, 0);
	m->snapshot = NULL;
	free(m->map);
	m->map = NULL;
}

int envdb_migrate_v4_to_v5(envdb_migrate_report **out, envdb_ctx *ctx,
			   const envdb_migrate_opts *opts)
{
	mig m;
	envdbi_legacy_counts counts;
	char *after = NULL;
	int rc;

	if (out == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "migrate v4-to-v5: no report pointer");
	*out = NULL;
	memset(&m, 0, sizeof(m));
	clock_gettime(CLOCK_MONOTONIC, &m.t0);
	if ((rc = setup(&m, ctx, opts)) != ENVDB_OK) {
		free(m.map);
		return rc;
	}
	if (m.dry_run && !envdbi_store_is_snapshot(m.s)) {
		/* never write the control plane in a dry run, not even frames of
		 * a transaction rolled back: run on a private copy */
		if ((rc = envdbi_store_snapshot(&m.snapshot, m.s)) != ENVDB_OK) {
			free(m.map);
			return rc;
		}
		m.s = m.snapshot;
	}
	if (!m.dry_run && (rc = envdbi_store_bulk(m.s, true, MIGRATE_CACHE_KIB,
						 MIGRATE_WAL_PAGES)) != ENVDB_OK) {
		free(m.map);
		return rc;
	}
	if ((m.rep = calloc(1, sizeof(*m.rep))) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
	m.rep->struct_size = sizeof(*m.rep);
	m.rep->dry_run = m.dry_run;

	if ((rc = envdbi_store_tenant_db_counts(m.s, &counts)) != ENVDB_OK)
		goto fail;
	m.rep->organizations = counts.orgs;
	m.rep->already = counts.orgs_migrated;
	m.orgs_total = counts.orgs_pending;
	if (m.owner == NULL && counts.rows_pending > 0)
		envdbi_log(ENVDB_LOG_WARNING,
			   "migrate v4-to-v5: no --by user: migrated environments get no member "
			   "(add one with envdb member add)");

	for (;;) {
		size_t before = m.rep->n_orgs;
		bool done = false;

		if ((rc = run_batch(&m, &after, &done)) != ENVDB_OK)
			goto stopped;
		if (done)
			break;
		m.orgs_done += m.rep->n_orgs - before;
		if ((rc = ENVDB_FAILPOINT("migrate.after_commit")) != ENVDB_OK)
			goto stopped;
		report_progress(&m);
	}
	store_totals(&m);
	m.rep->elapsed_ms = elapsed_ms(&m);
	free(after);
	cleanup(&m);
	*out = m.rep;
	return ENVDB_OK;

stopped:
	/* What was committed before stays reported; the error is returned too. */
	m.rep->stopped_status = rc;
	m.rep->stopped_message = dup_last_error();
	store_totals(&m);
	m.rep->elapsed_ms = elapsed_ms(&m);
	free(after);
	cleanup(&m);
	*out = m.rep;
	return rc;
fail:
	envdb_migrate_report_free(m.rep);
	free(after);
	cleanup(&m);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Wiping the v4 tokens of migrated rows                                     */
/* ------------------------------------------------------------------------ */

void envdb_wipe_report_free(envdb_wipe_report *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n_rows; i++) {
		free(r->rows[i].legacy_id);
		free(r->rows[i].organization_id);
		free(r->rows[i].environment_id);
		free(r->rows[i].reason);
	}
	free(r->rows);
	free(r);
}

/* Does the environment `env_id` resolve: its database, its active
 * full_access credential, which decrypts?  0 yes, ENVDB_ERR_* no (the last
 * error says why), a fatal status when the store fails. */
static int env_resolves(envdb_ctx *ctx, envdbi_store *s, const char *env_id)
{
	envdb_database *d = NULL;
	envdb_credential *c = NULL;
	envdbi_secret *secret = NULL;
	int rc;

	if ((rc = envdbi_store_db_get_by_env(s, &d, env_id)) != ENVDB_OK)
		goto out;
	if ((rc = envdbi_store_cred_get_active(s, &c, d->id, "full_access")) != ENVDB_OK)
		goto out;
	rc = envdbi_credential_open(&secret, ctx, c, d);
out:
	envdbi_secret_free(secret);
	envdb_credential_free(c);
	envdb_database_free(d);
	return rc;
}

int envdb_migrate_wipe_legacy_tokens(envdb_wipe_report **out, envdb_ctx *ctx, int dry_run)
{
	envdbi_tenant_db_row **rows = NULL;
	envdb_wipe_report *r = NULL;
	envdbi_store *s;
	size_t n = 0, i, k = 0;
	int rc, txn = 0;

	if (out == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "migrate wipe-legacy-tokens: no report pointer");
	*out = NULL;
	if (ctx == NULL || ctx->store == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "migrate wipe-legacy-tokens: the context has no control plane open");
	s = ctx->store;
	if (!envdbi_store_legacy(s))
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "migrate wipe-legacy-tokens: the manifest does not register the "
				    "legacy objects (legacy.register_shim is false)");
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
	r->struct_size = sizeof(*r);
	r->dry_run = dry_run != 0;
	if (!dry_run) {
		/* one transaction: the rows read are the rows wiped */
		if ((rc = envdbi_store_begin(s)) != ENVDB_OK)
			goto fail;
		txn = 1;
	}
	if ((rc = envdbi_store_tenant_db_list(s, &rows, &n, NULL)) != ENVDB_OK)
		goto fail;
	for (i = 0; i < n; i++)
		if (rows[i]->migrated_environment_id != NULL && rows[i]->auth_token != NULL)
			k++;
	if (k > 0 && (r->rows = calloc(k, sizeof(*r->rows))) == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
		goto fail;
	}
	for (i = 0; i < n; i++) {
		const envdbi_tenant_db_row *t = rows[i];
		envdb_wipe_row *w;

		if (t->migrated_environment_id == NULL || t->auth_token == NULL)
			continue;
		w = &r->rows[r->n_rows++];
		w->legacy_id = strdup(t->id);
		w->organization_id = strdup(t->organization_id);
		w->environment_id = strdup(t->migrated_environment_id);
		if (!w->legacy_id || !w->organization_id || !w->environment_id) {
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "migrate: out of memory");
			goto fail;
		}
		rc = env_resolves(ctx, s, t->migrated_environment_id);
		if (rc != ENVDB_OK && is_fatal(rc))
			goto fail;
		if (rc != ENVDB_OK) {
			if (asprintf(&w->reason,
				     "legacy row %s (database %s): environment %s does not resolve: "
				     "%s; token kept",
				     t->id, t->database_name, t->migrated_environment_id,
				     envdb_error_last()->message) < 0)
				w->reason = NULL;
			envdb_error_clear();
			r->refused++;
			continue;
		}
		if (!dry_run && (rc = envdbi_store_tenant_db_wipe_token(
					 s, t->id, t->migrated_environment_id)) != ENVDB_OK)
			goto fail;
		w->wiped = 1;
		r->wiped++;
	}
	if (txn) {
		txn = 0;
		if ((rc = envdbi_store_commit(s)) != ENVDB_OK)
			goto fail;
	}
	envdbi_tenant_db_list_free(rows, n);
	*out = r;
	return ENVDB_OK;
fail:
	if (txn)
		envdbi_store_rollback(s);
	envdbi_tenant_db_list_free(rows, n);
	envdb_wipe_report_free(r);
	return rc;
}
