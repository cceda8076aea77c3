/*
 * plugins/kms/keyring.c — the keyring of the kms encryptor: a directory
 * holding one file per key (<key id>.key, exactly 32 raw bytes, mode 0600)
 * and a `current` file naming the key new ciphertexts are sealed with.
 *
 * The directory is the source of truth; the in-memory ring is a cache of
 * the keys loaded so far, in libsodium guarded memory that is PROT_NONE
 * while idle.  Key ids are validated before they are ever used in a path,
 * files are opened relative to the directory descriptor without following
 * symbolic links, and a key file that group or others can access is refused.
 *
 * Crash safety: a key file and `current` are each written under a
 * temporary name (.<id>.key.tmp, .current.<random>.tmp: O_EXCL, 0600,
 * flock'd while written), synced, then given their final name (link or
 * rename) and the directory synced, so a process killed at any point
 * leaves either no key file or a whole one.  Loading the keyring skips,
 * with a warning naming it, a non-current key file of the wrong size (left
 * by an older envdb killed mid-write) instead of refusing every command,
 * and removes temporary files nobody holds any more.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "kms.h"

#define KMS_KEY_FILE_MAX (KMS_ID_MAX + sizeof(KMS_KEY_SUFFIX))
/* .<id>.key.tmp */
#define KMS_KEY_TMP_MAX (KMS_KEY_FILE_MAX + 5)
#define KMS_TMP_SUFFIX ".tmp"
/* A temporary file nobody holds a lock on and older than this (seconds)
 * was left by a process that died: removed when the keyring is loaded. */
#define KMS_TMP_STALE_S 5

/* load_key(): the key file is incomplete or damaged (wrong size, short
 * read) and the caller asked to be told instead of a report. */
#define KMS_SKIPPED 1

int kms_id_is_valid(const char *s, size_t len)
{
	size_t i;

	if (s == NULL || len == 0 || len > KMS_ID_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

void kms_key_unlock(kms_key *key)
{
	if (key->protect_idle)
		sodium_mprotect_readonly(key->key);
}

/* Also the first protection of a key just loaded or made: read-only, or
 * no access at all until a use with key_protection: idle. */
void kms_key_lock(kms_key *key)
{
	if (key->protect_idle)
		sodium_mprotect_noaccess(key->key);
	else
		sodium_mprotect_readonly(key->key);
}

/* Ids made by key_generate carry their creation time:
 * k<YYYYMMDD>t<HHMMSS>z-<suffix>.  0 when `id` is not of that form. */
static int64_t id_time(const char *id)
{
	struct tm tm;
	int i;

	if (strlen(id) < 17 || id[0] != 'k' || id[9] != 't' || id[16] != 'z' ||
	    (id[17] != '\0' && id[17] != '-'))
		return 0;
	for (i = 1; i < 16; i++)
		if (i != 9 && (id[i] < '0' || id[i] > '9'))
			return 0;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (id[1] - '0') * 1000 + (id[2] - '0') * 100 + (id[3] - '0') * 10 +
		     (id[4] - '0') - 1900;
	tm.tm_mon = (id[5] - '0') * 10 + (id[6] - '0') - 1;
	tm.tm_mday = (id[7] - '0') * 10 + (id[8] - '0');
	tm.tm_hour = (id[10] - '0') * 10 + (id[11] - '0');
	tm.tm_min = (id[12] - '0') * 10 + (id[13] - '0');
	tm.tm_sec = (id[14] - '0') * 10 + (id[15] - '0');
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return 0;
	return (int64_t)timegm(&tm);
}

static int key_cmp(const void *pa, const void *pb)
{
	const kms_key *a = *(const kms_key *const *)pa, *b = *(const kms_key *const *)pb;

	if (a->created_at != b->created_at)
		return a->created_at < b->created_at ? -1 : 1;
	return strcmp(a->id, b->id);
}

static kms_key *ring_find(const kms *k, const char *id)
{
	size_t i;

	for (i = 0; i < k->n_keys; i++)
		if (strcmp(k->keys[i]->id, id) == 0)
			return k->keys[i];
	return NULL;
}

static void key_free(kms *k, kms_key *key)
{
	if (key == NULL)
		return;
	if (key->key != NULL)
		sodium_free(key->key); /* wipes, whatever the page protection */
	k->host->free(k->host->ctx, key);
}

/* Take ownership of `key` (freed on failure). */
static int ring_add(kms *k, kms_key *key, const char *op)
{
	kms_key **grown;
	size_t cap;

	if (k->n_keys == k->cap_keys) {
		cap = k->cap_keys ? 2 * k->cap_keys : 8;
		grown = k->host->realloc(k->host->ctx, k->keys, cap * sizeof(*grown));
		if (grown == NULL) {
			key_free(k, key);
			return k->host->error(k->host->ctx, ENVDB_ERR_NOMEM, NULL,
					      "%s: out of memory", op);
		}
		k->keys = grown;
		k->cap_keys = cap;
	}
	k->keys[k->n_keys++] = key;
	qsort(k->keys, k->n_keys, sizeof(*k->keys), key_cmp);
	return ENVDB_OK;
}

static void ring_remove(kms *k, kms_key *key)
{
	size_t i;

	for (i = 0; i < k->n_keys; i++)
		if (k->keys[i] == key) {
			memmove(&k->keys[i], &k->keys[i + 1],
				(k->n_keys - i - 1) * sizeof(*k->keys));
			k->n_keys--;
			break;
		}
	key_free(k, key);
}

static kms_key *key_new(kms *k, const char *id)
{
	kms_key *key = k->host->alloc(k->host->ctx, sizeof(*key));

	if (key == NULL)
		return NULL;
	memset(key, 0, sizeof(*key));
	snprintf(key->id, sizeof(key->id), "%s", id);
	key->protect_idle = k->protect_idle;
	key->key = sodium_malloc(KMS_KEY_BYTES);
	if (key->key == NULL) {
		k->host->free(k->host->ctx, key);
		return NULL;
	}
	return key;
}

/* Load key file <id>.key into the ring.  `id` is already validated.  With
 * `why` (why_cap bytes), an incomplete or damaged file is not reported but
 * described there, and KMS_SKIPPED returned; anything else (a link, wrong
 * mode, an I/O error) is reported whatever `why`. */
static int load_key(kms_key **out, kms *k, const char *id, const char *op, char *why,
		    size_t why_cap)
{
	char fname[KMS_KEY_FILE_MAX];
	kms_key *key = NULL;
	struct stat st;
	size_t got = 0;
	ssize_t r;
	char extra;
	int fd, rc;

	snprintf(fname, sizeof(fname), "%s" KMS_KEY_SUFFIX, id);
	fd = openat(k->dir_fd, fname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return k->host->error(k->host->ctx, ENVDB_ERR_NOT_FOUND, "ENOENT",
					      "%s: unknown key id %s (no %s/%s)", op, id, k->dir,
					      fname);
		if (errno == ELOOP)
			return k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, "ELOOP",
					      "%s: key file %s/%s is a symbolic link: refused", op,
					      k->dir, fname);
		return k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				      "%s: cannot open key file %s/%s: %s", op, k->dir, fname,
				      strerror(errno));
	}
	if (fstat(fd, &st) != 0) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				    "%s: cannot stat key file %s/%s: %s", op, k->dir, fname,
				    strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				    "%s: key file %s/%s is not a regular file: refused", op,
				    k->dir, fname);
		goto fail;
	}
	if ((st.st_mode & 077) != 0) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				    "%s: key file %s/%s is accessible by group or others (mode "
				    "%04o): refused; make it 0600",
				    op, k->dir, fname, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_size != KMS_KEY_BYTES && why != NULL) {
		snprintf(why, why_cap, "key file %s/%s holds %lld bytes, not %d", k->dir, fname,
			 (long long)st.st_size, KMS_KEY_BYTES);
		rc = KMS_SKIPPED;
		goto fail;
	}
	if (st.st_size != KMS_KEY_BYTES) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				    "%s: key file %s/%s holds %lld bytes, not %d", op, k->dir,
				    fname, (long long)st.st_size, KMS_KEY_BYTES);
		goto fail;
	}
	key = key_new(k, id);
	if (key == NULL) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_NOMEM, NULL,
				    "%s: key %s: out of secure memory", op, id);
		goto fail;
	}
	while (got < KMS_KEY_BYTES) {
		r = read(fd, key->key + got, KMS_KEY_BYTES - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if ((got != KMS_KEY_BYTES || read(fd, &extra, 1) != 0) && why != NULL) {
		snprintf(why, why_cap, "cannot read key file %s/%s: %s", k->dir, fname,
			 got != KMS_KEY_BYTES ? "short read" : "file grew while read");
		rc = KMS_SKIPPED;
		goto fail;
	}
	if (got != KMS_KEY_BYTES || read(fd, &extra, 1) != 0) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				    "%s: cannot read key file %s/%s: %s", op, k->dir, fname,
				    got != KMS_KEY_BYTES ? "short read" : "file grew while read");
		goto fail;
	}
	close(fd);
	fd = -1;
	kms_key_lock(key);
	key->created_at = id_time(id);
	if (key->created_at == 0)
		key->created_at = (int64_t)st.st_mtime;
	rc = ring_add(k, key, op);
	if (rc != ENVDB_OK)
		return rc;
	*out = key;
	return ENVDB_OK;
fail:
	if (fd >= 0)
		close(fd);
	key_free(k, key);
	return rc;
}

int kms_ring_get(kms_key **out, kms *k, const char *id, const char *op)
{
	if (!kms_id_is_valid(id, strlen(id)))
		return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: malformed key id", op);
	*out = ring_find(k, id);
	if (*out != NULL)
		return ENVDB_OK;
	return load_key(out, k, id, op, NULL, 0);
}

int kms_ring_current_id(char *id, kms *k, const char *op)
{
	char buf[KMS_ID_MAX + 3];
	struct stat st;
	ssize_t r;
	size_t len;
	int fd, rc;

	fd = openat(k->dir_fd, KMS_CURRENT_FILE, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return k->host->error(k->host->ctx, errno == ELOOP ? ENVDB_ERR_CONFIG : ENVDB_ERR_IO,
				      NULL, "%s: cannot open %s/" KMS_CURRENT_FILE ": %s", op,
				      k->dir, strerror(errno));
	}
	/* Whoever can write this file chooses the key new secrets go to. */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 022) != 0) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				    "%s: %s/" KMS_CURRENT_FILE " is not a regular file writable "
				    "only by its owner: refused",
				    op, k->dir);
		close(fd);
		return rc;
	}
	do
		r = read(fd, buf, sizeof(buf) - 1);
	while (r < 0 && errno == EINTR);
	close(fd);
	if (r < 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				      "%s: cannot read %s/" KMS_CURRENT_FILE ": %s", op, k->dir,
				      strerror(errno));
	len = (size_t)r;
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (!kms_id_is_valid(buf, len))
		return k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "%s: %s/" KMS_CURRENT_FILE " does not hold a key id "
				      "([a-z0-9-]{1,64} and a newline)",
				      op, k->dir);
	memcpy(id, buf, len);
	id[len] = '\0';
	return 1;
}

int kms_ring_current(kms_key **out, kms *k, const char *op)
{
	char id[KMS_ID_MAX + 1];
	int rc;

	rc = kms_ring_current_id(id, k, op);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "%s: no current key in keyring %s (make one with "
				      "`envdb key generate --current`)",
				      op, k->dir);
	rc = kms_ring_get(out, k, id, op);
	if (rc == ENVDB_ERR_NOT_FOUND)
		return k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "%s: current key %s of keyring %s has no key file", op, id,
				      k->dir);
	return rc;
}

static int is_tmp_name(const char *name);
static void stale_tmp_entry(kms *k, const char *op, const char *name, int64_t now);

/* Load the keys of the directory not in the ring yet; `current` (KMS_ID_MAX
 * + 1 bytes) receives the id `current` names ("" for none).  With
 * clean_tmp, the same pass removes the stale temporary files
 * (stale_tmp_entry): one read of the directory when the keyring is opened. */
static int ring_scan(kms *k, const char *op, char *current, int clean_tmp)
{
	char id[KMS_ID_MAX + 1], why[PATH_MAX + 160];
	const size_t slen = strlen(KMS_KEY_SUFFIX);
	int64_t now = clean_tmp ? k->host->wall_s(k->host->ctx) : 0;
	struct dirent *de;
	kms_key *key;
	DIR *dir;
	size_t len;
	int fd, rc = ENVDB_OK;

	/* The current key must be whole; any other may be skipped. */
	current[0] = '\0';
	if ((rc = kms_ring_current_id(current, k, op)) < 0)
		return rc;
	rc = ENVDB_OK;
	fd = openat(k->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				    "%s: cannot read keyring %s: %s", op, k->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (de == NULL) {
			if (errno != 0)
				rc = k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
						    "%s: cannot read keyring %s: %s", op, k->dir,
						    strerror(errno));
			break;
		}
		if (clean_tmp && is_tmp_name(de->d_name)) {
			stale_tmp_entry(k, op, de->d_name, now);
			continue;
		}
		len = strlen(de->d_name);
		if (len <= slen || strcmp(de->d_name + len - slen, KMS_KEY_SUFFIX) != 0)
			continue; /* `current`, temporary files, anything else */
		len -= slen;
		if (!kms_id_is_valid(de->d_name, len)) {
			k->host->log(k->host->ctx, ENVDB_LOG_WARNING,
				     "%s: keyring %s: ignoring %s: not a valid key id", op,
				     k->dir, de->d_name);
			continue;
		}
		memcpy(id, de->d_name, len);
		id[len] = '\0';
		if (ring_find(k, id) != NULL)
			continue;
		rc = load_key(&key, k, id, op, strcmp(id, current) == 0 ? NULL : why, sizeof(why));
		if (rc == KMS_SKIPPED) {
			k->host->log(k->host->ctx, ENVDB_LOG_WARNING,
				     "%s: skipping key %s: %s (incomplete or damaged; ciphertexts "
				     "sealed with it cannot be opened; remove the file if no "
				     "credential uses that key)",
				     op, id, why);
			rc = ENVDB_OK;
			continue;
		}
		if (rc != ENVDB_OK)
			break;
	}
	closedir(dir);
	return rc;
}

int kms_ring_refresh(kms *k, const char *op)
{
	char current[KMS_ID_MAX + 1];

	return ring_scan(k, op, current, 0);
}

/* A temporary file of ours: .current.<random>.tmp or .<id>.key.tmp. */
static int is_tmp_name(const char *name)
{
	size_t len = strlen(name), tl = strlen(KMS_TMP_SUFFIX);
	const size_t cl = strlen("." KMS_CURRENT_FILE "."), kl = strlen(KMS_KEY_SUFFIX);

	if (name[0] != '.' || len <= tl + 1 || strcmp(name + len - tl, KMS_TMP_SUFFIX) != 0)
		return 0;
	if (strncmp(name, "." KMS_CURRENT_FILE ".", cl) == 0)
		return 1;
	len -= tl;
	return len > kl + 1 && strncmp(name + len - kl, KMS_KEY_SUFFIX, kl) == 0 &&
	       kms_id_is_valid(name + 1, len - kl - 1);
}

/* Remove the temporary files left by processes killed while writing a key
 * or `current`: a writer holds an exclusive flock on its temporary file
 * until it is renamed, so one nobody holds (and not brand new: the lock
 * is taken just after the O_EXCL create) is garbage.  Best effort: a
 * failure is logged, never fatal (the files are ignored when loading). */
static void stale_tmp_entry(kms *k, const char *op, const char *name, int64_t now)
{
	struct stat st;
	int fd;

	fd = openat(k->dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (int64_t)st.st_mtime + KMS_TMP_STALE_S <= now && flock(fd, LOCK_EX | LOCK_NB) == 0) {
		if (unlinkat(k->dir_fd, name, 0) == 0)
			k->host->log(k->host->ctx, ENVDB_LOG_WARNING,
				     "%s: removed %s/%s, a temporary file left by an "
				     "interrupted key generate",
				     op, k->dir, name);
		else
			k->host->log(k->host->ctx, ENVDB_LOG_WARNING,
				     "%s: cannot remove stale temporary file %s/%s: %s", op, k->dir,
				     name, strerror(errno));
	}
	close(fd); /* drops the lock */
}

int kms_ring_open(kms *k, const char *dir)
{
	char current[KMS_ID_MAX + 1];
	kms_key *cur;
	struct stat st;
	int rc;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				      "cannot create keyring %s: %s", dir, strerror(errno));
	k->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (k->dir_fd < 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				      "cannot open keyring %s: %s", dir, strerror(errno));
	if (fstat(k->dir_fd, &st) != 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				      "cannot stat keyring %s: %s", dir, strerror(errno));
	/* Whoever can write the directory can replace keys and `current`;
	 * whoever can read it learns the key ids: owner only (0700). */
	if ((st.st_mode & 077) != 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "keyring %s is accessible by group or others (mode "
				      "%04o): refused; make it 0700",
				      dir, (unsigned)(st.st_mode & 07777));
	/* ... and its owner, who could chmod it at will: root or us. */
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "keyring %s is owned by uid %u, neither root nor the "
				      "current user (uid %u): refused",
				      dir, (unsigned)st.st_uid, (unsigned)geteuid());
	/* One pass: the keys, and the stale temporary files removed. */
	rc = ring_scan(k, "load keyring", current, 1);
	if (rc != ENVDB_OK)
		return rc;
	/* An empty keyring is fine (`envdb init` generates the first key);
	 * a `current` file naming a missing key is not (the id the scan
	 * read: `current` is read once, not three times). */
	if (current[0] == '\0')
		return ENVDB_OK;
	rc = kms_ring_get(&cur, k, current, "load keyring");
	if (rc == ENVDB_ERR_NOT_FOUND)
		return k->host->error(k->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "load keyring: current key %s of keyring %s has no key file",
				      current, k->dir);
	return rc;
}

void kms_ring_close(kms *k)
{
	size_t i;

	for (i = 0; i < k->n_keys; i++)
		key_free(k, k->keys[i]);
	if (k->keys != NULL)
		k->host->free(k->host->ctx, k->keys);
	k->keys = NULL;
	k->n_keys = k->cap_keys = 0;
	if (k->dir_fd >= 0)
		close(k->dir_fd);
	k->dir_fd = -1;
}

/* Write `len` bytes to `fd`, retrying short writes. */
static int write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	ssize_t w;

	while (len > 0) {
		w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Give `data` the name `name` in the keyring atomically: temporary file
 * `tmp` (O_EXCL, 0600, flock'd so that stale_tmp_entry() leaves it alone),
 * write, fsync, then rename over `name` (replace) or link to it (!replace:
 * ENVDB_ERR_EXISTS when `name` exists), and fsync the directory.  A crash
 * at any point leaves `name` as it was or whole, never partial; at worst a
 * temporary file, removed by a later load.  `id` names the key in
 * messages. */
static int publish(kms *k, const char *tmp, const char *name, const void *data, size_t len,
		   int replace, const char *id)
{
	int fd, rc;

	fd = openat(k->dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				      "key generate %s: cannot create %s/%s: %s", id, k->dir, tmp,
				      strerror(errno));
	if (flock(fd, LOCK_EX) != 0 || fchmod(fd, 0600) != 0 || write_all(fd, data, len) != 0 ||
	    fsync(fd) != 0) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				    "key generate %s: cannot write %s/%s: %s", id, k->dir, tmp,
				    strerror(errno));
		close(fd);
		goto fail;
	}
	if (replace) {
		rc = renameat(k->dir_fd, tmp, k->dir_fd, name);
	} else {
		/* link() never replaces; a file system without hard links
		 * gets a rename (the id's random suffix makes a clash moot). */
		rc = linkat(k->dir_fd, tmp, k->dir_fd, name, 0);
		if (rc != 0 && (errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP ||
				errno == EMLINK))
			rc = renameat(k->dir_fd, tmp, k->dir_fd, name);
		else if (rc == 0)
			(void)unlinkat(k->dir_fd, tmp, 0);
	}
	if (rc != 0) {
		rc = k->host->error(k->host->ctx,
				    !replace && errno == EEXIST ? ENVDB_ERR_EXISTS : ENVDB_ERR_IO,
				    NULL, "key generate %s: cannot rename %s/%s to %s: %s", id,
				    k->dir, tmp, name, strerror(errno));
		close(fd);
		goto fail;
	}
	close(fd);
	if (fsync(k->dir_fd) != 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_IO, NULL,
				      "key generate %s: cannot sync keyring %s: %s", id, k->dir,
				      strerror(errno));
	return ENVDB_OK;
fail:
	(void)unlinkat(k->dir_fd, tmp, 0);
	return rc;
}

/* Replace `current` atomically. */
static int set_current(kms *k, const char *id)
{
	char tmp[64], line[KMS_ID_MAX + 2];
	uint32_t r = randombytes_random();

	snprintf(tmp, sizeof(tmp), "." KMS_CURRENT_FILE ".%08x" KMS_TMP_SUFFIX, (unsigned)r);
	snprintf(line, sizeof(line), "%s\n", id);
	return publish(k, tmp, KMS_CURRENT_FILE, line, strlen(line), 1, id);
}

/* Does the `current` pointer on disk name `id` now?  (A failure after its
 * rename, such as the directory fsync, leaves it naming the new key: that
 * key file must then stay.) */
static int current_names(kms *k, const char *id)
{
	char buf[KMS_ID_MAX + 2];
	ssize_t n;
	int fd = openat(k->dir_fd, KMS_CURRENT_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return strcmp(buf, id) == 0;
}

int kms_ring_generate(char *id, kms *k, int make_current)
{
	char fname[KMS_KEY_FILE_MAX], tmp[KMS_KEY_TMP_MAX], stamp[32];
	unsigned char suffix[4];
	kms_key *key = NULL;
	time_t now = (time_t)k->host->wall_s(k->host->ctx);
	struct tm tm;
	int created = 0, rc;

	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(stamp, sizeof(stamp), "k%Y%m%dt%H%M%Sz", &tm) == 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_GENERIC, NULL,
				      "key generate: cannot format the time");
	randombytes_buf(suffix, sizeof(suffix));
	snprintf(id, KMS_ID_MAX + 1, "%s-%02x%02x%02x%02x", stamp, suffix[0], suffix[1],
		 suffix[2], suffix[3]);
	snprintf(fname, sizeof(fname), "%s" KMS_KEY_SUFFIX, id);

	key = key_new(k, id);
	if (key == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_NOMEM, NULL,
				      "key generate %s: out of secure memory", id);
	crypto_aead_xchacha20poly1305_ietf_keygen(key->key);
	key->created_at = (int64_t)now;

	snprintf(tmp, sizeof(tmp), ".%s" KMS_TMP_SUFFIX, fname);
	rc = publish(k, tmp, fname, key->key, KMS_KEY_BYTES, 0, id);
	if (rc != ENVDB_OK)
		goto fail;
	created = 1;
	kms_key_lock(key);
	rc = ring_add(k, key, "key generate");
	key = NULL; /* owned by the ring, or freed */
	if (rc != ENVDB_OK)
		goto fail;
	if (make_current) {
		rc = set_current(k, id);
		if (rc != ENVDB_OK) {
			if (current_names(k, id)) /* renamed, then failed: keep the key */
				return rc;
			ring_remove(k, ring_find(k, id));
			goto fail;
		}
	}
	return ENVDB_OK;
fail:
	if (created)
		(void)unlinkat(k->dir_fd, fname, 0); /* nothing half-done */
	key_free(k, key);
	return rc;
}
