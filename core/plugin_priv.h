/*
 * core/plugin_priv.h — the loaded-plugin record shared by loader.c (which
 * opens, validates, initialises and unloads plugins) and host.c (which
 * implements the host services and every call into a plugin).  Private to
 * those two files; the rest of the core sees envdbi_plugin as opaque.
 */
#ifndef ENVDB_PLUGIN_PRIV_H
#define ENVDB_PLUGIN_PRIV_H

#include <pthread.h>

#include "internal.h"

/* What host services receive as their first argument. */
struct envdb_host_ctx {
	envdbi_plugin *plugin;
};

struct envdbi_plugin {
	char *name; /* manifest name, equal to the descriptor's; owned */
	char *path; /* absolute path of the shared object; owned */
	uint32_t kind;
	void *handle; /* lt_dlhandle (loader.c only) */
	int fd;       /* the checked file, open while loaded (loader.c only); -1: none */
	/* Zero-extended copies of the plugin's structs: a member the plugin's
	 * struct_size does not cover reads as 0/NULL, so the rest of the host
	 * can use them without ENVDB_STRUCT_HAS at every access.  Strings and
	 * functions they point to live in the plugin and are valid while it
	 * is loaded. */
	envdb_plugin_descriptor desc;
	union {
		envdb_adapter_ops adapter;
		envdb_encryptor_ops encryptor;
	} ops;
	uint64_t caps;
	void *instance;   /* from init; owned by the plugin, released by fini */
	bool initialized; /* init succeeded; fini is due */
	bool thread_safe; /* ENVDB_PLUGIN_THREAD_SAFE: calls are not serialized */
	bool lock_ready;
	int64_t call_timeout_ms; /* the manifest's, 0: the process-wide one */
	pthread_mutex_t lock; /* serializes calls unless thread_safe */
	/* The deployment id of the context's control plane ("" without one):
	 * host->deployment_id() and the db_ref / create_request the host hands
	 * the plugin carry it.  Set once, before the first operation. */
	char deployment_id[37];
	envdb_host host;      /* the services table handed to init */
	envdb_host_ctx hctx;
	/* Where each secret configuration value came from (the manifest's
	 * `<key>_file` path, made absolute, or `<key>_env` variable name), for
	 * host->config_secret.  Never the value.  Owned. */
	struct envdbi_secret_source {
		const char *key; /* the declared name, static in the plugin */
		bool is_file;
		char *source;
	} *secret_sources;
	size_t n_secret_sources;
	const void *module_key; /* the module's descriptor address (loader.c) */
	bool module_counted;    /* counted as a user of its module's module_load */
};

/* host.c */

/** Fill p->host (and p->hctx) with the host services. */
void envdbi_host_prepare(envdbi_plugin *p);
/** Call the plugin's init under the call deadline, serialized with every
 * other init/fini.  On failure the last error reads "init failed: <the
 * plugin's report>" with the plugin's status and native code (the caller
 * adds the plugin's name and path). */
int envdbi_host_init(envdbi_plugin *p, const envdb_config *cfg);
/** Call fini if init succeeded. */
void envdbi_host_fini(envdbi_plugin *p);
/** The descriptor's module_load / module_unload (ABI 1.1), when present,
 * serialized with init and fini.  module_load's failure reads
 * "module_load failed: <the plugin's report>". */
int envdbi_host_module_load(envdbi_plugin *p);
void envdbi_host_module_unload(envdbi_plugin *p);

/* loader.c */

/** Read the secret configuration value `key` of `p` again, from the file
 * or environment variable the manifest named.  ENVDB_ERR_NOT_FOUND when
 * the manifest gave no such secret; the last error says why otherwise. */
int envdbi_plugin_secret_read(const envdbi_plugin *p, const char *key, envdbi_secret **out);

#endif /* ENVDB_PLUGIN_PRIV_H */
