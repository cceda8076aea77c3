/*
 * bench/bench_provision.c — workload 1: provisioning environments through
 * the library (sqlite adapter, kms encryptor) against its floor, on the
 * same file system, in the same run, with the same durability settings.
 *
 * Measured: envdb_env_provision() of N environments per run (each a new
 * organization's "dev" environment, created_by "owner"), on a control plane
 * of its own.  Figure: milliseconds per environment.
 *
 * Floor, per environment, on a second control plane created by envdb (same
 * schema, same pragmas: WAL, synchronous=FULL, foreign keys on) — the
 * physical work:
 *   1. a new SQLite file in WAL mode made durable with the fewest syncs
 *      that are correct, two: openat(O_CREAT|O_EXCL|O_NOFOLLOW, 0600),
 *      close, sqlite3_open_v2, PRAGMA journal_mode=OFF then =WAL (the
 *      header written straight to the file: one fdatasync, no rollback
 *      journal), sqlite3_close, fsync of the directory;
 *   2. the secret: 32 random bytes, base64url (what the adapter mints);
 *   3. the same encryption call: the kms plugin's encrypt, through the same
 *      host call, with the credential's associated data;
 *   4. ONE durable transaction (BEGIN IMMEDIATE ... COMMIT) inserting the
 *      same four rows the library ends with — environment (active),
 *      database, credential, owner member — with prepared statements.
 * What the library does beyond it: the intent row committed before the
 * file exists (a second durable transaction: the crash safety of
 * DESIGN.md §4), validation, and reading the intent back under the write
 * lock.  Target: <= 1.3 x floor.
 *
 * The same pair again in the seed's workload shape: 10 organizations of
 * 100 environments each, the first one the default (envdb_org_provision,
 * then envdb_env_provision), against 1,000 environments of the floor.
 *
 * Every figure is printed with the disk syncs (fsync + fdatasync, counted
 * by interposing both in this executable: tests/sync_count.c) per
 * environment, of the library and of the floor.
 *
 * Environment: ENVDB_BENCH_PROVISION_N (environments per run, default 40),
 * ENVDB_BENCH_RUNS (default 7), TMPDIR (where the files go: the durability
 * figures are those of that file system).
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "bench.h"
#include "internal.h"
#include "store.h"
#include "sync_count.h"

typedef struct lib_run {
	envdb_ctx *ctx;
	int n;
	int orgs, per_org; /* the seed's shape: orgs x per_org environments */
	sync_counts sy; /* over the timed and untimed runs */
	uint64_t ops;
} lib_run;

/* acc += (now - since) */
static void syncs_add(sync_counts *acc, const sync_counts *since)
{
	sync_counts now;

	sync_count_get(&now);
	acc->total += now.total - since->total;
	acc->dirs += now.dirs - since->dirs;
	acc->files += now.files - since->files;
	acc->ns_dirs += now.ns_dirs - since->ns_dirs;
	acc->ns_files += now.ns_files - since->ns_files;
}

/* "N file syncs (M us each), D directory syncs (E us each)" per op. */
static void syncs_describe(char *out, size_t cap, const sync_counts *c, uint64_t ops)
{
	snprintf(out, cap,
		 "%.2f fdatasync/fsync of files (%.0f us each), %.2f fsync of directories (%.0f "
		 "us each)",
		 (double)c->files / (double)ops,
		 c->files ? (double)c->ns_files / (double)c->files / 1e3 : 0,
		 (double)c->dirs / (double)ops,
		 c->dirs ? (double)c->ns_dirs / (double)c->dirs / 1e3 : 0);
}

typedef struct floor_run {
	envdb_ctx *enc_ctx; /* only its encryptor is used */
	sqlite3 *cp;        /* the floor's control plane */
	sqlite3_stmt *ins[4], *begin, *commit;
	int envs_fd;
	char envs[1200];
	int n;
	/* The credentials the library's provisioning makes per environment
	 * (their authorizations, probed once): the floor mints, encrypts and
	 * inserts as many. */
	char auths[4][16];
	int n_auths;
	sync_counts sy;
	uint64_t ops;
} floor_run;

static double lib_once(void *arg, int run)
{
	lib_run *L = arg;
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	char org[64];
	sync_counts s0;
	double t0, t;
	int i;

	sync_count_get(&s0);
	t0 = bench_now();
	o.env_type = "development";
	o.created_by = "owner";
	for (i = 0; i < L->n; i++) {
		snprintf(org, sizeof(org), "org-%d-%d", run, i);
		if (envdb_env_provision(NULL, L->ctx, org, "dev", &o) != 0)
			bench_die("provision");
	}
	t = (bench_now() - t0) * 1e3 / L->n;
	syncs_add(&L->sy, &s0);
	L->ops += (uint64_t)L->n;
	return t;
}

/* The seed's shape: per organization, its default environment (prod) and
 * per_org - 1 more. */
static double seed_once(void *arg, int run)
{
	lib_run *L = arg;
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	char org[64], slug[32];
	sync_counts s0;
	double t0, t;
	int i, j;

	sync_count_get(&s0);
	t0 = bench_now();
	o.created_by = "owner";
	for (i = 0; i < L->orgs; i++) {
		snprintf(org, sizeof(org), "seed-%d-%d", run, i);
		o.env_type = NULL;
		if (envdb_org_provision(NULL, L->ctx, org, "prod", &o) != 0)
			bench_die("provision organization");
		o.env_type = "development";
		for (j = 1; j < L->per_org; j++) {
			snprintf(slug, sizeof(slug), "env-%03d", j);
			if (envdb_env_provision(NULL, L->ctx, org, slug, &o) != 0)
				bench_die("provision");
		}
	}
	t = (bench_now() - t0) * 1e3 / (L->orgs * L->per_org);
	syncs_add(&L->sy, &s0);
	L->ops += (uint64_t)(L->orgs * L->per_org);
	return t;
}

static int exec1(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		fprintf(stderr, "bench_provision: floor: %s: %s\n", sql, err ? err : "?");
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "bench_provision: floor: %s\n", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

#define T(st, i, v) sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC)
#define I(st, i, v) sqlite3_bind_int64(st, i, v)

/* One environment of the floor (steps 1-4 of the header). */
static int floor_one(floor_run *F, const char *org)
{
	char env_id[37], db_id[37], cred_id[4][37], mem_id[37], name[40], fname[48], path[1300];
	char url[1400], meta[1500], token[64];
	unsigned char raw[32], aad[ENVDB_CREDENTIAL_AAD_MAX];
	envdbi_secret secret;
	char *ct[4] = {NULL}, *key_id[4] = {NULL};
	size_t aad_len, i, o;
	sqlite3 *db = NULL;
	int64_t now = (int64_t)time(NULL);
	int fd, k, rc = -1;
	sqlite3_stmt *st;

	envdbi_uuid_new(env_id);
	envdbi_uuid_new(db_id);
	for (k = 0; k < F->n_auths; k++)
		envdbi_uuid_new(cred_id[k]);
	envdbi_uuid_new(mem_id);
	memcpy(name, "env_", 4);
	for (i = 0, o = 4; env_id[i]; i++)
		if (env_id[i] != '-')
			name[o++] = env_id[i];
	name[o] = '\0';
	snprintf(fname, sizeof(fname), "%s.db", name);
	snprintf(path, sizeof(path), "%s/%s", F->envs, fname);

	/* 1. The file, in WAL mode, durable: one fdatasync of the file (its
	 * header, written without a journal), one fsync of the directory. */
	fd = openat(F->envs_fd, fname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || close(fd) != 0)
		goto out;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL) != 0 ||
	    exec1(db, "PRAGMA synchronous=FULL") != 0 || exec1(db, "PRAGMA journal_mode=OFF") != 0 ||
	    exec1(db, "PRAGMA journal_mode=WAL") != 0)
		goto out;
	if (sqlite3_close(db) != SQLITE_OK)
		goto out;
	db = NULL;
	if (fsync(F->envs_fd) != 0)
		goto out;
	snprintf(url, sizeof(url), "file:%s", path);
	snprintf(meta, sizeof(meta), "{\"path\":\"%s\",\"journal_mode\":\"wal\"}", path);

	for (k = 0; k < F->n_auths; k++) {
		/* 2. The secret. */
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2base64(token, sizeof(token), raw, sizeof(raw),
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		secret.data = token;
		secret.len = strlen(token);

		/* 3. The encryption call. */
		if (envdb_credential_aad(aad, &aad_len, cred_id[k], db_id) != 0 ||
		    envdbi_encryptor_encrypt(F->enc_ctx->encryptor, &secret, aad, aad_len, &ct[k],
					     &key_id[k]) != 0)
			bench_die("floor: encrypt");
	}

	/* 4. One durable transaction with the four rows. */
	if (step_done(F->cp, F->begin) != 0)
		goto out;
	st = F->ins[0];
	T(st, 1, env_id), T(st, 2, org), T(st, 3, "dev"), T(st, 4, "dev"),
		T(st, 5, "development"), I(st, 6, 0), T(st, 7, "free"), T(st, 8, "active"),
		T(st, 9, "owner"), I(st, 10, now), I(st, 11, now), T(st, 12, "{}");
	if (step_done(F->cp, st) != 0)
		goto rollback;
	st = F->ins[1];
	T(st, 1, db_id), T(st, 2, env_id), T(st, 3, name), T(st, 4, url), T(st, 5, "sqlite"),
		I(st, 6, 1024), I(st, 7, now), T(st, 8, meta);
	if (step_done(F->cp, st) != 0)
		goto rollback;
	for (k = 0; k < F->n_auths; k++) {
		st = F->ins[2];
		T(st, 1, cred_id[k]), T(st, 2, db_id), T(st, 3, ct[k]), T(st, 4, key_id[k]),
			T(st, 5, ""), T(st, 6, F->auths[k]), T(st, 7, "active"), I(st, 8, now);
		if (step_done(F->cp, st) != 0)
			goto rollback;
	}
	st = F->ins[3];
	T(st, 1, mem_id), T(st, 2, env_id), T(st, 3, "owner"), T(st, 4, "owner"), T(st, 5, "owner"),
		I(st, 6, now), I(st, 7, now);
	if (step_done(F->cp, st) != 0)
		goto rollback;
	if (step_done(F->cp, F->commit) != 0)
		goto rollback;
	rc = 0;
	goto out;
rollback:
	exec1(F->cp, "ROLLBACK");
out:
	if (db != NULL)
		sqlite3_close(db);
	for (k = 0; k < F->n_auths; k++) {
		free(ct[k]);
		free(key_id[k]);
	}
	sodium_memzero(token, sizeof(token));
	return rc;
}

/* Which credentials does the library's provisioning make?  One environment
 * provisioned (untimed), its credentials' authorizations read back. */
static void probe_credentials(floor_run *F, envdb_ctx *ctx, const char *control)
{
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	o.env_type = "development";
	o.created_by = "owner";
	if (envdb_env_provision(NULL, ctx, "probe-org", "dev", &o) != 0)
		bench_die("provision (probe)");
	if (sqlite3_open_v2(control, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(
		    db,
		    "SELECT c.authorization FROM sys_database_credential c JOIN "
		    "sys_environment_database d ON d.id = c.environment_database_id JOIN "
		    "sys_environment e ON e.id = d.environment_id WHERE "
		    "e.organization_id = 'probe-org' ORDER BY c.authorization",
		    -1, &st, NULL) != SQLITE_OK)
		bench_die("probe the credentials");
	while (sqlite3_step(st) == SQLITE_ROW && F->n_auths < 4)
		snprintf(F->auths[F->n_auths++], sizeof(F->auths[0]), "%s",
			 (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (F->n_auths == 0)
		bench_die("probe: no credential");
}

static double floor_once(void *arg, int run)
{
	floor_run *F = arg;
	char org[64];
	sync_counts s0;
	double t0, t;
	int i;

	sync_count_get(&s0);
	t0 = bench_now();
	for (i = 0; i < F->n; i++) {
		snprintf(org, sizeof(org), "floor-%d-%d-%d", F->n, run, i);
		if (floor_one(F, org) != 0) {
			fprintf(stderr, "bench_provision: floor failed\n");
			return -1;
		}
	}
	t = (bench_now() - t0) * 1e3 / F->n;
	syncs_add(&F->sy, &s0);
	F->ops += (uint64_t)F->n;
	return t;
}

static void floor_open(floor_run *F, const char *dir, const char *manifest)
{
	static const char *const ins[4] = {
		"INSERT INTO sys_environment (id, organization_id, slug, display_name, env_type, "
		"is_default, plan, status, created_by, created_at, updated_at, metadata) VALUES "
		"(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
		"INSERT INTO sys_environment_database (id, environment_id, database_name, "
		"database_url, driver, storage_limit_mb, provisioned_at, metadata) VALUES "
		"(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		"INSERT INTO sys_database_credential (id, environment_database_id, "
		"secret_ciphertext, encryption_key_id, handle, authorization, status, created_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		"INSERT INTO sys_environment_member (id, environment_id, user_id, role, invited_by, "
		"created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"};
	char path[1300];
	int i;

	if (envdb_open(&F->enc_ctx, manifest, ENVDB_OPEN_NO_STORE) != 0)
		bench_die("floor: load the encryptor");
	snprintf(F->envs, sizeof(F->envs), "%s/envs", dir);
	F->envs_fd = open(F->envs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/control.db", dir);
	if (F->envs_fd < 0 || sqlite3_open_v2(path, &F->cp, SQLITE_OPEN_READWRITE, NULL) != 0 ||
	    exec1(F->cp, "PRAGMA foreign_keys = ON") != 0 ||
	    exec1(F->cp, "PRAGMA journal_mode = WAL") != 0 ||
	    exec1(F->cp, "PRAGMA synchronous = FULL") != 0) {
		fprintf(stderr, "bench_provision: cannot open the floor's control plane\n");
		exit(2);
	}
	sqlite3_busy_timeout(F->cp, 5000);
	for (i = 0; i < 4; i++)
		if (sqlite3_prepare_v3(F->cp, ins[i], -1, SQLITE_PREPARE_PERSISTENT, &F->ins[i],
				       NULL) != SQLITE_OK) {
			fprintf(stderr, "bench_provision: floor: %s\n", sqlite3_errmsg(F->cp));
			exit(2);
		}
	if (sqlite3_prepare_v2(F->cp, "BEGIN IMMEDIATE", -1, &F->begin, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(F->cp, "COMMIT", -1, &F->commit, NULL) != SQLITE_OK) {
		fprintf(stderr, "bench_provision: floor: %s\n", sqlite3_errmsg(F->cp));
		exit(2);
	}
}

static void floor_close(floor_run *F)
{
	int i;

	for (i = 0; i < 4; i++)
		sqlite3_finalize(F->ins[i]);
	sqlite3_finalize(F->begin);
	sqlite3_finalize(F->commit);
	sqlite3_close(F->cp);
	close(F->envs_fd);
	envdb_close(F->enc_ctx);
}

int main(void)
{
	char dir[1024], ldir[1100], fdir[1100], lman[1200], fman[1200], fs[32], title[256];
	char d1[256], d2[256];
	int n = (int)bench_env_long("ENVDB_BENCH_PROVISION_N", bench_quick() ? 10 : 40);
	int runs = bench_runs(bench_quick() ? 3 : 7), rc;
	bench_stats m, f;
	lib_run L = {0};
	floor_run F;

	memset(&F, 0, sizeof(F));
	bench_begin("bench_provision");
	setenv("ENVDB_LOG_LEVEL", "error", 0);
	if (sodium_init() < 0 || bench_mkdtemp(dir, sizeof(dir), NULL, "provision") != 0) {
		perror("bench_provision: setup");
		return 2;
	}
	snprintf(ldir, sizeof(ldir), "%s/lib", dir);
	snprintf(fdir, sizeof(fdir), "%s/floor", dir);
	if (mkdir(ldir, 0700) != 0 || mkdir(fdir, 0700) != 0) {
		perror("bench_provision: mkdir");
		return 2;
	}
	bench_manifest(lman, sizeof(lman), ldir, "envdb.yaml", NULL);
	bench_manifest(fman, sizeof(fman), fdir, "envdb.yaml", NULL);
	bench_init_store(lman);
	bench_init_store(fman);
	if (envdb_open(&L.ctx, lman, 0) != 0)
		bench_die("open");
	L.n = n;
	floor_open(&F, fdir, fman);
	F.n = n;
	{
		char control[1200];

		snprintf(control, sizeof(control), "%s/control.db", ldir);
		probe_credentials(&F, L.ctx, control);
	}
	printf("bench_provision: the library makes %d credential(s) per environment (%s%s%s); "
	       "so does the floor\n",
	       F.n_auths, F.auths[0], F.n_auths > 1 ? ", " : "", F.n_auths > 1 ? F.auths[1] : "");
	bench_fs_type(fs, sizeof(fs), dir);
	printf("bench_provision: %d environments per run, %d runs each (interleaved), on %s "
	       "(%s)\n",
	       n, runs, dir, fs);

	if (bench_pair(&m, &f, 1, runs, lib_once, &L, floor_once, &F) != 0)
		return 2;
	snprintf(title, sizeof(title), "1 provision (sqlite+kms, %s), %d envs/run", fs, n);
	bench_ratio("provision", title, "ms/env", &m, &f, "floor",
		    "per environment, the physical work: a new SQLite file in WAL mode made "
		    "durable with the fewest correct syncs, 2 (O_EXCL, mode 0600, journal_mode=OFF "
		    "then WAL: one fdatasync of the file, then fsync of the directory), 32 random "
		    "bytes base64url and the same kms encrypt call per credential the library "
		    "makes, and ONE durable control-plane transaction (WAL, synchronous=FULL: one "
		    "fdatasync) inserting the same rows (environment, database, its credentials, "
		    "owner member)",
		    1.3);
	bench_syncs((double)L.sy.total / (double)L.ops, (double)F.sy.total / (double)F.ops);
	syncs_describe(d1, sizeof(d1), &L.sy, L.ops);
	syncs_describe(d2, sizeof(d2), &F.sy, F.ops);
	bench_note("provision, syncs per environment: library %s; floor %s", d1, d2);
	bench_note("provision: the library commits the intent row before creating the file "
		   "(a second durable transaction, DESIGN.md section 4: 4 syncs per environment "
		   "where the floor makes 3, so the ratio tends to 1.33 where syncs dominate)");

	/* The seed's shape. */
	L.orgs = bench_quick() ? 2 : 10;
	L.per_org = bench_quick() ? 10 : 100;
	memset(&L.sy, 0, sizeof(L.sy));
	memset(&F.sy, 0, sizeof(F.sy));
	L.ops = F.ops = 0;
	F.n = L.orgs * L.per_org;
	if (bench_pair(&m, &f, 0, bench_runs(3), seed_once, &L, floor_once, &F) != 0)
		return 2;
	snprintf(title, sizeof(title), "1 provision, seed shape %d orgs x %d envs", L.orgs,
		 L.per_org);
	bench_ratio("provision_seed_shape", title, "ms/env", &m, &f, "floor",
		    "the same floor as workload 1, for as many environments", 1.3);
	bench_syncs((double)L.sy.total / (double)L.ops, (double)F.sy.total / (double)F.ops);
	syncs_describe(d1, sizeof(d1), &L.sy, L.ops);
	syncs_describe(d2, sizeof(d2), &F.sy, F.ops);
	bench_note("provision, seed shape, syncs per environment: library %s; floor %s", d1, d2);
	bench_note("provision, seed shape: per organization envdb_org_provision (its default "
		   "prod) then envdb_env_provision of the others, on the same control plane");

	floor_close(&F);
	envdb_close(L.ctx);
	rc = bench_finish();
	bench_rmtree(dir);
	return rc;
}
