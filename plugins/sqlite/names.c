/*
 * plugins/sqlite/names.c — how the sqlite adapter names things: environment
 * ids are validated as UUIDs before anything is derived from them, the
 * database name is "env_" + the 32 hex digits of the UUID (deterministic,
 * so a retry or a reconcile addresses the same file), and paths are checked
 * once so that URLs and metadata never need escaping.  It also decides
 * which file a db_ref addresses: an owned database in base_dir, or an
 * adopted v4 database named by its "file:" URL (README.md).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "sqlite_adapter.h"

const char *const sqla_side_suffixes[SQLA_N_SIDE_FILES] = {"-wal", "-shm", "-journal"};

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int sqla_name_from_id(char *name, const sqla *a, const char *op, const char *environment_id)
{
	/* 8-4-4-4-12 hex digits; dashes exactly at these offsets. */
	static const int dashes[] = {8, 13, 18, 23};
	size_t i, d = 0, o = 4;

	if (environment_id == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: no environment id given", op);
	if (strlen(environment_id) != 36)
		goto invalid;
	memcpy(name, "env_", 4);
	for (i = 0; i < 36; i++) {
		if (d < 4 && (int)i == dashes[d]) {
			if (environment_id[i] != '-')
				goto invalid;
			d++;
			continue;
		}
		if (hexval(environment_id[i]) < 0)
			goto invalid;
		name[o++] = (char)tolower((unsigned char)environment_id[i]);
	}
	name[o] = '\0';
	return ENVDB_OK;
invalid:
	/* The id is not a secret; it is printed only when it is short and
	 * printable, so a garbage argument cannot flood or corrupt the log. */
	for (i = 0; environment_id[i] != '\0' && i < 64; i++)
		if (!isprint((unsigned char)environment_id[i]))
			break;
	if (environment_id[i] == '\0')
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: environment id '%s' is not a uuid", op,
				      environment_id);
	return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
			      "%s: environment id is not a uuid", op);
}

int sqla_name_is_valid(const char *s)
{
	size_t i;

	if (s == NULL || strncmp(s, "env_", 4) != 0 || strlen(s) != SQLA_NAME_LEN)
		return 0;
	for (i = 4; i < SQLA_NAME_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int sqla_name_from_ref(char *name, const sqla *a, const char *op, const envdb_db_ref *db)
{
	const char *given;
	int rc;

	if (db == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "%s: no database reference given", op);
	given = ENVDB_STRUCT_HAS(db, envdb_db_ref, database_name) ? db->database_name : NULL;
	if (db->environment_id != NULL) {
		rc = sqla_name_from_id(name, a, op, db->environment_id);
		if (rc != ENVDB_OK)
			return rc;
		if (given != NULL && strcmp(given, name) != 0)
			return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
					      "%s: database name does not belong to environment "
					      "%s (expected %s)",
					      op, db->environment_id, name);
		return ENVDB_OK;
	}
	if (!sqla_name_is_valid(given))
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: neither an environment id nor a database name of "
				      "the form env_<32 hex digits> given",
				      op);
	memcpy(name, given, SQLA_NAME_LEN + 1);
	return ENVDB_OK;
}

void sqla_target_owned(sqla_target *t, const sqla *a, const char *name)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->name, name, SQLA_NAME_LEN + 1);
	t->label = t->name;
	t->dir_fd = a->base_fd;
	t->dir = a->base_dir;
	snprintf(t->file, sizeof(t->file), "%s.db", name);
	/* base_dir was checked at init to leave room for every file name. */
	snprintf(t->path, sizeof(t->path), "%s/%s", a->base_dir, t->file);
}

/* True when the metadata marks a database the v4 migration adopted:
 * {"migrated_from": {...}} (core/MIGRATION.md). */
static int marks_adopted(const envdb_db_ref *db)
{
	json_t *m;
	int yes;

	if (!ENVDB_STRUCT_HAS(db, envdb_db_ref, metadata) || db->metadata == NULL)
		return 0;
	m = json_loads(db->metadata, 0, NULL);
	yes = json_is_object(json_object_get(m, "migrated_from"));
	json_decref(m);
	return yes;
}

/* Resolve an adopted database from its "file:" URL: file:/ABS,
 * file:///ABS or file://localhost/ABS; no URI parameters, no %-escapes. */
static int adopted_target(sqla_target *t, const sqla *a, const char *op, const envdb_db_ref *db)
{
	const char *url = ENVDB_STRUCT_HAS(db, envdb_db_ref, url) ? db->url : NULL;
	const char *p, *slash;
	char canon[PATH_MAX];
	struct stat st_dir, st_canon, st_base;
	size_t len, dlen;
	int fd = -1, rc;

	t->adopted = 1;
	/* A legacy name is not checked by anyone: printed only when plain. */
	t->label = strlen(db->database_name) <= 128 && sqla_path_is_plain(db->database_name)
			   ? db->database_name
			   : "(legacy name not shown)";
	if (url == NULL || strncmp(url, "file:", 5) != 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: adopted database %s (metadata migrated_from) has no "
				      "file: url",
				      op, t->label);
	p = url + 5;
	if (strncmp(p, "//", 2) == 0) {
		p += 2;
		if (strncmp(p, "localhost/", 10) == 0)
			p += 9;
		else if (*p != '/')
			return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
					      "%s: adopted database %s: its url names a remote "
					      "host; only local files are supported",
					      op, t->label);
	}
	if (*p != '/')
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: adopted database %s: its url is not an absolute path",
				      op, t->label);
	if (!sqla_path_is_plain(p))
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: adopted database %s: its url holds a character this "
				      "adapter does not accept (only printable ascii without "
				      "'\"', '\\', '?', '#' or '%%': no uri parameters or "
				      "escapes)",
				      op, t->label);
	len = strlen(p);
	slash = strrchr(p, '/');
	if (len + 16 >= PATH_MAX || strlen(slash + 1) + 16 > NAME_MAX)
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: adopted database %s: its path is too long", op,
				      t->label);
	if (slash[1] == '\0' || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: adopted database %s: url %s does not name a file", op,
				      t->label, url);
	dlen = slash == p ? 1 : (size_t)(slash - p);
	memcpy(t->dir_buf, p, dlen);
	t->dir_buf[dlen] = '\0';
	t->dir = t->dir_buf;
	snprintf(t->file, sizeof(t->file), "%s", slash + 1);
	snprintf(t->path, sizeof(t->path), "%s", p);

	fd = open(t->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			t->dir_fd = -1; /* nothing there: the database does not exist */
			return ENVDB_OK;
		}
		return a->host->error(a->host->ctx, errno == ELOOP || errno == ENOTDIR
							    ? ENVDB_ERR_INVALID
							    : ENVDB_ERR_IO,
				      NULL, "%s: adopted database %s: cannot open directory %s: %s",
				      op, t->label, t->dir, strerror(errno));
	}
	/* Every component, not only the last: the directory must be named by
	 * its canonical path, and the descriptor must be that directory. */
	if (realpath(t->dir, canon) == NULL) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "%s: adopted database %s: cannot resolve directory %s: %s", op,
				    t->label, t->dir, strerror(errno));
		goto fail;
	}
	if (strcmp(canon, t->dir) != 0) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				    "%s: adopted database %s: directory %s is not a canonical path "
				    "(a symbolic link, '.' or '..' on the way); refusing to follow "
				    "it",
				    op, t->label, t->dir);
		goto fail;
	}
	if (fstat(fd, &st_dir) != 0 || stat(canon, &st_canon) != 0 ||
	    st_dir.st_dev != st_canon.st_dev || st_dir.st_ino != st_canon.st_ino) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "%s: adopted database %s: directory %s changed while it was "
				    "checked",
				    op, t->label, t->dir);
		goto fail;
	}
	/* A file named like one of ours would be listed, hence judged an
	 * orphan by reconcile: never adopt it under another name. */
	if (fstat(a->base_fd, &st_base) == 0 && st_base.st_dev == st_dir.st_dev &&
	    st_base.st_ino == st_dir.st_ino && strlen(t->file) == SQLA_NAME_LEN + 3 &&
	    strcmp(t->file + SQLA_NAME_LEN, ".db") == 0) {
		char own[SQLA_NAME_LEN + 1];

		memcpy(own, t->file, SQLA_NAME_LEN);
		own[SQLA_NAME_LEN] = '\0';
		if (sqla_name_is_valid(own)) {
			rc = a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
					    "%s: adopted database %s: %s is named like a database "
					    "this adapter owns; refusing to adopt it",
					    op, t->label, t->path);
			goto fail;
		}
	}
	t->dir_fd = fd;
	return ENVDB_OK;
fail:
	close(fd);
	return rc;
}

int sqla_target_from_ref(sqla_target *t, const sqla *a, const char *op, const envdb_db_ref *db)
{
	char name[SQLA_NAME_LEN + 1];
	const char *given;
	int rc;

	memset(t, 0, sizeof(*t));
	t->dir_fd = -1;
	if (db == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "%s: no database reference given", op);
	given = ENVDB_STRUCT_HAS(db, envdb_db_ref, database_name) ? db->database_name : NULL;
	if (db->environment_id != NULL && given != NULL) {
		if ((rc = sqla_name_from_id(name, a, op, db->environment_id)) != ENVDB_OK)
			return rc;
		if (strcmp(given, name) != 0 && marks_adopted(db)) {
			memcpy(t->name, name, SQLA_NAME_LEN + 1);
			rc = adopted_target(t, a, op, db);
			if (rc != ENVDB_OK)
				sqla_target_close(t);
			return rc;
		}
	}
	if ((rc = sqla_name_from_ref(name, a, op, db)) != ENVDB_OK)
		return rc;
	sqla_target_owned(t, a, name);
	return ENVDB_OK;
}

void sqla_target_close(sqla_target *t)
{
	if (t->adopted && t->dir_fd >= 0)
		close(t->dir_fd);
	t->dir_fd = -1;
}

void sqla_target_file(char *out, const sqla_target *t, int i)
{
	snprintf(out, NAME_MAX + 1, "%s%s", t->file, i < 0 ? "" : sqla_side_suffixes[i]);
}

char *sqla_strdup(const sqla *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = a->host->alloc(a->host->ctx, n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

int sqla_path_is_plain(const char *path)
{
	const unsigned char *p;

	for (p = (const unsigned char *)path; *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e || strchr("\"\\?#%", *p) != NULL)
			return 0;
	return 1;
}

const char *sqla_sqlite_code_name(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK: return "SQLITE_OK";
	case SQLITE_ERROR: return "SQLITE_ERROR";
	case SQLITE_INTERNAL: return "SQLITE_INTERNAL";
	case SQLITE_PERM: return "SQLITE_PERM";
	case SQLITE_ABORT: return "SQLITE_ABORT";
	case SQLITE_BUSY: return "SQLITE_BUSY";
	case SQLITE_LOCKED: return "SQLITE_LOCKED";
	case SQLITE_NOMEM: return "SQLITE_NOMEM";
	case SQLITE_READONLY: return "SQLITE_READONLY";
	case SQLITE_INTERRUPT: return "SQLITE_INTERRUPT";
	case SQLITE_IOERR: return "SQLITE_IOERR";
	case SQLITE_CORRUPT: return "SQLITE_CORRUPT";
	case SQLITE_NOTFOUND: return "SQLITE_NOTFOUND";
	case SQLITE_FULL: return "SQLITE_FULL";
	case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN";
	case SQLITE_PROTOCOL: return "SQLITE_PROTOCOL";
	case SQLITE_SCHEMA: return "SQLITE_SCHEMA";
	case SQLITE_TOOBIG: return "SQLITE_TOOBIG";
	case SQLITE_CONSTRAINT: return "SQLITE_CONSTRAINT";
	case SQLITE_MISMATCH: return "SQLITE_MISMATCH";
	case SQLITE_MISUSE: return "SQLITE_MISUSE";
	case SQLITE_NOLFS: return "SQLITE_NOLFS";
	case SQLITE_AUTH: return "SQLITE_AUTH";
	case SQLITE_RANGE: return "SQLITE_RANGE";
	case SQLITE_NOTADB: return "SQLITE_NOTADB";
	default: return "SQLITE_UNKNOWN";
	}
}
