/*
 * plugins/turso/turso.c — the Turso adapter: one Turso database per
 * environment, created through the Turso Platform API and checked over
 * libSQL's Hrana-over-HTTP protocol (/v2/pipeline).
 *
 * This file holds the descriptor, init/fini and the adapter operations;
 * turso_api.c makes the calls, turso_http.c retries them, turso_config.c
 * reads the configuration, turso_names.c derives and checks names.
 *
 * Capabilities, honestly: READ_ONLY (read-only tokens), EXPIRY (Turso
 * enforces the token expiration; mint reports the expiry it applied in
 * granted_expires_at), ROTATE_OVERLAP (a new token leaves the old one valid
 * until it expires), AUTHENTICATES, PROBE, LIST, DEPLOYMENT (the ownership
 * marker is the configured name_prefix, see README.md).  Not REVOKE:
 * Turso cannot invalidate a single token — its only revocation,
 * POST …/auth/rotate, invalidates every token of every database in the
 * group, and this plugin never calls it (see README.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "turso.h"

/* The readiness check after create uses its own short-lived read-only
 * token, wiped once the check is done. */
#define TURSO_CHECK_TOKEN_EXPIRATION "10m"

/* ------------------------------------------------------------------------ */
/* init / fini                                                               */
/* ------------------------------------------------------------------------ */

static void turso_fini(void *instance)
{
	turso *t = instance;
	const envdb_host *h;

	if (t == NULL)
		return;
	h = t->host;
	if (t->curl != NULL) {
		curl_easy_cleanup(t->curl);
		curl_global_cleanup();
	}
	turso_config_free(t);
	h->free(h->ctx, t);
}

static int turso_init(void **instance, const envdb_host *host, const envdb_config *config)
{
	turso *t;
	int rc;

	*instance = NULL;
	if (host == NULL || !ENVDB_STRUCT_HAS(host, envdb_host, random) || host->alloc == NULL ||
	    host->secure_alloc == NULL || host->error == NULL || host->now_ms == NULL)
		return host && host->error ? host->error(host->ctx, ENVDB_ERR_ABI, NULL,
							 "init: the host services table is too old")
					   : ENVDB_ERR_ABI;
	t = host->alloc(host->ctx, sizeof *t);
	if (t == NULL)
		return host->error(host->ctx, ENVDB_ERR_NOMEM, NULL, "init: out of memory");
	memset(t, 0, sizeof *t);
	t->host = host;

	rc = turso_config_parse(t, config);
	if (rc != ENVDB_OK) {
		turso_config_free(t);
		host->free(host->ctx, t);
		return rc;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		turso_config_free(t);
		host->free(host->ctx, t);
		return host->error(host->ctx, ENVDB_ERR_GENERIC, NULL,
				   "init: libcurl initialisation failed");
	}
	t->curl = curl_easy_init();
	if (t->curl == NULL) {
		curl_global_cleanup();
		turso_config_free(t);
		host->free(host->ctx, t);
		return host->error(host->ctx, ENVDB_ERR_NOMEM, NULL,
				   "init: cannot create a libcurl handle");
	}
	if (t->validate_token) {
		/* A cheap check of the API token: a definite refusal stops here,
		 * before any create can half-register an environment.  Anything
		 * else (network, 5xx) is not definite: start, and say so. */
		int64_t tmo = t->request_timeout_ms < 10000 ? t->request_timeout_ms : 10000;
		rc = turso_api_validate(t, host->now_ms(host->ctx) + tmo);
		if (rc == ENVDB_ERR_AUTH) {
			turso_fini(t);
			return rc;
		}
		if (rc != ENVDB_OK && host->log != NULL)
			host->log(host->ctx, ENVDB_LOG_WARNING,
				  "turso: init: the API token could not be validated (%s); "
				  "starting anyway",
				  t->last_msg);
	}
	*instance = t;
	return ENVDB_OK;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* Check a database name handed in by the host (from database_name()). */
static int check_name(turso *t, const char *op, const char *name)
{
	const char *problem = turso_name_problem(name, t->org);

	if (problem != NULL)
		return turso_error(t, ENVDB_ERR_INVALID, NULL, "%s database %s: invalid name: %s",
				   op, name ? name : "(null)", problem);
	return ENVDB_OK;
}

/* Delete a database this call created or adopted, after a failure, when it
 * is still the one this call made (turso_api_delete_owned).  Runs
 * on its own budget (cleanup_timeout): an expired operation deadline must
 * not leave the database behind.  Re-reports the original error, with the
 * outcome of the delete when it failed. */
static int compensate(turso *t, const char *name, const char *db_id, int status)
{
	char msg[sizeof t->last_msg], native[sizeof t->last_native];
	int64_t deadline = t->host->now_ms(t->host->ctx) + t->cleanup_timeout_ms;
	int rc;

	snprintf(msg, sizeof msg, "%s", t->last_msg);
	snprintf(native, sizeof native, "%s", t->last_native);
	/* Only a database of our group (and, once known, of our DbId). */
	rc = turso_api_delete_owned(t, "compensate: delete", name, db_id, deadline);
	if (rc == ENVDB_OK) {
		t->host->log(t->host->ctx, ENVDB_LOG_INFO,
			     "turso: create database %s failed; deleted it again", name);
		return turso_error(t, status, native[0] ? native : NULL,
				   "create database %s: %s (database deleted again)", name, msg);
	}
	return turso_error(t, status, native[0] ? native : NULL,
			   "create database %s: %s; the compensating delete failed too (%s): the "
			   "database may be left behind",
			   name, msg, t->last_msg);
}

/* The URL handed to clients.  libsql:// means TLS to libSQL clients, so it
 * is used only with https; a plain-http data plane is given as http://. */
static char *client_url(turso *t, const char *hostname)
{
	if (t->data_plane_url != NULL)
		return turso_strdup(t, t->data_plane_url);
	if (strcmp(t->data_plane_scheme, "https") == 0)
		return turso_strdup_printf(t, "libsql://%s", hostname);
	return turso_strdup_printf(t, "http://%s", hostname);
}

/* The data-plane base URL of a database: the configured override, else
 * <scheme>://<Hostname> from the metadata, else derived from its URL. */
static char *base_of(turso *t, const envdb_db_ref *db)
{
	char *base = NULL;

	if (t->data_plane_url != NULL)
		return turso_strdup(t, t->data_plane_url);
	if (db->metadata != NULL) {
		json_error_t jerr;
		json_t *m = json_loads(db->metadata, 0, &jerr);
		json_t *hn = m ? json_object_get(m, "Hostname") : NULL;
		if (json_is_string(hn) && json_string_length(hn) > 0)
			base = turso_data_plane_base(t, json_string_value(hn));
		json_decref(m);
		if (base != NULL)
			return base;
	}
	if (db->url != NULL) {
		if (strncmp(db->url, "libsql://", 9) == 0)
			return turso_strdup_printf(t, "%s://%s", t->data_plane_scheme, db->url + 9);
		if (strncmp(db->url, "https://", 8) == 0 || strncmp(db->url, "http://", 7) == 0)
			return turso_strdup(t, db->url);
	}
	return NULL;
}

/* Is the database a migrated one ({"migrated_from": …} metadata)? */
static bool is_migrated(const char *metadata)
{
	return metadata != NULL && strstr(metadata, "\"migrated_from\"") != NULL;
}

/* ENVDB_ADAPTER_CAP_DEPLOYMENT.  The Platform API keeps no free-form
 * metadata on a database, so the ownership marker is the name: a
 * deployment's databases are "<name_prefix><32 hex of the environment id>",
 * name_prefix configured per deployment (and bound to one deployment id by
 * the optional deployment_id key).  A database the migration adopted keeps
 * its legacy name and is not checked against the prefix. */
static int check_deployment(turso *t, const char *op, const char *name, const char *env_id,
			    const char *deployment_id, bool migrated)
{
	char expected[TURSO_PREFIX_MAX + TURSO_UUID_HEX + 1];

	if (deployment_id == NULL)
		return ENVDB_OK;
	if (t->deployment_id != NULL && strcmp(t->deployment_id, deployment_id) != 0)
		return turso_error(t, ENVDB_ERR_PERMISSION, NULL,
				   "%s database %s: this plugin's databases (name prefix %s) belong "
				   "to deployment %s (config deployment_id), not to deployment %s: "
				   "refused",
				   op, name, t->name_prefix, t->deployment_id, deployment_id);
	if (migrated)
		return ENVDB_OK;
	if (!turso_name_is_ours(name, t->name_prefix) || env_id == NULL ||
	    turso_name_from_uuid(expected, sizeof expected, t->name_prefix, env_id) != ENVDB_OK ||
	    strcmp(expected, name) != 0)
		return turso_error(t, ENVDB_ERR_PERMISSION, NULL,
				   "%s database %s: it does not carry this deployment's marker (its "
				   "databases are %s<32 hex of the environment id>): refused, the "
				   "database is kept",
				   op, name, t->name_prefix);
	return ENVDB_OK;
}

/* The deployment id of a request (ABI 1.1 member), or NULL. */
#define DEPLOYMENT_OF(ptr, type) \
	(ENVDB_STRUCT_HAS(ptr, type, deployment_id) ? (ptr)->deployment_id : NULL)

/* ------------------------------------------------------------------------ */
/* Operations                                                                */
/* ------------------------------------------------------------------------ */

static int turso_database_name(void *instance, const char *environment_id, envdb_buffer *name)
{
	turso *t = instance;
	char buf[TURSO_PREFIX_MAX + TURSO_UUID_HEX + 1];
	const char *problem;
	int rc;

	rc = turso_name_from_uuid(buf, sizeof buf, t->name_prefix, environment_id);
	if (rc != ENVDB_OK)
		return turso_error(t, ENVDB_ERR_INVALID, NULL,
				   "database name of environment %s: the environment id is not a "
				   "UUID",
				   environment_id ? environment_id : "(null)");
	problem = turso_name_problem(buf, t->org);
	if (problem != NULL)
		return turso_error(t, ENVDB_ERR_INVALID, NULL,
				   "database name of environment %s: %s: %s", environment_id, buf,
				   problem);
	rc = envdb_buffer_set_str(name, buf);
	if (rc != ENVDB_OK)
		return turso_error(t, rc, NULL, "database name of environment %s: buffer too small",
				   environment_id);
	return ENVDB_OK;
}

static int turso_create(void *instance, const envdb_create_request *req, envdb_buffer *url,
			envdb_buffer *metadata)
{
	turso *t = instance;
	const envdb_host *h = t->host;
	char expected[TURSO_PREFIX_MAX + TURSO_UUID_HEX + 1];
	const char *name;
	turso_db db = { 0 };
	bool adopted = false, maybe_created = false;
	char *jwt = NULL, *base = NULL, *u = NULL, *meta = NULL;
	size_t jwt_len = 0;
	json_t *mj = NULL;
	int64_t deadline = turso_deadline(t), ready_deadline;
	int rc, rc_url, rc_meta;

	if (req == NULL || req->database_name == NULL || req->environment_id == NULL)
		return turso_error(t, ENVDB_ERR_MISUSE, NULL, "create database: no name given");
	name = req->database_name;
	/* Validate before any request. */
	if ((rc = check_name(t, "create", name)) != ENVDB_OK)
		return rc;
	if (turso_name_from_uuid(expected, sizeof expected, t->name_prefix, req->environment_id) !=
		    ENVDB_OK ||
	    strcmp(expected, name) != 0)
		return turso_error(t, ENVDB_ERR_INVALID, NULL,
				   "create database %s: not the name derived from environment %s",
				   name, req->environment_id);
	if ((rc = check_deployment(t, "create", name, req->environment_id,
				   DEPLOYMENT_OF(req, envdb_create_request), false)) != ENVDB_OK)
		return rc;

	rc = turso_api_create(t, name, req->storage_limit_mb, deadline, &db, &adopted,
			      &maybe_created);
	if (rc != ENVDB_OK)
		goto fail;

	/* A token of our own to see the database answer. */
	rc = turso_api_mint(t, name, TURSO_CHECK_TOKEN_EXPIRATION, true, TURSO_RETRY_404,
			    deadline, &jwt, &jwt_len);
	if (rc != ENVDB_OK)
		goto fail;
	base = turso_data_plane_base(t, db.hostname);
	if (base == NULL) {
		rc = turso_error(t, ENVDB_ERR_NOMEM, NULL, "create database %s: out of memory",
				 name);
		goto fail;
	}
	ready_deadline = h->now_ms(h->ctx) + t->ready_timeout_ms;
	if (ready_deadline > deadline)
		ready_deadline = deadline;
	rc = turso_hrana_select1(t, base, name, jwt, jwt_len, true, ready_deadline);
	h->secure_free(h->ctx, jwt);
	jwt = NULL;
	if (rc != ENVDB_OK)
		goto fail;

	u = client_url(t, db.hostname);
	mj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "DbId", db.db_id, "Hostname",
		       db.hostname, "Name", db.name, "group", db.group ? db.group : t->group,
		       "organization", t->org, "adopted", adopted);
	meta = mj ? json_dumps(mj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (u == NULL || meta == NULL) {
		rc = turso_error(t, ENVDB_ERR_NOMEM, NULL, "create database %s: out of memory",
				 name);
		goto fail;
	}
	rc_url = envdb_buffer_set_str(url, u);
	rc_meta = envdb_buffer_set_str(metadata, meta);
	if (rc_url != ENVDB_OK || rc_meta != ENVDB_OK) {
		/* Undo, so that the host's retry with larger buffers starts clean. */
		rc = turso_error(t, ENVDB_ERR_BUFFER_TOO_SMALL, NULL,
				 "create database %s: output buffer too small (url %zu, metadata "
				 "%zu bytes)",
				 name, url ? url->len : 0, metadata ? metadata->len : 0);
		maybe_created = true;
		goto fail;
	}
	h->log(h->ctx, ENVDB_LOG_INFO, "turso: %s database %s (DbId %s) in group %s",
	       adopted ? "adopted" : "created", name, db.db_id, t->group);
	rc = ENVDB_OK;
	goto out;

fail:
	if (maybe_created) {
		int status = rc;
		rc = compensate(t, name, db.db_id, status);
	}
out:
	if (jwt != NULL)
		h->secure_free(h->ctx, jwt);
	turso_db_clear(t, &db);
	if (base)
		h->free(h->ctx, base);
	if (u)
		h->free(h->ctx, u);
	free(meta);
	json_decref(mj);
	return rc;
}

static int turso_drop(void *instance, const envdb_db_ref *db)
{
	turso *t = instance;
	char *db_id = NULL;
	int rc;

	if (db == NULL)
		return turso_error(t, ENVDB_ERR_MISUSE, NULL, "drop database: no database given");
	if ((rc = check_name(t, "drop", db->database_name)) != ENVDB_OK)
		return rc;
	if ((rc = check_deployment(t, "drop", db->database_name, db->environment_id,
				   DEPLOYMENT_OF(db, envdb_db_ref), is_migrated(db->metadata))) !=
	    ENVDB_OK)
		return rc;
	/* Never by name alone: the database must be in our group and, when
	 * create told us its DbId, still be that one. */
	if (db->metadata != NULL) {
		json_error_t jerr;
		json_t *m = json_loads(db->metadata, 0, &jerr);
		json_t *id = m ? json_object_get(m, "DbId") : NULL;
		if (json_is_string(id))
			db_id = turso_strdup(t, json_string_value(id));
		json_decref(m);
	}
	rc = turso_api_delete_owned(t, "drop", db->database_name, db_id, turso_deadline(t));
	if (db_id != NULL)
		t->host->free(t->host->ctx, db_id);
	return rc;
}

static int turso_mint(void *instance, const envdb_db_ref *db, const envdb_mint_request *req,
		      envdb_buffer *secret, envdb_buffer *handle)
{
	turso *t = instance;
	const envdb_host *h = t->host;
	char exp[64], hbuf[200];
	const char *name;
	char *jwt = NULL;
	size_t jwt_len = 0;
	bool ro;
	int64_t now, granted;
	unsigned char nonce[8];
	int rc, rc_h;

	if (db == NULL || req == NULL)
		return turso_error(t, ENVDB_ERR_MISUSE, NULL, "mint token: no database given");
	name = db->database_name;
	if ((rc = check_name(t, "mint token for", name)) != ENVDB_OK)
		return rc;
	if (req->authorization == ENVDB_AUTH_FULL_ACCESS)
		ro = false;
	else if (req->authorization == ENVDB_AUTH_READ_ONLY)
		ro = true;
	else
		return turso_error(t, ENVDB_ERR_INVALID, NULL,
				   "mint token for database %s: unknown authorization %u", name,
				   (unsigned)req->authorization);
	if ((rc = check_deployment(t, "mint token for", name, db->environment_id,
				   DEPLOYMENT_OF(db, envdb_db_ref), is_migrated(db->metadata))) !=
	    ENVDB_OK)
		return rc;
	now = h->wall_s(h->ctx);
	if (req->expires_at > 0) {
		int64_t left = req->expires_at - now;
		if (left <= 0)
			return turso_error(t, ENVDB_ERR_INVALID, NULL,
					   "mint token for database %s: expires_at %lld is in the "
					   "past",
					   name, (long long)req->expires_at);
		turso_format_expiration(exp, sizeof exp, left);
		granted = req->expires_at;
	} else {
		/* The configured lifetime: Turso enforces it, so say so. */
		int64_t secs = turso_expiration_seconds(t->token_expiration);
		snprintf(exp, sizeof exp, "%s", t->token_expiration);
		granted = secs > 0 ? now + secs : 0;
	}

	rc = turso_api_mint(t, name, exp, ro, 0, turso_deadline(t), &jwt, &jwt_len);
	if (rc != ENVDB_OK)
		return rc;
	if (ENVDB_STRUCT_HAS(req, envdb_mint_request, granted_expires_at) &&
	    req->granted_expires_at != NULL)
		*req->granted_expires_at = granted;
	/* Unique even for two mints within one second. */
	memset(nonce, 0, sizeof nonce);
	if (h->random == NULL || h->random(h->ctx, nonce, sizeof nonce) != ENVDB_OK) {
		int64_t ms = h->now_ms(h->ctx);
		memcpy(nonce, &ms, sizeof nonce < sizeof ms ? sizeof nonce : sizeof ms);
	}
	snprintf(hbuf, sizeof hbuf,
		 "%s;expiration=%s;minted=%lld;nonce=%02x%02x%02x%02x%02x%02x%02x%02x",
		 ro ? "read-only" : "full-access", exp, (long long)now, nonce[0], nonce[1],
		 nonce[2], nonce[3], nonce[4], nonce[5], nonce[6], nonce[7]);
	rc = envdb_buffer_set(secret, jwt, jwt_len);
	rc_h = envdb_buffer_set_str(handle, hbuf);
	h->secure_free(h->ctx, jwt);
	if (rc != ENVDB_OK || rc_h != ENVDB_OK) {
		/* A Turso token cannot be revoked: the discarded one stays valid
		 * until its expiration, but nobody holds it (it was wiped). */
		if (secret && secret->data && secret->cap > 0)
			memset(secret->data, 0, secret->cap);
		return turso_error(t, ENVDB_ERR_BUFFER_TOO_SMALL, NULL,
				   "mint token for database %s: output buffer too small", name);
	}
	return ENVDB_OK;
}

static int turso_probe(void *instance, const envdb_db_ref *db, const char *secret,
		       size_t secret_len)
{
	turso *t = instance;
	char *base;
	int rc;

	if (db == NULL || secret == NULL || secret_len == 0)
		return turso_error(t, ENVDB_ERR_MISUSE, NULL, "probe database: no database or token");
	if ((rc = check_name(t, "probe", db->database_name)) != ENVDB_OK)
		return rc;
	base = base_of(t, db);
	if (base == NULL)
		return turso_error(t, ENVDB_ERR_INVALID, NULL,
				   "probe database %s: neither metadata Hostname nor a libsql/http(s) "
				   "URL to reach it",
				   db->database_name);
	rc = turso_hrana_select1(t, base, db->database_name, secret, secret_len, false,
				 turso_deadline(t));
	t->host->free(t->host->ctx, base);
	return rc;
}

static int turso_list(void *instance, envdb_adapter_list_cb cb, void *cb_ctx)
{
	turso *t = instance;

	if (cb == NULL)
		return turso_error(t, ENVDB_ERR_MISUSE, NULL, "list databases: no callback");
	return turso_api_list(t, turso_deadline(t), cb, cb_ctx);
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                                */
/* ------------------------------------------------------------------------ */

static const envdb_adapter_ops turso_ops = {
	.struct_size = sizeof(envdb_adapter_ops),
	.capabilities = ENVDB_ADAPTER_CAP_READ_ONLY | ENVDB_ADAPTER_CAP_ROTATE_OVERLAP |
			ENVDB_ADAPTER_CAP_EXPIRY | ENVDB_ADAPTER_CAP_PROBE |
			ENVDB_ADAPTER_CAP_LIST | ENVDB_ADAPTER_CAP_AUTHENTICATES |
			ENVDB_ADAPTER_CAP_DEPLOYMENT,
	.database_name = turso_database_name,
	.create = turso_create,
	.drop = turso_drop,
	.mint = turso_mint,
	.revoke = NULL, /* Turso cannot revoke one token: no ENVDB_ADAPTER_CAP_REVOKE */
	.probe = turso_probe,
	.list = turso_list,
};

/* The URLs this adapter's databases have (the v4 -> v5 migration picks the
 * adapter of a legacy URL by them). */
static const char *const turso_url_schemes[] = {"libsql", "https", NULL};

static const envdb_plugin_descriptor turso_descriptor = {
	.struct_size = sizeof(envdb_plugin_descriptor),
	.abi_major = ENVDB_ABI_MAJOR,
	.abi_minor = 1, /* granted_expires_at, deployment_id */
	.name = TURSO_PLUGIN_NAME,
	.version = TURSO_PLUGIN_VERSION,
	.description = "one Turso database per environment (Platform API + libSQL over HTTP)",
	.kind = ENVDB_PLUGIN_ADAPTER,
	.flags = ENVDB_PLUGIN_REMOTE,
	.config_keys = turso_config_keys,
	.init = turso_init,
	.fini = turso_fini,
	.ops = &turso_ops,
	.url_schemes = turso_url_schemes,
};

ENVDB_PLUGIN_DEFINE(turso_descriptor)
