/*
 * core/store_backend.h — the seam under the control-plane store: the
 * operations table a store backend implements (in the manner of sqlite3_vfs
 * or libgit2's git_odb_backend), and the SQL text the SQL backends share.
 *
 * Layers (bottom up):
 *   schema.c          the object definitions: pure data and data helpers
 *   store_sql.c       SQL text shared by the SQL backends: the statement
 *                     texts by id, the SELECT/INSERT/UPDATE builders over
 *                     the definitions and the DDL generator, with a small
 *                     dialect struct (type names, CHECK expressions,
 *                     trigger syntax, placeholder style ?N or $N)
 *   store_sqlite*.c   the SQLite backend (the embedded default)
 *   store_pg*.c       the PostgreSQL backend (issue 16 §2)
 *   store.c           backend-neutral: the typed functions of store.h,
 *                     validation, defaults, record labels, the messages of
 *                     a refused write, compare-and-set, the store's lock
 *                     and transaction depth.  No SQL, no driver header.
 * Only the backend files contain SQL or include a driver header
 * (tests/test_seam.sh fails otherwise).
 *
 * Calling conventions of every operation:
 *   - The neutral layer calls an operation with the store's (recursive)
 *     mutex held, so a backend needs no locking of its own: one backend
 *     state is used by one thread at a time.
 *   - Rows are the record structs of the object definitions (schema.h).
 *     Returned rows are malloc'd (envdbi_record_free()); rows passed in are
 *     borrowed.  A TIME field 0, and an optional INT field 0, is stored as
 *     NULL and read back as 0.  Text fields NULL are NULL.
 *   - Values are bound, never spliced into SQL text (envdbi_bind).
 *     Identifiers (table, column, index, schema names) come from the
 *     definitions or from validated configuration and are always quoted.
 *   - An operation returns 0 or an ENVDB_ERR_* status and then has set the
 *     thread's last error (envdbi_error), composed with
 *     envdbi_store_backend_error() so that every backend words an I/O,
 *     busy or out-of-memory failure the same way — except the three write
 *     operations (insert, update, exec): they classify a failure into
 *     *fail and do NOT set the error; the neutral layer composes the
 *     message ("environment acme/prod: already exists", "...: not found")
 *     from the classification, asking the backend (find_conflict, select)
 *     what the write collided with.
 *
 * Transactions (the contract of every backend):
 *   - begin(b, 0) opens the outermost transaction and takes the control
 *     plane's single WRITE LOCK before it returns: at most one transaction
 *     of all processes on all hosts that use this control plane is open at
 *     a time, and it sees every transaction committed before it.  The whole
 *     control plane is the unit of serialization, not a row or a table:
 *     callers rely on it (core/provision.c reads "is the slug free / is
 *     there a default" and then inserts; core/credential.c reads the active
 *     credential and then swaps it), so a backend must not weaken it to
 *     row locks or optimistic snapshots.  SQLite implements it with BEGIN
 *     IMMEDIATE; PostgreSQL with a transaction-scoped advisory lock (or a
 *     table lock on one row of the backend's own) taken right after BEGIN.
 *   - begin() waits for the lock at most busy_timeout_ms (configuration),
 *     retrying with a randomized 2-10 ms pause, then fails with
 *     ENVDB_ERR_BUSY; nothing is open then.
 *   - begin(b, depth > 0) opens a nested level (a savepoint named
 *     envdbi_sp<depth>); commit(b, depth) closes level `depth` (1 = the
 *     outermost: the commit); rollback(b, depth) undoes level `depth` only
 *     (an outer level stays usable).  A commit that fails has rolled its
 *     level back before it returns.  rollback() never fails and is safe
 *     after a failed commit.
 *   - A write refused by a constraint (fail kind UNIQUE ... CONSTRAINT)
 *     changes nothing and leaves the open transaction usable (a backend
 *     whose server aborts the whole transaction on an error, as PostgreSQL
 *     does, wraps each write of an open transaction in a savepoint of its
 *     own).
 *   - Transient conflicts (SQLite BUSY/LOCKED; PostgreSQL serialization
 *     failure 40001 and deadlock 40P01) are retried by the backend with the
 *     same pause and bound for begin() and commit() and for a statement
 *     that runs outside a transaction; inside an open transaction they are
 *     reported (ENVDB_ERR_BUSY, fail kind BUSY): only the caller could
 *     re-run its transaction, and with the write lock above they cannot
 *     occur between envdb writers anyway.
 *   - A statement outside a transaction (depth 0) is atomic on its own and
 *     reads committed data.
 *   - A connection lost while a transaction is open is ENVDB_ERR_IO ("...:
 *     connection lost ...", fail kind CONNECTION_LOST): the server has
 *     rolled the transaction back, so nothing of it is half-done; every
 *     further operation of that transaction fails the same way until the
 *     caller's rollback() closes it.  A backend may reconnect at the next
 *     begin(b, 0) or statement at depth 0.  A commit whose outcome is
 *     unknown (the connection dropped during COMMIT) is ENVDB_ERR_IO too,
 *     saying so.
 */
#ifndef ENVDB_STORE_BACKEND_H
#define ENVDB_STORE_BACKEND_H

#include "internal.h"
#include "schema.h"
#include "store.h"

/** The state of one open store of a backend (opaque to the neutral layer). */
typedef struct envdbi_store_backend envdbi_store_backend;

/** A value bound to a statement parameter: text (s, NULL is SQL NULL) or a
 * 64-bit integer (is_int). */
typedef struct envdbi_bind {
	const char *s;
	int64_t i;
	bool is_int;
} envdbi_bind;
#define ENVDBI_BT(x) ((envdbi_bind){(x), 0, false})
#define ENVDBI_BI(x) ((envdbi_bind){NULL, (x), true})

/** What the manifest says about the control plane (borrowed for open). */
typedef struct envdbi_store_config {
	const char *driver;      /**< "sqlite" or "postgresql" */
	const char *path;        /**< sqlite: the file (":memory:" for tests) */
	const char *conninfo;    /**< postgresql: libpq conninfo (a secret: never in
				      a message or a log), read by the neutral layer
				      from conninfo_file / conninfo_env */
	const char *schema;      /**< postgresql: schema name (validated identifier,
				      default "envdb"); a backend may SET
				      search_path to it so that the shared SQL
				      text stays unqualified */
	int64_t busy_timeout_ms; /**< bound of every wait and retry (> 0) */
	bool legacy;             /**< register the legacy objects */
} envdbi_store_config;

/** What open() and snapshot() report about the store they opened. */
typedef struct envdbi_store_info {
	int version;                  /**< schema version (ENVDBI_STORE_VERSION) */
	char deployment_id[37];       /**< see envdbi_store_deployment_id() */
	int64_t deployment_created_at;
	bool snapshot;                /**< a private copy (ENVDB_OPEN_SNAPSHOT) */
} envdbi_store_info;

/** How a write (or any statement) failed, neutrally. */
typedef enum envdbi_store_fail_kind {
	ENVDBI_FAIL_NONE = 0,
	ENVDBI_FAIL_UNIQUE,          /**< a UNIQUE index (ENVDB_ERR_EXISTS) */
	ENVDBI_FAIL_PRIMARY,         /**< the primary key (ENVDB_ERR_EXISTS) */
	ENVDBI_FAIL_FOREIGN_KEY,     /**< a reference names no row (NOT_FOUND) */
	ENVDBI_FAIL_CHECK,           /**< a CHECK constraint (ENVDB_ERR_INVALID) */
	ENVDBI_FAIL_NOT_NULL,        /**< NOT NULL (ENVDB_ERR_INVALID) */
	ENVDBI_FAIL_IMMUTABLE,       /**< the immutability trigger (INVALID) */
	ENVDBI_FAIL_CONSTRAINT,      /**< another constraint (ENVDB_ERR_INVALID) */
	ENVDBI_FAIL_BUSY,            /**< locked / serialization beyond the bound */
	ENVDBI_FAIL_CONNECTION_LOST, /**< ENVDB_ERR_IO, transaction gone */
	ENVDBI_FAIL_IO,              /**< any other failure (ENVDB_ERR_IO) */
	ENVDBI_FAIL_NOMEM
} envdbi_store_fail_kind;

typedef struct envdbi_store_fail {
	envdbi_store_fail_kind kind;
	char native[16];   /**< the driver's code as text ("2067", "23505") */
	char message[256]; /**< the driver's message (no secret, no value of a
			      ciphertext field) */
} envdbi_store_fail;

/** Fill *f (kind, native code, message; message may be NULL). */
void envdbi_store_fail_set(envdbi_store_fail *f, envdbi_store_fail_kind kind, const char *native,
			   const char *message);

/** Set the thread's error for failure `f` of operation `what` on the
 * control plane described as `desc` and return the status, worded alike
 * for every backend: BUSY "control plane D: W: locked by another process
 * beyond the busy timeout (N ms)", NOMEM "...: out of memory",
 * CONNECTION_LOST "...: connection lost (...)", else ENVDB_ERR_IO
 * "control plane D: W: MESSAGE". */
int envdbi_store_backend_error(const char *desc, int64_t busy_timeout_ms,
			       const envdbi_store_fail *f, const char *what);

/* ------------------------------------------------------------------------ */
/* Operation ids: what the neutral layer asks for, never SQL text            */
/* ------------------------------------------------------------------------ */

/** Row queries of select(): the rows of one object, as records.  Binds in
 * the order listed.  In the *_LIST queries a text bind NULL, or an integer
 * bind 0, does not filter.  Every order is by byte value (SQLite's BINARY
 * collation; a PostgreSQL backend declares its text columns COLLATE "C"):
 * callers such as envdb check merge lists sorted with strcmp. */
typedef enum envdbi_query {
	ENVDBI_Q_BY_ID = 0,     /**< any object: id = ?1 (0 or 1 row) */
	ENVDBI_Q_ALL,           /**< any object: every row, by id */
	ENVDBI_Q_ENV_BY_SLUG,   /**< organization_id, slug */
	ENVDBI_Q_ENV_DEFAULT,   /**< organization_id: is_default = 1 and status
				     not archived/failed */
	ENVDBI_Q_ENV_LIST,      /**< organization_id, status, lease_expired_at
				     (0 < lease_expires_at <= it), delete_due_at
				     (0 < delete_after <= it); by org, slug */
	ENVDBI_Q_DB_BY_ENV,     /**< environment_id */
	ENVDBI_Q_DB_BY_NAME,    /**< database_name */
	ENVDBI_Q_DB_LIST,       /**< (none): by database_name */
	ENVDBI_Q_CRED_ACTIVE,   /**< environment_database_id, authorization */
	ENVDBI_Q_CRED_LIST,     /**< environment_database_id, authorization,
				     status, expired_at (0 < expires_at <= it);
				     by database, created_at, id */
	ENVDBI_Q_MEMBER_GET,    /**< environment_id, user_id */
	ENVDBI_Q_MEMBER_LIST,   /**< environment_id; by environment, user */
	ENVDBI_Q_TENANT_LIST,   /**< organization_id; by org, database_name */
	ENVDBI_Q_TENANT_PENDING, /**< after_org (text, "" = from the first),
				      max_orgs (int): rows not migrated of the
				      next max_orgs organizations; by org,
				      created_at, id */
	ENVDBI_Q_PACKAGE_LIST,  /**< tenant_id; by tenant, package */
	ENVDBI_Q__N
} envdbi_query;

/** Statements without result rows of exec(); *changes = rows changed. */
typedef enum envdbi_stmt {
	ENVDBI_S_ENV_ACTIVATE = 0, /**< id, now: provisioning -> active, pending
				        fields and lease cleared (CAS on status) */
	ENVDBI_S_ENV_DELETE,       /**< id (cascades) */
	ENVDBI_S_DB_TOUCH,         /**< when, id: last_accessed_at */
	ENVDBI_S_MEMBER_DELETE,    /**< environment_id, user_id */
	ENVDBI_S_PACKAGE_REPOINT,  /**< to_tenant, now, from_tenant */
	ENVDBI_S_TENANT_ARCHIVE,   /**< environment_id, now, id (CAS: not migrated) */
	ENVDBI_S_TENANT_WIPE_TOKEN, /**< now, id, environment_id (CAS: migrated to it) */
	ENVDBI_S__N
} envdbi_stmt;

/** One row of integers of ints(). */
typedef enum envdbi_ints {
	ENVDBI_I_ENV_ORG_EXISTS = 0,      /**< organization_id -> 1 column, 0/1 */
	ENVDBI_I_TENANT_ORG_HAS_MIGRATED, /**< organization_id -> 0/1 */
	ENVDBI_I_LEGACY_OPEN,             /**< -> 0/1: a legacy active/suspended
					       row is not migrated */
	ENVDBI_I_LEGACY_ANY,              /**< -> 0/1: a legacy row exists */
	ENVDBI_I_LEGACY_COUNTS,           /**< -> 7 columns: the members of
					       envdbi_legacy_counts in order */
	ENVDBI_I__N
} envdbi_ints;

/** Lists of strings of strings(), sorted by strcmp (binary collation);
 * binds: after_org (text, "" = from the first), upto_org: the legacy rows
 * not migrated of the organizations in (after_org, upto_org]. */
typedef enum envdbi_strings {
	ENVDBI_L_PACKAGE_TENANTS_PENDING = 0, /**< their ids installations point at */
	ENVDBI_L_DB_NAMES_TAKEN_PENDING,      /**< their names an env database has */
	ENVDBI_L_ENV_ORGS_PENDING,            /**< their orgs having an environment */
	ENVDBI_L__N
} envdbi_strings;

/* ------------------------------------------------------------------------ */
/* The operations table                                                      */
/* ------------------------------------------------------------------------ */

typedef struct envdbi_store_backend_ops {
	/** The manifest's driver name: "sqlite", "postgresql". */
	const char *name;

	/** Open (connect), check that it is an envdb control plane, apply the
	 * pending migrations of the backend's schema (in one write
	 * transaction, re-reading the version after taking the lock), create
	 * the legacy objects when cfg->legacy, read the deployment id (made by
	 * the migration that introduced it: a random UUID, never changed) and
	 * fill *info.  flags: ENVDB_OPEN_CREATE (make it when missing, else
	 * ENVDB_ERR_NOT_FOUND "... not initialised (run envdb init)"),
	 * ENVDB_OPEN_SNAPSHOT (a private read-only copy).  A schema newer than
	 * ENVDBI_STORE_VERSION: ENVDB_ERR_NOT_SUPPORTED, nothing changed;
	 * something that is not an envdb control plane: ENVDB_ERR_INVALID. */
	int (*open)(envdbi_store_backend **out, const envdbi_store_config *cfg, unsigned flags,
		    envdbi_store_info *info);
	/** Close; an open transaction is rolled back.  NULL allowed. */
	void (*close)(envdbi_store_backend *b);
	/** How messages name this control plane: the file path, or
	 * "postgresql://HOST:PORT/DB schema S" — never a password.  Owned by b. */
	const char *(*describe)(const envdbi_store_backend *b);

	/* Transactions: see the contract above. */
	int (*begin)(envdbi_store_backend *b, int depth);
	int (*commit)(envdbi_store_backend *b, int depth);
	void (*rollback)(envdbi_store_backend *b, int depth);

	/** Rows of `o` by query id (*rows NULL when *n is 0). */
	int (*select)(envdbi_store_backend *b, const envdbi_object_def *o, envdbi_query q,
		      const envdbi_bind *v, size_t nv, void ***rows, size_t *n);
	/** Insert one complete row (defaults applied and validated by the
	 * caller) with every field.  The hot path: keep its statement
	 * prepared. */
	int (*insert)(envdbi_store_backend *b, const envdbi_object_def *o, const void *rec,
		      envdbi_store_fail *fail);
	/** Overwrite every mutable field of the row with rec's primary key
	 * (the immutable ones are not written). */
	int (*update)(envdbi_store_backend *b, const envdbi_object_def *o, const void *rec,
		      envdbi_store_fail *fail);
	/** Run statement `s`; *changes (may be NULL) = rows changed. */
	int (*exec)(envdbi_store_backend *b, envdbi_stmt s, const envdbi_bind *v, size_t nv,
		    int64_t *changes, envdbi_store_fail *fail);
	/** One row of `ncols` integers; `what` names the look-up in a message. */
	int (*ints)(envdbi_store_backend *b, envdbi_ints q, const envdbi_bind *v, size_t nv,
		    int64_t *out, size_t ncols, const char *what);
	/** A list of strings (free with envdbi_store_strings_free()). */
	int (*strings)(envdbi_store_backend *b, envdbi_strings q, const envdbi_bind *v, size_t nv,
		       char ***out, size_t *n, const char *what);

	/** After a UNIQUE/PRIMARY failure: the stored row, other than rec's
	 * own id, that shares rec's key in unique index `ix` (only when rec
	 * satisfies ix->where, evaluated on rec's values), into *other (NULL:
	 * none).  Returns 0 or a status. */
	int (*find_conflict)(envdbi_store_backend *b, const envdbi_object_def *o,
			     const envdbi_index_def *ix, const void *rec, void **other);

	/** store.h envdbi_store_resolve_get(): one statement, one snapshot.
	 * ENVDB_ERR_NOT_FOUND without setting the error when there is no such
	 * environment. */
	int (*resolve_get)(envdbi_store_backend *b, envdbi_resolve_row **out, const char *org,
			   const char *slug, const char *user, int64_t now);

	/* envdb check: store.h envdbi_store_find_duplicates() /
	 * _find_dangling() / _verify_schema() (the legacy objects only when
	 * `legacy`; the deployment table is the backend's own business). */
	int (*find_duplicates)(envdbi_store_backend *b, const envdbi_object_def *o,
			       const envdbi_index_def *ix, envdbi_dup_cb cb, void *cb_ctx);
	int (*find_dangling)(envdbi_store_backend *b, const envdbi_object_def *o,
			     envdbi_dangling_cb cb, void *cb_ctx);
	int (*verify_schema)(envdbi_store_backend *b, bool legacy, envdbi_schema_problem_cb cb,
			     void *cb_ctx);

	/* Optional (NULL: ENVDB_ERR_NOT_SUPPORTED, or nothing to do): */
	/** A private in-memory copy of src (dry runs). */
	int (*snapshot)(envdbi_store_backend **out, envdbi_store_backend *src,
			envdbi_store_info *info);
	/** store.h envdbi_store_bulk() (NULL: a no-op). */
	int (*bulk)(envdbi_store_backend *b, bool on, int64_t cache_kib, int64_t wal_pages);
	/** envdb_backup(): a consistent copy at `path`, never overwriting. */
	int (*backup)(envdbi_store_backend *b, const char *path);
	/** envdb_restore(): put backup_path in place of the control plane of
	 * cfg (no backend state: the control plane is not open). */
	int (*restore)(const envdbi_store_config *cfg, const char *backup_path, unsigned flags);
} envdbi_store_backend_ops;

/** The compiled-in backends, NULL-terminated (core/store.c).  A backend
 * registers with one line there (under its configure conditional). */
extern const envdbi_store_backend_ops *const envdbi_store_backends[];
/** Open a store of any backend from explicit configuration (what
 * envdbi_store_open() does after reading the manifest; tests that run
 * against every backend).  cfg is borrowed for the call. */
int envdbi_store_open_config(envdbi_store **out, const envdbi_store_config *cfg, unsigned flags);
/** The backend named `driver` (NULL: "sqlite"), or NULL. */
const envdbi_store_backend_ops *envdbi_store_backend_find(const char *driver);

/** core/store_sqlite.c */
extern const envdbi_store_backend_ops envdbi_store_backend_sqlite;
#ifdef HAVE_STORE_PG
/** core/store_pg.c (configure --with-libpq defines HAVE_STORE_PG) */
extern const envdbi_store_backend_ops envdbi_store_backend_pg;
#endif

/** The backend of an open store and its state (tests, tools, a backend's
 * own extra entry points). */
const envdbi_store_backend_ops *envdbi_store_ops(const envdbi_store *s);
envdbi_store_backend *envdbi_store_state(const envdbi_store *s);
/** Take / release the store's lock (recursive) around a direct use of the
 * backend state outside the operations table. */
void envdbi_store_lock(envdbi_store *s);
void envdbi_store_unlock(envdbi_store *s);

/* ------------------------------------------------------------------------ */
/* Shared SQL text of the SQL backends (core/store_sql.c)                    */
/* ------------------------------------------------------------------------ */

/** What differs between SQL dialects.  Every builder below writes
 * placeholders as `param` followed by the 1-based number (?1 / $1) and
 * leaves table names unqualified (a backend that needs a schema sets its
 * search path).  Some parameters stand where SQL cannot infer a type
 * (matches_where's SELECT p1 AS "id", ...): a backend that needs parameter
 * types takes them from the binds (text or int8) or from the field types
 * (envdbi_ftype_is_text()). */
typedef struct envdbi_sql_dialect {
	const char *name;
	char param;              /**< '?' (SQLite) or '$' (PostgreSQL) */
	const char *text_type;   /**< "TEXT" / "text" */
	const char *int_type;    /**< "INTEGER" / "bigint" */
	const char *is;          /**< null-safe equality: "IS" / "IS NOT DISTINCT FROM" */
	const char *is_not;      /**< "IS NOT" / "IS DISTINCT FROM" */
	const char *group_concat; /**< the aggregate F(text, ',') joining text:
				      "group_concat" / "string_agg" */
	/** The CHECK expression of field f (enum, slug, uuid, bool, positive,
	 * time, json, ciphertext) appended to b; false when f has none (then
	 * nothing is appended).  NULL is allowed by the caller's wrapping. */
	bool (*field_check)(envdbi_strbuf *b, const envdbi_field_def *f);
	/** The DDL statements that refuse a change of an immutable field of o
	 * (trigger "<table>_immutable"), appended to b; o has at least one. */
	void (*immutable_guard)(envdbi_strbuf *b, const envdbi_object_def *o);
} envdbi_sql_dialect;

/** SQLite's dialect (core/store_sql.c). */
extern const envdbi_sql_dialect envdbi_sql_dialect_sqlite;

/* Builders: append to b (check b->failed once at the end). */
/** "c1", "c2", ... every field of o in definition order. */
void envdbi_sql_columns(envdbi_strbuf *b, const envdbi_object_def *o);
/** SELECT <every column> FROM "table" + the WHERE/ORDER BY of query q with
 * the binds it uses copied, in parameter order, to used[0..*nused) (room
 * for nv; the filters of a *_LIST query that do not filter are left out). */
int envdbi_sql_query(envdbi_strbuf *b, const envdbi_sql_dialect *d, const envdbi_object_def *o,
		     envdbi_query q, const envdbi_bind *v, size_t nv, envdbi_bind *used,
		     size_t *nused);
/** INSERT INTO "table" (every column) VALUES (p1..pn), fields in order. */
void envdbi_sql_insert(envdbi_strbuf *b, const envdbi_sql_dialect *d, const envdbi_object_def *o);
/** UPDATE "table" SET <mutable fields in order> = p1.. WHERE pk = p(k+1). */
void envdbi_sql_update(envdbi_strbuf *b, const envdbi_sql_dialect *d, const envdbi_object_def *o);
/** The conflicting row of ix: params p1 = rec's id, p2.. = ix's columns;
 * every column of o; includes ix->where. */
void envdbi_sql_conflict(envdbi_strbuf *b, const envdbi_sql_dialect *d,
			 const envdbi_object_def *o, const envdbi_index_def *ix);
/** One row when rec's values (params p1..pn, fields in order) satisfy
 * ix->where. */
void envdbi_sql_matches_where(envdbi_strbuf *b, const envdbi_sql_dialect *d,
			      const envdbi_object_def *o, const envdbi_index_def *ix);
/** find_duplicates: `groups` returns (key text "a/b", col1..colk) of the
 * keys of ix held more than once; `ids` (params p1..pk = a group's
 * columns, null-safe) returns the group's ids joined by ',' in id order. */
void envdbi_sql_duplicates(envdbi_strbuf *groups, envdbi_strbuf *ids,
			   const envdbi_sql_dialect *d, const envdbi_object_def *o,
			   const envdbi_index_def *ix);
/** find_dangling: (id, value) of the rows of o whose REF field f names no
 * row, by id. */
void envdbi_sql_dangling(envdbi_strbuf *b, const envdbi_sql_dialect *d,
			 const envdbi_object_def *o, const envdbi_field_def *f);
/** The fixed statement texts, written with ?N placeholders (portable SQL;
 * rewrite them with envdbi_sql_params() for a '$' dialect). */
const char *envdbi_sql_stmt_text(envdbi_stmt s);
const char *envdbi_sql_ints_text(envdbi_ints q);
const char *envdbi_sql_strings_text(envdbi_strings q);
/** The resolve statement: ?1 org, ?2 slug, ?3 user, ?4 now; columns in the
 * order of envdbi_resolve_row (env id, status, role, db id, driver, name,
 * url, authorization, cred id, ciphertext, handle, expires_at, prev id,
 * ciphertext, handle, expires_at, cred aad_version, prev aad_version). */
extern const char envdbi_sql_resolve[];
/** Copy `sql` to out with every ?N placeholder outside quotes written as
 * `param`N. */
void envdbi_sql_params(envdbi_strbuf *out, const char *sql, char param);
/** Append s as an SQL string literal. */
void envdbi_sql_quote(envdbi_strbuf *b, const char *s);

/* DDL generated from the definitions. */
/** CREATE TABLE/INDEX and the immutability guard of o; *out malloc'd. */
int envdbi_sql_ddl(char **out, const envdbi_sql_dialect *d, const envdbi_object_def *o);
/** ALTER TABLE ADD COLUMN of f, the same column definition as in the
 * CREATE TABLE; *out malloc'd. */
int envdbi_sql_add_column_ddl(char **out, const envdbi_sql_dialect *d, const envdbi_object_def *o,
			      const envdbi_field_def *f);
/** The CHECK expression of a field with NULL allowed for optional fields,
 * or NULL in *out when it has none; *out malloc'd. */
int envdbi_sql_field_check(char **out, const envdbi_sql_dialect *d, const envdbi_field_def *f);

#endif /* ENVDB_STORE_BACKEND_H */
