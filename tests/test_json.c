/*
 * tests/test_json.c — every command's --json document against the one
 * vocabulary of envdb(1), JSON OUTPUT (core/cli_out.c).
 *
 * The built core/envdb runs on a real deployment (tests/testdeploy.h: the
 * sqlite adapter, the kms keyring and the faulty fixture adapter, which
 * mints read-only credentials and lists its databases).  Every command, its
 * success and its failures, prints one document; each is walked as a whole:
 *  - any key "environment" holds the environment object (exactly its keys,
 *    with their types) or null, "environments" an array of them; likewise
 *    "database", "credentials", "members"/"member", "keys"/"key",
 *    "violations", "error";
 *  - every key ending in "_at" (and delete_after) is an ISO 8601 UTC string
 *    "YYYY-MM-DDTHH:MM:SSZ" or null, never a number;
 *  - is_default, current, ok, valid, dry_run, applied are booleans; row_ids
 *    an array of strings;
 *  - no key of the vocabulary before (user, credential_handle, exit,
 *    default) is left.
 */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <regex.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testdeploy.h"

#define OUT_MAX (1024 * 1024)

static td T;
static char out[OUT_MAX], err[OUT_MAX];
static size_t n_docs, n_envs, n_errors;

static void setup(void)
{
	td_opts o = TD_OPTS_INIT;

	o.legacy_shim = true; /* migrate v4-to-v5 has legacy objects to look at */
	td_setup(&T, &o);
}

static void teardown(void)
{
	td_teardown(&T);
}

static void slurp(char *buf, const char *path)
{
	FILE *f = fopen(path, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, OUT_MAX - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Run `envdb --manifest M --json ARGS...` (NULL-terminated) with `now` as
 * the clock (0: the real one); stdout/stderr in out/err.  Returns the exit
 * status. */
static int envdb_at(long long now, const char *const *args)
{
	char prog[PATH_MAX], o[PATH_MAX + 16], e[PATH_MAX + 16], nows[32];
	const char *argv[40];
	size_t i, n = 0;
	int st = 0;
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/core/envdb", getenv("ENVDB_TEST_BUILDDIR"));
	snprintf(o, sizeof(o), "%s/json.out", T.dir);
	snprintf(e, sizeof(e), "%s/json.err", T.dir);
	snprintf(nows, sizeof(nows), "%lld", now);
	argv[n++] = prog;
	if (strcmp(args[0], "--manifest") != 0) {
		argv[n++] = "--manifest";
		argv[n++] = T.manifest;
	}
	argv[n++] = "--json";
	for (i = 0; args[i] != NULL && n < 39; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int fe = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0 || chdir(T.dir) != 0)
			_exit(126);
		if (now > 0)
			setenv("ENVDB_TEST_NOW", nows, 1);
		execv(prog, (char *const *)argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	slurp(out, o);
	slurp(err, e);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

#define ENVDB(...) envdb_at(0, (const char *const[]){__VA_ARGS__, NULL})

/* ---- the vocabulary ----------------------------------------------------- */

static void walk(json_t *v, const char *key, const char *where);

static void is_time(json_t *v, const char *key, const char *where)
{
	static regex_t re;
	static bool compiled;

	if (!compiled) {
		ck_assert_int_eq(regcomp(&re,
					 "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:"
					 "[0-6][0-9]Z$",
					 REG_EXTENDED | REG_NOSUB),
				 0);
		compiled = true;
	}
	ck_assert_msg(json_is_null(v) || (json_is_string(v) &&
					  regexec(&re, json_string_value(v), 0, NULL, 0) == 0),
		      "%s: \"%s\" is not an ISO 8601 UTC time or null", where, key);
}

typedef struct field {
	const char *name;
	int type; /* JSON_STRING, JSON_TRUE (boolean), JSON_INTEGER, JSON_OBJECT, JSON_ARRAY */
	bool nullable;
} field;

#define TIME_FIELD(n)                                                                              \
	{                                                                                          \
		n, JSON_STRING, true                                                               \
	}

/* `o` has exactly `fields` (no more, no fewer) with their types. */
static void exact(json_t *o, const field *fields, const char *kind, const char *where)
{
	size_t i, n = 0;
	const char *k;
	json_t *v;

	ck_assert_msg(json_is_object(o), "%s: %s is not an object", where, kind);
	for (i = 0; fields[i].name != NULL; i++) {
		v = json_object_get(o, fields[i].name);
		ck_assert_msg(v != NULL, "%s: %s has no \"%s\"", where, kind, fields[i].name);
		if (json_is_null(v)) {
			ck_assert_msg(fields[i].nullable, "%s: %s.%s is null", where, kind,
				      fields[i].name);
			continue;
		}
		if (fields[i].type == JSON_TRUE)
			ck_assert_msg(json_is_boolean(v), "%s: %s.%s is not a boolean", where, kind,
				      fields[i].name);
		else
			ck_assert_msg((int)json_typeof(v) == fields[i].type,
				      "%s: %s.%s has type %d, not %d", where, kind, fields[i].name,
				      (int)json_typeof(v), fields[i].type);
	}
	json_object_foreach(o, k, v)
	{
		for (i = 0; fields[i].name != NULL && strcmp(fields[i].name, k) != 0; i++)
			;
		ck_assert_msg(fields[i].name != NULL, "%s: %s has the unknown key \"%s\"", where,
			      kind, k);
		n++;
	}
	(void)n;
}

static const field env_fields[] = {
	{"id", JSON_STRING, false},
	{"ref", JSON_STRING, false},
	{"organization_id", JSON_STRING, false},
	{"slug", JSON_STRING, false},
	{"display_name", JSON_STRING, true},
	{"env_type", JSON_STRING, true},
	{"is_default", JSON_TRUE, false},
	{"status", JSON_STRING, true},
	{"region", JSON_STRING, true},
	{"plan", JSON_STRING, true},
	{"created_by", JSON_STRING, true},
	TIME_FIELD("created_at"),
	TIME_FIELD("updated_at"),
	{"metadata", JSON_OBJECT, false},
	TIME_FIELD("lease_expires_at"),
	{"pending_database_name", JSON_STRING, true},
	{"pending_driver", JSON_STRING, true},
	TIME_FIELD("delete_after"),
	{NULL, 0, false},
};

static const field db_fields[] = {
	{"id", JSON_STRING, false},
	{"environment_id", JSON_STRING, false},
	{"database_name", JSON_STRING, false},
	{"database_url", JSON_STRING, true},
	{"driver", JSON_STRING, true},
	{"region", JSON_STRING, true},
	{"storage_limit_mb", JSON_INTEGER, false},
	TIME_FIELD("provisioned_at"),
	TIME_FIELD("last_accessed_at"),
	{"metadata", JSON_OBJECT, false},
	{NULL, 0, false},
};

static const field cred_fields[] = {
	{"id", JSON_STRING, false},
	{"environment_database_id", JSON_STRING, false},
	{"authorization", JSON_STRING, true},
	{"status", JSON_STRING, true},
	{"handle", JSON_STRING, true},
	{"encryption_key_id", JSON_STRING, true},
	TIME_FIELD("created_at"),
	TIME_FIELD("expires_at"),
	TIME_FIELD("revoked_at"),
	{NULL, 0, false},
};

static const field member_fields[] = {
	{"id", JSON_STRING, false},        {"environment_id", JSON_STRING, false},
	{"user_id", JSON_STRING, false},   {"role", JSON_STRING, false},
	{"invited_by", JSON_STRING, true}, TIME_FIELD("created_at"),
	TIME_FIELD("updated_at"),          {NULL, 0, false},
};

static const field key_fields[] = {
	{"id", JSON_STRING, false},
	{"current", JSON_TRUE, false},
	TIME_FIELD("created_at"),
	{NULL, 0, false},
};

static const field violation_fields[] = {
	{"object", JSON_STRING, false},
	{"invariant", JSON_STRING, false},
	{"row_ids", JSON_ARRAY, false},
	{"message", JSON_STRING, false},
	{NULL, 0, false},
};

static const field error_fields[] = {
	{"code", JSON_STRING, false},        {"status", JSON_INTEGER, false},
	{"message", JSON_STRING, false},     {"envdb_status", JSON_INTEGER, false},
	{"native_code", JSON_STRING, false}, {NULL, 0, false},
};

/* error objects: native_code is optional */
static void check_error(json_t *e, const char *where)
{
	static const char *const codes[] = {
		"usage",         "misuse",      "not_found", "exists",    "auth",
		"permission",    "unavailable", "timeout",   "integrity", "buffer_too_small",
		"not_supported", "nomem",       "io",        "config",    "abi",
		"invalid",       "state",       "busy",      "generic",   NULL};
	const char *code;
	size_t i;
	json_t *copy = json_deep_copy(e);

	if (json_object_get(copy, "native_code") == NULL)
		json_object_set_new(copy, "native_code", json_string("-"));
	exact(copy, error_fields, "error", where);
	json_decref(copy);
	code = json_string_value(json_object_get(e, "code"));
	for (i = 0; codes[i] != NULL && strcmp(codes[i], code) != 0; i++)
		;
	ck_assert_msg(codes[i] != NULL, "%s: error code \"%s\" is not of the vocabulary", where,
		      code);
	ck_assert_int_ge(json_integer_value(json_object_get(e, "status")), 64);
	n_errors++;
}

static void each(json_t *a, const field *fields, const char *kind, const char *where)
{
	size_t i;
	json_t *v;

	ck_assert_msg(json_is_array(a), "%s: \"%s\" is not an array", where, kind);
	json_array_foreach(a, i, v)
	{
		if (fields == env_fields) {
			exact(v, fields, kind, where);
			n_envs++;
		} else {
			exact(v, fields, kind, where);
		}
	}
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void walk_member(const char *k, json_t *v, const char *where)
{
	static const char *const gone[] = {"user", "credential_handle", "exit", "default", "state",
					   NULL};
	size_t i;

	for (i = 0; gone[i] != NULL; i++)
		ck_assert_msg(strcmp(k, gone[i]) != 0,
			      "%s: key \"%s\" is not of the vocabulary (see envdb(1))", where, k);
	if (strcmp(k, "environment") == 0 || ends_with(k, "_environment")) {
		if (!json_is_null(v)) {
			exact(v, env_fields, "environment", where);
			n_envs++;
		}
	} else if (strcmp(k, "environments") == 0 && json_is_array(v) &&
		   json_is_string(json_object_get(json_array_get(v, 0), "ref"))) {
		each(v, env_fields, "environment", where);
	} else if (strcmp(k, "database") == 0) {
		if (!json_is_null(v))
			exact(v, db_fields, "database", where);
	} else if (strcmp(k, "credentials") == 0) {
		each(v, cred_fields, "credential", where);
	} else if (strcmp(k, "members") == 0) {
		each(v, member_fields, "member", where);
	} else if (strcmp(k, "member") == 0) {
		exact(v, member_fields, "member", where);
	} else if (strcmp(k, "keys") == 0) {
		each(v, key_fields, "key", where);
	} else if (strcmp(k, "key") == 0 && json_is_string(json_object_get(v, "id")) &&
		   json_object_get(v, "current") != NULL) {
		exact(v, key_fields, "key", where);
	} else if (strcmp(k, "violations") == 0) {
		each(v, violation_fields, "violation", where);
		json_t *x;
		size_t i2;
		json_array_foreach(v, i2, x)
		{
			json_t *id;
			size_t j;
			json_array_foreach(json_object_get(x, "row_ids"), j, id) ck_assert_msg(
				json_is_string(id), "%s: row_ids holds a non-string", where);
		}
	} else if (strcmp(k, "error") == 0 || strcmp(k, "stopped") == 0) {
		check_error(v, where);
		return;
	}
	if (ends_with(k, "_at") || strcmp(k, "delete_after") == 0)
		is_time(v, k, where);
	if (strcmp(k, "is_default") == 0 || strcmp(k, "current") == 0 || strcmp(k, "ok") == 0 ||
	    strcmp(k, "valid") == 0 || strcmp(k, "dry_run") == 0 || strcmp(k, "applied") == 0)
		ck_assert_msg(json_is_boolean(v), "%s: \"%s\" is not a boolean", where, k);
	if (ends_with(k, "_ids"))
		ck_assert_msg(json_is_array(v), "%s: \"%s\" is not an array", where, k);
	walk(v, k, where);
}

static void walk(json_t *v, const char *key, const char *where)
{
	const char *k;
	json_t *x;
	size_t i;

	(void)key;
	if (json_is_object(v)) {
		json_object_foreach(v, k, x) walk_member(k, x, where);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x) walk(x, key, where);
	}
}

/* stdout as one document, walked; returned (json_decref it). */
static json_t *doc_of(const char *where)
{
	json_error_t je;
	json_t *doc = json_loads(out, 0, &je);

	ck_assert_msg(doc != NULL, "%s: stdout is not one JSON document (%s): %s", where, je.text,
		      out);
	ck_assert_msg(json_is_object(doc), "%s: the document is not an object", where);
	walk(doc, NULL, where);
	n_docs++;
	return doc;
}

/* Run, expect exit status `want`, walk the document; a failure's document
 * is {"error":{...}} with code `code` (NULL: any) and status `want`. */
static json_t *run_doc(int want, const char *code, const char *const *args)
{
	char where[512];
	size_t i, used = 0;
	json_t *doc, *e;
	int rc;

	for (i = 0; args[i] != NULL && used < sizeof(where) - 1; i++)
		used += (size_t)snprintf(where + used, sizeof(where) - used, "%s%s", i ? " " : "",
					 args[i]);
	rc = envdb_at(0, args);
	ck_assert_msg(rc == want, "envdb --json %s: exit %d, not %d: %s%s", where, rc, want, out,
		      err);
	if (strcmp(args[0], "schema") == 0) {
		/* the object definitions: a vocabulary of its own (field
		 * descriptors, "default" values), checked by tests/test_schema */
		json_error_t je;

		doc = json_loads(out, 0, &je);
		ck_assert_msg(json_is_object(json_object_get(doc, "objects") ? doc : NULL),
			      "schema: %s", out);
		n_docs++;
		return doc;
	}
	doc = doc_of(where);
	if (want != 0 && want != 1 && code != NULL) {
		e = json_object_get(doc, "error");
		ck_assert_msg(e != NULL, "%s: exit %d without an error document: %s", where, rc,
			      out);
		ck_assert_str_eq(json_string_value(json_object_get(e, "code")), code);
		ck_assert_int_eq(json_integer_value(json_object_get(e, "status")), want);
	}
	return doc;
}

#define DOC(want, code, ...) run_doc(want, code, (const char *const[]){__VA_ARGS__, NULL})
#define OK(...) json_decref(DOC(0, NULL, __VA_ARGS__))
#define FAILS(want, code, ...) json_decref(DOC(want, code, __VA_ARGS__))

static void sql(const char *stmt)
{
	sqlite3 *db = NULL;
	char *e = NULL;

	ck_assert_int_eq(sqlite3_open(T.control, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_msg(sqlite3_exec(db, stmt, NULL, NULL, &e) == SQLITE_OK, "%s: %s", stmt,
		      e ? e : "");
	sqlite3_close(db);
}

static const char *str_at(json_t *doc, const char *a, const char *b)
{
	json_t *x = json_object_get(doc, a);

	return json_string_value(b ? json_object_get(x, b) : x);
}

/* ---- every command ------------------------------------------------------ */

START_TEST(every_command)
{
	json_t *doc;
	char cred_ro[64], backup[PATH_MAX + 16], orphan[PATH_MAX + 64], bad[PATH_MAX + 16];
	long long later;
	FILE *f;

	/* the host commands */
	OK("help");
	OK("--version");
	OK("plugins");
	OK("manifest", "check");
	snprintf(bad, sizeof(bad), "%s/bad.yaml", T.dir);
	f = fopen(bad, "w");
	ck_assert_ptr_nonnull(f);
	fputs("version: 1\nplugins: 7\n", f);
	fclose(f);
	doc = DOC(78, NULL, "manifest", "check", bad);
	ck_assert(json_is_false(json_object_get(doc, "valid")));
	ck_assert_str_eq(str_at(doc, "error", "code"), "config");
	json_decref(doc);
	OK("key", "list");
	doc = DOC(0, NULL, "key", "generate");
	ck_assert(json_is_false(json_object_get(json_object_get(doc, "key"), "current")));
	json_decref(doc);
	doc = DOC(0, NULL, "key", "rotate");
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "key"), "current")));
	ck_assert(json_is_string(json_object_get(json_object_get(doc, "key"), "created_at")));
	json_decref(doc);
	OK("schema");

	/* provisioning */
	doc = DOC(0, NULL, "org", "provision", "acme", "--by", "alice");
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "environment"), "is_default")));
	ck_assert_str_eq(str_at(doc, "environment", "ref"), "acme/prod");
	ck_assert(json_is_object(json_object_get(doc, "database")));
	json_decref(doc);
	doc = DOC(0, NULL, "env", "provision", "acme", "dev", "--type", "development", "--by",
		  "alice", "--metadata", "{\"team\":\"core\"}");
	ck_assert(
		json_is_false(json_object_get(json_object_get(doc, "environment"), "is_default")));
	ck_assert_str_eq(
		json_string_value(json_object_get(
			json_object_get(json_object_get(doc, "environment"), "metadata"), "team")),
		"core");
	json_decref(doc);
	OK("env", "provision", "acme", "qa", "--type", "test", "--by", "alice");
	FAILS(65, "exists", "env", "provision", "acme", "dev", "--type", "test", "--by", "alice");
	FAILS(64, "usage", "env", "provision", "acme", "x");
	FAILS(65, "invalid", "env", "provision", "acme", "Bad_Slug", "--type", "test", "--by", "a");
	doc = DOC(0, NULL, "env", "list");
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "environments")), 3);
	json_decref(doc);
	doc = DOC(0, NULL, "org", "list");
	ck_assert_str_eq(
		json_string_value(json_object_get(
			json_object_get(json_array_get(json_object_get(doc, "organizations"), 0),
					"default_environment"),
			"ref")),
		"acme/prod");
	json_decref(doc);
	doc = DOC(0, NULL, "org", "show", "acme");
	ck_assert_uint_eq(json_array_size(json_object_get(json_object_get(doc, "organization"),
							  "environments")),
			  3);
	json_decref(doc);
	FAILS(65, "not_found", "org", "show", "nobody");
	OK("env", "list", "acme");
	OK("env", "list", "nobody");
	doc = DOC(0, NULL, "env", "show", "acme/dev");
	ck_assert_uint_ge(json_array_size(json_object_get(doc, "credentials")), 1);
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "members")), 1);
	json_decref(doc);
	FAILS(65, "not_found", "env", "show", "acme/nope");
	FAILS(64, "usage", "env", "show", "acme");

	/* members */
	doc = DOC(0, NULL, "member", "add", "acme/dev", "bob", "reader", "--by", "alice");
	ck_assert_str_eq(str_at(doc, "member", "user_id"), "bob");
	ck_assert_str_eq(str_at(doc, "environment", "ref"), "acme/dev");
	json_decref(doc);
	OK("member", "add", "acme/dev", "carol", "maker", "--by", "alice");
	FAILS(65, "exists", "member", "add", "acme/dev", "bob", "admin", "--by", "alice");
	OK("member", "add", "acme/dev", "bob", "guest", "--by", "alice", "--update");
	OK("member", "add", "acme/dev", "bob", "reader", "--by", "alice", "--update");
	doc = DOC(0, NULL, "member", "list", "acme/dev");
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "members")), 3);
	json_decref(doc);
	doc = DOC(0, NULL, "member", "remove", "acme/dev", "carol");
	ck_assert_str_eq(str_at(doc, "removed", "user_id"), "carol");
	json_decref(doc);
	FAILS(65, "not_found", "member", "remove", "acme/dev", "carol");

	/* credentials and resolve */
	doc = DOC(0, NULL, "resolve", "acme/dev", "--user", "alice");
	ck_assert_str_eq(str_at(doc, "user_id", NULL), "alice");
	ck_assert_str_eq(str_at(doc, "environment", "ref"), "acme/dev");
	ck_assert_ptr_null(json_object_get(doc, "secret"));
	ck_assert(json_is_null(json_object_get(doc, "previous")));
	ck_assert(json_is_string(json_object_get(doc, "handle")));
	json_decref(doc);
	doc = DOC(0, NULL, "resolve", "acme/dev", "--user", "bob", "--reveal");
	ck_assert_str_eq(str_at(doc, "authorization", NULL), "read_only");
	ck_assert(json_is_string(json_object_get(doc, "secret")));
	snprintf(cred_ro, sizeof(cred_ro), "%s", str_at(doc, "credential_id", NULL));
	json_decref(doc);
	FAILS(77, "permission", "resolve", "acme/dev", "--user", "mallory");
	FAILS(65, "not_found", "resolve", "acme/nope", "--user", "alice");
	doc = DOC(0, NULL, "cred", "rotate", "acme/prod", "--overlap", "1h");
	ck_assert_uint_ge(json_array_size(json_object_get(doc, "credentials")), 2);
	json_decref(doc);
	doc = DOC(0, NULL, "resolve", "acme/prod", "--user", "alice", "--reveal");
	ck_assert(json_is_string(json_object_get(json_object_get(doc, "previous"), "handle")));
	ck_assert(json_is_string(json_object_get(json_object_get(doc, "previous"), "secret")));
	is_time(json_object_get(json_object_get(doc, "previous"), "expires_at"), "expires_at",
		"resolve previous");
	ck_assert(!json_is_null(json_object_get(json_object_get(doc, "previous"), "expires_at")));
	json_decref(doc);
	OK("cred", "complete", "acme/prod");
	OK("cred", "list", "acme/prod");
	OK("cred", "revoke", "acme/dev", cred_ro);
	FAILS(65, "not_found", "cred", "revoke", "acme/dev",
	      "01234567-89ab-7def-8123-456789abcdef");
	OK("cred", "mint", "acme/dev", "--authorization", "read_only", "--expires", "1d");
	FAILS(64, "usage", "cred", "rotate", "acme/dev", "--overlap", "soon");
	OK("cred", "rotate", "acme/qa", "--overlap", "60");
	OK("key", "rewrap", "--dry-run");
	OK("key", "rewrap");

	/* archive, delete, reconcile (clock moved past the overlap and the
	 * grace period), an orphan database, check */
	doc = DOC(0, NULL, "env", "archive", "acme/qa");
	ck_assert_str_eq(str_at(doc, "environment", "status"), "archived");
	json_decref(doc);
	OK("env", "unarchive", "acme/qa");
	doc = DOC(0, NULL, "env", "delete", "acme/qa");
	ck_assert(json_is_string(
		json_object_get(json_object_get(doc, "environment"), "delete_after")));
	json_decref(doc);
	snprintf(orphan, sizeof(orphan), "%s/fdb_0123456789abcdef0123456789abcdef.db",
		 T.faulty_dir);
	f = fopen(orphan, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	later = (long long)time(NULL) + 30 * 86400;
	ck_assert_int_eq(envdb_at(later, (const char *const[]){"reconcile", NULL}), 1);
	doc = doc_of("reconcile (dry run)");
	ck_assert_uint_ge(json_array_size(json_object_get(doc, "items")), 3);
	{
		json_t *it;
		size_t i;
		bool env_item = false, orphan_item = false;

		json_array_foreach(json_object_get(doc, "items"), i, it)
		{
			if (json_is_object(json_object_get(it, "environment")))
				env_item = true;
			if (strcmp(json_string_value(json_object_get(it, "kind")), "orphan") == 0) {
				orphan_item = true;
				ck_assert(json_is_null(json_object_get(it, "environment")));
			}
		}
		ck_assert(env_item && orphan_item);
	}
	json_decref(doc);
	ck_assert_int_eq(
		envdb_at(later, (const char *const[]){"reconcile", "--apply", "--force", NULL}), 0);
	json_decref(doc_of("reconcile --apply"));
	OK("check");
	OK("check", "--no-decrypt");
	FAILS(64, "usage", "env", "delete", "acme/dev", "--now"); /* not confirmed */
	doc = DOC(0, NULL, "env", "delete", "acme/dev", "--now", "--yes");
	ck_assert(json_is_null(json_object_get(doc, "environment")));
	ck_assert_str_eq(str_at(doc, "ref", NULL), "acme/dev");
	json_decref(doc);

	/* a violation: a ciphertext no longer bound to its database */
	sql("UPDATE sys_environment_database SET database_url = 'file:/elsewhere.db' "
	    "WHERE id IN (SELECT d.id FROM sys_environment_database d JOIN sys_environment e "
	    "ON e.id = d.environment_id WHERE e.slug = 'prod')");
	doc = DOC(65, NULL, "check");
	ck_assert(json_is_false(json_object_get(doc, "ok")));
	ck_assert_uint_ge(json_array_size(json_object_get(doc, "violations")), 1);
	ck_assert_uint_ge(
		json_array_size(json_object_get(
			json_array_get(json_object_get(doc, "violations"), 0), "row_ids")),
		1);
	json_decref(doc);
	FAILS(65, "integrity", "resolve", "acme/prod", "--user", "alice");

	/* backup, restore, migrate */
	snprintf(backup, sizeof(backup), "%s/copy.db", T.dir);
	OK("backup", backup);
	FAILS(65, "exists", "backup", backup);
	OK("restore", backup, "--force");
	OK("migrate", "v4-to-v5", "--dry-run", "--by", "alice");
	OK("migrate", "wipe-legacy-tokens", "--dry-run");

	/* usage errors of the command line itself */
	FAILS(64, "usage", "frobnicate");
	FAILS(64, "usage", "env", "burn");
	FAILS(64, "usage", "env", "list", "--colour");
	FAILS(64, "usage", "--output", "xml", "env", "list");

	ck_assert_uint_ge(n_docs, 60);
	ck_assert_uint_ge(n_envs, 20);
	ck_assert_uint_ge(n_errors, 15);
}
END_TEST

/* A failure before any manifest is found is an error document too. */
START_TEST(error_without_manifest)
{
	char prog[PATH_MAX];
	json_t *doc;

	snprintf(prog, sizeof(prog), "%s/core/envdb", getenv("ENVDB_TEST_BUILDDIR"));
	ck_assert_int_eq(ENVDB("--manifest", "/nonexistent/envdb.yaml", "env", "list"), 78);
	doc = doc_of("no manifest");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "error"), "code")),
			 "config");
	json_decref(doc);
}
END_TEST

/* --output tsv: a header line, then rows of as many tab-separated fields,
 * control bytes escaped; --quiet: the ids only; -j is --json. */
START_TEST(tsv_quiet_and_short_json)
{
	char prog[PATH_MAX], cmd[4 * PATH_MAX + 64], line[16384];
	FILE *p;
	size_t n = 0;

	ck_assert_int_eq(ENVDB("org", "provision", "acme", "--by", "alice"), 0);
	ck_assert_int_eq(ENVDB("env", "provision", "acme", "dev", "--type", "development", "--by",
			       "alice", "--display-name", "back\\slash and space \xc2\x9b" "31m"),
			 0);
	snprintf(prog, sizeof(prog), "%s/core/envdb", getenv("ENVDB_TEST_BUILDDIR"));
	snprintf(cmd, sizeof(cmd), "'%s' --manifest '%s' --output tsv env list", prog, T.manifest);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p) != NULL) {
		size_t tabs = 0;
		char *c;

		for (c = line; *c; c++)
			tabs += *c == '\t';
		ck_assert_uint_eq(tabs, 7);
		if (n++ == 0)
			ck_assert_str_eq(line, "ENVIRONMENT\tTYPE\tSTATUS\tPLAN\tREGION\tDEFAULT\t"
					       "CREATED\tID\n");
	}
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_eq(n, 3);
	/* a backslash is escaped, and so is a C1 control (U+009B, CSI to a
	 * terminal), which the library lets through (C0 control bytes are
	 * refused before they get here; put_cell escapes them too) */
	snprintf(cmd, sizeof(cmd), "'%s' --manifest '%s' --output=tsv env show acme/dev", prog,
		 T.manifest);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = 0;
	while (fgets(line, sizeof(line), p) != NULL)
		if (strcmp(line, "name\tback\\\\slash and space \\xc2\\x9b31m\n") == 0)
			n++;
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_eq(n, 1);
	/* --quiet */
	snprintf(cmd, sizeof(cmd), "'%s' --manifest '%s' -q env list", prog, T.manifest);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = 0;
	while (fgets(line, sizeof(line), p) != NULL) {
		ck_assert(strcmp(line, "acme/dev\n") == 0 || strcmp(line, "acme/prod\n") == 0);
		n++;
	}
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_eq(n, 2);
	snprintf(cmd, sizeof(cmd),
		 "'%s' --manifest '%s' --quiet member add acme/dev bob reader "
		 "--by alice",
		 prog, T.manifest);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = 0;
	while (fgets(line, sizeof(line), p) != NULL) {
		ck_assert_str_eq(line, "bob\n");
		n++;
	}
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_eq(n, 1);
	/* an action prints nothing with --quiet; a mint its id */
	snprintf(cmd, sizeof(cmd), "'%s' --manifest '%s' -q cred rotate acme/dev 2>/dev/null", prog,
		 T.manifest);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_null(fgets(line, sizeof(line), p));
	ck_assert_int_eq(pclose(p), 0);
	snprintf(cmd, sizeof(cmd), "'%s' --manifest '%s' -q cred complete acme/dev 2>/dev/null",
		 prog, T.manifest);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "'%s' --manifest '%s' -q cred list acme/dev", prog, T.manifest);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = 0;
	while (fgets(line, sizeof(line), p) != NULL) {
		ck_assert_uint_eq(strlen(line), 37); /* a UUID and its newline */
		n++;
	}
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_ge(n, 2);
	/* -j */
	snprintf(cmd, sizeof(cmd), "'%s' --manifest '%s' -j env list > '%s/j.out'", prog,
		 T.manifest, T.dir);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/j.out", T.dir);
	slurp(out, cmd);
	json_decref(doc_of("-j env list"));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tcase_create("json");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, every_command);
	tcase_add_test(tc, error_without_manifest);
	tcase_add_test(tc, tsv_quiet_and_short_json);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
