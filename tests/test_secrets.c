/*
 * tests/test_secrets.c — secret hygiene, end to end.
 *
 * A deployment (sqlite and faulty adapters, kms encryptor) goes through its
 * life through the envdb command and the library: provision, members,
 * resolve, rotation with overlap, completion, key rotation and rewrap,
 * reconcile, check, failures (a non-member, a failing backend), deletion.
 * Every secret minted on the way is recorded (resolved as owner and reader,
 * current and previous), and then searched for, byte for byte, in the
 * control-plane file (and its -wal/-shm), the keyring, the manifest, every
 * log line of the library (ENVDB_LOG_LEVEL=debug) and every captured output
 * of every command — the only place allowed to hold one is the stdout of
 * `resolve --reveal`, whose job it is.
 *
 * Then the files: the keyring directory is 0700, key files, the control
 * plane and the sqlite databases 0600; a key file, a keyring or a secret
 * reference file more open than that is refused; and the envdb command
 * turns core dumps off (RLIMIT_CORE 0, not dumpable) while it runs.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testdeploy.h"

static td T;

/* Every secret seen, and every file that must not hold one. */
typedef struct secret_rec {
	char *data;
	size_t len;
	char what[96];
} secret_rec;

static secret_rec secrets[256];
static size_t n_secrets;
static char outputs[128][PATH_MAX + 32];
static size_t n_outputs;
static char logpath[PATH_MAX + 32];
static int saved_stderr = -1;
static unsigned run_no;

static void record(const char *data, size_t len, const char *fmt, ...) ENVDB_PRINTF(3, 4);

static void record(const char *data, size_t len, const char *fmt, ...)
{
	va_list ap;
	size_t i;

	if (data == NULL || len == 0)
		return;
	for (i = 0; i < n_secrets; i++)
		if (secrets[i].len == len && memcmp(secrets[i].data, data, len) == 0)
			return;
	ck_assert_uint_lt(n_secrets, sizeof(secrets) / sizeof(secrets[0]));
	secrets[n_secrets].data = malloc(len);
	ck_assert_ptr_nonnull(secrets[n_secrets].data);
	memcpy(secrets[n_secrets].data, data, len);
	secrets[n_secrets].len = len;
	va_start(ap, fmt);
	vsnprintf(secrets[n_secrets].what, sizeof(secrets[n_secrets].what), fmt, ap);
	va_end(ap);
	n_secrets++;
}

/* Resolve ORG/SLUG as `user` and record what it hands out. */
static void harvest(envdb_ctx *ctx, const char *slug, const char *user)
{
	envdb_connection *c = NULL;

	if (envdb_resolve(&c, ctx, "acme", slug, user) != ENVDB_OK)
		return;
	record(c->secret, c->secret_len, "acme/%s %s %s", slug, user, c->authorization);
	record(c->previous_secret, c->previous_secret_len, "acme/%s %s previous", slug, user);
	envdb_connection_free(c);
}

static void harvest_all(void)
{
	envdb_ctx *ctx = td_open(&T);

	harvest(ctx, "prod", "alice");
	harvest(ctx, "prod", "bob");
	harvest(ctx, "dev", "alice");
	harvest(ctx, "dev", "bob");
	envdb_close(ctx);
}

/* Run the envdb command; stdout and stderr go to files that are searched
 * at the end (stdout is kept out of the search when `may_reveal`).  Returns
 * the exit status. */
static int cli(bool may_reveal, const char *const *args)
{
	const char *b = getenv("ENVDB_TEST_BUILDDIR");
	char prog[PATH_MAX], out[PATH_MAX + 32], err[PATH_MAX + 32];
	const char *argv[32];
	size_t i, n = 0;
	int st = 0;
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/core/envdb", b);
	snprintf(out, sizeof(out), "%s/run%02u.out", T.dir, run_no);
	snprintf(err, sizeof(err), "%s/run%02u.err", T.dir, run_no);
	run_no++;
	argv[n++] = prog;
	argv[n++] = "--manifest";
	argv[n++] = T.manifest;
	for (i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(fo, 1);
		dup2(fe, 2);
		execv(prog, (char *const *)argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_uint_lt(n_outputs + 2, sizeof(outputs) / sizeof(outputs[0]));
	if (!may_reveal)
		snprintf(outputs[n_outputs++], sizeof(outputs[0]), "%s", out);
	snprintf(outputs[n_outputs++], sizeof(outputs[0]), "%s", err);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#define CLI(rc, ...)                                                                  \
	do {                                                                          \
		const char *const a_[] = {__VA_ARGS__, NULL};                         \
		int r_ = cli(false, a_);                                              \
		ck_assert_msg(r_ == (rc), "envdb %s %s: exit %d, want %d", a_[0],     \
			      a_[1] ? a_[1] : "", r_, (rc));                          \
	} while (0)

static void setup(void)
{
	int fd;

	td_setup(&T, NULL);
	n_secrets = 0;
	n_outputs = 0;
	run_no = 0;
	snprintf(logpath, sizeof(logpath), "%s/library.log", T.dir);
	setenv("ENVDB_LOG_LEVEL", "debug", 1);
	fflush(stderr);
	saved_stderr = dup(2);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	dup2(fd, 2);
	close(fd);
}

static void teardown(void)
{
	size_t i;

	fflush(stderr);
	if (saved_stderr >= 0) {
		dup2(saved_stderr, 2);
		close(saved_stderr);
		saved_stderr = -1;
	}
	unsetenv("ENVDB_LOG_LEVEL");
	for (i = 0; i < n_secrets; i++)
		free(secrets[i].data);
	n_secrets = 0;
	td_teardown(&T);
}

/* Search `path` for every recorded secret; returns the hits (reported
 * unless `quiet`). */
static size_t search_q(const char *path, bool quiet)
{
	size_t i, hits = 0;

	for (i = 0; i < n_secrets; i++)
		if (td_file_contains(path, secrets[i].data, secrets[i].len)) {
			if (!quiet)
				fprintf(stderr, "LEAK: %s found in %s\n", secrets[i].what, path);
			hits++;
		}
	return hits;
}

static size_t search(const char *path)
{
	return search_q(path, false);
}

static size_t search_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t hits = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		char p[PATH_MAX + 300];

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		hits += search(p);
	}
	closedir(d);
	return hits;
}

START_TEST(test_no_secret_anywhere)
{
	char path[PATH_MAX + 32], keyring[PATH_MAX + 32], secret_out[PATH_MAX + 32];
	envdb_ctx *ctx;
	size_t files = 0, hits = 0, i;

	CLI(0, "env", "provision", "acme", "prod", "--type", "production", "--by", "alice",
	    "--driver", "sqlite");
	CLI(0, "env", "provision", "acme", "dev", "--type", "development", "--by", "alice");
	CLI(0, "member", "add", "acme/prod", "bob", "reader", "--by", "alice");
	CLI(0, "member", "add", "acme/dev", "bob", "reader", "--by", "alice");
	harvest_all();
	ck_assert_uint_ge(n_secrets, 3);

	/* what an operator looks at: never a secret */
	CLI(0, "resolve", "acme/prod", "--user", "alice");
	CLI(0, "--json", "resolve", "acme/dev", "--user", "bob");
	CLI(0, "env", "show", "acme/prod");
	CLI(0, "--json", "env", "show", "acme/dev");
	CLI(0, "cred", "list", "acme/prod");
	CLI(0, "--json", "cred", "list", "acme/dev");

	/* rotation with an overlap: current and previous are both live */
	CLI(0, "cred", "rotate", "acme/prod", "--overlap", "1h");
	CLI(0, "cred", "rotate", "acme/dev", "--overlap", "1h");
	harvest_all();
	CLI(0, "resolve", "acme/prod", "--user", "alice");
	CLI(0, "--json", "resolve", "acme/dev", "--user", "alice");
	{
		/* the one command whose job is to print it: its stdout holds the
		 * secret, its stderr does not */
		const char *const a[] = {"resolve", "acme/prod", "--user", "alice", "--reveal",
					 NULL};

		ck_assert_int_eq(cli(true, a), 0);
		snprintf(secret_out, sizeof(secret_out), "%s/run%02u.out", T.dir, run_no - 1);
	}
	CLI(0, "cred", "complete", "acme/prod");
	CLI(0, "key", "rotate");
	CLI(0, "key", "rewrap");
	CLI(0, "--json", "key", "rewrap", "--dry-run");
	harvest_all();

	/* failures: a non-member, a reader asking a driver that cannot, a
	 * failing backend, a bad key id */
	CLI(77, "resolve", "acme/prod", "--user", "mallory");
	td_fail_at(&T, "mint");
	CLI(69, "cred", "rotate", "acme/dev");
	CLI(69, "env", "provision", "acme", "bad", "--type", "test", "--by", "alice");
	td_fail_at(&T, NULL);
	CLI(0, "reconcile");
	CLI(0, "reconcile", "--apply");
	CLI(0, "check");
	CLI(0, "--json", "check");
	harvest_all();

	/* the library, in process, with debug logging */
	ctx = td_open(&T);
	ck_assert_int_eq(envdb_cred_rotate(ctx, "acme", "prod", NULL), ENVDB_OK);
	envdb_close(ctx);
	harvest_all();
	CLI(0, "env", "delete", "acme/dev", "--now", "--yes");
	fflush(stderr);

	fprintf(stderr, "recorded %zu secrets\n", n_secrets);
	ck_assert_uint_ge(n_secrets, 6);
	/* the positive control: the search does find a secret where one is */
	ck_assert_uint_ge(search_q(secret_out, true), 1);

	snprintf(keyring, sizeof(keyring), "%s/keyring", T.dir);
	hits += search(T.control);
	snprintf(path, sizeof(path), "%s-wal", T.control);
	hits += search(path);
	snprintf(path, sizeof(path), "%s-shm", T.control);
	hits += search(path);
	hits += search(T.manifest);
	hits += search_dir(keyring);
	hits += search(logpath);
	files = 6;
	for (i = 0; i < n_outputs; i++) {
		hits += search(outputs[i]);
		files++;
	}
	fprintf(stderr, "searched %zu files for %zu secrets: %zu found\n", files, n_secrets, hits);
	/* and on the test's own stderr (ours goes to the searched log) */
	dprintf(saved_stderr, "secret hygiene: %zu secrets recorded, searched for in %zu files "
		"(control plane, keyring, manifest, library log, %zu command outputs): %zu found\n",
		n_secrets, files, n_outputs, hits);
	ck_assert_uint_eq(hits, 0);
}
END_TEST

static mode_t mode_of(const char *path)
{
	struct stat st;

	ck_assert_msg(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
	return st.st_mode & 07777;
}

/* Every regular file in `dir` has mode `want`. */
static size_t modes_in(const char *dir, mode_t want)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		char p[PATH_MAX + 300];
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		ck_assert_int_eq(lstat(p, &st), 0);
		if (!S_ISREG(st.st_mode))
			continue;
		ck_assert_msg((st.st_mode & 07777) == want, "%s: mode %04o, want %04o", p,
			      (unsigned)(st.st_mode & 07777), (unsigned)want);
		n++;
	}
	closedir(d);
	return n;
}

static char *first_key_file(const char *keyring)
{
	DIR *d = opendir(keyring);
	struct dirent *de;
	char *out = NULL;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL && out == NULL) {
		size_t l = strlen(de->d_name);

		if (l > 4 && strcmp(de->d_name + l - 4, ".key") == 0) {
			out = malloc(PATH_MAX + 300);
			snprintf(out, PATH_MAX + 300, "%s/%s", keyring, de->d_name);
		}
	}
	closedir(d);
	ck_assert_ptr_nonnull(out);
	return out;
}

/* envdb_open must fail with CONFIG saying "refused" or "owner only". */
static void open_refused(const char *manifest, unsigned flags, const char *what)
{
	envdb_ctx *ctx = NULL;
	int rc = envdb_open(&ctx, manifest, flags);

	ck_assert_msg(rc == ENVDB_ERR_CONFIG, "%s: open gave %d: %s", what, rc,
		      envdb_error_last()->message);
	ck_assert_msg(strstr(envdb_error_last()->message, "group or others") != NULL,
		      "%s: %s", what, envdb_error_last()->message);
	envdb_close(ctx);
}

START_TEST(test_file_modes)
{
	char keyring[PATH_MAX + 32], path[PATH_MAX + 64], *key;
	envdb_ctx *ctx;
	const char *b = getenv("ENVDB_TEST_BUILDDIR");
	FILE *f;

	umask(022); /* what a careless environment gives */
	ctx = td_open(&T);
	ck_assert_int_eq(td_provision(ctx, "acme", "prod", "sqlite", "alice"), ENVDB_OK);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "alice"), ENVDB_OK);
	envdb_close(ctx);

	snprintf(keyring, sizeof(keyring), "%s/keyring", T.dir);
	ck_assert_uint_eq(mode_of(keyring), 0700);
	ck_assert_uint_ge(modes_in(keyring, 0600), 1);
	ck_assert_uint_eq(mode_of(T.control), 0600);
	ck_assert_uint_eq(mode_of(T.sqlite_dir), 0700);
	/* the database file (its ownership marker env_<hex>.envdb is a
	 * symbolic link: no mode of its own, it holds no secret) */
	ck_assert_uint_eq(modes_in(T.sqlite_dir, 0600), 1);

	/* a key file more open than 0600 is refused */
	key = first_key_file(keyring);
	ck_assert_int_eq(chmod(key, 0640), 0);
	open_refused(T.manifest, 0, "key file 0640");
	ck_assert_int_eq(chmod(key, 0600), 0);
	free(key);
	/* a keyring more open than 0700 is refused */
	ck_assert_int_eq(chmod(keyring, 0750), 0);
	open_refused(T.manifest, 0, "keyring 0750");
	ck_assert_int_eq(chmod(keyring, 0700), 0);
	envdb_close(td_open(&T));

	/* a secret reference file (<key>_file) more open than 0600 is refused */
	snprintf(path, sizeof(path), "%s/password", T.dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("s3cr3t-password", f);
	fclose(f);
	ck_assert_int_eq(chmod(path, 0644), 0);
	{
		char man[PATH_MAX + 64], text[4 * PATH_MAX];

		snprintf(man, sizeof(man), "%s/secretref.yaml", T.dir);
		snprintf(text, sizeof(text),
			 "version: 1\n"
			 "control_plane: control.db\n"
			 "plugins:\n"
			 "  - name: good\n"
			 "    kind: encryptor\n"
			 "    path: %s/tests/fixtures/.libs/good.so\n"
			 "    config:\n"
			 "      dir: %s\n"
			 "      password_file: %s\n",
			 b, T.dir, path);
		f = fopen(man, "w");
		ck_assert_ptr_nonnull(f);
		fputs(text, f);
		fclose(f);
		open_refused(man, ENVDB_OPEN_CHECK_ONLY, "secret file 0644");
		ck_assert_int_eq(chmod(path, 0600), 0);
		ck_assert_int_eq(envdb_open(&ctx, man, ENVDB_OPEN_CHECK_ONLY), ENVDB_OK);
		envdb_close(ctx);
	}
}
END_TEST

START_TEST(test_command_disables_core_dumps)
{
	const char *const a[] = {"resolve", "acme/prod", "--user", "alice", NULL};
	envdb_ctx *ctx = td_open(&T);
	char err[PATH_MAX + 32];

	ck_assert_int_eq(td_provision(ctx, "acme", "prod", NULL, "alice"), ENVDB_OK);
	envdb_close(ctx);
	ck_assert_int_eq(cli(false, a), 0);
	snprintf(err, sizeof(err), "%s/run%02u.err", T.dir, run_no - 1);
	ck_assert_msg(td_file_contains(err, "core dumps off: RLIMIT_CORE 0/0, dumpable 0", 43),
		      "the command did not turn core dumps off");
}
END_TEST

static Suite *secrets_suite(void)
{
	Suite *s = suite_create("secret hygiene");
	TCase *tc = tcase_create("secrets");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, getenv("ENVDB_VALGRIND") ? 1800 : 300);
	tcase_add_test(tc, test_no_secret_anywhere);
	tcase_add_test(tc, test_file_modes);
	tcase_add_test(tc, test_command_disables_core_dumps);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(secrets_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
