/*
 * tests/test_resolve.c — envdb_resolve() (DESIGN.md §6): role →
 * authorization (readers and guests never get full access), non-members
 * refused, states that do not resolve, the cache (hits, TTL, invalidation
 * by rotation, membership, role change and archive, disabled cache), the
 * connection struct (including the credential handles, cached or not), and
 * coalesced last_accessed_at writes.
 */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"
#include "resolve.h"
#include "store.h"
#include "sync_count.h"
#include "testdeploy.h"

static td T;

static void setup(void)
{
	td_setup(&T, NULL);
}

static void teardown(void)
{
	td_teardown(&T);
}

static void add_member(envdb_ctx *ctx, const char *slug, const char *user, const char *role)
{
	int rc = envdb_member_add(ctx, "acme", slug, user, role, NULL);

	ck_assert_msg(rc == ENVDB_OK, "member add %s: %s", user, envdb_error_last()->message);
}

/* Resolve and return the status; *auth (may be NULL) gets a copy of the
 * authorization, *secret of the secret. */
static int resolve(envdb_ctx *ctx, const char *slug, const char *user, char **auth,
		   char **secret)
{
	envdb_connection *c = NULL;
	int rc = envdb_resolve(&c, ctx, "acme", slug, user);

	if (auth != NULL)
		*auth = rc == ENVDB_OK ? strdup(c->authorization) : NULL;
	if (secret != NULL)
		*secret = rc == ENVDB_OK ? strdup(c->secret) : NULL;
	if (rc != ENVDB_OK)
		ck_assert_ptr_null(c);
	envdb_connection_free(c);
	return rc;
}

static void expect_auth(envdb_ctx *ctx, const char *slug, const char *user, const char *want)
{
	char *auth = NULL;
	int rc = resolve(ctx, slug, user, &auth, NULL);

	ck_assert_msg(rc == ENVDB_OK, "resolve %s as %s: %s", slug, user,
		      envdb_error_last()->message);
	ck_assert_str_eq(auth, want);
	free(auth);
}

/* The cache's SipHash: with 2 and 4 rounds it is libsodium's
 * crypto_shorthash (SipHash-2-4) for every length across the block
 * boundaries, so the 1-3 variant the cache uses is the same construction
 * with fewer rounds; 1-3 differs from 2-4 and depends on the key. */
START_TEST(test_siphash)
{
	unsigned char k[crypto_shorthash_KEYBYTES], msg[80], want[8];
	uint64_t got, a, b;
	size_t n;

	ck_assert_int_ge(sodium_init(), 0);
	for (n = 0; n < sizeof(k); n++)
		k[n] = (unsigned char)n;
	for (n = 0; n < sizeof(msg); n++)
		msg[n] = (unsigned char)(n * 7 + 3);
	for (n = 0; n <= sizeof(msg); n++) {
		crypto_shorthash(want, msg, n, k);
		got = envdbi_siphash(k, msg, n, 2, 4);
		ck_assert_msg(memcmp(&got, want, 8) == 0, "SipHash-2-4 of %zu bytes", n);
		ck_assert(envdbi_siphash(k, msg, n, 1, 3) != got);
	}
	a = envdbi_siphash(k, msg, 45, 1, 3);
	k[0] ^= 1;
	b = envdbi_siphash(k, msg, 45, 1, 3);
	ck_assert(a != b);
}
END_TEST

START_TEST(test_connection_fields)
{
	envdb_ctx *ctx = td_open(&T);
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	envdb_connection *c = NULL;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", "sqlite", "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_env_get(&env, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_int_eq(envdb_env_database(&db, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_OK);
	ck_assert_uint_eq(c->struct_size, sizeof(envdb_connection));
	ck_assert_str_eq(c->environment_id, env->id);
	ck_assert_str_eq(c->organization_id, "acme");
	ck_assert_str_eq(c->slug, "dev");
	ck_assert_str_eq(c->driver, "sqlite");
	ck_assert_str_eq(c->database_name, db->database_name);
	ck_assert_str_eq(c->database_url, db->database_url);
	ck_assert_str_eq(c->role, "owner");
	ck_assert_str_eq(c->authorization, "full_access");
	ck_assert_ptr_nonnull(c->credential_id);
	ck_assert_uint_gt(c->secret_len, 16);
	ck_assert_uint_eq(strlen(c->secret), c->secret_len);
	ck_assert_ptr_null(strstr(c->database_url, c->secret));
	ck_assert_ptr_null(c->previous_secret);
	ck_assert_int_eq(c->expires_at, 0);
	/* sqlite credentials have no handle: "", never NULL. */
	ck_assert_ptr_nonnull(c->credential_handle);
	ck_assert_str_eq(c->credential_handle, "");
	ck_assert_ptr_null(c->previous_credential_id);
	ck_assert_ptr_null(c->previous_credential_handle);
	envdb_connection_free(c);
	/* The same from the cache. */
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_OK);
	ck_assert_ptr_nonnull(c->credential_handle);
	ck_assert_str_eq(c->credential_handle, "");
	ck_assert_ptr_null(c->previous_credential_handle);
	envdb_connection_free(c);
	envdb_connection_free(NULL);
	/* Misuse. */
	ck_assert_int_eq(envdb_resolve(NULL, ctx, "acme", "dev", "alice"), ENVDB_ERR_MISUSE);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", ""), ENVDB_ERR_INVALID);
	envdb_database_free(db);
	envdb_environment_free(env);
	envdb_close(ctx);
}
END_TEST

/* The stored handle of credential `id` of acme/SLUG (a copy). */
static char *stored_handle(envdb_ctx *ctx, const char *slug, const char *id)
{
	envdb_credential **v = NULL;
	char *h = NULL;
	size_t n = 0, i;

	ck_assert_int_eq(envdb_cred_list(&v, &n, ctx, "acme", slug), ENVDB_OK);
	for (i = 0; i < n; i++)
		if (strcmp(v[i]->id, id) == 0)
			h = strdup(v[i]->handle ? v[i]->handle : "");
	envdb_credential_list_free(v, n);
	ck_assert_msg(h != NULL, "credential %s not listed", id);
	return h;
}

/* Resolve USER (twice: a miss or a hit, then a hit) and check the handles
 * against the stored credentials: the faulty adapter mints "fh_<id>". */
static void expect_handles(envdb_ctx *ctx, const char *user, const char *prev_id)
{
	int round;

	for (round = 0; round < 2; round++) {
		envdb_connection *c = NULL;
		char want[128], *stored;

		ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", user), ENVDB_OK);
		snprintf(want, sizeof(want), "fh_%s", c->credential_id);
		ck_assert_ptr_nonnull(c->credential_handle);
		ck_assert_str_eq(c->credential_handle, want);
		stored = stored_handle(ctx, "dev", c->credential_id);
		ck_assert_str_eq(c->credential_handle, stored);
		free(stored);
		if (prev_id == NULL) {
			ck_assert_ptr_null(c->previous_credential_id);
			ck_assert_ptr_null(c->previous_credential_handle);
		} else {
			ck_assert_str_eq(c->previous_credential_id, prev_id);
			snprintf(want, sizeof(want), "fh_%s", prev_id);
			ck_assert_ptr_nonnull(c->previous_credential_handle);
			ck_assert_str_eq(c->previous_credential_handle, want);
		}
		envdb_connection_free(c);
	}
}

START_TEST(test_credential_handle)
{
	envdb_ctx *ctx = td_open(&T);
	envdb_connection *a = NULL, *r = NULL;
	char *old_id;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", "faulty", "alice"), ENVDB_OK);
	add_member(ctx, "dev", "rita", "reader");
	expect_handles(ctx, "alice", NULL);
	expect_handles(ctx, "rita", NULL);
	/* Each authorization has its own handle (its own role). */
	ck_assert_int_eq(envdb_resolve(&a, ctx, "acme", "dev", "alice"), ENVDB_OK);
	ck_assert_int_eq(envdb_resolve(&r, ctx, "acme", "dev", "rita"), ENVDB_OK);
	ck_assert_str_ne(a->credential_handle, r->credential_handle);
	old_id = strdup(a->credential_id);
	envdb_connection_free(a);
	envdb_connection_free(r);

	/* A rotation: the new handle, and the previous one during the
	 * overlap; completion drops it (from the cache too). */
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", NULL), ENVDB_OK);
	expect_handles(ctx, "alice", old_id);
	ck_assert_int_eq(envdb_cred_complete(NULL, ctx, "acme", "dev"), ENVDB_OK);
	expect_handles(ctx, "alice", NULL);
	free(old_id);

	/* Without the cache: the same answers. */
	envdb_close(ctx);
	td_teardown(&T);
	{
		td_opts o = TD_OPTS_INIT;

		o.cache_size = 0;
		td_setup(&T, &o);
	}
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", "faulty", "alice"), ENVDB_OK);
	expect_handles(ctx, "alice", NULL);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_roles_decide_authorization)
{
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	add_member(ctx, "dev", "ann", "admin");
	add_member(ctx, "dev", "mike", "maker");
	add_member(ctx, "dev", "rita", "reader");
	add_member(ctx, "dev", "gus", "guest");
	expect_auth(ctx, "dev", "alice", "full_access");
	expect_auth(ctx, "dev", "ann", "full_access");
	expect_auth(ctx, "dev", "mike", "full_access");
	expect_auth(ctx, "dev", "rita", "read_only");
	expect_auth(ctx, "dev", "gus", "read_only");
	/* Readers get a different secret than owners. */
	{
		char *a = NULL, *b = NULL;

		ck_assert_int_eq(resolve(ctx, "dev", "alice", NULL, &a), ENVDB_OK);
		ck_assert_int_eq(resolve(ctx, "dev", "rita", NULL, &b), ENVDB_OK);
		ck_assert_str_ne(a, b);
		free(a);
		free(b);
	}
	ck_assert_int_eq(resolve(ctx, "dev", "mallory", NULL, NULL), ENVDB_ERR_PERMISSION);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "mallory"));
	ck_assert_int_eq(resolve(ctx, "nope", "alice", NULL, NULL), ENVDB_ERR_NOT_FOUND);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_reader_never_gets_full_access)
{
	envdb_ctx *ctx = td_open(&T);

	/* A driver that cannot mint read-only credentials. */
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", "faulty_noro", "alice"), ENVDB_OK);
	add_member(ctx, "dev", "rita", "reader");
	add_member(ctx, "dev", "gus", "guest");
	expect_auth(ctx, "dev", "alice", "full_access");
	ck_assert_int_eq(resolve(ctx, "dev", "rita", NULL, NULL), ENVDB_ERR_NOT_SUPPORTED);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "read-only"));
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "faulty_noro"));
	ck_assert_int_eq(resolve(ctx, "dev", "gus", NULL, NULL), ENVDB_ERR_NOT_SUPPORTED);
	/* Still refused on a second try (nothing cached for a refusal). */
	ck_assert_int_eq(resolve(ctx, "dev", "rita", NULL, NULL), ENVDB_ERR_NOT_SUPPORTED);
	envdb_close(ctx);
}
END_TEST

/* sqlite's read-only credential: its handle is the URL query "?mode=ro",
 * part of the URL a reader is handed, from the store and from the cache
 * alike; the owner's URL stays the database's. */
START_TEST(test_reader_url_carries_query_handle)
{
	envdb_ctx *ctx = td_open(&T);
	envdb_database *db = NULL;
	char want[PATH_MAX + 16];

	ck_assert_int_eq(td_provision(ctx, "acme", "lite", "sqlite", "alice"), ENVDB_OK);
	add_member(ctx, "lite", "rita", "reader");
	ck_assert_int_eq(envdb_env_database(&db, ctx, "acme", "lite"), ENVDB_OK);
	ck_assert_ptr_null(strchr(db->database_url, '?'));
	snprintf(want, sizeof(want), "%s?mode=ro", db->database_url);
	for (int pass = 0; pass < 2; pass++) { /* the second from the cache */
		envdb_connection *c = NULL;

		ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "lite", "rita"), ENVDB_OK);
		ck_assert_str_eq(c->authorization, "read_only");
		ck_assert_str_eq(c->database_url, want);
		ck_assert_str_eq(c->credential_handle, "?mode=ro");
		envdb_connection_free(c);
		ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "lite", "alice"), ENVDB_OK);
		ck_assert_str_eq(c->authorization, "full_access");
		ck_assert_str_eq(c->database_url, db->database_url);
		envdb_connection_free(c);
	}
	envdb_database_free(db);
	envdb_close(ctx);
}
END_TEST

static void set_status(const char *slug, const char *status)
{
	char stmt[256], err[256] = "";

	snprintf(stmt, sizeof(stmt), "UPDATE sys_environment SET status = '%s' WHERE slug = '%s'",
		 status, slug);
	ck_assert_msg(sm_exec(T.control, stmt, err, sizeof err) == 0, "%s: %s", stmt, err);
}

static int killed_provision(void *arg)
{
	envdb_ctx *ctx = NULL;

	(void)arg;
	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		return 90;
	td_failpoints("provision.after_create=kill");
	td_provision(ctx, "acme", "half", NULL, "alice");
	envdb_close(ctx);
	return 91;
}

START_TEST(test_states_that_do_not_resolve)
{
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "stg", NULL, "alice"), ENVDB_OK);
	envdb_close(ctx);

	/* suspended, migrating (set directly: no API makes them here) */
	set_status("stg", "suspended");
	ctx = td_open(&T);
	ck_assert_int_eq(resolve(ctx, "stg", "alice", NULL, NULL), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "suspended"));
	envdb_close(ctx);
	set_status("stg", "migrating");
	ctx = td_open(&T);
	ck_assert_int_eq(resolve(ctx, "stg", "alice", NULL, NULL), ENVDB_ERR_STATE);

	/* failed: a provisioning whose compensation could not drop */
	td_fail_at(&T, "mint,drop");
	ck_assert_int_ne(td_provision(ctx, "acme", "broken", NULL, "alice"), ENVDB_OK);
	td_fail_at(&T, NULL);
	ck_assert_int_eq(resolve(ctx, "broken", "alice", NULL, NULL), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "failed"));

	/* archived */
	ck_assert_int_eq(envdb_env_archive(ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_int_eq(resolve(ctx, "dev", "alice", NULL, NULL), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "archived"));
	envdb_close(ctx);

#ifdef ENVDB_FAILPOINTS
	/* provisioning: a process died mid-way */
	{
		int st = td_fork(killed_provision, NULL);

		ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		ctx = td_open(&T);
		ck_assert_int_eq(resolve(ctx, "half", "alice", NULL, NULL), ENVDB_ERR_STATE);
		ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "provisioning"));
		envdb_close(ctx);
	}
#else
	(void)killed_provision;
	fprintf(stderr, "SKIP provisioning state: failpoints not compiled in\n");
#endif
}
END_TEST

START_TEST(test_cache_hit_then_invalidated_by_member_removal)
{
	envdb_ctx *ctx = td_open(&T), *other;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	add_member(ctx, "dev", "bob", "maker");
	add_member(ctx, "dev", "carol", "maker");
	expect_auth(ctx, "dev", "bob", "full_access");
	expect_auth(ctx, "dev", "carol", "full_access");

	/* Another process removes bob: on an SQLite file this context still
	 * answers from its cache (a hit, no SQL) until the TTL ends; on a
	 * PostgreSQL control plane the commit is notified to every cache
	 * (LISTEN/NOTIFY), which drops bob's entry within milliseconds. */
	other = td_open(&T);
	ck_assert_int_eq(envdb_member_remove(other, "acme", "dev", "bob"), ENVDB_OK);
	envdb_close(other);
	if (sm_pg()) {
		int rc = ENVDB_OK;
		for (int i = 0; i < 500 && (rc = resolve(ctx, "dev", "bob", NULL, NULL)) == ENVDB_OK;
		     i++)
			usleep(10000);
		ck_assert_int_eq(rc, ENVDB_ERR_PERMISSION);
	} else {
		expect_auth(ctx, "dev", "bob", "full_access");
	}

	/* A change made through this context invalidates at once. */
	ck_assert_int_eq(envdb_member_remove(ctx, "acme", "dev", "carol"), ENVDB_OK);
	ck_assert_int_eq(resolve(ctx, "dev", "carol", NULL, NULL), ENVDB_ERR_PERMISSION);
	/* ...and drops every entry of the environment, bob's included. */
	ck_assert_int_eq(resolve(ctx, "dev", "bob", NULL, NULL), ENVDB_ERR_PERMISSION);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_cache_role_change)
{
	envdb_member_opts mo = ENVDB_MEMBER_OPTS_INIT;
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	add_member(ctx, "dev", "bob", "admin");
	expect_auth(ctx, "dev", "bob", "full_access");
	mo.flags = ENVDB_MEMBER_UPDATE;
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "dev", "bob", "reader", &mo), ENVDB_OK);
	expect_auth(ctx, "dev", "bob", "read_only");
	envdb_close(ctx);
}
END_TEST

START_TEST(test_cache_invalidated_by_rotation)
{
	envdb_ctx *ctx = td_open(&T);
	char *s1 = NULL, *s2 = NULL, *s3 = NULL;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(resolve(ctx, "dev", "alice", NULL, &s1), ENVDB_OK);
	ck_assert_int_eq(resolve(ctx, "dev", "alice", NULL, &s2), ENVDB_OK);
	ck_assert_str_eq(s1, s2);
	free(s2);
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", NULL), ENVDB_OK);
	ck_assert_int_eq(resolve(ctx, "dev", "alice", NULL, &s2), ENVDB_OK);
	ck_assert_str_ne(s1, s2);
	/* Completion drops the previous secret from the cached answer. */
	{
		envdb_connection *c = NULL;

		ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_OK);
		ck_assert_ptr_nonnull(c->previous_secret);
		ck_assert_str_eq(c->previous_secret, s1);
		envdb_connection_free(c);
		ck_assert_int_eq(envdb_cred_complete(NULL, ctx, "acme", "dev"), ENVDB_OK);
		ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "dev", "alice"), ENVDB_OK);
		ck_assert_ptr_null(c->previous_secret);
		ck_assert_str_eq(c->secret, s2);
		envdb_connection_free(c);
	}
	ck_assert_int_eq(resolve(ctx, "dev", "alice", NULL, &s3), ENVDB_OK);
	ck_assert_str_eq(s2, s3);
	free(s1);
	free(s2);
	free(s3);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_cache_invalidated_by_archive_and_delete)
{
	envdb_ctx *ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "tmp", NULL, "alice"), ENVDB_OK);
	expect_auth(ctx, "dev", "alice", "full_access");
	expect_auth(ctx, "tmp", "alice", "full_access");
	ck_assert_int_eq(envdb_env_archive(ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_int_eq(resolve(ctx, "dev", "alice", NULL, NULL), ENVDB_ERR_STATE);
	ck_assert_int_eq(envdb_env_delete(ctx, "acme", "tmp", 0), ENVDB_OK);
	ck_assert_int_eq(resolve(ctx, "tmp", "alice", NULL, NULL), ENVDB_ERR_STATE);
	ck_assert_int_eq(envdb_env_delete(ctx, "acme", "tmp", ENVDB_DELETE_NOW), ENVDB_OK);
	ck_assert_int_eq(resolve(ctx, "tmp", "alice", NULL, NULL), ENVDB_ERR_NOT_FOUND);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_cache_ttl_and_disabled)
{
	td_opts o = TD_OPTS_INIT;
	envdb_ctx *ctx, *other;

	/* Short TTL: another process's change shows once it ends. */
	td_teardown(&T);
	o.cache_ttl_ms = 300;
	td_setup(&T, &o);
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	add_member(ctx, "dev", "bob", "maker");
	expect_auth(ctx, "dev", "bob", "full_access");
	other = td_open(&T);
	ck_assert_int_eq(envdb_member_remove(other, "acme", "dev", "bob"), ENVDB_OK);
	if (!sm_pg()) /* PostgreSQL notifies at once (test_cache_ttl_without_notifications) */
		expect_auth(ctx, "dev", "bob", "full_access");
	usleep(400 * 1000);
	ck_assert_int_eq(resolve(ctx, "dev", "bob", NULL, NULL), ENVDB_ERR_PERMISSION);
	envdb_close(ctx);
	envdb_close(other);

	/* Cache disabled: every resolve reads the control plane. */
	td_teardown(&T);
	o.cache_size = 0;
	o.cache_ttl_ms = 60000;
	td_setup(&T, &o);
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	add_member(ctx, "dev", "bob", "maker");
	expect_auth(ctx, "dev", "bob", "full_access");
	other = td_open(&T);
	ck_assert_int_eq(envdb_member_remove(other, "acme", "dev", "bob"), ENVDB_OK);
	envdb_close(other);
	ck_assert_int_eq(resolve(ctx, "dev", "bob", NULL, NULL), ENVDB_ERR_PERMISSION);
	envdb_close(ctx);
}
END_TEST

/* PostgreSQL: a host whose notification channel does not work (here: the
 * role may open no second connection) says so and falls back to the TTL;
 * once the channel works again, other hosts' changes invalidate at once
 * again.  The notified invalidation itself is measured here: the time
 * from another session's COMMIT to this cache dropping the entry. */
START_TEST(test_cache_ttl_without_notifications)
{
	td_opts o = TD_OPTS_INIT;
	envdb_ctx *ctx;
	char log[PATH_MAX + 16], sql[PATH_MAX + 128], text[8192] = "";
	int saved, fd, rc = ENVDB_OK;
	FILE *f;
	size_t len;

	/* The TTL must outlast the steps between the cache's fill and the
	 * stale read below, also under valgrind and on a loaded machine. */
	int64_t ttl_ms = getenv("ENVDB_VALGRIND") != NULL ? 6000 : 1500;

	td_teardown(&T);
	o.cache_ttl_ms = ttl_ms;
	td_setup(&T, &o);
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	add_member(ctx, "dev", "bob", "maker");
	add_member(ctx, "dev", "carol", "maker");
	/* the context has its connection; the cache's watch gets none */
	ck_assert_int_eq(sm_pg_exec_super("ALTER ROLE envdb_cp CONNECTION LIMIT 1", NULL, 0), 0);
	snprintf(log, sizeof log, "%s/stderr.log", T.dir);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	saved = dup(2);
	dup2(fd, 2);
	expect_auth(ctx, "dev", "bob", "full_access"); /* makes the cache */
	fflush(stderr);
	f = fopen(log, "r");
	ck_assert_ptr_nonnull(f);
	len = fread(text, 1, sizeof text - 1, f);
	text[len] = '\0';
	fclose(f);
	ck_assert_msg(strstr(text, "no cross-host resolve-cache invalidation") != NULL &&
			      strstr(text, "TTL") != NULL,
		      "no fallback warning in: %s", text);
	/* another session removes bob: stale here until the TTL ends */
	snprintf(sql, sizeof sql,
		 "DELETE FROM %s.sys_environment_member WHERE user_id = 'bob'", T.control);
	ck_assert_int_eq(sm_pg_exec_super(sql, NULL, 0), 0);
	expect_auth(ctx, "dev", "bob", "full_access");
	usleep((useconds_t)(ttl_ms + 200) * 1000);
	ck_assert_int_eq(resolve(ctx, "dev", "bob", NULL, NULL), ENVDB_ERR_PERMISSION);
	/* the channel works again: the watch reconnects by itself */
	ck_assert_int_eq(sm_pg_exec_super("ALTER ROLE envdb_cp CONNECTION LIMIT -1", NULL, 0), 0);
	for (int i = 0; i < 100 && strstr(text, "invalidation restored") == NULL; i++) {
		usleep(100 * 1000); /* its back-off is at most 2 s */
		f = fopen(log, "r");
		ck_assert_ptr_nonnull(f);
		len = fread(text, 1, sizeof text - 1, f);
		text[len] = '\0';
		fclose(f);
	}
	dup2(saved, 2);
	close(saved);
	close(fd);
	ck_assert_msg(strstr(text, "invalidation restored") != NULL, "not restored: %s", text);
	expect_auth(ctx, "dev", "carol", "full_access");
	snprintf(sql, sizeof sql,
		 "DELETE FROM %s.sys_environment_member WHERE user_id = 'carol'", T.control);
	ck_assert_int_eq(sm_pg_exec_super(sql, NULL, 0), 0);
	for (int i = 0; i < 200 && (rc = resolve(ctx, "dev", "carol", NULL, NULL)) == ENVDB_OK; i++)
		usleep(1000); /* well inside the TTL */
	ck_assert_int_eq(rc, ENVDB_ERR_PERMISSION);
	envdb_close(ctx);
}
END_TEST

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* PostgreSQL: the server restarts under a running deployment.  A
 * transaction open across the restart fails clearly and leaves nothing;
 * the next calls reconnect; the resolve cache's watch comes back by
 * itself (it dropped everything it held, as it may have missed changes)
 * and another process's change invalidates at once again. */
START_TEST(test_server_restart)
{
	envdb_ctx *ctx = td_open(&T), *other;
	envdbi_cache_stats st;
	int rc = ENVDB_OK;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	add_member(ctx, "dev", "bob", "maker");
	add_member(ctx, "dev", "carol", "maker");
	expect_auth(ctx, "dev", "bob", "full_access");
	ck_assert_int_eq(envdbi_store_begin(ctx->store), ENVDB_OK);
	sm_pg_restart();
	ck_assert_int_ne(envdb_member_add(ctx, "acme", "dev", "dave", "reader", NULL), ENVDB_OK);
	ck_assert_int_eq(envdbi_store_commit(ctx->store), ENVDB_ERR_IO);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "connection lost"));
	/* reconnected: the calls work, dave was never added */
	ck_assert_int_eq(resolve(ctx, "dev", "dave", NULL, NULL), ENVDB_ERR_PERMISSION);
	ck_assert_int_eq(td_provision(ctx, "acme", "after", NULL, "alice"), ENVDB_OK);
	/* the watch is back: everything it held was dropped, and a change of
	 * another process invalidates at once */
	for (int i = 0; i < 100; i++) {
		envdbi_cache_get_stats(&st, ctx->cache);
		if (st.size == 0)
			break;
		usleep(50 * 1000);
	}
	usleep(2500 * 1000); /* the watch reconnects within its 2 s back-off */
	expect_auth(ctx, "dev", "carol", "full_access");
	other = td_open(&T);
	ck_assert_int_eq(envdb_member_remove(other, "acme", "dev", "carol"), ENVDB_OK);
	envdb_close(other);
	for (int i = 0; i < 500 && (rc = resolve(ctx, "dev", "carol", NULL, NULL)) == ENVDB_OK; i++)
		usleep(1000);
	ck_assert_int_eq(rc, ENVDB_ERR_PERMISSION);
	ck_assert_uint_eq(td_check(ctx), 0);
	envdb_close(ctx);
}
END_TEST

#define LATENCY_ROUNDS 200

/* PostgreSQL: the bound of cross-host invalidation.  Another process (its
 * own connection and cache: another host as far as the control plane
 * knows) changes bob's role; the time from its COMMIT returning to this
 * cache having dropped the entry, over LATENCY_ROUNDS changes, printed as
 * p50/p99 (figure of the issue).  The TTL is a minute: every drop seen
 * here is the notification's. */
START_TEST(test_cross_host_invalidation_latency)
{
	envdb_ctx *ctx;
	envdbi_cache_stats st;
	int go[2], done[2];
	int64_t lat[LATENCY_ROUNDS];
	pid_t pid;

	/* A figure, meaningless under valgrind, where the forked writer (a
	 * copy of this process, its context included) would also count the
	 * copy it never frees as lost at its _exit.  The watch itself is
	 * checked under valgrind by the other PostgreSQL cases. */
	if (getenv("ENVDB_VALGRIND") != NULL)
		return;
	ctx = td_open(&T);

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	add_member(ctx, "dev", "bob", "maker");
	expect_auth(ctx, "dev", "bob", "full_access"); /* the cache and its watch */
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(done), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		envdb_member_opts mo = ENVDB_MEMBER_OPTS_INIT;
		envdb_ctx *w = NULL;
		char c;

		mo.flags = ENVDB_MEMBER_UPDATE;
		if (envdb_open(&w, T.manifest, 0) != ENVDB_OK)
			_exit(2);
		for (int i = 0; i < LATENCY_ROUNDS; i++) {
			int64_t t;
			if (read(go[0], &c, 1) != 1)
				_exit(3);
			if (envdb_member_add(w, "acme", "dev", "bob", i % 2 ? "maker" : "admin",
					     &mo) != ENVDB_OK)
				_exit(4);
			t = now_ns();
			if (write(done[1], &t, sizeof t) != (ssize_t)sizeof t)
				_exit(5);
		}
		envdb_close(w);
		_exit(0);
	}
	for (int i = 0; i < LATENCY_ROUNDS; i++) {
		uint64_t before;
		int64_t t_commit, t_seen;

		expect_auth(ctx, "dev", "bob", "full_access"); /* cached again */
		envdbi_cache_get_stats(&st, ctx->cache);
		before = st.remote_invalidations;
		ck_assert_int_eq(write(go[1], "g", 1), 1);
		for (int spin = 0;; spin++) {
			envdbi_cache_get_stats(&st, ctx->cache);
			if (st.remote_invalidations > before)
				break;
			ck_assert_msg(spin < 2000000, "round %d: no invalidation in 10 s", i);
			usleep(5);
		}
		t_seen = now_ns();
		ck_assert_int_eq(read(done[0], &t_commit, sizeof t_commit), (ssize_t)sizeof t_commit);
		lat[i] = t_seen > t_commit ? t_seen - t_commit : 0;
	}
	{
		int status = 0;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	qsort(lat, LATENCY_ROUNDS, sizeof lat[0], cmp_i64);
	fprintf(stderr,
		"cross-host cache invalidation (COMMIT returned -> entry dropped), %d changes: "
		"p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
		LATENCY_ROUNDS, lat[LATENCY_ROUNDS / 2] / 1e6, lat[LATENCY_ROUNDS * 99 / 100] / 1e6,
		lat[LATENCY_ROUNDS - 1] / 1e6);
	/* the bound: far inside the TTL (60 s here) */
	ck_assert_int_lt(lat[LATENCY_ROUNDS * 99 / 100], 1000 * 1000000LL);
	close(go[0]);
	close(go[1]);
	close(done[0]);
	close(done[1]);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_cache_bounded)
{
	td_opts o = TD_OPTS_INIT;
	envdb_ctx *ctx;
	char user[32];
	int i;

	/* More users than entries: every answer stays right while entries are
	 * evicted (LRU) and refilled. */
	td_teardown(&T);
	o.cache_size = 3;
	td_setup(&T, &o);
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	for (i = 0; i < 8; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		add_member(ctx, "dev", user, i % 2 ? "reader" : "maker");
	}
	for (i = 0; i < 40; i++) {
		snprintf(user, sizeof(user), "user%d", (i * 5) % 8);
		expect_auth(ctx, "dev", user, ((i * 5) % 8) % 2 ? "read_only" : "full_access");
	}
	envdb_close(ctx);
}
END_TEST

/* Many keys over several environments in a small cache: entries are
 * evicted and refilled, and invalidating one environment (a rotation) drops
 * exactly its entries: its users get the new secret, the others keep
 * theirs.  Closing frees more entries than one secure chunk holds. */
START_TEST(test_cache_many_environments)
{
	static const char *const slugs[4] = {"e0", "e1", "e2", "e3"};
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	td_opts o = TD_OPTS_INIT;
	char user[32], *before[4], *after = NULL, *sec = NULL;
	envdb_ctx *ctx;
	int e, u, pass;

	td_teardown(&T);
	o.cache_size = 64;
	td_setup(&T, &o);
	ctx = td_open(&T);
	for (e = 0; e < 4; e++) {
		ck_assert_int_eq(td_provision(ctx, "acme", slugs[e], NULL, "alice"), ENVDB_OK);
		for (u = 0; u < 40; u++) {
			snprintf(user, sizeof(user), "u%02d", u);
			add_member(ctx, slugs[e], user, u % 2 ? "reader" : "maker");
		}
	}
	/* 160 keys through a cache of 64, twice; environment e2 last. */
	for (pass = 0; pass < 2; pass++)
		for (e = 0; e < 4; e++) {
			int env = (e + 3) % 4; /* e3, e0, e1, e2 */

			for (u = 0; u < 40; u++) {
				snprintf(user, sizeof(user), "u%02d", u);
				expect_auth(ctx, slugs[env], user, u % 2 ? "read_only" : "full_access");
			}
		}
	for (e = 0; e < 4; e++)
		ck_assert_int_eq(resolve(ctx, slugs[e], "u00", NULL, &before[e]), ENVDB_OK);
	ro.overlap_seconds = 0;
	ro.authorization = "full_access";
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "e2", &ro), ENVDB_OK);
	for (u = 0; u < 40; u += 2) {
		snprintf(user, sizeof(user), "u%02d", u);
		ck_assert_int_eq(resolve(ctx, "e2", user, NULL, &after), ENVDB_OK);
		ck_assert_str_ne(after, before[2]);
		free(after);
	}
	for (e = 0; e < 4; e++) {
		if (e == 2)
			continue;
		ck_assert_int_eq(resolve(ctx, slugs[e], "u00", NULL, &sec), ENVDB_OK);
		ck_assert_str_eq(sec, before[e]);
		free(sec);
	}
	for (e = 0; e < 4; e++)
		free(before[e]);
	envdb_close(ctx);
}
END_TEST

static int64_t last_accessed_of(envdb_ctx *ctx, const char *slug)
{
	envdb_database *d = NULL;
	int64_t t;

	ck_assert_int_eq(envdb_env_database(&d, ctx, "acme", slug), ENVDB_OK);
	t = d->last_accessed_at;
	envdb_database_free(d);
	return t;
}

static int64_t last_accessed(envdb_ctx *ctx)
{
	return last_accessed_of(ctx, "dev");
}

/* Give ctx its cache now (a resolve that fails still creates it) and set
 * its flusher's batch and interval. */
static void cache_with_flush(envdb_ctx *ctx, size_t batch, int64_t interval_ms)
{
	envdb_connection *c = NULL;

	ck_assert_int_ne(envdb_resolve(&c, ctx, "acme", "no-such-env", "nobody"), ENVDB_OK);
	ck_assert_ptr_nonnull(ctx->cache);
	envdbi_cache_set_flush(ctx->cache, batch, interval_ms);
}

START_TEST(test_last_accessed_coalesced)
{
	envdb_ctx *ctx = td_open(&T), *reader = td_open(&T);
	int64_t t0, now = (int64_t)time(NULL);

	/* The flusher never writes by itself here: only explicit flushes. */
	cache_with_flush(ctx, 1000000, (int64_t)3600 * 1000);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(last_accessed(reader), 0);
	expect_auth(ctx, "dev", "alice", "full_access");
	/* The resolve queued the write and did not make it. */
	ck_assert_int_eq(last_accessed(reader), 0);
	ck_assert_int_eq(envdbi_cache_flush_touches(ctx->cache), ENVDB_OK);
	t0 = last_accessed(reader);
	ck_assert_int_ge(t0, now);
	ck_assert_int_le(t0, now + 5);
	/* Within the minute: no write. */
	td_clock_ahead(30);
	expect_auth(ctx, "dev", "alice", "full_access");
	ck_assert_int_eq(envdbi_cache_flush_touches(ctx->cache), ENVDB_OK);
	ck_assert_int_eq(last_accessed(reader), t0);
	/* After it: one write. */
	td_clock_ahead(90);
	expect_auth(ctx, "dev", "alice", "full_access");
	ck_assert_int_eq(envdbi_cache_flush_touches(ctx->cache), ENVDB_OK);
	ck_assert_int_ge(last_accessed(reader), now + 90);
	/* Within the minute again: not due, not even at close. */
	td_clock_ahead(100);
	expect_auth(ctx, "dev", "alice", "full_access");
	ck_assert_int_eq(envdbi_cache_flush_touches(ctx->cache), ENVDB_OK);
	ck_assert_int_lt(last_accessed(reader), now + 100);
	/* Due and queued: written when the context closes. */
	td_clock_ahead(160);
	expect_auth(ctx, "dev", "alice", "full_access");
	ck_assert_int_lt(last_accessed(reader), now + 100);
	envdb_close(ctx);
	ck_assert_int_ge(last_accessed(reader), now + 160);
	td_clock_ahead(0);
	envdb_close(reader);
}
END_TEST

/* Issue 18: a resolve, cold or cached, makes no disk sync on the caller's
 * thread (it made one fdatasync per database, for last_accessed_at), and
 * close writes what is pending in one transaction (it made one per
 * database). */
START_TEST(test_resolve_does_not_sync)
{
	static const char *const slugs[] = {"dev", "test", "stage", "qa"};
	/* keeper holds the WAL open, so that a commit is one fdatasync (a new
	 * log also syncs its header and its directory). */
	envdb_ctx *ctx = td_open(&T), *keeper = td_open(&T);
	sync_counts t0, t1, p0, p1;
	size_t i;
	int round;

	for (i = 0; i < 4; i++)
		ck_assert_int_eq(td_provision(ctx, "acme", slugs[i], NULL, "alice"), ENVDB_OK);
	envdb_close(ctx);
	ctx = td_open(&T);
	sync_count_get(&p0);
	for (round = 0; round < 2; round++) /* cold, then cached */
		for (i = 0; i < 4; i++) {
			sync_count_get_thread(&t0);
			expect_auth(ctx, slugs[i], "alice", "full_access");
			sync_count_get_thread(&t1);
			ck_assert_msg(t1.total == t0.total, "resolve %s (round %d) synced %llu times",
				      slugs[i], round, (unsigned long long)(t1.total - t0.total));
		}
	/* What envdb_close() does first (then the store's own checkpoint). */
	envdbi_cache_free(ctx->cache);
	ctx->cache = NULL;
	sync_count_get(&p1);
	envdb_close(ctx);
	/* One commit at close (or one by the flusher, and one at close). */
	ck_assert_uint_le(p1.total - p0.total, 2);
	ck_assert_uint_ge(p1.total - p0.total, 1);
	ctx = td_open(&T);
	for (i = 0; i < 4; i++)
		ck_assert_int_gt(last_accessed_of(ctx, slugs[i]), 0);
	envdb_close(ctx);
	envdb_close(keeper);
}
END_TEST

/* The flusher writes a full batch, and a batch whose interval is over,
 * without a close, each in one transaction. */
START_TEST(test_last_accessed_flusher)
{
	envdb_ctx *ctx = td_open(&T), *reader = td_open(&T);
	envdbi_cache_stats st;
	int i;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "test", NULL, "alice"), ENVDB_OK);
	cache_with_flush(ctx, 2, (int64_t)3600 * 1000);
	expect_auth(ctx, "dev", "alice", "full_access");
	ck_assert_int_eq(last_accessed_of(reader, "dev"), 0);
	expect_auth(ctx, "test", "alice", "full_access"); /* the batch is full */
	for (i = 0; i < 1000; i++) {
		envdbi_cache_get_stats(&st, ctx->cache);
		if (st.touch_flushes > 0)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(st.touch_flushes, 1);
	ck_assert_uint_eq(st.touch_writes, 2);
	ck_assert_int_gt(last_accessed_of(reader, "dev"), 0);
	ck_assert_int_gt(last_accessed_of(reader, "test"), 0);
	/* One pending, and its interval (50 ms) ends. */
	envdbi_cache_set_flush(ctx->cache, 1000, 50);
	td_clock_ahead(120);
	expect_auth(ctx, "dev", "alice", "full_access");
	for (i = 0; i < 1000; i++) {
		envdbi_cache_get_stats(&st, ctx->cache);
		if (st.touch_flushes > 1)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(st.touch_flushes, 2);
	ck_assert_uint_eq(st.touch_writes, 3);
	ck_assert_int_ge(last_accessed_of(reader, "dev"), (int64_t)time(NULL) + 100);
	envdb_close(ctx);
	td_clock_ahead(0);
	envdb_close(reader);
}
END_TEST

typedef struct thread_arg {
	envdb_ctx *ctx;
	int errors;
	int resolved;
} thread_arg;

static void *resolver(void *p)
{
	thread_arg *a = p;
	int i;

	for (i = 0; i < 150; i++) {
		envdb_connection *c = NULL;
		const char *user = i % 3 == 0 ? "alice" : i % 3 == 1 ? "rita" : "mike";

		if (envdb_resolve(&c, a->ctx, "acme", "dev", user) != ENVDB_OK ||
		    c->secret_len == 0 || strlen(c->secret) != c->secret_len)
			a->errors++;
		else
			a->resolved++;
		envdb_connection_free(c);
	}
	return NULL;
}

START_TEST(test_concurrent_resolves)
{
	envdb_ctx *ctx = td_open(&T);
	pthread_t th[4];
	thread_arg args[4];
	int i;

	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	add_member(ctx, "dev", "rita", "reader");
	add_member(ctx, "dev", "mike", "maker");
	for (i = 0; i < 4; i++) {
		args[i].ctx = ctx;
		args[i].errors = args[i].resolved = 0;
		ck_assert_int_eq(pthread_create(&th[i], NULL, resolver, &args[i]), 0);
	}
	/* Rotations and membership changes while they run. */
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "dev", NULL), ENVDB_OK);
		add_member(ctx, "dev", "tmp", "guest");
		ck_assert_int_eq(envdb_member_remove(ctx, "acme", "dev", "tmp"), ENVDB_OK);
	}
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_int_eq(args[i].errors, 0);
		ck_assert_int_eq(args[i].resolved, 150);
	}
	/* After the dust settles every user gets the latest secrets. */
	{
		char *a = NULL, *b = NULL;
		envdb_ctx *fresh = td_open(&T);

		ck_assert_int_eq(resolve(ctx, "dev", "rita", NULL, &a), ENVDB_OK);
		ck_assert_int_eq(resolve(fresh, "dev", "rita", NULL, &b), ENVDB_OK);
		ck_assert_str_eq(a, b);
		free(a);
		free(b);
		envdb_close(fresh);
	}
	envdb_close(ctx);
}
END_TEST

static Suite *resolve_suite(void)
{
	Suite *s = suite_create("resolve");
	TCase *tc = tcase_create("authorization");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_connection_fields);
	tcase_add_test(tc, test_credential_handle);
	tcase_add_test(tc, test_roles_decide_authorization);
	tcase_add_test(tc, test_reader_never_gets_full_access);
	tcase_add_test(tc, test_reader_url_carries_query_handle);
	tcase_add_test(tc, test_states_that_do_not_resolve);
	suite_add_tcase(s, tc);

	tc = tcase_create("cache");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_cache_hit_then_invalidated_by_member_removal);
	tcase_add_test(tc, test_cache_role_change);
	tcase_add_test(tc, test_cache_invalidated_by_rotation);
	tcase_add_test(tc, test_cache_invalidated_by_archive_and_delete);
	tcase_add_test(tc, test_cache_ttl_and_disabled);
	if (sm_pg()) {
		tcase_add_test(tc, test_cache_ttl_without_notifications);
		tcase_add_test(tc, test_cross_host_invalidation_latency);
		tcase_add_test(tc, test_server_restart);
	}
	tcase_add_test(tc, test_cache_bounded);
	tcase_add_test(tc, test_cache_many_environments);
	tcase_add_test(tc, test_last_accessed_coalesced);
	tcase_add_test(tc, test_siphash);
	/* the fsyncs of this process: an SQLite file's (a server syncs its own) */
	if (!sm_pg())
		tcase_add_test(tc, test_resolve_does_not_sync);
	tcase_add_test(tc, test_last_accessed_flusher);
	tcase_add_test(tc, test_concurrent_resolves);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(resolve_suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
