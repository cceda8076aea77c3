/*
 * tests/fuzz/fuzz_legacy.c — libFuzzer harness of the v4 -> v5 migration's
 * reading of legacy rows (core/migrate.c): the input describes one to three
 * sys_tenant_database rows (and a package installation each), written
 * straight into the control plane with SQL as a v4 deployment may have
 * left them — any organization id, name, URL, status, region, plan, token,
 * size, driver — and the migration runs over them, as a dry run and for
 * real.  It must never crash or leak, and afterwards `envdb check` must be
 * clean: every row either became a consistent environment or was refused
 * with a reason.  The URL-scheme mapping and the token AAD are also fed
 * directly.
 *
 * Input: rows separated by 0x1e; fields of a row by '\n': organization,
 * database name, URL, status, region, plan, token, storage MB, driver.  A
 * token "@good:TEXT" is sealed with the legacy key and the row's AAD (so
 * the path through decryption and re-encryption is reached).  Seeds:
 * corpus/legacy/.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "internal.h"
#include "migrate.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static envdb_ctx *ctx;
static sqlite3 *raw;

static void setup(void)
{
	char dir[] = "/tmp/envdb-fuzz-legacy-XXXXXX", man[128], *key = NULL;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		abort();
	setenv("ENVDB_LOG_LEVEL", "error", 1);
	snprintf(man, sizeof(man), "%s/envdb.yaml", dir);
	f = fopen(man, "w");
	if (f == NULL)
		abort();
	fputs("version: 1\n"
	      "control_plane: control.db\n"
	      "defaults:\n"
	      "  encryptor: kms\n"
	      "legacy:\n"
	      "  register_shim: true\n"
	      "plugins:\n"
	      "  - name: kms\n"
	      "    kind: encryptor\n"
	      "    config:\n"
	      "      keyring_dir: keyring\n"
	      /* loaded for the whole run, so that the migration's url_schemes
	       * scan finds it loaded and never maps and unmaps it per input
	       * (libFuzzer reads the counters of every module once mapped) */
	      "  - name: sqlite\n"
	      "    kind: adapter\n"
	      "    config:\n"
	      "      base_dir: environments\n",
	      f);
	fclose(f);
	{
		char envs[160];

		snprintf(envs, sizeof(envs), "%s/environments", dir);
		if (mkdir(envs, 0700) != 0)
			abort();
	}
	if (envdb_open(&ctx, man, ENVDB_OPEN_CREATE) != ENVDB_OK ||
	    envdb_key_generate(&key, ctx, NULL, 1) != ENVDB_OK) {
		fprintf(stderr, "fuzz_legacy: %s (is ENVDB_PLUGIN_DIR set?)\n",
			envdb_error_last()->message);
		abort();
	}
	envdb_free(key);
	snprintf(man, sizeof(man), "%s/control.db", dir);
	if (sqlite3_open(man, &raw) != SQLITE_OK)
		abort();
	sqlite3_busy_timeout(raw, 5000);
}

/* field i of a '\n'-separated row (NULL when absent or "-") */
static char *field(char *row, int i)
{
	char *p = row, *nl;
	int k;

	for (k = 0; k < i; k++) {
		nl = strchr(p, '\n');
		if (nl == NULL)
			return NULL;
		p = nl + 1;
	}
	nl = strchr(p, '\n');
	if (nl != NULL)
		*nl = '\0';
	return strcmp(p, "-") == 0 ? NULL : p;
}

static void insert_row(char *row, int n)
{
	char copy[4096], id[37], pkg[37], *tok = NULL;
	const char *org, *name, *url, *status, *region, *plan, *token, *mb, *driver;
	sqlite3_stmt *st = NULL;
	size_t len = strlen(row);

	if (len >= sizeof(copy))
		return;
#define F(i) (memcpy(copy, row, len + 1), field(copy, i))
	org = F(0) ? strdup(F(0)) : NULL;
	name = F(1) ? strdup(F(1)) : NULL;
	url = F(2) ? strdup(F(2)) : NULL;
	status = F(3) ? strdup(F(3)) : NULL;
	region = F(4) ? strdup(F(4)) : NULL;
	plan = F(5) ? strdup(F(5)) : NULL;
	token = F(6) ? strdup(F(6)) : NULL;
	mb = F(7) ? strdup(F(7)) : NULL;
	driver = F(8) ? strdup(F(8)) : NULL;
#undef F
	envdbi_uuid_new(id);
	if (token != NULL && strncmp(token, "@good:", 6) == 0) {
		char aad[ENVDBI_LEGACY_AAD_MAX], *kid = NULL;
		size_t aad_len = envdbi_legacy_token_aad(aad, sizeof(aad), id);
		envdbi_secret *s = envdbi_secret_new(token + 6, strlen(token + 6));

		if (s != NULL && aad_len > 0)
			(void)envdbi_encryptor_encrypt(ctx->encryptor, s, aad, aad_len, &tok, &kid);
		envdbi_secret_free(s);
		free(kid);
	}
	if (sqlite3_prepare_v2(raw,
			       "INSERT INTO sys_tenant_database (id, organization_id, database_name,"
			       " database_url, auth_token, status, region, plan, storage_limit_mb,"
			       " driver, created_at, updated_at)"
			       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
			       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, org ? org : "org", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, url, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, tok ? tok : token, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, status ? status : "active", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 7, region, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 8, plan ? plan : "free", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 9, mb ? strtoll(mb, NULL, 10) : 1024);
		sqlite3_bind_text(st, 10, driver, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 11, 1000 + n);
		sqlite3_bind_int64(st, 12, 1000 + n);
		(void)sqlite3_step(st);
	}
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(raw,
			       "INSERT INTO sys_package_installation (id, tenant_id, package_id,"
			       " version, status, created_at, updated_at)"
			       " VALUES (?,?, 'crm', '1.0', 'installed', 1, 1)",
			       -1, &st, NULL) == SQLITE_OK) {
		envdbi_uuid_new(pkg);
		sqlite3_bind_text(st, 1, pkg, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
		(void)sqlite3_step(st);
	}
	sqlite3_finalize(st);
	free(tok);
	free((void *)org);
	free((void *)name);
	free((void *)url);
	free((void *)status);
	free((void *)region);
	free((void *)plan);
	free((void *)token);
	free((void *)mb);
	free((void *)driver);
}

static void wipe(void)
{
	if (sqlite3_exec(raw,
			 "PRAGMA foreign_keys = ON;"
			 "DELETE FROM sys_package_installation; DELETE FROM sys_tenant_database;"
			 "DELETE FROM sys_database_credential; DELETE FROM sys_environment_member;"
			 "DELETE FROM sys_environment_database; DELETE FROM sys_environment;",
			 NULL, NULL, NULL) != SQLITE_OK)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
	envdb_migrate_report *rep = NULL;
	envdb_violation **v = NULL;
	char *buf, *row, *next, aad[ENVDBI_LEGACY_AAD_MAX];
	const char *driver;
	size_t n_v = 0;
	int n = 0;

	if (ctx == NULL)
		setup();
	if (size < 1 || size > 8192)
		return 0;
	buf = malloc(size);
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	/* the pure helpers, on the raw text */
	(void)envdbi_migrate_driver_of_url(NULL, &driver, buf);
	(void)envdbi_legacy_token_aad(aad, sizeof(aad), buf);
	for (row = buf; row != NULL && n < 3; row = next, n++) {
		next = strchr(row, 0x1e);
		if (next != NULL)
			*next++ = '\0';
		insert_row(row, n);
	}
	o.dry_run = !(data[0] & 1);
	o.batch = 1 + data[0] % 3;
	o.by = (data[0] & 2) ? "alice" : NULL;
	if (envdb_migrate_v4_to_v5(&rep, ctx, &o) == ENVDB_OK && rep == NULL)
		abort();
	envdb_migrate_report_free(rep);
	/* whatever came in, the control plane stays consistent */
	if (envdb_check(&v, &n_v, ctx) != ENVDB_OK)
		abort();
	/* (the legacy rows themselves may be anything a v4 deployment held:
	 * only what the migration wrote is judged) */
	for (size_t i = 0; i < n_v; i++)
		if (strncmp(v[i]->object, "sys_tenant_database", 19) != 0 &&
		    strncmp(v[i]->object, "sys_package_installation", 24) != 0) {
			fprintf(stderr, "fuzz_legacy: violation %s %s: %s\n", v[i]->object,
				v[i]->invariant, v[i]->message);
			abort();
		}
	envdb_violation_list_free(v, n_v);
	wipe();
	free(buf);
	return 0;
}
