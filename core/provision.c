/*
 * core/provision.c — the life of an environment: crash-safe provisioning
 * (DESIGN.md §4, the steps are documented at envdb_env_provision() in
 * envdb.h), organization provisioning, show/list, archive, and deletion
 * with a grace period before the physical drop.
 *
 * Failure policy: the intent row is the only trace of an unfinished
 * provisioning.  A failure after it is compensated at once (drop whatever
 * the adapter may have created, then delete the intent, so the slug is
 * reusable); if the compensating drop itself fails, the intent is marked
 * "failed" (keeping pending_database_name/pending_driver) for
 * `envdb reconcile --apply` to finish.  A killed process leaves the intent
 * "provisioning" until its lease expires; reconcile then claims it
 * (provisioning → failed, so a late provisioner cannot activate it), drops
 * and deletes it.
 *
 * Deletion is the same pattern in reverse: a deletion intent (status
 * archived, delete_after, pending_*) is committed first; the drop and the
 * row deletion follow at once (ENVDB_DELETE_NOW) or, after the grace
 * period, in reconcile.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failpoint.h"
#include "internal.h"
#include "resolve.h"
#include "schema.h"
#include "store.h"

#define DEFAULT_ORG_SLUG "prod"
#define DEFAULT_ORG_TYPE "production"

/* A copy of the thread's last error, restored after compensation steps that
 * may overwrite it. */
typedef struct saved_error {
	int status;
	char native[64];
	char *message;
} saved_error;

static void error_save(saved_error *se, int rc)
{
	const envdb_error *le = envdb_error_last();

	se->status = le->status ? le->status : rc;
	se->native[0] = '\0';
	if (le->native_code != NULL) {
		strncpy(se->native, le->native_code, sizeof(se->native) - 1);
		se->native[sizeof(se->native) - 1] = '\0';
	}
	se->message = strdup(le->message);
}

/* Restore, appending `note` (may be NULL); returns the saved status. */
static int error_restore(saved_error *se, const char *note)
{
	int rc = envdbi_error(se->status, se->native[0] ? se->native : NULL, "%s%s",
			      se->message ? se->message : "unknown error", note ? note : "");
	free(se->message);
	se->message = NULL;
	return rc;
}

static bool org_valid(const char *org)
{
	size_t i, n = strlen(org);

	if (n == 0 || n > 128)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)org[i];

		if (ch <= ' ' || ch == '/' || ch == 0x7f)
			return false;
	}
	return true;
}

static int check_enum(const char *field, const char *value, const char *label)
{
	const envdbi_object_def *o = envdbi_schema_object("sys_environment");
	const envdbi_field_def *f = o ? envdbi_schema_field(o, field) : NULL;
	size_t i;

	if (f == NULL || envdbi_schema_enum_ok(f, value))
		return ENVDB_OK;
	{
		char list[256] = "";

		for (i = 0; f->enum_values[i] != NULL; i++) {
			if (i > 0)
				strncat(list, ", ", sizeof(list) - strlen(list) - 1);
			strncat(list, f->enum_values[i], sizeof(list) - strlen(list) - 1);
		}
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "provision %s: %s %s is not one of %s", label, field, value, list);
	}
}


/* ------------------------------------------------------------------------ */
/* Provisioning                                                              */
/* ------------------------------------------------------------------------ */

typedef struct minted {
	envdb_credential *row;
	envdbi_secret *secret;
} minted;

static void minted_clear(minted *m)
{
	envdb_credential_free(m->row);
	envdbi_secret_free(m->secret);
	m->row = NULL;
	m->secret = NULL;
}

static int mint_one(minted *m, envdbi_plugin *adapter, const envdb_db_ref *ref,
		    const char *db_id, uint32_t auth, int64_t now)
{
	envdb_mint_request req;
	envdb_credential *c;
	char id[37];
	int rc;

	c = m->row = calloc(1, sizeof(*c));
	if (c == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "provision: out of memory");
	envdbi_uuid_new(id);
	c->id = strdup(id);
	c->environment_database_id = strdup(db_id);
	c->authorization = strdup(auth == ENVDB_AUTH_READ_ONLY ? "read_only" : "full_access");
	c->status = strdup("active");
	if (!c->id || !c->environment_database_id || !c->authorization || !c->status)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "provision: out of memory");
	c->created_at = now;
	memset(&req, 0, sizeof(req));
	req.struct_size = sizeof(req);
	req.credential_id = c->id;
	req.authorization = auth;
	req.expires_at = 0;
	req.previous_handle = NULL;
	req.granted_expires_at = &c->expires_at; /* the expiry the backend applied */
	rc = envdbi_adapter_mint(adapter, ref, &req, &m->secret, &c->handle);
	if (rc != ENVDB_OK)
		return envdbi_error_prefix("mint %s credential: ", c->authorization);
	return ENVDB_OK;
}

/* Step 5: one transaction inserts the database, the credentials and the
 * owner, and moves the intent to active. */
static int provision_commit(envdb_ctx *ctx, const char *env_id, const envdb_database *d,
			    minted *creds, size_t n_creds, const char *owner)
{
	envdbi_store *s = ctx->store;
	envdb_member m;
	size_t i;
	int rc;

	if ((rc = envdbi_store_begin(s)) != ENVDB_OK)
		return rc;
	/* Under the write lock: the intent must still be ours (reconcile may
	 * have claimed it after its lease ran out): activated first, so that a
	 * lost intent fails before anything is inserted. */
	if ((rc = envdbi_store_env_activate(s, env_id)) != ENVDB_OK)
		goto fail;
	if ((rc = envdbi_store_db_insert(s, d, NULL)) != ENVDB_OK)
		goto fail;
	for (i = 0; i < n_creds; i++)
		if ((rc = envdbi_store_cred_insert(s, creds[i].row, NULL)) != ENVDB_OK)
			goto fail;
	memset(&m, 0, sizeof(m));
	m.environment_id = (char *)env_id;
	m.user_id = (char *)owner;
	m.role = (char *)"owner";
	m.invited_by = (char *)owner;
	if ((rc = envdbi_store_member_insert(s, &m, NULL)) != ENVDB_OK)
		goto fail;
	if ((rc = ENVDB_FAILPOINT("provision.commit")) != ENVDB_OK)
		goto fail;
	return envdbi_store_commit(s);
fail:
	envdbi_store_rollback(s);
	return rc;
}

/* Drop the intent's database and delete the intent row (a failed
 * provisioning).  If the drop fails the intent is marked failed for
 * reconcile, and the drop's error is left in the last error.  Returns the
 * status of the drop. */
static int provision_compensate(envdb_ctx *ctx, envdbi_plugin *adapter, const char *env_id,
				const char *db_name, bool drop)
{
	envdb_db_ref ref;
	int rc = ENVDB_OK;

	if (drop) {
		memset(&ref, 0, sizeof(ref));
		ref.struct_size = sizeof(ref);
		ref.environment_id = env_id;
		ref.database_name = db_name;
		rc = ENVDB_FAILPOINT("provision.compensate");
		if (rc == ENVDB_OK)
			rc = envdbi_adapter_drop(adapter, &ref);
	}
	if (rc != ENVDB_OK) {
		saved_error drop_err;

		/* Keep the intent, visibly failed, for reconcile to retry. */
		error_save(&drop_err, rc);
		if (envdbi_store_env_set_status(ctx->store, env_id, "provisioning", "failed") !=
		    ENVDB_OK)
			envdbi_log(ENVDB_LOG_WARNING, "environment %s: could not mark failed: %s",
				   env_id, envdb_error_last()->message);
		error_restore(&drop_err, NULL);
		return rc;
	}
	if (drop && (rc = ENVDB_FAILPOINT("provision.after_compensate")) != ENVDB_OK)
		return envdbi_error_prefix("dropped, but the intent row was kept: ");
	if (envdbi_store_env_delete(ctx->store, env_id) != ENVDB_OK &&
	    envdb_error_last()->status != ENVDB_ERR_NOT_FOUND)
		envdbi_log(ENVDB_LOG_WARNING,
			   "environment %s: intent not deleted (reconcile will): %s", env_id,
			   envdb_error_last()->message);
	return ENVDB_OK;
}

typedef struct prov_req {
	const char *org, *slug, *env_type, *display_name, *driver, *region, *plan, *owner;
	const char *metadata;
	int64_t storage_mb;
	int is_default;
} prov_req;

static int provision_validate(envdb_ctx *ctx, prov_req *q, envdbi_plugin **adapter,
			      const char *label)
{
	const envdbi_manifest *man = ctx->manifest;
	envdbi_plugin *enc;
	int rc;

	if (!org_valid(q->org))
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "provision %s: organization id must be 1-128 printable characters "
				    "without spaces or '/'",
				    label);
	if (!envdbi_slug_valid(q->slug))
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "provision %s: slug %s does not match ^[a-z0-9][a-z0-9-]{0,62}$",
				    label, q->slug);
	if (q->env_type == NULL)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "provision %s: an environment type is required", label);
	if ((rc = check_enum("env_type", q->env_type, label)) != ENVDB_OK)
		return rc;
	if (q->plan == NULL)
		q->plan = man->default_plan ? man->default_plan : "free";
	if ((rc = check_enum("plan", q->plan, label)) != ENVDB_OK)
		return rc;
	if (q->storage_mb == 0)
		q->storage_mb = man->default_storage_mb;
	if (q->storage_mb <= 0)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "provision %s: storage limit must be a positive number of MiB",
				    label);
	if (q->owner == NULL || *q->owner == '\0')
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "provision %s: created_by (the owner) is required", label);
	if ((rc = envdbi_check_ident("provision", "created_by (the owner)", q->owner)) ||
	    (q->region != NULL && (rc = envdbi_check_name("provision", "region", q->region, 64))) ||
	    (rc = envdbi_check_text("provision", "display name", q->display_name, 256)))
		return envdbi_error_prefix("provision %s: ", label);
	if (q->region == NULL)
		q->region = man->default_region;
	if (q->driver == NULL)
		q->driver = man->default_driver;
	if ((rc = envdbi_adapter_find(adapter, ctx, q->driver)) != ENVDB_OK)
		return envdbi_error_prefix("provision %s: ", label);
	if ((rc = envdbi_encryptor_get(&enc, ctx, "provision")) != ENVDB_OK)
		return envdbi_error_prefix("provision %s: ", label);
	if (q->is_default) {
		envdb_environment *def = NULL;

		rc = envdbi_store_env_get_default(ctx->store, &def, q->org);
		if (rc == ENVDB_OK) {
			rc = envdbi_error(ENVDB_ERR_EXISTS, NULL,
					  "organization %s: already has a default environment (%s)",
					  q->org, def->slug);
			envdb_environment_free(def);
			return rc;
		}
		if (rc != ENVDB_ERR_NOT_FOUND)
			return rc;
	}
	return ENVDB_OK;
}

static int provision(envdb_environment **out, envdb_ctx *ctx, prov_req *q)
{
	char label[300], env_id[37], db_id[37];
	envdbi_plugin *adapter = NULL;
	envdb_environment e;
	envdb_create_request creq;
	envdb_database d;
	envdb_db_ref ref;
	minted creds[2];
	size_t n_creds = 0, i;
	char *db_name = NULL, *url = NULL, *meta = NULL;
	bool created = false, drop_on_fail = false;
	int64_t now;
	int rc;

	memset(creds, 0, sizeof(creds));
	snprintf(label, sizeof(label), "%s/%s", q->org, q->slug);
	/* 1. Validate. */
	if ((rc = provision_validate(ctx, q, &adapter, label)) != ENVDB_OK)
		return rc;

	/* 2. The durable intent, with the physical name derived from the id. */
	envdbi_uuid_new(env_id);
	if ((rc = envdbi_adapter_database_name(adapter, env_id, &db_name)) != ENVDB_OK)
		return envdbi_error_prefix("provision %s: database name: ", label);
	now = envdbi_now();
	memset(&e, 0, sizeof(e));
	e.id = env_id;
	e.organization_id = (char *)q->org;
	e.slug = (char *)q->slug;
	e.display_name = (char *)(q->display_name ? q->display_name : q->slug);
	e.env_type = (char *)q->env_type;
	e.is_default = q->is_default ? 1 : 0;
	e.region = (char *)q->region;
	e.plan = (char *)q->plan;
	e.status = (char *)"provisioning";
	e.created_by = (char *)q->owner;
	e.metadata = (char *)(q->metadata ? q->metadata : "{}");
	e.lease_expires_at = now + (ctx->manifest->lease_seconds > 0
					    ? ctx->manifest->lease_seconds : 300);
	e.pending_database_name = db_name;
	e.pending_driver = (char *)q->driver;
	if ((rc = envdbi_store_env_insert(ctx->store, &e, NULL)) != ENVDB_OK) {
		envdbi_error_prefix("provision %s: ", label);
		free(db_name);
		return rc;
	}
	if ((rc = ENVDB_FAILPOINT("provision.after_intent")) != ENVDB_OK)
		goto fail;

	/* 3. The physical database and its credentials. */
	memset(&creq, 0, sizeof(creq));
	creq.struct_size = sizeof(creq);
	creq.environment_id = env_id;
	creq.database_name = db_name;
	creq.region = q->region;
	creq.plan = q->plan;
	creq.storage_limit_mb = q->storage_mb;
	rc = envdbi_adapter_create(adapter, &creq, &url, &meta);
	/* Whatever a failed create may have left is ours to drop, except an
	 * existing database of that name, which is not ours, and after a
	 * definite refusal (authorization, permission), which made nothing:
	 * the intent then goes at once instead of waiting for reconcile. */
	drop_on_fail = rc != ENVDB_ERR_EXISTS && rc != ENVDB_ERR_AUTH &&
		       rc != ENVDB_ERR_PERMISSION;
	if (rc != ENVDB_OK) {
		envdbi_error_prefix("provision %s: create database %s: ", label, db_name);
		goto fail;
	}
	created = true;
	if ((rc = ENVDB_FAILPOINT("provision.after_create")) != ENVDB_OK)
		goto fail;
	envdbi_uuid_new(db_id);
	memset(&ref, 0, sizeof(ref));
	ref.struct_size = sizeof(ref);
	ref.environment_id = env_id;
	ref.database_name = db_name;
	ref.url = url;
	ref.metadata = meta;
	if ((rc = mint_one(&creds[n_creds++], adapter, &ref, db_id, ENVDB_AUTH_FULL_ACCESS, now)))
		goto fail_prefixed;
	if (envdbi_plugin_capabilities(adapter) & ENVDB_ADAPTER_CAP_READ_ONLY) {
		rc = mint_one(&creds[n_creds++], adapter, &ref, db_id, ENVDB_AUTH_READ_ONLY, now);
		if (rc != ENVDB_OK)
			goto fail_prefixed;
	}
	if ((rc = ENVDB_FAILPOINT("provision.after_mint")) != ENVDB_OK)
		goto fail;

	/* The database row, whose address the secrets are sealed for. */
	memset(&d, 0, sizeof(d));
	d.id = db_id;
	d.environment_id = env_id;
	d.database_name = db_name;
	d.database_url = url;
	d.driver = (char *)q->driver;
	d.region = (char *)q->region;
	d.storage_limit_mb = q->storage_mb;
	d.provisioned_at = now;
	d.metadata = meta;

	/* 4. Seal. */
	for (i = 0; i < n_creds; i++) {
		if ((rc = ENVDB_FAILPOINT("provision.encrypt")) != ENVDB_OK)
			goto fail;
		if ((rc = envdbi_credential_seal(ctx, creds[i].row, &d, creds[i].secret)) != ENVDB_OK)
			goto fail_prefixed;
		envdbi_secret_free(creds[i].secret);
		creds[i].secret = NULL;
	}
	if ((rc = ENVDB_FAILPOINT("provision.after_encrypt")) != ENVDB_OK)
		goto fail;

	/* 5. One transaction makes it real. */
	rc = provision_commit(ctx, env_id, &d, creds, n_creds, q->owner);
	if (rc != ENVDB_OK)
		goto fail_prefixed;
	envdbi_cache_invalidate_env(ctx->cache, env_id);
	if ((rc = ENVDB_FAILPOINT("provision.after_commit")) != ENVDB_OK)
		goto out;
	if (out != NULL && (rc = envdbi_store_env_get(ctx->store, out, env_id)) != ENVDB_OK)
		envdbi_error_prefix("provision %s: provisioned, but reading it back failed: ", label);
	goto out;

fail_prefixed:
	envdbi_error_prefix("provision %s: ", label);
fail:
	{
		saved_error se;
		int drc;

		error_save(&se, rc);
		drc = provision_compensate(ctx, adapter, env_id, db_name, created || drop_on_fail);
		if (drc == ENVDB_OK) {
			rc = error_restore(&se, NULL);
		} else {
			char note[1024];

			snprintf(note, sizeof(note),
				 " (rollback incomplete: database %s: %s; run envdb "
				 "reconcile --apply)",
				 db_name, envdb_error_last()->message);
			rc = error_restore(&se, note);
		}
	}
out:
	for (i = 0; i < n_creds; i++)
		minted_clear(&creds[i]);
	free(db_name);
	free(url);
	free(meta);
	return rc;
}

static void req_from_opts(prov_req *q, const envdb_provision_opts *o)
{
	memset(q, 0, sizeof(*q));
	if (o == NULL)
		return;
	q->env_type = o->env_type;
	q->display_name = o->display_name;
	q->driver = o->driver;
	q->region = o->region;
	q->plan = o->plan;
	q->storage_mb = o->storage_limit_mb;
	q->is_default = o->is_default;
	q->owner = o->created_by;
	q->metadata = o->metadata;
}

int envdb_env_provision(envdb_environment **out, envdb_ctx *ctx, const char *organization_id,
			const char *slug, const envdb_provision_opts *opts)
{
	prov_req q;
	int rc;

	if (out != NULL)
		*out = NULL;
	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "provision")) != ENVDB_OK)
		return rc;
	if (opts == NULL || opts->struct_size < sizeof(*opts))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "provision %s/%s: options (with created_by) are required",
				    organization_id, slug);
	req_from_opts(&q, opts);
	q.org = organization_id;
	q.slug = slug;
	return provision(out, ctx, &q);
}

int envdb_org_provision(envdb_environment **out, envdb_ctx *ctx, const char *organization_id,
			const char *slug, const envdb_provision_opts *opts)
{
	prov_req q;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (slug == NULL)
		slug = DEFAULT_ORG_SLUG;
	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "provision organization")) != ENVDB_OK)
		return rc;
	if (opts == NULL || opts->struct_size < sizeof(*opts))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "provision organization %s: options (with created_by) are "
				    "required",
				    organization_id);
	req_from_opts(&q, opts);
	q.org = organization_id;
	q.slug = slug;
	if (q.env_type == NULL)
		q.env_type = DEFAULT_ORG_TYPE;
	q.is_default = 1;
	return provision(out, ctx, &q);
}

/* ------------------------------------------------------------------------ */
/* Show, list                                                                */
/* ------------------------------------------------------------------------ */

int envdb_env_get(envdb_environment **out, envdb_ctx *ctx, const char *organization_id,
		  const char *slug)
{
	int rc;

	if (out == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "show environment: missing argument");
	*out = NULL;
	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "show environment")) != ENVDB_OK)
		return rc;
	return envdbi_store_env_get_by_slug(ctx->store, out, organization_id, slug);
}

int envdb_env_list(envdb_environment ***out, size_t *n, envdb_ctx *ctx,
		   const char *organization_id)
{
	envdbi_env_filter f = ENVDBI_ENV_FILTER_INIT;

	if (out == NULL || n == NULL || ctx == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "list environments: missing argument");
	*out = NULL;
	*n = 0;
	if (ctx->store == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "list environments: the context has no control plane open");
	if (organization_id != NULL &&
	    envdbi_check_ident("list environments", "organization id", organization_id) != 0)
		return ENVDB_ERR_INVALID;
	f.organization_id = organization_id;
	return envdbi_store_env_list(ctx->store, out, n, &f);
}

int envdb_env_database(envdb_database **out, envdb_ctx *ctx, const char *organization_id,
		       const char *slug)
{
	envdb_environment *env = NULL;
	int rc;

	if (out == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "show database: missing argument");
	*out = NULL;
	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "show database")) != ENVDB_OK)
		return rc;
	if ((rc = envdbi_store_env_get_by_slug(ctx->store, &env, organization_id, slug)) != 0)
		return rc;
	rc = envdbi_store_db_get_by_env(ctx->store, out, env->id);
	if (rc == ENVDB_ERR_NOT_FOUND)
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				  "environment %s/%s: has no database (status %s)", organization_id,
				  slug, env->status);
	envdb_environment_free(env);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Archive, delete                                                           */
/* ------------------------------------------------------------------------ */

static int set_str(char **field, const char *value)
{
	char *v = NULL;

	if (value != NULL && (v = strdup(value)) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "out of memory");
	free(*field);
	*field = v;
	return ENVDB_OK;
}

/* Lock every credential of the environment's database out at the backend
 * (suspend) or let them back in (resume), where its adapter can
 * (ENVDB_ADAPTER_CAP_SUSPEND); an environment without a database, or an
 * adapter without the capability, is success (*done false). */
static int env_lockout(envdb_ctx *ctx, const envdb_environment *env, bool suspend, bool *done)
{
	envdb_database *db = NULL;
	envdbi_plugin *adapter;
	envdb_db_ref ref;
	int rc;

	*done = false;
	rc = envdbi_store_db_get_by_env(ctx->store, &db, env->id);
	if (rc == ENVDB_ERR_NOT_FOUND)
		return ENVDB_OK;
	if (rc != ENVDB_OK)
		return rc;
	if ((rc = envdbi_adapter_find(&adapter, ctx, db->driver)) != ENVDB_OK)
		goto out;
	if (!(envdbi_plugin_capabilities(adapter) & ENVDB_ADAPTER_CAP_SUSPEND))
		goto out;
	memset(&ref, 0, sizeof(ref));
	ref.struct_size = sizeof(ref);
	ref.environment_id = env->id;
	ref.database_name = db->database_name;
	ref.url = db->database_url;
	ref.metadata = db->metadata;
	rc = suspend ? envdbi_adapter_suspend(adapter, &ref) : envdbi_adapter_resume(adapter, &ref);
	if (rc != ENVDB_OK)
		envdbi_error_prefix("%s the credentials of database %s: ",
				    suspend ? "lock out" : "let in", db->database_name);
	*done = rc == ENVDB_OK;
out:
	envdb_database_free(db);
	return rc;
}

int envdb_env_archive(envdb_ctx *ctx, const char *organization_id, const char *slug)
{
	envdbi_store *s;
	envdb_environment *env = NULL;
	bool locked = false, ignored;
	int rc;

	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "archive")) != ENVDB_OK)
		return rc;
	s = ctx->store;
	if ((rc = envdbi_store_env_get_by_slug(s, &env, organization_id, slug)) != ENVDB_OK)
		return rc;
	if (strcmp(env->status, "provisioning") == 0 || strcmp(env->status, "archived") == 0 ||
	    strcmp(env->status, "failed") == 0) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "archive %s/%s: environment is %s", organization_id, slug,
				  env->status);
		goto out;
	}
	/* Lock out first: an archived environment whose credentials still
	 * work at the backend is what archive must never leave. */
	if ((rc = env_lockout(ctx, env, true, &locked)) != ENVDB_OK) {
		envdbi_error_prefix("archive %s/%s: ", organization_id, slug);
		goto out;
	}
	if ((rc = envdbi_store_begin(s)) != ENVDB_OK)
		goto undo;
	if ((rc = envdbi_store_env_set_status(s, env->id, env->status, "archived")) != ENVDB_OK) {
		envdbi_store_rollback(s);
		goto undo;
	}
	if ((rc = envdbi_store_commit(s)) != ENVDB_OK)
		goto undo;
	envdbi_cache_invalidate_env(ctx->cache, env->id);
	goto out;
undo:
	if (locked) {
		saved_error se;

		error_save(&se, rc);
		(void)env_lockout(ctx, env, false, &ignored);
		rc = error_restore(&se, NULL);
	}
out:
	envdb_environment_free(env);
	return rc;
}

int envdb_env_unarchive(envdb_ctx *ctx, const char *organization_id, const char *slug)
{
	envdb_environment *env = NULL;
	bool ignored;
	int rc;

	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "unarchive")) != ENVDB_OK)
		return rc;
	if ((rc = envdbi_store_env_get_by_slug(ctx->store, &env, organization_id, slug)) !=
	    ENVDB_OK)
		return rc;
	if (strcmp(env->status, "archived") != 0 || env->delete_after != 0) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL, "unarchive %s/%s: environment is %s",
				  organization_id, slug,
				  env->delete_after != 0 ? "being deleted" : env->status);
		goto out;
	}
	/* Active first (a concurrent delete loses the race on the status),
	 * then the backend lets the credentials in; if it cannot, archived
	 * again. */
	if ((rc = envdbi_store_env_set_status(ctx->store, env->id, "archived", "active")) !=
	    ENVDB_OK) {
		envdbi_error_prefix("unarchive %s/%s: ", organization_id, slug);
		goto out;
	}
	envdbi_cache_invalidate_env(ctx->cache, env->id);
	if ((rc = env_lockout(ctx, env, false, &ignored)) != ENVDB_OK) {
		saved_error se;

		error_save(&se, rc);
		(void)envdbi_store_env_set_status(ctx->store, env->id, "active", "archived");
		envdbi_cache_invalidate_env(ctx->cache, env->id);
		rc = error_restore(&se, NULL);
		envdbi_error_prefix("unarchive %s/%s: ", organization_id, slug);
	}
out:
	envdb_environment_free(env);
	return rc;
}

int envdbi_env_delete_finish(envdb_ctx *ctx, const envdb_environment *env, const char *failpoint)
{
	envdb_database *db = NULL;
	envdbi_plugin *adapter;
	envdb_db_ref ref;
	int rc;

	rc = envdbi_store_db_get_by_env(ctx->store, &db, env->id);
	if (rc != ENVDB_OK && rc != ENVDB_ERR_NOT_FOUND)
		return rc;
	if (env->pending_database_name != NULL) {
		if ((rc = envdbi_adapter_find(&adapter, ctx, env->pending_driver)) != ENVDB_OK)
			goto out;
		memset(&ref, 0, sizeof(ref));
		ref.struct_size = sizeof(ref);
		ref.environment_id = env->id;
		ref.database_name = env->pending_database_name;
		if (db != NULL && strcmp(db->database_name, env->pending_database_name) == 0) {
			ref.url = db->database_url;
			ref.metadata = db->metadata;
		}
		if ((rc = envdbi_adapter_drop(adapter, &ref)) != ENVDB_OK) {
			envdbi_error_prefix("delete %s/%s: drop database %s: ", env->organization_id,
					    env->slug, env->pending_database_name);
			goto out;
		}
	}
	if ((rc = ENVDB_FAILPOINT(failpoint)) != ENVDB_OK)
		goto out;
	rc = envdbi_store_env_delete(ctx->store, env->id);
	if (rc == ENVDB_ERR_NOT_FOUND)
		rc = ENVDB_OK; /* someone else finished it */
	envdbi_cache_invalidate_env(ctx->cache, env->id);
out:
	envdb_database_free(db);
	return rc;
}

int envdb_env_delete(envdb_ctx *ctx, const char *organization_id, const char *slug,
		     unsigned flags)
{
	envdbi_store *s;
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	int64_t now, grace;
	int rc;

	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "delete")) != ENVDB_OK)
		return rc;
	s = ctx->store;
	now = envdbi_now();
	grace = (flags & ENVDB_DELETE_NOW) ? 0 : ctx->manifest->delete_grace_seconds;
	if (grace < 0)
		grace = 0;
	/* Lock the credentials out before the grace period starts (the drop
	 * at its end removes them). */
	if (grace > 0 && envdbi_store_env_get_by_slug(s, &env, organization_id, slug) == ENVDB_OK &&
	    strcmp(env->status, "provisioning") != 0) {
		bool locked;

		if ((rc = env_lockout(ctx, env, true, &locked)) != ENVDB_OK)
			goto out;
	}
	envdb_environment_free(env);
	env = NULL;
	envdb_error_clear();
	if ((rc = envdbi_store_begin(s)) != ENVDB_OK)
		return rc;
	if ((rc = envdbi_store_env_get_by_slug(s, &env, organization_id, slug)) != ENVDB_OK)
		goto fail;
	if (strcmp(env->status, "provisioning") == 0) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "delete %s/%s: environment is being provisioned; wait, or run "
				  "envdb reconcile --apply once its lease expired",
				  organization_id, slug);
		goto fail;
	}
	rc = envdbi_store_db_get_by_env(s, &db, env->id);
	if (rc != ENVDB_OK && rc != ENVDB_ERR_NOT_FOUND)
		goto fail;
	/* The deletion intent: archived now, dropped after delete_after.  A
	 * second delete may only bring the drop forward. */
	if (env->delete_after == 0 || now + grace < env->delete_after)
		env->delete_after = now + grace;
	if (db != NULL) {
		if ((rc = set_str(&env->pending_database_name, db->database_name)) != ENVDB_OK ||
		    (rc = set_str(&env->pending_driver, db->driver)) != ENVDB_OK)
			goto fail;
	}
	if ((rc = set_str(&env->status, "archived")) != ENVDB_OK)
		goto fail;
	if ((rc = envdbi_store_env_update(s, env)) != ENVDB_OK)
		goto fail;
	if ((rc = envdbi_store_commit(s)) != ENVDB_OK)
		goto out;
	envdbi_cache_invalidate_env(ctx->cache, env->id);
	if ((rc = ENVDB_FAILPOINT("delete.after_intent")) != ENVDB_OK)
		goto out;
	if (grace == 0)
		rc = envdbi_env_delete_finish(ctx, env, ENVDBI_FP("delete.after_drop"));
	goto out;
fail:
	envdbi_store_rollback(s);
out:
	if (rc != ENVDB_OK)
		envdbi_error_prefix("delete %s/%s: ", organization_id, slug);
	envdb_database_free(db);
	envdb_environment_free(env);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Intent rollback (reconcile)                                               */
/* ------------------------------------------------------------------------ */

/* Claim a failed intent as listed in `env`: a compare-and-set of its
 * (updated_at, lease_expires_at) to (now, now), which marks it as claimed
 * by a reconcile (reconcile.c: claimed_by_another()).  ENVDB_ERR_STATE and
 * *lost when another process changed or removed it since (the claim is
 * lost; it is not a failure). */
static int claim_failed(envdb_ctx *ctx, const envdb_environment *env, bool *lost)
{
	envdb_environment *cur = NULL;
	int rc;

	if ((rc = envdbi_store_begin(ctx->store)) != ENVDB_OK)
		return rc;
	rc = envdbi_store_env_get(ctx->store, &cur, env->id);
	if (rc == ENVDB_ERR_NOT_FOUND ||
	    (rc == ENVDB_OK && (strcmp(cur->status, "failed") != 0 ||
				cur->updated_at != env->updated_at ||
				cur->lease_expires_at != env->lease_expires_at))) {
		*lost = true;
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "environment %s/%s: the failed intent was claimed by another "
				  "process",
				  env->organization_id, env->slug);
	}
	if (rc == ENVDB_OK) {
		cur->lease_expires_at = envdbi_now();
		rc = envdbi_store_env_update(ctx->store, cur);
	}
	if (rc == ENVDB_OK)
		rc = envdbi_store_commit(ctx->store);
	else
		envdbi_store_rollback(ctx->store);
	envdb_environment_free(cur);
	return rc;
}

/* Give back the claim of failed intent `id` after this process failed to
 * roll it back: lease 0, so the next reconcile retries it at once instead
 * of honouring the claim for a lease.  Best effort (a claim not given back
 * is honoured for its lease, as that of a process that died). */
static void release_claim(envdb_ctx *ctx, const char *id, int failed)
{
	envdb_environment *cur = NULL;
	saved_error err;
	int rc;

	error_save(&err, failed);
	if (envdbi_store_begin(ctx->store) == ENVDB_OK) {
		rc = envdbi_store_env_get(ctx->store, &cur, id);
		if (rc == ENVDB_OK && strcmp(cur->status, "failed") == 0) {
			cur->lease_expires_at = 0;
			rc = envdbi_store_env_update(ctx->store, cur);
		}
		if (rc == ENVDB_OK)
			envdbi_store_commit(ctx->store);
		else
			envdbi_store_rollback(ctx->store);
		envdb_environment_free(cur);
	}
	error_restore(&err, NULL);
}

int envdbi_env_rollback_intent(envdb_ctx *ctx, const envdb_environment *env,
			       const char *failpoint, bool *claim_lost)
{
	bool lost = false;
	envdbi_plugin *adapter;
	envdb_db_ref ref;
	int rc = ENVDB_OK;

	/* Claim it first, so a provisioner that is merely slow cannot
	 * activate an environment whose database is being dropped, and so
	 * that two reconciles never both act on it. */
	if (strcmp(env->status, "provisioning") == 0) {
		rc = envdbi_store_env_set_status(ctx->store, env->id, "provisioning", "failed");
		lost = rc == ENVDB_ERR_STATE || rc == ENVDB_ERR_NOT_FOUND; /* taken, or gone */
		if (rc == ENVDB_OK)
			rc = ENVDB_FAILPOINT("reconcile.after_claim");
	} else if (strcmp(env->status, "failed") == 0) {
		rc = claim_failed(ctx, env, &lost);
	}
	if (claim_lost != NULL)
		*claim_lost = lost;
	if (lost)
		return rc;
	if (rc != ENVDB_OK)
		goto release;
	if (env->pending_database_name != NULL) {
		if ((rc = envdbi_adapter_find(&adapter, ctx, env->pending_driver)) != ENVDB_OK)
			goto release;
		memset(&ref, 0, sizeof(ref));
		ref.struct_size = sizeof(ref);
		ref.environment_id = env->id;
		ref.database_name = env->pending_database_name;
		if ((rc = envdbi_adapter_drop(adapter, &ref)) != ENVDB_OK) {
			envdbi_error_prefix("drop database %s: ", env->pending_database_name);
			goto release;
		}
	}
	if ((rc = ENVDB_FAILPOINT(failpoint)) != ENVDB_OK)
		goto release;
	rc = envdbi_store_env_delete(ctx->store, env->id);
	if (rc == ENVDB_ERR_NOT_FOUND)
		rc = ENVDB_OK;
	envdbi_cache_invalidate_env(ctx->cache, env->id);
	if (rc == ENVDB_OK)
		return rc;
release:
	release_claim(ctx, env->id, rc);
	return rc;
}
