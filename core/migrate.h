/*
 * core/migrate.h — internal pieces of the v4 → v5 migration (migrate.c)
 * that other files of the tree need: the v4 token format (its associated
 * data), shared with the seeding helper of the tests, and the choice of
 * the adapter of a legacy URL by its scheme.  The public entry point is envdb_migrate_v4_to_v5() in
 * <envdb/envdb.h>; the procedure is documented in core/MIGRATION.md.
 */
#ifndef ENVDB_MIGRATE_H
#define ENVDB_MIGRATE_H

#include "internal.h"

/** The associated data of a v4 auth_token is this prefix followed by the
 * sys_tenant_database row id (ASCII, no terminator). */
#define ENVDBI_LEGACY_AAD_PREFIX "sys_tenant_database:"

/** Bytes enough for any legacy AAD (prefix + a UUID + NUL). */
#define ENVDBI_LEGACY_AAD_MAX (sizeof(ENVDBI_LEGACY_AAD_PREFIX) + 64)

/**
 * Write the AAD of the v4 token of legacy row `legacy_id` (borrowed) into
 * `buf` (ENVDBI_LEGACY_AAD_MAX bytes) and return its length (without the
 * NUL written after it), or 0 when the id is too long.
 */
size_t envdbi_legacy_token_aad(char *buf, size_t cap, const char *legacy_id);

/**
 * The adapter driver of a legacy database URL, from its scheme: the name of
 * the one adapter whose descriptor lists the scheme in its url_schemes (ABI
 * 1.1; sqlite serves file:, postgres postgres:// and postgresql://, turso
 * libsql:// and https://): a loaded adapter of `set`, else one installed in
 * its plugin directory (envdbi_adapter_of_scheme).  *driver is owned by
 * `set`.  Returns ENVDB_ERR_INVALID (with a
 * message naming the scheme, never the rest of the URL) for a scheme no
 * adapter (or two adapters) serve, a missing scheme, "scheme://" without a
 * host, a URL that carries a password in its user information or a
 * credential in its query string.
 */
int envdbi_migrate_driver_of_url(envdbi_plugins *set, const char **driver, const char *url);

/**
 * Ids for the rows one migration run writes, in creation order: canonical
 * UUID text of version 4 and RFC 4122 variant, whose first 60 bits are a
 * counter started from the run's clock (milliseconds << 12) and whose last
 * 62 bits are random (libsodium).  A run inserts 100,000s of rows: with
 * random ids every primary-key and reference index takes each insert on a
 * random leaf, so every large transaction dirties (and writes) nearly all
 * of their pages again; ids in creation order append.  Unique across runs
 * by the random part.  *state starts at 0; not thread-safe.
 */
void envdbi_migrate_uuid_next(uint64_t *state, char out[37]);

#endif /* ENVDB_MIGRATE_H */
