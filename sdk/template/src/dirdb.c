/*
 * dirdb — an example envdb adapter, and the starting point of your own.
 *
 * Each environment's "database" is a directory under a root directory, and
 * each credential is a token file inside it.  It needs nothing but POSIX,
 * yet it follows the whole adapter contract (ABI.md, installed with envdb's
 * documents in PREFIX/share/doc/envdb):
 *
 *  - database_name() is pure: env_<uuid with '-' turned into '_'>;
 *  - create() is atomic: the directory is prepared under a temporary name
 *    and renamed into place, so a crash never leaves half a database, and a
 *    second create of the same name answers ENVDB_ERR_EXISTS;
 *  - drop() and revoke() are idempotent: what is already gone is success;
 *  - tokens are generated straight into the host's secure buffer, and every
 *    scratch copy lives in host secure memory;
 *  - errors go through host->error() with the status returned and a message
 *    naming the database and the operation, never a token, and without
 *    the plugin's name (the host prefixes "plugin dirdb: ");
 *  - nothing the host passes is kept after a call (the root directory is
 *    copied at init), so the instance is immutable and THREAD_SAFE.
 *
 * Layout under the root directory:
 *   ROOT/env_<id>/.dirdb           marker: this directory was created by dirdb
 *                                  (drop and list touch nothing without it)
 *   ROOT/env_<id>/tokens/<handle>  one credential: "full_access <token>\n"
 *   ROOT/.tmp-*                    work in progress of create and drop
 *
 * Configuration: `directory` (required), the root directory; relative paths
 * are relative to the manifest's directory.  It is created if missing.
 */
#define _POSIX_C_SOURCE 200809L

#ifdef HAVE_CONFIG_H
#include <config.h> /* PACKAGE_VERSION */
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <envdb/adapter.h>

#if ENVDB_ABI_MAJOR != 1
#error "dirdb is written for envdb plugin ABI 1.x"
#endif

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

#define DIRDB_TOKEN_BYTES 32                       /* 64 hex characters */
#define DIRDB_TOKEN_LEN (2 * DIRDB_TOKEN_BYTES)
#define DIRDB_HANDLE_PREFIX "tok-"
#define DIRDB_HANDLE_LEN (sizeof(DIRDB_HANDLE_PREFIX) - 1 + 16)
#define DIRDB_MARKER ".dirdb"
#define DIRDB_NAME_PREFIX "env_"

/* The instance: immutable after init, hence safe to share between threads. */
struct dirdb {
	const envdb_host *host; /* owned by the host, valid until fini returns */
	char *root;             /* absolute root directory; host->alloc memory */
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

/* The symbolic errno name, passed to the host as the "native code". */
static const char *errno_name(int e)
{
	switch (e) {
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case EEXIST: return "EEXIST";
	case ENOTEMPTY: return "ENOTEMPTY";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case ENOSPC: return "ENOSPC";
	case EROFS: return "EROFS";
	case EIO: return "EIO";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	default: return NULL;
	}
}

/* Report an errno failure: "<what>: <strerror>", with status ENVDB_ERR_IO
 * unless the errno says something more precise.  Returns the status. */
static int report_errno(const struct dirdb *d, int e, const char *what)
{
	char reason[128];
	int status = ENVDB_ERR_IO;

	if (strerror_r(e, reason, sizeof(reason)) != 0)
		snprintf(reason, sizeof(reason), "errno %d", e);
	if (e == EACCES || e == EPERM)
		status = ENVDB_ERR_PERMISSION;
	else if (e == ENOMEM)
		status = ENVDB_ERR_NOMEM;
	return d->host->error(d->host->ctx, status, errno_name(e), "%s: %s", what,
			      reason);
}

/* snprintf into a PATH_MAX buffer; ENVDB_ERR_INVALID when it does not fit. */
static int path_join(const struct dirdb *d, char *out, const char *a, const char *b,
		     const char *c)
{
	int n = snprintf(out, PATH_MAX, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : "");

	if (n < 0 || n >= PATH_MAX)
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, "ENAMETOOLONG",
				      "path under %s is too long", a);
	return ENVDB_OK;
}

static void to_hex(char *out, const unsigned char *in, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
}

/* A random lowercase hex string of 2*n characters, NUL-terminated. */
static void random_hex(const struct dirdb *d, char *out, size_t n)
{
	unsigned char raw[16];

	if (n > sizeof(raw))
		n = sizeof(raw);
	d->host->random(d->host->ctx, raw, n);
	to_hex(out, raw, n);
	out[2 * n] = '\0';
}

/* A database name we created: env_ followed by [0-9a-f_], nothing that could
 * escape the root directory. */
static int valid_name(const char *name)
{
	size_t i, n;

	if (name == NULL || strncmp(name, DIRDB_NAME_PREFIX, strlen(DIRDB_NAME_PREFIX)) != 0)
		return 0;
	n = strlen(name);
	if (n <= strlen(DIRDB_NAME_PREFIX) || n > 64)
		return 0;
	for (i = strlen(DIRDB_NAME_PREFIX); i < n; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f') ||
		      name[i] == '_'))
			return 0;
	return 1;
}

static int valid_handle(const char *handle)
{
	size_t i, plen = strlen(DIRDB_HANDLE_PREFIX);

	if (handle == NULL || strlen(handle) != DIRDB_HANDLE_LEN ||
	    strncmp(handle, DIRDB_HANDLE_PREFIX, plen) != 0)
		return 0;
	for (i = plen; i < DIRDB_HANDLE_LEN; i++)
		if (!((handle[i] >= '0' && handle[i] <= '9') || (handle[i] >= 'a' && handle[i] <= 'f')))
			return 0;
	return 1;
}

/* 1 when ROOT/name is a directory carrying our marker. */
static int owned_dir(const struct dirdb *d, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	int n = snprintf(path, sizeof(path), "%s/%s/%s", d->root, name, DIRDB_MARKER);

	return n > 0 && n < (int)sizeof(path) && lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Remove a database directory tree (tokens, marker, directories).  Only the
 * entries dirdb itself creates are expected; anything else makes rmdir fail,
 * which is reported rather than deleted blindly. */
static int remove_tree(const struct dirdb *d, const char *dir)
{
	char path[PATH_MAX], tokens[PATH_MAX];
	DIR *dh;
	struct dirent *de;
	int rc;

	if ((rc = path_join(d, tokens, dir, "tokens", NULL)) != ENVDB_OK)
		return rc;
	dh = opendir(tokens);
	if (dh != NULL) {
		while ((de = readdir(dh)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (path_join(d, path, tokens, de->d_name, NULL) == ENVDB_OK)
				(void)unlink(path);
		}
		closedir(dh);
		if (rmdir(tokens) != 0 && errno != ENOENT)
			return report_errno(d, errno, "drop: cannot remove the tokens directory");
	}
	if ((rc = path_join(d, path, dir, DIRDB_MARKER, NULL)) != ENVDB_OK)
		return rc;
	if (unlink(path) != 0 && errno != ENOENT)
		return report_errno(d, errno, "drop: cannot remove the marker");
	if (rmdir(dir) != 0 && errno != ENOENT)
		return report_errno(d, errno, "drop: cannot remove the database directory");
	return ENVDB_OK;
}

/* Write all of buf to fd. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Escape `s` as the inside of a JSON string into out (cap bytes with NUL);
 * returns the escaped length (which may exceed cap - 1: nothing is written
 * past cap). */
static size_t json_escape(char *out, size_t cap, const char *s)
{
	size_t n = 0;
	char tmp[8];

	for (; *s; s++) {
		const char *piece = tmp;
		size_t k;
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			tmp[2] = '\0';
		} else if (c < 0x20) {
			snprintf(tmp, sizeof(tmp), "\\u%04x", c);
		} else {
			tmp[0] = (char)c;
			tmp[1] = '\0';
		}
		for (k = 0; piece[k]; k++, n++)
			if (n + 1 < cap)
				out[n] = piece[k];
	}
	if (cap > 0)
		out[n < cap ? n : cap - 1] = '\0';
	return n;
}

/* ------------------------------------------------------------------------ */
/* init / fini                                                               */
/* ------------------------------------------------------------------------ */

static int dirdb_init(void **instance, const envdb_host *host, const envdb_config *config)
{
	const char *dir = envdb_config_get(config, "directory");
	struct dirdb *d = NULL;
	char path[PATH_MAX];
	struct stat st;
	int n, rc;

	*instance = NULL;
	if (dir == NULL || dir[0] == '\0')
		return host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				   "init: the configuration key 'directory' is required");
	/* config is borrowed for the duration of init: copy what we keep. */
	if (dir[0] == '/' || config->base_dir == NULL)
		n = snprintf(path, sizeof(path), "%s", dir);
	else
		n = snprintf(path, sizeof(path), "%s/%s", config->base_dir, dir);
	if (n < 0 || n >= (int)sizeof(path))
		return host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				   "init: directory path is too long");
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return host->error(host->ctx, ENVDB_ERR_CONFIG, errno_name(errno),
				   "init: cannot create directory %s", path);
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				   "init: %s is not a directory", path);

	d = host->alloc(host->ctx, sizeof(*d));
	if (d == NULL)
		return host->error(host->ctx, ENVDB_ERR_NOMEM, NULL, "init: out of memory");
	d->host = host;
	d->root = host->alloc(host->ctx, (size_t)n + 1);
	if (d->root == NULL) {
		rc = host->error(host->ctx, ENVDB_ERR_NOMEM, NULL, "init: out of memory");
		goto fail;
	}
	memcpy(d->root, path, (size_t)n + 1);
	*instance = d;
	return ENVDB_OK;

fail:
	host->free(host->ctx, d);
	return rc;
}

static void dirdb_fini(void *instance)
{
	struct dirdb *d = instance;

	if (d == NULL)
		return;
	d->host->free(d->host->ctx, d->root);
	d->host->free(d->host->ctx, d);
}

/* ------------------------------------------------------------------------ */
/* Operations                                                                */
/* ------------------------------------------------------------------------ */

static int dirdb_database_name(void *instance, const char *environment_id, envdb_buffer *name)
{
	struct dirdb *d = instance;
	char out[64];
	size_t i, n = environment_id ? strlen(environment_id) : 0;

	/* A UUID: 36 characters, hex and dashes.  Anything else could escape
	 * the root directory, so refuse it. */
	if (n != 36)
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "database_name: environment id is not a uuid");
	memcpy(out, DIRDB_NAME_PREFIX, strlen(DIRDB_NAME_PREFIX));
	for (i = 0; i < n; i++) {
		char c = environment_id[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (c == '-')
			c = '_';
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, NULL,
					      "database_name: environment id is not a uuid");
		out[strlen(DIRDB_NAME_PREFIX) + i] = c;
	}
	return envdb_buffer_set(name, out, strlen(DIRDB_NAME_PREFIX) + n);
}

static int dirdb_create(void *instance, const envdb_create_request *req, envdb_buffer *url,
			envdb_buffer *metadata)
{
	struct dirdb *d = instance;
	char final[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], rnd[17], esc[PATH_MAX * 6 + 1];
	size_t url_len, meta_len;
	struct stat st;
	int fd, rc;

	if (!valid_name(req->database_name))
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "create: invalid database name");
	if ((rc = path_join(d, final, d->root, req->database_name, NULL)) != ENVDB_OK)
		return rc;

	/* Outputs are sized before anything happens, so a too-small buffer
	 * leaves nothing to undo. */
	url_len = strlen("dirdb://") + strlen(final);
	meta_len = json_escape(esc, sizeof(esc), final) + strlen("{\"path\":\"\"}");
	if (url->cap < url_len + 1 || metadata->cap < meta_len + 1) {
		url->len = url_len;
		metadata->len = meta_len;
		return ENVDB_ERR_BUFFER_TOO_SMALL;
	}

	if (lstat(final, &st) == 0)
		return d->host->error(d->host->ctx, ENVDB_ERR_EXISTS, "EEXIST",
				      "create of database %s: it already exists",
				      req->database_name);

	random_hex(d, rnd, 8);
	if (snprintf(tmp, sizeof(tmp), "%s/.tmp-create-%s-%s", d->root, req->database_name, rnd) >=
	    (int)sizeof(tmp))
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, "ENAMETOOLONG",
				      "create of database %s: path too long",
				      req->database_name);
	if (mkdir(tmp, 0700) != 0)
		return report_errno(d, errno, "create: cannot make a directory in the root");
	if ((rc = path_join(d, path, tmp, "tokens", NULL)) != ENVDB_OK)
		goto undo;
	if (mkdir(path, 0700) != 0) {
		rc = report_errno(d, errno, "create: cannot make the tokens directory");
		goto undo;
	}
	if ((rc = path_join(d, path, tmp, DIRDB_MARKER, NULL)) != ENVDB_OK)
		goto undo;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write_all(fd, req->environment_id, strlen(req->environment_id)) != 0 ||
	    write_all(fd, "\n", 1) != 0) {
		rc = report_errno(d, errno, "create: cannot write the marker");
		if (fd >= 0)
			close(fd);
		goto undo;
	}
	close(fd);
	/* The atomic step: rename() onto a non-empty directory fails, so two
	 * concurrent creates cannot both succeed. */
	if (rename(tmp, final) != 0) {
		int e = errno;
		if (e == EEXIST || e == ENOTEMPTY)
			rc = d->host->error(d->host->ctx, ENVDB_ERR_EXISTS, errno_name(e),
					    "create of database %s: it already exists",
					    req->database_name);
		else
			rc = report_errno(d, e, "create: cannot rename the new database into place");
		goto undo;
	}

	snprintf(url->data, url->cap, "dirdb://%s", final);
	url->len = url_len;
	snprintf(metadata->data, metadata->cap, "{\"path\":\"%s\"}", esc);
	metadata->len = meta_len;
	return ENVDB_OK;

undo:
	(void)remove_tree(d, tmp);
	return rc;
}

static int dirdb_drop(void *instance, const envdb_db_ref *db)
{
	struct dirdb *d = instance;
	char final[PATH_MAX], trash[PATH_MAX], rnd[17];
	struct stat st;
	int rc;

	if (!valid_name(db->database_name))
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "drop: invalid database name");
	if ((rc = path_join(d, final, d->root, db->database_name, NULL)) != ENVDB_OK)
		return rc;
	if (lstat(final, &st) != 0 && errno == ENOENT)
		return ENVDB_OK; /* already gone: success */
	if (!owned_dir(d, db->database_name))
		return d->host->error(d->host->ctx, ENVDB_ERR_PERMISSION, NULL,
				      "drop of database %s: refusing, %s was not created "
				      "by dirdb",
				      db->database_name, final);
	/* Rename out of the way first: from here on the database is gone for
	 * every other call, even if removing the files fails half-way. */
	random_hex(d, rnd, 8);
	if (snprintf(trash, sizeof(trash), "%s/.tmp-drop-%s-%s", d->root, db->database_name,
		     rnd) >= (int)sizeof(trash))
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, "ENAMETOOLONG",
				      "drop of database %s: path too long",
				      db->database_name);
	if (rename(final, trash) != 0) {
		if (errno == ENOENT)
			return ENVDB_OK; /* dropped concurrently */
		return report_errno(d, errno, "drop: cannot move the database away");
	}
	return remove_tree(d, trash);
}

static int dirdb_mint(void *instance, const envdb_db_ref *db, const envdb_mint_request *req,
		      envdb_buffer *secret, envdb_buffer *handle)
{
	struct dirdb *d = instance;
	char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], hid[17];
	unsigned char *raw = NULL;
	int fd = -1, rc;

	if (req->authorization == ENVDB_AUTH_READ_ONLY)
		return d->host->error(d->host->ctx, ENVDB_ERR_NOT_SUPPORTED, NULL,
				      "mint for database %s: read-only credentials are "
				      "not supported",
				      db->database_name);
	if (req->authorization != ENVDB_AUTH_FULL_ACCESS)
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "mint for database %s: unknown authorization %u",
				      db->database_name, req->authorization);
	if (secret->cap < DIRDB_TOKEN_LEN + 1 || handle->cap < DIRDB_HANDLE_LEN + 1) {
		secret->len = DIRDB_TOKEN_LEN;
		handle->len = DIRDB_HANDLE_LEN;
		return ENVDB_ERR_BUFFER_TOO_SMALL;
	}
	if (!valid_name(db->database_name))
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "mint: invalid database name");
	if (!owned_dir(d, db->database_name))
		return d->host->error(d->host->ctx, ENVDB_ERR_NOT_FOUND, "ENOENT",
				      "mint for database %s: no such database",
				      db->database_name);

	/* Overlapping rotation comes for free: the previous token file is left
	 * alone until the host revokes it. */
	random_hex(d, hid, 8);
	if ((rc = path_join(d, dir, d->root, db->database_name, "tokens")) != ENVDB_OK)
		return rc;
	if (snprintf(path, sizeof(path), "%s/%s%s", dir, DIRDB_HANDLE_PREFIX, hid) >=
		    (int)sizeof(path) ||
	    snprintf(tmp, sizeof(tmp), "%s/.%s%s.tmp", dir, DIRDB_HANDLE_PREFIX, hid) >=
		    (int)sizeof(tmp))
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, "ENAMETOOLONG",
				      "mint for database %s: path too long",
				      db->database_name);

	/* The raw token bytes are a secret too: secure memory, wiped on free.
	 * The hex token is written straight into the host's secure buffer. */
	raw = d->host->secure_alloc(d->host->ctx, DIRDB_TOKEN_BYTES);
	if (raw == NULL)
		return d->host->error(d->host->ctx, ENVDB_ERR_NOMEM, NULL,
				      "mint for database %s: out of secure memory",
				      db->database_name);
	d->host->random(d->host->ctx, raw, DIRDB_TOKEN_BYTES);
	to_hex(secret->data, raw, DIRDB_TOKEN_BYTES);
	secret->data[DIRDB_TOKEN_LEN] = '\0';

	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write_all(fd, "full_access ", strlen("full_access ")) != 0 ||
	    write_all(fd, secret->data, DIRDB_TOKEN_LEN) != 0 || write_all(fd, "\n", 1) != 0 ||
	    fsync(fd) != 0) {
		rc = report_errno(d, errno, "mint: cannot write the token file");
		goto fail;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) != 0) {
		rc = report_errno(d, errno, "mint: cannot move the token file into place");
		goto fail;
	}
	secret->len = DIRDB_TOKEN_LEN;
	snprintf(handle->data, handle->cap, "%s%s", DIRDB_HANDLE_PREFIX, hid);
	handle->len = DIRDB_HANDLE_LEN;
	d->host->secure_free(d->host->ctx, raw);
	return ENVDB_OK;

fail:
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	memset(secret->data, 0, DIRDB_TOKEN_LEN);
	d->host->secure_free(d->host->ctx, raw);
	return rc;
}

static int dirdb_revoke(void *instance, const envdb_db_ref *db, uint32_t authorization,
			const char *handle)
{
	struct dirdb *d = instance;
	char path[PATH_MAX];
	int n;

	if (!valid_name(db->database_name) || !valid_handle(handle))
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "revoke: invalid database name or handle");
	n = snprintf(path, sizeof(path), "%s/%s/tokens/%s", d->root, db->database_name, handle);
	if (n < 0 || n >= (int)sizeof(path))
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, "ENAMETOOLONG",
				      "revoke for database %s: path too long",
				      db->database_name);
	if (unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR)
		return report_errno(d, errno, "revoke: cannot delete the token file");
	return ENVDB_OK; /* revoking what is already gone is success */
}

/* Compare without leaking, through timing, how much of a token matched. */
static int equal_ct(const char *a, const char *b, size_t n)
{
	unsigned char diff = 0;
	size_t i;

	for (i = 0; i < n; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

static int dirdb_probe(void *instance, const envdb_db_ref *db, const char *secret,
		       size_t secret_len)
{
	struct dirdb *d = instance;
	enum { LINE_CAP = 256 };
	char dir[PATH_MAX], path[PATH_MAX];
	char *line = NULL;
	DIR *dh = NULL;
	struct dirent *de;
	int rc, found = 0;

	if (!valid_name(db->database_name))
		return d->host->error(d->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "probe: invalid database name");
	if (!owned_dir(d, db->database_name))
		return d->host->error(d->host->ctx, ENVDB_ERR_NOT_FOUND, "ENOENT",
				      "probe of database %s: no such database",
				      db->database_name);
	if ((rc = path_join(d, dir, d->root, db->database_name, "tokens")) != ENVDB_OK)
		return rc;
	/* Token files hold secrets: read them into secure memory only. */
	line = d->host->secure_alloc(d->host->ctx, LINE_CAP);
	if (line == NULL)
		return d->host->error(d->host->ctx, ENVDB_ERR_NOMEM, NULL,
				      "probe of database %s: out of secure memory",
				      db->database_name);
	dh = opendir(dir);
	if (dh == NULL) {
		rc = report_errno(d, errno, "probe: cannot open the tokens directory");
		goto out;
	}
	while (!found && (de = readdir(dh)) != NULL) {
		const char *tok;
		ssize_t n;
		int fd;

		if (!valid_handle(de->d_name) ||
		    path_join(d, path, dir, de->d_name, NULL) != ENVDB_OK)
			continue;
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue; /* revoked meanwhile */
		n = read(fd, line, LINE_CAP - 1);
		close(fd);
		if (n <= 0)
			continue;
		line[n] = '\0';
		tok = strchr(line, ' ');
		if (tok != NULL && secret_len == DIRDB_TOKEN_LEN &&
		    (size_t)n >= (size_t)(tok + 1 - line) + DIRDB_TOKEN_LEN &&
		    equal_ct(tok + 1, secret, DIRDB_TOKEN_LEN))
			found = 1;
	}
	rc = found ? ENVDB_OK
		   : d->host->error(d->host->ctx, ENVDB_ERR_AUTH, NULL,
				    "probe of database %s: the token was not accepted",
				    db->database_name);
out:
	if (dh != NULL)
		closedir(dh);
	d->host->secure_free(d->host->ctx, line);
	return rc;
}

static int dirdb_list(void *instance, envdb_adapter_list_cb cb, void *cb_ctx)
{
	struct dirdb *d = instance;
	struct dirent *de;
	DIR *dh;
	int rc = ENVDB_OK;

	dh = opendir(d->root);
	if (dh == NULL)
		return report_errno(d, errno, "list: cannot open the root directory");
	while ((de = readdir(dh)) != NULL) {
		/* Only what we own: a valid name with our marker. */
		if (!valid_name(de->d_name) || !owned_dir(d, de->d_name))
			continue;
		rc = cb(cb_ctx, de->d_name);
		if (rc != 0)
			break;
	}
	closedir(dh);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                                */
/* ------------------------------------------------------------------------ */

static const envdb_config_key dirdb_config_keys[] = {
	{ .struct_size = sizeof(envdb_config_key),
	  .name = "directory",
	  .description = "root directory of the environment directories",
	  .flags = ENVDB_CONFIG_REQUIRED },
	{ .struct_size = sizeof(envdb_config_key), .name = NULL },
};

static const envdb_adapter_ops dirdb_ops = {
	.struct_size = sizeof(envdb_adapter_ops),
	.capabilities = ENVDB_ADAPTER_CAP_ROTATE_OVERLAP | ENVDB_ADAPTER_CAP_REVOKE |
			ENVDB_ADAPTER_CAP_PROBE | ENVDB_ADAPTER_CAP_LIST |
			ENVDB_ADAPTER_CAP_AUTHENTICATES,
	.database_name = dirdb_database_name,
	.create = dirdb_create,
	.drop = dirdb_drop,
	.mint = dirdb_mint,
	.revoke = dirdb_revoke,
	.probe = dirdb_probe,
	.list = dirdb_list,
};

static const envdb_plugin_descriptor dirdb_descriptor = {
	.struct_size = sizeof(envdb_plugin_descriptor),
	.abi_major = ENVDB_ABI_MAJOR,
	.abi_minor = 0, /* the oldest host minor whose ABI we use */
	.name = "dirdb",
	.version = PACKAGE_VERSION,
	.description = "example adapter: one directory per environment, token files",
	.kind = ENVDB_PLUGIN_ADAPTER,
	.flags = ENVDB_PLUGIN_THREAD_SAFE,
	.config_keys = dirdb_config_keys,
	.init = dirdb_init,
	.fini = dirdb_fini,
	.ops = &dirdb_ops,
};

ENVDB_PLUGIN_DEFINE(dirdb_descriptor)
