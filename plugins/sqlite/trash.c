/*
 * plugins/sqlite/trash.c — the optional trash of the sqlite adapter.  With
 * a trash configured, drop does not delete a database: it moves its files
 * (by rename, so the trash is on the same file system) into a new directory
 * <trash_dir>/env_<hex>.<unix time>[.<n>]/ where they keep their names, so
 * restoring is moving them back (an adopted database's files are stored
 * under the names of the environment's own database, env_<hex>.db...).
 * Entries older than grace_seconds are deleted by later drops and at init.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sqlite_adapter.h"

/* Entry names: SQLA_NAME_LEN + "." + up to 20 digits + "." + 2 digits. */
#define SQLA_ENTRY_MAX (SQLA_NAME_LEN + 32)
#define SQLA_ENTRY_TRIES 100

static void file_name(char fname[SQLA_FILE_MAX + 1], const char *name, int i)
{
	snprintf(fname, SQLA_FILE_MAX + 1, "%s.db%s", name, i < 0 ? "" : sqla_side_suffixes[i]);
}

/* Make a fresh entry directory for `name` dropped at `now`. */
static int make_entry(char entry[SQLA_ENTRY_MAX], const sqla *a, const char *name, int64_t now)
{
	int n;

	for (n = 0; n < SQLA_ENTRY_TRIES; n++) {
		if (n == 0)
			snprintf(entry, SQLA_ENTRY_MAX, "%s.%lld", name, (long long)now);
		else
			snprintf(entry, SQLA_ENTRY_MAX, "%s.%lld.%d", name, (long long)now, n);
		if (mkdirat(a->trash_fd, entry, 0700) == 0)
			return ENVDB_OK;
		if (errno != EEXIST)
			break;
	}
	return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
			      "drop database %s: cannot create %s/%s: %s", name, a->trash_dir,
			      entry, n == SQLA_ENTRY_TRIES ? "too many entries" : strerror(errno));
}

int sqla_trash_move(const sqla *a, const sqla_target *t)
{
	char src[NAME_MAX + 1], dst[SQLA_FILE_MAX + 1], entry[SQLA_ENTRY_MAX];
	int present[SQLA_N_SIDE_FILES + 1], moved[SQLA_N_SIDE_FILES + 1];
	struct stat st;
	int i, any = 0, edir = -1, rc, e;

	for (i = -1; i < SQLA_N_SIDE_FILES; i++) {
		sqla_target_file(src, t, i);
		present[i + 1] = fstatat(t->dir_fd, src, &st, AT_SYMLINK_NOFOLLOW) == 0;
		if (!present[i + 1] && errno != ENOENT)
			return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
					      "drop database %s: cannot stat %s/%s: %s", t->label,
					      t->dir, src, strerror(errno));
		any |= present[i + 1];
		moved[i + 1] = 0;
	}
	if (!any)
		return ENVDB_OK; /* already gone */

	rc = make_entry(entry, a, t->name, a->host->wall_s(a->host->ctx));
	if (rc != ENVDB_OK)
		return rc;
	edir = openat(a->trash_fd, entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (edir < 0) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "drop database %s: cannot open %s/%s: %s", t->label,
				    a->trash_dir, entry, strerror(errno));
		goto undo;
	}
	/* Main file first, for the reason given in sqlite_adapter.h.  Stored
	 * under the owned names, so that purging and restoring are the same
	 * for an adopted database. */
	for (i = -1; i < SQLA_N_SIDE_FILES; i++) {
		if (!present[i + 1])
			continue;
		sqla_target_file(src, t, i);
		file_name(dst, t->name, i);
		if (renameat(t->dir_fd, src, edir, dst) == 0) {
			moved[i + 1] = 1;
			continue;
		}
		e = errno;
		if (e == ENOENT)
			continue; /* SQLite removed its side file meanwhile */
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "drop database %s: cannot move %s/%s into %s/%s: %s%s", t->label,
				    t->dir, src, a->trash_dir, entry, strerror(e),
				    e == EXDEV ? " (the trash must be on the database's file "
						     "system; remove the file yourself, then drop "
						     "again)"
						   : "");
		goto undo;
	}
	if (fsync(edir) != 0 || fsync(a->trash_fd) != 0 || fsync(t->dir_fd) != 0) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "drop database %s: cannot sync %s: %s", t->label, a->trash_dir,
				    strerror(errno));
		goto undo;
	}
	close(edir);
	if (t->adopted)
		a->host->log(a->host->ctx, ENVDB_LOG_INFO,
			     "drop database %s: moved adopted %s into %s/%s as %s.db", t->label,
			     t->path, a->trash_dir, entry, t->name);
	return ENVDB_OK;
undo:
	/* Put back what was moved, so the database is either dropped or
	 * untouched. */
	for (i = SQLA_N_SIDE_FILES - 1; i >= -1; i--) {
		if (!moved[i + 1])
			continue;
		sqla_target_file(src, t, i);
		file_name(dst, t->name, i);
		if (renameat(edir, dst, t->dir_fd, src) != 0)
			a->host->log(a->host->ctx, ENVDB_LOG_ERROR,
				     "drop database %s: cannot move %s/%s/%s back to %s/%s: %s",
				     t->label, a->trash_dir, entry, dst, t->dir, src,
				     strerror(errno));
	}
	if (edir >= 0)
		close(edir);
	(void)unlinkat(a->trash_fd, entry, AT_REMOVEDIR);
	return rc;
}

/* Parse "env_<hex>.<time>[.<n>]"; the database name goes into `name`. */
static int parse_entry(char name[SQLA_NAME_LEN + 1], int64_t *when, const char *entry)
{
	const char *p;
	char *end;
	long long v;

	if (strlen(entry) <= SQLA_NAME_LEN + 1 || entry[SQLA_NAME_LEN] != '.')
		return 0;
	memcpy(name, entry, SQLA_NAME_LEN);
	name[SQLA_NAME_LEN] = '\0';
	if (!sqla_name_is_valid(name))
		return 0;
	p = entry + SQLA_NAME_LEN + 1;
	if (*p < '0' || *p > '9')
		return 0;
	errno = 0;
	v = strtoll(p, &end, 10);
	if (errno != 0 || v < 0)
		return 0;
	if (*end == '.') {
		p = end + 1;
		if (*p < '0' || *p > '9')
			return 0;
		(void)strtol(p, &end, 10);
	}
	if (*end != '\0')
		return 0;
	*when = v;
	return 1;
}

static void purge_entry(const sqla *a, int tdir, const char *entry, const char *name)
{
	char fname[SQLA_FILE_MAX + 1];
	int edir, i;

	edir = openat(tdir, entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (edir < 0) {
		a->host->log(a->host->ctx, ENVDB_LOG_WARNING, "purge trash: cannot open %s/%s: %s",
			     a->trash_dir, entry, strerror(errno));
		return;
	}
	/* Only the files drop puts there; anything else keeps the entry. */
	for (i = -1; i < SQLA_N_SIDE_FILES; i++) {
		file_name(fname, name, i);
		if (unlinkat(edir, fname, 0) != 0 && errno != ENOENT)
			a->host->log(a->host->ctx, ENVDB_LOG_WARNING,
				     "purge trash: cannot remove %s/%s/%s: %s", a->trash_dir,
				     entry, fname, strerror(errno));
	}
	close(edir);
	if (unlinkat(tdir, entry, AT_REMOVEDIR) != 0)
		a->host->log(a->host->ctx, ENVDB_LOG_WARNING,
			     "purge trash: cannot remove %s/%s: %s", a->trash_dir, entry,
			     strerror(errno));
	else
		a->host->log(a->host->ctx, ENVDB_LOG_INFO,
			     "purge trash: removed %s/%s (older than %lld seconds)",
			     a->trash_dir, entry, (long long)a->grace_seconds);
}

void sqla_trash_purge(const sqla *a)
{
	char name[SQLA_NAME_LEN + 1];
	int64_t now, when;
	struct dirent *de;
	DIR *dir;
	int fd;

	if (a->trash_fd < 0)
		return;
	now = a->host->wall_s(a->host->ctx);
	fd = openat(a->trash_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
		a->host->log(a->host->ctx, ENVDB_LOG_WARNING, "purge trash: cannot open %s: %s",
			     a->trash_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (!parse_entry(name, &when, de->d_name))
			continue;
		if (now - when < a->grace_seconds)
			continue;
		purge_entry(a, dirfd(dir), de->d_name, name);
	}
	closedir(dir);
}
