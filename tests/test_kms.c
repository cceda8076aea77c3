/*
 * tests/test_kms.c — the kms encryptor plugin (plugins/kms), loaded the way
 * the host loads it: a manifest in a fresh mkdtemp() directory, read by
 * envdbi_manifest_load(), the module opened from $ENVDB_PLUGIN_DIR by
 * envdbi_plugins_load(), and every call made through the envdbi_encryptor_*
 * wrappers of core/host.c.  The keyring is a real directory on disk.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"

static const char SECRET[] = "s3cr3t-db-token";
static const char AAD[] = "credential=6a1f|database=93c2";

/* Directories are kept well below PATH_MAX so paths built from them fit. */
#define DIR_MAX 1024

static char tmpdir[DIR_MAX];
static char keydir[DIR_MAX + 64];
static char manifest_path[DIR_MAX + 64];

/* Everything a loaded plugin set needs; tests may load more than one. */
typedef struct loaded {
	envdbi_manifest *m;
	envdbi_plugins *set;
	envdbi_plugin *p;
} loaded;

static loaded L;

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

static void key_path(char *out, size_t n, const char *id)
{
	int len = snprintf(out, n, "%s/%s.key", keydir, id);

	ck_assert(len > 0 && (size_t)len < n);
}

/* Load the manifest and its plugins; returns the status of the first
 * failing step (the last error tells why). */
static int load(loaded *l)
{
	int rc;

	memset(l, 0, sizeof(*l));
	rc = envdbi_manifest_load(&l->m, manifest_path);
	if (rc != ENVDB_OK)
		return rc;
	rc = envdbi_plugins_load(&l->set, l->m);
	if (rc != ENVDB_OK)
		return rc;
	l->p = envdbi_plugins_find(l->set, "kms", ENVDB_PLUGIN_ENCRYPTOR);
	ck_assert_ptr_nonnull(l->p);
	return ENVDB_OK;
}

static void unload(loaded *l)
{
	if (l->set != NULL)
		envdbi_plugins_free(l->set);
	if (l->m != NULL)
		envdbi_manifest_free(l->m);
	memset(l, 0, sizeof(*l));
}

static void reload(void)
{
	unload(&L);
	ck_assert_int_eq(load(&L), ENVDB_OK);
}

static void setup(void)
{
	FILE *f;

	snprintf(tmpdir, sizeof(tmpdir), "%s/envdb-kms-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(keydir, sizeof(keydir), "%s/keys", tmpdir);
	snprintf(manifest_path, sizeof(manifest_path), "%s/envdb.yaml", tmpdir);
	f = fopen(manifest_path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "version: 1\n"
		   "plugins:\n"
		   "  - name: kms\n"
		   "    kind: encryptor\n"
		   "    config:\n"
		   "      keyring_dir: keys\n");
	fclose(f);
	ck_assert_int_eq(load(&L), ENVDB_OK);
}

static void teardown(void)
{
	unload(&L);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static envdbi_secret *secret_of(const char *s)
{
	envdbi_secret *sec = envdbi_secret_new(s, strlen(s));

	ck_assert_ptr_nonnull(sec);
	return sec;
}

/* Encrypt SECRET with AAD under the current key. */
static char *seal(char **key_id)
{
	envdbi_secret *pt = secret_of(SECRET);
	char *ct = NULL, *kid = NULL;

	ck_assert_int_eq(envdbi_encryptor_encrypt(L.p, pt, AAD, strlen(AAD), &ct, &kid), ENVDB_OK);
	envdbi_secret_free(pt);
	if (key_id != NULL)
		*key_id = kid;
	else
		free(kid);
	return ct;
}

static char *generate(int make_current)
{
	char *id = NULL;

	ck_assert_int_eq(envdbi_encryptor_key_generate(L.p, make_current, &id), ENVDB_OK);
	ck_assert_ptr_nonnull(id);
	return id;
}

/* Decrypt and return the status; the plaintext, if any, is checked. */
static int open_ct(const char *ct, const char *aad)
{
	envdbi_secret *pt = NULL;
	int rc = envdbi_encryptor_decrypt(L.p, ct, aad, strlen(aad), &pt);

	if (rc == ENVDB_OK) {
		ck_assert_ptr_nonnull(pt);
		ck_assert_uint_eq(pt->len, strlen(SECRET));
		ck_assert_str_eq(pt->data, SECRET);
		envdbi_secret_free(pt);
	} else {
		ck_assert_ptr_null(pt);
	}
	return rc;
}

/* Replace the key id of `ct` by `id`; malloc'd. */
static char *with_key_id(const char *ct, const char *id)
{
	const char *body = strchr(ct + 5, '.');
	size_t n;
	char *out;

	ck_assert_ptr_nonnull(body);
	n = 5 + strlen(id) + strlen(body) + 1;
	out = malloc(n);
	ck_assert_ptr_nonnull(out);
	snprintf(out, n, "edb1.%s%s", id, body);
	return out;
}

static void assert_no_secret_in_error(void)
{
	const envdb_error *e = envdb_error_last();

	ck_assert_ptr_null(strstr(e->message, SECRET));
}

typedef struct key_seen {
	char ids[8][80];
	int current[8];
	int64_t created[8];
	int n;
} key_seen;

static int key_cb(void *ctx, const char *id, int is_current, int64_t created_at)
{
	key_seen *s = ctx;

	ck_assert_int_lt(s->n, 8);
	snprintf(s->ids[s->n], sizeof(s->ids[s->n]), "%s", id);
	s->current[s->n] = is_current;
	s->created[s->n] = created_at;
	s->n++;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* tests                                                                     */
/* ------------------------------------------------------------------------ */

START_TEST(test_descriptor)
{
	const envdb_plugin_descriptor *d = envdbi_plugin_descriptor(L.p);
	uint64_t caps = envdbi_plugin_capabilities(L.p);
	const envdb_config_key *k;
	int found = 0;

	ck_assert_str_eq(d->name, "kms");
	ck_assert_uint_eq(d->kind, ENVDB_PLUGIN_ENCRYPTOR);
	ck_assert(caps & ENVDB_ENCRYPTOR_CAP_REWRAP);
	ck_assert(caps & ENVDB_ENCRYPTOR_CAP_KEY_MANAGE);
	ck_assert(caps & ENVDB_ENCRYPTOR_CAP_HEALTH);
	ck_assert(caps & ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS);
	for (k = d->config_keys; k != NULL && k->name != NULL; k++)
		if (strcmp(k->name, "keyring_dir") == 0) {
			ck_assert(k->flags & ENVDB_CONFIG_REQUIRED);
			found = 1;
		}
	ck_assert(found);
}
END_TEST

START_TEST(test_empty_keyring)
{
	envdbi_secret *pt = secret_of(SECRET);
	char *ct = NULL, *kid = NULL;
	key_seen seen = {.n = 0};
	struct stat st;

	/* The keyring directory was created, private. */
	ck_assert_int_eq(stat(keydir, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0700);

	ck_assert_int_eq(envdbi_encryptor_current_key(L.p, &kid), ENVDB_ERR_CONFIG);
	/* unhealthy: no current key */
	ck_assert_int_eq(envdbi_encryptor_health(L.p), ENVDB_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "plugin kms: health: "));
	ck_assert_int_eq(envdbi_encryptor_encrypt(L.p, pt, AAD, strlen(AAD), &ct, &kid),
			 ENVDB_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "no current key"));
	ck_assert_ptr_null(ct);
	ck_assert_int_eq(envdbi_encryptor_key_list(L.p, key_cb, &seen), ENVDB_OK);
	ck_assert_int_eq(seen.n, 0);
	envdbi_secret_free(pt);
}
END_TEST

START_TEST(test_round_trip)
{
	char *id = generate(1), *kid = NULL, *cur = NULL, *of = NULL, *ct, prefix[128];
	char path[PATH_MAX], current[128] = "";
	envdbi_secret *pt = NULL, *empty;
	struct stat st;
	size_t i;
	FILE *f;

	/* Key id shape: k<YYYYMMDD>t<HHMMSS>z-<8 hex>. */
	ck_assert_uint_eq(strlen(id), 26);
	ck_assert_int_eq(id[0], 'k');
	ck_assert_int_eq(id[9], 't');
	ck_assert_int_eq(id[16], 'z');
	ck_assert_int_eq(id[17], '-');
	key_path(path, sizeof(path), id);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(st.st_size, 32);
	snprintf(path, sizeof(path), "%s/current", keydir);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(current, sizeof(current), f));
	fclose(f);
	snprintf(prefix, sizeof(prefix), "%s\n", id);
	ck_assert_str_eq(current, prefix);
	ck_assert_int_eq(envdbi_encryptor_current_key(L.p, &cur), ENVDB_OK);
	ck_assert_str_eq(cur, id);

	ct = seal(&kid);
	ck_assert_str_eq(kid, id);
	snprintf(prefix, sizeof(prefix), "edb1.%s.", id);
	ck_assert_int_eq(strncmp(ct, prefix, strlen(prefix)), 0);
	for (i = 0; ct[i] != '\0'; i++)
		ck_assert_msg(ct[i] > 0x20 && ct[i] < 0x7f, "byte %zu of the ciphertext", i);
	ck_assert_ptr_null(strstr(ct, SECRET));
	ck_assert_int_eq(envdbi_encryptor_key_of(L.p, ct, &of), ENVDB_OK);
	ck_assert_str_eq(of, id);
	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);

	/* Two encryptions of the same secret differ (random nonce). */
	{
		char *ct2 = seal(NULL);
		ck_assert_str_ne(ct, ct2);
		ck_assert_int_eq(open_ct(ct2, AAD), ENVDB_OK);
		free(ct2);
	}

	/* An empty plaintext and empty associated data work too. */
	empty = envdbi_secret_new("", 0);
	ck_assert_ptr_nonnull(empty);
	free(kid);
	kid = NULL;
	{
		char *ct3 = NULL;
		ck_assert_int_eq(envdbi_encryptor_encrypt(L.p, empty, NULL, 0, &ct3, &kid),
				 ENVDB_OK);
		ck_assert_int_eq(envdbi_encryptor_decrypt(L.p, ct3, NULL, 0, &pt), ENVDB_OK);
		ck_assert_uint_eq(pt->len, 0);
		envdbi_secret_free(pt);
		free(ct3);
	}
	envdbi_secret_free(empty);

	/* Still decrypts after the plugin is unloaded and loaded again. */
	reload();
	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
	free(ct);
	free(id);
	free(kid);
	free(cur);
	free(of);
}
END_TEST

START_TEST(test_wrong_aad)
{
	char *id = generate(1), *ct = seal(NULL);
	envdbi_secret *pt = NULL;

	ck_assert_int_eq(open_ct(ct, "credential=6a1f|database=93c3"), ENVDB_ERR_INTEGRITY);
	assert_no_secret_in_error();
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, id));
	ck_assert_int_eq(open_ct(ct, "credential=6a1f|database=93c2 "), ENVDB_ERR_INTEGRITY);
	ck_assert_int_eq(envdbi_encryptor_decrypt(L.p, ct, NULL, 0, &pt), ENVDB_ERR_INTEGRITY);
	ck_assert_ptr_null(pt);
	/* Rewrap needs the right associated data as well. */
	{
		char *out = NULL, *kid = NULL;
		ck_assert_int_eq(envdbi_encryptor_rewrap(L.p, ct, "x", 1, &out, &kid),
				 ENVDB_ERR_INTEGRITY);
		ck_assert_ptr_null(out);
	}
	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
	free(ct);
	free(id);
}
END_TEST

START_TEST(test_tampered)
{
	char *id = generate(1), *ct = seal(NULL), *t;
	const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t len = strlen(ct), id_start = 5, id_end = 5 + strlen(id), i;
	int rc;

	t = malloc(len + 2);
	ck_assert_ptr_nonnull(t);
	for (i = 0; i < len; i++) {
		/* Flip the low bit of byte i. */
		memcpy(t, ct, len + 1);
		t[i] = (char)(t[i] ^ 1);
		rc = open_ct(t, AAD);
		if (i >= id_start && i < id_end)
			/* a changed key id names another (unknown) key or is malformed */
			ck_assert_msg(rc == ENVDB_ERR_NOT_FOUND || rc == ENVDB_ERR_INVALID ||
					      rc == ENVDB_ERR_INTEGRITY,
				      "flip at %zu (key id): %d", i, rc);
		else
			ck_assert_msg(rc == ENVDB_ERR_INTEGRITY || rc == ENVDB_ERR_INVALID,
				      "flip at %zu: %d", i, rc);
		/* Replace byte i of the body by another base64url character: the
		 * encoding stays valid, so the AEAD must catch it. */
		if (i > id_end) {
			memcpy(t, ct, len + 1);
			t[i] = b64[(strchr(b64, ct[i]) - b64 + 1) % 64];
			rc = open_ct(t, AAD);
			ck_assert_msg(rc == ENVDB_ERR_INTEGRITY ||
					      (i == len - 1 && rc == ENVDB_ERR_INVALID),
				      "substitution at %zu: %d", i, rc);
		}
	}
	/* Truncated, extended, emptied. */
	memcpy(t, ct, len + 1);
	t[len - 1] = '\0';
	rc = open_ct(t, AAD);
	ck_assert(rc == ENVDB_ERR_INTEGRITY || rc == ENVDB_ERR_INVALID);
	memcpy(t, ct, len);
	t[len] = 'A';
	t[len + 1] = '\0';
	rc = open_ct(t, AAD);
	ck_assert(rc == ENVDB_ERR_INTEGRITY || rc == ENVDB_ERR_INVALID);
	t[id_end + 1] = '\0';
	ck_assert_int_eq(open_ct(t, AAD), ENVDB_ERR_INVALID);
	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
	free(t);
	free(ct);
	free(id);
}
END_TEST

START_TEST(test_malformed)
{
	static const char *const bad[] = {
		"",
		"garbage",
		"edb1",
		"edb1.",
		"edb1.kabc",
		"edb1.kabc.",
		"edb2.kabc.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"edb1.KABC.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"edb1.k/../../x.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"edb1.kabc.AAAA",
		"edb1.kabc.AAAA AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"edb1.kabc.AAAA=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"edb1.kabc.AAAA+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		NULL,
	};
	char *id = generate(1), *kid = NULL;
	size_t i;

	for (i = 0; bad[i] != NULL; i++) {
		ck_assert_msg(open_ct(bad[i], AAD) == ENVDB_ERR_INVALID, "decrypt '%s'", bad[i]);
		ck_assert_msg(envdbi_encryptor_key_of(L.p, bad[i], &kid) == ENVDB_ERR_INVALID,
			      "key_of '%s'", bad[i]);
		ck_assert_ptr_null(kid);
	}
	free(id);
}
END_TEST

START_TEST(test_unknown_key)
{
	char *id = generate(1), *ct = seal(NULL), *other, *kid = NULL, *out = NULL;

	other = with_key_id(ct, "knot-in-the-ring");
	ck_assert_int_eq(open_ct(other, AAD), ENVDB_ERR_NOT_FOUND);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "knot-in-the-ring"));
	ck_assert_int_eq(envdbi_encryptor_rewrap(L.p, other, AAD, strlen(AAD), &out, &kid),
			 ENVDB_ERR_NOT_FOUND);
	/* key_of reads the id without needing the key. */
	ck_assert_int_eq(envdbi_encryptor_key_of(L.p, other, &kid), ENVDB_OK);
	ck_assert_str_eq(kid, "knot-in-the-ring");
	free(kid);
	free(other);
	free(ct);
	free(id);
}
END_TEST

START_TEST(test_key_id_swap)
{
	char *a = generate(1), *ct = seal(NULL), *b, *swapped;
	char src[PATH_MAX], dst[PATH_MAX];
	unsigned char key[64];
	ssize_t n;
	int fd;

	/* A second key id whose file holds the very same key bytes: only the
	 * key id in the associated data tells them apart. */
	key_path(src, sizeof(src), a);
	key_path(dst, sizeof(dst), "kclone");
	fd = open(src, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	n = read(fd, key, sizeof(key));
	close(fd);
	ck_assert_int_eq(n, 32);
	write_file(dst, key, 32, 0600);
	sodium_memzero(key, sizeof(key));
	swapped = with_key_id(ct, "kclone");
	ck_assert_int_eq(open_ct(swapped, AAD), ENVDB_ERR_INTEGRITY);
	free(swapped);

	/* Swapped for a different key of the ring. */
	b = generate(0);
	swapped = with_key_id(ct, b);
	ck_assert_int_eq(open_ct(swapped, AAD), ENVDB_ERR_INTEGRITY);
	free(swapped);

	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
	free(ct);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_rewrap)
{
	char *a = generate(1), *kid_a = NULL, *ct1 = seal(&kid_a), *b, *ct2 = NULL, *kid2 = NULL;
	char *of = NULL, *ct3 = NULL, *kid3 = NULL, path[PATH_MAX];
	key_seen seen = {.n = 0};
	bool cur = true;

	ck_assert_str_eq(kid_a, a);
	ck_assert_int_eq(envdbi_encryptor_health(L.p), ENVDB_OK);
	ck_assert_int_eq(envdbi_encryptor_is_current(L.p, ct1, &cur), ENVDB_OK);
	ck_assert(cur);
	sleep(1); /* distinct creation times */
	b = generate(1);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(envdbi_encryptor_key_of(L.p, ct1, &of), ENVDB_OK);
	ck_assert_str_eq(of, a);
	free(of);
	of = NULL;
	/* under a key that is no longer current */
	ck_assert_int_eq(envdbi_encryptor_is_current(L.p, ct1, &cur), ENVDB_OK);
	ck_assert(!cur);
	ck_assert_int_eq(envdbi_encryptor_is_current(L.p, "edb1.garbage", &cur), ENVDB_ERR_INVALID);

	ck_assert_int_eq(envdbi_encryptor_rewrap(L.p, ct1, AAD, strlen(AAD), &ct2, &kid2),
			 ENVDB_OK);
	ck_assert_str_eq(kid2, b);
	ck_assert_int_eq(envdbi_encryptor_key_of(L.p, ct2, &of), ENVDB_OK);
	ck_assert_str_eq(of, b);
	ck_assert_int_eq(open_ct(ct2, AAD), ENVDB_OK);
	/* The old ciphertext still opens while its key exists. */
	ck_assert_int_eq(open_ct(ct1, AAD), ENVDB_OK);
	/* Rewrapping what is already current re-seals it (new nonce). */
	ck_assert_int_eq(envdbi_encryptor_rewrap(L.p, ct2, AAD, strlen(AAD), &ct3, &kid3),
			 ENVDB_OK);
	ck_assert_str_eq(kid3, b);
	ck_assert_str_ne(ct3, ct2);
	ck_assert_int_eq(open_ct(ct3, AAD), ENVDB_OK);

	ck_assert_int_eq(envdbi_encryptor_key_list(L.p, key_cb, &seen), ENVDB_OK);
	ck_assert_int_eq(seen.n, 2);
	ck_assert_str_eq(seen.ids[0], a);
	ck_assert_str_eq(seen.ids[1], b);
	ck_assert_int_eq(seen.current[0], 0);
	ck_assert_int_eq(seen.current[1], 1);
	ck_assert_int_gt(seen.created[0], 1600000000);
	ck_assert_int_lt(seen.created[0], seen.created[1]);

	/* Retire key a: what it sealed no longer opens, the rewrapped copy does. */
	key_path(path, sizeof(path), a);
	ck_assert_int_eq(unlink(path), 0);
	reload();
	ck_assert_int_eq(open_ct(ct1, AAD), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_eq(open_ct(ct2, AAD), ENVDB_OK);
	ck_assert_int_eq(envdbi_encryptor_is_current(L.p, ct2, &cur), ENVDB_OK);
	ck_assert(cur);
	/* `current` names a key that is not there: unhealthy, and says so */
	{
		FILE *f;
		snprintf(path, sizeof(path), "%s/current", keydir);
		f = fopen(path, "w");
		ck_assert_ptr_nonnull(f);
		fputs("no-such-key\n", f);
		fclose(f);
	}
	ck_assert_int_lt(envdbi_encryptor_health(L.p), 0);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "plugin kms: health: "));
	free(a);
	free(b);
	free(kid_a);
	free(ct1);
	free(ct2);
	free(kid2);
	free(ct3);
	free(kid3);
	free(of);
}
END_TEST

START_TEST(test_group_readable_refused)
{
	char *id = generate(1), *ct = seal(NULL), path[PATH_MAX], *late;
	const envdb_error *e;

	key_path(path, sizeof(path), id);
	ck_assert_int_eq(chmod(path, 0640), 0);
	unload(&L);
	ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
	e = envdb_error_last();
	ck_assert_int_eq(e->status, ENVDB_ERR_CONFIG);
	ck_assert_msg(strstr(e->message, path) != NULL, "message names the file: %s", e->message);
	ck_assert_msg(strstr(e->message, "group or others") != NULL, "%s", e->message);
	unload(&L);

	/* 0604 (others only) is refused as well. */
	ck_assert_int_eq(chmod(path, 0604), 0);
	ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
	unload(&L);

	/* A key file that appears later, readable by others, is refused when
	 * first used. */
	ck_assert_int_eq(chmod(path, 0600), 0);
	ck_assert_int_eq(load(&L), ENVDB_OK);
	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
	key_path(path, sizeof(path), "klate");
	write_file(path, "0123456789abcdef0123456789abcdef", 32, 0644);
	late = with_key_id(ct, "klate");
	ck_assert_int_eq(open_ct(late, AAD), ENVDB_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, path));
	free(late);
	free(ct);
	free(id);
}
END_TEST

/* Whoever can write `current` chooses the key new secrets are sealed with,
 * and whoever can read or write the keyring directory learns or replaces
 * keys: refused, and the message says what and how to fix it.  Readable
 * `current` is fine (it holds a key id, not a key). */
START_TEST(test_writable_current_and_keyring_refused)
{
	static const mode_t bad_current[] = {0620, 0602, 0622, 0660};
	static const mode_t bad_dir[] = {0750, 0705, 0770, 0777, 0710};
	char *id = generate(1), path[PATH_MAX], want[PATH_MAX + 128];
	size_t i;

	snprintf(path, sizeof(path), "%s/current", keydir);
	for (i = 0; i < sizeof(bad_current) / sizeof(bad_current[0]); i++) {
		ck_assert_int_eq(chmod(path, bad_current[i]), 0);
		unload(&L);
		ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
		snprintf(want, sizeof(want), "%s is not a regular file writable only by its owner: "
			 "refused", path);
		ck_assert_msg(strstr(envdb_error_last()->message, want) != NULL, "mode %04o: %s",
			      (unsigned)bad_current[i], envdb_error_last()->message);
	}
	ck_assert_int_eq(chmod(path, 0644), 0);
	unload(&L);
	ck_assert_msg(load(&L) == ENVDB_OK, "%s", envdb_error_last()->message);

	for (i = 0; i < sizeof(bad_dir) / sizeof(bad_dir[0]); i++) {
		ck_assert_int_eq(chmod(keydir, bad_dir[i]), 0);
		unload(&L);
		ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
		snprintf(want, sizeof(want), "keyring %s is accessible by group or others (mode %04o): "
			 "refused; make it 0700", keydir, (unsigned)bad_dir[i]);
		ck_assert_msg(strstr(envdb_error_last()->message, want) != NULL, "%s",
			      envdb_error_last()->message);
	}
	ck_assert_int_eq(chmod(keydir, 0700), 0);
	unload(&L);
	ck_assert_msg(load(&L) == ENVDB_OK, "%s", envdb_error_last()->message);
	free(id);
}
END_TEST

START_TEST(test_bad_key_files)
{
	char *id = generate(1), path[PATH_MAX], target[PATH_MAX];

	/* Wrong size: the current key must be whole (the others are skipped,
	 * see test_incomplete_keys_skipped). */
	key_path(path, sizeof(path), "kshort");
	write_file(path, "short", 5, 0600);
	snprintf(target, sizeof(target), "%s/current", keydir);
	write_file(target, "kshort\n", 7, 0600);
	unload(&L);
	ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, path));
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "holds 5 bytes, not 32"));
	unload(&L);
	write_file(target, id, strlen(id), 0600);
	ck_assert_int_eq(unlink(path), 0);

	/* A symbolic link is never followed. */
	key_path(target, sizeof(target), id);
	key_path(path, sizeof(path), "klink");
	ck_assert_int_eq(symlink(target, path), 0);
	ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
	unload(&L);
	ck_assert_int_eq(unlink(path), 0);

	/* `current` naming a key that has no file. */
	snprintf(path, sizeof(path), "%s/current", keydir);
	write_file(path, "kmissing\n", 9, 0600);
	ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
	unload(&L);
	write_file(path, "../etc/passwd\n", 14, 0600);
	ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
	unload(&L);

	/* A keyring others can write is refused. */
	write_file(path, id, strlen(id), 0600);
	ck_assert_int_eq(chmod(keydir, 0777), 0);
	ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
	unload(&L);
	ck_assert_int_eq(chmod(keydir, 0700), 0);
	ck_assert_int_eq(load(&L), ENVDB_OK);
	free(id);
}
END_TEST

/* stderr (where the host logs) into a file while a step runs. */
static int saved_stderr = -1;
static char capture_path[DIR_MAX + 64];

static void capture_begin(void)
{
	int fd;

	snprintf(capture_path, sizeof(capture_path), "%s/stderr.log", tmpdir);
	fflush(stderr);
	saved_stderr = dup(2);
	fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dup2(fd, 2), 2);
	close(fd);
}

/* Stop capturing; the text logged meanwhile, malloc'd. */
static char *capture_end(void)
{
	char *text = calloc(1, 65536);
	ssize_t n;
	int fd;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	saved_stderr = -1;
	ck_assert_ptr_nonnull(text);
	fd = open(capture_path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	n = read(fd, text, 65535);
	ck_assert_int_ge(n, 0);
	close(fd);
	unlink(capture_path);
	return text;
}

static int count_key(void *ctx, const char *key_id, int is_current, int64_t created_at)
{
	(void)key_id;
	(void)is_current;
	(void)created_at;
	(*(int *)ctx)++;
	return 0;
}

/* A key file left empty or truncated (an older envdb killed while writing
 * it) next to a good current key: the keyring still loads, encrypts and
 * decrypts, and a warning names each skipped file.  Only a ciphertext
 * sealed with a skipped key fails, naming the file. */
START_TEST(test_incomplete_keys_skipped)
{
	char *id = generate(1), *ct = seal(NULL), *ct2, *kid = NULL, *other, *log;
	char zero[PATH_MAX], trunc[PATH_MAX];
	int n = 0;

	key_path(zero, sizeof(zero), "kzero");
	write_file(zero, "", 0, 0600);
	key_path(trunc, sizeof(trunc), "ktrunc");
	write_file(trunc, "0123456789abcdef", 16, 0600);
	unload(&L);
	capture_begin();
	n = load(&L);
	log = capture_end();
	ck_assert_msg(n == ENVDB_OK, "load: %s", envdb_error_last()->message);
	ck_assert_msg(strstr(log, zero) != NULL && strstr(log, trunc) != NULL,
		      "a warning names both files: %s", log);
	ck_assert_ptr_nonnull(strstr(log, "warning"));
	ck_assert_ptr_nonnull(strstr(log, "holds 0 bytes, not 32"));
	ck_assert_ptr_nonnull(strstr(log, "holds 16 bytes, not 32"));
	free(log);
	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
	ct2 = seal(&kid);
	ck_assert_str_eq(kid, id);
	ck_assert_int_eq(open_ct(ct2, AAD), ENVDB_OK);
	/* key list shows the good key only (and warns again) */
	capture_begin();
	ck_assert_int_eq(envdbi_encryptor_key_list(L.p, count_key, &n), ENVDB_OK);
	free(capture_end());
	ck_assert_int_eq(n, 1);
	other = with_key_id(ct, "ktrunc");
	ck_assert_int_eq(open_ct(other, AAD), ENVDB_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, trunc));
	free(other);
	/* A new key can still be made current. */
	free(kid);
	free(id);
	id = generate(1);
	free(ct2);
	ct2 = seal(&kid);
	ck_assert_str_eq(kid, id);
	free(kid);
	free(ct2);
	free(ct);
	free(id);
}
END_TEST

/* The current key itself empty: that is an error, not a skip. */
START_TEST(test_incomplete_current_key_refused)
{
	char path[PATH_MAX], cur[PATH_MAX];

	free(generate(1));
	key_path(path, sizeof(path), "kempty");
	write_file(path, "", 0, 0600);
	snprintf(cur, sizeof(cur), "%s/current", keydir);
	write_file(cur, "kempty\n", 7, 0600);
	unload(&L);
	ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, path));
}
END_TEST

static void set_old(const char *path)
{
	struct timespec t[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};

	ck_assert_int_eq(utimensat(AT_FDCWD, path, t, 0), 0);
}

/* What a process killed in the middle of key generate leaves (a partial
 * key under its temporary name, a partial `current` under its temporary
 * name) is ignored, the keyring stays usable, and the files are removed
 * by the next load unless a live writer holds them. */
START_TEST(test_stale_tmp_removed)
{
	char *id = generate(1), *ct = seal(NULL), *log;
	char key_tmp[PATH_MAX], cur_tmp[PATH_MAX], busy_tmp[PATH_MAX], fresh_tmp[PATH_MAX];
	char other[PATH_MAX];
	int busy, rc;

	snprintf(key_tmp, sizeof(key_tmp), "%s/.k20260101t000000z-0badc0de.key.tmp", keydir);
	write_file(key_tmp, "0123456789", 10, 0600);
	set_old(key_tmp);
	snprintf(cur_tmp, sizeof(cur_tmp), "%s/.current.0badc0de.tmp", keydir);
	write_file(cur_tmp, "k2026", 5, 0600);
	set_old(cur_tmp);
	/* one a live writer holds, one just made: both kept */
	snprintf(busy_tmp, sizeof(busy_tmp), "%s/.current.00c0ffee.tmp", keydir);
	write_file(busy_tmp, "k", 1, 0600);
	set_old(busy_tmp);
	busy = open(busy_tmp, O_RDONLY);
	ck_assert_int_ge(busy, 0);
	ck_assert_int_eq(flock(busy, LOCK_EX), 0);
	snprintf(fresh_tmp, sizeof(fresh_tmp), "%s/.kfresh.key.tmp", keydir);
	write_file(fresh_tmp, "0123", 4, 0600);
	/* not ours: left alone */
	snprintf(other, sizeof(other), "%s/.notes.tmp", keydir);
	write_file(other, "x", 1, 0600);
	set_old(other);

	unload(&L);
	capture_begin();
	rc = load(&L);
	log = capture_end();
	ck_assert_msg(rc == ENVDB_OK, "load: %s", envdb_error_last()->message);
	ck_assert_int_eq(access(key_tmp, F_OK), -1);
	ck_assert_int_eq(access(cur_tmp, F_OK), -1);
	ck_assert_msg(strstr(log, key_tmp) != NULL && strstr(log, cur_tmp) != NULL,
		      "the removals are logged: %s", log);
	ck_assert_int_eq(access(busy_tmp, F_OK), 0);
	ck_assert_int_eq(access(fresh_tmp, F_OK), 0);
	ck_assert_int_eq(access(other, F_OK), 0);
	free(log);
	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
	free(ct);
	ct = seal(NULL);
	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
	/* once its writer is gone, the held one goes too */
	close(busy);
	reload();
	ck_assert_int_eq(access(busy_tmp, F_OK), -1);
	free(ct);
	free(id);
}
END_TEST

/* Every key file under its final name holds a whole key. */
static void assert_key_files_whole(void)
{
	struct dirent *de;
	char path[PATH_MAX];
	struct stat st;
	DIR *d = opendir(keydir);
	size_t len;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len < 4 || strcmp(de->d_name + len - 4, ".key") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", keydir, de->d_name);
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_msg(st.st_size == 32, "%s holds %lld bytes", path, (long long)st.st_size);
	}
	closedir(d);
}

/* SIGKILL a process that generates and rotates keys as fast as it can, at
 * random moments: after every kill the keyring loads, seals and opens, and
 * no key file under its final name is partial. */
START_TEST(test_killed_generate_leaves_usable_keyring)
{
	char *ct;
	int i, status;
	pid_t pid;

	free(generate(1));
	for (i = 0; i < 25; i++) {
		fflush(NULL);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			char *id = NULL;
			int j;

			for (j = 0;; j++) {
				if (envdbi_encryptor_key_generate(L.p, j % 2, &id) != ENVDB_OK)
					_exit(3);
				free(id);
				id = NULL;
			}
		}
		usleep((useconds_t)(randombytes_uniform(20000) + 1000));
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFSIGNALED(status), "generator exited by itself: 0x%x", status);
		assert_key_files_whole();
		unload(&L);
		status = load(&L);
		ck_assert_msg(status == ENVDB_OK, "load after kill %d: %s", i,
			      envdb_error_last()->message);
		ct = seal(NULL);
		ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
		free(ct);
	}
}
END_TEST

/* Rewrite the manifest with `extra` (YAML lines) in the plugin's config. */
static void manifest_with(const char *extra)
{
	FILE *f = fopen(manifest_path, "w");

	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"version: 1\n"
		"plugins:\n"
		"  - name: kms\n"
		"    kind: encryptor\n"
		"    config:\n"
		"      keyring_dir: keys\n"
		"%s",
		extra);
	fclose(f);
}

/* key_protection: read-only (the default) and idle (PROT_NONE between
 * operations) give the same results; anything else is refused. */
START_TEST(test_key_protection)
{
	const char *const modes[] = {"      key_protection: idle\n",
				     "      key_protection: read-only\n"};
	char *id = generate(1), *ct = seal(NULL), *ct2, *rw = NULL, *kid = NULL;
	size_t i;

	for (i = 0; i < 2; i++) {
		manifest_with(modes[i]);
		reload();
		/* Old ciphertexts open, new ones round-trip, rewrap works, and
		 * a key generated now is protected the same way. */
		ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
		ct2 = seal(NULL);
		ck_assert_int_eq(open_ct(ct2, AAD), ENVDB_OK);
		free(id);
		id = generate(1);
		ck_assert_int_eq(envdbi_encryptor_rewrap(L.p, ct2, AAD, strlen(AAD), &rw, &kid),
				 ENVDB_OK);
		ck_assert_str_eq(kid, id);
		ck_assert_int_eq(open_ct(rw, AAD), ENVDB_OK);
		ck_assert_int_eq(open_ct(ct2, "other"), ENVDB_ERR_INTEGRITY);
		free(ct2);
		free(rw);
		free(kid);
		rw = kid = NULL;
	}
	manifest_with("      key_protection: none\n");
	unload(&L);
	ck_assert_int_eq(load(&L), ENVDB_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "key_protection"));
	unload(&L);
	manifest_with("");
	ck_assert_int_eq(load(&L), ENVDB_OK);
	free(ct);
	free(id);
}
END_TEST

START_TEST(test_other_process_key)
{
	char *a = generate(1), *b = NULL, *kid = NULL, *ct;
	loaded other;

	/* A second instance (as another process would have) generates a key
	 * and makes it current: the first one uses it at once. */
	ck_assert_int_eq(load(&other), ENVDB_OK);
	ck_assert_int_eq(envdbi_encryptor_key_generate(other.p, 1, &b), ENVDB_OK);
	ct = seal(&kid);
	ck_assert_str_eq(kid, b);
	unload(&other);
	ck_assert_int_eq(open_ct(ct, AAD), ENVDB_OK);
	free(a);
	free(b);
	free(kid);
	free(ct);
}
END_TEST

static Suite *kms_suite(void)
{
	Suite *s = suite_create("kms");
	TCase *tc = tcase_create("keyring");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_descriptor);
	tcase_add_test(tc, test_empty_keyring);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_wrong_aad);
	tcase_add_test(tc, test_tampered);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_key_id_swap);
	tcase_add_test(tc, test_rewrap);
	tcase_add_test(tc, test_group_readable_refused);
	tcase_add_test(tc, test_writable_current_and_keyring_refused);
	tcase_add_test(tc, test_bad_key_files);
	tcase_add_test(tc, test_incomplete_keys_skipped);
	tcase_add_test(tc, test_incomplete_current_key_refused);
	tcase_add_test(tc, test_stale_tmp_removed);
	tcase_add_test(tc, test_killed_generate_leaves_usable_keyring);
	tcase_add_test(tc, test_other_process_key);
	tcase_add_test(tc, test_key_protection);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(kms_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
