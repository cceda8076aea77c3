/*
 * tests/testdeploy.h — a throwaway envdb deployment for the provisioning,
 * credential, resolve and reconcile tests: a mkdtemp() directory with a
 * manifest naming the real sqlite adapter and kms encryptor (from
 * ENVDB_PLUGIN_DIR) and the fault-injecting fixture adapters `faulty` and
 * `faulty_noro` (tests/fixtures/faulty_adapter.c, from ENVDB_TEST_BUILDDIR),
 * a control plane, and a current key.  Helpers to inject failures, fork,
 * count physical databases and grep files.
 */
#ifndef ENVDB_TESTDEPLOY_H
#define ENVDB_TESTDEPLOY_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <envdb/envdb.h>

#include "store_matrix.h"

typedef struct td_opts {
	const char *driver;         /**< defaults.driver (default "faulty") */
	int64_t cache_size;         /**< resolve.cache_size (default 100) */
	int64_t cache_ttl_ms;       /**< resolve.cache_ttl_ms (default 60000) */
	int64_t lease_seconds;      /**< provisioning.lease_seconds (default 60) */
	int64_t grace_seconds;      /**< provisioning.delete_grace_seconds (default 3600) */
	int64_t overlap_seconds;    /**< credentials.rotation_overlap_seconds (default 600) */
	bool legacy_shim;           /**< legacy.register_shim (default false) */
} td_opts;
#define TD_OPTS_INIT { NULL, 100, 60000, 60, 3600, 600, false }

typedef struct td {
	char dir[PATH_MAX];        /* the deployment */
	char manifest[PATH_MAX];
	char control[PATH_MAX];    /* control-plane file, or PostgreSQL schema (sm_pg()) */
	char sqlite_dir[PATH_MAX]; /* sqlite adapter's base_dir */
	char faulty_dir[PATH_MAX]; /* faulty adapter's files */
	char noro_dir[PATH_MAX];   /* faulty_noro adapter's files */
	char fail_file[PATH_MAX];  /* what the faulty adapters fail at */
} td;

/** Write to `out` the manifest of `t` with another control plane: the
 * manifest text `cp` (a control_plane line or mapping) in place of its
 * own.  The rest (plugins, keyring) is the same. */
void td_manifest_variant(const td *t, const char *out, const char *cp);

/** Create the deployment (aborts the test on failure) and a current key. */
void td_setup(td *t, const td_opts *o);
/** Remove the deployment directory. */
void td_teardown(td *t);
/** envdb_open() the manifest; asserts success. */
envdb_ctx *td_open(const td *t);

/** Make the faulty adapters fail at `ops` ("create,mint"; NULL or "": none). */
void td_fail_at(const td *t, const char *ops);

/** Number of physical databases: faulty and faulty_noro ones (files
 * fdb_*.db), sqlite ones (files env_*.db, excluding the trash). */
size_t td_faulty_dbs(const td *t);
size_t td_sqlite_dbs(const td *t);
/** Lines of the faulty adapter's revocation log of database `name`. */
size_t td_faulty_revocations(const td *t, const char *name);

/** True when file `path` contains the `len` bytes at `needle`. */
bool td_file_contains(const char *path, const void *needle, size_t len);

/** Fork; the child runs fn(arg) and exits with its return value.  Returns
 * the raw wait status. */
int td_fork(int (*fn)(void *arg), void *arg);

/** Set / clear ENVDB_FAILPOINTS (the library reads it at every hit). */
void td_failpoints(const char *spec);

/** Provision ORG/SLUG on `driver` (NULL: default) as `owner`; returns the
 * status. */
int td_provision(envdb_ctx *ctx, const char *org, const char *slug, const char *driver,
		 const char *owner);

/** envdb_reconcile --apply with the clock moved `ahead` seconds forward
 * (so leases and grace periods have ended); asserts it ran and returns
 * n_failed. */
size_t td_reconcile_apply(envdb_ctx *ctx, int64_t ahead);

/** Number of envdb_check() violations (asserts the check ran); prints
 * each. */
size_t td_check(envdb_ctx *ctx);

/** Environments of `org` in state `status` (NULL: any). */
size_t td_env_count(envdb_ctx *ctx, const char *org, const char *status);

/** Set ENVDB_TEST_NOW to now + `ahead` seconds (0: clear).  Takes effect
 * because td_setup() sets ENVDB_TEST_CLOCK before the library reads the clock. */
void td_clock_ahead(int64_t ahead);

#endif /* ENVDB_TESTDEPLOY_H */
