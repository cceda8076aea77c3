/*
 * tests/legacy_seed.c — writes a legacy v4 control plane for the migration
 * tests and benchmark (see legacy_seed.h).  The v4 token format is the one
 * core/migrate.h defines: encryptor output sealed with the AAD
 * "sys_tenant_database:" + row id (envdbi_legacy_token_aad).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "legacy_seed.h"
#include "migrate.h"
#include "store.h"

/* ------------------------------------------------------------------------ */
/* Deterministic randomness (splitmix64): same seed, same rows                */
/* ------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A UUID v4 text from the generator. */
static void rng_uuid(char out[37], uint64_t *state)
{
	unsigned char b[16];
	uint64_t a = rng_next(state), c = rng_next(state);
	size_t i, o = 0;

	memcpy(b, &a, 8);
	memcpy(b + 8, &c, 8);
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		snprintf(out + o, 3, "%02x", b[i]);
		o += 2;
	}
	out[36] = '\0';
}

/* ------------------------------------------------------------------------ */
/* One row                                                                   */
/* ------------------------------------------------------------------------ */

static envdbi_plugin *find_encryptor(envdb_ctx *ctx, const char *name)
{
	if (name == NULL)
		name = ctx->manifest->legacy_encryptor;
	if (name == NULL)
		name = ctx->manifest->default_encryptor;
	if (name == NULL)
		return NULL;
	return envdbi_plugins_find(ctx->plugins, name, ENVDB_PLUGIN_ENCRYPTOR);
}

/* Seal `token` with `enc` bound to legacy row `aad_id`; *ct malloc'd. */
static int seal(char **ct, envdbi_plugin *enc, const char *token, const char *aad_id)
{
	char aad[ENVDBI_LEGACY_AAD_MAX];
	size_t aad_len = envdbi_legacy_token_aad(aad, sizeof(aad), aad_id);
	envdbi_secret *pt = NULL;
	char *key_id = NULL;
	int rc;

	if (aad_len == 0)
		return envdbi_error(ENVDB_ERR_INVALID, NULL, "legacy seed: id too long");
	pt = envdbi_secret_new(token, strlen(token));
	if (pt == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "legacy seed: out of secure memory");
	rc = envdbi_encryptor_encrypt(enc, pt, aad, aad_len, ct, &key_id);
	free(key_id);
	envdbi_secret_free(pt);
	return rc;
}

int legacy_seed_row(envdb_ctx *ctx, const char *legacy_encryptor, const legacy_row *r,
		    char id_out[37])
{
	envdbi_tenant_db_row row;
	envdbi_plugin *enc = find_encryptor(ctx, legacy_encryptor);
	char id[37], other[37];
	char *ct = NULL;
	int rc = ENVDB_OK;

	if (ctx == NULL || ctx->store == NULL || r == NULL || r->organization_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "legacy seed: bad arguments");
	if (r->id != NULL)
		snprintf(id, sizeof(id), "%s", r->id);
	else
		envdbi_uuid_new(id);

	switch (r->token_kind) {
	case LEGACY_TOKEN_GOOD:
	case LEGACY_TOKEN_WRONG_AAD:
		if (enc == NULL)
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "legacy seed: no legacy encryptor is loaded");
		envdbi_uuid_new(other);
		rc = seal(&ct, enc, r->token,
			  r->token_kind == LEGACY_TOKEN_GOOD ? id : other);
		break;
	case LEGACY_TOKEN_CURRENT_KEY:
		if (ctx->encryptor == NULL)
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "legacy seed: no current encryptor is loaded");
		rc = seal(&ct, ctx->encryptor, r->token, id);
		break;
	case LEGACY_TOKEN_GARBAGE:
		ct = strdup("v1:nokey:bm90LWEtY2lwaGVydGV4dA");
		if (ct == NULL)
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "legacy seed: out of memory");
		break;
	case LEGACY_TOKEN_PLAINTEXT:
		ct = strdup(r->token);
		if (ct == NULL)
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "legacy seed: out of memory");
		break;
	case LEGACY_TOKEN_NONE:
	default:
		break;
	}
	if (rc != ENVDB_OK)
		goto cleanup;

	memset(&row, 0, sizeof(row));
	row.id = id;
	row.organization_id = (char *)r->organization_id;
	row.database_name = (char *)r->database_name;
	row.database_url = (char *)r->database_url;
	row.auth_token = ct;
	row.status = (char *)(r->status ? r->status : "active");
	row.region = (char *)r->region;
	row.plan = (char *)(r->plan ? r->plan : "free");
	row.storage_limit_mb = r->storage_limit_mb > 0 ? r->storage_limit_mb : 1024;
	row.driver = (char *)r->driver;
	row.created_at = r->created_at > 0 ? r->created_at : envdbi_now();
	row.updated_at = row.created_at;
	rc = envdbi_store_tenant_db_insert(ctx->store, &row, id_out);
cleanup:
	free(ct);
	return rc;
}

int legacy_seed_package(envdb_ctx *ctx, const char *tenant_id, const char *package_id,
			const char *version, char id_out[37])
{
	envdbi_package_row row;

	memset(&row, 0, sizeof(row));
	row.tenant_id = (char *)tenant_id;
	row.package_id = (char *)package_id;
	row.version = (char *)version;
	row.status = (char *)"installed";
	row.created_at = envdbi_now();
	row.updated_at = row.created_at;
	return envdbi_store_package_insert(ctx->store, &row, id_out);
}

/* ------------------------------------------------------------------------ */
/* The generator                                                             */
/* ------------------------------------------------------------------------ */

void legacy_seed_token(char *buf, size_t cap, size_t org_index, size_t n)
{
	snprintf(buf, cap, "tok-org-%06zu-%zu", org_index, n);
}

/* A URL of `driver_kind` (0 file, 1 libsql, 2 https, 3 postgres,
 * 4 postgresql) for database `name`.  For file: URLs an empty file (a valid
 * empty SQLite database) is created in file_dir. */
static int make_url(char *url, size_t cap, int driver_kind, const char *file_dir,
		    const char *name)
{
	switch (driver_kind) {
	case 0:
		if (file_dir == NULL) {
			snprintf(url, cap, "file:/nonexistent/%s.db", name);
		} else {
			int fd;

			snprintf(url, cap, "file:%s/%s.db", file_dir, name);
			fd = open(url + 5, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
			if (fd < 0)
				return envdbi_error(ENVDB_ERR_IO, NULL,
						    "legacy seed: create %s: %s", url + 5,
						    strerror(errno));
			close(fd);
		}
		break;
	case 1:
		snprintf(url, cap, "libsql://%s-acme.turso.io", name);
		break;
	case 2:
		snprintf(url, cap, "https://%s-acme.turso.io", name);
		break;
	case 3:
		snprintf(url, cap, "postgres://db.example.com:5432/%s", name);
		break;
	default:
		snprintf(url, cap, "postgresql://db.example.com/%s?sslmode=require", name);
		break;
	}
	return ENVDB_OK;
}

/* Rows of organization i: how many, and for row n its status, token kind,
 * URL kind (-1: unknown scheme). */
typedef struct row_plan {
	const char *status;
	int token_kind;
	int url_kind;
	const char *region, *plan;
} row_plan;

static size_t plan_org(row_plan *rp, size_t i, int mixed)
{
	size_t k = i % 20, n = 1, j;
	int url = (int)((i + i / 20) % 5);

	for (j = 0; j < 3; j++) {
		rp[j].status = "active";
		rp[j].token_kind = LEGACY_TOKEN_GOOD;
		rp[j].url_kind = (url + (int)j) % 5;
		rp[j].region = NULL;
		rp[j].plan = NULL;
	}
	if (!mixed) {
		rp[0].url_kind = 0;
		return 1;
	}
	switch (k) {
	case 10:
		n = 2;
		break;
	case 11:
		n = 3;
		break;
	case 12:
		rp[0].status = "suspended";
		break;
	case 13:
		rp[0].token_kind = (i / 20) % 2 ? LEGACY_TOKEN_CURRENT_KEY : LEGACY_TOKEN_WRONG_AAD;
		break;
	case 14:
		rp[0].url_kind = -1;
		break;
	case 15:
		rp[0].status = "archived";
		break;
	case 16:
		n = 2;
		rp[1].status = "archived";
		break;
	case 17:
		rp[0].token_kind = LEGACY_TOKEN_GARBAGE;
		break;
	case 18:
		rp[0].region = "eu-west";
		rp[0].plan = "pro";
		break;
	case 19:
		rp[0].region = "us-east";
		rp[0].plan = "enterprise";
		break;
	default:
		break;
	}
	return n;
}

int legacy_seed_generate(legacy_gen_stats *stats, envdb_ctx *ctx, const legacy_gen_opts *opts)
{
	uint64_t rng;
	legacy_gen_stats st;
	size_t i, n, j, p;
	int rc = ENVDB_OK, in_tx = 0;

	memset(&st, 0, sizeof(st));
	if (ctx == NULL || ctx->store == NULL || opts == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "legacy seed: bad arguments");
	rng = opts->seed;
	if ((rc = envdbi_store_begin(ctx->store)) != ENVDB_OK)
		return rc;
	in_tx = 1;
	for (i = 0; i < opts->n_orgs; i++) {
		row_plan rp[3];
		char org[32];
		int good = 0, bad = 0;

		snprintf(org, sizeof(org), "org-%06zu", i);
		n = plan_org(rp, i, opts->mixed);
		for (j = 0; j < n; j++) {
			legacy_row r;
			char id[37], name[64], url[512], token[64];
			size_t n_pkg = opts->mixed ? (i + j) % 4 : 0;

			rng_uuid(id, &rng);
			snprintf(name, sizeof(name), "tenant_%06zu_%zu", i, j);
			if (rp[j].url_kind < 0)
				snprintf(url, sizeof(url), "mysql://db.example.com/%s", name);
			else if ((rc = make_url(url, sizeof(url), rp[j].url_kind, opts->file_dir,
						name)) != ENVDB_OK)
				goto done;
			legacy_seed_token(token, sizeof(token), i, j);
			memset(&r, 0, sizeof(r));
			r.id = id;
			r.organization_id = org;
			r.database_name = name;
			r.database_url = url;
			r.token = token;
			r.token_kind = rp[j].token_kind;
			r.status = rp[j].status;
			r.region = rp[j].region;
			r.plan = rp[j].plan;
			r.storage_limit_mb = 512 + (int64_t)(i % 7) * 256;
			/* later rows are older: "oldest first" is not "first inserted" */
			r.created_at = 1600000000 + (int64_t)i * 100 - (int64_t)j * 10;
			if ((rc = legacy_seed_row(ctx, opts->legacy_encryptor, &r, NULL)) != ENVDB_OK)
				goto done;
			st.rows++;
			for (p = 0; p < n_pkg; p++) {
				char pkg[32], ver[32];

				snprintf(pkg, sizeof(pkg), "pkg-%c", (int)('a' + p));
				snprintf(ver, sizeof(ver), "1.%zu.%zu", p, j);
				if ((rc = legacy_seed_package(ctx, id, pkg, ver, NULL)) != ENVDB_OK)
					goto done;
				st.packages++;
			}
			if (strcmp(rp[j].status, "archived") == 0)
				continue;
			if (rp[j].token_kind != LEGACY_TOKEN_GOOD || rp[j].url_kind < 0)
				bad = 1;
			else
				good++;
		}
		st.orgs++;
		if (bad) {
			st.orgs_bad++;
		} else if (good > 0) {
			st.orgs_good++;
			st.rows_good += (size_t)good;
		} else {
			st.orgs_skipped++;
		}
	}
	rc = envdbi_store_commit(ctx->store);
	in_tx = 0;
done:
	if (in_tx)
		envdbi_store_rollback(ctx->store);
	if (rc == ENVDB_OK && stats != NULL)
		*stats = st;
	return rc;
}
