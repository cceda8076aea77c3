/*
 * tests/test_loader.c — the plugin loader and the host's calls into
 * plugins (core/loader.c, core/host.c), against the fixture plugins of
 * tests/fixtures/: one per failure mode, each of which must produce its
 * own message naming the plugin and its path; configuration checks and
 * secret references; critical and non-critical plugins; and every host
 * call (buffer protocol, deadlines, error reports) on a working adapter
 * and a working encryptor.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host_testutil.h"
#include "internal.h"

static envdbi_manifest *m;
static envdbi_plugins *set;
static char mpath[PATH_MAX];

static void setup(void)
{
	tu_setup();
	m = NULL;
	set = NULL;
	unsetenv("ENVDB_TEST_SECRET");
	unsetenv("ENVDB_TEST_MODULE_LOG");
	unsetenv("ENVDB_TEST_MODULE_FAIL");
	envdbi_host_set_call_timeout_ms(30000);
	envdb_error_clear();
}

static void teardown(void)
{
	envdbi_plugins_free(set);
	envdbi_manifest_free(m);
	set = NULL;
	m = NULL;
	tu_teardown();
}

/* Load a manifest whose plugin_dir is the fixture directory and whose
 * plugin list is `plugins` (YAML lines). */
static int load_flags(const char *plugins, unsigned flags)
{
	char text[8192];
	int rc;

	snprintf(text, sizeof(text), "version: 1\nplugin_dir: %s\nplugins:\n%s", tu_fixture_dir(),
		 plugins);
	envdbi_plugins_free(set);
	envdbi_manifest_free(m);
	set = NULL;
	m = NULL;
	tu_write(mpath, sizeof(mpath), "envdb.yaml", 0600, text);
	rc = envdbi_manifest_load(&m, mpath);
	ck_assert_msg(rc == ENVDB_OK, "manifest: %s", envdb_error_last()->message);
	return envdbi_plugins_load_ex(&set, m, flags);
}

static int load(const char *plugins)
{
	return load_flags(plugins, 0);
}

/* Loading must fail with `status`, and the message must name the plugin
 * and its path and contain `cause`. */
static void expect_fail(const char *plugins, int status, const char *name, const char *cause)
{
	char who[PATH_MAX + 128];
	int rc = load(plugins);

	ck_assert_msg(rc == status, "status %d (%s), expected %d", rc, envdb_error_last()->message,
		      status);
	ck_assert_ptr_null(set);
	snprintf(who, sizeof(who), "plugin %s (%s/%s.so)", name, tu_fixture_dir(), name);
	tu_assert_contains(envdb_error_last()->message, who);
	tu_assert_contains(envdb_error_last()->message, cause);
}

/* ------------------------------------------------------------------------ */
/* One fixture per failure mode                                              */
/* ------------------------------------------------------------------------ */

START_TEST(no_entry_symbol)
{
	expect_fail("  - {name: noentry, kind: adapter}\n", ENVDB_ERR_ABI, "noentry",
		    "): no entry symbol: neither envdb_plugin_entry_v1 nor "
		    "noentry_LTX_envdb_plugin_entry_v1 is exported");
}
END_TEST

START_TEST(only_v2_entry)
{
	expect_fail("  - {name: v2only, kind: adapter}\n", ENVDB_ERR_ABI, "v2only",
		    "): exports envdb_plugin_entry_v2 but not envdb_plugin_entry_v1: it was built "
		    "for plugin ABI 2, this host loads ABI 1");
}
END_TEST

START_TEST(newer_minor)
{
	expect_fail("  - {name: newminor, kind: adapter}\n", ENVDB_ERR_ABI, "newminor",
		    "): needs plugin ABI 1.2, this host provides only 1.1 (newer minor)");
}
END_TEST

START_TEST(other_major)
{
	expect_fail("  - {name: badmajor, kind: adapter}\n", ENVDB_ERR_ABI, "badmajor",
		    "): built for plugin ABI 2.0, this host speaks ABI 1.1 (the major must be "
		    "equal)");
}
END_TEST

START_TEST(short_struct)
{
	char cause[256];

	snprintf(cause, sizeof(cause),
		 "): descriptor is too short: struct_size is %zu bytes, plugin ABI 1.0 needs at "
		 "least %zu",
		 offsetof(envdb_plugin_descriptor, kind),
		 offsetof(envdb_plugin_descriptor, ops) + sizeof(const void *));
	expect_fail("  - {name: shortdesc, kind: adapter}\n", ENVDB_ERR_ABI, "shortdesc", cause);
}
END_TEST

START_TEST(null_name)
{
	expect_fail("  - {name: nullname, kind: adapter}\n", ENVDB_ERR_ABI, "nullname",
		    "): descriptor has no name (name is NULL)");
}
END_TEST

START_TEST(name_mismatch)
{
	expect_fail("  - {name: mismatch, kind: adapter}\n", ENVDB_ERR_CONFIG, "mismatch",
		    "): the plugin calls itself 'other' but the manifest names it 'mismatch'");
}
END_TEST

START_TEST(init_fails)
{
	expect_fail("  - {name: initfail, kind: adapter}\n", ENVDB_ERR_UNAVAILABLE, "initfail",
		    "): init failed: backend 127.0.0.1:1: connect: connection refused");
	ck_assert_str_eq(envdb_error_last()->native_code, "ECONNREFUSED");
	/* a plugin that fails without reporting still gets a precise message */
	expect_fail("  - {name: initfail, kind: adapter, config: {silent: 'true'}}\n",
		    ENVDB_ERR_UNAVAILABLE, "initfail",
		    "): init failed (unavailable) without a report");
}
END_TEST

START_TEST(unknown_config_key)
{
	char want[2 * PATH_MAX];

	expect_fail("  - name: good\n"
		    "    kind: encryptor\n"
		    "    config:\n"
		    "      dir: /tmp\n"
		    "      base_dir: environments\n",
		    ENVDB_ERR_CONFIG, "good",
		    "plugins[0].config.base_dir: unknown key; the plugin declares: dir, password "
		    "(secret), expect_password, current");
	snprintf(want, sizeof(want), "%s:8:7: plugins[0].config.base_dir: unknown key", mpath);
	tu_assert_contains(envdb_error_last()->message, want);
}
END_TEST

START_TEST(missing_required_key)
{
	char want[2 * PATH_MAX];

	expect_fail("  - name: good\n    kind: encryptor\n    config: {current: k9}\n",
		    ENVDB_ERR_CONFIG, "good", "plugins[0].config.dir: missing required key");
	snprintf(want, sizeof(want), "%s:4:5: plugins[0].config.dir", mpath);
	tu_assert_contains(envdb_error_last()->message, want);
}
END_TEST

START_TEST(not_a_shared_object)
{
	char so[PATH_MAX], plugins[PATH_MAX + 128], who[PATH_MAX + 64];

	tu_write(so, sizeof(so), "notso.so", 0644, "this is a text file, not an ELF object\n");
	snprintf(plugins, sizeof(plugins), "  - {name: notso, kind: adapter, path: %s}\n", so);
	ck_assert_int_eq(load(plugins), ENVDB_ERR_ABI);
	snprintf(who, sizeof(who), "plugin notso (%s): not a shared object (no ELF header)", so);
	ck_assert_str_eq(envdb_error_last()->message, who);
	/* an empty file too */
	tu_write(so, sizeof(so), "notso.so", 0644, "");
	ck_assert_int_eq(load(plugins), ENVDB_ERR_ABI);
	ck_assert_str_eq(envdb_error_last()->message, who);
}
END_TEST

START_TEST(null_descriptor)
{
	expect_fail("  - {name: nullentry, kind: adapter}\n", ENVDB_ERR_ABI, "nullentry",
		    "): the entry returned no descriptor");
}
END_TEST

START_TEST(required_operation_missing)
{
	expect_fail("  - {name: missingop, kind: adapter}\n", ENVDB_ERR_ABI, "missingop",
		    "): required adapter operation drop is NULL");
}
END_TEST

START_TEST(capability_without_slot)
{
	expect_fail("  - {name: badcaps, kind: adapter}\n", ENVDB_ERR_ABI, "badcaps",
		    "): claims the probe capability but its probe operation is NULL");
}
END_TEST

START_TEST(kind_mismatch)
{
	expect_fail("  - {name: fxadapter, kind: encryptor}\n", ENVDB_ERR_CONFIG, "fxadapter",
		    "): is an adapter plugin but the manifest lists it as an encryptor");
}
END_TEST

START_TEST(missing_file)
{
	expect_fail("  - {name: absent, kind: adapter}\n", ENVDB_ERR_CONFIG, "absent",
		    "): no such file");
}
END_TEST

START_TEST(ltx_prefixed_entry)
{
	ck_assert_int_eq(load("  - {name: ltx, kind: adapter}\n"), ENVDB_OK);
	ck_assert_uint_eq(envdbi_plugins_count(set), 1);
	ck_assert_str_eq(envdbi_plugin_name(envdbi_plugins_at(set, 0)), "ltx");
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Plugin directory, secrets, critical                                       */
/* ------------------------------------------------------------------------ */

START_TEST(plugin_dir_from_environment)
{
	char text[256];

	setenv("ENVDB_PLUGIN_DIR", tu_fixture_dir(), 1);
	tu_write(mpath, sizeof(mpath), "envdb.yaml", 0600,
		 "version: 1\nplugins:\n  - {name: ltx, kind: adapter}\n");
	ck_assert_int_eq(envdbi_manifest_load(&m, mpath), ENVDB_OK);
	ck_assert_str_eq(envdbi_plugin_dir(m), tu_fixture_dir());
	ck_assert_int_eq(envdbi_plugins_load(&set, m), ENVDB_OK);
	envdbi_plugins_free(set);
	set = NULL;
	/* never relative to the current directory */
	setenv("ENVDB_PLUGIN_DIR", "tests/fixtures/.libs", 1);
	ck_assert_int_eq(envdbi_plugins_load(&set, m), ENVDB_ERR_CONFIG);
	snprintf(text, sizeof(text), "the plugin directory '%s' is not absolute",
		 "tests/fixtures/.libs");
	tu_assert_contains(envdb_error_last()->message, text);
	unsetenv("ENVDB_PLUGIN_DIR");
}
END_TEST

START_TEST(inline_secret_refused)
{
	expect_fail("  - name: good\n    kind: encryptor\n"
		    "    config: {dir: x, password: hunter2-do-not-print}\n",
		    ENVDB_ERR_CONFIG, "good",
		    "plugins[0].config.password: inline secret refused: give password_file");
	ck_assert_ptr_null(strstr(envdb_error_last()->message, "hunter2"));
}
END_TEST

START_TEST(secret_from_file)
{
	char sec[PATH_MAX], plugins[PATH_MAX + 256];

	tu_write(sec, sizeof(sec), "pw", 0600, "s3cret\n");
	snprintf(plugins, sizeof(plugins),
		 "  - name: good\n    kind: encryptor\n"
		 "    config: {dir: x, password_file: pw, expect_password: s3cret}\n");
	ck_assert_msg(load(plugins) == ENVDB_OK, "%s", envdb_error_last()->message);
	/* a wrong value reaches init, which refuses it */
	tu_write(sec, sizeof(sec), "pw", 0600, "other");
	ck_assert_int_eq(load(plugins), ENVDB_ERR_AUTH);
	tu_assert_contains(envdb_error_last()->message, "init failed: password: does not match");
	/* readable by others: refused before init */
	tu_write(sec, sizeof(sec), "pw", 0644, "s3cret");
	expect_fail(plugins, ENVDB_ERR_CONFIG, "good",
		    "is accessible by group or others (mode 0644)");
	tu_assert_contains(envdb_error_last()->message, "plugins[0].config.password_file");
	/* missing */
	ck_assert_int_eq(remove(sec), 0);
	expect_fail(plugins, ENVDB_ERR_CONFIG, "good", "cannot open secret file");
}
END_TEST

START_TEST(secret_from_environment)
{
	const char *plugins = "  - name: good\n    kind: encryptor\n"
			      "    config: {dir: x, password_env: ENVDB_TEST_SECRET,"
			      " expect_password: from-env}\n";

	expect_fail(plugins, ENVDB_ERR_CONFIG, "good",
		    "plugins[0].config.password_env: environment variable ENVDB_TEST_SECRET is "
		    "not set");
	setenv("ENVDB_TEST_SECRET", "from-env", 1);
	ck_assert_msg(load(plugins) == ENVDB_OK, "%s", envdb_error_last()->message);
	/* both references at once */
	expect_fail("  - name: good\n    kind: encryptor\n"
		    "    config: {dir: x, password_env: ENVDB_TEST_SECRET, password_file: pw}\n",
		    ENVDB_ERR_CONFIG, "good",
		    "secret password is already given by another reference");
}
END_TEST

START_TEST(critical_and_optional)
{
	envdbi_plugin *p;

	/* a non-critical failure is skipped */
	ck_assert_int_eq(load("  - {name: ltx, kind: adapter}\n"
			      "  - {name: noentry, kind: adapter, critical: false}\n"
			      "  - {name: good, kind: encryptor, config: {dir: d}}\n"),
			 ENVDB_OK);
	ck_assert_uint_eq(envdbi_plugins_count(set), 2);
	ck_assert_ptr_null(envdbi_plugins_find(set, "noentry", 0));
	p = envdbi_plugins_find(set, "good", ENVDB_PLUGIN_ENCRYPTOR);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_null(envdbi_plugins_find(set, "good", ENVDB_PLUGIN_ADAPTER));
	ck_assert_uint_eq(envdbi_plugin_kind(p), ENVDB_PLUGIN_ENCRYPTOR);
	ck_assert_str_eq(envdbi_plugin_descriptor(p)->version, "1.2.3");
	ck_assert_uint_eq(envdbi_plugin_capabilities(p),
			  ENVDB_ENCRYPTOR_CAP_KEY_MANAGE | ENVDB_ENCRYPTOR_CAP_REWRAP);
	/* a critical one aborts, unloading what was loaded (valgrind sees
	 * good's instance freed by its fini) */
	expect_fail("  - {name: good, kind: encryptor, config: {dir: d}}\n"
		    "  - {name: fxadapter, kind: adapter}\n"
		    "  - {name: noentry, kind: adapter}\n",
		    ENVDB_ERR_ABI, "noentry", "no entry symbol");
}
END_TEST

START_TEST(check_only_does_not_init)
{
	envdbi_plugin *p;
	char *s = NULL;

	ck_assert_int_eq(load_flags("  - {name: initfail, kind: adapter}\n"
				    "  - {name: good, kind: encryptor, config: {dir: d}}\n",
				    ENVDBI_LOAD_NO_INIT),
			 ENVDB_OK);
	ck_assert_uint_eq(envdbi_plugins_count(set), 2);
	p = envdbi_plugins_find(set, "good", 0);
	ck_assert_int_eq(envdbi_encryptor_current_key(p, &s), ENVDB_ERR_STATE);
	tu_assert_contains(envdb_error_last()->message, "plugin good: current_key: the plugin is "
							"not initialised");
	/* configuration is still checked */
	ck_assert_int_eq(load_flags("  - {name: good, kind: encryptor}\n", ENVDBI_LOAD_NO_INIT),
			 ENVDB_ERR_CONFIG);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Calls into an encryptor                                                   */
/* ------------------------------------------------------------------------ */

static int count_keys(void *cb_ctx, const char *key_id, int is_current, int64_t created_at)
{
	int *n = cb_ctx;
	(void)key_id;
	(void)is_current;
	ck_assert_int_gt(created_at, 0);
	(*n)++;
	return 0;
}

START_TEST(encryptor_calls)
{
	envdbi_plugin *p;
	envdbi_secret *pt = envdbi_secret_new("top secret", 10), *out = NULL;
	char *ct = NULL, *kid = NULL, *ct2 = NULL, *kid2 = NULL, *s = NULL;
	char long_id[601];
	char plugins[1024];
	int n = 0;

	ck_assert_ptr_nonnull(pt);
	memset(long_id, 'x', 600);
	long_id[600] = '\0';
	/* a current key id longer than the first buffer: the host retries */
	snprintf(plugins, sizeof(plugins),
		 "  - {name: good, kind: encryptor, config: {dir: d, current: %s}}\n", long_id);
	ck_assert_int_eq(load(plugins), ENVDB_OK);
	p = envdbi_plugins_find(set, "good", 0);
	ck_assert_int_eq(envdbi_encryptor_current_key(p, &s), ENVDB_OK);
	ck_assert_str_eq(s, long_id);
	free(s);
	s = NULL;

	ck_assert_int_eq(load("  - {name: good, kind: encryptor, config: {dir: d}}\n"), ENVDB_OK);
	p = envdbi_plugins_find(set, "good", 0);
	ck_assert_int_eq(envdbi_encryptor_encrypt(p, pt, "row-1", 5, &ct, &kid), ENVDB_OK);
	ck_assert_str_eq(kid, "k1");
	ck_assert_int_eq(envdbi_encryptor_decrypt(p, ct, "row-1", 5, &out), ENVDB_OK);
	ck_assert_uint_eq(out->len, 10);
	ck_assert_str_eq(out->data, "top secret");
	envdbi_secret_free(out);
	out = NULL;
	/* bound to its row */
	ck_assert_int_eq(envdbi_encryptor_decrypt(p, ct, "row-2", 5, &out), ENVDB_ERR_INTEGRITY);
	ck_assert_ptr_null(out);
	ck_assert_str_eq(envdb_error_last()->message,
			 "plugin good: ciphertext: associated data does not match");
	ck_assert_int_eq(envdbi_encryptor_decrypt(p, "garbage", NULL, 0, &out), ENVDB_ERR_INVALID);
	ck_assert_int_eq(envdbi_encryptor_key_of(p, ct, &s), ENVDB_OK);
	ck_assert_str_eq(s, "k1");
	free(s);
	s = NULL;

	/* rotate, rewrap, the old key still opens old ciphertexts */
	ck_assert_int_eq(envdbi_encryptor_key_generate(p, 1, &s), ENVDB_OK);
	ck_assert_str_eq(s, "k2");
	free(s);
	s = NULL;
	ck_assert_int_eq(envdbi_encryptor_key_generate(p, 0, &s), ENVDB_OK);
	ck_assert_str_eq(s, "k3");
	free(s);
	s = NULL;
	ck_assert_int_eq(envdbi_encryptor_current_key(p, &s), ENVDB_OK);
	ck_assert_str_eq(s, "k2");
	ck_assert_int_eq(envdbi_encryptor_rewrap(p, ct, "row-1", 5, &ct2, &kid2), ENVDB_OK);
	ck_assert_str_eq(kid2, "k2");
	ck_assert_int_eq(envdbi_encryptor_decrypt(p, ct2, "row-1", 5, &out), ENVDB_OK);
	ck_assert_str_eq(out->data, "top secret");
	envdbi_secret_free(out);
	ck_assert_int_eq(envdbi_encryptor_decrypt(p, ct, "row-1", 5, &out), ENVDB_OK);
	envdbi_secret_free(out);
	ck_assert_int_eq(envdbi_encryptor_key_list(p, count_keys, &n), ENVDB_OK);
	ck_assert_int_eq(n, 3);

	/* misuse: adapter calls on an encryptor */
	ck_assert_int_eq(envdbi_adapter_database_name(p, "x", &s), ENVDB_ERR_MISUSE);

	envdbi_secret_free(pt);
	free(ct);
	free(kid);
	free(ct2);
	free(kid2);
	free(s);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Calls into an adapter                                                     */
/* ------------------------------------------------------------------------ */

START_TEST(adapter_calls)
{
	envdbi_plugin *p, *ltx;
	envdb_create_request req = {sizeof(req), "env-1", NULL, NULL, "free", 10, NULL};
	envdb_db_ref db = {sizeof(db), "env-1", NULL, NULL, NULL, NULL};
	envdb_mint_request mreq = {sizeof(mreq), "cred-1", ENVDB_AUTH_FULL_ACCESS, 0, NULL, NULL, 0};
	envdbi_secret *secret = NULL;
	char *name = NULL, *url = NULL, *meta = NULL, *handle = NULL, **names = NULL;
	size_t n = 0;

	/* secrets longer than ENVDB_ADAPTER_OUTPUT_MIN: the host retries */
	ck_assert_int_eq(load("  - {name: fxadapter, kind: adapter, config: {secret_len: 10000}}\n"
			      "  - {name: ltx, kind: adapter}\n"),
			 ENVDB_OK);
	p = envdbi_plugins_find(set, "fxadapter", ENVDB_PLUGIN_ADAPTER);
	ltx = envdbi_plugins_find(set, "ltx", ENVDB_PLUGIN_ADAPTER);
	ck_assert_uint_eq(envdbi_plugin_capabilities(p),
			  ENVDB_ADAPTER_CAP_READ_ONLY | ENVDB_ADAPTER_CAP_REVOKE |
			      ENVDB_ADAPTER_CAP_PROBE | ENVDB_ADAPTER_CAP_LIST);

	ck_assert_int_eq(envdbi_adapter_database_name(p, "env-1", &name), ENVDB_OK);
	ck_assert_str_eq(name, "fx_env-1");
	req.database_name = name;
	db.database_name = name;
	ck_assert_int_eq(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_OK);
	ck_assert_str_eq(url, "fx://fx_env-1");
	ck_assert_str_eq(meta, "{}");
	free(url);
	free(meta);
	ck_assert_int_eq(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_ERR_EXISTS);
	ck_assert_ptr_null(url);
	ck_assert_str_eq(envdb_error_last()->message,
			 "plugin fxadapter: database fx_env-1: already exists");

	ck_assert_int_eq(envdbi_adapter_mint(p, &db, &mreq, &secret, &handle), ENVDB_OK);
	ck_assert_uint_eq(secret->len, 10000);
	ck_assert_uint_eq(strlen(secret->data), 10000);
	ck_assert_str_eq(handle, "h-cred-1");
	ck_assert_int_eq(envdbi_adapter_probe(p, &db, secret), ENVDB_OK);
	/* the deadline reaches the plugin; without one the fixture refuses */
	ck_assert_int_eq(envdbi_host_call_timeout_ms(), 30000);
	envdbi_host_set_call_timeout_ms(0);
	ck_assert_int_eq(envdbi_adapter_probe(p, &db, secret), ENVDB_ERR_TIMEOUT);
	ck_assert_str_eq(envdb_error_last()->message,
			 "plugin fxadapter: database fx_env-1: probe: no deadline set");
	envdbi_host_set_call_timeout_ms(30000);
	ck_assert_int_eq(envdbi_adapter_revoke(p, &db, ENVDB_AUTH_FULL_ACCESS, handle), ENVDB_OK);
	envdbi_secret_free(secret);
	secret = NULL;
	free(handle);
	handle = NULL;
	mreq.authorization = ENVDB_AUTH_READ_ONLY;
	ck_assert_int_eq(envdbi_adapter_mint(p, &db, &mreq, &secret, &handle), ENVDB_OK);
	envdbi_secret_free(secret);
	secret = NULL;
	free(handle);
	handle = NULL;

	ck_assert_int_eq(envdbi_adapter_list(p, &names, &n), ENVDB_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(names[0], "fx_env-1");
	envdbi_strv_free(names, n);
	ck_assert_int_eq(envdbi_adapter_drop(p, &db), ENVDB_OK);
	ck_assert_int_eq(envdbi_adapter_list(p, &names, &n), ENVDB_OK);
	ck_assert_uint_eq(n, 0);
	envdbi_strv_free(names, n);
	/* the plugin's native code travels with its report */
	mreq.authorization = ENVDB_AUTH_FULL_ACCESS;
	ck_assert_int_eq(envdbi_adapter_mint(p, &db, &mreq, &secret, &handle), ENVDB_ERR_NOT_FOUND);
	ck_assert_str_eq(envdb_error_last()->native_code, "42P01");
	ck_assert_str_eq(envdb_error_last()->message,
			 "plugin fxadapter: database fx_env-1: does not exist");

	/* absent capabilities are answered by the host */
	ck_assert_int_eq(envdbi_adapter_probe(ltx, &db, secret), ENVDB_ERR_NOT_SUPPORTED);
	ck_assert_str_eq(envdb_error_last()->message, "plugin ltx: probe is not supported");
	ck_assert_int_eq(envdbi_adapter_list(ltx, &names, &n), ENVDB_ERR_NOT_SUPPORTED);
	ck_assert_int_eq(envdbi_adapter_revoke(ltx, &db, 1, ""), ENVDB_ERR_NOT_SUPPORTED);
	mreq.authorization = ENVDB_AUTH_READ_ONLY;
	ck_assert_int_eq(envdbi_adapter_mint(ltx, &db, &mreq, &secret, &handle),
			 ENVDB_ERR_NOT_SUPPORTED);
	tu_assert_contains(envdb_error_last()->message, "read-only credentials are not supported");
	free(name);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Permissions on what is loaded (core/trust.c)                              */
/* ------------------------------------------------------------------------ */

/* Copy the fixture fxadapter.so to tu_dir/SUB/fxadapter.so (directories
 * made 0755), the file with `mode`; its path goes to out. */
static void copy_fixture(char *out, size_t cap, const char *sub, mode_t mode)
{
	char src[2 * PATH_MAX], dir[PATH_MAX], buf[65536];
	FILE *in, *o;
	size_t n, i;

	tu_path(dir, sizeof(dir), sub);
	for (i = strlen(tu_dir) + 1; dir[i]; i++)
		if (dir[i] == '/') {
			dir[i] = '\0';
			(void)mkdir(dir, 0755);
			dir[i] = '/';
		}
	(void)mkdir(dir, 0755);
	ck_assert_int_eq(chmod(dir, 0755), 0);
	snprintf(src, sizeof(src), "%s/fxadapter.so", tu_fixture_dir());
	ck_assert_int_lt(snprintf(out, cap, "%s/fxadapter.so", dir), (int)cap);
	in = fopen(src, "rb");
	ck_assert_ptr_nonnull(in);
	o = fopen(out, "wb");
	ck_assert_ptr_nonnull(o);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, o), n);
	fclose(in);
	ck_assert_int_eq(fclose(o), 0);
	ck_assert_int_eq(chmod(out, mode), 0);
}

/* Load fxadapter from tu_dir/SUB. */
static int load_from(const char *sub)
{
	char text[PATH_MAX + 256];

	envdbi_plugins_free(set);
	envdbi_manifest_free(m);
	set = NULL;
	m = NULL;
	snprintf(text, sizeof(text),
		 "version: 1\nplugin_dir: %s/%s\nplugins:\n  - {name: fxadapter, kind: adapter}\n",
		 tu_dir, sub);
	tu_write(mpath, sizeof(mpath), "envdb.yaml", 0600, text);
	ck_assert_msg(envdbi_manifest_load(&m, mpath) == ENVDB_OK, "manifest: %s",
		      envdb_error_last()->message);
	return envdbi_plugins_load(&set, m);
}

/* Loading from SUB is refused, and the message says `what`. */
static void expect_refused(const char *sub, const char *what)
{
	int rc = load_from(sub);

	ck_assert_msg(rc == ENVDB_ERR_CONFIG, "status %d (%s)", rc, envdb_error_last()->message);
	ck_assert_ptr_null(set);
	tu_assert_contains(envdb_error_last()->message, "plugin fxadapter (");
	tu_assert_contains(envdb_error_last()->message, "): refused: ");
	tu_assert_contains(envdb_error_last()->message, what);
}

START_TEST(trusted_plugin_loads)
{
	char so[PATH_MAX];

	copy_fixture(so, sizeof(so), "ok", 0755);
	ck_assert_msg(load_from("ok") == ENVDB_OK, "%s", envdb_error_last()->message);
	ck_assert_uint_eq(envdbi_plugins_count(set), 1);
	/* the name shown is the one configured, not the descriptor it came from */
	ck_assert_str_eq(envdbi_plugin_path(envdbi_plugins_at(set, 0)), so);
}
END_TEST

START_TEST(group_writable_plugin_refused)
{
	char so[PATH_MAX], want[2 * PATH_MAX];

	copy_fixture(so, sizeof(so), "gw", 0775);
	snprintf(want, sizeof(want), "file %s is writable by group or others (mode 0775", so);
	expect_refused("gw", want);
}
END_TEST

START_TEST(world_writable_plugin_refused)
{
	char so[PATH_MAX], want[2 * PATH_MAX];

	copy_fixture(so, sizeof(so), "ow", 0757);
	snprintf(want, sizeof(want), "file %s is writable by group or others (mode 0757", so);
	expect_refused("ow", want);
}
END_TEST

START_TEST(foreign_owned_plugin_refused)
{
	char so[PATH_MAX], want[2 * PATH_MAX];

	if (geteuid() != 0) {
		printf("foreign_owned_plugin_refused: skipped: chown needs root\n");
		return;
	}
	copy_fixture(so, sizeof(so), "foreign", 0755);
	ck_assert_int_eq(chown(so, 12345, 12345), 0);
	snprintf(want, sizeof(want), "file %s is owned by uid 12345 (mode 0755), neither root nor "
		 "the current user", so);
	expect_refused("foreign", want);
}
END_TEST

START_TEST(writable_plugin_dir_refused)
{
	char so[PATH_MAX], dir[PATH_MAX], want[2 * PATH_MAX];

	copy_fixture(so, sizeof(so), "wdir", 0755);
	tu_path(dir, sizeof(dir), "wdir");
	ck_assert_int_eq(chmod(dir, 0777), 0);
	snprintf(want, sizeof(want), "directory %s is writable by group or others (mode 0777", dir);
	expect_refused("wdir", want);
}
END_TEST

START_TEST(writable_parent_dir_refused)
{
	char so[PATH_MAX], dir[PATH_MAX], want[2 * PATH_MAX];

	/* tu_dir/up is writable by the group: whoever is in it can rename
	 * tu_dir/up/lib and put another plugin directory in its place */
	copy_fixture(so, sizeof(so), "up/lib", 0755);
	tu_path(dir, sizeof(dir), "up");
	ck_assert_int_eq(chmod(dir, 0775), 0);
	snprintf(want, sizeof(want), "directory %s is writable by group or others (mode 0775", dir);
	expect_refused("up/lib", want);
}
END_TEST

/* Load `plugins` from a manifest with plugin_path `path` (a YAML flow
 * list) and, when `dir` is not NULL, plugin_dir `dir`. */
static int load_path(const char *path, const char *dir, const char *plugins)
{
	char text[4 * PATH_MAX];

	envdbi_plugins_free(set);
	envdbi_manifest_free(m);
	set = NULL;
	m = NULL;
	snprintf(text, sizeof(text), "version: 1\n%s%s%splugin_path: %s\nplugins:\n%s",
		 dir ? "plugin_dir: " : "", dir ? dir : "", dir ? "\n" : "", path, plugins);
	tu_write(mpath, sizeof(mpath), "envdb.yaml", 0600, text);
	ck_assert_msg(envdbi_manifest_load(&m, mpath) == ENVDB_OK, "manifest: %s",
		      envdb_error_last()->message);
	return envdbi_plugins_load(&set, m);
}

START_TEST(plugin_path_searched_before_plugin_dir)
{
	char so[PATH_MAX], path[3 * PATH_MAX], want[PATH_MAX + 16];

	copy_fixture(so, sizeof(so), "site", 0755);
	/* a directory that does not exist is skipped; fxadapter is found in
	 * site/ before the plugin directory; `good` is only in the plugin
	 * directory, which plugin_path does not hide */
	snprintf(path, sizeof(path), "[%s/absent, %s/site]", tu_dir, tu_dir);
	ck_assert_msg(load_path(path, tu_fixture_dir(),
				"  - {name: fxadapter, kind: adapter}\n"
				"  - {name: good, kind: encryptor, config: {dir: d, current: k}}\n") ==
			  ENVDB_OK,
		      "%s", envdb_error_last()->message);
	ck_assert_uint_eq(envdbi_plugins_count(set), 2);
	ck_assert_str_eq(envdbi_plugin_path(envdbi_plugins_find(set, "fxadapter", 0)), so);
	snprintf(want, sizeof(want), "%s/good.so", tu_fixture_dir());
	ck_assert_str_eq(envdbi_plugin_path(envdbi_plugins_find(set, "good", 0)), want);
}
END_TEST

START_TEST(plugin_path_keeps_system_dir)
{
	char dir[PATH_MAX], path[PATH_MAX + 8], want[PATH_MAX + 16];

	/* without plugin_dir, the system directory ($ENVDB_PLUGIN_DIR here)
	 * is still searched after plugin_path */
	tu_path(dir, sizeof(dir), "empty");
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "[%s]", dir);
	setenv("ENVDB_PLUGIN_DIR", tu_fixture_dir(), 1);
	ck_assert_msg(load_path(path, NULL, "  - {name: fxadapter, kind: adapter}\n") == ENVDB_OK,
		      "%s", envdb_error_last()->message);
	unsetenv("ENVDB_PLUGIN_DIR");
	snprintf(want, sizeof(want), "%s/fxadapter.so", tu_fixture_dir());
	ck_assert_str_eq(envdbi_plugin_path(envdbi_plugins_at(set, 0)), want);
}
END_TEST

START_TEST(plugin_path_writable_dir_refused)
{
	char dir[PATH_MAX], path[PATH_MAX + 8], want[3 * PATH_MAX];

	/* the plugin is not in wpath/, but whoever can write wpath/ could put
	 * one there: the directory is refused, not skipped */
	tu_path(dir, sizeof(dir), "wpath");
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_int_eq(chmod(dir, 0777), 0);
	snprintf(path, sizeof(path), "[%s]", dir);
	ck_assert_int_eq(load_path(path, tu_fixture_dir(), "  - {name: fxadapter, kind: adapter}\n"),
			 ENVDB_ERR_CONFIG);
	ck_assert_ptr_null(set);
	snprintf(want, sizeof(want),
		 "plugin fxadapter: refused: plugin_path directory %s: directory %s is writable by "
		 "group or others (mode 0777",
		 dir, dir);
	tu_assert_contains(envdb_error_last()->message, want);
}
END_TEST

START_TEST(foreign_owned_plugin_dir_refused)
{
	char so[PATH_MAX], dir[PATH_MAX], want[2 * PATH_MAX];

	if (geteuid() != 0) {
		printf("foreign_owned_plugin_dir_refused: skipped: chown needs root\n");
		return;
	}
	copy_fixture(so, sizeof(so), "fdir", 0755);
	tu_path(dir, sizeof(dir), "fdir");
	ck_assert_int_eq(chown(dir, 12345, 12345), 0);
	snprintf(want, sizeof(want), "directory %s is owned by uid 12345 (mode 0755)", dir);
	expect_refused("fdir", want);
}
END_TEST

START_TEST(sticky_dir_accepted)
{
	char so[PATH_MAX], dir[PATH_MAX];

	/* like /tmp: others may create files in it, not replace ours */
	copy_fixture(so, sizeof(so), "sticky/lib", 0755);
	tu_path(dir, sizeof(dir), "sticky");
	ck_assert_int_eq(chmod(dir, 01777), 0);
	ck_assert_msg(load_from("sticky/lib") == ENVDB_OK, "%s", envdb_error_last()->message);
	/* the sticky bit does not excuse a writable plugin directory's file */
	ck_assert_int_eq(chmod(so, 0777), 0);
	expect_refused("sticky/lib", "is writable by group or others (mode 0777");
}
END_TEST

START_TEST(symlinked_plugin_refused)
{
	char so[PATH_MAX], link[PATH_MAX];

	copy_fixture(so, sizeof(so), "real", 0755);
	copy_fixture(link, sizeof(link), "linked", 0755);
	ck_assert_int_eq(unlink(link), 0);
	ck_assert_int_eq(symlink(so, link), 0);
	expect_refused("linked", "is a symbolic link; name the shared object itself");
}
END_TEST

START_TEST(loaded_inode_is_checked_inode)
{
	char so[PATH_MAX], line[PATH_MAX + 256];
	bool mapped = false;
	FILE *maps;

	/* The module is mapped from the file that was checked, and the
	 * descriptor it was loaded through stays open while it is loaded. */
	copy_fixture(so, sizeof(so), "ino", 0755);
	ck_assert_msg(load_from("ino") == ENVDB_OK, "%s", envdb_error_last()->message);
	maps = fopen("/proc/self/maps", "r");
	if (maps == NULL) {
		printf("loaded_inode_is_checked_inode: skipped: no /proc/self/maps\n");
		return;
	}
	while (fgets(line, sizeof(line), maps) != NULL)
		mapped = mapped || strstr(line, so) != NULL;
	fclose(maps);
	ck_assert_msg(mapped, "%s is not mapped", so);
	/* replacing the file now changes nothing for the loaded module */
	ck_assert_int_eq(unlink(so), 0);
	ck_assert_ptr_nonnull(envdbi_plugins_find(set, "fxadapter", ENVDB_PLUGIN_ADAPTER));
}
END_TEST

/* ------------------------------------------------------------------------ */
/* ABI 1.1: the call context on a plugin's own threads, config_secret,      */
/* module hooks; ABI 1.0 plugins                                             */
/* ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(worker_thread_reports_and_sees_deadline)
{
	envdb_create_request req = {sizeof(req), "env-1", "taken_1", NULL, "free", 10, NULL};
	envdbi_plugin *p;
	char *url = NULL, *meta = NULL;
	const char *d;
	int64_t before, deadline;

	setenv("ENVDB_TEST_SECRET", "t", 1);
	ck_assert_msg(load("  - {name: worker, kind: adapter,"
			   " config: {token_env: ENVDB_TEST_SECRET}}\n") == ENVDB_OK,
		      "%s", envdb_error_last()->message);
	p = envdbi_plugins_find(set, "worker", ENVDB_PLUGIN_ADAPTER);
	/* an error reported on the worker thread is the operation's error */
	ck_assert_int_eq(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_ERR_EXISTS);
	ck_assert_str_eq(envdb_error_last()->message,
			 "plugin worker: database taken_1: already exists (reported by a worker)");
	ck_assert_str_eq(envdb_error_last()->native_code, "23505");
	/* the worker sees the operation's deadline: now + the call timeout */
	req.database_name = "fresh_1";
	before = mono_ms();
	ck_assert_int_eq(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_OK);
	d = strstr(url, "?deadline=");
	ck_assert_ptr_nonnull(d);
	deadline = strtoll(d + 10, NULL, 10);
	ck_assert_int_ge(deadline, before + 30000);
	ck_assert_int_le(deadline, mono_ms() + 30000);
	free(url);
	free(meta);
}
END_TEST

START_TEST(worker_thread_sees_cancellation)
{
	envdb_db_ref db = {sizeof(db), "env-1", "db", NULL, NULL, NULL};
	envdb_mint_request mreq = {sizeof(mreq), "slow", ENVDB_AUTH_FULL_ACCESS, 0, NULL, NULL, 0};
	envdbi_secret *secret = NULL;
	char *handle = NULL;
	envdbi_plugin *p;
	int64_t t0;

	setenv("ENVDB_TEST_SECRET", "t", 1);
	ck_assert_int_eq(load("  - {name: worker, kind: adapter,"
			      " config: {token_env: ENVDB_TEST_SECRET}}\n"),
			 ENVDB_OK);
	p = envdbi_plugins_find(set, "worker", ENVDB_PLUGIN_ADAPTER);
	envdbi_host_set_call_timeout_ms(200);
	t0 = mono_ms();
	ck_assert_int_eq(envdbi_adapter_mint(p, &db, &mreq, &secret, &handle), ENVDB_ERR_TIMEOUT);
	ck_assert_int_lt(mono_ms() - t0, 5000); /* the worker stopped when told */
	tu_assert_contains(envdb_error_last()->message,
			   "plugin worker: mint: gave up: the host cancelled the call");
	tu_assert_contains(envdb_error_last()->message, "ms after its deadline");
	ck_assert_ptr_null(secret);
}
END_TEST

START_TEST(worker_thread_report_is_redacted)
{
	envdb_db_ref db = {sizeof(db), "env-1", "db_1", NULL, NULL, NULL};
	envdbi_secret *secret = envdbi_secret_new("probe-secret-0123", 17);
	envdbi_plugin *p;

	setenv("ENVDB_TEST_SECRET", "t", 1);
	ck_assert_int_eq(load("  - {name: worker, kind: adapter,"
			      " config: {token_env: ENVDB_TEST_SECRET}}\n"),
			 ENVDB_OK);
	p = envdbi_plugins_find(set, "worker", ENVDB_PLUGIN_ADAPTER);
	ck_assert_int_eq(envdbi_adapter_probe(p, &db, secret), ENVDB_ERR_AUTH);
	ck_assert_str_eq(envdb_error_last()->message,
			 "plugin worker: database db_1: secret [redacted] refused");
	envdbi_secret_free(secret);
}
END_TEST

START_TEST(config_secret_reads_again)
{
	envdb_db_ref db = {sizeof(db), "env-1", "db", NULL, NULL, NULL};
	envdb_mint_request mreq = {sizeof(mreq), "c1", ENVDB_AUTH_FULL_ACCESS, 0, NULL, NULL, 0};
	char sec[PATH_MAX];
	envdbi_secret *secret = NULL;
	char *handle = NULL;
	envdbi_plugin *p;

	/* from an environment variable */
	setenv("ENVDB_TEST_SECRET", "token-one", 1);
	ck_assert_int_eq(load("  - {name: worker, kind: adapter,"
			      " config: {token_env: ENVDB_TEST_SECRET}}\n"),
			 ENVDB_OK);
	p = envdbi_plugins_find(set, "worker", ENVDB_PLUGIN_ADAPTER);
	ck_assert_int_eq(envdbi_adapter_mint(p, &db, &mreq, &secret, &handle), ENVDB_OK);
	ck_assert_str_eq(secret->data, "token-one");
	envdbi_secret_free(secret);
	free(handle);
	setenv("ENVDB_TEST_SECRET", "token-two-rotated", 1);
	ck_assert_int_eq(envdbi_adapter_mint(p, &db, &mreq, &secret, &handle), ENVDB_OK);
	ck_assert_str_eq(secret->data, "token-two-rotated");
	envdbi_secret_free(secret);
	free(handle);
	unsetenv("ENVDB_TEST_SECRET");
	ck_assert_int_eq(envdbi_adapter_mint(p, &db, &mreq, &secret, &handle), ENVDB_ERR_CONFIG);
	ck_assert_str_eq(envdb_error_last()->message,
			 "plugin worker: config_secret token: plugin worker: secret token: "
			 "environment variable ENVDB_TEST_SECRET is not set");

	/* from a file, relative to the manifest */
	tu_write(sec, sizeof(sec), "tok", 0600, "file-token-1\n");
	ck_assert_int_eq(load("  - {name: worker, kind: adapter, config: {token_file: tok}}\n"),
			 ENVDB_OK);
	p = envdbi_plugins_find(set, "worker", ENVDB_PLUGIN_ADAPTER);
	tu_write(sec, sizeof(sec), "tok", 0600, "file-token-2\n");
	ck_assert_int_eq(envdbi_adapter_mint(p, &db, &mreq, &secret, &handle), ENVDB_OK);
	ck_assert_str_eq(secret->data, "file-token-2");
	envdbi_secret_free(secret);
	free(handle);
}
END_TEST

static void read_text(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	out[0] = '\0';
	if (f == NULL)
		return;
	n = fread(out, 1, cap - 1, f);
	out[n] = '\0';
	fclose(f);
}

START_TEST(module_hooks_once_per_module)
{
	char log[PATH_MAX], plugins[1024], text[256];

	tu_path(log, sizeof(log), "module.log");
	setenv("ENVDB_TEST_MODULE_LOG", log, 1);
	setenv("ENVDB_TEST_SECRET", "t", 1);
	/* two instances of one module: one module_load, one module_unload */
	snprintf(plugins, sizeof(plugins),
		 "  - {name: worker, kind: adapter, config: {token_env: ENVDB_TEST_SECRET}}\n"
		 "  - {name: worker2, path: worker.so, kind: adapter,"
		 " config: {token_env: ENVDB_TEST_SECRET}}\n");
	ck_assert_msg(load(plugins) == ENVDB_OK, "%s", envdb_error_last()->message);
	ck_assert_uint_eq(envdbi_plugins_count(set), 2);
	read_text(log, text, sizeof(text));
	ck_assert_str_eq(text, "load\n");
	envdbi_plugins_free(set);
	set = NULL;
	read_text(log, text, sizeof(text));
	ck_assert_str_eq(text, "load\nunload\n");
	/* not initialised (check only): no module_load either */
	remove(log);
	ck_assert_int_eq(load_flags(plugins, ENVDBI_LOAD_NO_INIT), ENVDB_OK);
	envdbi_plugins_free(set);
	set = NULL;
	read_text(log, text, sizeof(text));
	ck_assert_str_eq(text, "");
}
END_TEST

START_TEST(module_load_failure_refuses_plugin)
{
	setenv("ENVDB_TEST_MODULE_FAIL", "1", 1);
	setenv("ENVDB_TEST_SECRET", "t", 1);
	expect_fail("  - {name: worker, kind: adapter, config: {token_env: ENVDB_TEST_SECRET}}\n",
		    ENVDB_ERR_UNAVAILABLE, "worker",
		    "): module_load failed: client library: global initialisation failed");
}
END_TEST

START_TEST(abi_1_0_plugin_loads)
{
	envdb_create_request req = {sizeof(req), "env-1", "taken_1", NULL, "free", 10, NULL};
	envdb_db_ref db = {sizeof(db), "env-1", "db", NULL, NULL, NULL};
	envdb_mint_request mreq = {sizeof(mreq), "c1", ENVDB_AUTH_FULL_ACCESS, 0, NULL, NULL, 0};
	envdbi_secret *secret = NULL;
	char *url = NULL, *meta = NULL, *name = NULL, *handle = NULL;
	const envdb_plugin_descriptor *d;
	envdbi_plugin *p;
	int64_t granted = -1;

	ck_assert_msg(load("  - {name: v10, kind: adapter}\n") == ENVDB_OK, "%s",
		      envdb_error_last()->message);
	p = envdbi_plugins_find(set, "v10", ENVDB_PLUGIN_ADAPTER);
	d = envdbi_plugin_descriptor(p);
	ck_assert_uint_eq(d->abi_minor, 0);
	/* the members it does not have read as absent */
	ck_assert_ptr_null(d->module_load);
	ck_assert_ptr_null(d->url_schemes);
	ck_assert_int_eq(envdbi_adapter_suspend(p, &db), ENVDB_ERR_NOT_SUPPORTED);
	/* and it works */
	ck_assert_int_eq(envdbi_adapter_database_name(p, "env-1", &name), ENVDB_OK);
	ck_assert_str_eq(name, "env-1");
	ck_assert_int_eq(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_ERR_EXISTS);
	ck_assert_str_eq(envdb_error_last()->message, "plugin v10: database taken_1: already exists");
	ck_assert_str_eq(envdb_error_last()->native_code, "23505");
	req.database_name = "db";
	ck_assert_int_eq(envdbi_adapter_create(p, &req, &url, &meta), ENVDB_OK);
	ck_assert_str_eq(url, "v10://db");
	mreq.granted_expires_at = &granted;
	mreq.expires_at = 1234;
	ck_assert_int_eq(envdbi_adapter_mint(p, &db, &mreq, &secret, &handle), ENVDB_OK);
	ck_assert_str_eq(secret->data, "fixture-secret");
	ck_assert_int_eq(granted, 1234);
	ck_assert_int_eq(envdbi_adapter_probe(p, &db, secret), ENVDB_OK);
	envdbi_host_set_call_timeout_ms(0);
	ck_assert_int_eq(envdbi_adapter_probe(p, &db, secret), ENVDB_ERR_TIMEOUT);
	ck_assert_str_eq(envdb_error_last()->message,
			 "plugin v10: database db: probe: no deadline ahead");
	ck_assert_int_eq(envdbi_adapter_drop(p, &db), ENVDB_OK);
	envdbi_secret_free(secret);
	free(handle);
	free(url);
	free(meta);
	free(name);
}
END_TEST

static Suite *loader_suite(void)
{
	Suite *s = suite_create("loader");
	TCase *fail = tcase_create("failure modes");
	TCase *cfg = tcase_create("configuration");
	TCase *calls = tcase_create("calls");
	TCase *perm = tcase_create("permissions");

	tcase_add_checked_fixture(fail, setup, teardown);
	tcase_add_test(fail, no_entry_symbol);
	tcase_add_test(fail, only_v2_entry);
	tcase_add_test(fail, newer_minor);
	tcase_add_test(fail, other_major);
	tcase_add_test(fail, short_struct);
	tcase_add_test(fail, null_name);
	tcase_add_test(fail, name_mismatch);
	tcase_add_test(fail, init_fails);
	tcase_add_test(fail, unknown_config_key);
	tcase_add_test(fail, missing_required_key);
	tcase_add_test(fail, not_a_shared_object);
	tcase_add_test(fail, null_descriptor);
	tcase_add_test(fail, required_operation_missing);
	tcase_add_test(fail, capability_without_slot);
	tcase_add_test(fail, kind_mismatch);
	tcase_add_test(fail, missing_file);
	tcase_add_test(fail, ltx_prefixed_entry);
	suite_add_tcase(s, fail);

	tcase_add_checked_fixture(cfg, setup, teardown);
	tcase_add_test(cfg, plugin_dir_from_environment);
	tcase_add_test(cfg, inline_secret_refused);
	tcase_add_test(cfg, secret_from_file);
	tcase_add_test(cfg, secret_from_environment);
	tcase_add_test(cfg, critical_and_optional);
	tcase_add_test(cfg, check_only_does_not_init);
	suite_add_tcase(s, cfg);

	tcase_add_checked_fixture(perm, setup, teardown);
	tcase_add_test(perm, trusted_plugin_loads);
	tcase_add_test(perm, group_writable_plugin_refused);
	tcase_add_test(perm, world_writable_plugin_refused);
	tcase_add_test(perm, foreign_owned_plugin_refused);
	tcase_add_test(perm, writable_plugin_dir_refused);
	tcase_add_test(perm, writable_parent_dir_refused);
	tcase_add_test(perm, foreign_owned_plugin_dir_refused);
	tcase_add_test(perm, sticky_dir_accepted);
	tcase_add_test(perm, symlinked_plugin_refused);
	tcase_add_test(perm, loaded_inode_is_checked_inode);
	tcase_add_test(perm, plugin_path_searched_before_plugin_dir);
	tcase_add_test(perm, plugin_path_keeps_system_dir);
	tcase_add_test(perm, plugin_path_writable_dir_refused);
	suite_add_tcase(s, perm);

	tcase_add_checked_fixture(calls, setup, teardown);
	tcase_add_test(calls, encryptor_calls);
	tcase_add_test(calls, adapter_calls);
	tcase_add_test(calls, worker_thread_reports_and_sees_deadline);
	tcase_add_test(calls, worker_thread_sees_cancellation);
	tcase_add_test(calls, worker_thread_report_is_redacted);
	tcase_add_test(calls, config_secret_reads_again);
	tcase_add_test(calls, module_hooks_once_per_module);
	tcase_add_test(calls, module_load_failure_refuses_plugin);
	tcase_add_test(calls, abi_1_0_plugin_loads);
	suite_add_tcase(s, calls);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(loader_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
