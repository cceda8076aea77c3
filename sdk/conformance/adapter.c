/*
 * sdk/conformance/adapter.c — the adapter contract (envdb/adapter.h),
 * checked on a live instance against its real backend:
 *
 *   database_name   deterministic, distinct per environment, buffer protocol
 *   create          url and metadata; a second create is EXISTS; again
 *                   after drop; a too-small output buffer is
 *                   BUFFER_TOO_SMALL and leaves no database behind
 *   list            contains what was created, not what was dropped, and
 *                   nothing else new: what a listing after create has
 *                   beyond the one before it is exactly the kit's database
 *   mint            full_access; read_only as CAP_READ_ONLY promises (and
 *                   NOT_SUPPORTED without it); refused for a dropped
 *                   database
 *   rotate          a new credential; the previous one keeps working with
 *                   CAP_ROTATE_OVERLAP
 *   revoke          the revoked credential is refused (CAP_AUTHENTICATES),
 *                   the other is not; twice is success
 *   expiry          with CAP_EXPIRY (and PROBE, AUTHENTICATES) a credential
 *                   minted to expire in 2 s is refused with AUTH after it
 *   probe           accepts the minted secret, refuses a wrong one with
 *                   AUTH (CAP_AUTHENTICATES), refuses after drop
 *   drop            twice is success; a database that never existed too
 *   concurrency     threads hammering the instance (serialized by the kit
 *                   unless THREAD_SAFE); racing creates of one database
 *   deadline        REMOTE plugins stop at an expired deadline
 *
 * Every call goes through call.c (borrowed inputs poisoned afterwards,
 * guarded outputs, error reports checked) and the kit's host (secrets,
 * allocations), whose findings are reported at the end.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "kit.h"

typedef struct adapter {
	const envdb_adapter_ops *ops;
	void *inst;
	uint64_t caps;
	uint32_t flags;
} adapter;

/* A database the kit created (or means to). */
typedef struct kdb {
	char env[37];
	char *name;
	char *url;  /* NULL before create */
	char *meta;
} kdb;

/* A minted credential. */
typedef struct kcred {
	char *secret; /* kit secure memory */
	size_t len;
	char *handle;
} kcred;

#define HAS(a, cap) (((a)->caps & (cap)) != 0)

static void kdb_clear(kdb *d)
{
	free(d->name);
	free(d->url);
	free(d->meta);
	memset(d, 0, sizeof(*d));
}

static void kcred_clear(kcred *c)
{
	kit_sfree(c->secret, c->len + 1);
	free(c->handle);
	memset(c, 0, sizeof(*c));
}

/* ------------------------------------------------------------------------ */
/* Wrappers                                                                  */
/* ------------------------------------------------------------------------ */

static int a_name(const adapter *a, const char *env, size_t cap, char **out, size_t *len,
		  bool *untouched)
{
	kit_buf kb;
	int rc;

	kit_buf_init(&kb, cap, false);
	kit_call_begin("database_name");
	rc = a->ops->database_name(a->inst, kit_borrow(env), &kb.b);
	kit_call_end("database_name", rc);
	kit_buf_verify(&kb, rc, "database_name", "name", true);
	if (len != NULL)
		*len = kb.b.len;
	if (untouched != NULL)
		*untouched = kit_buf_untouched(&kb);
	if (rc == ENVDB_OK && out != NULL)
		*out = kit_xstrdup(kb.b.data);
	kit_buf_free(&kb);
	return rc;
}

static int db_name(const adapter *a, const char *env, char **out)
{
	size_t len = 0;
	int rc = a_name(a, env, 256, out, &len, NULL);

	if (rc == ENVDB_ERR_BUFFER_TOO_SMALL && len >= 256 && len < (1u << 20))
		rc = a_name(a, env, len + 1, out, NULL, NULL);
	return rc;
}

static envdb_db_ref *ref_of(const kdb *d)
{
	envdb_db_ref *r = kit_xmalloc(sizeof(*r));

	kit_keep(r);
	memset(r, 0, sizeof(*r));
	r->struct_size = sizeof(*r);
	r->deployment_id = kit_borrow(kit_deployment_id);
	r->environment_id = kit_borrow(d->env);
	r->database_name = kit_borrow(d->name);
	r->url = kit_borrow(d->url);
	r->metadata = kit_borrow(d->meta);
	r->deployment_id = NULL; /* ABI 1.1: what a host without one passes */
	return r;
}

/* create with output buffers of cap_url and cap_meta bytes, retried once
 * with what the plugin asked for when `retry`. */
static int a_create_cap(const adapter *a, kdb *d, size_t cap_url, size_t cap_meta, bool retry)
{
	int attempt, rc = ENVDB_ERR_GENERIC;

	for (attempt = 0; attempt < (retry ? 2 : 1); attempt++) {
		envdb_create_request *req = kit_xmalloc(sizeof(*req));
		kit_buf url, meta;

		kit_keep(req);
		memset(req, 0, sizeof(*req));
		req->struct_size = sizeof(*req);
		req->deployment_id = kit_borrow(kit_deployment_id);
		req->environment_id = kit_borrow(d->env);
		req->database_name = kit_borrow(d->name);
		req->region = NULL;
		req->plan = kit_borrow("free");
		req->storage_limit_mb = 64;
		req->deployment_id = NULL; /* ABI 1.1 */
		kit_buf_init(&url, cap_url, false);
		kit_buf_init(&meta, cap_meta, false);
		kit_call_begin("create");
		rc = a->ops->create(a->inst, req, &url.b, &meta.b);
		kit_call_end("create", rc);
		kit_buf_verify(&url, rc, "create", "url", true);
		kit_buf_verify(&meta, rc, "create", "metadata", true);
		if (rc == ENVDB_OK) {
			free(d->url);
			free(d->meta);
			d->url = kit_xstrdup(url.b.data);
			d->meta = kit_xstrdup(meta.b.data);
		} else if (rc == ENVDB_ERR_BUFFER_TOO_SMALL) {
			if (url.b.len + 1 > cap_url)
				cap_url = url.b.len + 1;
			if (meta.b.len + 1 > cap_meta)
				cap_meta = meta.b.len + 1;
		}
		kit_buf_free(&url);
		kit_buf_free(&meta);
		if (rc != ENVDB_ERR_BUFFER_TOO_SMALL || cap_url > (1u << 20) ||
		    cap_meta > (1u << 20))
			break;
	}
	return rc;
}

static int a_create(const adapter *a, kdb *d)
{
	return a_create_cap(a, d, ENVDB_ADAPTER_OUTPUT_MIN, ENVDB_ADAPTER_OUTPUT_MIN, true);
}

static int a_drop(const adapter *a, const kdb *d)
{
	envdb_db_ref *r = ref_of(d);
	int rc;

	kit_call_begin("drop");
	rc = a->ops->drop(a->inst, r);
	return kit_call_end("drop", rc);
}

static const char *auth_label(uint32_t auth)
{
	return auth == ENVDB_AUTH_READ_ONLY ? "the secret minted by mint(read_only)"
					    : "the secret minted by mint(full_access)";
}

/* mint; expires_at as in the request, the granted expiry into *granted_out
 * (when not NULL). */
static int a_mint_ex(const adapter *a, const kdb *d, uint32_t auth, const char *previous,
		     int64_t expires_at, int64_t *granted_out, kcred *out)
{
	size_t cap_s = ENVDB_ADAPTER_OUTPUT_MIN, cap_h = ENVDB_ADAPTER_OUTPUT_MIN;
	char cred_id[37];
	int64_t granted = 0;
	int attempt, rc = ENVDB_ERR_GENERIC;

	memset(out, 0, sizeof(*out));
	kit_uuid(cred_id);
	for (attempt = 0; attempt < 2; attempt++) {
		envdb_db_ref *r = ref_of(d);
		envdb_mint_request *req = kit_xmalloc(sizeof(*req));
		kit_buf sec, handle;

		kit_keep(req);
		memset(req, 0, sizeof(*req)); /* the 1.1 members the kit does not set */
		req->struct_size = sizeof(*req);
		req->credential_id = kit_borrow(cred_id);
		req->authorization = auth;
		req->expires_at = expires_at;
		req->previous_handle = kit_borrow(previous);
		/* ABI 1.1: the granted expiry comes back here, set as a host does */
		granted = 0;
		req->granted_expires_at = &granted;
		req->previous_valid_until = 0;
		kit_buf_init(&sec, cap_s, true);
		kit_buf_init(&handle, cap_h, false);
		kit_call_begin("mint");
		rc = a->ops->mint(a->inst, r, req, &sec.b, &handle.b);
		kit_call_end("mint", rc);
		if (rc == ENVDB_OK && granted < 0)
			kit_fail("mint: granted_expires_at is 0 or a time", "%lld",
				 (long long)granted);
		kit_buf_verify(&sec, rc, "mint", "secret", true);
		kit_buf_verify(&handle, rc, "mint", "handle", true);
		if (rc == ENVDB_OK) {
			out->len = sec.b.len;
			out->secret = kit_smalloc(out->len + 1);
			memcpy(out->secret, sec.b.data, out->len);
			out->secret[out->len] = '\0';
			out->handle = kit_xstrdup(handle.b.data);
			kit_secret_add(out->secret, out->len, auth_label(auth));
			/* The host could not know this secret while mint ran. */
			kit_transcript_scan("mint");
		} else if (rc == ENVDB_ERR_BUFFER_TOO_SMALL) {
			if (sec.b.len + 1 > cap_s)
				cap_s = sec.b.len + 1;
			if (handle.b.len + 1 > cap_h)
				cap_h = handle.b.len + 1;
		}
		kit_buf_free(&sec);
		kit_buf_free(&handle);
		if (rc != ENVDB_ERR_BUFFER_TOO_SMALL || cap_s > (1u << 20) || cap_h > (1u << 20))
			break;
	}
	if (granted_out != NULL)
		*granted_out = granted;
	return rc;
}

static int a_mint(const adapter *a, const kdb *d, uint32_t auth, const char *previous,
		  kcred *out)
{
	return a_mint_ex(a, d, auth, previous, 0, NULL, out);
}

static int a_probe(const adapter *a, const kdb *d, const char *secret, size_t len)
{
	envdb_db_ref *r = ref_of(d);
	char *copy = kit_xmalloc(len + 1);
	int rc;

	memcpy(copy, secret, len);
	copy[len] = '\0';
	kit_borrow_raw(copy, len + 1);
	kit_call_begin("probe");
	rc = a->ops->probe(a->inst, r, copy, len);
	return kit_call_end("probe", rc);
}

static int a_revoke(const adapter *a, const kdb *d, uint32_t auth, const char *handle)
{
	envdb_db_ref *r = ref_of(d);
	int rc;

	kit_call_begin("revoke");
	rc = a->ops->revoke(a->inst, r, auth, kit_borrow(handle));
	return kit_call_end("revoke", rc);
}

typedef struct name_list {
	char **v;
	size_t n, cap;
} name_list;

static int collect_name(void *ctx, const char *name)
{
	name_list *l = ctx;
	const char *label;

	if (name == NULL) {
		kit_finding(KIT_BUFFERS, "list called its callback with a NULL name");
		return 0;
	}
	if (kit_poisoned(name, strlen(name)))
		kit_finding(KIT_OWNERSHIP,
			    "list reported a name made of a borrowed string the host had "
			    "overwritten after an earlier call (a pointer kept past its call)");
	label = kit_secret_find(name, strlen(name));
	if (label != NULL)
		kit_finding(KIT_SECRETS, "list reported a name that contains %s", label);
	if (l->n == l->cap) {
		char **v;
		l->cap = l->cap ? l->cap * 2 : 64;
		v = realloc(l->v, l->cap * sizeof(*v));
		if (v == NULL)
			return ENVDB_ERR_NOMEM;
		l->v = v;
	}
	l->v[l->n++] = kit_xstrdup(name);
	return 0;
}

static void name_list_clear(name_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static size_t name_list_count(const name_list *l, const char *name)
{
	size_t i, c = 0;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i], name) == 0)
			c++;
	return c;
}

/* The names of `after` that `before` does not have, into out (a list of
 * borrowed pointers into `after`: do not clear it, free out->v). */
static void name_list_new(const name_list *before, const name_list *after, name_list *out)
{
	size_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < after->n; i++) {
		char **v;

		if (name_list_count(before, after->v[i]) > 0)
			continue;
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 8;
			v = realloc(out->v, out->cap * sizeof(*v));
			if (v == NULL)
				return;
			out->v = v;
		}
		out->v[out->n++] = after->v[i];
	}
}

static int a_list(const adapter *a, name_list *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	kit_call_begin("list");
	rc = a->ops->list(a->inst, collect_name, out);
	return kit_call_end("list", rc);
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */
/* ------------------------------------------------------------------------ */

static bool has_space(const char *s)
{
	for (; *s; s++)
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
			return true;
	return false;
}

static void check_database_name(const adapter *a, kdb *d, bool *usable)
{
	char other[37];
	char *n1 = NULL, *n2 = NULL, *n3 = NULL, *n4 = NULL;
	size_t need0 = 0, need1 = 0, len;
	bool untouched = false;
	int rc, rc0, rc1, rc2;

	kit_uuid(d->env);
	rc = db_name(a, d->env, &n1);
	if (!kit_check(rc == ENVDB_OK && n1 != NULL && n1[0] != '\0', "database_name", "%s",
		       rc == ENVDB_OK ? "empty name" : kit_why(rc))) {
		*usable = false;
		free(n1);
		return;
	}
	rc = db_name(a, d->env, &n2);
	kit_check(rc == ENVDB_OK && strcmp(n1, n2) == 0, "database_name: deterministic",
		  "the same environment id gave '%s' then '%s'", n1, rc == ENVDB_OK ? n2 : kit_why(rc));
	kit_uuid(other);
	rc = db_name(a, other, &n3);
	kit_check(rc == ENVDB_OK && strcmp(n1, n3) != 0,
		  "database_name: distinct environments get distinct names", "'%s' and '%s'", n1,
		  rc == ENVDB_OK ? n3 : kit_why(rc));

	/* The buffer protocol: a size query, a buffer one byte short (no room
	 * for the NUL: nothing written), then the exact size. */
	len = strlen(n1);
	rc0 = a_name(a, d->env, 0, NULL, &need0, NULL);
	rc1 = a_name(a, d->env, len, NULL, &need1, &untouched);
	rc2 = a_name(a, d->env, len + 1, &n4, NULL, NULL);
	if (rc0 != ENVDB_ERR_BUFFER_TOO_SMALL || need0 != len)
		kit_fail("database_name: buffer protocol", "with cap 0: %s and len %zu, expected "
			 "ENVDB_ERR_BUFFER_TOO_SMALL and len %zu", kit_status_name(rc0), need0, len);
	else if (rc1 != ENVDB_ERR_BUFFER_TOO_SMALL || need1 != len || !untouched)
		kit_fail("database_name: buffer protocol", "with cap %zu (no room for the NUL): "
			 "%s, len %zu, buffer %s; expected ENVDB_ERR_BUFFER_TOO_SMALL, len %zu, "
			 "untouched", len, kit_status_name(rc1), need1,
			 untouched ? "untouched" : "written", len);
	else
		kit_check(rc2 == ENVDB_OK && n4 != NULL && strcmp(n4, n1) == 0,
			  "database_name: buffer protocol", "with the exact cap %zu: %s", len + 1,
			  kit_why(rc2));
	d->name = n1;
	free(n2);
	free(n3);
	free(n4);
}

/* CAP_EXPIRY: the backend itself refuses a credential past its expires_at.
 * Checked with probe, so only where a wrong credential is refused at all
 * (CAP_PROBE and CAP_AUTHENTICATES). */
static void check_expiry(const adapter *a, kdb *d)
{
	static const char name[] = "expiry: an expired credential is refused (CAP_EXPIRY)";
	int64_t now = (int64_t)time(NULL), expires = now + 2, granted = 0, until;
	kcred c;
	int rc;

	if (!HAS(a, ENVDB_ADAPTER_CAP_EXPIRY)) {
		kit_skip(name, "CAP_EXPIRY not declared (only the host enforces expiry)");
		return;
	}
	if (!HAS(a, ENVDB_ADAPTER_CAP_PROBE) || !HAS(a, ENVDB_ADAPTER_CAP_AUTHENTICATES)) {
		kit_skip(name, "needs CAP_PROBE and CAP_AUTHENTICATES to see a refusal");
		return;
	}
	rc = a_mint_ex(a, d, ENVDB_AUTH_FULL_ACCESS, NULL, expires, &granted, &c);
	if (rc != ENVDB_OK) {
		kit_fail(name, "mint with expires_at 2 s from now: %s", kit_why(rc));
		kcred_clear(&c);
		return;
	}
	until = granted > 0 ? granted : expires;
	if (until > now + 10) {
		kit_skip(name, "the backend granted an expiry %lld s away for expires_at 2 s away",
			 (long long)(until - now));
	} else {
		/* One second past it: backends compare whole seconds. */
		while ((int64_t)time(NULL) <= until + 1) {
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		rc = a_probe(a, d, c.secret, c.len);
		kit_check(rc == ENVDB_ERR_AUTH, name,
			  "probe %lld s after its expires_at: %s (with CAP_EXPIRY the backend "
			  "itself must refuse it, with ENVDB_ERR_AUTH)",
			  (long long)((int64_t)time(NULL) - until), kit_why(rc));
	}
	if (HAS(a, ENVDB_ADAPTER_CAP_REVOKE))
		(void)a_revoke(a, d, ENVDB_AUTH_FULL_ACCESS, c.handle);
	kcred_clear(&c);
}

static void check_credentials(const adapter *a, kdb *d)
{
	kcred c1, c2, ro;
	char *wrong;
	int rc;
	bool probe = HAS(a, ENVDB_ADAPTER_CAP_PROBE);
	bool authn = HAS(a, ENVDB_ADAPTER_CAP_AUTHENTICATES);

	rc = a_mint(a, d, ENVDB_AUTH_FULL_ACCESS, NULL, &c1);
	if (!kit_check(rc == ENVDB_OK && c1.len > 0, "mint: full_access", "%s",
		       rc == ENVDB_OK ? "empty secret" : kit_why(rc))) {
		kcred_clear(&c1);
		return;
	}
	kit_check(kit_secret_find(d->url, strlen(d->url)) == NULL &&
			  kit_secret_find(d->meta, strlen(d->meta)) == NULL &&
			  kit_secret_find(c1.handle, strlen(c1.handle)) == NULL &&
			  kit_secret_find(d->name, strlen(d->name)) == NULL,
		  "mint: the secret is not in the url, metadata, handle or name", "it is");

	if (probe) {
		rc = a_probe(a, d, c1.secret, c1.len);
		kit_check(rc == ENVDB_OK, "probe: accepts the minted secret", "%s", kit_why(rc));
	} else {
		kit_skip("probe: accepts the minted secret", "CAP_PROBE not declared");
	}
	if (probe && authn) {
		wrong = kit_smalloc(c1.len + 1);
		memcpy(wrong, c1.secret, c1.len);
		wrong[c1.len - 1] = wrong[c1.len - 1] == 'x' ? 'y' : 'x';
		kit_secret_add(wrong, c1.len, "the wrong secret given to probe");
		rc = a_probe(a, d, wrong, c1.len);
		kit_check(rc == ENVDB_ERR_AUTH, "probe: refuses a wrong secret with AUTH", "%s",
			  kit_why(rc));
		kit_sfree(wrong, c1.len + 1);
	} else {
		kit_skip("probe: refuses a wrong secret with AUTH", "%s",
			 probe ? "CAP_AUTHENTICATES not declared (the backend checks no credential)"
			       : "CAP_PROBE not declared");
	}

	/* Read-only: as promised, or refused. */
	if (HAS(a, ENVDB_ADAPTER_CAP_READ_ONLY)) {
		rc = a_mint(a, d, ENVDB_AUTH_READ_ONLY, NULL, &ro);
		if (kit_check(rc == ENVDB_OK && ro.len > 0 &&
				      (ro.len != c1.len || memcmp(ro.secret, c1.secret, c1.len) != 0),
			      "mint: read_only (CAP_READ_ONLY)", "%s",
			      rc == ENVDB_OK ? "the same secret as the full_access credential"
					     : kit_why(rc)) &&
		    probe) {
			rc = a_probe(a, d, ro.secret, ro.len);
			kit_check(rc == ENVDB_OK, "probe: accepts the read_only secret", "%s",
				  kit_why(rc));
		}
		if (rc == ENVDB_OK && HAS(a, ENVDB_ADAPTER_CAP_REVOKE) && ro.handle != NULL)
			(void)a_revoke(a, d, ENVDB_AUTH_READ_ONLY, ro.handle);
	} else {
		rc = a_mint(a, d, ENVDB_AUTH_READ_ONLY, NULL, &ro);
		kit_check(rc == ENVDB_ERR_NOT_SUPPORTED,
			  "mint: read_only is NOT_SUPPORTED without CAP_READ_ONLY",
			  "%s (a read-only request must never be served with a credential that "
			  "can write)", kit_why(rc));
	}
	kcred_clear(&ro);

	/* Rotation. */
	rc = a_mint(a, d, ENVDB_AUTH_FULL_ACCESS, c1.handle, &c2);
	if (rc != ENVDB_OK)
		kit_fail("rotate: mint with previous_handle gives a new credential", "%s",
			 kit_why(rc));
	else if (c2.len == 0)
		kit_fail("rotate: mint with previous_handle gives a new credential",
			 "empty secret");
	else if (c2.len == c1.len && memcmp(c2.secret, c1.secret, c1.len) == 0)
		kit_fail("rotate: mint with previous_handle gives a new credential",
			 "the new secret equals the previous one");
	else if (c1.handle[0] != '\0' && strcmp(c1.handle, c2.handle) == 0)
		kit_fail("rotate: mint with previous_handle gives a new credential",
			 "the new handle equals the previous one ('%s')", c2.handle);
	else
		kit_ok("rotate: mint with previous_handle gives a new credential", NULL);
	if (rc == ENVDB_OK && probe) {
		rc = a_probe(a, d, c2.secret, c2.len);
		kit_check(rc == ENVDB_OK, "rotate: the new credential is accepted", "%s",
			  kit_why(rc));
		if (HAS(a, ENVDB_ADAPTER_CAP_ROTATE_OVERLAP)) {
			rc = a_probe(a, d, c1.secret, c1.len);
			kit_check(rc == ENVDB_OK,
				  "rotate: the previous credential still works (CAP_ROTATE_OVERLAP)",
				  "%s", kit_why(rc));
		} else {
			kit_skip("rotate: the previous credential still works",
				 "CAP_ROTATE_OVERLAP not declared");
		}
	} else if (rc == ENVDB_OK) {
		kit_skip("rotate: the new credential is accepted", "CAP_PROBE not declared");
	}

	/* Revocation. */
	if (HAS(a, ENVDB_ADAPTER_CAP_REVOKE)) {
		rc = a_revoke(a, d, ENVDB_AUTH_FULL_ACCESS, c1.handle);
		kit_check(rc == ENVDB_OK, "revoke", "%s", kit_why(rc));
		if (probe && authn && c2.secret != NULL) {
			rc = a_probe(a, d, c1.secret, c1.len);
			kit_check(rc == ENVDB_ERR_AUTH, "revoke: the revoked credential is refused",
				  "probe with it: %s", kit_why(rc));
			rc = a_probe(a, d, c2.secret, c2.len);
			kit_check(rc == ENVDB_OK, "revoke: the other credential still works",
				  "probe with it: %s", kit_why(rc));
		} else {
			kit_skip("revoke: the revoked credential is refused",
				 "needs CAP_PROBE and CAP_AUTHENTICATES");
		}
		rc = a_revoke(a, d, ENVDB_AUTH_FULL_ACCESS, c1.handle);
		kit_check(rc == ENVDB_OK, "revoke: revoking twice is success", "%s", kit_why(rc));
	} else {
		kit_skip("revoke", "CAP_REVOKE not declared");
	}

	check_expiry(a, d);

	/* After drop (checked by the caller) the last secret must be refused. */
	if (probe && c2.secret != NULL) {
		rc = a_drop(a, d);
		if (kit_check(rc == ENVDB_OK, "drop", "%s", kit_why(rc))) {
			rc = a_probe(a, d, c2.secret, c2.len);
			kit_check(rc != ENVDB_OK, "probe: refused after drop", "%s", kit_why(rc));
		}
	}
	kcred_clear(&c1);
	kcred_clear(&c2);
}

/* ------------------------------------------------------------------------ */
/* Concurrency                                                               */
/* ------------------------------------------------------------------------ */

typedef struct conc {
	const adapter *a;
	int iterations;
	pthread_mutex_t lock;
	pthread_barrier_t barrier;
	unsigned failures;
	char first[1024];
	/* racing creates */
	kdb race;
	int race_ok, race_exists, race_other;
	char race_first_other[512];
} conc;

typedef struct worker_arg {
	conc *c;
	int id;
} worker_arg;

static void conc_fail(conc *c, int id, int i, const char *op, int rc)
{
	pthread_mutex_lock(&c->lock);
	if (c->failures++ == 0)
		snprintf(c->first, sizeof(c->first), "thread %d, cycle %d: %s: %s", id, i, op,
			 kit_why(rc));
	pthread_mutex_unlock(&c->lock);
}

static void *worker(void *arg)
{
	worker_arg *w = arg;
	conc *c = w->c;
	const adapter *a = c->a;
	int i, rc;

	pthread_barrier_wait(&c->barrier);
	for (i = 0; i < c->iterations; i++) {
		kdb d;
		kcred cr;
		name_list l;

		memset(&d, 0, sizeof(d));
		kit_uuid(d.env);
		if ((rc = db_name(a, d.env, &d.name)) != ENVDB_OK) {
			conc_fail(c, w->id, i, "database_name", rc);
			continue;
		}
		if ((rc = a_create(a, &d)) != ENVDB_OK) {
			conc_fail(c, w->id, i, "create", rc);
			kdb_clear(&d);
			continue;
		}
		rc = a_mint(a, &d, ENVDB_AUTH_FULL_ACCESS, NULL, &cr);
		if (rc != ENVDB_OK)
			conc_fail(c, w->id, i, "mint", rc);
		else if (HAS(a, ENVDB_ADAPTER_CAP_PROBE) &&
			 (rc = a_probe(a, &d, cr.secret, cr.len)) != ENVDB_OK)
			conc_fail(c, w->id, i, "probe", rc);
		kcred_clear(&cr);
		if (HAS(a, ENVDB_ADAPTER_CAP_LIST) && i % 2 == 0) {
			if ((rc = a_list(a, &l)) != ENVDB_OK)
				conc_fail(c, w->id, i, "list", rc);
			else if (name_list_count(&l, d.name) != 1)
				conc_fail(c, w->id, i, "list (own database missing)", ENVDB_OK);
			name_list_clear(&l);
		}
		if ((rc = a_drop(a, &d)) != ENVDB_OK)
			conc_fail(c, w->id, i, "drop", rc);
		kdb_clear(&d);
	}
	return NULL;
}

static void *racer(void *arg)
{
	worker_arg *w = arg;
	conc *c = w->c;
	kdb d;
	int rc;

	memset(&d, 0, sizeof(d));
	memcpy(d.env, c->race.env, sizeof(d.env));
	d.name = kit_xstrdup(c->race.name);
	pthread_barrier_wait(&c->barrier);
	rc = a_create(c->a, &d);
	pthread_mutex_lock(&c->lock);
	if (rc == ENVDB_OK) {
		c->race_ok++;
		free(c->race.url);
		free(c->race.meta);
		c->race.url = d.url;
		c->race.meta = d.meta;
		d.url = d.meta = NULL;
	} else if (rc == ENVDB_ERR_EXISTS) {
		c->race_exists++;
	} else if (c->race_other++ == 0) {
		snprintf(c->race_first_other, sizeof(c->race_first_other), "%s", kit_why(rc));
	}
	pthread_mutex_unlock(&c->lock);
	kdb_clear(&d);
	return NULL;
}

static void run_threads(conc *c, int n, void *(*fn)(void *))
{
	pthread_t *t = kit_xmalloc((size_t)n * sizeof(*t));
	worker_arg *w = kit_xmalloc((size_t)n * sizeof(*w));
	int i, started = 0;

	pthread_barrier_init(&c->barrier, NULL, (unsigned)n);
	for (i = 0; i < n; i++) {
		w[i].c = c;
		w[i].id = i;
		if (pthread_create(&t[i], NULL, fn, &w[i]) != 0) {
			fprintf(stderr, "envdb-conformance: cannot start a thread\n");
			abort();
		}
		started++;
	}
	for (i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&c->barrier);
	free(t);
	free(w);
}

static void check_concurrency(const adapter *a, const kit_options *opt)
{
	bool ts = (a->flags & ENVDB_PLUGIN_THREAD_SAFE) != 0;
	char name[160];
	conc c;
	int rc;

	memset(&c, 0, sizeof(c));
	c.a = a;
	c.iterations = opt->iterations;
	pthread_mutex_init(&c.lock, NULL);
	snprintf(name, sizeof(name), "concurrency: %d threads x %d create/mint/probe/list/drop "
		 "cycles (%s)", opt->threads, opt->iterations,
		 ts ? "THREAD_SAFE: concurrent calls" : "calls serialized by the host");
	run_threads(&c, opt->threads, worker);
	kit_check(c.failures == 0, name, "%u failure(s); first: %s", c.failures, c.first);

	/* Racing creates of one database: exactly one wins. */
	kit_uuid(c.race.env);
	rc = db_name(a, c.race.env, &c.race.name);
	if (rc == ENVDB_OK) {
		run_threads(&c, opt->threads, racer);
		if (c.race_other > 0)
			kit_fail("concurrency: racing creates of one database",
				 "%d of %d failed otherwise than EXISTS; first: %s", c.race_other,
				 opt->threads, c.race_first_other);
		else
			kit_check(c.race_ok == 1 && c.race_exists == opt->threads - 1,
				  "concurrency: racing creates of one database",
				  "%d succeeded and %d got EXISTS; expected exactly one success",
				  c.race_ok, c.race_exists);
		if (c.race_ok > 0 && (rc = a_drop(a, &c.race)) != ENVDB_OK)
			kit_fail("concurrency: drop after the race", "%s", kit_why(rc));
	}
	kdb_clear(&c.race);
	pthread_mutex_destroy(&c.lock);
}

/* ------------------------------------------------------------------------ */
/* Deadline                                                                  */
/* ------------------------------------------------------------------------ */

static void check_deadline(const adapter *a, const kit_options *opt, bool backend_up)
{
	const char *name = "deadline: create with an expired deadline stops with TIMEOUT";
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	int64_t t0, took;
	kdb d;
	int rc;

	if (!(a->flags & ENVDB_PLUGIN_REMOTE)) {
		kit_skip("deadline", "not a REMOTE plugin");
		return;
	}
	if (!opt->deadline) {
		kit_skip("deadline", "disabled (--no-deadline)");
		return;
	}
	if (!backend_up) {
		kit_skip("deadline", "the backend is not reachable");
		return;
	}
	memset(&d, 0, sizeof(d));
	kit_uuid(d.env);
	if (db_name(a, d.env, &d.name) != ENVDB_OK)
		return;
	kit_set_deadline(kit_now_ms());
	nanosleep(&pause, NULL);
	t0 = kit_now_ms();
	rc = a_create(a, &d);
	took = kit_now_ms() - t0;
	kit_set_deadline(0);
	kit_check((rc == ENVDB_ERR_TIMEOUT || rc == ENVDB_ERR_UNAVAILABLE) && took < 5000, name,
		  "%s after %lld ms", kit_why(rc), (long long)took);
	if (rc == ENVDB_OK)
		(void)a_drop(a, &d);
	if (HAS(a, ENVDB_ADAPTER_CAP_LIST)) {
		name_list l;

		kit_set_deadline(kit_now_ms());
		nanosleep(&pause, NULL);
		t0 = kit_now_ms();
		rc = a_list(a, &l);
		took = kit_now_ms() - t0;
		kit_set_deadline(0);
		name_list_clear(&l);
		kit_check((rc == ENVDB_ERR_TIMEOUT || rc == ENVDB_ERR_UNAVAILABLE) && took < 5000,
			  "deadline: list with an expired deadline stops with TIMEOUT",
			  "%s after %lld ms", kit_why(rc), (long long)took);
	}
	kdb_clear(&d);
}

/* ------------------------------------------------------------------------ */

void kit_run_adapter(const envdb_plugin_descriptor *desc, const envdb_adapter_ops *ops,
		     void *instance, const kit_options *opt)
{
	adapter a = { ops, instance, ops->capabilities, desc->flags };
	bool usable = true, backend_up = true, listable = HAS(&a, ENVDB_ADAPTER_CAP_LIST);
	kdb d, ghost;
	name_list l, before;
	const char *foreign;
	json_t *meta;
	size_t i;
	int rc, tiny_rc;

	memset(&d, 0, sizeof(d));
	memset(&ghost, 0, sizeof(ghost));
	memset(&before, 0, sizeof(before));
	check_database_name(&a, &d, &usable);
	if (!usable)
		return;

	/* What exists before the kit makes anything: a listing may show it
	 * again, never anything else the kit did not make. */
	if (listable && a_list(&a, &before) != ENVDB_OK)
		listable = false; /* the list checks below say why */

	/* Outputs are sized before anything is made (or what was made is
	 * undone): a create with buffers too small for the url leaves no
	 * database, so the real create that follows is not EXISTS. */
	rc = a_create_cap(&a, &d, 1, 1, false);
	if (rc == ENVDB_ERR_BUFFER_TOO_SMALL)
		kit_ok("create: a too-small buffer is BUFFER_TOO_SMALL", NULL);
	else if (rc == ENVDB_ERR_UNAVAILABLE || rc == ENVDB_ERR_TIMEOUT)
		kit_skip("create: a too-small buffer is BUFFER_TOO_SMALL", "%s", kit_why(rc));
	else if (rc == ENVDB_OK)
		kit_fail("create: a too-small buffer is BUFFER_TOO_SMALL",
			 "with 1-byte url and metadata buffers create answered ENVDB_OK");
	else
		kit_fail("create: a too-small buffer is BUFFER_TOO_SMALL",
			 "with 1-byte url and metadata buffers: %s", kit_why(rc));
	if (rc == ENVDB_OK)
		(void)a_drop(&a, &d);
	tiny_rc = rc;

	rc = a_create(&a, &d);
	if (tiny_rc == ENVDB_ERR_BUFFER_TOO_SMALL)
		kit_check(rc != ENVDB_ERR_EXISTS, "create: a too-small buffer leaves nothing behind",
			  "after ENVDB_ERR_BUFFER_TOO_SMALL, the create with large enough buffers "
			  "answered ENVDB_ERR_EXISTS: the first call made the database before "
			  "sizing its outputs (and did not undo it)");
	if (!kit_check(rc == ENVDB_OK, "create", "%s", kit_why(rc))) {
		backend_up = rc != ENVDB_ERR_UNAVAILABLE && rc != ENVDB_ERR_TIMEOUT;
		goto after_lifecycle;
	}
	meta = json_loads(d.meta, 0, NULL);
	kit_check(d.url[0] != '\0' && !has_space(d.url) && json_is_object(meta),
		  "create: url and metadata", "url '%s', metadata '%s' (a JSON object expected)",
		  d.url, d.meta);
	json_decref(meta);
	{
		kdb again;

		memset(&again, 0, sizeof(again));
		memcpy(again.env, d.env, sizeof(again.env));
		again.name = kit_xstrdup(d.name);
		rc = a_create(&a, &again);
		kit_check(rc == ENVDB_ERR_EXISTS, "create: a second create of the same database "
			  "is EXISTS", "%s", kit_why(rc));
		kdb_clear(&again);
	}
	if (listable) {
		name_list fresh;

		rc = a_list(&a, &l);
		kit_check(rc == ENVDB_OK && name_list_count(&l, d.name) == 1,
			  "list: contains the created database", "%s; '%s' listed %zu time(s) "
			  "among %zu", kit_why(rc), d.name, name_list_count(&l, d.name), l.n);
		name_list_new(&before, &l, &fresh);
		foreign = NULL;
		for (i = 0; i < fresh.n && foreign == NULL; i++)
			if (strcmp(fresh.v[i], d.name) != 0)
				foreign = fresh.v[i];
		if (rc != ENVDB_OK)
			kit_skip("list: reports nothing the kit did not make", "list failed");
		else if (foreign != NULL)
			kit_fail("list: reports nothing the kit did not make",
				 "after creating only '%s', list also reported '%s', which the kit "
				 "did not create and which was not listed before it started "
				 "(reconcile would offer to drop it)",
				 d.name, foreign);
		else
			kit_ok("list: reports nothing the kit did not make", NULL);
		free(fresh.v);
		name_list_clear(&l);
	} else {
		kit_skip("list", "CAP_LIST not declared");
	}

	check_credentials(&a, &d); /* drops d when it can probe */

	rc = a_drop(&a, &d);
	kit_check(rc == ENVDB_OK, HAS(&a, ENVDB_ADAPTER_CAP_PROBE)
				      ? "drop: dropping twice is success" : "drop", "%s", kit_why(rc));
	if (!HAS(&a, ENVDB_ADAPTER_CAP_PROBE)) {
		rc = a_drop(&a, &d);
		kit_check(rc == ENVDB_OK, "drop: dropping twice is success", "%s", kit_why(rc));
	}
	if (listable) {
		rc = a_list(&a, &l);
		kit_check(rc == ENVDB_OK && name_list_count(&l, d.name) == 0,
			  "list: the dropped database is gone", "%s; '%s' still listed",
			  kit_why(rc), d.name);
		name_list_clear(&l);
	}

	/* A dropped database takes its credentials with it, and nothing new
	 * can be minted for it. */
	{
		kcred gc;

		rc = a_mint(&a, &d, ENVDB_AUTH_FULL_ACCESS, NULL, &gc);
		kit_check(rc != ENVDB_OK, "mint: refused for a database that was dropped",
			  "mint succeeded for '%s' after drop", d.name);
		if (rc == ENVDB_OK && HAS(&a, ENVDB_ADAPTER_CAP_REVOKE))
			(void)a_revoke(&a, &d, ENVDB_AUTH_FULL_ACCESS, gc.handle);
		kcred_clear(&gc);
	}
	/* The host drops by name alone when create never returned (url NULL). */
	kit_uuid(ghost.env);
	if (db_name(&a, ghost.env, &ghost.name) == ENVDB_OK) {
		rc = a_drop(&a, &ghost);
		kit_check(rc == ENVDB_OK, "drop: a database that never existed is success", "%s",
			  kit_why(rc));
	}

	rc = a_create(&a, &d);
	if (kit_check(rc == ENVDB_OK, "create: again after drop (same name)", "%s", kit_why(rc))) {
		rc = a_drop(&a, &d);
		kit_check(rc == ENVDB_OK, "drop: the re-created database", "%s", kit_why(rc));
	}

	check_concurrency(&a, opt);

after_lifecycle:
	check_deadline(&a, opt, backend_up);
	name_list_clear(&before);
	kdb_clear(&d);
	kdb_clear(&ghost);
}
