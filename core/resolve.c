/*
 * core/resolve.c — envdb_resolve(): an environment and a user to the
 * driver, URL and decrypted secret a data-plane router needs (DESIGN.md §6),
 * and the cache that keeps that hot path free of SQL.
 *
 * The cache is a hash map (chained, SipHash-2-4 with a per-cache random key,
 * so user-chosen names cannot flood one bucket) over a doubly linked LRU
 * list; every entry lives ttl_ms.  Cached secrets sit in slots of a slab of
 * secure memory (locked, guarded, wiped on release): one guarded mapping
 * per 64 slots instead of one per secret, so a full cache does not exhaust
 * the process's mappings or locked-memory budget.  A hit copies the entry
 * into one secure allocation (the returned envdb_connection) and makes no
 * other allocation and no SQL.
 *
 * A miss reads the control plane and decrypts; before it stores its result
 * it checks that no invalidation happened meanwhile (a generation counter),
 * so a result read before a rotation can never be cached after it.
 *
 * last_accessed_at: each database has a touch record (when it was last
 * resolved, and last written); a resolve writes only when the last write is
 * ENVDBI_TOUCH_INTERVAL_S old, and envdbi_cache_free() writes what is
 * pending.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "failpoint.h"
#include "internal.h"
#include "resolve.h"
#include "store.h"

#define SLOT_SIZE 256
#define SLOTS_PER_CHUNK 64
/* Longest "org\0slug\0user" key that is cached (longer ones bypass it). */
#define KEY_MAX 512

/* ------------------------------------------------------------------------ */
/* Secure slots                                                              */
/* ------------------------------------------------------------------------ */

typedef struct sec_chunk {
	struct sec_chunk *next;
	char *mem; /* SLOTS_PER_CHUNK * SLOT_SIZE bytes of secure memory */
} sec_chunk;

typedef struct sec_slab {
	sec_chunk *chunks;
	char **free_slots; /* stack of free slot pointers */
	size_t n_free, cap_free;
} sec_slab;

/* A secret held by the cache: a slot, or its own secure allocation when it
 * does not fit one. */
typedef struct cached_secret {
	char *data;
	size_t len;
	bool own; /* data came from envdbi_secure_alloc, not a slot */
} cached_secret;

static int slab_grow(sec_slab *s)
{
	sec_chunk *c;
	size_t i;

	if (s->n_free + SLOTS_PER_CHUNK > s->cap_free) {
		size_t cap = s->cap_free ? s->cap_free * 2 : SLOTS_PER_CHUNK;
		char **v;

		while (cap < s->n_free + SLOTS_PER_CHUNK)
			cap *= 2;
		v = realloc(s->free_slots, cap * sizeof(*v));
		if (v == NULL)
			return ENVDB_ERR_NOMEM;
		s->free_slots = v;
		s->cap_free = cap;
	}
	c = malloc(sizeof(*c));
	if (c == NULL)
		return ENVDB_ERR_NOMEM;
	c->mem = envdbi_secure_alloc(SLOTS_PER_CHUNK * SLOT_SIZE);
	if (c->mem == NULL) {
		free(c);
		return ENVDB_ERR_NOMEM;
	}
	c->next = s->chunks;
	s->chunks = c;
	for (i = 0; i < SLOTS_PER_CHUNK; i++)
		s->free_slots[s->n_free++] = c->mem + i * SLOT_SIZE;
	return ENVDB_OK;
}

static int secret_put(cached_secret *out, sec_slab *s, const char *data, size_t len)
{
	if (len + 1 > SLOT_SIZE) {
		out->data = envdbi_secure_alloc(len + 1);
		if (out->data == NULL)
			return ENVDB_ERR_NOMEM;
		out->own = true;
	} else {
		if (s->n_free == 0 && slab_grow(s) != ENVDB_OK)
			return ENVDB_ERR_NOMEM;
		out->data = s->free_slots[--s->n_free];
		out->own = false;
	}
	memcpy(out->data, data, len);
	out->data[len] = '\0';
	out->len = len;
	return ENVDB_OK;
}

static void secret_release(cached_secret *cs, sec_slab *s)
{
	if (cs->data == NULL)
		return;
	if (cs->own) {
		envdbi_secure_free(cs->data);
	} else {
		sodium_memzero(cs->data, SLOT_SIZE);
		/* The stack has room: it holds every slot ever made. */
		s->free_slots[s->n_free++] = cs->data;
	}
	cs->data = NULL;
	cs->len = 0;
}

static void slab_free(sec_slab *s)
{
	while (s->chunks != NULL) {
		sec_chunk *c = s->chunks;

		s->chunks = c->next;
		envdbi_secure_free(c->mem);
		free(c);
	}
	free(s->free_slots);
	memset(s, 0, sizeof(*s));
}

/* ------------------------------------------------------------------------ */
/* A resolve result (borrowed strings)                                       */
/* ------------------------------------------------------------------------ */

enum {
	F_ENV_ID, F_ORG, F_SLUG, F_DRIVER, F_DB_NAME, F_URL, F_ROLE, F_AUTH, F_CRED_ID,
	F_PREV_CRED_ID, F_CRED_HANDLE, F_PREV_CRED_HANDLE, F_DB_ID, F__N
};

/* F_CRED_HANDLE is never NULL ("" when the adapter has no handle);
 * F_PREV_CRED_ID and F_PREV_CRED_HANDLE are both NULL, or both set. */
typedef struct resolved {
	const char *f[F__N];
	const char *secret;
	size_t secret_len;
	int64_t expires_at;
	const char *prev_secret; /* NULL when no rotation is in its window */
	size_t prev_secret_len;
	int64_t prev_expires_at;
} resolved;

/* ------------------------------------------------------------------------ */
/* The cache                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct touch_rec {
	struct touch_rec *next;
	char db_id[37];
	int64_t last_access;  /* epoch s of the last resolve */
	int64_t last_written; /* epoch s last written to the store */
} touch_rec;

typedef struct cache_entry {
	struct cache_entry *hnext;
	struct cache_entry *lru_prev, *lru_next;
	uint64_t hash;
	size_t key_len;
	int64_t deadline_ms;
	char *blob;          /* key, then the strings of r (one malloc) */
	resolved r;          /* strings point into blob, secrets into sec/prev */
	cached_secret sec, prev;
	touch_rec *touch;
} cache_entry;

struct envdbi_cache {
	pthread_mutex_t lock;
	envdbi_store *store; /* borrowed */
	size_t capacity;
	int64_t ttl_ms;
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	cache_entry **buckets;
	size_t n_buckets; /* power of two */
	cache_entry *lru_head, *lru_tail; /* head: most recently used */
	size_t size;
	uint64_t generation; /* bumped by every invalidation */
	sec_slab slab;
	touch_rec *touches;
	envdbi_cache_stats stats;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int envdbi_cache_new(envdbi_cache **out, envdbi_store *store, int64_t capacity, int64_t ttl_ms)
{
	envdbi_cache *c;
	int rc;

	if (out == NULL || capacity < 0 || ttl_ms < 0)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "resolve cache: invalid parameters");
	*out = NULL;
	if ((rc = envdbi_sodium_init()) != ENVDB_OK)
		return rc;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "resolve cache: out of memory");
	c->store = store;
	c->capacity = ttl_ms == 0 ? 0 : (size_t)capacity;
	c->ttl_ms = ttl_ms;
	randombytes_buf(c->hash_key, sizeof(c->hash_key));
	if (c->capacity > 0) {
		c->n_buckets = 16;
		while (c->n_buckets < c->capacity + c->capacity / 3)
			c->n_buckets *= 2;
		c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
		if (c->buckets == NULL) {
			free(c);
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "resolve cache: out of memory");
		}
	}
	pthread_mutex_init(&c->lock, NULL);
	c->stats.capacity = c->capacity;
	*out = c;
	return ENVDB_OK;
}

static void lru_unlink(envdbi_cache *c, cache_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(envdbi_cache *c, cache_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (c->lru_tail == NULL)
		c->lru_tail = e;
}

/* Unlink from its bucket and the LRU list, wipe its secrets, free it. */
static void entry_remove(envdbi_cache *c, cache_entry *e)
{
	cache_entry **pp = &c->buckets[e->hash & (c->n_buckets - 1)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp == e)
		*pp = e->hnext;
	lru_unlink(c, e);
	secret_release(&e->sec, &c->slab);
	secret_release(&e->prev, &c->slab);
	free(e->blob);
	free(e);
	c->size--;
}

static cache_entry *entry_find(envdbi_cache *c, uint64_t hash, const char *key, size_t key_len)
{
	cache_entry *e;

	for (e = c->buckets[hash & (c->n_buckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == hash && e->key_len == key_len && memcmp(e->blob, key, key_len) == 0)
			return e;
	return NULL;
}

static touch_rec *touch_find(envdbi_cache *c, const char *db_id, bool create)
{
	touch_rec *t;

	for (t = c->touches; t != NULL; t = t->next)
		if (strcmp(t->db_id, db_id) == 0)
			return t;
	if (!create || strlen(db_id) >= sizeof(t->db_id))
		return NULL;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	memcpy(t->db_id, db_id, strlen(db_id) + 1);
	t->next = c->touches;
	c->touches = t;
	return t;
}

/* Record an access at `now`; true when the caller should write it (the
 * record then counts it as written). */
static bool touch_due(touch_rec *t, int64_t now)
{
	if (t == NULL)
		return false;
	t->last_access = now;
	if (now - t->last_written < ENVDBI_TOUCH_INTERVAL_S)
		return false;
	t->last_written = now;
	return true;
}

void envdbi_cache_invalidate_env(envdbi_cache *c, const char *environment_id)
{
	cache_entry *e, *next;

	if (c == NULL || environment_id == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->generation++;
	for (e = c->lru_head; e != NULL; e = next) {
		next = e->lru_next;
		if (strcmp(e->r.f[F_ENV_ID], environment_id) == 0) {
			entry_remove(c, e);
			c->stats.invalidations++;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

void envdbi_cache_clear(envdbi_cache *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->generation++;
	while (c->lru_head != NULL) {
		entry_remove(c, c->lru_head);
		c->stats.invalidations++;
	}
	pthread_mutex_unlock(&c->lock);
}

void envdbi_cache_get_stats(envdbi_cache_stats *out, envdbi_cache *c)
{
	memset(out, 0, sizeof(*out));
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	out->size = c->size;
	pthread_mutex_unlock(&c->lock);
}

int envdbi_cache_flush_touches(envdbi_cache *c)
{
	typedef struct pending {
		char db_id[37];
		int64_t when;
	} pending;
	pending *v = NULL;
	size_t n = 0, cap = 0, i;
	int rc = ENVDB_OK;
	touch_rec *t;

	if (c == NULL || c->store == NULL)
		return ENVDB_OK;
	/* Collect under the cache lock, write without it: the store has its
	 * own lock, and code holding that one may invalidate the cache. */
	pthread_mutex_lock(&c->lock);
	for (t = c->touches; t != NULL; t = t->next) {
		if (t->last_access <= t->last_written)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			pending *nv = realloc(v, ncap * sizeof(*nv));

			if (nv == NULL) {
				rc = envdbi_error(ENVDB_ERR_NOMEM, NULL,
						  "resolve cache: out of memory flushing accesses");
				break;
			}
			v = nv;
			cap = ncap;
		}
		memcpy(v[n].db_id, t->db_id, sizeof(v[n].db_id));
		v[n++].when = t->last_access;
		t->last_written = t->last_access;
		c->stats.touch_writes++;
	}
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < n; i++) {
		int r = envdbi_store_db_touch(c->store, v[i].db_id, v[i].when);

		/* A database deleted meanwhile has nothing to touch. */
		if (r != ENVDB_OK && r != ENVDB_ERR_NOT_FOUND && rc == ENVDB_OK)
			rc = r;
	}
	free(v);
	return rc;
}

void envdbi_cache_free(envdbi_cache *c)
{
	if (c == NULL)
		return;
	if (envdbi_cache_flush_touches(c) != ENVDB_OK)
		envdbi_log(ENVDB_LOG_WARNING, "resolve cache: last_accessed_at not written: %s",
			   envdb_error_last()->message);
	while (c->lru_head != NULL)
		entry_remove(c, c->lru_head);
	while (c->touches != NULL) {
		touch_rec *t = c->touches;

		c->touches = t->next;
		free(t);
	}
	slab_free(&c->slab);
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Copy a result into a new entry and make it the most recent one, evicting
 * the least recent one when full.  Called under the lock. */
static void cache_insert(envdbi_cache *c, uint64_t hash, const char *key, size_t key_len,
			 const resolved *r, touch_rec *touch)
{
	size_t lens[F__N], total = key_len, i;
	cache_entry *e, *old;
	char *p;

	old = entry_find(c, hash, key, key_len);
	if (old != NULL)
		entry_remove(c, old);
	if (c->size >= c->capacity && c->lru_tail != NULL) {
		entry_remove(c, c->lru_tail);
		c->stats.evictions++;
	}
	for (i = 0; i < F__N; i++) {
		lens[i] = r->f[i] ? strlen(r->f[i]) + 1 : 0;
		total += lens[i];
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return;
	e->blob = malloc(total);
	if (e->blob == NULL ||
	    secret_put(&e->sec, &c->slab, r->secret, r->secret_len) != ENVDB_OK ||
	    (r->prev_secret != NULL &&
	     secret_put(&e->prev, &c->slab, r->prev_secret, r->prev_secret_len) != ENVDB_OK)) {
		secret_release(&e->sec, &c->slab);
		free(e->blob);
		free(e);
		return; /* not caching is always correct */
	}
	memcpy(e->blob, key, key_len);
	p = e->blob + key_len;
	for (i = 0; i < F__N; i++) {
		if (r->f[i] == NULL) {
			e->r.f[i] = NULL;
			continue;
		}
		memcpy(p, r->f[i], lens[i]);
		e->r.f[i] = p;
		p += lens[i];
	}
	e->r.secret = e->sec.data;
	e->r.secret_len = e->sec.len;
	e->r.expires_at = r->expires_at;
	e->r.prev_secret = e->prev.data;
	e->r.prev_secret_len = e->prev.len;
	e->r.prev_expires_at = r->prev_expires_at;
	e->hash = hash;
	e->key_len = key_len;
	e->deadline_ms = mono_ms() + c->ttl_ms;
	e->touch = touch;
	e->hnext = c->buckets[hash & (c->n_buckets - 1)];
	c->buckets[hash & (c->n_buckets - 1)] = e;
	lru_push_front(c, e);
	c->size++;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

/* One secure block: the struct, then every string and secret.  `now`
 * decides whether the previous credential is still inside its window. */
static int connection_build(envdb_connection **out, const resolved *r, int64_t now)
{
	static const size_t field_of[F__N] = {
		offsetof(envdb_connection, environment_id),
		offsetof(envdb_connection, organization_id),
		offsetof(envdb_connection, slug),
		offsetof(envdb_connection, driver),
		offsetof(envdb_connection, database_name),
		offsetof(envdb_connection, database_url),
		offsetof(envdb_connection, role),
		offsetof(envdb_connection, authorization),
		offsetof(envdb_connection, credential_id),
		offsetof(envdb_connection, previous_credential_id),
		offsetof(envdb_connection, credential_handle),
		offsetof(envdb_connection, previous_credential_handle),
		0, /* F_DB_ID is not part of the connection */
	};
	bool with_prev = r->prev_secret != NULL &&
			 (r->prev_expires_at == 0 || r->prev_expires_at > now);
	size_t lens[F__N], total = sizeof(envdb_connection), i;
	envdb_connection *conn;
	char *p;

	for (i = 0; i < F__N; i++) {
		lens[i] = 0;
		if (i == F_DB_ID || r->f[i] == NULL ||
		    ((i == F_PREV_CRED_ID || i == F_PREV_CRED_HANDLE) && !with_prev))
			continue;
		lens[i] = strlen(r->f[i]) + 1;
		total += lens[i];
	}
	total += r->secret_len + 1;
	if (with_prev)
		total += r->prev_secret_len + 1;
	conn = envdbi_secure_alloc(total);
	if (conn == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL,
				    "resolve: out of secure memory for the connection");
	memset(conn, 0, sizeof(*conn));
	conn->struct_size = sizeof(*conn);
	p = (char *)(conn + 1);
	for (i = 0; i < F__N; i++) {
		if (lens[i] == 0)
			continue;
		memcpy(p, r->f[i], lens[i]);
		*(const char **)((char *)conn + field_of[i]) = p;
		p += lens[i];
	}
	memcpy(p, r->secret, r->secret_len);
	p[r->secret_len] = '\0';
	conn->secret = p;
	conn->secret_len = r->secret_len;
	conn->expires_at = r->expires_at;
	p += r->secret_len + 1;
	if (with_prev) {
		memcpy(p, r->prev_secret, r->prev_secret_len);
		p[r->prev_secret_len] = '\0';
		conn->previous_secret = p;
		conn->previous_secret_len = r->prev_secret_len;
		conn->previous_expires_at = r->prev_expires_at;
	}
	*out = conn;
	return ENVDB_OK;
}

void envdb_connection_free(envdb_connection *conn)
{
	envdbi_secure_free(conn); /* wipes the struct, strings and secrets */
}

/* ------------------------------------------------------------------------ */
/* Resolve                                                                   */
/* ------------------------------------------------------------------------ */

static const char *role_authorization(const char *role)
{
	if (strcmp(role, "owner") == 0 || strcmp(role, "admin") == 0 ||
	    strcmp(role, "maker") == 0)
		return "full_access";
	if (strcmp(role, "reader") == 0 || strcmp(role, "guest") == 0)
		return "read_only";
	return NULL;
}

/* The newest rotating credential of (database, authorization) still inside
 * its window, or NULL in *out. */
static int previous_credential(envdb_credential **out, envdbi_store *s, const char *db_id,
			       const char *authorization, int64_t now)
{
	envdbi_cred_filter f = ENVDBI_CRED_FILTER_INIT;
	envdb_credential **v = NULL;
	size_t n = 0, i;
	int rc;

	*out = NULL;
	f.environment_database_id = db_id;
	f.authorization = authorization;
	f.status = "rotating";
	if ((rc = envdbi_store_cred_list(s, &v, &n, &f)) != ENVDB_OK)
		return rc;
	/* Ordered by created_at: the last one in its window is the newest. */
	for (i = n; i-- > 0;) {
		if (v[i]->expires_at == 0 || v[i]->expires_at > now) {
			*out = v[i];
			v[i] = NULL;
			break;
		}
	}
	envdb_credential_list_free(v, n);
	return ENVDB_OK;
}

/* The slow path: read the control plane, check, decrypt. */
static int resolve_load(envdb_ctx *ctx, resolved *r, envdb_environment **env_out,
			envdb_database **db_out, envdb_member **mem_out,
			envdb_credential **cred_out, envdb_credential **prev_out,
			envdbi_secret **sec_out, envdbi_secret **prev_sec_out,
			const char *org, const char *slug, const char *user, int64_t now)
{
	envdbi_store *s = ctx->store;
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	envdb_member *mem = NULL;
	envdb_credential *cred = NULL, *prev = NULL;
	envdbi_secret *sec = NULL, *prev_sec = NULL;
	const char *auth;
	int rc;

	if ((rc = envdbi_store_env_get_by_slug(s, &env, org, slug)) != ENVDB_OK)
		goto out;
	*env_out = env;
	/* State first: a provisioning environment has no members yet, and the
	 * answer "not active" is the useful one. */
	if (strcmp(env->status, "active") != 0) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "resolve %s/%s: environment is %s; only active environments resolve",
				  org, slug, env->status);
		goto out;
	}
	rc = envdbi_store_member_get(s, &mem, env->id, user);
	if (rc == ENVDB_ERR_NOT_FOUND) {
		rc = envdbi_error(ENVDB_ERR_PERMISSION, NULL,
				  "resolve %s/%s: user %s is not a member of the environment",
				  org, slug, user);
		goto out;
	}
	if (rc != ENVDB_OK)
		goto out;
	*mem_out = mem;
	auth = role_authorization(mem->role);
	if (auth == NULL) {
		rc = envdbi_error(ENVDB_ERR_PERMISSION, NULL,
				  "resolve %s/%s: user %s has unknown role %s", org, slug, user,
				  mem->role);
		goto out;
	}
	if ((rc = envdbi_store_db_get_by_env(s, &db, env->id)) != ENVDB_OK) {
		envdbi_error_prefix("resolve %s/%s: ", org, slug);
		goto out;
	}
	*db_out = db;
	rc = envdbi_store_cred_get_active(s, &cred, db->id, auth);
	if (rc == ENVDB_ERR_NOT_FOUND) {
		envdbi_plugin *p = envdbi_plugins_find(ctx->plugins, db->driver,
						       ENVDB_PLUGIN_ADAPTER);

		if (strcmp(auth, "read_only") == 0 &&
		    (p == NULL || !(envdbi_plugin_capabilities(p) & ENVDB_ADAPTER_CAP_READ_ONLY)))
			rc = envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
					  "resolve %s/%s: user %s is a %s and needs a read-only "
					  "credential, which driver %s cannot mint (full access is "
					  "never handed out instead)",
					  org, slug, user, mem->role, db->driver);
		else
			rc = envdbi_error(ENVDB_ERR_AUTH, NULL,
					  "resolve %s/%s: database %s has no active %s credential",
					  org, slug, db->database_name, auth);
		goto out;
	}
	if (rc != ENVDB_OK)
		goto out;
	*cred_out = cred;
	if (cred->expires_at != 0 && cred->expires_at <= now) {
		rc = envdbi_error(ENVDB_ERR_AUTH, NULL,
				  "resolve %s/%s: the active %s credential %s expired at %lld; "
				  "rotate it",
				  org, slug, auth, cred->id, (long long)cred->expires_at);
		goto out;
	}
	if ((rc = envdbi_credential_open(&sec, ctx, cred)) != ENVDB_OK) {
		envdbi_error_prefix("resolve %s/%s: ", org, slug);
		goto out;
	}
	*sec_out = sec;
	if ((rc = previous_credential(&prev, s, db->id, auth, now)) != ENVDB_OK)
		goto out;
	if (prev != NULL) {
		*prev_out = prev;
		if ((rc = envdbi_credential_open(&prev_sec, ctx, prev)) != ENVDB_OK) {
			envdbi_error_prefix("resolve %s/%s: ", org, slug);
			goto out;
		}
		*prev_sec_out = prev_sec;
	}
	r->f[F_ENV_ID] = env->id;
	r->f[F_ORG] = env->organization_id;
	r->f[F_SLUG] = env->slug;
	r->f[F_DRIVER] = db->driver;
	r->f[F_DB_NAME] = db->database_name;
	r->f[F_URL] = db->database_url;
	r->f[F_ROLE] = mem->role;
	r->f[F_AUTH] = cred->authorization;
	r->f[F_CRED_ID] = cred->id;
	r->f[F_PREV_CRED_ID] = prev ? prev->id : NULL;
	r->f[F_CRED_HANDLE] = cred->handle ? cred->handle : "";
	r->f[F_PREV_CRED_HANDLE] = prev ? (prev->handle ? prev->handle : "") : NULL;
	r->f[F_DB_ID] = db->id;
	r->secret = sec->data;
	r->secret_len = sec->len;
	r->expires_at = cred->expires_at;
	r->prev_secret = prev_sec ? prev_sec->data : NULL;
	r->prev_secret_len = prev_sec ? prev_sec->len : 0;
	r->prev_expires_at = prev ? prev->expires_at : 0;
out:
	return rc;
}

/* Write last_accessed_at; a failure only costs accuracy, never the resolve. */
static void touch_write(envdb_ctx *ctx, const char *db_id, int64_t now)
{
	if (envdbi_store_db_touch(ctx->store, db_id, now) != ENVDB_OK)
		envdbi_log(ENVDB_LOG_DEBUG, "resolve: database %s: last_accessed_at not written: %s",
			   db_id, envdb_error_last()->message);
	else if (ctx->cache != NULL) {
		pthread_mutex_lock(&ctx->cache->lock);
		ctx->cache->stats.touch_writes++;
		pthread_mutex_unlock(&ctx->cache->lock);
	}
}

/* The context's cache, created on first use (lock-free: two threads may
 * both build one; the loser frees its own). */
static int cache_of(envdbi_cache **out, envdb_ctx *ctx)
{
	envdbi_cache *c = __atomic_load_n(&ctx->cache, __ATOMIC_ACQUIRE), *expected = NULL;
	const envdbi_manifest *m = ctx->manifest;
	int rc;

	if (c == NULL) {
		rc = envdbi_cache_new(&c, ctx->store, m ? m->cache_size : 0, m ? m->cache_ttl_ms : 0);
		if (rc != ENVDB_OK)
			return rc;
		if (!__atomic_compare_exchange_n(&ctx->cache, &expected, c, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE)) {
			envdbi_cache_free(c);
			c = expected;
		}
	}
	*out = c;
	return ENVDB_OK;
}

int envdb_resolve(envdb_connection **out, envdb_ctx *ctx, const char *organization_id,
		  const char *slug, const char *user_id)
{
	envdbi_cache *c;
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	envdb_member *mem = NULL;
	envdb_credential *cred = NULL, *prev = NULL;
	envdbi_secret *sec = NULL, *prev_sec = NULL;
	char key[KEY_MAX], db_id[37];
	size_t lo, ls, lu, key_len = 0;
	uint64_t hash = 0, gen = 0;
	resolved r;
	int64_t now;
	bool cacheable, write_touch = false;
	int rc;

	if (out == NULL || ctx == NULL || organization_id == NULL || slug == NULL ||
	    user_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "resolve: missing argument");
	*out = NULL;
	if (ctx->store == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "resolve %s/%s: the context has no control plane open",
				    organization_id, slug);
	if (*user_id == '\0')
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "resolve %s/%s: empty user id",
				    organization_id, slug);
	if ((rc = cache_of(&c, ctx)) != ENVDB_OK)
		return rc;
	now = envdbi_now();
	lo = strlen(organization_id);
	ls = strlen(slug);
	lu = strlen(user_id);
	cacheable = c != NULL && c->capacity > 0 && lo + ls + lu + 3 <= sizeof(key);
	if (cacheable) {
		cache_entry *e;

		memcpy(key, organization_id, lo + 1);
		memcpy(key + lo + 1, slug, ls + 1);
		memcpy(key + lo + ls + 2, user_id, lu + 1);
		key_len = lo + ls + lu + 3;
		crypto_shorthash((unsigned char *)&hash, (const unsigned char *)key, key_len,
				 c->hash_key);
		pthread_mutex_lock(&c->lock);
		e = entry_find(c, hash, key, key_len);
		if (e != NULL && (e->deadline_ms <= mono_ms() ||
				  (e->r.expires_at != 0 && e->r.expires_at <= now))) {
			/* Stale, or its credential expired: the slow path decides. */
			entry_remove(c, e);
			e = NULL;
		}
		if (e != NULL) {
			lru_unlink(c, e);
			lru_push_front(c, e);
			c->stats.hits++;
			rc = connection_build(out, &e->r, now);
			write_touch = touch_due(e->touch, now);
			if (write_touch)
				memcpy(db_id, e->touch->db_id, sizeof(db_id));
			pthread_mutex_unlock(&c->lock);
			if (rc == ENVDB_OK && write_touch)
				touch_write(ctx, db_id, now);
			return rc;
		}
		c->stats.misses++;
		gen = c->generation;
		pthread_mutex_unlock(&c->lock);
	}

	memset(&r, 0, sizeof(r));
	rc = resolve_load(ctx, &r, &env, &db, &mem, &cred, &prev, &sec, &prev_sec,
			  organization_id, slug, user_id, now);
	if (rc != ENVDB_OK)
		goto out;
	if ((rc = connection_build(out, &r, now)) != ENVDB_OK)
		goto out;
	if (c != NULL) {
		touch_rec *t;

		pthread_mutex_lock(&c->lock);
		t = touch_find(c, db->id, true);
		write_touch = t != NULL ? touch_due(t, now) : true;
		if (cacheable && c->generation == gen)
			cache_insert(c, hash, key, key_len, &r, t);
		pthread_mutex_unlock(&c->lock);
	} else {
		write_touch = true;
	}
	if (write_touch)
		touch_write(ctx, db->id, now);
out:
	envdbi_secret_free(sec);
	envdbi_secret_free(prev_sec);
	envdb_environment_free(env);
	envdb_database_free(db);
	envdb_member_free(mem);
	envdb_credential_free(cred);
	envdb_credential_free(prev);
	return rc;
}
