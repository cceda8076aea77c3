/*
 * tests/test_postgres_e2e.c — the postgres adapter end to end, the way an
 * operator uses it: the `envdb` command (core/envdb of the build tree) on a
 * deployment made by `envdb init` plus the postgres plugin, against a REAL
 * PostgreSQL server this program starts (tests/pg_harness.c), and `psql`
 * connecting with what `envdb resolve` hands out: the database URL, the
 * credential's handle as the user name and the secret as the password.
 * Exits 77 (skip) without PostgreSQL server binaries.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "pg_harness.h"

#define ADMIN_USER "e2e_admin"
#define OUT_MAX 65536

static pg_harness *H;
static char admin_pw[40];
static char envdb_bin[1024];
static char psql_bin[1024];

static char dir[512];
static char manifest[600]; /* the deployment envdb() works on */
static char manifest_main[600];
static const char *dir_of_conninfo;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/*
 * Run argv[0] (a path) with argv; stdout (and stderr with `merge`) into
 * `out` (NUL-terminated).  `password` (may be NULL) is set as PGPASSWORD in
 * the child only.  Returns the exit status, or -1.
 */
static int run_ex(char *out, size_t cap, const char *password, int merge, const char *const argv[])
{
	int fds[2], status;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	if (pipe(fds) != 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 1);
		if (merge)
			dup2(fds[1], 2);
		close(fds[1]);
		if (password != NULL)
			setenv("PGPASSWORD", password, 1);
		else
			unsetenv("PGPASSWORD");
		unsetenv("PGUSER");
		unsetenv("PGDATABASE");
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], out + len, cap - 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t)n;
		if (len == cap - 1)
			break;
	}
	out[len] = '\0';
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int run(char *out, size_t cap, const char *password, const char *const argv[])
{
	return run_ex(out, cap, password, 0, argv);
}

/* envdb --manifest M --json ARGS... (NULL-terminated); stdout into out. */
static int envdb(char *out, ...)
{
	const char *argv[32], *arg;
	size_t k = 0;
	va_list ap;

	argv[k++] = envdb_bin;
	argv[k++] = "--manifest";
	argv[k++] = manifest;
	argv[k++] = "--json";
	va_start(ap, out);
	while ((arg = va_arg(ap, const char *)) != NULL && k < 31)
		argv[k++] = arg;
	va_end(ap);
	argv[k] = NULL;
	return run(out, OUT_MAX, NULL, argv);
}

/* psql URL -U user -c SQL with PGPASSWORD=password; 0 when it worked.
 * psql's messages go to the captured output (failures are expected). */
static int psql(const char *url, const char *user, const char *password, const char *sql)
{
	static char out[OUT_MAX];
	const char *argv[] = {psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-w", "-d", url, "-U",
			      user,	"-c", sql,  NULL};

	return run_ex(out, sizeof(out), password, 1, argv);
}

/* What resolve hands out; the handle is the role: the user name. */
typedef struct resolved {
	char url[256], secret[128], credential_id[64], authorization[32], handle[128];
	char prev_secret[128], prev_credential_id[64], prev_handle[128];
} resolved;

/* Copy string member `key` of `obj` (which must be there) into out. */
static void copy_member(char *out, size_t cap, json_t *obj, const char *key)
{
	const char *v = json_string_value(json_object_get(obj, key));

	ck_assert_msg(v != NULL, "resolve --json: no string \"%s\"", key);
	ck_assert_int_lt(snprintf(out, cap, "%s", v), (int)cap);
}

/* `envdb resolve ENV --user USER --reveal --json`: everything psql needs,
 * the user name included, from resolve alone. */
static void resolve(resolved *r, const char *env, const char *user)
{
	static char buf[OUT_MAX];
	json_t *doc, *prev;
	json_error_t jerr;

	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(envdb(buf, "resolve", env, "--user", user, "--reveal", NULL), 0);
	doc = json_loads(buf, 0, &jerr);
	ck_assert_msg(doc != NULL, "resolve: %s: %s", jerr.text, buf);
	copy_member(r->url, sizeof(r->url), doc, "database_url");
	copy_member(r->secret, sizeof(r->secret), doc, "secret");
	copy_member(r->credential_id, sizeof(r->credential_id), doc, "credential_id");
	copy_member(r->authorization, sizeof(r->authorization), doc, "authorization");
	copy_member(r->handle, sizeof(r->handle), doc, "handle");
	/* postgres: the handle is the login role, never empty */
	ck_assert_msg(r->handle[0] != '\0', "resolve: empty handle: %s", buf);
	prev = json_object_get(doc, "previous");
	if (json_is_object(prev)) {
		copy_member(r->prev_secret, sizeof(r->prev_secret), prev, "secret");
		copy_member(r->prev_credential_id, sizeof(r->prev_credential_id), prev,
			    "credential_id");
		copy_member(r->prev_handle, sizeof(r->prev_handle), prev, "handle");
		ck_assert(r->prev_handle[0] != '\0');
	}
	json_decref(doc);
}

static int super_count(const char *sql)
{
	char v[64];

	ck_assert_int_eq(pg_harness_query1(H, NULL, sql, v, sizeof(v)), 1);
	return atoi(v);
}

/* Databases and roles of this deployment's prefix on the server. */
static int server_objects(void)
{
	return super_count("SELECT (SELECT count(*) FROM pg_database WHERE "
			   "starts_with(datname, 'e2e_')) + (SELECT count(*) FROM pg_roles WHERE "
			   "starts_with(rolname, 'e2e_') AND rolname <> '" ADMIN_USER "')");
}

/* `envdb init` a deployment in a new directory `d` (manifest `m`) with the
 * postgres adapter added; `prefix` NULL: the plugin's default.  Leaves
 * `manifest` naming it. */
static void make_deployment(char *d, size_t dcap, char *m, size_t mcap, const char *prefix)
{
	static char out[OUT_MAX];
	char conninfo[1024], cpath[600], text[2048];
	const char *init_argv[] = {envdb_bin, "init", d, NULL};
	FILE *f;
	int fd;

	snprintf(d, dcap, "%s/envdb-pge2e-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(d));
	snprintf(m, mcap, "%s/envdb.yaml", d);
	snprintf(manifest, sizeof(manifest), "%s", m);
	ck_assert_int_eq(run(out, sizeof(out), NULL, init_argv), 0);
	dir_of_conninfo = d;

	/* Add the postgres adapter: the admin connection string in a file
	 * only its owner can read. */
	snprintf(cpath, sizeof(cpath), "%s/postgres-admin.conninfo", dir_of_conninfo);
	pg_harness_conninfo(conninfo, sizeof(conninfo), H, ADMIN_USER, admin_pw, "postgres");
	fd = open(cpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, conninfo, strlen(conninfo)), (ssize_t)strlen(conninfo));
	close(fd);
	snprintf(text, sizeof(text),
		 "  - name: postgres\n"
		 "    kind: adapter\n"
		 "    config:\n"
		 "      admin_conninfo_file: %s\n"
		 "%s%s%s",
		 cpath, prefix ? "      prefix: " : "", prefix ? prefix : "", prefix ? "\n" : "");
	f = fopen(manifest, "a");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(envdb(out, "manifest", "check", NULL), 0);
}

static void setup(void)
{
	make_deployment(dir, sizeof(dir), manifest_main, sizeof(manifest_main), "e2e_");
}

static void teardown(void)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------------ */

START_TEST(test_provision_resolve_psql)
{
	static char out[OUT_MAX];
	resolved owner, reader;
	json_t *doc;

	ck_assert_int_eq(server_objects(), 0);
	ck_assert_int_eq(envdb(out, "env", "provision", "acme", "dev", "--type", "development",
			       "--driver", "postgres", "--by", "alice", NULL),
			 0);
	ck_assert_int_gt(server_objects(), 0);

	/* The owner gets full access. */
	resolve(&owner, "acme/dev", "alice");
	ck_assert_str_eq(owner.authorization, "full_access");
	ck_assert(strncmp(owner.url, "postgresql://127.0.0.1:", 23) == 0);
	ck_assert_ptr_null(strstr(owner.url, owner.secret));
	ck_assert_int_eq(psql(owner.url, owner.handle, owner.secret,
			      "CREATE TABLE items (id int PRIMARY KEY, name text); "
			      "INSERT INTO items VALUES (1, 'one')"),
			 0);
	/* Without the password, or with another, psql gets nowhere. */
	ck_assert_int_ne(psql(owner.url, owner.handle, NULL, "SELECT 1"), 0);
	ck_assert_int_ne(psql(owner.url, owner.handle, "not-the-secret", "SELECT 1"), 0);
	/* The text output names the user to log in as (and hides the secret). */
	{
		const char *argv[] = {envdb_bin, "--manifest", manifest, "resolve", "acme/dev",
				      "--user",	 "alice",    NULL};
		char line[256];

		ck_assert_int_eq(run(out, sizeof(out), NULL, argv), 0);
		snprintf(line, sizeof(line), "db user        %s\n", owner.handle);
		ck_assert_msg(strstr(out, line) != NULL, "no db user line: %s", out);
		ck_assert_ptr_null(strstr(out, owner.secret));
	}

	/* A reader gets the read-only credential: reads, cannot write. */
	ck_assert_int_eq(
		envdb(out, "member", "add", "acme/dev", "bob", "reader", "--by", "alice", NULL), 0);
	resolve(&reader, "acme/dev", "bob");
	ck_assert_str_eq(reader.authorization, "read_only");
	ck_assert_str_ne(reader.handle, owner.handle);
	ck_assert_int_eq(psql(reader.url, reader.handle, reader.secret, "SELECT name FROM items"),
			 0);
	ck_assert_int_ne(psql(reader.url, reader.handle, reader.secret,
			      "INSERT INTO items VALUES (2, 'two')"),
			 0);

	/* Everything checks out, and reconcile finds nothing to do. */
	ck_assert_int_eq(envdb(out, "check", NULL), 0);
	ck_assert_int_eq(envdb(out, "reconcile", NULL), 0);
	doc = json_loads(out, 0, NULL);
	ck_assert_ptr_nonnull(doc);
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "items")), 0);
	json_decref(doc);

	/* Delete now: the database and every role are gone from the server. */
	ck_assert_int_eq(envdb(out, "env", "delete", "acme/dev", "--now", "--yes", NULL), 0);
	ck_assert_int_eq(server_objects(), 0);
	ck_assert_int_ne(psql(owner.url, owner.handle, owner.secret, "SELECT 1"), 0);
}
END_TEST

START_TEST(test_rotate_complete)
{
	static char out[OUT_MAX];
	resolved before, during, after;
	const char *me = "alice";

	ck_assert_int_eq(envdb(out, "env", "provision", "acme", "stage", "--type", "staging",
			       "--driver", "postgres", "--by", me, NULL),
			 0);
	resolve(&before, "acme/stage", me);
	ck_assert_int_eq(psql(before.url, before.handle, before.secret, "CREATE TABLE t (x int)"),
			 0);

	ck_assert_int_eq(envdb(out, "cred", "rotate", "acme/stage", "--overlap", "1h", NULL), 0);
	resolve(&during, "acme/stage", me);
	ck_assert_str_ne(during.credential_id, before.credential_id);
	ck_assert_str_ne(during.handle, before.handle);
	ck_assert_str_eq(during.prev_credential_id, before.credential_id);
	ck_assert_str_eq(during.prev_handle, before.handle);
	/* Overlap: both credentials work; the new one manages the old one's
	 * table. */
	ck_assert_int_eq(psql(during.url, during.prev_handle, during.prev_secret,
			      "INSERT INTO t VALUES (1)"),
			 0);
	ck_assert_int_eq(psql(during.url, during.handle, during.secret,
			      "ALTER TABLE t ADD COLUMN y int; INSERT INTO t VALUES (2, 2)"),
			 0);

	ck_assert_int_eq(envdb(out, "cred", "complete", "acme/stage", NULL), 0);
	resolve(&after, "acme/stage", me);
	ck_assert_str_eq(after.credential_id, during.credential_id);
	ck_assert_str_eq(after.prev_credential_id, "");
	ck_assert_int_ne(psql(before.url, before.handle, before.secret, "SELECT 1"), 0);
	ck_assert_int_eq(psql(after.url, after.handle, after.secret, "SELECT count(*) FROM t"), 0);

	ck_assert_int_eq(envdb(out, "env", "delete", "acme/stage", "--now", "--yes", NULL), 0);
	ck_assert_int_eq(server_objects(), 0);
}
END_TEST

/* A libpq session as the resolved credential (the URL's database). */
static PGconn *session(const resolved *r)
{
	char ci[1024];
	const char *db = strrchr(r->url, '/');

	ck_assert_ptr_nonnull(db);
	pg_harness_conninfo(ci, sizeof(ci), H, r->handle, r->secret, db + 1);
	return PQconnectdb(ci);
}

static int session_alive(PGconn *c)
{
	PGresult *r = PQexec(c, "SELECT 1");
	int ok = PQresultStatus(r) == PGRES_TUPLES_OK;

	PQclear(r);
	return ok;
}

/* Archive locks every credential out at the server (and ends its open
 * sessions); unarchive lets them back in; delete does the same lock-out for
 * its grace period.  Before: archived environments' roles kept working. */
START_TEST(test_archive_locks_out)
{
	static char out[OUT_MAX];
	resolved owner, reader, again;
	PGconn *open_session;
	json_t *doc;

	ck_assert_int_eq(envdb(out, "env", "provision", "acme", "arch", "--type", "development",
			       "--driver", "postgres", "--by", "alice", NULL),
			 0);
	ck_assert_int_eq(
		envdb(out, "member", "add", "acme/arch", "bob", "reader", "--by", "alice", NULL), 0);
	resolve(&owner, "acme/arch", "alice");
	resolve(&reader, "acme/arch", "bob");
	ck_assert_int_eq(psql(owner.url, owner.handle, owner.secret, "CREATE TABLE t (x int)"), 0);
	open_session = session(&owner);
	ck_assert_int_eq(PQstatus(open_session), CONNECTION_OK);

	ck_assert_int_eq(envdb(out, "env", "archive", "acme/arch", NULL), 0);
	doc = json_loads(out, 0, NULL);
	ck_assert_ptr_nonnull(doc);
	ck_assert(json_is_true(json_object_get(doc, "credentials_locked_out")));
	json_decref(doc);
	ck_assert_int_ne(psql(owner.url, owner.handle, owner.secret, "INSERT INTO t VALUES (1)"), 0);
	ck_assert_int_ne(psql(reader.url, reader.handle, reader.secret, "SELECT 1"), 0);
	ck_assert_msg(!session_alive(open_session), "an open session survived the archive");
	PQfinish(open_session);
	/* Archiving twice is refused, and changes nothing. */
	ck_assert_int_ne(envdb(out, "env", "archive", "acme/arch", NULL), 0);

	ck_assert_int_eq(envdb(out, "env", "unarchive", "acme/arch", NULL), 0);
	resolve(&again, "acme/arch", "alice");
	ck_assert_str_eq(again.credential_id, owner.credential_id);
	ck_assert_int_eq(psql(owner.url, owner.handle, owner.secret, "INSERT INTO t VALUES (1)"), 0);
	ck_assert_int_eq(psql(reader.url, reader.handle, reader.secret, "SELECT * FROM t"), 0);
	ck_assert_int_eq(envdb(out, "check", NULL), 0);

	/* Delete with a grace period: locked out at once, dropped later. */
	ck_assert_int_eq(envdb(out, "env", "delete", "acme/arch", NULL), 0);
	ck_assert_int_ne(psql(owner.url, owner.handle, owner.secret, "SELECT 1"), 0);
	ck_assert_int_ne(psql(reader.url, reader.handle, reader.secret, "SELECT 1"), 0);
	ck_assert_int_ne(envdb(out, "env", "unarchive", "acme/arch", NULL), 0);
	ck_assert_int_eq(envdb(out, "env", "delete", "acme/arch", "--now", "--yes", NULL), 0);
	ck_assert_int_eq(server_objects(), 0);
}
END_TEST

/* The overlap window is on the role (VALID UNTIL): once it lapses the old
 * password is refused by the server, with no `cred complete` and no
 * reconcile.  Before: it kept working until someone ran one of them. */
START_TEST(test_overlap_window_enforced_by_server)
{
	static char out[OUT_MAX];
	resolved before, during;
	time_t end;

	ck_assert_int_eq(envdb(out, "env", "provision", "acme", "win", "--type", "test",
			       "--driver", "postgres", "--by", "alice", NULL),
			 0);
	resolve(&before, "acme/win", "alice");
	end = time(NULL) + 4;
	ck_assert_int_eq(envdb(out, "cred", "rotate", "acme/win", "--overlap", "4s", NULL), 0);
	resolve(&during, "acme/win", "alice");
	ck_assert_str_eq(during.prev_handle, before.handle);
	ck_assert_int_eq(psql(during.url, during.prev_handle, during.prev_secret, "SELECT 1"), 0);
	while (time(NULL) <= end + 1)
		sleep(1);
	ck_assert_int_ne(psql(during.url, before.handle, before.secret, "SELECT 1"), 0);
	ck_assert_int_eq(psql(during.url, during.handle, during.secret, "SELECT 1"), 0);
	ck_assert_int_eq(envdb(out, "env", "delete", "acme/win", "--now", "--yes", NULL), 0);
}
END_TEST

/* A revoked read_only credential can be replaced: `cred mint`.  Before:
 * rotate needed an active one, and readers were refused forever. */
START_TEST(test_mint_after_revoke)
{
	static char out[OUT_MAX];
	const char *argv_resolve[] = {envdb_bin, "--manifest", manifest, "resolve", "acme/ro",
				      "--user",	 "bob",	       NULL};
	resolved reader, fresh;

	ck_assert_int_eq(envdb(out, "env", "provision", "acme", "ro", "--type", "test", "--driver",
			       "postgres", "--by", "alice", NULL),
			 0);
	ck_assert_int_eq(
		envdb(out, "member", "add", "acme/ro", "bob", "reader", "--by", "alice", NULL), 0);
	resolve(&reader, "acme/ro", "bob");
	ck_assert_int_eq(envdb(out, "cred", "revoke", "acme/ro", reader.credential_id, NULL), 0);
	ck_assert_int_ne(run(out, OUT_MAX, NULL, argv_resolve), 0);
	ck_assert_int_ne(envdb(out, "cred", "rotate", "acme/ro", "--authorization", "read_only",
			       NULL),
			 0);
	/* mint: a fresh read_only credential, and readers resolve again. */
	ck_assert_int_eq(envdb(out, "cred", "mint", "acme/ro", "--authorization", "read_only",
			       NULL),
			 0);
	resolve(&fresh, "acme/ro", "bob");
	ck_assert_str_eq(fresh.authorization, "read_only");
	ck_assert_str_ne(fresh.credential_id, reader.credential_id);
	ck_assert_int_eq(psql(fresh.url, fresh.handle, fresh.secret, "SELECT 1"), 0);
	ck_assert_int_ne(psql(fresh.url, fresh.handle, fresh.secret, "CREATE TABLE w (x int)"),
			 0);
	ck_assert_int_ne(psql(reader.url, reader.handle, reader.secret, "SELECT 1"), 0);
	/* Not while one is active (rotate that one), nor without an
	 * authorization. */
	ck_assert_int_eq(envdb(out, "cred", "mint", "acme/ro", "--authorization", "read_only",
			       NULL),
			 65);
	ck_assert_int_eq(envdb(out, "cred", "mint", "acme/ro", NULL), 64);
	ck_assert_int_eq(envdb(out, "check", NULL), 0);
	ck_assert_int_eq(envdb(out, "env", "delete", "acme/ro", "--now", "--yes", NULL), 0);
}
END_TEST

/* Through envdb a second rotation ends the first one's window: at most two
 * credentials per authorization work (plugins/postgres/README.md). */
START_TEST(test_rotate_twice)
{
	static char out[OUT_MAX];
	resolved first, second, third;

	ck_assert_int_eq(envdb(out, "env", "provision", "acme", "twice", "--type", "test",
			       "--driver", "postgres", "--by", "alice", NULL),
			 0);
	resolve(&first, "acme/twice", "alice");
	ck_assert_int_eq(envdb(out, "cred", "rotate", "acme/twice", "--overlap", "1h", NULL), 0);
	resolve(&second, "acme/twice", "alice");
	ck_assert_int_eq(envdb(out, "cred", "rotate", "acme/twice", "--overlap", "1h", NULL), 0);
	resolve(&third, "acme/twice", "alice");
	ck_assert_str_eq(third.prev_credential_id, second.credential_id);
	ck_assert_int_ne(psql(first.url, first.handle, first.secret, "SELECT 1"), 0);
	ck_assert_int_eq(psql(second.url, second.handle, second.secret, "SELECT 1"), 0);
	ck_assert_int_eq(psql(third.url, third.handle, third.secret, "SELECT 1"), 0);
	ck_assert_int_eq(envdb(out, "env", "delete", "acme/twice", "--now", "--yes", NULL), 0);
}
END_TEST

/* ------------------------------------------------------------------------ */

/* Items of a `reconcile --json` output, after checking it parses. */
static size_t reconcile_items(const char *out, const char *kind)
{
	json_t *doc = json_loads(out, 0, NULL), *items;
	size_t i, n = 0;

	ck_assert_msg(doc != NULL, "reconcile: not JSON: %s", out);
	items = json_object_get(doc, "items");
	for (i = 0; i < json_array_size(items); i++) {
		const char *k = json_string_value(json_object_get(json_array_get(items, i), "kind"));

		if (kind == NULL || (k != NULL && strcmp(k, kind) == 0))
			n++;
	}
	json_decref(doc);
	return n;
}

static int envdb_databases(void)
{
	return super_count("SELECT count(*) FROM pg_database WHERE starts_with(datname, 'envdb_')");
}

/*
 * Issue 16 §3: two deployments (two control planes, two manifests) share ONE
 * PostgreSQL server with the default prefix.  Each provisions its
 * environments; reconcile on each lists no orphan of the other, reconcile
 * --apply on each drops nothing of the other, and both still resolve and
 * connect afterwards.  Before deployment ids the second deployment listed
 * every database of the first as an orphan and --apply dropped them.
 */
START_TEST(test_two_deployments_one_server)
{
	static char out[OUT_MAX];
	char dir_a[512], dir_b[512], man_a[600], man_b[600];
	const char *envs_a[] = {"acme/prod", "acme/dev"}, *envs_b[] = {"beta/prod", "beta/dev"};
	resolved r;
	int k, pass;

	ck_assert_int_eq(envdb_databases(), 0);
	make_deployment(dir_a, sizeof(dir_a), man_a, sizeof(man_a), NULL);
	ck_assert_int_eq(envdb(out, "org", "provision", "acme", "--driver", "postgres", "--by",
			       "alice", NULL),
			 0);
	ck_assert_int_eq(envdb(out, "env", "provision", "acme", "dev", "--type", "development",
			       "--driver", "postgres", "--by", "alice", NULL),
			 0);
	make_deployment(dir_b, sizeof(dir_b), man_b, sizeof(man_b), NULL);
	ck_assert_int_eq(envdb(out, "org", "provision", "beta", "--driver", "postgres", "--by",
			       "bob", NULL),
			 0);
	ck_assert_int_eq(envdb(out, "env", "provision", "beta", "dev", "--type", "development",
			       "--driver", "postgres", "--by", "bob", NULL),
			 0);
	ck_assert_int_eq(envdb_databases(), 4);
	/* Data in every database. */
	for (k = 0; k < 4; k++) {
		snprintf(manifest, sizeof(manifest), "%s", k < 2 ? man_a : man_b);
		resolve(&r, k < 2 ? envs_a[k] : envs_b[k - 2], k < 2 ? "alice" : "bob");
		ck_assert_int_eq(psql(r.url, r.handle, r.secret,
				      "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"),
				 0);
	}

	/* Each deployment's reconcile: nothing of the other, dry run and
	 * --apply, twice each, in both orders. */
	for (pass = 0; pass < 2; pass++) {
		for (k = 0; k < 2; k++) {
			snprintf(manifest, sizeof(manifest), "%s", (k ^ pass) ? man_b : man_a);
			ck_assert_int_eq(envdb(out, "reconcile", NULL), 0);
			ck_assert_msg(reconcile_items(out, NULL) == 0, "dry run: %s", out);
			ck_assert_int_eq(envdb(out, "reconcile", "--apply", NULL), 0);
			ck_assert_msg(reconcile_items(out, "orphan") == 0, "apply: %s", out);
			ck_assert_uint_eq(reconcile_items(out, NULL), 0);
			ck_assert_int_eq(envdb(out, "check", NULL), 0);
		}
		ck_assert_int_eq(envdb_databases(), 4);
	}
	/* Both still resolve and connect, and the data is there. */
	for (k = 0; k < 4; k++) {
		snprintf(manifest, sizeof(manifest), "%s", k < 2 ? man_a : man_b);
		resolve(&r, k < 2 ? envs_a[k] : envs_b[k - 2], k < 2 ? "alice" : "bob");
		ck_assert_int_eq(psql(r.url, r.handle, r.secret,
				      "DO $$ BEGIN IF (SELECT x FROM kept) <> 42 THEN "
				      "RAISE 'lost'; END IF; END $$"),
				 0);
	}
	/* Each deletes its own; the other's stay. */
	snprintf(manifest, sizeof(manifest), "%s", man_a);
	ck_assert_int_eq(envdb(out, "env", "delete", "acme/dev", "--now", "--yes", NULL), 0);
	ck_assert_int_eq(envdb(out, "env", "delete", "acme/prod", "--now", "--yes", NULL), 0);
	ck_assert_int_eq(envdb_databases(), 2);
	snprintf(manifest, sizeof(manifest), "%s", man_b);
	ck_assert_int_eq(envdb(out, "reconcile", "--apply", NULL), 0);
	ck_assert_uint_eq(reconcile_items(out, NULL), 0);
	resolve(&r, "beta/dev", "bob");
	ck_assert_int_eq(psql(r.url, r.handle, r.secret, "SELECT x FROM kept"), 0);
	ck_assert_int_eq(envdb(out, "env", "delete", "beta/dev", "--now", "--yes", NULL), 0);
	ck_assert_int_eq(envdb(out, "env", "delete", "beta/prod", "--now", "--yes", NULL), 0);
	ck_assert_int_eq(envdb_databases(), 0);
	nftw(dir_a, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	nftw(dir_b, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	snprintf(manifest, sizeof(manifest), "%s", manifest_main);
}
END_TEST

int main(void)
{
	char err[4096], sql[256];
	const char *builddir = getenv("ENVDB_TEST_BUILDDIR");
	unsigned char rnd[16];
	Suite *s;
	TCase *tc;
	SRunner *sr;
	size_t i;
	int failed, rc, fd;

	if (builddir == NULL) {
		fprintf(stderr, "test_postgres_e2e: ENVDB_TEST_BUILDDIR is not set (run it with "
				"make check)\n");
		return 1;
	}
	snprintf(envdb_bin, sizeof(envdb_bin), "%s/core/envdb", builddir);
	rc = pg_harness_start(&H, err, sizeof(err));
	if (rc == PG_HARNESS_SKIP) {
		fprintf(stderr, "test_postgres_e2e: SKIP: %s\n", err);
		return 77;
	}
	if (rc != 0) {
		fprintf(stderr, "test_postgres_e2e: cannot start a PostgreSQL server: %s\n", err);
		return 1;
	}
	snprintf(psql_bin, sizeof(psql_bin), "%s/psql", pg_harness_bindir(H));
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
		pg_harness_stop(H);
		return 1;
	}
	close(fd);
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(admin_pw + 2 * i, 3, "%02x", rnd[i]);
	snprintf(sql, sizeof(sql),
		 "CREATE ROLE " ADMIN_USER " LOGIN CREATEDB CREATEROLE PASSWORD '%s'", admin_pw);
	if (pg_harness_exec(H, NULL, sql, err, sizeof(err)) != 0) {
		fprintf(stderr, "test_postgres_e2e: %s\n", err);
		pg_harness_stop(H);
		return 1;
	}

	s = suite_create("postgres_e2e");
	tc = tcase_create("envdb+psql");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_provision_resolve_psql);
	tcase_add_test(tc, test_rotate_complete);
	tcase_add_test(tc, test_two_deployments_one_server);
	tcase_add_test(tc, test_archive_locks_out);
	tcase_add_test(tc, test_overlap_window_enforced_by_server);
	tcase_add_test(tc, test_mint_after_revoke);
	tcase_add_test(tc, test_rotate_twice);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	pg_harness_stop(H);
	return failed == 0 ? 0 : 1;
}
