/*
 * core/store.h — the control-plane store: the ONE internal interface through
 * which the rest of libenvdb reads and writes control-plane objects
 * (environments, databases, credentials, members, and the legacy v4 shim
 * objects).  No SQL leaves this interface.
 *
 * The seam: store.c implements this interface once, backend-neutrally
 * (validation, defaults, record labels, messages, compare-and-set, the
 * store's lock and transaction depth), on top of a store backend: an
 * operations table (core/store_backend.h) that the SQLite backend
 * (core/store_sqlite.c, the default: the control plane is a local file) and
 * the PostgreSQL backend implement.  The manifest's control_plane selects
 * the backend.  Only the backend files contain SQL or include a driver
 * header (tests/test_seam.sh).
 *
 * Records: the public record structs of <envdb/envdb.h> (envdb_environment,
 * envdb_database, envdb_credential, envdb_member) are the rows; the legacy
 * objects have internal rows (legacy_rows.h).  Every returned row is
 * malloc'd, owned by the caller and released with its free function
 * (envdb_*_free, envdbi_*_free).  Every row passed in is borrowed for the
 * call.  Conventions of the values are those documented in envdb.h (UUID
 * text ids, lowercase enum text, integer epoch seconds with 0 = none, int
 * booleans).
 *
 * Validation: every insert/update validates the row against the object
 * definitions (schema.h) in C before it reaches the backend — required
 * fields, enum values, slug pattern, positive storage limit, immutable
 * fields — and returns ENVDB_ERR_INVALID naming the object, the field and
 * the cause.  The backend's constraints (CHECK, UNIQUE, partial UNIQUE,
 * FOREIGN KEY, immutability triggers, all generated from the same
 * definitions) are the safety net that also holds against other processes
 * and hosts.
 *
 * Status codes of every function (plus the ones named at each function):
 *   ENVDB_ERR_EXISTS     a uniqueness rule would be broken; the message names
 *                        the object and the conflicting key, e.g.
 *                        "environment acme/prod: already exists",
 *                        "organization acme: already has a default
 *                        environment (prod)",
 *                        "database envdb_3f0c...: already exists",
 *                        "environment acme/prod: already has a database",
 *                        "database envdb_3f0c...: already has an active
 *                        full_access credential",
 *                        "environment acme/prod: user alice is already a
 *                        member"
 *   ENVDB_ERR_NOT_FOUND  get/update/delete of a missing row; an insert whose
 *                        foreign key names a missing row
 *   ENVDB_ERR_INVALID    the row breaks a field rule
 *   ENVDB_ERR_BUSY       the control plane's write lock stayed taken by
 *                        another process beyond the busy timeout
 *   ENVDB_ERR_IO         any other failure of the backend (the message
 *                        carries the backend's own); a connection lost
 *                        mid-transaction, which then changed nothing
 *   ENVDB_ERR_NOMEM
 * and set the thread's last error (envdbi_error).
 *
 * Threads: one envdbi_store may be shared by threads.  A transaction belongs
 * to the thread that began it: begin() takes the store's (recursive) lock
 * and commit()/rollback() release it, so other threads wait.  Functions
 * called outside a transaction run as one atomic statement under the lock.
 *
 * Transactions: begin() takes the control plane's single global write lock
 * (every process on every host that uses the control plane is serialized
 * by it: the whole control plane is the unit), waiting at most the busy
 * timeout; callers rely on it (core/provision.c checks a slug and then
 * inserts, core/credential.c reads the active credential and swaps it).
 * Transactions nest: an inner begin() opens a savepoint, an inner commit()
 * releases it and an inner rollback() undoes only the inner part (the
 * outer transaction stays usable).  A failed typed call (EXISTS, INVALID,
 * ...) inside a transaction changes nothing and leaves the transaction
 * usable.  The contract every backend keeps is in store_backend.h.
 */
#ifndef ENVDB_STORE_H
#define ENVDB_STORE_H

#include "internal.h"
#include "legacy_rows.h"
#include "schema.h" /* ENVDBI_STORE_VERSION, the value validators */

/* envdbi_store is typedef'd in internal.h. */

/* ------------------------------------------------------------------------ */
/* Open / close                                                              */
/* ------------------------------------------------------------------------ */

/**
 * Open the control plane the manifest names: m->control_plane_driver
 * ("sqlite", the default: the file m->control_plane; "postgresql": the
 * conninfo read from m->control_plane_conninfo_file or _env, schema
 * m->control_plane_schema), busy timeout m->busy_timeout_ms, legacy tables
 * when m->legacy_shim.  `m` is borrowed for the call (nothing of it is
 * kept).  flags: ENVDB_OPEN_CREATE creates the control plane when missing
 * (a file's directory must exist).  Validates the object definitions first
 * (envdbi_schema_validate) and returns ENVDB_ERR_CONFIG when they are
 * broken, then applies pending store migrations.  Returns
 * ENVDB_ERR_NOT_FOUND when the control plane is missing without CREATE,
 * ENVDB_ERR_NOT_SUPPORTED when its schema version is newer than
 * ENVDBI_STORE_VERSION or its driver is not compiled in,
 * ENVDB_ERR_INVALID when it is not an envdb control plane (or damaged),
 * ENVDB_ERR_IO when it cannot be opened for writing (the message names
 * why).  SQLite: sets WAL, foreign_keys=ON, synchronous=FULL,
 * busy_timeout.  On success *out is owned by the caller
 * (envdbi_store_close()).
 */
int envdbi_store_open(envdbi_store **out, const envdbi_manifest *m, unsigned flags);

/** The same for an SQLite file from explicit values (tests, tools).  `path`
 * borrowed. */
int envdbi_store_open_path(envdbi_store **out, const char *path, int64_t busy_timeout_ms,
			   bool legacy_shim, unsigned flags);

/**
 * A private in-memory copy of `src` (everything of it as this connection
 * sees it), for a dry run on a store that was opened for writing: what is
 * written to the copy never reaches the control plane.  *out is owned by
 * the caller (envdbi_store_close()).  A store opened with
 * ENVDB_OPEN_SNAPSHOT (flags of envdbi_store_open) is such a copy from the
 * start, taken without writing to the control plane (SQLite: not to the
 * file, its -wal or its -shm).  ENVDB_ERR_NOT_SUPPORTED for a backend
 * without snapshots.
 */
int envdbi_store_snapshot(envdbi_store **out, envdbi_store *src);
/** True for a store that is an in-memory copy (see above). */
bool envdbi_store_is_snapshot(const envdbi_store *s);

/**
 * Settings for one long bulk writer (the migration).  SQLite: on, a page
 * cache large enough for the pages a big transaction dirties (so they are
 * not spilled into the WAL before the commit) and a WAL that is
 * checkpointed when it reaches `wal_pages` pages instead of the default
 * 1,000; off, the defaults again.  A no-op for a backend without such
 * settings.
 */
int envdbi_store_bulk(envdbi_store *s, bool on, int64_t cache_kib, int64_t wal_pages);

/** Close; NULL allowed.  A transaction still open is rolled back. */
void envdbi_store_close(envdbi_store *s);

/** The schema version of the open control plane, and whether the legacy
 * objects are registered (their tables exist and the typed legacy
 * functions work). */
int envdbi_store_version(const envdbi_store *s);
bool envdbi_store_legacy(const envdbi_store *s);

/** The deployment id of the control plane: a lowercase UUID made when the
 * control plane was created (or, for one of an earlier schema version, when
 * it was first opened and migrated), never changed.  Adapters mark what
 * they make with it (ENVDB_ADAPTER_CAP_DEPLOYMENT), so two deployments that
 * share a backend never take each other's databases.  Owned by the store. */
const char *envdbi_store_deployment_id(const envdbi_store *s);
/** When that id was made (epoch seconds): databases provisioned before it
 * may carry an ownership marker without it (made by an earlier envdb). */
int64_t envdbi_store_deployment_created_at(const envdbi_store *s);

/** How messages name the control plane: the path of an SQLite file, or
 * the PostgreSQL server, database and schema (never a password).  Owned
 * by the store. */
const char *envdbi_store_describe(const envdbi_store *s);
/** The backend's driver name ("sqlite", "postgresql"). */
const char *envdbi_store_driver(const envdbi_store *s);

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */
/* ------------------------------------------------------------------------ */

/** Begin: the outermost takes the control plane's global write lock now,
 * waiting (with retries) at most the busy timeout; ENVDB_ERR_BUSY after
 * it.  Nests (see above). */
int envdbi_store_begin(envdbi_store *s);
/** Commit (the outermost: durably) with the same bounded retry.  On
 * failure that level is rolled back and the lock released. */
int envdbi_store_commit(envdbi_store *s);
/** Roll back; never fails; safe to call when a commit failed. */
void envdbi_store_rollback(envdbi_store *s);
/** True when the calling thread has a transaction open on s. */
bool envdbi_store_in_transaction(envdbi_store *s);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/** A new time-ordered UUID v7 (Unix milliseconds, then 74 bits from libsodium
 * randombytes) as 36 lowercase chars + NUL. */
void envdbi_uuid_new(char out[37]);
/* envdbi_uuid_valid(), envdbi_slug_valid(), envdbi_ciphertext_plausible():
 * the value rules of the field types, in schema.h. */
/** Current time in epoch seconds (time(NULL); overridable in tests with the
 * environment variable ENVDB_TEST_NOW, in processes whose environment had
 * ENVDB_TEST_CLOCK or ENVDB_TEST_NOW set when this was first called). */
int64_t envdbi_now(void);


/* ------------------------------------------------------------------------ */
/* sys_environment                                                           */
/* ------------------------------------------------------------------------ */

/**
 * Insert an environment.  `e` is borrowed; fields the caller leaves
 * zero/NULL get: id a new UUID, created_at/updated_at now, metadata "{}",
 * status "provisioning", plan "free", env_type "production", display_name
 * the slug (defaults come from the object definitions).  The id actually
 * used is copied into id_out (may be NULL).
 * ENVDB_ERR_EXISTS for a duplicate (organization_id, slug) or a second
 * default of the organization (see the messages above).
 */
int envdbi_store_env_insert(envdbi_store *s, const envdb_environment *e, char id_out[37]);

/** Get by id / by (organization_id, slug) / the organization's default
 * (the one with is_default=1 whose status is not archived or failed).
 * ENVDB_ERR_NOT_FOUND with "environment ORG/SLUG: not found". */
int envdbi_store_env_get(envdbi_store *s, envdb_environment **out, const char *id);
int envdbi_store_env_get_by_slug(envdbi_store *s, envdb_environment **out,
				 const char *organization_id, const char *slug);
int envdbi_store_env_get_default(envdbi_store *s, envdb_environment **out,
				 const char *organization_id);
/** 1 when the organization has any environment (any status), 0 when it
 * has none, or a negative status.  One probe of the (organization_id,
 * slug) index, no row read. */
int envdbi_store_env_org_exists(envdbi_store *s, const char *organization_id);

/** Which environments envdbi_store_env_list returns; zero/NULL members do
 * not filter.  Initialise with ENVDBI_ENV_FILTER_INIT. */
typedef struct envdbi_env_filter {
	const char *organization_id;
	const char *status;         /**< exact status */
	int64_t lease_expired_at;   /**< only rows with 0 < lease_expires_at <= this */
	int64_t delete_due_at;      /**< only rows with 0 < delete_after <= this */
} envdbi_env_filter;
#define ENVDBI_ENV_FILTER_INIT { NULL, NULL, 0, 0 }

/** List environments ordered by organization_id, slug.  `f` may be NULL
 * (all).  *out: array of *n rows (NULL when 0), free with
 * envdb_environment_list_free(). */
int envdbi_store_env_list(envdbi_store *s, envdb_environment ***out, size_t *n,
			  const envdbi_env_filter *f);

/** Overwrite every mutable field of row e->id with e's values and set
 * updated_at to now (e->updated_at is ignored).  id, organization_id and
 * created_at/created_by are immutable: a change returns ENVDB_ERR_INVALID.
 * ENVDB_ERR_NOT_FOUND when the row is gone. */
int envdbi_store_env_update(envdbi_store *s, const envdb_environment *e);

/** Compare-and-set the status: set status `to` (and updated_at) only if the
 * current status is `from` (`from` NULL: any).  ENVDB_ERR_STATE with
 * "environment ORG/SLUG: status is X, expected Y" when it is not, so two
 * processes cannot both move the same intent.  ENVDB_ERR_NOT_FOUND. */
int envdbi_store_env_set_status(envdbi_store *s, const char *id, const char *from,
				const char *to);

/** Provisioning's last step: status provisioning -> active, the pending
 * fields and the lease cleared, updated_at set, in one statement.
 * ENVDB_ERR_STATE ("environment ORG/SLUG: the intent was taken over (status
 * X)...") when the row is no longer provisioning, ENVDB_ERR_NOT_FOUND when
 * it is gone. */
int envdbi_store_env_activate(envdbi_store *s, const char *id);

/** Delete the environment row and, by ON DELETE CASCADE, its database row,
 * credentials and members.  ENVDB_ERR_NOT_FOUND when missing. */
int envdbi_store_env_delete(envdbi_store *s, const char *id);

/* ------------------------------------------------------------------------ */
/* sys_environment_database                                                  */
/* ------------------------------------------------------------------------ */

/** Insert (id, provisioned_at, metadata "{}" default as above).  ENVDB_ERR_EXISTS
 * for a second database of the environment or a taken database_name;
 * ENVDB_ERR_NOT_FOUND when the environment row is missing. */
int envdbi_store_db_insert(envdbi_store *s, const envdb_database *d, char id_out[37]);
int envdbi_store_db_get(envdbi_store *s, envdb_database **out, const char *id);
int envdbi_store_db_get_by_env(envdbi_store *s, envdb_database **out, const char *environment_id);
int envdbi_store_db_get_by_name(envdbi_store *s, envdb_database **out, const char *database_name);
/** Every database row ordered by database_name (reconcile, check). */
int envdbi_store_db_list(envdbi_store *s, envdb_database ***out, size_t *n);
/** Overwrite the mutable fields (database_url, driver, region,
 * storage_limit_mb, last_accessed_at, metadata).  environment_id and
 * database_name are immutable: ENVDB_ERR_INVALID when changed. */
int envdbi_store_db_update(envdbi_store *s, const envdb_database *d);
/** Set last_accessed_at only (cheap, resolve path). */
int envdbi_store_db_touch(envdbi_store *s, const char *id, int64_t when);

/* ------------------------------------------------------------------------ */
/* sys_database_credential                                                   */
/* ------------------------------------------------------------------------ */

/** Insert.  c->id may be preset (the AAD binds the ciphertext to the id, so
 * callers generate the id with envdbi_uuid_new() before encrypting).
 * secret_ciphertext and key_id are required (never plaintext: a value that
 * does not look like encryptor output is ENVDB_ERR_INVALID — see
 * envdbi_ciphertext_plausible()).  ENVDB_ERR_EXISTS when an active
 * credential of the same database and authorization exists (only when
 * c->status is "active"). */
int envdbi_store_cred_insert(envdbi_store *s, const envdb_credential *c, char id_out[37]);
int envdbi_store_cred_get(envdbi_store *s, envdb_credential **out, const char *id);
/** The active credential of (database, authorization); ENVDB_ERR_NOT_FOUND. */
int envdbi_store_cred_get_active(envdbi_store *s, envdb_credential **out,
				 const char *environment_database_id, const char *authorization);

typedef struct envdbi_cred_filter {
	const char *environment_database_id; /**< NULL: every database */
	const char *authorization;           /**< NULL: both */
	const char *status;                  /**< NULL: every status */
	int64_t expired_at;                  /**< only 0 < expires_at <= this */
} envdbi_cred_filter;
#define ENVDBI_CRED_FILTER_INIT { NULL, NULL, NULL, 0 }

/** List ordered by environment_database_id, created_at, id. */
int envdbi_store_cred_list(envdbi_store *s, envdb_credential ***out, size_t *n,
			   const envdbi_cred_filter *f);
/** Overwrite the mutable fields (secret_ciphertext, key_id, handle, status,
 * expires_at, revoked_at).  environment_database_id and authorization are
 * immutable.  Making a second credential active is ENVDB_ERR_EXISTS. */
int envdbi_store_cred_update(envdbi_store *s, const envdb_credential *c);
/** Compare-and-set status (as env_set_status); sets revoked_at = now when
 * `to` is "revoked". */
int envdbi_store_cred_set_status(envdbi_store *s, const char *id, const char *from,
				 const char *to);

/** The authorization a member's role resolves to — the one statement of the
 * rule, expanded into the resolve statement's SQL (core/store_sql.c) and into
 * core/resolve.c's check of what it read: X(ROLE, AUTHORIZATION) per role. */
#define ENVDBI_ROLE_AUTHORIZATIONS(X)                                               \
	X("owner", "full_access") X("admin", "full_access") X("maker", "full_access") \
	X("reader", "read_only") X("guest", "read_only")

/** What a resolve reads (core/resolve.c), from one statement and so from one
 * snapshot of the control plane.  Strings point into the record (free() it
 * whole); a member, database or credential that does not exist leaves its
 * fields NULL (and times 0). */
typedef struct envdbi_resolve_row {
	const char *env_id, *env_status;
	const char *role;          /* NULL: not a member */
	const char *db_id, *driver, *database_name, *database_url; /* NULL: no database */
	const char *authorization; /* of the role: owner, admin, maker: full_access;
				      reader, guest: read_only; NULL: another role */
	const char *cred_id, *cred_ciphertext, *cred_handle; /* the active one, or NULL */
	int64_t cred_expires_at;
	const char *prev_id, *prev_ciphertext, *prev_handle; /* newest rotating in window */
	int64_t prev_expires_at;
	int64_t cred_aad_version, prev_aad_version; /* envdb_credential.aad_version */
	char buf[];
} envdbi_resolve_row;

/** Read environment ORG/SLUG for `user`: its id and status, the user's role
 * and the authorization it gets, the database, the active credential of that
 * authorization and the newest "rotating" one whose expires_at is none or
 * after `now`.  ENVDB_ERR_NOT_FOUND (not reported: the caller composes the
 * message) when there is no such environment. */
int envdbi_store_resolve_get(envdbi_store *s, envdbi_resolve_row **out, const char *org,
			     const char *slug, const char *user, int64_t now);


/* ------------------------------------------------------------------------ */
/* sys_environment_member                                                    */
/* ------------------------------------------------------------------------ */

/** Insert.  ENVDB_ERR_EXISTS "environment ORG/SLUG: user U is already a
 * member" on duplicate (environment_id, user_id). */
int envdbi_store_member_insert(envdbi_store *s, const envdb_member *m, char id_out[37]);
int envdbi_store_member_get(envdbi_store *s, envdb_member **out, const char *environment_id,
			    const char *user_id);
/** Members of one environment (NULL: all) ordered by environment_id, user_id. */
int envdbi_store_member_list(envdbi_store *s, envdb_member ***out, size_t *n,
			     const char *environment_id);
/** Overwrite role and invited_by of row m->id; updated_at = now. */
int envdbi_store_member_update(envdbi_store *s, const envdb_member *m);
/** Delete (environment_id, user_id).  ENVDB_ERR_NOT_FOUND. */
int envdbi_store_member_delete(envdbi_store *s, const char *environment_id, const char *user_id);

/* ------------------------------------------------------------------------ */
/* Legacy v4 shim: sys_tenant_database, sys_package_installation             */
/* Only when envdbi_store_legacy(s); otherwise ENVDB_ERR_NOT_SUPPORTED.      */
/* ------------------------------------------------------------------------ */

void envdbi_tenant_db_free(envdbi_tenant_db_row *r);
void envdbi_tenant_db_list_free(envdbi_tenant_db_row **v, size_t n);
void envdbi_package_list_free(envdbi_package_row **v, size_t n);

int envdbi_store_tenant_db_insert(envdbi_store *s, const envdbi_tenant_db_row *r, char id_out[37]);
int envdbi_store_tenant_db_get(envdbi_store *s, envdbi_tenant_db_row **out, const char *id);
/** Ordered by organization_id, database_name; organization_id NULL: all. */
int envdbi_store_tenant_db_list(envdbi_store *s, envdbi_tenant_db_row ***out, size_t *n,
				const char *organization_id);
/** Overwrite every mutable field (all but id, organization_id,
 * database_name, created_at); updated_at = now. */
int envdbi_store_tenant_db_update(envdbi_store *s, const envdbi_tenant_db_row *r);

int envdbi_store_package_insert(envdbi_store *s, const envdbi_package_row *r, char id_out[37]);
/** tenant_id NULL: all.  Ordered by tenant_id, package_id. */
int envdbi_store_package_list(envdbi_store *s, envdbi_package_row ***out, size_t *n,
			      const char *tenant_id);
/** Repoint every installation of `from_tenant` to `to_tenant`; *changed (may
 * be NULL) receives the number of rows. */
/* The ids, sorted by strcmp, of the pending legacy rows of the organizations
 * in (after_org, upto_org] that package installations point at: one query
 * for a batch instead of a repoint UPDATE per row.  Free with
 * envdbi_store_strings_free(). */
int envdbi_store_package_tenants_pending(envdbi_store *s, char ***out, size_t *n,
					 const char *after_org, const char *upto_org);
/* Likewise: the database names of those rows that an environment database
 * already has, and their organization ids that have an environment. */
int envdbi_store_db_names_taken_pending(envdbi_store *s, char ***out, size_t *n,
					const char *after_org, const char *upto_org);
int envdbi_store_env_orgs_pending(envdbi_store *s, char ***out, size_t *n,
				  const char *after_org, const char *upto_org);
void envdbi_store_strings_free(char **v, size_t n);
int envdbi_store_package_repoint(envdbi_store *s, const char *from_tenant, const char *to_tenant,
				 size_t *changed);

/* ------------------------------------------------------------------------ */
/* Generic, definition-driven access (used by envdb check)                   */
/* ------------------------------------------------------------------------ */

/** Receives one row of an object as its record struct (borrowed for the
 * call; fields may break every rule: NULL where required, bad enums).
 * Return non-zero to stop the scan (the scan then returns that value). */
typedef int (*envdbi_scan_cb)(void *cb_ctx, const struct envdbi_object_def *o,
			      const void *record);
/** Every row of object `o` in primary-key order. */
int envdbi_store_scan(envdbi_store *s, const struct envdbi_object_def *o, envdbi_scan_cb cb,
		      void *cb_ctx);
/** Every row of object `o` in primary-key order, as an array of records
 * (transferred: free with envdbi_record_free() on each and free(); the
 * rows may break every rule, as with envdbi_store_scan()). */
int envdbi_store_rows(envdbi_store *s, const struct envdbi_object_def *o, void ***out,
		      size_t *n);

/** Receives one group of rows sharing the key of a unique index (with its
 * partial predicate): `key` the key values joined by "/", `ids` the row ids
 * comma-separated.  Borrowed for the call. */
typedef void (*envdbi_dup_cb)(void *cb_ctx, const struct envdbi_object_def *o,
			      const struct envdbi_index_def *ix, const char *key, const char *ids);
/** Find rows breaking the unique index `ix` of `o` (works without the
 * physical index, on whatever the data holds). */
int envdbi_store_find_duplicates(envdbi_store *s, const struct envdbi_object_def *o,
				 const struct envdbi_index_def *ix, envdbi_dup_cb cb, void *cb_ctx);

/** Receives one row whose reference field `f` names a row that does not
 * exist.  Borrowed for the call. */
typedef void (*envdbi_dangling_cb)(void *cb_ctx, const struct envdbi_object_def *o,
				   const struct envdbi_field_def *f, const char *row_id,
				   const char *missing_id);
/** Find dangling references of every REF field of `o`. */
int envdbi_store_find_dangling(envdbi_store *s, const struct envdbi_object_def *o,
			       envdbi_dangling_cb cb, void *cb_ctx);

/** Receives one problem of the physical schema: `object` (table), `what`
 * (an index or trigger name) and a message.  Borrowed for the call. */
typedef void (*envdbi_schema_problem_cb)(void *cb_ctx, const char *object, const char *what,
					 const char *message);

/** Compare the physical schema with the object definitions: every table,
 * every declared UNIQUE index (with its uniqueness) and every immutability
 * trigger must exist.  Calls cb once per missing piece; returns 0 when the
 * comparison ran. */
int envdbi_store_verify_schema(envdbi_store *s, envdbi_schema_problem_cb cb, void *cb_ctx);

/** check.c: every invariant violation of the data in `s` (envdb_check()
 * without a context).  Outputs as envdb_check(). */
int envdbi_check_store(envdb_violation ***out, size_t *n, envdbi_store *s);

/* ------------------------------------------------------------------------ */
/* Resolve-cache hook (implemented by resolve.c, helper C2)                  */
/* ------------------------------------------------------------------------ */

/** Drop every cached resolve result of one environment.  `c` may be NULL
 * (cache disabled): then it does nothing.  Called by member.c after every
 * membership change and by provisioning/credential code after status and
 * credential changes. */
void envdbi_cache_invalidate_env(envdbi_cache *c, const char *environment_id);

/* ------------------------------------------------------------------------ */
/* Migration support (v4 -> v5, core/migrate.c; added by helper G)           */
/* Legacy objects only: ENVDB_ERR_NOT_SUPPORTED without them.                */
/* ------------------------------------------------------------------------ */

/**
 * The sys_tenant_database rows not yet migrated (migrated_environment_id
 * NULL, any status) of the next `max_orgs` organizations whose id sorts
 * after `after_org` (NULL: from the first), ordered by organization_id,
 * created_at, id.  *out: array of *n rows (NULL when 0), free with
 * envdbi_tenant_db_list_free().
 */
int envdbi_store_tenant_db_pending(envdbi_store *s, envdbi_tenant_db_row ***out, size_t *n,
				   const char *after_org, size_t max_orgs);

/** Counts over sys_tenant_database by organization. */
typedef struct envdbi_legacy_counts {
	size_t orgs;          /**< organizations with at least one row */
	size_t orgs_pending;  /**< ... with at least one row not migrated */
	size_t orgs_migrated; /**< ... whose every row is migrated */
	size_t rows_pending;  /**< rows not migrated */
	/* By what is left of each organization (the three add up to orgs): */
	size_t orgs_done;     /**< some row migrated, no active/suspended row left */
	size_t orgs_open;     /**< an active or suspended row not migrated */
	size_t orgs_inactive; /**< nothing migrated, only archived/failed v4 rows */
} envdbi_legacy_counts;
int envdbi_store_tenant_db_counts(envdbi_store *s, envdbi_legacy_counts *out);

/** True (1) when some row of `organization_id` is migrated, 0 when none,
 * or a negative status. */
int envdbi_store_tenant_db_org_has_migrated(envdbi_store *s, const char *organization_id);

/** Archive a legacy row as migrated to `environment_id`: status archived,
 * migrated_environment_id set, updated_at now — only if it is not migrated
 * yet (compare-and-set); ENVDB_ERR_STATE "... gone or already migrated"
 * otherwise. */
int envdbi_store_tenant_db_archive(envdbi_store *s, const char *id, const char *environment_id);

/** Set auth_token NULL (and updated_at) on legacy row `id` only if it is
 * migrated (compare-and-set on migrated_environment_id = `environment_id`);
 * ENVDB_ERR_STATE otherwise. */
int envdbi_store_tenant_db_wipe_token(envdbi_store *s, const char *id,
				      const char *environment_id);

/** The deprecated shim's notice, logged (warning) when the store opens with
 * the legacy objects registered and they hold rows: "run envdb migrate
 * v4-to-v5" while some active or suspended row is not migrated, "set
 * legacy.register_shim: false" once none is left.  Never fails the open. */
void envdbi_store_legacy_notice(envdbi_store *s);

#endif /* ENVDB_STORE_H */
