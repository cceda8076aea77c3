/*
 * plugins/sqlite/marker.c — the ownership marker of the sqlite adapter
 * (ENVDB_ADAPTER_CAP_DEPLOYMENT): next to every database file it creates,
 * <base_dir>/env_<hex>.envdb holds one line
 *
 *   envdb:<environment id> deployment:<deployment id>
 *
 * naming the control plane (deployment) that made it.  Two deployments
 * sharing one base_dir then list and drop only their own files.
 *
 * Why a side file and not a table inside the database: the application
 * owns the database's schema (a table of ours would show up in its
 * migrations, and its full-access credential could drop it); the marker is
 * envdb's, like the file name.  Crash safety with create: the marker is
 * written (temporary file, fsync, rename) BEFORE the database file exists,
 * and removed AFTER it is gone, so a database file never exists without its
 * marker unless it was made by an earlier envdb (or a host without a
 * deployment id); a marker left without its database by a crash is harmless
 * (list looks at database files) and is replaced or removed later.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sqlite_adapter.h"

#define MARKER_SUFFIX ".envdb"
#define MARKER_TMP_SUFFIX ".envdb-tmp-"
#define DEPLOYMENT_TAG " deployment:"
/* "envdb:" + UUID + " deployment:" + UUID + "\n" */
#define MARKER_LINE_MAX (6 + 36 + 12 + 36 + 1)

static int uuid_text(const char *s)
{
	size_t i;

	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

const char *sqla_deployment(const sqla *a, const char *given)
{
	const char *id = given;

	if (id == NULL && ENVDB_STRUCT_HAS(a->host, envdb_host, deployment_id) &&
	    a->host->deployment_id != NULL)
		id = a->host->deployment_id(a->host->ctx);
	return id != NULL && strlen(id) == 36 && uuid_text(id) ? id : NULL;
}

const char *sqla_ref_deployment(const sqla *a, const envdb_db_ref *db)
{
	return sqla_deployment(a, db != NULL && ENVDB_STRUCT_HAS(db, envdb_db_ref, deployment_id)
					  ? db->deployment_id
					  : NULL);
}

static void marker_file(char *out, const char *name, const char *suffix)
{
	snprintf(out, NAME_MAX + 1, "%s%s", name, suffix);
}

int sqla_marker_write(const sqla *a, const char *name, const char *environment_id,
		      const char *deployment_id)
{
	char tmp[NAME_MAX + 1], fname[NAME_MAX + 1], line[MARKER_LINE_MAX + 1];
	int fd, len, rc = ENVDB_OK;

	unsigned char rnd[4];

	/* A temporary name of its own: creates of one database may race. */
	a->host->random(a->host->ctx, rnd, sizeof(rnd));
	snprintf(tmp, sizeof(tmp), "%s" MARKER_TMP_SUFFIX "%02x%02x%02x%02x", name, rnd[0], rnd[1],
		 rnd[2], rnd[3]);
	marker_file(fname, name, MARKER_SUFFIX);
	len = snprintf(line, sizeof(line), "envdb:%s" DEPLOYMENT_TAG "%s\n", environment_id,
		       deployment_id);
	if (len < 0 || (size_t)len >= sizeof(line))
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "create database %s: malformed environment or deployment id",
				      name);
	fd = openat(a->base_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "create database %s: cannot create the marker %s/%s: %s",
				      name, a->base_dir, tmp, strerror(errno));
	errno = 0;
	if (write(fd, line, (size_t)len) != len || fsync(fd) != 0)
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "create database %s: cannot write the marker %s/%s: %s", name,
				    a->base_dir, tmp, strerror(errno ? errno : EIO));
	if (close(fd) != 0 && rc == ENVDB_OK)
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "create database %s: cannot write the marker %s/%s: %s", name,
				    a->base_dir, tmp, strerror(errno));
	if (rc == ENVDB_OK && renameat(a->base_fd, tmp, a->base_fd, fname) != 0)
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "create database %s: cannot rename the marker to %s/%s: %s",
				    name, a->base_dir, fname, strerror(errno));
	if (rc != ENVDB_OK)
		(void)unlinkat(a->base_fd, tmp, 0);
	return rc;
}

int sqla_marker_read(enum sqla_owner *owner, char other[37], const sqla *a, const char *name,
		     const char *deployment_id)
{
	char fname[NAME_MAX + 1], line[MARKER_LINE_MAX + 2];
	const char *tag;
	ssize_t n;
	int fd;

	*owner = SQLA_OWNER_NONE;
	if (other != NULL)
		other[0] = '\0';
	marker_file(fname, name, MARKER_SUFFIX);
	fd = openat(a->base_fd, fname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return ENVDB_OK;
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "database %s: cannot read the marker %s/%s: %s", name,
				      a->base_dir, fname, strerror(errno));
	}
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n < 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "database %s: cannot read the marker %s/%s: %s", name,
				      a->base_dir, fname, strerror(errno));
	line[n] = '\0';
	/* Anything but a well-formed line names no deployment: ambiguous. */
	tag = strstr(line, DEPLOYMENT_TAG);
	if (strncmp(line, "envdb:", 6) != 0 || tag == NULL ||
	    strlen(tag) < sizeof(DEPLOYMENT_TAG) - 1 + 36 ||
	    !uuid_text(tag + sizeof(DEPLOYMENT_TAG) - 1))
		return ENVDB_OK;
	tag += sizeof(DEPLOYMENT_TAG) - 1;
	if (deployment_id != NULL && strncmp(tag, deployment_id, 36) == 0) {
		*owner = SQLA_OWNER_MINE;
		return ENVDB_OK;
	}
	*owner = SQLA_OWNER_OTHER;
	if (other != NULL) {
		memcpy(other, tag, 36);
		other[36] = '\0';
	}
	return ENVDB_OK;
}

int sqla_marker_remove(const sqla *a, const char *name, const char *op)
{
	char fname[NAME_MAX + 1];

	marker_file(fname, name, MARKER_SUFFIX);
	if (unlinkat(a->base_fd, fname, 0) != 0 && errno != ENOENT)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "%s database %s: cannot remove the marker %s/%s: %s", op,
				      name, a->base_dir, fname, strerror(errno));
	return ENVDB_OK;
}
