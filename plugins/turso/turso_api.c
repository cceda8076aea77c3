/*
 * plugins/turso/turso_api.c — the calls the Turso adapter makes: the
 * Platform API (create with adoption, retrieve, delete, mint a database
 * token, list a group's databases) and one Hrana-over-HTTP statement
 * (SELECT 1 on /v2/pipeline) used for readiness and probe.
 *
 * The contract (Turso's docs and OpenAPI, the Hrana spec, and what the live
 * service was observed to do) is summarised in README.md.  The points that
 * shape this file:
 *  - a duplicate name comes back as 409 (documented), 400 "database with
 *    same name already exists" (live API since mid-2026) or 422; the body
 *    is matched as well as the status, and a GET decides adoption;
 *  - a create that failed ambiguously (network error, 408, 5xx) is never
 *    re-POSTed blindly: a GET first tells whether it landed;
 *  - tokens are minted with no request body;
 *  - a new database answers 404 on /v2/pipeline for seconds: polled.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "turso.h"

#define TURSO_LIST_MAX_PAGES 10000
#define TURSO_JWT_MAX (16 * 1024)

void turso_db_clear(turso *t, turso_db *db)
{
	char **f[] = { &db->name, &db->db_id, &db->hostname, &db->group };
	size_t i;

	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (*f[i] != NULL)
			t->host->free(t->host->ctx, *f[i]);
		*f[i] = NULL;
	}
}

/* Member by exact key, else case-insensitively (the Go client decodes
 * case-insensitively, and the API capitalizes DbId/Hostname/Name). */
static json_t *jget(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	const char *k;
	json_t *val;

	if (v != NULL)
		return v;
	json_object_foreach(obj, k, val)
	{
		if (strcasecmp(k, key) == 0)
			return val;
	}
	return NULL;
}

static const char *jstr(json_t *obj, const char *key)
{
	json_t *v = jget(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Fill *out from a Database object.  Returns ENVDB_OK, or
 * ENVDB_ERR_GENERIC (not reported) when Name/DbId/Hostname are missing. */
static int db_from_json(turso *t, json_t *obj, turso_db *out)
{
	const char *name = jstr(obj, "Name"), *id = jstr(obj, "DbId"),
		   *host = jstr(obj, "Hostname"), *group = jstr(obj, "group");

	memset(out, 0, sizeof *out);
	if (!json_is_object(obj) || name == NULL || id == NULL || host == NULL || host[0] == '\0')
		return ENVDB_ERR_GENERIC;
	/* A hostname goes into URLs: host[:port] characters only. */
	for (const char *p = host; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == ':'))
			return ENVDB_ERR_GENERIC;
	out->name = turso_strdup(t, name);
	out->db_id = turso_strdup(t, id);
	out->hostname = turso_strdup(t, host);
	out->group = group ? turso_strdup(t, group) : NULL;
	if (out->name == NULL || out->db_id == NULL || out->hostname == NULL ||
	    (group != NULL && out->group == NULL)) {
		turso_db_clear(t, out);
		return ENVDB_ERR_NOMEM;
	}
	return ENVDB_OK;
}

static int parse_database_answer(turso *t, const char *what, const turso_resp *resp,
				 turso_db *out)
{
	json_error_t jerr;
	json_t *root = json_loadb(resp->body ? resp->body : "", resp->len, 0, &jerr);
	int rc;

	if (root == NULL)
		return turso_error(t, ENVDB_ERR_GENERIC, "HTTP 200",
				   "%s: HTTP %ld: the answer is not JSON (%s)", what, resp->status,
				   jerr.text);
	rc = db_from_json(t, jget(root, "database"), out);
	json_decref(root);
	if (rc == ENVDB_ERR_NOMEM)
		return turso_error(t, rc, NULL, "%s: out of memory", what);
	if (rc != ENVDB_OK)
		return turso_error(t, ENVDB_ERR_GENERIC, "HTTP 200",
				   "%s: HTTP %ld: the answer lacks database.Name, DbId or a valid "
				   "Hostname",
				   what, resp->status);
	return ENVDB_OK;
}

static bool contains_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; hay && *hay; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return true;
	return false;
}

/* The duplicate-name answers: 409 (documented), 422 ("not available"),
 * 400 "database with same name already exists" (live); any status whose
 * error text says "already exists". */
static bool is_duplicate(turso *t, const turso_resp *resp)
{
	char text[512];

	if (resp->status == 409 || resp->status == 422)
		return true;
	if (resp->status < 400 || resp->status >= 500)
		return false;
	turso_error_text(t, resp, text, sizeof text);
	return contains_ci(text, "already exists");
}

static char *db_url(turso *t, const char *name, const char *suffix)
{
	char *org = turso_urlencode(t, t->org), *db = turso_urlencode(t, name), *u = NULL;

	if (org != NULL && db != NULL)
		u = turso_strdup_printf(t, "%s/v1/organizations/%s/databases/%s%s", t->api_url,
					org, db, suffix ? suffix : "");
	if (org)
		t->host->free(t->host->ctx, org);
	if (db)
		t->host->free(t->host->ctx, db);
	return u;
}

int turso_api_get(turso *t, const char *name, int64_t deadline, turso_db *out, bool report_404)
{
	char what[160];
	char *url = db_url(t, name, NULL);
	turso_req req = { 0 };
	turso_resp resp;
	int rc;

	memset(out, 0, sizeof *out);
	snprintf(what, sizeof what, "retrieve database %s", name);
	if (url == NULL)
		return turso_error(t, ENVDB_ERR_NOMEM, NULL, "%s: out of memory", what);
	req.what = what;
	req.method = "GET";
	req.url = url;
	req.bearer = t->api_token;
	req.bearer_len = t->api_token_len;
	req.deadline_ms = deadline;
	rc = turso_http(t, &req, &resp);
	if (rc != ENVDB_OK)
		goto out;
	if (resp.status == 200)
		rc = parse_database_answer(t, what, &resp, out);
	else if (resp.status == 404 && !report_404)
		rc = ENVDB_ERR_NOT_FOUND;
	else
		rc = turso_fail(t, 0, what, &resp);
out:
	turso_resp_free(t, &resp);
	t->host->free(t->host->ctx, url);
	return rc;
}

/* The database of that name exists (GET 200) after an ambiguous attempt of
 * this call.  It is that attempt's work only when it is in our group (the
 * POST named our group): then adopt it.  In another group it is someone
 * else's: refuse, and it is not ours to delete (*maybe_created = false). */
static int adopt(turso *t, const char *name, turso_db *found, turso_db *out, bool *maybe_created)
{
	if (found->group == NULL || strcmp(found->group, t->group) != 0) {
		int rc = turso_error(t, ENVDB_ERR_EXISTS, NULL,
				     "create database %s in group %s: a database of that name "
				     "already exists in group %s; not adopting it (and not "
				     "deleting it: it is not this environment's)",
				     name, t->group, found->group ? found->group : "(unknown)");
		*maybe_created = false;
		turso_db_clear(t, found);
		return rc;
	}
	*out = *found;
	memset(found, 0, sizeof *found);
	return ENVDB_OK;
}

/* A duplicate answer, or a GET that found the name, with no ambiguous
 * attempt before it in this call: the database is not this call's work. */
static int exists_already(turso *t, const char *what, const turso_resp *resp, const char *name)
{
	char text[300];

	if (resp == NULL)
		return turso_error(t, ENVDB_ERR_EXISTS, NULL,
				   "%s: database %s appeared while this call was retrying (not "
				   "created by it): not adopting it",
				   what, name);
	turso_error_text(t, resp, text, sizeof text);
	return turso_error(t, ENVDB_ERR_EXISTS, NULL,
			   "%s: HTTP %ld: %s (the database exists already; not adopting it)", what,
			   resp->status, text);
}

int turso_api_create(turso *t, const char *name, int64_t storage_limit_mb, int64_t deadline,
		     turso_db *out, bool *adopted, bool *maybe_created)
{
	const envdb_host *h = t->host;
	char what[200];
	char *url = NULL, *body = NULL, *org = NULL;
	json_t *jb = NULL;
	turso_req req = { 0 };
	turso_resp resp = { 0 };
	turso_db found = { 0 };
	int rc = ENVDB_OK, attempt;
	/* An earlier attempt of this call may have landed: only then is an
	 * existing database of our name (in our group) this call's own. */
	bool ambiguous_seen = false;

	memset(out, 0, sizeof *out);
	*adopted = false;
	*maybe_created = false;
	snprintf(what, sizeof what, "create database %s in group %s", name, t->group);

	org = turso_urlencode(t, t->org);
	if (org != NULL)
		url = turso_strdup_printf(t, "%s/v1/organizations/%s/databases", t->api_url, org);
	jb = json_pack("{s:s, s:s}", "name", name, "group", t->group);
	if (jb != NULL && t->apply_storage_limit && storage_limit_mb > 0) {
		char lim[32];
		snprintf(lim, sizeof lim, "%lldmb", (long long)storage_limit_mb);
		json_object_set_new(jb, "size_limit", json_string(lim));
	}
	body = jb ? json_dumps(jb, JSON_COMPACT) : NULL;
	if (url == NULL || body == NULL) {
		rc = turso_error(t, ENVDB_ERR_NOMEM, NULL, "%s: out of memory", what);
		goto out;
	}

	req.what = what;
	req.method = "POST";
	req.url = url;
	req.body = body;
	req.bearer = t->api_token;
	req.bearer_len = t->api_token_len;
	req.retry = TURSO_RETRY_NONE; /* our own loop: GET before re-POST */
	req.deadline_ms = deadline;

	for (attempt = 1;; attempt++) {
		bool ambiguous = false, retryable = false;
		int64_t delay;

		turso_resp_free(t, &resp);
		rc = turso_http(t, &req, &resp);
		if (rc == ENVDB_ERR_TIMEOUT) {
			/* The request may have landed before the deadline. */
			*maybe_created = true;
			goto out;
		}
		if (rc == ENVDB_ERR_UNAVAILABLE) {
			/* A network failure: the request may have landed. */
			ambiguous = retryable = true;
		} else if (rc != ENVDB_OK) {
			goto out;
		} else if (resp.status == 200 || resp.status == 201) {
			*maybe_created = true;
			rc = parse_database_answer(t, what, &resp, out);
			goto out;
		} else if (is_duplicate(t, &resp)) {
			if (!ambiguous_seen) {
				/* adapter.h: an existing database is EXISTS. */
				rc = exists_already(t, what, &resp, name);
				goto out;
			}
			rc = turso_api_get(t, name, deadline, &found, false);
			if (rc == ENVDB_ERR_NOT_FOUND) {
				/* "not available" but not ours to see: a conflict. */
				char text[300];
				turso_error_text(t, &resp, text, sizeof text);
				*maybe_created = false;
				rc = turso_error(t, ENVDB_ERR_EXISTS, NULL,
						 "%s: HTTP %ld: %s (and the name is not visible "
						 "in the organization)",
						 what, resp.status, text);
				goto out;
			}
			if (rc != ENVDB_OK)
				goto out;
			rc = adopt(t, name, &found, out, maybe_created);
			if (rc == ENVDB_OK) {
				*adopted = true;
				h->log(h->ctx, ENVDB_LOG_INFO,
				       "turso: %s: HTTP %ld duplicate name after an ambiguous "
				       "attempt; adopted the database that attempt made",
				       what, resp.status);
			}
			goto out;
		} else if (resp.status == 408 || resp.status == 429 ||
			   (resp.status >= 500 && resp.status <= 599)) {
			retryable = true;
			ambiguous = resp.status != 429;
		} else if (resp.status == 400 && contains_ci(resp.body, "group not found")) {
			rc = turso_fail(t, ENVDB_ERR_CONFIG, what, &resp);
			goto out;
		} else if (resp.status == 401 || resp.status == 403) {
			/* A definite refusal: this attempt created nothing (and,
			 * without an ambiguous one before it, neither did the
			 * call).  The host can forget the intent at once. */
			rc = turso_fail(t, ENVDB_ERR_AUTH, what, &resp);
			goto out;
		} else {
			rc = turso_fail(t, 0, what, &resp);
			goto out;
		}
		if (ambiguous)
			*maybe_created = ambiguous_seen = true;

		if (!retryable || attempt >= t->max_attempts) {
			if (rc == ENVDB_OK) {
				resp.attempts = attempt;
				rc = turso_fail(t, 0, what, &resp);
			}
			goto out;
		}
		delay = turso_backoff_ms(t, attempt, resp.retry_after_ms, 0);
		if (turso_sleep_until(t, delay, deadline) != ENVDB_OK) {
			char text[300];
			if (rc == ENVDB_OK) {
				turso_error_text(t, &resp, text, sizeof text);
				rc = turso_error(t, ENVDB_ERR_TIMEOUT, NULL,
						 "%s: deadline reached after %d attempt%s (last: "
						 "HTTP %ld: %s; next attempt not before %lldms)",
						 what, attempt, attempt == 1 ? "" : "s", resp.status,
						 text, (long long)delay);
			} else {
				rc = turso_error(t, ENVDB_ERR_TIMEOUT, "timeout",
						 "%s: deadline reached after %d attempts (last: "
						 "network error)",
						 what, attempt);
			}
			goto out;
		}
		h->log(h->ctx, ENVDB_LOG_INFO, "turso: %s: attempt %d failed (HTTP %ld); retrying",
		       what, attempt, resp.status);
		/* GET before re-POST: did an earlier attempt land? */
		rc = turso_api_get(t, name, deadline, &found, false);
		if (rc == ENVDB_OK) {
			if (!ambiguous_seen) {
				/* Only refusals (429) so far: someone else made it. */
				turso_db_clear(t, &found);
				rc = exists_already(t, what, NULL, name);
				goto out;
			}
			rc = adopt(t, name, &found, out, maybe_created);
			if (rc == ENVDB_OK)
				*adopted = true;
			goto out;
		}
		if (rc != ENVDB_ERR_NOT_FOUND)
			goto out;
		rc = ENVDB_OK;
	}
out:
	turso_resp_free(t, &resp);
	turso_db_clear(t, &found);
	if (rc != ENVDB_OK)
		turso_db_clear(t, out);
	if (url)
		h->free(h->ctx, url);
	if (org)
		h->free(h->ctx, org);
	free(body);
	json_decref(jb);
	return rc;
}

int turso_api_delete_owned(turso *t, const char *op, const char *name, const char *db_id,
			   int64_t deadline)
{
	turso_db found = { 0 };
	int rc;

	rc = turso_api_get(t, name, deadline, &found, false);
	if (rc == ENVDB_ERR_NOT_FOUND)
		return ENVDB_OK; /* already gone */
	if (rc != ENVDB_OK)
		return turso_error(t, rc, t->last_native[0] ? t->last_native : NULL,
				   "%s database %s: cannot tell whether it is this environment's, "
				   "so it is not deleted: %s",
				   op, name, t->last_msg);
	if (found.group == NULL || strcmp(found.group, t->group) != 0) {
		rc = turso_error(t, ENVDB_ERR_PERMISSION, NULL,
				 "%s database %s: it is in group %s, not in this environment's group "
				 "%s: not deleting a database this environment did not create "
				 "(kept)",
				 op, name, found.group ? found.group : "(unknown)", t->group);
	} else if (db_id != NULL && db_id[0] != '\0' && strcmp(found.db_id, db_id) != 0) {
		rc = turso_error(t, ENVDB_ERR_STATE, NULL,
				 "%s database %s: its DbId is %s, not %s (the one this environment "
				 "created): not deleting it (kept)",
				 op, name, found.db_id, db_id);
	} else {
		rc = turso_api_delete(t, name, deadline);
	}
	turso_db_clear(t, &found);
	return rc;
}

int turso_api_validate(turso *t, int64_t deadline)
{
	char *url = turso_strdup_printf(t, "%s/v1/auth/validate", t->api_url);
	turso_req req = { 0 };
	turso_resp resp;
	int rc;

	if (url == NULL)
		return turso_error(t, ENVDB_ERR_NOMEM, NULL, "init: validate api token: out of memory");
	req.what = "init: validate the Platform API token (GET /v1/auth/validate)";
	req.method = "GET";
	req.url = url;
	req.bearer = t->api_token;
	req.bearer_len = t->api_token_len;
	req.retry = TURSO_RETRY_NONE;
	req.deadline_ms = deadline;
	rc = turso_http(t, &req, &resp);
	if (rc == ENVDB_OK && resp.status != 200)
		rc = turso_fail(t, resp.status == 401 || resp.status == 403 ? ENVDB_ERR_AUTH : 0,
				req.what, &resp);
	turso_resp_free(t, &resp);
	t->host->free(t->host->ctx, url);
	return rc;
}

int turso_api_delete(turso *t, const char *name, int64_t deadline)
{
	char what[160];
	char *url = db_url(t, name, NULL);
	turso_req req = { 0 };
	turso_resp resp;
	int rc;

	snprintf(what, sizeof what, "delete database %s", name);
	if (url == NULL)
		return turso_error(t, ENVDB_ERR_NOMEM, NULL, "%s: out of memory", what);
	req.what = what;
	req.method = "DELETE";
	req.url = url;
	req.bearer = t->api_token;
	req.bearer_len = t->api_token_len;
	req.deadline_ms = deadline;
	rc = turso_http(t, &req, &resp);
	if (rc == ENVDB_OK && resp.status != 200 && resp.status != 204 && resp.status != 404)
		rc = turso_fail(t, 0, what, &resp);
	turso_resp_free(t, &resp);
	t->host->free(t->host->ctx, url);
	return rc;
}

/* Find the string value of the top-level "jwt" member without copying the
 * body into ordinary memory (a JSON library would).  JWTs are base64url
 * segments and dots: no escapes. */
static int find_jwt(const char *body, size_t len, const char **start, size_t *n)
{
	const char *p = body, *end = body + len;
	static const char key[] = "\"jwt\"";

	while (p < end && (p = strstr(p, key)) != NULL) {
		const char *q = p + sizeof(key) - 1, *s;
		while (q < end && isspace((unsigned char)*q))
			q++;
		if (q >= end || *q != ':') {
			p += 1;
			continue;
		}
		q++;
		while (q < end && isspace((unsigned char)*q))
			q++;
		if (q >= end || *q != '"')
			return -1;
		s = ++q;
		while (q < end && *q != '"') {
			unsigned char c = (unsigned char)*q;
			if (!(isalnum(c) || c == '-' || c == '_' || c == '.' || c == '=' || c == '+' ||
			      c == '/'))
				return -1;
			q++;
		}
		if (q >= end || q == s || (size_t)(q - s) > TURSO_JWT_MAX)
			return -1;
		*start = s;
		*n = (size_t)(q - s);
		return 0;
	}
	return -1;
}

int turso_api_mint(turso *t, const char *name, const char *expiration, bool read_only,
		   unsigned retry, int64_t deadline, char **secret, size_t *secret_len)
{
	const envdb_host *h = t->host;
	char what[200], suffix[128];
	char *url = NULL, *exp = NULL;
	turso_req req = { 0 };
	turso_resp resp = { 0 };
	const char *jwt;
	size_t n;
	int rc;

	*secret = NULL;
	*secret_len = 0;
	snprintf(what, sizeof what, "mint %s token for database %s",
		 read_only ? "read-only" : "full-access", name);
	exp = turso_urlencode(t, expiration);
	if (exp != NULL) {
		snprintf(suffix, sizeof suffix, "/auth/tokens?expiration=%s&authorization=%s", exp,
			 read_only ? "read-only" : "full-access");
		url = db_url(t, name, suffix);
	}
	if (url == NULL) {
		rc = turso_error(t, ENVDB_ERR_NOMEM, NULL, "%s: out of memory", what);
		goto out;
	}
	req.what = what;
	req.method = "POST";
	req.url = url;
	req.body = NULL; /* no body: a permissions body fails on tursodb-backed databases */
	req.bearer = t->api_token;
	req.bearer_len = t->api_token_len;
	req.secret_response = true;
	req.retry = retry;
	req.deadline_ms = deadline;
	if (retry & TURSO_RETRY_404) {
		req.max_attempts = 1000; /* bounded by the deadline */
		req.poll_max_delay_ms = 2000;
	}
	rc = turso_http(t, &req, &resp);
	if (rc != ENVDB_OK)
		goto out;
	if (resp.status != 200 && resp.status != 201) {
		rc = turso_fail(t, 0, what, &resp);
		goto out;
	}
	if (find_jwt(resp.body, resp.len, &jwt, &n) != 0) {
		rc = turso_error(t, ENVDB_ERR_GENERIC, "HTTP 200",
				 "%s: HTTP %ld: the answer has no jwt string", what, resp.status);
		goto out;
	}
	*secret = h->secure_alloc(h->ctx, n + 1);
	if (*secret == NULL) {
		rc = turso_error(t, ENVDB_ERR_NOMEM, NULL, "%s: cannot allocate secure memory",
				 what);
		goto out;
	}
	memcpy(*secret, jwt, n);
	(*secret)[n] = '\0';
	*secret_len = n;
out:
	turso_resp_free(t, &resp);
	if (url)
		h->free(h->ctx, url);
	if (exp)
		h->free(h->ctx, exp);
	return rc;
}

int turso_api_list(turso *t, int64_t deadline, envdb_adapter_list_cb cb, void *cb_ctx)
{
	const envdb_host *h = t->host;
	char what[160];
	char *org = turso_urlencode(t, t->org), *grp = turso_urlencode(t, t->group);
	char *cursor = NULL, *url = NULL;
	turso_req req = { 0 };
	turso_resp resp = { 0 };
	json_t *root = NULL;
	int rc = ENVDB_OK, page;

	snprintf(what, sizeof what, "list databases of group %s", t->group);
	if (org == NULL || grp == NULL) {
		rc = turso_error(t, ENVDB_ERR_NOMEM, NULL, "%s: out of memory", what);
		goto out;
	}
	for (page = 0; page < TURSO_LIST_MAX_PAGES; page++) {
		json_t *dbs, *pg, *next, *d;
		json_error_t jerr;
		size_t i;

		if (url)
			h->free(h->ctx, url);
		url = turso_strdup_printf(t, "%s/v1/organizations/%s/databases?group=%s%s%s",
					  t->api_url, org, grp, cursor ? "&cursor=" : "",
					  cursor ? cursor : "");
		if (url == NULL) {
			rc = turso_error(t, ENVDB_ERR_NOMEM, NULL, "%s: out of memory", what);
			goto out;
		}
		req.what = what;
		req.method = "GET";
		req.url = url;
		req.bearer = t->api_token;
		req.bearer_len = t->api_token_len;
		req.deadline_ms = deadline;
		turso_resp_free(t, &resp);
		rc = turso_http(t, &req, &resp);
		if (rc != ENVDB_OK)
			goto out;
		if (resp.status != 200) {
			rc = turso_fail(t, 0, what, &resp);
			goto out;
		}
		json_decref(root);
		root = json_loadb(resp.body ? resp.body : "", resp.len, 0, &jerr);
		dbs = root ? jget(root, "databases") : NULL;
		if (!json_is_array(dbs)) {
			rc = turso_error(t, ENVDB_ERR_GENERIC, "HTTP 200",
					 "%s: HTTP 200: the answer has no databases array", what);
			goto out;
		}
		json_array_foreach(dbs, i, d)
		{
			const char *name = jstr(d, "Name"), *group = jstr(d, "group");
			if (!turso_name_is_ours(name, t->name_prefix))
				continue;
			if (group != NULL && strcmp(group, t->group) != 0)
				continue;
			rc = cb(cb_ctx, name);
			if (rc != 0)
				goto out;
		}
		if (cursor) {
			h->free(h->ctx, cursor);
			cursor = NULL;
		}
		pg = jget(root, "pagination");
		next = json_is_object(pg) ? jget(pg, "next") : NULL;
		if (!json_is_string(next) || json_string_length(next) == 0)
			goto out;
		cursor = turso_urlencode(t, json_string_value(next));
		if (cursor == NULL) {
			rc = turso_error(t, ENVDB_ERR_NOMEM, NULL, "%s: out of memory", what);
			goto out;
		}
	}
	rc = turso_error(t, ENVDB_ERR_GENERIC, NULL, "%s: more than %d pages; giving up", what,
			 TURSO_LIST_MAX_PAGES);
out:
	json_decref(root);
	turso_resp_free(t, &resp);
	if (url)
		h->free(h->ctx, url);
	if (cursor)
		h->free(h->ctx, cursor);
	if (org)
		h->free(h->ctx, org);
	if (grp)
		h->free(h->ctx, grp);
	return rc;
}

char *turso_data_plane_base(turso *t, const char *hostname)
{
	if (t->data_plane_url != NULL)
		return turso_strdup(t, t->data_plane_url);
	return turso_strdup_printf(t, "%s://%s", t->data_plane_scheme, hostname);
}

/* Check a pipeline answer: results[0] ok, an execute result whose first
 * row's first value is the integer 1.  Returns ENVDB_OK, or reports. */
static int check_select1(turso *t, const char *what, json_t *root)
{
	json_t *results = jget(root, "results"), *r0, *resp, *result, *rows, *row0, *v;
	const char *type, *vt;

	r0 = json_is_array(results) ? json_array_get(results, 0) : NULL;
	type = r0 ? jstr(r0, "type") : NULL;
	if (type != NULL && strcmp(type, "error") == 0) {
		json_t *e = jget(r0, "error");
		const char *msg = e ? jstr(e, "message") : NULL, *code = e ? jstr(e, "code") : NULL;
		return turso_error(t, ENVDB_ERR_GENERIC, code, "%s: SELECT 1 failed: %s%s%s%s",
				   what, msg ? msg : "(no message)", code ? " (code " : "",
				   code ? code : "", code ? ")" : "");
	}
	if (type == NULL || strcmp(type, "ok") != 0)
		goto shape;
	resp = jget(r0, "response");
	if (!json_is_object(resp) || jstr(resp, "type") == NULL ||
	    strcmp(jstr(resp, "type"), "execute") != 0)
		goto shape;
	result = jget(resp, "result");
	rows = json_is_object(result) ? jget(result, "rows") : NULL;
	row0 = json_is_array(rows) ? json_array_get(rows, 0) : NULL;
	v = json_is_array(row0) ? json_array_get(row0, 0) : NULL;
	vt = json_is_object(v) ? jstr(v, "type") : NULL;
	if (vt == NULL || strcmp(vt, "integer") != 0)
		goto shape;
	/* Hrana encodes integers as strings; accept a number too. */
	{
		json_t *val = jget(v, "value");
		if ((json_is_string(val) && strcmp(json_string_value(val), "1") == 0) ||
		    (json_is_integer(val) && json_integer_value(val) == 1))
			return ENVDB_OK;
	}
shape:
	return turso_error(t, ENVDB_ERR_GENERIC, "HTTP 200",
			   "%s: HTTP 200 but the answer is not the result of SELECT 1 "
			   "(results[0] not an ok execute with the integer 1)",
			   what);
}

int turso_hrana_select1(turso *t, const char *base_url, const char *dbname, const char *jwt,
			size_t jwt_len, bool wait_ready, int64_t deadline)
{
	const envdb_host *h = t->host;
	char what[200];
	char *url = turso_strdup_printf(t, "%s/v2/pipeline", base_url);
	/* No "close" in the first pipeline: tursodb --sync-server rejects it;
	 * the stream is closed below when the server kept it open. */
	static const char body[] =
		"{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 1\"}}]}";
	turso_req req = { 0 };
	turso_resp resp = { 0 };
	json_t *root = NULL, *baton;
	json_error_t jerr;
	int rc;

	snprintf(what, sizeof what, "%s database %s over %s/v2/pipeline",
		 wait_ready ? "wait for" : "probe", dbname, base_url);
	if (url == NULL)
		return turso_error(t, ENVDB_ERR_NOMEM, NULL, "%s: out of memory", what);
	req.what = what;
	req.method = "POST";
	req.url = url;
	req.body = body;
	req.bearer = jwt;
	req.bearer_len = jwt_len;
	req.deadline_ms = deadline;
	if (wait_ready) {
		req.retry = TURSO_RETRY_404 | TURSO_RETRY_401_ONCE;
		req.max_attempts = 1000; /* bounded by the deadline */
		req.poll_max_delay_ms = 2000;
	}
	rc = turso_http(t, &req, &resp);
	if (rc != ENVDB_OK)
		goto out;
	if (resp.status != 200) {
		rc = turso_fail(t, 0, what, &resp);
		goto out;
	}
	root = json_loadb(resp.body ? resp.body : "", resp.len, 0, &jerr);
	if (root == NULL || !json_is_object(root)) {
		rc = turso_error(t, ENVDB_ERR_GENERIC, "HTTP 200",
				 "%s: HTTP 200 but the answer is not a JSON object", what);
		goto out;
	}
	rc = check_select1(t, what, root);
	baton = jget(root, "baton");
	if (json_is_string(baton)) {
		/* Close the stream the server kept open.  Sent to our own URL (a
		 * base_url from the answer is not followed: the token would go
		 * wherever it points).  Best effort. */
		json_t *cl = json_pack("{s:O, s:[{s:s}]}", "baton", baton, "requests", "type",
				       "close");
		char *cb = cl ? json_dumps(cl, JSON_COMPACT) : NULL;
		if (cb != NULL) {
			turso_req creq = req;
			turso_resp cresp;
			char cwhat[220];
			int64_t now = h->now_ms(h->ctx);
			snprintf(cwhat, sizeof cwhat, "close stream of database %s", dbname);
			creq.what = cwhat;
			creq.body = cb;
			creq.retry = TURSO_RETRY_NONE;
			creq.deadline_ms = deadline < now + 5000 ? deadline : now + 5000;
			/* Also after a bad SELECT 1 answer: the stream is open
			 * either way.  A failing close must not replace the
			 * error being returned. */
			char msg[sizeof t->last_msg], native[sizeof t->last_native];
			snprintf(msg, sizeof msg, "%s", t->last_msg);
			snprintf(native, sizeof native, "%s", t->last_native);
			if (turso_http(t, &creq, &cresp) != ENVDB_OK || cresp.status != 200)
				h->log(h->ctx, ENVDB_LOG_DEBUG, "turso: %s: close failed (ignored)",
				       cwhat);
			turso_resp_free(t, &cresp);
			if (rc != ENVDB_OK)
				turso_error(t, rc, native[0] ? native : NULL, "%s", msg);
		}
		free(cb);
		json_decref(cl);
	}
out:
	json_decref(root);
	turso_resp_free(t, &resp);
	h->free(h->ctx, url);
	return rc;
}
