/*
 * core/trust.c — may a file the process loads (the manifest, a plugin) or
 * opens for its state (the control plane) be trusted?
 *
 * The rule is OpenSSH's secure_filename(): the file and every directory on
 * the path from / to it must be owned by root or by the effective user, and
 * writable by nobody else (no group or other write bit).  One exception: a
 * directory with the sticky bit (/tmp, mode 1777) may be writable by
 * others, because in it nobody but its owner and root can rename or remove
 * what another user created — the rest of the path is still checked.
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* "root", "NAME (uid N)" or "uid N". */
static void owner_text(char *out, size_t cap, uid_t uid)
{
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (uid == 0) {
		snprintf(out, cap, "root");
		return;
	}
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL)
		snprintf(out, cap, "%s (uid %u)", res->pw_name, (unsigned)uid);
	else
		snprintf(out, cap, "uid %u", (unsigned)uid);
}

bool envdbi_trusted(const char *path, const struct stat *st, char *why, size_t cap)
{
	uid_t me = geteuid();
	char owner[160];
	const char *kind = S_ISDIR(st->st_mode) ? "directory" : "file";

	/* The owner's name only for a refusal: getpwuid_r reads the user
	 * database (an open, read and close of /etc/passwd each time), which
	 * was most of the system calls of a plugin load, for every directory
	 * on every path checked. */
	if (st->st_uid != 0 && st->st_uid != me) {
		owner_text(owner, sizeof(owner), st->st_uid);
		snprintf(why, cap,
			 "%s %s is owned by %s (mode %04o), neither root nor the current user "
			 "(uid %u)",
			 kind, path, owner, (unsigned)(st->st_mode & 07777), (unsigned)me);
		return false;
	}
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
	    !(S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX))) {
		owner_text(owner, sizeof(owner), st->st_uid);
		snprintf(why, cap,
			 "%s %s is writable by group or others (mode %04o, owner %s); make it "
			 "writable by its owner only (chmod go-w)",
			 kind, path, (unsigned)(st->st_mode & 07777), owner);
		return false;
	}
	return true;
}

/* One directory on the path to `dir`. */
static bool trusted_dir(const char *path, const char *dir, char *why, size_t cap)
{
	struct stat st;

	if (lstat(path, &st) != 0) {
		snprintf(why, cap, "cannot check directory %s: %s", path, strerror(errno));
		return false;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, cap, "%s (on the path to %s) is %s", path, dir,
			 S_ISLNK(st.st_mode) ? "a symbolic link" : "not a directory");
		return false;
	}
	return envdbi_trusted(path, &st, why, cap);
}

bool envdbi_trusted_dirs(const char *dir, char *why, size_t cap)
{
	size_t len, i;
	char *buf;
	bool ok;

	if (dir == NULL || dir[0] != '/') {
		snprintf(why, cap, "directory %s is not an absolute path", dir ? dir : "(null)");
		return false;
	}
	len = strlen(dir);
	if ((buf = strdup(dir)) == NULL) {
		snprintf(why, cap, "out of memory checking %s", dir);
		return false;
	}
	/* "/", then every prefix that ends before a '/' or at the end */
	ok = trusted_dir("/", dir, why, cap);
	for (i = 1; i <= len && ok; i++) {
		if ((i < len && buf[i] != '/') || buf[i - 1] == '/')
			continue;
		buf[i] = '\0';
		ok = trusted_dir(buf, dir, why, cap);
		buf[i] = dir[i];
	}
	free(buf);
	return ok;
}
