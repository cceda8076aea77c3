/*
 * bench/bench_migrate.c — the v4 → v5 migration against its floor, measured
 * in the same run on the same machine (core/MIGRATION.md, "Performance").
 *
 *   1. seed N legacy rows (default 100,000: one organization each, a token
 *      sealed with the legacy keyring) and keep a pristine copy;
 *   2. floor: on a copy, read the legacy rows, and for each one decrypt its
 *      token with the legacy encryptor, seal it with the current one and
 *      insert the same rows the migration inserts (environment, database,
 *      credential, owner) through the same store functions, in transactions
 *      of the same size — everything a migration cannot avoid, without its
 *      logic (checks, pagination, package repointing, archiving);
 *   3. the migration on a fresh copy (envdb_migrate_v4_to_v5);
 *   4. the re-run on the migrated control plane.
 * Floor and migration run ENVDB_BENCH_RUNS times each (default 3),
 * interleaved, each on a fresh copy; the medians are compared.
 * Targets: migration <= 1.5 x floor, re-run <= 5% of the first run.  The
 * figures go to the table of `make bench` (bench/bench.h).  Exit status 0
 * when both hold, 1 otherwise, 2 when it could not run.
 *
 * Environment: BENCH_MIGRATE_ROWS (default 100000; 10000 with
 * ENVDB_BENCH_QUICK), ENVDB_BENCH_RUNS, ENVDB_PLUGIN_DIR (set by
 * `make bench`), TMPDIR.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "internal.h"
#include "legacy_seed.h"
#include "migrate.h"
#include "store.h"

#define BATCH 256

static void die(const char *what)
{
	fprintf(stderr, "bench_migrate: %s: %s\n", what, envdb_error_last()->message);
	exit(2);
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int copy_file(const char *from, const char *to)
{
	char buf[1 << 16];
	FILE *in = fopen(from, "rb"), *out = NULL;
	size_t n;
	int rc = -1;

	if (in == NULL || (out = fopen(to, "wb")) == NULL)
		goto done;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			goto done;
	rc = ferror(in) ? -1 : 0;
done:
	if (in)
		fclose(in);
	if (out && fclose(out) != 0)
		rc = -1;
	return rc;
}

typedef struct bench {
	char dir[256], manifest[320], control[320], pristine[320];
} bench;

static void restore(const bench *b)
{
	char side[400];

	snprintf(side, sizeof(side), "%s-wal", b->control);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", b->control);
	unlink(side);
	if (copy_file(b->pristine, b->control) != 0) {
		fprintf(stderr, "bench_migrate: copy %s: %s\n", b->pristine, strerror(errno));
		exit(2);
	}
}

static envdb_ctx *open_ctx(const bench *b)
{
	envdb_ctx *ctx = NULL;

	if (envdb_open(&ctx, b->manifest, ENVDB_OPEN_CREATE) != 0)
		die("envdb_open");
	return ctx;
}

static void setup(bench *b)
{
	const char *tmp = getenv("TMPDIR");
	FILE *f;
	envdb_ctx *ctx;
	char *key = NULL;

	snprintf(b->dir, sizeof(b->dir), "%s/envdb-bench-migrate-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(b->dir) == NULL) {
		perror("bench_migrate: mkdtemp");
		exit(2);
	}
	snprintf(b->manifest, sizeof(b->manifest), "%s/envdb.yaml", b->dir);
	snprintf(b->control, sizeof(b->control), "%s/control.db", b->dir);
	snprintf(b->pristine, sizeof(b->pristine), "%s/pristine.db", b->dir);
	f = fopen(b->manifest, "w");
	if (f == NULL) {
		perror("bench_migrate: manifest");
		exit(2);
	}
	fputs("version: 1\n"
	      "control_plane: control.db\n"
	      "defaults:\n"
	      "  driver: sqlite\n"
	      "  encryptor: kms\n"
	      "legacy:\n"
	      "  register_shim: true\n"
	      "  encryptor: legacy_kms\n"
	      "plugins:\n"
	      "  - name: sqlite\n"
	      "    kind: adapter\n"
	      "    config:\n"
	      "      base_dir: environments\n"
	      "  - name: kms\n"
	      "    kind: encryptor\n"
	      "    config:\n"
	      "      keyring_dir: keyring\n"
	      "  - name: legacy_kms\n"
	      "    kind: encryptor\n"
	      "    path: kms.so\n"
	      "    config:\n"
	      "      keyring_dir: legacy-keyring\n",
	      f);
	fclose(f);
	ctx = open_ctx(b);
	if (envdb_key_generate(&key, ctx, "kms", 1) != 0)
		die("key");
	envdb_free(key);
	if (envdb_key_generate(&key, ctx, "legacy_kms", 1) != 0)
		die("legacy key");
	envdb_free(key);
	envdb_close(ctx);
}

/* The floor: the unavoidable work of a migration of every legacy row. */
static double floor_run(const bench *b, size_t *n_done)
{
	envdb_ctx *ctx = open_ctx(b);
	envdbi_plugin *legacy = envdbi_plugins_find(ctx->plugins, "legacy_kms",
						     ENVDB_PLUGIN_ENCRYPTOR);
	envdbi_tenant_db_row **rows = NULL;
	size_t n = 0, i;
	double t0 = now_s(), t;

	if (envdbi_store_tenant_db_list(ctx->store, &rows, &n, NULL) != 0)
		die("floor: list");
	for (i = 0; i < n; i++) {
		const envdbi_tenant_db_row *r = rows[i];
		char aad[ENVDBI_LEGACY_AAD_MAX], env_id[37], db_id[37], cred_id[37];
		size_t aad_len = envdbi_legacy_token_aad(aad, sizeof(aad), r->id);
		envdbi_secret *token = NULL;
		envdb_environment e = {0};
		envdb_database d = {0};
		envdb_credential c = {0};
		envdb_member m = {0};

		if (i % BATCH == 0 && envdbi_store_begin(ctx->store) != 0)
			die("floor: begin");
		if (envdbi_encryptor_decrypt(legacy, r->auth_token, aad, aad_len, &token) != 0)
			die("floor: decrypt");
		envdbi_uuid_new(env_id);
		envdbi_uuid_new(db_id);
		envdbi_uuid_new(cred_id);
		c.id = cred_id;
		c.environment_database_id = db_id;
		d.id = db_id;
		d.database_name = r->database_name;
		d.database_url = r->database_url;
		d.driver = (char *)"sqlite";
		if (envdbi_credential_seal(ctx, &c, &d, token) != 0)
			die("floor: seal");
		envdbi_secret_free(token);

		e.id = env_id;
		e.organization_id = r->organization_id;
		e.slug = (char *)"prod";
		e.display_name = (char *)"Production";
		e.env_type = (char *)"production";
		e.is_default = 1;
		e.region = r->region;
		e.plan = r->plan;
		e.status = (char *)"active";
		e.created_by = (char *)"owner";
		e.created_at = r->created_at;
		e.metadata = (char *)"{\"migrated_from\":{\"object\":\"sys_tenant_database\","
				     "\"id\":\"00000000-0000-4000-8000-000000000000\"}}";
		if (envdbi_store_env_insert(ctx->store, &e, NULL) != 0)
			die("floor: environment");
		d.id = db_id;
		d.environment_id = env_id;
		d.database_name = r->database_name;
		d.database_url = r->database_url;
		d.driver = (char *)"sqlite";
		d.region = r->region;
		d.storage_limit_mb = r->storage_limit_mb;
		d.provisioned_at = r->created_at;
		d.metadata = e.metadata;
		if (envdbi_store_db_insert(ctx->store, &d, NULL) != 0)
			die("floor: database");
		c.handle = (char *)"";
		c.authorization = (char *)"full_access";
		c.status = (char *)"active";
		if (envdbi_store_cred_insert(ctx->store, &c, NULL) != 0)
			die("floor: credential");
		free(c.secret_ciphertext);
		free(c.key_id);
		m.environment_id = env_id;
		m.user_id = (char *)"owner";
		m.role = (char *)"owner";
		if (envdbi_store_member_insert(ctx->store, &m, NULL) != 0)
			die("floor: member");
		if ((i + 1) % BATCH == 0 || i + 1 == n)
			if (envdbi_store_commit(ctx->store) != 0)
				die("floor: commit");
	}
	t = now_s() - t0;
	envdbi_tenant_db_list_free(rows, n);
	envdb_close(ctx);
	*n_done = n;
	return t;
}

static double migrate_run(const bench *b, envdb_migrate_report **rep)
{
	envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
	envdb_ctx *ctx = open_ctx(b);
	double t0, t;

	o.by = "owner";
	o.batch = BATCH;
	t0 = now_s();
	if (envdb_migrate_v4_to_v5(rep, ctx, &o) != 0)
		die("migrate");
	t = now_s() - t0;
	envdb_close(ctx);
	return t;
}

#define MAX_RUNS 9

int main(void)
{
	const char *env = getenv("BENCH_MIGRATE_ROWS");
	size_t n = env && *env ? (size_t)strtoull(env, NULL, 10) : bench_quick() ? 10000 : 100000,
	       done = 0;
	legacy_gen_opts go = {0};
	legacy_gen_stats gs;
	envdb_migrate_report *rep = NULL, *rep2 = NULL;
	envdb_ctx *ctx;
	bench b;
	double t_seed, t_floor, t_mig, t_rerun, ratio, frac, vf[MAX_RUNS], vm[MAX_RUNS];
	int ok, runs = bench_runs(3), r, rc;
	bench_stats sf, sm, sr;
	char cmd[400], title[128], does[512];

	if (n == 0)
		n = 1;
	if (runs > MAX_RUNS)
		runs = MAX_RUNS;
	bench_begin("bench_migrate");
	/* the shim's deprecation notice at every open is not benchmark output */
	setenv("ENVDB_LOG_LEVEL", "error", 0);
	setup(&b);
	ctx = open_ctx(&b);
	go.n_orgs = n;
	go.seed = 7;
	go.mixed = 0;
	t_seed = now_s();
	if (legacy_seed_generate(&gs, ctx, &go) != 0)
		die("seed");
	t_seed = now_s() - t_seed;
	envdb_close(ctx);
	if (copy_file(b.control, b.pristine) != 0) {
		perror("bench_migrate: copy");
		return 2;
	}

	/* Floor and migration `runs` times each, interleaved (alternating which
	 * goes first), each on a fresh copy, so that warming up (page cache,
	 * the keyrings, secure memory) and a busy machine favour neither.  The
	 * re-run follows the last migration. */
	for (r = 0; r < runs; r++) {
		if (r % 2 == 0) {
			restore(&b);
			vf[r] = floor_run(&b, &done);
		}
		restore(&b);
		envdb_migrate_report_free(rep);
		rep = NULL;
		vm[r] = migrate_run(&b, &rep);
		if (r % 2 == 1) {
			restore(&b);
			vf[r] = floor_run(&b, &done);
		}
	}
	if (runs % 2 == 0) { /* the last run ended with a floor: migrate again */
		restore(&b);
		envdb_migrate_report_free(rep);
		rep = NULL;
		migrate_run(&b, &rep);
	}
	t_rerun = migrate_run(&b, &rep2);
	sf = bench_stats_of(vf, runs);
	sm = bench_stats_of(vm, runs);
	t_floor = sf.median;
	t_mig = sm.median;

	ratio = t_mig / t_floor;
	frac = t_rerun / t_mig;
	ok = ratio <= 1.5 && frac <= 0.05 && rep->migrated == n && rep2->already == n &&
	     rep2->migrated == 0 && done == n;
	printf("bench_migrate: %zu legacy rows (seeded in %.2f s), %d runs each\n", n, t_seed,
	       runs);
	printf("  floor (read, decrypt+encrypt, insert 4 rows each): %8.3f s  %8.1f us/row  "
	       "(min %.3f, max %.3f s)\n",
	       t_floor, t_floor * 1e6 / (double)n, sf.min, sf.max);
	printf("  migration:                                          %8.3f s  %8.1f us/row  "
	       "%.2fx floor (target <= 1.50x; min %.3f, max %.3f s)\n",
	       t_mig, t_mig * 1e6 / (double)n, ratio, sm.min, sm.max);
	printf("  re-run:                                             %8.3f s  %8.2f%% of the "
	       "first run (target <= 5%%)\n",
	       t_rerun, 100.0 * frac);
	printf("  migrated %zu, already %zu on the re-run: %s\n", rep->migrated, rep2->already,
	       ok ? "PASS" : "FAIL");

	snprintf(title, sizeof(title), "4 migration v4->v5, %zu legacy rows", n);
	snprintf(does, sizeof(does),
		 "the unavoidable work of the migration, in the same batches of %d: read the "
		 "legacy rows, decrypt each token with the legacy encryptor and seal it with the "
		 "current one, insert the same 4 rows (environment, database, credential, owner) "
		 "through the same store functions; no checks, pagination, package repointing or "
		 "archiving",
		 BATCH);
	bench_ratio("migrate", title, "s", &sm, &sf, "floor", does, 1.5);
	sr.median = sr.min = sr.max = t_rerun;
	sr.n = 1;
	snprintf(title, sizeof(title), "4 migration re-run (%zu already migrated)", n);
	bench_ratio("migrate_rerun", title, "s", &sr, &sm, "first run",
		    "the first migration of the same rows (its median above)", 0.05);
	if (rep->migrated != n || rep2->already != n || rep2->migrated != 0 || done != n)
		bench_note("migrate: WRONG RESULT: migrated %zu of %zu, re-run found %zu already "
			   "migrated and migrated %zu more",
			   rep->migrated, n, rep2->already, rep2->migrated);
	envdb_migrate_report_free(rep);
	envdb_migrate_report_free(rep2);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b.dir);
	if (getenv("BENCH_KEEP") == NULL && getenv("ENVDB_BENCH_KEEP") == NULL && system(cmd) != 0)
		fprintf(stderr, "bench_migrate: could not remove %s\n", b.dir);
	rc = bench_finish();
	if (rc != 0)
		return rc;
	return ok ? 0 : 1;
}
