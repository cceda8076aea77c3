/*
 * envdb/envdb.h — the public API of libenvdb: open a context from a
 * manifest, then provision, rotate, resolve and reconcile environments.
 *
 * Conventions (libgit2-style):
 *  - every function returns an int status (0 or a negative envdb_status);
 *    out-parameters come first;
 *  - on failure, envdb_error_last() describes the error: it is thread-local,
 *    never NULL, and valid until the next envdb call on the same thread;
 *  - ownership is stated at every pointer: "borrowed" (valid for the call),
 *    "owned by the caller" (free it with the named function);
 *  - option structs start with struct_size and have an _INIT macro;
 *  - a context may be used from several threads; calls are serialized where
 *    needed inside the library.
 *
 * Introduced in libenvdb 0.1 (plugin ABI 1.0).
 */
#ifndef ENVDB_ENVDB_H
#define ENVDB_ENVDB_H

#include <stddef.h>
#include <stdint.h>

#include <envdb/status.h>
#include <envdb/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Errors and versions                                                       */
/* ------------------------------------------------------------------------ */

typedef struct envdb_error {
	int status;              /**< the envdb_status of the last failure, or 0 */
	const char *message;     /**< never NULL; "" when there was no error */
	const char *native_code; /**< backend code (SQLSTATE, HTTP status) or NULL */
} envdb_error;

/** The last error of the calling thread.  Never NULL.  Owned by the library,
 * valid until the next envdb call on this thread. */
ENVDB_EXPORT const envdb_error *envdb_error_last(void);

/** Clear the calling thread's last error. */
ENVDB_EXPORT void envdb_error_clear(void);

/** A short constant name for a status ("not found", "exists", ...). */
ENVDB_EXPORT const char *envdb_status_str(int status);

/** The library version, e.g. "0.1.0".  Static. */
ENVDB_EXPORT const char *envdb_version(void);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct envdb_ctx envdb_ctx;

enum envdb_open_flags {
	/** Load the manifest and plugins but do not open the control plane
	 * (for `envdb plugins`, `envdb key ...`, `envdb manifest check`). */
	ENVDB_OPEN_NO_STORE = 1u << 0,
	/** Create the control-plane file if it does not exist (`envdb init`). */
	ENVDB_OPEN_CREATE = 1u << 1,
	/** Validate only (`envdb manifest check`): parse the manifest, open
	 * every plugin and check its descriptor, its configuration and its
	 * secret references, but call no plugin's init and open no control
	 * plane.  The context can list plugins (envdb_plugin_get) and nothing
	 * else.  Implies ENVDB_OPEN_NO_STORE. */
	ENVDB_OPEN_CHECK_ONLY = 1u << 2,
	/** Work on a private in-memory copy of the control plane, read from
	 * the file without writing anything to it, its -wal or its -shm
	 * (dry runs: `envdb migrate v4-to-v5 --dry-run`).  Whatever the
	 * context then writes goes to the copy and is lost at envdb_close().
	 * The copy is taken with a read-only connection that opens the -shm
	 * read-only (SQLite's readonly_shm), or, when no -wal exists, with
	 * immutable=1 (nothing to replay; checked again after the copy).
	 * Not with ENVDB_OPEN_CREATE. */
	ENVDB_OPEN_SNAPSHOT = 1u << 3
};

/**
 * Open a context: parse the manifest at `manifest_path` (borrowed), load
 * and initialise its plugins and open the control plane.  On success *out
 * is owned by the caller and released with envdb_close().
 * Returns ENVDB_ERR_CONFIG for a manifest error (the message names file,
 * line, column and key path), ENVDB_ERR_ABI / ENVDB_ERR_CONFIG /
 * ENVDB_ERR_IO for a critical plugin that cannot be loaded.
 */
ENVDB_EXPORT int envdb_open(envdb_ctx **out, const char *manifest_path, unsigned flags);

/** Release a context and everything it holds (writing the pending
 * last_accessed_at values first, in one transaction).  NULL is allowed.
 * Call it in the process that opened the context. */
ENVDB_EXPORT void envdb_close(envdb_ctx *ctx);

/** Information about one loaded plugin.  Strings owned by the context,
 * valid until envdb_close(). */
typedef struct envdb_plugin_info {
	size_t struct_size;
	const char *name;
	const char *path;
	const char *version;
	const char *description;
	uint32_t kind;          /**< envdb_plugin_kind */
	uint32_t flags;         /**< envdb_plugin_flags */
	uint32_t abi_major;
	uint32_t abi_minor;
	uint64_t capabilities;
} envdb_plugin_info;

/** Number of loaded plugins. */
ENVDB_EXPORT size_t envdb_plugin_count(const envdb_ctx *ctx);

/** Install handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT that
 * write "envdb: crashed in plugin NAME during OP (SIGNAL)" to stderr (the
 * plugin call running on the crashing thread) and then let the signal kill
 * the process as it would have.  For programs (the envdb command) that
 * want a crashing plugin named; a library never installs it by itself.
 * Replaces the process's handlers of those signals.  Since 0.2.0. */
ENVDB_EXPORT void envdb_crash_report_install(void);

/** Fill *info for the i-th loaded plugin (info->struct_size set by the caller). */
ENVDB_EXPORT int envdb_plugin_get(envdb_plugin_info *info, const envdb_ctx *ctx, size_t i);

/** Path of the manifest the context was opened from (absolute), and the
 * directory plugins are loaded from.  Owned by the context. */
ENVDB_EXPORT const char *envdb_manifest_path(const envdb_ctx *ctx);
ENVDB_EXPORT const char *envdb_plugin_dir(const envdb_ctx *ctx);
/** Path of the control-plane file the manifest names (absolute; whether or
 * not the context opened it), or NULL when the control plane is not a file
 * (manifest control_plane: {driver: postgresql, ...}).  Owned by the
 * context. */
ENVDB_EXPORT const char *envdb_control_plane_path(const envdb_ctx *ctx);
/** How messages name the control plane, for any store: the file path, or
 * the PostgreSQL server, database and schema (never a password; before the
 * context opened it, what the manifest says).  Owned by the context. */
ENVDB_EXPORT const char *envdb_control_plane_describe(const envdb_ctx *ctx);
/** The deployment id of the open control plane: a lowercase UUID made when
 * the control plane was created (or first opened by an envdb that has
 * deployment ids), never changed.  Adapters with
 * ENVDB_ADAPTER_CAP_DEPLOYMENT mark every database with it and list, drop
 * and reconcile only what carries it, so deployments sharing a backend
 * never touch each other's databases.  NULL when the context has no
 * control plane open (ENVDB_OPEN_NO_STORE).  Owned by the context. */
ENVDB_EXPORT const char *envdb_deployment_id(const envdb_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Keys of an encryptor (core/keys.c)                                        */
/* ------------------------------------------------------------------------ */

/** Receives one key: id (borrowed for the call), whether it is the key new
 * ciphertexts are sealed with, creation time (epoch seconds, 0 unknown).
 * Return 0 to continue. */
typedef int (*envdb_key_cb)(void *cb_ctx, const char *key_id, int is_current,
			    int64_t created_at);

/**
 * List the keys of encryptor plugin `encryptor` (borrowed; NULL: the
 * manifest's default encryptor).  ENVDB_ERR_NOT_FOUND when there is no such
 * loaded encryptor, ENVDB_ERR_NOT_SUPPORTED when it cannot manage keys.
 */
ENVDB_EXPORT int envdb_key_list(envdb_ctx *ctx, const char *encryptor, envdb_key_cb cb,
				void *cb_ctx);

/**
 * Create a key in encryptor `encryptor` (NULL: the default one); make it
 * the current key when make_current is non-zero (a rotation: existing
 * ciphertexts stay readable, `rewrap` moves them).  On success *key_id is
 * the new key's id, owned by the caller: envdb_free().
 */
ENVDB_EXPORT int envdb_key_generate(char **key_id, envdb_ctx *ctx, const char *encryptor,
				    int make_current);

/** The id of the key new ciphertexts are sealed with; *key_id owned by the
 * caller: envdb_free(). */
ENVDB_EXPORT int envdb_key_current(char **key_id, envdb_ctx *ctx, const char *encryptor);

/* ---- control plane API: appended below by core/ (environments, ---------- */
/* ---- credentials, members, resolve, reconcile, check, schema) ----------- */

/* ------------------------------------------------------------------------ */
/* Control-plane records (core/store.c, core/schema.c)                       */
/* ------------------------------------------------------------------------ */
/*
 * The records below are the control-plane objects as the library returns
 * them (DESIGN.md §2).  They are allocated by the library, owned by the
 * caller and released with the matching *_free() function (NULL allowed).
 * Because only the library allocates them, they may grow at their end in a
 * later minor version; callers never allocate or copy them by value.
 *
 * Conventions of every record:
 *  - ids are UUIDs in lowercase text ("3f0c...-..."): v7 (time-ordered)
 *    for rows created now, v4 in rows created by earlier versions;
 *  - enum fields are lowercase text holding one of the values documented at
 *    the field (`envdb schema` lists them, generated from the same table);
 *  - timestamps are integer seconds since the Unix epoch, 0 meaning "none";
 *  - booleans are int 0/1;
 *  - optional text fields are NULL when absent; metadata is a JSON object
 *    text ("{}" when empty).
 * Introduced in libenvdb 0.1.
 */

/** sys_environment: one environment of an organization. */
typedef struct envdb_environment {
	char *id;
	char *organization_id;
	char *slug;            /**< ^[a-z0-9][a-z0-9-]{0,62}$, unique per organization */
	char *display_name;
	char *env_type;        /**< production, sandbox, development, test, staging,
				    preview, trial */
	int is_default;        /**< at most one per organization (not archived/failed) */
	char *region;          /**< NULL when unspecified */
	char *plan;            /**< free, starter, pro, enterprise, custom */
	char *status;          /**< provisioning, active, suspended, archived, failed,
				    migrating */
	char *created_by;
	int64_t created_at;
	int64_t updated_at;
	char *metadata;        /**< JSON object text */
	/* provisioning intent (DESIGN.md §4) */
	int64_t lease_expires_at;     /**< intent lease while provisioning/deleting, or 0 */
	char *pending_database_name;  /**< physical name being created/dropped, or NULL */
	char *pending_driver;         /**< adapter plugin name of that database, or NULL */
	int64_t delete_after;         /**< physical drop not before this time, or 0 */
} envdb_environment;

/** sys_environment_database: the one physical database of an environment. */
typedef struct envdb_database {
	char *id;
	char *environment_id;  /**< unique: exactly one database per environment */
	char *database_name;   /**< unique, immutable */
	char *database_url;    /**< never contains a secret */
	char *driver;          /**< adapter plugin name */
	char *region;          /**< NULL when unspecified */
	int64_t storage_limit_mb; /**< > 0 */
	int64_t provisioned_at;
	int64_t last_accessed_at; /**< 0 when never */
	char *metadata;        /**< JSON object text of driver details */
} envdb_database;

/** sys_database_credential: one credential of a database, encrypted. */
typedef struct envdb_credential {
	char *id;
	char *environment_database_id;
	char *secret_ciphertext; /**< encryptor output (never plaintext); bound to
				      id, environment_database_id and (aad_version
				      2) the database's address as AAD */
	char *key_id;            /**< encryption_key_id that sealed it */
	char *handle;            /**< adapter's non-secret credential id (role
				      name, token id) or "" */
	char *authorization;     /**< full_access, read_only */
	char *status;            /**< active, rotating, revoked */
	int64_t created_at;
	int64_t expires_at;      /**< 0 when it does not expire */
	int64_t revoked_at;      /**< 0 unless revoked */
	/** Which associated data the ciphertext is bound to (see
	 * envdb_credential_aad_bound()): 1 = the ids only (rows sealed before
	 * libenvdb bound the database address; `envdb key rewrap` upgrades
	 * them), 2 = the ids and the database's driver, name and URL.  Added
	 * with control-plane schema version 2. */
	int64_t aad_version;
} envdb_credential;

/** sys_environment_member: a user's role in one environment. */
typedef struct envdb_member {
	char *id;
	char *environment_id;
	char *user_id;
	char *role;            /**< owner, admin, maker, reader, guest */
	char *invited_by;      /**< NULL when unknown */
	int64_t created_at;
	int64_t updated_at;
} envdb_member;

ENVDB_EXPORT void envdb_environment_free(envdb_environment *e);
ENVDB_EXPORT void envdb_database_free(envdb_database *d);
ENVDB_EXPORT void envdb_credential_free(envdb_credential *c);
ENVDB_EXPORT void envdb_member_free(envdb_member *m);
/** Free an array of `n` records as returned by a *_list() function
 * (each element and the array itself).  NULL allowed. */
ENVDB_EXPORT void envdb_environment_list_free(envdb_environment **v, size_t n);
ENVDB_EXPORT void envdb_database_list_free(envdb_database **v, size_t n);
ENVDB_EXPORT void envdb_credential_list_free(envdb_credential **v, size_t n);
ENVDB_EXPORT void envdb_member_list_free(envdb_member **v, size_t n);

/** Free memory the library returned as a plain allocation (JSON text, ...).
 * NULL allowed. */
ENVDB_EXPORT void envdb_free(void *p);

/* ------------------------------------------------------------------------ */
/* Members (core/member.c)                                                   */
/* ------------------------------------------------------------------------ */

enum envdb_member_add_flags {
	/** If the user is already a member, change their role (and invited_by)
	 * instead of failing with ENVDB_ERR_EXISTS. */
	ENVDB_MEMBER_UPDATE = 1u << 0
};

/** Options of envdb_member_add(). */
typedef struct envdb_member_opts {
	size_t struct_size;
	const char *invited_by; /**< user id of the inviter, or NULL */
	unsigned flags;         /**< envdb_member_add_flags */
} envdb_member_opts;
#define ENVDB_MEMBER_OPTS_INIT { sizeof(envdb_member_opts), NULL, 0 }

/**
 * Add `user_id` to environment ORGANIZATION/SLUG with `role` (owner, admin,
 * maker, reader, guest).  All strings borrowed.  `opts` may be NULL.
 * Returns ENVDB_ERR_EXISTS when the user is already a member (unless
 * ENVDB_MEMBER_UPDATE), ENVDB_ERR_NOT_FOUND for an unknown environment,
 * ENVDB_ERR_INVALID for a bad role or empty user id, ENVDB_ERR_STATE for an
 * archived or failed environment.  Invalidates the resolve cache of the
 * environment.  Thread-safe.
 */
ENVDB_EXPORT int envdb_member_add(envdb_ctx *ctx, const char *organization_id, const char *slug,
				  const char *user_id, const char *role,
				  const envdb_member_opts *opts);

/** Remove `user_id` from ORGANIZATION/SLUG.  ENVDB_ERR_NOT_FOUND when the
 * environment or the membership does not exist.  Invalidates the resolve
 * cache of the environment. */
ENVDB_EXPORT int envdb_member_remove(envdb_ctx *ctx, const char *organization_id,
				     const char *slug, const char *user_id);

/** The members of ORGANIZATION/SLUG ordered by user id.  On success *out (an
 * array of *n records, possibly empty with *out NULL) is owned by the caller:
 * envdb_member_list_free(). */
ENVDB_EXPORT int envdb_member_list(envdb_member ***out, size_t *n, envdb_ctx *ctx,
				   const char *organization_id, const char *slug);

/* ------------------------------------------------------------------------ */
/* Invariant check and schema (core/check.c, core/schema.c)                  */
/* ------------------------------------------------------------------------ */

/** One invariant violation found by envdb_check(). */
typedef struct envdb_violation {
	char *object;    /**< e.g. "sys_environment" */
	char *invariant; /**< short stable name, e.g. "one_default_per_org" */
	char *row_ids;   /**< offending row ids, comma-separated ("" if none) */
	char *message;   /**< human-readable detail, never a secret; in both, a
			      byte outside printable ASCII is written \xNN */
} envdb_violation;

ENVDB_EXPORT void envdb_violation_list_free(envdb_violation **v, size_t n);

/**
 * Verify every invariant of DESIGN.md §3 on the control-plane data and the
 * physical schema.  Returns 0 when the check ran (whatever it found): *out
 * holds *n violations (0 when all hold; *out NULL then), owned by the
 * caller (envdb_violation_list_free()).  A non-zero return means the check
 * could not run.  Read-only.
 */
ENVDB_EXPORT int envdb_check(envdb_violation ***out, size_t *n, envdb_ctx *ctx);

enum envdb_check_flags {
	/** Do not open the ciphertexts (no encryptor call): only what the
	 * control plane alone can tell is checked. */
	ENVDB_CHECK_NO_DECRYPT = 1u << 0
};

/**
 * envdb_check() with `flags` (envdb_check_flags).  Without
 * ENVDB_CHECK_NO_DECRYPT, and when the context has an encryptor, every
 * credential's ciphertext is also opened with its own associated data
 * (envdb_credential_aad_bound()) and the secret wiped at once: a
 * ciphertext that does not open is reported ("ciphertext_bound"; naming
 * the other credential when it opens with that one's associated data: two
 * ciphertexts swapped or copied), as is a key id inside the ciphertext
 * other than the row's encryption_key_id ("ciphertext_key_id") and a row
 * still sealed with associated data version 1 ("aad_binds_address": run
 * `envdb key rewrap`).  envdb_check() is envdb_check_flags(..., 0).
 */
ENVDB_EXPORT int envdb_check_flags(envdb_violation ***out, size_t *n, envdb_ctx *ctx,
				   unsigned flags);

/**
 * The object definitions as JSON: {"version":N,"objects":[{"name",
 * "description","legacy","fields":[{"name","type","description","required",
 * "default","values","references","immutable"}],"indexes":[{"name",
 * "columns","unique","where","description"}]}]}.  `ctx` may be NULL: then
 * every object, including the legacy ones, is listed; otherwise only those
 * registered by its manifest.  *out is owned by the caller: envdb_free().
 */
ENVDB_EXPORT int envdb_schema_json(char **out, const envdb_ctx *ctx);

/** The same as a readable text table (what `envdb schema` prints).  *out is
 * owned by the caller: envdb_free(). */
ENVDB_EXPORT int envdb_schema_text(char **out, const envdb_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Backup and restore of the control plane (core/store_sqlite_backup.c)             */
/* ------------------------------------------------------------------------ */

/**
 * Write a consistent copy of the control plane to a new file `path`
 * (borrowed), with SQLite's online backup API: one read transaction, so
 * writers in other processes go on meanwhile and the copy is the state of
 * one instant.  The copy is written to a temporary file next to `path`
 * (mode 0600), checked (PRAGMA quick_check), fsync'ed, then linked to
 * `path`, which is never overwritten (ENVDB_ERR_EXISTS if it exists), and
 * the directory is fsync'ed.  The copy is a single file (rollback-journal
 * mode).  `ctx` needs its control plane open.  ENVDB_ERR_IO on a file
 * error.  Other calls on `ctx` wait while it runs (it holds the store).
 */
ENVDB_EXPORT int envdb_backup(envdb_ctx *ctx, const char *path);

/** envdb_restore() flags. */
enum envdb_restore_flags {
	/** Replace an existing control plane (else ENVDB_ERR_EXISTS). */
	ENVDB_RESTORE_FORCE = 1u << 0
};

/**
 * Put the backup `backup_path` (borrowed) in place of the control plane of
 * `ctx`'s manifest.  `ctx` must be opened with ENVDB_OPEN_NO_STORE (else
 * ENVDB_ERR_MISUSE).  The backup must open, be an envdb control plane of a
 * schema version this library supports and pass PRAGMA integrity_check
 * (ENVDB_ERR_INVALID, ENVDB_ERR_NOT_SUPPORTED otherwise).  An existing
 * control plane is replaced only with ENVDB_RESTORE_FORCE, and only when
 * no process has it open: the SQLite lock bytes of the file are locked
 * exclusively for the swap (ENVDB_ERR_BUSY when that fails).  The copy is
 * written to a temporary file in the same directory (0600), fsync'ed,
 * renamed over the control plane after its -wal, -shm and -journal files
 * are removed, and the directory is fsync'ed; the restored file is then
 * opened once (pending schema migrations apply).
 */
ENVDB_EXPORT int envdb_restore(envdb_ctx *ctx, const char *backup_path, unsigned flags);

/** What envdb_store_copy() copied: the rows of each object, and what envdb
 * check found on each side (the target may have no violation the source
 * does not have). */
typedef struct envdb_store_copy_report {
	size_t environments;
	size_t databases;
	size_t credentials;
	size_t members;
	size_t legacy_tenant_databases;      /**< only when the source registers them */
	size_t legacy_package_installations;
	size_t source_violations;
	size_t target_violations;
} envdb_store_copy_report;
#define ENVDB_STORE_COPY_REPORT_INIT { 0, 0, 0, 0, 0, 0, 0, 0 }

/**
 * Copy every object of the control plane of `ctx` (open) into the control
 * plane that the manifest `target_manifest` (borrowed) names — of any store
 * backend: an SQLite file to a PostgreSQL schema, and back — created when
 * missing and required to be empty (ENVDB_ERR_EXISTS otherwise, nothing
 * written).  The deployment id moves with the rows (the adapters' ownership
 * markers carry it).  The source's write lock is held for the whole copy
 * (its writers wait, at most their busy timeout); the target is written in
 * one transaction committed only when the row count of every object
 * matches and envdb check of the target finds no violation the source does
 * not have (ENVDB_ERR_INTEGRITY otherwise): interrupted at any point, the
 * target stays empty and the source is unchanged.  Every row is validated
 * as by any write (ENVDB_ERR_INVALID names a row that breaks a rule).
 * Then point the manifest of every host at the target.  `rep` may be NULL.
 * (core/store_copy.c)
 */
ENVDB_EXPORT int envdb_store_copy(envdb_store_copy_report *rep, envdb_ctx *ctx,
				  const char *target_manifest);

/* ---- C2: provisioning, credentials, resolve, reconcile below ------------ */

/* ------------------------------------------------------------------------ */
/* Environments: provisioning, archive, delete (core/provision.c)            */
/* ------------------------------------------------------------------------ */
/*
 * Provisioning is crash-safe (DESIGN.md §4).  The steps are:
 *  1. validate (slug, env type, plan, driver loaded, encryptor configured,
 *     default rules);
 *  2. commit the environment row with status "provisioning", a lease
 *     (manifest provisioning.lease_seconds) and the physical database name
 *     derived from the environment id by the adapter (pending_database_name,
 *     pending_driver): the intent is durable before anything external;
 *  3. the adapter creates the database and mints a full_access credential
 *     (and a read_only one when the adapter has ENVDB_ADAPTER_CAP_READ_ONLY);
 *  4. the secrets are sealed by the encryptor with the associated data
 *     described at envdb_credential_aad();
 *  5. one transaction inserts the database and credential rows and the
 *     creator as "owner" member, clears the intent and moves the environment
 *     from "provisioning" to "active".
 * On a failure after step 2 the physical database is dropped and the intent
 * row deleted (so the slug is free again), and the error of the failing step
 * is returned.  If even the compensating drop fails, the intent stays with
 * an expired lease and `envdb reconcile --apply` finishes the rollback.
 * A process killed at any point leaves an intent that reconcile rolls back
 * once its lease expired.  Concurrent provisioning of the same slug or of a
 * second default is decided by the store's unique indexes when the intent
 * is committed: exactly one wins, the others get ENVDB_ERR_EXISTS before
 * they touched any backend.
 */

/** Options of envdb_env_provision() and envdb_org_provision(). */
typedef struct envdb_provision_opts {
	size_t struct_size;
	/** production, sandbox, development, test, staging, preview, trial.
	 * Required by envdb_env_provision(); envdb_org_provision() defaults to
	 * "production". */
	const char *env_type;
	const char *display_name; /**< NULL: the slug */
	const char *driver;       /**< adapter plugin name; NULL: manifest default */
	const char *region;       /**< NULL: manifest default (may be none) */
	const char *plan;         /**< NULL: manifest default, else "free" */
	int64_t storage_limit_mb; /**< 0: manifest default */
	/** Make it the organization's default environment (at most one that is
	 * not archived or failed; envdb_org_provision() always sets it). */
	int is_default;
	/** User id of the creator; becomes the environment's owner member.
	 * Required (the CLI defaults it to the login name). */
	const char *created_by;
	const char *metadata;     /**< JSON object text, or NULL for "{}" */
} envdb_provision_opts;
#define ENVDB_PROVISION_OPTS_INIT \
	{ sizeof(envdb_provision_opts), NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL }

/**
 * Provision environment ORGANIZATION/SLUG (steps above).  All strings
 * borrowed.  On success, if `out` is not NULL, *out receives the active
 * environment (owned by the caller: envdb_environment_free()).
 * Returns ENVDB_ERR_INVALID (bad slug, type, plan, storage limit, metadata,
 * missing created_by), ENVDB_ERR_NOT_FOUND (driver not loaded),
 * ENVDB_ERR_CONFIG (no encryptor configured), ENVDB_ERR_EXISTS (slug taken,
 * or a second default), or the status of the failing adapter, encryptor or
 * store step (after compensation).  Thread-safe.
 */
ENVDB_EXPORT int envdb_env_provision(envdb_environment **out, envdb_ctx *ctx,
				     const char *organization_id, const char *slug,
				     const envdb_provision_opts *opts);

/**
 * Provision an organization: its default environment SLUG (NULL: "prod"),
 * of type opts->env_type (NULL: "production"), always the default; the
 * other options as envdb_env_provision() (`opts` is required: created_by
 * is).  Fails with ENVDB_ERR_EXISTS "organization ORG: already has a default
 * environment (SLUG)" when the organization already has one.
 */
ENVDB_EXPORT int envdb_org_provision(envdb_environment **out, envdb_ctx *ctx,
				     const char *organization_id, const char *slug,
				     const envdb_provision_opts *opts);

/** Environment ORGANIZATION/SLUG.  *out owned by the caller
 * (envdb_environment_free()).  ENVDB_ERR_NOT_FOUND. */
ENVDB_EXPORT int envdb_env_get(envdb_environment **out, envdb_ctx *ctx,
			       const char *organization_id, const char *slug);

/** Environments of one organization (NULL: every organization), ordered by
 * organization and slug.  *out: *n records (NULL when none), owned by the
 * caller (envdb_environment_list_free()). */
ENVDB_EXPORT int envdb_env_list(envdb_environment ***out, size_t *n, envdb_ctx *ctx,
				const char *organization_id);

/** The database row of ORGANIZATION/SLUG (owned by the caller:
 * envdb_database_free()).  ENVDB_ERR_NOT_FOUND when the environment has
 * none (provisioning, failed). */
ENVDB_EXPORT int envdb_env_database(envdb_database **out, envdb_ctx *ctx,
				    const char *organization_id, const char *slug);

/** Archive ORGANIZATION/SLUG: it stops resolving (ENVDB_ERR_STATE) and
 * gives up its default slot; its physical database and rows are kept.
 * Where the adapter has ENVDB_ADAPTER_CAP_SUSPEND every credential of the
 * database is first locked out at the backend and its sessions ended (a
 * failure there archives nothing); an adapter without it leaves them
 * working at the backend (envdb_plugin_info.capabilities says which).
 * ENVDB_ERR_STATE when it is provisioning or already archived. */
ENVDB_EXPORT int envdb_env_archive(envdb_ctx *ctx, const char *organization_id,
				   const char *slug);

/** Undo envdb_env_archive(): ORGANIZATION/SLUG becomes active again and the
 * credentials the backend locked out work again (those revoked before stay
 * revoked).  ENVDB_ERR_STATE unless it is archived and not being deleted;
 * ENVDB_ERR_EXISTS when it was the default and the organization has
 * another default now.  Added in envdb 0.2.0. */
ENVDB_EXPORT int envdb_env_unarchive(envdb_ctx *ctx, const char *organization_id,
				     const char *slug);

enum envdb_env_delete_flags {
	/** Drop the physical database now instead of after the grace period. */
	ENVDB_DELETE_NOW = 1u << 0
};

/**
 * Delete ORGANIZATION/SLUG.  The environment is archived at once (it stops
 * resolving) with delete_after = now + manifest
 * provisioning.delete_grace_seconds; the physical database is dropped and
 * every row (database, credentials, members, environment) deleted once the
 * grace period ended, by `envdb reconcile --apply`.  With ENVDB_DELETE_NOW
 * the drop and the row deletion happen during the call.  A crash at any
 * point leaves a deletion that reconcile completes.  ENVDB_ERR_STATE while
 * the environment is provisioning.
 */
ENVDB_EXPORT int envdb_env_delete(envdb_ctx *ctx, const char *organization_id, const char *slug,
				  unsigned flags);

/* ------------------------------------------------------------------------ */
/* Credentials (core/credential.c)                                           */
/* ------------------------------------------------------------------------ */

/**
 * The associated data a credential's ciphertext is bound to, exactly:
 *     "envdb-credential-v1" 0x00 CREDENTIAL_ID 0x00 ENVIRONMENT_DATABASE_ID
 * where both ids are their 36-byte lowercase UUID text (19 + 1 + 36 + 1 +
 * 36 = 93 bytes, no terminator).  A ciphertext copied to another credential
 * row or another database fails to decrypt with ENVDB_ERR_INTEGRITY.
 * Writes the AAD into `aad` (at least ENVDB_CREDENTIAL_AAD_MAX bytes) and
 * its length into *len.  ENVDB_ERR_INVALID when an id is not a UUID.
 */
#define ENVDB_CREDENTIAL_AAD_MAX 96
ENVDB_EXPORT int envdb_credential_aad(unsigned char *aad, size_t *len,
				      const char *credential_id,
				      const char *environment_database_id);

/** The associated data version new ciphertexts are sealed with. */
#define ENVDB_CREDENTIAL_AAD_VERSION 2
/** Bytes of the longest associated data envdb_credential_aad_bound() writes. */
#define ENVDB_CREDENTIAL_AAD_BOUND_MAX 128

/**
 * The associated data of credential `credential_id` of database `db`, in
 * format `version` (envdb_credential.aad_version):
 *  - 1: exactly what envdb_credential_aad(credential_id, db->id) writes;
 *  - 2: "envdb-credential-v2" 0x00 CREDENTIAL_ID 0x00 DATABASE_ID 0x00
 *       BLAKE2b-256(DRIVER 0x00 DATABASE_NAME 0x00 DATABASE_URL)
 *    (20 + 36 + 1 + 36 + 1 + 32 = 126 bytes; crypto_generichash of
 *    libsodium, unkeyed, 32-byte output), so that a ciphertext also stops
 *    opening when the database row is made to point elsewhere (its
 *    driver, database_name or database_url edited in the control plane):
 *    the secret is never handed out next to an address it was not sealed
 *    for.
 * Writes at most `cap` bytes into `aad` (ENVDB_CREDENTIAL_AAD_BOUND_MAX
 * suffice) and the length into *len.  ENVDB_ERR_INVALID when an id is not a
 * UUID, a field of `db` is missing, or `version` is unknown;
 * ENVDB_ERR_BUFFER_TOO_SMALL (*len: the size needed).  `db` borrowed.
 */
ENVDB_EXPORT int envdb_credential_aad_bound(unsigned char *aad, size_t cap, size_t *len,
					    int64_t version, const char *credential_id,
					    const envdb_database *db);

/** Options of envdb_cred_rotate(). */
typedef struct envdb_rotate_opts {
	size_t struct_size;
	/** How long the previous credential stays valid ("rotating"), in
	 * seconds; < 0: manifest credentials.rotation_overlap_seconds; 0: it is
	 * revoked at once. */
	int64_t overlap_seconds;
	/** Lifetime of the new credential in seconds; 0: it does not expire. */
	int64_t expires_in_seconds;
	/** "full_access" or "read_only"; NULL: every authorization that has an
	 * active credential. */
	const char *authorization;
} envdb_rotate_opts;
#define ENVDB_ROTATE_OPTS_INIT { sizeof(envdb_rotate_opts), -1, 0, NULL }

/**
 * Rotate the credentials of ORGANIZATION/SLUG: mint new ones (passing the
 * current handle as previous_handle), seal them, and in one transaction make
 * each new one "active" and its predecessor "rotating" until now + overlap
 * (its expires_at is lowered to the window end).  A credential still
 * rotating from an earlier rotation is revoked.  Revocations at the backend
 * (adapters with ENVDB_ADAPTER_CAP_REVOKE) happen after the commit.  The
 * resolve cache of the environment is invalidated.  ENVDB_ERR_STATE unless
 * the environment is active.  `opts` may be NULL.
 */
ENVDB_EXPORT int envdb_cred_rotate(envdb_ctx *ctx, const char *organization_id, const char *slug,
				   const envdb_rotate_opts *opts);

/**
 * Mint a fresh credential of `authorization` ("full_access" or "read_only")
 * for ORGANIZATION/SLUG when it has no active one of that authorization —
 * the way back after revoking the read_only credential, which rotate cannot
 * replace.  It expires after expires_in_seconds (0: never).  Its id goes
 * into credential_id (may be NULL).  ENVDB_ERR_EXISTS when one is active
 * (rotate it instead), ENVDB_ERR_STATE unless the environment is active,
 * ENVDB_ERR_NOT_SUPPORTED for read_only on a driver that cannot mint one.
 * Added in envdb 0.2.0.
 */
ENVDB_EXPORT int envdb_cred_mint(char credential_id[37], envdb_ctx *ctx,
				 const char *organization_id, const char *slug,
				 const char *authorization, int64_t expires_in_seconds);

/** Complete the rotations of ORGANIZATION/SLUG now: every "rotating"
 * credential is revoked at the backend (where the adapter can) and then
 * marked "revoked".  *revoked (may be NULL) receives the count. */
ENVDB_EXPORT int envdb_cred_complete(size_t *revoked, envdb_ctx *ctx,
				     const char *organization_id, const char *slug);

/** Revoke one credential of ORGANIZATION/SLUG by id (backend first, then the
 * row).  The active full_access credential of an active environment cannot
 * be revoked (ENVDB_ERR_STATE: rotate with overlap 0 instead). */
ENVDB_EXPORT int envdb_cred_revoke(envdb_ctx *ctx, const char *organization_id,
				   const char *slug, const char *credential_id);

/** The credentials of ORGANIZATION/SLUG (every status), ordered by creation.
 * Ciphertexts only, never a secret.  *out owned by the caller
 * (envdb_credential_list_free()). */
ENVDB_EXPORT int envdb_cred_list(envdb_credential ***out, size_t *n, envdb_ctx *ctx,
				 const char *organization_id, const char *slug);

/** Counts of envdb_key_rewrap(). */
typedef struct envdb_rewrap_report {
	size_t struct_size;
	size_t total;           /**< credentials examined */
	size_t already_current; /**< already sealed with the current key and
				     associated data version */
	size_t rewrapped;       /**< re-sealed (or, in a dry run, that would be) */
	size_t failed;          /**< could not be re-sealed (the first error is
				     in envdb_error_last(), the call fails) */
} envdb_rewrap_report;
#define ENVDB_REWRAP_REPORT_INIT { sizeof(envdb_rewrap_report), 0, 0, 0, 0 }

enum envdb_rewrap_flags {
	/** Count only; change nothing. */
	ENVDB_REWRAP_DRY_RUN = 1u << 0
};

/**
 * Re-seal every credential (every status) under the encryptor's current
 * key and the current associated data (ENVDB_CREDENTIAL_AAD_VERSION: rows
 * sealed with version 1 are upgraded even when their key is current), each
 * row in its own transaction (a concurrent change of the row wins and the
 * row is examined again next time; a row deleted meanwhile, with its
 * environment, is skipped: both count as already_current).  Uses the encryptor's rewrap when it
 * has ENVDB_ENCRYPTOR_CAP_REWRAP and the associated data stays the same,
 * else decrypt + encrypt in secure memory.  An upgrade binds the address
 * the row names at that moment: run envdb_check() first.  `report` (caller-owned, struct_size set) receives the counts,
 * also on failure.
 */
ENVDB_EXPORT int envdb_key_rewrap(envdb_rewrap_report *report, envdb_ctx *ctx, unsigned flags);

/** Called by envdb_key_rewrap_progress() after each credential it examined:
 * `done` of `total` (the credentials listed at the start).  On the calling
 * thread; it must not call into `ctx`. */
typedef void (*envdb_rewrap_progress_fn)(void *cb_ctx, size_t done, size_t total);

/** envdb_key_rewrap() reporting its progress to `progress` (may be NULL:
 * then it is envdb_key_rewrap()). */
ENVDB_EXPORT int envdb_key_rewrap_progress(envdb_rewrap_report *report, envdb_ctx *ctx,
					   unsigned flags, envdb_rewrap_progress_fn progress,
					   void *progress_ctx);

/* ------------------------------------------------------------------------ */
/* Resolve (core/resolve.c)                                                  */
/* ------------------------------------------------------------------------ */

/**
 * What a data-plane router needs to reach one environment for one user:
 * the driver, the database URL, the user name (credential_handle, for
 * drivers whose credentials have one) and the secret.  Allocated by the
 * library as ONE block of secure memory (locked, guarded, wiped when
 * freed) holding the struct and every string; owned by the caller and
 * released with envdb_connection_free().  All strings are NUL-terminated
 * and valid until then.
 */
typedef struct envdb_connection {
	size_t struct_size;
	const char *environment_id;
	const char *organization_id;
	const char *slug;
	const char *driver;          /**< adapter plugin name */
	const char *database_name;
	const char *database_url;    /**< never contains the secret */
	const char *role;            /**< the user's member role */
	const char *authorization;   /**< full_access or read_only */
	const char *credential_id;
	const char *secret;          /**< the decrypted credential */
	size_t secret_len;
	int64_t expires_at;          /**< of the credential; 0: none */
	/** During a rotation's overlap window: the previous credential of the
	 * same authorization ("rotating"), still accepted until
	 * previous_expires_at; NULL otherwise. */
	const char *previous_credential_id;
	const char *previous_secret;
	size_t previous_secret_len;
	int64_t previous_expires_at;
	/* Added in libenvdb 0.1 (after the members above; read them only when
	 * struct_size covers them): */
	/** The credential's non-secret handle (sys_database_credential.handle):
	 * for postgres the login role, i.e. the user name a client connects
	 * as; "" when the driver has none (sqlite, turso).  Never NULL. */
	const char *credential_handle;
	/** The previous credential's handle ("" when it has none); NULL
	 * exactly when previous_credential_id is NULL. */
	const char *previous_credential_handle;
} envdb_connection;

/**
 * Resolve ORGANIZATION/SLUG for `user_id`.  Owners, admins and makers get
 * the full_access credential, readers and guests the read_only one.
 * Returns ENVDB_ERR_NOT_FOUND (no such environment), ENVDB_ERR_PERMISSION
 * (not a member), ENVDB_ERR_STATE (environment not active: provisioning,
 * archived, suspended, failed, migrating), ENVDB_ERR_NOT_SUPPORTED (a
 * reader/guest and the driver cannot mint read-only credentials: never full
 * access instead), ENVDB_ERR_AUTH (the credential expired, or none is
 * active), ENVDB_ERR_INTEGRITY (the ciphertext does not open with its row's
 * associated data).  Results are cached (manifest resolve.cache_size and
 * cache_ttl_ms; invalidated by rotation, membership and status changes made
 * through this context); a cache hit runs no SQL.  last_accessed_at of the
 * database is updated at most once a minute per database (so it is
 * accurate to the minute: an access within a minute of the last write is
 * not written), and never by the resolve itself (no lock wait, no disk sync
 * on this path): the write is queued, and a thread of the context writes
 * the queue in one transaction once 1,024 are queued or the oldest has
 * waited 2 seconds; envdb_close() writes the rest.  Thread-safe.
 */
ENVDB_EXPORT int envdb_resolve(envdb_connection **out, envdb_ctx *ctx,
			       const char *organization_id, const char *slug,
			       const char *user_id);

/** Wipe and release a connection.  NULL allowed. */
ENVDB_EXPORT void envdb_connection_free(envdb_connection *conn);

/* ------------------------------------------------------------------------ */
/* Reconcile (core/reconcile.c)                                              */
/* ------------------------------------------------------------------------ */

/** One finding of envdb_reconcile().  Strings owned by the report. */
typedef struct envdb_reconcile_item {
	/** "intent" (provisioning whose lease expired), "deletion" (grace
	 * ended), "rotation" (overlap window ended), "orphan" (physical
	 * database without a row), "missing" (row without a physical
	 * database: reported only), "unverified" (a row the adapter's listing
	 * cannot see — an adopted database, see envdb_reconcile(): reported
	 * only, not an error), "expiry" (an active credential that expired or
	 * expires within credentials.expiry_horizon_seconds: rotated). */
	const char *kind;
	const char *driver;        /**< adapter plugin, or NULL */
	const char *database_name; /**< physical name, or NULL */
	const char *object_id;     /**< environment or credential id, or NULL */
	const char *label;         /**< "acme/prod", or NULL */
	/** What was done: "rolled back", "deleted", "revoked", "dropped";
	 * without ENVDB_RECONCILE_APPLY: "would roll back", ...; or "failed",
	 * "none" (missing, unverified: nothing reconcile can do). */
	const char *action;
	int status;                /**< 0, or the error of the action */
	const char *message;       /**< error detail when status != 0, else NULL */
} envdb_reconcile_item;

/** The result of envdb_reconcile().  Owned by the caller:
 * envdb_reconcile_report_free(). */
typedef struct envdb_reconcile_report {
	size_t struct_size;
	int applied;               /**< 1 when run with ENVDB_RECONCILE_APPLY */
	envdb_reconcile_item *items;
	size_t n_items;
	size_t n_failed;           /**< items whose action failed */
} envdb_reconcile_report;

enum envdb_reconcile_flags {
	/** Act; without it reconcile only reports and changes nothing. */
	ENVDB_RECONCILE_APPLY = 1u << 0,
	/** With APPLY: drop orphans even when there are more than the safety
	 * limit (10% of the registered databases, at least 1, at most 10).
	 * Without it such a reconcile returns ENVDB_ERR_STATE and changes
	 * nothing. */
	ENVDB_RECONCILE_FORCE = 1u << 1
};

/**
 * Find (and with ENVDB_RECONCILE_APPLY repair) what interrupted or delayed
 * work left: provisioning intents whose lease expired (their database is
 * dropped and the intent deleted), deletions whose grace period ended
 * (dropped, rows deleted), rotations whose window ended (revoked at the
 * backend, then marked revoked), active credentials that expired or expire
 * within credentials.expiry_horizon_seconds (rotated: a new credential of
 * that authorization, the old one valid until it expires), physical
 * databases of adapters with
 * ENVDB_ADAPTER_CAP_LIST that have no row and no live intent (dropped), and
 * rows whose physical database such an adapter does not list (reported).
 *
 * A listing shows only the databases an adapter named itself, so a row
 * counts as "missing" (status ENVDB_ERR_NOT_FOUND, in n_failed) only when
 * its database_name is the name the adapter derives from its environment
 * id.  A row with any other name — a database adopted by the v4 → v5
 * migration, which keeps its legacy name and location (metadata
 * "migrated_from", core/MIGRATION.md) — is reported as "unverified" with
 * action "none" and status 0: reconcile neither claims it exists nor that
 * it is missing, and never drops anything for it.  It is not probed: a
 * probe needs the decrypted credential and a round trip per database, on
 * every run, for every migrated environment.
 * A row provisioned before its control plane had a deployment id, on an
 * adapter with ENVDB_ADAPTER_CAP_DEPLOYMENT (which lists only what carries
 * this deployment's id), is "unverified" too.
 *
 * With ENVDB_RECONCILE_APPLY and without ENVDB_RECONCILE_FORCE, more orphans
 * than the limit make it return ENVDB_ERR_STATE before anything changes
 * (*out stays NULL).
 * Returns 0 when it ran (even if some actions failed: see n_failed); *out
 * owned by the caller.
 */
ENVDB_EXPORT int envdb_reconcile(envdb_reconcile_report **out, envdb_ctx *ctx, unsigned flags);
ENVDB_EXPORT void envdb_reconcile_report_free(envdb_reconcile_report *r);


/* ------------------------------------------------------------------------ */
/* Migration v4 -> v5 (core/migrate.c; procedure in core/MIGRATION.md)        */
/* ------------------------------------------------------------------------ */

/** What happened to one organization. */
enum envdb_migrate_outcome {
	/** Every pending legacy row became an environment (in a dry run: would). */
	ENVDB_MIGRATE_MIGRATED = 1,
	/** Nothing left to do: migrated by an earlier run. */
	ENVDB_MIGRATE_ALREADY = 2,
	/** The v5 data of the organization stands in the way (a default
	 * environment the migration did not create, a taken slug or database
	 * name); nothing of it was changed. */
	ENVDB_MIGRATE_CONFLICT = 3,
	/** A legacy row cannot be migrated (token does not decrypt, unknown URL
	 * scheme, no token, a store error); nothing of it was changed. */
	ENVDB_MIGRATE_FAILED = 4,
	/** Only archived or failed legacy rows: left as they are. */
	ENVDB_MIGRATE_SKIPPED = 5
};

/** A short constant name of an outcome ("migrated", "already", "conflict",
 * "failed", "skipped"; "unknown" otherwise). */
ENVDB_EXPORT const char *envdb_migrate_outcome_str(int outcome);

/** One environment made from one legacy row. */
typedef struct envdb_migrate_env {
	char *legacy_id;       /**< sys_tenant_database.id */
	char *database_name;   /**< reused physical database */
	char *driver;          /**< from the URL scheme */
	char *slug;            /**< "prod", "prod-2", ... */
	int is_default;
	char *environment_id;  /**< new environment; NULL in a dry run */
	size_t packages_repointed;
} envdb_migrate_env;

/** One organization the run looked at (organizations already migrated
 * before the run are counted in the totals, not listed). */
typedef struct envdb_migrate_org {
	char *organization_id;
	int outcome;            /**< envdb_migrate_outcome */
	char *reason;           /**< conflict/failed/skipped: why (never a secret);
				     NULL otherwise */
	envdb_migrate_env *envs; /**< migrated: the environments made */
	size_t n_envs;
	size_t rows_left;       /**< archived/failed v4 rows left as they are */
	/** The v5 organization id of its environments when the legacy id
	 * was mapped (envdb_migrate_opts.org_map), else NULL. */
	char *mapped_to;
} envdb_migrate_org;

/** Progress of a run, passed to envdb_migrate_opts.progress after every
 * committed batch.  Borrowed for the call. */
typedef struct envdb_migrate_progress {
	size_t struct_size;
	size_t orgs_done;       /**< organizations looked at so far */
	size_t orgs_total;      /**< organizations with rows to look at */
	size_t rows_done;       /**< legacy rows migrated so far */
	int64_t elapsed_ms;
} envdb_migrate_progress;
typedef void (*envdb_migrate_progress_fn)(void *cb_ctx, const envdb_migrate_progress *p);

/** Options of envdb_migrate_v4_to_v5(). */
typedef struct envdb_migrate_opts {
	size_t struct_size;
	/** Run everything on a private in-memory snapshot of the control
	 * plane: the report says what a real run would do and nothing is
	 * written to the file (open the context with ENVDB_OPEN_SNAPSHOT for
	 * -wal and -shm to stay byte-identical too). */
	int dry_run;
	/** Organizations per durable commit (each in a savepoint); 0: 4096. */
	size_t batch;
	/** Encryptor plugin holding the v4 keys; NULL: the manifest's
	 * legacy.encryptor, else defaults.encryptor.  The reserved name
	 * "none" declares every legacy token of the run plaintext (the v4
	 * framework's default no-op encryptor): each is taken as it is and
	 * sealed under the current encryptor; the report counts them
	 * (rows_plaintext) and the command warns. */
	const char *legacy_encryptor;
	/** User recorded as created_by and made owner of every migrated
	 * environment; NULL: created_by "v4-migration" and no member. */
	const char *by;
	envdb_migrate_progress_fn progress; /**< may be NULL */
	void *progress_ctx;
	/** Organization ids v5 cannot address (envdb_check_ident rules:
	 * spaces, '/', non-ASCII, a leading '-', "..", control characters,
	 * over 128 bytes) are refused (outcome failed) unless mapped here:
	 * n_org_map pairs {old, new} as 2 * n_org_map strings (borrowed for
	 * the call).  The environments of a mapped organization get the new
	 * id; its legacy rows keep the old one.  A new id must be valid, used
	 * once, and not be another legacy organization's id
	 * (ENVDB_ERR_INVALID).  Appended after progress_ctx. */
	const char *const *org_map;
	size_t n_org_map;
} envdb_migrate_opts;
#define ENVDB_MIGRATE_OPTS_INIT { sizeof(envdb_migrate_opts), 0, 0, NULL, NULL, NULL, NULL, NULL, 0 }

/** The result of a run.  Owned by the caller: envdb_migrate_report_free(). */
typedef struct envdb_migrate_report {
	size_t struct_size;
	int dry_run;
	size_t organizations;   /**< organizations in the legacy registry */
	size_t migrated, already, conflicts, failed, skipped; /**< organizations */
	size_t rows_migrated;   /**< legacy rows that became environments */
	size_t packages_repointed;
	int64_t elapsed_ms;
	envdb_migrate_org *orgs; /**< every organization the run looked at, in
				      organization order */
	size_t n_orgs;
	/** 0, or the error that stopped the run early (the control plane
	 * failed); everything reported above was done (committed) before it. */
	int stopped_status;
	char *stopped_message;
	/** Legacy tokens taken as plaintext (legacy encryptor "none"). */
	size_t rows_plaintext;
	/** The whole store at the end of the run, so that the reports of
	 * concurrent runs add up: organizations fully migrated (by any run;
	 * `migrated` above is this run's share), organizations with an active
	 * or suspended legacy row still not migrated (failed, conflict, or
	 * being migrated by another run), organizations with only
	 * archived/failed v4 rows.  The three add up to the organizations of
	 * the legacy registry.  In a dry run: as the real run would leave it. */
	size_t store_done, store_open, store_inactive;
} envdb_migrate_report;

/**
 * Migrate the legacy v4 registry (sys_tenant_database) of the context's
 * control plane to v5 environments (DESIGN.md §7, core/MIGRATION.md): each
 * organization in one transaction, batches of organizations per commit,
 * safe to interrupt and re-run.  `opts` may be NULL.
 *
 * Returns 0 when the run went through, whatever the organizations'
 * outcomes (see the report's conflicts and failed); *out is owned by the
 * caller.  ENVDB_ERR_CONFIG when the manifest does not register the legacy
 * objects (legacy.register_shim: false) or when no legacy or current
 * encryptor is loaded, ENVDB_ERR_INVALID for an empty `by`,
 * ENVDB_ERR_MISUSE for a context without a control plane.  When the
 * control plane fails in the middle of a run (busy, I/O), the status is
 * returned AND *out holds the report of what was done before (with
 * stopped_status set), so nothing goes unreported.  Not to be run
 * concurrently with itself on one control plane (the second run waits for
 * the first one's batches and finds less to do, which is safe).
 */
ENVDB_EXPORT int envdb_migrate_v4_to_v5(envdb_migrate_report **out, envdb_ctx *ctx,
					const envdb_migrate_opts *opts);
ENVDB_EXPORT void envdb_migrate_report_free(envdb_migrate_report *r);

/** One migrated legacy row that still held its v4 token. */
typedef struct envdb_wipe_row {
	char *legacy_id;        /**< sys_tenant_database.id */
	char *organization_id;  /**< the legacy organization id */
	char *environment_id;   /**< the environment it became */
	int wiped;              /**< 1: token wiped (dry run: would be) */
	char *reason;           /**< refused: why (never a secret); NULL otherwise */
} envdb_wipe_row;

/** The result of envdb_migrate_wipe_legacy_tokens(); envdb_wipe_report_free(). */
typedef struct envdb_wipe_report {
	size_t struct_size;
	int dry_run;
	size_t wiped;           /**< tokens wiped (dry run: would be) */
	size_t refused;         /**< kept: their environment does not resolve */
	envdb_wipe_row *rows;   /**< every migrated row that held a token */
	size_t n_rows;
} envdb_wipe_report;

/**
 * Wipe the v4 tokens kept on archived legacy rows once the environment each
 * became resolves: for every migrated sys_tenant_database row with an
 * auth_token, the environment's database row must exist and its active
 * full_access credential must decrypt (with its AAD) under the current
 * encryptor; then auth_token is set NULL (one compare-and-set per row on
 * migrated_environment_id).  A row whose environment does not resolve is
 * refused and keeps its token.  `dry_run`: nothing is written, the report
 * says what would be.  Returns 0 when the run went through (see refused);
 * *out is owned by the caller.  ENVDB_ERR_CONFIG without the legacy
 * objects, ENVDB_ERR_MISUSE without a control plane.
 */
ENVDB_EXPORT int envdb_migrate_wipe_legacy_tokens(envdb_wipe_report **out, envdb_ctx *ctx,
						  int dry_run);
ENVDB_EXPORT void envdb_wipe_report_free(envdb_wipe_report *r);

#ifdef __cplusplus
}
#endif

#endif /* ENVDB_ENVDB_H */
