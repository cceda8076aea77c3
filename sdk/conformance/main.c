/*
 * sdk/conformance/main.c — envdb-conformance: run the plugin contract on
 * any adapter or encryptor plugin.
 *
 *   envdb-conformance [OPTIONS] --manifest FILE --plugin NAME
 *   envdb-conformance [OPTIONS] --plugin-path PATH.so --kind adapter|encryptor
 *                     [--plugin NAME] [--config KEY=VALUE ...]
 *
 * The plugin is opened and validated by libenvdb's own loader (the same
 * code `envdb` uses, without calling init), through its installed
 * interface <envdb/envdb-loader.h>; then the kit creates its own instances
 * with an instrumented host and runs the suites.  Output: one
 * line per check ("ok - name", "FAIL - name: detail", "skip - name: why"),
 * then "N passed, N failed".  Exit status 0 when nothing failed, 1 when a
 * check failed, 2 on a usage error, or when --manifest names a live
 * deployment (its control plane exists) and --live was not given: the kit
 * creates and drops databases, and adds keys, where the plugin's
 * configuration points, which is where that deployment's own live.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include <envdb/envdb-loader.h>
#include <envdb/envdb.h>

#include "kit.h"

#if defined(__SANITIZE_ADDRESS__)
#define KIT_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KIT_UNDER_ASAN 1
#endif
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: envdb-conformance [OPTIONS] --manifest FILE --plugin NAME\n"
		"       envdb-conformance [OPTIONS] --plugin-path PATH.so --kind adapter|encryptor\n"
		"                         [--plugin NAME] [--config KEY=VALUE ...]\n"
		"\n"
		"Runs the envdb plugin contract on one plugin and prints one line per check:\n"
		"\"ok - name\", \"FAIL - name: detail\" or \"skip - name: why\", then\n"
		"\"N passed, N failed\".  Exit status: 0 all passed, 1 a check failed, 2 usage.\n"
		"\n"
		"  --manifest FILE      an envdb manifest; --plugin names the plugin to test,\n"
		"                       with the configuration the manifest gives it\n"
		"  --plugin-path PATH   a plugin file (.so); relative to the current directory\n"
		"  --kind KIND          adapter or encryptor (with --plugin-path)\n"
		"  --plugin NAME        the plugin's name (default: the file name without .so)\n"
		"  --config KEY=VALUE   a configuration entry (repeatable); as in a manifest, a\n"
		"                       secret key is given as KEY_file=PATH (mode 0600) or\n"
		"                       KEY_env=VARIABLE, never inline\n"
		"  --threads N          threads of the concurrency checks (default 4)\n"
		"  --iterations N       cycles per thread (default 8)\n"
		"  --no-key-generate    encryptors: do not add keys to the key ring\n"
		"  --no-deadline        remote plugins: skip the deadline checks\n"
		"  --timeout SECONDS    give up (FAIL) when the run takes longer (default 600)\n"
		"  --live               with --manifest: run even though its control plane\n"
		"                       exists (the kit creates and drops scratch databases and\n"
		"                       adds keys where the deployment's own are)\n"
		"  -v, --verbose        details on ok lines, plugin messages as '# ' lines\n"
		"  -h, --help           this text\n"
		"  --version            the envdb version and plugin ABI\n");
}

/* ------------------------------------------------------------------------ */
/* Crashes and hangs become a FAIL line                                      */
/* ------------------------------------------------------------------------ */

static void write_str(const char *s)
{
	ssize_t n = write(STDOUT_FILENO, s, strlen(s));
	(void)n;
}

static void on_fatal(int sig)
{
	const char *what = sig == SIGALRM ? "watchdog: no result within the --timeout (a call "
					    "hangs?) during "
					  : "crash: the plugin crashed (fatal signal) during ";

	write_str("FAIL - ");
	write_str(what);
	write_str(kit_current_op());
	write_str("\n");
	_exit(1);
}

static void install_handlers(unsigned timeout_s)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
#ifndef KIT_UNDER_ASAN
	/* Under AddressSanitizer its own report is worth more than ours. */
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);
	sigaction(SIGILL, &sa, NULL);
#endif
	signal(SIGPIPE, SIG_IGN);
	alarm(timeout_s);
}

/* ------------------------------------------------------------------------ */
/* Loading through libenvdb's loader                                         */
/* ------------------------------------------------------------------------ */

typedef struct run {
	/* command line */
	const char *manifest_path;
	const char *plugin_path;
	const char *plugin_name;
	bool live;
	uint32_t kind;
	const char **cfg_keys, **cfg_values;
	size_t n_cfg;
	kit_options opt;
	/* loaded */
	envdb_loader *loader;
} run;

/* --manifest on a deployment whose control plane exists: the kit's scratch
 * databases and keys go where that deployment's own are.  Say so loudly,
 * on stderr (stdout carries the check lines), naming the location; go on
 * only with --live.  Returns whether to go on. */
static bool live_guard(const run *r)
{
	const envdb_loader *l = r->loader;
	const char *cp = envdb_loader_control_plane(l);
	uint32_t kind = envdb_loader_kind(l);
	size_t i, n = envdb_loader_config_count(l);

	if (cp == NULL || access(cp, F_OK) != 0)
		return true;
	fprintf(stderr,
		"envdb-conformance: WARNING: %s is a live deployment: its control plane %s "
		"exists\n"
		"envdb-conformance: the kit %s with the configuration the manifest gives plugin "
		"%s, which is where that deployment's own %s:\n",
		r->manifest_path, cp,
		kind == ENVDB_PLUGIN_ADAPTER
		    ? "creates and drops scratch databases"
		    : (r->opt.key_generate ? "encrypts and adds keys to the key ring"
					   : "encrypts and decrypts"),
		envdb_loader_name(l), kind == ENVDB_PLUGIN_ADAPTER ? "databases are" : "keys are");
	for (i = 0; i < n; i++)
		fprintf(stderr, "envdb-conformance:     %s: %s\n", envdb_loader_config_key(l, i),
			envdb_loader_config_value(l, i));
	if (n == 0)
		fprintf(stderr, "envdb-conformance:     (no configuration: the plugin's defaults)\n");
	if (r->live) {
		fprintf(stderr, "envdb-conformance: going on (--live)\n");
		return true;
	}
	fprintf(stderr,
		"envdb-conformance: refusing to run there without --live; to test the plugin "
		"apart from the deployment, use --plugin-path PATH --kind KIND --config "
		"KEY=VALUE with a scratch location\n");
	return false;
}

#define LOAD_REFUSED_LIVE 1 /* load(): not a status; live_guard refused */

/* Open the plugin with libenvdb's loader: from the manifest (only this
 * plugin: the others are not under test), or the --plugin-path file with
 * the --config entries as its configuration (secret keys by reference,
 * KEY_file or KEY_env, exactly as in a manifest; relative paths against
 * the current directory). */
static int load(run *r)
{
	int rc;

	if (r->manifest_path != NULL)
		rc = envdb_loader_open_manifest(&r->loader, r->manifest_path, r->plugin_name);
	else
		rc = envdb_loader_open_file(&r->loader, r->plugin_path, r->plugin_name, r->kind,
					    r->cfg_keys, r->cfg_values, r->n_cfg);
	if (rc != ENVDB_OK) {
		/* The loader's own messages start "plugin NAME"; the rest is
		 * about the manifest. */
		const char *msg = envdb_error_last()->message;
		bool manifest = r->manifest_path != NULL && strncmp(msg, "plugin ", 7) != 0;

		kit_fail(manifest ? "load: manifest" : "load: accepted by the envdb loader", "%s",
			 msg);
		return rc;
	}
	if (r->manifest_path != NULL) {
		r->kind = envdb_loader_kind(r->loader);
		if (!live_guard(r))
			return LOAD_REFUSED_LIVE;
	}
	kit_ok("load: accepted by the envdb loader", "%s", envdb_loader_plugin_path(r->loader));
	return ENVDB_OK;
}

static void run_free(run *r)
{
	envdb_loader_close(r->loader);
	free(r->cfg_keys);
	free(r->cfg_values);
}

/* ------------------------------------------------------------------------ */

static int positive(const char *opt, const char *v)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*v == '\0' || *end != '\0' || n <= 0 || n > 1000000) {
		fprintf(stderr, "envdb-conformance: %s needs a positive number, not '%s'\n", opt, v);
		exit(2);
	}
	return (int)n;
}

int main(int argc, char **argv)
{
	run r;
	const envdb_plugin_descriptor *desc;
	union {
		envdb_adapter_ops adapter;
		envdb_encryptor_ops encryptor;
	} ops;
	kit_config cfg;
	const char **keys = NULL, **values = NULL;
	size_t n = 0, i;
	unsigned timeout_s = 600;
	void *inst;
	int a;

	kit_output_init(); /* fd 1 is redirected while plugin code runs */
	memset(&r, 0, sizeof(r));
	memset(&cfg, 0, sizeof(cfg));
	r.opt.threads = 4;
	r.opt.iterations = 8;
	r.opt.key_generate = true;
	r.opt.deadline = true;
	r.cfg_keys = calloc((size_t)argc, sizeof(char *));
	r.cfg_values = calloc((size_t)argc, sizeof(char *));
	if (r.cfg_keys == NULL || r.cfg_values == NULL)
		return 2;
	for (a = 1; a < argc; a++) {
		const char *o = argv[a];
		const char *v = a + 1 < argc ? argv[a + 1] : NULL;
		bool takes = strcmp(o, "--manifest") == 0 || strcmp(o, "--plugin") == 0 ||
			     strcmp(o, "--plugin-path") == 0 || strcmp(o, "--kind") == 0 ||
			     strcmp(o, "--config") == 0 || strcmp(o, "--threads") == 0 ||
			     strcmp(o, "--iterations") == 0 || strcmp(o, "--timeout") == 0;

		if (takes && v == NULL) {
			fprintf(stderr, "envdb-conformance: %s needs a value\n", o);
			return 2;
		}
		if (strcmp(o, "--manifest") == 0) {
			r.manifest_path = v;
		} else if (strcmp(o, "--plugin") == 0) {
			r.plugin_name = v;
		} else if (strcmp(o, "--plugin-path") == 0) {
			r.plugin_path = v;
		} else if (strcmp(o, "--kind") == 0) {
			if (strcmp(v, "adapter") == 0)
				r.kind = ENVDB_PLUGIN_ADAPTER;
			else if (strcmp(v, "encryptor") == 0)
				r.kind = ENVDB_PLUGIN_ENCRYPTOR;
			else {
				fprintf(stderr, "envdb-conformance: --kind is adapter or encryptor, "
						"not '%s'\n", v);
				return 2;
			}
		} else if (strcmp(o, "--config") == 0) {
			char *eq = strchr(v, '=');
			if (eq == NULL || eq == v) {
				fprintf(stderr, "envdb-conformance: --config needs KEY=VALUE, not "
						"'%s'\n", v);
				return 2;
			}
			*eq = '\0';
			r.cfg_keys[r.n_cfg] = v;
			r.cfg_values[r.n_cfg] = eq + 1;
			r.n_cfg++;
		} else if (strcmp(o, "--threads") == 0) {
			r.opt.threads = positive(o, v);
		} else if (strcmp(o, "--iterations") == 0) {
			r.opt.iterations = positive(o, v);
		} else if (strcmp(o, "--timeout") == 0) {
			timeout_s = (unsigned)positive(o, v);
		} else if (strcmp(o, "--no-key-generate") == 0) {
			r.opt.key_generate = false;
		} else if (strcmp(o, "--no-deadline") == 0) {
			r.opt.deadline = false;
		} else if (strcmp(o, "--live") == 0) {
			r.live = true;
		} else if (strcmp(o, "-v") == 0 || strcmp(o, "--verbose") == 0) {
			kit_set_verbose(true);
		} else if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(o, "--version") == 0) {
			printf("envdb-conformance %s (plugin ABI %d.%d)\n", PACKAGE_VERSION,
			       ENVDB_ABI_MAJOR, ENVDB_ABI_MINOR);
			return 0;
		} else {
			fprintf(stderr, "envdb-conformance: unknown argument '%s'\n", o);
			usage(stderr);
			return 2;
		}
		if (takes)
			a++;
	}
	if ((r.manifest_path == NULL) == (r.plugin_path == NULL) ||
	    (r.live && r.manifest_path == NULL) ||
	    (r.manifest_path != NULL && (r.plugin_name == NULL || r.n_cfg > 0 || r.kind != 0)) ||
	    (r.plugin_path != NULL && r.kind == 0)) {
		fprintf(stderr, "envdb-conformance: give either --manifest FILE --plugin NAME, or "
				"--plugin-path PATH --kind KIND [--config KEY=VALUE ...]\n");
		usage(stderr);
		return 2;
	}

	install_handlers(timeout_s);
	if (sodium_init() < 0) {
		kit_fail("setup", "libsodium: initialisation failed");
		kit_summary();
		return 1;
	}
	kit_set_current_op("load");
	if ((a = load(&r)) != ENVDB_OK) {
		if (a == LOAD_REFUSED_LIVE) { /* live_guard said why */
			alarm(0);
			run_free(&r);
			kit_host_cleanup();
			return 2;
		}
		goto done;
	}

	desc = envdb_loader_descriptor(r.loader);
	kit_check_exports(envdb_loader_plugin_path(r.loader));
	if (!kit_check_descriptor(desc, r.kind, NULL, &ops, sizeof(ops)))
		goto done;

	/* The configuration the kit's own instances get: what the loader
	 * checked, as written (secret keys by reference). */
	n = envdb_loader_config_count(r.loader);
	keys = calloc(n + 1, sizeof(char *));
	values = calloc(n + 1, sizeof(char *));
	if (keys == NULL || values == NULL)
		goto done;
	for (i = 0; i < n; i++) {
		keys[i] = envdb_loader_config_key(r.loader, i);
		values[i] = envdb_loader_config_value(r.loader, i);
	}
	if (kit_config_resolve(&cfg, desc, keys, values, n, envdb_loader_base_dir(r.loader)) !=
	    ENVDB_OK)
		goto done;

	kit_set_thread_safe((desc->flags & ENVDB_PLUGIN_THREAD_SAFE) != 0);
	inst = kit_init_checks(desc, &cfg);
	if (inst == NULL) {
		kit_findings_report();
		goto done;
	}
	if (r.kind == ENVDB_PLUGIN_ADAPTER)
		kit_run_adapter(desc, &ops.adapter, inst, &r.opt);
	else
		kit_run_encryptor(desc, &ops.encryptor, inst, &r.opt);
	kit_fini_checks(desc, inst);

done:
	free(keys);
	free(values);
	kit_config_free(&cfg);
	alarm(0);
	run_free(&r);
	kit_graveyard_free();
	a = kit_summary() > 0 ? 1 : 0;
	kit_host_cleanup();
	return a;
}
