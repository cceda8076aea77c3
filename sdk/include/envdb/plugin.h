/*
 * envdb/plugin.h — the plugin ABI common to every kind of plugin: the entry
 * symbol, the descriptor a plugin hands to the host, the table of services
 * the host hands to the plugin, configuration, and output buffers.
 *
 * A plugin author includes <envdb/adapter.h> or <envdb/encryptor.h>, which
 * include this file.  Plugins never link against libenvdb: everything they
 * need from the host arrives in envdb_host.
 *
 * Rules every boundary struct follows (see ABI.md, installed with the SDK
 * documents in PREFIX/share/doc/envdb/):
 *  - its first member is `size_t struct_size`, set to sizeof() of the struct
 *    as the writer knows it;
 *  - it only ever grows at its end; each addition is marked with the ABI
 *    minor that added it;
 *  - a reader uses a member only when struct_size covers it
 *    (ENVDB_STRUCT_HAS()).
 *
 * Versioning: a plugin is accepted when its abi_major equals the host's
 * ENVDB_ABI_MAJOR and the abi_minor it requires is not newer than the host's.
 *
 * Introduced in ABI 1.0.
 */
#ifndef ENVDB_PLUGIN_H
#define ENVDB_PLUGIN_H

#if !defined(__cplusplus) && (!defined(__STDC_VERSION__) || __STDC_VERSION__ < 199901L)
#error "the envdb plugin headers need C99 or later (inline functions, <stdint.h>): use -std=c99 or newer"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <envdb/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENVDB_ABI_MAJOR 1
#define ENVDB_ABI_MINOR 1

/** The one symbol a plugin exports.  Its name carries the ABI major. */
#define ENVDB_PLUGIN_ENTRY_SYMBOL "envdb_plugin_entry_v1"

/** The length of a message (host->error, host->log and their 1.1 forms)
 * that the host keeps whole: up to this many bytes, terminating NUL
 * included, reach the last error and the log unchanged; a longer message is
 * truncated, never refused.  Added in ABI 1.1. */
#define ENVDB_MESSAGE_MAX 1024

/** True when a struct of the given size (as written by its producer) covers
 * member `m` of struct type `type`. */
#define ENVDB_STRUCT_HAS(ptr, type, m)                                         \
	((ptr) != NULL &&                                                       \
	 (ptr)->struct_size >= offsetof(type, m) + sizeof(((type *)0)->m))

#if defined(__GNUC__) || defined(__clang__)
#define ENVDB_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define ENVDB_EXPORT __attribute__((visibility("default")))
#else
#define ENVDB_PRINTF(fmt, args)
#define ENVDB_EXPORT
#endif

/* ------------------------------------------------------------------------ */
/* Kinds, flags                                                              */
/* ------------------------------------------------------------------------ */

enum envdb_plugin_kind {
	ENVDB_PLUGIN_ADAPTER = 1,   /**< ops point to an envdb_adapter_ops */
	ENVDB_PLUGIN_ENCRYPTOR = 2  /**< ops point to an envdb_encryptor_ops */
};

enum envdb_plugin_flags {
	/** Calls on one instance may run concurrently; without this flag the host
	 * serializes every call on an instance behind a lock. */
	ENVDB_PLUGIN_THREAD_SAFE = 1u << 0,
	/** The plugin talks to a remote service: it must honour the operation's
	 * deadline (host->deadline_ms(), or host->call_deadline_ms() from its
	 * own threads). */
	ENVDB_PLUGIN_REMOTE = 1u << 1
};

enum envdb_log_level {
	ENVDB_LOG_ERROR = 0,
	ENVDB_LOG_WARNING = 1,
	ENVDB_LOG_INFO = 2,
	ENVDB_LOG_DEBUG = 3
};

/* ------------------------------------------------------------------------ */
/* Output buffers: "call once for the size, once for the data"               */
/* ------------------------------------------------------------------------ */

/**
 * A caller-owned output buffer.  The caller sets data/cap (data may be NULL
 * when cap is 0).  The callee writes at most cap bytes, including a
 * terminating NUL for text, and sets len to the number of bytes of the value
 * (without the NUL).  When cap is too small the callee writes nothing, sets
 * len to the required length and returns ENVDB_ERR_BUFFER_TOO_SMALL; the host
 * then calls again with a buffer of at least len + 1 bytes.  Operations are
 * written so that calling them twice is harmless (see each operation).
 *
 * Buffers that receive secrets are allocated by the host with its secure
 * allocator; the plugin must not copy a secret anywhere else that outlives
 * the call (or must wipe it with host->secure_free memory).
 */
typedef struct envdb_buffer {
	size_t struct_size;
	char *data;   /**< borrowed for the call; owned by the caller */
	size_t cap;   /**< bytes available at data */
	size_t len;   /**< out: length of the value, or the length required */
} envdb_buffer;

/** Copy `len` bytes of `src` plus a NUL into `buf`, following the protocol
 * above.  A helper for plugin authors; it needs nothing from the host. */
static inline int envdb_buffer_set(envdb_buffer *buf, const void *src, size_t len)
{
	if (buf == NULL)
		return ENVDB_ERR_MISUSE;
	buf->len = len;
	if (buf->data == NULL || buf->cap < len + 1)
		return ENVDB_ERR_BUFFER_TOO_SMALL;
	if (len > 0)
		memcpy(buf->data, src, len);
	buf->data[len] = '\0';
	return ENVDB_OK;
}

static inline int envdb_buffer_set_str(envdb_buffer *buf, const char *s)
{
	return envdb_buffer_set(buf, s, s ? strlen(s) : 0);
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

enum envdb_config_key_flags {
	/** The key must be present in the manifest. */
	ENVDB_CONFIG_REQUIRED = 1u << 0,
	/** The value is a secret.  The manifest may not give it inline: it gives
	 * `<name>_file: PATH` or `<name>_env: VARIABLE` instead, and the host reads
	 * it and passes it to init under `<name>`, in secure memory that is wiped
	 * as soon as init returns. */
	ENVDB_CONFIG_SECRET = 1u << 1
};

/** One configuration key a plugin accepts.  A plugin publishes an array of
 * these, terminated by an entry whose name is NULL.  Any key the manifest
 * gives that is not declared here is refused by the host. */
typedef struct envdb_config_key {
	size_t struct_size;
	const char *name;        /**< static; [a-z0-9_]+ */
	const char *description; /**< static; one line, shown by `envdb plugins` */
	uint32_t flags;          /**< envdb_config_key_flags */
} envdb_config_key;

/** One configuration entry as given by the manifest (scalars only). */
typedef struct envdb_config_entry {
	size_t struct_size;
	const char *key;   /**< borrowed for the duration of init */
	const char *value; /**< borrowed for the duration of init; never NULL */
} envdb_config_entry;

/** The configuration passed to init.  Valid only during init: copy what
 * you keep. */
typedef struct envdb_config {
	size_t struct_size;
	const envdb_config_entry *entries;
	size_t n_entries;
	/** Directory of the manifest, for resolving relative paths in values. */
	const char *base_dir;
} envdb_config;

/** Look up a key in a configuration; NULL when absent. */
static inline const char *envdb_config_get(const envdb_config *cfg, const char *key)
{
	size_t i;
	if (cfg == NULL || key == NULL)
		return NULL;
	for (i = 0; i < cfg->n_entries; i++)
		if (cfg->entries[i].key && strcmp(cfg->entries[i].key, key) == 0)
			return cfg->entries[i].value;
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Host services                                                             */
/* ------------------------------------------------------------------------ */

/** Opaque host state; passed back to every host service. */
typedef struct envdb_host_ctx envdb_host_ctx;

typedef void *(*envdb_host_alloc_fn)(envdb_host_ctx *ctx, size_t size);
typedef void *(*envdb_host_realloc_fn)(envdb_host_ctx *ctx, void *ptr, size_t size);
typedef void (*envdb_host_free_fn)(envdb_host_ctx *ctx, void *ptr);
typedef void (*envdb_host_log_fn)(envdb_host_ctx *ctx, int level, const char *fmt, ...)
	ENVDB_PRINTF(3, 4);
typedef int (*envdb_host_error_fn)(envdb_host_ctx *ctx, int status, const char *native_code,
				   const char *fmt, ...) ENVDB_PRINTF(4, 5);
typedef int64_t (*envdb_host_time_fn)(envdb_host_ctx *ctx);
typedef int (*envdb_host_random_fn)(envdb_host_ctx *ctx, void *buf, size_t len);

/* ABI 1.1 service types. */

/**
 * The context of one operation (ABI 1.1): its error sink, its deadline and
 * its cancellation flag.  Opaque, owned by the host.  A plugin obtains the
 * context of the operation running on the calling thread with
 * host->call_current() and may hand the pointer to its own worker threads;
 * it stays valid until the operation returns to the host, so the plugin
 * joins (or stops using it in) every worker before it returns.  Every call_*
 * service may be called from any thread while the context is valid.
 */
typedef struct envdb_call envdb_call;

typedef envdb_call *(*envdb_host_call_current_fn)(envdb_host_ctx *ctx);
typedef int (*envdb_host_call_error_fn)(envdb_call *call, int status, const char *native_code,
					const char *fmt, ...) ENVDB_PRINTF(4, 5);
typedef int (*envdb_host_call_verror_fn)(envdb_call *call, int status, const char *native_code,
					 const char *fmt, va_list ap) ENVDB_PRINTF(4, 0);
typedef int64_t (*envdb_host_call_deadline_fn)(envdb_call *call);
typedef int (*envdb_host_call_cancelled_fn)(envdb_call *call);
typedef void (*envdb_host_vlog_fn)(envdb_host_ctx *ctx, int level, const char *fmt, va_list ap)
	ENVDB_PRINTF(3, 0);
typedef int (*envdb_host_verror_fn)(envdb_host_ctx *ctx, int status, const char *native_code,
				    const char *fmt, va_list ap) ENVDB_PRINTF(4, 0);
typedef int (*envdb_host_config_secret_fn)(envdb_host_ctx *ctx, const char *key,
					   envdb_buffer *value);
typedef const char *(*envdb_host_deployment_id_fn)(envdb_host_ctx *ctx);

/**
 * The services the host gives a plugin.  The table and everything it points
 * to are owned by the host and valid from init until fini returns; every
 * service may be called from any thread.
 */
typedef struct envdb_host {
	size_t struct_size;
	uint32_t abi_major;   /**< the host's ABI major */
	uint32_t abi_minor;   /**< the host's ABI minor */
	envdb_host_ctx *ctx;  /**< pass to every service */

	/** Ordinary memory.  alloc returns NULL on failure.  Memory from alloc
	 * is released with free, never with secure_free or libc free(). */
	envdb_host_alloc_fn alloc;
	envdb_host_realloc_fn realloc;
	envdb_host_free_fn free;

	/** Secure memory for secrets: locked (not swapped), guarded, and zeroed
	 * when freed.  Released only with secure_free. */
	envdb_host_alloc_fn secure_alloc;
	envdb_host_free_fn secure_free;

	/** Log a line.  Never pass a secret.  The message is copied. */
	envdb_host_log_fn log;

	/**
	 * Report the detail of an error about to be returned.  `status` is the
	 * envdb_status being returned; `native_code` is the backend's own code
	 * (SQLSTATE, HTTP status, errno name) or NULL.  The message is lowercase,
	 * names the object and operation, includes the cause, and never contains
	 * a secret.  The host copies everything; the last report before the
	 * operation returns wins.  Returns `status`, so a plugin can write
	 * `return host->error(host->ctx, ENVDB_ERR_IO, NULL, "...")`.
	 */
	envdb_host_error_fn error;

	/** Absolute deadline of the current operation on the host's monotonic
	 * clock in milliseconds, or 0 when the operation has none.  Remote
	 * plugins stop and return ENVDB_ERR_TIMEOUT once now_ms() passes it. */
	envdb_host_time_fn deadline_ms;
	/** The host's monotonic clock in milliseconds. */
	envdb_host_time_fn now_ms;
	/** Wall clock, seconds since the epoch (UTC). */
	envdb_host_time_fn wall_s;

	/** Cryptographically secure random bytes.  Returns 0. */
	envdb_host_random_fn random;
	/* Members above are valid for ABI 1.0. */

	/* Added in ABI 1.1.  Read only when ENVDB_STRUCT_HAS(host, envdb_host,
	 * member) (a plugin requiring abi_minor 1 may use them directly). */

	/** The context of the operation running on the calling thread, or NULL
	 * outside an operation (init and fini have one too). */
	envdb_host_call_current_fn call_current;
	/** host->error() for a given operation, from any thread: the report is
	 * kept for that operation whichever thread makes it.  Returns status. */
	envdb_host_call_error_fn call_error;
	/** va_list form of call_error. */
	envdb_host_call_verror_fn call_verror;
	/** The operation's absolute deadline (host monotonic ms) or 0. */
	envdb_host_call_deadline_fn call_deadline_ms;
	/** Non-zero once the host gave up on the operation (its deadline passed
	 * or the process is shutting down): stop and return ENVDB_ERR_TIMEOUT. */
	envdb_host_call_cancelled_fn call_cancelled;
	/** va_list forms of log and error. */
	envdb_host_vlog_fn vlog;
	envdb_host_verror_fn verror;
	/**
	 * Read a secret configuration value again, now, from where the
	 * manifest says it lives (`<key>_file` or `<key>_env`): a rotating
	 * Vault token, an STS credentials file.  `key` is the declared name
	 * (without the suffix); the value goes into *value, a buffer the plugin
	 * allocated with secure_alloc, following the envdb_buffer protocol.
	 * ENVDB_ERR_NOT_FOUND when the manifest gives no such secret key.  May be
	 * called from any thread, at any time between init and fini.
	 */
	envdb_host_config_secret_fn config_secret;
	/**
	 * The deployment id (a lowercase UUID) of the control plane this
	 * instance serves — the value the host also puts in
	 * envdb_db_ref.deployment_id and envdb_create_request.deployment_id —
	 * or NULL when the host has none (a context opened without its control
	 * plane, a test harness).  For the operations that get no db_ref, list()
	 * above all: an adapter with ENVDB_ADAPTER_CAP_DEPLOYMENT lists only
	 * what carries this id.  The string is owned by the host and valid
	 * until fini; it does not change while an operation runs.  Any thread.
	 */
	envdb_host_deployment_id_fn deployment_id;
} envdb_host;

/* ------------------------------------------------------------------------ */
/* Descriptor and entry                                                      */
/* ------------------------------------------------------------------------ */

/**
 * Create the plugin instance.  Called once, serialized, after the descriptor
 * was validated.  `host` stays valid until fini returns; `config` only during
 * the call.  On success store the instance in *instance (owned by the plugin,
 * released by fini) and return 0; on failure report through host->error and
 * return a negative status, leaving nothing allocated.
 */
typedef int (*envdb_plugin_init_fn)(void **instance, const envdb_host *host,
				    const envdb_config *config);
/** Release the instance.  Called once, serialized; no call is in flight. */
typedef void (*envdb_plugin_fini_fn)(void *instance);

/**
 * Module hooks (ABI 1.1), like PKCS#11's C_Initialize/C_Finalize: process-
 * global set-up of the libraries a plugin uses (curl_global_init, a cloud
 * SDK's init).  module_load runs once per process, after the module is
 * loaded and before the first init of any instance; module_unload runs once,
 * after the last fini, before the module is unloaded.  Both are serialized
 * with every other load, init and fini.  `host` is valid for the call only
 * (init receives the instance's own).  A failing module_load (negative
 * status, reported through host->error) refuses the plugin.
 *
 * Background threads: a plugin may start threads in module_load or init; it
 * stops and joins those of an instance in fini and those of the module in
 * module_unload.  No thread of a plugin may call a host service after the
 * fini (or module_unload) that owns it has returned.
 */
typedef int (*envdb_plugin_module_load_fn)(const envdb_host *host);
typedef void (*envdb_plugin_module_unload_fn)(void);

/**
 * What a plugin is.  Static: returned by the entry and never freed.
 */
typedef struct envdb_plugin_descriptor {
	size_t struct_size;
	uint32_t abi_major;        /**< must equal the host's ENVDB_ABI_MAJOR */
	uint32_t abi_minor;        /**< minimum host minor this plugin needs */
	const char *name;          /**< equals the name in the manifest; [a-z0-9_-]+ */
	const char *version;       /**< the plugin's own version, free form */
	const char *description;   /**< one line */
	uint32_t kind;             /**< envdb_plugin_kind */
	uint32_t flags;            /**< envdb_plugin_flags */
	const envdb_config_key *config_keys; /**< terminated by a NULL name; may be NULL */
	envdb_plugin_init_fn init; /**< required */
	envdb_plugin_fini_fn fini; /**< required */
	/** envdb_adapter_ops or envdb_encryptor_ops, per kind.  Static. */
	const void *ops;
	/* Members above are valid for ABI 1.0. */

	/* Added in ABI 1.1; the host reads them only when struct_size covers
	 * them. */
	envdb_plugin_module_load_fn module_load;     /**< optional */
	envdb_plugin_module_unload_fn module_unload; /**< optional */
	/** Adapters: the URL schemes of the databases this plugin serves
	 * ("file", "libsql", "postgresql"), a static NULL-terminated array, or
	 * NULL.  The v4 -> v5 migration picks the adapter for a legacy URL by
	 * its scheme from these lists. */
	const char *const *url_schemes;
} envdb_plugin_descriptor;

/**
 * The entry: a pure probe.  It allocates nothing, touches no global state
 * and returns a pointer to a static descriptor (never NULL for a working
 * plugin).  Looked up as ENVDB_PLUGIN_ENTRY_SYMBOL, and as
 * `<module>_LTX_envdb_plugin_entry_v1` for libtool-prefixed modules.
 */
typedef const envdb_plugin_descriptor *(*envdb_plugin_entry_fn)(void);

/** Write the entry of a plugin whose descriptor is `desc`:
 *     ENVDB_PLUGIN_DEFINE(my_descriptor)
 */
#define ENVDB_PLUGIN_DEFINE(desc)                                              \
	ENVDB_EXPORT const envdb_plugin_descriptor *envdb_plugin_entry_v1(void); \
	ENVDB_EXPORT const envdb_plugin_descriptor *envdb_plugin_entry_v1(void)  \
	{                                                                       \
		return &(desc);                                                 \
	}

#ifdef __cplusplus
}
#endif

#endif /* ENVDB_PLUGIN_H */
