/*
 * core/store_sqlite.h — what the SQLite store backend (store_sqlite.c,
 * store_sqlite_backup.c) offers beyond its operations table: for its own
 * two files and for tests.  Nothing else of libenvdb includes it: the
 * control plane being a file is a property of this backend only.
 */
#ifndef ENVDB_STORE_SQLITE_H
#define ENVDB_STORE_SQLITE_H

#include "store_backend.h"

struct sqlite3;

/** PRAGMA application_id of every envdb control-plane file ("envd"). */
#define ENVDBI_APPLICATION_ID 0x656e7664

/** The status an SQLite result code (primary or extended) stands for when
 * opening the control plane: ENVDB_ERR_INVALID only for a file that is not
 * a database or is damaged (NOTADB, CORRUPT, FORMAT); ENVDB_ERR_BUSY for
 * BUSY and LOCKED; ENVDB_ERR_NOMEM; ENVDB_ERR_IO for everything else
 * (READONLY, CANTOPEN, PERM, IOERR, FULL: a read-only file system, a file
 * or directory the process may not write). */
int envdbi_store_status_of_sqlite(int sqlite_rc);

/** The SQLite connection of a store of this backend with the store's lock
 * held (NULL, and no lock, for a store of another backend);
 * envdbi_store_sqlite_unlock() releases it. */
struct sqlite3 *envdbi_store_sqlite_lock(envdbi_store *s);
void envdbi_store_sqlite_unlock(envdbi_store *s);

/* store_sqlite_backup.c */
/** Record that this process has the control-plane file `path` open under
 * `key` (open) or no longer (!open, path unused): a restore refuses to
 * replace a file the process uses. */
void envdbi_sqlite_track(const void *key, const char *path, bool open);
/** The backup operation: a consistent copy of `db` (the file `src_name`)
 * at `path` (never overwritten). */
int envdbi_sqlite_backup(struct sqlite3 *db, const char *src_name, const char *path);
/** The restore operation (store_backend.h). */
int envdbi_sqlite_restore(const envdbi_store_config *cfg, const char *backup_path,
			  unsigned flags);

#endif /* ENVDB_STORE_SQLITE_H */
