/*
 * envdb/adapter.h — the adapter ABI: a plugin that places each environment
 * in its own physical database on some backend (SQLite files, PostgreSQL,
 * Turso, ...) and mints the credentials clients use to reach it.
 *
 * An adapter's descriptor has kind ENVDB_PLUGIN_ADAPTER and its ops point to
 * a static envdb_adapter_ops.  The host never calls a NULL slot: an absent
 * optional operation means an absent capability and the host answers
 * ENVDB_ERR_NOT_SUPPORTED itself.  The capability bits must agree with the
 * slots (the host refuses a plugin that claims a capability whose slot is
 * NULL).
 *
 * Threading: without ENVDB_PLUGIN_THREAD_SAFE every call on one instance is
 * serialized by the host.  Remote adapters set ENVDB_PLUGIN_REMOTE and honour
 * host->deadline_ms().
 *
 * Error reporting: every failing operation calls host->error() once with the
 * status it returns, a message naming the database and the operation, and
 * the backend's native code where there is one.  Never a secret.
 *
 * Output buffers (envdb_buffer) given to create and mint have at least
 * ENVDB_ADAPTER_OUTPUT_MIN bytes.  If a value does not fit, the operation
 * undoes its effect and returns ENVDB_ERR_BUFFER_TOO_SMALL with len set; the
 * host retries with larger buffers.
 *
 * Introduced in ABI 1.0.
 */
#ifndef ENVDB_ADAPTER_H
#define ENVDB_ADAPTER_H

#include <envdb/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENVDB_ADAPTER_OUTPUT_MIN 4096

/** Capability bits (envdb_adapter_ops.capabilities). */
enum envdb_adapter_caps {
	/** mint() accepts ENVDB_AUTH_READ_ONLY and the credential really
	 * cannot write.  Without it the host refuses read-only requests. */
	ENVDB_ADAPTER_CAP_READ_ONLY = 1u << 0,
	/** A credential minted with a previous_handle leaves the previous
	 * credential working until it is revoked (overlapping rotation). */
	ENVDB_ADAPTER_CAP_ROTATE_OVERLAP = 1u << 1,
	/** revoke() invalidates a single credential at the backend. */
	ENVDB_ADAPTER_CAP_REVOKE = 1u << 2,
	/** The backend enforces expires_at itself (otherwise only the host does). */
	ENVDB_ADAPTER_CAP_EXPIRY = 1u << 3,
	/** probe() is available. */
	ENVDB_ADAPTER_CAP_PROBE = 1u << 4,
	/** list() is available and returns exactly the databases this plugin owns. */
	ENVDB_ADAPTER_CAP_LIST = 1u << 5,
	/** The credential is a real backend credential (SQLite has none: its
	 * "credential" is a random token the backend does not check). */
	ENVDB_ADAPTER_CAP_AUTHENTICATES = 1u << 6,
	/* Added in ABI 1.1. */
	/** suspend() and resume() are available: every credential of a database
	 * can be locked out at the backend (sessions ended) and let back in. */
	ENVDB_ADAPTER_CAP_SUSPEND = 1u << 7,
	/** The adapter writes the deployment id it is given (db_ref and
	 * create_request) into an ownership marker on every object it makes,
	 * and list(), drop() and the adoption after an ambiguous create consider
	 * only objects that carry this deployment's marker. */
	ENVDB_ADAPTER_CAP_DEPLOYMENT = 1u << 8
};

/** Credential authorizations. */
enum envdb_authorization {
	ENVDB_AUTH_FULL_ACCESS = 1,
	ENVDB_AUTH_READ_ONLY = 2
};

/** Which physical database an operation addresses.  All strings borrowed for
 * the call.  A database registered by the host's v4 -> v5 migration keeps
 * its legacy name and URL: database_name is then not the one database_name()
 * derives, and metadata is {"migrated_from": {...}} instead of what create()
 * returned.  An adapter that cannot work on such a database answers
 * ENVDB_ERR_NOT_SUPPORTED naming it (ABI.md §11, "Adopted databases");
 * list() does not report it (the plugin did not make it). */
typedef struct envdb_db_ref {
	size_t struct_size;
	const char *environment_id; /**< UUID of the environment */
	const char *database_name;  /**< from database_name() */
	const char *url;            /**< from create(); NULL before create */
	const char *metadata;       /**< JSON object from create(), or NULL */
	/* Members above are valid for ABI 1.0. */
	/** Added in ABI 1.1: the id of the control plane (deployment) that owns
	 * the database; NULL from a 1.0 host.  See ENVDB_ADAPTER_CAP_DEPLOYMENT. */
	const char *deployment_id;
} envdb_db_ref;

/** What create() is asked to make.  All strings borrowed for the call. */
typedef struct envdb_create_request {
	size_t struct_size;
	const char *environment_id;  /**< UUID */
	const char *database_name;   /**< from database_name() */
	const char *region;          /**< may be NULL */
	const char *plan;            /**< free, starter, pro, enterprise, custom */
	int64_t storage_limit_mb;    /**< > 0 */
	/* Members above are valid for ABI 1.0. */
	/** Added in ABI 1.1: the deployment id to mark the new database with;
	 * NULL from a 1.0 host. */
	const char *deployment_id;
} envdb_create_request;

/** What mint() is asked to make. */
typedef struct envdb_mint_request {
	size_t struct_size;
	const char *credential_id;   /**< UUID of the credential row being created */
	uint32_t authorization;      /**< envdb_authorization */
	int64_t expires_at;          /**< seconds since the epoch, 0 for none */
	/** Handle of the credential of the same authorization that this one
	 * replaces (rotation), or NULL for the first one.  An adapter with
	 * ENVDB_ADAPTER_CAP_ROTATE_OVERLAP keeps that credential working. */
	const char *previous_handle;
	/* Members above are valid for ABI 1.0. */

	/* Added in ABI 1.1. */
	/** Out: where the plugin writes the expiry the backend actually applied
	 * to the new credential (seconds since the epoch, 0 for none), which may
	 * differ from expires_at (a backend-side default such as Turso's
	 * token_expiration, a cap, a rounding).  NULL from a 1.0 host; a 1.0
	 * plugin leaves it alone, and the host then assumes expires_at. */
	int64_t *granted_expires_at;
	/** With previous_handle: the time (seconds since the epoch) at which the
	 * overlap window of the previous credential ends, 0 for no end.  An
	 * adapter with ENVDB_ADAPTER_CAP_EXPIRY makes the backend itself refuse
	 * the previous credential after it (PostgreSQL VALID UNTIL), so a
	 * window that lapses without `cred complete` still closes. */
	int64_t previous_valid_until;
} envdb_mint_request;

/** Receives one database name from list().  `name` is borrowed for the call.
 * Return 0 to continue, non-zero to stop listing (list then returns it). */
typedef int (*envdb_adapter_list_cb)(void *cb_ctx, const char *name);

/** Required.  Derive the physical database name of an environment.  Pure and
 * deterministic: the same environment id always gives the same name, so a
 * retry or a reconcile addresses the same database.  Text into *name. */
typedef int (*envdb_adapter_database_name_fn)(void *instance, const char *environment_id,
					      envdb_buffer *name);

/** Required.  Create the physical database.  If it already exists return
 * ENVDB_ERR_EXISTS and change nothing.  On success write its URL (never
 * containing a secret) into *url and a JSON object of driver details (or
 * "{}") into *metadata.  On failure leave nothing behind.  ENVDB_ERR_EXISTS,
 * ENVDB_ERR_AUTH and ENVDB_ERR_PERMISSION (a definite refusal) tell the host
 * that nothing was created: it then does not drop by name. */
typedef int (*envdb_adapter_create_fn)(void *instance, const envdb_create_request *req,
				       envdb_buffer *url, envdb_buffer *metadata);

/** Required.  Drop the physical database and everything minted for it.  A
 * database that is already gone, or never existed, is success; db->url and
 * db->metadata are NULL when the host drops by name alone (a create whose
 * outcome it never learnt). */
typedef int (*envdb_adapter_drop_fn)(void *instance, const envdb_db_ref *db);

/** Required.  Mint a credential.  The secret goes into *secret (a buffer in
 * host secure memory); a non-secret identifier of the credential (a role
 * name, a token id, or "" when there is none) into *handle, which the host
 * stores and passes back to revoke() and as previous_handle; a handle
 * beginning with '?' is a URL query that is part of the credential (sqlite:
 * "?mode=ro"), appended to the database URL resolve hands out.  A rotation
 * (previous_handle set) mints a new secret, never the previous one.  A
 * database that does not exist is ENVDB_ERR_NOT_FOUND.  Without
 * ENVDB_ADAPTER_CAP_READ_ONLY a read-only request is answered with
 * ENVDB_ERR_NOT_SUPPORTED (the host never sends one; the conformance kit
 * does), never with a credential that can write. */
typedef int (*envdb_adapter_mint_fn)(void *instance, const envdb_db_ref *db,
				     const envdb_mint_request *req, envdb_buffer *secret,
				     envdb_buffer *handle);

/** Optional (ENVDB_ADAPTER_CAP_REVOKE).  Invalidate one credential at the
 * backend.  Revoking a credential that is already gone is success. */
typedef int (*envdb_adapter_revoke_fn)(void *instance, const envdb_db_ref *db,
				       uint32_t authorization, const char *handle);

/** Optional (ENVDB_ADAPTER_CAP_PROBE).  Connect with the secret and run a
 * trivial query.  `secret` is borrowed for the call (secure memory).  A
 * wrong or revoked secret is ENVDB_ERR_AUTH when the adapter declares
 * ENVDB_ADAPTER_CAP_AUTHENTICATES; a database that does not exist fails
 * (ENVDB_ERR_NOT_FOUND where the backend can tell). */
typedef int (*envdb_adapter_probe_fn)(void *instance, const envdb_db_ref *db,
				      const char *secret, size_t secret_len);

/** Optional (ENVDB_ADAPTER_CAP_LIST).  Call cb once per database this plugin
 * owns on its backend, and never for anything it does not own. */
typedef int (*envdb_adapter_list_fn)(void *instance, envdb_adapter_list_cb cb, void *cb_ctx);

/** Optional (ENVDB_ADAPTER_CAP_SUSPEND), ABI 1.1.  Lock every credential of
 * the database out at the backend and end its open sessions (archive).
 * Suspending a suspended database is success. */
typedef int (*envdb_adapter_suspend_fn)(void *instance, const envdb_db_ref *db);

/** Optional (ENVDB_ADAPTER_CAP_SUSPEND), ABI 1.1.  Undo suspend(): the
 * credentials that were valid before it work again (unarchive).  Resuming a
 * database that is not suspended is success. */
typedef int (*envdb_adapter_resume_fn)(void *instance, const envdb_db_ref *db);

/** The adapter operations.  Static, pointed to by the descriptor's ops. */
typedef struct envdb_adapter_ops {
	size_t struct_size;
	uint64_t capabilities; /**< envdb_adapter_caps */
	envdb_adapter_database_name_fn database_name;
	envdb_adapter_create_fn create;
	envdb_adapter_drop_fn drop;
	envdb_adapter_mint_fn mint;
	envdb_adapter_revoke_fn revoke;
	envdb_adapter_probe_fn probe;
	envdb_adapter_list_fn list;
	/* Members above are valid for ABI 1.0. */
	envdb_adapter_suspend_fn suspend; /**< ABI 1.1 */
	envdb_adapter_resume_fn resume;   /**< ABI 1.1 */
} envdb_adapter_ops;

#ifdef __cplusplus
}
#endif

#endif /* ENVDB_ADAPTER_H */
