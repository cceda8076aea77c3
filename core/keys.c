/*
 * core/keys.c — key management through an encryptor plugin: list the keys,
 * create one, rotate (create and make current).  The keys themselves never
 * leave the plugin; only their ids do.
 */
#include "config.h"

#include "internal.h"

/* The encryptor named `name`, or the manifest's default one. */
static int find_encryptor(envdbi_plugin **out, envdb_ctx *ctx, const char *name)
{
	envdbi_plugin *p;

	if (ctx == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "keys: no context given");
	if (name == NULL) {
		if (ctx->encryptor == NULL && ctx->manifest->default_encryptor != NULL)
			return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
					    "encryptor %s: not loaded (skipped or failed)",
					    ctx->manifest->default_encryptor);
		if (ctx->encryptor == NULL)
			return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
					    "keys: the manifest lists no encryptor plugin");
		*out = ctx->encryptor;
		return ENVDB_OK;
	}
	p = envdbi_plugins_find(ctx->plugins, name, ENVDB_PLUGIN_ENCRYPTOR);
	if (p == NULL)
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "encryptor %s: not loaded", name);
	*out = p;
	return ENVDB_OK;
}

int envdb_key_list(envdb_ctx *ctx, const char *encryptor, envdb_key_cb cb, void *cb_ctx)
{
	envdbi_plugin *p;
	int rc;

	if (cb == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "envdb_key_list: NULL callback");
	if ((rc = find_encryptor(&p, ctx, encryptor)) != ENVDB_OK)
		return rc;
	return envdbi_encryptor_key_list(p, cb, cb_ctx);
}

int envdb_key_generate(char **key_id, envdb_ctx *ctx, const char *encryptor, int make_current)
{
	envdbi_plugin *p;
	int rc;

	if (key_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "envdb_key_generate: NULL argument");
	*key_id = NULL;
	if ((rc = find_encryptor(&p, ctx, encryptor)) != ENVDB_OK)
		return rc;
	rc = envdbi_encryptor_key_generate(p, make_current, key_id);
	if (rc == ENVDB_OK)
		envdbi_log(ENVDB_LOG_INFO, "encryptor %s: created key %s%s", envdbi_plugin_name(p),
			   *key_id, make_current ? " (now current)" : "");
	return rc;
}

int envdb_key_current(char **key_id, envdb_ctx *ctx, const char *encryptor)
{
	envdbi_plugin *p;
	int rc;

	if (key_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "envdb_key_current: NULL argument");
	*key_id = NULL;
	if ((rc = find_encryptor(&p, ctx, encryptor)) != ENVDB_OK)
		return rc;
	return envdbi_encryptor_current_key(p, key_id);
}
