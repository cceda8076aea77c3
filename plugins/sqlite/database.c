/*
 * plugins/sqlite/database.c — the sqlite adapter's operations: create a
 * database file (never over an existing one), drop it with its side files,
 * mint a random token (SQLite checks none), probe the file with a cheap
 * query, and list the files this plugin owns.  Drop, mint and probe also
 * work on an adopted v4 database (names.c, sqla_target_from_ref).
 *
 * Every file is addressed relative to a directory descriptor (the
 * instance's, or an adopted database's canonical directory) and never
 * through a symbolic link (O_EXCL|O_NOFOLLOW on create, AT_SYMLINK_NOFOLLOW
 * checks and SQLITE_OPEN_NOFOLLOW on open).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "sqlite_adapter.h"

/* Bytes of randomness in a minted token (base64url without padding: 43). */
#define SQLA_TOKEN_BYTES 32
/* The handle of a read-only credential: the URL query with which SQLite
 * opens the database read-only (the host appends it to the URL it hands
 * out).  Full-access credentials have the empty handle. */
#define SQLA_READ_ONLY_HANDLE "?mode=ro"

#ifdef SQLITE_OPEN_EXRESCODE
#define SQLA_OPEN_FLAGS (SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE)
#else
#define SQLA_OPEN_FLAGS (SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW)
#endif

static int sqlite_status(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return ENVDB_ERR_UNAVAILABLE;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return ENVDB_ERR_INTEGRITY;
	case SQLITE_NOMEM:
		return ENVDB_ERR_NOMEM;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_PERM:
	case SQLITE_READONLY:
		return ENVDB_ERR_IO;
	default:
		return ENVDB_ERR_GENERIC;
	}
}

/* Report a SQLite failure on `db` (which may be NULL after a failed open). */
static int sqlite_error(const sqla *a, sqlite3 *db, int rc, const char *op, const char *name)
{
	return a->host->error(a->host->ctx, sqlite_status(rc), sqla_sqlite_code_name(rc),
			      "%s database %s: %s", op, name,
			      db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* Open an existing database file without creating or following anything. */
static int open_db(sqlite3 **out, const sqla *a, const char *op, const sqla_target *t)
{
	int64_t deadline, now;
	int rc, timeout = a->busy_timeout_ms;
	sqlite3 *db = NULL;

	rc = sqlite3_open_v2(t->path, &db, SQLA_OPEN_FLAGS, NULL);
	if (rc != SQLITE_OK) {
		rc = sqlite_error(a, db, rc, op, t->label);
		sqlite3_close(db);
		return rc;
	}
	/* Do not wait on a lock past the operation's deadline. */
	deadline = a->host->deadline_ms(a->host->ctx);
	if (deadline > 0) {
		now = a->host->now_ms(a->host->ctx);
		if (deadline - now < timeout)
			timeout = deadline > now ? (int)(deadline - now) : 0;
	}
	sqlite3_busy_timeout(db, timeout);
	*out = db;
	return ENVDB_OK;
}

/* Run one statement and require its first row's first column to be `want`
 * (or any row when want is NULL). */
static int exec_expect(const sqla *a, sqlite3 *db, const char *sql, const char *want,
		       const char *op, const char *name)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *got;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto sqlfail;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		goto sqlfail;
	if (want != NULL) {
		got = sqlite3_column_text(st, 0);
		if (got == NULL || strcmp((const char *)got, want) != 0) {
			rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
					    "%s database %s: '%s' answered '%s' instead of '%s'",
					    op, name, sql, got ? (const char *)got : "null",
					    want);
			sqlite3_finalize(st);
			return rc;
		}
	}
	sqlite3_finalize(st);
	return ENVDB_OK;
sqlfail:
	rc = sqlite_error(a, db, rc, op, name);
	sqlite3_finalize(st);
	return rc;
}

/* 1 when file `fname` of the target's directory exists (any type), 0 when
 * not, negative (reported) on another error.  Never follows a symbolic
 * link. */
static int file_exists(struct stat *st, const sqla *a, const sqla_target *t, const char *fname,
		       const char *op)
{
	if (t->dir_fd < 0)
		return 0; /* an adopted database whose directory is gone */
	if (fstatat(t->dir_fd, fname, st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL, "%s: cannot stat %s/%s: %s", op,
			      t->dir, fname, strerror(errno));
}

/* Remove the files of a target, main file first (see drop).  Missing files
 * are fine. */
static int unlink_all(const sqla *a, const sqla_target *t, const char *op)
{
	char fname[NAME_MAX + 1];
	int i;

	if (t->dir_fd < 0)
		return ENVDB_OK;
	for (i = -1; i < SQLA_N_SIDE_FILES; i++) {
		sqla_target_file(fname, t, i);
		if (unlinkat(t->dir_fd, fname, 0) != 0 && errno != ENOENT)
			return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
					      "%s database %s: cannot remove %s/%s: %s", op,
					      t->label, t->dir, fname, strerror(errno));
	}
	return ENVDB_OK;
}

int sqla_database_name(void *instance, const char *environment_id, envdb_buffer *out)
{
	const sqla *a = instance;
	char name[SQLA_NAME_LEN + 1];
	int rc;

	rc = sqla_name_from_id(name, a, "database name", environment_id);
	if (rc != ENVDB_OK)
		return rc;
	return envdb_buffer_set(out, name, SQLA_NAME_LEN);
}

/* The file of a freshly created database holds a SQLite header that says
 * WAL (bytes 18 and 19 are 2): the first write and the WAL switch are on
 * disk. */
static int check_header(const sqla *a, const sqla_target *t, const char *name)
{
	static const char magic[16] = "SQLite format 3";
	unsigned char h[100];
	struct stat st;
	ssize_t n;
	int fd, err;

	fd = openat(t->dir_fd, t->file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "create database %s: cannot reopen %s: %s", name, t->path,
				      strerror(errno));
	do
		n = pread(fd, h, sizeof(h), 0);
	while (n < 0 && errno == EINTR);
	err = errno;
	if (n >= 0 && fstat(fd, &st) != 0)
		st.st_size = -1;
	close(fd);
	if (n < 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "create database %s: cannot read back %s: %s", name, t->path,
				      strerror(err));
	if (n < (ssize_t)sizeof(h) || memcmp(h, magic, sizeof(magic)) != 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "create database %s: the first write did not reach %s (it "
				      "holds %lld bytes, no database header): is the disk full?",
				      name, t->path, (long long)st.st_size);
	if (h[18] != 2 || h[19] != 2)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "create database %s: %s is not in wal mode on disk (header "
				      "versions %u/%u)",
				      name, t->path, (unsigned)h[18], (unsigned)h[19]);
	/* Without a journal a short write is not undone: the whole first page
	 * (its size is in the header; 1 stands for 65536) must be there. */
	{
		long page = ((long)h[16] << 8) | h[17];

		if (page == 1)
			page = 65536;
		if (st.st_size < page)
			return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
					      "create database %s: the first write did not reach %s "
					      "whole (it holds %lld of the %ld bytes of its first "
					      "page): is the disk full?",
					      name, t->path, (long long)st.st_size, page);
	}
	return ENVDB_OK;
}

int sqla_create(void *instance, const envdb_create_request *req, envdb_buffer *url,
		envdb_buffer *metadata)
{
	const sqla *a = instance;
	char name[SQLA_NAME_LEN + 1], fname[NAME_MAX + 1];
	char url_s[PATH_MAX + 16], meta_s[PATH_MAX + 64];
	const char *dep;
	sqla_target t;
	struct stat st;
	sqlite3 *db = NULL;
	int fd = -1, created = 0, marked = 0, rc, i;

	if (req == NULL || url == NULL || metadata == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "create database: missing request or output buffer");
	rc = sqla_name_from_id(name, a, "create database", req->environment_id);
	if (rc != ENVDB_OK)
		return rc;
	if (req->database_name != NULL && strcmp(req->database_name, name) != 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "create database %s: requested name does not belong to "
				      "environment %s",
				      name, req->environment_id);
	sqla_target_owned(&t, a, name);
	/* base_dir holds no JSON or URI special character (checked at init). */
	snprintf(url_s, sizeof(url_s), "file:%s", t.path);
	snprintf(meta_s, sizeof(meta_s), "{\"path\":\"%s\",\"journal_mode\":\"wal\"}", t.path);

	/* Check the outputs before touching the disk, so that "too small"
	 * has nothing to undo. */
	url->len = strlen(url_s);
	metadata->len = strlen(meta_s);
	if (url->data == NULL || url->cap <= url->len || metadata->data == NULL ||
	    metadata->cap <= metadata->len)
		return a->host->error(a->host->ctx, ENVDB_ERR_BUFFER_TOO_SMALL, NULL,
				      "create database %s: output buffer too small", name);

	/* A left-over write-ahead log would be replayed into the new file. */
	for (i = 0; i < SQLA_N_SIDE_FILES; i++) {
		sqla_target_file(fname, &t, i);
		rc = file_exists(&st, a, &t, fname, "create database");
		if (rc < 0)
			return rc;
		if (rc > 0)
			return a->host->error(a->host->ctx, ENVDB_ERR_EXISTS, "EEXIST",
					      "create database %s: stale %s/%s exists (left by "
					      "an interrupted drop; drop the database first)",
					      name, a->base_dir, fname);
	}

	/* The marker goes first (marker.c), so the database must not exist
	 * yet: never re-mark someone's file.  It costs no sync of its own: a
	 * symbolic link, made durable, text included, by the fsync of
	 * base_dir below. */
	rc = file_exists(&st, a, &t, t.file, "create database");
	if (rc < 0)
		return rc;
	if (rc > 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_EXISTS, "EEXIST",
				      "create database %s: %s already exists", name, t.path);
	dep = sqla_deployment(a, ENVDB_STRUCT_HAS(req, envdb_create_request, deployment_id)
					 ? req->deployment_id
					 : NULL);
	if (dep != NULL) {
		rc = sqla_marker_write(a, name, req->environment_id, dep);
		if (rc != ENVDB_OK)
			return rc;
		marked = 1;
	}

	fd = openat(a->base_fd, t.file, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;

		if (marked && e != EEXIST)
			(void)sqla_marker_remove(a, name, "create");
		errno = e;
		if (errno == EEXIST)
			return a->host->error(a->host->ctx, ENVDB_ERR_EXISTS, "EEXIST",
					      "create database %s: %s already exists", name,
					      t.path);
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "create database %s: cannot create %s: %s", name, t.path,
				      strerror(errno));
	}
	created = 1;
	/* The umask may have removed bits but never adds any: make it exact. */
	if (fchmod(fd, 0600) != 0) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "create database %s: cannot chmod %s: %s", name, t.path,
				    strerror(errno));
		goto fail;
	}
	close(fd);
	fd = -1;

	rc = open_db(&db, a, "create", &t);
	if (rc != ENVDB_OK)
		goto fail;
	/*
	 * Two syncs make the new file (and its marker) durable: fdatasync of
	 * the file, then fsync of its directory.  On an empty file, "journal_mode=WAL"
	 * writes page 1 (file format 2, so WAL mode persists) in an ordinary
	 * transaction of the current journal mode; through the default
	 * rollback journal under synchronous=FULL that is five syncs
	 * (journal, directory, journal, file, and ours of the directory).
	 * With journal_mode=OFF first, that one write goes straight to the
	 * file and its commit (synchronous=FULL, set explicitly: a build's
	 * default may differ) is the file's one fdatasync; no journal is
	 * created, and no -wal is written (the write happens before the
	 * switch).  Writing without a journal is safe here: nothing knows the
	 * file until create returns, and a crash before that leaves a file
	 * that reconcile drops (or a create that fails and unlinks it).
	 * Then the directory entry: our fsync below.  tests/test_plugin_sqlite
	 * (test_create_syncs) pins the sequence.
	 */
	rc = sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		rc = sqlite_error(a, db, rc, "create", name);
		goto fail;
	}
	rc = exec_expect(a, db, "PRAGMA journal_mode=OFF", "off", "create", name);
	if (rc != ENVDB_OK)
		goto fail;
	rc = exec_expect(a, db, "PRAGMA journal_mode=WAL", "wal", "create", name);
	if (rc != ENVDB_OK)
		goto fail;
	rc = sqlite3_close(db);
	db = NULL;
	if (rc != SQLITE_OK) {
		rc = sqlite_error(a, NULL, rc, "create", name);
		goto fail;
	}
	/* SQLite can answer "wal" and close cleanly although the header never
	 * reached the file (a full disk: the write of page 1 fails and is
	 * not reported), leaving an empty file in rollback mode: read back
	 * what is on disk. */
	if ((rc = check_header(a, &t, name)) != ENVDB_OK)
		goto fail;
	if (fsync(a->base_fd) != 0) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "create database %s: cannot sync directory %s: %s", name,
				    a->base_dir, strerror(errno));
		goto fail;
	}
	envdb_buffer_set(url, url_s, url->len);
	envdb_buffer_set(metadata, meta_s, metadata->len);
	return ENVDB_OK;
fail:
	if (fd >= 0)
		close(fd);
	if (db != NULL)
		sqlite3_close(db);
	if (created && unlink_all(a, &t, "create") == ENVDB_OK && marked)
		(void)sqla_marker_remove(a, name, "create"); /* the first error is reported */
	return rc;
}

/* May drop() remove the owned database of `t`?  With a deployment id
 * (ENVDB_ADAPTER_CAP_DEPLOYMENT): not when its marker names another
 * deployment, and not when it has no marker (made by an earlier envdb, for
 * whichever deployment) and the host names it alone, without an
 * environment (a reconcile orphan): the host has no row for it, so it may
 * be anybody's.  *keep_marker: the marker is another deployment's. */
static int drop_allowed(int *keep_marker, const sqla *a, const sqla_target *t,
			const envdb_db_ref *db, int exists)
{
	const char *dep = sqla_ref_deployment(a, db);
	enum sqla_owner owner;
	char other[37];
	int rc;

	*keep_marker = 0;
	if (t->adopted || dep == NULL)
		return ENVDB_OK;
	rc = sqla_marker_read(&owner, other, a, t->name, dep);
	if (rc != ENVDB_OK)
		return rc;
	if (owner == SQLA_OWNER_OTHER) {
		*keep_marker = 1;
		if (!exists)
			return ENVDB_OK; /* nothing of ours to drop */
		return a->host->error(a->host->ctx, ENVDB_ERR_STATE, NULL,
				      "drop database %s: it belongs to deployment %s, not to this "
				      "one (%s): not dropping it",
				      t->label, other, dep);
	}
	if (owner == SQLA_OWNER_NONE && exists && db->environment_id == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_STATE, NULL,
				      "drop database %s: it carries no deployment marker (made "
				      "by an earlier envdb, maybe for another deployment sharing "
				      "%s) and no row of this deployment names it: not dropping it",
				      t->label, a->base_dir);
	return ENVDB_OK;
}

int sqla_drop(void *instance, const envdb_db_ref *db)
{
	const sqla *a = instance;
	sqla_target t;
	struct stat st;
	int rc, keep_marker = 0;

	rc = sqla_target_from_ref(&t, a, "drop database", db);
	if (rc != ENVDB_OK)
		return rc;
	rc = file_exists(&st, a, &t, t.file, "drop database");
	if (rc < 0)
		goto out;
	{
		int exists = rc;

		if ((rc = drop_allowed(&keep_marker, a, &t, db, exists)) != ENVDB_OK)
			goto out;
		rc = exists;
	}
	if (rc > 0 && !S_ISREG(st.st_mode)) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "drop database %s: refusing to remove %s: not a regular file",
				    t.label, t.path);
		goto out;
	}
	if (t.dir_fd < 0) {
		rc = ENVDB_OK; /* an adopted database whose directory is gone */
		goto out;
	}
	if (a->trash_fd >= 0) {
		rc = sqla_trash_move(a, &t);
		if (rc == ENVDB_OK && !t.adopted && !keep_marker &&
		    (rc = sqla_marker_remove(a, t.name, "drop")) == ENVDB_OK &&
		    fsync(t.dir_fd) != 0)
			rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
					    "drop database %s: cannot sync directory %s: %s",
					    t.label, t.dir, strerror(errno));
		if (rc == ENVDB_OK)
			sqla_trash_purge(a);
		goto out;
	}
	/* Main file first: an interrupted drop leaves at worst a stale -wal,
	 * which makes create refuse, rather than a database that opens fine
	 * but silently lost the transactions still in its log.  The marker
	 * last: a database file never outlives it. */
	rc = unlink_all(a, &t, "drop");
	if (rc == ENVDB_OK && !t.adopted && !keep_marker)
		rc = sqla_marker_remove(a, t.name, "drop");
	if (rc != ENVDB_OK)
		goto out;
	if (fsync(t.dir_fd) != 0)
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "drop database %s: cannot sync directory %s: %s", t.label,
				    t.dir, strerror(errno));
out:
	sqla_target_close(&t);
	return rc;
}

int sqla_mint(void *instance, const envdb_db_ref *db, const envdb_mint_request *req,
	      envdb_buffer *secret, envdb_buffer *handle)
{
	const sqla *a = instance;
	const size_t token_len = sodium_base64_ENCODED_LEN(SQLA_TOKEN_BYTES,
							   sodium_base64_VARIANT_URLSAFE_NO_PADDING) - 1;
	unsigned char *raw = NULL;
	sqla_target t;
	struct stat st;
	int rc;

	rc = sqla_target_from_ref(&t, a, "mint credential", db);
	if (rc != ENVDB_OK)
		return rc;
	if (req == NULL || secret == NULL || handle == NULL) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL,
				    "mint credential for database %s: missing request or output "
				    "buffer",
				    t.label);
		goto out;
	}
	if (req->authorization != ENVDB_AUTH_FULL_ACCESS &&
	    req->authorization != ENVDB_AUTH_READ_ONLY) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				    "mint credential for database %s: unknown authorization %u",
				    t.label, (unsigned)req->authorization);
		goto out;
	}
	rc = file_exists(&st, a, &t, t.file, "mint credential");
	if (rc < 0)
		goto out;
	if (rc == 0 || !S_ISREG(st.st_mode)) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_NOT_FOUND, "ENOENT",
				    "mint credential for database %s: %s does not exist", t.label,
				    t.path);
		goto out;
	}

	secret->len = token_len;
	handle->len = 0;
	if (secret->data == NULL || secret->cap <= token_len || handle->data == NULL ||
	    handle->cap < sizeof(SQLA_READ_ONLY_HANDLE)) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_BUFFER_TOO_SMALL, NULL,
				    "mint credential for database %s: output buffer too small",
				    t.label);
		goto out;
	}
	raw = a->host->secure_alloc(a->host->ctx, SQLA_TOKEN_BYTES);
	if (raw == NULL) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_NOMEM, NULL,
				    "mint credential for database %s: out of secure memory",
				    t.label);
		goto out;
	}
	a->host->random(a->host->ctx, raw, SQLA_TOKEN_BYTES);
	/* Encoded straight into the host's secure buffer: no other copy. */
	sodium_bin2base64(secret->data, secret->cap, raw, SQLA_TOKEN_BYTES,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	a->host->secure_free(a->host->ctx, raw);
	/* SQLite knows nothing of the token, so there is nothing to name; a
	 * read-only credential is the URL query that makes SQLite open the
	 * file read-only (the host hands out the URL with it: ABI.md, mint). */
	if (req->authorization == ENVDB_AUTH_READ_ONLY) {
		memcpy(handle->data, SQLA_READ_ONLY_HANDLE, sizeof(SQLA_READ_ONLY_HANDLE));
		handle->len = sizeof(SQLA_READ_ONLY_HANDLE) - 1;
	} else {
		handle->data[0] = '\0';
	}
	rc = ENVDB_OK;
out:
	sqla_target_close(&t);
	return rc;
}

int sqla_probe(void *instance, const envdb_db_ref *ref, const char *secret, size_t secret_len)
{
	const sqla *a = instance;
	sqla_target t;
	struct stat st;
	sqlite3 *db = NULL;
	int rc;

	(void)secret; /* SQLite has no authentication: the token is not checked. */
	(void)secret_len;
	rc = sqla_target_from_ref(&t, a, "probe database", ref);
	if (rc != ENVDB_OK)
		return rc;
	rc = file_exists(&st, a, &t, t.file, "probe database");
	if (rc < 0)
		goto out;
	if (rc == 0) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_NOT_FOUND, "ENOENT",
				    "probe database %s: %s does not exist", t.label, t.path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "probe database %s: %s is not a regular file", t.label, t.path);
		goto out;
	}
	rc = open_db(&db, a, "probe", &t);
	if (rc != ENVDB_OK)
		goto out;
	/* Reads the header and the schema page: a file that is not a database
	 * or whose first page is corrupt fails here; a full integrity check
	 * would be O(size) and is not a probe's job. */
	rc = exec_expect(a, db, "SELECT count(*) FROM sqlite_schema", NULL, "probe", t.label);
	sqlite3_close(db);
out:
	sqla_target_close(&t);
	return rc;
}

int sqla_list(void *instance, envdb_adapter_list_cb cb, void *cb_ctx)
{
	const sqla *a = instance;
	const char *dep = sqla_deployment(a, NULL);
	enum sqla_owner owner;
	char name[SQLA_NAME_LEN + 1];
	struct dirent *de;
	struct stat st;
	DIR *dir = NULL;
	size_t len;
	int fd, rc = ENVDB_OK;

	if (cb == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "list databases: no callback given");
	/* A fresh open file description: concurrent lists do not share a
	 * directory offset. */
	fd = openat(a->base_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "list databases: cannot open %s: %s", a->base_dir,
				    strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (de == NULL) {
			if (errno != 0)
				rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
						    "list databases: cannot read %s: %s",
						    a->base_dir, strerror(errno));
			break;
		}
		len = strlen(de->d_name);
		if (len != SQLA_NAME_LEN + 3 || strcmp(de->d_name + SQLA_NAME_LEN, ".db") != 0)
			continue;
		memcpy(name, de->d_name, SQLA_NAME_LEN);
		name[SQLA_NAME_LEN] = '\0';
		if (!sqla_name_is_valid(name))
			continue;
		if (de->d_type != DT_REG) {
			if (de->d_type != DT_UNKNOWN)
				continue;
			if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
			    !S_ISREG(st.st_mode))
				continue;
		}
		/* With a deployment id: only this deployment's files (an
		 * unmarked one may be anybody's, so it is nobody's orphan). */
		if (dep != NULL) {
			if ((rc = sqla_marker_read(&owner, NULL, a, name, dep)) != ENVDB_OK)
				break;
			if (owner != SQLA_OWNER_MINE)
				continue;
		}
		rc = cb(cb_ctx, name);
		if (rc != 0)
			break;
	}
	closedir(dir);
	return rc;
}
