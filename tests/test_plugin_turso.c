/*
 * tests/test_plugin_turso.c — the Turso adapter (plugins/turso) driven
 * through the host's own wrappers (envdbi_manifest_load,
 * envdbi_plugins_load, envdbi_adapter_*), against the Platform API
 * emulator of tests/turso_emulator.c whose databases are served by a real
 * libSQL HTTP server (`tursodb --sync-server`, installed by
 * tests/turso-setup.sh).
 *
 * Proves: create → mint → probe → drop; adoption of this environment's
 * database on each duplicate-name variant (409, 400, 422) and refusal of a
 * same-named database in another group; compensation (the database is
 * deleted again) when minting or the readiness wait fails; bounded retries
 * on 429 (Retry-After honoured) and 5xx, none on 400/401/402/403; an
 * expired deadline gives ENVDB_ERR_TIMEOUT and leaves nothing behind; no
 * secret (API token, JWT) in any error message, log line or URL.
 *
 * Skips (exit 77) when the tursodb binary is missing.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <jansson.h>

#include "internal.h"
#include "turso_emulator.h"

#define ORG "acme"

static const char *tursodb;
static pid_t libsql_pid;
static int libsql_port;
static char libsql_dir[] = "/tmp/envdb-turso-libsql-XXXXXX";

/* per test */
static char tmpdir[64];
static char api_token[80];
static turso_emu *emu;
static envdbi_manifest *manifest;
static envdbi_plugins *plugins;
static int saved_stderr = -1;
static char stderr_path[128];

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void random_uuid(char out[37])
{
	unsigned char b[16];
	ck_assert_int_eq(getrandom(b, sizeof b, 0), (ssize_t)sizeof b);
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

static void start_emu(const turso_emu_options *o)
{
	turso_emu_options d = { 0 };
	if (o != NULL)
		d = *o;
	d.org = ORG;
	d.api_token = api_token;
	if (d.groups == NULL)
		d.groups = "default,other";
	d.libsql_port = libsql_port;
	turso_emu_stop(emu);
	emu = NULL;
	ck_assert_int_eq(turso_emu_start(&emu, &d), 0);
}

/* The last error message must name no secret. */
static void assert_no_secret(const char *text)
{
	ck_assert_ptr_nonnull(text);
	ck_assert_msg(strstr(text, api_token) == NULL, "API token leaked: %s", text);
	ck_assert_msg(strstr(text, "eyJ") == NULL, "a JWT leaked: %s", text);
}

static void expect_status(int rc, int want)
{
	const envdb_error *e = envdb_error_last();
	ck_assert_msg(rc == want, "status %d (%s), want %d: %s", rc, envdb_status_str(rc), want,
		      e->message);
	if (rc != 0) {
		if (getenv("ENVDB_TEST_VERBOSE") != NULL)
			printf("  [%s] %s (native %s)\n", envdb_status_str(rc), e->message,
			       e->native_code ? e->native_code : "-");
		ck_assert_msg(e->message[0] != '\0', "no message for status %d", rc);
		assert_no_secret(e->message);
	}
}

static void unload(void)
{
	envdbi_plugins_free(plugins);
	plugins = NULL;
	envdbi_manifest_free(manifest);
	manifest = NULL;
}

/* Write the manifest (the base configuration plus `extra` YAML lines at the
 * plugin's config indentation) and load the plugin.  Returns the load
 * status; *out is the plugin on success. */
static int try_load(envdbi_plugin **out, const char *extra)
{
	char path[160], tokpath[160];
	FILE *f;
	int fd, rc;

	unload();
	snprintf(tokpath, sizeof tokpath, "%s/turso.token", tmpdir);
	fd = open(tokpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, api_token, strlen(api_token)), (ssize_t)strlen(api_token));
	ck_assert_int_eq(write(fd, "\n", 1), 1);
	close(fd);

	snprintf(path, sizeof path, "%s/envdb.yaml", tmpdir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "version: 1\n"
		   "control_plane: control.db\n"
		   "plugins:\n"
		   "  - name: turso\n"
		   "    kind: adapter\n"
		   "    config:\n");
	{
		/* the base configuration; a key given in `extra` replaces it */
		char tok_line[200], url_line[200];
		const char *base[] = { "organization: " ORG, "group: default", tok_line, url_line,
				       "data_plane_scheme: http", "retry_initial_delay: 50ms",
				       "retry_max_delay: 400ms", "max_attempts: 4",
				       "ready_timeout: 20s", "cleanup_timeout: 10s" };
		size_t i;
		snprintf(tok_line, sizeof tok_line, "api_token_file: %s", tokpath);
		snprintf(url_line, sizeof url_line, "api_url: %s", turso_emu_api_url(emu));
		for (i = 0; i < sizeof(base) / sizeof(base[0]); i++) {
			char key[64];
			size_t kl = (size_t)(strchr(base[i], ':') - base[i]);
			snprintf(key, sizeof key, "      %.*s:", (int)kl, base[i]);
			if (extra == NULL || strstr(extra, key) == NULL)
				fprintf(f, "      %s\n", base[i]);
		}
	}
	fputs(extra ? extra : "", f);
	fclose(f);
	rc = envdbi_manifest_load(&manifest, path);
	if (rc != 0)
		return rc;
	rc = envdbi_plugins_load(&plugins, manifest);
	if (rc != 0)
		return rc;
	*out = envdbi_plugins_find(plugins, "turso", ENVDB_PLUGIN_ADAPTER);
	ck_assert_ptr_nonnull(*out);
	return 0;
}

static envdbi_plugin *load(const char *extra)
{
	envdbi_plugin *p = NULL;
	int rc = try_load(&p, extra);
	expect_status(rc, 0);
	return p;
}

/* A database made by create(): everything a later call needs. */
typedef struct made {
	char env[37];
	char *name, *url, *metadata;
} made;

static void made_free(made *m)
{
	free(m->name);
	free(m->url);
	free(m->metadata);
	memset(m, 0, sizeof *m);
}

static envdb_db_ref ref_of(const made *m)
{
	envdb_db_ref r = { .struct_size = sizeof(envdb_db_ref), .environment_id = m->env,
			   .database_name = m->name, .url = m->url, .metadata = m->metadata };
	return r;
}

/* database_name + create; returns create's status. */
static int make_db(envdbi_plugin *p, made *m)
{
	envdb_create_request req;

	memset(m, 0, sizeof *m);
	random_uuid(m->env);
	expect_status(envdbi_adapter_database_name(p, m->env, &m->name), 0);
	req = (envdb_create_request){ .struct_size = sizeof(envdb_create_request),
				      .environment_id = m->env, .database_name = m->name,
				      .region = "local", .plan = "free", .storage_limit_mb = 100 };
	return envdbi_adapter_create(p, &req, &m->url, &m->metadata);
}

static int mint(envdbi_plugin *p, const made *m, uint32_t auth, int64_t expires_at,
		envdbi_secret **secret, char **handle)
{
	envdb_db_ref r = ref_of(m);
	char cred[37];
	envdb_mint_request req;

	random_uuid(cred);
	req = (envdb_mint_request){ .struct_size = sizeof(envdb_mint_request), .credential_id = cred,
				    .authorization = auth, .expires_at = expires_at };
	*secret = NULL;
	*handle = NULL;
	return envdbi_adapter_mint(p, &r, &req, secret, handle);
}

static bool log_has(const char *needle)
{
	char *log = turso_emu_request_log(emu);
	bool r = strstr(log, needle) != NULL;
	free(log);
	return r;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;
	if (f == NULL)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                   */
/* ------------------------------------------------------------------------ */

static void setup(void)
{
	unsigned char r[12];
	size_t i;
	int fd;

	snprintf(tmpdir, sizeof tmpdir, "/tmp/envdb-turso-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	/* A Platform API token that is easy to spot if it ever leaks. */
	ck_assert_int_eq(getrandom(r, sizeof r, 0), (ssize_t)sizeof r);
	strcpy(api_token, "tursoplatformtoken");
	for (i = 0; i < sizeof r; i++)
		sprintf(api_token + strlen(api_token), "%02x", r[i]);
	start_emu(NULL);
	envdbi_host_set_call_timeout_ms(30000);
	/* Capture every log line (debug level) to check it for secrets. */
	setenv("ENVDB_LOG_LEVEL", "debug", 1);
	snprintf(stderr_path, sizeof stderr_path, "%s/stderr.log", tmpdir);
	fflush(stderr);
	saved_stderr = dup(2);
	fd = open(stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	dup2(fd, 2);
	close(fd);
}

static void teardown(void)
{
	char *log;
	char cmd[128];

	unload();
	fflush(stderr);
	if (saved_stderr >= 0) {
		dup2(saved_stderr, 2);
		close(saved_stderr);
		saved_stderr = -1;
	}
	/* No log line of any test carries a secret. */
	log = read_file(stderr_path);
	{
		/* Pass on what is not ours (valgrind's and sanitizers' reports). */
		char *line, *save = NULL, *copy = strdup(log);
		for (line = copy ? strtok_r(copy, "\n", &save) : NULL; line != NULL;
		     line = strtok_r(NULL, "\n", &save))
			if (strncmp(line, "envdb: ", 7) != 0)
				fprintf(stderr, "%s\n", line);
		free(copy);
	}
	ck_assert_msg(strstr(log, api_token) == NULL, "API token in the log");
	ck_assert_msg(strstr(log, "eyJ") == NULL, "a JWT in the log");
	free(log);
	if (emu != NULL) {
		/* ... nor any URL the plugin requested */
		ck_assert_msg(!log_has(api_token), "API token in a request URL");
		ck_assert_msg(!log_has("eyJ"), "a JWT in a request URL");
	}
	turso_emu_stop(emu);
	emu = NULL;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                 */
/* ------------------------------------------------------------------------ */

START_TEST(lifecycle)
{
	envdbi_plugin *p = load(NULL);
	made m;
	envdbi_secret *full = NULL, *ro = NULL;
	char *h1 = NULL, *h2 = NULL, **names = NULL;
	size_t n = 0, i;
	bool listed = false;
	envdb_db_ref r;
	uint64_t caps = envdbi_plugin_capabilities(p);

	/* honest capabilities: no single-token revocation */
	ck_assert(caps & ENVDB_ADAPTER_CAP_READ_ONLY);
	ck_assert(caps & ENVDB_ADAPTER_CAP_EXPIRY);
	ck_assert(caps & ENVDB_ADAPTER_CAP_ROTATE_OVERLAP);
	ck_assert(caps & ENVDB_ADAPTER_CAP_AUTHENTICATES);
	ck_assert(caps & ENVDB_ADAPTER_CAP_PROBE);
	ck_assert(caps & ENVDB_ADAPTER_CAP_LIST);
	ck_assert(!(caps & ENVDB_ADAPTER_CAP_REVOKE));
	ck_assert(envdbi_plugin_descriptor(p)->flags & ENVDB_PLUGIN_REMOTE);

	expect_status(make_db(p, &m), 0);
	/* env-<32 hex of the uuid> */
	ck_assert_int_eq(strlen(m.name), 36);
	ck_assert(strncmp(m.name, "env-", 4) == 0);
	ck_assert(turso_emu_has_db(emu, m.name));
	/* plain-http data plane: http://<Hostname> */
	ck_assert_msg(strncmp(m.url, "http://", 7) == 0 && strstr(m.url, m.name) != NULL, "%s",
		      m.url);
	ck_assert(strstr(m.metadata, "\"DbId\"") && strstr(m.metadata, "\"Hostname\"") &&
		  strstr(m.metadata, "\"group\":\"default\""));
	ck_assert(strstr(m.metadata, "\"adopted\":false"));
	/* readiness was checked over /v2/pipeline */
	ck_assert_int_ge(turso_emu_count(emu, "pipeline"), 1);

	expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &full, &h1), 0);
	ck_assert(strncmp(full->data, "eyJ", 3) == 0);
	ck_assert(strstr(h1, "full-access") != NULL);
	assert_no_secret(h1);
	ck_assert(log_has("authorization=full-access"));
	ck_assert(log_has("expiration=never"));
	expect_status(mint(p, &m, ENVDB_AUTH_READ_ONLY, 0, &ro, &h2), 0);
	ck_assert(log_has("authorization=read-only"));
	ck_assert_str_ne(full->data, ro->data);
	/* tokens are minted without a body */
	ck_assert_int_eq(turso_emu_mint_bodies(emu), 0);

	r = ref_of(&m);
	expect_status(envdbi_adapter_probe(p, &r, full), 0);
	expect_status(envdbi_adapter_probe(p, &r, ro), 0);
	/* both tokens keep working: overlap, no rotation */
	expect_status(envdbi_adapter_probe(p, &r, full), 0);

	expect_status(envdbi_adapter_list(p, &names, &n), 0);
	for (i = 0; i < n; i++)
		listed = listed || strcmp(names[i], m.name) == 0;
	ck_assert(listed);
	envdbi_strv_free(names, n);

	expect_status(envdbi_adapter_drop(p, &r), 0);
	ck_assert(!turso_emu_has_db(emu, m.name));
	/* already gone is success */
	expect_status(envdbi_adapter_drop(p, &r), 0);
	/* the token no longer reaches anything */
	expect_status(envdbi_adapter_probe(p, &r, full), ENVDB_ERR_NOT_FOUND);
	ck_assert(strstr(envdb_error_last()->message, "HTTP 404") != NULL);

	/* never a group-wide rotation */
	ck_assert_int_eq(turso_emu_count(emu, "rotate"), 0);
	ck_assert_int_eq(turso_emu_count(emu, "rotate-group"), 0);

	envdbi_secret_free(full);
	envdbi_secret_free(ro);
	free(h1);
	free(h2);
	made_free(&m);
}
END_TEST

/* A database the v4 -> v5 migration registered under its legacy name and
 * URL, with metadata {"migrated_from": ...} instead of the adapter's own
 * (no DbId, Hostname or group): the Platform API addresses databases by
 * organization and name, so mint (and rotation) and drop work as for any
 * other; list does not report it (not a name the adapter derives). */
START_TEST(migrated_database)
{
	envdbi_plugin *p = load(NULL);
	made m;
	envdbi_secret *s1 = NULL, *s2 = NULL, *s3 = NULL;
	char *h1 = NULL, *h2 = NULL, *h3 = NULL, **names = NULL, cred[37];
	envdb_mint_request req;
	envdb_db_ref r;
	size_t n = 0, i;

	memset(&m, 0, sizeof m);
	random_uuid(m.env);
	m.name = strdup("tenant-acme-7");
	m.url = strdup("libsql://tenant-acme-7-" ORG ".turso.io");
	m.metadata = strdup("{\"migrated_from\":{\"object\":\"sys_tenant_database\","
			    "\"id\":\"3f0c8a3e-1111-4222-8333-444455556666\"}}");
	ck_assert(m.name && m.url && m.metadata);
	turso_emu_put_db(emu, m.name, "default");

	expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s1, &h1), 0);
	ck_assert(strncmp(s1->data, "eyJ", 3) == 0);
	/* a rotation: a new token, the previous handle passed along */
	r = ref_of(&m);
	random_uuid(cred);
	req = (envdb_mint_request){ .struct_size = sizeof(envdb_mint_request), .credential_id = cred,
				    .authorization = ENVDB_AUTH_FULL_ACCESS, .previous_handle = h1 };
	expect_status(envdbi_adapter_mint(p, &r, &req, &s2, &h2), 0);
	ck_assert_str_ne(s1->data, s2->data);

	expect_status(envdbi_adapter_list(p, &names, &n), 0);
	for (i = 0; i < n; i++)
		ck_assert_str_ne(names[i], m.name);
	envdbi_strv_free(names, n);

	/* env delete drops it like any environment's database */
	expect_status(envdbi_adapter_drop(p, &r), 0);
	ck_assert(!turso_emu_has_db(emu, m.name));
	expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s3, &h3), ENVDB_ERR_NOT_FOUND);
	ck_assert(strstr(envdb_error_last()->message, m.name) != NULL);

	envdbi_secret_free(s1);
	envdbi_secret_free(s2);
	envdbi_secret_free(s3);
	free(h1);
	free(h2);
	free(h3);
	made_free(&m);
}
END_TEST

/* Hostname straight at tursodb: a real libSQL server answers SELECT 1. */
START_TEST(lifecycle_direct)
{
	turso_emu_options o = { .dataplane = TURSO_EMU_DIRECT };
	envdbi_plugin *p;
	made m;
	envdbi_secret *s = NULL;
	char *h = NULL;
	envdb_db_ref r;
	char port[16];

	start_emu(&o);
	p = load(NULL);
	expect_status(make_db(p, &m), 0);
	snprintf(port, sizeof port, ":%d", libsql_port);
	ck_assert_msg(strstr(m.url, port) != NULL, "%s", m.url);
	expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s, &h), 0);
	r = ref_of(&m);
	expect_status(envdbi_adapter_probe(p, &r, s), 0);
	/* the gateway was not involved */
	ck_assert_int_eq(turso_emu_count(emu, "pipeline"), 0);
	expect_status(envdbi_adapter_drop(p, &r), 0);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	envdbi_secret_free(s);
	free(h);
	made_free(&m);
}
END_TEST

/* data_plane_url: every database through one base URL (self-hosting). */
START_TEST(data_plane_url_override)
{
	envdbi_plugin *p;
	made m;
	envdbi_secret *s = NULL;
	char *h = NULL, extra[128];
	envdb_db_ref r;

	start_emu(&(turso_emu_options){ .dataplane = TURSO_EMU_DIRECT });
	snprintf(extra, sizeof extra, "      data_plane_url: http://127.0.0.1:%d/\n", libsql_port);
	p = load(extra);
	expect_status(make_db(p, &m), 0);
	snprintf(extra, sizeof extra, "http://127.0.0.1:%d", libsql_port);
	ck_assert_str_eq(m.url, extra);
	expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s, &h), 0);
	r = ref_of(&m);
	expect_status(envdbi_adapter_probe(p, &r, s), 0);
	expect_status(envdbi_adapter_drop(p, &r), 0);
	envdbi_secret_free(s);
	free(h);
	made_free(&m);
}
END_TEST

/* A server that keeps the stream open gets a close with the baton. */
START_TEST(baton_closed)
{
	envdbi_plugin *p;
	made m;
	envdbi_secret *s = NULL;
	char *h = NULL;
	envdb_db_ref r;

	start_emu(&(turso_emu_options){ .gateway_baton = true });
	p = load(NULL);
	expect_status(make_db(p, &m), 0);
	ck_assert_int_eq(turso_emu_count(emu, "close"), 1);
	expect_status(mint(p, &m, ENVDB_AUTH_READ_ONLY, 0, &s, &h), 0);
	r = ref_of(&m);
	expect_status(envdbi_adapter_probe(p, &r, s), 0);
	ck_assert_int_eq(turso_emu_count(emu, "close"), 2);
	expect_status(envdbi_adapter_drop(p, &r), 0);
	envdbi_secret_free(s);
	free(h);
	made_free(&m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Adoption                                                                  */
/* ------------------------------------------------------------------------ */

static const int dup_variants[] = { 409, 400, 422 };

/* adapter.h: "If it already exists return ENVDB_ERR_EXISTS and change
 * nothing" -- on each duplicate-name variant, with no earlier ambiguous
 * attempt of the same call: no adoption, no GET, no delete. */
START_TEST(duplicate_is_exists)
{
	envdbi_plugin *p;
	made m;
	char name[64], env[37];
	envdb_create_request req;

	turso_emu_set_duplicate_status(emu, dup_variants[_i]);
	p = load(NULL);
	random_uuid(env);
	memset(&m, 0, sizeof m);
	strcpy(m.env, env);
	expect_status(envdbi_adapter_database_name(p, env, &m.name), 0);
	snprintf(name, sizeof name, "%s", m.name);
	turso_emu_put_db(emu, name, "default");
	req = (envdb_create_request){ .struct_size = sizeof req, .environment_id = env,
				      .database_name = name, .plan = "free", .storage_limit_mb = 10 };
	expect_status(envdbi_adapter_create(p, &req, &m.url, &m.metadata), ENVDB_ERR_EXISTS);
	ck_assert_ptr_null(m.url);
	ck_assert_int_eq(turso_emu_count(emu, "create"), 1);
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 0);
	ck_assert_int_eq(turso_emu_count(emu, "mint"), 0);
	ck_assert(turso_emu_has_db(emu, name));
	ck_assert_int_eq(turso_emu_db_count(emu), 1);
	made_free(&m);
}
END_TEST

/* The same call's first attempt made the database but its answer was a
 * 500; the GET before the re-POST did not see it yet (404, a lagging read);
 * the re-POST says "duplicate": that is this call's database, adopted. */
START_TEST(adopt_after_ambiguous_duplicate)
{
	envdbi_plugin *p;
	made m;

	turso_emu_set_duplicate_status(emu, dup_variants[_i]);
	p = load(NULL);
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 1, .status = 500,
						    .retry_after = -1, .perform = true });
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "get", .count = 1, .status = 404,
						    .retry_after = -1 });
	expect_status(make_db(p, &m), 0);
	ck_assert(strstr(m.metadata, "\"adopted\":true"));
	ck_assert_int_eq(turso_emu_count(emu, "create"), 2);
	ck_assert_int_eq(turso_emu_count(emu, "get"), 2);
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 0);
	ck_assert_int_eq(turso_emu_db_count(emu), 1);
	made_free(&m);
}
END_TEST

START_TEST(no_adoption_across_groups)
{
	envdbi_plugin *p = load(NULL);
	char *name = NULL, *url = NULL, *meta = NULL, env[37], grp[32];
	envdb_create_request req;

	turso_emu_set_duplicate_status(emu, 400);
	random_uuid(env);
	expect_status(envdbi_adapter_database_name(p, env, &name), 0);
	turso_emu_put_db(emu, name, "other");
	req = (envdb_create_request){ .struct_size = sizeof req, .environment_id = env,
				      .database_name = name, .plan = "free", .storage_limit_mb = 10 };
	expect_status(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_ERR_EXISTS);
	/* someone else's database is left alone */
	ck_assert(turso_emu_has_db(emu, name));
	turso_emu_db_group(emu, name, grp, sizeof grp);
	ck_assert_str_eq(grp, "other");
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 0);
	free(name);
}
END_TEST

/* Issue 14: an ambiguous create answer (a 500 that made nothing), then the
 * GET before the re-POST finds the name in ANOTHER group: "not adopting
 * it" -- and not deleting it either (the compensation used to). */
START_TEST(ambiguous_create_foreign_kept)
{
	envdbi_plugin *p = load(NULL);
	char *name = NULL, *url = NULL, *meta = NULL, env[37], grp[32];
	envdb_create_request req;

	random_uuid(env);
	expect_status(envdbi_adapter_database_name(p, env, &name), 0);
	turso_emu_put_db(emu, name, "other");
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 1, .status = 500,
						    .retry_after = -1 });
	req = (envdb_create_request){ .struct_size = sizeof req, .environment_id = env,
				      .database_name = name, .plan = "free", .storage_limit_mb = 10 };
	expect_status(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_ERR_EXISTS);
	ck_assert(strstr(envdb_error_last()->message, "group other") != NULL);
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 0);
	turso_emu_db_group(emu, name, grp, sizeof grp);
	ck_assert_str_eq(grp, "other");
	free(name);
}
END_TEST

/* Issue 14: a duplicate answer whose confirming GET fails (5xx) used to be
 * UNAVAILABLE, and the host's drop then deleted by name.  Now the
 * duplicate is EXISTS at once, and drop verifies the group before any
 * DELETE: a database of another group is kept and reported. */
START_TEST(drop_verifies_group)
{
	envdbi_plugin *p = load(NULL);
	char *name = NULL, *url = NULL, *meta = NULL, env[37], grp[32];
	envdb_create_request req;
	envdb_db_ref r;

	random_uuid(env);
	expect_status(envdbi_adapter_database_name(p, env, &name), 0);
	turso_emu_put_db(emu, name, "other");
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "get", .count = 100, .status = 503,
						    .retry_after = -1 });
	req = (envdb_create_request){ .struct_size = sizeof req, .environment_id = env,
				      .database_name = name, .plan = "free", .storage_limit_mb = 10 };
	expect_status(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_ERR_EXISTS);
	/* what the host does after a failed create: drop by name alone */
	r = (envdb_db_ref){ .struct_size = sizeof r, .environment_id = env, .database_name = name };
	/* the GET still fails: nothing can be verified, nothing is deleted */
	ck_assert_int_ne(envdbi_adapter_drop(p, &r), 0);
	ck_assert(strstr(envdb_error_last()->message, "not deleted") != NULL);
	turso_emu_clear_faults(emu);
	expect_status(envdbi_adapter_drop(p, &r), ENVDB_ERR_PERMISSION);
	ck_assert(strstr(envdb_error_last()->message, "group other") != NULL);
	ck_assert(strstr(envdb_error_last()->message, name) != NULL);
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 0);
	turso_emu_db_group(emu, name, grp, sizeof grp);
	ck_assert_str_eq(grp, "other");
	free(name);
}
END_TEST

/* drop: a database of our group whose DbId is not the one create
 * returned (deleted and re-created by someone else) is kept. */
START_TEST(drop_verifies_dbid)
{
	envdbi_plugin *p = load(NULL);
	made m;
	envdb_db_ref r;
	char *meta;

	expect_status(make_db(p, &m), 0);
	meta = strdup("{\"DbId\":\"00000000-0000-4000-8000-000000000000\",\"group\":"
		      "\"default\"}");
	r = ref_of(&m);
	r.metadata = meta;
	expect_status(envdbi_adapter_drop(p, &r), ENVDB_ERR_STATE);
	ck_assert(strstr(envdb_error_last()->message, "DbId") != NULL);
	ck_assert(turso_emu_has_db(emu, m.name));
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 0);
	/* with create's own metadata it goes */
	r = ref_of(&m);
	expect_status(envdbi_adapter_drop(p, &r), 0);
	ck_assert(!turso_emu_has_db(emu, m.name));
	free(meta);
	made_free(&m);
}
END_TEST

/* A 500 after the database was made: GET before re-POST finds and adopts it. */
START_TEST(ambiguous_failure_adopts)
{
	envdbi_plugin *p = load(NULL);
	made m;

	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 1, .status = 500,
						    .retry_after = -1, .perform = true });
	expect_status(make_db(p, &m), 0);
	ck_assert_int_eq(turso_emu_count(emu, "create"), 1);
	ck_assert_int_eq(turso_emu_count(emu, "get"), 1);
	ck_assert_int_eq(turso_emu_db_count(emu), 1);
	made_free(&m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Compensation                                                              */
/* ------------------------------------------------------------------------ */

START_TEST(compensate_mint_failure)
{
	envdbi_plugin *p = load(NULL);
	made m;

	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "mint", .count = 100, .status = 403,
						    .retry_after = -1 });
	expect_status(make_db(p, &m), ENVDB_ERR_PERMISSION);
	ck_assert(strstr(envdb_error_last()->message, "HTTP 403") != NULL);
	ck_assert(strstr(envdb_error_last()->message, "deleted again") != NULL);
	ck_assert_int_eq(turso_emu_count(emu, "mint"), 1); /* 403 is not retried */
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 1);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	made_free(&m);
}
END_TEST

START_TEST(compensate_not_ready)
{
	envdbi_plugin *p = load("      ready_timeout: 1s\n");
	made m;

	turso_emu_set_ready_delay(emu, 60000);
	expect_status(make_db(p, &m), ENVDB_ERR_TIMEOUT);
	ck_assert(strstr(envdb_error_last()->message, "HTTP 404") != NULL);
	ck_assert_int_ge(turso_emu_count(emu, "pipeline"), 2);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	made_free(&m);
}
END_TEST

/* A new database answers 404 for a while: polled until it answers. */
START_TEST(waits_for_readiness)
{
	envdbi_plugin *p = load(NULL);
	made m;
	int64_t t0 = mono_ms();

	turso_emu_set_ready_delay(emu, 1200);
	expect_status(make_db(p, &m), 0);
	ck_assert_int_ge(mono_ms() - t0, 1200);
	ck_assert_int_ge(turso_emu_count(emu, "pipeline"), 2);
	made_free(&m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Retries                                                                   */
/* ------------------------------------------------------------------------ */

START_TEST(retry_429_retry_after)
{
	envdbi_plugin *p = load(NULL);
	made m;
	int64_t t0 = mono_ms();

	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 2, .status = 429,
						    .retry_after = 1 });
	expect_status(make_db(p, &m), 0);
	ck_assert_int_eq(turso_emu_count(emu, "create"), 3);
	/* GET before every re-POST */
	ck_assert_int_eq(turso_emu_count(emu, "get"), 2);
	/* Retry-After: 1 honoured twice (backoff alone would be < 1 s) */
	ck_assert_int_ge(mono_ms() - t0, 2000);
	ck_assert_int_eq(turso_emu_db_count(emu), 1);
	made_free(&m);
}
END_TEST

START_TEST(retry_5xx_bounded)
{
	envdbi_plugin *p = load("      max_attempts: 3\n");
	made m;
	const char *msg;

	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 100, .status = 503,
						    .retry_after = -1,
						    .body = "{\"error\":\"upstream overloaded\"}" });
	expect_status(make_db(p, &m), ENVDB_ERR_UNAVAILABLE);
	msg = envdb_error_last()->message;
	ck_assert_msg(strstr(msg, "create database") && strstr(msg, "HTTP 503") &&
			      strstr(msg, "upstream overloaded"),
		      "%s", msg);
	ck_assert_int_eq(turso_emu_count(emu, "create"), 3);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	made_free(&m);
}
END_TEST

/* mint on a live database: 500s retried up to max_attempts, then fail. */
START_TEST(retry_mint_bounded)
{
	envdbi_plugin *p = load("      max_attempts: 3\n");
	made m;
	envdbi_secret *s = NULL;
	char *h = NULL;
	int before;

	expect_status(make_db(p, &m), 0);
	before = turso_emu_count(emu, "mint");
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "mint", .count = 100, .status = 500,
						    .retry_after = -1 });
	expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s, &h), ENVDB_ERR_UNAVAILABLE);
	ck_assert(strstr(envdb_error_last()->message, "HTTP 500") != NULL);
	ck_assert_int_eq(turso_emu_count(emu, "mint") - before, 3);
	ck_assert_ptr_null(s);
	/* then network errors (dropped connections) twice, then success */
	turso_emu_clear_faults(emu);
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "mint", .count = 2, .drop = true,
						    .retry_after = -1 });
	before = turso_emu_count(emu, "mint");
	expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s, &h), 0);
	ck_assert_int_eq(turso_emu_count(emu, "mint") - before, 3);
	envdbi_secret_free(s);
	free(h);
	made_free(&m);
}
END_TEST

static const int no_retry_status[] = { 400, 401, 402, 403 };

START_TEST(no_retry_on_4xx)
{
	envdbi_plugin *p = load(NULL);
	made m;
	/* a definite authorization failure (401, 403) is AUTH: nothing made */
	static const int want[] = { ENVDB_ERR_INVALID, ENVDB_ERR_AUTH, ENVDB_ERR_PERMISSION,
				    ENVDB_ERR_AUTH };
	char code[16];

	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 100,
						    .status = no_retry_status[_i],
						    .retry_after = -1 });
	expect_status(make_db(p, &m), want[_i]);
	ck_assert_int_eq(turso_emu_count(emu, "create"), 1);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	/* nothing was created: nothing to compensate */
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 0);
	snprintf(code, sizeof code, "HTTP %d", no_retry_status[_i]);
	ck_assert_str_eq(envdb_error_last()->native_code, code);
	ck_assert(strstr(envdb_error_last()->message, code) != NULL);
	made_free(&m);
}
END_TEST

/* A wrong API token is found at init (GET /v1/auth/validate), before any
 * create could half-register an environment. */
START_TEST(wrong_api_token)
{
	envdbi_plugin *p = NULL;
	char good[sizeof api_token];

	/* The emulator expects another token than the plugin sends. */
	snprintf(good, sizeof good, "%s", api_token);
	api_token[5] ^= 1;
	start_emu(NULL);
	snprintf(api_token, sizeof api_token, "%s", good);
	expect_status(try_load(&p, NULL), ENVDB_ERR_AUTH);
	ck_assert(strstr(envdb_error_last()->message, "HTTP 401") != NULL);
	ck_assert(strstr(envdb_error_last()->message, "validate") != NULL);
	ck_assert_int_eq(turso_emu_count(emu, "validate"), 1);
	ck_assert(log_has("GET /v1/auth/validate"));
	ck_assert_int_eq(turso_emu_count(emu, "create"), 0);
	/* an expired token too */
	start_emu(&(turso_emu_options){ .api_token_exp = (int64_t)time(NULL) - 60 });
	expect_status(try_load(&p, NULL), ENVDB_ERR_AUTH);
	ck_assert(strstr(envdb_error_last()->message, "expired") != NULL);
	/* an answer that is not definite (503) does not stop the start */
	start_emu(NULL);
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "validate", .count = 1, .status = 503,
						    .retry_after = -1 });
	expect_status(try_load(&p, NULL), 0);
	/* and validate_token: no skips the request */
	start_emu(NULL);
	expect_status(try_load(&p, "      validate_token: no\n"), 0);
	ck_assert_int_eq(turso_emu_count(emu, "validate"), 0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Deadlines                                                                 */
/* ------------------------------------------------------------------------ */

/* A slow answer to create (the database is made, the answer never comes in
 * time): TIMEOUT, and the compensating delete leaves nothing. */
START_TEST(deadline_slow_create)
{
	envdbi_plugin *p = load(NULL);
	made m;
	int64_t t0;

	envdbi_host_set_call_timeout_ms(1500);
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 1, .delay_ms = 8000,
						    .retry_after = -1 });
	t0 = mono_ms();
	expect_status(make_db(p, &m), ENVDB_ERR_TIMEOUT);
	ck_assert_int_lt(mono_ms() - t0, 6000);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	ck_assert_int_ge(turso_emu_count(emu, "delete"), 1);
	made_free(&m);
}
END_TEST

/* Retry-After beyond the deadline: give up at once, not after sleeping. */
START_TEST(deadline_retry_after)
{
	envdbi_plugin *p = load(NULL);
	made m;
	int64_t t0;

	envdbi_host_set_call_timeout_ms(2000);
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 100, .status = 429,
						    .retry_after = 30 });
	t0 = mono_ms();
	expect_status(make_db(p, &m), ENVDB_ERR_TIMEOUT);
	ck_assert_int_lt(mono_ms() - t0, 1500);
	ck_assert(strstr(envdb_error_last()->message, "HTTP 429") != NULL);
	ck_assert_int_eq(turso_emu_count(emu, "create"), 1);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	made_free(&m);
}
END_TEST

/* The deadline passes while waiting for readiness: TIMEOUT, deleted. */
START_TEST(deadline_readiness)
{
	envdbi_plugin *p = load(NULL);
	made m;

	envdbi_host_set_call_timeout_ms(1500);
	turso_emu_set_ready_delay(emu, 60000);
	expect_status(make_db(p, &m), ENVDB_ERR_TIMEOUT);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	made_free(&m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Names, list, config                                                       */
/* ------------------------------------------------------------------------ */

START_TEST(names_validated_before_any_request)
{
	envdbi_plugin *p = load(NULL);
	char *name = NULL, *url = NULL, *meta = NULL, env[37];
	envdb_create_request req;

	expect_status(envdbi_adapter_database_name(p, "not-a-uuid", &name), ENVDB_ERR_INVALID);
	ck_assert_ptr_null(name);
	random_uuid(env);
	expect_status(envdbi_adapter_database_name(p, env, &name), 0);
	/* deterministic */
	{
		char *again = NULL, hex[33];
		size_t i, o = 0;
		expect_status(envdbi_adapter_database_name(p, env, &again), 0);
		ck_assert_str_eq(name, again);
		free(again);
		for (i = 0; env[i]; i++)
			if (env[i] != '-')
				hex[o++] = env[i];
		hex[o] = '\0';
		ck_assert_str_eq(name + 4, hex);
	}
	req = (envdb_create_request){ .struct_size = sizeof req, .environment_id = env,
				      .database_name = "Bad_Name", .plan = "free", .storage_limit_mb = 10 };
	expect_status(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_ERR_INVALID);
	req.database_name = "env-0123";
	expect_status(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_ERR_INVALID);
	ck_assert_int_eq(turso_emu_count(emu, "create"), 0);
	free(name);
}
END_TEST

START_TEST(config_errors)
{
	envdbi_plugin *p = NULL;
	char path[160];
	FILE *f;

	/* organization + name too long for one hostname label */
	unload();
	snprintf(path, sizeof path, "%s/envdb.yaml", tmpdir);
	ck_assert_int_eq(try_load(&p, "      token_expiration: 7x\n"), ENVDB_ERR_CONFIG);
	ck_assert(strstr(envdb_error_last()->message, "token_expiration") != NULL);
	ck_assert_int_eq(try_load(&p, "      max_attempts: 0\n"), ENVDB_ERR_CONFIG);
	ck_assert_int_eq(try_load(&p, "      data_plane_scheme: ftp\n"), ENVDB_ERR_CONFIG);
	ck_assert_int_eq(try_load(&p, "      no_such_key: 1\n"), ENVDB_ERR_CONFIG);
	/* an inline secret is refused by the host */
	ck_assert_int_eq(try_load(&p, "      api_token: inline\n"), ENVDB_ERR_CONFIG);
	/* a long organization slug leaves no room for env-<32 hex> */
	unload();
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "version: 1\nplugins:\n  - name: turso\n    kind: adapter\n    config:\n"
		   "      organization: a-very-long-organization-slug-indeed\n"
		   "      api_token_env: ENVDB_TEST_TURSO_TOKEN\n");
	fclose(f);
	setenv("ENVDB_TEST_TURSO_TOKEN", api_token, 1);
	ck_assert_int_eq(envdbi_manifest_load(&manifest, path), 0);
	ck_assert_int_eq(envdbi_plugins_load(&plugins, manifest), ENVDB_ERR_CONFIG);
	ck_assert(strstr(envdb_error_last()->message, "hostname label") != NULL);
	assert_no_secret(envdb_error_last()->message);
	unsetenv("ENVDB_TEST_TURSO_TOKEN");
	ck_assert_int_eq(turso_emu_count(emu, "create"), 0);
}
END_TEST

START_TEST(list_ours_only)
{
	envdbi_plugin *p;
	made a, b, c;
	char **names = NULL;
	size_t n = 0, i;
	char foreign[64], env[37];

	start_emu(&(turso_emu_options){ .page_size = 2 });
	p = load(NULL);
	expect_status(make_db(p, &a), 0);
	expect_status(make_db(p, &b), 0);
	expect_status(make_db(p, &c), 0);
	/* not ours: another name pattern, or our pattern in another group */
	turso_emu_put_db(emu, "customer-db", "default");
	turso_emu_put_db(emu, "env-notahexname000000000000000000000", "default");
	random_uuid(env);
	snprintf(foreign, sizeof foreign, "env-%.8s%.4s%.4s%.4s%.12s", env, env + 9, env + 14,
		 env + 19, env + 24);
	turso_emu_put_db(emu, foreign, "other");
	expect_status(envdbi_adapter_list(p, &names, &n), 0);
	ck_assert_int_eq(n, 3);
	for (i = 0; i < n; i++)
		ck_assert(strcmp(names[i], a.name) == 0 || strcmp(names[i], b.name) == 0 ||
			  strcmp(names[i], c.name) == 0);
	/* 3 of ours + 2 foreign in the group, 2 per page: 3 pages */
	ck_assert_int_eq(turso_emu_count(emu, "list"), 3);
	envdbi_strv_free(names, n);
	made_free(&a);
	made_free(&b);
	made_free(&c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Tokens and secrets                                                        */
/* ------------------------------------------------------------------------ */

START_TEST(mint_expiry)
{
	envdbi_plugin *p = load("      token_expiration: 7d\n");
	made m;
	envdbi_secret *s = NULL;
	char *h = NULL;

	expect_status(make_db(p, &m), 0);
	/* no expiry from the host: the configured one */
	expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s, &h), 0);
	ck_assert(log_has("expiration=7d&authorization=full-access"));
	envdbi_secret_free(s);
	free(h);
	/* the host's expiry, as a Turso duration */
	expect_status(mint(p, &m, ENVDB_AUTH_READ_ONLY, (int64_t)time(NULL) + 90000, &s, &h), 0);
	ck_assert(log_has("expiration=1d1h&authorization=read-only") ||
		  log_has("expiration=1d59m59s&authorization=read-only"));
	envdbi_secret_free(s);
	free(h);
	/* an expiry in the past is refused before any request */
	expect_status(mint(p, &m, ENVDB_AUTH_READ_ONLY, (int64_t)time(NULL) - 10, &s, &h),
		      ENVDB_ERR_INVALID);
	made_free(&m);
}
END_TEST

/* ABI 1.1 granted_expires_at: the expiry Turso really applies, which is
 * the configured token_expiration when the host asks for none. */
static int mint_granted(envdbi_plugin *p, const made *m, uint32_t auth, int64_t expires_at,
			int64_t *granted, envdbi_secret **secret, char **handle)
{
	envdb_db_ref r = ref_of(m);
	char cred[37];
	envdb_mint_request req;

	random_uuid(cred);
	memset(&req, 0, sizeof req);
	req.struct_size = sizeof req;
	req.credential_id = cred;
	req.authorization = auth;
	req.expires_at = expires_at;
	req.granted_expires_at = granted;
	*granted = -1;
	*secret = NULL;
	*handle = NULL;
	return envdbi_adapter_mint(p, &r, &req, secret, handle);
}

START_TEST(mint_reports_granted_expiry)
{
	envdbi_plugin *p = load("      token_expiration: 7d\n");
	made m;
	envdbi_secret *s = NULL;
	char *h = NULL;
	int64_t g, now = (int64_t)time(NULL), asked = now + 3600;

	expect_status(make_db(p, &m), 0);
	expect_status(mint_granted(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &g, &s, &h), 0);
	ck_assert_msg(g >= now + 7 * 86400 && g <= (int64_t)time(NULL) + 7 * 86400,
		      "granted %lld, want about now+7d", (long long)g);
	envdbi_secret_free(s);
	free(h);
	expect_status(mint_granted(p, &m, ENVDB_AUTH_READ_ONLY, asked, &g, &s, &h), 0);
	ck_assert_int_eq(g, asked);
	envdbi_secret_free(s);
	free(h);
	made_free(&m);
	/* never: no expiry */
	p = load(NULL);
	expect_status(make_db(p, &m), 0);
	expect_status(mint_granted(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &g, &s, &h), 0);
	ck_assert_int_eq(g, 0);
	envdbi_secret_free(s);
	free(h);
	made_free(&m);
}
END_TEST

/* Two mints within one second get different handles. */
START_TEST(handles_unique)
{
	envdbi_plugin *p = load(NULL);
	made m;
	envdbi_secret *s1 = NULL, *s2 = NULL;
	char *h1 = NULL, *h2 = NULL;
	time_t t0;

	expect_status(make_db(p, &m), 0);
	do {
		envdbi_secret_free(s1);
		envdbi_secret_free(s2);
		free(h1);
		free(h2);
		t0 = time(NULL);
		expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s1, &h1), 0);
		expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s2, &h2), 0);
	} while (time(NULL) != t0);
	ck_assert_str_ne(h1, h2);
	assert_no_secret(h1);
	envdbi_secret_free(s1);
	envdbi_secret_free(s2);
	free(h1);
	free(h2);
	made_free(&m);
}
END_TEST

/* The readiness mint right after create honours max_attempts under a
 * persistent 500 (it used to poll until the deadline: 24 attempts in
 * 29 s), and the database is deleted again. */
START_TEST(mint_after_create_bounded)
{
	envdbi_plugin *p = load("      max_attempts: 3\n");
	made m;
	int64_t t0;

	envdbi_host_set_call_timeout_ms(8000);
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "mint", .count = 100, .status = 500,
						    .retry_after = -1 });
	t0 = mono_ms();
	expect_status(make_db(p, &m), ENVDB_ERR_UNAVAILABLE);
	ck_assert_int_eq(turso_emu_count(emu, "mint"), 3);
	ck_assert_int_lt(mono_ms() - t0, 5000);
	ck_assert(strstr(envdb_error_last()->message, "HTTP 500") != NULL);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	made_free(&m);
}
END_TEST

/* SELECT 1 answered with something else, on a stream the server kept
 * open: the error is reported and the stream is closed all the same. */
START_TEST(bad_select1_closes_stream)
{
	envdbi_plugin *p;
	made m;
	envdbi_secret *s = NULL;
	char *h = NULL;
	envdb_db_ref r;
	static const char bad[] =
		"{\"baton\":\"b-bad\",\"base_url\":null,\"results\":[{\"type\":\"ok\","
		"\"response\":{\"type\":\"execute\",\"result\":{\"cols\":[],\"rows\":[[{"
		"\"type\":\"integer\",\"value\":\"2\"}]]}}}]}";

	start_emu(&(turso_emu_options){ .gateway_baton = true });
	p = load(NULL);
	expect_status(make_db(p, &m), 0);
	ck_assert_int_eq(turso_emu_count(emu, "close"), 1);
	expect_status(mint(p, &m, ENVDB_AUTH_READ_ONLY, 0, &s, &h), 0);
	r = ref_of(&m);
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "pipeline", .count = 1, .status = 200,
						    .retry_after = -1, .body = bad });
	expect_status(envdbi_adapter_probe(p, &r, s), ENVDB_ERR_GENERIC);
	ck_assert(strstr(envdb_error_last()->message, "SELECT 1") != NULL);
	ck_assert_int_eq(turso_emu_count(emu, "close"), 2);
	envdbi_secret_free(s);
	free(h);
	made_free(&m);
}
END_TEST

/* ca_file: CURLOPT_CAINFO for private CAs; a missing file is a
 * configuration error at start. */
START_TEST(ca_file_setting)
{
	envdbi_plugin *p = NULL;
	char extra[256], pem[160];
	FILE *f;
	made m;

	snprintf(extra, sizeof extra, "      ca_file: %s/no-such-ca.pem\n", tmpdir);
	expect_status(try_load(&p, extra), ENVDB_ERR_CONFIG);
	ck_assert(strstr(envdb_error_last()->message, "ca_file") != NULL);
	snprintf(pem, sizeof pem, "%s/ca.pem", tmpdir);
	f = fopen(pem, "w");
	ck_assert_ptr_nonnull(f);
	fputs("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", f);
	fclose(f);
	snprintf(extra, sizeof extra, "      ca_file: %s\n", pem);
	p = load(extra);
	expect_status(make_db(p, &m), 0);
	made_free(&m);
}
END_TEST

/* ENVDB_ADAPTER_CAP_DEPLOYMENT: two deployments share one group, each
 * with its own name_prefix (the ownership marker) bound to its id:
 * neither lists nor drops (nor mints for) the other's databases. */
static int make_db_dep(envdbi_plugin *p, made *m, const char *dep)
{
	envdb_create_request req;

	memset(m, 0, sizeof *m);
	random_uuid(m->env);
	expect_status(envdbi_adapter_database_name(p, m->env, &m->name), 0);
	memset(&req, 0, sizeof req);
	req.struct_size = sizeof req;
	req.environment_id = m->env;
	req.database_name = m->name;
	req.plan = "free";
	req.storage_limit_mb = 100;
	req.deployment_id = dep;
	return envdbi_adapter_create(p, &req, &m->url, &m->metadata);
}

static bool listed(envdbi_plugin *p, const char *name)
{
	char **names = NULL;
	size_t n = 0, i;
	bool found = false;

	expect_status(envdbi_adapter_list(p, &names, &n), 0);
	for (i = 0; i < n; i++)
		found = found || strcmp(names[i], name) == 0;
	envdbi_strv_free(names, n);
	return found;
}

START_TEST(deployments_share_a_group)
{
	envdbi_plugin *p;
	made a, b;
	envdb_db_ref r;
	envdbi_secret *s = NULL;
	char *h = NULL;

	ck_assert(envdbi_plugin_capabilities(load(NULL)) & ENVDB_ADAPTER_CAP_DEPLOYMENT);
	p = load("      name_prefix: dep-a-\n      deployment_id: 1111aaaa\n");
	expect_status(make_db_dep(p, &a, "1111aaaa"), 0);
	ck_assert(strncmp(a.name, "dep-a-", 6) == 0);
	p = load("      name_prefix: dep-b-\n      deployment_id: 2222bbbb\n");
	expect_status(make_db_dep(p, &b, "2222bbbb"), 0);

	/* B sees only its own */
	ck_assert(listed(p, b.name));
	ck_assert(!listed(p, a.name));
	/* and cannot drop (nor mint for) A's, by name with its id */
	r = ref_of(&a);
	r.deployment_id = "2222bbbb";
	expect_status(envdbi_adapter_drop(p, &r), ENVDB_ERR_PERMISSION);
	ck_assert(strstr(envdb_error_last()->message, a.name) != NULL);
	expect_status(envdbi_adapter_mint(p, &r,
					  &(envdb_mint_request){ .struct_size = sizeof(envdb_mint_request),
							 .credential_id = "c0ffee00-0000-4000-8000-000000000001",
							 .authorization = ENVDB_AUTH_FULL_ACCESS },
					  &s, &h),
		      ENVDB_ERR_PERMISSION);
	/* nor with A's id: this instance belongs to deployment 2222bbbb */
	r.deployment_id = "1111aaaa";
	expect_status(envdbi_adapter_drop(p, &r), ENVDB_ERR_PERMISSION);
	ck_assert(turso_emu_has_db(emu, a.name));
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 0);

	/* A, symmetrically */
	p = load("      name_prefix: dep-a-\n      deployment_id: 1111aaaa\n");
	ck_assert(listed(p, a.name));
	ck_assert(!listed(p, b.name));
	r = ref_of(&b);
	r.deployment_id = "1111aaaa";
	expect_status(envdbi_adapter_drop(p, &r), ENVDB_ERR_PERMISSION);
	ck_assert(turso_emu_has_db(emu, b.name));
	/* its own goes */
	r = ref_of(&a);
	r.deployment_id = "1111aaaa";
	expect_status(envdbi_adapter_drop(p, &r), 0);
	ck_assert(!turso_emu_has_db(emu, a.name));
	ck_assert(turso_emu_has_db(emu, b.name));
	made_free(&a);
	made_free(&b);
}
END_TEST

START_TEST(probe_rejects_bad_token)
{
	envdbi_plugin *p = load(NULL);
	made m;
	envdb_db_ref r;
	envdbi_secret *fake;
	static const char jwt[] = "eyJhbGciOiJFZERTQSJ9.eyJhIjoicnciLCJpZCI6IngifQ.c2lnbmF0dXJl";

	expect_status(make_db(p, &m), 0);
	r = ref_of(&m);
	fake = envdbi_secret_new(jwt, strlen(jwt));
	expect_status(envdbi_adapter_probe(p, &r, fake), ENVDB_ERR_AUTH);
	ck_assert(strstr(envdb_error_last()->message, "HTTP 401") != NULL);
	envdbi_secret_free(fake);
	made_free(&m);
}
END_TEST

/* A server that echoes secrets in its error text: redacted. */
START_TEST(secrets_redacted)
{
	envdbi_plugin *p = load(NULL);
	made m;
	envdbi_secret *s = NULL;
	char *h = NULL, body[512];

	expect_status(make_db(p, &m), 0);
	snprintf(body, sizeof body,
		 "{\"error\":\"token %s rejected; also eyJhbGciOiJFZERTQSJ9.eyJhIjoicncifQ.sig0 "
		 "is bad\"}",
		 api_token);
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "mint", .count = 1, .status = 400,
						    .retry_after = -1, .body = body });
	expect_status(mint(p, &m, ENVDB_AUTH_FULL_ACCESS, 0, &s, &h), ENVDB_ERR_INVALID);
	ck_assert(strstr(envdb_error_last()->message, "[redacted]") != NULL);
	/* and in a retried failure that gets logged */
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "get", .count = 1, .status = 503,
						    .retry_after = -1, .body = body });
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 1, .status = 503,
						    .retry_after = -1, .body = body });
	made_free(&m);
	expect_status(make_db(p, &m), 0);
	made_free(&m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* End to end through the envdb command                                      */
/* ------------------------------------------------------------------------ */

/* Run `envdb --manifest M ARGS…` (argv NULL-terminated); stdout and stderr
 * into *out / *err (malloc'd).  Returns the exit status. */
static int run_envdb(const char *manifest_path, char **out, char **err, const char *const *args)
{
	char envdb[PATH_MAX], op[PATH_MAX], ep[PATH_MAX];
	const char *argv[32];
	const char *bd = getenv("ENVDB_TEST_BUILDDIR");
	size_t n = 0, i;
	pid_t pid;
	int st;

	ck_assert_ptr_nonnull(bd);
	snprintf(envdb, sizeof envdb, "%s/core/envdb", bd);
	snprintf(op, sizeof op, "%s/cli.out", tmpdir);
	snprintf(ep, sizeof ep, "%s/cli.err", tmpdir);
	argv[n++] = envdb;
	if (manifest_path != NULL) {
		argv[n++] = "--manifest";
		argv[n++] = manifest_path;
	}
	for (i = 0; args[i] != NULL && n + 1 < sizeof(argv) / sizeof(argv[0]); i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int o = open(op, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(ep, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (o < 0 || e < 0)
			_exit(126);
		dup2(o, 1);
		dup2(e, 2);
		execv(envdb, (char *const *)argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	*out = read_file(op);
	*err = read_file(ep);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#define ENVDB(out, err, ...)                                                              \
	run_envdb(mpath, out, err, (const char *const[]){ __VA_ARGS__, NULL })

typedef struct body_buf {
	char *p;
	size_t n;
} body_buf;

static size_t body_write(char *d, size_t s, size_t n, void *u)
{
	body_buf *b = u;
	char *np = realloc(b->p, b->n + s * n + 1);
	if (np == NULL)
		return 0;
	b->p = np;
	memcpy(b->p + b->n, d, s * n);
	b->n += s * n;
	b->p[b->n] = '\0';
	return s * n;
}

/* One Hrana pipeline, as a client of the resolved connection would send. */
static long pipeline(const char *url, const char *jwt, const char *sql, char **answer)
{
	CURL *c = curl_easy_init();
	char target[512], auth[1024];
	struct curl_slist *h = NULL;
	json_t *req = json_pack("{s:[{s:s, s:{s:s}}]}", "requests", "type", "execute", "stmt",
				"sql", sql);
	char *body = json_dumps(req, JSON_COMPACT);
	body_buf b = { NULL, 0 };
	long st = 0;

	snprintf(target, sizeof target, "%s/v2/pipeline", url);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", jwt);
	h = curl_slist_append(h, auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, target);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(body);
	json_decref(req);
	*answer = b.p ? b.p : strdup("");
	return st;
}

/* resolve --reveal --json: the connection of `user`. */
static json_t *resolve_json(const char *mpath, const char *user)
{
	char *out = NULL, *err = NULL;
	json_error_t jerr;
	json_t *j;
	int rc = ENVDB(&out, &err, "--json", "resolve", "acme/dev", "--user", user, "--reveal");

	ck_assert_msg(rc == 0, "resolve %s: rc %d: %s", user, rc, err);
	j = json_loads(out, 0, &jerr);
	ck_assert_msg(j != NULL, "resolve output is not JSON: %s", out);
	assert_no_secret(err);
	free(out);
	free(err);
	return j;
}

START_TEST(cli_provision_resolve)
{
	char mpath[PATH_MAX], dir[256], tokpath[PATH_MAX], table[64], sql[160];
	char *out = NULL, *err = NULL, *ans = NULL;
	json_t *alice, *bob;
	const char *url, *jwt;
	FILE *f;
	int fd, rc;
	unsigned char r[4];

	turso_emu_set_ready_delay(emu, 700);
	snprintf(dir, sizeof dir, "%s/deploy", tmpdir);
	snprintf(mpath, sizeof mpath, "%s/envdb.yaml", dir);
	rc = run_envdb(NULL, &out, &err, (const char *const[]){ "init", dir, NULL });
	ck_assert_msg(rc == 0, "envdb init: %d: %s", rc, err);
	free(out);
	free(err);
	/* add the turso adapter to the manifest `envdb init` wrote */
	snprintf(tokpath, sizeof tokpath, "%s/turso.token", dir);
	fd = open(tokpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, api_token, strlen(api_token)), (ssize_t)strlen(api_token));
	close(fd);
	f = fopen(mpath, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"  - name: turso\n"
		"    kind: adapter\n"
		"    config:\n"
		"      organization: " ORG "\n"
		"      api_token_file: turso.token\n"
		"      api_url: %s\n"
		"      data_plane_scheme: http\n"
		"      retry_initial_delay: 50ms\n"
		"      retry_max_delay: 400ms\n",
		turso_emu_api_url(emu));
	fclose(f);

	rc = ENVDB(&out, &err, "org", "provision", "acme", "--by", "alice");
	ck_assert_msg(rc == 0, "org provision: %d: %s", rc, err);
	free(out);
	free(err);
	rc = ENVDB(&out, &err, "env", "provision", "acme", "dev", "--type", "development", "--by",
		   "alice", "--driver", "turso");
	ck_assert_msg(rc == 0, "env provision: %d: %s", rc, err);
	ck_assert_msg(strstr(out, "via turso") != NULL, "%s", out);
	assert_no_secret(out);
	assert_no_secret(err);
	free(out);
	free(err);
	ck_assert_int_eq(turso_emu_db_count(emu), 1);

	/* the owner gets a full-access token that reaches the real database */
	alice = resolve_json(mpath, "alice");
	ck_assert_str_eq(json_string_value(json_object_get(alice, "driver")), "turso");
	ck_assert_str_eq(json_string_value(json_object_get(alice, "authorization")),
			 "full_access");
	url = json_string_value(json_object_get(alice, "database_url"));
	jwt = json_string_value(json_object_get(alice, "secret"));
	ck_assert_ptr_nonnull(url);
	ck_assert_ptr_nonnull(jwt);
	ck_assert(strncmp(jwt, "eyJ", 3) == 0);
	ck_assert_int_eq(getrandom(r, sizeof r, 0), (ssize_t)sizeof r);
	snprintf(table, sizeof table, "t_%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
	snprintf(sql, sizeof sql, "CREATE TABLE %s (v INTEGER)", table);
	ck_assert_int_eq(pipeline(url, jwt, sql, &ans), 200);
	ck_assert_msg(strstr(ans, "\"type\":\"ok\"") != NULL, "%s", ans);
	free(ans);
	snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (42)", table);
	ck_assert_int_eq(pipeline(url, jwt, sql, &ans), 200);
	ck_assert_msg(strstr(ans, "\"type\":\"ok\"") != NULL, "%s", ans);
	free(ans);

	/* a reader gets a read-only token: reads work, writes do not */
	rc = ENVDB(&out, &err, "member", "add", "acme/dev", "bob", "reader", "--by", "alice");
	ck_assert_msg(rc == 0, "member add: %d: %s", rc, err);
	free(out);
	free(err);
	bob = resolve_json(mpath, "bob");
	ck_assert_str_eq(json_string_value(json_object_get(bob, "authorization")), "read_only");
	jwt = json_string_value(json_object_get(bob, "secret"));
	snprintf(sql, sizeof sql, "SELECT v FROM %s", table);
	ck_assert_int_eq(pipeline(url, jwt, sql, &ans), 200);
	ck_assert_msg(strstr(ans, "\"value\":\"42\"") != NULL, "%s", ans);
	free(ans);
	snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (7)", table);
	ck_assert_int_eq(pipeline(url, jwt, sql, &ans), 200);
	ck_assert_msg(strstr(ans, "SQLITE_READONLY") != NULL, "%s", ans);
	free(ans);
	/* a made-up token is refused */
	ck_assert_int_eq(pipeline(url, "eyJub3QiOiJ2YWxpZCJ9.e30.c2ln", "SELECT 1", &ans), 401);
	free(ans);

	/* without --reveal the secret stays hidden */
	rc = ENVDB(&out, &err, "resolve", "acme/dev", "--user", "alice");
	ck_assert_int_eq(rc, 0);
	assert_no_secret(out);
	assert_no_secret(err);
	free(out);
	free(err);

	/* a failing provision: a clear message, no secret, nothing left */
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "mint", .count = 100, .status = 403,
						    .retry_after = -1 });
	rc = ENVDB(&out, &err, "env", "provision", "acme", "qa", "--type", "test", "--by", "alice",
		   "--driver", "turso");
	ck_assert_int_ne(rc, 0);
	ck_assert_msg(strstr(err, "HTTP 403") != NULL, "%s", err);
	assert_no_secret(out);
	assert_no_secret(err);
	free(out);
	free(err);
	ck_assert_int_eq(turso_emu_db_count(emu), 1);
	turso_emu_clear_faults(emu);
	rc = ENVDB(&out, &err, "check");
	ck_assert_msg(rc == 0, "check: %d: %s%s", rc, out, err);
	free(out);
	free(err);

	/* delete drops the Turso database */
	rc = ENVDB(&out, &err, "env", "delete", "acme/dev", "--now", "--yes");
	ck_assert_msg(rc == 0, "env delete: %d: %s", rc, err);
	free(out);
	free(err);
	ck_assert_int_eq(turso_emu_db_count(emu), 0);
	ck_assert_int_eq(turso_emu_count(emu, "rotate"), 0);
	ck_assert_int_eq(turso_emu_count(emu, "rotate-group"), 0);

	json_decref(alice);
	json_decref(bob);
}
END_TEST

/* `envdb init` a deployment in tmpdir/deploy and add the turso adapter
 * (its base configuration plus `extra` lines); mpath gets the manifest. */
static void cli_deploy(char *mpath, size_t cap, const char *extra)
{
	char dir[256], tokpath[PATH_MAX];
	char *out = NULL, *err = NULL;
	FILE *f;
	int fd, rc;

	snprintf(dir, sizeof dir, "%s/deploy", tmpdir);
	snprintf(mpath, cap, "%s/envdb.yaml", dir);
	rc = run_envdb(NULL, &out, &err, (const char *const[]){ "init", dir, NULL });
	ck_assert_msg(rc == 0, "envdb init: %d: %s", rc, err);
	free(out);
	free(err);
	snprintf(tokpath, sizeof tokpath, "%s/turso.token", dir);
	fd = open(tokpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, api_token, strlen(api_token)), (ssize_t)strlen(api_token));
	close(fd);
	f = fopen(mpath, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"  - name: turso\n"
		"    kind: adapter\n"
		"    config:\n"
		"      organization: " ORG "\n"
		"      api_token_file: turso.token\n"
		"      api_url: %s\n"
		"      data_plane_scheme: http\n"
		"      retry_initial_delay: 50ms\n"
		"      retry_max_delay: 400ms\n"
		"      max_attempts: 3\n%s",
		turso_emu_api_url(emu), extra ? extra : "");
	fclose(f);
	rc = ENVDB(&out, &err, "org", "provision", "acme", "--by", "alice");
	ck_assert_msg(rc == 0, "org provision: %d: %s", rc, err);
	free(out);
	free(err);
}

static void provision_dev(const char *mpath)
{
	char *out = NULL, *err = NULL;
	int rc = ENVDB(&out, &err, "env", "provision", "acme", "dev", "--type", "development",
		       "--by", "alice", "--driver", "turso");

	ck_assert_msg(rc == 0, "env provision: %d: %s", rc, err);
	free(out);
	free(err);
}

/* The expiry Turso applies (token_expiration) is the one envdb stores:
 * cred list shows it, check and reconcile act on it, resolve refuses an
 * expired credential with a clear error. */
START_TEST(cli_granted_expiry)
{
	char mpath[PATH_MAX];
	char *out = NULL, *err = NULL;
	json_t *doc, *creds, *c;
	json_error_t jerr;
	size_t i;
	int rc;

	cli_deploy(mpath, sizeof mpath, "      token_expiration: 4s\n");
	provision_dev(mpath);
	rc = ENVDB(&out, &err, "--json", "cred", "list", "acme/dev");
	ck_assert_msg(rc == 0, "cred list: %d: %s", rc, err);
	doc = json_loads(out, 0, &jerr);
	ck_assert_msg(doc != NULL, "%s", out);
	creds = json_object_get(doc, "credentials");
	ck_assert_int_eq(json_array_size(creds), 2);
	json_array_foreach(creds, i, c)
	{
		/* not null ("no expiry"): the time Turso will refuse it */
		json_t *e = json_object_get(c, "expires_at");
		ck_assert_msg(json_is_string(e) || json_is_integer(e), "expires_at %s in %s",
			      e ? json_dumps(e, JSON_ENCODE_ANY) : "(none)", out);
	}
	json_decref(doc);
	free(out);
	free(err);
	rc = ENVDB(&out, &err, "check");
	ck_assert_msg(rc == 0, "check before expiry: %d: %s%s", rc, out, err);
	free(out);
	free(err);

	sleep(5);
	/* the tokens expired at Turso: envdb says so */
	rc = ENVDB(&out, &err, "check");
	ck_assert_msg(rc == 65 && strstr(out, "active_credential_expired") != NULL,
		      "check after expiry: %d: %s%s", rc, out, err);
	free(out);
	free(err);
	rc = ENVDB(&out, &err, "resolve", "acme/dev", "--user", "alice");
	ck_assert_int_ne(rc, 0);
	ck_assert_msg(strstr(err, "expired") && strstr(err, "envdb cred rotate acme/dev"), "%s",
		      err);
	free(out);
	free(err);
	rc = ENVDB(&out, &err, "reconcile");
	ck_assert_msg(strstr(out, "expiry") && strstr(out, "would rotate"), "reconcile: %d: %s%s",
		      rc, out, err);
	free(out);
	free(err);
	rc = ENVDB(&out, &err, "reconcile", "--apply");
	ck_assert_msg(rc == 0 && strstr(out, "rotated"), "reconcile --apply: %d: %s%s", rc, out,
		      err);
	free(out);
	free(err);
	/* rotated: resolves again, to a token that works at the data plane */
	{
		json_t *alice = resolve_json(mpath, "alice");
		char *ans = NULL;
		ck_assert_int_eq(pipeline(json_string_value(json_object_get(alice, "database_url")),
					  json_string_value(json_object_get(alice, "secret")),
					  "SELECT 1", &ans),
				 200);
		free(ans);
		json_decref(alice);
	}
}
END_TEST

/* cred complete on an adapter without ENVDB_ADAPTER_CAP_REVOKE: the CLI
 * says the "revoked" token keeps working, and it really does. */
START_TEST(cli_complete_warns_not_revoked)
{
	char mpath[PATH_MAX];
	char *out = NULL, *err = NULL, *ans = NULL, old_jwt[4096], url[512];
	json_t *alice, *doc;
	json_error_t jerr;
	int rc;

	cli_deploy(mpath, sizeof mpath, NULL);
	provision_dev(mpath);
	alice = resolve_json(mpath, "alice");
	snprintf(old_jwt, sizeof old_jwt, "%s", json_string_value(json_object_get(alice, "secret")));
	snprintf(url, sizeof url, "%s", json_string_value(json_object_get(alice, "database_url")));
	json_decref(alice);
	rc = ENVDB(&out, &err, "cred", "rotate", "acme/dev", "--overlap", "1h");
	ck_assert_msg(rc == 0, "rotate: %d: %s", rc, err);
	free(out);
	free(err);
	rc = ENVDB(&out, &err, "--json", "cred", "complete", "acme/dev");
	ck_assert_msg(rc == 0, "complete: %d: %s", rc, err);
	ck_assert_msg(strstr(err, "warning: credential ") &&
			      strstr(err, "is marked revoked in envdb but the turso adapter cannot "
					  "revoke a single token: it keeps working until it expires "
					  "or the group's tokens are invalidated"),
		      "%s", err);
	doc = json_loads(out, 0, &jerr);
	ck_assert_msg(doc != NULL, "%s", out);
	ck_assert(json_is_false(json_object_get(doc, "revoked_at_backend")));
	ck_assert_int_eq(json_array_size(json_object_get(doc, "warnings")), 2);
	json_decref(doc);
	assert_no_secret(out);
	assert_no_secret(err);
	free(out);
	free(err);
	/* which is the truth: the old token still reads the database */
	ck_assert_int_eq(pipeline(url, old_jwt, "SELECT 1", &ans), 200);
	ck_assert_msg(strstr(ans, "\"type\":\"ok\"") != NULL, "%s", ans);
	free(ans);
	/* rotate --overlap 0 revokes at once: the same warning */
	rc = ENVDB(&out, &err, "cred", "rotate", "acme/dev", "--overlap", "0");
	ck_assert_msg(rc == 0 && strstr(err, "cannot revoke a single token"), "%d: %s", rc, err);
	free(out);
	free(err);
}
END_TEST

/* A definite 401 on create (the API token was revoked after the start):
 * nothing was created, so the intent goes at once and the slug is free
 * again -- no failed intent waiting for reconcile. */
START_TEST(cli_auth_failure_frees_slug)
{
	char mpath[PATH_MAX];
	char *out = NULL, *err = NULL;
	int rc;

	cli_deploy(mpath, sizeof mpath, NULL);
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "create", .count = 1, .status = 401,
						    .retry_after = -1 });
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "get", .count = 20, .status = 401,
						    .retry_after = -1 });
	turso_emu_add_fault(emu, &(turso_emu_fault){ .op = "delete", .count = 20, .status = 401,
						    .retry_after = -1 });
	rc = ENVDB(&out, &err, "env", "provision", "acme", "dev", "--type", "development", "--by",
		   "alice", "--driver", "turso");
	ck_assert_int_ne(rc, 0);
	ck_assert_msg(strstr(err, "HTTP 401") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "reconcile") == NULL, "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(turso_emu_count(emu, "delete"), 0);
	turso_emu_clear_faults(emu);
	rc = ENVDB(&out, &err, "check");
	ck_assert_msg(rc == 0, "check: %d: %s%s", rc, out, err);
	free(out);
	free(err);
	provision_dev(mpath);
	ck_assert_int_eq(turso_emu_db_count(emu), 1);
}
END_TEST

/* ------------------------------------------------------------------------ */

static bool plugin_built(const char *name)
{
	char path[PATH_MAX];
	const char *dir = getenv("ENVDB_PLUGIN_DIR");

	if (dir == NULL)
		return false;
	snprintf(path, sizeof path, "%s/%s.so", dir, name);
	return access(path, R_OK) == 0;
}

static Suite *suite(void)
{
	Suite *s = suite_create("plugin_turso");
	TCase *tc = tcase_create("turso");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, lifecycle);
	tcase_add_test(tc, lifecycle_direct);
	tcase_add_test(tc, migrated_database);
	tcase_add_test(tc, data_plane_url_override);
	tcase_add_test(tc, baton_closed);
	tcase_add_loop_test(tc, duplicate_is_exists, 0, 3);
	tcase_add_loop_test(tc, adopt_after_ambiguous_duplicate, 0, 3);
	tcase_add_test(tc, no_adoption_across_groups);
	tcase_add_test(tc, ambiguous_create_foreign_kept);
	tcase_add_test(tc, drop_verifies_group);
	tcase_add_test(tc, drop_verifies_dbid);
	tcase_add_test(tc, ambiguous_failure_adopts);
	tcase_add_test(tc, compensate_mint_failure);
	tcase_add_test(tc, compensate_not_ready);
	tcase_add_test(tc, waits_for_readiness);
	tcase_add_test(tc, retry_429_retry_after);
	tcase_add_test(tc, retry_5xx_bounded);
	tcase_add_test(tc, retry_mint_bounded);
	tcase_add_loop_test(tc, no_retry_on_4xx, 0, 4);
	tcase_add_test(tc, wrong_api_token);
	tcase_add_test(tc, deadline_slow_create);
	tcase_add_test(tc, deadline_retry_after);
	tcase_add_test(tc, deadline_readiness);
	tcase_add_test(tc, names_validated_before_any_request);
	tcase_add_test(tc, config_errors);
	tcase_add_test(tc, list_ours_only);
	tcase_add_test(tc, mint_expiry);
	tcase_add_test(tc, mint_reports_granted_expiry);
	tcase_add_test(tc, handles_unique);
	tcase_add_test(tc, mint_after_create_bounded);
	tcase_add_test(tc, bad_select1_closes_stream);
	tcase_add_test(tc, ca_file_setting);
	tcase_add_test(tc, deployments_share_a_group);
	tcase_add_test(tc, probe_rejects_bad_token);
	tcase_add_test(tc, secrets_redacted);
	suite_add_tcase(s, tc);

	/* The end-to-end case needs `envdb init`'s sqlite and kms plugins. */
	if (plugin_built("sqlite") && plugin_built("kms")) {
		tc = tcase_create("cli");
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 120);
		tcase_add_test(tc, cli_provision_resolve);
		tcase_add_test(tc, cli_granted_expiry);
		tcase_add_test(tc, cli_complete_warns_not_revoked);
		tcase_add_test(tc, cli_auth_failure_frees_slug);
		suite_add_tcase(s, tc);
	} else {
		printf("note: sqlite or kms plugin not built: end-to-end envdb case skipped\n");
	}
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	(void)dup_variants;
	/* Everything here is on loopback: no proxy from the environment. */
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	tursodb = turso_libsql_binary();
	if (tursodb == NULL) {
		printf("SKIP: tursodb not found: run tests/turso-setup.sh (npm package "
		       "@tursodatabase/cli-linux-x64-gnu@0.6.0) and set ENVDB_TURSODB\n");
		return 77;
	}
	if (mkdtemp(libsql_dir) == NULL ||
	    turso_libsql_start(tursodb, libsql_dir, &libsql_pid, &libsql_port) != 0) {
		printf("FAIL: cannot start %s --sync-server\n", tursodb);
		return 1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	sr = srunner_create(suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	turso_libsql_stop(libsql_pid);
	{
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", libsql_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", libsql_dir);
	}
	return failed == 0 ? 0 : 1;
}
