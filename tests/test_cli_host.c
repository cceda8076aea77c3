/*
 * tests/test_cli_host.c — the envdb command's host commands, run as a
 * user runs them (the built core/envdb, real plugins from
 * ENVDB_PLUGIN_DIR, a scratch directory): --help lists the dispatch
 * table, --version, usage errors and their exit statuses, manifest
 * discovery, `manifest check`, and `init` → `plugins` → `key ...` end to
 * end, including that init is idempotent and never overwrites.  With
 * --json, stdout must hold exactly one JSON document.  Also the command as
 * a user meets it (issue 19): destructive commands ask on a terminal (a
 * pseudo-terminal here) and need --yes otherwise, a refusal changes
 * nothing; durations; did you mean; per-command help; org list/show; the
 * README's reader resolving on the default sqlite deployment.  The
 * command's stdin is /dev/null unless a test gives it a terminal.
 */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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
		int fi = open("/dev/null", O_RDONLY);
		if (fo < 0 || fe < 0 || fi < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0 ||
		    dup2(fi, 0) < 0 || chdir(cwd ? cwd : tu_dir) != 0)
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

/* Run envdb with `args` on a new pseudo-terminal (its stdin, stdout,
 * stderr and /dev/tty); once it has written "[y/N] ", type `answer`.
 * Everything it wrote lands in out.  Returns the exit status. */
static int run_tty(const char *answer, const char *const *args)
{
	char envdb[PATH_MAX];
	const char *argv[32];
	size_t used = 0;
	bool typed = false;
	pid_t pid;
	int fd, status, i;

	snprintf(envdb, sizeof(envdb), "%s/core/envdb", tu_builddir());
	argv[0] = envdb;
	for (i = 0; args[i] != NULL && i < 30; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	fflush(NULL);
	pid = forkpty(&fd, NULL, NULL, NULL);
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (chdir(tu_dir) != 0)
			_exit(126);
		execv(envdb, (char *const *)argv);
		_exit(127);
	}
	out[0] = '\0';
	for (;;) {
		struct pollfd pf = {fd, POLLIN, 0};
		ssize_t n;

		if (poll(&pf, 1, 20000) <= 0)
			break; /* a prompt nobody expected: the wait below tells */
		n = read(fd, out + used, sizeof(out) - 1 - used);
		if (n <= 0)
			break; /* EIO: the command ended */
		used += (size_t)n;
		out[used] = '\0';
		if (!typed && strstr(out, "[y/N] ") != NULL) {
			ck_assert_int_eq(write(fd, answer, strlen(answer)),
					 (ssize_t)strlen(answer));
			typed = true;
		}
	}
	close(fd);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

#define RUN_TTY(answer, ...) run_tty(answer, (const char *const[]){__VA_ARGS__, NULL})

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
	tu_assert_contains(out, "usage: envdb [--manifest FILE] [--output json|tsv|table] [--json] "
				"[--quiet] COMMAND");
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
	ck_assert_int_eq(
		json_integer_value(json_object_get(json_object_get(doc, "error"), "status")), 64);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "error"), "code")),
			 "usage");
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
	tu_assert_contains(err, "--expires: 'x\\x1b[2J\\x0aenvdb: error: fake line\\x0d': not a");
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
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "error"), "code")),
			 "config");
	ck_assert_int_eq(
		json_integer_value(json_object_get(json_object_get(doc, "error"), "status")), 78);
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
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "key"), "current")));
	snprintf(rotated, sizeof(rotated), "%s",
		 json_string_value(json_object_get(json_object_get(doc, "key"), "id")));
	json_decref(doc);
	ck_assert_str_ne(rotated, key1);
	ck_assert_int_eq(RUN("key", "list", "--json"), 0);
	doc = json_out();
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "keys")), 3);
	ck_assert_int_eq(count_current(json_object_get(doc, "keys"), &cur), 1);
	ck_assert_str_eq(cur, rotated);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "current_key_id")), rotated);
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
	/* The window ended: a dry run lists the revocations (full_access and
	 * read_only) and says so. */
	ck_assert_int_eq(RUN("--manifest", m, "reconcile"), 1);
	tu_assert_contains(out, "would revoke");
	tu_assert_contains(err, "need attention");
	ck_assert_int_eq(RUN("--manifest", m, "--json", "reconcile"), 1);
	doc = json_out();
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "items")), 2);
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

/* Unknown commands, subcommands and options get the nearest known name
 * (Levenshtein distance at most 2); far-off words get none. */
START_TEST(did_you_mean)
{
	ck_assert_int_eq(RUN("resolv"), 64);
	tu_assert_contains(err, "unknown command 'resolv' (did you mean 'resolve'?)");
	ck_assert_int_eq(RUN("memebr", "list"), 64);
	tu_assert_contains(err, "(did you mean 'member'?)");
	ck_assert_int_eq(RUN("zzzzzzzz"), 64);
	ck_assert_ptr_null(strstr(err, "did you mean"));
	ck_assert_int_eq(RUN("env", "lst"), 64);
	tu_assert_contains(err, "env: unknown subcommand 'lst' (did you mean 'env list'?)");
	ck_assert_int_eq(RUN("env", "provison", "acme", "dev"), 64);
	tu_assert_contains(err, "(did you mean 'env provision'?)");
	ck_assert_int_eq(RUN("env", "delete", "acme/dev", "--noww"), 64);
	tu_assert_contains(err, "env delete: unknown option --noww (did you mean --now?)");
	ck_assert_int_eq(RUN("cred", "rotate", "acme/dev", "--overlpa", "1h"), 64);
	tu_assert_contains(err, "(did you mean --overlap?)");
	ck_assert_int_eq(RUN("check", "--jsno"), 64);
	tu_assert_contains(err, "(did you mean --json?)");
	ck_assert_int_eq(RUN("env", "list", "--outptu", "tsv"), 64);
	tu_assert_contains(err, "(did you mean --output?)");
	ck_assert_int_eq(RUN("env", "list", "--quite"), 64);
	tu_assert_contains(err, "(did you mean --quiet?)");
	ck_assert_int_eq(RUN("check", "--frobnicate"), 64);
	ck_assert_ptr_null(strstr(err, "did you mean"));
	ck_assert_str_eq(out, "");
}
END_TEST

/* `envdb COMMAND SUB --help` and `envdb help COMMAND SUB` explain that
 * command's options; a group's help lists its commands. */
START_TEST(help_per_command)
{
	json_t *doc, *opts;
	size_t i;
	bool seen_type = false;

	ck_assert_int_eq(RUN("env", "provision", "--help"), 0);
	ck_assert_str_eq(err, "");
	tu_assert_contains(out, "usage: envdb env provision ORG SLUG --type T");
	tu_assert_contains(out, "\noptions:\n");
	tu_assert_contains(out, "  --type T ");
	tu_assert_contains(out, "production, sandbox, development, test, staging, preview or "
				"trial (required)");
	tu_assert_contains(out, "  --default ");
	tu_assert_contains(out, "make it the organization's default environment");
	ck_assert_ptr_null(strstr(out, "cred rotate")); /* that command only */
	ck_assert_int_eq(RUN("help", "cred", "rotate"), 0);
	tu_assert_contains(out, "usage: envdb cred rotate ORG/SLUG");
	tu_assert_contains(out, "  --overlap DURATION ");
	tu_assert_contains(out, "90s, 15m, 1h30m, 7d");
	ck_assert_int_eq(RUN("env", "delete", "--help"), 0);
	tu_assert_contains(out, "  --yes ");
	tu_assert_contains(out, "  --now ");
	ck_assert_int_eq(RUN("help", "resolve"), 0);
	tu_assert_contains(out, "  --reveal ");
	/* a group: its commands */
	ck_assert_int_eq(RUN("help", "env"), 0);
	tu_assert_contains(out, "env provision ORG SLUG");
	tu_assert_contains(out, "env delete ORG/SLUG");
	ck_assert_int_eq(RUN("help", "nosuch"), 64);
	ck_assert_int_eq(RUN("help", "env", "provison"), 64);
	tu_assert_contains(err,
			   "env: unknown subcommand 'provison' (did you mean 'env provision'?)");
	ck_assert_int_eq(RUN("--json", "help", "env", "provision"), 0);
	doc = json_out();
	ck_assert_str_eq(json_string_value(json_object_get(doc, "subcommand")), "provision");
	opts = json_object_get(doc, "options");
	ck_assert(json_array_size(opts) > 5);
	for (i = 0; i < json_array_size(opts); i++) {
		json_t *o = json_array_get(opts, i);

		ck_assert_uint_gt(strlen(json_string_value(json_object_get(o, "help"))), 0);
		if (strcmp(json_string_value(json_object_get(o, "option")), "--type T") == 0)
			seen_type = true;
	}
	ck_assert(seen_type);
	json_decref(doc);
}
END_TEST

/* Every option a usage line names is explained by that command's help. */
START_TEST(help_explains_every_option)
{
	json_t *all, *cmds;
	size_t i, checked = 0;

	ck_assert_int_eq(RUN("--json", "help"), 0);
	all = json_out();
	cmds = json_object_get(all, "commands");
	ck_assert_uint_gt(json_array_size(cmds), 30);
	for (i = 0; i < json_array_size(cmds); i++) {
		json_t *c = json_array_get(cmds, i), *doc, *opts;
		const char *name = json_string_value(json_object_get(c, "command"));
		const char *sub = json_string_value(json_object_get(c, "subcommand"));
		const char *usage = json_string_value(json_object_get(c, "usage")), *p;
		char explained[4096] = " ";

		if (sub != NULL)
			ck_assert_int_eq(RUN("--json", "help", name, sub), 0);
		else
			ck_assert_int_eq(RUN("--json", "help", name), 0);
		doc = json_out();
		opts = json_object_get(doc, "options");
		for (size_t k = 0; k < json_array_size(opts); k++) {
			const char *o = json_string_value(
				json_object_get(json_array_get(opts, k), "option"));
			size_t len = strcspn(o, " ");

			ck_assert_uint_gt(strlen(json_string_value(json_object_get(
						  json_array_get(opts, k), "help"))),
					  5);
			strncat(explained, o, len);
			strcat(explained, " ");
		}
		for (p = strstr(usage, "--"); p != NULL; p = strstr(p + 2, "--")) {
			char want[64];
			size_t len = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz-");

			snprintf(want, sizeof(want), " --%.*s ", (int)len, p + 2);
			ck_assert_msg(strstr(explained, want) != NULL,
				      "envdb help %s %s does not explain%s(usage: %s)", name,
				      sub ? sub : "", want, usage);
			checked++;
		}
		json_decref(doc);
	}
	ck_assert_uint_gt(checked, 30);
	json_decref(all);
}
END_TEST

/* Bad option values and repeated options: 64, with what was wrong, before
 * anything is opened (no manifest exists here). */
START_TEST(bad_values_and_repeats)
{
	ck_assert_int_eq(RUN("cred", "rotate", "acme/prod", "--overlap", "1x"), 64);
	tu_assert_contains(err, "envdb: cred rotate: --overlap: '1x': not a duration "
				"(examples: 90s, 15m, 1h30m, 7d)");
	ck_assert_int_eq(RUN("cred", "rotate", "acme/prod", "--overlap=30m1h"), 64);
	tu_assert_contains(err, "--overlap: '30m1h': not a duration");
	ck_assert_int_eq(RUN("cred", "mint", "acme/prod", "--authorization", "read_only",
			     "--expires", "-5m"),
			 64);
	tu_assert_contains(err, "--expires: '-5m': not a duration");
	ck_assert_int_eq(RUN("cred", "rotate", "acme/prod", "--overlap", "1h", "--overlap", "2h"),
			 64);
	tu_assert_contains(err, "option --overlap given twice (it takes one value)");
	ck_assert_int_eq(RUN("resolve", "acme/prod", "--user", "a", "--user=b"), 64);
	tu_assert_contains(err, "option --user given twice");
	ck_assert_int_eq(RUN("--manifest", "a.yaml", "--manifest", "b.yaml", "plugins"), 64);
	tu_assert_contains(err, "option --manifest given twice");
	ck_assert_int_eq(
		RUN("env", "provision", "acme", "dev", "--type", "test", "--storage-mb", "lots"),
		64);
	tu_assert_contains(err, "--storage-mb: 'lots': not an integer");
	/* a flag may repeat */
	ck_assert_int_eq(RUN("check", "--no-decrypt", "--no-decrypt"), 78);
	tu_assert_contains(err, "no manifest");
}
END_TEST

/* A site with acme/prod (default) and acme/dev, alice owning both. */
static void acme_site(char *m, size_t cap)
{
	char dir[PATH_MAX];

	tu_path(dir, sizeof(dir), "site");
	ck_assert_int_eq(RUN("init", dir), 0);
	join(m, cap, dir, "envdb.yaml");
	ck_assert_int_eq(RUN("--manifest", m, "org", "provision", "acme", "--by", "alice"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "env", "provision", "acme", "dev", "--type",
			     "development", "--by", "alice"),
			 0);
}

/* The status of acme/SLUG in the control plane ("-" when it is gone). */
static const char *env_status(const char *m, const char *slug, char *buf, size_t cap)
{
	char ref[64];
	json_t *doc;

	snprintf(ref, sizeof(ref), "acme/%s", slug);
	if (RUN("--manifest", m, "--json", "env", "show", ref) != 0) {
		snprintf(buf, cap, "-");
		return buf;
	}
	doc = json_out();
	snprintf(buf, cap, "%s",
		 json_string_value(json_object_get(json_object_get(doc, "environment"), "status")));
	json_decref(doc);
	return buf;
}

static size_t count_files(const char *dir, const char *suffix)
{
	char cmd[PATH_MAX + 64];
	FILE *p;
	size_t n = 0;
	int c;

	snprintf(cmd, sizeof(cmd), "ls -1 '%s' | grep -c -- '%s$'", dir, suffix);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	if (fscanf(p, "%zu", &n) != 1)
		n = 0;
	while ((c = fgetc(p)) != EOF)
		;
	pclose(p);
	return n;
}

/* env delete --now, archive of a default, removal of the last owner: no
 * terminal and no --yes is 64 and changes nothing; on a terminal the
 * command asks, "n" changes nothing, "y" goes ahead; --yes never asks. */
START_TEST(destructive_commands_confirm)
{
	char m[PATH_MAX], envs[PATH_MAX], st[32];
	json_t *doc;

	acme_site(m, sizeof(m));
	tu_path(envs, sizeof(envs), "site/environments");
	ck_assert_uint_eq(count_files(envs, "[.]db"), 2);

	/* no terminal: refused, nothing changed */
	ck_assert_int_eq(RUN("--manifest", m, "env", "delete", "acme/dev", "--now"), 64);
	tu_assert_contains(err, "envdb: env delete: not confirmed (stdin is not a terminal): pass "
				"--yes to delete environment acme/dev and drop its database; "
				"nothing changed");
	ck_assert_str_eq(out, "");
	ck_assert_str_eq(env_status(m, "dev", st, sizeof(st)), "active");
	ck_assert_uint_eq(count_files(envs, "[.]db"), 2);
	ck_assert_int_eq(RUN("--manifest", m, "--json", "env", "delete", "acme/dev", "--now"), 64);
	doc = json_out();
	ck_assert_int_eq(
		json_integer_value(json_object_get(json_object_get(doc, "error"), "status")), 64);
	json_decref(doc);
	ck_assert_int_eq(RUN("--manifest", m, "env", "archive", "acme/prod"), 64);
	tu_assert_contains(err, "pass --yes to archive environment acme/prod, the default of "
				"organization acme; nothing changed");
	ck_assert_str_eq(env_status(m, "prod", st, sizeof(st)), "active");
	ck_assert_int_eq(RUN("--manifest", m, "member", "remove", "acme/dev", "alice"), 64);
	tu_assert_contains(err, "pass --yes to remove alice, the last owner of environment "
				"acme/dev");
	ck_assert_int_eq(RUN("--manifest", m, "member", "list", "acme/dev"), 0);
	tu_assert_contains(out, "alice");
	ck_assert_int_eq(RUN("--manifest", m, "check"), 0);
	/* --yes only goes with --now */
	ck_assert_int_eq(RUN("--manifest", m, "env", "delete", "acme/dev", "--yes"), 64);
	tu_assert_contains(err, "--yes goes with --now");
	ck_assert_str_eq(env_status(m, "dev", st, sizeof(st)), "active");

	/* not destructive enough to ask: a non-default archive, a removal
	 * that leaves an owner; the archive says how to undo it */
	ck_assert_int_eq(RUN("--manifest", m, "env", "archive", "acme/dev"), 0);
	tu_assert_contains(out, "undo: envdb env unarchive acme/dev");
	ck_assert_int_eq(RUN("--manifest", m, "env", "unarchive", "acme/dev"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "member", "add", "acme/dev", "carol", "owner"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "member", "add", "acme/dev", "bob", "reader"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "member", "remove", "acme/dev", "bob"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "member", "remove", "acme/dev", "alice"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "member", "remove", "acme/dev", "carol"), 64);
	ck_assert_int_eq(RUN("--manifest", m, "member", "remove", "acme/dev", "carol", "--yes"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "member", "list", "acme/dev"), 0);
	tu_assert_contains(err, "no members");

	/* a terminal: asked; "n" changes nothing, "y" goes ahead */
	ck_assert_int_eq(RUN_TTY("n\n", "--manifest", m, "env", "delete", "acme/dev", "--now"), 64);
	tu_assert_contains(out, "delete environment acme/dev and drop its database? [y/N] ");
	tu_assert_contains(out, "not confirmed: nothing changed");
	ck_assert_str_eq(env_status(m, "dev", st, sizeof(st)), "active");
	ck_assert_uint_eq(count_files(envs, "[.]db"), 2);
	ck_assert_int_eq(RUN_TTY("\n", "--manifest", m, "env", "archive", "acme/prod"), 64);
	tu_assert_contains(out, "archive environment acme/prod, the default of organization acme? "
				"[y/N] ");
	ck_assert_str_eq(env_status(m, "prod", st, sizeof(st)), "active");
	ck_assert_int_eq(RUN_TTY("y\n", "--manifest", m, "env", "archive", "acme/prod"), 0);
	tu_assert_contains(out, "undo: envdb env unarchive acme/prod");
	ck_assert_str_eq(env_status(m, "prod", st, sizeof(st)), "archived");
	ck_assert_int_eq(RUN("--manifest", m, "env", "unarchive", "acme/prod"), 0);
	ck_assert_int_eq(RUN_TTY("yes\n", "--manifest", m, "env", "delete", "acme/dev", "--now"),
			 0);
	tu_assert_contains(out, "deleted acme/dev (database dropped)");
	ck_assert_str_eq(env_status(m, "dev", st, sizeof(st)), "-");
	ck_assert_uint_eq(count_files(envs, "[.]db"), 1);
	/* --yes: not asked, even on a terminal */
	ck_assert_int_eq(
		RUN_TTY("n\n", "--manifest", m, "env", "delete", "acme/prod", "--now", "--yes"), 0);
	ck_assert_ptr_null(strstr(out, "[y/N]"));
	ck_assert_uint_eq(count_files(envs, "[.]db"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "check"), 0);
}
END_TEST

/* org list / org show: organizations as their environments imply them. */
START_TEST(org_list_and_show)
{
	char m[PATH_MAX];
	json_t *doc, *orgs, *o;

	acme_site(m, sizeof(m));
	ck_assert_int_eq(RUN("--manifest", m, "org", "provision", "beta", "--by", "bob"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "env", "archive", "acme/dev"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "org", "list"), 0);
	tu_assert_contains(out, "ORGANIZATION");
	tu_assert_contains(out, "acme          2     prod     active 1, archived 1\n");
	tu_assert_contains(out, "beta          1     prod     active 1\n");
	ck_assert_int_eq(RUN("--manifest", m, "--json", "org", "list"), 0);
	doc = json_out();
	orgs = json_object_get(doc, "organizations");
	ck_assert_uint_eq(json_array_size(orgs), 2);
	o = json_array_get(orgs, 0);
	ck_assert_str_eq(json_string_value(json_object_get(o, "id")), "acme");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "environment_count")), 2);
	ck_assert_int_eq(
		json_integer_value(json_object_get(json_object_get(o, "by_status"), "archived")),
		1);
	ck_assert_int_eq(
		json_integer_value(json_object_get(json_object_get(o, "by_status"), "active")), 1);
	ck_assert_str_eq(json_string_value(
				 json_object_get(json_object_get(o, "default_environment"), "ref")),
			 "acme/prod");
	json_decref(doc);

	ck_assert_int_eq(RUN("--manifest", m, "org", "show", "acme"), 0);
	tu_assert_contains(out, "organization  acme\ndefault       prod\n"
				"environments  2 (active 1, archived 1)\n");
	tu_assert_contains(out, "acme/dev     development  archived");
	tu_assert_contains(out, "acme/prod    production   active    free  local   yes");
	ck_assert_int_eq(RUN("--manifest", m, "--json", "org", "show", "beta"), 0);
	doc = json_out();
	o = json_object_get(doc, "organization");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "environment_count")), 1);
	ck_assert_uint_eq(json_array_size(json_object_get(o, "environments")), 1);
	json_decref(doc);
	ck_assert_int_eq(RUN("--manifest", m, "org", "show", "gamma"), 65);
	tu_assert_contains(err, "organization gamma: not found");
	ck_assert_int_eq(RUN("--manifest", m, "org", "show"), 64);
}
END_TEST

/* A global option (-j, --json, --output, -q) is one only where an option
 * may start: as the value of a command option that takes one, it is that
 * value. */
START_TEST(global_option_as_value)
{
	char m[PATH_MAX];

	acme_site(m, sizeof(m));
	ck_assert_int_eq(RUN("--manifest", m, "env", "provision", "acme", "qa", "--type", "test",
			     "--display-name", "-j", "--by", "alice"),
			 0);
	ck_assert_msg(out[0] != '{', "-j was taken as --json: %s", out);
	ck_assert_int_eq(RUN("--manifest", m, "env", "show", "acme/qa"), 0);
	tu_assert_contains(out, " -j\n");
	ck_assert_int_eq(RUN("--manifest", m, "env", "provision", "acme", "qa1", "--display-name",
			     "--output", "--type", "test"),
			 0);
	ck_assert_int_eq(RUN("--manifest", m, "env", "show", "acme/qa1"), 0);
	tu_assert_contains(out, " --output\n");
	/* where an option may start, they are still global: after a flag,
	 * after a command option's value, before the command words */
	ck_assert_int_eq(RUN("--manifest", m, "env", "provision", "acme", "qa2", "--type", "test",
			     "--default", "-j"),
			 65); /* acme has its default: the error as a JSON document */
	ck_assert_msg(out[0] == '{', "-j after a flag: not JSON: %s", out);
	tu_assert_contains(out, "already has a default environment");
	ck_assert_int_eq(RUN("--manifest", m, "env", "show", "acme/qa", "-j"), 0);
	ck_assert_msg(out[0] == '{', "-j after the arguments: not JSON: %s", out);
	ck_assert_int_eq(RUN("--manifest", m, "env", "provision", "acme", "qa3", "--type", "test",
			     "--display-name", "x", "-j"),
			 0);
	ck_assert_msg(out[0] == '{', "-j after an option's value: not JSON: %s", out);
	/* --name=VALUE carries its value itself: the next word is free */
	ck_assert_int_eq(RUN("--manifest", m, "env", "provision", "acme", "qa4", "--type=test",
			     "--display-name=-q", "-j"),
			 0);
	ck_assert_msg(out[0] == '{', "-j after --name=VALUE: not JSON: %s", out);
}
END_TEST

/* The README's example on the default (sqlite) deployment: a reader
 * resolves to a read-only credential, whose URL SQLite opens read-only:
 * it reads and cannot write.  The owner's URL writes. */
START_TEST(reader_resolves_on_sqlite)
{
	char m[PATH_MAX], url[PATH_MAX + 32], owner_url[PATH_MAX + 32], ro_id[64];
	sqlite3 *db = NULL;
	json_t *doc;

	acme_site(m, sizeof(m));
	ck_assert_int_eq(RUN("--manifest", m, "member", "add", "acme/dev", "bob", "reader"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "resolve", "acme/dev", "--user", "bob"), 0);
	tu_assert_contains(out, "authorization  read_only");
	tu_assert_contains(out, "?mode=ro\n");
	ck_assert_int_eq(RUN("--manifest", m, "--json", "resolve", "acme/dev", "--user", "alice"),
			 0);
	doc = json_out();
	ck_assert_str_eq(json_string_value(json_object_get(doc, "authorization")), "full_access");
	snprintf(owner_url, sizeof(owner_url), "%s",
		 json_string_value(json_object_get(doc, "database_url")));
	json_decref(doc);
	ck_assert_int_eq(RUN("--manifest", m, "--json", "resolve", "acme/dev", "--user", "bob"), 0);
	doc = json_out();
	ck_assert_str_eq(json_string_value(json_object_get(doc, "authorization")), "read_only");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "role")), "reader");
	snprintf(url, sizeof(url), "%s", json_string_value(json_object_get(doc, "database_url")));
	snprintf(ro_id, sizeof(ro_id), "%s",
		 json_string_value(json_object_get(doc, "credential_id")));
	json_decref(doc);
	ck_assert_ptr_null(strstr(owner_url, "mode=ro"));
	ck_assert_uint_eq(strlen(url), strlen(owner_url) + strlen("?mode=ro"));
	ck_assert_int_eq(strncmp(url, owner_url, strlen(owner_url)), 0);

	/* the owner writes, the reader reads and cannot write */
	ck_assert_int_eq(
		sqlite3_open_v2(owner_url, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL),
		SQLITE_OK);
	ck_assert_int_eq(
		sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1)", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	ck_assert_int_eq(sqlite3_open_v2(url, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "SELECT * FROM t", NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO t VALUES (2)", NULL, NULL, NULL),
			 SQLITE_READONLY);
	ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE u (y)", NULL, NULL, NULL), SQLITE_READONLY);
	sqlite3_close(db);
	ck_assert_int_eq(RUN("--manifest", m, "check"), 0);
	/* a guest too */
	ck_assert_int_eq(RUN("--manifest", m, "member", "add", "acme/dev", "gus", "guest"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "resolve", "acme/dev", "--user", "gus"), 0);
	tu_assert_contains(out, "authorization  read_only");
	/* without a read-only credential (revoked, or an environment from
	 * before): never full access; the message says how to mint one */
	ck_assert_int_eq(RUN("--manifest", m, "cred", "revoke", "acme/dev", ro_id), 0);
	ck_assert_int_eq(RUN("--manifest", m, "resolve", "acme/dev", "--user", "bob"), 77);
	tu_assert_contains(err, "has no active read_only credential (mint one: envdb cred mint "
				"acme/dev --authorization read_only)");
	ck_assert_int_eq(
		RUN("--manifest", m, "cred", "mint", "acme/dev", "--authorization", "read_only"),
		0);
	ck_assert_int_eq(RUN("--manifest", m, "resolve", "acme/dev", "--user", "bob"), 0);
	tu_assert_contains(out, "?mode=ro\n");
}
END_TEST

/* Durations on the command line: compound units reach the library as
 * seconds (the rotating credential's window ends 1h30m from now). */
/* "2026-12-03T13:55:25Z" (the JSON time convention) as epoch seconds. */
static time_t iso_time(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	ck_assert_ptr_nonnull(s);
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	ck_assert_msg(end != NULL && *end == '\0', "not an ISO 8601 UTC time: %s", s);
	return timegm(&tm);
}

START_TEST(durations_compound)
{
	char m[PATH_MAX];
	json_t *doc, *creds;
	time_t before = time(NULL);
	size_t i, rotating = 0;

	acme_site(m, sizeof(m));
	ck_assert_int_eq(RUN("--manifest", m, "cred", "rotate", "acme/dev", "--authorization",
			     "full_access", "--overlap", "1h30m"),
			 0);
	ck_assert_int_eq(RUN("--manifest", m, "--json", "cred", "list", "acme/dev"), 0);
	doc = json_out();
	creds = json_object_get(doc, "credentials");
	for (i = 0; i < json_array_size(creds); i++) {
		json_t *c = json_array_get(creds, i);
		json_int_t exp;

		if (strcmp(json_string_value(json_object_get(c, "status")), "rotating") != 0)
			continue;
		rotating++;
		exp = (json_int_t)iso_time(json_string_value(json_object_get(c, "expires_at")));
		ck_assert_int_ge(exp, (json_int_t)before + 5400);
		ck_assert_int_le(exp, (json_int_t)time(NULL) + 5400);
	}
	ck_assert_uint_eq(rotating, 1);
	json_decref(doc);
	ck_assert_int_eq(RUN("--manifest", m, "cred", "mint", "acme/dev", "--authorization",
			     "read_only", "--expires", "1w"),
			 65); /* one read_only credential is active already */
	/* sqlite checks no credential: the warning for one revoked there says
	 * so, not that it works "until it expires" (nothing expires it) */
	ck_assert_int_eq(RUN("--manifest", m, "cred", "rotate", "acme/dev", "--authorization",
			     "read_only", "--overlap", "0"),
			 0);
	tu_assert_contains(err, "the sqlite adapter checks no credential, so it never limited "
				"access to the database");
	ck_assert_ptr_null(strstr(err, "until it expires"));
}
END_TEST

/* key rewrap shows its progress on a terminal (the helper migrate uses),
 * and nothing of it otherwise. */
START_TEST(rewrap_progress_on_a_terminal)
{
	char m[PATH_MAX];

	acme_site(m, sizeof(m)); /* 2 environments, 2 credentials each */
	ck_assert_int_eq(RUN("--manifest", m, "key", "rotate"), 0);
	ck_assert_int_eq(RUN("--manifest", m, "key", "rewrap", "--dry-run"), 0);
	ck_assert_ptr_null(strstr(err, "ETA"));
	tu_assert_contains(out, "4 credentials, 0 already under the current key, 4 would be");
	ck_assert_int_eq(RUN_TTY("", "--manifest", m, "key", "rewrap"), 0);
	tu_assert_contains(out, "rewrap: 4/4 credentials (100%), ");
	tu_assert_contains(out, " credential/s, ETA 0s");
	tu_assert_contains(out, "4 credentials, 0 already under the current key, 4 rewrapped");
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
	tcase_add_test(tc, did_you_mean);
	tcase_add_test(tc, help_per_command);
	tcase_add_test(tc, help_explains_every_option);
	tcase_add_test(tc, bad_values_and_repeats);
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
		tcase_add_test(e2e, destructive_commands_confirm);
		tcase_add_test(e2e, org_list_and_show);
		tcase_add_test(e2e, global_option_as_value);
		tcase_add_test(e2e, reader_resolves_on_sqlite);
		tcase_add_test(e2e, durations_compound);
		tcase_add_test(e2e, rewrap_progress_on_a_terminal);
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
