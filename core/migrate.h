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

#endif /* ENVDB_MIGRATE_H */
