/*
 * core/resolve.h — the resolve cache (resolve.c): a bounded cache of
 * resolve results with a TTL (evicted by CLOCK, an approximation of LRU that
 * costs a hit nothing), looked up through a hash map in O(1), invalidated
 * per environment in O(entries of that environment), whose results live in
 * secure memory; and the coalescing of last_accessed_at writes.
 *
 * Lifecycle: envdb_resolve() creates ctx->cache on first use
 * (envdbi_cache_new(&c, ctx->store, manifest cache_size, cache_ttl_ms),
 * installed with an atomic compare-and-swap) — also when cache_size is 0:
 * such a cache keeps no results but still coalesces the last_accessed_at
 * writes.  A resolve never writes last_accessed_at itself: it queues the
 * write, and the cache's flusher thread (started with the first queued
 * write; it only ever touches the store through the cache's borrowed
 * pointer) writes queued values in batches, one transaction each.
 * envdb_close() (context.c) calls envdbi_cache_free(ctx->cache) BEFORE
 * closing the store: it stops the flusher and writes the rest, in one
 * transaction, through it.
 *
 * Invalidation (envdbi_cache_invalidate_env, declared in store.h) is called
 * by every change made through this context that affects a resolve result:
 * rotation, completion, revocation and rewrap (credential.c), membership
 * (member.c), archive, delete and status changes (provision.c).  Changes
 * made by other processes (other hosts) are seen within milliseconds on a
 * PostgreSQL control plane, whose triggers NOTIFY them to every cache
 * (envdbi_store_watch_start(), core/store_pg.h), and otherwise — on SQLite,
 * or while that channel is down, which is logged — when the entry's TTL
 * ends.
 *
 * Thread-safe: one mutex guards the cache.  A hit runs no SQL and makes one
 * allocation (the returned connection, in secure memory).
 */
#ifndef ENVDB_RESOLVE_H
#define ENVDB_RESOLVE_H

#include "internal.h"

/** last_accessed_at of a database is written at most this often. */
#define ENVDBI_TOUCH_INTERVAL_S 60
/** The flusher writes the pending last_accessed_at values (in one
 * transaction) once this many are pending... */
#define ENVDBI_TOUCH_BATCH 1024
/** ...or once the oldest has waited this long. */
#define ENVDBI_TOUCH_FLUSH_MS 2000

/** Create a cache of at most `capacity` results (0: none kept) living
 * `ttl_ms` milliseconds each.  `store` is borrowed until envdbi_cache_free()
 * (used only to flush last_accessed_at; may be NULL).  *out owned by the
 * caller. */
int envdbi_cache_new(envdbi_cache **out, envdbi_store *store, int64_t capacity, int64_t ttl_ms);

/** Flush the pending last_accessed_at writes, wipe every cached secret and
 * release the cache.  NULL allowed.  Call before the store is closed. */
void envdbi_cache_free(envdbi_cache *c);

/** Counters, for tests and `envdb` diagnostics. */
typedef struct envdbi_cache_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t invalidations; /**< entries dropped by invalidation */
	uint64_t evictions;     /**< entries dropped for room (CLOCK) */
	uint64_t touch_writes;  /**< last_accessed_at values written */
	uint64_t touch_flushes; /**< transactions that wrote them */
	uint64_t remote_invalidations; /**< changes of other hosts notified (PostgreSQL) */
	size_t size;            /**< entries held now */
	size_t capacity;
} envdbi_cache_stats;
void envdbi_cache_get_stats(envdbi_cache_stats *out, envdbi_cache *c);

/** Write the queued last_accessed_at values now, in one transaction, on
 * the calling thread, as the flusher and free do. */
int envdbi_cache_flush_touches(envdbi_cache *c);

/** Tests: flush once `batch` (>= 1) records are pending or the oldest has
 * waited `interval_ms` (defaults ENVDBI_TOUCH_BATCH, ENVDBI_TOUCH_FLUSH_MS). */
void envdbi_cache_set_flush(envdbi_cache *c, size_t batch, int64_t interval_ms);

/** SipHash with `c` compression and `d` finalization rounds of the `n`
 * bytes at `p` under the 16-byte key `k` (the cache's keys use SipHash-1-3,
 * the variant Rust's HashMap uses against hash flooding: a fifth of a
 * cached resolve was libsodium's SipHash-2-4; tests check the 2-4 variant
 * against crypto_shorthash, which pins the construction). */
uint64_t envdbi_siphash(const unsigned char k[16], const void *p, size_t n, int c, int d);

#endif /* ENVDB_RESOLVE_H */
