/*
 * core/store_sqlite_backup.c — the backup and restore operations of the
 * SQLite store backend (envdb_backup() and envdb_restore() in store.c call
 * them): a consistent copy of the control-plane file through SQLite's
 * online backup API, and putting one back in place.
 *
 * Why not `cp`: a copy of the file and its -wal taken while a writer
 * commits can be torn.  sqlite3_backup_step(-1) copies every page inside
 * one read transaction; in WAL mode writers go on meanwhile, and the copy
 * is the state of one instant.
 *
 * Files are never half-written under their final name: each copy goes to a
 * temporary file in the same directory, is fsync'ed, then link()ed (backup:
 * never overwrites) or rename()d (restore) into place, and the directory is
 * fsync'ed.
 *
 * Restore replaces a control plane only when no process has it open.
 * SQLite locks byte ranges of the database file (os_unix.c): a connection
 * holds a read lock on the SHARED range for as long as it has a WAL
 * database open, so a write lock on [PENDING_BYTE, PENDING_BYTE + 512)
 * succeeds only when nobody uses the file, and keeps newcomers out (they
 * see SQLITE_BUSY) while the files are swapped.  POSIX locks do not
 * conflict within one process, and closing any descriptor of a file drops
 * every lock the process holds on it: so the stores this process has open
 * are tracked here (envdbi_sqlite_track), and a restore over one of them is
 * refused before the file is even opened.  A restore must not run while
 * another thread of the process opens the same control plane.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "internal.h"
#include "store_sqlite.h"

#define SQLITE_PENDING_BYTE 0x40000000 /* os_unix.c: PENDING, RESERVED, SHARED */
#define SQLITE_LOCK_BYTES 512
#define BACKUP_BUSY_RETRIES 500        /* 10 ms each: 5 s */

static const char *const envdb_tables[] = {"sys_environment", "sys_environment_database",
					   "sys_database_credential", "sys_environment_member",
					   NULL};

/* The control planes this process has open: backend state, device, inode. */
typedef struct tracked {
	const void *s;
	dev_t dev;
	ino_t ino;
} tracked;

static pthread_mutex_t tracked_lock = PTHREAD_MUTEX_INITIALIZER;
static tracked *tracked_v;
static size_t tracked_n, tracked_cap;

void envdbi_sqlite_track(const void *s, const char *path, bool open)
{
	struct stat st;
	size_t i;

	pthread_mutex_lock(&tracked_lock);
	if (!open) {
		for (i = 0; i < tracked_n; i++)
			if (tracked_v[i].s == s) {
				tracked_v[i] = tracked_v[--tracked_n];
				break;
			}
	} else if (stat(path, &st) == 0) {
		if (tracked_n == tracked_cap) {
			size_t cap = tracked_cap ? 2 * tracked_cap : 8;
			tracked *v = realloc(tracked_v, cap * sizeof(*v));
			if (v != NULL) {
				tracked_v = v;
				tracked_cap = cap;
			}
		}
		if (tracked_n < tracked_cap)
			tracked_v[tracked_n++] = (tracked){s, st.st_dev, st.st_ino};
	}
	pthread_mutex_unlock(&tracked_lock);
}

static bool open_here(const struct stat *st)
{
	bool found = false;
	size_t i;

	pthread_mutex_lock(&tracked_lock);
	for (i = 0; i < tracked_n && !found; i++)
		found = tracked_v[i].dev == st->st_dev && tracked_v[i].ino == st->st_ino;
	pthread_mutex_unlock(&tracked_lock);
	return found;
}

/* The directory of `path` (allocated), "." for a bare name. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static int fsync_path(const char *what, const char *path, bool dir)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
	int rc = ENVDB_OK;

	if (fd < 0 || fsync(fd) != 0)
		rc = envdbi_error(ENVDB_ERR_IO, NULL, "%s: fsync %s: %s", what, path,
				  strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc;
}

/* A new empty temporary file next to `final`, mode 0600 (allocated name). */
static int make_temp(char **out, const char *what, const char *final)
{
	size_t n = strlen(final) + 16;
	char *tmp = malloc(n);
	int fd;

	*out = NULL;
	if (tmp == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", what);
	snprintf(tmp, n, "%s.tmp-XXXXXX", final);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		free(tmp);
		return envdbi_error(ENVDB_ERR_IO, NULL, "%s: cannot create a file next to %s: %s",
				    what, final, strerror(e));
	}
	(void)fchmod(fd, 0600);
	close(fd);
	*out = tmp;
	return ENVDB_OK;
}

static int sql_fail(const char *what, const char *path, sqlite3 *db, const char *op)
{
	int code = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;

	return envdbi_error((code & 0xff) == SQLITE_BUSY ? ENVDB_ERR_BUSY : ENVDB_ERR_IO, NULL,
			    "%s: %s %s: %s", what, op, path, db ? sqlite3_errmsg(db) : "no handle");
}

/* The text of a one-value PRAGMA, into out. */
static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	out[0] = '\0';
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(out, cap, "%s", t ? (const char *)t : "");
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Copy every page of src into the file `tmp` (an empty file), make it a
 * single file (rollback journal), check it and fsync it. */
static int write_copy(const char *what, const char *tmp, sqlite3 *src, const char *src_name)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	char ok[64];
	int rc, step, tries = 0;

	if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		rc = sql_fail(what, tmp, dst, "open");
		goto done;
	}
	b = sqlite3_backup_init(dst, "main", src, "main");
	if (b == NULL) {
		rc = sql_fail(what, src_name, dst, "copy");
		goto done;
	}
	/* -1: every page in one step, so one read transaction: one instant */
	while ((step = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || step == SQLITE_LOCKED) {
		if (++tries > BACKUP_BUSY_RETRIES)
			break;
		sqlite3_sleep(10);
	}
	if (sqlite3_backup_finish(b) != SQLITE_OK || step != SQLITE_DONE) {
		rc = envdbi_error(step == SQLITE_BUSY || step == SQLITE_LOCKED ? ENVDB_ERR_BUSY
									       : ENVDB_ERR_IO,
				  NULL, "%s: copy %s: %s", what, src_name,
				  step != SQLITE_DONE ? sqlite3_errstr(step) : sqlite3_errmsg(dst));
		goto done;
	}
	if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL) != SQLITE_OK) {
		rc = sql_fail(what, tmp, dst, "set the journal mode of");
		goto done;
	}
	if (pragma_text(dst, "PRAGMA quick_check", ok, sizeof(ok)) != SQLITE_OK ||
	    strcmp(ok, "ok") != 0) {
		rc = envdbi_error(ENVDB_ERR_INTEGRITY, NULL, "%s: the copy of %s fails its check: %s",
				  what, src_name, ok[0] ? ok : sqlite3_errmsg(dst));
		goto done;
	}
	rc = ENVDB_OK;
done:
	if (dst != NULL && sqlite3_close(dst) != SQLITE_OK && rc == ENVDB_OK)
		rc = envdbi_error(ENVDB_ERR_IO, NULL, "%s: close %s", what, tmp);
	if (rc == ENVDB_OK)
		rc = fsync_path(what, tmp, false);
	return rc;
}

int envdbi_sqlite_backup(sqlite3 *db, const char *src_name, const char *path)
{
	static const char what[] = "backup";
	char *tmp = NULL, *dir = NULL;
	struct stat st;
	int rc;

	if (lstat(path, &st) == 0)
		return envdbi_error(ENVDB_ERR_EXISTS, NULL,
				    "backup %s: the file exists; a backup never overwrites one "
				    "(give a new file name)",
				    path);
	if ((dir = dir_of(path)) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "backup: out of memory");
	if ((rc = make_temp(&tmp, what, path)) != ENVDB_OK)
		goto done;
	rc = write_copy(what, tmp, db, src_name);
	if (rc != ENVDB_OK)
		goto done;
	if (link(tmp, path) != 0) {
		rc = envdbi_error(errno == EEXIST ? ENVDB_ERR_EXISTS : ENVDB_ERR_IO, NULL,
				  "backup %s: %s", path,
				  errno == EEXIST ? "the file appeared meanwhile; not overwritten"
						  : strerror(errno));
		goto done;
	}
	(void)unlink(tmp);
	free(tmp);
	tmp = NULL;
	rc = fsync_path(what, dir, true);
done:
	if (tmp != NULL)
		(void)unlink(tmp);
	free(tmp);
	free(dir);
	return rc;
}

/* The backup must be an envdb control plane this library can use. */
static int verify_backup(sqlite3 **out, const char *path)
{
	char ok[256], sql[160];
	sqlite3 *db = NULL;
	int app = 0, version = 0, i, rc;

	*out = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		rc = envdbi_error(ENVDB_ERR_IO, NULL, "restore: cannot open backup %s: %s", path,
				  db ? sqlite3_errmsg(db) : "out of memory");
		goto fail;
	}
	if (pragma_text(db, "PRAGMA application_id", ok, sizeof(ok)) != SQLITE_OK) {
		rc = envdbi_error(ENVDB_ERR_INVALID, NULL,
				  "restore: backup %s is not an SQLite database: %s", path,
				  sqlite3_errmsg(db));
		goto fail;
	}
	app = atoi(ok);
	if (pragma_text(db, "PRAGMA user_version", ok, sizeof(ok)) == SQLITE_OK)
		version = atoi(ok);
	if (app != ENVDBI_APPLICATION_ID || version < 1) {
		rc = envdbi_error(ENVDB_ERR_INVALID, NULL,
				  "restore: backup %s is not an envdb control plane "
				  "(application_id %#x, schema version %d)",
				  path, (unsigned)app, version);
		goto fail;
	}
	if (version > ENVDBI_STORE_VERSION) {
		rc = envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				  "restore: backup %s has schema version %d, newer than this "
				  "libenvdb supports (%d): upgrade envdb",
				  path, version, ENVDBI_STORE_VERSION);
		goto fail;
	}
	for (i = 0; envdb_tables[i] != NULL; i++) {
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'",
			 envdb_tables[i]);
		if (pragma_text(db, sql, ok, sizeof(ok)) != SQLITE_OK || strcmp(ok, "1") != 0) {
			rc = envdbi_error(ENVDB_ERR_INVALID, NULL,
					  "restore: backup %s has no table %s: not an envdb "
					  "control plane",
					  path, envdb_tables[i]);
			goto fail;
		}
	}
	if (pragma_text(db, "PRAGMA integrity_check(1)", ok, sizeof(ok)) != SQLITE_OK ||
	    strcmp(ok, "ok") != 0) {
		rc = envdbi_error(ENVDB_ERR_INTEGRITY, NULL,
				  "restore: backup %s fails the integrity check: %s", path,
				  ok[0] ? ok : sqlite3_errmsg(db));
		goto fail;
	}
	*out = db;
	return ENVDB_OK;
fail:
	sqlite3_close(db);
	return rc;
}

/* Lock the SQLite lock bytes of the existing control plane (see the head
 * of this file); *fd keeps the lock until it is closed. */
static int lock_unused(int *fd, const char *target)
{
	struct flock fl = {.l_type = F_WRLCK,
			   .l_whence = SEEK_SET,
			   .l_start = SQLITE_PENDING_BYTE,
			   .l_len = SQLITE_LOCK_BYTES};

	*fd = open(target, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (*fd < 0)
		return envdbi_error(ENVDB_ERR_IO, NULL, "restore: cannot open control plane %s: %s",
				    target, strerror(errno));
	if (fcntl(*fd, F_SETLK, &fl) != 0) {
		int e = errno;
		close(*fd);
		*fd = -1;
		if (e == EAGAIN || e == EACCES)
			return envdbi_error(ENVDB_ERR_BUSY, NULL,
					    "restore: control plane %s is in use (a process has "
					    "it open): stop what uses it and retry",
					    target);
		return envdbi_error(ENVDB_ERR_IO, NULL, "restore: cannot lock control plane %s: %s",
				    target, strerror(e));
	}
	return ENVDB_OK;
}

/* Remove PATH-wal, PATH-shm and PATH-journal: left next to the restored
 * file, SQLite would replay them into it. */
static int remove_companions(const char *target)
{
	static const char *const suffix[] = {"-wal", "-shm", "-journal"};
	char p[PATH_MAX];
	size_t i;

	for (i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		if (snprintf(p, sizeof(p), "%s%s", target, suffix[i]) >= (int)sizeof(p))
			return envdbi_error(ENVDB_ERR_INVALID, NULL, "restore: path too long: %s",
					    target);
		if (unlink(p) != 0 && errno != ENOENT)
			return envdbi_error(ENVDB_ERR_IO, NULL, "restore: cannot remove %s: %s", p,
					    strerror(errno));
	}
	return ENVDB_OK;
}

int envdbi_sqlite_restore(const envdbi_store_config *cfg, const char *backup_path, unsigned flags)
{
	static const char what[] = "restore";
	const char *target;
	char *tmp = NULL, *dir = NULL;
	sqlite3 *src = NULL;
	envdbi_store *s = NULL;
	struct stat st;
	bool exists;
	int rc, lock_fd = -1;

	target = cfg->path;
	if (target == NULL || strcmp(target, ":memory:") == 0)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "restore: the manifest names no control-plane file");
	exists = lstat(target, &st) == 0;
	if (exists && !(flags & ENVDB_RESTORE_FORCE))
		return envdbi_error(ENVDB_ERR_EXISTS, NULL,
				    "restore: control plane %s exists; it is replaced only with "
				    "--force (and only when no process has it open)",
				    target);
	if (exists && open_here(&st))
		return envdbi_error(ENVDB_ERR_BUSY, NULL,
				    "restore: control plane %s is in use (this process has it "
				    "open): close it and retry",
				    target);
	if ((rc = verify_backup(&src, backup_path)) != ENVDB_OK)
		return rc;
	if ((dir = dir_of(target)) == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "restore: out of memory");
		goto done;
	}
	if ((rc = make_temp(&tmp, what, target)) != ENVDB_OK)
		goto done;
	if ((rc = write_copy(what, tmp, src, backup_path)) != ENVDB_OK)
		goto done;
	if (exists && (rc = lock_unused(&lock_fd, target)) != ENVDB_OK)
		goto done;
	if ((rc = remove_companions(target)) != ENVDB_OK)
		goto done;
	/* no control plane: link, so that one created meanwhile is not replaced */
	if (exists ? rename(tmp, target) != 0 : link(tmp, target) != 0) {
		rc = envdbi_error(errno == EEXIST ? ENVDB_ERR_EXISTS : ENVDB_ERR_IO, NULL,
				  "restore: cannot put the copy in place of %s: %s", target,
				  errno == EEXIST ? "it was created meanwhile (retry with --force)"
						  : strerror(errno));
		goto done;
	}
	if (!exists)
		(void)unlink(tmp);
	free(tmp);
	tmp = NULL;
	if ((rc = fsync_path(what, dir, true)) != ENVDB_OK)
		goto done;
	if (lock_fd >= 0) {
		close(lock_fd); /* the lock was on the replaced file */
		lock_fd = -1;
	}
	/* Open it as every command will: modes, schema version, migrations. */
	rc = envdbi_store_open_path(&s, target, cfg->busy_timeout_ms, cfg->legacy, 0);
	if (rc != ENVDB_OK)
		envdbi_error_prefix("restore: the restored control plane does not open: ");
	envdbi_store_close(s);
done:
	if (lock_fd >= 0)
		close(lock_fd);
	if (tmp != NULL)
		(void)unlink(tmp);
	free(tmp);
	free(dir);
	sqlite3_close(src);
	return rc;
}
