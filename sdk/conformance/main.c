/*
 * sdk/conformance/main.c — envdb-conformance: run the plugin contract on
 * any adapter or encryptor plugin.
 *
 *   envdb-conformance [OPTIONS] --manifest FILE --plugin NAME
 *   envdb-conformance [OPTIONS] --plugin-path PATH.so --kind adapter|encryptor
 *                     [--plugin NAME] [--config KEY=VALUE ...]
 *
 * The plugin is opened and validated by libenvdb's own loader (the same
 * code `envdb` uses, without calling init), then the kit creates its own
 * instances with an instrumented host and runs the suites.  Output: one
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

#include "internal.h"
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
	envdbi_manifest *loaded;  /* --manifest */
	envdbi_manifest one;      /* the manifest handed to the loader */
	envdbi_plugin_spec spec;  /* --plugin-path */
	envdbi_kv *kv;
	char *env_names;          /* --config secrets passed by environment */
	envdbi_plugins *set;
} run;

static char *make_absolute(const char *path)
{
	char cwd[PATH_MAX];
	size_t n;
	char *r;

	if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return kit_xstrdup(path);
	n = strlen(cwd) + strlen(path) + 2;
	r = kit_xmalloc(n);
	snprintf(r, n, "%s/%s", cwd, path);
	return r;
}

static char *stem_of(const char *path)
{
	const char *base = strrchr(path, '/');
	char *s, *dot;

	s = kit_xstrdup(base ? base + 1 : path);
	dot = strrchr(s, '.');
	if (dot != NULL && dot != s)
		*dot = '\0';
	return s;
}

/* The manifest the loader gets for --plugin-path: one plugin, the --config
 * entries as its configuration (secret keys by reference, KEY_file or
 * KEY_env, exactly as in a manifest), relative paths against the current
 * directory. */
static int build_path_manifest(run *r)
{
	char cwd[PATH_MAX];
	size_t i;

	if (getcwd(cwd, sizeof(cwd)) == NULL)
		snprintf(cwd, sizeof(cwd), "/");
	memset(&r->one, 0, sizeof(r->one));
	memset(&r->spec, 0, sizeof(r->spec));
	r->one.path = kit_xstrdup("envdb-conformance command line");
	r->one.dir = kit_xstrdup(cwd);
	r->spec.name = r->plugin_name ? kit_xstrdup(r->plugin_name) : stem_of(r->plugin_path);
	r->spec.path = make_absolute(r->plugin_path);
	r->spec.kind = r->kind;
	r->spec.critical = true;
	r->spec.line = r->spec.column = 1;
	r->kv = calloc(r->n_cfg + 1, sizeof(envdbi_kv));
	if (r->kv == NULL)
		return ENVDB_ERR_NOMEM;
	for (i = 0; i < r->n_cfg; i++) {
		r->kv[i].key = kit_xstrdup(r->cfg_keys[i]);
		r->kv[i].value = kit_xstrdup(r->cfg_values[i]);
		r->kv[i].line = r->kv[i].key_line = 1;
		r->kv[i].column = r->kv[i].key_column = (int)i + 1;
	}
	r->spec.config = r->kv;
	r->spec.n_config = r->n_cfg;
	r->one.plugins = &r->spec;
	r->one.n_plugins = 1;
	return ENVDB_OK;
}

#define LOAD_REFUSED_LIVE 1 /* load(): not a status; live_guard refused */

/* --manifest on a deployment whose control plane exists: the kit's scratch
 * databases and keys go where that deployment's own are.  Say so loudly,
 * on stderr (stdout carries the check lines), naming the location; go on
 * only with --live.  Returns whether to go on. */
static bool live_guard(const run *r, const envdbi_plugin_spec *spec)
{
	const char *cp = r->loaded->control_plane;
	size_t i;

	if (access(cp, F_OK) != 0)
		return true;
	fprintf(stderr,
		"envdb-conformance: WARNING: %s is a live deployment: its control plane %s "
		"exists\n"
		"envdb-conformance: the kit %s with the configuration the manifest gives plugin "
		"%s, which is where that deployment's own %s:\n",
		r->manifest_path, cp,
		spec->kind == ENVDB_PLUGIN_ADAPTER
		    ? "creates and drops scratch databases"
		    : (r->opt.key_generate ? "encrypts and adds keys to the key ring"
					   : "encrypts and decrypts"),
		spec->name, spec->kind == ENVDB_PLUGIN_ADAPTER ? "databases are" : "keys are");
	for (i = 0; i < spec->n_config; i++)
		fprintf(stderr, "envdb-conformance:     %s: %s\n", spec->config[i].key,
			spec->config[i].value);
	if (spec->n_config == 0)
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

static int load(run *r, envdbi_plugin **out)
{
	envdbi_plugin_spec *spec = NULL;
	size_t i;
	int rc;

	*out = NULL;
	if (r->manifest_path != NULL) {
		rc = envdbi_manifest_load(&r->loaded, r->manifest_path);
		if (rc != ENVDB_OK) {
			kit_fail("load: manifest", "%s", envdb_error_last()->message);
			return rc;
		}
		for (i = 0; i < r->loaded->n_plugins; i++)
			if (strcmp(r->loaded->plugins[i].name, r->plugin_name) == 0)
				spec = &r->loaded->plugins[i];
		if (spec == NULL) {
			kit_fail("load: manifest", "%s lists no plugin named '%s'", r->manifest_path,
				 r->plugin_name);
			return ENVDB_ERR_NOT_FOUND;
		}
		if (!live_guard(r, spec))
			return LOAD_REFUSED_LIVE;
		/* Only this plugin: the others are not under test. */
		r->one = *r->loaded;
		r->one.plugins = spec;
		r->one.n_plugins = 1;
		spec->critical = true;
		r->kind = spec->kind;
	} else if ((rc = build_path_manifest(r)) != ENVDB_OK) {
		return rc;
	}
	rc = envdbi_plugins_load_ex(&r->set, &r->one, ENVDBI_LOAD_NO_INIT);
	if (rc != ENVDB_OK) {
		kit_fail("load: accepted by the envdb loader", "%s", envdb_error_last()->message);
		return rc;
	}
	*out = envdbi_plugins_at(r->set, 0);
	kit_ok("load: accepted by the envdb loader", "%s", envdbi_plugin_path(*out));
	return ENVDB_OK;
}

static void run_free(run *r)
{
	size_t i;

	envdbi_plugins_free(r->set);
	if (r->loaded != NULL) {
		envdbi_manifest_free(r->loaded);
	} else if (r->one.path != NULL) {
		for (i = 0; i < r->n_cfg; i++) {
			free(r->kv[i].key);
			free(r->kv[i].value);
		}
		free(r->kv);
		free(r->spec.name);
		free(r->spec.path);
		free(r->one.path);
		free(r->one.dir);
	}
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
	envdbi_plugin *p = NULL;
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
	if (envdbi_sodium_init() != ENVDB_OK) {
		kit_fail("setup", "%s", envdb_error_last()->message);
		kit_summary();
		return 1;
	}
	kit_set_current_op("load");
	if ((a = load(&r, &p)) != ENVDB_OK) {
		if (a == LOAD_REFUSED_LIVE) { /* live_guard said why */
			alarm(0);
			run_free(&r);
			kit_host_cleanup();
			return 2;
		}
		goto done;
	}

	desc = envdbi_plugin_descriptor(p);
	kit_check_exports(envdbi_plugin_path(p));
	if (!kit_check_descriptor(desc, r.kind, NULL, &ops, sizeof(ops)))
		goto done;

	/* The configuration the kit's own instances get. */
	if (r.loaded != NULL) {
		const envdbi_plugin_spec *s = &r.one.plugins[0];
		keys = calloc(s->n_config + 1, sizeof(char *));
		values = calloc(s->n_config + 1, sizeof(char *));
		if (keys == NULL || values == NULL)
			goto done;
		for (i = 0; i < s->n_config; i++) {
			keys[i] = s->config[i].key;
			values[i] = s->config[i].value;
		}
		n = s->n_config;
	} else {
		keys = r.cfg_keys;
		values = r.cfg_values;
		n = r.n_cfg;
	}
	if (kit_config_resolve(&cfg, desc, keys, values, n, r.one.dir) != ENVDB_OK)
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
	if (keys != r.cfg_keys)
		free(keys);
	if (values != r.cfg_values)
		free(values);
	kit_config_free(&cfg);
	alarm(0);
	run_free(&r);
	kit_graveyard_free();
	a = kit_summary() > 0 ? 1 : 0;
	kit_host_cleanup();
	return a;
}
