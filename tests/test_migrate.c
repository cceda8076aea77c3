/*
 * tests/test_migrate.c — the v4 → v5 migration (core/migrate.c,
 * core/MIGRATION.md) on real control-plane files with the real sqlite and
 * kms plugins: a seeded legacy control plane (tests/legacy_seed.c: mixed
 * drivers, several rows per organization, bad ciphertexts, an unknown URL
 * scheme, package installations, v5 data in the way) migrates as
 * specified; a second run changes nothing; a dry run leaves the file
 * byte-identical and reports what the real run does; SIGKILL at random
 * moments and at every failpoint followed by a re-run gives exactly the
 * state of an uninterrupted run (compared as a canonical dump without
 * generated ids and timestamps); envdb check is clean and envdb resolve
 * returns the original legacy token; the command's JSON report and exit
 * status.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "failpoint.h"
#include "internal.h"
#include "legacy_seed.h"
#include "migrate.h"
#include "store.h"
#include "store_matrix.h"

/* ------------------------------------------------------------------------ */
/* Fixture: a deployment directory with a manifest, two keyrings, a store    */
/* ------------------------------------------------------------------------ */

typedef struct fx {
	char dir[256];
	char manifest[320];
	char control[320];
	char pristine[320]; /* copy of the seeded control plane */
	char legacy_dir[320];
	legacy_gen_stats stats;
} fx;

static bool under_valgrind(void)
{
	const char *v = getenv("ENVDB_VALGRIND");
	return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

static void write_manifest(fx *f, bool shim)
{
	FILE *fp = fopen(f->manifest, "w");

	ck_assert_msg(fp != NULL, "cannot write %s: %s", f->manifest, strerror(errno));
	fputs("version: 1\n", fp);
	sm_manifest_control_plane(fp);
	fprintf(fp,
		"defaults:\n"
		"  driver: sqlite\n"
		"  encryptor: kms\n"
		"  plan: free\n"
		"  storage_limit_mb: 2048\n"
		"legacy:\n"
		"  register_shim: %s\n"
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
		shim ? "true" : "false");
	ck_assert_int_eq(fclose(fp), 0);
}

static envdb_ctx *fx_open(fx *f)
{
	envdb_ctx *ctx = NULL;
	int rc = envdb_open(&ctx, f->manifest, ENVDB_OPEN_CREATE);

	ck_assert_msg(rc == 0, "envdb_open: %s", envdb_error_last()->message);
	return ctx;
}

static void fx_init(fx *f, bool shim)
{
	const char *tmp = getenv("TMPDIR");
	envdb_ctx *ctx;
	char *key = NULL;

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "%s/envdb-migrate-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	snprintf(f->manifest, sizeof(f->manifest), "%s/envdb.yaml", f->dir);
	sm_fresh(f->dir);
	snprintf(f->control, sizeof(f->control), "%s", sm_name());
	snprintf(f->pristine, sizeof(f->pristine), "%s/pristine.db", f->dir);
	snprintf(f->legacy_dir, sizeof(f->legacy_dir), "%s/v4-databases", f->dir);
	ck_assert_int_eq(mkdir(f->legacy_dir, 0700), 0);
	write_manifest(f, shim);
	ctx = fx_open(f);
	ck_assert_msg(envdb_key_generate(&key, ctx, "kms", 1) == 0, "key: %s",
		      envdb_error_last()->message);
	envdb_free(key);
	ck_assert_msg(envdb_key_generate(&key, ctx, "legacy_kms", 1) == 0, "legacy key: %s",
		      envdb_error_last()->message);
	envdb_free(key);
	envdb_close(ctx);
}

static void rm_rf(const char *path)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", path);
}

static void fx_done(fx *f)
{
	if (getenv("ENVDB_TEST_KEEP") == NULL)
		rm_rf(f->dir);
}

/* Read a whole file; *len its size.  malloc'd. */
static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	ck_assert_msg(fp != NULL, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	ck_assert_int_ge(n, 0);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static void copy_file(const char *from, const char *to)
{
	size_t n;
	char *buf = slurp(from, &n);
	FILE *fp = fopen(to, "wb");

	ck_assert_ptr_nonnull(fp);
	ck_assert_uint_eq(fwrite(buf, 1, n, fp), n);
	ck_assert_int_eq(fclose(fp), 0);
	free(buf);
}

#ifdef HAVE_STORE_PG
/* PostgreSQL: run a PL/pgSQL block as the cluster's superuser that copies
 * every table of schema `from` into schema `to` (made, or emptied, first),
 * with triggers and foreign keys off while it copies (replica role). */
static void pg_copy_schema(const char *from, const char *to, bool create)
{
	char sql[2048], err[512];

	snprintf(sql, sizeof sql,
		 "SET session_replication_role = replica; DO $$ DECLARE t record; BEGIN "
		 "IF %s THEN EXECUTE format('DROP SCHEMA IF EXISTS %%I CASCADE', '%s'); "
		 "EXECUTE format('CREATE SCHEMA %%I', '%s'); END IF; "
		 "FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = '%s' LOOP "
		 "IF %s THEN EXECUTE format('CREATE TABLE %%I.%%I (LIKE %%I.%%I)', "
		 "'%s', t.tablename, '%s', t.tablename); "
		 "ELSE EXECUTE format('DELETE FROM %%I.%%I', '%s', t.tablename); END IF; "
		 "EXECUTE format('INSERT INTO %%I.%%I SELECT * FROM %%I.%%I', '%s', "
		 "t.tablename, '%s', t.tablename); END LOOP; END $$",
		 create ? "true" : "false", to, to, from, create ? "true" : "false", to, from, to,
		 to, from);
	ck_assert_msg(sm_pg_exec_super(sql, err, sizeof err) == 0, "copy schema %s -> %s: %s", from,
		      to, err);
}
#endif

/* Keep a copy of the seeded control plane (no context may be open): the
 * file, or (PostgreSQL) every table of the schema in a sibling schema. */
static void fx_snapshot(fx *f)
{
	if (sm_pg()) {
#ifdef HAVE_STORE_PG
		char to[400];

		snprintf(to, sizeof to, "%s_pristine", f->control);
		pg_copy_schema(f->control, to, true);
#endif
		return;
	}
	copy_file(f->control, f->pristine);
}

/* Put the seeded control plane back (no context may be open). */
static void fx_restore(fx *f)
{
	char side[400];

	if (sm_pg()) {
#ifdef HAVE_STORE_PG
		snprintf(side, sizeof side, "%s_pristine", f->control);
		pg_copy_schema(side, f->control, false);
#endif
		return;
	}

	snprintf(side, sizeof(side), "%s-wal", f->control);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", f->control);
	unlink(side);
	copy_file(f->pristine, f->control);
}

/* Seed n_orgs organizations of the mix, then keep a pristine copy.  The
 * close checkpoints the WAL, so control.db alone is the whole state. */
static void fx_seed(fx *f, size_t n_orgs, void (*extra)(fx *f, envdb_ctx *ctx))
{
	legacy_gen_opts o = {0};
	envdb_ctx *ctx = fx_open(f);
	int rc;

	o.n_orgs = n_orgs;
	o.seed = 42;
	o.mixed = 1;
	o.file_dir = f->legacy_dir;
	rc = legacy_seed_generate(&f->stats, ctx, &o);
	ck_assert_msg(rc == 0, "seed: %s", envdb_error_last()->message);
	if (extra != NULL)
		extra(f, ctx);
	envdb_close(ctx);
	fx_snapshot(f);
}

/* ------------------------------------------------------------------------ */
/* Canonical dump: every control-plane row, generated ids replaced by        */
/* stable names, timestamps left out, credentials by their plaintext         */
/* ------------------------------------------------------------------------ */

typedef struct sbuf {
	char *s;
	size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) ENVDB_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		ck_assert_int_ge(n, 0);
		if (b->s != NULL && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		b->cap = (b->cap + (size_t)n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		ck_assert_ptr_nonnull(b->s);
	}
}

static const char *nz(const char *s)
{
	return s ? s : "-";
}

/* "env:ORG/SLUG" of an environment id, or the id itself. */
static const char *env_label(envdb_environment **envs, size_t n, const char *id, char *buf,
			     size_t cap)
{
	size_t i;

	for (i = 0; id != NULL && i < n; i++)
		if (strcmp(envs[i]->id, id) == 0) {
			snprintf(buf, cap, "env:%s/%s", envs[i]->organization_id, envs[i]->slug);
			return buf;
		}
	return nz(id);
}

static char *dump_store(envdb_ctx *ctx)
{
	envdbi_store *s = ctx->store;
	envdb_environment **envs = NULL;
	envdb_database **dbs = NULL;
	envdb_credential **creds = NULL;
	envdb_member **mems = NULL;
	envdbi_tenant_db_row **tdb = NULL;
	envdbi_package_row **pk = NULL;
	size_t ne = 0, nd = 0, nc = 0, nm = 0, nt = 0, np = 0, i, j;
	char l1[400], l2[400];
	sbuf b = {0};

	ck_assert_int_eq(envdbi_store_env_list(s, &envs, &ne, NULL), 0);
	ck_assert_int_eq(envdbi_store_db_list(s, &dbs, &nd), 0);
	ck_assert_int_eq(envdbi_store_cred_list(s, &creds, &nc, NULL), 0);
	ck_assert_int_eq(envdbi_store_member_list(s, &mems, &nm, NULL), 0);
	ck_assert_int_eq(envdbi_store_tenant_db_list(s, &tdb, &nt, NULL), 0);
	ck_assert_int_eq(envdbi_store_package_list(s, &pk, &np, NULL), 0);

	for (i = 0; i < ne; i++) {
		const envdb_environment *e = envs[i];
		sb_printf(&b, "environment %s/%s name=%s type=%s default=%d region=%s plan=%s "
			      "status=%s by=%s meta=%s\n",
			  e->organization_id, e->slug, e->display_name, e->env_type, e->is_default,
			  nz(e->region), e->plan, e->status, nz(e->created_by), nz(e->metadata));
	}
	for (i = 0; i < nd; i++) {
		const envdb_database *d = dbs[i];
		sb_printf(&b, "database %s of %s url=%s driver=%s region=%s limit=%lld meta=%s\n",
			  d->database_name, env_label(envs, ne, d->environment_id, l1, sizeof(l1)),
			  d->database_url, d->driver, nz(d->region), (long long)d->storage_limit_mb,
			  nz(d->metadata));
	}
	for (i = 0; i < nc; i++) {
		const envdb_credential *c = creds[i];
		const char *dbn = c->environment_database_id;
		const envdb_database *cd = NULL;
		envdbi_secret *pt = NULL;

		for (j = 0; j < nd; j++)
			if (strcmp(dbs[j]->id, c->environment_database_id) == 0) {
				dbn = dbs[j]->database_name;
				cd = dbs[j];
			}
		ck_assert_ptr_nonnull(cd);
		ck_assert_int_eq(c->aad_version, ENVDB_CREDENTIAL_AAD_VERSION);
		ck_assert_msg(envdbi_credential_open(&pt, ctx, c, cd) == 0, "open credential: %s",
			      envdb_error_last()->message);
		sb_printf(&b, "credential of %s auth=%s status=%s key=%s handle=%s secret=%s\n", dbn,
			  c->authorization, c->status, c->key_id, nz(c->handle), pt->data);
		envdbi_secret_free(pt);
	}
	for (i = 0; i < nm; i++)
		sb_printf(&b, "member %s of %s role=%s\n", mems[i]->user_id,
			  env_label(envs, ne, mems[i]->environment_id, l1, sizeof(l1)),
			  mems[i]->role);
	for (i = 0; i < nt; i++) {
		const envdbi_tenant_db_row *t = tdb[i];
		sb_printf(&b, "legacy %s org=%s name=%s url=%s token=%s status=%s region=%s "
			      "plan=%s limit=%lld driver=%s migrated=%s\n",
			  t->id, t->organization_id, t->database_name, t->database_url,
			  nz(t->auth_token), t->status, nz(t->region), t->plan,
			  (long long)t->storage_limit_mb, nz(t->driver),
			  env_label(envs, ne, t->migrated_environment_id, l1, sizeof(l1)));
	}
	for (i = 0; i < np; i++)
		sb_printf(&b, "package %s tenant=%s pkg=%s version=%s status=%s\n", pk[i]->id,
			  env_label(envs, ne, pk[i]->tenant_id, l2, sizeof(l2)), pk[i]->package_id,
			  pk[i]->version, pk[i]->status);

	envdb_environment_list_free(envs, ne);
	envdb_database_list_free(dbs, nd);
	envdb_credential_list_free(creds, nc);
	envdb_member_list_free(mems, nm);
	envdbi_tenant_db_list_free(tdb, nt);
	envdbi_package_list_free(pk, np);
	if (b.s == NULL)
		sb_printf(&b, "%s", "");
	return b.s;
}

static int cmp_line(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The dump with its lines sorted: row order in the store follows generated
 * ids, which differ from run to run. */
static char *sort_lines(char *text)
{
	size_t n = 0, i, len = strlen(text);
	char **lines, *p, *out;

	for (p = text; *p; p++)
		n += *p == '\n';
	lines = calloc(n + 1, sizeof(*lines));
	ck_assert_ptr_nonnull(lines);
	n = 0;
	for (p = strtok(text, "\n"); p != NULL; p = strtok(NULL, "\n"))
		lines[n++] = p;
	qsort(lines, n, sizeof(*lines), cmp_line);
	out = malloc(len + 2);
	ck_assert_ptr_nonnull(out);
	out[0] = '\0';
	p = out;
	for (i = 0; i < n; i++) {
		size_t l = strlen(lines[i]);
		memcpy(p, lines[i], l);
		p[l] = '\n';
		p += l + 1;
	}
	*p = '\0';
	free(lines);
	free(text);
	return out;
}

static char *fx_dump(fx *f)
{
	envdb_ctx *ctx = fx_open(f);
	char *d = sort_lines(dump_store(ctx));

	envdb_close(ctx);
	return d;
}

/* Fail with the first differing line of two dumps. */
static void assert_same_dump(const char *want, const char *got, const char *what)
{
	const char *a = want, *b = got;

	while (*a && *b) {
		const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
		size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);

		if (la != lb || memcmp(a, b, la) != 0)
			ck_abort_msg("%s: dumps differ:\n  want: %.*s\n  got:  %.*s", what, (int)la, a,
				     (int)lb, b);
		a += la + (ea ? 1 : 0);
		b += lb + (eb ? 1 : 0);
	}
	ck_assert_msg(*a == '\0' && *b == '\0', "%s: dumps differ in length (%zu vs %zu bytes)",
		      what, strlen(want), strlen(got));
}

/* ------------------------------------------------------------------------ */
/* Running the migration                                                     */
/* ------------------------------------------------------------------------ */

static envdb_migrate_report *run_migrate(fx *f, int dry_run, size_t batch, const char *by)
{
	envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
	envdb_migrate_report *rep = NULL;
	envdb_ctx *ctx = fx_open(f);
	int rc;

	o.dry_run = dry_run;
	o.batch = batch;
	o.by = by;
	rc = envdb_migrate_v4_to_v5(&rep, ctx, &o);
	ck_assert_msg(rc == 0, "migrate: %s", envdb_error_last()->message);
	ck_assert_ptr_nonnull(rep);
	ck_assert_int_eq(rep->stopped_status, 0);
	envdb_close(ctx);
	return rep;
}

static const envdb_migrate_org *find_org(const envdb_migrate_report *r, const char *org)
{
	size_t i;

	for (i = 0; i < r->n_orgs; i++)
		if (strcmp(r->orgs[i].organization_id, org) == 0)
			return &r->orgs[i];
	return NULL;
}

static void assert_check_clean(fx *f)
{
	envdb_violation **v = NULL;
	size_t n = 0, i;
	envdb_ctx *ctx = fx_open(f);

	ck_assert_msg(envdb_check(&v, &n, ctx) == 0, "check: %s", envdb_error_last()->message);
	for (i = 0; i < n; i++)
		fprintf(stderr, "violation %s %s [%s]: %s\n", v[i]->object, v[i]->invariant,
			v[i]->row_ids, v[i]->message);
	ck_assert_uint_eq(n, 0);
	envdb_violation_list_free(v, n);
	envdb_close(ctx);
}

/* ------------------------------------------------------------------------ */
/* Unit: the URL scheme → driver mapping and the legacy AAD                  */
/* ------------------------------------------------------------------------ */

/* The adapters of the build (sqlite always; postgres and turso when built),
 * loaded without init: the descriptors' url_schemes are what counts. */
static envdbi_plugins *scheme_adapters(envdbi_manifest **mf, bool *pg, bool *turso)
{
	const char *dir = getenv("ENVDB_PLUGIN_DIR");
	char text[2048], path[PATH_MAX], so[PATH_MAX];
	envdbi_plugins *set = NULL;
	const char *tmp = getenv("TMPDIR");
	FILE *f;
	int n;

	ck_assert_ptr_nonnull(dir);
	snprintf(so, sizeof(so), "%s/postgres.so", dir);
	*pg = access(so, R_OK) == 0;
	snprintf(so, sizeof(so), "%s/turso.so", dir);
	*turso = access(so, R_OK) == 0;
	setenv("ENVDB_TEST_SCHEME_SECRET", "x", 1);
	n = snprintf(text, sizeof(text),
		     "version: 1\nplugins:\n  - {name: sqlite, kind: adapter, config: {base_dir: /nowhere}}\n"
		     "%s%s",
		     *pg ? "  - {name: postgres, kind: adapter, config: "
			   "{admin_conninfo_env: ENVDB_TEST_SCHEME_SECRET}}\n"
			 : "",
		     *turso ? "  - {name: turso, kind: adapter, config: {organization: o, "
			      "api_token_env: ENVDB_TEST_SCHEME_SECRET}}\n"
			    : "");
	ck_assert_int_lt(n, (int)sizeof(text));
	snprintf(path, sizeof(path), "%s/envdb-schemes-%ld.yaml", tmp && tmp[0] ? tmp : "/tmp",
		 (long)getpid());
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_msg(envdbi_manifest_load(mf, path) == 0, "%s", envdb_error_last()->message);
	remove(path);
	ck_assert_msg(envdbi_plugins_load_ex(&set, *mf, ENVDBI_LOAD_NO_INIT) == 0, "%s",
		      envdb_error_last()->message);
	return set;
}

START_TEST(test_driver_of_url)
{
	static const struct {
		const char *url, *driver;
	} ok[] = {
		{"libsql://db-acme.turso.io", "turso"},
		{"LIBSQL://db-acme.turso.io", "turso"},
		{"https://db-acme.turso.io", "turso"},
		{"file:/var/lib/v4/acme.db", "sqlite"},
		{"file:///var/lib/v4/acme.db", "sqlite"},
		{"postgres://db.example.com:5432/acme", "postgres"},
		{"postgresql://app@db.example.com/acme?sslmode=require", "postgres"},
	};
	static const char *const bad[] = {
		"mysql://db/acme", "http://db-acme.turso.io", "acme.db", "", "://x",
		"postgres://user:hunter2@db/acme", "libsql://", "sqlite:acme.db", "1http://x",
		/* a secret in the query string would reach database_url in clear */
		"libsql://db-acme.turso.io?authToken=hunter2",
		"https://db-acme.turso.io/?tls=1&authtoken=hunter2",
		"postgres://app@db/acme?sslmode=require&password=hunter2",
		"postgresql://db/acme?PASSWORD=hunter2#x", "file:/v4/acme.db?token=hunter2",
	};
	const char *d;
	char aad[ENVDBI_LEGACY_AAD_MAX];
	envdbi_manifest *mf = NULL;
	envdbi_plugins *set;
	bool pg, turso;
	size_t i;

	set = scheme_adapters(&mf, &pg, &turso);
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int rc = envdbi_migrate_driver_of_url(set, &d, ok[i].url);
		if ((strcmp(ok[i].driver, "postgres") == 0 && !pg) ||
		    (strcmp(ok[i].driver, "turso") == 0 && !turso)) {
			/* not built: no adapter serves the scheme */
			ck_assert_int_eq(rc, ENVDB_ERR_INVALID);
			ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "no loaded or installed adapter serves it"));
			continue;
		}
		ck_assert_msg(rc == 0, "%s: %s", ok[i].url, envdb_error_last()->message);
		ck_assert_str_eq(d, ok[i].driver);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(envdbi_migrate_driver_of_url(set, &d, bad[i]), ENVDB_ERR_INVALID);
		ck_assert_ptr_null(d);
	}
	/* the choice comes from the descriptors: without adapters, nothing */
	ck_assert_int_eq(envdbi_migrate_driver_of_url(NULL, &d, "file:/v4/acme.db"),
			 ENVDB_ERR_INVALID);
	ck_assert_str_eq(envdb_error_last()->message,
			 "url: unknown scheme 'file': no loaded or installed adapter serves it");
	/* never the password in the message */
	envdbi_migrate_driver_of_url(set, &d, "postgres://user:hunter2@db/acme");
	ck_assert_ptr_null(strstr(envdb_error_last()->message, "hunter2"));
	envdbi_migrate_driver_of_url(set, &d, "libsql://db-acme.turso.io?authToken=hunter2");
	ck_assert_ptr_null(strstr(envdb_error_last()->message, "hunter2"));
	envdbi_plugins_free(set);
	envdbi_manifest_free(mf);

	ck_assert_uint_eq(envdbi_legacy_token_aad(aad, sizeof(aad),
						  "3f0c8a3e-1111-4222-8333-444455556666"),
			  strlen("sys_tenant_database:3f0c8a3e-1111-4222-8333-444455556666"));
	ck_assert_str_eq(aad, "sys_tenant_database:3f0c8a3e-1111-4222-8333-444455556666");
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The mix migrates as specified; a second run is a no-op                    */
/* ------------------------------------------------------------------------ */

#define MIX_ORGS 40 /* every kind of the generator twice */

/* v5 data in the way, added after seeding:
 *   org-000001: a default environment provisioned in v5        -> conflict
 *   org-000002: a non-default v5 environment with slug "prod"  -> conflict
 *   org-000003: its legacy database name registered in v5      -> conflict
 *   org-000004: a non-default v5 "dev" environment             -> migrates */
static void add_v5_data(fx *f, envdb_ctx *ctx)
{
	envdb_provision_opts po = ENVDB_PROVISION_OPTS_INIT;
	envdb_environment e;
	envdb_database d;
	char env_id[37], db_id[37];
	int rc;

	(void)f;
	po.created_by = "bob";
	rc = envdb_org_provision(NULL, ctx, "org-000001", NULL, &po);
	ck_assert_msg(rc == 0, "provision: %s", envdb_error_last()->message);
	po.env_type = "development";
	rc = envdb_env_provision(NULL, ctx, "org-000002", "prod", &po);
	ck_assert_msg(rc == 0, "provision: %s", envdb_error_last()->message);
	rc = envdb_env_provision(NULL, ctx, "org-000004", "dev", &po);
	ck_assert_msg(rc == 0, "provision: %s", envdb_error_last()->message);

	memset(&e, 0, sizeof(e));
	envdbi_uuid_new(env_id);
	e.id = env_id;
	e.organization_id = (char *)"org-000003";
	e.slug = (char *)"clone";
	e.display_name = (char *)"a v5 clone";
	e.status = (char *)"suspended";
	e.created_by = (char *)"bob";
	ck_assert_int_eq(envdbi_store_env_insert(ctx->store, &e, NULL), 0);
	memset(&d, 0, sizeof(d));
	envdbi_uuid_new(db_id);
	d.id = db_id;
	d.environment_id = env_id;
	d.database_name = (char *)"tenant_000003_0";
	d.database_url = (char *)"libsql://tenant-000003-0.turso.io";
	d.driver = (char *)"turso";
	d.storage_limit_mb = 10;
	ck_assert_int_eq(envdbi_store_db_insert(ctx->store, &d, NULL), 0);
}

/* The environment of legacy row j of org i, checked against the seed. */
static void check_env(envdb_ctx *ctx, size_t i, const char *slug, int is_default,
		      const char *status, const char *driver, size_t j)
{
	char org[32], name[64], token[64];
	envdb_environment *e = NULL;
	envdb_database *d = NULL;
	envdb_credential *c = NULL;
	envdbi_secret *pt = NULL;
	envdb_connection *conn = NULL;
	int rc;

	snprintf(org, sizeof(org), "org-%06zu", i);
	snprintf(name, sizeof(name), "tenant_%06zu_%zu", i, j);
	legacy_seed_token(token, sizeof(token), i, j);
	rc = envdb_env_get(&e, ctx, org, slug);
	ck_assert_msg(rc == 0, "%s/%s: %s", org, slug, envdb_error_last()->message);
	ck_assert_int_eq(e->is_default, is_default);
	ck_assert_str_eq(e->status, status);
	ck_assert_str_eq(e->env_type, "production");
	ck_assert_str_eq(e->created_by, "alice");
	ck_assert_int_eq(e->created_at, 1600000000 + (int64_t)i * 100 - (int64_t)j * 10);
	ck_assert_int_eq(envdbi_store_db_get_by_env(ctx->store, &d, e->id), 0);
	ck_assert_str_eq(d->database_name, name); /* the legacy database, reused */
	ck_assert_str_eq(d->driver, driver);
	ck_assert_int_eq(d->storage_limit_mb, 512 + (int64_t)(i % 7) * 256);
	ck_assert_int_eq(envdbi_store_cred_get_active(ctx->store, &c, d->id, "full_access"), 0);
	/* re-encrypted under the current key, bound to its new row */
	ck_assert_int_eq(envdbi_credential_open(&pt, ctx, c, d), 0);
	ck_assert_str_eq(pt->data, token);
	envdbi_secret_free(pt);
	if (strcmp(status, "active") == 0) {
		rc = envdb_resolve(&conn, ctx, org, slug, "alice");
		ck_assert_msg(rc == 0, "resolve %s/%s: %s", org, slug, envdb_error_last()->message);
		ck_assert_str_eq(conn->secret, token);
		ck_assert_str_eq(conn->driver, driver);
		ck_assert_str_eq(conn->database_name, name);
		ck_assert_str_eq(conn->role, "owner");
		envdb_connection_free(conn);
		ck_assert_int_eq(envdb_resolve(&conn, ctx, org, slug, "mallory"),
				 ENVDB_ERR_PERMISSION);
	}
	envdb_credential_free(c);
	envdb_database_free(d);
	envdb_environment_free(e);
}

static const char *const drivers[] = {"sqlite", "turso", "turso", "postgres", "postgres"};

static const char *driver_of(size_t i, size_t j)
{
	return drivers[((i + i / 20) % 5 + j) % 5];
}

START_TEST(test_mixed)
{
	fx f;
	envdb_migrate_report *rep, *again;
	envdbi_package_row **pk = NULL;
	envdbi_tenant_db_row **tdb = NULL;
	size_t npk = 0, ntdb = 0, i, k, packages = 0;
	envdb_ctx *ctx;
	char *dump1, *dump2, *bytes1, *bytes2 = NULL;
	size_t len1, len2;

	fx_init(&f, true);
	fx_seed(&f, MIX_ORGS, add_v5_data);
	ck_assert_uint_eq(f.stats.orgs, MIX_ORGS);

	rep = run_migrate(&f, 0, 7, "alice");
	ck_assert_uint_eq(rep->organizations, MIX_ORGS);
	ck_assert_uint_eq(rep->n_orgs, MIX_ORGS);
	/* generator: 13, 14, 17 fail; 15 skipped; 3 good orgs collide with v5 */
	ck_assert_uint_eq(rep->failed, f.stats.orgs_bad);
	ck_assert_uint_eq(rep->failed, 6);
	ck_assert_uint_eq(rep->skipped, f.stats.orgs_skipped);
	ck_assert_uint_eq(rep->conflicts, 3);
	ck_assert_uint_eq(rep->migrated, f.stats.orgs_good - 3);
	ck_assert_uint_eq(rep->already, 0);
	ck_assert_uint_eq(rep->migrated + rep->failed + rep->skipped + rep->conflicts, MIX_ORGS);

	ck_assert_int_eq(find_org(rep, "org-000001")->outcome, ENVDB_MIGRATE_CONFLICT);
	ck_assert_ptr_nonnull(strstr(find_org(rep, "org-000001")->reason, "default environment"));
	ck_assert_int_eq(find_org(rep, "org-000002")->outcome, ENVDB_MIGRATE_CONFLICT);
	ck_assert_ptr_nonnull(strstr(find_org(rep, "org-000002")->reason, "slug prod"));
	ck_assert_int_eq(find_org(rep, "org-000003")->outcome, ENVDB_MIGRATE_CONFLICT);
	ck_assert_ptr_nonnull(strstr(find_org(rep, "org-000003")->reason,
				     "already registered by environment org-000003/clone"));
	ck_assert_int_eq(find_org(rep, "org-000004")->outcome, ENVDB_MIGRATE_MIGRATED);
	for (k = 0; k < 2; k++) {
		char org[32];
		const envdb_migrate_org *o;

		snprintf(org, sizeof(org), "org-%06zu", 13 + 20 * k);
		o = find_org(rep, org);
		ck_assert_int_eq(o->outcome, ENVDB_MIGRATE_FAILED);
		ck_assert_ptr_nonnull(strstr(o->reason, "does not decrypt"));
		ck_assert_ptr_nonnull(strstr(o->reason, "legacy_kms"));
		snprintf(org, sizeof(org), "org-%06zu", 14 + 20 * k);
		o = find_org(rep, org);
		ck_assert_int_eq(o->outcome, ENVDB_MIGRATE_FAILED);
		ck_assert_ptr_nonnull(strstr(o->reason, "unknown scheme 'mysql'"));
		snprintf(org, sizeof(org), "org-%06zu", 17 + 20 * k);
		ck_assert_int_eq(find_org(rep, org)->outcome, ENVDB_MIGRATE_FAILED);
		snprintf(org, sizeof(org), "org-%06zu", 15 + 20 * k);
		o = find_org(rep, org);
		ck_assert_int_eq(o->outcome, ENVDB_MIGRATE_SKIPPED);
		ck_assert_uint_eq(o->rows_left, 1);
		/* the mix: an active row plus an archived one */
		snprintf(org, sizeof(org), "org-%06zu", 16 + 20 * k);
		o = find_org(rep, org);
		ck_assert_int_eq(o->outcome, ENVDB_MIGRATE_MIGRATED);
		ck_assert_uint_eq(o->n_envs, 1);
		ck_assert_uint_eq(o->rows_left, 1);
	}
	for (i = 0; i < rep->n_orgs; i++) {
		ck_assert_msg(rep->orgs[i].outcome == ENVDB_MIGRATE_MIGRATED ||
				      rep->orgs[i].reason != NULL,
			      "%s has no reason", rep->orgs[i].organization_id);
		for (k = 0; k < rep->orgs[i].n_envs; k++)
			packages += rep->orgs[i].envs[k].packages_repointed;
	}
	ck_assert_uint_eq(packages, rep->packages_repointed);
	ck_assert_uint_gt(rep->packages_repointed, 0);

	ctx = fx_open(&f);
	/* every migrated organization, row by row */
	for (i = 0; i < MIX_ORGS; i++) {
		size_t kind = i % 20;

		if (i >= 1 && i <= 3)
			continue; /* conflicts */
		if (kind == 13 || kind == 14 || kind == 15 || kind == 17)
			continue;
		if (kind == 10) {
			/* two rows: row 1 is older, so it is prod */
			check_env(ctx, i, "prod", 1, "active", driver_of(i, 1), 1);
			check_env(ctx, i, "prod-2", 0, "active", driver_of(i, 0), 0);
		} else if (kind == 11) {
			check_env(ctx, i, "prod", 1, "active", driver_of(i, 2), 2);
			check_env(ctx, i, "prod-2", 0, "active", driver_of(i, 1), 1);
			check_env(ctx, i, "prod-3", 0, "active", driver_of(i, 0), 0);
		} else {
			check_env(ctx, i, "prod", 1, kind == 12 ? "suspended" : "active",
				  driver_of(i, 0), 0);
		}
	}
	{
		envdb_environment *e = NULL;

		ck_assert_int_eq(envdb_env_get(&e, ctx, "org-000018", "prod"), 0);
		ck_assert_str_eq(e->region, "eu-west");
		ck_assert_str_eq(e->plan, "pro");
		envdb_environment_free(e);
		ck_assert_int_eq(envdb_env_get(&e, ctx, "org-000000", "prod"), 0);
		ck_assert_ptr_null(e->region);
		ck_assert_str_eq(e->plan, "free");
		envdb_environment_free(e);
	}
	/* packages follow their legacy row; legacy rows are archived, not deleted */
	ck_assert_int_eq(envdbi_store_package_list(ctx->store, &pk, &npk, NULL), 0);
	ck_assert_uint_eq(npk, f.stats.packages);
	ck_assert_int_eq(envdbi_store_tenant_db_list(ctx->store, &tdb, &ntdb, NULL), 0);
	ck_assert_uint_eq(ntdb, f.stats.rows);
	for (i = 0; i < ntdb; i++) {
		const envdbi_tenant_db_row *t = tdb[i];
		size_t moved = 0, stayed = 0;

		for (k = 0; k < npk; k++) {
			if (t->migrated_environment_id != NULL &&
			    strcmp(pk[k]->tenant_id, t->migrated_environment_id) == 0)
				moved++;
			if (strcmp(pk[k]->tenant_id, t->id) == 0)
				stayed++;
		}
		if (t->migrated_environment_id != NULL) {
			envdb_environment *e = NULL;

			ck_assert_str_eq(t->status, "archived");
			ck_assert_uint_eq(stayed, 0);
			ck_assert_int_eq(envdbi_store_env_get(ctx->store, &e, t->migrated_environment_id),
					 0);
			ck_assert_ptr_nonnull(strstr(e->metadata, t->id));
			envdb_environment_free(e);
		} else {
			ck_assert_uint_eq(moved, 0);
		}
	}
	envdbi_package_list_free(pk, npk);
	envdbi_tenant_db_list_free(tdb, ntdb);
	envdb_close(ctx);
	assert_check_clean(&f);

	/* A second run: nothing to do, nothing changed (byte for byte). */
	dump1 = fx_dump(&f);
	/* SQLite: the file itself, byte for byte (PostgreSQL: the dump) */
	bytes1 = sm_pg() ? NULL : slurp(f.control, &len1);
	again = run_migrate(&f, 0, 0, "alice");
	ck_assert_uint_eq(again->migrated, 0);
	ck_assert_uint_eq(again->already, rep->migrated);
	ck_assert_uint_eq(again->failed, rep->failed);
	ck_assert_uint_eq(again->conflicts, rep->conflicts);
	ck_assert_uint_eq(again->rows_migrated, 0);
	ck_assert_uint_eq(again->packages_repointed, 0);
	if (!sm_pg()) {
		bytes2 = slurp(f.control, &len2);
		ck_assert_uint_eq(len1, len2);
		ck_assert_msg(memcmp(bytes1, bytes2, len1) == 0, "a second run changed the file");
	}
	dump2 = fx_dump(&f);
	assert_same_dump(dump1, dump2, "second run");
	free(dump1);
	free(dump2);
	free(bytes1);
	free(bytes2);
	envdb_migrate_report_free(again);
	envdb_migrate_report_free(rep);
	fx_done(&f);
}
END_TEST

/* New legacy rows of an organization migrated earlier become further
 * environments; its default (made by the migration) is not a conflict. */
START_TEST(test_late_rows)
{
	fx f;
	envdb_migrate_report *rep;
	envdb_ctx *ctx;
	legacy_row r = {0};
	char url[400];
	int rc;

	fx_init(&f, true);
	fx_seed(&f, 1, NULL);
	rep = run_migrate(&f, 0, 0, "alice");
	ck_assert_uint_eq(rep->migrated, 1);
	envdb_migrate_report_free(rep);

	ctx = fx_open(&f);
	snprintf(url, sizeof(url), "file:%s/late.db", f.legacy_dir);
	r.organization_id = "org-000000";
	r.database_name = "tenant_late";
	r.database_url = url;
	r.token = "tok-late";
	r.created_at = 1700000000;
	rc = legacy_seed_row(ctx, NULL, &r, NULL);
	ck_assert_msg(rc == 0, "%s", envdb_error_last()->message);
	envdb_close(ctx);

	rep = run_migrate(&f, 0, 0, "alice");
	ck_assert_uint_eq(rep->migrated, 1);
	ck_assert_uint_eq(rep->rows_migrated, 1);
	ck_assert_str_eq(rep->orgs[0].envs[0].slug, "prod-2");
	ck_assert_int_eq(rep->orgs[0].envs[0].is_default, 0);
	envdb_migrate_report_free(rep);
	assert_check_clean(&f);
	fx_done(&f);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* A write the plan could not foresee fails: the batch is replayed one       */
/* organization at a time, and only that organization fails                 */
/* ------------------------------------------------------------------------ */

static void exec_sql(fx *f, const char *sql)
{
	char err[512] = "";

	ck_assert_msg(sm_exec(f->control, sql, err, sizeof err) == 0, "%s: %s", sql, err);
}

START_TEST(test_write_failure)
{
	fx f;
	envdb_migrate_report *ref, *rep;
	envdb_ctx *ctx;
	envdb_environment *e = NULL;
	const envdb_migrate_org *o;
	char *want, *got;

	fx_init(&f, true);
	fx_seed(&f, MIX_ORGS, NULL);
	ref = run_migrate(&f, 0, 64, "alice"); /* one batch */
	want = fx_dump(&f);

	fx_restore(&f);
	/* the store refuses the database row of org-000005, after its
	 * environment row was written in the same batch transaction */
	/* (SQLite's RAISE(ABORT) is a constraint error: the same class on
	 * PostgreSQL is a check_violation) */
	if (sm_pg())
		exec_sql(&f, "CREATE FUNCTION test_refuse_fn() RETURNS trigger LANGUAGE plpgsql AS "
			     "$$ BEGIN RAISE EXCEPTION 'refused by the test' "
			     "USING ERRCODE = 'check_violation'; END $$; "
			     "CREATE TRIGGER test_refuse BEFORE INSERT ON sys_environment_database "
			     "FOR EACH ROW WHEN (NEW.database_name = 'tenant_000005_0') "
			     "EXECUTE FUNCTION test_refuse_fn()");
	else
		exec_sql(&f, "CREATE TRIGGER test_refuse BEFORE INSERT ON sys_environment_database "
			     "WHEN NEW.database_name = 'tenant_000005_0' "
			     "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
	rep = run_migrate(&f, 0, 64, "alice");
	o = find_org(rep, "org-000005");
	ck_assert_int_eq(o->outcome, ENVDB_MIGRATE_FAILED);
	ck_assert_ptr_nonnull(strstr(o->reason, "tenant_000005_0"));
	ck_assert_uint_eq(rep->migrated, ref->migrated - 1);
	ck_assert_uint_eq(rep->failed, ref->failed + 1);
	ck_assert_uint_eq(rep->n_orgs, ref->n_orgs);
	ctx = fx_open(&f);
	ck_assert_int_eq(envdb_env_get(&e, ctx, "org-000005", "prod"), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_eq(envdb_env_get(&e, ctx, "org-000004", "prod"), 0); /* same batch */
	envdb_environment_free(e);
	envdb_close(ctx);
	envdb_migrate_report_free(rep);

	exec_sql(&f, sm_pg() ? "DROP TRIGGER test_refuse ON sys_environment_database; "
			       "DROP FUNCTION test_refuse_fn()"
			     : "DROP TRIGGER test_refuse");
	rep = run_migrate(&f, 0, 64, "alice");
	ck_assert_uint_eq(rep->migrated, 1);
	envdb_migrate_report_free(rep);
	got = fx_dump(&f);
	assert_same_dump(want, got, "after a refused write and a re-run");
	free(got);
	free(want);
	envdb_migrate_report_free(ref);
	assert_check_clean(&f);
	fx_done(&f);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Dry run: byte-identical file, the same report as the real run             */
/* ------------------------------------------------------------------------ */

START_TEST(test_dry_run)
{
	fx f;
	envdb_migrate_report *dry, *real;
	char *before, *after;
	size_t lb, la, i, k;

	fx_init(&f, true);
	fx_seed(&f, MIX_ORGS, add_v5_data);
	/* SQLite: the file byte for byte; PostgreSQL: every row (the dump) */
	if (sm_pg()) {
		before = fx_dump(&f);
		dry = run_migrate(&f, 1, 5, "alice");
		after = fx_dump(&f);
		assert_same_dump(before, after, "a dry run");
	} else {
		before = slurp(f.control, &lb);
		dry = run_migrate(&f, 1, 5, "alice");
		after = slurp(f.control, &la);
		ck_assert_uint_eq(lb, la);
		ck_assert_msg(memcmp(before, after, lb) == 0,
			      "a dry run changed the control plane");
	}
	ck_assert_int_eq(dry->dry_run, 1);
	ck_assert_uint_gt(dry->migrated, 0);

	real = run_migrate(&f, 0, 5, "alice");
	ck_assert_uint_eq(dry->migrated, real->migrated);
	ck_assert_uint_eq(dry->failed, real->failed);
	ck_assert_uint_eq(dry->conflicts, real->conflicts);
	ck_assert_uint_eq(dry->skipped, real->skipped);
	ck_assert_uint_eq(dry->rows_migrated, real->rows_migrated);
	ck_assert_uint_eq(dry->packages_repointed, real->packages_repointed);
	ck_assert_uint_eq(dry->n_orgs, real->n_orgs);
	for (i = 0; i < dry->n_orgs; i++) {
		const envdb_migrate_org *a = &dry->orgs[i], *b = &real->orgs[i];

		ck_assert_str_eq(a->organization_id, b->organization_id);
		ck_assert_int_eq(a->outcome, b->outcome);
		ck_assert_str_eq(a->reason ? a->reason : "", b->reason ? b->reason : "");
		ck_assert_uint_eq(a->n_envs, b->n_envs);
		for (k = 0; k < a->n_envs; k++) {
			ck_assert_str_eq(a->envs[k].slug, b->envs[k].slug);
			ck_assert_str_eq(a->envs[k].legacy_id, b->envs[k].legacy_id);
			ck_assert_str_eq(a->envs[k].driver, b->envs[k].driver);
			ck_assert_ptr_null(a->envs[k].environment_id);
			ck_assert_ptr_nonnull(b->envs[k].environment_id);
		}
	}
	free(before);
	free(after);
	envdb_migrate_report_free(dry);
	envdb_migrate_report_free(real);
	fx_done(&f);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Crashes: SIGKILL at random moments, and at every failpoint                */
/* ------------------------------------------------------------------------ */

/* In a child: migrate, exit 0 (or be killed). */
static pid_t spawn_migrate(fx *f, size_t batch, const char *failpoints)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
		envdb_migrate_report *rep = NULL;
		envdb_ctx *ctx = NULL;
		int rc;

		if (failpoints != NULL)
			setenv("ENVDB_FAILPOINTS", failpoints, 1);
		if (envdb_open(&ctx, f->manifest, 0) != 0)
			_exit(3);
		o.batch = batch;
		o.by = "alice";
		rc = envdb_migrate_v4_to_v5(&rep, ctx, &o);
		envdb_migrate_report_free(rep);
		envdb_close(ctx);
		_exit(rc == 0 ? 0 : 4);
	}
	return pid;
}

static int64_t now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

START_TEST(test_kill_random)
{
	fx f;
	size_t n_orgs = under_valgrind() ? 60 : 2000;
	int rounds = under_valgrind() ? 2 : 8, r, killed = 0, partial = 0;
	size_t want_orgs;
	envdbi_legacy_counts done;
	unsigned seed = (unsigned)time(NULL);
	envdb_migrate_report *rep;
	char *want;
	int64_t t0, full_us;

	fx_init(&f, true);
	fx_seed(&f, n_orgs, NULL);

	/* the uninterrupted run */
	t0 = now_us();
	rep = run_migrate(&f, 0, 16, "alice");
	full_us = now_us() - t0;
	ck_assert_uint_gt(rep->migrated, n_orgs / 2);
	want_orgs = rep->migrated;
	envdb_migrate_report_free(rep);
	{
		envdb_ctx *ctx = fx_open(&f);

		ck_assert_int_eq(envdbi_store_tenant_db_counts(ctx->store, &done), 0);
		envdb_close(ctx);
	}
	want = fx_dump(&f);
	fprintf(stderr, "kill test: %zu organizations migrate in %lld ms; seed %u\n", n_orgs,
		(long long)full_us / 1000, seed);

	srand(seed);
	/* Rounds past `rounds` only while no kill landed mid-run: on a loaded
	 * machine the timed run above can be slower than the spawned ones, so
	 * each extra round aims at half the time of the one before. */
	for (r = 0; r < rounds || (partial == 0 && r < rounds + 8 && !under_valgrind()); r++) {
		int kills = 1 + r % 2, k;
		char *got;

		if (r >= rounds)
			full_us /= 2;

		fx_restore(&f);
		for (k = 0; k < kills; k++) {
			/* somewhere in the run, opening included */
			int64_t delay = (int64_t)((double)rand() / RAND_MAX * (double)full_us * 1.1);
			pid_t pid = spawn_migrate(&f, 16, NULL);
			int st = 0;

			usleep((useconds_t)delay);
			kill(pid, SIGKILL);
			ck_assert_int_eq(waitpid(pid, &st, 0), pid);
			if (WIFSIGNALED(st))
				killed++;
			else
				ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
					      "child failed: %d", st);
		}
		{
			/* how far the killed runs got: every organization is either
			 * fully migrated or untouched, so count organizations */
			envdbi_legacy_counts c;
			envdb_ctx *ctx = fx_open(&f);

			ck_assert_int_eq(envdbi_store_tenant_db_counts(ctx->store, &c), 0);
			envdb_close(ctx);
			if (c.orgs_migrated > 0 && c.rows_pending > done.rows_pending)
				partial++;
			fprintf(stderr, "  round %d: %d kill(s), %zu legacy rows left (%zu when done)\n",
				r, kills, c.rows_pending, done.rows_pending);
		}
		rep = run_migrate(&f, 0, 64, "alice");
		ck_assert_uint_eq(rep->already + rep->migrated, want_orgs);
		envdb_migrate_report_free(rep);
		got = fx_dump(&f);
		assert_same_dump(want, got, "after a kill and a re-run");
		free(got);
	}
	ck_assert_int_gt(killed, 0);
	ck_assert_msg(partial > 0 || under_valgrind(), "no kill landed in the middle of a run");
	assert_check_clean(&f);
	free(want);
	fx_done(&f);
}
END_TEST

static const char *const migrate_failpoints[] = {
	"migrate.begin",    "migrate.decrypt",  "migrate.encrypt",   "migrate.plan",
	"migrate.environment", "migrate.database", "migrate.credential", "migrate.member",
	"migrate.packages", "migrate.archive",  "migrate.commit",    "migrate.after_commit",
};
#define N_FAILPOINTS (sizeof(migrate_failpoints) / sizeof(migrate_failpoints[0]))

START_TEST(test_failpoints)
{
	fx f;
	envdb_migrate_report *rep;
	char *want, *pristine_dump, *got, spec[96];
	size_t i;

	if (!envdbi_failpoints_enabled()) {
		fprintf(stderr, "failpoints not compiled in (configure --enable-failpoints): skipped\n");
		return;
	}
	/* every migrate.* failpoint is known to the facility */
	for (i = 0; i < N_FAILPOINTS; i++) {
		size_t j;
		bool found = false;

		for (j = 0; envdbi_failpoint_names[j] != NULL; j++)
			found = found || strcmp(envdbi_failpoint_names[j], migrate_failpoints[i]) == 0;
		ck_assert_msg(found, "%s is not listed", migrate_failpoints[i]);
	}
	fx_init(&f, true);
	fx_seed(&f, under_valgrind() ? 12 : 45, NULL);
	pristine_dump = fx_dump(&f);
	rep = run_migrate(&f, 0, 4, "alice");
	envdb_migrate_report_free(rep);
	want = fx_dump(&f);

	for (i = 0; i < N_FAILPOINTS; i++) {
		const char *fp = migrate_failpoints[i];
		envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
		envdb_ctx *ctx;
		pid_t pid;
		int st = 0, rc;

		/* kill: the process dies at the step; a re-run finishes */
		fx_restore(&f);
		snprintf(spec, sizeof(spec), "%s=kill", fp);
		pid = spawn_migrate(&f, 4, spec);
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s: not killed (%d)", fp,
			      st);
		rep = run_migrate(&f, 0, 4, "alice");
		envdb_migrate_report_free(rep);
		got = fx_dump(&f);
		assert_same_dump(want, got, fp);
		free(got);

		/* error: no organization is half-migrated; a re-run finishes */
		fx_restore(&f);
		snprintf(spec, sizeof(spec), "%s=error", fp);
		setenv("ENVDB_FAILPOINTS", spec, 1);
		ctx = fx_open(&f);
		o.batch = 4;
		o.by = "alice";
		rep = NULL;
		rc = envdb_migrate_v4_to_v5(&rep, ctx, &o);
		unsetenv("ENVDB_FAILPOINTS");
		ck_assert_ptr_nonnull(rep);
		if (strcmp(fp, "migrate.begin") == 0 || strcmp(fp, "migrate.after_commit") == 0) {
			ck_assert_int_eq(rc, ENVDB_ERR_GENERIC);
			ck_assert_int_eq(rep->stopped_status, ENVDB_ERR_GENERIC);
			ck_assert_ptr_nonnull(strstr(rep->stopped_message, fp));
		} else {
			ck_assert_int_eq(rc, 0);
			ck_assert_uint_eq(rep->migrated, 0);
			ck_assert_uint_gt(rep->failed, 0);
			ck_assert_ptr_nonnull(strstr(find_org(rep, "org-000000")->reason, fp));
		}
		envdb_migrate_report_free(rep);
		envdb_close(ctx);
		if (strcmp(fp, "migrate.after_commit") != 0) {
			got = fx_dump(&f);
			assert_same_dump(pristine_dump, got, fp);
			free(got);
		}
		rep = run_migrate(&f, 0, 4, "alice");
		envdb_migrate_report_free(rep);
		got = fx_dump(&f);
		assert_same_dump(want, got, fp);
		free(got);
	}
	free(want);
	free(pristine_dump);
	fx_done(&f);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Opt-out, and the command                                                  */
/* ------------------------------------------------------------------------ */

START_TEST(test_shim_off)
{
	fx f;
	envdb_ctx *ctx;
	envdb_migrate_report *rep = NULL;

	fx_init(&f, false);
	ctx = fx_open(&f);
	ck_assert_int_eq(envdb_migrate_v4_to_v5(&rep, ctx, NULL), ENVDB_ERR_CONFIG);
	ck_assert_ptr_null(rep);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "register_shim"));
	envdb_close(ctx);
	fx_done(&f);
}
END_TEST

/* Run the envdb command; stdout into *out (malloc'd), stderr into *err;
 * returns the exit status. */
static int run_cli(fx *f, const char *args, char **out, char **err)
{
	const char *build = getenv("ENVDB_TEST_BUILDDIR");
	char cmd[2048], outp[400], errp[400];
	size_t n;
	int st;

	snprintf(outp, sizeof(outp), "%s/cli.out", f->dir);
	snprintf(errp, sizeof(errp), "%s/cli.err", f->dir);
	snprintf(cmd, sizeof(cmd),
		 "ENVDB_LOG_LEVEL=warning '%s/core/envdb' --manifest '%s' %s >'%s' 2>'%s' </dev/null",
		 build ? build : ".", f->manifest, args, outp, errp);
	st = system(cmd);
	ck_assert_msg(st != -1 && WIFEXITED(st), "cannot run %s", cmd);
	*out = slurp(outp, &n);
	*err = slurp(errp, &n);
	return WEXITSTATUS(st);
}

/* Run the envdb command with stderr on a pseudo-terminal; what it wrote
 * there into *err (malloc'd); returns the exit status. */
static int run_cli_tty(fx *f, const char *args, char **err)
{
	const char *build = getenv("ENVDB_TEST_BUILDDIR");
	char cmd[2048], buf[4096];
	sbuf out = {0};
	int master, slave, st = 0;
	pid_t pid;

	snprintf(cmd, sizeof(cmd), "exec '%s/core/envdb' --manifest '%s' %s",
		 build ? build : ".", f->manifest, args);
	ck_assert_int_eq(openpty(&master, &slave, NULL, NULL, NULL), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		close(master);
		dup2(null, 0);
		dup2(null, 1);
		dup2(slave, 2);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(slave);
	for (;;) {
		ssize_t n = read(master, buf, sizeof(buf) - 1);

		if (n <= 0)
			break; /* EIO once the child closed the terminal */
		buf[n] = '\0';
		sb_printf(&out, "%s", buf);
	}
	close(master);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	if (out.s == NULL)
		sb_printf(&out, "%s", "");
	*err = out.s;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_cli)
{
	fx f;
	char *out, *err;
	json_t *doc, *tot;
	json_error_t je;
	int ex;

	if (under_valgrind())
		return; /* the command is a separate program; covered by the runs above */
	fx_init(&f, true);
	fx_seed(&f, 20, NULL);

	ex = run_cli(&f, "--json migrate v4-to-v5 --dry-run --by alice", &out, &err);
	ck_assert_msg(ex == 65, "exit %d: %s", ex, err); /* some organizations fail */
	doc = json_loads(out, 0, &je);
	ck_assert_msg(doc != NULL, "not JSON: %s", out);
	ck_assert(json_is_true(json_object_get(doc, "dry_run")));
	tot = json_object_get(doc, "totals");
	ck_assert_int_eq(json_integer_value(json_object_get(tot, "organizations")), 20);
	ck_assert_int_eq(json_integer_value(json_object_get(tot, "failed")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(tot, "skipped")), 1);
	ck_assert_int_eq(json_array_size(json_object_get(doc, "organizations")), 20);
	ck_assert_ptr_null(strchr(err, '\r')); /* no progress on a pipe */
	ck_assert_ptr_null(strstr(err, "org/s"));
	/* the deprecated shim's notice */
	ck_assert_ptr_nonnull(strstr(err, "not migrated yet"));
	ck_assert_ptr_null(strstr(out, "tok-")); /* never a token */
	ck_assert_ptr_null(strstr(err, "tok-"));
	json_decref(doc);
	free(out);
	free(err);

	ex = run_cli(&f, "migrate v4-to-v5 --by alice --batch 3", &out, &err);
	ck_assert_msg(ex == 65, "exit %d: %s", ex, err);
	ck_assert_ptr_nonnull(strstr(out, "16 migrated"));
	ck_assert_ptr_nonnull(strstr(out, "failed   org-000013"));
	ck_assert_ptr_nonnull(strstr(err, "not migrated"));
	free(out);
	free(err);

	ex = run_cli(&f, "--json resolve org-000000/prod --user alice --reveal", &out, &err);
	ck_assert_msg(ex == 0, "exit %d: %s", ex, err);
	ck_assert_ptr_nonnull(strstr(out, "tok-org-000000-0"));
	free(out);
	free(err);

	ex = run_cli(&f, "check", &out, &err);
	ck_assert_msg(ex == 0, "check exit %d: %s %s", ex, out, err);
	/* the failed organizations still have rows to migrate */
	ck_assert_ptr_nonnull(strstr(err, "not migrated yet"));
	free(out);
	free(err);

	/* on a terminal: a progress line with rate and ETA (a dry run over the
	 * rows left; 100% at the end) */
	ex = run_cli_tty(&f, "migrate v4-to-v5 --dry-run --by alice --batch 1", &err);
	ck_assert_msg(ex == 65, "exit %d: %s", ex, err);
	ck_assert_msg(strstr(err, "org/s") != NULL && strstr(err, "ETA") != NULL &&
			      strstr(err, "(100%)") != NULL,
		      "no progress on a terminal: %s", err);
	ck_assert_ptr_nonnull(strchr(err, '\r'));
	free(err);

	ex = run_cli(&f, "migrate v4-to-v5 --batch -1", &out, &err);
	ck_assert_int_eq(ex, 64);
	free(out);
	free(err);

	ex = run_cli(&f, "migrate v4-to-v5 --legacy-encryptor nosuch --by alice", &out, &err);
	ck_assert_msg(ex == 78, "exit %d: %s", ex, err);
	ck_assert_ptr_nonnull(strstr(err, "legacy encryptor nosuch"));
	free(out);
	free(err);
	fx_done(&f);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* After the migration: the adopted sqlite databases live on (reconcile,     */
/* rotation, resolve, delete)                                                */
/* ------------------------------------------------------------------------ */

static void legacy_sql(const char *path, const char *sql, const char *want)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
					 NULL),
			 SQLITE_OK);
	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
		      sqlite3_errmsg(db));
	if (want == NULL) {
		ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	} else {
		ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
		ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), want);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static bool path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static void seed_sqlite_row(envdb_ctx *ctx, const char *org, const char *url, const char *token,
			    int64_t created_at)
{
	legacy_row r = {0};
	char name[64];
	int rc;

	snprintf(name, sizeof(name), "tenant_%s", org);
	r.organization_id = org;
	r.database_name = name;
	r.database_url = url;
	r.token = token;
	r.created_at = created_at;
	rc = legacy_seed_row(ctx, NULL, &r, NULL);
	ck_assert_msg(rc == 0, "seed %s: %s", org, envdb_error_last()->message);
}

static size_t count_items(const envdb_reconcile_report *r, const char *kind)
{
	size_t i, n = 0;

	for (i = 0; i < r->n_items; i++)
		n += strcmp(r->items[i].kind, kind) == 0;
	return n;
}

START_TEST(test_adopted_sqlite)
{
	fx f;
	char legacy[PATH_MAX], acme[PATH_MAX + 32], globex[PATH_MAX + 32], evil[PATH_MAX + 64],
	    lnk[PATH_MAX + 32], url[PATH_MAX + 80], path[PATH_MAX + 80], new_secret[64];
	envdb_migrate_report *rep;
	envdb_reconcile_report *r = NULL;
	envdb_connection *conn = NULL;
	envdb_database *db = NULL;
	envdb_ctx *ctx;
	size_t i, revoked = 0;
	struct stat st;
	int rc;

	fx_init(&f, true);
	/* The adapter refuses a directory given through a symbolic link, so
	 * the legacy paths are canonical (TMPDIR may contain one). */
	ck_assert_ptr_nonnull(realpath(f.legacy_dir, legacy));
	snprintf(acme, sizeof(acme), "%s/acme.db", legacy);
	snprintf(globex, sizeof(globex), "%s/globex.db", legacy);
	legacy_sql(acme, "CREATE TABLE t(x)", NULL);
	legacy_sql(acme, "INSERT INTO t VALUES ('acme data')", NULL);
	legacy_sql(globex, "CREATE TABLE t(x)", NULL);
	snprintf(path, sizeof(path), "%s-wal", globex);
	write_file(path, "a stale log");
	snprintf(path, sizeof(path), "%s.bak", globex);
	write_file(path, "a backup next to it");
	/* evil: its directory is reached through a symbolic link */
	snprintf(path, sizeof(path), "%s/real", legacy);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(evil, sizeof(evil), "%s/real/evil.db", legacy);
	legacy_sql(evil, "CREATE TABLE t(x)", NULL);
	snprintf(path, sizeof(path), "%s/link", legacy);
	ck_assert_int_eq(symlink(legacy, path), 0);
	/* lnk: the file itself is a symbolic link to acme's database */
	snprintf(lnk, sizeof(lnk), "%s/lnk.db", legacy);
	ck_assert_int_eq(symlink(acme, lnk), 0);

	ctx = fx_open(&f);
	snprintf(url, sizeof(url), "file:%s", acme);
	seed_sqlite_row(ctx, "acme", url, "tok-acme", 1600000000);
	snprintf(url, sizeof(url), "file://%s", globex); /* file:///ABS */
	seed_sqlite_row(ctx, "globex", url, "tok-globex", 1600000001);
	snprintf(url, sizeof(url), "file:%s/link/real/evil.db", legacy);
	seed_sqlite_row(ctx, "evil", url, "tok-evil", 1600000002);
	snprintf(url, sizeof(url), "file:%s", lnk);
	seed_sqlite_row(ctx, "lnk", url, "tok-lnk", 1600000003);
	envdb_close(ctx);
	rep = run_migrate(&f, 0, 0, "alice");
	ck_assert_uint_eq(rep->migrated, 4);
	envdb_migrate_report_free(rep);

	/* reconcile: nothing missing, nothing to do; the adopted databases
	 * are reported as not verified, which is not a failure */
	ctx = fx_open(&f);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	for (i = 0; i < r->n_items; i++)
		ck_assert_msg(strcmp(r->items[i].kind, "unverified") == 0, "%s %s: %s",
			      r->items[i].kind, nz(r->items[i].database_name),
			      nz(r->items[i].message));
	ck_assert_uint_eq(count_items(r, "unverified"), 4);
	ck_assert_uint_eq(r->n_failed, 0);
	for (i = 0; i < r->n_items; i++) {
		ck_assert_str_eq(r->items[i].action, "none");
		ck_assert_str_eq(r->items[i].driver, "sqlite");
		ck_assert_int_eq(r->items[i].status, 0);
		ck_assert_ptr_nonnull(r->items[i].label);
	}
	envdb_reconcile_report_free(r);
	r = NULL;
	ck_assert_int_eq(envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY), ENVDB_OK);
	ck_assert_uint_eq(r->n_failed, 0);
	ck_assert_uint_eq(count_items(r, "missing"), 0);
	envdb_reconcile_report_free(r);
	r = NULL;
	ck_assert(path_exists(acme) && path_exists(globex) && path_exists(evil));

	/* rotation: a new secret minted for the legacy file; resolve hands it
	 * out, the legacy token only as the previous one until completed */
	ck_assert_int_eq(envdb_resolve(&conn, ctx, "acme", "prod", "alice"), ENVDB_OK);
	ck_assert_str_eq(conn->secret, "tok-acme");
	envdb_connection_free(conn);
	conn = NULL;
	rc = envdb_cred_rotate(ctx, "acme", "prod", NULL);
	ck_assert_msg(rc == ENVDB_OK, "rotate: %s", envdb_error_last()->message);
	ck_assert_int_eq(envdb_resolve(&conn, ctx, "acme", "prod", "alice"), ENVDB_OK);
	ck_assert_str_ne(conn->secret, "tok-acme");
	ck_assert_uint_eq(conn->secret_len, 43);
	snprintf(new_secret, sizeof(new_secret), "%s", conn->secret);
	if (conn->previous_secret != NULL)
		ck_assert_str_eq(conn->previous_secret, "tok-acme");
	snprintf(url, sizeof(url), "file:%s", acme);
	ck_assert_str_eq(conn->database_url, url); /* still the legacy database */
	ck_assert_str_eq(conn->database_name, "tenant_acme");
	envdb_connection_free(conn);
	conn = NULL;
	ck_assert_int_eq(envdb_cred_complete(&revoked, ctx, "acme", "prod"), ENVDB_OK);
	ck_assert_uint_eq(revoked, 1);
	ck_assert_int_eq(envdb_resolve(&conn, ctx, "acme", "prod", "alice"), ENVDB_OK);
	ck_assert_str_eq(conn->secret, new_secret);
	ck_assert_ptr_null(conn->previous_secret);
	envdb_connection_free(conn);
	conn = NULL;
	legacy_sql(acme, "SELECT x FROM t", "acme data");

	/* never through a symbolic link: not the directory, not the file */
	ck_assert_int_eq(envdb_cred_rotate(ctx, "evil", "prod", NULL), ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "canonical"));
	ck_assert_int_eq(envdb_cred_rotate(ctx, "lnk", "prod", NULL), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_ne(envdb_env_delete(ctx, "lnk", "prod", ENVDB_DELETE_NOW), ENVDB_OK);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "not a regular file"));
	ck_assert_int_eq(lstat(lnk, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	ck_assert(path_exists(acme));
	ck_assert(path_exists(evil));

	/* delete drops exactly the adopted database: its file and side
	 * files, nothing next to it */
	ck_assert_int_eq(envdb_env_database(&db, ctx, "globex", "prod"), ENVDB_OK);
	ck_assert_str_eq(db->database_name, "tenant_globex");
	envdb_database_free(db);
	rc = envdb_env_delete(ctx, "globex", "prod", ENVDB_DELETE_NOW);
	ck_assert_msg(rc == ENVDB_OK, "delete: %s", envdb_error_last()->message);
	ck_assert(!path_exists(globex));
	snprintf(path, sizeof(path), "%s-wal", globex);
	ck_assert(!path_exists(path));
	snprintf(path, sizeof(path), "%s.bak", globex);
	ck_assert(path_exists(path));
	ck_assert(path_exists(acme));
	envdb_close(ctx);

	if (!under_valgrind()) {
		char *out, *err;
		int ex;

		/* the command: the rotation and the reconcile of the brief */
		ex = run_cli(&f, "cred rotate acme/prod --overlap 0s", &out, &err);
		ck_assert_msg(ex == 0, "cred rotate exit %d: %s", ex, err);
		free(out);
		free(err);
		ex = run_cli(&f, "--json resolve acme/prod --user alice --reveal", &out, &err);
		ck_assert_msg(ex == 0, "resolve exit %d: %s", ex, err);
		ck_assert_ptr_null(strstr(out, new_secret)); /* rotated once more */
		ck_assert_ptr_null(strstr(out, "tok-acme"));
		free(out);
		free(err);
		/* lnk's refused delete is due: listed as a deletion; still
		 * nothing is missing */
		ex = run_cli(&f, "--json reconcile", &out, &err);
		ck_assert_ptr_nonnull(strstr(out, "\"deletion\""));
		ck_assert_ptr_null(strstr(out, "\"missing\""));
		free(out);
		free(err);
	}
	fx_done(&f);
}
END_TEST

/* A fresh deployment with two migrated sqlite organizations: `envdb
 * reconcile` exits 0, says nothing is missing, and counts them. */
START_TEST(test_adopted_reconcile_cli)
{
	fx f;
	char legacy[PATH_MAX], file[PATH_MAX + 32], url[PATH_MAX + 64], *out, *err;
	envdb_migrate_report *rep;
	envdb_ctx *ctx;
	json_t *doc, *items;
	json_error_t je;
	size_t i;
	int ex;

	if (under_valgrind())
		return; /* the command is a separate program */
	fx_init(&f, true);
	ck_assert_ptr_nonnull(realpath(f.legacy_dir, legacy));
	ctx = fx_open(&f);
	snprintf(file, sizeof(file), "%s/acme.db", legacy);
	legacy_sql(file, "CREATE TABLE t(x)", NULL);
	snprintf(url, sizeof(url), "file:%s", file);
	seed_sqlite_row(ctx, "acme", url, "tok-acme", 1600000000);
	snprintf(file, sizeof(file), "%s/globex.db", legacy);
	legacy_sql(file, "CREATE TABLE t(x)", NULL);
	snprintf(url, sizeof(url), "file:%s", file);
	seed_sqlite_row(ctx, "globex", url, "tok-globex", 1600000001);
	envdb_close(ctx);
	rep = run_migrate(&f, 0, 0, "alice");
	ck_assert_uint_eq(rep->migrated, 2);
	envdb_migrate_report_free(rep);

	ex = run_cli(&f, "reconcile", &out, &err);
	ck_assert_msg(ex == 0, "reconcile exit %d: %s%s", ex, out, err);
	ck_assert_ptr_null(strstr(out, "missing"));
	ck_assert_ptr_null(strstr(err, "missing"));
	ck_assert_ptr_nonnull(strstr(out, "nothing to reconcile"));
	ck_assert_ptr_nonnull(strstr(out, "2 adopted database(s) not verified"));
	free(out);
	free(err);
	ex = run_cli(&f, "--json reconcile --apply", &out, &err);
	ck_assert_msg(ex == 0, "reconcile --apply exit %d: %s", ex, err);
	doc = json_loads(out, 0, &je);
	ck_assert_msg(doc != NULL, "not JSON: %s", out);
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "failed")), 0);
	items = json_object_get(doc, "items");
	ck_assert_uint_eq(json_array_size(items), 2);
	for (i = 0; i < json_array_size(items); i++) {
		json_t *it = json_array_get(items, i);

		ck_assert_str_eq(json_string_value(json_object_get(it, "kind")), "unverified");
		ck_assert_str_eq(json_string_value(json_object_get(it, "action")), "none");
		ck_assert_ptr_null(json_object_get(it, "status"));
	}
	json_decref(doc);
	free(out);
	free(err);
	ex = run_cli(&f, "cred rotate globex/prod", &out, &err);
	ck_assert_msg(ex == 0, "cred rotate exit %d: %s", ex, err);
	free(out);
	free(err);
	fx_done(&f);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Issue 17: real v4 deployments                                             */
/* ------------------------------------------------------------------------ */

/* One legacy row of organization `org` (a turso URL, database tenant_N). */
static void seed_one(envdb_ctx *ctx, const char *org, int n, const char *token, int kind)
{
	legacy_row r = {0};
	char name[64], url[128];
	int rc;

	snprintf(name, sizeof(name), "tenant_%d", n);
	snprintf(url, sizeof(url), "libsql://tenant-%d.example.turso.io", n);
	r.organization_id = org;
	r.database_name = name;
	r.database_url = url;
	r.token = token;
	r.token_kind = kind;
	rc = legacy_seed_row(ctx, NULL, &r, NULL);
	ck_assert_msg(rc == 0, "seed row %d: %s", n, envdb_error_last()->message);
}

static envdb_migrate_report *run_migrate_opts(fx *f, envdb_migrate_opts *o, int want_rc)
{
	envdb_migrate_report *rep = NULL;
	envdb_ctx *ctx = fx_open(f);
	int rc = envdb_migrate_v4_to_v5(&rep, ctx, o);

	ck_assert_msg(rc == want_rc, "migrate: %d (%s), expected %d", rc,
		      envdb_error_last()->message, want_rc);
	envdb_close(ctx);
	return rep;
}

static void assert_resolves(fx *f, const char *org, const char *token)
{
	envdb_connection *conn = NULL;
	envdb_ctx *ctx = fx_open(f);
	int rc = envdb_resolve(&conn, ctx, org, "prod", "alice");

	ck_assert_msg(rc == 0, "resolve %s/prod: %s", org, envdb_error_last()->message);
	ck_assert_str_eq(conn->secret, token);
	envdb_connection_free(conn);
	envdb_close(ctx);
}

/* v4's default encryptor was a no-op: tokens in clear.  Declared with the
 * reserved legacy encryptor name "none", they are migrated and sealed. */
START_TEST(test_plaintext_tokens)
{
	fx f;
	envdb_ctx *ctx;
	envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
	envdb_migrate_report *rep;
	envdbi_tenant_db_row **rows = NULL;
	char tok[64], *out = NULL, *err = NULL;
	size_t n = 0, i;
	int st;

	fx_init(&f, true);
	ctx = fx_open(&f);
	for (i = 0; i < 4; i++) {
		char org[32];

		snprintf(org, sizeof(org), "plain-%zu", i);
		snprintf(tok, sizeof(tok), "eyJhbGciOiJFZERTQSJ9.plain-%zu.sig", i);
		seed_one(ctx, org, (int)i, tok, LEGACY_TOKEN_PLAINTEXT);
	}
	envdb_close(ctx);
	fx_snapshot(&f);

	/* the legacy encryptor of the manifest refuses them, as before */
	rep = run_migrate(&f, 0, 0, "alice");
	ck_assert_uint_eq(rep->failed, 4);
	ck_assert_uint_eq(rep->migrated, 0);
	envdb_migrate_report_free(rep);

	/* declared plaintext: every row migrated, counted, sealed */
	o.by = "alice";
	o.legacy_encryptor = "none";
	rep = run_migrate_opts(&f, &o, 0);
	ck_assert_uint_eq(rep->migrated, 4);
	ck_assert_uint_eq(rep->failed, 0);
	ck_assert_uint_eq(rep->rows_plaintext, 4);
	envdb_migrate_report_free(rep);
	for (i = 0; i < 4; i++) {
		char org[32];

		snprintf(org, sizeof(org), "plain-%zu", i);
		snprintf(tok, sizeof(tok), "eyJhbGciOiJFZERTQSJ9.plain-%zu.sig", i);
		assert_resolves(&f, org, tok);
	}
	/* the new credentials are ciphertexts, not the plaintext */
	ctx = fx_open(&f);
	{
		envdb_credential **c = NULL;
		size_t nc = 0;

		ck_assert_int_eq(envdbi_store_cred_list(ctx->store, &c, &nc, NULL), 0);
		ck_assert_uint_eq(nc, 4);
		for (i = 0; i < nc; i++)
			ck_assert_ptr_null(strstr(c[i]->secret_ciphertext, "plain-"));
		envdb_credential_list_free(c, nc);
	}
	ck_assert_int_eq(envdbi_store_tenant_db_list(ctx->store, &rows, &n, NULL), 0);
	envdbi_tenant_db_list_free(rows, n);
	envdb_close(ctx);
	assert_check_clean(&f);

	/* the command: --legacy-encryptor none, a warning in the report */
	fx_restore(&f);
	st = run_cli(&f, "--json migrate v4-to-v5 --legacy-encryptor none --by alice", &out, &err);
	ck_assert_msg(st == 0, "exit %d: %s", st, err);
	ck_assert_ptr_nonnull(strstr(out, "\"rows_plaintext\": 4"));
	ck_assert_ptr_nonnull(strstr(out, "declared plaintext"));
	ck_assert_ptr_nonnull(strstr(err, "warning"));
	free(out);
	free(err);
	fx_done(&f);
}
END_TEST

static const char *const odd_orgs[] = {
	"acme corp", "a/b", "caf\xc3\xa9", "-lead", "a..b", "tab\there", NULL /* 200 bytes */,
};
#define N_ODD (sizeof(odd_orgs) / sizeof(odd_orgs[0]))

/* Organization ids v5 cannot address are refused with a reason that says
 * how to map them; mapped, they migrate under the new id and resolve. */
START_TEST(test_unaddressable_orgs)
{
	fx f;
	envdb_ctx *ctx;
	envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
	envdb_migrate_report *rep;
	char long_id[201], tok[64], *out = NULL, *err = NULL, args[512];
	const char *ids[N_ODD];
	const char *map[4];
	size_t i;
	int st;

	memset(long_id, 'x', 200);
	long_id[200] = '\0';
	for (i = 0; i < N_ODD; i++)
		ids[i] = odd_orgs[i] ? odd_orgs[i] : long_id;
	fx_init(&f, true);
	ctx = fx_open(&f);
	for (i = 0; i < N_ODD; i++) {
		snprintf(tok, sizeof(tok), "tok-odd-%zu", i);
		seed_one(ctx, ids[i], (int)i, tok, LEGACY_TOKEN_GOOD);
	}
	seed_one(ctx, "fine-org", 99, "tok-fine", LEGACY_TOKEN_GOOD);
	envdb_close(ctx);
	fx_snapshot(&f);

	rep = run_migrate(&f, 0, 0, "alice");
	ck_assert_uint_eq(rep->migrated, 1);
	ck_assert_uint_eq(rep->failed, N_ODD);
	for (i = 0; i < N_ODD; i++) {
		const envdb_migrate_org *org = find_org(rep, ids[i]);

		ck_assert_ptr_nonnull(org);
		ck_assert_int_eq(org->outcome, ENVDB_MIGRATE_FAILED);
		ck_assert_msg(strstr(org->reason, "--map-org") != NULL, "reason: %s", org->reason);
		ck_assert_ptr_null(strchr(org->reason, '\t')); /* escaped, never raw */
	}
	envdb_migrate_report_free(rep);
	assert_resolves(&f, "fine-org", "tok-fine");
	assert_check_clean(&f); /* nothing unaddressable was made */

	/* mapped: migrated under the new id, reachable */
	map[0] = "acme corp";
	map[1] = "acme-corp";
	map[2] = "tab\there";
	map[3] = "tab-here";
	o.by = "alice";
	o.org_map = map;
	o.n_org_map = 2;
	rep = run_migrate_opts(&f, &o, 0);
	ck_assert_uint_eq(rep->migrated, 2);
	ck_assert_uint_eq(rep->failed, N_ODD - 2);
	ck_assert_str_eq(find_org(rep, "acme corp")->mapped_to, "acme-corp");
	envdb_migrate_report_free(rep);
	assert_resolves(&f, "acme-corp", "tok-odd-0");
	assert_resolves(&f, "tab-here", "tok-odd-5");
	assert_check_clean(&f);

	/* bad maps are refused before anything is done */
	map[1] = "bad id";
	o.n_org_map = 1;
	rep = run_migrate_opts(&f, &o, ENVDB_ERR_INVALID);
	ck_assert_ptr_null(rep);
	map[0] = "a/b";
	map[1] = "fine-org"; /* another legacy organization: would merge */
	rep = run_migrate_opts(&f, &o, ENVDB_ERR_INVALID);
	ck_assert_ptr_null(rep);

	/* the command reads the escaped form the report prints */
	snprintf(args, sizeof(args),
		 "--json migrate v4-to-v5 --by alice --map-org 'a/b=a-b' --map-org 'caf\\xc3\\xa9=cafe'");
#if defined(__SANITIZE_ADDRESS__)
	/* Under AddressSanitizer, LeakSanitizer's own tracer crashes ("Tracer
	 * caught signal 11") at the exit of this one invocation when it runs
	 * from this test (not when the same command runs from a shell); the
	 * valgrind run covers the command's leaks. */
	{
		const char *o = getenv("ASAN_OPTIONS");
		char opts[1024];

		snprintf(opts, sizeof(opts), "%s%sdetect_leaks=0", o ? o : "", o && *o ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
		st = run_cli(&f, args, &out, &err);
		if (o != NULL)
			setenv("ASAN_OPTIONS", o, 1);
		else
			unsetenv("ASAN_OPTIONS");
	}
#else
	st = run_cli(&f, args, &out, &err);
#endif
	ck_assert_msg(st == EX_DATAERR, "exit %d: %s", st, err); /* 3 left unmapped */
	ck_assert_ptr_nonnull(strstr(out, "\"mapped_to\": \"cafe\""));
	free(out);
	free(err);
	assert_resolves(&f, "cafe", "tok-odd-2");
	assert_resolves(&f, "a-b", "tok-odd-1");

	/* envdb check notices an unaddressable organization id however it came */
	ctx = fx_open(&f);
	{
		envdb_environment e = {0};
		envdb_violation **v = NULL;
		size_t nv = 0, hits = 0;

		e.organization_id = (char *)"bad org";
		e.slug = (char *)"dev";
		e.status = (char *)"archived";
		ck_assert_int_eq(envdbi_store_env_insert(ctx->store, &e, NULL), 0);
		ck_assert_int_eq(envdb_check(&v, &nv, ctx), 0);
		for (i = 0; i < nv; i++)
			if (strcmp(v[i]->invariant, "organization_addressable") == 0)
				hits++;
		ck_assert_uint_eq(hits, 1);
		envdb_violation_list_free(v, nv);
	}
	envdb_close(ctx);
	fx_done(&f);
}
END_TEST

/* The three files of the control plane, as bytes (NULL: absent). */
typedef struct files3 {
	char *b[3];
	size_t n[3];
} files3;

static void files_read(fx *f, files3 *o)
{
	static const char *const suf[3] = {"", "-wal", "-shm"};
	char p[400];
	int i;

	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", f->control, suf[i]);
		o->n[i] = 0;
		o->b[i] = path_exists(p) ? slurp(p, &o->n[i]) : NULL;
	}
}

static void files_assert_same(const files3 *a, const files3 *b, const char *what)
{
	static const char *const suf[3] = {"main file", "-wal", "-shm"};
	int i;

	for (i = 0; i < 3; i++) {
		ck_assert_msg((a->b[i] == NULL) == (b->b[i] == NULL), "%s: %s %s", what, suf[i],
			      a->b[i] ? "disappeared" : "appeared");
		ck_assert_msg(a->n[i] == b->n[i], "%s: %s size %zu -> %zu", what, suf[i], a->n[i],
			      b->n[i]);
		ck_assert_msg(a->b[i] == NULL || memcmp(a->b[i], b->b[i], a->n[i]) == 0,
			      "%s: %s changed", what, suf[i]);
	}
}

static void files_free(files3 *o)
{
	for (int i = 0; i < 3; i++)
		free(o->b[i]);
}

/* A dry run (the command) leaves main, -wal and -shm byte-identical: with
 * another process's connection open on the file, and with a WAL that a
 * killed writer left behind. */
START_TEST(test_dry_run_read_only)
{
	fx f;
	files3 before, after;
	char *out = NULL, *err = NULL;
	int p[2], st;
	pid_t pid;
	char c;

	/* About the SQLite file only: its main, -wal and -shm bytes under
	 * another process's connection (PostgreSQL has no file; its dry run
	 * is checked row by row in test_dry_run). */
	if (sm_pg())
		return;
	fx_init(&f, true);
	fx_seed(&f, MIX_ORGS, NULL);

	/* 1. a concurrent reader: another process has the file open and read */
	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		sqlite3 *db = NULL;

		close(p[0]);
		if (sqlite3_open(f.control, &db) != SQLITE_OK ||
		    sqlite3_exec(db, "PRAGMA wal_autocheckpoint = 0; UPDATE sys_package_installation SET updated_at = updated_at + 1; SELECT count(*) FROM sys_tenant_database", NULL, NULL, NULL) != SQLITE_OK)
			_exit(3);
		/* a second writer moves the WAL past this reader's read mark */
		{
			sqlite3 *w = NULL;

			if (sqlite3_open(f.control, &w) != SQLITE_OK ||
			    sqlite3_exec(w, "PRAGMA wal_autocheckpoint = 0; UPDATE sys_tenant_database SET updated_at = updated_at + 1", NULL, NULL, NULL) != SQLITE_OK)
				_exit(3);
			sqlite3_close(w);
		}
		if (write(p[1], "r", 1) != 1)
			_exit(4);
		pause();
		_exit(0);
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	close(p[0]);
	files_read(&f, &before);
	ck_assert_ptr_nonnull(before.b[1]);
	ck_assert_uint_gt(before.n[1], 0); /* frames in the WAL */
	st = run_cli(&f, "--json migrate v4-to-v5 --dry-run --by alice --batch 3", &out, &err);
	ck_assert_msg(st == EX_DATAERR, "exit %d: %s", st, err); /* the mix has failures */
	ck_assert_ptr_nonnull(strstr(out, "\"dry_run\": true"));
	files_read(&f, &after);
	files_assert_same(&before, &after, "dry run with a concurrent reader");
	files_free(&before);
	files_free(&after);
	free(out);
	free(err);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);

	/* 2. a WAL left by a killed writer (committed frames, a stale -shm) */
	fx_restore(&f);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		sqlite3 *db = NULL;

		if (sqlite3_open(f.control, &db) != SQLITE_OK ||
		    sqlite3_exec(db, "PRAGMA wal_autocheckpoint = 0; UPDATE sys_package_installation SET updated_at = updated_at + 1; BEGIN; UPDATE sys_tenant_database SET updated_at = 1", NULL, NULL, NULL) != SQLITE_OK)
			_exit(3);
		kill(getpid(), SIGKILL);
		_exit(5);
	}
	waitpid(pid, &st, 0);
	ck_assert(WIFSIGNALED(st));
	files_read(&f, &before);
	ck_assert_uint_gt(before.n[1], 0);
	st = run_cli(&f, "--json migrate v4-to-v5 --dry-run --by alice", &out, &err);
	ck_assert_msg(st == EX_DATAERR, "exit %d: %s", st, err);
	ck_assert_ptr_nonnull(strstr(out, "\"dry_run\": true"));
	files_read(&f, &after);
	files_assert_same(&before, &after, "dry run over a killed writer's WAL");
	files_free(&before);
	files_free(&after);
	free(out);
	free(err);

	/* 3. a clean file (no -wal, no -shm): none appears */
	fx_restore(&f);
	files_read(&f, &before);
	ck_assert_ptr_null(before.b[1]);
	st = run_cli(&f, "migrate v4-to-v5 --dry-run --by alice", &out, &err);
	ck_assert_msg(st == EX_DATAERR, "exit %d: %s", st, err);
	files_read(&f, &after);
	files_assert_same(&before, &after, "dry run on a clean file");
	files_free(&before);
	files_free(&after);
	free(out);
	free(err);
	fx_done(&f);
}
END_TEST

/* Two runs at once: each report's store totals cover the whole store, and
 * the two shares add up to it. */
START_TEST(test_concurrent_totals)
{
	fx f;
	pid_t pid[2];
	int p[2][2], st, i;
	size_t got[2][5], total_by_runs = 0, max_done = 0;

	fx_init(&f, true);
	fx_seed(&f, 200, NULL);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(pipe(p[i]), 0);
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0) {
			envdb_migrate_opts o = ENVDB_MIGRATE_OPTS_INIT;
			envdb_migrate_report *rep = NULL;
			envdb_ctx *ctx = NULL;
			size_t v[5];

			close(p[i][0]);
			if (envdb_open(&ctx, f.manifest, 0) != 0)
				_exit(3);
			o.batch = 2;
			o.by = "alice";
			if (envdb_migrate_v4_to_v5(&rep, ctx, &o) != 0)
				_exit(4);
			v[0] = rep->migrated;
			v[1] = rep->store_done;
			v[2] = rep->store_open;
			v[3] = rep->store_inactive;
			v[4] = rep->organizations;
			if (write(p[i][1], v, sizeof(v)) != (ssize_t)sizeof(v))
				_exit(5);
			envdb_migrate_report_free(rep);
			envdb_close(ctx);
			_exit(0);
		}
		close(p[i][1]);
	}
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(read(p[i][0], got[i], sizeof(got[i])), (ssize_t)sizeof(got[i]));
		close(p[i][0]);
		ck_assert_int_eq(waitpid(pid[i], &st, 0), pid[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "run %d: status %d", i, st);
		/* the store totals of each report add up to the organizations */
		ck_assert_uint_eq(got[i][1] + got[i][2] + got[i][3], got[i][4]);
		ck_assert_uint_eq(got[i][4], f.stats.orgs);
		ck_assert_uint_eq(got[i][2], f.stats.orgs_bad);
		ck_assert_uint_eq(got[i][3], f.stats.orgs_skipped);
		total_by_runs += got[i][0];
		if (got[i][1] > max_done)
			max_done = got[i][1];
	}
	/* what the two runs did is exactly what is done */
	ck_assert_uint_eq(total_by_runs, f.stats.orgs_good);
	ck_assert_uint_eq(max_done, f.stats.orgs_good);
	fx_done(&f);
}
END_TEST

/* wipe-legacy-tokens: the v4 token goes once the environment resolves;
 * kept (and said why) when it does not. */
START_TEST(test_wipe_legacy_tokens)
{
	fx f;
	envdb_ctx *ctx;
	envdb_wipe_report *w = NULL;
	envdb_migrate_report *rep;
	envdbi_tenant_db_row **rows = NULL;
	size_t n = 0, i, with_token = 0, migrated_rows;
	files3 before, after;
	char *out = NULL, *err = NULL;
	int st;

	fx_init(&f, true);
	fx_seed(&f, MIX_ORGS, NULL);
	rep = run_migrate(&f, 0, 0, "alice");
	migrated_rows = rep->rows_migrated;
	ck_assert_uint_gt(migrated_rows, 2);
	envdb_migrate_report_free(rep);

	/* spoil one environment's credential: it no longer resolves */
	ctx = fx_open(&f);
	{
		envdb_environment *e = NULL;
		envdb_database *d = NULL;
		envdb_credential *c = NULL;

		ck_assert_int_eq(envdbi_store_env_get_by_slug(ctx->store, &e, "org-000000", "prod"), 0);
		ck_assert_int_eq(envdbi_store_db_get_by_env(ctx->store, &d, e->id), 0);
		ck_assert_int_eq(envdbi_store_cred_get_active(ctx->store, &c, d->id, "full_access"), 0);
		free(c->secret_ciphertext);
		c->secret_ciphertext = strdup("edb1.nokey.bm90LWEtY2lwaGVydGV4dC1hdC1hbGw");
		ck_assert_int_eq(envdbi_store_cred_update(ctx->store, c), 0);
		envdb_credential_free(c);
		envdb_database_free(d);
		envdb_environment_free(e);
	}
	envdb_close(ctx);

	/* dry run: says what it would do, writes nothing */
	files_read(&f, &before);
	st = run_cli(&f, "--json migrate wipe-legacy-tokens --dry-run", &out, &err);
	ck_assert_msg(st == EX_DATAERR, "exit %d: %s", st, err); /* one refused */
	ck_assert_ptr_nonnull(strstr(out, "\"refused\": 1"));
	files_read(&f, &after);
	files_assert_same(&before, &after, "wipe-legacy-tokens --dry-run");
	files_free(&before);
	files_free(&after);
	free(out);
	free(err);

	ctx = fx_open(&f);
	ck_assert_int_eq(envdb_migrate_wipe_legacy_tokens(&w, ctx, 0), 0);
	ck_assert_uint_eq(w->wiped, migrated_rows - 1);
	ck_assert_uint_eq(w->refused, 1);
	for (i = 0; i < w->n_rows; i++)
		if (!w->rows[i].wiped) {
			ck_assert_str_eq(w->rows[i].organization_id, "org-000000");
			ck_assert_ptr_nonnull(strstr(w->rows[i].reason, "does not resolve"));
		}
	envdb_wipe_report_free(w);
	ck_assert_int_eq(envdbi_store_tenant_db_list(ctx->store, &rows, &n, NULL), 0);
	for (i = 0; i < n; i++) {
		if (rows[i]->migrated_environment_id != NULL && rows[i]->auth_token != NULL) {
			ck_assert_str_eq(rows[i]->organization_id, "org-000000");
			with_token++;
		}
		/* rows not migrated keep their token for the next run */
		if (rows[i]->migrated_environment_id == NULL &&
		    strcmp(rows[i]->status, "active") == 0 && strcmp(rows[i]->organization_id, "org-000014") != 0)
			ck_assert_ptr_nonnull(rows[i]->auth_token);
	}
	ck_assert_uint_eq(with_token, 1);
	envdbi_tenant_db_list_free(rows, n);
	/* a second run finds only the refused one */
	ck_assert_int_eq(envdb_migrate_wipe_legacy_tokens(&w, ctx, 0), 0);
	ck_assert_uint_eq(w->wiped, 0);
	ck_assert_uint_eq(w->refused, 1);
	envdb_wipe_report_free(w);
	envdb_close(ctx);
	fx_done(&f);
}
END_TEST

/* Ids in creation order: valid v4 UUID text, strictly increasing. */
START_TEST(test_uuid_seq)
{
	uint64_t st = 0, other = 0;
	char prev[37] = "", cur[37], b[37];
	int i;

	for (i = 0; i < 20000; i++) {
		envdbi_migrate_uuid_next(&st, cur);
		ck_assert_msg(envdbi_uuid_valid(cur), "not a uuid: %s", cur);
		ck_assert_int_eq(cur[14], '4');
		ck_assert_ptr_nonnull(strchr("89ab", cur[19]));
		ck_assert_msg(strcmp(prev, cur) < 0, "%s then %s", prev, cur);
		memcpy(prev, cur, sizeof(prev));
	}
	/* a second run started at the same moment still differs */
	envdbi_migrate_uuid_next(&other, b);
	st = 0;
	envdbi_migrate_uuid_next(&st, cur);
	ck_assert_str_ne(b, cur);
}
END_TEST

static Suite *migrate_suite(void)
{
	Suite *s = suite_create("migrate");
	TCase *tc = tcase_create("unit");

	tcase_add_test(tc, test_driver_of_url);
	tcase_add_test(tc, test_uuid_seq);
	suite_add_tcase(s, tc);
	tc = tcase_create("migrate");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_mixed);
	tcase_add_test(tc, test_late_rows);
	tcase_add_test(tc, test_write_failure);
	tcase_add_test(tc, test_dry_run);
	tcase_add_test(tc, test_shim_off);
	tcase_add_test(tc, test_cli);
	tcase_add_test(tc, test_adopted_sqlite);
	tcase_add_test(tc, test_adopted_reconcile_cli);
	tcase_add_test(tc, test_plaintext_tokens);
	tcase_add_test(tc, test_unaddressable_orgs);
	tcase_add_test(tc, test_dry_run_read_only);
	tcase_add_test(tc, test_concurrent_totals);
	tcase_add_test(tc, test_wipe_legacy_tokens);
	suite_add_tcase(s, tc);
	tc = tcase_create("crash");
	tcase_set_timeout(tc, 1200);
	tcase_add_test(tc, test_kill_random);
	tcase_add_test(tc, test_failpoints);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(migrate_suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
