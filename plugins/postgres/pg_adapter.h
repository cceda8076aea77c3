/*
 * plugins/postgres/pg_adapter.h — private interfaces between the files of
 * the postgres adapter plugin (one PostgreSQL database and its own login
 * roles per environment).  Nothing here crosses the plugin boundary: the
 * module is built with hidden visibility and exports only
 * envdb_plugin_entry_v1.
 *
 *   plugin.c      descriptor, configuration, init/fini
 *   names.c       environment id validation, the names of the database and
 *                 its roles, ownership markers, URL, metadata, fingerprints
 *   conn.c        connections and statements under the host's deadline,
 *                 SQLSTATE mapping, error messages scrubbed of secrets
 *   database.c    database_name, create, drop, list
 *   credential.c  mint, revoke, probe
 *
 * Naming (see README.md): with prefix P and an environment id whose 32 hex
 * digits are H, the database is P H; its NOLOGIN group roles are P H "_rw"
 * (owns the schema) and P H "_ro" (reads it); each minted credential is a
 * login role P H "_rw_" X or P H "_ro_" X, X being the last 10 hex digits of
 * the credential id.  Every database and role the plugin creates carries
 * the comment "envdb:<environment id>" (login roles append " fp:<16 hex>",
 * a fingerprint of their password that lets probe find the role).  With a
 * deployment id (ENVDB_ADAPTER_CAP_DEPLOYMENT) the database and its group
 * roles carry "envdb:<environment id> deployment:<deployment id>".
 */
#ifndef ENVDB_PG_ADAPTER_H
#define ENVDB_PG_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include <envdb/adapter.h>

/** Longest prefix: [a-z][a-z0-9_]{0,15}. */
#define PGA_PREFIX_MAX 16
/** Hex digits of the environment id in the database name. */
#define PGA_HEX_LEN 32
/** Longest database name: prefix + 32 hex digits. */
#define PGA_DB_MAX (PGA_PREFIX_MAX + PGA_HEX_LEN)
/** Hex digits of the credential id in a login role name. */
#define PGA_CRED_HEX 10
/** Longest role name: database + "_rw_" + 10 hex digits (62 < NAMEDATALEN). */
#define PGA_ROLE_MAX (PGA_DB_MAX + 4 + PGA_CRED_HEX)
/** Room for a quoted identifier of a name above (every byte doubled + quotes). */
#define PGA_QID_MAX (2 * PGA_ROLE_MAX + 3)
/** "envdb:" + a UUID. */
#define PGA_MARKER_MAX (6 + 36)
/** What follows the environment marker on the database and its group roles. */
#define PGA_DEPLOYMENT_TAG " deployment:"
/** "envdb:" + a UUID + " deployment:" + a UUID. */
#define PGA_FULL_MARKER_MAX (PGA_MARKER_MAX + 12 + 36)
/** Bytes of randomness in a password (base64url without padding: 43). */
#define PGA_PASSWORD_BYTES 32
#define PGA_PASSWORD_LEN 43
/** Hex digits of a password fingerprint. */
#define PGA_FP_HEX 16
/** Oldest server supported (starts_with(), default privileges on schemas). */
#define PGA_MIN_SERVER_VERSION 110000
/** Extra time granted past the deadline to undo a half-done operation. */
#define PGA_CLEANUP_GRACE_MS 10000

/** The plugin instance.  Calls are serialized by the host (the plugin does
 * not declare ENVDB_PLUGIN_THREAD_SAFE): the cached admin connection is
 * state. */
typedef struct pga {
	const envdb_host *host; /* borrowed from the host until fini */
	/* The administrator's connection string, in host secure memory owned
	 * by the instance (secure_free in fini), and the password it carries
	 * (also secure memory, or NULL): both are scrubbed from messages. */
	char *admin_conninfo;
	char *admin_password;
	char *client_host; /* host->alloc; checked: no escaping needed */
	char client_port[8];
	char prefix[PGA_PREFIX_MAX + 1];
	char *template_db;    /* host->alloc, or NULL for the server default */
	int connection_limit; /* -1: unlimited */
	PGconn *admin;	      /* cached admin connection, or NULL */
	/* The cached connection's state is unknown (lost, or a statement was
	 * abandoned at the deadline): it is closed when the next operation
	 * starts, never while a caller may still hold the pointer. */
	int admin_broken;
	/* While undoing a failed operation: a deadline that replaces the
	 * host's (0 when not undoing). */
	int64_t cleanup_deadline;
} pga;

/** The names of one environment's objects. */
typedef struct pga_names {
	char env_id[37];		 /* canonical lowercase UUID */
	char hex[PGA_HEX_LEN + 1];	 /* its 32 hex digits */
	char db[PGA_DB_MAX + 1];	 /* prefix + hex */
	char rw[PGA_DB_MAX + 4];	 /* db + "_rw" (NOLOGIN, owns the schema) */
	char ro[PGA_DB_MAX + 4];	 /* db + "_ro" (NOLOGIN, reads) */
	char marker[PGA_MARKER_MAX + 1]; /* "envdb:" + env_id */
} pga_names;

/* names.c ------------------------------------------------------------------ */

/** Fill `n` from an environment id (a UUID, either case).  ENVDB_ERR_INVALID
 * (reported, naming `op`) otherwise. */
int pga_names_from_id(pga_names *n, const pga *a, const char *op, const char *environment_id);

/** Fill `n` from a db_ref: from its environment id (checked against
 * database_name when both are given), or from a database name of the form
 * prefix + 32 hex digits alone (how reconcile drops an orphan). */
int pga_names_from_ref(pga_names *n, const pga *a, const char *op, const envdb_db_ref *db);

/** True when `s` is prefix + 32 lowercase hex digits; then `hex` (33 bytes,
 * may be NULL) receives the digits. */
int pga_db_name_parse(const pga *a, const char *s, char *hex);

/** Login role kinds. */
enum pga_role_kind {
	PGA_ROLE_OTHER = 0, /* not a name this plugin makes for the database */
	PGA_ROLE_RW_GROUP,
	PGA_ROLE_RO_GROUP,
	PGA_ROLE_RW_LOGIN,
	PGA_ROLE_RO_LOGIN
};

/** What a role name is for the database of `n`. */
enum pga_role_kind pga_role_kind(const pga_names *n, const char *role);

/** Name of the login role of a credential: `out` has PGA_ROLE_MAX + 1
 * bytes.  `credential_id` (a UUID) gives the last 10 hex digits; when NULL,
 * 10 random hex digits are used. */
int pga_login_role(char *out, const pga *a, const pga_names *n, uint32_t authorization,
		   const char *credential_id);

/** True when `comment` is exactly `marker`, or `marker` followed by a space
 * and more. */
int pga_marker_matches(const char *comment, const char *marker);

/** The deployment id to work for: `given` (from a request or db_ref) or the
 * host's (host->deployment_id, ABI 1.1); NULL when neither is a UUID (then
 * the plugin marks and considers no deployment, as before ABI 1.1). */
const char *pga_deployment(const pga *a, const char *given);
/** The same from a db_ref (its deployment_id when its size covers it). */
const char *pga_ref_deployment(const pga *a, const envdb_db_ref *db);
/** The deployment a marker comment names (" deployment:<uuid>") into `out`
 * (37 bytes): 1, or 0 when it names none (made by an earlier envdb). */
int pga_marker_deployment(const char *comment, char out[37]);

/** Fingerprint of a password: 16 lowercase hex digits into `out` (17 bytes). */
void pga_fingerprint(char *out, const char *secret, size_t secret_len);

/** True when `comment` carries " fp:<fp>". */
int pga_comment_has_fp(const char *comment, const char *fp);

/** "postgresql://HOST:PORT/DB" (no secret, no user). */
int pga_url(char *out, size_t cap, const pga *a, const char *db);

/** The metadata JSON object of a database. */
int pga_metadata(char *out, size_t cap, const pga *a, const pga_names *n, int server_version);

/** Copy a string into host->alloc memory; NULL when out of memory. */
char *pga_strdup(const pga *a, const char *s);

/** Zero memory in a way the compiler keeps. */
void pga_wipe(void *p, size_t len);

/* conn.c ------------------------------------------------------------------- */

/** An operation in progress: what error messages name. */
typedef struct pga_op {
	pga *a;
	const char *op;	    /* "create", "mint", ... */
	const char *object; /* the database name, or NULL */
	/* A secret of this operation (a password being set or probed) that
	 * must never appear in a message, or NULL. */
	const char *secret;
	/* Undoing a failed operation: failures are logged as warnings, never
	 * reported (the error being undone stays the one the host sees). */
	int silent;
} pga_op;

/** Report an error naming the operation and object (log it as a warning
 * when o->silent); returns `status`. */
int pga_fail(const pga_op *o, int status, const char *native, const char *fmt, ...)
	ENVDB_PRINTF(4, 5);

/** Milliseconds left before the deadline (the cleanup deadline while
 * undoing), -1 when there is none; ENVDB_ERR_TIMEOUT (reported) when it
 * passed. */
int pga_time_left(int64_t *ms, const pga_op *o);

/** The cached admin connection, opened (or reopened) as needed, idle, and
 * with statement_timeout set from the deadline. */
int pga_admin(PGconn **out, const pga_op *o);

/** Close the cached admin connection (fini, or a broken connection at the
 * start of an operation). */
void pga_admin_close(pga *a);

/**
 * Open a new connection with the admin connection string, overriding
 * dbname, user and password when not NULL.  Honours the deadline
 * (connect_timeout and a client-side wait) and sets statement_timeout.
 * `role_label` names the role in messages ("administrator" or a role).
 */
int pga_connect(PGconn **out, const pga_op *o, const char *dbname, const char *user,
		const char *password, const char *role_label);

/**
 * Run one statement and wait for its result under the deadline (the
 * statement is cancelled when it passes).  `params` may be NULL when
 * nparams is 0.  On success *res (may be NULL: discarded) holds the result
 * (PQclear it).  On failure reports "<op> <object>: <what>: <cause>" with
 * the SQLSTATE as native code and returns the mapped status.
 */
int pga_exec(PGresult **res, const pga_op *o, PGconn *conn, const char *what, const char *sql,
	     int nparams, const char *const *params);

/** Like pga_exec but reports nothing: *sqlstate (static or in *res) and the
 * status are returned for the caller to decide. */
int pga_exec_quiet(PGresult **res, const char **sqlstate, const pga_op *o, PGconn *conn,
		   const char *sql, int nparams, const char *const *params);

/** Map a SQLSTATE to an envdb status. */
int pga_status_of_sqlstate(const char *sqlstate);

/** Quote an identifier with PQescapeIdentifier into `out` (PGA_QID_MAX). */
int pga_qid(char *out, const pga_op *o, PGconn *conn, const char *name);

/** Quote a literal with PQescapeLiteral into `out` (`cap` bytes). */
int pga_qlit(char *out, size_t cap, const pga_op *o, PGconn *conn, const char *value);

/** snprintf into `out`; ENVDB_ERR_GENERIC (reported) on truncation. */
int pga_sql(char *out, size_t cap, const pga_op *o, const char *fmt, ...) ENVDB_PRINTF(4, 5);

/** BEGIN / COMMIT; ROLLBACK reports nothing. */
int pga_begin(const pga_op *o, PGconn *conn);
int pga_commit(const pga_op *o, PGconn *conn);
void pga_rollback(const pga_op *o, PGconn *conn);

/** Start undoing: extend the deadline by PGA_CLEANUP_GRACE_MS; end it. */
void pga_cleanup_begin(pga *a);
void pga_cleanup_end(pga *a);

/** Privileges of the admin role (current_user). */
typedef struct pga_admin_privs {
	int superuser, createdb, createrole;
} pga_admin_privs;
int pga_admin_privileges(pga_admin_privs *p, const pga_op *o, PGconn *conn);

/* database.c --------------------------------------------------------------- */

int pga_database_name(void *instance, const char *environment_id, envdb_buffer *name);
int pga_create(void *instance, const envdb_create_request *req, envdb_buffer *url,
	       envdb_buffer *metadata);
int pga_drop(void *instance, const envdb_db_ref *db);
int pga_list(void *instance, envdb_adapter_list_cb cb, void *cb_ctx);
/** ABI 1.1: NOLOGIN for every login role of the database that can log in
 * (its comment gets " suspended"), sessions ended; resume gives LOGIN back
 * to exactly the roles so marked. */
int pga_suspend(void *instance, const envdb_db_ref *db);
int pga_resume(void *instance, const envdb_db_ref *db);

/** Does the database of `n` exist, and is it ours: marked, or (a create
 * interrupted before its COMMENT) owned by the administrator with a marked
 * owner group role? */
int pga_db_lookup(int *exists, int *ours, const pga_op *o, PGconn *conn, const pga_names *n);

/** The roles of the database of `n` that this plugin made (marker and name
 * checked): every group and login role that exists.  *res holds rows
 * (rolname, rolcanlogin, description); `keep[i]` says whether row i is one
 * of ours.  Roles with our names but without our marker are skipped (and
 * counted in *foreign). */
int pga_find_roles(PGresult **res, const pga_op *o, PGconn *conn, const pga_names *n);
/** True when row `i` of a pga_find_roles() result is one of ours. */
int pga_role_row_is_ours(PGresult *res, int i, const pga_names *n);

/** Let the admin terminate the sessions of `role` (grant membership when
 * it is not a superuser), then terminate them. */
int pga_terminate_role_sessions(const pga_op *o, PGconn *conn, const char *role, int superuser);

/* credential.c ------------------------------------------------------------- */

int pga_mint(void *instance, const envdb_db_ref *db, const envdb_mint_request *req,
	     envdb_buffer *secret, envdb_buffer *handle);
int pga_revoke(void *instance, const envdb_db_ref *db, uint32_t authorization, const char *handle);
int pga_probe(void *instance, const envdb_db_ref *db, const char *secret, size_t secret_len);

#endif /* ENVDB_PG_ADAPTER_H */
