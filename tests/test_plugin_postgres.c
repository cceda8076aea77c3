/*
 * tests/test_plugin_postgres.c — the postgres adapter plugin
 * (plugins/postgres) against a REAL PostgreSQL server that this program
 * starts itself (tests/pg_harness.c: initdb into a temporary directory,
 * loopback only, stopped and removed at the end — also when a test fails
 * or the program dies).  Without server binaries the program exits 77.
 *
 * The plugin is loaded the way the host loads it: a manifest in a fresh
 * mkdtemp() directory naming the admin connection string by file
 * (admin_conninfo_file, mode 0600), read by envdbi_manifest_load(), the
 * module opened from $ENVDB_PLUGIN_DIR by envdbi_plugins_load(), and every
 * call made through the envdbi_adapter_* wrappers of core/host.c.  The
 * administrator is a NON-superuser role with CREATEDB and CREATEROLE, as
 * the README recommends.  What the plugin promises is checked from the
 * outside: with libpq connections as the minted roles, and with catalog
 * queries as the cluster's superuser.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "internal.h"
#include "pg_harness.h"

#define ADMIN_USER "envdb_admin"

static pg_harness *H;
static char admin_pw[40];

static char tmpdir[512];
static char manifest_path[600];
static char conninfo_path[600];

static envdbi_manifest *M;
static envdbi_plugins *SET;
static envdbi_plugin *P;

/* ------------------------------------------------------------------------ */
/* helpers: files, manifest, plugin                                          */
/* ------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

static void random_bytes(unsigned char *buf, size_t n)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, n), (ssize_t)n);
	close(fd);
}

/* A random version 4 UUID. */
static void new_uuid(char out[37])
{
	unsigned char b[16];

	random_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

/* The database name the plugin derives with prefix `prefix`. */
static void db_name_of(char *out, size_t cap, const char *prefix, const char *env)
{
	size_t i, o;

	o = (size_t)snprintf(out, cap, "%s", prefix);
	for (i = 0; env[i] != '\0' && o + 1 < cap; i++)
		if (env[i] != '-')
			out[o++] = env[i];
	out[o] = '\0';
}

/* The admin connection string for `user`/`password`, key/value form. */
static void admin_conninfo(char *out, size_t cap, const char *user, const char *password)
{
	pg_harness_conninfo(out, cap, H, user, password, "postgres");
}

/* Write the conninfo file and the manifest; `extra` adds config lines
 * ("      key: value\n"). */
static void write_manifest(const char *conninfo, const char *extra)
{
	char text[4096];

	write_file(conninfo_path, conninfo, 0600);
	snprintf(text, sizeof(text),
		 "version: 1\n"
		 "plugins:\n"
		 "  - name: postgres\n"
		 "    kind: adapter\n"
		 "    config:\n"
		 "      admin_conninfo_file: %s\n"
		 "%s",
		 conninfo_path, extra != NULL ? extra : "");
	write_file(manifest_path, text, 0644);
}

static int load(void)
{
	int rc = envdbi_manifest_load(&M, manifest_path);

	if (rc != ENVDB_OK)
		return rc;
	rc = envdbi_plugins_load(&SET, M);
	if (rc != ENVDB_OK)
		return rc;
	P = envdbi_plugins_find(SET, "postgres", ENVDB_PLUGIN_ADAPTER);
	ck_assert_ptr_nonnull(P);
	return ENVDB_OK;
}

static void unload(void)
{
	if (SET != NULL)
		envdbi_plugins_free(SET);
	if (M != NULL)
		envdbi_manifest_free(M);
	SET = NULL;
	M = NULL;
	P = NULL;
}

/* Reload with the standard admin and extra configuration. */
static int reload_with(const char *conninfo, const char *extra)
{
	char ci[1024];

	unload();
	if (conninfo == NULL) {
		admin_conninfo(ci, sizeof(ci), ADMIN_USER, admin_pw);
		conninfo = ci;
	}
	write_manifest(conninfo, extra);
	return load();
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/envdb-pgtest-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(manifest_path, sizeof(manifest_path), "%s/envdb.yaml", tmpdir);
	snprintf(conninfo_path, sizeof(conninfo_path), "%s/admin.conninfo", tmpdir);
	ck_assert_int_eq(reload_with(NULL, "      client_host: 127.0.0.1\n"), ENVDB_OK);
	envdb_error_clear();
}

static void teardown(void)
{
	unload();
	envdbi_host_set_call_timeout_ms(30000);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------------ */
/* helpers: plugin calls                                                     */
/* ------------------------------------------------------------------------ */

static const char *last_message(void)
{
	return envdb_error_last()->message;
}

static void ref_of(envdb_db_ref *ref, const char *env, const char *name)
{
	memset(ref, 0, sizeof(*ref));
	ref->struct_size = sizeof(*ref);
	ref->environment_id = env;
	ref->database_name = name;
}

static int create_env(const char *env, char **url, char **meta)
{
	envdb_create_request req = {.struct_size = sizeof(req),
				    .environment_id = env,
				    .database_name = NULL,
				    .region = NULL,
				    .plan = "free",
				    .storage_limit_mb = 100};
	char *u = NULL, *m = NULL;
	int rc = envdbi_adapter_create(P, &req, &u, &m);

	if (url != NULL)
		*url = u;
	else
		free(u);
	if (meta != NULL)
		*meta = m;
	else
		free(m);
	return rc;
}

static int drop_env(const char *env)
{
	envdb_db_ref ref;

	ref_of(&ref, env, NULL);
	return envdbi_adapter_drop(P, &ref);
}

/* Mint a credential for `env` with a fresh credential id. */
static int mint(const char *env, uint32_t auth, const char *previous, int64_t expires_at,
		envdbi_secret **secret, char **handle)
{
	char cred[37];
	envdb_db_ref ref;
	envdb_mint_request req;

	new_uuid(cred);
	ref_of(&ref, env, NULL);
	memset(&req, 0, sizeof(req));
	req.struct_size = sizeof(req);
	req.credential_id = cred;
	req.authorization = auth;
	req.expires_at = expires_at;
	req.previous_handle = previous;
	return envdbi_adapter_mint(P, &ref, &req, secret, handle);
}

static int revoke_cred(const char *env, uint32_t auth, const char *handle)
{
	envdb_db_ref ref;

	ref_of(&ref, env, NULL);
	return envdbi_adapter_revoke(P, &ref, auth, handle);
}

static int probe(const char *env, const envdbi_secret *secret)
{
	envdb_db_ref ref;

	ref_of(&ref, env, NULL);
	return envdbi_adapter_probe(P, &ref, secret);
}

/* ------------------------------------------------------------------------ */
/* helpers: looking from the outside                                         */
/* ------------------------------------------------------------------------ */

/* Connect as a client would: the URL's host/port/dbname + user + password. */
static PGconn *client(const char *db, const char *user, const char *password)
{
	char ci[1024];

	pg_harness_conninfo(ci, sizeof(ci), H, user, password, db);
	return PQconnectdb(ci);
}

static int can_connect(const char *db, const char *user, const char *password)
{
	PGconn *c = client(db, user, password);
	int ok = PQstatus(c) == CONNECTION_OK;

	PQfinish(c);
	return ok;
}

/* Run `sql`; "" on success, else the SQLSTATE (static per call site). */
static const char *run_sql(PGconn *c, const char *sql)
{
	static char state[8];
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	state[0] = '\0';
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		snprintf(state, sizeof(state), "%s", s != NULL ? s : "?????");
	}
	PQclear(r);
	return state;
}

static int super_count(const char *sql)
{
	char v[64];

	ck_assert_int_eq(pg_harness_query1(H, NULL, sql, v, sizeof(v)), 1);
	return atoi(v);
}

static int database_exists(const char *db)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_database WHERE datname = '%s'", db);
	return super_count(sql);
}

/* Roles whose name starts with `db`. */
static int roles_of(const char *db)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, '%s')",
		 db);
	return super_count(sql);
}

static void super_exec(const char *db, const char *sql)
{
	char err[512];

	ck_assert_msg(pg_harness_exec(H, db, sql, err, sizeof(err)) == 0, "%s: %s", sql, err);
}

/* ------------------------------------------------------------------------ */
/* tests                                                                     */
/* ------------------------------------------------------------------------ */

START_TEST(test_descriptor)
{
	const envdb_plugin_descriptor *d = envdbi_plugin_descriptor(P);
	uint64_t caps = envdbi_plugin_capabilities(P);
	const envdb_config_key *k;
	int secret = 0;

	ck_assert_str_eq(d->name, "postgres");
	ck_assert(d->flags & ENVDB_PLUGIN_REMOTE);
	ck_assert(caps & ENVDB_ADAPTER_CAP_READ_ONLY);
	ck_assert(caps & ENVDB_ADAPTER_CAP_ROTATE_OVERLAP);
	ck_assert(caps & ENVDB_ADAPTER_CAP_REVOKE);
	ck_assert(caps & ENVDB_ADAPTER_CAP_EXPIRY);
	ck_assert(caps & ENVDB_ADAPTER_CAP_PROBE);
	ck_assert(caps & ENVDB_ADAPTER_CAP_LIST);
	ck_assert(caps & ENVDB_ADAPTER_CAP_AUTHENTICATES);
	for (k = d->config_keys; k->name != NULL; k++)
		if (strcmp(k->name, "admin_conninfo") == 0)
			secret = (k->flags & ENVDB_CONFIG_SECRET) != 0;
	ck_assert_int_eq(secret, 1);
}
END_TEST

START_TEST(test_database_name)
{
	char env[37], want[80], *name = NULL;
	size_t i;

	new_uuid(env);
	db_name_of(want, sizeof(want), "envdb_", env);
	ck_assert_int_eq(envdbi_adapter_database_name(P, env, &name), ENVDB_OK);
	ck_assert_str_eq(name, want);
	free(name);
	/* Upper case ids give the same name. */
	for (i = 0; env[i]; i++)
		if (env[i] >= 'a' && env[i] <= 'f')
			env[i] = (char)(env[i] - 'a' + 'A');
	ck_assert_int_eq(envdbi_adapter_database_name(P, env, &name), ENVDB_OK);
	ck_assert_str_eq(name, want);
	free(name);
	name = NULL;
	ck_assert_int_eq(envdbi_adapter_database_name(P, "not-a-uuid", &name), ENVDB_ERR_INVALID);
	ck_assert_ptr_null(name);
}
END_TEST

/* The whole life: create, mint rw and ro, use them, probe, list, drop. */
START_TEST(test_lifecycle)
{
	char env[37], db[80], want_url[160], sql[512], v[256];
	char *url = NULL, *meta = NULL, *h_rw = NULL, *h_ro = NULL, **names = NULL;
	envdbi_secret *s_rw = NULL, *s_ro = NULL;
	json_t *j;
	json_error_t jerr;
	PGconn *c;
	size_t n = 0, i;
	int found = 0;

	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, &url, &meta), ENVDB_OK);
	snprintf(want_url, sizeof(want_url), "postgresql://127.0.0.1:%d/%s", pg_harness_port(H),
		 db);
	ck_assert_str_eq(url, want_url);
	j = json_loads(meta, 0, &jerr);
	ck_assert_msg(j != NULL && json_is_object(j), "metadata is not a json object: %s", meta);
	ck_assert_str_eq(json_string_value(json_object_get(j, "database")), db);
	json_decref(j);

	/* On the server: the database, its marker, no PUBLIC access. */
	ck_assert_int_eq(database_exists(db), 1);
	snprintf(sql, sizeof(sql),
		 "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = "
		 "'%s'",
		 db);
	ck_assert_int_eq(pg_harness_query1(H, NULL, sql, v, sizeof(v)), 1);
	ck_assert_str_eq(v + strlen("envdb:"), env);
	ck_assert(strncmp(v, "envdb:", 6) == 0);
	snprintf(sql, sizeof(sql),
		 "SELECT has_database_privilege('public', '%s', 'CONNECT')::int + "
		 "has_database_privilege('public', '%s', 'TEMPORARY')::int",
		 db, db);
	ck_assert_int_eq(super_count(sql), 0);

	/* Credentials: the handle is the role (the user name), the secret
	 * the password; the URL carries neither. */
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, NULL, 0, &s_rw, &h_rw), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_READ_ONLY, NULL, 0, &s_ro, &h_ro), ENVDB_OK);
	ck_assert(strncmp(h_rw, db, strlen(db)) == 0 && strncmp(h_rw + strlen(db), "_rw_", 4) == 0);
	ck_assert(strncmp(h_ro, db, strlen(db)) == 0 && strncmp(h_ro + strlen(db), "_ro_", 4) == 0);
	ck_assert_uint_eq(s_rw->len, 43);
	ck_assert_uint_eq(s_ro->len, 43);
	ck_assert_str_ne(s_rw->data, s_ro->data);
	ck_assert_ptr_null(strstr(url, s_rw->data));

	c = client(db, h_rw, s_rw->data);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "rw connect: %s", PQerrorMessage(c));
	ck_assert_str_eq(run_sql(c, "CREATE TABLE t (id serial PRIMARY KEY, v text)"), "");
	ck_assert_str_eq(run_sql(c, "INSERT INTO t (v) VALUES ('one'), ('two')"), "");
	ck_assert_str_eq(run_sql(c, "CREATE SCHEMA app"), "");
	ck_assert_str_eq(run_sql(c, "CREATE TABLE app.u (x int)"), "");
	ck_assert_str_eq(run_sql(c, "INSERT INTO app.u VALUES (1)"), "");
	PQfinish(c);
	/* Objects belong to the owner group, not to the login role. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_tables WHERE tableowner = '%s_rw'", db);
	{
		PGconn *sc = pg_harness_connect_super(H, db);
		PGresult *r;
		ck_assert_ptr_nonnull(sc);
		r = PQexec(sc, sql);
		ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
		ck_assert_int_eq(atoi(PQgetvalue(r, 0, 0)), 2);
		PQclear(r);
		PQfinish(sc);
	}

	c = client(db, h_ro, s_ro->data);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "ro connect: %s", PQerrorMessage(c));
	ck_assert_str_eq(run_sql(c, "SELECT * FROM t"), "");
	ck_assert_str_eq(run_sql(c, "SELECT * FROM app.u"), "");
	PQfinish(c);

	ck_assert_int_eq(probe(env, s_rw), ENVDB_OK);
	ck_assert_int_eq(probe(env, s_ro), ENVDB_OK);

	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
	for (i = 0; i < n; i++)
		found += strcmp(names[i], db) == 0;
	ck_assert_int_eq(found, 1);
	envdbi_strv_free(names, n);

	/* Drop: nothing left, even with sessions open. */
	c = client(db, h_rw, s_rw->data);
	ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	ck_assert_int_eq(database_exists(db), 0);
	ck_assert_int_eq(roles_of(db), 0);
	ck_assert_str_ne(run_sql(c, "SELECT 1"), "");
	PQfinish(c);
	ck_assert(!can_connect(db, h_rw, s_rw->data));
	/* Dropping what is gone succeeds; probing it does not. */
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	ck_assert_int_eq(probe(env, s_rw), ENVDB_ERR_NOT_FOUND);

	envdbi_secret_free(s_rw);
	envdbi_secret_free(s_ro);
	free(h_rw);
	free(h_ro);
	free(url);
	free(meta);
}
END_TEST

/* A's credentials reach A's database only, and B's only B's. */
START_TEST(test_isolation)
{
	char a[37], b[37], dba[80], dbb[80];
	char *ha = NULL, *hb = NULL, *hra = NULL;
	envdbi_secret *sa = NULL, *sb = NULL, *sra = NULL;
	PGconn *c;

	new_uuid(a);
	new_uuid(b);
	db_name_of(dba, sizeof(dba), "envdb_", a);
	db_name_of(dbb, sizeof(dbb), "envdb_", b);
	ck_assert_int_eq(create_env(a, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(create_env(b, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(mint(a, ENVDB_AUTH_FULL_ACCESS, NULL, 0, &sa, &ha), ENVDB_OK);
	ck_assert_int_eq(mint(a, ENVDB_AUTH_READ_ONLY, NULL, 0, &sra, &hra), ENVDB_OK);
	ck_assert_int_eq(mint(b, ENVDB_AUTH_FULL_ACCESS, NULL, 0, &sb, &hb), ENVDB_OK);

	ck_assert(can_connect(dba, ha, sa->data));
	ck_assert(can_connect(dbb, hb, sb->data));
	/* Right password, wrong database: no CONNECT privilege. */
	c = client(dbb, ha, sa->data);
	ck_assert_int_ne(PQstatus(c), CONNECTION_OK);
	ck_assert_ptr_nonnull(strstr(PQerrorMessage(c), "permission denied for database"));
	PQfinish(c);
	ck_assert(!can_connect(dbb, hra, sra->data));
	ck_assert(!can_connect(dba, hb, sb->data));
	/* One environment's password is not another's. */
	ck_assert(!can_connect(dbb, hb, sa->data));
	/* A's secret does not probe B. */
	ck_assert_int_eq(probe(b, sa), ENVDB_ERR_AUTH);
	ck_assert_int_eq(probe(a, sa), ENVDB_OK);

	ck_assert_int_eq(drop_env(a), ENVDB_OK);
	/* Dropping A left B whole. */
	ck_assert_int_eq(database_exists(dbb), 1);
	ck_assert(can_connect(dbb, hb, sb->data));
	ck_assert_int_eq(drop_env(b), ENVDB_OK);
	ck_assert_int_eq(roles_of(dba) + roles_of(dbb), 0);

	envdbi_secret_free(sa);
	envdbi_secret_free(sb);
	envdbi_secret_free(sra);
	free(ha);
	free(hb);
	free(hra);
}
END_TEST

/* read_only reads everything full access makes, now and later, and
 * writes nothing. */
START_TEST(test_read_only_cannot_write)
{
	char env[37], db[80];
	char *h_rw = NULL, *h_ro = NULL;
	envdbi_secret *s_rw = NULL, *s_ro = NULL;
	PGconn *rw, *ro;

	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_READ_ONLY, NULL, 0, &s_ro, &h_ro), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, NULL, 0, &s_rw, &h_rw), ENVDB_OK);
	rw = client(db, h_rw, s_rw->data);
	ck_assert_int_eq(PQstatus(rw), CONNECTION_OK);
	/* Made after the read-only credential: default privileges apply. */
	ck_assert_str_eq(run_sql(rw, "CREATE TABLE t (id serial PRIMARY KEY, v text)"), "");
	ck_assert_str_eq(run_sql(rw, "INSERT INTO t (v) VALUES ('x')"), "");
	ck_assert_str_eq(run_sql(rw, "CREATE SCHEMA s"), "");
	ck_assert_str_eq(run_sql(rw, "CREATE TABLE s.w (x int)"), "");
	ro = client(db, h_ro, s_ro->data);
	ck_assert_msg(PQstatus(ro) == CONNECTION_OK, "%s", PQerrorMessage(ro));
	ck_assert_str_eq(run_sql(ro, "SELECT v FROM t"), "");
	ck_assert_str_eq(run_sql(ro, "SELECT x FROM s.w"), "");
	ck_assert_str_eq(run_sql(ro, "INSERT INTO t (v) VALUES ('y')"), "42501");
	ck_assert_str_eq(run_sql(ro, "UPDATE t SET v = 'z'"), "42501");
	ck_assert_str_eq(run_sql(ro, "DELETE FROM t"), "42501");
	ck_assert_str_eq(run_sql(ro, "TRUNCATE t"), "42501");
	ck_assert_str_eq(run_sql(ro, "INSERT INTO s.w VALUES (1)"), "42501");
	ck_assert_str_eq(run_sql(ro, "CREATE TABLE mine (x int)"), "42501");
	ck_assert_str_eq(run_sql(ro, "CREATE TEMP TABLE mine (x int)"), "42501");
	ck_assert_str_eq(run_sql(ro, "CREATE SCHEMA mine"), "42501");
	ck_assert_str_eq(run_sql(ro, "SELECT nextval('t_id_seq')"), "42501");
	ck_assert_str_eq(run_sql(ro, "DROP TABLE t"), "42501");
	ck_assert_str_eq(run_sql(ro, "ALTER TABLE t ADD COLUMN y int"), "42501");
	ck_assert_str_eq(run_sql(ro, "SET ROLE envdb_admin"), "42501");
	PQfinish(ro);
	/* Full access still can. */
	ck_assert_str_eq(run_sql(rw, "DELETE FROM t"), "");
	PQfinish(rw);
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	envdbi_secret_free(s_rw);
	envdbi_secret_free(s_ro);
	free(h_rw);
	free(h_ro);
}
END_TEST

/* Rotation with overlap: the previous credential works until revoked,
 * then stops (sessions included); the new one owns the same objects. */
START_TEST(test_rotation_overlap)
{
	char env[37], db[80];
	char *h1 = NULL, *h2 = NULL, *h3 = NULL;
	envdbi_secret *s1 = NULL, *s2 = NULL, *s3 = NULL;
	PGconn *old_session, *c;

	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, NULL, 0, &s1, &h1), ENVDB_OK);
	c = client(db, h1, s1->data);
	ck_assert_str_eq(run_sql(c, "CREATE TABLE t (x int)"), "");
	PQfinish(c);
	old_session = client(db, h1, s1->data);
	ck_assert_int_eq(PQstatus(old_session), CONNECTION_OK);

	/* Rotate. */
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, h1, 0, &s2, &h2), ENVDB_OK);
	ck_assert_str_ne(h1, h2);
	/* Overlap: both work, the old session too. */
	ck_assert(can_connect(db, h1, s1->data));
	ck_assert(can_connect(db, h2, s2->data));
	ck_assert_str_eq(run_sql(old_session, "INSERT INTO t VALUES (1)"), "");
	ck_assert_int_eq(probe(env, s1), ENVDB_OK);
	ck_assert_int_eq(probe(env, s2), ENVDB_OK);
	/* The new role manages what the old one made. */
	c = client(db, h2, s2->data);
	ck_assert_str_eq(run_sql(c, "ALTER TABLE t ADD COLUMN y int"), "");
	ck_assert_str_eq(run_sql(c, "INSERT INTO t VALUES (2, 2)"), "");
	PQfinish(c);

	/* Complete: the old one stops, sessions included. */
	ck_assert_int_eq(revoke_cred(env, ENVDB_AUTH_FULL_ACCESS, h1), ENVDB_OK);
	ck_assert(!can_connect(db, h1, s1->data));
	ck_assert_str_ne(run_sql(old_session, "SELECT 1"), "");
	PQfinish(old_session);
	ck_assert_int_eq(probe(env, s1), ENVDB_ERR_AUTH);
	ck_assert(can_connect(db, h2, s2->data));
	ck_assert_int_eq(probe(env, s2), ENVDB_OK);
	/* Revoking again: already gone is success. */
	ck_assert_int_eq(revoke_cred(env, ENVDB_AUTH_FULL_ACCESS, h1), ENVDB_OK);
	/* Wrong authorization or a foreign handle: refused. */
	ck_assert_int_eq(revoke_cred(env, ENVDB_AUTH_READ_ONLY, h2), ENVDB_ERR_INVALID);
	ck_assert_int_eq(revoke_cred(env, ENVDB_AUTH_FULL_ACCESS, "postgres"), ENVDB_ERR_INVALID);
	ck_assert(can_connect(db, h2, s2->data));

	/* Rotating twice before completing keeps every unrevoked credential. */
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, h2, 0, &s3, &h3), ENVDB_OK);
	ck_assert(can_connect(db, h2, s2->data));
	ck_assert(can_connect(db, h3, s3->data));
	/* A client that stepped out of the owner role made something its
	 * login role owns: revoke hands it to the owner role, then drops the
	 * login role. */
	c = client(db, h2, s2->data);
	ck_assert_str_eq(run_sql(c, "RESET ROLE"), "");
	ck_assert_str_eq(run_sql(c, "CREATE TABLE stray (x int)"), "");
	PQfinish(c);
	ck_assert_int_eq(revoke_cred(env, ENVDB_AUTH_FULL_ACCESS, h2), ENVDB_OK);
	ck_assert(!can_connect(db, h2, s2->data));
	{
		char sql[256];
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_roles WHERE rolname = '%s'",
			 h2);
		ck_assert_int_eq(super_count(sql), 0);
	}
	c = client(db, h3, s3->data);
	ck_assert_str_eq(run_sql(c, "SELECT count(*) FROM t"), "");
	ck_assert_str_eq(run_sql(c, "DROP TABLE stray"), "");
	PQfinish(c);

	/* Read-only rotation works the same way. */
	{
		char *r1 = NULL, *r2 = NULL;
		envdbi_secret *t1 = NULL, *t2 = NULL;
		ck_assert_int_eq(mint(env, ENVDB_AUTH_READ_ONLY, NULL, 0, &t1, &r1), ENVDB_OK);
		ck_assert_int_eq(mint(env, ENVDB_AUTH_READ_ONLY, r1, 0, &t2, &r2), ENVDB_OK);
		ck_assert(can_connect(db, r1, t1->data));
		ck_assert(can_connect(db, r2, t2->data));
		ck_assert_int_eq(revoke_cred(env, ENVDB_AUTH_READ_ONLY, r1), ENVDB_OK);
		ck_assert(!can_connect(db, r1, t1->data));
		ck_assert(can_connect(db, r2, t2->data));
		envdbi_secret_free(t1);
		envdbi_secret_free(t2);
		free(r1);
		free(r2);
		/* A previous handle of the other authorization is refused. */
		t1 = NULL;
		r1 = NULL;
		ck_assert_int_eq(mint(env, ENVDB_AUTH_READ_ONLY, h3, 0, &t1, &r1),
				 ENVDB_ERR_INVALID);
		ck_assert_ptr_null(t1);
		ck_assert_ptr_null(r1);
	}
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	ck_assert_int_eq(roles_of(db), 0);
	envdbi_secret_free(s1);
	envdbi_secret_free(s2);
	envdbi_secret_free(s3);
	free(h1);
	free(h2);
	free(h3);
}
END_TEST

/* Expiry is the server's: VALID UNTIL. */
START_TEST(test_expiry)
{
	char env[37], db[80], sql[256], v[128];
	char *h_past = NULL, *h_future = NULL, *h_soon = NULL;
	envdbi_secret *s_past = NULL, *s_future = NULL, *s_soon = NULL;
	int64_t now = (int64_t)time(NULL), soon;

	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, NULL, now - 60, &s_past, &h_past),
			 ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_READ_ONLY, NULL, now + 3600, &s_future, &h_future),
			 ENVDB_OK);
	ck_assert(!can_connect(db, h_past, s_past->data));
	ck_assert_int_eq(probe(env, s_past), ENVDB_ERR_AUTH);
	ck_assert(can_connect(db, h_future, s_future->data));
	snprintf(sql, sizeof(sql),
		 "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = "
		 "'%s'",
		 h_future);
	ck_assert_int_eq(pg_harness_query1(H, NULL, sql, v, sizeof(v)), 1);
	ck_assert_int_eq(strtoll(v, NULL, 10), now + 3600);
	/* One that expires while we watch (a margin for slow runs under
	 * valgrind). */
	soon = (int64_t)time(NULL) + 5;
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, h_past, soon, &s_soon, &h_soon),
			 ENVDB_OK);
	ck_assert(can_connect(db, h_soon, s_soon->data));
	while ((int64_t)time(NULL) <= soon + 1)
		sleep(1);
	ck_assert(!can_connect(db, h_soon, s_soon->data));
	ck_assert_int_eq(probe(env, s_soon), ENVDB_ERR_AUTH);
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	envdbi_secret_free(s_past);
	envdbi_secret_free(s_future);
	envdbi_secret_free(s_soon);
	free(h_past);
	free(h_future);
	free(h_soon);
}
END_TEST

/* Hostile names never reach SQL unquoted: they are refused, or quoted. */
START_TEST(test_hostile_names)
{
	static const char *const bad_prefixes[] = {
		"      prefix: \"envdb\\\"x\"\n",
		"      prefix: \"a'b\"\n",
		"      prefix: Envdb_\n",
		"      prefix: 1envdb\n",
		"      prefix: abcdefghijklmnopq\n",
		"      prefix: \"x; drop\"\n",
	};
	char env[37], db[80], *name = NULL, *h = NULL;
	envdbi_secret *s = NULL;
	envdb_db_ref ref;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(bad_prefixes) / sizeof(bad_prefixes[0]); i++) {
		ck_assert_int_eq(reload_with(NULL, bad_prefixes[i]), ENVDB_ERR_CONFIG);
		ck_assert_ptr_nonnull(strstr(last_message(), "prefix"));
	}
	ck_assert_int_eq(reload_with(NULL, "      client_host: \"h'; x\"\n"), ENVDB_ERR_CONFIG);
	ck_assert_int_eq(reload_with(NULL, NULL), ENVDB_OK);

	/* Environment ids, database names and handles are validated. */
	ck_assert_int_eq(envdbi_adapter_database_name(P, "\"; DROP DATABASE postgres; --", &name),
			 ENVDB_ERR_INVALID);
	ck_assert_int_eq(create_env("0f3b2c1d-aaaa-4bbb-8ccc-0123456789a'", NULL, NULL),
			 ENVDB_ERR_INVALID);
	ref_of(&ref, NULL, "envdb_\"; DROP DATABASE postgres; --");
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_INVALID);
	ref_of(&ref, NULL, "postgres");
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_INVALID);
	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(revoke_cred(env, ENVDB_AUTH_FULL_ACCESS, "x\"; DROP ROLE envdb_admin; --"),
			 ENVDB_ERR_INVALID);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, "x' OR '1'='1", 0, &s, &h),
			 ENVDB_ERR_INVALID);
	ck_assert_int_eq(drop_env(env), ENVDB_OK);

	/* The template is free text, always quoted with PQescapeIdentifier:
	 * an injection attempt is just a database that does not exist... */
	ck_assert_int_eq(
		reload_with(NULL, "      template: \"x\\\"; DROP DATABASE postgres; --\"\n"),
		ENVDB_OK);
	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_ERR_CONFIG);
	ck_assert_int_eq(database_exists("postgres"), 1);
	ck_assert_int_eq(database_exists(db), 0);
	ck_assert_int_eq(roles_of(db), 0);
	/* ...and a real template whose name needs quoting works. */
	super_exec(NULL, "CREATE DATABASE \"tpl \"\"q\"\" 'x'\" IS_TEMPLATE true");
	super_exec("tpl \"q\" 'x'", "CREATE TABLE public.from_template (x int)");
	ck_assert_int_eq(reload_with(NULL, "      template: \"tpl \\\"q\\\" 'x'\"\n"), ENVDB_OK);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_READ_ONLY, NULL, 0, &s, &h), ENVDB_OK);
	ck_assert(can_connect(db, h, s->data));
	{
		/* The new database is a copy of that template. */
		PGconn *sc = pg_harness_connect_super(H, db);
		PGresult *r;
		ck_assert_ptr_nonnull(sc);
		r = PQexec(sc, "SELECT count(*) FROM pg_tables WHERE tablename = 'from_template'");
		ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
		ck_assert_str_eq(PQgetvalue(r, 0, 0), "1");
		PQclear(r);
		PQfinish(sc);
	}
	/* A closed superuser session leaves its backend a moment later; until
	 * then the (non-superuser) administrator may not terminate it and the
	 * drop is refused (PERMISSION): wait for it, as an operator would. */
	{
		PGconn *pc = pg_harness_connect_super(H, "postgres");
		const char *params[1] = {db};
		int k;

		ck_assert_ptr_nonnull(pc);
		for (k = 0; k < 100; k++) {
			PGresult *r = PQexecParams(pc,
						   "SELECT count(*) FROM pg_catalog.pg_stat_activity "
						   "WHERE datname = $1 AND pid <> pg_backend_pid()",
						   1, NULL, params, NULL, NULL, 0);
			int busy = PQresultStatus(r) == PGRES_TUPLES_OK &&
				   strcmp(PQgetvalue(r, 0, 0), "0") != 0;

			PQclear(r);
			if (!busy)
				break;
			usleep(50 * 1000);
		}
		PQfinish(pc);
	}
	rc = drop_env(env);
	ck_assert_msg(rc == ENVDB_OK, "drop: %d: %s", rc, envdb_error_last()->message);
	super_exec(NULL, "ALTER DATABASE \"tpl \"\"q\"\" 'x'\" IS_TEMPLATE false");
	super_exec(NULL, "DROP DATABASE \"tpl \"\"q\"\" 'x'\"");
	envdbi_secret_free(s);
	free(h);
}
END_TEST

/* A database the v4 -> v5 migration registered under its legacy name
 * (metadata migrated_from): the adapter cannot mint, probe, revoke or drop
 * it and says so precisely (ENVDB_ERR_NOT_SUPPORTED naming the database
 * and what it lacks), touching nothing; without the marker the same name
 * mismatch stays ENVDB_ERR_INVALID. */
START_TEST(test_migrated_database)
{
	static const char legacy[] = "v4_tenant_acme";
	static const char meta[] =
		"{\"migrated_from\":{\"object\":\"sys_tenant_database\",\"id\":\"x\"}}";
	char env[37], cred[37];
	envdb_db_ref ref;
	envdb_mint_request req;
	envdbi_secret *s = NULL, *probe_secret;
	char *h = NULL;

	super_exec(NULL, "CREATE DATABASE v4_tenant_acme");
	new_uuid(env);
	new_uuid(cred);
	ref_of(&ref, env, legacy);
	ref.url = "postgres://pg.example:5432/v4_tenant_acme";
	ref.metadata = meta;
	memset(&req, 0, sizeof(req));
	req.struct_size = sizeof(req);
	req.credential_id = cred;
	req.authorization = ENVDB_AUTH_FULL_ACCESS;

	ck_assert_int_eq(envdbi_adapter_mint(P, &ref, &req, &s, &h), ENVDB_ERR_NOT_SUPPORTED);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(last_message(), legacy));
	ck_assert_ptr_nonnull(strstr(last_message(), "migrated from v4"));
	ck_assert_ptr_nonnull(strstr(last_message(), "group roles"));
	probe_secret = envdbi_secret_new("pw", 2);
	ck_assert_ptr_nonnull(probe_secret);
	ck_assert_int_eq(envdbi_adapter_probe(P, &ref, probe_secret), ENVDB_ERR_NOT_SUPPORTED);
	envdbi_secret_free(probe_secret);
	ck_assert_int_eq(envdbi_adapter_revoke(P, &ref, ENVDB_AUTH_FULL_ACCESS, "v4_tenant_acme_rw"),
			 ENVDB_ERR_NOT_SUPPORTED);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_NOT_SUPPORTED);
	ck_assert_ptr_nonnull(strstr(last_message(), "drop"));
	ck_assert_int_eq(database_exists(legacy), 1);
	ck_assert_int_eq(roles_of(legacy), 0);

	/* Without the marker: a name that is not this environment's. */
	ref.metadata = "{}";
	ck_assert_int_eq(envdbi_adapter_mint(P, &ref, &req, &s, &h), ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(last_message(), "does not belong"));
	super_exec(NULL, "DROP DATABASE v4_tenant_acme");
}
END_TEST

/* Missing CREATEDB / CREATEROLE: a clear permission error naming it, and
 * nothing made. */
START_TEST(test_missing_privileges)
{
	char ci[1024], env[37], db[80];

	super_exec(NULL, "DROP ROLE IF EXISTS weak_nodb; DROP ROLE IF EXISTS weak_norole; "
			 "CREATE ROLE weak_nodb LOGIN CREATEROLE PASSWORD 'weak-pw-1'; "
			 "CREATE ROLE weak_norole LOGIN CREATEDB PASSWORD 'weak-pw-2'");
	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);

	admin_conninfo(ci, sizeof(ci), "weak_nodb", "weak-pw-1");
	ck_assert_int_eq(reload_with(ci, "      client_host: 127.0.0.1\n"), ENVDB_OK);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_ERR_PERMISSION);
	ck_assert_ptr_nonnull(strstr(last_message(), "CREATEDB"));
	ck_assert_str_eq(envdb_error_last()->native_code, "42501");
	ck_assert_ptr_null(strstr(last_message(), "weak-pw-1"));

	admin_conninfo(ci, sizeof(ci), "weak_norole", "weak-pw-2");
	ck_assert_int_eq(reload_with(ci, "      client_host: 127.0.0.1\n"), ENVDB_OK);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_ERR_PERMISSION);
	ck_assert_ptr_nonnull(strstr(last_message(), "CREATEROLE"));

	ck_assert_int_eq(database_exists(db), 0);
	ck_assert_int_eq(roles_of(db), 0);
	super_exec(NULL, "DROP ROLE weak_nodb; DROP ROLE weak_norole");
}
END_TEST

/* A failure half-way leaves nothing: the template's event trigger makes
 * the schema step (after CREATE DATABASE) fail. */
START_TEST(test_failure_leaves_nothing)
{
	char env[37], db[80];

	super_exec(NULL, "CREATE DATABASE tpl_fail IS_TEMPLATE true");
	super_exec("tpl_fail",
		   "CREATE FUNCTION refuse() RETURNS event_trigger LANGUAGE plpgsql AS "
		   "$$BEGIN RAISE EXCEPTION 'refused by the test template'; END$$; "
		   "CREATE EVENT TRIGGER refuse ON ddl_command_start "
		   "WHEN TAG IN ('ALTER DEFAULT PRIVILEGES') EXECUTE FUNCTION refuse()");
	ck_assert_int_eq(reload_with(NULL, "      template: tpl_fail\n"), ENVDB_OK);
	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_ne(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_ptr_nonnull(strstr(last_message(), "refused by the test template"));
	ck_assert_int_eq(database_exists(db), 0);
	ck_assert_int_eq(roles_of(db), 0);
	super_exec(NULL, "ALTER DATABASE tpl_fail IS_TEMPLATE false; ");
	super_exec(NULL, "DROP DATABASE tpl_fail");

	/* The roles exist before CREATE DATABASE: a failing CREATE DATABASE
	 * takes them back. */
	ck_assert_int_eq(reload_with(NULL, "      template: no_such_template\n"), ENVDB_OK);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(last_message(), "template"));
	ck_assert_int_eq(roles_of(db), 0);

	/* Leftovers of an interrupted create (roles without their database)
	 * are cleared by the next create, and by drop. */
	ck_assert_int_eq(reload_with(NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	{
		char sql[256];
		snprintf(sql, sizeof(sql), "DROP DATABASE \"%s\"", db);
		super_exec(NULL, sql);
	}
	ck_assert_int_eq(roles_of(db), 2);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(database_exists(db), 1);
	{
		char sql[256];
		snprintf(sql, sizeof(sql), "DROP DATABASE \"%s\"", db);
		super_exec(NULL, sql);
	}
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	ck_assert_int_eq(roles_of(db), 0);

	/* A create interrupted between CREATE DATABASE and its COMMENT: the
	 * database is still recognised (the administrator owns it and its
	 * owner role is marked), listed, and dropped. */
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	{
		char sql[256], **names = NULL;
		size_t n = 0, i;
		int found = 0;

		snprintf(sql, sizeof(sql), "COMMENT ON DATABASE \"%s\" IS NULL", db);
		super_exec(NULL, sql);
		ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
		for (i = 0; i < n; i++)
			found += strcmp(names[i], db) == 0;
		envdbi_strv_free(names, n);
		ck_assert_int_eq(found, 1);
	}
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	ck_assert_int_eq(database_exists(db), 0);
	ck_assert_int_eq(roles_of(db), 0);
}
END_TEST

/* Create twice: EXISTS, and the first one untouched. */
START_TEST(test_exists)
{
	char env[37], db[80], *h = NULL;
	envdbi_secret *s = NULL;

	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, NULL, 0, &s, &h), ENVDB_OK);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_ERR_EXISTS);
	ck_assert(can_connect(db, h, s->data));
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	envdbi_secret_free(s);
	free(h);
}
END_TEST

/* list finds exactly what the plugin owns; drop never touches a database
 * it did not make. */
START_TEST(test_list_and_foreign)
{
	char prefix[16], line[64], a[37], b[37], f[37], dba[80], dbb[80], dbf[80], sql[256];
	char **names = NULL;
	unsigned char rnd[4];
	envdb_db_ref ref;
	size_t n = 0;

	random_bytes(rnd, sizeof(rnd));
	snprintf(prefix, sizeof(prefix), "l%02x%02x%02x_", rnd[0], rnd[1], rnd[2]);
	snprintf(line, sizeof(line), "      prefix: %s\n", prefix);
	ck_assert_int_eq(reload_with(NULL, line), ENVDB_OK);
	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
	ck_assert_uint_eq(n, 0);
	envdbi_strv_free(names, n);

	new_uuid(a);
	new_uuid(b);
	new_uuid(f);
	db_name_of(dba, sizeof(dba), prefix, a);
	db_name_of(dbb, sizeof(dbb), prefix, b);
	db_name_of(dbf, sizeof(dbf), prefix, f);
	ck_assert_int_eq(create_env(a, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(create_env(b, NULL, NULL), ENVDB_OK);
	/* Foreign look-alikes: our name without our marker, our marker on a
	 * name that does not match it, an unrelated database. */
	snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", dbf);
	super_exec(NULL, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE \"%sx\"", prefix);
	super_exec(NULL, sql);
	snprintf(sql, sizeof(sql), "COMMENT ON DATABASE \"%sx\" IS 'envdb:%s'", prefix, a);
	super_exec(NULL, sql);
	super_exec(NULL, "CREATE DATABASE list_unrelated");

	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(names[0], strcmp(dba, dbb) < 0 ? dba : dbb);
	ck_assert_str_eq(names[1], strcmp(dba, dbb) < 0 ? dbb : dba);
	envdbi_strv_free(names, n);

	/* The foreign database is refused by drop and left alone. */
	ref_of(&ref, NULL, dbf);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(last_message(), "not made by envdb"));
	ck_assert_int_eq(database_exists(dbf), 1);
	/* Create on a taken name: EXISTS, nothing changed. */
	ck_assert_int_eq(create_env(f, NULL, NULL), ENVDB_ERR_EXISTS);
	ck_assert_int_eq(roles_of(dbf), 0);
	/* A foreign role with one of our names blocks create. */
	snprintf(sql, sizeof(sql), "DROP DATABASE \"%s\"", dbf);
	super_exec(NULL, sql);
	snprintf(sql, sizeof(sql), "CREATE ROLE \"%s_rw\"", dbf);
	super_exec(NULL, sql);
	ck_assert_int_eq(create_env(f, NULL, NULL), ENVDB_ERR_EXISTS);
	ck_assert_int_eq(database_exists(dbf), 0);
	snprintf(sql, sizeof(sql), "DROP ROLE \"%s_rw\"", dbf);
	super_exec(NULL, sql);

	/* Reconcile's way of dropping an orphan: by name alone. */
	ref_of(&ref, NULL, dba);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_OK);
	ck_assert_int_eq(database_exists(dba), 0);
	ck_assert_int_eq(roles_of(dba), 0);
	ck_assert_int_eq(drop_env(b), ENVDB_OK);
	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
	ck_assert_uint_eq(n, 0);
	envdbi_strv_free(names, n);
	super_exec(NULL, "DROP DATABASE list_unrelated");
	snprintf(sql, sizeof(sql), "DROP DATABASE \"%sx\"", prefix);
	super_exec(NULL, sql);
}
END_TEST

#define DEP_1 "11111111-2222-4333-8444-555555555555"
#define DEP_2 "99999999-8888-4777-8666-555555555555"

static size_t list_count(void)
{
	char **names = NULL;
	size_t n = 0;

	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_OK);
	envdbi_strv_free(names, n);
	return n;
}

/* Issue 16 §3 (ENVDB_ADAPTER_CAP_DEPLOYMENT): the database and its group
 * roles are marked with the deployment; another deployment on the same
 * server (same prefix) neither lists nor drops it; a database marked by an
 * earlier envdb (no deployment id) is nobody's orphan: not listed, not
 * dropped by name alone, dropped when the host names its environment. */
START_TEST(test_deployment_marker)
{
	char prefix[16], line[64], env[37], db[80], sql[512], v[256];
	unsigned char rnd[4];
	envdb_db_ref ref;

	random_bytes(rnd, sizeof(rnd));
	snprintf(prefix, sizeof(prefix), "d%02x%02x%02x_", rnd[0], rnd[1], rnd[2]);
	snprintf(line, sizeof(line), "      prefix: %s\n", prefix);
	ck_assert_int_eq(reload_with(NULL, line), ENVDB_OK);
	ck_assert(envdbi_plugin_capabilities(P) & ENVDB_ADAPTER_CAP_DEPLOYMENT);
	new_uuid(env);
	db_name_of(db, sizeof(db), prefix, env);

	envdbi_plugin_set_deployment(P, DEP_1);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	snprintf(sql, sizeof(sql),
		 "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = "
		 "'%s'",
		 db);
	ck_assert_int_eq(pg_harness_query1(H, NULL, sql, v, sizeof(v)), 1);
	ck_assert_ptr_nonnull(strstr(v, " deployment:" DEP_1));
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_roles WHERE rolname IN ('%s_rw', '%s_ro') AND "
		 "shobj_description(oid, 'pg_authid') LIKE '%% deployment:" DEP_1 "'",
		 db, db);
	ck_assert_int_eq(super_count(sql), 2);
	ck_assert_uint_eq(list_count(), 1);

	/* The other deployment: not listed, not dropped, by name or by id. */
	envdbi_plugin_set_deployment(P, DEP_2);
	ck_assert_uint_eq(list_count(), 0);
	ref_of(&ref, NULL, db);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(last_message(), "belongs to deployment " DEP_1));
	ck_assert_int_eq(drop_env(env), ENVDB_ERR_STATE);
	ck_assert_int_eq(database_exists(db), 1);
	ck_assert_int_gt(roles_of(db), 0);
	/* A host without a deployment id (1.0) sees it, as before. */
	envdbi_plugin_set_deployment(P, NULL);
	ck_assert_uint_eq(list_count(), 1);

	/* What an earlier envdb wrote: the marker without a deployment id. */
	snprintf(sql, sizeof(sql), "COMMENT ON DATABASE \"%s\" IS 'envdb:%s'", db, env);
	super_exec(NULL, sql);
	envdbi_plugin_set_deployment(P, DEP_2);
	ck_assert_uint_eq(list_count(), 0);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(last_message(), "without a deployment id"));
	envdbi_plugin_set_deployment(P, DEP_1);
	ck_assert_uint_eq(list_count(), 0);
	ck_assert_int_eq(envdbi_adapter_drop(P, &ref), ENVDB_ERR_STATE);
	ck_assert_int_eq(database_exists(db), 1);
	/* The deployment whose row names the environment drops it. */
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	ck_assert_int_eq(database_exists(db), 0);
	ck_assert_int_eq(roles_of(db), 0);
	envdbi_plugin_set_deployment(P, NULL);
}
END_TEST

/* Unreachable server, wrong admin password, URI conninfo: the right
 * status, and never the password or the conninfo in a message. */
START_TEST(test_errors_and_secrets)
{
	char ci[1024], env[37], uri[512];
	char *h = NULL, **names = NULL;
	envdbi_secret *s = NULL;
	size_t n = 0;

	new_uuid(env);
	/* Unreachable: a port nobody listens on. */
	snprintf(ci, sizeof(ci),
		 "host=127.0.0.1 port=1 user=envdb_admin password=Sup3rSecretAdminPw "
		 "dbname=postgres");
	ck_assert_int_eq(reload_with(ci, NULL), ENVDB_OK);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_ERR_UNAVAILABLE);
	ck_assert_ptr_null(strstr(last_message(), "Sup3rSecretAdminPw"));
	ck_assert_ptr_nonnull(strstr(last_message(), "postgres"));
	ck_assert_int_eq(envdbi_adapter_list(P, &names, &n), ENVDB_ERR_UNAVAILABLE);

	/* Wrong password. */
	admin_conninfo(ci, sizeof(ci), ADMIN_USER, "Wr0ngPasswordValue");
	ck_assert_int_eq(reload_with(ci, "      client_host: 127.0.0.1\n"), ENVDB_OK);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_ERR_AUTH);
	ck_assert_ptr_null(strstr(last_message(), "Wr0ngPasswordValue"));

	/* A URI with the password in it works, and a bad one is refused at
	 * init without being echoed. */
	snprintf(uri, sizeof(uri), "postgresql://%s:%s@127.0.0.1:%d/postgres", ADMIN_USER, admin_pw,
		 pg_harness_port(H));
	ck_assert_int_eq(reload_with(uri, NULL), ENVDB_OK);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, NULL, 0, &s, &h), ENVDB_OK);
	ck_assert_int_eq(probe(env, s), ENVDB_OK);
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	ck_assert_int_eq(reload_with("postgresql://u:L3aky%zzPassword@host/db", NULL),
			 ENVDB_ERR_CONFIG);
	ck_assert_ptr_null(strstr(last_message(), "L3akyPassword"));
	ck_assert_int_eq(reload_with("host=x password=L3akyPassword bogus", NULL),
			 ENVDB_ERR_CONFIG);
	ck_assert_ptr_null(strstr(last_message(), "L3akyPassword"));
	/* A unix socket admin connection needs client_host. */
	snprintf(ci, sizeof(ci), "host=%s port=%d user=%s password=%s dbname=postgres",
		 pg_harness_dir(H), pg_harness_port(H), ADMIN_USER, admin_pw);
	ck_assert_int_eq(reload_with(ci, NULL), ENVDB_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(last_message(), "client_host"));
	envdbi_secret_free(s);
	free(h);
}
END_TEST

/* The host's deadline: a statement stuck behind a lock is cancelled in
 * time, and the plugin recovers on the next call. */
START_TEST(test_deadline)
{
	char env[37], db[80];
	PGconn *locker;
	PGresult *r;
	int64_t t0, t1;
	struct timespec ts;

	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	/* Warm the admin connection, then block pg_database. */
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	locker = pg_harness_connect_super(H, NULL);
	ck_assert_ptr_nonnull(locker);
	r = PQexec(locker, "BEGIN; LOCK TABLE pg_catalog.pg_database IN ACCESS EXCLUSIVE MODE");
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);

	envdbi_host_set_call_timeout_ms(1500);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_ERR_TIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t1 = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	ck_assert_msg(t1 - t0 < 4000, "took %lld ms for a 1500 ms deadline", (long long)(t1 - t0));

	r = PQexec(locker, "ROLLBACK");
	PQclear(r);
	PQfinish(locker);
	envdbi_host_set_call_timeout_ms(30000);
	ck_assert_int_eq(database_exists(db), 0);
	ck_assert_int_eq(roles_of(db), 0);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
}
END_TEST

/* A superuser administrator works too (no membership grants needed). */
START_TEST(test_superuser_admin)
{
	char ci[1024], env[37], db[80], *h1 = NULL, *h2 = NULL;
	envdbi_secret *s1 = NULL, *s2 = NULL;
	PGconn *c;

	admin_conninfo(ci, sizeof(ci), pg_harness_super_user(H), pg_harness_super_password(H));
	ck_assert_int_eq(reload_with(ci, NULL), ENVDB_OK);
	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, NULL, 0, &s1, &h1), ENVDB_OK);
	c = client(db, h1, s1->data);
	ck_assert_str_eq(run_sql(c, "CREATE TABLE t (x int)"), "");
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, h1, 0, &s2, &h2), ENVDB_OK);
	ck_assert_int_eq(revoke_cred(env, ENVDB_AUTH_FULL_ACCESS, h1), ENVDB_OK);
	ck_assert_str_ne(run_sql(c, "SELECT 1"), "");
	PQfinish(c);
	ck_assert(can_connect(db, h2, s2->data));
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	ck_assert_int_eq(database_exists(db) + roles_of(db), 0);
	envdbi_secret_free(s1);
	envdbi_secret_free(s2);
	free(h1);
	free(h2);
}
END_TEST

/* connection_limit and client_port reach the server and the URL. */
START_TEST(test_config_options)
{
	char env[37], db[80], sql[256], v[32], *url = NULL;

	ck_assert_int_eq(reload_with(NULL, "      client_host: db.example.org\n"
					   "      client_port: \"6543\"\n"
					   "      connection_limit: \"7\"\n"),
			 ENVDB_OK);
	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, &url, NULL), ENVDB_OK);
	snprintf(sql, sizeof(sql), "postgresql://db.example.org:6543/%s", db);
	ck_assert_str_eq(url, sql);
	snprintf(sql, sizeof(sql), "SELECT datconnlimit FROM pg_database WHERE datname = '%s'", db);
	ck_assert_int_eq(pg_harness_query1(H, NULL, sql, v, sizeof(v)), 1);
	ck_assert_str_eq(v, "7");
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	free(url);
	ck_assert_int_eq(reload_with(NULL, "      connection_limit: \"-2\"\n"), ENVDB_ERR_CONFIG);
	ck_assert_int_eq(reload_with(NULL, "      client_port: \"70000\"\n"), ENVDB_ERR_CONFIG);
}
END_TEST

/* ------------------------------------------------------------------------ */

/* Revoke races another process that drops the same role: the role is seen
 * by revoke's lookup, then dropped (committed) while revoke's ALTER ROLE
 * waits on it.  A role that is gone is revoked: success, not an error. */
typedef struct revoke_job {
	const char *env, *handle;
	int rc;
	char message[1024];
} revoke_job;

static void *revoke_thread(void *arg)
{
	revoke_job *j = arg;

	j->rc = revoke_cred(j->env, ENVDB_AUTH_FULL_ACCESS, j->handle);
	snprintf(j->message, sizeof(j->message), "%s", envdb_error_last()->message);
	return NULL;
}

START_TEST(test_revoke_races_a_drop)
{
	char env[37], db[80], sql[256], v[32];
	char *h1 = NULL;
	envdbi_secret *s1 = NULL;
	PGconn *other;
	pthread_t th;
	revoke_job job;
	int i, waiting = 0;

	new_uuid(env);
	db_name_of(db, sizeof(db), "envdb_", env);
	ck_assert_int_eq(create_env(env, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(mint(env, ENVDB_AUTH_FULL_ACCESS, NULL, 0, &s1, &h1), ENVDB_OK);
	ck_assert(can_connect(db, h1, s1->data));

	other = pg_harness_connect_super(H, NULL);
	ck_assert_ptr_nonnull(other);
	ck_assert_str_eq(run_sql(other, "BEGIN"), "");
	snprintf(sql, sizeof(sql), "DROP ROLE \"%s\"", h1);
	ck_assert_str_eq(run_sql(other, sql), "");
	memset(&job, 0, sizeof(job));
	job.env = env;
	job.handle = h1;
	ck_assert_int_eq(pthread_create(&th, NULL, revoke_thread, &job), 0);
	/* Wait until revoke blocks on the role the other transaction drops. */
	for (i = 0; i < 200 && !waiting; i++) {
		ck_assert_int_eq(
			pg_harness_query1(H, NULL,
					  "SELECT count(*) FROM pg_stat_activity WHERE usename = '"
					  ADMIN_USER "' AND wait_event_type = 'Lock'",
					  v, sizeof(v)),
			1);
		waiting = atoi(v) > 0;
		if (!waiting)
			usleep(50000);
	}
	ck_assert_str_eq(run_sql(other, "COMMIT"), "");
	PQfinish(other);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(waiting, "revoke never waited on the dropped role (the race was not made)");
	ck_assert_msg(job.rc == ENVDB_OK, "revoke of a role dropped meanwhile: %d: %s", job.rc,
		      job.message);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_roles WHERE rolname = '%s'", h1);
	ck_assert_int_eq(super_count(sql), 0);
	ck_assert(!can_connect(db, h1, s1->data));
	/* And the same role gone before revoke looks: success too. */
	ck_assert_int_eq(revoke_cred(env, ENVDB_AUTH_FULL_ACCESS, h1), ENVDB_OK);
	ck_assert_int_eq(drop_env(env), ENVDB_OK);
	envdbi_secret_free(s1);
	free(h1);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("plugin_postgres");
	TCase *tc = tcase_create("postgres");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_descriptor);
	tcase_add_test(tc, test_database_name);
	tcase_add_test(tc, test_lifecycle);
	tcase_add_test(tc, test_deployment_marker);
	tcase_add_test(tc, test_isolation);
	tcase_add_test(tc, test_read_only_cannot_write);
	tcase_add_test(tc, test_rotation_overlap);
	tcase_add_test(tc, test_revoke_races_a_drop);
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_hostile_names);
	tcase_add_test(tc, test_migrated_database);
	tcase_add_test(tc, test_missing_privileges);
	tcase_add_test(tc, test_failure_leaves_nothing);
	tcase_add_test(tc, test_exists);
	tcase_add_test(tc, test_list_and_foreign);
	tcase_add_test(tc, test_errors_and_secrets);
	tcase_add_test(tc, test_deadline);
	tcase_add_test(tc, test_config_options);
	tcase_add_test(tc, test_superuser_admin);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	char err[4096], sql[256];
	unsigned char rnd[16];
	SRunner *sr;
	size_t i;
	int failed, rc;

	rc = pg_harness_start(&H, err, sizeof(err));
	if (rc == PG_HARNESS_SKIP) {
		fprintf(stderr, "test_plugin_postgres: SKIP: %s\n", err);
		return 77;
	}
	if (rc != 0) {
		fprintf(stderr, "test_plugin_postgres: cannot start a PostgreSQL server: %s\n",
			err);
		return 1;
	}
	/* The administrator the plugin uses: CREATEDB and CREATEROLE, not a
	 * superuser. */
	{
		/* Not random_bytes(): no ck_assert outside a test. */
		int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		if (fd < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
			fprintf(stderr, "test_plugin_postgres: cannot read /dev/urandom\n");
			pg_harness_stop(H);
			return 1;
		}
		close(fd);
	}
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(admin_pw + 2 * i, 3, "%02x", rnd[i]);
	snprintf(sql, sizeof(sql),
		 "CREATE ROLE " ADMIN_USER " LOGIN CREATEDB CREATEROLE PASSWORD '%s'", admin_pw);
	if (pg_harness_exec(H, NULL, sql, err, sizeof(err)) != 0) {
		fprintf(stderr, "test_plugin_postgres: cannot create the admin role: %s\n", err);
		pg_harness_stop(H);
		return 1;
	}

	sr = srunner_create(suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	pg_harness_stop(H);
	return failed == 0 ? 0 : 1;
}
