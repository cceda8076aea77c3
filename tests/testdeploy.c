/*
 * tests/testdeploy.c — the throwaway deployment of tests/testdeploy.h.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store_matrix.h"
#include "testdeploy.h"

static void path_set(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);

	ck_assert_msg(n > 0 && n < PATH_MAX, "path too long: %s/%s", dir, name);
}

void td_setup(td *t, const td_opts *o)
{
	td_opts d = TD_OPTS_INIT;
	const char *builddir = getenv("ENVDB_TEST_BUILDDIR");
	const char *tmp = getenv("TMPDIR");
	char tmpl[PATH_MAX], *key = NULL;
	envdb_ctx *ctx = NULL;
	FILE *f;
	int rc;

	if (o == NULL)
		o = &d;
	ck_assert_msg(builddir != NULL, "ENVDB_TEST_BUILDDIR is not set (run through make check)");
	/* td_clock_ahead() works only when set before the library reads the
	 * clock (envdbi_now() in core/store.c). */
	setenv("ENVDB_TEST_CLOCK", "1", 0);
	ck_assert_msg(getenv("ENVDB_PLUGIN_DIR") != NULL, "ENVDB_PLUGIN_DIR is not set");
	memset(t, 0, sizeof(*t));
	snprintf(tmpl, sizeof(tmpl), "%s/envdb-c2-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_msg(mkdtemp(tmpl) != NULL, "mkdtemp: %s", strerror(errno));
	snprintf(t->dir, sizeof(t->dir), "%s", tmpl);
	path_set(t->manifest, t->dir, "envdb.yaml");
	/* the control plane of the store pass (tests/store_matrix.h): the
	 * file control.db, or a fresh PostgreSQL schema */
	sm_fresh(t->dir);
	snprintf(t->control, sizeof(t->control), "%s", sm_name());
	path_set(t->sqlite_dir, t->dir, "environments");
	path_set(t->faulty_dir, t->dir, "faulty");
	path_set(t->noro_dir, t->dir, "faulty_noro");
	path_set(t->fail_file, t->dir, "faulty.fail");
	ck_assert_int_eq(mkdir(t->faulty_dir, 0700), 0);
	ck_assert_int_eq(mkdir(t->noro_dir, 0700), 0);

	f = fopen(t->manifest, "w");
	ck_assert_msg(f != NULL, "cannot write %s", t->manifest);
	fprintf(f, "version: 1\n");
	sm_manifest_control_plane(f);
	fprintf(f,
		"defaults:\n"
		"  driver: %s\n"
		"  encryptor: kms\n"
		"  storage_limit_mb: 64\n"
		"provisioning:\n"
		"  lease_seconds: %lld\n"
		"  delete_grace_seconds: %lld\n"
		"credentials:\n"
		"  rotation_overlap_seconds: %lld\n"
		"resolve:\n"
		"  cache_size: %lld\n"
		"  cache_ttl_ms: %lld\n"
		"legacy:\n"
		"  register_shim: %s\n"
		"plugins:\n"
		"  - name: sqlite\n"
		"    kind: adapter\n"
		"    config:\n"
		"      base_dir: environments\n"
		"  - name: faulty\n"
		"    kind: adapter\n"
		"    path: %s/tests/fixtures/.libs/faulty.so\n"
		"    config:\n"
		"      dir: %s\n"
		"      fail_file: %s\n"
		"  - name: faulty_noro\n"
		"    kind: adapter\n"
		"    path: %s/tests/fixtures/.libs/faulty_noro.so\n"
		"    config:\n"
		"      dir: %s\n"
		"      fail_file: %s\n"
		"  - name: kms\n"
		"    kind: encryptor\n"
		"    config:\n"
		"      keyring_dir: keyring\n",
		o->driver ? o->driver : "faulty", (long long)o->lease_seconds,
		(long long)o->grace_seconds, (long long)o->overlap_seconds,
		(long long)o->cache_size, (long long)o->cache_ttl_ms,
		o->legacy_shim ? "true" : "false", builddir, t->faulty_dir,
		t->fail_file, builddir, t->noro_dir, t->fail_file);
	ck_assert_int_eq(fclose(f), 0);

	rc = envdb_open(&ctx, t->manifest, ENVDB_OPEN_CREATE);
	ck_assert_msg(rc == ENVDB_OK, "envdb_open(create): %s", envdb_error_last()->message);
	rc = envdb_key_generate(&key, ctx, NULL, 1);
	ck_assert_msg(rc == ENVDB_OK, "key generate: %s", envdb_error_last()->message);
	envdb_free(key);
	envdb_close(ctx);
}

void td_manifest_variant(const td *t, const char *out, const char *cp)
{
	char line[4096];
	bool skipping = false;
	FILE *in = fopen(t->manifest, "r"), *o = fopen(out, "w");

	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(o);
	while (fgets(line, sizeof line, in) != NULL) {
		if (strncmp(line, "control_plane:", 14) == 0) {
			skipping = true; /* and its indented lines */
			fputs(cp, o);
			continue;
		}
		if (skipping && strncmp(line, "  ", 2) == 0)
			continue;
		skipping = false;
		fputs(line, o);
	}
	fclose(in);
	ck_assert_int_eq(fclose(o), 0);
	ck_assert_int_eq(chmod(out, 0600), 0);
}

static void rm_rf(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *de;

	if (lstat(path, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode) && (d = opendir(path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			char sub[PATH_MAX];

			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
			rm_rf(sub);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

void td_teardown(td *t)
{
	td_failpoints(NULL);
	td_clock_ahead(0);
	if (t->dir[0] != '\0' && getenv("ENVDB_TEST_KEEP") == NULL)
		rm_rf(t->dir);
}

envdb_ctx *td_open(const td *t)
{
	envdb_ctx *ctx = NULL;
	int rc = envdb_open(&ctx, t->manifest, 0);

	ck_assert_msg(rc == ENVDB_OK, "envdb_open: %s", envdb_error_last()->message);
	return ctx;
}

void td_fail_at(const td *t, const char *ops)
{
	FILE *f = fopen(t->fail_file, "w");

	ck_assert(f != NULL);
	fputs(ops ? ops : "", f);
	ck_assert_int_eq(fclose(f), 0);
}

static size_t count_files(const char *dir, const char *prefix, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0, lp = strlen(prefix), ls = strlen(suffix);

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (l > lp + ls && strncmp(de->d_name, prefix, lp) == 0 &&
		    strcmp(de->d_name + l - ls, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

size_t td_faulty_dbs(const td *t)
{
	return count_files(t->faulty_dir, "fdb_", ".db") + count_files(t->noro_dir, "fdb_", ".db");
}

size_t td_sqlite_dbs(const td *t)
{
	return count_files(t->sqlite_dir, "env_", ".db");
}

size_t td_faulty_revocations(const td *t, const char *name)
{
	char path[PATH_MAX + 64], line[256];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%.40s.revoked", t->faulty_dir, name);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		n++;
	fclose(f);
	return n;
}

bool td_file_contains(const char *path, const void *needle, size_t len)
{
	struct stat st;
	char *buf;
	size_t off = 0, i;
	bool found = false;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return false;
	if (fstat(fd, &st) != 0 || (buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return false;
	}
	while (off < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + off, (size_t)st.st_size - off);

		if (r <= 0)
			break;
		off += (size_t)r;
	}
	close(fd);
	for (i = 0; len > 0 && i + len <= off && !found; i++)
		found = memcmp(buf + i, needle, len) == 0;
	free(buf);
	return found;
}

int td_fork(int (*fn)(void *arg), void *arg)
{
	int status = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0)
		_exit(fn(arg));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

void td_failpoints(const char *spec)
{
	if (spec == NULL || *spec == '\0')
		unsetenv("ENVDB_FAILPOINTS");
	else
		setenv("ENVDB_FAILPOINTS", spec, 1);
}

void td_clock_ahead(int64_t ahead)
{
	char buf[32];

	if (ahead == 0) {
		unsetenv("ENVDB_TEST_NOW");
		return;
	}
	snprintf(buf, sizeof(buf), "%lld", (long long)(time(NULL) + ahead));
	setenv("ENVDB_TEST_NOW", buf, 1);
}

int td_provision(envdb_ctx *ctx, const char *org, const char *slug, const char *driver,
		 const char *owner)
{
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;

	o.env_type = "development";
	o.driver = driver;
	o.created_by = owner ? owner : "alice";
	return envdb_env_provision(NULL, ctx, org, slug, &o);
}

size_t td_reconcile_apply(envdb_ctx *ctx, int64_t ahead)
{
	envdb_reconcile_report *r = NULL;
	size_t failed, i;
	int rc;

	td_clock_ahead(ahead);
	rc = envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY);
	td_clock_ahead(0);
	ck_assert_msg(rc == ENVDB_OK, "reconcile: %s", envdb_error_last()->message);
	for (i = 0; i < r->n_items; i++)
		if (r->items[i].status != ENVDB_OK)
			fprintf(stderr, "reconcile item %s %s: %s\n", r->items[i].kind,
				r->items[i].action, r->items[i].message ? r->items[i].message : "");
	failed = r->n_failed;
	envdb_reconcile_report_free(r);
	return failed;
}

size_t td_check(envdb_ctx *ctx)
{
	envdb_violation **v = NULL;
	size_t n = 0, i;
	int rc = envdb_check(&v, &n, ctx);

	ck_assert_msg(rc == ENVDB_OK, "check: %s", envdb_error_last()->message);
	for (i = 0; i < n; i++)
		fprintf(stderr, "violation %s %s [%s]: %s\n", v[i]->object, v[i]->invariant,
			v[i]->row_ids, v[i]->message);
	envdb_violation_list_free(v, n);
	return n;
}

size_t td_env_count(envdb_ctx *ctx, const char *org, const char *status)
{
	envdb_environment **v = NULL;
	size_t n = 0, i, k = 0;
	int rc = envdb_env_list(&v, &n, ctx, org);

	ck_assert_msg(rc == ENVDB_OK, "env list: %s", envdb_error_last()->message);
	for (i = 0; i < n; i++)
		if (status == NULL || strcmp(v[i]->status, status) == 0)
			k++;
	envdb_environment_list_free(v, n);
	return k;
}
