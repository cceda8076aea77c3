/*
 * bench/bench_postgres.c — what the postgres adapter costs over the SQL it
 * runs.  Provisioning one environment through the plugin (create + mint a
 * full_access credential + mint a read_only one, through the host's
 * envdbi_adapter_* wrappers, as envdb does) is timed against the same
 * provisioning as bare SQL (the roles, CREATE DATABASE, grants, schema
 * setup and two login roles with SCRAM verifiers) over one persistent
 * libpq connection, on the same throwaway server (tests/pg_harness.c), in
 * the same run, interleaved run by run so both see the same server state.
 * Every environment is dropped after its run (not timed).
 *
 * Reports the median, minimum and maximum of N runs (ENVDB_BENCH_RUNS,
 * default 25) of each, and the ratio of the medians, also to the table of
 * `make bench` (bench/bench.h).  Fails (exit 1) when the ratio exceeds
 * ENVDB_BENCH_PG_MAX_RATIO (default 2.0): what the plugin adds — ownership
 * checks, markers, the privilege check, its deadline handling — must stay
 * small next to CREATE DATABASE itself.  Without PostgreSQL server binaries
 * it says so (a "skipped" note in the table) and exits 0.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bench.h"
#include "internal.h"
#include "pg_harness.h"

#define ADMIN_USER "bench_admin"
#define MAX_RUNS 1000

static pg_harness *H;
static char admin_pw[40];

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int random_hex(char *out, size_t nbytes)
{
	unsigned char b[32];
	size_t i;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || nbytes > sizeof(b) || read(fd, b, nbytes) != (ssize_t)nbytes) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	for (i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	return 0;
}

static int new_uuid(char out[37])
{
	char h[33];

	if (random_hex(h, 16) != 0)
		return -1;
	h[12] = '4';
	h[16] = "89ab"[h[16] % 4];
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* ------------------------------------------------------------------------ */
/* Through the plugin                                                        */
/* ------------------------------------------------------------------------ */

static int plugin_run(envdbi_plugin *p, double *ms)
{
	char env[37], cred1[37], cred2[37], *url = NULL, *meta = NULL, *h1 = NULL, *h2 = NULL;
	envdbi_secret *s1 = NULL, *s2 = NULL;
	envdb_create_request creq = {
		.struct_size = sizeof(creq), .plan = "free", .storage_limit_mb = 100};
	envdb_db_ref ref = {.struct_size = sizeof(ref)};
	envdb_mint_request m1 = {.struct_size = sizeof(m1),
				 .authorization = ENVDB_AUTH_FULL_ACCESS};
	envdb_mint_request m2 = {.struct_size = sizeof(m2), .authorization = ENVDB_AUTH_READ_ONLY};
	double t0;
	int rc;

	if (new_uuid(env) != 0 || new_uuid(cred1) != 0 || new_uuid(cred2) != 0)
		return -1;
	creq.environment_id = env;
	ref.environment_id = env;
	m1.credential_id = cred1;
	m2.credential_id = cred2;

	t0 = now_ms();
	rc = envdbi_adapter_create(p, &creq, &url, &meta);
	if (rc == ENVDB_OK) {
		ref.url = url;
		ref.metadata = meta;
		rc = envdbi_adapter_mint(p, &ref, &m1, &s1, &h1);
	}
	if (rc == ENVDB_OK)
		rc = envdbi_adapter_mint(p, &ref, &m2, &s2, &h2);
	*ms = now_ms() - t0;
	if (rc != ENVDB_OK)
		fprintf(stderr, "bench_postgres: plugin: %s\n", envdb_error_last()->message);
	if (envdbi_adapter_drop(p, &ref) != ENVDB_OK) {
		fprintf(stderr, "bench_postgres: plugin drop: %s\n", envdb_error_last()->message);
		rc = -1;
	}
	envdbi_secret_free(s1);
	envdbi_secret_free(s2);
	free(h1);
	free(h2);
	free(url);
	free(meta);
	return rc == ENVDB_OK ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Bare SQL                                                                  */
/* ------------------------------------------------------------------------ */

static int exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, "bench_postgres: bare: %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

/* One login role, as the plugin makes it: a SCRAM verifier computed on the
 * client, the group, the marker, and for full access the role setting. */
static int bare_login(PGconn *c, const char *db, const char *role, const char *group, int rw)
{
	char pw[44], sql[1024], setting[256] = "", *verifier;

	if (random_hex(pw, 21) != 0)
		return -1;
	verifier = PQencryptPasswordConn(c, pw, role, "scram-sha-256");
	if (verifier == NULL)
		return -1;
	if (rw)
		snprintf(setting, sizeof(setting), "ALTER ROLE %s IN DATABASE %s SET role = '%s'; ",
			 role, db, group);
	snprintf(sql, sizeof(sql),
		 "BEGIN; CREATE ROLE %s LOGIN PASSWORD '%s' VALID UNTIL 'infinity' IN ROLE %s; "
		 "COMMENT ON ROLE %s IS 'envdb:x fp:0123456789abcdef'; %sCOMMIT",
		 role, verifier, group, role, setting);
	PQfreemem(verifier);
	return exec_ok(c, sql);
}

static int bare_run(PGconn *admin, double *ms)
{
	char env[37], hex[33], db[64], rw[72], ro[72], l1[80], l2[80], sql[2048], ci[1024];
	PGconn *dbc = NULL;
	double t0;
	int rc = -1, i, o = 0;

	if (new_uuid(env) != 0)
		return -1;
	for (i = 0; env[i]; i++)
		if (env[i] != '-')
			hex[o++] = env[i];
	hex[o] = '\0';
	snprintf(db, sizeof(db), "bare_%s", hex);
	snprintf(rw, sizeof(rw), "%s_rw", db);
	snprintf(ro, sizeof(ro), "%s_ro", db);
	snprintf(l1, sizeof(l1), "%s_rw_0123456789", db);
	snprintf(l2, sizeof(l2), "%s_ro_0123456789", db);

	t0 = now_ms();
	snprintf(sql, sizeof(sql),
		 "BEGIN; CREATE ROLE %s NOLOGIN; COMMENT ON ROLE %s IS 'envdb:%s'; "
		 "CREATE ROLE %s NOLOGIN; COMMENT ON ROLE %s IS 'envdb:%s'; "
		 "GRANT %s TO CURRENT_USER; COMMIT",
		 rw, rw, env, ro, ro, env, rw);
	if (exec_ok(admin, sql) != 0)
		goto done;
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
	if (exec_ok(admin, sql) != 0)
		goto done;
	snprintf(sql, sizeof(sql),
		 "BEGIN; COMMENT ON DATABASE %s IS 'envdb:%s'; "
		 "REVOKE ALL ON DATABASE %s FROM PUBLIC; "
		 "GRANT CONNECT, TEMPORARY, CREATE ON DATABASE %s TO %s; "
		 "GRANT CONNECT ON DATABASE %s TO %s; COMMIT",
		 db, env, db, db, rw, db, ro);
	if (exec_ok(admin, sql) != 0)
		goto done;
	pg_harness_conninfo(ci, sizeof(ci), H, ADMIN_USER, admin_pw, db);
	dbc = PQconnectdb(ci);
	if (PQstatus(dbc) != CONNECTION_OK)
		goto done;
	snprintf(sql, sizeof(sql),
		 "BEGIN; ALTER SCHEMA public OWNER TO %s; REVOKE ALL ON SCHEMA public FROM PUBLIC; "
		 "GRANT USAGE ON SCHEMA public TO %s; "
		 "ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT SELECT ON TABLES TO %s; "
		 "ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT SELECT ON SEQUENCES TO %s; "
		 "ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT USAGE ON SCHEMAS TO %s; "
		 "GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s; "
		 "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO %s; COMMIT",
		 rw, ro, rw, ro, rw, ro, rw, ro, ro, ro);
	if (exec_ok(dbc, sql) != 0)
		goto done;
	PQfinish(dbc);
	dbc = NULL;
	if (bare_login(admin, db, l1, rw, 1) != 0 || bare_login(admin, db, l2, ro, 0) != 0)
		goto done;
	*ms = now_ms() - t0;
	rc = 0;
done:
	PQfinish(dbc);
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	if (exec_ok(admin, sql) != 0)
		rc = -1;
	snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS %s, %s, %s, %s", l1, l2, ro, rw);
	if (exec_ok(admin, sql) != 0)
		rc = -1;
	return rc;
}

/* ------------------------------------------------------------------------ */

static void report(const char *what, const char *unit, double *v, int n, double *med)
{
	double mn = v[0], mx = v[0];
	int i;

	for (i = 1; i < n; i++) {
		if (v[i] < mn)
			mn = v[i];
		if (v[i] > mx)
			mx = v[i];
	}
	*med = median(v, n);
	printf("  %-9s median %8.2f%s   min %8.2f%s   max %8.2f%s\n", what, *med, unit, mn, unit,
	       mx, unit);
}

int main(void)
{
	static double tp[MAX_RUNS], tb[MAX_RUNS], ratio[MAX_RUNS];
	char err[4096], dir[256], manifest[320], cinfo[320], text[2048], ci[1024], sql[256];
	const char *env_runs = getenv("ENVDB_BENCH_RUNS");
	const char *env_max = getenv("ENVDB_BENCH_PG_MAX_RATIO");
	double max_ratio = env_max != NULL ? atof(env_max) : 2.0, mp, mb, mr;
	int runs = env_runs != NULL ? atoi(env_runs) : 25, i, rc, status = 1, fd;
	envdbi_manifest *m = NULL;
	envdbi_plugins *set = NULL;
	envdbi_plugin *p;
	PGconn *admin = NULL;
	FILE *f;

	if (runs < 1 || runs > MAX_RUNS)
		runs = 25;
	bench_begin("bench_postgres");
	rc = pg_harness_start(&H, err, sizeof(err));
	if (rc == PG_HARNESS_SKIP) {
		printf("bench_postgres: skipped: %s\n", err);
		bench_skipped(err);
		return bench_finish();
	}
	if (rc != 0) {
		fprintf(stderr, "bench_postgres: cannot start a PostgreSQL server: %s\n", err);
		return 1;
	}
	dir[0] = '\0';
	if (random_hex(admin_pw, 16) != 0)
		goto done;
	snprintf(sql, sizeof(sql),
		 "CREATE ROLE " ADMIN_USER " LOGIN CREATEDB CREATEROLE PASSWORD '%s'", admin_pw);
	if (pg_harness_exec(H, NULL, sql, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_postgres: %s\n", err);
		goto done;
	}

	/* The plugin, loaded as envdb loads it. */
	snprintf(dir, sizeof(dir), "%s/envdb-bench-pg-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(dir) == NULL) {
		dir[0] = '\0';
		goto done;
	}
	snprintf(manifest, sizeof(manifest), "%s/envdb.yaml", dir);
	snprintf(cinfo, sizeof(cinfo), "%s/admin.conninfo", dir);
	pg_harness_conninfo(ci, sizeof(ci), H, ADMIN_USER, admin_pw, "postgres");
	fd = open(cinfo, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, ci, strlen(ci)) != (ssize_t)strlen(ci) || close(fd) != 0)
		goto done;
	snprintf(text, sizeof(text),
		 "version: 1\nplugins:\n  - name: postgres\n    kind: adapter\n    config:\n"
		 "      admin_conninfo_file: %s\n      prefix: bench_\n",
		 cinfo);
	f = fopen(manifest, "w");
	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
		goto done;
	if (envdbi_manifest_load(&m, manifest) != ENVDB_OK ||
	    envdbi_plugins_load(&set, m) != ENVDB_OK ||
	    (p = envdbi_plugins_find(set, "postgres", ENVDB_PLUGIN_ADAPTER)) == NULL) {
		fprintf(stderr, "bench_postgres: loading the plugin: %s\n",
			envdb_error_last()->message);
		goto done;
	}
	admin = PQconnectdb(ci);
	if (PQstatus(admin) != CONNECTION_OK) {
		fprintf(stderr, "bench_postgres: %s", PQerrorMessage(admin));
		goto done;
	}

	/* One of each to warm up (connections, catalog caches), then the runs,
	 * interleaved. */
	if (plugin_run(p, &mp) != 0 || bare_run(admin, &mb) != 0)
		goto done;
	for (i = 0; i < runs; i++) {
		if (i % 2 == 0) {
			if (plugin_run(p, &tp[i]) != 0 || bare_run(admin, &tb[i]) != 0)
				goto done;
		} else {
			if (bare_run(admin, &tb[i]) != 0 || plugin_run(p, &tp[i]) != 0)
				goto done;
		}
		ratio[i] = tp[i] / tb[i];
	}
	{
		bench_stats sp = bench_stats_of(tp, runs), sb = bench_stats_of(tb, runs);
		char title[128];

		snprintf(title, sizeof(title), "7 postgres: provision one env (PostgreSQL %d)",
			 pg_harness_version(H) / 10000);
		bench_ratio("postgres", title, "ms", &sp, &sb, "bare SQL",
			    "the same provisioning as bare SQL over one persistent libpq "
			    "connection on the same throwaway server: the two group roles, "
			    "CREATE DATABASE, grants, schema setup, two login roles with "
			    "client-side SCRAM verifiers",
			    max_ratio);
	}
	printf("postgres adapter: provision one environment (create + mint full_access + mint "
	       "read_only)\n");
	printf("  PostgreSQL %d.%d, %d runs each, interleaved, same server\n",
	       pg_harness_version(H) / 10000, pg_harness_version(H) % 10000, runs);
	report("plugin", " ms", tp, runs, &mp);
	report("bare SQL", " ms", tb, runs, &mb);
	report("ratio", "x  ", ratio, runs, &mr);
	printf("  ratio of the medians (plugin / bare SQL): %.2f (target <= %.2f)\n", mp / mb,
	       max_ratio);
	status = mp / mb <= max_ratio ? 0 : 1;
	if (status != 0)
		printf("  FAIL: the plugin costs more than %.2fx the bare SQL\n", max_ratio);
done:
	if (status == 1 && dir[0] != '\0' && admin != NULL)
		bench_note("postgres: a run failed before the figures were complete");
	PQfinish(admin);
	if (set != NULL)
		envdbi_plugins_free(set);
	if (m != NULL)
		envdbi_manifest_free(m);
	if (dir[0] != '\0')
		nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	pg_harness_stop(H);
	rc = bench_finish();
	return rc != 0 ? rc : status;
}
