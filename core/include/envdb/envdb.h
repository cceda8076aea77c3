/*
 * envdb/envdb.h — the public API of libenvdb: open a context from a
 * manifest, then provision, rotate, resolve and reconcile environments.
 *
 * Conventions (libgit2-style):
 *  - every function returns an int status (0 or a negative envdb_status);
 *    out-parameters come first;
 *  - on failure, envdb_error_last() describes the error: it is thread-local,
 *    never NULL, and valid until the next envdb call on the same thread;
 *  - ownership is stated at every pointer: "borrowed" (valid for the call),
 *    "owned by the caller" (free it with the named function);
 *  - option structs start with struct_size and have an _INIT macro;
 *  - a context may be used from several threads; calls are serialized where
 *    needed inside the library.
 *
 * Introduced in libenvdb 0.1 (plugin ABI 1.0).
 */
#ifndef ENVDB_ENVDB_H
#define ENVDB_ENVDB_H

#include <stddef.h>
#include <stdint.h>

#include <envdb/status.h>
#include <envdb/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Errors and versions                                                       */
/* ------------------------------------------------------------------------ */

typedef struct envdb_error {
	int status;              /**< the envdb_status of the last failure, or 0 */
	const char *message;     /**< never NULL; "" when there was no error */
	const char *native_code; /**< backend code (SQLSTATE, HTTP status) or NULL */
} envdb_error;

/** The last error of the calling thread.  Never NULL.  Owned by the library,
 * valid until the next envdb call on this thread. */
ENVDB_EXPORT const envdb_error *envdb_error_last(void);

/** Clear the calling thread's last error. */
ENVDB_EXPORT void envdb_error_clear(void);

/** A short constant name for a status ("not found", "exists", ...). */
ENVDB_EXPORT const char *envdb_status_str(int status);

/** The library version, e.g. "0.1.0".  Static. */
ENVDB_EXPORT const char *envdb_version(void);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct envdb_ctx envdb_ctx;

enum envdb_open_flags {
	/** Load the manifest and plugins but do not open the control plane
	 * (for `envdb plugins`, `envdb key ...`, `envdb manifest check`). */
	ENVDB_OPEN_NO_STORE = 1u << 0,
	/** Create the control-plane file if it does not exist (`envdb init`). */
	ENVDB_OPEN_CREATE = 1u << 1
};

/**
 * Open a context: parse the manifest at `manifest_path` (borrowed), load
 * and initialise its plugins and open the control plane.  On success *out
 * is owned by the caller and released with envdb_close().
 * Returns ENVDB_ERR_CONFIG for a manifest error (the message names file,
 * line, column and key path), ENVDB_ERR_ABI / ENVDB_ERR_CONFIG /
 * ENVDB_ERR_IO for a critical plugin that cannot be loaded.
 */
ENVDB_EXPORT int envdb_open(envdb_ctx **out, const char *manifest_path, unsigned flags);

/** Release a context and everything it holds.  NULL is allowed. */
ENVDB_EXPORT void envdb_close(envdb_ctx *ctx);

/** Information about one loaded plugin.  Strings owned by the context,
 * valid until envdb_close(). */
typedef struct envdb_plugin_info {
	size_t struct_size;
	const char *name;
	const char *path;
	const char *version;
	const char *description;
	uint32_t kind;          /**< envdb_plugin_kind */
	uint32_t flags;         /**< envdb_plugin_flags */
	uint32_t abi_major;
	uint32_t abi_minor;
	uint64_t capabilities;
} envdb_plugin_info;

/** Number of loaded plugins. */
ENVDB_EXPORT size_t envdb_plugin_count(const envdb_ctx *ctx);

/** Fill *info for the i-th loaded plugin (info->struct_size set by the caller). */
ENVDB_EXPORT int envdb_plugin_get(envdb_plugin_info *info, const envdb_ctx *ctx, size_t i);

/* ---- control plane API: appended below by core/ (environments, ---------- */
/* ---- credentials, members, resolve, reconcile, check, schema) ----------- */

#ifdef __cplusplus
}
#endif

#endif /* ENVDB_ENVDB_H */
