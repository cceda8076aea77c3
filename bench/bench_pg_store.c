/*
 * bench/bench_pg_store.c — provisioning throughput on a PostgreSQL control
 * plane (issue 16 §2) with 1, 2 and 4 concurrent hosts, against its floor,
 * on a throwaway server it starts (tests/pg_harness.c); "skipped" without
 * server binaries.
 *
 * Measured: H processes (hosts: each its own context, connection and
 * cache; H = 1, 2, 4), each provisioning N environments (a new
 * organization's "dev" each, sqlite adapter, kms encryptor) on one
 * control plane.  Figure: environments per second of all hosts together.
 *
 * Floor: the same H processes writing the same rows the library ends with
 * (environment, database, credential, owner member) in the library's two
 * transactions per environment (the intent row; then the rest and the
 * activation), with bare libpq statements (prepared), the same durability
 * (synchronous_commit on), and the same write lock (the advisory lock the
 * store takes), into a schema envdb made (same constraints and triggers).
 * The floor leaves out what is not the store: the adapter's database file,
 * the secret and its encryption, validation.  No target: the figure shows
 * what the store costs next to its bare SQL, and how it scales with hosts
 * (writers are serialized by design: one write lock per control plane).
 *
 * Environment: ENVDB_BENCH_PG_STORE_N (environments per host and run,
 * default 40; 10 with ENVDB_BENCH_QUICK), ENVDB_BENCH_RUNS (default 3).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bench.h"
#include "internal.h"
#include "pg_harness.h"
#include "store.h"

#define ROLE "envdb_bench"

static pg_harness *cluster;
static char dir[1024], manifest[1200], floor_manifest[1200], conninfo[1024];
static int per_host;
static int hosts_now;

/* The manifest of the deployment: sqlite adapter, kms, the PostgreSQL
 * control plane `schema`. */
static void write_manifest(char *out, size_t cap, const char *name, const char *schema)
{
	char text[4096], ci[1100];

	snprintf(ci, sizeof ci, "%s/conninfo", dir);
	if (bench_write_file(ci, conninfo) != 0 || chmod(ci, 0600) != 0)
		bench_die("write the conninfo file");
	snprintf(text, sizeof text,
		 "version: 1\n"
		 "control_plane:\n"
		 "  driver: postgresql\n"
		 "  conninfo_file: %s\n"
		 "  schema: %s\n"
		 "defaults:\n"
		 "  driver: sqlite\n"
		 "  encryptor: kms\n"
		 "legacy:\n"
		 "  register_shim: false\n"
		 "plugins:\n"
		 "  - name: sqlite\n"
		 "    kind: adapter\n"
		 "    config:\n"
		 "      base_dir: envs\n"
		 "  - name: kms\n"
		 "    kind: encryptor\n"
		 "    config:\n"
		 "      keyring_dir: keyring\n",
		 ci, schema);
	snprintf(out, cap, "%s/%s", dir, name);
	if (bench_write_file(out, text) != 0)
		bench_die("write the manifest");
}

/* One host of the library: N provisionings. */
static int lib_host(int host, int run)
{
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	envdb_ctx *ctx = NULL;
	char org[64];

	o.env_type = "development";
	o.created_by = "owner";
	if (envdb_open(&ctx, manifest, 0) != 0)
		return 10;
	for (int i = 0; i < per_host; i++) {
		snprintf(org, sizeof org, "h%d-r%d-n%d-%d", hosts_now, run, host, i);
		if (envdb_env_provision(NULL, ctx, org, "dev", &o) != 0) {
			fprintf(stderr, "bench_pg_store: %s\n", envdb_error_last()->message);
			envdb_close(ctx);
			return 11;
		}
	}
	envdb_close(ctx);
	return 0;
}

static int exec_ok(PGconn *c, PGresult *r)
{
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "bench_pg_store: floor: %s", PQerrorMessage(c));
	PQclear(r);
	return ok;
}

/* One host of the floor: the same rows, two transactions each. */
static int floor_host(int host, int run, const char *lock_key)
{
	PGconn *c = PQconnectdb(conninfo);
	char org[64], env[37], db[37], cred[37], mem[37], name[48], now[24];
	const char *ct = "v1:kms:k0:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

	if (PQstatus(c) != CONNECTION_OK)
		return 20;
	if (!exec_ok(c, PQexec(c, "SET search_path = floor")))
		return 21;
	if (!exec_ok(c,
		     PQprepare(c, "lock", "SELECT pg_advisory_xact_lock($1::bigint)", 0, NULL)) ||
	    !exec_ok(
		    c,
		    PQprepare(
			    c, "env",
			    "INSERT INTO sys_environment (id, organization_id, slug, "
			    "display_name, env_type, is_default, plan, status, created_by, "
			    "created_at, updated_at, metadata, lease_expires_at, "
			    "pending_database_name, pending_driver) VALUES ($1, $2, 'dev', 'dev', "
			    "'development', 0, 'free', 'provisioning', 'owner', $3::bigint, $3::bigint, '{}', "
			    "$3::bigint + 300, $4, 'sqlite')",
			    0, NULL)) ||
	    !exec_ok(c, PQprepare(c, "db",
				  "INSERT INTO sys_environment_database (id, environment_id, "
				  "database_name, database_url, driver, storage_limit_mb, "
				  "provisioned_at, metadata) VALUES ($1, $2, $3, 'file:/x.db', "
				  "'sqlite', 1024, $4, '{}')",
				  0, NULL)) ||
	    !exec_ok(c,
		     PQprepare(c, "cred",
			       "INSERT INTO sys_database_credential (id, environment_database_id, "
			       "secret_ciphertext, encryption_key_id, handle, \"authorization\", "
			       "status, created_at, aad_version) VALUES ($1, $2, $3, 'k0', '', "
			       "'full_access', 'active', $4, 2)",
			       0, NULL)) ||
	    !exec_ok(
		    c,
		    PQprepare(c, "mem",
			      "INSERT INTO sys_environment_member (id, environment_id, user_id, "
			      "role, created_at, updated_at) VALUES ($1, $2, 'owner', 'owner', $3, "
			      "$3)",
			      0, NULL)) ||
	    !exec_ok(c, PQprepare(c, "act",
				  "UPDATE sys_environment SET status = 'active', "
				  "pending_database_name = NULL, pending_driver = NULL, "
				  "lease_expires_at = NULL, updated_at = $2 WHERE id = $1 AND "
				  "status = 'provisioning'",
				  0, NULL)))
		return 22;
	for (int i = 0; i < per_host; i++) {
		const char *v[4];
		snprintf(org, sizeof org, "h%d-r%d-n%d-%d", hosts_now, run, host, i);
		envdbi_uuid_new(env);
		envdbi_uuid_new(db);
		envdbi_uuid_new(cred);
		envdbi_uuid_new(mem);
		snprintf(name, sizeof name, "envdb_%.32s", db);
		snprintf(now, sizeof now, "%lld", (long long)time(NULL));
		v[0] = lock_key;
		if (!exec_ok(c, PQexec(c, "BEGIN")) ||
		    !exec_ok(c, PQexecPrepared(c, "lock", 1, v, NULL, NULL, 0)))
			return 23;
		v[0] = env, v[1] = org, v[2] = now, v[3] = name;
		if (!exec_ok(c, PQexecPrepared(c, "env", 4, v, NULL, NULL, 0)) ||
		    !exec_ok(c, PQexec(c, "COMMIT")))
			return 24;
		v[0] = lock_key;
		if (!exec_ok(c, PQexec(c, "BEGIN")) ||
		    !exec_ok(c, PQexecPrepared(c, "lock", 1, v, NULL, NULL, 0)))
			return 25;
		v[0] = db, v[1] = env, v[2] = name, v[3] = now;
		if (!exec_ok(c, PQexecPrepared(c, "db", 4, v, NULL, NULL, 0)))
			return 26;
		v[0] = cred, v[1] = db, v[2] = ct, v[3] = now;
		if (!exec_ok(c, PQexecPrepared(c, "cred", 4, v, NULL, NULL, 0)))
			return 27;
		v[0] = mem, v[1] = env, v[2] = now;
		if (!exec_ok(c, PQexecPrepared(c, "mem", 3, v, NULL, NULL, 0)))
			return 28;
		v[0] = env, v[1] = now;
		if (!exec_ok(c, PQexecPrepared(c, "act", 2, v, NULL, NULL, 0)) ||
		    !exec_ok(c, PQexec(c, "COMMIT")))
			return 29;
	}
	PQfinish(c);
	return 0;
}

typedef struct hosts_arg {
	int floor;
	char lock_key[24];
} hosts_arg;

/* All hosts at once; environments per second. */
static double hosts_once(void *arg, int run)
{
	hosts_arg *a = arg;
	pid_t pids[8];
	double t0 = bench_now(), t;
	int failed = 0;

	fflush(NULL);
	for (int h = 0; h < hosts_now; h++) {
		if ((pids[h] = fork()) < 0)
			bench_die("fork");
		if (pids[h] == 0)
			_exit(a->floor ? floor_host(h, run * 2 + 1, a->lock_key)
				       : lib_host(h, run * 2));
	}
	for (int h = 0; h < hosts_now; h++) {
		int st = 0;
		while (waitpid(pids[h], &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "bench_pg_store: host %d exit %d\n", h, WEXITSTATUS(st));
			failed = 1;
		}
	}
	t = bench_now() - t0;
	return failed ? -1 : (double)(hosts_now * per_host) / t;
}

/* The advisory lock key of schema "floor", as core/store_pg.c derives it
 * (FNV-1a 64 of a prefix and the name): the floor waits on the same lock
 * the store takes for its own schema. */
static void lock_key_of(char out[24], const char *schema)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	static const char prefix[] = "envdb control plane:";
	for (const char *p = prefix; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	for (const char *p = schema; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	snprintf(out, 24, "%lld", (long long)(int64_t)h);
}

int main(void)
{
	char err[2048], sql[256], pw[40];
	int runs = bench_runs(3);
	static const int host_counts[] = {1, 2, 4};

	bench_begin("bench_pg_store");
	per_host = (int)bench_env_long("ENVDB_BENCH_PG_STORE_N", bench_quick() ? 10 : 40);
	int rc = pg_harness_start(&cluster, err, sizeof err);
	if (rc == PG_HARNESS_SKIP) {
		bench_skipped(err);
		return bench_finish();
	}
	if (rc != 0) {
		fprintf(stderr, "bench_pg_store: %s\n", err);
		return 2;
	}
	snprintf(pw, sizeof pw, "bench%ld", (long)getpid());
	snprintf(sql, sizeof sql, "CREATE ROLE " ROLE " LOGIN PASSWORD '%s'", pw);
	if (pg_harness_exec(cluster, NULL, sql, err, sizeof err) != 0 ||
	    pg_harness_exec(cluster, NULL, "CREATE DATABASE " ROLE " OWNER " ROLE, err,
			    sizeof err) != 0) {
		fprintf(stderr, "bench_pg_store: %s\n", err);
		return 2;
	}
	pg_harness_conninfo(conninfo, sizeof conninfo, cluster, ROLE, pw, ROLE);
	if (bench_mkdtemp(dir, sizeof dir, NULL, "pgstore") != 0)
		bench_die("mkdtemp");
	write_manifest(manifest, sizeof manifest, "envdb.yaml", "envdb");
	write_manifest(floor_manifest, sizeof floor_manifest, "floor.yaml", "floor");
	bench_init_store(manifest);
	bench_init_store(floor_manifest); /* the floor's schema, made by envdb */
	for (size_t k = 0; k < sizeof host_counts / sizeof host_counts[0]; k++) {
		hosts_arg lib = {0, ""}, flo = {1, ""};
		bench_stats m, f;
		char id[32], title[96];

		lock_key_of(flo.lock_key, "floor");
		hosts_now = host_counts[k];
		if (bench_pair(&m, &f, 1, runs, hosts_once, &lib, hosts_once, &flo) != 0)
			bench_die("run");
		snprintf(id, sizeof id, "pg_provision_%d", hosts_now);
		snprintf(title, sizeof title,
			 "provisioning, %d concurrent host%s, PostgreSQL store", hosts_now,
			 hosts_now > 1 ? "s" : "");
		/* higher is better: compare the time per environment */
		bench_stats mt = {1e3 / m.median, 1e3 / m.max, 1e3 / m.min, m.n};
		bench_stats ft = {1e3 / f.median, 1e3 / f.max, 1e3 / f.min, f.n};
		bench_ratio(id, title, "ms/env (all hosts)", &mt, &ft, "floor",
			    "the same 4 rows in the library's 2 transactions per environment, bare "
			    "prepared libpq statements under the same advisory lock, "
			    "synchronous_commit on; without the adapter's file and the encryption",
			    0);
		bench_note("%d host%s: %.0f environments/s (floor %.0f/s), %d per host per run",
			   hosts_now, hosts_now > 1 ? "s" : "", m.median, f.median, per_host);
	}
	pg_harness_stop(cluster);
	bench_rmtree(dir);
	return bench_finish();
}
