/*
 * tests/test_hostile.c — the host against a plugin that breaks the contract
 * (tests/fixtures/hostile_adapter.c): errors without a message, with an
 * empty or enormous one, statuses that are not statuses, output buffers
 * whose descriptor was rewritten, values that do not fit, hold a NUL or are
 * missing, secrets quoted in error text and logs, and calls that return
 * past their deadline.  Each time the host stays up, reports precisely
 * (plugin, operation, what was wrong), redacts the secret everywhere it
 * could surface (last error, native code, log lines, the control plane),
 * and keeps working for the next call.
 *
 * Calls go through the host layer directly (core/host.c, internal API) for
 * precise checks, and through envdb_env_provision() to show the library
 * leaves nothing half-done.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testdeploy.h"

typedef struct fx {
	char dir[PATH_MAX];
	char manifest[PATH_MAX + 32];
	char mode[PATH_MAX + 32];
	char secrets[PATH_MAX + 32];
	char log[PATH_MAX + 32];
	char control[PATH_MAX + 32];
	int saved_stderr;
} fx;

static fx F;

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

static void setup(void)
{
	const char *builddir = getenv("ENVDB_TEST_BUILDDIR");
	const char *tmp = getenv("TMPDIR");
	char text[3 * PATH_MAX + 1024], *key = NULL;
	envdb_ctx *ctx = NULL;
	int fd;

	ck_assert_ptr_nonnull(builddir);
	memset(&F, 0, sizeof(F));
	snprintf(F.dir, sizeof(F.dir), "%s/envdb-hostile-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(F.dir));
	snprintf(F.manifest, sizeof(F.manifest), "%s/envdb.yaml", F.dir);
	snprintf(F.mode, sizeof(F.mode), "%s/mode", F.dir);
	snprintf(F.secrets, sizeof(F.secrets), "%s/secrets", F.dir);
	snprintf(F.log, sizeof(F.log), "%s/stderr.log", F.dir);
	snprintf(F.control, sizeof(F.control), "%s/control.db", F.dir);
	snprintf(text, sizeof(text),
		 "version: 1\n"
		 "control_plane: control.db\n"
		 "defaults:\n"
		 "  driver: hostile\n"
		 "  encryptor: kms\n"
		 "legacy:\n"
		 "  register_shim: false\n"
		 "plugins:\n"
		 "  - name: hostile\n"
		 "    kind: adapter\n"
		 "    path: %s/tests/fixtures/.libs/hostile.so\n"
		 "    config:\n"
		 "      mode_file: %s\n"
		 "      secrets_file: %s\n"
		 "  - name: kms\n"
		 "    kind: encryptor\n"
		 "    config:\n"
		 "      keyring_dir: keyring\n",
		 builddir, F.mode, F.secrets);
	write_text(F.manifest, text);
	ck_assert_msg(envdb_open(&ctx, F.manifest, ENVDB_OPEN_CREATE) == ENVDB_OK, "open: %s",
		      envdb_error_last()->message);
	ck_assert_int_eq(envdb_key_generate(&key, ctx, NULL, 1), ENVDB_OK);
	envdb_free(key);
	envdb_close(ctx);
	/* Everything the library and the plugin log goes to a file we read. */
	fflush(stderr);
	F.saved_stderr = dup(2);
	fd = open(F.log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dup2(fd, 2), 2);
	close(fd);
	setenv("ENVDB_LOG_LEVEL", "debug", 1);
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	fflush(stderr);
	if (F.saved_stderr > 0) {
		dup2(F.saved_stderr, 2);
		close(F.saved_stderr);
	}
	unsetenv("ENVDB_LOG_LEVEL");
	envdbi_host_set_call_timeout_ms(30000);
	if (getenv("ENVDB_TEST_KEEP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
		ck_assert_int_eq(system(cmd), 0);
	}
}

static void mode(const char *m)
{
	write_text(F.mode, m ? m : "");
}

static envdb_ctx *open_ctx(void)
{
	envdb_ctx *ctx = NULL;

	ck_assert_msg(envdb_open(&ctx, F.manifest, 0) == ENVDB_OK, "open: %s",
		      envdb_error_last()->message);
	return ctx;
}

static envdbi_plugin *adapter(envdb_ctx *ctx)
{
	envdbi_plugin *p = envdbi_plugins_find(ctx->plugins, "hostile", ENVDB_PLUGIN_ADAPTER);

	ck_assert_ptr_nonnull(p);
	return p;
}

#define ENV_ID "0b7c8f5e-3d7a-4c55-9a55-6c1c2b0f4e11"

/* Call `op` of the hostile adapter through the host; returns its status. */
static int call_op(envdb_ctx *ctx, const char *op)
{
	envdbi_plugin *p = adapter(ctx);
	envdb_db_ref ref = {sizeof(ref), ENV_ID, "h_" ENV_ID, "hostile://x", "{}", NULL};
	envdb_create_request cr = {sizeof(cr), ENV_ID, "h_" ENV_ID, NULL, "free", 64, NULL};
	envdb_mint_request mr = {sizeof(mr), ENV_ID, ENVDB_AUTH_FULL_ACCESS, 0, NULL, NULL, 0};
	char *a = NULL, *b = NULL;
	envdbi_secret *sec = NULL;
	int rc;

	if (strcmp(op, "database_name") == 0) {
		rc = envdbi_adapter_database_name(p, ENV_ID, &a);
	} else if (strcmp(op, "create") == 0) {
		rc = envdbi_adapter_create(p, &cr, &a, &b);
	} else if (strcmp(op, "mint") == 0) {
		rc = envdbi_adapter_mint(p, &ref, &mr, &sec, &a);
	} else if (strcmp(op, "drop") == 0) {
		rc = envdbi_adapter_drop(p, &ref);
	} else if (strcmp(op, "revoke") == 0) {
		rc = envdbi_adapter_revoke(p, &ref, ENVDB_AUTH_FULL_ACCESS, "");
	} else {
		ck_assert_str_eq(op, "probe");
		sec = envdbi_secret_new("probe-secret-7f3a9c", 19);
		ck_assert_ptr_nonnull(sec);
		rc = envdbi_adapter_probe(p, &ref, sec);
	}
	if (rc != ENVDB_OK) {
		/* nothing is handed out on failure */
		ck_assert_ptr_null(a);
		ck_assert_ptr_null(b);
		if (strcmp(op, "probe") != 0)
			ck_assert_ptr_null(sec);
	}
	free(a);
	free(b);
	envdbi_secret_free(sec);
	return rc;
}

/* The last error is `status` and contains every fragment given. */
static void expect(int rc, int status, const char *what, const char *frag1, const char *frag2)
{
	const envdb_error *e = envdb_error_last();

	ck_assert_msg(rc == status, "%s: status %d (%s), want %d; message: %s", what, rc,
		      envdb_status_str(rc), status, e->message);
	ck_assert_int_eq(e->status, status);
	ck_assert_msg(strncmp(e->message, "plugin hostile: ", 16) == 0,
		      "%s: the message does not name the plugin: %s", what, e->message);
	ck_assert_msg(frag1 == NULL || strstr(e->message, frag1) != NULL,
		      "%s: message lacks \"%s\": %s", what, frag1, e->message);
	ck_assert_msg(frag2 == NULL || strstr(e->message, frag2) != NULL,
		      "%s: message lacks \"%s\": %s", what, frag2, e->message);
	ck_assert_uint_lt(strlen(e->message), 2048);
}

/* The host still works: a well-behaved provisioning succeeds and resolves. */
static void assert_host_healthy(envdb_ctx *ctx, const char *slug)
{
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	envdb_connection *c = NULL;

	mode(NULL);
	o.env_type = "development";
	o.created_by = "alice";
	ck_assert_msg(envdb_env_provision(NULL, ctx, "acme", slug, &o) == ENVDB_OK,
		      "provision after misbehaviour: %s", envdb_error_last()->message);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", slug, "alice"), ENVDB_OK);
	ck_assert_ptr_nonnull(c->secret);
	envdb_connection_free(c);
}

static const char *const all_ops[] = {"database_name", "create", "mint", "drop", "revoke",
				      "probe"};
#define N_OPS (sizeof(all_ops) / sizeof(all_ops[0]))

START_TEST(test_reports_without_a_message)
{
	envdb_ctx *ctx = open_ctx();
	char m[64], what[96];
	size_t i;

	for (i = 0; i < N_OPS; i++) {
		const char *op = all_ops[i];
		int rc;

		snprintf(m, sizeof(m), "%s silent", op);
		mode(m);
		snprintf(what, sizeof(what), "%s silent", op);
		rc = call_op(ctx, op);
		expect(rc, ENVDB_ERR_UNAVAILABLE, what, op, "without a report");

		snprintf(m, sizeof(m), "%s empty", op);
		mode(m);
		rc = call_op(ctx, op);
		expect(rc, ENVDB_ERR_UNAVAILABLE, m, op, "with an empty report");

		snprintf(m, sizeof(m), "%s badstatus", op);
		mode(m);
		rc = call_op(ctx, op);
		expect(rc, ENVDB_ERR_GENERIC, m, op, "status -1000");

		snprintf(m, sizeof(m), "%s positive", op);
		mode(m);
		rc = call_op(ctx, op);
		expect(rc, ENVDB_ERR_GENERIC, m, op, "status 7");

		snprintf(m, sizeof(m), "%s huge", op);
		mode(m);
		rc = call_op(ctx, op);
		expect(rc, ENVDB_ERR_UNAVAILABLE, m, "plugin hostile: hostile: xxxx", NULL);
		ck_assert_str_eq(envdb_error_last()->native_code, "HUGE");
	}
	assert_host_healthy(ctx, "after-reports");
	envdb_close(ctx);
}
END_TEST

START_TEST(test_wrong_sizes_and_missing_outputs)
{
	static const char *const buffered[] = {"database_name", "create", "mint"};
	static const char *const missing[] = {"name", "url", "secret"};
	envdb_ctx *ctx = open_ctx();
	char m[64];
	size_t i;

	for (i = 0; i < 3; i++) {
		const char *op = buffered[i];

		snprintf(m, sizeof(m), "%s grow_struct", op);
		mode(m);
		expect(call_op(ctx, op), ENVDB_ERR_GENERIC, m, "changed output buffer 1's descriptor",
		       op);
		snprintf(m, sizeof(m), "%s shrink_struct", op);
		mode(m);
		expect(call_op(ctx, op), ENVDB_ERR_GENERIC, m, "changed output buffer 1's descriptor",
		       op);
		snprintf(m, sizeof(m), "%s swap_data", op);
		mode(m);
		expect(call_op(ctx, op), ENVDB_ERR_GENERIC, m, "changed output buffer 1's descriptor",
		       op);
		snprintf(m, sizeof(m), "%s len_overflow", op);
		mode(m);
		expect(call_op(ctx, op), ENVDB_ERR_GENERIC, m, "-byte value in a", op);
		snprintf(m, sizeof(m), "%s nul_inside", op);
		mode(m);
		expect(call_op(ctx, op), ENVDB_ERR_GENERIC, m, "NUL byte inside", op);
		snprintf(m, sizeof(m), "%s null_output", op);
		mode(m);
		expect(call_op(ctx, op), ENVDB_ERR_GENERIC, m, "succeeded but returned no",
		       missing[i]);
	}
	assert_host_healthy(ctx, "after-sizes");
	envdb_close(ctx);
}
END_TEST

/* The last secret the plugin minted (from its secrets file). */
static void last_secret(char *out, size_t cap)
{
	char line[256] = "";
	FILE *f = fopen(F.secrets, "r");

	ck_assert_ptr_nonnull(f);
	out[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		snprintf(out, cap, "%s", line);
	}
	fclose(f);
	ck_assert_uint_ge(strlen(out), 16);
}

static void assert_nowhere(const char *secret, const char *what)
{
	const envdb_error *e = envdb_error_last();

	fflush(stderr);
	ck_assert_msg(strstr(e->message, secret) == NULL, "%s: secret in the last error: %s",
		      what, e->message);
	ck_assert_msg(e->native_code == NULL || strstr(e->native_code, secret) == NULL,
		      "%s: secret in the native code", what);
	/* not even a part of it cut at a boundary: its first 8 bytes */
	ck_assert_msg(strstr(e->message, "hsec") == NULL || strstr(e->message, secret) == NULL,
		      "%s", what);
	ck_assert_msg(!td_file_contains(F.log, secret, strlen(secret)), "%s: secret in a log line",
		      what);
	ck_assert_msg(!td_file_contains(F.control, secret, strlen(secret)),
		      "%s: secret in the control plane", what);
}

START_TEST(test_secret_in_error_redacted)
{
	static const char *const modes[] = {"mint secret_in_error", "mint secret_late",
					    "mint secret_at_cut"};
	envdb_ctx *ctx = open_ctx();
	char secret[128];
	size_t i;

	for (i = 0; i < 3; i++) {
		int rc;

		mode(modes[i]);
		rc = call_op(ctx, "mint");
		last_secret(secret, sizeof(secret));
		ck_assert_int_eq(rc, ENVDB_ERR_UNAVAILABLE);
		if (i < 2)
			ck_assert_msg(strstr(envdb_error_last()->message, "token [redacted] refused"),
				      "%s: %s", modes[i], envdb_error_last()->message);
		/* at the cut, nothing of the secret survives either */
		if (i == 2) {
			char head[9];

			memcpy(head, secret, 8);
			head[8] = '\0';
			ck_assert_ptr_null(strstr(envdb_error_last()->message, head));
		}
		assert_nowhere(secret, modes[i]);
	}

	/* a secret handed to the plugin (probe), in its report and its log */
	mode("probe secret_in_error");
	ck_assert_int_eq(call_op(ctx, "probe"), ENVDB_ERR_AUTH);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "secret [redacted] rejected"));
	assert_nowhere("probe-secret-7f3a9c", "probe");
	fflush(stderr);
	ck_assert(td_file_contains(F.log, "probing with [redacted]", 23));

	/* through the library: provisioning fails cleanly, nothing is left */
	{
		envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
		envdb_environment **v = NULL;
		size_t n = 0;

		mode("mint secret_in_error");
		o.env_type = "development";
		o.created_by = "alice";
		ck_assert_int_eq(envdb_env_provision(NULL, ctx, "acme", "leaky", &o),
				 ENVDB_ERR_UNAVAILABLE);
		last_secret(secret, sizeof(secret));
		ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "[redacted]"));
		assert_nowhere(secret, "provision");
		ck_assert_int_eq(envdb_env_list(&v, &n, ctx, "acme"), ENVDB_OK);
		ck_assert_uint_eq(n, 0);
		envdb_environment_list_free(v, n);
	}
	assert_host_healthy(ctx, "after-secrets");
	envdb_close(ctx);
}
END_TEST

START_TEST(test_past_the_deadline)
{
	static const char *const ops[] = {"database_name", "create", "mint", "drop", "probe"};
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	envdb_environment **v = NULL;
	envdb_ctx *ctx = open_ctx();
	size_t i, n = 0;
	char m[64];

	envdbi_host_set_call_timeout_ms(200);
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		snprintf(m, sizeof(m), "%s slow", ops[i]);
		mode(m);
		expect(call_op(ctx, ops[i]), ENVDB_ERR_TIMEOUT, m, "did not finish within its deadline",
		       ops[i]);
	}
	/* through the library: the slow create times out and is rolled back */
	mode("create slow");
	o.env_type = "development";
	o.created_by = "alice";
	ck_assert_int_eq(envdb_env_provision(NULL, ctx, "acme", "slow", &o), ENVDB_ERR_TIMEOUT);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "deadline"));
	ck_assert_int_eq(envdb_env_list(&v, &n, ctx, "acme"), ENVDB_OK);
	ck_assert_uint_eq(n, 0);
	envdb_environment_list_free(v, n);
	envdbi_host_set_call_timeout_ms(30000);
	assert_host_healthy(ctx, "after-deadline");
	envdb_close(ctx);
}
END_TEST

/* The deadline is the manifest's call_timeout_ms of the plugin (not the
 * process-wide 30 s), and a timeout names it. */
START_TEST(test_call_timeout_from_manifest)
{
	char text[3 * PATH_MAX + 1024], *at;
	FILE *f;
	size_t n;
	envdb_ctx *ctx;
	struct timespec t0, t1;
	int64_t ms;

	/* Without it: the process-wide deadline, named as the default. */
	envdbi_host_set_call_timeout_ms(200);
	ctx = open_ctx();
	mode("create slow");
	expect(call_op(ctx, "create"), ENVDB_ERR_TIMEOUT, "create",
	       "call_timeout_ms 200, the default", "set call_timeout_ms on the plugin in the manifest");
	envdb_close(ctx);

	/* With it: that deadline, whatever the process-wide one says. */
	f = fopen(F.manifest, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(text, 1, sizeof(text) - 64, f);
	fclose(f);
	text[n] = '\0';
	at = strstr(text, "hostile.so\n");
	ck_assert_ptr_nonnull(at);
	at += strlen("hostile.so\n");
	memmove(at + strlen("    call_timeout_ms: 1500\n"), at, strlen(at) + 1);
	memcpy(at, "    call_timeout_ms: 1500\n", strlen("    call_timeout_ms: 1500\n"));
	write_text(F.manifest, text);
	ctx = open_ctx();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	expect(call_op(ctx, "create"), ENVDB_ERR_TIMEOUT, "create",
	       "did not finish within its deadline", "call_timeout_ms 1500, set in the manifest");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ck_assert_msg(ms >= 1500, "the call gave up after %lld ms, before the manifest's 1500",
		      (long long)ms);
	/* A fast call is unaffected. */
	mode("");
	ck_assert_int_eq(call_op(ctx, "database_name"), ENVDB_OK);
	envdb_close(ctx);
}
END_TEST

static Suite *hostile_suite(void)
{
	Suite *s = suite_create("hostile plugins");
	TCase *tc = tcase_create("hostile");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reports_without_a_message);
	tcase_add_test(tc, test_wrong_sizes_and_missing_outputs);
	tcase_add_test(tc, test_secret_in_error_redacted);
	tcase_add_test(tc, test_past_the_deadline);
	tcase_add_test(tc, test_call_timeout_from_manifest);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(hostile_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
