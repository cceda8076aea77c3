/*
 * tests/test_hostile_input.c — what hostile input gets (DESIGN.md §9):
 * organization ids, slugs, user ids, regions and display names with quotes,
 * path separators, "..", control characters, non-UTF-8 or non-ASCII bytes,
 * and overlong values are refused with ENVDB_ERR_INVALID and a message that
 * names the field and shows the value escaped, before anything reaches a
 * backend (no physical database appears), a path or SQL (no row appears);
 * the same through the envdb command (exit 65).  Manifest values with
 * quotes, NULs (escaped or raw), path separators, "..", non-UTF-8 bytes and
 * overlong scalars are refused with file:line:column; YAML anchors and
 * aliases ("billion laughs") and deep nesting are refused within bounded
 * time and memory.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testdeploy.h"

static td T;

static void setup(void)
{
	td_setup(&T, NULL);
}

static void teardown(void)
{
	td_teardown(&T);
}

static char long_id[1024 * 1024 + 1];

static const char *hostile_ids[] = {
	"acme\"", "ac'me", "a/b", "a\\b", "..", "a..b", "../etc", "a b", "a\nb", "a\tb",
	"\xff\xfe", "caf\xc3\xa9", "\xc0\xaf", "-acme", "a;drop table x", "a%s%n", "",
	"a\x7f", "${HOME}", "a`id`", NULL /* 129 bytes */, NULL /* 1 MiB */,
};
#define N_IDS (sizeof(hostile_ids) / sizeof(hostile_ids[0]))

static const char *hostile_slugs[] = {
	"Prod", "pr\"od", "../x", "a/b", "a.b", "\xff", "", "-x", "x y", "x\n",
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 64 */
};
#define N_SLUGS (sizeof(hostile_slugs) / sizeof(hostile_slugs[0]))

static void fill_ids(void)
{
	static char id129[130];

	memset(id129, 'a', 129);
	id129[129] = '\0';
	memset(long_id, 'b', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	hostile_ids[N_IDS - 2] = id129;
	hostile_ids[N_IDS - 1] = long_id;
}

/* The last error is INVALID, names `field`, and is printable ASCII. */
static void assert_refused(int rc, const char *field, const char *what)
{
	const envdb_error *e = envdb_error_last();
	size_t i;

	ck_assert_msg(rc == ENVDB_ERR_INVALID, "%s: status %d, want invalid: %s", what, rc,
		      e->message);
	ck_assert_msg(strstr(e->message, field) != NULL, "%s: message does not name %s: %s", what,
		      field, e->message);
	ck_assert_uint_lt(strlen(e->message), 1024);
	for (i = 0; e->message[i]; i++)
		ck_assert_msg((unsigned char)e->message[i] >= 0x20 &&
				      (unsigned char)e->message[i] < 0x7f,
			      "%s: raw byte 0x%02x in the message", what,
			      (unsigned char)e->message[i]);
}

/* Nothing was created anywhere. */
static void assert_untouched(envdb_ctx *ctx, size_t envs)
{
	ck_assert_uint_eq(td_env_count(ctx, NULL, NULL), envs);
	ck_assert_uint_eq(td_faulty_dbs(&T), envs);
	ck_assert_uint_eq(td_sqlite_dbs(&T), 0);
}

static int provision(envdb_ctx *ctx, const char *org, const char *slug, const char *owner,
		     const char *region, const char *display, const char *driver)
{
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;

	o.env_type = "development";
	o.created_by = owner;
	o.region = region;
	o.display_name = display;
	o.driver = driver;
	return envdb_env_provision(NULL, ctx, org, slug, &o);
}

START_TEST(test_hostile_organization_ids)
{
	envdb_ctx *ctx = td_open(&T);
	envdb_environment **v = NULL;
	envdb_connection *c = NULL;
	size_t i, n = 0;

	fill_ids();
	for (i = 0; i < N_IDS; i++) {
		const char *org = hostile_ids[i];
		char what[64];

		snprintf(what, sizeof(what), "organization id #%zu", i);
		assert_refused(provision(ctx, org, "dev", "alice", NULL, NULL, NULL),
			       "organization id", what);
		assert_refused(provision(ctx, org, "dev", "alice", NULL, NULL, "sqlite"),
			       "organization id", what);
		{
			envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;

			o.created_by = "alice";
			assert_refused(envdb_org_provision(NULL, ctx, org, NULL, &o),
				       "organization id", what);
		}
		assert_refused(envdb_resolve(&c, ctx, org, "dev", "alice"), "organization id", what);
		assert_refused(envdb_member_add(ctx, org, "dev", "bob", "reader", NULL),
			       "organization id", what);
		assert_refused(envdb_cred_rotate(ctx, org, "dev", NULL), "organization id", what);
		assert_refused(envdb_env_delete(ctx, org, "dev", ENVDB_DELETE_NOW),
			       "organization id", what);
		assert_refused(envdb_env_list(&v, &n, ctx, org), "organization id", what);
	}
	assert_untouched(ctx, 0);
	/* the checker admits what real ids look like */
	ck_assert_int_eq(provision(ctx, "acme", "dev", "alice", NULL, NULL, NULL), ENVDB_OK);
	ck_assert_int_eq(provision(ctx, "6f1c0c8e-4f0b-4d0e-9a39-1f0e3c1d2b3a", "dev",
				   "alice@example.com", NULL, NULL, NULL),
			 ENVDB_OK);
	ck_assert_int_eq(provision(ctx, "org_42.eu", "dev", "user:1+x", "eu-west-1", "Café ☕",
				   NULL),
			 ENVDB_OK);
	assert_untouched(ctx, 3);
	envdb_close(ctx);
}
END_TEST

START_TEST(test_hostile_slugs_users_regions_names)
{
	envdb_ctx *ctx = td_open(&T);
	envdb_connection *c = NULL;
	static const char *regions[] = {"../eu", "eu west", "EU\"", "eu/west", "\xff", ""};
	static const char *names[] = {"\xff\xfe", "a\x01" "b", "bad \xc3\x28", "\xed\xa0\x80",
				      "\xf4\x90\x80\x80", NULL /* 300 bytes */};
	char n300[301];
	size_t i;

	fill_ids();
	for (i = 0; i < N_SLUGS; i++) {
		assert_refused(provision(ctx, "acme", hostile_slugs[i], "alice", NULL, NULL, NULL),
			       "slug", hostile_slugs[i]);
		assert_refused(envdb_resolve(&c, ctx, "acme", hostile_slugs[i], "alice"), "slug",
			       hostile_slugs[i]);
		assert_refused(envdb_member_add(ctx, "acme", hostile_slugs[i], "bob", "reader", NULL),
			       "slug", hostile_slugs[i]);
	}
	for (i = 0; i < N_IDS; i++) {
		char what[64];

		if (hostile_ids[i][0] == '\0')
			continue; /* an empty owner has its own message */
		snprintf(what, sizeof(what), "user id #%zu", i);
		assert_refused(provision(ctx, "acme", "dev", hostile_ids[i], NULL, NULL, NULL),
			       "created_by", what);
	}
	for (i = 0; i < sizeof(regions) / sizeof(regions[0]); i++)
		assert_refused(provision(ctx, "acme", "dev", "alice", regions[i], NULL, NULL),
			       "region", regions[i]);
	memset(n300, 'n', 300);
	n300[300] = '\0';
	names[5] = n300;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_refused(provision(ctx, "acme", "dev", "alice", NULL, names[i], NULL),
			       "display name", "display name");
	assert_untouched(ctx, 0);

	/* an environment that exists: hostile users cannot be added, removed,
	 * or resolve */
	ck_assert_int_eq(provision(ctx, "acme", "dev", "alice", NULL, NULL, NULL), ENVDB_OK);
	for (i = 0; i < N_IDS; i++) {
		char what[64];

		if (hostile_ids[i][0] == '\0')
			continue;
		snprintf(what, sizeof(what), "user id #%zu", i);
		assert_refused(envdb_member_add(ctx, "acme", "dev", hostile_ids[i], "reader", NULL),
			       "user id", what);
		assert_refused(envdb_member_remove(ctx, "acme", "dev", hostile_ids[i]), "user id",
			       what);
		assert_refused(envdb_resolve(&c, ctx, "acme", "dev", hostile_ids[i]), "user id",
			       what);
	}
	{
		envdb_member **m = NULL;
		size_t n = 0;

		ck_assert_int_eq(envdb_member_list(&m, &n, ctx, "acme", "dev"), ENVDB_OK);
		ck_assert_uint_eq(n, 1);
		envdb_member_list_free(m, n);
	}
	assert_untouched(ctx, 1);
	envdb_close(ctx);
}
END_TEST

/* Run the envdb command with `argv` (NULL-terminated, after --manifest M);
 * returns the exit status, stderr in *err (malloc'd). */
static int run_envdb(char **err, const char *const *args)
{
	const char *b = getenv("ENVDB_TEST_BUILDDIR");
	char prog[PATH_MAX], errpath[PATH_MAX + 16];
	const char *argv[32];
	size_t i, n = 0;
	int st = 0, fd;
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/core/envdb", b);
	snprintf(errpath, sizeof(errpath), "%s/cli.err", T.dir);
	argv[n++] = prog;
	argv[n++] = "--manifest";
	argv[n++] = T.manifest;
	for (i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(null, 1);
		dup2(fd, 2);
		execv(prog, (char *const *)argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	{
		FILE *f = fopen(errpath, "r");
		size_t len = 0;

		*err = calloc(1, 65536);
		ck_assert_ptr_nonnull(f);
		len = fread(*err, 1, 65535, f);
		(*err)[len] = '\0';
		fclose(f);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

START_TEST(test_hostile_command_line)
{
	static const char *const cases[][8] = {
		{"env", "provision", "a\"b", "dev", "--type", "development", "--by", "alice"},
		{"env", "provision", "..", "dev", "--type", "development", "--by", "alice"},
		{"env", "provision", "acme", "../x", "--type", "development", "--by", "alice"},
		{"env", "provision", "\xff\xfe", "dev", "--type", "development", "--by", "alice"},
		{"env", "provision", "acme", "dev", "--type", "development", "--by", "al ice"},
		{"env", "provision", "acme", "dev", "--type", "development", "--region", "../x"},
		{"org", "provision", "a\\b", "--by", "alice", NULL, NULL, NULL},
		{"member", "add", "acme/dev", "b\xc3\x28", "reader", NULL, NULL, NULL},
		{"resolve", "acme/dev", "--user", "..", NULL, NULL, NULL, NULL},
	};
	envdb_ctx *ctx;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *args[9];
		char *err = NULL;
		size_t k;
		int rc;

		for (k = 0; k < 8; k++)
			args[k] = cases[i][k];
		args[8] = NULL;
		rc = run_envdb(&err, args);
		ck_assert_msg(rc == 65, "case %zu: exit %d, want 65 (bad data); stderr: %s", i, rc,
			      err);
		ck_assert_msg(strstr(err, "invalid") != NULL, "case %zu: %s", i, err);
		for (k = 0; err[k]; k++)
			ck_assert_msg((unsigned char)err[k] < 0x80, "case %zu: raw byte in: %s", i,
				      err);
		free(err);
	}
	ctx = td_open(&T);
	assert_untouched(ctx, 0);
	envdb_close(ctx);
}
END_TEST

/* ---- the manifest --------------------------------------------------------- */

static void write_bytes(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static const char base_manifest[] = "version: 1\n"
				    "control_plane: control.db\n"
				    "plugins:\n"
				    "  - name: kms\n"
				    "    kind: encryptor\n"
				    "    config:\n"
				    "      keyring_dir: keyring\n";

/* Load `text` (len bytes) as a manifest: must fail with CONFIG naming a
 * position, and `frag` when given. */
static void manifest_refused(const void *text, size_t len, const char *frag, const char *what)
{
	char path[PATH_MAX + 32];
	envdbi_manifest *m = NULL;
	const char *msg;
	int rc;

	snprintf(path, sizeof(path), "%s/hostile.yaml", T.dir);
	write_bytes(path, text, len);
	rc = envdbi_manifest_load(&m, path);
	msg = envdb_error_last()->message;
	envdbi_manifest_free(m);
	ck_assert_msg(rc == ENVDB_ERR_CONFIG, "%s: status %d, want config; %s", what, rc, msg);
	ck_assert_msg(strstr(msg, "hostile.yaml:") != NULL, "%s: no file:line: %s", what, msg);
	ck_assert_msg(frag == NULL || strstr(msg, frag) != NULL, "%s: no \"%s\" in: %s", what,
		      frag, msg);
}

static void manifest_with(const char *extra, const char *frag, const char *what)
{
	size_t cap = sizeof(base_manifest) + strlen(extra) + 1;
	char *text = malloc(cap);
	int n;

	ck_assert_ptr_nonnull(text);
	n = snprintf(text, cap, "%s%s", base_manifest, extra);
	manifest_refused(text, (size_t)n, frag, what);
	free(text);
}

START_TEST(test_hostile_manifest_values)
{
	static const char nul_raw[] = "version: 1\ncontrol_plane: con\0trol.db\n";
	char *big;
	size_t i;

	manifest_with("defaults:\n  driver: \"fa\\\"ulty\"\n", "driver", "quote in a name");
	manifest_with("defaults:\n  driver: \"fau\\0lty\"\n", NULL, "escaped NUL");
	manifest_refused(nul_raw, sizeof(nul_raw) - 1, NULL, "raw NUL");
	manifest_with("defaults:\n  driver: ../faulty\n", "driver", "path in a plugin name");
	manifest_with("defaults:\n  encryptor: a/b\n", "encryptor", "separator in a name");
	manifest_with("  - name: ../evil\n    kind: adapter\n", "name", "'..' in a plugin name");
	manifest_with("  - name: \"ev\\\"il\"\n    kind: adapter\n", "name", "quote");
	manifest_with("defaults:\n  region: \"../../etc\"\n", "region", "path in a region");
	manifest_with("defaults:\n  region: \"eu west\"\n", "region", "space in a region");
	manifest_with("defaults:\n  plan: \"pro'\"\n", "plan", "quote in a plan");
	manifest_with("defaults:\n  driver: \"fa\xff\xfeulty\"\n", NULL, "non-UTF-8");
	manifest_with("defaults:\n  region: \"\xc0\xaf\"\n", NULL, "overlong UTF-8");
	big = malloc(300 * 1024);
	ck_assert_ptr_nonnull(big);
	memcpy(big, "defaults:\n  region: ", 20);
	for (i = 20; i < 300 * 1024 - 2; i++)
		big[i] = 'a';
	big[i++] = '\n';
	big[i] = '\0';
	manifest_with(big, NULL, "overlong scalar");
	free(big);
}
END_TEST

static long maxrss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A document must be refused in under `secs` seconds and without the
 * process growing more than `mb` MiB. */
static void bounded_refusal(const char *text, size_t len, const char *frag, double secs,
			    long mb, const char *what)
{
	long before = maxrss_kb();
	double t0 = now_s(), dt;

	manifest_refused(text, len, frag, what);
	dt = now_s() - t0;
	fprintf(stderr, "%s: refused in %.3f s, max RSS +%ld KiB\n", what, dt,
		maxrss_kb() - before);
	if (getenv("ENVDB_VALGRIND") != NULL)
		return; /* valgrind's own time and memory are not the parser's */
	ck_assert_msg(dt < secs, "%s: took %.2f s", what, dt);
	ck_assert_msg(maxrss_kb() - before < mb * 1024, "%s: grew by %ld KiB", what,
		      maxrss_kb() - before);
}

START_TEST(test_yaml_bombs_bounded)
{
	/* billion laughs: 9 levels of 9 aliases each */
	static const char laughs[] =
	    "version: 1\n"
	    "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
	    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
	    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
	    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
	    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
	    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
	    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
	    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
	static const char alias_only[] = "version: 1\ndefaults: *nowhere\n";
	size_t depth = 200000, i, len;
	char *deep;

	bounded_refusal(laughs, sizeof(laughs) - 1, "anchor", 2.0, 16, "billion laughs");
	bounded_refusal(alias_only, sizeof(alias_only) - 1, NULL, 2.0, 16, "lone alias");

	/* deep nesting: 200 000 levels of flow sequences, then of mappings */
	deep = malloc(2 * depth + 64);
	ck_assert_ptr_nonnull(deep);
	len = (size_t)sprintf(deep, "version: 1\nx: ");
	for (i = 0; i < depth; i++)
		deep[len++] = '[';
	for (i = 0; i < depth; i++)
		deep[len++] = ']';
	deep[len++] = '\n';
	bounded_refusal(deep, len, NULL, 2.0, 64, "200000 nested sequences");
	len = (size_t)sprintf(deep, "version: 1\nx: ");
	for (i = 0; i < depth / 2; i++) {
		deep[len++] = '{';
		deep[len++] = 'k';
		deep[len++] = ':';
	}
	for (i = 0; i < depth / 2; i++)
		deep[len++] = '}';
	deep[len++] = '\n';
	bounded_refusal(deep, len, NULL, 2.0, 64, "100000 nested mappings");
	free(deep);

	/* many nodes: a 4 MiB flat sequence */
	len = 4u * 1024 * 1024;
	deep = malloc(len + 64);
	ck_assert_ptr_nonnull(deep);
	i = (size_t)sprintf(deep, "version: 1\nx: [");
	while (i < len - 2) {
		deep[i++] = '1';
		deep[i++] = ',';
	}
	deep[i++] = ']';
	deep[i++] = '\n';
	bounded_refusal(deep, i, NULL, 3.0, 96, "4 MiB of nodes");
	free(deep);
}
END_TEST

/* The last error is a fixed per-thread buffer (core/error.c, 2048 bytes):
 * a shorter message must not leave the tail of a longer one behind it (a
 * plugin's report, the part a redaction cut off), and clearing wipes it. */
#define ERROR_BUFFER 2048

static bool error_buffer_holds(const char *needle)
{
	const char *buf = envdb_error_last()->message;

	return memmem(buf, ERROR_BUFFER, needle, strlen(needle)) != NULL;
}

START_TEST(test_error_buffer_tails_wiped)
{
	char longmsg[1500];

	memset(longmsg, 'x', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	memcpy(longmsg + 1000, "TAIL-OF-AN-EARLIER-REPORT", 25);
	envdbi_error(ENVDB_ERR_INVALID, "NATIVE-EARLIER-CODE", "plugin x: %s", longmsg);
	ck_assert(error_buffer_holds("TAIL-OF-AN-EARLIER-REPORT"));
	envdbi_error(ENVDB_ERR_INVALID, "N1", "plugin x: short");
	ck_assert_str_eq(envdb_error_last()->message, "plugin x: short");
	ck_assert_str_eq(envdb_error_last()->native_code, "N1");
	ck_assert_msg(!error_buffer_holds("TAIL-OF-AN-EARLIER-REPORT"),
		      "the earlier message survives after the shorter one");
	ck_assert(memmem(envdb_error_last()->native_code, 64, "EARLIER", 7) == NULL);
	/* a prefix added to a message rewrites it in place: same rule */
	envdbi_error(ENVDB_ERR_INVALID, NULL, "%s", longmsg);
	envdbi_error(ENVDB_ERR_INVALID, NULL, "b");
	envdbi_error_prefix("a: ");
	ck_assert_str_eq(envdb_error_last()->message, "a: b");
	ck_assert(!error_buffer_holds("TAIL-OF-AN-EARLIER-REPORT"));
	envdb_error_clear();
	ck_assert(!error_buffer_holds("a: b"));
}
END_TEST

static Suite *hostile_input_suite(void)
{
	Suite *s = suite_create("hostile input");
	TCase *tc = tcase_create("api");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_hostile_organization_ids);
	tcase_add_test(tc, test_hostile_slugs_users_regions_names);
	tcase_add_test(tc, test_hostile_command_line);
	tcase_add_test(tc, test_error_buffer_tails_wiped);
	suite_add_tcase(s, tc);
	tc = tcase_create("manifest");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_hostile_manifest_values);
	tcase_add_test(tc, test_yaml_bombs_bounded);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(hostile_input_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
