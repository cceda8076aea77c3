/*
 * core/resolve.c — envdb_resolve(): an environment and a user to the
 * driver, URL and decrypted secret a data-plane router needs (DESIGN.md §6),
 * and the cache that keeps that hot path free of SQL.
 *
 * The cache is a hash map (chained, SipHash-2-4 with a per-cache random key,
 * so user-chosen names cannot flood one bucket) with a second index by
 * environment id (so invalidating one environment does not walk the whole
 * cache), and a CLOCK list for eviction: a hit only sets the entry's
 * reference bit; eviction gives referenced entries a second chance.  Every
 * entry lives ttl_ms.
 *
 * Each entry holds its result as a connection image: one block of secure
 * memory (core/secmem.c: locked, guarded, wiped on release) with every
 * string and the secrets laid out as the returned envdb_connection holds
 * them, plus their offsets.  A hit is then one secure allocation and one
 * copy of the image, with the pointers set from the offsets: no SQL, no
 * other allocation, no per-field work.  The miss path builds the same image
 * and makes the connection from it the same way.
 *
 * The identifier checks (core/ident.c) run on the miss path: a hit means
 * the very same organization/slug/user was checked when it was cached.
 *
 * A miss reads the control plane and decrypts; before it stores its result
 * it checks that no invalidation happened meanwhile (a generation counter),
 * so a result read before a rotation can never be cached after it.
 *
 * last_accessed_at: each database has a touch record (when it was last
 * resolved, and last written), found through a hash map.  A resolve never
 * writes it (a read path must not wait for a lock or a disk sync): once the
 * last write is ENVDBI_TOUCH_INTERVAL_S old, the record joins a pending
 * list, which a flusher thread of the cache (started with the first pending
 * record) writes in ONE transaction when ENVDBI_TOUCH_BATCH records are
 * pending or the oldest has waited ENVDBI_TOUCH_FLUSH_MS; and
 * envdbi_cache_free() stops the thread and writes whatever is left, again
 * in one transaction.  An access less than ENVDBI_TOUCH_INTERVAL_S after
 * the last write of its database is never written (the value is accurate
 * to that interval), so a close costs the queue, not the cache.  So at most one durable commit per batch, none on
 * the caller's thread before close; what a crash loses is at most the
 * pending accesses (last_accessed_at is an approximation anyway).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "failpoint.h"
#include "internal.h"
#include "resolve.h"
#include "store.h"
#include "store_pg.h"

/* Longest "org\0slug\0user" key that is cached (longer ones bypass it). */
#define KEY_MAX 512

/* ------------------------------------------------------------------------ */
/* A resolve result (borrowed strings)                                       */
/* ------------------------------------------------------------------------ */

/* In the order of the connection image: the strings every connection has,
 * then those of the previous credential, then those it never shows. */
enum {
	F_ENV_ID, F_ORG, F_SLUG, F_DRIVER, F_DB_NAME, F_URL, F_ROLE, F_AUTH, F_CRED_ID,
	F_CRED_HANDLE, F_PREV_CRED_ID, F_PREV_CRED_HANDLE, F_DB_ID, F__N
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
	char *url_owned; /* F_URL when composed (a query handle), malloc'd */
} resolved;

/* ------------------------------------------------------------------------ */
/* Connection images                                                         */
/* ------------------------------------------------------------------------ */

#define IMG_NONE UINT32_MAX

/* One block of secure memory.  data holds, NUL-terminated: the strings
 * F_ENV_ID..F_CRED_HANDLE, the secret (the first base_len bytes: what every
 * connection gets); the previous credential's id, handle and secret (the
 * next prev_len bytes: only inside the rotation window); F_DB_ID (never
 * shown). */
typedef struct conn_image {
	uint32_t off[F__N]; /* offset of each string in data, or IMG_NONE */
	uint32_t secret_off, prev_secret_off;
	uint32_t base_len, prev_len, len;
	size_t secret_len, prev_secret_len;
	int64_t expires_at, prev_expires_at;
	char data[];
} conn_image;

static const size_t conn_field_of[F__N] = {
	offsetof(envdb_connection, environment_id),
	offsetof(envdb_connection, organization_id),
	offsetof(envdb_connection, slug),
	offsetof(envdb_connection, driver),
	offsetof(envdb_connection, database_name),
	offsetof(envdb_connection, database_url),
	offsetof(envdb_connection, role),
	offsetof(envdb_connection, authorization),
	offsetof(envdb_connection, credential_id),
	offsetof(envdb_connection, credential_handle),
	offsetof(envdb_connection, previous_credential_id),
	offsetof(envdb_connection, previous_credential_handle),
	0, /* F_DB_ID is not part of the connection */
};

static const char *img_str(const conn_image *im, int f)
{
	return im->off[f] == IMG_NONE ? NULL : im->data + im->off[f];
}

static void img_put(conn_image *im, uint32_t *o, int f, const char *s)
{
	size_t n;

	if (s == NULL) {
		im->off[f] = IMG_NONE;
		return;
	}
	n = strlen(s) + 1;
	memcpy(im->data + *o, s, n);
	im->off[f] = *o;
	*o += (uint32_t)n;
}

/* Bytes of the image of `r` (its struct and data); 0 when absurdly large. */
static size_t image_size(const resolved *r)
{
	size_t total = 0, i;

	for (i = 0; i < F__N; i++)
		total += r->f[i] ? strlen(r->f[i]) + 1 : 0;
	total += r->secret_len + 1 + (r->prev_secret ? r->prev_secret_len + 1 : 0);
	return total > UINT32_MAX / 2 ? 0 : sizeof(conn_image) + total;
}

/* Lay the image of `r` out in `im` (image_size(r) bytes). */
static void image_fill(conn_image *im, const resolved *r)
{
	uint32_t o = 0;
	size_t i;

	for (i = F_ENV_ID; i <= F_CRED_HANDLE; i++)
		img_put(im, &o, (int)i, r->f[i]);
	im->secret_off = o;
	im->secret_len = r->secret_len;
	memcpy(im->data + o, r->secret, r->secret_len);
	im->data[o + r->secret_len] = '\0';
	o += (uint32_t)r->secret_len + 1;
	im->base_len = o;
	im->expires_at = r->expires_at;
	if (r->prev_secret != NULL) {
		img_put(im, &o, F_PREV_CRED_ID, r->f[F_PREV_CRED_ID]);
		img_put(im, &o, F_PREV_CRED_HANDLE, r->f[F_PREV_CRED_HANDLE]);
		im->prev_secret_off = o;
		im->prev_secret_len = r->prev_secret_len;
		memcpy(im->data + o, r->prev_secret, r->prev_secret_len);
		im->data[o + r->prev_secret_len] = '\0';
		o += (uint32_t)r->prev_secret_len + 1;
		im->prev_expires_at = r->prev_expires_at;
	} else {
		im->off[F_PREV_CRED_ID] = im->off[F_PREV_CRED_HANDLE] = IMG_NONE;
		im->prev_secret_off = IMG_NONE;
		im->prev_secret_len = 0;
		im->prev_expires_at = 0;
	}
	im->prev_len = o - im->base_len;
	img_put(im, &o, F_DB_ID, r->f[F_DB_ID]);
	im->len = o;
}

/* One secure block: the struct, then the image's strings and secrets.
 * `now` decides whether the previous credential is still inside its
 * window (outside it, its id, handle and secret are not copied). */
static int connection_from_image(envdb_connection **out, const conn_image *im, int64_t now)
{
	bool with_prev = im->prev_secret_off != IMG_NONE &&
			 (im->prev_expires_at == 0 || im->prev_expires_at > now);
	size_t n = im->base_len + (with_prev ? im->prev_len : 0), i;
	envdb_connection *conn;
	char *base;

	conn = envdbi_secure_alloc(sizeof(*conn) + n);
	if (conn == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL,
				    "resolve: out of secure memory for the connection");
	memset(conn, 0, sizeof(*conn));
	base = (char *)(conn + 1);
	memcpy(base, im->data, n);
	conn->struct_size = sizeof(*conn);
	for (i = F_ENV_ID; i <= F_CRED_HANDLE; i++)
		if (im->off[i] != IMG_NONE)
			*(const char **)((char *)conn + conn_field_of[i]) = base + im->off[i];
	conn->secret = base + im->secret_off;
	conn->secret_len = im->secret_len;
	conn->expires_at = im->expires_at;
	if (with_prev) {
		conn->previous_credential_id = base + im->off[F_PREV_CRED_ID];
		conn->previous_credential_handle = base + im->off[F_PREV_CRED_HANDLE];
		conn->previous_secret = base + im->prev_secret_off;
		conn->previous_secret_len = im->prev_secret_len;
		conn->previous_expires_at = im->prev_expires_at;
	}
	*out = conn;
	return ENVDB_OK;
}

void envdb_connection_free(envdb_connection *conn)
{
	envdbi_secure_free(conn); /* wipes the struct, strings and secrets */
}

/* ------------------------------------------------------------------------ */
/* The cache                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct touch_rec {
	struct touch_rec *next; /* hash chain */
	uint64_t hash;
	char db_id[37];
	int64_t last_access;  /* epoch s of the last resolve */
	int64_t last_written; /* epoch s last written to the store, or queued */
	struct touch_rec *pnext; /* the pending list, when pending */
	bool pending;            /* queued for the flusher */
} touch_rec;

/* One cached result: ONE block of secure memory holding this struct, the
 * key and the connection image, so that a hit reads one place (the fields
 * a hit reads come first).  Made by entry_new() on every miss; a result
 * that is not cached is freed as a whole. */
typedef struct cache_entry {
	struct cache_entry *hnext; /* chain of its key's bucket */
	uint64_t hash;
	size_t key_len;
	int64_t deadline_ms;
	int64_t touch_after;   /* epoch s: before it, a hit needs no look at the touch record */
	int64_t last_access;   /* epoch s of the last hit; folded into the touch record */
	conn_image *img;       /* in this block, after the key */
	bool referenced;       /* CLOCK bit: set by a hit, cleared by the sweep */
	struct cache_entry *enext;               /* chain of its environment's bucket */
	struct cache_entry *lru_prev, *lru_next; /* the CLOCK list */
	uint64_t env_hash;
	touch_rec *touch;
	char key[];            /* organization\0slug\0user\0, then the image */
} cache_entry;

/* The entry of result `r` under `key` (key_len may be 0: not cacheable),
 * in secure memory, not yet in the cache; NULL when out of memory. */
static cache_entry *entry_new(const resolved *r, const char *key, size_t key_len)
{
	size_t img_off = offsetof(cache_entry, key) + ((key_len + 7) & ~(size_t)7);
	size_t img_size = image_size(r);
	cache_entry *e;

	if (img_size == 0)
		return NULL;
	e = envdbi_secure_alloc(img_off + img_size);
	if (e == NULL)
		return NULL;
	memset(e, 0, offsetof(cache_entry, key));
	memcpy(e->key, key, key_len);
	e->key_len = key_len;
	e->img = (conn_image *)((char *)e + img_off);
	image_fill(e->img, r);
	return e;
}

struct envdbi_cache {
	pthread_mutex_t lock;
	envdbi_store *store; /* borrowed */
	size_t capacity;
	int64_t ttl_ms;
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	cache_entry **buckets;     /* by key */
	cache_entry **env_buckets; /* by environment id; as many */
	size_t n_buckets;          /* power of two */
	cache_entry *lru_head, *lru_tail; /* head: newest; the sweep starts at the tail */
	size_t size;
	uint64_t generation; /* bumped by every invalidation */
	touch_rec **touches; /* hash map by database id */
	size_t n_touch_buckets, n_touches;
	touch_rec *pending;        /* touch records due to be written */
	size_t n_pending;
	int64_t pending_since_ms;  /* mono_ms() when the oldest became pending */
	size_t flush_batch;        /* ENVDBI_TOUCH_BATCH (tests lower it) */
	int64_t flush_interval_ms; /* ENVDBI_TOUCH_FLUSH_MS */
	pthread_cond_t wake;       /* the flusher waits on it (CLOCK_MONOTONIC) */
	pthread_t flusher;
	pid_t flusher_pid; /* a forked child has no flusher to join */
	bool flusher_started, flusher_failed, stopping;
	envdbi_store_watch *watch; /* other hosts' changes (PostgreSQL), or NULL */
	pid_t watch_pid;
	envdbi_cache_stats stats;
};

/* Entries' deadlines: the coarse monotonic clock (its resolution is the
 * kernel tick, a few milliseconds, which is plenty for a TTL) costs a
 * memory read where CLOCK_MONOTONIC costs a timer read: on a virtual
 * machine ~20 ns, a fifth of a whole hit. */
static int64_t mono_ms(void)
{
	struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
	if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
#endif
		clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t load64_le(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND                                                                                  \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = SIP_ROTL(v1, 13);                                                             \
		v1 ^= v0;                                                                          \
		v0 = SIP_ROTL(v0, 32);                                                             \
		v2 += v3;                                                                          \
		v3 = SIP_ROTL(v3, 16);                                                             \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = SIP_ROTL(v3, 21);                                                             \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = SIP_ROTL(v1, 17);                                                             \
		v1 ^= v2;                                                                          \
		v2 = SIP_ROTL(v2, 32);                                                             \
	} while (0)

static inline uint64_t siphash_rounds(const unsigned char k[16], const void *p, size_t n, int c,
				      int d)
{
	const unsigned char *in = p, *end = in + (n & ~(size_t)7);
	uint64_t k0 = load64_le(k), k1 = load64_le(k + 8), m, b = (uint64_t)n << 56;
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
	int i;

	for (; in != end; in += 8) {
		m = load64_le(in);
		v3 ^= m;
		for (i = 0; i < c; i++)
			SIP_ROUND;
		v0 ^= m;
	}
	switch (n & 7) {
	case 7:
		b |= (uint64_t)in[6] << 48; /* fall through */
	case 6:
		b |= (uint64_t)in[5] << 40; /* fall through */
	case 5:
		b |= (uint64_t)in[4] << 32; /* fall through */
	case 4:
		b |= (uint64_t)in[3] << 24; /* fall through */
	case 3:
		b |= (uint64_t)in[2] << 16; /* fall through */
	case 2:
		b |= (uint64_t)in[1] << 8; /* fall through */
	case 1:
		b |= (uint64_t)in[0];
		break;
	default:
		break;
	}
	v3 ^= b;
	for (i = 0; i < c; i++)
		SIP_ROUND;
	v0 ^= b;
	v2 ^= 0xff;
	for (i = 0; i < d; i++)
		SIP_ROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t envdbi_siphash(const unsigned char k[16], const void *p, size_t n, int c, int d)
{
	return siphash_rounds(k, p, n, c, d);
}

_Static_assert(crypto_shorthash_KEYBYTES == 16, "SipHash keys are 16 bytes");

/* The bucket of a key: keyed (the key is the caller's input, so its
 * buckets must not be predictable: hash flooding), SipHash-1-3 inlined. */
static uint64_t hash_of(const envdbi_cache *c, const void *p, size_t n)
{
	return siphash_rounds(c->hash_key, p, n, 1, 3);
}

static void entry_remove(envdbi_cache *c, cache_entry *e);

/* Every cached result goes (another host changed something we may have
 * missed).  Under the lock. */
static void cache_drop_all(envdbi_cache *c)
{
	c->generation++;
	while (c->lru_tail != NULL) {
		c->stats.invalidations++;
		entry_remove(c, c->lru_tail);
	}
}

/* The store watch's callback (its thread): another host committed a
 * change of environment `id` (NULL: of anything). */
static void cache_changed(void *ctx, const char *id)
{
	envdbi_cache *c = ctx;

	if (id != NULL) {
		envdbi_cache_invalidate_env(c, id);
		pthread_mutex_lock(&c->lock);
		c->stats.remote_invalidations++;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	pthread_mutex_lock(&c->lock);
	cache_drop_all(c);
	pthread_mutex_unlock(&c->lock);
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
	c->n_touch_buckets = 64;
	c->touches = calloc(c->n_touch_buckets, sizeof(*c->touches));
	if (c->capacity > 0) {
		c->n_buckets = 16;
		while (c->n_buckets < c->capacity + c->capacity / 3)
			c->n_buckets *= 2;
		c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
		c->env_buckets = calloc(c->n_buckets, sizeof(*c->env_buckets));
	}
	if (c->touches == NULL ||
	    (c->capacity > 0 && (c->buckets == NULL || c->env_buckets == NULL))) {
		free(c->touches);
		free(c->buckets);
		free(c->env_buckets);
		free(c);
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "resolve cache: out of memory");
	}
	pthread_mutex_init(&c->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	c->flush_batch = ENVDBI_TOUCH_BATCH;
	c->flush_interval_ms = ENVDBI_TOUCH_FLUSH_MS;
	c->stats.capacity = c->capacity;
	/* Changes committed by other hosts invalidate too, when the store can
	 * say so (PostgreSQL's LISTEN/NOTIFY); otherwise, and while that
	 * channel is down (the watch logs it), the TTL bounds staleness. */
	if (store != NULL && c->capacity > 0 &&
	    envdbi_store_watch_start(&c->watch, store, cache_changed, c) == ENVDB_OK)
		c->watch_pid = getpid();
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

/* Hits record their time in the entry; its touch record learns it here
 * (and when it is due to be written, see the hit path). */
static void touch_fold(const cache_entry *e)
{
	if (e->touch != NULL && e->last_access > e->touch->last_access)
		e->touch->last_access = e->last_access;
}

/* Unlink from its buckets and the CLOCK list, wipe its image, free it. */
static void entry_remove(envdbi_cache *c, cache_entry *e)
{
	cache_entry **pp = &c->buckets[e->hash & (c->n_buckets - 1)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp == e)
		*pp = e->hnext;
	pp = &c->env_buckets[e->env_hash & (c->n_buckets - 1)];
	while (*pp != NULL && *pp != e)
		pp = &(*pp)->enext;
	if (*pp == e)
		*pp = e->enext;
	lru_unlink(c, e);
	touch_fold(e);
	envdbi_secure_free(e); /* wipes the image with it */
	c->size--;
}

static cache_entry *entry_find(envdbi_cache *c, uint64_t hash, const char *key, size_t key_len)
{
	cache_entry *e;

	for (e = c->buckets[hash & (c->n_buckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == hash && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
			return e;
	return NULL;
}

/* Make room for one entry: CLOCK — the oldest entry goes unless a hit
 * referenced it since the sweep last passed, which buys it another round. */
static void evict_one(envdbi_cache *c)
{
	cache_entry *e;

	while ((e = c->lru_tail) != NULL && e->referenced) {
		e->referenced = false;
		lru_unlink(c, e);
		lru_push_front(c, e);
	}
	if (e != NULL) {
		entry_remove(c, e);
		c->stats.evictions++;
	}
}

static touch_rec *touch_find(envdbi_cache *c, const char *db_id, bool create)
{
	size_t len = strlen(db_id);
	uint64_t h = hash_of(c, db_id, len);
	touch_rec *t;

	for (t = c->touches[h & (c->n_touch_buckets - 1)]; t != NULL; t = t->next)
		if (t->hash == h && strcmp(t->db_id, db_id) == 0)
			return t;
	if (!create || len >= sizeof(t->db_id))
		return NULL;
	if (c->n_touches >= c->n_touch_buckets) {
		/* Keep the chains short: double and rehash. */
		size_t n = c->n_touch_buckets * 2, i;
		touch_rec **v = calloc(n, sizeof(*v));

		if (v != NULL) {
			for (i = 0; i < c->n_touch_buckets; i++)
				while (c->touches[i] != NULL) {
					t = c->touches[i];
					c->touches[i] = t->next;
					t->next = v[t->hash & (n - 1)];
					v[t->hash & (n - 1)] = t;
				}
			free(c->touches);
			c->touches = v;
			c->n_touch_buckets = n;
		}
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	memcpy(t->db_id, db_id, len + 1);
	t->hash = h;
	t->next = c->touches[h & (c->n_touch_buckets - 1)];
	c->touches[h & (c->n_touch_buckets - 1)] = t;
	c->n_touches++;
	return t;
}

static void *flusher_main(void *arg);

/* Record an access at `now`; once a write is due, queue the record for the
 * flusher (which counts it as written) and wake the flusher when the batch
 * is full or the list was empty (it then waits for the interval).  Under
 * the lock; never writes. */
static void touch_note(envdbi_cache *c, touch_rec *t, int64_t now)
{
	if (t == NULL)
		return;
	t->last_access = now;
	if (t->pending || now - t->last_written < ENVDBI_TOUCH_INTERVAL_S)
		return;
	t->last_written = now;
	t->pending = true;
	t->pnext = c->pending;
	c->pending = t;
	if (c->n_pending++ == 0)
		c->pending_since_ms = mono_ms();
	if (c->store == NULL || c->stopping)
		return;
	if (!c->flusher_started && !c->flusher_failed) {
		/* Without a thread the records wait for envdbi_cache_free(). */
		if (pthread_create(&c->flusher, NULL, flusher_main, c) == 0) {
			c->flusher_started = true;
			c->flusher_pid = getpid();
		} else {
			c->flusher_failed = true;
			envdbi_log(ENVDB_LOG_DEBUG, "resolve cache: cannot start the "
						    "last_accessed_at flusher; writing at close");
		}
	} else if (c->n_pending == 1 || c->n_pending == c->flush_batch) {
		pthread_cond_signal(&c->wake);
	}
}

void envdbi_cache_invalidate_env(envdbi_cache *c, const char *environment_id)
{
	cache_entry *e, *next;
	uint64_t h;

	if (c == NULL || environment_id == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->generation++;
	if (c->size > 0) {
		h = hash_of(c, environment_id, strlen(environment_id));
		for (e = c->env_buckets[h & (c->n_buckets - 1)]; e != NULL; e = next) {
			next = e->enext;
			if (e->env_hash == h &&
			    strcmp(img_str(e->img, F_ENV_ID), environment_id) == 0) {
				entry_remove(c, e);
				c->stats.invalidations++;
			}
		}
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

typedef struct touch_write {
	char db_id[37];
	int64_t when;
} touch_write;

/* Append the record's access to v (grown as needed); false when out of
 * memory.  Under the lock. */
static bool touch_take(touch_write **v, size_t *n, size_t *cap, touch_rec *t)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		touch_write *nv = realloc(*v, ncap * sizeof(*nv));

		if (nv == NULL)
			return false;
		*v = nv;
		*cap = ncap;
	}
	memcpy((*v)[*n].db_id, t->db_id, sizeof(t->db_id));
	(*v)[(*n)++].when = t->last_access;
	t->last_written = t->last_access;
	return true;
}

/* Write the collected accesses in ONE transaction (one durable commit for
 * all of them).  Without the cache lock: the store has its own, and code
 * holding that one may invalidate the cache. */
static int touch_write_all(envdbi_cache *c, const touch_write *v, size_t n)
{
	size_t i;
	int rc;

	if (n == 0)
		return ENVDB_OK;
	if ((rc = envdbi_store_begin(c->store)) != ENVDB_OK)
		return rc;
	for (i = 0; i < n; i++) {
		rc = envdbi_store_db_touch(c->store, v[i].db_id, v[i].when);
		/* A database deleted meanwhile has nothing to touch. */
		if (rc != ENVDB_OK && rc != ENVDB_ERR_NOT_FOUND) {
			envdbi_store_rollback(c->store);
			return rc;
		}
	}
	if ((rc = envdbi_store_commit(c->store)) != ENVDB_OK)
		return rc;
	pthread_mutex_lock(&c->lock);
	c->stats.touch_writes += n;
	c->stats.touch_flushes++;
	pthread_mutex_unlock(&c->lock);
	return ENVDB_OK;
}

/* Write what is pending.  Accesses less than ENVDBI_TOUCH_INTERVAL_S after
 * their database's last write are not pending and are not written, not
 * even by close: last_accessed_at is accurate to that interval, and a close
 * costs the queue (at most a batch, or what the last seconds queued), not
 * a row per cached database (100,000 rows: ~0.4 s). */
static int touch_flush(envdbi_cache *c)
{
	touch_write *v = NULL;
	size_t n = 0, cap = 0;
	int rc = ENVDB_OK;
	touch_rec *t;

	if (c == NULL || c->store == NULL)
		return ENVDB_OK;
	pthread_mutex_lock(&c->lock);
	for (t = c->pending; t != NULL; t = t->pnext) {
		t->pending = false;
		if (rc == ENVDB_OK && !touch_take(&v, &n, &cap, t))
			rc = ENVDB_ERR_NOMEM;
	}
	c->pending = NULL;
	c->n_pending = 0;
	pthread_mutex_unlock(&c->lock);
	if (rc == ENVDB_ERR_NOMEM)
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL,
				  "resolve cache: out of memory flushing accesses");
	else
		rc = touch_write_all(c, v, n);
	free(v);
	return rc;
}

int envdbi_cache_flush_touches(envdbi_cache *c)
{
	return touch_flush(c);
}

/* The flusher: waits for a pending record, then for the batch to fill or
 * the oldest to have waited flush_interval_ms, and writes the batch.  A
 * failure (the control plane busy beyond its timeout) only costs the
 * accuracy of last_accessed_at. */
static void *flusher_main(void *arg)
{
	envdbi_cache *c = arg;
	struct timespec ts;
	int64_t due;

	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		if (c->n_pending == 0) {
			pthread_cond_wait(&c->wake, &c->lock);
			continue;
		}
		due = c->pending_since_ms + c->flush_interval_ms;
		if (c->n_pending < c->flush_batch && mono_ms() < due) {
			/* mono_ms() is the coarse clock, the wait the precise
			 * one: the time-out itself says the interval is over. */
			ts.tv_sec = due / 1000;
			ts.tv_nsec = (long)(due % 1000) * 1000000;
			if (pthread_cond_timedwait(&c->wake, &c->lock, &ts) != ETIMEDOUT)
				continue;
			if (c->stopping)
				break;
		}
		pthread_mutex_unlock(&c->lock);
		if (touch_flush(c) != ENVDB_OK)
			envdbi_log(ENVDB_LOG_DEBUG, "resolve cache: last_accessed_at not written: %s",
				   envdb_error_last()->message);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

void envdbi_cache_set_flush(envdbi_cache *c, size_t batch, int64_t interval_ms)
{
	pthread_mutex_lock(&c->lock);
	c->flush_batch = batch > 0 ? batch : 1;
	c->flush_interval_ms = interval_ms;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
}

void envdbi_cache_free(envdbi_cache *c)
{
	size_t b;

	if (c == NULL)
		return;
	/* first: its thread calls into the cache (a forked child has none) */
	if (c->watch_pid == getpid())
		envdbi_store_watch_stop(c->watch);
	c->watch = NULL;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
	if (c->flusher_started && c->flusher_pid == getpid())
		pthread_join(c->flusher, NULL);
	if (touch_flush(c) != ENVDB_OK)
		envdbi_log(ENVDB_LOG_WARNING, "resolve cache: last_accessed_at not written: %s",
			   envdb_error_last()->message);
	/* Every entry goes: no need to unlink each from its buckets. */
	while (c->lru_head != NULL) {
		cache_entry *e = c->lru_head;

		c->lru_head = e->lru_next;
		envdbi_secure_free(e); /* wipes the image with it */
	}
	for (b = 0; b < c->n_touch_buckets; b++)
		while (c->touches[b] != NULL) {
			touch_rec *t = c->touches[b];

			c->touches[b] = t->next;
			free(t);
		}
	free(c->touches);
	free(c->buckets);
	free(c->env_buckets);
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Put entry `e` (ownership passes to the cache) in the cache as the newest
 * entry, in place of an entry of the same key, evicting when full.  `touch`
 * is its database's touch record (may be NULL), just updated for `now`.
 * Called under the lock. */
static void cache_insert(envdbi_cache *c, cache_entry *e, uint64_t hash, touch_rec *touch,
			 int64_t now)
{
	const char *env_id = img_str(e->img, F_ENV_ID);
	cache_entry *old;

	old = entry_find(c, hash, e->key, e->key_len);
	if (old != NULL)
		entry_remove(c, old);
	if (c->size >= c->capacity)
		evict_one(c);
	e->hash = hash;
	e->env_hash = hash_of(c, env_id, strlen(env_id));
	e->deadline_ms = mono_ms() + c->ttl_ms;
	e->touch = touch;
	e->last_access = now;
	e->touch_after = touch != NULL ? touch->last_written + ENVDBI_TOUCH_INTERVAL_S : 0;
	e->referenced = false;
	e->hnext = c->buckets[hash & (c->n_buckets - 1)];
	c->buckets[hash & (c->n_buckets - 1)] = e;
	e->enext = c->env_buckets[e->env_hash & (c->n_buckets - 1)];
	c->env_buckets[e->env_hash & (c->n_buckets - 1)] = e;
	lru_push_front(c, e);
	c->size++;
}

/* ------------------------------------------------------------------------ */
/* Resolve                                                                   */
/* ------------------------------------------------------------------------ */

static const char *role_authorization(const char *role)
{
#define ROLE_AUTH_IF(r, auth)          \
	if (strcmp(role, r) == 0) \
		return auth;
	ENVDBI_ROLE_AUTHORIZATIONS(ROLE_AUTH_IF)
#undef ROLE_AUTH_IF
	return NULL;
}

/* Open credential `id` of the database of `row`: the associated data binds
 * the credential, the database and (aad_version 2) its driver, name and url
 * as this very read saw them. */
static int open_secret(envdbi_secret **out, envdb_ctx *ctx, const envdbi_resolve_row *row,
		       const char *id, const char *ciphertext, int64_t aad_version)
{
	envdb_credential c;
	envdb_database d;

	memset(&c, 0, sizeof(c));
	memset(&d, 0, sizeof(d));
	c.id = (char *)id;
	c.environment_database_id = (char *)row->db_id;
	c.secret_ciphertext = (char *)ciphertext;
	c.aad_version = aad_version;
	d.id = (char *)row->db_id;
	d.driver = (char *)row->driver;
	d.database_name = (char *)row->database_name;
	d.database_url = (char *)row->database_url;
	return envdbi_credential_open(out, ctx, &c, &d);
}

/* The slow path: read the control plane, check, decrypt.  The read is ONE
 * statement (envdbi_store_resolve_get), so one snapshot: an environment
 * deleted and provisioned again, or rotated, while a resolve reads it is
 * seen entirely before or entirely after, never half (separate reads gave
 * answers about states that never existed, e.g. "alice is not a member" of
 * the environment she owns: J found it with tests/test_soak.c).  It is also
 * one statement instead of five on the uncached path.  On success r points
 * into *row_out and the secrets. */
static int resolve_load(envdb_ctx *ctx, resolved *r, envdbi_resolve_row **row_out,
			envdbi_secret **sec_out, envdbi_secret **prev_sec_out, const char *org,
			const char *slug, const char *user, int64_t now)
{
	envdbi_store *s = ctx->store;
	envdbi_resolve_row *row = NULL;
	const char *auth;
	int rc;

	rc = envdbi_store_resolve_get(s, &row, org, slug, user, now);
	if (rc == ENVDB_ERR_NOT_FOUND) {
		envdb_environment *env = NULL;

		/* The environment lookup's own report ("... not found"). */
		rc = envdbi_store_env_get_by_slug(s, &env, org, slug);
		envdb_environment_free(env);
		if (rc == ENVDB_OK)
			rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
					  "environment %s/%s: not found (it was being created "
					  "meanwhile)",
					  org, slug);
		return rc;
	}
	if (rc != ENVDB_OK)
		return rc;
	*row_out = row;
	/* State first: a provisioning environment has no members yet, and the
	 * answer "not active" is the useful one. */
	if (strcmp(row->env_status, "active") != 0)
		return envdbi_error(ENVDB_ERR_STATE, NULL,
				    "resolve %s/%s: environment is %s; only active environments resolve",
				    org, slug, row->env_status);
	if (row->role == NULL)
		return envdbi_error(ENVDB_ERR_PERMISSION, NULL,
				    "resolve %s/%s: user %s is not a member of the environment", org,
				    slug, user);
	auth = role_authorization(row->role);
	if (auth == NULL || row->authorization == NULL || strcmp(auth, row->authorization) != 0)
		return envdbi_error(ENVDB_ERR_PERMISSION, NULL,
				    "resolve %s/%s: user %s has unknown role %s", org, slug, user,
				    row->role);
	if (row->db_id == NULL)
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				    "resolve %s/%s: environment %s/%s: database: not found", org, slug,
				    org, slug);
	if (row->cred_id == NULL) {
		envdbi_plugin *p = envdbi_plugins_find(ctx->plugins, row->driver,
						       ENVDB_PLUGIN_ADAPTER);

		if (strcmp(auth, "read_only") == 0 &&
		    (p == NULL || !(envdbi_plugin_capabilities(p) & ENVDB_ADAPTER_CAP_READ_ONLY)))
			return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
					    "resolve %s/%s: user %s is a %s and needs a read-only "
					    "credential, which driver %s cannot mint (full access is "
					    "never handed out instead)",
					    org, slug, user, row->role, row->driver);
		return envdbi_error(ENVDB_ERR_AUTH, NULL,
				    "resolve %s/%s: database %s has no active %s credential (mint "
				    "one: envdb cred mint %s/%s --authorization %s)",
				    org, slug, row->database_name, auth, org, slug, auth);
	}
	if (row->cred_expires_at != 0 && row->cred_expires_at <= now)
		return envdbi_error(ENVDB_ERR_AUTH, NULL,
				    "resolve %s/%s: the active %s credential %s expired at %lld (%lld s "
				    "ago); rotate it: envdb cred rotate %s/%s --authorization %s",
				    org, slug, auth, row->cred_id, (long long)row->cred_expires_at,
				    (long long)(now - row->cred_expires_at), org, slug, auth);
	rc = open_secret(sec_out, ctx, row, row->cred_id, row->cred_ciphertext,
			 row->cred_aad_version);
	if (rc != ENVDB_OK)
		return envdbi_error_prefix("resolve %s/%s: ", org, slug);
	if (row->prev_id != NULL) {
		rc = open_secret(prev_sec_out, ctx, row, row->prev_id, row->prev_ciphertext,
				 row->prev_aad_version);
		if (rc != ENVDB_OK)
			return envdbi_error_prefix("resolve %s/%s: ", org, slug);
	}
	r->f[F_ENV_ID] = row->env_id;
	r->f[F_ORG] = org;
	r->f[F_SLUG] = slug;
	r->f[F_DRIVER] = row->driver;
	r->f[F_DB_NAME] = row->database_name;
	r->f[F_URL] = row->database_url;
	/* A handle that is a URL query ("?mode=ro": sqlite's read-only
	 * credential) is part of the address the credential reaches: the URL
	 * handed out carries it (sdk/doc/ABI.md, mint). */
	if (row->cred_handle != NULL && row->cred_handle[0] == '?' && row->cred_handle[1] != '\0' &&
	    row->database_url != NULL) {
		size_t n = strlen(row->database_url) + strlen(row->cred_handle) + 1;

		if ((r->url_owned = malloc(n)) == NULL)
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "resolve %s/%s: out of memory",
					    org, slug);
		snprintf(r->url_owned, n, "%s%c%s", row->database_url,
			 strchr(row->database_url, '?') ? '&' : '?', row->cred_handle + 1);
		r->f[F_URL] = r->url_owned;
	}
	r->f[F_ROLE] = row->role;
	r->f[F_AUTH] = auth;
	r->f[F_CRED_ID] = row->cred_id;
	r->f[F_CRED_HANDLE] = row->cred_handle ? row->cred_handle : "";
	r->f[F_PREV_CRED_ID] = row->prev_id;
	r->f[F_PREV_CRED_HANDLE] = row->prev_id ? (row->prev_handle ? row->prev_handle : "") : NULL;
	r->f[F_DB_ID] = row->db_id;
	r->secret = (*sec_out)->data;
	r->secret_len = (*sec_out)->len;
	r->expires_at = row->cred_expires_at;
	r->prev_secret = *prev_sec_out ? (*prev_sec_out)->data : NULL;
	r->prev_secret_len = *prev_sec_out ? (*prev_sec_out)->len : 0;
	r->prev_expires_at = row->prev_id ? row->prev_expires_at : 0;
	return ENVDB_OK;
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
	envdbi_resolve_row *row = NULL;
	envdbi_secret *sec = NULL, *prev_sec = NULL;
	cache_entry *fresh = NULL;
	char key[KEY_MAX];
	size_t lo, ls, lu, key_len = 0;
	uint64_t hash = 0, gen = 0;
	resolved r;
	int64_t now;
	bool cacheable;
	int rc;

	if (out == NULL || ctx == NULL || organization_id == NULL || slug == NULL ||
	    user_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "resolve: missing argument");
	*out = NULL;
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
		hash = hash_of(c, key, key_len);
		pthread_mutex_lock(&c->lock);
		e = entry_find(c, hash, key, key_len);
		if (e != NULL && (e->deadline_ms <= mono_ms() ||
				  (e->img->expires_at != 0 && e->img->expires_at <= now))) {
			/* Stale, or its credential expired: the slow path decides. */
			entry_remove(c, e);
			e = NULL;
		}
		if (e != NULL) {
			/* A hit: this key passed the checks below when it was
			 * cached. */
			e->referenced = true;
			c->stats.hits++;
			rc = connection_from_image(out, e->img, now);
			/* last_accessed_at: the entry keeps the time; its touch
			 * record is consulted only once a write may be due, and
			 * the write is queued, never made here. */
			e->last_access = now;
			if (now >= e->touch_after && e->touch != NULL) {
				touch_fold(e);
				touch_note(c, e->touch, now);
				e->touch_after = e->touch->last_written + ENVDBI_TOUCH_INTERVAL_S;
			}
			pthread_mutex_unlock(&c->lock);
			return rc;
		}
		c->stats.misses++;
		gen = c->generation;
		pthread_mutex_unlock(&c->lock);
	}

	if ((rc = envdbi_check_env_ref("resolve", organization_id, slug)) != ENVDB_OK)
		return rc;
	if (ctx->store == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "resolve %s/%s: the context has no control plane open",
				    organization_id, slug);
	if (*user_id == '\0')
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "resolve %s/%s: empty user id",
				    organization_id, slug);
	if ((rc = envdbi_check_ident("resolve", "user id", user_id)) != ENVDB_OK)
		return envdbi_error_prefix("%s/%s: ", organization_id, slug);
	memset(&r, 0, sizeof(r));
	rc = resolve_load(ctx, &r, &row, &sec, &prev_sec, organization_id, slug, user_id, now);
	if (rc != ENVDB_OK)
		goto out;
	fresh = entry_new(&r, key, cacheable ? key_len : 0);
	if (fresh == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL,
				  "resolve %s/%s: out of secure memory for the result",
				  organization_id, slug);
		goto out;
	}
	if ((rc = connection_from_image(out, fresh->img, now)) != ENVDB_OK)
		goto out;
	if (c != NULL) {
		touch_rec *t;

		pthread_mutex_lock(&c->lock);
		t = touch_find(c, row->db_id, true);
		touch_note(c, t, now); /* t NULL (out of memory): not recorded */
		if (cacheable && c->generation == gen) {
			cache_insert(c, fresh, hash, t, now);
			fresh = NULL; /* the cache's now */
		}
		pthread_mutex_unlock(&c->lock);
	}
out:
	envdbi_secure_free(fresh);
	envdbi_secret_free(sec);
	envdbi_secret_free(prev_sec);
	free(r.url_owned);
	free(row);
	return rc;
}
