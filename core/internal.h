/*
 * core/internal.h — internal interfaces between the files of libenvdb.
 * Nothing here is exported: every symbol has the `envdbi_` prefix and hidden
 * visibility.  Each section names the file that implements it.
 */
#ifndef ENVDB_INTERNAL_H
#define ENVDB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <envdb/adapter.h>
#include <envdb/encryptor.h>
#include <envdb/envdb.h>
#include "quote.h"

/* ------------------------------------------------------------------------ */
/* error.c — thread-local last error                                          */
/* ------------------------------------------------------------------------ */

/** Set the calling thread's last error and return `status`.  `native` may be
 * NULL.  The message must never contain a secret. */
int envdbi_error(int status, const char *native, const char *fmt, ...) ENVDB_PRINTF(3, 4);
/** Prepend context ("env acme/prod: ") to the current last error message and
 * return its status. */
int envdbi_error_prefix(const char *fmt, ...) ENVDB_PRINTF(1, 2);
/** Log a line to stderr when `level` is at or below the configured level
 * (ENVDB_LOG_LEVEL: error, warning (default), info, debug). */
void envdbi_log(int level, const char *fmt, ...) ENVDB_PRINTF(2, 3);
/** va_list forms of the two above. */
int envdbi_error_v(int status, const char *native, const char *fmt, va_list ap)
	ENVDB_PRINTF(3, 0);
void envdbi_log_v(int level, const char *fmt, va_list ap) ENVDB_PRINTF(2, 0);
/** A per-thread counter bumped by every envdbi_error(): a caller compares it
 * before and after a call to know whether the callee reported anything. */
unsigned envdbi_error_generation(void);
/** True when `status` is one of the envdb_status codes (0 included). */
bool envdbi_status_known(int status);

/* ------------------------------------------------------------------------ */
/* ident.c — identifiers and text from outside, checked at every entry point  */
/* ------------------------------------------------------------------------ */

/** Longest organization or user id, in bytes. */
#define ENVDBI_IDENT_MAX 128
/** Organization and user ids: 1..ENVDBI_IDENT_MAX of [A-Za-z0-9_.@+:-],
 * starting with a letter or digit, no "..".  ENVDB_ERR_INVALID (reported:
 * "OP: invalid WHAT \"VALUE\": CAUSE", the value escaped) otherwise. */
int envdbi_check_ident(const char *op, const char *what, const char *s);
/** An organization id and a slug, as above. */
int envdbi_check_env_ref(const char *op, const char *org, const char *slug);
/** The preconditions of every public call on ORG/SLUG: a context with a
 * control plane open (else ENVDB_ERR_MISUSE) and a valid reference. */
int envdbi_check_env_call(envdb_ctx *ctx, const char *org, const char *slug, const char *op);
/** A name such as a region: [a-z0-9][a-z0-9_-]*, 1..max bytes. */
int envdbi_check_name(const char *op, const char *what, const char *s, size_t max);
/** Free text (display names): valid UTF-8, no control characters, at most
 * max bytes.  NULL passes. */
int envdbi_check_text(const char *op, const char *what, const char *s, size_t max);
/* envdbi_quote(): core/quote.h */

/* ------------------------------------------------------------------------ */
/* secmem.c — secure memory (libsodium guarded allocations)                   */
/* ------------------------------------------------------------------------ */

/** Locked, guarded, zeroed on free.  NULL on failure. */
void *envdbi_secure_alloc(size_t size);
void envdbi_secure_free(void *ptr);

/** Counters of the secure allocator (tests, bench). */
typedef struct envdbi_secure_stats {
	uint64_t own_allocs; /**< blocks too big for the pool: a sodium_malloc each */
} envdbi_secure_stats;
void envdbi_secure_get_stats(envdbi_secure_stats *out);

/** A secret in secure memory: data is NUL-terminated, len excludes the NUL. */
typedef struct envdbi_secret {
	char *data;
	size_t len;
} envdbi_secret;
/** Copy `len` bytes into a new secret; NULL on failure. */
envdbi_secret *envdbi_secret_new(const void *data, size_t len);
void envdbi_secret_free(envdbi_secret *s);
/** Read a secret file (a regular file neither group nor others may access,
 * one trailing newline dropped) into secure memory.  On failure `why`
 * says why (no secret in it) and the status is returned unreported. */
int envdbi_read_secret_file(envdbi_secret **out, const char *path, char *why, size_t why_cap);
/** sodium_init() once per process; ENVDB_ERR_GENERIC (reported) on failure.
 * Every file using libsodium calls this before its first use. */
int envdbi_sodium_init(void);

/* ------------------------------------------------------------------------ */
/* manifest.c — the YAML manifest                                             */
/* ------------------------------------------------------------------------ */

typedef struct envdbi_kv {
	char *key;
	char *value;
	int line, column; /* 1-based position of the value in the manifest */
	int key_line, key_column; /* 1-based position of the key */
} envdbi_kv;

typedef struct envdbi_plugin_spec {
	char *name;
	uint32_t kind;    /* envdb_plugin_kind */
	char *path;       /* as written; resolved by the loader */
	bool critical;    /* default true */
	/* The host's deadline for each call of this plugin, or 0 for the
	 * process-wide one (envdbi_host_call_timeout_ms, default 30 s). */
	int64_t call_timeout_ms;
	envdbi_kv *config;
	size_t n_config;
	int line, column;
} envdbi_plugin_spec;

typedef struct envdbi_manifest {
	char *path;              /* the manifest file, absolute */
	char *dir;               /* its directory, absolute */
	/* control_plane: a scalar (an SQLite file) or a mapping {driver: sqlite,
	 * path} / {driver: postgresql, conninfo_file | conninfo_env, schema} */
	char *control_plane;     /* sqlite: absolute path of the file; else NULL */
	char *control_plane_driver;        /* "sqlite" (default) or "postgresql" */
	char *control_plane_conninfo_file; /* postgresql: absolute path, or NULL */
	char *control_plane_conninfo_env;  /* postgresql: variable name, or NULL */
	char *control_plane_schema;        /* postgresql: schema (default "envdb") */
	char *control_plane_desc;          /* postgresql: how messages name it before
					      it is open (no secret) */
	char *plugin_dir;        /* absolute, or NULL for the compiled-in one */
	/* plugin_path: directories searched, in order, before the plugin
	 * directory for a plugin named by a relative path; absolute. */
	char **plugin_path;
	size_t n_plugin_path;
	/* defaults */
	char *default_driver;    /* adapter plugin name */
	char *default_region;
	char *default_plan;
	int64_t default_storage_mb;
	char *default_encryptor; /* encryptor plugin name */
	/* provisioning */
	int64_t lease_seconds;        /* intent lease, default 300 */
	int64_t delete_grace_seconds; /* physical drop delay, default 7 days */
	/* credentials */
	int64_t rotation_overlap_seconds; /* default 3600 */
	int64_t expiry_horizon_seconds;   /* reconcile rotates ahead; default 86400 */
	/* resolve */
	int64_t cache_size;      /* entries, default 10000; 0 disables */
	int64_t cache_ttl_ms;    /* default 30000 */
	/* control plane */
	int64_t busy_timeout_ms; /* default 5000 */
	/* legacy v4 shim */
	bool legacy_shim;        /* default true */
	char *legacy_encryptor;  /* encryptor plugin name for v4 tokens, or NULL */
	envdbi_plugin_spec *plugins;
	size_t n_plugins;
} envdbi_manifest;

/** Parse and validate a manifest.  On error returns ENVDB_ERR_CONFIG (or
 * ENVDB_ERR_IO) with a message "FILE:LINE:COLUMN: KEY.PATH: cause". */
int envdbi_manifest_load(envdbi_manifest **out, const char *path);
void envdbi_manifest_free(envdbi_manifest *m);

/* ------------------------------------------------------------------------ */
/* trust.c — may what the process loads be trusted (OpenSSH's rule)           */
/* ------------------------------------------------------------------------ */

struct stat;
/** True when `st` (of `path`) is owned by root or the effective user and
 * writable by nobody else (a sticky directory such as /tmp excepted).
 * Otherwise false, and `why` says what was refused: the path, its mode and
 * its owner ("file F is writable by group or others (mode 0666, owner
 * root); ..."). */
bool envdbi_trusted(const char *path, const struct stat *st, char *why, size_t cap);
/** envdbi_trusted() for "/" and every directory on the path to `dir`
 * (absolute, without symbolic links: realpath() it first), `dir` included. */
bool envdbi_trusted_dirs(const char *dir, char *why, size_t cap);

/* ------------------------------------------------------------------------ */
/* loader.c (the only file that includes <ltdl.h>) and host.c                 */
/* ------------------------------------------------------------------------ */

typedef struct envdbi_plugin envdbi_plugin;
typedef struct envdbi_plugins envdbi_plugins;

/** Load, validate and init every plugin of the manifest.  A critical plugin
 * that fails aborts loading (everything loaded so far is unloaded); a
 * non-critical one is skipped with a warning.  The plugin directory is the
 * manifest's plugin_dir, else $ENVDB_PLUGIN_DIR, else the compiled-in one. */
int envdbi_plugins_load(envdbi_plugins **out, const envdbi_manifest *m);
/** Flags of envdbi_plugins_load_ex(). */
enum envdbi_load_flags {
	/** Open and validate every plugin (descriptor, configuration, secret
	 * references) but do not call init: `envdb manifest check`. */
	ENVDBI_LOAD_NO_INIT = 1u << 0
};
int envdbi_plugins_load_ex(envdbi_plugins **out, const envdbi_manifest *m, unsigned flags);
void envdbi_plugins_free(envdbi_plugins *set);
size_t envdbi_plugins_count(const envdbi_plugins *set);
envdbi_plugin *envdbi_plugins_at(const envdbi_plugins *set, size_t i);
/** NULL when no loaded plugin has that name and kind (kind 0: any kind). */
envdbi_plugin *envdbi_plugins_find(const envdbi_plugins *set, const char *name, uint32_t kind);
/** The name of the adapter that serves URL scheme `scheme` (ABI 1.1
 * url_schemes, compared case-insensitively): a loaded adapter of `set`,
 * else one installed in its plugin directory (descriptors read once, not
 * initialised).  *name is owned by `set`.  ENVDB_ERR_NOT_FOUND when none
 * does, ENVDB_ERR_INVALID when two do; the last error says which. */
int envdbi_adapter_of_scheme(envdbi_plugins *set, const char *scheme, const char **name);

const char *envdbi_plugin_name(const envdbi_plugin *p);
const char *envdbi_plugin_path(const envdbi_plugin *p);
const envdb_plugin_descriptor *envdbi_plugin_descriptor(const envdbi_plugin *p);
uint64_t envdbi_plugin_capabilities(const envdbi_plugin *p);
uint32_t envdbi_plugin_kind(const envdbi_plugin *p);
/** Give the plugin the deployment id of its context's control plane (a
 * UUID; NULL or anything else clears it): host->deployment_id() answers it
 * and every db_ref / create_request the host passes carries it (host.c).
 * Called once, after the control plane opened, before any operation. */
void envdbi_plugin_set_deployment(envdbi_plugin *p, const char *deployment_id);

/** reconcile.c: the most orphan databases one reconcile --apply drops
 * without ENVDB_RECONCILE_FORCE, for `registered` database rows: 10% of
 * them, at least 1, at most ENVDBI_RECONCILE_DROP_MAX (man/envdb.1). */
#define ENVDBI_RECONCILE_DROP_MAX 10
size_t envdbi_reconcile_drop_limit(size_t registered);
/** The directory plugins of `m` are loaded from (manifest plugin_dir, else
 * $ENVDB_PLUGIN_DIR, else the compiled-in ENVDB_PLUGIN_DIR).  Static or
 * owned by m / the environment; do not free. */
const char *envdbi_plugin_dir(const envdbi_manifest *m);
/** The most directories a manifest's plugin_path may list. */
#define ENVDBI_PLUGIN_PATH_MAX 16

/** Per-call deadline of calls into plugins, in milliseconds (default 30000;
 * 0 means no deadline).  Process-wide; thread-safe. */
void envdbi_host_set_call_timeout_ms(int64_t ms);
int64_t envdbi_host_call_timeout_ms(void);
/** The plugin and operation of the call in progress on this thread (true),
 * else of the call most recently begun in the process (false; both NULL
 * when there was none).  Reads only plain pointers: usable in a signal
 * handler.  The strings live while the plugin is loaded. */
bool envdbi_host_current_call(const char **plugin, const char **op);

/*
 * Calls into plugins (host.c).  Each call: sets the operation deadline,
 * serializes on the instance unless the plugin is thread-safe, answers
 * ENVDB_ERR_NOT_SUPPORTED for a NULL slot, retries ENVDB_ERR_BUFFER_TOO_SMALL
 * with larger buffers, and on failure leaves the plugin's report in the last
 * error prefixed with "plugin NAME: ".  Returned strings are malloc'd and
 * owned by the caller (free()); secrets are envdbi_secret (secure memory).
 */
int envdbi_adapter_database_name(envdbi_plugin *p, const char *environment_id, char **name);
int envdbi_adapter_create(envdbi_plugin *p, const envdb_create_request *req, char **url,
			  char **metadata);
int envdbi_adapter_drop(envdbi_plugin *p, const envdb_db_ref *db);
int envdbi_adapter_mint(envdbi_plugin *p, const envdb_db_ref *db, const envdb_mint_request *req,
			envdbi_secret **secret, char **handle);
int envdbi_adapter_revoke(envdbi_plugin *p, const envdb_db_ref *db, uint32_t authorization,
			  const char *handle);
int envdbi_adapter_probe(envdbi_plugin *p, const envdb_db_ref *db, const envdbi_secret *secret);
/* ABI 1.1 lock-out (ENVDB_ADAPTER_CAP_SUSPEND); ENVDB_ERR_NOT_SUPPORTED without it. */
int envdbi_adapter_suspend(envdbi_plugin *p, const envdb_db_ref *db);
int envdbi_adapter_resume(envdbi_plugin *p, const envdb_db_ref *db);
/** All names in *names (array and strings malloc'd; free with envdbi_strv_free). */
int envdbi_adapter_list(envdbi_plugin *p, char ***names, size_t *n);

int envdbi_encryptor_current_key(envdbi_plugin *p, char **key_id);
int envdbi_encryptor_encrypt(envdbi_plugin *p, const envdbi_secret *pt, const void *aad,
			     size_t aad_len, char **ct, char **key_id);
int envdbi_encryptor_decrypt(envdbi_plugin *p, const char *ct, const void *aad, size_t aad_len,
			     envdbi_secret **pt);
int envdbi_encryptor_key_of(envdbi_plugin *p, const char *ct, char **key_id);
int envdbi_encryptor_rewrap(envdbi_plugin *p, const char *ct, const void *aad, size_t aad_len,
			    char **ct_out, char **key_id);
int envdbi_encryptor_key_list(envdbi_plugin *p, envdb_encryptor_key_cb cb, void *cb_ctx);
int envdbi_encryptor_key_generate(envdbi_plugin *p, int make_current, char **key_id);
/** ABI 1.1: ENVDB_ENCRYPTOR_CAP_HEALTH's health(); ENVDB_ERR_NOT_SUPPORTED
 * without the capability. */
int envdbi_encryptor_health(envdbi_plugin *p);
/** ABI 1.1: ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS's is_current(): whether `ct` is
 * sealed under the current version of the current key. */
int envdbi_encryptor_is_current(envdbi_plugin *p, const char *ct, bool *is_current);

void envdbi_strv_free(char **v, size_t n);

/* ------------------------------------------------------------------------ */
/* context.c — struct envdb_ctx                                               */
/* ------------------------------------------------------------------------ */

typedef struct envdbi_store envdbi_store;   /* store.c (control plane) */
typedef struct envdbi_cache envdbi_cache;   /* resolve.c */

struct envdb_ctx {
	envdbi_manifest *manifest;
	envdbi_plugins *plugins;
	envdbi_store *store;   /* NULL with ENVDB_OPEN_NO_STORE */
	envdbi_cache *cache;   /* NULL when disabled or without a store */
	envdbi_plugin *encryptor; /* manifest default_encryptor, may be NULL */
};

/* ------------------------------------------------------------------------ */
/* credential.c, provision.c — shared by provisioning, rotation, resolve,    */
/* reconcile and the migration                                                */
/* ------------------------------------------------------------------------ */

/** The loaded adapter plugin named `driver`; ENVDB_ERR_NOT_FOUND (reported:
 * "driver NAME: no adapter plugin of that name is loaded") otherwise. */
int envdbi_adapter_find(envdbi_plugin **out, envdb_ctx *ctx, const char *driver);

/** The context's encryptor; ENVDB_ERR_CONFIG (reported, naming `what`)
 * when the manifest configures none. */
int envdbi_encryptor_get(envdbi_plugin **out, envdb_ctx *ctx, const char *what);

/** The associated data of credential `c` of database `db` (which must be
 * the row c->environment_database_id names, else ENVDB_ERR_MISUSE) in
 * format `version` (envdb_credential_aad_bound()).  The one place every
 * seal, open, rewrap and check gets it from. */
int envdbi_credential_aad_of(unsigned char aad[ENVDB_CREDENTIAL_AAD_BOUND_MAX], size_t *len,
			     const envdb_credential *c, int64_t version, const envdb_database *db);

/** Seal `secret` for credential row `c` of database `db` with the current
 * associated data (ENVDB_CREDENTIAL_AAD_VERSION: ids, driver, name, url);
 * replaces c->secret_ciphertext and c->key_id (malloc'd, owned by c) and
 * sets c->aad_version. */
int envdbi_credential_seal(envdb_ctx *ctx, envdb_credential *c, const envdb_database *db,
			   const envdbi_secret *secret);

/** Open the ciphertext of row `c` of database `db` with the associated data
 * of c->aad_version; *out in secure memory (caller frees with
 * envdbi_secret_free).  ENVDB_ERR_INTEGRITY when the ciphertext is not
 * bound to this row and (version 2) this database address. */
int envdbi_credential_open(envdbi_secret **out, envdb_ctx *ctx, const envdb_credential *c,
			   const envdb_database *db);

/** Revoke credential `c` of database `db` at the backend (when the adapter
 * has ENVDB_ADAPTER_CAP_REVOKE), then move its row from `from_status` to
 * "revoked" (compare-and-set).  `failpoint` names the failpoint between the
 * two steps.  Does not invalidate the cache. */
int envdbi_credential_retire(envdb_ctx *ctx, const envdb_database *db, const envdb_credential *c,
			     const char *from_status, const char *failpoint);

/** Finish a deletion intent (env has pending_database_name/pending_driver):
 * drop the physical database, then delete every row of the environment.
 * `failpoint` names the failpoint between the two. */
int envdbi_env_delete_finish(envdb_ctx *ctx, const envdb_environment *env,
			     const char *failpoint);

/** Roll back a provisioning intent: claim it (provisioning → failed unless
 * already failed), drop its pending database, delete its row.  `failpoint`
 * names the failpoint between the drop and the row deletion.  When the
 * claim fails because another process claimed it, rolled it back, or its
 * provisioner finished (a provisioning row no longer provisioning; a
 * failed row changed or gone since `env` was read), *claim_lost (may be
 * NULL) is set and an error returned, nothing done. */
int envdbi_env_rollback_intent(envdb_ctx *ctx, const envdb_environment *env,
			       const char *failpoint, bool *claim_lost);

#endif /* ENVDB_INTERNAL_H */
