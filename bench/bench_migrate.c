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
 * `make bench`), TMPDIR; BENCH_MIGRATE_ONLY=floor|migrate|check|check-no-decrypt|
 * check-floor
 * runs that phase once (after the seed, and after a migration for the
 * check phases) and prints its time, to profile it alone.
 */
#include "config.h"

#include <errno.h>
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
#include "legacy_seed.h"
#include "migrate.h"
#include "schema.h"
#include "store.h"


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

/* Bytes this process has caused to be written to storage so far. */
static unsigned long long write_bytes(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	unsigned long long v = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "write_bytes: %llu", &v) == 1)
			break;
	fclose(f);
	return v;
}

static long long file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

static void sql_die(sqlite3 *db, const char *what)
{
	fprintf(stderr, "bench_migrate: floor: %s: %s\n", what, sqlite3_errmsg(db));
	exit(2);
}

/* INSERT of every field of `o`, prepared once. */
static sqlite3_stmt *prepare_insert(sqlite3 *db, const envdbi_object_def *o)
{
	char sql[2048];
	size_t n = 0, i;
	sqlite3_stmt *st = NULL;

	n += (size_t)snprintf(sql + n, sizeof(sql) - n, "INSERT INTO \"%s\" (", o->name);
	for (i = 0; i < o->n_fields; i++)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s\"%s\"", i ? ", " : "",
				      o->fields[i].name);
	n += (size_t)snprintf(sql + n, sizeof(sql) - n, ") VALUES (");
	for (i = 0; i < o->n_fields; i++)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s?", i ? ", " : "");
	snprintf(sql + n, sizeof(sql) - n, ")");
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		sql_die(db, "prepare insert");
	return st;
}

/* Bind every field of record `rec` and run the INSERT. */
static void insert_record(sqlite3 *db, sqlite3_stmt *st, const envdbi_object_def *o,
			  const void *rec)
{
	size_t i;

	for (i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		int idx = (int)i + 1;

		if (envdbi_ftype_is_text(f->type)) {
			const char *v = envdbi_field_cstr(f, rec);

			if (v == NULL && f->default_value != NULL)
				v = f->default_value;
			if (v != NULL)
				sqlite3_bind_text(st, idx, v, -1, SQLITE_STATIC);
			else
				sqlite3_bind_null(st, idx);
		} else {
			int64_t v = envdbi_field_int(f, rec);

			if (v == 0 && f->type == ENVDBI_FT_TIME && f->required)
				v = 1700000000;
			if (v == 0 && (f->type == ENVDBI_FT_TIME || !f->required))
				sqlite3_bind_null(st, idx);
			else
				sqlite3_bind_int64(st, idx, v);
		}
	}
	if (sqlite3_step(st) != SQLITE_DONE)
		sql_die(db, o->name);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

typedef struct floor_row {
	char *id, *org, *name, *url, *region, *plan;
	int64_t storage, created_at;
	char *b64;            /* base64url of nonce || ciphertext || tag */
} floor_row;

#define NPUB crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

/*
 * The physical floor of the first pass: the same rows read (one prepared
 * SELECT), the same AEAD work on the same sizes (base64 decode, an
 * XChaCha20-Poly1305 decryption with the legacy AAD, an encryption with
 * the v5 credential AAD, base64 encode), and the same writes (environment,
 * database, credential and owner rows, the legacy row archived) through
 * prepared statements in ONE transaction on the same schema, WAL and
 * synchronous=FULL — no envdb store function, plugin or secure memory.
 * The legacy tokens are sealed for it beforehand (untimed) under a key of
 * its own, with the plaintexts the seed gave them.
 */
static double phys_floor_run(const bench *b, size_t n_orgs, unsigned long long *wbytes,
			     long long *fsize)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *sel, *ins_env, *ins_db, *ins_cred, *ins_mem, *arch;
	unsigned char k1[crypto_aead_xchacha20poly1305_ietf_KEYBYTES],
		k2[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
	floor_row *fr = calloc(n_orgs, sizeof(*fr));
	size_t n = 0, i;
	double t0, t;
	unsigned long long w0;
	uint64_t seq = 0;

	crypto_aead_xchacha20poly1305_ietf_keygen(k1);
	crypto_aead_xchacha20poly1305_ietf_keygen(k2);
	if (fr == NULL || sqlite3_open(b->control, &db) != SQLITE_OK)
		sql_die(db, "open");
	sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
			 "PRAGMA foreign_keys = ON; PRAGMA cache_size = -131072",
		     NULL, NULL, NULL);
	/* untimed: a ciphertext of the seed's plaintext for every row, under k1 */
	if (sqlite3_prepare_v2(db,
			       "SELECT \"id\", \"organization_id\", \"database_name\", \"database_url\", "
			       "\"region\", \"plan\", \"storage_limit_mb\", \"created_at\" FROM "
			       "\"sys_tenant_database\" WHERE \"migrated_environment_id\" IS NULL "
			       "ORDER BY \"organization_id\"",
			       -1, &sel, NULL) != SQLITE_OK)
		sql_die(db, "prepare select");
	for (i = 0; i < n_orgs; i++) {
		char pt[64], aad[ENVDBI_LEGACY_AAD_MAX], id[37];
		unsigned char ct[NPUB + 64 + ABYTES];
		unsigned long long clen;
		size_t aad_len, ptlen;

		legacy_seed_token(pt, sizeof(pt), i, 0);
		ptlen = strlen(pt);
		snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", (unsigned)(i & 0xffffffffu));
		aad_len = envdbi_legacy_token_aad(aad, sizeof(aad), id);
		randombytes_buf(ct, NPUB);
		crypto_aead_xchacha20poly1305_ietf_encrypt(ct + NPUB, &clen, (unsigned char *)pt,
							   ptlen, (unsigned char *)aad, aad_len,
							   NULL, ct, k1);
		fr[i].b64 = malloc(sodium_base64_ENCODED_LEN(NPUB + clen,
							     sodium_base64_VARIANT_URLSAFE_NO_PADDING));
		sodium_bin2base64(fr[i].b64,
				  sodium_base64_ENCODED_LEN(NPUB + clen,
							    sodium_base64_VARIANT_URLSAFE_NO_PADDING),
				  ct, NPUB + clen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		fr[i].id = strdup(id); /* AAD of the legacy row: same length as its real id */
	}
	ins_env = prepare_insert(db, ENVDBI_OBJ_ENVIRONMENT);
	ins_db = prepare_insert(db, ENVDBI_OBJ_DATABASE);
	ins_cred = prepare_insert(db, ENVDBI_OBJ_CREDENTIAL);
	ins_mem = prepare_insert(db, ENVDBI_OBJ_MEMBER);
	if (sqlite3_prepare_v2(db,
			       "UPDATE \"sys_tenant_database\" SET \"status\" = 'archived', "
			       "\"migrated_environment_id\" = ?1, \"updated_at\" = ?2 WHERE \"id\" = ?3 "
			       "AND \"migrated_environment_id\" IS NULL",
			       -1, &arch, NULL) != SQLITE_OK)
		sql_die(db, "prepare archive");

	w0 = write_bytes();
	t0 = now_s();
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		sql_die(db, "begin");
	while (sqlite3_step(sel) == SQLITE_ROW && n < n_orgs) {
		floor_row *r = &fr[n];
		char env_id[37], db_id[37], cred_id[37], mem_id[37], aad[ENVDBI_LEGACY_AAD_MAX];
		unsigned char bin[NPUB + 64 + ABYTES], pt[64], ct[NPUB + 64 + ABYTES],
			aad2[ENVDB_CREDENTIAL_AAD_BOUND_MAX];
		char out[256], *legacy_id = (char *)sqlite3_column_text(sel, 0);
		size_t bin_len = 0, aad_len, aad2_len;
		unsigned long long pt_len = 0, clen;
		envdb_environment e = {0};
		envdb_database d = {0};
		envdb_credential c = {0};
		envdb_member m = {0};

		r->org = (char *)sqlite3_column_text(sel, 1);
		r->name = (char *)sqlite3_column_text(sel, 2);
		r->url = (char *)sqlite3_column_text(sel, 3);
		r->region = (char *)sqlite3_column_text(sel, 4);
		r->plan = (char *)sqlite3_column_text(sel, 5);
		r->storage = sqlite3_column_int64(sel, 6);
		r->created_at = sqlite3_column_int64(sel, 7);
		/* decrypt the legacy token (AAD of its row), seal it for the new row */
		aad_len = envdbi_legacy_token_aad(aad, sizeof(aad), r->id);
		if (sodium_base642bin(bin, sizeof(bin), r->b64, strlen(r->b64), NULL, &bin_len, NULL,
				      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
		    crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &pt_len, NULL, bin + NPUB,
							       bin_len - NPUB, (unsigned char *)aad,
							       aad_len, bin, k1) != 0) {
			fprintf(stderr, "bench_migrate: floor: decrypt failed\n");
			exit(2);
		}
		/* the ids the migration gives them (creation order, core/migrate.h) */
		envdbi_migrate_uuid_next(&seq, env_id);
		envdbi_migrate_uuid_next(&seq, db_id);
		envdbi_migrate_uuid_next(&seq, cred_id);
		envdbi_migrate_uuid_next(&seq, mem_id);
		/* the associated data the migration seals with (version 2: the
		 * ids and the database's driver, name and url) */
		d.id = db_id;
		d.database_name = r->name;
		d.database_url = r->url;
		d.driver = (char *)"sqlite";
		c.id = cred_id;
		c.environment_database_id = db_id;
		if (envdbi_credential_aad_of(aad2, &aad2_len, &c, ENVDB_CREDENTIAL_AAD_VERSION, &d) !=
		    ENVDB_OK)
			die("floor: aad");
		randombytes_buf(ct, NPUB);
		crypto_aead_xchacha20poly1305_ietf_encrypt(ct + NPUB, &clen, pt, pt_len, aad2,
							   aad2_len, NULL, ct, k2);
		sodium_memzero(pt, sizeof(pt));
		memcpy(out, "edb1.k0000000000000000.", 23);
		sodium_bin2base64(out + 23, sizeof(out) - 23, ct, NPUB + clen,
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);

		e.id = env_id;
		e.organization_id = r->org;
		e.slug = (char *)"prod";
		e.display_name = (char *)"Production";
		e.env_type = (char *)"production";
		e.is_default = 1;
		e.region = r->region;
		e.plan = r->plan;
		e.status = (char *)"active";
		e.created_by = (char *)"owner";
		e.created_at = r->created_at;
		e.updated_at = r->created_at;
		e.metadata = (char *)"{\"migrated_from\":{\"object\":\"sys_tenant_database\","
				     "\"id\":\"00000000-0000-4000-8000-000000000000\"}}";
		insert_record(db, ins_env, ENVDBI_OBJ_ENVIRONMENT, &e);
		d.id = db_id;
		d.environment_id = env_id;
		d.database_name = r->name;
		d.database_url = r->url;
		d.driver = (char *)"sqlite";
		d.region = r->region;
		d.storage_limit_mb = r->storage;
		d.provisioned_at = r->created_at;
		d.metadata = e.metadata;
		insert_record(db, ins_db, ENVDBI_OBJ_DATABASE, &d);
		c.id = cred_id;
		c.environment_database_id = db_id;
		c.secret_ciphertext = out;
		c.key_id = (char *)"k0000000000000000";
		c.handle = (char *)"";
		c.authorization = (char *)"full_access";
		c.status = (char *)"active";
		c.aad_version = ENVDB_CREDENTIAL_AAD_VERSION;
		insert_record(db, ins_cred, ENVDBI_OBJ_CREDENTIAL, &c);
		m.id = mem_id;
		m.environment_id = env_id;
		m.user_id = (char *)"owner";
		m.role = (char *)"owner";
		insert_record(db, ins_mem, ENVDBI_OBJ_MEMBER, &m);
		sqlite3_bind_text(arch, 1, env_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(arch, 2, 1700000000);
		sqlite3_bind_text(arch, 3, legacy_id, -1, SQLITE_STATIC);
		if (sqlite3_step(arch) != SQLITE_DONE)
			sql_die(db, "archive");
		sqlite3_reset(arch);
		n++;
	}
	sqlite3_reset(sel);
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		sql_die(db, "commit");
	sqlite3_finalize(sel);
	sqlite3_finalize(ins_env);
	sqlite3_finalize(ins_db);
	sqlite3_finalize(ins_cred);
	sqlite3_finalize(ins_mem);
	sqlite3_finalize(arch);
	sqlite3_close(db); /* checkpoints the WAL into the file, as envdb_close does */
	t = now_s() - t0;
	*wbytes = write_bytes() - w0;
	*fsize = file_size(b->control);
	if (n != n_orgs) {
		fprintf(stderr, "bench_migrate: floor: %zu rows of %zu\n", n, n_orgs);
		exit(2);
	}
	for (i = 0; i < n_orgs; i++) {
		free(fr[i].id);
		free(fr[i].b64);
	}
	free(fr);
	return t;
}

/* The migration at its default batch, timed from the open of the context
 * to its close (which checkpoints the WAL, as the floor's close does). */
static double migrate_run(const bench *b, envdb_migrate_report **rep, unsigned long long *wbytes,
			  long long *fsize)
{
	envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
	envdb_ctx *ctx;
	double t0, t;
	unsigned long long w0 = write_bytes();

	t0 = now_s();
	ctx = open_ctx(b);
	o.by = "owner";
	if (envdb_migrate_v4_to_v5(rep, ctx, &o) != 0)
		die("migrate");
	envdb_close(ctx);
	t = now_s() - t0;
	if (wbytes != NULL)
		*wbytes = write_bytes() - w0;
	if (fsize != NULL)
		*fsize = file_size(b->control);
	return t;
}

/* The floor of envdb check: the very queries it runs (every row of every
 * object, the duplicate search of every unique index, the dangling
 * references of every reference field), stepped bare: every column read,
 * nothing done with it.  (The cross-object invariants and the ciphertext
 * pass work on the rows of the first query since issue 17: check no longer
 * reads the environment, database and credential lists again, nor a
 * database row per credential, so neither does its floor.) */
static double check_floor_run(const bench *b)
{
	sqlite3 *db = NULL;
	char sql[4096];
	size_t i, k, c;
	double t0;

	if (sqlite3_open_v2(b->control, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		sql_die(db, "open");
	t0 = now_s();
	for (i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		const char *queries[64];
		char *owned[64] = {0};
		size_t nq = 0, q;

		snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\" ORDER BY \"id\"", o->name);
		owned[nq] = strdup(sql);
		queries[nq] = owned[nq];
		nq++;
		for (k = 0; k < o->n_indexes && nq < 60; k++) {
			const envdbi_index_def *ix = &o->indexes[k];
			char cols[512] = "", key[1024] = "";
			size_t lc = 0, lk = 0;

			if (!ix->unique)
				continue;
			for (c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++) {
				lc += (size_t)snprintf(cols + lc, sizeof(cols) - lc, "%s\"%s\"",
						       c ? ", " : "", ix->columns[c]);
				lk += (size_t)snprintf(key + lk, sizeof(key) - lk,
						       "%sifnull(\"%s\", '')", c ? " || '/' || " : "",
						       ix->columns[c]);
			}
			/* the ids of each duplicate key are a second query, run only
			 * for a duplicate (none here) */
			snprintf(sql, sizeof(sql),
				 "SELECT %s, %s FROM \"%s\" WHERE %s GROUP BY %s HAVING count(*) > 1 "
				 "ORDER BY 1",
				 key, cols, o->name, ix->where ? ix->where : "1", cols);
			owned[nq] = strdup(sql);
			queries[nq] = owned[nq];
			nq++;
		}
		for (k = 0; k < o->n_fields && nq < 60; k++) {
			const envdbi_field_def *f = &o->fields[k];

			if (f->type != ENVDBI_FT_REF)
				continue;
			snprintf(sql, sizeof(sql),
				 "SELECT \"id\", \"%s\" FROM \"%s\" WHERE \"%s\" IS NOT NULL AND "
				 "\"%s\" NOT IN (SELECT \"id\" FROM \"%s\") ORDER BY \"id\"",
				 f->name, o->name, f->name, f->name, f->ref);
			owned[nq] = strdup(sql);
			queries[nq] = owned[nq];
			nq++;
		}
		for (q = 0; q < nq; q++) {
			sqlite3_stmt *st = NULL;

			if (sqlite3_prepare_v2(db, queries[q], -1, &st, NULL) != SQLITE_OK)
				sql_die(db, queries[q]);
			while (sqlite3_step(st) == SQLITE_ROW)
				for (c = 0; c < (size_t)sqlite3_column_count(st); c++)
					(void)sqlite3_column_text(st, (int)c);
			sqlite3_finalize(st);
		}
		for (q = 0; q < nq; q++)
			if (q < 60 && queries[q] == owned[q])
				free(owned[q]);
	}
	t0 = now_s() - t0;
	sqlite3_close(db);
	return t0;
}

static double check_run_flags(const bench *b, size_t *violations, unsigned flags)
{
	envdb_ctx *ctx = open_ctx(b);
	envdb_violation **v = NULL;
	size_t n = 0;
	double t0 = now_s(), t;

	if (envdb_check_flags(&v, &n, ctx, flags) != 0)
		die("check");
	t = now_s() - t0;
	envdb_violation_list_free(v, n);
	envdb_close(ctx);
	*violations = n;
	return t;
}

/* envdb check (the default command: every ciphertext opened). */
static double check_run(const bench *b, size_t *violations)
{
	return check_run_flags(b, violations, 0);
}

#define MAX_RUNS 9

int main(void)
{
	const char *env = getenv("BENCH_MIGRATE_ROWS");
	size_t n = env && *env ? (size_t)strtoull(env, NULL, 10) : bench_quick() ? 10000 : 100000,
	       viol = 0, viol2 = 0;
	legacy_gen_opts go = {0};
	legacy_gen_stats gs;
	envdb_migrate_report *rep = NULL, *rep2 = NULL;
	envdb_ctx *ctx;
	bench b;
	double t_seed, t_rerun, ratio, frac, vf[MAX_RUNS], vm[MAX_RUNS], vc[MAX_RUNS],
		vcf[MAX_RUNS], vcn[MAX_RUNS], wm[MAX_RUNS], wf[MAX_RUNS], us_row;
	unsigned long long wb_m = 0, wb_f = 0;
	long long fs_m = 0, fs_f = 0;
	int ok, runs = bench_runs(3), r, rc;
	bench_stats sf, sm, sr, sc, scf, scn, swm, swf, su;
	char cmd[400], title[160], does[768];
	const char *only;

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
	 * re-run and envdb check (with its floor) follow the last migration. */
	if ((only = getenv("BENCH_MIGRATE_ONLY")) != NULL && *only) {
		/* profiling one phase alone (perf record, valgrind): no table */
		restore(&b);
		if (strcmp(only, "floor") == 0)
			printf("floor %.3f s\n", phys_floor_run(&b, n, &wb_f, &fs_f));
		else
			printf("migrate %.3f s\n", migrate_run(&b, &rep, NULL, NULL));
		if (strncmp(only, "check", 5) == 0) {
			if (strcmp(only, "check") == 0)
				printf("check %.3f s (%zu violations)\n", check_run(&b, &viol), viol);
			else if (strcmp(only, "check-no-decrypt") == 0)
				printf("check --no-decrypt %.3f s (%zu violations)\n",
				       check_run_flags(&b, &viol, ENVDB_CHECK_NO_DECRYPT), viol);
			else
				printf("check floor %.3f s\n", check_floor_run(&b));
		}
		envdb_migrate_report_free(rep);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b.dir);
		if (getenv("BENCH_KEEP") == NULL && getenv("ENVDB_BENCH_KEEP") == NULL &&
		    system(cmd) != 0)
			fprintf(stderr, "bench_migrate: could not remove %s\n", b.dir);
		return 0;
	}
	for (r = 0; r < runs; r++) {
		if (r % 2 == 0) {
			restore(&b);
			vf[r] = phys_floor_run(&b, n, &wb_f, &fs_f);
			wf[r] = (double)wb_f / (double)(fs_f ? fs_f : 1);
		}
		restore(&b);
		envdb_migrate_report_free(rep);
		rep = NULL;
		vm[r] = migrate_run(&b, &rep, &wb_m, &fs_m);
		wm[r] = (double)wb_m / (double)(fs_m ? fs_m : 1);
		if (r % 2 == 1) {
			restore(&b);
			vf[r] = phys_floor_run(&b, n, &wb_f, &fs_f);
			wf[r] = (double)wb_f / (double)(fs_f ? fs_f : 1);
		}
	}
	if (runs % 2 == 0) { /* the last run ended with a floor: migrate again */
		restore(&b);
		envdb_migrate_report_free(rep);
		rep = NULL;
		migrate_run(&b, &rep, NULL, NULL);
	}
	t_rerun = migrate_run(&b, &rep2, NULL, NULL);
	for (r = 0; r < runs; r++) {
		if (r % 2 == 0)
			vcf[r] = check_floor_run(&b);
		vc[r] = check_run(&b, &viol);
		vcn[r] = check_run_flags(&b, &viol2, ENVDB_CHECK_NO_DECRYPT);
		if (r % 2 == 1)
			vcf[r] = check_floor_run(&b);
	}
	sf = bench_stats_of(vf, runs);
	sm = bench_stats_of(vm, runs);
	sc = bench_stats_of(vc, runs);
	scf = bench_stats_of(vcf, runs);
	scn = bench_stats_of(vcn, runs);
	swm = bench_stats_of(wm, runs);
	swf = bench_stats_of(wf, runs);

	ratio = sm.median / sf.median;
	frac = t_rerun / sm.median;
	us_row = sm.median * 1e6 / (double)n;
	ok = rep->migrated == n && rep2->already == n && rep2->migrated == 0 && viol == 0 &&
	     viol2 == 0;
	printf("bench_migrate: %zu legacy rows (seeded in %.2f s), %d runs each\n", n, t_seed,
	       runs);
	printf("  physical floor (1 txn, prepared, same AEAD): %8.3f s  %8.1f us/row  "
	       "(min %.3f, max %.3f s); wrote %.1f MB, %.2fx the file (%.1f MB)\n",
	       sf.median, sf.median * 1e6 / (double)n, sf.min, sf.max, (double)wb_f / 1e6,
	       swf.median, (double)fs_f / 1e6);
	printf("  migration:                                    %8.3f s  %8.1f us/row  "
	       "%.2fx floor (target <= 1.50x, <= 30 us/row); wrote %.1f MB, %.2fx the file "
	       "(%.1f MB; target <= 3x)\n",
	       sm.median, us_row, ratio, (double)wb_m / 1e6, swm.median, (double)fs_m / 1e6);
	printf("  re-run:                                       %8.3f s  %8.2f%% of the first "
	       "run (target <= 5%%)\n",
	       t_rerun, 100.0 * frac);
	printf("  envdb check on %zu environments:          %8.3f s (floor %.3f s, %.2fx; "
	       "target < 5 s), %zu violations\n",
	       n, sc.median, scf.median, sc.median / scf.median, viol);
	printf("  envdb check --no-decrypt:                     %8.3f s (floor %.3f s, %.2fx); the "
	       "decryption pass %.3f s, %.1f us per credential\n",
	       scn.median, scf.median, scn.median / scf.median, sc.median - scn.median,
	       (sc.median - scn.median) * 1e6 / (double)n);
	printf("  migrated %zu, already %zu on the re-run: %s\n", rep->migrated, rep2->already,
	       ok ? "PASS" : "FAIL");

	snprintf(title, sizeof(title), "4 migration v4->v5, %zu legacy rows", n);
	snprintf(does, sizeof(does),
		 "the physical work of the first pass: the legacy rows read with one prepared "
		 "SELECT, per row a base64 decode, an XChaCha20-Poly1305 decryption (legacy AAD) "
		 "and encryption (credential AAD) of the same sizes, a base64 encode, the same 4 "
		 "rows inserted and the legacy row archived with prepared statements, in ONE "
		 "transaction (WAL, synchronous=FULL), then the close's checkpoint; no envdb "
		 "store function, plugin or secure memory");
	bench_ratio("migrate", title, "s", &sm, &sf, "floor", does, 1.5);
	su.median = su.min = su.max = us_row;
	su.n = 1;
	snprintf(title, sizeof(title), "4 migration v4->v5: time per legacy row (%zu rows)", n);
	bench_value("migrate_per_row", title, "us/row", &su, BENCH_AT_MOST, 30.0, NULL);
	snprintf(title, sizeof(title), "4 migration v4->v5: bytes written / final file size");
	bench_ratio("migrate_write_volume", title, "x", &swm, &swf, "floor",
		    "the bytes the floor wrote (/proc/self/io write_bytes) over its final file size",
		    0);
	bench_value("migrate_write_volume_abs", "4 migration: written / final file (target)", "x",
		    &swm, BENCH_AT_MOST, 3.0, NULL);
	sr.median = sr.min = sr.max = t_rerun;
	sr.n = 1;
	snprintf(title, sizeof(title), "4 migration re-run (%zu already migrated)", n);
	bench_ratio("migrate_rerun", title, "s", &sr, &sm, "first run",
		    "the first migration of the same rows (its median above)", 0.05);
	snprintf(title, sizeof(title), "4 envdb check, %zu environments (migrated)", n);
	bench_ratio("check", title, "s", &sc, &scf, "floor",
		    "the queries envdb check runs (every row of every object, each unique index's "
		    "duplicate search, each reference's dangling search) stepped bare on a "
		    "connection of its own",
		    0);
	bench_value("check_abs", "4 envdb check at 100k (target)", "s", &sc, BENCH_AT_MOST, 5.0,
		    NULL);
	snprintf(title, sizeof(title), "4 envdb check --no-decrypt, %zu environments", n);
	bench_ratio("check_no_decrypt", title, "s", &scn, &scf, "floor",
		    "the same queries as the check row's floor", 0);
	if (!ok)
		bench_note("migrate: WRONG RESULT: migrated %zu of %zu, re-run found %zu already "
			   "migrated and migrated %zu more, check found %zu violations",
			   rep->migrated, n, rep2->already, rep2->migrated, viol);
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
