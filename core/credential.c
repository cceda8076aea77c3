/*
 * core/credential.c — credentials (DESIGN.md §5): sealing and opening
 * secrets bound to their row, rotation with an overlap window, completion,
 * revocation, listing, and the rewrap of every credential under the
 * current key.
 *
 * Order of effects, chosen so that a crash never leaves a row claiming
 * something the backend does not do:
 *  - rotation: mint at the backend, seal, then one transaction makes the
 *    new credentials active and their predecessors rotating.  A failure
 *    before the commit revokes what was minted (where the adapter can).  A
 *    process killed between mint and commit leaves a credential at the
 *    backend that no row names; it gives no access anyone knows the secret
 *    of, and dropping the database removes it.
 *  - revocation: revoke at the backend first, then mark the row revoked; a
 *    crash in between leaves a "rotating" row that reconcile (or the next
 *    `cred complete`) revokes again, which adapters treat as success.
 */
#include "config.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "duration.h"
#include "failpoint.h"
#include "internal.h"
#include "resolve.h"
#include "schema.h"
#include "store.h"

#define AAD_TAG "envdb-credential-v1"
#define AAD_TAG_V2 "envdb-credential-v2"

/* ------------------------------------------------------------------------ */
/* Lookup helpers                                                            */
/* ------------------------------------------------------------------------ */

int envdbi_adapter_find(envdbi_plugin **out, envdb_ctx *ctx, const char *driver)
{
	envdbi_plugin *p;

	*out = NULL;
	if (driver == NULL || *driver == '\0')
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "driver: no driver given and the manifest names no default");
	p = envdbi_plugins_find(ctx->plugins, driver, ENVDB_PLUGIN_ADAPTER);
	if (p == NULL)
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				    "driver %s: no adapter plugin of that name is loaded", driver);
	*out = p;
	return ENVDB_OK;
}

int envdbi_encryptor_get(envdbi_plugin **out, envdb_ctx *ctx, const char *what)
{
	*out = ctx->encryptor;
	if (ctx->encryptor == NULL)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "%s: the manifest configures no encryptor (defaults.encryptor)",
				    what);
	return ENVDB_OK;
}

/* ------------------------------------------------------------------------ */
/* Sealing                                                                   */
/* ------------------------------------------------------------------------ */

/* The one builder of a credential's associated data, every version, for
 * every caller (seal, open, rewrap, check, the public functions): see
 * envdb_credential_aad_bound() in envdb.h for the bytes.  `db` is needed
 * by version 2 only; version 1 uses `db_id`. */
static int build_aad(unsigned char *aad, size_t cap, size_t *len, int64_t version,
		     const char *credential_id, const char *db_id, const envdb_database *db)
{
	static const char tag1[] = AAD_TAG, tag2[] = AAD_TAG_V2;
	const char *tag = version == 1 ? tag1 : tag2;
	size_t need, tag_len = version == 1 ? sizeof(tag1) : sizeof(tag2), n = 0;

	if (version != 1 && version != 2)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "credential %s: aad: unknown associated data version %lld",
				    credential_id, (long long)version);
	if (!envdbi_uuid_valid(credential_id) || !envdbi_uuid_valid(db_id))
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "credential %s: aad: credential and database ids must be uuids",
				    credential_id);
	if (version == 2 &&
	    (db == NULL || db->driver == NULL || db->database_name == NULL || db->database_url == NULL))
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "credential %s: aad: the database's driver, name and url are "
				    "needed",
				    credential_id);
	need = tag_len + 36 + 1 + 36 + (version == 2 ? 1 + crypto_generichash_BYTES : 0);
	*len = need;
	if (cap < need)
		return envdbi_error(ENVDB_ERR_BUFFER_TOO_SMALL, NULL,
				    "credential %s: aad: %zu bytes needed", credential_id, need);
	memcpy(aad, tag, tag_len); /* with its NUL */
	n = tag_len;
	memcpy(aad + n, credential_id, 36);
	n += 36;
	aad[n++] = 0;
	memcpy(aad + n, db_id, 36);
	n += 36;
	if (version == 2) {
		crypto_generichash_state h;

		/* The strings with their NULs: no two addresses hash alike by
		 * moving a boundary. */
		aad[n++] = 0;
		crypto_generichash_init(&h, NULL, 0, crypto_generichash_BYTES);
		crypto_generichash_update(&h, (const unsigned char *)db->driver,
					  strlen(db->driver) + 1);
		crypto_generichash_update(&h, (const unsigned char *)db->database_name,
					  strlen(db->database_name) + 1);
		crypto_generichash_update(&h, (const unsigned char *)db->database_url,
					  strlen(db->database_url) + 1);
		crypto_generichash_final(&h, aad + n, crypto_generichash_BYTES);
		n += crypto_generichash_BYTES;
	}
	assert(n == need);
	return ENVDB_OK;
}

int envdb_credential_aad(unsigned char *aad, size_t *len, const char *credential_id,
			 const char *environment_database_id)
{
	if (aad == NULL || len == NULL || credential_id == NULL || environment_database_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "credential aad: missing argument");
	return build_aad(aad, ENVDB_CREDENTIAL_AAD_MAX, len, 1, credential_id,
			 environment_database_id, NULL);
}

int envdb_credential_aad_bound(unsigned char *aad, size_t cap, size_t *len, int64_t version,
			       const char *credential_id, const envdb_database *db)
{
	if (aad == NULL || len == NULL || credential_id == NULL || db == NULL || db->id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "credential aad: missing argument");
	if (sodium_init() < 0)
		return envdbi_error(ENVDB_ERR_GENERIC, NULL, "credential aad: libsodium init failed");
	return build_aad(aad, cap, len, version, credential_id, db->id, db);
}

int envdbi_credential_aad_of(unsigned char aad[ENVDB_CREDENTIAL_AAD_BOUND_MAX], size_t *len,
			     const envdb_credential *c, int64_t version, const envdb_database *db)
{
	if (db == NULL || db->id == NULL || c->environment_database_id == NULL ||
	    strcmp(db->id, c->environment_database_id) != 0)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "credential %s: aad: not a credential of the database given",
				    c->id);
	return build_aad(aad, ENVDB_CREDENTIAL_AAD_BOUND_MAX, len, version, c->id, db->id, db);
}

int envdbi_credential_seal(envdb_ctx *ctx, envdb_credential *c, const envdb_database *db,
			   const envdbi_secret *secret)
{
	unsigned char aad[ENVDB_CREDENTIAL_AAD_BOUND_MAX];
	envdbi_plugin *enc;
	char *ct = NULL, *key_id = NULL;
	size_t aad_len;
	int rc;

	if ((rc = envdbi_encryptor_get(&enc, ctx, "seal credential")) != ENVDB_OK)
		return rc;
	rc = envdbi_credential_aad_of(aad, &aad_len, c, ENVDB_CREDENTIAL_AAD_VERSION, db);
	if (rc != ENVDB_OK)
		return rc;
	rc = envdbi_encryptor_encrypt(enc, secret, aad, aad_len, &ct, &key_id);
	if (rc != ENVDB_OK)
		return envdbi_error_prefix("credential %s: encrypt: ", c->id);
	free(c->secret_ciphertext);
	free(c->key_id);
	c->secret_ciphertext = ct;
	c->key_id = key_id;
	c->aad_version = ENVDB_CREDENTIAL_AAD_VERSION;
	return ENVDB_OK;
}

int envdbi_credential_open(envdbi_secret **out, envdb_ctx *ctx, const envdb_credential *c,
			   const envdb_database *db)
{
	unsigned char aad[ENVDB_CREDENTIAL_AAD_BOUND_MAX];
	envdbi_plugin *enc;
	size_t aad_len;
	int rc;

	*out = NULL;
	if ((rc = envdbi_encryptor_get(&enc, ctx, "open credential")) != ENVDB_OK)
		return rc;
	if ((rc = envdbi_credential_aad_of(aad, &aad_len, c, c->aad_version, db)) != ENVDB_OK)
		return rc;
	rc = envdbi_encryptor_decrypt(enc, c->secret_ciphertext, aad, aad_len, out);
	if (rc == ENVDB_ERR_INTEGRITY && c->aad_version >= 2)
		return envdbi_error_prefix("credential %s: decrypt: not sealed for this row and "
					   "database %s (driver, name and url as sealed): ",
					   c->id, db->database_name);
	if (rc != ENVDB_OK)
		return envdbi_error_prefix("credential %s: decrypt: ", c->id);
	return ENVDB_OK;
}

/* ------------------------------------------------------------------------ */
/* Environment lookup shared by the public functions                         */
/* ------------------------------------------------------------------------ */


/* The environment and its database; *db NULL (and 0 returned) when the
 * environment has none and `need_db` is false. */
static int env_and_db(envdb_environment **env, envdb_database **db, envdb_ctx *ctx,
		      const char *org, const char *slug, bool need_db, const char *op)
{
	int rc;

	*env = NULL;
	*db = NULL;
	if ((rc = envdbi_store_env_get_by_slug(ctx->store, env, org, slug)) != ENVDB_OK)
		return envdbi_error_prefix("%s: ", op);
	rc = envdbi_store_db_get_by_env(ctx->store, db, (*env)->id);
	if (rc == ENVDB_ERR_NOT_FOUND && !need_db)
		return ENVDB_OK;
	if (rc == ENVDB_ERR_NOT_FOUND)
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "%s %s/%s: the environment has no database (status %s)", op, org,
				  slug, (*env)->status);
	if (rc != ENVDB_OK) {
		envdb_environment_free(*env);
		*env = NULL;
	}
	return rc;
}

static void db_ref_of(envdb_db_ref *ref, const envdb_database *db)
{
	memset(ref, 0, sizeof(*ref));
	ref->struct_size = sizeof(*ref);
	ref->environment_id = db->environment_id;
	ref->database_name = db->database_name;
	ref->url = db->database_url;
	ref->metadata = db->metadata;
}

static uint32_t auth_code(const char *authorization)
{
	return strcmp(authorization, "read_only") == 0 ? ENVDB_AUTH_READ_ONLY
						       : ENVDB_AUTH_FULL_ACCESS;
}

/* ------------------------------------------------------------------------ */
/* Revocation                                                                */
/* ------------------------------------------------------------------------ */

int envdbi_credential_retire(envdb_ctx *ctx, const envdb_database *db, const envdb_credential *c,
			     const char *from_status, const char *failpoint)
{
	envdbi_plugin *adapter;
	envdb_db_ref ref;
	int rc;

	if ((rc = envdbi_adapter_find(&adapter, ctx, db->driver)) != ENVDB_OK)
		return envdbi_error_prefix("revoke credential %s: ", c->id);
	db_ref_of(&ref, db);
	if ((envdbi_plugin_capabilities(adapter) & ENVDB_ADAPTER_CAP_REVOKE) && c->handle != NULL &&
	    *c->handle != '\0') {
		rc = envdbi_adapter_revoke(adapter, &ref, auth_code(c->authorization), c->handle);
		if (rc != ENVDB_OK)
			return envdbi_error_prefix("revoke credential %s of database %s: ", c->id,
						   db->database_name);
	}
	if (failpoint != NULL && (rc = ENVDB_FAILPOINT(failpoint)) != ENVDB_OK)
		return rc;
	rc = envdbi_store_cred_set_status(ctx->store, c->id, from_status, "revoked");
	if (rc == ENVDB_ERR_STATE || rc == ENVDB_ERR_NOT_FOUND) {
		/* The compare-and-set lost: someone else (a concurrent
		 * completion, rotation or reconcile) moved the row.  If it is
		 * revoked now, or gone with its environment, what was asked is
		 * done: revoking is idempotent, and the backend revocation
		 * above was too. */
		envdb_credential *cur = NULL;
		int st = envdbi_store_cred_get(ctx->store, &cur, c->id);

		if (st == ENVDB_ERR_NOT_FOUND || (st == ENVDB_OK && strcmp(cur->status, "revoked") == 0))
			rc = ENVDB_OK;
		else
			rc = envdbi_error(ENVDB_ERR_STATE, NULL,
					  "credential %s: status is %s, expected %s (changed "
					  "meanwhile)",
					  c->id, st == ENVDB_OK ? cur->status : "unknown",
					  from_status);
		envdb_credential_free(cur);
	}
	if (rc != ENVDB_OK)
		return envdbi_error_prefix("revoke credential %s: ", c->id);
	return ENVDB_OK;
}

/* Revoke every rotating credential of `db` (optionally of one
 * authorization); counts into *n. */
static int retire_rotating(size_t *n, envdb_ctx *ctx, const envdb_database *db,
			   const char *authorization, const char *failpoint)
{
	envdbi_cred_filter f = ENVDBI_CRED_FILTER_INIT;
	envdb_credential **v = NULL;
	size_t nv = 0, i;
	int rc;

	f.environment_database_id = db->id;
	f.authorization = authorization;
	f.status = "rotating";
	if ((rc = envdbi_store_cred_list(ctx->store, &v, &nv, &f)) != ENVDB_OK)
		return rc;
	for (i = 0; i < nv && rc == ENVDB_OK; i++) {
		rc = envdbi_credential_retire(ctx, db, v[i], "rotating", failpoint);
		if (rc == ENVDB_OK && n != NULL)
			(*n)++;
	}
	envdb_credential_list_free(v, nv);
	return rc;
}

int envdb_cred_complete(size_t *revoked, envdb_ctx *ctx, const char *organization_id,
			const char *slug)
{
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	size_t n = 0;
	int rc;

	if (revoked != NULL)
		*revoked = 0;
	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "complete rotation")) != ENVDB_OK)
		return rc;
	rc = env_and_db(&env, &db, ctx, organization_id, slug, true, "complete rotation");
	if (rc != ENVDB_OK)
		return rc;
	rc = retire_rotating(&n, ctx, db, NULL, ENVDBI_FP("complete.after_revoke"));
	if (n > 0)
		envdbi_cache_invalidate_env(ctx->cache, env->id);
	if (rc != ENVDB_OK)
		envdbi_error_prefix("complete rotation %s/%s: ", organization_id, slug);
	if (revoked != NULL)
		*revoked = n;
	envdb_environment_free(env);
	envdb_database_free(db);
	return rc;
}

int envdb_cred_revoke(envdb_ctx *ctx, const char *organization_id, const char *slug,
		      const char *credential_id)
{
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	envdb_credential *c = NULL;
	int rc;

	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "revoke credential")) != ENVDB_OK)
		return rc;
	if (credential_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "revoke credential: missing id");
	rc = env_and_db(&env, &db, ctx, organization_id, slug, true, "revoke credential");
	if (rc != ENVDB_OK)
		return rc;
	rc = envdbi_store_cred_get(ctx->store, &c, credential_id);
	if (rc == ENVDB_OK && strcmp(c->environment_database_id, db->id) != 0)
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				  "revoke credential %s: not a credential of %s/%s", credential_id,
				  organization_id, slug);
	if (rc != ENVDB_OK)
		goto out;
	if (strcmp(c->status, "revoked") == 0)
		goto out; /* already done */
	if (strcmp(c->status, "active") == 0 && strcmp(c->authorization, "full_access") == 0 &&
	    strcmp(env->status, "active") == 0) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "revoke credential %s of %s/%s: it is the active full_access "
				  "credential of an active environment; rotate with overlap 0 instead",
				  credential_id, organization_id, slug);
		goto out;
	}
	rc = envdbi_credential_retire(ctx, db, c, c->status,
				      ENVDBI_FP("complete.after_revoke"));
	envdbi_cache_invalidate_env(ctx->cache, env->id);
out:
	envdb_credential_free(c);
	envdb_environment_free(env);
	envdb_database_free(db);
	return rc;
}

int envdb_cred_list(envdb_credential ***out, size_t *n, envdb_ctx *ctx,
		    const char *organization_id, const char *slug)
{
	envdbi_cred_filter f = ENVDBI_CRED_FILTER_INIT;
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	int rc;

	if (out == NULL || n == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "list credentials: missing argument");
	*out = NULL;
	*n = 0;
	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "list credentials")) != ENVDB_OK)
		return rc;
	rc = env_and_db(&env, &db, ctx, organization_id, slug, false, "list credentials");
	if (rc != ENVDB_OK || db == NULL)
		goto out;
	f.environment_database_id = db->id;
	rc = envdbi_store_cred_list(ctx->store, out, n, &f);
out:
	envdb_environment_free(env);
	envdb_database_free(db);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Rotation                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct rotation {
	envdb_credential *old;   /* the active one being replaced */
	envdb_credential *fresh; /* its successor, sealed */
	envdbi_secret *secret;   /* fresh's secret until sealed */
} rotation;

/* Revoke at the backend what a failed rotation minted. */
static void rotation_undo(envdb_ctx *ctx, envdbi_plugin *adapter, const envdb_database *db,
			  rotation *r, size_t n)
{
	envdb_db_ref ref;
	size_t i;

	if (!(envdbi_plugin_capabilities(adapter) & ENVDB_ADAPTER_CAP_REVOKE))
		return;
	db_ref_of(&ref, db);
	for (i = 0; i < n; i++) {
		if (r[i].fresh == NULL || r[i].fresh->handle == NULL || *r[i].fresh->handle == '\0')
			continue;
		if (envdbi_adapter_revoke(adapter, &ref, auth_code(r[i].fresh->authorization),
					  r[i].fresh->handle) != ENVDB_OK)
			envdbi_log(ENVDB_LOG_WARNING,
				   "rotate %s: credential %s minted by the failed rotation could not "
				   "be revoked at the backend: %s",
				   db->database_name, r[i].fresh->id, envdb_error_last()->message);
	}
}

static int rotation_commit(envdb_ctx *ctx, rotation *r, size_t n, int64_t window_end)
{
	envdbi_store *s = ctx->store;
	size_t i;
	int rc;

	if ((rc = envdbi_store_begin(s)) != ENVDB_OK)
		return rc;
	for (i = 0; i < n; i++) {
		envdb_credential *cur = NULL;

		/* Re-read under the write lock: a concurrent rotation wins. */
		rc = envdbi_store_cred_get(s, &cur, r[i].old->id);
		if (rc == ENVDB_OK && strcmp(cur->status, "active") != 0)
			rc = envdbi_error(ENVDB_ERR_STATE, NULL,
					  "credential %s: became %s during the rotation (a concurrent "
					  "rotation won)",
					  cur->id, cur->status);
		if (rc == ENVDB_OK) {
			free(cur->status);
			cur->status = strdup("rotating");
			if (cur->status == NULL)
				rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "rotate: out of memory");
			else if (cur->expires_at == 0 || cur->expires_at > window_end)
				cur->expires_at = window_end;
		}
		if (rc == ENVDB_OK)
			rc = envdbi_store_cred_update(s, cur);
		envdb_credential_free(cur);
		if (rc == ENVDB_OK)
			rc = envdbi_store_cred_insert(s, r[i].fresh, NULL);
		if (rc != ENVDB_OK)
			goto fail;
	}
	if ((rc = ENVDB_FAILPOINT("rotate.commit")) != ENVDB_OK)
		goto fail;
	return envdbi_store_commit(s);
fail:
	envdbi_store_rollback(s);
	return rc;
}

int envdb_cred_rotate(envdb_ctx *ctx, const char *organization_id, const char *slug,
		      const envdb_rotate_opts *opts)
{
	envdb_rotate_opts o = ENVDB_ROTATE_OPTS_INIT;
	envdbi_cred_filter f = ENVDBI_CRED_FILTER_INIT;
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	envdb_credential **act = NULL;
	envdbi_plugin *adapter = NULL, *enc;
	rotation *r = NULL;
	size_t n_act = 0, i, n_retired = 0;
	envdb_db_ref ref;
	int64_t now, window_end;
	int rc;

	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "rotate")) != ENVDB_OK)
		return rc;
	if (opts != NULL) {
		if (opts->struct_size < sizeof(envdb_rotate_opts))
			return envdbi_error(ENVDB_ERR_MISUSE, NULL, "rotate: bad options struct_size");
		o = *opts;
	}
	if (o.overlap_seconds < 0)
		o.overlap_seconds = ctx->manifest->rotation_overlap_seconds;
	if (o.expires_in_seconds < 0)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "rotate %s/%s: negative credential lifetime", organization_id,
				    slug);
	/* now + the duration must stay a time (no int64 overflow) that the
	 * output can print (gmtime: an ISO 8601 year of four digits). */
	if (o.expires_in_seconds > ENVDBI_DURATION_MAX_S || o.overlap_seconds > ENVDBI_DURATION_MAX_S)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "rotate %s/%s: %s longer than 100 years", organization_id, slug,
				    o.expires_in_seconds > ENVDBI_DURATION_MAX_S ? "credential lifetime"
									    : "overlap");
	if (o.authorization != NULL && strcmp(o.authorization, "full_access") != 0 &&
	    strcmp(o.authorization, "read_only") != 0)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "rotate %s/%s: authorization %s is neither full_access nor "
				    "read_only",
				    organization_id, slug, o.authorization);
	if ((rc = envdbi_encryptor_get(&enc, ctx, "rotate")) != ENVDB_OK)
		return rc;
	rc = env_and_db(&env, &db, ctx, organization_id, slug, true, "rotate");
	if (rc != ENVDB_OK)
		return rc;
	if (strcmp(env->status, "active") != 0) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "rotate %s/%s: environment is %s; only active environments rotate",
				  organization_id, slug, env->status);
		goto out;
	}
	if ((rc = envdbi_adapter_find(&adapter, ctx, db->driver)) != ENVDB_OK) {
		envdbi_error_prefix("rotate %s/%s: ", organization_id, slug);
		goto out;
	}
	if (o.overlap_seconds > 0 &&
	    !(envdbi_plugin_capabilities(adapter) & ENVDB_ADAPTER_CAP_ROTATE_OVERLAP)) {
		rc = envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				  "rotate %s/%s: driver %s cannot keep the previous credential "
				  "working during an overlap; rotate with overlap 0",
				  organization_id, slug, db->driver);
		goto out;
	}
	/* An earlier rotation still in its window ends now. */
	rc = retire_rotating(&n_retired, ctx, db, o.authorization,
			     ENVDBI_FP("complete.after_revoke"));
	if (n_retired > 0)
		envdbi_cache_invalidate_env(ctx->cache, env->id);
	if (rc != ENVDB_OK) {
		envdbi_error_prefix("rotate %s/%s: completing the previous rotation: ",
				    organization_id, slug);
		goto out;
	}

	f.environment_database_id = db->id;
	f.authorization = o.authorization;
	f.status = "active";
	if ((rc = envdbi_store_cred_list(ctx->store, &act, &n_act, &f)) != ENVDB_OK)
		goto out;
	if (n_act == 0) {
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				  "rotate %s/%s: no active %s credential to rotate", organization_id,
				  slug, o.authorization ? o.authorization : "");
		goto out;
	}
	r = calloc(n_act, sizeof(*r));
	if (r == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "rotate: out of memory");
		goto out;
	}
	now = envdbi_now();
	window_end = now + o.overlap_seconds;
	db_ref_of(&ref, db);
	for (i = 0; i < n_act; i++) {
		envdb_mint_request req;
		envdb_credential *c;
		char id[37];
		int64_t granted = 0;

		r[i].old = act[i];
		c = r[i].fresh = calloc(1, sizeof(*c));
		if (c == NULL) {
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "rotate: out of memory");
			goto undo;
		}
		envdbi_uuid_new(id);
		c->id = strdup(id);
		c->environment_database_id = strdup(db->id);
		c->authorization = strdup(act[i]->authorization);
		c->status = strdup("active");
		if (!c->id || !c->environment_database_id || !c->authorization || !c->status) {
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "rotate: out of memory");
			goto undo;
		}
		c->created_at = now;
		c->expires_at = o.expires_in_seconds > 0 ? now + o.expires_in_seconds : 0;
		memset(&req, 0, sizeof(req));
		req.struct_size = sizeof(req);
		req.credential_id = c->id;
		req.authorization = auth_code(c->authorization);
		req.expires_at = c->expires_at;
		req.previous_handle = act[i]->handle;
		req.previous_valid_until = window_end; /* the backend closes the window too */
		req.granted_expires_at = &granted;
		rc = envdbi_adapter_mint(adapter, &ref, &req, &r[i].secret, &c->handle);
		/* The backend's own expiry, when it is the earlier one. */
		if (rc == ENVDB_OK && granted > 0 && (c->expires_at == 0 || granted < c->expires_at))
			c->expires_at = granted;
		if (rc != ENVDB_OK) {
			envdbi_error_prefix("rotate %s/%s: mint %s: ", organization_id, slug,
					    c->authorization);
			goto undo;
		}
	}
	if ((rc = ENVDB_FAILPOINT("rotate.after_mint")) != ENVDB_OK)
		goto undo;
	for (i = 0; i < n_act; i++) {
		if ((rc = ENVDB_FAILPOINT("rotate.encrypt")) != ENVDB_OK)
			goto undo;
		if ((rc = envdbi_credential_seal(ctx, r[i].fresh, db, r[i].secret)) != ENVDB_OK) {
			envdbi_error_prefix("rotate %s/%s: ", organization_id, slug);
			goto undo;
		}
		envdbi_secret_free(r[i].secret);
		r[i].secret = NULL;
	}
	if ((rc = rotation_commit(ctx, r, n_act, window_end)) != ENVDB_OK) {
		envdbi_error_prefix("rotate %s/%s: ", organization_id, slug);
		goto undo;
	}
	envdbi_cache_invalidate_env(ctx->cache, env->id);
	if ((rc = ENVDB_FAILPOINT("rotate.after_commit")) != ENVDB_OK)
		goto out;
	if (o.overlap_seconds == 0) {
		rc = retire_rotating(NULL, ctx, db, o.authorization,
				     ENVDBI_FP("complete.after_revoke"));
		envdbi_cache_invalidate_env(ctx->cache, env->id);
		if (rc != ENVDB_OK)
			envdbi_error_prefix("rotate %s/%s: the new credential is active but the "
					    "previous one is not revoked yet (envdb cred complete): ",
					    organization_id, slug);
	}
	goto out;
undo:
	{
		/* Keep the failing step's error over the compensation's. */
		char *msg = strdup(envdb_error_last()->message);

		rotation_undo(ctx, adapter, db, r, n_act);
		if (msg != NULL) {
			envdbi_error(rc, NULL, "%s", msg);
			free(msg);
		}
	}
out:
	if (r != NULL) {
		for (i = 0; i < n_act; i++) {
			envdbi_secret_free(r[i].secret);
			envdb_credential_free(r[i].fresh);
		}
		free(r);
	}
	envdb_credential_list_free(act, n_act);
	envdb_environment_free(env);
	envdb_database_free(db);
	return rc;
}

/* A fresh credential of one authorization when there is no active one
 * (the read_only one was revoked: rotate has nothing to replace). */
int envdb_cred_mint(char credential_id[37], envdb_ctx *ctx, const char *organization_id,
		    const char *slug, const char *authorization, int64_t expires_in_seconds)
{
	envdbi_cred_filter f = ENVDBI_CRED_FILTER_INIT;
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	envdb_credential **act = NULL;
	envdbi_plugin *adapter = NULL;
	rotation r = {0};
	envdb_mint_request req;
	envdb_db_ref ref;
	size_t n_act = 0;
	char id[37];
	int rc;

	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "mint credential")) != ENVDB_OK)
		return rc;
	if (authorization == NULL || (strcmp(authorization, "full_access") != 0 &&
				      strcmp(authorization, "read_only") != 0) ||
	    expires_in_seconds < 0 || expires_in_seconds > ENVDBI_DURATION_MAX_S)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "mint credential %s/%s: the authorization must be full_access or "
				    "read_only, the lifetime not negative nor longer than 100 years",
				    organization_id, slug);
	if ((rc = env_and_db(&env, &db, ctx, organization_id, slug, true, "mint credential")) != 0)
		return rc;
	if (strcmp(env->status, "active") != 0) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL, "mint credential %s/%s: environment is %s",
				  organization_id, slug, env->status);
		goto out;
	}
	if ((rc = envdbi_adapter_find(&adapter, ctx, db->driver)) != ENVDB_OK)
		goto out;
	if (strcmp(authorization, "read_only") == 0 &&
	    !(envdbi_plugin_capabilities(adapter) & ENVDB_ADAPTER_CAP_READ_ONLY)) {
		rc = envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				  "mint credential %s/%s: driver %s cannot mint read_only credentials",
				  organization_id, slug, db->driver);
		goto out;
	}
	r.fresh = calloc(1, sizeof(*r.fresh));
	envdbi_uuid_new(id);
	if (r.fresh == NULL || (r.fresh->id = strdup(id)) == NULL ||
	    (r.fresh->environment_database_id = strdup(db->id)) == NULL ||
	    (r.fresh->authorization = strdup(authorization)) == NULL ||
	    (r.fresh->status = strdup("active")) == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "mint credential: out of memory");
		goto out;
	}
	r.fresh->created_at = envdbi_now();
	r.fresh->expires_at = expires_in_seconds > 0 ? r.fresh->created_at + expires_in_seconds : 0;
	memset(&req, 0, sizeof(req));
	req.struct_size = sizeof(req);
	req.credential_id = r.fresh->id;
	req.authorization = auth_code(authorization);
	req.expires_at = r.fresh->expires_at;
	req.granted_expires_at = &r.fresh->expires_at; /* the expiry the backend applied */
	db_ref_of(&ref, db);
	if ((rc = envdbi_adapter_mint(adapter, &ref, &req, &r.secret, &r.fresh->handle)) != 0 ||
	    (rc = envdbi_credential_seal(ctx, r.fresh, db, r.secret)) != ENVDB_OK ||
	    (rc = envdbi_store_begin(ctx->store)) != ENVDB_OK)
		goto undo;
	/* Under the write lock: only where none is active (rotate replaces). */
	f.environment_database_id = db->id;
	f.authorization = authorization;
	f.status = "active";
	rc = envdbi_store_cred_list(ctx->store, &act, &n_act, &f);
	if (rc == ENVDB_OK && n_act > 0)
		rc = envdbi_error(ENVDB_ERR_EXISTS, NULL,
				  "%s credential %s is active: rotate it instead", authorization,
				  act[0]->id);
	if (rc == ENVDB_OK)
		rc = envdbi_store_cred_insert(ctx->store, r.fresh, NULL);
	if (rc != ENVDB_OK || (rc = envdbi_store_commit(ctx->store)) != ENVDB_OK) {
		envdbi_store_rollback(ctx->store);
		goto undo;
	}
	envdbi_cache_invalidate_env(ctx->cache, env->id);
	if (credential_id != NULL)
		memcpy(credential_id, id, sizeof(id));
	goto out;
undo:
	{
		char *msg = strdup(envdb_error_last()->message);

		rotation_undo(ctx, adapter, db, &r, 1);
		envdbi_error(rc, NULL, "mint credential %s/%s: %s", organization_id, slug,
			     msg ? msg : "failed");
		free(msg);
	}
out:
	envdbi_secret_free(r.secret);
	envdb_credential_free(r.fresh);
	envdb_credential_list_free(act, n_act);
	envdb_environment_free(env);
	envdb_database_free(db);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Rewrap                                                                    */
/* ------------------------------------------------------------------------ */

/* Re-seal one ciphertext under the current key and associated data: the
 * encryptor's rewrap when it has one and the associated data stays, else
 * decrypt (with the row's version) + encrypt (with the current one) in
 * secure memory. */
static int reseal(envdb_ctx *ctx, envdbi_plugin *enc, const envdb_credential *c,
		  const envdb_database *db, char **ct, char **key_id)
{
	unsigned char aad[ENVDB_CREDENTIAL_AAD_BOUND_MAX], aad_new[ENVDB_CREDENTIAL_AAD_BOUND_MAX];
	envdbi_secret *pt = NULL;
	size_t aad_len, new_len;
	int rc;

	if ((rc = envdbi_credential_aad_of(aad, &aad_len, c, c->aad_version, db)) != ENVDB_OK ||
	    (rc = envdbi_credential_aad_of(aad_new, &new_len, c, ENVDB_CREDENTIAL_AAD_VERSION,
					   db)) != ENVDB_OK)
		return rc;
	if (c->aad_version == ENVDB_CREDENTIAL_AAD_VERSION &&
	    (envdbi_plugin_capabilities(enc) & ENVDB_ENCRYPTOR_CAP_REWRAP))
		return envdbi_encryptor_rewrap(enc, c->secret_ciphertext, aad, aad_len, ct, key_id);
	rc = envdbi_encryptor_decrypt(enc, c->secret_ciphertext, aad, aad_len, &pt);
	if (rc == ENVDB_OK)
		rc = envdbi_encryptor_encrypt(enc, pt, aad_new, new_len, ct, key_id);
	envdbi_secret_free(pt);
	return rc;
}

/* Write the new ciphertext (sealed with the current associated data
 * version) unless the row changed since it was read. */
static int rewrap_store(envdb_ctx *ctx, const envdb_credential *seen, const char *ct,
			const char *key_id, bool *changed)
{
	envdbi_store *s = ctx->store;
	envdb_credential *cur = NULL;
	int rc;

	*changed = false;
	if ((rc = envdbi_store_begin(s)) != ENVDB_OK)
		return rc;
	rc = envdbi_store_cred_get(s, &cur, seen->id);
	if (rc == ENVDB_ERR_NOT_FOUND) {
		*changed = true; /* deleted meanwhile: nothing to do */
		rc = ENVDB_OK;
		goto done;
	}
	if (rc != ENVDB_OK)
		goto done;
	if (strcmp(cur->secret_ciphertext, seen->secret_ciphertext) != 0 ||
	    cur->aad_version != seen->aad_version) {
		*changed = true;
		goto done;
	}
	free(cur->secret_ciphertext);
	free(cur->key_id);
	cur->secret_ciphertext = strdup(ct);
	cur->key_id = strdup(key_id);
	cur->aad_version = ENVDB_CREDENTIAL_AAD_VERSION;
	if (cur->secret_ciphertext == NULL || cur->key_id == NULL)
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "rewrap: out of memory");
	else
		rc = envdbi_store_cred_update(s, cur);
done:
	envdb_credential_free(cur);
	if (rc != ENVDB_OK) {
		envdbi_store_rollback(s);
		return rc;
	}
	return envdbi_store_commit(s);
}

/* True when credential `id` no longer exists (deleted with its
 * environment by another process since the rewrap listed it). */
static bool cred_gone(envdb_ctx *ctx, const char *id)
{
	envdb_credential *cur = NULL;
	int rc = envdbi_store_cred_get(ctx->store, &cur, id);

	envdb_credential_free(cur);
	return rc == ENVDB_ERR_NOT_FOUND;
}

int envdb_key_rewrap(envdb_rewrap_report *report, envdb_ctx *ctx, unsigned flags)
{
	return envdb_key_rewrap_progress(report, ctx, flags, NULL, NULL);
}

int envdb_key_rewrap_progress(envdb_rewrap_report *report, envdb_ctx *ctx, unsigned flags,
			      envdb_rewrap_progress_fn progress, void *progress_ctx)
{
	envdb_credential **v = NULL;
	envdbi_plugin *enc;
	char *current = NULL, *first_msg = NULL;
	const char *first_id = NULL;
	size_t n = 0, i;
	int rc, first_rc = ENVDB_OK;

	if (report == NULL || report->struct_size < sizeof(*report) || ctx == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "rewrap: missing argument");
	report->total = report->already_current = report->rewrapped = report->failed = 0;
	if (ctx->store == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "rewrap: the context has no control plane open");
	if ((rc = envdbi_encryptor_get(&enc, ctx, "rewrap")) != ENVDB_OK)
		return rc;
	if ((rc = envdbi_encryptor_current_key(enc, &current)) != ENVDB_OK)
		return envdbi_error_prefix("rewrap: current key: ");
	if ((rc = envdbi_store_cred_list(ctx->store, &v, &n, NULL)) != ENVDB_OK)
		goto out;
	for (i = 0; i < n; i++) {
		const envdb_credential *c = v[i];
		char *key = NULL, *ct = NULL, *key_id = NULL;
		bool changed = false, is_current = false;

		report->total++;
		/* Where the KMS rotates versions behind one key id, only the
		 * plugin can tell (ABI 1.1 is_current); otherwise the key id does. */
		if (envdbi_plugin_capabilities(enc) & ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS) {
			rc = envdbi_encryptor_is_current(enc, c->secret_ciphertext, &is_current);
		} else {
			rc = envdbi_encryptor_key_of(enc, c->secret_ciphertext, &key);
			is_current = rc == ENVDB_OK && strcmp(key, current) == 0;
		}
		if (rc == ENVDB_OK && is_current &&
		    c->aad_version == ENVDB_CREDENTIAL_AAD_VERSION) {
			report->already_current++;
		} else if (rc == ENVDB_OK && (flags & ENVDB_REWRAP_DRY_RUN)) {
			report->rewrapped++;
		} else if (rc == ENVDB_OK) {
			envdb_database *db = NULL;

			rc = envdbi_store_db_get(ctx->store, &db, c->environment_database_id);
			/* the environment deleted since the list: its rows are gone */
			if (rc == ENVDB_ERR_NOT_FOUND && cred_gone(ctx, c->id)) {
				rc = ENVDB_OK;
				changed = true;
			} else if (rc == ENVDB_OK) {
				rc = reseal(ctx, enc, c, db, &ct, &key_id);
				if (rc == ENVDB_OK)
					rc = ENVDB_FAILPOINT("rewrap.after_seal");
				if (rc == ENVDB_OK)
					rc = rewrap_store(ctx, c, ct, key_id, &changed);
			}
			envdb_database_free(db);
			if (rc == ENVDB_OK && changed)
				report->already_current++; /* a newer write replaced it */
			else if (rc == ENVDB_OK)
				report->rewrapped++;
			if (rc == ENVDB_OK)
				rc = ENVDB_FAILPOINT("rewrap.after_row");
		}
		if (rc != ENVDB_OK) {
			report->failed++;
			if (first_rc == ENVDB_OK) {
				first_rc = rc;
				first_msg = strdup(envdb_error_last()->message);
				first_id = c->id;
			}
			rc = ENVDB_OK;
		}
		free(key);
		free(ct);
		free(key_id);
		if (progress != NULL)
			progress(progress_ctx, i + 1, n);
	}
	rc = first_rc;
	if (rc != ENVDB_OK)
		envdbi_error(rc, NULL, "rewrap: %zu of %zu credentials failed; first: credential %s: %s",
			     report->failed, report->total, first_id,
			     first_msg ? first_msg : "(no detail)");
out:
	free(first_msg);
	envdb_credential_list_free(v, n);
	free(current);
	return rc;
}
