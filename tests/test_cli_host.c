/*
 * tests/test_cli_host.c — the envdb command's host commands, run as a
 * user runs them (the built core/envdb, real plugins from
 * ENVDB_PLUGIN_DIR, a scratch directory): --help lists the dispatch
 * table, --version, usage errors and their exit statuses, manifest
 * discovery, `manifest check`, and `init` → `plugins` → `key ...` end to
 * end, including that init is idempotent and never overwrites.  With
 * --json, stdout must hold exactly one JSON document.
 */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <envdb/plugin.h>

#include "host_testutil.h"

#define OUT_MAX (256 * 1024)

static char out[OUT_MAX], err[OUT_MAX];

static char no_sys_manifest[PATH_MAX];

static void setup(void)
{
	tu_setup();
	unsetenv("ENVDB_MANIFEST");
	/* never the installed default manifest, whatever `make install` left */
	tu_path(no_sys_manifest, sizeof(no_sys_manifest), "no-such-dir/envdb.yaml");
	setenv("ENVDB_SYSTEM_MANIFEST", no_sys_manifest, 1);
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

/* Run envdb with `args` (NULL-terminated) in directory `cwd` (NULL: the
 * scratch directory); stdout and stderr land in out/err.  Returns the exit
 * status. */
static int run_in(const char *cwd, const char *const *args)
{
	char envdb[PATH_MAX], o[PATH_MAX], e[PATH_MAX];
	const char *argv[32];
	pid_t pid;
	int status, i;

	snprintf(envdb, sizeof(envdb), "%s/core/envdb", tu_builddir());
	tu_path(o, sizeof(o), ".stdout");
	tu_path(e, sizeof(e), ".stderr");
	argv[0] = envdb;
	for (i = 0; args[i] != NULL && i < 30; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int fe = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0 ||
		    chdir(cwd ? cwd : tu_dir) != 0)
			_exit(126);
		execv(envdb, (char *const *)argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	slurp(out, o);
	slurp(err, e);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status); /* as a shell reports it */
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

#define RUN(...) run_in(NULL, (const char *const[]){__VA_ARGS__, NULL})

/* stdout as exactly one JSON document (json_loads refuses trailing data). */
static json_t *json_out(void)
{
	json_error_t je;
	json_t *doc = json_loads(out, 0, &je);

	ck_assert_msg(doc != NULL, "stdout is not one JSON document (%s): %s", je.text, out);
	return doc;
}

static void join(char *dst, size_t cap, const char *dir, const char *name)
{
	ck_assert_int_lt(snprintf(dst, cap, "%s/%s", dir, name), (int)cap);
}

static bool plugins_built(void)
{
	const char *dir = getenv("ENVDB_PLUGIN_DIR");
	char p[PATH_MAX];

	if (dir == NULL)
		return false;
	snprintf(p, sizeof(p), "%s/sqlite.so", dir);
	if (access(p, R_OK) != 0)
		return false;
	snprintf(p, sizeof(p), "%s/kms.so", dir);
	return access(p, R_OK) == 0;
}

/* ------------------------------------------------------------------------ */

START_TEST(help_lists_every_command)
{
	static const char *const expected[] = {"init [DIR] [--plugin-dir DIR]",
					       "plugins",
					       "manifest check [FILE]",
					       "key list [--encryptor NAME]",
					       "key generate [--encryptor NAME] [--current]",
					       "key rotate [--encryptor NAME]"};
	json_t *doc, *cmds;
	size_t i, lines = 0;
	const char *p, *end;

	ck_assert_int_eq(RUN("--help"), 0);
	ck_assert_str_eq(err, "");
	tu_assert_contains(out, "usage: envdb [--manifest FILE] [--json] COMMAND");
	for (i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		tu_assert_contains(out, expected[i]);
	/* every row of the table, in text and in JSON alike */
	p = strstr(out, "commands:\n") + strlen("commands:\n");
	end = strstr(p, "\n\n");
	for (; p < end; p = strchr(p, '\n') + 1)
		if (p[0] == ' ' && p[1] == ' ' && p[2] != ' ')
			lines++; /* a usage line; its help may follow, indented */
	ck_assert_int_eq(RUN("--json", "--help"), 0);
	doc = json_out();
	cmds = json_object_get(doc, "commands");
	ck_assert_uint_eq(json_array_size(cmds), lines);
	ck_assert_uint_ge(lines, 6);
	for (i = 0; i < json_array_size(cmds); i++) {
		ck_assert_ptr_nonnull(
		    json_string_value(json_object_get(json_array_get(cmds, i), "usage")));
		ck_assert_ptr_nonnull(
		    json_string_value(json_object_get(json_array_get(cmds, i), "help")));
	}
	json_decref(doc);
	/* help of one command group */
	ck_assert_int_eq(RUN("key", "--help"), 0);
	tu_assert_contains(out, "key rotate");
	ck_assert_ptr_null(strstr(out, "manifest check"));
}
END_TEST

START_TEST(version)
{
	json_t *doc;
	char want[64];

	snprintf(want, sizeof(want), "envdb %s (plugin ABI %d.%d)\n", PACKAGE_VERSION,
		 ENVDB_ABI_MAJOR, ENVDB_ABI_MINOR);
	ck_assert_int_eq(RUN("--version"), 0);
	ck_assert_str_eq(out, want);
	ck_assert_int_eq(RUN("--version", "--json"), 0);
	doc = json_out();
	ck_assert_str_eq(json_string_value(json_object_get(doc, "version")), PACKAGE_VERSION);
	ck_assert_int_eq(
	    json_integer_value(json_object_get(json_object_get(doc, "plugin_abi"), "major")),
	    ENVDB_ABI_MAJOR);
	json_decref(doc);
}
END_TEST

START_TEST(usage_errors)
{
	json_t *doc;

	ck_assert_int_eq(RUN("frobnicate"), 64);
	ck_assert_str_eq(out, "");
	tu_assert_contains(err, "envdb: unknown command 'frobnicate'");
	ck_assert_int_eq(run_in(NULL, (const char *const[]){NULL}), 64);
	tu_assert_contains(err, "envdb: no command given");
	ck_assert_int_eq(RUN("key"), 64);
	tu_assert_contains(err, "key: a subcommand is needed (one of: list, generate, rotate");
	ck_assert_int_eq(RUN("key", "burn"), 64);
	tu_assert_contains(err, "unknown subcommand 'burn'");
	ck_assert_int_eq(RUN("init", "a", "b"), 64);
	tu_assert_contains(err, "envdb: init: unexpected argument 'b'\nusage: envdb init [DIR]");
	ck_assert_int_eq(RUN("key", "list", "--colour"), 64);
	tu_assert_contains(err, "envdb: key list: unknown option --colour");
	ck_assert_int_eq(RUN("init", "--plugin-dir"), 64);
	tu_assert_contains(err, "option --plugin-dir needs a value");
	ck_assert_int_eq(RUN("--json", "frobnicate"), 64);
	doc = json_out();
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(doc, "error"), "exit")),
			 64);
	json_decref(doc);
}
END_TEST

/* Usage errors quote what came from argv: a terminal escape or a newline
 * with a fake log line must not reach the terminal as such. */
START_TEST(usage_errors_escape_argv)
{
	static const char *const hostile = "x\033[2J\nenvdb: error: fake line\r";

	ck_assert_int_eq(RUN(hostile), 64);
	tu_assert_contains(err, "unknown command 'x\\x1b[2J\\x0aenvdb: error: fake line\\x0d'");
	ck_assert_ptr_null(strchr(err, '\033'));
	ck_assert_ptr_null(strchr(err, '\r'));
	ck_assert_ptr_null(strstr(err, "\nenvdb: error: fake"));
	ck_assert_int_eq(RUN("key", hostile), 64);
	ck_assert_ptr_null(strchr(err, '\033'));
	tu_assert_contains(err, "unknown subcommand 'x\\x1b[2J");
	ck_assert_int_eq(RUN("key", "list", "--\033]0;title\007"), 64);
	tu_assert_contains(err, "unknown option --\\x1b]0;title\\x07");
	ck_assert_int_eq(RUN("init", "a", hostile), 64);
	tu_assert_contains(err, "unexpected argument 'x\\x1b[2J");
	ck_assert_int_eq(RUN("--\033[31m"), 64);
	ck_assert_ptr_null(strchr(err, '\033'));
	/* option values echoed by a command's own checks */
	ck_assert_int_eq(RUN("cred", "mint", "acme/prod", "--authorization", "read_only",
			     "--expires", hostile),
			 64);
	tu_assert_contains(err, "--expires x\\x1b[2J\\x0aenvdb: error: fake line\\x0d: not a");
	ck_assert_ptr_null(strchr(err, '\033'));
	ck_assert_int_eq(RUN("cred", "rotate", "acme/prod", "--overlap", hostile), 64);
	ck_assert_ptr_null(strchr(err, '\033'));
	ck_assert_int_eq(RUN("migrate", "v4-to-v5", "--map-org", hostile), 64);
	tu_assert_contains(err, "\"x\\x1b[2J\\x0aenvdb: error: fake line\\x0d\" is not OLD=NEW");
	ck_assert_ptr_null(strchr(err, '\033'));
	ck_assert_int_eq(RUN("migrate", "v4-to-v5", "--map-org-file", hostile), 74);
	tu_assert_contains(err, "--map-org-file x\\x1b[2J\\x0aenvdb: error: fake line\\x0d: ");
	ck_assert_ptr_null(strchr(err, '\033'));
	/* --json: the message in the document is escaped too */
	ck_assert_int_eq(RUN("--json", hostile), 64);
	ck_assert_ptr_null(strstr(out, "\\u001b"));
	tu_assert_contains(out, "\\\\x1b[2J");
}
END_TEST

START_TEST(no_manifest)
{
	json_t *doc;

	ck_assert_int_eq(RUN("plugins"), 78);
	tu_assert_contains(err, "envdb: no manifest: give --manifest FILE, set ENVDB_MANIFEST");
	tu_assert_contains(err, no_sys_manifest);
	ck_assert_int_eq(RUN("--json", "key", "list"), 78);
	doc = json_out();
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(doc, "error"), "status")),
	    "configuration error");
	json_decref(doc);
	/* --manifest naming a missing file */
	ck_assert_int_eq(RUN("--manifest", "missing.yaml", "plugins"), 78);
	tu_assert_contains(err, "envdb: manifest missing.yaml: not found");
}
END_TEST

START_TEST(manifest_check)
{
	char path[PATH_MAX], text[PATH_MAX + 256], want[PATH_MAX + 64];
	json_t *doc;

	tu_write(path, sizeof(path), "bad.yaml", 0600, "version: 1\nbogus: 1\n");
	ck_assert_int_eq(RUN("manifest", "check", path), 78);
	snprintf(want, sizeof(want), "envdb: %s:2:1: bogus: unknown key\n", path);
	ck_assert_str_eq(err, want);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(RUN("--json", "manifest", "check", path), 78);
	doc = json_out();
	ck_assert(json_is_false(json_object_get(doc, "valid")));
	tu_assert_contains(
	    json_string_value(json_object_get(json_object_get(doc, "error"), "message")),
	    "bogus: unknown key");
	json_decref(doc);

	/* plugins are opened and checked, but not initialised */
	snprintf(text, sizeof(text),
		 "version: 1\nplugin_dir: %s\nplugins:\n"
		 "  - {name: initfail, kind: adapter}\n"
		 "  - {name: good, kind: encryptor, config: {dir: x}}\n",
		 tu_fixture_dir());
	tu_write(path, sizeof(path), "fx.yaml", 0600, text);
	ck_assert_int_eq(RUN("manifest", "check", path), 0);
	snprintf(want, sizeof(want), "%s: ok (2 plugins: initfail good)\n", path);
	ck_assert_str_eq(out, want);
	/* found through $ENVDB_MANIFEST too */
	setenv("ENVDB_MANIFEST", path, 1);
	ck_assert_int_eq(RUN("--json", "manifest", "check"), 0);
	doc = json_out();
	ck_assert(json_is_true(json_object_get(doc, "valid")));
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "plugins")), 2);
	json_decref(doc);
	unsetenv("ENVDB_MANIFEST");

	snprintf(text, sizeof(text),
		 "version: 1\nplugin_dir: %s\nplugins:\n  - {name: v2only, kind: adapter}\n",
		 tu_fixture_dir());
	tu_write(path, sizeof(path), "fx.yaml", 0600, text);
	ck_assert_int_eq(RUN("manifest", "check", path), 78);
	snprintf(want, sizeof(want), "envdb: plugin v2only (%s/v2only.so): exports",
		 tu_fixture_dir());
	tu_assert_contains(err, want);
	/* a fixture plugin's capabilities, decoded */
	snprintf(text, sizeof(text),
		 "version: 1\nplugin_dir: %s\nplugins:\n  - {name: fxadapter, kind: adapter}\n",
		 tu_fixture_dir());
	tu_write(path, sizeof(path), "fx.yaml", 0600, text);
	ck_assert_int_eq(RUN("--manifest", path, "plugins"), 0);
	tu_assert_contains(out, "fxadapter");
	tu_assert_contains(out, "read_only,revoke,probe,list");
}
END_TEST

/* A plugin that crashes the process is named, with the operation. */
START_TEST(crashing_plugin_is_named)
{
	char text[PATH_MAX + 256], path[PATH_MAX];
	int rc;

	snprintf(text, sizeof(text),
		 "version: 1\nplugin_dir: %s\nplugins:\n  - {name: crashinit, kind: adapter}\n",
		 tu_fixture_dir());
	tu_write(path, sizeof(path), "crash.yaml", 0600, text);
#if defined(__SANITIZE_ADDRESS__)
	/* AddressSanitizer catches the crash first (and reports a leak when the
	 * process dies in it): let envdb's own handler see the signal. */
	{
		const char *o = getenv("ASAN_OPTIONS");
		char opts[1024];

		snprintf(opts, sizeof(opts), "%s%shandle_segv=0:handle_abort=0:detect_leaks=0",
			 o ? o : "", o && *o ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
	}
#endif
	rc = RUN("--manifest", path, "plugins");
	ck_assert_int_eq(rc, 128 + SIGSEGV);
	tu_assert_contains(err, "envdb: crashed in plugin crashinit during init (SIGSEGV)\n");
	/* secure memory freed with the plain allocator: the C library aborts */
	snprintf(text, sizeof(text),
		 "version: 1\nplugin_dir: %s\nplugins:\n  - {name: crashfree, kind: adapter}\n",
		 tu_fixture_dir());
	tu_write(path, sizeof(path), "crash.yaml", 0600, text);
	rc = RUN("--manifest", path, "plugins");
#if defined(__SANITIZE_ADDRESS__)
	/* AddressSanitizer owns free(): it reports the bad free itself (and
	 * exits 1) before the C library could abort. */
	ck_assert_msg(rc != 0, "exit %d: %s", rc, err);
	tu_assert_contains(err, "AddressSanitizer");
#else
	ck_assert_msg(rc == 128 + SIGABRT || rc == 128 + SIGSEGV, "exit %d: %s", rc, err);
	tu_assert_contains(err, "envdb: crashed in plugin crashfree during init (SIG");
#endif
}
END_TEST

/* ------------------------------------------------------------------------ */
/* init, plugins, key (real sqlite and kms plugins)                          */
/* ------------------------------------------------------------------------ */

static void assert_mode(const char *path, mode_t type, mode_t mode)
{
	struct stat st;

	ck_assert_msg(stat(path, &st) == 0, "%s missing", path);
	ck_assert_uint_eq(st.st_mode & S_IFMT, type);
	ck_assert_uint_eq(st.st_mode & 07777, mode);
}

static int count_current(json_t *keys, const char **current)
{
	size_t i;
	int n = 0;

	for (i = 0; i < json_array_size(keys); i++)
		if (json_is_true(json_object_get(json_array_get(keys, i), "current"))) {
			n++;
			*current =
			    json_string_value(json_object_get(json_array_get(keys, i), "id"));
		}
	return n;
}

START_TEST(init_end_to_end)
{
	char dir[PATH_MAX], p[PATH_MAX], manifest[OUT_MAX], key1[256], rotated[256];
	json_t *doc, *list;
	const char *cur = NULL;

	tu_path(dir, sizeof(dir), "site");
	ck_assert_int_eq(RUN("--json", "init", dir), 0);
	doc = json_out();
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "manifest"), "created")));
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "control_plane"), "created")));
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "keyring"), "created")));
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "environments"), "created")));
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "key"), "created")));
	snprintf(key1, sizeof(key1), "%s",
		 json_string_value(json_object_get(json_object_get(doc, "key"), "id")));
	ck_assert_uint_gt(strlen(key1), 0);
	json_decref(doc);

	join(p, sizeof(p), dir, "envdb.yaml");
	assert_mode(p, S_IFREG, 0600);
	slurp(manifest, p);
	tu_assert_contains(manifest, "base_dir: environments");
	tu_assert_contains(manifest, "keyring_dir: keyring");
	join(p, sizeof(p), dir, "control.db");
	assert_mode(p, S_IFREG, 0600);
	join(p, sizeof(p), dir, "keyring");
	assert_mode(p, S_IFDIR, 0700);
	join(p, sizeof(p), dir, "environments");
	assert_mode(p, S_IFDIR, 0700);
	assert_mode(dir, S_IFDIR, 0700);

	/* idempotent: nothing created, nothing overwritten, same key */
	ck_assert_int_eq(RUN("init", dir), 0);
	tu_assert_contains(out, "exists   manifest");
	tu_assert_contains(out, "exists   control plane");
	tu_assert_contains(out, key1);
	ck_assert_ptr_null(strstr(out, "created"));
	{
		static char again[OUT_MAX];
		join(p, sizeof(p), dir, "envdb.yaml");
		slurp(again, p);
		ck_assert_str_eq(again, manifest);
	}

	/* the plugins, found through ./envdb.yaml */
	ck_assert_int_eq(run_in(dir, (const char *const[]){"--json", "plugins", NULL}), 0);
	doc = json_out();
	list = json_object_get(doc, "plugins");
	ck_assert_uint_eq(json_array_size(list), 2);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "name")),
			 "sqlite");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "kind")),
			 "adapter");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "name")),
			 "kms");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "abi")), "1.1");
	ck_assert_str_eq(json_string_value(json_array_get(
			     json_object_get(json_array_get(list, 1), "capabilities"), 0)),
			 "key_manage");
	tu_assert_contains(json_string_value(json_object_get(json_array_get(list, 1), "path")),
			   "/kms.so");
	json_decref(doc);
	ck_assert_int_eq(run_in(dir, (const char *const[]){"plugins", NULL}), 0);
	tu_assert_contains(out, "NAME");
	tu_assert_contains(out, "CAPABILITIES");
	tu_assert_contains(out, "key_manage,rewrap");

	/* keys: generate (not current), rotate (current) */
	join(p, sizeof(p), dir, "envdb.yaml");
	setenv("ENVDB_MANIFEST", p, 1);
	ck_assert_int_eq(RUN("key", "generate"), 0);
	ck_assert_ptr_null(strstr(out, "(current)"));
	ck_assert_int_eq(RUN("--json", "key", "rotate"), 0);
	doc = json_out();
	ck_assert(json_is_true(json_object_get(doc, "current")));
	snprintf(rotated, sizeof(rotated), "%s", json_string_value(json_object_get(doc, "id")));
	json_decref(doc);
	ck_assert_str_ne(rotated, key1);
	ck_assert_int_eq(RUN("key", "list", "--json"), 0);
	doc = json_out();
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "keys")), 3);
	ck_assert_int_eq(count_current(json_object_get(doc, "keys"), &cur), 1);
	ck_assert_str_eq(cur, rotated);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "current")), rotated);
	json_decref(doc);
	ck_assert_int_eq(RUN("key", "list", "--encryptor", "sqlite"), 65);
	tu_assert_contains(err, "envdb: encryptor sqlite: not loaded");
	/* init again still does not add a key */
	ck_assert_int_eq(RUN("init", dir), 0);
	ck_assert_int_eq(RUN("--json", "key", "list"), 0);
	doc = json_out();
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "keys")), 3);
	json_decref(doc);
	unsetenv("ENVDB_MANIFEST");
}
END_TEST

/* Issue 16 §3: init makes the deployment id and says so; init again and
 * `check` show the same one; another deployment has another. */
START_TEST(init_deployment_id)
{
	char dir[PATH_MAX], dir2[PATH_MAX], p[PATH_MAX], id[64], line[128];
	json_t *doc;

	tu_path(dir, sizeof(dir), "site-a");
	tu_path(dir2, sizeof(dir2), "site-b");
	ck_assert_int_eq(RUN("--json", "init", dir), 0);
	doc = json_out();
	ck_assert(json_is_string(json_object_get(doc, "deployment_id")));
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "deployment_id")));
	json_decref(doc);
	ck_assert_uint_eq(strlen(id), 36);
	ck_assert_uint_eq(strspn(id, "0123456789abcdef-"), 36);

	ck_assert_int_eq(RUN("init", dir), 0);
	snprintf(line, sizeof(line), "exists   deployment    %s", id);
	tu_assert_contains(out, line);
	join(p, sizeof(p), dir, "envdb.yaml");
	ck_assert_int_eq(RUN("--manifest", p, "--json", "check"), 0);
	doc = json_out();
	ck_assert_str_eq(json_string_value(json_object_get(doc, "deployment_id")), id);
	json_decref(doc);
	ck_assert_int_eq(RUN("--manifest", p, "check"), 0);
	snprintf(line, sizeof(line), "deployment %s", id);
	tu_assert_contains(out, line);

	ck_assert_int_eq(RUN("--json", "init", dir2), 0);
	doc = json_out();
	ck_assert_str_ne(json_string_value(json_object_get(doc, "deployment_id")), id);
	json_decref(doc);
}
END_TEST

START_TEST(init_never_overwrites)
{
	char dir[PATH_MAX], p[PATH_MAX], text[PATH_MAX + 512], after[OUT_MAX];

	/* an existing manifest (its own plugin_dir, a comment) is kept */
	tu_path(dir, sizeof(dir), "mine");
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(text, sizeof(text),
		 "# mine\nversion: 1\nplugin_dir: %s\nplugins:\n"
		 "  - {name: sqlite, kind: adapter, config: {base_dir: environments}}\n"
		 "  - {name: kms, kind: encryptor, config: {keyring_dir: keyring}}\n",
		 getenv("ENVDB_PLUGIN_DIR"));
	join(p, sizeof(p), dir, "envdb.yaml");
	{
		FILE *f = fopen(p, "w");
		ck_assert_ptr_nonnull(f);
		fputs(text, f);
		fclose(f);
	}
	ck_assert_int_eq(RUN("init", dir, "--plugin-dir", "/elsewhere"), 0);
	tu_assert_contains(err, "exists and was left unchanged (--plugin-dir not applied)");
	slurp(after, p);
	ck_assert_str_eq(after, text);

	/* a file where a directory belongs */
	tu_path(dir, sizeof(dir), "clash");
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	join(p, sizeof(p), dir, "keyring");
	{
		FILE *f = fopen(p, "w");
		ck_assert_ptr_nonnull(f);
		fclose(f);
	}
	ck_assert_int_eq(RUN("init", dir), 65);
	tu_assert_contains(err, "keyring exists and is not a directory");
	join(p, sizeof(p), dir, "envdb.yaml");
	ck_assert_int_ne(access(p, F_OK), 0);

	/* --plugin-dir is written into a new manifest */
	tu_path(dir, sizeof(dir), "withdir");
	ck_assert_int_eq(RUN("init", dir, "--plugin-dir", getenv("ENVDB_PLUGIN_DIR")), 0);
	join(p, sizeof(p), dir, "envdb.yaml");
	slurp(after, p);
	snprintf(text, sizeof(text), "plugin_dir: \"%s\"", getenv("ENVDB_PLUGIN_DIR"));
	tu_assert_contains(after, text);
}
END_TEST

/* What the command loads or opens is refused when someone other than root
 * or the current user could have written it (core/trust.c, core/store.c,
 * plugins/kms/keyring.c): exit 78 and a message naming path, mode, owner. */
START_TEST(unsafe_permissions_refused)
{
	char dir[PATH_MAX], mf[PATH_MAX], p[PATH_MAX], want[2 * PATH_MAX];

	tu_path(dir, sizeof(dir), "site");
	ck_assert_int_eq(RUN("init", dir), 0);
	join(mf, sizeof(mf), dir, "envdb.yaml");
	ck_assert_int_eq(RUN("--manifest", mf, "check"), 0);

	/* a control plane others may write: refused, not used silently */
	join(p, sizeof(p), dir, "control.db");
	ck_assert_int_eq(chmod(p, 0666), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "check"), 78);
	snprintf(want, sizeof(want),
		 "control plane %s: refused: the file is writable by group or others (mode 0666",
		 p);
	tu_assert_contains(err, want);
	/* group write alone, or others' alone, is enough */
	ck_assert_int_eq(chmod(p, 0620), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "env", "list"), 78);
	tu_assert_contains(err, "the file is writable by group or others (mode 0620");
	ck_assert_int_eq(chmod(p, 0602), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "check"), 78);
	tu_assert_contains(err, "the file is writable by group or others (mode 0602");
	ck_assert_int_eq(chmod(p, 0600), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "check"), 0);

	/* a group-writable manifest */
	ck_assert_int_eq(chmod(mf, 0660), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "plugins"), 78);
	snprintf(want, sizeof(want),
		 "refused: file %s is writable by group or others (mode 0660", mf);
	tu_assert_contains(err, want);
	ck_assert_int_eq(chmod(mf, 0600), 0);

	/* a deployment directory others may write (they could swap the manifest) */
	ck_assert_int_eq(chmod(dir, 0777), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "plugins"), 78);
	snprintf(want, sizeof(want), "refused: directory %s is writable by group or others", dir);
	tu_assert_contains(err, want);
	ck_assert_int_eq(chmod(dir, 0700), 0);

	if (geteuid() != 0) {
		printf("unsafe_permissions_refused: foreign owners skipped: chown needs root\n");
		return;
	}
	/* a keyring owned by someone else (mode 0700 is not enough) */
	join(p, sizeof(p), dir, "keyring");
	ck_assert_int_eq(chown(p, 12345, 12345), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "key", "list"), 78);
	snprintf(want, sizeof(want),
		 "keyring %s is owned by uid 12345, neither root nor the current user", p);
	tu_assert_contains(err, want);
	ck_assert_int_eq(chown(p, 0, 0), 0);
	/* a manifest owned by someone else */
	ck_assert_int_eq(chown(mf, 12345, 12345), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "plugins"), 78);
	tu_assert_contains(err, "is owned by uid 12345 (mode 0600), neither root nor the current");
	ck_assert_int_eq(chown(mf, 0, 0), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "check"), 0);
}
END_TEST

/* envdb backup FILE / envdb restore FILE [--force], as an operator runs them */
START_TEST(backup_and_restore_commands)
{
	char dir[PATH_MAX], mf[PATH_MAX], b[PATH_MAX];
	json_t *doc;

	tu_path(dir, sizeof(dir), "site");
	ck_assert_int_eq(RUN("init", dir), 0);
	join(mf, sizeof(mf), dir, "envdb.yaml");
	join(b, sizeof(b), dir, "backup.db");
	ck_assert_int_eq(RUN("--manifest", mf, "backup"), 64);
	ck_assert_int_eq(RUN("--manifest", mf, "backup", b), 0);
	tu_assert_contains(out, "written to");
	assert_mode(b, S_IFREG, 0600);
	ck_assert_int_eq(RUN("--manifest", mf, "backup", b), 65);
	tu_assert_contains(err, "the file exists; a backup never overwrites one");
	ck_assert_int_eq(RUN("--manifest", mf, "restore", b), 65);
	tu_assert_contains(err, "replaced only with --force");
	ck_assert_int_eq(RUN("--manifest", mf, "--json", "restore", b, "--force"), 0);
	doc = json_out();
	ck_assert_str_eq(json_string_value(json_object_get(doc, "restored_from")), b);
	json_decref(doc);
	ck_assert_int_eq(RUN("--manifest", mf, "check"), 0);
	ck_assert_int_eq(RUN("--manifest", mf, "restore", mf, "--force"), 65);
	tu_assert_contains(err, "is not an SQLite database");
}
END_TEST

/* `envdb reconcile` without --apply exits 1 while it lists work that --apply
 * would do, and 0 once there is none (envdb(1), EXIT STATUS). */
START_TEST(reconcile_dry_run_exit_status)
{
	char dir[PATH_MAX], m[PATH_MAX];
	json_t *doc;

	tu_path(dir, sizeof(dir), "site");
	ck_assert_int_eq(RUN("init", dir), 0);
	join(m, sizeof(m), dir, "envdb.yaml");
	ck_assert_int_eq(RUN("--manifest", m, "org", "provision", "acme", "--by", "alice"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "reconcile"), 0);
	tu_assert_contains(out, "nothing to reconcile");
	ck_assert_int_eq(RUN("--manifest", m, "cred", "rotate", "acme/prod", "--overlap", "1s"),
			 0);
	sleep(2);
	/* The window ended: a dry run lists the revocation and says so. */
	ck_assert_int_eq(RUN("--manifest", m, "reconcile"), 1);
	tu_assert_contains(out, "would revoke");
	tu_assert_contains(err, "need attention");
	ck_assert_int_eq(RUN("--manifest", m, "--json", "reconcile"), 1);
	doc = json_out();
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "items")), 1);
	json_decref(doc);
	/* --apply acts on everything: 0; after it the dry run is clean. */
	ck_assert_int_eq(RUN("--manifest", m, "reconcile", "--apply"), 0);
	tu_assert_contains(out, "revoked");
	ck_assert_int_eq(RUN("--manifest", m, "reconcile"), 0);
	tu_assert_contains(out, "nothing to reconcile");
	/* sqlite cannot lock credentials out on archive: the command says so. */
	ck_assert_int_eq(RUN("--manifest", m, "--json", "env", "archive", "acme/prod", "--yes"), 0);
	doc = json_out();
	ck_assert(json_is_false(json_object_get(doc, "credentials_locked_out")));
	json_decref(doc);
	tu_assert_contains(err, "driver sqlite cannot lock credentials out at the backend");
	ck_assert_int_eq(RUN("--manifest", m, "env", "unarchive", "acme/prod"), 0);
	tu_assert_contains(out, "unarchived acme/prod");
	ck_assert_int_eq(RUN("--manifest", m, "check"), 0);
}
END_TEST

static Suite *cli_suite(void)
{
	Suite *s = suite_create("cli_host");
	TCase *tc = tcase_create("cli");
	TCase *e2e;

	tcase_add_checked_fixture(tc, setup, tu_teardown);
	tcase_add_test(tc, help_lists_every_command);
	tcase_add_test(tc, version);
	tcase_add_test(tc, usage_errors);
	tcase_add_test(tc, usage_errors_escape_argv);
	tcase_add_test(tc, no_manifest);
	tcase_add_test(tc, manifest_check);
	tcase_add_test(tc, crashing_plugin_is_named);
	suite_add_tcase(s, tc);
	if (plugins_built()) {
		e2e = tcase_create("init");
		tcase_add_checked_fixture(e2e, setup, tu_teardown);
		tcase_add_test(e2e, init_end_to_end);
		tcase_add_test(e2e, init_never_overwrites);
		tcase_add_test(e2e, unsafe_permissions_refused);
		tcase_add_test(e2e, backup_and_restore_commands);
		tcase_add_test(e2e, init_deployment_id);
		tcase_add_test(e2e, reconcile_dry_run_exit_status);
		suite_add_tcase(s, e2e);
	} else {
		fprintf(stderr,
			"test_cli_host: sqlite/kms plugins not built: init tests skipped\n");
	}
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cli_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
