/*
 * bench/bench_plugins.c — workload 5: what it costs to get from a manifest
 * to initialised plugins, against dlopen of the same files.
 *
 * Measured: envdb_open(manifest, ENVDB_OPEN_NO_STORE) — read and parse the
 * YAML manifest, resolve the plugin paths, load each plugin through libltdl,
 * check its entry, descriptor, ABI and configuration, and call its init
 * (the sqlite adapter opens its base directory; the kms encryptor opens its
 * keyring and loads the current key into secure memory).  The manifest
 * names the sqlite adapter and the kms encryptor.  envdb_close() after each
 * load is not timed.
 * Floor: dlopen(RTLD_LAZY | RTLD_LOCAL, what libltdl uses) of the same two
 * .so files; dlclose is not timed.  The libraries they depend on (SQLite,
 * libsodium) are loaded in this process already, for both.
 * Figure: microseconds per load of both plugins.  Target: <= 3 x floor.
 *
 * Environment: ENVDB_BENCH_PLUGIN_LOADS (loads per run, default 200),
 * ENVDB_BENCH_RUNS (default 7), ENVDB_PLUGIN_DIR (set by `make bench`).
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "internal.h"

typedef struct setup {
	char manifest[1200];
	char paths[2][1200];
	int loads;
} setup;

static double lib_once(void *arg, int run)
{
	setup *S = arg;
	double total = 0, t0;
	envdb_ctx *ctx = NULL;
	int i;

	(void)run;
	for (i = 0; i < S->loads; i++) {
		t0 = bench_now();
		if (envdb_open(&ctx, S->manifest, ENVDB_OPEN_NO_STORE) != 0)
			bench_die("open");
		total += bench_now() - t0;
		envdb_close(ctx);
	}
	return total * 1e6 / S->loads;
}

static double floor_once(void *arg, int run)
{
	setup *S = arg;
	double total = 0, t0;
	void *h[2];
	int i, j;

	(void)run;
	for (i = 0; i < S->loads; i++) {
		t0 = bench_now();
		for (j = 0; j < 2; j++) {
			h[j] = dlopen(S->paths[j], RTLD_LAZY | RTLD_LOCAL);
			if (h[j] == NULL) {
				fprintf(stderr, "bench_plugins: dlopen: %s\n", dlerror());
				return -1;
			}
		}
		total += bench_now() - t0;
		dlclose(h[1]);
		dlclose(h[0]);
	}
	return total * 1e6 / S->loads;
}

int main(void)
{
	char dir[1024];
	const char *pdir = getenv("ENVDB_PLUGIN_DIR");
	int runs = bench_runs(bench_quick() ? 3 : 7), rc;
	bench_stats m, f;
	setup S;

	memset(&S, 0, sizeof(S));
	S.loads = (int)bench_env_long("ENVDB_BENCH_PLUGIN_LOADS", bench_quick() ? 50 : 200);
	bench_begin("bench_plugins");
	setenv("ENVDB_LOG_LEVEL", "error", 0);
	if (pdir == NULL || *pdir == '\0') {
		fprintf(stderr, "bench_plugins: ENVDB_PLUGIN_DIR is not set (run it with make bench)\n");
		return 2;
	}
	if (bench_mkdtemp(dir, sizeof(dir), NULL, "plugins") != 0) {
		perror("bench_plugins: mkdtemp");
		return 2;
	}
	bench_manifest(S.manifest, sizeof(S.manifest), dir, "envdb.yaml", NULL);
	bench_init_store(S.manifest); /* the keyring gets its current key */
	snprintf(S.paths[0], sizeof(S.paths[0]), "%s/sqlite.so", pdir);
	snprintf(S.paths[1], sizeof(S.paths[1]), "%s/kms.so", pdir);
	printf("bench_plugins: %d loads per run, %d runs each (interleaved)\n", S.loads, runs);

	if (bench_pair(&m, &f, 1, runs, lib_once, &S, floor_once, &S) != 0)
		return 2;
	bench_ratio("plugin_load", "5 plugin load: manifest + sqlite + kms", "us", &m, &f, "floor",
		    "dlopen(RTLD_LAZY|RTLD_LOCAL) of the same two .so files (sqlite.so, kms.so), "
		    "their dependencies already loaded; dlclose not timed",
		    3.0);
	rc = bench_finish();
	bench_rmtree(dir);
	return rc;
}
