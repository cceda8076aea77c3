/*
 * core/migrate.h — internal pieces of the v4 → v5 migration (migrate.c)
 * that other files of the tree need: the v4 token format (its associated
 * data), shared with the seeding helper of the tests, and the URL-scheme
 * driver mapping.  The public entry point is envdb_migrate_v4_to_v5() in
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
 * The adapter driver of a legacy database URL, from its scheme:
 * libsql:// and https:// → "turso", file: → "sqlite", postgres:// and
 * postgresql:// → "postgres".  *driver is static.  Returns ENVDB_ERR_INVALID
 * (with a message naming the scheme, never the rest of the URL) for any
 * other scheme, a missing scheme, or a URL that carries a password in its
 * user information.
 */
int envdbi_migrate_driver_of_url(const char **driver, const char *url);

#endif /* ENVDB_MIGRATE_H */
