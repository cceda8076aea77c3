/*
 * core/reconcile.c — envdb_reconcile(): find, and with ENVDB_RECONCILE_APPLY
 * repair, what interrupted or delayed work left behind (DESIGN.md §4.6,
 * invariant 8):
 *
 *   intent    a provisioning whose lease expired (the process died or hung),
 *             or a failed one whose compensating drop did not happen:
 *             claimed, its pending database dropped, its row deleted.  The
 *             claim is a compare-and-set, so of two reconciles (two hosts)
 *             exactly one acts; the other skips it silently, and skips a
 *             failed intent another claimed less than a lease ago;
 *   deletion  an archived environment whose delete_after passed: its
 *             database dropped, its rows deleted;
 *   rotation  a rotating credential whose window ended: revoked at the
 *             backend, then marked revoked;
 *   expiry    an active credential that expired, or expires within
 *             credentials.expiry_horizon_seconds (the expiry the adapter
 *             reported it applied, e.g. Turso's token_expiration): rotated
 *             (a new credential of the same authorization; the old one stays
 *             valid until it expires), or reported;
 *   orphan    a physical database an adapter with ENVDB_ADAPTER_CAP_LIST
 *             lists that no row and no live intent names: dropped;
 *   missing   a database row whose adapter lists everything but not it:
 *             reported (a human decides);
 *   unverified a database row of such an adapter whose name is not one the
 *             adapter derives (adopted by the v4 migration): its listing
 *             cannot see it, so it is reported as not checked, not as an
 *             error.
 *
 * The phases run in that order, so orphans are judged after the intents and
 * deletions they may belong to were handled.  Without APPLY nothing is
 * changed: the report says what would be done.
 *
 * A safety limit (issue 16 §3): with APPLY but without FORCE, a reconcile
 * that would drop more orphans than envdbi_reconcile_drop_limit() allows
 * refuses before it changes anything — many orphans at once more likely
 * mean another deployment's databases on a shared backend (an adapter
 * without deployment markers) or a control plane restored from an old
 * backup than crash leftovers.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failpoint.h"
#include "internal.h"
#include "resolve.h"
#include "store.h"

typedef struct report_builder {
	envdb_reconcile_report *r;
	size_t cap;
	int rc; /* first allocation failure */
} report_builder;

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void add_item(report_builder *b, const char *kind, const char *driver, const char *name,
		     const char *object_id, const char *label, const char *action, int status)
{
	envdb_reconcile_item *it;

	if (b->rc != ENVDB_OK)
		return;
	if (b->r->n_items == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 8;
		envdb_reconcile_item *v = realloc(b->r->items, cap * sizeof(*v));

		if (v == NULL) {
			b->rc = ENVDB_ERR_NOMEM;
			return;
		}
		b->r->items = v;
		b->cap = cap;
	}
	it = &b->r->items[b->r->n_items++];
	memset(it, 0, sizeof(*it));
	it->kind = kind;   /* static */
	it->action = action; /* static */
	it->driver = dup_or_null(driver);
	it->database_name = dup_or_null(name);
	it->object_id = dup_or_null(object_id);
	it->label = dup_or_null(label);
	it->status = status;
	if (status != ENVDB_OK) {
		it->message = dup_or_null(envdb_error_last()->message);
		b->r->n_failed++;
	}
}

void envdb_reconcile_report_free(envdb_reconcile_report *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n_items; i++) {
		free((char *)r->items[i].driver);
		free((char *)r->items[i].database_name);
		free((char *)r->items[i].object_id);
		free((char *)r->items[i].label);
		free((char *)r->items[i].message);
	}
	free(r->items);
	free(r);
}

static void env_label(char *buf, size_t cap, const envdb_environment *e)
{
	snprintf(buf, cap, "%s/%s", e->organization_id, e->slug);
}

/* A failed intent another reconcile claimed less than a lease ago: that
 * process may still be dropping its database, so it is left to it (two
 * reconciles never both act on one intent); if it died, the intent is
 * rolled back once the lease has passed, as a provisioning one is.  A
 * reconcile's claim is the only way a row becomes failed after its lease
 * expired (the provisioner's own compensation marks it failed within its
 * lease, and that row is rolled back at once). */
static bool claimed_by_another(const envdb_ctx *ctx, const envdb_environment *e, int64_t now)
{
	int64_t lease = ctx->manifest->lease_seconds > 0 ? ctx->manifest->lease_seconds : 300;

	return e->lease_expires_at > 0 && e->lease_expires_at <= e->updated_at &&
	       now < e->updated_at + lease;
}

/* Phase 1: provisioning intents past their lease, and failed intents that
 * still name a database. */
static int phase_intents(report_builder *b, envdb_ctx *ctx, bool apply, int64_t now)
{
	envdbi_env_filter f = ENVDBI_ENV_FILTER_INIT;
	envdb_environment **v = NULL;
	size_t n = 0, i, pass;
	char label[300];
	int rc;

	for (pass = 0; pass < 2; pass++) {
		f.status = pass == 0 ? "provisioning" : "failed";
		f.lease_expired_at = pass == 0 ? now : 0;
		if ((rc = envdbi_store_env_list(ctx->store, &v, &n, &f)) != ENVDB_OK)
			return rc;
		for (i = 0; i < n; i++) {
			const envdb_environment *e = v[i];
			bool lost = false;
			int st = ENVDB_OK;

			if (pass == 1 && e->pending_database_name == NULL)
				continue; /* a failed row without anything to drop */
			if (pass == 1 && claimed_by_another(ctx, e, now))
				continue;
			env_label(label, sizeof(label), e);
			if (apply)
				st = envdbi_env_rollback_intent(
				    ctx, e, ENVDBI_FP("reconcile.after_intent_drop"), &lost);
			if (lost) {
				/* another reconcile claimed it since the listing (or
				 * its provisioner finished): not ours, not a failure */
				envdb_error_clear();
				continue;
			}
			add_item(b, "intent", e->pending_driver, e->pending_database_name, e->id, label,
				 !apply ? "would roll back" : st ? "failed" : "rolled back", st);
		}
		envdb_environment_list_free(v, n);
		v = NULL;
		n = 0;
	}
	return ENVDB_OK;
}

/* Phase 2: deletions whose grace period ended. */
static int phase_deletions(report_builder *b, envdb_ctx *ctx, bool apply, int64_t now)
{
	envdbi_env_filter f = ENVDBI_ENV_FILTER_INIT;
	envdb_environment **v = NULL;
	size_t n = 0, i;
	char label[300];
	int rc;

	f.delete_due_at = now;
	if ((rc = envdbi_store_env_list(ctx->store, &v, &n, &f)) != ENVDB_OK)
		return rc;
	for (i = 0; i < n; i++) {
		const envdb_environment *e = v[i];
		int st = ENVDB_OK;

		if (strcmp(e->status, "provisioning") == 0)
			continue; /* phase 1's business */
		env_label(label, sizeof(label), e);
		if (apply)
			st = envdbi_env_delete_finish(ctx, e,
						      ENVDBI_FP("reconcile.after_deletion_drop"));
		add_item(b, "deletion", e->pending_driver, e->pending_database_name, e->id, label,
			 !apply ? "would delete" : st ? "failed" : "deleted", st);
	}
	envdb_environment_list_free(v, n);
	return ENVDB_OK;
}

/* Phase 3: rotations whose window ended. */
static int phase_rotations(report_builder *b, envdb_ctx *ctx, bool apply, int64_t now)
{
	envdbi_cred_filter f = ENVDBI_CRED_FILTER_INIT;
	envdb_credential **v = NULL;
	size_t n = 0, i;
	int rc;

	f.status = "rotating";
	f.expired_at = now;
	if ((rc = envdbi_store_cred_list(ctx->store, &v, &n, &f)) != ENVDB_OK)
		return rc;
	for (i = 0; i < n; i++) {
		envdb_database *db = NULL;
		envdb_environment *env = NULL;
		char label[300] = "";
		int st;

		st = envdbi_store_db_get(ctx->store, &db, v[i]->environment_database_id);
		if (st == ENVDB_OK &&
		    envdbi_store_env_get(ctx->store, &env, db->environment_id) == ENVDB_OK)
			env_label(label, sizeof(label), env);
		if (st == ENVDB_OK && apply) {
			st = envdbi_credential_retire(ctx, db, v[i], "rotating",
						      ENVDBI_FP("reconcile.after_revoke"));
			envdbi_cache_invalidate_env(ctx->cache, db->environment_id);
		}
		add_item(b, "rotation", db ? db->driver : NULL, db ? db->database_name : NULL,
			 v[i]->id, label[0] ? label : NULL,
			 !apply ? "would revoke" : st ? "failed" : "revoked", st);
		envdb_database_free(db);
		envdb_environment_free(env);
	}
	envdb_credential_list_free(v, n);
	return ENVDB_OK;
}

/* Phase 3b: active credentials that expire within the horizon (or did). */
static int phase_expiry(report_builder *b, envdb_ctx *ctx, bool apply, int64_t now)
{
	envdbi_cred_filter f = ENVDBI_CRED_FILTER_INIT;
	envdb_credential **v = NULL;
	size_t n = 0, i;
	int rc;

	f.status = "active";
	f.expired_at = now + ctx->manifest->expiry_horizon_seconds;
	if ((rc = envdbi_store_cred_list(ctx->store, &v, &n, &f)) != ENVDB_OK)
		return rc;
	for (i = 0; i < n; i++) {
		envdb_database *db = NULL;
		envdb_environment *env = NULL;
		char label[300] = "";
		bool expired = v[i]->expires_at <= now;
		int st;

		st = envdbi_store_db_get(ctx->store, &db, v[i]->environment_database_id);
		if (st == ENVDB_OK &&
		    (st = envdbi_store_env_get(ctx->store, &env, db->environment_id)) == ENVDB_OK)
			env_label(label, sizeof(label), env);
		if (st == ENVDB_OK && apply) {
			envdb_rotate_opts o = ENVDB_ROTATE_OPTS_INIT;

			/* The old one keeps working until it expires anyway. */
			o.overlap_seconds = expired ? 0 : v[i]->expires_at - now;
			o.authorization = v[i]->authorization;
			st = envdb_cred_rotate(ctx, env->organization_id, env->slug, &o);
		}
		add_item(b, "expiry", db ? db->driver : NULL, db ? db->database_name : NULL,
			 v[i]->id, label[0] ? label : NULL,
			 !apply ? (expired ? "would rotate (expired)" : "would rotate")
			 : st   ? "failed"
				: "rotated",
			 st);
		envdb_database_free(db);
		envdb_environment_free(env);
	}
	envdb_credential_list_free(v, n);
	return ENVDB_OK;
}

/*
 * A set of strings (not owned), each with a value and a flag, for the joins
 * of phase 4: open addressing, FNV-1a, linear probing, at most half full.
 * Each look-up is O(1), so phase 4 is linear in the rows and the listing
 * (it compared every listed name with every row, and every row with every
 * environment: 146,000 environments took minutes).
 */
typedef struct strset_ent {
	const char *key; /* NULL: empty */
	uint64_t hash;
	void *val; /* of the first insertion */
	bool flag; /* the OR of every insertion's */
} strset_ent;

typedef struct strset {
	strset_ent *v;
	size_t mask;
} strset;

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Room for n keys; returns ENVDB_OK or an error (out of memory). */
static int strset_init(strset *m, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n + 16)
		cap *= 2;
	m->v = calloc(cap, sizeof(*m->v));
	m->mask = cap - 1;
	return m->v != NULL ? ENVDB_OK : envdbi_error(ENVDB_ERR_NOMEM, NULL, "out of memory");
}

static void strset_free(strset *m)
{
	free(m->v);
	m->v = NULL;
	m->mask = 0;
}

static strset_ent *strset_slot(const strset *m, const char *key, uint64_t h)
{
	size_t i = (size_t)h & m->mask;

	while (m->v[i].key != NULL && (m->v[i].hash != h || strcmp(m->v[i].key, key) != 0))
		i = (i + 1) & m->mask;
	return &m->v[i];
}

/* Add `key` (NULL: nothing); a key already there keeps its first value. */
static void strset_put(strset *m, const char *key, void *val, bool flag)
{
	uint64_t h;
	strset_ent *e;

	if (key == NULL)
		return;
	h = str_hash(key);
	e = strset_slot(m, key, h);
	if (e->key == NULL) {
		e->key = key;
		e->hash = h;
		e->val = val;
	}
	e->flag = e->flag || flag;
}

/* The entry of `key`, or NULL (also for a NULL key). */
static const strset_ent *strset_get(const strset *m, const char *key)
{
	const strset_ent *e;

	if (key == NULL)
		return NULL;
	e = strset_slot(m, key, str_hash(key));

	return e->key != NULL ? e : NULL;
}

/* A row of an adapter with ENVDB_ADAPTER_CAP_LIST whose database the
 * listing did not contain.  The listing shows only the databases the
 * adapter names itself, so this means "missing" only when the row's name is
 * the one the adapter derives from the environment id; any other name (a
 * database adopted by the v4 migration, which keeps its legacy name) is
 * beyond what the listing can see: "unverified", not an error. */
static void unlisted_row(report_builder *b, envdb_ctx *ctx, envdbi_plugin *pl, const char *driver,
			 const envdb_database *d, const strset_ent *env)
{
	char label[300] = "", *derived = NULL;
	int st;

	if (env != NULL)
		env_label(label, sizeof(label), env->val);
	st = envdbi_adapter_database_name(pl, d->environment_id, &derived);
	if (st != ENVDB_OK) {
		envdbi_error_prefix("database %s (driver %s): ", d->database_name, driver);
		add_item(b, "unverified", driver, d->database_name, d->environment_id,
			 label[0] ? label : NULL, "failed", st);
	} else if (strcmp(derived, d->database_name) != 0 ||
		   ((envdbi_plugin_capabilities(pl) & ENVDB_ADAPTER_CAP_DEPLOYMENT) &&
		    d->provisioned_at < envdbi_store_deployment_created_at(ctx->store))) {
		/* Adopted; or provisioned before this control plane had its
		 * deployment id, so its marker may lack it and an adapter that
		 * lists by deployment cannot see it. */
		add_item(b, "unverified", driver, d->database_name, d->environment_id,
			 label[0] ? label : NULL, "none", ENVDB_OK);
	} else {
		st = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				  "database %s (driver %s) has a row but the adapter does not "
				  "list it",
				  d->database_name, driver);
		add_item(b, "missing", driver, d->database_name, d->environment_id,
			 label[0] ? label : NULL, "none", st);
	}
	free(derived);
}

/* Phase 4: physical databases without rows, rows without databases.
 *
 * Order matters against a provisioning running in another process: its
 * intent row is committed before its database is created, so a database the
 * adapter lists has its row (intent or final) in any read of the store made
 * AFTER the listing.  Orphans are therefore judged against rows read after
 * each listing; "missing" is judged against rows read before it (a row that
 * existed before the listing must have its database in it). */
size_t envdbi_reconcile_drop_limit(size_t registered)
{
	size_t limit = registered / 10;

	if (limit > ENVDBI_RECONCILE_DROP_MAX)
		limit = ENVDBI_RECONCILE_DROP_MAX;
	return limit < 1 ? 1 : limit;
}

/* With `limit` (0: none), drop at most that many orphans; the rest are
 * reported "refused". *n_orphans counts the orphans found. */
static int phase_orphans(report_builder *b, envdb_ctx *ctx, bool apply, size_t limit,
			 size_t *n_orphans, size_t *n_registered)
{
	envdb_environment **envs = NULL, **envs_now = NULL;
	envdb_database **dbs = NULL, **dbs_now = NULL;
	size_t n_envs = 0, n_dbs = 0, n_envs_now = 0, n_dbs_now = 0, p, i, n_dropped = 0;
	strset by_env = {NULL, 0}, taken = {NULL, 0}, listed = {NULL, 0};
	int rc;

	*n_orphans = 0;
	if ((rc = envdbi_store_env_list(ctx->store, &envs, &n_envs, NULL)) != ENVDB_OK)
		return rc;
	if ((rc = envdbi_store_db_list(ctx->store, &dbs, &n_dbs)) != ENVDB_OK)
		goto out;
	*n_registered = n_dbs;
	/* The environments read before the listings, by id: the first row of
	 * an id names it, the flag says whether any row of it is deleting. */
	if ((rc = strset_init(&by_env, n_envs)) != ENVDB_OK)
		goto out;
	for (i = 0; i < n_envs; i++)
		strset_put(&by_env, envs[i]->id, envs[i], envs[i]->delete_after != 0);
	for (p = 0; p < envdbi_plugins_count(ctx->plugins); p++) {
		envdbi_plugin *pl = envdbi_plugins_at(ctx->plugins, p);
		const char *driver = envdbi_plugin_name(pl);
		char **names = NULL;
		size_t n_names = 0, k;
		int st;

		if (envdbi_plugin_kind(pl) != ENVDB_PLUGIN_ADAPTER ||
		    !(envdbi_plugin_capabilities(pl) & ENVDB_ADAPTER_CAP_LIST))
			continue;
		st = envdbi_adapter_list(pl, &names, &n_names);
		if (st != ENVDB_OK) {
			add_item(b, "orphan", driver, NULL, NULL, NULL, "failed", st);
			continue;
		}
		/* The rows as they are now, after the listing. */
		envdb_environment_list_free(envs_now, n_envs_now);
		envdb_database_list_free(dbs_now, n_dbs_now);
		envs_now = NULL;
		dbs_now = NULL;
		n_envs_now = n_dbs_now = 0;
		strset_free(&taken);
		strset_free(&listed);
		if ((rc = envdbi_store_env_list(ctx->store, &envs_now, &n_envs_now, NULL)) !=
			    ENVDB_OK ||
		    (rc = envdbi_store_db_list(ctx->store, &dbs_now, &n_dbs_now)) != ENVDB_OK ||
		    (rc = strset_init(&taken, n_dbs_now + n_envs_now)) != ENVDB_OK ||
		    (rc = strset_init(&listed, n_names)) != ENVDB_OK) {
			envdbi_strv_free(names, n_names);
			goto out;
		}
		/* A name is taken by a database row, or by an environment row
		 * naming it as its pending database (a live intent, or one
		 * phase 1/2 reported). */
		for (k = 0; k < n_dbs_now; k++)
			strset_put(&taken, dbs_now[k]->database_name, NULL, false);
		for (k = 0; k < n_envs_now; k++)
			strset_put(&taken, envs_now[k]->pending_database_name, NULL, false);
		for (i = 0; i < n_names; i++)
			strset_put(&listed, names[i], NULL, false);
		for (i = 0; i < n_names; i++) {
			envdb_db_ref ref;

			if (strset_get(&taken, names[i]) != NULL)
				continue;
			st = ENVDB_OK;
			++*n_orphans;
			if (apply && limit > 0 && n_dropped >= limit) {
				st = envdbi_error(ENVDB_ERR_STATE, NULL,
						  "database %s (driver %s): not dropped: more than "
						  "%zu orphans at once need ENVDB_RECONCILE_FORCE "
						  "(--force)",
						  names[i], driver, limit);
				add_item(b, "orphan", driver, names[i], NULL, NULL, "refused", st);
				continue;
			}
			if (apply) {
				n_dropped++;
				memset(&ref, 0, sizeof(ref));
				ref.struct_size = sizeof(ref);
				ref.database_name = names[i];
				st = envdbi_adapter_drop(pl, &ref);
				if (st == ENVDB_OK)
					st = ENVDB_FAILPOINT("reconcile.after_orphan_drop");
			}
			add_item(b, "orphan", driver, names[i], NULL, NULL,
				 !apply ? "would drop" : st ? "failed" : "dropped", st);
		}
		for (k = 0; k < n_dbs; k++) {
			const envdb_database *d = dbs[k];
			const strset_ent *env;

			if (strcmp(d->driver, driver) != 0 ||
			    strset_get(&listed, d->database_name) != NULL)
				continue;
			env = strset_get(&by_env, d->environment_id);
			if (env != NULL && env->flag)
				continue; /* a deletion on its way */
			unlisted_row(b, ctx, pl, driver, d, env);
		}
		envdbi_strv_free(names, n_names);
	}
out:
	strset_free(&by_env);
	strset_free(&taken);
	strset_free(&listed);
	envdb_environment_list_free(envs, n_envs);
	envdb_database_list_free(dbs, n_dbs);
	envdb_environment_list_free(envs_now, n_envs_now);
	envdb_database_list_free(dbs_now, n_dbs_now);
	return rc;
}

int envdb_reconcile(envdb_reconcile_report **out, envdb_ctx *ctx, unsigned flags)
{
	report_builder b;
	bool apply = (flags & ENVDB_RECONCILE_APPLY) != 0;
	bool force = (flags & ENVDB_RECONCILE_FORCE) != 0;
	size_t n_orphans = 0, n_registered = 0, limit = 0;
	int64_t now;
	int rc;

	if (out == NULL || ctx == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "reconcile: missing argument");
	*out = NULL;
	if (ctx->store == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "reconcile: the context has no control plane open");
	if (flags & ~(unsigned)(ENVDB_RECONCILE_APPLY | ENVDB_RECONCILE_FORCE))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "reconcile: unknown flags 0x%x",
				    flags & ~(unsigned)(ENVDB_RECONCILE_APPLY | ENVDB_RECONCILE_FORCE));
	if (apply && !force) {
		/* Count first, change nothing: over the limit, refuse it all. */
		memset(&b, 0, sizeof(b));
		if ((b.r = calloc(1, sizeof(*b.r))) == NULL)
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "reconcile: out of memory");
		rc = phase_orphans(&b, ctx, false, 0, &n_orphans, &n_registered);
		envdb_reconcile_report_free(b.r);
		if (rc != ENVDB_OK)
			return envdbi_error_prefix("reconcile: ");
		limit = envdbi_reconcile_drop_limit(n_registered);
		if (n_orphans > limit)
			return envdbi_error(
			    ENVDB_ERR_STATE, NULL,
			    "reconcile: would drop %zu orphan databases (no row names them), more "
			    "than the limit of %zu for %zu registered databases (10%%, at least 1, "
			    "at most %d): nothing was changed.  So many at once may be another "
			    "deployment's databases on a shared backend, or a control plane "
			    "restored from an old backup: check with a dry run, then use --force "
			    "(ENVDB_RECONCILE_FORCE)",
			    n_orphans, limit, n_registered, ENVDBI_RECONCILE_DROP_MAX);
	}
	memset(&b, 0, sizeof(b));
	b.r = calloc(1, sizeof(*b.r));
	if (b.r == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "reconcile: out of memory");
	b.r->struct_size = sizeof(*b.r);
	b.r->applied = apply;
	now = envdbi_now();
	if ((rc = phase_intents(&b, ctx, apply, now)) != ENVDB_OK ||
	    (rc = phase_deletions(&b, ctx, apply, now)) != ENVDB_OK ||
	    (rc = phase_rotations(&b, ctx, apply, now)) != ENVDB_OK ||
	    (rc = phase_expiry(&b, ctx, apply, now)) != ENVDB_OK ||
	    (rc = phase_orphans(&b, ctx, apply, limit, &n_orphans, &n_registered)) != ENVDB_OK) {
		envdbi_error_prefix("reconcile: ");
		envdb_reconcile_report_free(b.r);
		return rc;
	}
	if (b.rc != ENVDB_OK) {
		envdb_reconcile_report_free(b.r);
		return envdbi_error(b.rc, NULL, "reconcile: out of memory");
	}
	*out = b.r;
	return ENVDB_OK;
}
