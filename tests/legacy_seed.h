/*
 * tests/legacy_seed.h — write a legacy v4 control plane: sys_tenant_database
 * rows whose auth_token is sealed with the *legacy* encryptor under the v4
 * associated data ("sys_tenant_database:" + row id, see core/migrate.h and
 * core/MIGRATION.md), and sys_package_installation rows pointing at them.
 * Used by tests/test_migrate.c and bench/bench_migrate.c; linked with the
 * internal library (core/libenvdb-cp.la), so it talks to the store directly.
 *
 * Everything here runs inside the caller's context: the rows go through the
 * context's store (one transaction per call of legacy_seed_generate), the
 * tokens through the named encryptor plugin of its manifest.
 */
#ifndef ENVDB_TESTS_LEGACY_SEED_H
#define ENVDB_TESTS_LEGACY_SEED_H

#include <stddef.h>
#include <stdint.h>

#include <envdb/envdb.h>

/** How to spoil a token (LEGACY_TOKEN_*). */
enum legacy_token_kind {
	LEGACY_TOKEN_GOOD = 0,      /**< sealed with the legacy encryptor, right AAD */
	LEGACY_TOKEN_NONE,          /**< auth_token NULL */
	LEGACY_TOKEN_WRONG_AAD,     /**< sealed for another row (copied ciphertext) */
	LEGACY_TOKEN_GARBAGE,       /**< not encryptor output at all */
	LEGACY_TOKEN_CURRENT_KEY,   /**< sealed with the *current* encryptor */
	LEGACY_TOKEN_PLAINTEXT      /**< the token itself (v4's default no-op encryptor) */
};

/** One legacy row.  Strings borrowed for the call; NULL gives the default
 * noted at each field. */
typedef struct legacy_row {
	const char *id;              /**< UUID; NULL: a new one */
	const char *organization_id; /**< required */
	const char *database_name;   /**< required, unique */
	const char *database_url;    /**< required */
	const char *token;           /**< plaintext token (required for GOOD ...) */
	int token_kind;              /**< legacy_token_kind */
	const char *status;          /**< NULL: active */
	const char *region;          /**< NULL: none */
	const char *plan;            /**< NULL: free */
	int64_t storage_limit_mb;    /**< 0: 1024 */
	const char *driver;          /**< legacy driver column, NULL: none */
	int64_t created_at;          /**< 0: now */
} legacy_row;

/**
 * Insert one legacy row through ctx's store, sealing `r->token` with the
 * encryptor plugin `legacy_encryptor` (NULL: the manifest's
 * legacy.encryptor, else its default encryptor).  The id used is copied to
 * id_out (may be NULL).  Returns an envdb status (last error set).
 */
int legacy_seed_row(envdb_ctx *ctx, const char *legacy_encryptor, const legacy_row *r,
		    char id_out[37]);

/** Insert one package installation of tenant `tenant_id`. */
int legacy_seed_package(envdb_ctx *ctx, const char *tenant_id, const char *package_id,
			const char *version, char id_out[37]);

/** What legacy_seed_generate() makes. */
typedef struct legacy_gen_opts {
	size_t n_orgs;          /**< organizations */
	uint64_t seed;          /**< PRNG seed: same seed, same rows (ids included) */
	int mixed;              /**< 0: one good sqlite row per org, no packages
				     (bench); 1: the mix below */
	const char *file_dir;   /**< directory where file: URLs point and where an
				     empty SQLite file is created per file: row; NULL:
				     /nonexistent paths, no file created */
	const char *legacy_encryptor; /**< as legacy_seed_row() */
} legacy_gen_opts;

/** Counts of what was generated (expected outcomes for the mix). */
typedef struct legacy_gen_stats {
	size_t orgs, rows, packages;
	size_t orgs_good;        /**< organizations that should migrate */
	size_t orgs_bad;         /**< organizations that should fail */
	size_t orgs_skipped;     /**< organizations with only archived/failed rows */
	size_t rows_good;        /**< rows that should become environments */
} legacy_gen_stats;

/**
 * Generate opts->n_orgs organizations "org-NNNNNN" in one transaction.
 * With `mixed`, organization i gets (i mod 20):
 *   0..9   one active row, drivers cycling sqlite (file:), turso (libsql://,
 *          https://) and postgres (postgres://, postgresql://);
 *   10,11  two or three rows (the oldest becomes prod);
 *   12     a suspended row;
 *   13     a row whose token does not decrypt (wrong AAD)        -> failed
 *   14     a row with an unknown scheme (mysql://)               -> failed
 *   15     an archived row only (decommissioned in v4)           -> skipped
 *   16     an active row plus an archived one
 *   17     a row whose token is garbage                          -> failed
 *   18,19  one active row with a region and a plan
 * and 0–3 package installations per row.  Tokens are "tok-<org>-<n>".
 */
int legacy_seed_generate(legacy_gen_stats *stats, envdb_ctx *ctx, const legacy_gen_opts *opts);

/** The plaintext token legacy_seed_generate() gave row `n` (0-based) of
 * organization `org_index`: written into buf (at least 64 bytes). */
void legacy_seed_token(char *buf, size_t cap, size_t org_index, size_t n);

#endif /* ENVDB_TESTS_LEGACY_SEED_H */
