/*
 * bench/bench_hosts.c — workload 8: several hosts on one control plane.
 *
 * A "host" is a process of its own (fork, then its own envdb context: its
 * own store connection, resolve cache and plugins), with the sqlite adapter
 * writing its physical databases into a directory of its own; every host
 * shares one control plane.  On a throwaway PostgreSQL server started as
 * the tests start theirs (tests/pg_harness.c), switched to full durability
 * for this run (ALTER SYSTEM: fsync = on, synchronous_commit = on; the
 * harness starts it without both, which suits tests, not figures).
 *
 * 1. Provisioning throughput with 1, 2 and 4 concurrent hosts, on the
 *    PostgreSQL store and, for context, on the SQLite store (one control
 *    plane file shared by the processes).  Each host provisions N
 *    environments per run (envdb_env_provision, each a new organization's
 *    "dev"), all hosts released at once; the figure is the wall time from
 *    the release to the last host's end over the environments of all hosts
 *    (ms/env: lower is better; throughput = 1000 / figure).
 *    Floor, the same number of processes doing per environment the
 *    physical work of workload 1's floor (bench/bench_provision.c: the new
 *    SQLite file made durable with 2 syncs, the 32-byte secret, the same
 *    kms encrypt call) and ONE transaction inserting the same four rows
 *    (environment active, database, credential, owner member; counted in
 *    both control planes after the runs) with prepared statements on a
 *    control plane created by envdb (same schema, same triggers):
 *      PostgreSQL: bare libpq, BEGIN ISOLATION LEVEL READ COMMITTED,
 *        SELECT pg_advisory_xact_lock(the key core/store_pg.c derives from
 *        the schema name: the store's single write lock), the 4 INSERTs,
 *        COMMIT, synchronous_commit on;
 *      SQLite: BEGIN IMMEDIATE, the 4 INSERTs, COMMIT (WAL,
 *        synchronous=FULL, busy timeout 5 s as the store's).
 *    Measured and floor runs are interleaved (bench_pair).
 * 2. Cache-invalidation latency across hosts, PostgreSQL store: host B (a
 *    process with a warm resolve cache, whose store LISTENs) polls
 *    envdb_resolve() in a tight loop while host A (another process)
 *    rotates a credential (B waits for a new credential id) or archives an
 *    environment (B waits for the resolve to fail); both take their times
 *    on CLOCK_MONOTONIC (one clock for every process) and share them
 *    through shared memory.  Reported: p50 and p99 from A's call returning
 *    (the change committed) to B's resolve returning the new state, and
 *    the configured TTL, the bound when the LISTEN channel is down.
 *
 * Environment: ENVDB_BENCH_HOSTS_N (environments per host per run, default
 * 20, quick 5), ENVDB_BENCH_RUNS (default 5, quick 2), ENVDB_BENCH_INVAL_N
 * (samples of each kind, default 200, quick 50), ENVDB_BENCH_HOSTS_STORES
 * ("postgresql sqlite", the default, or one of them), TMPDIR (where the
 * server's data and the files go: its file system decides durable costs).
 * Without PostgreSQL server binaries the PostgreSQL rows are skipped.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sodium.h>
#include <sqlite3.h>

#include "bench.h"
#include "internal.h"
#include "pg_harness.h"
#include "store.h"
#include "sync_count.h"

#define MAX_HOSTS 4
#define BENCH_ROLE "envdb_bench"
#define BENCH_DB "envdb_bench"
#define TTL_MS 30000

enum store_kind { STORE_PG, STORE_SQLITE };

static char dir[1024];
static char conninfo_file[1200];
static char conninfo[1024];
static pg_harness *H;

/* ------------------------------------------------------------------------ */
/* Manifests                                                                 */
/* ------------------------------------------------------------------------ */

/* DIR/NAME.yaml: the control plane `cp` (a PostgreSQL schema, or the
 * SQLite file DIR/cp.db), physical databases in DIR/envs/NAME, the shared
 * keyring DIR/keyring.  Its path goes to out. */
static void manifest(char *out, size_t cap, enum store_kind k, const char *cp, const char *name)
{
	char text[4096], cpl[1600], envs[1200];

	if (k == STORE_PG)
		snprintf(
			cpl, sizeof cpl,
			"control_plane:\n  driver: postgresql\n  conninfo_file: %s\n  schema: %s\n",
			conninfo_file, cp);
	else
		snprintf(cpl, sizeof cpl, "control_plane: %s/%s.db\n", dir, cp);
	snprintf(envs, sizeof envs, "%s/envs/%s", dir, name);
	if (mkdir(envs, 0700) != 0 && errno != EEXIST) {
		perror("bench_hosts: mkdir");
		exit(2);
	}
	snprintf(text, sizeof text,
		 "version: 1\n%s"
		 "defaults:\n  driver: sqlite\n  encryptor: kms\n"
		 "legacy:\n  register_shim: false\n"
		 "resolve:\n  cache_ttl_ms: %d\n"
		 "plugins:\n"
		 "  - name: sqlite\n    kind: adapter\n    config:\n      base_dir: %s\n"
		 "  - name: kms\n    kind: encryptor\n    config:\n      keyring_dir: %s/keyring\n",
		 cpl, TTL_MS, envs, dir);
	if ((size_t)snprintf(out, cap, "%s/%s.yaml", dir, name) >= cap ||
	    bench_write_file(out, text) != 0) {
		fprintf(stderr, "bench_hosts: cannot write manifest %s\n", name);
		exit(2);
	}
}

/* ------------------------------------------------------------------------ */
/* The floor of one host                                                     */
/* ------------------------------------------------------------------------ */

/* The advisory lock key core/store_pg.c (lock_key_of) derives from a
 * schema name: 64-bit FNV-1a over a fixed prefix and the name. */
static void pg_lock_key(char out[24], const char *schema)
{
	static const char prefix[] = "envdb control plane:";
	uint64_t h = 0xcbf29ce484222325ULL;
	const char *p;

	for (p = prefix; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	for (p = schema; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	snprintf(out, 24, "%" PRId64, (int64_t)h);
}

typedef struct host_floor {
	enum store_kind kind;
	envdb_ctx *enc; /* only its encryptor is used */
	int envs_fd;
	char envs[1200];
	PGconn *pg;
	char lock_key[24];
	sqlite3 *cp;
	sqlite3_stmt *ins[4], *begin, *commit;
} host_floor;

static const char *const floor_ins_sqlite[4] = {
	"INSERT INTO sys_environment (id, organization_id, slug, display_name, env_type, "
	"is_default, plan, status, created_by, created_at, updated_at, metadata) VALUES "
	"(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	"INSERT INTO sys_environment_database (id, environment_id, database_name, database_url, "
	"driver, storage_limit_mb, provisioned_at, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
	"?8)",
	"INSERT INTO sys_database_credential (id, environment_database_id, secret_ciphertext, "
	"encryption_key_id, handle, authorization, status, created_at) VALUES (?1, ?2, ?3, ?4, "
	"?5, ?6, ?7, ?8)",
	"INSERT INTO sys_environment_member (id, environment_id, user_id, role, invited_by, "
	"created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"};

static const char *const floor_ins_pg[4] = {
	"INSERT INTO sys_environment (id, organization_id, slug, display_name, env_type, "
	"is_default, plan, status, created_by, created_at, updated_at, metadata) VALUES "
	"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
	"INSERT INTO sys_environment_database (id, environment_id, database_name, database_url, "
	"driver, storage_limit_mb, provisioned_at, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, "
	"$8)",
	"INSERT INTO sys_database_credential (id, environment_database_id, secret_ciphertext, "
	"encryption_key_id, handle, \"authorization\", status, created_at) VALUES ($1, $2, $3, $4, "
	"$5, $6, $7, $8)",
	"INSERT INTO sys_environment_member (id, environment_id, user_id, role, invited_by, "
	"created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"};

static const char *const floor_names[4] = {"ins_env", "ins_db", "ins_cred", "ins_member"};

static int pg_ok(PGresult *r, const char *what)
{
	ExecStatusType st = PQresultStatus(r);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, "bench_hosts: floor: %s: %s", what, PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

static int sq_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "bench_hosts: floor: %s: %s\n", sql, err ? err : "?");
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

static int sq_step(sqlite3 *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "bench_hosts: floor: %s\n", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/* Open the floor of one host (in its process): the encryptor, its
 * directory, its own control-plane connection with the statements. */
static int floor_open(host_floor *F, enum store_kind k, const char *man, const char *cp,
		      const char *envs)
{
	int i;

	memset(F, 0, sizeof *F);
	F->kind = k;
	F->envs_fd = -1;
	if (envdb_open(&F->enc, man, ENVDB_OPEN_NO_STORE) != 0)
		return -1;
	snprintf(F->envs, sizeof F->envs, "%s", envs);
	if ((F->envs_fd = open(F->envs, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	if (k == STORE_PG) {
		const char *paramv[1] = {cp};
		F->pg = PQconnectdb(conninfo);
		if (PQstatus(F->pg) != CONNECTION_OK) {
			fprintf(stderr, "bench_hosts: floor: %s", PQerrorMessage(F->pg));
			return -1;
		}
		if (pg_ok(PQexecParams(F->pg, "SELECT set_config('search_path', $1, false)", 1,
				       NULL, paramv, NULL, NULL, 0),
			  "search_path") != 0 ||
		    pg_ok(PQprepare(F->pg, "lock", "SELECT pg_advisory_xact_lock($1::int8)", 1,
				    NULL),
			  "prepare"))
			return -1;
		for (i = 0; i < 4; i++)
			if (pg_ok(PQprepare(F->pg, floor_names[i], floor_ins_pg[i], 0, NULL),
				  "prepare") != 0)
				return -1;
		pg_lock_key(F->lock_key, cp);
		return 0;
	}
	{
		char path[1300];
		snprintf(path, sizeof path, "%s/%s.db", dir, cp);
		if (sqlite3_open_v2(path, &F->cp, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
		    sqlite3_busy_timeout(F->cp, 5000) != SQLITE_OK ||
		    sq_exec(F->cp, "PRAGMA foreign_keys = ON") != 0 ||
		    sq_exec(F->cp, "PRAGMA journal_mode = WAL") != 0 ||
		    sq_exec(F->cp, "PRAGMA synchronous = FULL") != 0)
			return -1;
		for (i = 0; i < 4; i++)
			if (sqlite3_prepare_v3(F->cp, floor_ins_sqlite[i], -1,
					       SQLITE_PREPARE_PERSISTENT, &F->ins[i],
					       NULL) != SQLITE_OK)
				return -1;
		if (sqlite3_prepare_v2(F->cp, "BEGIN IMMEDIATE", -1, &F->begin, NULL) !=
			    SQLITE_OK ||
		    sqlite3_prepare_v2(F->cp, "COMMIT", -1, &F->commit, NULL) != SQLITE_OK)
			return -1;
	}
	return 0;
}

static void floor_close(host_floor *F)
{
	int i;

	for (i = 0; i < 4; i++)
		sqlite3_finalize(F->ins[i]);
	sqlite3_finalize(F->begin);
	sqlite3_finalize(F->commit);
	if (F->cp != NULL)
		sqlite3_close(F->cp);
	if (F->pg != NULL)
		PQfinish(F->pg);
	if (F->envs_fd >= 0)
		close(F->envs_fd);
	envdb_close(F->enc);
}

/* The one control-plane transaction of the floor: the four rows. */
typedef struct floor_rows {
	const char *env_id, *org, *db_id, *name, *url, *meta, *cred_id, *ct, *key_id, *mem_id;
	char now[24];
} floor_rows;

static int floor_tx_pg(host_floor *F, const floor_rows *w)
{
	const char *env[12] = {w->env_id, w->org,   "dev",   "dev",  "development", "0",
			       "free",    "active", "owner", w->now, w->now,        "{}"};
	const char *db[8] = {w->db_id, w->env_id, w->name, w->url,
			     "sqlite", "1024",    w->now,  w->meta};
	const char *cred[8] = {w->cred_id, w->db_id,      w->ct,    w->key_id,
			       "",         "full_access", "active", w->now};
	const char *mem[7] = {w->mem_id, w->env_id, "owner", "owner", "owner", w->now, w->now};
	const char *key[1] = {F->lock_key};
	const char *const *v[4] = {env, db, cred, mem};
	static const int nv[4] = {12, 8, 8, 7};
	int i;

	if (pg_ok(PQexec(F->pg, "BEGIN ISOLATION LEVEL READ COMMITTED"), "BEGIN") != 0)
		return -1;
	if (pg_ok(PQexecPrepared(F->pg, "lock", 1, key, NULL, NULL, 0), "lock") != 0)
		goto rollback;
	for (i = 0; i < 4; i++)
		if (pg_ok(PQexecPrepared(F->pg, floor_names[i], nv[i], v[i], NULL, NULL, 0),
			  floor_names[i]) != 0)
			goto rollback;
	return pg_ok(PQexec(F->pg, "COMMIT"), "COMMIT");
rollback:
	PQclear(PQexec(F->pg, "ROLLBACK"));
	return -1;
}

#define T(st, i, v) sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC)
#define I(st, i, v) sqlite3_bind_int64(st, i, v)

static int floor_tx_sqlite(host_floor *F, const floor_rows *w)
{
	int64_t now = strtoll(w->now, NULL, 10);
	sqlite3_stmt *st;

	if (sq_step(F->cp, F->begin) != 0)
		return -1;
	st = F->ins[0];
	T(st, 1, w->env_id), T(st, 2, w->org), T(st, 3, "dev"), T(st, 4, "dev"),
		T(st, 5, "development"), I(st, 6, 0), T(st, 7, "free"), T(st, 8, "active"),
		T(st, 9, "owner"), I(st, 10, now), I(st, 11, now), T(st, 12, "{}");
	if (sq_step(F->cp, st) != 0)
		goto rollback;
	st = F->ins[1];
	T(st, 1, w->db_id), T(st, 2, w->env_id), T(st, 3, w->name), T(st, 4, w->url),
		T(st, 5, "sqlite"), I(st, 6, 1024), I(st, 7, now), T(st, 8, w->meta);
	if (sq_step(F->cp, st) != 0)
		goto rollback;
	st = F->ins[2];
	T(st, 1, w->cred_id), T(st, 2, w->db_id), T(st, 3, w->ct), T(st, 4, w->key_id),
		T(st, 5, ""), T(st, 6, "full_access"), T(st, 7, "active"), I(st, 8, now);
	if (sq_step(F->cp, st) != 0)
		goto rollback;
	st = F->ins[3];
	T(st, 1, w->mem_id), T(st, 2, w->env_id), T(st, 3, "owner"), T(st, 4, "owner"),
		T(st, 5, "owner"), I(st, 6, now), I(st, 7, now);
	if (sq_step(F->cp, st) != 0)
		goto rollback;
	if (sq_step(F->cp, F->commit) != 0)
		goto rollback;
	return 0;
rollback:
	sq_exec(F->cp, "ROLLBACK");
	return -1;
}

/* One environment of the floor: the physical work of workload 1's floor,
 * then the one transaction. */
static int floor_one(host_floor *F, const char *org)
{
	char env_id[37], db_id[37], cred_id[37], mem_id[37], name[40], fname[48], path[1300];
	char url[1400], meta[1500], token[64];
	unsigned char raw[32], aad[ENVDB_CREDENTIAL_AAD_MAX];
	envdbi_secret secret;
	char *ct = NULL, *key_id = NULL;
	size_t aad_len, i, o;
	sqlite3 *db = NULL;
	floor_rows w;
	int fd, rc = -1;

	envdbi_uuid_new(env_id);
	envdbi_uuid_new(db_id);
	envdbi_uuid_new(cred_id);
	envdbi_uuid_new(mem_id);
	memcpy(name, "env_", 4);
	for (i = 0, o = 4; env_id[i]; i++)
		if (env_id[i] != '-')
			name[o++] = env_id[i];
	name[o] = '\0';
	snprintf(fname, sizeof fname, "%s.db", name);
	snprintf(path, sizeof path, "%s/%s", F->envs, fname);

	/* The file, in WAL mode, durable: 2 syncs. */
	fd = openat(F->envs_fd, fname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || close(fd) != 0)
		goto out;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL) != 0 ||
	    sq_exec(db, "PRAGMA synchronous=FULL") != 0 ||
	    sq_exec(db, "PRAGMA journal_mode=OFF") != 0 ||
	    sq_exec(db, "PRAGMA journal_mode=WAL") != 0)
		goto out;
	if (sqlite3_close(db) != SQLITE_OK)
		goto out;
	db = NULL;
	if (fsync(F->envs_fd) != 0)
		goto out;
	snprintf(url, sizeof url, "file:%s", path);
	snprintf(meta, sizeof meta, "{\"path\":\"%s\",\"journal_mode\":\"wal\"}", path);

	/* The secret and the same encryption call. */
	randombytes_buf(raw, sizeof raw);
	sodium_bin2base64(token, sizeof token, raw, sizeof raw,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	secret.data = token;
	secret.len = strlen(token);
	if (envdb_credential_aad(aad, &aad_len, cred_id, db_id) != 0 ||
	    envdbi_encryptor_encrypt(F->enc->encryptor, &secret, aad, aad_len, &ct, &key_id) != 0)
		goto out;

	w.env_id = env_id, w.org = org, w.db_id = db_id, w.name = name, w.url = url;
	w.meta = meta, w.cred_id = cred_id, w.ct = ct, w.key_id = key_id, w.mem_id = mem_id;
	snprintf(w.now, sizeof w.now, "%lld", (long long)time(NULL));
	rc = F->kind == STORE_PG ? floor_tx_pg(F, &w) : floor_tx_sqlite(F, &w);
out:
	if (db != NULL)
		sqlite3_close(db);
	free(ct);
	free(key_id);
	sodium_memzero(token, sizeof token);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Concurrent hosts                                                          */
/* ------------------------------------------------------------------------ */

typedef struct level {
	enum store_kind kind;
	const char *cp_lib, *cp_floor; /* control planes (schema or file stem) */
	int hosts, n;
	uint64_t syncs, ops;   /* of the hosts, over every run */
	uint64_t server_syncs; /* PostgreSQL: pg_stat_wal.wal_sync, over every run */
	bool floor;
} level;

typedef struct host_result {
	int ok;
	uint64_t syncs;
} host_result;

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = read(fd, p, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* The body of host `h` of run `run` (in its own process): set up, say
 * ready, wait for the release, provision, report. */
static void host_main(const level *L, int h, int run, int ready_fd, int go_fd)
{
	char man[1300], name[64], envs[1200], org[96];
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	host_result res = {0, 0};
	envdb_ctx *ctx = NULL;
	host_floor F;
	sync_counts s0, s1;
	char c = 'r';
	int i, ok = 1;

	F.envs_fd = -1;
	snprintf(name, sizeof name, "%s-%s-h%d", L->kind == STORE_PG ? "pg" : "sq",
		 L->floor ? "floor" : "lib", h);
	manifest(man, sizeof man, L->kind, L->floor ? L->cp_floor : L->cp_lib, name);
	snprintf(envs, sizeof envs, "%s/envs/%s", dir, name);
	if (L->floor ? floor_open(&F, L->kind, man, L->cp_floor, envs) != 0
		     : envdb_open(&ctx, man, 0) != 0)
		ok = 0;
	if (write(ready_fd, &c, 1) != 1 || read_full(go_fd, &c, 1) != 0)
		_exit(3);
	o.env_type = "development";
	o.created_by = "owner";
	sync_count_get(&s0);
	for (i = 0; ok && i < L->n; i++) {
		snprintf(org, sizeof org, "%s-c%d-r%d-i%d", name, L->hosts, run, i);
		if (L->floor ? floor_one(&F, org) != 0
			     : envdb_env_provision(NULL, ctx, org, "dev", &o) != 0) {
			fprintf(stderr, "bench_hosts: %s: %s\n", name,
				L->floor ? "floor failed" : envdb_error_last()->message);
			ok = 0;
		}
	}
	sync_count_get(&s1);
	res.ok = ok;
	res.syncs = s1.total - s0.total;
	if (write(ready_fd, &res, sizeof res) != (ssize_t)sizeof res)
		_exit(3);
	if (L->floor)
		floor_close(&F);
	else
		envdb_close(ctx);
	_exit(ok ? 0 : 1);
}

/* PostgreSQL: the server's WAL syncs so far (pg_stat_wal.wal_sync), once
 * every session of the bench database has ended (a backend flushes its
 * statistics before it leaves pg_stat_activity).  -1 on failure. */
static long long server_wal_syncs(void)
{
	char v[64];
	int i;

	for (i = 0; i < 2500; i++) {
		if (pg_harness_query1(
			    H, NULL,
			    "SELECT count(*) FROM pg_stat_activity WHERE datname = '" BENCH_DB "'",
			    v, sizeof v) != 1)
			return -1;
		if (strcmp(v, "0") == 0)
			break;
		usleep(2000);
	}
	if (pg_harness_query1(H, NULL, "SELECT wal_sync FROM pg_stat_wal", v, sizeof v) != 1)
		return -1;
	return atoll(v);
}

/* One run: L->hosts processes, released at once; ms per environment of
 * the wall time from the release to the last end. */
static double level_once(void *arg, int run)
{
	level *L = arg;
	int ready[MAX_HOSTS][2], go[MAX_HOSTS][2], h, st, failed = 0;
	pid_t pid[MAX_HOSTS];
	host_result res;
	long long w0 = 0, w1;
	double t0, t1;
	char c;

	if (L->kind == STORE_PG && (w0 = server_wal_syncs()) < 0)
		return -1;
	fflush(NULL);
	for (h = 0; h < L->hosts; h++) {
		if (pipe(ready[h]) != 0 || pipe(go[h]) != 0)
			return -1;
		if ((pid[h] = fork()) < 0)
			return -1;
		if (pid[h] == 0) {
			close(ready[h][0]);
			close(go[h][1]);
			host_main(L, h, run, ready[h][1], go[h][0]);
		}
		close(ready[h][1]);
		close(go[h][0]);
	}
	for (h = 0; h < L->hosts; h++)
		if (read_full(ready[h][0], &c, 1) != 0)
			failed = 1;
	t0 = bench_now();
	for (h = 0; h < L->hosts; h++)
		if (write(go[h][1], "g", 1) != 1)
			failed = 1;
	for (h = 0; h < L->hosts; h++) {
		if (read_full(ready[h][0], &res, sizeof res) != 0 || !res.ok)
			failed = 1;
		else
			L->syncs += res.syncs;
	}
	t1 = bench_now();
	for (h = 0; h < L->hosts; h++) {
		close(ready[h][0]);
		close(go[h][1]);
		if (waitpid(pid[h], &st, 0) != pid[h] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	if (failed) {
		fprintf(stderr, "bench_hosts: a host failed (%s, %d hosts)\n",
			L->floor ? "floor" : "library", L->hosts);
		return -1;
	}
	if (L->kind == STORE_PG) {
		if ((w1 = server_wal_syncs()) < 0)
			return -1;
		L->server_syncs += (uint64_t)(w1 - w0);
	}
	L->ops += (uint64_t)(L->hosts * L->n);
	return (t1 - t0) * 1e3 / (L->hosts * L->n);
}

/* Rows per environment of a control plane, "E env, D db, C cred, M member". */
static void count_rows(char *out, size_t cap, enum store_kind k, const char *cp)
{
	static const char *const tables[4] = {"sys_environment", "sys_environment_database",
					      "sys_database_credential", "sys_environment_member"};
	long long n[4] = {0, 0, 0, 0};
	char sql[256], v[64], path[1300];
	sqlite3 *db = NULL;
	int i;

	if (k == STORE_SQLITE) {
		snprintf(path, sizeof path, "%s/%s.db", dir, cp);
		if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
			snprintf(out, cap, "?");
			sqlite3_close(db);
			return;
		}
	}
	for (i = 0; i < 4; i++) {
		if (k == STORE_PG) {
			snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\".\"%s\"", cp,
				 tables[i]);
			if (pg_harness_query1(H, BENCH_DB, sql, v, sizeof v) == 1)
				n[i] = atoll(v);
		} else {
			sqlite3_stmt *st = NULL;
			snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", tables[i]);
			if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
			    sqlite3_step(st) == SQLITE_ROW)
				n[i] = sqlite3_column_int64(st, 0);
			sqlite3_finalize(st);
		}
	}
	sqlite3_close(db);
	snprintf(out, cap,
		 "%lld environments: %.2f database, %.2f credential, %.2f member rows each", n[0],
		 n[0] ? (double)n[1] / (double)n[0] : 0, n[0] ? (double)n[2] / (double)n[0] : 0,
		 n[0] ? (double)n[3] / (double)n[0] : 0);
}

static int throughput(enum store_kind k, int n, int runs)
{
	static const int levels[3] = {1, 2, 4};
	const char *sname = k == STORE_PG ? "postgresql" : "sqlite";
	char man[1300], id[64], title[256], r1[256], r2[256];
	level L, F;
	bench_stats m, f;
	int i;

	/* The two control planes, created by envdb; the shared key. */
	manifest(man, sizeof man, k, "cp_lib", "init-lib");
	bench_init_store(man);
	manifest(man, sizeof man, k, "cp_floor", "init-floor");
	bench_init_store(man);
	for (i = 0; i < 3; i++) {
		memset(&L, 0, sizeof L);
		L.kind = k;
		L.cp_lib = "cp_lib";
		L.cp_floor = "cp_floor";
		L.hosts = levels[i];
		L.n = n;
		F = L;
		F.floor = true;
		if (bench_pair(&m, &f, 1, runs, level_once, &L, level_once, &F) != 0)
			return -1;
		snprintf(id, sizeof id, "hosts_provision_%s_%d", k == STORE_PG ? "pg" : "sqlite",
			 levels[i]);
		snprintf(title, sizeof title, "8 provision, %d host%s, %s store, %d envs/host/run",
			 levels[i], levels[i] > 1 ? "s" : "", sname, n);
		bench_ratio(
			id, title, "ms/env", &m, &f, "floor",
			k == STORE_PG
				? "as many processes, each per environment: workload 1's "
				  "physical work (the SQLite file made durable with 2 syncs, the "
				  "secret, the kms encrypt call) and ONE bare libpq transaction "
				  "(READ COMMITTED, pg_advisory_xact_lock of the store's key, the "
				  "same 4 rows by prepared INSERTs, COMMIT; synchronous_commit on, "
				  "fsync on) on a control plane created by envdb"
				: "as many processes, each per environment: workload 1's "
				  "physical work and ONE transaction (BEGIN IMMEDIATE, the same 4 "
				  "rows, COMMIT; WAL, synchronous=FULL, busy timeout 5 s) on a "
				  "shared control-plane file created by envdb",
			0);
		bench_syncs((double)(L.syncs + L.server_syncs) / (double)L.ops,
			    (double)(F.syncs + F.server_syncs) / (double)F.ops);
		bench_note("provision, %d host(s), %s store: %.0f environments/s (floor %.0f/s), "
			   "hosts released at once, wall time from release to the last host's end",
			   levels[i], sname, 1e3 / m.median, 1e3 / f.median);
		if (k == STORE_PG)
			bench_note(
				"provision, %d host(s), syncs per environment: library %.2f in "
				"the hosts + %.2f WAL syncs of the server (pg_stat_wal.wal_sync); "
				"floor %.2f + %.2f",
				levels[i], (double)L.syncs / (double)L.ops,
				(double)L.server_syncs / (double)L.ops,
				(double)F.syncs / (double)F.ops,
				(double)F.server_syncs / (double)F.ops);
	}
	count_rows(r1, sizeof r1, k, "cp_lib");
	count_rows(r2, sizeof r2, k, "cp_floor");
	bench_note("provision, %s store, rows after the runs: library %s; floor %s", sname, r1, r2);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Cache-invalidation latency across hosts                                   */
/* ------------------------------------------------------------------------ */

#define INVAL_ENVS 16

enum { KIND_ROTATE = 1, KIND_ARCHIVE = 2 };

/* Shared between host A (this process) and host B (its child). */
typedef struct inval_shm {
	int arm;   /* sample number armed by A */
	int ready; /* B holds the old state of the armed sample */
	int seen;  /* B saw the new state */
	int quit;
	int kind, env;
	int b_failed;
	double t_seen; /* CLOCK_MONOTONIC, seconds */
	char b_error[256];
} inval_shm;

static int ld(const int *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void st(int *p, int v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static void nap(void)
{
	struct timespec ts = {0, 20000};
	nanosleep(&ts, NULL);
}

static void host_b(inval_shm *S, const char *man)
{
	char slug[16], cred[64];
	envdb_connection *conn = NULL;
	envdb_ctx *ctx = NULL;
	int done = 0, s, rc;

	if (envdb_open(&ctx, man, 0) != 0) {
		snprintf(S->b_error, sizeof S->b_error, "open: %s", envdb_error_last()->message);
		st(&S->b_failed, 1);
		_exit(1);
	}
	for (;;) {
		while ((s = ld(&S->arm)) == done && !ld(&S->quit))
			nap();
		if (ld(&S->quit))
			break;
		snprintf(slug, sizeof slug, "e%02d", S->env);
		/* Warm: resolved (cached), twice, so the second is a hit. */
		if (envdb_resolve(&conn, ctx, "inval", slug, "owner") != 0 ||
		    (envdb_connection_free(conn),
		     envdb_resolve(&conn, ctx, "inval", slug, "owner")) != 0) {
			snprintf(S->b_error, sizeof S->b_error, "warm %s: %s", slug,
				 envdb_error_last()->message);
			st(&S->b_failed, 1);
			break;
		}
		snprintf(cred, sizeof cred, "%s", conn->credential_id);
		envdb_connection_free(conn);
		st(&S->ready, s);
		/* The tight loop. */
		for (;;) {
			rc = envdb_resolve(&conn, ctx, "inval", slug, "owner");
			if (S->kind == KIND_ROTATE
				    ? rc == 0 && strcmp(conn->credential_id, cred) != 0
				    : rc != 0)
				break;
			if (rc == 0)
				envdb_connection_free(conn);
			else if (S->kind == KIND_ROTATE) {
				snprintf(S->b_error, sizeof S->b_error, "resolve %s: %s", slug,
					 envdb_error_last()->message);
				st(&S->b_failed, 1);
				goto out;
			}
			if (ld(&S->quit))
				goto out;
		}
		S->t_seen = bench_now();
		if (rc == 0)
			envdb_connection_free(conn);
		st(&S->seen, s);
		done = s;
	}
out:
	envdb_close(ctx);
	_exit(0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p)
{
	int i = (int)(p * (double)(n - 1) + 0.5);
	return sorted[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static void inval_report(const char *kind, const char *op, double *lat, double *from_start,
			 double *opt, int n, int early)
{
	bench_stats v = {0, 0, 0, 0};
	char id[64], title[200], note[400];

	qsort(lat, (size_t)n, sizeof *lat, cmp_double);
	qsort(from_start, (size_t)n, sizeof *from_start, cmp_double);
	qsort(opt, (size_t)n, sizeof *opt, cmp_double);
	snprintf(note, sizeof note,
		 "%d samples, %d of them seen by B before A's call returned (counted 0); from the "
		 "start of A's call: p50 %.3f, p99 %.3f ms (A's call itself: p50 %.3f ms)",
		 n, early, pct(from_start, n, 0.5), pct(from_start, n, 0.99), pct(opt, n, 0.5));
	v.n = n;
	v.min = lat[0];
	v.max = lat[n - 1];
	v.median = pct(lat, n, 0.5);
	snprintf(id, sizeof id, "hosts_invalidate_%s_p50", kind);
	snprintf(title, sizeof title, "8 invalidation across hosts, %s, p50", op);
	bench_value(id, title, "ms", &v, BENCH_AT_MOST, TTL_MS, note);
	v.median = pct(lat, n, 0.99);
	snprintf(id, sizeof id, "hosts_invalidate_%s_p99", kind);
	snprintf(title, sizeof title, "8 invalidation across hosts, %s, p99", op);
	bench_value(id, title, "ms", &v, BENCH_AT_MOST, TTL_MS, NULL);
}

static int invalidation(int samples)
{
	char man_a[1300], man_b[1300], slug[16];
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	double *lat[2], *from_start[2], *opt[2], t0, t1, deadline;
	envdb_ctx *ctx = NULL;
	inval_shm *S;
	bench_stats ttl = {TTL_MS, TTL_MS, TTL_MS, 1};
	int k, i, s = 0, stt, missed = 0, rc = -1, early[2] = {0, 0};
	pid_t pid;

	manifest(man_a, sizeof man_a, STORE_PG, "cp_inval", "inval-a");
	manifest(man_b, sizeof man_b, STORE_PG, "cp_inval", "inval-b");
	bench_init_store(man_a);
	S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (S == MAP_FAILED)
		return -1;
	memset(S, 0, sizeof *S);
	for (k = 0; k < 2; k++) {
		lat[k] = calloc((size_t)samples, sizeof(double));
		from_start[k] = calloc((size_t)samples, sizeof(double));
		opt[k] = calloc((size_t)samples, sizeof(double));
		if (!lat[k] || !from_start[k] || !opt[k])
			return -1;
	}
	/* A provisions the environments, then B starts (before A's context
	 * has threads: B is forked from a process without any). */
	if (envdb_open(&ctx, man_a, 0) != 0)
		bench_die("open host A");
	o.env_type = "development";
	o.created_by = "owner";
	for (i = 0; i < INVAL_ENVS; i++) {
		snprintf(slug, sizeof slug, "e%02d", i);
		if (envdb_env_provision(NULL, ctx, "inval", slug, &o) != 0)
			bench_die("provision");
	}
	envdb_close(ctx);
	ctx = NULL;
	fflush(NULL);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0)
		host_b(S, man_b);
	if (envdb_open(&ctx, man_a, 0) != 0)
		bench_die("open host A");
	ro.overlap_seconds = 0;
	for (k = 0; k < 2 && !missed; k++) {
		for (i = 0; i < samples; i++) {
			int kind = k == 0 ? KIND_ROTATE : KIND_ARCHIVE;
			int env = i % INVAL_ENVS;

			S->kind = kind;
			S->env = env;
			st(&S->arm, ++s);
			while (ld(&S->ready) != s && !ld(&S->b_failed))
				nap();
			if (ld(&S->b_failed))
				goto stop;
			snprintf(slug, sizeof slug, "e%02d", env);
			t0 = bench_now();
			if ((kind == KIND_ROTATE ? envdb_cred_rotate(ctx, "inval", slug, &ro)
						 : envdb_env_archive(ctx, "inval", slug)) != 0)
				bench_die(kind == KIND_ROTATE ? "rotate" : "archive");
			t1 = bench_now();
			deadline = t1 + TTL_MS / 1e3 + 5;
			while (ld(&S->seen) != s && !ld(&S->b_failed) && bench_now() < deadline)
				nap();
			if (ld(&S->seen) != s) {
				missed = 1;
				goto stop;
			}
			/* B may have it before A's call returns (the commit
			 * is not the call's end): then it served nothing stale. */
			lat[k][i] = S->t_seen > t1 ? (S->t_seen - t1) * 1e3 : 0;
			if (S->t_seen < t1)
				early[k]++;
			from_start[k][i] = (S->t_seen - t0) * 1e3;
			opt[k][i] = (t1 - t0) * 1e3;
			if (kind == KIND_ARCHIVE && envdb_env_unarchive(ctx, "inval", slug) != 0)
				bench_die("unarchive");
		}
	}
	rc = 0;
stop:
	st(&S->quit, 1);
	waitpid(pid, &stt, 0);
	envdb_close(ctx);
	if (S->b_failed) {
		fprintf(stderr, "bench_hosts: host B: %s\n", S->b_error);
		rc = -1;
	} else if (missed) {
		fprintf(stderr, "bench_hosts: host B did not see sample %d within the TTL + 5 s\n",
			s);
		rc = -1;
	}
	if (rc == 0) {
		inval_report("rotate", "credential rotated", lat[0], from_start[0], opt[0], samples,
			     early[0]);
		inval_report("archive", "environment archived", lat[1], from_start[1], opt[1],
			     samples, early[1]);
		bench_value("hosts_invalidate_ttl", "8 invalidation, TTL fallback bound", "ms",
			    &ttl, BENCH_NO_TARGET, 0,
			    "resolve.cache_ttl_ms as configured: how stale a cached result can "
			    "be while the LISTEN channel is down");
		bench_note(
			"invalidation: host A (this process) rotates (overlap 0) or archives one "
			"of %d environments; host B (another process, its own context and cache, "
			"its store LISTENing) resolves it in a tight loop; latency from A's call "
			"returning to B's first resolve with the new credential id / failing "
			"(0 when B had it first); "
			"CLOCK_MONOTONIC in both, shared memory; targets: under the TTL",
			INVAL_ENVS);
	}
	for (k = 0; k < 2; k++) {
		free(lat[k]);
		free(from_start[k]);
		free(opt[k]);
	}
	munmap(S, sizeof *S);
	return rc;
}

/* ------------------------------------------------------------------------ */

static int pg_setup(void)
{
	char err[2048], sql[512], pw[40], v[64], v2[64];
	unsigned char raw[12];
	int rc = pg_harness_start(&H, err, sizeof err);

	if (rc == PG_HARNESS_SKIP) {
		bench_note("postgresql rows skipped: %s", err);
		return 1;
	}
	if (rc != 0) {
		fprintf(stderr, "bench_hosts: cannot start a PostgreSQL cluster: %s\n", err);
		return -1;
	}
	randombytes_buf(raw, sizeof raw);
	sodium_bin2hex(pw, sizeof pw, raw, sizeof raw);
	/* Full durability for the figures (the harness starts without it). */
	snprintf(sql, sizeof sql, "CREATE ROLE " BENCH_ROLE " LOGIN PASSWORD 'pw%s'", pw);
	if (pg_harness_exec(H, NULL, "ALTER SYSTEM SET fsync = on", err, sizeof err) != 0 ||
	    pg_harness_exec(H, NULL, "ALTER SYSTEM SET synchronous_commit = on", err, sizeof err) ||
	    pg_harness_exec(H, NULL, "SELECT pg_reload_conf()", err, sizeof err) != 0 ||
	    pg_harness_exec(H, NULL, sql, err, sizeof err) != 0 ||
	    pg_harness_exec(H, NULL, "CREATE DATABASE " BENCH_DB " OWNER " BENCH_ROLE, err,
			    sizeof err) != 0) {
		fprintf(stderr, "bench_hosts: cannot set up the server: %s\n", err);
		return -1;
	}
	usleep(200000); /* the reload reaches the postmaster's children */
	if (pg_harness_query1(H, NULL, "SHOW fsync", v, sizeof v) != 1 ||
	    pg_harness_query1(H, NULL, "SHOW synchronous_commit", v2, sizeof v2) != 1 ||
	    strcmp(v, "on") != 0 || strcmp(v2, "on") != 0) {
		fprintf(stderr,
			"bench_hosts: the server did not take fsync/synchronous_commit on\n");
		return -1;
	}
	snprintf(sql, sizeof sql, "pw%s", pw);
	pg_harness_conninfo(conninfo, sizeof conninfo, H, BENCH_ROLE, sql, BENCH_DB);
	snprintf(conninfo_file, sizeof conninfo_file, "%s/conninfo.txt", dir);
	{
		int fd = open(conninfo_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, conninfo, strlen(conninfo)) != (ssize_t)strlen(conninfo) ||
		    close(fd) != 0) {
			perror("bench_hosts: conninfo file");
			return -1;
		}
	}
	bench_note("postgresql: PostgreSQL %d.x server of tests/pg_harness.c on 127.0.0.1, data "
		   "in %s, switched to fsync = on, synchronous_commit = on",
		   pg_harness_version(H) / 10000, pg_harness_dir(H));
	return 0;
}

int main(void)
{
	int n = (int)bench_env_long("ENVDB_BENCH_HOSTS_N", bench_quick() ? 5 : 20);
	int runs = bench_runs(bench_quick() ? 2 : 5);
	int samples = (int)bench_env_long("ENVDB_BENCH_INVAL_N", bench_quick() ? 50 : 200);
	const char *stores = getenv("ENVDB_BENCH_HOSTS_STORES");
	char envs[1100], fs[32];
	int rc, pg = 0;

	if (stores == NULL || stores[0] == '\0')
		stores = "postgresql sqlite";
	bench_begin("bench_hosts");
	setenv("ENVDB_LOG_LEVEL", "error", 0);
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0 || bench_mkdtemp(dir, sizeof dir, NULL, "hosts") != 0) {
		perror("bench_hosts: setup");
		return 2;
	}
	snprintf(envs, sizeof envs, "%s/envs", dir);
	if (mkdir(envs, 0700) != 0) {
		perror("bench_hosts: mkdir");
		return 2;
	}
	bench_fs_type(fs, sizeof fs, dir);
	printf("bench_hosts: %d environments per host per run, %d runs each (interleaved), "
	       "%d invalidation samples of each kind, on %s (%s)\n",
	       n, runs, samples, dir, fs);
	if (strstr(stores, "postgresql") != NULL) {
		pg = pg_setup();
		if (pg < 0)
			return 2;
		if (pg == 0 && (throughput(STORE_PG, n, runs) != 0 || invalidation(samples) != 0))
			return 2;
	}
	if (strstr(stores, "sqlite") != NULL && throughput(STORE_SQLITE, n, runs) != 0)
		return 2;
	bench_note("hosts: separate processes (fork, then each its own envdb context, store "
		   "connection, resolve cache), physical databases in a directory per process "
		   "on %s (%s)",
		   dir, fs);
	rc = bench_finish();
	pg_harness_stop(H);
	bench_rmtree(dir);
	return rc;
}
