/*
 * envdb/envdb-loader.h — libenvdb's plugin loader, for programs that host
 * one plugin themselves (envdb-conformance is one): find the plugin as a
 * manifest or a command line names it, open and validate it exactly as
 * envdb does — file and directory trust checks, entry symbol, descriptor,
 * ABI negotiation, declared configuration keys, secret references — and
 * hand back its descriptor and its configuration, without calling init.
 * The caller then creates its own instances with its own envdb_host.
 *
 * Conventions as in <envdb/envdb.h>: an int status, out-parameters first,
 * envdb_error_last() says why on failure; strings returned are owned by
 * the loader handle and valid until envdb_loader_close().  A handle is
 * used by one thread at a time.
 *
 * Introduced in libenvdb 0.1 (plugin ABI 1.1).
 */
#ifndef ENVDB_ENVDB_LOADER_H
#define ENVDB_ENVDB_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include <envdb/envdb.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One opened (and validated, not initialised) plugin. */
typedef struct envdb_loader envdb_loader;

/**
 * Open the plugin a manifest lists under `plugin_name`, with the
 * configuration the manifest gives it.  The manifest is read and checked
 * as envdb reads it (its plugin_path and plugin_dir included); the other
 * plugins it lists are not opened.
 *
 * @param out           receives the handle (NULL on failure); owned by the
 *                      caller, freed with envdb_loader_close()
 * @param manifest_path borrowed
 * @param plugin_name   borrowed
 * @return ENVDB_OK; ENVDB_ERR_CONFIG for a bad manifest or plugin;
 *         ENVDB_ERR_NOT_FOUND when the manifest lists no such plugin;
 *         ENVDB_ERR_MISUSE for NULL arguments.
 */
ENVDB_EXPORT int envdb_loader_open_manifest(envdb_loader **out, const char *manifest_path,
					    const char *plugin_name);

/**
 * Open the plugin file `path` (relative to the current directory) of kind
 * `kind` (an envdb_plugin_kind) under `name` (NULL: the file name without
 * ".so"), with `n` configuration entries keys[i] = values[i], written as in
 * a manifest (a secret key as KEY_file or KEY_env); relative paths in them
 * resolve against the current directory.  Arguments are borrowed.
 *
 * @return as envdb_loader_open_manifest().
 */
ENVDB_EXPORT int envdb_loader_open_file(envdb_loader **out, const char *path, const char *name,
					uint32_t kind, const char *const *keys,
					const char *const *values, size_t n);

/** The plugin's descriptor (a zero-extended copy the loader validated). */
ENVDB_EXPORT const envdb_plugin_descriptor *envdb_loader_descriptor(const envdb_loader *l);

/** The name the plugin was opened under, and its kind. */
ENVDB_EXPORT const char *envdb_loader_name(const envdb_loader *l);
ENVDB_EXPORT uint32_t envdb_loader_kind(const envdb_loader *l);

/** The absolute path of the module file that was opened. */
ENVDB_EXPORT const char *envdb_loader_plugin_path(const envdb_loader *l);

/** The directory relative configuration paths resolve against (the
 * manifest's, or the current directory): the envdb_config.base_dir init
 * gets. */
ENVDB_EXPORT const char *envdb_loader_base_dir(const envdb_loader *l);

/** The manifest's control-plane file (absolute), or NULL for a plugin
 * opened with envdb_loader_open_file() and for a control plane that is not
 * a file (control_plane: {driver: postgresql, ...}). */
ENVDB_EXPORT const char *envdb_loader_control_plane(const envdb_loader *l);

/** The configuration entries as written (secret keys by reference: KEY_file
 * or KEY_env, never their values): their number, and entry i. */
ENVDB_EXPORT size_t envdb_loader_config_count(const envdb_loader *l);
ENVDB_EXPORT const char *envdb_loader_config_key(const envdb_loader *l, size_t i);
ENVDB_EXPORT const char *envdb_loader_config_value(const envdb_loader *l, size_t i);

/** Unload the plugin and free the handle.  NULL is ignored. */
ENVDB_EXPORT void envdb_loader_close(envdb_loader *l);

#ifdef __cplusplus
}
#endif

#endif /* ENVDB_ENVDB_LOADER_H */
