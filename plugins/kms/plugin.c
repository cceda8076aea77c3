/*
 * plugins/kms/plugin.c — the kms encryptor's descriptor, configuration and
 * instance lifetime, and the key-management operations (current_key,
 * key_list, key_generate, health).  The keyring itself is in keyring.c, the
 * ciphertext format in seal.c; see README.md.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "kms.h"

static const envdb_config_key kms_config_keys[] = {
	{.struct_size = sizeof(envdb_config_key),
	 .name = "keyring_dir",
	 .description = "directory of the key files (relative to the manifest; created 0700 if "
			"missing)",
	 .flags = ENVDB_CONFIG_REQUIRED},
	{.struct_size = sizeof(envdb_config_key),
	 .name = "key_protection",
	 .description = "read-only (default): keys stay read-only in guarded, locked memory; "
			"idle: keys are also made inaccessible between operations (two mprotect "
			"calls per encrypt or decrypt)",
	 .flags = 0},
	{.struct_size = sizeof(envdb_config_key), .name = NULL, .description = NULL, .flags = 0},
};

static void kms_fini(void *instance)
{
	kms *k = instance;

	if (k == NULL)
		return;
	kms_ring_close(k);
	if (k->dir != NULL)
		k->host->free(k->host->ctx, k->dir);
	k->host->free(k->host->ctx, k);
}

static int kms_init(void **instance, const envdb_host *host, const envdb_config *cfg)
{
	const char *value = envdb_config_get(cfg, "keyring_dir");
	const char *protection = envdb_config_get(cfg, "key_protection");
	const char *base = ENVDB_STRUCT_HAS(cfg, envdb_config, base_dir) ? cfg->base_dir : NULL;
	char path[PATH_MAX];
	kms *k;
	int n, rc;

	*instance = NULL;
	if (sodium_init() < 0)
		return host->error(host->ctx, ENVDB_ERR_GENERIC, NULL,
				   "libsodium cannot be initialised");
	if (value == NULL || value[0] == '\0')
		return host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				   "configuration keyring_dir: missing (the directory of the key "
				   "files)");
	if (value[0] == '/')
		n = snprintf(path, sizeof(path), "%s", value);
	else if (base != NULL && base[0] == '/')
		n = snprintf(path, sizeof(path), "%s/%s", base, value);
	else
		return host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				   "configuration keyring_dir: relative path '%s' but the manifest "
				   "directory is unknown",
				   value);
	if (n < 0 || (size_t)n >= sizeof(path))
		return host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				   "configuration keyring_dir: path too long");

	if (protection != NULL && strcmp(protection, "read-only") != 0 &&
	    strcmp(protection, "idle") != 0)
		return host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				   "configuration key_protection: '%s' is not read-only or idle",
				   protection);

	k = host->alloc(host->ctx, sizeof(*k));
	if (k == NULL)
		return host->error(host->ctx, ENVDB_ERR_NOMEM, NULL, "out of memory");
	memset(k, 0, sizeof(*k));
	k->protect_idle = protection != NULL && strcmp(protection, "idle") == 0;
	k->host = host;
	k->dir_fd = -1;
	k->dir = host->alloc(host->ctx, (size_t)n + 1);
	if (k->dir == NULL) {
		rc = host->error(host->ctx, ENVDB_ERR_NOMEM, NULL, "out of memory");
		goto fail;
	}
	memcpy(k->dir, path, (size_t)n + 1);
	rc = kms_ring_open(k, k->dir);
	if (rc != ENVDB_OK)
		goto fail;
	*instance = k;
	return ENVDB_OK;
fail:
	kms_fini(k);
	return rc;
}

static int kms_current_key(void *instance, envdb_buffer *key_id)
{
	kms *k = instance;
	kms_key *key;
	int rc;

	rc = kms_ring_current(&key, k, "current key");
	if (rc != ENVDB_OK)
		return rc;
	rc = envdb_buffer_set_str(key_id, key->id);
	if (rc != ENVDB_OK)
		return k->host->error(k->host->ctx, rc, NULL, "current key: output buffer too small");
	return ENVDB_OK;
}

static int kms_key_list(void *instance, envdb_encryptor_key_cb cb, void *cb_ctx)
{
	kms *k = instance;
	char current[KMS_ID_MAX + 1] = "";
	size_t i;
	int rc;

	if (cb == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "key list: no callback given");
	rc = kms_ring_refresh(k, "key list");
	if (rc != ENVDB_OK)
		return rc;
	rc = kms_ring_current_id(current, k, "key list");
	if (rc < 0)
		return rc;
	/* The callback cannot change the ring: it is not given the instance. */
	for (i = 0; i < k->n_keys; i++) {
		rc = cb(cb_ctx, k->keys[i]->id, strcmp(k->keys[i]->id, current) == 0,
			k->keys[i]->created_at);
		if (rc != 0)
			return rc;
	}
	return ENVDB_OK;
}

static int kms_key_generate(void *instance, int make_current, envdb_buffer *key_id)
{
	kms *k = instance;
	char id[KMS_ID_MAX + 1];
	int rc;

	/* Not idempotent: check the output before making anything. */
	if (key_id == NULL || key_id->data == NULL || key_id->cap <= KMS_ID_MAX) {
		if (key_id != NULL)
			key_id->len = KMS_ID_MAX;
		return k->host->error(k->host->ctx,
				      key_id == NULL ? ENVDB_ERR_MISUSE : ENVDB_ERR_BUFFER_TOO_SMALL,
				      NULL, "key generate: output buffer too small");
	}
	rc = kms_ring_generate(id, k, make_current);
	if (rc != ENVDB_OK)
		return rc;
	k->host->log(k->host->ctx, ENVDB_LOG_INFO, "key generate: created key %s in %s%s", id,
		     k->dir, make_current ? " (current)" : "");
	return envdb_buffer_set_str(key_id, id);
}

/* ABI 1.1: healthy when the current key loads from the keyring (its id is
 * read from the `current` file, its key file opened and checked). */
static int kms_health(void *instance)
{
	kms *k = instance;
	kms_key *key;
	int rc;

	if ((rc = kms_ring_refresh(k, "health")) != ENVDB_OK)
		return rc;
	return kms_ring_current(&key, k, "health");
}

static const envdb_encryptor_ops kms_ops = {
	.struct_size = sizeof(envdb_encryptor_ops),
	.capabilities = ENVDB_ENCRYPTOR_CAP_KEY_MANAGE | ENVDB_ENCRYPTOR_CAP_REWRAP |
			ENVDB_ENCRYPTOR_CAP_HEALTH | ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS,
	.current_key = kms_current_key,
	.encrypt = kms_encrypt,
	.decrypt = kms_decrypt,
	.key_of = kms_key_of,
	.rewrap = kms_rewrap,
	.key_list = kms_key_list,
	.key_generate = kms_key_generate,
	.health = kms_health,
	.is_current = kms_is_current,
};

static const envdb_plugin_descriptor kms_descriptor = {
	.struct_size = sizeof(envdb_plugin_descriptor),
	.abi_major = ENVDB_ABI_MAJOR,
	.abi_minor = 1, /* health, is_current */
	.name = "kms",
	.version = PACKAGE_VERSION,
	.description = "libsodium keyring in a directory (xchacha20-poly1305, key ids, rewrap)",
	.kind = ENVDB_PLUGIN_ENCRYPTOR,
	/* Not THREAD_SAFE: key pages change protection during a call and the
	 * ring grows on demand; the host serializes calls on the instance. */
	.flags = 0,
	.config_keys = kms_config_keys,
	.init = kms_init,
	.fini = kms_fini,
	.ops = &kms_ops,
};

ENVDB_PLUGIN_DEFINE(kms_descriptor)
