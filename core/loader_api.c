/*
 * core/loader_api.c — envdb/envdb-loader.h: one plugin opened by the
 * loader of loader.c, as a manifest or a command line names it, without
 * init.  The interface envdb-conformance is built on, so that the kit
 * depends on installed headers only.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <envdb/envdb-loader.h>

#include "internal.h"

struct envdb_loader {
	envdbi_manifest *loaded; /* open_manifest: the whole manifest */
	envdbi_manifest one;     /* what the loader gets: this plugin only */
	envdbi_plugin_spec spec; /* open_file */
	envdbi_kv *kv;           /* open_file: the entries, copied */
	size_t n_kv;
	envdbi_plugins *set;
	envdbi_plugin *p;
};

static char *absolute(const char *path, const char *cwd)
{
	size_t n;
	char *r;

	if (path[0] == '/')
		return strdup(path);
	n = strlen(cwd) + strlen(path) + 2;
	if ((r = malloc(n)) != NULL)
		snprintf(r, n, "%s/%s", cwd, path);
	return r;
}

static char *stem(const char *path)
{
	const char *base = strrchr(path, '/');
	char *s = strdup(base ? base + 1 : path), *dot;

	if (s != NULL && (dot = strrchr(s, '.')) != NULL && dot != s)
		*dot = '\0';
	return s;
}

/* Open l->one's only plugin, without init. */
static int finish(envdb_loader **out, envdb_loader *l)
{
	int rc = envdbi_sodium_init();

	if (rc == ENVDB_OK)
		rc = envdbi_plugins_load_ex(&l->set, &l->one, ENVDBI_LOAD_NO_INIT);
	if (rc != ENVDB_OK) {
		envdb_loader_close(l);
		return rc;
	}
	l->p = envdbi_plugins_at(l->set, 0);
	*out = l;
	return ENVDB_OK;
}

int envdb_loader_open_manifest(envdb_loader **out, const char *manifest_path,
			       const char *plugin_name)
{
	envdbi_plugin_spec *spec = NULL;
	envdb_loader *l;
	size_t i;
	int rc;

	if (out == NULL || manifest_path == NULL || plugin_name == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "loader: open a manifest's plugin: no manifest or plugin given");
	*out = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "loader: out of memory");
	if ((rc = envdbi_manifest_load(&l->loaded, manifest_path)) != ENVDB_OK) {
		free(l);
		return rc;
	}
	for (i = 0; i < l->loaded->n_plugins; i++)
		if (strcmp(l->loaded->plugins[i].name, plugin_name) == 0)
			spec = &l->loaded->plugins[i];
	if (spec == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOT_FOUND, NULL, "%s lists no plugin named '%s'",
				  manifest_path, plugin_name);
		envdb_loader_close(l);
		return rc;
	}
	/* Only this plugin: the others are not under test. */
	l->one = *l->loaded;
	l->one.plugins = spec;
	l->one.n_plugins = 1;
	spec->critical = true;
	return finish(out, l);
}

int envdb_loader_open_file(envdb_loader **out, const char *path, const char *name,
			   uint32_t kind, const char *const *keys, const char *const *values,
			   size_t n)
{
	char cwd[PATH_MAX];
	envdb_loader *l;
	size_t i;

	if (out == NULL || path == NULL || (n > 0 && (keys == NULL || values == NULL)))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "loader: open a plugin file: no file or configuration given");
	*out = NULL;
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		snprintf(cwd, sizeof(cwd), "/");
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->kv = calloc(n + 1, sizeof(envdbi_kv))) == NULL)
		goto nomem;
	l->one.path = strdup("envdb-conformance command line");
	l->one.dir = strdup(cwd);
	l->spec.name = name ? strdup(name) : stem(path);
	l->spec.path = absolute(path, cwd);
	if (l->one.path == NULL || l->one.dir == NULL || l->spec.name == NULL ||
	    l->spec.path == NULL)
		goto nomem;
	l->spec.kind = kind;
	l->spec.critical = true;
	l->spec.line = l->spec.column = 1;
	for (i = 0; i < n; i++) {
		l->kv[i].key = strdup(keys[i]);
		l->kv[i].value = strdup(values[i]);
		l->n_kv = i + 1;
		if (l->kv[i].key == NULL || l->kv[i].value == NULL)
			goto nomem;
		l->kv[i].line = l->kv[i].key_line = 1;
		l->kv[i].column = l->kv[i].key_column = (int)i + 1;
	}
	l->spec.config = l->kv;
	l->spec.n_config = n;
	l->one.plugins = &l->spec;
	l->one.n_plugins = 1;
	return finish(out, l);
nomem:
	envdb_loader_close(l);
	return envdbi_error(ENVDB_ERR_NOMEM, NULL, "loader: out of memory");
}

const envdb_plugin_descriptor *envdb_loader_descriptor(const envdb_loader *l)
{
	return l ? envdbi_plugin_descriptor(l->p) : NULL;
}

const char *envdb_loader_name(const envdb_loader *l)
{
	return l ? envdbi_plugin_name(l->p) : NULL;
}

uint32_t envdb_loader_kind(const envdb_loader *l)
{
	return l ? envdbi_plugin_kind(l->p) : 0;
}

const char *envdb_loader_plugin_path(const envdb_loader *l)
{
	return l ? envdbi_plugin_path(l->p) : NULL;
}

const char *envdb_loader_base_dir(const envdb_loader *l)
{
	return l ? l->one.dir : NULL;
}

const char *envdb_loader_control_plane(const envdb_loader *l)
{
	return l && l->loaded ? l->loaded->control_plane : NULL;
}

size_t envdb_loader_config_count(const envdb_loader *l)
{
	return l ? l->one.plugins[0].n_config : 0;
}

const char *envdb_loader_config_key(const envdb_loader *l, size_t i)
{
	return l && i < l->one.plugins[0].n_config ? l->one.plugins[0].config[i].key : NULL;
}

const char *envdb_loader_config_value(const envdb_loader *l, size_t i)
{
	return l && i < l->one.plugins[0].n_config ? l->one.plugins[0].config[i].value : NULL;
}

void envdb_loader_close(envdb_loader *l)
{
	size_t i;

	if (l == NULL)
		return;
	envdbi_plugins_free(l->set);
	if (l->loaded != NULL) {
		envdbi_manifest_free(l->loaded);
	} else {
		for (i = 0; i < l->n_kv; i++) {
			free(l->kv[i].key);
			free(l->kv[i].value);
		}
		free(l->kv);
		free(l->spec.name);
		free(l->spec.path);
		free(l->one.path);
		free(l->one.dir);
	}
	free(l);
}
