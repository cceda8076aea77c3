/*
 * plugins/sqlite/sqlite_adapter.h — private interfaces between the files of
 * the sqlite adapter plugin (one SQLite file per environment).  Nothing here
 * crosses the plugin boundary: the module is built with hidden visibility
 * and exports only envdb_plugin_entry_v1.
 *
 *   plugin.c    descriptor, configuration, init/fini
 *   names.c     environment id validation, file names, URL and metadata,
 *               which file a db_ref addresses (owned or adopted)
 *   database.c  create, drop, mint, probe, list
 *   trash.c     moving dropped files into the trash directory, purging it
 *   marker.c    the ownership marker env_<hex>.envdb naming the deployment
 */
#ifndef ENVDB_SQLITE_ADAPTER_H
#define ENVDB_SQLITE_ADAPTER_H

#include <limits.h>
#include <stdint.h>

#include <envdb/adapter.h>

/** "env_" + 32 hex digits. */
#define SQLA_NAME_LEN 36
/** Longest file name the plugin makes: name + ".db-journal". */
#define SQLA_FILE_MAX (SQLA_NAME_LEN + 12)
/** Suffixes of the files SQLite keeps next to a database.  Drop removes (or
 * moves) the main file first and these after it, so that an interrupted drop
 * leaves at worst a stale log that makes create refuse, never a database
 * that opens fine but lost the transactions still in its log. */
#define SQLA_N_SIDE_FILES 3
extern const char *const sqla_side_suffixes[SQLA_N_SIDE_FILES];

/** The plugin instance.  Immutable after init, so calls may run
 * concurrently (the plugin declares ENVDB_PLUGIN_THREAD_SAFE). */
typedef struct sqla {
	const envdb_host *host;  /* borrowed from the host until fini */
	char *base_dir;          /* absolute, no trailing slash (host->alloc) */
	int base_fd;             /* O_DIRECTORY descriptor of base_dir */
	char *trash_dir;         /* absolute, or NULL without a trash (host->alloc) */
	int trash_fd;            /* -1 without a trash */
	int64_t grace_seconds;   /* how long dropped files stay in the trash */
	int busy_timeout_ms;     /* for the connections the plugin opens */
} sqla;

/* names.c ------------------------------------------------------------------ */

/** Derive "env_<32 lowercase hex>" from a UUID (either case, with dashes).
 * `name` has SQLA_NAME_LEN + 1 bytes.  ENVDB_ERR_INVALID (reported, naming
 * `op`) when the id is not a UUID. */
int sqla_name_from_id(char *name, const sqla *a, const char *op, const char *environment_id);

/** True when `s` is exactly a name the plugin derives ("env_" + 32 lowercase
 * hex digits). */
int sqla_name_is_valid(const char *s);

/** Work out which database a db_ref addresses: from its environment id
 * (checked against database_name when both are given), or from its
 * database_name alone (how reconcile drops an orphan).  `name` has
 * SQLA_NAME_LEN + 1 bytes. */
int sqla_name_from_ref(char *name, const sqla *a, const char *op, const envdb_db_ref *db);

/** The file an operation works on.  An *owned* database is
 * <base_dir>/<name>.db.  An *adopted* one — a v4 database the migration
 * registered under its legacy name (README.md, "Adopted databases") — is
 * the file its "file:" URL names, addressed through a descriptor of its
 * directory, which must be given as a canonical absolute path (no symbolic
 * link, "." or ".." on the way); the file itself is never followed either. */
typedef struct sqla_target {
	/** owned: the database name; adopted: the name derived from the
	 * environment id (it names the trash entry of a drop) */
	char name[SQLA_NAME_LEN + 1];
	const char *label;    /**< the database name for messages (borrowed) */
	int adopted;          /**< 1 for an adopted database */
	int dir_fd;           /**< base_fd (not owned), or the adopted directory's
			           (owned; -1 when that directory does not exist) */
	const char *dir;      /**< base_dir, or dir_buf */
	char dir_buf[PATH_MAX];
	char file[NAME_MAX + 1]; /**< main file name inside dir */
	char path[PATH_MAX];  /**< dir/file */
} sqla_target;

/** Resolve a db_ref to its file: an owned database as sqla_name_from_ref(),
 * an adopted one when environment_id and database_name disagree, the
 * metadata has a "migrated_from" object and the URL is "file:" + an
 * absolute path.  ENVDB_ERR_INVALID (reported) for anything else.  Release
 * with sqla_target_close(). */
int sqla_target_from_ref(sqla_target *t, const sqla *a, const char *op, const envdb_db_ref *db);
void sqla_target_close(sqla_target *t);

/** Fill t for the owned database `name` (a valid name). */
void sqla_target_owned(sqla_target *t, const sqla *a, const char *name);

/** Name of the main file (i = -1) or of side file i (0 <= i <
 * SQLA_N_SIDE_FILES) of a target; `out` has NAME_MAX + 1 bytes. */
void sqla_target_file(char *out, const sqla_target *t, int i);

/** Copy `s` into a new string from host->alloc; NULL when out of memory. */
char *sqla_strdup(const sqla *a, const char *s);

/** True when every byte of a path can appear verbatim both in a JSON string
 * and in a SQLite "file:" URI (printable ASCII except `"`, `\`, `?`, `#`,
 * `%`), so that neither ever needs escaping. */
int sqla_path_is_plain(const char *path);

/** Name of a SQLite result code for the native_code of an error report
 * ("SQLITE_BUSY"); static. */
const char *sqla_sqlite_code_name(int rc);

/* trash.c ------------------------------------------------------------------ */

/** Move the files of a target into a new directory of the trash, named
 * after t->name; they are stored as <t->name>.db[-wal|-shm|-journal] (an
 * adopted database's files are renamed so, and purged like any other).
 * Files that do not exist are skipped; nothing to move is success. */
int sqla_trash_move(const sqla *a, const sqla_target *t);

/** Remove trash entries older than grace_seconds.  Failures are logged as
 * warnings, never returned: purging is housekeeping. */
void sqla_trash_purge(const sqla *a);

/* marker.c ----------------------------------------------------------------- */

/** Whose a database file is, by its marker. */
enum sqla_owner {
	SQLA_OWNER_NONE = 0, /**< no marker (an earlier envdb), or one naming no deployment */
	SQLA_OWNER_MINE,     /**< the marker names this deployment */
	SQLA_OWNER_OTHER     /**< the marker names another deployment */
};

/** The deployment id to work for: `given` (from a request or db_ref) or the
 * host's (host->deployment_id, ABI 1.1); NULL when neither is a UUID (a 1.0
 * host, or one without a control plane: then markers are neither written
 * nor consulted, as before deployment ids). */
const char *sqla_deployment(const sqla *a, const char *given);
/** The same from a db_ref (its deployment_id when its size covers it). */
const char *sqla_ref_deployment(const sqla *a, const envdb_db_ref *db);

/** Write the marker of database `name` atomically (a symbolic link made
 * under a temporary name, renamed; nothing synced: the caller's fsync of
 * base_dir makes it durable, text included). */
int sqla_marker_write(const sqla *a, const char *name, const char *environment_id,
		      const char *deployment_id);

/** Read the marker of database `name` against `deployment_id` (may be NULL:
 * then any deployment named is OTHER).  `other` (37 bytes, may be NULL)
 * receives the deployment an OTHER marker names. */
int sqla_marker_read(enum sqla_owner *owner, char other[37], const sqla *a, const char *name,
		     const char *deployment_id);

/** Remove the marker of `name`; missing is fine. */
int sqla_marker_remove(const sqla *a, const char *name, const char *op);

/* database.c --------------------------------------------------------------- */

int sqla_database_name(void *instance, const char *environment_id, envdb_buffer *name);
int sqla_create(void *instance, const envdb_create_request *req, envdb_buffer *url,
		envdb_buffer *metadata);
int sqla_drop(void *instance, const envdb_db_ref *db);
int sqla_mint(void *instance, const envdb_db_ref *db, const envdb_mint_request *req,
	      envdb_buffer *secret, envdb_buffer *handle);
int sqla_probe(void *instance, const envdb_db_ref *db, const char *secret, size_t secret_len);
int sqla_list(void *instance, envdb_adapter_list_cb cb, void *cb_ctx);

#endif /* ENVDB_SQLITE_ADAPTER_H */
