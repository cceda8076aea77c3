/*
 * core/context.c — the envdb context: open a manifest, load its plugins,
 * open the control plane; plugin information; the library version.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "resolve.h"
#include "store.h"

#define OPEN_FLAGS_KNOWN                                                                  \
	(ENVDB_OPEN_NO_STORE | ENVDB_OPEN_CREATE | ENVDB_OPEN_CHECK_ONLY | ENVDB_OPEN_SNAPSHOT)

const char *envdb_version(void)
{
	return PACKAGE_VERSION;
}

int envdb_open(envdb_ctx **out, const char *manifest_path, unsigned flags)
{
	envdb_ctx *ctx = NULL;
	int rc;

	if (out == NULL || manifest_path == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "envdb_open: NULL argument");
	*out = NULL;
	if (flags & ~(unsigned)OPEN_FLAGS_KNOWN)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "envdb_open: unknown flags 0x%x",
				    flags & ~(unsigned)OPEN_FLAGS_KNOWN);
	if (flags & ENVDB_OPEN_CHECK_ONLY)
		flags |= ENVDB_OPEN_NO_STORE;
	if ((flags & ENVDB_OPEN_SNAPSHOT) && (flags & ENVDB_OPEN_CREATE))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "envdb_open: a snapshot cannot create the control plane");
	envdb_error_clear();

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "envdb_open: out of memory");
	if ((rc = envdbi_manifest_load(&ctx->manifest, manifest_path)) != ENVDB_OK)
		goto fail;
	rc = envdbi_plugins_load_ex(&ctx->plugins, ctx->manifest,
				    (flags & ENVDB_OPEN_CHECK_ONLY) ? ENVDBI_LOAD_NO_INIT : 0);
	if (rc != ENVDB_OK)
		goto fail;
	if (ctx->manifest->default_encryptor != NULL)
		ctx->encryptor = envdbi_plugins_find(ctx->plugins, ctx->manifest->default_encryptor,
						     ENVDB_PLUGIN_ENCRYPTOR);
	if (!(flags & ENVDB_OPEN_NO_STORE)) {
		rc = envdbi_store_open(&ctx->store, ctx->manifest,
				       flags & (ENVDB_OPEN_CREATE | ENVDB_OPEN_SNAPSHOT));
		if (rc != ENVDB_OK)
			goto fail;
		for (size_t i = 0; i < envdbi_plugins_count(ctx->plugins); i++)
			envdbi_plugin_set_deployment(envdbi_plugins_at(ctx->plugins, i),
						     envdbi_store_deployment_id(ctx->store));
	}
	/* The resolve cache (resolve.c) is created on first use from
	 * manifest->cache_size / cache_ttl_ms; it stays NULL until then.
	 * envdb_close() frees it before closing the store. */
	envdb_error_clear(); /* warnings about skipped plugins are not errors */
	*out = ctx;
	return ENVDB_OK;
fail:
	envdb_close(ctx);
	return rc;
}

void envdb_close(envdb_ctx *ctx)
{
	if (ctx == NULL)
		return;
	/* Keep the last error: closing after a failure must not erase it. */
	envdbi_cache_free(ctx->cache); /* flushes last_accessed_at: before the store */
	envdbi_store_close(ctx->store);
	envdbi_plugins_free(ctx->plugins);
	envdbi_manifest_free(ctx->manifest);
	free(ctx);
}

size_t envdb_plugin_count(const envdb_ctx *ctx)
{
	return ctx ? envdbi_plugins_count(ctx->plugins) : 0;
}

/* Store `value` in member m of *info only when the caller's struct has it. */
#define INFO_SET(info, m, value)                                  \
	do {                                                      \
		if (ENVDB_STRUCT_HAS(info, envdb_plugin_info, m)) \
			(info)->m = (value);                      \
	} while (0)

int envdb_plugin_get(envdb_plugin_info *info, const envdb_ctx *ctx, size_t i)
{
	const envdb_plugin_descriptor *d;
	envdbi_plugin *p;

	if (info == NULL || ctx == NULL || info->struct_size < sizeof(size_t))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "envdb_plugin_get: NULL argument or struct_size not set");
	p = envdbi_plugins_at(ctx->plugins, i);
	if (p == NULL)
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				    "plugin #%zu: not loaded (%zu loaded)", i,
				    envdbi_plugins_count(ctx->plugins));
	d = envdbi_plugin_descriptor(p);
	INFO_SET(info, name, envdbi_plugin_name(p));
	INFO_SET(info, path, envdbi_plugin_path(p));
	INFO_SET(info, version, d->version ? d->version : "");
	INFO_SET(info, description, d->description ? d->description : "");
	INFO_SET(info, kind, envdbi_plugin_kind(p));
	INFO_SET(info, flags, d->flags);
	INFO_SET(info, abi_major, d->abi_major);
	INFO_SET(info, abi_minor, d->abi_minor);
	/* From the operations table: what the plugin can actually do. */
	INFO_SET(info, capabilities, envdbi_plugin_capabilities(p));
	return ENVDB_OK;
}

const char *envdb_manifest_path(const envdb_ctx *ctx)
{
	return ctx && ctx->manifest ? ctx->manifest->path : NULL;
}

const char *envdb_plugin_dir(const envdb_ctx *ctx)
{
	return ctx ? envdbi_plugin_dir(ctx->manifest) : NULL;
}

const char *envdb_deployment_id(const envdb_ctx *ctx)
{
	return ctx && ctx->store ? envdbi_store_deployment_id(ctx->store) : NULL;
}

const char *envdb_control_plane_path(const envdb_ctx *ctx)
{
	return ctx && ctx->manifest ? ctx->manifest->control_plane : NULL;
}

const char *envdb_control_plane_describe(const envdb_ctx *ctx)
{
	if (ctx == NULL)
		return NULL;
	if (ctx->store != NULL)
		return envdbi_store_describe(ctx->store);
	if (ctx->manifest == NULL)
		return NULL;
	return ctx->manifest->control_plane ? ctx->manifest->control_plane
					    : ctx->manifest->control_plane_desc;
}
