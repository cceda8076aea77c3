/*
 * plugins/sqlite/marker.c — the ownership marker of the sqlite adapter
 * (ENVDB_ADAPTER_CAP_DEPLOYMENT): next to every database file it creates,
 * <base_dir>/env_<hex>.envdb, a symbolic link whose target is
 *
 *   envdb:deployment:<deployment id>
 *
 * names the control plane (deployment) that made it.  Two deployments
 * sharing one base_dir then list and drop only their own files.
 *
 * Why a side file and not a table inside the database: the application
 * owns the database's schema (a table of ours would show up in its
 * migrations, and its full-access credential could drop it); the marker is
 * envdb's, like the file name.
 *
 * The marker is a symbolic link, <base_dir>/env_<hex>.envdb ->
 * "envdb:deployment:<deployment id>" (53 bytes), never followed: its text
 * is metadata, created with its directory entry in one operation (on ext4
 * a target under 60 bytes lives in the inode itself; xfs and btrfs store a
 * short target inline too), so the fsync of base_dir that makes the
 * database file's entry durable makes the marker durable with it, whole.
 * A regular file needed its own fsync for its text (one more sync per
 * create: 5 per provisioning instead of 4, issue 18), and without it a
 * crash could leave the name durable and the text empty.  Markers of
 * earlier versions (a regular file holding "envdb:<environment id>
 * deployment:<deployment id>\n") are still read, and replaced by a create.
 *
 * Crash safety with create: the marker is made (temporary name, rename)
 * BEFORE the database file exists, both entries in the same directory,
 * made durable by create's one fsync of it; it is removed AFTER the
 * database is gone.  A database file found without its marker after a
 * crash (create never returned) carries no deployment: nobody lists it as
 * an orphan, and the host that has its row (the provisioning intent) still
 * drops it by naming its environment (database.c, drop_allowed); a marker
 * left without its database is harmless (list looks at database files) and
 * is replaced or removed later.
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
/* The symbolic link's target: "envdb:deployment:" + UUID (53 bytes: under
 * the 60 an ext4 inode holds inline). */
#define MARKER_PREFIX "envdb:deployment:"
#define MARKER_TARGET_MAX (int)(sizeof(MARKER_PREFIX) - 1 + 36)
/* An earlier version's marker file: "envdb:" + UUID + " deployment:" +
 * UUID + "\n" */
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
	char tmp[NAME_MAX + 1], fname[NAME_MAX + 1], target[MARKER_TARGET_MAX + 1];
	unsigned char rnd[4];
	int len;

	(void)environment_id; /* the file name is derived from it */
	/* A temporary name of its own: creates of one database may race. */
	a->host->random(a->host->ctx, rnd, sizeof(rnd));
	snprintf(tmp, sizeof(tmp), "%s" MARKER_TMP_SUFFIX "%02x%02x%02x%02x", name, rnd[0], rnd[1],
		 rnd[2], rnd[3]);
	marker_file(fname, name, MARKER_SUFFIX);
	len = snprintf(target, sizeof(target), MARKER_PREFIX "%s", deployment_id);
	if (len != MARKER_TARGET_MAX || !uuid_text(deployment_id))
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "create database %s: malformed deployment id", name);
	if (symlinkat(target, a->base_fd, tmp) != 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "create database %s: cannot create the marker %s/%s: %s",
				      name, a->base_dir, tmp, strerror(errno));
	/* Replaces a marker a crashed create left (of any version).  Not
	 * synced here: the caller's fsync of base_dir (after the database
	 * file's) makes both entries durable. */
	if (renameat(a->base_fd, tmp, a->base_fd, fname) != 0) {
		int rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
					"create database %s: cannot rename the marker to %s/%s: %s",
					name, a->base_dir, fname, strerror(errno));

		(void)unlinkat(a->base_fd, tmp, 0);
		return rc;
	}
	return ENVDB_OK;
}

/* The deployment id a marker's text names (its first 36 bytes), or NULL:
 * the symbolic link's "envdb:deployment:<id>" (exactly), or an earlier
 * version's line "envdb:<environment id> deployment:<id>...". */
static const char *marker_deployment(const char *text, int is_link)
{
	const char *tag;

	if (is_link) {
		if (strlen(text) != MARKER_TARGET_MAX ||
		    strncmp(text, MARKER_PREFIX, sizeof(MARKER_PREFIX) - 1) != 0)
			return NULL;
		tag = text + sizeof(MARKER_PREFIX) - 1;
		return uuid_text(tag) ? tag : NULL;
	}
	tag = strstr(text, DEPLOYMENT_TAG);
	if (strncmp(text, "envdb:", 6) != 0 || tag == NULL ||
	    strlen(tag) < sizeof(DEPLOYMENT_TAG) - 1 + 36 ||
	    !uuid_text(tag + sizeof(DEPLOYMENT_TAG) - 1))
		return NULL;
	return tag + sizeof(DEPLOYMENT_TAG) - 1;
}

int sqla_marker_read(enum sqla_owner *owner, char other[37], const sqla *a, const char *name,
		     const char *deployment_id)
{
	char fname[NAME_MAX + 1], line[MARKER_LINE_MAX + 2];
	const char *tag;
	ssize_t n;
	int fd, is_link = 1;

	*owner = SQLA_OWNER_NONE;
	if (other != NULL)
		other[0] = '\0';
	marker_file(fname, name, MARKER_SUFFIX);
	n = readlinkat(a->base_fd, fname, line, sizeof(line) - 1);
	if (n < 0 && errno == ENOENT)
		return ENVDB_OK;
	if (n < 0 && errno == EINVAL) {
		/* Not a symbolic link: an earlier version's marker file. */
		is_link = 0;
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
	}
	if (n < 0)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "database %s: cannot read the marker %s/%s: %s", name,
				      a->base_dir, fname, strerror(errno));
	line[n] = '\0';
	/* Anything but a well-formed marker names no deployment: ambiguous. */
	if ((tag = marker_deployment(line, is_link)) == NULL)
		return ENVDB_OK;
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
