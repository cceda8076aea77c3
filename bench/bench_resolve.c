/*
 * bench/bench_resolve.c — workloads 2 and 3: envdb_resolve() with the
 * cache (every call a hit) and without it (manifest resolve.cache_size: 0),
 * each against its floor, on W environments provisioned through the
 * library (sqlite adapter, kms encryptor); every resolve is for the owner
 * (full_access), in a random order over the working set.
 *
 * 2. Cached.  Measured: envdb_resolve() + envdb_connection_free() on a
 *    context whose cache holds the W environments.  Floor: a lookup in a
 *    plain chained hash table (FNV-1a, power-of-two buckets, one entry
 *    allocation each, like the cache) of the same W entries holding the same
 *    data (every string and the secret of the connection the library
 *    returns): build the key organization\0slug\0user, hash it, walk the
 *    bucket, compare, and copy the entry's bytes into the caller's buffer
 *    (a resolve hands out a copy: the cache may drop the entry at any
 *    time).  No lock, no expiry check, no secure memory.  Targets: <= 2 x
 *    floor, and >= 1,000,000 resolves per second on one core (the program
 *    is single-threaded).
 * 3. Uncached.  Measured: envdb_resolve() + envdb_connection_free() on a
 *    context of the same control plane with resolve.cache_size: 0.  Floor:
 *    the indexed point query on the control plane (one prepared SELECT
 *    joining environment, member, database and active credential through
 *    their unique indexes, on a connection of its own, WAL) plus one AEAD
 *    decryption of the ciphertext it returns (base64 decode, XChaCha20-
 *    Poly1305 with the kms key and the same associated data).  Target:
 *    <= 1.5 x floor.
 * 3b. Cold.  Measured: on a context just opened (not timed), the first
 *    resolve of each of the W environments (cache on: each a miss, and the
 *    first resolve of its database in this process, which records
 *    last_accessed_at).  Floor: the uncached floor — a cold resolve makes no
 *    durable write of its own (last_accessed_at is queued and written by the
 *    context's flusher thread or at close, in one transaction), so none is
 *    in the floor either.  Target: 0 disk syncs per resolve on the calling
 *    thread (the ratio is shown without one: a new context's SQLite page
 *    cache is cold, the floor's is warm).  Then envdb_close() of that context,
 *    which writes the W queued last_accessed_at values: its time (target
 *    < 100 ms) and syncs.
 *
 * Disk syncs (fsync + fdatasync, tests/sync_count.c) per operation are
 * printed with every figure that could make one.
 *
 * Environment: ENVDB_BENCH_RESOLVE_ENVS (W, default 1000),
 * ENVDB_BENCH_RESOLVE_OPS (cached resolves per run, default 200000),
 * ENVDB_BENCH_RUNS (default 7), TMPDIR.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "bench.h"
#include "internal.h"
#include "sync_count.h"

#define SLUG "prod"
#define USER "owner"
#define REC_MAX 4096

/* ------------------------------------------------------------------------ */
/* The cached floor: a plain hash table with the same data                   */
/* ------------------------------------------------------------------------ */

typedef struct fentry {
	struct fentry *next;
	uint64_t hash;
	size_t key_len, rec_len;
	char *blob; /* key, then the record */
} fentry;

typedef struct ftable {
	fentry **buckets;
	size_t n_buckets;
} ftable;

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static size_t make_key(char *key, const char *org, const char *slug, const char *user)
{
	size_t lo = strlen(org), ls = strlen(slug), lu = strlen(user);

	memcpy(key, org, lo + 1);
	memcpy(key + lo + 1, slug, ls + 1);
	memcpy(key + lo + ls + 2, user, lu + 1);
	return lo + ls + lu + 3;
}

/* The record: every string of the connection and the secret, as bytes. */
static size_t make_record(char *rec, const envdb_connection *c)
{
	const char *f[] = {c->environment_id, c->organization_id, c->slug,   c->driver,
			   c->database_name,  c->database_url,    c->role,   c->authorization,
			   c->credential_id};
	size_t n = sizeof(*c), i, l;

	memcpy(rec, c, sizeof(*c)); /* the fixed part: lengths, times */
	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		l = strlen(f[i]) + 1;
		memcpy(rec + n, f[i], l);
		n += l;
	}
	memcpy(rec + n, c->secret, c->secret_len + 1);
	return n + c->secret_len + 1;
}

static void ftable_init(ftable *t, size_t n)
{
	t->n_buckets = 16;
	while (t->n_buckets < n + n / 3)
		t->n_buckets *= 2;
	t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
	if (t->buckets == NULL)
		abort();
}

static void ftable_put(ftable *t, const char *org, const envdb_connection *c)
{
	char key[512], rec[REC_MAX];
	fentry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		abort();
	e->key_len = make_key(key, org, SLUG, USER);
	e->rec_len = make_record(rec, c);
	e->blob = malloc(e->key_len + e->rec_len);
	if (e->blob == NULL)
		abort();
	memcpy(e->blob, key, e->key_len);
	memcpy(e->blob + e->key_len, rec, e->rec_len);
	e->hash = fnv1a(key, e->key_len);
	e->next = t->buckets[e->hash & (t->n_buckets - 1)];
	t->buckets[e->hash & (t->n_buckets - 1)] = e;
}

/* The floor of one cached resolve: key, hash, bucket walk, copy out. */
static size_t ftable_get(ftable *t, char *out, const char *org, const char *slug,
			 const char *user)
{
	char key[512];
	size_t key_len = make_key(key, org, slug, user);
	uint64_t h = fnv1a(key, key_len);
	fentry *e;

	for (e = t->buckets[h & (t->n_buckets - 1)]; e != NULL; e = e->next)
		if (e->hash == h && e->key_len == key_len && memcmp(e->blob, key, key_len) == 0) {
			memcpy(out, e->blob + key_len, e->rec_len);
			return e->rec_len;
		}
	return 0;
}

static void ftable_free(ftable *t)
{
	size_t i;

	for (i = 0; i < t->n_buckets; i++)
		while (t->buckets[i] != NULL) {
			fentry *e = t->buckets[i];

			t->buckets[i] = e->next;
			free(e->blob);
			free(e);
		}
	free(t->buckets);
}

/* ------------------------------------------------------------------------ */
/* The uncached floor: one point query + one AEAD decryption                 */
/* ------------------------------------------------------------------------ */

typedef struct qfloor {
	sqlite3 *db;
	sqlite3_stmt *st;
	char key_id[128];
	unsigned char key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
} qfloor;

static const char *const point_query =
	"SELECT e.id, e.status, m.role, d.id, d.driver, d.database_name, d.database_url, "
	"c.id, c.secret_ciphertext, c.expires_at "
	"FROM sys_environment e "
	"JOIN sys_environment_member m ON m.environment_id = e.id AND m.user_id = ?3 "
	"JOIN sys_environment_database d ON d.environment_id = e.id "
	"JOIN sys_database_credential c ON c.environment_database_id = d.id "
	"AND c.authorization = 'full_access' AND c.status = 'active' "
	"WHERE e.organization_id = ?1 AND e.slug = ?2";

static void qfloor_open(qfloor *q, const char *dir)
{
	char path[1300], cur[128] = "";
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/control.db", dir);
	if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
	    sqlite3_exec(q->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(q->db, point_query, -1, SQLITE_PREPARE_PERSISTENT, &q->st, NULL) !=
		    SQLITE_OK) {
		fprintf(stderr, "bench_resolve: floor: %s\n", sqlite3_errmsg(q->db));
		exit(2);
	}
	sqlite3_busy_timeout(q->db, 5000);
	/* The kms key, as the encryptor holds it in memory. */
	snprintf(path, sizeof(path), "%s/keyring/current", dir);
	f = fopen(path, "r");
	if (f == NULL || fgets(cur, sizeof(cur), f) == NULL) {
		fprintf(stderr, "bench_resolve: floor: no current key\n");
		exit(2);
	}
	fclose(f);
	cur[strcspn(cur, "\n")] = '\0';
	snprintf(q->key_id, sizeof(q->key_id), "%s", cur);
	snprintf(path, sizeof(path), "%s/keyring/%s.key", dir, cur);
	f = fopen(path, "rb");
	n = f ? fread(q->key, 1, sizeof(q->key), f) : 0;
	if (f)
		fclose(f);
	if (n != sizeof(q->key)) {
		fprintf(stderr, "bench_resolve: floor: cannot read %s\n", path);
		exit(2);
	}
}

/* One uncached floor: the query, then "edb1.<key id>.<base64(nonce|ct|tag)>"
 * opened with AAD "edb1.<key id>." || envdb_credential_aad_bound(). */
static int qfloor_get(qfloor *q, const char *org, const char *slug, const char *user,
		      unsigned char *pt, size_t *pt_len)
{
	unsigned char raw[1024], ad[256];
	const char *ct, *body, *cred_id, *db_id;
	size_t raw_len = 0, hdr, aad_len;
	unsigned long long mlen = 0;
	int ok = -1;

	sqlite3_bind_text(q->st, 1, org, -1, SQLITE_STATIC);
	sqlite3_bind_text(q->st, 2, slug, -1, SQLITE_STATIC);
	sqlite3_bind_text(q->st, 3, user, -1, SQLITE_STATIC);
	if (sqlite3_step(q->st) != SQLITE_ROW)
		goto out;
	db_id = (const char *)sqlite3_column_text(q->st, 3);
	cred_id = (const char *)sqlite3_column_text(q->st, 7);
	ct = (const char *)sqlite3_column_text(q->st, 8);
	body = strchr(ct + 5, '.');
	if (body == NULL)
		goto out;
	body++;
	hdr = (size_t)(body - ct);
	if (sodium_base642bin(raw, sizeof(raw), body, strlen(body), NULL, &raw_len, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    raw_len < crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
			      crypto_aead_xchacha20poly1305_ietf_ABYTES)
		goto out;
	memcpy(ad, ct, hdr);
	{
		/* the associated data resolve uses: version 2 binds the address */
		envdb_database d = {.id = (char *)db_id,
				    .driver = (char *)sqlite3_column_text(q->st, 4),
				    .database_name = (char *)sqlite3_column_text(q->st, 5),
				    .database_url = (char *)sqlite3_column_text(q->st, 6)};

		if (envdb_credential_aad_bound(ad + hdr, sizeof(ad) - hdr, &aad_len,
					       ENVDB_CREDENTIAL_AAD_VERSION, cred_id, &d) != 0)
			goto out;
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		    pt, &mlen, NULL, raw + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
		    raw_len - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, ad, hdr + aad_len, raw,
		    q->key) != 0)
		goto out;
	*pt_len = (size_t)mlen;
	ok = 0;
out:
	sqlite3_reset(q->st);
	return ok;
}

/* ------------------------------------------------------------------------ */
/* Runs                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct setup {
	const char *manifest;
	envdb_ctx *cached, *uncached;
	uint64_t syncs, sync_ops;     /* calling thread, resolve runs */
	uint64_t close_syncs, closes; /* calling thread, cold-context closes */
	double close_ms[64];
	int n_close;
	char **orgs;   /* organization of environment i */
	size_t *order; /* a random sequence of environment indices */
	size_t w, ops;
	ftable table;
	qfloor q;
	volatile size_t sink;
} setup;

static uint64_t thread_syncs(void)
{
	sync_counts c;

	sync_count_get_thread(&c);
	return c.total;
}

static double lib_run(envdb_ctx *ctx, setup *S, size_t ops)
{
	envdb_connection *c = NULL;
	uint64_t s0 = thread_syncs();
	double t0 = bench_now(), t;
	size_t i;

	for (i = 0; i < ops; i++) {
		if (envdb_resolve(&c, ctx, S->orgs[S->order[i % S->w]], SLUG, USER) != 0)
			bench_die("resolve");
		S->sink += c->secret_len;
		envdb_connection_free(c);
	}
	t = (bench_now() - t0) * 1e9 / (double)ops;
	S->syncs += thread_syncs() - s0;
	S->sync_ops += ops;
	return t;
}

/* 3b: a new context, each environment resolved once, then closed. */
static double cold_lib(void *arg, int run)
{
	setup *S = arg;
	envdb_ctx *ctx = NULL;
	uint64_t s0;
	double t, t0;

	(void)run;
	if (envdb_open(&ctx, S->manifest, 0) != 0)
		bench_die("open");
	/* A new second (not timed): the close then writes new values (SQLite
	 * writes nothing, and syncs nothing, for a row updated to what it
	 * holds). */
	sleep(1);
	t = lib_run(ctx, S, S->w) / 1e3;
	s0 = thread_syncs();
	t0 = bench_now();
	envdb_close(ctx);
	if (S->n_close < (int)(sizeof(S->close_ms) / sizeof(S->close_ms[0])))
		S->close_ms[S->n_close++] = (bench_now() - t0) * 1e3;
	S->close_syncs += thread_syncs() - s0;
	S->closes++;
	return t;
}

static double cached_lib(void *arg, int run)
{
	setup *S = arg;

	(void)run;
	return lib_run(S->cached, S, S->ops);
}

static double cached_floor(void *arg, int run)
{
	setup *S = arg;
	char out[REC_MAX];
	double t0 = bench_now();
	size_t i, n;

	(void)run;
	for (i = 0; i < S->ops; i++) {
		n = ftable_get(&S->table, out, S->orgs[S->order[i % S->w]], SLUG, USER);
		if (n == 0)
			return -1;
		S->sink += (unsigned char)out[n - 2];
	}
	return (bench_now() - t0) * 1e9 / (double)S->ops;
}

static double uncached_lib(void *arg, int run)
{
	setup *S = arg;

	(void)run;
	return lib_run(S->uncached, S, S->w) / 1e3;
}

static double uncached_floor(void *arg, int run)
{
	setup *S = arg;
	unsigned char pt[1024];
	double t0 = bench_now();
	size_t i, len = 0;

	(void)run;
	for (i = 0; i < S->w; i++) {
		if (qfloor_get(&S->q, S->orgs[S->order[i]], SLUG, USER, pt, &len) != 0) {
			fprintf(stderr, "bench_resolve: floor query failed\n");
			return -1;
		}
		S->sink += len;
	}
	sodium_memzero(pt, sizeof(pt));
	return (bench_now() - t0) * 1e6 / (double)S->w;
}

int main(void)
{
	char dir[1024], man[1200], man_nc[1200], extra[256], fs[32], title[160];
	size_t w = (size_t)bench_env_long("ENVDB_BENCH_RESOLVE_ENVS", bench_quick() ? 200 : 1000);
	int runs = bench_runs(bench_quick() ? 3 : 7), rc;
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	envdb_connection *c = NULL;
	bench_stats m, f, rate;
	double t0;
	size_t i;
	setup S;

	memset(&S, 0, sizeof(S));
	S.w = w;
	S.ops = (size_t)bench_env_long("ENVDB_BENCH_RESOLVE_OPS", bench_quick() ? 50000 : 200000);
	bench_begin("bench_resolve");
	setenv("ENVDB_LOG_LEVEL", "error", 0);
	if (sodium_init() < 0 || bench_mkdtemp(dir, sizeof(dir), NULL, "resolve") != 0) {
		perror("bench_resolve: setup");
		return 2;
	}
	snprintf(extra, sizeof(extra), "resolve:\n  cache_size: %zu\n  cache_ttl_ms: 3600000\n", w);
	bench_manifest(man, sizeof(man), dir, "envdb.yaml", extra);
	bench_manifest(man_nc, sizeof(man_nc), dir, "envdb-nocache.yaml",
		       "resolve:\n  cache_size: 0\n");
	bench_init_store(man);
	S.manifest = man;
	if (envdb_open(&S.cached, man, 0) != 0 || envdb_open(&S.uncached, man_nc, 0) != 0)
		bench_die("open");
	bench_fs_type(fs, sizeof(fs), dir);

	/* W environments through the library. */
	S.orgs = calloc(w, sizeof(*S.orgs));
	S.order = calloc(w, sizeof(*S.order));
	o.created_by = USER;
	t0 = bench_now();
	for (i = 0; i < w; i++) {
		char org[32];

		snprintf(org, sizeof(org), "org-%05zu", i);
		S.orgs[i] = strdup(org);
		S.order[i] = i;
		if (envdb_org_provision(NULL, S.cached, org, SLUG, &o) != 0)
			bench_die("provision");
	}
	printf("bench_resolve: %zu environments provisioned in %.1f s on %s (%s); %d runs each\n",
	       w, bench_now() - t0, dir, fs, runs);
	for (i = w; i > 1; i--) { /* Fisher-Yates, fixed seed: the same order every time */
		size_t j = (size_t)(bench_rand() % i), tmp = S.order[i - 1];

		S.order[i - 1] = S.order[j];
		S.order[j] = tmp;
	}

	/* The floor table holds what the library returns. */
	ftable_init(&S.table, w);
	for (i = 0; i < w; i++) {
		if (envdb_resolve(&c, S.uncached, S.orgs[i], SLUG, USER) != 0)
			bench_die("resolve");
		ftable_put(&S.table, S.orgs[i], c);
		envdb_connection_free(c);
	}
	qfloor_open(&S.q, dir);

	/* 2. Cached: one warm-up pass fills the cache (and writes each
	 * database's last_accessed_at once), then every resolve is a hit. */
	S.syncs = S.sync_ops = 0;
	if (bench_pair(&m, &f, 1, runs, cached_lib, &S, cached_floor, &S) != 0)
		return 2;
	snprintf(title, sizeof(title), "2 resolve, cached (%zu envs, all hits)", w);
	bench_ratio("resolve_cached", title, "ns", &m, &f, "floor",
		    "a plain chained hash table (FNV-1a, power-of-two buckets) of the same entries "
		    "holding the same data: build the key org\\0slug\\0user, hash, walk the "
		    "bucket, compare, copy the entry's bytes (every string of the connection and "
		    "the secret) to the caller; no lock, no expiry, no secure memory",
		    2.0);
	bench_syncs((double)S.syncs / (double)S.sync_ops, 0);
	rate.n = m.n;
	rate.median = 1e9 / m.median;
	rate.min = 1e9 / m.max;
	rate.max = 1e9 / m.min;
	bench_value("resolve_cached_rate", "2 resolve, cached: rate on one core", "/s", &rate,
		    BENCH_AT_LEAST, 1e6, NULL);

	/* 3. Uncached. */
	S.syncs = S.sync_ops = 0;
	if (bench_pair(&m, &f, 1, runs, uncached_lib, &S, uncached_floor, &S) != 0)
		return 2;
	snprintf(title, sizeof(title), "3 resolve, uncached (cache_size 0, %zu envs)", w);
	bench_ratio("resolve_uncached", title, "us", &m, &f, "floor",
		    "the indexed point query on the control plane (one prepared SELECT joining "
		    "environment, member, database and active credential through their unique "
		    "indexes, own connection, WAL) plus one AEAD decryption (base64 decode, "
		    "XChaCha20-Poly1305 open with the kms key and the same associated data)",
		    1.5);
	bench_syncs((double)S.syncs / (double)S.sync_ops, 0);

	/* 3b. Cold, and the close that writes what it queued. */
	S.syncs = S.sync_ops = 0;
	if (bench_pair(&m, &f, 0, runs, cold_lib, &S, uncached_floor, &S) != 0)
		return 2;
	snprintf(title, sizeof(title), "3 resolve, cold (first of each of %zu dbs in a context)",
		 w);
	bench_ratio("resolve_cold", title, "us", &m, &f, "floor",
		    "the uncached floor: the point query and the AEAD decryption; a cold resolve "
		    "makes no durable write (last_accessed_at is queued for the context's "
		    "flusher), so the floor has none either; no target (a new context also "
		    "starts with a cold SQLite page cache, the floor's connection is warm)",
		    0);
	bench_syncs((double)S.syncs / (double)S.sync_ops, 0);
	{
		bench_stats sy = {(double)S.syncs / (double)S.sync_ops,
				  (double)S.syncs / (double)S.sync_ops,
				  (double)S.syncs / (double)S.sync_ops, 1};
		bench_stats cl = bench_stats_of(S.close_ms, S.n_close);

		bench_value("resolve_cold_syncs", "3 resolve, cold: disk syncs per resolve",
			    "syncs", &sy, BENCH_AT_MOST, 0,
			    "fsync + fdatasync made by the resolving thread, per resolve");
		snprintf(title, sizeof(title), "3 close after %zu cold resolves", w);
		bench_value("resolve_close", title, "ms", &cl, BENCH_AT_MOST, 100,
			    "envdb_close() of the cold context: writes the queued last_accessed_at "
			    "values in one transaction");
		bench_syncs((double)S.close_syncs / (double)S.closes, -1);
	}

	sqlite3_finalize(S.q.st);
	sqlite3_close(S.q.db);
	sodium_memzero(S.q.key, sizeof(S.q.key));
	ftable_free(&S.table);
	envdb_close(S.cached);
	envdb_close(S.uncached);
	for (i = 0; i < w; i++)
		free(S.orgs[i]);
	free(S.orgs);
	free(S.order);
	rc = bench_finish();
	bench_rmtree(dir);
	return rc;
}
