/*
 * sdk/conformance/config.c — the configuration the kit passes to the
 * plugin's init: the manifest's entries (or --config key=value), with the
 * secret references `<key>_file` / `<key>_env` of keys the plugin declares
 * ENVDB_CONFIG_SECRET resolved the way envdb's loader resolves them, and
 * every secret value registered with the kit so that it is searched for in
 * every message.  Each init gets a fresh, borrowed copy that is poisoned
 * as soon as init returns.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kit.h"

static const envdb_config_key *declared(const envdb_plugin_descriptor *desc, const char *name,
					size_t name_len)
{
	const envdb_config_key *k;
	size_t i;

	for (i = 0; (k = kit_config_key_at(desc, i)) != NULL; i++)
		if (strlen(k->name) == name_len && strncmp(k->name, name, name_len) == 0)
			return k;
	return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n > m && strcmp(s + n - m, suffix) == 0;
}

/* Read a secret file into kit secure memory, without its final newline. */
static int read_secret_file(char **out, size_t *out_len, const char *path, const char *base_dir)
{
	char full[4096];
	size_t cap = 256, len = 0;
	char *buf;
	FILE *f;

	if (path[0] == '/' || base_dir == NULL)
		snprintf(full, sizeof(full), "%s", path);
	else
		snprintf(full, sizeof(full), "%s/%s", base_dir, path);
	f = fopen(full, "rb");
	if (f == NULL)
		return errno ? errno : EIO;
	buf = kit_smalloc(cap);
	for (;;) {
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
		if (len + 1 == cap) {
			char *bigger = kit_smalloc(cap * 2);
			memcpy(bigger, buf, len);
			kit_sfree(buf, cap);
			buf = bigger;
			cap *= 2;
		}
	}
	fclose(f);
	/* As envdb's loader: one trailing newline is formatting. */
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	/* Keep the exact capacity known to kit_config_free: shrink-copy. */
	*out = kit_smalloc(len + 1);
	memcpy(*out, buf, len + 1);
	*out_len = len;
	kit_sfree(buf, cap);
	return 0;
}

int kit_config_resolve(kit_config *out, const envdb_plugin_descriptor *desc,
		       const char *const *keys, const char *const *values, size_t n,
		       const char *base_dir)
{
	size_t i;

	memset(out, 0, sizeof(*out));
	out->items = calloc(n ? n : 1, sizeof(kit_config_item));
	if (out->items == NULL)
		return ENVDB_ERR_NOMEM;
	out->base_dir = base_dir ? kit_xstrdup(base_dir) : NULL;
	for (i = 0; i < n; i++) {
		kit_config_item *it = &out->items[out->n];
		const char *k = keys[i], *v = values[i];
		const envdb_config_key *decl = declared(desc, k, strlen(k));
		size_t stem = strlen(k);
		bool ref_file = false, ref_env = false;

		if (decl == NULL && ends_with(k, "_file")) {
			stem -= strlen("_file");
			ref_file = true;
		} else if (decl == NULL && ends_with(k, "_env")) {
			stem -= strlen("_env");
			ref_env = true;
		}
		if (ref_file || ref_env) {
			decl = declared(desc, k, stem);
			if (decl == NULL || !(decl->flags & ENVDB_CONFIG_SECRET)) {
				/* Not a reference after all: pass it as given and
				 * let the plugin judge. */
				ref_file = ref_env = false;
				stem = strlen(k);
			}
		}
		it->key = kit_xmalloc(stem + 1);
		memcpy(it->key, k, stem);
		it->key[stem] = '\0';
		it->secret = decl != NULL && (decl->flags & ENVDB_CONFIG_SECRET);
		if (ref_file) {
			int e = read_secret_file(&it->value, &it->value_len, v, base_dir);
			if (e != 0) {
				kit_fail("config", "cannot read the secret file of '%s' (%s): %s",
					 it->key, v, strerror(e));
				free(it->key);
				return ENVDB_ERR_CONFIG;
			}
		} else if (ref_env) {
			const char *ev = getenv(v);
			if (ev == NULL) {
				kit_fail("config", "environment variable %s of '%s' is not set", v,
					 it->key);
				free(it->key);
				return ENVDB_ERR_CONFIG;
			}
			it->value_len = strlen(ev);
			it->value = kit_smalloc(it->value_len + 1);
			memcpy(it->value, ev, it->value_len + 1);
		} else {
			it->value_len = strlen(v);
			it->value = kit_smalloc(it->value_len + 1);
			memcpy(it->value, v, it->value_len + 1);
		}
		if (it->secret)
			kit_secret_add(it->value, it->value_len, "a secret configuration value");
		out->n++;
	}
	return ENVDB_OK;
}

void kit_config_free(kit_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->n; i++) {
		free(cfg->items[i].key);
		kit_sfree(cfg->items[i].value, cfg->items[i].value_len + 1);
	}
	free(cfg->items);
	free(cfg->base_dir);
	memset(cfg, 0, sizeof(*cfg));
}

envdb_config *kit_config_borrow(const kit_config *cfg, const char *omit)
{
	envdb_config *c = kit_xmalloc(sizeof(*c));
	envdb_config_entry *e = kit_xmalloc((cfg->n ? cfg->n : 1) * sizeof(*e));
	size_t i, n = 0;

	for (i = 0; i < cfg->n; i++) {
		if (omit != NULL && strcmp(cfg->items[i].key, omit) == 0)
			continue;
		e[n].struct_size = sizeof(envdb_config_entry);
		e[n].key = kit_borrow(cfg->items[i].key);
		e[n].value = kit_borrow(cfg->items[i].value);
		n++;
	}
	c->struct_size = sizeof(envdb_config);
	c->entries = e;
	c->n_entries = n;
	c->base_dir = kit_borrow(cfg->base_dir);
	kit_keep(c);
	kit_keep(e);
	return c;
}

void kit_config_retire(envdb_config *c)
{
	static const char poison[] = KIT_POISON;
	envdb_config_entry *e = (envdb_config_entry *)c->entries;
	size_t i;

	for (i = 0; i < c->n_entries; i++) {
		e[i].key = poison;
		e[i].value = poison;
	}
	c->base_dir = poison;
}
