/*
 * tests/test_manifest.c — the YAML manifest (core/manifest.c): every value
 * and default, relative paths, and for each kind of mistake the exact
 * "FILE:LINE:COLUMN: KEY.PATH: cause" message; hostile input (aliases,
 * anchors, deep nesting, huge files) is refused.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_testutil.h"
#include "internal.h"

static envdbi_manifest *m;
static char mpath[PATH_MAX];

static void setup(void)
{
	tu_setup();
	m = NULL;
	envdb_error_clear();
}

static void teardown(void)
{
	envdbi_manifest_free(m);
	m = NULL;
	tu_teardown();
}

static int load_text(const char *text)
{
	tu_write(mpath, sizeof(mpath), "envdb.yaml", 0600, text);
	envdbi_manifest_free(m);
	m = NULL;
	return envdbi_manifest_load(&m, mpath);
}

/* The manifest must be refused with ENVDB_ERR_CONFIG and the message
 * "MANIFEST:<where>"; `where` is e.g. "3:5: defaults.plan: 'gold' is not". */
static void expect_error(const char *text, const char *where)
{
	char want[PATH_MAX + 256];
	int rc = load_text(text);

	ck_assert_int_eq(rc, ENVDB_ERR_CONFIG);
	ck_assert_ptr_null(m);
	ck_assert_int_eq(envdb_error_last()->status, ENVDB_ERR_CONFIG);
	snprintf(want, sizeof(want), "%s:%s", mpath, where);
	tu_assert_contains(envdb_error_last()->message, want);
	/* the message starts with the file */
	ck_assert_int_eq(strncmp(envdb_error_last()->message, mpath, strlen(mpath)), 0);
}

static void expect_no_echo(const char *text, const char *secret)
{
	ck_assert_int_eq(load_text(text), ENVDB_ERR_CONFIG);
	ck_assert_ptr_null(strstr(envdb_error_last()->message, secret));
}

START_TEST(full_manifest)
{
	ck_assert_int_eq(load_text("version: 1\n"
				   "control_plane: state/cp.db\n"
				   "plugin_dir: /opt/envdb/plugins\n"
				   "defaults: {driver: pg, region: eu-west, plan: pro,\n"
				   "           storage_limit_mb: 2048, encryptor: vault}\n"
				   "provisioning: {lease_seconds: 60, delete_grace_seconds: 0}\n"
				   "credentials: {rotation_overlap_seconds: 10}\n"
				   "resolve: {cache_size: 0, cache_ttl_ms: 5}\n"
				   "control_plane_busy_timeout_ms: 250\n"
				   "legacy: {register_shim: false, encryptor: old}\n"
				   "plugins:\n"
				   "  - name: sqlite\n"
				   "    kind: adapter\n"
				   "    critical: false\n"
				   "    config: {base_dir: environments, grace_seconds: 5}\n"
				   "  - name: pg\n"
				   "    kind: adapter\n"
				   "    path: /usr/lib/x/postgres.so\n"
				   "  - name: vault\n"
				   "    kind: encryptor\n"
				   "    config:\n"
				   "      token_file: secrets/token\n"
				   "      addr: 'https://127.0.0.1:8200'\n"
				   "  - {name: old, kind: encryptor}\n"),
			 ENVDB_OK);
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(m->path, mpath);
	ck_assert_str_eq(m->dir, tu_dir);
	{
		char cp[PATH_MAX];
		tu_path(cp, sizeof(cp), "state/cp.db");
		ck_assert_str_eq(m->control_plane, cp);
	}
	ck_assert_str_eq(m->plugin_dir, "/opt/envdb/plugins");
	ck_assert_str_eq(m->default_driver, "pg");
	ck_assert_str_eq(m->default_region, "eu-west");
	ck_assert_str_eq(m->default_plan, "pro");
	ck_assert_int_eq(m->default_storage_mb, 2048);
	ck_assert_str_eq(m->default_encryptor, "vault");
	ck_assert_int_eq(m->lease_seconds, 60);
	ck_assert_int_eq(m->delete_grace_seconds, 0);
	ck_assert_int_eq(m->rotation_overlap_seconds, 10);
	ck_assert_int_eq(m->cache_size, 0);
	ck_assert_int_eq(m->cache_ttl_ms, 5);
	ck_assert_int_eq(m->busy_timeout_ms, 250);
	ck_assert(!m->legacy_shim);
	ck_assert_str_eq(m->legacy_encryptor, "old");
	ck_assert_uint_eq(m->n_plugins, 4);
	ck_assert_str_eq(m->plugins[0].name, "sqlite");
	ck_assert_uint_eq(m->plugins[0].kind, ENVDB_PLUGIN_ADAPTER);
	ck_assert_str_eq(m->plugins[0].path, "sqlite.so");
	ck_assert(!m->plugins[0].critical);
	ck_assert_uint_eq(m->plugins[0].n_config, 2);
	ck_assert_str_eq(m->plugins[0].config[0].key, "base_dir");
	ck_assert_str_eq(m->plugins[0].config[0].value, "environments");
	ck_assert_int_eq(m->plugins[0].config[0].line, 15);
	ck_assert_int_eq(m->plugins[0].config[1].key_line, 15);
	ck_assert_str_eq(m->plugins[0].config[1].value, "5");
	ck_assert_int_eq(m->plugins[0].line, 12);
	ck_assert_int_eq(m->plugins[0].column, 5);
	ck_assert_str_eq(m->plugins[1].path, "/usr/lib/x/postgres.so");
	ck_assert(m->plugins[1].critical);
	ck_assert_uint_eq(m->plugins[2].kind, ENVDB_PLUGIN_ENCRYPTOR);
	ck_assert_str_eq(m->plugins[2].config[0].key, "token_file");
	ck_assert_str_eq(m->plugins[2].config[0].value, "secrets/token");
	ck_assert_int_eq(m->plugins[2].config[0].line, 22);
	ck_assert_int_eq(m->plugins[2].config[0].column, 19);
	ck_assert_int_eq(m->plugins[2].config[0].key_column, 7);
	ck_assert_str_eq(m->plugins[2].config[1].value, "https://127.0.0.1:8200");
}
END_TEST

START_TEST(defaults_when_absent)
{
	char cp[PATH_MAX];

	ck_assert_int_eq(load_text("version: 1\n"
				   "plugins:\n"
				   "  - {name: kms, kind: encryptor}\n"
				   "  - {name: sqlite, kind: adapter}\n"
				   "  - {name: other, kind: adapter}\n"),
			 ENVDB_OK);
	tu_path(cp, sizeof(cp), "control.db");
	ck_assert_str_eq(m->control_plane, cp);
	ck_assert_ptr_null(m->plugin_dir);
	ck_assert_str_eq(m->default_driver, "sqlite"); /* first adapter */
	ck_assert_str_eq(m->default_encryptor, "kms"); /* first encryptor */
	ck_assert_str_eq(m->default_region, "local");
	ck_assert_str_eq(m->default_plan, "free");
	ck_assert_int_eq(m->default_storage_mb, 1024);
	ck_assert_int_eq(m->lease_seconds, 300);
	ck_assert_int_eq(m->delete_grace_seconds, 604800);
	ck_assert_int_eq(m->rotation_overlap_seconds, 3600);
	ck_assert_int_eq(m->cache_size, 10000);
	ck_assert_int_eq(m->cache_ttl_ms, 30000);
	ck_assert_int_eq(m->busy_timeout_ms, 5000);
	ck_assert(m->legacy_shim);
	ck_assert_ptr_null(m->legacy_encryptor);
	ck_assert_str_eq(m->plugins[2].path, "other.so");
	ck_assert(m->plugins[2].critical);
	ck_assert_uint_eq(m->plugins[2].n_config, 0);

	/* no plugins at all is a valid (if useless) manifest */
	ck_assert_int_eq(load_text("version: 1\n"), ENVDB_OK);
	ck_assert_uint_eq(m->n_plugins, 0);
	ck_assert_ptr_null(m->default_driver);
	ck_assert_ptr_null(m->default_encryptor);
}
END_TEST

START_TEST(relative_plugin_dir)
{
	char want[PATH_MAX];

	ck_assert_int_eq(load_text("version: 1\nplugin_dir: lib/plugins\n"), ENVDB_OK);
	tu_path(want, sizeof(want), "lib/plugins");
	ck_assert_str_eq(m->plugin_dir, want);
	ck_assert_str_eq(envdbi_plugin_dir(m), want);
}
END_TEST

START_TEST(plugin_path_list)
{
	char want[PATH_MAX];

	ck_assert_int_eq(load_text("version: 1\nplugin_dir: /opt/p\n"
				   "plugin_path: [extra, /usr/lib/site/envdb]\n"),
			 ENVDB_OK);
	ck_assert_uint_eq(m->n_plugin_path, 2);
	tu_path(want, sizeof(want), "extra");
	ck_assert_str_eq(m->plugin_path[0], want);
	ck_assert_str_eq(m->plugin_path[1], "/usr/lib/site/envdb");
	ck_assert_ptr_null(m->plugin_path[2]);
	/* plugin_path adds to the plugin directory, it does not replace it */
	ck_assert_str_eq(envdbi_plugin_dir(m), "/opt/p");
	/* one directory may be given as a string */
	ck_assert_int_eq(load_text("version: 1\nplugin_path: /srv/plugins\n"), ENVDB_OK);
	ck_assert_uint_eq(m->n_plugin_path, 1);
	ck_assert_str_eq(m->plugin_path[0], "/srv/plugins");
	ck_assert_int_eq(load_text("version: 1\n"), ENVDB_OK);
	ck_assert_uint_eq(m->n_plugin_path, 0);
	expect_error("version: 1\nplugin_path: {a: b}\n",
		     "2:14: plugin_path: expected a list of directories, found a mapping");
	expect_error("version: 1\nplugin_path:\n  - /a\n  - [b]\n",
		     "4:5: plugin_path[1]: expected a directory, found a list");
	expect_error("version: 1\nplugin_path: [/a, '']\n", "2:19: plugin_path[1]: value is empty");
}
END_TEST

START_TEST(unknown_keys_everywhere)
{
	expect_error("version: 1\ncontrol_plain: x.db\n", "2:1: control_plain: unknown key");
	expect_error("version: 1\ndefaults:\n  region: eu\n  regoin: eu\n",
		     "4:3: defaults.regoin: unknown key");
	expect_error("version: 1\nprovisioning: {lease: 3}\n",
		     "2:16: provisioning.lease: unknown key");
	expect_error("version: 1\ncredentials: {x: 1}\n", "2:15: credentials.x: unknown key");
	expect_error("version: 1\nresolve: {ttl: 1}\n", "2:11: resolve.ttl: unknown key");
	expect_error("version: 1\nlegacy: {shim: true}\n", "2:10: legacy.shim: unknown key");
	expect_error("version: 1\n"
		     "plugins:\n"
		     "  - {name: a, kind: adapter}\n"
		     "  - {name: b, kind: adapter}\n"
		     "  - name: c\n"
		     "    kind: adapter\n"
		     "    paht: c.so\n",
		     "7:5: plugins[2].paht: unknown key");
}
END_TEST

START_TEST(wrong_values)
{
	expect_error("control_plane: x\n", "1:1: version: missing required key");
	expect_error("version: 2\n", "1:10: version: unsupported manifest version 2");
	expect_error("version: '1'\n", "1:10: version: expected an integer, found a quoted string");
	expect_error("version: 1\ncontrol_plane_busy_timeout_ms: soon\n",
		     "2:32: control_plane_busy_timeout_ms: 'soon' is not an integer");
	expect_error("version: 1\ndefaults: {storage_limit_mb: 0}\n",
		     "2:30: defaults.storage_limit_mb: 0 is out of range (at least 1)");
	expect_error("version: 1\ndefaults: {plan: gold}\n",
		     "2:18: defaults.plan: 'gold' is not a plan");
	expect_error("version: 1\nlegacy: {register_shim: maybe}\n",
		     "2:25: legacy.register_shim: expected true or false, found 'maybe'");
	expect_error("version: 1\ndefaults: [a, b]\n",
		     "2:11: defaults: expected a mapping, found a list");
	expect_error("version: 1\ncontrol_plane: {a: b}\n", "2:17: control_plane.a: unknown key");
	expect_error("version: 1\ncontrol_plane: [a]\n",
		     "2:16: control_plane: expected a file name or a mapping, found a list");
	expect_error("version: 1\ncontrol_plane: ''\n", "2:16: control_plane: value is empty");
	expect_error("version: 1\nversion: 1\n", "2:1: version: duplicate key (first at line 1)");
}
END_TEST

/* The *_seconds keys take the one duration grammar (core/duration.h). */
START_TEST(durations)
{
	ck_assert_int_eq(load_text("version: 1\n"
				   "provisioning: {lease_seconds: 5m, delete_grace_seconds: 1w}\n"
				   "credentials: {rotation_overlap_seconds: 1h30m,\n"
				   "              expiry_horizon_seconds: 2d}\n"),
			 ENVDB_OK);
	ck_assert_int_eq(m->lease_seconds, 300);
	ck_assert_int_eq(m->delete_grace_seconds, 604800);
	ck_assert_int_eq(m->rotation_overlap_seconds, 5400);
	ck_assert_int_eq(m->expiry_horizon_seconds, 172800);
	expect_error("version: 1\nprovisioning: {delete_grace_seconds: 1x}\n",
		     "2:38: provisioning.delete_grace_seconds: '1x': not a duration (examples: "
		     "90s, 15m, 1h30m, 7d)");
	expect_error("version: 1\ncredentials: {rotation_overlap_seconds: 30m1h}\n",
		     "2:41: credentials.rotation_overlap_seconds: '30m1h': not a duration");
	expect_error("version: 1\nprovisioning: {lease_seconds: 0s}\n",
		     "2:31: provisioning.lease_seconds: 0 is out of range (at least 1)");
	expect_error("version: 1\nprovisioning: {delete_grace_seconds: 9223372036854775807}\n",
		     "2:38: provisioning.delete_grace_seconds: 9223372036854775807 is out of "
		     "range (at most 100 years)");
	expect_error(
		"version: 1\nprovisioning: {lease_seconds: '5m'}\n",
		"2:31: provisioning.lease_seconds: expected a duration, found a quoted string");
}
END_TEST

/* control_plane: the scalar is an SQLite file as always; the mapping names
 * the store backend. */
START_TEST(control_plane_forms)
{
	char want[PATH_MAX];

	ck_assert_int_eq(load_text("version: 1\ncontrol_plane: cp.db\n"), ENVDB_OK);
	tu_path(want, sizeof(want), "cp.db");
	ck_assert_str_eq(m->control_plane, want);
	ck_assert_str_eq(m->control_plane_driver, "sqlite");
	ck_assert_ptr_null(m->control_plane_conninfo_file);

	ck_assert_int_eq(load_text("version: 1\ncontrol_plane: {driver: sqlite, path: s/cp.db}\n"),
			 ENVDB_OK);
	tu_path(want, sizeof(want), "s/cp.db");
	ck_assert_str_eq(m->control_plane, want);
	ck_assert_str_eq(m->control_plane_driver, "sqlite");

	ck_assert_int_eq(load_text("version: 1\ncontrol_plane: {driver: sqlite}\n"), ENVDB_OK);
	tu_path(want, sizeof(want), "control.db");
	ck_assert_str_eq(m->control_plane, want);

	ck_assert_int_eq(load_text("version: 1\n"
				   "control_plane:\n"
				   "  driver: postgresql\n"
				   "  conninfo_file: secrets/pg.conninfo\n"),
			 ENVDB_OK);
	tu_path(want, sizeof(want), "secrets/pg.conninfo");
	ck_assert_str_eq(m->control_plane_driver, "postgresql");
	ck_assert_str_eq(m->control_plane_conninfo_file, want);
	ck_assert_ptr_null(m->control_plane_conninfo_env);
	ck_assert_str_eq(m->control_plane_schema, "envdb");
	ck_assert_ptr_null(m->control_plane); /* not a file */
	tu_assert_contains(m->control_plane_desc, "postgresql schema envdb");

	ck_assert_int_eq(load_text("version: 1\n"
				   "control_plane: {driver: postgresql, conninfo_env: ENVDB_PG,\n"
				   "                schema: tenant_registry}\n"),
			 ENVDB_OK);
	ck_assert_ptr_null(m->control_plane_conninfo_file);
	ck_assert_str_eq(m->control_plane_conninfo_env, "ENVDB_PG");
	ck_assert_str_eq(m->control_plane_schema, "tenant_registry");
}
END_TEST

START_TEST(control_plane_mistakes)
{
	/* a connection string may carry a password: never inline */
	expect_error("version: 1\ncontrol_plane: {driver: postgresql, conninfo: 'host=db password=x'}\n",
		     "2:37: control_plane.conninfo: inline secret refused: give conninfo_file");
	expect_no_echo("version: 1\ncontrol_plane: {driver: postgresql, conninfo: 'password=hunter2'}\n",
		       "hunter2");
	expect_error("version: 1\ncontrol_plane:\n  driver: postgresql\n  conninfo_env: PG\n"
		     "  password: hunter2\n",
		     "5:3: control_plane.password: inline secret refused");
	expect_no_echo("version: 1\ncontrol_plane:\n  driver: postgresql\n  password: hunter2\n",
		       "hunter2");
	expect_error("version: 1\ncontrol_plane: {path: x.db}\n",
		     "2:16: control_plane.driver: missing required key");
	expect_error("version: 1\ncontrol_plane: {driver: mysql}\n",
		     "2:25: control_plane.driver: 'mysql' is not a control-plane driver");
	expect_error("version: 1\ncontrol_plane: {driver: postgresql}\n",
		     "2:16: control_plane: driver postgresql: give exactly one of conninfo_file, "
		     "conninfo_env");
	expect_error("version: 1\ncontrol_plane: {driver: postgresql, conninfo_file: f, "
		     "conninfo_env: V}\n",
		     "2:52: control_plane: driver postgresql: give exactly one of");
	expect_error("version: 1\ncontrol_plane: {driver: postgresql, conninfo_env: V, path: x}\n",
		     "2:54: control_plane.path: only for driver sqlite");
	expect_error("version: 1\ncontrol_plane: {driver: sqlite, schema: s}\n",
		     "2:33: control_plane.schema: only for driver postgresql");
	expect_error("version: 1\ncontrol_plane: {driver: postgresql, conninfo_env: V, "
		     "schema: Bad-Name}\n",
		     "2:62: control_plane.schema: 'Bad-Name' is not a schema name");
	expect_error("version: 1\ncontrol_plane: {driver: postgresql, conninfo_env: 'A B'}\n",
		     "2:51: control_plane.conninfo_env: not an environment variable name");
	/* a conninfo written where the variable's name goes is not echoed */
	expect_no_echo("version: 1\ncontrol_plane: {driver: postgresql,\n"
		       "  conninfo_env: 'host=db password=hunter2'}\n",
		       "hunter2");
	expect_error("version: 1\ncontrol_plane: {driver: postgresql, conninfo_env: V, host: h}\n",
		     "2:54: control_plane.host: unknown key");
}
END_TEST

START_TEST(plugin_entries)
{
	expect_error("version: 1\nplugins: {name: x}\n", "2:10: plugins: expected a list");
	expect_error("version: 1\nplugins:\n  - sqlite\n",
		     "3:5: plugins[0]: expected a mapping, found a scalar");
	expect_error("version: 1\nplugins:\n  - {kind: adapter}\n",
		     "3:5: plugins[0].name: missing required key");
	expect_error("version: 1\nplugins:\n  - {name: x}\n",
		     "3:5: plugins[0].kind: missing required key");
	expect_error("version: 1\nplugins:\n  - {name: Bad.Name, kind: adapter}\n",
		     "3:12: plugins[0].name: 'Bad.Name' is not a plugin name");
	expect_error("version: 1\nplugins:\n  - {name: x, kind: driver}\n",
		     "3:21: plugins[0].kind: 'driver' is not a plugin kind (adapter, encryptor)");
	expect_error("version: 1\nplugins:\n  - {name: x, kind: adapter}\n"
		     "  - {name: x, kind: encryptor}\n",
		     "4:12: plugins[1].name: plugin 'x' is already listed as plugins[0]");
	expect_error("version: 1\nplugins:\n  - {name: x, kind: adapter, critical: yes}\n",
		     "3:40: plugins[0].critical: expected true or false");
	expect_error("version: 1\nplugins:\n  - {name: x, kind: adapter, config: {dir: [a]}}\n",
		     "3:44: plugins[0].config.dir: expected a scalar, found a list");
	expect_error("version: 1\nplugins:\n  - {name: x, kind: adapter, config: {Dir: a}}\n",
		     "3:39: plugins[0].config.Dir: configuration keys are [a-z0-9_]+");
	expect_error("version: 1\nplugins:\n  - {name: x, kind: adapter, config: {dir: }}\n",
		     "3:44: plugins[0].config.dir: a value is required");
	expect_error("version: 1\nplugins:\n"
		     "  - name: x\n    kind: adapter\n    config:\n      token_env: 1NOPE\n",
		     "6:18: plugins[0].config.token_env: not an environment variable name");
	/* A secret pasted where a variable name belongs is not echoed back. */
	expect_no_echo("version: 1\nplugins:\n"
		       "  - name: x\n    kind: adapter\n    config:\n"
		       "      token_env: s3cr3t-T0KEN-value\n",
		       "s3cr3t-T0KEN-value");
}
END_TEST

/* call_timeout_ms on a plugin entry: the host's per-call deadline for that
 * plugin (0 in the spec when absent: the process-wide default). */
START_TEST(plugin_call_timeout)
{
	ck_assert_int_eq(load_text("version: 1\nplugins:\n"
				   "  - {name: turso, kind: adapter, call_timeout_ms: 180000}\n"
				   "  - {name: sqlite, kind: adapter}\n"),
			 ENVDB_OK);
	ck_assert_int_eq(m->plugins[0].call_timeout_ms, 180000);
	ck_assert_int_eq(m->plugins[1].call_timeout_ms, 0);
	envdbi_manifest_free(m);
	m = NULL;
	expect_error("version: 1\nplugins:\n  - {name: x, kind: adapter, call_timeout_ms: 0}\n",
		     "3:47: plugins[0].call_timeout_ms: 0 is out of range (1 to 86400000)");
	expect_error("version: 1\nplugins:\n  - {name: x, kind: adapter, call_timeout_ms: 2m}\n",
		     "3:47: plugins[0].call_timeout_ms: '2m' is not an integer");
}
END_TEST

START_TEST(plugin_references)
{
	expect_error(
	    "version: 1\ndefaults: {driver: pg}\nplugins:\n  - {name: sqlite, kind: adapter}\n",
	    "2:20: defaults.driver: no plugin named 'pg' is listed under plugins");
	expect_error(
	    "version: 1\ndefaults: {driver: kms}\nplugins:\n  - {name: kms, kind: encryptor}\n",
	    "2:20: defaults.driver: plugin 'kms' is not an adapter");
	expect_error("version: 1\ndefaults: {encryptor: sqlite}\n"
		     "plugins:\n  - {name: sqlite, kind: adapter}\n",
		     "2:23: defaults.encryptor: plugin 'sqlite' is not an encryptor");
	expect_error("version: 1\nlegacy: {encryptor: gone}\n",
		     "2:21: legacy.encryptor: no plugin named 'gone'");
}
END_TEST

START_TEST(syntax_errors)
{
	int rc = load_text("version: 1\nplugins: [\n  {name: a\n");

	ck_assert_int_eq(rc, ENVDB_ERR_CONFIG);
	tu_assert_contains(envdb_error_last()->message, "yaml syntax error");
	tu_assert_contains(envdb_error_last()->message, mpath);
	expect_error("version: 1\n  bad indent: 2\n", "2:");
	expect_error("", "1:1: the manifest is empty");
	expect_error("# only a comment\n", "1:1: the manifest is empty");
	expect_error("- a\n- b\n", "1:1: a manifest is a mapping, found a list");
	expect_error("version: 1\n---\nversion: 1\n", "2:1: more than one YAML document");
	/* invalid UTF-8 */
	rc = load_text("version: 1\ncontrol_plane: \xff\xfe\n");
	ck_assert_int_eq(rc, ENVDB_ERR_CONFIG);
	tu_assert_contains(envdb_error_last()->message, "invalid input");
}
END_TEST

START_TEST(hostile_input)
{
	char *big, *p;
	size_t i;
	int rc;

	expect_error("version: 1\nplugins: *list\n", "2:10: aliases are not allowed");
	expect_error("version: 1\ndefaults: &d {region: x}\n", "2:11: anchors are not allowed");
	/* billion laughs needs anchors: refused at the first one */
	expect_error("a: &a [x, x]\nb: &b [*a, *a]\n", "1:4: anchors are not allowed");
	/* deep nesting */
	big = malloc(4096);
	ck_assert_ptr_nonnull(big);
	p = big + sprintf(big, "version: 1\nx: ");
	for (i = 0; i < 100; i++)
		*p++ = '[';
	for (i = 0; i < 100; i++)
		*p++ = ']';
	strcpy(p, "\n");
	rc = load_text(big);
	free(big);
	ck_assert_int_eq(rc, ENVDB_ERR_CONFIG);
	tu_assert_contains(envdb_error_last()->message, "nesting is too deep");
	/* more than 1 MiB */
	big = malloc(1200 * 1024);
	ck_assert_ptr_nonnull(big);
	memset(big, '#', 1200 * 1024 - 1);
	big[1200 * 1024 - 1] = '\0';
	rc = load_text(big);
	free(big);
	ck_assert_int_eq(rc, ENVDB_ERR_CONFIG);
	tu_assert_contains(envdb_error_last()->message, "too large");
}
END_TEST

START_TEST(missing_file)
{
	char path[PATH_MAX];

	tu_path(path, sizeof(path), "nope.yaml");
	ck_assert_int_eq(envdbi_manifest_load(&m, path), ENVDB_ERR_CONFIG);
	ck_assert_ptr_null(m);
	tu_assert_contains(envdb_error_last()->message, "nope.yaml: not found");
	ck_assert_int_eq(envdbi_manifest_load(&m, tu_dir), ENVDB_ERR_CONFIG);
	tu_assert_contains(envdb_error_last()->message, "not a regular file");
	ck_assert_int_eq(envdbi_manifest_load(&m, NULL), ENVDB_ERR_MISUSE);
}
END_TEST

/* A manifest chooses the plugins the process loads: one that someone
 * other than root or the current user could have written is refused,
 * with its path, mode and owner (core/trust.c). */
static void expect_refused(const char *what)
{
	int rc = envdbi_manifest_load(&m, mpath);

	ck_assert_msg(rc == ENVDB_ERR_CONFIG, "status %d (%s)", rc, envdb_error_last()->message);
	ck_assert_ptr_null(m);
	tu_assert_contains(envdb_error_last()->message, "manifest ");
	tu_assert_contains(envdb_error_last()->message, ": refused: ");
	tu_assert_contains(envdb_error_last()->message, what);
}

START_TEST(writable_manifest_refused)
{
	char want[2 * PATH_MAX];

	tu_write(mpath, sizeof(mpath), "envdb.yaml", 0620, "version: 1\n");
	snprintf(want, sizeof(want), "file %s is writable by group or others (mode 0620, owner ",
		 mpath);
	expect_refused(want);
	ck_assert_int_eq(chmod(mpath, 0646), 0);
	snprintf(want, sizeof(want), "file %s is writable by group or others (mode 0646", mpath);
	expect_refused(want);
	/* readable by others is fine: a manifest holds no secret */
	ck_assert_int_eq(chmod(mpath, 0644), 0);
	ck_assert_msg(envdbi_manifest_load(&m, mpath) == ENVDB_OK, "%s",
		      envdb_error_last()->message);
}
END_TEST

START_TEST(foreign_owned_manifest_refused)
{
	char want[2 * PATH_MAX];

	if (geteuid() != 0) {
		printf("foreign_owned_manifest_refused: skipped: chown needs root\n");
		return;
	}
	tu_write(mpath, sizeof(mpath), "envdb.yaml", 0644, "version: 1\n");
	ck_assert_int_eq(chown(mpath, 12345, 12345), 0);
	snprintf(want, sizeof(want),
		 "file %s is owned by uid 12345 (mode 0644), neither root nor the current user",
		 mpath);
	expect_refused(want);
}
END_TEST

START_TEST(manifest_in_writable_dir_refused)
{
	char dir[PATH_MAX], want[2 * PATH_MAX];

	tu_path(dir, sizeof(dir), "conf");
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	tu_write(mpath, sizeof(mpath), "conf/envdb.yaml", 0600, "version: 1\n");
	ck_assert_int_eq(chmod(dir, 0777), 0);
	snprintf(want, sizeof(want), "directory %s is writable by group or others (mode 0777", dir);
	expect_refused(want);
	/* the same directory with the sticky bit (as /tmp) is accepted */
	ck_assert_int_eq(chmod(dir, 01777), 0);
	ck_assert_msg(envdbi_manifest_load(&m, mpath) == ENVDB_OK, "%s",
		      envdb_error_last()->message);
	envdbi_manifest_free(m);
	m = NULL;
	if (geteuid() != 0) {
		printf("manifest_in_writable_dir_refused: foreign owner skipped: chown needs root\n");
		return;
	}
	ck_assert_int_eq(chmod(dir, 0755), 0);
	ck_assert_int_eq(chown(dir, 12345, 12345), 0);
	snprintf(want, sizeof(want), "directory %s is owned by uid 12345 (mode 0755)", dir);
	expect_refused(want);
}
END_TEST

static Suite *manifest_suite(void)
{
	Suite *s = suite_create("manifest");
	TCase *tc = tcase_create("manifest");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, full_manifest);
	tcase_add_test(tc, defaults_when_absent);
	tcase_add_test(tc, relative_plugin_dir);
	tcase_add_test(tc, plugin_path_list);
	tcase_add_test(tc, unknown_keys_everywhere);
	tcase_add_test(tc, wrong_values);
	tcase_add_test(tc, durations);
	tcase_add_test(tc, control_plane_forms);
	tcase_add_test(tc, control_plane_mistakes);
	tcase_add_test(tc, plugin_entries);
	tcase_add_test(tc, plugin_call_timeout);
	tcase_add_test(tc, plugin_references);
	tcase_add_test(tc, syntax_errors);
	tcase_add_test(tc, hostile_input);
	tcase_add_test(tc, missing_file);
	tcase_add_test(tc, writable_manifest_refused);
	tcase_add_test(tc, foreign_owned_manifest_refused);
	tcase_add_test(tc, manifest_in_writable_dir_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(manifest_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
